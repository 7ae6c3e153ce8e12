//! The `providers` section: one entry per upstream API. Each kind has its own raw shape (so a
//! field of another kind is an unknown-field error) and validates into a [`ProviderConfig`] with
//! its defaults filled in. Secrets stay names, resolved by the host at request time.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::issues::valid_name;

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawProvider {
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
pub(super) struct RawOpenAiFamily {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_secret: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAzure {
    /// `https://{resource}.openai.azure.com` (or a custom domain / APIM front).
    base_url: String,
    api_version: String,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnthropic {
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
pub(super) struct RawGemini {
    #[serde(default)]
    base_url: Option<String>,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVertex {
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
pub(super) struct RawBedrock {
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
pub(super) struct RawCohere {
    #[serde(default)]
    base_url: Option<String>,
    api_key_secret: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkersAi {
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

/// Collects the problems of one provider entry, each with its field path (the carbon feed, an
/// external API too, is checked with it).
pub(super) struct ProviderCheck<'a> {
    pub(super) path: &'a str,
    pub(super) issues: Vec<(String, String)>,
}

impl ProviderCheck<'_> {
    pub(super) fn issue(&mut self, field: &str, message: String) {
        self.issues.push((format!("{}.{field}", self.path), message));
    }

    /// An http(s) base URL without trailing slash: the configured one, else the default.
    pub(super) fn url(&mut self, value: Option<String>, default: Option<String>, field: &str) -> String {
        let Some(url) = value.or(default) else {
            self.issue(field, "is required for this provider kind".into());
            return String::new();
        };
        let url = url.trim_end_matches('/').to_string();
        if url.chars().any(char::is_control) {
            self.issue(field, "must not contain control characters (CR, LF, ...)".into());
        } else if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            self.issue(field, format!("must be an http(s) URL, got '{url}'"));
        }
        url
    }

    /// A secret's NAME (never the secret itself).
    pub(super) fn secret(&mut self, value: &str, field: &str) {
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

/// Every provider entry: its name, then its settings.
pub(super) fn validate_providers(
    raw: BTreeMap<String, RawProvider>,
    issue: &mut impl FnMut(String, String),
) -> BTreeMap<String, ProviderConfig> {
    let mut providers = BTreeMap::new();
    for (name, provider) in raw {
        let path = format!("providers.{name}");
        if !valid_name(&name) {
            issue(path.clone(), "provider names use letters, digits, '-', '_' and '.'".into());
        }
        let config = validate_provider(provider, &path, issue);
        providers.insert(name, config);
    }
    providers
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
            if !(raw.api_version.len() >= 10 && raw.api_version.starts_with("20")) || raw.api_version.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-')) {
                check.issue("api_version", format!("must be an Azure OpenAI API version such as 2024-10-21, got '{}'", raw.api_version));
            }
            let base_url = check.url(Some(raw.base_url), None, "base_url");
            ProviderConfig::Azure(AzureConfig { base_url, api_version: raw.api_version, api_key_secret: raw.api_key_secret, timeout_ms: raw.timeout_ms })
        }
        RawProvider::Anthropic(raw) => {
            check.secret(&raw.api_key_secret, "api_key_secret");
            check.timeout(raw.timeout_ms);
            let base_url = check.url(raw.base_url, Some("https://api.anthropic.com".into()), "base_url");
            if raw.version.as_deref().is_some_and(|v| v.is_empty() || v.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-'))) {
                check.issue("version", "must be an anthropic-version such as 2023-06-01 (letters, digits, '-'); it is sent as a header".into());
            }
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
