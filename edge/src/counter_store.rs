//! Counters over a compare-and-swap store: how a platform without a single-threaded object per
//! subject (Spin: SQLite or Redis) still gives [`Host::counter`](crate::Host::counter) its
//! guarantees.
//!
//! Each subject's [`CounterState`] is one JSON value under one key. An operation loads it,
//! applies the op with the store's clock, and writes the result back **only if the key still
//! holds what was loaded** (one atomic statement: SQLite `UPDATE … WHERE state = ? RETURNING`,
//! a Redis `EVAL` script). If another request changed it in between, the swap fails and the op
//! is applied again to the new state. So the ops of one subject take effect one at a time, each
//! on the state the previous one left, and a reply means its state was written.
//!
//! Why not a lock or a transaction: Spin's SQLite gives every request of an application the same
//! connection, so `BEGIN` … `COMMIT` over several statements is not isolated between requests;
//! a Redis lock with an expiry stops excluding when its holder stalls past it; and Spin's Redis
//! `execute` drops `nil` and `OK` replies, so an aborted `MULTI`/`EXEC` cannot be told from a
//! committed one. A compare-and-swap needs none of that: each step is one atomic command.
//! Comparing whole values is enough: a state that changed and changed back gives the same reply
//! when the op is applied to it (the ABA case is harmless because `apply` is a pure function).

use policy::limits::{CounterOp, CounterReply, CounterState};

use crate::host::HostError;

/// How many times one op is applied before giving up on a contended subject. Every failed swap
/// means some other op of that subject succeeded, so this bounds waiting, not progress: a
/// subject with up to this many concurrent ops always completes each of them.
pub const MAX_ATTEMPTS: u32 = 64;

/// A key-value store with an atomic compare-and-swap, as the platform adapter binds it.
#[allow(async_fn_in_trait)] // used through generics on one thread, never as `dyn` or across threads
pub trait CompareAndSwapStore {
    /// The value under `key` (`None`: absent).
    async fn load(&self, key: &str) -> Result<Option<String>, HostError>;

    /// Replace the value under `key` with `new` (`None`: delete it) if and only if it still is
    /// `expected` (`None`: absent), atomically. `Ok(false)`: it was not, nothing was written.
    async fn swap(&self, key: &str, expected: Option<&str>, new: Option<&str>) -> Result<bool, HostError>;
}

/// Why an op could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterStoreError {
    /// The store could not answer.
    Store(HostError),
    /// The stored value is not a counter state (written by something else).
    Corrupt(String),
    /// Every attempt lost its swap to a concurrent op.
    Contended { attempts: u32 },
}

impl std::fmt::Display for CounterStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterStoreError::Store(e) => write!(f, "counter store: {}", e.0),
            CounterStoreError::Corrupt(e) => write!(f, "counter store holds an invalid state: {e}"),
            CounterStoreError::Contended { attempts } => {
                write!(f, "counter store: subject still contended after {attempts} attempts")
            }
        }
    }
}

impl From<CounterStoreError> for HostError {
    fn from(error: CounterStoreError) -> HostError {
        HostError(error.to_string())
    }
}

/// The store key of a subject's state. Distinct for every `(jurisdiction, subject)` pair: the
/// jurisdiction is length-prefixed, so no subject text can make two pairs collide, and no
/// jurisdiction is marked apart from every named one.
pub fn state_key(subject: &str, jurisdiction: Option<&str>) -> String {
    match jurisdiction {
        Some(j) => format!("gateway-counter:{}:{j}:{subject}", j.len()),
        None => format!("gateway-counter:-:{subject}"),
    }
}

/// Applies `op` to the state under `key` with compare-and-swap retries (module docs). `now_ms`
/// is read once per attempt: the time the op is applied at.
pub async fn apply<S: CompareAndSwapStore>(
    store: &S,
    key: &str,
    op: &CounterOp,
    now_ms: impl Fn() -> u64,
) -> Result<CounterReply, CounterStoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = store.load(key).await.map_err(CounterStoreError::Store)?;
        let mut state = match &stored {
            Some(json) => serde_json::from_str(json).map_err(|e| CounterStoreError::Corrupt(e.to_string()))?,
            None => CounterState::new(),
        };
        let reply = state.apply(op, now_ms());
        let new = if state.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&state).map_err(|e| CounterStoreError::Corrupt(e.to_string()))?)
        };
        if new == stored {
            return Ok(reply); // nothing changed (e.g. a status read): what was loaded is stored
        }
        if store.swap(key, stored.as_deref(), new.as_deref()).await.map_err(CounterStoreError::Store)? {
            return Ok(reply);
        }
    }
    Err(CounterStoreError::Contended { attempts: MAX_ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use futures::executor::block_on;
    use policy::limits::{Amounts, LimitSpec, Metric, Window};

    use super::*;

    /// An in-memory store that can interleave a concurrent writer between a load and a swap.
    #[derive(Default)]
    struct Memory {
        values: RefCell<HashMap<String, String>>,
        /// Ops applied by "another request" right after each of the next loads.
        interleave: RefCell<Vec<CounterOp>>,
        swaps: Cell<u32>,
        broken: Cell<bool>,
        /// Every swap loses (a writer that always gets in first).
        always_conflict: Cell<bool>,
    }

    impl CompareAndSwapStore for Memory {
        async fn load(&self, key: &str) -> Result<Option<String>, HostError> {
            if self.broken.get() {
                return Err(HostError("unreachable".into()));
            }
            let loaded = self.values.borrow().get(key).cloned();
            let next = { self.interleave.borrow_mut().pop() };
            if let Some(op) = next {
                let mut state: CounterState =
                    loaded.as_deref().map(|j| serde_json::from_str(j).unwrap()).unwrap_or_default();
                state.apply(&op, 0);
                self.values.borrow_mut().insert(key.to_string(), serde_json::to_string(&state).unwrap());
            }
            Ok(loaded)
        }

        async fn swap(&self, key: &str, expected: Option<&str>, new: Option<&str>) -> Result<bool, HostError> {
            self.swaps.set(self.swaps.get() + 1);
            if self.always_conflict.get() {
                return Ok(false);
            }
            let mut values = self.values.borrow_mut();
            if values.get(key).map(String::as_str) != expected {
                return Ok(false);
            }
            match new {
                Some(v) => values.insert(key.to_string(), v.to_string()),
                None => values.remove(key),
            };
            Ok(true)
        }
    }

    fn admit(id: &str) -> CounterOp {
        CounterOp::Admit {
            specs: vec![LimitSpec::new(Metric::Requests, Window::Minute, 2)],
            amounts: Amounts::of(Metric::Requests, 1),
            reservation_id: id.to_string(),
            ttl_ms: 60_000,
        }
    }

    fn admitted(reply: CounterReply) -> bool {
        match reply {
            CounterReply::Admitted(admission) => admission.allowed,
            other => panic!("expected an admission, got {other:?}"),
        }
    }

    #[test]
    fn ops_apply_to_the_stored_state_and_persist_it() {
        let store = Memory::default();
        let key = state_key("consumer:web", None);
        assert!(admitted(block_on(apply(&store, &key, &admit("a"), || 0)).unwrap()));
        assert!(admitted(block_on(apply(&store, &key, &admit("b"), || 0)).unwrap()));
        assert!(!admitted(block_on(apply(&store, &key, &admit("c"), || 0)).unwrap()), "a limit of 2 admits 2");
        let stored: CounterState = serde_json::from_str(&store.values.borrow()[&key]).unwrap();
        assert_eq!(stored.in_flight(), 2);
    }

    #[test]
    fn a_lost_swap_reapplies_the_op_to_the_concurrent_writers_state() {
        // Another request admits "x" between this op's load and its swap, twice: without the
        // compare-and-swap both would be admitted against a limit of 2 with one already in.
        let store = Memory::default();
        let key = state_key("s", None);
        block_on(apply(&store, &key, &admit("first"), || 0)).unwrap();
        *store.interleave.borrow_mut() = vec![admit("x")];
        assert!(!admitted(block_on(apply(&store, &key, &admit("mine"), || 0)).unwrap()));
        assert_eq!(store.swaps.get(), 2, "one lost swap, then one no-op refusal needs no write");
        let stored: CounterState = serde_json::from_str(&store.values.borrow()[&key]).unwrap();
        assert_eq!(stored.in_flight(), 2, "first and x, not mine");
    }

    #[test]
    fn an_emptied_state_is_deleted_and_reads_write_nothing() {
        let store = Memory::default();
        let key = state_key("s", Some("eu"));
        block_on(apply(&store, &key, &admit("a"), || 0)).unwrap();
        let swaps = store.swaps.get();
        block_on(apply(&store, &key, &CounterOp::Status, || 0)).unwrap();
        assert_eq!(store.swaps.get(), swaps, "a status read writes nothing");
        let release = CounterOp::Release { reservation_id: "a".into() };
        block_on(apply(&store, &key, &release, || 0)).unwrap();
        let forget = CounterOp::Expire;
        block_on(apply(&store, &key, &forget, || 10 * 24 * 3_600_000)).unwrap();
        assert!(store.values.borrow().is_empty(), "an empty state is deleted, not stored");
    }

    #[test]
    fn endless_contention_and_store_failures_are_errors() {
        let store = Memory::default();
        let key = state_key("s", None);
        store.always_conflict.set(true);
        let err = block_on(apply(&store, &key, &admit("mine"), || 0)).unwrap_err();
        assert_eq!(err, CounterStoreError::Contended { attempts: MAX_ATTEMPTS });
        assert_eq!(store.swaps.get(), MAX_ATTEMPTS);
        store.always_conflict.set(false);
        store.broken.set(true);
        let err = block_on(apply(&store, &key, &admit("a"), || 0)).unwrap_err();
        assert_eq!(err, CounterStoreError::Store(HostError("unreachable".into())));
        assert!(HostError::from(err).0.contains("unreachable"));
    }

    #[test]
    fn corrupt_state_is_reported_not_overwritten() {
        let store = Memory::default();
        let key = state_key("s", None);
        store.values.borrow_mut().insert(key.clone(), "not json".into());
        let err = block_on(apply(&store, &key, &admit("a"), || 0)).unwrap_err();
        assert!(matches!(err, CounterStoreError::Corrupt(_)));
        assert_eq!(store.values.borrow()[&key], "not json");
    }

    #[test]
    fn keys_keep_jurisdictions_and_subjects_apart() {
        let keys = [
            state_key("a:b", None),
            state_key("b", Some("a")),
            state_key("a:b", Some("")),
            state_key("x", Some("eu")),
            state_key("x", Some("fedramp")),
            state_key("x", None),
            state_key("2:eu:x", None),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
    }
}
