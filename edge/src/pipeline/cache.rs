//! The cache stage: answer a request from the exact response cache, or let it go upstream and
//! store the answer afterwards (docs/cache.md).
//!
//! It runs after the input guard and before the limit stage:
//! - **after the input guard**, because what is hashed is the request as it will be sent
//!   upstream: the answer is a function of what the model saw, so a request the guard rewrote
//!   (redacted, placeholders) finds the entry of the same rewritten text, and a blocked request
//!   never reaches the cache. The guard profile is part of the key, and the stored answer is the
//!   upstream's, before the output guard: every replay goes through the replaying request's own
//!   output guard (its placeholders restored, its rules applied), so no answer crosses profiles
//!   or callers in a form another guard produced;
//! - **before the limit stage**, because a hit is charged differently: one request against the
//!   request-rate limits and no tokens or cost (`limit::reserve_request_only`).
//!
//! The semantic tier (mode `semantic`) runs after an exact miss: it embeds the query text, asks
//! the vector index of the request's partition for similar earlier queries, and serves the
//! exact entry of the first candidate that passes `policy::cache::semantic_verdict`; after a
//! miss, the fill indexes the query's vector (the lookup's embedding) beside the exact entry.
//! A failure of the tier (embedding, index) is a miss recorded in the event, never an error.
//!
//! Single flight: the first miss of a key in an isolate leads; identical misses while it is
//! upstream wait for its answer (at most the provider's timeout, on the host's clock) and are
//! served from it, or go upstream themselves when it produced nothing cacheable.

use std::rc::Rc;

use serde_json::Value;

use policy::cache::{partition_id, query_text, semantic_verdict, QueryFeatures, QueryScope, SemanticVerdict, Turn, DEFAULT_SIMILARITY_THRESHOLD};

use crate::cache::{chat_context_hash, chat_key, chat_turns, embeddings_key, CacheDirectives, CacheKey, CachedAnswer, EntryKind, KeyParts, SemanticEntry};
use crate::config::{CacheMode, CacheScope, CacheSettings, Config, ModelRoute, ProviderConfig, SemanticQuery, SemanticSettings};
use crate::error::GatewayError;
use crate::event::{CacheSaving, CacheStatus, CacheSummary};
use crate::host::{with_timeout, Body, CachePlacement, Host, OutboundResponse, VectorPartition};
use crate::http::Response;
use crate::isolate::flights::FlightLeader;
use crate::isolate::IsolateState;
use crate::openai::{ChatRequest, EmbeddingsRequest, Usage};
use crate::pipeline::context::RequestContext;
use crate::pipeline::dispatch::{embed_text, Dispatched};

/// The vector index the semantic tier's queries live in (`VectorPartition::index`).
pub const SEMANTIC_INDEX: &str = "responses";

/// Candidates the semantic tier asks the index for; each is checked, best first.
pub const SEMANTIC_TOP_K: usize = 4;

/// What the lookup decided.
pub enum Lookup {
    /// No cache applies to this request.
    Off,
    /// Answer with this stored entry.
    Hit(CachedAnswer),
    /// Go upstream; the fill stores the answer if it qualifies.
    Upstream(Fill),
}

/// Where and how an upstream answer is stored once it completed successfully.
pub struct Fill {
    key: CacheKey,
    placement: CachePlacement,
    ttl_s: u64,
    max_entry_bytes: usize,
    /// `false` under `no-store` or when no tier may hold this caller's data here.
    store: bool,
    /// Set when this request leads the key's single flight.
    leader: Option<FlightLeader>,
    /// The scope the key was made for (the semantic partition's too).
    scope: String,
    /// The client's `max-age`: a semantic candidate's entry must be that fresh too.
    max_age_s: Option<u64>,
    /// After a semantic miss: where and what to index once the answer is stored.
    semantic: Option<SemanticFill>,
}

/// A semantic-mode request's query, embedded once by the lookup and indexed by the fill.
struct SemanticFill {
    partition: String,
    jurisdiction: Option<&'static str>,
    query: String,
    vector: Vec<f32>,
}

impl SemanticFill {
    fn at(&self) -> VectorPartition<'_> {
        VectorPartition { index: SEMANTIC_INDEX, partition: &self.partition, jurisdiction: self.jurisdiction }
    }
}

/// The request's chat entry, if a cache applies: look it up (or not, per the directives); in
/// semantic mode, after an exact miss, the entry of a similar earlier query.
pub async fn lookup_chat<H: Host>(
    state: &IsolateState,
    config: &Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    request: &ChatRequest,
    guard_profile: Option<&str>,
    host: &H,
) -> Result<Lookup, GatewayError> {
    let lookup = lookup(state, config, ctx, route, guard_profile, host, |parts| chat_key(parts, request)).await?;
    let Lookup::Upstream(mut fill) = lookup else { return Ok(lookup) };
    // Not after a bypass: `no-cache` asked for a fresh answer, or no tier may hold this data here.
    let missed = ctx.cache.as_ref().is_some_and(|c| c.status == CacheStatus::Miss);
    if let (true, Some(CacheMode::Semantic(settings))) = (missed, settings_for(config, ctx, route).map(|s| &s.mode)) {
        let query = SemanticRequest { request, guard_profile, route, settings };
        if let Some(hit) = semantic_lookup(config, ctx, &mut fill, &query, host).await {
            return Ok(hit);
        }
    }
    Ok(Lookup::Upstream(fill))
}

/// The request's embeddings entry, if a cache applies.
pub async fn lookup_embeddings<H: Host>(
    state: &IsolateState,
    config: &Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    request: &EmbeddingsRequest,
    host: &H,
) -> Result<Lookup, GatewayError> {
    lookup(state, config, ctx, route, None, host, |parts| embeddings_key(parts, request)).await
}

/// What the semantic tier looks at of a chat request.
struct SemanticRequest<'r> {
    request: &'r ChatRequest,
    guard_profile: Option<&'r str>,
    route: &'r ModelRoute,
    settings: &'r SemanticSettings,
}

/// The semantic tier's lookup after an exact miss: embed the query, search its partition, and
/// serve the exact entry of the first candidate that passes the verdict. On a miss, leaves what
/// the fill indexes in `fill.semantic` (when the request has a query and its embedding worked).
async fn semantic_lookup<H: Host>(config: &Config, ctx: &mut RequestContext, fill: &mut Fill, query: &SemanticRequest<'_>, host: &H) -> Option<Lookup> {
    let scope = match query.settings.query {
        SemanticQuery::LastUserTurn => QueryScope::LastUserTurn,
        SemanticQuery::Conversation => QueryScope::Conversation,
    };
    let turns = chat_turns(query.request)?;
    let turns: Vec<Turn<'_>> = turns.iter().map(|(role, text)| Turn { role, text }).collect();
    let text = query_text(&turns, scope)?;
    let partition = partition_id(&fill.scope, &query.route.name, &chat_context_hash(query.guard_profile, query.request));
    let embedded = embed_text(config, &query.settings.embedding_model, &text, host, ctx).await;
    let summary = ctx.cache.get_or_insert(CacheSummary::of(CacheStatus::Miss));
    let vector = match embedded {
        Ok((vector, usage)) => {
            summary.embedding_tokens = usage.map(|u| u.total_tokens);
            vector
        }
        Err(error) => {
            summary.semantic_error = Some(format!("embedding: {}", error.label()));
            return None;
        }
    };
    let semantic = SemanticFill { partition, jurisdiction: jurisdiction_of(fill.placement), query: text, vector };
    let found = semantic_candidate(fill, &semantic, query.settings, host).await;
    let embedding_tokens = summary.embedding_tokens;
    match found {
        Ok(Some((entry, similarity))) => {
            let hit = hit(config, ctx, entry, CacheStatus::SemanticHit, host);
            if let Some(summary) = ctx.cache.as_mut() {
                summary.similarity = Some(similarity);
                summary.embedding_tokens = embedding_tokens;
            }
            Some(hit)
        }
        Ok(None) => {
            fill.semantic = Some(semantic);
            None
        }
        Err(()) => {
            summary.semantic_error = Some("index: unavailable".into());
            // The index may be back for the store: the embedding is paid for already.
            fill.semantic = Some(semantic);
            None
        }
    }
}

/// The first of the partition's nearest queries that may answer this one, with its stored entry
/// and similarity; `Err` when the index could not be asked.
async fn semantic_candidate<H: Host>(fill: &Fill, semantic: &SemanticFill, settings: &SemanticSettings, host: &H) -> Result<Option<(CachedAnswer, f32)>, ()> {
    let candidates = host.vector_query(&semantic.at(), &semantic.vector, SEMANTIC_TOP_K).await.map_err(|_| ())?;
    let threshold = settings.threshold.unwrap_or(DEFAULT_SIMILARITY_THRESHOLD);
    let features = QueryFeatures::extract(&semantic.query);
    for candidate in candidates {
        let Some(stored) = SemanticEntry::decode(&candidate.metadata) else { continue };
        if semantic_verdict(candidate.score, threshold, &features, &QueryFeatures::extract(&stored.query)) != SemanticVerdict::Hit {
            continue;
        }
        // The index outlives the exact entries it points at: a gone or stale one is passed over.
        let bytes = host.cache_get(&stored.key, fill.placement).await.ok().flatten();
        let fresh = |e: &CachedAnswer| e.kind == EntryKind::Chat && e.fresh(host.now_ms(), fill.max_age_s);
        if let Some(entry) = bytes.as_deref().and_then(CachedAnswer::decode).filter(fresh) {
            return Ok(Some((entry, candidate.score)));
        }
    }
    Ok(None)
}

/// The vector partition's jurisdiction for an exact-cache placement: a residency-bound tenant's
/// entries live only in the location's tier inside the EU (see [`placement`]), so its vectors
/// live only in an EU-pinned index, never in a global one.
fn jurisdiction_of(placement: CachePlacement) -> Option<&'static str> {
    match placement {
        CachePlacement::Anywhere => None,
        CachePlacement::LocalOnly => Some("eu"),
    }
}

fn settings_for<'c>(config: &'c Config, ctx: &RequestContext, route: &ModelRoute) -> Option<&'c CacheSettings> {
    config.cache.for_request(ctx.caller.api_consumer(), ctx.caller.tenant.as_deref(), &route.name)
}

async fn lookup<H: Host>(
    state: &IsolateState,
    config: &Config,
    ctx: &mut RequestContext,
    route: &ModelRoute,
    guard_profile: Option<&str>,
    host: &H,
    key_of: impl FnOnce(KeyParts<'_>) -> CacheKey,
) -> Result<Lookup, GatewayError> {
    let Some(settings) = settings_for(config, ctx, route) else { return Ok(Lookup::Off) };
    let directives = CacheDirectives::from_headers(&ctx.headers)?;
    let mut scope = scope_of(&settings.scope, ctx);
    if let Some(namespace) = &directives.namespace {
        // A namespace only narrows the caller's own scope: it is appended, never a scope itself.
        scope = format!("{scope}/ns:{namespace}");
    }
    let key = key_of(KeyParts { scope: &scope, model: &route.name, guard_profile });
    let ttl_s = directives.ttl_s.map_or(settings.ttl_s, |ttl| ttl.min(settings.ttl_s));
    let Some(placement) = placement(config, ctx) else {
        // No tier may hold this caller's data at this location: neither read nor written.
        let max_entry_bytes = settings.max_entry_bytes;
        let fill = Fill { key, placement: CachePlacement::LocalOnly, ttl_s, max_entry_bytes, store: false, leader: None, scope, max_age_s: None, semantic: None };
        return Ok(upstream(ctx, CacheStatus::Bypass, fill));
    };
    let fill = |leader| Fill {
        key: key.clone(),
        placement,
        ttl_s,
        max_entry_bytes: settings.max_entry_bytes,
        store: !directives.no_store,
        leader,
        scope: scope.clone(),
        max_age_s: directives.max_age_s,
        semantic: None,
    };
    if directives.no_cache {
        return Ok(upstream(ctx, CacheStatus::Bypass, fill(None)));
    }
    let now = host.now_ms();
    let stored = host.cache_get(&key.0, placement).await.ok().flatten();
    if let Some(entry) = stored.as_deref().and_then(CachedAnswer::decode).filter(|e| e.fresh(now, directives.max_age_s)) {
        return Ok(hit(config, ctx, entry, CacheStatus::Hit, host));
    }
    if let Some(flight) = state.cache_flights.join(&key.0) {
        let wait_ms = config.timeout_for(&route.provider);
        if let Some(Ok(bytes)) = with_timeout(host, wait_ms, flight).await {
            if let Some(entry) = CachedAnswer::decode(&bytes).filter(|e| e.fresh(host.now_ms(), directives.max_age_s)) {
                return Ok(hit(config, ctx, entry, CacheStatus::Hit, host));
            }
        }
    }
    // A request that will not store leads nothing: its waiters would wait for nothing.
    let leader = (!directives.no_store && state.cache_flights.join(&key.0).is_none()).then(|| state.cache_flights.lead(&key.0));
    Ok(upstream(ctx, CacheStatus::Miss, fill(leader)))
}

fn upstream(ctx: &mut RequestContext, status: CacheStatus, fill: Fill) -> Lookup {
    ctx.cache = Some(CacheSummary::of(status));
    Lookup::Upstream(fill)
}

/// Record the hit (exact or semantic) and what it saved: the stored call's usage at today's
/// prices and its carbon.
fn hit<H: Host>(config: &Config, ctx: &mut RequestContext, entry: CachedAnswer, status: CacheStatus, host: &H) -> Lookup {
    let saved = entry.usage.map(|usage| {
        let tokens = crate::pipeline::limit::token_usage(&usage);
        let prices = &config.quota.prices;
        let cost = prices.cost(&entry.upstream_model, &tokens).or_else(|| ctx.model.as_deref().and_then(|m| prices.cost(m, &tokens)));
        CacheSaving {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens,
            cost_nanos: cost.map(|c| c.0),
            gco2e: entry.gco2e,
        }
    });
    ctx.cache = Some(CacheSummary { age_s: Some(entry.age_s(host.now_ms())), saved, ..CacheSummary::of(status) });
    Lookup::Hit(entry)
}

/// The scope entries are shared in, from the setting and the caller.
fn scope_of(scope: &CacheScope, ctx: &RequestContext) -> String {
    let consumer = || match ctx.caller.consumer_key() {
        Some(consumer) => format!("consumer:{consumer}"),
        // Authentication is off: every caller is the same anonymous one.
        None => "anonymous".to_string(),
    };
    match scope {
        CacheScope::Consumer => consumer(),
        CacheScope::Tenant => ctx.caller.tenant.as_ref().map_or_else(consumer, |tenant| format!("tenant:{tenant}")),
        CacheScope::Shared(name) => format!("shared:{name}"),
    }
}

/// Where this caller's entries may live, or `None` when nowhere at this location. A tenant with
/// a residency constraint keeps entries out of any global tier, and in the location's tier only
/// where the platform says the request is in the EU and the tenant's residency includes `eu`
/// (the only jurisdiction a location reports); anywhere else its answers are not cached.
fn placement(config: &Config, ctx: &RequestContext) -> Option<CachePlacement> {
    let residency = ctx.caller.tenant.as_ref().and_then(|t| config.tenants.get(t)).and_then(|t| t.residency.as_ref());
    match residency {
        None => Some(CachePlacement::Anywhere),
        Some(allowed) if allowed.contains("eu") && ctx.location.is_eu_country == Some(true) => Some(CachePlacement::LocalOnly),
        Some(_) => None,
    }
}

impl Fill {
    /// Store a completed answer (an OpenAI-format body as the upstream gave it) and hand it to
    /// the single flight's waiters. The write runs after the response; an entry larger than
    /// `max_entry_bytes` is not stored (the waiters go upstream).
    pub fn store<H: Host>(mut self, host: &H, ctx: &RequestContext, kind: EntryKind, body: Value, usage: Option<Usage>) {
        if !self.store {
            return;
        }
        let provider = ctx.provider.as_deref().unwrap_or_default();
        let upstream_model = ctx.upstream_model.as_deref().unwrap_or_default();
        let mut entry = CachedAnswer::new(kind, host.now_ms(), self.ttl_s, body, usage, provider, upstream_model);
        entry.gco2e = usage.map(|usage| estimated_gco2e(ctx, &usage));
        let bytes = entry.encode();
        if bytes.len() > self.max_entry_bytes {
            return;
        }
        if let Some(semantic) = self.semantic.take() {
            // Indexed beside the entry it points at, with the embedding the lookup made.
            let metadata = SemanticEntry { query: semantic.query.clone(), key: self.key.0.clone() }.encode();
            let (id, index_host) = (self.key.0.clone(), host.clone());
            host.wait_until(async move {
                let _ = index_host.vector_upsert(&semantic.at(), &id, &semantic.vector, &metadata).await;
            });
        }
        let bytes = Rc::new(bytes);
        if let Some(leader) = self.leader.take() {
            leader.publish(bytes.clone());
        }
        let (key, placement, ttl_s, store_host) = (self.key.0.clone(), self.placement, self.ttl_s, host.clone());
        host.wait_until(async move {
            let _ = store_host.cache_put(&key, bytes.to_vec(), ttl_s, placement).await;
        });
    }
}

/// The gCO2e the call that produced an answer is estimated to have used: the route's estimate
/// when it was routed, else the shipped table for a 70B-class model in an unknown region.
fn estimated_gco2e(ctx: &RequestContext, usage: &Usage) -> f64 {
    match &ctx.route {
        Some(route) => {
            let table = route.carbon_table.as_deref().unwrap_or_else(|| policy::route::CarbonTable::shipped());
            table.gco2e(usage.input_tokens, usage.output_tokens, route.params_b, &route.provider, &route.region)
        }
        None => policy::route::CarbonTable::shipped().gco2e(usage.input_tokens, usage.output_tokens, 70, ctx.provider.as_deref().unwrap_or_default(), ""),
    }
}

/// A hit as the answer of an upstream that spoke OpenAI: the respond stage then translates,
/// guards and streams it like any answer. A streamed request gets the stored answer as the
/// OpenAI stream that delivers it.
pub fn replayed<'c>(entry: &CachedAnswer, route: &ModelRoute, provider: &'c ProviderConfig, ctx: &RequestContext, stream: bool, now_ms: u64) -> Dispatched<'c> {
    let (content_type, body) = if stream {
        let id = format!("chatcmpl-{}", ctx.request_id.trim_start_matches("req_"));
        ("text/event-stream", crate::cache::replay_stream(&entry.body, &id, now_ms / 1000))
    } else {
        ("application/json", serde_json::to_vec(&entry.body).unwrap_or_default())
    };
    Dispatched {
        route: route.clone(),
        provider,
        upstream: OutboundResponse { status: 200, headers: vec![("content-type".into(), content_type.into())], body: Body::Bytes(body) },
        deadline: now_ms,
        route_header: None,
        scrub: Default::default(),
    }
}

/// The `x-gateway-cache`, (on a semantic hit) `x-gateway-cache-similarity` and (on a hit)
/// `age` headers.
pub fn tag(response: Response, ctx: &RequestContext) -> Response {
    match &ctx.cache {
        None => response,
        Some(summary) => {
            let mut response = response.with_header("x-gateway-cache", summary.status.header_value().to_string());
            if let Some(similarity) = summary.similarity {
                response = response.with_header("x-gateway-cache-similarity", format!("{similarity:.4}"));
            }
            match summary.age_s {
                Some(age) => response.with_header("age", age.to_string()),
                None => response,
            }
        }
    }
}
