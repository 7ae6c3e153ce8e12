//! The `alerts` section: rules over the usage rollups, budgets and route health, evaluated in
//! the background (the Workers cron, `POST /admin/alerts/evaluate`), delivered to one signed
//! webhook (docs/observability.md, "Alerts").

use serde::Deserialize;

use super::issues::{check_no_control, valid_name};
use super::quota::Budget;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    webhook: RawWebhook,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    /// The NAME of the secret holding the HMAC key.
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    consumer: Option<String>,
    model: Option<String>,
    provider: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    kind: String,
    threshold: f64,
    #[serde(default)]
    window_minutes: Option<u64>,
    #[serde(default)]
    min_requests: Option<u64>,
    /// For the budget kinds: one budget by name (default: every budget).
    #[serde(default)]
    budget: Option<String>,
    #[serde(default)]
    filters: RawFilters,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Percent of a budget's limit spent in its current period.
    BudgetSpend,
    /// The budget's forecast reaches its limit within `threshold` days.
    BudgetForecast,
    /// Percent of requests that failed in the window (with at least `min_requests`).
    ErrorRate,
    /// p95 time to the response head in the window, in ms.
    LatencyP95,
    /// Requests refused by a guard in the window.
    GuardBlocks,
    /// Requests refused by a rate limit or budget in the window.
    LimitRejections,
    /// Routing targets whose circuit breaker is open now.
    CircuitOpen,
}

impl AlertKind {
    pub const ALL: [AlertKind; 7] =
        [AlertKind::BudgetSpend, AlertKind::BudgetForecast, AlertKind::ErrorRate, AlertKind::LatencyP95, AlertKind::GuardBlocks, AlertKind::LimitRejections, AlertKind::CircuitOpen];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::BudgetSpend => "budget_spend",
            AlertKind::BudgetForecast => "budget_forecast",
            AlertKind::ErrorRate => "error_rate",
            AlertKind::LatencyP95 => "latency_p95",
            AlertKind::GuardBlocks => "guard_blocks",
            AlertKind::LimitRejections => "limit_rejections",
            AlertKind::CircuitOpen => "circuit_open",
        }
    }

    /// Counted over `window_minutes` of the rollups (the others look at a budget's period or at now).
    pub fn windowed(self) -> bool {
        matches!(self, AlertKind::ErrorRate | AlertKind::LatencyP95 | AlertKind::GuardBlocks | AlertKind::LimitRejections)
    }
}

/// The webhook's body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    Json,
    Slack,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertWebhook {
    pub url: String,
    pub secret: Option<String>,
    pub format: AlertFormat,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilters {
    pub consumer: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub kind: AlertKind,
    /// Fires at or above it: percent (budget_spend, error_rate), days (budget_forecast), ms
    /// (latency_p95), a count (guard_blocks, limit_rejections, circuit_open).
    pub threshold: f64,
    /// Whole hours (the rollups are hourly), aligned to the epoch: a window's alert fires once.
    pub window_minutes: u64,
    pub min_requests: u64,
    pub budget: Option<String>,
    pub filters: AlertFilters,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    pub webhook: AlertWebhook,
    pub rules: Vec<AlertRule>,
}

pub(super) fn validate_alerts(raw: RawAlerts, budgets: &[Budget], issue: &mut impl FnMut(String, String)) -> Alerts {
    let url = raw.webhook.url;
    check_no_control(&url, || "alerts.webhook.url".into(), issue);
    if !url.starts_with("https://") && !url.starts_with("http://") {
        issue("alerts.webhook.url".into(), format!("must be an http(s) URL, got '{url}'"));
    }
    if raw.webhook.secret.as_deref().is_some_and(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        issue("alerts.webhook.secret".into(), "must be the NAME of a secret (letters, digits, '_'), not the key itself".into());
    }
    let format = match raw.webhook.format.as_deref() {
        None | Some("json") => AlertFormat::Json,
        Some("slack") => AlertFormat::Slack,
        Some(other) => {
            issue("alerts.webhook.format".into(), format!("must be json or slack, got '{other}'"));
            AlertFormat::Json
        }
    };
    let mut rules: Vec<AlertRule> = Vec::new();
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let path = format!("alerts.rules[{i}]");
        if !valid_name(&rule.name) || rule.name.len() > 64 {
            issue(format!("{path}.name"), "must be 1 to 64 letters, digits, '-', '_' or '.'".into());
        } else if rules.iter().any(|r| r.name == rule.name) {
            issue(format!("{path}.name"), format!("another rule is already named '{}'", rule.name));
        }
        let Some(kind) = AlertKind::ALL.into_iter().find(|k| k.name() == rule.kind) else {
            let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.name()).collect();
            issue(format!("{path}.kind"), format!("must be one of {}, got '{}'", names.join(", "), rule.kind));
            continue;
        };
        if !rule.threshold.is_finite() || rule.threshold <= 0.0 {
            issue(format!("{path}.threshold"), "must be a positive number".into());
        }
        let window_minutes = rule.window_minutes.unwrap_or(60);
        if kind.windowed() && (window_minutes == 0 || window_minutes % 60 != 0 || window_minutes > 7 * 24 * 60) {
            issue(format!("{path}.window_minutes"), format!("must be whole hours (60, 120, ...) up to a week: the rollups are hourly, got {window_minutes}"));
        }
        if rule.window_minutes.is_some() && !kind.windowed() {
            issue(format!("{path}.window_minutes"), format!("a {} rule has no window", kind.name()));
        }
        let budget_kind = matches!(kind, AlertKind::BudgetSpend | AlertKind::BudgetForecast);
        match (&rule.budget, budget_kind) {
            (Some(name), true) if !budgets.iter().any(|b| &b.name == name) => issue(format!("{path}.budget"), format!("no budget is named '{name}'")),
            (Some(_), false) => issue(format!("{path}.budget"), format!("a {} rule is not about a budget", kind.name())),
            (None, true) if budgets.is_empty() => issue(format!("{path}.kind"), "no budgets are configured".into()),
            _ => {}
        }
        let f = rule.filters;
        for (field, value) in [("consumer", &f.consumer), ("model", &f.model), ("provider", &f.provider)] {
            if let Some(v) = value {
                check_no_control(v, || format!("{path}.filters.{field}"), issue);
            }
        }
        rules.push(AlertRule {
            name: rule.name,
            kind,
            threshold: rule.threshold,
            window_minutes,
            min_requests: rule.min_requests.unwrap_or(1),
            budget: rule.budget,
            filters: AlertFilters { consumer: f.consumer, model: f.model, provider: f.provider },
        });
    }
    Alerts { webhook: AlertWebhook { url, secret: raw.webhook.secret, format }, rules }
}
