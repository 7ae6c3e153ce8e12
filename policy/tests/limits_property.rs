//! Property test: random interleavings of admit / settle / release / time passing (windows
//! rolling over, reservations expiring) against one subject, checked after every step against a
//! small independent model and the invariant
//!
//! > settled + in-flight reserved <= limit + what settlements added beyond their estimates
//!
//! in every window. A small deterministic PRNG (SplitMix64), no dependency: every failure
//! reproduces from its seed and step.

use std::collections::{BTreeMap, BTreeSet};

use policy::limits::*;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Default)]
struct ModelCounter {
    window_start: u64,
    used: u64,
    overshoot: u64,
    fired: BTreeSet<u16>,
}

struct ModelReservation {
    est: Amounts,
    deadline: u64,
    ttl: u64,
    expired: bool,
}

/// The rules, restated plainly: reservations expire at their deadline and are forgotten one TTL
/// later; usage counts in the window it is settled in; in-flight reservations count in every
/// window until they end.
#[derive(Default)]
struct Model {
    counters: BTreeMap<CounterKey, ModelCounter>,
    reservations: BTreeMap<String, ModelReservation>,
}

impl Model {
    fn advance(&mut self, now: u64, specs: &[LimitSpec]) {
        self.reservations.retain(|_, r| {
            if !r.expired && now >= r.deadline {
                r.expired = true;
                r.deadline += r.ttl;
            }
            !(r.expired && now >= r.deadline)
        });
        for spec in specs {
            let c = self.counters.entry(spec.key()).or_default();
            let start = spec.window.start_ms(now);
            if start > c.window_start {
                *c = ModelCounter { window_start: start, ..ModelCounter::default() };
            }
        }
    }

    fn reserved(&self, metric: Metric) -> u64 {
        self.reservations.values().filter(|r| !r.expired).map(|r| r.est.get(metric)).sum()
    }
}

fn specs() -> Vec<LimitSpec> {
    vec![
        LimitSpec::new(Metric::Requests, Window::Minute, 30),
        LimitSpec::new(Metric::TotalTokens, Window::Minute, 4000),
        LimitSpec::new(Metric::TotalTokens, Window::Hour, 30_000),
        LimitSpec::new(Metric::OutputTokens, Window::Minute, 1500),
        LimitSpec::budget(Window::Day, Nanos(400_000)).with_alerts([50, 80, 100]),
    ]
}

fn cost(input: u64, output: u64) -> Nanos {
    Nanos(input * 3 + output * 10)
}

fn run(seed: u64, steps: usize) -> (usize, usize, usize) {
    let mut rng = SplitMix64(seed);
    let specs = specs();
    let mut state = CounterState::new();
    let mut model = Model::default();
    let mut now: u64 = 1_773_500_000_000 + rng.range(0, 86_400_000);
    let mut next_id = 0u64;
    let (mut admitted, mut denied, mut expired_settles) = (0, 0, 0);
    let mut ids: Vec<String> = Vec::new();

    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        now += rng.range(0, 300);
        let roll = rng.range(0, 99);
        if roll < 45 {
            let (input, output) = (rng.range(1, 600), rng.range(0, 500));
            let est = Amounts::estimate(input, output, cost(input, output));
            let ttl = rng.range(2_000, 90_000);
            let id = format!("r{next_id}");
            next_id += 1;
            model.advance(now, &specs);
            let expect = specs.iter().all(|s| {
                let c = &model.counters[&s.key()];
                c.used + model.reserved(s.metric) + est.get(s.metric) <= s.limit
            });
            let a = state.admit(&specs, &est, now, &id, ttl);
            assert_eq!(a.allowed, expect, "{ctx}: admission decision");
            assert_eq!(a.limits.iter().any(|s| s.exceeded), !a.allowed, "{ctx}");
            if a.allowed {
                admitted += 1;
                model.reservations.insert(id.clone(), ModelReservation { est, deadline: now + ttl, ttl, expired: false });
                ids.push(id);
            } else {
                denied += 1;
                assert!(a.too_large || a.retry_after_ms.is_some_and(|ms| ms >= 1), "{ctx}: a denial says when to retry");
            }
        } else if roll < 72 {
            // Settle a reservation (in flight, expired, or long gone), or a bogus id.
            let id = if ids.is_empty() || rng.chance(5) { "bogus".to_string() } else { ids.swap_remove(rng.range(0, ids.len() as u64 - 1) as usize) };
            model.advance(now, &specs);
            let known = model.reservations.get(&id).map(|r| (r.est, r.expired));
            let factor = if rng.chance(5) { 400 } else { 150 };
            let (input, output) = match known {
                Some((est, _)) => (rng.range(0, est.input_tokens * factor / 100), rng.range(0, est.output_tokens * factor / 100)),
                None => (rng.range(0, 300), rng.range(0, 300)),
            };
            let usage = TokenUsage { input_tokens: input, output_tokens: output, total_tokens: input + output, ..TokenUsage::default() };
            let actual = Amounts::from_usage(&usage, cost(input, output));
            let s = state.settle(&id, &actual, now);
            assert_eq!(s.known, known.is_some(), "{ctx}: known");
            if let Some((est, was_expired)) = known {
                model.reservations.remove(&id);
                expired_settles += usize::from(was_expired);
                for spec in &specs {
                    let c = model.counters.get_mut(&spec.key()).unwrap();
                    let a = actual.get(spec.metric);
                    c.used += a;
                    // An expired reservation's estimate was already returned: all of it is extra.
                    c.overshoot += if was_expired { a } else { a.saturating_sub(est.get(spec.metric)) };
                }
                let budget = model.counters.get_mut(&CounterKey { metric: Metric::Cost, window: Window::Day }).unwrap();
                for alert in &s.alerts {
                    assert!(budget.fired.insert(alert.percent), "{ctx}: alert {} fired twice in one window", alert.percent);
                }
                for &pct in &[50u16, 80, 100] {
                    let crossed = budget.used > 0 && budget.used * 100 >= 400_000 * u64::from(pct);
                    assert_eq!(budget.fired.contains(&pct), crossed, "{ctx}: threshold {pct} at {}", budget.used);
                }
            } else {
                assert!(s.alerts.is_empty() && s.limits.is_empty(), "{ctx}");
            }
        } else if roll < 87 {
            let id = if ids.is_empty() || rng.chance(5) { "bogus".to_string() } else { ids.swap_remove(rng.range(0, ids.len() as u64 - 1) as usize) };
            model.advance(now, &specs);
            let known = model.reservations.remove(&id).is_some();
            assert_eq!(state.release(&id, now), known, "{ctx}: release");
        } else {
            now += match rng.range(0, 9) {
                0..=5 => rng.range(0, 5_000),
                6..=8 => rng.range(30_000, 70_000),
                _ => rng.range(600_000, 4_000_000),
            };
            model.advance(now, &specs);
            state.expire(now);
        }

        // After every step: the state matches the model and the invariant holds.
        model.advance(now, &specs);
        let status = state.status(now);
        for spec in &specs {
            let c = &model.counters[&spec.key()];
            let reserved = model.reserved(spec.metric);
            let (used, got_reserved) = status.iter().find(|s| s.metric == spec.metric && s.window == spec.window).map_or((0, 0), |s| (s.used, s.reserved));
            assert_eq!((used, got_reserved), (c.used, reserved), "{ctx}: {:?} {:?}", spec.metric, spec.window);
            assert!(used + got_reserved <= spec.limit + c.overshoot, "{ctx}: {:?}/{:?}: used {used} + reserved {got_reserved} > limit {} + overshoot {}", spec.metric, spec.window, spec.limit, c.overshoot);
            assert!(reserved <= spec.limit, "{ctx}: in-flight alone never exceeds the limit");
        }
        assert_eq!(state.in_flight(), model.reservations.values().filter(|r| !r.expired).count(), "{ctx}");
        // What a Durable Object stores survives its round trip unchanged.
        if step % 97 == 0 {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<CounterState>(&json).unwrap(), state, "{ctx}");
        }
    }
    (admitted, denied, expired_settles)
}

#[test]
fn random_interleavings_keep_the_invariant() {
    let (mut admitted, mut denied, mut expired) = (0, 0, 0);
    for seed in 1..=12 {
        let (a, d, e) = run(seed, 4000);
        admitted += a;
        denied += d;
        expired += e;
    }
    eprintln!("admitted {admitted}, denied {denied}, expired settles {expired}");
    // The run exercised both sides of every decision, not just the easy path.
    assert!(admitted > 5000 && denied > 1000 && expired > 10, "admitted {admitted}, denied {denied}, expired settles {expired}");
}

#[test]
fn a_burst_of_concurrent_admissions_respects_the_limit_exactly() {
    let mut rng = SplitMix64(99);
    for _ in 0..200 {
        let limit = rng.range(1, 50_000);
        let mut state = CounterState::new();
        let spec = LimitSpec::new(Metric::TotalTokens, Window::Minute, limit);
        let mut in_flight = 0;
        // Nobody settles: every admission sees all the others as reserved.
        for i in 0..300 {
            let amount = rng.range(0, 2_000);
            let a = state.reserve(&spec, amount, 1_000_000, &format!("r{i}"), DEFAULT_RESERVATION_TTL_MS);
            assert_eq!(a.allowed, in_flight + amount <= limit);
            if a.allowed {
                in_flight += amount;
            }
        }
        assert!(in_flight <= limit);
    }
}
