//! The limit phase: admit a request against its rate limits and budgets before the call, settle
//! the provider's reported usage after it, release the reservation when the call fails.
//!
//! Each configured scope resolves to one subject (`consumer:alice`, `tenant:acme|model:gpt-4o`)
//! whose counters live in one counter object of the host (a Durable Object per subject on
//! Workers, pinned to the tenant's jurisdiction when it has one). Subjects are admitted in key
//! order; at the first denial the ones already admitted are released, so a request is reserved
//! everywhere or nowhere.
//!
//! When the store cannot answer within `quota.store_timeout_ms`, the scope's failure mode decides:
//! closed (the default) refuses with 503, open admits unmetered and says so in the usage event.

use policy::limits::{
    output_reservation, rate_limit_headers, retry_after_secs, Admission, Alert, Amounts, CounterOp, CounterReply, FailureMode,
    LimitStatus, Metric, Nanos, RequestFacts, ScopeError, TokenUsage, DEFAULT_RESERVATION_TTL_MS,
};
use serde_json::json;

use crate::config::{Config, ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::event::QuotaSummary;
use crate::host::{with_timeout, Host, OutboundRequest};
use crate::openai::{ChatRequest, Usage};
use crate::pipeline::context::RequestContext;
use crate::pipeline::record::record;
use crate::event::Outcome;

/// Who and what a request counts against.
pub struct QuotaFacts<'a> {
    pub key_id: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
}

/// One subject the request holds a reservation in.
#[derive(Debug, Clone)]
struct Held {
    subject: String,
    jurisdiction: Option<String>,
    webhooks: Vec<String>,
    /// The secret name budget webhooks are signed with (`quota.webhook_secret`).
    webhook_secret: Option<String>,
}

/// A request admitted against its limits: settle or release it exactly once.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    id: String,
    held: Vec<Held>,
    model: String,
    upstream_model: String,
    estimate: Amounts,
    /// A price applied to the estimate (else its cost is zero and the event shows none).
    priced: bool,
    /// The limits the request was checked against, after its reservation (for headers).
    pub limits: Vec<LimitStatus>,
    /// Scopes whose store failed and whose failure mode is open: admitted without metering.
    pub unmetered: Vec<String>,
    prices: Option<policy::limits::PriceTable>,
    /// A cache hit's reservation: it counts one request and is charged nothing else.
    request_only: bool,
}

impl Reservation {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.unmetered.is_empty()
    }

    /// OpenAI's `x-ratelimit-*` headers for the limits checked.
    pub fn headers(&self, now_ms: u64) -> Vec<(&'static str, String)> {
        rate_limit_headers(&self.limits, now_ms)
    }

    /// The usage event's view of the reservation and of what the request was charged: the cost
    /// in the event is the cost the counters are settled with, so events sum to the counters.
    pub fn summary(&self, charge: &Charge) -> QuotaSummary {
        QuotaSummary {
            estimated_input_tokens: self.estimate.input_tokens,
            reserved_output_tokens: self.estimate.output_tokens,
            cost_nanos: charge.priced.then_some(charge.amounts.cost.0),
            unmetered: self.unmetered.clone(),
        }
    }

    /// What a finished request is charged: the provider's reported usage at the configured
    /// prices, or the whole reservation when it reported none.
    pub fn charge(&self, usage: Option<&Usage>) -> Charge {
        let Some(usage) = usage.filter(|_| !self.request_only) else {
            return Charge { amounts: self.estimate, priced: self.priced };
        };
        let cost = self.cost(usage);
        Charge { amounts: Amounts::from_usage(&token_usage(usage), cost.unwrap_or(Nanos::ZERO)), priced: cost.is_some() }
    }

    /// What a client that left mid-stream is charged when the provider reported no usage: the
    /// prompt estimate plus the output tokens delivered to it (an upper-bound count of the
    /// forwarded text), never more output than was reserved.
    pub fn delivered_charge(&self, delivered_output_tokens: u64) -> Charge {
        if self.request_only {
            return self.charge(None);
        }
        let input = self.estimate.input_tokens;
        let output = delivered_output_tokens.min(self.estimate.output_tokens);
        let cost = self.price_estimate(input, output);
        Charge { amounts: Amounts::estimate(input, output, cost.unwrap_or(Nanos::ZERO)), priced: cost.is_some() }
    }

    fn price_estimate(&self, input_tokens: u64, output_tokens: u64) -> Option<Nanos> {
        let prices = self.prices.as_ref()?;
        prices.estimate(&self.upstream_model, input_tokens, output_tokens).or_else(|| prices.estimate(&self.model, input_tokens, output_tokens))
    }

    /// The request was served by `upstream_model` (a routed request may not be served by the
    /// target it was estimated for): settlement charges that model's price.
    pub fn served_by(&mut self, upstream_model: &str) {
        self.upstream_model = upstream_model.to_string();
    }

    /// The cost of a finished call at the configured prices (the upstream model's price, else
    /// the configured model name's).
    pub fn cost(&self, usage: &Usage) -> Option<Nanos> {
        let prices = self.prices.as_ref()?;
        let usage = token_usage(usage);
        prices.cost(&self.upstream_model, &usage).or_else(|| prices.cost(&self.model, &usage))
    }
}

/// The amounts one request is settled with, and whether a price applied to them.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    pub amounts: Amounts,
    pub priced: bool,
}

/// The policy crate's view of a provider's usage.
pub fn token_usage(usage: &Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        total_tokens: usage.total_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        reasoning_tokens: usage.reasoning_tokens,
    }
}

/// Reserve a chat request's estimated usage against every rate limit and budget that applies.
/// The prompt is counted here (exactly where the build has a tokenizer and the provider is
/// OpenAI-family) only when a limit applies, and the count is kept in the context for routing.
pub async fn reserve<H: Host>(
    config: &Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    provider: &ProviderConfig,
    request: &ChatRequest,
    host: &H,
) -> Result<Reservation, GatewayError> {
    if config.quota.groups.is_empty() {
        return Ok(Reservation::default());
    }
    let openai_family = matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_));
    let input_tokens = ctx.prompt_tokens(request, openai_family);
    let output = OutputRequest { max_tokens: request.max_output_tokens(), choices: request.choices() };
    admit_caller(config, ctx, route, input_tokens, Some(output), host).await
}

/// Reserve one request and no tokens against every rate limit and budget that applies: a
/// response cache hit uses no upstream tokens, but it is a request (request-rate limits count it).
pub async fn reserve_request_only<H: Host>(config: &Config, ctx: &RequestContext, route: &ModelRoute, host: &H) -> Result<Reservation, GatewayError> {
    if config.quota.groups.is_empty() {
        return Ok(Reservation::default());
    }
    let mut reservation = admit_caller(config, ctx, route, 0, None, host).await?;
    reservation.request_only = true;
    Ok(reservation)
}

/// Admit the calling request (`output`: none reserves no output tokens).
async fn admit_caller<H: Host>(
    config: &Config,
    ctx: &RequestContext,
    route: &ModelRoute,
    input_tokens: u64,
    output: Option<OutputRequest>,
    host: &H,
) -> Result<Reservation, GatewayError> {
    let caller = &ctx.caller;
    let consumer_key = caller.consumer_key();
    let header_refs: Vec<(&str, &str)> = ctx.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let facts = QuotaFacts {
        key_id: caller.key_id.as_deref(),
        consumer: consumer_key.as_deref(),
        tenant: caller.tenant.as_deref(),
        headers: &header_refs,
    };
    admit(config, route, &facts, input_tokens, output, &ctx.request_id, host).await
}

/// The output a request asks for: per choice, and how many choices (`n`).
#[derive(Debug, Clone, Copy)]
pub struct OutputRequest {
    pub max_tokens: Option<u64>,
    pub choices: u64,
}

/// Admit the request against every limit that applies to it. `input_tokens` is the estimate
/// of the prompt; the output reservation is `max_tokens` (or the configured default) for each
/// of the `n` choices (none without `output`). Called by [`reserve`] only when some limit is configured.
async fn admit<H: Host>(
    config: &Config,
    route: &ModelRoute,
    facts: &QuotaFacts<'_>,
    input_tokens: u64,
    output: Option<OutputRequest>,
    request_id: &str,
    host: &H,
) -> Result<Reservation, GatewayError> {
    let quota = &config.quota;
    let output_tokens = output.map_or(0, |output| {
        let per_choice_cap = quota.default_max_output_tokens.max(output.max_tokens.unwrap_or(0));
        output_reservation(output.max_tokens, per_choice_cap).saturating_mul(output.choices.max(1))
    });
    let mut reservation = Reservation {
        id: request_id.to_string(),
        held: Vec::new(),
        model: route.name.clone(),
        upstream_model: route.upstream_model.clone(),
        estimate: Amounts::default(),
        priced: false,
        limits: Vec::new(),
        unmetered: Vec::new(),
        prices: Some(quota.prices.clone()),
        request_only: false,
    };
    let cost = reservation.price_estimate(input_tokens, output_tokens);
    reservation.priced = cost.is_some();
    let estimate = Amounts::estimate(input_tokens, output_tokens, cost.unwrap_or(Nanos::ZERO));
    reservation.estimate = estimate;
    let request_facts =
        RequestFacts { key_id: facts.key_id, consumer: facts.consumer, tenant: facts.tenant, model: Some(&route.name), headers: facts.headers };
    let jurisdiction = facts.tenant.and_then(|t| config.tenants.get(t)).and_then(|t| t.jurisdiction.clone());
    let mut subjects = Vec::new();
    for group in &quota.groups {
        match group.scope.resolve(&request_facts) {
            Ok(subject) => subjects.push((subject.key().to_string(), group)),
            // A limit on a dimension the request does not have (no tenant, no header) does not apply.
            Err(ScopeError::Missing(_) | ScopeError::Empty | ScopeError::EmptyHeaderName) => {}
        }
    }
    subjects.sort_by(|a, b| a.0.cmp(&b.0));
    let ttl_ms = DEFAULT_RESERVATION_TTL_MS;
    for (subject, group) in subjects {
        let op = CounterOp::Admit { specs: group.specs.clone(), amounts: estimate, reservation_id: request_id.to_string(), ttl_ms };
        let reply = with_timeout(host, quota.store_timeout_ms, host.counter(&subject, jurisdiction.as_deref(), &op)).await;
        let admission: Admission = match reply {
            Some(Ok(CounterReply::Admitted(admission))) => admission,
            _ if group.on_store_error == FailureMode::Open => {
                reservation.unmetered.push(subject);
                continue;
            }
            _ => {
                release(&reservation, host).await;
                return Err(GatewayError::QuotaUnavailable);
            }
        };
        if !admission.allowed {
            release(&reservation, host).await;
            let binding = admission.binding().copied();
            let mut limits = reservation.limits.clone();
            limits.extend(admission.limits.iter().copied());
            let headers = rate_limit_headers(&limits, host.now_ms()).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            return Err(GatewayError::RateLimited {
                budget: binding.is_some_and(|b| b.metric == Metric::Cost),
                window: binding.map(|b| b.window.name()).unwrap_or("minute"),
                metric: binding.map(|b| b.metric.name()).unwrap_or("requests"),
                too_large: admission.too_large,
                retry_after_secs: admission.retry_after_ms.map(retry_after_secs),
                headers,
            });
        }
        reservation.limits.extend(admission.limits);
        reservation.held.push(Held { subject, jurisdiction: jurisdiction.clone(), webhooks: group.webhooks.clone(), webhook_secret: quota.webhook_secret.clone() });
    }
    Ok(reservation)
}

/// The call failed before any usage: give the reserved capacity back.
pub async fn release<H: Host>(reservation: &Reservation, host: &H) {
    for held in &reservation.held {
        let op = CounterOp::Release { reservation_id: reservation.id.clone() };
        // A lost release expires with the reservation's TTL.
        let _ = host.counter(&held.subject, held.jurisdiction.as_deref(), &op).await;
    }
}

/// A reservation held while the request waits for its response head (dispatch, fallback,
/// backoff). If the request is dropped there, the client went away: no further target is tried,
/// the prompt is charged with no output (nothing was delivered), and the usage event says
/// `client_disconnected`. [`PendingResponse::answered`] hands the reservation on to the respond phase.
pub struct PendingResponse<H: Host> {
    reservation: Option<Reservation>,
    ctx: RequestContext,
    host: H,
}

impl<H: Host> PendingResponse<H> {
    pub fn new(reservation: Reservation, ctx: &RequestContext, host: &H) -> Self {
        PendingResponse { reservation: Some(reservation), ctx: ctx.clone(), host: host.clone() }
    }

    /// The call ended with a response head or an error: the caller settles or releases.
    pub fn answered(mut self) -> Reservation {
        self.reservation.take().unwrap_or_default()
    }
}

impl<H: Host> Drop for PendingResponse<H> {
    fn drop(&mut self) {
        let Some(reservation) = self.reservation.take() else { return };
        let charge = reservation.delivered_charge(0);
        if !reservation.is_empty() {
            self.ctx.quota = Some(reservation.summary(&charge));
        }
        record(&self.host, &self.ctx, 499, Outcome::ClientDisconnected, None);
        self.host.wait_until(settle(reservation, charge, self.host.clone()));
    }
}

/// Settle the reservation at `charge` (from [`Reservation::charge`] or
/// [`Reservation::delivered_charge`], the same one the usage event shows) and send a webhook
/// for each budget threshold crossed.
pub async fn settle<H: Host>(reservation: Reservation, charge: Charge, host: H) {
    if reservation.held.is_empty() {
        return;
    }
    let actual = charge.amounts;
    for held in &reservation.held {
        let op = CounterOp::Settle { reservation_id: reservation.id.clone(), actual };
        if let Ok(CounterReply::Settled(settlement)) = host.counter(&held.subject, held.jurisdiction.as_deref(), &op).await {
            for alert in settlement.alerts {
                for url in &held.webhooks {
                    send_alert(&host, url, held.webhook_secret.as_deref(), &held.subject, &alert).await;
                }
            }
        }
    }
}

/// POST a budget alert. The body names the subject and the numbers, never a key. With
/// `quota.webhook_secret` set, it carries `x-gateway-signature: t=<unix seconds>,v1=<hex>`, the
/// HMAC-SHA256 of `<t>.<body>` under that secret (as Stripe signs its webhooks), so the receiver
/// can tell it came from the gateway and refuse replays older than a few minutes.
async fn send_alert<H: Host>(host: &H, url: &str, secret_name: Option<&str>, subject: &str, alert: &Alert) {
    let body = json!({
        "type": "budget_alert",
        "subject": subject,
        "metric": alert.metric.name(),
        "window": alert.window.name(),
        "percent": alert.percent,
        "used_usd": Nanos(alert.used).to_string(),
        "limit_usd": Nanos(alert.limit).to_string(),
        "window_start_ms": alert.window_start_ms,
        "window_end_ms": alert.window_end_ms,
    });
    let body = body.to_string();
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(secret) = secret_name.and_then(|name| host.secret(name)).filter(|s| !s.is_empty()) {
        headers.push(("x-gateway-signature".into(), webhook_signature(secret.as_bytes(), host.now_ms() / 1000, &body)));
    }
    let request = OutboundRequest { method: "POST", url: url.to_string(), headers, body: body.into_bytes() };
    let _ = with_timeout(host, 5_000, host.fetch(request)).await;
}

pub use crate::http::webhook_signature;

#[cfg(test)]
mod signature_tests {
    #[test]
    fn webhook_signatures_are_hmac_sha256_over_timestamp_dot_body() {
        // Expected value from Python's hmac module, an independent implementation.
        let signature = super::webhook_signature(b"whsec_test", 1_700_000_000, r#"{"type":"budget_alert"}"#);
        assert_eq!(signature, "t=1700000000,v1=86c4d18a09dad7ed08a757ec96866c26ebd98115b6e060d95bded055945994f8");
    }
}
