//! Per-isolate state: what one isolate (a Worker isolate, a Spin instance) keeps between
//! requests, and the rules by which each piece is refreshed.
//!
//! | piece | refreshed | on failure |
//! |---|---|---|
//! | configuration ([`config`]) | re-read from KV after `limits.config_refresh_ms`; parsed only when its text changed | the last good configuration keeps serving; none: 503 |
//! | guard detectors | compiled on the first request that needs them, again only when the configuration needs other detectors | - |
//! | JWKS keys ([`jwks`]) | after `jwks_refresh_ms`; an unknown `kid` refetches at most once a minute; a cold isolate adopts the set another isolate stored in KV | the previous keys are kept |
//! | route health ([`health`]) | this isolate's observations, merged with the shared view from KV every 30 s and written back at most as often | sharing is best effort |
//! | live carbon intensities ([`carbon`]) | re-read from KV every minute when a feed is configured | the previous values; stale ones are never used |
//! | response cache flights ([`flights`]) | one per cache key while its leading request is upstream | waiters go upstream themselves |
//!
//! Nothing here is shared between isolates except through the host's key-value store, and no
//! piece is required for correctness: an isolate evicted at any time restarts from the store.

pub mod carbon;
pub mod config;
pub mod flights;
pub mod health;
pub mod jwks;

use std::cell::RefCell;
use std::rc::Rc;

use policy::guard::{GuardNeeds, Guards};

use crate::config::Config;

/// Everything one isolate keeps between requests. Owned by [`crate::Gateway`].
#[derive(Default)]
pub struct IsolateState {
    pub config: config::ConfigCache,
    /// The guardrail detectors the configuration uses, with the needs they were compiled for.
    guards: RefCell<Option<(GuardNeeds, Rc<Guards>)>>,
    pub jwks: jwks::JwksCache,
    pub health: health::SharedHealth,
    pub carbon: carbon::CarbonCache,
    /// The response cache's misses in progress (single flight).
    pub cache_flights: flights::Flights,
}

impl IsolateState {
    /// The compiled detectors for this configuration's guard profiles, reused while the
    /// detectors needed stay the same (compiling costs tens of milliseconds in wasm).
    pub fn guards_for(&self, config: &Config) -> Rc<Guards> {
        let needs = Guards::needs(config.guards.values().map(|g| &g.policy));
        let mut slot = self.guards.borrow_mut();
        if let Some((cached_for, guards)) = slot.as_ref() {
            if *cached_for == needs {
                return guards.clone();
            }
        }
        let guards = Rc::new(Guards::for_needs(&needs));
        *slot = Some((needs, guards.clone()));
        guards
    }
}
