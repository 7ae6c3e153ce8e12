// Outbound GET requests from the Worker in workerd: a JWKS fetched from `jwks_url` (then shared
// through KV), and live grid carbon intensity fetched from an Electricity Maps stand-in by
// `POST /admin/carbon/refresh` and used by carbon-aware routing. (workerd's fetch refuses a GET
// that carries a body, even an empty one; these paths only work if the adapter sends none.)
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { TESTS_DIR, chatBody, sha256Hex, startGateway } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";

const privateKeys = JSON.parse(readFileSync(path.join(TESTS_DIR, "jwt/TEST-ONLY-private-keys.json"), "utf8"));
const fixtures = JSON.parse(readFileSync(path.join(TESTS_DIR, "jwt/fixtures.json"), "utf8"));
const jwks = readFileSync(path.join(TESTS_DIR, "jwt/jwks.json"), "utf8");

function rs256(claims) {
  const b64 = (v) => Buffer.from(v).toString("base64url");
  const input = `${b64(JSON.stringify({ alg: "RS256", typ: "JWT", kid: "rsa-1" }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(sign("sha256", Buffer.from(input), createPrivateKey(privateKeys.rsa)))}`;
}

/** A tiny HTTP server answering GETs with `handler(url, headers) -> [status, body]`; records requests. */
async function serve(handler) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const [status, payload] = handler(new URL(req.url, "http://x"), req.headers);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => new Promise((r) => server.close(r)) };
}

describe("a JWKS fetched from jwks_url", () => {
  let idp, gw;
  before(async () => {
    idp = await serve(() => [200, JSON.parse(jwks)]);
    gw = await startGateway({
      config: {
        auth: {
          mode: "jwt",
          jwt: { issuers: fixtures.rules.issuers, audiences: fixtures.rules.audiences, jwks_url: `${idp.url}/.well-known/jwks.json`, models: ["mock"] },
        },
        network: { allow_private_upstreams: true },
        providers: { mock: { kind: "mock" } },
        models: { mock: { provider: "mock" } },
      },
    });
  });
  after(async () => {
    await gw?.dispose();
    await idp?.close();
  });

  test("verifies a token with a key from the fetched set, fetched once with GET and no body", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = rs256({ iss: fixtures.rules.issuers[0], aud: fixtures.rules.audiences[0], sub: "alice", iat: now, exp: now + 300 });
    for (let i = 0; i < 2; i++) {
      const res = await gw.post("/v1/chat/completions", chatBody("mock"), { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200, await res.text());
    }
    assert.equal(idp.requests.length, 1, "cached after the first fetch");
    assert.equal(idp.requests[0].method, "GET");
    assert.equal(idp.requests[0].body, "");
    // Shared with other isolates through KV.
    const stored = (await gw.kv.list({ prefix: "jwks:" })).keys;
    assert.equal(stored.length, 1);
  });
});

describe("live carbon intensity from the feed", () => {
  const ADMIN = "adm-e2e-carbon-0123456789";
  let feed, de, fr, gw;
  before(async () => {
    // Electricity Maps' /v3/carbon-intensity/latest: right now DE is cleaner than FR.
    feed = await serve((url, headers) => {
      if (headers["auth-token"] !== "em-token") return [401, { message: "unauthorized" }];
      const zone = url.searchParams.get("zone");
      const g = { DE: 40, FR: 420 }[zone];
      return g === undefined ? [404, { message: "zone" }] : [200, { zone, carbonIntensity: g, datetime: "2026-11-23T08:00:00.000Z", updatedAt: "2026-11-23T07:49:00.000Z", emissionFactorType: "lifecycle", isEstimated: true, estimationMethod: "TIME_SLICER_AVERAGE" }];
    });
    de = await startMockUpstream({ apiKey: "k" });
    fr = await startMockUpstream({ apiKey: "k" });
    gw = await startGateway({
      secrets: { UP_KEY: "k", EM_TOKEN: "em-token" },
      config: {
        auth: { mode: "none" },
        admin: { key_sha256: sha256Hex(ADMIN) },
        network: { allow_private_upstreams: true },
        providers: {
          de: { kind: "openai", base_url: de.baseUrl, api_key_secret: "UP_KEY" },
          fr: { kind: "openai", base_url: fr.baseUrl, api_key_secret: "UP_KEY" },
        },
        models: {
          chat: {
            targets: [
              { id: "de", provider: "de", upstream_model: "gpt-4o-mini", region: "eu-central-1", jurisdiction: "eu" },
              { id: "fr", provider: "fr", upstream_model: "gpt-4o-mini", region: "eu-west-3", jurisdiction: "eu" },
            ],
            strategy: { type: "carbon", weights: { latency: 0, cost: 0, carbon: 1 } },
          },
        },
        carbon_feed: { base_url: `${feed.url}/v3`, token_secret: "EM_TOKEN", zones: { "eu-central-1": "DE", "eu-west-3": "FR" } },
      },
    });
  });
  after(async () => {
    await gw?.dispose();
    await Promise.all([feed?.close(), de?.close(), fr?.close()]);
  });

  test("annual figures until a refresh, live ones after, and the event says which", async () => {
    const before = await gw.post("/v1/chat/completions", chatBody("chat"));
    assert.equal(before.status, 200);
    assert.equal(before.headers.get("x-gateway-target"), "fr", "annual averages: FR's grid is cleaner");
    await gw.waitForLog((e) => e.route?.target === "fr" && e.route?.carbon_data === "stale");

    const refresh = await gw.fetch("/admin/carbon/refresh", { method: "POST", headers: { authorization: `Bearer ${ADMIN}` } });
    const report = await refresh.json();
    assert.equal(refresh.status, 200, JSON.stringify(report));
    assert.deepEqual(report.updated, { "eu-central-1": 40, "eu-west-3": 420 });
    assert.ok(feed.requests.every((r) => r.method === "GET" && r.body === "" && r.url.startsWith("/v3/carbon-intensity/latest?zone=")));
    assert.ok(!JSON.stringify(report).includes("em-token"));

    const after = await gw.post("/v1/chat/completions", chatBody("chat"));
    assert.equal(after.status, 200);
    assert.equal(after.headers.get("x-gateway-target"), "de", "live values: DE is cleaner right now");
    await gw.waitForLog((e) => e.route?.target === "de" && e.route?.carbon_data === "live");
  });
});
