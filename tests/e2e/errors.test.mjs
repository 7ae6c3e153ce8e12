// Every failure gets the right status and an OpenAI-style {"error": {message, type, param, code}}
// body: bad requests, auth, allow-lists, routing, provider failures, timeouts, bad configuration.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  KEYS,
  assertRequestId,
  chatBody,
  makeConfig,
  readError,
  startGateway,
  startWithUpstream,
  withTimeout,
} from "../harness.mjs";

const MAX_BODY = 2048;
let suite;
let up;
let gw;

before(async () => {
  suite = await startWithUpstream({ limits: { max_body_bytes: MAX_BODY } });
  ({ up, gw } = suite);
});
after(() => suite?.dispose());

/** Asserts status + error code (+ JSON content type, x-request-id); returns the error object. */
async function expectError(resPromise, status, code) {
  const res = await resPromise;
  const err = await readError(res);
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${err.raw}`);
  assertRequestId(res);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  if (code !== undefined) assert.equal(err.code, code, err.raw);
  assert.equal(typeof err.type, "string");
  return { ...err, res };
}

const postRaw = (body, headers = {}) =>
  gw.fetch("/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${KEYS.web}`, ...headers },
    body,
  });

describe("request errors", () => {
  test("malformed JSON → 400 invalid_json", async () => {
    await expectError(postRaw('{"model": "mock", "messages": [', { "content-type": "application/json" }), 400, "invalid_json");
  });

  test("wrong shape → 400 invalid_request naming the field", async () => {
    const err = await expectError(gw.post("/v1/chat/completions", { model: "mock" }, { key: KEYS.web }), 400, "invalid_request");
    // The problem is named (docs/config.md also promises `param` naming the field).
    assert.match(err.message, /messages/, err.raw);
    await expectError(
      gw.post("/v1/chat/completions", { model: "mock", messages: "not a list" }, { key: KEYS.web }),
      400,
      "invalid_request",
    );
  });

  test("wrong content type → 415 unsupported_content_type", async () => {
    await expectError(
      postRaw(JSON.stringify(chatBody("mock")), { "content-type": "text/plain" }),
      415,
      "unsupported_content_type",
    );
    await expectError(
      postRaw("model=mock", { "content-type": "application/x-www-form-urlencoded" }),
      415,
      "unsupported_content_type",
    );
    // A charset parameter is still JSON.
    const ok = await postRaw(JSON.stringify(chatBody("mock")), { "content-type": "application/json; charset=utf-8" });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });

  test("body over limits.max_body_bytes → 413 body_too_large (declared length)", async () => {
    const body = JSON.stringify(chatBody("mock", "x".repeat(MAX_BODY * 2)));
    await expectError(postRaw(body, { "content-type": "application/json" }), 413, "body_too_large");
  });

  test("body over limits.max_body_bytes → 413 body_too_large (chunked, no length)", async () => {
    const text = JSON.stringify(chatBody("mock", "y".repeat(MAX_BODY * 4)));
    const bytes = new TextEncoder().encode(text);
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.slice(i, i + 512));
        controller.close();
      },
    });
    await expectError(
      gw.fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEYS.web}` },
        body: stream,
        duplex: "half",
      }),
      413,
      "body_too_large",
    );
  });

  test("a body just under the limit is fine", async () => {
    const base = JSON.stringify(chatBody("mock", ""));
    const body = JSON.stringify(chatBody("mock", "z".repeat(MAX_BODY - base.length - 10)));
    assert.ok(body.length < MAX_BODY);
    const res = await postRaw(body, { "content-type": "application/json" });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  test("unknown model → 404 model_not_found", async () => {
    const err = await expectError(
      gw.post("/v1/chat/completions", chatBody("gpt-99-ultra"), { key: KEYS.web }),
      404,
      "model_not_found",
    );
    assert.match(err.message, /gpt-99-ultra/);
  });
});

describe("auth and allow-lists", () => {
  test("no key → 401 missing_api_key", async () => {
    await expectError(gw.post("/v1/chat/completions", chatBody("mock")), 401, "missing_api_key");
  });

  test("wrong key → 401 invalid_api_key (Authorization or x-api-key)", async () => {
    await expectError(gw.post("/v1/chat/completions", chatBody("mock"), { key: "sk-gw-not-a-real-key" }), 401, "invalid_api_key");
    await expectError(
      gw.post("/v1/chat/completions", chatBody("mock"), { headers: { "x-api-key": "sk-gw-not-a-real-key" } }),
      401,
      "invalid_api_key",
    );
    // The provider key is not a consumer key.
    await expectError(gw.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.upstream }), 401, "invalid_api_key");
  });

  test("model outside the consumer's allow-list → 403 model_not_allowed", async () => {
    const before = up.requests.length;
    await expectError(
      gw.post("/v1/chat/completions", chatBody("gpt-4o-mini"), { key: KEYS.limited }),
      403,
      "model_not_allowed",
    );
    assert.equal(up.requests.length, before, "nothing reached the upstream");
    const ok = await gw.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.limited });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });
});

describe("routing", () => {
  test("unknown route → 404 not_found", async () => {
    for (const path of ["/v1/completions", "/v2/chat/completions", "/", "/v1/chat/completions/extra"]) {
      await expectError(
        gw.fetch(path, { method: "POST", headers: { authorization: `Bearer ${KEYS.web}`, "content-type": "application/json" }, body: "{}" }),
        404,
        "not_found",
      );
    }
  });

  test("wrong method on a known route → 405 method_not_allowed", async () => {
    await expectError(gw.fetch("/v1/chat/completions", { headers: { authorization: `Bearer ${KEYS.web}` } }), 405, "method_not_allowed");
    await expectError(gw.fetch("/v1/embeddings", { headers: { authorization: `Bearer ${KEYS.web}` } }), 405, "method_not_allowed");
    await expectError(
      gw.fetch("/v1/models", { method: "POST", headers: { authorization: `Bearer ${KEYS.web}`, "content-type": "application/json" }, body: "{}" }),
      405,
      "method_not_allowed",
    );
  });
});

describe("provider failures", () => {
  test("upstream 500 → 502 upstream_error (also for a streamed request)", async () => {
    await expectError(gw.post("/v1/chat/completions", chatBody("fail-500"), { key: KEYS.web }), 502, "upstream_error");
    await expectError(
      gw.post("/v1/chat/completions", chatBody("fail-500", "x", { stream: true }), { key: KEYS.web }),
      502,
      "upstream_error",
    );
  });

  test("upstream 429 → 429 with the upstream's Retry-After", async () => {
    const err = await expectError(gw.post("/v1/chat/completions", chatBody("fail-429"), { key: KEYS.web }), 429);
    assert.equal(err.res.headers.get("retry-after"), "7");
    assert.equal(err.code, "upstream_error", err.raw);
  });

  test("upstream 401 → 502, and its text (a masked key) never reaches the client", async () => {
    const err = await expectError(gw.post("/v1/chat/completions", chatBody("fail-401"), { key: KEYS.web }), 502, "upstream_error");
    assert.ok(!err.raw.includes("sk-ups"), `leaked upstream key fragment: ${err.raw}`);
    assert.ok(!err.raw.includes("Incorrect API key"), `leaked upstream error text: ${err.raw}`);
    for (const [name, value] of err.res.headers) assert.ok(!value.includes("sk-ups"), `leaked in header ${name}`);
  });

  test("upstream 400 → 400 with the upstream's error body forwarded", async () => {
    const err = await expectError(gw.post("/v1/chat/completions", chatBody("fail-400"), { key: KEYS.web }), 400);
    const upstreamBody = JSON.parse(up.lastRequest("/v1/chat/completions").response.body);
    assert.deepEqual(JSON.parse(err.raw), upstreamBody);
  });

  test("upstream never answers → 504 upstream_timeout, and the upstream call is abandoned", async () => {
    const pending = gw.post("/v1/chat/completions", chatBody("hang"), { key: KEYS.web });
    const handle = await up.waitFor("hang");
    await expectError(withTimeout(pending, 15_000, "the gateway's upstream timeout"), 504, "upstream_timeout");
    const done = await withTimeout(handle.done, 15_000, "the gateway to close the hanging upstream request");
    assert.equal(done.closedByPeer, true);
  });

  test("unreachable upstream → 502 upstream_unreachable; unbound key secret → 500 missing_secret", async () => {
    // A port that was just free: nothing listens there.
    const net = await import("node:net");
    const port = await new Promise((resolve) => {
      const srv = net.createServer().listen(0, "127.0.0.1", () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    const gw2 = await startGateway({
      config: makeConfig({
        providers: {
          dead: { kind: "openai", base_url: `http://127.0.0.1:${port}/v1` },
          keyless: { kind: "openai", base_url: up.baseUrl, api_key_secret: "NOT_BOUND_API_KEY" },
        },
        models: { dead: { provider: "dead" }, keyless: { provider: "keyless", upstream_model: "gpt-4o-mini" } },
      }),
    });
    try {
      await expectError(gw2.post("/v1/chat/completions", chatBody("dead"), { key: KEYS.web }), 502, "upstream_unreachable");
      const before = up.requests.length;
      const err = await expectError(
        gw2.post("/v1/chat/completions", chatBody("keyless"), { key: KEYS.web }),
        500,
        "missing_secret",
      );
      assert.equal(up.requests.length, before, "nothing was sent without the provider key");
      assert.ok(!err.raw.includes(KEYS.upstream));
    } finally {
      await gw2.dispose();
    }
  });

  test("neither keys nor upstream error texts appear in the Worker's logs", async () => {
    assert.ok(gw.logs.length > 0, "the Worker logged usage events");
    for (const { message } of gw.logs) {
      assert.ok(!message.includes(KEYS.upstream), `provider key in logs: ${message}`);
      assert.ok(!message.includes(KEYS.web), `consumer key in logs: ${message}`);
      assert.ok(!message.includes(KEYS.limited), `consumer key in logs: ${message}`);
      assert.ok(!message.includes("sk-ups"), `upstream key fragment in logs: ${message}`);
    }
  });
});

describe("invalid configuration", () => {
  let bad;
  before(async () => {
    const config = makeConfig({ models: { gpt: { provider: "opnai" } } });
    bad = await startGateway({ config });
  });
  after(async () => {
    await bad?.dispose();
  });

  test("an invalid document → 500 config_invalid naming the field", async () => {
    const err = await expectError(bad.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.web }), 500, "config_invalid");
    assert.match(err.message, /models\.gpt\.provider/);
    // Every route, before auth.
    await expectError(bad.fetch("/v1/models"), 500, "config_invalid");
  });

  test("wrong types, unknown fields and broken JSON are config_invalid too", async () => {
    const cases = [
      [makeConfig({ limits: { max_body_bytes: "big" } }), /limits\.max_body_bytes/],
      [{ ...makeConfig(), surprise: true }, /surprise/],
      [makeConfig({ providers: { up2: { kind: "openai_compatible" } }, models: { x: { provider: "up2" } } }), /providers\.up2\b.*base_url/],
      ['{"models": {', null],
    ];
    for (const [doc, pattern] of cases) {
      await bad.kv.put("config", typeof doc === "string" ? doc : JSON.stringify(doc));
      const err = await expectError(bad.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.web }), 500, "config_invalid");
      if (pattern) assert.match(err.message, pattern);
    }
    await bad.kv.delete("config");
  });

  test("the client sees which fields are invalid, never their values", async () => {
    const doc = makeConfig({ providers: { leaky: { kind: "openai", base_url: "ftp://deploy:hunter2@10.0.0.1/v1" } }, models: { x: { provider: "leaky" } } });
    await bad.kv.put("config", JSON.stringify(doc));
    const res = await bad.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.web });
    const requestId = res.headers.get("x-request-id");
    const err = await expectError(Promise.resolve(res), 500, "config_invalid");
    assert.match(err.message, /providers\.leaky\.base_url/);
    assert.ok(!err.raw.includes("hunter2") && !err.raw.includes("10.0.0.1"), err.raw);
    const event = await bad.waitForLog((e) => e.request_id === requestId);
    assert.match(event.error_detail, /providers\.leaky\.base_url: must be/);
    await bad.kv.delete("config");
  });
});
