//! The one structured event every request produces when it is finished, and the summaries the
//! stages contribute to it (guard, quota, route). Plain data: the stages fill it, the host emits
//! it (`Host::emit`), so it sits below both.

use std::rc::Rc;

use policy::guard::{BlockReason, GuardReport};
use serde::Serialize;

use crate::openai::Usage;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The response was delivered completely.
    Completed,
    /// The gateway answered with an error status.
    Failed,
    /// A stream broke after the 200 (upstream error, idle timeout); the client got an error event.
    StreamError,
    /// The client went away before the response was complete; the upstream call was cancelled.
    ClientDisconnected,
}

/// One finished request: who, what, where it went, what it used. Never holds prompt text,
/// keys or upstream bodies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageEvent {
    pub request_id: String,
    pub operation: &'static str,
    pub consumer: Option<String>,
    /// The token's issuer when the consumer came from a JWT (the consumer is that issuer's subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Tenant and tier from the caller's token, when it carries them.
    pub tenant: Option<String>,
    pub tier: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub outcome: Outcome,
    /// The error label (see `GatewayError::label`) when the request failed.
    pub error: Option<&'static str>,
    /// For the operator only: what a generic client error was about (an invalid configuration's
    /// full list of issues).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    pub usage: Option<Usage>,
    /// The provider's own usage numbers, unchanged, when the provider is not OpenAI-shaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_usage: Option<serde_json::Value>,
    /// What the rate limits and budgets reserved and charged, when any applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSummary>,
    /// Where a multi-target model's request went and why (target, region, reason, carbon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteSummary>,
    /// Milliseconds from receiving the request to the response head.
    pub latency_ms: u64,
    /// Milliseconds from receiving the request to the end of the response body.
    pub duration_ms: u64,
    pub country: Option<String>,
    pub colo: Option<String>,
    /// What the guardrails found and did, when a guard profile applied.
    pub guard: Option<GuardSummary>,
    /// What the response cache did, when one applied; on a hit, what it saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSummary>,
    /// The consumer's configured metadata (team, cost centre...), for reporting.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// What the response cache did with a request (the `x-gateway-cache` header says the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Answered from the exact cache.
    Hit,
    /// Answered from the entry of a similar earlier request (the semantic tier).
    SemanticHit,
    /// Looked up, not found: answered upstream (and stored when it qualifies).
    Miss,
    /// Not looked up (`cache-control: no-cache`, or no tier may hold this caller's data here).
    Bypass,
}

impl CacheStatus {
    pub fn header_value(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The cache part of the usage event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSummary {
    pub status: CacheStatus,
    /// On a hit: seconds since the entry was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_s: Option<u64>,
    /// On a hit: what the upstream call would have used (the stored call's usage, priced now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<CacheSaving>,
    /// On a semantic hit: the cosine similarity of the query to the cached one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The semantic tier's embedding of the query: its tokens (the provider's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_tokens: Option<u64>,
    /// Why the semantic tier answered nothing although it applied (`embedding: <error label>`,
    /// `index: unavailable`): never a client error, the request went on as a miss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_error: Option<String>,
}

impl CacheSummary {
    /// A summary with only its status.
    pub fn of(status: CacheStatus) -> Self {
        CacheSummary { status, age_s: None, saved: None, similarity: None, embedding_tokens: None, semantic_error: None }
    }
}

/// What a cache hit saved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSaving {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    /// At the configured prices, when one applies to the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gco2e: Option<f64>,
}

/// The guard part of the usage event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardSummary {
    pub profile: String,
    pub actions: Vec<GuardActionCount>,
    pub injection_score: Option<f32>,
    pub injection_signals: Vec<&'static str>,
    pub blocked: Option<String>,
    pub images_unscanned: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardActionCount {
    pub rule: String,
    pub action: &'static str,
    pub direction: &'static str,
    pub count: u32,
}

impl GuardSummary {
    pub fn from_report(profile: &str, report: &GuardReport) -> Self {
        GuardSummary {
            profile: profile.to_string(),
            actions: report
                .actions
                .iter()
                .map(|((rule, action, output), count)| GuardActionCount {
                    rule: rule.clone(),
                    action,
                    direction: if *output { "output" } else { "input" },
                    count: *count,
                })
                .collect(),
            injection_score: report.injection_score.map(|s| (s * 100.0).round() / 100.0),
            injection_signals: report.injection_signals.clone(),
            blocked: report.blocked.as_ref().map(BlockReason::rule),
            images_unscanned: report.images_unscanned,
        }
    }
}

/// What the usage event records of the quota stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QuotaSummary {
    /// Estimated input and output tokens reserved before the call.
    pub estimated_input_tokens: u64,
    pub reserved_output_tokens: u64,
    /// The cost charged in USD nanos (from the provider's usage), when a price is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<u64>,
    /// Scopes admitted without metering because their store failed open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmetered: Vec<String>,
}

/// How one routed request went, for the usage event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteSummary {
    pub target: String,
    pub region: String,
    pub jurisdiction: String,
    /// Why this target: the planner's reason, or the fallbacks that led to it.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    pub attempts: u32,
    /// The planner's estimate before the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_gco2e: Option<f64>,
    /// The estimate for the route's default target (the first in its order).
    pub default_gco2e: f64,
    /// `default_gco2e - estimated_gco2e`: what the choice saved against the default (negative
    /// when latency or cost outweighed carbon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saving_gco2e: Option<f64>,
    /// Estimated gCO2e of this request from its reported usage (energy per token by model size,
    /// the region's grid intensity; see docs/routing.md for the sources and the uncertainty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gco2e: Option<f64>,
    /// Where the carbon figures came from: `annual` (shipped table), `live` (the feed), or
    /// `stale` (a feed is configured but has no fresh values; annual figures were used).
    pub carbon_data: &'static str,
    #[serde(skip)]
    pub params_b: u32,
    #[serde(skip)]
    pub provider: String,
    /// The live table the estimate used (none: the shipped one).
    #[serde(skip)]
    pub carbon_table: Option<Rc<policy::route::CarbonTable>>,
}
