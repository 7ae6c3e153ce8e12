//! The planner: filters, then orders, then explains. See the module docs of [`super`] for the
//! order of the steps and why residency comes first.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::condition::first_match;
use super::{
    fnv1a64, geo, splitmix64, CarbonTable, Circuit, ConditionAction, ExclusionReason, GeoTable, HealthView, PlanReason, PlannedTarget, RequestFacts,
    RouteError, RoutePlan, RouteSpec, ScoreWeights, Strategy, TargetEstimate, MAX_ATTEMPTS_CAP,
};

/// Plan a request with the shipped region and carbon tables.
pub fn plan(spec: &RouteSpec, facts: &RequestFacts, health: &HealthView, now_ms: u64, random: u64) -> Result<RoutePlan, RouteError> {
    plan_with_tables(spec, facts, health, now_ms, random, GeoTable::shipped(), CarbonTable::shipped())
}

/// [`plan`] with explicit tables (a live-refreshed [`CarbonTable`], or test fixtures).
pub fn plan_with_tables(
    spec: &RouteSpec,
    facts: &RequestFacts,
    health: &HealthView,
    now_ms: u64,
    random: u64,
    geo: &GeoTable,
    carbon: &CarbonTable,
) -> Result<RoutePlan, RouteError> {
    let route = spec.name.clone();
    if spec.targets.is_empty() {
        return Err(RouteError::EmptyRoute { route });
    }
    let mut excluded: Vec<(String, ExclusionReason)> = Vec::new();

    // 1. Residency: a hard filter before anything else can prefer a target.
    let mut candidates = residency_filter(spec, facts, &mut excluded);
    if candidates.is_empty() {
        return Err(RouteError::NoAllowedTarget { route, excluded });
    }

    // 2. Health.
    let mut probes = BTreeSet::new();
    candidates.retain(|&i| {
        let id = &spec.targets[i].id;
        let Some(state) = health.get(id) else { return true };
        if let Some(until_ms) = state.cooling_down(now_ms) {
            excluded.push((id.clone(), ExclusionReason::RateLimited { until_ms }));
            return false;
        }
        match state.circuit(&spec.circuit_breaker, now_ms) {
            Circuit::Closed => true,
            Circuit::HalfOpen => {
                probes.insert(i);
                true
            }
            Circuit::Open { until_ms } => {
                excluded.push((id.clone(), ExclusionReason::CircuitOpen { until_ms }));
                false
            }
        }
    });
    if candidates.is_empty() {
        return Err(RouteError::AllUnhealthy { route, excluded });
    }

    // 3. Conditions (route-to-route redirects were followed by `resolve_route`).
    let mut matched = None;
    if let Some((index, cond)) = first_match(spec, facts) {
        if let ConditionAction::Targets(ids) = &cond.then {
            matched = Some(index);
            candidates.retain(|&i| {
                let keep = ids.contains(&spec.targets[i].id);
                if !keep {
                    excluded.push((spec.targets[i].id.clone(), ExclusionReason::Condition { index }));
                }
                keep
            });
            if candidates.is_empty() {
                let selected_unhealthy = excluded.iter().any(|(id, r)| r.is_health() && ids.contains(id));
                return Err(if selected_unhealthy { RouteError::AllUnhealthy { route, excluded } } else { RouteError::NoAllowedTarget { route, excluded } });
            }
        }
    }
    let default_index = candidates.iter().copied().min().unwrap_or(0);

    // 4. Canary split.
    let (canary_first, variant) = canary_split(spec, facts, random, &mut candidates, &mut excluded);

    // Estimates for everything still in play.
    let estimates = estimate_all(spec, facts, health, geo, carbon, canary_first.iter().map(|(i, _)| *i).chain(candidates.iter().copied()));

    // 5. Strategy order.
    let ordered = order(spec, &candidates, &estimates, health, random, geo.request_point(facts).is_some());

    let mut first_pass: Vec<(usize, PlanReason)> = canary_first;
    first_pass.extend(ordered);
    let attempts = expand_attempts(spec, &first_pass, &probes);

    let gco2e_of = |i: usize| estimates.iter().find(|e| e.index == i).map_or(0.0, |e| e.gco2e);
    let primary = attempts.first().map_or(default_index, |a| a.index);
    let default_gco2e =
        estimates.iter().find(|e| e.index == default_index).map_or_else(|| estimate_one(spec, facts, health, geo, carbon, default_index).gco2e, |e| e.gco2e);
    Ok(RoutePlan {
        route: spec.name.clone(),
        region: spec.targets[primary].region.clone(),
        chosen_gco2e: gco2e_of(primary),
        default_gco2e,
        attempts,
        excluded,
        variant,
        condition: matched,
        estimates,
    })
}

fn residency_filter(spec: &RouteSpec, facts: &RequestFacts, excluded: &mut Vec<(String, ExclusionReason)>) -> Vec<usize> {
    let allowed: Option<BTreeSet<String>> = facts.allowed_jurisdictions.as_ref().map(|set| set.iter().map(|j| j.trim().to_ascii_lowercase()).collect());
    let mut out = Vec::new();
    for (i, t) in spec.targets.iter().enumerate() {
        match &allowed {
            Some(set) if !set.contains(&t.jurisdiction.trim().to_ascii_lowercase()) => {
                excluded.push((t.id.clone(), ExclusionReason::Residency { jurisdiction: t.jurisdiction.clone() }));
            }
            _ => out.push(i),
        }
    }
    out
}

/// The request's canary bucket in 0..100: sticky per consumer and route, random otherwise.
pub(crate) fn canary_bucket(route: &str, consumer: Option<&str>, random: u64) -> u8 {
    let h = match consumer {
        Some(c) => fnv1a64(&[c.as_bytes(), route.as_bytes()]),
        None => splitmix64(random ^ 0xca11_ab1e),
    };
    (h % 100) as u8
}

/// Removes canary targets from `candidates`; returns the ones this request is bucketed into
/// (tried first) and the variant label.
fn canary_split(
    spec: &RouteSpec,
    facts: &RequestFacts,
    random: u64,
    candidates: &mut Vec<usize>,
    excluded: &mut Vec<(String, ExclusionReason)>,
) -> (Vec<(usize, PlanReason)>, Option<String>) {
    let canaries: Vec<(usize, u8)> = candidates.iter().filter_map(|&i| spec.targets[i].canary.map(|p| (i, p.min(100)))).collect();
    if canaries.is_empty() {
        return (Vec::new(), None);
    }
    let bucket = canary_bucket(&spec.name, facts.consumer.as_deref(), random);
    candidates.retain(|i| !canaries.iter().any(|(c, _)| c == i));
    let chosen: Vec<(usize, PlanReason)> =
        canaries.iter().filter(|(_, p)| bucket < *p).map(|&(i, percent)| (i, PlanReason::Canary { percent, bucket })).collect();
    if !chosen.is_empty() {
        return (chosen, Some("canary".into()));
    }
    if candidates.is_empty() {
        // Only canary targets survived the filters: use them rather than fail.
        let forced = canaries.iter().map(|&(i, percent)| (i, PlanReason::Canary { percent, bucket })).collect();
        return (forced, Some("canary".into()));
    }
    for (i, _) in canaries {
        excluded.push((spec.targets[i].id.clone(), ExclusionReason::CanaryNotSelected));
    }
    (Vec::new(), Some("stable".into()))
}

fn estimate_one(spec: &RouteSpec, facts: &RequestFacts, health: &HealthView, geo: &GeoTable, carbon: &CarbonTable, i: usize) -> TargetEstimate {
    let t = &spec.targets[i];
    let distance_km = geo.distance_km(geo.request_point(facts), &t.region);
    let observed = health.get(&t.id).and_then(|h| h.ewma_latency_ms).filter(|v| v.is_finite() && *v >= 0.0);
    let input = facts.request.input_tokens;
    let output = facts.request.output_estimate();
    TargetEstimate {
        index: i,
        id: t.id.clone(),
        latency_ms: observed.unwrap_or_else(|| geo::latency_from_distance(distance_km)),
        distance_km,
        gco2e: carbon.gco2e(input, output, t.params_b, &t.provider, &t.region),
        cost: t.cost(input, output),
    }
}

fn estimate_all(
    spec: &RouteSpec,
    facts: &RequestFacts,
    health: &HealthView,
    geo: &GeoTable,
    carbon: &CarbonTable,
    indices: impl Iterator<Item = usize>,
) -> Vec<TargetEstimate> {
    indices.map(|i| estimate_one(spec, facts, health, geo, carbon, i)).collect()
}

fn order(spec: &RouteSpec, candidates: &[usize], est: &[TargetEstimate], health: &HealthView, random: u64, located: bool) -> Vec<(usize, PlanReason)> {
    let get = |i: usize| est.iter().find(|e| e.index == i);
    match spec.strategy {
        Strategy::Ordered => candidates.iter().enumerate().map(|(position, &i)| (i, PlanReason::Ordered { position })).collect(),
        Strategy::Weighted => weighted_order(spec, candidates, random),
        Strategy::LeastLatency => {
            let mut v: Vec<(usize, PlanReason)> = candidates
                .iter()
                .map(|&i| {
                    let observed = health.get(&spec.targets[i].id).and_then(|h| h.ewma_latency_ms).is_some();
                    (i, PlanReason::LeastLatency { latency_ms: get(i).map_or(f64::MAX, |e| e.latency_ms), observed })
                })
                .collect();
            v.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)));
            v
        }
        Strategy::Nearest => {
            let mut v: Vec<(usize, PlanReason)> = candidates
                .iter()
                .map(|&i| {
                    let distance_km = get(i).and_then(|e| e.distance_km);
                    let latency_ms = geo::latency_from_distance(distance_km);
                    (i, PlanReason::Nearest { latency_ms, distance_km: distance_km.filter(|_| located) })
                })
                .collect();
            v.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)));
            v
        }
        Strategy::Carbon { weights } => {
            let mut v: Vec<(usize, PlanReason)> =
                carbon_scores(candidates, est, weights).into_iter().map(|(i, score)| (i, PlanReason::Carbon { score })).collect();
            v.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)));
            v
        }
    }
}

/// The number a strategy sorts by (sorts are stable, so ties keep configuration order).
fn key(r: &PlanReason) -> f64 {
    match r {
        PlanReason::LeastLatency { latency_ms, .. } | PlanReason::Nearest { latency_ms, .. } => *latency_ms,
        PlanReason::Carbon { score } => *score,
        _ => 0.0,
    }
}

/// Weighted random order without replacement: the first pick is proportional to weight, then
/// the next among the rest, and so on. Zero-weight targets come last, in configuration order.
fn weighted_order(spec: &RouteSpec, candidates: &[usize], random: u64) -> Vec<(usize, PlanReason)> {
    let total: u64 = candidates.iter().map(|&i| u64::from(spec.targets[i].weight)).sum();
    let mut rest: Vec<usize> = candidates.to_vec();
    let mut out = Vec::with_capacity(rest.len());
    let mut r = random;
    while !rest.is_empty() {
        let remaining: u64 = rest.iter().map(|&i| u64::from(spec.targets[i].weight)).sum();
        if remaining == 0 {
            out.extend(rest.drain(..).map(|i| (i, PlanReason::Weighted { weight: 0, total })));
            break;
        }
        r = splitmix64(r);
        let mut x = r % remaining;
        let pos = rest
            .iter()
            .position(|&i| {
                let w = u64::from(spec.targets[i].weight);
                if x < w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
            .unwrap_or(0);
        let i = rest.remove(pos);
        out.push((i, PlanReason::Weighted { weight: spec.targets[i].weight, total }));
    }
    out
}

/// Score = sum of weight x value / max value over the candidates, per dimension. Each dimension
/// is scaled to 0..1 so grams, nanodollars and milliseconds can be added; lower is better.
pub(crate) fn carbon_scores(candidates: &[usize], est: &[TargetEstimate], weights: ScoreWeights) -> Vec<(usize, f64)> {
    let clamp = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let (wl, wc, wg) = (clamp(weights.latency), clamp(weights.cost), clamp(weights.carbon));
    let sum = wl + wc + wg;
    let (wl, wc, wg) = if sum > 0.0 { (wl / sum, wc / sum, wg / sum) } else { (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0) };
    let rows: Vec<(usize, f64, f64, f64)> =
        candidates.iter().filter_map(|&i| est.iter().find(|e| e.index == i)).map(|e| (e.index, e.latency_ms, e.cost.0 as f64, e.gco2e)).collect();
    let max = |f: fn(&(usize, f64, f64, f64)) -> f64| rows.iter().map(f).fold(0.0_f64, f64::max);
    let (ml, mc, mg) = (max(|r| r.1), max(|r| r.2), max(|r| r.3));
    let norm = |v: f64, m: f64| if m > 0.0 && v.is_finite() { v / m } else { 0.0 };
    let mut out: Vec<(usize, f64)> = rows.iter().map(|&(i, l, c, g)| (i, wl * norm(l, ml) + wc * norm(c, mc) + wg * norm(g, mg))).collect();
    out.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal));
    out
}

/// The first pass in order, then retries from the top until `max_attempts`.
fn expand_attempts(spec: &RouteSpec, first_pass: &[(usize, PlanReason)], probes: &BTreeSet<usize>) -> Vec<PlannedTarget> {
    let n = spec.max_attempts.clamp(1, MAX_ATTEMPTS_CAP) as usize;
    (0..n)
        .filter_map(|k| {
            let (i, reason) = first_pass.get(k % first_pass.len().max(1))?;
            Some(PlannedTarget {
                index: *i,
                id: spec.targets[*i].id.clone(),
                reason: if k < first_pass.len() { reason.clone() } else { PlanReason::Retry },
                probe: probes.contains(i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::limits::Nanos;
    use crate::route::test_support::{spec_with, target};
    use crate::route::{Condition, FailureKind, Predicate};

    fn eu_only() -> RequestFacts {
        RequestFacts { allowed_jurisdictions: Some(["eu".to_string()].into_iter().collect()), country: Some("DE".into()), ..Default::default() }
    }

    fn mixed() -> RouteSpec {
        spec_with(vec![target("us-a", "us-east-1", "us"), target("eu-a", "eu-central-1", "eu"), target("eu-b", "eu-west-3", "eu")])
    }

    fn ids(p: &RoutePlan) -> Vec<&str> {
        p.attempts.iter().map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn residency_removes_other_jurisdictions_first() {
        let p = plan(&mixed(), &eu_only(), &HealthView::default(), 0, 1).expect("plan");
        assert_eq!(ids(&p), ["eu-a", "eu-b", "eu-a"]);
        assert_eq!(p.excluded, vec![("us-a".to_string(), ExclusionReason::Residency { jurisdiction: "us".into() })]);
        assert_eq!(p.attempts[2].reason, PlanReason::Retry);
    }

    #[test]
    fn residency_is_case_insensitive_and_global_is_not_eu() {
        let mut spec = mixed();
        spec.targets[0].jurisdiction = "global".into();
        spec.targets[1].jurisdiction = "EU".into();
        let p = plan(&spec, &eu_only(), &HealthView::default(), 0, 1).expect("plan");
        assert_eq!(p.attempts[0].id, "eu-a");
        assert!(p.excluded.iter().any(|(id, _)| id == "us-a"));
    }

    #[test]
    fn no_allowed_target_is_an_error_not_a_silent_fallback() {
        let spec = spec_with(vec![target("us-a", "us-east-1", "us"), target("us-b", "us-west-2", "us")]);
        let err = plan(&spec, &eu_only(), &HealthView::default(), 0, 1).expect_err("must not route");
        match err {
            RouteError::NoAllowedTarget { excluded, .. } => assert_eq!(excluded.len(), 2),
            other => panic!("wrong error {other:?}"),
        }
        // An empty allow-list fails closed.
        let mut f = eu_only();
        f.allowed_jurisdictions = Some(BTreeSet::new());
        assert!(matches!(plan(&mixed(), &f, &HealthView::default(), 0, 1), Err(RouteError::NoAllowedTarget { .. })));
        // No constraint: everything allowed.
        f.allowed_jurisdictions = None;
        assert_eq!(plan(&mixed(), &f, &HealthView::default(), 0, 1).expect("plan").attempts[0].id, "us-a");
    }

    #[test]
    fn unhealthy_allowed_targets_give_all_unhealthy_even_if_others_are_healthy() {
        let spec = mixed();
        let mut h = HealthView::default();
        for id in ["eu-a", "eu-b"] {
            for t in 0..3 {
                h.entry(id).record_failure(FailureKind::ServerError { status: 503 }, t);
            }
        }
        let err = plan(&spec, &eu_only(), &h, 10, 1).expect_err("unhealthy");
        assert!(matches!(err, RouteError::AllUnhealthy { ref excluded, .. } if excluded.len() == 3), "{err:?}");
        // After open_ms both are half-open: planned, each as a probe.
        let p = plan(&spec, &eu_only(), &h, 30_010, 1).expect("half-open");
        assert!(p.attempts.iter().all(|a| a.probe));
    }

    #[test]
    fn open_circuit_and_cooldown_are_excluded_with_reasons() {
        let spec = mixed();
        let mut h = HealthView::default();
        for t in 0..3 {
            h.entry("eu-a").record_failure(FailureKind::Timeout, t);
        }
        let p = plan(&spec, &eu_only(), &h, 10, 1).expect("plan");
        assert_eq!(ids(&p), ["eu-b", "eu-b", "eu-b"]);
        assert!(p.excluded.contains(&("eu-a".to_string(), ExclusionReason::CircuitOpen { until_ms: 30_002 })));
        let mut h = HealthView::default();
        h.entry("eu-b").record_failure(FailureKind::RateLimited { retry_after_ms: Some(500) }, 0);
        let p = plan(&spec, &eu_only(), &h, 100, 1).expect("plan");
        assert!(p.excluded.contains(&("eu-b".to_string(), ExclusionReason::RateLimited { until_ms: 500 })));
        let p = plan(&spec, &eu_only(), &h, 500, 1).expect("plan");
        assert_eq!(p.excluded.len(), 1);
    }

    #[test]
    fn empty_route_is_an_error() {
        assert!(matches!(plan(&spec_with(vec![]), &eu_only(), &HealthView::default(), 0, 0), Err(RouteError::EmptyRoute { .. })));
    }

    #[test]
    fn condition_selects_subset() {
        let mut spec = mixed();
        spec.targets[2].params_b = 400;
        spec.conditions = vec![Condition { when: vec![Predicate::Tier("premium".into())], then: ConditionAction::Targets(vec!["eu-b".into()]) }];
        let mut f = eu_only();
        assert_eq!(plan(&spec, &f, &HealthView::default(), 0, 1).expect("plan").attempts[0].id, "eu-a");
        f.tier = Some("premium".into());
        let p = plan(&spec, &f, &HealthView::default(), 0, 1).expect("plan");
        assert_eq!(ids(&p), ["eu-b", "eu-b", "eu-b"]);
        assert_eq!(p.condition, Some(0));
        assert!(p.excluded.contains(&("eu-a".to_string(), ExclusionReason::Condition { index: 0 })));
        // A condition selecting only a disallowed target: error, not the other targets.
        spec.conditions[0].then = ConditionAction::Targets(vec!["us-a".into()]);
        assert!(matches!(plan(&spec, &f, &HealthView::default(), 0, 1), Err(RouteError::NoAllowedTarget { .. })));
    }

    #[test]
    fn weighted_distribution_matches_weights() {
        let mut spec = spec_with(vec![target("a", "eu-west-1", "eu"), target("b", "eu-west-3", "eu"), target("c", "eu-north-1", "eu")]);
        spec.strategy = Strategy::Weighted;
        spec.targets[0].weight = 70;
        spec.targets[1].weight = 20;
        spec.targets[2].weight = 10;
        let mut counts = BTreeMap::new();
        let n = 20_000u64;
        for seed in 0..n {
            let p = plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, seed).expect("plan");
            *counts.entry(p.attempts[0].id.clone()).or_insert(0u64) += 1;
            // Fallbacks are the other targets, each once.
            let mut seen: Vec<&str> = ids(&p);
            seen.sort();
            assert_eq!(seen, ["a", "b", "c"]);
        }
        for (id, want) in [("a", 0.70), ("b", 0.20), ("c", 0.10)] {
            let got = counts[id] as f64 / n as f64;
            assert!((got - want).abs() < 0.015, "{id}: {got} vs {want}");
        }
    }

    #[test]
    fn zero_weight_is_fallback_only() {
        let mut spec = spec_with(vec![target("a", "eu-west-1", "eu"), target("b", "eu-west-3", "eu")]);
        spec.strategy = Strategy::Weighted;
        spec.targets[0].weight = 0;
        for seed in 0..200 {
            let p = plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, seed).expect("plan");
            assert_eq!(ids(&p)[..2], ["b", "a"]);
        }
    }

    #[test]
    fn canary_is_sticky_per_consumer_and_near_its_percent() {
        let mut spec = spec_with(vec![target("stable", "eu-west-1", "eu"), target("new", "eu-west-3", "eu")]);
        spec.targets[1].canary = Some(10);
        let mut hits = 0;
        for c in 0..5_000 {
            let f = RequestFacts { consumer: Some(format!("consumer-{c}")), ..Default::default() };
            let first = plan(&spec, &f, &HealthView::default(), 0, 1).expect("plan");
            for seed in [2, 3, 99] {
                let again = plan(&spec, &f, &HealthView::default(), 0, seed).expect("plan");
                assert_eq!(again.attempts[0].id, first.attempts[0].id, "sticky");
            }
            if first.variant.as_deref() == Some("canary") {
                hits += 1;
                assert_eq!(ids(&first)[..2], ["new", "stable"], "stable target stays as fallback");
            } else {
                assert_eq!(first.variant.as_deref(), Some("stable"));
                assert!(first.excluded.contains(&("new".to_string(), ExclusionReason::CanaryNotSelected)));
            }
        }
        let share = hits as f64 / 5_000.0;
        assert!((share - 0.10).abs() < 0.02, "{share}");
        assert_eq!(canary_bucket("chat", Some("alice"), 1), canary_bucket("chat", Some("alice"), 2));
    }

    #[test]
    fn canary_without_consumer_uses_random() {
        let mut spec = spec_with(vec![target("stable", "eu-west-1", "eu"), target("new", "eu-west-3", "eu")]);
        spec.targets[1].canary = Some(50);
        let canary =
            (0..2_000u64).filter(|&s| plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, s).expect("plan").attempts[0].id == "new").count();
        assert!((800..1200).contains(&canary), "{canary}");
    }

    #[test]
    fn canary_never_bypasses_residency() {
        let mut spec = spec_with(vec![target("stable", "eu-west-1", "eu"), target("new", "us-east-1", "us")]);
        spec.targets[1].canary = Some(100);
        let p = plan(&spec, &eu_only(), &HealthView::default(), 0, 1).expect("plan");
        assert_eq!(p.attempts[0].id, "stable");
        assert_eq!(p.variant, None);
    }

    #[test]
    fn nearest_orders_by_distance_from_country_or_coordinates() {
        let mut spec =
            spec_with(vec![target("tokyo", "ap-northeast-1", "jp"), target("virginia", "us-east-1", "us"), target("frankfurt", "eu-central-1", "eu")]);
        spec.strategy = Strategy::Nearest;
        let de = RequestFacts { country: Some("DE".into()), ..Default::default() };
        assert_eq!(ids(&plan(&spec, &de, &HealthView::default(), 0, 0).expect("plan")), ["frankfurt", "virginia", "tokyo"]);
        let nyc = RequestFacts { coordinates: Some((40.7, -74.0)), country: Some("DE".into()), ..Default::default() };
        let p = plan(&spec, &nyc, &HealthView::default(), 0, 0).expect("plan");
        assert_eq!(ids(&p), ["virginia", "frankfurt", "tokyo"]);
        assert!(matches!(p.attempts[0].reason, PlanReason::Nearest { distance_km: Some(km), .. } if km < 500.0));
        // Unknown location: configuration order, said so.
        let p = plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, 0).expect("plan");
        assert_eq!(ids(&p), ["tokyo", "virginia", "frankfurt"]);
        assert!(p.header_value().contains("nearest(location-unknown)"), "{}", p.header_value());
    }

    #[test]
    fn least_latency_prefers_observations_then_distance() {
        let mut spec = spec_with(vec![target("far", "ap-northeast-1", "jp"), target("near", "eu-central-1", "eu"), target("mid", "us-east-1", "us")]);
        spec.strategy = Strategy::LeastLatency;
        let de = RequestFacts { country: Some("DE".into()), ..Default::default() };
        assert_eq!(plan(&spec, &de, &HealthView::default(), 0, 0).expect("plan").attempts[0].id, "near");
        let mut h = HealthView::default();
        h.entry("near").record_success(900, 0);
        h.entry("far").record_success(40, 0);
        let p = plan(&spec, &de, &h, 0, 0).expect("plan");
        assert_eq!(ids(&p), ["far", "mid", "near"]);
        assert!(matches!(p.attempts[0].reason, PlanReason::LeastLatency { observed: true, .. }));
        assert!(matches!(p.attempts[1].reason, PlanReason::LeastLatency { observed: false, .. }));
    }

    fn carbon_spec(weights: ScoreWeights) -> RouteSpec {
        let mut spec = spec_with(vec![target("frankfurt", "eu-central-1", "eu"), target("paris", "eu-west-3", "eu"), target("stockholm", "eu-north-1", "eu")]);
        spec.strategy = Strategy::Carbon { weights };
        spec
    }

    #[test]
    fn carbon_aware_prefers_clean_grid_and_reports_saving() {
        let spec = carbon_spec(ScoreWeights { latency: 0.2, cost: 0.2, carbon: 0.6 });
        let de = RequestFacts { country: Some("DE".into()), ..Default::default() };
        let p = plan(&spec, &de, &HealthView::default(), 0, 0).expect("plan");
        assert_ne!(p.attempts[0].id, "frankfurt");
        assert!(p.chosen_gco2e < p.default_gco2e);
        assert!(p.saving_gco2e() > 0.0);
        assert_eq!(p.estimates.len(), 3);
        // Latency only: the nearest (Frankfurt) wins.
        let spec = carbon_spec(ScoreWeights { latency: 1.0, cost: 0.0, carbon: 0.0 });
        assert_eq!(plan(&spec, &de, &HealthView::default(), 0, 0).expect("plan").attempts[0].id, "frankfurt");
    }

    #[test]
    fn carbon_score_normalises_and_weighs_cost() {
        let mut spec = carbon_spec(ScoreWeights { latency: 0.0, cost: 1.0, carbon: 0.0 });
        spec.targets[0].output_per_million = Nanos(1_000_000_000);
        spec.targets[0].input_per_million = Nanos(100_000_000);
        let p = plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, 0).expect("plan");
        assert_eq!(p.attempts[0].id, "frankfurt", "cheapest wins on cost weight");
        // Scores are within 0..=1 and degenerate weights do not panic.
        let est = p.estimates.clone();
        for w in [ScoreWeights { latency: f64::NAN, cost: -1.0, carbon: 0.0 }, ScoreWeights { latency: 1.0, cost: 1.0, carbon: 1.0 }] {
            for (_, s) in carbon_scores(&[0, 1, 2], &est, w) {
                assert!((0.0..=1.0).contains(&s), "{s}");
            }
        }
    }

    #[test]
    fn header_explains_choice_and_exclusions() {
        let mut spec = carbon_spec(ScoreWeights { latency: 0.2, cost: 0.2, carbon: 0.6 });
        spec.targets.push(target("us-openai", "us-east-1", "us"));
        let p = plan(&spec, &eu_only(), &HealthView::default(), 0, 0).expect("plan");
        let h = p.header_value();
        assert!(h.starts_with(&format!("target={}; region={}; reason=carbon(score=", p.attempts[0].id, p.region)), "{h}");
        assert!(h.ends_with("excluded=us-openai:residency"), "{h}");
        assert!(h.len() < 200);
        assert!(h.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn max_attempts_is_clamped() {
        let mut spec = mixed();
        spec.max_attempts = 0;
        assert_eq!(plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, 0).expect("plan").attempts.len(), 1);
        spec.max_attempts = 1_000;
        assert_eq!(plan(&spec, &RequestFacts::default(), &HealthView::default(), 0, 0).expect("plan").attempts.len(), MAX_ATTEMPTS_CAP as usize);
    }
}
