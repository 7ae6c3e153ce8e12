// The admin dashboard (GET /admin/ui). It reads the admin API with the admin key the person
// types in, kept in sessionStorage for this tab only, and draws what /admin/stats,
// /admin/config, /admin/usage/{subject} and /admin/forecast return, and the request log
// (/admin/requests). No data is in the page itself; nothing is
// fetched from anywhere but this origin.
import { barChart, lineChart } from "./charts.js";

const KEY_STORAGE = "gateway-admin-key";
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- the key and the API

class Unauthorized extends Error {}
class AdminDisabled extends Error {}

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

function forgetKey() {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage unavailable: nothing kept */
  }
}

/** GET an admin API path with the stored key; JSON back, or a typed failure. */
async function api(path) {
  const key = storedKey();
  if (!key) throw new Unauthorized("Enter the admin key.");
  const res = await fetch(path, { headers: { authorization: `Bearer ${key}` }, cache: "no-store", credentials: "omit" });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: reported below */
  }
  const message = body?.error?.message ?? `${res.status} ${res.statusText}`;
  if (res.status === 401 || res.status === 403) throw new Unauthorized(message);
  if (!res.ok) {
    const error = new Error(`${path.split("?")[0]}: ${message}`);
    error.status = res.status;
    throw error;
  }
  return body;
}

function show(section) {
  for (const id of ["login", "disabled", "dashboard"]) $(id).hidden = id !== section;
  $("range-form").hidden = section !== "dashboard";
}

function showLogin(error) {
  forgetKey();
  $("charts").replaceChildren();
  $("summary").replaceChildren();
  clearLog();
  $("login-error").textContent = error ?? "";
  show("login");
  $("key").value = "";
  $("key").focus();
}

// ---------------------------------------------------------------- time range

const HOUR = 3600e3;
const DAY = 24 * HOUR;

function selectedRange() {
  const choice = $("range").value;
  const now = Date.now();
  if (choice === "custom") {
    const from = Date.parse(`${$("from").value}Z`);
    const to = Date.parse(`${$("to").value}Z`);
    if (Number.isFinite(from) && Number.isFinite(to) && to > from) return { from, to };
    return { from: now - DAY, to: now };
  }
  const span = { "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY }[choice] ?? DAY;
  return { from: now - span, to: now };
}

function rangeQuery({ from, to }, interval, groupBy) {
  const q = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), interval });
  if (groupBy) q.set("group_by", groupBy);
  return `/admin/stats?${q}`;
}

// ---------------------------------------------------------------- shaping /admin/stats

const ADDITIVE = [
  "requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "gco2e",
  "cache_hits", "cache_saved_tokens", "cache_saved_usd", "cache_saved_gco2e", "fallbacks", "disconnects",
  "guard_blocks", "limit_rejections", "residency_kept", "carbon_saved_gco2e",
];

/**
 * The range's buckets (`interval` steps from `from`, empty ones included) with the metrics of
 * `series` summed per bucket. Only additive metrics are summed: percentiles do not add up, so
 * `latency(stats)` reads them from one group.
 */
function timeline(stats, series = stats.series ?? []) {
  const step = stats.interval === "day" ? DAY : HOUR;
  const from = Math.floor(Date.parse(stats.from) / step) * step;
  const to = Date.parse(stats.to);
  const buckets = new Map();
  for (let t = from; t < to; t += step) buckets.set(t, null);
  for (const s of series) {
    for (const p of s.points ?? []) {
      const t = Date.parse(p.t);
      const prev = buckets.get(t);
      const next = { latency_ms: p.latency_ms, duration_ms: p.duration_ms };
      for (const m of ADDITIVE) next[m] = (prev?.[m] ?? 0) + (p[m] ?? 0);
      buckets.set(t, next);
    }
  }
  const times = [...buckets.keys()].sort((a, b) => a - b);
  return { times, points: times.map((t) => buckets.get(t)) };
}

/**
 * Latency percentiles per bucket, exact: those of the completed requests (the stats grouped by
 * outcome), the latency people wait for; failures answer at their own pace.
 */
function latency(stats) {
  const completed = (stats.series ?? []).filter((s) => s.group === "completed");
  return timeline(stats, completed).points.map((p) => p?.latency_ms ?? null);
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const ratio = (a, b) => (b > 0 ? a / b : null);

// ---------------------------------------------------------------- formatting

const int = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const fmtCount = (v) => (Math.abs(v) >= 10000 ? compact.format(v) : int.format(v));
const fmtUsd = (v) => (v === 0 ? "$0" : Math.abs(v) < 0.01 ? `$${v.toPrecision(2)}` : `$${v.toFixed(2)}`);
const fmtG = (v) => (v === 0 ? "0 g" : Math.abs(v) < 1 ? `${v.toPrecision(2)} g` : `${fmtCount(v)} g`);
const fmtPct = (v) => `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`;
const fmtMs = (v) => `${int.format(v)} ms`;

// ---------------------------------------------------------------- rendering

function chartBox(name, title, extra = {}) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.chart = name;
  for (const [k, v] of Object.entries(extra)) figure.dataset[k] = String(v);
  const caption = document.createElement("figcaption");
  const h = document.createElement("h3");
  h.textContent = title;
  caption.appendChild(h);
  figure.appendChild(caption);
  const body = document.createElement("div");
  body.className = "chart-body";
  figure.appendChild(body);
  $("charts").appendChild(figure);
  return { figure, body, caption };
}

function note(caption, text) {
  const p = document.createElement("p");
  p.className = "figure-note";
  p.textContent = text;
  caption.appendChild(p);
}

function card(label, value, name) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.metric = name;
  const v = document.createElement("strong");
  v.textContent = value;
  const l = document.createElement("span");
  l.textContent = label;
  div.append(v, l);
  $("summary").appendChild(div);
}

function topItems(stats, metric, n = 8) {
  return (stats.series ?? [])
    .map((s) => ({ label: s.group, value: s.totals?.[metric] ?? 0, totals: s.totals ?? {} }))
    .filter((i) => i.value > 0)
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label))
    .slice(0, n);
}

/** The subject key the limits build for one dimension's value (policy/src/limits/scope.rs). */
function subjectPart(dim, value) {
  let out = "";
  for (const ch of value) {
    if (ch === "%" || ch === "|" || ch === ":" || /[\u0000-\u001f\u007f-\u009f]/.test(ch)) {
      for (const b of new TextEncoder().encode(ch)) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
    } else out += ch;
  }
  return `${dim}:${out}`;
}

/**
 * Each budget's spend against its limit, for the subjects the stats saw (a budget scoped to one
 * of consumer, tenant, model). The spend is the counter's settled cost plus in-flight
 * reservations in the budget's current window, read from /admin/usage/{subject}.
 */
async function budgetItems(config, grouped) {
  const budgets = config?.budgets ?? [];
  const items = [];
  const skipped = [];
  for (const budget of budgets) {
    const scope = budget.scope ?? [];
    const dim = scope.length === 1 ? scope[0] : null;
    if (!["consumer", "tenant", "model"].includes(dim)) {
      skipped.push(scope.join("+"));
      continue;
    }
    const groups = (grouped[dim]?.series ?? []).map((s) => s.group).filter((g) => g && g !== "(none)").slice(0, 10);
    for (const group of groups) {
      const subject = subjectPart(dim, group);
      let usage;
      try {
        usage = await api(`/admin/usage/${encodeURIComponent(subject)}`);
      } catch (error) {
        if (error instanceof Unauthorized) throw error;
        skipped.push(`${subject} (${error.message})`);
        continue;
      }
      const counter = (usage.limits ?? []).find((l) => l.metric === "cost" && l.window === budget.window);
      const limitUsd = counter ? counter.limit / 1e9 : Number(budget.usd);
      const usedUsd = counter ? (counter.used + counter.reserved) / 1e9 : 0;
      items.push({ label: `${subject} / ${budget.window}`, value: usedUsd, limit: limitUsd, note: budget.hard === false ? "alert only" : "hard" });
    }
  }
  return { items, skipped };
}

/** /admin/forecast as bar items: spent so far, the forecast range and point, the limit. */
async function forecastItems() {
  try {
    const report = await api("/admin/forecast");
    const items = (report.forecasts ?? []).map((f) => ({
      label: `${f.subject} / ${f.budget}`,
      value: f.spent_usd,
      limit: f.limit_usd,
      forecast: f.forecast_usd,
      low: f.low_usd,
      high: f.high_usd,
      note: `${f.fallback ? "run rate (short history)" : f.model}${f.exceeds_at ? `; exceeds the limit at ${f.exceeds_at}` : ""}`,
      exceedsAt: f.exceeds_at ?? null,
    }));
    return { at: report.at, items, error: null };
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    return { at: null, items: [], error: error.message };
  }
}

let loading = 0;

async function load() {
  const run = ++loading;
  const range = selectedRange();
  const interval = range.to - range.from > 7 * DAY + HOUR ? "day" : "hour";
  $("status").textContent = "Loading…";
  show("dashboard");
  try {
    const config = (await api("/admin/config")).config ?? {};
    const [overall, byConsumer, byModel, byRegion] = await Promise.all([
      api(rangeQuery(range, interval, "outcome")),
      api(rangeQuery(range, interval, "consumer")),
      api(rangeQuery(range, interval, "model")),
      api(rangeQuery(range, interval, "region")),
    ]);
    const byTenant = (config.budgets ?? []).some((b) => (b.scope ?? []).join() === "tenant") ? await api(rangeQuery(range, interval, "tenant")) : null;
    const budgets = await budgetItems(config, { consumer: byConsumer, model: byModel, tenant: byTenant });
    const forecast = await forecastItems();
    if (run !== loading) return;
    render({ overall, byConsumer, byModel, byRegion, budgets, forecast });
    logChoices(byConsumer, byModel);
    log.enabled = logEnabled(config);
    loadLog(true);
    $("status").textContent = `${overall.from} to ${overall.to}, per ${overall.interval}. Times are UTC.`;
  } catch (error) {
    if (run !== loading) return;
    if (error instanceof Unauthorized) return showLogin(`The gateway refused the key: ${error.message}`);
    if (error.status === 404 && /\/admin\/config/.test(error.message)) {
      forgetKey();
      return show("disabled");
    }
    $("status").textContent = `Could not load the statistics: ${error.message}`;
    $("status").classList.add("error");
  }
}

function render({ overall, byConsumer, byModel, byRegion, budgets, forecast }) {
  $("charts").replaceChildren();
  $("summary").replaceChildren();
  $("status").classList.remove("error");
  const t = overall.totals ?? {};
  const { times, points } = timeline(overall);
  const series = (metric) => points.map((p) => (p ? p[metric] ?? 0 : 0));
  const drawn = (metric) => sum(series(metric));

  card("requests", fmtCount(t.requests ?? 0), "requests");
  card("tokens in / out", `${fmtCount(t.input_tokens ?? 0)} / ${fmtCount(t.output_tokens ?? 0)}`, "tokens");
  card("cost", fmtUsd(t.cost_usd ?? 0), "cost");
  card("emissions", fmtG(t.gco2e ?? 0), "gco2e");
  card("error rate", ratio(t.errors ?? 0, t.requests ?? 0) === null ? "–" : fmtPct(t.errors / t.requests), "error-rate");
  card("latency p95", t.latency_ms?.p95 === undefined ? "–" : fmtMs(t.latency_ms.p95), "latency-p95");

  {
    const c = chartBox("requests", "Requests", { total: drawn("requests") });
    lineChart(c.body, { title: "Requests over time", times, series: [{ name: "requests", values: series("requests") }], format: fmtCount });
  }
  {
    const c = chartBox("tokens", "Tokens", { input: drawn("input_tokens"), output: drawn("output_tokens"), total: drawn("input_tokens") + drawn("output_tokens") });
    lineChart(c.body, { title: "Tokens over time", times, series: [{ name: "input", values: series("input_tokens") }, { name: "output", values: series("output_tokens"), cls: 1 }], format: fmtCount });
  }
  {
    const total = drawn("cost_usd");
    const c = chartBox("cost", "Cost (USD)", { total: +total.toFixed(9) });
    note(c.caption, `${fmtUsd(total)} in the range`);
    lineChart(c.body, { title: "Cost over time (USD)", times, series: [{ name: "cost_usd", values: series("cost_usd"), cls: 2 }], format: fmtUsd });
  }
  {
    const total = drawn("gco2e");
    const c = chartBox("gco2e", "Emissions (gCO2e)", { total: +total.toFixed(6) });
    note(c.caption, `${fmtG(total)} in the range`);
    lineChart(c.body, { title: "Emissions over time (gCO2e)", times, series: [{ name: "gco2e", values: series("gco2e"), cls: 3 }], format: fmtG });
  }
  {
    const items = topItems(byConsumer, "requests");
    const c = chartBox("top-consumers", "Top consumers (requests)", { total: sum(items.map((i) => i.value)), names: items.map((i) => i.label).join(",") });
    barChart(c.body, { title: "Top consumers by requests", items: items.map((i) => ({ ...i, note: fmtUsd(i.totals.cost_usd ?? 0) })), format: fmtCount });
  }
  {
    const items = topItems(byModel, "requests");
    const c = chartBox("top-models", "Top models (requests)", { total: sum(items.map((i) => i.value)), names: items.map((i) => i.label).join(",") });
    barChart(c.body, { title: "Top models by requests", items: items.map((i) => ({ ...i, note: fmtUsd(i.totals.cost_usd ?? 0) })), format: fmtCount });
  }
  {
    const errors = points.map((p) => (p ? ratio(p.errors, p.requests) : null));
    const fallbacks = points.map((p) => (p ? ratio(p.fallbacks, p.requests) : null));
    const c = chartBox("errors", "Error and fallback rate", { errors: drawn("errors"), fallbacks: drawn("fallbacks"), requests: drawn("requests") });
    const byType = Object.entries(t.errors_by_type ?? {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    note(c.caption, `${drawn("errors")} errors, ${drawn("fallbacks")} fallbacks${byType ? ` (${byType})` : ""}`);
    lineChart(c.body, { title: "Error and fallback rate over time", times, series: [{ name: "error rate", values: errors, cls: 4 }, { name: "fallback rate", values: fallbacks, cls: 1 }], format: fmtPct });
  }
  {
    const lat = latency(overall);
    const p50 = lat.map((l) => l?.p50 ?? null);
    const p95 = lat.map((l) => l?.p95 ?? null);
    const done = (overall.series ?? []).find((s) => s.group === "completed")?.totals?.latency_ms;
    const c = chartBox("latency", "Latency to first byte (completed requests)", { p50: done?.p50 ?? "", p95: done?.p95 ?? "" });
    if (done) note(c.caption, `p50 ${fmtMs(done.p50)}, p95 ${fmtMs(done.p95)} over the range`);
    lineChart(c.body, { title: "Latency p50 and p95 over time (ms)", times, series: [{ name: "p50", values: p50 }, { name: "p95", values: p95, cls: 1 }], format: fmtMs });
  }
  {
    const hitRate = points.map((p) => (p ? ratio(p.cache_hits, p.requests) : null));
    const c = chartBox("cache", "Cache hit rate and savings", { hits: drawn("cache_hits"), savedTokens: drawn("cache_saved_tokens"), savedUsd: +drawn("cache_saved_usd").toFixed(9) });
    note(c.caption, `${drawn("cache_hits")} hits saved ${fmtCount(drawn("cache_saved_tokens"))} tokens, ${fmtUsd(drawn("cache_saved_usd"))}, ${fmtG(drawn("cache_saved_gco2e"))}`);
    lineChart(c.body, { title: "Cache hit rate over time", times, series: [{ name: "hit rate", values: hitRate, cls: 5 }], format: fmtPct });
  }
  {
    const c = chartBox("budgets", "Budgets: spend against limit", { count: budgets.items.length });
    if (budgets.skipped.length) note(c.caption, `Not shown: ${budgets.skipped.join("; ")}`);
    barChart(c.body, { title: "Budget spend (USD) against limit", items: budgets.items, format: fmtUsd, empty: "No budget is configured, or no subject of one has traffic in this range." });
  }
  {
    const c = chartBox("forecast", "Budgets: forecast for the period", { count: forecast.items.length, at: forecast.at ?? "" });
    if (forecast.error) note(c.caption, `Could not load the forecast: ${forecast.error}`);
    else note(c.caption, "Bar: spent so far; band: forecast range (low to high); dot: forecast; dashed: limit.");
    for (const i of forecast.items) if (i.exceedsAt) note(c.caption, `${i.label} exceeds its limit at ${i.exceedsAt}`);
    barChart(c.body, { title: "Budget forecast (USD): spent, forecast range and point, limit", items: forecast.items, format: fmtUsd, empty: "No budget has spend in its current period." });
  }
  {
    const items = (byRegion.series ?? [])
      .map((s) => ({ label: s.group, value: s.totals?.requests ?? 0, note: `residency kept ${s.totals?.residency_kept ?? 0}, carbon saved ${fmtG(s.totals?.carbon_saved_gco2e ?? 0)}` }))
      .filter((i) => i.value > 0)
      .sort((a, b) => b.value - a.value);
    const c = chartBox("regions", "Routing by region", { total: sum(items.map((i) => i.value)), residencyKept: t.residency_kept ?? 0, carbonSaved: t.carbon_saved_gco2e ?? 0 });
    note(c.caption, `residency kept on ${t.residency_kept ?? 0} requests; carbon-aware routing saved ${fmtG(t.carbon_saved_gco2e ?? 0)}`);
    barChart(c.body, { title: "Requests by region", items, format: fmtCount });
  }
  document.body.dataset.loaded = "true";
}

// ---------------------------------------------------------------- the request log

const log = { run: 0, cursor: null, enabled: false, detail: 0 };

/** Whether any consumer, tenant or model of the configuration turns the request log on. */
function logEnabled(value) {
  if (Array.isArray(value)) return value.some(logEnabled);
  if (!value || typeof value !== "object") return false;
  if (value.request_log?.enabled === true) return true;
  return Object.values(value).some(logEnabled);
}

/** The filters' choices: the consumers and models the stats saw (the selection is kept). */
function logChoices(byConsumer, byModel) {
  for (const [id, stats] of [["log-consumer", byConsumer], ["log-model", byModel]]) {
    const select = $(id);
    const current = select.value;
    const names = (stats.series ?? []).map((s) => s.group).filter((g) => g && g !== "(none)").sort();
    if (current && !names.includes(current)) names.push(current);
    const options = [new Option("any", "")];
    for (const name of names) options.push(new Option(name, name));
    select.replaceChildren(...options);
    select.value = current;
  }
}

function clearLog() {
  log.run++;
  log.cursor = null;
  $("log-rows").replaceChildren();
  $("log-table").hidden = true;
  $("log-more").hidden = true;
  $("log-status").textContent = "";
  hideDetail();
}

function hideDetail() {
  log.detail++;
  $("log-detail").hidden = true;
  $("log-request-body").textContent = "";
  $("log-response-body").textContent = "";
  $("log-detail-id").textContent = "";
}

function logQuery() {
  const q = new URLSearchParams({ limit: $("log-limit").value || "20" });
  for (const [name, id] of [["consumer", "log-consumer"], ["model", "log-model"], ["outcome", "log-outcome"]]) {
    if ($(id).value) q.set(name, $(id).value);
  }
  if (log.cursor) q.set("cursor", log.cursor);
  return `/admin/requests?${q}`;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
}

/** One page of /admin/requests: the first (`reset`) or the one after `log.cursor`. */
async function loadLog(reset) {
  if (reset) clearLog();
  const run = ++log.run;
  const view = $("requests-view");
  view.dataset.loaded = "false";
  $("log-status").textContent = "Loading…";
  try {
    const page = await api(logQuery());
    if (run !== log.run) return;
    for (const entry of page.data ?? []) {
      const tr = document.createElement("tr");
      tr.dataset.id = entry.request_id;
      tr.dataset.consumer = entry.consumer ?? "";
      tr.tabIndex = 0;
      cell(tr, new Date(entry.at_ms).toISOString().replace("T", " ").slice(0, 19));
      cell(tr, entry.consumer ?? "–");
      cell(tr, entry.model ?? "–");
      cell(tr, entry.error ? `${entry.outcome} (${entry.error})` : entry.outcome);
      cell(tr, String(entry.status), "num");
      cell(tr, entry.usage ? `${fmtCount(entry.usage.input_tokens)} / ${fmtCount(entry.usage.output_tokens)}` : "–", "num");
      cell(tr, entry.cost_nanos === null || entry.cost_nanos === undefined ? "–" : fmtUsd(entry.cost_nanos / 1e9), "num");
      cell(tr, fmtMs(entry.latency_ms), "num");
      $("log-rows").appendChild(tr);
    }
    log.cursor = page.next_cursor ?? null;
    const count = $("log-rows").children.length;
    $("log-table").hidden = count === 0;
    $("log-more").hidden = !log.cursor;
    const filtered = ["log-consumer", "log-model", "log-outcome"].some((id) => $(id).value);
    $("log-status").textContent =
      count > 0
        ? `${count} request${count === 1 ? "" : "s"}, newest first${log.cursor ? "" : " (all kept)"}. Select one for its redacted bodies.`
        : !log.enabled
          ? "The request log is not enabled for any consumer, tenant or model (request_log in the configuration: docs/observability.md, Request log)."
          : filtered
            ? "No logged request matches these filters."
            : "No request has been logged yet.";
  } catch (error) {
    if (run !== log.run) return;
    if (error instanceof Unauthorized) return showLogin(`The gateway refused the key: ${error.message}`);
    $("log-status").textContent = `Could not load the request log: ${error.message}`;
  }
  view.dataset.loaded = "true";
}

/** One entry's redacted bodies, as text: they are user data and never parsed as HTML. */
async function showDetail(tr) {
  const run = ++log.detail;
  for (const row of $("log-rows").children) row.classList.toggle("selected", row === tr);
  $("log-detail").hidden = false;
  $("log-detail").dataset.id = tr.dataset.id;
  $("log-detail").dataset.loaded = "false";
  $("log-detail-id").textContent = tr.dataset.id;
  $("log-request-body").textContent = "Loading…";
  $("log-response-body").textContent = "";
  try {
    const entry = await api(`/admin/requests/${encodeURIComponent(tr.dataset.id)}`);
    if (run !== log.detail) return;
    const suffix = entry.truncated ? "\n[truncated at max_body_bytes]" : "";
    $("log-request-body").textContent = (entry.request_body ?? "(no request body)") + suffix;
    $("log-response-body").textContent = (entry.response_body ?? "(no response body)") + suffix;
  } catch (error) {
    if (run !== log.detail) return;
    if (error instanceof Unauthorized) return showLogin(`The gateway refused the key: ${error.message}`);
    $("log-request-body").textContent = `Could not load the entry: ${error.message}`;
  }
  $("log-detail").dataset.loaded = "true";
}

// ---------------------------------------------------------------- wiring

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    try {
      sessionStorage.setItem(KEY_STORAGE, key);
    } catch {
      $("login-error").textContent = "This browser refuses sessionStorage; the dashboard needs it to keep the key.";
      return;
    }
    $("key").value = "";
    $("login-error").textContent = "";
    load();
  });
  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("range").addEventListener("change", () => {
    const custom = $("range").value === "custom";
    $("custom-range").hidden = !custom;
    if (custom && !$("from").value) {
      const now = Date.now();
      $("from").value = new Date(now - DAY).toISOString().slice(0, 16);
      $("to").value = new Date(now).toISOString().slice(0, 16);
    }
    if (!custom) load();
  });
  $("log-filters").addEventListener("change", () => loadLog(true));
  $("log-filters").addEventListener("submit", (event) => event.preventDefault());
  $("log-more").addEventListener("click", () => loadLog(false));
  const pick = (event) => {
    const tr = event.target.closest("tr[data-id]");
    if (tr) showDetail(tr);
  };
  $("log-rows").addEventListener("click", pick);
  $("log-rows").addEventListener("keydown", (event) => {
    if (event.key === "Enter") pick(event);
  });
  $("forget").addEventListener("click", () => showLogin("Key forgotten."));
  if (storedKey()) load();
  else showLogin();
}

start();
