//! The request log on Spin: two tables of the component's SQLite database (`request_index`,
//! `request_log`, keyed by shard and request id), with the core's schema and statements
//! (`policy::reqlog::sql`, shared with the Workers Durable Object). Each statement is atomic on
//! its own; feedback is one conditional `UPDATE ... RETURNING`, so concurrent requests sharing
//! the connection cannot both record feedback on one request.

use edge::HostError;
use policy::reqlog::sql::{reply, statements, SqlValue, SCHEMA};
use policy::reqlog::{LogOp, LogReply};
use spin_sdk::sqlite::Value;

use crate::database::Database;

pub async fn apply(shard: u32, op: &LogOp) -> Result<LogReply, HostError> {
    let database = Database::open(&SCHEMA).await?;
    let mut results = Vec::new();
    for statement in statements(shard, op) {
        let params = statement
            .params
            .into_iter()
            .map(|v| match v {
                SqlValue::Int(n) => Value::Integer(n),
                SqlValue::Text(t) => Value::Text(t),
                SqlValue::Null => Value::Null,
            })
            .collect();
        let found = database.rows(statement.sql, params).await?;
        results.push(
            found
                .into_iter()
                .map(|row| {
                    row.values
                        .into_iter()
                        .map(|cell| match cell {
                            Value::Integer(n) => SqlValue::Int(n),
                            Value::Text(t) => SqlValue::Text(t),
                            _ => SqlValue::Null,
                        })
                        .collect()
                })
                .collect(),
        );
    }
    Ok(reply(op, &results))
}
