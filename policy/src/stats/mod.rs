//! Usage rollups: every finished request adds one row to an hourly rollup keyed by
//! (hour, tenant, consumer, model, provider, outcome, region), and reports read them back.
//!
//! Pure functions over plain data: the gateway turns its usage event into [`EventFacts`],
//! [`Row::from_event`] makes the request's delta, a store (a Durable Object per shard on Workers,
//! SQLite on Spin, a map under test) merges deltas with [`Metrics::merge`] under the
//! [`StatsOp`] protocol, and [`report`] / [`prometheus`] shape what `/admin/stats`,
//! `/admin/stats.csv` and `/admin/metrics` answer. Latencies are [`Sketch`]es (DDSketch, 1 %
//! relative accuracy), which merge like counters, so quantiles over any range and grouping
//! come from the same rows.

pub mod forecast;
mod report;
mod rollup;
mod sketch;
mod time;

pub use report::{
    csv_field, metrics_json, prometheus, prometheus_label, report, retention_hours, GroupBy, Interval, Report, ReportQuery, Series, CSV_COLUMNS,
    MAX_PROMETHEUS_SERIES, NONE_GROUP,
};
pub use rollup::{merge_rows, shard_of, CacheHit, Dims, EventFacts, Metrics, Row, RowStore, StatsOp, StatsReply, HOUR_MS, LIMIT_REJECTION_LABELS};
pub use sketch::{Sketch, MAX_BINS, RELATIVE_ACCURACY};
pub use time::{format_rfc3339, parse_time};

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hour: u64, consumer: Option<&str>, model: &str, outcome: &str, latency: u64) -> Row {
        Row::from_event(&EventFacts {
            at_ms: hour * HOUR_MS,
            consumer,
            model: Some(model),
            provider: Some("p"),
            outcome,
            error: (outcome == "failed").then_some("upstream_error"),
            input_tokens: 3,
            latency_ms: latency,
            duration_ms: latency * 2,
            ..EventFacts::default()
        })
    }

    const DAY0: u64 = 1_796_428_800 / 3600; // 2026-12-05T00:00:00Z in hours

    #[test]
    fn reports_group_bucket_and_sort() {
        let rows = vec![
            row(DAY0 + 1, Some("a"), "m1", "completed", 10),
            row(DAY0 + 1, Some("b"), "m1", "failed", 20),
            row(DAY0 + 3, Some("a"), "m2", "completed", 30),
            row(DAY0 + 25, None, "m2", "completed", 40),
            row(DAY0 + 49, Some("a"), "m2", "completed", 40), // outside
        ];
        let rows = merge_rows(rows);
        let q = ReportQuery { from_s: DAY0 * 3600, to_s: (DAY0 + 48) * 3600, group_by: GroupBy::Model, interval: Interval::Hour };
        let r = report(&rows, q);
        assert_eq!(r.totals.requests, 4);
        assert_eq!(r.series.iter().map(|s| (s.group.as_str(), s.totals.requests)).collect::<Vec<_>>(), vec![("m1", 2), ("m2", 2)], "ties by name");
        let m2 = &r.series[1];
        assert_eq!(m2.points.keys().copied().collect::<Vec<_>>(), vec![(DAY0 + 3) * 3600, (DAY0 + 25) * 3600]);
        let by_day = report(&rows, ReportQuery { interval: Interval::Day, group_by: GroupBy::Consumer, ..q });
        assert_eq!(by_day.series[0].group, "a");
        assert_eq!(by_day.series[0].points.len(), 1, "both of a's hours fall on day 0");
        assert_eq!(by_day.series.iter().find(|s| s.group == NONE_GROUP).map(|s| s.points.keys().copied().collect::<Vec<_>>()), Some(vec![(DAY0 + 24) * 3600]));
        let by_outcome = report(&rows, ReportQuery { group_by: GroupBy::Outcome, ..q });
        assert_eq!(by_outcome.series[0].group, "completed");
        assert_eq!(by_outcome.series[1].totals.errors_by_type["upstream_error"], 1);
        let json = r.to_json();
        assert_eq!(json["from"], "2026-12-05T00:00:00Z");
        assert_eq!(json["series"][1]["points"][0]["t"], "2026-12-05T03:00:00Z");
        assert_eq!(json["series"][1]["points"][0]["requests"], 1);
        assert_eq!(json["totals"]["errors_by_type"]["upstream_error"], 1);
        let p50 = json["series"][1]["points"][0]["latency_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 30.0).abs() <= 0.3, "{p50}");
        // A mid-hour start includes that hour whole.
        let mid = report(&rows, ReportQuery { from_s: (DAY0 + 1) * 3600 + 1800, to_s: (DAY0 + 2) * 3600, ..q });
        assert_eq!(mid.totals.requests, 2);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        let rows = vec![row(DAY0, Some("a,\"quoted\"\nname"), "m", "completed", 5), row(DAY0, Some("plain"), "m", "failed", 5)];
        let r = report(&rows, ReportQuery { from_s: DAY0 * 3600, to_s: (DAY0 + 1) * 3600, group_by: GroupBy::Consumer, interval: Interval::Hour });
        let csv = r.to_csv();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(csv.contains("2026-12-05T00:00:00Z,\"a,\"\"quoted\"\"\nname\",1,0,,3,"), "{csv}");
        assert!(csv.contains("2026-12-05T00:00:00Z,plain,1,1,upstream_error=1,3,"), "{csv}");
        assert_eq!(csv_field("x"), "x");
        assert_eq!(csv_field("\""), "\"\"\"\"");
    }

    #[test]
    fn prometheus_text_is_well_formed_escaped_and_capped() {
        let rows = vec![row(DAY0, Some("we\"ird\\na\nme"), "m", "completed", 1500), row(DAY0, Some("b"), "m", "failed", 10), row(DAY0, Some("c"), "m", "completed", 10)];
        let text = prometheus(&rows, 10);
        assert!(text.contains("# TYPE gateway_requests_total counter\n"));
        assert!(text.contains(r#"gateway_requests_total{consumer="we\"ird\\na\nme",tenant="",model="m",provider="p",outcome="completed"} 1"#), "{text}");
        assert!(text.contains(r#"gateway_tokens_total{consumer="b",tenant="",model="m",provider="p",outcome="failed",type="input"} 3"#));
        assert!(text.contains(r#"gateway_errors_total{consumer="b",tenant="",model="m",provider="p",outcome="failed",type="upstream_error"} 1"#));
        assert!(text.contains("# TYPE gateway_request_duration_seconds summary\n"));
        assert!(text.contains(r#"gateway_request_duration_seconds_count{consumer="c",tenant="",model="m",provider="p",outcome="completed"} 1"#));
        assert!(text.contains(r#"gateway_request_duration_seconds_sum{consumer="c",tenant="",model="m",provider="p",outcome="completed"} 0.02"#));
        // Every sample line: name{labels} value, where value parses as a float.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "NaN", "{line}");
        }
        let capped = prometheus(&rows, 2);
        assert_eq!(capped.lines().filter(|l| l.starts_with("gateway_requests_total")).count(), 2);
        assert!(capped.contains(r#"gateway_requests_total{consumer="other",tenant="other",model="other",provider="other",outcome="other"} 2"#), "{capped}");
    }
}
