//! The semantic cache's default threshold and false-hit check on real embeddings, without Python:
//! a frozen subset of `tests/cache/semantic-pairs.jsonl` with both sides' all-MiniLM-L6-v2
//! vectors (`tests/cache/semantic-frozen.json`, written by `scripts/semantic/embed.py --vectors`).
//! The paraphrases are the ones closest above the default threshold (raising it loses them); the
//! near-misses are the most similar of each category (lowering the bar or loosening the check
//! serves them). The full table is `bench-results/semantic-cache.md`.

use policy::cache::semantic::{cosine_similarity, semantic_verdict, QueryFeatures, SemanticVerdict, DEFAULT_SIMILARITY_THRESHOLD};
use serde_json::Value;

const FROZEN: &str = include_str!("../../tests/cache/semantic-frozen.json");

fn vector(value: &Value) -> Vec<f32> {
    value.as_array().expect("a vector").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

#[test]
fn default_threshold_and_check_serve_paraphrases_and_refuse_near_misses() {
    let frozen: Value = serde_json::from_str(FROZEN).expect("valid JSON");
    let pairs = frozen["pairs"].as_array().expect("pairs");
    assert!(pairs.len() >= 20, "the frozen subset covers every category");
    for pair in pairs {
        let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
        let similarity = cosine_similarity(&vector(&pair["va"]), &vector(&pair["vb"]));
        let recorded = pair["similarity"].as_f64().unwrap() as f32;
        assert!((similarity - recorded).abs() < 2e-3, "{a:?}/{b:?}: cosine {similarity} vs recorded {recorded}");
        let verdict =
            semantic_verdict(similarity, DEFAULT_SIMILARITY_THRESHOLD, &QueryFeatures::extract(a), &QueryFeatures::extract(b));
        let category = pair["category"].as_str().unwrap();
        if pair["should_hit"].as_bool().unwrap() {
            assert_eq!(verdict, SemanticVerdict::Hit, "{category}: {a:?} / {b:?} at {similarity}");
        } else {
            assert_ne!(verdict, SemanticVerdict::Hit, "{category}: {a:?} / {b:?} at {similarity} would be a false hit");
            if similarity >= DEFAULT_SIMILARITY_THRESHOLD {
                assert!(matches!(verdict, SemanticVerdict::Mismatch(_)), "{category}: the check refuses {a:?} / {b:?}");
            }
        }
    }
}
