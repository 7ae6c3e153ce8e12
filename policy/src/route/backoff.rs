//! Retry delays: exponential backoff with full jitter, never shorter than the provider's
//! Retry-After.
//!
//! Full jitter (a uniform draw in `[0, min(max, base * 2^attempt)]`) spreads retries of many
//! clients that failed together, which a fixed exponential schedule would synchronise.

use super::{splitmix64, Backoff, RouteSpec};

/// Delay before retry number `attempt` (0 = the first retry), in ms.
///
/// The exponential part is capped at `spec.backoff.max_ms`. A `retry_after_ms` from the
/// provider is a floor: the result is never below it, even above `max_ms` (waiting less would
/// only earn another 429). A caller that will not wait that long should fall back to another
/// target instead; [`exceeds_cap`] says when.
pub fn backoff_ms(attempt: u32, spec: &RouteSpec, retry_after_ms: Option<u64>, random: u64) -> u64 {
    delay_ms(attempt, &spec.backoff, retry_after_ms, random)
}

/// [`backoff_ms`] for any schedule (alert webhooks use it too).
pub fn delay_ms(attempt: u32, backoff: &Backoff, retry_after_ms: Option<u64>, random: u64) -> u64 {
    let base = backoff.base_ms;
    let cap = backoff.max_ms.max(base);
    let exp = base.checked_shl(attempt.min(63)).filter(|v| v >> attempt.min(63) == base).unwrap_or(u64::MAX).min(cap);
    let jitter = splitmix64(random) % exp.saturating_add(1);
    jitter.max(retry_after_ms.unwrap_or(0))
}

/// True when the provider's Retry-After is longer than the route is willing to wait.
pub fn exceeds_cap(spec: &RouteSpec, retry_after_ms: Option<u64>) -> bool {
    retry_after_ms.is_some_and(|ra| ra > spec.backoff.max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::test_support::spec_with;

    fn spec(base: u64, max: u64) -> RouteSpec {
        let mut s = spec_with(vec![]);
        s.backoff = Backoff { base_ms: base, max_ms: max };
        s
    }

    #[test]
    fn within_exponential_bounds_and_cap() {
        let s = spec(100, 2_000);
        for attempt in 0..70 {
            let bound = (100u64.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX))).min(2_000);
            for r in 0..200u64 {
                let d = backoff_ms(attempt, &s, None, r);
                assert!(d <= bound, "attempt {attempt} gave {d} > {bound}");
            }
        }
    }

    #[test]
    fn jitter_uses_the_range() {
        let s = spec(100, 10_000);
        let draws: Vec<u64> = (0..1000u64).map(|r| backoff_ms(3, &s, None, r)).collect();
        let max = draws.iter().copied().max().unwrap_or(0);
        let min = draws.iter().copied().min().unwrap_or(0);
        assert!(max > 700 && min < 100, "min {min} max {max}");
    }

    #[test]
    fn never_less_than_retry_after_even_above_cap() {
        let s = spec(100, 1_000);
        for r in 0..100u64 {
            assert!(backoff_ms(0, &s, Some(500), r) >= 500);
            assert_eq!(backoff_ms(5, &s, Some(30_000), r), 30_000);
        }
        assert!(exceeds_cap(&s, Some(30_000)));
        assert!(!exceeds_cap(&s, Some(1_000)));
        assert!(!exceeds_cap(&s, None));
    }

    #[test]
    fn zero_base_is_zero_delay() {
        assert_eq!(backoff_ms(4, &spec(0, 0), None, 99), 0);
    }
}
