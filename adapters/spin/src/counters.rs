//! The counter store behind `Host::counter` on Spin: SQLite by default, Redis as the option.
//! Binding glue only: the protocol (load, apply, compare-and-swap, retry) is
//! `edge::counter_store`, whose module docs say why a compare-and-swap and not a transaction
//! or a lock.
//!
//! Spin variables (declare them under `[component.gateway.variables]`, see docs/spin.md):
//! - `counter_store`: `sqlite` (default, also when undeclared or empty) or `redis`;
//! - `redis_address`: `redis://host:port` (may carry a password: keep it a secret variable),
//!   which `allowed_outbound_hosts` must also list.
//!
//! Spin cannot pin where a store lives: a jurisdiction only keeps its subjects apart (another
//! key); the operator chooses where the database or the Redis server runs.

use edge::counter_store::{self, CompareAndSwapStore};
use edge::HostError;
use policy::limits::{CounterOp, CounterReply};
use spin_sdk::redis::{RedisParameter, RedisResult};
use spin_sdk::sqlite::{self, Value};

use crate::database::Database;
use crate::read_variable;

/// One row per `(jurisdiction, subject)`: `key` is `edge::counter_store::state_key`.
const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS gateway_counters (key TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL)";

/// Compare-and-swap as one Redis command: the value is replaced (or deleted) only if it still
/// is the expected one (ARGV[1] = 1: expected present, ARGV[2] its value; ARGV[3] = 1: write
/// ARGV[4], else delete). Returns 1 if it swapped, 0 if not.
const REDIS_SWAP: &str = "local current = redis.call('GET', KEYS[1]) \
    if ARGV[1] == '1' then if current ~= ARGV[2] then return 0 end elseif current then return 0 end \
    if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4]) else redis.call('DEL', KEYS[1]) end \
    return 1";

/// Applies `op` to a subject's counters in the configured store.
pub async fn apply(
    subject: &str,
    jurisdiction: Option<&str>,
    op: &CounterOp,
    now_ms: impl Fn() -> u64,
) -> Result<CounterReply, HostError> {
    let key = counter_store::state_key(subject, jurisdiction);
    let store = read_variable("counter_store").await;
    let reply = match store.as_deref() {
        None | Some("sqlite") => counter_store::apply(&SqliteCounters::open().await?, &key, op, now_ms).await,
        Some("redis") => counter_store::apply(&RedisCounters::open().await?, &key, op, now_ms).await,
        Some(other) => {
            return Err(HostError(format!("variable counter_store is {other:?}: expected \"sqlite\" or \"redis\"")))
        }
    };
    Ok(reply?)
}

struct SqliteCounters(Database);

impl SqliteCounters {
    async fn open() -> Result<Self, HostError> {
        Ok(SqliteCounters(Database::open(&[CREATE_TABLE]).await?))
    }

    async fn rows(&self, statement: &str, parameters: Vec<Value>) -> Result<Vec<sqlite::RowResult>, HostError> {
        self.0.rows(statement, parameters).await
    }
}

impl CompareAndSwapStore for SqliteCounters {
    async fn load(&self, key: &str) -> Result<Option<String>, HostError> {
        let rows = self.rows("SELECT state FROM gateway_counters WHERE key = ?", vec![Value::text(key)]).await?;
        Ok(rows.first().and_then(|row| row.get::<&str>(0)).map(str::to_string))
    }

    /// One statement each, so atomic even on Spin's shared connection; `RETURNING` says in the
    /// same statement whether a row changed (a separate `changes()` could see another request's).
    async fn swap(&self, key: &str, expected: Option<&str>, new: Option<&str>) -> Result<bool, HostError> {
        let rows = match (expected, new) {
            (None, None) => return Ok(true),
            (None, Some(new)) => {
                self.rows(
                    "INSERT INTO gateway_counters (key, state) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING 1",
                    vec![Value::text(key), Value::text(new)],
                )
                .await?
            }
            (Some(expected), Some(new)) => {
                self.rows(
                    "UPDATE gateway_counters SET state = ? WHERE key = ? AND state = ? RETURNING 1",
                    vec![Value::text(new), Value::text(key), Value::text(expected)],
                )
                .await?
            }
            (Some(expected), None) => {
                self.rows(
                    "DELETE FROM gateway_counters WHERE key = ? AND state = ? RETURNING 1",
                    vec![Value::text(key), Value::text(expected)],
                )
                .await?
            }
        };
        Ok(!rows.is_empty())
    }
}

struct RedisCounters(spin_sdk::redis::Connection);

impl RedisCounters {
    async fn open() -> Result<Self, HostError> {
        let address = read_variable("redis_address").await.ok_or_else(|| {
            HostError("counter_store is \"redis\" but the variable redis_address is not set".into())
        })?;
        // The address may hold a password: never repeat it in an error.
        let connection = spin_sdk::redis::Connection::open(&address).await.map_err(|e| match e {
            spin_sdk::redis::Error::InvalidAddress => HostError(
                "redis_address is invalid or not listed in allowed_outbound_hosts (spin.toml)".into(),
            ),
            other => redis_error(other),
        })?;
        Ok(RedisCounters(connection))
    }
}

fn redis_error(e: spin_sdk::redis::Error) -> HostError {
    HostError(format!("redis: {e}"))
}

fn flag(present: bool) -> RedisParameter {
    RedisParameter::Binary(if present { b"1".to_vec() } else { b"0".to_vec() })
}

impl CompareAndSwapStore for RedisCounters {
    async fn load(&self, key: &str) -> Result<Option<String>, HostError> {
        match self.0.get(key).await.map_err(redis_error)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| HostError("redis: state is not UTF-8".into())),
        }
    }

    async fn swap(&self, key: &str, expected: Option<&str>, new: Option<&str>) -> Result<bool, HostError> {
        let arguments = vec![
            RedisParameter::Binary(REDIS_SWAP.as_bytes().to_vec()),
            RedisParameter::Int64(1),
            RedisParameter::Binary(key.as_bytes().to_vec()),
            flag(expected.is_some()),
            RedisParameter::Binary(expected.unwrap_or_default().as_bytes().to_vec()),
            flag(new.is_some()),
            RedisParameter::Binary(new.unwrap_or_default().as_bytes().to_vec()),
        ];
        match self.0.execute("EVAL", arguments).await.map_err(redis_error)?.as_slice() {
            [RedisResult::Int64(1)] => Ok(true),
            [RedisResult::Int64(0)] => Ok(false),
            other => Err(HostError(format!("redis: unexpected compare-and-swap reply {other:?}"))),
        }
    }
}
