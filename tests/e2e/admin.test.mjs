// The admin API through the real Worker (edge/src/admin.rs; the in-memory pipeline tests are
// edge/tests/admin.rs): its own credential and only it, virtual keys issued once and stored
// hashed in KV, model allow-lists, revocation, the audit log, configuration replacement with
// validation, and usage read from the counter Durable Objects. Miniflare's KV is immediately
// consistent, so a key works (and stops working) on the very next request.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, assertRequestId, chatBody, makeConfig, readError, sha256Hex, startGateway } from "../harness.mjs";

const ADMIN_KEY = "adm-e2e-0123456789abcdef0123456789abcdef";
const ADMIN_ACTOR = `admin:${sha256Hex(ADMIN_KEY).slice(0, 8)}`;

function adminConfig() {
  // Only the mock provider: this shipped document allows no private upstreams.
  const { network: _devNetwork, ...shipped } = makeConfig({ models: { "mock-large": { provider: "mock" } } });
  return {
    ...shipped,
    admin: { key_sha256: sha256Hex(ADMIN_KEY) },
    rate_limits: [{ scope: ["consumer"], metric: "requests", window: "day", limit: 100 }],
  };
}

let gw;
let config;
/** Every virtual key issued in this file, for the "never shown again" checks. */
const issued = [];

before(async () => {
  config = adminConfig();
  gw = await startGateway({ config });
});
after(() => gw?.dispose());

/** An admin API call with the admin key (or `key`); `body` is JSON-encoded unless a string. */
function admin(method, pathname, { body, key = ADMIN_KEY } = {}) {
  const headers = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  return gw.fetch(pathname, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return { body: JSON.parse(text), text };
}

async function createKey(spec) {
  const res = await admin("POST", "/admin/keys", { body: spec });
  assertRequestId(res);
  const { body } = await json(res, 201);
  issued.push(body.key);
  return body;
}

/** Asserts `text` holds none of the issued keys (nor their digests, nor the admin key). */
function assertNoKeyMaterial(text, what) {
  for (const key of issued) {
    assert.ok(!text.includes(key), `${what} holds an issued key`);
    assert.ok(!text.includes(key.slice("sk-gw-".length)), `${what} holds an issued key's secret part`);
    assert.ok(!text.includes(key.slice("sk-gw-".length + 4)), `${what} holds the unhinted part of a key`);
    assert.ok(!text.includes(sha256Hex(key)), `${what} holds an issued key's digest`);
  }
  assert.ok(!text.includes(ADMIN_KEY), `${what} holds the admin key`);
  assert.ok(!text.includes(sha256Hex(ADMIN_KEY)), `${what} holds the admin key's digest`);
}

async function chatStatus(key, model = "mock") {
  const res = await gw.post("/v1/chat/completions", chatBody(model), { key });
  if (res.status === 200) {
    await res.arrayBuffer();
    return [200, null];
  }
  return [res.status, await readError(res)];
}

describe("admin API", () => {
  test("only the admin credential opens /admin/*, and it never opens /v1", async () => {
    const missing = await admin("GET", "/admin/audit", { key: null });
    assert.equal(missing.status, 401);
    assertRequestId(missing);
    let error = await readError(missing);
    assert.equal(error.code, "missing_api_key");
    assert.equal(error.type, "authentication_error");

    for (const key of ["adm-wrong", KEYS.web, KEYS.limited]) {
      const res = await admin("GET", "/admin/audit", { key });
      assert.equal(res.status, 401, key);
      error = await readError(res);
      assert.equal(error.code, "invalid_api_key", key);
      assert.equal(error.type, "authentication_error");
    }
    // A consumer key on a write route: refused before anything is read or written.
    const write = await admin("POST", "/admin/keys", { key: KEYS.web, body: { consumer: "web" } });
    assert.equal(write.status, 401);
    assert.equal((await readError(write)).code, "invalid_api_key");

    const [status, v1Error] = await chatStatus(ADMIN_KEY);
    assert.equal(status, 401);
    assert.equal(v1Error.code, "invalid_api_key");
    assert.equal(v1Error.type, "authentication_error");

    const ok = await admin("GET", "/admin/audit");
    const { body } = await json(ok, 200);
    assert.deepEqual(body, { object: "list", data: [] }, "nothing was written by the refused calls");
  });

  let partnerKey;
  let partnerRecord;

  test("POST /admin/keys issues a key shown once, which works at once on /v1", async () => {
    const before = Date.now();
    const { key, record, ...rest } = await createKey({ consumer: "partner", name: "ci" });
    assert.deepEqual(Object.keys(rest), [], "only key and record");
    assert.match(key, /^sk-gw-[0-9a-f]{64}$/);
    assert.match(record.id, /^vk_[0-9a-f]{16}$/);
    assert.equal(record.consumer, "partner");
    assert.equal(record.name, "ci");
    assert.equal(record.hint, `${key.slice(0, 10)}…`);
    assert.ok(record.created_ms >= before - 60000 && record.created_ms <= Date.now() + 60000, `created_ms ${record.created_ms}`);
    assert.equal(record.revoked_ms, undefined);
    assert.equal(record.expires_ms, undefined);
    assert.equal(record.models, undefined, "every model");
    partnerKey = key;
    partnerRecord = record;

    const res = await gw.post("/v1/chat/completions", chatBody("mock", "from a virtual key"), { key });
    assert.equal(res.status, 200);
    const requestId = assertRequestId(res);
    assert.equal((await res.json()).object, "chat.completion");
    const event = await gw.waitForLog((e) => e.request_id === requestId);
    assert.equal(event.consumer, "partner");
    // Every model, including the other chat model.
    assert.deepEqual(await chatStatus(key, "mock-large"), [200, null]);

    // KV holds the record under the key's digest, never the key itself.
    const { keys } = await gw.kv.list();
    assert.ok(keys.length > 0);
    for (const { name } of keys) {
      const value = (await gw.kv.get(name)) ?? "";
      assert.ok(!name.includes(key) && !value.includes(key), `KV entry ${name} holds the key`);
      assert.ok(!value.includes(key.slice(10)), `KV entry ${name} holds the secret part of the key`);
    }
  });

  test("a lookalike key that was never issued is refused", async () => {
    const [status, error] = await chatStatus(`sk-gw-${"ab".repeat(32)}`);
    assert.equal(status, 401);
    assert.equal(error.code, "invalid_api_key");
  });

  let restrictedKey;
  let restrictedRecord;

  test("a key limited to models ['mock'] gets 403 for another model", async () => {
    const { key, record } = await createKey({ consumer: "partner", models: ["mock"] });
    restrictedKey = key;
    restrictedRecord = record;
    assert.deepEqual(record.models, ["mock"]);
    assert.deepEqual(await chatStatus(key, "mock"), [200, null]);
    const [status, error] = await chatStatus(key, "mock-large");
    assert.equal(status, 403);
    assert.equal(error.code, "model_not_allowed");
    assert.equal(error.type, "permission_error");
    assert.equal(error.param, "model");
    // /v1/models lists only what the key may use.
    const models = await gw.fetch("/v1/models", { headers: { authorization: `Bearer ${key}` } });
    const { body } = await json(models, 200);
    assert.deepEqual(body.data.map((m) => m.id), ["mock"]);

    // An unknown model is refused when the key is created.
    const bad = await admin("POST", "/admin/keys", { body: { consumer: "partner", models: ["nope"] } });
    assert.equal(bad.status, 400);
    const badError = await readError(bad);
    assert.equal(badError.code, "invalid_request");
    assert.equal(badError.type, "invalid_request_error");
    assert.equal(badError.param, "models");
    const noConsumer = await admin("POST", "/admin/keys", { body: { name: "orphan" } });
    assert.equal(noConsumer.status, 400);
    assert.equal((await readError(noConsumer)).param, "consumer");
  });

  test("GET /admin/consumers/{c}/keys lists the keys without the keys themselves", async () => {
    const { body, text } = await json(await admin("GET", "/admin/consumers/partner/keys"), 200);
    assert.equal(body.object, "list");
    const byId = Object.fromEntries(body.data.map((r) => [r.id, r]));
    assert.deepEqual(Object.keys(byId).sort(), [partnerRecord.id, restrictedRecord.id].sort());
    assert.deepEqual(byId[partnerRecord.id], { ...partnerRecord, status: "active" });
    assert.deepEqual(byId[restrictedRecord.id], { ...restrictedRecord, status: "active" });
    for (const r of body.data) assert.equal(r.key, undefined);
    assertNoKeyMaterial(text, "the key listing");
    // Another consumer has none.
    const other = await json(await admin("GET", "/admin/consumers/web/keys"), 200);
    assert.deepEqual(other.body, { object: "list", data: [] });
  });

  test("DELETE /admin/keys/{id} revokes: the key gets 401 at once", async () => {
    const res = await admin("DELETE", `/admin/keys/${partnerRecord.id}`);
    const { body, text } = await json(res, 200);
    assert.equal(body.status, "revoked");
    assert.equal(body.record.id, partnerRecord.id);
    assert.ok(Number.isInteger(body.record.revoked_ms), text);
    assertNoKeyMaterial(text, "the revoke response");

    const [status, error] = await chatStatus(partnerKey);
    assert.equal(status, 401);
    assert.equal(error.code, "invalid_api_key");
    // The other key of the consumer is untouched.
    assert.deepEqual(await chatStatus(restrictedKey), [200, null]);

    const listing = await json(await admin("GET", "/admin/consumers/partner/keys"), 200);
    const statuses = Object.fromEntries(listing.body.data.map((r) => [r.id, r.status]));
    assert.deepEqual(statuses, { [partnerRecord.id]: "revoked", [restrictedRecord.id]: "active" });

    // Revoking again changes nothing (and writes no second audit entry, checked below).
    const again = await json(await admin("DELETE", `/admin/keys/${partnerRecord.id}`), 200);
    assert.equal(again.body.status, "revoked");
    assert.equal(again.body.record.revoked_ms, body.record.revoked_ms);
    // Unknown ids are 404.
    const missing = await admin("DELETE", "/admin/keys/vk_0000000000000000");
    assert.equal(missing.status, 404);
    assert.equal((await readError(missing)).type, "not_found_error");
  });

  test("GET /admin/audit: key.create and key.revoke, newest first, no key material", async () => {
    const { body, text } = await json(await admin("GET", "/admin/audit"), 200);
    assert.equal(body.object, "list");
    const actions = body.data.map((e) => `${e.action} ${e.target}`);
    assert.deepEqual(actions, [
      `key.revoke ${partnerRecord.id}`,
      `key.create ${restrictedRecord.id}`,
      `key.create ${partnerRecord.id}`,
    ]);
    for (let i = 1; i < body.data.length; i++) {
      assert.ok(body.data[i - 1].at_ms >= body.data[i].at_ms, `newest first: ${actions}`);
    }
    for (const entry of body.data) {
      assert.equal(entry.actor, ADMIN_ACTOR);
      assert.ok(Number.isInteger(entry.at_ms));
    }
    assert.deepEqual(body.data[2].detail, { consumer: "partner", tenant: null, models: null, expires_ms: null });
    assert.deepEqual(body.data[1].detail, { consumer: "partner", tenant: null, models: ["mock"], expires_ms: null });
    assert.deepEqual(body.data[0].detail, { consumer: "partner" });
    assertNoKeyMaterial(text, "the audit log");
  });

  test("GET /admin/usage/consumer:web returns the counter status of a consumer-scoped limit", async () => {
    for (let i = 0; i < 2; i++) assert.deepEqual(await chatStatus(KEYS.web), [200, null]);
    // Settlement runs after the response (waitUntil): poll, bounded, until nothing is in flight.
    const deadline = Date.now() + 10000;
    let body;
    for (;;) {
      const res = await admin("GET", "/admin/usage/consumer:web");
      ({ body } = await json(res, 200));
      if (body.limits.every((l) => l.reserved === 0) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(body.subject, "consumer:web");
    assert.equal(body.limits.length, 1, JSON.stringify(body));
    const [limit] = body.limits;
    assert.equal(limit.metric, "requests");
    assert.equal(limit.window, "day");
    assert.equal(limit.limit, 100);
    assert.equal(limit.used, 2);
    assert.equal(limit.reserved, 0);
    assert.equal(limit.remaining, 98);
    assert.equal(limit.enforced, true);
    assert.equal(limit.exceeded, false);
    assert.ok(limit.reset_at_ms > Date.now() - 60000, `reset_at_ms ${limit.reset_at_ms}`);
    // The subject is percent-decoded.
    const encoded = await json(await admin("GET", "/admin/usage/consumer%3Aweb"), 200);
    assert.equal(encoded.body.subject, "consumer:web");
    assert.equal(encoded.body.limits[0].used, 2);
  });

  test("PUT /admin/config: invalid → 400, valid → 200, then GET returns it and it applies", async () => {
    const invalid = await admin("PUT", "/admin/config", { body: { ...config, models: { x: { provider: "nowhere" } } } });
    assert.equal(invalid.status, 400);
    const error = await readError(invalid);
    assert.equal(error.code, "invalid_request");
    assert.match(error.message, /The configuration is invalid/);
    // Nothing was stored: GET still returns the shipped document.
    const current = await json(await admin("GET", "/admin/config"), 200);
    assert.deepEqual(current.body, { config });

    // A tighter limit for `limited`, and a new model.
    const next = structuredClone(config);
    next.rate_limits = [{ scope: ["consumer"], metric: "requests", window: "day", limit: 1 }];
    next.models["mock-new"] = { provider: "mock" };
    const put = await admin("PUT", "/admin/config", { body: next });
    const { body } = await json(put, 200);
    assert.equal(body.ok, true);
    assert.match(body.sha256, /^[0-9a-f]{16}$/);
    const read = await json(await admin("GET", "/admin/config"), 200);
    assert.deepEqual(read.body, { config: next });

    // It applies to the next request: the new model exists, the new limit binds.
    assert.deepEqual(await chatStatus(KEYS.limited, "mock-new"), [200, null]);
    const [status, limitError] = await chatStatus(KEYS.limited, "mock");
    assert.equal(status, 429);
    assert.equal(limitError.code, "rate_limit_exceeded");

    const audit = await json(await admin("GET", "/admin/audit"), 200);
    const [latest] = audit.body.data;
    assert.equal(latest.action, "config.update");
    assert.equal(latest.target, "config");
    assert.equal(latest.detail.after_sha256, body.sha256);
    assert.equal(audit.body.data.filter((e) => e.action === "config.update").length, 1, "the invalid PUT was not audited");
  });

  test("bad JSON → 400 invalid_json; wrong method → 405; unknown path → 404", async () => {
    for (const [method, pathname] of [
      ["POST", "/admin/keys"],
      ["PUT", "/admin/config"],
    ]) {
      const res = await admin(method, pathname, { body: "{nope" });
      assert.equal(res.status, 400, `${method} ${pathname}`);
      const error = await readError(res);
      assert.equal(error.code, "invalid_json");
      assert.equal(error.type, "invalid_request_error");
    }
    for (const [method, pathname] of [
      ["PATCH", "/admin/config"],
      ["DELETE", "/admin/audit"],
      ["GET", "/admin/keys"],
      ["POST", "/admin/usage/consumer:web"],
    ]) {
      const res = await admin(method, pathname);
      assert.equal(res.status, 405, `${method} ${pathname}`);
      assert.equal(res.headers.get("allow"), "GET, POST, PUT, DELETE");
      const error = await readError(res);
      assert.equal(error.code, "method_not_allowed");
    }
    const unknown = await admin("GET", "/admin/nothing");
    assert.equal(unknown.status, 404);
    assert.equal((await readError(unknown)).type, "not_found_error");
  });

  test("a virtual key dies with its consumer; listings never mix consumers sharing a prefix", async () => {
    const open = { ...structuredClone(config), rate_limits: [] };
    await json(await admin("PUT", "/admin/config", { body: open }), 200);
    const { key } = await createKey({ consumer: "web" });
    assert.deepEqual(await chatStatus(key), [200, null]);
    const withoutWeb = { ...open, auth: { ...open.auth, consumers: open.auth.consumers.filter((c) => c.id !== "web") } };
    await json(await admin("PUT", "/admin/config", { body: withoutWeb }), 200);
    for (const model of ["mock", "mock-large"]) {
      const [status, error] = await chatStatus(key, model);
      assert.equal(status, 401, model);
      assert.equal(error.code, "invalid_api_key");
    }

    const alice = await createKey({ consumer: "alice" });
    const evil = await createKey({ consumer: "alice:evil" });
    const { body } = await json(await admin("GET", "/admin/consumers/alice/keys"), 200);
    assert.deepEqual(body.data.map((r) => r.id), [alice.record.id], `not ${evil.record.id}`);
  });

  test("PUT /admin/config cannot reach private addresses, plain http, or send a secret to a new origin", async () => {
    const attempts = [
      [{ evil: { kind: "openai", base_url: "https://169.254.169.254/latest" } }, "providers.evil.base_url"],
      [{ evil: { kind: "openai", base_url: "https://127.0.0.1:8787/v1" } }, "providers.evil.base_url"],
      [{ evil: { kind: "openai", base_url: "http://api.example.com/v1" } }, "providers.evil.base_url"],
      [{ evil: { kind: "openai", base_url: "https://attacker.example/v1", api_key_secret: "OPENAI_API_KEY" } }, "providers.evil.api_key_secret"],
    ];
    for (const [providers, field] of attempts) {
      const res = await admin("PUT", "/admin/config", { body: { ...config, providers: { ...config.providers, ...providers } } });
      assert.equal(res.status, 400, field);
      const error = await readError(res);
      assert.equal(error.param, field);
    }
    const widen = await admin("PUT", "/admin/config", { body: { ...config, network: { allow_private_upstreams: true } } });
    assert.equal(widen.status, 400);
    assert.equal((await readError(widen)).param, "network.allow_private_upstreams");
  });

  test("malformed admin paths are 404 JSON, and failed admin logins are listed apart from changes", async () => {
    for (const pathname of ["/admin/consumers/keys", "/admin/consumers//keys", "/admin/usage/"]) {
      const res = await admin("GET", pathname);
      assert.equal(res.status, 404, pathname);
      assert.equal((await readError(res)).type, "not_found_error", pathname);
    }
    const { body, text } = await json(await admin("GET", "/admin/audit/logins"), 200);
    const failed = body.data.filter((e) => e.action === "login.failed");
    assert.ok(failed.length >= 3, `the refused keys of the first test: ${text}`);
    assert.ok(failed.every((e) => e.actor.startsWith("ip:")));
    for (const key of ["adm-wrong", KEYS.web, KEYS.limited]) assert.ok(!text.includes(key), "a guessed key is never stored");
  });

  test("PUT /admin/config refuses CR/LF in values bound for upstream URLs and headers, naming the field", async () => {
    const cases = [
      [{ providers: { ...config.providers, evil: { kind: "openai", base_url: "https://api.example.com/v1\r\nHost: x" } } }, "providers.evil.base_url"],
      [{ models: { ...config.models, crlf: { provider: "mock", upstream_model: "m\r\nx-evil: 1" } } }, "models.crlf.upstream_model"],
    ];
    for (const [change, field] of cases) {
      const res = await admin("PUT", "/admin/config", { body: { ...config, ...change } });
      assert.equal(res.status, 400, field);
      assert.equal((await readError(res)).param, field);
    }
  });

  test("repeated wrong keys from one address are slowed with 429; the right key from it still works", async () => {
    const from = (key) => gw.fetch("/v1/models", { headers: { authorization: `Bearer ${key}`, "cf-connecting-ip": "198.51.100.23" } });
    for (let i = 0; i < 20; i++) {
      const res = await from("sk-guess");
      assert.equal(res.status, 401, `failure ${i}`);
      await res.arrayBuffer();
    }
    const started = Date.now();
    const slowed = await from("sk-guess");
    assert.equal(slowed.status, 429);
    assert.ok(Date.now() - started >= 900, "answered after the delay");
    assert.ok(Number(slowed.headers.get("retry-after")) >= 1);
    await slowed.arrayBuffer();
    const legit = await from(KEYS.limited);
    assert.equal(legit.status, 200, "a valid key is never refused by the throttle");
    await legit.arrayBuffer();
  });
});
