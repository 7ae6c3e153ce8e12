//! Spin's `spin:sqlite/sqlite@3.1.0` and `spin:redis/redis@3.0.0` imports on the real thing:
//! a SQLite database file (rusqlite, SQLite compiled in) and a real `redis-server`.
//!
//! Both reproduce what Spin's own implementations guarantee, no more, because the adapter's
//! counter store is only correct if it is correct against those:
//! - SQLite (Spin's `sqlite-inproc`): **one connection per database, shared by every instance
//!   and every request**, each statement run under that connection's mutex. A statement is
//!   atomic; a `BEGIN` … `COMMIT` spread over several `execute` calls is not isolated from the
//!   statements of concurrent requests (they run on the same connection, inside the same
//!   transaction). Only databases listed in the component's `sqlite_databases` may be opened
//!   (`access-denied`), and only `default` exists (`no-such-database`), as with Spin's default
//!   runtime config. The file lives in a temporary directory removed when the host exits.
//! - Redis (Spin's `factor-outbound-redis`): each `open` makes one multiplexed connection
//!   (redis-rs, the client Spin uses) to an address the component's `allowed_outbound_hosts`
//!   must list (`redis://host:port`, `invalid-address` otherwise). `execute` flattens the
//!   reply the way Spin does: nested arrays are flattened, `nil` and `OK` are dropped.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use redis::AsyncCommands;
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use crate::spin_imports::spin::redis::redis as wit_redis;
use crate::spin_imports::spin::sqlite::sqlite as wit_sqlite;
use crate::spin_imports::SpinData;
use crate::Ctx;

/// The application's `default` database: a file, opened on first use with one connection that
/// every instance shares (as Spin does).
pub struct SqliteDatabase {
    path: PathBuf,
    connection: OnceLock<Result<Arc<Mutex<rusqlite::Connection>>, String>>,
}

impl SqliteDatabase {
    pub fn new(path: PathBuf) -> Self {
        Self { path, connection: OnceLock::new() }
    }

    fn connection(&self) -> Result<Arc<Mutex<rusqlite::Connection>>, wit_sqlite::Error> {
        self.connection
            .get_or_init(|| {
                rusqlite::Connection::open(&self.path).map(|c| Arc::new(Mutex::new(c))).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(wit_sqlite::Error::Io)
    }

    /// Runs one statement under the shared connection's lock.
    pub fn execute(
        &self,
        statement: &str,
        parameters: Vec<wit_sqlite::Value>,
    ) -> Result<(Vec<String>, Vec<wit_sqlite::RowResult>), wit_sqlite::Error> {
        let connection = self.connection()?;
        let connection = connection.lock().unwrap();
        let io = |e: rusqlite::Error| wit_sqlite::Error::Io(e.to_string());
        let mut prepared = connection.prepare_cached(statement).map_err(io)?;
        let columns: Vec<String> = prepared.column_names().into_iter().map(str::to_string).collect();
        let count = columns.len();
        let params = rusqlite::params_from_iter(parameters.into_iter().map(to_sql));
        let rows = prepared
            .query_map(params, |row| {
                let values = (0..count).map(|i| row.get_ref(i).map(from_sql)).collect::<Result<Vec<_>, _>>()?;
                Ok(wit_sqlite::RowResult { values })
            })
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        Ok((columns, rows))
    }

    fn changes(&self) -> u64 {
        self.connection().map(|c| c.lock().unwrap().changes()).unwrap_or(0)
    }

    fn last_insert_rowid(&self) -> i64 {
        self.connection().map(|c| c.lock().unwrap().last_insert_rowid()).unwrap_or(0)
    }
}

fn to_sql(value: wit_sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        wit_sqlite::Value::Integer(i) => V::Integer(i),
        wit_sqlite::Value::Real(r) => V::Real(r),
        wit_sqlite::Value::Text(t) => V::Text(t),
        wit_sqlite::Value::Blob(b) => V::Blob(b),
        wit_sqlite::Value::Null => V::Null,
    }
}

fn from_sql(value: rusqlite::types::ValueRef<'_>) -> wit_sqlite::Value {
    use rusqlite::types::ValueRef as V;
    match value {
        V::Null => wit_sqlite::Value::Null,
        V::Integer(i) => wit_sqlite::Value::Integer(i),
        V::Real(r) => wit_sqlite::Value::Real(r),
        V::Text(t) => wit_sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => wit_sqlite::Value::Blob(b.to_vec()),
    }
}

/// An open `spin:sqlite` connection (the guest's `connection` resource): a handle on the
/// application's one shared database connection.
pub struct SqliteConnection {
    database: Arc<SqliteDatabase>,
}

/// An open `spin:redis` connection: its own multiplexed connection, as in Spin.
pub struct RedisConnection {
    connection: redis::aio::MultiplexedConnection,
}

/// Whether `database` may be opened by the component, and the handle if so.
fn open_sqlite(ctx: &mut Ctx, database: String) -> wasmtime::Result<Result<Resource<SqliteConnection>, wit_sqlite::Error>> {
    if !ctx.spin.app.sqlite_databases.contains(&database) {
        return Ok(Err(wit_sqlite::Error::AccessDenied));
    }
    if database != "default" {
        return Ok(Err(wit_sqlite::Error::NoSuchDatabase));
    }
    let connection = SqliteConnection { database: ctx.spin.sqlite.clone() };
    Ok(Ok(ctx.table.push(connection)?))
}

fn sqlite_database(ctx: &mut Ctx, connection: &Resource<SqliteConnection>) -> wasmtime::Result<Arc<SqliteDatabase>> {
    ctx.spin.stats.sqlite_statements.fetch_add(1, Ordering::Relaxed);
    Ok(ctx.table.get(connection)?.database.clone())
}

impl wit_sqlite::Host for &mut Ctx {}

impl wit_sqlite::HostConnection for &mut Ctx {
    fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<SqliteConnection>, wit_sqlite::Error>> {
        open_sqlite(self, database)
    }

    fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<wit_sqlite::Value>,
    ) -> wasmtime::Result<Result<wit_sqlite::QueryResult, wit_sqlite::Error>> {
        let database = sqlite_database(self, &connection)?;
        Ok(database.execute(&statement, parameters).map(|(columns, rows)| wit_sqlite::QueryResult { columns, rows }))
    }

    fn last_insert_rowid(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.database.last_insert_rowid())
    }

    fn changes(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.database.changes())
    }

    fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

type RowsAndResult = (Vec<String>, StreamReader<wit_sqlite::RowResult>, FutureReader<Result<(), wit_sqlite::Error>>);

impl<T: Send> wit_sqlite::HostConnectionWithStore<T> for SpinData {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, wit_sqlite::Error>> {
        accessor.with(|mut access| open_sqlite(access.get(), database))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<wit_sqlite::Value>,
    ) -> wasmtime::Result<Result<RowsAndResult, wit_sqlite::Error>> {
        let database = accessor.with(|mut access| sqlite_database(access.get(), &connection))?;
        let outcome = tokio::task::spawn_blocking(move || database.execute(&statement, parameters)).await?;
        let (columns, rows) = match outcome {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let result = FutureReader::new(&mut access, async { wasmtime::error::Ok(Ok(())) })?;
            Ok(Ok((columns, rows, result)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<SqliteConnection>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.database.last_insert_rowid()))
    }

    async fn changes_async(accessor: &Accessor<T, Self>, connection: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.database.changes()))
    }
}

/// `redis://host:port` as the allow-list sees it (`None`: not a TCP address).
fn redis_endpoint(address: &str) -> Option<(String, String, u16)> {
    let client = redis::Client::open(address).ok()?;
    match &client.get_connection_info().addr {
        redis::ConnectionAddr::Tcp(host, port) => Some(("redis".into(), host.clone(), *port)),
        redis::ConnectionAddr::TcpTls { host, port, .. } => Some(("rediss".into(), host.clone(), *port)),
        _ => None,
    }
}

/// Spin's flattening of a reply into `execute`'s result list.
pub fn flatten_reply(value: redis::Value, out: &mut Vec<wit_redis::RedisResult>) {
    match value {
        redis::Value::Nil | redis::Value::Okay => {}
        redis::Value::Int(i) => out.push(wit_redis::RedisResult::Int64(i)),
        redis::Value::BulkString(bytes) => out.push(wit_redis::RedisResult::Binary(bytes)),
        redis::Value::SimpleString(s) => out.push(wit_redis::RedisResult::Status(s)),
        redis::Value::Array(values) | redis::Value::Set(values) => {
            values.into_iter().for_each(|v| flatten_reply(v, out));
        }
        other => out.push(wit_redis::RedisResult::Status(format!("{other:?}"))),
    }
}

fn redis_error(e: redis::RedisError) -> wit_redis::Error {
    if e.kind() == redis::ErrorKind::TypeError {
        wit_redis::Error::TypeError
    } else {
        wit_redis::Error::Other(e.to_string())
    }
}

fn redis_connection<T>(
    accessor: &Accessor<T, SpinData>,
    connection: &Resource<RedisConnection>,
) -> wasmtime::Result<redis::aio::MultiplexedConnection> {
    accessor.with(|mut access| {
        let ctx = access.get();
        ctx.spin.stats.redis_commands.fetch_add(1, Ordering::Relaxed);
        Ok(ctx.table.get(connection)?.connection.clone())
    })
}

impl wit_redis::Host for &mut Ctx {}

impl wit_redis::HostConnection for &mut Ctx {
    fn drop(&mut self, connection: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

type RedisResult<V> = wasmtime::Result<Result<V, wit_redis::Error>>;

impl<T: Send> wit_redis::HostConnectionWithStore<T> for SpinData {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> RedisResult<Resource<RedisConnection>> {
        let app = accessor.with(|mut access| access.get().spin.app.clone());
        let Some((scheme, host, port)) = redis_endpoint(&address) else {
            return Ok(Err(wit_redis::Error::InvalidAddress));
        };
        if !app.outbound_allowed(&scheme, &host, port) {
            return Ok(Err(wit_redis::Error::InvalidAddress));
        }
        let client = match redis::Client::open(address.as_str()) {
            Ok(client) => client,
            Err(_) => return Ok(Err(wit_redis::Error::InvalidAddress)),
        };
        let connection = match client.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(redis_error(e))),
        };
        accessor.with(|mut access| Ok(Ok(access.get().table.push(RedisConnection { connection })?)))
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> RedisResult<()> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.publish::<_, _, ()>(channel, payload).await.map_err(redis_error))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> RedisResult<Option<Vec<u8>>> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.get(key).await.map_err(redis_error))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> RedisResult<()> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.set(key, value).await.map_err(redis_error))
    }

    async fn incr(accessor: &Accessor<T, Self>, connection: Resource<RedisConnection>, key: String) -> RedisResult<i64> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.incr(key, 1).await.map_err(redis_error))
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> RedisResult<u32> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.del(keys).await.map_err(redis_error))
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.sadd(key, values).await.map_err(redis_error))
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> RedisResult<Vec<String>> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.smembers(key).await.map_err(redis_error))
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        let mut conn = redis_connection(accessor, &connection)?;
        Ok(conn.srem(key, values).await.map_err(redis_error))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<wit_redis::RedisParameter>,
    ) -> RedisResult<Vec<wit_redis::RedisResult>> {
        let mut conn = redis_connection(accessor, &connection)?;
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                wit_redis::RedisParameter::Int64(i) => cmd.arg(i),
                wit_redis::RedisParameter::Binary(bytes) => cmd.arg(bytes),
            };
        }
        Ok(cmd.query_async::<redis::Value>(&mut conn).await.map_err(redis_error).map(|reply| {
            let mut out = Vec::new();
            flatten_reply(reply, &mut out);
            out
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_redis::RedisResult as R;
    use wit_sqlite::Value as V;

    fn temp_database(name: &str) -> SqliteDatabase {
        let dir = std::env::temp_dir().join(format!("spin-test-host-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sqlite_db.db");
        let _ = std::fs::remove_file(&path);
        SqliteDatabase::new(path)
    }

    #[test]
    fn sqlite_statements_round_trip_values_and_report_errors() {
        let db = temp_database("values");
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, i INTEGER, r REAL, b BLOB, n TEXT)", vec![]).unwrap();
        let row = vec![V::Text("a".into()), V::Integer(-7), V::Real(1.5), V::Blob(vec![0, 255]), V::Null];
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", row.clone()).unwrap();
        assert_eq!(db.changes(), 1);
        let (columns, rows) = db.execute("SELECT k, i, r, b, n FROM t WHERE k = ?", vec![V::Text("a".into())]).unwrap();
        assert_eq!(columns, ["k", "i", "r", "b", "n"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(format!("{:?}", rows[0].values), format!("{row:?}"));
        // RETURNING reports in the same statement whether a row changed (the counter store's
        // compare-and-swap relies on it).
        let (_, swapped) =
            db.execute("UPDATE t SET i = 8 WHERE k = 'a' AND i = -7 RETURNING 1", vec![]).unwrap();
        assert_eq!(swapped.len(), 1);
        let (_, stale) = db.execute("UPDATE t SET i = 9 WHERE k = 'a' AND i = -7 RETURNING 1", vec![]).unwrap();
        assert!(stale.is_empty());
        assert!(matches!(db.execute("SELECT * FROM missing", vec![]), Err(wit_sqlite::Error::Io(_))));
    }

    #[test]
    fn sqlite_connection_is_shared_so_transactions_span_requests() {
        // As in Spin: two "requests" opening `default` use one connection, so a second BEGIN
        // while the first is open fails; a multi-statement transaction is not per request.
        let db = temp_database("shared");
        db.execute("BEGIN IMMEDIATE", vec![]).unwrap();
        assert!(matches!(db.execute("BEGIN IMMEDIATE", vec![]), Err(wit_sqlite::Error::Io(_))));
        db.execute("COMMIT", vec![]).unwrap();
    }

    #[test]
    fn redis_replies_flatten_as_in_spin() {
        let mut out = Vec::new();
        let reply = redis::Value::Array(vec![
            redis::Value::Okay,
            redis::Value::Int(3),
            redis::Value::Nil,
            redis::Value::Array(vec![redis::Value::BulkString(b"x".to_vec())]),
            redis::Value::SimpleString("QUEUED".into()),
        ]);
        flatten_reply(reply, &mut out);
        assert_eq!(format!("{out:?}"), format!("{:?}", [R::Int64(3), R::Binary(b"x".to_vec()), R::Status("QUEUED".into())]));
    }

    #[test]
    fn redis_addresses_are_checked_as_tcp_endpoints() {
        assert_eq!(redis_endpoint("redis://127.0.0.1:6390"), Some(("redis".into(), "127.0.0.1".into(), 6390)));
        assert_eq!(redis_endpoint("redis://cache.internal"), Some(("redis".into(), "cache.internal".into(), 6379)));
        assert_eq!(redis_endpoint("not an address"), None);
    }

    /// Against the real redis-server tests/spin/run.sh starts (SPIN_TEST_REDIS_ADDRESS).
    #[tokio::test]
    async fn redis_eval_compare_and_set_against_a_real_server() {
        let Ok(address) = std::env::var("SPIN_TEST_REDIS_ADDRESS") else {
            eprintln!("SPIN_TEST_REDIS_ADDRESS unset: tests/spin/run.sh sets it");
            return;
        };
        let client = redis::Client::open(address.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("spin-test-host-unit:{}", std::process::id());
        let _: () = conn.del(&key).await.unwrap();
        let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end redis.call('SET', KEYS[1], ARGV[1]) return 1";
        let run = |value: &'static str| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(1).arg(&key).arg(value);
            cmd
        };
        let mut out = Vec::new();
        flatten_reply(run("v").query_async(&mut conn).await.unwrap(), &mut out);
        flatten_reply(run("v").query_async(&mut conn).await.unwrap(), &mut out);
        assert_eq!(format!("{out:?}"), format!("{:?}", [R::Int64(1), R::Int64(0)]));
        let _: () = conn.del(&key).await.unwrap();
    }
}
