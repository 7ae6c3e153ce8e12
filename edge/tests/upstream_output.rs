//! What a hostile or broken upstream can make the gateway send or hold, through the whole
//! pipeline against the in-memory host: error bodies and stream error events that echo the
//! request's credentials reach the client without them (every provider kind, OpenAI and
//! Anthropic client formats); oversized bodies and events end in a clear error instead of
//! unbounded memory; a 200 that is not JSON falls back to the next target; a `data:` line that
//! is not JSON ends an OpenAI-format stream with an error event.

use base64::Engine;
use edge::event::Outcome;
use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundRequest, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

const CLIENT_KEY: &str = "sk-client-web";

/// Provider secrets with no well-known key shape, so only the exact-value scrub can find them.
const SECRETS: [(&str, &str); 6] = [
    ("OPENAI_KEY", "plain-openai-credential-1111"),
    ("ANTHROPIC_KEY", "plain-anthropic-credential-2222"),
    ("GEMINI_KEY", "plain-gemini-credential-3333"),
    ("AWS_ID", "plainawsaccessid4444"),
    ("AWS_SECRET", "plain/aws+secret=access-key-5555"),
    ("COHERE_KEY", "plain-cohere-credential-6666"),
];

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(limits: Value) -> String {
    let mut limits_section = json!({ "config_refresh_ms": 0, "upstream_timeout_ms": 1000, "stream_idle_timeout_ms": 500 });
    limits_section.as_object_mut().unwrap().extend(limits.as_object().cloned().unwrap_or_default());
    json!({
        "limits": limits_section,
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(CLIENT_KEY) }] },
        "providers": {
            "openai": { "kind": "openai", "base_url": "https://openai.test/v1", "api_key_secret": "OPENAI_KEY" },
            "backup": { "kind": "openai", "base_url": "https://backup.test/v1", "api_key_secret": "OPENAI_KEY" },
            "anthropic": { "kind": "anthropic", "base_url": "https://anthropic.test", "api_key_secret": "ANTHROPIC_KEY" },
            "gemini": { "kind": "gemini", "base_url": "https://gemini.test", "api_key_secret": "GEMINI_KEY" },
            "bedrock": { "kind": "bedrock", "region": "eu-central-1", "base_url": "https://bedrock.test", "access_key_id_secret": "AWS_ID", "secret_access_key_secret": "AWS_SECRET" },
            "cohere": { "kind": "cohere", "base_url": "https://cohere.test", "api_key_secret": "COHERE_KEY" }
        },
        "models": {
            "openai": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
            "anthropic": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-5" },
            "gemini": { "provider": "gemini", "upstream_model": "gemini-2.0-flash" },
            "bedrock": { "provider": "bedrock", "upstream_model": "anthropic.claude-3-haiku" },
            "cohere": { "provider": "cohere", "upstream_model": "command-r" },
            "routed": {
                "targets": [
                    { "id": "first", "provider": "openai", "upstream_model": "gpt-4o-mini", "region": "us-east-1", "jurisdiction": "us" },
                    { "id": "second", "provider": "backup", "upstream_model": "gpt-4o-mini", "region": "eu-west-1", "jurisdiction": "eu" }
                ],
                "strategy": { "type": "ordered" }
            }
        }
    })
    .to_string()
}

fn host(limits: Value, upstream: impl Fn(&OutboundRequest) -> Scripted + 'static) -> MemoryHost {
    let mut host = MemoryHost::new().with_config(&config(limits));
    for (name, value) in SECRETS {
        host = host.with_secret(name, value);
    }
    host.with_upstream(upstream)
}

fn post(path: &str, body: Value) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {CLIENT_KEY}"))],
        body: Body::Bytes(body.to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

fn chat(model: &str, stream: bool) -> Request {
    post("/v1/chat/completions", json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }], "stream": stream }))
}

fn run(host: &MemoryHost, request: Request) -> (u16, Vec<(String, String)>, String) {
    futures::executor::block_on(async {
        let response = Gateway::new().handle(request, host).await;
        let body = collect_body(response.body).await;
        (response.status, response.headers, String::from_utf8_lossy(&body).into_owned())
    })
}

fn respond(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Scripted {
    Scripted::Respond(OutboundResponse { status, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(body.into()) })
}

/// The secrets a provider's call is made with.
fn secrets_of(provider: &str) -> Vec<&'static str> {
    let names: &[&str] = match provider {
        "openai" => &["OPENAI_KEY"],
        "anthropic" => &["ANTHROPIC_KEY"],
        "gemini" => &["GEMINI_KEY"],
        "bedrock" => &["AWS_ID", "AWS_SECRET"],
        "cohere" => &["COHERE_KEY"],
        other => panic!("no secrets for {other}"),
    };
    SECRETS.iter().filter(|(name, _)| names.contains(name)).map(|(_, value)| *value).collect()
}

/// Everything the gateway sent that could carry a credential, as a hostile upstream would echo
/// it: every header value, the URL, and the call's secrets raw, URL-encoded and base64-encoded.
fn echo(provider: &str, request: &OutboundRequest) -> String {
    let headers: Vec<String> = request.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let mut text = format!("Invalid request. You sent {} to {}", headers.join(", "), request.url);
    for secret in secrets_of(provider) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        text.push_str(&format!(" raw={secret} b64={b64} url={}", secret.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D")));
    }
    text
}

/// No secret, in any of the forms [`echo`] uses, is in the client's bytes.
fn assert_no_secret(text: &str) {
    for (_, secret) in SECRETS {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        for form in [secret.to_string(), b64, secret.replace('/', "%2F")] {
            assert!(!text.contains(&form), "{form} reached the client: {text}");
        }
    }
    assert!(!text.contains("Signature="), "the signed authorization reached the client: {text}");
}

/// The 400 body of each provider kind, with its message echoing the request.
fn error_400(provider: &str, request: &OutboundRequest) -> Value {
    let message = echo(provider, request);
    match provider {
        "openai" => json!({ "error": { "message": message, "type": "invalid_request_error", "param": "messages", "code": "bad_messages", "echo": request.url } }),
        "anthropic" => json!({ "type": "error", "error": { "type": "invalid_request_error", "message": message } }),
        "gemini" => json!({ "error": { "code": 400, "message": message, "status": "INVALID_ARGUMENT" } }),
        "bedrock" => json!({ "message": message }),
        "cohere" => json!({ "message": message }),
        other => panic!("no error shape for {other}"),
    }
}

#[test]
fn an_echoed_credential_in_any_providers_error_body_never_reaches_the_client() {
    for provider in ["openai", "anthropic", "gemini", "bedrock", "cohere"] {
        let host = host(json!({}), move |request| respond(400, "application/json", error_400(provider, request).to_string()));
        let (status, _, body) = run(&host, chat(provider, false));
        assert_eq!(status, 400, "{provider}: {body}");
        assert_no_secret(&body);
        let error: Value = serde_json::from_str(&body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Invalid request. You sent"), "{provider}: the message keeps its meaning: {message}");
        assert!(message.contains("[REDACTED]"), "{provider}: {message}");
        assert!(message.chars().count() <= 1025, "{provider}: the message is capped");
        assert!(error["error"].get("echo").is_none(), "{provider}: only the error fields are forwarded");

        // The same upstream behind the Anthropic-compatible endpoint.
        let request = post("/v1/messages", json!({ "model": provider, "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] }));
        let (status, _, body) = run(&host, request);
        assert_eq!(status, 400, "{provider} /v1/messages: {body}");
        assert_no_secret(&body);
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["type"], "error");
        assert!(error["error"]["message"].as_str().unwrap().contains("[REDACTED]"), "{body}");
    }
    // The provider's own type and code are kept.
    let host = host(json!({}), |request| respond(400, "application/json", error_400("openai", request).to_string()));
    let (_, _, body) = run(&host, chat("openai", false));
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((error["error"]["type"].as_str(), error["error"]["code"].as_str(), error["error"]["param"].as_str()), (Some("invalid_request_error"), Some("bad_messages"), Some("messages")));
}

#[test]
fn an_echoed_credential_in_a_stream_error_event_never_reaches_the_client() {
    // An OpenAI-format stream whose own error event echoes the request.
    let host_openai = host(json!({}), |request| {
        let error = json!({ "error": { "message": echo("openai", request), "type": "server_error", "code": SECRETS[0].1 } });
        let body = format!("data: {}\n\ndata: {error}\n\n", json!({ "choices": [{ "index": 0, "delta": { "content": "hel" } }] }));
        respond(200, "text/event-stream", body)
    });
    let (status, _, body) = run(&host_openai, chat("openai", true));
    assert_eq!(status, 200);
    assert!(body.contains("\"content\":\"hel\""), "{body}");
    assert!(body.contains("server_error") && body.contains("[REDACTED]"), "the error event is kept, scrubbed: {body}");
    assert_no_secret(&body);
    let (_, _, body) = run(&host_openai, post("/v1/messages", json!({ "model": "openai", "max_tokens": 16, "stream": true, "messages": [{ "role": "user", "content": "hi" }] })));
    assert!(body.contains("event: error"), "{body}");
    assert_no_secret(&body);

    // A translating provider's error event whose type echoes the key.
    let host_anthropic = host(json!({}), |_| {
        let body = format!(
            "event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n",
            json!({ "type": "message_start", "message": { "id": "msg_1", "model": "claude", "usage": { "input_tokens": 3, "output_tokens": 0 } } }),
            json!({ "type": "error", "error": { "type": format!("echo {}", SECRETS[1].1), "message": "no" } })
        );
        respond(200, "text/event-stream", body)
    });
    for request in [
        chat("anthropic", true),
        post("/v1/messages", json!({ "model": "anthropic", "max_tokens": 16, "stream": true, "messages": [{ "role": "user", "content": "hi" }] })),
    ] {
        let (status, _, body) = run(&host_anthropic, request);
        assert_eq!(status, 200);
        assert!(body.contains("error"), "{body}");
        assert_no_secret(&body);
    }
}

#[test]
fn an_upstream_body_over_the_limit_is_a_clear_bad_gateway() {
    let big = json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": "x".repeat(9 * 1024 * 1024) } }] }).to_string();
    let host = host(json!({}), move |_| respond(200, "application/json", big.clone()));
    let (status, _, body) = run(&host, chat("openai", false));
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("larger than the gateway's limit of 8388608 bytes (limits.max_upstream_body_bytes)"), "{message}");
    // The limit is configurable.
    let small = json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": "x".repeat(100 * 1024) } }] }).to_string();
    let host = self::host(json!({ "max_upstream_body_bytes": 65536 }), move |_| respond(200, "application/json", small.clone()));
    let (status, _, body) = run(&host, chat("openai", false));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("limit of 65536 bytes"), "{body}");
}

#[test]
fn an_sse_event_over_the_limit_ends_the_stream_with_an_error_event() {
    let huge = "y".repeat(2 * 1024 * 1024);
    let openai = {
        let huge = huge.clone();
        move |_: &OutboundRequest| {
            let first = json!({ "choices": [{ "index": 0, "delta": { "content": "ok" } }] });
            let second = json!({ "choices": [{ "index": 0, "delta": { "content": huge } }] });
            respond(200, "text/event-stream", format!("data: {first}\n\ndata: {second}\n\ndata: [DONE]\n\n"))
        }
    };
    let host_openai = host(json!({}), openai);
    let (status, _, body) = run(&host_openai, chat("openai", true));
    assert_eq!(status, 200);
    assert!(body.contains("\"content\":\"ok\""), "the events before it are forwarded");
    assert!(body.contains("limits.max_sse_event_bytes") && body.contains("upstream_invalid_response"), "{}", &body[..body.len().min(500)]);
    assert!(!body.contains("[DONE]") && !body.contains("yyyy"));
    let events = host_openai.events();
    assert_eq!(events.last().unwrap().outcome, Outcome::StreamError);

    // The same cap for a translating provider's stream (the shared SSE decoder).
    let host_anthropic = host(json!({}), move |_| {
        let delta = json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": huge } });
        respond(200, "text/event-stream", format!("event: content_block_delta\ndata: {delta}\n\n"))
    });
    let (_, _, body) = run(&host_anthropic, chat("anthropic", true));
    assert!(body.contains("limits.max_sse_event_bytes"), "{}", &body[..body.len().min(500)]);
}

#[test]
fn an_html_page_sent_with_200_falls_back_to_the_next_target() {
    let html = "<html><body>Bad gateway</body></html>";
    let upstream = move |request: &OutboundRequest| {
        if request.url.contains("openai.test") {
            return respond(200, "text/html", html);
        }
        if serde_json::from_slice::<Value>(&request.body).unwrap()["stream"] == true {
            let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": "from backup" } }] });
            respond(200, "text/event-stream", format!("data: {chunk}\n\ndata: [DONE]\n\n"))
        } else {
            let body = json!({ "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "from backup" }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3 } });
            respond(200, "application/json", body.to_string())
        }
    };
    let host = host(json!({}), upstream);
    for stream in [false, true] {
        let (status, headers, body) = run(&host, chat("routed", stream));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("from backup"), "{body}");
        let route = headers.iter().find(|(k, _)| k == "x-gateway-route").map(|(_, v)| v.as_str()).unwrap_or_default();
        assert!(route.contains("target=second") && route.contains("fallback(upstream_invalid_response@first)"), "{route}");
    }
    // With nowhere to fall back to, the client gets a clear 502 (also when the body claims JSON).
    let host = self::host(json!({}), move |_| respond(200, "application/json", html));
    let (status, _, body) = run(&host, chat("openai", false));
    assert_eq!(status, 502);
    assert!(body.contains("not JSON"), "{body}");
}

#[test]
fn a_data_line_that_is_not_json_ends_an_openai_stream_with_an_error_event() {
    let host = host(json!({}), |_| {
        let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": "fine" } }] });
        respond(200, "text/event-stream", format!("data: {chunk}\n\ndata: <html>oops</html>\n\ndata: {chunk}\n\ndata: [DONE]\n\n"))
    });
    let (status, _, body) = run(&host, chat("openai", true));
    assert_eq!(status, 200);
    assert_eq!(body.matches("\"content\":\"fine\"").count(), 1, "nothing after the bad line: {body}");
    assert!(!body.contains("oops") && !body.contains("[DONE]"), "{body}");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(error["error"]["code"], "upstream_invalid_response", "{body}");
    assert_eq!(host.events().last().unwrap().outcome, Outcome::StreamError);
}
