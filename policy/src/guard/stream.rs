//! Guarding text that arrives in pieces (a streamed response).
//!
//! The guard holds back only what could still turn out to be sensitive: the last
//! [`LOOKBEHIND`] characters (longer than any PII value except keys, which the detectors
//! already match on a prefix), any finding that touches the end of the text so far (it may still
//! grow), an unterminated private-key block, and a placeholder cut in half. Everything before
//! that is checked, rewritten and released at once, so a match split across chunk boundaries is
//! caught while the client still sees text promptly.

use super::engine::{render, BlockReason, Direction, GuardPolicy, GuardReport, Guards, Placeholders, MAX_PLACEHOLDER_LEN};

/// Characters kept back at the end of the text so far.
pub const LOOKBEHIND: usize = 64;

/// The state of one streamed text (one choice's content).
#[derive(Debug, Default)]
pub struct StreamGuard {
    pending: String,
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
        self.pending.push_str(piece);
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

    fn release(
        &mut self,
        guards: &Guards,
        policy: &GuardPolicy,
        placeholders: &mut Placeholders,
        report: &mut GuardReport,
        last: bool,
    ) -> Result<String, BlockReason> {
        let text = &self.pending;
        // Plan on a scratch report: findings that stay held are recorded when released.
        let mut scratch = GuardReport::default();
        let edits = guards.plan(policy, text, Direction::Output, &mut scratch);
        if let Err(reason) = edits {
            merge(report, scratch);
            return Err(reason);
        }
        let edits = edits.expect("checked");
        let mut cut = if last { text.len() } else { floor_boundary(text, text.len().saturating_sub(LOOKBEHIND)) };
        if !last {
            for edit in &edits {
                if edit.start < cut && (edit.end > cut || edit.end == text.len()) {
                    cut = edit.start;
                }
            }
            if let Some(begin) = text.rfind("-----BEGIN") {
                if !text[begin..].contains("-----END") {
                    cut = cut.min(begin);
                }
            }
            // Do not split a placeholder (`[EMAIL_1]`) that a reversible policy must restore.
            let window_start = floor_boundary(text, cut.saturating_sub(MAX_PLACEHOLDER_LEN));
            if let Some(open) = text[window_start..cut].rfind('[') {
                let open = window_start + open;
                if !text[open..cut].contains(']') {
                    cut = open;
                }
            }
        }
        let released = render(text, &edits, cut, placeholders, report, Direction::Output);
        self.pending.drain(..cut);
        Ok(if policy.reversible { placeholders.restore(&released) } else { released })
    }
}

fn merge(into: &mut GuardReport, from: GuardReport) {
    for (key, n) in from.actions {
        *into.actions.entry(key).or_insert(0) += n;
    }
    if from.blocked.is_some() {
        into.blocked = from.blocked;
    }
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
    use crate::guard::engine::GuardAction;
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
    fn text_is_released_before_the_end_and_holdback_is_bounded() {
        let mut guard = StreamGuard::new();
        let mut placeholders = Placeholders::default();
        let mut report = GuardReport::default();
        let long = "lorem ipsum ".repeat(20);
        let released = guard.push(guards(), &policy(false), &long, &mut placeholders, &mut report).unwrap();
        assert_eq!(released.len(), long.len() - LOOKBEHIND);
        assert_eq!(guard.finish(guards(), &policy(false), &mut placeholders, &mut report).unwrap().len(), LOOKBEHIND);
    }
}
