//! Quality and cost of the guardrail detectors on the labelled set in tests/guardrails/:
//! precision and recall per PII type and for prompt injection, scanning throughput, and the time
//! to compile the rule set (what a cold isolate pays). Prints one JSON object.
//!
//! Runs natively (`cargo run --release -p policy --example guard_eval -- tests/guardrails/eval.jsonl`)
//! and as wasm32-wasip1 under Node's WASI (scripts/bench does both), so the wasm figures come
//! from V8, the engine Workers run.
#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock and its arguments

use std::collections::BTreeMap;
use std::time::Instant;

use policy::guard::{InjectionDetector, PiiKind, PiiScanner};
use serde_json::{json, Value};

#[derive(Default)]
struct Counts {
    tp: u32,
    fp: u32,
    found_labels: u32,
    labels: u32,
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/guardrails/eval.jsonl".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let records: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("JSON line")).collect();

    let start = Instant::now();
    let scanner = PiiScanner::new();
    let pii_compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let injection = InjectionDetector::new();
    let injection_compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let mut counts: BTreeMap<&'static str, Counts> = BTreeMap::new();
    let thresholds = [0.5f32, 0.7];
    let mut injection_counts = [(0u32, 0u32, 0u32, 0u32); 2]; // tp, fp, fn, tn per threshold
    let mut misses: Vec<Value> = Vec::new();
    for record in &records {
        let text = record["text"].as_str().unwrap_or_default();
        let labels = record["labels"].as_array().cloned().unwrap_or_default();
        let findings = scanner.scan(text);
        // Label spans: every occurrence of each labelled value.
        let mut spans: Vec<(PiiKind, usize, usize)> = Vec::new();
        let mut is_injection = false;
        for label in &labels {
            let kind = label["type"].as_str().unwrap_or_default();
            if kind == "injection" {
                is_injection = true;
                continue;
            }
            let Some(kind) = PiiKind::from_name(kind) else { continue };
            let value = label["value"].as_str().unwrap_or_default();
            counts.entry(kind.name()).or_default().labels += 1;
            let occurrences: Vec<(usize, usize)> = text.match_indices(value).map(|(i, v)| (i, i + v.len())).collect();
            let found = findings.iter().any(|f| f.kind == kind && occurrences.iter().any(|(s, e)| f.start < *e && f.end > *s));
            if found {
                counts.entry(kind.name()).or_default().found_labels += 1;
            } else {
                misses.push(json!({"id": record["id"], "type": kind.name(), "missed": value}));
            }
            spans.extend(occurrences.into_iter().map(|(s, e)| (kind, s, e)));
        }
        for finding in &findings {
            let entry = counts.entry(finding.kind.name()).or_default();
            if spans.iter().any(|(k, s, e)| *k == finding.kind && finding.start < *e && finding.end > *s) {
                entry.tp += 1;
            } else {
                entry.fp += 1;
                misses.push(json!({"id": record["id"], "type": finding.kind.name(), "false_positive": &text[finding.start..finding.end]}));
            }
        }
        let score = injection.score(text).score;
        for (i, threshold) in thresholds.iter().enumerate() {
            let predicted = score >= *threshold;
            let c = &mut injection_counts[i];
            match (predicted, is_injection) {
                (true, true) => c.0 += 1,
                (true, false) => c.1 += 1,
                (false, true) => c.2 += 1,
                (false, false) => c.3 += 1,
            }
        }
    }

    let ratio = |a: u32, b: u32| if b == 0 { Value::Null } else { json!((a as f64 / b as f64 * 1000.0).round() / 1000.0) };
    let per_type: BTreeMap<&str, Value> = counts
        .iter()
        .map(|(kind, c)| {
            (*kind, json!({"labels": c.labels, "precision": ratio(c.tp, c.tp + c.fp), "recall": ratio(c.found_labels, c.labels), "false_positives": c.fp}))
        })
        .collect();
    let injection_quality: Vec<Value> = thresholds
        .iter()
        .zip(injection_counts)
        .map(|(t, (tp, fp, fn_, tn))| json!({"threshold": t, "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn_), "true_negatives": tn}))
        .collect();

    // Throughput over the whole set, repeated for at least ~300 ms.
    let corpus: String = records.iter().filter_map(|r| r["text"].as_str()).collect::<Vec<_>>().join("\n");
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
        for line in corpus.lines() {
            std::hint::black_box(injection.score(line));
        }
    });

    println!(
        "{}",
        json!({
            "records": records.len(),
            "corpus_bytes": corpus.len(),
            "compile_ms": {"pii": (pii_compile_ms * 100.0).round() / 100.0, "injection": (injection_compile_ms * 100.0).round() / 100.0},
            "throughput_mb_s": {"pii_scan": pii_mb_s, "injection_score": injection_mb_s},
            "pii": per_type,
            "injection": injection_quality,
            "errors": misses,
        })
    );
}
