//! CPU cost of one request's telemetry export: building its spans and metric points from the
//! trace and usage event, and encoding both OTLP/HTTP JSON bodies (what runs in the background
//! task after the response). Prints one JSON line; `scripts/bench` folds it into the results.
//!
//! `cargo run --release -p edge --example telemetry_bench [iterations]`

#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock and its arguments

use std::rc::Rc;
use std::time::Instant;

use edge::config::Telemetry;
use edge::telemetry::{build, AttrValue, Attempt, Phase, Trace};

fn main() {
    let iterations: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let settings = Rc::new(Telemetry {
        endpoint: "https://collector:4318".into(),
        headers: Vec::new(),
        timeout_ms: 5_000,
        service_name: "edge-ai-gateway".into(),
        traces: true,
        metrics: true,
        sample_ratio: 1.0,
        capture_content: false,
        consumers: Default::default(),
        models: Default::default(),
    });
    let attempt = |span_id, model: &str, status| Attempt {
        span_id,
        start_ms: 1_700_000_000_010,
        end_ms: 1_700_000_000_300,
        provider: "openai".into(),
        system: "openai".into(),
        model: model.into(),
        server: Some(("api.openai.com".into(), 443)),
        status: Some(status),
        error: (status != 200).then_some("upstream_error"),
    };
    let trace = Trace {
        settings,
        trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
        span_id: 1,
        parent: Some(2),
        tracestate: Some("congo=t61rcWkgMzE".into()),
        sampled: true,
        system: Some("openai".into()),
        request: vec![("gen_ai.request.temperature", AttrValue::Double(0.2)), ("gen_ai.request.max_tokens", AttrValue::Int(256))],
        response_id: Some("chatcmpl-abc123".into()),
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        finish_reasons: vec!["stop".into()],
        attempts: vec![attempt(3, "gpt-4o-mini", 503), attempt(4, "gpt-4o", 200)],
        phases: vec![
            Phase { span_id: 5, name: "gateway.guard.input", start_ms: 1_700_000_000_001, end_ms: 1_700_000_000_002, attrs: Vec::new() },
            Phase { span_id: 6, name: "gateway.cache.lookup", start_ms: 1_700_000_000_002, end_ms: 1_700_000_000_009, attrs: vec![("gateway.cache.status", "miss".into())] },
        ],
        first_chunk_ms: Some(120),
        capture_content: false,
        input_messages: None,
        output_messages: None,
    };
    let mut event = edge::testing::sample_usage_event();
    event.stream = true;
    event.duration_ms = 1_200;
    if let Some(usage) = event.usage.as_mut() {
        (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) = (812, 240, 512);
    }
    let mut bytes = 0;
    for _ in 0..1_000 {
        bytes = build(&trace, &event, 1_700_000_001_200, true).iter().map(|(_, b)| b.len()).sum::<usize>();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(build(std::hint::black_box(&trace), &event, 1_700_000_001_200, true));
    }
    let per_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("{{\"telemetry_export_us\": {per_us:.2}, \"telemetry_export_bytes\": {bytes}, \"iterations\": {iterations}}}");
}
