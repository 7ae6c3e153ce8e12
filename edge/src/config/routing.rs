//! The document-wide inputs of routing that are not per model: the `residency` rules (where a
//! request may be processed) and the live `carbon_feed` for carbon-aware strategies.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::providers::ProviderCheck;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCarbonFeed {
    #[serde(default)]
    base_url: Option<String>,
    /// The NAME of the secret holding the Electricity Maps API token.
    token_secret: String,
    /// Cloud region (as in targets' `region`) -> Electricity Maps zone (e.g. `DE`).
    zones: BTreeMap<String, String>,
    #[serde(default)]
    max_age_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResidency {
    /// Jurisdictions allowed for requests entering at an EU location (`request.cf.isEUCountry`).
    #[serde(default)]
    eu_visitors: Option<Vec<String>>,
    /// A header set by a trusted proxy in front of the gateway naming the allowed jurisdictions
    /// (comma-separated). Only configure this when clients cannot set it themselves.
    #[serde(default)]
    trusted_header: Option<String>,
}

/// Where live carbon intensities come from (see `crate::carbon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonFeed {
    /// Electricity Maps API root, e.g. `https://api.electricitymap.org/v3`.
    pub base_url: String,
    pub token_secret: String,
    /// Region -> zone; at most [`MAX_CARBON_ZONES`] (one subrequest each per refresh).
    pub zones: BTreeMap<String, String>,
    /// Live values older than this are not used (default 2 h).
    pub max_age_ms: u64,
}

/// Zones per refresh: Workers allow 50 subrequests per invocation on the free plan.
pub const MAX_CARBON_ZONES: usize = 40;

/// Residency rules that do not come from a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residency {
    pub eu_visitors: Option<BTreeSet<String>>,
    pub trusted_header: Option<String>,
}

/// The carbon feed, checked like a provider entry (URL, secret name) plus its zone table.
pub(super) fn validate_carbon_feed(raw: Option<RawCarbonFeed>, issue: &mut impl FnMut(String, String)) -> Option<CarbonFeed> {
    raw.map(|feed| {
        let mut check = ProviderCheck { path: "carbon_feed", issues: Vec::new() };
        let base_url = check.url(feed.base_url, Some("https://api.electricitymap.org/v3".into()), "base_url");
        check.secret(&feed.token_secret, "token_secret");
        if feed.zones.is_empty() || feed.zones.len() > MAX_CARBON_ZONES {
            check.issue("zones", format!("must map between 1 and {MAX_CARBON_ZONES} regions to Electricity Maps zones"));
        }
        if feed.zones.values().any(|z| z.trim().is_empty()) {
            check.issue("zones", "zone names must not be empty".into());
        }
        let max_age_ms = feed.max_age_ms.unwrap_or(2 * 3_600_000);
        if max_age_ms < 60_000 {
            check.issue("max_age_ms", "must be at least 60000 (one minute)".into());
        }
        for (path, message) in check.issues {
            issue(path, message);
        }
        CarbonFeed { base_url, token_secret: feed.token_secret, zones: feed.zones, max_age_ms }
    })
}

/// Jurisdictions and header names compare in lower case.
pub(super) fn validate_residency(raw: RawResidency) -> Residency {
    Residency {
        eu_visitors: raw.eu_visitors.map(|v| v.into_iter().map(|j| j.to_ascii_lowercase()).collect()),
        trusted_header: raw.trusted_header.map(|h| h.to_ascii_lowercase()),
    }
}
