use super::eventstream::encode_message;
use super::*;
use crate::config::ModelKind;
use crate::openai::parse_request;
use crate::provider::decode::StreamDecoder;
use crate::provider::test_support::{assert_chunking_independent, deltas, drive};

const NOW_MS: u64 = 1_440_938_160_000;

fn config() -> BedrockConfig {
    BedrockConfig {
        region: "us-east-1".into(),
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com/".into(),
        access_key_id_secret: "AWS_KEY_ID".into(),
        secret_access_key_secret: "AWS_SECRET".into(),
        session_token_secret: None,
        timeout_ms: None,
    }
}

fn creds() -> AwsCredentials {
    AwsCredentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(), session_token: Some("SESSION".into()) }
}

fn route() -> ModelRoute {
    ModelRoute { name: "claude".into(), provider: "bedrock".into(), upstream_model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(), kind: ModelKind::Chat, guard: None }
}

fn ctx() -> ResponseContext {
    ResponseContext { id: "chatcmpl-gw".into(), created: 1700000000, model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into() }
}

fn request(body: Value) -> ChatRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

fn body_of(body: Value) -> Value {
    let out = chat_request(&config(), &route(), &request(body), &creds(), NOW_MS).unwrap();
    serde_json::from_slice(&out.body).unwrap()
}

fn param_of(body: Value) -> String {
    match chat_request(&config(), &route(), &request(body), &creds(), NOW_MS) {
        Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

fn header<'a>(out: &'a OutboundRequest, name: &str) -> Option<&'a str> {
    out.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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
                    {"type": "text", "text": "Weather where this was taken?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4A"}}
                ]},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "tooluse_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "4C"}]},
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
            "seed": 7,
            "frequency_penalty": 0.1,
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
            "max_completion_tokens": 512,
            "stream": true,
            "stream_options": {"include_usage": true}
        })),
        &creds(),
        NOW_MS,
    )
    .unwrap();
    assert_eq!(out.method, "POST");
    assert_eq!(out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
    assert_eq!(header(&out, "content-type"), Some("application/json"));
    assert_eq!(header(&out, "x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(header(&out, "x-amz-security-token"), Some("SESSION"));
    let auth = header(&out, "authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="));
    assert!(!auth.contains("wJalr"));
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    let expected = json!({
        "system": [{"text": "You are terse."}, {"text": "Use metric units."}, {"text": JSON_OBJECT_INSTRUCTION}],
        "messages": [
            {"role": "user", "content": [
                {"text": "Weather where this was taken?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0K"}}},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/4A"}}}
            ]},
            {"role": "assistant", "content": [
                {"text": "Checking both."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {"city": "Oslo"}}}
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "4C"}]}},
                {"text": "Thanks. Also compare."}
            ]}
        ],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END", "STOP"]},
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
            "toolChoice": {"any": {}}
        },
        "additionalModelRequestFields": {"top_k": 40},
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    });
    assert_eq!(body, expected);
}

#[test]
fn minimal_request_and_the_signature_is_deterministic() {
    let r = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    let mut no_token = creds();
    no_token.session_token = None;
    let a = chat_request(&config(), &route(), &r, &no_token, NOW_MS).unwrap();
    let b = chat_request(&config(), &route(), &r, &no_token, NOW_MS).unwrap();
    assert_eq!(a.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    assert_eq!(header(&a, "accept"), Some("application/json"));
    assert_eq!(header(&a, "authorization"), header(&b, "authorization"));
    assert!(header(&a, "x-amz-security-token").is_none());
    assert!(header(&a, "authorization").unwrap().contains("SignedHeaders=accept;content-type;host;x-amz-date,"));
    let body: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(body, json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}));
    // Inference profile ARNs keep their '/' inside the one path segment.
    let mut arn = route();
    arn.upstream_model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0".into();
    let out = chat_request(&config(), &arn, &r, &no_token, NOW_MS).unwrap();
    assert!(out.url.ends_with("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"));
}

#[test]
fn tool_choice_mapping_and_none() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let config_of = |c: Value| {
        body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": c}))["toolConfig"].clone()
    };
    assert_eq!(config_of(json!("auto"))["toolChoice"], json!({"auto": {}}));
    assert_eq!(config_of(json!("required"))["toolChoice"], json!({"any": {}}));
    assert_eq!(config_of(json!({"type": "function", "function": {"name": "f"}}))["toolChoice"], json!({"tool": {"name": "f"}}));
    assert_eq!(config_of(json!("auto"))["tools"][0]["toolSpec"]["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
    // "none" without tool history: no toolConfig at all.
    assert_eq!(config_of(json!("none")), Value::Null);
    // "none" with tool history: Bedrock needs the toolConfig, so the tools stay, unforced.
    let history = json!([
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "done"}
    ]);
    let body = body_of(json!({"model": "m", "messages": history, "tools": tools, "tool_choice": "none"}));
    assert_eq!(body["toolConfig"], json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}));
    // Tool history but no tools at all: a placeholder per tool name used.
    let body = body_of(json!({"model": "m", "messages": history}));
    assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "lookup");
    assert!(body["toolConfig"].get("toolChoice").is_none());
    // Tool result without a toolUse in view (e.g. trimmed history): still a toolConfig.
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "t9", "content": ""}]}));
    assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "tool");
    assert_eq!(body["messages"][0]["content"][0], json!({"toolResult": {"toolUseId": "t9", "content": []}}));
}

#[test]
fn json_schema_forces_the_reserved_tool_and_model_fields_merge() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}}));
    assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], JSON_TOOL);
    assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"], schema);
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"tool": {"name": JSON_TOOL}}));
    assert!(body.get("system").is_none());
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}));
    assert_eq!(body["toolConfig"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "additionalModelRequestFields": {"foo": 1}, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "performanceConfig": {"latency": "optimized"}}));
    assert_eq!(body["additionalModelRequestFields"], json!({"foo": 1, "thinking": {"type": "enabled", "budget_tokens": 1024}}));
    assert_eq!(body["performanceConfig"], json!({"latency": "optimized"}));
}

#[test]
fn consecutive_same_role_messages_merge_and_legacy_functions_work() {
    let body = body_of(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "ok"}
    ]}));
    assert_eq!(body["messages"], json!([
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_legacy_2", "name": "f", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_legacy_2", "content": [{"text": "done"}]}}]},
        {"role": "assistant", "content": [{"text": "ok"}]}
    ]));
}

#[test]
fn bad_input_is_an_invalid_request_naming_the_field() {
    let user = json!({"role": "user", "content": "x"});
    assert_eq!(param_of(json!({"model": "m", "n": 2, "messages": [user]})), "n");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]})), "messages");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}}]}]})),
        "messages[0].content[0].image_url.url"
    );
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
    assert_eq!(param_of(json!({"model": "m", "messages": [user], "additionalModelRequestFields": 3})), "additionalModelRequestFields");
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
        let _ = chat_request(&config(), &route(), &r, &creds(), NOW_MS);
    }
}

// ----- response -----

#[test]
fn response_with_text_reasoning_tools_and_cached_usage() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Two cities.", "signature": "sig"}}},
            {"reasoningContent": {"redactedContent": "eHg="}},
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather", "input": {"city": "Oslo"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 100, "outputTokens": 30, "totalTokens": 1180, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50},
        "metrics": {"latencyMs": 812}
    });
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["id"], "chatcmpl-gw");
    assert_eq!(t.body["object"], "chat.completion");
    assert_eq!(t.body["created"], 1700000000);
    assert_eq!(t.body["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
    let choice = &t.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["content"], "Let me check.");
    assert_eq!(choice["message"]["reasoning_content"], "Two cities.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "tooluse_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "tooluse_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
        ])
    );
    // Cache tokens are reported beside inputTokens: 100 fresh + 1000 read + 50 written.
    assert_eq!(t.usage, Some(Usage::from_parts(100, 1000, 50, 30, 0)));
    assert_eq!(t.body["usage"]["prompt_tokens"], 1150);
    assert_eq!(t.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    assert_eq!(t.body["usage"]["total_tokens"], 1180);
    assert_eq!(t.raw_usage, Some(body["usage"].clone()));
}

#[test]
fn finish_reasons_and_json_tool_answer() {
    for (theirs, ours) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("new_reason", "stop"),
    ] {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": theirs, "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["finish_reason"], ours, "{theirs}");
    }
    let body = json!({"output": {"message": {"content": [{"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"answer": "42"}}}]}}, "stopReason": "tool_use"});
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":\"42\"}"}));
    assert_eq!(t.body["choices"][0]["finish_reason"], "stop");
    assert!(t.usage.is_none());
    let body = json!({"output": {"message": {"content": [{"toolUse": {"toolUseId": "t", "name": "f"}}]}}, "stopReason": "tool_use"});
    let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(t.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn malformed_responses_are_upstream_errors_without_body_text() {
    for body in [&b"not json secret-text"[..], b"{}", br#"{"output": {"message": {"content": "secret-text"}}}"#, br#"{"output": {"message": {"content": [{"toolUse": {}}]}}}"#] {
        match chat_response(body, &ctx()) {
            Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                assert_eq!(provider, "bedrock");
                assert!(!detail.contains("secret-text"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn error_bodies() {
    assert_eq!(
        error_message(400, br#"{"message":"The provided model identifier is invalid."}"#),
        Some(ProviderErrorBody { message: "The provided model identifier is invalid.".into(), kind: None })
    );
    assert_eq!(error_message(403, br#"{"Message":"User is not authorized"}"#).unwrap().message, "User is not authorized");
    assert_eq!(error_message(500, b"<html>"), None);
    assert_eq!(error_message(500, br#"{"error":"x"}"#), None);
}

// ----- stream -----

fn event(kind: &str, payload: Value) -> Vec<u8> {
    encode_message(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.to_string().as_bytes())
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    encode_message(
        &[(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
        json!({ "message": message }).to_string().as_bytes(),
    )
}

/// A realistic stream: reasoning, text, two parallel tool calls whose input deltas
/// interleave, cached usage in the trailing metadata.
fn parallel_tools_stream() -> Vec<u8> {
    [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Two cities."}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "Checking ü "}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "both."}})),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("contentBlockStart", json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}})),
        event("contentBlockStart", json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{\"tz\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "\"CET\"}"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 2})),
        event("contentBlockStop", json!({"contentBlockIndex": 3})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event("metadata", json!({"usage": {"inputTokens": 100, "outputTokens": 42, "totalTokens": 1192, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50}, "metrics": {"latencyMs": 900}})),
    ]
    .concat()
}

fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, BedrockStream) {
    drive(BedrockStream::new(ctx()), chunks)
}

#[test]
fn stream_with_parallel_tool_calls() {
    let bytes = parallel_tools_stream();
    let (out, result, decoder) = run(&[&bytes]);
    assert_eq!(result, Ok(()));
    for chunk in &out {
        assert_eq!(chunk["id"], "chatcmpl-gw");
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(deltas(&out), vec![
        json!({"role": "assistant", "content": ""}),
        json!({"reasoning_content": "Two cities."}),
        json!({"content": "Checking ü "}),
        json!({"content": "both."}),
        json!({"tool_calls": [{"index": 0, "id": "tooluse_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 1, "id": "tooluse_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}),
        json!({}),
    ]);
    assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
    let last = out.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 1150);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    assert_eq!(last["usage"]["completion_tokens"], 42);
    assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
    assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 1000, 50, 42, 0)));
    assert_eq!(decoder.raw_usage().unwrap()["totalTokens"], 1192);
}

#[test]
fn stream_output_does_not_depend_on_chunk_boundaries() {
    let bytes = parallel_tools_stream();
    assert_chunking_independent(&bytes, 0..=bytes.len(), 0x2545_f491_4f6c_dd1d, 64, run);
}

#[test]
fn stream_exception_after_content_is_reported() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}})),
        exception("modelStreamErrorException", "secret-text"),
    ]
    .concat();
    let (out, result, _) = run(&[&bytes]);
    assert_eq!(result, Err(StreamFault::Provider { kind: "modelStreamErrorException".into() }));
    assert_eq!(deltas(&out).last().unwrap(), &json!({"content": "Hel"}));
    assert!(out.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "no finish before the error");
    let (_, result, _) = run(&[&exception("throttlingException", "slow down")]);
    assert_eq!(result, Err(StreamFault::Provider { kind: "throttlingException".into() }));
}

#[test]
fn truncated_corrupt_and_malformed_streams() {
    let bytes = parallel_tools_stream();
    let metadata_len = event("metadata", json!({"usage": {"inputTokens": 100, "outputTokens": 42, "totalTokens": 1192, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50}, "metrics": {"latencyMs": 900}})).len();
    let stop_len = event("messageStop", json!({"stopReason": "tool_use"})).len();
    // Cut before messageStop: truncated, no usage.
    let (out, result, _) = run(&[&bytes[..bytes.len() - metadata_len - stop_len]]);
    assert_eq!(result, Err(StreamFault::Truncated));
    assert!(out.iter().all(|c| c.get("usage").is_none()));
    // Cut inside the trailing metadata: the answer is complete, only usage is missing.
    let (out, result, _) = run(&[&bytes[..bytes.len() - 3]]);
    assert_eq!(result, Ok(()));
    assert!(out.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(run(&[b""]).1, Err(StreamFault::Truncated));
    // A flipped bit fails the CRC.
    let mut corrupt = bytes.clone();
    corrupt[30] ^= 0x20;
    assert!(matches!(run(&[&corrupt]).1, Err(StreamFault::Malformed { .. })));
    // A JSON error body where frames were expected.
    assert!(matches!(run(&[br#"{"message":"nope"}"#]).1, Err(StreamFault::Malformed { .. })));
    // A valid frame whose payload is not JSON.
    let bad = encode_message(&[(":event-type", "contentBlockDelta"), (":message-type", "event")], b"{oops");
    assert!(matches!(run(&[&bad]).1, Err(StreamFault::Malformed { .. })));
}

#[test]
fn stream_json_tool_becomes_text_and_stop_and_early_metadata() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"answer\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "42}"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        // Metadata before messageStop (not what Bedrock does, but handled): usage after finish.
        event("metadata", json!({"usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event("metadata", json!({"usage": {"inputTokens": 999, "outputTokens": 999}})),
        exception("internalServerException", "late"),
    ]
    .concat();
    let (out, result, decoder) = run(&[&bytes]);
    assert_eq!(result, Ok(()), "events after the end are ignored");
    assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": ""}), json!({"content": "{\"answer\":"}), json!({"content": "42}"}), json!({})]);
    assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(out.last().unwrap()["usage"]["total_tokens"], 14);
    assert_eq!(decoder.usage(), Some(Usage::from_parts(5, 0, 0, 9, 0)));
}

// ----- embeddings -----

fn embeddings(body: Value) -> EmbeddingsRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn titan_embeddings_request_and_response() {
    let mut titan = route();
    titan.upstream_model = "amazon.titan-embed-text-v2:0".into();
    let r = embeddings(json!({"model": "e", "input": ["hello"], "dimensions": 256, "normalize": true}));
    let out = embeddings_request(&config(), &titan, &r, &creds(), NOW_MS).unwrap();
    assert_eq!(out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(header(&out, "authorization").is_some());
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, json!({"inputText": "hello", "dimensions": 256, "normalize": true}));

    let response = json!({"embedding": [0.5, -1.0], "inputTextTokenCount": 3});
    let t = embeddings_response(&r, response.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(t.body["object"], "list");
    assert_eq!(t.body["data"], json!([{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}]));
    assert_eq!(t.body["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    assert_eq!(t.usage.unwrap().input_tokens, 3);
    let b64 = embeddings(json!({"model": "e", "input": "hello", "encoding_format": "base64"}));
    let t = embeddings_response(&b64, response.to_string().as_bytes(), &ctx()).unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t.body["data"][0]["embedding"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat());
    assert!(matches!(embeddings_response(&r, b"{\"embedding\": \"secret\"}", &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
}

#[test]
fn titan_embeddings_refuse_several_inputs_and_tokens() {
    let param = |body: Value| match embeddings_request(&config(), &route(), &embeddings(body), &creds(), NOW_MS) {
        Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(param(json!({"model": "e", "input": ["a", "b"]})), "input");
    assert_eq!(param(json!({"model": "e", "input": [1, 2, 3]})), "input");
    assert_eq!(param(json!({"model": "e", "input": "a", "normalize": "yes"})), "normalize");
}
