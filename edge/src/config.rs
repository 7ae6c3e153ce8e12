//! The gateway configuration document, parsed in two phases.
//!
//! Phase one reads the raw JSON with `deny_unknown_fields`, so a typo is an error that names its
//! path rather than a silently ignored key. Phase two validates the whole document and converts it
//! into the types the pipeline uses (resolved provider references, parsed key digests, bounded
//! limits), reporting every problem at once, each with its path.
//!
//! Secrets are never values in the document: a provider names the secret (`api_key_secret`) and
//! the host resolves it at request time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use policy::{ConsumerKey, KeyTable, ModelAccess};
use serde::Deserialize;

/// One problem in the configuration, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Phase one: the raw document.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "$schema")]
    _schema: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    cors: Option<RawCors>,
    #[serde(default)]
    guards: BTreeMap<String, RawGuard>,
    providers: BTreeMap<String, RawProvider>,
    models: BTreeMap<String, RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(default)]
    pii: BTreeMap<String, String>,
    #[serde(default)]
    reversible: bool,
    #[serde(default)]
    injection: Option<RawInjection>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default = "yes")]
    output: bool,
    #[serde(default)]
    moderation: Option<RawModeration>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInjection {
    threshold: f32,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    pattern: String,
    action: String,
    #[serde(default)]
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModeration {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    on_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    stream_idle_timeout_ms: Option<u64>,
    config_refresh_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum RawAuth {
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
struct RawJwt {
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtKey {
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
struct RawTier {
    models: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth::ApiKeys { consumers: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    id: String,
    key_sha256: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    guard: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allow_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawProvider {
    /// Any OpenAI-compatible API (OpenAI itself, vLLM, Ollama, ...).
    Openai {
        base_url: String,
        #[serde(default)]
        api_key_secret: Option<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// The built-in deterministic provider.
    Mock {},
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: String,
    #[serde(default)]
    upstream_model: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<ModelKind>,
    #[serde(default)]
    guard: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Phase two: validated types.

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Chat,
    Embeddings,
}

/// Size and time limits, already bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub upstream_timeout_ms: u64,
    pub stream_idle_timeout_ms: u64,
    pub config_refresh_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            upstream_timeout_ms: 120_000,
            stream_idle_timeout_ms: 60_000,
            config_refresh_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiProviderConfig {
    /// Base URL without trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Name of the secret that holds the API key; `None` for keyless local servers.
    pub api_key_secret: Option<String>,
    /// Overrides `limits.upstream_timeout_ms` for this provider.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    OpenAi(OpenAiProviderConfig),
    Mock,
}

/// A client-facing model name and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub kind: ModelKind,
    /// The guard profile for this model, unless the consumer has its own.
    pub guard: Option<String>,
}

/// An external moderation check (an OpenAI-compatible `/moderations` endpoint) run on inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub provider: String,
    pub model: String,
    pub timeout_ms: u64,
    /// Block the request when the moderation call fails or times out (fail closed).
    pub block_on_error: bool,
}

/// A named guard profile: the policy plus the optional external moderation call.
#[derive(Debug, Clone)]
pub struct GuardProfile {
    pub name: String,
    pub policy: policy::guard::GuardPolicy,
    pub moderation: Option<Moderation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
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
}

/// A validated configuration. Construct it with [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    pub keys: KeyTable,
    /// Set when bearer JWTs are accepted.
    pub jwt: Option<JwtAuth>,
    pub access: BTreeMap<String, ModelAccess>,
    /// Guard profile per consumer that has one.
    pub consumer_guards: BTreeMap<String, String>,
    pub guards: BTreeMap<String, GuardProfile>,
    pub cors: Option<Cors>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelRoute>,
}

const MAX_BODY_LIMIT: u64 = 100 * 1024 * 1024;

impl Config {
    /// Parse and validate a JSON configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let message = err.inner().to_string();
            let path = field_path(err.path().to_string(), &message);
            ConfigErrors(vec![ConfigIssue { path: if path.is_empty() { "(document)".into() } else { path }, message }])
        })?;
        validate(raw)
    }

    /// The access list of an authenticated consumer (everything for anonymous callers).
    pub fn access_for(&self, consumer: Option<&str>) -> Option<&ModelAccess> {
        consumer.and_then(|c| self.access.get(c))
    }

    /// The guard profile that applies: the consumer's, else the model's, else `default`.
    pub fn guard_for(&self, consumer: Option<&str>, model: &ModelRoute) -> Option<&GuardProfile> {
        consumer
            .and_then(|c| self.consumer_guards.get(c))
            .or(model.guard.as_ref())
            .and_then(|name| self.guards.get(name))
            .or_else(|| self.guards.get("default"))
    }

    /// The timeout for a provider's response head.
    pub fn timeout_for(&self, provider: &str) -> u64 {
        match self.providers.get(provider) {
            Some(ProviderConfig::OpenAi(p)) => p.timeout_ms.unwrap_or(self.limits.upstream_timeout_ms),
            _ => self.limits.upstream_timeout_ms,
        }
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

    // limits
    let mut limits = Limits::default();
    let bounded = |value: Option<u64>, default: u64, min: u64, max: u64, path: &str, issue: &mut dyn FnMut(String, String)| {
        match value {
            None => default,
            Some(v) if v < min || v > max => {
                issue(path.into(), format!("must be between {min} and {max}, got {v}"));
                default
            }
            Some(v) => v,
        }
    };
    limits.max_body_bytes = bounded(
        raw.limits.max_body_bytes,
        limits.max_body_bytes as u64,
        1024,
        MAX_BODY_LIMIT,
        "limits.max_body_bytes",
        &mut issue,
    ) as usize;
    limits.upstream_timeout_ms =
        bounded(raw.limits.upstream_timeout_ms, limits.upstream_timeout_ms, 1, 900_000, "limits.upstream_timeout_ms", &mut issue);
    limits.stream_idle_timeout_ms = bounded(
        raw.limits.stream_idle_timeout_ms,
        limits.stream_idle_timeout_ms,
        1,
        900_000,
        "limits.stream_idle_timeout_ms",
        &mut issue,
    );
    limits.config_refresh_ms =
        bounded(raw.limits.config_refresh_ms, limits.config_refresh_ms, 0, 86_400_000, "limits.config_refresh_ms", &mut issue);

    // providers
    let mut providers = BTreeMap::new();
    for (name, provider) in raw.providers {
        let path = format!("providers.{name}");
        if !valid_name(&name) {
            issue(path.clone(), "provider names use letters, digits, '-', '_' and '.'".into());
        }
        let config = match provider {
            RawProvider::Mock {} => ProviderConfig::Mock,
            RawProvider::Openai { base_url, api_key_secret, timeout_ms } => {
                let base_url = base_url.trim_end_matches('/').to_string();
                if !(base_url.starts_with("https://") || base_url.starts_with("http://")) || base_url.len() < 10 {
                    issue(format!("{path}.base_url"), format!("must be an http(s) URL, got '{base_url}'"));
                }
                if let Some(secret) = &api_key_secret {
                    if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        issue(
                            format!("{path}.api_key_secret"),
                            "must be the NAME of a secret (letters, digits, '_'), not the key itself".into(),
                        );
                    }
                }
                if let Some(t) = timeout_ms {
                    if t == 0 || t > 900_000 {
                        issue(format!("{path}.timeout_ms"), format!("must be between 1 and 900000, got {t}"));
                    }
                }
                ProviderConfig::OpenAi(OpenAiProviderConfig { base_url, api_key_secret, timeout_ms })
            }
        };
        providers.insert(name, config);
    }

    // models
    let mut models = BTreeMap::new();
    if raw.models.is_empty() {
        issue("models".into(), "at least one model must be configured".into());
    }
    for (name, model) in raw.models {
        let path = format!("models.{name}");
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            issue(path.clone(), "model names must be non-empty and contain no whitespace".into());
        }
        if !providers.contains_key(&model.provider) {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            issue(
                format!("{path}.provider"),
                format!("unknown provider '{}' (configured: {})", model.provider, known.join(", ")),
            );
        }
        if matches!(&model.upstream_model, Some(m) if m.trim().is_empty()) {
            issue(format!("{path}.upstream_model"), "must not be empty".into());
        }
        models.insert(
            name.clone(),
            ModelRoute {
                upstream_model: model.upstream_model.unwrap_or_else(|| name.clone()),
                name,
                provider: model.provider,
                kind: model.kind.unwrap_or(ModelKind::Chat),
                guard: model.guard,
            },
        );
    }

    // guards
    let mut guards = BTreeMap::new();
    for (name, raw) in raw.guards {
        let path = format!("guards.{name}");
        if let Some(profile) = validate_guard(&name, raw, &path, &providers, &mut issue) {
            guards.insert(name, profile);
        }
    }
    for (name, route) in &models {
        if let Some(guard) = &route.guard {
            if !guards.contains_key(guard) {
                issue(format!("models.{name}.guard"), format!("unknown guard profile '{guard}'"));
            }
        }
    }

    // auth
    let mut access = BTreeMap::new();
    let mut consumer_guards = BTreeMap::new();
    let mut jwt = None;
    let keys = match raw.auth {
        RawAuth::None => KeyTable::Disabled,
        RawAuth::ApiKeys { consumers } => {
            if consumers.is_empty() {
                issue(
                    "auth.consumers".into(),
                    "api_keys mode needs at least one consumer (or set \"auth\": {\"mode\": \"none\"})".into(),
                );
            }
            validate_consumers(consumers, &models, &guards, &mut access, &mut consumer_guards, &mut issue)
        }
        RawAuth::Jwt { jwt: raw_jwt, consumers } => {
            jwt = validate_jwt(*raw_jwt, &models, &mut issue);
            validate_consumers(consumers, &models, &guards, &mut access, &mut consumer_guards, &mut issue)
        }
    };

    let cors = raw.cors.map(|c| Cors { allow_origins: c.allow_origins });

    if issues.is_empty() {
        Ok(Config { limits, keys, jwt, access, consumer_guards, guards, cors, providers, models })
    } else {
        Err(ConfigErrors(issues))
    }
}

fn check_model_patterns(path: &str, patterns: &[String], models: &BTreeMap<String, ModelRoute>, issue: &mut impl FnMut(String, String)) {
    for (j, pattern) in patterns.iter().enumerate() {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty() || prefix.contains('*') {
            issue(format!("{path}[{j}]"), "use an exact name, '*', or a prefix ending in '*'".into());
        } else if !pattern.ends_with('*') && !models.contains_key(pattern) {
            issue(format!("{path}[{j}]"), format!("unknown model '{pattern}'"));
        }
    }
}

fn validate_consumers(
    consumers: Vec<RawConsumer>,
    models: &BTreeMap<String, ModelRoute>,
    guards: &BTreeMap<String, GuardProfile>,
    access: &mut BTreeMap<String, ModelAccess>,
    consumer_guards: &mut BTreeMap<String, String>,
    issue: &mut impl FnMut(String, String),
) -> KeyTable {
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
            consumer_guards.insert(consumer.id.clone(), guard);
        }
        let allowed = consumer.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all);
        access.insert(consumer.id, allowed);
    }
    KeyTable::Keys(keys)
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
    })
}

fn validate_guard(
    name: &str,
    raw: RawGuard,
    path: &str,
    providers: &BTreeMap<String, ProviderConfig>,
    issue: &mut impl FnMut(String, String),
) -> Option<GuardProfile> {
    use policy::guard::{CustomRule, GuardAction, GuardPolicy, PiiKind};
    let action = |value: &str, at: String, issue: &mut dyn FnMut(String, String)| {
        let parsed = GuardAction::from_name(value);
        if parsed.is_none() {
            issue(at, format!("unknown action '{value}' (use redact, mask, block or log)"));
        }
        parsed
    };
    let mut ok = true;
    let mut pii = BTreeMap::new();
    for (kind, value) in &raw.pii {
        let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
        match PiiKind::from_name(kind) {
            Some(k) => match action(value, format!("{path}.pii.{kind}"), issue) {
                Some(a) => {
                    pii.insert(k, a);
                }
                None => ok = false,
            },
            None => {
                issue(format!("{path}.pii.{kind}"), format!("unknown PII type (use {})", names.join(", ")));
                ok = false;
            }
        }
    }
    let injection = match raw.injection {
        None => None,
        Some(inj) => {
            if !(0.0..=1.0).contains(&inj.threshold) || inj.threshold == 0.0 {
                issue(format!("{path}.injection.threshold"), format!("must be in (0, 1], got {}", inj.threshold));
                ok = false;
            }
            let a = match inj.action.as_deref() {
                None => Some(GuardAction::Block),
                Some(v @ ("block" | "log")) => GuardAction::from_name(v),
                Some(v) => {
                    issue(format!("{path}.injection.action"), format!("must be block or log, got '{v}'"));
                    None
                }
            };
            a.map(|a| (inj.threshold, a))
        }
    };
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        if !valid_name(&rule.name) {
            issue(format!("{at}.name"), "use letters, digits, '-', '_' and '.'".into());
            ok = false;
        }
        let regex = match regex::RegexBuilder::new(&rule.pattern).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                issue(format!("{at}.pattern"), format!("invalid regular expression: {e}"));
                ok = false;
                None
            }
        };
        let (input, output) = match rule.on.as_deref() {
            None | Some("both") => (true, true),
            Some("input") => (true, false),
            Some("output") => (false, true),
            Some(other) => {
                issue(format!("{at}.on"), format!("must be input, output or both, got '{other}'"));
                ok = false;
                (true, true)
            }
        };
        let a = action(&rule.action, format!("{at}.action"), issue);
        if let (Some(regex), Some(action)) = (regex, a) {
            rules.push(CustomRule { name: rule.name, regex, action, input, output });
        } else {
            ok = false;
        }
    }
    let moderation = match raw.moderation {
        None => None,
        Some(m) => {
            if !matches!(providers.get(&m.provider), Some(ProviderConfig::OpenAi(_))) {
                issue(format!("{path}.moderation.provider"), format!("'{}' is not a configured openai-kind provider", m.provider));
                ok = false;
            }
            let block_on_error = match m.on_error.as_deref() {
                None | Some("block") => true,
                Some("allow") => false,
                Some(other) => {
                    issue(format!("{path}.moderation.on_error"), format!("must be block or allow, got '{other}'"));
                    ok = false;
                    true
                }
            };
            Some(Moderation {
                provider: m.provider,
                model: m.model.unwrap_or_else(|| "omni-moderation-latest".into()),
                timeout_ms: m.timeout_ms.unwrap_or(2_000).clamp(1, 60_000),
                block_on_error,
            })
        }
    };
    let policy = GuardPolicy {
        pii,
        reversible: raw.reversible,
        injection,
        deny: raw.deny.iter().map(|d| d.to_lowercase()).filter(|d| !d.is_empty()).collect(),
        allow: raw.allow,
        rules,
        scan_output: raw.output,
    };
    ok.then(|| GuardProfile { name: name.to_string(), policy, moderation })
}

/// The full path of a field a deserialisation error is about: serde reports a missing field at
/// its parent, with the field's name only in the message.
pub(crate) fn field_path(parent: String, message: &str) -> String {
    let parent = if parent == "." { String::new() } else { parent };
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    match missing {
        Some(field) if parent.is_empty() => field.to_string(),
        Some(field) => format!("{parent}.{field}"),
        None => parent,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "limits": { "max_body_bytes": 65536 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "web", "key_sha256": "0000000000000000000000000000000000000000000000000000000000000001", "models": ["mock*"] }
        ]},
        "providers": {
            "mock": { "kind": "mock" },
            "openai": { "kind": "openai", "base_url": "https://api.openai.com/v1/", "api_key_secret": "OPENAI_API_KEY" }
        },
        "models": {
            "mock": { "provider": "mock" },
            "gpt-4o-mini": { "provider": "openai" },
            "embed": { "provider": "openai", "upstream_model": "text-embedding-3-small", "type": "embeddings" }
        }
    }"#;

    #[test]
    fn a_good_document_validates() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.limits.max_body_bytes, 65536);
        assert_eq!(config.models["gpt-4o-mini"].upstream_model, "gpt-4o-mini");
        assert_eq!(config.models["embed"].kind, ModelKind::Embeddings);
        match &config.providers["openai"] {
            ProviderConfig::OpenAi(p) => assert_eq!(p.base_url, "https://api.openai.com/v1"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(config.access["web"].allows("mock"));
        assert!(!config.access["web"].allows("gpt-4o-mini"));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock", "colour": 1}}, "models": {}}"#).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].path, "providers.m");
        assert!(err.0[0].message.contains("colour"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let doc = r#"{
            "limits": { "max_body_bytes": 10 },
            "auth": { "mode": "api_keys", "consumers": [ { "id": "a", "key_sha256": "sk-live-123" } ] },
            "providers": { "o": { "kind": "openai", "base_url": "ftp://x", "api_key_secret": "sk-abc-123" } },
            "models": { "m": { "provider": "nope" } }
        }"#;
        let err = Config::parse(doc).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "limits.max_body_bytes",
                "providers.o.base_url",
                "providers.o.api_key_secret",
                "models.m.provider",
                "auth.consumers[0].key_sha256",
            ]
        );
    }

    #[test]
    fn a_missing_field_is_named_by_its_full_path() {
        let err = Config::parse(r#"{"providers": {"up": {"kind": "openai"}}, "models": {}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers.up.base_url", "{err}");
        let err = Config::parse(r#"{"models": {}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers");
    }

    #[test]
    fn auth_defaults_to_required_keys() {
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock"}}, "models": {"x": {"provider": "m"}}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "auth.consumers");
    }

    #[test]
    fn wrong_types_and_bad_json_are_errors_not_panics() {
        assert!(Config::parse("").is_err());
        assert!(Config::parse("[]").is_err());
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock"}}, "models": {"x": {"provider": 3}}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "models.x.provider");
    }
}
