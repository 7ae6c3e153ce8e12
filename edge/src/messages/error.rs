//! Anthropic's error body (`{"type":"error","error":{"type","message"}}`) for gateway errors, as
//! a whole response body and as the data of a stream's `error` event.

use serde_json::{json, Value};

use crate::error::GatewayError;

/// Anthropic's error types.
const ANTHROPIC_ERROR_TYPES: [&str; 8] = [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
];

/// Anthropic's error type for an HTTP status, per its Errors reference: other 4xx statuses are
/// `invalid_request_error`, other 5xx `api_error`.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic error body for a gateway error, sent with `error.status()`.
///
/// For a client-caused upstream status whose OpenAI-style body the gateway forwards on its OpenAI
/// routes (it says what was wrong with the request, already scrubbed of the call's credentials
/// in dispatch), that message is used here too; every other
/// error uses the gateway's own message, which never holds upstream text or secrets.
pub fn anthropic_error_body(error: &GatewayError) -> Value {
    let forwarded = match error {
        GatewayError::UpstreamStatus { body: Some(body), .. } => {
            body.pointer("/error/message").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    };
    body(anthropic_error_type(error.status()), forwarded.unwrap_or_else(|| error.message()))
}

/// The data of the `error` event that ends a stream failing after the 200. Only the gateway's own
/// message is used, never upstream text; but a provider's in-stream error type (a fixed label, not
/// its message) is kept when it is one of Anthropic's, e.g. `overloaded_error`, so clients can
/// tell it apart.
pub(super) fn stream_error_body(error: &GatewayError) -> Value {
    let kind = match error {
        GatewayError::UpstreamStreamFailed { kind, .. } => ANTHROPIC_ERROR_TYPES.iter().find(|t| **t == kind.as_str()).copied(),
        _ => None,
    }
    .unwrap_or_else(|| anthropic_error_type(error.status()));
    body(kind, error.message())
}

/// The one shape both bodies share.
fn body(kind: &str, message: String) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_follow_anthropic_types() {
        let cases: [(u16, &str); 10] = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (415, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            assert_eq!(anthropic_error_type(status), kind, "{status}");
        }
        let err = GatewayError::InvalidRequest { message: "max_tokens: Field required".into(), param: Some("max_tokens".into()) };
        assert_eq!(anthropic_error_body(&err), json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "max_tokens: Field required" } }));
        assert_eq!(anthropic_error_body(&GatewayError::InvalidCredential)["error"]["type"], "authentication_error");
        let upstream = GatewayError::UpstreamStatus { provider: "p".into(), status: 500, retry_after: None, body: None };
        assert_eq!(anthropic_error_body(&upstream)["error"]["type"], "api_error");
        let forwarded = GatewayError::UpstreamStatus {
            provider: "p".into(),
            status: 400,
            retry_after: None,
            body: Some(json!({ "error": { "message": "bad stop", "type": "invalid_request_error" } })),
        };
        assert_eq!(anthropic_error_body(&forwarded)["error"], json!({ "type": "invalid_request_error", "message": "bad stop" }));
    }
}
