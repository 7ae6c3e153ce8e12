//! The whole pipeline against the in-memory host: routing, config, auth, providers, streaming,
//! errors and usage events, with scripted upstreams and a virtual clock.

use std::cell::Cell;
use std::rc::Rc;

use edge::event::Outcome;
use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, BodyError, FetchError, Gateway, OutboundResponse, Request, RequestFacts, Response};
use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::StreamExt;
use serde_json::{json, Value};

const CLIENT_KEY: &str = "sk-client-web";

fn config(extra_limits: &str) -> String {
    let digest = hex_sha256(CLIENT_KEY);
    format!(
        r#"{{
        "limits": {{ "max_body_bytes": 2048, "upstream_timeout_ms": 1000, "stream_idle_timeout_ms": 500, "config_refresh_ms": 0 {extra_limits} }},
        "auth": {{ "mode": "api_keys", "consumers": [
            {{ "id": "web", "key_sha256": "{digest}", "models": ["mock", "mock-embed", "gpt", "embed"] }}
        ]}},
        "providers": {{
            "mock": {{ "kind": "mock" }},
            "up": {{ "kind": "openai", "base_url": "https://upstream.test/v1", "api_key_secret": "UP_KEY" }}
        }},
        "models": {{
            "mock": {{ "provider": "mock" }},
            "mock-embed": {{ "provider": "mock", "type": "embeddings" }},
            "gpt": {{ "provider": "up", "upstream_model": "gpt-4o-mini" }},
            "embed": {{ "provider": "up", "upstream_model": "text-embedding-3-small", "type": "embeddings" }},
            "secret-model": {{ "provider": "mock" }}
        }}
    }}"#
    )
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn host() -> MemoryHost {
    MemoryHost::new().with_config(&config("")).with_secret("UP_KEY", "sk-provider-secret")
}

fn post(path: &str, body: &str) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Authorization".into(), format!("Bearer {CLIENT_KEY}")),
        ],
        body: Body::Bytes(body.as_bytes().to_vec()),
        facts: RequestFacts { country: Some("DE".into()), colo: Some("FRA".into()), ..Default::default() },
    }
}

fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {CLIENT_KEY}"))],
        body: Body::Empty,
        facts: RequestFacts::default(),
    }
}

fn run(host: &MemoryHost, request: Request) -> Response {
    futures::executor::block_on(Gateway::new().handle(request, host))
}

fn json_of(response: Response) -> (u16, Value) {
    let status = response.status;
    let body = futures::executor::block_on(collect_body(response.body));
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn error_code(response: Response) -> (u16, String) {
    let (status, body) = json_of(response);
    (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
}

fn upstream_json(status: u16, body: Value) -> Scripted {
    Scripted::Respond(OutboundResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::Bytes(body.to_string().into_bytes()),
    })
}

const CHAT: &str = r#"{"model":"mock","messages":[{"role":"user","content":"Hello gateway"}]}"#;

#[test]
fn mock_chat_answers_with_usage_and_emits_one_event() {
    let host = host();
    let response = run(&host, post("/v1/chat/completions", CHAT));
    assert!(response.header("x-request-id").unwrap().starts_with("req_"));
    assert_eq!(response.header("x-gateway-provider"), Some("mock"));
    let (status, body) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().contains("Hello gateway"));
    let events = host.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Completed);
    assert_eq!(events[0].consumer.as_deref(), Some("web"));
    assert_eq!(events[0].country.as_deref(), Some("DE"));
    assert_eq!(events[0].usage.unwrap().total_tokens, body["usage"]["total_tokens"].as_u64().unwrap());
}

#[test]
fn openai_upstream_gets_the_provider_key_rewritten_model_and_unknown_fields() {
    let host = host().with_upstream(|_| {
        upstream_json(200, json!({"id": "x", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}))
    });
    let body = r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"vendor_knob":{"deep":[1,2,3]},"temperature":0.2}"#;
    let response = run(&host, post("/v1/chat/completions", body));
    let (status, answer) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(answer["id"], "x");
    let sent = &host.requests()[0];
    assert_eq!(sent.url, "https://upstream.test/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-provider-secret"));
    assert!(!format!("{:?}", sent.headers).contains(CLIENT_KEY), "the client's key is never forwarded");
    let forwarded = sent.json();
    assert_eq!(forwarded["model"], "gpt-4o-mini");
    assert_eq!(forwarded["vendor_knob"], json!({"deep": [1, 2, 3]}));
    assert_eq!(forwarded["temperature"], 0.2);
    assert_eq!(host.events()[0].usage.unwrap().input_tokens, 9);
}

#[test]
fn client_errors_have_status_and_code() {
    let host = host();
    let cases: Vec<(Request, u16, &str)> = vec![
        (post("/v1/chat/completions", "{not json"), 400, "invalid_json"),
        (post("/v1/chat/completions", ""), 400, "invalid_json"),
        (post("/v1/chat/completions", r#"{"model":"mock","messages":[]}"#), 400, "invalid_request"),
        (post("/v1/chat/completions", r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#), 404, "model_not_found"),
        (post("/v1/chat/completions", r#"{"model":"secret-model","messages":[{"role":"user","content":"x"}]}"#), 403, "model_not_allowed"),
        (post("/v1/chat/completions", r#"{"model":"mock-embed","messages":[{"role":"user","content":"x"}]}"#), 400, "unsupported_operation"),
        (post("/v1/chat/completions", &format!(r#"{{"model":"mock","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(3000))), 413, "body_too_large"),
        (post("/v1/nothing", "{}"), 404, "not_found"),
        (get("/v1/chat/completions"), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        assert_eq!(error_code(run(&host, request)), (status, code.to_string()));
    }
    let mut wrong_type = post("/v1/chat/completions", CHAT);
    wrong_type.headers[0].1 = "text/plain".into();
    assert_eq!(error_code(run(&host, wrong_type)), (415, "unsupported_content_type".into()));
    let mut declared_too_big = post("/v1/chat/completions", CHAT);
    declared_too_big.headers.push(("content-length".into(), "999999".into()));
    assert_eq!(error_code(run(&host, declared_too_big)), (413, "body_too_large".into()));
    assert!(host.events().iter().all(|e| e.outcome == Outcome::Failed));
}

#[test]
fn authentication_failures_are_401_and_never_echo_the_key() {
    let host = host();
    let mut missing = post("/v1/chat/completions", CHAT);
    missing.headers.retain(|(k, _)| k != "Authorization");
    let response = run(&host, missing);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_eq!(error_code(response), (401, "missing_api_key".into()));

    let mut wrong = post("/v1/chat/completions", CHAT);
    wrong.headers[1].1 = "Bearer sk-guess-1234".into();
    let (status, body) = json_of(run(&host, wrong));
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(!body.to_string().contains("sk-guess"));

    let mut x_api_key = post("/v1/chat/completions", CHAT);
    x_api_key.headers[1] = ("x-api-key".into(), CLIENT_KEY.into());
    assert_eq!(run(&host, x_api_key).status, 200);
}

#[test]
fn upstream_failures_map_to_gateway_errors_without_leaking() {
    let statuses = [
        (500, 502, "upstream_error"),
        (503, 502, "upstream_error"),
        (429, 429, "upstream_error"),
        (401, 502, "upstream_error"),
    ];
    for (upstream, status, code) in statuses {
        let host = host().with_upstream(move |_| {
            Scripted::Respond(OutboundResponse {
                status: upstream,
                headers: vec![("retry-after".into(), "7".into())],
                body: Body::Bytes(br#"{"error":{"message":"Incorrect API key provided: sk-pro***ret","type":"invalid_request_error"}}"#.to_vec()),
            })
        });
        let response = run(&host, post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#));
        let retry_after = response.header("retry-after").map(str::to_string);
        let (got_status, body) = json_of(response);
        assert_eq!((got_status, body["error"]["code"].as_str().unwrap()), (status, code), "upstream {upstream}");
        assert!(!body.to_string().contains("sk-pro"), "upstream {upstream} leaked its body");
        if upstream == 429 {
            assert_eq!(retry_after.as_deref(), Some("7"));
        }
    }

    // A client-caused upstream 400 is forwarded as the upstream wrote it.
    let with_400 = host().with_upstream(|_| {
        upstream_json(400, json!({"error": {"message": "Invalid 'temperature'", "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}}))
    });
    let (status, body) = json_of(run(&with_400, post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#)));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "temperature");

    let unreachable = host().with_upstream(|_| Scripted::Fail(FetchError::Connect("dns".into())));
    assert_eq!(
        error_code(run(&unreachable, post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#))),
        (502, "upstream_unreachable".into())
    );

    let garbled = host().with_upstream(|_| Scripted::Respond(OutboundResponse { status: 200, headers: vec![], body: Body::Bytes(b"<html>".to_vec()) }));
    assert_eq!(
        error_code(run(&garbled, post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#))),
        (502, "upstream_invalid_response".into())
    );
}

#[test]
fn missing_provider_secret_is_a_500_naming_the_secret_not_a_value() {
    let host = MemoryHost::new().with_config(&config("")).with_upstream(|_| Scripted::Hang);
    let (status, body) = json_of(run(&host, post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#)));
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "missing_secret");
    assert!(body["error"]["message"].as_str().unwrap().contains("UP_KEY"));
    assert!(host.requests().is_empty());
}

#[test]
fn upstream_timeout_is_a_504_on_the_virtual_clock() {
    let host = host().with_upstream(|_| Scripted::Hang);
    let mut pool = LocalPool::new();
    let result = Rc::new(std::cell::RefCell::new(None));
    let (h, r) = (host.clone(), result.clone());
    pool.spawner()
        .spawn_local(async move {
            let response = Gateway::new()
                .handle(post("/v1/chat/completions", r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#), &h)
                .await;
            *r.borrow_mut() = Some(response);
        })
        .unwrap();
    pool.run_until_stalled();
    assert!(result.borrow().is_none(), "still waiting before the timeout");
    host.advance(999);
    pool.run_until_stalled();
    assert!(result.borrow().is_none());
    host.advance(1);
    pool.run_until_stalled();
    let response = result.borrow_mut().take().expect("timed out");
    assert_eq!(error_code(response), (504, "upstream_timeout".into()));
}

/// A streamed upstream the test feeds chunk by chunk; records whether it was dropped.
struct ScriptedStream {
    sender: mpsc::UnboundedSender<Result<Vec<u8>, BodyError>>,
    dropped: Rc<Cell<bool>>,
}

fn streaming_host() -> (MemoryHost, ScriptedStream) {
    let (sender, receiver) = mpsc::unbounded();
    let dropped = Rc::new(Cell::new(false));
    let receiver = Rc::new(std::cell::RefCell::new(Some(receiver)));
    let flag = dropped.clone();
    let host = host().with_upstream(move |_| {
        let receiver = receiver.borrow_mut().take().expect("one streamed call");
        let guard = DropFlag(flag.clone());
        let stream = receiver.map(move |chunk| {
            let _keep = &guard;
            chunk
        });
        Scripted::Respond(OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Body::Stream(Box::pin(stream)),
        })
    });
    (host, ScriptedStream { sender, dropped })
}

struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn chunk(content: &str) -> Vec<u8> {
    format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}], "usage": null})).into_bytes()
}

/// A streamed chat request answered by a scripted upstream the test feeds: the host, the
/// upstream's sender, the executor and the client's body.
fn open_stream() -> (MemoryHost, ScriptedStream, LocalPool, edge::ByteStream) {
    let (host, upstream) = streaming_host();
    let mut pool = LocalPool::new();
    let response = pool.run_until(Gateway::new().handle(post("/v1/chat/completions", STREAM_CHAT), &host));
    assert_eq!(response.status, 200);
    let Body::Stream(body) = response.body else { panic!("not streamed") };
    (host, upstream, pool, body)
}

const STREAM_CHAT: &str = r#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true}"#;

#[test]
fn stream_chunks_reach_the_client_before_the_upstream_finishes() {
    let (host, upstream) = streaming_host();
    let mut pool = LocalPool::new();
    let response = pool.run_until(Gateway::new().handle(post("/v1/chat/completions", STREAM_CHAT), &host));
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").unwrap().starts_with("text/event-stream"));
    let Body::Stream(mut body) = response.body else { panic!("not streamed") };

    upstream.sender.unbounded_send(Ok(chunk("Hel"))).unwrap();
    let first = pool.run_until(body.next()).unwrap().unwrap();
    assert!(String::from_utf8(first).unwrap().contains("\"Hel\""));

    upstream.sender.unbounded_send(Ok(chunk("lo"))).unwrap();
    let usage = json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
    upstream.sender.unbounded_send(Ok(format!("data: {usage}\n\ndata: [DONE]\n\n").into_bytes())).unwrap();
    drop(upstream.sender);
    let rest: Vec<u8> = pool.run_until(body.map(|c| c.unwrap()).concat());
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("\"lo\""));
    assert!(!rest.contains("usage"), "the client did not ask for usage: {rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"));

    let sent = host.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "the gateway asks for usage upstream");
    let events = host.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Completed);
    assert_eq!(events[0].usage.unwrap().total_tokens, 6);
}

#[test]
fn a_stream_that_breaks_after_the_200_ends_with_an_error_event() {
    let (host, upstream, mut pool, body) = open_stream();
    upstream.sender.unbounded_send(Ok(chunk("partial"))).unwrap();
    upstream.sender.unbounded_send(Err(BodyError("connection reset".into()))).unwrap();
    let all = String::from_utf8(pool.run_until(body.map(|c| c.unwrap()).concat())).unwrap();
    assert!(all.contains("\"partial\""));
    let last = all.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert!(!all.contains("[DONE]"));
    assert_eq!(host.events()[0].outcome, Outcome::StreamError);
}

#[test]
fn a_stream_that_ends_without_done_is_reported_as_broken() {
    let (_host, upstream, mut pool, body) = open_stream();
    upstream.sender.unbounded_send(Ok(chunk("cut"))).unwrap();
    drop(upstream.sender);
    let all = String::from_utf8(pool.run_until(body.map(|c| c.unwrap()).concat())).unwrap();
    assert!(all.contains("upstream_stream_error"), "{all}");
}

#[test]
fn an_idle_stream_times_out_with_an_error_event_and_cancels_upstream() {
    let (host, upstream, mut pool, mut body) = open_stream();
    upstream.sender.unbounded_send(Ok(chunk("a"))).unwrap();
    pool.run_until(body.next()).unwrap().unwrap();
    let next = Rc::new(std::cell::RefCell::new(None));
    let slot = next.clone();
    pool.spawner()
        .spawn_local(async move {
            let rest: Vec<u8> = body.map(|c| c.unwrap()).concat().await;
            *slot.borrow_mut() = Some(String::from_utf8(rest).unwrap());
        })
        .unwrap();
    pool.run_until_stalled();
    host.advance(500);
    pool.run_until_stalled();
    let rest = next.borrow_mut().take().expect("ended after the idle timeout");
    assert!(rest.contains("upstream_timeout"), "{rest}");
    assert!(upstream.dropped.get(), "the upstream body was dropped (cancelled)");
}

#[test]
fn client_disconnect_cancels_the_upstream_and_is_recorded() {
    let (host, upstream, mut pool, mut body) = open_stream();
    upstream.sender.unbounded_send(Ok(chunk("a"))).unwrap();
    pool.run_until(body.next()).unwrap().unwrap();
    assert!(!upstream.dropped.get());
    drop(body); // the client went away
    assert!(upstream.dropped.get(), "dropping the response cancels the upstream body");
    assert_eq!(host.events()[0].outcome, Outcome::ClientDisconnected);
}

#[test]
fn mock_stream_strips_usage_unless_asked() {
    let host = host();
    let plain = run(&host, post("/v1/chat/completions", r#"{"model":"mock","messages":[{"role":"user","content":"hi"}],"stream":true}"#));
    let plain = String::from_utf8(futures::executor::block_on(collect_body(plain.body))).unwrap();
    assert!(!plain.contains("\"usage\""));
    let asked = run(
        &host,
        post("/v1/chat/completions", r#"{"model":"mock","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#),
    );
    let asked = String::from_utf8(futures::executor::block_on(collect_body(asked.body))).unwrap();
    assert!(asked.contains("\"choices\":[]"));
    assert!(asked.contains("\"usage\":null"));
    assert!(asked.ends_with("data: [DONE]\n\n"));
    let events = host.events();
    assert!(events.iter().all(|e| e.usage.is_some() && e.outcome == Outcome::Completed));
}

#[test]
fn embeddings_through_mock_and_upstream() {
    let host = host().with_upstream(|_| {
        upstream_json(200, json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
    });
    let (status, body) = json_of(run(&host, post("/v1/embeddings", r#"{"model":"mock-embed","input":"hello","dimensions":4}"#)));
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 4);
    let (status, body) = json_of(run(&host, post("/v1/embeddings", r#"{"model":"embed","input":["a"],"encoding_format":"float"}"#)));
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["embedding"][1], 0.2);
    assert_eq!(host.requests()[0].json()["model"], "text-embedding-3-small");
    assert_eq!(host.requests()[0].url, "https://upstream.test/v1/embeddings");
    let (status, _) = json_of(run(&host, post("/v1/embeddings", r#"{"model":"mock","input":"x"}"#)));
    assert_eq!(status, 400);
}

#[test]
fn models_are_listed_per_consumer() {
    let host = host();
    let (status, body) = json_of(run(&host, get("/v1/models")));
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["embed", "gpt", "mock", "mock-embed"], "secret-model is not allowed for this consumer");
    let (status, model) = json_of(run(&host, get("/v1/models/gpt")));
    assert_eq!((status, model["owned_by"].as_str()), (200, Some("up")));
    assert_eq!(error_code(run(&host, get("/v1/models/secret-model"))), (404, "model_not_found".into()));
}

#[test]
fn kv_config_overrides_the_shipped_one_and_survives_a_kv_outage() {
    let host = host();
    let gateway = Gateway::new();
    let kv_config = config("").replace("\"secret-model\"", "\"kv-only\"").replace("\"mock\", \"mock-embed\"", "\"kv-only\", \"mock\", \"mock-embed\"");
    host.kv_set("config", &kv_config);
    let body = r#"{"model":"kv-only","messages":[{"role":"user","content":"x"}]}"#;
    let response = futures::executor::block_on(gateway.handle(post("/v1/chat/completions", body), &host));
    assert_eq!(response.status, 200);
    host.break_kv(true);
    let response = futures::executor::block_on(gateway.handle(post("/v1/chat/completions", body), &host));
    assert_eq!(response.status, 200, "the last good config is kept while KV is down");
    let cold = Gateway::new();
    let response = futures::executor::block_on(cold.handle(post("/v1/chat/completions", body), &host));
    assert_eq!(error_code(response), (500, "config_unavailable".into()), "no config at all fails closed");
}

#[test]
fn an_invalid_config_is_a_500_naming_the_field() {
    let host = MemoryHost::new().with_config(r#"{"providers": {"m": {"kind": "mock"}}, "models": {"x": {"provider": "m", "colour": "red"}}}"#);
    let (status, body) = json_of(run(&host, post("/v1/chat/completions", CHAT)));
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "config_invalid");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("models.x") && message.contains("colour"), "{message}");
}

#[test]
fn an_invalid_config_shows_clients_the_fields_never_the_values_and_logs_the_details() {
    let host = MemoryHost::new().with_config(
        r#"{"auth":{"mode":"none"},"providers":{"up":{"kind":"openai","base_url":"ftp://deploy:hunter2@10.0.0.1/v1"}},"models":{"x":{"provider":"up"}}}"#,
    );
    let (status, body) = json_of(run(&host, post("/v1/chat/completions", CHAT)));
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("config_invalid")));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("providers.up.base_url"), "{message}");
    assert!(!body.to_string().contains("hunter2") && !body.to_string().contains("10.0.0.1"), "{body}");
    let event = host.events().pop().unwrap();
    assert!(event.error_detail.as_deref().is_some_and(|d| d.contains("providers.up.base_url: must be")), "{event:?}");
}

#[test]
fn cors_preflight_and_headers_when_configured() {
    let host = MemoryHost::new().with_config(r#"{"auth":{"mode":"none"},"cors":{"allow_origins":["https://app.example"]},"providers":{"m":{"kind":"mock"}},"models":{"mock":{"provider":"m"}}}"#);
    let preflight = Request {
        method: "OPTIONS".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("origin".into(), "https://app.example".into()), ("access-control-request-headers".into(), "authorization, content-type".into())],
        body: Body::Empty,
        facts: RequestFacts::default(),
    };
    let response = run(&host, preflight);
    assert_eq!(response.status, 204);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://app.example"));
    let mut request = post("/v1/chat/completions", CHAT);
    request.headers.push(("origin".into(), "https://evil.example".into()));
    let response = run(&host, request);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), None);
}

/// Mutated and truncated bodies, odd headers and paths: every answer is a well-formed response,
/// never a panic. A small deterministic generator keeps this reproducible.
#[test]
fn arbitrary_input_never_panics_and_always_gets_a_json_answer() {
    let seeds = [
        CHAT,
        STREAM_CHAT,
        r#"{"model":"mock-embed","input":["a",[1,2]],"dimensions":3,"encoding_format":"base64"}"#,
        r#"{"model":"mock","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"n":2,"max_tokens":1}"#,
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let host = host().with_upstream(|_| upstream_json(200, json!({"choices": []})));
    let gateway = Gateway::new();
    for i in 0..3000 {
        let seed = seeds[i % seeds.len()].as_bytes();
        let mut body = seed.to_vec();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % body.len().max(1);
            match next() % 4 {
                0 => body.truncate(at),
                1 if !body.is_empty() => {
                    let last = body.len() - 1;
                    body[at.min(last)] = (next() % 256) as u8;
                }
                2 => {
                    let len = body.len();
                    body.insert(at.min(len), b"{}[]\",:0-e\\"[(next() % 11) as usize]);
                }
                _ => body.extend_from_slice(b"\xff\xfe"),
            }
        }
        let path = ["/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/models/mock", "/v1//x"][(next() % 5) as usize];
        let mut request = post(path, "");
        request.body = Body::Bytes(body);
        if next() % 7 == 0 {
            request.method = "GET".into();
        }
        let response = futures::executor::block_on(gateway.handle(request, &host));
        assert!((200..600).contains(&response.status));
        let streamed = response.header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
        let bytes = futures::executor::block_on(collect_body(response.body));
        if !streamed {
            assert!(serde_json::from_slice::<Value>(&bytes).is_ok(), "case {i}: not JSON: {}", String::from_utf8_lossy(&bytes));
        }
    }
}

/// Streams are not cut at a fixed wall time: only a gap longer than the idle timeout ends them.
#[test]
fn a_long_stream_with_steady_chunks_outlives_the_request_timeout() {
    let (host, upstream, mut pool, mut body) = open_stream();
    for i in 0..10 {
        let mut next = body.next();
        assert!(futures::FutureExt::now_or_never(&mut next).is_none(), "waiting, idle timer running");
        host.advance(400); // 10 x 400 ms = 4 s, four times the 1 s upstream timeout
        upstream.sender.unbounded_send(Ok(chunk(&format!("part{i} ")))).unwrap();
        let piece = pool.run_until(next).unwrap().unwrap();
        assert!(String::from_utf8(piece).unwrap().contains(&format!("part{i}")));
    }
    upstream.sender.unbounded_send(Ok(b"data: [DONE]\n\n".to_vec())).unwrap();
    drop(upstream.sender);
    let rest = String::from_utf8(pool.run_until(body.map(|c| c.unwrap()).concat())).unwrap();
    assert_eq!(rest, "data: [DONE]\n\n");
    assert_eq!(host.events()[0].outcome, Outcome::Completed);
}

#[test]
fn repeated_failed_authentication_from_one_address_is_slowed_without_locking_out_the_key() {
    let host = host();
    let from = |ip: &str, key: &str| {
        let mut request = get("/v1/models");
        request.headers = vec![("authorization".into(), format!("Bearer {key}")), ("cf-connecting-ip".into(), ip.into())];
        request
    };
    let send = |request| host.block_on(Gateway::new().handle(request, &host));
    for i in 0..edge::pipeline::throttle::FAILURES_PER_MINUTE {
        assert_eq!(error_code(send(from("198.51.100.7", "sk-guess"))).0, 401, "failure {i}");
    }
    let started = edge::Host::now_ms(&host);
    let slowed = send(from("198.51.100.7", "sk-guess"));
    assert!(edge::Host::now_ms(&host) - started >= edge::pipeline::throttle::TARPIT_MS, "answered after the delay");
    assert!(slowed.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("retry-after")));
    assert_eq!(error_code(slowed), (429, "rate_limit_exceeded".into()));
    let (status, _) = json_of(send(from("198.51.100.7", CLIENT_KEY)));
    assert_eq!(status, 200, "the legitimate key from the same address still works");
    assert_eq!(error_code(send(from("192.0.2.1", "sk-guess"))).0, 401, "another address is not slowed");
}
