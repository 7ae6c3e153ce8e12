//! The API operations the gateway serves, matched from method and path without any I/O: an
//! unknown route fails before the configuration is even read.

/// One API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    /// Anthropic's Messages API, translated to and from the gateway's chat pipeline.
    Messages,
    Embeddings,
    ListModels,
    GetModel(String),
    /// Feedback on one of the caller's earlier requests (docs/observability.md, "Feedback").
    Feedback,
}

impl Endpoint {
    /// The operation's name in the usage event.
    pub fn operation(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ListModels | Endpoint::GetModel(_) => "models",
            Endpoint::Feedback => "feedback",
        }
    }

    pub fn allowed_method(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Embeddings | Endpoint::Feedback => "POST",
            Endpoint::ListModels | Endpoint::GetModel(_) => "GET",
        }
    }

    pub fn from_path(path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/models" => Some(Endpoint::ListModels),
            "/v1/feedback" => Some(Endpoint::Feedback),
            _ => path
                .strip_prefix("/v1/models/")
                .filter(|id| !id.is_empty())
                .map(|id| Endpoint::GetModel(id.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_and_without_trailing_slash() {
        assert_eq!(Endpoint::from_path("/v1/chat/completions/"), Some(Endpoint::ChatCompletions));
        assert_eq!(Endpoint::from_path("/v1/models/org/model-1"), Some(Endpoint::GetModel("org/model-1".into())));
        assert_eq!(Endpoint::from_path("/v1/models/"), Some(Endpoint::ListModels));
        assert_eq!(Endpoint::from_path("/v2/chat"), None);
    }
}
