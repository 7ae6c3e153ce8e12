//! Reports over rollup rows: a time range, grouped by one dimension, bucketed by hour or day
//! (`/admin/stats` as JSON and CSV), and the Prometheus text exposition (`/admin/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::rollup::{Dims, Metrics, Row, HOUR_MS};
use super::time::format_rfc3339;

/// The group value of rows without one (no tenant, no region...).
pub const NONE_GROUP: &str = "(none)";

/// At most this many label sets in `/admin/metrics`: the busiest ones by requests; the rest are
/// summed into one set whose labels are all `other`.
pub const MAX_PROMETHEUS_SERIES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Consumer,
    Tenant,
    Model,
    Provider,
    Outcome,
    Region,
}

impl GroupBy {
    pub const ALL: [GroupBy; 6] = [GroupBy::Consumer, GroupBy::Tenant, GroupBy::Model, GroupBy::Provider, GroupBy::Outcome, GroupBy::Region];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Consumer => "consumer",
            GroupBy::Tenant => "tenant",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Outcome => "outcome",
            GroupBy::Region => "region",
        }
    }

    pub fn from_name(name: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.name() == name)
    }

    fn value(self, dims: &Dims) -> &str {
        let v = match self {
            GroupBy::Consumer => dims.consumer.as_deref(),
            GroupBy::Tenant => dims.tenant.as_deref(),
            GroupBy::Model => dims.model.as_deref(),
            GroupBy::Provider => dims.provider.as_deref(),
            GroupBy::Outcome => Some(dims.outcome.as_str()),
            GroupBy::Region => dims.region.as_deref(),
        };
        v.unwrap_or(NONE_GROUP)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    pub fn from_name(name: &str) -> Option<Interval> {
        [Interval::Hour, Interval::Day].into_iter().find(|i| i.name() == name)
    }

    fn hours(self) -> u64 {
        match self {
            Interval::Hour => 1,
            Interval::Day => 24,
        }
    }
}

/// What a report covers: `[from_s, to_s)` in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportQuery {
    pub from_s: u64,
    pub to_s: u64,
    pub group_by: GroupBy,
    pub interval: Interval,
}

impl ReportQuery {
    /// The hours whose rows the report reads: every hour that overlaps the range (rows are
    /// hourly, so a range that starts mid-hour includes that hour whole).
    pub fn hours(&self) -> (u64, u64) {
        (self.from_s / 3600, self.to_s.div_ceil(3600))
    }
}

/// One group's rows over the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub group: String,
    pub totals: Metrics,
    /// Bucket start (unix seconds) → sums, only buckets with data, in time order.
    pub points: BTreeMap<u64, Metrics>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub query: ReportQuery,
    pub totals: Metrics,
    /// By requests, most first (then by group name).
    pub series: Vec<Series>,
}

/// Group and bucket `rows` (any order; rows outside the query's hours are ignored).
pub fn report(rows: &[Row], query: ReportQuery) -> Report {
    let (from_hour, to_hour) = query.hours();
    let mut totals = Metrics::default();
    let mut groups: BTreeMap<&str, Series> = BTreeMap::new();
    for row in rows.iter().filter(|r| (from_hour..to_hour).contains(&r.hour)) {
        totals.merge(&row.metrics);
        let group = query.group_by.value(&row.dims);
        let series = groups.entry(group).or_insert_with(|| Series { group: group.to_string(), totals: Metrics::default(), points: BTreeMap::new() });
        series.totals.merge(&row.metrics);
        let bucket = row.hour / query.interval.hours() * query.interval.hours() * 3600;
        series.points.entry(bucket).or_default().merge(&row.metrics);
    }
    let mut series: Vec<Series> = groups.into_values().collect();
    series.sort_by(|a, b| b.totals.requests.cmp(&a.totals.requests).then_with(|| a.group.cmp(&b.group)));
    Report { query, totals, series }
}

fn usd(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Rounded for display (sums of floats carry noise in the last digits).
fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

fn quantiles(sketch: &super::sketch::Sketch) -> Value {
    let q = |p| sketch.quantile(p).map(|v| (v * 100.0).round() / 100.0);
    json!({ "p50": q(0.5), "p95": q(0.95), "p99": q(0.99) })
}

/// The JSON of one set of sums (`METRICS` in docs/observability.md).
pub fn metrics_json(m: &Metrics) -> Value {
    json!({
        "requests": m.requests,
        "errors": m.errors,
        "errors_by_type": m.errors_by_type,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "cached_tokens": m.cached_tokens,
        "reasoning_tokens": m.reasoning_tokens,
        "cost_usd": usd(m.cost_nanos),
        "gco2e": round(m.gco2e),
        "cache_hits": m.cache_hits(),
        "cache_saved_tokens": m.cache_saved_tokens,
        "cache_saved_usd": usd(m.cache_saved_cost_nanos),
        "cache_saved_gco2e": round(m.cache_saved_gco2e),
        "fallbacks": m.fallbacks,
        "disconnects": m.disconnects,
        "guard_blocks": m.guard_blocks,
        "limit_rejections": m.limit_rejections,
        "residency_kept": m.residency_kept,
        "carbon_saved_gco2e": round(m.carbon_saved_gco2e),
        "feedback_count": m.feedback_count,
        "feedback_score_avg": (m.feedback_scored > 0).then(|| round(m.feedback_score_sum / m.feedback_scored as f64)),
        "feedback_labels": m.feedback_labels,
        "latency_ms": quantiles(&m.latency_ms),
        "duration_ms": quantiles(&m.duration_ms),
    })
}

impl Report {
    /// The `/admin/stats` body.
    pub fn to_json(&self) -> Value {
        let series: Vec<Value> = self
            .series
            .iter()
            .map(|s| {
                let points: Vec<Value> = s
                    .points
                    .iter()
                    .map(|(t, m)| {
                        let mut point = Map::new();
                        point.insert("t".into(), json!(format_rfc3339(*t)));
                        if let Value::Object(fields) = metrics_json(m) {
                            point.extend(fields);
                        }
                        Value::Object(point)
                    })
                    .collect();
                json!({ "group": s.group, "totals": metrics_json(&s.totals), "points": points })
            })
            .collect();
        json!({
            "from": format_rfc3339(self.query.from_s),
            "to": format_rfc3339(self.query.to_s),
            "interval": self.query.interval.name(),
            "group_by": self.query.group_by.name(),
            "totals": metrics_json(&self.totals),
            "series": series,
        })
    }

    /// The `/admin/stats.csv` body: a header, then one row per (bucket, group), by time, then in
    /// the series' order. RFC 4180: CRLF line ends, fields with a comma, quote or line break
    /// quoted with doubled quotes.
    pub fn to_csv(&self) -> String {
        let mut out = CSV_COLUMNS.join(",");
        out.push_str("\r\n");
        let mut lines: Vec<(u64, usize, &str, &Metrics)> = Vec::new();
        for (order, s) in self.series.iter().enumerate() {
            lines.extend(s.points.iter().map(|(t, m)| (*t, order, s.group.as_str(), m)));
        }
        lines.sort_by_key(|(t, order, _, _)| (*t, *order));
        for (t, _, group, m) in lines {
            let q = |s: &super::sketch::Sketch, p| s.quantile(p).map(|v| format!("{:.2}", v)).unwrap_or_default();
            let errors_by_type = m.errors_by_type.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
            let fields = [
                format_rfc3339(t),
                group.to_string(),
                m.requests.to_string(),
                m.errors.to_string(),
                errors_by_type,
                m.input_tokens.to_string(),
                m.output_tokens.to_string(),
                m.cached_tokens.to_string(),
                m.reasoning_tokens.to_string(),
                usd(m.cost_nanos).to_string(),
                round(m.gco2e).to_string(),
                m.cache_hits().to_string(),
                m.cache_saved_tokens.to_string(),
                usd(m.cache_saved_cost_nanos).to_string(),
                round(m.cache_saved_gco2e).to_string(),
                m.fallbacks.to_string(),
                m.disconnects.to_string(),
                m.guard_blocks.to_string(),
                m.limit_rejections.to_string(),
                m.residency_kept.to_string(),
                round(m.carbon_saved_gco2e).to_string(),
                q(&m.latency_ms, 0.5),
                q(&m.latency_ms, 0.95),
                q(&m.latency_ms, 0.99),
                q(&m.duration_ms, 0.5),
                q(&m.duration_ms, 0.95),
                q(&m.duration_ms, 0.99),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// The CSV header (`group` holds the value of the `group_by` dimension).
pub const CSV_COLUMNS: [&str; 27] = [
    "t",
    "group",
    "requests",
    "errors",
    "errors_by_type",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "gco2e",
    "cache_hits",
    "cache_saved_tokens",
    "cache_saved_usd",
    "cache_saved_gco2e",
    "fallbacks",
    "disconnects",
    "guard_blocks",
    "limit_rejections",
    "residency_kept",
    "carbon_saved_gco2e",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "duration_p50_ms",
    "duration_p95_ms",
    "duration_p99_ms",
];

/// One RFC 4180 field.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
pub fn prometheus_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The label set of `/admin/metrics` (never request ids or free text).
type Labels = [String; 5];
const LABEL_NAMES: [&str; 5] = ["consumer", "tenant", "model", "provider", "outcome"];

/// The Prometheus text exposition (format 0.0.4) of `rows`: cumulative counters over every row
/// given (the store's retention bounds them), at most `max_series` label sets (the busiest; the
/// rest summed under labels `other`). An absent dimension is an empty label value.
pub fn prometheus(rows: &[Row], max_series: usize) -> String {
    let mut sets: BTreeMap<Labels, Metrics> = BTreeMap::new();
    for row in rows {
        let d = &row.dims;
        let own = |v: &Option<String>| v.clone().unwrap_or_default();
        let labels = [own(&d.consumer), own(&d.tenant), own(&d.model), own(&d.provider), d.outcome.clone()];
        sets.entry(labels).or_default().merge(&row.metrics);
    }
    let mut sets: Vec<(Labels, Metrics)> = sets.into_iter().collect();
    sets.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
    if sets.len() > max_series {
        let mut other = Metrics::default();
        sets.drain(max_series.saturating_sub(1)..).for_each(|(_, m)| other.merge(&m));
        sets.push((std::array::from_fn(|_| "other".to_string()), other));
    }
    let label_text = |labels: &Labels, extra: Option<(&str, &str)>| {
        let mut parts: Vec<String> = LABEL_NAMES.iter().zip(labels).map(|(n, v)| format!("{n}=\"{}\"", prometheus_label(v))).collect();
        if let Some((n, v)) = extra {
            parts.push(format!("{n}=\"{}\"", prometheus_label(v)));
        }
        format!("{{{}}}", parts.join(","))
    };
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        lines(&mut out);
    };
    type Counter = (&'static str, &'static str, fn(&Metrics) -> f64);
    let counters: [Counter; 7] = [
        ("gateway_requests_total", "Requests the gateway finished.", |m| m.requests as f64),
        ("gateway_cost_usd_total", "What the requests cost at the configured prices, in USD.", |m| usd(m.cost_nanos)),
        ("gateway_gco2e_total", "Estimated emissions of the requests, in grams CO2e.", |m| round(m.gco2e)),
        ("gateway_cache_hits_total", "Requests answered from the response cache (exact or semantic).", |m| m.cache_hits() as f64),
        ("gateway_cache_saved_usd_total", "What cache hits saved at the configured prices, in USD.", |m| usd(m.cache_saved_cost_nanos)),
        ("gateway_guard_blocks_total", "Requests a guardrail blocked.", |m| m.guard_blocks as f64),
        ("gateway_limit_rejections_total", "Requests a rate limit or budget refused.", |m| m.limit_rejections as f64),
    ];
    for (name, help, value) in counters {
        family(name, "counter", help, &mut |out| {
            for (labels, m) in &sets {
                let _ = writeln!(out, "{name}{} {}", label_text(labels, None), value(m));
            }
        });
    }
    family("gateway_errors_total", "counter", "Failed requests by error type.", &mut |out| {
        for (labels, m) in &sets {
            for (kind, n) in &m.errors_by_type {
                let _ = writeln!(out, "gateway_errors_total{} {n}", label_text(labels, Some(("type", kind))));
            }
        }
    });
    family("gateway_tokens_total", "counter", "Tokens by type (input includes cached; output includes reasoning).", &mut |out| {
        for (labels, m) in &sets {
            for (kind, n) in [("input", m.input_tokens), ("output", m.output_tokens), ("cached", m.cached_tokens), ("reasoning", m.reasoning_tokens)] {
                let _ = writeln!(out, "gateway_tokens_total{} {n}", label_text(labels, Some(("type", kind))));
            }
        }
    });
    family("gateway_request_duration_seconds", "summary", "Time from the request to the end of the response body.", &mut |out| {
        for (labels, m) in &sets {
            for (q, p) in [("0.5", 0.5), ("0.95", 0.95), ("0.99", 0.99)] {
                let v = m.duration_ms.quantile(p).map_or(f64::NAN, |ms| ms / 1000.0);
                let _ = writeln!(out, "gateway_request_duration_seconds{} {}", label_text(labels, Some(("quantile", q))), prometheus_float(v));
            }
            let _ = writeln!(out, "gateway_request_duration_seconds_sum{} {}", label_text(labels, None), prometheus_float(m.duration_ms.sum() / 1000.0));
            let _ = writeln!(out, "gateway_request_duration_seconds_count{} {}", label_text(labels, None), m.duration_ms.count());
        }
    });
    out
}

fn prometheus_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

/// The hour range of "all time within retention" at `now_ms`.
pub fn retention_hours(now_ms: u64, retention_days: u64) -> (u64, u64) {
    let now_hour = now_ms / HOUR_MS;
    (now_hour.saturating_sub(retention_days * 24), now_hour + 1)
}
