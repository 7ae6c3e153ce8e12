//! The request pipeline: the phases an API request goes through, in order. Each phase is one
//! module; this file only reads top to bottom as the request's journey.
//!
//! | phase | module | when | may |
//! |---|---|---|---|
//! | endpoint | [`endpoint`] | first, no I/O | refuse unknown paths and methods before the config is read |
//! | config | [`crate::isolate::config`] | per request, cached | a KV read only when the cache is stale |
//! | authenticate | [`authenticate`] | before the body is read | fail with 401; unauthenticated callers cost nothing |
//! | throttle | [`throttle`] | on a failed authentication | count failures per client address; past the limit, delay and 429 (a valid credential is never refused) |
//! | body | [`crate::http::read_json_body`] | after authentication | refuse by content type and size, then parse in the client's API |
//! | authorize | [`authorize`] | once the model is known | refuse unknown or forbidden models |
//! | guard input | [`guard`] | before anything is reserved or sent | rewrite the request's texts, block it, call moderation |
//! | cache | [`cache`] | after the input guard, before limits | answer from the response cache (charged one request, no tokens), wait for an identical request in flight, or mark the answer to be stored |
//! | limit | [`limit`] | before the call | count the prompt once, reserve against limits and budgets; released if the call fails |
//! | route + dispatch | [`dispatch`] | the call | plan targets, send, fall back — never after a response head was accepted |
//! | respond | [`respond`], [`stream`] | after the response head | translate whole or chunk by chunk, guard output, settle usage, fill the cache once the answer completed |
//! | record | [`record`] | when the body ends, however it ends | emit the one usage event |
//!
//! A new stage is one module here and one line in [`chat`] (e.g. a cache lookup before
//! `dispatch`, a cache fill after `respond`). What a stage learns about the request goes into the
//! [`context::RequestContext`] that later stages read, so each fact is computed once.

pub mod authenticate;
pub mod authorize;
pub mod cache;
pub mod context;
pub mod dispatch;
pub mod endpoint;
pub mod guard;
pub mod limit;
pub mod record;
pub mod respond;
pub mod stream;
pub mod throttle;

use crate::cache::EntryKind;
use crate::config::{Config, ModelKind, ProviderConfig};
use crate::error::GatewayError;
use crate::event::Outcome;
use crate::host::Host;
use crate::http::{read_json_body, Request, Response};
use crate::isolate::IsolateState;
use crate::openai::{parse_request, ChatRequest, EmbeddingsRequest};
use crate::provider;

use authenticate::authenticate;
use authorize::authorize;
use context::RequestContext;
use dispatch::{call_embeddings, dispatch_chat};
use endpoint::Endpoint;
use guard::guard_input;
use record::record;
use respond::{respond_chat, tag, whole_response, ClientApi, Reply};

/// Serve one API request (everything but the admin API and CORS preflights).
pub async fn serve<H: Host>(state: &IsolateState, request: Request, host: &H, ctx: &mut RequestContext) -> Result<Response, GatewayError> {
    let endpoint = Endpoint::from_path(&request.path).ok_or_else(|| GatewayError::NotFound { path: request.path.clone() })?;
    ctx.operation = endpoint.operation();
    if request.method != endpoint.allowed_method() {
        return Err(GatewayError::MethodNotAllowed { method: request.method.clone(), allowed: endpoint.allowed_method() });
    }
    let config = state.config.current(host).await?;
    ctx.config = Some(config.clone());
    if endpoint != Endpoint::ListModels && !matches!(endpoint, Endpoint::GetModel(_)) {
        ctx.trace = crate::telemetry::start(&config, &ctx.headers, host);
    }
    ctx.caller = authenticate(state, &config, &request, host).await?;
    ctx.metadata = config.metadata_for(ctx.caller.api_consumer(), ctx.caller.tenant.as_deref());
    let limit = config.limits.max_body_bytes;
    match endpoint {
        Endpoint::ListModels => {
            let response = authorize::list_models(&config, &ctx.caller);
            record(host, ctx, 200, Outcome::Completed, None);
            Ok(response)
        }
        Endpoint::GetModel(id) => {
            let response = authorize::get_model(&config, &ctx.caller, &id)?;
            record(host, ctx, 200, Outcome::Completed, None);
            Ok(response)
        }
        Endpoint::ChatCompletions => {
            let chat_request: ChatRequest = parse_request(&read_json_body(request, limit).await?)?;
            chat(state, &config, chat_request, ClientApi::OpenAi, host, ctx).await
        }
        Endpoint::Messages => {
            let (chat_request, meta) = crate::messages::parse_messages_request(&read_json_body(request, limit).await?)?;
            chat(state, &config, chat_request, ClientApi::Anthropic(meta), host, ctx).await
        }
        Endpoint::Embeddings => {
            let embeddings_request: EmbeddingsRequest = parse_request(&read_json_body(request, limit).await?)?;
            embeddings(state, &config, embeddings_request, host, ctx).await
        }
        Endpoint::Feedback => {
            let body = crate::http::read_json_value(request, limit).await?;
            let answer = crate::request_log::feedback(host, &config, ctx.caller.consumer_key(), ctx.caller.consumer.as_deref(), body).await?;
            record(host, ctx, 200, Outcome::Completed, None);
            Ok(Response::json(200, &answer))
        }
    }
}

/// A chat request (OpenAI or Anthropic client) from authorization to the response.
async fn chat<H: Host>(
    state: &IsolateState,
    config: &Config,
    mut request: ChatRequest,
    client: ClientApi,
    host: &H,
    ctx: &mut RequestContext,
) -> Result<Response, GatewayError> {
    let (route, provider) = authorize(config, ctx, &request.model, ModelKind::Chat, "chat completions")?;
    ctx.log = crate::request_log::capture(config, ctx.caller.api_consumer(), ctx.caller.tenant.as_deref(), &request.model, || serde_json::to_value(&request).ok());
    if let ClientApi::Anthropic(meta) = &client {
        // Anthropic's top_k has no OpenAI equivalent: pass it only to providers that have one.
        if let (Some(k), false) = (meta.top_k, matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock)) {
            request.rest.insert("top_k".into(), k.into());
        }
    }
    ctx.stream = request.is_stream();
    let strip_usage = !request.wants_stream_usage();
    note_route(ctx, route, provider);
    let started = host.now_ms();
    let guard = guard_input(state, config, ctx, route, &mut request, host).await;
    if let (Some(trace), Ok(Some(_)) | Err(_)) = (ctx.trace.as_mut(), &guard) {
        trace.phase(host, "gateway.guard.input", started, crate::telemetry::guard_attrs(ctx.guard.as_ref()));
    }
    let guard = guard?;
    if let Some(trace) = ctx.trace.as_mut() {
        trace.note_request(&request);
    }
    let profile = guard.as_ref().map(|g| g.profile.name.clone());
    let started = host.now_ms();
    let lookup = cache::lookup_chat(state, config, ctx, route, &request, profile.as_deref(), host).await;
    note_lookup(ctx, host, started);
    let fill = match lookup? {
        cache::Lookup::Hit(entry) => {
            let reservation = limit::reserve_request_only(config, ctx, route, host).await?;
            let call = cache::replayed(&entry, route, provider, ctx, ctx.stream, host.now_ms());
            let reply = Reply { client, stream: ctx.stream, strip_usage, guard, reservation, fill: None, from_cache: true };
            let response = respond_chat(config, ctx, call, reply, host).await?;
            return Ok(cache::tag(response, ctx));
        }
        cache::Lookup::Upstream(fill) => Some(fill),
        cache::Lookup::Off => None,
    };
    let reservation = limit::reserve(config, ctx, route, provider, &request, host).await?;
    let pending = limit::PendingResponse::new(reservation, ctx, host);
    let called = dispatch_chat(state, config, ctx, route, provider, &request, host).await;
    let reservation = pending.answered();
    let call = match called {
        Ok(call) => call,
        Err(error) => {
            limit::release(&reservation, host).await;
            return Err(error);
        }
    };
    let reply = Reply { client, stream: ctx.stream, strip_usage, guard, reservation, fill, from_cache: false };
    let response = respond_chat(config, ctx, call, reply, host).await?;
    Ok(cache::tag(response, ctx))
}

/// An embeddings request from authorization to the response (no guards, limits or routing).
async fn embeddings<H: Host>(
    state: &IsolateState,
    config: &Config,
    request: EmbeddingsRequest,
    host: &H,
    ctx: &mut RequestContext,
) -> Result<Response, GatewayError> {
    let (route, provider) = authorize(config, ctx, &request.model, ModelKind::Embeddings, "embeddings")?;
    note_route(ctx, route, provider);
    ctx.log = crate::request_log::capture(config, ctx.caller.api_consumer(), ctx.caller.tenant.as_deref(), &request.model, || serde_json::to_value(&request).ok());
    let started = host.now_ms();
    let lookup = cache::lookup_embeddings(state, config, ctx, route, &request, host).await;
    note_lookup(ctx, host, started);
    let fill = match lookup? {
        cache::Lookup::Hit(entry) => {
            let translated = provider::Translated { body: entry.body, usage: entry.usage, raw_usage: None };
            return whole_response(host, translated, None, ctx, None).map(|r| cache::tag(tag(r, route), ctx));
        }
        cache::Lookup::Upstream(fill) => Some(fill),
        cache::Lookup::Off => None,
    };
    let (translated, forward) = call_embeddings(config, route, provider, &request, host, ctx).await?;
    let stored = fill.map(|fill| (fill, translated.body.clone(), translated.usage));
    let response = whole_response(host, translated, forward, ctx, None)?;
    if let Some((fill, body, usage)) = stored {
        fill.store(host, ctx, EntryKind::Embeddings, body, usage);
    }
    Ok(cache::tag(tag(response, route), ctx))
}

/// Telemetry: the provider about to serve, and whether this caller's content is captured.
fn note_route(ctx: &mut RequestContext, route: &crate::config::ModelRoute, provider: &ProviderConfig) {
    let consumer = ctx.caller.api_consumer().map(str::to_string);
    if let Some(trace) = ctx.trace.as_mut() {
        trace.system = Some(crate::telemetry::provider_system(provider, &route.provider));
        trace.capture_content = trace.settings.captures_content(consumer.as_deref(), Some(&route.name));
    }
}

/// Telemetry: the cache lookup's span, when a cache applied.
fn note_lookup<H: Host>(ctx: &mut RequestContext, host: &H, started: u64) {
    let status = ctx.cache.as_ref().map(|c| c.status.header_value());
    if let (Some(trace), Some(status)) = (ctx.trace.as_mut(), status) {
        trace.phase(host, "gateway.cache.lookup", started, vec![("gateway.cache.status", status.into())]);
    }
}
