//! CPU time of the core pipeline per request, natively, against the in-memory host (no network):
//! what the gateway itself costs on top of the provider. Run by `scripts/bench`; prints JSON.
#![allow(clippy::disallowed_methods)] // a benchmark reads the real clock

use std::time::Instant;

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::json;

const CONFIG: &str = r#"{
  "auth": { "mode": "api_keys", "consumers": [
    { "id": "bench", "key_sha256": "e2b0d4b4ff1a1e3eeea2b0b5e4a7f3a2ffd57e3a0cb1ad0a3bc6c1a6b6a6e7b1" }
  ]},
  "providers": {
    "mock": { "kind": "mock" },
    "up": { "kind": "openai", "base_url": "https://upstream.bench/v1", "api_key_secret": "UP_KEY" }
  },
  "models": {
    "mock": { "provider": "mock" },
    "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" }
  }
}"#;

fn request(body: &str, key: &str) -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {key}")),
        ],
        body: Body::Bytes(body.as_bytes().to_vec()),
        facts: RequestFacts::default(),
    }
}

fn upstream_stream(chunks: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..chunks)
        .map(|i| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}, "finish_reason": null}], "usage": null})
            )
            .into_bytes()
        })
        .collect();
    out.push(format!("data: {}\n\ndata: [DONE]\n\n", json!({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": chunks, "total_tokens": 20 + chunks}})).into_bytes());
    out
}

struct Case {
    name: &'static str,
    body: String,
}

fn main() {
    let key = "sk-bench";
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let config = CONFIG.replace("e2b0d4b4ff1a1e3eeea2b0b5e4a7f3a2ffd57e3a0cb1ad0a3bc6c1a6b6a6e7b1", &digest);
    let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x".repeat(800)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 200, "total_tokens": 220}})
    .to_string();
    let stream = upstream_stream(100);
    let host = MemoryHost::new().with_config(&config).with_secret("UP_KEY", "sk-up").with_upstream(move |req| {
        let is_stream = req.body.windows(13).any(|w| w == b"\"stream\":true");
        if is_stream {
            // `"user":"one_read"`: the same 100 chunks arrive in one upstream read.
            let chunks = if req.body.windows(10).any(|w| w == b"\"one_read\"") { vec![stream.concat()] } else { stream.clone() };
            Scripted::Respond(OutboundResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                body: Body::Stream(Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))),
            })
        } else {
            Scripted::Respond(OutboundResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Body::Bytes(completion.clone().into_bytes()),
            })
        }
    });

    let messages = r#"[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}]"#;
    let cases = [
        Case { name: "mock_chat", body: format!(r#"{{"model":"mock","messages":{messages}}}"#) },
        Case { name: "mock_chat_stream", body: format!(r#"{{"model":"mock","messages":{messages},"stream":true}}"#) },
        Case { name: "openai_passthrough", body: format!(r#"{{"model":"gpt","messages":{messages},"temperature":0.3}}"#) },
        Case { name: "openai_passthrough_stream_100_chunks", body: format!(r#"{{"model":"gpt","messages":{messages},"stream":true}}"#) },
        Case {
            name: "openai_passthrough_stream_100_chunks_one_read",
            body: format!(r#"{{"model":"gpt","messages":{messages},"stream":true,"user":"one_read"}}"#),
        },
        Case { name: "error_invalid_json", body: "{oops".to_string() },
    ];

    // Cold: a fresh gateway parses and validates the config on its first request.
    let start = Instant::now();
    let gateway = Gateway::new();
    let response = futures::executor::block_on(gateway.handle(request(&cases[0].body, key), &host));
    futures::executor::block_on(collect_body(response.body));
    let cold_us = start.elapsed().as_secs_f64() * 1e6;

    let iterations = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(3000usize);
    let mut results = Vec::new();
    for case in &cases {
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..iterations + 200 {
            let start = Instant::now();
            let response = futures::executor::block_on(gateway.handle(request(&case.body, key), &host));
            let bytes = futures::executor::block_on(collect_body(response.body));
            std::hint::black_box(bytes);
            if i >= 200 {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        results.push(json!({"case": case.name, "iterations": iterations, "mean_us": round(mean), "p50_us": round(pct(0.5)), "p99_us": round(pct(0.99))}));
    }
    println!("{}", json!({"cold_first_request_us": round(cold_us), "cases": results}));
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
