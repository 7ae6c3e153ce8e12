//! Observed health and latency of routing targets: this isolate's view, shared with the others
//! through the host's key-value store.

use std::cell::{Cell, Ref, RefCell, RefMut};

use policy::route::HealthView;

use crate::host::Host;

/// The key-value key of the route health shared between isolates and locations.
pub const HEALTH_KV_KEY: &str = "route:health";

/// How often an isolate re-reads, and at most writes, the shared route health. Workers KV takes
/// about one write per second per key, so writes are spaced and may still be refused when many
/// isolates are busy; that only delays sharing.
const HEALTH_SYNC_MS: u64 = 30_000;

/// This isolate's route health and when it last read and wrote the shared copy.
#[derive(Default)]
pub struct SharedHealth {
    view: RefCell<HealthView>,
    /// (last read, last write) of the shared copy.
    sync: Cell<(Option<u64>, u64)>,
}

impl SharedHealth {
    pub fn view(&self) -> Ref<'_, HealthView> {
        self.view.borrow()
    }

    pub fn view_mut(&self) -> RefMut<'_, HealthView> {
        self.view.borrow_mut()
    }

    /// Adopt what other isolates observed (latency averages, open circuits) for targets this
    /// isolate has no observation of yet; re-read every [`HEALTH_SYNC_MS`].
    pub async fn load_shared<H: Host>(&self, host: &H, now: u64) {
        let (read_at, written_at) = self.sync.get();
        if read_at.is_some_and(|at| now.saturating_sub(at) < HEALTH_SYNC_MS) {
            return;
        }
        self.sync.set((Some(now), written_at));
        let Ok(Some(text)) = host.kv_get(HEALTH_KV_KEY).await else { return };
        let Ok(shared) = serde_json::from_str::<HealthView>(&text) else { return };
        let mut health = self.view.borrow_mut();
        for (id, state) in shared.targets {
            health.targets.entry(id).or_insert(state);
        }
    }

    /// Write this isolate's view to the host's store in the background, at most every
    /// [`HEALTH_SYNC_MS`]: the next isolate (or location) starts from observed latencies.
    pub fn share<H: Host>(&self, host: &H) {
        let now = host.now_ms();
        let (read_at, written_at) = self.sync.get();
        if written_at != 0 && now.saturating_sub(written_at) < HEALTH_SYNC_MS {
            return;
        }
        self.sync.set((read_at, now));
        let Ok(text) = serde_json::to_string(&*self.view.borrow()) else { return };
        let store = host.clone();
        host.wait_until(async move {
            let _ = store.kv_put(HEALTH_KV_KEY, &text).await; // best effort: sharing is an optimisation
        });
    }
}
