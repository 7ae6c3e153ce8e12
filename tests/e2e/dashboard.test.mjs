// The admin dashboard (GET /admin/ui, edge/src/admin_ui.rs, edge/ui/) in real headless Chromium
// (Debian's package, driven by playwright-core; tests/ensure-chromium.sh installs it) against the
// real Worker in miniflare: real requests go through the gateway (two consumers, a stream, an
// upstream error, a fallback), then the page is opened with no key, a wrong key and the admin
// key. The numbers each chart drew must match /admin/stats as the test reads it; the page must
// load nothing from anywhere but the gateway and break its strict CSP nowhere.
// Screenshots: tests/.tmp/screenshots/*.png (docs/img/dashboard.png is one of them).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { KEYS, TESTS_DIR, chatBody, makeConfig, sha256Hex, startGateway } from "../harness.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";

const ADMIN_KEY = "adm-dash-0123456789abcdef0123456789abcdef";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = path.join(TESTS_DIR, ".tmp", "screenshots");
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const CHARTS = ["requests", "tokens", "cost", "gco2e", "top-consumers", "top-models", "errors", "latency", "cache", "budgets", "forecast", "regions"];

let up;
let gw;
let browser;

function dashboardConfig() {
  const config = makeConfig({ upstreamBaseUrl: up.baseUrl });
  config.admin = { key_sha256: sha256Hex(ADMIN_KEY) };
  config.budgets = [{ scope: ["consumer"], window: "day", usd: "5.00" }];
  // The request log for one consumer (web): the dashboard's request view lists it.
  config.auth.consumers.find((c) => c.id === "web").request_log = { enabled: true, max_body_bytes: 8192, retention_days: 1 };
  // Every chat model needs a price once a budget exists.
  config.prices = { "*": { input: "2.50", output: "10.00" } };
  config.models.routed = {
    targets: [
      { id: "primary-fails", provider: "upstream", upstream_model: "status-500", region: "us-east-1", jurisdiction: "us" },
      { id: "backup", provider: "upstream", upstream_model: "gpt-4o-mini", region: "eu-central-1", jurisdiction: "eu" },
    ],
    backoff: { base_ms: 1, max_ms: 1 },
  };
  return config;
}

function admin(pathname, key = ADMIN_KEY) {
  return gw.fetch(pathname, { headers: key ? { authorization: `Bearer ${key}` } : {} });
}

async function adminJson(pathname) {
  const res = await admin(pathname);
  const text = await res.text();
  assert.equal(res.status, 200, `${pathname}: ${text}`);
  return JSON.parse(text);
}

const dayRange = () => {
  const now = Date.now();
  return `from=${new Date(now - 86400e3).toISOString()}&to=${new Date(now + 60e3).toISOString()}&interval=hour`;
};
const stats = (groupBy) => adminJson(`/admin/stats?${dayRange()}&group_by=${groupBy}`);

/** Drive the traffic the charts will show; returns what was sent, by kind. */
async function traffic() {
  const chat = async (key, model, extra = {}) => {
    const res = await gw.post("/v1/chat/completions", chatBody(model, "Hello dashboard", extra), { key });
    await res.arrayBuffer();
    return res.status;
  };
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push(await chat(KEYS.web, "gpt-4o-mini"));
  statuses.push(await chat(KEYS.web, "gpt-4o-mini", { stream: true, stream_options: { include_usage: true } }));
  statuses.push(await chat(KEYS.limited, "mock"));
  statuses.push(await chat(KEYS.limited, "mock"));
  statuses.push(await chat(KEYS.web, "fail-500"));
  statuses.push(await chat(KEYS.web, "routed"));
  return statuses;
}

/** A fresh browser context on the dashboard, recording console errors, page errors, CSP
 * violations and every request the page makes. */
async function openDashboard(target = gw) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const seen = { console: [], pageErrors: [], requests: [], responses: [] };
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") seen.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => seen.pageErrors.push(String(e)));
  page.on("request", (r) => seen.requests.push(r.url()));
  page.on("response", (r) => seen.responses.push({ url: r.url(), status: r.status() }));
  // Injected by the DevTools protocol (not subject to the page's CSP): records violations.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const res = await page.goto(`${target.url}/admin/ui`);
  assert.equal(res.status(), 200);
  assert.equal(res.headers()["content-security-policy"], CSP);
  return { context, page, seen, origin: new URL(target.url).origin };
}

async function assertCleanPage(page, seen, { allow = [], origin = new URL(gw.url).origin } = {}) {
  const violations = await page.evaluate(() => window.__cspViolations);
  assert.deepEqual(violations, [], "CSP violations");
  assert.deepEqual(seen.pageErrors, [], "uncaught page errors");
  assert.deepEqual(seen.console.filter((m) => !allow.some((re) => re.test(m))), [], "console errors or warnings");
  const foreign = seen.requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("data:"));
  assert.deepEqual(foreign, [], "requests that left the gateway's origin");
}

async function renderedCharts(page) {
  return page.$$eval("[data-chart]", (figures) => figures.map((f) => f.dataset.chart));
}

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  up = await startMockUpstream({ apiKey: KEYS.upstream });
  gw = await startGateway({ config: dashboardConfig(), secrets: { OPENAI_API_KEY: KEYS.upstream } });
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
});

after(async () => {
  await browser?.close();
  await gw?.dispose();
  await up?.close();
});

describe("the dashboard in headless Chromium", () => {
  test("the shell, its script and style: served without a key, no data, strict CSP and headers", async () => {
    for (const [pathname, type] of [["/admin/ui", "text/html"], ["/admin/ui/app.js", "text/javascript"], ["/admin/ui/app.css", "text/css"]]) {
      const res = await gw.fetch(pathname);
      const body = await res.text();
      assert.equal(res.status, 200, `${pathname}: ${body}`);
      assert.ok(res.headers.get("content-type").startsWith(type), pathname);
      assert.equal(res.headers.get("content-security-policy"), CSP, pathname);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("referrer-policy"), "no-referrer");
      assert.ok(res.headers.get("cache-control"), pathname);
      assert.ok(!body.includes(ADMIN_KEY) && !body.includes(sha256Hex(ADMIN_KEY)), `${pathname} holds admin key material`);
    }
    const html = await (await gw.fetch("/admin/ui")).text();
    assert.match(html, /src="\/admin\/ui\/app\.js\?v=[0-9a-f]{12}"/);
    assert.doesNotMatch(html, /<style|style=|<script>/, "inline style or script in the shell");
    assert.equal((await gw.fetch("/admin/ui", { method: "POST" })).status, 405);
    // The API behind it still wants the key.
    assert.equal((await admin("/admin/config", null)).status, 401);
  });

  test("real traffic shows up in /admin/stats", async () => {
    const statuses = await traffic();
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 502, 200]);
    // The rollup is written after the response (waitUntil): poll until all eight are in. (The
    // refused admin calls of the test before count too, under consumer "(none)".)
    const deadline = Date.now() + 15000;
    let report;
    const consumers = (r) => r.series.filter((s) => s.group === "web" || s.group === "limited").reduce((a, s) => a + s.totals.requests, 0);
    for (;;) {
      report = await stats("consumer");
      if (consumers(report) >= 8 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const totals = report.totals;
    assert.equal(consumers(report), 8, JSON.stringify(report.series));
    const real = report.series.filter((s) => s.group !== "(none)");
    assert.deepEqual(real.map((s) => [s.group, s.totals.requests]), [["web", 6], ["limited", 2]]);
    assert.ok(totals.errors >= 1, "the upstream 500 counts as an error");
    assert.ok(totals.input_tokens > 0 && totals.output_tokens > 0 && totals.cost_usd > 0, JSON.stringify(totals));
  });

  test("without a key: the form, no admin call, nothing drawn", async () => {
    const { context, page, seen } = await openDashboard();
    try {
      await page.locator("#key-form").waitFor({ state: "visible" });
      assert.deepEqual(await renderedCharts(page), []);
      assert.ok(await page.locator("#dashboard").isHidden());
      assert.deepEqual(seen.requests.filter((u) => u.includes("/admin/stats") || u.includes("/admin/config")), []);
      await assertCleanPage(page, seen);
      await page.screenshot({ path: path.join(SHOTS, "dashboard-login.png") });
    } finally {
      await context.close();
    }
  });

  test("a wrong key: the gateway answers 401, the form comes back with the error, nothing drawn or kept", async () => {
    const { context, page, seen } = await openDashboard();
    try {
      await page.fill("#key", "not-the-admin-key");
      await page.click("#key-form button[type=submit]");
      await page.locator("#login-error").filter({ hasText: "refused" }).waitFor();
      const adminCalls = seen.responses.filter((r) => r.url.includes("/admin/") && !r.url.includes("/admin/ui"));
      assert.ok(adminCalls.length >= 1, "the page called the admin API");
      assert.ok(adminCalls.every((r) => r.status === 401), JSON.stringify(adminCalls));
      assert.ok(await page.locator("#key-form").isVisible());
      assert.deepEqual(await renderedCharts(page), []);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the refused key is forgotten");
      // Chromium logs each 401 fetch as a failed resource load: expected here, nothing else.
      await assertCleanPage(page, seen, { allow: [/status of 401/] });
    } finally {
      await context.close();
    }
  });

  test("the admin key: every chart draws, with the numbers /admin/stats has", async () => {
    const { context, page, seen } = await openDashboard();
    try {
      await page.fill("#key", ADMIN_KEY);
      await page.click("#key-form button[type=submit]");
      await page.locator("body[data-loaded=true]").waitFor({ timeout: 15000 });
      assert.deepEqual(await renderedCharts(page), CHARTS);
      // Each chart has a drawing with something in it.
      for (const name of CHARTS) {
        const marks = await page.locator(`[data-chart="${name}"] svg :is(path.line, rect.bar, circle.dot)`).count();
        assert.ok(marks > 0, `chart ${name} drew nothing`);
      }
      const [byOutcome, byConsumer, byModel, byRegion] = await Promise.all([stats("outcome"), stats("consumer"), stats("model"), stats("region")]);
      const t = byOutcome.totals;
      const data = (name) => page.locator(`[data-chart="${name}"]`).evaluate((f) => ({ ...f.dataset }));
      assert.equal(Number((await data("requests")).total), t.requests);
      const tokens = await data("tokens");
      assert.equal(Number(tokens.input), t.input_tokens);
      assert.equal(Number(tokens.output), t.output_tokens);
      assert.ok(Math.abs(Number((await data("cost")).total) - t.cost_usd) < 1e-9, `cost ${(await data("cost")).total} vs ${t.cost_usd}`);
      assert.ok(Math.abs(Number((await data("gco2e")).total) - t.gco2e) < 1e-6);
      const errors = await data("errors");
      assert.equal(Number(errors.errors), t.errors);
      assert.equal(Number(errors.fallbacks), t.fallbacks);
      // Top consumers and models: the same names, in the order of the stats (most requests first).
      const names = (s) => s.series.filter((x) => x.totals.requests > 0).slice(0, 8).map((x) => x.group).join(",");
      assert.equal((await data("top-consumers")).names, names(byConsumer));
      assert.deepEqual(names(byConsumer).split(",").filter((n) => n !== "(none)"), ["web", "limited"]);
      assert.ok(await page.locator('[data-chart="top-consumers"] rect.bar[data-label="web"]').count() === 1);
      assert.equal((await data("top-models")).names, names(byModel));
      assert.equal(Number((await data("regions")).total), byRegion.series.reduce((a, s) => a + s.totals.requests, 0));
      // The hidden table of the consumers chart carries the same numbers as the stats.
      const rows = await page.locator('[data-chart="top-consumers"] table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
      assert.deepEqual(rows.map((r) => [r[0], Number(r[1])]), byConsumer.series.filter((x) => x.totals.requests > 0).slice(0, 8).map((x) => [x.group, x.totals.requests]));
      // The budget: web's spend today against its 5 USD limit, as the counter has it.
      const usage = await adminJson(`/admin/usage/${encodeURIComponent("consumer:web")}`);
      const cost = usage.limits.find((l) => l.metric === "cost" && l.window === "day");
      assert.ok(cost && cost.used > 0, JSON.stringify(usage));
      const bar = page.locator('[data-chart="budgets"] rect.bar[data-label="consumer:web / day"]');
      assert.ok(Math.abs(Number(await bar.getAttribute("data-value")) - (cost.used + cost.reserved) / 1e9) < 1e-9);
      assert.equal(Number(await page.locator('[data-chart="budgets"] line.limit').first().getAttribute("data-limit")), 5);
      // The forecast: per budget subject, spent, limit, forecast and its range as /admin/forecast
      // has them (the forecast moves with the clock between the page's read and ours: 0.1%).
      const forecast = await adminJson("/admin/forecast");
      assert.ok(forecast.forecasts.length >= 2, JSON.stringify(forecast));
      const drawnForecast = await page.locator('[data-chart="forecast"] table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
      assert.deepEqual(drawnForecast.map((r) => r[0]), forecast.forecasts.map((f) => `${f.subject} / ${f.budget}`));
      const close = (a, b, what) => assert.ok(Math.abs(Number(a) - b) <= 1e-9 + Math.abs(b) * 1e-3, `${what}: drawn ${a}, /admin/forecast ${b}`);
      forecast.forecasts.forEach((f, i) => {
        const [, spent, limit, point, low, high, note] = drawnForecast[i];
        assert.equal(Number(spent), f.spent_usd, `${f.subject} spent`);
        assert.equal(Number(limit), f.limit_usd, `${f.subject} limit`);
        close(point, f.forecast_usd, `${f.subject} forecast`);
        close(low, f.low_usd, `${f.subject} low`);
        close(high, f.high_usd, `${f.subject} high`);
        assert.equal(f.fallback, true, "minutes of history: the run-rate fallback");
        assert.match(note, /^run rate \(short history\)/);
      });
      assert.equal(await page.locator('[data-chart="forecast"] circle.point').count(), forecast.forecasts.length);
      assert.equal(await page.locator('[data-chart="forecast"] rect.range').count(), forecast.forecasts.length);
      await assertCleanPage(page, seen);
      await page.screenshot({ path: path.join(SHOTS, "dashboard.png"), fullPage: true });
      // Forget key: back to the form, nothing drawn, nothing kept.
      await page.click("#forget");
      await page.locator("#key-form").waitFor({ state: "visible" });
      assert.deepEqual(await renderedCharts(page), []);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    } finally {
      await context.close();
    }
  });

  test("the request log view: the same ids as /admin/requests, filters, more, bodies redacted and as text", async () => {
    // One more request of web's: an e-mail address and an HTML payload in the prompt.
    const xss = `mail alice.dash@example.com <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
    const res = await gw.post("/v1/chat/completions", chatBody("gpt-4o-mini", xss), { key: KEYS.web });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const id = res.headers.get("x-request-id");
    const deadline = Date.now() + 10000;
    let listed;
    for (;;) {
      listed = await adminJson("/admin/requests?limit=20");
      if (listed.data.some((e) => e.request_id === id) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(listed.data[0]?.request_id, id, "the newest entry is the one just sent");
    // Only web logs: its seven requests (six of the traffic, this one).
    assert.equal(listed.data.length, 7, JSON.stringify(listed.data.map((e) => e.consumer)));
    assert.ok(listed.data.every((e) => e.consumer === "web"));

    const { context, page, seen } = await openDashboard();
    try {
      await page.fill("#key", ADMIN_KEY);
      await page.click("#key-form button[type=submit]");
      await page.locator("body[data-loaded=true]").waitFor({ timeout: 15000 });
      const view = page.locator('[data-view="requests"]');
      await page.locator(`[data-view="requests"][data-loaded=true]`).waitFor();
      const ids = () => view.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
      assert.deepEqual(await ids(), listed.data.map((e) => e.request_id));
      // The cells: consumer, model, outcome, status as the entry has them.
      const first = await view.locator("tbody tr").first().evaluate((tr) => [...tr.children].map((c) => c.textContent));
      assert.deepEqual(first.slice(1, 5), ["web", "gpt-4o-mini", "completed", "200"]);

      // Filters: consumer limited (not logged) shows nothing, web shows web's rows only.
      const reload = async (select, value) => {
        await page.selectOption(select, value);
        await page.locator(`[data-view="requests"][data-loaded=true]`).waitFor();
      };
      await reload("#log-consumer", "limited");
      assert.deepEqual(await ids(), []);
      assert.match(await page.locator("#log-status").textContent(), /No logged request matches/);
      await reload("#log-consumer", "web");
      const webOnly = await adminJson("/admin/requests?limit=20&consumer=web");
      assert.deepEqual(await ids(), webOnly.data.map((e) => e.request_id));
      assert.deepEqual(await view.locator("tbody tr").evaluateAll((trs) => [...new Set(trs.map((tr) => tr.dataset.consumer))]), ["web"]);
      await reload("#log-outcome", "failed");
      const failed = await adminJson("/admin/requests?limit=20&consumer=web&outcome=failed");
      assert.ok(failed.data.length >= 1);
      assert.deepEqual(await ids(), failed.data.map((e) => e.request_id));
      await reload("#log-outcome", "");

      // "More" follows next_cursor: pages of 5, then the remaining two appended.
      assert.ok(await page.locator("#log-more").isHidden(), "seven entries fit one page of 20");
      await reload("#log-limit", "5");
      const five = await adminJson("/admin/requests?limit=5");
      assert.ok(five.next_cursor);
      assert.deepEqual(await ids(), five.data.map((e) => e.request_id));
      await page.click("#log-more");
      await page.locator(`[data-view="requests"][data-loaded=true]`).waitFor();
      await page.waitForFunction(() => document.querySelectorAll('[data-view="requests"] tbody tr').length === 7);
      assert.deepEqual(await ids(), listed.data.map((e) => e.request_id));
      assert.ok(await page.locator("#log-more").isHidden(), "the last page has no next_cursor");

      // The detail: redacted bodies, as text.
      await view.locator(`tbody tr[data-id="${id}"]`).click();
      const detail = page.locator(`#log-detail[data-id="${id}"][data-loaded=true]`);
      await detail.waitFor();
      const entry = await adminJson(`/admin/requests/${id}`);
      const requestText = await page.locator('[data-body="request"]').textContent();
      const responseText = await page.locator('[data-body="response"]').textContent();
      assert.equal(requestText, entry.request_body);
      assert.equal(responseText, entry.response_body);
      assert.ok(!requestText.includes("alice.dash@example.com") && requestText.includes("[EMAIL]"), requestText);
      // The HTML is shown as text: no element was made of it, nothing ran.
      assert.ok(requestText.includes("<img src=x onerror=") && requestText.includes("<script>window.__xss=2</script>"), requestText);
      assert.equal(await page.locator("#log-detail img, #log-detail script").count(), 0);
      assert.equal(await page.evaluate(() => window.__xss), undefined);
      await assertCleanPage(page, seen);
    } finally {
      await context.close();
    }
  });

  test("no request_log anywhere: the request view says the log is not enabled", async () => {
    const config = dashboardConfig();
    delete config.auth.consumers.find((c) => c.id === "web").request_log;
    const quiet = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
    const { context, page, seen, origin } = await openDashboard(quiet);
    try {
      await page.fill("#key", ADMIN_KEY);
      await page.click("#key-form button[type=submit]");
      await page.locator('[data-view="requests"][data-loaded=true]').waitFor({ timeout: 15000 });
      assert.match(await page.locator("#log-status").textContent(), /not enabled for any consumer, tenant or model/);
      assert.ok(await page.locator("#log-table").isHidden());
      await assertCleanPage(page, seen, { origin });
    } finally {
      await context.close();
      await quiet.dispose();
    }
  });

  test("no admin key in the configuration: the page says the admin API is disabled", async () => {
    const config = dashboardConfig();
    delete config.admin;
    const plain = await startGateway({ config, secrets: { OPENAI_API_KEY: KEYS.upstream } });
    const { context, page, seen, origin } = await openDashboard(plain);
    try {
      await page.fill("#key", "any-key");
      await page.click("#key-form button[type=submit]");
      await page.locator("#disabled").waitFor({ state: "visible" });
      assert.ok(await page.locator("#key-form").isHidden());
      assert.deepEqual(await renderedCharts(page), []);
      assert.equal(await page.evaluate(() => sessionStorage.length), 0);
      await assertCleanPage(page, seen, { allow: [/status of 404/], origin });
    } finally {
      await context.close();
      await plain.dispose();
    }
  });
});
