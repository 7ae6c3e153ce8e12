//! Rate limits, quotas and budgets: the reserve / settle / release arithmetic, windows, expiry,
//! all-or-nothing admission, alerts and headers, driven with a manual clock.

use policy::limits::*;

const TTL: u64 = DEFAULT_RESERVATION_TTL_MS;
/// 2026-03-14T15:09:26.535Z
const T0: u64 = 1_773_500_966_535;
/// The start of T0's minute.
const MINUTE0: u64 = T0 - T0 % 60_000;

fn rpm(limit: u64) -> LimitSpec {
    LimitSpec::new(Metric::Requests, Window::Minute, limit)
}

fn tpm(limit: u64) -> LimitSpec {
    LimitSpec::new(Metric::TotalTokens, Window::Minute, limit)
}

fn tokens(n: u64) -> Amounts {
    Amounts { requests: 1, total_tokens: n, input_tokens: n, ..Amounts::default() }
}

fn status_of(state: &CounterState, now: u64, metric: Metric, window: Window) -> Option<LimitStatus> {
    state.status(now).into_iter().find(|s| s.metric == metric && s.window == window)
}

#[test]
fn reserve_settle_release_arithmetic() {
    let mut state = CounterState::new();
    let spec = tpm(1000);
    let a = state.reserve(&spec, 300, T0, "r1", TTL);
    assert!(a.allowed);
    let s = a.binding().unwrap();
    assert_eq!((s.limit, s.used, s.reserved, s.remaining), (1000, 0, 300, 700));
    assert_eq!(s.reset_at_ms, MINUTE0 + 60_000);
    assert!(state.reserve(&spec, 500, T0, "r2", TTL).allowed);
    // 800 in flight: 250 more does not fit.
    let denied = state.reserve(&spec, 250, T0, "r3", TTL);
    assert!(!denied.allowed && !denied.too_large);
    assert!(denied.binding().unwrap().exceeded);
    assert_eq!(denied.binding().unwrap().reserved, 800, "a denial reserves nothing");
    // r1 used less than estimated: the difference comes back.
    let settled = state.settle("r1", &Amounts::of(Metric::TotalTokens, 120), T0 + 1);
    assert!(settled.known);
    assert_eq!(settled.limits[0].used, 120);
    assert_eq!(settled.limits[0].reserved, 500);
    assert_eq!(settled.limits[0].remaining, 380);
    // r2 failed upstream: its reservation is released, nothing charged.
    assert!(state.release("r2", T0 + 2));
    let s = status_of(&state, T0 + 2, Metric::TotalTokens, Window::Minute).unwrap();
    assert_eq!((s.used, s.reserved, s.remaining), (120, 0, 880));
    assert!(state.reserve(&spec, 250, T0 + 3, "r3", TTL).allowed);
    assert_eq!(state.in_flight(), 1);
}

#[test]
fn over_settlement_is_recorded_in_full_and_nothing_goes_negative() {
    let mut state = CounterState::new();
    let spec = tpm(1000);
    assert!(state.reserve(&spec, 100, T0, "a", TTL).allowed);
    // The call used far more than estimated (no max_tokens, long answer): recorded in full.
    let s = state.settle("a", &Amounts::of(Metric::TotalTokens, 1500), T0);
    assert_eq!((s.limits[0].used, s.limits[0].reserved, s.limits[0].remaining), (1500, 0, 0));
    let denied = state.reserve(&spec, 1, T0, "b", TTL);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ms, Some(MINUTE0 + 60_000 - T0));
    // Releasing or settling unknown ids changes nothing and never underflows.
    assert!(!state.release("nope", T0));
    assert!(!state.settle("nope", &Amounts::of(Metric::TotalTokens, 5), T0).known);
    let s = status_of(&state, T0, Metric::TotalTokens, Window::Minute).unwrap();
    assert_eq!((s.used, s.reserved), (1500, 0));
    // The next window starts from zero.
    assert!(state.reserve(&spec, 1000, MINUTE0 + 60_000, "c", TTL).allowed);
}

#[test]
fn operations_are_idempotent_per_reservation_id() {
    let mut state = CounterState::new();
    let spec = tpm(1000);
    assert!(state.reserve(&spec, 600, T0, "r", TTL).allowed);
    // A retried admission (lost reply) is allowed again without reserving twice, even though a
    // second 600 would not fit.
    let again = state.reserve(&spec, 600, T0, "r", TTL);
    assert!(again.allowed);
    assert_eq!(again.binding().unwrap().reserved, 600);
    assert!(state.settle("r", &Amounts::of(Metric::TotalTokens, 500), T0).known);
    assert!(!state.settle("r", &Amounts::of(Metric::TotalTokens, 500), T0).known, "a retried settlement does not charge twice");
    assert!(!state.release("r", T0));
    assert_eq!(status_of(&state, T0, Metric::TotalTokens, Window::Minute).unwrap().used, 500);
}

#[test]
fn stale_reservations_expire_and_late_settlements_still_count() {
    let mut state = CounterState::new();
    let spec = LimitSpec::new(Metric::TotalTokens, Window::Day, 1000);
    let ttl = 30_000;
    assert!(state.reserve(&spec, 900, T0, "crashed", ttl).allowed);
    assert!(state.reserve(&spec, 50, T0 + 10_000, "slow", ttl).allowed);
    assert_eq!(state.next_deadline_ms(), Some(T0 + ttl));
    assert!(!state.reserve(&spec, 100, T0 + ttl - 1, "x", ttl).allowed, "still held one ms before the TTL");
    // At the TTL the crashed request's capacity comes back without any call from it.
    let a = state.reserve(&spec, 100, T0 + ttl, "x", ttl);
    assert!(a.allowed);
    assert_eq!(a.binding().unwrap().reserved, 150);
    assert_eq!(state.in_flight(), 2);
    // "slow" expires too, then settles late (a stream longer than the TTL): it is charged, to the
    // counters it reserved against, and its estimate is not freed twice.
    assert_eq!(state.expire(T0 + 10_000 + ttl), 1);
    assert_eq!(status_of(&state, T0 + 10_000 + ttl, Metric::TotalTokens, Window::Day).unwrap().reserved, 100);
    let late = state.settle("slow", &Amounts::of(Metric::TotalTokens, 70), T0 + 10_000 + ttl + 5);
    assert!(late.known);
    assert_eq!((late.limits[0].used, late.limits[0].reserved), (70, 100));
    // A tombstone lives one more TTL; after that the id is forgotten.
    assert!(state.release("x", T0 + 10_000 + ttl + 6));
    assert!(state.reserve(&spec, 10, T0 + 100_000, "gone", ttl).allowed);
    assert_eq!(state.expire(T0 + 100_000 + ttl), 1);
    assert!(!state.settle("gone", &Amounts::of(Metric::TotalTokens, 10), T0 + 100_000 + 2 * ttl).known);
    assert_eq!(state.in_flight(), 0);
    assert_eq!(state.next_deadline_ms(), None);
}

#[test]
fn windows_roll_over_exactly_at_the_utc_boundary_and_carry_in_flight_calls() {
    let mut state = CounterState::new();
    let spec = rpm(2);
    let end = MINUTE0 + 60_000;
    assert!(state.reserve(&spec, 1, T0, "a", TTL).allowed);
    assert!(state.reserve(&spec, 1, T0, "b", TTL).allowed);
    state.settle("a", &Amounts::of(Metric::Requests, 1), T0);
    let denied = state.reserve(&spec, 1, end - 1, "c", TTL);
    assert!(!denied.allowed);
    assert_eq!(denied.binding().unwrap().reset_at_ms, end);
    // At the boundary settled usage resets; "b" is still in flight and keeps its place.
    let a = state.reserve(&spec, 1, end, "c", TTL);
    assert!(a.allowed);
    let s = a.binding().unwrap();
    assert_eq!((s.used, s.reserved, s.remaining, s.reset_at_ms), (0, 2, 0, end + 60_000));
    // "b" completes in the new window and is charged there.
    let settled = state.settle("b", &Amounts::of(Metric::Requests, 1), end + 5);
    assert_eq!((settled.limits[0].used, settled.limits[0].reserved), (1, 1));
    // Long idle: everything resets, the state becomes empty once nothing is in flight.
    state.release("c", end + 6);
    assert!(!state.is_empty());
    state.expire(end + 3 * 60_000);
    assert!(state.is_empty());
}

#[test]
fn status_does_not_change_the_state() {
    let mut state = CounterState::new();
    state.reserve(&tpm(100), 10, T0, "a", TTL);
    let before = state.clone();
    let later = state.status(T0 + 2 * TTL);
    assert!(later.is_empty(), "expired and idle: {later:?}");
    assert_eq!(state, before);
}

#[test]
fn several_limits_reserve_all_or_nothing() {
    let mut state = CounterState::new();
    let specs = [rpm(10), tpm(1000), LimitSpec::new(Metric::TotalTokens, Window::Day, 1200), LimitSpec::new(Metric::OutputTokens, Window::Minute, 400)];
    let est = Amounts::estimate(300, 200, Nanos::ZERO);
    let a = state.admit(&specs, &est, T0, "a", TTL);
    assert!(a.allowed);
    assert_eq!(a.limits.len(), 4);
    assert_eq!(a.limits.iter().map(|s| s.reserved).collect::<Vec<_>>(), [1, 500, 500, 200]);
    // Output per minute denies (200 + 300 > 400); nothing else is reserved either.
    let b = state.admit(&specs, &Amounts::estimate(10, 300, Nanos::ZERO), T0, "b", TTL);
    assert!(!b.allowed);
    assert_eq!(b.limits.iter().filter(|s| s.exceeded).map(|s| s.metric).collect::<Vec<_>>(), [Metric::OutputTokens]);
    assert_eq!(b.limits.iter().map(|s| s.reserved).collect::<Vec<_>>(), [1, 500, 500, 200]);
    assert_eq!(b.binding().unwrap().metric, Metric::OutputTokens);
    // Settling charges each counter with its own metric.
    let usage = TokenUsage { input_tokens: 280, output_tokens: 150, total_tokens: 430, ..TokenUsage::default() };
    let s = state.settle("a", &Amounts::from_usage(&usage, Nanos::ZERO), T0 + 1);
    assert_eq!(s.limits.iter().map(|s| s.used).collect::<Vec<_>>(), [1, 430, 430, 150]);
    // After the minute the day limit still holds: 430 + 900 > 1200.
    let c = state.admit(&specs, &Amounts::estimate(700, 200, Nanos::ZERO), MINUTE0 + 60_000, "c", TTL);
    assert!(!c.allowed);
    assert_eq!(c.limits.iter().filter(|s| s.exceeded).map(|s| s.window).collect::<Vec<_>>(), [Window::Day]);
    // Duplicate specs for one counter: the smaller limit holds, the amount is reserved once.
    let mut fresh = CounterState::new();
    let d = fresh.admit(&[tpm(1000), tpm(600)], &tokens(500), T0, "d", TTL);
    assert!(d.allowed);
    assert_eq!((d.limits.len(), d.limits[0].limit, d.limits[0].reserved), (1, 600, 500));
}

#[test]
fn a_request_larger_than_the_limit_is_too_large_not_retryable() {
    let mut state = CounterState::new();
    let a = state.admit(&[rpm(10), tpm(1000)], &tokens(1001), T0, "big", TTL);
    assert!(!a.allowed && a.too_large);
    assert_eq!(a.retry_after_ms, None);
    assert_eq!(state.in_flight(), 0);
}

#[test]
fn retry_after_is_the_reset_unless_only_in_flight_calls_block() {
    let mut state = CounterState::new();
    let spec = LimitSpec::new(Metric::TotalTokens, Window::Hour, 1000);
    let hour_end = T0 - T0 % 3_600_000 + 3_600_000;
    assert!(state.reserve(&spec, 800, T0, "a", TTL).allowed);
    // Blocked by a call in flight: settled usage alone would admit. Retry soon, not in 50 min.
    let d = state.reserve(&spec, 300, T0, "b", TTL);
    assert_eq!(d.retry_after_ms, Some(IN_FLIGHT_RETRY_MS));
    state.settle("a", &Amounts::of(Metric::TotalTokens, 800), T0);
    // Blocked by settled usage: only the reset helps.
    let d = state.reserve(&spec, 300, T0, "b", TTL);
    assert_eq!(d.retry_after_ms, Some(hour_end - T0));
    assert_eq!(retry_after_secs(d.retry_after_ms.unwrap()), (hour_end - T0).div_ceil(1000));
    // Never zero, even one ms before the reset.
    let d = state.reserve(&spec, 300, hour_end - 1, "b", TTL);
    assert_eq!(d.retry_after_ms, Some(1));
}

#[test]
fn soft_limits_count_and_alert_but_never_deny() {
    let mut state = CounterState::new();
    let spec = tpm(100).soft().with_alerts([100]);
    let a = state.reserve(&spec, 500, T0, "a", TTL);
    assert!(a.allowed);
    assert!(a.binding().is_none(), "soft limits do not bind");
    let s = state.settle("a", &Amounts::of(Metric::TotalTokens, 500), T0);
    assert_eq!(s.alerts.len(), 1);
    assert!(state.reserve(&spec, 500, T0, "b", TTL).allowed);
    assert!(rate_limit_headers(&a.limits, T0).is_empty());
}

#[test]
fn admission_across_subjects_is_all_or_nothing() {
    let mut consumer = CounterState::new();
    let mut tenant = CounterState::new();
    let consumer_specs = [rpm(100), tpm(10_000)];
    let tenant_specs = [tpm(1000)];
    let a = admit_all(&mut [(&mut consumer, &consumer_specs[..]), (&mut tenant, &tenant_specs[..])], &tokens(800), T0, "a", TTL);
    assert!(a.allowed);
    assert_eq!(a.limits.len(), 3);
    let b = admit_all(&mut [(&mut consumer, &consumer_specs[..]), (&mut tenant, &tenant_specs[..])], &tokens(300), T0, "b", TTL);
    assert!(!b.allowed);
    assert_eq!(b.retry_after_ms, Some(IN_FLIGHT_RETRY_MS));
    // The consumer allowed but reserved nothing, because the tenant denied.
    assert_eq!(consumer.in_flight(), 1);
    assert_eq!(status_of(&consumer, T0, Metric::TotalTokens, Window::Minute).unwrap().reserved, 800);
    // The Durable Object pattern: admit per subject, release where admitted when another denies.
    let c1 = consumer.admit(&consumer_specs, &tokens(300), T0, "c", TTL);
    let c2 = tenant.admit(&tenant_specs, &tokens(300), T0, "c", TTL);
    assert!(c1.allowed && !c2.allowed);
    assert!(consumer.release("c", T0));
    assert_eq!(status_of(&consumer, T0, Metric::TotalTokens, Window::Minute).unwrap().reserved, 800);
}

#[test]
fn many_simultaneous_requests_never_overshoot_what_is_reserved() {
    let mut state = CounterState::new();
    let specs = [rpm(1000), tpm(10_000)];
    let mut admitted = 0;
    for i in 0..500 {
        if state.admit(&specs, &tokens(137), T0, &format!("r{i}"), TTL).allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10_000 / 137);
    assert!(admitted * 137 <= 10_000);
    assert_eq!(state.in_flight(), admitted as usize);
}

#[test]
fn budgets_charge_cached_tokens_at_the_cached_price_and_stop_at_100_percent() {
    let price = ModelPrice::parse("2.50", Some("1.25"), "10.00").unwrap();
    let budget = LimitSpec::budget(Window::Month, "0.05".parse().unwrap()).with_alerts([50, 80, 100]);
    let mut state = CounterState::new();
    let est = Amounts::estimate(1000, 1000, price.estimate(1000, 1000)); // 0.0125
    assert_eq!(est.cost, Nanos(12_500_000));
    assert!(state.admit(std::slice::from_ref(&budget), &est, T0, "a", TTL).allowed);
    let usage = TokenUsage { input_tokens: 1000, output_tokens: 400, total_tokens: 1400, cached_input_tokens: 800, reasoning_tokens: 100 };
    let cost = price.cost(&usage); // 200 * 2500 + 800 * 1250 + 400 * 10000 = 5.5e6
    assert_eq!(cost, Nanos(5_500_000));
    let s = state.settle("a", &Amounts::from_usage(&usage, cost), T0);
    assert_eq!(s.limits[0].used, 5_500_000);
    assert!(s.alerts.is_empty());
    // Spend up to 0.0475: the hard stop refuses an estimate that would pass 0.05.
    for i in 0..7 {
        let id = format!("b{i}");
        assert!(state.admit(std::slice::from_ref(&budget), &Amounts::estimate(0, 0, Nanos(6_000_000)), T0, &id, TTL).allowed);
        state.settle(&id, &Amounts::estimate(0, 0, Nanos(6_000_000)), T0);
    }
    let d = state.admit(std::slice::from_ref(&budget), &est, T0, "c", TTL);
    assert!(!d.allowed);
    let month_end = Window::Month.reset_at_ms(T0);
    assert_eq!(d.retry_after_ms, Some(month_end - T0));
}

#[test]
fn alert_thresholds_fire_once_per_window() {
    let budget = LimitSpec::budget(Window::Day, Nanos::units(10)).with_alerts([100, 50, 80]);
    let mut state = CounterState::new();
    let spend = |state: &mut CounterState, id: &str, units: u64, now: u64| {
        let amounts = Amounts::estimate(0, 0, Nanos::units(units));
        assert!(state.admit(std::slice::from_ref(&budget), &Amounts::estimate(0, 0, Nanos::ZERO), now, id, TTL).allowed);
        state.settle(id, &amounts, now).alerts.iter().map(|a| a.percent).collect::<Vec<_>>()
    };
    assert_eq!(spend(&mut state, "a", 4, T0), Vec::<u16>::new());
    assert_eq!(spend(&mut state, "b", 1, T0), [50]); // exactly 50%
    assert_eq!(spend(&mut state, "c", 1, T0), Vec::<u16>::new());
    assert_eq!(spend(&mut state, "d", 4, T0), [80, 100]); // two crossed at once, exactly 100%
    assert_eq!(spend(&mut state, "e", 5, T0), Vec::<u16>::new(), "over 100%: nothing fires again");
    // The alert carries what the webhook needs.
    let day = Window::Day.start_ms(T0);
    let next_day = day + 86_400_000;
    assert!(state.admit(std::slice::from_ref(&budget), &Amounts::default(), next_day, "f", TTL).allowed);
    let s = state.settle("f", &Amounts::estimate(0, 0, Nanos::units(6)), next_day + 1);
    assert_eq!(s.alerts.len(), 1);
    let alert = s.alerts[0];
    assert_eq!((alert.metric, alert.window, alert.percent, alert.used, alert.limit), (Metric::Cost, Window::Day, 50, 6_000_000_000, 10_000_000_000));
    assert_eq!((alert.window_start_ms, alert.window_end_ms), (next_day, next_day + 86_400_000));
}

#[test]
fn headers_come_from_the_admission() {
    let mut state = CounterState::new();
    let specs = [rpm(60), tpm(150_000)];
    let now = MINUTE0 + 54_000;
    let a = state.admit(&specs, &Amounts::estimate(10, 6, Nanos::ZERO), now, "a", TTL);
    let headers = rate_limit_headers(&a.limits, now);
    let expect = [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-reset-requests", "6s"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-ratelimit-reset-tokens", "6s"),
    ];
    assert_eq!(headers.iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>(), expect);
    let mut day = CounterState::new();
    let a = day.admit(&[LimitSpec::new(Metric::TotalTokens, Window::Day, 100)], &tokens(10), Window::Day.start_ms(T0) + 1000, "a", TTL);
    assert_eq!(rate_limit_headers(&a.limits, Window::Day.start_ms(T0) + 1000)[2].1, "23h59m59s");
}

#[test]
fn the_store_protocol_round_trips_through_json() {
    let specs = vec![rpm(2), LimitSpec::budget(Window::Month, Nanos::units(1)).with_alerts([50])];
    let ops = [
        CounterOp::Admit { specs: specs.clone(), amounts: Amounts::estimate(5, 5, Nanos(1000)), reservation_id: "req-1".into(), ttl_ms: TTL },
        CounterOp::Admit { specs: specs.clone(), amounts: Amounts::estimate(5, 5, Nanos(1000)), reservation_id: "req-2".into(), ttl_ms: TTL },
        CounterOp::Settle { reservation_id: "req-1".into(), actual: Amounts::estimate(5, 3, Nanos(600_000_000)) },
        CounterOp::Release { reservation_id: "req-2".into() },
        CounterOp::Status,
        CounterOp::Expire,
    ];
    // What a Durable Object does per call: load, apply with its clock, store.
    let mut stored = serde_json::to_string(&CounterState::new()).unwrap();
    let mut replies = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let op: CounterOp = serde_json::from_str(&serde_json::to_string(op).unwrap()).unwrap();
        let mut state: CounterState = serde_json::from_str(&stored).unwrap();
        let reply = state.apply(&op, T0 + i as u64);
        let reply: CounterReply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        replies.push(reply);
        stored = serde_json::to_string(&state).unwrap();
    }
    assert!(matches!(&replies[0], CounterReply::Admitted(a) if a.allowed));
    assert!(matches!(&replies[1], CounterReply::Admitted(a) if a.allowed));
    assert!(matches!(&replies[2], CounterReply::Settled(s) if s.known && s.alerts.len() == 1 && s.alerts[0].percent == 50));
    assert_eq!(replies[3], CounterReply::Released { known: true });
    assert!(matches!(&replies[4], CounterReply::Status { limits } if limits.len() == 2));
    assert_eq!(replies[5], CounterReply::Expired { count: 0, next_deadline_ms: None });
    assert!(stored.len() < 400, "small state: {stored}");
    // The wire format of an operation, for the Worker side.
    let op = serde_json::to_value(CounterOp::Release { reservation_id: "r".into() }).unwrap();
    assert_eq!(op, serde_json::json!({"op": "release", "reservation_id": "r"}));
    let spec: LimitSpec = serde_json::from_value(serde_json::json!({"metric": "total_tokens", "window": "minute", "limit": 5})).unwrap();
    assert_eq!(spec, tpm(5));
}

#[test]
fn estimates_feed_admission() {
    let input = estimate_input_tokens_fallback(fallback_chars("Summarise this text please."), 2);
    let output = output_reservation(Some(256), 16_384);
    let mut table = PriceTable::new();
    table.insert("gpt-4o-mini*", ModelPrice::parse("0.15", Some("0.075"), "0.60").unwrap());
    let est = Amounts::estimate(input, output, table.estimate("gpt-4o-mini", input, output).unwrap());
    assert_eq!((est.input_tokens, est.output_tokens, est.total_tokens), (7 + 8 + 3, 256, 274));
    assert_eq!(est.cost, Nanos(18 * 150 + 256 * 600));
}
