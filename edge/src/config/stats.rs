//! The `stats` section: the usage rollups behind `/admin/stats` and `/admin/metrics`
//! (docs/observability.md).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStats {
    enabled: Option<bool>,
    shards: Option<u64>,
    retention_days: Option<u64>,
}

/// How requests are rolled up. Enabled by default: a host without a rollup store refuses the
/// background write, which costs nothing the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSettings {
    pub enabled: bool,
    /// How many stores the rows are spread over (by a hash of the consumer); queries read all.
    /// Changing it moves consumers between shards: their older rows stay readable only while
    /// the old shards are still queried, so raise it rather than lower it.
    pub shards: u32,
    /// Rows older than this many days are deleted.
    pub retention_days: u64,
}

pub const MAX_STATS_SHARDS: u64 = 64;

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings { enabled: true, shards: 4, retention_days: 90 }
    }
}

pub(super) fn validate_stats(raw: RawStats, issue: &mut impl FnMut(String, String)) -> StatsSettings {
    let mut stats = StatsSettings::default();
    stats.enabled = raw.enabled.unwrap_or(stats.enabled);
    match raw.shards {
        Some(n) if (1..=MAX_STATS_SHARDS).contains(&n) => stats.shards = n as u32,
        Some(n) => issue("stats.shards".into(), format!("must be between 1 and {MAX_STATS_SHARDS}, got {n}")),
        None => {}
    }
    match raw.retention_days {
        Some(n) if (1..=3650).contains(&n) => stats.retention_days = n,
        Some(n) => issue("stats.retention_days".into(), format!("must be between 1 and 3650, got {n}")),
        None => {}
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bounds_and_issues() {
        let mut issues = Vec::new();
        let s = validate_stats(RawStats::default(), &mut |p, m| issues.push((p, m)));
        assert_eq!(s, StatsSettings::default());
        let s = validate_stats(RawStats { enabled: Some(false), shards: Some(8), retention_days: Some(7) }, &mut |p, m| issues.push((p, m)));
        assert_eq!(s, StatsSettings { enabled: false, shards: 8, retention_days: 7 });
        assert!(issues.is_empty());
        validate_stats(RawStats { enabled: None, shards: Some(0), retention_days: Some(9999) }, &mut |p, m| issues.push((p, m)));
        assert_eq!(issues.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["stats.shards", "stats.retention_days"]);
    }
}
