//! Alerts: the `alerts` rules evaluated in the background (the Workers cron trigger,
//! `POST /admin/alerts/evaluate` from an external scheduler on Spin) over the usage rollups, the
//! budgets' forecasts and the route health, and delivered to one signed webhook.
//!
//! [`evaluate`] is pure: rules, rows, forecasts and open circuits in, each rule's value and its
//! firings out, each firing with a dedup key (rule, window start, subject). [`run`] reads the
//! inputs from the host, claims each firing in the key-value store *before* sending it (so a
//! second evaluation of the same window finds the claim and sends nothing: at most once per rule
//! and window, a delivery that fails after its retries is not retried by a later evaluation), POSTs
//! it with bounded retries ([`backoff_ms`]) and stores each rule's last state for
//! `GET /admin/alerts`.

use serde_json::{json, Value};

use policy::stats::{format_rfc3339, Metrics, Row, HOUR_MS};

use crate::config::{AlertFilters, AlertFormat, AlertKind, AlertRule, AlertWebhook, Config};
use crate::host::{with_timeout, FetchError, Host, HostError, OutboundRequest};
use crate::http::webhook_signature;
use crate::isolate::IsolateState;
use crate::rollups::BudgetForecast;

/// Tries per webhook delivery (the first and two retries).
pub const DELIVERY_TRIES: u32 = 3;
/// Longest wait for one delivery attempt.
pub const DELIVERY_TIMEOUT_MS: u64 = 5_000;
/// How long a claim ("fired rule X for window W") is remembered: longer than any window.
const CLAIM_RETENTION_MS: u64 = 8 * 86_400_000;

/// The key-value key of a rule's claims, and of its last state.
fn claims_key(rule: &str) -> String {
    format!("alerts:fired:{rule}")
}

fn state_key(rule: &str) -> String {
    format!("alerts:state:{rule}")
}

/// One rule's alert for one window (and subject, for the budget kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: String,
    pub kind: AlertKind,
    pub value: f64,
    pub threshold: f64,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// The budget subject (`consumer:web`) for budget rules.
    pub subject: Option<String>,
    pub details: Value,
}

impl Firing {
    /// What makes two firings the same alert: rule, window start and subject.
    pub fn dedup_key(&self) -> String {
        match &self.subject {
            Some(subject) => format!("{}|{}", self.window_start_ms, subject),
            None => self.window_start_ms.to_string(),
        }
    }

    /// A one-line summary (Slack's text, the JSON's `alert`).
    pub fn summary(&self) -> String {
        let (value, unit) = match self.kind {
            AlertKind::BudgetSpend | AlertKind::ErrorRate => (format!("{:.1}", self.value), " %"),
            AlertKind::BudgetForecast => (format!("{:.1}", self.value), " days to the limit"),
            AlertKind::LatencyP95 => (format!("{:.0}", self.value), " ms"),
            _ => (format!("{}", self.value), ""),
        };
        let subject = self.subject.as_deref().map(|s| format!(" for {s}")).unwrap_or_default();
        format!("Alert {} ({}){subject}: {value}{unit} (threshold {})", self.rule, self.kind.name(), self.threshold)
    }

    /// The webhook body in `format`, fired at `fired_at_ms`.
    pub fn payload(&self, format: AlertFormat, fired_at_ms: u64) -> Value {
        let window = (format_rfc3339(self.window_start_ms / 1000), format_rfc3339(self.window_end_ms / 1000));
        match format {
            AlertFormat::Json => json!({
                "alert": self.summary(),
                "rule": self.rule,
                "kind": self.kind.name(),
                "value": self.value,
                "threshold": self.threshold,
                "window_start": window.0,
                "window_end": window.1,
                "fired_at": format_rfc3339(fired_at_ms / 1000),
                "details": self.details,
            }),
            AlertFormat::Slack => json!({
                "text": self.summary(),
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", self.summary()) } },
                    { "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("rule `{}` · window {} to {} · fired {}", self.rule, window.0, window.1, format_rfc3339(fired_at_ms / 1000)) }] }
                ]
            }),
        }
    }
}

/// One rule's evaluation: its current value (the highest over subjects, if any) and firings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    pub rule: String,
    pub kind: AlertKind,
    pub value: Option<f64>,
    pub firings: Vec<Firing>,
}

/// A routing target whose circuit is open now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCircuit {
    pub model: String,
    pub target: String,
    pub provider: String,
}

/// The window of `window_minutes` (aligned to the epoch) that contains `now_ms`.
pub fn window_of(window_minutes: u64, now_ms: u64) -> (u64, u64) {
    let len = window_minutes.max(1) * 60_000;
    let start = now_ms - now_ms % len;
    (start, start + len)
}

fn matches(filters: &AlertFilters, row: &Row) -> bool {
    let ok = |want: &Option<String>, have: &Option<String>| want.as_ref().is_none_or(|w| have.as_ref() == Some(w));
    ok(&filters.consumer, &row.dims.consumer) && ok(&filters.model, &row.dims.model) && ok(&filters.provider, &row.dims.provider)
}

/// Every rule's value and firings at `now_ms`. `rows` must cover the rules' windows; `forecasts`
/// are the budgets' (see `rollups::forecast_budgets`); `open` the targets with an open circuit.
pub fn evaluate(rules: &[AlertRule], rows: &[Row], forecasts: &[BudgetForecast], open: &[OpenCircuit], now_ms: u64) -> Vec<RuleResult> {
    rules.iter().map(|rule| evaluate_rule(rule, rows, forecasts, open, now_ms)).collect()
}

fn evaluate_rule(rule: &AlertRule, rows: &[Row], forecasts: &[BudgetForecast], open: &[OpenCircuit], now_ms: u64) -> RuleResult {
    let firing = |value: f64, (start, end): (u64, u64), subject: Option<String>, details: Value| Firing {
        rule: rule.name.clone(),
        kind: rule.kind,
        value,
        threshold: rule.threshold,
        window_start_ms: start,
        window_end_ms: end,
        subject,
        details,
    };
    let mut result = RuleResult { rule: rule.name.clone(), kind: rule.kind, value: None, firings: Vec::new() };
    match rule.kind {
        AlertKind::ErrorRate | AlertKind::LatencyP95 | AlertKind::GuardBlocks | AlertKind::LimitRejections => {
            let window = window_of(rule.window_minutes, now_ms);
            let hours = window.0 / HOUR_MS..window.1.div_ceil(HOUR_MS);
            let mut m = Metrics::default();
            for row in rows.iter().filter(|r| hours.contains(&r.hour) && matches(&rule.filters, r)) {
                m.merge(&row.metrics);
            }
            let enough = m.requests >= rule.min_requests;
            let value = match rule.kind {
                AlertKind::ErrorRate => enough.then(|| 100.0 * m.errors as f64 / m.requests.max(1) as f64),
                AlertKind::LatencyP95 => m.latency_ms.quantile(0.95).filter(|_| enough),
                AlertKind::GuardBlocks => Some(m.guard_blocks as f64),
                _ => Some(m.limit_rejections as f64),
            };
            result.value = value;
            if let Some(v) = value.filter(|v| *v >= rule.threshold) {
                let details = json!({ "requests": m.requests, "errors": m.errors, "guard_blocks": m.guard_blocks, "limit_rejections": m.limit_rejections, "filters": filters_json(&rule.filters) });
                result.firings.push(firing(v, window, None, details));
            }
        }
        AlertKind::BudgetSpend | AlertKind::BudgetForecast => {
            let consumer_subject = rule.filters.consumer.as_ref().map(|c| format!("consumer:{c}"));
            for f in forecasts.iter().filter(|f| rule.budget.as_ref().is_none_or(|b| *b == f.budget)) {
                if consumer_subject.as_ref().is_some_and(|c| !f.subject.split('|').any(|part| part == c)) {
                    continue;
                }
                let p = &f.forecast;
                let value = match rule.kind {
                    AlertKind::BudgetSpend => 100.0 * p.spent / f.limit_usd,
                    // Days until the forecast reaches the limit (none: never this period).
                    _ => match p.exceeds_at_ms {
                        Some(at) => at.saturating_sub(now_ms) as f64 / 86_400_000.0,
                        None => continue,
                    },
                };
                let fires = match rule.kind {
                    AlertKind::BudgetSpend => value >= rule.threshold,
                    _ => value <= rule.threshold,
                };
                result.value = Some(match (result.kind, result.value) {
                    (AlertKind::BudgetSpend, Some(v)) => v.max(value),
                    (_, Some(v)) => v.min(value),
                    (_, None) => value,
                });
                if fires {
                    let details = json!({
                        "budget": f.budget, "subject": f.subject, "spent_usd": p.spent, "limit_usd": f.limit_usd,
                        "forecast_usd": p.expected, "exceeds_at": p.exceeds_at_ms.map(|ms| format_rfc3339(ms / 1000)), "model": p.model.name(),
                    });
                    result.firings.push(firing(value, (f.period_start_ms, f.period_end_ms), Some(f.subject.clone()), details));
                }
            }
        }
        AlertKind::CircuitOpen => {
            let open: Vec<&OpenCircuit> = open
                .iter()
                .filter(|c| rule.filters.provider.as_ref().is_none_or(|p| *p == c.provider) && rule.filters.model.as_ref().is_none_or(|m| *m == c.model))
                .collect();
            let value = open.len() as f64;
            result.value = Some(value);
            if value >= rule.threshold {
                let targets: Vec<Value> = open.iter().map(|c| json!({ "model": c.model, "target": c.target, "provider": c.provider })).collect();
                // Re-announced at most once an hour while it stays open.
                result.firings.push(firing(value, window_of(60, now_ms), None, json!({ "open": targets })));
            }
        }
    }
    result
}

fn filters_json(f: &AlertFilters) -> Value {
    json!({ "consumer": f.consumer, "model": f.model, "provider": f.provider })
}

/// The retry schedule of a delivery: a uniform wait under 1 s, then under 2 s (capped at 4 s), so the
/// three tries fit well inside a scheduled run; the same function as upstream retries.
pub const DELIVERY_BACKOFF: policy::route::Backoff = policy::route::Backoff { base_ms: 1_000, max_ms: 4_000 };

/// The wait after try `attempt` (from 1) failed.
pub fn backoff_ms(attempt: u32, random: u64) -> u64 {
    policy::route::delay_ms(attempt - 1, &DELIVERY_BACKOFF, None, random)
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx (or 3xx) on try `tries`.
    Delivered { status: u16, tries: u32 },
    /// It answered 4xx: not retried (the request will not get better).
    Refused { status: u16, tries: u32 },
    /// 5xx, timeouts or connection errors on every try.
    Failed { last: String, tries: u32 },
    /// Another evaluation already claimed this rule and window: nothing sent.
    Duplicate,
    /// The claim could not be stored: nothing sent (at most once).
    Unclaimed,
}

impl Delivery {
    pub fn to_json(&self) -> Value {
        match self {
            Delivery::Delivered { status, tries } => json!({ "status": "delivered", "http_status": status, "tries": tries }),
            Delivery::Refused { status, tries } => json!({ "status": "refused", "http_status": status, "tries": tries }),
            Delivery::Failed { last, tries } => json!({ "status": "failed", "error": last, "tries": tries }),
            Delivery::Duplicate => json!({ "status": "duplicate" }),
            Delivery::Unclaimed => json!({ "status": "unclaimed" }),
        }
    }
}

/// POST `firing` to the webhook, signed like the budget webhooks, with up to
/// [`DELIVERY_TRIES`] tries on 5xx, timeouts and connection errors.
pub async fn deliver<H: Host>(host: &H, webhook: &AlertWebhook, firing: &Firing) -> Delivery {
    let body = firing.payload(webhook.format, host.now_ms()).to_string();
    let secret = webhook.secret.as_deref().and_then(|name| host.secret(name)).filter(|s| !s.is_empty());
    let mut last = String::new();
    for attempt in 1..=DELIVERY_TRIES {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(secret) = &secret {
            // Signed per try: the timestamp is the send time, so a receiver's replay window holds.
            headers.push(("x-gateway-signature".into(), webhook_signature(secret.as_bytes(), host.now_ms() / 1000, &body)));
        }
        let request = OutboundRequest { method: "POST", url: webhook.url.clone(), headers, body: body.clone().into_bytes() };
        match with_timeout(host, DELIVERY_TIMEOUT_MS, host.fetch(request)).await {
            Some(Ok(response)) if response.status < 400 => return Delivery::Delivered { status: response.status, tries: attempt },
            Some(Ok(response)) if response.status < 500 => return Delivery::Refused { status: response.status, tries: attempt },
            Some(Ok(response)) => last = format!("http {}", response.status),
            Some(Err(FetchError::Connect(_))) => last = "connect error".into(),
            Some(Err(FetchError::InvalidRequest(_))) => return Delivery::Failed { last: "invalid request".into(), tries: attempt },
            None => last = "timeout".into(),
        }
        if attempt < DELIVERY_TRIES {
            host.sleep(backoff_ms(attempt, host.random_u64())).await;
        }
    }
    Delivery::Failed { last, tries: DELIVERY_TRIES }
}

/// Claim `firing` for this evaluation: false when it was claimed before (or the claim could not
/// be stored). The claims of a rule live in one key, pruned to [`CLAIM_RETENTION_MS`].
async fn claim<H: Host>(host: &H, firing: &Firing, now_ms: u64) -> Result<bool, HostError> {
    let key = claims_key(&firing.rule);
    let mut claims: serde_json::Map<String, Value> =
        host.kv_get(&key).await?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let dedup = firing.dedup_key();
    if claims.contains_key(&dedup) {
        return Ok(false);
    }
    claims.retain(|_, at| at.as_u64().is_some_and(|at| now_ms.saturating_sub(at) < CLAIM_RETENTION_MS));
    claims.insert(dedup, now_ms.into());
    host.kv_put(&key, &Value::Object(claims).to_string()).await?;
    Ok(true)
}

/// The currently open circuits of every routed model, in this isolate's view merged with the
/// shared one.
async fn open_circuits<H: Host>(state: &IsolateState, config: &Config, host: &H, now_ms: u64) -> Vec<OpenCircuit> {
    state.health.load_shared(host, now_ms).await;
    let view = state.health.view();
    let mut open = Vec::new();
    for (model, spec) in &config.routes {
        for target in &spec.targets {
            let circuit = view.get(&target.id).map(|h| h.circuit(&spec.circuit_breaker, now_ms));
            if matches!(circuit, Some(policy::route::Circuit::Open { .. })) {
                open.push(OpenCircuit { model: model.clone(), target: target.id.clone(), provider: target.provider.clone() });
            }
        }
    }
    open
}

/// Why an evaluation could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluateError {
    NotConfigured,
    /// The rollups could not be read.
    Store,
}

/// Evaluate every rule now, deliver what fires (claimed first), store each rule's last state,
/// and return a report (what `POST /admin/alerts/evaluate` answers).
pub async fn run<H: Host>(state: &IsolateState, config: &Config, host: &H) -> Result<Value, EvaluateError> {
    let Some(alerts) = &config.alerts else { return Err(EvaluateError::NotConfigured) };
    let now = host.now_ms();
    let rows = crate::rollups::forecast_rows(host, config, now).await.map_err(|_| EvaluateError::Store)?;
    let forecasts = if alerts.rules.iter().any(|r| matches!(r.kind, AlertKind::BudgetSpend | AlertKind::BudgetForecast)) {
        crate::rollups::forecast_budgets(config, &rows, now, None)
    } else {
        Vec::new()
    };
    let open = if alerts.rules.iter().any(|r| r.kind == AlertKind::CircuitOpen) { open_circuits(state, config, host, now).await } else { Vec::new() };
    let mut report = Vec::new();
    for result in evaluate(&alerts.rules, &rows, &forecasts, &open, now) {
        let mut sent = Vec::new();
        for firing in &result.firings {
            let delivery = match claim(host, firing, now).await {
                Ok(true) => deliver(host, &alerts.webhook, firing).await,
                Ok(false) => Delivery::Duplicate,
                Err(_) => Delivery::Unclaimed,
            };
            sent.push(json!({
                "window_start": format_rfc3339(firing.window_start_ms / 1000),
                "subject": firing.subject,
                "value": firing.value,
                "delivery": delivery.to_json(),
            }));
        }
        let previous: Value = host.kv_get(&state_key(&result.rule)).await.ok().flatten().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
        let fired_now = sent.iter().any(|s| s["delivery"]["status"] != "duplicate");
        let entry = json!({
            "rule": result.rule,
            "kind": result.kind.name(),
            "value": result.value,
            "firing": !result.firings.is_empty(),
            "evaluated_at": format_rfc3339(now / 1000),
            "last_fired_at": if fired_now { Value::from(format_rfc3339(now / 1000)) } else { previous["last_fired_at"].clone() },
            "last_deliveries": if fired_now { Value::from(sent.clone()) } else { previous["last_deliveries"].clone() },
        });
        // A lost state write only makes `GET /admin/alerts` older; the claim is what dedups.
        let _ = host.kv_put(&state_key(&result.rule), &entry.to_string()).await;
        let mut item = entry;
        item["firings"] = sent.into();
        report.push(item);
    }
    Ok(json!({ "evaluated_at": format_rfc3339(now / 1000), "rules": report }))
}

/// Every rule with its last stored state (`GET /admin/alerts`).
pub async fn list<H: Host>(config: &Config, host: &H) -> Result<Value, HostError> {
    let Some(alerts) = &config.alerts else { return Ok(json!({ "rules": [] })) };
    let mut rules = Vec::new();
    for rule in &alerts.rules {
        let state: Value = host.kv_get(&state_key(&rule.name)).await?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
        rules.push(json!({
            "name": rule.name,
            "kind": rule.kind.name(),
            "threshold": rule.threshold,
            "window_minutes": rule.kind.windowed().then_some(rule.window_minutes),
            "budget": rule.budget,
            "filters": filters_json(&rule.filters),
            "state": state,
        }));
    }
    Ok(json!({ "rules": rules, "webhook": { "format": match alerts.webhook.format { AlertFormat::Json => "json", AlertFormat::Slack => "slack" }, "signed": alerts.webhook.secret.is_some() } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::stats::forecast::{Model, PeriodForecast};
    use policy::stats::EventFacts;

    const H: u64 = HOUR_MS;
    /// 2026-12-05T10:20:00Z.
    const NOW: u64 = 1_796_428_800_000 + 10 * H + 20 * 60_000;

    fn rule(kind: AlertKind, threshold: f64) -> AlertRule {
        AlertRule { name: "r".into(), kind, threshold, window_minutes: 60, min_requests: 1, budget: None, filters: AlertFilters::default() }
    }

    fn request(at_ms: u64, consumer: &str, error: Option<&'static str>, latency_ms: u64, guard_blocked: bool) -> Row {
        Row::from_event(&EventFacts {
            at_ms,
            consumer: Some(consumer),
            model: Some("gpt"),
            provider: Some("up"),
            outcome: if error.is_some() { "failed" } else { "completed" },
            error,
            latency_ms,
            guard_blocked,
            ..EventFacts::default()
        })
    }

    fn value(rule: &AlertRule, rows: &[Row]) -> (Option<f64>, bool) {
        let r = evaluate(std::slice::from_ref(rule), rows, &[], &[], NOW).remove(0);
        (r.value, !r.firings.is_empty())
    }

    #[test]
    fn each_windowed_kind_fires_at_its_threshold_and_not_below() {
        // This hour: 4 requests, one failed, one refused by a limit, one blocked by a guard.
        let mut rows = vec![
            request(NOW - 60_000, "a", Some("upstream_error"), 100, false),
            request(NOW - 60_000, "a", Some("rate_limit_exceeded"), 200, false),
            request(NOW - 60_000, "b", None, 300, true),
            request(NOW - 60_000, "b", None, 400, false),
        ];
        // The previous hour is another window and does not count.
        rows.push(request(NOW - H, "a", Some("upstream_error"), 9_000, true));
        let rows = policy::stats::merge_rows(rows);
        assert_eq!(value(&rule(AlertKind::ErrorRate, 50.0), &rows), (Some(50.0), true), "2 of 4 failed");
        assert!(!value(&rule(AlertKind::ErrorRate, 50.1), &rows).1);
        assert_eq!(value(&rule(AlertKind::LimitRejections, 1.0), &rows), (Some(1.0), true));
        assert!(!value(&rule(AlertKind::LimitRejections, 2.0), &rows).1);
        assert_eq!(value(&rule(AlertKind::GuardBlocks, 1.0), &rows), (Some(1.0), true));
        assert!(!value(&rule(AlertKind::GuardBlocks, 2.0), &rows).1);
        let p95 = value(&rule(AlertKind::LatencyP95, 1.0), &rows).0.unwrap();
        assert!((p95 - 300.0).abs() <= 3.0, "{p95}");
        assert!(value(&rule(AlertKind::LatencyP95, p95), &rows).1);
        assert!(!value(&rule(AlertKind::LatencyP95, p95 + 0.001), &rows).1);
        // Too few requests: no value, no alert.
        let few = AlertRule { min_requests: 5, ..rule(AlertKind::ErrorRate, 1.0) };
        assert_eq!(value(&few, &rows), (None, false));
        // Filters narrow the rows: consumer b has no errors.
        let b = AlertRule { filters: AlertFilters { consumer: Some("b".into()), ..AlertFilters::default() }, ..rule(AlertKind::ErrorRate, 1.0) };
        assert_eq!(value(&b, &rows), (Some(0.0), false));
        // A two-hour window (aligned: 10:00 to 12:00) leaves 09:xx out, a three-hour one (09:00 to 12:00) takes it in.
        let two = AlertRule { window_minutes: 120, ..rule(AlertKind::GuardBlocks, 2.0) };
        assert!(!value(&two, &rows).1);
        let three = AlertRule { window_minutes: 180, ..rule(AlertKind::GuardBlocks, 2.0) };
        assert!(value(&three, &rows).1);
    }

    #[test]
    fn the_window_and_dedup_key_are_stable_within_a_window_and_change_with_it() {
        let rows = vec![request(NOW, "a", None, 1, true)];
        let first = evaluate(&[rule(AlertKind::GuardBlocks, 1.0)], &rows, &[], &[], NOW).remove(0).firings.remove(0);
        assert_eq!((first.window_start_ms, first.window_end_ms), (NOW - 20 * 60_000, NOW + 40 * 60_000));
        let later = evaluate(&[rule(AlertKind::GuardBlocks, 1.0)], &rows, &[], &[], NOW + 30 * 60_000).remove(0).firings.remove(0);
        assert_eq!(first.dedup_key(), later.dedup_key());
        let next_rows = vec![request(NOW + H, "a", None, 1, true)];
        let next = evaluate(&[rule(AlertKind::GuardBlocks, 1.0)], &next_rows, &[], &[], NOW + H).remove(0).firings.remove(0);
        assert_ne!(first.dedup_key(), next.dedup_key());
    }

    fn budget(subject: &str, spent: f64, exceeds_at_ms: Option<u64>) -> BudgetForecast {
        BudgetForecast {
            budget: "monthly".into(),
            subject: subject.into(),
            period_start_ms: 1_796_083_200_000,
            period_end_ms: 1_798_761_600_000,
            limit_usd: 10.0,
            forecast: PeriodForecast { model: Model::Profile, fallback: false, spent, expected: spent * 2.0, low: spent, high: spent * 3.0, exceeds_at_ms },
            consumers: Vec::new(),
        }
    }

    #[test]
    fn budget_rules_fire_per_subject_at_their_thresholds() {
        let forecasts = [budget("consumer:a", 8.0, Some(NOW + 2 * 86_400_000)), budget("consumer:b", 7.99, None)];
        let spend = evaluate(&[rule(AlertKind::BudgetSpend, 80.0)], &[], &forecasts, &[], NOW).remove(0);
        assert_eq!(spend.value, Some(80.0));
        assert_eq!(spend.firings.iter().map(|f| f.subject.as_deref()).collect::<Vec<_>>(), [Some("consumer:a")]);
        assert_eq!(spend.firings[0].window_start_ms, 1_796_083_200_000, "the window is the budget's period");
        assert!(spend.firings[0].dedup_key().ends_with("|consumer:a"));
        let in_two_days = evaluate(&[rule(AlertKind::BudgetForecast, 2.0)], &[], &forecasts, &[], NOW).remove(0);
        assert_eq!((in_two_days.value, in_two_days.firings.len()), (Some(2.0), 1), "crossing in exactly 2 days fires a 2-day rule");
        assert!(evaluate(&[rule(AlertKind::BudgetForecast, 1.99)], &[], &forecasts, &[], NOW)[0].firings.is_empty());
        let only_b = AlertRule { filters: AlertFilters { consumer: Some("b".into()), ..AlertFilters::default() }, ..rule(AlertKind::BudgetSpend, 1.0) };
        assert_eq!(evaluate(&[only_b], &[], &forecasts, &[], NOW)[0].firings[0].subject.as_deref(), Some("consumer:b"));
        let other_budget = AlertRule { budget: Some("daily".into()), ..rule(AlertKind::BudgetSpend, 1.0) };
        assert!(evaluate(&[other_budget], &[], &forecasts, &[], NOW)[0].firings.is_empty());
    }

    #[test]
    fn circuit_open_counts_open_targets_by_provider() {
        let open = [
            OpenCircuit { model: "chat".into(), target: "a".into(), provider: "openai".into() },
            OpenCircuit { model: "chat".into(), target: "b".into(), provider: "anthropic".into() },
        ];
        assert_eq!(evaluate(&[rule(AlertKind::CircuitOpen, 2.0)], &[], &[], &open, NOW)[0].firings.len(), 1);
        assert!(evaluate(&[rule(AlertKind::CircuitOpen, 3.0)], &[], &[], &open, NOW)[0].firings.is_empty());
        let openai = AlertRule { filters: AlertFilters { provider: Some("openai".into()), ..AlertFilters::default() }, ..rule(AlertKind::CircuitOpen, 1.0) };
        let r = evaluate(&[openai], &[], &[], &[], NOW).remove(0);
        assert_eq!((r.value, r.firings.len()), (Some(0.0), 0));
    }

    #[test]
    fn the_backoff_is_bounded_jittered_and_grows() {
        for random in [0, 1, 7, 999, u64::MAX] {
            assert!(backoff_ms(1, random) <= 1_000);
            assert!(backoff_ms(2, random) <= 2_000);
            assert!(backoff_ms(9, random) <= 4_000, "capped");
        }
        let draws: Vec<u64> = (0..500).map(|r| backoff_ms(2, r)).collect();
        assert!(draws.iter().max().unwrap() > &1_500 && draws.iter().min().unwrap() < &250, "full jitter uses the range");
        // The worst case of every retry fits well inside a 30 s scheduled run with the timeouts.
        let worst: u64 = (1..DELIVERY_TRIES).map(|a| (1_000u64 << (a - 1)).min(DELIVERY_BACKOFF.max_ms)).sum();
        assert!(worst + DELIVERY_TIMEOUT_MS * u64::from(DELIVERY_TRIES) < 30_000);
    }

    #[test]
    fn payloads_in_json_and_slack_shape() {
        let rows = vec![request(NOW, "a", None, 1, true)];
        let f = evaluate(&[rule(AlertKind::GuardBlocks, 1.0)], &rows, &[], &[], NOW).remove(0).firings.remove(0);
        let j = f.payload(AlertFormat::Json, NOW);
        for field in ["alert", "rule", "kind", "value", "threshold", "window_start", "window_end", "fired_at", "details"] {
            assert!(j.get(field).is_some(), "{field} missing from {j}");
        }
        assert_eq!((j["kind"].as_str(), j["window_start"].as_str(), j["fired_at"].as_str()), (Some("guard_blocks"), Some("2026-12-05T10:00:00Z"), Some("2026-12-05T10:20:00Z")));
        let s = f.payload(AlertFormat::Slack, NOW);
        assert!(s["text"].as_str().unwrap().contains("Alert r (guard_blocks)"), "{s}");
        let blocks = s["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        assert_eq!(blocks[1]["type"], "context");
        assert!(blocks[1]["elements"][0]["text"].as_str().unwrap().contains("2026-12-05T10:00:00Z"));
    }
}
