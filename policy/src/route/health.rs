//! Per-target health: consecutive failures, a circuit breaker, a rate-limit cool-down and an
//! EWMA of observed latency.
//!
//! The state is plain serialisable data so the host can keep it wherever it likes (isolate
//! memory, KV, a Durable Object). The breaker's state is derived from the recorded facts and the
//! time the caller passes in, so no timer has to fire:
//!
//! * Closed: fewer than `failure_threshold` consecutive failures.
//! * Open: threshold reached and less than `open_ms` since the last failure.
//! * Half-open: `open_ms` has passed; ONE request may probe. The planner marks it
//!   ([`super::PlannedTarget::probe`]); the host calls [`HealthState::record_probe`] when it sends
//!   it, which holds the circuit open for other requests until the probe's result is recorded
//!   (or `open_ms` passes again, in case the probe's result was lost).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CircuitBreaker, FallbackTrigger, RouteSpec};

/// Weight of a new latency sample in the moving average.
pub const EWMA_ALPHA: f64 = 0.2;

/// Why a call to a target failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureKind {
    /// HTTP 429, with the provider's Retry-After converted to ms when it sent one.
    RateLimited {
        retry_after_ms: Option<u64>,
    },
    /// Any other HTTP status from the provider (5xx are retryable; 4xx are the client's fault).
    ServerError {
        status: u16,
    },
    Timeout,
    Connect,
}

impl FailureKind {
    /// The fallback trigger this failure corresponds to, if any (a 4xx other than 429 has none:
    /// another target would refuse the same request).
    pub fn trigger(self) -> Option<FallbackTrigger> {
        match self {
            FailureKind::RateLimited { .. } => Some(FallbackTrigger::RateLimited),
            FailureKind::ServerError { status } if (500..=599).contains(&status) => Some(FallbackTrigger::ServerError),
            FailureKind::ServerError { .. } => None,
            FailureKind::Timeout => Some(FallbackTrigger::Timeout),
            FailureKind::Connect => Some(FallbackTrigger::Connect),
        }
    }

    /// Whether this failure counts against the circuit breaker. A 429 is the provider asking us
    /// to slow down, not a sign the target is broken: it sets a cool-down instead.
    fn trips_breaker(self) -> bool {
        matches!(self.trigger(), Some(FallbackTrigger::ServerError | FallbackTrigger::Timeout | FallbackTrigger::Connect))
    }
}

/// Whether a failed attempt should move on to the next planned target.
pub fn should_fall_back(spec: &RouteSpec, kind: FailureKind) -> bool {
    kind.trigger().is_some_and(|t| spec.fallback_on.contains(&t))
}

/// The breaker's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open { until_ms: u64 },
    HalfOpen,
}

/// What is known about one target's recent behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthState {
    pub consecutive_failures: u32,
    pub last_failure_ms: Option<u64>,
    pub last_failure: Option<FailureKind>,
    /// A half-open probe was sent at this time and has no result yet.
    pub probe_started_ms: Option<u64>,
    /// After a 429: do not send before this time.
    pub cooldown_until_ms: Option<u64>,
    /// Moving average of successful call latency in ms.
    pub ewma_latency_ms: Option<f64>,
}

impl HealthState {
    /// A successful call: closes the circuit and feeds the latency average.
    pub fn record_success(&mut self, latency_ms: u64, now_ms: u64) {
        let _ = now_ms; // kept in the signature so a later decay can use it without an API change
        self.consecutive_failures = 0;
        self.probe_started_ms = None;
        self.cooldown_until_ms = None;
        let sample = latency_ms as f64;
        self.ewma_latency_ms = Some(match self.ewma_latency_ms {
            Some(prev) => prev + EWMA_ALPHA * (sample - prev),
            None => sample,
        });
    }

    /// A failed call. Breaker-relevant failures count; a 429 sets a cool-down of its
    /// Retry-After (or 1 s when none was sent).
    pub fn record_failure(&mut self, kind: FailureKind, now_ms: u64) {
        self.last_failure = Some(kind);
        self.probe_started_ms = None;
        if let FailureKind::RateLimited { retry_after_ms } = kind {
            self.cooldown_until_ms = Some(now_ms.saturating_add(retry_after_ms.unwrap_or(1_000)));
            return;
        }
        if kind.trips_breaker() {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.last_failure_ms = Some(now_ms);
        }
    }

    /// The host is sending the single half-open probe now.
    pub fn record_probe(&mut self, now_ms: u64) {
        self.probe_started_ms = Some(now_ms);
    }

    /// The breaker's state at `now_ms`.
    pub fn circuit(&self, breaker: &CircuitBreaker, now_ms: u64) -> Circuit {
        let threshold = breaker.failure_threshold.max(1);
        let Some(last) = self.last_failure_ms.filter(|_| self.consecutive_failures >= threshold) else {
            return Circuit::Closed;
        };
        let reopen_at = last.saturating_add(breaker.open_ms);
        if now_ms < reopen_at {
            return Circuit::Open { until_ms: reopen_at };
        }
        match self.probe_started_ms {
            Some(p) if p >= reopen_at && now_ms < p.saturating_add(breaker.open_ms) => Circuit::Open { until_ms: p.saturating_add(breaker.open_ms) },
            _ => Circuit::HalfOpen,
        }
    }

    /// In a 429 cool-down at `now_ms`.
    pub fn cooling_down(&self, now_ms: u64) -> Option<u64> {
        self.cooldown_until_ms.filter(|&until| now_ms < until)
    }
}

/// Health of every target of a route, keyed by target id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HealthView {
    pub targets: BTreeMap<String, HealthState>,
}

impl HealthView {
    pub fn get(&self, id: &str) -> Option<&HealthState> {
        self.targets.get(id)
    }

    /// The state for `id`, created empty on first use.
    pub fn entry(&mut self, id: &str) -> &mut HealthState {
        self.targets.entry(id.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::test_support::spec_with;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker { failure_threshold: 3, open_ms: 10_000 }
    }

    #[test]
    fn breaker_opens_after_threshold_then_half_opens_then_closes() {
        let b = breaker();
        let mut h = HealthState::default();
        h.record_failure(FailureKind::ServerError { status: 502 }, 1_000);
        h.record_failure(FailureKind::Timeout, 1_100);
        assert_eq!(h.circuit(&b, 1_200), Circuit::Closed);
        h.record_failure(FailureKind::Connect, 1_200);
        assert_eq!(h.circuit(&b, 1_300), Circuit::Open { until_ms: 11_200 });
        assert_eq!(h.circuit(&b, 11_199), Circuit::Open { until_ms: 11_200 });
        assert_eq!(h.circuit(&b, 11_200), Circuit::HalfOpen);
        // One probe: others see it open while it is in flight.
        h.record_probe(11_300);
        assert_eq!(h.circuit(&b, 11_400), Circuit::Open { until_ms: 21_300 });
        // A lost probe result does not keep the circuit open for ever.
        assert_eq!(h.circuit(&b, 21_300), Circuit::HalfOpen);
        h.record_success(120, 11_500);
        assert_eq!(h.circuit(&b, 11_600), Circuit::Closed);
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = breaker();
        let mut h = HealthState::default();
        for t in 0..3 {
            h.record_failure(FailureKind::Timeout, t);
        }
        assert_eq!(h.circuit(&b, 10_002), Circuit::HalfOpen);
        h.record_probe(10_002);
        h.record_failure(FailureKind::Timeout, 10_500);
        assert_eq!(h.circuit(&b, 10_600), Circuit::Open { until_ms: 20_500 });
    }

    #[test]
    fn success_resets_consecutive_count() {
        let b = breaker();
        let mut h = HealthState::default();
        h.record_failure(FailureKind::Timeout, 0);
        h.record_failure(FailureKind::Timeout, 1);
        h.record_success(100, 2);
        h.record_failure(FailureKind::Timeout, 3);
        assert_eq!(h.circuit(&b, 4), Circuit::Closed);
    }

    #[test]
    fn rate_limit_cools_down_without_tripping() {
        let b = breaker();
        let mut h = HealthState::default();
        for t in 0..5 {
            h.record_failure(FailureKind::RateLimited { retry_after_ms: Some(2_000) }, t);
        }
        assert_eq!(h.circuit(&b, 5), Circuit::Closed);
        assert_eq!(h.cooling_down(5), Some(2_004));
        assert_eq!(h.cooling_down(2_004), None);
        // 4xx other than 429 neither trips nor falls back.
        h.record_failure(FailureKind::ServerError { status: 400 }, 10);
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn ewma_moves_toward_samples() {
        let mut h = HealthState::default();
        h.record_success(100, 0);
        assert_eq!(h.ewma_latency_ms, Some(100.0));
        h.record_success(200, 1);
        assert_eq!(h.ewma_latency_ms, Some(120.0));
    }

    #[test]
    fn fallback_triggers_follow_spec() {
        let mut spec = spec_with(vec![]);
        spec.fallback_on = [FallbackTrigger::ServerError, FallbackTrigger::Timeout].into_iter().collect();
        assert!(should_fall_back(&spec, FailureKind::ServerError { status: 503 }));
        assert!(!should_fall_back(&spec, FailureKind::ServerError { status: 404 }));
        assert!(should_fall_back(&spec, FailureKind::Timeout));
        assert!(!should_fall_back(&spec, FailureKind::Connect));
        assert!(!should_fall_back(&spec, FailureKind::RateLimited { retry_after_ms: None }));
    }

    #[test]
    fn health_view_round_trips_through_json() {
        let mut v = HealthView::default();
        v.entry("a").record_failure(FailureKind::RateLimited { retry_after_ms: Some(5) }, 7);
        v.entry("b").record_success(42, 8);
        let json = serde_json::to_string(&v).expect("serialise");
        let back: HealthView = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, v);
    }
}
