//! The request log and feedback over the host's request-log store (docs/observability.md,
//! "Request log" and "Feedback").
//!
//! Every finished request that named a model and has a consumer leaves a small ownership row
//! (request id → consumer, rollup hour and dimensions, kept [`INDEX_RETENTION_DAYS`]) so the
//! consumer can give feedback on it; a request whose consumer, tenant or model opted in
//! (`request_log`) also leaves an entry with its bodies, redacted by the PII and secret
//! detectors whatever the guard profile says, then cut at `max_body_bytes`. Both are written in
//! one background op ([`Host::wait_until`]) to the shard of the consumer (`stats.shards` shards,
//! the rollups' hash), after the response. A write that fails is lost; it never fails the
//! request.

use policy::guard::redact_all;
use policy::reqlog::{feedback_row, sort_newest_first, truncate, Feedback, IndexRow, ListQuery, LogEntry, LogOp, LogReply, LogUsage};
use policy::stats::{shard_of, Row, StatsOp, HOUR_MS};

use crate::config::{Config, RequestLogSettings};
use crate::error::GatewayError;
use crate::event::UsageEvent;
use crate::host::{Host, HostError};

/// How long a request can receive feedback.
pub const INDEX_RETENTION_DAYS: u64 = 7;
const DAY_MS: u64 = 86_400_000;

/// What the pipeline keeps of an opted-in request until it is finished: the setting that applied
/// and the bodies as sent and answered, as JSON (unredacted until [`record`] redacts them).
#[derive(Debug, Clone, PartialEq)]
pub struct LogCapture {
    pub settings: RequestLogSettings,
    pub request: Option<serde_json::Value>,
    pub response: Option<serde_json::Value>,
}

/// The capture for a request of `consumer` (a configured one), `tenant` and `model`, if any
/// `request_log` setting turns it on; `body` is only serialised then.
pub fn capture(config: &Config, consumer: Option<&str>, tenant: Option<&str>, model: &str, body: impl FnOnce() -> Option<serde_json::Value>) -> Option<LogCapture> {
    let settings = *config.request_log.for_request(consumer, tenant, model)?;
    Some(LogCapture { settings, request: body(), response: None })
}

/// Redact every string of one body (each text as written, before JSON escaping could hide a
/// boundary: `"\nsk-..."` must not read as `nsk-...`), then serialise and truncate it; `true`
/// when it was cut.
pub fn stored_body(body: &serde_json::Value, max_bytes: usize) -> (String, bool) {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => *text = redact_all(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut body = body.clone();
    walk(&mut body);
    truncate(body.to_string(), max_bytes)
}

/// The entry `capture` makes of `event` at `now`.
pub fn entry(event: &UsageEvent, capture: &LogCapture, now: u64) -> LogEntry {
    let max = capture.settings.max_body_bytes;
    let (request_body, cut_request) = capture.request.as_ref().map(|b| stored_body(b, max)).unzip();
    let (response_body, cut_response) = capture.response.as_ref().map(|b| stored_body(b, max)).unzip();
    LogEntry {
        request_id: event.request_id.clone(),
        at_ms: now,
        consumer: event.consumer.clone(),
        tenant: event.tenant.clone(),
        model: event.model.clone(),
        provider: event.provider.clone(),
        operation: event.operation.to_string(),
        status: event.status,
        outcome: crate::rollups::outcome_name(event.outcome).to_string(),
        error: event.error.map(str::to_string),
        usage: event.usage.map(|u| LogUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }),
        cost_nanos: event.quota.as_ref().and_then(|q| q.cost_nanos),
        latency_ms: event.latency_ms,
        duration_ms: event.duration_ms,
        cache: event.cache.as_ref().map(|c| c.status.header_value().to_string()),
        stream: event.stream,
        request_body,
        response_body,
        truncated: cut_request.unwrap_or(false) || cut_response.unwrap_or(false),
        feedback: None,
        expires_ms: now + capture.settings.retention_days * DAY_MS,
    }
}

/// Keep `event`'s ownership row (when it has an owner `owner`, the caller's consumer key, and a
/// model) and its entry (when `capture` is set), in the background.
pub fn record<H: Host>(host: &H, config: &Config, event: &UsageEvent, owner: Option<String>, capture: Option<&LogCapture>) {
    let now = host.now_ms();
    let index = owner.filter(|_| event.model.is_some()).map(|consumer| {
        let row = Row::from_event(&crate::rollups::facts(event, config, now));
        IndexRow { request_id: event.request_id.clone(), consumer, hour: row.hour, dims: row.dims, expires_ms: now + INDEX_RETENTION_DAYS * DAY_MS, feedback: false }
    });
    let entry = capture.map(|c| Box::new(entry(event, c, now)));
    if index.is_none() && entry.is_none() {
        return;
    }
    let shard = shard_of(event.consumer.as_deref(), config.stats.shards);
    let host = host.clone();
    host.clone().wait_until(async move {
        let _ = host.request_log(shard, &LogOp::Record { index, entry, now_ms: now }).await;
    });
}

/// `POST /v1/feedback` of `owner` (the caller's consumer key; `None` for anonymous callers,
/// who have no requests to rate). The body: `request_id`, and `score` and/or `label`, and an
/// optional `comment`.
pub async fn feedback<H: Host>(host: &H, config: &Config, owner: Option<String>, consumer: Option<&str>, body: serde_json::Value) -> Result<serde_json::Value, GatewayError> {
    let bad = |message: String, param: &str| GatewayError::InvalidRequest { message, param: Some(param.to_string()) };
    let serde_json::Value::Object(mut fields) = body else { return Err(bad("The body must be a JSON object.".into(), "request_id")) };
    let request_id = match fields.remove("request_id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() && id.len() <= 128 => id,
        _ => return Err(bad("'request_id' (the x-request-id of your request) is required.".into(), "request_id")),
    };
    let feedback: Feedback = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| {
        let message = e.to_string();
        let param = ["score", "label", "comment"].into_iter().find(|p| message.contains(p)).unwrap_or("score");
        bad(format!("Invalid feedback: {message}."), param)
    })?;
    feedback.validate().map_err(|e| bad(format!("{}.", e.message), e.param))?;
    let Some(owner) = owner else { return Err(GatewayError::UnknownRequest { id: request_id }) };
    let shard = shard_of(consumer, config.stats.shards);
    let op = LogOp::Feedback { request_id: request_id.clone(), consumer: owner, feedback: feedback.clone() };
    match host.request_log(shard, &op).await.map_err(|_| GatewayError::StoreUnavailable)? {
        LogReply::FeedbackRecorded { index } => {
            if config.stats.enabled {
                let keep_from_hour = (host.now_ms() / HOUR_MS).saturating_sub(config.stats.retention_days * 24);
                let row = Box::new(feedback_row(&index, &feedback));
                let stats_shard = shard_of(consumer, config.stats.shards);
                let background = host.clone();
                host.wait_until(async move {
                    let _ = background.stats(stats_shard, &StatsOp::Record { row, keep_from_hour }).await;
                });
            }
            Ok(serde_json::json!({ "object": "feedback", "request_id": request_id, "recorded": true }))
        }
        LogReply::FeedbackDuplicate => Err(GatewayError::FeedbackExists { id: request_id }),
        LogReply::FeedbackUnknown => Err(GatewayError::UnknownRequest { id: request_id }),
        _ => Err(GatewayError::StoreUnavailable),
    }
}

/// One page of entries (no bodies), newest first, from every shard (or the consumer's only).
pub async fn list<H: Host>(host: &H, config: &Config, mut query: ListQuery) -> Result<Vec<LogEntry>, HostError> {
    let limit = query.limit;
    query.limit = limit + 1;
    let shards: Vec<u32> = match &query.consumer {
        Some(c) => vec![shard_of(Some(c), config.stats.shards)],
        None => (0..config.stats.shards).collect(),
    };
    let op = LogOp::List { query };
    let replies = futures::future::join_all(shards.into_iter().map(|shard| host.request_log(shard, &op))).await;
    let mut entries = Vec::new();
    for reply in replies {
        match reply? {
            LogReply::Entries { entries: mut part } => entries.append(&mut part),
            _ => return Err(HostError("the request log answered a listing with something else".into())),
        }
    }
    sort_newest_first(&mut entries);
    entries.truncate(limit + 1);
    Ok(entries)
}

/// One entry with its bodies, from whichever shard holds it.
pub async fn get<H: Host>(host: &H, config: &Config, request_id: &str) -> Result<Option<LogEntry>, HostError> {
    let op = LogOp::Get { request_id: request_id.to_string() };
    let replies = futures::future::join_all((0..config.stats.shards).map(|shard| host.request_log(shard, &op))).await;
    for reply in replies {
        if let LogReply::Found { entry: Some(entry), .. } = reply? {
            return Ok(Some(*entry));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::stored_body;
    use serde_json::json;

    #[test]
    fn secrets_next_to_an_escaped_character_are_redacted_too() {
        let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
        let body = json!({ "messages": [{ "content": format!("token:\n{key}\tand jane.doe@example.com") }] });
        let (stored, cut) = stored_body(&body, 10_000);
        assert!(!cut);
        assert!(!stored.contains(key) && !stored.contains("jane.doe@example.com"), "{stored}");
        assert!(stored.contains("[SECRET]") && stored.contains("[EMAIL]"), "{stored}");
    }
}
