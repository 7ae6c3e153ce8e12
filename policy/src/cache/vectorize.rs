//! The wire shape of Cloudflare Vectorize's Workers binding, as plain JSON, so the adapter's glue
//! only converts JSON to JavaScript objects and back, and the shape is tested here.
//!
//! Reference: <https://developers.cloudflare.com/vectorize/reference/client-api/> and
//! <https://developers.cloudflare.com/vectorize/platform/limits/>. A partition is a Vectorize
//! namespace (at most 64 bytes: [`partition_id`](super::partition_id) is 64 hex digits). Vector
//! ids are unique per index, not per namespace, so the stored id is a hash of (partition, id)
//! ([`vectorize_id`], 64 hex digits: the id limit) and the caller's id travels in the metadata.
//! Queries ask for metadata (`returnMetadata: "all"`), which caps `topK` at 20.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::vector::VectorMatch;

/// The most results Vectorize returns with metadata.
pub const VECTORIZE_MAX_TOP_K_WITH_METADATA: usize = 20;

/// Metadata Vectorize stores per vector (10 KiB); larger entries are refused before the call.
pub const VECTORIZE_MAX_METADATA_BYTES: usize = 10 * 1024;

/// The Vectorize id of the caller's `id` in `partition`: 64 lowercase hex digits.
pub fn vectorize_id(partition: &str, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update((partition.len() as u64).to_be_bytes());
    hasher.update(partition.as_bytes());
    hasher.update(id.as_bytes());
    hex::encode(hasher.finalize())
}

/// Why a Vectorize call was not made or its answer not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorizeError {
    MetadataTooLarge(usize),
    InvalidReply(String),
}

impl std::fmt::Display for VectorizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MetadataTooLarge(n) => write!(f, "vector metadata of {n} bytes exceeds Vectorize's {VECTORIZE_MAX_METADATA_BYTES}"),
            Self::InvalidReply(why) => write!(f, "unexpected Vectorize reply: {why}"),
        }
    }
}

/// The argument of `index.upsert(vectors)`: one vector in the partition's namespace.
pub fn upsert_argument(partition: &str, id: &str, vector: &[f32], metadata: &str) -> Result<Value, VectorizeError> {
    let size = id.len() + metadata.len();
    if size > VECTORIZE_MAX_METADATA_BYTES - 64 {
        return Err(VectorizeError::MetadataTooLarge(size));
    }
    Ok(json!([{
        "id": vectorize_id(partition, id),
        "values": vector,
        "namespace": partition,
        "metadata": { "id": id, "metadata": metadata },
    }]))
}

/// The options of `index.query(vector, options)`: the partition's namespace only, with metadata.
pub fn query_options(partition: &str, top_k: usize) -> Value {
    json!({
        "topK": top_k.clamp(1, VECTORIZE_MAX_TOP_K_WITH_METADATA),
        "namespace": partition,
        "returnMetadata": "all",
        "returnValues": false,
    })
}

/// The matches of a query's answer (`{count, matches: [{id, score, metadata}]}`), best first.
/// A match from another namespace (which Vectorize never returns for a namespaced query) or
/// without this module's metadata is dropped rather than trusted.
pub fn parse_query_reply(partition: &str, reply: &Value) -> Result<Vec<VectorMatch>, VectorizeError> {
    let matches = reply.get("matches").and_then(Value::as_array).ok_or_else(|| VectorizeError::InvalidReply("no matches array".into()))?;
    let mut out: Vec<VectorMatch> = matches
        .iter()
        .filter(|m| m.get("namespace").and_then(Value::as_str).is_none_or(|ns| ns == partition))
        .filter_map(|m| {
            let score = m.get("score")?.as_f64()? as f32;
            let metadata = m.get("metadata")?;
            let id = metadata.get("id")?.as_str()?;
            (m.get("id")?.as_str()? == vectorize_id(partition, id)).then(|| VectorMatch {
                id: id.to_owned(),
                score,
                metadata: metadata.get("metadata").and_then(Value::as_str).unwrap_or_default().to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_argument_is_one_namespaced_vector_with_the_callers_id_in_metadata() {
        let arg = upsert_argument("p1", "key-1", &[0.5, -0.25], r#"{"q":"hi"}"#).unwrap();
        assert_eq!(
            arg,
            json!([{
                "id": vectorize_id("p1", "key-1"),
                "values": [0.5, -0.25],
                "namespace": "p1",
                "metadata": { "id": "key-1", "metadata": "{\"q\":\"hi\"}" },
            }])
        );
        assert_eq!(vectorize_id("p1", "key-1").len(), 64, "Vectorize ids are at most 64 bytes");
        assert_ne!(vectorize_id("p1", "k"), vectorize_id("p2", "k"), "ids are unique per index, so the partition is in them");
        assert!(matches!(upsert_argument("p", "k", &[1.0], &"x".repeat(11_000)), Err(VectorizeError::MetadataTooLarge(_))));
    }

    #[test]
    fn query_options_stay_in_the_namespace_and_within_the_top_k_limit() {
        assert_eq!(query_options("p1", 3), json!({ "topK": 3, "namespace": "p1", "returnMetadata": "all", "returnValues": false }));
        assert_eq!(query_options("p1", 500)["topK"], 20);
        assert_eq!(query_options("p1", 0)["topK"], 1);
    }

    #[test]
    fn query_reply_yields_the_callers_ids_best_first_and_drops_foreign_matches() {
        let reply = json!({
            "count": 4,
            "matches": [
                { "id": vectorize_id("p1", "a"), "score": 0.8, "metadata": { "id": "a", "metadata": "ma" } },
                { "id": vectorize_id("p1", "b"), "score": 0.9, "namespace": "p1", "metadata": { "id": "b", "metadata": "mb" } },
                { "id": vectorize_id("p2", "c"), "score": 0.99, "namespace": "p2", "metadata": { "id": "c", "metadata": "mc" } },
                { "id": "forged", "score": 0.95, "metadata": { "id": "d", "metadata": "md" } },
            ]
        });
        let got = parse_query_reply("p1", &reply).unwrap();
        assert_eq!(got.iter().map(|m| (m.id.as_str(), m.metadata.as_str())).collect::<Vec<_>>(), vec![("b", "mb"), ("a", "ma")]);
        assert!(parse_query_reply("p1", &json!({})).is_err());
    }
}
