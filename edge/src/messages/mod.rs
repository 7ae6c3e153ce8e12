//! The inbound Anthropic Messages API (`POST /v1/messages`), as pure translation.
//!
//! Clients written against the official Anthropic SDKs talk to the gateway unchanged; inside,
//! everything is OpenAI Chat Completions, so the request is routed to any provider. This module
//! has the three translations the route needs and nothing else (no I/O):
//!
//! - [`parse_messages_request`] (`request`): an Anthropic request, validated the way Anthropic
//!   validates it (errors name the field as a dotted path such as `messages.0.content.1.source`),
//!   becomes an OpenAI [`ChatRequest`](crate::openai::ChatRequest) plus the [`MessagesMeta`] the
//!   response side needs.
//! - [`to_anthropic_message`] (`response`): an OpenAI `chat.completion` becomes an Anthropic
//!   `message`.
//! - [`AnthropicEventEncoder`] (`events`): the OpenAI `chat.completion.chunk` stream becomes
//!   Anthropic's stream events (`message_start`, content blocks, `message_delta`, `message_stop`).
//!
//! Errors use Anthropic's body (`{"type":"error","error":{"type","message"}}`) via
//! [`anthropic_error_body`] (`error`).
//!
//! Wire formats follow Anthropic's API reference (Messages, Streaming Messages, Errors) and the
//! types of the official TypeScript SDK (`@anthropic-ai/sdk`, `resources/messages/messages.ts`,
//! and `lib/MessageStream.ts` for how it accumulates stream events).
//!
//! Deliberate limits, each answered with a clear `invalid_request_error` rather than silently
//! mistranslated: server tools (web search, code execution, ...), PDF documents, Files API
//! sources, and block types that only Anthropic's own servers produce. Thinking blocks sent back
//! by the client are dropped (only Anthropic can verify their signatures), and no thinking blocks
//! are produced (an Anthropic thinking block requires a signature the gateway cannot make).
//!
//! Files depend downward only: `events` uses `response` and `error`; `request`, `response` and
//! `error` stand alone.

mod error;
mod events;
mod request;
mod response;

pub use error::{anthropic_error_body, anthropic_error_type};
pub use events::AnthropicEventEncoder;
pub use request::{parse_messages_request, MessagesMeta};
pub use response::to_anthropic_message;
