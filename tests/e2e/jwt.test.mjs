// Bearer JWTs through the built Worker: RS256, ES256 and EdDSA tokens signed here with Node's
// crypto (an implementation independent of the gateway's) from the test-only keys in tests/jwt,
// verified in wasm inside workerd against static keys and a JWKS served by the mock upstream.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { TESTS_DIR, chatBody, readError, startWithUpstream } from "../harness.mjs";

const privateKeys = JSON.parse(readFileSync(path.join(TESTS_DIR, "jwt/TEST-ONLY-private-keys.json"), "utf8"));
const fixtures = JSON.parse(readFileSync(path.join(TESTS_DIR, "jwt/fixtures.json"), "utf8"));
const ISSUER = fixtures.rules.issuers[0];
const AUDIENCE = fixtures.rules.audiences[0];

const b64url = (data) => Buffer.from(data).toString("base64url");

/** A compact JWS signed with Node's crypto; `alg` RS256, ES256 (raw r||s) or EdDSA. */
function makeToken({ alg, kid, key, claims }) {
  const header = b64url(JSON.stringify({ alg, typ: "JWT", kid }));
  const payload = b64url(JSON.stringify(claims));
  const input = Buffer.from(`${header}.${payload}`);
  const privateKey = createPrivateKey(key);
  const signature =
    alg === "RS256"
      ? sign("sha256", input, privateKey)
      : alg === "ES256"
        ? sign("sha256", input, { key: privateKey, dsaEncoding: "ieee-p1363" })
        : sign(null, input, privateKey);
  return `${header}.${payload}.${b64url(signature)}`;
}

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra = {}) => ({ iss: ISSUER, aud: AUDIENCE, sub: "alice", tenant: "acme", tier: "pro", iat: now(), exp: now() + 300, ...extra });

let suite;
let gw;

before(async () => {
  suite = await startWithUpstream({
    configure: (config) => {
      config.auth = {
        mode: "jwt",
        jwt: {
          issuers: fixtures.rules.issuers,
          audiences: fixtures.rules.audiences,
          tenant_claim: "tenant",
          tier_claim: "tier",
          keys: [
            { kid: "rsa-1", alg: "RS256", pem: fixtures.keys["rsa-1"].pem },
            { kid: "ed-1", alg: "EdDSA", pem: fixtures.keys["ed-1"].pem },
          ],
          models: ["mock"],
          tiers: { pro: { models: ["*"] } },
        },
        // `limited` has labels of its own, which a token whose subject is `limited` must not get.
        consumers: config.auth.consumers.map((c) => (c.id === "limited" ? { ...c, metadata: { team: "payments" } } : c)),
      };
    },
  });
  ({ gw } = suite);
});
after(() => suite?.dispose());

describe("JWT bearer tokens", () => {
  test("RS256 and EdDSA tokens are verified in the Worker; tiers decide the models", async () => {
    for (const [alg, kid, key] of [
      ["RS256", "rsa-1", privateKeys.rsa],
      ["EdDSA", "ed-1", privateKeys.ed],
    ]) {
      const token = makeToken({ alg, kid, key, claims: claims() });
      const res = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini"), { key: token });
      assert.equal(res.status, 200, `${alg}: ${await res.clone().text()}`);
      await res.arrayBuffer();
    }
    const free = makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa, claims: claims({ sub: "bob", tier: "free" }) });
    const denied = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini"), { key: free });
    assert.equal(denied.status, 403);
    const allowed = await gw.post("/v1/chat/completions", chatBody("mock"), { key: free });
    assert.equal(allowed.status, 200);
    await allowed.arrayBuffer();
    const event = await gw.waitForLog((e) => e.consumer === "alice" && e.tier === "pro");
    assert.equal(event.tenant, "acme");
  });

  test("expired, wrong-audience, tampered and alg-none tokens are 401 invalid_token", async () => {
    const good = makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa, claims: claims() });
    const [h, p, s] = good.split(".");
    const tampered = `${h}.${b64url(JSON.stringify(claims({ sub: "mallory" })))}.${s}`;
    const none = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${p}.`;
    const cases = {
      expired: makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa, claims: claims({ iat: now() - 7200, exp: now() - 3600 }) }),
      wrong_audience: makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa, claims: claims({ aud: "someone-else" }) }),
      bad_signature: tampered,
      alg_none: none,
      other_key: makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa_other, claims: claims() }),
    };
    for (const [name, token] of Object.entries(cases)) {
      const res = await gw.post("/v1/chat/completions", chatBody("mock"), { key: token });
      assert.equal(res.status, 401, name);
      const error = await readError(res);
      assert.equal(error.code, "invalid_token", name);
      assert.ok(!error.raw.includes(token.slice(0, 30)), `${name}: the token is not echoed`);
    }
  });

  test("a token subject equal to an API-key consumer's id is its issuer's identity, not that consumer", async () => {
    const token = makeToken({ alg: "RS256", kid: "rsa-1", key: privateKeys.rsa, claims: claims({ sub: "limited" }) });
    const res = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini"), { key: token });
    assert.equal(res.status, 200, "the pro tier's models, not the consumer `limited`'s mock* list");
    await res.arrayBuffer();
    const event = await gw.waitForLog((e) => e.consumer === "limited" && e.issuer === ISSUER);
    assert.equal(event.metadata, undefined, "the configured consumer's metadata is not the token's");
  });
});
