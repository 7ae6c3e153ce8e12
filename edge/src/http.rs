//! The plain request and response types the adapters translate to and from.

use crate::host::{Body, RequestFacts};

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
}

/// The first value of a header by case-insensitive name.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
