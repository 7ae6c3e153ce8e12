//! The usage rollups on Spin: rows in the component's SQLite database (table `gateway_stats`,
//! keyed by shard, hour and the core's JSON of the dimensions), merged with the core's
//! [`Metrics::merge`]. Spin's SQLite connection is shared by concurrent requests without
//! isolation between statements, so a record is a compare-and-swap like the counters
//! (`edge::counter_store`): read the row, merge, and write only if it still holds what was read
//! (one statement with `RETURNING`), else read again.

use edge::HostError;
use policy::stats::{Dims, Metrics, Row, StatsOp, StatsReply};
use spin_sdk::sqlite::Value;

use crate::database::Database;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS gateway_stats (shard INTEGER NOT NULL, hour INTEGER NOT NULL, dims TEXT NOT NULL, \
     metrics TEXT NOT NULL, PRIMARY KEY (shard, hour, dims))";

/// Attempts of one record against concurrent writers of the same row (as the counters).
const MAX_ATTEMPTS: u32 = edge::counter_store::MAX_ATTEMPTS;

pub async fn apply(shard: u32, op: &StatsOp) -> Result<StatsReply, HostError> {
    let database = Database::open(&[CREATE_TABLE]).await?;
    match op {
        StatsOp::Record { row, keep_from_hour } => {
            record(&database, shard, row).await?;
            database.rows("DELETE FROM gateway_stats WHERE hour < ?", vec![Value::Integer(*keep_from_hour as i64)]).await?;
            Ok(StatsReply::Recorded)
        }
        StatsOp::Query { from_hour, to_hour } => {
            let found = database.rows(
                "SELECT hour, dims, metrics FROM gateway_stats WHERE shard = ? AND hour >= ? AND hour < ?",
                vec![Value::Integer(i64::from(shard)), Value::Integer(*from_hour as i64), Value::Integer((*to_hour).min(i64::MAX as u64) as i64)],
            )
            .await?;
            let rows = found
                .iter()
                .filter_map(|r| {
                    let dims: Dims = serde_json::from_str(r.get::<&str>(1)?).ok()?;
                    let metrics: Metrics = serde_json::from_str(r.get::<&str>(2)?).ok()?;
                    Some(Row { hour: r.get::<u64>(0)?, dims, metrics })
                })
                .collect();
            Ok(StatsReply::Rows { rows })
        }
    }
}

async fn record(database: &Database, shard: u32, row: &Row) -> Result<(), HostError> {
    let dims = serde_json::to_string(&row.dims).map_err(|e| HostError(e.to_string()))?;
    let key = || vec![Value::Integer(i64::from(shard)), Value::Integer(row.hour as i64), Value::text(dims.clone())];
    for _ in 0..MAX_ATTEMPTS {
        let found = database.rows("SELECT metrics FROM gateway_stats WHERE shard = ? AND hour = ? AND dims = ?", key()).await?;
        let stored = found.first().and_then(|r| r.get::<&str>(0)).map(str::to_string);
        let mut metrics: Metrics = stored.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        metrics.merge(&row.metrics);
        let new = serde_json::to_string(&metrics).map_err(|e| HostError(e.to_string()))?;
        let swapped = match &stored {
            None => {
                let mut params = key();
                params.push(Value::text(new));
                database.rows("INSERT INTO gateway_stats (shard, hour, dims, metrics) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1", params).await?
            }
            Some(expected) => {
                let mut params = vec![Value::text(new)];
                params.extend(key());
                params.push(Value::text(expected.clone()));
                database.rows("UPDATE gateway_stats SET metrics = ? WHERE shard = ? AND hour = ? AND dims = ? AND metrics = ? RETURNING 1", params).await?
            }
        };
        if !swapped.is_empty() {
            return Ok(());
        }
    }
    Err(HostError(format!("stats row still contended after {MAX_ATTEMPTS} attempts")))
}
