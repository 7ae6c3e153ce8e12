// The official `openai` npm SDK as the client, pointed at the gateway (baseURL = gateway + /v1,
// apiKey = a consumer key): it must work unchanged, errors included.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { KEYS, startWithUpstream } from "../harness.mjs";
import { upstreamEmbedding, upstreamReplyText } from "../mock-upstream.mjs";

let suite;
let up;
let gw;
let config;
let client;

before(async () => {
  suite = await startWithUpstream();
  ({ up, gw, config } = suite);
  client = new OpenAI({ baseURL: gw.baseUrl, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
});
after(() => suite?.dispose());

describe("official openai SDK against the gateway", () => {
  test("chat.completions.create (mock and upstream)", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "mock", messages: [{ role: "user", content: "Hello SDK" }] })
      .withResponse();
    assert.ok(response.headers.get("x-request-id"));
    assert.equal(data._request_id, response.headers.get("x-request-id"));
    assert.ok(data.choices[0].message.content.startsWith("This is a mock response"));
    assert.ok(data.choices[0].message.content.includes("Hello SDK"));
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);

    const viaUpstream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Hello upstream" }],
    });
    assert.equal(viaUpstream.choices[0].message.content, upstreamReplyText("Hello upstream"));
    const seen = up.lastRequest("/v1/chat/completions");
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`);
  });

  test("streamed chat with include_usage: content deltas, then usage", async () => {
    for (const [model, expected] of [
      ["mock", null],
      ["gpt-4o-mini", upstreamReplyText("Stream SDK")],
    ]) {
      const stream = await client.chat.completions.create({
        model,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Stream SDK" }],
      });
      let text = "";
      let usage = null;
      let chunks = 0;
      let finish = null;
      for await (const chunk of stream) {
        chunks++;
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        if (choice) {
          text += choice.delta?.content ?? "";
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
      assert.ok(chunks > 2, `${model}: several chunks`);
      assert.equal(finish, "stop");
      if (expected) assert.equal(text, expected);
      else assert.ok(text.startsWith("This is a mock response") && text.includes("Stream SDK"), text);
      assert.ok(usage && usage.total_tokens > 0, `${model}: usage at the end`);
      assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    }
  });

  test("streamed chat without include_usage carries no usage", async () => {
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      stream: true,
      messages: [{ role: "user", content: "no usage" }],
    });
    let text = "";
    for await (const chunk of stream) {
      assert.ok(!chunk.usage, "no usage when not asked");
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    assert.equal(text, upstreamReplyText("no usage"));
  });

  test("embeddings.create (the SDK asks for base64 and decodes it)", async () => {
    const mock = await client.embeddings.create({ model: "mock-embed", input: "embed me" });
    assert.equal(mock.data.length, 1);
    assert.equal(mock.data[0].embedding.length, 256);
    const norm = Math.sqrt(mock.data[0].embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-5, `unit vector, norm ${norm}`);

    const viaUpstream = await client.embeddings.create({ model: "embed", input: ["a", "b"], dimensions: 16 });
    assert.equal(up.lastRequest("/v1/embeddings").body.encoding_format, "base64");
    assert.deepEqual(Array.from(viaUpstream.data[1].embedding), upstreamEmbedding("b", 16));

    const floats = await client.embeddings.create({ model: "mock-embed", input: "embed me", encoding_format: "float" });
    assert.deepEqual(
      Array.from(mock.data[0].embedding),
      floats.data[0].embedding.map((x) => Math.fround(x)),
    );
  });

  test("models.list and models.retrieve", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), Object.keys(config.models).sort());
    const one = await client.models.retrieve("mock");
    assert.equal(one.id, "mock");
  });

  test("errors surface as the SDK's typed errors", async () => {
    const bad = new OpenAI({ baseURL: gw.baseUrl, apiKey: "sk-gw-wrong", maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.code === "invalid_api_key");
    await assert.rejects(
      client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
      (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
    );
    await assert.rejects(
      client.chat.completions.create({ model: "fail-429", messages: [{ role: "user", content: "x" }] }),
      (e) => e instanceof OpenAI.RateLimitError && e.headers.get("retry-after") === "7",
    );
    const limited = new OpenAI({ baseURL: gw.baseUrl, apiKey: KEYS.limited, maxRetries: 0 });
    await assert.rejects(
      limited.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] }),
      (e) => e instanceof OpenAI.PermissionDeniedError && e.code === "model_not_allowed",
    );
  });

  test("a stream that breaks mid-way raises an APIError while iterating", async () => {
    const stream = await client.chat.completions.create({
      model: "broken",
      stream: true,
      messages: [{ role: "user", content: "break" }],
    });
    let text = "";
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
      })(),
      (e) => e instanceof OpenAI.APIError,
    );
    assert.equal(text, "Upstream ", "chunks before the break were delivered");
  });
});
