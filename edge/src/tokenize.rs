//! Prompt-token estimates for admission (rate limits and budgets), before the provider reports
//! the real usage.
//!
//! With the `tiktoken` feature, OpenAI-family models get exact counts from the `o200k_base`
//! encoding (GPT-4o, GPT-4.1, o-series, GPT-5; older cl100k models differ by a few percent, which
//! the settlement corrects). Building the encoder costs about 150 ms of CPU natively and more in
//! wasm, so it is built lazily: only when a request needs an estimate (a token limit or a budget
//! applies) for an OpenAI-family model, once per isolate. Everything else uses the documented
//! character heuristic of `policy::limits::estimate_input_tokens_fallback`.

use serde_json::Value;

use crate::openai::ChatRequest;

/// How a prompt was counted, for the usage event and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    Tiktoken,
    Heuristic,
}

/// Estimated prompt tokens of a chat request and how they were counted.
pub fn chat_input_tokens(request: &ChatRequest, openai_family: bool) -> (u64, Estimator) {
    if openai_family {
        if let Some(tokens) = tiktoken::chat_tokens(request) {
            return (tokens, Estimator::Tiktoken);
        }
    }
    (heuristic_chat_tokens(request), Estimator::Heuristic)
}

/// Images: OpenAI bills a low-detail image at 85 tokens; reserve that per image part (higher
/// detail costs more and is settled from the provider's usage).
const TOKENS_PER_IMAGE: u64 = 85;

fn image_parts(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
        .count() as u64
}

/// Every text the prompt carries: message contents, names, tool calls and tool definitions.
fn texts(request: &ChatRequest) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let messages = request.messages.iter().flat_map(|m| {
        let content: Vec<std::borrow::Cow<'_, str>> = match m.get("content") {
            Some(Value::String(s)) => vec![s.as_str().into()],
            Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).map(Into::into).collect(),
            _ => Vec::new(),
        };
        let extra = ["tool_calls", "function_call"].into_iter().filter_map(move |k| m.get(k)).map(|v| v.to_string().into());
        let name = m.get("name").and_then(Value::as_str).map(Into::into);
        content.into_iter().chain(extra).chain(name)
    });
    let tools = request.rest.get("tools").map(|t| t.to_string().into());
    messages.chain(tools)
}

fn heuristic_chat_tokens(request: &ChatRequest) -> u64 {
    let chars: u64 = texts(request).map(|t| policy::limits::fallback_chars(&t)).sum();
    policy::limits::estimate_input_tokens_fallback(chars, request.messages.len() as u64)
        .saturating_add(image_parts(request) * TOKENS_PER_IMAGE)
}

#[cfg(feature = "tiktoken")]
mod tiktoken {
    use std::cell::OnceCell;

    use tiktoken_rs::CoreBPE;

    use super::{image_parts, texts, TOKENS_PER_IMAGE};
    use crate::openai::ChatRequest;

    thread_local! {
        /// One encoder per isolate, built on first use (never at startup).
        static O200K: OnceCell<Option<CoreBPE>> = const { OnceCell::new() };
    }

    /// OpenAI's documented chat accounting: 3 tokens per message, the content's tokens, 3 more
    /// to prime the reply.
    pub fn chat_tokens(request: &ChatRequest) -> Option<u64> {
        O200K.with(|cell| {
            let bpe = cell.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()?;
            let content: u64 = texts(request).map(|t| bpe.encode_ordinary(&t).len() as u64).sum();
            Some(3 + 3 * request.messages.len() as u64 + content + image_parts(request) * TOKENS_PER_IMAGE)
        })
    }

    /// Whether the encoder has been built in this isolate (for the benchmark and tests).
    pub fn loaded() -> bool {
        O200K.with(|cell| cell.get().is_some())
    }
}

#[cfg(not(feature = "tiktoken"))]
mod tiktoken {
    use crate::openai::ChatRequest;

    pub fn chat_tokens(_request: &ChatRequest) -> Option<u64> {
        None
    }

    pub fn loaded() -> bool {
        false
    }
}

/// Whether the tiktoken encoder has been built in this isolate.
pub fn encoder_loaded() -> bool {
    tiktoken::loaded()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_request;

    #[test]
    fn heuristic_counts_text_tools_and_images() {
        let request: ChatRequest = parse_request(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abcdefgh"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        )
        .unwrap();
        // 8 chars -> 2 tokens, 1 message -> 4, primer 3, one image 85.
        assert_eq!(heuristic_chat_tokens(&request), 2 + 4 + 3 + 85);
        let (tokens, how) = chat_input_tokens(&request, false);
        assert_eq!((tokens, how), (94, Estimator::Heuristic));
        assert!(!cfg!(feature = "tiktoken") || !encoder_loaded(), "not built for non-OpenAI models");
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn tiktoken_counts_openai_models_exactly() {
        let request: ChatRequest =
            parse_request(br#"{"model":"m","messages":[{"role":"user","content":"Hello, how are you doing today?"}]}"#).unwrap();
        let (tokens, how) = chat_input_tokens(&request, true);
        assert_eq!(how, Estimator::Tiktoken);
        // "Hello, how are you doing today?" is 8 tokens in o200k_base; + 3 per message + 3 primer.
        assert_eq!(tokens, 8 + 3 + 3);
        assert!(encoder_loaded());
    }
}
