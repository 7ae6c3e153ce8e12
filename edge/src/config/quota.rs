//! The `rate_limits`, `budgets`, `prices` and `quota` sections: counted limits grouped by scope
//! (one counter object per scope), the price table that budgets charge from, and the counter
//! store's defaults.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::issues::yes;
use super::models::{ModelKind, ModelRoute};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    scope: Vec<String>,
    metric: String,
    window: String,
    limit: u64,
    #[serde(default)]
    on_store_error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    /// How `/admin/forecast` and alert rules name it (default `<scope dims joined by +>:<window>`).
    #[serde(default)]
    name: Option<String>,
    scope: Vec<String>,
    window: String,
    /// Decimal USD, e.g. "100.00".
    usd: String,
    #[serde(default)]
    alerts: Vec<u16>,
    /// `false`: count and alert only, never refuse.
    #[serde(default = "yes")]
    hard: bool,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    on_store_error: Option<String>,
}

/// Each budget's webhook URL with its field path (for the outbound policy in `network`).
pub(super) fn webhook_urls(budgets: &[RawBudget]) -> Vec<(String, String)> {
    budgets.iter().enumerate().filter_map(|(i, b)| b.webhook_url.clone().map(|url| (format!("budgets[{i}].webhook_url"), url))).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrice {
    input: String,
    #[serde(default)]
    cached_input: Option<String>,
    output: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    /// Output tokens reserved when a request sets no `max_tokens`.
    #[serde(default)]
    default_max_output_tokens: Option<u64>,
    /// Longest wait for the counter store before its failure mode applies.
    #[serde(default)]
    store_timeout_ms: Option<u64>,
    /// The NAME of the secret that signs budget webhooks (`x-gateway-signature`).
    #[serde(default)]
    webhook_secret: Option<String>,
}

/// Rate limits, budgets and prices, validated.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    /// The limits grouped by scope: one counter object per resolved scope and request.
    pub groups: Vec<LimitGroup>,
    pub prices: policy::limits::PriceTable,
    pub default_max_output_tokens: u64,
    pub store_timeout_ms: u64,
    /// The name of the secret budget webhooks are signed with (HMAC-SHA256), when set.
    pub webhook_secret: Option<String>,
    /// Every budget by name, in document order (forecasts and alert rules refer to them).
    pub budgets: Vec<Budget>,
}

/// One money budget, named.
#[derive(Debug, Clone)]
pub struct Budget {
    pub name: String,
    pub scope: policy::limits::Scope,
    pub window: policy::limits::Window,
    pub limit: policy::limits::Nanos,
}

/// The limits that share one scope (so one counter object holds all of them).
#[derive(Debug, Clone)]
pub struct LimitGroup {
    pub scope: policy::limits::Scope,
    pub specs: Vec<policy::limits::LimitSpec>,
    /// Closed if any limit of the group says closed (the default).
    pub on_store_error: policy::limits::FailureMode,
    /// Budget alert webhooks of this group.
    pub webhooks: Vec<String>,
}

/// Parse a limit scope like `["consumer", "model"]` or `["tenant", "header:x-team"]`.
fn parse_scope(raw: &[String], path: &str, issue: &mut impl FnMut(String, String)) -> Option<policy::limits::Scope> {
    use policy::limits::{Scope, ScopeDim};
    let mut dims = Vec::new();
    for (i, dim) in raw.iter().enumerate() {
        let parsed = match dim.as_str() {
            "key" => ScopeDim::Key,
            "consumer" => ScopeDim::Consumer,
            "tenant" => ScopeDim::Tenant,
            "model" => ScopeDim::Model,
            other => match other.strip_prefix("header:") {
                Some(name) => ScopeDim::Header(name.to_string()),
                None => {
                    issue(format!("{path}[{i}]"), format!("must be key, consumer, tenant, model or header:<name>, got '{other}'"));
                    return None;
                }
            },
        };
        dims.push(parsed);
    }
    match Scope::new(dims) {
        Ok(scope) => Some(scope),
        Err(error) => {
            issue(path.to_string(), error.to_string());
            None
        }
    }
}

fn failure_mode(raw: Option<&str>, path: &str, issue: &mut impl FnMut(String, String)) -> policy::limits::FailureMode {
    match raw {
        None => policy::limits::FailureMode::Closed,
        Some(name) => policy::limits::FailureMode::from_name(name).unwrap_or_else(|| {
            issue(path.to_string(), format!("must be open or closed, got '{name}'"));
            policy::limits::FailureMode::Closed
        }),
    }
}

/// The price table: USD per million tokens by model name (or `prefix*`).
pub(super) fn parse_prices(prices: BTreeMap<String, RawPrice>, issue: &mut impl FnMut(String, String)) -> policy::limits::PriceTable {
    let mut table = policy::limits::PriceTable::new();
    for (model, price) in prices {
        match policy::limits::ModelPrice::parse(&price.input, price.cached_input.as_deref(), &price.output) {
            Ok(p) => table.insert(model, p),
            Err(error) => issue(format!("prices.{model}"), format!("{error:?}: prices are decimal USD per million tokens, e.g. \"2.50\"")),
        }
    }
    table
}

/// Rate limits and budgets, grouped by scope; with budgets, every chat model needs a price.
pub(super) fn validate_quota(
    rate_limits: Vec<RawRateLimit>,
    budgets: Vec<RawBudget>,
    table: policy::limits::PriceTable,
    raw: RawQuota,
    models: &BTreeMap<String, ModelRoute>,
    issue: &mut impl FnMut(String, String),
) -> Quota {
    use policy::limits::{FailureMode, LimitSpec, Metric, Nanos, Window};
    let mut groups: Vec<LimitGroup> = Vec::new();
    let mut add = |scope: policy::limits::Scope, spec: LimitSpec, mode: FailureMode, webhook: Option<String>, path: &str, issue: &mut dyn FnMut(String, String)| {
        let index = match groups.iter().position(|g| g.scope == scope) {
            Some(i) => i,
            None => {
                groups.push(LimitGroup { scope, specs: Vec::new(), on_store_error: mode, webhooks: Vec::new() });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        if group.specs.iter().any(|s| s.key() == spec.key()) {
            issue(path.to_string(), "another limit of this scope already counts this metric over this window".into());
            return;
        }
        if mode == FailureMode::Closed {
            group.on_store_error = FailureMode::Closed;
        }
        if let Some(url) = webhook {
            if !group.webhooks.contains(&url) {
                group.webhooks.push(url);
            }
        }
        group.specs.push(spec);
    };
    let window = |name: &str, path: String, issue: &mut dyn FnMut(String, String)| {
        Window::from_name(name).or_else(|| {
            issue(path, format!("must be minute, hour, day or month, got '{name}'"));
            None
        })
    };
    for (i, limit) in rate_limits.into_iter().enumerate() {
        let path = format!("rate_limits[{i}]");
        let scope = parse_scope(&limit.scope, &format!("{path}.scope"), issue);
        let metric = Metric::from_name(&limit.metric).filter(|m| *m != Metric::Cost);
        if metric.is_none() {
            issue(format!("{path}.metric"), format!("must be requests, input_tokens, output_tokens or total_tokens, got '{}' (money limits are budgets)", limit.metric));
        }
        let window = window(&limit.window, format!("{path}.window"), issue);
        if limit.limit == 0 {
            issue(format!("{path}.limit"), "must be at least 1".into());
        }
        let mode = failure_mode(limit.on_store_error.as_deref(), &format!("{path}.on_store_error"), issue);
        if let (Some(scope), Some(metric), Some(window)) = (scope, metric, window) {
            add(scope, LimitSpec::new(metric, window, limit.limit), mode, None, &path, issue);
        }
    }
    let has_budgets = !budgets.is_empty();
    let mut named: Vec<Budget> = Vec::new();
    for (i, budget) in budgets.into_iter().enumerate() {
        let path = format!("budgets[{i}]");
        let name = budget.name.clone().unwrap_or_else(|| format!("{}:{}", budget.scope.join("+"), budget.window));
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            issue(format!("{path}.name"), "must be 1 to 64 characters without control characters".into());
        }
        let scope = parse_scope(&budget.scope, &format!("{path}.scope"), issue);
        let window = window(&budget.window, format!("{path}.window"), issue);
        let amount = match budget.usd.parse::<Nanos>() {
            Ok(n) if n.0 > 0 => Some(n),
            _ => {
                issue(format!("{path}.usd"), format!("must be a positive decimal amount such as \"100.00\", got '{}'", budget.usd));
                None
            }
        };
        if budget.alerts.iter().any(|p| *p == 0 || *p > 1000) {
            issue(format!("{path}.alerts"), "alert thresholds are percents between 1 and 1000".into());
        }
        if let Some(url) = &budget.webhook_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                issue(format!("{path}.webhook_url"), format!("must be an http(s) URL, got '{url}'"));
            }
        }
        let mode = failure_mode(budget.on_store_error.as_deref(), &format!("{path}.on_store_error"), issue);
        if let (Some(scope), Some(window), Some(amount)) = (scope, window, amount) {
            if named.iter().any(|b| b.name == name) {
                issue(format!("{path}.name"), format!("another budget is already named '{name}'"));
            }
            named.push(Budget { name, scope: scope.clone(), window, limit: amount });
            let mut spec = LimitSpec::budget(window, amount).with_alerts(budget.alerts);
            if !budget.hard {
                spec = spec.soft();
            }
            add(scope, spec, mode, budget.webhook_url, &path, issue);
        }
    }
    if has_budgets {
        for (name, route) in models.iter().filter(|(_, r)| r.kind == ModelKind::Chat) {
            if table.get(name).is_none() && table.get(&route.upstream_model).is_none() {
                issue(format!("prices.{name}"), "budgets are configured, so every chat model needs a price".into());
            }
        }
    }
    let default_max_output_tokens = raw.default_max_output_tokens.unwrap_or(4096);
    if default_max_output_tokens == 0 || default_max_output_tokens > 1_000_000 {
        issue("quota.default_max_output_tokens".into(), "must be between 1 and 1000000".into());
    }
    let store_timeout_ms = raw.store_timeout_ms.unwrap_or(2_000);
    if store_timeout_ms == 0 || store_timeout_ms > 30_000 {
        issue("quota.store_timeout_ms".into(), "must be between 1 and 30000".into());
    }
    if raw.webhook_secret.as_deref().is_some_and(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        issue("quota.webhook_secret".into(), "must be the NAME of a secret (letters, digits, '_'), not the key itself".into());
    }
    Quota { groups, prices: table, default_max_output_tokens, store_timeout_ms, webhook_secret: raw.webhook_secret, budgets: named }
}
