//! Who a limit counts for, and the stable name of the counter object that holds it.
//!
//! A limit is scoped by one or more dimensions (`consumer`, `tenant` + `model`, a request
//! header...). For one request, the dimensions resolve to a [`Subject`] whose
//! [`key`](Subject::key) names one counter object: on Workers one Durable Object
//! (`idFromName(subject.key())`), in memory one map entry. Every limit with the same scope (say
//! `consumer:alice` per minute, per day, and her monthly budget) lives in that one object, so a
//! request's reservation against all of them is atomic and costs one round trip per scope.
//! There is never a global object: a scope must name at least one dimension.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One dimension a limit can be scoped by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeDim {
    /// The API key used, by its identifier (e.g. a prefix of its SHA-256), never the key itself.
    Key,
    /// The authenticated consumer.
    Consumer,
    /// The consumer's tenant (organisation).
    Tenant,
    /// The requested model, as configured (not the provider's dated name).
    Model,
    /// The value of a request header (name compared case-insensitively, stored lowercased).
    Header(String),
}

impl ScopeDim {
    fn label(&self) -> String {
        match self {
            ScopeDim::Key => "key".into(),
            ScopeDim::Consumer => "consumer".into(),
            ScopeDim::Tenant => "tenant".into(),
            ScopeDim::Model => "model".into(),
            ScopeDim::Header(name) => format!("header.{}", escape(name)),
        }
    }
}

/// Why a scope could not be built or resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// A scope with no dimension would be one global counter object, which never scales.
    Empty,
    /// A header dimension with an empty name.
    EmptyHeaderName,
    /// The request does not carry this dimension (no tenant, header absent or empty...). The
    /// pipeline decides: usually the limit does not apply to anonymous traffic, but a header-scoped
    /// limit that callers could escape by omitting the header should be configured to deny.
    Missing(ScopeDim),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::Empty => f.write_str("a limit scope needs at least one dimension"),
            ScopeError::EmptyHeaderName => f.write_str("a header scope needs a header name"),
            ScopeError::Missing(dim) => write!(f, "the request has no {}", dim.label()),
        }
    }
}

/// The dimensions of a configured limit, in canonical order (key, consumer, tenant, model, then
/// headers by name), without duplicates: two configurations listing the same dimensions in a
/// different order name the same counter object. Built only through [`Scope::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    dims: Vec<ScopeDim>,
}

impl Scope {
    pub fn new(dims: impl IntoIterator<Item = ScopeDim>) -> Result<Scope, ScopeError> {
        let mut dims: Vec<ScopeDim> = dims
            .into_iter()
            .map(|d| match d {
                ScopeDim::Header(name) => ScopeDim::Header(name.trim().to_ascii_lowercase()),
                other => other,
            })
            .collect();
        if dims.iter().any(|d| matches!(d, ScopeDim::Header(n) if n.is_empty())) {
            return Err(ScopeError::EmptyHeaderName);
        }
        dims.sort();
        dims.dedup();
        if dims.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Scope { dims })
    }

    pub fn dims(&self) -> &[ScopeDim] {
        &self.dims
    }

    /// The subject this request counts against.
    pub fn resolve(&self, facts: &RequestFacts<'_>) -> Result<Subject, ScopeError> {
        let mut key = String::new();
        for dim in &self.dims {
            let value = match dim {
                ScopeDim::Key => facts.key_id,
                ScopeDim::Consumer => facts.consumer,
                ScopeDim::Tenant => facts.tenant,
                ScopeDim::Model => facts.model,
                ScopeDim::Header(name) => facts.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()),
            }
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ScopeError::Missing(dim.clone()))?;
            if !key.is_empty() {
                key.push('|');
            }
            key.push_str(&dim.label());
            key.push(':');
            key.push_str(&escape(value));
        }
        Ok(Subject { key })
    }
}

/// What the request presented, for resolving scopes. Borrowed, nothing copied until a scope
/// resolves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The key's identifier (a hash prefix), never the presented key.
    pub key_id: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Request headers as (name, value); names match case-insensitively, the first match wins.
    pub headers: &'a [(&'a str, &'a str)],
}

/// One limited subject: the name of one counter object (one Durable Object per subject).
///
/// The key reads like `consumer:alice|model:gpt-4o` or `tenant:acme|header.x-team:blue`. Values are
/// percent-escaped (`%`, `|`, `:`, control characters) so no two different subjects share a key.
/// It does not include the window or metric: all windows and metrics of one scope share the
/// object, so one request makes one atomic reservation per scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subject {
    key: String,
}

impl Subject {
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' | '|' | ':' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            key_id: Some("k_3f2a"),
            consumer: Some("alice"),
            tenant: Some("acme"),
            model: Some("gpt-4o"),
            headers: &[("X-Team", " blue "), ("x-empty", "")],
        }
    }

    #[test]
    fn subject_keys_are_canonical_and_stable() {
        let a = Scope::new([ScopeDim::Model, ScopeDim::Tenant]).unwrap();
        let b = Scope::new([ScopeDim::Tenant, ScopeDim::Model, ScopeDim::Tenant]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.resolve(&facts()).unwrap().key(), "tenant:acme|model:gpt-4o");
        let h = Scope::new([ScopeDim::Header("X-Team".into()), ScopeDim::Consumer]).unwrap();
        assert_eq!(h.resolve(&facts()).unwrap().key(), "consumer:alice|header.x-team:blue");
        let k = Scope::new([ScopeDim::Key]).unwrap();
        assert_eq!(k.resolve(&facts()).unwrap().to_string(), "key:k_3f2a");
    }

    #[test]
    fn values_cannot_forge_another_subject() {
        let scope = Scope::new([ScopeDim::Tenant, ScopeDim::Model]).unwrap();
        let evil = RequestFacts { tenant: Some("acme|model:x"), model: Some("y"), ..facts() };
        let plain = RequestFacts { tenant: Some("acme"), model: Some("x|model:y"), ..facts() };
        let (a, b) = (scope.resolve(&evil).unwrap(), scope.resolve(&plain).unwrap());
        assert_ne!(a, b);
        assert_eq!(a.key(), "tenant:acme%7Cmodel%3Ax|model:y");
        assert_eq!(Scope::new([ScopeDim::Consumer]).unwrap().resolve(&RequestFacts { consumer: Some("a\nb%"), ..facts() }).unwrap().key(), "consumer:a%0Ab%25");
    }

    #[test]
    fn empty_scopes_and_missing_dimensions_are_errors() {
        assert_eq!(Scope::new([]), Err(ScopeError::Empty));
        assert_eq!(Scope::new([ScopeDim::Header(" ".into())]), Err(ScopeError::EmptyHeaderName));
        let anon = RequestFacts::default();
        assert_eq!(Scope::new([ScopeDim::Consumer]).unwrap().resolve(&anon), Err(ScopeError::Missing(ScopeDim::Consumer)));
        let empty_header = Scope::new([ScopeDim::Header("x-empty".into())]).unwrap();
        assert_eq!(empty_header.resolve(&facts()), Err(ScopeError::Missing(ScopeDim::Header("x-empty".into()))));
        assert_eq!(ScopeError::Missing(ScopeDim::Tenant).to_string(), "the request has no tenant");
    }
}
