//! Usage rollups through the whole pipeline against the in-memory host: a mixed workload
//! (success, stream, fallback, upstream error, client disconnect, refused credential) rolls up
//! to exactly the sum of its usage events; `/admin/stats` groups and buckets it, refuses bad
//! parameters and callers without the admin key; the CSV round-trips awkward names; and
//! `/admin/metrics` is strict Prometheus text.

use std::collections::BTreeMap;
use std::future::Future;

use edge::event::Outcome;
use edge::testing::{collect_body, MemoryHost, Scripted};
use edge::{Body, Gateway, OutboundResponse, Request, RequestFacts, Response, UsageEvent};
use futures::executor::LocalPool;
use serde_json::{json, Value};

const ADMIN: &str = "adm-0123456789abcdef0123456789abcdef";
const KEY: &str = "sk-client-web";
const ODD: &str = "team \"x\", ops\nnight";

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(stats: Value) -> String {
    json!({
        "limits": { "config_refresh_ms": 0, "upstream_timeout_ms": 1000 },
        "auth": { "mode": "api_keys", "consumers": [{ "id": "web", "key_sha256": hex_sha256(KEY), "tenant": "acme" }] },
        "tenants": { "acme": {} },
        "admin": { "key_sha256": hex_sha256(ADMIN) },
        "providers": {
            "up": { "kind": "openai", "base_url": "https://upstream.test/v1" },
            "a": { "kind": "openai", "base_url": "https://a.test/v1" },
            "b": { "kind": "openai", "base_url": "https://b.test/v1" }
        },
        "models": {
            "gpt": { "provider": "up", "upstream_model": "gpt-4o-mini" },
            "routed": {
                "targets": [
                    { "id": "a", "provider": "a", "upstream_model": "gpt-4o-mini", "region": "us-east-1", "jurisdiction": "us" },
                    { "id": "b", "provider": "b", "upstream_model": "gpt-4o-mini", "region": "us-west-2", "jurisdiction": "us" }
                ],
                "strategy": { "type": "ordered" },
                "max_attempts": 2
            }
        },
        "prices": { "gpt-4o-mini": { "input": "1.00", "output": "2.00" } },
        "budgets": [{ "scope": ["consumer"], "window": "month", "usd": "100" }],
        "stats": stats
    })
    .to_string()
}

fn chunk(content: &str) -> String {
    format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}], "usage": null}))
}

/// `a.test` always fails; otherwise the first message decides: `fail` (a 500), `hang` (never
/// answers), anything else a whole answer or a stream with usage.
fn host(stats: Value) -> MemoryHost {
    MemoryHost::new().with_config(&config(stats)).with_upstream(|request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let text = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
        let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}});
        let respond = |status: u16, content_type: &str, bytes: Vec<u8>| {
            Scripted::Respond(OutboundResponse { status, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(bytes) })
        };
        if request.url.contains("a.test") || text == "fail" {
            return respond(500, "application/json", json!({"error": {"message": "boom", "type": "server_error"}}).to_string().into_bytes());
        }
        if text == "hang" {
            return Scripted::Hang;
        }
        if body["stream"].as_bool() == Some(true) {
            let sse = format!("{}data: {}\n\ndata: [DONE]\n\n", chunk("hi"), json!({"choices": [], "usage": usage}));
            respond(200, "text/event-stream", sse.into_bytes())
        } else {
            let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": usage});
            respond(200, "application/json", answer.to_string().into_bytes())
        }
    })
}

fn request(method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Request {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path, None),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = key {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    Request {
        method: method.into(),
        path: path.into(),
        headers,
        body: body.map_or(Body::Empty, |b| Body::Bytes(b.to_string().into_bytes())),
        facts: RequestFacts { query, ..RequestFacts::default() },
    }
}

fn run(gateway: &Gateway, host: &MemoryHost, request: Request) -> (Response, String) {
    let mut pool = LocalPool::new();
    let mut response = pool.run_until(gateway.handle(request, host));
    let body = pool.run_until(collect_body(std::mem::replace(&mut response.body, Body::Empty)));
    pool.run_until(host.run_background());
    (response, String::from_utf8_lossy(&body).into_owned())
}

fn chat(gateway: &Gateway, host: &MemoryHost, key: &str, model: &str, content: &str, stream: bool) -> u16 {
    let body = json!({ "model": model, "stream": stream, "max_tokens": 40, "messages": [{ "role": "user", "content": content }] });
    run(gateway, host, request("POST", "/v1/chat/completions", Some(key), Some(body))).0.status
}

/// A client that hangs up before the response head.
fn disconnect(gateway: &Gateway, host: &MemoryHost) {
    let mut pool = LocalPool::new();
    {
        let body = json!({ "model": "gpt", "max_tokens": 40, "messages": [{ "role": "user", "content": "hang" }] });
        let mut handle = Box::pin(gateway.handle(request("POST", "/v1/chat/completions", Some(KEY), Some(body)), host));
        assert!(pool.run_until(futures::future::poll_fn(|cx| std::task::Poll::Ready(handle.as_mut().poll(cx).is_pending()))));
    }
    pool.run_until(host.run_background());
}

fn admin_get(gateway: &Gateway, host: &MemoryHost, path: &str) -> (Response, String) {
    run(gateway, host, request("GET", path, Some(ADMIN), None))
}

fn stats(gateway: &Gateway, host: &MemoryHost, query: &str) -> Value {
    let (response, text) = admin_get(gateway, host, &format!("/admin/stats?{query}"));
    assert_eq!(response.status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Runs the mixed workload; returns the gateway, the host and the odd consumer's virtual key.
fn workload() -> (Gateway, MemoryHost) {
    let host = host(json!({ "shards": 3 }));
    let gateway = Gateway::new();
    let (created, text) = run(&gateway, &host, request("POST", "/admin/keys", Some(ADMIN), Some(json!({ "consumer": ODD }))));
    assert_eq!(created.status, 201, "{text}");
    let odd_key = serde_json::from_str::<Value>(&text).unwrap()["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&gateway, &host, KEY, "gpt", "hello", false), 200);
    assert_eq!(chat(&gateway, &host, KEY, "gpt", "hello", true), 200);
    host.advance(2 * 3_600_000);
    assert_eq!(chat(&gateway, &host, KEY, "routed", "hello", false), 200, "falls back from a to b");
    assert!(chat(&gateway, &host, KEY, "gpt", "fail", false) >= 500);
    assert_eq!(chat(&gateway, &host, &odd_key, "gpt", "hello", false), 200);
    disconnect(&gateway, &host);
    assert_eq!(chat(&gateway, &host, "sk-wrong", "gpt", "hello", false), 401);
    (gateway, host)
}

fn sum(events: &[UsageEvent], f: impl Fn(&UsageEvent) -> u64) -> u64 {
    events.iter().map(f).sum()
}

#[test]
fn the_rollups_equal_the_sum_of_the_usage_events() {
    let (gateway, host) = workload();
    let events = host.events();
    assert_eq!(events.len(), 7, "{:?}", events.iter().map(|e| (e.outcome, e.error)).collect::<Vec<_>>());
    let report = stats(&gateway, &host, "group_by=consumer");
    let t = &report["totals"];
    assert_eq!(t["requests"], 7);
    assert_eq!(t["input_tokens"], sum(&events, |e| e.usage.map_or(0, |u| u.input_tokens)));
    assert_eq!(t["output_tokens"], sum(&events, |e| e.usage.map_or(0, |u| u.output_tokens)));
    assert_eq!(t["cached_tokens"], sum(&events, |e| e.usage.map_or(0, |u| u.cached_input_tokens)));
    assert_eq!(t["reasoning_tokens"], sum(&events, |e| e.usage.map_or(0, |u| u.reasoning_tokens)));
    assert_eq!(t["input_tokens"], 4 * 7, "four answers with usage");
    let cost = sum(&events, |e| e.quota.as_ref().and_then(|q| q.cost_nanos).unwrap_or(0));
    assert!(cost > 0);
    assert!((t["cost_usd"].as_f64().unwrap() - cost as f64 / 1e9).abs() < 1e-12, "{t}");
    assert_eq!(t["errors"], sum(&events, |e| u64::from(e.error.is_some())));
    let mut by_type = BTreeMap::new();
    events.iter().filter_map(|e| e.error).for_each(|label| *by_type.entry(label.to_string()).or_insert(0u64) += 1);
    assert_eq!(t["errors_by_type"], json!(by_type));
    assert_eq!(t["errors_by_type"]["invalid_api_key"], 1);
    assert_eq!(t["fallbacks"], 1);
    assert_eq!(t["disconnects"], sum(&events, |e| u64::from(e.outcome == Outcome::ClientDisconnected)));
    assert_eq!(t["disconnects"], 1);
    assert!(t["latency_ms"]["p50"].is_f64() && t["duration_ms"]["p99"].is_f64(), "{t}");
    // Series: web first (most requests), then the odd consumer and the refused caller.
    let groups: Vec<(&str, u64)> = report["series"].as_array().unwrap().iter().map(|s| (s["group"].as_str().unwrap(), s["totals"]["requests"].as_u64().unwrap())).collect();
    assert_eq!(groups, vec![("web", 5), ("(none)", 1), (ODD, 1)]);
    // The rows are spread over the configured shards and no further.
    assert!(host.stats_rows_per_shard().keys().all(|shard| *shard < 3));
}

#[test]
fn reports_group_by_every_dimension_and_bucket_by_hour_or_day() {
    let (gateway, host) = workload();
    let hourly = stats(&gateway, &host, "group_by=model&interval=hour");
    assert_eq!(hourly["interval"], "hour");
    assert_eq!(hourly["group_by"], "model");
    let gpt = hourly["series"].as_array().unwrap().iter().find(|s| s["group"] == "gpt").unwrap();
    let times: Vec<&str> = gpt["points"].as_array().unwrap().iter().map(|p| p["t"].as_str().unwrap()).collect();
    assert_eq!(times, ["2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z"], "points only where there is data, in order");
    assert_eq!(gpt["points"][0]["requests"], 2);
    let daily = stats(&gateway, &host, "group_by=model&interval=day");
    let gpt = daily["series"].as_array().unwrap().iter().find(|s| s["group"] == "gpt").unwrap();
    assert_eq!(gpt["points"].as_array().unwrap().len(), 1);
    assert_eq!(gpt["points"][0]["t"], "2026-01-01T00:00:00Z");
    let by_region = stats(&gateway, &host, "group_by=region");
    let west = by_region["series"].as_array().unwrap().iter().find(|s| s["group"] == "us-west-2").expect("the fallback's region");
    assert_eq!(west["totals"]["requests"], 1);
    let by_outcome = stats(&gateway, &host, "group_by=outcome");
    let outcomes: BTreeMap<&str, u64> = by_outcome["series"].as_array().unwrap().iter().map(|s| (s["group"].as_str().unwrap(), s["totals"]["requests"].as_u64().unwrap())).collect();
    assert_eq!(outcomes, BTreeMap::from([("completed", 4), ("failed", 2), ("client_disconnected", 1)]));
    let by_tenant = stats(&gateway, &host, "group_by=tenant");
    assert_eq!(by_tenant["series"][0]["group"], "acme");
    let by_provider = stats(&gateway, &host, "group_by=provider");
    assert!(by_provider["series"].as_array().unwrap().iter().any(|s| s["group"] == "up"));
    // An explicit range: RFC 3339 and unix seconds; the first hour only.
    let first = stats(&gateway, &host, "from=2026-01-01T00:00:00Z&to=1767229200");
    assert_eq!(first["totals"]["requests"], 2);
    assert_eq!(first["from"], "2026-01-01T00:00:00Z");
    assert_eq!(first["to"], "2026-01-01T01:00:00Z");
    let later = stats(&gateway, &host, "from=2026-01-01T02:00:00%2B01:00");
    assert_eq!(later["totals"]["requests"], 5, "02:00+01:00 is 01:00Z: the hour-2 requests");
    let empty = stats(&gateway, &host, "from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z");
    assert_eq!(empty["totals"]["requests"], 0);
    assert_eq!(empty["series"], json!([]));
}

#[test]
fn bad_parameters_are_400s_naming_the_parameter_and_the_admin_key_is_required() {
    let (gateway, host) = workload();
    for (query, param) in [
        ("from=yesterday", "from"),
        ("to=2026-02-30T00:00:00Z", "to"),
        ("group_by=colour", "group_by"),
        ("interval=week", "interval"),
        ("from=1767229200&to=1767225600", "from"),
        ("limit=5", "limit"),
    ] {
        let (response, text) = admin_get(&gateway, &host, &format!("/admin/stats?{query}"));
        assert_eq!(response.status, 400, "{query}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["param"], param, "{query}: {text}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    for path in ["/admin/stats", "/admin/stats.csv", "/admin/metrics"] {
        let (response, _) = run(&gateway, &host, request("GET", path, None, None));
        assert_eq!(response.status, 401, "{path}");
        let (response, _) = run(&gateway, &host, request("GET", path, Some(KEY), None));
        assert_eq!(response.status, 401, "{path}: a consumer key never opens it");
    }
    let (response, _) = run(&gateway, &host, request("POST", "/admin/stats", Some(ADMIN), None));
    assert_eq!(response.status, 405);
    host.break_stats(true);
    assert_eq!(admin_get(&gateway, &host, "/admin/stats").0.status, 503, "no store: unavailable, not empty");
}

/// RFC 4180, strictly: quoted fields with doubled quotes, CRLF records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field, mut chars) = (Vec::new(), String::new(), text.chars().peekable());
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, '"') => panic!("a quote inside an unquoted field"),
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\n') => panic!("a bare LF outside quotes"),
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && record.is_empty(), "the text ends with a complete record");
    records
}

#[test]
fn the_csv_round_trips_awkward_names() {
    let (gateway, host) = workload();
    let (response, text) = admin_get(&gateway, &host, "/admin/stats.csv?group_by=consumer&interval=day");
    assert_eq!(response.status, 200, "{text}");
    assert_eq!(response.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()), Some("text/csv; charset=utf-8"));
    let records = parse_csv(&text);
    let header = &records[0];
    assert!(records.iter().all(|r| r.len() == header.len()), "every record has every column");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let odd = records.iter().find(|r| r[col("group")] == ODD).expect("the awkward consumer round-trips");
    assert_eq!(odd[col("requests")], "1");
    assert_eq!(odd[col("t")], "2026-01-01T00:00:00Z");
    assert!(odd[col("latency_p50_ms")].parse::<f64>().is_ok());
    let total: u64 = records[1..].iter().map(|r| r[col("requests")].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 7);
}

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser of the Prometheus text format 0.0.4 as `/admin/metrics` writes it: HELP and
/// TYPE before a family's samples, one TYPE per family, labels quoted with `\\`, `\"` and `\n`
/// escapes only, a float value, no timestamps.
fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some_and(|(name, help)| !name.is_empty() && !help.is_empty()), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "one TYPE per family: {line}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        let family = ["_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "summary"))).unwrap_or(name);
        assert!(types.contains_key(family), "a sample before its TYPE: {line}");
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(inner) => parse_labels(inner, line),
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value = rest.strip_prefix(' ').expect(line);
        assert!(!value.contains(' '), "no timestamps: {line}");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.push((name.to_string(), labels, value));
    }
    (types, samples)
}

/// The labels after `{` up to and including `}`; returns them and what follows.
fn parse_labels<'a>(inner: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    loop {
        let eq = rest.find('=').expect(line);
        let label = &rest[..eq];
        assert!(!label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name {label:?} in {line}");
        rest = rest[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value in {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => panic!("raw newline in {line}"),
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        assert!(labels.insert(label.to_string(), value).is_none(), "duplicate label in {line}");
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        rest = rest.strip_prefix(',').unwrap_or_else(|| panic!("expected , or }} in {line}"));
    }
}

#[test]
fn metrics_are_strict_prometheus_text_summing_to_the_events() {
    let (gateway, host) = workload();
    let (response, text) = admin_get(&gateway, &host, "/admin/metrics");
    assert_eq!(response.status, 200, "{text}");
    assert_eq!(response.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()), Some("text/plain; version=0.0.4; charset=utf-8"));
    let (types, samples) = parse_prometheus(&text);
    for family in ["gateway_requests_total", "gateway_tokens_total", "gateway_cost_usd_total", "gateway_gco2e_total", "gateway_cache_hits_total", "gateway_cache_saved_usd_total", "gateway_guard_blocks_total", "gateway_limit_rejections_total"] {
        assert_eq!(types.get(family).map(String::as_str), Some("counter"), "{family}");
    }
    assert_eq!(types["gateway_request_duration_seconds"], "summary");
    let total = |name: &str, filter: &dyn Fn(&BTreeMap<String, String>) -> bool| -> f64 { samples.iter().filter(|(n, l, _)| n == name && filter(l)).map(|(_, _, v)| v).sum() };
    let events = host.events();
    assert_eq!(total("gateway_requests_total", &|_| true), events.len() as f64);
    assert_eq!(total("gateway_tokens_total", &|l| l["type"] == "input"), sum(&events, |e| e.usage.map_or(0, |u| u.input_tokens)) as f64);
    assert_eq!(total("gateway_request_duration_seconds_count", &|_| true), events.len() as f64);
    let cost = sum(&events, |e| e.quota.as_ref().and_then(|q| q.cost_nanos).unwrap_or(0)) as f64 / 1e9;
    assert!((total("gateway_cost_usd_total", &|_| true) - cost).abs() < 1e-12);
    // The awkward consumer's label value survives its escapes; labels are only the five.
    let odd: Vec<&Sample> = samples.iter().filter(|(n, l, _)| n == "gateway_requests_total" && l["consumer"] == ODD).collect();
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0].1.keys().map(String::as_str).collect::<Vec<_>>(), ["consumer", "model", "outcome", "provider", "tenant"]);
    let quantiles: Vec<&str> = samples.iter().filter(|(n, l, _)| n == "gateway_request_duration_seconds" && l["consumer"] == "web" && l["outcome"] == "completed").map(|(_, l, _)| l["quantile"].as_str()).collect();
    assert_eq!(&quantiles[..3], ["0.5", "0.95", "0.99"]);
}

#[test]
fn disabled_rollups_write_nothing_and_a_missing_store_fails_no_request() {
    let host = host(json!({ "enabled": false }));
    let gateway = Gateway::new();
    assert_eq!(chat(&gateway, &host, KEY, "gpt", "hello", false), 200);
    assert!(host.stats_rows_per_shard().is_empty());
    let host = self::host(json!({}));
    host.break_stats(true);
    assert_eq!(chat(&gateway, &host, KEY, "gpt", "hello", false), 200, "the write is in the background and best effort");
    assert_eq!(host.events().len(), 1);
}

#[test]
fn refused_admin_calls_are_logged_but_not_rolled_up() {
    let host = host(json!({}));
    let gateway = Gateway::new();
    assert_eq!(chat(&gateway, &host, KEY, "gpt", "hello", false), 200);
    for path in ["/admin/stats", "/admin/config", "/admin/keys/nope"] {
        let (response, _) = run(&gateway, &host, request("GET", path, None, None));
        assert_eq!(response.status, 401, "{path}");
    }
    assert_eq!(host.events().iter().filter(|e| e.operation == "admin").count(), 3, "the refusals are still usage events");
    let report = stats(&gateway, &host, "group_by=consumer");
    assert_eq!(report["totals"]["requests"], 1, "only the chat request: {report}");
}
