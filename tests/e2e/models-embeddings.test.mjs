// GET /v1/models, GET /v1/models/{id}, and POST /v1/embeddings through the mock provider and the
// OpenAI-compatible provider, as floats and as base64.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, assertRequestId, readError, startWithUpstream } from "../harness.mjs";
import { decodeFloat32Base64, upstreamEmbedding } from "../mock-upstream.mjs";

let suite;
let up;
let gw;
let config;

before(async () => {
  suite = await startWithUpstream();
  ({ up, gw, config } = suite);
});
after(() => suite?.dispose());

const auth = { authorization: `Bearer ${KEYS.web}` };

async function embed(body, key = KEYS.web) {
  const res = await gw.post("/v1/embeddings", body, { key });
  assertRequestId(res);
  return res;
}

function norm(v) {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

describe("models", () => {
  test("GET /v1/models lists every configured model", async () => {
    const res = await gw.fetch("/v1/models", { headers: auth });
    assert.equal(res.status, 200);
    assertRequestId(res);
    assert.match(res.headers.get("content-type"), /^application\/json/);
    const body = await res.json();
    assert.equal(body.object, "list");
    assert.deepEqual(body.data.map((m) => m.id).sort(), Object.keys(config.models).sort());
    for (const m of body.data) {
      assert.equal(m.object, "model");
      assert.ok(Number.isInteger(m.created), `created is an integer: ${JSON.stringify(m)}`);
      assert.equal(typeof m.owned_by, "string");
    }
  });

  test("GET /v1/models/{id} returns one model, 404 model_not_found for others", async () => {
    let res = await gw.fetch("/v1/models/gpt-4o-mini", { headers: auth });
    assert.equal(res.status, 200);
    assertRequestId(res);
    const model = await res.json();
    assert.equal(model.id, "gpt-4o-mini");
    assert.equal(model.object, "model");

    res = await gw.fetch("/v1/models/no-such-model", { headers: auth });
    assert.equal(res.status, 404);
    assertRequestId(res);
    assert.equal((await readError(res)).code, "model_not_found");
  });

  test("listing models needs a key too", async () => {
    const res = await gw.fetch("/v1/models");
    assert.equal(res.status, 401);
    assertRequestId(res);
    assert.equal((await readError(res)).code, "missing_api_key");
  });
});

describe("embeddings (mock provider)", () => {
  test("float vectors: deterministic, unit length, 256 dims by default", async () => {
    const res = await embed({ model: "mock-embed", input: "The food was delicious" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-gateway-provider"), "mock");
    const body = await res.json();
    assert.equal(body.object, "list");
    assert.equal(body.model, "mock-embed");
    assert.equal(body.data.length, 1);
    const [item] = body.data;
    assert.equal(item.object, "embedding");
    assert.equal(item.index, 0);
    assert.equal(item.embedding.length, 256);
    assert.ok(item.embedding.every((x) => typeof x === "number" && Number.isFinite(x)));
    assert.ok(Math.abs(norm(item.embedding) - 1) < 1e-5, `unit vector, norm ${norm(item.embedding)}`);
    assert.ok(Number.isInteger(body.usage.prompt_tokens) && body.usage.prompt_tokens > 0);
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens);

    const again = await embed({ model: "mock-embed", input: "The food was delicious" }).then((r) => r.json());
    assert.deepEqual(again.data[0].embedding, item.embedding, "same input, same vector");
    const other = await embed({ model: "mock-embed", input: "Something else" }).then((r) => r.json());
    assert.notDeepEqual(other.data[0].embedding, item.embedding, "different input, different vector");
  });

  test("`dimensions` and a list of inputs", async () => {
    const res = await embed({ model: "mock-embed", input: ["a", "b", "c"], dimensions: 64 });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(
      body.data.map((d) => d.index),
      [0, 1, 2],
    );
    for (const d of body.data) {
      assert.equal(d.embedding.length, 64);
      assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5);
    }
    const single = await embed({ model: "mock-embed", input: "b", dimensions: 64 }).then((r) => r.json());
    assert.deepEqual(single.data[0].embedding, body.data[1].embedding, "a vector depends on its input only");
  });

  test("base64: little-endian float32 bytes of the same vector", async () => {
    const floats = await embed({ model: "mock-embed", input: "encode me", dimensions: 32 }).then((r) => r.json());
    const res = await embed({ model: "mock-embed", input: "encode me", dimensions: 32, encoding_format: "base64" });
    assert.equal(res.status, 200);
    const body = await res.json();
    const encoded = body.data[0].embedding;
    assert.equal(typeof encoded, "string");
    assert.equal(Buffer.from(encoded, "base64").length, 32 * 4);
    assert.deepEqual(
      decodeFloat32Base64(encoded),
      floats.data[0].embedding.map((x) => Math.fround(x)),
    );
  });

  test("a chat model is not an embeddings model (and vice versa)", async () => {
    let res = await embed({ model: "mock", input: "x" });
    assert.equal(res.status, 400);
    assert.equal((await readError(res)).code, "unsupported_operation");
    res = await gw.post("/v1/chat/completions", { model: "mock-embed", messages: [{ role: "user", content: "x" }] }, {
      key: KEYS.web,
    });
    assert.equal(res.status, 400);
    assertRequestId(res);
    assert.equal((await readError(res)).code, "unsupported_operation");
  });
});

describe("embeddings (openai provider via the mock upstream)", () => {
  test("float: forwarded with the gateway's key and the upstream model, answer passed back", async () => {
    const sent = { model: "embed", input: ["first", "second"], dimensions: 8, encoding_format: "float", user: "u-7" };
    const res = await embed(sent);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-gateway-provider"), "upstream");
    const seen = up.lastRequest("/v1/embeddings");
    assert.equal(seen.headers.authorization, `Bearer ${KEYS.upstream}`);
    for (const value of Object.values(seen.headers)) assert.ok(!String(value).includes(KEYS.web));
    assert.deepEqual(seen.body, { ...sent, model: "text-embedding-3-small" });
    const body = await res.json();
    assert.deepEqual(body, JSON.parse(seen.response.body));
    assert.deepEqual(body.data[1].embedding, upstreamEmbedding("second", 8));
  });

  test("base64: the upstream's encoding reaches the client intact", async () => {
    const res = await embed({ model: "embed", input: "bytes please", dimensions: 12, encoding_format: "base64" });
    assert.equal(res.status, 200);
    const seen = up.lastRequest("/v1/embeddings");
    assert.equal(seen.body.encoding_format, "base64");
    const body = await res.json();
    assert.deepEqual(body, JSON.parse(seen.response.body));
    assert.deepEqual(decodeFloat32Base64(body.data[0].embedding), upstreamEmbedding("bytes please", 12));
  });
});
