//! The Anthropic-compatible `/v1/messages` endpoint through the whole pipeline: Anthropic
//! requests in, any provider behind, Anthropic messages, events and errors out.

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Request, RequestFacts};
use serde_json::{json, Value};

const KEY: &str = "sk-client-web";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn host() -> MemoryHost {
    let config = json!({
        "limits": { "config_refresh_ms": 0 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(KEY) }] },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "claude-via-mock": { "provider": "mock" } }
    });
    MemoryHost::new().with_config(&config.to_string())
}

fn messages(body: Value, headers: &[(&str, &str)]) -> Request {
    let mut all = vec![("content-type".to_string(), "application/json".to_string())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Request { method: "POST".into(), path: "/v1/messages".into(), headers: all, body: Body::Bytes(body.to_string().into_bytes()), facts: RequestFacts::default() }
}

fn run(host: &MemoryHost, request: Request) -> (u16, Vec<(String, String)>, String) {
    futures::executor::block_on(async {
        let response = Gateway::new().handle(request, host).await;
        let body = collect_body(response.body).await;
        (response.status, response.headers, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn a_whole_message_in_anthropic_shape() {
    let (status, _, body) = run(
        &host(),
        messages(
            json!({ "model": "claude-via-mock", "max_tokens": 64, "system": "Be brief.", "messages": [{ "role": "user", "content": "Hello Claude" }] }),
            &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        ),
    );
    assert_eq!(status, 200, "{body}");
    let message: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-via-mock");
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["content"][0]["type"], "text");
    assert!(message["content"][0]["text"].as_str().unwrap().contains("Hello Claude"));
    assert!(["end_turn", "max_tokens"].contains(&message["stop_reason"].as_str().unwrap()));
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(message["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn a_stream_of_anthropic_events_in_the_documented_order() {
    let (status, headers, body) = run(
        &host(),
        messages(
            json!({ "model": "claude-via-mock", "max_tokens": 64, "stream": true, "messages": [{ "role": "user", "content": "Stream please" }] }),
            &[("authorization", &format!("Bearer {KEY}"))],
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert!(events.contains(&"content_block_start") && events.contains(&"content_block_delta") && events.contains(&"message_delta"));
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(text.contains("Stream please"), "{text}");
    assert!(!body.contains("[DONE]"), "no OpenAI terminator in an Anthropic stream");
    assert!(!body.contains("chat.completion"), "no OpenAI chunk leaks through");
}

#[test]
fn errors_use_anthropics_format() {
    let host = host();
    let (status, _, body) = run(&host, messages(json!({ "model": "claude-via-mock", "messages": [{ "role": "user", "content": "x" }] }), &[("x-api-key", KEY)]));
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("max_tokens"));

    let (status, _, body) = run(&host, messages(json!({ "model": "claude-via-mock", "max_tokens": 5, "messages": [] }), &[("x-api-key", "wrong")]));
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    assert!(!body.contains("wrong"), "the presented key is never echoed");

    let (status, _, body) = run(&host, messages(json!({ "model": "nope", "max_tokens": 5, "messages": [{ "role": "user", "content": "x" }] }), &[("x-api-key", KEY)]));
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["type"], "not_found_error");
}
