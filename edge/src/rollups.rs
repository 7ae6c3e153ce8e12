//! Usage rollups over the host's stats store: each finished request's usage event becomes one
//! row ([`policy::stats::Row::from_event`]) written in the background to the shard of its
//! consumer, and reports read every shard and merge (`/admin/stats`, `/admin/metrics`).
//!
//! One write per request, after the response ([`Host::wait_until`]): the rollups are the sum of
//! the usage events, with nothing batched in the isolate that an eviction could lose. A write
//! that fails is lost (the usage event still has the request); it never fails the request.

use std::collections::BTreeMap;

use policy::stats::forecast::{forecast_period, PeriodForecast, DEFAULT_MODEL};
use policy::stats::{format_rfc3339, merge_rows, shard_of, CacheHit, EventFacts, Row, StatsOp, StatsReply, HOUR_MS};

use crate::config::Config;
use crate::event::{CacheStatus, Outcome, UsageEvent};
use crate::host::{Host, HostError};

/// The outcome's name as the rollups and the usage event spell it.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
        Outcome::StreamError => "stream_error",
        Outcome::ClientDisconnected => "client_disconnected",
    }
}

/// What the rollups take of a usage event, finished at `at_ms`.
pub fn facts<'a>(event: &'a UsageEvent, config: &Config, at_ms: u64) -> EventFacts<'a> {
    let usage = event.usage.unwrap_or_default();
    let route = event.route.as_ref();
    let residency = event.tenant.as_ref().and_then(|t| config.tenants.get(t)).and_then(|t| t.residency.as_ref());
    let cache_hit = event.cache.as_ref().and_then(|c| match c.status {
        CacheStatus::Hit => Some(CacheHit::Exact),
        CacheStatus::SemanticHit => Some(CacheHit::Semantic),
        CacheStatus::Miss | CacheStatus::Bypass => None,
    });
    let saved = event.cache.as_ref().and_then(|c| c.saved.as_ref());
    EventFacts {
        at_ms,
        tenant: event.tenant.as_deref(),
        consumer: event.consumer.as_deref(),
        model: event.model.as_deref(),
        provider: event.provider.as_deref(),
        outcome: outcome_name(event.outcome),
        error: event.error,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_tokens: usage.cached_input_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        cost_nanos: event.quota.as_ref().and_then(|q| q.cost_nanos).unwrap_or(0),
        gco2e: route.and_then(|r| r.gco2e).unwrap_or(0.0),
        cache_hit,
        cache_saved_tokens: saved.map_or(0, |s| s.total_tokens),
        cache_saved_cost_nanos: saved.and_then(|s| s.cost_nanos).unwrap_or(0),
        cache_saved_gco2e: saved.and_then(|s| s.gco2e).unwrap_or(0.0),
        route_attempts: route.map_or(0, |r| r.attempts),
        region: route.map(|r| r.region.as_str()),
        residency_kept: match (residency, route) {
            (Some(allowed), Some(r)) => allowed.contains(&r.jurisdiction),
            _ => false,
        },
        carbon_saved_gco2e: route.and_then(|r| r.saving_gco2e).unwrap_or(0.0),
        guard_blocked: event.guard.as_ref().is_some_and(|g| g.blocked.is_some()),
        latency_ms: event.latency_ms,
        duration_ms: event.duration_ms,
    }
}

/// Add `event` to the rollups in the background (when `stats.enabled`). The rollups count the
/// API's traffic: an admin call that was refused (its usage event says `operation: "admin"`) is
/// not model traffic and stays out (failed admin logins are in the audit log, docs/admin.md).
pub fn record<H: Host>(host: &H, config: &Config, event: &UsageEvent) {
    let settings = config.stats;
    if !settings.enabled || event.operation == "admin" {
        return;
    }
    let now = host.now_ms();
    let row = Box::new(Row::from_event(&facts(event, config, now)));
    let shard = shard_of(event.consumer.as_deref(), settings.shards);
    let keep_from_hour = (now / HOUR_MS).saturating_sub(settings.retention_days * 24);
    let host = host.clone();
    host.clone().wait_until(async move {
        // Nothing observes a background task: a lost write only misses this request's row.
        let _ = host.stats(shard, &StatsOp::Record { row, keep_from_hour }).await;
    });
}

/// Every row of `[from_hour, to_hour)` from all shards, merged.
pub async fn query<H: Host>(host: &H, config: &Config, from_hour: u64, to_hour: u64) -> Result<Vec<Row>, HostError> {
    let op = StatsOp::Query { from_hour, to_hour };
    let replies = futures::future::join_all((0..config.stats.shards).map(|shard| host.stats(shard, &op))).await;
    let mut rows = Vec::new();
    for reply in replies {
        match reply? {
            StatsReply::Rows { rows: mut part } => rows.append(&mut part),
            StatsReply::Recorded => return Err(HostError("the stats store answered a query with no rows".into())),
        }
    }
    Ok(merge_rows(rows))
}

/// Hours of history a spend forecast reads at most (four weeks: two weekly seasons), fewer when
/// the rollups keep less.
pub const FORECAST_HISTORY_HOURS: u64 = 28 * 24;

/// The rows a forecast reads: the last [`FORECAST_HISTORY_HOURS`] (within retention) and the
/// hour in progress.
pub async fn forecast_rows<H: Host>(host: &H, config: &Config, now_ms: u64) -> Result<Vec<Row>, HostError> {
    let now_hour = now_ms / HOUR_MS;
    let hours = FORECAST_HISTORY_HOURS.min(config.stats.retention_days * 24);
    query(host, config, now_hour.saturating_sub(hours), now_hour + 1).await
}

/// One budget subject's forecast for the budget's current period (`/admin/forecast`, the
/// `budget_forecast` alert).
#[derive(Debug, Clone)]
pub struct BudgetForecast {
    pub budget: String,
    /// The counter subject (`consumer:alice`), as `/admin/usage/{subject}` names it.
    pub subject: String,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub limit_usd: f64,
    pub forecast: PeriodForecast,
    /// The same forecast per consumer inside the subject (for scopes without `consumer`).
    pub consumers: Vec<(String, PeriodForecast)>,
}

impl BudgetForecast {
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = forecast_json(&self.forecast);
        value["budget"] = self.budget.clone().into();
        value["subject"] = self.subject.clone().into();
        value["period_start"] = format_rfc3339(self.period_start_ms / 1000).into();
        value["period_end"] = format_rfc3339(self.period_end_ms / 1000).into();
        value["limit_usd"] = round_usd(self.limit_usd).into();
        if !self.consumers.is_empty() {
            value["consumers"] = self
                .consumers
                .iter()
                .map(|(consumer, f)| {
                    let mut v = forecast_json(f);
                    v["consumer"] = consumer.clone().into();
                    v
                })
                .collect();
        }
        value
    }
}

fn round_usd(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn forecast_json(f: &PeriodForecast) -> serde_json::Value {
    serde_json::json!({
        "spent_usd": round_usd(f.spent),
        "forecast_usd": round_usd(f.expected),
        "low_usd": round_usd(f.low),
        "high_usd": round_usd(f.high),
        "model": f.model.name(),
        "fallback": f.fallback,
        "exceeds_at": f.exceeds_at_ms.map(|ms| format_rfc3339((ms + 500) / 1000)),
    })
}

/// The hourly spend (USD) of `rows` over the `hours` complete hours before `now_ms`'s hour, from
/// the first hour with a row on (leading hours without any are not history: the subject did not
/// exist yet), and what they spent since `period_start_ms` (by whole hours).
fn series<'a>(rows: impl Iterator<Item = &'a Row>, now_ms: u64, hours: u64, period_start_ms: u64) -> (Vec<f64>, f64) {
    let now_hour = now_ms / HOUR_MS;
    let first = now_hour.saturating_sub(hours);
    let mut history = vec![0.0; (now_hour - first) as usize];
    let mut seen = usize::MAX;
    let mut spent = 0.0;
    for row in rows {
        let usd = row.metrics.cost_nanos as f64 / 1e9;
        if row.hour * HOUR_MS >= period_start_ms - period_start_ms % HOUR_MS && row.hour <= now_hour {
            spent += usd;
        }
        if (first..now_hour).contains(&row.hour) {
            let i = (row.hour - first) as usize;
            history[i] += usd;
            seen = seen.min(i);
        }
    }
    (history.split_off(seen.min(history.len())), spent)
}

/// Forecast every budget (or the one named `only`) for every subject with spend in `rows` (the
/// rollups of the last [`FORECAST_HISTORY_HOURS`] up to now). Budgets whose scope has a
/// dimension the rollups do not keep (`key`, `header:`) have no forecast.
pub fn forecast_budgets(config: &Config, rows: &[Row], now_ms: u64, only: Option<&str>) -> Vec<BudgetForecast> {
    use policy::limits::RequestFacts;
    let hours = FORECAST_HISTORY_HOURS.min(config.stats.retention_days * 24);
    let mut out = Vec::new();
    for budget in config.quota.budgets.iter().filter(|b| only.is_none_or(|name| b.name == name)) {
        let start = budget.window.start_ms(now_ms);
        let end = budget.window.end_ms(start);
        let limit = budget.limit.0 as f64 / 1e9;
        let mut subjects: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for row in rows {
            let d = &row.dims;
            let facts = RequestFacts { consumer: d.consumer.as_deref(), tenant: d.tenant.as_deref(), model: d.model.as_deref(), ..RequestFacts::default() };
            if let Ok(subject) = budget.scope.resolve(&facts) {
                subjects.entry(subject.key().to_string()).or_default().push(row);
            }
        }
        let by_consumer = !budget.scope.dims().contains(&policy::limits::ScopeDim::Consumer);
        for (subject, rows) in subjects {
            let (history, spent) = series(rows.iter().copied(), now_ms, hours, start);
            if spent == 0.0 && history.iter().all(|v| *v == 0.0) {
                continue;
            }
            let forecast = forecast_period(&history, spent, now_ms, end, Some(limit), DEFAULT_MODEL);
            let mut consumers = Vec::new();
            if by_consumer {
                let mut names: Vec<&str> = rows.iter().filter_map(|r| r.dims.consumer.as_deref()).collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    let (history, spent) = series(rows.iter().copied().filter(|r| r.dims.consumer.as_deref() == Some(name)), now_ms, hours, start);
                    if spent > 0.0 || history.iter().any(|v| *v > 0.0) {
                        consumers.push((name.to_string(), forecast_period(&history, spent, now_ms, end, None, DEFAULT_MODEL)));
                    }
                }
            }
            out.push(BudgetForecast { budget: budget.name.clone(), subject, period_start_ms: start, period_end_ms: end, limit_usd: limit, forecast, consumers });
        }
    }
    out
}
