//! Detection of personal data and secrets in text.
//!
//! Each detector is a regular expression that finds candidates plus, where the format has one,
//! a validator that rejects look-alikes (Luhn for card numbers, mod-97 for IBANs, the SSA's
//! reserved ranges for SSNs, octet ranges for IPv4, a real parse for IPv6, the JWT header).
//! All patterns are compiled once into a [`PiiScanner`], which callers keep for the isolate's
//! lifetime: compiling costs milliseconds, scanning microseconds.

use std::fmt;

use regex::Regex;

/// What kind of sensitive data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Secret,
    Card,
    Iban,
    Ssn,
    Email,
    Phone,
    Ip,
    Dob,
    Address,
}

impl PiiKind {
    pub const ALL: [PiiKind; 9] = [
        PiiKind::Secret,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ip,
        PiiKind::Dob,
        PiiKind::Address,
    ];

    /// The lower-case name used in configuration and events.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Secret => "secret",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ip => "ip",
            PiiKind::Dob => "dob",
            PiiKind::Address => "address",
        }
    }

    pub fn from_name(name: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The upper-case tag used in placeholders (`[EMAIL_1]`).
    pub fn tag(self) -> &'static str {
        match self {
            PiiKind::Secret => "SECRET",
            PiiKind::Card => "CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::Ssn => "SSN",
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Ip => "IP",
            PiiKind::Dob => "DOB",
            PiiKind::Address => "ADDRESS",
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One detected span, by byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: PiiKind,
    /// Which detector matched (`openai_key`, `iban`, ...), for events; never the matched text.
    pub rule: &'static str,
    pub start: usize,
    pub end: usize,
}

type Validator = fn(&str, &str, usize) -> Option<(usize, usize)>;

struct Detector {
    kind: PiiKind,
    rule: &'static str,
    regex: Regex,
    /// The capture group holding the sensitive part (0 = whole match).
    group: usize,
    /// Confirms a candidate and may narrow it: (text, candidate, candidate start) -> span.
    validate: Option<Validator>,
}

const MONTHS: &str = "jan(?:uary|\\.)?|feb(?:ruary|\\.)?|mar(?:ch|\\.)?|apr(?:il|\\.)?|may|jun(?:e|\\.)?|jul(?:y|\\.)?|aug(?:ust|\\.)?|sep(?:t(?:ember)?|\\.)?|oct(?:ober|\\.)?|nov(?:ember|\\.)?|dec(?:ember|\\.)?|januar|februar|märz|mai|juni|juli|oktober|dezember|janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre";

fn detectors() -> Vec<(PiiKind, &'static str, String, usize, Option<Validator>)> {
    let date = format!(
        r"([0-9]{{1,2}}[./\-][0-9]{{1,2}}[./\-][0-9]{{2,4}}|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|[0-9]{{1,2}}\.?\s+(?:de\s+)?(?:{MONTHS})\s+(?:de\s+)?[0-9]{{4}}|(?:{MONTHS})\s+[0-9]{{1,2}}(?:st|nd|rd|th)?,?\s+[0-9]{{4}})"
    );
    vec![
        // Secrets first: their shapes overlap with nothing else worth keeping.
        (PiiKind::Secret, "private_key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----".into(), 0, None),
        (PiiKind::Secret, "anthropic_key", r"(?-u:\b)sk-ant-[a-z]{3,6}[0-9]{2}-[A-Za-z0-9_\-]{20,}".into(), 0, None),
        (PiiKind::Secret, "openai_key", r"(?-u:\b)sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}".into(), 0, Some(mixed_alnum)),
        (PiiKind::Secret, "aws_access_key_id", r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?-u:\b)".into(), 0, None),
        (PiiKind::Secret, "aws_secret_access_key", r"(?i)(?:aws.{0,30}?(?:secret|private)?.{0,10}?key|secret_?access_?key)[^A-Za-z0-9/+]{1,20}?(?:is\s+)?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)".into(), 1, Some(mixed_alnum)),
        (PiiKind::Secret, "github_token", r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)".into(), 0, None),
        (PiiKind::Secret, "google_api_key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}".into(), 0, None),
        (PiiKind::Secret, "slack_token", r"(?-u:\b)xox[abposre]-[0-9]{6,}-[A-Za-z0-9\-]{8,}".into(), 0, None),
        (PiiKind::Secret, "stripe_key", r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}".into(), 0, None),
        (PiiKind::Secret, "jwt", r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}".into(), 0, Some(jwt_header)),
        (PiiKind::Card, "card", r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)".into(), 0, Some(card)),
        (PiiKind::Iban, "iban", r"(?i)(?-u:\b)[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,30}".into(), 0, Some(iban)),
        (PiiKind::Ssn, "ssn", r"(?-u:\b)([0-9]{3})[- ]([0-9]{2})[- ]([0-9]{4})(?-u:\b)".into(), 0, Some(ssn)),
        (PiiKind::Email, "email", r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?-u:\b)".into(), 0, Some(email)),
        (PiiKind::Phone, "phone_international", r"(?:^|[^A-Za-z0-9_+])(\+[0-9]{1,3}[ \-.]?(?:\(0?[0-9]{1,4}\)[ \-.]?)?[0-9]{1,4}(?:[ \-.]?[0-9]{1,5}){1,5})(?-u:\b)".into(), 1, Some(phone_international)),
        (PiiKind::Phone, "phone_national", r"(?:^|[^A-Za-z0-9_+/.\-])(\(?0[0-9]{1,4}\)?[ \-/.]?[0-9]{2,4}(?:[ \-.]?[0-9]{2,4}){1,3}|\([0-9]{2,3}\)[ \-.]?[0-9]{3,5}[ \-.][0-9]{4}|[0-9]{3}[\-.][0-9]{3}[\-.][0-9]{4})(?-u:\b)".into(), 1, Some(phone_national)),
        (
            PiiKind::Phone,
            "phone_in_context",
            r"(?i)(?:phone|tel(?:efon|éfono|efone|efoon)?|mobile|cell(?:ulare)?|móvil|movil|handy|portable|call\s+me(?:\s+on|\s+at)?|ll[aá]mame(?:\s+al)?|chiamami(?:\s+al)?|appelez-moi(?:\s+au)?|bel\s+me(?:\s+op)?|rufen\s+sie\s+mich(?:\s+unter)?|ligue(?:-me)?(?:\s+para)?)\s*(?:es|è|is|:|nr\.?|no\.?|number)?\s*[:.]?\s*([0-9]{2,4}(?:[ \-.]?[0-9]{2,4}){1,4})(?-u:\b)".into(),
            1,
            Some(phone_national_context),
        ),
        (PiiKind::Ip, "ipv4", r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)".into(), 0, Some(ipv4)),
        (PiiKind::Ip, "ipv6", r"(?i)(?:[0-9a-f]{1,4}:|::)[0-9a-f:.]*[0-9a-f:]".into(), 0, Some(ipv6)),
        (
            PiiKind::Dob,
            "date_of_birth",
            format!(r"(?i)(?-u:\b)(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday|geboren(?:\s+am)?|geburtsdatum|geb\.|née?\s+le|date\s+de\s+naissance|fecha\s+de\s+nacimiento|nacid[oa]\s+el|nat[oa]\s+il|data\s+di\s+nascita|geboortedatum|geboren\s+op|nac[ií]\s+el|je\s+suis\s+n[ée]e?\s+le|sono\s+nat[oa]\s+il)\s*(?:is|was|ist|est|es|è)?\s*[:\-=]?\s*(?:the\s+|am\s+|le\s+|el\s+|il\s+)?{date}"),
            1,
            None,
        ),
        (
            // The birth verb after the date: "Ich bin am 5. November 1956 in Köln geboren",
            // "... 1990 in Lyon born" is rare in English, so only the German and Dutch forms.
            PiiKind::Dob,
            "date_of_birth_after",
            format!(r"(?i)(?-u:\b)(?:am|op)\s+{date}\s+(?:in\s+[^\s,.]+\s+)?geboren(?-u:\b)"),
            1,
            None,
        ),
        (
            PiiKind::Address,
            "street_address_en",
            r"(?-u:\b)[0-9]{1,6}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-zA-Z'\-]+\.?\s+){1,4}(?:Street|St\.|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.|Court|Ct\.?|Way|Place|Pl\.|Terrace|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Gardens|Grove|Square|Row|Mews)(?:\s+(?:NW|NE|SW|SE|N|S|E|W)(?-u:\b))?(?:,?\s+(?:Apt|Suite|Unit|Flat)\.?\s*#?\s*[A-Za-z0-9]+)?".into(),
            0,
            None,
        ),
        (
            PiiKind::Address,
            "street_address_de_nl",
            r"[A-ZÄÖÜ][a-zäöüß\-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|damm|ring|ufer|chaussee|straat|laan|gracht|plein|kade|steeg)\s+[0-9]{1,4}(?:\s?[a-zA-Z](?-u:\b))?|[A-ZÄÖÜ][a-zäöüß]+\s+(?:Straße|Strasse|Str\.|Weg|Allee|Platz|Gasse|Damm|Ring)\s+[0-9]{1,4}(?:\s?[a-zA-Z](?-u:\b))?".into(),
            0,
            None,
        ),
        (
            // Prepositional street names ("Am Hang 12", "Unter den Linden 77") are only reliable
            // with the postcode that follows them.
            PiiKind::Address,
            "street_address_de_preposition",
            r"((?:Am|An\s+der|Auf\s+der|Im|In\s+der|Unter\s+den|Zum|Zur|Hinter\s+der|Vor\s+dem)\s+[A-ZÄÖÜ][a-zäöüß\-]+(?:\s+[A-ZÄÖÜ][a-zäöüß\-]+)?\s+[0-9]{1,4}[a-z]?),?\s+[0-9]{5}(?-u:\b)".into(),
            1,
            None,
        ),
        (
            PiiKind::Address,
            "street_address_fr",
            r"(?-u:\b)[0-9]{1,4}(?:\s?(?:bis|ter))?,?\s+(?:[Rr]ue|[Aa]venue|[Aa]v\.|[Bb]oulevard|[Bb]d|[Pp]lace|[Aa]ll[ée]e|[Ii]mpasse|[Cc]hemin|[Qq]uai|[Rr]oute|[Cc]ours)\s+(?:de\s+la\s+|de\s+l'|du\s+|des\s+|de\s+|d')?[A-ZÀ-ÖØ-Þ][A-Za-zÀ-ÖØ-öø-ÿ\-']+(?:\s+[A-ZÀ-ÖØ-Þ][A-Za-zÀ-ÖØ-öø-ÿ\-']+){0,3}".into(),
            0,
            None,
        ),
        (
            PiiKind::Address,
            "street_address_es_it_pt",
            r"(?-u:\b)(?:Calle|C/|Avenida|Avda\.?|Plaza|Paseo|Carrer|Rua|Via|Viale|Piazza|Corso|Largo)\s+(?:(?:de|del|della|dei|di|da|do|dos)\s+(?:la\s+|las\s+|los\s+)?)?[A-ZÀ-ÖØ-Þ][A-Za-zÀ-ÖØ-öø-ÿ'\-]+(?:\s+[A-ZÀ-ÖØ-Þ][A-Za-zÀ-ÖØ-öø-ÿ'\-]+){0,3},?\s+(?:n\.?º?\s*)?[0-9]{1,4}(?-u:\b)".into(),
            0,
            None,
        ),
    ]
}

/// All detectors compiled once.
pub struct PiiScanner {
    detectors: Vec<Detector>,
}

impl Default for PiiScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl PiiScanner {
    /// Every detector.
    pub fn new() -> Self {
        Self::for_kinds(&PiiKind::ALL)
    }

    /// Only the detectors for these kinds: compiling costs about a millisecond per detector in
    /// wasm, so a cold isolate pays only for what its guard profiles use.
    pub fn for_kinds(kinds: &[PiiKind]) -> Self {
        let detectors = detectors()
            .into_iter()
            .filter(|(kind, ..)| kinds.contains(kind))
            .map(|(kind, rule, pattern, group, validate)| Detector {
                kind,
                rule,
                regex: Regex::new(&pattern).expect("built-in patterns compile"),
                group,
                validate,
            })
            .collect();
        PiiScanner { detectors }
    }

    /// Every finding in `text`, non-overlapping, in order. Where candidates overlap, a secret
    /// wins, then the longer span, then the more specific kind (cards, IBANs, ...).
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.scan_from(text, 0, &mut Vec::new())
    }

    /// The patterns, for the stream guard's hold matcher.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, PiiKind)> {
        self.detectors.iter().map(|d| (d.regex.as_str(), d.kind))
    }

    /// [`scan`](Self::scan) over the matches that start at or after `from`; `text[..from]` is
    /// only context (what precedes a match). Every raw match, valid or not, is added to `spans`:
    /// the stream guard must not cut through one.
    pub fn scan_from(&self, text: &str, from: usize, spans: &mut Vec<(usize, usize)>) -> Vec<Finding> {
        let mut candidates = Vec::new();
        for detector in &self.detectors {
            for (whole, part) in matches_from(&detector.regex, text, from, detector.group) {
                spans.push(whole);
                let Some((start, end)) = part else { continue };
                let span = match detector.validate {
                    Some(validate) => validate(text, &text[start..end], start),
                    None => Some((start, end)),
                };
                if let Some((start, end)) = span {
                    candidates.push(Finding { kind: detector.kind, rule: detector.rule, start, end });
                }
            }
        }
        // A span inside a longer one is usually part of it (card-like digits inside an IBAN, a
        // phone-like run inside a key): the longer span wins, then the more specific kind.
        candidates.sort_by(|a, b| {
            (b.kind == PiiKind::Secret)
                .cmp(&(a.kind == PiiKind::Secret))
                .then((b.end - b.start).cmp(&(a.end - a.start)))
                .then(a.kind.cmp(&b.kind))
                .then(a.start.cmp(&b.start))
        });
        let mut chosen: Vec<Finding> = Vec::new();
        for candidate in candidates {
            if chosen.iter().all(|c| candidate.end <= c.start || candidate.start >= c.end) {
                chosen.push(candidate);
            }
        }
        chosen.sort_by_key(|f| f.start);
        chosen
    }
}

/// `text` with every personal datum and secret any detector finds replaced by `[KIND]`
/// (`[EMAIL]`, `[CARD]`, `[SECRET]`...), whatever a guard profile says: what the request log
/// stores and what telemetry exports when content capture is on. The scanner is compiled once per
/// isolate (thread), on first use.
pub fn redact_all(text: &str) -> String {
    thread_local! {
        static SCANNER: PiiScanner = PiiScanner::new();
    }
    SCANNER.with(|scanner| scanner.redact(text))
}

impl PiiScanner {
    /// `text` with each finding of [`scan`](Self::scan) (sorted, never overlapping) replaced by
    /// `[KIND]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for finding in self.scan(text) {
            out.push_str(&text[at..finding.start]);
            out.push('[');
            out.push_str(finding.kind.tag());
            out.push(']');
            at = finding.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// A byte range of a text: (start, end).
pub type Span = (usize, usize);

/// The non-overlapping matches of `regex` that start at or after `from`, as `find_iter` would
/// give them, with the text before `from` as context: (whole match, capture `group`'s span).
/// Only the detectors that need a group pay for the slower capturing search.
pub(crate) fn matches_from(regex: &Regex, text: &str, from: usize, group: usize) -> Vec<(Span, Option<Span>)> {
    let mut out = Vec::new();
    let mut at = from;
    while at <= text.len() {
        let (whole, part) = if group == 0 {
            let Some(m) = regex.find_at(text, at) else { break };
            ((m.start(), m.end()), Some((m.start(), m.end())))
        } else {
            let Some(c) = regex.captures_at(text, at) else { break };
            let m = c.get(0).expect("group 0 always matches");
            ((m.start(), m.end()), c.get(group).map(|g| (g.start(), g.end())))
        };
        out.push((whole, part));
        at = if whole.1 > whole.0 { whole.1 } else { text[whole.1..].chars().next().map_or(text.len() + 1, |c| whole.1 + c.len_utf8()) };
    }
    out
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// The Luhn checksum used by payment card numbers.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = d as u32;
            if !i.is_multiple_of(2) {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn card(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let ds = digits(candidate);
    if !(13..=19).contains(&ds.len()) || !luhn_valid(&ds) {
        return None;
    }
    // A known issuer prefix: Visa 4, Mir 2200-2204, Mastercard 51-55/2221-2720, Amex 34/37, Discover 6011/65/644-649,
    // JCB 35, Diners 30/36/38/39, UnionPay 62, Maestro 50/56-69.
    let plausible = match ds[0] {
        4 => true,
        2 => {
            let p = ds[..4].iter().fold(0u32, |a, &d| a * 10 + d as u32);
            (2200..=2204).contains(&p) || (2221..=2720).contains(&p)
        }
        3 => matches!(ds[1], 0 | 4 | 5 | 6 | 7 | 8 | 9),
        5 | 6 => true,
        _ => false,
    };
    // Separators, if any, must be consistent (one kind), as people write card numbers.
    let separators: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    let consistent = separators.windows(2).all(|w| w[0] == w[1]);
    (plausible && consistent).then_some((start, start + candidate.len()))
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22), ("BH", 22),
    ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27),
    ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27),
    ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HN", 28), ("HR", 21), ("HU", 28),
    ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28),
    ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MN", 20), ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23),
    ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33), ("SA", 24),
    ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

/// ISO 7064 mod 97-10 over an IBAN's characters (already upper-case, no separators).
pub fn iban_checksum_valid(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let rearranged = iban[4..].iter().chain(&iban[..4]);
    let mut remainder: u32 = 0;
    for &c in rearranged {
        let value = match c {
            b'0'..=b'9' => (c - b'0') as u32,
            b'A'..=b'Z' => (c - b'A') as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

fn iban(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let country = candidate.get(..2)?.to_ascii_uppercase();
    let expected = IBAN_LENGTHS.iter().find(|(c, _)| *c == country).map(|(_, n)| *n)?;
    // Walk the candidate, keeping separators, until `expected` alphanumerics are taken: the
    // pattern may have run on into the following word.
    let mut chars = Vec::with_capacity(expected);
    let mut end = 0;
    for (i, c) in candidate.char_indices() {
        if c.is_ascii_alphanumeric() {
            chars.push(c.to_ascii_uppercase() as u8);
            if chars.len() == expected {
                end = i + 1;
                break;
            }
        }
    }
    if chars.len() != expected || !iban_checksum_valid(&chars) {
        return None;
    }
    // The IBAN must not continue with more alphanumerics glued to it.
    let rest = &candidate[end..];
    if rest.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((start, start + end))
}

fn ssn(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let ds = digits(candidate);
    let area = ds[..3].iter().fold(0u32, |a, &d| a * 10 + d as u32);
    let group = ds[3] as u32 * 10 + ds[4] as u32;
    let serial = ds[5..].iter().fold(0u32, |a, &d| a * 10 + d as u32);
    let separators: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && separators.windows(2).all(|w| w[0] == w[1]);
    valid.then_some((start, start + candidate.len()))
}

fn phone_international(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let n = digits(candidate).len();
    (8..=15).contains(&n).then_some((start, start + candidate.len()))
}

fn phone_national(text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let n = digits(candidate).len();
    if !(9..=12).contains(&n) {
        return None;
    }
    // The tail of a longer digit sequence (an order number written in groups) is not a phone.
    let before = text[..start].trim_end_matches([' ', '-']);
    if before.len() < start && before.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // SSN-shaped (3-2-4) numbers are never written as phone numbers.
    let groups: Vec<usize> = candidate.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).map(str::len).collect();
    if groups == [3, 2, 4] {
        return None;
    }
    // Dates and version-like strings: dots between every group of a short number are rare in
    // phone numbers and common in dates.
    let after = &text[start + candidate.len()..];
    if after.starts_with(['.', '-', '/']) && after[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((start, start + candidate.len()))
}

/// File names (`logo@2x.png`) and documentation placeholders (`user@domain.tld`) are not addresses,
/// and `user@host` after `://` is a URL's credentials (the secret detector looks at those).
fn email(text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    const NOT_TLDS: [&str; 16] = ["png", "jpg", "jpeg", "gif", "webp", "svg", "pdf", "js", "css", "html", "txt", "zip", "tld", "mp4", "ico", "avif"];
    let tld = candidate.rsplit('.').next()?.to_ascii_lowercase();
    if NOT_TLDS.contains(&tld.as_str()) || text[..start].ends_with("://") {
        return None;
    }
    Some((start, start + candidate.len()))
}

/// A number after a phone word: national formats without a trunk prefix (ES, IT, ...).
fn phone_national_context(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let n = digits(candidate).len();
    (8..=12).contains(&n).then_some((start, start + candidate.len()))
}

fn ipv4(text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    if !candidate.split('.').all(|octet| octet.parse::<u16>().is_ok_and(|v| v <= 255) && (octet.len() == 1 || !octet.starts_with('0'))) {
        return None;
    }
    // Part of a longer dotted sequence (a version number such as 10.0.0.0.1)?
    let before = &text[..start];
    let after = &text[start + candidate.len()..];
    let glued = |s: &str| s.starts_with('.') && s[1..].starts_with(|c: char| c.is_ascii_digit());
    if glued(after) || (before.ends_with('.') && before[..before.len() - 1].ends_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    Some((start, start + candidate.len()))
}

fn ipv6(text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let trimmed = candidate.trim_end_matches([':', '.']);
    let trimmed = if trimmed.ends_with(':') || candidate.ends_with("::") { candidate } else { trimmed };
    if trimmed.matches(':').count() < 2 {
        return None;
    }
    // Glued to a word on either side (`std::vector`, `crate::config`): a path, not an address.
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if glued(text[..start].chars().next_back()) || glued(text[start + candidate.len()..].chars().next()) {
        return None;
    }
    trimmed.parse::<std::net::Ipv6Addr>().ok()?;
    Some((start, start + trimmed.len()))
}

fn mixed_alnum(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    let tail = candidate.trim_start_matches("sk-");
    let has_digit = tail.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = tail.bytes().any(|b| b.is_ascii_alphabetic());
    (has_digit && has_alpha).then_some((start, start + candidate.len()))
}

fn jwt_header(_text: &str, candidate: &str, start: usize) -> Option<(usize, usize)> {
    use base64::Engine;
    let header = candidate.split('.').next()?;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.contains("\"alg\"").then_some((start, start + candidate.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, String)> {
        static SCANNER: std::sync::OnceLock<PiiScanner> = std::sync::OnceLock::new();
        let scanner = SCANNER.get_or_init(PiiScanner::new);
        scanner.scan(text).into_iter().map(|f| (f.kind, text[f.start..f.end].to_string())).collect()
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        assert_eq!(kinds("pay with 4111 1111 1111 1111 today"), vec![(PiiKind::Card, "4111 1111 1111 1111".into())]);
        assert_eq!(kinds("amex 3782-822463-10005"), vec![(PiiKind::Card, "3782-822463-10005".into())]);
        assert!(kinds("order 4111 1111 1111 1112").iter().all(|(k, _)| *k != PiiKind::Card));
        assert!(kinds("tracking 9400111899223197428490").is_empty());
    }

    #[test]
    fn ibans_need_their_checksum_and_length() {
        assert_eq!(kinds("IBAN: DE89 3704 0044 0532 0130 00 please"), vec![(PiiKind::Iban, "DE89 3704 0044 0532 0130 00".into())]);
        assert_eq!(kinds("GB82WEST12345698765432"), vec![(PiiKind::Iban, "GB82WEST12345698765432".into())]);
        assert!(kinds("DE89 3704 0044 0532 0130 01").iter().all(|(k, _)| *k != PiiKind::Iban));
    }

    #[test]
    fn secrets_of_the_major_providers() {
        let openai = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
        assert_eq!(kinds(&format!("key={openai}")), vec![(PiiKind::Secret, openai.into())]);
        assert_eq!(kinds("AKIAIOSFODNN7EXAMPLE"), vec![(PiiKind::Secret, "AKIAIOSFODNN7EXAMPLE".into())]);
        assert!(kinds("a risk-averse approach with sk-learn").is_empty());
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(kinds(pem), vec![(PiiKind::Secret, pem.into())]);
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(kinds(jwt), vec![(PiiKind::Secret, jwt.into())]);
    }

    #[test]
    fn emails_phones_ips_ssn() {
        assert_eq!(kinds("mail jane.doe+tag@example.co.uk now"), vec![(PiiKind::Email, "jane.doe+tag@example.co.uk".into())]);
        assert!(kinds("@Override public void").is_empty());
        assert_eq!(kinds("call +49 30 1234567"), vec![(PiiKind::Phone, "+49 30 1234567".into())]);
        assert_eq!(kinds("call (415) 555-0132"), vec![(PiiKind::Phone, "(415) 555-0132".into())]);
        assert_eq!(kinds("host 192.168.1.20 is down"), vec![(PiiKind::Ip, "192.168.1.20".into())]);
        assert!(kinds("version 10.0.0.0.1 and 999.1.1.1").is_empty());
        assert_eq!(kinds("v6 2001:db8::8a2e:370:7334 ok"), vec![(PiiKind::Ip, "2001:db8::8a2e:370:7334".into())]);
        assert!(kinds("at 12:30:45 today").is_empty());
        assert_eq!(kinds("SSN 123-45-6789"), vec![(PiiKind::Ssn, "123-45-6789".into())]);
        assert!(kinds("SSN 666-45-6789").iter().all(|(k, _)| *k != PiiKind::Ssn));
    }

    #[test]
    fn dates_of_birth_only_in_context() {
        assert_eq!(kinds("She was born on 12/03/1985."), vec![(PiiKind::Dob, "12/03/1985".into())]);
        assert_eq!(kinds("geboren am 3. März 1990"), vec![(PiiKind::Dob, "3. März 1990".into())]);
        assert!(kinds("The meeting is on 12/03/1985.").is_empty());
    }

    #[test]
    fn addresses_in_several_countries() {
        assert_eq!(kinds("send it to 1600 Pennsylvania Avenue NW please"), vec![(PiiKind::Address, "1600 Pennsylvania Avenue NW".into())]);
        assert_eq!(kinds("Ich wohne in der Hauptstraße 12 in Berlin"), vec![(PiiKind::Address, "Hauptstraße 12".into())]);
        assert_eq!(kinds("au 12 rue de Rivoli, Paris"), vec![(PiiKind::Address, "12 rue de Rivoli".into())]);
    }
}
