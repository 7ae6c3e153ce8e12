// OpenTelemetry export from the Worker: spans and metrics POSTed as OTLP/HTTP JSON to a local
// receiver, with the GenAI semantic conventions' names; W3C trace context from the client to the
// mock upstream; content captured only when opted in, and redacted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, chatBody, makeConfig, startGateway, startOtlpReceiver } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
const OTLP_TOKEN = "Bearer otlp-e2e-token";

let up;
let gw;
let otlp;

before(async () => {
  otlp = await startOtlpReceiver();
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl });
  config.auth.consumers.push({ id: "capture", key_sha256: (await import("../harness.mjs")).sha256Hex("sk-gw-capture-00112233") });
  config.telemetry = {
    otlp: { endpoint: otlp.url, headers: { authorization: { secret: "OTLP_TOKEN" } }, service_name: "gw-e2e" },
    consumers: { capture: { capture_content: true } },
  };
  gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream, OTLP_TOKEN } });
});
after(async () => {
  await gw?.dispose();
  await up?.close();
  await otlp?.close();
});

const spansOf = (body) => body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
const attr = (span, key) => span.attributes.find((a) => a.key === key)?.value;
const serverSpanOf = (traceId) => (body) => spansOf(body).some((s) => s.traceId === traceId && s.kind === 2);

describe("OpenTelemetry export", () => {
  test("a chat request's server span carries the GenAI conventions' attributes", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini", "hello telemetry", { temperature: 0.5, max_tokens: 30 }), {
      key: KEYS.web,
      headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: "congo=t61rcWkgMzE" },
    });
    assert.equal(res.status, 200);
    await res.json();
    assert.equal(res.headers.get("x-gateway-trace-id"), CLIENT_TRACE);
    const post = await otlp.waitFor("/v1/traces", serverSpanOf(CLIENT_TRACE));
    assert.equal(post.method, "POST");
    assert.match(post.headers["content-type"], /^application\/json/);
    assert.equal(post.headers.authorization, OTLP_TOKEN);
    const resource = post.body.resourceSpans[0].resource.attributes;
    assert.deepEqual(resource.find((a) => a.key === "service.name").value, { stringValue: "gw-e2e" });
    const spans = spansOf(post.body);
    const server = spans.find((s) => s.kind === 2);
    assert.equal(server.name, "chat gpt-4o-mini");
    assert.equal(server.parentSpanId, CLIENT_SPAN, "the client's span is the parent");
    assert.equal(server.traceState, "congo=t61rcWkgMzE");
    assert.match(server.spanId, /^[0-9a-f]{16}$/);
    assert.match(server.startTimeUnixNano, /^\d+$/);
    assert.ok(BigInt(server.endTimeUnixNano) >= BigInt(server.startTimeUnixNano));
    assert.deepEqual(attr(server, "gen_ai.operation.name"), { stringValue: "chat" });
    assert.deepEqual(attr(server, "gen_ai.provider.name"), { stringValue: "openai" });
    assert.deepEqual(attr(server, "gen_ai.request.model"), { stringValue: "gpt-4o-mini" });
    assert.deepEqual(attr(server, "gen_ai.request.temperature"), { doubleValue: 0.5 });
    assert.deepEqual(attr(server, "gen_ai.request.max_tokens"), { intValue: "30" });
    assert.ok(attr(server, "gen_ai.response.model")?.stringValue, "response model");
    assert.ok(attr(server, "gen_ai.response.id")?.stringValue, "response id");
    assert.deepEqual(attr(server, "gen_ai.response.finish_reasons"), { arrayValue: { values: [{ stringValue: "stop" }] } });
    assert.ok(Number(attr(server, "gen_ai.usage.input_tokens").intValue) > 0);
    assert.ok(Number(attr(server, "gen_ai.usage.output_tokens").intValue) > 0);
    assert.deepEqual(attr(server, "server.address"), { stringValue: "127.0.0.1" });
    assert.deepEqual(attr(server, "gateway.consumer"), { stringValue: "web" });
    assert.equal(attr(server, "gen_ai.input.messages"), undefined, "no content by default");
    const attempt = spans.find((s) => s.kind === 3);
    assert.equal(attempt.parentSpanId, server.spanId);
    assert.equal(attempt.name, "chat gpt-4o-mini");

    // The mock upstream received the trace: same trace id, the attempt span as the parent.
    const call = up.requests.findLast((r) => r.headers.traceparent?.includes(CLIENT_TRACE));
    assert.ok(call, "the upstream call carried a traceparent");
    assert.equal(call.headers.traceparent, `00-${CLIENT_TRACE}-${attempt.spanId}-01`);
    assert.equal(call.headers.tracestate, "congo=t61rcWkgMzE");

    // Metrics of the same request, delta histograms with the conventions' names.
    const metricsPost = await otlp.waitFor("/v1/metrics", (body) =>
      body.resourceMetrics[0].scopeMetrics[0].metrics.some((m) => m.name === "gen_ai.client.token.usage"),
    );
    const metrics = metricsPost.body.resourceMetrics[0].scopeMetrics[0].metrics;
    const usage = metrics.filter((m) => m.name === "gen_ai.client.token.usage");
    assert.equal(usage.length, 2);
    assert.equal(usage[0].unit, "{token}");
    assert.equal(usage[0].histogram.aggregationTemporality, 1);
    const types = usage.map((m) => m.histogram.dataPoints[0].attributes.find((a) => a.key === "gen_ai.token.type").value.stringValue).sort();
    assert.deepEqual(types, ["input", "output"]);
    const duration = metrics.find((m) => m.name === "gen_ai.client.operation.duration");
    assert.equal(duration.unit, "s");
    assert.equal(duration.histogram.dataPoints[0].explicitBounds.length, 14);
    assert.ok(metrics.some((m) => m.name === "gateway.requests"));
  });

  test("content is exported only when the consumer opted in, with secrets redacted", async () => {
    const prompt = "my key is sk-proj-abcdefghijklmnopqrstuvwxyz012345 please help";
    const plain = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini", prompt), { key: KEYS.web });
    const plainTrace = plain.headers.get("x-gateway-trace-id");
    await plain.json();
    const captured = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini", prompt), { key: "sk-gw-capture-00112233" });
    const capturedTrace = captured.headers.get("x-gateway-trace-id");
    await captured.json();
    const plainPost = await otlp.waitFor("/v1/traces", serverSpanOf(plainTrace));
    assert.ok(!plainPost.raw.includes("gen_ai.input.messages"));
    const post = await otlp.waitFor("/v1/traces", serverSpanOf(capturedTrace));
    assert.ok(!post.raw.includes("sk-proj-abcdefghijklmnopqrstuvwxyz012345"), "the secret never reaches the collector");
    assert.ok(!post.raw.includes(KEYS.upstream) && !post.raw.includes("sk-gw-capture-00112233"));
    const server = spansOf(post.body).find((s) => s.kind === 2);
    const input = JSON.parse(attr(server, "gen_ai.input.messages").stringValue);
    assert.equal(input[0].role, "user");
    assert.equal(input[0].parts[0].type, "text");
    assert.match(input[0].parts[0].content, /^my key is \[SECRET\] please help$/);
    const output = JSON.parse(attr(server, "gen_ai.output.messages").stringValue);
    assert.equal(output[0].role, "assistant");
    assert.equal(output[0].finish_reason, "stop");
  });
});
