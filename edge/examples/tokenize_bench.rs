//! What prompt-token estimation costs per request: the first estimate (which, with the `tiktoken`
//! feature, builds the o200k_base encoder: the per-isolate cold start), then the per-request CPU
//! of an estimate for a short (~50 tokens), medium (~1k) and long (~10k) chat request, with the
//! exact encoder and with the character heuristic. Prints one JSON object.
//!
//! Runs natively (`cargo run --release -p edge --features tiktoken --example tokenize_bench`) and
//! as wasm32-wasip1 under Node's WASI (tests/bench/tokenizer-wasi.mjs, called by scripts/bench),
//! so the wasm figures come from V8, the engine Workers run.
//!
//! Times are process CPU time (`CLOCK_PROCESS_CPUTIME_ID` natively, WASI's `process_cputime_id`
//! in Node), so a busy machine preempting the benchmark does not inflate them; Workers bill CPU
//! time too. Per-request figures are taken over batches of calls (the clock read costs about a
//! microsecond), reported as the mean per call and the median and minimum of the batch means.
//!
//! Arguments: `full` (default) or `cold` (only the first estimate, for timing several fresh
//! instances), then a multiplier for the repetition counts (default 1).
#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock and its arguments

use std::hint::black_box;
use std::time::Instant;

use edge::openai::{parse_request, ChatRequest};
use edge::tokenize::{chat_input_tokens, encoder_loaded};
use serde_json::{json, Value};

/// Ordinary English words; the prose is pseudo-random over them so the encoder sees varied text.
const WORDS: &[&str] = &[
    "the", "gateway", "forwards", "each", "request", "to", "a", "provider", "and", "returns", "its", "answer", "while",
    "counting", "tokens", "for", "budgets", "customers", "often", "ask", "about", "invoices", "shipping", "delays",
    "refunds", "passwords", "accounts", "we", "should", "explain", "clearly", "why", "order", "was", "late", "because",
    "warehouse", "in", "Rotterdam", "closed", "during", "storm", "please", "summarise", "following", "report", "quarterly",
    "revenue", "grew", "percent", "compared", "with", "last", "year", "despite", "higher", "costs", "engineering", "team",
    "migrated", "database", "Postgres", "reduced", "latency", "by", "half", "users", "noticed", "faster", "pages", "can",
    "you", "write", "short", "email", "manager", "describing", "progress", "on", "project", "deadline", "next", "Friday",
    "function", "parses", "JSON", "body", "validates", "fields", "rejects", "invalid", "input", "with", "typed", "error",
    "what", "is", "difference", "between", "streaming", "buffered", "responses", "model", "temperature", "sampling",
];

/// Deterministic prose of `words` words (a small LCG, no `rand`), with sentence punctuation.
fn prose(seed: u64, words: usize) -> String {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut out = String::new();
    for i in 0..words {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let word = WORDS[(state >> 33) as usize % WORDS.len()];
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if i % 13 == 12 {
            out.push(if (state >> 20).is_multiple_of(4) { '?' } else { '.' });
        } else if i % 7 == 6 {
            out.push(',');
        }
    }
    out.push('.');
    out
}

/// A chat body: a system prompt, then `turns` user/assistant exchanges and a final user message,
/// each message `words` words long.
fn chat_body(seed: u64, turns: usize, words: usize) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful support assistant for an online shop."})];
    for t in 0..turns {
        messages.push(json!({"role": "user", "content": prose(seed * 100 + 2 * t as u64, words)}));
        messages.push(json!({"role": "assistant", "content": prose(seed * 100 + 2 * t as u64 + 1, words)}));
    }
    messages.push(json!({"role": "user", "content": prose(seed * 100 + 99, words)}));
    serde_json::to_vec(&json!({"model": "gpt-4o-mini", "messages": messages})).unwrap_or_default()
}

/// Process CPU time in nanoseconds, where the platform offers it.
mod cpu_clock {
    #[cfg(target_os = "wasi")]
    pub fn now_ns() -> Option<u64> {
        #[link(wasm_import_module = "wasi_snapshot_preview1")]
        extern "C" {
            #[link_name = "clock_time_get"]
            fn wasi_clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
        }
        const PROCESS_CPUTIME_ID: u32 = 2;
        let mut ns = 0u64;
        // SAFETY: the WASI import writes one u64 through a pointer to a live local.
        let errno = unsafe { wasi_clock_time_get(PROCESS_CPUTIME_ID, 1, &mut ns) };
        (errno == 0).then_some(ns)
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    pub fn now_ns() -> Option<u64> {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: libc's clock_gettime writes one timespec through a pointer to a live local.
        let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    #[cfg(not(any(target_os = "wasi", all(target_os = "linux", target_pointer_width = "64"))))]
    pub fn now_ns() -> Option<u64> {
        None
    }
}

/// A stopwatch over CPU time, or wall time where no CPU clock exists (reported in the output).
struct Stopwatch(Option<u64>, Instant);

impl Stopwatch {
    fn start() -> Self {
        Stopwatch(cpu_clock::now_ns(), Instant::now())
    }

    fn elapsed_us(&self) -> f64 {
        match (self.0, cpu_clock::now_ns()) {
            (Some(start), Some(now)) => now.saturating_sub(start) as f64 / 1e3,
            _ => self.1.elapsed().as_secs_f64() * 1e6,
        }
    }
}

const BATCHES: usize = 25;

/// CPU per call: `iterations` calls in `BATCHES` batches; the mean per call overall and the
/// median and minimum of the batch means, in microseconds.
fn time_calls(request: &ChatRequest, exact: bool, iterations: usize) -> Value {
    let per_batch = (iterations / BATCHES).max(1);
    let mut batch_us: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let watch = Stopwatch::start();
            for _ in 0..per_batch {
                black_box(chat_input_tokens(black_box(request), exact));
            }
            watch.elapsed_us() / per_batch as f64
        })
        .collect();
    let mean = batch_us.iter().sum::<f64>() / BATCHES as f64;
    batch_us.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "iterations": per_batch * BATCHES,
        "mean_us": round(mean),
        "p50_us": round(batch_us[BATCHES / 2]),
        "min_us": round(batch_us[0]),
    })
}

fn main() {
    let cold_only = std::env::args().nth(1).as_deref() == Some("cold");
    let scale: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    // (name, body, repetitions): the repetitions keep each case to a fraction of a second in wasm.
    let cases = [
        ("short", chat_body(1, 0, 30), 2000 * scale),
        ("medium", chat_body(2, 2, 150), 500 * scale),
        ("long", chat_body(3, 12, 330), 100 * scale),
    ];
    let requests: Vec<(&str, usize, ChatRequest, usize)> = cases
        .iter()
        .map(|(name, body, n)| {
            let request = parse_request(body).unwrap_or_else(|e| panic!("bench request {name}: {e:?}"));
            (*name, body.len(), request, *n)
        })
        .collect();

    // The first estimate in a fresh instance: with the feature it builds the encoder.
    let (short_request, long_request) = (&requests[0].2, &requests[2].2);
    let (watch, wall) = (Stopwatch::start(), Instant::now());
    let (first_tokens, first_estimator) = chat_input_tokens(short_request, true);
    let (first_us, first_wall_us) = (watch.elapsed_us(), wall.elapsed().as_secs_f64() * 1e6);
    let first = json!({
        "request": "short",
        "tokens": first_tokens,
        "estimator": first_estimator,
        "cpu_ms": (first_us / 10.0).round() / 100.0,
        "wall_ms": (first_wall_us / 10.0).round() / 100.0,
    });
    let clock = if cpu_clock::now_ns().is_some() { "process_cpu_time" } else { "wall_time" };
    if cold_only {
        println!("{}", json!({"feature_tiktoken": cfg!(feature = "tiktoken"), "clock": clock, "first_estimate": first}));
        return;
    }
    // Warm-up so the per-request figures do not include one-off costs (regex caches, page faults).
    black_box(chat_input_tokens(long_request, true));

    let cases: Vec<Value> = requests
        .iter()
        .map(|(name, bytes, request, n)| {
            let (exact_tokens, estimator) = chat_input_tokens(request, true);
            let (heuristic_tokens, _) = chat_input_tokens(request, false);
            json!({
                "case": name,
                "body_bytes": bytes,
                "messages": request.messages.len(),
                "tokens": exact_tokens,
                "estimator": estimator,
                "heuristic_tokens": heuristic_tokens,
                "exact": time_calls(request, true, *n),
                "heuristic": time_calls(request, false, *n * 4),
            })
        })
        .collect();

    let out = json!({
        "feature_tiktoken": cfg!(feature = "tiktoken"),
        "clock": clock,
        "encoder_loaded": encoder_loaded(),
        "first_estimate": first,
        "cases": cases,
    });
    println!("{out}");
}
