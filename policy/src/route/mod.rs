//! Routing: which provider target(s) a request goes to, in what order, and why.
//!
//! [`plan`] is a pure function of the route's configuration, the request's facts, the targets'
//! health, the time and one random number, all passed in by the caller. It applies, in order:
//!
//! 1. the **residency** hard filter (a target outside the caller's allowed jurisdictions is
//!    never used; when none is left the answer is [`RouteError::NoAllowedTarget`], never a quiet
//!    route elsewhere);
//! 2. the **circuit breaker** and 429 cool-downs ([`RouteError::AllUnhealthy`] when nothing
//!    healthy is left);
//! 3. **conditions** (tier, metadata, header, request shape) that narrow the target subset;
//! 4. the sticky **canary** split;
//! 5. the **strategy** ordering (ordered, weighted, least latency, nearest, carbon-aware).
//!
//! The resulting [`RoutePlan`] lists the attempts (first choice, then fallbacks/retries), every
//! excluded target with its reason, per-target estimates, and renders a short explanation for a
//! response header ([`RoutePlan::header_value`]). Conditions that switch to another route are
//! followed by [`resolve_route`] before planning.

mod backoff;
mod carbon;
mod condition;
mod geo;
mod health;
mod plan;
pub mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::Nanos;

pub use backoff::{backoff_ms, delay_ms, exceeds_cap};
pub use carbon::{CarbonTable, EnergyClass, EnergyModel, Intensity, PueTable};
pub use condition::{resolve_route, Condition, ConditionAction, Predicate};
pub use geo::{haversine_km, latency_from_distance, GeoTable, LatLon, RegionInfo};
pub use health::{should_fall_back, Circuit, FailureKind, HealthState, HealthView, EWMA_ALPHA};
pub use plan::{plan, plan_with_tables};

/// Hard upper bound on attempts per request, whatever the configuration says.
pub const MAX_ATTEMPTS_CAP: u32 = 10;
/// Output tokens assumed for estimates when the request gives neither an expectation nor
/// `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 400;

/// One place a request can be sent: a model of a provider in a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub id: String,
    pub provider: String,
    pub model: String,
    /// Cloud region name as the provider spells it (`eu-west-1`, `europe-west4`, `westeurope`).
    pub region: String,
    /// Legal jurisdiction the data is processed in (`eu`, `us`, `uk`, `ch`, `global`, ...).
    pub jurisdiction: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Percent (0-100) of consumers sent here first as a canary; `None` = a stable target.
    #[serde(default)]
    pub canary: Option<u8>,
    pub input_per_million: Nanos,
    pub output_per_million: Nanos,
    /// Model size in billions of parameters, for the energy estimate (a class, not a precise
    /// number: providers rarely publish it).
    pub params_b: u32,
}

fn default_weight() -> u32 {
    1
}

impl Target {
    /// Estimated price of a request of this size on this target.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Nanos {
        let micro = u128::from(input_tokens) * u128::from(self.input_per_million.0) + u128::from(output_tokens) * u128::from(self.output_per_million.0);
        Nanos(u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }
}

/// How the remaining targets are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// The configuration's order: first is primary, the rest are fallbacks.
    Ordered,
    /// Weighted random by `Target::weight`.
    Weighted,
    /// Lowest observed latency (EWMA), distance estimate for targets without observations.
    LeastLatency,
    /// Shortest estimated network latency from the caller's location.
    Nearest,
    /// Lowest weighted sum of normalised latency, cost and carbon.
    Carbon { weights: ScoreWeights },
}

/// Relative weights of the carbon-aware score (need not sum to 1; negative values count as 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreWeights {
    pub latency: f64,
    pub cost: f64,
    pub carbon: f64,
}

/// Failure classes that move a request on to the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackTrigger {
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    Timeout,
    Connect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit (0 is treated as 1).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is allowed.
    pub open_ms: u64,
}

/// A named route: its targets and how to choose among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub name: String,
    pub targets: Vec<Target>,
    pub strategy: Strategy,
    pub fallback_on: BTreeSet<FallbackTrigger>,
    /// Attempts per request including the first (clamped to 1..=[`MAX_ATTEMPTS_CAP`]). More
    /// attempts than targets retry the ordered list from the top.
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub circuit_breaker: CircuitBreaker,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The size of the request, for conditions and estimates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestShape {
    pub input_tokens: u64,
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// Expected output tokens (e.g. a running average for the consumer); defaults to
    /// `max_tokens`, else [`DEFAULT_OUTPUT_TOKENS`].
    pub expected_output_tokens: Option<u64>,
}

impl RequestShape {
    pub fn output_estimate(&self) -> u64 {
        self.expected_output_tokens.or(self.max_tokens).unwrap_or(DEFAULT_OUTPUT_TOKENS)
    }
}

/// What is known about the request and its caller. Location comes from the platform
/// (`request.cf` on Workers); allowed jurisdictions come from tenant/consumer configuration or a
/// trusted header the host has verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// Two-letter continent code (`EU`, `NA`, ...).
    pub continent: Option<String>,
    /// Latitude, longitude in degrees.
    pub coordinates: Option<(f64, f64)>,
    /// Edge location that took the request (informational).
    pub colo: Option<String>,
    /// `None` = unconstrained. `Some(empty)` = nothing is allowed (fails closed).
    pub allowed_jurisdictions: Option<BTreeSet<String>>,
    pub consumer: Option<String>,
    pub tier: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub request: RequestShape,
}

/// Why a target was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ExclusionReason {
    /// Its jurisdiction is not among the caller's allowed ones.
    Residency {
        jurisdiction: String,
    },
    CircuitOpen {
        until_ms: u64,
    },
    /// Cooling down after a 429.
    RateLimited {
        until_ms: u64,
    },
    /// A matching condition selected other targets.
    Condition {
        index: usize,
    },
    /// A canary target this request's bucket did not fall into.
    CanaryNotSelected,
}

impl ExclusionReason {
    /// One word for the response header.
    pub fn short(&self) -> &'static str {
        match self {
            ExclusionReason::Residency { .. } => "residency",
            ExclusionReason::CircuitOpen { .. } => "circuit-open",
            ExclusionReason::RateLimited { .. } => "rate-limited",
            ExclusionReason::Condition { .. } => "condition",
            ExclusionReason::CanaryNotSelected => "canary",
        }
    }

    fn is_health(&self) -> bool {
        matches!(self, ExclusionReason::CircuitOpen { .. } | ExclusionReason::RateLimited { .. })
    }
}

/// Why a target got its place in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanReason {
    Ordered {
        position: usize,
    },
    Weighted {
        weight: u32,
        total: u64,
    },
    LeastLatency {
        latency_ms: f64,
        observed: bool,
    },
    Nearest {
        latency_ms: f64,
        distance_km: Option<f64>,
    },
    Carbon {
        score: f64,
    },
    /// A canary target chosen by the request's bucket.
    Canary {
        percent: u8,
        bucket: u8,
    },
    /// Another try of a target already in the list.
    Retry,
}

impl fmt::Display for PlanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanReason::Ordered { position } => write!(f, "ordered(pos={position})"),
            PlanReason::Weighted { weight, total } => write!(f, "weighted({weight}/{total})"),
            PlanReason::LeastLatency { latency_ms, observed } => {
                write!(f, "least-latency({:.0}ms {})", latency_ms, if *observed { "observed" } else { "estimated" })
            }
            PlanReason::Nearest { latency_ms, distance_km } => match distance_km {
                Some(km) => write!(f, "nearest({km:.0}km ~{latency_ms:.0}ms)"),
                None => write!(f, "nearest(location-unknown)"),
            },
            PlanReason::Carbon { score } => write!(f, "carbon(score={score:.2})"),
            PlanReason::Canary { percent, bucket } => write!(f, "canary({bucket}<{percent})"),
            PlanReason::Retry => f.write_str("retry"),
        }
    }
}

/// One attempt of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTarget {
    /// Index into `RouteSpec::targets`.
    pub index: usize,
    pub id: String,
    pub reason: PlanReason,
    /// The target's circuit is half-open: this attempt is its single probe, and the host must
    /// call [`HealthState::record_probe`] before sending it.
    pub probe: bool,
}

/// Estimates for one candidate target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetEstimate {
    pub index: usize,
    pub id: String,
    pub latency_ms: f64,
    pub distance_km: Option<f64>,
    pub gco2e: f64,
    pub cost: Nanos,
}

/// The routing decision, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutePlan {
    pub route: String,
    pub attempts: Vec<PlannedTarget>,
    pub excluded: Vec<(String, ExclusionReason)>,
    /// `canary` or `stable` when the route has canary targets.
    pub variant: Option<String>,
    /// Index of the matched condition, if any.
    pub condition: Option<usize>,
    pub estimates: Vec<TargetEstimate>,
    /// Region of the first attempt (for the header).
    pub region: String,
    /// Estimated gCO2e of the first attempt.
    pub chosen_gco2e: f64,
    /// Estimated gCO2e of the default choice: the first candidate in the spec's order.
    pub default_gco2e: f64,
}

impl RoutePlan {
    /// The first attempt (a plan always has at least one).
    pub fn primary(&self) -> Option<&PlannedTarget> {
        self.attempts.first()
    }

    /// Estimated grams saved versus the default choice (negative when the choice emits more,
    /// e.g. because latency outweighed carbon).
    pub fn saving_gco2e(&self) -> f64 {
        self.default_gco2e - self.chosen_gco2e
    }

    /// A short, explainable header value, e.g.
    /// `target=eu-claude; region=europe-west4; reason=carbon(score=0.31); excluded=us-openai:residency`.
    /// Only ids from configuration and fixed words appear; characters that are not header-safe
    /// are replaced.
    pub fn header_value(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.primary() {
            parts.push(format!("target={}", header_safe(&p.id)));
            parts.push(format!("region={}", header_safe(&self.region)));
            parts.push(format!("reason={}", p.reason));
        }
        if let Some(v) = &self.variant {
            parts.push(format!("variant={v}"));
        }
        if let Some(c) = self.condition {
            parts.push(format!("condition={c}"));
        }
        if !self.excluded.is_empty() {
            let list: Vec<String> = self.excluded.iter().map(|(id, r)| format!("{}:{}", header_safe(id), r.short())).collect();
            parts.push(format!("excluded={}", list.join(",")));
        }
        parts.join("; ")
    }
}

/// Keep visible ASCII except the separators the header uses.
pub fn header_safe(s: &str) -> String {
    s.chars().take(64).map(|c| if c.is_ascii_graphic() && !matches!(c, ';' | ',' | '=' | ':') { c } else { '_' }).collect()
}

/// Why no plan could be made. The caller must answer with a clear error (never route elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum RouteError {
    /// The route has no targets at all (a configuration error).
    EmptyRoute { route: String },
    /// Residency (or a condition) left no permitted target.
    NoAllowedTarget { route: String, excluded: Vec<(String, ExclusionReason)> },
    /// Permitted targets exist but every one is unhealthy right now.
    AllUnhealthy { route: String, excluded: Vec<(String, ExclusionReason)> },
    /// A condition names a route that does not exist.
    UnknownRoute { route: String },
    /// Conditions redirect in a loop or too deep.
    RouteLoop { route: String },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::EmptyRoute { route } => write!(f, "route '{route}' has no targets"),
            RouteError::NoAllowedTarget { route, excluded } => {
                write!(f, "route '{route}': no target is allowed for this request ({} excluded, e.g. by data residency)", excluded.len())
            }
            RouteError::AllUnhealthy { route, excluded } => {
                write!(f, "route '{route}': every allowed target is temporarily unavailable ({} excluded)", excluded.len())
            }
            RouteError::UnknownRoute { route } => write!(f, "route '{route}' is not configured"),
            RouteError::RouteLoop { route } => write!(f, "route conditions loop at '{route}'"),
        }
    }
}

impl std::error::Error for RouteError {}

/// FNV-1a 64: a stable hash for sticky bucketing (the same consumer lands in the same bucket
/// on every isolate and every release).
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // Separator so ("ab","c") and ("a","bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// SplitMix64 step: derives well-mixed numbers from the caller's one random value.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn target(id: &str, region: &str, jurisdiction: &str) -> Target {
        Target {
            id: id.into(),
            provider: "p".into(),
            model: "m".into(),
            region: region.into(),
            jurisdiction: jurisdiction.into(),
            weight: 1,
            canary: None,
            input_per_million: Nanos(3_000_000_000),
            output_per_million: Nanos(15_000_000_000),
            params_b: 70,
        }
    }

    pub fn spec_with(targets: Vec<Target>) -> RouteSpec {
        RouteSpec {
            name: "chat".into(),
            targets,
            strategy: Strategy::Ordered,
            fallback_on: [FallbackTrigger::RateLimited, FallbackTrigger::ServerError, FallbackTrigger::Timeout, FallbackTrigger::Connect].into_iter().collect(),
            max_attempts: 3,
            backoff: Backoff { base_ms: 100, max_ms: 2_000 },
            circuit_breaker: CircuitBreaker { failure_threshold: 3, open_ms: 30_000 },
            conditions: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn fnv_is_stable_and_separates_parts() {
        // FNV-1a 64 of "a" is a published test vector.
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
    }

    #[test]
    fn cost_rounds_up_and_never_overflows() {
        let t = target("a", "eu-west-1", "eu");
        assert_eq!(t.cost(1_000_000, 0), Nanos(3_000_000_000));
        assert_eq!(t.cost(1, 0), Nanos(3_000));
        let mut big = t.clone();
        big.output_per_million = Nanos(u64::MAX);
        assert_eq!(big.cost(0, u64::MAX), Nanos(u64::MAX));
    }

    #[test]
    fn header_safe_strips_separators() {
        assert_eq!(header_safe("a;b,c=d:e f\n"), "a_b_c_d_e_f_");
    }

    #[test]
    fn route_spec_parses_from_json() {
        let json = r#"{"name":"chat","strategy":{"type":"carbon","weights":{"latency":0.3,"cost":0.2,"carbon":0.5}},
            "fallback_on":["rate_limited","server_error"],"max_attempts":2,"backoff":{"base_ms":100,"max_ms":1000},
            "circuit_breaker":{"failure_threshold":3,"open_ms":30000},
            "targets":[{"id":"eu","provider":"anthropic","model":"claude","region":"eu-west-1","jurisdiction":"eu",
              "input_per_million":3000000000,"output_per_million":15000000000,"params_b":200}],
            "conditions":[{"when":[{"tier":"premium"}],"then":{"targets":["eu"]}}]}"#;
        let spec: RouteSpec = serde_json::from_str(json).expect("parse");
        assert_eq!(spec.targets[0].weight, 1);
        assert!(matches!(spec.strategy, Strategy::Carbon { .. }));
        assert_eq!(spec.conditions.len(), 1);
    }
}
