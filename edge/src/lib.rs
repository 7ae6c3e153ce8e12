//! The platform-agnostic core of the edge AI gateway.
//!
//! Adapters (Cloudflare Workers, Spin) translate their platform's request into [`Request`],
//! implement [`Host`] over their bindings, and call [`Gateway::handle`]. Everything else (routing,
//! configuration, authentication, provider translation, streaming, errors) lives here and
//! compiles to `wasm32-unknown-unknown` with no host SDK types.

pub mod admin;
pub mod carbon;
pub mod config;
pub mod error;
pub mod event;
pub mod gateway;
pub mod guard;
pub mod host;
pub mod http;
pub mod messages;
pub mod openai;
pub mod provider;
pub mod quota;
pub mod sse;
pub mod stream;
pub mod testing;
pub mod tokenize;

pub use config::Config;
pub use error::GatewayError;
pub use event::UsageEvent;
pub use gateway::Gateway;
pub use host::{Body, BodyError, ByteStream, FetchError, Host, HostError, OutboundRequest, OutboundResponse, RequestFacts};
pub use http::{Request, Response};
