//! The rollup rows: what one request adds ([`Row::from_event`]) and how rows add up
//! ([`Metrics::merge`]), plus the store protocol ([`StatsOp`], [`StatsReply`]) and the
//! in-memory store every host can apply it with ([`RowStore`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sketch::Sketch;

/// Milliseconds in an hour: rows are per hour (`hour` = unix seconds / 3600).
pub const HOUR_MS: u64 = 3_600_000;

/// The error labels that are a limit's or a budget's refusal.
pub const LIMIT_REJECTION_LABELS: [&str; 2] = ["rate_limit_exceeded", "insufficient_quota"];

/// What a row is about: one value per dimension a report can group by. Outcome and region are
/// part of the key (both have few values), so grouping by them is exact; errors by type are
/// counted inside the row.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `completed`, `failed`, `stream_error` or `client_disconnected`.
    pub outcome: String,
    /// The routed target's region (multi-target routes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

fn zero(n: &u64) -> bool {
    *n == 0
}

fn zero_f(n: &f64) -> bool {
    *n == 0.0
}

/// The sums of one row (or of any set of rows: they merge by adding).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub requests: u64,
    #[serde(skip_serializing_if = "zero")]
    pub errors: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_type: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "zero")]
    pub input_tokens: u64,
    #[serde(skip_serializing_if = "zero")]
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "zero")]
    pub cached_tokens: u64,
    #[serde(skip_serializing_if = "zero")]
    pub reasoning_tokens: u64,
    /// USD in nanos (10^-9).
    #[serde(skip_serializing_if = "zero")]
    pub cost_nanos: u64,
    #[serde(skip_serializing_if = "zero_f")]
    pub gco2e: f64,
    #[serde(skip_serializing_if = "zero")]
    pub cache_hits_exact: u64,
    #[serde(skip_serializing_if = "zero")]
    pub cache_hits_semantic: u64,
    #[serde(skip_serializing_if = "zero")]
    pub cache_saved_tokens: u64,
    #[serde(skip_serializing_if = "zero")]
    pub cache_saved_cost_nanos: u64,
    #[serde(skip_serializing_if = "zero_f")]
    pub cache_saved_gco2e: f64,
    /// Requests that needed more than one route attempt.
    #[serde(skip_serializing_if = "zero")]
    pub fallbacks: u64,
    /// Requests whose client went away before the response was complete.
    #[serde(skip_serializing_if = "zero")]
    pub disconnects: u64,
    #[serde(skip_serializing_if = "zero")]
    pub guard_blocks: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit_rejections: u64,
    /// Requests of tenants with a residency constraint served by a target inside it.
    #[serde(skip_serializing_if = "zero")]
    pub residency_kept: u64,
    /// The routing choice's saving against the route's default target.
    #[serde(skip_serializing_if = "zero_f")]
    pub carbon_saved_gco2e: f64,
    /// Feedback given on this row's requests (`POST /v1/feedback`).
    #[serde(skip_serializing_if = "zero")]
    pub feedback_count: u64,
    /// Feedback that carried a score, and the sum of those scores (each in `[0, 1]`).
    #[serde(skip_serializing_if = "zero")]
    pub feedback_scored: u64,
    #[serde(skip_serializing_if = "zero_f")]
    pub feedback_score_sum: f64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub feedback_labels: BTreeMap<String, u64>,
    /// Milliseconds to the response head.
    pub latency_ms: Sketch,
    /// Milliseconds to the end of the response body.
    pub duration_ms: Sketch,
}

impl Metrics {
    /// Add `other` into `self`.
    pub fn merge(&mut self, other: &Metrics) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (label, n) in &other.errors_by_type {
            *self.errors_by_type.entry(label.clone()).or_insert(0) += n;
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
        self.gco2e += other.gco2e;
        self.cache_hits_exact += other.cache_hits_exact;
        self.cache_hits_semantic += other.cache_hits_semantic;
        self.cache_saved_tokens += other.cache_saved_tokens;
        self.cache_saved_cost_nanos = self.cache_saved_cost_nanos.saturating_add(other.cache_saved_cost_nanos);
        self.cache_saved_gco2e += other.cache_saved_gco2e;
        self.fallbacks += other.fallbacks;
        self.disconnects += other.disconnects;
        self.guard_blocks += other.guard_blocks;
        self.limit_rejections += other.limit_rejections;
        self.residency_kept += other.residency_kept;
        self.carbon_saved_gco2e += other.carbon_saved_gco2e;
        self.feedback_count += other.feedback_count;
        self.feedback_scored += other.feedback_scored;
        self.feedback_score_sum += other.feedback_score_sum;
        for (label, n) in &other.feedback_labels {
            *self.feedback_labels.entry(label.clone()).or_insert(0) += n;
        }
        self.latency_ms.merge(&other.latency_ms);
        self.duration_ms.merge(&other.duration_ms);
    }

    pub fn cache_hits(&self) -> u64 {
        self.cache_hits_exact + self.cache_hits_semantic
    }
}

/// Which cache tier answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHit {
    Exact,
    Semantic,
}

/// What the rollups need of one finished request (the usage event, as plain data).
#[derive(Debug, Clone, Default)]
pub struct EventFacts<'a> {
    /// When the request finished (its hour is the row's).
    pub at_ms: u64,
    pub tenant: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub outcome: &'a str,
    /// The error label, when the request failed.
    pub error: Option<&'a str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_nanos: u64,
    pub gco2e: f64,
    pub cache_hit: Option<CacheHit>,
    pub cache_saved_tokens: u64,
    pub cache_saved_cost_nanos: u64,
    pub cache_saved_gco2e: f64,
    pub route_attempts: u32,
    pub region: Option<&'a str>,
    /// The tenant has a residency constraint and the target was inside it.
    pub residency_kept: bool,
    pub carbon_saved_gco2e: f64,
    pub guard_blocked: bool,
    pub latency_ms: u64,
    pub duration_ms: u64,
}

/// One row: an hour, its dimensions, its sums. A request's own row is its delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Unix hours (seconds / 3600).
    pub hour: u64,
    pub dims: Dims,
    pub metrics: Metrics,
}

impl Row {
    /// What one request adds to the rollups.
    pub fn from_event(e: &EventFacts<'_>) -> Row {
        let own = |s: Option<&str>| s.map(str::to_string);
        let mut m = Metrics { requests: 1, ..Metrics::default() };
        if let Some(label) = e.error {
            m.errors = 1;
            m.errors_by_type.insert(label.to_string(), 1);
            m.limit_rejections = u64::from(LIMIT_REJECTION_LABELS.contains(&label));
        }
        m.input_tokens = e.input_tokens;
        m.output_tokens = e.output_tokens;
        m.cached_tokens = e.cached_tokens;
        m.reasoning_tokens = e.reasoning_tokens;
        m.cost_nanos = e.cost_nanos;
        m.gco2e = e.gco2e;
        match e.cache_hit {
            Some(CacheHit::Exact) => m.cache_hits_exact = 1,
            Some(CacheHit::Semantic) => m.cache_hits_semantic = 1,
            None => {}
        }
        if e.cache_hit.is_some() {
            m.cache_saved_tokens = e.cache_saved_tokens;
            m.cache_saved_cost_nanos = e.cache_saved_cost_nanos;
            m.cache_saved_gco2e = e.cache_saved_gco2e;
        }
        m.fallbacks = u64::from(e.route_attempts > 1);
        m.disconnects = u64::from(e.outcome == "client_disconnected");
        m.guard_blocks = u64::from(e.guard_blocked);
        m.residency_kept = u64::from(e.residency_kept);
        m.carbon_saved_gco2e = e.carbon_saved_gco2e;
        m.latency_ms = Sketch::of(e.latency_ms as f64);
        m.duration_ms = Sketch::of(e.duration_ms as f64);
        Row {
            hour: e.at_ms / HOUR_MS,
            dims: Dims {
                tenant: own(e.tenant),
                consumer: own(e.consumer),
                model: own(e.model),
                provider: own(e.provider),
                outcome: e.outcome.to_string(),
                region: own(e.region),
            },
            metrics: m,
        }
    }
}

/// An operation on one shard of the rollup store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StatsOp {
    /// Add one request's row; rows of hours before `keep_from_hour` are deleted (retention).
    Record { row: Box<Row>, keep_from_hour: u64 },
    /// Every row with `from_hour <= hour < to_hour`.
    Query { from_hour: u64, to_hour: u64 },
}

/// The store's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum StatsReply {
    Recorded,
    Rows { rows: Vec<Row> },
}

/// Rows in memory, keyed by hour and dimensions: the in-memory host's store, and the merge every
/// other store mirrors in its own storage.
#[derive(Debug, Clone, Default)]
pub struct RowStore {
    rows: BTreeMap<(u64, Dims), Metrics>,
}

impl RowStore {
    pub fn new() -> RowStore {
        RowStore::default()
    }

    pub fn apply(&mut self, op: &StatsOp) -> StatsReply {
        match op {
            StatsOp::Record { row, keep_from_hour } => {
                self.add(row);
                self.rows.retain(|(hour, _), _| hour >= keep_from_hour);
                StatsReply::Recorded
            }
            StatsOp::Query { from_hour, to_hour } => StatsReply::Rows { rows: self.range(*from_hour, *to_hour) },
        }
    }

    /// Merge `row` into the row of its hour and dimensions.
    pub fn add(&mut self, row: &Row) {
        self.rows.entry((row.hour, row.dims.clone())).or_default().merge(&row.metrics);
    }

    pub fn range(&self, from_hour: u64, to_hour: u64) -> Vec<Row> {
        self.rows
            .iter()
            .filter(|((hour, _), _)| (from_hour..to_hour).contains(hour))
            .map(|((hour, dims), metrics)| Row { hour: *hour, dims: dims.clone(), metrics: metrics.clone() })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Merge rows with the same hour and dimensions (shards' answers, in any order).
pub fn merge_rows(rows: impl IntoIterator<Item = Row>) -> Vec<Row> {
    let mut store = RowStore::new();
    rows.into_iter().for_each(|r| store.add(&r));
    store.range(0, u64::MAX)
}

/// The shard of a consumer: a stable hash (FNV-1a) of its name, modulo the shard count.
pub fn shard_of(consumer: Option<&str>, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in consumer.unwrap_or("").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(consumer: &'static str, hour: u64) -> EventFacts<'static> {
        EventFacts {
            at_ms: hour * HOUR_MS + 5,
            consumer: Some(consumer),
            model: Some("m"),
            outcome: "completed",
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: 100,
            latency_ms: 20,
            duration_ms: 40,
            ..EventFacts::default()
        }
    }

    #[test]
    fn a_request_becomes_one_row_with_its_counts() {
        let row = Row::from_event(&EventFacts {
            error: Some("rate_limit_exceeded"),
            outcome: "failed",
            route_attempts: 2,
            cache_hit: Some(CacheHit::Semantic),
            cache_saved_tokens: 7,
            ..facts("a", 3)
        });
        assert_eq!(row.hour, 3);
        assert_eq!(row.dims.outcome, "failed");
        let m = &row.metrics;
        assert_eq!((m.requests, m.errors, m.limit_rejections, m.fallbacks, m.cache_hits_semantic, m.cache_saved_tokens), (1, 1, 1, 1, 1, 7));
        assert_eq!(m.errors_by_type["rate_limit_exceeded"], 1);
        let disconnected = Row::from_event(&EventFacts { outcome: "client_disconnected", ..facts("a", 3) });
        assert_eq!((disconnected.metrics.disconnects, disconnected.metrics.errors), (1, 0));
    }

    #[test]
    fn merging_is_associative_and_commutative() {
        let rows: Vec<Row> = (0..6).map(|i| Row::from_event(&EventFacts { latency_ms: i * 37, error: (i % 2 == 0).then_some("upstream_error"), ..facts("a", 1) })).collect();
        let mut ab_c = rows[0].metrics.clone();
        rows[1..].iter().for_each(|r| ab_c.merge(&r.metrics));
        let mut reversed = rows[5].metrics.clone();
        rows[..5].iter().rev().for_each(|r| reversed.merge(&r.metrics));
        let mut left = rows[0].metrics.clone();
        left.merge(&rows[1].metrics);
        let mut right = rows[2].metrics.clone();
        rows[3..].iter().for_each(|r| right.merge(&r.metrics));
        left.merge(&right);
        assert_eq!(ab_c, reversed);
        assert_eq!(ab_c, left);
        assert_eq!((ab_c.requests, ab_c.errors, ab_c.errors_by_type["upstream_error"], ab_c.input_tokens), (6, 3, 3, 60));
    }

    #[test]
    fn the_store_merges_by_hour_and_dims_and_drops_rows_past_retention() {
        let mut store = RowStore::new();
        for (consumer, hour) in [("a", 1), ("a", 1), ("b", 1), ("a", 2)] {
            store.apply(&StatsOp::Record { row: Box::new(Row::from_event(&facts(consumer, hour))), keep_from_hour: 0 });
        }
        assert_eq!(store.len(), 3);
        let StatsReply::Rows { rows } = store.apply(&StatsOp::Query { from_hour: 1, to_hour: 2 }) else { panic!() };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().map(|r| r.metrics.requests).sum::<u64>(), 3);
        store.apply(&StatsOp::Record { row: Box::new(Row::from_event(&facts("a", 5))), keep_from_hour: 2 });
        assert_eq!(store.range(0, 2).len(), 0, "hour 1 is past retention");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn rows_round_trip_as_json_and_shards_are_stable() {
        let row = Row::from_event(&facts("a,\"b\"", 9));
        let json = serde_json::to_string(&StatsOp::Record { row: Box::new(row.clone()), keep_from_hour: 1 }).unwrap();
        assert_eq!(serde_json::from_str::<StatsOp>(&json).unwrap(), StatsOp::Record { row: Box::new(row), keep_from_hour: 1 });
        assert_eq!(shard_of(Some("alice"), 4), shard_of(Some("alice"), 4));
        assert!((0..100).map(|i| shard_of(Some(&format!("c{i}")), 4)).collect::<std::collections::BTreeSet<_>>().len() == 4);
        assert_eq!(shard_of(None, 1), 0);
    }
}
