//! The semantic cache's vector index behind `Host::vector_upsert`/`vector_query` on Spin: rows
//! of the SQLite database `default`, table `gateway_vectors`. Binding glue only: loading a
//! partition, ranking, replacement and eviction are `edge::vector_store` (the rules of every
//! store, `policy::cache::PartitionIndex`).
//!
//! Spin cannot pin where its database lives, so a partition with a jurisdiction is served only
//! when the deployment declares that it runs there: the Spin variable `jurisdictions` (e.g.
//! `eu`, comma-separated), set by the operator who chose where the app and its database run.
//! Otherwise the op is refused and the gateway skips the semantic tier for that caller. Like the
//! counters, a jurisdiction is also part of the row key, so its partitions stay apart.

use edge::vector_store::{self, VectorRow, VectorRows};
use edge::{HostError, VectorMatch, VectorPartition};
use policy::cache::DEFAULT_PARTITION_CAPACITY;
use spin_sdk::sqlite::Value;

use crate::database::Database;
use crate::read_variable;

/// One row per (partition, id); `partition` is `edge::vector_store::partition_key`.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS gateway_vectors (partition TEXT NOT NULL, id TEXT NOT NULL, \
    vector BLOB NOT NULL, metadata TEXT NOT NULL, written INTEGER NOT NULL, PRIMARY KEY (partition, id))";

/// The Spin variable listing the jurisdictions this deployment runs in.
const JURISDICTIONS_VARIABLE: &str = "jurisdictions";

struct SqliteVectors(Database);

impl SqliteVectors {
    async fn open(at: &VectorPartition<'_>) -> Result<Self, HostError> {
        vector_store::served(read_variable(JURISDICTIONS_VARIABLE).await.as_deref(), at)?;
        Ok(SqliteVectors(Database::open(&[CREATE_TABLE]).await?))
    }
}

impl VectorRows for SqliteVectors {
    async fn load(&self, partition: &str) -> Result<Vec<VectorRow>, HostError> {
        let rows = self
            .0
            .rows("SELECT id, vector, metadata, written FROM gateway_vectors WHERE partition = ?", vec![Value::text(partition)])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(VectorRow {
                    id: row.get::<&str>(0)?.to_string(),
                    vector: row.get::<&[u8]>(1)?.to_vec(),
                    metadata: row.get::<&str>(2)?.to_string(),
                    written: u64::try_from(row.get::<i64>(3)?).ok()?,
                })
            })
            .collect())
    }

    async fn save(&self, partition: &str, row: &VectorRow) -> Result<(), HostError> {
        let written = i64::try_from(row.written).map_err(|_| HostError("vector write sequence overflow".into()))?;
        self.0
            .rows(
                "INSERT INTO gateway_vectors (partition, id, vector, metadata, written) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (partition, id) DO UPDATE SET vector = excluded.vector, metadata = excluded.metadata, written = excluded.written",
                vec![Value::text(partition), Value::text(row.id.as_str()), Value::blob(row.vector.clone()), Value::text(row.metadata.as_str()), Value::integer(written)],
            )
            .await
            .map(|_| ())
    }

    async fn delete(&self, partition: &str, ids: &[String]) -> Result<(), HostError> {
        for id in ids {
            self.0.rows("DELETE FROM gateway_vectors WHERE partition = ? AND id = ?", vec![Value::text(partition), Value::text(id.as_str())]).await?;
        }
        Ok(())
    }
}

pub async fn upsert(at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> Result<(), HostError> {
    vector_store::upsert(&SqliteVectors::open(at).await?, at, id, vector, metadata, DEFAULT_PARTITION_CAPACITY).await
}

pub async fn query(at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> Result<Vec<VectorMatch>, HostError> {
    vector_store::query(&SqliteVectors::open(at).await?, at, vector, top_k).await
}
