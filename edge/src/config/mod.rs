//! The gateway configuration document, parsed in two phases.
//!
//! Phase one reads the raw JSON with `deny_unknown_fields`, so a typo is an error that names its
//! path rather than a silently ignored key. Phase two validates the whole document and converts it
//! into the types the pipeline uses (resolved provider references, parsed key digests, bounded
//! limits), reporting every problem at once, each with its path.
//!
//! Secrets are never values in the document: a provider names the secret (`api_key_secret`) and
//! the host resolves it at request time.
//!
//! Each section has its own file with its raw and validated types and its validation. This file
//! assembles the document and validates the sections one after another, each after those it
//! refers to, always in the same order, so the issues come out in a stable order. The files import
//! downwards only: `issues` (shared helpers) at the bottom, then `providers`, `models`, and the
//! sections that refer to them; nothing imports this file.

mod admin;
mod alerts;
mod cache;
mod cors;
mod guards;
mod identity;
mod issues;
mod limits;
mod models;
mod network;
mod providers;
mod quota;
mod routing;
mod request_log;
mod stats;
mod telemetry;

use std::collections::BTreeMap;

use policy::{KeyTable, ModelAccess};
use serde::Deserialize;

pub use admin::Admin;
pub use cache::{CacheMode, CacheRules, CacheScope, CacheSettings, SemanticQuery, SemanticSettings, MAX_CACHE_ENTRY_BYTES, MAX_CACHE_TTL_S};
pub use cors::Cors;
pub use guards::{GuardProfile, Moderation};
pub use identity::{ConsumerProfile, JwtAuth, Tenant};
pub(crate) use issues::field_path;
pub use issues::{ConfigErrors, ConfigIssue};
pub use limits::Limits;
pub use models::{ModelKind, ModelRoute};
pub use network::{check_outbound_url, NetworkPolicy, UrlRefusal};
pub use providers::{
    AnthropicConfig, AzureConfig, BedrockConfig, CohereConfig, GeminiApi, GeminiConfig, OpenAiFlavor, OpenAiProviderConfig, ProviderConfig,
    WorkersAiBindingConfig,
};
pub use quota::{Budget, LimitGroup, Quota};
pub use routing::{CarbonFeed, Residency, MAX_CARBON_ZONES};
pub use request_log::{RequestLogRules, RequestLogSettings, MAX_LOG_BODY_BYTES, MAX_LOG_RETENTION_DAYS};
pub use alerts::{AlertFilters, AlertFormat, AlertKind, AlertRule, AlertWebhook, Alerts};
pub use stats::{StatsSettings, MAX_STATS_SHARDS};
pub use telemetry::Telemetry;

use admin::RawAdmin;
use cors::RawCors;
use guards::RawGuard;
use identity::{RawAuth, RawTenant};
use limits::RawLimits;
use models::RawModel;
use network::RawNetwork;
use providers::RawProvider;
use quota::{RawBudget, RawPrice, RawQuota, RawRateLimit};
use routing::{RawCarbonFeed, RawResidency};
use alerts::RawAlerts;
use stats::RawStats;
use telemetry::RawTelemetry;

/// Phase one: the document as written (each section's raw type is in the section's file).
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
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    budgets: Vec<RawBudget>,
    /// USD per million tokens, by model name (configured or upstream; `prefix*` allowed).
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    quota: RawQuota,
    /// The admin API's credential; without it `/admin/` does not exist.
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    residency: RawResidency,
    /// Live grid carbon intensity (Electricity Maps), refreshed on a schedule into KV.
    #[serde(default)]
    carbon_feed: Option<RawCarbonFeed>,
    /// The outbound policy: honoured from the shipped document only (see `network.rs`).
    #[serde(default)]
    network: Option<RawNetwork>,
    /// The usage rollups behind `/admin/stats` and `/admin/metrics`.
    #[serde(default)]
    stats: RawStats,
    /// OpenTelemetry export over OTLP/HTTP JSON (docs/observability.md).
    #[serde(default)]
    telemetry: Option<RawTelemetry>,
    /// Alert rules and their webhook.
    #[serde(default)]
    alerts: Option<RawAlerts>,
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
    /// The tenant of each API-key consumer that has one.
    pub consumer_tenants: BTreeMap<String, String>,
    /// Per configured consumer: default tier and metadata.
    pub consumer_profiles: BTreeMap<String, ConsumerProfile>,
    pub tenants: BTreeMap<String, Tenant>,
    pub quota: Quota,
    pub admin: Option<Admin>,
    pub carbon_feed: Option<CarbonFeed>,
    /// Models served by several targets, with how to choose among them.
    pub routes: BTreeMap<String, policy::route::RouteSpec>,
    pub residency: Residency,
    /// The outbound policy this document was checked against (always the shipped document's).
    pub network: NetworkPolicy,
    /// The response cache settings of models, consumers and tenants (docs/cache.md).
    pub cache: CacheRules,
    /// The usage rollups (`stats` section).
    pub stats: StatsSettings,
    /// Traces and metrics exported to an OpenTelemetry collector, when configured.
    pub telemetry: Option<std::rc::Rc<Telemetry>>,
    /// Which requests are kept in the request log (`request_log` on models, consumers, tenants).
    pub request_log: RequestLogRules,
    /// Alert rules and their webhook (`alerts`).
    pub alerts: Option<Alerts>,
}

/// Which document is being validated, and so whose outbound policy applies.
enum Provenance<'a> {
    /// The document shipped with the deployment: its own `network` section is the policy.
    Shipped,
    /// A document from KV or `PUT /admin/config`: the shipped document's policy applies.
    Override(&'a NetworkPolicy),
}

impl Config {
    /// Parse and validate a JSON configuration document as the shipped one (its own `network`
    /// section is the outbound policy).
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        validate(read_raw(text)?, Provenance::Shipped)
    }

    /// Parse and validate a document that overrides the shipped one (the KV key `config`, `PUT
    /// /admin/config`) under the shipped document's outbound policy: without a valid shipped
    /// document, the strictest (public https only, no provider secret allowed).
    pub fn parse_override(text: &str, shipped: Option<&str>) -> Result<Config, ConfigErrors> {
        let policy = shipped.and_then(|t| Config::parse(t).ok()).map(|c| c.network).unwrap_or_default();
        validate(read_raw(text)?, Provenance::Override(&policy))
    }

    /// The caller's metadata: the tenant's, overridden key by key by the consumer's own.
    pub fn metadata_for(&self, consumer: Option<&str>, tenant: Option<&str>) -> BTreeMap<String, String> {
        let mut out = tenant.and_then(|t| self.tenants.get(t)).map(|t| t.metadata.clone()).unwrap_or_default();
        if let Some(profile) = consumer.and_then(|c| self.consumer_profiles.get(c)) {
            out.extend(profile.metadata.clone());
        }
        out
    }

    /// Whether `auth.consumers` declares `consumer` (the owner test of virtual keys).
    pub fn declares_consumer(&self, consumer: &str) -> bool {
        self.access.contains_key(consumer)
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
        self.providers.get(provider).and_then(ProviderConfig::timeout_ms).unwrap_or(self.limits.upstream_timeout_ms)
    }
}

/// Phase one: the document as written, or the one deserialisation error with its path.
fn read_raw(text: &str) -> Result<RawConfig, ConfigErrors> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let message = err.inner().to_string();
        let path = field_path(err.path().to_string(), &message);
        ConfigErrors(vec![ConfigIssue { path: if path.is_empty() { "(document)".into() } else { path }, message }])
    })
}

/// Phase two: every section, each against those it refers to, collecting all the issues.
fn validate(mut raw: RawConfig, provenance: Provenance<'_>) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    // The `cache` settings sit on models, consumers and tenants but are validated together.
    let model_caches: Vec<(String, String, cache::RawCache)> =
        raw.models.iter_mut().filter_map(|(name, m)| Some((format!("models.{name}.cache"), name.clone(), m.cache.take()?))).collect();
    let consumer_caches = raw.auth.take_caches();
    let tenant_caches: Vec<(String, String, cache::RawCache)> =
        raw.tenants.iter_mut().filter_map(|(name, t)| Some((format!("tenants.{name}.cache"), name.clone(), t.cache.take()?))).collect();
    let model_logs: Vec<(String, String, request_log::RawRequestLog)> =
        raw.models.iter_mut().filter_map(|(name, m)| Some((format!("models.{name}.request_log"), name.clone(), m.request_log.take()?))).collect();
    let consumer_logs = raw.auth.take_request_logs();
    let tenant_logs: Vec<(String, String, request_log::RawRequestLog)> =
        raw.tenants.iter_mut().filter_map(|(name, t)| Some((format!("tenants.{name}.request_log"), name.clone(), t.request_log.take()?))).collect();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

    let limits = limits::validate_limits(raw.limits, &mut issue);
    let providers = providers::validate_providers(raw.providers, &mut issue);
    if raw.models.is_empty() {
        issue("models".into(), "at least one model must be configured".into());
    }
    // The prices before the models: routed targets carry their price. (The emptiness check stays
    // first so the issues keep their order.)
    let price_table = quota::parse_prices(raw.prices, &mut issue);
    let (models, routes) = models::validate_models(raw.models, &providers, &price_table, &mut issue);
    let carbon_feed = routing::validate_carbon_feed(raw.carbon_feed, &mut issue);
    let residency = routing::validate_residency(raw.residency);
    let guards = guards::validate_guards(raw.guards, &providers, &models, &mut issue);
    let identity::Auth { keys, jwt, access, consumer_guards, consumer_tenants, consumer_profiles } =
        identity::validate_auth(raw.auth, &models, &guards, &mut issue);
    let cors = raw.cors.map(cors::validate_cors);
    let cache = {
        let embedding_models: Vec<&str> = models.values().filter(|m| m.kind == ModelKind::Embeddings).map(|m| m.name.as_str()).collect();
        let mut rules = CacheRules::default();
        for (settings, caches) in [(&mut rules.models, model_caches), (&mut rules.consumers, consumer_caches), (&mut rules.tenants, tenant_caches)] {
            for (path, name, raw_cache) in caches {
                if let Some(valid) = cache::validate_cache(raw_cache, &path, &embedding_models, &mut issue) {
                    settings.insert(name, valid);
                }
            }
        }
        rules
    };
    let tenants = identity::validate_tenants(raw.tenants, &consumer_tenants, &models, &mut issue);
    let admin = admin::validate_admin(raw.admin, &keys, &mut issue);
    let stats = stats::validate_stats(raw.stats, &mut issue);
    let telemetry = telemetry::validate_telemetry(raw.telemetry, &|c| access.contains_key(c), &|m| models.contains_key(m), &mut issue);
    let mut request_log = RequestLogRules::default();
    for (settings, logs) in [(&mut request_log.models, model_logs), (&mut request_log.consumers, consumer_logs), (&mut request_log.tenants, tenant_logs)] {
        for (path, name, raw_log) in logs {
            if let Some(valid) = request_log::validate_request_log(raw_log, &path, &mut issue) {
                settings.insert(name, valid);
            }
        }
    }
    let webhooks = quota::webhook_urls(&raw.budgets);
    let quota = quota::validate_quota(raw.rate_limits, raw.budgets, price_table, raw.quota, &models, &mut issue);
    let alerts = raw.alerts.map(|a| alerts::validate_alerts(a, &quota.budgets, &mut issue));
    let network = match provenance {
        Provenance::Shipped => network::policy_of_shipped(raw.network, &providers, &mut issue),
        Provenance::Override(shipped) => {
            network::check_not_wider(raw.network, shipped, &mut issue);
            shipped.clone()
        }
    };
    // The outbound policy is checked on an otherwise valid document (one report per field).
    let mut outbound_issues = Vec::new();
    {
        let mut outbound = network::Outbound { providers: &providers, urls: Vec::new(), other_secrets: Vec::new() };
        if let Some(jwt) = &jwt {
            outbound.urls.extend(jwt.jwks_url.as_deref().map(|url| ("auth.jwt.jwks_url".to_string(), url)));
            outbound.other_secrets.extend(jwt.hmac_secrets.iter().map(|(_, name)| ("auth.jwt.keys".to_string(), name.as_str(), "the JWT HMAC key")));
        }
        if let Some(feed) = &carbon_feed {
            outbound.urls.push(("carbon_feed.base_url".into(), &feed.base_url));
            outbound.other_secrets.push(("carbon_feed.token_secret".into(), &feed.token_secret, "the carbon feed's token"));
        }
        outbound.urls.extend(webhooks.iter().map(|(path, url)| (path.clone(), url.as_str())));
        if let Some(telemetry) = &telemetry {
            outbound.urls.push(("telemetry.otlp.endpoint".into(), &telemetry.endpoint));
            outbound.other_secrets.extend(telemetry.headers.iter().map(|(h, name)| (format!("telemetry.otlp.headers.{h}.secret"), name.as_str(), "an OTLP collector header")));
        }
        if let Some(a) = &alerts {
            outbound.urls.push(("alerts.webhook.url".into(), &a.webhook.url));
            if let Some(name) = &a.webhook.secret {
                outbound.other_secrets.push(("alerts.webhook.secret".into(), name, "the alert webhook signing key"));
            }
        }
        if let Some(name) = &quota.webhook_secret {
            outbound.other_secrets.push(("quota.webhook_secret".into(), name, "the webhook signing key"));
        }
        network::check_outbound(&outbound, &network, &mut |path, message| outbound_issues.push(ConfigIssue { path, message }));
    }
    if issues.is_empty() {
        issues = outbound_issues;
    }
    if issues.is_empty() {
        Ok(Config { limits, keys, jwt, access, consumer_guards, guards, cors, providers, models, consumer_tenants, consumer_profiles, tenants, quota, admin, routes, residency, carbon_feed, network, cache, stats, telemetry: telemetry.map(std::rc::Rc::new), request_log, alerts })
    } else {
        Err(ConfigErrors(issues))
    }
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
    fn a_secret_serves_one_purpose_even_in_the_shipped_document() {
        let doc = GOOD.replace(
            r#""models": {"#,
            r#""carbon_feed": { "token_secret": "OPENAI_API_KEY", "zones": { "r": "NL" } }, "models": {"#,
        );
        let err = Config::parse(&doc).unwrap_err();
        assert_eq!(err.0[0].path, "carbon_feed.token_secret", "{err}");
    }

    #[test]
    fn an_override_is_held_to_the_shipped_outbound_policy() {
        let http = GOOD.replace("https://api.openai.com/v1/", "http://127.0.0.1:9000/v1");
        let dev = http.replacen('{', r#"{ "network": { "allow_private_upstreams": true },"#, 1);
        assert_eq!(Config::parse(&http).unwrap_err().0[0].path, "providers.openai.base_url");
        assert!(Config::parse(&dev).unwrap().network.allow_private_upstreams);
        assert!(Config::parse_override(&http, Some(&dev)).is_ok(), "the shipped document allows it");
        assert_eq!(Config::parse_override(&dev, Some(GOOD)).unwrap_err().0[0].path, "network.allow_private_upstreams");
        assert_eq!(Config::parse_override(GOOD, None).unwrap_err().0[0].path, "providers.openai.api_key_secret", "no shipped document: no secret may leave");
    }

    #[test]
    fn control_characters_bound_for_urls_or_headers_are_refused_with_the_field() {
        let doc = r#"{ "auth": {"mode": "none"},
            "providers": {
                "a": { "kind": "anthropic", "api_key_secret": "A_KEY", "version": "2023-06-01\r\nx-evil: 1" },
                "o": { "kind": "openai", "base_url": "https://api.example.com/v1\r\nHost: evil" }
            },
            "models": { "m": { "provider": "a", "upstream_model": "claude\nx" } } }"#;
        let paths: Vec<String> = Config::parse(doc).unwrap_err().0.into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["providers.a.version", "providers.o.base_url", "models.m.upstream_model"]);
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
        let err = Config::parse(r#"{"providers": {"up": {"kind": "anthropic"}}, "models": {}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers.up.api_key_secret", "{err}");
        let err = Config::parse(r#"{"providers": {"up": {"kind": "openai_compatible"}}, "models": {"m": {"provider": "up"}}, "auth": {"mode": "none"}}"#).unwrap_err();
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
