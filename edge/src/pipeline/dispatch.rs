//! The route + dispatch phase: plan where the request goes (a multi-target route: residency
//! first, then health, conditions, canary and the strategy), have the provider build its call,
//! send it through the host under the provider's timeout, check the status, and fall back to the
//! next target on the failures the route names.
//!
//! Nothing is retried once a response head has been accepted, so a stream never falls back after
//! its first byte reached the client. Upstream error texts are never forwarded where they may
//! echo credentials (401/403/5xx); forwardable client errors are translated to OpenAI's shape.

use serde_json::Value;

use crate::config::{Config, ModelRoute, ProviderConfig};
use crate::error::GatewayError;
use crate::event::RouteSummary;
use crate::host::{with_timeout, FetchError, Host, OutboundResponse};
use crate::http::{read_body, BodyReadError};
use crate::isolate::IsolateState;
use crate::openai::ChatRequest;
use crate::pipeline::context::RequestContext;
use crate::provider::{self, Dispatch, ProviderContext};

/// Largest upstream body the gateway reads whole (non-streamed responses, error bodies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
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
            let (upstream, deadline) =
                call_provider(config, route, host, ctx, |call| provider::chat(provider, route, request.clone(), call)).await?;
            Ok(Dispatched { route: route.clone(), provider, upstream, deadline, route_header: None })
        }
    }
}

/// Have the provider build its call, send it within the provider's timeout and check the
/// status. Returns the successful response and the deadline for reading its body.
pub async fn call_provider<H: Host>(
    config: &Config,
    route: &ModelRoute,
    host: &H,
    ctx: &mut RequestContext,
    build: impl FnOnce(&ProviderContext<'_>) -> Result<Dispatch, GatewayError>,
) -> Result<(OutboundResponse, u64), GatewayError> {
    let secret = |name: &str| host.secret(name);
    let call = ProviderContext { provider_name: &route.provider, now_ms: host.now_ms(), secret: &secret };
    let dispatch = build(&call)?;
    let timeout_ms = config.timeout_for(&route.provider);
    let deadline = host.now_ms() + timeout_ms;
    let upstream = send(host, &route.provider, dispatch, timeout_ms).await?;
    let kind = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    let upstream = check_status(host, &route.provider, kind, upstream, deadline).await?;
    ctx.latency_ms = Some(host.now_ms().saturating_sub(ctx.started_ms));
    Ok((upstream, deadline))
}

/// Read a successful non-streamed upstream body within the deadline.
pub async fn upstream_body<H: Host>(
    host: &H,
    provider: &str,
    upstream: OutboundResponse,
    deadline: u64,
    ctx: &RequestContext,
) -> Result<Vec<u8>, GatewayError> {
    let remaining = deadline.saturating_sub(host.now_ms()).max(1);
    match with_timeout(host, remaining, read_body(upstream.body, MAX_UPSTREAM_BODY)).await {
        None => Err(GatewayError::UpstreamTimeout { provider: provider.into(), after_ms: deadline - ctx.started_ms }),
        Some(Err(BodyReadError::TooLarge)) => {
            Err(GatewayError::UpstreamInvalidResponse { provider: provider.into(), detail: "body too large".into() })
        }
        Some(Err(BodyReadError::Broken(_))) => Err(GatewayError::UpstreamStreamBroken { provider: provider.into() }),
        Some(Ok(bytes)) => Ok(bytes),
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
        let result = call_provider(config, &target_route, host, ctx, |call| provider::chat(provider, &target_route, request.clone(), call)).await;
        let failure = match result {
            Ok((upstream, deadline)) => {
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
                return Ok(Dispatched { route: target_route, provider, upstream, deadline, route_header: Some(header) });
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

/// Pass 2xx through; turn anything else into a typed error (reading a bounded error body).
async fn check_status<H: Host>(
    host: &H,
    provider: &str,
    kind: &ProviderConfig,
    upstream: OutboundResponse,
    deadline: u64,
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
    } else {
        None
    };
    Err(GatewayError::UpstreamStatus { provider: provider.into(), status, retry_after, body })
}
