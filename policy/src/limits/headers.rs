//! OpenAI-style rate-limit response headers and `Retry-After`.
//!
//! OpenAI documents (platform.openai.com/docs/guides/rate-limits, "Rate limits in headers"):
//!
//! | header | example | meaning |
//! |---|---|---|
//! | `x-ratelimit-limit-requests` | `60` | requests permitted before exhausting the limit |
//! | `x-ratelimit-limit-tokens` | `150000` | tokens permitted before exhausting the limit |
//! | `x-ratelimit-remaining-requests` | `59` | requests remaining |
//! | `x-ratelimit-remaining-tokens` | `149984` | tokens remaining |
//! | `x-ratelimit-reset-requests` | `1s` | time until the request limit resets to its initial state |
//! | `x-ratelimit-reset-tokens` | `6m0s` | time until the token limit resets to its initial state |
//!
//! The reset values are Go `time.Duration` strings (`12ms`, `1s`, `8.64s`, `6m0s`,
//! `4m12.172s`, `23h18m29.144s`); [`format_reset`] writes the same form at millisecond
//! precision, so SDKs and tools that parse OpenAI's headers parse ours.
//!
//! A subject can have several request limits (per minute and per day) and several token limits
//! (input, output, total; per window), across several subjects (consumer and tenant). Each header
//! group reports the **binding** limit: the enforced one with the least remaining, and among equals
//! the one that resets last. The `-tokens` group covers every token metric. Money budgets have no
//! OpenAI header and are not reported here.

use super::counter::{LimitStatus, Metric};

/// OpenAI's rate-limit headers for the limits a request was checked against (all subjects'
/// [`Admission::limits`](super::Admission::limits) together). Groups without an enforced limit
/// are omitted.
pub fn rate_limit_headers(limits: &[LimitStatus], now_ms: u64) -> Vec<(&'static str, String)> {
    type Group = (fn(Metric) -> bool, [&'static str; 3]);
    const GROUPS: [Group; 2] = [
        (|m| matches!(m, Metric::Requests), ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]),
        (Metric::is_tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
    ];
    let mut headers = Vec::new();
    for (belongs, [limit, remaining, reset]) in GROUPS {
        let binding = limits.iter().filter(|s| s.enforced && belongs(s.metric)).min_by_key(|s| (s.remaining, u64::MAX - s.reset_at_ms));
        if let Some(s) = binding {
            headers.push((limit, s.limit.to_string()));
            headers.push((remaining, s.remaining.to_string()));
            headers.push((reset, format_reset(s.reset_at_ms.saturating_sub(now_ms))));
        }
    }
    headers
}

/// The `Retry-After` value for a 429: whole seconds, rounded up, at least 1 (HTTP allows only
/// whole seconds; rounding down would invite a retry that is still too early).
pub fn retry_after_secs(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

/// A duration in milliseconds as Go's `time.Duration::String` writes it: `0s`, `20ms`, `1s`,
/// `1.5s`, `6m0s`, `1h0m0s`, `23h18m29.144s`.
pub fn format_reset(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let millis = ms % 1000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h{minutes}m"));
    } else if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if millis > 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Window;

    #[test]
    fn resets_are_formatted_like_go_durations() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (20, "20ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (8640, "8.64s"),
            (59_999, "59.999s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (252_172, "4m12.172s"),
            (3_600_000, "1h0m0s"),
            (3_661_001, "1h1m1.001s"),
            (83_909_144, "23h18m29.144s"),
            (86_400_000, "24h0m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_reset(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
        assert_eq!(retry_after_secs(59_500), 60);
    }

    fn status(metric: Metric, window: Window, limit: u64, remaining: u64, reset_at_ms: u64) -> LimitStatus {
        LimitStatus { metric, window, limit, used: limit - remaining, reserved: 0, remaining, reset_at_ms, enforced: true, exceeded: false }
    }

    #[test]
    fn each_group_reports_its_binding_limit() {
        let now = 1_000_000;
        let limits = [
            status(Metric::Requests, Window::Minute, 60, 59, now + 20),
            status(Metric::Requests, Window::Day, 1000, 900, now + 3_600_000),
            status(Metric::TotalTokens, Window::Minute, 150_000, 149_984, now + 360_000),
            status(Metric::InputTokens, Window::Day, 1_000_000, 10, now + 7_200_000),
            LimitStatus { enforced: false, ..status(Metric::OutputTokens, Window::Minute, 5, 0, now + 1) },
            status(Metric::Cost, Window::Month, 5, 0, now + 1),
        ];
        let headers = rate_limit_headers(&limits, now);
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(headers.len(), 6);
        assert_eq!(get("x-ratelimit-limit-requests"), Some("60"));
        assert_eq!(get("x-ratelimit-remaining-requests"), Some("59"));
        assert_eq!(get("x-ratelimit-reset-requests"), Some("20ms"));
        assert_eq!(get("x-ratelimit-limit-tokens"), Some("1000000"));
        assert_eq!(get("x-ratelimit-remaining-tokens"), Some("10"));
        assert_eq!(get("x-ratelimit-reset-tokens"), Some("2h0m0s"));
        // Equal remaining: the one that resets last binds.
        let tie = [status(Metric::Requests, Window::Minute, 10, 0, now + 1000), status(Metric::Requests, Window::Hour, 100, 0, now + 60_000)];
        assert_eq!(rate_limit_headers(&tie, now)[0].1, "100");
        assert!(rate_limit_headers(&[], now).is_empty());
    }
}
