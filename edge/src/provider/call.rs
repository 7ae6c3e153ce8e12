//! What a provider call takes and gives back: the pipeline's [`ProviderContext`] and
//! [`ResponseContext`] in, a [`Dispatch`] and a [`Translated`] answer (or a
//! [`ProviderErrorBody`]) out.
//!
//! These types sit below every provider module so that the providers and the dispatch in
//! `provider/mod.rs` can share them without importing each other.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::host::{OutboundRequest, OutboundResponse};
use crate::openai::Usage;

/// What the pipeline must do to get the provider's answer.
#[derive(Debug)]
pub enum Dispatch {
    /// Send this request upstream.
    Upstream(OutboundRequest),
    /// The provider answered in-process.
    Local(OutboundResponse),
    /// Run a model through a platform AI binding (Workers AI's `env.AI.run`).
    Binding(BindingCall),
}

/// A call of a platform AI binding: `inputs` is the model's native input object as JSON; a
/// streamed call answers with server-sent events.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingCall {
    pub binding: String,
    pub model: String,
    pub inputs: String,
    pub stream: bool,
}

/// Secrets and time the providers need, resolved by the pipeline from the host.
pub struct ProviderContext<'a> {
    pub provider_name: &'a str,
    pub now_ms: u64,
    pub secret: &'a dyn Fn(&str) -> Option<String>,
}

impl ProviderContext<'_> {
    /// The value of a required secret; a missing or empty one is a gateway configuration error.
    pub fn require(&self, name: &str) -> Result<String, GatewayError> {
        (self.secret)(name).filter(|v| !v.is_empty()).ok_or_else(|| GatewayError::MissingSecret { name: name.to_string() })
    }

    /// The value of a secret that is configured only for some deployments (`None`: not named).
    pub(super) fn optional(&self, name: Option<&str>) -> Result<Option<String>, GatewayError> {
        name.map(|n| self.require(n)).transpose()
    }
}

/// What a response translator knows besides the body.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    /// The id to give the completion (`chatcmpl-...`) when the provider has none of its own.
    pub id: String,
    /// Unix seconds for `created`.
    pub created: u64,
    /// The upstream model name, for `model` when the provider's body does not say.
    pub model: String,
}

/// A provider's whole response translated to OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// An OpenAI `chat.completion` (or embeddings `list`) object, `usage` included.
    pub body: Value,
    pub usage: Option<Usage>,
    /// The provider's own usage object, unchanged, for the usage event.
    pub raw_usage: Option<Value>,
}

/// A provider's error body, reduced to what may be shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderErrorBody {
    /// The provider's error message (shown only for client-caused statuses).
    pub message: String,
    /// The provider's error type or code, e.g. `invalid_request_error`, `INVALID_ARGUMENT`.
    pub kind: Option<String>,
}

impl ProviderErrorBody {
    /// The OpenAI-style error object the gateway forwards for a client-caused status.
    pub fn to_openai(&self) -> Value {
        json!({ "error": { "message": self.message, "type": "invalid_request_error", "param": null, "code": self.kind } })
    }
}
