//! Live carbon intensity through the pipeline against the in-memory host: the scheduled refresh
//! (Electricity Maps' wire format) into KV, routing on the live values, the admin trigger, and
//! stale values flagged rather than silently used.

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

const TOKEN: &str = "em-token-secret-123";
const ADMIN: &str = "adm-carbon-0123456789";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config() -> String {
    json!({
        "limits": { "config_refresh_ms": 0 },
        "auth": { "mode": "none" },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": {
            "de": { "kind": "openai", "base_url": "https://de.test/v1" },
            "fr": { "kind": "openai", "base_url": "https://fr.test/v1" }
        },
        "models": {
            "chat": {
                "targets": [
                    { "id": "de", "provider": "de", "upstream_model": "m", "region": "eu-central-1", "jurisdiction": "eu" },
                    { "id": "fr", "provider": "fr", "upstream_model": "m", "region": "eu-west-3", "jurisdiction": "eu" }
                ],
                "strategy": { "type": "carbon", "weights": { "latency": 0.0, "cost": 0.0, "carbon": 1.0 } }
            }
        },
        "carbon_feed": {
            "token_secret": "ELECTRICITY_MAPS_TOKEN",
            "zones": { "eu-central-1": "DE", "eu-west-3": "FR" },
            "max_age_ms": 3600000
        }
    })
    .to_string()
}

fn json_response(status: u16, body: Value) -> OutboundResponse {
    OutboundResponse { status, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(body.to_string().into_bytes()) }
}

/// Electricity Maps answers (`/v3/carbon-intensity/latest?zone=..`): the live grid says DE is
/// cleaner than FR right now, the opposite of the annual averages.
fn host(live_de: f64, live_fr: Option<f64>) -> MemoryHost {
    MemoryHost::new().with_config(&config()).with_secret("ELECTRICITY_MAPS_TOKEN", TOKEN).with_upstream(move |request| {
        if request.url.starts_with("https://api.electricitymap.org/v3/carbon-intensity/latest?zone=") {
            let authorised = request.headers.iter().any(|(k, v)| k == "auth-token" && v == TOKEN);
            if !authorised {
                return Scripted::Respond(json_response(401, json!({ "error": "unauthorized" })));
            }
            let zone = request.url.rsplit('=').next().unwrap_or_default().to_string();
            let value = match zone.as_str() {
                "DE" => Some(live_de),
                _ => live_fr,
            };
            return Scripted::Respond(match value {
                Some(g) => json_response(200, json!({ "zone": zone, "carbonIntensity": g, "datetime": "2026-11-23T08:00:00.000Z", "updatedAt": "2026-11-23T07:49:00.000Z", "emissionFactorType": "lifecycle", "isEstimated": true, "estimationMethod": "TIME_SLICER_AVERAGE" })),
                None => json_response(503, json!({ "error": "unavailable" })),
            });
        }
        let from = request.url.split('/').nth(2).unwrap_or_default().to_string();
        Scripted::Respond(json_response(200, json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": from }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
        })))
    })
}

fn chat(host: &MemoryHost, gateway: &Gateway) -> (String, Value) {
    let request = Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::Bytes(json!({ "model": "chat", "messages": [{ "role": "user", "content": "hi" }] }).to_string().into_bytes()),
        facts: RequestFacts::default(),
    };
    host.block_on(async {
        let response = gateway.handle(request, host).await;
        let body = collect_body(response.body).await;
        let value: Value = serde_json::from_slice(&body).unwrap();
        let route = serde_json::to_value(host.events().pop().unwrap().route.unwrap()).unwrap();
        (value["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string(), route)
    })
}

#[test]
fn without_live_values_annual_figures_are_used_and_flagged_stale() {
    let host = host(50.0, Some(400.0));
    let (served_by, route) = chat(&host, &Gateway::new());
    assert_eq!(served_by, "fr.test", "annual: FR 16 g/kWh beats DE 276");
    assert_eq!(route["carbon_data"], "stale");
    // ...while choosing FR over the default DE saves the difference of the two estimates.
    let saving = route["saving_gco2e"].as_f64().unwrap();
    assert!(saving > 0.0 && (saving - (route["default_gco2e"].as_f64().unwrap() - route["estimated_gco2e"].as_f64().unwrap())).abs() < 1e-12, "{route}");
}

#[test]
fn the_scheduled_refresh_stores_live_values_and_routing_follows_them() {
    let host = host(50.0, Some(400.0));
    let gateway = Gateway::new();
    let summary = host.block_on(gateway.scheduled(&host));
    assert!(summary.contains("refreshed for 2 regions"), "{summary}");
    assert!(!summary.contains(TOKEN));
    let feed_calls: Vec<_> = host.requests().into_iter().filter(|r| r.url.contains("electricitymap")).collect();
    assert_eq!(feed_calls.len(), 2);
    let (served_by, route) = chat(&host, &gateway);
    assert_eq!(served_by, "de.test", "live: DE 50 g/kWh beats FR 400");
    assert_eq!(route["carbon_data"], "live");
    assert!(route["gco2e"].as_f64().unwrap() > 0.0);
    // The default (first) target is DE here, so the carbon choice saved nothing against it...
    assert_eq!(route["saving_gco2e"].as_f64(), Some(0.0));
    // Two hours later, with no refresh in between, the values are stale: annual figures again.
    host.advance(2 * 3_600_000);
    let (served_by, route) = chat(&host, &gateway);
    assert_eq!((served_by.as_str(), route["carbon_data"].as_str()), ("fr.test", Some("stale")));
}

#[test]
fn a_failed_zone_keeps_the_others_and_a_dead_feed_stores_nothing() {
    let host = host(50.0, None);
    let gateway = Gateway::new();
    let summary = host.block_on(gateway.scheduled(&host));
    assert!(summary.contains("refreshed for 1 regions, 1 failed") && summary.contains("status 503"), "{summary}");
    // A feed that rejects the token stores nothing and says so, without the token.
    let broken = host_with_wrong_token();
    let summary = broken.block_on(Gateway::new().scheduled(&broken));
    assert!(summary.contains("stored nothing") && !summary.contains("wrong-token"), "{summary}");
    assert!(broken.requests().iter().all(|r| !r.url.contains("wrong-token")));
}

fn host_with_wrong_token() -> MemoryHost {
    let host = host(50.0, Some(400.0));
    host.with_secret("ELECTRICITY_MAPS_TOKEN", "wrong-token")
}

#[test]
fn admins_can_trigger_a_refresh_where_there_is_no_cron() {
    let host = host(50.0, Some(400.0));
    let gateway = Gateway::new();
    let request = Request {
        method: "POST".into(),
        path: "/admin/carbon/refresh".into(),
        headers: vec![("authorization".into(), format!("Bearer {ADMIN}"))],
        body: Body::Empty,
        facts: RequestFacts::default(),
    };
    let (status, body) = host.block_on(async {
        let response = gateway.handle(request, &host).await;
        (response.status, collect_body(response.body).await)
    });
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updated"]["eu-central-1"], 50.0);
    assert_eq!(chat(&host, &gateway).0, "de.test");
}

#[test]
fn the_feed_is_validated() {
    let mut doc: Value = serde_json::from_str(&config()).unwrap();
    doc["carbon_feed"] = json!({ "token_secret": "sk-live-abc", "zones": {} });
    let errors = edge::config::Config::parse(&doc.to_string()).unwrap_err().to_string();
    assert!(errors.contains("carbon_feed.token_secret") && errors.contains("carbon_feed.zones"), "{errors}");
}
