// A client that hangs up, through the real Worker: recorded as `client_disconnected` and charged
// when it hangs up (docs/limits.md), mid-stream on both client APIs with an OpenAI and an
// Anthropic upstream, and before the response head (the fallback loop stops there). workerd
// reports the disconnect through `request.signal` (compatibility flag `enable_request_signal`);
// adapters/cloudflare/src/departure.rs turns it into the core's disconnect path. The in-memory
// pipeline tests of the same accounting are edge/tests/disconnect_accounting.rs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { KEYS, chatBody, makeConfig, rawRequest, sha256Hex, startGateway, withTimeout } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { PROVIDER_KEYS, startProviderMocks } from "../provider-mocks.mjs";

const ADMIN_KEY = "adm-disconnect-0123456789abcdef0123456";
const MAX_TOKENS = 500;
const PRICE = { input: "1.00", output: "2.00" };

let up; // OpenAI-format mock upstream
let mocks; // the other providers' mocks (Anthropic here)
const started = [];

before(async () => {
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  mocks = await startProviderMocks();
});
after(async () => {
  for (const gw of started) await gw.dispose();
  await up?.close();
  await mocks?.close();
});

/**
 * A fresh gateway (its own counters) whose consumer `web` has an output-token limit and a budget,
 * so every call reserves, and a disconnect must settle what it was charged.
 */
async function start() {
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl });
  config.admin = { key_sha256: sha256Hex(ADMIN_KEY) };
  config.providers.anthropic = { kind: "anthropic", base_url: mocks.baseUrl("anthropic"), api_key_secret: "ANTHROPIC_API_KEY" };
  // Times out a head that never comes quickly enough for a test to see whether a fallback follows.
  config.providers["upstream-1s"] = { kind: "openai", base_url: up.baseUrl, api_key_secret: "OPENAI_API_KEY", timeout_ms: 1000 };
  const target = (id, provider, upstream_model) => ({ id, provider, upstream_model, region: "us-east-1", jurisdiction: "us" });
  config.models = {
    ...config.models,
    "claude-stalled": { provider: "anthropic", upstream_model: "claude-stalled" },
    // The first target never answers its head; the second would answer at once.
    "slow-head": {
      targets: [target("first", "upstream-1s", "hang"), target("next", "upstream", "gpt-4o-mini")],
      strategy: { type: "ordered" },
      max_attempts: 2,
    },
  };
  // A budget needs a price for every chat model.
  const priced = Object.entries(config.models).flatMap(([name, m]) => [name, m.upstream_model, ...(m.targets ?? []).map((t) => t.upstream_model)]);
  config.prices = Object.fromEntries(priced.filter(Boolean).map((m) => [m, PRICE]));
  config.rate_limits = [{ scope: ["consumer"], metric: "output_tokens", window: "day", limit: 1_000_000 }];
  config.budgets = [{ scope: ["consumer"], window: "day", usd: "100" }];
  const gw = await startGateway({
    config,
    secrets: { OPENAI_API_KEY: KEYS.upstream, ANTHROPIC_API_KEY: PROVIDER_KEYS.anthropic },
  });
  started.push(gw);
  return gw;
}

/** The consumer's counters once no reservation is in flight (settlement runs in waitUntil). */
async function settledUsage(gw, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await gw.fetch("/admin/usage/consumer%3Aweb", { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text);
    if (body.limits.length > 0 && body.limits.every((l) => l.reserved === 0)) return body;
    if (Date.now() > deadline) throw new Error(`reservations still in flight: ${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function limitOf(status, metric) {
  const found = status.limits.find((l) => l.metric === metric);
  assert.ok(found, `no ${metric} limit in ${JSON.stringify(status)}`);
  return found;
}

/** The request each client API sends for a streamed answer of `model`. */
function streamedRequest(api, model) {
  const content = "hang up on me";
  return api === "chat"
    ? {
        path: "/v1/chat/completions",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEYS.web}` },
        body: chatBody(model, content, { stream: true, max_tokens: MAX_TOKENS }),
      }
    : {
        path: "/v1/messages",
        headers: { "content-type": "application/json", "x-api-key": KEYS.web, "anthropic-version": "2023-06-01" },
        body: { model, max_tokens: MAX_TOKENS, stream: true, messages: [{ role: "user", content }] },
      };
}

/**
 * Opens a stream, reads until `delivered` text has arrived, then hangs up (closes its socket, or
 * resets it with `reset`); returns the request id.
 */
async function abandonStream(gw, api, model, delivered, { reset = false } = {}) {
  const { path, headers, body } = streamedRequest(api, model);
  const { res, req } = await rawRequest(gw.url + path, { headers, body: JSON.stringify(body) });
  assert.equal(res.statusCode, 200);
  const requestId = res.headers["x-request-id"];
  let seen = "";
  await withTimeout(
    new Promise((resolve) => {
      res.on("data", (chunk) => {
        seen += chunk.toString("utf8");
        if (seen.includes(delivered)) resolve();
      });
    }),
    10_000,
    `streamed text ${JSON.stringify(delivered)}`,
  );
  hangUp(req, { reset });
  return requestId;
}

/**
 * Hangs up: closes the socket (FIN), or resets it (RST). workerd's HTTP server, as run here,
 * notices a closed connection only when it next writes to it, a reset at once, so a test whose
 * gateway has nothing to write (upstream silent, no response head yet) resets.
 */
function hangUp(req, { reset }) {
  if (reset) req.socket.resetAndDestroy();
  else req.destroy();
}

/** The disconnect was charged what was delivered: some output, far from the whole reservation. */
async function assertChargedDelivered(gw, event) {
  assert.equal(event.outcome, "client_disconnected");
  assert.equal(event.stream, true);
  assert.equal(event.status, 200);
  assert.equal(event.quota?.reserved_output_tokens, MAX_TOKENS, JSON.stringify(event.quota));
  const usage = await settledUsage(gw);
  const output = limitOf(usage, "output_tokens");
  assert.ok(output.used > 0, `the delivered text was charged, not released: ${JSON.stringify(output)}`);
  assert.ok(output.used < MAX_TOKENS, `charged what was delivered, not the reservation: ${JSON.stringify(output)}`);
  const cost = limitOf(usage, "cost");
  assert.ok(cost.used > 0);
  assert.equal(event.quota.cost_nanos, cost.used, "the event shows what the counters charged");
}

describe("a client that disconnects mid-stream", () => {
  for (const api of ["chat", "messages"]) {
    test(`${api}: recorded as client_disconnected and charged what was delivered while the upstream is sending`, async () => {
      const gw = await start();
      const handle = up.waitFor("endless-stream");
      const requestId = await abandonStream(gw, api, "endless", "tick 1 ");
      const event = await gw.waitForLog((e) => e.request_id === requestId, 8_000);
      assert.equal(event.operation, api === "chat" ? "chat.completions" : "messages", JSON.stringify(event));
      await assertChargedDelivered(gw, event);
      const done = await withTimeout((await handle).done, 10_000, "the gateway to cancel the upstream call");
      assert.equal(done.closedByPeer, true, "the upstream call was cancelled");
    });
  }

  test("messages: an Anthropic upstream silent at that moment; recorded, charged, its call cancelled", async () => {
    const gw = await start();
    const requestId = await abandonStream(gw, "messages", "claude-stalled", "from ", { reset: true });
    const event = await gw.waitForLog((e) => e.request_id === requestId, 8_000);
    assert.equal(event.provider, "anthropic");
    await assertChargedDelivered(gw, event);
    const call = mocks.requests.findLast((r) => r.provider === "anthropic" && r.body?.model === "claude-stalled");
    const deadline = Date.now() + 5_000;
    while (call.closedByPeer === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.equal(call.closedByPeer, true, "the stalled upstream call was cancelled");
  });
});

describe("a client that leaves before the response head", () => {
  test("the fallback loop stops (the next target is never called), the event says 499 client_disconnected, the prompt is charged", async () => {
    const gw = await start();
    const nextCalls = () => up.requests.filter((r) => r.model === "gpt-4o-mini").length;
    const before = nextCalls();
    const handle = up.waitFor("hang");
    const { headers, body } = streamedRequest("chat", "slow-head");
    const payload = JSON.stringify({ ...body, stream: false });
    const req = http.request(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { ...headers, "content-length": Buffer.byteLength(payload) },
      agent: false,
    });
    req.on("error", () => {}); // we hang up ourselves
    req.on("response", () => assert.fail("no response head was expected"));
    req.end(payload);
    const hanging = await withTimeout(handle, 10_000, "the first target to be called");
    hangUp(req, { reset: true });

    const event = await gw.waitForLog((e) => e.outcome === "client_disconnected", 8_000);
    assert.equal(event.status, 499);
    assert.equal(event.model, "slow-head");
    const done = await withTimeout(hanging.done, 10_000, "the gateway to cancel the first target's call");
    assert.equal(done.closedByPeer, true, "the first target's call was cancelled");
    // Past the first target's 1 s timeout: a fallback would have called the next target by now.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(nextCalls(), before, "the next target was not called");

    const usage = await settledUsage(gw);
    const output = usage.limits.find((l) => l.metric === "output_tokens");
    assert.equal(output?.used ?? 0, 0, "no output was delivered");
    const cost = limitOf(usage, "cost");
    assert.ok(cost.used > 0, `the prompt was charged: ${JSON.stringify(cost)}`);
    assert.equal(event.quota?.cost_nanos, cost.used, "the event shows what the counters charged");
  });
});
