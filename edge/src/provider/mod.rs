//! Providers: how a validated request becomes an upstream call (or a local answer).
//!
//! Each provider is translation as data in, data out: it builds an [`OutboundRequest`] and never
//! sends anything itself. The pipeline sends it through the host, applies timeouts, and hands
//! the answer to the stream/response stage. The built-in `mock` provider answers locally with a
//! response shaped exactly like an upstream's, so everything after dispatch is shared.

pub mod mock;
pub mod openai;

use crate::config::{ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::host::{OutboundRequest, OutboundResponse};
use crate::openai::{ChatRequest, EmbeddingsRequest};

/// What the pipeline must do to get the provider's answer.
#[derive(Debug)]
pub enum Dispatch {
    /// Send this request upstream.
    Upstream(OutboundRequest),
    /// The provider answered in-process.
    Local(OutboundResponse),
}

/// Secrets and time the providers need, resolved by the pipeline from the host.
pub struct ProviderContext<'a> {
    pub provider_name: &'a str,
    pub now_ms: u64,
    pub secret: &'a dyn Fn(&str) -> Option<String>,
}

impl ProviderContext<'_> {
    fn api_key(&self, secret_name: Option<&str>) -> Result<Option<String>, GatewayError> {
        match secret_name {
            None => Ok(None),
            Some(name) => (self.secret)(name)
                .filter(|v| !v.is_empty())
                .map(Some)
                .ok_or_else(|| GatewayError::MissingSecret { name: name.to_string() }),
        }
    }
}

pub fn chat(
    provider: &ProviderConfig,
    route: &ModelRoute,
    request: ChatRequest,
    ctx: &ProviderContext<'_>,
) -> Result<Dispatch, GatewayError> {
    match provider {
        ProviderConfig::OpenAi(config) => {
            let key = ctx.api_key(config.api_key_secret.as_deref())?;
            Ok(Dispatch::Upstream(openai::chat_request(config, route, request, key.as_deref())))
        }
        ProviderConfig::Mock => Ok(Dispatch::Local(mock::chat(route, &request, ctx.now_ms))),
    }
}

pub fn embeddings(
    provider: &ProviderConfig,
    route: &ModelRoute,
    request: EmbeddingsRequest,
    ctx: &ProviderContext<'_>,
) -> Result<Dispatch, GatewayError> {
    match provider {
        ProviderConfig::OpenAi(config) => {
            let key = ctx.api_key(config.api_key_secret.as_deref())?;
            Ok(Dispatch::Upstream(openai::embeddings_request(config, route, request, key.as_deref())))
        }
        ProviderConfig::Mock => Ok(Dispatch::Local(mock::embeddings(route, &request))),
    }
}
