//! The one filter every piece of upstream text passes before a client sees it: provider error
//! bodies (whole, of every provider kind, in the OpenAI and the Anthropic shape) and the error
//! events of a stream.
//!
//! A hostile or buggy upstream may echo the request's credentials in its error message. A
//! [`Scrub`] knows the exact credentials the gateway sent on the call (the secrets the provider
//! read, and the credential headers of the request as sent), removes them and their URL-encoded
//! and base64 forms, removes anything shaped like a key or token (the guard's secret detectors,
//! `Bearer ...`), and caps the length, so the text keeps its meaning but never carries a secret.

use std::sync::OnceLock;

use base64::Engine;
use policy::guard::{PiiKind, PiiScanner};
use regex::Regex;
use serde_json::{json, Value};

use super::url::percent_encode_segment as percent_encode;
use crate::host::OutboundRequest;

/// What replaces a removed credential.
pub const REDACTED: &str = "[REDACTED]";
/// Longest provider error message a client sees, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// Longest provider error type, code or param a client sees, in characters.
pub const MAX_LABEL_CHARS: usize = 128;
/// A secret value shorter than this is not searched for: it would shred ordinary words and
/// cannot be a real provider credential.
const MIN_SECRET_CHARS: usize = 8;
/// Request headers whose values are credentials on some provider.
const CREDENTIAL_HEADERS: [&str; 6] = ["authorization", "x-api-key", "api-key", "x-goog-api-key", "x-amz-security-token", "cookie"];

/// The credentials of one upstream call, and how to take them (and anything shaped like a
/// credential) out of the upstream's text.
#[derive(Debug, Clone, Default)]
pub struct Scrub {
    /// Exact values to remove, longest first (so `Bearer k` goes before `k`).
    values: Vec<String>,
}

impl Scrub {
    /// A scrub for the secrets a provider read to build its call.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut scrub = Scrub::default();
        for secret in secrets {
            scrub.add(&secret);
        }
        scrub
    }

    /// Also remove the credential headers of the request as it was sent (a signed
    /// `Authorization` header holds more than the secrets it was made from).
    pub fn with_request(mut self, request: &OutboundRequest) -> Self {
        for (name, value) in &request.headers {
            if CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                self.add(value);
            }
        }
        self
    }

    fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_CHARS {
            return;
        }
        let engines = [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE_NO_PAD];
        let forms = [secret.to_string(), percent_encode(secret)]
            .into_iter()
            .chain(engines.iter().map(|e| e.encode(secret.as_bytes())));
        for form in forms {
            if !self.values.contains(&form) {
                self.values.push(form);
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Upstream text as a client may see it: no credential of this call, nothing shaped like a
    /// key or token, at most `max_chars` characters.
    pub fn text(&self, text: &str, max_chars: usize) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        let out = remove_key_shapes(&out);
        cap(&out, max_chars)
    }

    /// A provider's error type or code (a short label) as a client may see it.
    pub fn label(&self, label: &str) -> String {
        self.text(label, MAX_LABEL_CHARS)
    }

    /// An OpenAI-style error body from upstream, rebuilt for the client: only `message`,
    /// `type`, `param` and `code` are kept, each scrubbed and capped (an `error` that is only a
    /// string is its message). `None` when the body has no error object.
    pub fn error_body(&self, body: &Value) -> Option<Value> {
        let error = match body.get("error")? {
            Value::String(message) => json!({ "message": message }),
            error if error.is_object() => error.clone(),
            _ => return None,
        };
        let label = |field: &str| match error.get(field) {
            Some(Value::String(s)) => Value::String(self.label(s)),
            Some(Value::Number(n)) => Value::Number(n.clone()),
            _ => Value::Null,
        };
        let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
        Some(json!({
            "error": {
                "message": self.text(message, MAX_MESSAGE_CHARS),
                "type": label("type"),
                "param": label("param"),
                "code": label("code"),
            }
        }))
    }
}

/// Replace every key- or token-shaped span (the guard's secret detectors, `Bearer ...`).
fn remove_key_shapes(text: &str) -> String {
    static SHAPES: OnceLock<(PiiScanner, Regex)> = OnceLock::new();
    let (scanner, bearer) = SHAPES.get_or_init(|| {
        let bearer = Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{6,}").expect("the bearer pattern compiles");
        (PiiScanner::for_kinds(&[PiiKind::Secret]), bearer)
    });
    let text = bearer.replace_all(text, format!("Bearer {REDACTED}").as_str());
    let findings = scanner.scan(&text);
    if findings.is_empty() {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for finding in findings {
        out.push_str(&text[at..finding.start]);
        out.push_str(REDACTED);
        at = finding.end;
    }
    out.push_str(&text[at..]);
    out
}

/// At most `max_chars` characters, marked with `…` where cut.
fn cap(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "pk-live-0123456789abcdef";

    #[test]
    fn removes_the_exact_credentials_and_their_encoded_forms() {
        let secret = "abc/def+ghi=jkl mno";
        let scrub = Scrub::new([KEY.to_string(), secret.to_string()]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        let text = format!("key {KEY}; url {}; b64 {b64}; raw {secret}", percent_encode(secret));
        let out = scrub.text(&text, MAX_MESSAGE_CHARS);
        assert_eq!(out, "key [REDACTED]; url [REDACTED]; b64 [REDACTED]; raw [REDACTED]");
    }

    #[test]
    fn removes_key_shapes_and_bearer_tokens_it_was_not_told_about() {
        let scrub = Scrub::default();
        let text = "sent sk-proj-Abcdef0123456789XYZabc and AKIAIOSFODNN7EXAMPLE with authorization: Bearer tok.en-123456";
        let out = scrub.text(text, MAX_MESSAGE_CHARS);
        assert!(!out.contains("sk-proj"), "{out}");
        assert!(!out.contains("AKIA"), "{out}");
        assert!(!out.contains("tok.en"), "{out}");
        assert!(out.starts_with("sent [REDACTED] and [REDACTED]"), "{out}");
    }

    #[test]
    fn credential_headers_of_the_request_are_removed() {
        let request = OutboundRequest {
            method: "POST",
            url: "https://up.test".into(),
            headers: vec![("Authorization".into(), "AWS4-HMAC-SHA256 Credential=X/1, Signature=deadbeef00".into()), ("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let scrub = Scrub::default().with_request(&request);
        let out = scrub.text("echo AWS4-HMAC-SHA256 Credential=X/1, Signature=deadbeef00 application/json", MAX_MESSAGE_CHARS);
        assert_eq!(out, "echo [REDACTED] application/json");
    }

    #[test]
    fn short_secrets_are_not_searched_for_and_text_is_capped() {
        let scrub = Scrub::new(["abc".to_string()]);
        assert_eq!(scrub.text("abc", 10), "abc");
        assert_eq!(scrub.text("ééééé", 3), "ééé…");
        assert_eq!(scrub.label(&"x".repeat(500)).chars().count(), MAX_LABEL_CHARS + 1);
    }

    #[test]
    fn error_bodies_keep_their_meaning_and_lose_the_rest() {
        let scrub = Scrub::new([KEY.to_string()]);
        let body = json!({ "error": {
            "message": format!("Invalid key {KEY}: {}", "y".repeat(5000)),
            "type": "invalid_request_error",
            "param": null,
            "code": 400,
            "echo": { "headers": { "authorization": format!("Bearer {KEY}") } }
        }});
        let out = scrub.error_body(&body).unwrap();
        assert_eq!(out["error"]["type"], "invalid_request_error");
        assert_eq!(out["error"]["code"], 400);
        assert!(out["error"].get("echo").is_none());
        let message = out["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Invalid key [REDACTED]: yyy"));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(!out.to_string().contains(KEY));
        assert_eq!(scrub.error_body(&json!({ "message": "not an error object" })), None);
    }
}
