use super::*;
use crate::config::ModelKind;
use crate::openai::parse_request;
use crate::provider::decode::StreamDecoder;

fn config() -> CohereConfig {
    CohereConfig { base_url: "https://api.cohere.com/".into(), api_key_secret: "COHERE_KEY".into(), timeout_ms: None }
}

fn route() -> ModelRoute {
    ModelRoute { name: "chat".into(), provider: "cohere".into(), upstream_model: "command-a-03-2025".into(), kind: ModelKind::Chat, guard: None }
}

fn ctx() -> ResponseContext {
    ResponseContext { id: "chatcmpl-gw".into(), created: 7, model: "command-a-03-2025".into() }
}

fn chat(body: &str) -> ChatRequest {
    parse_request(body.as_bytes()).unwrap()
}

fn body_of(request: &OutboundRequest) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

fn param_of(err: GatewayError) -> String {
    match err {
        GatewayError::InvalidRequest { param: Some(p), .. } => p,
        other => panic!("expected InvalidRequest with a param, got {other:?}"),
    }
}

// ----- request ------------------------------------------------------------------------

const RICH: &str = r#"{"model":"chat","messages":[
        {"role":"system","content":"Be brief."},
        {"role":"developer","content":[{"type":"text","text":"Answer in JSON."}]},
        {"role":"user","content":[
            {"type":"text","text":"What is this, and the weather?"},
            {"type":"image_url","image_url":{"url":"https://x.example/cat.jpg","detail":"low"}},
            {"type":"image_url","image_url":{"url":"data:image/PNG;base64,iVBOR"}}]},
        {"role":"assistant","content":null,"tool_plan":"I will check the weather.","tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]},
        {"role":"tool","tool_call_id":"call_1","content":"18C"},
        {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12:00"}]},
        {"role":"assistant","content":"It is 18C."},
        {"role":"assistant","content":""},
        {"role":"user","content":"Thanks. JSON please."}],
      "tools":[
        {"type":"function","function":{"name":"get_weather","description":"Weather by city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
        {"type":"function","function":{"name":"get_time"}}],
      "tool_choice":"required",
      "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"a":{"type":"string"}}}}},
      "stop":["END"],"temperature":0.2,"top_p":0.9,"max_completion_tokens":300,"seed":7,
      "frequency_penalty":0.1,"presence_penalty":0.2,"top_k":40,"safety_mode":"STRICT",
      "logit_bias":{"1":2},"user":"u-1"}"#;

#[test]
fn golden_rich_request() {
    let out = chat_request(&config(), &route(), &chat(RICH), "sk-cohere").unwrap();
    assert_eq!(out.method, "POST");
    assert_eq!(out.url, "https://api.cohere.com/v2/chat");
    assert!(out.headers.contains(&("authorization".into(), "Bearer sk-cohere".into())));
    assert!(out.headers.contains(&("accept".into(), "application/json".into())));
    let expected = json!({
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nAnswer in JSON."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this, and the weather?"},
                {"type": "image_url", "image_url": {"url": "https://x.example/cat.jpg", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
            {"role": "assistant", "tool_plan": "I will check the weather.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
            {"role": "assistant", "content": "It is 18C."},
            {"role": "user", "content": "Thanks. JSON please."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "p": 0.9,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "max_tokens": 300,
        "seed": 7,
        "k": 40,
        "safety_mode": "STRICT",
        "stream": false
    });
    assert_eq!(body_of(&out), expected);
}

#[test]
fn streaming_json_object_and_named_function_choice() {
    let request = chat(
        r#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],
               "tools":[{"type":"function","function":{"name":"a","strict":true}},{"type":"function","function":{"name":"b"}}],
               "tool_choice":{"type":"function","function":{"name":"b"}},
               "response_format":{"type":"json_object"},"max_tokens":5}"#,
    );
    let out = chat_request(&config(), &route(), &request, "k").unwrap();
    assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
    let body = body_of(&out);
    assert_eq!(body["stream"], true);
    assert_eq!(body["tools"].as_array().unwrap().len(), 1, "only the forced function is offered");
    assert_eq!(body["tools"][0]["function"]["name"], "b");
    assert_eq!(body["tool_choice"], "REQUIRED");
    assert!(body.get("strict_tools").is_none(), "the strict tool was narrowed away");
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));

    let auto = chat(
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto",
               "tools":[{"type":"function","function":{"name":"a","strict":true}}]}"#,
    );
    let body = body_of(&chat_request(&config(), &route(), &auto, "k").unwrap());
    assert!(body.get("tool_choice").is_none(), "auto is Cohere's default");
    assert_eq!(body["strict_tools"], true);
    let none = chat(r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"tool_choice":"none"}"#);
    assert!(body_of(&chat_request(&config(), &route(), &none, "k").unwrap()).get("tool_choice").is_none());
}

#[test]
fn legacy_function_call_round_trip() {
    let request = chat(
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"},
               {"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{\"x\":1}"}},
               {"role":"function","name":"f","content":"done"}]}"#,
    );
    let body = body_of(&chat_request(&config(), &route(), &request, "k").unwrap());
    assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "call_legacy_1");
    assert_eq!(body["messages"][2], json!({"role": "tool", "tool_call_id": "call_legacy_1", "content": "done"}));
}

#[test]
fn bad_input_is_an_invalid_request_naming_the_field() {
    let cases = [
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
        (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
        (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#, "messages[0].content[0].type"),
        (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#, "messages[0].content[0].image_url.url"),
        (r#"{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://a/b.png"}}]},{"role":"user","content":"x"}]}"#, "messages[0].content"),
        (r#"{"model":"m","messages":[{"role":"user","content":[]}]}"#, "messages[0].content"),
        (r#"{"model":"m","messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
        (r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#, "messages"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1.5}"#, "seed"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":-1}"#, "top_k"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#, "tool_choice"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"function","function":{"name":"zz"}},"tools":[{"type":"function","function":{"name":"a"}}]}"#, "tool_choice"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval"}]}"#, "tools[0].type"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}"#, "response_format.json_schema"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}"#, "messages[1].tool_calls[0].id"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{nope"}}]}]}"#, "messages[1].tool_calls[0].arguments"),
        (r#"{"model":"m","messages":[{"role":"function","content":"x"}]}"#, "messages[0].role"),
    ];
    for (body, param) in cases {
        let err = chat_request(&config(), &route(), &chat(body), "k").unwrap_err();
        assert_eq!(param_of(err), param, "{body}");
    }
}

// ----- response -----------------------------------------------------------------------

#[test]
fn whole_response_with_text_tool_calls_and_usage() {
    let body = br#"{"id":"c0ffee","finish_reason":"TOOL_CALL","message":{"role":"assistant",
            "tool_plan":"I will look it up.",
            "tool_calls":[
              {"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Madrid\"}"}},
              {"id":"get_weather_2","type":"function","function":{"name":"get_weather","arguments":{"city":"Lima"}}}]},
            "usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":913.0,"output_tokens":83.0}}}"#;
    let t = chat_response(body, &ctx()).unwrap();
    assert_eq!(t.body["id"], "c0ffee");
    assert_eq!(t.body["object"], "chat.completion");
    assert_eq!(t.body["model"], "command-a-03-2025");
    let choice = &t.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["reasoning_content"], "I will look it up.");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0], json!({"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Madrid\"}"}}));
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Lima\"}", "object arguments become a JSON string");
    assert_eq!(t.usage, Some(Usage::from_parts(913, 0, 0, 83, 0)));
    assert_eq!(t.body["usage"]["prompt_tokens"], 913);
    assert_eq!(t.body["usage"]["total_tokens"], 996);
    assert_eq!(t.raw_usage.unwrap()["billed_units"]["input_tokens"], 37);
}

#[test]
fn whole_response_text_thinking_finish_reasons_and_billed_fallback() {
    let body = br#"{"id":"x","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[
            {"type":"thinking","thinking":"Hmm."},{"type":"text","text":"Hello"},{"type":"text","text":" world"}]},
            "usage":{"billed_units":{"input_tokens":5,"output_tokens":2}}}"#;
    let t = chat_response(body, &ctx()).unwrap();
    assert_eq!(t.body["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(t.body["choices"][0]["message"]["reasoning_content"], "Hmm.");
    assert_eq!(t.body["choices"][0]["finish_reason"], "length");
    assert_eq!(t.usage, Some(Usage::from_parts(5, 0, 0, 2, 0)));
    for (reason, expected) in [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("TOOL_CALL", "stop"), ("SOMETHING_NEW", "stop")] {
        let body = format!(r#"{{"id":"x","finish_reason":"{reason}","message":{{"content":[{{"type":"text","text":"a"}}]}}}}"#);
        let t = chat_response(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["finish_reason"], expected, "{reason}");
        assert!(t.usage.is_none() && t.body.get("usage").is_none());
    }
}

#[test]
fn malformed_or_failed_responses_are_upstream_errors_without_body_text() {
    let bodies: [&[u8]; 6] = [
        b"not json SECRET",
        br#"{"id":"x","finish_reason":"COMPLETE"}"#,
        br#"{"id":"x","message":{"content":7},"finish_reason":"COMPLETE"}"#,
        br#"{"id":"x","message":{"tool_calls":[{"id":"a","function":{}}]},"finish_reason":"TOOL_CALL"}"#,
        br#"{"id":"x","message":{"content":[{"type":"text","text":"SECRET partial"}]},"finish_reason":"ERROR"}"#,
        br#"{"id":"x","message":{"content":[]},"finish_reason":"TIMEOUT"}"#,
    ];
    for body in bodies {
        match chat_response(body, &ctx()) {
            Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                assert_eq!(provider, "cohere");
                assert!(!detail.contains("SECRET"), "{detail}");
            }
            other => panic!("expected UpstreamInvalidResponse, got {other:?}"),
        }
    }
}

#[test]
fn error_bodies() {
    let e = error_message(400, br#"{"id":"abc","message":"invalid request: temperature must be between 0 and 1.0 inclusive."}"#).unwrap();
    assert_eq!(e.message, "invalid request: temperature must be between 0 and 1.0 inclusive.");
    assert_eq!(e.kind.as_deref(), Some("bad_request"));
    let e = error_message(429, br#"{"message":"You are using a Trial key"}"#).unwrap();
    assert_eq!(e.kind.as_deref(), Some("too_many_requests"));
    assert_eq!(error_message(418, br#"{"data":"odd"}"#).unwrap(), ProviderErrorBody { message: "odd".into(), kind: None });
    assert_eq!(error_message(500, b"<html>oops</html>"), None);
    assert_eq!(error_message(500, br#"{"error":{"message":"x"}}"#), None);
}

// ----- stream -------------------------------------------------------------------------

fn frame(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// A tool-calling turn: a streamed plan, then two parallel calls with streamed arguments.
fn tool_stream() -> Vec<u8> {
    let delta_args = |index: u64, args: &str| {
        frame("tool-call-delta", json!({"type": "tool-call-delta", "index": index, "delta": {"message": {"tool_calls": {"function": {"arguments": args}}}}}))
    };
    let start = |index: u64, id: &str| {
        frame(
            "tool-call-start",
            json!({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls":
                {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}}),
        )
    };
    let mut s = String::new();
    s.push_str(&frame("message-start", json!({"id": "c0ffee", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})));
    s.push_str(&frame("tool-plan-delta", json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}})));
    s.push_str(&frame("tool-plan-delta", json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " check."}}})));
    s.push_str(&start(0, "get_weather_a1"));
    s.push_str(&delta_args(0, "{\"city\":"));
    s.push_str(&start(1, "get_weather_b2"));
    s.push_str(&delta_args(1, "{\"city\": \"Brasília\"}"));
    s.push_str(&delta_args(0, " \"Madrid\"}"));
    s.push_str(&frame("tool-call-end", json!({"type": "tool-call-end", "index": 0})));
    s.push_str(&frame("tool-call-end", json!({"type": "tool-call-end", "index": 1})));
    s.push_str(&frame(
        "message-end",
        json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
            "billed_units": {"input_tokens": 37.0, "output_tokens": 28.0}, "tokens": {"input_tokens": 913.0, "output_tokens": 83.0}}}}),
    ));
    s.into_bytes()
}

fn text_stream() -> Vec<u8> {
    let mut s = String::new();
    s.push_str(&frame("message-start", json!({"id": "t1", "type": "message-start", "delta": {"message": {"role": "assistant"}}})));
    s.push_str(&frame("content-start", json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})));
    for piece in ["It is", " 24°C", " in Madrid."] {
        s.push_str(&frame("content-delta", json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}, "logprobs": null})));
    }
    s.push_str(&frame("citation-start", json!({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {"start": 6, "end": 10, "text": "24°C", "sources": []}}}})));
    s.push_str(&frame("citation-end", json!({"type": "citation-end", "index": 0})));
    s.push_str(&frame("content-end", json!({"type": "content-end", "index": 0})));
    s.push_str(&frame("message-end", json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 10, "output_tokens": 6}}}})));
    s.into_bytes()
}

/// Feed `bytes` cut at `cuts`; the chunks, and what `finish` said.
fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<Value>, Result<(), StreamFault>, Option<Usage>) {
    let mut stream = CohereStream::new(ctx());
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if let Err(fault) = stream.push(&bytes[from..cut], &mut out) {
            return (out, Err(fault), stream.usage());
        }
        from = cut;
    }
    let finished = stream.finish(&mut out);
    (out, finished, stream.usage())
}

fn tool_deltas(chunks: &[Value]) -> Vec<Value> {
    chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0").cloned()).collect()
}

#[test]
fn stream_with_two_parallel_tool_calls() {
    let (chunks, finished, usage) = run(&tool_stream(), &[]);
    assert_eq!(finished, Ok(()));
    assert!(chunks.iter().all(|c| c["id"] == "c0ffee" && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chunks.iter().filter(|c| c.pointer("/choices/0/delta/role").is_some()).count(), 1);
    let plan: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/reasoning_content").and_then(Value::as_str)).collect();
    assert_eq!(plan, "I will check.");

    let deltas = tool_deltas(&chunks);
    assert_eq!(deltas[0], json!({"index": 0, "id": "get_weather_a1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}));
    let args = |index: u64| -> String {
        deltas.iter().filter(|d| d["index"] == index).filter_map(|d| d.pointer("/function/arguments").and_then(Value::as_str)).collect()
    };
    assert_eq!(args(0), "{\"city\": \"Madrid\"}");
    assert_eq!(args(1), "{\"city\": \"Brasília\"}");
    assert_eq!(deltas.iter().filter(|d| d.get("id").is_some()).count(), 2, "id only on each call's first delta");
    assert_eq!(deltas.iter().find(|d| d["index"] == 1).unwrap()["id"], "get_weather_b2");

    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 913);
    assert_eq!(last["usage"]["completion_tokens"], 83);
    assert_eq!(chunks.iter().filter(|c| c.get("usage").is_some()).count(), 1, "usage exactly once");
    assert_eq!(usage, Some(Usage::from_parts(913, 0, 0, 83, 0)));
}

#[test]
fn text_stream_ignores_citations_and_ends_with_usage() {
    let mut stream = CohereStream::new(ctx());
    let mut chunks = Vec::new();
    stream.push(&text_stream(), &mut chunks).unwrap();
    stream.finish(&mut chunks).unwrap();
    let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "It is 24°C in Madrid.");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 16);
    assert_eq!(stream.raw_usage(), Some(json!({"tokens": {"input_tokens": 10, "output_tokens": 6}})));
}

#[test]
fn stream_output_does_not_depend_on_chunking() {
    for bytes in [tool_stream(), text_stream()] {
        let whole = run(&bytes, &[]);
        for cut in 1..bytes.len() {
            assert_eq!(run(&bytes, &[cut]), whole, "split at {cut}");
        }
        // Many random cuts, from a fixed-seed linear congruential generator.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..300 {
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                at += 1 + (seed >> 33) as usize % 40;
                if at >= bytes.len() {
                    break;
                }
                cuts.push(at);
            }
            assert_eq!(run(&bytes, &cuts), whole, "cuts {cuts:?}");
        }
    }
}

#[test]
fn error_at_message_end_is_a_provider_fault() {
    let mut bytes = text_stream();
    let at = String::from_utf8_lossy(&bytes).find("event: message-end").unwrap();
    bytes.truncate(at);
    let mut failed = bytes.clone();
    failed.extend(frame("message-end", json!({"type": "message-end", "delta": {"error": "SECRET internal detail", "finish_reason": "ERROR"}})).bytes());
    let (chunks, result, _) = run(&failed, &[]);
    assert_eq!(result, Err(StreamFault::Provider { kind: "ERROR".into() }));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let mut timeout = bytes.clone();
    timeout.extend(frame("message-end", json!({"type": "message-end", "delta": {"finish_reason": "TIMEOUT"}})).bytes());
    assert_eq!(run(&timeout, &[]).1, Err(StreamFault::Provider { kind: "TIMEOUT".into() }));
    let mut error_only = bytes;
    error_only.extend(frame("message-end", json!({"type": "message-end", "delta": {"error": "boom"}})).bytes());
    assert_eq!(run(&error_only, &[]).1, Err(StreamFault::Provider { kind: "ERROR".into() }));
}

#[test]
fn truncated_and_malformed_streams() {
    let bytes = tool_stream();
    let at = String::from_utf8_lossy(&bytes).find("event: message-end").unwrap();
    let (chunks, result, usage) = run(&bytes[..at], &[]);
    assert_eq!(result, Err(StreamFault::Truncated));
    assert!(!chunks.is_empty() && usage.is_none());
    assert_eq!(run(b"", &[]).1, Err(StreamFault::Truncated));
    assert!(matches!(run(b"data: {not json\n\n", &[]).1, Err(StreamFault::Malformed { .. })));
    // Events without the fields they should carry are skipped, never a panic.
    let odd = b"data: {\"type\":\"tool-call-delta\"}\n\ndata: {\"type\":\"content-delta\",\"delta\":7}\n\ndata: [DONE]\n\ndata: {\"type\":\"message-end\"}\n\n";
    let (chunks, result, usage) = run(odd, &[]);
    assert_eq!(result, Ok(()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(usage.is_none());
}

// ----- embeddings ---------------------------------------------------------------------

fn embed(body: &str) -> EmbeddingsRequest {
    parse_request(body.as_bytes()).unwrap()
}

#[test]
fn embeddings_request_body() {
    let out = embeddings_request(&config(), &route(), &embed(r#"{"model":"e","input":["a","b"],"dimensions":256,"truncate":"END","user":"u"}"#), "k").unwrap();
    assert_eq!(out.url, "https://api.cohere.com/v2/embed");
    assert!(out.headers.contains(&("authorization".into(), "Bearer k".into())));
    assert_eq!(
        body_of(&out),
        json!({"model": "command-a-03-2025", "texts": ["a", "b"], "input_type": "search_document",
               "embedding_types": ["float"], "output_dimension": 256, "truncate": "END"})
    );
    let query = embeddings_request(&config(), &route(), &embed(r#"{"model":"e","input":"q","input_type":"search_query"}"#), "k").unwrap();
    let body = body_of(&query);
    assert_eq!(body["input_type"], "search_query");
    assert_eq!(body["texts"], json!(["q"]));
    assert!(body.get("output_dimension").is_none());

    for (bad, param) in [
        (r#"{"model":"e","input":[1,2,3]}"#, "input"),
        (r#"{"model":"e","input":["a",[1,2]]}"#, "input"),
        (r#"{"model":"e","input":"a","input_type":5}"#, "input_type"),
    ] {
        assert_eq!(param_of(embeddings_request(&config(), &route(), &embed(bad), "k").unwrap_err()), param, "{bad}");
    }
}

#[test]
fn embeddings_response_in_float_and_base64() {
    let body = br#"{"id":"e1","embeddings":{"float":[[0.5,-0.25],[1,0]]},"texts":["a","b"],
            "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":4}}}"#;
    let float = embeddings_response(&embed(r#"{"model":"e","input":["a","b"]}"#), body, &ctx()).unwrap();
    assert_eq!(
        float.body,
        json!({"object": "list", "model": "command-a-03-2025",
               "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                        {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
               "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    );
    assert_eq!(float.usage, Some(Usage::from_parts(4, 0, 0, 0, 0)));
    assert_eq!(float.raw_usage.unwrap()["billed_units"]["input_tokens"], 4);

    let b64 = embeddings_response(&embed(r#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#), body, &ctx()).unwrap();
    let encoded = b64.body["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(decoded, vec![0.5, -0.25]);
}

#[test]
fn bad_embeddings_responses() {
    let request = embed(r#"{"model":"e","input":["a","b"]}"#);
    let bodies: [&[u8]; 4] = [
        b"nope",
        br#"{"id":"e","embeddings":{"int8":[[1]]}}"#,
        br#"{"id":"e","embeddings":{"float":[[0.1]]}}"#,
        br#"{"id":"e","embeddings":{"float":[[0.1],["x"]]}}"#,
    ];
    for body in bodies {
        assert!(matches!(embeddings_response(&request, body, &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
    }
}
