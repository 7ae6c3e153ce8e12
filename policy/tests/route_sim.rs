//! The routing simulation at a smaller size: residency is never violated by a policy that
//! applies the filter, and carbon-aware routing emits less than nearest-only.

use policy::route::sim::{run, Policy};

#[test]
fn filtered_policies_keep_every_constrained_request_in_jurisdiction() {
    let results = run(3_000, 11);
    for r in &results {
        assert_eq!(r.requests, 3_000);
        if r.policy == Policy::RoundRobinUnfiltered {
            assert!(r.in_jurisdiction_share() < 0.9, "the naive balancer should visibly violate residency: {r:?}");
            continue;
        }
        assert!(r.constrained > 500, "{r:?}");
        assert_eq!(r.constrained_in_jurisdiction, r.constrained, "{:?}", r.policy);
        assert_eq!(r.refused, 0, "every constrained tenant has an allowed target");
    }
}

#[test]
fn carbon_aware_emits_less_than_nearest() {
    let results = run(3_000, 11);
    let get = |p: Policy| results.iter().find(|r| r.policy == p).cloned().expect("policy present");
    let (nearest, carbon) = (get(Policy::Nearest), get(Policy::CarbonAware));
    assert!(carbon.gco2e < nearest.gco2e * 0.9, "carbon {} vs nearest {}", carbon.gco2e, nearest.gco2e);
    // Nearest is the latency floor; carbon-aware pays some latency for it.
    assert!(nearest.p50_ms <= carbon.p50_ms);
}

#[test]
fn simulation_is_deterministic() {
    assert_eq!(run(500, 3), run(500, 3));
}
