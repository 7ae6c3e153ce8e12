//! Verification keys for JWTs: one algorithm per key, parsed from PEM, DER, JWK or a JWKS.
//!
//! A [`JwtKey`] holds key material of exactly one kind, and the kind fixes the one algorithm the
//! key can verify: an HMAC secret verifies `HS256` only, an RSA public key `RS256` only, a P-256
//! key `ES256` only, an Ed25519 key `EdDSA` only. There is no way to use an RSA public key as an
//! HMAC secret, which is what the classic algorithm-confusion attack relies on.
//!
//! Nothing here is secret-bearing in its `Debug` or `Display` output: keys print their algorithm
//! and `kid`, errors print reasons, never key bytes.

use std::fmt;

use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, Hs256Key};
use jwt_compact::Algorithm;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::der::Decode as _;
use rsa::pkcs8::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;

use super::JwtError;

/// An Ed25519 public key (ed25519-dalek's, through jwt-compact).
pub(crate) type Ed25519PublicKey = <Ed25519 as Algorithm>::VerifyingKey;
/// A P-256 ECDSA public key (the `p256` crate's, through jwt-compact).
pub(crate) type P256PublicKey = <Es256 as Algorithm>::VerifyingKey;

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A JWS algorithm the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 over a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 (secp256r1) with SHA-256. Not `ES256K`, which is secp256k1.
    Es256,
    /// Ed25519 signatures (`EdDSA` as registered by RFC 8037).
    EdDsa,
}

impl JwtAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [JwtAlgorithm; 4] = [JwtAlgorithm::Hs256, JwtAlgorithm::Rs256, JwtAlgorithm::Es256, JwtAlgorithm::EdDsa];

    /// The `alg` value in a JWS header.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named by a JWS `alg` value. Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        JwtAlgorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JWK `kty` of keys for this algorithm.
    fn key_type(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "oct",
            JwtAlgorithm::Rs256 => "RSA",
            JwtAlgorithm::Es256 => "EC",
            JwtAlgorithm::EdDsa => "OKP",
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key could not be used. Reasons only: never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeyError {
    /// The text is not one PEM block (`-----BEGIN …-----` … `-----END …-----`).
    InvalidPem(&'static str),
    /// A private key was given where a public key is expected. Configure the public half.
    PrivateKey,
    /// The key's encoding is broken (bad DER, bad base64url, a point not on the curve, …).
    InvalidKey(String),
    /// The key is of a different kind than the algorithm it was configured for.
    KeyTypeMismatch { expected: JwtAlgorithm, found: String },
    /// A key of a kind the gateway does not verify with (another curve, X25519, a certificate, …).
    UnsupportedKey(String),
    /// A JWK names an algorithm the gateway does not verify (`RS512`, `PS256`, `ES384`, …).
    UnsupportedAlgorithm(String),
    /// Too weak to trust: an RSA modulus under 2048 bits, an HMAC secret under 32 bytes, a
    /// small-order Ed25519 point.
    WeakKey(String),
    /// The JWK is marked for something other than verifying signatures (`use`, `key_ops`).
    NotForSignatures(String),
    /// A shared (`oct`) key in a JWKS fetched from a URL: a published HMAC secret would let
    /// anyone mint tokens, so such keys are only accepted from configuration.
    SymmetricKeyNotAllowed,
    /// The JWKS document is not a JSON object with a `keys` array.
    InvalidJwks(String),
    /// More keys than [`JwtKeySet::MAX_JWKS_KEYS`] in one document; the rest are skipped.
    TooManyKeys,
    /// No key in the document could be used.
    NoUsableKeys,
}

impl fmt::Display for JwtKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKeyError::InvalidPem(why) => write!(f, "invalid PEM: {why}"),
            JwtKeyError::PrivateKey => f.write_str("a private key was given; configure the public key"),
            JwtKeyError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            JwtKeyError::KeyTypeMismatch { expected, found } => {
                write!(f, "{expected} needs a {} key, got {found}", expected.key_type())
            }
            JwtKeyError::UnsupportedKey(what) => write!(f, "unsupported key: {what}"),
            JwtKeyError::UnsupportedAlgorithm(alg) => write!(f, "unsupported algorithm `{alg}`"),
            JwtKeyError::WeakKey(why) => write!(f, "weak key: {why}"),
            JwtKeyError::NotForSignatures(why) => write!(f, "key is not for verifying signatures ({why})"),
            JwtKeyError::SymmetricKeyNotAllowed => f.write_str("shared-secret (oct) key in a fetched JWKS refused"),
            JwtKeyError::InvalidJwks(why) => write!(f, "invalid JWKS: {why}"),
            JwtKeyError::TooManyKeys => write!(f, "more than {} keys in the JWKS", JwtKeySet::MAX_JWKS_KEYS),
            JwtKeyError::NoUsableKeys => f.write_str("no usable key in the JWKS"),
        }
    }
}

impl std::error::Error for JwtKeyError {}

/// Key material, one variant per algorithm.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    Hs256(Hs256Key),
    Rs256(RsaPublicKey),
    Es256(P256PublicKey),
    EdDsa(Ed25519PublicKey),
}

/// One verification key: key material for exactly one algorithm, and an optional `kid`.
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<String>,
    material: KeyMaterial,
}

impl fmt::Debug for JwtKey {
    // Algorithm and kid only: an HMAC secret must never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey").field("alg", &self.algorithm().name()).field("kid", &self.kid).finish()
    }
}

impl JwtKey {
    /// The shortest HMAC secret accepted: the hash size, as RFC 7518 §3.2 requires for HS256.
    pub const MIN_HMAC_SECRET_LEN: usize = 32;
    /// The smallest RSA modulus accepted (RFC 7518 §3.3). The largest is 4096 bits (the `rsa`
    /// crate's limit), which also bounds the cost of one verification.
    pub const MIN_RSA_BITS: usize = 2048;

    /// An `HS256` key from the shared secret's raw bytes (at least 32).
    pub fn hs256(secret: &[u8]) -> Result<JwtKey, JwtKeyError> {
        if secret.len() < JwtKey::MIN_HMAC_SECRET_LEN {
            return Err(JwtKeyError::WeakKey(format!(
                "HS256 secret of {} bytes, at least {} required",
                secret.len(),
                JwtKey::MIN_HMAC_SECRET_LEN
            )));
        }
        Ok(JwtKey { kid: None, material: KeyMaterial::Hs256(Hs256Key::new(secret)) })
    }

    /// A public key for `alg` from PEM: `PUBLIC KEY` (SubjectPublicKeyInfo, any of RSA, P-256,
    /// Ed25519) or `RSA PUBLIC KEY` (PKCS#1). Private keys and certificates are refused.
    pub fn from_pem(alg: JwtAlgorithm, pem: &str) -> Result<JwtKey, JwtKeyError> {
        let (label, der) = decode_pem(pem)?;
        match label {
            "PUBLIC KEY" => JwtKey::from_spki_der(alg, &der),
            "RSA PUBLIC KEY" if alg == JwtAlgorithm::Rs256 => {
                let key = RsaPublicKey::from_pkcs1_der(&der).map_err(|e| JwtKeyError::InvalidKey(format!("PKCS#1 RSA public key: {e}")))?;
                Ok(JwtKey { kid: None, material: KeyMaterial::Rs256(check_rsa(key)?) })
            }
            "RSA PUBLIC KEY" => Err(JwtKeyError::KeyTypeMismatch { expected: alg, found: "RSA".into() }),
            "CERTIFICATE" => Err(JwtKeyError::UnsupportedKey("an X.509 certificate; configure its public key (PUBLIC KEY PEM)".into())),
            label if label.contains("PRIVATE KEY") => Err(JwtKeyError::PrivateKey),
            _ => Err(JwtKeyError::InvalidPem("expected a PUBLIC KEY block")),
        }
    }

    /// A public key for `alg` from a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(alg: JwtAlgorithm, der: &[u8]) -> Result<JwtKey, JwtKeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| JwtKeyError::InvalidKey("not a DER SubjectPublicKeyInfo".into()))?;
        let oid = spki.algorithm.oid;
        let found = if oid == OID_RSA_ENCRYPTION {
            JwtAlgorithm::Rs256
        } else if oid == OID_EC_PUBLIC_KEY {
            match spki.algorithm.parameters_oid() {
                Ok(curve) if curve == OID_P256 => JwtAlgorithm::Es256,
                Ok(curve) => return Err(JwtKeyError::UnsupportedKey(format!("EC curve {curve} (only P-256)"))),
                Err(_) => return Err(JwtKeyError::InvalidKey("EC key without a named curve".into())),
            }
        } else if oid == OID_ED25519 {
            JwtAlgorithm::EdDsa
        } else {
            return Err(JwtKeyError::UnsupportedKey(format!("key algorithm {oid}")));
        };
        if found != alg {
            return Err(JwtKeyError::KeyTypeMismatch { expected: alg, found: found.key_type().into() });
        }
        let material = match found {
            JwtAlgorithm::Rs256 => {
                let key = RsaPublicKey::try_from(spki).map_err(|e| JwtKeyError::InvalidKey(format!("RSA public key: {e}")))?;
                KeyMaterial::Rs256(check_rsa(key)?)
            }
            JwtAlgorithm::Es256 => {
                let point = spki.subject_public_key.as_bytes().unwrap_or_default();
                KeyMaterial::Es256(
                    P256PublicKey::from_sec1_bytes(point).map_err(|_| JwtKeyError::InvalidKey("not a P-256 point".into()))?,
                )
            }
            JwtAlgorithm::EdDsa => {
                let bytes = spki.subject_public_key.as_bytes().unwrap_or_default();
                let key = <Ed25519PublicKey as jwt_compact::alg::VerifyingKey<Ed25519>>::from_slice(bytes)
                    .map_err(|_| JwtKeyError::InvalidKey("not an Ed25519 public key".into()))?;
                KeyMaterial::EdDsa(check_ed25519(key)?)
            }
            // No SPKI algorithm maps to HS256; `found` is one of the three above.
            JwtAlgorithm::Hs256 => return Err(JwtKeyError::KeyTypeMismatch { expected: alg, found: "SPKI".into() }),
        };
        Ok(JwtKey { kid: None, material })
    }

    /// A key from a JWK object (RFC 7517). The algorithm comes from `alg` when present, otherwise
    /// from `kty`/`crv`: `RSA` → RS256, `EC` P-256 → ES256, `OKP` Ed25519 → EdDSA, `oct` → HS256.
    /// `kid` is kept; `use` must be `sig` and `key_ops` must include `verify` when present.
    /// Private members (`d`, `p`, …) are ignored: only the public half is ever used.
    pub fn from_jwk(jwk: &Value) -> Result<JwtKey, JwtKeyError> {
        let obj = jwk.as_object().ok_or_else(|| JwtKeyError::InvalidKey("a JWK must be a JSON object".into()))?;
        let kid = match obj.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtKeyError::InvalidKey("`kid` must be a string".into())),
        };
        match obj.get("use") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(u)) => return Err(JwtKeyError::NotForSignatures(format!("use `{}`", super::printable(u)))),
            Some(_) => return Err(JwtKeyError::InvalidKey("`use` must be a string".into())),
        }
        match obj.get("key_ops") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => {}
            Some(Value::Array(_)) => return Err(JwtKeyError::NotForSignatures("key_ops without `verify`".into())),
            Some(_) => return Err(JwtKeyError::InvalidKey("`key_ops` must be an array".into())),
        }
        let named_alg = match obj.get("alg") {
            None | Some(Value::Null) => None,
            Some(Value::String(alg)) => {
                Some(JwtAlgorithm::from_name(alg).ok_or_else(|| JwtKeyError::UnsupportedAlgorithm(super::printable(alg)))?)
            }
            Some(_) => return Err(JwtKeyError::InvalidKey("`alg` must be a string".into())),
        };
        let kty = obj.get("kty").and_then(Value::as_str).ok_or_else(|| JwtKeyError::InvalidKey("missing `kty`".into()))?;
        let crv = obj.get("crv").and_then(Value::as_str);
        let implied = match (kty, crv) {
            ("RSA", _) => JwtAlgorithm::Rs256,
            ("EC", Some("P-256")) => JwtAlgorithm::Es256,
            ("OKP", Some("Ed25519")) => JwtAlgorithm::EdDsa,
            ("oct", _) => JwtAlgorithm::Hs256,
            ("EC" | "OKP", Some(crv)) => return Err(JwtKeyError::UnsupportedKey(format!("{kty} curve `{}`", super::printable(crv)))),
            ("EC" | "OKP", None) => return Err(JwtKeyError::InvalidKey(format!("{kty} key without `crv`"))),
            (kty, _) => return Err(JwtKeyError::UnsupportedKey(format!("key type `{}`", super::printable(kty)))),
        };
        if let Some(alg) = named_alg {
            if alg != implied {
                return Err(JwtKeyError::KeyTypeMismatch { expected: alg, found: kty.to_string() });
            }
        }

        // Only public members are read, so a private JWK is used as its public half. Members are
        // decoded here rather than through jwt-compact's `JsonWebKey` (whose serde derive costs
        // tens of KB of wasm); decoding errors name the member, never its value.
        let member = |name: &str| -> Result<Vec<u8>, JwtKeyError> {
            let text = obj.get(name).and_then(Value::as_str).ok_or_else(|| JwtKeyError::InvalidKey(format!("{kty} JWK without `{name}`")))?;
            // RFC 7515 base64url has no padding; tolerate it, as some producers add it.
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| JwtKeyError::InvalidKey(format!("{kty} JWK `{name}` is not base64url")))
        };
        let material = match implied {
            JwtAlgorithm::Rs256 => {
                let key = RsaPublicKey::new(BigUint::from_bytes_be(&member("n")?), BigUint::from_bytes_be(&member("e")?))
                    .map_err(|e| JwtKeyError::InvalidKey(format!("RSA public key: {e}")))?;
                KeyMaterial::Rs256(check_rsa(key)?)
            }
            JwtAlgorithm::Es256 => {
                let (x, y) = (member("x")?, member("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwtKeyError::InvalidKey("P-256 coordinates must be 32 bytes each".into()));
                }
                let point = [&[0x04][..], &x, &y].concat(); // SEC1 uncompressed
                KeyMaterial::Es256(P256PublicKey::from_sec1_bytes(&point).map_err(|_| JwtKeyError::InvalidKey("not a P-256 point".into()))?)
            }
            JwtAlgorithm::EdDsa => {
                let key = <Ed25519PublicKey as jwt_compact::alg::VerifyingKey<Ed25519>>::from_slice(&member("x")?)
                    .map_err(|_| JwtKeyError::InvalidKey("not an Ed25519 public key".into()))?;
                KeyMaterial::EdDsa(check_ed25519(key)?)
            }
            JwtAlgorithm::Hs256 => return Ok(JwtKey { kid, ..JwtKey::hs256(&member("k")?)? }),
        };
        Ok(JwtKey { kid, material })
    }

    /// [`JwtKey::from_jwk`] over a JWK document's text.
    pub fn from_jwk_json(json: &str) -> Result<JwtKey, JwtKeyError> {
        let value: Value = serde_json::from_str(json).map_err(|_| JwtKeyError::InvalidKey("a JWK must be a JSON object".into()))?;
        JwtKey::from_jwk(&value)
    }

    /// The same key with this `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> JwtKey {
        self.kid = Some(kid.into());
        self
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> JwtAlgorithm {
        match self.material {
            KeyMaterial::Hs256(_) => JwtAlgorithm::Hs256,
            KeyMaterial::Rs256(_) => JwtAlgorithm::Rs256,
            KeyMaterial::Es256(_) => JwtAlgorithm::Es256,
            KeyMaterial::EdDsa(_) => JwtAlgorithm::EdDsa,
        }
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.material
    }
}

fn check_rsa(key: RsaPublicKey) -> Result<RsaPublicKey, JwtKeyError> {
    let bits = key.n().bits();
    if bits < JwtKey::MIN_RSA_BITS {
        return Err(JwtKeyError::WeakKey(format!("RSA modulus of {bits} bits, at least {} required", JwtKey::MIN_RSA_BITS)));
    }
    Ok(key)
}

fn check_ed25519(key: Ed25519PublicKey) -> Result<Ed25519PublicKey, JwtKeyError> {
    if key.is_weak() {
        return Err(JwtKeyError::WeakKey("small-order Ed25519 point".into()));
    }
    Ok(key)
}

/// One PEM block's label and DER bytes (RFC 7468, strict: nothing but whitespace around it).
fn decode_pem(pem: &str) -> Result<(&str, Vec<u8>), JwtKeyError> {
    let text = pem.trim();
    let rest = text.strip_prefix("-----BEGIN ").ok_or(JwtKeyError::InvalidPem("no -----BEGIN line"))?;
    let (label, rest) = rest.split_once("-----").ok_or(JwtKeyError::InvalidPem("unterminated BEGIN line"))?;
    if label.is_empty() || label.contains(['\r', '\n']) {
        return Err(JwtKeyError::InvalidPem("bad BEGIN line"));
    }
    let end = format!("-----END {label}-----");
    let body_len = rest.find(&end).ok_or(JwtKeyError::InvalidPem("no matching -----END line"))?;
    if !rest[body_len + end.len()..].trim().is_empty() {
        return Err(JwtKeyError::InvalidPem("text after the END line (one key per PEM)"));
    }
    let body = &rest[..body_len];
    if body.contains(':') {
        // `Proc-Type: 4,ENCRYPTED` and similar headers: legacy encrypted private keys.
        return Err(if label.contains("PRIVATE KEY") { JwtKeyError::PrivateKey } else { JwtKeyError::InvalidPem("headers in PEM") });
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| JwtKeyError::InvalidPem("body is not base64"))?;
    Ok((label, der))
}

/// Where a JWKS document came from, which decides whether shared secrets are acceptable in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksSource {
    /// Part of the gateway's own configuration (or a secret): `oct` keys are accepted.
    Config,
    /// Fetched from a JWKS URL: public by nature, so `oct` keys are skipped.
    Remote,
}

/// A key of a JWKS document that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedJwk {
    /// Position in the document's `keys` array.
    pub index: usize,
    /// The JWK's `kid`, when it had a string one.
    pub kid: Option<String>,
    pub reason: JwtKeyError,
}

/// A parsed JWKS: the usable keys and what was skipped.
#[derive(Debug, Clone)]
pub struct ParsedJwks {
    pub keys: JwtKeySet,
    pub skipped: Vec<SkippedJwk>,
}

/// The keys a token may be verified with.
///
/// # Key selection
/// The token's `alg` must be one of the supported four (`none` is refused before any key is
/// looked at), and a key is only ever tried for the algorithm it holds material for. Then:
/// - the token has a `kid` and some keys carry that `kid`: those keys, and only if one of them is
///   for the token's `alg` (otherwise [`JwtError::AlgorithmMismatch`]);
/// - the token has a `kid` that no key carries: the keys *without* a `kid` for that `alg` (a key
///   configured without a `kid` accepts any), else [`JwtError::UnknownKey`], the signal for the
///   caller to refresh a cached JWKS (see [`JwtError::suggests_key_refresh`]);
/// - the token has no `kid`: every key for that `alg`, each tried in turn.
///
/// Header members that point at keys (`jku`, `jwk`, `x5u`, `x5c`) are never followed or trusted.
#[derive(Debug, Clone, Default)]
pub struct JwtKeySet {
    keys: Vec<JwtKey>,
}

impl JwtKeySet {
    /// The most keys read from one JWKS document; later ones are skipped.
    pub const MAX_JWKS_KEYS: usize = 64;

    pub fn new(keys: Vec<JwtKey>) -> JwtKeySet {
        JwtKeySet { keys }
    }

    pub fn push(&mut self, key: JwtKey) {
        self.keys.push(key);
    }

    /// Add every key of `other` (for example configured keys plus a fetched JWKS).
    pub fn extend(&mut self, other: JwtKeySet) {
        self.keys.extend(other.keys);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &JwtKey> {
        self.keys.iter()
    }

    /// The usable keys of a JWKS document from configuration (`oct` keys accepted), skipping
    /// keys that cannot be used. Fails when the document is not a JWKS or no key is usable.
    pub fn from_jwks_json(json: &str) -> Result<JwtKeySet, JwtKeyError> {
        let parsed = JwtKeySet::parse_jwks(json, JwksSource::Config)?;
        if parsed.keys.is_empty() {
            return Err(JwtKeyError::NoUsableKeys);
        }
        Ok(parsed.keys)
    }

    /// Parse a JWKS document (`{"keys": [...]}`), keeping each usable key and recording why the
    /// others were skipped. Fails only when the document itself is not a JWKS; an empty result
    /// is returned as such, so a caller refreshing a cached set can keep the old one.
    pub fn parse_jwks(json: &str, source: JwksSource) -> Result<ParsedJwks, JwtKeyError> {
        let doc: Value = serde_json::from_str(json).map_err(|e| JwtKeyError::InvalidJwks(format!("not JSON (line {}, column {})", e.line(), e.column())))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwtKeyError::InvalidJwks("no `keys` array".into()))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_string);
            let result = if index >= JwtKeySet::MAX_JWKS_KEYS {
                Err(JwtKeyError::TooManyKeys)
            } else if source == JwksSource::Remote && entry.get("kty").and_then(Value::as_str) == Some("oct") {
                Err(JwtKeyError::SymmetricKeyNotAllowed)
            } else {
                JwtKey::from_jwk(entry)
            };
            match result {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedJwk { index, kid, reason }),
            }
        }
        Ok(ParsedJwks { keys: JwtKeySet { keys }, skipped })
    }

    /// The keys to try for a token with this `alg` and `kid` (see the type's docs).
    pub(crate) fn candidates(&self, alg: JwtAlgorithm, kid: Option<&str>) -> Result<Vec<&JwtKey>, JwtError> {
        let for_alg = |key: &&JwtKey| key.algorithm() == alg;
        if let Some(kid) = kid {
            let named: Vec<&JwtKey> = self.keys.iter().filter(|key| key.kid() == Some(kid)).collect();
            if let Some(first) = named.first() {
                let usable: Vec<&JwtKey> = named.iter().copied().filter(for_alg).collect();
                if usable.is_empty() {
                    return Err(JwtError::AlgorithmMismatch { key_alg: first.algorithm(), token_alg: alg });
                }
                return Ok(usable);
            }
            let unnamed: Vec<&JwtKey> = self.keys.iter().filter(|key| key.kid().is_none()).filter(for_alg).collect();
            if unnamed.is_empty() {
                return Err(JwtError::UnknownKey { kid: Some(super::printable(kid)) });
            }
            return Ok(unnamed);
        }
        let all: Vec<&JwtKey> = self.keys.iter().filter(for_alg).collect();
        if all.is_empty() {
            return Err(JwtError::UnknownKey { kid: None });
        }
        Ok(all)
    }
}

impl FromIterator<JwtKey> for JwtKeySet {
    fn from_iter<I: IntoIterator<Item = JwtKey>>(iter: I) -> JwtKeySet {
        JwtKeySet { keys: iter.into_iter().collect() }
    }
}
