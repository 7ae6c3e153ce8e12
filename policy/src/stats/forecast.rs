//! Spend forecasts from the hourly rollups: how much a budget's period will have cost at its end,
//! with an interval, and when the limit is crossed.
//!
//! Three models over an hourly series of spend (USD per hour, complete hours only):
//! - [`Model::RunRate`]: the mean hour of the last week (or of what there is), repeated. The
//!   fallback when there are fewer than two days of history, whatever model was asked for.
//! - [`Model::HoltWinters`]: additive Holt-Winters (level, damped trend, 24-hour season),
//!   smoothing and damping constants picked by a grid search on the in-sample one-step squared error.
//! - [`Model::Profile`]: a least-squares linear trend plus the mean residual per hour of the
//!   week (per hour of the day with fewer than two weeks of history).
//!
//! The default is [`DEFAULT_MODEL`], chosen by the back-test (`policy/examples/forecast_backtest.rs`,
//! `bench-results/forecast.md`). Forecast hours are clamped at zero (spend is never negative).
//! The interval is ±1.96 σ √h, σ the root-mean-square of the model's in-sample one-step errors
//! and h the hours ahead (errors taken as independent): a rough 95 % band, wider the further out.

use serde::Serialize;

/// Which model produced a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    RunRate,
    HoltWinters,
    Profile,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::RunRate => "run_rate",
            Model::HoltWinters => "holt_winters",
            Model::Profile => "profile",
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        [Model::RunRate, Model::HoltWinters, Model::Profile].into_iter().find(|m| m.name() == name)
    }
}

/// The model `/admin/forecast` and the `budget_forecast` alert use (see the back-test).
pub const DEFAULT_MODEL: Model = Model::Profile;

/// Hours in the daily season.
pub const DAY: usize = 24;
/// Hours in the weekly season.
pub const WEEK: usize = 168;

/// Hours of history needed for a seasonal model: two daily seasons.
pub const MIN_SEASONAL_HOURS: usize = 2 * DAY;

/// A forecast of the next hours.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The model that made it (the run rate when history was too short for the one asked).
    pub model: Model,
    /// True when the asked model fell back to the run rate for lack of history.
    pub fallback: bool,
    /// One value per hour ahead, never negative.
    pub hourly: Vec<f64>,
    /// RMS of the in-sample one-step errors (per hour).
    pub sigma: f64,
}

/// Forecast `horizon` hours after `history` (hourly spend, oldest first; `first_hour` is the
/// absolute hour, unix seconds / 3600, of `history[0]`, so profiles align with the clock).
pub fn forecast(history: &[f64], first_hour: u64, horizon: usize, model: Model) -> Forecast {
    let seasonal_ok = history.len() >= MIN_SEASONAL_HOURS;
    let (model, fallback) = match model {
        Model::RunRate => (Model::RunRate, false),
        asked if seasonal_ok => (asked, false),
        _ => (Model::RunRate, true),
    };
    let (mut hourly, sigma) = match model {
        Model::RunRate => run_rate(history, horizon),
        Model::HoltWinters => holt_winters(history, first_hour, horizon),
        Model::Profile => profile(history, first_hour, horizon),
    };
    for v in &mut hourly {
        *v = v.max(0.0);
    }
    Forecast { model, fallback, hourly, sigma }
}

fn run_rate(history: &[f64], horizon: usize) -> (Vec<f64>, f64) {
    let recent = &history[history.len().saturating_sub(WEEK)..];
    if recent.is_empty() {
        return (vec![0.0; horizon], 0.0);
    }
    let mean = recent.iter().sum::<f64>() / recent.len() as f64;
    let sigma = (recent.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / recent.len() as f64).sqrt();
    (vec![mean; horizon], sigma)
}

/// The state of an additive Holt-Winters run over a series.
struct HoltWinters {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Trend damping: the trend h hours ahead adds phi + phi^2 + ... + phi^h.
    phi: f64,
    /// Sum of squared one-step errors and their count.
    sse: f64,
    steps: usize,
}

/// Run additive Holt-Winters with season `s` over `y`. Initialisation: the first two seasons'
/// means give the level and trend; the season is what the first two seasons deviate from that
/// line by, on average, so a pure linear series starts (and stays) exact.
fn run_holt_winters(y: &[f64], first_hour: u64, s: usize, [alpha, beta, gamma, phi]: [f64; 4]) -> HoltWinters {
    let mean = |range: std::ops::Range<usize>| y[range.clone()].iter().sum::<f64>() / range.len() as f64;
    let (m1, m2) = (mean(0..s), mean(s..2 * s));
    let trend = (m2 - m1) / s as f64;
    let centre = (s as f64 - 1.0) / 2.0;
    let mut season = vec![0.0; s];
    for (i, v) in y[..2 * s].iter().enumerate() {
        let line = m1 + trend * (i as f64 - centre);
        season[(first_hour as usize + i) % s] += (v - line) / 2.0;
    }
    // The level at the end of the second season.
    let mut state = HoltWinters { level: m1 + trend * (2.0 * s as f64 - 1.0 - centre), trend, season, phi, sse: 0.0, steps: 0 };
    for (i, &v) in y.iter().enumerate().skip(2 * s) {
        let k = (first_hour as usize + i) % s;
        let predicted = state.level + phi * state.trend + state.season[k];
        state.sse += (v - predicted).powi(2);
        state.steps += 1;
        let previous = state.level;
        state.level = alpha * (v - state.season[k]) + (1.0 - alpha) * (previous + phi * state.trend);
        state.trend = beta * (state.level - previous) + (1.0 - beta) * phi * state.trend;
        state.season[k] = gamma * (v - state.level) + (1.0 - gamma) * state.season[k];
    }
    state
}

fn holt_winters(history: &[f64], first_hour: u64, horizon: usize) -> (Vec<f64>, f64) {
    const ALPHAS: [f64; 5] = [0.05, 0.1, 0.2, 0.4, 0.7];
    const BETAS: [f64; 3] = [0.0, 0.01, 0.05];
    const GAMMAS: [f64; 4] = [0.05, 0.1, 0.2, 0.4];
    const PHIS: [f64; 3] = [0.9, 0.98, 1.0];
    let mut best: Option<HoltWinters> = None;
    for alpha in ALPHAS {
        for beta in BETAS {
            for gamma in GAMMAS {
                for phi in PHIS {
                    let run = run_holt_winters(history, first_hour, DAY, [alpha, beta, gamma, phi]);
                    if best.as_ref().is_none_or(|b| run.sse < b.sse) {
                        best = Some(run);
                    }
                }
            }
        }
    }
    let best = best.expect("the grid is not empty");
    let n = history.len();
    let mut damped = 0.0;
    let hourly = (1..=horizon)
        .map(|h| {
            damped += best.phi.powi(h as i32);
            best.level + damped * best.trend + best.season[(first_hour as usize + n + h - 1) % DAY]
        })
        .collect();
    // With exactly two seasons there are no one-step errors yet: use the initial fit's residuals.
    let sigma = if best.steps > 0 { (best.sse / best.steps as f64).sqrt() } else { run_rate(history, 0).1 };
    (hourly, sigma)
}

fn profile(history: &[f64], first_hour: u64, horizon: usize) -> (Vec<f64>, f64) {
    let n = history.len();
    let period = if n >= 2 * WEEK { WEEK } else { DAY };
    // Trend and shape by backfitting (a least-squares line through the series less the shape,
    // then the shape as the mean residual per slot), which converges to their joint fit.
    let nf = n as f64;
    let t_mean = (nf - 1.0) / 2.0;
    let sxx: f64 = (0..n).map(|t| (t as f64 - t_mean).powi(2)).sum();
    let (mut a, mut b) = (0.0, 0.0);
    let mut shape = vec![0.0; period];
    for _ in 0..8 {
        let deseasoned = |t: usize| history[t] - shape[(first_hour as usize + t) % period];
        let y_mean = (0..n).map(deseasoned).sum::<f64>() / nf;
        let sxy: f64 = (0..n).map(|t| (t as f64 - t_mean) * (deseasoned(t) - y_mean)).sum();
        b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        a = y_mean - b * t_mean;
        let mut sums = vec![(0.0, 0usize); period];
        for (t, y) in history.iter().enumerate() {
            let slot = &mut sums[(first_hour as usize + t) % period];
            slot.0 += y - (a + b * t as f64);
            slot.1 += 1;
        }
        shape = sums.iter().map(|(s, c)| if *c > 0 { s / *c as f64 } else { 0.0 }).collect();
    }
    let fitted = |t: usize| a + b * t as f64 + shape[(first_hour as usize + t) % period];
    let sse: f64 = history.iter().enumerate().map(|(t, y)| (y - fitted(t)).powi(2)).sum();
    ((n..n + horizon).map(fitted).collect(), (sse / nf).sqrt())
}

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.96;

/// A budget period's expected end.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodForecast {
    pub model: Model,
    pub fallback: bool,
    /// Spent so far in the period.
    pub spent: f64,
    /// Expected total at the period's end, and its interval (never below what is spent).
    pub expected: f64,
    pub low: f64,
    pub high: f64,
    /// When the expected cumulative spend reaches `limit` (unix ms), if before the period's end;
    /// `now_ms` when it already has.
    pub exceeds_at_ms: Option<u64>,
}

/// The forecast of a period ending at `end_ms`, seen at `now_ms`. `history` holds the complete
/// hours before the current one (oldest first, the last one ending at the current hour's start);
/// `spent` is what the period has cost so far, the current hour's part included.
pub fn forecast_period(history: &[f64], spent: f64, now_ms: u64, end_ms: u64, limit: Option<f64>, model: Model) -> PeriodForecast {
    const HOUR: u64 = 3_600_000;
    let hour_start = now_ms - now_ms % HOUR;
    let first_hour = (hour_start / HOUR).saturating_sub(history.len() as u64);
    let horizon = end_ms.saturating_sub(hour_start).div_ceil(HOUR) as usize;
    let f = forecast(history, first_hour, horizon, model);
    let mut expected = spent;
    let mut remaining_hours = 0.0;
    let mut exceeds_at_ms = limit.filter(|l| spent >= *l).map(|_| now_ms);
    for (i, value) in f.hourly.iter().enumerate() {
        let from = (hour_start + i as u64 * HOUR).max(now_ms);
        let to = (hour_start + (i as u64 + 1) * HOUR).min(end_ms);
        if to <= from {
            continue;
        }
        let share = (to - from) as f64 / HOUR as f64;
        let add = value * share;
        if let (Some(l), None) = (limit, exceeds_at_ms) {
            if expected + add >= l && add > 0.0 {
                exceeds_at_ms = Some(from + (((l - expected) / add) * (to - from) as f64).round() as u64);
            }
        }
        expected += add;
        remaining_hours += share;
    }
    let half = Z95 * f.sigma * remaining_hours.sqrt();
    PeriodForecast { model: f.model, fallback: f.fallback, spent, expected, low: (expected - half).max(spent), high: expected + half, exceeds_at_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(hours: usize, first_hour: u64) -> Vec<f64> {
        (0..hours)
            .map(|t| {
                let h = (first_hour as usize + t) % 24;
                2.0 + 0.01 * t as f64 + if (9..18).contains(&h) { 3.0 } else { 0.0 }
            })
            .collect()
    }

    #[test]
    fn a_linear_series_is_forecast_exactly_by_the_seasonal_models() {
        let y: Vec<f64> = (0..100).map(|t| 1.0 + 0.5 * t as f64).collect();
        for model in [Model::HoltWinters, Model::Profile] {
            let f = forecast(&y, 7, 10, model);
            assert_eq!(f.model, model);
            assert!(!f.fallback);
            for (h, v) in f.hourly.iter().enumerate() {
                let want = 1.0 + 0.5 * (100 + h) as f64;
                assert!((v - want).abs() < 1e-9, "{model:?} h={h}: {v} vs {want}");
            }
            assert!(f.sigma < 1e-9, "{model:?} {}", f.sigma);
        }
    }

    #[test]
    fn a_known_daily_series_is_forecast_within_tolerance() {
        let first = 1_000_000u64;
        let all = daily(24 * 14 + 48, first);
        let (history, future) = all.split_at(24 * 14);
        for model in [Model::HoltWinters, Model::Profile] {
            let f = forecast(history, first, 48, model);
            let err: f64 = f.hourly.iter().zip(future).map(|(a, b)| (a - b).abs()).sum::<f64>() / 48.0;
            assert!(err < 0.05, "{model:?} mean abs error {err}");
        }
        // The run rate misses the shape: the busy hours are under-forecast.
        let rr = forecast(history, first, 48, Model::RunRate);
        let err: f64 = rr.hourly.iter().zip(future).map(|(a, b)| (a - b).abs()).sum::<f64>() / 48.0;
        assert!(err > 1.0, "{err}");
    }

    #[test]
    fn short_history_falls_back_to_the_run_rate_and_says_so() {
        let f = forecast(&[1.0; 47], 0, 5, Model::HoltWinters);
        assert_eq!((f.model, f.fallback), (Model::RunRate, true));
        assert_eq!(f.hourly, vec![1.0; 5]);
        let f = forecast(&[1.0; 48], 0, 5, Model::HoltWinters);
        assert_eq!((f.model, f.fallback), (Model::HoltWinters, false));
        let empty = forecast(&[], 0, 3, Model::Profile);
        assert_eq!((empty.model, empty.fallback, empty.hourly), (Model::RunRate, true, vec![0.0; 3]));
    }

    #[test]
    fn zero_spend_hours_never_forecast_negative_spend() {
        // Spend only at 12:00 each day; a falling trend pulls the line below zero elsewhere.
        let y: Vec<f64> = (0..24 * 10).map(|t| if t % 24 == 12 { 10.0 - t as f64 / 30.0 } else { 0.0 }).collect();
        for model in [Model::RunRate, Model::HoltWinters, Model::Profile] {
            let f = forecast(&y, 0, 72, model);
            assert!(f.hourly.iter().all(|v| *v >= 0.0 && v.is_finite()), "{model:?} {:?}", f.hourly);
        }
    }

    #[test]
    fn the_period_forecast_adds_the_rest_of_the_period_and_finds_the_crossing() {
        const H: u64 = 3_600_000;
        let now = 1000 * H + H / 2; // half way through hour 1000
        let end = 1010 * H;
        // A flat 2 USD an hour: the rest of this hour is 1, then 9 hours of 2.
        let p = forecast_period(&[2.0; 24], 5.0, now, end, Some(10.0), Model::RunRate);
        assert!((p.expected - 24.0).abs() < 1e-9, "{}", p.expected);
        assert_eq!((p.low, p.high), (p.expected, p.expected), "no error, no width");
        // 5 + 1 (rest of hour 1000) + 2 (hour 1001) = 8, + 2 more reaches 10 at the end of hour 1002.
        assert_eq!(p.exceeds_at_ms, Some(1003 * H));
        let over = forecast_period(&[2.0; 24], 11.0, now, end, Some(10.0), Model::RunRate);
        assert_eq!(over.exceeds_at_ms, Some(now));
        let never = forecast_period(&[2.0; 24], 0.0, now, end, Some(100.0), Model::RunRate);
        assert_eq!(never.exceeds_at_ms, None);
        // Noise widens the interval, symmetric around the expectation but never below the spend.
        let noisy: Vec<f64> = (0..24).map(|t| if t % 2 == 0 { 1.0 } else { 3.0 }).collect();
        let p = forecast_period(&noisy, 5.0, now, end, None, Model::RunRate);
        let half = Z95 * 1.0 * 9.5f64.sqrt();
        assert!((p.high - p.expected - half).abs() < 1e-9 && (p.expected - p.low - half).abs() < 1e-9, "{p:?}");
    }
}
