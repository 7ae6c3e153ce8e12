//! The plain HTTP types the adapters translate to and from (requests, responses, bodies whole or
//! streamed, the platform's facts about the request), and the helpers every layer above needs to
//! read them: a body with a size cap, a JSON request body, percent-decoding of a path segment.

use std::fmt;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::error::GatewayError;

/// A chunk of a streamed body, or why the stream broke.
pub type BodyChunk = Result<Vec<u8>, BodyError>;

/// A streamed body. Not `Send`: on Workers it wraps a JS `ReadableStream`.
pub type ByteStream = Pin<Box<dyn Stream<Item = BodyChunk>>>;

/// The body of a request or response, whole or streamed.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    Stream(ByteStream),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream(..)"),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Bytes(bytes)
    }
}

/// A streamed body broke before its end (connection reset, upstream aborted, client went away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Facts about where a request entered the network, as the platform reports them
/// (`request.cf` on Workers). Every field is optional: a local run knows none of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Two-letter continent code (`EU`, `NA`, ...).
    pub continent: Option<String>,
    /// The edge location (Cloudflare colo IATA code, or a region name elsewhere).
    pub colo: Option<String>,
    /// Whether the country is in the European Union.
    pub is_eu_country: Option<bool>,
    /// Approximate latitude/longitude of the client.
    pub coordinates: Option<(f64, f64)>,
    /// The URL's query string (without the `?`), when it has one. Only the admin API's report
    /// routes read it (`/admin/stats?from=…`); it is never logged.
    pub query: Option<String>,
}


/// The client's address as the platform reports it: `cf-connecting-ip`, which Cloudflare sets on
/// every request (a client cannot supply its own), or `spin-client-addr` on Spin. `None` when the
/// platform reports none (local runs); never `x-forwarded-for`, which any client can write.
pub fn client_ip(request: &Request) -> Option<&str> {
    request
        .header("cf-connecting-ip")
        .or_else(|| request.header("spin-client-addr").map(|addr| addr.rsplit_once(':').map_or(addr, |(ip, _)| ip)))
        .map(str::trim)
        .filter(|ip| !ip.is_empty() && ip.len() <= 64)
}

/// An inbound HTTP request, as the adapter saw it.
#[derive(Debug)]
pub struct Request {
    /// Upper-case method (`GET`, `POST`, ...).
    pub method: String,
    /// The URL path, without query string.
    pub path: String,
    /// Header names in any case; look them up with [`Request::header`].
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub facts: RequestFacts,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The response the adapter writes back to the client.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
    }

    pub fn json_bytes(status: u16, bytes: Vec<u8>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Bytes(bytes),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The response for `error` on an OpenAI-compatible route.
    pub fn error(error: &GatewayError) -> Self {
        Self::error_with(error, &error.to_openai_body())
    }

    /// The response for `error` with `body` in the route's own error format (e.g. Anthropic's on
    /// `/v1/messages`): the same status and headers whatever the format.
    pub fn error_with(error: &GatewayError, body: &Value) -> Self {
        let mut response = Self::json(error.status(), body);
        response.headers.extend(error.response_headers());
        response
    }
}

/// The first value of a header by case-insensitive name.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyReadError {
    /// More than the caller's limit: reading stopped there.
    TooLarge,
    /// The stream broke before its end.
    Broken(String),
}

/// Collect a body, refusing more than `limit` bytes without reading further.
pub async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyReadError> {
    match body {
        Body::Empty => Ok(Vec::new()),
        Body::Bytes(bytes) if bytes.len() > limit => Err(BodyReadError::TooLarge),
        Body::Bytes(bytes) => Ok(bytes),
        Body::Stream(mut stream) => {
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BodyReadError::Broken(e.0))?;
                if out.len() + chunk.len() > limit {
                    return Err(BodyReadError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        }
    }
}

/// A client's JSON request body: the content type must say JSON, the body (declared and actual
/// length) must fit in `limit` bytes and must not be empty.
pub async fn read_json_body(request: Request, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let content_type = request.header("content-type").map(str::to_string);
    let is_json = content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(GatewayError::UnsupportedContentType { got: content_type });
    }
    let declared = request.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match read_body(request.body, limit).await {
        Ok(bytes) if bytes.is_empty() => Err(GatewayError::InvalidJson { detail: "the body is empty".into() }),
        Ok(bytes) => Ok(bytes),
        Err(BodyReadError::TooLarge) => Err(GatewayError::BodyTooLarge { limit }),
        Err(BodyReadError::Broken(detail)) => Err(GatewayError::BodyRead { detail }),
    }
}

/// A JSON request body parsed as a value (the admin API's bodies).
pub async fn read_json_value(request: Request, limit: usize) -> Result<Value, GatewayError> {
    let bytes = read_json_body(request, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::InvalidJson { detail: e.to_string() })
}

/// Decode the percent-escapes of a URL path segment (RFC 3986): `%2B` is `+`, and a literal `+`
/// stays `+` (turning `+` into a space is a form-encoding rule, not a path rule). A `%` not
/// followed by two hex digits stays as it is; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(segment: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(segment)).into_owned()
}

/// The bytes a percent-encoded string stands for (the same rules as [`percent_decode`]).
pub fn percent_decode_bytes(encoded: &str) -> Vec<u8> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        let escaped = match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => Some((high * 16 + low) as u8),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The `x-gateway-signature` value (budget webhooks, alert webhooks) of `body` sent at `timestamp` (Unix seconds).
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_follows_the_path_rules() {
        assert_eq!(percent_decode("a%2Bb"), "a+b");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("team%20one"), "team one");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%+1%-1"), "%+1%-1");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn an_error_response_carries_the_error_headers() {
        let error = GatewayError::UpstreamStatus { provider: "p".into(), status: 429, retry_after: Some("7".into()), body: None };
        let response = Response::error(&error);
        assert_eq!(response.status, 429);
        assert_eq!(response.header("retry-after"), Some("7"));
        assert_eq!(response.header("content-type"), Some("application/json"));
    }
}

