//! Bearer JWTs through the pipeline: static keys, a JWKS URL with caching and rate-limited
//! refetch, tiers mapping to model access, and API keys alongside. Tokens and keys come from
//! tests/jwt/fixtures.json (made with PyJWT), verified at the fixtures' fixed time.

use std::cell::Cell;
use std::rc::Rc;

use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, FetchError, Gateway, OutboundResponse, Request, RequestFacts};
use serde_json::{json, Value};

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jwt/fixtures.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn jwks_document() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jwt/jwks.json")).unwrap()
}

fn token(name: &str) -> String {
    let f = fixtures();
    let case = f["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no case {name}"));
    case["token"].as_str().unwrap().to_string()
}

fn config(keys: Value, jwks_url: Option<&str>) -> String {
    let f = fixtures();
    let mut jwt = json!({
        "issuers": f["rules"]["issuers"],
        "audiences": f["rules"]["audiences"],
        "tenant_claim": "tenant",
        "tier_claim": "tier",
        "keys": keys,
        "models": ["mock"],
        "tiers": { "pro": { "models": ["*"] } }
    });
    if let Some(url) = jwks_url {
        jwt["jwks_url"] = json!(url);
    }
    let web_key = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"sk-web"))
    };
    json!({
        "auth": { "mode": "jwt", "jwt": jwt, "consumers": [ { "id": "web", "key_sha256": web_key } ] },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "mock": { "provider": "mock" }, "mock-pro": { "provider": "mock" } }
    })
    .to_string()
}

fn static_keys() -> Value {
    let f = fixtures();
    let k = &f["keys"];
    json!([
        { "kid": "rsa-1", "alg": "RS256", "pem": k["rsa-1"]["pem"] },
        { "kid": "ec-1", "alg": "ES256", "pem": k["ec-1"]["pem"] },
        { "kid": "ed-1", "alg": "EdDSA", "pem": k["ed-1"]["pem"] }
    ])
}

fn host(config: &str) -> MemoryHost {
    let now_secs = fixtures()["now"].as_u64().unwrap();
    MemoryHost::new().with_config(config).with_clock_ms(now_secs * 1000)
}

fn chat(model: &str, bearer: &str) -> Request {
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {bearer}"))],
        body: Body::Bytes(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string().into_bytes()),
        facts: RequestFacts::default(),
    }
}

fn send(gateway: &Gateway, host: &MemoryHost, request: Request) -> (u16, Value) {
    futures::executor::block_on(async {
        let response = gateway.handle(request, host).await;
        let status = response.status;
        let body = collect_body(response.body).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    })
}

#[test]
fn valid_tokens_map_to_consumer_tenant_and_tier_and_tiers_decide_models() {
    let host = host(&config(static_keys(), None));
    let gateway = Gateway::new();
    let (status, _) = send(&gateway, &host, chat("mock-pro", &token("rs256_valid")));
    assert_eq!(status, 200, "alice is on the pro tier: every model");
    let event = &host.events()[0];
    assert_eq!((event.consumer.as_deref(), event.tenant.as_deref(), event.tier.as_deref()), (Some("alice"), Some("acme"), Some("pro")));

    let (status, body) = send(&gateway, &host, chat("mock-pro", &token("es256_valid")));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("model_not_allowed")), "bob is on the free tier");
    let (status, _) = send(&gateway, &host, chat("mock", &token("es256_valid")));
    assert_eq!(status, 200);
    let (status, _) = send(&gateway, &host, chat("mock", &token("eddsa_valid")));
    assert_eq!(status, 200, "EdDSA");
    let (status, _) = send(&gateway, &host, chat("mock", "sk-web"));
    assert_eq!(status, 200, "API keys still work alongside tokens");
}

#[test]
fn refused_tokens_are_401_with_a_reason_and_never_echoed() {
    let host = host(&config(static_keys(), None));
    let gateway = Gateway::new();
    for (case, reason) in [
        ("expired", "expired"),
        ("wrong_audience", "wrong_audience"),
        ("tampered_payload", "bad_signature"),
        ("alg_none", "alg_none"),
        ("alg_confusion_hs256_rsa_pem_kid", "algorithm_mismatch"),
        ("unknown_kid", "unknown_key"),
    ] {
        let t = token(case);
        let (status, body) = send(&gateway, &host, chat("mock", &t));
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_token")), "{case}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{case}: {message}");
        assert!(!body.to_string().contains(&t[..20]), "{case}: token echoed");
    }
}

fn jwks_host(serve: bool) -> (MemoryHost, Rc<Cell<u32>>) {
    let fetches = Rc::new(Cell::new(0));
    let counter = fetches.clone();
    let document = jwks_document();
    let host = host(&config(json!([]), Some("https://idp.test/.well-known/jwks.json"))).with_upstream(move |request| {
        assert_eq!(request.url, "https://idp.test/.well-known/jwks.json");
        counter.set(counter.get() + 1);
        if !serve {
            return Scripted::Fail(FetchError::Connect("refused".into()));
        }
        Scripted::Respond(OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Bytes(document.clone().into_bytes()),
        })
    });
    (host, fetches)
}

#[test]
fn jwks_keys_are_fetched_once_cached_and_refetched_for_unknown_kids_at_most_once_a_minute() {
    let (host, fetches) = jwks_host(true);
    let gateway = Gateway::new();
    assert_eq!(send(&gateway, &host, chat("mock-pro", &token("rs256_valid"))).0, 200);
    assert_eq!(send(&gateway, &host, chat("mock", &token("es256_valid"))).0, 200);
    assert_eq!(fetches.get(), 1, "cached");

    let (status, _) = send(&gateway, &host, chat("mock", &token("unknown_kid")));
    assert_eq!(status, 401);
    assert_eq!(fetches.get(), 1, "a refetch for an unknown kid waits a minute after the last fetch");
    host.advance(61_000);
    let (status, _) = send(&gateway, &host, chat("mock", &token("unknown_kid")));
    assert_eq!(status, 401);
    assert_eq!(fetches.get(), 2, "one refetch for the unknown kid");
    let (status, _) = send(&gateway, &host, chat("mock", &token("unknown_kid")));
    assert_eq!(status, 401);
    assert_eq!(fetches.get(), 2, "and not again right away: anyone can send any kid");
}

#[test]
fn an_unreachable_jwks_without_other_keys_is_a_503() {
    let (host, fetches) = jwks_host(false);
    let gateway = Gateway::new();
    let (status, body) = send(&gateway, &host, chat("mock", &token("rs256_valid")));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("jwks_unavailable")));
    let (status, _) = send(&gateway, &host, chat("mock", &token("rs256_valid")));
    assert_eq!(status, 503);
    assert_eq!(fetches.get(), 1, "a failing identity provider is not hammered");
}

#[test]
fn jwt_config_is_validated_with_paths() {
    let bad = json!({
        "auth": { "mode": "jwt", "jwt": { "keys": [ { "alg": "RS512", "pem": "x" }, { "alg": "HS256", "secret": "sk-live-abc" }, { "alg": "ES256", "pem": "not a pem" } ] } },
        "providers": { "mock": { "kind": "mock" } },
        "models": { "mock": { "provider": "mock" } }
    });
    let err = edge::Config::parse(&bad.to_string()).unwrap_err().to_string();
    for path in ["auth.jwt.audiences", "auth.jwt.keys[0].alg", "auth.jwt.keys[1].secret", "auth.jwt.keys[2]"] {
        assert!(err.contains(path), "{path} in {err}");
    }
}

#[test]
fn a_fetched_jwks_is_stored_in_kv_for_other_isolates() {
    let (host, fetches) = jwks_host(true);
    assert_eq!(send(&Gateway::new(), &host, chat("mock", &token("rs256_valid"))).0, 200);
    futures::executor::block_on(host.run_background());
    assert_eq!(fetches.get(), 1);
    // A fresh isolate verifies from the stored set without fetching.
    assert_eq!(send(&Gateway::new(), &host, chat("mock", &token("es256_valid"))).0, 200);
    assert_eq!(fetches.get(), 1, "adopted from KV");
    // Once the stored set is older than jwks_refresh_ms, a fresh isolate fetches again.
    host.advance(601_000);
    let _ = send(&Gateway::new(), &host, chat("mock", &token("es256_valid")));
    assert_eq!(fetches.get(), 2);
}

/// The JWT config with an API-key consumer named like the token's subject (`alice`), a
/// per-consumer limit of one request a minute, and `extra` merged into `auth.jwt`.
fn colliding_config(extra: Value) -> String {
    let mut doc: Value = serde_json::from_str(&config(static_keys(), None)).unwrap();
    let alice_key = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"sk-alice"))
    };
    doc["auth"]["consumers"] = json!([
        { "id": "web", "key_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"sk-web")) },
        { "id": "alice", "key_sha256": alice_key, "models": ["mock"], "metadata": { "team": "payments" } }
    ]);
    for (k, v) in extra.as_object().unwrap() {
        doc["auth"]["jwt"][k] = v.clone();
    }
    doc["rate_limits"] = json!([{ "scope": ["consumer"], "metric": "requests", "window": "minute", "limit": 1 }]);
    doc.to_string()
}

#[test]
fn a_token_subject_never_shares_a_configured_consumers_limits_or_metadata() {
    let host = host(&colliding_config(json!({})));
    let gateway = Gateway::new();
    let (status, _) = send(&gateway, &host, chat("mock", "sk-alice"));
    assert_eq!(status, 200, "the API-key consumer alice uses her one request");
    let (status, _) = send(&gateway, &host, chat("mock", "sk-alice"));
    assert_eq!(status, 429, "and is then limited");
    let (status, body) = send(&gateway, &host, chat("mock-pro", &token("rs256_valid")));
    assert_eq!(status, 200, "the token subject `alice` has its own counter and its tier's models: {body}");
    let event = host.events().into_iter().last().unwrap();
    assert_eq!(event.consumer.as_deref(), Some("alice"));
    assert_eq!(event.issuer.as_deref(), Some("https://issuer.test.example"));
    assert!(event.metadata.is_empty(), "the configured alice's metadata is not the token's: {:?}", event.metadata);
}

#[test]
fn consumer_map_makes_a_token_act_as_a_declared_consumer() {
    let host = host(&colliding_config(json!({ "consumer_map": { "alice": "alice" } })));
    let gateway = Gateway::new();
    let (status, body) = send(&gateway, &host, chat("mock-pro", &token("rs256_valid")));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("model_not_allowed")), "the declared consumer's models apply");
    let (status, _) = send(&gateway, &host, chat("mock", &token("rs256_valid")));
    assert_eq!(status, 200);
    let event = host.events().into_iter().last().unwrap();
    assert_eq!((event.consumer.as_deref(), event.issuer.as_deref()), (Some("alice"), None));
    assert_eq!(event.metadata.get("team").map(String::as_str), Some("payments"));
    let (status, _) = send(&gateway, &host, chat("mock", "sk-alice"));
    assert_eq!(status, 429, "the token and the key are one consumer with one counter");
}

#[test]
fn consumer_map_must_name_a_declared_consumer() {
    let errors = edge::Config::parse(&colliding_config(json!({ "consumer_map": { "alice": "nobody" } }))).unwrap_err();
    assert!(errors.to_string().contains("auth.jwt.consumer_map.alice"), "{errors}");
}
