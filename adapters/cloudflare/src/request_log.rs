//! The request log on Workers: the same Durable Object per shard as the rollups
//! ([`crate::stats::GatewayStats`], `STATS` binding, `shard-{n}`), in two more tables of its
//! SQLite storage (`request_index`, `request_log`; the core's schema and statements,
//! `policy::reqlog::sql`). Ops are posted to the object's `/log` path; the rollups' ops to `/op`.
//! No new class, so no migration: the tables are created on an object's first log op. This file
//! is the object's side; `crate::stats::call_log` sends the ops.

use policy::reqlog::sql::{reply, statements, SqlValue, SCHEMA};
use policy::reqlog::{LogOp, LogReply};
use worker::{Result, SqlStorage, SqlStorageValue};

/// The path the object serves request-log ops under.
pub const LOG_PATH: &str = "/log";

/// Create the tables (idempotent).
pub fn create_tables(sql: &SqlStorage) -> Result<()> {
    for statement in SCHEMA {
        sql.exec(statement, None)?;
    }
    Ok(())
}

/// Apply `op` to this object's tables. The object runs one request at a time and SQLite calls
/// are synchronous, so the statements of one op never interleave with another's.
pub fn apply(sql: &SqlStorage, shard: u32, op: &LogOp) -> Result<LogReply> {
    let mut results = Vec::new();
    for statement in statements(shard, op) {
        let params: Vec<SqlStorageValue> = statement
            .params
            .into_iter()
            .map(|v| match v {
                SqlValue::Int(n) => SqlStorageValue::Integer(n),
                SqlValue::Text(t) => SqlStorageValue::String(t),
                SqlValue::Null => SqlStorageValue::Null,
            })
            .collect();
        let mut rows = Vec::new();
        for row in sql.exec(statement.sql, params)?.raw() {
            rows.push(
                row?.into_iter()
                    .map(|cell| match cell {
                        SqlStorageValue::Integer(n) => SqlValue::Int(n),
                        SqlStorageValue::String(t) => SqlValue::Text(t),
                        _ => SqlValue::Null,
                    })
                    .collect(),
            );
        }
        results.push(rows);
    }
    Ok(reply(op, &results))
}
