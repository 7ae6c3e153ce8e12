//! The one structured event every request produces when it is finished.

use serde::Serialize;

use crate::guard::GuardSummary;
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
    pub usage: Option<Usage>,
    /// The provider's own usage numbers, unchanged, when the provider is not OpenAI-shaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_usage: Option<serde_json::Value>,
    /// What the rate limits and budgets reserved and charged, when any applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::quota::QuotaSummary>,
    /// Where a multi-target model's request went and why (target, region, reason, carbon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::gateway::RouteSummary>,
    /// Milliseconds from receiving the request to the response head.
    pub latency_ms: u64,
    /// Milliseconds from receiving the request to the end of the response body.
    pub duration_ms: u64,
    pub country: Option<String>,
    pub colo: Option<String>,
    /// What the guardrails found and did, when a guard profile applied.
    pub guard: Option<GuardSummary>,
    /// The consumer's configured metadata (team, cost centre...), for reporting.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}
