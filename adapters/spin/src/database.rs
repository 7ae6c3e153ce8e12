//! The component's SQLite database `default` (granted by `sqlite_databases` in spin.toml), shared
//! by the limit counters (`counters`), the semantic cache's vector index (`vectors`), the usage
//! rollups (`stats`) and the request log (`request_log`).

use edge::HostError;
use spin_sdk::sqlite::{self, Value};

/// The SQLite database the gateway's tables live in.
const SQLITE_DATABASE: &str = "default";

pub(crate) struct Database(sqlite::Connection);

impl Database {
    /// Open the database and make sure its tables exist (`schema`: `CREATE … IF NOT EXISTS …`
    /// statements, run in order).
    pub(crate) async fn open(schema: &[&str]) -> Result<Self, HostError> {
        let connection = sqlite::Connection::open(SQLITE_DATABASE).await.map_err(|e| match e {
            sqlite::Error::AccessDenied | sqlite::Error::NoSuchDatabase => HostError(format!(
                "sqlite database {SQLITE_DATABASE:?} not available: grant it with sqlite_databases in spin.toml"
            )),
            other => sqlite_error(other),
        })?;
        let database = Database(connection);
        for statement in schema {
            database.rows(statement, vec![]).await?;
        }
        Ok(database)
    }

    /// Run one statement and collect its rows.
    pub(crate) async fn rows(&self, statement: &str, parameters: Vec<Value>) -> Result<Vec<sqlite::RowResult>, HostError> {
        let result = self.0.execute(statement, parameters).await.map_err(sqlite_error)?;
        result.collect().await.map_err(sqlite_error)
    }
}

fn sqlite_error(e: sqlite::Error) -> HostError {
    HostError(format!("sqlite: {e}"))
}
