//! The gateway configuration document, parsed in two phases.
//!
//! Phase one reads the raw JSON with `deny_unknown_fields`, so a typo is an error that names its
//! path rather than a silently ignored key. Phase two validates the whole document and converts it
//! into the types the pipeline uses (resolved provider references, parsed key digests, bounded
//! limits), reporting every problem at once, each with its path.
//!
//! Secrets are never values in the document: a provider names the secret (`api_key_secret`) and
//! the host resolves it at request time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use policy::{ConsumerKey, KeyTable, ModelAccess};
use serde::Deserialize;

/// One problem in the configuration, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Phase one: the raw document.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "$schema")]
    _schema: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    cors: Option<RawCors>,
    #[serde(default)]
    guards: BTreeMap<String, RawGuard>,
    providers: BTreeMap<String, RawProvider>,
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    budgets: Vec<RawBudget>,
    /// USD per million tokens, by model name (configured or upstream; `prefix*` allowed).
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    quota: RawQuota,
    /// The admin API's credential; without it `/admin/` does not exist.
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    residency: RawResidency,
    /// Live grid carbon intensity (Electricity Maps), refreshed on a schedule into KV.
    #[serde(default)]
    carbon_feed: Option<RawCarbonFeed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarbonFeed {
    #[serde(default)]
    base_url: Option<String>,
    /// The NAME of the secret holding the Electricity Maps API token.
    token_secret: String,
    /// Cloud region (as in targets' `region`) -> Electricity Maps zone (e.g. `DE`).
    zones: BTreeMap<String, String>,
    #[serde(default)]
    max_age_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    key_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    /// Where the tenant's counters (and, with routing, its data) must stay, e.g. `eu`.
    #[serde(default)]
    jurisdiction: Option<String>,
    /// Jurisdictions the tenant's requests may be processed in (default: `[jurisdiction]`).
    #[serde(default)]
    residency: Option<Vec<String>>,
    /// Models every caller of the tenant may use at most (on top of each caller's own list).
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Labels for routing conditions and the usage event (a consumer's own metadata wins).
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    scope: Vec<String>,
    metric: String,
    window: String,
    limit: u64,
    #[serde(default)]
    on_store_error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    scope: Vec<String>,
    window: String,
    /// Decimal USD, e.g. "100.00".
    usd: String,
    #[serde(default)]
    alerts: Vec<u16>,
    /// `false`: count and alert only, never refuse.
    #[serde(default = "yes")]
    hard: bool,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    on_store_error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: String,
    #[serde(default)]
    cached_input: Option<String>,
    output: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    /// Output tokens reserved when a request sets no `max_tokens`.
    #[serde(default)]
    default_max_output_tokens: Option<u64>,
    /// Longest wait for the counter store before its failure mode applies.
    #[serde(default)]
    store_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(default)]
    pii: BTreeMap<String, String>,
    #[serde(default)]
    reversible: bool,
    #[serde(default)]
    injection: Option<RawInjection>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default = "yes")]
    output: bool,
    #[serde(default)]
    moderation: Option<RawModeration>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInjection {
    threshold: f32,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    pattern: String,
    action: String,
    #[serde(default)]
    on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModeration {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    on_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    stream_idle_timeout_ms: Option<u64>,
    config_refresh_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum RawAuth {
    None,
    ApiKeys { consumers: Vec<RawConsumer> },
    /// Bearer JWTs from an identity provider; API-key consumers may be listed as well.
    Jwt {
        jwt: Box<RawJwt>,
        #[serde(default)]
        consumers: Vec<RawConsumer>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    leeway_secs: Option<u64>,
    #[serde(default)]
    consumer_claim: Option<String>,
    #[serde(default)]
    tenant_claim: Option<String>,
    #[serde(default)]
    tier_claim: Option<String>,
    #[serde(default)]
    keys: Vec<RawJwtKey>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    jwks_refresh_ms: Option<u64>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtKey {
    #[serde(default)]
    kid: Option<String>,
    alg: String,
    #[serde(default)]
    pem: Option<String>,
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    /// The NAME of the secret holding an HS256 key (never the key itself).
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    models: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth::ApiKeys { consumers: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    id: String,
    key_sha256: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    guard: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    /// The default tier (as a JWT's tier claim would give), for routing conditions.
    #[serde(default)]
    tier: Option<String>,
    /// Free-form labels (team, cost centre...) for routing conditions and the usage event.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allow_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawProvider {
    /// OpenAI itself and every OpenAI-compatible API: one implementation, per-provider defaults.
    Openai(RawOpenAiFamily),
    Mistral(RawOpenAiFamily),
    Groq(RawOpenAiFamily),
    Together(RawOpenAiFamily),
    Deepseek(RawOpenAiFamily),
    Ollama(RawOpenAiFamily),
    Vllm(RawOpenAiFamily),
    /// Any other OpenAI-compatible URL (`base_url` required).
    OpenaiCompatible(RawOpenAiFamily),
    AzureOpenai(RawAzure),
    Anthropic(RawAnthropic),
    Gemini(RawGemini),
    Vertex(RawVertex),
    Bedrock(RawBedrock),
    Cohere(RawCohere),
    WorkersAi(RawWorkersAi),
    /// The built-in deterministic provider.
    Mock {},
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenAiFamily {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_secret: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzure {
    /// `https://{resource}.openai.azure.com` (or a custom domain / APIM front).
    base_url: String,
    api_version: String,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnthropic {
    #[serde(default)]
    base_url: Option<String>,
    api_key_secret: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGemini {
    #[serde(default)]
    base_url: Option<String>,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVertex {
    project: String,
    location: String,
    /// Secret holding an OAuth2 access token for the Vertex AI API.
    access_token_secret: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBedrock {
    region: String,
    access_key_id_secret: String,
    secret_access_key_secret: String,
    #[serde(default)]
    session_token_secret: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCohere {
    #[serde(default)]
    base_url: Option<String>,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkersAi {
    /// The Worker's AI binding name (e.g. `AI`): use `env.AI.run` where the host has it.
    #[serde(default)]
    binding: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    api_token_secret: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    /// The provider of a single-target model (or use `targets`).
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    upstream_model: Option<String>,
    /// Several places this model can be served from, and how to choose (docs/routing.md).
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    strategy: Option<policy::route::Strategy>,
    #[serde(default)]
    fallback_on: Option<BTreeSet<policy::route::FallbackTrigger>>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    backoff: Option<policy::route::Backoff>,
    #[serde(default)]
    circuit_breaker: Option<policy::route::CircuitBreaker>,
    #[serde(default)]
    conditions: Vec<policy::route::Condition>,
    #[serde(default, rename = "type")]
    kind: Option<ModelKind>,
    #[serde(default)]
    guard: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    id: String,
    provider: String,
    #[serde(default)]
    upstream_model: Option<String>,
    region: String,
    jurisdiction: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    canary: Option<u8>,
    /// Model size class in billions of parameters, for the energy estimate.
    #[serde(default)]
    params_b: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResidency {
    /// Jurisdictions allowed for requests entering at an EU location (`request.cf.isEUCountry`).
    #[serde(default)]
    eu_visitors: Option<Vec<String>>,
    /// A header set by a trusted proxy in front of the gateway naming the allowed jurisdictions
    /// (comma-separated). Only configure this when clients cannot set it themselves.
    #[serde(default)]
    trusted_header: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Phase two: validated types.

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Chat,
    Embeddings,
}

/// Size and time limits, already bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub upstream_timeout_ms: u64,
    pub stream_idle_timeout_ms: u64,
    pub config_refresh_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            upstream_timeout_ms: 120_000,
            stream_idle_timeout_ms: 60_000,
            config_refresh_ms: 30_000,
        }
    }
}

/// Which member of the OpenAI-compatible family a provider is: same wire format, different
/// defaults and small differences in what each accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiFlavor {
    OpenAi,
    Mistral,
    Groq,
    Together,
    DeepSeek,
    Ollama,
    Vllm,
    /// Cloudflare Workers AI's OpenAI-compatible REST endpoints.
    WorkersAi,
    /// Any other OpenAI-compatible URL.
    Compatible,
}

impl OpenAiFlavor {
    /// The public endpoint (or the usual local one) when `base_url` is not set.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            OpenAiFlavor::OpenAi => Some("https://api.openai.com/v1"),
            OpenAiFlavor::Mistral => Some("https://api.mistral.ai/v1"),
            OpenAiFlavor::Groq => Some("https://api.groq.com/openai/v1"),
            OpenAiFlavor::Together => Some("https://api.together.xyz/v1"),
            OpenAiFlavor::DeepSeek => Some("https://api.deepseek.com/v1"),
            OpenAiFlavor::Ollama => Some("http://localhost:11434/v1"),
            OpenAiFlavor::Vllm => Some("http://localhost:8000/v1"),
            OpenAiFlavor::WorkersAi | OpenAiFlavor::Compatible => None,
        }
    }

    /// Whether the upstream accepts `stream_options.include_usage` (the others report usage in
    /// their last chunk by themselves, or reject unknown parameters).
    pub fn accepts_stream_options(self) -> bool {
        !matches!(self, OpenAiFlavor::Mistral)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiProviderConfig {
    /// Base URL without trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Name of the secret that holds the API key; `None` for keyless local servers.
    pub api_key_secret: Option<String>,
    /// Overrides `limits.upstream_timeout_ms` for this provider.
    pub timeout_ms: Option<u64>,
    pub flavor: OpenAiFlavor,
}

/// Azure OpenAI: the model route's `upstream_model` is the deployment name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    /// `https://{resource}.openai.azure.com`, no trailing slash.
    pub base_url: String,
    pub api_version: String,
    pub api_key_secret: String,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicConfig {
    /// `https://api.anthropic.com` by default, no trailing slash.
    pub base_url: String,
    pub api_key_secret: String,
    /// The `anthropic-version` header, `2023-06-01` by default.
    pub version: String,
    pub timeout_ms: Option<u64>,
}

/// Google's Gemini models through the Generative Language API (API key) or Vertex AI (OAuth token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiConfig {
    pub api: GeminiApi,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeminiApi {
    /// `https://generativelanguage.googleapis.com` by default; key in `x-goog-api-key`.
    GenerativeLanguage { base_url: String, api_key_secret: String },
    /// `https://{location}-aiplatform.googleapis.com` by default; `Authorization: Bearer`.
    Vertex { base_url: String, project: String, location: String, access_token_secret: String },
}

/// AWS Bedrock Runtime, Converse and ConverseStream, signed with SigV4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockConfig {
    pub region: String,
    /// `https://bedrock-runtime.{region}.amazonaws.com` by default, no trailing slash.
    pub base_url: String,
    pub access_key_id_secret: String,
    pub secret_access_key_secret: String,
    pub session_token_secret: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// Workers AI through the Worker's AI binding (only where the host has it: Cloudflare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersAiBindingConfig {
    pub binding: String,
    pub timeout_ms: Option<u64>,
}

/// Cohere's v2 Chat and Embed APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohereConfig {
    /// `https://api.cohere.com` by default, no trailing slash.
    pub base_url: String,
    pub api_key_secret: String,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    OpenAi(OpenAiProviderConfig),
    Azure(AzureConfig),
    Anthropic(AnthropicConfig),
    Gemini(GeminiConfig),
    Bedrock(BedrockConfig),
    Cohere(CohereConfig),
    WorkersAiBinding(WorkersAiBindingConfig),
    Mock,
}

impl ProviderConfig {
    /// The provider's own timeout for the response head, if it sets one.
    pub fn timeout_ms(&self) -> Option<u64> {
        match self {
            ProviderConfig::OpenAi(p) => p.timeout_ms,
            ProviderConfig::Azure(p) => p.timeout_ms,
            ProviderConfig::Anthropic(p) => p.timeout_ms,
            ProviderConfig::Gemini(p) => p.timeout_ms,
            ProviderConfig::Bedrock(p) => p.timeout_ms,
            ProviderConfig::Cohere(p) => p.timeout_ms,
            ProviderConfig::WorkersAiBinding(p) => p.timeout_ms,
            ProviderConfig::Mock => None,
        }
    }

    /// Short kind name for events and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::OpenAi(_) => "openai",
            ProviderConfig::Azure(_) => "azure_openai",
            ProviderConfig::Anthropic(_) => "anthropic",
            ProviderConfig::Gemini(GeminiConfig { api: GeminiApi::GenerativeLanguage { .. }, .. }) => "gemini",
            ProviderConfig::Gemini(_) => "vertex",
            ProviderConfig::Bedrock(_) => "bedrock",
            ProviderConfig::Cohere(_) => "cohere",
            ProviderConfig::WorkersAiBinding(_) => "workers_ai",
            ProviderConfig::Mock => "mock",
        }
    }
}

/// A client-facing model name and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub kind: ModelKind,
    /// The guard profile for this model, unless the consumer has its own.
    pub guard: Option<String>,
}

/// An external moderation check (an OpenAI-compatible `/moderations` endpoint) run on inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub provider: String,
    pub model: String,
    pub timeout_ms: u64,
    /// Block the request when the moderation call fails or times out (fail closed).
    pub block_on_error: bool,
}

/// A named guard profile: the policy plus the optional external moderation call.
#[derive(Debug, Clone)]
pub struct GuardProfile {
    pub name: String,
    pub policy: policy::guard::GuardPolicy,
    pub moderation: Option<Moderation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
}

/// Bearer-JWT authentication, validated: static keys parsed, HS256 secrets by name, the JWKS
/// URL fetched and cached by the pipeline.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub rules: policy::identity::JwtRules,
    pub keys: policy::identity::JwtKeySet,
    /// HS256 keys: (kid, secret name), resolved through the host at request time.
    pub hmac_secrets: Vec<(Option<String>, String)>,
    pub jwks_url: Option<String>,
    pub jwks_refresh_ms: u64,
    /// Models a token holder may use unless its tier says otherwise (default: all).
    pub models: ModelAccess,
    pub tiers: BTreeMap<String, ModelAccess>,
}

/// A validated configuration. Construct it with [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    pub keys: KeyTable,
    /// Set when bearer JWTs are accepted.
    pub jwt: Option<JwtAuth>,
    pub access: BTreeMap<String, ModelAccess>,
    /// Guard profile per consumer that has one.
    pub consumer_guards: BTreeMap<String, String>,
    pub guards: BTreeMap<String, GuardProfile>,
    pub cors: Option<Cors>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelRoute>,
    /// The tenant of each API-key consumer that has one.
    pub consumer_tenants: BTreeMap<String, String>,
    /// Per configured consumer: default tier and metadata.
    pub consumer_profiles: BTreeMap<String, ConsumerProfile>,
    pub tenants: BTreeMap<String, Tenant>,
    pub quota: Quota,
    pub admin: Option<Admin>,
    pub carbon_feed: Option<CarbonFeed>,
    /// Models served by several targets, with how to choose among them.
    pub routes: BTreeMap<String, policy::route::RouteSpec>,
    pub residency: Residency,
}

/// What the configuration says about a consumer besides its key and access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerProfile {
    pub tier: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Where live carbon intensities come from (see `crate::carbon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonFeed {
    /// Electricity Maps API root, e.g. `https://api.electricitymap.org/v3`.
    pub base_url: String,
    pub token_secret: String,
    /// Region -> zone; at most [`MAX_CARBON_ZONES`] (one subrequest each per refresh).
    pub zones: BTreeMap<String, String>,
    /// Live values older than this are not used (default 2 h).
    pub max_age_ms: u64,
}

/// Zones per refresh: Workers allow 50 subrequests per invocation on the free plan.
pub const MAX_CARBON_ZONES: usize = 40;

/// The admin API's credential (its SHA-256; the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub key_sha256: [u8; 32],
}

/// A tenant (organisation, team).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    pub jurisdiction: Option<String>,
    /// Where the tenant's requests may be processed; `None` = anywhere.
    pub residency: Option<BTreeSet<String>>,
    /// Models the tenant's callers may use at most; `None` = no tenant-wide restriction.
    pub models: Option<ModelAccess>,
    pub metadata: BTreeMap<String, String>,
}

/// Residency rules that do not come from a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residency {
    pub eu_visitors: Option<BTreeSet<String>>,
    pub trusted_header: Option<String>,
}

/// Rate limits, budgets and prices, validated.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    /// The limits grouped by scope: one counter object per resolved scope and request.
    pub groups: Vec<LimitGroup>,
    pub prices: policy::limits::PriceTable,
    pub default_max_output_tokens: u64,
    pub store_timeout_ms: u64,
}

/// The limits that share one scope (so one counter object holds all of them).
#[derive(Debug, Clone)]
pub struct LimitGroup {
    pub scope: policy::limits::Scope,
    pub specs: Vec<policy::limits::LimitSpec>,
    /// Closed if any limit of the group says closed (the default).
    pub on_store_error: policy::limits::FailureMode,
    /// Budget alert webhooks of this group.
    pub webhooks: Vec<String>,
}

const MAX_BODY_LIMIT: u64 = 100 * 1024 * 1024;

impl Config {
    /// Parse and validate a JSON configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let message = err.inner().to_string();
            let path = field_path(err.path().to_string(), &message);
            ConfigErrors(vec![ConfigIssue { path: if path.is_empty() { "(document)".into() } else { path }, message }])
        })?;
        validate(raw)
    }

    /// The caller's metadata: the tenant's, overridden key by key by the consumer's own.
    pub fn metadata_for(&self, consumer: Option<&str>, tenant: Option<&str>) -> BTreeMap<String, String> {
        let mut out = tenant.and_then(|t| self.tenants.get(t)).map(|t| t.metadata.clone()).unwrap_or_default();
        if let Some(profile) = consumer.and_then(|c| self.consumer_profiles.get(c)) {
            out.extend(profile.metadata.clone());
        }
        out
    }

    /// The access list of an authenticated consumer (everything for anonymous callers).
    pub fn access_for(&self, consumer: Option<&str>) -> Option<&ModelAccess> {
        consumer.and_then(|c| self.access.get(c))
    }

    /// The guard profile that applies: the consumer's, else the model's, else `default`.
    pub fn guard_for(&self, consumer: Option<&str>, model: &ModelRoute) -> Option<&GuardProfile> {
        consumer
            .and_then(|c| self.consumer_guards.get(c))
            .or(model.guard.as_ref())
            .and_then(|name| self.guards.get(name))
            .or_else(|| self.guards.get("default"))
    }

    /// The timeout for a provider's response head.
    pub fn timeout_for(&self, provider: &str) -> u64 {
        self.providers.get(provider).and_then(ProviderConfig::timeout_ms).unwrap_or(self.limits.upstream_timeout_ms)
    }
}

/// Collects the problems of one provider entry, each with its field path.
struct ProviderCheck<'a> {
    path: &'a str,
    issues: Vec<(String, String)>,
}

impl ProviderCheck<'_> {
    fn issue(&mut self, field: &str, message: String) {
        self.issues.push((format!("{}.{field}", self.path), message));
    }

    /// An http(s) base URL without trailing slash: the configured one, else the default.
    fn url(&mut self, value: Option<String>, default: Option<String>, field: &str) -> String {
        let Some(url) = value.or(default) else {
            self.issue(field, "is required for this provider kind".into());
            return String::new();
        };
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            self.issue(field, format!("must be an http(s) URL, got '{url}'"));
        }
        url
    }

    /// A secret's NAME (never the secret itself).
    fn secret(&mut self, value: &str, field: &str) {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.issue(field, "must be the NAME of a secret (letters, digits, '_'), not the key itself".into());
        }
    }

    /// A cloud identifier (project, region, location).
    fn name_like(&mut self, value: &str, field: &str, what: &str) {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            self.issue(field, format!("must be {what}"));
        }
    }

    fn timeout(&mut self, timeout_ms: Option<u64>) {
        if let Some(t) = timeout_ms.filter(|t| *t == 0 || *t > 900_000) {
            self.issue("timeout_ms", format!("must be between 1 and 900000, got {t}"));
        }
    }

    fn family(&mut self, raw: RawOpenAiFamily, flavor: OpenAiFlavor) -> ProviderConfig {
        let base_url = self.url(raw.base_url, flavor.default_base_url().map(str::to_string), "base_url");
        if let Some(s) = &raw.api_key_secret {
            self.secret(s, "api_key_secret");
        }
        self.timeout(raw.timeout_ms);
        ProviderConfig::OpenAi(OpenAiProviderConfig { base_url, api_key_secret: raw.api_key_secret, timeout_ms: raw.timeout_ms, flavor })
    }
}

/// Check one provider's settings and fill in its defaults.
fn validate_provider(provider: RawProvider, path: &str, issue: &mut dyn FnMut(String, String)) -> ProviderConfig {
    let mut check = ProviderCheck { path, issues: Vec::new() };
    let config = match provider {
        RawProvider::Mock {} => ProviderConfig::Mock,
        RawProvider::Openai(raw) => check.family(raw, OpenAiFlavor::OpenAi),
        RawProvider::Mistral(raw) => check.family(raw, OpenAiFlavor::Mistral),
        RawProvider::Groq(raw) => check.family(raw, OpenAiFlavor::Groq),
        RawProvider::Together(raw) => check.family(raw, OpenAiFlavor::Together),
        RawProvider::Deepseek(raw) => check.family(raw, OpenAiFlavor::DeepSeek),
        RawProvider::Ollama(raw) => check.family(raw, OpenAiFlavor::Ollama),
        RawProvider::Vllm(raw) => check.family(raw, OpenAiFlavor::Vllm),
        RawProvider::OpenaiCompatible(raw) => check.family(raw, OpenAiFlavor::Compatible),
        RawProvider::WorkersAi(raw) => {
            check.timeout(raw.timeout_ms);
            match (raw.binding, raw.account_id, raw.api_token_secret) {
                (Some(binding), None, None) if raw.base_url.is_none() => {
                    if binding.is_empty() || !binding.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        check.issue("binding", "must be the name of the Worker's AI binding (letters, digits, '_')".into());
                    }
                    ProviderConfig::WorkersAiBinding(WorkersAiBindingConfig { binding, timeout_ms: raw.timeout_ms })
                }
                (None, Some(account_id), Some(api_token_secret)) => {
                    if !(account_id.len() == 32 && account_id.chars().all(|c| c.is_ascii_hexdigit())) {
                        check.issue("account_id", "must be the 32-character hex Cloudflare account id".into());
                    }
                    check.secret(&api_token_secret, "api_token_secret");
                    let default = format!("https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1");
                    let base_url = check.url(raw.base_url, Some(default), "base_url");
                    ProviderConfig::OpenAi(OpenAiProviderConfig {
                        base_url,
                        api_key_secret: Some(api_token_secret),
                        timeout_ms: raw.timeout_ms,
                        flavor: OpenAiFlavor::WorkersAi,
                    })
                }
                _ => {
                    check.issue(
                        "binding",
                        "set either `binding` (the Worker's AI binding) or `account_id` and `api_token_secret` (the REST API), not both".into(),
                    );
                    ProviderConfig::Mock
                }
            }
        }
        RawProvider::AzureOpenai(raw) => {
            check.secret(&raw.api_key_secret, "api_key_secret");
            check.timeout(raw.timeout_ms);
            if !(raw.api_version.len() >= 10 && raw.api_version.starts_with("20")) {
                check.issue("api_version", format!("must be an Azure OpenAI API version such as 2024-10-21, got '{}'", raw.api_version));
            }
            let base_url = check.url(Some(raw.base_url), None, "base_url");
            ProviderConfig::Azure(AzureConfig { base_url, api_version: raw.api_version, api_key_secret: raw.api_key_secret, timeout_ms: raw.timeout_ms })
        }
        RawProvider::Anthropic(raw) => {
            check.secret(&raw.api_key_secret, "api_key_secret");
            check.timeout(raw.timeout_ms);
            let base_url = check.url(raw.base_url, Some("https://api.anthropic.com".into()), "base_url");
            ProviderConfig::Anthropic(AnthropicConfig {
                base_url,
                api_key_secret: raw.api_key_secret,
                version: raw.version.unwrap_or_else(|| "2023-06-01".into()),
                timeout_ms: raw.timeout_ms,
            })
        }
        RawProvider::Gemini(raw) => {
            check.secret(&raw.api_key_secret, "api_key_secret");
            check.timeout(raw.timeout_ms);
            let base_url = check.url(raw.base_url, Some("https://generativelanguage.googleapis.com".into()), "base_url");
            ProviderConfig::Gemini(GeminiConfig {
                api: GeminiApi::GenerativeLanguage { base_url, api_key_secret: raw.api_key_secret },
                timeout_ms: raw.timeout_ms,
            })
        }
        RawProvider::Vertex(raw) => {
            check.secret(&raw.access_token_secret, "access_token_secret");
            check.timeout(raw.timeout_ms);
            check.name_like(&raw.project, "project", "a Google Cloud project id");
            check.name_like(&raw.location, "location", "a Vertex AI location such as europe-west4");
            let default = if raw.location == "global" {
                "https://aiplatform.googleapis.com".to_string()
            } else {
                format!("https://{}-aiplatform.googleapis.com", raw.location)
            };
            let base_url = check.url(raw.base_url, Some(default), "base_url");
            ProviderConfig::Gemini(GeminiConfig {
                api: GeminiApi::Vertex { base_url, project: raw.project, location: raw.location, access_token_secret: raw.access_token_secret },
                timeout_ms: raw.timeout_ms,
            })
        }
        RawProvider::Bedrock(raw) => {
            check.secret(&raw.access_key_id_secret, "access_key_id_secret");
            check.secret(&raw.secret_access_key_secret, "secret_access_key_secret");
            if let Some(s) = &raw.session_token_secret {
                check.secret(s, "session_token_secret");
            }
            check.timeout(raw.timeout_ms);
            check.name_like(&raw.region, "region", "an AWS region such as eu-central-1");
            let default = format!("https://bedrock-runtime.{}.amazonaws.com", raw.region);
            let base_url = check.url(raw.base_url, Some(default), "base_url");
            ProviderConfig::Bedrock(BedrockConfig {
                region: raw.region,
                base_url,
                access_key_id_secret: raw.access_key_id_secret,
                secret_access_key_secret: raw.secret_access_key_secret,
                session_token_secret: raw.session_token_secret,
                timeout_ms: raw.timeout_ms,
            })
        }
        RawProvider::Cohere(raw) => {
            check.secret(&raw.api_key_secret, "api_key_secret");
            check.timeout(raw.timeout_ms);
            let base_url = check.url(raw.base_url, Some("https://api.cohere.com".into()), "base_url");
            ProviderConfig::Cohere(CohereConfig { base_url, api_key_secret: raw.api_key_secret, timeout_ms: raw.timeout_ms })
        }
    };
    for (p, m) in check.issues {
        issue(p, m);
    }
    config
}

fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

    // limits
    let mut limits = Limits::default();
    let bounded = |value: Option<u64>, default: u64, min: u64, max: u64, path: &str, issue: &mut dyn FnMut(String, String)| {
        match value {
            None => default,
            Some(v) if v < min || v > max => {
                issue(path.into(), format!("must be between {min} and {max}, got {v}"));
                default
            }
            Some(v) => v,
        }
    };
    limits.max_body_bytes = bounded(
        raw.limits.max_body_bytes,
        limits.max_body_bytes as u64,
        1024,
        MAX_BODY_LIMIT,
        "limits.max_body_bytes",
        &mut issue,
    ) as usize;
    limits.upstream_timeout_ms =
        bounded(raw.limits.upstream_timeout_ms, limits.upstream_timeout_ms, 1, 900_000, "limits.upstream_timeout_ms", &mut issue);
    limits.stream_idle_timeout_ms = bounded(
        raw.limits.stream_idle_timeout_ms,
        limits.stream_idle_timeout_ms,
        1,
        900_000,
        "limits.stream_idle_timeout_ms",
        &mut issue,
    );
    limits.config_refresh_ms =
        bounded(raw.limits.config_refresh_ms, limits.config_refresh_ms, 0, 86_400_000, "limits.config_refresh_ms", &mut issue);

    // providers
    let mut providers = BTreeMap::new();
    for (name, provider) in raw.providers {
        let path = format!("providers.{name}");
        if !valid_name(&name) {
            issue(path.clone(), "provider names use letters, digits, '-', '_' and '.'".into());
        }
        let config = validate_provider(provider, &path, &mut issue);
        providers.insert(name, config);
    }

    // models
    let mut models = BTreeMap::new();
    if raw.models.is_empty() {
        issue("models".into(), "at least one model must be configured".into());
    }
    let price_table = parse_prices(raw.prices, &mut issue);
    let mut raw_routes = Vec::new();
    for (name, model) in raw.models {
        let path = format!("models.{name}");
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            issue(path.clone(), "model names must be non-empty and contain no whitespace".into());
        }
        let known = |providers: &BTreeMap<String, ProviderConfig>| providers.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let (provider, upstream_model) = match (&model.provider, model.targets.first()) {
            (Some(_), Some(_)) => {
                issue(format!("{path}.targets"), "set either provider or targets, not both".into());
                (String::new(), String::new())
            }
            (Some(provider), None) => (provider.clone(), model.upstream_model.clone().unwrap_or_else(|| name.clone())),
            (None, Some(first)) => (first.provider.clone(), first.upstream_model.clone().unwrap_or_else(|| name.clone())),
            (None, None) => {
                issue(format!("{path}.provider"), "missing field `provider` (or a list of `targets`)".into());
                (String::new(), String::new())
            }
        };
        if model.provider.is_some() && !providers.contains_key(&provider) {
            issue(format!("{path}.provider"), format!("unknown provider '{provider}' (configured: {})", known(&providers)));
        }
        if matches!(&model.upstream_model, Some(m) if m.trim().is_empty()) {
            issue(format!("{path}.upstream_model"), "must not be empty".into());
        }
        let route_fields = model.strategy.is_some()
            || model.fallback_on.is_some()
            || model.max_attempts.is_some()
            || model.backoff.is_some()
            || model.circuit_breaker.is_some()
            || !model.conditions.is_empty();
        if !model.targets.is_empty() && model.kind == Some(ModelKind::Embeddings) {
            // Embeddings are not routed (no fallback, no residency filter): one provider only,
            // so a tenant's residency can never be bypassed through an unfiltered first target.
            issue(format!("{path}.targets"), "embeddings models take one `provider`; `targets` (routing) is for chat models".into());
        }
        if model.targets.is_empty() && route_fields {
            issue(format!("{path}.targets"), "routing settings need a list of targets".into());
        }
        if !model.targets.is_empty() {
            raw_routes.push((name.clone(), model.targets, model.strategy, model.fallback_on, model.max_attempts, model.backoff, model.circuit_breaker, model.conditions));
        }
        models.insert(
            name.clone(),
            ModelRoute { upstream_model, name, provider, kind: model.kind.unwrap_or(ModelKind::Chat), guard: model.guard },
        );
    }
    let mut routes = BTreeMap::new();
    for (name, targets, strategy, fallback_on, max_attempts, backoff, circuit_breaker, conditions) in raw_routes {
        let path = format!("models.{name}");
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (i, target) in targets.into_iter().enumerate() {
            let at = format!("{path}.targets[{i}]");
            if !ids.insert(target.id.clone()) || !valid_name(&target.id) {
                issue(format!("{at}.id"), format!("target ids must be unique names, got '{}'", target.id));
            }
            if !providers.contains_key(&target.provider) {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                issue(format!("{at}.provider"), format!("unknown provider '{}' (configured: {})", target.provider, known.join(", ")));
            }
            if target.jurisdiction.trim().is_empty() || target.region.trim().is_empty() {
                issue(at.clone(), "region and jurisdiction must not be empty".into());
            }
            if target.canary.is_some_and(|c| c > 100) {
                issue(format!("{at}.canary"), "is a percentage between 0 and 100".into());
            }
            let model_name = target.upstream_model.unwrap_or_else(|| name.clone());
            let price = price_table.get(&model_name).copied();
            out.push(policy::route::Target {
                id: target.id,
                provider: target.provider,
                model: model_name,
                region: target.region,
                jurisdiction: target.jurisdiction.to_ascii_lowercase(),
                weight: target.weight.unwrap_or(1),
                canary: target.canary,
                input_per_million: price.map(|p| p.input_per_million).unwrap_or_default(),
                output_per_million: price.map(|p| p.output_per_million).unwrap_or_default(),
                params_b: target.params_b.unwrap_or(70),
            });
        }
        let max_attempts = max_attempts.unwrap_or((out.len() as u32).clamp(1, 3));
        if max_attempts == 0 || max_attempts > policy::route::MAX_ATTEMPTS_CAP {
            issue(format!("{path}.max_attempts"), format!("must be between 1 and {}", policy::route::MAX_ATTEMPTS_CAP));
        }
        routes.insert(
            name.clone(),
            policy::route::RouteSpec {
                name,
                targets: out,
                strategy: strategy.unwrap_or(policy::route::Strategy::Ordered),
                fallback_on: fallback_on.unwrap_or_else(|| {
                    use policy::route::FallbackTrigger::*;
                    [RateLimited, ServerError, Timeout, Connect].into_iter().collect()
                }),
                max_attempts,
                backoff: backoff.unwrap_or(policy::route::Backoff { base_ms: 100, max_ms: 2_000 }),
                circuit_breaker: circuit_breaker.unwrap_or(policy::route::CircuitBreaker { failure_threshold: 5, open_ms: 30_000 }),
                conditions,
            },
        );
    }
    for (name, spec) in &routes {
        for (i, condition) in spec.conditions.iter().enumerate() {
            match &condition.then {
                policy::route::ConditionAction::Route(other) if !routes.contains_key(other) => {
                    issue(format!("models.{name}.conditions[{i}].then"), format!("'{other}' is not a model with targets"));
                }
                policy::route::ConditionAction::Targets(ids) => {
                    for id in ids.iter().filter(|id| !spec.targets.iter().any(|t| &t.id == *id)) {
                        issue(format!("models.{name}.conditions[{i}].then"), format!("unknown target '{id}'"));
                    }
                }
                _ => {}
            }
        }
    }
    let carbon_feed = raw.carbon_feed.map(|feed| {
        let mut check = ProviderCheck { path: "carbon_feed", issues: Vec::new() };
        let base_url = check.url(feed.base_url, Some("https://api.electricitymap.org/v3".into()), "base_url");
        check.secret(&feed.token_secret, "token_secret");
        if feed.zones.is_empty() || feed.zones.len() > MAX_CARBON_ZONES {
            check.issue("zones", format!("must map between 1 and {MAX_CARBON_ZONES} regions to Electricity Maps zones"));
        }
        if feed.zones.values().any(|z| z.trim().is_empty()) {
            check.issue("zones", "zone names must not be empty".into());
        }
        let max_age_ms = feed.max_age_ms.unwrap_or(2 * 3_600_000);
        if max_age_ms < 60_000 {
            check.issue("max_age_ms", "must be at least 60000 (one minute)".into());
        }
        for (path, message) in check.issues {
            issue(path, message);
        }
        CarbonFeed { base_url, token_secret: feed.token_secret, zones: feed.zones, max_age_ms }
    });
    let residency = Residency {
        eu_visitors: raw.residency.eu_visitors.map(|v| v.into_iter().map(|j| j.to_ascii_lowercase()).collect()),
        trusted_header: raw.residency.trusted_header.map(|h| h.to_ascii_lowercase()),
    };

    // guards
    let mut guards = BTreeMap::new();
    for (name, raw) in raw.guards {
        let path = format!("guards.{name}");
        if let Some(profile) = validate_guard(&name, raw, &path, &providers, &mut issue) {
            guards.insert(name, profile);
        }
    }
    for (name, route) in &models {
        if let Some(guard) = &route.guard {
            if !guards.contains_key(guard) {
                issue(format!("models.{name}.guard"), format!("unknown guard profile '{guard}'"));
            }
        }
    }

    // auth
    let mut access = BTreeMap::new();
    let mut consumer_guards = BTreeMap::new();
    let mut consumer_tenants = BTreeMap::new();
    let mut consumer_profiles = BTreeMap::new();
    let mut jwt = None;
    let keys = match raw.auth {
        RawAuth::None => KeyTable::Disabled,
        RawAuth::ApiKeys { consumers } => {
            if consumers.is_empty() {
                issue(
                    "auth.consumers".into(),
                    "api_keys mode needs at least one consumer (or set \"auth\": {\"mode\": \"none\"})".into(),
                );
            }
            validate_consumers(consumers, &models, &guards, &mut access, &mut consumer_guards, &mut consumer_tenants, &mut consumer_profiles, &mut issue)
        }
        RawAuth::Jwt { jwt: raw_jwt, consumers } => {
            jwt = validate_jwt(*raw_jwt, &models, &mut issue);
            validate_consumers(consumers, &models, &guards, &mut access, &mut consumer_guards, &mut consumer_tenants, &mut consumer_profiles, &mut issue)
        }
    };

    let cors = raw.cors.map(|c| Cors { allow_origins: c.allow_origins });

    let mut tenants = BTreeMap::new();
    for (name, tenant) in raw.tenants {
        if let Some(j) = &tenant.jurisdiction {
            if !matches!(j.as_str(), "eu" | "fedramp") {
                issue(format!("tenants.{name}.jurisdiction"), format!("must be eu or fedramp (a Durable Object jurisdiction), got '{j}'"));
            }
        }
        let residency = tenant.residency.map(|r| r.into_iter().collect()).or_else(|| tenant.jurisdiction.iter().map(|j| std::iter::once(j.clone()).collect()).next());
        if let Some(patterns) = &tenant.models {
            check_model_patterns(&format!("tenants.{name}.models"), patterns, &models, &mut issue);
        }
        let access = tenant.models.map(ModelAccess::new);
        tenants.insert(name, Tenant { jurisdiction: tenant.jurisdiction, residency, models: access, metadata: tenant.metadata });
    }
    for tenant in consumer_tenants.values() {
        tenants.entry(tenant.clone()).or_insert_with(Tenant::default);
    }
    let admin = raw.admin.and_then(|a| match policy::auth::parse_key_digest(&a.key_sha256) {
        Some(key_sha256) => Some(Admin { key_sha256 }),
        None => {
            issue("admin.key_sha256".into(), "must be the 64-hex-digit SHA-256 of the admin key (never the key itself)".into());
            None
        }
    });
    if let (Some(admin), KeyTable::Keys(consumer_keys)) = (&admin, &keys) {
        if consumer_keys.iter().any(|k| k.key_sha256 == admin.key_sha256) {
            issue("admin.key_sha256".into(), "the admin key must not also be a consumer key".into());
        }
    }
    let quota = validate_quota(raw.rate_limits, raw.budgets, price_table, raw.quota, &models, &mut issue);

    if issues.is_empty() {
        Ok(Config { limits, keys, jwt, access, consumer_guards, guards, cors, providers, models, consumer_tenants, consumer_profiles, tenants, quota, admin, routes, residency, carbon_feed })
    } else {
        Err(ConfigErrors(issues))
    }
}

/// Parse a limit scope like `["consumer", "model"]` or `["tenant", "header:x-team"]`.
fn parse_scope(raw: &[String], path: &str, issue: &mut impl FnMut(String, String)) -> Option<policy::limits::Scope> {
    use policy::limits::{Scope, ScopeDim};
    let mut dims = Vec::new();
    for (i, dim) in raw.iter().enumerate() {
        let parsed = match dim.as_str() {
            "key" => ScopeDim::Key,
            "consumer" => ScopeDim::Consumer,
            "tenant" => ScopeDim::Tenant,
            "model" => ScopeDim::Model,
            other => match other.strip_prefix("header:") {
                Some(name) => ScopeDim::Header(name.to_string()),
                None => {
                    issue(format!("{path}[{i}]"), format!("must be key, consumer, tenant, model or header:<name>, got '{other}'"));
                    return None;
                }
            },
        };
        dims.push(parsed);
    }
    match Scope::new(dims) {
        Ok(scope) => Some(scope),
        Err(error) => {
            issue(path.to_string(), error.to_string());
            None
        }
    }
}

fn failure_mode(raw: Option<&str>, path: &str, issue: &mut impl FnMut(String, String)) -> policy::limits::FailureMode {
    match raw {
        None => policy::limits::FailureMode::Closed,
        Some(name) => policy::limits::FailureMode::from_name(name).unwrap_or_else(|| {
            issue(path.to_string(), format!("must be open or closed, got '{name}'"));
            policy::limits::FailureMode::Closed
        }),
    }
}

/// The price table: USD per million tokens by model name (or `prefix*`).
fn parse_prices(prices: BTreeMap<String, RawPrice>, issue: &mut impl FnMut(String, String)) -> policy::limits::PriceTable {
    let mut table = policy::limits::PriceTable::new();
    for (model, price) in prices {
        match policy::limits::ModelPrice::parse(&price.input, price.cached_input.as_deref(), &price.output) {
            Ok(p) => table.insert(model, p),
            Err(error) => issue(format!("prices.{model}"), format!("{error:?}: prices are decimal USD per million tokens, e.g. \"2.50\"")),
        }
    }
    table
}

fn validate_quota(
    rate_limits: Vec<RawRateLimit>,
    budgets: Vec<RawBudget>,
    table: policy::limits::PriceTable,
    raw: RawQuota,
    models: &BTreeMap<String, ModelRoute>,
    issue: &mut impl FnMut(String, String),
) -> Quota {
    use policy::limits::{FailureMode, LimitSpec, Metric, Nanos, Window};
    let mut groups: Vec<LimitGroup> = Vec::new();
    let mut add = |scope: policy::limits::Scope, spec: LimitSpec, mode: FailureMode, webhook: Option<String>, path: &str, issue: &mut dyn FnMut(String, String)| {
        let index = match groups.iter().position(|g| g.scope == scope) {
            Some(i) => i,
            None => {
                groups.push(LimitGroup { scope, specs: Vec::new(), on_store_error: mode, webhooks: Vec::new() });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        if group.specs.iter().any(|s| s.key() == spec.key()) {
            issue(path.to_string(), "another limit of this scope already counts this metric over this window".into());
            return;
        }
        if mode == FailureMode::Closed {
            group.on_store_error = FailureMode::Closed;
        }
        if let Some(url) = webhook {
            if !group.webhooks.contains(&url) {
                group.webhooks.push(url);
            }
        }
        group.specs.push(spec);
    };
    let window = |name: &str, path: String, issue: &mut dyn FnMut(String, String)| {
        Window::from_name(name).or_else(|| {
            issue(path, format!("must be minute, hour, day or month, got '{name}'"));
            None
        })
    };
    for (i, limit) in rate_limits.into_iter().enumerate() {
        let path = format!("rate_limits[{i}]");
        let scope = parse_scope(&limit.scope, &format!("{path}.scope"), issue);
        let metric = Metric::from_name(&limit.metric).filter(|m| *m != Metric::Cost);
        if metric.is_none() {
            issue(format!("{path}.metric"), format!("must be requests, input_tokens, output_tokens or total_tokens, got '{}' (money limits are budgets)", limit.metric));
        }
        let window = window(&limit.window, format!("{path}.window"), issue);
        if limit.limit == 0 {
            issue(format!("{path}.limit"), "must be at least 1".into());
        }
        let mode = failure_mode(limit.on_store_error.as_deref(), &format!("{path}.on_store_error"), issue);
        if let (Some(scope), Some(metric), Some(window)) = (scope, metric, window) {
            add(scope, LimitSpec::new(metric, window, limit.limit), mode, None, &path, issue);
        }
    }
    let has_budgets = !budgets.is_empty();
    for (i, budget) in budgets.into_iter().enumerate() {
        let path = format!("budgets[{i}]");
        let scope = parse_scope(&budget.scope, &format!("{path}.scope"), issue);
        let window = window(&budget.window, format!("{path}.window"), issue);
        let amount = match budget.usd.parse::<Nanos>() {
            Ok(n) if n.0 > 0 => Some(n),
            _ => {
                issue(format!("{path}.usd"), format!("must be a positive decimal amount such as \"100.00\", got '{}'", budget.usd));
                None
            }
        };
        if budget.alerts.iter().any(|p| *p == 0 || *p > 1000) {
            issue(format!("{path}.alerts"), "alert thresholds are percents between 1 and 1000".into());
        }
        if let Some(url) = &budget.webhook_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                issue(format!("{path}.webhook_url"), format!("must be an http(s) URL, got '{url}'"));
            }
        }
        let mode = failure_mode(budget.on_store_error.as_deref(), &format!("{path}.on_store_error"), issue);
        if let (Some(scope), Some(window), Some(amount)) = (scope, window, amount) {
            let mut spec = LimitSpec::budget(window, amount).with_alerts(budget.alerts);
            if !budget.hard {
                spec = spec.soft();
            }
            add(scope, spec, mode, budget.webhook_url, &path, issue);
        }
    }
    if has_budgets {
        for (name, route) in models.iter().filter(|(_, r)| r.kind == ModelKind::Chat) {
            if table.get(name).is_none() && table.get(&route.upstream_model).is_none() {
                issue(format!("prices.{name}"), "budgets are configured, so every chat model needs a price".into());
            }
        }
    }
    let default_max_output_tokens = raw.default_max_output_tokens.unwrap_or(4096);
    if default_max_output_tokens == 0 || default_max_output_tokens > 1_000_000 {
        issue("quota.default_max_output_tokens".into(), "must be between 1 and 1000000".into());
    }
    let store_timeout_ms = raw.store_timeout_ms.unwrap_or(2_000);
    if store_timeout_ms == 0 || store_timeout_ms > 30_000 {
        issue("quota.store_timeout_ms".into(), "must be between 1 and 30000".into());
    }
    Quota { groups, prices: table, default_max_output_tokens, store_timeout_ms }
}

fn check_model_patterns(path: &str, patterns: &[String], models: &BTreeMap<String, ModelRoute>, issue: &mut impl FnMut(String, String)) {
    for (j, pattern) in patterns.iter().enumerate() {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty() || prefix.contains('*') {
            issue(format!("{path}[{j}]"), "use an exact name, '*', or a prefix ending in '*'".into());
        } else if !pattern.ends_with('*') && !models.contains_key(pattern) {
            issue(format!("{path}[{j}]"), format!("unknown model '{pattern}'"));
        }
    }
}

#[allow(clippy::too_many_arguments)] // one out-map per consumer setting; each caller fills the same ones
fn validate_consumers(
    consumers: Vec<RawConsumer>,
    models: &BTreeMap<String, ModelRoute>,
    guards: &BTreeMap<String, GuardProfile>,
    access: &mut BTreeMap<String, ModelAccess>,
    consumer_guards: &mut BTreeMap<String, String>,
    consumer_tenants: &mut BTreeMap<String, String>,
    consumer_profiles: &mut BTreeMap<String, ConsumerProfile>,
    issue: &mut impl FnMut(String, String),
) -> KeyTable {
    let mut seen_ids = BTreeSet::new();
    let mut seen_keys = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, consumer) in consumers.into_iter().enumerate() {
        let path = format!("auth.consumers[{i}]");
        if consumer.id.trim().is_empty() {
            issue(format!("{path}.id"), "must not be empty".into());
        } else if !seen_ids.insert(consumer.id.clone()) {
            issue(format!("{path}.id"), format!("duplicate consumer id '{}'", consumer.id));
        }
        match policy::auth::parse_key_digest(&consumer.key_sha256) {
            Some(digest) => {
                if !seen_keys.insert(digest) {
                    issue(format!("{path}.key_sha256"), "the same key is configured twice".into());
                }
                keys.push(ConsumerKey { consumer: consumer.id.clone(), key_sha256: digest });
            }
            None => issue(
                format!("{path}.key_sha256"),
                "must be the 64-hex-digit SHA-256 of the key (never the key itself)".into(),
            ),
        }
        if let Some(patterns) = &consumer.models {
            check_model_patterns(&format!("{path}.models"), patterns, models, issue);
        }
        if let Some(guard) = consumer.guard {
            if !guards.contains_key(&guard) {
                issue(format!("{path}.guard"), format!("unknown guard profile '{guard}'"));
            }
            consumer_guards.insert(consumer.id.clone(), guard);
        }
        if let Some(tenant) = consumer.tenant {
            if !valid_name(&tenant) {
                issue(format!("{path}.tenant"), "tenant names use letters, digits, '-', '_' and '.'".into());
            }
            consumer_tenants.insert(consumer.id.clone(), tenant);
        }
        if consumer.metadata.len() > 32 || consumer.metadata.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256) {
            issue(format!("{path}.metadata"), "at most 32 entries, keys of 1-64 and values of at most 256 characters".into());
        }
        if consumer.tier.is_some() || !consumer.metadata.is_empty() {
            consumer_profiles.insert(consumer.id.clone(), ConsumerProfile { tier: consumer.tier, metadata: consumer.metadata });
        }
        let allowed = consumer.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all);
        access.insert(consumer.id, allowed);
    }
    KeyTable::Keys(keys)
}

fn validate_jwt(raw: RawJwt, models: &BTreeMap<String, ModelRoute>, issue: &mut impl FnMut(String, String)) -> Option<JwtAuth> {
    use policy::identity::{JwtAlgorithm, JwtKey, JwtKeySet, JwtRules};
    let mut ok = true;
    let mut fail = |path: String, message: String, issue: &mut dyn FnMut(String, String)| {
        issue(path, message);
        ok = false;
    };
    if raw.audiences.is_empty() {
        fail(
            "auth.jwt.audiences".into(),
            "name at least one audience: without it a token issued for another application would be accepted".into(),
            issue,
        );
    }
    let mut keys = JwtKeySet::default();
    let mut hmac_secrets = Vec::new();
    for (i, key) in raw.keys.into_iter().enumerate() {
        let path = format!("auth.jwt.keys[{i}]");
        let Some(alg) = JwtAlgorithm::from_name(&key.alg) else {
            fail(format!("{path}.alg"), format!("unsupported algorithm '{}' (use RS256, ES256, EdDSA or HS256)", key.alg), issue);
            continue;
        };
        let parsed = match (alg, key.pem, key.jwk, key.secret) {
            (JwtAlgorithm::Hs256, None, None, Some(secret)) => {
                if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    fail(format!("{path}.secret"), "must be the NAME of a secret (letters, digits, '_'), not the key itself".into(), issue);
                } else {
                    hmac_secrets.push((key.kid.clone(), secret));
                }
                continue;
            }
            (JwtAlgorithm::Hs256, ..) => {
                fail(path.clone(), "HS256 keys are given as \"secret\": the name of a secret".into(), issue);
                continue;
            }
            (_, Some(pem), None, None) => JwtKey::from_pem(alg, &pem),
            (_, None, Some(jwk), None) => JwtKey::from_jwk(&jwk),
            _ => {
                fail(path.clone(), "give exactly one of \"pem\" or \"jwk\" (public keys only)".into(), issue);
                continue;
            }
        };
        match parsed {
            Ok(parsed) if parsed.algorithm() != alg => {
                fail(format!("{path}.alg"), format!("the key is for {}, not {}", parsed.algorithm().name(), alg.name()), issue)
            }
            Ok(parsed) => keys.push(match key.kid {
                Some(kid) => parsed.with_kid(kid),
                None => parsed,
            }),
            Err(e) => fail(path.clone(), format!("unusable key: {e}"), issue),
        }
    }
    if let Some(url) = &raw.jwks_url {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            fail("auth.jwt.jwks_url".into(), format!("must be an http(s) URL, got '{url}'"), issue);
        }
    }
    if keys.is_empty() && hmac_secrets.is_empty() && raw.jwks_url.is_none() {
        fail("auth.jwt".into(), "configure \"keys\" or a \"jwks_url\"".into(), issue);
    }
    if let Some(patterns) = &raw.models {
        check_model_patterns("auth.jwt.models", patterns, models, issue);
    }
    for (tier, t) in &raw.tiers {
        check_model_patterns(&format!("auth.jwt.tiers.{tier}.models"), &t.models, models, issue);
    }
    let defaults = JwtRules::default();
    let rules = JwtRules {
        issuers: raw.issuers,
        audiences: raw.audiences,
        leeway_secs: raw.leeway_secs.unwrap_or(defaults.leeway_secs).min(300),
        consumer_claim: raw.consumer_claim.unwrap_or(defaults.consumer_claim),
        tenant_claim: raw.tenant_claim,
        tier_claim: raw.tier_claim,
        ..defaults
    };
    ok.then(|| JwtAuth {
        rules,
        keys,
        hmac_secrets,
        jwks_url: raw.jwks_url,
        jwks_refresh_ms: raw.jwks_refresh_ms.unwrap_or(600_000).clamp(10_000, 86_400_000),
        models: raw.models.map(ModelAccess::new).unwrap_or_else(ModelAccess::all),
        tiers: raw.tiers.into_iter().map(|(name, t)| (name, ModelAccess::new(t.models))).collect(),
    })
}

fn validate_guard(
    name: &str,
    raw: RawGuard,
    path: &str,
    providers: &BTreeMap<String, ProviderConfig>,
    issue: &mut impl FnMut(String, String),
) -> Option<GuardProfile> {
    use policy::guard::{CustomRule, GuardAction, GuardPolicy, PiiKind};
    let action = |value: &str, at: String, issue: &mut dyn FnMut(String, String)| {
        let parsed = GuardAction::from_name(value);
        if parsed.is_none() {
            issue(at, format!("unknown action '{value}' (use redact, mask, block or log)"));
        }
        parsed
    };
    let mut ok = true;
    let mut pii = BTreeMap::new();
    for (kind, value) in &raw.pii {
        let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
        match PiiKind::from_name(kind) {
            Some(k) => match action(value, format!("{path}.pii.{kind}"), issue) {
                Some(a) => {
                    pii.insert(k, a);
                }
                None => ok = false,
            },
            None => {
                issue(format!("{path}.pii.{kind}"), format!("unknown PII type (use {})", names.join(", ")));
                ok = false;
            }
        }
    }
    let injection = match raw.injection {
        None => None,
        Some(inj) => {
            if !(0.0..=1.0).contains(&inj.threshold) || inj.threshold == 0.0 {
                issue(format!("{path}.injection.threshold"), format!("must be in (0, 1], got {}", inj.threshold));
                ok = false;
            }
            let a = match inj.action.as_deref() {
                None => Some(GuardAction::Block),
                Some(v @ ("block" | "log")) => GuardAction::from_name(v),
                Some(v) => {
                    issue(format!("{path}.injection.action"), format!("must be block or log, got '{v}'"));
                    None
                }
            };
            a.map(|a| (inj.threshold, a))
        }
    };
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        if !valid_name(&rule.name) {
            issue(format!("{at}.name"), "use letters, digits, '-', '_' and '.'".into());
            ok = false;
        }
        let regex = match regex::RegexBuilder::new(&rule.pattern).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                issue(format!("{at}.pattern"), format!("invalid regular expression: {e}"));
                ok = false;
                None
            }
        };
        let (input, output) = match rule.on.as_deref() {
            None | Some("both") => (true, true),
            Some("input") => (true, false),
            Some("output") => (false, true),
            Some(other) => {
                issue(format!("{at}.on"), format!("must be input, output or both, got '{other}'"));
                ok = false;
                (true, true)
            }
        };
        let a = action(&rule.action, format!("{at}.action"), issue);
        if let (Some(regex), Some(action)) = (regex, a) {
            rules.push(CustomRule { name: rule.name, regex, action, input, output });
        } else {
            ok = false;
        }
    }
    let moderation = match raw.moderation {
        None => None,
        Some(m) => {
            if !matches!(providers.get(&m.provider), Some(ProviderConfig::OpenAi(_))) {
                issue(format!("{path}.moderation.provider"), format!("'{}' is not a configured openai-kind provider", m.provider));
                ok = false;
            }
            let block_on_error = match m.on_error.as_deref() {
                None | Some("block") => true,
                Some("allow") => false,
                Some(other) => {
                    issue(format!("{path}.moderation.on_error"), format!("must be block or allow, got '{other}'"));
                    ok = false;
                    true
                }
            };
            Some(Moderation {
                provider: m.provider,
                model: m.model.unwrap_or_else(|| "omni-moderation-latest".into()),
                timeout_ms: m.timeout_ms.unwrap_or(2_000).clamp(1, 60_000),
                block_on_error,
            })
        }
    };
    let policy = GuardPolicy {
        pii,
        reversible: raw.reversible,
        injection,
        deny: raw.deny.iter().map(|d| d.to_lowercase()).filter(|d| !d.is_empty()).collect(),
        allow: raw.allow,
        rules,
        scan_output: raw.output,
    };
    ok.then(|| GuardProfile { name: name.to_string(), policy, moderation })
}

/// The full path of a field a deserialisation error is about: serde reports a missing field at
/// its parent, with the field's name only in the message.
pub(crate) fn field_path(parent: String, message: &str) -> String {
    let parent = if parent == "." { String::new() } else { parent };
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    match missing {
        Some(field) if parent.is_empty() => field.to_string(),
        Some(field) => format!("{parent}.{field}"),
        None => parent,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "limits": { "max_body_bytes": 65536 },
        "auth": { "mode": "api_keys", "consumers": [
            { "id": "web", "key_sha256": "0000000000000000000000000000000000000000000000000000000000000001", "models": ["mock*"] }
        ]},
        "providers": {
            "mock": { "kind": "mock" },
            "openai": { "kind": "openai", "base_url": "https://api.openai.com/v1/", "api_key_secret": "OPENAI_API_KEY" }
        },
        "models": {
            "mock": { "provider": "mock" },
            "gpt-4o-mini": { "provider": "openai" },
            "embed": { "provider": "openai", "upstream_model": "text-embedding-3-small", "type": "embeddings" }
        }
    }"#;

    #[test]
    fn a_good_document_validates() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.limits.max_body_bytes, 65536);
        assert_eq!(config.models["gpt-4o-mini"].upstream_model, "gpt-4o-mini");
        assert_eq!(config.models["embed"].kind, ModelKind::Embeddings);
        match &config.providers["openai"] {
            ProviderConfig::OpenAi(p) => assert_eq!(p.base_url, "https://api.openai.com/v1"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(config.access["web"].allows("mock"));
        assert!(!config.access["web"].allows("gpt-4o-mini"));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock", "colour": 1}}, "models": {}}"#).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].path, "providers.m");
        assert!(err.0[0].message.contains("colour"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let doc = r#"{
            "limits": { "max_body_bytes": 10 },
            "auth": { "mode": "api_keys", "consumers": [ { "id": "a", "key_sha256": "sk-live-123" } ] },
            "providers": { "o": { "kind": "openai", "base_url": "ftp://x", "api_key_secret": "sk-abc-123" } },
            "models": { "m": { "provider": "nope" } }
        }"#;
        let err = Config::parse(doc).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "limits.max_body_bytes",
                "providers.o.base_url",
                "providers.o.api_key_secret",
                "models.m.provider",
                "auth.consumers[0].key_sha256",
            ]
        );
    }

    #[test]
    fn a_missing_field_is_named_by_its_full_path() {
        let err = Config::parse(r#"{"providers": {"up": {"kind": "anthropic"}}, "models": {}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers.up.api_key_secret", "{err}");
        let err = Config::parse(r#"{"providers": {"up": {"kind": "openai_compatible"}}, "models": {"m": {"provider": "up"}}, "auth": {"mode": "none"}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers.up.base_url", "{err}");
        let err = Config::parse(r#"{"models": {}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "providers");
    }

    #[test]
    fn auth_defaults_to_required_keys() {
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock"}}, "models": {"x": {"provider": "m"}}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "auth.consumers");
    }

    #[test]
    fn wrong_types_and_bad_json_are_errors_not_panics() {
        assert!(Config::parse("").is_err());
        assert!(Config::parse("[]").is_err());
        let err = Config::parse(r#"{"providers": {"m": {"kind": "mock"}}, "models": {"x": {"provider": 3}}}"#).unwrap_err();
        assert_eq!(err.0[0].path, "models.x.provider");
    }
}
