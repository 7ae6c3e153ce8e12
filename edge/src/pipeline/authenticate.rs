//! The authenticate phase: who is calling, from `Authorization: Bearer` (an API key from the
//! configuration, a virtual key from the admin API, or, when configured, a JWT) or `x-api-key`.
//! It runs before the body is read, so unauthenticated callers cost nothing.

use policy::identity::{verify_jwt as verify_token, JwtKey};

use crate::config::{Config, JwtAuth};
use crate::error::GatewayError;
use crate::host::Host;
use crate::http::Request;
use crate::isolate::IsolateState;
use crate::key_store;
use crate::pipeline::context::Caller;
use crate::pipeline::throttle;

/// Establish the caller of `request`. A refused credential is counted against the client's
/// address and, past the limit, answered with a delayed `429` (`pipeline/throttle.rs`).
pub async fn authenticate<H: Host>(state: &IsolateState, config: &Config, request: &Request, host: &H) -> Result<Caller, GatewayError> {
    match identify(state, config, request, host).await {
        Err(error) if throttle::is_credential_failure(&error) => Err(throttle::failed(request, error, host).await),
        other => other,
    }
}

async fn identify<H: Host>(state: &IsolateState, config: &Config, request: &Request, host: &H) -> Result<Caller, GatewayError> {
    let presented = match request.header("authorization") {
        Some(value) => {
            let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(GatewayError::InvalidCredential);
            }
            Some(token.trim())
        }
        None => request.header("x-api-key"),
    };
    if let (Some(jwt), Some(token)) = (&config.jwt, presented) {
        if looks_like_jwt(token) {
            return verify_jwt(state, config, jwt, token, host).await;
        }
    }
    match config.keys.authenticate(presented) {
        Ok(policy::AuthDecision::Anonymous) => Ok(Caller::default()),
        Ok(policy::AuthDecision::Consumer(id)) => Ok(Caller {
            tenant: config.consumer_tenants.get(&id).cloned(),
            tier: config.consumer_profiles.get(&id).and_then(|p| p.tier.clone()),
            key_id: presented.map(|k| format!("sha256:{}", &hex::encode(policy::auth::key_digest(k))[..16])),
            consumer: Some(id),
            ..Caller::default()
        }),
        Err(policy::AuthError::MissingCredential) => Err(GatewayError::MissingCredential),
        Err(policy::AuthError::InvalidCredential) => {
            // Not in the configuration: maybe a key issued through the admin API.
            let record = match presented {
                Some(token) => key_store::active_key(token, host).await?,
                None => None,
            };
            // A key whose consumer was removed from the configuration is refused, not widened.
            let record = record.filter(|r| r.owner_present(config.declares_consumer(&r.consumer))).ok_or(GatewayError::InvalidCredential)?;
            Ok(Caller {
                tenant: record.tenant.clone().or_else(|| config.consumer_tenants.get(&record.consumer).cloned()),
                key_id: Some(record.id),
                key_models: Some(record.models.map_or_else(policy::access::ModelAccess::all, policy::access::ModelAccess::new)),
                consumer: Some(record.consumer),
                ..Caller::default()
            })
        }
    }
}

/// Verify a bearer JWT against the configured keys: static ones, HS256 secrets resolved through
/// the host, and the JWKS URL's (refetched once when the token names an unknown key).
async fn verify_jwt<H: Host>(state: &IsolateState, config: &Config, jwt: &JwtAuth, token: &str, host: &H) -> Result<Caller, GatewayError> {
    let now_secs = host.now_ms() / 1000;
    let mut keys = jwt.keys.clone();
    for (kid, secret_name) in &jwt.hmac_secrets {
        let secret = host
            .secret(secret_name)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GatewayError::MissingSecret { name: secret_name.clone() })?;
        let key = JwtKey::hs256(secret.as_bytes()).map_err(|_| GatewayError::ConfigInvalid {
            errors: vec![format!("auth.jwt.keys: the secret '{secret_name}' is not a usable HS256 key (at least 32 bytes)")],
        })?;
        keys.push(match kid {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        });
    }
    if let Some(url) = &jwt.jwks_url {
        match state.jwks.keys(url, jwt.jwks_refresh_ms, host).await {
            Some(remote) => keys.extend(remote),
            None if keys.is_empty() => return Err(GatewayError::JwksUnavailable),
            None => {}
        }
    }
    let mut verdict = verify_token(token, &keys, &jwt.rules, now_secs);
    // Keys may have rotated: refetch once (rate-limited) for a `kid` the set does not know.
    if let (Err(error), Some(url)) = (&verdict, &jwt.jwks_url) {
        if error.suggests_key_refresh() {
            if let Some(remote) = state.jwks.refetch_for_unknown_key(url, host).await {
                keys.extend(remote);
                verdict = verify_token(token, &keys, &jwt.rules, now_secs);
            }
        }
    }
    let identity = verdict.map_err(|error| GatewayError::InvalidToken { reason: error.code() })?;
    Ok(jwt_caller(config, jwt, identity))
}

/// The caller a verified token makes: a declared consumer when `auth.jwt.consumer_map` maps the
/// token's consumer claim to one, otherwise the issuer's subject, an identity of its own that
/// shares nothing with a configured consumer of the same name (see [`Caller::consumer_key`]).
fn jwt_caller(config: &Config, jwt: &JwtAuth, identity: policy::identity::JwtIdentity) -> Caller {
    match jwt.consumer_map.get(&identity.consumer) {
        Some(id) => Caller {
            tenant: config.consumer_tenants.get(id).cloned().or(identity.tenant),
            tier: identity.tier.or_else(|| config.consumer_profiles.get(id).and_then(|p| p.tier.clone())),
            consumer: Some(id.clone()),
            ..Caller::default()
        },
        None => Caller {
            consumer: Some(identity.consumer),
            tenant: identity.tenant,
            tier: identity.tier,
            via_jwt: true,
            issuer: Some(identity.issuer.unwrap_or_default()),
            ..Caller::default()
        },
    }
}

/// A compact JWS: three base64url parts, the header a JSON object (`eyJ`).
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}
