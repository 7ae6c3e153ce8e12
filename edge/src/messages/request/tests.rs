//! Tests of request parsing and translation, through [`parse_messages_request`].

use super::*;

fn parse(body: Value) -> Result<(ChatRequest, MessagesMeta), GatewayError> {
    parse_messages_request(body.to_string().as_bytes())
}

fn param_of(err: &GatewayError) -> Option<&str> {
    match err {
        GatewayError::InvalidRequest { param, .. } => param.as_deref(),
        _ => None,
    }
}

fn bad(body: Value) -> (String, String) {
    let err = parse(body).unwrap_err();
    assert_eq!(err.status(), 400);
    (param_of(&err).unwrap_or_default().to_string(), err.message())
}

fn base() -> Value {
    json!({ "model": "claude-x", "max_tokens": 64, "messages": [{ "role": "user", "content": "hi" }] })
}

#[test]
fn request_validation_names_the_field() {
    let mut b = base();
    b.as_object_mut().unwrap().remove("max_tokens");
    let (param, message) = bad(b);
    assert_eq!(param, "max_tokens");
    assert!(message.contains("Field required"), "{message}");

    for v in [json!(0), json!(-1), json!("10"), json!(1.5)] {
        let mut b = base();
        b["max_tokens"] = v;
        assert_eq!(bad(b).0, "max_tokens");
    }

    let mut b = base();
    b.as_object_mut().unwrap().remove("model");
    assert_eq!(bad(b).0, "model");

    let mut b = base();
    b["messages"] = json!([]);
    assert_eq!(bad(b).0, "messages");

    let mut b = base();
    b["messages"] = json!([{ "role": "user", "content": "a" }, { "role": "robot", "content": "b" }]);
    let (param, message) = bad(b);
    assert_eq!(param, "messages.1.role");
    assert!(message.contains("'user' or 'assistant'"), "{message}");

    let mut b = base();
    b["messages"][0]["content"] = json!([{ "type": "text", "text": "a" }, { "type": "video", "url": "x" }]);
    let (param, message) = bad(b);
    assert_eq!(param, "messages.0.content.1.type");
    assert!(message.contains("'video'"), "{message}");

    let mut b = base();
    b["messages"][0]["content"] = json!([{ "type": "text", "text": "a" }, { "type": "image" }]);
    assert_eq!(bad(b).0, "messages.0.content.1.source");

    let mut b = base();
    b["messages"][0]["content"] =
        json!([{ "type": "image", "source": { "type": "base64", "media_type": "image/bmp", "data": "AAAA" } }]);
    assert_eq!(bad(b).0, "messages.0.content.0.source.media_type");

    let mut b = base();
    b["messages"][0]["content"] = json!([{ "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" } }]);
    let (param, message) = bad(b);
    assert_eq!(param, "messages.0.content.0.source.type");
    assert!(message.contains("PDF"), "{message}");

    let mut b = base();
    b["tools"] = json!([{ "type": "web_search_20250305", "name": "web_search" }]);
    let (param, message) = bad(b);
    assert_eq!(param, "tools.0.type");
    assert!(message.contains("server tool"), "{message}");

    let mut b = base();
    b["tools"] = json!([{ "name": "f" }]);
    assert_eq!(bad(b).0, "tools.0.input_schema");

    let mut b = base();
    b["messages"][0]["content"] = json!([{ "type": "tool_use", "id": "t", "name": "f", "input": {} }]);
    assert_eq!(bad(b).0, "messages.0.content.0.type");

    let mut b = base();
    b["tool_choice"] = json!({ "type": "sometimes" });
    assert_eq!(bad(b).0, "tool_choice.type");

    let mut b = base();
    b["frequency_penalty"] = json!(1);
    let (param, message) = bad(b);
    assert_eq!(param, "frequency_penalty");
    assert!(message.contains("Extra inputs"), "{message}");

    let mut b = base();
    b["messages"][0]["content"] = json!("");
    assert_eq!(bad(b).0, "messages.0.content");

    assert!(matches!(parse_messages_request(b"{nope"), Err(GatewayError::InvalidJson { .. })));
    assert!(matches!(parse_messages_request(b"[1]"), Err(GatewayError::InvalidRequest { param: None, .. })));
}

#[test]
fn bad_input_never_panics() {
    let samples = [
        json!({"model": "m", "max_tokens": 1, "messages": [null]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [null, 3]}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}]}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": {"a": 1}}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "system": 5}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tools": [7]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": 3}}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "stop_sequences": [1]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "json_schema"}}}),
    ];
    for sample in samples {
        let err = parse(sample.clone()).unwrap_err();
        assert!(param_of(&err).is_some(), "{sample} -> {err:?}");
    }
}

#[test]
fn rich_request_round_trip() {
    let body = json!({
        "model": "claude-sonnet",
        "max_tokens": 1024,
        "system": [{ "type": "text", "text": "You are terse." }, { "type": "text", "text": "Use tools.", "cache_control": { "type": "ephemeral" } }],
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "What is in these?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
                { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } }
            ]},
            { "role": "assistant", "content": [
                { "type": "thinking", "thinking": "hmm", "signature": "sig" },
                { "type": "text", "text": "Let me look up both." },
                { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {} }
            ]},
            { "role": "user", "content": [
                { "type": "text", "text": "Thanks, and summarise." },
                { "type": "tool_result", "tool_use_id": "toolu_1", "content": [{ "type": "text", "text": "18C" }, { "type": "image", "source": { "type": "url", "url": "https://example.com/map.png" } }] },
                { "type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": true }
            ]},
            { "role": "assistant", "content": "Sure:" }
        ],
        "tools": [
            { "name": "get_weather", "description": "Weather for a city", "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
            { "type": "custom", "name": "get_time", "input_schema": { "type": "object" } }
        ],
        "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": { "user_id": "u-42" },
        "thinking": { "type": "enabled", "budget_tokens": 2048 },
        "stream": true
    });
    let (request, meta) = parse(body).unwrap();
    assert_eq!(meta, MessagesMeta { model: "claude-sonnet".into(), stream: true, top_k: Some(40) });
    let got = serde_json::to_value(&request).unwrap();
    let expected = json!({
        "model": "claude-sonnet",
        "messages": [
            { "role": "system", "content": "You are terse.\nUse tools." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in these?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg" } }
            ]},
            { "role": "assistant", "content": "Let me look up both.", "tool_calls": [
                { "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "toolu_2", "type": "function", "function": { "name": "get_time", "arguments": "{}" } }
            ]},
            { "role": "tool", "tool_call_id": "toolu_1", "content": "18C" },
            { "role": "tool", "tool_call_id": "toolu_2", "content": "Error: no clock" },
            { "role": "user", "content": [
                { "type": "image_url", "image_url": { "url": "https://example.com/map.png" } },
                { "type": "text", "text": "Thanks, and summarise." }
            ]},
            { "role": "assistant", "content": "Sure:" }
        ],
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": 1024,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u-42",
        "tools": [
            { "type": "function", "function": { "name": "get_weather", "description": "Weather for a city", "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
            { "type": "function", "function": { "name": "get_time", "parameters": { "type": "object" } } }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false
    });
    assert_eq!(got, expected);

    // The translated request is valid input for every provider translator.
    let reparsed: ChatRequest = crate::openai::parse_request(serde_json::to_vec(&request).unwrap().as_slice()).unwrap();
    assert_eq!(crate::provider::content::tool_choice(&reparsed).unwrap(), Some(crate::provider::content::ToolChoice::Required));
    assert_eq!(crate::provider::content::tools(&reparsed).unwrap().len(), 2);
    for (i, m) in reparsed.messages.iter().enumerate() {
        if m["role"] == "user" {
            crate::provider::content::parts(m.get("content"), &format!("messages[{i}].content")).unwrap();
        }
    }
}

#[test]
fn tool_choice_variants_and_plain_options() {
    let cases = [
        (json!({ "type": "auto" }), json!("auto"), None),
        (json!({ "type": "none" }), json!("none"), None),
        (json!({ "type": "tool", "name": "f", "disable_parallel_tool_use": false }), json!({ "type": "function", "function": { "name": "f" } }), Some(true)),
    ];
    for (choice, expected, parallel) in cases {
        let mut b = base();
        b["tools"] = json!([{ "name": "f", "input_schema": { "type": "object" } }]);
        b["tool_choice"] = choice;
        let (request, _) = parse(b).unwrap();
        assert_eq!(request.rest["tool_choice"], expected);
        assert_eq!(request.rest.get("parallel_tool_calls").and_then(Value::as_bool), parallel.filter(|p| !p));
    }
    // Without tools, OpenAI refuses tool_choice: it is dropped.
    let mut b = base();
    b["tool_choice"] = json!({ "type": "auto", "disable_parallel_tool_use": true });
    let (request, meta) = parse(b).unwrap();
    assert!(request.rest.get("tool_choice").is_none() && request.rest.get("parallel_tool_calls").is_none());
    assert!(!meta.stream && request.stream.is_none() && request.stream_options.is_none());
    assert_eq!(request.messages, vec![json!({ "role": "user", "content": "hi" })]);

    let mut b = base();
    b["output_config"] = json!({ "format": { "type": "json_schema", "schema": { "type": "object" } }, "effort": "low" });
    b["system"] = json!("Be brief.");
    b["messages"] = json!([
        { "role": "user", "content": [{ "type": "document", "source": { "type": "text", "media_type": "text/plain", "data": "doc body" } }, { "type": "text", "text": "summarise" }] }
    ]);
    let (request, _) = parse(b).unwrap();
    assert_eq!(request.rest["response_format"], json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": { "type": "object" } } }));
    assert_eq!(request.messages[0], json!({ "role": "system", "content": "Be brief." }));
    assert_eq!(request.messages[1]["content"][0], json!({ "type": "text", "text": "doc body" }));
}
