// The configuration document in KV (GATEWAY_KV, key `config`) overrides the shipped
// GATEWAY_CONFIG var; with limits.config_refresh_ms = 0 every request re-reads it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, assertRequestId, chatBody, readError, sha256Hex, startGateway } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";

let up;
let gw;
let shipped;
let fromKv;

function doc({ auth, models, upstreamBaseUrl }) {
  return {
    limits: { config_refresh_ms: 0, upstream_timeout_ms: 10000 },
    auth,
    network: { allow_private_upstreams: true },
    providers: {
      mock: { kind: "mock" },
      upstream: { kind: "openai", base_url: upstreamBaseUrl, api_key_secret: "OPENAI_API_KEY" },
    },
    models,
  };
}

before(async () => {
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  shipped = doc({
    upstreamBaseUrl: up.baseUrl,
    auth: { mode: "api_keys", consumers: [{ id: "web", key_sha256: sha256Hex(KEYS.web) }] },
    models: {
      mock: { provider: "mock" },
      "shipped-only": { provider: "mock" },
      gpt: { provider: "upstream", upstream_model: "gpt-4o-mini" },
    },
  });
  fromKv = doc({
    upstreamBaseUrl: up.baseUrl,
    auth: { mode: "none" },
    models: {
      mock: { provider: "mock" },
      "kv-only": { provider: "mock" },
      gpt: { provider: "upstream", upstream_model: "gpt-4o-mini-from-kv" },
    },
  });
  gw = await startGateway({ config: shipped, secrets: { OPENAI_API_KEY: KEYS.upstream } });
});
after(async () => {
  await gw?.dispose();
  await up?.close();
});

async function status(model, key) {
  const res = await gw.post("/v1/chat/completions", chatBody(model), { key });
  assertRequestId(res);
  if (res.status !== 200) return [res.status, (await readError(res)).code];
  await res.arrayBuffer();
  return [res.status, null];
}

async function modelIds(key) {
  const res = await gw.fetch("/v1/models", { headers: key ? { authorization: `Bearer ${key}` } : {} });
  assert.equal(res.status, 200);
  return (await res.json()).data.map((m) => m.id).sort();
}

describe("configuration from KV", () => {
  test("without a KV document the shipped GATEWAY_CONFIG is used", async () => {
    assert.deepEqual(await status("shipped-only", KEYS.web), [200, null]);
    assert.deepEqual(await status("kv-only", KEYS.web), [404, "model_not_found"]);
    assert.deepEqual(await status("mock"), [401, "missing_api_key"]);
    assert.deepEqual(await modelIds(KEYS.web), ["gpt", "mock", "shipped-only"]);
  });

  test("a KV document under `config` overrides it, on the next request", async () => {
    await gw.kv.put("config", JSON.stringify(fromKv));
    assert.deepEqual(await status("kv-only"), [200, null], "KV model, KV auth mode (none)");
    assert.deepEqual(await status("shipped-only"), [404, "model_not_found"]);
    assert.deepEqual(await modelIds(), ["gpt", "kv-only", "mock"]);

    // Routing follows the KV document too: its upstream_model reaches the provider.
    const res = await gw.post("/v1/chat/completions", chatBody("gpt", "which config?"));
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(up.lastRequest("/v1/chat/completions").body.model, "gpt-4o-mini-from-kv");
  });

  test("removing the KV document falls back to the shipped one", async () => {
    await gw.kv.delete("config");
    assert.deepEqual(await status("kv-only"), [401, "missing_api_key"]);
    assert.deepEqual(await status("kv-only", KEYS.web), [404, "model_not_found"]);
    const res = await gw.post("/v1/chat/completions", chatBody("gpt", "which config?"), { key: KEYS.web });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(up.lastRequest("/v1/chat/completions").body.model, "gpt-4o-mini");
  });

  test("an invalid KV document is reported, not silently replaced by the shipped one", async () => {
    await gw.kv.put("config", JSON.stringify({ ...fromKv, models: { broken: { provider: "nowhere" } } }));
    try {
      const res = await gw.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.web });
      assert.equal(res.status, 500);
      assertRequestId(res);
      const err = await readError(res);
      assert.equal(err.code, "config_invalid");
      assert.match(err.message, /models\.broken\.provider/);
    } finally {
      await gw.kv.delete("config");
    }
    assert.deepEqual(await status("shipped-only", KEYS.web), [200, null]);
  });

  test("a KV document present before the first request is used from the start", async () => {
    const gw2 = await startGateway({ config: shipped, kvConfig: fromKv, secrets: { OPENAI_API_KEY: KEYS.upstream } });
    try {
      const res = await gw2.post("/v1/chat/completions", chatBody("kv-only"));
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.model, "kv-only");
    } finally {
      await gw2.dispose();
    }
  });
});
