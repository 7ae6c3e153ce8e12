//! Where things are: cloud region coordinates, country and continent centres, great-circle
//! distance and a latency estimate from it.
//!
//! The table ships in `data/regions.json` and is parsed once per isolate on first use. The
//! estimate is deliberately simple (a fixed base plus about 1 ms of round trip per 100 km):
//! it only has to rank regions before any latency has been observed, after which the EWMA in
//! [`super::HealthState`] takes over.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::RequestFacts;

/// Round-trip milliseconds added per kilometre of great-circle distance. Light in fibre covers
/// about 200 km per ms; real paths are longer than the great circle, so 1 ms RTT per 100 km is the
/// usual rule of thumb.
pub const RTT_MS_PER_KM: f64 = 0.01;
/// Fixed part of a request's latency that does not depend on distance (TLS, queueing, time to
/// first token is NOT included: it is the same model everywhere).
pub const BASE_LATENCY_MS: f64 = 20.0;
/// Estimate used when the request's or the region's position is unknown: pessimistic enough
/// that a known-near region wins, not so large that it dominates a carbon score.
pub const UNKNOWN_LATENCY_MS: f64 = 150.0;

const EARTH_RADIUS_KM: f64 = 6371.0;

/// A point on the globe in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// Metadata for one cloud region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegionInfo {
    pub provider: String,
    pub metro: String,
    pub lat: f64,
    pub lon: f64,
}

impl RegionInfo {
    pub fn point(&self) -> LatLon {
        LatLon { lat: self.lat, lon: self.lon }
    }
}

/// Region coordinates plus country and continent centres.
#[derive(Debug, Clone, Deserialize)]
pub struct GeoTable {
    pub regions: BTreeMap<String, RegionInfo>,
    pub countries: BTreeMap<String, LatLon>,
    pub continents: BTreeMap<String, LatLon>,
}

impl GeoTable {
    /// The table shipped in `data/regions.json`, parsed on first use. A parse failure is a build
    /// defect caught by the tests; at run time it degrades to an empty table (every distance
    /// unknown) rather than panicking.
    pub fn shipped() -> &'static GeoTable {
        static TABLE: OnceLock<GeoTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            serde_json::from_str(include_str!("../../data/regions.json")).unwrap_or_else(|_| GeoTable {
                regions: BTreeMap::new(),
                countries: BTreeMap::new(),
                continents: BTreeMap::new(),
            })
        })
    }

    pub fn region(&self, region: &str) -> Option<&RegionInfo> {
        self.regions.get(region)
    }

    /// The best known position of the caller: exact coordinates, else the country's centre, else
    /// the continent's centre. `None` when nothing is known.
    pub fn request_point(&self, facts: &RequestFacts) -> Option<LatLon> {
        if let Some((lat, lon)) = facts.coordinates {
            if lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0 {
                return Some(LatLon { lat, lon });
            }
        }
        let upper = |s: &str| s.trim().to_ascii_uppercase();
        if let Some(p) = facts.country.as_deref().and_then(|c| self.countries.get(&upper(c))) {
            return Some(*p);
        }
        facts.continent.as_deref().and_then(|c| self.continents.get(&upper(c))).copied()
    }

    /// Distance in km from the request to the region, when both are known.
    pub fn distance_km(&self, from: Option<LatLon>, region: &str) -> Option<f64> {
        Some(haversine_km(from?, self.region(region)?.point()))
    }
}

/// Great-circle distance in kilometres (haversine formula).
pub fn haversine_km(a: LatLon, b: LatLon) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let dphi = (b.lat - a.lat).to_radians();
    let dlambda = (b.lon - a.lon).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Latency estimate in ms for a distance (unknown distance: [`UNKNOWN_LATENCY_MS`]).
pub fn latency_from_distance(km: Option<f64>) -> f64 {
    km.map_or(UNKNOWN_LATENCY_MS, |km| BASE_LATENCY_MS + km * RTT_MS_PER_KM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RequestFacts {
        RequestFacts::default()
    }

    #[test]
    fn shipped_table_parses_and_has_regions() {
        let t = GeoTable::shipped();
        assert!(t.regions.len() >= 40);
        assert!(t.region("europe-west4").is_some());
        assert!(t.countries.contains_key("DE"));
    }

    #[test]
    fn haversine_known_distance() {
        // Frankfurt to Dublin is about 1090 km.
        let fra = LatLon { lat: 50.11, lon: 8.68 };
        let dub = LatLon { lat: 53.35, lon: -6.26 };
        let d = haversine_km(fra, dub);
        assert!((1050.0..1130.0).contains(&d), "{d}");
        assert!(haversine_km(fra, fra) < 1e-6);
    }

    #[test]
    fn request_point_prefers_coordinates_then_country_then_continent() {
        let t = GeoTable::shipped();
        let mut f = facts();
        assert_eq!(t.request_point(&f), None);
        f.continent = Some("EU".into());
        assert_eq!(t.request_point(&f), Some(LatLon { lat: 50.0, lon: 10.0 }));
        f.country = Some("fr".into());
        assert_eq!(t.request_point(&f).map(|p| p.lat), Some(46.23));
        f.coordinates = Some((1.0, 2.0));
        assert_eq!(t.request_point(&f), Some(LatLon { lat: 1.0, lon: 2.0 }));
        f.coordinates = Some((f64::NAN, 2.0));
        assert_eq!(t.request_point(&f).map(|p| p.lat), Some(46.23));
    }

    #[test]
    fn latency_grows_with_distance() {
        assert_eq!(latency_from_distance(None), UNKNOWN_LATENCY_MS);
        assert_eq!(latency_from_distance(Some(0.0)), BASE_LATENCY_MS);
        assert!((latency_from_distance(Some(1000.0)) - 30.0).abs() < 1e-9);
    }
}
