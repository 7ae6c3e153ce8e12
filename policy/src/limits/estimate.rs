//! What to reserve before the call, when the real usage is not known yet.
//!
//! OpenAI-family models get an exact input count from tiktoken (wired in by the core, lazily,
//! because building the encoder costs about 200 ms of CPU). Everything else, and every model when
//! no encoder is loaded, uses the documented heuristic below. The output is reserved in full:
//! `max_tokens` if the request sets it, the model's cap otherwise. After the call the provider's
//! reported usage replaces the estimate, so an estimate only has to be good enough for admission.

/// Characters per token of English text in the GPT tokenizers (OpenAI's rule of thumb: one token
/// is about four characters).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens of chat framing per message (role, separators), rounded up from OpenAI's 3.
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMER_TOKENS: u64 = 3;

/// The weighted character count of a text for [`estimate_input_tokens_fallback`]: every ASCII
/// character counts 1 and every other character counts [`CHARS_PER_TOKEN`], i.e. one token each.
/// Non-Latin scripts (Chinese, Japanese, Thai...) tokenise at roughly one token per character, so
/// counting them as four-character units keeps the estimate from falling short by 4x; accented
/// Latin letters are slightly overcounted, which is the safe side for admission.
pub fn fallback_chars(text: &str) -> u64 {
    text.chars().map(|c| if c.is_ascii() { 1 } else { CHARS_PER_TOKEN }).sum()
}

/// Estimated input tokens of a chat request from the (weighted, see [`fallback_chars`]) number of
/// characters of all message text and the number of messages:
/// `ceil(chars / 4) + 4 * messages + 3`.
///
/// It ignores images, audio and tool schemas; callers add their own allowance for those (tool
/// schemas can be counted as text).
pub fn estimate_input_tokens_fallback(chars: u64, messages: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN).saturating_add(TOKENS_PER_MESSAGE.saturating_mul(messages)).saturating_add(REPLY_PRIMER_TOKENS)
}

/// Output tokens to reserve: the request's `max_tokens` (or `max_completion_tokens`) if it set
/// one, capped at `default_cap`; `default_cap` when it did not. `default_cap` is the model's
/// maximum output (or a configured default). A call that produces more than was reserved is still
/// settled at its real usage.
pub fn output_reservation(max_tokens: Option<u64>, default_cap: u64) -> u64 {
    max_tokens.map_or(default_cap, |m| m.min(default_cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_estimate_is_documented_arithmetic() {
        assert_eq!(estimate_input_tokens_fallback(0, 0), 3);
        assert_eq!(estimate_input_tokens_fallback(1, 1), 1 + 4 + 3);
        assert_eq!(estimate_input_tokens_fallback(400, 2), 100 + 8 + 3);
        assert_eq!(estimate_input_tokens_fallback(401, 2), 101 + 8 + 3);
        assert_eq!(estimate_input_tokens_fallback(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn non_ascii_characters_count_as_a_token_each() {
        assert_eq!(fallback_chars("Hello"), 5);
        assert_eq!(fallback_chars("你好世界"), 16);
        assert_eq!(estimate_input_tokens_fallback(fallback_chars("你好世界"), 1), 4 + 4 + 3);
        assert_eq!(fallback_chars("café"), 3 + 4);
    }

    #[test]
    fn output_reservation_uses_max_tokens_capped_by_the_model() {
        assert_eq!(output_reservation(Some(256), 4096), 256);
        assert_eq!(output_reservation(Some(100_000), 4096), 4096);
        assert_eq!(output_reservation(None, 4096), 4096);
        assert_eq!(output_reservation(Some(0), 4096), 0);
    }
}
