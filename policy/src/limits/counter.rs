//! The counters of one subject and the reserve / settle / release arithmetic over them.
//!
//! # Reserve, then reconcile
//!
//! Before the call the pipeline [`admits`](CounterState::admit) the request with *estimated*
//! [`Amounts`] (one request, estimated input tokens, the full output reservation, the estimated
//! cost). Admission counts settled usage **plus every in-flight reservation** against each limit,
//! and reserves against all of them or none. After the call, [`settle`](CounterState::settle)
//! replaces the estimate by the provider's reported usage (which may be larger: it is recorded in
//! full, never clipped; nothing ever goes negative). A failed call
//! [`releases`](CounterState::release) its reservation. A reservation that is neither settled nor
//! released within its TTL (the worker crashed, the isolate was evicted) expires, so it cannot
//! hold capacity forever.
//!
//! # The invariant
//!
//! Within one window, `used + reserved <= limit + overshoot`, where `overshoot` is what
//! settlements added beyond their own estimates in that window. Admission is the only way
//! `reserved` grows and it checks `used + reserved + amount <= limit`, so under any number of
//! concurrent requests, admitted usage exceeds the limit by at most what in-flight requests end up
//! using beyond what they reserved. This needs the operations of one subject to run one at a time:
//! a Durable Object gives that (single-threaded, one per subject); the in-memory host holds a lock.
//!
//! # Windows and in-flight calls
//!
//! At a window boundary settled usage drops to zero but in-flight reservations **carry over**: a
//! call admitted at 12:00:59 that is still streaming at 12:01:00 keeps its capacity reserved in
//! the new window, and its real usage is charged to the window in which it is settled. Nothing is
//! lost at a boundary (money spent across midnight is charged, on the day it completed) and the
//! invariant above holds in every window.
//!
//! # Idempotency
//!
//! Every operation names a reservation id (the request id). Admitting an id that is already in
//! flight returns "allowed" without reserving twice; settling or releasing an unknown id changes
//! nothing. So a store call retried after a lost reply never double-counts. A reservation that
//! expired is kept as a tombstone for one more TTL, so a very slow call that settles late is
//! still charged, to the counters it reserved against.

use std::collections::BTreeMap;
use std::slice;

use serde::{Deserialize, Serialize};

use super::money::{Nanos, TokenUsage};
use super::window::Window;

/// How long a reservation may stay in flight before it expires: 10 minutes. It must exceed the
/// longest call the gateway lets run (long reasoning streams take minutes); the pipeline should
/// pass its upstream timeout plus a margin. A crashed request holds its capacity at most this long.
pub const DEFAULT_RESERVATION_TTL_MS: u64 = 10 * 60 * 1000;

/// When a request is denied only because of calls still in flight (settled usage alone would
/// admit it), clients are told to retry after at most this long: reservations settle within
/// seconds, well before a long window resets.
pub const IN_FLIGHT_RETRY_MS: u64 = 1000;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Requests,
    /// Prompt tokens, cached ones included.
    InputTokens,
    /// Completion tokens, reasoning included.
    OutputTokens,
    TotalTokens,
    /// Money in [`Nanos`]: a budget.
    Cost,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::TotalTokens => "total_tokens",
            Metric::Cost => "cost",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        [Metric::Requests, Metric::InputTokens, Metric::OutputTokens, Metric::TotalTokens, Metric::Cost].into_iter().find(|m| m.name() == name)
    }

    pub fn is_tokens(self) -> bool {
        matches!(self, Metric::InputTokens | Metric::OutputTokens | Metric::TotalTokens)
    }
}

/// One request's amounts, estimated (admission) or actual (settlement), for every metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cost: Nanos,
}

impl Amounts {
    /// The estimate for one request: `input_tokens` from tiktoken or the fallback, `output_tokens`
    /// from [`output_reservation`](super::output_reservation), the cost from the price table.
    pub fn estimate(input_tokens: u64, output_tokens: u64, cost: Nanos) -> Amounts {
        Amounts { requests: 1, input_tokens, output_tokens, total_tokens: input_tokens.saturating_add(output_tokens), cost }
    }

    /// The actual amounts of one finished request. The total is the provider's `total_tokens`, or
    /// input + output when it reported none.
    pub fn from_usage(usage: &TokenUsage, cost: Nanos) -> Amounts {
        let sum = usage.input_tokens.saturating_add(usage.output_tokens);
        Amounts {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: if usage.total_tokens == 0 { sum } else { usage.total_tokens },
            cost,
        }
    }

    /// Only `amount` of one metric, zero for the others.
    pub fn of(metric: Metric, amount: u64) -> Amounts {
        let mut a = Amounts::default();
        match metric {
            Metric::Requests => a.requests = amount,
            Metric::InputTokens => a.input_tokens = amount,
            Metric::OutputTokens => a.output_tokens = amount,
            Metric::TotalTokens => a.total_tokens = amount,
            Metric::Cost => a.cost = Nanos(amount),
        }
        a
    }

    pub fn get(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::InputTokens => self.input_tokens,
            Metric::OutputTokens => self.output_tokens,
            Metric::TotalTokens => self.total_tokens,
            Metric::Cost => self.cost.0,
        }
    }
}

/// Which counter of a subject: one per (metric, window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CounterKey {
    pub metric: Metric,
    pub window: Window,
}

fn yes() -> bool {
    true
}

/// One configured limit of a subject. A budget is a limit on [`Metric::Cost`] in nanos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    pub metric: Metric,
    pub window: Window,
    pub limit: u64,
    /// Alert thresholds in percent of `limit` (e.g. `[50, 80, 100]`): each fires once per window
    /// when settled usage reaches it, reported by [`CounterState::settle`] for the webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<u16>,
    /// `true` (the default): a request that would exceed the limit is denied (for a budget: the
    /// hard stop at 100%). `false`: usage is counted and alerts fire, nothing is denied.
    #[serde(default = "yes")]
    pub enforce: bool,
}

impl LimitSpec {
    pub fn new(metric: Metric, window: Window, limit: u64) -> LimitSpec {
        LimitSpec { metric, window, limit, alerts: Vec::new(), enforce: true }
    }

    /// A money budget with a hard stop.
    pub fn budget(window: Window, limit: Nanos) -> LimitSpec {
        LimitSpec::new(Metric::Cost, window, limit.0)
    }

    pub fn with_alerts(mut self, percents: impl IntoIterator<Item = u16>) -> LimitSpec {
        self.alerts = percents.into_iter().collect();
        self.alerts.sort_unstable();
        self.alerts.dedup();
        self
    }

    /// Count and alert only, never deny.
    pub fn soft(mut self) -> LimitSpec {
        self.enforce = false;
        self
    }

    pub fn key(&self) -> CounterKey {
        CounterKey { metric: self.metric, window: self.window }
    }
}

/// Where one limit stands, for headers and the usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStatus {
    pub metric: Metric,
    pub window: Window,
    pub limit: u64,
    /// Settled usage in the current window.
    pub used: u64,
    /// In-flight reservations (this request's included once it is admitted).
    pub reserved: u64,
    /// `limit - used - reserved`, never below zero.
    pub remaining: u64,
    /// When the current window ends and settled usage drops to zero.
    pub reset_at_ms: u64,
    pub enforced: bool,
    /// This request did not fit this limit (only ever true for an enforced limit).
    pub exceeded: bool,
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// Reserved against every limit (or a replay of an id already in flight). When `false`
    /// nothing was reserved anywhere.
    pub allowed: bool,
    /// Denied because the request alone is larger than an enforced limit: retrying cannot help
    /// (answer 429 without `Retry-After`, or 400, saying the request is too large).
    pub too_large: bool,
    /// When denied and a retry can help: how long to wait (for `Retry-After`). At least 1 ms.
    pub retry_after_ms: Option<u64>,
    /// One entry per limit checked, after this request's reservation when allowed.
    pub limits: Vec<LimitStatus>,
}

impl Admission {
    /// The limit closest to denying: an exceeded one first, else the enforced limit with the
    /// least remaining (the single-limit view: `remaining`, `limit`, `reset_at_ms`).
    pub fn binding(&self) -> Option<&LimitStatus> {
        self.limits.iter().filter(|s| s.enforced).min_by_key(|s| (!s.exceeded, s.remaining, u64::MAX - s.reset_at_ms))
    }
}

/// A threshold crossed by a settlement: send the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub metric: Metric,
    pub window: Window,
    pub percent: u16,
    pub used: u64,
    pub limit: u64,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
}

/// The outcome of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The reservation was found (in flight or expired). `false`: nothing was changed (an
    /// unknown, already settled or released id).
    pub known: bool,
    /// Thresholds newly crossed, each reported once per window.
    pub alerts: Vec<Alert>,
    /// The counters the settlement touched, afterwards.
    pub limits: Vec<LimitStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Counter {
    metric: Metric,
    window: Window,
    limit: u64,
    enforce: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    alerts: Vec<u16>,
    window_start_ms: u64,
    used: u64,
    reserved: u64,
    /// Alert thresholds already reported in this window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fired: Vec<u16>,
}

impl Counter {
    fn key(&self) -> CounterKey {
        CounterKey { metric: self.metric, window: self.window }
    }

    fn end_ms(&self) -> u64 {
        self.window.end_ms(self.window_start_ms)
    }

    /// Start a new window if `now_ms` is past this one. In-flight reservations carry over.
    fn roll(&mut self, now_ms: u64) {
        if now_ms >= self.end_ms() {
            self.window_start_ms = self.window.start_ms(now_ms);
            self.used = 0;
            self.fired.clear();
        }
    }

    fn status(&self, exceeded: bool) -> LimitStatus {
        LimitStatus {
            metric: self.metric,
            window: self.window,
            limit: self.limit,
            used: self.used,
            reserved: self.reserved,
            remaining: self.limit.saturating_sub(self.used.saturating_add(self.reserved)),
            reset_at_ms: self.end_ms(),
            enforced: self.enforce,
            exceeded,
        }
    }

    fn newly_crossed(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        for &percent in &self.alerts {
            let crossed = self.used > 0 && u128::from(self.used) * 100 >= u128::from(self.limit) * u128::from(percent);
            if crossed && !self.fired.contains(&percent) {
                self.fired.push(percent);
                out.push(Alert {
                    metric: self.metric,
                    window: self.window,
                    percent,
                    used: self.used,
                    limit: self.limit,
                    window_start_ms: self.window_start_ms,
                    window_end_ms: self.end_ms(),
                });
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    metric: Metric,
    window: Window,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    /// When it expires (in flight) or when its tombstone is dropped (expired).
    deadline_ms: u64,
    ttl_ms: u64,
    holds: Vec<Hold>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    expired: bool,
}

/// Everything one subject's counter object stores: its counters (one per metric and window) and
/// its in-flight reservations. Small (as JSON about 140 bytes per limit plus, per call in flight,
/// the id and about 70 bytes per limit it holds) and serde-serialisable: a Durable Object keeps it under one storage key, loads it,
/// applies one operation with its own clock, and writes it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterState {
    #[serde(default)]
    counters: Vec<Counter>,
    #[serde(default)]
    reservations: BTreeMap<String, Reservation>,
}

/// A checked but not yet committed admission (see [`admit_all`]).
struct Prepared {
    replay: bool,
    allowed: bool,
    too_large: bool,
    retry_after_ms: Option<u64>,
    /// One merged spec per counter key, with this request's amount and whether it exceeded.
    checks: Vec<(CounterKey, u64, bool)>,
}

impl CounterState {
    pub fn new() -> CounterState {
        CounterState::default()
    }

    /// Admit one request against `specs` with `amounts`, all or nothing, and remember the
    /// reservation under `reservation_id` for `ttl_ms` (see [`DEFAULT_RESERVATION_TTL_MS`]).
    pub fn admit(&mut self, specs: &[LimitSpec], amounts: &Amounts, now_ms: u64, reservation_id: &str, ttl_ms: u64) -> Admission {
        let prepared = self.prepare(specs, amounts, now_ms, reservation_id);
        if prepared.allowed && !prepared.replay {
            self.commit(&prepared, now_ms, reservation_id, ttl_ms);
        }
        self.decision(&prepared)
    }

    /// [`admit`](CounterState::admit) against a single limit with the amount of its metric.
    pub fn reserve(&mut self, spec: &LimitSpec, amount: u64, now_ms: u64, reservation_id: &str, ttl_ms: u64) -> Admission {
        self.admit(slice::from_ref(spec), &Amounts::of(spec.metric, amount), now_ms, reservation_id, ttl_ms)
    }

    /// Replace a reservation's estimate by the actual amounts: free the reserved estimate, add the
    /// actual usage (in full, even beyond the estimate or the limit) to the counters it reserved
    /// against, in their current window, and report newly crossed alert thresholds.
    pub fn settle(&mut self, reservation_id: &str, actual: &Amounts, now_ms: u64) -> Settlement {
        self.normalise(now_ms);
        let Some(reservation) = self.reservations.remove(reservation_id) else {
            return Settlement { known: false, alerts: Vec::new(), limits: Vec::new() };
        };
        let mut alerts = Vec::new();
        let mut limits = Vec::new();
        for hold in &reservation.holds {
            let Some(counter) = self.counter_mut(CounterKey { metric: hold.metric, window: hold.window }) else { continue };
            if !reservation.expired {
                counter.reserved = counter.reserved.saturating_sub(hold.amount);
            }
            counter.used = counter.used.saturating_add(actual.get(hold.metric));
            alerts.extend(counter.newly_crossed());
            limits.push(counter.status(false));
        }
        Settlement { known: true, alerts, limits }
    }

    /// Give back a reservation's capacity without charging anything (the upstream call failed
    /// before using the model). Returns whether the id was known.
    pub fn release(&mut self, reservation_id: &str, now_ms: u64) -> bool {
        self.normalise(now_ms);
        match self.reservations.remove(reservation_id) {
            Some(reservation) => {
                if !reservation.expired {
                    self.unhold(&reservation.holds);
                }
                true
            }
            None => false,
        }
    }

    /// Drop reservations whose TTL has passed (returning their capacity), roll counters into the
    /// current window, and forget idle counters. Every operation does this first; a Durable Object
    /// alarm at [`next_deadline_ms`](CounterState::next_deadline_ms) may call it too. Returns how
    /// many reservations expired.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.normalise(now_ms)
    }

    /// Where every counter stands, without changing anything (for headers outside admission).
    pub fn status(&self, now_ms: u64) -> Vec<LimitStatus> {
        let mut copy = self.clone();
        copy.normalise(now_ms);
        copy.counters.iter().map(|c| c.status(false)).collect()
    }

    /// The earliest reservation deadline (expiry or tombstone drop): when a Durable Object alarm
    /// should run [`expire`](CounterState::expire).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.reservations.values().map(|r| r.deadline_ms).min()
    }

    /// Calls in flight (not settled, released or expired).
    pub fn in_flight(&self) -> usize {
        self.reservations.values().filter(|r| !r.expired).count()
    }

    /// Nothing worth storing: no usage in the current windows and nothing in flight. A Durable
    /// Object may delete its storage.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.reservations.is_empty()
    }

    fn counter_mut(&mut self, key: CounterKey) -> Option<&mut Counter> {
        self.counters.iter_mut().find(|c| c.key() == key)
    }

    fn unhold(&mut self, holds: &[Hold]) {
        for hold in holds {
            if let Some(counter) = self.counter_mut(CounterKey { metric: hold.metric, window: hold.window }) {
                counter.reserved = counter.reserved.saturating_sub(hold.amount);
            }
        }
    }

    fn normalise(&mut self, now_ms: u64) -> usize {
        let mut expired_now = Vec::new();
        let mut drop = Vec::new();
        for (id, r) in self.reservations.iter_mut() {
            if !r.expired && now_ms >= r.deadline_ms {
                r.expired = true;
                r.deadline_ms = r.deadline_ms.saturating_add(r.ttl_ms);
                expired_now.push(r.holds.clone());
            }
            if r.expired && now_ms >= r.deadline_ms {
                drop.push(id.clone());
            }
        }
        for id in drop {
            self.reservations.remove(&id);
        }
        for holds in &expired_now {
            self.unhold(holds);
        }
        for counter in &mut self.counters {
            counter.roll(now_ms);
        }
        let reservations = &self.reservations;
        self.counters.retain(|c| {
            c.used > 0 || c.reserved > 0 || reservations.values().any(|r| r.holds.iter().any(|h| h.metric == c.metric && h.window == c.window))
        });
        expired_now.len()
    }

    /// Normalise, bring the counters up to date with `specs`, and check the request against them.
    fn prepare(&mut self, specs: &[LimitSpec], amounts: &Amounts, now_ms: u64, reservation_id: &str) -> Prepared {
        self.normalise(now_ms);
        let replay = self.reservations.get(reservation_id).is_some_and(|r| !r.expired);
        if !replay {
            // An expired tombstone under a reused id is forgotten; the id starts afresh.
            self.reservations.remove(reservation_id);
        }
        // Merge specs naming the same counter: the smallest limit, enforced if any is, all alerts.
        let mut merged: Vec<LimitSpec> = Vec::new();
        for spec in specs {
            match merged.iter_mut().find(|m| m.key() == spec.key()) {
                Some(m) => {
                    m.limit = m.limit.min(spec.limit);
                    m.enforce |= spec.enforce;
                    m.alerts.extend(&spec.alerts);
                }
                None => merged.push(spec.clone()),
            }
        }
        let mut prepared = Prepared { replay, allowed: true, too_large: false, retry_after_ms: None, checks: Vec::new() };
        for spec in &merged {
            let mut alerts = spec.alerts.clone();
            alerts.sort_unstable();
            alerts.dedup();
            let counter = match self.counters.iter().position(|c| c.key() == spec.key()) {
                Some(i) => &mut self.counters[i],
                None => {
                    self.counters.push(Counter {
                        metric: spec.metric,
                        window: spec.window,
                        limit: spec.limit,
                        enforce: spec.enforce,
                        alerts: Vec::new(),
                        window_start_ms: spec.window.start_ms(now_ms),
                        used: 0,
                        reserved: 0,
                        fired: Vec::new(),
                    });
                    self.counters.last_mut().expect("just pushed")
                }
            };
            // The configuration is the truth for limits and thresholds; counts stay.
            counter.limit = spec.limit;
            counter.enforce = spec.enforce;
            counter.alerts = alerts;
            let amount = amounts.get(spec.metric);
            let fits = counter.used.saturating_add(counter.reserved).saturating_add(amount) <= counter.limit;
            let exceeded = spec.enforce && !fits && !replay;
            if exceeded {
                prepared.allowed = false;
                if amount > counter.limit {
                    prepared.too_large = true;
                } else {
                    let to_reset = counter.end_ms().saturating_sub(now_ms);
                    let settled_alone_fits = counter.used.saturating_add(amount) <= counter.limit;
                    let wait = if settled_alone_fits { to_reset.min(IN_FLIGHT_RETRY_MS) } else { to_reset }.max(1);
                    prepared.retry_after_ms = Some(prepared.retry_after_ms.map_or(wait, |w| w.max(wait)));
                }
            }
            prepared.checks.push((spec.key(), amount, exceeded));
        }
        if prepared.too_large {
            prepared.retry_after_ms = None;
        }
        prepared
    }

    fn commit(&mut self, prepared: &Prepared, now_ms: u64, reservation_id: &str, ttl_ms: u64) {
        let mut holds = Vec::with_capacity(prepared.checks.len());
        for &(key, amount, _) in &prepared.checks {
            if let Some(counter) = self.counter_mut(key) {
                counter.reserved = counter.reserved.saturating_add(amount);
            }
            holds.push(Hold { metric: key.metric, window: key.window, amount });
        }
        let ttl_ms = ttl_ms.max(1);
        self.reservations.insert(reservation_id.to_string(), Reservation { deadline_ms: now_ms.saturating_add(ttl_ms), ttl_ms, holds, expired: false });
    }

    fn decision(&self, prepared: &Prepared) -> Admission {
        let limits = prepared
            .checks
            .iter()
            .filter_map(|&(key, _, exceeded)| self.counters.iter().find(|c| c.key() == key).map(|c| c.status(exceeded)))
            .collect();
        Admission { allowed: prepared.allowed, too_large: prepared.too_large, retry_after_ms: prepared.retry_after_ms, limits }
    }
}

/// Admit one request against several subjects' states at once, all or nothing: every state is
/// checked first and reservations are made only if all of them allow. For the in-memory host,
/// which holds the locks of all the subjects a request touches (in subject-key order, so two
/// requests cannot deadlock).
///
/// Durable Objects cannot be locked together; there the pipeline calls
/// [`CounterState::admit`] on each subject's object in subject-key order and, at the first denial,
/// [`releases`](CounterState::release) the same reservation id in the objects that already
/// admitted. The invariant still holds: a reservation that is briefly held and then released only
/// ever made other requests' admission stricter.
pub fn admit_all(parts: &mut [(&mut CounterState, &[LimitSpec])], amounts: &Amounts, now_ms: u64, reservation_id: &str, ttl_ms: u64) -> Admission {
    let prepared: Vec<Prepared> = parts.iter_mut().map(|(state, specs)| state.prepare(specs, amounts, now_ms, reservation_id)).collect();
    let allowed = prepared.iter().all(|p| p.allowed);
    let too_large = prepared.iter().any(|p| p.too_large);
    let mut admission = Admission {
        allowed,
        too_large,
        retry_after_ms: if allowed || too_large { None } else { prepared.iter().filter_map(|p| p.retry_after_ms).max() },
        limits: Vec::new(),
    };
    for ((state, _), p) in parts.iter_mut().zip(&prepared) {
        if allowed && !p.replay {
            state.commit(p, now_ms, reservation_id, ttl_ms);
        }
        admission.limits.extend(state.decision(p).limits);
    }
    admission
}

/// One operation on a subject's counters, as a Durable Object (or the in-memory store) receives
/// it. Time is not part of the message: the object applies it with its own clock, so one subject
/// has one clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CounterOp {
    Admit { specs: Vec<LimitSpec>, amounts: Amounts, reservation_id: String, ttl_ms: u64 },
    Settle { reservation_id: String, actual: Amounts },
    Release { reservation_id: String },
    Status,
    /// Housekeeping (a Durable Object alarm).
    Expire,
}

/// The answer to a [`CounterOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum CounterReply {
    Admitted(Admission),
    Settled(Settlement),
    Released { known: bool },
    Status { limits: Vec<LimitStatus> },
    Expired { count: usize, next_deadline_ms: Option<u64> },
}

impl CounterState {
    /// Apply one operation at `now_ms`. After it, the store writes the state back (or deletes it
    /// when [`is_empty`](CounterState::is_empty)) and, on Workers, sets an alarm at
    /// [`next_deadline_ms`](CounterState::next_deadline_ms).
    pub fn apply(&mut self, op: &CounterOp, now_ms: u64) -> CounterReply {
        match op {
            CounterOp::Admit { specs, amounts, reservation_id, ttl_ms } => CounterReply::Admitted(self.admit(specs, amounts, now_ms, reservation_id, *ttl_ms)),
            CounterOp::Settle { reservation_id, actual } => CounterReply::Settled(self.settle(reservation_id, actual, now_ms)),
            CounterOp::Release { reservation_id } => CounterReply::Released { known: self.release(reservation_id, now_ms) },
            CounterOp::Status => CounterReply::Status { limits: self.status(now_ms) },
            CounterOp::Expire => {
                let count = self.expire(now_ms);
                CounterReply::Expired { count, next_deadline_ms: self.next_deadline_ms() }
            }
        }
    }
}
