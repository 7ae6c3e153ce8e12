//! Unit tests: tokens made here with jwt-compact's signing side (HS256, ES256, EdDSA) to probe
//! each rule at its edges. Cross-implementation cases (PyJWT-made, all four algorithms including
//! RS256) are in policy/tests/jwt.rs.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Hs256Key, SigningKey as _};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature as _, Header};
use serde_json::json;

const NOW: u64 = 1_700_001_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

fn obj(v: Value) -> ClaimsMap {
    v.as_object().unwrap().clone()
}

/// Claims valid at NOW: sub, iss, aud, a tenant, an hour of life.
fn claims() -> Value {
    json!({"sub": "alice", "iss": "https://idp.example", "aud": "gw", "tenant": "acme", "tier": "pro",
           "iat": NOW - 100, "nbf": NOW - 100, "exp": NOW + 3600})
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn rules() -> JwtRules {
    JwtRules {
        issuers: vec!["https://idp.example".into()],
        audiences: vec!["gw".into()],
        tenant_claim: Some("tenant".into()),
        tier_claim: Some("tier".into()),
        ..JwtRules::default()
    }
}

fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::empty();
    if let Some(kid) = kid {
        header = header.with_key_id(kid);
    }
    Hs256.token(&header, &Claims::new(obj(claims.clone())), &Hs256Key::new(secret)).unwrap()
}

/// A token put together by hand: any header and payload text, HMAC-signed with `secret`.
fn hs256_raw(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = Hs256.sign(&Hs256Key::new(secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_bytes()))
}

fn hs_key(kid: &str) -> JwtKey {
    JwtKey::hs256(SECRET).unwrap().with_kid(kid)
}

fn hs_set() -> JwtKeySet {
    JwtKeySet::new(vec![hs_key("h1")])
}

fn check(claims: &Value, rules: &JwtRules, now: u64) -> Result<JwtIdentity, JwtError> {
    verify(&hs256(SECRET, Some("h1"), claims), &hs_set(), rules, now)
}

// ---- mapping ------------------------------------------------------------------------------

#[test]
fn a_valid_token_maps_consumer_tenant_tier_and_keeps_every_claim() {
    let id = check(&claims(), &rules(), NOW).unwrap();
    assert_eq!(id.consumer, "alice");
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.tier.as_deref(), Some("pro"));
    assert_eq!(id.issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(id.expires_at, Some(NOW + 3600));
    assert_eq!((id.algorithm, id.key_id.as_deref()), (JwtAlgorithm::Hs256, Some("h1")));
    assert_eq!(id.claims["exp"], json!(NOW + 3600));
    assert_eq!(id.claims["iat"], json!(NOW - 100));
    assert_eq!(id.claims["aud"], json!("gw"));
}

#[test]
fn claims_can_be_named_by_json_pointer_and_numbers_become_text() {
    let token_claims = with(claims(), json!({"org_id": 90210, "realm_access": {"tier": "gold", "roles": ["a"]},
                                              "https://example.com/tenant": "t-url", "a/b": {"c": "slash"}}));
    let r = JwtRules {
        consumer_claim: "/realm_access/roles/0".into(),
        tenant_claim: Some("org_id".into()),
        tier_claim: Some("/realm_access/tier".into()),
        ..rules()
    };
    let id = check(&token_claims, &r, NOW).unwrap();
    assert_eq!((id.consumer.as_str(), id.tenant.as_deref(), id.tier.as_deref()), ("a", Some("90210"), Some("gold")));
    let r = JwtRules { tenant_claim: Some("https://example.com/tenant".into()), tier_claim: Some("/a~1b/c".into()), ..rules() };
    let id = check(&token_claims, &r, NOW).unwrap();
    assert_eq!((id.tenant.as_deref(), id.tier.as_deref()), (Some("t-url"), Some("slash")));
}

#[test]
fn absent_tenant_and_tier_are_none_unless_required() {
    let c = with(claims(), json!({"tenant": null, "tier": null}));
    let id = check(&c, &rules(), NOW).unwrap();
    assert_eq!((id.tenant, id.tier), (None, None));
    let r = JwtRules { required_claims: vec!["tenant".into()], ..rules() };
    assert_eq!(check(&c, &r, NOW), Err(JwtError::MissingClaim("tenant".into())));
    let r = JwtRules { required_claims: vec!["/scope/plan".into()], ..rules() };
    assert_eq!(check(&c, &r, NOW), Err(JwtError::MissingClaim("/scope/plan".into())));
    let c = with(c, json!({"scope": {"plan": "x"}, "tier": "free"}));
    assert_eq!(check(&c, &r, NOW).unwrap().tier.as_deref(), Some("free"));
}

#[test]
fn unusable_identity_values_are_invalid_claims() {
    for (sub, why) in [
        (json!(""), "empty"),
        (json!("a\nb"), "newline"),
        (json!("x".repeat(MAX_CLAIM_VALUE_LEN + 1)), "too long"),
        (json!(true), "bool"),
        (json!(1.5), "float"),
        (json!({"id": 1}), "object"),
        (json!(["a"]), "array"),
    ] {
        let c = with(claims(), json!({ "sub": sub }));
        assert_eq!(check(&c, &rules(), NOW), Err(JwtError::InvalidClaim("sub".into())), "{why}");
    }
    let c = with(claims(), json!({"sub": "x".repeat(MAX_CLAIM_VALUE_LEN)}));
    assert!(check(&c, &rules(), NOW).is_ok());
    let c = with(claims(), json!({"tier": ["pro"]}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::InvalidClaim("tier".into())));
    // A null sub is an absent sub.
    let c = with(claims(), json!({"sub": null}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::MissingClaim("sub".into())));
}

// ---- time ---------------------------------------------------------------------------------

#[test]
fn exp_nbf_and_iat_allow_exactly_the_leeway() {
    let exp = NOW + 3600;
    assert!(check(&claims(), &rules(), exp + 30).is_ok());
    assert_eq!(check(&claims(), &rules(), exp + 31), Err(JwtError::Expired));
    let c = with(claims(), json!({"nbf": NOW + 30, "iat": NOW}));
    assert!(check(&c, &rules(), NOW).is_ok());
    let c = with(claims(), json!({"nbf": NOW + 31}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::NotYetValid));
    let c = with(claims(), json!({"nbf": null, "iat": NOW + 31}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::NotYetValid));
    let strict = JwtRules { leeway_secs: 0, ..rules() };
    assert_eq!(check(&claims(), &strict, exp + 1), Err(JwtError::Expired));
    assert!(check(&claims(), &strict, exp).is_ok());
}

#[test]
fn extreme_times_and_leeways_do_not_overflow() {
    let huge = JwtRules { leeway_secs: u64::MAX, ..rules() };
    assert!(check(&claims(), &huge, u64::MAX).is_ok());
    assert_eq!(check(&claims(), &rules(), u64::MAX), Err(JwtError::Expired));
    let c = with(claims(), json!({"exp": i64::MAX, "nbf": i64::MIN, "iat": -5}));
    // Out of the range a date can hold: refused as malformed rather than wrapped.
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::Malformed));
    let c = with(claims(), json!({"exp": 253_402_300_799_i64, "nbf": -62_135_596_800_i64, "iat": null}));
    assert_eq!(check(&c, &rules(), NOW).unwrap().expires_at, Some(253_402_300_799));
    let c = with(claims(), json!({"exp": -1}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::Expired));
}

#[test]
fn exp_is_required_unless_switched_off_and_max_age_needs_iat() {
    let c = with(claims(), json!({"exp": null}));
    assert_eq!(check(&c, &rules(), NOW), Err(JwtError::MissingClaim("exp".into())));
    let lax = JwtRules { require_exp: false, ..rules() };
    assert_eq!(check(&c, &lax, NOW).unwrap().expires_at, None);

    let aged = JwtRules { max_age_secs: Some(600), ..rules() };
    assert!(check(&claims(), &aged, NOW).is_ok());
    // iat = NOW - 100: too old at NOW - 100 + 600 + 30 + 1.
    assert!(check(&claims(), &aged, NOW + 530).is_ok());
    assert_eq!(check(&claims(), &aged, NOW + 531), Err(JwtError::Expired));
    let c = with(claims(), json!({"iat": null}));
    assert_eq!(check(&c, &aged, NOW), Err(JwtError::MissingClaim("iat".into())));
}

#[test]
fn fractional_timestamps_are_read_as_seconds() {
    let c = with(claims(), json!({"exp": (NOW + 10) as f64 + 0.75}));
    assert_eq!(check(&c, &rules(), NOW).unwrap().expires_at, Some(NOW + 10));
}

// ---- issuer and audience ------------------------------------------------------------------

#[test]
fn issuer_rules() {
    assert_eq!(check(&with(claims(), json!({"iss": "https://evil.example"})), &rules(), NOW), Err(JwtError::WrongIssuer));
    assert_eq!(check(&with(claims(), json!({"iss": null})), &rules(), NOW), Err(JwtError::MissingClaim("iss".into())));
    assert_eq!(check(&with(claims(), json!({"iss": 7})), &rules(), NOW), Err(JwtError::InvalidClaim("iss".into())));
    // Case matters: issuers are compared exactly.
    assert_eq!(check(&with(claims(), json!({"iss": "https://IDP.example"})), &rules(), NOW), Err(JwtError::WrongIssuer));
    let any_issuer = JwtRules { issuers: vec![], ..rules() };
    assert!(check(&with(claims(), json!({"iss": null})), &any_issuer, NOW).is_ok());
}

#[test]
fn audience_may_be_a_string_or_an_array() {
    let r = JwtRules { audiences: vec!["gw".into(), "gw-eu".into()], ..rules() };
    for (aud, ok) in [
        (json!("gw"), true),
        (json!("gw-eu"), true),
        (json!(["x", "gw-eu"]), true),
        (json!(["x", 5, "gw"]), true),
        (json!("GW"), false),
        (json!(["x", "y"]), false),
        (json!([]), false),
    ] {
        let got = check(&with(claims(), json!({ "aud": aud.clone() })), &r, NOW);
        if ok {
            assert!(got.is_ok(), "{aud}: {got:?}");
        } else {
            assert_eq!(got, Err(JwtError::WrongAudience), "{aud}");
        }
    }
    assert_eq!(check(&with(claims(), json!({"aud": 5})), &r, NOW), Err(JwtError::InvalidClaim("aud".into())));
    assert_eq!(check(&with(claims(), json!({"aud": null})), &r, NOW), Err(JwtError::MissingClaim("aud".into())));
    let any_audience = JwtRules { audiences: vec![], ..rules() };
    assert!(check(&with(claims(), json!({"aud": null})), &any_audience, NOW).is_ok());
}

// ---- header, algorithm, keys --------------------------------------------------------------

#[test]
fn alg_none_in_any_spelling_is_refused_before_keys_are_considered() {
    let payload = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE", " none"] {
        let header = json!({"alg": alg, "kid": "h1"}).to_string();
        let token = format!("{}.{}.", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::AlgNone), "{alg}");
        // Even with a signature attached, or with no key set at all.
        let signed = hs256_raw(&header, &payload, SECRET);
        assert_eq!(verify(&signed, &JwtKeySet::default(), &rules(), NOW), Err(JwtError::AlgNone), "{alg}");
    }
}

#[test]
fn other_algorithms_are_unsupported_and_names_are_case_sensitive() {
    let payload = claims().to_string();
    for alg in ["HS384", "HS512", "RS512", "PS256", "ES256K", "ES384", "Ed25519", "hs256", "Hs256", ""] {
        let token = hs256_raw(&json!({"alg": alg}).to_string(), &payload, SECRET);
        assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::UnsupportedAlgorithm(alg.to_string())), "{alg}");
    }
    // A header without alg, or with a non-string alg, is malformed.
    assert_eq!(verify(&hs256_raw("{}", &payload, SECRET), &hs_set(), &rules(), NOW), Err(JwtError::Malformed));
    assert_eq!(verify(&hs256_raw(r#"{"alg":256}"#, &payload, SECRET), &hs_set(), &rules(), NOW), Err(JwtError::Malformed));
}

#[test]
fn crit_headers_are_refused() {
    let payload = claims().to_string();
    let token = hs256_raw(r#"{"alg":"HS256","kid":"h1","crit":["b64"],"b64":false}"#, &payload, SECRET);
    assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::UnsupportedHeader("crit".into())));
    // Unknown non-critical members are fine.
    let token = hs256_raw(r#"{"alg":"HS256","kid":"h1","x-trace":"abc","typ":"at+jwt"}"#, &payload, SECRET);
    assert!(verify(&token, &hs_set(), &rules(), NOW).is_ok());
}

#[test]
fn malformed_tokens() {
    let good = hs256(SECRET, Some("h1"), &claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let too_long = format!("{head}.{}.{sig}", "A".repeat(MAX_TOKEN_LEN));
    for bad in [
        String::new(),
        "abc".into(),
        format!("{head}.{body}"),
        format!("{head}.{body}.{sig}.{sig}"),
        format!("{head}!.{body}.{sig}"),
        format!("{head}.{body}=.{sig}"),
        format!("Bearer {good}"),
        too_long,
    ] {
        assert_eq!(verify(&bad, &hs_set(), &rules(), NOW), Err(JwtError::Malformed), "{bad:.40}");
    }
    // Properly signed, but the claims are not a JSON object.
    for payload in ["[]", "\"x\"", "{", "{\"exp\":\"soon\"}"] {
        let token = hs256_raw(r#"{"alg":"HS256","kid":"h1"}"#, payload, SECRET);
        assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::Malformed), "{payload}");
    }
    // CBOR claims (jwt-compact's compact tokens) are not accepted: the feature is off.
    let token = hs256_raw(r#"{"alg":"HS256","kid":"h1","cty":"CBOR"}"#, "\u{a0}", SECRET);
    assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::Malformed));
}

#[test]
fn signature_failures() {
    let token = hs256(OTHER_SECRET, Some("h1"), &claims());
    assert_eq!(verify(&token, &hs_set(), &rules(), NOW), Err(JwtError::BadSignature));
    let good = hs256(SECRET, Some("h1"), &claims());
    // 43 base64url characters carry 32 bytes; 40 carry 30: a signature of the wrong length.
    let truncated = &good[..good.len() - 3];
    assert_eq!(verify(truncated, &hs_set(), &rules(), NOW), Err(JwtError::BadSignature));
    let (signed, _) = good.rsplit_once('.').unwrap();
    assert_eq!(verify(&format!("{signed}."), &hs_set(), &rules(), NOW), Err(JwtError::BadSignature));
    // Claims are judged only after the signature: an expired token with a bad signature is a bad
    // signature, not "expired".
    let expired_forged = hs256(OTHER_SECRET, Some("h1"), &with(claims(), json!({"exp": 1})));
    assert_eq!(verify(&expired_forged, &hs_set(), &rules(), NOW), Err(JwtError::BadSignature));
}

#[test]
fn key_selection_by_kid_and_alg() {
    let two = JwtKeySet::new(vec![
        JwtKey::hs256(OTHER_SECRET).unwrap().with_kid("old"),
        JwtKey::hs256(SECRET).unwrap().with_kid("new"),
    ]);
    // No kid: every HS256 key is tried.
    let id = verify(&hs256(SECRET, None, &claims()), &two, &rules(), NOW).unwrap();
    assert_eq!(id.key_id.as_deref(), Some("new"));
    // A kid picks its key and no other.
    assert_eq!(verify(&hs256(SECRET, Some("old"), &claims()), &two, &rules(), NOW), Err(JwtError::BadSignature));
    assert_eq!(
        verify(&hs256(SECRET, Some("gone"), &claims()), &two, &rules(), NOW),
        Err(JwtError::UnknownKey { kid: Some("gone".into()) })
    );
    // Two keys sharing a kid (a rotation done badly) are both tried.
    let shared = JwtKeySet::new(vec![
        JwtKey::hs256(OTHER_SECRET).unwrap().with_kid("k"),
        JwtKey::hs256(SECRET).unwrap().with_kid("k"),
    ]);
    assert!(verify(&hs256(SECRET, Some("k"), &claims()), &shared, &rules(), NOW).is_ok());
    // A key without kid accepts tokens with any kid, or none.
    let unnamed = JwtKeySet::new(vec![JwtKey::hs256(SECRET).unwrap()]);
    assert_eq!(verify(&hs256(SECRET, Some("whatever"), &claims()), &unnamed, &rules(), NOW).unwrap().key_id, None);
    assert!(verify(&hs256(SECRET, None, &claims()), &unnamed, &rules(), NOW).is_ok());
    // An empty set knows no key.
    assert_eq!(verify(&hs256(SECRET, None, &claims()), &JwtKeySet::default(), &rules(), NOW), Err(JwtError::UnknownKey { kid: None }));
}

fn es256_pair(seed: u8) -> (<Es256 as Algorithm>::SigningKey, JwtKey) {
    let sk = <Es256 as Algorithm>::SigningKey::from_slice(&[seed; 32]).unwrap();
    let jwk = serde_json::to_value(JsonWebKey::from(&sk.to_verifying_key())).unwrap();
    (sk, JwtKey::from_jwk(&jwk).unwrap())
}

fn ed25519_pair(seed: u8) -> (<Ed25519 as Algorithm>::SigningKey, JwtKey) {
    let sk = <Ed25519 as Algorithm>::SigningKey::from_slice(&[seed; 32]).unwrap();
    let jwk = serde_json::to_value(JsonWebKey::from(&sk.to_verifying_key())).unwrap();
    (sk, JwtKey::from_jwk(&jwk).unwrap())
}

#[test]
fn es256_and_eddsa_round_trip_and_stay_on_their_algorithm() {
    let (es_sk, es_key) = es256_pair(7);
    let (ed_sk, ed_key) = ed25519_pair(9);
    let set = JwtKeySet::new(vec![es_key.with_kid("ec"), ed_key.with_kid("ed")]);
    let c = Claims::new(obj(claims()));
    let es_token = Es256.token(&Header::empty().with_key_id("ec"), &c, &es_sk).unwrap();
    let ed_token = Ed25519.token(&Header::empty().with_key_id("ed"), &c, &ed_sk).unwrap();
    assert_eq!(verify(&es_token, &set, &rules(), NOW).unwrap().algorithm, JwtAlgorithm::Es256);
    assert_eq!(verify(&ed_token, &set, &rules(), NOW).unwrap().algorithm, JwtAlgorithm::EdDsa);
    // Without kid each finds the key of its own algorithm.
    let ed_no_kid = Ed25519.token(&Header::empty(), &c, &ed_sk).unwrap();
    assert_eq!(verify(&ed_no_kid, &set, &rules(), NOW).unwrap().key_id.as_deref(), Some("ed"));
    // A token naming the other key's kid is refused before any signature check.
    let ed_as_ec = Ed25519.token(&Header::empty().with_key_id("ec"), &c, &ed_sk).unwrap();
    assert_eq!(
        verify(&ed_as_ec, &set, &rules(), NOW),
        Err(JwtError::AlgorithmMismatch { key_alg: JwtAlgorithm::Es256, token_alg: JwtAlgorithm::EdDsa })
    );
    // HS256 "signed" with a public key's bytes finds no HS256 key.
    let public_bytes = URL_SAFE_NO_PAD.decode(serde_json::to_value(JsonWebKey::from(&es_sk.to_verifying_key())).unwrap()["x"].as_str().unwrap()).unwrap();
    let confused = hs256(&[public_bytes.clone(), public_bytes].concat(), Some("ec"), &claims());
    assert_eq!(
        verify(&confused, &set, &rules(), NOW),
        Err(JwtError::AlgorithmMismatch { key_alg: JwtAlgorithm::Es256, token_alg: JwtAlgorithm::Hs256 })
    );
    // Another key of the same kind under the same kid: bad signature.
    let (other_sk, _) = es256_pair(8);
    let forged = Es256.token(&Header::empty().with_key_id("ec"), &c, &other_sk).unwrap();
    assert_eq!(verify(&forged, &set, &rules(), NOW), Err(JwtError::BadSignature));
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn error_text_never_contains_the_token_and_sanitises_header_strings() {
    let payload = claims().to_string();
    let long_kid = format!("kid-{}\u{7}\n", "k".repeat(200));
    let tokens = [
        hs256(OTHER_SECRET, Some("h1"), &claims()),
        hs256(SECRET, Some(&long_kid), &claims()),
        hs256_raw(&json!({"alg": format!("X\r\nInjected: {}", "y".repeat(100))}).to_string(), &payload, SECRET),
        hs256(SECRET, Some("h1"), &with(claims(), json!({"exp": 1}))),
        "not-a-token-at-all".to_string(),
    ];
    for token in &tokens {
        let err = verify(token, &hs_set(), &rules(), NOW).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(token.as_str()), "{text}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!text.contains(part), "{text}");
        }
        assert!(text.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{text:?}");
        assert!(text.len() < 200, "{text}");
    }
    let err = verify(&tokens[1], &hs_set(), &rules(), NOW).unwrap_err();
    assert!(err.suggests_key_refresh());
    assert!(matches!(&err, JwtError::UnknownKey { kid: Some(k) } if k.ends_with("...") && k.len() == 67));
}

#[test]
fn error_codes_are_distinct_labels() {
    let all = [
        JwtError::Malformed,
        JwtError::AlgNone,
        JwtError::UnsupportedAlgorithm("x".into()),
        JwtError::UnsupportedHeader("crit".into()),
        JwtError::UnknownKey { kid: None },
        JwtError::AlgorithmMismatch { key_alg: JwtAlgorithm::Rs256, token_alg: JwtAlgorithm::Hs256 },
        JwtError::BadSignature,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::WrongIssuer,
        JwtError::WrongAudience,
        JwtError::MissingClaim("sub".into()),
        JwtError::InvalidClaim("sub".into()),
    ];
    let mut codes: Vec<&str> = all.iter().map(JwtError::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
    assert!(!JwtError::UnknownKey { kid: None }.suggests_key_refresh());
}

// ---- keys ---------------------------------------------------------------------------------

#[test]
fn hmac_secrets_must_be_32_bytes_and_never_print() {
    assert!(matches!(JwtKey::hs256(&SECRET[..31]), Err(JwtKeyError::WeakKey(_))));
    let key = JwtKey::hs256(SECRET).unwrap().with_kid("k");
    let shown = format!("{key:?}");
    assert_eq!(shown, r#"JwtKey { alg: "HS256", kid: Some("k") }"#);
    let jwk = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(&SECRET[..16])});
    let err = JwtKey::from_jwk(&jwk).unwrap_err();
    assert!(matches!(err, JwtKeyError::WeakKey(_)));
    assert!(!err.to_string().contains(&URL_SAFE_NO_PAD.encode(&SECRET[..16])));
    let bad = json!({"kty": "oct", "k": "%%secret-ish%%"});
    assert!(!JwtKey::from_jwk(&bad).unwrap_err().to_string().contains("secret-ish"));
}

#[test]
fn jwk_members_are_checked() {
    let (_, ec) = es256_pair(3);
    let _ = ec;
    let sk = <Es256 as Algorithm>::SigningKey::from_slice(&[3; 32]).unwrap();
    let base = serde_json::to_value(JsonWebKey::from(&sk.to_verifying_key())).unwrap();
    let ok = |changes: Value| JwtKey::from_jwk(&with(base.clone(), changes));
    assert_eq!(ok(json!({"kid": "e", "use": "sig", "alg": "ES256", "key_ops": ["verify", "sign"]})).unwrap().kid(), Some("e"));
    assert!(matches!(ok(json!({"use": "enc"})), Err(JwtKeyError::NotForSignatures(_))));
    assert!(matches!(ok(json!({"key_ops": ["sign"]})), Err(JwtKeyError::NotForSignatures(_))));
    assert!(matches!(ok(json!({"alg": "ES384"})), Err(JwtKeyError::UnsupportedAlgorithm(a)) if a == "ES384"));
    assert!(matches!(ok(json!({"alg": "HS256"})), Err(JwtKeyError::KeyTypeMismatch { expected: JwtAlgorithm::Hs256, .. })));
    assert!(matches!(ok(json!({"crv": "secp256k1"})), Err(JwtKeyError::UnsupportedKey(_))));
    assert!(matches!(ok(json!({"crv": null})), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(ok(json!({"kid": 5})), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(ok(json!({"y": null})), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(ok(json!({"x": "AAAA"})), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(JwtKey::from_jwk(&json!([1])), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(JwtKey::from_jwk_json("{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}"), Err(JwtKeyError::InvalidKey(_))));
    assert!(matches!(JwtKey::from_jwk_json("nope"), Err(JwtKeyError::InvalidKey(_))));
}

#[test]
fn small_order_ed25519_keys_are_refused() {
    // The identity point (y = 1) encodes as 0x01 followed by zeros.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(identity)});
    assert!(matches!(JwtKey::from_jwk(&jwk), Err(JwtKeyError::WeakKey(_))));
    let (_, good) = ed25519_pair(1);
    assert_eq!(good.algorithm(), JwtAlgorithm::EdDsa);
}

#[test]
fn pem_armour_is_strict() {
    let cases = [
        ("", JwtKeyError::InvalidPem("no -----BEGIN line")),
        ("MIIBIjANBg", JwtKeyError::InvalidPem("no -----BEGIN line")),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n", JwtKeyError::InvalidPem("no matching -----END line")),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----", JwtKeyError::InvalidPem("no matching -----END line")),
        ("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----", JwtKeyError::InvalidPem("body is not base64")),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            JwtKeyError::InvalidPem("text after the END line (one key per PEM)"),
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----", JwtKeyError::PrivateKey),
        ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----", JwtKeyError::PrivateKey),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----", JwtKeyError::PrivateKey),
        ("-----BEGIN WHATEVER-----\nAAAA\n-----END WHATEVER-----", JwtKeyError::InvalidPem("expected a PUBLIC KEY block")),
    ];
    for (pem, want) in cases {
        assert_eq!(JwtKey::from_pem(JwtAlgorithm::Rs256, pem).unwrap_err(), want, "{pem:?}");
    }
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
    assert!(matches!(JwtKey::from_pem(JwtAlgorithm::Rs256, cert), Err(JwtKeyError::UnsupportedKey(_))));
    let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
    assert!(matches!(JwtKey::from_pem(JwtAlgorithm::Rs256, junk), Err(JwtKeyError::InvalidKey(_))));
}

#[test]
fn jwks_documents() {
    assert!(matches!(JwtKeySet::from_jwks_json("{"), Err(JwtKeyError::InvalidJwks(_))));
    assert!(matches!(JwtKeySet::from_jwks_json("{\"keys\": {}}"), Err(JwtKeyError::InvalidJwks(_))));
    assert!(matches!(JwtKeySet::from_jwks_json("[]"), Err(JwtKeyError::InvalidJwks(_))));
    assert_eq!(JwtKeySet::from_jwks_json("{\"keys\": [1, {\"kty\": \"oct\"}]}").unwrap_err(), JwtKeyError::NoUsableKeys);
    let parsed = JwtKeySet::parse_jwks("{\"keys\": []}", JwksSource::Remote).unwrap();
    assert!(parsed.keys.is_empty() && parsed.skipped.is_empty());

    let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET), "kid": "s"});
    let many = json!({"keys": vec![oct; JwtKeySet::MAX_JWKS_KEYS + 2]}).to_string();
    let parsed = JwtKeySet::parse_jwks(&many, JwksSource::Config).unwrap();
    assert_eq!(parsed.keys.len(), JwtKeySet::MAX_JWKS_KEYS);
    assert_eq!(parsed.skipped.len(), 2);
    assert!(parsed.skipped.iter().all(|s| s.reason == JwtKeyError::TooManyKeys));
    let parsed = JwtKeySet::parse_jwks(&many, JwksSource::Remote).unwrap();
    assert!(parsed.keys.is_empty());
    assert_eq!(parsed.skipped[0], SkippedJwk { index: 0, kid: Some("s".into()), reason: JwtKeyError::SymmetricKeyNotAllowed });

    // Configured keys and a fetched set combine.
    let mut set = JwtKeySet::new(vec![hs_key("cfg")]);
    set.extend(JwtKeySet::from_jwks_json(&json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode(OTHER_SECRET), "kid": "j"}]}).to_string()).unwrap());
    set.push(es256_pair(5).1);
    assert_eq!(set.len(), 3);
    assert!(verify(&hs256(OTHER_SECRET, Some("j"), &claims()), &set, &rules(), NOW).is_ok());
    assert!(verify(&hs256(SECRET, Some("cfg"), &claims()), &set, &rules(), NOW).is_ok());
}

#[test]
fn printable_cuts_and_masks() {
    assert_eq!(printable("abc"), "abc");
    assert_eq!(printable("a\u{0}b\nc\u{e9}"), "a?b?c?");
    assert_eq!(printable(&"x".repeat(65)), format!("{}...", "x".repeat(64)));
    assert_eq!(printable(&"x".repeat(64)), "x".repeat(64));
}

#[test]
fn algorithm_names_round_trip() {
    for alg in JwtAlgorithm::ALL {
        assert_eq!(JwtAlgorithm::from_name(alg.name()), Some(alg));
        assert_eq!(alg.to_string(), alg.name());
    }
    assert_eq!(JwtAlgorithm::from_name("ES256K"), None);
    assert_eq!(JwtAlgorithm::from_name("eddsa"), None);
}
