//! Quality and cost of the guardrail detectors on the labelled set in tests/guardrails/:
//! precision and recall per PII type and for prompt injection, scanning throughput, and the time
//! to compile the rule set (what a cold isolate pays). Prints one JSON object.
//!
//! Runs natively (`cargo run --release -p policy --example guard_eval -- tests/guardrails/eval.jsonl`)
//! and as wasm32-wasip1 under Node's WASI (scripts/bench does both), so the wasm figures come
//! from V8, the engine Workers run.
#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock and its arguments

use std::time::Instant;

use policy::guard::eval::{evaluate, Sample};
use policy::guard::{InjectionDetector, PiiScanner};
use serde_json::{json, Value};

fn round3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/guardrails/eval.jsonl".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let records: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let samples: Vec<Sample> = records
        .iter()
        .map(|r| Sample {
            id: r["id"].as_str().unwrap_or_default(),
            text: r["text"].as_str().unwrap_or_default(),
            labels: r["labels"]
                .as_array()
                .map(|labels| labels.iter().map(|l| (l["type"].as_str().unwrap_or_default(), l["value"].as_str())).collect())
                .unwrap_or_default(),
        })
        .collect();

    let start = Instant::now();
    let scanner = PiiScanner::new();
    let pii_compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let detector = InjectionDetector::new();
    let injection_compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let quality = evaluate(&scanner, &detector, &samples, &[0.5, 0.7]);
    let pii: serde_json::Map<String, Value> = quality
        .kinds
        .iter()
        .map(|(kind, q)| {
            (kind.to_string(), json!({"labels": q.labels, "precision": round3(q.precision()), "recall": round3(q.recall()), "false_positives": q.false_positives}))
        })
        .collect();
    let injection: Vec<Value> = quality
        .injection
        .iter()
        .map(|q| json!({"threshold": (q.threshold * 100.0).round() / 100.0, "precision": round3(q.precision()), "recall": round3(q.recall()), "true_negatives": q.true_negatives}))
        .collect();
    let mistakes: Vec<Value> = quality
        .mistakes
        .iter()
        .map(|m| json!({"id": m.id, "type": m.kind, if m.missed { "missed" } else { "false_positive" }: m.text}))
        .collect();

    // Throughput over the whole set, repeated for at least ~300 ms.
    let corpus: String = samples.iter().map(|s| s.text).collect::<Vec<_>>().join("\n");
    let mb = corpus.len() as f64 / 1e6;
    let measure = |f: &dyn Fn()| {
        let start = Instant::now();
        let mut rounds = 0u32;
        while start.elapsed().as_secs_f64() < 0.3 || rounds < 3 {
            f();
            rounds += 1;
        }
        (mb * rounds as f64 / start.elapsed().as_secs_f64() * 100.0).round() / 100.0
    };
    let pii_mb_s = measure(&|| {
        std::hint::black_box(scanner.scan(&corpus));
    });
    let injection_mb_s = measure(&|| {
        for sample in &samples {
            std::hint::black_box(detector.score(sample.text));
        }
    });

    println!(
        "{}",
        json!({
            "records": samples.len(),
            "corpus_bytes": corpus.len(),
            "compile_ms": {"pii": (pii_compile_ms * 100.0).round() / 100.0, "injection": (injection_compile_ms * 100.0).round() / 100.0},
            "throughput_mb_s": {"pii_scan": pii_mb_s, "injection_score": injection_mb_s},
            "pii": pii,
            "injection": injection,
            "errors": mistakes,
        })
    );
}
