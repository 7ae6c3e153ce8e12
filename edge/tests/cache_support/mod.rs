//! What the response cache's pipeline tests share (`cache.rs`: the exact tier,
//! `semantic_cache.rs`: the semantic tier): three consumers — alice and bob of tenant acme,
//! carol of the residency-bound eu-corp — and the request, run and read helpers.
#![allow(dead_code)] // each test crate uses its own part

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Request, RequestFacts, Response};
use serde_json::{json, Value};

pub const ALICE: &str = "sk-client-alice";
pub const BOB: &str = "sk-client-bob";
pub const CAROL: &str = "sk-client-carol";

pub fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A configuration with the three consumers, their tenants, the provider `up` (secret `UP_KEY`)
/// and these `models`; `extra` sets or replaces top-level sections.
pub fn config_with(models: Value, extra: Value) -> String {
    let mut doc = json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "alice", "key_sha256": hex_sha256(ALICE), "tenant": "acme" },
            { "id": "bob", "key_sha256": hex_sha256(BOB), "tenant": "acme" },
            { "id": "carol", "key_sha256": hex_sha256(CAROL), "tenant": "eu-corp" }
        ]},
        "tenants": { "eu-corp": { "jurisdiction": "eu" } },
        "providers": { "up": { "kind": "openai", "base_url": "https://upstream.test/v1", "api_key_secret": "UP_KEY" } },
        "models": models,
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc.to_string()
}

pub fn post(path: &str, key: &str, body: Value, headers: &[(&str, &str)]) -> Request {
    let mut all = vec![("content-type".to_string(), "application/json".to_string()), ("authorization".to_string(), format!("Bearer {key}"))];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Request { method: "POST".into(), path: path.into(), headers: all, body: Body::Bytes(body.to_string().into_bytes()), facts: RequestFacts::default() }
}

/// Handle `request`, read the whole body, then run the background work (the cache fills).
pub fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> (Response, String) {
    host.block_on(async {
        let mut response = gateway.handle(request, host).await;
        let body = collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
        host.run_background().await;
        (response, String::from_utf8(body).unwrap())
    })
}

pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty()).map(|(_, v)| v.as_str())
}

/// The answer's text, from an OpenAI or an Anthropic body.
pub fn content(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["choices"][0]["message"]["content"].as_str().or(value["content"][0]["text"].as_str()).unwrap().to_string()
}

/// The data of each SSE event, `[DONE]` excluded.
pub fn sse_events(body: &str) -> Vec<(Option<String>, Value)> {
    let mut events = Vec::new();
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let name = block.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_string);
        let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        if data != "[DONE]" {
            events.push((name, serde_json::from_str(&data).unwrap_or_else(|_| panic!("not JSON: {data}"))));
        }
    }
    events
}

pub fn streamed_text(body: &str) -> String {
    sse_events(body).iter().filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect()
}
