//! Every way a request can fail, with one mapping to HTTP status and to the OpenAI error body.
//!
//! Errors say where they came from ([`ErrorSource`]), whether retrying may help, and carry a
//! low-cardinality label for metrics. No variant ever holds a secret: provider keys, client keys
//! and upstream messages that may echo them are never copied into an error.

use serde_json::{json, Value};

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something wrong; retrying the same request will fail again.
    Client,
    /// The provider failed or could not be reached.
    Upstream,
    /// The gateway itself (configuration, platform).
    Gateway,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    NotFound { path: String },
    MethodNotAllowed { method: String, allowed: &'static str },
    UnsupportedContentType { got: Option<String> },
    BodyTooLarge { limit: usize },
    BodyRead { detail: String },
    InvalidJson { detail: String },
    InvalidRequest { message: String, param: Option<String> },
    MissingCredential,
    InvalidCredential,
    /// A bearer JWT was refused; `reason` is a fixed label (`expired`, `bad_signature`, ...).
    InvalidToken { reason: &'static str },
    /// JWT auth relies on a JWKS URL that could not be fetched and no other key is configured.
    JwksUnavailable,
    UnknownModel { model: String },
    ModelNotAllowed { model: String },
    /// The model exists but is not configured for this operation (chat vs embeddings).
    UnsupportedOperation { model: String, operation: &'static str },
    ConfigInvalid { errors: Vec<String> },
    ConfigUnavailable { detail: String },
    MissingSecret { name: String },
    UpstreamConnect { provider: String },
    UpstreamTimeout { provider: String, after_ms: u64 },
    /// The upstream answered with an error status. `body` is forwarded only for client-caused
    /// statuses whose body is an error object (it says what was wrong with the request), and only
    /// as the call's `provider::Scrub` rebuilt it: no credential of the call, capped; other
    /// statuses get a generic message so nothing upstream-internal leaks.
    UpstreamStatus { provider: String, status: u16, retry_after: Option<String>, body: Option<Value> },
    UpstreamInvalidResponse { provider: String, detail: String },
    /// A stream broke off after the 200 was sent; reported to the client as an SSE error event.
    UpstreamStreamBroken { provider: String },
    /// The provider reported an error inside a stream after the 200 (e.g. `overloaded_error`).
    /// `kind` is the provider's error type, never its message.
    UpstreamStreamFailed { provider: String, kind: String },
    /// A guardrail refused the request (`output: false`) or the model's response (`output: true`).
    /// `rule` names the rule, never the matched text.
    ContentBlocked { rule: String, output: bool },
    /// The moderation service configured to fail closed could not be asked.
    ModerationUnavailable,
    /// A rate limit or budget refused the request. `headers` are OpenAI's `x-ratelimit-*`.
    RateLimited {
        metric: &'static str,
        window: &'static str,
        /// A money budget (OpenAI's `insufficient_quota`), not a rate limit.
        budget: bool,
        /// The request alone is larger than the limit: retrying cannot help.
        too_large: bool,
        retry_after_secs: Option<u64>,
        headers: Vec<(String, String)>,
    },
    /// The counter store could not be asked and the limit fails closed.
    QuotaUnavailable,
    /// The key-value store (virtual keys, admin data) could not be read or written. Fails
    /// closed: a key that cannot be checked is not accepted.
    StoreUnavailable,
    /// Routing found no target for the request. `residency`: data-residency rules allow none of
    /// the model's targets (the request is never sent elsewhere); otherwise every allowed target
    /// is unhealthy right now. `excluded` lists target ids with the reason, never secrets.
    NoRouteTarget { model: String, residency: bool, excluded: String },
    /// Feedback on a request id this consumer did not make (or that is unknown or expired).
    UnknownRequest { id: String },
    /// Feedback was already given on this request.
    FeedbackExists { id: String },
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            NotFound { .. } | UnknownModel { .. } | UnknownRequest { .. } => 404,
            FeedbackExists { .. } => 409,
            MethodNotAllowed { .. } => 405,
            UnsupportedContentType { .. } => 415,
            BodyTooLarge { .. } => 413,
            BodyRead { .. } | InvalidJson { .. } | InvalidRequest { .. } | UnsupportedOperation { .. } | ContentBlocked { .. } => 400,
            ModerationUnavailable | QuotaUnavailable | StoreUnavailable => 503,
            RateLimited { .. } => 429,
            NoRouteTarget { residency: true, .. } => 403,
            NoRouteTarget { residency: false, .. } => 503,
            MissingCredential | InvalidCredential | InvalidToken { .. } => 401,
            JwksUnavailable => 503,
            ModelNotAllowed { .. } => 403,
            ConfigInvalid { .. } | ConfigUnavailable { .. } | MissingSecret { .. } => 500,
            UpstreamConnect { .. } | UpstreamInvalidResponse { .. } | UpstreamStreamBroken { .. } | UpstreamStreamFailed { .. } => 502,
            UpstreamTimeout { .. } => 504,
            UpstreamStatus { status, .. } => match status {
                400 | 404 | 409 | 413 | 422 => *status,
                429 => 429,
                _ => 502,
            },
        }
    }

    pub fn source(&self) -> ErrorSource {
        use GatewayError::*;
        match self {
            ConfigInvalid { .. } | ConfigUnavailable { .. } | MissingSecret { .. } => ErrorSource::Gateway,
            JwksUnavailable => ErrorSource::Upstream,
            ModerationUnavailable => ErrorSource::Upstream,
            QuotaUnavailable | StoreUnavailable => ErrorSource::Gateway,
            NoRouteTarget { residency: true, .. } => ErrorSource::Client,
            NoRouteTarget { residency: false, .. } => ErrorSource::Upstream,
            UpstreamConnect { .. }
            | UpstreamTimeout { .. }
            | UpstreamInvalidResponse { .. }
            | UpstreamStreamBroken { .. }
            | UpstreamStreamFailed { .. } => {
                ErrorSource::Upstream
            }
            UpstreamStatus { status, .. } if !matches!(status, 400 | 404 | 409 | 413 | 422) => ErrorSource::Upstream,
            UpstreamStatus { .. } => ErrorSource::Client,
            _ => ErrorSource::Client,
        }
    }

    /// Whether sending the same request again (here or to another target) may succeed.
    pub fn retryable(&self) -> bool {
        use GatewayError::*;
        match self {
            UpstreamConnect { .. } | UpstreamTimeout { .. } | ModerationUnavailable => true,
            UpstreamStatus { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A short, fixed label for metrics and the usage event.
    pub fn label(&self) -> &'static str {
        use GatewayError::*;
        match self {
            NotFound { .. } => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            UnsupportedContentType { .. } => "unsupported_content_type",
            BodyTooLarge { .. } => "body_too_large",
            BodyRead { .. } => "body_read",
            InvalidJson { .. } => "invalid_json",
            InvalidRequest { .. } => "invalid_request",
            MissingCredential => "missing_api_key",
            InvalidCredential => "invalid_api_key",
            InvalidToken { .. } => "invalid_token",
            JwksUnavailable => "jwks_unavailable",
            UnknownModel { .. } => "model_not_found",
            ModelNotAllowed { .. } => "model_not_allowed",
            UnsupportedOperation { .. } => "unsupported_operation",
            ConfigInvalid { .. } => "config_invalid",
            ConfigUnavailable { .. } => "config_unavailable",
            MissingSecret { .. } => "missing_secret",
            UpstreamConnect { .. } => "upstream_unreachable",
            UpstreamTimeout { .. } => "upstream_timeout",
            UpstreamStatus { .. } => "upstream_error",
            UpstreamInvalidResponse { .. } => "upstream_invalid_response",
            UpstreamStreamBroken { .. } | UpstreamStreamFailed { .. } => "upstream_stream_error",
            ContentBlocked { .. } => "content_blocked",
            ModerationUnavailable => "moderation_unavailable",
            RateLimited { budget: true, .. } => "insufficient_quota",
            RateLimited { .. } => "rate_limit_exceeded",
            QuotaUnavailable => "quota_store_unavailable",
            StoreUnavailable => "store_unavailable",
            NoRouteTarget { residency: true, .. } => "residency_no_target",
            NoRouteTarget { residency: false, .. } => "no_healthy_target",
            UnknownRequest { .. } => "request_not_found",
            FeedbackExists { .. } => "feedback_exists",
        }
    }

    fn error_type(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingCredential | InvalidCredential | InvalidToken { .. } => "authentication_error",
            JwksUnavailable => "api_error",
            ModelNotAllowed { .. } => "permission_error",
            NotFound { .. } | UnknownModel { .. } | UnknownRequest { .. } => "not_found_error",
            UpstreamStatus { status: 429, .. } => "rate_limit_error",
            RateLimited { budget: false, .. } => "rate_limit_error",
            RateLimited { budget: true, .. } => "insufficient_quota",
            QuotaUnavailable | StoreUnavailable => "api_error",
            NoRouteTarget { residency: true, .. } => "permission_error",
            NoRouteTarget { residency: false, .. } => "api_error",
            ConfigInvalid { .. } | ConfigUnavailable { .. } | MissingSecret { .. } => "server_error",
            UpstreamConnect { .. }
            | UpstreamTimeout { .. }
            | UpstreamStatus { .. }
            | UpstreamInvalidResponse { .. }
            | UpstreamStreamBroken { .. }
            | UpstreamStreamFailed { .. }
            | ModerationUnavailable => "api_error",
            _ => "invalid_request_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UnknownModel { .. } | GatewayError::ModelNotAllowed { .. } => Some("model"),
            GatewayError::UnknownRequest { .. } | GatewayError::FeedbackExists { .. } => Some("request_id"),
            _ => None,
        }
    }

    /// What the operator's logs get beyond the client's message (the client never sees it).
    pub fn log_detail(&self) -> Option<String> {
        match self {
            GatewayError::ConfigInvalid { errors } => Some(errors.join("; ")),
            GatewayError::ConfigUnavailable { detail } => Some(detail.clone()),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        use GatewayError::*;
        match self {
            NotFound { path } => format!("Unknown route: {path}"),
            MethodNotAllowed { method, allowed } => format!("Method {method} is not allowed here; use {allowed}."),
            UnsupportedContentType { got } => format!(
                "Content-Type must be application/json (got {}).",
                got.as_deref().unwrap_or("none")
            ),
            BodyTooLarge { limit } => format!("Request body is larger than the limit of {limit} bytes."),
            BodyRead { detail } => format!("Could not read the request body: {detail}"),
            InvalidJson { detail } => format!("The request body is not valid JSON: {detail}"),
            InvalidRequest { message, .. } => message.clone(),
            MissingCredential => "No API key provided. Send it as 'Authorization: Bearer <key>'.".into(),
            InvalidCredential => "Incorrect API key provided.".into(),
            InvalidToken { reason } => format!("The bearer token was rejected ({reason})."),
            JwksUnavailable => "The identity provider's signing keys could not be fetched; retry later.".into(),
            UnknownModel { model } => format!("The model '{model}' does not exist on this gateway."),
            ModelNotAllowed { model } => format!("Your key is not allowed to use the model '{model}'."),
            UnsupportedOperation { model, operation } => {
                format!("The model '{model}' does not support {operation}.")
            }
            // Only the fields, never their values (a URL may hold a password): the full list goes
            // to the logs ([`GatewayError::log_detail`]) and to the admin who PUTs a document.
            ConfigInvalid { errors } => format!(
                "The gateway configuration is invalid at: {}. The details are in the gateway's logs (see x-request-id).",
                errors.iter().map(|e| invalid_field(e)).collect::<Vec<_>>().join(", ")
            ),
            ConfigUnavailable { .. } => "The gateway configuration could not be loaded; the details are in the gateway's logs (see x-request-id).".into(),
            MissingSecret { name } => format!("The secret '{name}' needed by a provider is not set."),
            UpstreamConnect { provider } => format!("Could not connect to the provider '{provider}'."),
            UpstreamTimeout { provider, after_ms } => {
                format!("The provider '{provider}' did not answer within {after_ms} ms.")
            }
            UpstreamStatus { provider, status, .. } => match status {
                401 | 403 => format!("The provider '{provider}' rejected the gateway's credentials."),
                429 => format!("The provider '{provider}' is rate limiting requests; retry later."),
                _ => format!("The provider '{provider}' returned an error (HTTP {status})."),
            },
            UpstreamInvalidResponse { provider, detail } => {
                format!("The provider '{provider}' sent a response the gateway could not read: {detail}")
            }
            UpstreamStreamBroken { provider } => {
                format!("The provider '{provider}' stream broke off before it was complete.")
            }
            UpstreamStreamFailed { provider, kind } => {
                format!("The provider '{provider}' reported an error during the stream ({kind}).")
            }
            ContentBlocked { rule, output: false } => format!("The request was blocked by the guardrail '{rule}'."),
            ContentBlocked { rule, output: true } => format!("The model's response was blocked by the guardrail '{rule}'."),
            ModerationUnavailable => "The moderation service could not be reached; the request was not sent.".into(),
            RateLimited { budget: true, window, .. } => {
                format!("The {window}ly budget for this key is exhausted; the request was not sent.")
            }
            RateLimited { too_large: true, metric, window, .. } => {
                format!("This request alone exceeds the {metric} per {window} limit; reduce max_tokens or the prompt.")
            }
            RateLimited { metric, window, .. } => format!("Rate limit reached for {metric} per {window}; retry after the time in Retry-After."),
            QuotaUnavailable => "The rate-limit store could not be reached; the request was not sent. Retry shortly.".into(),
            StoreUnavailable => "The gateway's key-value store could not be reached; nothing was changed or sent. Retry shortly.".into(),
            NoRouteTarget { model, residency: true, excluded } => format!(
                "No target of '{model}' is allowed by the data-residency rules for this request; it was not sent anywhere ({excluded})."
            ),
            NoRouteTarget { model, residency: false, excluded } => {
                format!("Every allowed target of '{model}' is temporarily unavailable; retry shortly ({excluded}).")
            }
            UnknownRequest { id } => format!("No request '{id}' of yours is known (unknown, older than the feedback window, or not yours)."),
            FeedbackExists { id } => format!("Feedback on the request '{id}' was already given; it is not replaced."),
        }
    }

    /// The OpenAI-style error object: `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_openai_body(&self) -> Value {
        if let GatewayError::UpstreamStatus { body: Some(body), .. } = self {
            return body.clone();
        }
        json!({
            "error": {
                "message": self.message(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.label(),
            }
        })
    }

    /// The error as one SSE event, for failures after a stream's 200 was sent. The OpenAI SDKs
    /// raise an `APIError` when they read a `data:` event with an `error` object.
    pub fn to_sse_event(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::sse::encode(None, &self.to_openai_body().to_string(), &mut out);
        out
    }

    /// The headers a response carrying this error must have besides its body: `retry-after`
    /// where waiting helps, the rate-limit headers, `allow` and `www-authenticate`.
    /// `crate::http::Response::error` builds the response from them.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let GatewayError::UpstreamStatus { retry_after: Some(after), .. } = self {
            headers.push(("retry-after".into(), after.clone()));
        }
        if let GatewayError::RateLimited { retry_after_secs, headers: limits, .. } = self {
            if let Some(secs) = retry_after_secs {
                headers.push(("retry-after".into(), secs.to_string()));
            }
            headers.extend(limits.iter().cloned());
        }
        if matches!(self, GatewayError::NoRouteTarget { residency: false, .. }) {
            headers.push(("retry-after".into(), "5".into()));
        }
        if matches!(self, GatewayError::QuotaUnavailable | GatewayError::StoreUnavailable) {
            headers.push(("retry-after".into(), "1".into()));
        }
        if let GatewayError::MethodNotAllowed { allowed, .. } = self {
            headers.push(("allow".into(), allowed.to_string()));
        }
        if matches!(self, GatewayError::MissingCredential | GatewayError::InvalidCredential | GatewayError::InvalidToken { .. }) {
            headers.push(("www-authenticate".into(), "Bearer".into()));
        }
        headers
    }
}

/// The field a configuration issue (`path: message`, as `ConfigIssue` displays) is about, without
/// the message, which may quote the offending value. For an unknown field serde names the parent
/// as the path and the field only in the message; the field's name (a key the operator wrote, not
/// a value) is added.
fn invalid_field(entry: &str) -> String {
    let (path, message) = entry.split_once(": ").unwrap_or(("(document)", entry));
    match message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        Some(field) if path == "(document)" => field.to_string(),
        Some(field) => format!("{path}.{field}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_config_names_fields_to_clients_and_keeps_values_for_the_log() {
        let error = GatewayError::ConfigInvalid {
            errors: vec![
                "providers.up.base_url: must be an http(s) URL, got 'ftp://u:secret@h'".into(),
                "(document): unknown field `surprise`, expected one of ...".into(),
                "models.x: unknown field `colour`".into(),
            ],
        };
        let message = error.message();
        assert!(message.contains("providers.up.base_url, surprise, models.x.colour"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(error.log_detail().unwrap().contains("u:secret@h"));
    }

    #[test]
    fn upstream_auth_failure_is_a_bad_gateway_without_upstream_text() {
        let err = GatewayError::UpstreamStatus { provider: "openai".into(), status: 401, retry_after: None, body: None };
        assert_eq!(err.status(), 502);
        assert_eq!(err.source(), ErrorSource::Upstream);
        let body = err.to_openai_body();
        assert_eq!(body["error"]["code"], "upstream_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("credentials"));
    }

    #[test]
    fn upstream_rate_limit_keeps_status_and_retry_after() {
        let err = GatewayError::UpstreamStatus {
            provider: "openai".into(),
            status: 429,
            retry_after: Some("7".into()),
            body: None,
        };
        assert_eq!(err.status(), 429);
        assert_eq!(err.response_headers(), vec![("retry-after".to_string(), "7".to_string())]);
        assert!(err.retryable());
    }

    #[test]
    fn client_errors_are_not_retryable_and_name_the_param() {
        let err = GatewayError::UnknownModel { model: "nope".into() };
        assert_eq!(err.status(), 404);
        assert!(!err.retryable());
        assert_eq!(err.to_openai_body()["error"]["param"], "model");
    }
}
