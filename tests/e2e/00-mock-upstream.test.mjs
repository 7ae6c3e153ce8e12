// The mock upstream on its own, driven by the official `openai` SDK and raw HTTP: if these fail,
// the gateway tests that use it mean nothing. No Worker involved.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { readSse, rawRequest, withTimeout } from "../harness.mjs";
import {
  decodeFloat32Base64,
  startMockUpstream,
  upstreamEmbedding,
  upstreamReplyText,
} from "../mock-upstream.mjs";

const KEY = "sk-upstream-selftest-123";
let up;
let client;

before(async () => {
  up = await startMockUpstream({ apiKey: KEY });
  client = new OpenAI({ baseURL: up.baseUrl, apiKey: KEY, maxRetries: 0, timeout: 10_000 });
});
after(async () => {
  await up?.close();
});

const post = (path, body, key = KEY) =>
  fetch(up.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

describe("mock upstream (OpenAI wire format)", () => {
  test("chat completion through the SDK", async () => {
    const c = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "ping" }],
    });
    assert.equal(c.object, "chat.completion");
    assert.equal(c.model, "gpt-4o-mini");
    assert.equal(c.choices[0].message.role, "assistant");
    assert.equal(c.choices[0].message.content, upstreamReplyText("ping"));
    assert.equal(c.choices[0].finish_reason, "stop");
    assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
    const seen = up.lastRequest("/v1/chat/completions");
    assert.equal(seen.headers.authorization, `Bearer ${KEY}`);
    assert.equal(seen.body.model, "gpt-4o-mini");
  });

  test("stream with include_usage: usage:null on every chunk, then a usage chunk with no choices", async () => {
    const res = await post("/v1/chat/completions", {
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "ping" }],
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assert.ok(usageChunk.usage.total_tokens > 0);
    for (const c of chunks.slice(0, -1)) {
      assert.ok("usage" in c && c.usage === null, "usage: null on non-final chunks");
      assert.equal(c.choices.length, 1);
    }
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, upstreamReplyText("ping"));
  });

  test("stream without include_usage has no usage field at all", async () => {
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      stream: true,
      messages: [{ role: "user", content: "ping" }],
    });
    let text = "";
    for await (const chunk of stream) {
      assert.ok(!("usage" in chunk));
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    assert.equal(text, upstreamReplyText("ping"));
  });

  test("embeddings: floats, and base64 the SDK decodes to the same floats", async () => {
    const floats = await post("/v1/embeddings", {
      model: "text-embedding-3-small",
      input: ["a", "b"],
      encoding_format: "float",
      dimensions: 16,
    }).then((r) => r.json());
    assert.equal(floats.object, "list");
    assert.equal(floats.data.length, 2);
    assert.deepEqual(floats.data[0].embedding, upstreamEmbedding("a", 16));
    assert.equal(floats.usage.total_tokens, floats.usage.prompt_tokens);

    const raw = await post("/v1/embeddings", {
      model: "text-embedding-3-small",
      input: "a",
      encoding_format: "base64",
      dimensions: 16,
    }).then((r) => r.json());
    assert.equal(typeof raw.data[0].embedding, "string");
    assert.deepEqual(decodeFloat32Base64(raw.data[0].embedding), upstreamEmbedding("a", 16));

    const viaSdk = await client.embeddings.create({ model: "text-embedding-3-small", input: "a", dimensions: 16 });
    assert.equal(up.lastRequest("/v1/embeddings").body.encoding_format, "base64", "the SDK asks for base64");
    assert.deepEqual(Array.from(viaSdk.data[0].embedding), upstreamEmbedding("a", 16));
  });

  test("models list", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ["gpt-4o-mini", "text-embedding-3-small"]);
  });

  test("401 on a missing or wrong key, 400 on a missing model or messages", async () => {
    for (const key of [null, "sk-wrong-key-999"]) {
      const res = await post("/v1/chat/completions", { model: "gpt-4o-mini", messages: [] }, key);
      assert.equal(res.status, 401);
      const body = await res.json();
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.code, "invalid_api_key");
      assert.equal(body.error.param, null);
    }
    let res = await post("/v1/chat/completions", { messages: [] });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.type, "invalid_request_error");
    res = await post("/v1/chat/completions", { model: "gpt-4o-mini" });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.param, "messages");
    await assert.rejects(
      new OpenAI({ baseURL: up.baseUrl, apiKey: "sk-nope", maxRetries: 0 }).models.list(),
      (e) => e instanceof OpenAI.AuthenticationError,
    );
  });

  test("scripted statuses", async () => {
    const r429 = await post("/v1/chat/completions", { model: "status-429", messages: [] });
    assert.equal(r429.status, 429);
    assert.equal(r429.headers.get("retry-after"), "7");
    assert.equal((await r429.json()).error.code, "rate_limit_exceeded");
    const r401 = await post("/v1/chat/completions", { model: "status-401", messages: [] });
    assert.equal(r401.status, 401);
    assert.match((await r401.json()).error.message, /sk-ups\*\*\*123/);
    const r500 = await post("/v1/chat/completions", { model: "status-500", messages: [] });
    assert.equal(r500.status, 500);
    assert.equal((await r500.json()).error.type, "server_error");
    const r400 = await post("/v1/chat/completions", { model: "status-400", messages: [] });
    assert.equal(r400.status, 400);
    assert.equal((await r400.json()).error.param, "temperature");
  });

  test("slow-stream holds the rest until released", async () => {
    const res = await post("/v1/chat/completions", {
      model: "slow-stream",
      stream: true,
      messages: [{ role: "user", content: "one two three" }],
    });
    const handle = await up.waitFor("slow-stream");
    await handle.firstChunksSent;
    assert.equal(handle.finished, false);
    handle.release();
    const events = await readSse(res);
    assert.equal(handle.finished, true);
    assert.equal(events.at(-1), "[DONE]");
    assert.deepEqual(await handle.done, { closedByPeer: false, finished: true, chunksSent: events.length });
  });

  test("break-stream fails the body after two chunks", async () => {
    const res = await post("/v1/chat/completions", {
      model: "break-stream",
      stream: true,
      messages: [{ role: "user", content: "x" }],
    });
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
  });

  test("endless-stream notices the peer going away; hang never answers", async () => {
    const { res, req } = await rawRequest(up.url + "/v1/chat/completions", {
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: "endless-stream", stream: true, messages: [] }),
    });
    await new Promise((resolve) => res.once("data", resolve));
    const handle = await up.waitFor("endless-stream");
    req.destroy();
    const done = await withTimeout(handle.done, 10_000, "endless-stream close");
    assert.equal(done.closedByPeer, true);

    const ac = new AbortController();
    const pending = fetch(up.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: "hang", messages: [] }),
      signal: ac.signal,
    });
    const hang = await up.waitFor("hang");
    ac.abort();
    await assert.rejects(pending);
    assert.equal((await withTimeout(hang.done, 10_000, "hang close")).closedByPeer, true);
  });
});
