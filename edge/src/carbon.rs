//! Live grid carbon intensity: refreshed on a schedule into the key-value store, read by routing.
//!
//! The shipped table (`policy/data/carbon-intensity.json`) holds sourced annual averages. A
//! deployment can add live values from Electricity Maps' API
//! (`GET {base_url}/carbon-intensity/latest?zone=DE`, header `auth-token`, answer
//! `{"zone":"DE","carbonIntensity":302,"datetime":...}`): a Workers cron trigger (or a call to
//! `POST /admin/carbon/refresh` from any scheduler) fetches one value per configured region and
//! writes them under [`LIVE_KEY`]. Requests read that document at most once a minute per isolate.
//! Values older than the feed's `max_age_ms` are not used: routing falls back to the annual table
//! and the usage event says `carbon_data: "stale"`, so a dead feed is visible, never silent.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::config::CarbonFeed;
use crate::host::{Host, OutboundRequest};
use policy::route::CarbonTable;

/// The key-value key of the live values document.
pub const LIVE_KEY: &str = "carbon:live";

/// How often a request re-reads [`LIVE_KEY`] (per isolate).
pub const RECHECK_MS: u64 = 60_000;

/// Time allowed for each zone's answer during a refresh.
const FETCH_TIMEOUT_MS: u64 = 10_000;

/// The document stored under [`LIVE_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveIntensities {
    pub fetched_at_ms: u64,
    /// Region -> gCO2e/kWh.
    pub values: BTreeMap<String, f64>,
}

/// Where the carbon figures of a routed request came from (recorded in the usage event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarbonData {
    /// No live feed configured: the shipped annual averages.
    Annual,
    /// Live values younger than the feed's `max_age_ms` (annual ones for regions without).
    Live,
    /// A feed is configured but its values are missing or too old: annual averages used.
    Stale,
}

impl CarbonData {
    pub fn label(self) -> &'static str {
        match self {
            CarbonData::Annual => "annual",
            CarbonData::Live => "live",
            CarbonData::Stale => "stale",
        }
    }
}

/// Why a refresh stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The configuration has no `carbon_feed`.
    NotConfigured,
    /// The feed's token secret is not set.
    MissingSecret { name: String },
    /// No zone answered with a usable value; the previous values were kept.
    NoValues { failed: Vec<(String, String)> },
    /// The key-value store refused the write.
    Store,
}

/// What a refresh did: regions updated, and regions that failed with a short reason (a status
/// code or an error label, never the token or the feed's body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshReport {
    pub fetched_at_ms: u64,
    pub updated: BTreeMap<String, f64>,
    pub failed: Vec<(String, String)>,
}

/// Fetch every configured zone and store the values that came back.
pub async fn refresh<H: Host>(feed: &CarbonFeed, host: &H) -> Result<RefreshReport, RefreshError> {
    let token = host
        .secret(&feed.token_secret)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RefreshError::MissingSecret { name: feed.token_secret.clone() })?;
    let mut updated = BTreeMap::new();
    let mut failed = Vec::new();
    for (region, zone) in &feed.zones {
        match fetch_zone(feed, zone, &token, host).await {
            Ok(value) => {
                updated.insert(region.clone(), value);
            }
            Err(reason) => failed.push((region.clone(), reason)),
        }
    }
    if updated.is_empty() {
        return Err(RefreshError::NoValues { failed });
    }
    let fetched_at_ms = host.now_ms();
    let document = LiveIntensities { fetched_at_ms, values: updated.clone() };
    let text = serde_json::to_string(&document).map_err(|_| RefreshError::Store)?;
    host.kv_put(LIVE_KEY, &text).await.map_err(|_| RefreshError::Store)?;
    Ok(RefreshReport { fetched_at_ms, updated, failed })
}

async fn fetch_zone<H: Host>(feed: &CarbonFeed, zone: &str, token: &str, host: &H) -> Result<f64, String> {
    let request = OutboundRequest {
        method: "GET",
        url: format!("{}/carbon-intensity/latest?zone={}", feed.base_url, query_escape(zone)),
        headers: vec![("auth-token".into(), token.to_string()), ("accept".into(), "application/json".into())],
        body: Vec::new(),
    };
    let call = async {
        let response = host.fetch(request).await.map_err(|e| match e {
            crate::host::FetchError::Connect(_) => "unreachable".to_string(),
            crate::host::FetchError::InvalidRequest(_) => "invalid request".to_string(),
        })?;
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        let body = crate::http::read_body(response.body, 64 * 1024).await.map_err(|_| "body".to_string())?;
        parse_latest(&body).ok_or_else(|| "no carbonIntensity".to_string())
    };
    crate::host::with_timeout(host, FETCH_TIMEOUT_MS, call).await.unwrap_or_else(|| Err("timeout".into()))
}

/// `carbonIntensity` of Electricity Maps' `/v3/carbon-intensity/latest` answer, when usable.
pub fn parse_latest(body: &[u8]) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("carbonIntensity")?.as_f64().filter(|g| g.is_finite() && *g >= 0.0)
}

fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The table to route with, given the stored live document (if any) and the time.
pub fn table_from(feed: Option<&CarbonFeed>, live: Option<&LiveIntensities>, now_ms: u64) -> (Option<Rc<CarbonTable>>, CarbonData) {
    let Some(feed) = feed else { return (None, CarbonData::Annual) };
    match live {
        Some(live) if now_ms.saturating_sub(live.fetched_at_ms) <= feed.max_age_ms && !live.values.is_empty() => {
            let table = CarbonTable::shipped().with_live(live.values.iter().map(|(r, g)| (r.clone(), *g)), live.fetched_at_ms);
            (Some(Rc::new(table)), CarbonData::Live)
        }
        _ => (None, CarbonData::Stale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> CarbonFeed {
        CarbonFeed {
            base_url: "https://api.electricitymap.org/v3".into(),
            token_secret: "ELECTRICITY_MAPS_TOKEN".into(),
            zones: [("eu-central-1".to_string(), "DE".to_string())].into(),
            max_age_ms: 3_600_000,
        }
    }

    #[test]
    fn parses_the_latest_answer() {
        let body = br#"{"zone":"DE","carbonIntensity":302,"datetime":"2026-11-23T08:00:00.000Z","updatedAt":"2026-11-23T07:49:00.000Z","emissionFactorType":"lifecycle","isEstimated":true,"estimationMethod":"TIME_SLICER_AVERAGE"}"#;
        assert_eq!(parse_latest(body), Some(302.0));
        assert_eq!(parse_latest(br#"{"zone":"DE","carbonIntensity":null}"#), None);
        assert_eq!(parse_latest(br#"{"zone":"DE","carbonIntensity":-5}"#), None);
        assert_eq!(parse_latest(b"<html>"), None);
    }

    #[test]
    fn fresh_values_are_used_old_ones_are_flagged_stale() {
        let live = LiveIntensities { fetched_at_ms: 1_000, values: [("eu-central-1".to_string(), 99.0)].into() };
        let (table, data) = table_from(Some(&feed()), Some(&live), 1_000 + 3_600_000);
        assert_eq!(data, CarbonData::Live);
        assert_eq!(table.unwrap().intensity("eu-central-1").g_per_kwh, 99.0);
        let (table, data) = table_from(Some(&feed()), Some(&live), 1_001 + 3_600_000);
        assert_eq!((table.is_none(), data), (true, CarbonData::Stale));
        assert_eq!(table_from(Some(&feed()), None, 0).1, CarbonData::Stale);
        assert_eq!(table_from(None, Some(&live), 1_000).1, CarbonData::Annual);
    }

    #[test]
    fn zones_are_escaped_in_the_query() {
        assert_eq!(query_escape("US-CAL-CISO"), "US-CAL-CISO");
        assert_eq!(query_escape("a&b=c"), "a%26b%3Dc");
    }
}
