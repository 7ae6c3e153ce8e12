//! The routing planner through its public API, as the edge will drive it: plan, try, record
//! the outcome in the health view, plan again.

use policy::limits::Nanos;
use policy::route::{
    backoff_ms, plan, should_fall_back, Backoff, CircuitBreaker, ExclusionReason, FailureKind, FallbackTrigger, HealthView, RequestFacts, RouteError,
    RouteSpec, ScoreWeights, Strategy, Target,
};

fn target(id: &str, region: &str, jurisdiction: &str) -> Target {
    Target {
        id: id.into(),
        provider: "anthropic".into(),
        model: "claude".into(),
        region: region.into(),
        jurisdiction: jurisdiction.into(),
        weight: 1,
        canary: None,
        input_per_million: Nanos(3_000_000_000),
        output_per_million: Nanos(15_000_000_000),
        params_b: 400,
    }
}

fn spec() -> RouteSpec {
    RouteSpec {
        name: "chat".into(),
        targets: vec![target("us-openai", "us-east-1", "us"), target("eu-frankfurt", "eu-central-1", "eu"), target("eu-claude", "europe-west4", "eu")],
        strategy: Strategy::Carbon { weights: ScoreWeights { latency: 0.3, cost: 0.2, carbon: 0.5 } },
        fallback_on: [FallbackTrigger::ServerError, FallbackTrigger::Timeout].into_iter().collect(),
        max_attempts: 2,
        backoff: Backoff { base_ms: 200, max_ms: 5_000 },
        circuit_breaker: CircuitBreaker { failure_threshold: 2, open_ms: 60_000 },
        conditions: vec![],
    }
}

fn eu_caller() -> RequestFacts {
    RequestFacts { country: Some("DE".into()), allowed_jurisdictions: Some(["eu".to_string()].into_iter().collect()), ..Default::default() }
}

#[test]
fn fail_over_and_circuit_then_clear_error_when_nothing_allowed_is_left() {
    let spec = spec();
    let mut health = HealthView::default();
    let first = plan(&spec, &eu_caller(), &health, 0, 42).expect("plan");
    assert!(first.attempts.iter().all(|a| a.id.starts_with("eu-")));
    assert!(first.header_value().contains("excluded=us-openai:residency"), "{}", first.header_value());

    // The primary fails twice with 503: the breaker opens, the other EU target takes over.
    let primary = first.attempts[0].id.clone();
    let kind = FailureKind::ServerError { status: 503 };
    assert!(should_fall_back(&spec, kind));
    health.entry(&primary).record_failure(kind, 1_000);
    health.entry(&primary).record_failure(kind, 2_000);
    let second = plan(&spec, &eu_caller(), &health, 3_000, 42).expect("plan");
    assert_ne!(second.attempts[0].id, primary);
    assert!(second.excluded.iter().any(|(id, r)| id == &primary && matches!(r, ExclusionReason::CircuitOpen { .. })));

    // The other one fails too: the EU caller gets AllUnhealthy, never the US target.
    let other = second.attempts[0].id.clone();
    health.entry(&other).record_failure(FailureKind::Timeout, 3_000);
    health.entry(&other).record_failure(FailureKind::Timeout, 3_100);
    match plan(&spec, &eu_caller(), &health, 4_000, 42) {
        Err(e @ RouteError::AllUnhealthy { .. }) => assert!(e.to_string().contains("temporarily unavailable")),
        other => panic!("expected AllUnhealthy, got {other:?}"),
    }
    // An unconstrained caller still gets the US target.
    let anyone = RequestFacts { country: Some("DE".into()), ..Default::default() };
    assert_eq!(plan(&spec, &anyone, &health, 4_000, 42).expect("plan").attempts[0].id, "us-openai");

    // A retry waits at least the provider's Retry-After.
    assert!(backoff_ms(1, &spec, Some(1_500), 7) >= 1_500);
}

#[test]
fn health_survives_a_round_trip_through_storage() {
    let mut health = HealthView::default();
    health.entry("eu-claude").record_success(250, 10);
    health.entry("eu-frankfurt").record_failure(FailureKind::RateLimited { retry_after_ms: Some(3_000) }, 10);
    let stored = serde_json::to_string(&health).expect("serialise");
    let loaded: HealthView = serde_json::from_str(&stored).expect("parse");
    let p = plan(&spec(), &eu_caller(), &loaded, 20, 1).expect("plan");
    assert_eq!(p.attempts[0].id, "eu-claude");
    assert!(p.excluded.iter().any(|(id, r)| id == "eu-frankfurt" && matches!(r, ExclusionReason::RateLimited { until_ms: 3_010 })));
}
