//! The routing carbon table as this isolate last read it from the key-value store (the values
//! a scheduled refresh stored, see [`crate::carbon`]).

use std::cell::RefCell;
use std::rc::Rc;

use policy::route::CarbonTable;

use crate::carbon::{CarbonData, LiveIntensities, RefreshError, RefreshReport, LIVE_KEY, RECHECK_MS};
use crate::config::Config;
use crate::host::Host;

/// The live values read and when they were read.
struct Checked {
    checked_at_ms: u64,
    live: Option<LiveIntensities>,
}

/// Live carbon intensities of one isolate, re-read every [`RECHECK_MS`].
#[derive(Default)]
pub struct CarbonCache {
    slot: RefCell<Option<Checked>>,
}

impl CarbonCache {
    /// The carbon table to route with: live values from KV when a feed is configured and they
    /// are fresh, else the shipped annual table (`None`), and which of the two it is.
    pub async fn table<H: Host>(&self, config: &Config, host: &H) -> (Option<Rc<CarbonTable>>, CarbonData) {
        let Some(feed) = &config.carbon_feed else { return (None, CarbonData::Annual) };
        let now = host.now_ms();
        let due = self.slot.borrow().as_ref().is_none_or(|c| now.saturating_sub(c.checked_at_ms) >= RECHECK_MS);
        if due {
            // A store error keeps what this isolate had (or nothing: annual values, flagged stale).
            let read = host.kv_get(LIVE_KEY).await;
            let mut slot = self.slot.borrow_mut();
            let previous = slot.take().and_then(|c| c.live);
            let live = match read {
                Ok(text) => text.and_then(|t| serde_json::from_str(&t).ok()),
                Err(_) => previous,
            };
            *slot = Some(Checked { checked_at_ms: now, live });
        }
        let slot = self.slot.borrow();
        crate::carbon::table_from(Some(feed), slot.as_ref().and_then(|c| c.live.as_ref()), now)
    }

    /// Fetch live intensities now (the cron trigger, `POST /admin/carbon/refresh`) and store
    /// them; this isolate re-reads them on its next routed request.
    pub async fn refresh<H: Host>(&self, config: &Config, host: &H) -> Result<RefreshReport, RefreshError> {
        let feed = config.carbon_feed.as_ref().ok_or(RefreshError::NotConfigured)?;
        let outcome = crate::carbon::refresh(feed, host).await;
        self.slot.replace(None);
        outcome
    }
}
