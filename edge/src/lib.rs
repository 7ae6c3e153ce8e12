//! The platform-agnostic core of the edge AI gateway.
//!
//! Adapters (Cloudflare Workers, Spin) translate their platform's request into [`Request`],
//! implement [`Host`] over their bindings, and call [`Gateway::handle`]. Everything else (routing,
//! configuration, authentication, provider translation, streaming, errors) lives here and
//! compiles to `wasm32-unknown-unknown` with no host SDK types.
//!
//! # Layers
//!
//! Each line is a layer; a module imports only from the layers above its line in this list
//! (lower layers), never from its own line's later entries or from below. `edge/tests/layers.rs`
//! parses every `crate::` path of `edge/src` and fails on an import against this order or on
//! any import cycle between files; docs/architecture.md walks one request through them.
//!
//! 1. `sse`, `config` — wire framing and the validated configuration document: plain data, no
//!    import from the rest of the crate
//! 2. `error` — every failure, its status and its OpenAI-style body
//! 3. `http` — requests, responses, bodies, and the helpers to read them (size caps, JSON)
//! 4. `openai`, `tokenize` — the OpenAI wire types every provider translates to and from, and
//!    the prompt-token estimate
//! 5. `cache` — the exact response cache's pure parts: canonical form and key, per-request
//!    directives, the stored entry, streamed answers recorded and replayed
//! 6. `event` — the usage event and the summaries the stages contribute to it
//! 7. `host`, `testing` — the one trait through which the core reaches the platform (with the
//!    timeout helper), and the in-memory host that implements it for tests
//! 8. `provider`, `carbon`, `key_store`, `counter_store`, `vector_store`, `rollups`, `request_log`, `telemetry`
//!    — what the core says to the outside: provider translation, the live carbon feed, stored
//!    virtual keys, limit counters over a compare-and-swap store (Spin), the semantic cache's
//!    vector index over a table (Spin), usage rollups over the stats store, the request log and
//!    feedback over the request-log store, OpenTelemetry spans and metrics over OTLP
//! 9. `messages` — the Anthropic Messages API as clients speak it, over the providers' pieces
//! 10. `isolate` — per-isolate state with its refresh rules (config, guard detectors, JWKS,
//!     route health, carbon)
//! 11. `pipeline`, `alerts` — the request's phases, one module each, assembled in `pipeline/mod.rs`;
//!     alert rules evaluated in the background and delivered to their webhook
//! 12. `admin_ui`, `admin` — the dashboard's embedded files (`/admin/ui`), and the admin API
//! 13. `gateway` — the entry point: preflight, admin or pipeline, error format, CORS
//!
//! Adapters (`adapters/cloudflare`, `adapters/spin`) sit above all of it and use only what this
//! file re-exports.

pub mod sse;
pub mod config;
pub mod error;
pub mod http;
pub mod openai;
pub mod tokenize;
pub mod cache;
pub mod event;
pub mod host;
pub mod testing;
pub mod provider;
pub mod carbon;
pub mod key_store;
pub mod counter_store;
pub mod vector_store;
pub mod rollups;
pub mod telemetry;
pub mod request_log;
pub mod messages;
pub mod isolate;
pub mod pipeline;
pub mod admin_ui;
pub mod alerts;
pub mod admin;
pub mod gateway;

pub use config::Config;
pub use error::GatewayError;
pub use event::UsageEvent;
pub use gateway::Gateway;
pub use host::{
    Body, BodyError, ByteStream, CachePlacement, FetchError, Host, HostError, OutboundRequest, OutboundResponse, RequestFacts, VectorMatch,
    VectorPartition,
};
pub use http::{Request, Response};
