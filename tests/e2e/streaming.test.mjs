// Streamed chat completions (server-sent events): format, incremental delivery, usage handling,
// a provider stream that breaks after the 200, and a client that goes away mid-stream.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  KEYS,
  assertRequestId,
  chatBody,
  rawRequest,
  readSse,
  sseReader,
  startWithUpstream,
  withTimeout,
} from "../harness.mjs";
import { upstreamReplyText } from "../mock-upstream.mjs";

let suite;
let up;
let gw;

before(async () => {
  suite = await startWithUpstream();
  ({ up, gw } = suite);
});
after(() => suite?.dispose());

/** Splits SSE payloads into parsed chunks, asserting the stream ends with exactly one [DONE]. */
function chunksOf(events) {
  assert.ok(events.length >= 2, `too few events: ${JSON.stringify(events)}`);
  assert.equal(events.at(-1), "[DONE]", `stream must end with [DONE]: ${JSON.stringify(events.slice(-3))}`);
  assert.equal(events.filter((e) => e === "[DONE]").length, 1);
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

function contentOf(chunks) {
  return chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
}

function assertWellFormed(chunks, model) {
  for (const c of chunks) {
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(typeof c.id, "string");
    assert.equal(c.model, model);
    assert.ok(!("error" in c), `unexpected error event: ${JSON.stringify(c)}`);
  }
  const ids = new Set(chunks.map((c) => c.id));
  assert.equal(ids.size, 1, "one id for the whole stream");
  assert.equal(chunks[0].choices[0].delta.role, "assistant", "first delta carries the role");
  const stops = chunks.filter((c) => c.choices?.[0]?.finish_reason === "stop");
  assert.equal(stops.length, 1, "exactly one finish_reason: stop");
  for (const c of chunks) {
    if (c.choices?.length && c !== stops[0]) assert.equal(c.choices[0].finish_reason, null);
  }
}

function assertUsage(usage) {
  for (const f of ["prompt_tokens", "completion_tokens", "total_tokens"]) {
    assert.ok(Number.isInteger(usage?.[f]) && usage[f] > 0, `usage.${f} > 0: ${JSON.stringify(usage)}`);
  }
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

async function stream(model, content, extra = {}) {
  const res = await gw.post("/v1/chat/completions", chatBody(model, content, { stream: true, ...extra }), {
    key: KEYS.web,
  });
  assert.equal(res.status, 200, `status ${res.status}`);
  assertRequestId(res);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  return res;
}

describe("streaming (mock provider)", () => {
  test("role delta, content deltas, stop, [DONE]; no usage unless asked", async () => {
    const res = await stream("mock", "stream me please");
    assert.equal(res.headers.get("x-gateway-provider"), "mock");
    const chunks = chunksOf(await readSse(res));
    assertWellFormed(chunks, "mock");
    const text = contentOf(chunks);
    assert.ok(text.startsWith("This is a mock response"), text);
    assert.ok(text.includes("stream me please"), text);
    assert.ok(chunks.filter((c) => c.choices?.[0]?.delta?.content).length >= 2, "several content deltas");
    for (const c of chunks) {
      assert.ok(c.choices.length > 0, "no usage-only chunk when not asked");
      assert.ok(c.usage === undefined || c.usage === null, "no usage when not asked");
    }
  });

  test("stream_options.include_usage adds a final usage chunk with no choices", async () => {
    const res = await stream("mock", "count my tokens", { stream_options: { include_usage: true } });
    const chunks = chunksOf(await readSse(res));
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assertUsage(usageChunk.usage);
    assertWellFormed(chunks.slice(0, -1), "mock");
    for (const c of chunks.slice(0, -1)) assert.ok(c.usage === undefined || c.usage === null);
    assert.equal(chunks.filter((c) => c.choices.length === 0).length, 1);
  });

  test("the streamed text equals the non-streamed answer", async () => {
    const whole = await gw
      .post("/v1/chat/completions", chatBody("mock", "same either way"), { key: KEYS.web })
      .then((r) => r.json());
    const chunks = chunksOf(await readSse(await stream("mock", "same either way")));
    assert.equal(contentOf(chunks), whole.choices[0].message.content);
  });
});

describe("streaming (openai provider via the mock upstream)", () => {
  test("client did not ask for usage: gateway asks upstream anyway, strips it from the client's stream", async () => {
    const res = await stream("gpt-4o-mini", "hello stream", { temperature: 0.5, x_unknown: { a: [1] } });
    assert.equal(res.headers.get("x-gateway-provider"), "upstream");
    const chunks = chunksOf(await readSse(res));
    const seen = up.lastRequest("/v1/chat/completions");
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`);
    assert.deepEqual(seen.body, {
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello stream" }],
      stream: true,
      temperature: 0.5,
      x_unknown: { a: [1] },
      stream_options: { include_usage: true },
    });
    assertWellFormed(chunks, "gpt-4o-mini");
    assert.equal(contentOf(chunks), upstreamReplyText("hello stream"));
    for (const c of chunks) {
      assert.ok(c.choices.length > 0, `usage-only chunk leaked to a client that did not ask: ${JSON.stringify(c)}`);
      assert.ok(!("usage" in c), `usage field leaked to a client that did not ask: ${JSON.stringify(c)}`);
    }
    // Everything else is the upstream's stream, chunk for chunk.
    const upstreamChunks = seen.sse
      .filter((d) => d !== "[DONE]")
      .map((d) => JSON.parse(d))
      .filter((c) => c.choices.length > 0)
      .map(({ usage, ...rest }) => rest);
    assert.deepEqual(chunks, upstreamChunks);
  });

  test("client asked for usage: the upstream's usage chunk is passed through", async () => {
    const res = await stream("gpt-4o-mini", "hello usage", { stream_options: { include_usage: true } });
    const chunks = chunksOf(await readSse(res));
    const seen = up.lastRequest("/v1/chat/completions");
    assert.deepEqual(seen.body.stream_options, { include_usage: true });
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assertUsage(usageChunk.usage);
    const upstreamUsage = JSON.parse(seen.sse.at(-2)).usage;
    assert.deepEqual(usageChunk.usage, upstreamUsage);
    assertWellFormed(chunks.slice(0, -1), "gpt-4o-mini");
    assert.equal(contentOf(chunks), upstreamReplyText("hello usage"));
  });

  test("chunks reach the client while the upstream is still streaming", async () => {
    const res = await stream("slow", "one two three four");
    const sse = sseReader(res);
    const handle = await up.waitFor("slow-stream");
    // Read until the first content delta: it must arrive while the upstream is held mid-stream.
    const first = JSON.parse(await withTimeout(sse.next(), 10_000, "role chunk"));
    assert.equal(first.choices[0].delta.role, "assistant");
    let firstContent;
    while (!firstContent) {
      const ev = await withTimeout(sse.next(), 10_000, "first content chunk");
      assert.notEqual(ev, null, "stream ended before the first content chunk");
      firstContent = JSON.parse(ev).choices[0].delta.content;
    }
    assert.equal(firstContent, "Upstream ");
    assert.equal(handle.released, false, "upstream was not yet released");
    assert.equal(handle.finished, false, "upstream had not finished when the first chunk arrived");

    handle.release();
    const rest = await withTimeout(sse.rest(), 10_000, "rest of the stream");
    assert.equal(rest.at(-1), "[DONE]");
    const chunks = [first, ...rest.slice(0, -1).map((e) => JSON.parse(e))];
    assert.equal("Upstream " + contentOf(chunks), upstreamReplyText("one two three four"));
    assert.equal(handle.finished, true);
  });

  test("a provider stream that breaks after the 200 ends with an SSE error event", async () => {
    const res = await stream("broken", "break please");
    const events = await withTimeout(readSse(res), 15_000, "broken stream to end");
    assert.ok(!events.includes("[DONE]"), "a broken stream must not claim [DONE]");
    const last = JSON.parse(events.at(-1));
    assert.ok(last.error && typeof last.error === "object", `last event is an error: ${events.at(-1)}`);
    for (const f of ["message", "type", "param", "code"]) assert.ok(f in last.error, `error.${f}`);
    assert.equal(typeof last.error.message, "string");
    // What the provider sent before breaking was delivered first.
    const before = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(before[0].choices[0].delta.role, "assistant");
    assert.equal(contentOf(before), "Upstream ");
  });

  test("a client that disconnects mid-stream cancels the upstream request", async () => {
    const { res, req } = await rawRequest(gw.url + "/v1/chat/completions", {
      headers: { "content-type": "application/json", authorization: `Bearer ${KEYS.web}` },
      body: JSON.stringify(chatBody("endless", "never stop", { stream: true })),
    });
    assert.equal(res.statusCode, 200);
    assert.ok(res.headers["x-request-id"]);
    const handle = await up.waitFor("endless-stream");
    // Wait until streamed data has reached us, then hang up.
    await withTimeout(new Promise((resolve) => res.once("data", resolve)), 10_000, "first streamed bytes");
    req.destroy();
    res.destroy();
    const done = await withTimeout(handle.done, 15_000, "the gateway to cancel the upstream request");
    assert.equal(done.closedByPeer, true, "upstream response was closed by the gateway, not finished");
    assert.equal(done.finished, false);
  });

  // A client that hangs up is recorded (and charged, see disconnect.test.mjs) when it hangs up,
  // whether the upstream is still sending or silent at that moment: workerd reports it through
  // request.signal, and the adapter drops the response stream (adapters/cloudflare/src/departure.rs).
  for (const [model, scripted, upstreamState] of [["endless", "endless-stream", "sending"], ["slow", "slow-stream", "silent"]]) {
    test(`a client that disconnects while the upstream is ${upstreamState} is recorded as client_disconnected`, async () => {
      const { res, req } = await rawRequest(gw.url + "/v1/chat/completions", {
        headers: { "content-type": "application/json", authorization: `Bearer ${KEYS.web}` },
        body: JSON.stringify(chatBody(model, "hang up on me", { stream: true })),
      });
      assert.equal(res.statusCode, 200);
      const requestId = res.headers["x-request-id"];
      const handle = await up.waitFor(scripted);
      await withTimeout(new Promise((resolve) => res.once("data", resolve)), 10_000, "first streamed bytes");
      // workerd's own HTTP server notices a closed connection only when it next writes to it, a
      // reset at once: with nothing to write (upstream silent), the client resets.
      if (upstreamState === "silent") {
        res.socket.resetAndDestroy();
      } else {
        req.destroy();
        res.destroy();
      }
      const event = await gw.waitForLog((e) => e.request_id === requestId, 8_000);
      assert.equal(event.outcome, "client_disconnected");
      assert.equal(event.stream, true);
      if (upstreamState === "silent") handle.release();
    });
  }
});
