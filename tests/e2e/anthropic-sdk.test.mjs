// The official Anthropic SDK (`@anthropic-ai/sdk` 1.x) as the client of the gateway's Anthropic
// Messages route. `new Anthropic({ baseURL: gw.url })` posts to `${baseURL}/v1/messages` with the
// key as `Authorization: Bearer` (`x-api-key` is checked with a raw request). The gateway
// translates to its internal OpenAI format, routes to any provider, and translates the answer
// (whole, streamed, tool calls, errors) back. Covered here: the built-in mock, an OpenAI-format
// upstream (mock-upstream.mjs: cross-provider translation, checked on the wire), and translating
// providers returning tool calls (provider-mocks.mjs).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { KEYS, assertRequestId, makeConfig, startGateway } from "../harness.mjs";
import { startMockUpstream, upstreamReplyText } from "../mock-upstream.mjs";
import { PROVIDER_KEYS, replyText, startProviderMocks } from "../provider-mocks.mjs";

let up; // OpenAI-format upstream
let mocks; // Anthropic, Gemini, Bedrock, Cohere upstreams
let gw;
let client;

const TOOL_PROVIDERS = ["anthropic", "gemini", "bedrock", "cohere"];

const TOOLS = [
  {
    name: "get_weather",
    description: "Current weather in a city",
    input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
  { name: "get_time", input_schema: { type: "object", properties: { tz: { type: "string" } } } },
];

/** What every `*-tools` provider mock answers (provider-mocks.mjs). */
const EXPECTED_CALLS = [
  ["get_weather", { city: "Paris" }],
  ["get_time", { tz: "Europe/Paris" }],
];

/** The built-in mock's reply to a last user message (edge/src/provider/mock.rs). */
const mockReply = (text) => `This is a mock response from the edge gateway. You said: ${text}`;

before(async () => {
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  mocks = await startProviderMocks();
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl });
  config.providers = {
    ...config.providers,
    anthropic: { kind: "anthropic", base_url: mocks.baseUrl("anthropic"), api_key_secret: "ANTHROPIC_API_KEY" },
    gemini: { kind: "gemini", base_url: mocks.baseUrl("gemini"), api_key_secret: "GEMINI_API_KEY" },
    bedrock: {
      kind: "bedrock",
      region: PROVIDER_KEYS.awsRegion,
      base_url: mocks.baseUrl("bedrock"),
      access_key_id_secret: "AWS_ACCESS_KEY_ID",
      secret_access_key_secret: "AWS_SECRET_ACCESS_KEY",
    },
    cohere: { kind: "cohere", base_url: mocks.baseUrl("cohere"), api_key_secret: "COHERE_API_KEY" },
  };
  config.models = {
    ...config.models,
    claude: { provider: "anthropic", upstream_model: "claude-test" },
    "claude-error": { provider: "anthropic", upstream_model: "anthropic-error" },
  };
  for (const p of TOOL_PROVIDERS) config.models[`${p}-tools`] = { provider: p, upstream_model: `${p}-tools` };
  gw = await startGateway({
    config,
    secrets: {
      OPENAI_API_KEY: KEYS.upstream,
      ANTHROPIC_API_KEY: PROVIDER_KEYS.anthropic,
      GEMINI_API_KEY: PROVIDER_KEYS.gemini,
      AWS_ACCESS_KEY_ID: PROVIDER_KEYS.awsAccessKeyId,
      AWS_SECRET_ACCESS_KEY: PROVIDER_KEYS.awsSecretAccessKey,
      COHERE_API_KEY: PROVIDER_KEYS.cohere,
    },
  });
  client = new Anthropic({ baseURL: gw.url, apiKey: KEYS.web, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await gw?.dispose();
  await mocks?.close();
  await up?.close();
});

function assertAccepted(provider) {
  const last = mocks.requests.filter((r) => r.provider === provider).at(-1);
  assert.ok(last, `${provider} mock saw no request`);
  assert.equal(last.rejected, undefined, `${provider} rejected the translated request: ${last.rejected}`);
  return last;
}

/** Runs a MessageStream to its end: text deltas, input-JSON deltas and the final message. */
async function runStream(stream) {
  const texts = [];
  const inputJson = [];
  const events = [];
  stream.on("text", (delta) => texts.push(delta));
  stream.on("inputJson", (partial) => inputJson.push(partial));
  stream.on("streamEvent", (event) => events.push(event.type));
  const final = await stream.finalMessage();
  return { final, texts, inputJson, events };
}

describe("official Anthropic SDK against the gateway's /v1/messages", () => {
  test("messages.create (mock): text, stop_reason and usage agree with the OpenAI route", async () => {
    // What the SDK sends: POST {baseURL}/v1/messages. SDK 1.x sends the key as
    // `Authorization: Bearer` (older 0.x SDKs and Anthropic's curl examples use `x-api-key`,
    // covered below); the gateway accepts both.
    const sent = [];
    const recording = new Anthropic({
      baseURL: gw.url,
      apiKey: KEYS.web,
      maxRetries: 0,
      fetch: (url, init) => {
        sent.push({ url: String(url), method: init.method, headers: new Headers(init.headers) });
        return fetch(url, init);
      },
    });
    const system = "Be brief.";
    const { data: message, response } = await recording.messages
      .create({ model: "mock", max_tokens: 256, system, messages: [{ role: "user", content: "Hello Claude" }] })
      .withResponse();
    assert.equal(sent.length, 1);
    assert.equal(sent[0].url, `${gw.url}/v1/messages`);
    assert.equal(sent[0].method, "POST");
    assert.equal(sent[0].headers.get("authorization"), `Bearer ${KEYS.web}`);
    assert.equal(sent[0].headers.get("x-api-key"), null);
    assert.ok(sent[0].headers.get("anthropic-version"), "the SDK names an API version");
    assert.equal(response.status, 200);
    assertRequestId(response);
    assert.equal(response.headers.get("x-gateway-provider"), "mock");
    assert.equal(message.type, "message");
    assert.equal(message.role, "assistant");
    assert.equal(message.model, "mock");
    assert.match(message.id, /^msg_/);
    assert.deepEqual(message.content, [{ type: "text", text: mockReply("Hello Claude") }]);
    assert.equal(message.stop_reason, "end_turn");
    assert.equal(message.stop_sequence, null);

    // The same conversation on the OpenAI route: the same answer and the same token counts.
    const openai = await gw
      .post(
        "/v1/chat/completions",
        { model: "mock", max_tokens: 256, messages: [{ role: "system", content: system }, { role: "user", content: "Hello Claude" }] },
        { key: KEYS.web },
      )
      .then((r) => r.json());
    assert.equal(openai.choices[0].message.content, message.content[0].text);
    assert.deepEqual(message.usage, {
      input_tokens: openai.usage.prompt_tokens,
      output_tokens: openai.usage.completion_tokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    });

    const event = await gw.waitForLog((e) => e.request_id === response.headers.get("x-request-id"));
    assert.equal(event.consumer, "web");
    assert.equal(event.operation, "messages");
    assert.equal(event.usage.output_tokens, message.usage.output_tokens);
  });

  test("the key in x-api-key (Anthropic's own header) authenticates too; a wrong one is an Anthropic 401", async () => {
    const send = (key) =>
      fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01" },
        body: JSON.stringify({ model: "mock", max_tokens: 64, messages: [{ role: "user", content: "Hello via x-api-key" }] }),
      });
    const ok = await send(KEYS.web);
    assert.equal(ok.status, 200);
    const message = await ok.json();
    assert.equal(message.type, "message");
    assert.deepEqual(message.content, [{ type: "text", text: mockReply("Hello via x-api-key") }]);
    const event = await gw.waitForLog((e) => e.request_id === ok.headers.get("x-request-id"));
    assert.equal(event.consumer, "web");

    const bad = await send("sk-gw-wrong-key");
    assert.equal(bad.status, 401);
    assert.deepEqual(await bad.json(), { type: "error", error: { type: "authentication_error", message: "Incorrect API key provided." } });
  });

  test("max_tokens cuts the mock's answer: stop_reason max_tokens", async () => {
    const message = await client.messages.create({ model: "mock", max_tokens: 3, messages: [{ role: "user", content: "a long question" }] });
    assert.equal(message.stop_reason, "max_tokens");
    assert.equal(message.usage.output_tokens, 3);
    assert.equal(message.content[0].text, "This is a ");
  });

  test("messages.stream (mock): text events, finalMessage and usage", async () => {
    const whole = await client.messages.create({ model: "mock", max_tokens: 256, messages: [{ role: "user", content: "Stream, please" }] });
    const stream = client.messages.stream({ model: "mock", max_tokens: 256, messages: [{ role: "user", content: "Stream, please" }] });
    const { final, texts, events } = await runStream(stream);
    assert.ok(texts.length > 3, `several text deltas: ${JSON.stringify(texts)}`);
    assert.equal(texts.join(""), mockReply("Stream, please"));
    assert.equal(events[0], "message_start");
    assert.equal(events.at(-1), "message_stop");
    assert.deepEqual(
      [...new Set(events)],
      ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"],
    );
    assert.equal(final.model, "mock");
    assert.deepEqual(final.content, [{ type: "text", text: mockReply("Stream, please") }]);
    assert.equal(final.stop_reason, "end_turn");
    // The real counts arrive in message_delta; they match the whole answer's.
    assert.deepEqual(final.usage, whole.usage);
    assert.equal(await stream.finalText(), whole.content[0].text);
  });

  test("cross-provider: an OpenAI-format upstream gets an OpenAI request and its answer comes back as a message", async () => {
    up.reset();
    const { data: message, response } = await client.messages
      .create({
        model: "gpt-4o-mini",
        max_tokens: 300,
        system: [{ type: "text", text: "You are terse." }],
        temperature: 0.2,
        stop_sequences: ["END"],
        metadata: { user_id: "user-42" },
        messages: [{ role: "user", content: [{ type: "text", text: "Hello upstream" }] }],
      })
      .withResponse();
    assert.equal(response.headers.get("x-gateway-provider"), "upstream");
    assert.equal(message.model, "gpt-4o-mini");
    assert.deepEqual(message.content, [{ type: "text", text: upstreamReplyText("Hello upstream") }]);
    assert.equal(message.stop_reason, "end_turn");

    const [seen] = up.requestsTo("/v1/chat/completions");
    assert.equal(up.requestsTo("/v1/chat/completions").length, 1);
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`, "the provider key, not the client's");
    assert.equal(seen.headers["x-api-key"], undefined, "the client's key is not forwarded");
    assert.equal(seen.headers["anthropic-version"], undefined);
    assert.deepEqual(seen.body, {
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Hello upstream" },
      ],
      max_tokens: 300,
      temperature: 0.2,
      stop: ["END"],
      user: "user-42",
    });
    const upstreamUsage = JSON.parse(seen.response.body).usage;
    assert.deepEqual(message.usage, {
      input_tokens: upstreamUsage.prompt_tokens,
      output_tokens: upstreamUsage.completion_tokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    });
  });

  test("cross-provider streaming: OpenAI chunks become Anthropic events", async () => {
    up.reset();
    const { final, texts } = await runStream(
      client.messages.stream({ model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: "Stream upstream" }] }),
    );
    assert.equal(texts.join(""), upstreamReplyText("Stream upstream"));
    assert.deepEqual(final.content, [{ type: "text", text: upstreamReplyText("Stream upstream") }]);
    assert.equal(final.stop_reason, "end_turn");
    const [seen] = up.requestsTo("/v1/chat/completions");
    assert.equal(seen.body.stream, true);
    assert.deepEqual(seen.body.stream_options, { include_usage: true }, "usage is always asked for");
    const usage = JSON.parse(seen.sse.at(-2)).usage;
    assert.equal(final.usage.input_tokens, usage.prompt_tokens);
    assert.equal(final.usage.output_tokens, usage.completion_tokens);
  });

  test("cross-provider tools: definitions, tool_use and tool_result reach the OpenAI upstream in its format", async () => {
    up.reset();
    const message = await client.messages.create({
      model: "gpt-4o-mini",
      max_tokens: 200,
      tools: TOOLS,
      tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: [
            { type: "text", text: "Let me check." },
            { type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_01", content: "21 degrees" },
            { type: "text", text: "Thanks" },
          ],
        },
      ],
    });
    assert.equal(message.content[0].text, upstreamReplyText("Thanks"));
    const [seen] = up.requestsTo("/v1/chat/completions");
    assert.deepEqual(seen.body.messages, [
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: "Let me check.",
        tool_calls: [{ id: "toolu_01", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }],
      },
      { role: "tool", tool_call_id: "toolu_01", content: "21 degrees" },
      { role: "user", content: "Thanks" },
    ]);
    assert.deepEqual(seen.body.tools, [
      { type: "function", function: { name: "get_weather", description: "Current weather in a city", parameters: TOOLS[0].input_schema } },
      { type: "function", function: { name: "get_time", parameters: TOOLS[1].input_schema } },
    ]);
    assert.deepEqual(seen.body.tool_choice, { type: "function", function: { name: "get_weather" } });
    assert.equal(seen.body.parallel_tool_calls, false);
  });

  for (const p of TOOL_PROVIDERS) {
    test(`${p}: tool calls come back as tool_use blocks with parsed input, whole and streamed`, async () => {
      const request = { model: `${p}-tools`, max_tokens: 200, tools: TOOLS, messages: [{ role: "user", content: "Weather and time in Paris?" }] };
      const message = await client.messages.create(request);
      assertAccepted(p);
      assert.equal(message.stop_reason, "tool_use");
      assert.deepEqual(
        message.content.map((b) => [b.type, b.name, b.input]),
        EXPECTED_CALLS.map(([name, input]) => ["tool_use", name, input]),
      );
      const ids = message.content.map((b) => b.id);
      assert.ok(ids.every((id) => typeof id === "string" && id.length > 0), `ids: ${ids}`);
      assert.notEqual(ids[0], ids[1]);
      if (p !== "gemini") assert.deepEqual(ids, ["call_weather_1", "call_time_2"], "the provider's call ids are kept");

      const { final, inputJson } = await runStream(client.messages.stream(request));
      assertAccepted(p);
      assert.equal(final.stop_reason, "tool_use");
      assert.deepEqual(
        final.content.map((b) => [b.type, b.name, b.input]),
        EXPECTED_CALLS.map(([name, input]) => ["tool_use", name, input]),
      );
      assert.equal(inputJson.join(""), EXPECTED_CALLS.map(([, input]) => JSON.stringify(input)).join(""));
      if (p !== "gemini") assert.deepEqual(final.content.map((b) => b.id), ["call_weather_1", "call_time_2"]);
    });
  }

  test("anthropic upstream: usage with cache reads and writes survives the round trip exactly", async () => {
    const message = await client.messages.create({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: "Hi there" }] });
    const sent = assertAccepted("anthropic");
    assert.equal(sent.body.model, "claude-test");
    assert.equal(sent.headers["x-api-key"], PROVIDER_KEYS.anthropic, "the provider key, not the client's");
    assert.deepEqual(message.content, [{ type: "text", text: replyText("anthropic", "Hi there") }]);
    // provider-mocks.mjs: input 12, cache writes 5, cache reads 100; one output token per word.
    assert.deepEqual(message.usage, {
      input_tokens: 12,
      output_tokens: replyText("anthropic", "Hi there").match(/\S+\s*/g).length,
      cache_creation_input_tokens: 5,
      cache_read_input_tokens: 100,
    });
  });

  test("an error inside the stream is raised by the SDK with Anthropic's error type", async () => {
    const stream = client.messages.stream({ model: "claude-error", max_tokens: 100, messages: [{ role: "user", content: "Hi" }] });
    const texts = [];
    stream.on("text", (delta) => texts.push(delta));
    await assert.rejects(stream.finalMessage(), (e) => {
      assert.ok(e instanceof Anthropic.APIError, `an APIError: ${e}`);
      assert.equal(e.type, "overloaded_error");
      return true;
    });
    assert.equal(texts.join(""), "Hello from ", "text before the error was delivered");
  });

  test("unknown model → NotFoundError with an Anthropic-shaped body", async () => {
    await assert.rejects(client.messages.create({ model: "nope", max_tokens: 10, messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.NotFoundError, `NotFoundError, got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 404);
      assert.equal(e.type, "not_found_error");
      assert.deepEqual(e.error, {
        type: "error",
        error: { type: "not_found_error", message: "The model 'nope' does not exist on this gateway." },
      });
      assert.ok(e.headers.get("x-request-id"));
      return true;
    });
  });

  test("a bad API key → AuthenticationError; a model the key may not use → PermissionDeniedError", async () => {
    const bad = new Anthropic({ baseURL: gw.url, apiKey: "sk-gw-wrong-key", maxRetries: 0 });
    await assert.rejects(bad.messages.create({ model: "mock", max_tokens: 10, messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.AuthenticationError, `AuthenticationError, got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 401);
      assert.deepEqual(e.error, { type: "error", error: { type: "authentication_error", message: "Incorrect API key provided." } });
      return true;
    });
    const limited = new Anthropic({ baseURL: gw.url, apiKey: KEYS.limited, maxRetries: 0 });
    await assert.rejects(limited.messages.create({ model: "gpt-4o-mini", max_tokens: 10, messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.PermissionDeniedError, `PermissionDeniedError, got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 403);
      assert.equal(e.type, "permission_error");
      return true;
    });
  });

  test("an invalid request and an upstream 429 map to BadRequestError and RateLimitError", async () => {
    await assert.rejects(client.messages.create({ model: "mock", messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.BadRequestError, `BadRequestError, got ${e?.constructor?.name}: ${e}`);
      assert.deepEqual(e.error, { type: "error", error: { type: "invalid_request_error", message: "max_tokens: Field required" } });
      return true;
    });
    await assert.rejects(client.messages.create({ model: "fail-429", max_tokens: 10, messages: [{ role: "user", content: "x" }] }), (e) => {
      assert.ok(e instanceof Anthropic.RateLimitError, `RateLimitError, got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.type, "rate_limit_error");
      assert.equal(e.headers.get("retry-after"), "7");
      return true;
    });
  });
});
