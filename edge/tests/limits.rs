//! Rate limits and budgets through the whole pipeline against the in-memory host: admission
//! before the call, 429 with OpenAI's headers, settlement from the provider's usage (streams
//! included), release on failure, jurisdiction pinning, and the store's failure modes.

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Request, RequestFacts, Response};
use policy::limits::{CounterOp, CounterReply, Metric};
use serde_json::{json, Value};

const ALICE: &str = "sk-client-alice";
const BOB: &str = "sk-client-bob";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(limits: Value) -> String {
    let mut doc = json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "alice", "key_sha256": hex_sha256(ALICE), "tenant": "acme-eu" },
            { "id": "bob", "key_sha256": hex_sha256(BOB) }
        ]},
        "tenants": { "acme-eu": { "jurisdiction": "eu" } },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "mock": { "provider": "mock" } },
        "prices": { "mock": { "input": "1.00", "output": "2.00" } }
    });
    for (k, v) in limits.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc.to_string()
}

fn chat(key: &str, body: Value) -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {key}"))],
        body: Body::Bytes(body.to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> (Response, Value) {
    futures::executor::block_on(async {
        let mut response = gateway.handle(request, host).await;
        let body = collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
        host.run_background().await;
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (response, value)
    })
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn status(host: &MemoryHost, subject: &str, jurisdiction: Option<&str>) -> Vec<policy::limits::LimitStatus> {
    match futures::executor::block_on(edge::Host::counter(host, subject, jurisdiction, &CounterOp::Status)) {
        Ok(CounterReply::Status { limits }) => limits,
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn request_limit_denies_with_429_retry_after_and_openai_headers() {
    let host = MemoryHost::new().with_config(&config(json!({
        "rate_limits": [{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 2 }]
    })));
    let gateway = Gateway::new();
    let body = json!({ "model": "mock", "messages": [{ "role": "user", "content": "hi" }] });
    let (first, _) = run(&gateway, &host, chat(BOB, body.clone()));
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), Some("1"));
    assert!(header(&first, "x-ratelimit-reset-requests").is_some());
    let (second, _) = run(&gateway, &host, chat(BOB, body.clone()));
    assert_eq!(second.status, 200);
    let (third, error) = run(&gateway, &host, chat(BOB, body.clone()));
    assert_eq!(third.status, 429);
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    let retry: u64 = header(&third, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(header(&third, "x-ratelimit-remaining-requests"), Some("0"));
    // Alice is another subject.
    let (other, _) = run(&gateway, &host, chat(ALICE, body));
    assert_eq!(other.status, 200);
}

#[test]
fn token_usage_is_settled_from_the_provider_and_the_next_window_resets() {
    let host = MemoryHost::new().with_config(&config(json!({
        "rate_limits": [{ "scope": ["consumer", "model"], "metric": "total_tokens", "window": "minute", "limit": 100000 }]
    })));
    let gateway = Gateway::new();
    let (response, body) = run(&gateway, &host, chat(BOB, json!({ "model": "mock", "max_tokens": 50, "messages": [{ "role": "user", "content": "count me" }] })));
    assert_eq!(response.status, 200);
    let total = body["usage"]["total_tokens"].as_u64().unwrap();
    let limits = status(&host, "consumer:bob|model:mock", None);
    let tokens = limits.iter().find(|l| l.metric == Metric::TotalTokens).unwrap();
    assert_eq!(tokens.used, total, "settled at the provider's reported usage");
    assert_eq!(tokens.reserved, 0, "nothing left in flight");
}

#[test]
fn streamed_usage_is_settled_after_the_stream_ends() {
    let host = MemoryHost::new().with_config(&config(json!({
        "rate_limits": [{ "scope": ["consumer"], "metric": "output_tokens", "window": "hour", "limit": 100000 }]
    })));
    let gateway = Gateway::new();
    let (response, body) = run(&gateway, &host, chat(BOB, json!({ "model": "mock", "stream": true, "stream_options": {"include_usage": true}, "messages": [{ "role": "user", "content": "stream" }] })));
    assert_eq!(response.status, 200);
    let text = body.as_str().unwrap();
    let usage_line = text.lines().rfind(|l| l.contains("\"usage\"") && l.contains("completion_tokens")).unwrap();
    let usage: Value = serde_json::from_str(usage_line.trim_start_matches("data: ")).unwrap();
    let out = usage["usage"]["completion_tokens"].as_u64().unwrap();
    let limits = status(&host, "consumer:bob", None);
    assert_eq!(limits[0].used, out);
    assert_eq!(limits[0].reserved, 0);
}

#[test]
fn a_request_larger_than_the_limit_is_refused_without_retry_after() {
    let host = MemoryHost::new().with_config(&config(json!({
        "rate_limits": [{ "scope": ["consumer"], "metric": "output_tokens", "window": "minute", "limit": 100 }]
    })));
    let gateway = Gateway::new();
    let (response, error) = run(&gateway, &host, chat(BOB, json!({ "model": "mock", "max_tokens": 500, "messages": [{ "role": "user", "content": "x" }] })));
    assert_eq!(response.status, 429);
    assert!(header(&response, "retry-after").is_none(), "retrying cannot help");
    assert!(error["error"]["message"].as_str().unwrap().contains("alone exceeds"));
}

#[test]
fn budgets_charge_money_and_stop_hard_with_insufficient_quota() {
    // One call costs about (prompt * 1 + completion * 2) / 1e6 USD; a budget of 0.00002 USD
    // admits a small first call and refuses once it is spent.
    let host = MemoryHost::new().with_config(&config(json!({
        "budgets": [{ "scope": ["tenant"], "window": "month", "usd": "0.0002", "alerts": [50, 100] }]
    })));
    let gateway = Gateway::new();
    let body = json!({ "model": "mock", "max_tokens": 20, "messages": [{ "role": "user", "content": "spend" }] });
    let mut denied = None;
    for _ in 0..20 {
        let (response, error) = run(&gateway, &host, chat(ALICE, body.clone()));
        if response.status != 200 {
            denied = Some((response.status, error));
            break;
        }
    }
    let (code, error) = denied.expect("the budget stops the calls");
    assert_eq!(code, 429);
    assert_eq!(error["error"]["code"], "insufficient_quota");
    // The tenant's counters are pinned to its jurisdiction.
    assert!(host.counter_subjects().contains(&("tenant:acme-eu".to_string(), Some("eu".to_string()))), "{:?}", host.counter_subjects());
    let event = host.events().into_iter().find(|e| e.quota.as_ref().is_some_and(|q| q.cost_nanos.is_some())).unwrap();
    assert!(event.quota.unwrap().cost_nanos.unwrap() > 0);
}

#[test]
fn a_broken_store_fails_closed_by_default_and_open_when_configured() {
    let limit = |mode: &str| {
        config(json!({ "rate_limits": [{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 5, "on_store_error": mode }] }))
    };
    let body = json!({ "model": "mock", "messages": [{ "role": "user", "content": "x" }] });
    let closed = MemoryHost::new().with_config(&limit("closed"));
    closed.break_counters(true);
    let (response, error) = run(&Gateway::new(), &closed, chat(BOB, body.clone()));
    assert_eq!(response.status, 503);
    assert_eq!(error["error"]["code"], "quota_store_unavailable");
    assert_eq!(header(&response, "retry-after"), Some("1"));

    let open = MemoryHost::new().with_config(&limit("open"));
    open.break_counters(true);
    let (response, _) = run(&Gateway::new(), &open, chat(BOB, body));
    assert_eq!(response.status, 200);
    let event = open.events().pop().unwrap();
    assert_eq!(event.quota.unwrap().unmetered, vec!["consumer:bob".to_string()], "recorded, never silent");
}

#[test]
fn a_failed_upstream_call_releases_its_reservation() {
    let mut doc: Value = serde_json::from_str(&config(json!({
        "rate_limits": [{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1 }]
    })))
    .unwrap();
    doc["providers"]["up"] = json!({ "kind": "openai", "base_url": "https://upstream.test/v1" });
    doc["models"]["gpt"] = json!({ "provider": "up" });
    let host = MemoryHost::new().with_config(&doc.to_string());
    let gateway = Gateway::new();
    // No scripted upstream: the fetch fails to connect.
    let (response, _) = run(&gateway, &host, chat(BOB, json!({ "model": "gpt", "messages": [{ "role": "user", "content": "x" }] })));
    assert!(response.status >= 500, "{}", response.status);
    let limits = status(&host, "consumer:bob", None);
    assert!(limits.iter().all(|l| l.used == 0 && l.reserved == 0), "released, not charged: {limits:?}");
    let (again, _) = run(&gateway, &host, chat(BOB, json!({ "model": "mock", "messages": [{ "role": "user", "content": "x" }] })));
    assert_eq!(again.status, 200, "the released capacity is usable");
}

#[test]
fn budget_webhooks_are_signed_with_a_timestamped_hmac() {
    let host = MemoryHost::new()
        .with_config(&config(json!({
            "budgets": [{ "scope": ["tenant"], "window": "month", "usd": "0.0002", "alerts": [50], "webhook_url": "https://hooks.example.com/budget" }],
            "quota": { "webhook_secret": "WEBHOOK_SIGNING_KEY" }
        })))
        .with_secret("WEBHOOK_SIGNING_KEY", "whsec_test")
        .with_upstream(|_| edge::testing::Scripted::Respond(edge::OutboundResponse { status: 204, headers: Vec::new(), body: Body::Empty }));
    let gateway = Gateway::new();
    let body = json!({ "model": "mock", "max_tokens": 20, "messages": [{ "role": "user", "content": "spend" }] });
    for _ in 0..20 {
        run(&gateway, &host, chat(ALICE, body.clone()));
    }
    let hook = host.requests().into_iter().find(|r| r.url == "https://hooks.example.com/budget").expect("the alert was sent");
    let signature = hook.headers.iter().find(|(k, _)| k == "x-gateway-signature").map(|(_, v)| v.clone()).expect("signed");
    let (t, v1) = signature.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    let expected = edge::pipeline::limit::webhook_signature(b"whsec_test", t.parse().unwrap(), std::str::from_utf8(&hook.body).unwrap());
    assert_eq!(expected, signature);
    assert_eq!(v1.len(), 64);
}
