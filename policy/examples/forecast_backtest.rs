//! Back-test of the spend forecast models (`policy::stats::forecast`): replays synthetic hourly
//! spend series, forecasts the end-of-period total from every day's cut point, and reports the
//! mean absolute percentage error (MAPE) and mean absolute error of that total per model.
//!
//! `cargo run --release -p policy --example forecast_backtest` prints a Markdown table (the body
//! of bench-results/forecast.md); `-- --json` prints the same as JSON for scripts/bench.
//!
//! Each workload: 28 days of history before a 30-day period (as a month budget sees it, with the
//! rollups' default retention), cuts at the start of each day 1..29 of the period at 00:00 plus a
//! mid-day cut at 13:00. Deterministic (a fixed xorshift seed per workload).

use policy::stats::forecast::{forecast_period, Model};

const H: u64 = 3_600_000;
const HISTORY_DAYS: usize = 28;
const PERIOD_DAYS: usize = 30;
/// 2026-11-02T00:00:00Z, a Monday, in hours.
const START_HOUR: u64 = 1_793_577_600 / 3600;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of 4 uniforms), mean 0, sd 1.
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.next()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

fn hour_of_day(t: usize) -> usize {
    t % 24
}

fn weekday(t: usize) -> usize {
    (t / 24) % 7 // 0 = Monday (the series starts on a Monday)
}

/// Office-hours shape in UTC for a Europe + US customer base: low at night, two humps.
fn diurnal(h: usize) -> f64 {
    let x = h as f64;
    0.25 + 0.9 * (-(x - 10.0).powi(2) / 8.0).exp() + 0.7 * (-(x - 16.0).powi(2) / 10.0).exp()
}

fn workloads() -> Vec<(&'static str, Vec<f64>)> {
    let n = (HISTORY_DAYS + PERIOD_DAYS) * 24;
    let mut out = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    out.push(("flat", (0..n).map(|_| (1.0 + 0.1 * rng.normal()).max(0.0)).collect()));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    out.push(("daily seasonal", (0..n).map(|t| (2.0 * diurnal(hour_of_day(t)) + 0.1 * rng.normal()).max(0.0)).collect()));
    let mut rng = Rng(0x1234_5678_9abc_def1);
    out.push((
        "weekly seasonal + growth",
        (0..n)
            .map(|t| {
                let week = if weekday(t) >= 5 { 0.3 } else { 1.0 };
                let growth = 1.0 + 0.5 * t as f64 / n as f64; // +50 % over 58 days
                (2.0 * diurnal(hour_of_day(t)) * week * growth + 0.1 * rng.normal()).max(0.0)
            })
            .collect(),
    ));
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    out.push((
        "bursty",
        (0..n)
            .map(|t| {
                let base = 0.5 * diurnal(hour_of_day(t));
                // A batch job now and then: 2 % of hours cost 20x.
                let burst = if rng.next() < 0.02 { 10.0 + 10.0 * rng.next() } else { 0.0 };
                base + burst + 0.05 * rng.normal().abs()
            })
            .collect(),
    ));
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    out.push((
        "step change",
        (0..n)
            .map(|t| {
                // A new integration doubles spend 10 days into the period.
                let level = if t >= (HISTORY_DAYS + 10) * 24 { 2.0 } else { 1.0 };
                (level * diurnal(hour_of_day(t)) + 0.1 * rng.normal()).max(0.0)
            })
            .collect(),
    ));
    // "Replayed": a plausible real shape. Per-request costs drawn from a heavy-tailed mix (most
    // small chat calls, a few long-context ones), requests per hour Poisson-like around a
    // weekday/weekend diurnal rate, with nights of zero spend and a slow ramp.
    let mut rng = Rng(0x5151_7272_9393_abab);
    out.push((
        "replayed (request-level)",
        (0..n)
            .map(|t| {
                let weekend = weekday(t) >= 5;
                let rate = 40.0 * diurnal(hour_of_day(t)) * if weekend { 0.25 } else { 1.0 } * (1.0 + 0.3 * t as f64 / n as f64);
                let rate = if (1..5).contains(&hour_of_day(t)) { 0.0 } else { rate };
                let requests = (rate + rate.sqrt() * rng.normal()).round().max(0.0) as usize;
                (0..requests).map(|_| if rng.next() < 0.05 { 0.20 + 0.3 * rng.next() } else { 0.002 + 0.01 * rng.next() }).sum()
            })
            .collect(),
    ));
    out
}

struct Score {
    ape: f64,
    ae: f64,
    count: usize,
    fallback: usize,
    covered: usize,
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let models = [Model::RunRate, Model::HoltWinters, Model::Profile];
    let mut rows = Vec::new();
    let mut overall: Vec<Score> = models.iter().map(|_| Score { ape: 0.0, ae: 0.0, count: 0, fallback: 0, covered: 0 }).collect();
    for (name, series) in workloads() {
        let period_start = HISTORY_DAYS * 24;
        let period_end = period_start + PERIOD_DAYS * 24;
        let actual: f64 = series[period_start..period_end].iter().sum();
        let mut scores: Vec<Score> = models.iter().map(|_| Score { ape: 0.0, ae: 0.0, count: 0, fallback: 0, covered: 0 }).collect();
        let cuts = (1..PERIOD_DAYS).flat_map(|d| [period_start + d * 24, period_start + d * 24 + 13]);
        for cut in cuts {
            let history = &series[cut - HISTORY_DAYS * 24..cut];
            let spent: f64 = series[period_start..cut].iter().sum();
            let now_ms = (START_HOUR + cut as u64) * H;
            let end_ms = (START_HOUR + period_end as u64) * H;
            for (i, model) in models.iter().enumerate() {
                let p = forecast_period(history, spent, now_ms, end_ms, None, *model);
                let s = &mut scores[i];
                s.ape += (p.expected - actual).abs() / actual;
                s.ae += (p.expected - actual).abs();
                s.count += 1;
                s.fallback += usize::from(p.fallback);
                s.covered += usize::from(p.low <= actual && actual <= p.high);
            }
        }
        for (o, s) in overall.iter_mut().zip(&scores) {
            o.ape += s.ape;
            o.ae += s.ae;
            o.count += s.count;
            o.covered += s.covered;
        }
        rows.push((name, actual, scores));
    }
    if json {
        let workloads: Vec<_> = rows
            .iter()
            .map(|(name, actual, scores)| {
                let per: serde_json::Map<String, serde_json::Value> = models
                    .iter()
                    .zip(scores)
                    .map(|(m, s)| {
                        let c = s.count as f64;
                        (m.name().to_string(), serde_json::json!({ "mape_pct": 100.0 * s.ape / c, "mae_usd": s.ae / c, "coverage_pct": 100.0 * s.covered as f64 / c }))
                    })
                    .collect();
                serde_json::json!({ "workload": name, "actual_usd": actual, "models": per })
            })
            .collect();
        let all: serde_json::Map<String, serde_json::Value> =
            models.iter().zip(&overall).map(|(m, s)| (m.name().to_string(), serde_json::json!({ "mape_pct": 100.0 * s.ape / s.count as f64 }))).collect();
        println!("{}", serde_json::json!({ "workloads": workloads, "overall": all }));
        return;
    }
    println!("| workload | period total (USD) | run rate MAPE / MAE | Holt-Winters MAPE / MAE | profile MAPE / MAE | 95 % band coverage (rr / hw / profile) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, actual, scores) in &rows {
        let cell = |s: &Score| format!("{:.1} % / {:.2}", 100.0 * s.ape / s.count as f64, s.ae / s.count as f64);
        let cov = |s: &Score| format!("{:.0} %", 100.0 * s.covered as f64 / s.count as f64);
        println!("| {name} | {actual:.2} | {} | {} | {} | {} / {} / {} |", cell(&scores[0]), cell(&scores[1]), cell(&scores[2]), cov(&scores[0]), cov(&scores[1]), cov(&scores[2]));
    }
    let m = |s: &Score| format!("{:.1} %", 100.0 * s.ape / s.count as f64);
    println!("| **all** | | {} | {} | {} | |", m(&overall[0]), m(&overall[1]), m(&overall[2]));
}
