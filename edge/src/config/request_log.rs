//! The `request_log` settings of a model, a consumer (`auth.consumers[].request_log`) or a
//! tenant: whether a request's details and (redacted) bodies are kept for `/admin/requests`
//! (docs/observability.md, "Request log"). Off unless one of them turns it on; the most specific
//! wins, as for `cache`: the consumer's, else its tenant's, else the model's, so a consumer can
//! opt out of a model's log with `enabled: false`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Largest body kept per direction (the store's rows stay well under SQLite's and a Durable
/// Object's value limits).
pub const MAX_LOG_BODY_BYTES: usize = 256 * 1024;
/// Longest configurable retention.
pub const MAX_LOG_RETENTION_DAYS: u64 = 365;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequestLog {
    enabled: bool,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    retention_days: Option<u64>,
}

/// One validated `request_log` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLogSettings {
    pub enabled: bool,
    /// Each body (request, response) is cut at this many bytes after redaction.
    pub max_body_bytes: usize,
    pub retention_days: u64,
}

/// Every `request_log` setting of the document, by where it was set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestLogRules {
    pub models: BTreeMap<String, RequestLogSettings>,
    pub consumers: BTreeMap<String, RequestLogSettings>,
    pub tenants: BTreeMap<String, RequestLogSettings>,
}

impl RequestLogRules {
    /// The setting that applies to a request when it is logged: the consumer's, else the
    /// tenant's, else the model's. `None`: not logged.
    pub fn for_request(&self, consumer: Option<&str>, tenant: Option<&str>, model: &str) -> Option<&RequestLogSettings> {
        let chosen = super::cache::most_specific([&self.consumers, &self.tenants, &self.models], [consumer, tenant, Some(model)])?;
        chosen.enabled.then_some(chosen)
    }
}

pub(super) fn validate_request_log(raw: RawRequestLog, path: &str, issue: &mut impl FnMut(String, String)) -> Option<RequestLogSettings> {
    let mut ok = true;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(32 * 1024);
    if max_body_bytes > MAX_LOG_BODY_BYTES {
        ok = false;
        issue(format!("{path}.max_body_bytes"), format!("must be between 0 and {MAX_LOG_BODY_BYTES}, got {max_body_bytes}"));
    }
    let retention_days = raw.retention_days.unwrap_or(30);
    if retention_days == 0 || retention_days > MAX_LOG_RETENTION_DAYS {
        ok = false;
        issue(format!("{path}.retention_days"), format!("must be between 1 and {MAX_LOG_RETENTION_DAYS}, got {retention_days}"));
    }
    ok.then_some(RequestLogSettings { enabled: raw.enabled, max_body_bytes, retention_days })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> (Option<RequestLogSettings>, Vec<String>) {
        let raw: RawRequestLog = serde_json::from_str(json).unwrap();
        let mut paths = Vec::new();
        let settings = validate_request_log(raw, "models.m.request_log", &mut |p, _| paths.push(p));
        (settings, paths)
    }

    #[test]
    fn defaults_bounds_and_precedence() {
        assert_eq!(check(r#"{"enabled": true}"#).0, Some(RequestLogSettings { enabled: true, max_body_bytes: 32 * 1024, retention_days: 30 }));
        assert_eq!(check(r#"{"enabled": true, "max_body_bytes": 300000}"#).1, ["models.m.request_log.max_body_bytes"]);
        assert_eq!(check(r#"{"enabled": true, "retention_days": 0}"#).1, ["models.m.request_log.retention_days"]);
        let on = RequestLogSettings { enabled: true, max_body_bytes: 10, retention_days: 1 };
        let mut rules = RequestLogRules::default();
        rules.models.insert("m".into(), on);
        rules.consumers.insert("quiet".into(), RequestLogSettings { enabled: false, ..on });
        rules.tenants.insert("acme".into(), RequestLogSettings { retention_days: 7, ..on });
        assert_eq!(rules.for_request(Some("web"), None, "m").map(|s| s.retention_days), Some(1));
        assert_eq!(rules.for_request(Some("web"), Some("acme"), "other").map(|s| s.retention_days), Some(7));
        assert!(rules.for_request(Some("quiet"), Some("acme"), "m").is_none(), "the consumer's opt-out wins");
        assert!(rules.for_request(Some("web"), None, "other").is_none(), "off unless opted in");
    }
}
