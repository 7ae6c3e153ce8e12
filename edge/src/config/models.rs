//! The `models` section: the client-facing model names, each sent to one provider or routed over
//! several targets. Every model becomes a [`ModelRoute`]; a model with targets also becomes a
//! `policy::route::RouteSpec` (docs/routing.md), its targets priced from the `prices` table.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::issues::valid_name;
use super::providers::ProviderConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    /// The provider of a single-target model (or use `targets`).
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    upstream_model: Option<String>,
    /// Several places this model can be served from, and how to choose (docs/routing.md).
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    strategy: Option<policy::route::Strategy>,
    #[serde(default)]
    fallback_on: Option<BTreeSet<policy::route::FallbackTrigger>>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    backoff: Option<policy::route::Backoff>,
    #[serde(default)]
    circuit_breaker: Option<policy::route::CircuitBreaker>,
    #[serde(default)]
    conditions: Vec<policy::route::Condition>,
    #[serde(default, rename = "type")]
    kind: Option<ModelKind>,
    #[serde(default)]
    guard: Option<String>,
    /// This model's response cache (docs/cache.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) cache: Option<super::cache::RawCache>,
    /// This model's request log (docs/observability.md); taken out before the rest is validated.
    #[serde(default)]
    pub(super) request_log: Option<super::request_log::RawRequestLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    id: String,
    provider: String,
    #[serde(default)]
    upstream_model: Option<String>,
    region: String,
    jurisdiction: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    canary: Option<u8>,
    /// Model size class in billions of parameters, for the energy estimate.
    #[serde(default)]
    params_b: Option<u32>,
}

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Chat,
    Embeddings,
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

/// The models, each as a route to its (first) provider, and the routing plans of those with
/// targets, by model name.
pub(super) fn validate_models(
    raw: BTreeMap<String, RawModel>,
    providers: &BTreeMap<String, ProviderConfig>,
    price_table: &policy::limits::PriceTable,
    issue: &mut impl FnMut(String, String),
) -> (BTreeMap<String, ModelRoute>, BTreeMap<String, policy::route::RouteSpec>) {
    let mut models = BTreeMap::new();
    let mut raw_routes = Vec::new();
    for (name, model) in raw {
        let path = format!("models.{name}");
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            issue(path.clone(), "model names must be non-empty and contain no whitespace".into());
        }
        let known = |providers: &BTreeMap<String, ProviderConfig>| providers.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let (provider, upstream_model) = match (&model.provider, model.targets.first()) {
            (Some(_), Some(_)) => {
                issue(format!("{path}.targets"), "set either provider or targets, not both".into());
                (String::new(), String::new())
            }
            (Some(provider), None) => (provider.clone(), model.upstream_model.clone().unwrap_or_else(|| name.clone())),
            (None, Some(first)) => (first.provider.clone(), first.upstream_model.clone().unwrap_or_else(|| name.clone())),
            (None, None) => {
                issue(format!("{path}.provider"), "missing field `provider` (or a list of `targets`)".into());
                (String::new(), String::new())
            }
        };
        if model.provider.is_some() && !providers.contains_key(&provider) {
            issue(format!("{path}.provider"), format!("unknown provider '{provider}' (configured: {})", known(providers)));
        }
        if matches!(&model.upstream_model, Some(m) if m.trim().is_empty()) {
            issue(format!("{path}.upstream_model"), "must not be empty".into());
        }
        // The model name travels in the URL (Gemini, Bedrock, Workers AI) or the body upstream.
        super::issues::check_no_control(&upstream_model, || format!("{path}.upstream_model"), issue);
        let route_fields = model.strategy.is_some()
            || model.fallback_on.is_some()
            || model.max_attempts.is_some()
            || model.backoff.is_some()
            || model.circuit_breaker.is_some()
            || !model.conditions.is_empty();
        if !model.targets.is_empty() && model.kind == Some(ModelKind::Embeddings) {
            // Embeddings are not routed (no fallback, no residency filter): one provider only,
            // so a tenant's residency can never be bypassed through an unfiltered first target.
            issue(format!("{path}.targets"), "embeddings models take one `provider`; `targets` (routing) is for chat models".into());
        }
        if model.targets.is_empty() && route_fields {
            issue(format!("{path}.targets"), "routing settings need a list of targets".into());
        }
        if !model.targets.is_empty() {
            raw_routes.push((name.clone(), model.targets, model.strategy, model.fallback_on, model.max_attempts, model.backoff, model.circuit_breaker, model.conditions));
        }
        models.insert(
            name.clone(),
            ModelRoute { upstream_model, name, provider, kind: model.kind.unwrap_or(ModelKind::Chat), guard: model.guard },
        );
    }
    let mut routes = BTreeMap::new();
    for (name, targets, strategy, fallback_on, max_attempts, backoff, circuit_breaker, conditions) in raw_routes {
        let path = format!("models.{name}");
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (i, target) in targets.into_iter().enumerate() {
            let at = format!("{path}.targets[{i}]");
            if !ids.insert(target.id.clone()) || !valid_name(&target.id) {
                issue(format!("{at}.id"), format!("target ids must be unique names, got '{}'", target.id));
            }
            if !providers.contains_key(&target.provider) {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                issue(format!("{at}.provider"), format!("unknown provider '{}' (configured: {})", target.provider, known.join(", ")));
            }
            if target.jurisdiction.trim().is_empty() || target.region.trim().is_empty() {
                issue(at.clone(), "region and jurisdiction must not be empty".into());
            }
            if target.canary.is_some_and(|c| c > 100) {
                issue(format!("{at}.canary"), "is a percentage between 0 and 100".into());
            }
            let model_name = target.upstream_model.unwrap_or_else(|| name.clone());
            super::issues::check_no_control(&model_name, || format!("{at}.upstream_model"), issue);
            let price = price_table.get(&model_name).copied();
            out.push(policy::route::Target {
                id: target.id,
                provider: target.provider,
                model: model_name,
                region: target.region,
                jurisdiction: target.jurisdiction.to_ascii_lowercase(),
                weight: target.weight.unwrap_or(1),
                canary: target.canary,
                input_per_million: price.map(|p| p.input_per_million).unwrap_or_default(),
                output_per_million: price.map(|p| p.output_per_million).unwrap_or_default(),
                params_b: target.params_b.unwrap_or(70),
            });
        }
        let max_attempts = max_attempts.unwrap_or((out.len() as u32).clamp(1, 3));
        if max_attempts == 0 || max_attempts > policy::route::MAX_ATTEMPTS_CAP {
            issue(format!("{path}.max_attempts"), format!("must be between 1 and {}", policy::route::MAX_ATTEMPTS_CAP));
        }
        routes.insert(
            name.clone(),
            policy::route::RouteSpec {
                name,
                targets: out,
                strategy: strategy.unwrap_or(policy::route::Strategy::Ordered),
                fallback_on: fallback_on.unwrap_or_else(|| {
                    use policy::route::FallbackTrigger::*;
                    [RateLimited, ServerError, Timeout, Connect].into_iter().collect()
                }),
                max_attempts,
                backoff: backoff.unwrap_or(policy::route::Backoff { base_ms: 100, max_ms: 2_000 }),
                circuit_breaker: circuit_breaker.unwrap_or(policy::route::CircuitBreaker { failure_threshold: 5, open_ms: 30_000 }),
                conditions,
            },
        );
    }
    for (name, spec) in &routes {
        for (i, condition) in spec.conditions.iter().enumerate() {
            match &condition.then {
                policy::route::ConditionAction::Route(other) if !routes.contains_key(other) => {
                    issue(format!("models.{name}.conditions[{i}].then"), format!("'{other}' is not a model with targets"));
                }
                policy::route::ConditionAction::Targets(ids) => {
                    for id in ids.iter().filter(|id| !spec.targets.iter().any(|t| &t.id == *id)) {
                        issue(format!("models.{name}.conditions[{i}].then"), format!("unknown target '{id}'"));
                    }
                }
                _ => {}
            }
        }
    }
    (models, routes)
}

/// A list of model names and `prefix*` patterns (a consumer's, a tenant's, a tier's): exact names
/// must be configured models.
pub(super) fn check_model_patterns(path: &str, patterns: &[String], models: &BTreeMap<String, ModelRoute>, issue: &mut impl FnMut(String, String)) {
    for (j, pattern) in patterns.iter().enumerate() {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty() || prefix.contains('*') {
            issue(format!("{path}[{j}]"), "use an exact name, '*', or a prefix ending in '*'".into());
        } else if !pattern.ends_with('*') && !models.contains_key(pattern) {
            issue(format!("{path}[{j}]"), format!("unknown model '{pattern}'"));
        }
    }
}
