//! The request pipeline: route, load config, authenticate, read and validate the body, authorize
//! the model, dispatch to the provider, and shape the response (streamed or whole).
//!
//! Phases, in order, and what each may do:
//! 1. **route**: match method and path; no I/O. Unknown routes fail here, before any config read.
//! 2. **config**: the validated document, cached per isolate for `limits.config_refresh_ms`; a KV
//!    read only when the cache is stale. A broken KV keeps the last good config.
//! 3. **authenticate**: before the body is read, so unauthenticated callers cost nothing.
//! 4. **body**: content type, size limit (declared and actual), JSON shape.
//! 5. **authorize + dispatch**: model exists, consumer may use it, provider builds the call.
//! 6. **upstream**: sent through the host under a timeout for the response head (whole body for
//!    non-streamed calls). Errors map to OpenAI-style bodies without upstream secrets.
//! 7. **respond**: streamed bodies are translated chunk by chunk (see [`crate::stream`]); the
//!    usage event is emitted when the body ends, however it ends.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures::future::{select, Either};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::config::{Config, ConfigErrors, JwtAuth, ModelKind, ModelRoute, ProviderConfig};
use policy::identity::{verify_jwt as verify_token, JwksSource, JwtKey, JwtKeySet};
use crate::error::GatewayError;
use crate::guard::{GuardSummary, RequestGuard};
use policy::guard::{GuardNeeds, Guards};
use crate::event::{Outcome, UsageEvent};
use crate::host::{Body, ByteStream, FetchError, Host, OutboundRequest, OutboundResponse};
use crate::http::{Request, Response};
use crate::openai::{parse_request, ChatRequest, EmbeddingsRequest, Usage};
use crate::provider::{self, Dispatch, ProviderContext};
use crate::provider::{ResponseContext, Translated};
use crate::stream::{translate_stream, ClientFormat, OutputGuard, StreamEnd, StreamPlan};

/// The KV key that holds a configuration document overriding the shipped one.
pub const CONFIG_KV_KEY: &str = "config";

/// Largest upstream body the gateway reads whole (non-streamed responses, error bodies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
const MAX_UPSTREAM_ERROR_BODY: usize = 64 * 1024;

/// The API operations the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ChatCompletions,
    /// Anthropic's Messages API, translated to and from the gateway's chat pipeline.
    Messages,
    Embeddings,
    ListModels,
    GetModel(String),
}

impl Route {
    fn operation(&self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat.completions",
            Route::Messages => "messages",
            Route::Embeddings => "embeddings",
            Route::ListModels | Route::GetModel(_) => "models",
        }
    }

    fn allowed_method(&self) -> &'static str {
        match self {
            Route::ChatCompletions | Route::Messages | Route::Embeddings => "POST",
            Route::ListModels | Route::GetModel(_) => "GET",
        }
    }

    fn from_path(path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        match path {
            "/v1/chat/completions" => Some(Route::ChatCompletions),
            "/v1/messages" => Some(Route::Messages),
            "/v1/embeddings" => Some(Route::Embeddings),
            "/v1/models" => Some(Route::ListModels),
            _ => path
                .strip_prefix("/v1/models/")
                .filter(|id| !id.is_empty())
                .map(|id| Route::GetModel(id.to_string())),
        }
    }
}

/// The parsed configuration and the text it came from, cached per isolate.
struct LoadedConfig {
    text: String,
    parsed: Result<Rc<Config>, ConfigErrors>,
    checked_at_ms: u64,
}

/// The gateway core. Create one per isolate/instance and call [`Gateway::handle`] per request.
#[derive(Default)]
pub struct Gateway {
    config: RefCell<Option<LoadedConfig>>,
    /// The guardrail detectors the configuration uses, compiled on the first request that needs
    /// them and again only when a new configuration needs different ones.
    guards: RefCell<Option<(GuardNeeds, Rc<Guards>)>>,
    /// Keys fetched from the configured JWKS URL, per isolate.
    jwks: RefCell<Option<JwksCache>>,
    /// Observed health and latency of routing targets, per isolate.
    health: RefCell<policy::route::HealthView>,
    /// Live carbon intensities read from KV, re-read every [`crate::carbon::RECHECK_MS`].
    carbon: RefCell<Option<CarbonCache>>,
    /// When this isolate last read and wrote the shared route health in KV.
    health_sync: std::cell::Cell<(Option<u64>, u64)>,
}

/// The key-value key of the route health shared between isolates and locations.
pub const HEALTH_KV_KEY: &str = "route:health";

/// How often an isolate re-reads, and at most writes, the shared route health. Workers KV takes
/// about one write per second per key, so writes are spaced and may still be refused when many
/// isolates are busy; that only delays sharing.
const HEALTH_SYNC_MS: u64 = 30_000;

/// The routing carbon table as last read from the key-value store.
struct CarbonCache {
    checked_at_ms: u64,
    live: Option<crate::carbon::LiveIntensities>,
}

/// A fetched JWKS document's keys and when they were fetched (and last tried).
struct JwksCache {
    url: String,
    keys: JwtKeySet,
    fetched_at_ms: Option<u64>,
    attempted_at_ms: u64,
}

/// Refetching a JWKS for an unknown `kid` at most this often: anyone can send any `kid`.
const JWKS_MISS_REFETCH_MS: u64 = 60_000;

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The consumer id (API key) or the token's consumer claim; `None` when auth is off.
    pub consumer: Option<String>,
    pub tenant: Option<String>,
    pub tier: Option<String>,
    /// An identifier of the credential (never the credential): a digest prefix of an API key.
    pub key_id: Option<String>,
    via_jwt: bool,
    /// A virtual key's own model allow-list: narrows what its consumer may use.
    key_models: Option<policy::access::ModelAccess>,
}

impl Caller {
    /// The consumer id when it comes from the configuration (API keys), for per-consumer settings.
    fn api_consumer(&self) -> Option<&str> {
        if self.via_jwt {
            None
        } else {
            self.consumer.as_deref()
        }
    }
}

/// What is known about the request so far, for the usage event.
#[derive(Clone)]
struct Trace {
    request_id: String,
    operation: &'static str,
    started_ms: u64,
    consumer: Option<String>,
    tenant: Option<String>,
    tier: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    upstream_model: Option<String>,
    stream: bool,
    country: Option<String>,
    colo: Option<String>,
    usage: Option<Usage>,
    /// The provider's own usage object, when a translating provider reported one.
    provider_usage: Option<Value>,
    quota: Option<crate::quota::QuotaSummary>,
    route: Option<RouteSummary>,
    guard: Option<GuardSummary>,
    /// Milliseconds to the upstream's response head, once known.
    latency_ms: Option<u64>,
    metadata: std::collections::BTreeMap<String, String>,
}

impl Trace {
    fn event(&self, status: u16, outcome: Outcome, error: Option<&'static str>, duration_ms: u64) -> UsageEvent {
        UsageEvent {
            request_id: self.request_id.clone(),
            operation: self.operation,
            consumer: self.consumer.clone(),
            tenant: self.tenant.clone(),
            tier: self.tier.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            stream: self.stream,
            status,
            outcome,
            error,
            usage: self.usage,
            provider_usage: self.provider_usage.clone(),
            quota: self.quota.clone(),
            route: self.route.clone().map(|mut route| {
                if let Some(usage) = &self.usage {
                    let table = route.carbon_table.as_deref().unwrap_or_else(|| policy::route::CarbonTable::shipped());
                    route.gco2e = Some(table.gco2e(usage.input_tokens, usage.output_tokens, route.params_b, &route.provider, &route.region));
                }
                route
            }),
            latency_ms: self.latency_ms.unwrap_or(duration_ms),
            duration_ms,
            country: self.country.clone(),
            colo: self.colo.clone(),
            guard: self.guard.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl Gateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle one request. Never panics on bad input; every failure is an OpenAI-style error.
    pub async fn handle<H: Host>(&self, request: Request, host: &H) -> Response {
        let started_ms = host.now_ms();
        let mut trace = Trace {
            request_id: format!("req_{:016x}", host.random_u64()),
            operation: "unknown",
            started_ms,
            consumer: None,
            tenant: None,
            tier: None,
            model: None,
            provider: None,
            upstream_model: None,
            stream: false,
            country: request.facts.country.clone(),
            colo: request.facts.colo.clone(),
            usage: None,
            provider_usage: None,
            quota: None,
            route: None,
            guard: None,
            latency_ms: None,
            metadata: Default::default(),
        };
        let origin = request.header("origin").map(str::to_string);
        let preflight = request.method == "OPTIONS";
        let anthropic_api = Route::from_path(&request.path) == Some(Route::Messages);
        let result = if preflight {
            self.preflight(&request, host).await
        } else {
            self.serve(request, host, &mut trace).await
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                let elapsed = host.now_ms().saturating_sub(started_ms);
                if !preflight {
                    host.emit(&trace.event(error.status(), Outcome::Failed, Some(error.label()), elapsed));
                }
                if anthropic_api {
                    error.to_response_with(&crate::messages::anthropic_error_body(&error))
                } else {
                    error.to_response()
                }
            }
        };
        response.headers.push(("x-request-id".into(), trace.request_id));
        if let (Some(origin), Some(config)) = (origin, self.cached_config()) {
            if let Some(cors) = &config.cors {
                if cors.allow_origins.iter().any(|o| o == "*" || *o == origin) {
                    response.headers.push(("access-control-allow-origin".into(), origin));
                    response.headers.push(("vary".into(), "origin".into()));
                    response.headers.push((
                        "access-control-expose-headers".into(),
                        "x-request-id, x-gateway-provider, x-gateway-model, x-gateway-route, x-gateway-target, x-gateway-region, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens".into(),
                    ));
                }
            }
        }
        response
    }

    /// The carbon table to route with: live values from KV when a feed is configured and they
    /// are fresh, else the shipped annual table (`None`), and which of the two it is.
    async fn carbon_table<H: Host>(&self, config: &Config, host: &H) -> (Option<Rc<policy::route::CarbonTable>>, crate::carbon::CarbonData) {
        let Some(feed) = &config.carbon_feed else { return (None, crate::carbon::CarbonData::Annual) };
        let now = host.now_ms();
        let due = self.carbon.borrow().as_ref().is_none_or(|c| now.saturating_sub(c.checked_at_ms) >= crate::carbon::RECHECK_MS);
        if due {
            // A store error keeps what this isolate had (or nothing: annual values, flagged stale).
            let read = host.kv_get(crate::carbon::LIVE_KEY).await;
            let mut slot = self.carbon.borrow_mut();
            let previous = slot.take().and_then(|c| c.live);
            let live = match read {
                Ok(text) => text.and_then(|t| serde_json::from_str(&t).ok()),
                Err(_) => previous,
            };
            *slot = Some(CarbonCache { checked_at_ms: now, live });
        }
        let slot = self.carbon.borrow();
        crate::carbon::table_from(Some(feed), slot.as_ref().and_then(|c| c.live.as_ref()), now)
    }

    /// Scheduled work (a Workers cron trigger): refresh live carbon intensities when a feed is
    /// configured. Returns a one-line summary for the platform's log; never the token.
    pub async fn scheduled<H: Host>(&self, host: &H) -> String {
        let config = match self.config(host).await {
            Ok(config) => config,
            Err(error) => return format!("scheduled: no usable configuration ({})", error.label()),
        };
        match self.refresh_carbon(&config, host).await {
            Ok(report) => format!("scheduled: carbon intensities refreshed for {} regions, {} failed {:?}", report.updated.len(), report.failed.len(), report.failed),
            Err(crate::carbon::RefreshError::NotConfigured) => "scheduled: no carbon_feed configured; nothing to do".into(),
            Err(error) => format!("scheduled: carbon refresh stored nothing: {error:?}"),
        }
    }

    /// `POST /admin/carbon/refresh`: the same refresh, for hosts without cron triggers.
    pub(crate) async fn refresh_carbon<H: Host>(&self, config: &Config, host: &H) -> Result<crate::carbon::RefreshReport, crate::carbon::RefreshError> {
        let feed = config.carbon_feed.as_ref().ok_or(crate::carbon::RefreshError::NotConfigured)?;
        let outcome = crate::carbon::refresh(feed, host).await;
        // This isolate re-reads the new values on its next routed request.
        self.carbon.replace(None);
        outcome
    }

    fn cached_config(&self) -> Option<Rc<Config>> {
        self.config.borrow().as_ref().and_then(|c| c.parsed.as_ref().ok().cloned())
    }

    async fn preflight<H: Host>(&self, request: &Request, host: &H) -> Result<Response, GatewayError> {
        let config = self.config(host).await?;
        let origin = request.header("origin").unwrap_or_default();
        let allowed = config.cors.as_ref().is_some_and(|c| c.allow_origins.iter().any(|o| o == "*" || o == origin));
        if !allowed {
            return Err(GatewayError::NotFound { path: request.path.clone() });
        }
        let headers = request
            .header("access-control-request-headers")
            .unwrap_or("authorization, content-type")
            .to_string();
        Ok(Response { status: 204, headers: Vec::new(), body: Body::Empty }
            .with_header("access-control-allow-methods", "GET, POST, OPTIONS")
            .with_header("access-control-allow-headers", headers)
            .with_header("access-control-max-age", "600"))
    }

    async fn serve<H: Host>(&self, request: Request, host: &H, trace: &mut Trace) -> Result<Response, GatewayError> {
        if request.path == "/admin" || request.path.starts_with("/admin/") {
            trace.operation = "admin";
            let config = self.config(host).await?;
            return crate::admin::handle(self, &config, request, host).await;
        }
        let route = Route::from_path(&request.path).ok_or_else(|| GatewayError::NotFound { path: request.path.clone() })?;
        trace.operation = route.operation();
        if request.method != route.allowed_method() {
            return Err(GatewayError::MethodNotAllowed { method: request.method.clone(), allowed: route.allowed_method() });
        }
        let config = self.config(host).await?;
        let caller = self.authenticate(&config, &request, host).await?;
        trace.consumer = caller.consumer.clone();
        trace.tenant = caller.tenant.clone();
        trace.tier = caller.tier.clone();
        trace.metadata = config.metadata_for(caller.consumer.as_deref(), caller.tenant.as_deref());

        match route {
            Route::ListModels | Route::GetModel(_) => {
                let response = match route {
                    Route::GetModel(id) => get_model(&config, &caller, &id)?,
                    _ => list_models(&config, &caller),
                };
                let elapsed = host.now_ms().saturating_sub(trace.started_ms);
                host.emit(&trace.event(200, Outcome::Completed, None, elapsed));
                Ok(response)
            }
            Route::ChatCompletions => {
                let (headers, facts) = (request.headers.clone(), request.facts.clone());
                let body = read_json_body(request, config.limits.max_body_bytes).await?;
                let chat: ChatRequest = parse_request(&body)?;
                self.chat(&config, &caller, chat, Inbound { headers: &headers, facts: &facts, client: ClientApi::OpenAi }, host, trace).await
            }
            Route::Messages => {
                let (headers, facts) = (request.headers.clone(), request.facts.clone());
                let body = read_json_body(request, config.limits.max_body_bytes).await?;
                let (chat, meta) = crate::messages::parse_messages_request(&body)?;
                let inbound = Inbound { headers: &headers, facts: &facts, client: ClientApi::Anthropic(meta) };
                self.chat(&config, &caller, chat, inbound, host, trace).await
            }
            Route::Embeddings => {
                let body = read_json_body(request, config.limits.max_body_bytes).await?;
                let embeddings: EmbeddingsRequest = parse_request(&body)?;
                self.embeddings(&config, &caller, embeddings, host, trace).await
            }
        }
    }

    /// The compiled detectors for this configuration's guard profiles, reused while the
    /// detectors needed stay the same.
    fn guards_for(&self, config: &Config) -> Rc<Guards> {
        let needs = Guards::needs(config.guards.values().map(|g| &g.policy));
        let mut slot = self.guards.borrow_mut();
        if let Some((cached_for, guards)) = slot.as_ref() {
            if *cached_for == needs {
                return guards.clone();
            }
        }
        let guards = Rc::new(Guards::for_needs(&needs));
        *slot = Some((needs, guards.clone()));
        guards
    }

    /// Establish the caller from `Authorization: Bearer` (an API key or, when configured, a JWT)
    /// or `x-api-key`.
    async fn authenticate<H: Host>(&self, config: &Config, request: &Request, host: &H) -> Result<Caller, GatewayError> {
        let presented = match request.header("authorization") {
            Some(value) => {
                let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(GatewayError::InvalidCredential);
                }
                Some(token.trim())
            }
            None => request.header("x-api-key"),
        };
        if let (Some(jwt), Some(token)) = (&config.jwt, presented) {
            if looks_like_jwt(token) {
                return self.verify_jwt(jwt, token, host).await;
            }
        }
        match config.keys.authenticate(presented) {
            Ok(policy::AuthDecision::Anonymous) => Ok(Caller::default()),
            Ok(policy::AuthDecision::Consumer(id)) => Ok(Caller {
                tenant: config.consumer_tenants.get(&id).cloned(),
                tier: config.consumer_profiles.get(&id).and_then(|p| p.tier.clone()),
                key_id: presented.map(|k| format!("sha256:{}", &hex::encode(policy::auth::key_digest(k))[..16])),
                consumer: Some(id),
                ..Caller::default()
            }),
            Err(policy::AuthError::MissingCredential) => Err(GatewayError::MissingCredential),
            Err(policy::AuthError::InvalidCredential) => {
                // Not in the configuration: maybe a key issued through the admin API.
                let record = match presented {
                    Some(token) => crate::admin::virtual_key(token, host).await?,
                    None => None,
                };
                let record = record.ok_or(GatewayError::InvalidCredential)?;
                Ok(Caller {
                    tenant: record.tenant.clone().or_else(|| config.consumer_tenants.get(&record.consumer).cloned()),
                    key_id: Some(record.id),
                    key_models: Some(record.models.map_or_else(policy::access::ModelAccess::all, policy::access::ModelAccess::new)),
                    consumer: Some(record.consumer),
                    ..Caller::default()
                })
            }
        }
    }

    async fn verify_jwt<H: Host>(&self, jwt: &JwtAuth, token: &str, host: &H) -> Result<Caller, GatewayError> {
        let now_ms = host.now_ms();
        let mut keys = jwt.keys.clone();
        for (kid, secret_name) in &jwt.hmac_secrets {
            let secret = host
                .secret(secret_name)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| GatewayError::MissingSecret { name: secret_name.clone() })?;
            let key = JwtKey::hs256(secret.as_bytes()).map_err(|_| GatewayError::ConfigInvalid {
                errors: vec![format!("the secret '{secret_name}' is not a usable HS256 key (at least 32 bytes)")],
            })?;
            keys.push(match kid {
                Some(kid) => key.with_kid(kid.clone()),
                None => key,
            });
        }
        if let Some(url) = &jwt.jwks_url {
            let stale = self.jwks.borrow().as_ref().is_none_or(|c| {
                c.url != *url || c.fetched_at_ms.is_none_or(|at| now_ms.saturating_sub(at) >= jwt.jwks_refresh_ms)
            });
            let may_try = self
                .jwks
                .borrow()
                .as_ref()
                .is_none_or(|c| c.url != *url || c.fetched_at_ms.is_some() || now_ms.saturating_sub(c.attempted_at_ms) >= JWKS_MISS_REFETCH_MS);
            if stale && may_try {
                // A fresh isolate first adopts the set another isolate stored in KV.
                let adopted = self.jwks.borrow().is_none() && self.adopt_stored_jwks(url, jwt.jwks_refresh_ms, host).await;
                if !adopted {
                    self.refresh_jwks(url, host).await;
                }
            }
            let fetched = self.jwks.borrow().as_ref().filter(|c| c.url == *url && c.fetched_at_ms.is_some()).map(|c| c.keys.clone());
            match fetched {
                Some(remote) => keys.extend(remote),
                None if keys.is_empty() => return Err(GatewayError::JwksUnavailable),
                None => {}
            }
        }
        let now_secs = now_ms / 1000;
        let mut verdict = verify_token(token, &keys, &jwt.rules, now_secs);
        // Keys may have rotated: refetch once (rate-limited) for a `kid` the set does not know.
        if let (Err(error), Some(url)) = (&verdict, &jwt.jwks_url) {
            let may_refetch =
                self.jwks.borrow().as_ref().is_none_or(|c| now_ms.saturating_sub(c.attempted_at_ms) >= JWKS_MISS_REFETCH_MS);
            if error.suggests_key_refresh() && may_refetch {
                self.refresh_jwks(url, host).await;
                if let Some(remote) = self.jwks.borrow().as_ref().filter(|c| c.fetched_at_ms.is_some()).map(|c| c.keys.clone()) {
                    keys.extend(remote);
                }
                verdict = verify_token(token, &keys, &jwt.rules, now_secs);
            }
        }
        match verdict {
            Ok(identity) => Ok(Caller { consumer: Some(identity.consumer), tenant: identity.tenant, tier: identity.tier, key_id: None, via_jwt: true, key_models: None }),
            Err(error) => Err(GatewayError::InvalidToken { reason: error.code() }),
        }
    }

    /// Use the JWKS document stored in KV by an earlier fetch (any isolate, any location) when it
    /// is younger than `max_age_ms`. Cold isolates then verify without a network round trip.
    async fn adopt_stored_jwks<H: Host>(&self, url: &str, max_age_ms: u64, host: &H) -> bool {
        let Ok(Some(text)) = host.kv_get(&jwks_kv_key(url)).await else { return false };
        let Ok(stored) = serde_json::from_str::<Value>(&text) else { return false };
        let (Some(fetched_at), Some(document)) = (stored["fetched_at_ms"].as_u64(), stored["jwks"].as_str()) else { return false };
        let now_ms = host.now_ms();
        if now_ms.saturating_sub(fetched_at) >= max_age_ms {
            return false;
        }
        let Ok(parsed) = JwtKeySet::parse_jwks(document, JwksSource::Remote) else { return false };
        if parsed.keys.is_empty() {
            return false;
        }
        *self.jwks.borrow_mut() = Some(JwksCache { url: url.to_string(), keys: parsed.keys, fetched_at_ms: Some(fetched_at), attempted_at_ms: now_ms });
        true
    }

    /// Fetch the JWKS; keep the previous keys when the fetch fails or yields no usable key.
    async fn refresh_jwks<H: Host>(&self, url: &str, host: &H) {
        let now_ms = host.now_ms();
        let request = OutboundRequest {
            method: "GET",
            url: url.to_string(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let call = async {
            let response = host.fetch(request).await.ok()?;
            if response.status != 200 {
                return None;
            }
            let body = read_body(response.body, 1024 * 1024).await.ok()?;
            let text = String::from_utf8(body).ok()?;
            let parsed = JwtKeySet::parse_jwks(&text, JwksSource::Remote).ok()?;
            (!parsed.keys.is_empty()).then_some((parsed.keys, text))
        };
        let fetched = with_timeout(host, 5_000, call).await.flatten();
        let mut slot = self.jwks.borrow_mut();
        match (fetched, slot.as_mut().filter(|c| c.url == url)) {
            (Some((keys, text)), _) => {
                *slot = Some(JwksCache { url: url.to_string(), keys, fetched_at_ms: Some(now_ms), attempted_at_ms: now_ms });
                // Share it with other isolates (public keys only; best effort).
                let stored = json!({ "fetched_at_ms": now_ms, "jwks": text }).to_string();
                let (key, store) = (jwks_kv_key(url), host.clone());
                host.wait_until(async move {
                    let _ = store.kv_put(&key, &stored).await;
                });
            }
            (None, Some(cache)) => cache.attempted_at_ms = now_ms,
            (None, None) => {
                *slot = Some(JwksCache { url: url.to_string(), keys: JwtKeySet::default(), fetched_at_ms: None, attempted_at_ms: now_ms })
            }
        }
    }

    /// The current configuration: cached, re-read from KV when stale, parsed only when changed.
    async fn config<H: Host>(&self, host: &H) -> Result<Rc<Config>, GatewayError> {
        let now = host.now_ms();
        if let Some(loaded) = self.config.borrow().as_ref() {
            if let Ok(config) = &loaded.parsed {
                if now.saturating_sub(loaded.checked_at_ms) < config.limits.config_refresh_ms {
                    return Ok(config.clone());
                }
            }
        }
        let text = match host.kv_get(CONFIG_KV_KEY).await {
            Ok(Some(text)) => Some(text),
            Ok(None) => host.shipped_config(),
            Err(error) => {
                // Keep serving with the last good configuration rather than failing every request
                // while the store is unavailable; without one, fail closed.
                if let Some(config) = self.cached_config() {
                    return Ok(config);
                }
                return Err(GatewayError::ConfigUnavailable { detail: format!("key-value store: {}", error.0) });
            }
        };
        let Some(text) = text else {
            return Err(GatewayError::ConfigUnavailable {
                detail: "no configuration: set the GATEWAY_CONFIG variable or the KV key 'config'".into(),
            });
        };
        let mut slot = self.config.borrow_mut();
        let unchanged = slot.as_ref().is_some_and(|loaded| loaded.text == text);
        if unchanged {
            let loaded = slot.as_mut().expect("checked above");
            loaded.checked_at_ms = now;
        } else {
            let parsed = Config::parse(&text).map(Rc::new);
            *slot = Some(LoadedConfig { text, parsed, checked_at_ms: now });
        }
        let loaded = slot.as_ref().expect("just set");
        loaded.parsed.clone().map_err(|errors| GatewayError::ConfigInvalid {
            errors: errors.0.iter().map(ToString::to_string).collect(),
        })
    }

    async fn chat<H: Host>(
        &self,
        config: &Config,
        caller: &Caller,
        mut request: ChatRequest,
        inbound: Inbound<'_>,
        host: &H,
        trace: &mut Trace,
    ) -> Result<Response, GatewayError> {
        let Inbound { headers, facts, client } = inbound;
        let (route, provider) = resolve(config, caller, &request.model, ModelKind::Chat, "chat completions", trace)?;
        if let ClientApi::Anthropic(meta) = &client {
            // Anthropic's top_k has no OpenAI equivalent: pass it only to providers that have one.
            if let (Some(k), false) = (meta.top_k, matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock)) {
                request.rest.insert("top_k".into(), k.into());
            }
        }
        let stream = request.is_stream();
        trace.stream = stream;
        let strip_usage = !request.wants_stream_usage();
        let mut guard = config.guard_for(caller.api_consumer(), route).map(|profile| RequestGuard::new(self.guards_for(config), profile.clone()));
        if let Some(guard) = guard.as_mut() {
            let checked = guard.guard_input(&mut request);
            trace.guard = Some(guard.summary());
            checked?;
            if let Some(moderation) = guard.profile.moderation.clone() {
                let checked = moderate(config, host, &moderation, RequestGuard::input_texts(&request), guard).await;
                trace.guard = Some(guard.summary());
                checked?;
            }
        }
        let mut reservation = admit(config, caller, route, provider, &request, headers, host, trace).await?;
        let called = match config.routes.get(&route.name) {
            Some(spec) => self.routed_call(config, caller, route, spec, &request, headers, facts, host, trace).await,
            None => call_provider(config, route, host, trace, |ctx| provider::chat(provider, route, request, ctx))
                .await
                .map(|(upstream, deadline)| (route.clone(), provider, upstream, deadline, None)),
        };
        let (chosen, provider, upstream, deadline, route_header) = match called {
            Ok(called) => called,
            Err(error) => {
                crate::quota::release(&reservation, host).await;
                return Err(error);
            }
        };
        let route = &chosen;
        // Charge the price of the target that served the request (routing may have moved it).
        reservation.served_by(&route.upstream_model);
        let mut rate_headers: Vec<(String, String)> =
            reservation.headers(host.now_ms()).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Some(value) = route_header {
            rate_headers.push(("x-gateway-route".into(), value));
            if let Some(summary) = &trace.route {
                rate_headers.push(("x-gateway-target".into(), policy::route::header_safe(&summary.target)));
                rate_headers.push(("x-gateway-region".into(), policy::route::header_safe(&summary.region)));
            }
        }

        let response_ctx = response_context(host, trace, route);
        let decoder = provider::stream_decoder(provider, &response_ctx);
        // A translating provider streams in its own format (SSE, AWS event-stream); an
        // OpenAI-compatible one must answer a streamed request with SSE to be streamed on.
        let streams = decoder.is_some() || upstream.header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
        if stream && streams {
            let body = match upstream.body {
                Body::Stream(s) => s,
                Body::Bytes(b) => Box::pin(futures::stream::iter([Ok(b)])) as ByteStream,
                Body::Empty => Box::pin(futures::stream::empty()) as ByteStream,
            };
            let plan = StreamPlan {
                provider: route.provider.clone(),
                strip_usage,
                idle_timeout_ms: config.limits.stream_idle_timeout_ms,
                decoder,
                client: match &client {
                    ClientApi::OpenAi => ClientFormat::OpenAi,
                    ClientApi::Anthropic(meta) => ClientFormat::Other(Box::new(AnthropicEvents(
                        crate::messages::AnthropicEventEncoder::new(&meta.model, &response_ctx.id.replace("chatcmpl-", "msg_")),
                    ))),
                },
            };
            let mut finished_trace = trace.clone();
            let event_host = host.clone();
            let body = translate_stream(body, host.clone(), plan, guard.map(OutputGuard::new), move |end: StreamEnd| {
                let duration = event_host.now_ms().saturating_sub(finished_trace.started_ms);
                finished_trace.usage = end.usage;
                finished_trace.provider_usage = end.raw_usage;
                if end.guard.is_some() {
                    finished_trace.guard = end.guard;
                }
                // Charge what the provider reported; a stream cut short without usage is charged
                // its reservation (the tokens were generated whether or not they were read).
                let cost = end.usage.as_ref().and_then(|u| reservation.cost(u));
                if !reservation.is_empty() {
                    finished_trace.quota = Some(reservation.summary(cost));
                }
                event_host.emit(&finished_trace.event(200, end.outcome, end.error, duration));
                event_host.wait_until(crate::quota::settle(reservation, end.usage, event_host.clone()));
            });
            let mut response = Response {
                status: 200,
                headers: vec![
                    ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                    ("cache-control".into(), "no-cache".into()),
                ],
                body: Body::Stream(body),
            };
            response.headers.extend(rate_headers);
            return Ok(tag(response, route));
        }
        let answered = async {
            let bytes = self.upstream_body(host, &route.provider, upstream, deadline, trace).await?;
            match provider::chat_response(provider, &bytes, &response_ctx) {
                Some(translated) => Ok((translated?, None)),
                None => Ok((openai_body(&route.provider, &bytes)?, Some(bytes))),
            }
        };
        let (translated, forward) = match answered.await {
            Ok(answer) => answer,
            Err(error) => {
                crate::quota::release(&reservation, host).await;
                return Err(error);
            }
        };
        if !reservation.is_empty() {
            trace.quota = Some(reservation.summary(translated.usage.as_ref().and_then(|u| reservation.cost(u))));
        }
        let usage = translated.usage;
        let response = match &client {
            ClientApi::OpenAi => self.whole_response(host, translated, forward, trace, guard.as_mut()),
            ClientApi::Anthropic(meta) => {
                let mut translated = translated;
                translated.body = self.guarded_completion(translated.body, trace, guard.as_mut())?;
                let message = crate::messages::to_anthropic_message(&translated.body, &meta.model, usage);
                let translated = Translated { body: message, ..translated };
                self.whole_response(host, translated, None, trace, None)
            }
        };
        host.wait_until(crate::quota::settle(reservation, usage, host.clone()));
        response.map(|mut r| {
            r.headers.extend(rate_headers);
            tag(r, route)
        })
    }

    async fn embeddings<H: Host>(
        &self,
        config: &Config,
        caller: &Caller,
        request: EmbeddingsRequest,
        host: &H,
        trace: &mut Trace,
    ) -> Result<Response, GatewayError> {
        let (route, provider) = resolve(config, caller, &request.model, ModelKind::Embeddings, "embeddings", trace)?;
        let response_ctx = response_context(host, trace, route);
        let (upstream, deadline) =
            call_provider(config, route, host, trace, |ctx| provider::embeddings(provider, route, request.clone(), ctx)).await?;
        let bytes = self.upstream_body(host, &route.provider, upstream, deadline, trace).await?;
        let (translated, forward) = match provider::embeddings_response(provider, &request, &bytes, &response_ctx) {
            Some(translated) => (translated?, None),
            None => (openai_body(&route.provider, &bytes)?, Some(bytes)),
        };
        self.whole_response(host, translated, forward, trace, None).map(|r| tag(r, route))
    }

    /// Read a successful non-streamed upstream body within the deadline.
    async fn upstream_body<H: Host>(
        &self,
        host: &H,
        provider: &str,
        upstream: OutboundResponse,
        deadline: u64,
        trace: &Trace,
    ) -> Result<Vec<u8>, GatewayError> {
        let remaining = deadline.saturating_sub(host.now_ms()).max(1);
        match with_timeout(host, remaining, read_body(upstream.body, MAX_UPSTREAM_BODY)).await {
            None => Err(GatewayError::UpstreamTimeout { provider: provider.into(), after_ms: deadline - trace.started_ms }),
            Some(Err(BodyReadError::TooLarge)) => {
                Err(GatewayError::UpstreamInvalidResponse { provider: provider.into(), detail: "body too large".into() })
            }
            Some(Err(BodyReadError::Broken(_))) => Err(GatewayError::UpstreamStreamBroken { provider: provider.into() }),
            Some(Ok(bytes)) => Ok(bytes),
        }
    }

    /// Plan the route of a multi-target model (residency first, then health, conditions,
    /// canary and the strategy) and try its targets in order, falling back on the failures the
    /// route names. Nothing is retried once a response head has been accepted, so a stream never
    /// falls back after its first byte reached the client.
    #[allow(clippy::too_many_arguments)]
    async fn routed_call<'c, H: Host>(
        &self,
        config: &'c Config,
        caller: &Caller,
        route: &ModelRoute,
        spec: &'c policy::route::RouteSpec,
        request: &ChatRequest,
        headers: &[(String, String)],
        facts: &crate::host::RequestFacts,
        host: &H,
        trace: &mut Trace,
    ) -> Result<(ModelRoute, &'c ProviderConfig, OutboundResponse, u64, Option<String>), GatewayError> {
        use policy::route::{backoff_ms, exceeds_cap, should_fall_back, RouteError};
        let route_facts = route_facts(config, caller, request, headers, facts, &trace.metadata);
        let spec = policy::route::resolve_route(spec, &route_facts, &config.routes).map_err(|e| route_error(&route.name, e))?;
        let now = host.now_ms();
        let (carbon_table, carbon_data) = self.carbon_table(config, host).await;
        self.load_shared_health(host, now).await;
        let plan = {
            let health = self.health.borrow();
            let carbon = carbon_table.as_deref().unwrap_or_else(|| policy::route::CarbonTable::shipped());
            policy::route::plan_with_tables(spec, &route_facts, &health, now, host.random_u64(), policy::route::GeoTable::shipped(), carbon)
        }
        .map_err(|e| route_error(&route.name, e))?;
        let mut fallbacks: Vec<String> = Vec::new();
        let mut last_error = None;
        for (n, attempt) in plan.attempts.iter().enumerate() {
            let target = &spec.targets[attempt.index];
            if attempt.probe {
                self.health.borrow_mut().entry(&target.id).record_probe(host.now_ms());
            }
            let target_route = ModelRoute {
                name: route.name.clone(),
                provider: target.provider.clone(),
                upstream_model: target.model.clone(),
                kind: route.kind,
                guard: route.guard.clone(),
            };
            let provider = config.providers.get(&target.provider).expect("validated: every target names a configured provider");
            trace.provider = Some(target.provider.clone());
            trace.upstream_model = Some(target.model.clone());
            let started = host.now_ms();
            let result = call_provider(config, &target_route, host, trace, |ctx| provider::chat(provider, &target_route, request.clone(), ctx)).await;
            let failure = match result {
                Ok((upstream, deadline)) => {
                    self.health.borrow_mut().entry(&target.id).record_success(host.now_ms().saturating_sub(started), host.now_ms());
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
                    trace.route = Some(RouteSummary {
                        target: target.id.clone(),
                        region: target.region.clone(),
                        jurisdiction: target.jurisdiction.clone(),
                        reason: if n == 0 { attempt.reason.to_string() } else { fallbacks.join(", ") },
                        variant: plan.variant.clone(),
                        excluded: plan.excluded.iter().map(|(id, r)| format!("{id}:{}", r.short())).collect(),
                        attempts: n as u32 + 1,
                        estimated_gco2e: plan.estimates.iter().find(|e| e.index == attempt.index).map(|e| e.gco2e),
                        default_gco2e: plan.default_gco2e,
                        saving_gco2e: plan.estimates.iter().find(|e| e.index == attempt.index).map(|e| plan.default_gco2e - e.gco2e),
                        params_b: target.params_b,
                        provider: target.provider.clone(),
                        gco2e: None,
                        carbon_data: carbon_data.label(),
                        carbon_table: carbon_table.clone(),
                    });
                    self.share_health(host);
                    return Ok((target_route, provider, upstream, deadline, Some(header)));
                }
                Err(error) => error,
            };
            let Some(kind) = failure_kind(&failure) else { return Err(failure) };
            self.health.borrow_mut().entry(&target.id).record_failure(kind, host.now_ms());
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
        self.share_health(host);
        Err(last_error.unwrap_or_else(|| route_error(&route.name, RouteError::EmptyRoute { route: route.name.clone() })))
    }

    /// Adopt what other isolates observed (latency averages, open circuits) for targets this
    /// isolate has no observation of yet; re-read every [`HEALTH_SYNC_MS`].
    async fn load_shared_health<H: Host>(&self, host: &H, now: u64) {
        let (read_at, written_at) = self.health_sync.get();
        if read_at.is_some_and(|at| now.saturating_sub(at) < HEALTH_SYNC_MS) {
            return;
        }
        self.health_sync.set((Some(now), written_at));
        let Ok(Some(text)) = host.kv_get(HEALTH_KV_KEY).await else { return };
        let Ok(shared) = serde_json::from_str::<policy::route::HealthView>(&text) else { return };
        let mut health = self.health.borrow_mut();
        for (id, state) in shared.targets {
            health.targets.entry(id).or_insert(state);
        }
    }

    /// Write this isolate's view to the host's store in the background, at most every
    /// [`HEALTH_SYNC_MS`]: the next isolate (or location) starts from observed latencies.
    fn share_health<H: Host>(&self, host: &H) {
        let now = host.now_ms();
        let (read_at, written_at) = self.health_sync.get();
        if written_at != 0 && now.saturating_sub(written_at) < HEALTH_SYNC_MS {
            return;
        }
        self.health_sync.set((read_at, now));
        let Ok(text) = serde_json::to_string(&*self.health.borrow()) else { return };
        let store = host.clone();
        host.wait_until(async move {
            let _ = store.kv_put(HEALTH_KV_KEY, &text).await; // best effort: sharing is an optimisation
        });
    }

    /// Guard a whole completion's output (before it is rendered in another API's format).
    fn guarded_completion(&self, mut value: Value, trace: &mut Trace, guard: Option<&mut RequestGuard>) -> Result<Value, GatewayError> {
        if let Some(guard) = guard {
            let checked = guard.guard_completion(&mut value);
            trace.guard = Some(guard.summary());
            checked?;
        }
        Ok(value)
    }

    /// Record the usage of a whole (translated) response, guard its output, and answer.
    /// `forward` is the upstream's own OpenAI-format body, sent byte for byte unless a guard
    /// changed it.
    fn whole_response<H: Host>(
        &self,
        host: &H,
        translated: Translated,
        forward: Option<Vec<u8>>,
        trace: &mut Trace,
        guard: Option<&mut RequestGuard>,
    ) -> Result<Response, GatewayError> {
        trace.usage = translated.usage;
        trace.provider_usage = translated.raw_usage;
        let mut value = translated.body;
        let mut modified = forward.is_none();
        if let Some(guard) = guard {
            let checked = guard.guard_completion(&mut value);
            trace.guard = Some(guard.summary());
            modified |= checked?;
        }
        let duration = host.now_ms().saturating_sub(trace.started_ms);
        host.emit(&trace.event(200, Outcome::Completed, None, duration));
        match forward {
            Some(bytes) if !modified => Ok(Response::json_bytes(200, bytes)),
            _ => Ok(Response::json(200, &value)),
        }
    }
}

/// What the chat stage needs of the inbound request besides its body.
struct Inbound<'a> {
    headers: &'a [(String, String)],
    facts: &'a crate::host::RequestFacts,
    client: ClientApi,
}

/// How one routed request went, for the usage event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteSummary {
    pub target: String,
    pub region: String,
    pub jurisdiction: String,
    /// Why this target: the planner's reason, or the fallbacks that led to it.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    pub attempts: u32,
    /// The planner's estimate before the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_gco2e: Option<f64>,
    /// The estimate for the route's default target (the first in its order).
    pub default_gco2e: f64,
    /// `default_gco2e - estimated_gco2e`: what the choice saved against the default (negative
    /// when latency or cost outweighed carbon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saving_gco2e: Option<f64>,
    /// Estimated gCO2e of this request from its reported usage (energy per token by model size,
    /// the region's grid intensity; see docs/routing.md for the sources and the uncertainty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gco2e: Option<f64>,
    /// Where the carbon figures came from: `annual` (shipped table), `live` (the feed), or
    /// `stale` (a feed is configured but has no fresh values; annual figures were used).
    pub carbon_data: &'static str,
    #[serde(skip)]
    pub params_b: u32,
    #[serde(skip)]
    pub provider: String,
    /// The live table the estimate used (none: the shipped one).
    #[serde(skip)]
    pub carbon_table: Option<Rc<policy::route::CarbonTable>>,
}

/// What the planner knows of a request: location, residency, caller and size.
fn route_facts(
    config: &Config,
    caller: &Caller,
    request: &ChatRequest,
    headers: &[(String, String)],
    facts: &crate::host::RequestFacts,
    metadata: &std::collections::BTreeMap<String, String>,
) -> policy::route::RequestFacts {
    use std::collections::BTreeSet;
    let mut allowed: Option<BTreeSet<String>> = None;
    let mut restrict = |set: &BTreeSet<String>| {
        allowed = Some(match allowed.take() {
            None => set.clone(),
            Some(current) => current.intersection(set).cloned().collect(),
        });
    };
    if let Some(residency) = caller.tenant.as_ref().and_then(|t| config.tenants.get(t)).and_then(|t| t.residency.as_ref()) {
        restrict(residency);
    }
    if let (Some(eu), Some(true)) = (&config.residency.eu_visitors, facts.is_eu_country) {
        restrict(eu);
    }
    if let Some(name) = &config.residency.trusted_header {
        if let Some(value) = crate::http::find_header(headers, name) {
            let set: BTreeSet<String> = value.split(',').map(|j| j.trim().to_ascii_lowercase()).filter(|j| !j.is_empty()).collect();
            restrict(&set);
        }
    }
    let (input_tokens, _) = crate::tokenize::chat_input_tokens(request, false);
    policy::route::RequestFacts {
        country: facts.country.clone(),
        continent: facts.continent.clone(),
        coordinates: facts.coordinates,
        colo: facts.colo.clone(),
        allowed_jurisdictions: allowed,
        consumer: caller.consumer.clone(),
        tier: caller.tier.clone(),
        metadata: metadata.clone(),
        headers: headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
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

/// The API the client speaks on this request.
enum ClientApi {
    OpenAi,
    Anthropic(crate::messages::MessagesMeta),
}

/// Anthropic stream events for the client, from the pipeline's OpenAI chunks.
struct AnthropicEvents(crate::messages::AnthropicEventEncoder);

impl crate::stream::ClientEncoder for AnthropicEvents {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.0.push(chunk, out);
    }

    fn done(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        self.0.finish(usage, out);
    }

    fn error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        self.0.error(error, out);
    }
}

/// Reserve the request's estimated usage against every rate limit and budget that applies.
#[allow(clippy::too_many_arguments)]
async fn admit<H: Host>(
    config: &Config,
    caller: &Caller,
    route: &ModelRoute,
    provider: &ProviderConfig,
    request: &ChatRequest,
    headers: &[(String, String)],
    host: &H,
    trace: &Trace,
) -> Result<crate::quota::Reservation, GatewayError> {
    if config.quota.groups.is_empty() {
        return Ok(crate::quota::Reservation::default());
    }
    let openai_family = matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_));
    let (input_tokens, _) = crate::tokenize::chat_input_tokens(request, openai_family);
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let facts = crate::quota::QuotaFacts {
        key_id: caller.key_id.as_deref(),
        consumer: caller.consumer.as_deref(),
        tenant: caller.tenant.as_deref(),
        headers: &header_refs,
    };
    let output = request.max_output_tokens().map(|m| m.saturating_mul(request.choices()));
    crate::quota::admit(config, route, &facts, input_tokens, output, &trace.request_id, host).await
}

/// A whole OpenAI-format body as the gateway forwards it.
fn openai_body(provider: &str, bytes: &[u8]) -> Result<Translated, GatewayError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|_| GatewayError::UpstreamInvalidResponse { provider: provider.into(), detail: "the body is not JSON".into() })?;
    let usage = body.get("usage").and_then(Usage::from_openai);
    Ok(Translated { body, usage, raw_usage: None })
}

/// What the response translators need to build OpenAI objects for this request.
fn response_context<H: Host>(host: &H, trace: &Trace, route: &ModelRoute) -> ResponseContext {
    ResponseContext {
        id: format!("chatcmpl-{}", trace.request_id.trim_start_matches("req_")),
        created: host.now_ms() / 1000,
        model: route.upstream_model.clone(),
    }
}

/// Say which provider and upstream model answered.
fn tag(response: Response, route: &ModelRoute) -> Response {
    response
        .with_header("x-gateway-provider", route.provider.clone())
        .with_header("x-gateway-model", route.upstream_model.clone())
}

/// A compact JWS: three base64url parts, the header a JSON object (`eyJ`).
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Have the provider build its call, send it within the provider's timeout and check the
/// status. Returns the successful response and the deadline for reading its body.
async fn call_provider<H: Host>(
    config: &Config,
    route: &ModelRoute,
    host: &H,
    trace: &mut Trace,
    build: impl FnOnce(&ProviderContext<'_>) -> Result<Dispatch, GatewayError>,
) -> Result<(OutboundResponse, u64), GatewayError> {
    let secret = |name: &str| host.secret(name);
    let ctx = ProviderContext { provider_name: &route.provider, now_ms: host.now_ms(), secret: &secret };
    let dispatch = build(&ctx)?;
    let timeout_ms = config.timeout_for(&route.provider);
    let deadline = host.now_ms() + timeout_ms;
    let upstream = send(host, &route.provider, dispatch, timeout_ms).await?;
    let kind = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    let upstream = check_status(host, &route.provider, kind, upstream, deadline).await?;
    trace.latency_ms = Some(host.now_ms().saturating_sub(trace.started_ms));
    Ok((upstream, deadline))
}

/// Ask the configured moderation endpoint about the request's texts (after redaction).
async fn moderate<H: Host>(
    config: &Config,
    host: &H,
    moderation: &crate::config::Moderation,
    texts: Vec<String>,
    guard: &mut RequestGuard,
) -> Result<(), GatewayError> {
    if texts.is_empty() {
        return Ok(());
    }
    let Some(ProviderConfig::OpenAi(provider)) = config.providers.get(&moderation.provider) else {
        return Err(GatewayError::ModerationUnavailable);
    };
    let key = match &provider.api_key_secret {
        Some(name) => Some(host.secret(name).ok_or_else(|| GatewayError::MissingSecret { name: name.clone() })?),
        None => None,
    };
    let request = crate::guard::moderation_request(provider, &moderation.model, texts, key.as_deref());
    let call = async {
        let response = host.fetch(request).await.ok()?;
        if !(200..300).contains(&response.status) {
            return None;
        }
        let body = read_body(response.body, 1024 * 1024).await.ok()?;
        crate::guard::moderation_flagged(&body)
    };
    match with_timeout(host, moderation.timeout_ms, call).await.flatten() {
        Some(true) => {
            guard.report.record("moderation".into(), policy::guard::GuardAction::Block, policy::guard::Direction::Input);
            guard.report.blocked = Some(policy::guard::BlockReason::Rule("moderation".into()));
            Err(GatewayError::ContentBlocked { rule: "moderation".into(), output: false })
        }
        Some(false) => Ok(()),
        None if moderation.block_on_error => {
            guard.report.record("moderation_unavailable".into(), policy::guard::GuardAction::Block, policy::guard::Direction::Input);
            Err(GatewayError::ModerationUnavailable)
        }
        None => {
            guard.report.record("moderation_unavailable".into(), policy::guard::GuardAction::Log, policy::guard::Direction::Input);
            Ok(())
        }
    }
}

/// Find the model's route and provider and check the consumer may use it for this operation.
fn resolve<'c>(
    config: &'c Config,
    caller: &Caller,
    model: &str,
    kind: ModelKind,
    operation: &'static str,
    trace: &mut Trace,
) -> Result<(&'c ModelRoute, &'c ProviderConfig), GatewayError> {
    trace.model = Some(model.to_string());
    let route = config.models.get(model).ok_or_else(|| GatewayError::UnknownModel { model: model.to_string() })?;
    if !may_use(config, caller, model) {
        return Err(GatewayError::ModelNotAllowed { model: model.to_string() });
    }
    if route.kind != kind {
        return Err(GatewayError::UnsupportedOperation { model: model.to_string(), operation });
    }
    trace.provider = Some(route.provider.clone());
    trace.upstream_model = Some(route.upstream_model.clone());
    let provider = config.providers.get(&route.provider).expect("validated: every model names a configured provider");
    Ok((route, provider))
}

fn may_use(config: &Config, caller: &Caller, model: &str) -> bool {
    // A tenant-wide list bounds every caller of the tenant, whatever their own list says.
    let tenant_models = caller.tenant.as_deref().and_then(|t| config.tenants.get(t)).and_then(|t| t.models.as_ref());
    if tenant_models.is_some_and(|m| !m.allows(model)) {
        return false;
    }
    if let Some(key_models) = &caller.key_models {
        // A virtual key: its own list, within its consumer's when the consumer is configured.
        let consumer_allows = config.access_for(caller.consumer.as_deref()).is_none_or(|a| a.allows(model));
        return key_models.allows(model) && consumer_allows;
    }
    match (&caller.consumer, caller.via_jwt, &config.jwt) {
        (None, ..) => true,
        (Some(_), true, Some(jwt)) => caller.tier.as_ref().and_then(|t| jwt.tiers.get(t)).unwrap_or(&jwt.models).allows(model),
        (Some(_), true, None) => false,
        (Some(_), false, _) => config.access_for(caller.consumer.as_deref()).is_some_and(|a| a.allows(model)),
    }
}

fn model_object(route: &ModelRoute) -> Value {
    json!({ "id": route.name, "object": "model", "created": 0, "owned_by": route.provider })
}

fn list_models(config: &Config, caller: &Caller) -> Response {
    let data: Vec<Value> = config
        .models
        .values()
        .filter(|route| may_use(config, caller, &route.name))
        .map(model_object)
        .collect();
    Response::json(200, &json!({ "object": "list", "data": data }))
}

fn get_model(config: &Config, caller: &Caller, id: &str) -> Result<Response, GatewayError> {
    match config.models.get(id) {
        Some(route) if may_use(config, caller, id) => Ok(Response::json(200, &model_object(route))),
        _ => Err(GatewayError::UnknownModel { model: id.to_string() }),
    }
}

pub(crate) enum BodyReadError {
    TooLarge,
    Broken(String),
}

/// Collect a body, refusing more than `limit` bytes without reading further.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyReadError> {
    match body {
        Body::Empty => Ok(Vec::new()),
        Body::Bytes(bytes) if bytes.len() > limit => Err(BodyReadError::TooLarge),
        Body::Bytes(bytes) => Ok(bytes),
        Body::Stream(mut stream) => {
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BodyReadError::Broken(e.0))?;
                if out.len() + chunk.len() > limit {
                    return Err(BodyReadError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        }
    }
}

/// Check the content type and read the body within the configured limit.
/// The key-value key of a JWKS URL's last fetched document.
fn jwks_kv_key(url: &str) -> String {
    format!("jwks:{}", &hex::encode(policy::auth::key_digest(url))[..32])
}

/// A JSON request body parsed as a value (the admin API's bodies).
pub(crate) async fn read_json_value(request: Request, limit: usize) -> Result<Value, GatewayError> {
    let bytes = read_json_body(request, limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::InvalidJson { detail: e.to_string() })
}

async fn read_json_body(request: Request, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let content_type = request.header("content-type").map(str::to_string);
    let is_json = content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(GatewayError::UnsupportedContentType { got: content_type });
    }
    let declared = request.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match read_body(request.body, limit).await {
        Ok(bytes) if bytes.is_empty() => Err(GatewayError::InvalidJson { detail: "the body is empty".into() }),
        Ok(bytes) => Ok(bytes),
        Err(BodyReadError::TooLarge) => Err(GatewayError::BodyTooLarge { limit }),
        Err(BodyReadError::Broken(detail)) => Err(GatewayError::BodyRead { detail }),
    }
}

/// Run `future` unless `ms` pass first.
pub(crate) async fn with_timeout<H: Host, T>(host: &H, ms: u64, future: impl Future<Output = T>) -> Option<T> {
    let future = Box::pin(future);
    let timer = Box::pin(host.sleep(ms));
    match select(future, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_and_without_trailing_slash() {
        assert_eq!(Route::from_path("/v1/chat/completions/"), Some(Route::ChatCompletions));
        assert_eq!(Route::from_path("/v1/models/org/model-1"), Some(Route::GetModel("org/model-1".into())));
        assert_eq!(Route::from_path("/v1/models/"), Some(Route::ListModels));
        assert_eq!(Route::from_path("/v2/chat"), None);
    }
}
