//! Guarding text that arrives in pieces (a streamed response).
//!
//! The guard releases a prefix of the text as soon as no continuation can change what the
//! whole-body guard would do with it, so the client sees exactly what a whole response would
//! have shown. It holds back from the earliest of:
//!
//! - the start of any detector or custom-rule match that may still be in progress (one lazy DFA
//!   thread per live start, see [`super::hold`]): a PEM block from `-----BEGIN`, a JWT from
//!   `eyJ`, an AWS secret from the `aws ... key` words before it, an email from its first letter;
//! - the start of any raw match that crosses that point or ends so near the end of the text that
//!   its validator may still read what follows ([`VALIDATOR_LOOKAHEAD`]);
//! - a suffix that could start a deny-list phrase, and a placeholder cut in half.
//!
//! A hold is bounded by [`StreamHold::max_bytes`]: past it, the strictest action among the
//! detectors whose match is in progress applies to the held text (block ends the stream, redact
//! and mask replace it and drop the rest of that match as it arrives), failing closed.

use super::engine::{first_block, render, BlockReason, Direction, Edit, EditTarget, GuardAction, GuardPolicy, GuardReport, Guards, Placeholders, MAX_PLACEHOLDER_LEN};
use super::hold::{HoldMatcher, HoldOwner, HoldThreads, WatchStatus};

#[cfg(doc)]
use super::engine::StreamHold;

/// Bytes of released text kept before the held text: what precedes a match (`\b`, `^`, a
/// validator looking back) must read the same as in the whole text.
pub const CONTEXT: usize = 256;

/// Bytes after a match that a validator may read (`10.0.0.1.5` is not an IP address).
pub const VALIDATOR_LOOKAHEAD: usize = 2;

/// The hold state of one source of patterns (the PII detectors, the custom rules).
#[derive(Debug, Default)]
enum Holds {
    /// Not started, or nothing to hold for.
    #[default]
    Off,
    Threads(Box<HoldThreads>),
    /// The patterns do not compile as a DFA: everything is held (up to the cap).
    Everything,
}

impl Holds {
    fn start<'m>(needed: bool, matcher: impl FnOnce() -> Option<&'m HoldMatcher>) -> Holds {
        if !needed {
            return Holds::Off;
        }
        match matcher() {
            Some(m) => Holds::Threads(Box::new(HoldThreads::new(m))),
            None => Holds::Everything,
        }
    }

    fn earliest(&self, from: usize) -> Option<usize> {
        match self {
            Holds::Off => None,
            Holds::Threads(t) => t.earliest(),
            Holds::Everything => Some(from),
        }
    }
}

/// The state of one streamed text (one choice's content or one tool call's arguments).
#[derive(Debug, Default)]
pub struct StreamGuard {
    /// Up to [`CONTEXT`] bytes already released, then the held text.
    text: String,
    /// Where the held text starts in `text`.
    released: usize,
    started: bool,
    detectors: Holds,
    rules: Holds,
    /// The cap redacted a match still in progress: the rest of it is dropped until it ends.
    dropping: bool,
}

impl StreamGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a piece; returns the text that can be released now (possibly empty).
    pub fn push(
        &mut self,
        guards: &Guards,
        policy: &GuardPolicy,
        piece: &str,
        placeholders: &mut Placeholders,
        report: &mut GuardReport,
    ) -> Result<String, BlockReason> {
        self.text.push_str(piece);
        self.release(guards, policy, placeholders, report, false)
    }

    /// The stream ended: check and release everything held.
    pub fn finish(
        &mut self,
        guards: &Guards,
        policy: &GuardPolicy,
        placeholders: &mut Placeholders,
        report: &mut GuardReport,
    ) -> Result<String, BlockReason> {
        self.release(guards, policy, placeholders, report, true)
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.text.len() - self.released
    }

    fn release(
        &mut self,
        guards: &Guards,
        policy: &GuardPolicy,
        placeholders: &mut Placeholders,
        report: &mut GuardReport,
        last: bool,
    ) -> Result<String, BlockReason> {
        if !self.started {
            self.started = true;
            self.detectors = Holds::start(!policy.pii.is_empty(), || guards.hold_matcher());
            self.rules = Holds::start(policy.rules.iter().any(|r| r.output), || policy.stream.rules_matcher(&policy.rules));
        }
        self.advance(guards, policy);
        if self.dropping && !self.end_dropping() {
            return Ok(String::new());
        }
        let n = self.text.len();
        let r = self.released;
        let mut hold = if last { n } else { self.hold_start(policy) };
        let over_cap = |cut: usize| !last && n - cut > policy.stream.max_bytes;
        if hold <= r && !over_cap(r) {
            return Ok(String::new());
        }
        let mut spans = Vec::new();
        let edits = guards.find_edits(policy, &self.text, r, Direction::Output, report, &mut spans)?;
        // Spans of holds given up at the cap (log-only or unwatched): no longer hold the text.
        let mut ignored_upto = None;
        let (cut, forced) = loop {
            let cut = if last { n } else { self.settle(policy, hold, &spans, ignored_upto) };
            if !over_cap(cut) {
                break (cut, None);
            }
            let start = hold.min(cut);
            match self.strictest_alive(guards, policy, start) {
                Some((owner, GuardAction::Block)) => {
                    let reason = owner_reason(policy, owner);
                    report.record(reason.rule(), GuardAction::Block, Direction::Output);
                    return Err(reason);
                }
                Some((owner, action @ (GuardAction::Redact | GuardAction::Mask))) => break (cut, Some((owner, action))),
                _ => {
                    // Only log-only detectors hold this text: let it go and look further on.
                    let next = ceil_boundary(&self.text, start + 1);
                    ignored_upto = Some(start);
                    self.forget_before(next);
                    hold = self.hold_start(policy).max(next);
                }
            }
        };
        let settled: Vec<Edit> = edits.iter().filter(|e| e.end <= cut).cloned().collect();
        if let Some(reason) = first_block(policy, &settled) {
            report.record(reason.rule(), GuardAction::Block, Direction::Output);
            return Err(reason);
        }
        let rebased = |e: &Edit| Edit { start: e.start - r, end: e.end - r, ..e.clone() };
        let mut rendered: Vec<Edit> = settled.iter().map(rebased).collect();
        let upto = match forced {
            None => cut,
            Some((owner, action)) => {
                // The cap: the held text goes as one redacted or masked value; the rest of the
                // match in progress is dropped as it arrives.
                let target = match owner {
                    HoldOwner::Pii(kind) => EditTarget::Pii(kind),
                    HoldOwner::Rule(index) => EditTarget::Rule(index, policy.rules[index].name.to_uppercase()),
                };
                rendered.push(Edit { start: cut - r, end: n - r, action, target });
                self.dropping = true;
                self.watch(hold.min(cut));
                self.forget_before(n);
                n
            }
        };
        let released = render(&self.text[r..], &rendered, upto - r, placeholders, report, Direction::Output);
        self.released = upto;
        self.trim();
        Ok(if policy.reversible { placeholders.restore(&released) } else { released })
    }

    fn advance(&mut self, guards: &Guards, policy: &GuardPolicy) {
        if let (Holds::Threads(threads), Some(m)) = (&mut self.detectors, guards.hold_matcher()) {
            threads.advance(m, &self.text, self.released);
        }
        if let (Holds::Threads(threads), Some(m)) = (&mut self.rules, policy.stream.rules_matcher(&policy.rules)) {
            threads.advance(m, &self.text, self.released);
        }
    }

    /// The earliest offset that may still change: a match in progress, a deny phrase begun, a
    /// placeholder cut in half.
    fn hold_start(&self, policy: &GuardPolicy) -> usize {
        let n = self.text.len();
        let r = self.released;
        let mut hold = n;
        for holds in [&self.detectors, &self.rules] {
            if let Some(start) = holds.earliest(r) {
                hold = hold.min(start.max(r));
            }
        }
        if let Some(start) = deny_prefix_start(&self.text, r, &policy.deny) {
            hold = hold.min(start);
        }
        hold
    }

    /// Move `cut` back until no raw match or edit crosses it, no match before it may still
    /// be changed by what its validator reads next, and no placeholder is cut in half.
    fn settle(&self, policy: &GuardPolicy, hold: usize, spans: &[(usize, usize)], ignored_upto: Option<usize>) -> usize {
        let n = self.text.len();
        let r = self.released;
        let mut cut = hold;
        loop {
            let before = cut;
            // Every edit lies within a raw match, so the raw spans are enough.
            for &(start, end) in spans {
                if ignored_upto.is_some_and(|i| start <= i) {
                    continue;
                }
                if start < cut && (end > cut || end + VALIDATOR_LOOKAHEAD > n) {
                    cut = start;
                }
            }
            if policy.reversible {
                // Do not split a placeholder (`[EMAIL_1]`) that a reversible policy must restore.
                let window_start = floor_boundary(&self.text, cut.saturating_sub(MAX_PLACEHOLDER_LEN)).max(r);
                if let Some(open) = self.text[window_start..cut].rfind('[') {
                    let open = window_start + open;
                    if !self.text[open..cut].contains(']') {
                        cut = open;
                    }
                }
            }
            if cut == before {
                return cut;
            }
        }
    }

    /// The strictest action among the patterns whose match from `start` is still in progress.
    fn strictest_alive(&mut self, guards: &Guards, policy: &GuardPolicy, start: usize) -> Option<(HoldOwner, GuardAction)> {
        let mut owners = Vec::new();
        let text = &self.text;
        match &mut self.detectors {
            Holds::Threads(t) => owners.extend(guards.hold_matcher().map(|m| t.owners_alive_at(m, text, start)).unwrap_or_default()),
            Holds::Everything => owners.extend(policy.pii.keys().map(|k| HoldOwner::Pii(*k))),
            Holds::Off => {}
        }
        match &mut self.rules {
            Holds::Threads(t) => owners.extend(policy.stream.rules_matcher(&policy.rules).map(|m| t.owners_alive_at(m, text, start)).unwrap_or_default()),
            Holds::Everything => owners.extend(policy.rules.iter().enumerate().filter(|(_, r)| r.output).map(|(i, _)| HoldOwner::Rule(i))),
            Holds::Off => {}
        }
        owners
            .into_iter()
            .filter_map(|owner| owner_action(policy, owner).map(|action| (owner, action)))
            .max_by_key(|(_, action)| severity(*action))
    }

    fn forget_before(&mut self, at: usize) {
        for holds in [&mut self.detectors, &mut self.rules] {
            if let Holds::Threads(t) = holds {
                t.forget_before(at);
            }
        }
    }

    /// Drop the held match that starts at `start` until its DFA thread dies.
    fn watch(&mut self, start: usize) {
        for holds in [&mut self.detectors, &mut self.rules] {
            if let Holds::Threads(t) = holds {
                t.watch(start);
            }
        }
    }

    /// While dropping: `false` if the dropped match goes on (the new text is dropped too, up to
    /// where a match already seen ends), `true` once it ended (the text after it is held and
    /// released as usual).
    fn end_dropping(&mut self) -> bool {
        let mut ended_at = Some(self.released);
        let mut drop_upto = self.text.len();
        for holds in [&self.detectors, &self.rules] {
            match holds {
                Holds::Threads(t) => match t.watch_status() {
                    WatchStatus::Unwatched => {}
                    WatchStatus::Ended(at) => ended_at = ended_at.map(|e| e.max(at)),
                    WatchStatus::Alive { matched } => {
                        ended_at = None;
                        if let Some(end) = matched {
                            drop_upto = drop_upto.min(end);
                        }
                    }
                },
                Holds::Everything => ended_at = None,
                Holds::Off => {}
            }
        }
        let (resume, ended) = match ended_at {
            Some(at) => (at, true),
            None => (drop_upto, false),
        };
        self.released = floor_boundary(&self.text, resume).max(self.released);
        self.forget_before(self.released);
        if ended {
            self.dropping = false;
            for holds in [&mut self.detectors, &mut self.rules] {
                if let Holds::Threads(t) = holds {
                    t.stop_watch();
                }
            }
        } else {
            self.trim();
        }
        ended
    }

    /// Keep at most [`CONTEXT`] bytes of released text.
    fn trim(&mut self) {
        let drop = floor_boundary(&self.text, self.released.saturating_sub(CONTEXT));
        if drop == 0 {
            return;
        }
        self.text.drain(..drop);
        self.released -= drop;
        for holds in [&mut self.detectors, &mut self.rules] {
            if let Holds::Threads(t) = holds {
                t.shift(drop);
            }
        }
    }
}

fn owner_action(policy: &GuardPolicy, owner: HoldOwner) -> Option<GuardAction> {
    match owner {
        HoldOwner::Pii(kind) => policy.pii.get(&kind).copied(),
        HoldOwner::Rule(index) => policy.rules.get(index).filter(|r| r.output).map(|r| r.action),
    }
}

fn owner_reason(policy: &GuardPolicy, owner: HoldOwner) -> BlockReason {
    match owner {
        HoldOwner::Pii(kind) => BlockReason::Pii(kind),
        HoldOwner::Rule(index) => BlockReason::Rule(policy.rules[index].name.clone()),
    }
}

fn severity(action: GuardAction) -> u8 {
    match action {
        GuardAction::Log => 0,
        GuardAction::Mask => 1,
        GuardAction::Redact => 2,
        GuardAction::Block => 3,
    }
}

/// The earliest character boundary at or after `from` where the rest of `text` could begin a
/// deny phrase (phrases are lower-case; the text is compared lower-cased).
fn deny_prefix_start(text: &str, from: usize, deny: &[String]) -> Option<usize> {
    let longest = deny.iter().map(String::len).max()?;
    // Lower-casing may change a character's length: look a little further back than the phrase.
    let window = floor_boundary(text, text.len().saturating_sub(longest * 2)).max(from);
    text[window..].char_indices().map(|(i, _)| window + i).find(|&at| {
        let tail = text[at..].to_lowercase();
        deny.iter().any(|phrase| phrase.starts_with(&tail))
    })
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at.min(text.len())
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::engine::DEFAULT_STREAM_HOLD_MAX_BYTES;
    use crate::guard::engine::{CustomRule, GuardAction, StreamHold};
    use crate::guard::pii::PiiKind;

    fn guards() -> &'static Guards {
        static GUARDS: std::sync::OnceLock<Guards> = std::sync::OnceLock::new();
        GUARDS.get_or_init(Guards::new)
    }

    fn policy(reversible: bool) -> GuardPolicy {
        GuardPolicy {
            pii: [(PiiKind::Email, GuardAction::Redact), (PiiKind::Card, GuardAction::Block)].into_iter().collect(),
            reversible,
            injection: None,
            deny: vec![],
            allow: vec![],
            rules: vec![],
            scan_output: true,
            stream: StreamHold::default(),
        }
    }

    /// Feed `text` split at every possible pair of points; the output must not depend on it.
    fn stream(text: &str, reversible: bool, placeholders: &Placeholders) -> Vec<Result<String, BlockReason>> {
        let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let mut outcomes = Vec::new();
        for (a, &i) in chars.iter().enumerate() {
            for &j in &chars[a..] {
                let mut guard = StreamGuard::new();
                let mut placeholders = placeholders.clone();
                let mut report = GuardReport::default();
                let mut out = String::new();
                let result = (|| {
                    for piece in [&text[..i], &text[i..j], &text[j..]] {
                        out.push_str(&guard.push(guards(), &policy(reversible), piece, &mut placeholders, &mut report)?);
                    }
                    out.push_str(&guard.finish(guards(), &policy(reversible), &mut placeholders, &mut report)?);
                    Ok(out.clone())
                })();
                outcomes.push(result);
            }
        }
        outcomes
    }

    #[test]
    fn matches_across_chunk_boundaries_are_caught_whatever_the_split() {
        let text = "Write to jane.doe@example.com today.";
        for outcome in stream(text, false, &Placeholders::default()) {
            assert_eq!(outcome.unwrap(), "Write to [EMAIL_1] today.");
        }
        let blocked = "Your card 4111 1111 1111 1111 is on file.";
        for outcome in stream(blocked, false, &Placeholders::default()) {
            assert_eq!(outcome.unwrap_err(), BlockReason::Pii(PiiKind::Card));
        }
    }

    #[test]
    fn placeholders_split_across_chunks_are_restored() {
        let mut placeholders = Placeholders::default();
        let mut report = GuardReport::default();
        let input = guards().apply(&policy(true), "I am jane@corp.io", Direction::Input, &mut placeholders, &mut report).unwrap().unwrap();
        assert_eq!(input, "I am [EMAIL_1]");
        for outcome in stream("Hello [EMAIL_1], welcome back.", true, &placeholders) {
            assert_eq!(outcome.unwrap(), "Hello jane@corp.io, welcome back.");
        }
    }

    #[test]
    fn prose_is_released_at_once_but_for_the_word_being_written() {
        let mut guard = StreamGuard::new();
        let mut placeholders = Placeholders::default();
        let mut report = GuardReport::default();
        let long = "lorem ipsum ".repeat(20);
        let released = guard.push(guards(), &policy(false), &long, &mut placeholders, &mut report).unwrap();
        assert!(guard.held() <= 1, "held {} bytes of plain prose", guard.held());
        let rest = guard.finish(guards(), &policy(false), &mut placeholders, &mut report).unwrap();
        assert_eq!(released + &rest, long);
    }

    // --- The streamed output is the whole-body output, whatever the chunking. ---

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\nUTmPk2sm2xNKi6T1LxLwnL9XGk3XZxq0VVw8GEfwhGWHNGBjZW5eu6AINvHk2W8x\nQ3Ujzdq6qxTOdBtQ5ZYC5ydGcX3WdNTpFMDFEbTBkTFTLGWnQ0Ds96sdx3NQfzc8\n-----END RSA PRIVATE KEY-----";
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

    /// One text per detector, each with its sensitive value in a sentence.
    fn samples() -> Vec<(PiiKind, String)> {
        vec![
            (PiiKind::Secret, format!("Here is the key:\n{PEM}\nKeep it safe.")),
            (PiiKind::Secret, format!("Use the token {JWT} in the header.")),
            (PiiKind::Secret, "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n".into()),
            (PiiKind::Secret, "export OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done".into()),
            (PiiKind::Secret, "anthropic sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z and github ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z1234 ok".into()),
            (PiiKind::Secret, "google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q, slack xoxb-123456789012-Ab3dEf6hIj, stripe sk_live_Ab3dEf6hIj9kLm2nOp.".into()),
            (PiiKind::Card, "Pay with 4111 1111 1111 1111 or 3782-822463-10005 please.".into()),
            (PiiKind::Iban, "IBAN: DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432.".into()),
            (PiiKind::Ssn, "My SSN is 123-45-6789, thanks.".into()),
            (PiiKind::Email, "Write to jane.doe+tag@example.co.uk or ops@corp.io today.".into()),
            (PiiKind::Phone, "Call +49 30 1234567 or (415) 555-0132, or phone: 612 34 56 78.".into()),
            (PiiKind::Ip, "Hosts 192.168.1.20 and 2001:db8::8a2e:370:7334 are down; v10.0.0.0.1 is not.".into()),
            (PiiKind::Dob, "She was born on 12/03/1985. Ich bin am 5. November 1956 in Köln geboren.".into()),
            (PiiKind::Address, "Send it to 1600 Pennsylvania Avenue NW, or Hauptstraße 12, or 12 rue de Rivoli, or Calle Mayor 5.".into()),
        ]
    }

    fn policy_for(pii: &[(PiiKind, GuardAction)], max_bytes: usize) -> GuardPolicy {
        GuardPolicy { pii: pii.iter().copied().collect(), stream: StreamHold::new(max_bytes), ..policy(false) }
    }

    /// What the whole-body guard makes of `text`.
    fn whole(policy: &GuardPolicy, text: &str) -> Result<String, BlockReason> {
        let mut placeholders = Placeholders::default();
        let mut report = GuardReport::default();
        guards().apply(policy, text, Direction::Output, &mut placeholders, &mut report).map(|out| out.unwrap_or_else(|| text.to_string()))
    }

    /// The text streamed in `pieces`: the outcome and everything the client saw.
    fn streamed<'a>(policy: &GuardPolicy, pieces: impl IntoIterator<Item = &'a str>) -> (Result<String, BlockReason>, String) {
        let mut guard = StreamGuard::new();
        let mut placeholders = Placeholders::default();
        let mut report = GuardReport::default();
        let mut seen = String::new();
        for piece in pieces {
            match guard.push(guards(), policy, piece, &mut placeholders, &mut report) {
                Ok(out) => seen.push_str(&out),
                Err(reason) => return (Err(reason), seen),
            }
        }
        match guard.finish(guards(), policy, &mut placeholders, &mut report) {
            Ok(out) => {
                seen.push_str(&out);
                (Ok(seen.clone()), seen)
            }
            Err(reason) => (Err(reason), seen),
        }
    }

    /// Pieces of `size` characters, and pseudo-random pieces of 1 to 7 bytes (on character
    /// boundaries: a `&str` delta never splits one).
    fn chunkings(text: &str) -> Vec<Vec<&str>> {
        let mut out = Vec::new();
        for size in [1, 2, 3, 5, 64] {
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(size).chain([text.len()]).collect();
            out.push(bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect());
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < text.len() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let mut end = (at + 1 + (seed >> 61) as usize).min(text.len());
            end = ceil_boundary(text, end);
            pieces.push(&text[at..end]);
            at = end;
        }
        out.push(pieces);
        out
    }

    fn assert_stream_equals_whole(policy: &GuardPolicy, text: &str, secret: Option<&str>) {
        let expected = whole(policy, text);
        for pieces in chunkings(text) {
            let (outcome, seen) = streamed(policy, pieces.iter().copied());
            assert_eq!(outcome, expected, "pieces {pieces:?}");
            if let Some(secret) = secret.filter(|_| expected.is_err()) {
                assert!(!seen.contains(secret), "the client saw the secret before the block: {seen:?}");
            }
        }
    }

    #[test]
    fn every_detector_streams_as_the_whole_body_for_every_chunking_and_action() {
        for (kind, text) in samples() {
            for action in [GuardAction::Block, GuardAction::Redact, GuardAction::Mask, GuardAction::Log] {
                let policy = policy_for(&[(kind, action)], DEFAULT_STREAM_HOLD_MAX_BYTES);
                assert!(whole(&policy, &text) != Ok(text.clone()) || action == GuardAction::Log, "{kind} sample has no finding: {text}");
                assert_stream_equals_whole(&policy, &text, None);
            }
            // All detectors at once: overlaps between kinds resolve as in the whole body.
            let all: Vec<(PiiKind, GuardAction)> = PiiKind::ALL.iter().map(|k| (*k, GuardAction::Redact)).collect();
            assert_stream_equals_whole(&policy_for(&all, DEFAULT_STREAM_HOLD_MAX_BYTES), &text, None);
        }
    }

    #[test]
    fn long_and_multi_part_secrets_never_reach_the_client_before_the_block() {
        let policy = policy_for(&[(PiiKind::Secret, GuardAction::Block)], DEFAULT_STREAM_HOLD_MAX_BYTES);
        let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for (text, secret) in [
            (format!("Key:\n{PEM}\n"), "MIIEowIBAAKCAQEA"),
            (format!("token {JWT}"), JWT),
            (format!("AWS key AKIAIOSFODNN7EXAMPLE, secret access key: {aws_secret}."), aws_secret),
        ] {
            assert_eq!(whole(&policy, &text), Err(BlockReason::Pii(PiiKind::Secret)));
            assert_stream_equals_whole(&policy, &text, Some(secret));
            // Nothing of the secret, not even its first line, goes out before the block.
            let (_, seen) = streamed(&policy, chunkings(&text)[0].iter().copied());
            assert!(!seen.contains(&secret[..8]), "{seen:?}");
        }
    }

    #[test]
    fn custom_rules_and_deny_phrases_stream_as_the_whole_body() {
        let rule = |action| CustomRule { name: "ticket".into(), regex: regex::Regex::new(r"TCK-\d{6}").unwrap(), action, input: false, output: true };
        for action in [GuardAction::Block, GuardAction::Redact] {
            let policy = GuardPolicy { rules: vec![rule(action)], ..policy_for(&[], DEFAULT_STREAM_HOLD_MAX_BYTES) };
            assert_stream_equals_whole(&policy, "See TCK-123456 and TCK-12345 later.", Some("TCK-123456"));
        }
        let policy = GuardPolicy { deny: vec!["project falcon".into()], ..policy_for(&[], DEFAULT_STREAM_HOLD_MAX_BYTES) };
        assert_stream_equals_whole(&policy, "All about Project Falcon, the plan.", Some("Project"));
        assert_stream_equals_whole(&policy, "A project, a falcon: Project Falc.", None);
    }

    #[test]
    fn streaming_adds_no_false_positive_on_benign_text() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".repeat(4);
        let image = format!("![chart](data:image/png;base64,{})", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==".repeat(20));
        let code = "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{v:?} at 12:30:45\");\n    std::process::exit(0);\n}\n";
        let all: Vec<(PiiKind, GuardAction)> = PiiKind::ALL.iter().map(|k| (*k, GuardAction::Block)).collect();
        let policy = policy_for(&all, DEFAULT_STREAM_HOLD_MAX_BYTES);
        for text in [format!("sha256: {hex}\n"), format!("Here: {image} done."), code.to_string(), "Version 10.0.0.0.1 shipped; see docs/api.md.".into()] {
            assert_eq!(whole(&policy, &text), Ok(text.clone()), "the sample itself must be benign");
            assert_stream_equals_whole(&policy, &text, None);
        }
    }

    #[test]
    fn a_hold_past_the_cap_gets_the_detectors_action_and_fails_closed() {
        let body = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n".repeat(40);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----");
        let text = format!("Before. {pem} After.");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();

        let block = policy_for(&[(PiiKind::Secret, GuardAction::Block)], 1024);
        let (outcome, seen) = streamed(&block, lines.iter().copied());
        assert_eq!(outcome, Err(BlockReason::Pii(PiiKind::Secret)));
        assert!(!seen.contains("MIIE"), "{seen:?}");

        let redact = policy_for(&[(PiiKind::Secret, GuardAction::Redact)], 1024);
        for pieces in chunkings(&text).into_iter().chain([lines.clone()]) {
            let (outcome, _) = streamed(&redact, pieces.iter().copied());
            let out = outcome.unwrap();
            assert!(out.starts_with("Before. [SECRET_1]"), "{out}");
            assert!(!out.contains("MIIE") && !out.contains("-----"), "{out}");
            assert!(out.ends_with("[SECRET_1] After."), "the text after the dropped match comes through: {out} {:?}", &pieces[..3]);
        }

        // Under the cap the same text is redacted as the whole body does it.
        let roomy = policy_for(&[(PiiKind::Secret, GuardAction::Redact)], DEFAULT_STREAM_HOLD_MAX_BYTES);
        assert_eq!(streamed(&roomy, lines.iter().copied()).0, Ok("Before. [SECRET_1] After.".into()));
    }
}
