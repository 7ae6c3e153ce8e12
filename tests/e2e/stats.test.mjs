// Usage rollups through the real Worker (edge/src/rollups.rs, the GatewayStats Durable Objects
// of adapters/cloudflare/src/stats.rs; the in-memory pipeline tests are edge/tests/stats.rs):
// requests of every kind, then /admin/stats totals equal the sum of the usage events the Worker
// logged, /admin/stats.csv round-trips an awkward consumer name, /admin/metrics is strict
// Prometheus text, and none of them opens without the admin key. Rollup writes happen after the
// response (waitUntil), so reads poll with a short bounded retry.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KEYS, chatBody, readSse, sha256Hex, startWithUpstream } from "../harness.mjs";

const ADMIN_KEY = "adm-e2e-stats-0123456789abcdef0123456789";
const ODD = 'team "x", ops';

let suite;
let gw;
let oddKey;

before(async () => {
  suite = await startWithUpstream({
    configure(config) {
      config.admin = { key_sha256: sha256Hex(ADMIN_KEY) };
      config.prices = { "gpt-4o-mini": { input: "1.00", output: "2.00" } };
      config.rate_limits = [{ scope: ["consumer"], metric: "requests", window: "day", limit: 1000 }];
      config.stats = { shards: 3 };
    },
  });
  ({ gw } = suite);
  const created = await admin("/admin/keys", { method: "POST", body: JSON.stringify({ consumer: ODD }) });
  assert.equal(created.status, 201, await created.clone().text());
  oddKey = (await created.json()).key;
});
after(() => suite?.dispose());

function admin(pathname, { method = "GET", body, key = ADMIN_KEY } = {}) {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  if (body) headers["content-type"] = "application/json";
  return gw.fetch(pathname, { method, headers, body });
}

/** The usage events the Worker logged so far. */
function usageEvents() {
  return gw.jsonLogs().filter((e) => typeof e.request_id === "string" && typeof e.outcome === "string");
}

/** Polls `/admin/stats?query` until `done(body)` (the background writes landed), at most ~5 s. */
async function statsWhen(query, done) {
  let last;
  for (let i = 0; i < 100; i++) {
    const res = await admin(`/admin/stats?${query}`);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    last = JSON.parse(text);
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`the rollups never caught up: ${JSON.stringify(last?.totals)}`);
}

const sum = (events, f) => events.reduce((n, e) => n + f(e), 0);

describe("usage rollups", () => {
  before(async () => {
    const whole = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini"), { key: KEYS.web });
    assert.equal(whole.status, 200);
    await whole.arrayBuffer();
    const stream = await gw.post("/v1/chat/completions", { ...chatBody("gpt-4o-mini"), stream: true, stream_options: { include_usage: true } }, { key: KEYS.web });
    assert.equal(stream.status, 200);
    await readSse(stream);
    const failed = await gw.post("/v1/chat/completions", chatBody("fail-500"), { key: KEYS.web });
    assert.ok(failed.status >= 500);
    await failed.arrayBuffer();
    const odd = await gw.post("/v1/chat/completions", chatBody("mock"), { key: oddKey });
    assert.equal(odd.status, 200);
    await odd.arrayBuffer();
  });

  test("/admin/stats totals equal the sum of the usage events", async () => {
    const events = usageEvents();
    assert.equal(events.length, 4, JSON.stringify(events.map((e) => [e.model, e.outcome])));
    const report = await statsWhen("group_by=consumer", (r) => r.totals.requests >= events.length);
    const t = report.totals;
    assert.equal(t.requests, events.length);
    assert.equal(t.input_tokens, sum(events, (e) => e.usage?.input_tokens ?? 0));
    assert.equal(t.output_tokens, sum(events, (e) => e.usage?.output_tokens ?? 0));
    assert.ok(t.input_tokens > 0);
    assert.equal(t.errors, sum(events, (e) => (e.error ? 1 : 0)));
    assert.equal(t.errors_by_type.upstream_error, 1, JSON.stringify(t.errors_by_type));
    const cost = sum(events, (e) => e.quota?.cost_nanos ?? 0) / 1e9;
    assert.ok(cost > 0);
    assert.ok(Math.abs(t.cost_usd - cost) < 1e-12, `${t.cost_usd} vs ${cost}`);
    assert.equal(typeof t.latency_ms.p50, "number");
    assert.equal(typeof t.duration_ms.p99, "number");
    assert.deepEqual(
      report.series.map((s) => [s.group, s.totals.requests]),
      [["web", 3], [ODD, 1]],
    );
    for (const s of report.series) {
      assert.ok(s.points.length >= 1 && s.points.every((p) => typeof p.t === "string" && p.requests > 0));
    }
    const byModel = await statsWhen("group_by=model&interval=day", () => true);
    assert.deepEqual(byModel.series.map((s) => s.group).sort(), ["fail-500", "gpt-4o-mini", "mock"]);
  });

  test("/admin/stats refuses bad parameters with a 400 naming them", async () => {
    for (const [query, param] of [["from=yesterday", "from"], ["group_by=colour", "group_by"], ["interval=week", "interval"]]) {
      const res = await admin(`/admin/stats?${query}`);
      const body = await res.json();
      assert.equal(res.status, 400, query);
      assert.equal(body.error.param, param, JSON.stringify(body));
    }
  });

  test("/admin/stats.csv is RFC 4180 and round-trips an awkward consumer name", async () => {
    await statsWhen("group_by=consumer", (r) => r.totals.requests >= 4);
    const res = await admin("/admin/stats.csv?group_by=consumer&interval=day");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/csv; charset=utf-8");
    const records = parseCsv(await res.text());
    const header = records[0];
    assert.ok(records.every((r) => r.length === header.length));
    const group = header.indexOf("group");
    const requests = header.indexOf("requests");
    const odd = records.find((r) => r[group] === ODD);
    assert.ok(odd, JSON.stringify(records));
    assert.equal(odd[requests], "1");
    assert.ok(header.includes("latency_p50_ms"));
  });

  test("/admin/metrics is strict Prometheus text summing to the events", async () => {
    const events = usageEvents();
    await statsWhen("group_by=consumer", (r) => r.totals.requests >= events.length);
    const res = await admin("/admin/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const { types, samples } = parsePrometheus(await res.text());
    assert.equal(types.gateway_requests_total, "counter");
    assert.equal(types.gateway_request_duration_seconds, "summary");
    const total = (name, pred = () => true) => samples.filter((s) => s.name === name && pred(s.labels)).reduce((n, s) => n + s.value, 0);
    assert.equal(total("gateway_requests_total"), events.length);
    assert.equal(total("gateway_tokens_total", (l) => l.type === "output"), sum(events, (e) => e.usage?.output_tokens ?? 0));
    assert.equal(total("gateway_requests_total", (l) => l.consumer === ODD), 1);
    assert.equal(total("gateway_request_duration_seconds_count"), events.length);
  });

  test("none of them opens without the admin key", async () => {
    for (const path of ["/admin/stats", "/admin/stats.csv", "/admin/metrics"]) {
      assert.equal((await admin(path, { key: null })).status, 401, path);
      assert.equal((await admin(path, { key: KEYS.web })).status, 401, path);
    }
  });
});

/** RFC 4180, strictly: quoted fields with doubled quotes, CRLF-terminated records. */
function parseCsv(text) {
  const records = [];
  let record = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') {
      assert.equal(field, "", "a quote inside an unquoted field");
      quoted = true;
    } else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\r") {
      assert.equal(text[i + 1], "\n", "records end with CRLF");
      i++;
      record.push(field);
      records.push(record);
      record = [];
      field = "";
    } else {
      assert.notEqual(c, "\n", "a bare LF outside quotes");
      field += c;
    }
  }
  assert.ok(!quoted && field === "" && record.length === 0, "ends with a complete record");
  return records;
}

/** A strict line parser of the Prometheus text format 0.0.4 (HELP/TYPE before samples). */
function parsePrometheus(text) {
  assert.ok(text.endsWith("\n"));
  const types = {};
  const samples = [];
  for (const line of text.slice(0, -1).split("\n")) {
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line))) continue;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$/.exec(line))) {
      assert.ok(!(m[1] in types), `one TYPE per family: ${line}`);
      types[m[1]] = m[2];
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = m;
    const family = types[name] ? name : name.replace(/_(sum|count)$/, "");
    assert.ok(types[family], `sample before its TYPE: ${line}`);
    const labels = {};
    if (labelText !== undefined) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let at = 0;
      while (at < labelText.length) {
        re.lastIndex = at;
        const l = re.exec(labelText);
        assert.ok(l, `bad labels in ${line}`);
        assert.ok(!(l[1] in labels), `duplicate label in ${line}`);
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        at = re.lastIndex;
      }
    }
    const value = valueText === "NaN" ? NaN : Number(valueText);
    assert.ok(valueText === "NaN" || Number.isFinite(value), `bad value in ${line}`);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}
