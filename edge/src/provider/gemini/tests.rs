use super::*;
use crate::config::ModelKind;
use crate::openai::{parse_request, Usage};
use crate::provider::call::{ProviderErrorBody, ResponseContext};
use crate::provider::decode::{StreamDecoder, StreamFault};
use crate::provider::test_support::{assert_chunking_independent, deltas, drive};

fn generative() -> GeminiConfig {
    GeminiConfig {
        api: GeminiApi::GenerativeLanguage { base_url: "https://generativelanguage.googleapis.com/".into(), api_key_secret: "GEMINI_KEY".into() },
        timeout_ms: None,
    }
}

fn vertex() -> GeminiConfig {
    GeminiConfig {
        api: GeminiApi::Vertex {
            base_url: "https://europe-west4-aiplatform.googleapis.com".into(),
            project: "my-project".into(),
            location: "europe-west4".into(),
            access_token_secret: "VERTEX_TOKEN".into(),
        },
        timeout_ms: None,
    }
}

fn route() -> ModelRoute {
    ModelRoute { name: "gem".into(), provider: "google".into(), upstream_model: "gemini-2.5-flash".into(), kind: ModelKind::Chat, guard: None }
}

fn embed_route() -> ModelRoute {
    ModelRoute { name: "emb".into(), provider: "google".into(), upstream_model: "gemini-embedding-001".into(), kind: ModelKind::Embeddings, guard: None }
}

fn ctx() -> ResponseContext {
    ResponseContext { id: "chatcmpl-gw1".into(), created: 1700000000, model: "gemini-2.5-flash".into() }
}

fn request(body: Value) -> ChatRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

fn body_of(body: Value) -> Value {
    let out = chat_request(&generative(), &route(), &request(body), "AIza-secret").unwrap();
    serde_json::from_slice(&out.body).unwrap()
}

fn param_of(body: Value) -> String {
    match chat_request(&generative(), &route(), &request(body), "k") {
        Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

// ----- request -----

#[test]
fn golden_rich_request() {
    let body = body_of(json!({
        "model": "gem",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather and time here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "gs://bucket/photo.JPG"}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                 "extra_content": {"google": {"thought_signature": "c2ln"}}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
            {"role": "user", "content": "Thanks. JSON please."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "strict": true, "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
                "properties": {"city": {"type": "string", "format": "uri"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]}},
                "required": ["city", "ghost"]}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
        "stop": ["END"],
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 300, "seed": 7,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "n": 2,
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}],
        "logit_bias": {"1": 2}, "user": "u1"
    }));
    assert_eq!(body, json!({
        "contents": [
            {"role": "user", "parts": [
                {"text": "Weather and time here?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/photo.JPG"}}
            ]},
            {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"text": "Thanks. JSON please."}
            ]}
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use tools."}]},
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather for a city", "parameters": {
                "type": "OBJECT",
                "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "nullable": true, "enum": ["c", "f"]}},
                "required": ["city"]}},
            {"name": "get_time"}
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {
            "temperature": 0.2, "topP": 0.9, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
            "topK": 40, "seed": 7, "maxOutputTokens": 300, "stopSequences": ["END"], "candidateCount": 2,
            "responseMimeType": "application/json"
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}]
    }));
}

#[test]
fn urls_and_auth_headers() {
    let plain = request(json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}]}));
    let streamed = request(json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}], "stream": true}));
    let out = chat_request(&generative(), &route(), &plain, "AIza-secret").unwrap();
    assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
    assert!(out.headers.contains(&("x-goog-api-key".into(), "AIza-secret".into())));
    assert!(!out.url.contains("AIza"), "the key never goes into the URL");
    let out = chat_request(&generative(), &route(), &streamed, "AIza-secret").unwrap();
    assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
    let out = chat_request(&vertex(), &route(), &streamed, "ya29.token").unwrap();
    assert_eq!(
        out.url,
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(out.headers.contains(&("authorization".into(), "Bearer ya29.token".into())));
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
    let tuned = ModelRoute { upstream_model: "tunedModels/my-model".into(), ..route() };
    let out = chat_request(&generative(), &tuned, &plain, "k").unwrap();
    assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model:generateContent");
}

#[test]
fn tool_choice_mapping() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]);
    let config = |choice: Value| body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}))["toolConfig"].clone();
    assert_eq!(config(json!("auto")), json!({"functionCallingConfig": {"mode": "AUTO"}}));
    assert_eq!(config(json!("none")), json!({"functionCallingConfig": {"mode": "NONE"}}));
    assert_eq!(config(json!({"type": "function", "function": {"name": "f"}})), json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}));
    let no_tools = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
    assert!(no_tools.get("toolConfig").is_none() && no_tools.get("tools").is_none());
}

#[test]
fn json_schema_response_format_is_rewritten() {
    let body = body_of(json!({
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": {
            "type": "object", "additionalProperties": false,
            "$defs": {"Pet": {"type": "object", "properties": {"kind": {"const": "dog"}}}},
            "properties": {
                "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}], "description": "years"},
                "born": {"type": "string", "format": "date-time"},
                "pet": {"$ref": "#/$defs/Pet", "description": "their pet"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "id": {"oneOf": [{"type": "string"}, {"type": "number", "format": "double"}]},
                "size": {"type": "integer", "enum": [1, 2]}
            },
            "required": ["age"]
        }}}
    }));
    assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
    assert_eq!(body["generationConfig"]["responseSchema"], json!({
        "type": "OBJECT",
        "properties": {
            "age": {"type": "INTEGER", "minimum": 0, "description": "years", "nullable": true},
            "born": {"type": "STRING", "format": "date-time"},
            "pet": {"type": "OBJECT", "properties": {"kind": {"enum": ["dog"]}}, "description": "their pet"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
            "id": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER", "format": "double"}]},
            "size": {"type": "INTEGER"}
        },
        "required": ["age"]
    }));
}

#[test]
fn recursive_refs_terminate() {
    let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
    let out = schema(&tree);
    assert_eq!(out["type"], "OBJECT");
    assert_eq!(out["properties"]["child"]["properties"]["child"]["type"], "OBJECT");
    assert!(out.to_string().len() < 100_000);
    // Two self-references per level: bounded by the node budget, not 2^depth.
    let binary = json!({"type": "object", "properties": {"left": {"$ref": "#"}, "right": {"$ref": "#"}}});
    let out = schema(&binary);
    assert_eq!(out["properties"]["right"]["type"], "OBJECT");
    assert!(out.to_string().len() < 200_000);
}

#[test]
fn legacy_functions_and_same_role_merging() {
    let body = body_of(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": ""},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": null, "function_call": {"name": "lookup", "arguments": "{\"q\":1}"}},
            {"role": "function", "name": "lookup", "content": "[1,2]"},
            {"role": "assistant", "content": ""}
        ],
        "functions": [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}],
        "function_call": {"name": "lookup"}
    }));
    assert_eq!(body["contents"], json!([
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"output": [1, 2]}}}]}
    ]));
    assert_eq!(body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"], json!(["lookup"]));
}

#[test]
fn a_reused_tool_call_id_names_the_nearest_call() {
    let body = body_of(json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "first", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "1"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "second", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "2"}
    ]}));
    assert_eq!(body["contents"][4]["parts"][0]["functionResponse"]["name"], "second");
    assert_eq!(body["contents"][2]["parts"][0]["functionResponse"]["name"], "first");
}

#[test]
fn bad_input_is_an_invalid_request_naming_the_field() {
    let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    assert_eq!(param_of(user(json!([{"type": "image_url", "image_url": {"url": "https://x.example/cat.png"}}]))), "messages[0].content[0].image_url.url");
    assert_eq!(param_of(user(json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "http://x/c.png"}}]))), "messages[0].content[1].image_url.url");
    assert_eq!(param_of(user(json!([{"type": "input_audio"}]))), "messages[0].content[0].type");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]})), "messages");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]})), "messages[1].tool_call_id");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "1"}]})), "messages[1].tool_call_id");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1.5})), "seed");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})), "tool_choice");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "g"}},
            "tools": [{"type": "function", "function": {"name": "f"}}]})),
        "tool_choice"
    );
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"})), "temperature");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "", "arguments": "{}"}}]}]})),
        "messages[0].tool_calls[0].function.name"
    );
    // The error message never carries the credential.
    let err = chat_request(&generative(), &route(), &request(user(json!([{"type": "image_url", "image_url": {"url": "https://x/c.png"}}]))), "AIza-secret").unwrap_err();
    assert!(!format!("{err:?}").contains("AIza"));
}

#[test]
fn odd_shapes_never_panic() {
    for messages in [
        json!([{"role": "user", "content": 5}]),
        json!([{"role": "user", "content": [5]}]),
        json!([{"role": "assistant", "tool_calls": "x"}, {"role": "user", "content": "x"}]),
        json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}]),
        json!([{"role": "tool", "tool_call_id": 5, "content": null}]),
        json!([{"role": "function", "content": "x"}]),
    ] {
        let _ = chat_request(&generative(), &route(), &request(json!({"model": "m", "messages": messages})), "k");
    }
    for weird in [json!(true), json!([]), json!({"type": 5, "properties": 3, "required": "x", "items": [], "anyOf": {}}), json!({"$ref": "#/nope"})] {
        let _ = schema(&weird);
    }
}

// ----- response -----

#[test]
fn response_with_text_thoughts_tools_and_cached_usage() {
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true},
                {"text": "Checking "},
                {"text": "both."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {}}},
                {"functionCall": {"id": "own-id", "name": "get_date"}}
            ]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 1000, "candidatesTokenCount": 30,
            "thoughtsTokenCount": 12, "totalTokenCount": 1242},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc"
    });
    let out = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(out.body["id"], "chatcmpl-gw1");
    assert_eq!(out.body["object"], "chat.completion");
    assert_eq!(out.body["model"], "gemini-2.5-flash-001");
    let choice = &out.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking both.");
    assert_eq!(choice["message"]["reasoning_content"], "Let me think.");
    assert_eq!(choice["message"]["tool_calls"], json!([
        {"id": "call_gw1_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
         "extra_content": {"google": {"thought_signature": "c2ln"}}},
        {"id": "call_gw1_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        {"id": "own-id", "type": "function", "function": {"name": "get_date", "arguments": "{}"}}
    ]));
    let usage = out.usage.unwrap();
    assert_eq!(usage, Usage::from_parts(200, 1000, 0, 42, 12));
    assert_eq!(usage.input_tokens, 1200, "cached tokens are not counted twice");
    assert_eq!(usage.total_tokens, 1242);
    assert_eq!(out.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    assert_eq!(out.body["usage"]["completion_tokens_details"]["reasoning_tokens"], 12);
    assert_eq!(out.raw_usage, Some(body["usageMetadata"].clone()));
}

#[test]
fn finish_reasons_blocks_and_candidates() {
    let finish = |reason: &str| {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]});
        chat_response(body.to_string().as_bytes(), &ctx()).unwrap().body["choices"][0]["finish_reason"].clone()
    };
    assert_eq!(finish("STOP"), "stop");
    assert_eq!(finish("MAX_TOKENS"), "length");
    for filtered in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"] {
        assert_eq!(finish(filtered), "content_filter");
    }
    assert_eq!(finish("OTHER"), "stop");
    // A blocked prompt: no candidates at all.
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}});
    let out = chat_response(blocked.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(out.body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out.body["choices"][0]["message"]["content"], "");
    assert_eq!(out.usage.unwrap().input_tokens, 8);
    // A candidate stopped for safety carries no content.
    let out = chat_response(br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#, &ctx()).unwrap();
    assert_eq!(out.body["choices"][0]["message"]["content"], "");
    // Several candidates: index from the candidate (a zero index is omitted by proto3 JSON).
    let two = json!({"candidates": [
        {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    ]});
    let out = chat_response(two.to_string().as_bytes(), &ctx()).unwrap();
    assert_eq!(out.body["choices"][1]["index"], 1);
    assert_eq!(out.body["choices"][1]["message"]["content"], "b");
    assert_eq!(out.body["choices"][1]["finish_reason"], "length");
    assert!(out.usage.is_none());
}

#[test]
fn malformed_responses_are_upstream_errors_without_body_text() {
    for body in [&b"not json SECRET"[..], b"[1,2]", b"{}", br#"{"candidates": "SECRET"}"#, br#"{"candidates": [{"index": 4000000000}]}"#] {
        match chat_response(body, &ctx()) {
            Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                assert_eq!(provider, "gemini");
                assert!(!detail.contains("SECRET"));
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
    }
}

#[test]
fn error_bodies() {
    let body = br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
    assert_eq!(error_message(400, body), Some(ProviderErrorBody { message: "API key not valid.".into(), kind: Some("INVALID_ARGUMENT".into()) }));
    let wrapped = br#"[{"error":{"code":429,"message":"Resource exhausted.","status":"RESOURCE_EXHAUSTED"}}]"#;
    assert_eq!(error_message(429, wrapped).unwrap().kind.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(error_message(500, b"<html>"), None);
    assert_eq!(error_message(500, b"[]"), None);
    assert_eq!(error_message(500, br#"{"error":{"code":500}}"#), None);
}

// ----- stream -----

fn sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(format!("data: {event}\r\n\r\n").as_bytes());
    }
    out
}

/// A realistic stream: thoughts, text in pieces, two parallel calls in one event and a
/// third in a later one, cumulative usage repeated on every event.
fn parallel_tools_stream() -> Vec<u8> {
    let usage = |out: u64| json!({"promptTokenCount": 500, "cachedContentTokenCount": 400, "candidatesTokenCount": out, "thoughtsTokenCount": 7, "totalTokenCount": 507 + out});
    sse(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Two cities.", "thought": true}]}}], "usageMetadata": usage(0), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking ü "}]}}], "usageMetadata": usage(3), "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "both."}]}}], "usageMetadata": usage(5), "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
        ]}}], "usageMetadata": usage(20), "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_date", "args": {}}}]}, "finishReason": "STOP"}],
            "usageMetadata": usage(30), "modelVersion": "gemini-2.5-flash"}),
    ])
}

fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, GeminiStream) {
    drive(GeminiStream::new(ctx()), chunks)
}

#[test]
fn stream_with_parallel_tool_calls() {
    let bytes = parallel_tools_stream();
    let (out, result, decoder) = run(&[&bytes]);
    assert_eq!(result, Ok(()));
    for chunk in &out {
        assert_eq!(chunk["id"], "chatcmpl-gw1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gemini-2.5-flash");
    }
    assert_eq!(deltas(&out), vec![
        json!({"role": "assistant", "reasoning_content": "Two cities."}),
        json!({"content": "Checking ü "}),
        json!({"content": "both."}),
        json!({"tool_calls": [{"index": 0, "id": "call_gw1_0", "type": "function", "function": {"name": "get_weather", "arguments": ""},
            "extra_content": {"google": {"thought_signature": "c2ln"}}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]}),
        json!({"tool_calls": [{"index": 1, "id": "call_gw1_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":\"CET\"}"}}]}),
        json!({"tool_calls": [{"index": 2, "id": "call_gw1_2", "type": "function", "function": {"name": "get_date", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]}),
        json!({}),
    ]);
    assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
    let last = out.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 500);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
    assert_eq!(last["usage"]["completion_tokens"], 37);
    assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
    assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 400, 0, 37, 7)));
    assert_eq!(decoder.raw_usage().unwrap()["candidatesTokenCount"], 30, "the last usage wins");
}

#[test]
fn stream_output_does_not_depend_on_chunk_boundaries() {
    let bytes = parallel_tools_stream();
    assert_chunking_independent(&bytes, 1..bytes.len(), 0x9e37_79b9_7f4a_7c15, 48, run);
}

#[test]
fn stream_error_event_is_a_provider_fault() {
    let bytes = sse(&[
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
        json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
    ]);
    let (out, result, _) = run(&[&bytes]);
    assert_eq!(result, Err(StreamFault::Provider { kind: "UNAVAILABLE".into() }));
    assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": "Hel"})]);
}

#[test]
fn truncated_and_malformed_streams() {
    let bytes = sse(&[json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})]);
    assert_eq!(run(&[&bytes]).1, Err(StreamFault::Truncated));
    assert_eq!(run(&[b""]).1, Err(StreamFault::Truncated));
    // The finishing event cut off before its blank line.
    let whole = parallel_tools_stream();
    assert_eq!(run(&[&whole[..whole.len() - 4]]).1, Err(StreamFault::Truncated));
    assert!(matches!(run(&[b"data: {oops\n\n"]).1, Err(StreamFault::Malformed { .. })));
    assert!(matches!(run(&[b"data: 5\n\n"]).1, Err(StreamFault::Malformed { .. })));
    assert!(matches!(run(&[b"data: {\"candidates\":[{\"index\":4000000000}]}\n\n"]).1, Err(StreamFault::Malformed { .. })));
}

#[test]
fn stream_blocked_prompt_and_several_candidates() {
    let blocked = sse(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})]);
    let (out, result, _) = run(&[&blocked]);
    assert_eq!(result, Ok(()));
    assert_eq!(out[0]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out[1]["usage"]["prompt_tokens"], 9);

    let two = sse(&[
        json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}, {"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]}}]}),
        json!({"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]}),
    ]);
    // Candidate 1 never finished: the stream is incomplete.
    let (out, result, _) = run(&[&two]);
    assert_eq!(result, Err(StreamFault::Truncated));
    assert_eq!(out[1]["choices"][0]["index"], 1);
    assert_eq!(out[1]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    let mut finished = two.clone();
    finished.extend(sse(&[json!({"candidates": [{"index": 1, "finishReason": "STOP"}]})]));
    let (out, result, _) = run(&[&finished]);
    assert_eq!(result, Ok(()));
    let last = out.last().unwrap();
    assert_eq!(last["choices"][0]["index"], 1);
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

// ----- embeddings -----

fn embeddings(body: Value) -> EmbeddingsRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

#[test]
fn embeddings_requests_for_both_apis() {
    let request = embeddings(json!({"model": "emb", "input": ["a", "b"], "dimensions": 256, "taskType": "RETRIEVAL_QUERY"}));
    let out = embeddings_request(&generative(), &embed_route(), &request, "AIza-secret").unwrap();
    assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert!(out.headers.contains(&("x-goog-api-key".into(), "AIza-secret".into())));
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, json!({"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"}
    ]}));
    let out = embeddings_request(&vertex(), &embed_route(), &request, "ya29.t").unwrap();
    assert_eq!(
        out.url,
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-embedding-001:predict"
    );
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, json!({"instances": [{"content": "a"}, {"content": "b"}], "parameters": {"outputDimensionality": 256}}));
    let tokens = embeddings(json!({"model": "emb", "input": [1, 2, 3]}));
    assert!(matches!(
        embeddings_request(&generative(), &embed_route(), &tokens, "k"),
        Err(GatewayError::InvalidRequest { param: Some(p), .. }) if p == "input"
    ));
}

#[test]
fn embeddings_responses_in_both_encodings() {
    let float = embeddings(json!({"model": "emb", "input": ["a", "b"]}));
    let b64 = embeddings(json!({"model": "emb", "input": ["a", "b"], "encoding_format": "base64"}));
    let generative_body = br#"{"embeddings":[{"values":[0.5,-1.0]},{"values":[0.25,2.0]}]}"#;
    let out = embeddings_response(&float, generative_body, &ctx()).unwrap();
    assert_eq!(out.body, json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}, {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]}],
        "model": "gemini-2.5-flash",
        "usage": {"prompt_tokens": 0, "total_tokens": 0}
    }));
    assert_eq!(out.usage, None, "the Generative Language API reports no embedding tokens");
    let out = embeddings_response(&b64, generative_body, &ctx()).unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, out.body["data"][1]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(decoded, vec![0.25, 2.0]);

    let vertex_body = br#"{"predictions":[{"embeddings":{"values":[1.0],"statistics":{"token_count":3,"truncated":false}}},
            {"embeddings":{"values":[2.0],"statistics":{"token_count":4,"truncated":false}}}]}"#;
    let out = embeddings_response(&float, vertex_body, &ctx()).unwrap();
    assert_eq!(out.usage.unwrap().input_tokens, 7);
    assert_eq!(out.body["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));
    assert_eq!(out.body["data"][1]["embedding"], json!([2.0]));

    for bad in [&b"nope"[..], br#"{"embeddings":[{"values":[1]}]}"#, br#"{"embeddings":[{"values":"x"},{"values":[1]}]}"#, b"{}"] {
        assert!(matches!(embeddings_response(&float, bad, &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
    }
}
