// Every translating provider through the built Worker, with the official openai SDK as the
// client: whole and streamed chat, parallel tool calls, usage normalisation, errors after the
// 200, truncated streams, provider 400s, and a rich request each mock accepts only if it is in
// the provider's real format.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { KEYS, makeConfig, readError, readSse, startGateway } from "../harness.mjs";
import { PROVIDER_KEYS, replyText, startProviderMocks } from "../provider-mocks.mjs";

let mocks;
let gw;
let client;

const PROVIDERS = ["anthropic", "gemini", "vertex", "bedrock", "cohere", "azure"];

/** Expected normalised prompt usage per provider (see provider-mocks.mjs). */
const PROMPT = {
  anthropic: { prompt_tokens: 12 + 100 + 5, cached: 100 },
  gemini: { prompt_tokens: 120, cached: 100 },
  vertex: { prompt_tokens: 120, cached: 100 },
  bedrock: { prompt_tokens: 20 + 100 + 5, cached: 100 },
  cohere: { prompt_tokens: 80, cached: 0 },
  azure: { prompt_tokens: 9, cached: 0 },
};

before(async () => {
  mocks = await startProviderMocks();
  const config = makeConfig({});
  config.providers = {
    ...config.providers,
    anthropic: { kind: "anthropic", base_url: mocks.baseUrl("anthropic"), api_key_secret: "ANTHROPIC_API_KEY" },
    gemini: { kind: "gemini", base_url: mocks.baseUrl("gemini"), api_key_secret: "GEMINI_API_KEY" },
    vertex: { kind: "vertex", project: "acme-ai", location: "europe-west4", base_url: mocks.baseUrl("vertex"), access_token_secret: "VERTEX_TOKEN" },
    bedrock: {
      kind: "bedrock",
      region: PROVIDER_KEYS.awsRegion,
      base_url: mocks.baseUrl("bedrock"),
      access_key_id_secret: "AWS_ACCESS_KEY_ID",
      secret_access_key_secret: "AWS_SECRET_ACCESS_KEY",
    },
    cohere: { kind: "cohere", base_url: mocks.baseUrl("cohere"), api_key_secret: "COHERE_API_KEY" },
    azure: { kind: "azure_openai", base_url: mocks.baseUrl("azure"), api_version: "2024-10-21", api_key_secret: "AZURE_API_KEY" },
  };
  const upstreamModel = { anthropic: "claude-test", gemini: "gemini-test", vertex: "gemini-test", bedrock: "anthropic.claude-3-haiku-20240307-v1:0", cohere: "command-test", azure: "gpt4o-deployment" };
  for (const p of PROVIDERS) {
    config.models[p] = { provider: p, upstream_model: upstreamModel[p] };
    config.models[`${p}-tools`] = { provider: p, upstream_model: `${p}-tools` };
    config.models[`${p}-error`] = { provider: p, upstream_model: `${p}-error` };
    config.models[`${p}-truncated`] = { provider: p, upstream_model: `${p}-truncated` };
    config.models[`${p}-400`] = { provider: p, upstream_model: "status-400" };
  }
  config.models["cohere-embed"] = { provider: "cohere", upstream_model: "embed-v4.0", type: "embeddings" };
  gw = await startGateway({
    config,
    secrets: {
      ANTHROPIC_API_KEY: PROVIDER_KEYS.anthropic,
      GEMINI_API_KEY: PROVIDER_KEYS.gemini,
      VERTEX_TOKEN: PROVIDER_KEYS.vertex,
      AWS_ACCESS_KEY_ID: PROVIDER_KEYS.awsAccessKeyId,
      AWS_SECRET_ACCESS_KEY: PROVIDER_KEYS.awsSecretAccessKey,
      COHERE_API_KEY: PROVIDER_KEYS.cohere,
      AZURE_API_KEY: PROVIDER_KEYS.azure,
    },
  });
  client = new OpenAI({ baseURL: gw.baseUrl, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
});
after(async () => {
  await gw?.dispose();
  await mocks?.close();
});

function lastRequest(provider) {
  return mocks.requests.filter((r) => r.provider === provider).at(-1);
}

function assertAccepted(provider) {
  const last = lastRequest(provider);
  assert.ok(last, `${provider} mock saw no request`);
  assert.equal(last.rejected, undefined, `${provider} rejected the translated request: ${last.rejected}\n${JSON.stringify(last.body, null, 1)}`);
}

describe("providers through the Worker", () => {
  for (const p of PROVIDERS) {
    test(`${p}: whole chat completion with normalised usage`, async () => {
      const res = await client.chat.completions.create({
        model: p,
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hi there" },
        ],
        max_tokens: 200,
        temperature: 0.5,
      });
      assertAccepted(p);
      assert.equal(res.object, "chat.completion");
      assert.equal(res.choices[0].message.role, "assistant");
      assert.equal(res.choices[0].message.content, replyText(p, "Hi there"));
      assert.equal(res.choices[0].finish_reason, "stop");
      assert.equal(res.usage.prompt_tokens, PROMPT[p].prompt_tokens, JSON.stringify(res.usage));
      assert.equal(res.usage.prompt_tokens_details?.cached_tokens ?? 0, PROMPT[p].cached);
      assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
    });

    test(`${p}: streamed chat, role first, usage last`, async () => {
      const stream = await client.chat.completions.create({
        model: p,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Stream it" }],
      });
      let text = "";
      let first = null;
      let usage = null;
      let finish = null;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        if (!choice) continue;
        first ??= choice.delta;
        text += choice.delta.content ?? "";
        finish = choice.finish_reason ?? finish;
      }
      assertAccepted(p);
      assert.equal(first.role, "assistant", "the first delta carries the role");
      assert.equal(text, replyText(p, "Stream it"));
      assert.equal(finish, "stop");
      assert.ok(usage, "usage chunk at the end");
      assert.equal(usage.prompt_tokens, PROMPT[p].prompt_tokens);
    });

    if (p === "azure") continue; // an OpenAI-shaped upstream: covered by the OpenAI suites

    test(`${p}: two parallel tool calls, whole and streamed`, async () => {
      const tools = [
        { type: "function", function: { name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
        { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { tz: { type: "string" } } } } },
      ];
      const whole = await client.chat.completions.create({ model: `${p}-tools`, tools, messages: [{ role: "user", content: "Weather and time in Paris?" }] });
      assertAccepted(p);
      const calls = whole.choices[0].message.tool_calls;
      assert.equal(calls.length, 2);
      assert.deepEqual(calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [["get_weather", { city: "Paris" }], ["get_time", { tz: "Europe/Paris" }]]);
      assert.equal(whole.choices[0].finish_reason, "tool_calls");
      assert.ok(calls.every((c) => c.type === "function" && typeof c.id === "string" && c.id.length > 0));

      const stream = await client.chat.completions.create({ model: `${p}-tools`, tools, stream: true, messages: [{ role: "user", content: "Weather and time in Paris?" }] });
      const built = [];
      let finish = null;
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        finish = choice.finish_reason ?? finish;
        for (const d of choice.delta.tool_calls ?? []) {
          built[d.index] ??= { id: "", name: "", arguments: "" };
          if (d.id) built[d.index].id = d.id;
          if (d.function?.name) built[d.index].name += d.function.name;
          built[d.index].arguments += d.function?.arguments ?? "";
        }
      }
      assert.equal(finish, "tool_calls");
      assert.deepEqual(built.map((c) => [c.name, JSON.parse(c.arguments)]), [["get_weather", { city: "Paris" }], ["get_time", { tz: "Europe/Paris" }]]);
      assert.notEqual(built[0].id, built[1].id);
    });

    test(`${p}: a tool-result conversation with an image is accepted in the provider's format`, async () => {
      const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
      const res = await client.chat.completions.create({
        model: p,
        messages: [
          { role: "system", content: "You are terse." },
          { role: "user", content: [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } }] },
          { role: "assistant", content: null, tool_calls: [{ id: "call_weather_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
          { role: "tool", tool_call_id: "call_weather_1", content: '{"temp_c": 21}' },
          { role: "user", content: "Thanks" },
        ],
        tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, additionalProperties: false } } }],
        stop: ["END"],
      });
      assertAccepted(p);
      assert.equal(res.choices[0].message.content, replyText(p, "Thanks"));
    });

    test(`${p}: an error after the 200 reaches the client as an error event`, async () => {
      const res = await gw.post("/v1/chat/completions", { model: `${p}-error`, stream: true, messages: [{ role: "user", content: "Hi" }] }, { key: KEYS.web });
      assert.equal(res.status, 200);
      const events = await readSse(res);
      const last = JSON.parse(events.at(-1));
      assert.ok(last.error, `last event is an error: ${events.at(-1)}`);
      assert.equal(last.error.code, "upstream_stream_error");
      assert.ok(!events.includes("[DONE]"));
      const event = await gw.waitForLog((e) => e.model === `${p}-error` && e.outcome);
      assert.equal(event.outcome, "stream_error");
    });

    test(`${p}: a stream that ends without its terminal event is reported broken`, async () => {
      const res = await gw.post("/v1/chat/completions", { model: `${p}-truncated`, stream: true, messages: [{ role: "user", content: "Hi" }] }, { key: KEYS.web });
      const events = await readSse(res);
      const last = JSON.parse(events.at(-1));
      assert.ok(last.error, `last event is an error: ${events.at(-1)}`);
      assert.ok(!events.includes("[DONE]"));
    });

    test(`${p}: the provider's 400 comes back as an OpenAI error with its message`, async () => {
      const res = await gw.post("/v1/chat/completions", { model: `${p}-400`, messages: [{ role: "user", content: "Hi" }] }, { key: KEYS.web });
      assert.equal(res.status, 400);
      const error = await readError(res);
      assert.match(error.message, /temperature|max_tokens/);
      assert.ok(!error.raw.includes(PROVIDER_KEYS.anthropic) && !error.raw.includes(PROVIDER_KEYS.awsSecretAccessKey));
    });
  }

  test("cohere embeddings in OpenAI's shape", async () => {
    const res = await client.embeddings.create({ model: "cohere-embed", input: ["a", "bb"], encoding_format: "float" });
    assertAccepted("cohere");
    assert.equal(res.data.length, 2);
    assert.equal(res.data[1].index, 1);
    assert.equal(res.data[0].embedding.length, 1024);
  });

  test("a parameter the provider cannot honour is a 400, not silently dropped", async () => {
    const res = await gw.post("/v1/chat/completions", { model: "anthropic", n: 2, messages: [{ role: "user", content: "Hi" }] }, { key: KEYS.web });
    assert.equal(res.status, 400);
    const error = await readError(res);
    assert.equal(error.param, "n");
  });

  test("an https image URL Bedrock cannot fetch is a clear 400", async () => {
    const res = await gw.post(
      "/v1/chat/completions",
      { model: "bedrock", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }] },
      { key: KEYS.web },
    );
    assert.equal(res.status, 400);
    await readError(res);
  });
});
