//! Providers: how a validated request becomes an upstream call (or a local answer), and how the
//! upstream's answer becomes an OpenAI-shaped one.
//!
//! Each provider is translation as data in, data out: it builds an [`OutboundRequest`], turns a
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
//! - a `StreamDecoder` implementation
//! - `error_message(status, body) -> Option<ProviderErrorBody>` for the provider's error bodies
//! - `embeddings_request` / `embeddings_response` where the provider has embeddings.

pub mod anthropic;
pub mod bedrock;
pub mod chunk;
pub mod cohere;
pub mod content;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod workers_ai;

use serde_json::{json, Map, Value};

use crate::config::{ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::host::{OutboundRequest, OutboundResponse};
use crate::openai::{ChatRequest, EmbeddingsRequest, Usage};

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

    fn optional(&self, name: Option<&str>) -> Result<Option<String>, GatewayError> {
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

/// An OpenAI assistant message from a provider's answer: `content` is null when the answer is
/// only tool calls, `tool_calls` and `reasoning_content` appear only when there are some.
pub fn assistant_message(text: String, reasoning: &str, calls: Vec<Value>) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    message
}

/// An OpenAI embeddings `list` with the provider's rows and usage (`prompt_tokens` 0 when the
/// provider reports none).
pub fn embeddings_list(data: Vec<Value>, ctx: &ResponseContext, usage: Option<Usage>, raw_usage: Option<Value>) -> Translated {
    let prompt = usage.map_or(0, |u| u.input_tokens);
    Translated {
        body: json!({
            "object": "list",
            "data": data,
            "model": ctx.model,
            "usage": { "prompt_tokens": prompt, "total_tokens": prompt },
        }),
        usage,
        raw_usage,
    }
}

/// Why a provider's stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// The provider sent an error event inside the stream. `kind` is the provider's error type
    /// (e.g. `overloaded_error`), never its message text.
    Provider { kind: String },
    /// Bytes that are not the provider's stream format.
    Malformed { detail: String },
    /// The body ended before the provider's terminal event.
    Truncated,
}

/// Incremental translation of one provider's streamed response into OpenAI chunk objects.
///
/// Implementations must be chunking-independent: the chunks produced for a byte stream are the
/// same whatever the byte boundaries. The first chunk with content carries `role: "assistant"`;
/// each tool call keeps one `index` for all its deltas; the last chunk has `choices: []` and the
/// `usage` object (OpenAI's final usage chunk), and the stream stage strips it when the client
/// did not ask for usage.
pub trait StreamDecoder {
    /// Feed upstream bytes; append translated chunks to `out`.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault>;
    /// The upstream body ended: flush and check the stream ended properly.
    fn finish(&mut self, out: &mut Vec<Value>) -> Result<(), StreamFault>;
    /// Normalised usage, once the provider has reported it.
    fn usage(&self) -> Option<Usage>;
    /// The provider's own usage object(s), unchanged.
    fn raw_usage(&self) -> Option<Value>;
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

/// The decoder for a provider's stream; `None` means the stream already is OpenAI SSE.
pub fn stream_decoder(provider: &ProviderConfig, ctx: &ResponseContext) -> Option<Box<dyn StreamDecoder>> {
    match provider {
        ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock => None,
        ProviderConfig::Anthropic(_) => Some(Box::new(anthropic::AnthropicStream::new(ctx.clone()))),
        ProviderConfig::Gemini(_) => Some(Box::new(gemini::GeminiStream::new(ctx.clone()))),
        ProviderConfig::Bedrock(_) => Some(Box::new(bedrock::BedrockStream::new(ctx.clone()))),
        ProviderConfig::Cohere(_) => Some(Box::new(cohere::CohereStream::new(ctx.clone()))),
        ProviderConfig::WorkersAiBinding(_) => Some(Box::new(workers_ai::WorkersAiStream::new(ctx.clone()))),
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

/// Keep only the members of `rest` whose names are in `allowed` (provider-specific parameters
/// the target understands), for translators that pass some through.
pub fn pass_through(rest: &Map<String, Value>, allowed: &[&str], into: &mut Map<String, Value>) {
    for key in allowed {
        if let Some(value) = rest.get(*key) {
            into.insert((*key).to_string(), value.clone());
        }
    }
}

/// Helpers the providers' stream tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{StreamDecoder, StreamFault};
    use serde_json::Value;

    /// Feed `chunks` to `decoder` (stopping at the first fault), then finish it.
    pub fn drive<D: StreamDecoder>(mut decoder: D, chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, D) {
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(fault) = decoder.push(chunk, &mut out) {
                return (out, Err(fault), decoder);
            }
        }
        let result = decoder.finish(&mut out);
        (out, result, decoder)
    }

    /// The first choice's delta of every chunk that has one.
    pub fn deltas(out: &[Value]) -> Vec<Value> {
        out.iter().filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone())).collect()
    }
}
