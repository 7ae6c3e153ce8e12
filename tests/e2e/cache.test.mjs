// The exact response cache end to end in workerd (docs/cache.md): x-gateway-cache hit / miss /
// bypass and `age`, what is in the key, canonical forms (key order, number formatting, the same
// conversation through /v1/chat/completions and /v1/messages), cross-consumer isolation,
// namespace confinement, residency (an EU-bound tenant's entry never reaches the KV tier),
// streamed replays read by the official SDKs, single flight, no caching of errors or truncated
// streams, limits on hits, and the savings in the usage event.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { apiKeyAuth, KEYS, makeConfig, postChat, readSse, startGateway, usageEvents as harnessUsageEvents, withTimeout } from "../harness.mjs";
import { startMockUpstream, upstreamReplyText } from "../mock-upstream.mjs";

const ALICE = "sk-cache-alice-0123456789";
const BOB = "sk-cache-bob-0123456789";
const EVE = "sk-cache-eve-eu-0123456789";

let up;
let gw;

const CACHE = { mode: "exact", ttl_s: 600 };

before(async () => {
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  const config = makeConfig({
    upstreamBaseUrl: up.baseUrl,
    auth: apiKeyAuth({ alice: ALICE, bob: BOB, eve: [EVE, { tenant: "eu-corp" }] }),
    models: {
      cached: { provider: "upstream", upstream_model: "gpt-4o-mini", cache: CACHE },
      "cached-slow": { provider: "upstream", upstream_model: "slow-stream", cache: CACHE },
      "cached-500": { provider: "upstream", upstream_model: "status-500", cache: CACHE },
      "cached-broken": { provider: "upstream", upstream_model: "break-stream", cache: CACHE },
      "cached-embed": { provider: "upstream", upstream_model: "text-embedding-3-small", type: "embeddings", cache: CACHE },
    },
  });
  // Residency without a jurisdiction: miniflare has no jurisdiction-pinned Durable Objects for the limits.
  config.tenants = { "eu-corp": { residency: ["eu"] } };
  config.prices = { "gpt-4o-mini": { input: "0.15", output: "0.60" } };
  config.rate_limits = [
    { scope: ["consumer"], metric: "requests", window: "hour", limit: 1000 },
    { scope: ["consumer"], metric: "total_tokens", window: "hour", limit: 1000000 },
  ];
  gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
});

after(async () => {
  await gw?.dispose();
  await up?.close();
});

let counter = 0;
/** A prompt no other test sends. */
const fresh = (label) => `${label} #${++counter} ${Date.now()}`;

const ask = (content, extra = {}) => ({ model: "cached", max_tokens: 64, messages: [{ role: "user", content }], ...extra });

const chat = (body, { key = ALICE, headers = {} } = {}) => postChat(gw, body, { key, headers });

const upstreamCalls = (model = "gpt-4o-mini") => up.requests.filter((r) => r.path === "/v1/chat/completions" && r.model === model).length;

const usageEvents = () => harnessUsageEvents(gw);

describe("hit, miss, bypass", () => {
  test("a repeated request is a hit with age, the same answer and no upstream call", async () => {
    const prompt = fresh("hello");
    const before = upstreamCalls();
    const first = await chat(ask(prompt));
    assert.equal(first.status, 200, first.text);
    assert.equal(first.cache, "miss");
    const second = await chat(ask(prompt));
    assert.equal(second.cache, "hit");
    assert.ok(Number(second.res.headers.get("age")) >= 0);
    assert.equal(second.json().choices[0].message.content, first.json().choices[0].message.content);
    assert.equal(upstreamCalls() - before, 1);
  });

  test("cache-control: no-cache bypasses and refreshes; no-store stores nothing", async () => {
    const prompt = fresh("control");
    const noStore = await chat(ask(prompt), { headers: { "cache-control": "no-store" } });
    assert.equal(noStore.cache, "miss");
    assert.equal((await chat(ask(prompt))).cache, "miss", "no-store stored nothing");
    const bypass = await chat(ask(prompt), { headers: { "cache-control": "no-cache" } });
    assert.equal(bypass.cache, "bypass");
    assert.equal((await chat(ask(prompt))).cache, "hit");
    const bad = await chat(ask(prompt), { headers: { "x-gateway-cache-namespace": "../escape" } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.type, "invalid_request_error");
  });
});

describe("the key", () => {
  test("every generation parameter changes it", async () => {
    const prompt = fresh("params");
    const base = ask(prompt, { temperature: 0.2 });
    assert.equal((await chat(base)).cache, "miss");
    for (const [field, value] of [
      ["temperature", 0.3],
      ["top_p", 0.5],
      ["seed", 42],
      ["stop", ["\n\n"]],
      ["max_tokens", 65],
      ["presence_penalty", 0.1],
      ["response_format", { type: "json_object" }],
      ["tools", [{ type: "function", function: { name: "f", parameters: { type: "object" } } }]],
      ["user", "someone"],
    ]) {
      const changed = await chat({ ...base, [field]: value });
      assert.equal(changed.status, 200, changed.text);
      assert.equal(changed.cache, "miss", field);
    }
    assert.equal((await chat(base)).cache, "hit");
  });

  test("key order and number formatting do not matter", async () => {
    const prompt = fresh("canonical");
    await chat(ask(prompt, { temperature: 1 }));
    const raw = `{"temperature": 1.0, "messages": [{"content": ${JSON.stringify(prompt)}, "role": "user"}], "max_tokens": 64, "model": "cached"}`;
    const res = await gw.fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ALICE}` },
      body: raw,
    });
    await res.text();
    assert.equal(res.headers.get("x-gateway-cache"), "hit");
  });

  test("the same conversation through /v1/chat/completions and /v1/messages finds one entry", async () => {
    const prompt = fresh("both apis");
    const openai = await chat({ model: "cached", max_tokens: 64, temperature: 0.5, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: prompt }] });
    const res = await gw.post(
      "/v1/messages",
      { model: "cached", max_tokens: 64, temperature: 0.5, system: "Be brief.", messages: [{ role: "user", content: [{ type: "text", text: prompt }] }] },
      { key: ALICE, headers: { "anthropic-version": "2023-06-01" } },
    );
    const message = await res.json();
    assert.equal(res.headers.get("x-gateway-cache"), "hit");
    assert.equal(message.type, "message");
    assert.equal(message.content[0].text, openai.json().choices[0].message.content);
  });

  test("consumers never share entries, and a namespace stays inside its caller's scope", async () => {
    const prompt = fresh("isolation");
    await chat(ask(prompt), { key: ALICE });
    assert.equal((await chat(ask(prompt), { key: BOB })).cache, "miss", "bob never gets alice's entry");
    const ns = { "x-gateway-cache-namespace": "team-a" };
    assert.equal((await chat(ask(prompt), { key: ALICE, headers: ns })).cache, "miss", "a namespace is its own set");
    assert.equal((await chat(ask(prompt), { key: BOB, headers: ns })).cache, "miss", "the same name under bob is bob's");
    assert.equal((await chat(ask(prompt), { key: ALICE, headers: ns })).cache, "hit");
  });
});

describe("where entries live", () => {
  test("an EU-bound tenant's entry is served from the location's tier and never written to KV", async () => {
    const globalPrompt = fresh("global");
    const euPrompt = fresh("eu only");
    const kvKeys = async () => (await gw.cacheKv.list()).keys.map((k) => k.name);
    const beforeKeys = new Set(await kvKeys());
    await chat(ask(globalPrompt), { key: ALICE });
    await chat(ask(euPrompt), { key: EVE });
    const euHit = await chat(ask(euPrompt), { key: EVE });
    assert.equal(euHit.cache, "hit", `Frankfurt is in the EU: the Cache API holds it (${euHit.status} ${euHit.text.slice(0, 300)})`);
    const added = (await kvKeys()).filter((k) => !beforeKeys.has(k));
    assert.equal(added.length, 1, `only alice's entry went to KV: ${added}`);
    const stored = JSON.parse(await gw.cacheKv.get(added[0]));
    assert.equal(stored.body.choices[0].message.content, upstreamReplyText(globalPrompt));
  });
});

describe("streams", () => {
  test("a cached answer replays as OpenAI chunks the official SDK reads, usage chunk included", async () => {
    const prompt = fresh("openai sdk");
    const whole = await chat(ask(prompt));
    const client = new OpenAI({ baseURL: gw.baseUrl, apiKey: ALICE, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ ...ask(prompt), stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.equal(response.headers.get("x-gateway-cache"), "hit");
    let text = "";
    let finish = null;
    let usage = null;
    let role = null;
    for await (const chunk of stream) {
      role ??= chunk.choices[0]?.delta?.role ?? null;
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.equal(role, "assistant");
    assert.equal(text, whole.json().choices[0].message.content);
    assert.equal(finish, "stop");
    assert.equal(usage.total_tokens, whole.json().usage.total_tokens);
  });

  test("a cached answer replays as Anthropic events the official SDK reads", async () => {
    const prompt = fresh("anthropic sdk");
    const whole = await chat(ask(prompt));
    const client = new Anthropic({ baseURL: gw.url, apiKey: ALICE, maxRetries: 0 });
    const stream = client.messages.stream({ model: "cached", max_tokens: 64, messages: [{ role: "user", content: prompt }] });
    const events = [];
    stream.on("streamEvent", (event) => events.push(event.type));
    const message = await stream.finalMessage();
    assert.equal(message.content[0].text, whole.json().choices[0].message.content);
    assert.equal(message.stop_reason, "end_turn");
    assert.equal(events[0], "message_start");
    assert.equal(events.at(-1), "message_stop");
  });

  test("a completed stream fills the cache; the raw replay is valid SSE ending in [DONE]", async () => {
    const prompt = fresh("stream fill");
    const first = await gw.post("/v1/chat/completions", ask(prompt, { stream: true }), { key: ALICE });
    assert.equal(first.headers.get("x-gateway-cache"), "miss");
    await readSse(first);
    // The fill runs after the response (waitUntil): give it a moment.
    let whole;
    for (let i = 0; i < 20; i++) {
      whole = await chat(ask(prompt));
      if (whole.cache === "hit") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(whole.cache, "hit");
    assert.equal(whole.json().choices[0].message.content, upstreamReplyText(prompt));
    const replay = await gw.post("/v1/chat/completions", ask(prompt, { stream: true }), { key: ALICE });
    const data = await readSse(replay);
    assert.equal(data.at(-1), "[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), upstreamReplyText(prompt));
    assert.ok(!chunks.some((c) => c.usage), "no usage chunk unless asked");
  });

  test("errors and truncated streams are never cached", async () => {
    const prompt = fresh("failures");
    for (let i = 0; i < 2; i++) {
      const failed = await chat({ ...ask(prompt), model: "cached-500" });
      assert.ok(failed.status >= 500);
    }
    assert.equal(upstreamCalls("status-500"), 2);
    for (let i = 0; i < 2; i++) {
      const res = await gw.post("/v1/chat/completions", { ...ask(prompt), model: "cached-broken", stream: true }, { key: ALICE });
      assert.equal(res.headers.get("x-gateway-cache"), "miss");
      await res.text();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(upstreamCalls("break-stream"), 2, "the broken stream was not stored");
  });
});

describe("single flight", () => {
  test("identical concurrent misses make one upstream call; the others are served its answer", async () => {
    const prompt = fresh("together");
    const before = upstreamCalls("slow-stream");
    const body = { ...ask(prompt), model: "cached-slow", stream: true };
    const leader = gw.post("/v1/chat/completions", body, { key: ALICE });
    const handle = await withTimeout(up.waitFor("slow-stream"), 5000, "the leader upstream");
    const followers = Array.from({ length: 4 }, () => gw.post("/v1/chat/completions", body, { key: ALICE }));
    await new Promise((r) => setTimeout(r, 300));
    handle.release();
    const responses = await withTimeout(Promise.all([leader, ...followers]), 10000, "all answers");
    const texts = await Promise.all(responses.map(async (res) => (await readSse(res)).slice(0, -1).map((d) => JSON.parse(d).choices[0]?.delta?.content ?? "").join("")));
    assert.equal(upstreamCalls("slow-stream") - before, 1);
    assert.deepEqual(responses.map((r) => r.headers.get("x-gateway-cache")).sort(), ["hit", "hit", "hit", "hit", "miss"]);
    assert.ok(texts.every((t) => t === texts[0] && t.length > 0), JSON.stringify(texts));
  });
});

describe("limits and savings", () => {
  test("a hit takes one request and no tokens from the limits, and its event says what it saved", async () => {
    const prompt = fresh("savings");
    const miss = await chat(ask(prompt));
    const hit = await chat(ask(prompt));
    assert.equal(hit.cache, "hit");
    const again = await chat(ask(prompt));
    assert.equal(again.cache, "hit");
    const remaining = (r, metric) => Number(r.res.headers.get(`x-ratelimit-remaining-${metric}`));
    assert.equal(remaining(again, "tokens"), remaining(hit, "tokens"), "a hit reserves and is charged no tokens");
    assert.equal(remaining(again, "requests"), remaining(hit, "requests") - 1, "but one request");
    const id = hit.res.headers.get("x-request-id");
    let event;
    for (let i = 0; i < 20 && !event; i++) {
      event = usageEvents().find((e) => e.request_id === id);
      if (!event) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(event.cache.status, "hit");
    assert.equal(event.usage, null, "a hit used nothing upstream");
    const usage = miss.json().usage;
    assert.equal(event.cache.saved.input_tokens, usage.prompt_tokens);
    assert.equal(event.cache.saved.output_tokens, usage.completion_tokens);
    assert.ok(event.cache.saved.cost_nanos > 0);
    assert.ok(event.cache.saved.gco2e > 0);
  });

  test("embeddings are cached too", async () => {
    const input = fresh("embed me");
    const first = await gw.post("/v1/embeddings", { model: "cached-embed", input }, { key: ALICE });
    const a = await first.json();
    assert.equal(first.headers.get("x-gateway-cache"), "miss");
    const second = await gw.post("/v1/embeddings", { model: "cached-embed", input }, { key: ALICE });
    assert.equal(second.headers.get("x-gateway-cache"), "hit");
    assert.deepEqual((await second.json()).data[0].embedding, a.data[0].embedding);
  });
});
