//! The request log and feedback through the whole pipeline against the in-memory host: an
//! opted-in consumer's requests are logged with redacted bodies (whole and streamed answers), a
//! consumer that did not opt in never has an entry written, retention drops old entries,
//! `/admin/requests` filters and pages, and `POST /v1/feedback` is checked against the request's
//! owner and shows in `/admin/stats`.

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, RequestFacts, Response};
use futures::executor::LocalPool;
use policy::reqlog::LogOp;
use serde_json::{json, Value};

const ADMIN: &str = "adm-0123456789abcdef0123456789abcdef";
const LOGGED: &str = "sk-client-logged";
const QUIET: &str = "sk-client-quiet";
const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const API_KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const DAY_MS: u64 = 86_400_000;

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn host(max_body_bytes: usize) -> MemoryHost {
    let config = json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "logged", "key_sha256": hex_sha256(LOGGED), "request_log": { "enabled": true, "max_body_bytes": max_body_bytes, "retention_days": 2 } },
            { "id": "quiet", "key_sha256": hex_sha256(QUIET) }
        ] },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": { "up": { "kind": "openai", "base_url": "https://upstream.test/v1" } },
        "models": { "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" }, "other": { "provider": "up", "upstream_model": "gpt-4o" } }
    });
    // The answer repeats the secrets, so the response body needs redacting too.
    let answer_text = format!("noted: {EMAIL} {CARD} {API_KEY} {JWT}");
    MemoryHost::new().with_config(&config.to_string()).with_upstream(move |request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
        let respond = |content_type: &str, bytes: Vec<u8>| {
            Scripted::Respond(OutboundResponse { status: 200, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(bytes) })
        };
        if body["stream"].as_bool() == Some(true) {
            let (a, b) = answer_text.split_at(answer_text.len() / 2);
            let chunk = |c: &str, end: Option<&str>| {
                format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": end}]}))
            };
            let sse = format!("{}{}data: {}\n\ndata: [DONE]\n\n", chunk(a, None), chunk(b, Some("stop")), json!({"choices": [], "usage": usage}));
            respond("text/event-stream", sse.into_bytes())
        } else {
            let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer_text}, "finish_reason": "stop"}], "usage": usage});
            respond("application/json", answer.to_string().into_bytes())
        }
    })
}

fn request(method: &str, path: &str, key: &str, body: Option<Value>) -> Request {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path, None),
    };
    Request {
        method: method.into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {key}"))],
        body: body.map_or(Body::Empty, |b| Body::Bytes(b.to_string().into_bytes())),
        facts: RequestFacts { query, ..RequestFacts::default() },
    }
}

fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> (Response, Value) {
    let mut pool = LocalPool::new();
    let mut response = pool.run_until(gateway.handle(request, host));
    let body = pool.run_until(collect_body(std::mem::replace(&mut response.body, Body::Empty)));
    pool.run_until(host.run_background());
    let text = String::from_utf8_lossy(&body).into_owned();
    (response, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A chat request with the secrets in the prompt; its request id.
fn chat(gateway: &Gateway, host: &MemoryHost, key: &str, model: &str, stream: bool) -> String {
    let content = format!("mail {EMAIL}, card {CARD}, key {API_KEY}, token {JWT}");
    let body = json!({ "model": model, "stream": stream, "messages": [{ "role": "user", "content": content }] });
    let (response, _) = run(gateway, host, request("POST", "/v1/chat/completions", key, Some(body)));
    assert_eq!(response.status, 200);
    response.header("x-request-id").unwrap().to_string()
}

fn admin(gateway: &Gateway, host: &MemoryHost, path: &str) -> (u16, Value) {
    let (response, body) = run(gateway, host, request("GET", path, ADMIN, None));
    (response.status, body)
}

fn feedback(gateway: &Gateway, host: &MemoryHost, key: &str, body: Value) -> (u16, Value) {
    let (response, body) = run(gateway, host, request("POST", "/v1/feedback", key, Some(body)));
    (response.status, body)
}

fn assert_redacted(text: &str) {
    for secret in [EMAIL, CARD, API_KEY, JWT, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"] {
        assert!(!text.contains(secret), "{secret} was stored: {text}");
    }
}

#[test]
fn opted_in_requests_are_logged_redacted_and_others_never() {
    let host = host(32 * 1024);
    let gateway = Gateway::new();
    let whole = chat(&gateway, &host, LOGGED, "gpt", false);
    let streamed = chat(&gateway, &host, LOGGED, "gpt", true);
    let quiet = chat(&gateway, &host, QUIET, "gpt", false);

    // The quiet consumer's request left an ownership row (for feedback) and no entry.
    for op in host.request_log_ops() {
        if let LogOp::Record { index, entry, .. } = op {
            let index = index.expect("every consumer request leaves an ownership row");
            assert_eq!(entry.is_some(), index.consumer == "logged", "{index:?}");
        }
    }
    assert_eq!(host.request_index_rows(), 3);
    let entries = host.request_log_entries();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.request_id != quiet));

    let (status, one) = admin(&gateway, &host, &format!("/admin/requests/{whole}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["consumer"], "logged");
    assert_eq!(one["model"], "gpt");
    assert_eq!(one["outcome"], "completed");
    assert_eq!(one["usage"]["input_tokens"], 7);
    assert_eq!(one["truncated"], false);
    let (request_body, response_body) = (one["request_body"].as_str().unwrap(), one["response_body"].as_str().unwrap());
    assert!(request_body.contains("[EMAIL]") && request_body.contains("[CARD]") && request_body.contains("[SECRET]"), "{request_body}");
    assert!(response_body.contains("noted: [EMAIL]"), "{response_body}");
    for entry in &entries {
        assert_redacted(&serde_json::to_string(entry).unwrap());
    }

    // The streamed answer is stored assembled: one completion with the whole text.
    let (_, stream_entry) = admin(&gateway, &host, &format!("/admin/requests/{streamed}"));
    assert_eq!(stream_entry["stream"], true);
    let assembled: Value = serde_json::from_str(stream_entry["response_body"].as_str().unwrap_or_else(|| panic!("no response body: {stream_entry}"))).unwrap();
    assert!(assembled["choices"][0]["message"]["content"].as_str().unwrap().starts_with("noted: [EMAIL] [CARD]"), "{assembled}");

    assert_eq!(admin(&gateway, &host, &format!("/admin/requests/{quiet}")).0, 404);
    // Only the admin key opens it.
    assert_eq!(run(&gateway, &host, request("GET", "/admin/requests", LOGGED, None)).0.status, 401);
}

#[test]
fn bodies_are_cut_at_max_body_bytes() {
    let host = host(40);
    let gateway = Gateway::new();
    let id = chat(&gateway, &host, LOGGED, "gpt", false);
    let (_, entry) = admin(&gateway, &host, &format!("/admin/requests/{id}"));
    assert_eq!(entry["truncated"], true);
    assert!(entry["request_body"].as_str().unwrap().len() <= 40);
    assert_redacted(&entry.to_string());
}

#[test]
fn listing_filters_pages_newest_first_and_retention_drops_old_entries() {
    let host = host(1024);
    let gateway = Gateway::new();
    let mut ids = Vec::new();
    for model in ["gpt", "other", "gpt", "gpt", "other"] {
        ids.push(chat(&gateway, &host, LOGGED, model, false));
        host.advance(1000);
    }
    let (status, page) = admin(&gateway, &host, "/admin/requests?limit=2");
    assert_eq!(status, 200, "{page}");
    let listed = |page: &Value| page["data"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(listed(&page), [ids[4].clone(), ids[3].clone()]);
    assert!(page["data"][0].get("request_body").is_none(), "listings carry no bodies");
    let mut seen = listed(&page);
    let mut cursor = page["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (_, next) = admin(&gateway, &host, &format!("/admin/requests?limit=2&cursor={cursor}"));
        seen.extend(listed(&next));
        match next["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>(), "every entry once, newest first");
    let (_, gpt) = admin(&gateway, &host, "/admin/requests?model=gpt&consumer=logged&outcome=completed");
    assert_eq!(listed(&gpt), [ids[3].clone(), ids[2].clone(), ids[0].clone()]);
    assert_eq!(listed(&admin(&gateway, &host, "/admin/requests?consumer=quiet").1).len(), 0);
    for bad in ["limit=0", "limit=201", "cursor=zz", "outcome=great", "from=yesterday", "colour=red", "from=2000&to=1000"] {
        let (status, body) = admin(&gateway, &host, &format!("/admin/requests?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    // Three days later (retention 2 days), the next write deletes every older entry.
    host.advance(3 * DAY_MS);
    let fresh = chat(&gateway, &host, LOGGED, "gpt", false);
    assert_eq!(host.request_log_entries().iter().map(|e| e.request_id.clone()).collect::<Vec<_>>(), [fresh]);
}

#[test]
fn feedback_is_taken_from_the_owner_once_and_rolls_up() {
    let host = host(1024);
    let gateway = Gateway::new();
    let id = chat(&gateway, &host, QUIET, "gpt", false);
    let logged = chat(&gateway, &host, LOGGED, "gpt", false);

    let (status, body) = feedback(&gateway, &host, LOGGED, json!({ "request_id": id, "score": 1 }));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("request_not_found")), "another consumer's request is not revealed");
    assert_eq!(feedback(&gateway, &host, QUIET, json!({ "request_id": "req_unknown", "score": 1 })).0, 404);
    for (bad, param) in [
        (json!({ "request_id": id, "score": 2 }), "score"),
        (json!({ "request_id": id, "score": "good" }), "score"),
        (json!({ "request_id": id }), "score"),
        (json!({ "score": 1 }), "request_id"),
        (json!({ "request_id": id, "label": "x".repeat(65) }), "label"),
        (json!({ "request_id": id, "score": 1, "comment": "c".repeat(2001) }), "comment"),
        (json!({ "request_id": id, "score": 1, "stars": 5 }), "score"),
    ] {
        let (status, body) = feedback(&gateway, &host, QUIET, bad.clone());
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["param"], param, "{bad}: {body}");
    }
    let (status, body) = feedback(&gateway, &host, QUIET, json!({ "request_id": id, "score": 1, "label": "helpful", "comment": "thanks" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(feedback(&gateway, &host, QUIET, json!({ "request_id": id, "score": 0 })).0, 409, "one feedback per request");
    assert_eq!(feedback(&gateway, &host, LOGGED, json!({ "request_id": logged, "score": 0, "label": "wrong" })).0, 200);
    // A logged request shows its feedback.
    let (_, entry) = admin(&gateway, &host, &format!("/admin/requests/{logged}"));
    assert_eq!(entry["feedback"]["label"], "wrong");

    let (status, stats) = admin(&gateway, &host, "/admin/stats?group_by=model");
    assert_eq!(status, 200, "{stats}");
    let totals = &stats["totals"];
    assert_eq!(totals["feedback_count"], 2, "{stats}");
    assert_eq!(totals["feedback_score_avg"], 0.5);
    assert_eq!(totals["feedback_labels"], json!({ "helpful": 1, "wrong": 1 }));
    let gpt = stats["series"].as_array().unwrap().iter().find(|s| s["group"] == "gpt").unwrap();
    assert_eq!(gpt["totals"]["feedback_count"], 2);
    assert_eq!(gpt["totals"]["requests"], 2, "feedback counts no request of its own");
}
