//! Providers: how a validated request becomes an upstream call (or a local answer), and how the
//! upstream's answer becomes an OpenAI-shaped one.
//!
//! Each provider is translation as data in, data out: it builds an [`OutboundRequest`](crate::host::OutboundRequest), turns a
//! whole response body into an OpenAI `chat.completion` ([`Translated`]), and decodes its stream
//! into OpenAI `chat.completion.chunk` objects ([`StreamDecoder`]). No provider sends anything
//! itself: the pipeline sends through the host, applies timeouts, fallbacks and guards, and
//! encodes the result for the client (OpenAI chunks, or Anthropic events on `/v1/messages`).
//!
//! The OpenAI family (OpenAI, Mistral, Groq, Together, DeepSeek, Ollama, vLLM, Workers AI, any
//! compatible URL) is forwarded nearly untouched; the others translate both ways.
//!
//! Module shape, the same for every translating provider:
//! - `chat_request(config, route, &ChatRequest, &Credentials) -> Result<OutboundRequest, GatewayError>`
//! - `chat_response(body, &ResponseContext) -> Result<Translated, GatewayError>`
//! - a stream decoder: an [`EventTranslator`](decode::EventTranslator) for its events, run by
//!   [`FramedDecoder`](decode::FramedDecoder) over its framing
//! - `error_message(status, body) -> Option<ProviderErrorBody>` for the provider's error bodies
//! - `embeddings_request` / `embeddings_response` where the provider has embeddings.
//!
//! Module layout: this file only dispatches on the configured provider. What the providers
//! share lies in files below them, which import no provider and not this file: [`call`] (the
//! types a call takes and gives back), [`decode`] (the stream decoder and the one framing loop),
//! [`content`] (reading the OpenAI request), [`turns`] (the alternating turns of blocks Anthropic
//! and Bedrock share), [`url`], [`answer`] (the OpenAI answer shapes) and [`chunk`] (writing
//! OpenAI chunks), and [`scrub`] (what every piece of upstream text passes before a client sees
//! it). The shared types are re-exported here, so `crate::provider::Translated` and
//! the like keep working for the rest of the crate.

pub mod anthropic;
pub mod answer;
pub mod bedrock;
pub mod call;
pub mod chunk;
pub mod cohere;
pub mod content;
pub mod decode;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod scrub;
#[cfg(test)]
pub(crate) mod test_support;
pub mod turns;
pub mod url;
pub mod workers_ai;

pub use answer::{assistant_message, embeddings_list};
pub use call::{BindingCall, Dispatch, ProviderContext, ProviderErrorBody, ResponseContext, Translated};
pub use content::pass_through;
pub use decode::{StreamDecoder, StreamFault};
pub use scrub::Scrub;

use crate::config::{ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::openai::{ChatRequest, EmbeddingsRequest};

pub fn chat(
    provider: &ProviderConfig,
    route: &ModelRoute,
    request: ChatRequest,
    ctx: &ProviderContext<'_>,
) -> Result<Dispatch, GatewayError> {
    let upstream = match provider {
        ProviderConfig::Mock => return Ok(Dispatch::Local(mock::chat(route, &request, ctx.now_ms))),
        ProviderConfig::WorkersAiBinding(config) => {
            let inputs = workers_ai::chat_input(&request)?;
            return Ok(Dispatch::Binding(BindingCall {
                binding: config.binding.clone(),
                model: workers_ai::model(route).to_string(),
                inputs: inputs.to_string(),
                stream: request.is_stream(),
            }));
        }
        ProviderConfig::OpenAi(config) => {
            let key = ctx.optional(config.api_key_secret.as_deref())?;
            openai::chat_request(config, route, request, key.as_deref())
        }
        ProviderConfig::Azure(config) => {
            let key = ctx.require(&config.api_key_secret)?;
            openai::azure_chat_request(config, route, request, &key)
        }
        ProviderConfig::Anthropic(config) => anthropic::chat_request(config, route, &request, &ctx.require(&config.api_key_secret)?)?,
        ProviderConfig::Gemini(config) => gemini::chat_request(config, route, &request, &gemini::credential(config, ctx)?)?,
        ProviderConfig::Bedrock(config) => {
            bedrock::chat_request(config, route, &request, &bedrock::credentials(config, ctx)?, ctx.now_ms)?
        }
        ProviderConfig::Cohere(config) => cohere::chat_request(config, route, &request, &ctx.require(&config.api_key_secret)?)?,
    };
    Ok(Dispatch::Upstream(upstream))
}

pub fn embeddings(
    provider: &ProviderConfig,
    route: &ModelRoute,
    request: EmbeddingsRequest,
    ctx: &ProviderContext<'_>,
) -> Result<Dispatch, GatewayError> {
    let upstream = match provider {
        ProviderConfig::Mock => return Ok(Dispatch::Local(mock::embeddings(route, &request))),
        ProviderConfig::WorkersAiBinding(config) => {
            let inputs = workers_ai::embeddings_input(&request)?;
            return Ok(Dispatch::Binding(BindingCall {
                binding: config.binding.clone(),
                model: workers_ai::model(route).to_string(),
                inputs: inputs.to_string(),
                stream: false,
            }));
        }
        ProviderConfig::OpenAi(config) => {
            let key = ctx.optional(config.api_key_secret.as_deref())?;
            openai::embeddings_request(config, route, request, key.as_deref())
        }
        ProviderConfig::Azure(config) => {
            let key = ctx.require(&config.api_key_secret)?;
            openai::azure_embeddings_request(config, route, request, &key)
        }
        ProviderConfig::Gemini(config) => gemini::embeddings_request(config, route, &request, &gemini::credential(config, ctx)?)?,
        ProviderConfig::Bedrock(config) => {
            bedrock::embeddings_request(config, route, &request, &bedrock::credentials(config, ctx)?, ctx.now_ms)?
        }
        ProviderConfig::Cohere(config) => cohere::embeddings_request(config, route, &request, &ctx.require(&config.api_key_secret)?)?,
        ProviderConfig::Anthropic(_) => {
            return Err(GatewayError::UnsupportedOperation { model: route.name.clone(), operation: "embeddings" })
        }
    };
    Ok(Dispatch::Upstream(upstream))
}

/// Translate a successful whole chat response; `None` means the body already is OpenAI's shape.
pub fn chat_response(provider: &ProviderConfig, body: &[u8], ctx: &ResponseContext) -> Option<Result<Translated, GatewayError>> {
    match provider {
        ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock => None,
        ProviderConfig::Anthropic(_) => Some(anthropic::chat_response(body, ctx)),
        ProviderConfig::Gemini(_) => Some(gemini::chat_response(body, ctx)),
        ProviderConfig::Bedrock(_) => Some(bedrock::chat_response(body, ctx)),
        ProviderConfig::Cohere(_) => Some(cohere::chat_response(body, ctx)),
        ProviderConfig::WorkersAiBinding(_) => Some(workers_ai::chat_response(body, ctx)),
    }
}

/// Translate a successful embeddings response; `None` means the body already is OpenAI's shape.
pub fn embeddings_response(
    provider: &ProviderConfig,
    request: &EmbeddingsRequest,
    body: &[u8],
    ctx: &ResponseContext,
) -> Option<Result<Translated, GatewayError>> {
    match provider {
        ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock | ProviderConfig::Anthropic(_) => None,
        ProviderConfig::Gemini(_) => Some(gemini::embeddings_response(request, body, ctx)),
        ProviderConfig::Bedrock(_) => Some(bedrock::embeddings_response(request, body, ctx)),
        ProviderConfig::Cohere(_) => Some(cohere::embeddings_response(request, body, ctx)),
        ProviderConfig::WorkersAiBinding(_) => Some(workers_ai::embeddings_response(request, body, ctx)),
    }
}

/// The decoder for a provider's stream; `None` means the stream already is OpenAI SSE. One event
/// may hold at most `max_event_bytes` (where the provider's framing lets the gateway choose).
pub fn stream_decoder(provider: &ProviderConfig, ctx: &ResponseContext, max_event_bytes: usize) -> Option<Box<dyn StreamDecoder>> {
    let ctx = ctx.clone();
    let limit = max_event_bytes;
    match provider {
        ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock => None,
        ProviderConfig::Anthropic(_) => Some(Box::new(anthropic::AnthropicStream::limited(ctx, limit))),
        ProviderConfig::Gemini(_) => Some(Box::new(gemini::GeminiStream::limited(ctx, limit))),
        ProviderConfig::Bedrock(_) => Some(Box::new(bedrock::BedrockStream::limited(ctx, limit))),
        ProviderConfig::Cohere(_) => Some(Box::new(cohere::CohereStream::limited(ctx, limit))),
        ProviderConfig::WorkersAiBinding(_) => Some(Box::new(workers_ai::WorkersAiStream::limited(ctx, limit))),
    }
}

/// The provider's error body, reduced to a message and type; `None` when it cannot be read.
pub fn error_body(provider: &ProviderConfig, status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    match provider {
        ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock => openai::error_message(status, body),
        ProviderConfig::WorkersAiBinding(_) => openai::error_message(status, body),
        ProviderConfig::Anthropic(_) => anthropic::error_message(status, body),
        ProviderConfig::Gemini(_) => gemini::error_message(status, body),
        ProviderConfig::Bedrock(_) => bedrock::error_message(status, body),
        ProviderConfig::Cohere(_) => cohere::error_message(status, body),
    }
}
