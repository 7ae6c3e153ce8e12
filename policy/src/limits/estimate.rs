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

/// An upper-bound token count of a text for admission and for charging delivered output when
/// the provider reports none, cheap enough to run on every streamed chunk (one pass, no tables).
///
/// Prose keeps the four-characters-per-token rule. Text that tokenises densely is charged per
/// class, from how the GPT pre-tokenisers (cl100k, o200k) split text before byte-pair merging:
/// a token never spans a split, and never holds less than one byte.
/// - Digits split into groups of at most three, and every 1–3 digit group is one token: a run
///   of `n` digits costs `ceil(n / 3)`.
/// - A *dense word* (a run of ASCII non-whitespace that mixes digits and letters, changes case
///   inside, carries more than two punctuation marks or is 24 characters or longer: base64,
///   hex, identifiers, URLs, code, letter soup) is split at every letter/digit/punctuation
///   change and at every lower-to-upper case change; each letter piece costs `ceil(2 * len / 3)`
///   and each punctuation mark one token.
/// - A space before a word that starts with a digit or a mark is a token of its own.
/// - Other ASCII (plain words, the spaces before them, a plain word's punctuation) counts a
///   quarter token per character, as before.
/// - A two-byte character (accented Latin, Greek, Cyrillic, Hebrew, Arabic) costs one token;
///   a three- or four-byte character (CJK, kana, Hangul, Indic scripts, emoji, their joiners
///   and variation selectors) one token per UTF-8 byte, the byte-level fallback every byte-pair
///   vocabulary can reach on rare characters (a token never holds less than one byte).
///
/// `tokenize::tests` in the edge crate checks the bound against o200k and cl100k on a corpus
/// of dense texts when built with the `tiktoken` feature.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let mut quarters: u64 = 0;
    let mut tokens: u64 = 0;
    let mut after_space = false;
    for word in text.split_inclusive(|c: char| c.is_ascii_whitespace()) {
        let (body, space) = match word.char_indices().last() {
            Some((at, c)) if c.is_ascii_whitespace() => (&word[..at], true),
            _ => (word, false),
        };
        // A space merges into a following letter, never into a digit or a mark.
        if after_space {
            match body.bytes().next() {
                Some(b) if !b.is_ascii_alphabetic() => tokens += 1,
                _ => quarters += 1,
            }
        }
        after_space = space;
        let mut ascii_start = None;
        for (at, c) in body.char_indices() {
            if c.is_ascii() {
                ascii_start.get_or_insert(at);
                continue;
            }
            if let Some(start) = ascii_start.take() {
                tokens += ascii_word_cost(&body[start..at], &mut quarters);
            }
            tokens += non_ascii_cost(c);
        }
        if let Some(start) = ascii_start {
            tokens += ascii_word_cost(&body[start..], &mut quarters);
        }
    }
    tokens += u64::from(after_space);
    tokens.saturating_add(quarters.div_ceil(CHARS_PER_TOKEN))
}

/// What a non-ASCII character costs in [`estimate_text_tokens`].
fn non_ascii_cost(c: char) -> u64 {
    match c {
        // Zero-width joiner and non-joiner, variation selectors: glue of emoji sequences.
        c if c.len_utf8() == 2 => 1,
        c => c.len_utf8() as u64,
    }
}

/// Words at least this long are not prose (letter soup, encoded data, long identifiers).
const LONG_WORD: usize = 24;

/// The character classes a pre-tokeniser splits ASCII words at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AsciiClass {
    Lower,
    Upper,
    Digit,
    Mark,
}

fn ascii_class(b: u8) -> AsciiClass {
    match b {
        b'a'..=b'z' => AsciiClass::Lower,
        b'A'..=b'Z' => AsciiClass::Upper,
        b'0'..=b'9' => AsciiClass::Digit,
        _ => AsciiClass::Mark,
    }
}

/// Whole tokens of one ASCII word (no whitespace); plain text goes to `quarters` instead.
fn ascii_word_cost(word: &str, quarters: &mut u64) -> u64 {
    let bytes = word.as_bytes();
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let marks = bytes.len() - letters - digits;
    let case_changes = bytes.windows(2).filter(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase()).count();
    let dense = (letters > 0 && digits > 0) || case_changes > 0 || marks > 2 || bytes.len() >= LONG_WORD;
    let mut tokens = 0;
    let mut piece = 0u64;
    let mut class = None;
    for &b in bytes {
        let next = ascii_class(b);
        let same_piece = match (class, next) {
            (Some(AsciiClass::Upper), AsciiClass::Lower) => true,
            (Some(a), b) => a == b && b != AsciiClass::Mark,
            (None, _) => false,
        };
        if !same_piece {
            tokens += piece_cost(class, piece, dense, quarters);
            piece = 0;
        }
        class = Some(next);
        piece += 1;
    }
    tokens + piece_cost(class, piece, dense, quarters)
}

/// Whole tokens of one piece of an ASCII word; plain letters and marks count in `quarters`.
fn piece_cost(class: Option<AsciiClass>, len: u64, dense: bool, quarters: &mut u64) -> u64 {
    match class {
        None => 0,
        Some(AsciiClass::Digit) => len.div_ceil(3),
        Some(AsciiClass::Mark) if dense => len,
        Some(AsciiClass::Lower | AsciiClass::Upper) if dense => (2 * len).div_ceil(3),
        Some(_) => {
            *quarters += len;
            0
        }
    }
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
    fn dense_text_is_charged_per_class() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("hello world"), 3, "prose: a quarter token per character");
        assert_eq!(estimate_text_tokens("1234567"), 3, "digits: groups of three");
        assert_eq!(estimate_text_tokens("a 1234567"), 1 + 1 + 3, "the space before digits is its own token");
        assert_eq!(estimate_text_tokens("3f9a"), 4, "hex: every letter/digit change splits");
        assert_eq!(estimate_text_tokens("aGVsbG8="), 1 + 3 + 1 + 1 + 1, "base64: a|GVsb|G|8|=, letters at two thirds of a token");
        assert_eq!(estimate_text_tokens("你好"), 6, "three-byte characters: one token per byte");
        assert_eq!(estimate_text_tokens("привет"), 6, "two-byte characters: one token each");
        assert_eq!(estimate_text_tokens("👍🏿"), 8, "emoji: one token per byte");
        let old = fallback_chars("aGVsbG8gd29ybGQ=").div_ceil(CHARS_PER_TOKEN);
        assert!(estimate_text_tokens("aGVsbG8gd29ybGQ=") > 2 * old, "the old rule under-counted base64");
    }

    #[test]
    fn output_reservation_uses_max_tokens_capped_by_the_model() {
        assert_eq!(output_reservation(Some(256), 4096), 256);
        assert_eq!(output_reservation(Some(100_000), 4096), 4096);
        assert_eq!(output_reservation(None, 4096), 4096);
        assert_eq!(output_reservation(Some(0), 4096), 0);
    }
}
