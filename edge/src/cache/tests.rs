use serde_json::{json, Value};

use super::*;
use crate::sse::SseDecoder;

const PARTS: KeyParts<'static> = KeyParts { scope: "consumer:web", model: "gpt", guard_profile: None };

fn request(value: Value) -> ChatRequest {
    serde_json::from_value(value).unwrap()
}

fn base() -> Value {
    json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10})
}

fn key_of(value: Value) -> CacheKey {
    chat_key(PARTS, &request(value))
}

#[test]
fn every_generation_parameter_and_unknown_field_changes_the_key() {
    let base_key = key_of(base());
    let changes = [
        ("messages", json!([{"role": "user", "content": "hi!"}])),
        ("temperature", json!(0.5)),
        ("top_p", json!(0.9)),
        ("max_tokens", json!(11)),
        ("max_completion_tokens", json!(10)),
        ("stop", json!(["\n"])),
        ("seed", json!(7)),
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(2)),
        ("presence_penalty", json!(0.1)),
        ("frequency_penalty", json!(0.1)),
        ("logit_bias", json!({"50256": -100})),
        ("tools", json!([{"type": "function", "function": {"name": "f", "parameters": {}}}])),
        ("tool_choice", json!("required")),
        ("parallel_tool_calls", json!(false)),
        ("response_format", json!({"type": "json_object"})),
        ("reasoning_effort", json!("low")),
        ("user", json!("u1")),
        ("some_future_field", json!(1)),
    ];
    let mut seen = std::collections::BTreeSet::from([base_key.clone()]);
    for (field, value) in changes {
        let mut changed = base();
        changed[field] = value;
        assert!(seen.insert(key_of(changed)), "{field} must change the key");
    }
    let mut system = base();
    system["messages"] = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    assert_ne!(key_of(system), base_key, "the system prompt");
}

#[test]
fn scope_model_and_guard_profile_change_the_key() {
    let request = request(base());
    let base_key = chat_key(PARTS, &request);
    assert_ne!(chat_key(KeyParts { scope: "consumer:app", ..PARTS }, &request), base_key);
    assert_ne!(chat_key(KeyParts { scope: "consumer:web/ns:drafts", ..PARTS }, &request), base_key);
    assert_ne!(chat_key(KeyParts { model: "gpt-mini", ..PARTS }, &request), base_key);
    assert_ne!(chat_key(KeyParts { guard_profile: Some("strict"), ..PARTS }, &request), base_key);
}

#[test]
fn key_order_number_formatting_and_framing_do_not_change_the_key() {
    let reordered: ChatRequest =
        serde_json::from_str(r#"{"max_tokens": 10.0, "temperature": 1e0, "messages": [{"content": "hi", "role": "user"}], "model": "alias"}"#).unwrap();
    let plain: ChatRequest = serde_json::from_str(r#"{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "temperature": 1, "max_tokens": 10}"#).unwrap();
    assert_eq!(chat_key(PARTS, &reordered), chat_key(PARTS, &plain));
    let mut streamed = base();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    assert_eq!(key_of(streamed), key_of(base()), "a streamed and a whole request share the entry");
    let mut parts = base();
    parts["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]);
    assert_eq!(key_of(parts), key_of(base()), "one text part is the string it carries");
    let mut two_parts = base();
    two_parts["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}]);
    assert_ne!(key_of(two_parts), key_of(base()));
}

#[test]
fn canonical_json_sorts_keys_and_writes_numbers_by_value() {
    let mut out = String::new();
    write_canonical(&serde_json::from_str::<Value>(r#"{"b": [1.50, 2e3, -0.0], "a": {"y": "\n", "x": null}}"#).unwrap(), &mut out);
    assert_eq!(out, r#"{"a":{"x":null,"y":"\n"},"b":[1.5,2000,0]}"#);
}

#[test]
fn embeddings_keys_cover_input_and_parameters() {
    let key = |value: Value| embeddings_key(PARTS, &serde_json::from_value(value).unwrap());
    let base = key(json!({"model": "e", "input": "hi"}));
    assert_eq!(base, key(json!({"input": "hi", "model": "other-alias"})));
    assert_ne!(base, key(json!({"model": "e", "input": "hi!"})));
    assert_ne!(base, key(json!({"model": "e", "input": "hi", "dimensions": 256})));
    assert_ne!(base, key(json!({"model": "e", "input": "hi", "encoding_format": "base64"})));
    assert_ne!(base, chat_key(PARTS, &request(json!({"model": "e", "messages": [], "input": "hi"}))));
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn directives_follow_http_cache_control_and_the_gateway_headers() {
    let d = CacheDirectives::from_headers(&headers(&[("Cache-Control", "no-cache, max-age=\"30\""), ("x-gateway-cache-namespace", "drafts")])).unwrap();
    assert_eq!(d, CacheDirectives { no_cache: true, no_store: false, max_age_s: Some(30), ttl_s: None, namespace: Some("drafts".into()) });
    let d = CacheDirectives::from_headers(&headers(&[("cache-control", "no-store, max-stale"), ("x-gateway-cache-ttl", "60")])).unwrap();
    assert!(d.no_store && !d.no_cache && d.ttl_s == Some(60));
    assert!(CacheDirectives::from_headers(&headers(&[("x-gateway-cache-ttl", "0")])).unwrap().no_store);
    for bad in [("cache-control", "max-age=soon"), ("x-gateway-cache-ttl", "-1"), ("x-gateway-cache-namespace", "../other"), ("x-gateway-cache-namespace", "")] {
        let error = CacheDirectives::from_headers(&headers(&[bad])).unwrap_err();
        assert_eq!(error.status(), 400, "{bad:?}");
    }
}

#[test]
fn entries_are_fresh_within_their_ttl_and_the_clients_max_age() {
    let entry = CachedAnswer::new(EntryKind::Chat, 1_000_000, 60, json!({}), None, "p", "m");
    assert_eq!(CachedAnswer::decode(&entry.encode()), Some(entry.clone()));
    assert!(entry.fresh(1_000_000 + 59_999, None));
    assert!(!entry.fresh(1_000_000 + 60_000, None));
    assert!(entry.fresh(1_000_000 + 10_000, Some(10)));
    assert!(!entry.fresh(1_000_000 + 10_001, Some(10)));
    assert_eq!(entry.age_s(1_000_000 + 10_999), 10);
    assert_eq!(CachedAnswer::decode(b"{\"v\": 99}"), None);
}

fn replayed_chunks(completion: &Value) -> Vec<Value> {
    let bytes = replay_stream(completion, "chatcmpl-1", 7);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let mut decoder = SseDecoder::default();
    decoder.push(&bytes).into_iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect()
}

#[test]
fn a_recorded_stream_replays_to_the_same_completion() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "logprobs": null, "finish_reason": "tool_calls"},
            {"index": 1, "message": {"role": "assistant", "content": null}, "logprobs": null, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    });
    let chunks = replayed_chunks(&completion);
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 5);
    let mut recorder = AnswerRecorder::default();
    for chunk in &chunks {
        recorder.push(chunk);
    }
    assert_eq!(recorder.finish().unwrap(), completion);
}

#[test]
fn unfinished_or_unreplayable_streams_are_not_recorded() {
    let mut unfinished = AnswerRecorder::default();
    unfinished.push(&json!({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}));
    assert_eq!(unfinished.finish(), None);
    let mut logprobs = AnswerRecorder::default();
    logprobs.push(&json!({"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": []}, "finish_reason": "stop"}]}));
    assert_eq!(logprobs.finish(), None);
    let mut audio = AnswerRecorder::default();
    audio.push(&json!({"choices": [{"index": 0, "delta": {"audio": {"data": "..."}}, "finish_reason": "stop"}]}));
    assert_eq!(audio.finish(), None);
    assert_eq!(AnswerRecorder::default().finish(), None);
}

fn context_of(value: Value) -> String {
    chat_context_hash(None, &request(value))
}

#[test]
fn the_context_hash_ignores_the_turns() {
    let base_hash = context_of(base());
    let mut other_turns = base();
    other_turns["messages"] = json!([
        {"role": "user", "content": "what is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "and 3+3?"}]}
    ]);
    assert_eq!(
        context_of(other_turns.clone()),
        base_hash,
        "user and assistant turns are the query, not the context"
    );
    assert_ne!(
        key_of(other_turns),
        key_of(base()),
        "while the exact key sees them"
    );
    let mut framing = base();
    framing["stream"] = json!(true);
    framing["model"] = json!("another-alias");
    assert_eq!(context_of(framing), base_hash, "framing is in neither");
}

#[test]
fn the_context_hash_changes_with_system_prompt_tools_parameters_and_profile() {
    let base_hash = context_of(base());
    let mut seen = std::collections::BTreeSet::from([base_hash.clone()]);
    let mut system = base();
    system["messages"] =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    assert!(seen.insert(context_of(system)), "the system prompt");
    let mut developer = base();
    developer["messages"] =
        json!([{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    assert!(seen.insert(context_of(developer)), "the developer prompt");
    for (field, value) in [
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ),
        ("tool_choice", json!("required")),
        ("response_format", json!({"type": "json_object"})),
        ("temperature", json!(0.2)),
        ("max_tokens", json!(11)),
        ("seed", json!(3)),
    ] {
        let mut changed = base();
        changed[field] = value;
        assert!(
            seen.insert(context_of(changed)),
            "{field} must change the context"
        );
    }
    assert!(
        seen.insert(chat_context_hash(Some("strict"), &request(base()))),
        "the guard profile"
    );
    assert_eq!(base_hash.len(), 64);
}

#[test]
fn turns_are_flattened_text_and_refused_when_not_comparable() {
    let turns = chat_turns(&request(json!({"model": "gpt", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]})))
    .unwrap();
    assert_eq!(
        turns,
        [
            ("system".to_string(), "be brief".to_string()),
            ("user".to_string(), "one\ntwo".to_string())
        ]
    );
    let image = json!({"model": "gpt", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    ]}]});
    assert_eq!(
        chat_turns(&request(image)),
        None,
        "an image is not in the query text"
    );
    let tool_result = json!({"model": "gpt", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "20C"}
    ]});
    assert_eq!(
        chat_turns(&request(tool_result)),
        None,
        "the last message is not the user's"
    );
}

#[test]
fn semantic_metadata_round_trips_and_refuses_anything_else() {
    let entry = SemanticEntry {
        query: "Is 17 prime?".into(),
        key: "ab".repeat(32),
    };
    let metadata = entry.encode();
    assert_eq!(
        serde_json::from_str::<Value>(&metadata).unwrap(),
        json!({"query": "Is 17 prime?", "key": "ab".repeat(32)})
    );
    assert_eq!(SemanticEntry::decode(&metadata), Some(entry));
    assert_eq!(
        SemanticEntry::decode(r#"{"query": "q", "key": "../other"}"#),
        None,
        "a key is 64 hex digits"
    );
    assert_eq!(SemanticEntry::decode(r#"{"q": "q"}"#), None);
    assert_eq!(SemanticEntry::decode("not json"), None);
}
