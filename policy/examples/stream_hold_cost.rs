//! What the stream guard's hold-back costs: CPU per streamed byte against guarding the same text
//! whole, for prose, code, a base64 image and a private key, in 1-, 3- and 32-byte deltas, and
//! the time to compile the hold matcher (paid once per isolate, on the first guarded stream).
//!
//! `cargo run --release -p policy --example stream_hold_cost`
#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock

use std::time::Instant;

use policy::guard::hold::HoldThreads;
use policy::guard::{Direction, GuardAction, GuardPolicy, GuardReport, Guards, PiiKind, Placeholders, StreamGuard, StreamHold};

fn main() {
    let guards = Guards::new();
    let policy = GuardPolicy {
        pii: PiiKind::ALL.iter().map(|k| (*k, if *k == PiiKind::Secret { GuardAction::Redact } else { GuardAction::Mask })).collect(),
        reversible: false,
        injection: None,
        deny: vec![],
        allow: vec![],
        rules: vec![],
        scan_output: true,
        stream: StreamHold::default(),
    };
    let start = Instant::now();
    let _ = guards.hold_matcher();
    println!("hold matcher compile: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let matcher = guards.hold_matcher().expect("built-in patterns compile as a DFA");
    println!("one stream's DFA cache, new: {} KiB", HoldThreads::new(matcher).memory_usage() / 1024);

    let prose = "The quarterly report shows revenue grew in every region, and the team expects more next year. ".repeat(40);
    let code = "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{v:?}\");\n}\n".repeat(40);
    let image = format!("![chart](data:image/png;base64,{})", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==".repeat(40));
    let key = format!("-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n", "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n".repeat(25));
    for (name, text) in [("prose", &prose), ("code", &code), ("base64 image", &image), ("private key", &key)] {
        let start = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            let mut placeholders = Placeholders::default();
            let mut report = GuardReport::default();
            let _ = guards.apply(&policy, text, Direction::Output, &mut placeholders, &mut report);
        }
        let whole = start.elapsed().as_secs_f64() / rounds as f64;
        let mut line = format!("{name:>13} ({} B): whole {:.2} ms", text.len(), whole * 1e3);
        for delta in [1, 3, 32] {
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(delta).chain([text.len()]).collect();
            let start = Instant::now();
            let mut guard = StreamGuard::new();
            let mut placeholders = Placeholders::default();
            let mut report = GuardReport::default();
            for w in bounds.windows(2) {
                let _ = guard.push(&guards, &policy, &text[w[0]..w[1]], &mut placeholders, &mut report);
            }
            let _ = guard.finish(&guards, &policy, &mut placeholders, &mut report);
            let streamed = start.elapsed().as_secs_f64();
            line += &format!(", {delta} B deltas {:.2} ms ({:.0} ns/B)", streamed * 1e3, streamed * 1e9 / text.len() as f64);
        }
        println!("{line}");
        let mut threads = HoldThreads::new(matcher);
        threads.advance(matcher, text, 0);
        println!("{:>13}  DFA cache after the text: {} KiB", "", threads.memory_usage() / 1024);
    }
}
