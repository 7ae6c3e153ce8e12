//! `/admin/forecast` against the in-memory host: rollup rows of a known spend per hour give the
//! expected end-of-period total, the crossing time of the limit, a per-consumer breakdown for a
//! tenant budget, and 400s for an unknown budget or parameter.

use edge::testing::{collect_body, MemoryHost};
use edge::{Body, Gateway, Host, Request, RequestFacts};
use futures::executor::LocalPool;
use policy::stats::{shard_of, EventFacts, Row, StatsOp, HOUR_MS};
use serde_json::{json, Value};

const ADMIN: &str = "adm-0123456789abcdef0123456789abcdef";
/// 2026-12-10T12:30:00Z.
const NOW_MS: u64 = 1_796_905_800_000;

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn host() -> MemoryHost {
    let config = json!({
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "web", "key_sha256": hex_sha256("k1"), "tenant": "acme" },
            { "id": "batch", "key_sha256": hex_sha256("k2"), "tenant": "acme" }
        ]},
        "tenants": { "acme": {} },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": { "up": { "kind": "openai", "base_url": "https://upstream.test/v1" } },
        "models": { "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" } },
        "prices": { "gpt-4o-mini": { "input": "1.00", "output": "2.00" } },
        "budgets": [
            { "name": "per-consumer", "scope": ["consumer"], "window": "month", "usd": "5" },
            { "scope": ["tenant"], "window": "day", "usd": "100" }
        ]
    });
    MemoryHost::new().with_config(&config.to_string()).with_clock_ms(NOW_MS)
}

/// `usd` for `consumer` in each hour of `hours` (unix hours).
fn spend(host: &MemoryHost, consumer: &str, hours: std::ops::Range<u64>, usd: f64) {
    for hour in hours {
        let row = Row::from_event(&EventFacts {
            at_ms: hour * HOUR_MS + 1,
            tenant: Some("acme"),
            consumer: Some(consumer),
            model: Some("gpt"),
            provider: Some("up"),
            outcome: "completed",
            cost_nanos: (usd * 1e9) as u64,
            ..EventFacts::default()
        });
        let op = StatsOp::Record { row: Box::new(row), keep_from_hour: 0 };
        futures::executor::block_on(host.stats(shard_of(Some(consumer), 4), &op)).unwrap();
    }
}

fn get(host: &MemoryHost, path_and_query: &str) -> (u16, Value) {
    let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q.to_string())));
    let request = Request {
        method: "GET".into(),
        path: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {ADMIN}"))],
        body: Body::Empty,
        facts: RequestFacts { query, ..RequestFacts::default() },
    };
    let mut pool = LocalPool::new();
    let gateway = Gateway::new();
    let mut response = pool.run_until(gateway.handle(request, host));
    let body = pool.run_until(collect_body(std::mem::replace(&mut response.body, Body::Empty)));
    (response.status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn a_flat_spend_forecasts_the_rest_of_the_month_and_when_the_budget_is_crossed() {
    let host = host();
    let now_hour = NOW_MS / HOUR_MS;
    // web: 0.01 USD every hour for three days, the hour in progress included.
    spend(&host, "web", now_hour - 72..now_hour + 1, 0.01);
    // batch: 0.02 USD an hour, but only for the last day.
    spend(&host, "batch", now_hour - 24..now_hour + 1, 0.02);
    let (status, body) = get(&host, "/admin/forecast?budget=per-consumer");
    assert_eq!(status, 200, "{body}");
    let list = body["forecasts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    let web = list.iter().find(|f| f["subject"] == "consumer:web").unwrap();
    assert_eq!(web["budget"], "per-consumer");
    assert_eq!(web["period_start"], "2026-12-01T00:00:00Z");
    assert_eq!(web["period_end"], "2027-01-01T00:00:00Z");
    assert_eq!(web["limit_usd"], 5.0);
    assert_eq!(web["model"], "profile", "three days of history is enough for the seasonal model");
    assert_eq!(web["fallback"], false);
    // 73 hours spent (0.73), then half of this hour and 515 more at 0.01.
    assert!((web["spent_usd"].as_f64().unwrap() - 0.73).abs() < 1e-6, "{web}");
    assert!((web["forecast_usd"].as_f64().unwrap() - 5.885).abs() < 1e-6, "{web}");
    assert!((web["low_usd"].as_f64().unwrap() - 5.885).abs() < 1e-6 && (web["high_usd"].as_f64().unwrap() - 5.885).abs() < 1e-6, "no error, no width");
    // 5 - 0.73 = 4.27 more at 0.01 an hour: 427 hours after 12:30 on the 10th.
    assert_eq!(web["exceeds_at"], "2026-12-28T07:30:00Z");
    // One day of history: the run rate, and it says so.
    let batch = list.iter().find(|f| f["subject"] == "consumer:batch").unwrap();
    assert_eq!((batch["model"].as_str(), batch["fallback"].as_bool()), (Some("run_rate"), Some(true)), "{batch}");
    assert!((batch["forecast_usd"].as_f64().unwrap() - (0.5 + 0.02 * 515.5)).abs() < 1e-6, "{batch}");
    assert!(batch.get("consumers").is_none(), "a consumer budget needs no breakdown");

    // The tenant budget (default name), per day, with its consumers.
    let (_, all) = get(&host, "/admin/forecast");
    let tenant = all["forecasts"].as_array().unwrap().iter().find(|f| f["budget"] == "tenant:day").unwrap();
    assert_eq!(tenant["subject"], "tenant:acme");
    assert_eq!(tenant["period_end"], "2026-12-11T00:00:00Z");
    assert_eq!(tenant["exceeds_at"], Value::Null);
    // Today: 13 hours of both (0.39) spent; 11.5 hours to come at 0.03 (the trend of the step
    // from 0.01 to 0.03 an hour a day ago pushes the tenant's line a little above it).
    assert!((tenant["spent_usd"].as_f64().unwrap() - 0.39).abs() < 1e-6, "{tenant}");
    let f = tenant["forecast_usd"].as_f64().unwrap();
    assert!((0.39 + 0.03 * 11.5..0.39 + 0.04 * 11.5).contains(&f), "{tenant}");
    assert!(tenant["low_usd"].as_f64().unwrap() < f && f < tenant["high_usd"].as_f64().unwrap(), "a noisy history has a band");
    let consumers: Vec<&str> = tenant["consumers"].as_array().unwrap().iter().map(|c| c["consumer"].as_str().unwrap()).collect();
    assert_eq!(consumers, ["batch", "web"]);
}

#[test]
fn unknown_budgets_and_parameters_are_400s_and_no_spend_is_no_forecast() {
    let host = host();
    assert_eq!(get(&host, "/admin/forecast").1["forecasts"], json!([]));
    let (status, body) = get(&host, "/admin/forecast?budget=nope");
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("per-consumer, tenant:day"), "{body}");
    assert_eq!(get(&host, "/admin/forecast?window=day").0, 400);
}
