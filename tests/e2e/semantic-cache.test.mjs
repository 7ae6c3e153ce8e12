// The semantic cache tier end to end in workerd (docs/cache.md, "Semantic cache"): a paraphrase
// is answered from the earlier answer with `x-gateway-cache: semantic-hit` and its similarity,
// through the `GatewayVectorIndex` Durable Object; a changed number is a miss although the
// embeddings are close; another consumer never sees the entry; the OpenAI SDK reads a streamed
// semantic hit. The mock upstream embeds a hashed bag of words (tests/mock-upstream.mjs), so the
// similarities below are computed here from the same function.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { apiKeyAuth, cosine, KEYS, makeConfig, postChat, startGateway, usageEvents } from "../harness.mjs";
import { startMockUpstream, upstreamEmbedding, upstreamReplyText } from "../mock-upstream.mjs";

const ALICE = "sk-semantic-alice-0123456789";
const BOB = "sk-semantic-bob-0123456789";
const DIMENSIONS = 1536;
const THRESHOLD = 0.78;

let up;
let gw;

before(async () => {
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  const config = makeConfig({
    upstreamBaseUrl: up.baseUrl,
    auth: apiKeyAuth({ alice: ALICE, bob: BOB }),
    models: {
      sem: {
        provider: "upstream",
        upstream_model: "gpt-4o-mini",
        cache: { mode: "semantic", ttl_s: 600, semantic: { embedding_model: "embed" } },
      },
      embed: { provider: "upstream", upstream_model: "text-embedding-3-small", type: "embeddings" },
    },
  });
  gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
});

after(async () => {
  await gw?.dispose();
  await up?.close();
});

const ask = (content, extra = {}) => ({ model: "sem", max_tokens: 64, messages: [{ role: "user", content }], ...extra });
const chat = (content, { key = ALICE, headers = {} } = {}) => postChat(gw, ask(content), { key, headers });
const similarity = (a, b) => cosine(upstreamEmbedding(a, DIMENSIONS), upstreamEmbedding(b, DIMENSIONS));
const chatCalls = () => up.requests.filter((r) => r.path === "/v1/chat/completions").length;
const embeddingCalls = () => up.requests.filter((r) => r.path === "/v1/embeddings").length;

/**
 * The fill indexes the query after the response (`waitUntil`): ask `probe` (a paraphrase) with
 * `no-store` — a miss stores nothing — until it is a semantic hit, so the index has the vector.
 */
async function untilIndexed(probe, key = ALICE) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const res = await chat(probe, { key, headers: { "cache-control": "no-store" } });
    assert.equal(res.status, 200, res.text);
    if (res.cache === "semantic-hit") return res;
    if (Date.now() > deadline) throw new Error(`"${probe}" never became a semantic hit (last: ${res.cache})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("semantic cache through the Durable Object index", () => {
  test("a paraphrase is a semantic hit with its similarity and the earlier answer", async () => {
    const question = "what is the capital city of france";
    const paraphrase = "tell me what the capital city of france is";
    const expected = similarity(question, paraphrase);
    assert.ok(expected >= THRESHOLD && expected < 0.99, `the paraphrase is close but not identical: ${expected}`);
    const first = await chat(question);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.cache, "miss");
    // Probes before the vector landed were misses that went upstream: count from a hit on.
    await untilIndexed(paraphrase);
    const calls = chatCalls();
    const embeddedBefore = embeddingCalls();
    const hit = await chat(paraphrase);
    assert.equal(hit.cache, "semantic-hit");
    const header = hit.res.headers.get("x-gateway-cache-similarity");
    assert.match(header, /^0\.\d{4}$/);
    assert.ok(Math.abs(Number(header) - expected) < 1e-3, `${header} vs ${expected}`);
    assert.equal(hit.json().choices[0].message.content, upstreamReplyText(question), "the answer to the cached question");
    assert.equal(chatCalls(), calls, "no upstream chat call for a semantic hit");
    assert.equal(embeddingCalls() - embeddedBefore, 1, "one embedding per request");
    const event = usageEvents(gw).find((e) => e.request_id === hit.res.headers.get("x-request-id"));
    assert.equal(event.cache.status, "semantic_hit");
    assert.ok(Math.abs(event.cache.similarity - expected) < 1e-3);
    assert.ok(event.cache.embedding_tokens > 0);
    assert.ok(event.cache.saved.total_tokens > 0);
  });

  test("a changed number is a miss although the embeddings are close", async () => {
    const question = "is 17 a prime number";
    await chat(question);
    await untilIndexed("tell me is 17 a prime number");
    const changed = "is 19 a prime number";
    assert.ok(similarity(question, changed) >= THRESHOLD, "similar enough for the threshold alone");
    const calls = chatCalls();
    const res = await chat(changed);
    assert.equal(res.cache, "miss");
    assert.equal(res.res.headers.get("x-gateway-cache-similarity"), null);
    assert.equal(res.json().choices[0].message.content, upstreamReplyText(changed));
    assert.equal(chatCalls(), calls + 1);
  });

  test("another consumer never gets the entry", async () => {
    const question = "what is the tallest mountain in the alps";
    const paraphrase = "tell me what the tallest mountain in the alps is";
    await chat(question);
    await untilIndexed(paraphrase);
    const bob = await chat(paraphrase, { key: BOB });
    assert.equal(bob.cache, "miss");
    assert.equal(bob.json().choices[0].message.content, upstreamReplyText(paraphrase));
  });

  test("the OpenAI SDK reads a streamed semantic hit", async () => {
    const question = "what is the best way to boil an egg";
    const paraphrase = "what is the best way to boil an egg at home";
    await chat(question);
    await untilIndexed(paraphrase);
    const calls = chatCalls();
    const client = new OpenAI({ apiKey: ALICE, baseURL: gw.baseUrl, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ ...ask(paraphrase), stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.equal(response.headers.get("x-gateway-cache"), "semantic-hit");
    assert.match(response.headers.get("x-gateway-cache-similarity"), /^0\.\d{4}$/);
    let text = "";
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, upstreamReplyText(question));
    assert.equal(finish, "stop");
    assert.equal(chatCalls(), calls);
  });
});
