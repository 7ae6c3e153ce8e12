//! Quality floor on the labelled sets in tests/guardrails/ (the team's `eval.jsonl` and the
//! independently written `independent/eval.jsonl`): precision and recall of at least 0.95 for
//! card numbers, IBANs, e-mail addresses and secrets (the target), and a floor for
//! prompt injection at the default threshold.

use policy::guard::eval::{evaluate, Sample};
use policy::guard::{InjectionDetector, PiiScanner};
use serde_json::Value;

/// (precision, recall) floors per type.
const FLOORS: [(&str, (f64, f64)); 4] = [("card", (0.95, 0.95)), ("iban", (0.95, 0.95)), ("email", (0.95, 0.95)), ("secret", (0.95, 0.95))];
const INJECTION_FLOOR: (f64, f64) = (0.9, 0.8);

#[test]
fn detectors_meet_the_quality_floor_on_the_team_set() {
    check(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/eval.jsonl"));
}

#[test]
fn detectors_meet_the_quality_floor_on_the_independent_set() {
    check(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/independent/eval.jsonl"));
}

fn check(path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let records: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let samples: Vec<Sample> = records
        .iter()
        .map(|r| Sample {
            id: r["id"].as_str().unwrap(),
            text: r["text"].as_str().unwrap(),
            labels: r["labels"].as_array().unwrap().iter().map(|l| (l["type"].as_str().unwrap(), l["value"].as_str())).collect(),
        })
        .collect();
    let quality = evaluate(&PiiScanner::new(), &InjectionDetector::new(), &samples, &[0.7]);
    let mut failures = Vec::new();
    for (kind, floor) in FLOORS {
        let q = &quality.kinds[kind];
        let (p, r) = (q.precision().unwrap_or(0.0), q.recall().unwrap_or(0.0));
        if p < floor.0 || r < floor.1 {
            failures.push(format!("{kind}: precision {p:.3} (floor {}), recall {r:.3} (floor {})", floor.0, floor.1));
        }
    }
    let injection = &quality.injection[0];
    let (p, r) = (injection.precision().unwrap_or(0.0), injection.recall().unwrap_or(0.0));
    if p < INJECTION_FLOOR.0 || r < INJECTION_FLOOR.1 {
        failures.push(format!("injection: precision {p:.3}, recall {r:.3}"));
    }
    let mistakes: Vec<String> = quality
        .mistakes
        .iter()
        .map(|m| format!("{} {} {}: {}", m.id, m.kind, if m.missed { "missed" } else { "false positive" }, m.text))
        .collect();
    assert!(failures.is_empty(), "{path}\n{}\nmistakes:\n{}", failures.join("\n"), mistakes.join("\n"));
}
