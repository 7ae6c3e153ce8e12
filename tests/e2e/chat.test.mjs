// Non-streamed chat completions: the built-in mock provider, and the OpenAI-compatible provider
// against the mock upstream (what is forwarded, with which key, and what comes back).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, assertRequestId, chatBody, startWithUpstream } from "../harness.mjs";
import { upstreamReplyText } from "../mock-upstream.mjs";

let suite;
let up;
let gw;

before(async () => {
  suite = await startWithUpstream();
  ({ up, gw } = suite);
});
after(() => suite?.dispose());

function assertUsage(usage) {
  assert.ok(usage, "usage present");
  for (const f of ["prompt_tokens", "completion_tokens", "total_tokens"]) {
    assert.ok(Number.isInteger(usage[f]) && usage[f] > 0, `usage.${f} > 0: ${JSON.stringify(usage)}`);
  }
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

describe("chat completions (non-streamed)", () => {
  test("mock provider answers deterministically in OpenAI's format", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("mock", "What is the capital of France?"), {
      key: KEYS.web,
    });
    assert.equal(res.status, 200);
    assertRequestId(res);
    assert.match(res.headers.get("content-type"), /^application\/json/);
    assert.equal(res.headers.get("x-gateway-provider"), "mock");
    const body = await res.json();
    assert.equal(body.object, "chat.completion");
    assert.equal(typeof body.id, "string");
    assert.ok(Number.isInteger(body.created));
    assert.equal(body.model, "mock");
    assert.equal(body.choices.length, 1);
    const [choice] = body.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.finish_reason, "stop");
    assert.equal(choice.message.role, "assistant");
    assert.ok(choice.message.content.startsWith("This is a mock response"), choice.message.content);
    assert.ok(choice.message.content.includes("What is the capital of France?"), "echoes the last user message");
    assertUsage(body.usage);

    // Deterministic: the same question gets the same answer.
    const again = await gw
      .post("/v1/chat/completions", chatBody("mock", "What is the capital of France?"), { key: KEYS.web })
      .then((r) => r.json());
    assert.equal(again.choices[0].message.content, choice.message.content);
    assert.deepEqual(again.usage, body.usage);
  });

  test("mock provider echoes the last user message of a conversation", async () => {
    const res = await gw.post(
      "/v1/chat/completions",
      {
        model: "mock",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "first question" },
          { role: "assistant", content: "first answer" },
          { role: "user", content: "second question" },
        ],
      },
      { key: KEYS.web },
    );
    assert.equal(res.status, 200);
    const content = (await res.json()).choices[0].message.content;
    assert.ok(content.includes("second question"), content);
    assert.ok(!content.includes("first question"), content);
  });

  test("openai provider: forwards the body untouched but for the model, with the gateway's key", async () => {
    const sent = {
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: [{ type: "text", text: "Hello upstream" }] },
      ],
      temperature: 0.3,
      top_p: 0.9,
      seed: 42,
      max_completion_tokens: 64,
      metadata: { team: "e2e" },
      // Fields the gateway has never heard of must pass through unchanged.
      x_future_param: { nested: [1, 2.5, "three", null, true], empty: {} },
      reasoning_effort: "low",
      unicode: "héllo ✓ 你好",
    };
    const before = up.requests.length;
    const res = await gw.post("/v1/chat/completions", sent, { key: KEYS.web });
    assert.equal(res.status, 200);
    assertRequestId(res);
    assert.equal(res.headers.get("x-gateway-provider"), "upstream");

    assert.equal(up.requests.length, before + 1, "exactly one upstream request");
    const seen = up.lastRequest();
    assert.equal(seen.method, "POST");
    assert.equal(seen.path, "/v1/chat/completions");
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`);
    for (const [name, value] of Object.entries(seen.headers)) {
      assert.ok(!String(value).includes(KEYS.web), `client key leaked upstream in header ${name}`);
    }
    assert.ok(!seen.rawBody.includes(KEYS.web), "client key leaked upstream in the body");
    assert.match(seen.headers["content-type"], /^application\/json/);
    assert.deepEqual(seen.body, { ...sent, model: "gpt-4o-mini" });

    // The client gets the upstream's answer.
    const body = await res.json();
    assert.equal(seen.response.status, 200);
    assert.deepEqual(body, JSON.parse(seen.response.body));
    assert.equal(body.choices[0].message.content, upstreamReplyText("Hello upstream"));
  });

  test("openai provider: the client model name is mapped to upstream_model", async () => {
    const res = await gw.post(
      "/v1/chat/completions",
      { model: "slow", messages: [{ role: "user", content: "not streamed" }], user: "u-1" },
      { key: KEYS.web },
    );
    assert.equal(res.status, 200);
    const seen = up.lastRequest("/v1/chat/completions");
    assert.deepEqual(seen.body, {
      model: "slow-stream",
      messages: [{ role: "user", content: "not streamed" }],
      user: "u-1",
    });
    assert.equal((await res.json()).choices[0].message.content, upstreamReplyText("not streamed"));
  });

  test("x-api-key works as the consumer key and is not forwarded either", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini", "via x-api-key"), {
      headers: { "x-api-key": KEYS.web },
    });
    assert.equal(res.status, 200);
    assertRequestId(res);
    const seen = up.lastRequest();
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`);
    for (const [name, value] of Object.entries(seen.headers)) {
      assert.ok(!String(value).includes(KEYS.web), `client key leaked upstream in header ${name}`);
    }
    await res.arrayBuffer();
  });

  test("every request leaves one usage event carrying the request.cf location", async () => {
    const res = await gw.post("/v1/chat/completions", chatBody("mock", "log me"), { key: KEYS.web });
    assert.equal(res.status, 200);
    const id = assertRequestId(res);
    await res.arrayBuffer();
    const event = await gw.waitForLog((e) => e.request_id === id);
    assert.equal(event.country, "DE");
    assert.equal(event.colo, "FRA");
    assert.equal(event.consumer, "web");
    assert.equal(event.model, "mock");
    for (const line of gw.logs) {
      assert.ok(!line.message.includes(KEYS.web), "consumer key in the logs");
      assert.ok(!line.message.includes(KEYS.upstream), "provider key in the logs");
    }
  });
});
