//! Runs the semantic cache's false-hit check over labelled pairs, for the evaluation in
//! `scripts/eval-semantic-cache`: reads JSON lines with `id`, `a` and `b` on stdin and writes
//! one line per pair, `{"id": .., "check": "pass" | "<mismatch>"}`, to stdout.
//!
//! `--time`: also report on stderr what extracting and comparing one pair costs (this CLI's own
//! clock; the gateway core never reads one).

use std::io::{BufRead, Write};

use policy::cache::semantic::QueryFeatures;

fn check(a: &str, b: &str) -> String {
    match QueryFeatures::extract(a).compare(&QueryFeatures::extract(b)) {
        Ok(()) => "pass".to_owned(),
        Err(mismatch) => format!("{mismatch:?}").to_lowercase(),
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut pairs = Vec::new();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        if line.trim().is_empty() {
            continue;
        }
        let pair: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let text = |k: &str| pair[k].as_str().unwrap_or_default().to_owned();
        pairs.push((text("a"), text("b")));
        writeln!(out, "{}", serde_json::json!({ "id": pair["id"], "check": check(&text("a"), &text("b")) })).expect("stdout");
    }
    if std::env::args().any(|a| a == "--time") {
        const ROUNDS: u32 = 200;
        #[allow(clippy::disallowed_methods)] // a measuring CLI, not the core
        let start = std::time::Instant::now();
        for _ in 0..ROUNDS {
            for (a, b) in &pairs {
                std::hint::black_box(check(a, b));
            }
        }
        let per_pair = start.elapsed() / (ROUNDS * pairs.len().max(1) as u32);
        eprintln!("extract both + compare: {per_pair:?} per pair (native, {} pairs x {ROUNDS})", pairs.len());
    }
}
