//! The dashboard's files through the whole gateway against the in-memory host: served without the
//! admin key (they hold no data) under their CSP, also when the admin API is disabled, while the
//! admin API behind them still refuses a missing or wrong key.

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Request, RequestFacts, Response};
use serde_json::{json, Value};

const ADMIN: &str = "adm-ui-0123456789abcdef0123456789abcdef";

fn config(admin: bool) -> String {
    use sha2::Digest;
    let mut config = json!({
        "limits": { "config_refresh_ms": 0 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": "0".repeat(64) }] },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "mock": { "provider": "mock" } }
    });
    if admin {
        config["admin"] = json!({ "key_sha256": hex::encode(sha2::Sha256::digest(ADMIN.as_bytes())) });
    }
    config.to_string()
}

fn get(method: &str, path: &str, key: Option<&str>) -> Request {
    let headers = key.map(|k| vec![("authorization".to_string(), format!("Bearer {k}"))]).unwrap_or_default();
    Request { method: method.into(), path: path.into(), headers, body: Body::Empty, facts: RequestFacts::default() }
}

fn run(host: &MemoryHost, request: Request) -> (Response, String) {
    let gateway = Gateway::new();
    host.block_on(async {
        let mut response = gateway.handle(request, host).await;
        let body = collect_body(std::mem::replace(&mut response.body, Body::Empty)).await;
        (response, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn the_dashboard_is_served_without_a_key_and_the_api_still_wants_one() {
    for admin in [true, false] {
        let host = MemoryHost::new().with_config(&config(admin));
        for (path, kind) in [("/admin/ui", "text/html"), ("/admin/ui/", "text/html"), ("/admin/ui/app.js", "text/javascript"), ("/admin/ui/app.css", "text/css")] {
            let (response, body) = run(&host, get("GET", path, None));
            assert_eq!(response.status, 200, "{path} (admin configured: {admin}): {body}");
            assert!(response.header("content-type").unwrap().starts_with(kind), "{path}");
            assert_eq!(response.header("content-security-policy"), Some(edge::admin_ui::CONTENT_SECURITY_POLICY));
            assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
            assert!(response.header("x-request-id").is_some());
            assert!(!body.is_empty());
        }
        let (response, _) = run(&host, get("POST", "/admin/ui", None));
        assert_eq!(response.status, 405);
        let (response, body) = run(&host, get("HEAD", "/admin/ui/app.js", None));
        assert_eq!((response.status, body.as_str()), (200, ""));
        // The admin API behind the page: 401 without or with a wrong key; 404 when disabled (the
        // page tells "disabled" from that).
        for key in [None, Some("wrong")] {
            let (response, body) = run(&host, get("GET", "/admin/config", key));
            let expected = if admin { 401 } else { 404 };
            assert_eq!(response.status, expected, "{key:?}: {body}");
            assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_object());
        }
    }
}
