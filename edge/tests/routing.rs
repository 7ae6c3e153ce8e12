//! Multi-target routing through the whole pipeline against the in-memory host: residency as a
//! hard filter, fallback on 5xx/429/connection errors (never after a stream started), the
//! circuit breaker, conditions, and the explanation headers and usage event.

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, FetchError, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

const EU_KEY: &str = "sk-client-eu";
const US_KEY: &str = "sk-client-us";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(strategy: Value) -> String {
    json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "eu-app", "key_sha256": hex_sha256(EU_KEY), "tenant": "acme-eu" },
            { "id": "us-app", "key_sha256": hex_sha256(US_KEY) }
        ]},
        "tenants": { "acme-eu": { "jurisdiction": "eu" } },
        "providers": {
            "us-openai": { "kind": "openai", "base_url": "https://us.test/v1" },
            "eu-a": { "kind": "openai", "base_url": "https://eu-a.test/v1" },
            "eu-b": { "kind": "openai", "base_url": "https://eu-b.test/v1" }
        },
        "models": {
            "chat": {
                "targets": [
                    { "id": "us", "provider": "us-openai", "upstream_model": "gpt-4o-mini", "region": "us-east-1", "jurisdiction": "us" },
                    { "id": "eu-a", "provider": "eu-a", "upstream_model": "gpt-4o-mini", "region": "eu-central-1", "jurisdiction": "eu" },
                    { "id": "eu-b", "provider": "eu-b", "upstream_model": "gpt-4o-mini", "region": "eu-west-1", "jurisdiction": "eu" }
                ],
                "strategy": strategy,
                "circuit_breaker": { "failure_threshold": 2, "open_ms": 60000 },
                "max_attempts": 3
            }
        }
    })
    .to_string()
}

fn ok_body(from: &str) -> OutboundResponse {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("from {from}") }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    });
    OutboundResponse { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(body.to_string().into_bytes()) }
}

fn status(code: u16) -> OutboundResponse {
    let body = json!({ "error": { "message": "down", "type": "server_error" } });
    OutboundResponse { status: code, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(body.to_string().into_bytes()) }
}

fn host_with(strategy: Value, upstream: impl Fn(&str) -> Scripted + 'static) -> MemoryHost {
    MemoryHost::new().with_config(&config(strategy)).with_upstream(move |request| {
        let host = request.url.split('/').nth(2).unwrap_or_default().to_string();
        upstream(&host)
    })
}

fn chat(key: &str, country: &str, eu: bool) -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {key}"))],
        body: Body::Bytes(json!({ "model": "chat", "messages": [{ "role": "user", "content": "hi" }] }).to_string().into_bytes()),
        facts: RequestFacts { country: Some(country.into()), is_eu_country: Some(eu), ..Default::default() },
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> Answer {
    host.block_on(async {
        let response = gateway.handle(request, host).await;
        let body = collect_body(response.body).await;
        Answer { status: response.status, headers: response.headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) }
    })
}

fn ordered() -> Value {
    json!({ "type": "ordered" })
}

#[test]
fn residency_is_a_hard_filter_applied_first() {
    let host = host_with(ordered(), |h| Scripted::Respond(ok_body(h)));
    let gateway = Gateway::new();
    // The EU tenant never reaches the US target, even though it is first in the order.
    let eu = run(&gateway, &host, chat(EU_KEY, "DE", true));
    assert_eq!(eu.status, 200);
    assert_eq!(eu.body["choices"][0]["message"]["content"], "from eu-a.test");
    assert_eq!(eu.header("x-gateway-target"), Some("eu-a"));
    assert_eq!(eu.header("x-gateway-region"), Some("eu-central-1"));
    assert!(eu.header("x-gateway-route").unwrap().contains("excluded=us:residency"), "{:?}", eu.header("x-gateway-route"));
    assert!(host.requests().iter().all(|r| !r.url.contains("us.test")));
    // A caller without residency rules gets the first target.
    let us = run(&gateway, &host, chat(US_KEY, "US", false));
    assert_eq!(us.header("x-gateway-target"), Some("us"));
    let event = host.events().into_iter().find(|e| e.consumer.as_deref() == Some("eu-app")).unwrap();
    let route = event.route.unwrap();
    assert_eq!((route.target.as_str(), route.jurisdiction.as_str()), ("eu-a", "eu"));
    assert!(route.gco2e.unwrap() > 0.0);
}

#[test]
fn no_allowed_healthy_target_is_a_clear_error_never_a_silent_reroute() {
    // Both EU targets fail: the EU tenant gets an error, and the US target is never tried.
    let host = host_with(ordered(), |h| if h.starts_with("eu") { Scripted::Respond(status(503)) } else { Scripted::Respond(ok_body(h)) });
    let gateway = Gateway::new();
    let answer = run(&gateway, &host, chat(EU_KEY, "DE", true));
    assert_eq!(answer.status, 502);
    assert!(host.requests().iter().all(|r| !r.url.contains("us.test")));
    // After enough failures both EU circuits are open: 503 no_healthy_target, still not the US.
    let answer = run(&gateway, &host, chat(EU_KEY, "DE", true));
    let answer = if answer.status == 502 { run(&gateway, &host, chat(EU_KEY, "DE", true)) } else { answer };
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "no_healthy_target");
    assert!(host.requests().iter().all(|r| !r.url.contains("us.test")));
}

#[test]
fn residency_without_any_target_in_the_jurisdiction_is_403() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["tenants"]["acme-eu"] = json!({ "residency": ["ch"] });
    let host = MemoryHost::new().with_config(&doc.to_string()).with_upstream(|_| Scripted::Respond(ok_body("x")));
    let answer = run(&Gateway::new(), &host, chat(EU_KEY, "CH", false));
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body["error"]["code"], "residency_no_target");
    assert!(host.requests().is_empty(), "nothing was sent anywhere");
}

#[test]
fn falls_back_on_5xx_and_connection_errors_and_says_so() {
    let host = host_with(ordered(), |h| match h {
        "us.test" => Scripted::Respond(status(500)),
        "eu-a.test" => Scripted::Fail(FetchError::Connect("refused".into())),
        _ => Scripted::Respond(ok_body(h)),
    });
    let answer = run(&Gateway::new(), &host, chat(US_KEY, "US", false));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["choices"][0]["message"]["content"], "from eu-b.test");
    let header = answer.header("x-gateway-route").unwrap();
    assert!(header.contains("target=eu-b") && header.contains("fallback(500@us)") && header.contains("fallback(upstream_unreachable@eu-a)"), "{header}");
    let route = host.events().pop().unwrap().route.unwrap();
    assert_eq!(route.attempts, 3);
}

#[test]
fn a_client_error_is_not_retried_elsewhere() {
    let host = host_with(ordered(), |h| if h == "us.test" { Scripted::Respond(status(400)) } else { Scripted::Respond(ok_body(h)) });
    let answer = run(&Gateway::new(), &host, chat(US_KEY, "US", false));
    assert_eq!(answer.status, 400);
    assert_eq!(host.requests().len(), 1);
}

#[test]
fn eu_visitors_can_be_kept_in_the_eu_by_location() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["residency"] = json!({ "eu_visitors": ["eu"] });
    let host = MemoryHost::new().with_config(&doc.to_string()).with_upstream(|r| {
        let h = r.url.split('/').nth(2).unwrap_or_default().to_string();
        Scripted::Respond(ok_body(&h))
    });
    let gateway = Gateway::new();
    assert_eq!(run(&gateway, &host, chat(US_KEY, "FR", true)).header("x-gateway-target"), Some("eu-a"));
    assert_eq!(run(&gateway, &host, chat(US_KEY, "US", false)).header("x-gateway-target"), Some("us"));
}

#[test]
fn nearest_strategy_prefers_the_closest_region() {
    let host = host_with(json!({ "type": "nearest" }), |h| Scripted::Respond(ok_body(h)));
    let mut request = chat(US_KEY, "IE", true);
    request.facts.coordinates = Some((53.35, -6.26)); // Dublin
    let answer = run(&Gateway::new(), &host, request);
    assert_eq!(answer.header("x-gateway-target"), Some("eu-b"), "{:?}", answer.header("x-gateway-route"));
    assert!(answer.header("x-gateway-route").unwrap().contains("nearest("));
}

#[test]
fn observed_health_is_shared_through_the_host_store() {
    // One isolate sees eu-a fail until its circuit opens; a fresh isolate (a new Gateway on the
    // same store) starts from that view instead of sending to eu-a again.
    let host = host_with(ordered(), |h| if h == "eu-a.test" { Scripted::Respond(status(503)) } else { Scripted::Respond(ok_body(h)) });
    let first = Gateway::new();
    for _ in 0..2 {
        assert_eq!(run(&first, &host, chat(EU_KEY, "DE", true)).status, 200);
        host.advance(30_000); // writes are spaced: at most one per 30 s per isolate
    }
    host.block_on(host.run_background());
    let stored: Value = serde_json::from_str(&host.kv_value(edge::isolate::health::HEALTH_KV_KEY).expect("health was written")).unwrap();
    assert!(stored["eu-b"]["ewma_latency_ms"].is_number(), "{stored}");
    let sent_before = host.requests().iter().filter(|r| r.url.contains("eu-a.test")).count();
    let second = Gateway::new();
    let answer = run(&second, &host, chat(EU_KEY, "DE", true));
    assert_eq!(answer.header("x-gateway-target"), Some("eu-b"));
    let sent_after = host.requests().iter().filter(|r| r.url.contains("eu-a.test")).count();
    assert_eq!(sent_before, sent_after, "the new isolate knew eu-a's circuit was open");
}

#[test]
fn embeddings_models_cannot_have_targets_so_residency_cannot_be_bypassed() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["models"]["chat"]["type"] = json!("embeddings");
    let errors = edge::config::Config::parse(&doc.to_string()).unwrap_err().to_string();
    assert!(errors.contains("models.chat.targets") && errors.contains("embeddings"), "{errors}");
}

#[test]
fn consumer_metadata_and_default_tier_drive_conditions_and_reach_the_event() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["auth"]["consumers"][1]["metadata"] = json!({ "team": "legal" });
    doc["auth"]["consumers"][1]["tier"] = json!("premium");
    doc["models"]["chat"]["conditions"] = json!([
        { "when": [{ "metadata": { "key": "team", "equals": "legal" } }, { "tier": "premium" }], "then": { "targets": ["eu-b"] } }
    ]);
    let host = MemoryHost::new().with_config(&doc.to_string()).with_upstream(|r| {
        let h = r.url.split('/').nth(2).unwrap_or_default().to_string();
        Scripted::Respond(ok_body(&h))
    });
    let answer = run(&Gateway::new(), &host, chat(US_KEY, "US", false));
    assert_eq!(answer.header("x-gateway-target"), Some("eu-b"), "{:?}", answer.header("x-gateway-route"));
    let event = host.events().pop().unwrap();
    assert_eq!(event.metadata.get("team").map(String::as_str), Some("legal"));
    assert_eq!(event.tier.as_deref(), Some("premium"));
    // Another consumer without the metadata keeps the normal order (EU tenant: eu-a first).
    assert_eq!(run(&Gateway::new(), &host, chat(EU_KEY, "DE", true)).header("x-gateway-target"), Some("eu-a"));
}

#[test]
fn a_fallback_is_charged_at_the_price_of_the_target_that_served_it() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["models"]["chat"]["targets"][0]["upstream_model"] = json!("gpt-big");
    doc["prices"] = json!({ "gpt-big": { "input": "100.00", "output": "100.00" }, "gpt-4o-mini": { "input": "1.00", "output": "1.00" } });
    doc["budgets"] = json!([{ "scope": ["consumer"], "window": "day", "usd": "10.00" }]);
    let host = MemoryHost::new().with_config(&doc.to_string()).with_upstream(|r| {
        let h = r.url.split('/').nth(2).unwrap_or_default().to_string();
        if h == "us.test" { Scripted::Respond(status(503)) } else { Scripted::Respond(ok_body(&h)) }
    });
    let answer = run(&Gateway::new(), &host, chat(US_KEY, "US", false));
    assert_eq!(answer.header("x-gateway-target"), Some("eu-a"));
    // 10 input + 5 output tokens at $1 per million each, not at gpt-big's $100.
    let quota = host.events().pop().unwrap().quota.unwrap();
    assert_eq!(quota.cost_nanos, Some(15_000));
}

#[test]
fn a_tenant_bounds_the_models_of_all_its_callers_and_lends_them_its_metadata() {
    let mut doc: Value = serde_json::from_str(&config(ordered())).unwrap();
    doc["models"]["other"] = json!({ "provider": "eu-a", "upstream_model": "gpt-4o-mini" });
    doc["tenants"]["acme-eu"]["models"] = json!(["chat"]);
    doc["tenants"]["acme-eu"]["metadata"] = json!({ "cost_centre": "eu-ops" });
    let host = MemoryHost::new().with_config(&doc.to_string()).with_upstream(|r| {
        let h = r.url.split('/').nth(2).unwrap_or_default().to_string();
        Scripted::Respond(ok_body(&h))
    });
    let gateway = Gateway::new();
    assert_eq!(run(&gateway, &host, chat(EU_KEY, "DE", true)).status, 200);
    assert_eq!(host.events().pop().unwrap().metadata.get("cost_centre").map(String::as_str), Some("eu-ops"));
    let mut other = chat(EU_KEY, "DE", true);
    other.body = Body::Bytes(json!({ "model": "other", "messages": [{ "role": "user", "content": "hi" }] }).to_string().into_bytes());
    let denied = run(&gateway, &host, other);
    assert_eq!((denied.status, denied.body["error"]["code"].as_str()), (403, Some("model_not_allowed")));
    // The US consumer has no tenant: both models.
    let mut other = chat(US_KEY, "US", false);
    other.body = Body::Bytes(json!({ "model": "other", "messages": [{ "role": "user", "content": "hi" }] }).to_string().into_bytes());
    assert_eq!(run(&gateway, &host, other).status, 200);
}
