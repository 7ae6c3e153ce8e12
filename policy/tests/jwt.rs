//! JWT verification against fixtures made by an independent implementation (PyJWT and
//! `cryptography`, see tests/jwt/make_fixtures.py): every case's token is verified at the fixed
//! time the fixtures were made for, with the keys in each configuration form (a JWKS document,
//! and public PEMs plus the HMAC secret), and must give exactly the expected identity or error.

use base64::Engine as _;
use policy::identity::jwt::{verify, JwksSource, JwtAlgorithm, JwtError, JwtKey, JwtKeyError, JwtKeySet, JwtRules};
use serde_json::Value;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jwt")
}

fn fixtures() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("fixtures.json")).expect("tests/jwt/fixtures.json");
    serde_json::from_str(&text).unwrap()
}

fn jwks_text() -> String {
    std::fs::read_to_string(fixture_dir().join("jwks.json")).expect("tests/jwt/jwks.json")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn rules(f: &Value) -> JwtRules {
    let r = &f["rules"];
    JwtRules {
        issuers: strings(&r["issuers"]),
        audiences: strings(&r["audiences"]),
        leeway_secs: r["leeway_secs"].as_u64().unwrap(),
        consumer_claim: r["consumer_claim"].as_str().unwrap().to_string(),
        tenant_claim: r["tenant_claim"].as_str().map(str::to_string),
        tier_claim: r["tier_claim"].as_str().map(str::to_string),
        ..JwtRules::default()
    }
}

fn alg(name: &str) -> JwtAlgorithm {
    JwtAlgorithm::from_name(name).unwrap_or_else(|| panic!("unknown algorithm {name} in fixtures"))
}

/// The keys in their configuration forms: public PEMs and the HMAC secret, each with its kid.
fn pem_key_set(f: &Value) -> JwtKeySet {
    f["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(kid, k)| {
            let key = match k["alg"].as_str().unwrap() {
                "HS256" => {
                    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k["secret_b64url"].as_str().unwrap()).unwrap();
                    JwtKey::hs256(&secret).unwrap()
                }
                name => JwtKey::from_pem(alg(name), k["pem"].as_str().unwrap()).unwrap(),
            };
            key.with_kid(kid.clone())
        })
        .collect()
}

fn expected(case: &Value) -> Result<Value, JwtError> {
    let e = &case["expect"];
    if let Some(ok) = e.get("ok") {
        return Ok(ok.clone());
    }
    let field = |name: &str| e[name].as_str().unwrap_or_else(|| panic!("{}: expect.{name}", case["name"])).to_string();
    Err(match e["error"].as_str().unwrap() {
        "Malformed" => JwtError::Malformed,
        "AlgNone" => JwtError::AlgNone,
        "UnsupportedAlgorithm" => JwtError::UnsupportedAlgorithm(field("alg")),
        "UnsupportedHeader" => JwtError::UnsupportedHeader(field("member")),
        "UnknownKey" => JwtError::UnknownKey { kid: e["kid"].as_str().map(str::to_string) },
        "AlgorithmMismatch" => JwtError::AlgorithmMismatch { key_alg: alg(&field("key_alg")), token_alg: alg(&field("token_alg")) },
        "BadSignature" => JwtError::BadSignature,
        "Expired" => JwtError::Expired,
        "NotYetValid" => JwtError::NotYetValid,
        "WrongIssuer" => JwtError::WrongIssuer,
        "WrongAudience" => JwtError::WrongAudience,
        "MissingClaim" => JwtError::MissingClaim(field("claim")),
        other => panic!("unknown expected error {other}"),
    })
}

/// Verify every case with `keys`; return the failures as readable lines.
fn run_cases(f: &Value, keys: &JwtKeySet, form: &str) -> Vec<String> {
    let rules = rules(f);
    let now = f["now"].as_u64().unwrap();
    let mut failures = Vec::new();
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let got = verify(token, keys, &rules, now);
        match (expected(case), got) {
            (Ok(want), Ok(id)) => {
                let got = serde_json::json!({
                    "consumer": id.consumer, "tenant": id.tenant, "tier": id.tier, "issuer": id.issuer,
                    "expires_at": id.expires_at, "algorithm": id.algorithm.name(), "key_id": id.key_id,
                });
                if got != want {
                    failures.push(format!("{form}/{name}: identity {got} != expected {want}"));
                }
                // The claims map carries everything the token said, times as integers.
                if id.claims.get("sub").is_none() || id.claims.get("exp").and_then(Value::as_u64) != id.expires_at {
                    failures.push(format!("{form}/{name}: claims map incomplete: {:?}", id.claims));
                }
            }
            (Err(want), Err(got)) if want == got => {
                let shown = got.to_string();
                if shown.contains(token) || token.split('.').any(|part| part.len() > 8 && shown.contains(part)) {
                    failures.push(format!("{form}/{name}: error text shows the token: {shown}"));
                }
            }
            (want, got) => failures.push(format!("{form}/{name}: expected {want:?}, got {got:?}")),
        }
    }
    failures
}

#[test]
fn every_fixture_case_has_its_expected_outcome_with_jwks_keys() {
    let f = fixtures();
    let keys = JwtKeySet::from_jwks_json(&jwks_text()).unwrap();
    let failures = run_cases(&f, &keys, "jwks");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), f["cases"].as_array().unwrap().len(), failures.join("\n"));
}

#[test]
fn every_fixture_case_has_its_expected_outcome_with_pem_keys() {
    let f = fixtures();
    let failures = run_cases(&f, &pem_key_set(&f), "pem");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_fixture_set_covers_every_algorithm_and_the_attacks_the_issue_names() {
    let f = fixtures();
    let names: Vec<&str> = f["cases"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for required in [
        "rs256_valid",
        "es256_valid",
        "eddsa_valid",
        "hs256_valid",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "rs256_other_key_same_kid",
        "tampered_payload",
        "alg_none",
        "alg_confusion_hs256_rsa_pem_kid",
        "alg_confusion_hs256_rsa_pem_no_kid",
        "unknown_kid",
        "missing_sub",
    ] {
        assert!(names.contains(&required), "fixture case {required} is missing");
    }
}

#[test]
fn jwks_keeps_usable_keys_and_skips_the_rest_with_the_right_reason() {
    let f = fixtures();
    let parsed = JwtKeySet::parse_jwks(&jwks_text(), JwksSource::Config).unwrap();
    let kids: Vec<&str> = parsed.keys.iter().map(|k| k.kid().unwrap()).collect();
    assert_eq!(kids, strings(&f["jwks"]["usable_kids"]));
    let algs: Vec<JwtAlgorithm> = parsed.keys.iter().map(|k| k.algorithm()).collect();
    use JwtAlgorithm::*;
    assert_eq!(algs, [Rs256, Es256, EdDsa, Hs256, Rs256]);

    let expected_skips = f["jwks"]["skipped"].as_array().unwrap();
    assert_eq!(parsed.skipped.len(), expected_skips.len(), "skipped: {:?}", parsed.skipped);
    for (skip, want) in parsed.skipped.iter().zip(expected_skips) {
        assert_eq!(skip.kid.as_deref(), want["kid"].as_str());
        let variant = format!("{:?}", skip.reason);
        let variant = variant.split(['(', ' ', '{']).next().unwrap();
        assert_eq!(variant, want["reason"].as_str().unwrap(), "{:?}: {}", skip.kid, skip.reason);
    }
}

#[test]
fn a_fetched_jwks_never_yields_a_shared_secret() {
    let f = fixtures();
    let parsed = JwtKeySet::parse_jwks(&jwks_text(), JwksSource::Remote).unwrap();
    assert!(parsed.keys.iter().all(|k| k.algorithm() != JwtAlgorithm::Hs256));
    assert!(parsed.skipped.iter().any(|s| s.kid.as_deref() == Some("hmac-1") && s.reason == JwtKeyError::SymmetricKeyNotAllowed));
    // So an HS256 token finds no key, while the asymmetric ones still verify.
    let rules = rules(&f);
    let now = f["now"].as_u64().unwrap();
    let token = |name: &str| f["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["token"].as_str().unwrap().to_string();
    assert_eq!(verify(&token("hs256_valid"), &parsed.keys, &rules, now), Err(JwtError::UnknownKey { kid: Some("hmac-1".into()) }));
    assert_eq!(verify(&token("rs256_valid"), &parsed.keys, &rules, now).unwrap().consumer, "alice");
    assert_eq!(verify(&token("eddsa_valid"), &parsed.keys, &rules, now).unwrap().consumer, "carol");
}

#[test]
fn keys_configured_without_kid_accept_any_kid_of_their_algorithm() {
    let f = fixtures();
    let keys: JwtKeySet = [("rsa-1", JwtAlgorithm::Rs256), ("ec-1", JwtAlgorithm::Es256)]
        .into_iter()
        .map(|(kid, a)| JwtKey::from_pem(a, f["keys"][kid]["pem"].as_str().unwrap()).unwrap())
        .collect();
    let rules = rules(&f);
    let now = f["now"].as_u64().unwrap();
    let case = |name: &str| f["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["token"].as_str().unwrap().to_string();
    // The token's kid is unknown, but a kid-less RS256 key exists and signed it.
    assert_eq!(verify(&case("unknown_kid"), &keys, &rules, now).unwrap().key_id, None);
    // Still one algorithm per key: the confusion token finds no HS256 key at all.
    assert_eq!(verify(&case("alg_confusion_hs256_rsa_pem_kid"), &keys, &rules, now), Err(JwtError::UnknownKey { kid: Some("rsa-1".into()) }));
    assert_eq!(verify(&case("alg_confusion_hs256_rsa_pem_no_kid"), &keys, &rules, now), Err(JwtError::UnknownKey { kid: None }));
    assert_eq!(verify(&case("rs256_other_key_same_kid"), &keys, &rules, now), Err(JwtError::BadSignature));
}

#[test]
fn the_same_tokens_fail_at_other_times() {
    let f = fixtures();
    let keys = JwtKeySet::from_jwks_json(&jwks_text()).unwrap();
    let rules = rules(&f);
    let token = f["cases"][0]["token"].as_str().unwrap();
    assert_eq!(f["cases"][0]["name"], "rs256_valid");
    // iat = nbf = 1_700_000_000, exp = 1_700_003_600, leeway 30.
    assert_eq!(verify(token, &keys, &rules, 1_700_000_000 - 31), Err(JwtError::NotYetValid));
    assert!(verify(token, &keys, &rules, 1_700_000_000 - 30).is_ok());
    assert!(verify(token, &keys, &rules, 1_700_003_600 + 30).is_ok());
    assert_eq!(verify(token, &keys, &rules, 1_700_003_600 + 31), Err(JwtError::Expired));
    assert_eq!(verify(token, &keys, &rules, 0), Err(JwtError::NotYetValid));
    assert_eq!(verify(token, &keys, &rules, u64::MAX), Err(JwtError::Expired));
}

#[test]
fn pem_forms_refuse_private_keys_and_the_wrong_algorithm() {
    let f = fixtures();
    let private = std::fs::read_to_string(fixture_dir().join("TEST-ONLY-private-keys.json")).unwrap();
    let private: Value = serde_json::from_str(&private).unwrap();
    assert_eq!(JwtKey::from_pem(JwtAlgorithm::Rs256, private["rsa"].as_str().unwrap()).unwrap_err(), JwtKeyError::PrivateKey);
    assert_eq!(JwtKey::from_pem(JwtAlgorithm::EdDsa, private["ed"].as_str().unwrap()).unwrap_err(), JwtKeyError::PrivateKey);
    let rsa_pem = f["keys"]["rsa-1"]["pem"].as_str().unwrap();
    assert!(matches!(JwtKey::from_pem(JwtAlgorithm::Es256, rsa_pem), Err(JwtKeyError::KeyTypeMismatch { expected: JwtAlgorithm::Es256, .. })));
    assert!(matches!(JwtKey::from_pem(JwtAlgorithm::Hs256, rsa_pem), Err(JwtKeyError::KeyTypeMismatch { expected: JwtAlgorithm::Hs256, .. })));
    let ec_pem = f["keys"]["ec-1"]["pem"].as_str().unwrap();
    assert!(matches!(JwtKey::from_pem(JwtAlgorithm::EdDsa, ec_pem), Err(JwtKeyError::KeyTypeMismatch { .. })));
    // Windows line endings and surrounding blank lines are fine.
    let crlf = format!("\n\n{}\n", rsa_pem.replace('\n', "\r\n"));
    assert_eq!(JwtKey::from_pem(JwtAlgorithm::Rs256, &crlf).unwrap().algorithm(), JwtAlgorithm::Rs256);
}
