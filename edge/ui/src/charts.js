// Minimal SVG charts: a time-series line chart and a horizontal bar chart (with an optional
// limit mark per bar). Everything is drawn with SVG elements and attributes, colours come from
// classes in app.css: nothing here needs an inline style, so the page's strict CSP holds.
// Each chart also writes the numbers it drew into a visually hidden <table> beside it (for
// screen readers, and for the browser test that compares them with /admin/stats).

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function html(name, attrs = {}, text) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A "nice" upper bound and tick step for values up to `max`. */
export function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  return { top: step * Math.ceil(max / step), step };
}

/** The hidden table of what a chart drew: `head` column names, `rows` arrays of cells. */
function dataTable(caption, head, rows) {
  const table = html("table", { class: "visually-hidden", "data-table": "" });
  table.appendChild(html("caption", {}, caption));
  const thead = html("thead");
  const tr = html("tr");
  for (const h of head) tr.appendChild(html("th", { scope: "col" }, h));
  thead.appendChild(tr);
  table.appendChild(thead);
  const tbody = html("tbody");
  for (const row of rows) {
    const r = html("tr");
    row.forEach((cell, i) => r.appendChild(html(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, String(cell))));
    tbody.appendChild(r);
  }
  table.appendChild(tbody);
  return table;
}

const W = 560;
const H = 200;
const PAD = { l: 72, r: 22, t: 10, b: 26 };

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs <= 2 * 86400e3) return `${String(d.getUTCHours()).padStart(2, "0")}:00`;
  return `${d.getUTCMonth() + 1}/${d.getUTCDate()}`;
}

/**
 * A line chart over time. `times` are bucket starts (ms); `series` is
 * [{ name, values: [number|null], cls }]; `format` formats a y value.
 */
export function lineChart(target, { title, times, series, format, raw = (v) => v }) {
  target.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "plot" });
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const { top, step } = niceScale(Math.max(0, ...values));
  const x0 = PAD.l, x1 = W - PAD.r, y0 = H - PAD.b, y1 = PAD.t;
  const span = times.length > 1 ? times[times.length - 1] - times[0] : 1;
  const x = (i) => (times.length > 1 ? x0 + ((times[i] - times[0]) / span) * (x1 - x0) : (x0 + x1) / 2);
  const y = (v) => y0 - (v / top) * (y0 - y1);
  for (let v = 0; v <= top + step / 2; v += step) {
    el("line", { x1: x0, x2: x1, y1: y(v), y2: y(v), class: "grid" }, svg);
    el("text", { x: x0 - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, svg).textContent = format(v);
  }
  const labels = Math.min(6, times.length);
  for (let k = 0; k < labels; k++) {
    const i = labels === 1 ? 0 : Math.round((k * (times.length - 1)) / (labels - 1));
    const anchor = labels > 1 && k === labels - 1 ? "end" : labels > 1 && k === 0 ? "start" : "middle";
    el("text", { x: x(i), y: H - 8, class: "tick", "text-anchor": anchor }, svg).textContent = timeLabel(times[i], span);
  }
  series.forEach((s, n) => {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) el("path", { d, class: `line s${s.cls ?? n}`, "data-series": s.name }, svg);
    // Single points (isolated by gaps) get a dot so they are visible.
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      const lone = (i === 0 || s.values[i - 1] === null) && (i === s.values.length - 1 || s.values[i + 1] === null);
      if (lone || times.length <= 2) {
        const dot = el("circle", { cx: x(i), cy: y(v), r: 3, class: `dot s${s.cls ?? n}` }, svg);
        el("title", {}, dot).textContent = `${s.name} ${new Date(times[i]).toISOString()}: ${format(v)}`;
      }
    });
  });
  const legend = html("ul", { class: "legend" });
  series.forEach((s, n) => legend.appendChild(html("li", { class: `key s${s.cls ?? n}` }, s.name)));
  const rows = times.map((t, i) => [new Date(t).toISOString(), ...series.map((s) => (s.values[i] === null ? "" : raw(s.values[i])))]);
  target.append(svg, legend, dataTable(title, ["time", ...series.map((s) => s.name)], rows));
}

/**
 * A horizontal bar chart. `items` is [{ label, value, limit?, note?, forecast?, low?, high? }]; a
 * limit draws a mark across the bar's row and the bar turns "over" when the value reaches it; a
 * forecast draws its low..high range as a band and its point as a dot.
 */
export function barChart(target, { title, items, format, raw = (v) => v, empty = "No data in this range." }) {
  target.replaceChildren();
  if (items.length === 0) {
    target.append(html("p", { class: "empty" }, empty), dataTable(title, ["name", "value"], []));
    return;
  }
  const row = 26;
  const labelW = 150;
  const h = items.length * row + 8;
  const svg = el("svg", { viewBox: `0 0 ${W} ${h}`, role: "img", "aria-label": title, class: "plot bars" });
  const max = Math.max(...items.map((i) => Math.max(i.value, i.limit ?? 0, i.high ?? 0)));
  const { top } = niceScale(max);
  const x0 = labelW, x1 = W - 90;
  const x = (v) => x0 + (v / top) * (x1 - x0);
  items.forEach((item, n) => {
    const y = 4 + n * row;
    const label = el("text", { x: labelW - 8, y: y + 16, class: "label", "text-anchor": "end" }, svg);
    label.textContent = item.label.length > 22 ? `${item.label.slice(0, 21)}…` : item.label;
    el("title", {}, label).textContent = item.label;
    const over = item.limit !== undefined && item.value >= item.limit;
    const bar = el("rect", { x: x0, y: y + 3, width: Math.max(1, x(item.value) - x0), height: row - 8, class: `bar${over ? " over" : ""}`, "data-label": item.label, "data-value": item.value }, svg);
    el("title", {}, bar).textContent = `${item.label}: ${format(item.value)}${item.limit !== undefined ? ` of ${format(item.limit)}` : ""}`;
    if (item.high !== undefined) {
      // A forecast: its range (low to high) as a thin band, its point as a dot.
      const band = el("rect", { x: x(item.low), y: y + row / 2 - 3, width: Math.max(1, x(item.high) - x(item.low)), height: 6, class: "range", "data-low": item.low, "data-high": item.high }, svg);
      el("title", {}, band).textContent = `${item.label}: forecast ${format(item.low)} to ${format(item.high)}`;
      const dot = el("circle", { cx: x(item.forecast), cy: y + row / 2, r: 4, class: `point${item.limit !== undefined && item.forecast >= item.limit ? " over" : ""}`, "data-forecast": item.forecast }, svg);
      el("title", {}, dot).textContent = `${item.label}: forecast ${format(item.forecast)}`;
    }
    if (item.limit !== undefined) {
      el("line", { x1: x(item.limit), x2: x(item.limit), y1: y, y2: y + row - 2, class: "limit", "data-limit": item.limit }, svg);
    }
    el("text", { x: Math.max(x(item.value), item.limit !== undefined ? x(item.limit) : 0, item.high !== undefined ? x(item.high) : 0) + 6, y: y + 16, class: "value" }, svg).textContent =
      item.forecast !== undefined ? `→ ${format(item.forecast)}` : item.limit !== undefined ? `${format(item.value)} / ${format(item.limit)}` : format(item.value);
  });
  const extra = ["limit", "forecast", "low", "high"].filter((k) => items.some((i) => i[k] !== undefined));
  const head = ["name", "value", ...extra, ...(items.some((i) => i.note) ? ["note"] : [])];
  const rows = items.map((i) => [i.label, raw(i.value), ...extra.map((k) => (i[k] === undefined ? "" : raw(i[k]))), ...(head.includes("note") ? [i.note ?? ""] : [])]);
  target.append(svg, dataTable(title, head, rows));
}
