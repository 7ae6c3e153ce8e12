//! Which detector match may still be in progress at the end of a streamed text.
//!
//! The stream guard may only release text that no continuation could turn into (part of) a
//! finding. Every detector's pattern (and every custom rule's) is compiled once more into one
//! lazy DFA, and each stream keeps one DFA thread per start position that is still alive: the
//! bytes from that start to the end of the text so far are a prefix of a possible match. The
//! earliest live start is where the hold begins. A thread dies as soon as no continuation can
//! match from its start, so a PEM block holds from `-----BEGIN` until its `-----END ...-----`
//! and ordinary prose holds only the word being written.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternID};

use super::pii::PiiKind;

/// Whose pattern a hold belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOwner {
    Pii(PiiKind),
    /// A custom rule, by its index in the policy.
    Rule(usize),
}

/// A set of patterns compiled for stepping: one multi-pattern lazy DFA.
#[derive(Debug)]
pub struct HoldMatcher {
    dfa: DFA,
    owners: Vec<HoldOwner>,
}

/// Upper bound of one stream's DFA cache; the cache grows only as far as the text needs.
const CACHE_CAPACITY: usize = 1 << 20;

impl HoldMatcher {
    /// Compile `patterns` (the same syntax as `regex`). `None` if one does not compile as a DFA;
    /// the stream guard then holds everything (failing closed).
    pub fn new(patterns: &[(&str, HoldOwner)]) -> Option<HoldMatcher> {
        if patterns.is_empty() {
            return None;
        }
        let sources: Vec<&str> = patterns.iter().map(|(p, _)| *p).collect();
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .starts_for_each_pattern(true)
                    // Unicode `\b` in a custom rule: the DFA stops on non-ASCII, read as "alive".
                    .unicode_word_boundary(true)
                    .cache_capacity(CACHE_CAPACITY)
                    .skip_cache_capacity_check(true),
            )
            .syntax(syntax::Config::new())
            .thompson(thompson::Config::new().which_captures(thompson::WhichCaptures::None))
            .build_many(&sources)
            .ok()?;
        Some(HoldMatcher { dfa, owners: patterns.iter().map(|(_, o)| *o).collect() })
    }

    /// The owners whose pattern, anchored at `start`, is still alive at the end of `text`.
    pub fn owners_alive_at(&self, cache: &mut Cache, text: &str, start: usize) -> Vec<HoldOwner> {
        let mut alive = Vec::new();
        for (index, owner) in self.owners.iter().enumerate() {
            let anchored = Anchored::Pattern(PatternID::new_unchecked(index));
            let input = Input::new(text).range(start..).anchored(anchored);
            let Ok(mut state) = self.dfa.start_state_forward(cache, &input) else {
                alive.push(*owner);
                continue;
            };
            for &byte in &text.as_bytes()[start..] {
                match self.dfa.next_state(cache, state, byte) {
                    Ok(next) if next.is_dead() => break,
                    Ok(next) if next.is_quit() => break,
                    Ok(next) => state = next,
                    Err(_) => break,
                }
            }
            if !state.is_dead() && !alive.contains(owner) {
                alive.push(*owner);
            }
        }
        alive
    }
}

/// One stream's live DFA threads over its text.
#[derive(Debug, Clone)]
pub struct HoldThreads {
    cache: Cache,
    /// (start, state after the text stepped so far), ordered by start.
    threads: Vec<(usize, LazyStateID)>,
    /// The text is stepped up to here.
    stepped: usize,
    /// A thread whose DFA gave up (a quit byte, an unusable start): alive for good.
    stuck: Option<usize>,
    watch: Watch,
}

/// See [`HoldThreads::watch_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStatus {
    Unwatched,
    /// Still alive; `matched`: where the longest match seen so far ends (the text after it may
    /// yet turn out not to belong to the match).
    Alive { matched: Option<usize> },
    /// Its match ended here (or, without a match, it died here).
    Ended(usize),
}

/// A thread followed to its end after the stream guard gave up holding it (the cap).
#[derive(Debug, Clone, Copy, Default)]
enum Watch {
    #[default]
    None,
    /// Its state, and where the last match it saw ended.
    Alive(LazyStateID, Option<usize>),
    /// Gave up: alive for good.
    Stuck,
    /// Ended here: where its last match ended, or where it died without one.
    Ended(usize),
}

impl HoldThreads {
    pub fn new(matcher: &HoldMatcher) -> HoldThreads {
        HoldThreads { cache: matcher.dfa.create_cache(), threads: Vec::new(), stepped: 0, stuck: None, watch: Watch::None }
    }

    /// Heap bytes of this stream's DFA cache (it grows with the states the text visits).
    pub fn memory_usage(&self) -> usize {
        self.cache.memory_usage() + self.threads.capacity() * std::mem::size_of::<(usize, LazyStateID)>()
    }

    /// Step every thread over the text added since the last call, starting new threads at each
    /// character boundary at or after `from`, and drop the threads that died.
    pub fn advance(&mut self, matcher: &HoldMatcher, text: &str, from: usize) {
        let clears = self.cache.clear_count();
        let stepped = self.stepped;
        let threads = self.threads.clone();
        self.step(matcher, text, from);
        if self.cache.clear_count() != clears {
            // The cache was cleared midway, so earlier state IDs are stale: step again from the
            // earliest start still relevant with a fresh cache (large enough for one pass).
            // (A watched thread cannot be replayed: it is taken as alive for good.)
            if matches!(self.watch, Watch::Alive(..)) {
                self.watch = Watch::Stuck;
            }
            let restart = threads.first().map_or(stepped, |t| t.0).min(stepped).max(from);
            self.cache = matcher.dfa.create_cache();
            self.threads.clear();
            self.stepped = restart;
            self.step(matcher, text, restart);
            if self.cache.clear_count() != 0 {
                self.stuck = Some(self.stuck.map_or(restart, |s| s.min(restart)));
            }
        }
    }

    fn step(&mut self, matcher: &HoldMatcher, text: &str, from: usize) {
        let bytes = text.as_bytes();
        for (at, &byte) in bytes.iter().enumerate().skip(self.stepped) {
            if at >= from && text.is_char_boundary(at) {
                let input = Input::new(text).range(at..).anchored(Anchored::Yes);
                match matcher.dfa.start_state_forward(&mut self.cache, &input) {
                    Ok(state) if state.is_dead() => {}
                    Ok(state) => self.threads.push((at, state)),
                    Err(_) => self.stuck = Some(self.stuck.map_or(at, |s| s.min(at))),
                }
            }
            if let Watch::Alive(state, matched) = self.watch {
                // Matches show one byte late: a match state on byte `at` is a match ending at `at`.
                self.watch = match matcher.dfa.next_state(&mut self.cache, state, byte) {
                    Ok(next) if next.is_dead() => Watch::Ended(matched.unwrap_or(at)),
                    Ok(next) if next.is_quit() => Watch::Stuck,
                    Ok(next) => Watch::Alive(next, if next.is_match() { Some(at) } else { matched }),
                    Err(_) => Watch::Stuck,
                };
            }
            let mut stuck = None;
            self.threads.retain_mut(|(start, state)| match matcher.dfa.next_state(&mut self.cache, *state, byte) {
                Ok(next) if next.is_dead() => false,
                Ok(next) if next.is_quit() => {
                    stuck.get_or_insert(*start);
                    false
                }
                Ok(next) => {
                    *state = next;
                    true
                }
                Err(_) => {
                    stuck.get_or_insert(*start);
                    false
                }
            });
            if let Some(start) = stuck {
                self.stuck = Some(self.stuck.map_or(start, |s| s.min(start)));
            }
        }
        self.stepped = bytes.len();
    }

    /// The earliest start whose match may still be in progress.
    pub fn earliest(&self) -> Option<usize> {
        let live = self.threads.first().map(|t| t.0);
        match (live, self.stuck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Follow the thread started at `start` (if it is one of these) to its end, apart from the
    /// others; see [`watch_ended`](Self::watch_ended).
    pub fn watch(&mut self, start: usize) {
        if self.stuck.is_some_and(|s| s <= start) {
            self.watch = Watch::Stuck;
        } else if let Some(&(_, state)) = self.threads.iter().find(|t| t.0 == start) {
            self.watch = Watch::Alive(state, None);
        }
    }

    /// How the watched thread is doing.
    pub fn watch_status(&self) -> WatchStatus {
        match self.watch {
            Watch::None => WatchStatus::Unwatched,
            Watch::Alive(_, matched) => WatchStatus::Alive { matched },
            Watch::Stuck => WatchStatus::Alive { matched: None },
            Watch::Ended(at) => WatchStatus::Ended(at),
        }
    }

    pub fn stop_watch(&mut self) {
        self.watch = Watch::None;
    }

    /// Forget the threads that start before `at` (their text is settled or dropped).
    pub fn forget_before(&mut self, at: usize) {
        self.threads.retain(|t| t.0 >= at);
        self.stuck = self.stuck.filter(|&s| s >= at);
    }

    /// The first `n` bytes of the text were dropped: shift every offset.
    pub fn shift(&mut self, n: usize) {
        self.threads.retain(|t| t.0 >= n);
        for thread in &mut self.threads {
            thread.0 -= n;
        }
        self.stuck = self.stuck.and_then(|s| s.checked_sub(n));
        match &mut self.watch {
            Watch::Ended(at) | Watch::Alive(_, Some(at)) => *at = at.saturating_sub(n),
            Watch::None | Watch::Alive(_, None) | Watch::Stuck => {}
        }
        self.stepped -= n;
    }

    pub fn owners_alive_at(&mut self, matcher: &HoldMatcher, text: &str, start: usize) -> Vec<HoldOwner> {
        matcher.owners_alive_at(&mut self.cache, text, start)
    }
}
