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
    providers: BTreeMap<String, RawProvider>,
    models: BTreeMap<String, RawModel>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
}

/// A validated configuration. Construct it with [`Config::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    pub keys: KeyTable,
    pub access: BTreeMap<String, ModelAccess>,
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
            let path = err.path().to_string();
            let inner = err.into_inner();
            ConfigErrors(vec![ConfigIssue {
                path: if path.is_empty() || path == "." { "(document)".into() } else { path },
                message: inner.to_string(),
            }])
        })?;
        validate(raw)
    }

    /// The access list of an authenticated consumer (everything for anonymous callers).
    pub fn access_for(&self, consumer: Option<&str>) -> Option<&ModelAccess> {
        consumer.and_then(|c| self.access.get(c))
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
            },
        );
    }

    // auth
    let mut access = BTreeMap::new();
    let keys = match raw.auth {
        RawAuth::None => KeyTable::Disabled,
        RawAuth::ApiKeys { consumers } => {
            if consumers.is_empty() {
                issue(
                    "auth.consumers".into(),
                    "api_keys mode needs at least one consumer (or set \"auth\": {\"mode\": \"none\"})".into(),
                );
            }
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
                    for (j, pattern) in patterns.iter().enumerate() {
                        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
                        if pattern.is_empty() || prefix.contains('*') {
                            issue(format!("{path}.models[{j}]"), "use an exact name, '*', or a prefix ending in '*'".into());
                        } else if !pattern.ends_with('*') && !models.contains_key(pattern) {
                            issue(format!("{path}.models[{j}]"), format!("unknown model '{pattern}'"));
                        }
                    }
                }
                let allowed = consumer.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all);
                access.insert(consumer.id, allowed);
            }
            KeyTable::Keys(keys)
        }
    };

    let cors = raw.cors.map(|c| Cors { allow_origins: c.allow_origins });

    if issues.is_empty() {
        Ok(Config { limits, keys, access, cors, providers, models })
    } else {
        Err(ConfigErrors(issues))
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
