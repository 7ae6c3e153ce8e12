//! Token-aware rate limits, quotas and money budgets: the pure decisions.
//!
//! The store (a Durable Object per subject on Workers, a locked map in memory) holds a
//! [`CounterState`] per [`Subject`] and the time; this module decides. The flow of one request:
//!
//! 1. Resolve each configured [`Scope`] against the request's [`RequestFacts`] to a [`Subject`]
//!    (one counter object each; never a global one).
//! 2. Estimate: input tokens (tiktoken, or [`estimate_input_tokens_fallback`]), output tokens
//!    ([`output_reservation`]), cost ([`PriceTable::estimate`]) → [`Amounts::estimate`].
//! 3. [`CounterState::admit`] in each subject's object with that subject's [`LimitSpec`]s
//!    (all or nothing per object; across objects see [`admit_all`]). Denied: 429 with
//!    [`rate_limit_headers`] and `Retry-After` ([`retry_after_secs`]).
//! 4. After the call: [`CounterState::settle`] with [`Amounts::from_usage`] of the provider's
//!    usage and [`PriceTable::cost`] (streams: the usage of the final chunk), and send a webhook
//!    for each returned [`Alert`]. The call failed: [`CounterState::release`]. The call succeeded
//!    but reported no usage: settle with the estimate.
//!
//! Time is always passed in (`now_ms`, unix milliseconds); windows are fixed and aligned to UTC
//! ([`Window`] explains why). Money is integer [`Nanos`].

pub mod counter;
pub mod estimate;
pub mod headers;
pub mod money;
pub mod scope;
pub mod window;

pub use counter::{
    admit_all, Admission, Alert, Amounts, CounterKey, CounterOp, CounterReply, CounterState, LimitSpec, LimitStatus, Metric, Settlement,
    DEFAULT_RESERVATION_TTL_MS, IN_FLIGHT_RETRY_MS,
};
pub use estimate::{estimate_input_tokens_fallback, estimate_text_tokens, fallback_chars, output_reservation};
pub use headers::{format_reset, rate_limit_headers, retry_after_secs};
pub use money::{ModelPrice, MoneyError, Nanos, PriceTable, TokenUsage};
pub use scope::{RequestFacts, Scope, ScopeDim, ScopeError, Subject};
pub use window::Window;

use serde::{Deserialize, Serialize};

/// What the pipeline does when the counter store cannot answer (the Durable Object is
/// unreachable, overloaded, or its call times out). Configurable per limit; the default is
/// [`Closed`](FailureMode::Closed).
///
/// Limits and budgets exist to cap spend and protect upstream quotas; a limiter that quietly
/// disappears when its store is unavailable is a known failure of existing gateways, and a store
/// outage would then be exactly when an unbounded bill can run up. So by default an unverifiable
/// request is refused, with `503` (the service cannot check, which is not the caller's fault, so
/// not `429`) and a short `Retry-After`. Deployments that value availability over the cap choose
/// [`Open`](FailureMode::Open) per limit; the pipeline must then record every unmetered admission
/// in the usage event and metrics, never silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Admit the request unmetered (no reservation, nothing to settle) and record that it was.
    Open,
    /// Refuse the request with `503` and `Retry-After`.
    #[default]
    Closed,
}

impl FailureMode {
    /// Whether a request is admitted when the store errs.
    pub fn admits_on_store_error(self) -> bool {
        matches!(self, FailureMode::Open)
    }

    pub fn from_name(name: &str) -> Option<FailureMode> {
        match name {
            "open" => Some(FailureMode::Open),
            "closed" => Some(FailureMode::Closed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_mode_defaults_to_closed() {
        assert_eq!(FailureMode::default(), FailureMode::Closed);
        assert!(!FailureMode::Closed.admits_on_store_error());
        assert!(FailureMode::Open.admits_on_store_error());
        assert_eq!(FailureMode::from_name("open"), Some(FailureMode::Open));
        assert_eq!(serde_json::from_str::<FailureMode>("\"closed\"").unwrap(), FailureMode::Closed);
    }
}
