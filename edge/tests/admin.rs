//! The admin API through the whole pipeline against the in-memory host: its own credential (and
//! only it), virtual keys issued once and usable at once, model allow-lists, expiry and
//! revocation, configuration replacement with validation, usage reads, and the audit log.

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Request, RequestFacts, Response};
use serde_json::{json, Value};

const ADMIN: &str = "adm-0123456789abcdef0123456789abcdef";
const WEB: &str = "sk-client-web";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config() -> Value {
    json!({
        "limits": { "config_refresh_ms": 0 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(WEB), "tenant": "acme" }] },
        "tenants": { "acme": {} },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "mock": { "provider": "mock" }, "mock-large": { "provider": "mock" }, "mock-embed": { "provider": "mock", "type": "embeddings" } },
        "rate_limits": [{ "scope": ["key"], "metric": "requests", "window": "day", "limit": 100 }]
    })
}

fn request(method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Request {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = key {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    Request {
        method: method.into(),
        path: path.into(),
        headers,
        body: body.map_or(Body::Empty, |b| Body::Bytes(b.to_string().into_bytes())),
        facts: RequestFacts::default(),
    }
}

fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> (Response, Value, String) {
    host.block_on(async {
        let mut response = gateway.handle(request, host).await;
        let body = collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
        host.run_background().await;
        let text = String::from_utf8_lossy(&body).into_owned();
        (response, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    })
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] })
}

fn setup() -> (Gateway, MemoryHost) {
    (Gateway::new(), MemoryHost::new().with_config(&config().to_string()))
}

fn create_key(gateway: &Gateway, host: &MemoryHost, body: Value) -> (String, Value) {
    let (response, value, text) = run(gateway, host, request("POST", "/admin/keys", Some(ADMIN), Some(body)));
    assert_eq!(response.status, 201, "{text}");
    (value["key"].as_str().unwrap().to_string(), value["record"].clone())
}

#[test]
fn only_the_admin_credential_opens_the_admin_api() {
    let (gateway, host) = setup();
    let (missing, body, _) = run(&gateway, &host, request("GET", "/admin/audit", None, None));
    assert_eq!(missing.status, 401);
    assert!(body["error"]["message"].is_string());
    let (wrong, _, _) = run(&gateway, &host, request("GET", "/admin/audit", Some("adm-wrong"), None));
    assert_eq!(wrong.status, 401);
    // A consumer key never opens the admin API...
    let (consumer, _, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(WEB), None));
    assert_eq!(consumer.status, 401);
    // ...and the admin key never opens /v1.
    let (admin_on_v1, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(ADMIN), Some(chat("mock"))));
    assert_eq!(admin_on_v1.status, 401);
    let (ok, _, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(ok.status, 200);
}

#[test]
fn without_an_admin_credential_configured_there_is_no_admin_api() {
    let mut doc = config();
    doc.as_object_mut().unwrap().remove("admin");
    let host = MemoryHost::new().with_config(&doc.to_string());
    let (response, body, _) = run(&Gateway::new(), &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(response.status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[test]
fn an_issued_key_is_shown_once_works_at_once_and_is_stored_hashed() {
    let (gateway, host) = setup();
    let (key, record) = create_key(&gateway, &host, json!({ "consumer": "partner", "tenant": "acme", "name": "ci" }));
    assert!(key.starts_with("sk-gw-") && key.len() == 6 + 64, "{key}");
    assert!(record["id"].as_str().unwrap().starts_with("vk_"));
    let (response, body, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&key), Some(chat("mock"))));
    assert_eq!(response.status, 200, "{body}");
    let event = host.events().pop().unwrap();
    assert_eq!(event.consumer.as_deref(), Some("partner"));
    assert_eq!(event.tenant.as_deref(), Some("acme"));
    // Neither listings nor the audit log nor the store ever hold the key itself.
    let (_, _, listing) = run(&gateway, &host, request("GET", "/admin/consumers/partner/keys", Some(ADMIN), None));
    assert!(listing.contains(record["id"].as_str().unwrap()) && listing.contains("\"status\":\"active\""), "{listing}");
    let (_, _, audit) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert!(audit.contains("key.create"), "{audit}");
    for text in [listing, audit] {
        assert!(!text.contains(&key[6..]), "the key leaked: {text}");
    }
}

#[test]
fn a_key_is_limited_to_its_models() {
    let (gateway, host) = setup();
    let (key, _) = create_key(&gateway, &host, json!({ "consumer": "partner", "models": ["mock"] }));
    let (allowed, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&key), Some(chat("mock"))));
    assert_eq!(allowed.status, 200);
    let (denied, body, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&key), Some(chat("mock-large"))));
    assert_eq!(denied.status, 403, "{body}");
    let (models, body, _) = run(&gateway, &host, request("GET", "/v1/models", Some(&key), None));
    assert_eq!(models.status, 200);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mock"]);
    // Unknown models are refused when the key is created.
    let (bad, body, _) = run(&gateway, &host, request("POST", "/admin/keys", Some(ADMIN), Some(json!({ "consumer": "x", "models": ["nope"] }))));
    assert_eq!(bad.status, 400);
    assert_eq!(body["error"]["param"], "models");
}

#[test]
fn revoked_and_expired_keys_are_refused() {
    let (gateway, host) = setup();
    let (revoked, record) = create_key(&gateway, &host, json!({ "consumer": "partner" }));
    host.advance(1);
    let (expiring, _) = create_key(&gateway, &host, json!({ "consumer": "partner", "expires_in_secs": 60 }));
    let id = record["id"].as_str().unwrap();
    host.advance(1);
    let (response, body, _) = run(&gateway, &host, request("DELETE", &format!("/admin/keys/{id}"), Some(ADMIN), None));
    assert_eq!(response.status, 200);
    assert_eq!(body["status"], "revoked");
    let (refused, body, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&revoked), Some(chat("mock"))));
    assert_eq!(refused.status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (ok, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&expiring), Some(chat("mock"))));
    assert_eq!(ok.status, 200);
    host.advance(60_000);
    let (expired, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&expiring), Some(chat("mock"))));
    assert_eq!(expired.status, 401);
    // Unknown ids are 404; the audit log has both changes.
    let (missing, _, _) = run(&gateway, &host, request("DELETE", "/admin/keys/vk_0000000000000000", Some(ADMIN), None));
    assert_eq!(missing.status, 404);
    let (_, audit, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.revoke", "key.create", "key.create"], "newest first");
}

#[test]
fn a_lookalike_key_that_was_never_issued_is_refused() {
    let (gateway, host) = setup();
    let fake = format!("sk-gw-{}", "ab".repeat(32));
    let (response, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&fake), Some(chat("mock"))));
    assert_eq!(response.status, 401);
    // A store outage fails closed: 503, never an open door.
    host.break_kv(true);
    let (response, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&fake), Some(chat("mock"))));
    assert_eq!(response.status, 503);
}

#[test]
fn the_configuration_is_validated_replaced_and_audited() {
    let (gateway, host) = setup();
    let (bad, body, _) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(json!({ "models": { "x": { "provider": "nowhere" } } }))));
    assert_eq!(bad.status, 400, "{body}");
    let (not_json, body, _) = run(&gateway, &host, Request { body: Body::Bytes(b"{nope".to_vec()), ..request("PUT", "/admin/config", Some(ADMIN), None) });
    assert_eq!(not_json.status, 400);
    assert_eq!(body["error"]["code"], "invalid_json");
    // Set a tighter limit through the API: it applies to the next request.
    let mut doc = config();
    doc["rate_limits"] = json!([{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1 }]);
    let (ok, _, text) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(doc.clone())));
    assert_eq!(ok.status, 200, "{text}");
    let (_, current, _) = run(&gateway, &host, request("GET", "/admin/config", Some(ADMIN), None));
    assert_eq!(current["config"]["rate_limits"], doc["rate_limits"]);
    assert_eq!(run(&gateway, &host, request("POST", "/v1/chat/completions", Some(WEB), Some(chat("mock")))).0.status, 200);
    assert_eq!(run(&gateway, &host, request("POST", "/v1/chat/completions", Some(WEB), Some(chat("mock")))).0.status, 429);
    // Usage of the subject, read from its counter.
    let (usage, body, text) = run(&gateway, &host, request("GET", "/admin/usage/consumer:web", Some(ADMIN), None));
    assert_eq!(usage.status, 200, "{text}");
    assert_eq!(body["subject"], "consumer:web");
    assert!(text.contains("\"used\":1"), "{text}");
    let (_, audit, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(audit["data"][0]["action"], "config.update");
    // Wrong methods and unknown paths are clear errors.
    assert_eq!(run(&gateway, &host, request("PATCH", "/admin/config", Some(ADMIN), None)).0.status, 405);
    assert_eq!(run(&gateway, &host, request("GET", "/admin/nothing", Some(ADMIN), None)).0.status, 404);
}

/// Path segments are percent-decoded as RFC 3986 says: `%2B` is `+` and a literal `+` stays `+`
/// (a form-encoding decoder would turn it into a space and list nobody's keys).
#[test]
fn admin_paths_decode_percent_escapes_as_paths_do() {
    let (gateway, host) = setup();
    let (_, record) = create_key(&gateway, &host, json!({ "consumer": "team+ops" }));
    let (_, other) = create_key(&gateway, &host, json!({ "consumer": "team ops" }));
    for path in ["/admin/consumers/team+ops/keys", "/admin/consumers/team%2Bops/keys", "/admin/consumers/team%2bops/keys"] {
        let (response, body, text) = run(&gateway, &host, request("GET", path, Some(ADMIN), None));
        assert_eq!(response.status, 200, "{path}: {text}");
        let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![record["id"].as_str().unwrap()], "{path}");
    }
    let (_, body, _) = run(&gateway, &host, request("GET", "/admin/consumers/team%20ops/keys", Some(ADMIN), None));
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![other["id"].as_str().unwrap()]);
}

#[test]
fn a_key_of_a_removed_consumer_is_refused_not_widened() {
    let (gateway, host) = setup();
    let (key, record) = create_key(&gateway, &host, json!({ "consumer": "web" }));
    assert_eq!(record.get("standalone"), None, "issued for a declared consumer");
    let (before, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&key), Some(chat("mock"))));
    assert_eq!(before.status, 200);
    let mut without_web = config();
    without_web["auth"]["consumers"] = json!([{ "id": "other", "key_sha256": hex_sha256("sk-other") }]);
    let (put, _, text) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(without_web)));
    assert_eq!(put.status, 200, "{text}");
    for model in ["mock", "mock-large"] {
        let (after, body, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&key), Some(chat(model))));
        assert_eq!((after.status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")), "{model}");
    }
    // A key issued for a consumer the configuration never declared stands alone and still works.
    let (standalone, record) = create_key(&gateway, &host, json!({ "consumer": "partner", "models": ["mock"] }));
    assert_eq!(record["standalone"], true);
    let (ok, _, _) = run(&gateway, &host, request("POST", "/v1/chat/completions", Some(&standalone), Some(chat("mock"))));
    assert_eq!(ok.status, 200);
}

#[test]
fn listing_a_consumers_keys_never_returns_another_consumer_sharing_its_prefix() {
    let (gateway, host) = setup();
    let (_, alice) = create_key(&gateway, &host, json!({ "consumer": "alice" }));
    let (_, evil) = create_key(&gateway, &host, json!({ "consumer": "alice:evil" }));
    let (response, body, text) = run(&gateway, &host, request("GET", "/admin/consumers/alice/keys", Some(ADMIN), None));
    assert_eq!(response.status, 200, "{text}");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alice["id"].as_str().unwrap()], "not {}", evil["id"]);
}

/// `PUT /admin/config` of `config()` with `edit` applied; the status and the error's param.
fn put_edited(gateway: &Gateway, host: &MemoryHost, edit: impl FnOnce(&mut Value)) -> (u16, Option<String>) {
    let mut doc = config();
    edit(&mut doc);
    let (response, body, _) = run(gateway, host, request("PUT", "/admin/config", Some(ADMIN), Some(doc)));
    (response.status, body["error"]["param"].as_str().map(str::to_string))
}

#[test]
fn the_admin_key_cannot_point_upstreams_at_private_addresses_or_plain_http() {
    let (gateway, host) = setup();
    for url in ["https://169.254.169.254/latest", "https://127.0.0.1:8080/v1", "https://10.0.0.7/v1", "https://[::1]/v1", "http://api.example.com/v1"] {
        let (status, param) = put_edited(&gateway, &host, |doc| doc["providers"]["evil"] = json!({ "kind": "openai", "base_url": url }));
        assert_eq!((status, param.as_deref()), (400, Some("providers.evil.base_url")), "{url}");
    }
    let (status, param) = put_edited(&gateway, &host, |doc| doc["network"] = json!({ "allow_private_upstreams": true }));
    assert_eq!((status, param.as_deref()), (400, Some("network.allow_private_upstreams")), "a PUT cannot allow what the shipped config does not");
    let (status, _) = put_edited(&gateway, &host, |doc| doc["providers"]["public"] = json!({ "kind": "openai", "base_url": "https://api.example.com/v1" }));
    assert_eq!(status, 200, "a public https upstream without a secret is fine");
}

#[test]
fn the_admin_key_cannot_send_a_secret_to_an_origin_the_shipped_config_does_not_pair_it_with() {
    let mut shipped = config();
    shipped["providers"]["openai"] = json!({ "kind": "openai", "base_url": "https://api.openai.com/v1", "api_key_secret": "OPENAI_API_KEY" });
    shipped["auth"]["mode"] = json!("jwt");
    shipped["auth"]["jwt"] = json!({ "audiences": ["gw"], "keys": [{ "alg": "HS256", "secret": "JWT_HMAC_SECRET" }] });
    let host = MemoryHost::new().with_config(&shipped.to_string());
    let gateway = Gateway::new();
    let put = |edit: &dyn Fn(&mut Value)| {
        let mut doc = shipped.clone();
        edit(&mut doc);
        let (response, body, _) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(doc)));
        (response.status, body["error"]["param"].as_str().map(str::to_string))
    };
    assert_eq!(put(&|_| {}).0, 200, "the shipped pairing itself is allowed");
    let steal_openai = put(&|doc| doc["providers"]["openai"]["base_url"] = json!("https://attacker.example/v1"));
    assert_eq!(steal_openai, (400, Some("providers.openai.api_key_secret".into())));
    let steal_hmac = put(&|doc| doc["providers"]["x"] = json!({ "kind": "openai", "base_url": "https://api.openai.com/v1", "api_key_secret": "JWT_HMAC_SECRET" }));
    assert_eq!(steal_hmac.0, 400);
    let widen = put(&|doc| doc["network"] = json!({ "provider_secrets": { "OPENAI_API_KEY": ["https://attacker.example"] } }));
    assert_eq!(widen, (400, Some("network.provider_secrets.OPENAI_API_KEY[0]".into())));
}

#[test]
fn the_shipped_config_may_allow_private_upstreams_for_development() {
    let mut shipped = config();
    shipped["network"] = json!({ "allow_private_upstreams": true });
    shipped["providers"]["local"] = json!({ "kind": "openai", "base_url": "http://127.0.0.1:9999/v1", "api_key_secret": "LOCAL_KEY" });
    let host = MemoryHost::new().with_config(&shipped.to_string());
    let gateway = Gateway::new();
    let (response, _, text) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(shipped.clone())));
    assert_eq!(response.status, 200, "{text}");
}

#[test]
fn every_admin_path_answers_404_or_405_json_never_a_panic() {
    let (gateway, host) = setup();
    for path in ["/admin/consumers/keys", "/admin/consumers//keys", "/admin/consumers/a/b/keys", "/admin/usage/", "/admin/keys/a/b", "/admin/audit/after/", "/admin"] {
        let (response, body, text) = run(&gateway, &host, request("GET", path, Some(ADMIN), None));
        assert_eq!(response.status, 404, "{path}: {text}");
        assert_eq!(body["error"]["type"], "not_found_error", "{path}");
    }
    let (response, body, _) = run(&gateway, &host, request("PATCH", "/admin/consumers/web/keys", Some(ADMIN), None));
    assert_eq!((response.status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
}

#[test]
fn failed_admin_logins_are_recorded_apart_from_the_change_log() {
    let (gateway, host) = setup();
    let mut attempt = request("GET", "/admin/audit", Some("adm-guess"), None);
    attempt.headers.push(("cf-connecting-ip".into(), "203.0.113.9".into()));
    let (refused, _, _) = run(&gateway, &host, attempt);
    assert_eq!(refused.status, 401);
    let (_, changes, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(changes["data"], json!([]), "the change log holds changes only");
    let (_, logins, text) = run(&gateway, &host, request("GET", "/admin/audit/logins", Some(ADMIN), None));
    assert_eq!(logins["data"][0]["action"], "login.failed", "{text}");
    assert_eq!(logins["data"][0]["actor"], "ip:203.0.113.9");
    assert!(!text.contains("adm-guess"), "the guessed key is never stored");
}

#[test]
fn the_audit_log_pages_with_a_cursor_and_forgets_entries_past_retention() {
    let (gateway, host) = setup();
    for _ in 0..205 {
        create_key(&gateway, &host, json!({ "consumer": "web" }));
    }
    let (_, first, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(first["data"].as_array().unwrap().len(), 200);
    let cursor = first["next_cursor"].as_str().expect("a full page has a cursor").to_string();
    let (_, second, text) = run(&gateway, &host, request("GET", &format!("/admin/audit/after/{cursor}"), Some(ADMIN), None));
    assert_eq!(second["data"].as_array().unwrap().len(), 5, "{text}");
    assert!(second.get("next_cursor").is_none());
    host.advance(91 * 86_400_000);
    let (_, expired, _) = run(&gateway, &host, request("GET", "/admin/audit", Some(ADMIN), None));
    assert_eq!(expired["data"], json!([]), "older than the default 90 days");
}


#[test]
fn a_change_whose_audit_entry_cannot_be_written_is_not_applied() {
    let (gateway, host) = setup();
    let (_, before, _) = run(&gateway, &host, request("GET", "/admin/config", Some(ADMIN), None));
    host.refuse_kv_puts_under(Some("audit:"));
    // Configuration: refused with a store error, the old document stays in force.
    let mut doc = config();
    doc["rate_limits"] = json!([{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1 }]);
    let (put, _, text) = run(&gateway, &host, request("PUT", "/admin/config", Some(ADMIN), Some(doc)));
    assert_eq!(put.status, 503, "{text}");
    // A key: not issued, so nothing exists that the audit log does not know about.
    let (issue, _, text) = run(&gateway, &host, request("POST", "/admin/keys", Some(ADMIN), Some(json!({ "consumer": "web" }))));
    assert_eq!(issue.status, 503, "{text}");
    host.refuse_kv_puts_under(None);
    let (_, after, _) = run(&gateway, &host, request("GET", "/admin/config", Some(ADMIN), None));
    assert_eq!(after["config"], before["config"]);
    let (_, keys, text) = run(&gateway, &host, request("GET", "/admin/consumers/web/keys", Some(ADMIN), None));
    assert_eq!(keys["data"], json!([]), "{text}");
    for _ in 0..3 {
        assert_eq!(run(&gateway, &host, request("POST", "/v1/chat/completions", Some(WEB), Some(chat("mock")))).0.status, 200);
    }
}
