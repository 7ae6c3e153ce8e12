//! The admin API: issue, list and revoke virtual keys, replace the configuration (limits,
//! budgets, models...), read a subject's usage, and read the audit log. Every change is written
//! to the audit log before the response is sent.
//!
//! Routes: `POST /admin/keys` (create; the key is in the response, the only time it is shown),
//! `GET /admin/consumers/{consumer}/keys`, `DELETE /admin/keys/{id}` (revoke),
//! `GET /admin/usage/{subject}` (e.g. `consumer:alice`), `GET|PUT /admin/config`, `GET /admin/audit`,
//! `POST /admin/carbon/refresh` (fetch live carbon intensities now; see `crate::carbon`),
//! `GET /admin/stats`, `GET /admin/stats.csv` and `GET /admin/metrics` (the usage rollups as a
//! report and as Prometheus text; see `crate::rollups` and docs/observability.md),
//! `GET /admin/requests` and `GET /admin/requests/{id}` (the request log; see `crate::request_log`),
//! `GET /admin/forecast` (budgets' spend forecasts), `GET /admin/alerts` and
//! `POST /admin/alerts/evaluate` (see `crate::alerts`), and the dashboard's files `GET /admin/ui`,
//! `/admin/ui/app.js`, `/admin/ui/app.css` (no key: they hold no data; see `crate::admin_ui`).
//!
//! It is served under `/admin/` and only to the admin credential (`admin.key_sha256` in the
//! configuration): consumer keys and tokens never open it, and the admin key never opens `/v1`.
//!
//! Storage: virtual keys, the configuration override and the audit log live in the host's
//! key-value store (Workers KV). KV is eventually consistent: a created or revoked key takes
//! effect at every edge location within about a minute (KV's propagation), immediately where it
//! was written. Counters are not here: usage is read from the counter objects.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use policy::identity::virtual_keys;
use policy::reqlog::{Cursor, ListQuery, MAX_PAGE};
use policy::limits::{CounterOp, CounterReply};
use policy::stats::{parse_time, prometheus, retention_hours, GroupBy, Interval, ReportQuery, HOUR_MS, MAX_PROMETHEUS_SERIES};

use crate::config::Config;
use crate::error::GatewayError;
use crate::host::{Body, Host};
use crate::http::{percent_decode, read_json_value, Request, Response};
use crate::isolate::config::CONFIG_KV_KEY;
use crate::isolate::IsolateState;
use crate::key_store::{load_record, store_error};

thread_local! {
    static AUDIT_SEQUENCE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Audit entries listed per request at most.
const AUDIT_PAGE: usize = 200;

/// Why an admin call failed (mapped to the OpenAI error shape like every other route).
fn bad_request(message: impl Into<String>, param: Option<&str>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: param.map(str::to_string) }
}

/// One audit log entry. It names what changed, never a key or a secret.
fn audit_entry(now_ms: u64, actor: &str, action: &str, target: &str, detail: Value) -> Value {
    json!({ "at_ms": now_ms, "actor": actor, "action": action, "target": target, "detail": detail })
}

/// The store prefix of the audit log of changes, and of the failed admin logins.
const AUDIT_PREFIX: &str = "audit:";
const AUDIT_LOGIN_PREFIX: &str = "audit-login:";

async fn write_audit<H: Host>(host: &H, entry: &Value) -> Result<(), GatewayError> {
    write_audit_under(host, AUDIT_PREFIX, entry).await
}

async fn write_audit_under<H: Host>(host: &H, prefix: &str, entry: &Value) -> Result<(), GatewayError> {
    let at = entry["at_ms"].as_u64().unwrap_or(0);
    // Time, then this isolate's sequence (entries of one millisecond keep their order), then
    // randomness (isolates never collide).
    let sequence = AUDIT_SEQUENCE.with(|s| {
        s.set(s.get().wrapping_add(1));
        s.get()
    });
    let key = format!("{prefix}{at:015}:{sequence:08x}:{:08x}", host.random_u64() as u32);
    host.kv_put(&key, &entry.to_string()).await.map_err(store_error)
}

/// Handle `/admin/...`. `path` is the request path; the body is read here when needed.
pub async fn handle<H: Host>(state: &IsolateState, config: &Config, request: Request, host: &H) -> Result<Response, GatewayError> {
    // The dashboard's files hold no data: served without the admin key (the page asks for it).
    if let Some(asset) = crate::admin_ui::Asset::from_path(&request.path) {
        return match request.method.as_str() {
            "GET" | "HEAD" => Ok(crate::admin_ui::serve(asset, request.method == "HEAD")),
            _ => Err(GatewayError::MethodNotAllowed { method: request.method.clone(), allowed: "GET, HEAD" }),
        };
    }
    let Some(admin) = &config.admin else {
        return Err(GatewayError::NotFound { path: request.path.clone() });
    };
    let presented = request
        .header("authorization")
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let now = host.now_ms();
    let Some(presented) = presented else { return Err(GatewayError::MissingCredential) };
    let digest = policy::auth::key_digest(&presented);
    if !policy::auth::digest_eq(&digest, &admin.key_sha256) {
        let error = crate::pipeline::throttle::failed(&request, GatewayError::InvalidCredential, host).await;
        // Past the throttle's limit the failures are not stored one by one (bounded KV writes).
        if matches!(error, GatewayError::InvalidCredential) {
            record_failed_login(host, &request, now).await;
        }
        return Err(error);
    }
    let actor = format!("admin:{}", &hex::encode(digest)[..8]);
    let method = request.method.clone();
    let path = request.path.trim_end_matches('/').to_string();
    let Some(route) = AdminRoute::parse(&path) else { return Err(GatewayError::NotFound { path }) };
    let retention_ms = admin.audit_retention_days * 86_400_000;
    match (method.as_str(), route) {
        ("POST", AdminRoute::Keys) => {
            let body = read_json_value(request, 64 * 1024).await?;
            create_key(config, body, host, &actor, now).await
        }
        ("GET", AdminRoute::ConsumerKeys(consumer)) => list_keys(&consumer, host, now).await,
        ("DELETE", AdminRoute::Key(id)) => revoke_key(&id, host, &actor, now).await,
        ("GET", AdminRoute::Usage(subject)) => usage(config, &subject, host).await,
        ("GET", AdminRoute::Stats { csv }) => stats(config, request.facts.query.as_deref(), csv, host, now).await,
        ("GET", AdminRoute::Metrics) => metrics(config, host, now).await,
        ("GET", AdminRoute::Requests) => requests(config, request.facts.query.as_deref(), host, now).await,
        ("GET", AdminRoute::Request(id)) => match crate::request_log::get(host, config, &id).await.map_err(|_| GatewayError::StoreUnavailable)? {
            Some(entry) => Ok(Response::json(200, &json!(entry))),
            None => Err(GatewayError::NotFound { path: format!("/admin/requests/{id}") }),
        },
        ("GET", AdminRoute::Alerts) => Ok(Response::json(200, &crate::alerts::list(config, host).await.map_err(store_error)?)),
        ("POST", AdminRoute::AlertsEvaluate) => match crate::alerts::run(state, config, host).await {
            Ok(report) => Ok(Response::json(200, &report)),
            Err(crate::alerts::EvaluateError::NotConfigured) => Err(bad_request("The configuration has no alerts.", None)),
            Err(crate::alerts::EvaluateError::Store) => Err(GatewayError::StoreUnavailable),
        },
        ("GET", AdminRoute::Forecast) => forecast(config, request.facts.query.as_deref(), host, now).await,
        ("GET", AdminRoute::Audit { logins, after }) => audit(host, if logins { AUDIT_LOGIN_PREFIX } else { AUDIT_PREFIX }, after.as_deref(), now, retention_ms).await,
        ("GET", AdminRoute::Config) => {
            let text = host.kv_get(CONFIG_KV_KEY).await.map_err(store_error)?.or_else(|| host.shipped_config());
            let document: Value = text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            Ok(Response::json(200, &json!({ "config": document })))
        }
        ("PUT", AdminRoute::Config) => {
            let body = read_json_value(request, config.limits.max_body_bytes).await?;
            put_config(body, host, &actor, now).await
        }
        ("POST", AdminRoute::CarbonRefresh) => {
            use crate::carbon::RefreshError;
            match state.carbon.refresh(config, host).await {
                Ok(report) => {
                    let detail = json!({ "updated": report.updated.len(), "failed": report.failed.len() });
                    write_audit(host, &audit_entry(now, &actor, "carbon.refresh", "carbon", detail)).await?;
                    Ok(Response::json(200, &json!({ "fetched_at_ms": report.fetched_at_ms, "updated": report.updated, "failed": report.failed })))
                }
                Err(RefreshError::NotConfigured) => Err(bad_request("The configuration has no carbon_feed.", None)),
                Err(RefreshError::MissingSecret { name }) => Err(GatewayError::MissingSecret { name }),
                Err(RefreshError::NoValues { failed }) => Err(GatewayError::UpstreamInvalidResponse {
                    provider: "carbon_feed".into(),
                    detail: format!("no zone returned a usable carbonIntensity ({failed:?}); the previous values were kept"),
                }),
                Err(RefreshError::Store) => Err(GatewayError::StoreUnavailable),
            }
        }
        // Every route that exists answers other methods with 405.
        _ => Err(GatewayError::MethodNotAllowed { method, allowed: "GET, POST, PUT, DELETE" }),
    }
}

/// The admin API's routes, parsed from the path (without a trailing slash). A path that is none
/// of them is a 404; a segment that would be empty (`/admin/consumers//keys`) is none of them.
enum AdminRoute {
    Keys,
    Key(String),
    ConsumerKeys(String),
    Usage(String),
    Config,
    /// The audit log (`logins`: the failed admin logins), from the newest, or after `after`.
    Audit { logins: bool, after: Option<String> },
    CarbonRefresh,
    /// The usage rollups as a report: JSON, or CSV (`/admin/stats.csv`).
    Stats { csv: bool },
    /// The usage rollups as Prometheus text.
    Metrics,
    /// The request log: a page of entries, or one entry with its bodies.
    Requests,
    Request(String),
    /// Each budget's spend forecast for its current period.
    Forecast,
    /// The alert rules and their last state.
    Alerts,
    /// Evaluate the alert rules now (an external scheduler on Spin).
    AlertsEvaluate,
}

impl AdminRoute {
    fn parse(path: &str) -> Option<AdminRoute> {
        let segment = |rest: &str| Some(percent_decode(rest)).filter(|s| !s.is_empty() && !rest.contains('/'));
        Some(match path {
            "/admin/keys" => AdminRoute::Keys,
            "/admin/config" => AdminRoute::Config,
            "/admin/audit" => AdminRoute::Audit { logins: false, after: None },
            "/admin/audit/logins" => AdminRoute::Audit { logins: true, after: None },
            "/admin/carbon/refresh" => AdminRoute::CarbonRefresh,
            "/admin/stats" => AdminRoute::Stats { csv: false },
            "/admin/stats.csv" => AdminRoute::Stats { csv: true },
            "/admin/metrics" => AdminRoute::Metrics,
            "/admin/requests" => AdminRoute::Requests,
            "/admin/forecast" => AdminRoute::Forecast,
            "/admin/alerts" => AdminRoute::Alerts,
            "/admin/alerts/evaluate" => AdminRoute::AlertsEvaluate,
            p => {
                if let Some(id) = p.strip_prefix("/admin/requests/") {
                    AdminRoute::Request(segment(id)?)
                } else if let Some(id) = p.strip_prefix("/admin/keys/") {
                    AdminRoute::Key(segment(id)?)
                } else if let Some(consumer) = p.strip_prefix("/admin/consumers/").and_then(|r| r.strip_suffix("/keys")) {
                    AdminRoute::ConsumerKeys(segment(consumer)?)
                } else if let Some(subject) = p.strip_prefix("/admin/usage/") {
                    AdminRoute::Usage(segment(subject)?)
                } else if let Some(cursor) = p.strip_prefix("/admin/audit/logins/after/") {
                    AdminRoute::Audit { logins: true, after: Some(segment(cursor)?) }
                } else if let Some(cursor) = p.strip_prefix("/admin/audit/after/") {
                    AdminRoute::Audit { logins: false, after: Some(segment(cursor)?) }
                } else {
                    return None;
                }
            }
        })
    }
}

/// Record a refused admin credential (never the credential) under its own prefix, so the audit
/// log of changes stays readable; the entry names the client address the platform reported.
/// Repeated failures from one address are slowed by the authentication throttle before this.
async fn record_failed_login<H: Host>(host: &H, request: &Request, now: u64) {
    let client = crate::http::client_ip(request).unwrap_or("unknown");
    let entry = audit_entry(now, &format!("ip:{client}"), "login.failed", "admin", json!({ "path": request.path }));
    // A store failure must not turn a refused login into a 503 (which would tell apart keys).
    let _ = write_audit_under(host, AUDIT_LOGIN_PREFIX, &entry).await;
}

async fn create_key<H: Host>(config: &Config, body: Value, host: &H, actor: &str, now: u64) -> Result<Response, GatewayError> {
    let consumer = body
        .get("consumer")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty() && c.len() <= 128)
        .ok_or_else(|| bad_request("'consumer' is required (a string of at most 128 characters).", Some("consumer")))?;
    let tenant = optional_string(&body, "tenant")?;
    let name = optional_string(&body, "name")?;
    let models = match body.get("models") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut models = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let model = item.as_str().ok_or_else(|| bad_request(format!("models[{i}] must be a string."), Some("models")))?;
                let prefix = model.strip_suffix('*').unwrap_or(model);
                if !(model == "*" || model.ends_with('*') || config.models.contains_key(model)) || prefix.contains('*') {
                    return Err(bad_request(format!("models[{i}]: unknown model '{model}'."), Some("models")));
                }
                models.push(model.to_string());
            }
            Some(models)
        }
        Some(_) => return Err(bad_request("'models' must be an array of model names.", Some("models"))),
    };
    let ttl_ms = match body.get("expires_in_secs") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|s| *s > 0 && *s <= 10 * 365 * 86_400)
                .ok_or_else(|| bad_request("'expires_in_secs' must be a positive number of seconds (at most 10 years).", Some("expires_in_secs")))?
                * 1000,
        ),
    };
    let bytes = host.secure_random();
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let random = [word(0), word(1), word(2), word(3)];
    let (secret, mut record) = virtual_keys::issue(random, host.random_u64(), consumer, tenant, models, name, now, ttl_ms);
    record.standalone = !config.declares_consumer(consumer);
    let digest = hex::encode(policy::auth::key_digest(&secret));
    let record_json = serde_json::to_string(&record).unwrap_or_default();
    // Audit first: no key can exist without its entry (a failed store write after it leaves an
    // entry for a key that never worked, and the key, never shown, is unusable by anyone).
    write_audit(host, &audit_entry(now, actor, "key.create", &record.id, json!({ "consumer": record.consumer, "tenant": record.tenant, "models": record.models, "expires_ms": record.expires_ms }))).await?;
    host.kv_put(&virtual_keys::record_key(&digest), &record_json).await.map_err(store_error)?;
    host.kv_put(&virtual_keys::id_key(&record.id), &digest).await.map_err(store_error)?;
    host.kv_put(&virtual_keys::consumer_index_key(&record.consumer, &record.id), &digest).await.map_err(store_error)?;
    // The only time the key is ever shown.
    Ok(Response::json(201, &json!({ "key": secret, "record": record })))
}

fn optional_string(body: &Value, field: &str) -> Result<Option<String>, GatewayError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 => Ok(Some(s.clone())),
        Some(_) => Err(bad_request(format!("'{field}' must be a non-empty string of at most 128 characters."), Some(field))),
    }
}

async fn list_keys<H: Host>(consumer: &str, host: &H, now: u64) -> Result<Response, GatewayError> {
    let index = host.kv_list(&virtual_keys::consumer_index_prefix(consumer)).await.map_err(store_error)?;
    let mut data = Vec::new();
    for key in index {
        let Some(digest) = host.kv_get(&key).await.map_err(store_error)? else { continue };
        // The record is authoritative: `alice`'s prefix also lists `alice:evil`'s index entries.
        if let Some(record) = load_record(host, &digest).await?.filter(|r| r.consumer == consumer) {
            let status = record.status(now);
            let mut value = serde_json::to_value(&record).unwrap_or(Value::Null);
            value["status"] = json!(status);
            data.push(value);
        }
    }
    Ok(Response::json(200, &json!({ "object": "list", "data": data })))
}

async fn revoke_key<H: Host>(id: &str, host: &H, actor: &str, now: u64) -> Result<Response, GatewayError> {
    let not_found = || GatewayError::NotFound { path: format!("/admin/keys/{id}") };
    let digest = host.kv_get(&virtual_keys::id_key(id)).await.map_err(store_error)?.ok_or_else(not_found)?;
    let mut record = load_record(host, &digest).await?.ok_or_else(not_found)?;
    if record.revoked_ms.is_none() {
        record.revoked_ms = Some(now);
        let text = serde_json::to_string(&record).unwrap_or_default();
        // Audit first: no change without its entry.
        write_audit(host, &audit_entry(now, actor, "key.revoke", &record.id, json!({ "consumer": record.consumer }))).await?;
        host.kv_put(&virtual_keys::record_key(&digest), &text).await.map_err(store_error)?;
    }
    Ok(Response::json(200, &json!({ "record": record, "status": record.status(now) })))
}

async fn usage<H: Host>(config: &Config, subject: &str, host: &H) -> Result<Response, GatewayError> {
    let tenant = subject.split('|').find_map(|part| part.strip_prefix("tenant:"));
    let jurisdiction = tenant.and_then(|t| config.tenants.get(t)).and_then(|t| t.jurisdiction.as_deref());
    match host.counter(subject, jurisdiction, &CounterOp::Status).await {
        Ok(CounterReply::Status { limits }) => Ok(Response::json(200, &json!({ "subject": subject, "limits": limits }))),
        Ok(_) | Err(_) => Err(GatewayError::QuotaUnavailable),
    }
}

async fn put_config<H: Host>(body: Value, host: &H, actor: &str, now: u64) -> Result<Response, GatewayError> {
    let text = body.to_string();
    if let Err(errors) = Config::parse_override(&text, host.shipped_config().as_deref()) {
        let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        return Err(bad_request(format!("The configuration is invalid: {}", list.join("; ")), errors.0.first().map(|e| e.path.as_str())));
    }
    let before = host.kv_get(CONFIG_KV_KEY).await.map_err(store_error)?.or_else(|| host.shipped_config()).unwrap_or_default();
    let digest = |t: &str| hex::encode(&Sha256::digest(t.as_bytes())[..8]);
    // Audit first: no change without its entry.
    write_audit(host, &audit_entry(now, actor, "config.update", "config", json!({ "before_sha256": digest(&before), "after_sha256": digest(&text), "bytes": text.len() }))).await?;
    host.kv_put(CONFIG_KV_KEY, &text).await.map_err(store_error)?;
    Ok(Response::json(200, &json!({ "ok": true, "sha256": digest(&text) })))
}

/// One page of an audit log, newest first, from after the cursor `after` (the last entry's
/// store key of the previous page). Entries older than the retention are not listed; a page that
/// is full carries `next_cursor`.
async fn audit<H: Host>(host: &H, prefix: &str, after: Option<&str>, now: u64, retention_ms: u64) -> Result<Response, GatewayError> {
    let oldest = format!("{prefix}{:015}", now.saturating_sub(retention_ms));
    let mut keys: Vec<String> = host.kv_list(prefix).await.map_err(store_error)?.into_iter().filter(|k| *k >= oldest && after.is_none_or(|a| k.as_str() < a)).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let more = keys.len() > AUDIT_PAGE;
    keys.truncate(AUDIT_PAGE);
    let mut data = Vec::new();
    for key in &keys {
        if let Some(text) = host.kv_get(key).await.map_err(store_error)? {
            if let Ok(entry) = serde_json::from_str::<Value>(&text) {
                data.push(entry);
            }
        }
    }
    let mut page = json!({ "object": "list", "data": data });
    if let (true, Some(last)) = (more, keys.last()) {
        page["next_cursor"] = json!(last);
    }
    Ok(Response::json(200, &page))
}

/// The report a `/admin/stats` query string asks for: `from` and `to` (RFC 3339 or unix seconds;
/// default the last 24 hours), `group_by` (default `model`) and `interval` (default `hour`).
/// An unknown or malformed parameter is a 400 naming it.
fn stats_query(query: Option<&str>, now_ms: u64) -> Result<ReportQuery, GatewayError> {
    let (mut from, mut to, mut group_by, mut interval) = (None, None, GroupBy::Model, Interval::Hour);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decode(name), percent_decode(value));
        let time = |v: &str| parse_time(v).ok_or_else(|| bad_request(format!("'{name}' must be an RFC 3339 time (2026-12-05T00:00:00Z) or unix seconds."), Some(&name)));
        match name.as_str() {
            "from" => from = Some(time(&value)?),
            "to" => to = Some(time(&value)?),
            "group_by" => {
                group_by = GroupBy::from_name(&value).ok_or_else(|| bad_request("'group_by' must be one of consumer, tenant, model, provider, outcome, region.", Some("group_by")))?
            }
            "interval" => interval = Interval::from_name(&value).ok_or_else(|| bad_request("'interval' must be hour or day.", Some("interval")))?,
            _ => return Err(bad_request(format!("Unknown parameter '{name}' (expected from, to, group_by, interval)."), Some(&name))),
        }
    }
    // Default: up to the end of the current hour, so the hour in progress is included.
    let to_s = to.unwrap_or((now_ms / HOUR_MS + 1) * 3600);
    let from_s = from.unwrap_or(to_s.saturating_sub(86_400));
    if from_s >= to_s {
        return Err(bad_request("'from' must be before 'to'.", Some("from")));
    }
    Ok(ReportQuery { from_s, to_s, group_by, interval })
}

async fn stats<H: Host>(config: &Config, query: Option<&str>, csv: bool, host: &H, now: u64) -> Result<Response, GatewayError> {
    let query = stats_query(query, now)?;
    let (from_hour, to_hour) = query.hours();
    let rows = crate::rollups::query(host, config, from_hour, to_hour).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let report = policy::stats::report(&rows, query);
    if csv {
        Ok(Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/csv; charset=utf-8".into()),
                ("content-disposition".into(), "attachment; filename=\"gateway-stats.csv\"".into()),
            ],
            body: Body::Bytes(report.to_csv().into_bytes()),
        })
    } else {
        Ok(Response::json(200, &report.to_json()))
    }
}

async fn metrics<H: Host>(config: &Config, host: &H, now: u64) -> Result<Response, GatewayError> {
    let (from_hour, to_hour) = retention_hours(now, config.stats.retention_days);
    let rows = crate::rollups::query(host, config, from_hour, to_hour).await.map_err(|_| GatewayError::StoreUnavailable)?;
    Ok(Response {
        status: 200,
        headers: vec![("content-type".into(), "text/plain; version=0.0.4; charset=utf-8".into())],
        body: Body::Bytes(prometheus(&rows, MAX_PROMETHEUS_SERIES).into_bytes()),
    })
}

/// `GET /admin/requests`: a page of the request log, newest first, without bodies. Parameters:
/// `from`, `to` (RFC 3339 or unix seconds), `consumer`, `model`, `outcome`, `limit` (1 to 200,
/// default 50) and `cursor` (the previous page's `next_cursor`). Anything else is a 400.
async fn requests<H: Host>(config: &Config, query: Option<&str>, host: &H, now: u64) -> Result<Response, GatewayError> {
    let query = requests_query(query, now)?;
    let limit = query.limit;
    let mut entries = crate::request_log::list(host, config, query).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let mut page = json!({ "object": "list", "data": entries });
    if let (true, Some(last)) = (more, entries.last()) {
        page["next_cursor"] = json!(Cursor { at_ms: last.at_ms, request_id: last.request_id.clone() }.encode());
    }
    Ok(Response::json(200, &page))
}

fn requests_query(query: Option<&str>, now_ms: u64) -> Result<ListQuery, GatewayError> {
    let mut list = ListQuery { from_ms: 0, to_ms: now_ms + 1, limit: 50, ..ListQuery::default() };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decode(name), percent_decode(value));
        let time = |v: &str| {
            parse_time(v).map(|s| s.saturating_mul(1000)).ok_or_else(|| bad_request(format!("'{name}' must be an RFC 3339 time (2026-12-05T00:00:00Z) or unix seconds."), Some(&name)))
        };
        let text = |v: String| Some(v).filter(|v| !v.is_empty()).ok_or_else(|| bad_request(format!("'{name}' must not be empty."), Some(&name)));
        match name.as_str() {
            "from" => list.from_ms = time(&value)?,
            "to" => list.to_ms = time(&value)?,
            "consumer" => list.consumer = Some(text(value)?),
            "model" => list.model = Some(text(value)?),
            "outcome" => {
                if !["completed", "failed", "stream_error", "client_disconnected"].contains(&value.as_str()) {
                    return Err(bad_request("'outcome' must be one of completed, failed, stream_error, client_disconnected.", Some("outcome")));
                }
                list.outcome = Some(value);
            }
            "limit" => {
                list.limit = value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| bad_request(format!("'limit' must be between 1 and {MAX_PAGE}."), Some("limit")))?
            }
            "cursor" => list.before = Some(Cursor::decode(&value).ok_or_else(|| bad_request("'cursor' is not a cursor this API returned.", Some("cursor")))?),
            _ => return Err(bad_request(format!("Unknown parameter '{name}' (expected from, to, consumer, model, outcome, limit, cursor)."), Some(&name))),
        }
    }
    if list.from_ms >= list.to_ms {
        return Err(bad_request("'from' must be before 'to'.", Some("from")));
    }
    Ok(list)
}

/// `GET /admin/forecast[?budget=<name>]`: each budget's (or the named one's) spend forecast for
/// its current period, per subject with spend (docs/observability.md, "Spend forecast").
async fn forecast<H: Host>(config: &Config, query: Option<&str>, host: &H, now: u64) -> Result<Response, GatewayError> {
    let mut only = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(name).as_str() {
            "budget" => only = Some(percent_decode(value)),
            other => return Err(bad_request(format!("Unknown parameter '{other}' (expected budget)."), Some(other))),
        }
    }
    if let Some(name) = &only {
        if !config.quota.budgets.iter().any(|b| &b.name == name) {
            let known: Vec<&str> = config.quota.budgets.iter().map(|b| b.name.as_str()).collect();
            return Err(bad_request(format!("No budget is named '{name}' (configured: {}).", known.join(", ")), Some("budget")));
        }
    }
    let rows = crate::rollups::forecast_rows(host, config, now).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let forecasts = crate::rollups::forecast_budgets(config, &rows, now, only.as_deref());
    let list: Vec<Value> = forecasts.iter().map(crate::rollups::BudgetForecast::to_json).collect();
    Ok(Response::json(200, &json!({ "at": policy::stats::format_rfc3339(now / 1000), "forecasts": list })))
}
