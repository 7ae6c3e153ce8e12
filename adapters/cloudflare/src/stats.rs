//! The usage rollups on Workers: one Durable Object per shard (`STATS` binding, class
//! [`GatewayStats`], SQLite-backed), addressed by name `shard-{n}`. The core chooses the shard
//! (a hash of the consumer, `stats.shards` of them) and queries fan out to all of them.
//!
//! Each object keeps its rows in one table, `rows (hour, dims, metrics)` with `(hour, dims)` as
//! the primary key: `dims` and `metrics` are the core's JSON (`policy::stats::Dims`, `Metrics`),
//! merged here with the core's [`Metrics::merge`]. A record reads the row, merges and writes it
//! back with no await in between (SQLite calls are synchronous in a Durable Object), so two
//! records never interleave, and the output gate holds the reply until the write is durable.
//! Rows of hours before the retention are deleted on write, at most once per hour per instance.

use std::cell::Cell;

use edge::HostError;
use policy::stats::{Dims, Metrics, Row, StatsOp, StatsReply};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State};

use crate::counter::{post_json, post_json_at};

/// The Durable Object namespace binding (`wrangler.toml`).
pub const STATS_BINDING: &str = "STATS";

/// One shard of the rollups.
#[durable_object]
pub struct GatewayStats {
    state: State,
    /// The table exists (created on this instance's first request).
    ready: Cell<bool>,
    /// Rows before this hour were already deleted by this instance.
    pruned_before: Cell<u64>,
    /// The request-log tables exist (`crate::request_log`).
    log_ready: Cell<bool>,
}

impl DurableObject for GatewayStats {
    fn new(state: State, _env: Env) -> Self {
        Self { state, ready: Cell::new(false), pruned_before: Cell::new(0), log_ready: Cell::new(false) }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        if request.method() != Method::Post {
            return Response::error("stats objects accept POST with a stats operation", 405);
        }
        if request.path() == crate::request_log::LOG_PATH {
            let op: policy::reqlog::LogOp = match serde_json::from_str(&request.text().await?) {
                Ok(op) => op,
                Err(e) => return Response::error(format!("invalid request-log operation: {e}"), 400),
            };
            let sql = self.state.storage().sql();
            if !self.log_ready.get() {
                crate::request_log::create_tables(&sql)?;
                self.log_ready.set(true);
            }
            // The shard is this object's: its tables hold only its own rows.
            return Response::from_json(&crate::request_log::apply(&sql, 0, &op)?);
        }
        let op: StatsOp = match serde_json::from_str(&request.text().await?) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("invalid stats operation: {e}"), 400),
        };
        let reply = self.apply(&op)?;
        Response::from_json(&reply)
    }
}

impl GatewayStats {
    fn apply(&self, op: &StatsOp) -> Result<StatsReply> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            sql.exec("CREATE TABLE IF NOT EXISTS rows (hour INTEGER NOT NULL, dims TEXT NOT NULL, metrics TEXT NOT NULL, PRIMARY KEY (hour, dims))", None)?;
            self.ready.set(true);
        }
        match op {
            StatsOp::Record { row, keep_from_hour } => {
                let dims = serde_json::to_string(&row.dims)?;
                let hour = SqlStorageValue::Integer(row.hour as i64);
                let mut metrics = Metrics::default();
                for stored in sql.exec("SELECT metrics FROM rows WHERE hour = ? AND dims = ?", vec![hour.clone(), SqlStorageValue::String(dims.clone())])?.raw() {
                    if let [SqlStorageValue::String(json)] = stored?.as_slice() {
                        // A row this code cannot read is replaced rather than failing every write.
                        metrics = serde_json::from_str(json).unwrap_or_default();
                    }
                }
                metrics.merge(&row.metrics);
                sql.exec(
                    "INSERT OR REPLACE INTO rows (hour, dims, metrics) VALUES (?, ?, ?)",
                    vec![hour, SqlStorageValue::String(dims), SqlStorageValue::String(serde_json::to_string(&metrics)?)],
                )?;
                if *keep_from_hour > self.pruned_before.get() {
                    sql.exec("DELETE FROM rows WHERE hour < ?", vec![SqlStorageValue::Integer(*keep_from_hour as i64)])?;
                    self.pruned_before.set(*keep_from_hour);
                }
                Ok(StatsReply::Recorded)
            }
            StatsOp::Query { from_hour, to_hour } => {
                let mut rows = Vec::new();
                let bounds = vec![SqlStorageValue::Integer(*from_hour as i64), SqlStorageValue::Integer((*to_hour).min(i64::MAX as u64) as i64)];
                for stored in sql.exec("SELECT hour, dims, metrics FROM rows WHERE hour >= ? AND hour < ?", bounds)?.raw() {
                    if let [SqlStorageValue::Integer(hour), SqlStorageValue::String(dims), SqlStorageValue::String(metrics)] = stored?.as_slice() {
                        if let (Ok(dims), Ok(metrics)) = (serde_json::from_str::<Dims>(dims), serde_json::from_str::<Metrics>(metrics)) {
                            rows.push(Row { hour: (*hour).max(0) as u64, dims, metrics });
                        }
                    }
                }
                Ok(StatsReply::Rows { rows })
            }
        }
    }
}

/// Send `op` to shard `shard`'s object.
pub async fn call(env: &Env, shard: u32, op: &StatsOp) -> std::result::Result<StatsReply, HostError> {
    post_json(env, STATS_BINDING, &format!("shard-{shard}"), None, op).await
}

/// Send a request-log `op` to shard `shard`'s object (its `/log` path, `crate::request_log`).
pub async fn call_log(env: &Env, shard: u32, op: &policy::reqlog::LogOp) -> std::result::Result<policy::reqlog::LogReply, HostError> {
    post_json_at(env, STATS_BINDING, &format!("shard-{shard}"), None, crate::request_log::LOG_PATH, op).await
}

