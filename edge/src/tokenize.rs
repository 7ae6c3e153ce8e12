//! Prompt-token estimates for admission (rate limits and budgets), before the provider reports
//! the real usage.
//!
//! With the `tiktoken` feature, OpenAI-family models get exact counts from the `o200k_base`
//! encoding (GPT-4o, GPT-4.1, o-series, GPT-5; older cl100k models differ by a few percent, which
//! the settlement corrects). Building the encoder costs about 150 ms of CPU natively and more in
//! wasm, so it is built lazily: only when a request needs an estimate (a token limit or a budget
//! applies) for an OpenAI-family model, once per isolate. Everything else uses the documented
//! upper-bound heuristic of `policy::limits::estimate_text_tokens` plus the chat framing of
//! `policy::limits::estimate_input_tokens_fallback`.

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
    let text: u64 = texts(request).map(|t| policy::limits::estimate_text_tokens(&t)).sum();
    policy::limits::estimate_input_tokens_fallback(0, request.messages.len() as u64)
        .saturating_add(text)
        .saturating_add(image_parts(request) * TOKENS_PER_IMAGE)
}

/// Upper-bound output tokens of the text one OpenAI stream chunk delivers: every choice's
/// content, refusal, reasoning and tool-call names and arguments (what a client that leaves
/// mid-stream is charged for when the provider reported no usage).
pub fn chunk_output_tokens(chunk: &Value) -> u64 {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else { return 0 };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, policy::limits::estimate_text_tokens);
    choices
        .iter()
        .filter_map(|c| c.get("delta"))
        .map(|delta| {
            let own: u64 = ["content", "refusal", "reasoning_content", "reasoning"].iter().map(|k| text(delta.get(*k))).sum();
            let tools: u64 = delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|call| call.get("function"))
                .map(|f| text(f.get("name")) + text(f.get("arguments")))
                .sum();
            own + tools
        })
        .sum()
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
    fn chunk_output_counts_every_delivered_text() {
        let chunk = serde_json::json!({"choices": [
            {"index": 0, "delta": {"content": "hello world"}},
            {"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "1234567"}}]}}
        ]});
        assert_eq!(chunk_output_tokens(&chunk), 3 + 1 + 3);
        assert_eq!(chunk_output_tokens(&serde_json::json!({"choices": [], "usage": {"prompt_tokens": 1}})), 0);
    }

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

    /// Texts that tokenise densely (and some that do not), deterministic.
    #[cfg(feature = "tiktoken")]
    fn dense_corpus() -> Vec<(&'static str, String)> {
        use base64::Engine;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect()
        };
        let random = bytes(3000);
        let digits: String = bytes(2000).iter().map(|b| char::from(b'0' + b % 10)).collect();
        let letters: String = bytes(2000).iter().map(|b| char::from(b'a' + b % 26)).collect();
        let cjk_rare: String = bytes(1200).chunks(2).map(|p| char::from_u32(0x4E00 + (u32::from(p[0]) << 6 | u32::from(p[1]) >> 2) % 0x51A0).unwrap()).collect();
        let hangul: String = bytes(800).chunks(2).map(|p| char::from_u32(0xAC00 + (u32::from(p[0]) << 8 | u32::from(p[1])) % 11172).unwrap()).collect();
        vec![
            ("base64", base64::engine::general_purpose::STANDARD.encode(&random)),
            ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&random[..1500])),
            ("hex", hex::encode(&random[..1500])),
            ("HEX", hex::encode_upper(&random[..1500])),
            ("digits", digits.clone()),
            ("spaced digits", digits.as_bytes().chunks(7).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ")),
            ("random letters", letters.clone()),
            ("uuids", (0..40).map(|i| { let b = &random[i * 16..i * 16 + 16]; format!("{}-{}-{}-{}-{}", hex::encode(&b[..4]), hex::encode(&b[4..6]), hex::encode(&b[6..8]), hex::encode(&b[8..10]), hex::encode(&b[10..])) }).collect::<Vec<_>>().join("\n")),
            ("cjk common", "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。東京は日本の首都であり、世界で最も人口の多い都市圏です。ひらがなとカタカナ。한국어는 대한민국의 공용어이다。".repeat(8)),
            ("cjk rare", cjk_rare),
            ("hangul syllables", hangul),
            ("emoji", "😀😃😄😁😆😅🤣😂🙂🙃😉😊😇🥰😍🤩😘😗☺️😚😙🥲😋😛😜🤪😝🤑🤗🤭🫢🫣🤫🤔🫡🤐🤨😐😑😶🫥😶‍🌫️😏😒🙄😬😮‍💨🤥🫨".repeat(6)),
            ("emoji sequences", "👨‍👩‍👧‍👦👩🏽‍💻🏳️‍🌈🇯🇵🇫🇷🇺🇸👍🏿🧑🏻‍🤝‍🧑🏾❤️‍🔥🫱🏼‍🫲🏾".repeat(10)),
            ("accented and cyrillic", "Ça coûte très cher à Zürich. Привет, как дела? Γειά σου κόσμε. مرحبا بالعالم. שלום עולם".repeat(10)),
            ("code", "fn main() { let x: Vec<u8> = (0..255).map(|i| i as u8).collect(); println!(\"{:?}\", x.iter().sum::<u8>()); } // TODO(#4412): check_bounds_v2(&mut ctx)?;\n".repeat(10)),
            ("json", r#"{"id":"chatcmpl-9x8Yz","object":"chat.completion.chunk","created":1712345678,"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#.repeat(10)),
            ("prose", "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times; and nobody, really, expected what came next.\n".repeat(10)),
        ]
    }

    /// The heuristic never counts fewer tokens than o200k or cl100k on dense text (the
    /// reservation is an upper bound), and stays within a few times the real count.
    #[cfg(feature = "tiktoken")]
    #[test]
    fn heuristic_bounds_the_gpt_tokenizers_on_dense_text() {
        let o200k = tiktoken_rs::o200k_base().unwrap();
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        let mut failures = Vec::new();
        for (name, text) in dense_corpus() {
            let estimate = policy::limits::estimate_text_tokens(&text);
            let real = o200k.encode_ordinary(&text).len().max(cl100k.encode_ordinary(&text).len()) as u64;
            let old = policy::limits::fallback_chars(&text).div_ceil(4);
            eprintln!("{name:24} estimate {estimate:6} tiktoken {real:6} ratio {:.2} (old heuristic {:.2})", estimate as f64 / real as f64, old as f64 / real as f64);
            if estimate < real || estimate > real * 4 {
                failures.push(format!("{name}: estimate {estimate}, real {real}"));
            }
        }
        assert!(failures.is_empty(), "outside [real, 4 x real]: {failures:?}");
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
