//! What the pipeline knows about one request, computed once and read by every later stage:
//! who is calling, from where, for which model, with how many prompt tokens; and what the
//! stages did, for the usage event ([`crate::pipeline::record`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{CacheSummary, GuardSummary, QuotaSummary, RouteSummary};
use crate::http::{Request, RequestFacts};
use crate::openai::{ChatRequest, Usage};

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The consumer id (API key) or the token's consumer claim; `None` when auth is off.
    pub consumer: Option<String>,
    pub tenant: Option<String>,
    pub tier: Option<String>,
    /// An identifier of the credential (never the credential): a digest prefix of an API key.
    pub key_id: Option<String>,
    /// The identity came from a bearer JWT (its tiers decide model access).
    pub via_jwt: bool,
    /// The issuer (`iss`) of the token a JWT identity came from (empty when the token has none).
    pub issuer: Option<String>,
    /// A virtual key's own model allow-list: narrows what its consumer may use.
    pub key_models: Option<policy::access::ModelAccess>,
}

impl Caller {
    /// The consumer id when it comes from the configuration (API keys), for per-consumer settings.
    pub fn api_consumer(&self) -> Option<&str> {
        if self.via_jwt {
            None
        } else {
            self.consumer.as_deref()
        }
    }

    /// The name per-consumer state (rate limits, budgets, routing conditions) is kept under: a
    /// configured consumer's id, or `jwt:<issuer>:<subject>` for a token's subject. A token whose
    /// `sub` equals a configured consumer's id therefore never shares that consumer's counters;
    /// only `auth.jwt.consumer_map` may make a token act as a configured consumer.
    pub fn consumer_key(&self) -> Option<String> {
        let consumer = self.consumer.as_deref()?;
        Some(match (self.via_jwt, &self.issuer) {
            (true, issuer) => format!("jwt:{}:{consumer}", issuer.as_deref().unwrap_or("")),
            (false, _) => consumer.to_string(),
        })
    }
}

/// The request's facts and what the stages recorded of it.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub operation: &'static str,
    pub started_ms: u64,
    /// Where the request entered the network, as the platform reports it.
    pub location: RequestFacts,
    /// The inbound headers (routing conditions, header-scoped limits, the residency header).
    pub headers: Vec<(String, String)>,
    pub caller: Caller,
    /// The consumer's and tenant's configured metadata (routing conditions, reporting).
    pub metadata: BTreeMap<String, String>,
    /// The model the client asked for, once read from the body.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    /// The prompt's estimated tokens, counted once after the input guard (admission and routing
    /// both read it).
    pub prompt_tokens: Option<u64>,
    pub usage: Option<Usage>,
    /// The provider's own usage object, when a translating provider reported one.
    pub provider_usage: Option<Value>,
    pub quota: Option<QuotaSummary>,
    pub route: Option<RouteSummary>,
    pub guard: Option<GuardSummary>,
    /// What the response cache did (none: no cache applied).
    pub cache: Option<CacheSummary>,
    /// Milliseconds to the upstream's response head, once known.
    pub latency_ms: Option<u64>,
    /// What the operator's log gets about a failure the client sees only generically.
    pub error_detail: Option<String>,
    /// The configuration in force once it was read (the record phase reads `stats` from it).
    pub config: Option<std::rc::Rc<crate::config::Config>>,
    /// The request's OpenTelemetry trace, when `telemetry` is configured (docs/observability.md).
    pub trace: Option<Box<crate::telemetry::Trace>>,
    /// The bodies kept for the request log, when a `request_log` setting applies (docs/observability.md).
    pub log: Option<crate::request_log::LogCapture>,
}

impl RequestContext {
    /// The context of a request that has just arrived.
    pub fn new(request_id: String, started_ms: u64, request: &Request) -> Self {
        RequestContext {
            request_id,
            operation: "unknown",
            started_ms,
            location: request.facts.clone(),
            headers: request.headers.clone(),
            caller: Caller::default(),
            metadata: BTreeMap::new(),
            model: None,
            provider: None,
            upstream_model: None,
            stream: false,
            prompt_tokens: None,
            usage: None,
            provider_usage: None,
            quota: None,
            route: None,
            guard: None,
            cache: None,
            latency_ms: None,
            error_detail: None,
            config: None,
            trace: None,
            log: None,
        }
    }

    /// The prompt's estimated tokens, counted on first need and then reused. `exact` asks for
    /// the tokenizer where the build has one (admission against token limits and budgets); a
    /// count made earlier is reused whichever way it was made.
    pub fn prompt_tokens(&mut self, request: &ChatRequest, exact: bool) -> u64 {
        *self.prompt_tokens.get_or_insert_with(|| crate::tokenize::chat_input_tokens(request, exact).0)
    }
}

#[cfg(test)]
mod tests {
    use super::Caller;

    #[test]
    fn token_subjects_are_keyed_by_issuer_and_never_as_a_configured_consumer() {
        let configured = Caller { consumer: Some("alice".into()), ..Caller::default() };
        let token = Caller { consumer: Some("alice".into()), via_jwt: true, issuer: Some("https://idp.example".into()), ..Caller::default() };
        let other_issuer = Caller { issuer: Some("https://other.example".into()), ..token.clone() };
        assert_eq!(configured.consumer_key().as_deref(), Some("alice"));
        assert_eq!(token.consumer_key().as_deref(), Some("jwt:https://idp.example:alice"));
        assert_ne!(token.consumer_key(), other_issuer.consumer_key());
        assert_eq!(Caller::default().consumer_key(), None);
    }
}
