//! The `auth` and `tenants` sections: who may call the gateway (API-key consumers, bearer JWTs
//! and their tiers), which models each may use, and the tenants callers belong to.

use std::collections::{BTreeMap, BTreeSet};

use policy::{ConsumerKey, KeyTable, ModelAccess};
use serde::Deserialize;

use super::guards::GuardProfile;
use super::issues::valid_name;
use super::models::{check_model_patterns, ModelRoute};

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawAuth {
    None,
    ApiKeys { consumers: Vec<RawConsumer> },
    /// Bearer JWTs from an identity provider; API-key consumers may be listed as well.
    Jwt {
        jwt: Box<RawJwt>,
        #[serde(default)]
        consumers: Vec<RawConsumer>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    leeway_secs: Option<u64>,
    #[serde(default)]
    consumer_claim: Option<String>,
    #[serde(default)]
    tenant_claim: Option<String>,
    #[serde(default)]
    tier_claim: Option<String>,
    #[serde(default)]
    keys: Vec<RawJwtKey>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    jwks_refresh_ms: Option<u64>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    /// Consumer-claim values that act as a declared API-key consumer (its access, limits,
    /// budgets, guard and metadata). Every other token subject is its own identity, namespaced
    /// by issuer.
    #[serde(default)]
    consumer_map: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwtKey {
    #[serde(default)]
    kid: Option<String>,
    alg: String,
    #[serde(default)]
    pem: Option<String>,
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    /// The NAME of the secret holding an HS256 key (never the key itself).
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    models: Vec<String>,
}

impl RawAuth {
    /// One per-consumer setting (`cache`, `request_log`), taken out of every consumer that has
    /// it: (path, consumer id, setting), the path ending in `.{field}`.
    fn take_per_consumer<T>(&mut self, field: &str, take: impl Fn(&mut RawConsumer) -> Option<T>) -> Vec<(String, String, T)> {
        let consumers = match self {
            RawAuth::None => return Vec::new(),
            RawAuth::ApiKeys { consumers } | RawAuth::Jwt { consumers, .. } => consumers,
        };
        consumers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| Some((format!("auth.consumers[{i}].{field}"), c.id.clone(), take(c)?)))
            .collect()
    }

    /// The consumers' `cache` settings, taken out: (path, consumer id, setting).
    pub(super) fn take_caches(&mut self) -> Vec<(String, String, super::cache::RawCache)> {
        self.take_per_consumer("cache", |c| c.cache.take())
    }

    /// The consumers' `request_log` settings, taken out: (path, consumer id, setting).
    pub(super) fn take_request_logs(&mut self) -> Vec<(String, String, super::request_log::RawRequestLog)> {
        self.take_per_consumer("request_log", |c| c.request_log.take())
    }
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth::ApiKeys { consumers: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    id: String,
    key_sha256: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    guard: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    /// The default tier (as a JWT's tier claim would give), for routing conditions.
    #[serde(default)]
    tier: Option<String>,
    /// Free-form labels (team, cost centre...) for routing conditions and the usage event.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// This consumer's response cache (docs/cache.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) cache: Option<super::cache::RawCache>,
    /// Its request log (docs/observability.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) request_log: Option<super::request_log::RawRequestLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    /// Where the tenant's counters (and, with routing, its data) must stay, e.g. `eu`.
    #[serde(default)]
    jurisdiction: Option<String>,
    /// Jurisdictions the tenant's requests may be processed in (default: `[jurisdiction]`).
    #[serde(default)]
    residency: Option<Vec<String>>,
    /// Models every caller of the tenant may use at most (on top of each caller's own list).
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Labels for routing conditions and the usage event (a consumer's own metadata wins).
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// The tenant's response cache (docs/cache.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) cache: Option<super::cache::RawCache>,
    /// Its request log (docs/observability.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) request_log: Option<super::request_log::RawRequestLog>,
}

/// Bearer-JWT authentication, validated: static keys parsed, HS256 secrets by name, the JWKS
/// URL fetched and cached by the pipeline.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub rules: policy::identity::JwtRules,
    pub keys: policy::identity::JwtKeySet,
    /// HS256 keys: (kid, secret name), resolved through the host at request time.
    pub hmac_secrets: Vec<(Option<String>, String)>,
    pub jwks_url: Option<String>,
    pub jwks_refresh_ms: u64,
    /// Models a token holder may use unless its tier says otherwise (default: all).
    pub models: ModelAccess,
    pub tiers: BTreeMap<String, ModelAccess>,
    /// Consumer-claim value → declared consumer id, for tokens that act as that consumer.
    pub consumer_map: BTreeMap<String, String>,
}

/// What the configuration says about a consumer besides its key and access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerProfile {
    pub tier: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A tenant (organisation, team).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    pub jurisdiction: Option<String>,
    /// Where the tenant's requests may be processed; `None` = anywhere.
    pub residency: Option<BTreeSet<String>>,
    /// Models the tenant's callers may use at most; `None` = no tenant-wide restriction.
    pub models: Option<ModelAccess>,
    pub metadata: BTreeMap<String, String>,
}

/// What the `auth` section validates into (each a field of `Config`).
pub(super) struct Auth {
    pub(super) keys: KeyTable,
    pub(super) jwt: Option<JwtAuth>,
    pub(super) access: BTreeMap<String, ModelAccess>,
    pub(super) consumer_guards: BTreeMap<String, String>,
    pub(super) consumer_tenants: BTreeMap<String, String>,
    pub(super) consumer_profiles: BTreeMap<String, ConsumerProfile>,
}

/// The `auth` mode: no authentication, API keys, or bearer JWTs (API-key consumers allowed too).
pub(super) fn validate_auth(
    raw: RawAuth,
    models: &BTreeMap<String, ModelRoute>,
    guards: &BTreeMap<String, GuardProfile>,
    issue: &mut impl FnMut(String, String),
) -> Auth {
    let mut auth = Auth {
        keys: KeyTable::Disabled,
        jwt: None,
        access: BTreeMap::new(),
        consumer_guards: BTreeMap::new(),
        consumer_tenants: BTreeMap::new(),
        consumer_profiles: BTreeMap::new(),
    };
    match raw {
        RawAuth::None => {}
        RawAuth::ApiKeys { consumers } => {
            if consumers.is_empty() {
                issue(
                    "auth.consumers".into(),
                    "api_keys mode needs at least one consumer (or set \"auth\": {\"mode\": \"none\"})".into(),
                );
            }
            validate_consumers(consumers, models, guards, &mut auth, issue);
        }
        RawAuth::Jwt { jwt: raw_jwt, consumers } => {
            auth.jwt = validate_jwt(*raw_jwt, models, issue);
            validate_consumers(consumers, models, guards, &mut auth, issue);
            for (claim, consumer) in auth.jwt.iter().flat_map(|jwt| &jwt.consumer_map) {
                if !auth.access.contains_key(consumer) {
                    issue(format!("auth.jwt.consumer_map.{claim}"), format!("names '{consumer}', which is not a consumer in auth.consumers"));
                }
            }
        }
    }
    auth
}

/// The API-key consumers, into `auth`: their keys, model access, guard, tenant and profile.
fn validate_consumers(
    consumers: Vec<RawConsumer>,
    models: &BTreeMap<String, ModelRoute>,
    guards: &BTreeMap<String, GuardProfile>,
    auth: &mut Auth,
    issue: &mut impl FnMut(String, String),
) {
    let mut seen_ids = BTreeSet::new();
    let mut seen_keys = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, consumer) in consumers.into_iter().enumerate() {
        let path = format!("auth.consumers[{i}]");
        if consumer.id.trim().is_empty() {
            issue(format!("{path}.id"), "must not be empty".into());
        } else if !seen_ids.insert(consumer.id.clone()) {
            issue(format!("{path}.id"), format!("duplicate consumer id '{}'", consumer.id));
        }
        match policy::auth::parse_key_digest(&consumer.key_sha256) {
            Some(digest) => {
                if !seen_keys.insert(digest) {
                    issue(format!("{path}.key_sha256"), "the same key is configured twice".into());
                }
                keys.push(ConsumerKey { consumer: consumer.id.clone(), key_sha256: digest });
            }
            None => issue(
                format!("{path}.key_sha256"),
                "must be the 64-hex-digit SHA-256 of the key (never the key itself)".into(),
            ),
        }
        if let Some(patterns) = &consumer.models {
            check_model_patterns(&format!("{path}.models"), patterns, models, issue);
        }
        if let Some(guard) = consumer.guard {
            if !guards.contains_key(&guard) {
                issue(format!("{path}.guard"), format!("unknown guard profile '{guard}'"));
            }
            auth.consumer_guards.insert(consumer.id.clone(), guard);
        }
        if let Some(tenant) = consumer.tenant {
            if !valid_name(&tenant) {
                issue(format!("{path}.tenant"), "tenant names use letters, digits, '-', '_' and '.'".into());
            }
            auth.consumer_tenants.insert(consumer.id.clone(), tenant);
        }
        if consumer.metadata.len() > 32 || consumer.metadata.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256) {
            issue(format!("{path}.metadata"), "at most 32 entries, keys of 1-64 and values of at most 256 characters".into());
        }
        if consumer.tier.is_some() || !consumer.metadata.is_empty() {
            auth.consumer_profiles.insert(consumer.id.clone(), ConsumerProfile { tier: consumer.tier, metadata: consumer.metadata });
        }
        let allowed = consumer.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all);
        auth.access.insert(consumer.id, allowed);
    }
    auth.keys = KeyTable::Keys(keys);
}

fn validate_jwt(raw: RawJwt, models: &BTreeMap<String, ModelRoute>, issue: &mut impl FnMut(String, String)) -> Option<JwtAuth> {
    use policy::identity::{JwtAlgorithm, JwtKey, JwtKeySet, JwtRules};
    let mut ok = true;
    let mut fail = |path: String, message: String, issue: &mut dyn FnMut(String, String)| {
        issue(path, message);
        ok = false;
    };
    if raw.audiences.is_empty() {
        fail(
            "auth.jwt.audiences".into(),
            "name at least one audience: without it a token issued for another application would be accepted".into(),
            issue,
        );
    }
    let mut keys = JwtKeySet::default();
    let mut hmac_secrets = Vec::new();
    for (i, key) in raw.keys.into_iter().enumerate() {
        let path = format!("auth.jwt.keys[{i}]");
        let Some(alg) = JwtAlgorithm::from_name(&key.alg) else {
            fail(format!("{path}.alg"), format!("unsupported algorithm '{}' (use RS256, ES256, EdDSA or HS256)", key.alg), issue);
            continue;
        };
        let parsed = match (alg, key.pem, key.jwk, key.secret) {
            (JwtAlgorithm::Hs256, None, None, Some(secret)) => {
                if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    fail(format!("{path}.secret"), "must be the NAME of a secret (letters, digits, '_'), not the key itself".into(), issue);
                } else {
                    hmac_secrets.push((key.kid.clone(), secret));
                }
                continue;
            }
            (JwtAlgorithm::Hs256, ..) => {
                fail(path.clone(), "HS256 keys are given as \"secret\": the name of a secret".into(), issue);
                continue;
            }
            (_, Some(pem), None, None) => JwtKey::from_pem(alg, &pem),
            (_, None, Some(jwk), None) => JwtKey::from_jwk(&jwk),
            _ => {
                fail(path.clone(), "give exactly one of \"pem\" or \"jwk\" (public keys only)".into(), issue);
                continue;
            }
        };
        match parsed {
            Ok(parsed) if parsed.algorithm() != alg => {
                fail(format!("{path}.alg"), format!("the key is for {}, not {}", parsed.algorithm().name(), alg.name()), issue)
            }
            Ok(parsed) => keys.push(match key.kid {
                Some(kid) => parsed.with_kid(kid),
                None => parsed,
            }),
            Err(e) => fail(path.clone(), format!("unusable key: {e}"), issue),
        }
    }
    if let Some(url) = &raw.jwks_url {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            fail("auth.jwt.jwks_url".into(), format!("must be an http(s) URL, got '{url}'"), issue);
        }
    }
    if keys.is_empty() && hmac_secrets.is_empty() && raw.jwks_url.is_none() {
        fail("auth.jwt".into(), "configure \"keys\" or a \"jwks_url\"".into(), issue);
    }
    if let Some(patterns) = &raw.models {
        check_model_patterns("auth.jwt.models", patterns, models, issue);
    }
    for (tier, t) in &raw.tiers {
        check_model_patterns(&format!("auth.jwt.tiers.{tier}.models"), &t.models, models, issue);
    }
    let defaults = JwtRules::default();
    let rules = JwtRules {
        issuers: raw.issuers,
        audiences: raw.audiences,
        leeway_secs: raw.leeway_secs.unwrap_or(defaults.leeway_secs).min(300),
        consumer_claim: raw.consumer_claim.unwrap_or(defaults.consumer_claim),
        tenant_claim: raw.tenant_claim,
        tier_claim: raw.tier_claim,
        ..defaults
    };
    ok.then(|| JwtAuth {
        rules,
        keys,
        hmac_secrets,
        jwks_url: raw.jwks_url,
        jwks_refresh_ms: raw.jwks_refresh_ms.unwrap_or(600_000).clamp(10_000, 86_400_000),
        models: raw.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all),
        tiers: raw.tiers.into_iter().map(|(name, t)| (name, ModelAccess::new(t.models))).collect(),
        consumer_map: raw.consumer_map,
    })
}

/// The tenants, plus an empty one for each tenant a consumer names that is not configured.
pub(super) fn validate_tenants(
    raw: BTreeMap<String, RawTenant>,
    consumer_tenants: &BTreeMap<String, String>,
    models: &BTreeMap<String, ModelRoute>,
    issue: &mut impl FnMut(String, String),
) -> BTreeMap<String, Tenant> {
    let mut tenants = BTreeMap::new();
    for (name, tenant) in raw {
        if let Some(j) = &tenant.jurisdiction {
            if !matches!(j.as_str(), "eu" | "fedramp") {
                issue(format!("tenants.{name}.jurisdiction"), format!("must be eu or fedramp (a Durable Object jurisdiction), got '{j}'"));
            }
        }
        let residency = tenant.residency.map(|r| r.into_iter().collect()).or_else(|| tenant.jurisdiction.iter().map(|j| std::iter::once(j.clone()).collect()).next());
        if let Some(patterns) = &tenant.models {
            check_model_patterns(&format!("tenants.{name}.models"), patterns, models, issue);
        }
        let access = tenant.models.map(ModelAccess::new);
        tenants.insert(name, Tenant { jurisdiction: tenant.jurisdiction, residency, models: access, metadata: tenant.metadata });
    }
    for tenant in consumer_tenants.values() {
        tenants.entry(tenant.clone()).or_insert_with(Tenant::default);
    }
    tenants
}
