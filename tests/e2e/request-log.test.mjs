// The request log and feedback through the real Worker (edge/src/request_log.rs; the store is
// the GatewayStats Durable Object's request-log tables, adapters/cloudflare/src/request_log.rs;
// the in-memory pipeline tests are edge/tests/request_log.rs): the opted-in consumer's requests
// (whole and streamed) are listed by /admin/requests with their bodies redacted, the other
// consumer's never; feedback is taken from the request's owner only, once, and shows in
// /admin/stats. Writes happen after the response (waitUntil), so reads poll briefly.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, readSse, sha256Hex, startWithUpstream } from "../harness.mjs";

const ADMIN_KEY = "adm-e2e-reqlog-0123456789abcdef01234567";
const EMAIL = "jane.doe@example.com";
const CARD = "4111 1111 1111 1111";
const API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
const JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const PROMPT = `mail ${EMAIL}, card ${CARD}, key ${API_KEY}, token ${JWT}`;

let suite;
let gw;

before(async () => {
  suite = await startWithUpstream({
    configure(config) {
      config.admin = { key_sha256: sha256Hex(ADMIN_KEY) };
      config.stats = { shards: 2 };
      const web = config.auth.consumers.find((c) => c.id === "web");
      web.request_log = { enabled: true, max_body_bytes: 8192, retention_days: 1 };
    },
  });
  ({ gw } = suite);
});
after(() => suite?.dispose());

function admin(pathname) {
  return gw.fetch(pathname, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
}

const body = (stream, model) => ({ model, stream, messages: [{ role: "user", content: PROMPT }] });

async function chat(key, stream = false, model = "gpt-4o-mini") {
  const res = await gw.post("/v1/chat/completions", body(stream, model), { key });
  assert.equal(res.status, 200, await res.clone().text());
  if (stream) await readSse(res);
  else await res.arrayBuffer();
  return res.headers.get("x-request-id");
}

/** Polls `get()` until `done(value)`, at most ~5 s. */
async function eventually(get, done, what) {
  let last;
  for (let i = 0; i < 100; i++) {
    last = await get();
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${what} never happened: ${JSON.stringify(last)}`);
}

function assertRedacted(text) {
  for (const secret of [EMAIL, CARD, API_KEY, JWT]) assert.ok(!text.includes(secret), `${secret} was stored: ${text}`);
}

describe("request log", () => {
  let whole, streamed, quiet;
  before(async () => {
    whole = await chat(KEYS.web);
    streamed = await chat(KEYS.web, true);
    quiet = await chat(KEYS.limited, false, "mock");
  });

  test("/admin/requests lists the opted-in consumer's requests, newest first, without bodies", async () => {
    const page = await eventually(
      async () => (await admin("/admin/requests?limit=10")).json(),
      (p) => p.data?.length >= 2,
      "two logged requests",
    );
    const ids = page.data.map((e) => e.request_id);
    assert.deepEqual(ids, [streamed, whole]);
    assert.ok(page.data.every((e) => e.consumer === "web" && e.request_body === undefined));
    const paged = await (await admin("/admin/requests?limit=1")).json();
    assert.deepEqual(paged.data.map((e) => e.request_id), [streamed]);
    const next = await (await admin(`/admin/requests?limit=1&cursor=${paged.next_cursor}`)).json();
    assert.deepEqual(next.data.map((e) => e.request_id), [whole]);
    const bad = await admin("/admin/requests?limit=0");
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, "limit");
    const denied = await gw.fetch("/admin/requests", { headers: { authorization: `Bearer ${KEYS.web}` } });
    assert.equal(denied.status, 401);
  });

  test("entries hold the redacted bodies, a stream's answer assembled", async () => {
    const res = await admin(`/admin/requests/${whole}`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assertRedacted(text);
    const entry = JSON.parse(text);
    assert.equal(entry.outcome, "completed");
    assert.match(entry.request_body, /\[EMAIL\].*\[CARD\].*\[SECRET\]/);
    assert.match(entry.response_body, /You said: mail \[EMAIL\]/);
    const stream = await (await admin(`/admin/requests/${streamed}`)).json();
    assertRedacted(JSON.stringify(stream));
    const answer = JSON.parse(stream.response_body);
    assert.match(answer.choices[0].message.content, /^Upstream says hello\. You said: mail \[EMAIL\]/);
    assert.equal((await admin(`/admin/requests/${quiet}`)).status, 404, "not opted in: never logged");
  });

  test("feedback: the owner once, nobody else, and it shows in /admin/stats", async () => {
    const send = (key, payload) => gw.post("/v1/feedback", payload, { key });
    const other = await send(KEYS.limited, { request_id: whole, score: 1 });
    assert.equal(other.status, 404);
    assert.equal((await other.json()).error.code, "request_not_found");
    const bad = await send(KEYS.web, { request_id: whole, score: 3 });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, "score");
    const ok = await eventually(async () => {
      const res = await send(KEYS.web, { request_id: whole, score: 1, label: "helpful", comment: "thanks" });
      return { status: res.status, body: await res.json() };
    }, (r) => r.status !== 404, "the ownership row");
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((await send(KEYS.web, { request_id: whole, score: 0 })).status, 409);
    const entry = await (await admin(`/admin/requests/${whole}`)).json();
    assert.equal(entry.feedback.label, "helpful");
    const stats = await eventually(
      async () => (await admin("/admin/stats?group_by=model")).json(),
      (s) => s.totals?.feedback_count === 1,
      "feedback in the rollups",
    );
    assert.equal(stats.totals.feedback_score_avg, 1);
    assert.deepEqual(stats.totals.feedback_labels, { helpful: 1 });
  });
});
