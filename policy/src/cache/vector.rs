//! The brute-force vector index of one partition, shared by every host's store.
//!
//! A semantic-cache partition (one scope, model and parameter set) holds at most a few thousand
//! queries, so an exact scan is both simpler and faster than an approximate index at that size:
//! 1,000 vectors of 384 dimensions is 384k multiply-adds. The in-memory host keeps a
//! [`PartitionIndex`] per partition, the Durable Object keeps one in memory in front of its
//! SQLite rows, Spin scores the rows it reads: the ranking ([`TopK`]), the bound and the eviction
//! order are decided here, once, with tests.
//!
//! Stored vectors travel and rest as little-endian `f32` blobs ([`encode_vector`]): 4 bytes a
//! dimension instead of ~10 as JSON text.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::semantic::cosine_similarity;

/// Entries one partition keeps before the least recently written is evicted.
pub const DEFAULT_PARTITION_CAPACITY: usize = 1000;

/// One result of a query: the stored id, its cosine similarity to the query, its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorMatch {
    pub id: String,
    pub score: f32,
    pub metadata: String,
}

/// One request to a store that holds a partition (the Durable Object's wire protocol, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IndexOp {
    Upsert { id: String, vector: Vec<f32>, metadata: String },
    Query { vector: Vec<f32>, top_k: usize },
}

/// The store's answer to an [`IndexOp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum IndexReply {
    /// The entry is stored (and these were evicted to make room).
    Stored { evicted: Vec<String> },
    Matches { matches: Vec<VectorMatch> },
}

impl PartitionIndex {
    /// Apply one [`IndexOp`] (what every store does after loading the partition).
    pub fn apply(&mut self, op: IndexOp) -> IndexReply {
        match op {
            IndexOp::Upsert { id, vector, metadata } => IndexReply::Stored { evicted: self.upsert(&id, vector, metadata) },
            IndexOp::Query { vector, top_k } => IndexReply::Matches { matches: self.query(&vector, top_k) },
        }
    }
}

/// `vector` as little-endian `f32` bytes.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector of an [`encode_vector`] blob; `None` when its length is not a multiple of 4.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The best `k` of a stream of scored candidates, highest score first (ties: the earlier
/// candidate first). Keeps at most `k` entries, so a scan allocates nothing per row it rejects.
#[derive(Debug)]
pub struct TopK<T> {
    k: usize,
    /// Sorted best first.
    best: Vec<(f32, T)>,
}

impl<T> TopK<T> {
    pub fn new(k: usize) -> Self {
        Self { k, best: Vec::with_capacity(k.min(64)) }
    }

    /// The score a candidate must beat to be kept (`None` while fewer than `k` are kept).
    pub fn floor(&self) -> Option<f32> {
        (self.best.len() == self.k).then(|| self.best.last().map_or(f32::INFINITY, |(s, _)| *s))
    }

    /// Offer one candidate; NaN scores are never kept.
    pub fn push(&mut self, score: f32, item: T) {
        if self.k == 0 || score.is_nan() || self.floor().is_some_and(|floor| score <= floor) {
            return;
        }
        let at = self.best.partition_point(|(s, _)| s.partial_cmp(&score) != Some(Ordering::Less));
        self.best.insert(at, (score, item));
        self.best.truncate(self.k);
    }

    /// The kept candidates, best first.
    pub fn into_sorted(self) -> Vec<(f32, T)> {
        self.best
    }
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    vector: Vec<f32>,
    metadata: String,
    /// Write order: the smallest is evicted first.
    written: u64,
}

/// One partition's entries, bounded, with exact cosine search.
///
/// Eviction is by write order (an upsert of an existing id refreshes it): cache entries also
/// expire by TTL in the exact tier, so the oldest write is the one least likely still valid.
#[derive(Debug, Clone)]
pub struct PartitionIndex {
    capacity: usize,
    entries: Vec<Entry>,
    next_write: u64,
}

impl PartitionIndex {
    /// An empty partition holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: Vec::new(), next_write: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Insert or replace `id`; returns the ids evicted to stay within capacity (oldest writes
    /// first), which a persistent store deletes too.
    pub fn upsert(&mut self, id: &str, vector: Vec<f32>, metadata: String) -> Vec<String> {
        let written = self.next_write;
        self.next_write += 1;
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(entry) => {
                entry.vector = vector;
                entry.metadata = metadata;
                entry.written = written;
                Vec::new()
            }
            None => {
                self.entries.push(Entry { id: id.to_owned(), vector, metadata, written });
                self.evict_over_capacity()
            }
        }
    }

    /// Restore one persisted entry with its original write sequence (loading a store's rows).
    pub fn restore(&mut self, id: String, vector: Vec<f32>, metadata: String, written: u64) {
        self.next_write = self.next_write.max(written + 1);
        self.entries.retain(|e| e.id != id);
        self.entries.push(Entry { id, vector, metadata, written });
    }

    /// The write sequence number the next [`upsert`](Self::upsert) will use (a persistent store
    /// saves it beside the row so [`restore`](Self::restore) keeps the eviction order).
    pub fn next_write(&self) -> u64 {
        self.next_write
    }

    /// Remove `id`; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        before != self.entries.len()
    }

    /// The `top_k` entries most similar to `query` (cosine), best first. Entries of another
    /// dimension score 0 and are never returned ahead of a real match.
    pub fn query(&self, query: &[f32], top_k: usize) -> Vec<VectorMatch> {
        let mut top = TopK::new(top_k);
        for entry in &self.entries {
            top.push(cosine_similarity(query, &entry.vector), entry);
        }
        top.into_sorted()
            .into_iter()
            .map(|(score, e)| VectorMatch { id: e.id.clone(), score, metadata: e.metadata.clone() })
            .collect()
    }

    fn evict_over_capacity(&mut self) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.entries.len() > self.capacity {
            let oldest = self.entries.iter().enumerate().min_by_key(|(_, e)| e.written).map(|(i, _)| i).unwrap_or(0);
            evicted.push(self.entries.swap_remove(oldest).id);
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_little_endian_f32() {
        let v = vec![1.0f32, -0.5, 0.25, f32::MIN_POSITIVE];
        let blob = encode_vector(&v);
        assert_eq!(blob.len(), 16);
        assert_eq!(&blob[0..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_vector(&blob), Some(v));
        assert_eq!(decode_vector(&[0, 0, 128]), None);
    }

    #[test]
    fn top_k_keeps_the_best_in_order_and_drops_nan() {
        let mut top = TopK::new(2);
        for (score, name) in [(0.1, "a"), (f32::NAN, "nan"), (0.9, "b"), (0.5, "c"), (0.9, "d")] {
            top.push(score, name);
        }
        let got: Vec<_> = top.into_sorted().into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, vec!["b", "d"], "ties keep the earlier candidate first");
        assert!(TopK::<()>::new(0).into_sorted().is_empty());
    }

    #[test]
    fn query_ranks_by_cosine_and_limits_to_k() {
        let mut index = PartitionIndex::new(10);
        index.upsert("x", vec![1.0, 0.0], "mx".into());
        index.upsert("y", vec![0.0, 1.0], "my".into());
        index.upsert("xy", vec![1.0, 1.0], "mxy".into());
        let hits = index.query(&[1.0, 0.1], 2);
        assert_eq!(hits.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["x", "xy"]);
        assert_eq!(hits[0].metadata, "mx");
        assert!(hits[0].score > 0.99 && hits[0].score <= 1.0);
        assert!(index.query(&[1.0, 0.0, 0.0], 3).iter().all(|m| m.score == 0.0), "another dimension never matches");
    }

    #[test]
    fn upsert_replaces_and_eviction_drops_the_oldest_write() {
        let mut index = PartitionIndex::new(2);
        assert!(index.upsert("a", vec![1.0], "1".into()).is_empty());
        assert!(index.upsert("b", vec![1.0], "2".into()).is_empty());
        assert!(index.upsert("a", vec![1.0], "3".into()).is_empty(), "a replaced, refreshed");
        assert_eq!(index.upsert("c", vec![1.0], "4".into()), vec!["b".to_string()]);
        assert_eq!(index.len(), 2);
        let metas: Vec<_> = index.query(&[1.0], 5).into_iter().map(|m| m.metadata).collect();
        assert!(metas.contains(&"3".to_string()) && metas.contains(&"4".to_string()));
        assert!(index.remove("a") && !index.remove("a"));
    }

    #[test]
    fn ops_round_trip_as_json_and_apply() {
        let op = IndexOp::Upsert { id: "a".into(), vector: vec![0.1, 0.2], metadata: "m".into() };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, r#"{"op":"upsert","id":"a","vector":[0.1,0.2],"metadata":"m"}"#);
        assert_eq!(serde_json::from_str::<IndexOp>(&json).unwrap(), op, "f32 survives JSON exactly");
        let mut index = PartitionIndex::new(1);
        assert_eq!(index.apply(op), IndexReply::Stored { evicted: vec![] });
        let IndexReply::Matches { matches } = index.apply(IndexOp::Query { vector: vec![0.1, 0.2], top_k: 1 }) else { panic!() };
        assert_eq!(matches[0].id, "a");
        let reply = serde_json::to_string(&IndexReply::Matches { matches }).unwrap();
        assert!(reply.starts_with(r#"{"reply":"matches","matches":[{"id":"a","score":"#), "{reply}");
    }

    #[test]
    fn restore_keeps_the_persisted_eviction_order() {
        let mut index = PartitionIndex::new(2);
        index.restore("new".into(), vec![1.0], String::new(), 7);
        index.restore("old".into(), vec![1.0], String::new(), 3);
        assert_eq!(index.next_write(), 8);
        assert_eq!(index.upsert("c", vec![1.0], String::new()), vec!["old".to_string()]);
    }
}
