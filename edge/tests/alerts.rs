//! Alerts through the gateway against the in-memory host: requests refused by a rate limit trip a
//! `limit_rejections` rule; `POST /admin/alerts/evaluate` sends one signed webhook per rule and
//! window however often it runs, and another in the next window; a 503 is retried, a 400 is not;
//! `GET /admin/alerts` shows the last state; the `*/5` cron evaluates, the carbon cron does not;
//! and bad `alerts` sections are refused with their paths.

use std::cell::Cell;
use std::rc::Rc;

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Config, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

const ADMIN: &str = "adm-0123456789abcdef0123456789abcdef";
const KEY: &str = "sk-client-web";
const SECRET: &str = "whsec_alerts_test";
const HOOK: &str = "https://hooks.test/alert";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(alerts: Value) -> Value {
    json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(KEY) }] },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": { "up": { "kind": "openai", "base_url": "https://upstream.test/v1" } },
        "models": { "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" } },
        "rate_limits": [{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1 }],
        "alerts": alerts
    })
}

fn alerts() -> Value {
    json!({
        "webhook": { "url": HOOK, "secret": "ALERT_SECRET" },
        "rules": [{ "name": "throttled", "kind": "limit_rejections", "threshold": 1, "window_minutes": 60 }]
    })
}

/// The webhook answers with `statuses` in turn (then 200); the model answers every chat.
fn host(statuses: Vec<u16>) -> MemoryHost {
    let calls = Rc::new(Cell::new(0usize));
    MemoryHost::new().with_config(&config(alerts()).to_string()).with_secret("ALERT_SECRET", SECRET).with_upstream(move |request| {
        let respond = |status: u16, body: Value| Scripted::Respond(OutboundResponse { status, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(body.to_string().into_bytes()) });
        if request.url == HOOK {
            let n = calls.get();
            calls.set(n + 1);
            return respond(statuses.get(n).copied().unwrap_or(200), json!({}));
        }
        respond(200, json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}))
    })
}

fn call(gateway: &Gateway, host: &MemoryHost, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let request = Request {
        method: method.into(),
        path: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {key}")), ("content-type".into(), "application/json".into())],
        body: body.map_or(Body::Empty, |b| Body::Bytes(b.to_string().into_bytes())),
        facts: RequestFacts::default(),
    };
    let mut response = host.block_on(gateway.handle(request, host));
    let bytes = host.block_on(collect_body(std::mem::replace(&mut response.body, Body::Empty)));
    host.block_on(host.run_background());
    (response.status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Two requests in one (fresh) minute: the second is refused by the rate limit.
fn trip(gateway: &Gateway, host: &MemoryHost) {
    host.advance(60_000);
    let body = json!({ "model": "gpt", "messages": [{ "role": "user", "content": "hello" }] });
    assert_eq!(call(gateway, host, "POST", "/v1/chat/completions", KEY, Some(body.clone())).0, 200);
    assert_eq!(call(gateway, host, "POST", "/v1/chat/completions", KEY, Some(body)).0, 429);
}

fn evaluate(gateway: &Gateway, host: &MemoryHost) -> Value {
    let (status, body) = call(gateway, host, "POST", "/admin/alerts/evaluate", ADMIN, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn webhooks(host: &MemoryHost) -> Vec<edge::testing::RecordedRequest> {
    host.requests().into_iter().filter(|r| r.url == HOOK).collect()
}

/// Verify `x-gateway-signature` with an HMAC computed here, not with the gateway's function.
fn verify(request: &edge::testing::RecordedRequest, secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let header = request.headers.iter().find(|(n, _)| n == "x-gateway-signature").map(|(_, v)| v.clone()).unwrap_or_default();
    let Some((t, v1)) = header.split_once(',').and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?))) else { return false };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default()).is_ok()
}

#[test]
fn a_rule_fires_once_per_window_signed_and_again_in_the_next_window() {
    let host = host(vec![]);
    let gateway = Gateway::new();
    let report = evaluate(&gateway, &host);
    assert_eq!(report["rules"][0]["firing"], false, "nothing refused yet: {report}");
    assert!(webhooks(&host).is_empty());

    trip(&gateway, &host);
    let report = evaluate(&gateway, &host);
    assert_eq!(report["rules"][0]["value"], 1.0, "{report}");
    assert_eq!(report["rules"][0]["firings"][0]["delivery"]["status"], "delivered", "{report}");
    let sent = webhooks(&host);
    assert_eq!(sent.len(), 1);
    assert!(verify(&sent[0], SECRET), "the signature verifies with the secret");
    assert!(!verify(&sent[0], "another secret"));
    let payload = sent[0].json();
    assert_eq!((payload["rule"].as_str(), payload["kind"].as_str(), payload["value"].as_f64(), payload["threshold"].as_f64()), (Some("throttled"), Some("limit_rejections"), Some(1.0), Some(1.0)));
    assert!(payload["window_start"].as_str().unwrap().ends_with(":00:00Z"), "{payload}");
    assert!(!payload.to_string().contains(SECRET) && !payload.to_string().contains(KEY), "no secret or key in the payload");

    // The same window again (more refusals, still firing): nothing more is sent.
    trip(&gateway, &host);
    let again = evaluate(&gateway, &host);
    assert_eq!(again["rules"][0]["firing"], true);
    assert_eq!(again["rules"][0]["firings"][0]["delivery"]["status"], "duplicate", "{again}");
    assert_eq!(webhooks(&host).len(), 1);

    // The next hour is another window.
    host.advance(3_600_000);
    assert_eq!(evaluate(&gateway, &host)["rules"][0]["firing"], false, "no refusal in the new window yet");
    trip(&gateway, &host);
    evaluate(&gateway, &host);
    let sent = webhooks(&host);
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].json()["window_start"], sent[1].json()["window_start"]);

    let (status, listed) = call(&gateway, &host, "GET", "/admin/alerts", ADMIN, None);
    assert_eq!(status, 200);
    let rule = &listed["rules"][0];
    assert_eq!((rule["name"].as_str(), rule["kind"].as_str(), rule["window_minutes"].as_u64()), (Some("throttled"), Some("limit_rejections"), Some(60)));
    assert_eq!(rule["state"]["firing"], true);
    assert_eq!(rule["state"]["last_deliveries"][0]["delivery"]["status"], "delivered");
    assert_eq!(listed["webhook"], json!({ "format": "json", "signed": true }));
    // A consumer key never opens it.
    assert_eq!(call(&gateway, &host, "POST", "/admin/alerts/evaluate", KEY, None).0, 401);
}

#[test]
fn a_503_is_retried_with_backoff_and_a_400_is_not() {
    let host = host(vec![503, 503]);
    let gateway = Gateway::new();
    trip(&gateway, &host);
    let before = host.requests().len();
    let report = evaluate(&gateway, &host);
    assert_eq!(report["rules"][0]["firings"][0]["delivery"], json!({ "status": "delivered", "http_status": 200, "tries": 3 }), "{report}");
    assert_eq!(webhooks(&host).len(), 3);
    assert_eq!(host.requests().len() - before, 3);
    assert!(webhooks(&host).iter().all(|r| verify(r, SECRET)), "every try is signed");

    let host = self::host(vec![400]);
    trip(&gateway, &host);
    let report = evaluate(&gateway, &host);
    assert_eq!(report["rules"][0]["firings"][0]["delivery"], json!({ "status": "refused", "http_status": 400, "tries": 1 }));
    assert_eq!(webhooks(&host).len(), 1);

    // Every try failing: three tries, then given up (and not retried by the next evaluation).
    let host = self::host(vec![503, 502, 500, 200]);
    trip(&gateway, &host);
    let report = evaluate(&gateway, &host);
    assert_eq!(report["rules"][0]["firings"][0]["delivery"], json!({ "status": "failed", "error": "http 500", "tries": 3 }));
    evaluate(&gateway, &host);
    assert_eq!(webhooks(&host).len(), 3, "at most once per window: the claim stays");
}

#[test]
fn the_alerts_cron_evaluates_and_the_carbon_cron_does_not() {
    let host = host(vec![]);
    let gateway = Gateway::new();
    trip(&gateway, &host);
    let summary = host.block_on(gateway.scheduled_cron(&host, "*/30 * * * *"));
    assert!(!summary.contains("alerts"), "{summary}");
    assert!(webhooks(&host).is_empty());
    let summary = host.block_on(gateway.scheduled_cron(&host, edge::gateway::ALERTS_CRON));
    assert_eq!(summary, "alerts: 1 rules evaluated, 1 firing");
    assert_eq!(webhooks(&host).len(), 1);
}

#[test]
fn slack_format_sends_text_and_blocks() {
    let mut doc = config(alerts());
    doc["alerts"]["webhook"]["format"] = json!("slack");
    let host = host(vec![]).with_config(&doc.to_string());
    let gateway = Gateway::new();
    trip(&gateway, &host);
    evaluate(&gateway, &host);
    let body = webhooks(&host)[0].json();
    assert!(body["text"].as_str().unwrap().starts_with("Alert throttled (limit_rejections)"), "{body}");
    assert_eq!(body["blocks"][0]["type"], "section");
}

fn issues(alerts: Value) -> Vec<String> {
    match Config::parse(&config(alerts).to_string()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(|i| i.path.clone()).collect(),
    }
}

#[test]
fn bad_alert_sections_are_refused_with_their_paths() {
    assert!(issues(alerts()).is_empty());
    let rule = |extra: Value| {
        let mut r = json!({ "name": "r", "kind": "error_rate", "threshold": 5 });
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "webhook": { "url": HOOK }, "rules": [r] })
    };
    assert_eq!(issues(rule(json!({ "kind": "cpu" }))), ["alerts.rules[0].kind"]);
    assert_eq!(issues(rule(json!({ "window_minutes": 90 }))), ["alerts.rules[0].window_minutes"]);
    assert_eq!(issues(rule(json!({ "threshold": 0 }))), ["alerts.rules[0].threshold"]);
    assert_eq!(issues(rule(json!({ "name": "bad name" }))), ["alerts.rules[0].name"]);
    assert_eq!(issues(rule(json!({ "budget": "monthly" }))), ["alerts.rules[0].budget"]);
    assert_eq!(issues(rule(json!({ "kind": "budget_spend" }))), ["alerts.rules[0].kind"], "no budgets configured");
    assert_eq!(issues(rule(json!({ "filters": { "consumer": "a\r\nb" } }))), ["alerts.rules[0].filters.consumer"]);
    assert_eq!(issues(rule(json!({ "surprise": 1 }))).len(), 1);
    assert_eq!(issues(json!({ "webhook": { "url": HOOK, "format": "teams" } })), ["alerts.webhook.format"]);
    assert_eq!(issues(json!({ "webhook": { "url": HOOK, "secret": "whsec live value!" } })), ["alerts.webhook.secret"]);
    // The outbound policy: no CR/LF, no loopback, metadata or plain http in a shipped document
    // that does not allow private upstreams.
    for url in ["https://hooks.test/a\r\nx-evil: 1", "http://hooks.test/a", "https://127.0.0.1/a", "https://169.254.169.254/latest"] {
        assert!(issues(json!({ "webhook": { "url": url } })).iter().any(|p| p == "alerts.webhook.url"), "{url}");
    }
}
