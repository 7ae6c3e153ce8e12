//! The vector index over a table of rows: how a platform without an object per partition (Spin:
//! SQLite) gives [`Host::vector_upsert`](crate::Host::vector_upsert) and
//! [`Host::vector_query`](crate::Host::vector_query) the rules every store shares.
//!
//! A partition is the rows under one key ([`partition_key`]: index, jurisdiction, partition).
//! An operation loads them into a [`PartitionIndex`] (each with its write sequence), applies
//! the op there — exact cosine scan with `TopK`, replacement by id, eviction of the oldest writes
//! past the capacity — and writes back what changed: the upserted row and the evicted ids. So the
//! ranking, the bound and the eviction order are the in-memory host's and the Durable Object's.
//!
//! Concurrent upserts of one partition may both see room and leave it one row over its capacity
//! until the next upsert evicts; a query never sees a partial row (each write is one statement).
//!
//! Jurisdiction: a platform that cannot pin where its store lives serves a partition with a
//! jurisdiction only when the deployment declares it runs in that jurisdiction ([`served`]);
//! otherwise the op is refused and the semantic tier is skipped, as on a host without an index.

use policy::cache::{decode_vector, encode_vector, IndexOp, IndexReply, PartitionIndex, VectorMatch};

use crate::host::{HostError, VectorPartition};

/// One stored row of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRow {
    pub id: String,
    /// [`encode_vector`]: little-endian `f32`.
    pub vector: Vec<u8>,
    pub metadata: String,
    /// Write sequence: the smallest is evicted first.
    pub written: u64,
}

/// A table of vector rows, as the platform adapter binds it.
#[allow(async_fn_in_trait)] // used through generics on one thread, never as `dyn` or across threads
pub trait VectorRows {
    /// Every row under `partition`.
    async fn load(&self, partition: &str) -> Result<Vec<VectorRow>, HostError>;

    /// Insert `row` under `partition`, or replace the row of the same id.
    async fn save(&self, partition: &str, row: &VectorRow) -> Result<(), HostError>;

    /// Delete these ids of `partition`.
    async fn delete(&self, partition: &str, ids: &[String]) -> Result<(), HostError>;
}

/// The row key of a partition: distinct for every (index, jurisdiction, partition); each part is
/// length-prefixed so no text can make two collide, and no jurisdiction is apart from every one.
pub fn partition_key(at: &VectorPartition<'_>) -> String {
    let jurisdiction = at.jurisdiction.map_or_else(|| "-".to_string(), |j| format!("{}:{j}", j.len()));
    format!("gateway-vectors:{}:{}:{jurisdiction}:{}", at.index.len(), at.index, at.partition)
}

/// Whether a deployment that declares `declared` (a comma-separated list of jurisdictions, e.g.
/// `eu`; none: it declares none) may hold a partition of `jurisdiction`.
pub fn served(declared: Option<&str>, at: &VectorPartition<'_>) -> Result<(), HostError> {
    let Some(jurisdiction) = at.jurisdiction else { return Ok(()) };
    let listed = declared.into_iter().flat_map(|d| d.split(',')).any(|j| j.trim().eq_ignore_ascii_case(jurisdiction));
    if listed {
        Ok(())
    } else {
        Err(HostError(format!(
            "vector partition of jurisdiction {jurisdiction:?} refused: this deployment does not declare that it runs there"
        )))
    }
}

/// Apply one operation to the partition `at` in `rows`, bounded by `capacity` entries.
pub async fn apply<R: VectorRows>(rows: &R, at: &VectorPartition<'_>, op: IndexOp, capacity: usize) -> Result<IndexReply, HostError> {
    let key = partition_key(at);
    let mut index = PartitionIndex::new(capacity);
    for row in rows.load(&key).await? {
        // A row that is not a vector (written by something else) is passed over, not fatal.
        if let Some(vector) = decode_vector(&row.vector) {
            index.restore(row.id, vector, row.metadata, row.written);
        }
    }
    let upserted = match &op {
        IndexOp::Upsert { id, vector, metadata } => Some(VectorRow { id: id.clone(), vector: encode_vector(vector), metadata: metadata.clone(), written: index.next_write() }),
        IndexOp::Query { .. } => None,
    };
    let reply = index.apply(op);
    if let (Some(row), IndexReply::Stored { evicted }) = (upserted, &reply) {
        rows.save(&key, &row).await?;
        if !evicted.is_empty() {
            rows.delete(&key, evicted).await?;
        }
    }
    Ok(reply)
}

/// `Host::vector_upsert` over `rows`.
pub async fn upsert<R: VectorRows>(rows: &R, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str, capacity: usize) -> Result<(), HostError> {
    let op = IndexOp::Upsert { id: id.into(), vector: vector.to_vec(), metadata: metadata.into() };
    apply(rows, at, op, capacity).await.map(|_| ())
}

/// `Host::vector_query` over `rows`.
pub async fn query<R: VectorRows>(rows: &R, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> Result<Vec<VectorMatch>, HostError> {
    // A query evicts nothing: the capacity does not matter to it.
    match apply(rows, at, IndexOp::Query { vector: vector.to_vec(), top_k }, usize::MAX).await? {
        IndexReply::Matches { matches } => Ok(matches),
        IndexReply::Stored { .. } => Err(HostError("vector store answered a query with a write".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use futures::executor::block_on;

    use super::*;

    /// A table in memory: (partition, id) → row; it counts writes.
    #[derive(Default)]
    struct Table {
        rows: RefCell<BTreeMap<(String, String), VectorRow>>,
        writes: RefCell<u32>,
    }

    impl VectorRows for Table {
        async fn load(&self, partition: &str) -> Result<Vec<VectorRow>, HostError> {
            Ok(self.rows.borrow().iter().filter(|((p, _), _)| p == partition).map(|(_, r)| r.clone()).collect())
        }

        async fn save(&self, partition: &str, row: &VectorRow) -> Result<(), HostError> {
            *self.writes.borrow_mut() += 1;
            self.rows.borrow_mut().insert((partition.to_string(), row.id.clone()), row.clone());
            Ok(())
        }

        async fn delete(&self, partition: &str, ids: &[String]) -> Result<(), HostError> {
            *self.writes.borrow_mut() += 1;
            self.rows.borrow_mut().retain(|(p, id), _| !(p == partition && ids.contains(id)));
            Ok(())
        }
    }

    const AT: VectorPartition<'static> = VectorPartition { index: "responses", partition: "p1", jurisdiction: None };

    #[test]
    fn rows_rank_replace_and_evict_the_oldest_write_past_capacity() {
        let table = Table::default();
        block_on(async {
            upsert(&table, &AT, "a", &[1.0, 0.0], "A", 2).await.unwrap();
            upsert(&table, &AT, "b", &[0.6, 0.8], "B", 2).await.unwrap();
            let matches = query(&table, &AT, &[1.0, 0.0], 5).await.unwrap();
            assert_eq!(matches.iter().map(|m| (m.id.as_str(), m.metadata.as_str())).collect::<Vec<_>>(), [("a", "A"), ("b", "B")]);
            assert!((matches[1].score - 0.6).abs() < 1e-6);
            // Rewriting `a` makes `b` the oldest write: the third entry evicts `b`, not `a`.
            upsert(&table, &AT, "a", &[1.0, 0.0], "A2", 2).await.unwrap();
            upsert(&table, &AT, "c", &[0.0, 1.0], "C", 2).await.unwrap();
            let ids: Vec<String> = query(&table, &AT, &[1.0, 1.0], 5).await.unwrap().into_iter().map(|m| m.id).collect();
            assert_eq!(ids.len(), 2);
            assert!(ids.contains(&"a".to_string()) && ids.contains(&"c".to_string()), "{ids:?}");
            assert_eq!(table.rows.borrow().len(), 2, "the evicted row is deleted from the table");
        });
    }

    #[test]
    fn a_query_writes_nothing_and_partitions_stay_apart() {
        let table = Table::default();
        let eu = VectorPartition { jurisdiction: Some("eu"), ..AT };
        let other = VectorPartition { partition: "p2", ..AT };
        block_on(async {
            upsert(&table, &AT, "a", &[1.0, 0.0], "", 10).await.unwrap();
            let writes = *table.writes.borrow();
            assert_eq!(query(&table, &AT, &[1.0, 0.0], 1).await.unwrap().len(), 1);
            assert_eq!(*table.writes.borrow(), writes);
            assert!(query(&table, &eu, &[1.0, 0.0], 5).await.unwrap().is_empty());
            assert!(query(&table, &other, &[1.0, 0.0], 5).await.unwrap().is_empty());
        });
        assert_ne!(partition_key(&AT), partition_key(&eu));
        assert_ne!(partition_key(&VectorPartition { index: "a:1", partition: "b", jurisdiction: None }), partition_key(&VectorPartition { index: "a", partition: "1:b", jurisdiction: None }));
    }

    #[test]
    fn a_jurisdiction_is_served_only_where_the_deployment_declares_it() {
        let eu = VectorPartition { jurisdiction: Some("eu"), ..AT };
        assert!(served(None, &AT).is_ok(), "no jurisdiction: anywhere");
        assert!(served(None, &eu).is_err());
        assert!(served(Some("fedramp"), &eu).is_err());
        assert!(served(Some("fedramp, EU"), &eu).is_ok());
    }
}
