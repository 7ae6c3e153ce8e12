//! Usage rollups over the host's stats store: each finished request's usage event becomes one
//! row ([`policy::stats::Row::from_event`]) written in the background to the shard of its
//! consumer, and reports read every shard and merge (`/admin/stats`, `/admin/metrics`).
//!
//! One write per request, after the response ([`Host::wait_until`]): the rollups are the sum of
//! the usage events, with nothing batched in the isolate that an eviction could lose. A write
//! that fails is lost (the usage event still has the request); it never fails the request.

use policy::stats::{merge_rows, shard_of, CacheHit, EventFacts, Row, StatsOp, StatsReply, HOUR_MS};

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
