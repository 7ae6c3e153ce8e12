use super::*;
use crate::config::ModelKind;
use crate::openai::parse_request;
use crate::provider::decode::StreamDecoder;
use crate::provider::test_support::{assert_chunking_independent, deltas, drive};

fn config() -> AnthropicConfig {
    AnthropicConfig { base_url: "https://api.anthropic.com".into(), api_key_secret: "ANTHROPIC_KEY".into(), version: "2023-06-01".into(), timeout_ms: None }
}

fn route() -> ModelRoute {
    ModelRoute { name: "claude".into(), provider: "anthropic".into(), upstream_model: "claude-sonnet-4-5".into(), kind: ModelKind::Chat, guard: None }
}

fn ctx() -> ResponseContext {
    ResponseContext { id: "chatcmpl-gw".into(), created: 1700000000, model: "claude-sonnet-4-5".into() }
}

fn request(body: Value) -> ChatRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

fn body_of(body: Value) -> Value {
    let out = chat_request(&config(), &route(), &request(body), "sk-ant-secret").unwrap();
    serde_json::from_slice(&out.body).unwrap()
}

fn param_of(body: Value) -> String {
    match chat_request(&config(), &route(), &request(body), "k") {
        Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

// ----- request -----

#[test]
fn golden_rich_request() {
    let out = chat_request(
        &config(),
        &route(),
        &request(json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
                ]},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "4C"}]},
                {"role": "user", "content": "Thanks. Also compare."}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "response_format": {"type": "json_object"},
            "stop": ["END", "STOP"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "service_tier": "auto",
            "seed": 7,
            "frequency_penalty": 0.1,
            "user": "user-hash-1",
            "max_completion_tokens": 512,
            "stream": true,
            "stream_options": {"include_usage": true}
        })),
        "sk-ant-secret",
    )
    .unwrap();
    assert_eq!(out.method, "POST");
    assert_eq!(out.url, "https://api.anthropic.com/v1/messages");
    assert!(out.headers.contains(&("x-api-key".into(), "sk-ant-secret".into())));
    assert!(out.headers.contains(&("anthropic-version".into(), "2023-06-01".into())));
    assert!(out.headers.contains(&("content-type".into(), "application/json".into())));
    assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    let expected = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": format!("You are terse.\n\nUse metric units.\n\n{JSON_OBJECT_INSTRUCTION}"),
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where these were taken?"},
                {"type": "image", "source": {"type": "url", "url": "https://img.example/a.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "4C"},
                {"type": "text", "text": "Thanks. Also compare."}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "service_tier": "auto",
        "metadata": {"user_id": "user-hash-1"},
        "stream": true
    });
    assert_eq!(body, expected);
}

#[test]
fn default_max_tokens_and_no_stream_flag() {
    let body = body_of(json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));
    for key in ["stream", "system", "tools", "tool_choice", "metadata"] {
        assert!(body.get(key).is_none(), "{key}");
    }
    let body = body_of(json!({"model": "claude", "max_tokens": 99, "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(body["max_tokens"], 99);
}

#[test]
fn tool_choice_mapping() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let choice = |c: Value| {
        body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": c}))["tool_choice"].clone()
    };
    assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
    assert_eq!(choice(json!("none")), json!({"type": "none"}));
    assert_eq!(choice(json!("required")), json!({"type": "any"}));
    assert_eq!(choice(json!({"type": "function", "function": {"name": "f"}})), json!({"type": "tool", "name": "f"}));
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "parallel_tool_calls": false}));
    assert_eq!(body["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object", "properties": {}}));
    // tool_choice without tools is not sent (Anthropic has no such thing).
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
    assert!(body.get("tool_choice").is_none());
}

#[test]
fn json_schema_forces_the_reserved_tool() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}}));
    assert_eq!(body["tools"][0]["name"], JSON_TOOL);
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    assert!(body.get("system").is_none());
    // With client tools the model must call one of them or answer in JSON.
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}));
    assert_eq!(body["tools"].as_array().unwrap().len(), 2);
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
}

#[test]
fn consecutive_same_role_messages_merge_and_legacy_functions_work() {
    let body = body_of(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "ok"}
    ]}));
    assert_eq!(body["messages"], json!([
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_legacy_2", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_legacy_2", "content": "done"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    ]));
}

#[test]
fn bad_input_is_an_invalid_request_naming_the_field() {
    let user = json!({"role": "user", "content": "x"});
    assert_eq!(param_of(json!({"model": "m", "n": 2, "messages": [user]})), "n");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]})), "messages");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]})),
        "messages[0].content[0].image_url.url"
    );
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})), "messages[0].content[0].type");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": ""}]})), "messages[0].content");
    assert_eq!(param_of(json!({"model": "m", "messages": [user, {"role": "tool", "content": "r"}]})), "messages[1].tool_call_id");
    assert_eq!(param_of(json!({"model": "m", "messages": [user, {"role": "function", "name": "f", "content": "r"}]})), "messages[1].role");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [user, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]})),
        "messages[1].tool_calls[0].id"
    );
    assert_eq!(
        param_of(json!({"model": "m", "messages": [user, {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "[1"}}]}]})),
        "messages[1].tool_calls[0].arguments"
    );
    assert_eq!(
        param_of(json!({"model": "m", "messages": [user], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})),
        "tool_choice"
    );
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]})), "tools");
    let schema = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}});
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "response_format": schema, "thinking": {"type": "enabled", "budget_tokens": 1024}})), "response_format");
    let array_schema = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "array"}}});
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "response_format": array_schema})), "response_format.json_schema.schema.type");
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "temperature": "hot"})), "temperature");
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "stop": [1]})), "stop");
}

#[test]
fn odd_shapes_never_panic() {
    let odd = [
        json!({"role": "user", "content": {"weird": true}}),
        json!({"role": "user", "content": [null, 5]}),
        json!({"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}),
        json!({"role": "assistant", "tool_calls": "nope"}),
        json!({"role": "assistant", "tool_calls": [{"id": "t"}]}),
        json!({"role": "assistant", "tool_calls": [{"id": "t", "function": {"arguments": 5}}]}),
        json!({"role": "tool", "tool_call_id": 5, "content": "x"}),
        json!({"role": "tool", "tool_call_id": "t", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}),
    ];
    for message in odd {
        let r = request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, message]}));
        let _ = chat_request(&config(), &route(), &r, "k");
    }
}

// ----- response -----

#[test]
fn response_with_text_thinking_tools_and_cached_usage() {
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 30}
    });
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["id"], "msg_01");
    assert_eq!(t.body["object"], "chat.completion");
    assert_eq!(t.body["created"], 1700000000);
    assert_eq!(t.body["model"], "claude-sonnet-4-5-20250929");
    let choice = &t.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["content"], "Let me check.");
    assert_eq!(choice["message"]["reasoning_content"], "Two cities.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
        ])
    );
    // Cached tokens are not double counted: 100 fresh + 1000 read + 50 written.
    let usage = t.usage.unwrap();
    assert_eq!(usage, Usage::from_parts(100, 1000, 50, 30, 0));
    assert_eq!(t.body["usage"]["prompt_tokens"], 1150);
    assert_eq!(t.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    assert_eq!(t.body["usage"]["total_tokens"], 1180);
    assert_eq!(t.raw_usage, Some(body["usage"].clone()));
}

#[test]
fn finish_reasons_and_json_tool_answer() {
    for (theirs, ours) in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"), ("pause_turn", "stop"), ("new_reason", "stop")] {
        let body = json!({"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": theirs, "usage": {"input_tokens": 1, "output_tokens": 1}});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["finish_reason"], ours, "{theirs}");
    }
    let body = json!({"id": "m", "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"answer": "42"}}], "stop_reason": "tool_use"});
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":\"42\"}"}));
    assert_eq!(t.body["choices"][0]["finish_reason"], "stop");
    assert!(t.usage.is_none());
    // Only tool calls: content is null, as OpenAI sends it.
    let body = json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"});
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["id"], "chatcmpl-gw");
    assert_eq!(t.body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(t.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn malformed_responses_are_upstream_errors_without_body_text() {
    for body in [&b"not json secret-text"[..], b"{}", br#"{"content": "secret-text"}"#, br#"{"content": [{"type": "tool_use"}]}"#] {
        match chat_response(body, &ctx()) {
            Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                assert_eq!(provider, "anthropic");
                assert!(!detail.contains("secret-text"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn error_bodies() {
    let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}"#;
    assert_eq!(
        error_message(400, body),
        Some(ProviderErrorBody { message: "max_tokens: field required".into(), kind: Some("invalid_request_error".into()) })
    );
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    assert_eq!(error_message(529, body).unwrap().kind.as_deref(), Some("overloaded_error"));
    assert_eq!(error_message(500, b"<html>"), None);
    assert_eq!(error_message(500, br#"{"error":"x"}"#), None);
}

// ----- stream -----

fn sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let name = event["type"].as_str().unwrap();
        out.extend_from_slice(format!("event: {name}\ndata: {event}\n\n").as_bytes());
    }
    out
}

/// A realistic stream: thinking, text, two parallel tool calls whose argument deltas
/// interleave, cached usage.
fn parallel_tools_stream() -> Vec<u8> {
    sse(&[
        json!({"type": "message_start", "message": {"id": "msg_s1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two cities."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking ü "}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "both."}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":"}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "\"CET\"}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "content_block_stop", "index": 3}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
        json!({"type": "message_stop"}),
    ])
}

fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, AnthropicStream) {
    drive(AnthropicStream::new(ctx()), chunks)
}

#[test]
fn stream_with_parallel_tool_calls() {
    let bytes = parallel_tools_stream();
    let (out, result, decoder) = run(&[&bytes]);
    assert_eq!(result, Ok(()));
    for chunk in &out {
        assert_eq!(chunk["id"], "msg_s1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "claude-sonnet-4-5");
    }
    // Regression: the very first chunk carries the role.
    assert_eq!(deltas(&out), vec![
        json!({"role": "assistant", "content": ""}),
        json!({"reasoning_content": "Two cities."}),
        json!({"content": "Checking ü "}),
        json!({"content": "both."}),
        json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
        // Regression: interleaved argument deltas keep their own call's index.
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}),
        json!({}),
    ]);
    let finish = &out[out.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    // The usage chunk comes last, once, with cached tokens counted once.
    let last = out.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 1150);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    assert_eq!(last["usage"]["completion_tokens"], 42);
    assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
    assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 1000, 50, 42, 0)));
    assert_eq!(
        decoder.raw_usage(),
        Some(json!({"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 42}))
    );
}

#[test]
fn stream_output_does_not_depend_on_chunk_boundaries() {
    let bytes = parallel_tools_stream();
    assert_chunking_independent(&bytes, 1..bytes.len(), 0x2545_f491_4f6c_dd1d, 48, run);
}

#[test]
fn stream_error_after_content_is_reported() {
    let mut bytes = sse(&[
        json!({"type": "message_start", "message": {"id": "msg_e", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
    ]);
    bytes.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    let (out, result, _) = run(&[&bytes]);
    assert_eq!(result, Err(StreamFault::Provider { kind: "overloaded_error".into() }));
    assert_eq!(deltas(&out).last().unwrap(), &json!({"content": "Hel"}));
    assert!(out.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "no finish before the error");
}

#[test]
fn truncated_and_malformed_streams() {
    let bytes = parallel_tools_stream();
    let cut = bytes.len() - "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".len();
    let (out, result, _) = run(&[&bytes[..cut]]);
    assert_eq!(result, Err(StreamFault::Truncated));
    assert!(out.iter().all(|c| c.get("usage").is_none()));
    let (_, result, _) = run(&[b""]);
    assert_eq!(result, Err(StreamFault::Truncated));
    let (_, result, _) = run(&[b"data: {not json\n\n"]);
    assert!(matches!(result, Err(StreamFault::Malformed { .. })));
}

#[test]
fn stream_json_tool_becomes_text_and_stop() {
    let bytes = sse(&[
        json!({"type": "message_start", "message": {"id": "msg_j", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL, "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"answer\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "42}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]);
    let (out, result, _) = run(&[&bytes]);
    assert_eq!(result, Ok(()));
    assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": ""}), json!({"content": "{\"answer\":"}), json!({"content": "42}"}), json!({})]);
    assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn stream_finish_mapping_and_late_usage_fields() {
    let bytes = sse(&[
        json!({"type": "message_start", "message": {"id": "msg_m", "model": "c", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}),
        json!({"type": "some_future_event", "x": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 20, "cache_creation_input_tokens": null, "output_tokens": 7}}),
        json!({"type": "message_stop"}),
        json!({"type": "error", "error": {"type": "late"}}),
    ]);
    let (out, result, decoder) = run(&[&bytes]);
    assert_eq!(result, Ok(()), "events after message_stop are ignored");
    assert_eq!(deltas(&out)[1], json!({"content": "Hi"}));
    assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(decoder.usage(), Some(Usage::from_parts(10, 20, 0, 7, 0)));
}
