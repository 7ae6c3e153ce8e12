//! The route + dispatch phase: plan where the request goes (a multi-target route: residency
//! first, then health, conditions, canary and the strategy), have the provider build its call,
//! send it through the host under the provider's timeout, check the status, and fall back to the
//! next target on the failures the route names.
//!
//! Nothing is retried once a response has been accepted, so a stream never falls back after its
//! first byte reached the client. A non-streamed answer is accepted only once its whole body
//! (at most `limits.max_upstream_body_bytes`) has been read and is JSON, so an HTML error page
//! sent with a 200 falls back like a 5xx. Upstream error texts are never forwarded where they
//! may echo credentials (401/403/5xx); forwardable client errors are translated to OpenAI's
//! shape and pass the call's [`Scrub`] first.

use std::cell::RefCell;

use serde_json::Value;

use crate::config::{Config, ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::event::RouteSummary;
use crate::host::{with_timeout, Body, FetchError, Host, OutboundResponse};
use crate::http::{read_body, BodyReadError};
use crate::isolate::IsolateState;
use crate::openai::{ChatRequest, EmbeddingsRequest, Usage};
use crate::pipeline::context::RequestContext;
use crate::provider::{self, Dispatch, ProviderContext, ResponseContext, Scrub, Translated};

/// Largest upstream error body the gateway reads.
const MAX_UPSTREAM_ERROR_BODY: usize = 64 * 1024;

/// A call whose response head was accepted: who answered and how to read the rest.
pub struct Dispatched<'c> {
    /// The route as served: a routed model's target replaces the provider and upstream model.
    pub route: ModelRoute,
    pub provider: &'c ProviderConfig,
    pub upstream: OutboundResponse,
    /// When reading a whole body must have finished.
    pub deadline: u64,
    /// `x-gateway-route`: where a multi-target model's request went and why.
    pub route_header: Option<String>,
    /// Takes the call's credentials out of upstream text (the stream's error events).
    pub scrub: Scrub,
}

/// A provider's answer the gateway accepted.
pub struct Accepted {
    /// A non-streamed answer's body has been read whole and checked to be JSON.
    pub upstream: OutboundResponse,
    /// When reading the rest of the body must have finished.
    pub deadline: u64,
    /// Takes the call's credentials out of upstream text.
    pub scrub: Scrub,
}

/// Send a chat request: through its route's plan when the model has targets, else straight to
/// its provider.
pub async fn dispatch_chat<'c, H: Host>(
    state: &IsolateState,
    config: &'c Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    provider: &'c ProviderConfig,
    request: &ChatRequest,
    host: &H,
) -> Result<Dispatched<'c>, GatewayError> {
    match config.routes.get(&route.name) {
        Some(spec) => routed_call(state, config, ctx, route, spec, request, host).await,
        None => {
            let build = |call: &ProviderContext<'_>| provider::chat(provider, route, request.clone(), call);
            let Accepted { upstream, deadline, scrub } = call_provider(config, route, host, ctx, request.is_stream(), build).await?;
            Ok(Dispatched { route: route.clone(), provider, upstream, deadline, route_header: None, scrub })
        }
    }
}

/// Have the provider build its call, send it within the provider's timeout, check the status
/// and (unless the call `streams`) read and check the whole body. The credentials the call read
/// and sent make its [`Scrub`]. With telemetry on, the call carries a `traceparent` whose parent
/// is this attempt's span, and the attempt is recorded in the trace.
pub async fn call_provider<H: Host>(
    config: &Config,
    route: &ModelRoute,
    host: &H,
    ctx: &mut RequestContext,
    streams: bool,
    build: impl FnOnce(&ProviderContext<'_>) -> Result<Dispatch, GatewayError>,
) -> Result<Accepted, GatewayError> {
    let Some((span_id, headers)) = ctx.trace.as_ref().map(|trace| {
        let span_id = crate::telemetry::span_id(host);
        (span_id, trace.propagation(span_id))
    }) else {
        return attempt(config, route, host, ctx, streams, build, None).await;
    };
    let start_ms = host.now_ms();
    let mut server = None;
    let result = attempt(config, route, host, ctx, streams, build, Some(Propagate { headers, server: &mut server })).await;
    let kind = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    let system = crate::telemetry::provider_system(kind, &route.provider);
    let status = match &result {
        Ok(accepted) => Some(accepted.upstream.status),
        Err(GatewayError::UpstreamStatus { status, .. }) => Some(*status),
        Err(_) => None,
    };
    if let Some(trace) = ctx.trace.as_mut() {
        trace.system = Some(system.clone());
        trace.attempts.push(crate::telemetry::Attempt {
            span_id,
            start_ms,
            end_ms: host.now_ms(),
            provider: route.provider.clone(),
            system,
            model: route.upstream_model.clone(),
            server,
            status,
            error: result.as_ref().err().map(GatewayError::label),
        });
    }
    result
}

/// The trace context an attempt's HTTP call carries, and where it notes the upstream's address.
struct Propagate<'a> {
    headers: Vec<(String, String)>,
    server: &'a mut Option<(String, u16)>,
}

/// One call of [`call_provider`]; `propagate` gives the trace headers to add to an HTTP call
/// and receives the upstream's host and port.
async fn attempt<H: Host>(
    config: &Config,
    route: &ModelRoute,
    host: &H,
    ctx: &mut RequestContext,
    streams: bool,
    build: impl FnOnce(&ProviderContext<'_>) -> Result<Dispatch, GatewayError>,
    propagate: Option<Propagate<'_>>,
) -> Result<Accepted, GatewayError> {
    let read = RefCell::new(Vec::new());
    let secret = |name: &str| {
        let value = host.secret(name);
        read.borrow_mut().extend(value.clone());
        value
    };
    let call = ProviderContext { provider_name: &route.provider, now_ms: host.now_ms(), secret: &secret };
    let mut dispatch = build(&call)?;
    let mut scrub = Scrub::new(read.take());
    if let Dispatch::Upstream(request) = &mut dispatch {
        scrub = scrub.with_request(request);
        if let Some(Propagate { headers, server }) = propagate {
            *server = crate::telemetry::server_of(&request.url);
            request.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("traceparent") && !name.eq_ignore_ascii_case("tracestate"));
            request.headers.extend(headers);
        }
    }
    let timeout_ms = config.timeout_for(&route.provider);
    let deadline = host.now_ms() + timeout_ms;
    let upstream = send(host, &route.provider, dispatch, timeout_ms).await?;
    let kind = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    let mut upstream = check_status(host, &route.provider, kind, upstream, deadline, &scrub).await?;
    ctx.latency_ms = Some(host.now_ms().saturating_sub(ctx.started_ms));
    let not_json = || GatewayError::UpstreamInvalidResponse { provider: route.provider.clone(), detail: "it answered 200 with a body that is not JSON".into() };
    if streams {
        // An HTML error page cannot be the stream that was asked for.
        if upstream.header("content-type").is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html")) {
            return Err(not_json());
        }
    } else {
        let limit = config.limits.max_upstream_body_bytes;
        let bytes = upstream_body(host, &route.provider, std::mem::replace(&mut upstream.body, Body::Empty), deadline, ctx, limit).await?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(not_json());
        }
        upstream.body = Body::Bytes(bytes);
    }
    Ok(Accepted { upstream, deadline, scrub })
}

/// Read a successful non-streamed upstream body within the deadline; more than `limit` bytes
/// is an error (nothing past the limit is read).
pub async fn upstream_body<H: Host>(
    host: &H,
    provider: &str,
    upstream: Body,
    deadline: u64,
    ctx: &RequestContext,
    limit: usize,
) -> Result<Vec<u8>, GatewayError> {
    let remaining = deadline.saturating_sub(host.now_ms()).max(1);
    match with_timeout(host, remaining, read_body(upstream, limit)).await {
        None => Err(GatewayError::UpstreamTimeout { provider: provider.into(), after_ms: deadline - ctx.started_ms }),
        Some(Err(BodyReadError::TooLarge)) => Err(GatewayError::UpstreamInvalidResponse {
            provider: provider.into(),
            detail: format!("the response body is larger than the gateway's limit of {limit} bytes (limits.max_upstream_body_bytes)"),
        }),
        Some(Err(BodyReadError::Broken(_))) => Err(GatewayError::UpstreamStreamBroken { provider: provider.into() }),
        Some(Ok(bytes)) => Ok(bytes),
    }
}

/// A whole OpenAI-format body as the gateway forwards it.
pub fn openai_body(provider: &str, bytes: &[u8]) -> Result<Translated, GatewayError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|_| GatewayError::UpstreamInvalidResponse { provider: provider.into(), detail: "the body is not JSON".into() })?;
    let usage = body.get("usage").and_then(Usage::from_openai);
    Ok(Translated { body, usage, raw_usage: None })
}

/// What the response translators need to build OpenAI objects for this request.
pub fn response_context<H: Host>(host: &H, ctx: &RequestContext, route: &ModelRoute) -> ResponseContext {
    ResponseContext {
        id: format!("chatcmpl-{}", ctx.request_id.trim_start_matches("req_")),
        created: host.now_ms() / 1000,
        model: route.upstream_model.clone(),
    }
}

/// Call an embeddings model through its provider: build the call, send it, read and translate
/// the answer. Returns the OpenAI-format answer and, when the provider spoke OpenAI already, its
/// bytes to forward unchanged. `/v1/embeddings` and the semantic cache's query embedding both
/// come through here.
pub async fn call_embeddings<H: Host>(
    config: &Config,
    route: &ModelRoute,
    provider: &ProviderConfig,
    request: &EmbeddingsRequest,
    host: &H,
    ctx: &mut RequestContext,
) -> Result<(Translated, Option<Vec<u8>>), GatewayError> {
    let response_ctx = response_context(host, ctx, route);
    let build = |call: &ProviderContext<'_>| provider::embeddings(provider, route, request.clone(), call);
    let accepted = call_provider(config, route, host, ctx, false, build).await?;
    let limit = config.limits.max_upstream_body_bytes;
    let bytes = upstream_body(host, &route.provider, accepted.upstream.body, accepted.deadline, ctx, limit).await?;
    Ok(match provider::embeddings_response(provider, request, &bytes, &response_ctx) {
        Some(translated) => (translated?, None),
        None => (openai_body(&route.provider, &bytes)?, Some(bytes)),
    })
}

/// One text's embedding with the configured embeddings model `model`, for the gateway's own use
/// (the semantic cache's query): the vector and the usage the provider reported. The caller's
/// request keeps its own latency (the answer's, not this call's).
pub async fn embed_text<H: Host>(
    config: &Config,
    model: &str,
    text: &str,
    host: &H,
    ctx: &mut RequestContext,
) -> Result<(Vec<f32>, Option<Usage>), GatewayError> {
    let route = config.models.get(model).ok_or_else(|| GatewayError::UnknownModel { model: model.into() })?;
    let provider = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    let request = EmbeddingsRequest { model: model.into(), input: Value::String(text.into()), rest: Default::default() };
    let latency_ms = ctx.latency_ms;
    let called = call_embeddings(config, route, provider, &request, host, ctx).await;
    ctx.latency_ms = latency_ms;
    let (translated, _) = called?;
    let invalid = |detail: &str| GatewayError::UpstreamInvalidResponse { provider: route.provider.clone(), detail: detail.into() };
    let values = translated.body.pointer("/data/0/embedding").and_then(Value::as_array).ok_or_else(|| invalid("the answer has no data[0].embedding"))?;
    #[allow(clippy::cast_possible_truncation)] // embeddings are f32 at the source
    let vector: Option<Vec<f32>> = values.iter().map(|v| v.as_f64().map(|x| x as f32)).collect();
    match vector {
        Some(vector) if !vector.is_empty() => Ok((vector, translated.usage)),
        _ => Err(invalid("the embedding is not a list of numbers")),
    }
}

/// Plan the route of a multi-target model and try its targets in order, falling back on the
/// failures the route names.
async fn routed_call<'c, H: Host>(
    state: &IsolateState,
    config: &'c Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    spec: &'c policy::route::RouteSpec,
    request: &ChatRequest,
    host: &H,
) -> Result<Dispatched<'c>, GatewayError> {
    use policy::route::{backoff_ms, exceeds_cap, should_fall_back, RouteError};
    let route_facts = route_facts(config, ctx, request);
    let spec = policy::route::resolve_route(spec, &route_facts, &config.routes).map_err(|e| route_error(&route.name, e))?;
    let now = host.now_ms();
    let (carbon_table, carbon_data) = state.carbon.table(config, host).await;
    state.health.load_shared(host, now).await;
    let plan = {
        let health = state.health.view();
        let carbon = carbon_table.as_deref().unwrap_or_else(|| policy::route::CarbonTable::shipped());
        policy::route::plan_with_tables(spec, &route_facts, &health, now, host.random_u64(), policy::route::GeoTable::shipped(), carbon)
    }
    .map_err(|e| route_error(&route.name, e))?;
    let mut fallbacks: Vec<String> = Vec::new();
    let mut last_error = None;
    for (n, attempt) in plan.attempts.iter().enumerate() {
        let target = &spec.targets[attempt.index];
        if attempt.probe {
            state.health.view_mut().entry(&target.id).record_probe(host.now_ms());
        }
        let target_route = ModelRoute {
            name: route.name.clone(),
            provider: target.provider.clone(),
            upstream_model: target.model.clone(),
            kind: route.kind,
            guard: route.guard.clone(),
        };
        let provider = config.providers.get(&target.provider).expect("validated: every target names a configured provider");
        ctx.provider = Some(target.provider.clone());
        ctx.upstream_model = Some(target.model.clone());
        let started = host.now_ms();
        let build = |call: &ProviderContext<'_>| provider::chat(provider, &target_route, request.clone(), call);
        let result = call_provider(config, &target_route, host, ctx, request.is_stream(), build).await;
        let failure = match result {
            Ok(Accepted { upstream, deadline, scrub }) => {
                state.health.view_mut().entry(&target.id).record_success(host.now_ms().saturating_sub(started), host.now_ms());
                let header = if n == 0 {
                    plan.header_value()
                } else {
                    // The plan's first choice failed: say where the request went and why.
                    let safe = policy::route::header_safe;
                    let mut parts = vec![format!("target={}", safe(&target.id)), format!("region={}", safe(&target.region))];
                    parts.push(format!("reason={}", fallbacks.join(",")));
                    if !plan.excluded.is_empty() {
                        let list: Vec<String> = plan.excluded.iter().map(|(id, r)| format!("{}:{}", safe(id), r.short())).collect();
                        parts.push(format!("excluded={}", list.join(",")));
                    }
                    parts.join("; ")
                };
                let estimate = plan.estimates.iter().find(|e| e.index == attempt.index).map(|e| e.gco2e);
                ctx.route = Some(RouteSummary {
                    target: target.id.clone(),
                    region: target.region.clone(),
                    jurisdiction: target.jurisdiction.clone(),
                    reason: if n == 0 { attempt.reason.to_string() } else { fallbacks.join(", ") },
                    variant: plan.variant.clone(),
                    excluded: plan.excluded.iter().map(|(id, r)| format!("{id}:{}", r.short())).collect(),
                    attempts: n as u32 + 1,
                    estimated_gco2e: estimate,
                    default_gco2e: plan.default_gco2e,
                    saving_gco2e: estimate.map(|e| plan.default_gco2e - e),
                    params_b: target.params_b,
                    provider: target.provider.clone(),
                    gco2e: None,
                    carbon_data: carbon_data.label(),
                    carbon_table: carbon_table.clone(),
                });
                state.health.share(host);
                return Ok(Dispatched { route: target_route, provider, upstream, deadline, route_header: Some(header), scrub });
            }
            Err(error) => error,
        };
        let Some(kind) = failure_kind(&failure) else { return Err(failure) };
        state.health.view_mut().entry(&target.id).record_failure(kind, host.now_ms());
        let retry_after = match kind {
            policy::route::FailureKind::RateLimited { retry_after_ms } => retry_after_ms,
            _ => None,
        };
        let status = match &failure {
            GatewayError::UpstreamStatus { status, .. } => status.to_string(),
            other => other.label().to_string(),
        };
        fallbacks.push(format!("fallback({status}@{})", target.id));
        let Some(next) = plan.attempts.get(n + 1) else {
            last_error = Some(failure);
            break;
        };
        if !should_fall_back(spec, kind) {
            return Err(failure);
        }
        // Retrying the same target waits (with jitter, never less than its Retry-After);
        // moving to another target does not.
        if next.index == attempt.index {
            if exceeds_cap(spec, retry_after) {
                return Err(failure);
            }
            let wait = backoff_ms(n as u32, spec, retry_after, host.random_u64());
            host.sleep(wait).await;
        }
        last_error = Some(failure);
    }
    state.health.share(host);
    Err(last_error.unwrap_or_else(|| route_error(&route.name, RouteError::EmptyRoute { route: route.name.clone() })))
}

/// What the planner knows of a request: location, residency, caller and size.
fn route_facts(config: &Config, ctx: &mut RequestContext, request: &ChatRequest) -> policy::route::RequestFacts {
    use std::collections::BTreeSet;
    let mut allowed: Option<BTreeSet<String>> = None;
    let mut restrict = |set: &BTreeSet<String>| {
        allowed = Some(match allowed.take() {
            None => set.clone(),
            Some(current) => current.intersection(set).cloned().collect(),
        });
    };
    let caller = &ctx.caller;
    if let Some(residency) = caller.tenant.as_ref().and_then(|t| config.tenants.get(t)).and_then(|t| t.residency.as_ref()) {
        restrict(residency);
    }
    if let (Some(eu), Some(true)) = (&config.residency.eu_visitors, ctx.location.is_eu_country) {
        restrict(eu);
    }
    if let Some(name) = &config.residency.trusted_header {
        if let Some(value) = crate::http::find_header(&ctx.headers, name) {
            let set: BTreeSet<String> = value.split(',').map(|j| j.trim().to_ascii_lowercase()).filter(|j| !j.is_empty()).collect();
            restrict(&set);
        }
    }
    let input_tokens = ctx.prompt_tokens(request, false);
    let location = &ctx.location;
    policy::route::RequestFacts {
        country: location.country.clone(),
        continent: location.continent.clone(),
        coordinates: location.coordinates,
        colo: location.colo.clone(),
        allowed_jurisdictions: allowed,
        consumer: ctx.caller.consumer_key(),
        tier: ctx.caller.tier.clone(),
        metadata: ctx.metadata.clone(),
        headers: ctx.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        request: policy::route::RequestShape {
            input_tokens,
            max_tokens: request.max_output_tokens(),
            stream: request.is_stream(),
            expected_output_tokens: None,
        },
    }
}

fn route_error(model: &str, error: policy::route::RouteError) -> GatewayError {
    use policy::route::RouteError;
    let list = |excluded: &[(String, policy::route::ExclusionReason)]| {
        excluded.iter().map(|(id, r)| format!("{id}: {}", r.short())).collect::<Vec<_>>().join(", ")
    };
    match error {
        RouteError::NoAllowedTarget { excluded, .. } => GatewayError::NoRouteTarget { model: model.into(), residency: true, excluded: list(&excluded) },
        RouteError::AllUnhealthy { excluded, .. } => GatewayError::NoRouteTarget { model: model.into(), residency: false, excluded: list(&excluded) },
        other => GatewayError::ConfigInvalid { errors: vec![other.to_string()] },
    }
}

/// The routing view of a failed call: which failures may move on to another target.
fn failure_kind(error: &GatewayError) -> Option<policy::route::FailureKind> {
    use policy::route::FailureKind;
    match error {
        GatewayError::UpstreamConnect { .. } => Some(FailureKind::Connect),
        GatewayError::UpstreamTimeout { .. } => Some(FailureKind::Timeout),
        // A 200 whose body is not the answer (an HTML error page, an oversized body) is a
        // failure of that target, like a 502.
        GatewayError::UpstreamInvalidResponse { .. } => Some(FailureKind::ServerError { status: 502 }),
        GatewayError::UpstreamStatus { status: 429, retry_after, .. } => Some(FailureKind::RateLimited {
            retry_after_ms: retry_after.as_deref().and_then(|v| v.trim().parse::<u64>().ok()).map(|s| s.saturating_mul(1000)),
        }),
        GatewayError::UpstreamStatus { status, .. } if *status >= 500 || matches!(status, 401 | 403) => {
            Some(FailureKind::ServerError { status: if *status >= 500 { *status } else { 502 } })
        }
        _ => None,
    }
}

/// Send the provider's call (or take its local answer) within the timeout for the response head.
async fn send<H: Host>(host: &H, provider: &str, dispatch: Dispatch, timeout_ms: u64) -> Result<OutboundResponse, GatewayError> {
    let call = async {
        match dispatch {
            Dispatch::Local(response) => Ok(response),
            Dispatch::Upstream(request) => host.fetch(request).await,
            Dispatch::Binding(call) => host.ai_run(&call.binding, &call.model, &call.inputs, call.stream).await,
        }
    };
    match with_timeout(host, timeout_ms, call).await {
        None => Err(GatewayError::UpstreamTimeout { provider: provider.into(), after_ms: timeout_ms }),
        Some(Err(FetchError::Connect(_) | FetchError::InvalidRequest(_))) => {
            Err(GatewayError::UpstreamConnect { provider: provider.into() })
        }
        Some(Ok(response)) => Ok(response),
    }
}

/// Pass 2xx through; turn anything else into a typed error (reading a bounded error body, whose
/// forwardable error object passes the call's scrub).
async fn check_status<H: Host>(
    host: &H,
    provider: &str,
    kind: &ProviderConfig,
    upstream: OutboundResponse,
    deadline: u64,
    scrub: &Scrub,
) -> Result<OutboundResponse, GatewayError> {
    if (200..300).contains(&upstream.status) {
        return Ok(upstream);
    }
    let status = upstream.status;
    let retry_after = upstream.header("retry-after").map(str::to_string);
    let forwardable = matches!(status, 400 | 404 | 409 | 413 | 422);
    let body = if forwardable {
        let remaining = deadline.saturating_sub(host.now_ms()).max(1);
        match with_timeout(host, remaining, read_body(upstream.body, MAX_UPSTREAM_ERROR_BODY)).await {
            Some(Ok(bytes)) => match kind {
                // An OpenAI-compatible error body is already in the client's format.
                ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) => serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .filter(|v| v.get("error").is_some_and(Value::is_object)),
                _ => provider::error_body(kind, status, &bytes).map(|e| e.to_openai()),
            },
            _ => None,
        }
        .and_then(|body| scrub.error_body(&body))
    } else {
        None
    };
    Err(GatewayError::UpstreamStatus { provider: provider.into(), status, retry_after, body })
}
