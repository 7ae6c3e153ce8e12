//! JWT bearer tokens: verify a token against configured keys and rules, and map its claims to
//! the gateway's consumer, tenant and tier.
//!
//! [`verify`] is a pure function: the current time is a parameter, keys are already parsed (from
//! configuration, or from a JWKS the pipeline fetched and cached), nothing is fetched or read
//! from the environment. Parsing the token, checking the header's `alg` against the key and the
//! signature itself are jwt-compact's (`HS256`, `ES256` over `p256`, `EdDSA` over
//! `ed25519-dalek`); `RS256` is the `rsa` crate plugged into jwt-compact's `Algorithm` trait (see
//! `rs256.rs` for why). Claims checks (`exp`, `nbf`, `iat`, `iss`, `aud`) and the mapping are here.
//!
//! What is refused, and as what:
//! - `alg: none` in any spelling → [`JwtError::AlgNone`]; any other algorithm outside `HS256`,
//!   `RS256`, `ES256`, `EdDSA` → [`JwtError::UnsupportedAlgorithm`].
//! - Algorithm confusion (say `HS256` "signed" with the RSA public key as the HMAC secret): a key
//!   verifies only the algorithm it was configured for, so the token finds no key for its `alg`
//!   ([`JwtError::UnknownKey`]), a key with its `kid` but another algorithm
//!   ([`JwtError::AlgorithmMismatch`]), or an HMAC key whose secret is not the PEM
//!   ([`JwtError::BadSignature`]). The RSA key is never used as an HMAC secret.
//! - A `crit` header (extensions we cannot honour, RFC 7515 §4.1.11) → [`JwtError::UnsupportedHeader`].
//! - Tokens over [`MAX_TOKEN_LEN`] bytes, or not three base64url parts with JSON header and
//!   claims → [`JwtError::Malformed`].
//!
//! Errors never contain the token; strings taken from it (`alg`, `kid`) are cut to 64 printable
//! ASCII characters. Map every error to one `401` for the client: the variants are for logs and
//! metrics ([`JwtError::code`]), not for telling a caller what to fix.

mod keys;
mod rs256;

use std::fmt;

use jwt_compact::alg::{Ed25519, Es256, Hs256};
use jwt_compact::{AlgorithmExt as _, Claims, Token, UntrustedToken, ValidationError};
use serde_json::{Map, Value};

pub use keys::{JwksSource, JwtAlgorithm, JwtKey, JwtKeyError, JwtKeySet, ParsedJwks, SkippedJwk};

use keys::KeyMaterial;
use rs256::Rs256;

/// The longest token accepted, in bytes. Bounds the work spent on one header before any key is
/// tried (Cloudflare accepts request headers up to 32 KB; real tokens are a few KB at most).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The longest consumer, tenant or tier value taken from a claim, in bytes. These become keys in
/// counters and stores (Spin's key-value keys are at most 256 bytes with any prefix).
pub const MAX_CLAIM_VALUE_LEN: usize = 200;

/// What a valid token must say and how its claims map to the gateway's identity.
///
/// # Claim names
/// A claim name is a top-level member (`sub`, `org_id`, `https://example.com/tenant`) or, when it
/// starts with `/`, a JSON pointer (RFC 6901) into the claims: `/realm_access/tier`, `/orgs/0/id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// Accepted `iss` values (exact match). Empty: `iss` is not checked, which is only safe when
    /// every key in the set belongs to one issuer.
    pub issuers: Vec<String>,
    /// The token's `aud` (a string or an array of strings) must contain one of these. Empty:
    /// `aud` is not checked.
    pub audiences: Vec<String>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`, in seconds (default 30).
    pub leeway_secs: u64,
    /// Refuse tokens without `exp` (default true). Without `exp` a stolen token never expires.
    pub require_exp: bool,
    /// When set, `iat` is required and the token is refused once it is older than this.
    pub max_age_secs: Option<u64>,
    /// Claims that must be present and not `null`, by claim name (see above).
    pub required_claims: Vec<String>,
    /// The claim that names the consumer (default `sub`); required.
    pub consumer_claim: String,
    /// The claim that names the tenant (for example `tenant` or `org_id`); optional in the token
    /// unless also listed in `required_claims`.
    pub tenant_claim: Option<String>,
    /// The claim that names the tier; optional in the token unless listed in `required_claims`.
    pub tier_claim: Option<String>,
}

impl Default for JwtRules {
    fn default() -> JwtRules {
        JwtRules {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 30,
            require_exp: true,
            max_age_secs: None,
            required_claims: Vec::new(),
            consumer_claim: "sub".to_string(),
            tenant_claim: None,
            tier_claim: None,
        }
    }
}

/// Who a verified token says is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtIdentity {
    /// The consumer claim's value (`sub` by default).
    pub consumer: String,
    pub tenant: Option<String>,
    pub tier: Option<String>,
    /// The token's `iss`. Two issuers may use the same `sub` for different people: when several
    /// issuers are accepted, key per-consumer state by issuer and consumer together.
    pub issuer: Option<String>,
    /// `exp` in Unix seconds (none only when `require_exp` is off and the token has none).
    pub expires_at: Option<u64>,
    /// The algorithm and configured `kid` of the key that verified the token.
    pub algorithm: JwtAlgorithm,
    pub key_id: Option<String>,
    /// Every claim of the token (`exp`, `nbf` and `iat` as integer seconds).
    pub claims: Map<String, Value>,
}

/// Why a token was refused. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not a compact JWS with a JSON header and JSON claims, or longer than [`MAX_TOKEN_LEN`].
    Malformed,
    /// `alg: none` (unsigned), in any letter case.
    AlgNone,
    /// An `alg` other than HS256, RS256, ES256, EdDSA.
    UnsupportedAlgorithm(String),
    /// A header member that must be understood and is not (`crit`).
    UnsupportedHeader(String),
    /// No configured key for the token's `kid` (or, without a `kid`, for its `alg`).
    UnknownKey { kid: Option<String> },
    /// The key with the token's `kid` is for another algorithm than the token's `alg`.
    AlgorithmMismatch { key_alg: JwtAlgorithm, token_alg: JwtAlgorithm },
    /// No candidate key verifies the signature.
    BadSignature,
    /// `exp` (plus leeway) has passed, or the token is older than `max_age_secs`.
    Expired,
    /// `nbf` or `iat` (minus leeway) is still in the future.
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// A required claim is absent or `null`.
    MissingClaim(String),
    /// A claim has the wrong type or an unusable value (empty, too long, control characters).
    InvalidClaim(String),
}

impl JwtError {
    /// A short, fixed label for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::AlgNone => "alg_none",
            JwtError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            JwtError::UnsupportedHeader(_) => "unsupported_header",
            JwtError::UnknownKey { .. } => "unknown_key",
            JwtError::AlgorithmMismatch { .. } => "algorithm_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::InvalidClaim(_) => "invalid_claim",
        }
    }

    /// True when the token names a `kid` the key set does not have: keys may have rotated, so a
    /// JWKS-backed caller may refetch the set (rate-limited, since anyone can send any `kid`)
    /// and verify once more.
    pub fn suggests_key_refresh(&self) -> bool {
        matches!(self, JwtError::UnknownKey { kid: Some(_) })
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("malformed token"),
            JwtError::AlgNone => f.write_str("unsigned token (alg none) refused"),
            JwtError::UnsupportedAlgorithm(alg) => write!(f, "unsupported algorithm `{alg}`"),
            JwtError::UnsupportedHeader(name) => write!(f, "unsupported critical header member `{name}`"),
            JwtError::UnknownKey { kid: Some(kid) } => write!(f, "no key with kid `{kid}`"),
            JwtError::UnknownKey { kid: None } => f.write_str("no key for the token's algorithm"),
            JwtError::AlgorithmMismatch { key_alg, token_alg } => {
                write!(f, "the token's kid names a {key_alg} key but the token says {token_alg}")
            }
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not yet valid"),
            JwtError::WrongIssuer => f.write_str("issuer not accepted"),
            JwtError::WrongAudience => f.write_str("audience not accepted"),
            JwtError::MissingClaim(name) => write!(f, "missing claim `{name}`"),
            JwtError::InvalidClaim(name) => write!(f, "invalid claim `{name}`"),
        }
    }
}

impl std::error::Error for JwtError {}

type ClaimsMap = Map<String, Value>;
/// Header members beyond the ones jwt-compact names (`kid`, `typ`, `jku`, `x5u`, `x5t`, …).
type HeaderExtras = Map<String, Value>;

/// Verify `token` (the bearer credential, without `Bearer `) against `keys` and `rules` at
/// `now_unix_secs`, and map its claims to an identity.
///
/// Order: shape and header (`alg`, `crit`), key selection, signature, then the claims, so a
/// forged token learns nothing about the claim checks. (One exception: claims that are not a JSON
/// object at all are [`JwtError::Malformed`] whatever the signature, as jwt-compact decodes them
/// before it checks the signature.)
pub fn verify(token: &str, keys: &JwtKeySet, rules: &JwtRules, now_unix_secs: u64) -> Result<JwtIdentity, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let untrusted: UntrustedToken<'_, HeaderExtras> = UntrustedToken::try_from(token).map_err(|_| JwtError::Malformed)?;
    let alg_name = untrusted.algorithm();
    if alg_name.trim().eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgNone);
    }
    let alg = JwtAlgorithm::from_name(alg_name).ok_or_else(|| JwtError::UnsupportedAlgorithm(printable(alg_name)))?;
    if untrusted.header().other_fields.contains_key("crit") {
        return Err(JwtError::UnsupportedHeader("crit".to_string()));
    }
    let candidates = keys.candidates(alg, untrusted.header().key_id.as_deref())?;
    for key in candidates {
        match validate_with(key, &untrusted) {
            Ok(verified) => return check_claims(verified, key, rules, now_unix_secs),
            Err(ValidationError::MalformedClaims(_)) => return Err(JwtError::Malformed),
            // A wrong-length or wrong signature: maybe the next key (same kid, or no kid).
            Err(_) => continue,
        }
    }
    Err(JwtError::BadSignature)
}

fn validate_with(key: &JwtKey, token: &UntrustedToken<'_, HeaderExtras>) -> Result<Token<ClaimsMap, HeaderExtras>, ValidationError> {
    match key.material() {
        KeyMaterial::Hs256(secret) => Hs256.validator::<ClaimsMap>(secret).validate(token),
        KeyMaterial::Rs256(public) => Rs256.validator::<ClaimsMap>(public).validate(token),
        KeyMaterial::Es256(public) => Es256.validator::<ClaimsMap>(public).validate(token),
        KeyMaterial::EdDsa(public) => Ed25519.validator::<ClaimsMap>(public).validate(token),
    }
}

fn check_claims(token: Token<ClaimsMap, HeaderExtras>, key: &JwtKey, rules: &JwtRules, now: u64) -> Result<JwtIdentity, JwtError> {
    let (_, claims) = token.into_parts();
    let Claims { expiration, not_before, issued_at, custom: mut claims, .. } = claims;
    let (exp, nbf, iat) = (expiration.map(|t| t.timestamp()), not_before.map(|t| t.timestamp()), issued_at.map(|t| t.timestamp()));

    // Times in i128: no overflow whatever the token or the configuration says.
    let now = i128::from(now);
    let leeway = i128::from(rules.leeway_secs);
    match exp {
        Some(exp) if now > i128::from(exp) + leeway => return Err(JwtError::Expired),
        Some(_) => {}
        None if rules.require_exp => return Err(JwtError::MissingClaim("exp".to_string())),
        None => {}
    }
    if let Some(nbf) = nbf {
        if now + leeway < i128::from(nbf) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = iat {
        if now + leeway < i128::from(iat) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(max_age) = rules.max_age_secs {
        let iat = iat.ok_or_else(|| JwtError::MissingClaim("iat".to_string()))?;
        if now - leeway > i128::from(iat) + i128::from(max_age) {
            return Err(JwtError::Expired);
        }
    }
    for (name, time) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
        if let Some(time) = time {
            claims.insert(name.to_string(), Value::from(time));
        }
    }

    let issuer = match claims.get("iss") {
        None | Some(Value::Null) => None,
        Some(Value::String(iss)) => Some(iss.clone()),
        Some(_) => return Err(JwtError::InvalidClaim("iss".to_string())),
    };
    if !rules.issuers.is_empty() {
        let iss = issuer.as_ref().ok_or_else(|| JwtError::MissingClaim("iss".to_string()))?;
        if !rules.issuers.contains(iss) {
            return Err(JwtError::WrongIssuer);
        }
    }
    if !rules.audiences.is_empty() {
        let accepted = |aud: &str| rules.audiences.iter().any(|a| a == aud);
        match claims.get("aud") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("aud".to_string())),
            Some(Value::String(aud)) if accepted(aud) => {}
            Some(Value::Array(auds)) if auds.iter().filter_map(Value::as_str).any(accepted) => {}
            Some(Value::String(_) | Value::Array(_)) => return Err(JwtError::WrongAudience),
            Some(_) => return Err(JwtError::InvalidClaim("aud".to_string())),
        }
    }
    for name in &rules.required_claims {
        if claim(&claims, name).is_none() {
            return Err(JwtError::MissingClaim(name.clone()));
        }
    }
    let consumer = identity_claim(&claims, &rules.consumer_claim)?.ok_or_else(|| JwtError::MissingClaim(rules.consumer_claim.clone()))?;
    let tenant = match &rules.tenant_claim {
        Some(name) => identity_claim(&claims, name)?,
        None => None,
    };
    let tier = match &rules.tier_claim {
        Some(name) => identity_claim(&claims, name)?,
        None => None,
    };
    Ok(JwtIdentity {
        consumer,
        tenant,
        tier,
        issuer,
        expires_at: exp.map(|exp| u64::try_from(exp).unwrap_or(0)),
        algorithm: key.algorithm(),
        key_id: key.kid().map(str::to_string),
        claims,
    })
}

/// A claim by name: a top-level member, or a JSON pointer when the name starts with `/`.
/// `null` counts as absent.
fn claim<'a>(claims: &'a ClaimsMap, name: &str) -> Option<&'a Value> {
    let value = match name.strip_prefix('/') {
        Some(pointer) => {
            let (first, rest) = match pointer.split_once('/') {
                Some((first, rest)) => (first, Some(rest)),
                None => (pointer, None),
            };
            let first = first.replace("~1", "/").replace("~0", "~");
            let top = claims.get(&first)?;
            match rest {
                Some(rest) => top.pointer(&format!("/{rest}"))?,
                None => top,
            }
        }
        None => claims.get(name)?,
    };
    (!value.is_null()).then_some(value)
}

/// A claim used as an identifier: a string, or an integer written in decimal. Empty strings,
/// strings over [`MAX_CLAIM_VALUE_LEN`] bytes and strings with control characters are refused,
/// since these values end up in storage keys, headers and logs.
fn identity_claim(claims: &ClaimsMap, name: &str) -> Result<Option<String>, JwtError> {
    let invalid = || JwtError::InvalidClaim(name.to_string());
    let value = match claim(claims, name) {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(invalid()),
    };
    if value.is_empty() || value.len() > MAX_CLAIM_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(invalid());
    }
    Ok(Some(value))
}

/// A string from a token or a key document, made safe to log: printable ASCII only, at most 64
/// characters.
pub(crate) fn printable(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s.chars().take(MAX).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests;
