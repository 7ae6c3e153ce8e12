//! Runs the semantic cache's false-hit check over labelled pairs, for the evaluation in
//! `scripts/eval-semantic-cache`: reads JSON lines with `id`, `a` and `b` on stdin and writes
//! one line per pair, `{"id": .., "check": "pass" | "<mismatch>"}`, to stdout.

use std::io::{BufRead, Write};

use policy::cache::semantic::QueryFeatures;

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        if line.trim().is_empty() {
            continue;
        }
        let pair: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let text = |k: &str| pair[k].as_str().unwrap_or_default().to_owned();
        let check = match QueryFeatures::extract(&text("a")).compare(&QueryFeatures::extract(&text("b"))) {
            Ok(()) => "pass".to_owned(),
            Err(mismatch) => format!("{mismatch:?}").to_lowercase(),
        };
        writeln!(out, "{}", serde_json::json!({ "id": pair["id"], "check": check })).expect("stdout");
    }
}
