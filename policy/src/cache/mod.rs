//! The response cache's pure pieces: the semantic tier's partition, query text and false-hit
//! guard ([`semantic`]), and the brute-force vector index every host's store shares
//! ([`vector`]), and the wire shape of Cloudflare Vectorize ([`vectorize`]). No I/O: the pipeline embeds, the host stores, these decide.

pub mod semantic;
pub mod vector;
pub mod vectorize;

pub use semantic::{
    cosine_similarity, partition_id, query_text, semantic_verdict, FeatureMismatch, QueryFeatures, QueryScope, SemanticVerdict, Turn,
    DEFAULT_SIMILARITY_THRESHOLD,
};
pub use vector::{decode_vector, encode_vector, IndexOp, IndexReply, PartitionIndex, TopK, VectorMatch, DEFAULT_PARTITION_CAPACITY};
