//! Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, LM Studio, ...).
//!
//! The request body is forwarded as the client sent it, with two changes: `model` becomes the
//! configured upstream model, and streamed requests always ask for the final usage chunk
//! (`stream_options.include_usage`) so the gateway can account for tokens; the stream stage
//! strips that chunk again when the client did not ask for it.

use serde_json::{Map, Value};

use super::call::ProviderErrorBody;
use super::url::percent_encode_segment;
use crate::config::{AzureConfig, ModelRoute, OpenAiProviderConfig};
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingsRequest};

pub fn chat_request(
    config: &OpenAiProviderConfig,
    route: &ModelRoute,
    mut request: ChatRequest,
    api_key: Option<&str>,
) -> OutboundRequest {
    request.model = route.upstream_model.clone();
    let stream = request.is_stream();
    if stream && config.flavor.accepts_stream_options() {
        request
            .stream_options
            .get_or_insert_with(Map::new)
            .insert("include_usage".into(), Value::Bool(true));
    }
    let body = serde_json::to_vec(&request).unwrap_or_default();
    post(config, "/chat/completions", body, api_key, stream)
}

pub fn embeddings_request(
    config: &OpenAiProviderConfig,
    route: &ModelRoute,
    mut request: EmbeddingsRequest,
    api_key: Option<&str>,
) -> OutboundRequest {
    request.model = route.upstream_model.clone();
    let body = serde_json::to_vec(&request).unwrap_or_default();
    post(config, "/embeddings", body, api_key, false)
}

fn post(config: &OpenAiProviderConfig, path: &str, body: Vec<u8>, api_key: Option<&str>, stream: bool) -> OutboundRequest {
    let auth = api_key.map(|key| ("authorization", format!("Bearer {key}")));
    json_post(format!("{}{path}", config.base_url), body, auth, stream)
}

fn json_post(url: String, body: Vec<u8>, auth: Option<(&str, String)>, stream: bool) -> OutboundRequest {
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), if stream { "text/event-stream" } else { "application/json" }.to_string()),
    ];
    if let Some((name, value)) = auth {
        headers.push((name.to_string(), value));
    }
    OutboundRequest { method: "POST", url, headers, body }
}

/// Azure OpenAI: the deployment (the route's upstream model) is in the path, the version in the
/// query, the key in `api-key`. The body keeps `model` (Azure ignores it).
pub fn azure_chat_request(config: &AzureConfig, route: &ModelRoute, mut request: ChatRequest, api_key: &str) -> OutboundRequest {
    request.model = route.upstream_model.clone();
    let stream = request.is_stream();
    if stream {
        request.stream_options.get_or_insert_with(Map::new).insert("include_usage".into(), Value::Bool(true));
    }
    let body = serde_json::to_vec(&request).unwrap_or_default();
    json_post(azure_url(config, route, "chat/completions"), body, Some(("api-key", api_key.to_string())), stream)
}

pub fn azure_embeddings_request(config: &AzureConfig, route: &ModelRoute, mut request: EmbeddingsRequest, api_key: &str) -> OutboundRequest {
    request.model = route.upstream_model.clone();
    let body = serde_json::to_vec(&request).unwrap_or_default();
    json_post(azure_url(config, route, "embeddings"), body, Some(("api-key", api_key.to_string())), false)
}

fn azure_url(config: &AzureConfig, route: &ModelRoute, operation: &str) -> String {
    format!(
        "{}/openai/deployments/{}/{operation}?api-version={}",
        config.base_url,
        percent_encode_segment(&route.upstream_model),
        percent_encode_segment(&config.api_version)
    )
}

/// An OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_message(_status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let message = error.get("message").and_then(Value::as_str)?.to_string();
    let kind = error.get("code").and_then(Value::as_str).or_else(|| error.get("type").and_then(Value::as_str)).map(str::to_string);
    Some(ProviderErrorBody { message, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelKind, OpenAiFlavor};
    use crate::openai::parse_request;

    fn config() -> OpenAiProviderConfig {
        OpenAiProviderConfig { base_url: "https://up.example/v1".into(), api_key_secret: Some("K".into()), timeout_ms: None, flavor: OpenAiFlavor::OpenAi }
    }

    fn route() -> ModelRoute {
        ModelRoute { name: "fast".into(), provider: "openai".into(), upstream_model: "gpt-4o-mini".into(), kind: ModelKind::Chat, guard: None }
    }

    #[test]
    fn rewrites_model_keeps_unknown_fields_and_injects_stream_usage() {
        let request: ChatRequest = parse_request(
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"x":1},"logit_bias":{"5":1},"custom":"kept"}"#,
        )
        .unwrap();
        let out = chat_request(&config(), &route(), request, Some("sk-provider"));
        assert_eq!(out.url, "https://up.example/v1/chat/completions");
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["custom"], "kept");
        assert_eq!(body["logit_bias"]["5"], 1);
        assert_eq!(body["stream_options"], serde_json::json!({"x": 1, "include_usage": true}));
        assert!(out.headers.contains(&("authorization".into(), "Bearer sk-provider".into())));
        assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
    }

    #[test]
    fn non_stream_requests_are_not_given_stream_options() {
        let request: ChatRequest = parse_request(br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let out = chat_request(&config(), &route(), request, None);
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(body.get("stream_options").is_none());
        assert!(!out.headers.iter().any(|(k, _)| k == "authorization"));
    }
}
