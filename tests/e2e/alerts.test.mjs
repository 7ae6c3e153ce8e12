// Alerts through the real Worker (edge/src/alerts.rs; the in-memory pipeline tests are
// edge/tests/alerts.rs): requests refused by a rate limit trip two `limit_rejections` rules; the
// Worker's `*/5 * * * *` cron (miniflare's scheduled trigger) and POST /admin/alerts/evaluate
// together send exactly one webhook per rule for the window, to a receiver run here, each signed
// with the configured secret (verified with node:crypto). The receiver listens on 127.0.0.1,
// which the shipped test document allows (`network.allow_private_upstreams`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import crypto from "node:crypto";
import { KEYS, chatBody, makeConfig, sha256Hex, startGateway } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";

const ADMIN_KEY = "adm-e2e-alerts-0123456789abcdef012345678";
const SECRET = "whsec_e2e_alerts_secret";

let up;
let gw;
let receiver;
const received = [];

before(async () => {
  receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const hook = `http://127.0.0.1:${receiver.address().port}/hook`;
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl });
  config.admin = { key_sha256: sha256Hex(ADMIN_KEY) };
  config.rate_limits = [{ scope: ["consumer"], metric: "requests", window: "minute", limit: 1 }];
  config.alerts = {
    webhook: { url: hook, secret: "ALERT_SECRET" },
    rules: [
      { name: "throttled", kind: "limit_rejections", threshold: 1, window_minutes: 60 },
      { name: "throttled-twice", kind: "limit_rejections", threshold: 2, window_minutes: 60 },
      { name: "quiet", kind: "guard_blocks", threshold: 1, window_minutes: 60 },
    ],
  };
  gw = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream, ALERT_SECRET: SECRET } });
});
after(async () => {
  await gw?.dispose();
  await up?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

function admin(pathname, { method = "GET", key = ADMIN_KEY } = {}) {
  return gw.fetch(pathname, { method, headers: key ? { authorization: `Bearer ${key}` } : {} });
}

function verify({ headers, body }, secret) {
  const header = headers["x-gateway-signature"] ?? "";
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const expected = crypto.createHmac("sha256", secret).update(`${m[1]}.${body}`).digest();
  return crypto.timingSafeEqual(expected, Buffer.from(m[2], "hex"));
}

describe("alerts", () => {
  before(async () => {
    // One allowed request, then two refused by the rate limit (1 a minute).
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await gw.post("/v1/chat/completions", chatBody("mock"), { key: KEYS.web });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 429, 429]);
    // The rollup writes run after the responses: wait until both refusals are counted.
    for (let i = 0; ; i++) {
      const stats = await (await admin("/admin/stats")).json();
      if (stats.totals.limit_rejections >= 2) break;
      assert.ok(i < 100, `rollups never caught up: ${JSON.stringify(stats.totals)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  test("the cron and the admin trigger send one signed webhook per firing rule and window", async () => {
    const worker = await gw.mf.getWorker();
    const outcome = await worker.scheduled({ cron: "*/5 * * * *" });
    assert.equal(outcome.outcome, "ok", JSON.stringify(outcome));
    assert.equal(received.length, 2, JSON.stringify(received.map((r) => r.body)));
    const rules = received.map((r) => JSON.parse(r.body).rule).sort();
    assert.deepEqual(rules, ["throttled", "throttled-twice"]);
    for (const r of received) {
      assert.equal(r.path, "/hook");
      assert.ok(verify(r, SECRET), `signature of ${r.body}`);
      assert.ok(!verify(r, "not-the-secret"));
      const payload = JSON.parse(r.body);
      assert.equal(payload.kind, "limit_rejections");
      assert.equal(payload.value, 2);
      assert.match(payload.window_start, /T\d\d:00:00Z$/);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes(KEYS.web));
    }

    // Evaluating again, from the admin route and from the cron: nothing more for this window.
    const res = await admin("/admin/alerts/evaluate", { method: "POST" });
    const report = await res.json();
    assert.equal(res.status, 200, JSON.stringify(report));
    const byName = Object.fromEntries(report.rules.map((r) => [r.rule, r]));
    assert.equal(byName.throttled.firing, true);
    assert.equal(byName.throttled.firings[0].delivery.status, "duplicate");
    assert.equal(byName.quiet.firing, false);
    await worker.scheduled({ cron: "*/5 * * * *" });
    assert.equal(received.length, 2);

    const listed = await (await admin("/admin/alerts")).json();
    const state = Object.fromEntries(listed.rules.map((r) => [r.name, r.state]));
    assert.equal(state.throttled.last_deliveries[0].delivery.status, "delivered");
    assert.equal(state.quiet.firing, false);
    assert.equal((await admin("/admin/alerts/evaluate", { method: "POST", key: KEYS.web })).status, 401);
  });
});
