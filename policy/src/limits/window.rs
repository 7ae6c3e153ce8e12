//! Fixed windows aligned to UTC, and the calendar arithmetic behind them.
//!
//! # Why fixed windows
//!
//! A limit counts usage in a *fixed* window aligned to UTC: a minute window starts at second
//! `:00`, an hour at `:00:00`, a day at `00:00:00 UTC`, a month at `00:00:00 UTC` on the 1st.
//! Usage drops back to zero at the boundary. We chose this over a sliding window (or the
//! two-counter sliding approximation) because:
//!
//! - **Exact reset times.** OpenAI's `x-ratelimit-reset-*` header is "the time until the rate
//!   limit resets to its initial state", and clients sleep for it (or for `Retry-After`). With a
//!   fixed window that time is known exactly: the window's end. A sliding approximation only
//!   decays, so its reset time is an estimate and clients either retry too early or wait too long.
//! - **Small, O(1) state.** One counter per (metric, window) is what a Durable Object stores and
//!   rewrites on every request; a sliding log grows with traffic, the approximation doubles the
//!   counters.
//! - **One mechanism for quotas and budgets.** Money budgets are per calendar day and month
//!   anyway, and must match what a finance report calls "this month".
//!
//! The known cost: up to twice the limit can pass in a short span straddling a boundary (the end of
//! one window plus the start of the next). For token and money limits, whose purpose is fair share
//! and spend per period, that is acceptable; pair a minute limit with a smaller-window limit if
//! bursts matter.
//!
//! Unix time has no leap seconds, so every UTC day is exactly 86 400 000 ms.

use serde::{Deserialize, Serialize};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

/// The period a limit or budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Minute,
    Hour,
    Day,
    /// A calendar month in UTC (28 to 31 days).
    Month,
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    pub fn from_name(name: &str) -> Option<Window> {
        match name {
            "minute" => Some(Window::Minute),
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            "month" => Some(Window::Month),
            _ => None,
        }
    }

    /// The start (inclusive, unix ms) of the window that contains `now_ms`.
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            Window::Minute => now_ms - now_ms % MINUTE_MS,
            Window::Hour => now_ms - now_ms % HOUR_MS,
            Window::Day => now_ms - now_ms % DAY_MS,
            Window::Month => {
                let (y, m, _) = civil_from_days((now_ms / DAY_MS) as i64);
                days_to_ms(days_from_civil(y, m, 1))
            }
        }
    }

    /// The end (exclusive, unix ms) of the window that starts at `start_ms`: the reset time.
    pub fn end_ms(self, start_ms: u64) -> u64 {
        match self {
            Window::Minute => start_ms.saturating_add(MINUTE_MS),
            Window::Hour => start_ms.saturating_add(HOUR_MS),
            Window::Day => start_ms.saturating_add(DAY_MS),
            Window::Month => {
                let (y, m, _) = civil_from_days((start_ms / DAY_MS) as i64);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_to_ms(days_from_civil(ny, nm, 1))
            }
        }
    }

    /// The end of the window that contains `now_ms`.
    pub fn reset_at_ms(self, now_ms: u64) -> u64 {
        self.end_ms(self.start_ms(now_ms))
    }
}

fn days_to_ms(days: i64) -> u64 {
    u64::try_from(days).unwrap_or(0).saturating_mul(DAY_MS)
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (`m` in 1..=12, `d` in 1..=31).
///
/// Howard Hinnant's `days_from_civil` (<http://howardhinnant.github.io/date_algorithms.html>):
/// exact for every date, no tables, no floating point.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01 (the inverse of
/// [`days_from_civil`], Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i64, m: u32, d: u32, hh: u64, mm: u64, ss: u64, ms: u64) -> u64 {
        days_to_ms(days_from_civil(y, m, d)) + hh * HOUR_MS + mm * MINUTE_MS + ss * 1000 + ms
    }

    #[test]
    fn known_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // 2024-02-29T00:00:00Z = 1709164800
        assert_eq!(days_to_ms(days_from_civil(2024, 2, 29)), 1_709_164_800_000);
        for z in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn minute_hour_day_windows_align_to_utc() {
        let now = at(2026, 3, 14, 15, 9, 26, 535);
        assert_eq!(Window::Minute.start_ms(now), at(2026, 3, 14, 15, 9, 0, 0));
        assert_eq!(Window::Minute.reset_at_ms(now), at(2026, 3, 14, 15, 10, 0, 0));
        assert_eq!(Window::Hour.start_ms(now), at(2026, 3, 14, 15, 0, 0, 0));
        assert_eq!(Window::Hour.reset_at_ms(now), at(2026, 3, 14, 16, 0, 0, 0));
        assert_eq!(Window::Day.start_ms(now), at(2026, 3, 14, 0, 0, 0, 0));
        assert_eq!(Window::Day.reset_at_ms(now), at(2026, 3, 15, 0, 0, 0, 0));
        // The boundary itself belongs to the next window; one ms before, to the previous.
        let boundary = at(2026, 3, 14, 15, 10, 0, 0);
        assert_eq!(Window::Minute.start_ms(boundary), boundary);
        assert_eq!(Window::Minute.start_ms(boundary - 1), boundary - MINUTE_MS);
        assert_eq!(Window::Day.start_ms(at(2026, 3, 14, 23, 59, 59, 999)), at(2026, 3, 14, 0, 0, 0, 0));
    }

    #[test]
    fn month_windows_follow_the_calendar() {
        // 31-day January, Dec -> Jan year change.
        assert_eq!(Window::Month.start_ms(at(2026, 1, 31, 23, 59, 59, 999)), at(2026, 1, 1, 0, 0, 0, 0));
        assert_eq!(Window::Month.reset_at_ms(at(2026, 1, 15, 12, 0, 0, 0)), at(2026, 2, 1, 0, 0, 0, 0));
        assert_eq!(Window::Month.start_ms(at(2025, 12, 31, 23, 59, 59, 999)), at(2025, 12, 1, 0, 0, 0, 0));
        assert_eq!(Window::Month.reset_at_ms(at(2025, 12, 31, 23, 59, 59, 999)), at(2026, 1, 1, 0, 0, 0, 0));
        assert_eq!(Window::Month.start_ms(at(2026, 1, 1, 0, 0, 0, 0)), at(2026, 1, 1, 0, 0, 0, 0));
        // February: leap (2024, 2000) and common (2025, 1900, 2100) years.
        let feb_len = |y| (Window::Month.end_ms(at(y, 2, 1, 0, 0, 0, 0)) - at(y, 2, 1, 0, 0, 0, 0)) / DAY_MS;
        assert_eq!(feb_len(2024), 29);
        assert_eq!(feb_len(2000), 29);
        assert_eq!(feb_len(2025), 28);
        assert_eq!(feb_len(2100), 28);
        assert_eq!(Window::Month.start_ms(at(2024, 2, 29, 23, 0, 0, 0)), at(2024, 2, 1, 0, 0, 0, 0));
        assert_eq!(Window::Month.reset_at_ms(at(2024, 2, 29, 23, 0, 0, 0)), at(2024, 3, 1, 0, 0, 0, 0));
        // Every month of a year has its calendar length.
        let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for (i, len) in lengths.iter().enumerate() {
            let start = at(2026, i as u32 + 1, 1, 0, 0, 0, 0);
            assert_eq!(Window::Month.end_ms(start) - start, len * DAY_MS, "month {}", i + 1);
        }
        assert_eq!(Window::Month.start_ms(0), 0);
    }

    #[test]
    fn names_round_trip() {
        for w in [Window::Minute, Window::Hour, Window::Day, Window::Month] {
            assert_eq!(Window::from_name(w.name()), Some(w));
            assert_eq!(serde_json::to_string(&w).unwrap(), format!("\"{}\"", w.name()));
        }
        assert_eq!(Window::from_name("week"), None);
    }
}
