//! The admin API: issue, list and revoke virtual keys, replace the configuration (limits,
//! budgets, models...), read a subject's usage, and read the audit log. Every change is written
//! to the audit log before the response is sent.
//!
//! Routes: `POST /admin/keys` (create; the key is in the response, the only time it is shown),
//! `GET /admin/consumers/{consumer}/keys`, `DELETE /admin/keys/{id}` (revoke),
//! `GET /admin/usage/{subject}` (e.g. `consumer:alice`), `GET|PUT /admin/config`, `GET /admin/audit`,
//! `POST /admin/carbon/refresh` (fetch live carbon intensities now; see `crate::carbon`).
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
use policy::limits::{CounterOp, CounterReply};

use crate::config::Config;
use crate::error::GatewayError;
use crate::host::Host;
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

async fn write_audit<H: Host>(host: &H, entry: &Value) -> Result<(), GatewayError> {
    let at = entry["at_ms"].as_u64().unwrap_or(0);
    // Time, then this isolate's sequence (entries of one millisecond keep their order), then
    // randomness (isolates never collide).
    let sequence = AUDIT_SEQUENCE.with(|s| {
        s.set(s.get().wrapping_add(1));
        s.get()
    });
    let key = format!("audit:{at:015}:{sequence:08x}:{:08x}", host.random_u64() as u32);
    host.kv_put(&key, &entry.to_string()).await.map_err(store_error)
}

/// Handle `/admin/...`. `path` is the request path; the body is read here when needed.
pub async fn handle<H: Host>(state: &IsolateState, config: &Config, request: Request, host: &H) -> Result<Response, GatewayError> {
    let Some(admin) = &config.admin else {
        return Err(GatewayError::NotFound { path: request.path.clone() });
    };
    let presented = request
        .header("authorization")
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let Some(presented) = presented else { return Err(GatewayError::MissingCredential) };
    let digest = policy::auth::key_digest(&presented);
    if !policy::auth::digest_eq(&digest, &admin.key_sha256) {
        return Err(GatewayError::InvalidCredential);
    }
    let actor = format!("admin:{}", &hex::encode(digest)[..8]);
    let method = request.method.clone();
    let path = request.path.trim_end_matches('/').to_string();
    let now = host.now_ms();
    match (method.as_str(), path.as_str()) {
        ("POST", "/admin/keys") => {
            let body = read_json_value(request, 64 * 1024).await?;
            create_key(config, body, host, &actor, now).await
        }
        ("GET", p) if p.starts_with("/admin/consumers/") && p.ends_with("/keys") => {
            let consumer = percent_decode(&p["/admin/consumers/".len()..p.len() - "/keys".len()]);
            list_keys(&consumer, host, now).await
        }
        ("DELETE", p) if p.starts_with("/admin/keys/") => revoke_key(&percent_decode(&p["/admin/keys/".len()..]), host, &actor, now).await,
        ("GET", p) if p.starts_with("/admin/usage/") => usage(config, &percent_decode(&p["/admin/usage/".len()..]), host).await,
        ("GET", "/admin/config") => {
            let text = host.kv_get(CONFIG_KV_KEY).await.map_err(store_error)?.or_else(|| host.shipped_config());
            let document: Value = text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            Ok(Response::json(200, &json!({ "config": document })))
        }
        ("PUT", "/admin/config") => {
            let body = read_json_value(request, config.limits.max_body_bytes).await?;
            put_config(body, host, &actor, now).await
        }
        ("GET", "/admin/audit") => audit(host).await,
        ("POST", "/admin/carbon/refresh") => {
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
        (_, p) if p.starts_with("/admin/keys") || p.starts_with("/admin/usage/") || ["/admin/config", "/admin/audit", "/admin/carbon/refresh"].contains(&p) => {
            Err(GatewayError::MethodNotAllowed { method, allowed: "GET, POST, PUT, DELETE" })
        }
        _ => Err(GatewayError::NotFound { path }),
    }
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
        host.kv_put(&virtual_keys::record_key(&digest), &text).await.map_err(store_error)?;
        write_audit(host, &audit_entry(now, actor, "key.revoke", &record.id, json!({ "consumer": record.consumer }))).await?;
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
    host.kv_put(CONFIG_KV_KEY, &text).await.map_err(store_error)?;
    let digest = |t: &str| hex::encode(&Sha256::digest(t.as_bytes())[..8]);
    write_audit(host, &audit_entry(now, actor, "config.update", "config", json!({ "before_sha256": digest(&before), "after_sha256": digest(&text), "bytes": text.len() }))).await?;
    Ok(Response::json(200, &json!({ "ok": true, "sha256": digest(&text) })))
}

async fn audit<H: Host>(host: &H) -> Result<Response, GatewayError> {
    let mut keys = host.kv_list("audit:").await.map_err(store_error)?;
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let mut data = Vec::new();
    for key in keys.into_iter().take(AUDIT_PAGE) {
        if let Some(text) = host.kv_get(&key).await.map_err(store_error)? {
            if let Ok(entry) = serde_json::from_str::<Value>(&text) {
                data.push(entry);
            }
        }
    }
    Ok(Response::json(200, &json!({ "object": "list", "data": data })))
}
