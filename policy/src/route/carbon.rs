//! Carbon estimates: grid intensity per cloud region and energy per token by model size.
//!
//! The static table (`data/carbon-intensity.json`) records a source and year for every value;
//! see that file for the citations and the stated uncertainty. A host with a live feed (e.g. a
//! cron trigger polling a grid-intensity API) replaces values with [`CarbonTable::with_live`] and
//! checks [`CarbonTable::stale`] to know when to refresh. The numbers rank regions; they are not
//! an emissions report.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Grid carbon intensity of one region with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intensity {
    pub g_per_kwh: f64,
    pub zone: String,
    /// Key into [`CarbonTable::sources`], or `"live"` for a value from the host's feed.
    pub source: String,
    pub year: u32,
    pub basis: String,
}

/// Energy for one model size class, per output token, before host overhead and PUE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyClass {
    pub name: String,
    /// Models up to this many billion parameters fall in this class.
    pub max_params_b: u64,
    pub j_per_output_token: f64,
    pub basis: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyModel {
    /// Server energy besides the accelerators (host CPU, memory, idle capacity), as a multiplier.
    pub host_overhead: f64,
    /// Cost of an input (prefill) token as a fraction of an output token.
    pub input_fraction: f64,
    /// Ordered by `max_params_b` ascending.
    pub classes: Vec<EnergyClass>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PueTable {
    pub default: f64,
    #[serde(default)]
    pub providers: BTreeMap<String, f64>,
}

/// Intensities, energy model and PUEs; optionally overlaid with live values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonTable {
    pub sources: BTreeMap<String, String>,
    pub fallback: Intensity,
    pub regions: BTreeMap<String, Intensity>,
    pub energy: EnergyModel,
    pub pue: PueTable,
    /// When the live values were fetched (host clock, ms); `None` = static table only.
    #[serde(default)]
    pub live_fetched_at_ms: Option<u64>,
}

/// Fallbacks used only if the shipped JSON failed to parse (a build defect the tests catch).
fn minimal_table() -> CarbonTable {
    CarbonTable {
        sources: BTreeMap::new(),
        fallback: Intensity { g_per_kwh: 480.0, zone: "world".into(), source: "ember-global-2023".into(), year: 2023, basis: "world average".into() },
        regions: BTreeMap::new(),
        energy: EnergyModel {
            host_overhead: 1.6,
            input_fraction: 0.1,
            classes: vec![EnergyClass { name: "any".into(), max_params_b: u64::MAX, j_per_output_token: 1.0, basis: String::new() }],
        },
        pue: PueTable { default: 1.2, providers: BTreeMap::new() },
        live_fetched_at_ms: None,
    }
}

impl CarbonTable {
    /// The table shipped in `data/carbon-intensity.json`, parsed on first use.
    pub fn shipped() -> &'static CarbonTable {
        static TABLE: OnceLock<CarbonTable> = OnceLock::new();
        TABLE.get_or_init(|| CarbonTable::parse(include_str!("../../data/carbon-intensity.json")).unwrap_or_else(|_| minimal_table()))
    }

    /// Parse a table in the shipped format (for tests and for hosts that ship their own).
    pub fn parse(json: &str) -> Result<CarbonTable, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// A copy with live intensities (region -> gCO2e/kWh) replacing the static ones. Values that
    /// are not finite and non-negative are ignored, so a broken feed cannot make a region look
    /// free.
    pub fn with_live<I, S>(&self, values: I, fetched_at_ms: u64) -> CarbonTable
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<String>,
    {
        let mut table = self.clone();
        for (region, g) in values {
            if !(g.is_finite() && g >= 0.0) {
                continue;
            }
            let region = region.into();
            let zone = table.regions.get(&region).map(|i| i.zone.clone()).unwrap_or_default();
            table.regions.insert(region, Intensity { g_per_kwh: g, zone, source: "live".into(), year: 0, basis: "live feed".into() });
        }
        table.live_fetched_at_ms = Some(fetched_at_ms);
        table
    }

    /// True when no live values were loaded or they are older than `max_age_ms`: the host should
    /// refresh. The table still answers (static values are the floor of what is known).
    pub fn stale(&self, now_ms: u64, max_age_ms: u64) -> bool {
        self.live_fetched_at_ms.is_none_or(|at| now_ms.saturating_sub(at) > max_age_ms)
    }

    /// Intensity of a region; unknown regions get the world average (so they never look greener
    /// than a region with data).
    pub fn intensity(&self, region: &str) -> &Intensity {
        self.regions.get(region).unwrap_or(&self.fallback)
    }

    pub fn pue(&self, provider: &str) -> f64 {
        self.pue.providers.get(provider).copied().unwrap_or(self.pue.default)
    }

    /// Energy class for a model of `params_b` billion parameters (the largest class if beyond).
    pub fn energy_class(&self, params_b: u32) -> Option<&EnergyClass> {
        let p = u64::from(params_b);
        self.energy.classes.iter().find(|c| p <= c.max_params_b).or_else(|| self.energy.classes.last())
    }

    /// Facility energy in kWh for one request: tokens x J/token x host overhead x PUE.
    pub fn energy_kwh(&self, input_tokens: u64, output_tokens: u64, params_b: u32, provider: &str) -> f64 {
        let j_out = self.energy_class(params_b).map_or(1.0, |c| c.j_per_output_token);
        let tokens = output_tokens as f64 + input_tokens as f64 * self.energy.input_fraction;
        let joules = tokens * j_out * self.energy.host_overhead * self.pue(provider);
        joules / 3_600_000.0
    }

    /// Estimated grams CO2e for one request on a provider region.
    pub fn gco2e(&self, input_tokens: u64, output_tokens: u64, params_b: u32, provider: &str, region: &str) -> f64 {
        self.energy_kwh(input_tokens, output_tokens, params_b, provider) * self.intensity(region).g_per_kwh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_with_sources_for_every_value() {
        let t = CarbonTable::shipped();
        assert!(t.regions.len() >= 40, "parsed the shipped file, not the fallback");
        for (region, i) in &t.regions {
            assert!(t.sources.contains_key(&i.source), "{region} cites unknown source {}", i.source);
            assert!((2020..=2026).contains(&i.year), "{region} year");
            assert!(i.g_per_kwh >= 0.0 && i.g_per_kwh < 1200.0, "{region} value");
        }
        for r in ["us-east-1", "eu-west-1", "eu-north-1", "europe-west4", "westeurope", "swedencentral", "uksouth"] {
            assert!(t.regions.contains_key(r), "{r}");
        }
    }

    #[test]
    fn greener_grid_gives_less_carbon() {
        let t = CarbonTable::shipped();
        let fr = t.gco2e(1000, 500, 70, "aws", "eu-west-3");
        let de = t.gco2e(1000, 500, 70, "aws", "eu-central-1");
        assert!(fr > 0.0 && fr < de);
    }

    #[test]
    fn energy_scales_with_model_class_and_tokens() {
        let t = CarbonTable::shipped();
        assert!(t.energy_kwh(0, 1000, 8, "x") < t.energy_kwh(0, 1000, 70, "x"));
        assert!(t.energy_kwh(0, 1000, 70, "x") < t.energy_kwh(0, 1000, 1800, "x"));
        assert!(t.energy_kwh(0, 2000, 70, "x") > t.energy_kwh(0, 1000, 70, "x"));
        // 1000 output tokens of a small model: 0.2 J x 1.6 x 1.2 = 0.384 kJ ~ 0.107 Wh.
        let wh = t.energy_kwh(0, 1000, 8, "x") * 1000.0;
        assert!((wh - 0.1067).abs() < 0.001, "{wh}");
    }

    #[test]
    fn unknown_region_uses_world_average() {
        let t = CarbonTable::shipped();
        assert_eq!(t.intensity("mars-north-1").g_per_kwh, 480.0);
    }

    #[test]
    fn live_values_override_and_staleness() {
        let t = CarbonTable::shipped();
        assert!(t.stale(0, 1000));
        let live = t.with_live([("eu-central-1", 100.0), ("eu-west-1", f64::NAN), ("eu-west-3", -1.0)], 5_000);
        assert_eq!(live.intensity("eu-central-1").g_per_kwh, 100.0);
        assert_eq!(live.intensity("eu-central-1").source, "live");
        assert_eq!(live.intensity("eu-central-1").zone, "DE");
        assert_eq!(live.intensity("eu-west-1").g_per_kwh, 296.0, "NaN ignored");
        assert_eq!(live.intensity("eu-west-3").g_per_kwh, 16.30, "negative ignored");
        assert!(!live.stale(5_500, 1000));
        assert!(live.stale(6_001, 1000));
    }
}
