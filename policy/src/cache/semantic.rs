//! The semantic tier's decisions: which partition a query searches, which text is embedded,
//! how similar two embeddings are, and whether a similar cached query may answer this one.
//!
//! Embeddings are close for sentences that differ in exactly what matters to an answer: "Is 17
//! a prime number?" and "Is 19 a prime number?", "Can I take aspirin with ibuprofen?" and "Can
//! I not take ...", "Convert USD to EUR" and "Convert EUR to USD". So a hit needs two things
//! ([`semantic_verdict`]): cosine similarity at or above the threshold, and [`QueryFeatures`]
//! that agree — the same numbers (digits, written-out numbers, units, dates) in the same order,
//! the same count of negations, the same named entities (capitalised names, quoted strings,
//! code identifiers, URLs, e-mail addresses) in the same order, and the same language and
//! script. The check is a hand-written scanner over the text with fixed word tables (no regex,
//! nothing compiled per call): it runs on every candidate of every lookup, at the edge.
//!
//! The default threshold and the check were chosen on the labelled pairs in
//! `tests/cache/semantic-pairs.jsonl` with all-MiniLM-L6-v2 (see
//! `bench-results/semantic-cache.md`).

use sha2::{Digest, Sha256};

/// The cosine similarity at or above which a candidate may answer, with the feature check.
/// Chosen from the evaluation in `bench-results/semantic-cache.md` (all-MiniLM-L6-v2): the
/// lowest threshold whose false-hit rate, with the check, is at most 1% on the labelled set.
pub const DEFAULT_SIMILARITY_THRESHOLD: f32 = 0.78;

/// The partition a query searches and is stored in: one per (cache scope, resolved model,
/// hash of system prompt + tools + generation parameters). A query never sees entries of
/// another partition, so answers never cross tenants, system prompts or tool sets.
///
/// `context_hash` is the exact cache's canonical hash of everything except the conversation's
/// turns. The result is 64 lowercase hex digits: a valid Durable Object name and Vectorize
/// namespace. Fields are length-prefixed, so no two different triples collide by concatenation.
pub fn partition_id(scope: &str, model: &str, context_hash: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"gateway-semantic-partition/v1");
    for field in [scope, model, context_hash] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Which part of the conversation is embedded and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryScope {
    /// The last user turn only (the default): follow-ups of different conversations that ask
    /// the same thing share answers, and the embedding stays short.
    #[default]
    LastUserTurn,
    /// Every user and assistant turn, in order, each as `role: text` on its own line.
    Conversation,
}

/// One turn of a conversation as plain text (the pipeline flattens its content parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    pub role: &'a str,
    pub text: &'a str,
}

/// The text to embed, or `None` when there is no user turn with text (nothing to compare:
/// the semantic tier is skipped). System turns are never part of it: they are in the partition.
pub fn query_text(turns: &[Turn<'_>], scope: QueryScope) -> Option<String> {
    match scope {
        QueryScope::LastUserTurn => {
            let text = turns.iter().rev().find(|t| t.role == "user")?.text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        }
        QueryScope::Conversation => {
            if !turns.iter().any(|t| t.role == "user" && !t.text.trim().is_empty()) {
                return None;
            }
            let lines: Vec<String> = turns
                .iter()
                .filter(|t| t.role != "system" && t.role != "developer" && !t.text.trim().is_empty())
                .map(|t| format!("{}: {}", t.role, t.text.trim()))
                .collect();
            Some(lines.join("\n"))
        }
    }
}

/// Cosine similarity of two vectors; 0 when their lengths differ or either is all zeros.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0)
}

/// Why a candidate was refused, or that it may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemanticVerdict {
    /// Similar enough and the features agree: serve the cached answer.
    Hit,
    /// Similarity below the threshold.
    BelowThreshold,
    /// Similar, but the queries differ in something that changes the answer.
    Mismatch(FeatureMismatch),
}

/// What differs between two similar queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureMismatch {
    /// Different numbers, units or dates, or the same ones in another order.
    Numbers,
    /// A different count of negations ("not", "never", "n't", "ohne", ...).
    Negation,
    /// A named entity, quoted string, identifier, URL or e-mail of one is absent from the other.
    Entities,
    /// The same entities in another order ("Alice owes Bob" / "Bob owes Alice").
    EntityOrder,
    /// The very same words in another order ("is a cat faster than a dog" / "is a dog faster
    /// than a cat"): a paraphrase changes words, a swap of roles only moves them.
    WordOrder,
    /// Different languages (the answer would be in another language).
    Language,
    /// Different writing systems.
    Script,
}

/// The decision for one candidate: `similarity` of the embeddings, the configured `threshold`,
/// and the features of the new and the cached query.
pub fn semantic_verdict(similarity: f32, threshold: f32, new_query: &QueryFeatures, cached_query: &QueryFeatures) -> SemanticVerdict {
    if similarity.is_nan() || similarity < threshold {
        return SemanticVerdict::BelowThreshold;
    }
    match new_query.compare(cached_query) {
        Ok(()) => SemanticVerdict::Hit,
        Err(mismatch) => SemanticVerdict::Mismatch(mismatch),
    }
}

/// What of a query must match a cached query's for its answer to be reused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryFeatures {
    /// Normalised numbers in order of appearance: `"5:km"`, `"3.5"`, `"#2"` (ordinal),
    /// `"2024-01-05"` (dates and times as written).
    numbers: Vec<String>,
    negations: u32,
    /// Capitalised words that are not a sentence-opening function word, lowercased, in order.
    names: Vec<String>,
    /// Quoted strings (as written), URLs, e-mail addresses and code identifiers (lowercased).
    literals: Vec<String>,
    /// Every word, lowercased: a name of one query may appear uncapitalised in the other.
    words: Vec<String>,
    language: Option<Language>,
    script: Option<Script>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    English,
    French,
    German,
    Spanish,
    Italian,
    Portuguese,
    Dutch,
}

const LANGUAGES: [Language; 7] =
    [Language::English, Language::French, Language::German, Language::Spanish, Language::Italian, Language::Portuguese, Language::Dutch];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
    Arabic,
    Hebrew,
    Han,
    Kana,
    Hangul,
    Devanagari,
    Thai,
}

impl QueryFeatures {
    /// Scan `text` once.
    pub fn extract(text: &str) -> Self {
        let tokens = tokenize(text);
        let mut features = QueryFeatures::default();
        let mut votes = [0u32; LANGUAGES.len()];
        let mut numbers = NumberReader::default();
        for (i, token) in tokens.iter().enumerate() {
            match token.kind {
                TokenKind::Literal => {
                    numbers.flush(&mut features.numbers, None);
                    features.literals.push(token.text.to_owned());
                }
                TokenKind::Symbol => {
                    // A currency sign before a number is its unit ("$5"); after, handled below.
                    if let Some(unit) = unit_of(token.text) {
                        if tokens.get(i + 1).is_some_and(|t| t.text.starts_with(|c: char| c.is_ascii_digit())) {
                            numbers.prefix_unit = Some(unit);
                        } else {
                            numbers.flush(&mut features.numbers, Some(unit));
                        }
                    }
                }
                TokenKind::Word => {
                    let mut lower = token.text.to_lowercase();
                    // "France's" names France.
                    for possessive in ["'s", "’s"] {
                        if lower.len() > possessive.len() + 1 && lower.ends_with(possessive) {
                            lower.truncate(lower.len() - possessive.len());
                        }
                    }
                    for (vote, language) in votes.iter_mut().zip(LANGUAGES) {
                        if is_function_word(language, &lower) {
                            *vote += 1;
                        }
                    }
                    if is_negation(&lower) {
                        features.negations += 1;
                    }
                    if numbers.read_word(&lower, token, &mut features.numbers) {
                        features.words.push(lower);
                        continue;
                    }
                    if is_code_identifier(token.text) {
                        features.literals.push(lower.clone());
                    } else if is_name(token, &lower) {
                        features.names.push(lower.clone());
                    }
                    features.words.push(lower);
                }
            }
        }
        numbers.flush(&mut features.numbers, None);
        if text.contains(['¿', '¡']) {
            votes[Language::Spanish as usize] += 2;
        }
        features.language = dominant_language(&votes);
        features.script = dominant_script(text);
        features
    }

    /// Whether `cached` may answer a query with these features; the first difference found.
    pub fn compare(&self, cached: &QueryFeatures) -> Result<(), FeatureMismatch> {
        if let (Some(a), Some(b)) = (self.script, cached.script) {
            if a != b {
                return Err(FeatureMismatch::Script);
            }
        }
        if let (Some(a), Some(b)) = (self.language, cached.language) {
            if a != b {
                return Err(FeatureMismatch::Language);
            }
        }
        if self.numbers != cached.numbers {
            return Err(FeatureMismatch::Numbers);
        }
        if self.negations != cached.negations {
            return Err(FeatureMismatch::Negation);
        }
        let mut literals_a = self.literals.clone();
        let mut literals_b = cached.literals.clone();
        literals_a.sort_unstable();
        literals_b.sort_unstable();
        literals_a.dedup();
        literals_b.dedup();
        if literals_a != literals_b {
            return Err(FeatureMismatch::Entities);
        }
        let names_present = |names: &[String], words: &[String]| names.iter().all(|n| words.contains(n));
        if !names_present(&self.names, &cached.words) || !names_present(&cached.names, &self.words) {
            return Err(FeatureMismatch::Entities);
        }
        // Entities both mention must come in the same order (swapped roles).
        let order = |own: &QueryFeatures, other: &QueryFeatures| -> Vec<String> {
            let mut seen: Vec<String> = Vec::new();
            for word in &own.words {
                let named = self.names.contains(word) || cached.names.contains(word);
                if named && other.words.contains(word) && !seen.contains(word) {
                    seen.push(word.clone());
                }
            }
            seen
        };
        if order(self, cached) != order(cached, self) {
            return Err(FeatureMismatch::EntityOrder);
        }
        if self.words != cached.words && self.words.len() == cached.words.len() {
            let mut a: Vec<&str> = self.words.iter().map(String::as_str).collect();
            let mut b: Vec<&str> = cached.words.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            if a == b {
                return Err(FeatureMismatch::WordOrder);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// Letters and digits with inner joiners (`don't`, `3.5`, `2024-01-05`, `foo_bar`, `a@b.c`).
    Word,
    /// A quoted string, URL or e-mail address: compared as a whole.
    Literal,
    /// A single unit sign: `%`, `$`, `€`, `£`, `¥`, `°`.
    Symbol,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    kind: TokenKind,
    /// First token of the text or of a sentence (after `.`, `!`, `?`, `:`, `;` or a line break).
    sentence_start: bool,
}

fn closing_quote(open: char) -> Option<&'static [char]> {
    Some(match open {
        '"' => &['"'],
        '“' => &['”', '"'],
        '„' => &['“', '”'],
        '«' => &['»'],
        '‘' => &['’'],
        '`' => &['`'],
        '\'' => &['\''],
        _ => return None,
    })
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '’' | '-' | '_' | '.' | '/' | ':' | ',' | '@' | '+')
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut sentence_start = true;
    let mut at = 0;
    let bytes_len = text.len();
    while at < bytes_len {
        let rest = &text[at..];
        let c = rest.chars().next().unwrap_or(' ');
        let prev_is_space = at == 0 || text[..at].chars().next_back().is_some_and(|p| p.is_whitespace() || "([{".contains(p));
        if c.is_whitespace() {
            if c == '\n' {
                sentence_start = true;
            }
            at += c.len_utf8();
            continue;
        }
        let lower_start: String = rest.chars().take(8).flat_map(char::to_lowercase).collect();
        if lower_start.starts_with("http://") || lower_start.starts_with("https://") || lower_start.starts_with("www.") {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let url = rest[..end].trim_end_matches(|ch: char| ".,;:!?)]}>\"'".contains(ch));
            tokens.push(Token { text: url, kind: TokenKind::Literal, sentence_start });
            sentence_start = false;
            at += url.len().max(1);
            continue;
        }
        if let Some(closers) = closing_quote(c).filter(|_| c != '\'' || prev_is_space) {
            let inner_start = c.len_utf8();
            let close = rest[inner_start..].char_indices().find(|(i, ch)| {
                closers.contains(ch)
                    && (*ch != '\'' || !rest[inner_start + i + 1..].starts_with(|n: char| n.is_alphanumeric()))
            });
            if let Some((i, ch)) = close {
                let inner = rest[inner_start..inner_start + i].trim();
                if !inner.is_empty() {
                    tokens.push(Token { text: inner, kind: TokenKind::Literal, sentence_start });
                    sentence_start = false;
                }
                at += inner_start + i + ch.len_utf8();
                continue;
            }
        }
        if c.is_alphanumeric() {
            let mut end = 0;
            let mut chars = rest.char_indices().peekable();
            while let Some((i, ch)) = chars.next() {
                let next_alnum = chars.peek().is_some_and(|(_, n)| n.is_alphanumeric());
                let joins = is_joiner(ch)
                    && next_alnum
                    && match ch {
                        // Thousands separators and times join digits only.
                        ',' | ':' => rest[..i].ends_with(|p: char| p.is_ascii_digit()) && chars.peek().is_some_and(|(_, n)| n.is_ascii_digit()),
                        _ => true,
                    };
                if ch.is_alphanumeric() || joins {
                    end = i + ch.len_utf8();
                } else {
                    break;
                }
            }
            // `C++`, `C#`, `f()`: the suffix belongs to the word.
            let suffix = ["++", "#", "()"].iter().find(|s| rest[end..].starts_with(**s)).map_or(0, |s| s.len());
            let word = &rest[..end + suffix];
            let kind = if word.contains('@') && word.rsplit('@').next().is_some_and(|d| d.contains('.')) { TokenKind::Literal } else { TokenKind::Word };
            tokens.push(Token { text: word, kind, sentence_start });
            sentence_start = false;
            at += word.len();
            continue;
        }
        if matches!(c, '%' | '$' | '€' | '£' | '¥' | '°') {
            tokens.push(Token { text: &rest[..c.len_utf8()], kind: TokenKind::Symbol, sentence_start });
        } else if matches!(c, '.' | '!' | '?' | ':' | ';' | '¿' | '¡') {
            sentence_start = true;
        }
        at += c.len_utf8();
    }
    tokens
}

/// Reads digits and written-out numbers, with their units, into normalised strings.
#[derive(Debug, Default)]
struct NumberReader {
    /// A written-out number in progress ("twenty five thousand"): (total, current).
    pending: Option<(f64, f64)>,
    /// The unit sign that preceded the next number ("$5").
    prefix_unit: Option<&'static str>,
    /// The last number pushed, while a unit word may still follow it.
    last_open: bool,
}

impl NumberReader {
    /// Consume `word` if it is (part of) a number or the unit of the number before it.
    fn read_word(&mut self, lower: &str, token: &Token<'_>, out: &mut Vec<String>) -> bool {
        if let Some(value) = written_number(lower) {
            self.last_open = false;
            let (total, current) = self.pending.unwrap_or((0.0, 0.0));
            self.pending = Some(match value {
                Written::Unit(v) => (total, current + v),
                Written::Hundred => (total, current.max(1.0) * 100.0),
                Written::Scale(v) => (total + current.max(1.0) * v, 0.0),
                Written::Ordinal(v) => {
                    self.pending = None;
                    out.push(format!("#{}", fmt_number(total + current + v)));
                    return true;
                }
            });
            return true;
        }
        if self.pending.is_some() && lower == "and" {
            return true; // "one hundred and five"
        }
        if let Some(unit) = unit_of(lower) {
            if self.pending.is_some() {
                self.flush(out, Some(unit));
                return true;
            }
            if self.last_open {
                if let Some(last) = out.last_mut() {
                    if !last.contains(':') {
                        last.push(':');
                        last.push_str(unit);
                    }
                }
                self.last_open = false;
                return true;
            }
        }
        self.flush(out, None);
        if token.text.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(normalise_numeral(lower, self.prefix_unit.take()));
            self.last_open = !out.last().is_some_and(|n| n.contains(':'));
            return true;
        }
        self.prefix_unit = None;
        self.last_open = false;
        false
    }

    /// End a written-out number in progress (with `unit` if one follows it).
    fn flush(&mut self, out: &mut Vec<String>, unit: Option<&'static str>) {
        if let Some((total, current)) = self.pending.take() {
            let mut number = fmt_number(total + current);
            if let Some(unit) = unit.or(self.prefix_unit.take()) {
                number.push(':');
                number.push_str(unit);
                self.last_open = false;
            } else {
                self.last_open = true;
            }
            out.push(number);
        } else if let (Some(unit), true) = (unit, self.last_open) {
            if let Some(last) = out.last_mut() {
                last.push(':');
                last.push_str(unit);
            }
            self.last_open = false;
        }
    }
}

fn fmt_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `1,000` → `1000`, `3.50` → `3.5`, `2nd` → `#2`, `5km` → `5:km`; dates and times as written.
fn normalise_numeral(lower: &str, prefix_unit: Option<&'static str>) -> String {
    let digits_end = lower.find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.')).unwrap_or(lower.len());
    let (numeral, suffix) = lower.split_at(digits_end);
    let plain: String = numeral.chars().filter(|&c| c != ',').collect();
    let value = plain.parse::<f64>().ok().map(fmt_number);
    let with_unit = |n: String, unit: Option<&str>| match unit {
        Some(u) => format!("{n}:{u}"),
        None => n,
    };
    match (value, suffix) {
        (Some(n), "") => with_unit(n, prefix_unit),
        (Some(n), "st" | "nd" | "rd" | "th" | "er" | "e" | "º" | "ª") => format!("#{n}"),
        (Some(n), s) if s.chars().all(char::is_alphabetic) => with_unit(n, Some(unit_of(s).unwrap_or(s))),
        _ => lower.to_owned(),
    }
}

enum Written {
    Unit(f64),
    Hundred,
    Scale(f64),
    Ordinal(f64),
}

/// Number words of English and the main European languages that are not also articles.
fn written_number(word: &str) -> Option<Written> {
    use Written::*;
    Some(match word {
        "zero" | "null" | "zéro" | "cero" | "nul" => Unit(0.0),
        "one" | "een" => Unit(1.0),
        "two" | "deux" | "zwei" | "dos" | "due" | "dois" | "twee" => Unit(2.0),
        "three" | "trois" | "drei" | "tres" | "tre" | "três" | "drie" => Unit(3.0),
        "four" | "quatre" | "vier" | "cuatro" | "quattro" | "quatro" => Unit(4.0),
        "five" | "cinq" | "fünf" | "cinco" | "cinque" | "vijf" => Unit(5.0),
        "six" | "sechs" | "seis" | "zes" => Unit(6.0),
        "seven" | "sept" | "sieben" | "siete" | "sette" | "sete" | "zeven" => Unit(7.0),
        "eight" | "huit" | "acht" | "ocho" | "otto" | "oito" => Unit(8.0),
        "nine" | "neuf" | "neun" | "nueve" | "nove" | "negen" => Unit(9.0),
        "ten" | "dix" | "zehn" | "diez" | "dieci" | "dez" | "tien" => Unit(10.0),
        "eleven" | "onze" | "elf" | "once" | "undici" => Unit(11.0),
        "twelve" | "douze" | "zwölf" | "doce" | "dodici" | "twaalf" | "dozen" => Unit(12.0),
        "thirteen" => Unit(13.0),
        "fourteen" => Unit(14.0),
        "fifteen" => Unit(15.0),
        "sixteen" => Unit(16.0),
        "seventeen" => Unit(17.0),
        "eighteen" => Unit(18.0),
        "nineteen" => Unit(19.0),
        "twenty" | "vingt" | "zwanzig" | "veinte" | "venti" | "vinte" | "twintig" => Unit(20.0),
        "thirty" | "trente" | "dreißig" | "treinta" | "trenta" | "trinta" | "dertig" => Unit(30.0),
        "forty" | "quarante" | "vierzig" | "cuarenta" | "quaranta" | "quarenta" | "veertig" => Unit(40.0),
        "fifty" | "cinquante" | "fünfzig" | "cincuenta" | "cinquanta" | "cinquenta" | "vijftig" => Unit(50.0),
        "sixty" | "soixante" | "sechzig" | "sesenta" | "sessanta" | "sessenta" | "zestig" => Unit(60.0),
        "seventy" | "siebzig" | "setenta" | "settanta" | "zeventig" => Unit(70.0),
        "eighty" | "achtzig" | "ochenta" | "ottanta" | "oitenta" | "tachtig" => Unit(80.0),
        "ninety" | "neunzig" | "noventa" | "novanta" | "negentig" => Unit(90.0),
        "hundred" | "hundert" | "cent" | "cien" | "cento" | "cem" | "honderd" => Hundred,
        "thousand" | "tausend" | "mille" | "mil" | "duizend" => Scale(1e3),
        "million" | "millions" | "millones" | "millón" | "milioni" | "milhões" | "miljoen" | "millionen" => Scale(1e6),
        "billion" | "billions" | "milliard" | "milliarde" | "miljard" => Scale(1e9),
        "first" | "premier" | "première" | "erste" | "ersten" | "primero" | "primera" | "primo" | "eerste" => Ordinal(1.0),
        "second" | "deuxième" | "zweite" | "segundo" | "segunda" | "secondo" | "tweede" => Ordinal(2.0),
        "third" | "troisième" | "dritte" | "tercero" | "tercera" | "terzo" | "derde" => Ordinal(3.0),
        "fourth" | "quatrième" | "vierte" | "cuarto" | "quarto" | "vierde" => Ordinal(4.0),
        "fifth" | "cinquième" | "fünfte" | "quinto" | "vijfde" => Ordinal(5.0),
        "sixth" => Ordinal(6.0),
        "seventh" => Ordinal(7.0),
        "eighth" => Ordinal(8.0),
        "ninth" => Ordinal(9.0),
        "tenth" => Ordinal(10.0),
        "half" => Unit(0.5),
        _ => {
            // "twenty-five", "vingt-deux": hyphenated parts that are all number words.
            if word.contains('-') && word.split('-').all(|p| matches!(written_number(p), Some(Unit(_) | Hundred))) {
                let sum = word.split('-').map(|p| if let Some(Unit(v)) = written_number(p) { v } else { 0.0 }).sum();
                return Some(Unit(sum));
            }
            return None;
        }
    })
}

/// The canonical unit of a unit word or sign.
fn unit_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "%" | "percent" | "per-cent" | "pct" | "prozent" | "pourcent" | "porcentaje" | "procent" => "%",
        "$" | "usd" | "dollar" | "dollars" | "dólares" | "dollari" => "usd",
        "€" | "eur" | "euro" | "euros" | "euro's" => "eur",
        "£" | "gbp" | "pound" | "pounds" | "sterling" => "gbp",
        "¥" | "jpy" | "yen" => "jpy",
        "°" | "degree" | "degrees" | "deg" => "deg",
        "c" | "celsius" => "c",
        "f" | "fahrenheit" => "f",
        "km" | "kilometer" | "kilometers" | "kilometre" | "kilometres" | "kilómetros" | "chilometri" => "km",
        "m" | "meter" | "meters" | "metre" | "metres" | "metros" | "metri" => "m",
        "cm" | "centimeter" | "centimeters" | "centimetre" | "centimetres" => "cm",
        "mm" | "millimeter" | "millimeters" | "millimetre" | "millimetres" => "mm",
        "mi" | "mile" | "miles" | "meilen" => "mi",
        "ft" | "foot" | "feet" => "ft",
        "inch" | "inches" => "in",
        "kg" | "kilo" | "kilos" | "kilogram" | "kilograms" | "kilogramme" | "kilogrammes" => "kg",
        "g" | "gram" | "grams" | "gramme" | "grammes" | "gramm" => "g",
        "lb" | "lbs" => "lb",
        "oz" | "ounce" | "ounces" => "oz",
        "l" | "liter" | "liters" | "litre" | "litres" | "litros" => "l",
        "ml" | "milliliter" | "milliliters" | "millilitre" | "millilitres" => "ml",
        "kb" | "kilobyte" | "kilobytes" => "kb",
        "mb" | "megabyte" | "megabytes" => "mb",
        "gb" | "gigabyte" | "gigabytes" => "gb",
        "tb" | "terabyte" | "terabytes" => "tb",
        "ms" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "seconds" | "sekunden" | "secondes" | "segundos" => "s",
        "min" | "mins" | "minute" | "minutes" | "minuten" | "minutos" | "minuti" => "min",
        "h" | "hr" | "hrs" | "hour" | "hours" | "stunden" | "heures" | "horas" | "ore" | "uur" => "h",
        "day" | "days" | "tage" | "jours" | "días" | "dias" | "giorni" | "dagen" => "d",
        "week" | "weeks" | "wochen" | "semaines" | "semanas" | "settimane" | "weken" => "wk",
        "month" | "months" | "monate" | "mois" | "meses" | "mesi" | "maanden" => "mo",
        "year" | "years" | "yr" | "yrs" | "jahre" | "jahren" | "ans" | "années" | "años" | "anni" | "anos" | "jaar" => "y",
        "am" | "a.m" => "am",
        "pm" | "p.m" => "pm",
        "k" | "thousand" => "k",
        "x" | "times" => "x",
        _ => return None,
    })
}

fn is_negation(word: &str) -> bool {
    matches!(
        word,
        // English
        "not" | "no" | "never" | "none" | "nobody" | "nothing" | "nowhere" | "neither" | "nor" | "without" | "cannot"
        // French
        | "ne" | "pas" | "jamais" | "sans" | "aucun" | "aucune" | "rien" | "ni"
        // German
        | "nicht" | "kein" | "keine" | "keinen" | "keinem" | "keiner" | "keines" | "nie" | "niemals" | "ohne" | "nichts" | "weder"
        // Spanish, Portuguese, Italian
        | "nunca" | "jamás" | "sin" | "ningún" | "ninguno" | "ninguna" | "nada" | "nadie" | "tampoco"
        | "não" | "nao" | "sem" | "nenhum" | "nenhuma" | "ninguém"
        | "non" | "mai" | "senza" | "nessuno" | "nessuna" | "niente" | "nulla"
        // Dutch, Scandinavian, Polish, Russian
        | "niet" | "geen" | "nooit" | "zonder" | "niets" | "niemand"
        | "inte" | "ej" | "aldrig" | "utan" | "ingen" | "inget" | "ikke" | "aldri" | "uden" | "uten"
        | "bez" | "nigdy" | "не" | "нет" | "никогда" | "без"
    ) || word.ends_with("n't")
        || word.ends_with("n’t")
        || word.starts_with("n'")
        || word.starts_with("n’")
}

/// Words that open a sentence capitalised without naming anything.
fn is_sentence_opener(word: &str) -> bool {
    let word = word.trim_end_matches("'s").trim_end_matches("’s");
    matches!(
        word,
        "what" | "how" | "why" | "when" | "where" | "who" | "whom" | "whose" | "which" | "whats" | "hows"
            | "is" | "are" | "was" | "were" | "am" | "do" | "does" | "did" | "can" | "could" | "would" | "should" | "will"
            | "shall" | "may" | "might" | "must" | "have" | "has" | "had" | "the" | "a" | "an" | "my" | "me" | "we"
            | "our" | "you" | "your" | "it" | "its" | "this" | "that" | "these" | "those" | "there" | "here" | "please"
            | "pls" | "tell" | "explain" | "give" | "show" | "list" | "describe" | "write" | "help" | "find" | "name"
            | "define" | "summarize" | "summarise" | "translate" | "compare" | "calculate" | "compute" | "convert"
            | "create" | "make" | "generate" | "suggest" | "recommend" | "provide" | "let" | "lets" | "let's" | "hey"
            | "hi" | "hello" | "so" | "and" | "but" | "or" | "if" | "in" | "on" | "at" | "for" | "from" | "to" | "with"
            | "by" | "of" | "about" | "as" | "also" | "then" | "now" | "ok" | "okay" | "yes" | "any" | "some" | "all"
            | "each" | "every" | "quick" | "question" | "compose" | "start" | "reserve" | "email" | "send" | "book" | "set"
            | "run" | "play" | "buy" | "plan" | "draft" | "rewrite" | "fix" | "debug" | "check" | "add" | "remove"
            | "delete" | "open" | "close" | "read" | "count" | "sort" | "search" | "build" | "design" | "outline" | "rank"
            | "estimate" | "predict" | "evaluate" | "analyze" | "analyse" | "review" | "proofread" | "edit" | "improve"
            | "simplify" | "solve" | "answer" | "get" | "say" | "use" | "try" | "keep" | "take" | "put" | "go" | "i'm" | "i'd" | "i've" | "i'll" | "im"
            // French, German, Spanish, Italian, Portuguese, Dutch
            | "quel" | "quelle" | "quels" | "quelles" | "comment" | "pourquoi" | "quand" | "où" | "qui" | "est-ce"
            | "le" | "la" | "les" | "un" | "une" | "je" | "peux" | "pouvez" | "donne" | "dis" | "explique"
            | "wie" | "warum" | "wann" | "wo" | "wer" | "welche" | "welcher" | "welches" | "der" | "die" | "das"
            | "ein" | "eine" | "ich" | "kannst" | "können" | "bitte" | "erkläre" | "gib" | "ist" | "sind"
            | "qué" | "que" | "cómo" | "como" | "por" | "cuál" | "cuándo" | "dónde" | "quién" | "el" | "los" | "las"
            | "yo" | "puedes" | "dime" | "explica" | "cosa" | "come" | "perché" | "quale" | "quando" | "dove" | "chi"
            | "il" | "lo" | "gli" | "io" | "puoi" | "spiega" | "o" | "os" | "eu" | "você" | "qual" | "wat" | "hoe"
            | "waarom" | "wanneer" | "waar" | "welke" | "het" | "ik" | "kun" | "kunt" | "uno" | "una"
    )
}

/// A capitalised word that names something: not the pronoun "I", not a sentence-opening
/// function word, not a negation.
fn is_name(token: &Token<'_>, lower: &str) -> bool {
    let Some(first) = token.text.chars().next() else { return false };
    if !first.is_uppercase() || lower == "i" || lower.starts_with("i'") || lower.starts_with("i’") || is_negation(lower) {
        return false;
    }
    let all_caps = token.text.chars().filter(|c| c.is_alphabetic()).count() >= 2 && !token.text.chars().any(char::is_lowercase);
    all_caps || !(token.sentence_start && is_sentence_opener(lower))
}

/// `snake_case`, `camelCase`, `a.b`, `f()`, `C++`: compared as written.
fn is_code_identifier(word: &str) -> bool {
    if word.ends_with("()") || word.ends_with("++") || word.ends_with('#') || word.contains('_') {
        return true;
    }
    let chars: Vec<char> = word.chars().collect();
    let inner_capital = chars.windows(2).any(|w| w[0].is_lowercase() && w[1].is_uppercase());
    let dotted = chars.windows(3).any(|w| w[0].is_alphabetic() && w[1] == '.' && w[2].is_alphabetic()) && chars.len() > 4;
    inner_capital || dotted
}

fn is_function_word(language: Language, word: &str) -> bool {
    match language {
        Language::English => matches!(
            word,
            "the" | "is" | "are" | "of" | "and" | "to" | "what" | "how" | "why" | "which" | "does" | "do" | "can" | "with" | "for" | "my" | "you" | "in" | "it" | "should"
                | "who" | "where" | "when" | "was" | "were" | "a" | "an" | "this" | "that" | "i" | "me" | "be" | "have" | "has"
                | "on" | "at" | "from" | "by" | "as" | "or" | "not" | "your" | "tell" | "about" | "many" | "much"
        ),
        Language::French => {
            matches!(word, "le" | "la" | "les" | "de" | "que" | "où" | "qui" | "quand" | "sur" | "au" | "aux" | "un" | "en" | "il" | "à" | "est" | "des" | "qu'est-ce" | "ce" | "et" | "quel" | "quelle" | "comment" | "pourquoi" | "du" | "une" | "pour" | "avec" | "je" | "mon" | "dans" | "sont" | "peut")
        }
        Language::German => {
            matches!(word, "der" | "die" | "das" | "ist" | "in" | "und" | "wo" | "wer" | "wann" | "wurde" | "hat" | "haben" | "sie" | "zu" | "auf" | "von" | "wie" | "was" | "ein" | "eine" | "ich" | "mit" | "für" | "sind" | "kann" | "warum" | "welche" | "den" | "dem" | "nicht")
        }
        Language::Spanish => {
            matches!(word, "el" | "los" | "las" | "la" | "de" | "que" | "un" | "a" | "es" | "qué" | "cómo" | "por" | "una" | "para" | "con" | "del" | "puedo" | "mi" | "cuál" | "son" | "y" | "en")
        }
        Language::Italian => {
            matches!(word, "il" | "la" | "un" | "i" | "e" | "a" | "in" | "cosa" | "è" | "di" | "che" | "come" | "perché" | "gli" | "una" | "per" | "con" | "del" | "della" | "sono" | "posso" | "qual" | "quale")
        }
        Language::Portuguese => {
            matches!(word, "o" | "os" | "a" | "as" | "e" | "de" | "um" | "é" | "que" | "como" | "uma" | "para" | "com" | "do" | "da" | "não" | "são" | "posso" | "qual" | "em" | "meu")
        }
        Language::Dutch => {
            matches!(word, "de" | "het" | "een" | "is" | "hoe" | "en" | "in" | "wat" | "waarom" | "van" | "ik" | "met" | "voor" | "zijn" | "kan" | "welke" | "niet")
        }
    }
}

/// The language with the most function words, when it leads (a tie is no evidence).
fn dominant_language(votes: &[u32; LANGUAGES.len()]) -> Option<Language> {
    let (best, &top) = votes.iter().enumerate().max_by_key(|(_, v)| **v)?;
    let runner_up = votes.iter().enumerate().filter(|(i, _)| *i != best).map(|(_, v)| *v).max().unwrap_or(0);
    (top >= 1 && top > runner_up).then_some(LANGUAGES[best])
}

/// The writing system of most of the letters.
fn dominant_script(text: &str) -> Option<Script> {
    let mut counts = [0u32; 10];
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        let script = match c as u32 {
            0x0041..=0x024F | 0x1E00..=0x1EFF => Script::Latin,
            0x0370..=0x03FF => Script::Greek,
            0x0400..=0x052F => Script::Cyrillic,
            0x0590..=0x05FF => Script::Hebrew,
            0x0600..=0x06FF | 0x0750..=0x077F => Script::Arabic,
            0x0900..=0x097F => Script::Devanagari,
            0x0E00..=0x0E7F => Script::Thai,
            0x3040..=0x30FF => Script::Kana,
            0x3400..=0x9FFF | 0xF900..=0xFAFF => Script::Han,
            0xAC00..=0xD7AF | 0x1100..=0x11FF => Script::Hangul,
            _ => continue,
        };
        counts[script as usize] += 1;
    }
    let (best, &top) = counts.iter().enumerate().max_by_key(|(_, v)| **v)?;
    if top == 0 {
        return None;
    }
    // Japanese mixes kana and kanji: any kana makes it Japanese.
    if counts[Script::Kana as usize] > 0 && best == Script::Han as usize {
        return Some(Script::Kana);
    }
    [
        Script::Latin,
        Script::Cyrillic,
        Script::Greek,
        Script::Arabic,
        Script::Hebrew,
        Script::Han,
        Script::Kana,
        Script::Hangul,
        Script::Devanagari,
        Script::Thai,
    ]
    .into_iter()
    .nth(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str) -> Result<(), FeatureMismatch> {
        QueryFeatures::extract(a).compare(&QueryFeatures::extract(b))
    }

    #[test]
    fn partitions_separate_scope_model_and_context() {
        let p = partition_id("consumer:web", "gpt-4o", "h1");
        assert_eq!(p.len(), 64);
        assert!(p.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(p, partition_id("consumer:web", "gpt-4o", "h1"));
        assert_ne!(p, partition_id("consumer:app", "gpt-4o", "h1"));
        assert_ne!(p, partition_id("consumer:web", "gpt-4o-mini", "h1"));
        assert_ne!(p, partition_id("consumer:web", "gpt-4o", "h2"));
        assert_ne!(partition_id("ab", "c", "h"), partition_id("a", "bc", "h"), "fields are length-prefixed");
    }

    #[test]
    fn query_text_is_the_last_user_turn_or_the_conversation() {
        let turns = [
            Turn { role: "system", text: "be brief" },
            Turn { role: "user", text: " first " },
            Turn { role: "assistant", text: "answer" },
            Turn { role: "user", text: "second" },
        ];
        assert_eq!(query_text(&turns, QueryScope::LastUserTurn).as_deref(), Some("second"));
        assert_eq!(query_text(&turns, QueryScope::Conversation).as_deref(), Some("user: first\nassistant: answer\nuser: second"));
        assert_eq!(query_text(&turns[..1], QueryScope::LastUserTurn), None);
        assert_eq!(query_text(&turns[..1], QueryScope::Conversation), None);
        assert_eq!(query_text(&[Turn { role: "user", text: "  " }], QueryScope::LastUserTurn), None);
    }

    #[test]
    fn cosine_similarity_handles_scale_and_degenerate_vectors() {
        assert!((cosine_similarity(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine_similarity(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert!((cosine_similarity(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine_similarity(&[], &[]), 0.0);
    }

    #[test]
    fn paraphrases_pass_the_check() {
        for (a, b) in [
            ("What is the capital of France?", "Tell me the capital city of France"),
            ("what is the capital of france", "What's France's capital?"),
            ("How do I reverse a list in Python?", "Python: how can a list be reversed?"),
            ("Convert 5 km to miles", "How many miles is five kilometres?"),
            ("Is 1,000 a big number?", "is 1000 a big number"),
            ("Who won the World Cup in 2018?", "Which team won the 2018 World Cup?"),
            ("Why isn't my code compiling?", "Why doesn't my code compile?"),
            ("What does `Vec::new` do?", "Explain what `Vec::new` does"),
            ("Give me twenty-five ideas", "List 25 ideas"),
            ("Translate 'good morning' to Spanish", "Translate 'good morning' into Spanish please"),
            ("Where was Mozart born?", "What is Mozart's birthplace?"),
            ("Book a table for two at 7pm", "Reserve a table for 2 at 7 pm"),
        ] {
            assert_eq!(check(a, b), Ok(()), "{a:?} vs {b:?}");
            assert_eq!(check(b, a), Ok(()), "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn near_misses_fail_the_check_with_their_reason() {
        use FeatureMismatch::*;
        for (a, b, why) in [
            ("Is 17 a prime number?", "Is 19 a prime number?", Numbers),
            ("Convert 5 km to miles", "Convert 5 miles to km", Numbers),
            ("What is 7 minus 3?", "What is 3 minus 7?", Numbers),
            ("Book a table for two", "Book a table for three", Numbers),
            ("Meeting on 2024-01-05", "Meeting on 2024-01-06", Numbers),
            ("It costs $5", "It costs €5", Numbers),
            ("Can I take aspirin with ibuprofen?", "Can I not take aspirin with ibuprofen?", Negation),
            ("Is it safe?", "Isn't it safe?", Negation),
            ("Recipes with meat", "Recipes without meat", Negation),
            ("Kann ich das mit Milch essen?", "Kann ich das ohne Milch essen?", Negation),
            ("Est-ce que c'est vrai ?", "Est-ce que ce n'est pas vrai ?", Negation),
            ("What is the capital of France?", "What is the capital of Germany?", Entities),
            ("Paris is in which country?", "London is in which country?", Entities),
            ("Open https://a.example/x", "Open https://a.example/y", Entities),
            ("Email bob@example.com", "Email alice@example.com", Entities),
            ("What does parse_int do?", "What does parse_float do?", Entities),
            ("Say \"yes\"", "Say \"no\"", Entities),
            ("Does Alice owe Bob money?", "Does Bob owe Alice money?", EntityOrder),
            ("Convert USD to EUR", "Convert EUR to USD", EntityOrder),
            ("What is the capital of France?", "Quelle est la capitale de la France ?", Language),
            ("What is the weather like?", "Какая сегодня погода?", Script),
            ("Is a cat faster than a dog?", "Is a dog faster than a cat?", WordOrder),
            ("How do I migrate from MySQL to PostgreSQL?", "How do I migrate from PostgreSQL to MySQL?", WordOrder),
            ("How does photosynthesis work?", "¿Cómo funciona la fotosíntesis?", Language),
            ("Where was Mozart born?", "Wo wurde Mozart geboren?", Language),
        ] {
            assert_eq!(check(a, b), Err(why), "{a:?} vs {b:?}");
        }
        assert_eq!(check("Is seventeen a prime number?", "Is 17 a prime number?"), Ok(()), "written-out equals digits");
    }

    #[test]
    fn numbers_normalise_units_ordinals_and_separators() {
        let numbers = |s: &str| QueryFeatures::extract(s).numbers;
        assert_eq!(numbers("run 5km then 3 miles, 2nd place, 1,000 people, 3.50 $ and $4"), ["5:km", "3:mi", "#2", "1000", "3.5:usd", "4:usd"]);
        assert_eq!(numbers("one hundred and five thousand"), ["105000"]);
        assert_eq!(numbers("twenty-five percent of the first"), ["25:%", "#1"]);
        assert_eq!(numbers("at 10:30 on 05/01/2024"), ["10:30", "05/01/2024"]);
    }

    #[test]
    fn verdict_needs_both_similarity_and_features() {
        let a = QueryFeatures::extract("Is 17 prime?");
        let b = QueryFeatures::extract("Is 19 prime?");
        assert_eq!(semantic_verdict(0.99, 0.85, &a, &a), SemanticVerdict::Hit);
        assert_eq!(semantic_verdict(0.80, 0.85, &a, &a), SemanticVerdict::BelowThreshold);
        assert_eq!(semantic_verdict(f32::NAN, 0.85, &a, &a), SemanticVerdict::BelowThreshold);
        assert_eq!(semantic_verdict(0.99, 0.85, &a, &b), SemanticVerdict::Mismatch(FeatureMismatch::Numbers));
    }

    #[test]
    fn tokenizer_keeps_literals_whole() {
        let f = QueryFeatures::extract("See https://x.example/a?b=1. Mail me@x.example about `fooBar()` and 'it's' ok");
        assert_eq!(f.literals, ["https://x.example/a?b=1", "me@x.example", "fooBar()", "it's"]);
        assert!(f.numbers.is_empty(), "numbers inside literals are not numbers: {:?}", f.numbers);
    }
}
