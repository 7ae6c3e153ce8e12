//! A mergeable quantile sketch (DDSketch, Masson et al., VLDB 2019) for latencies.
//!
//! A value `v > 0` falls in bin `ceil(log_γ v)` with `γ = (1 + α) / (1 − α)`; the bin's
//! representative `2γ^i / (γ + 1)` is within a relative error `α` of every value in the bin. So a
//! quantile read from the bins is within `α` (here 1 %) of the exact value at that rank, and two
//! sketches merge by adding their bins: merged sketches answer exactly as one sketch fed both
//! streams would. Values ≤ 0 are counted apart (a 0 ms latency). The number of bins is bounded
//! ([`MAX_BINS`]): past it the lowest bins are folded into one, which only loses accuracy at the
//! very bottom (milliseconds from 1 to 10^7 need about 810 bins, well under the bound).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The relative accuracy of every quantile: 1 %.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// At most this many bins per sketch (a few KB as JSON at worst).
pub const MAX_BINS: usize = 2048;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// A DDSketch of non-negative values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "SketchWire", into = "SketchWire")]
pub struct Sketch {
    count: u64,
    sum: f64,
    zeros: u64,
    bins: BTreeMap<i32, u64>,
}

/// The stored form: short names and the bins as `[index, count]` pairs.
#[derive(Serialize, Deserialize)]
struct SketchWire {
    #[serde(default)]
    n: u64,
    #[serde(default)]
    s: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    z: u64,
    #[serde(default)]
    b: Vec<(i32, u64)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<SketchWire> for Sketch {
    fn from(w: SketchWire) -> Sketch {
        let mut bins = BTreeMap::new();
        for (i, c) in w.b {
            *bins.entry(i).or_insert(0) += c;
        }
        let mut sketch = Sketch { count: w.n, sum: w.s, zeros: w.z, bins };
        sketch.collapse();
        sketch
    }
}

impl From<Sketch> for SketchWire {
    fn from(s: Sketch) -> SketchWire {
        SketchWire { n: s.count, s: s.sum, z: s.zeros, b: s.bins.into_iter().collect() }
    }
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// A sketch of one value.
    pub fn of(value: f64) -> Sketch {
        let mut sketch = Sketch::new();
        sketch.add(value);
        sketch
    }

    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.count += 1;
        if value <= 0.0 {
            self.zeros += 1;
            return;
        }
        self.sum += value;
        let index = (value.ln() / gamma().ln()).ceil() as i32;
        *self.bins.entry(index).or_insert(0) += 1;
        self.collapse();
    }

    /// Add every value `other` saw.
    pub fn merge(&mut self, other: &Sketch) {
        self.count += other.count;
        self.sum += other.sum;
        self.zeros += other.zeros;
        for (i, c) in &other.bins {
            *self.bins.entry(*i).or_insert(0) += c;
        }
        self.collapse();
    }

    /// Fold the lowest bins together while there are too many.
    fn collapse(&mut self) {
        while self.bins.len() > MAX_BINS {
            let (lowest, count) = self.bins.pop_first().expect("more than MAX_BINS bins");
            let _ = lowest;
            *self.bins.first_entry().expect("bins remain").get_mut() += count;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value at quantile `q` (0..=1): the sorted values' element at rank `floor(q (n − 1))`,
    /// within 1 % relative. `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        let g = gamma();
        for (i, c) in &self.bins {
            seen += c;
            if seen > rank {
                return Some(2.0 * g.powi(*i) / (g + 1.0));
            }
        }
        self.bins.keys().next_back().map(|i| 2.0 * g.powi(*i) / (g + 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: deterministic random data without a dependency.
    fn random_values(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Log-uniform over 1 ms .. 100 s, integer milliseconds like the gateway's.
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                (10f64.powf(u * 5.0)).round()
            })
            .collect()
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_are_within_one_percent_of_the_exact_ones() {
        for seed in [1, 7, 12345] {
            let values = random_values(seed, 20_000);
            let mut sketch = Sketch::new();
            values.iter().for_each(|v| sketch.add(*v));
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let (want, got) = (exact(&sorted, q), sketch.quantile(q).unwrap());
                assert!((got - want).abs() <= RELATIVE_ACCURACY * want + 1e-9, "seed {seed} q {q}: {got} vs exact {want}");
            }
            assert_eq!(sketch.count(), 20_000);
        }
    }

    #[test]
    fn merged_sketches_equal_one_sketch_of_all_values_and_merge_is_associative() {
        let values = random_values(99, 3000);
        let parts: Vec<Sketch> = values.chunks(1000).map(|c| c.iter().fold(Sketch::new(), |mut s, v| (s.add(*v), s).1)).collect();
        let whole = values.iter().fold(Sketch::new(), |mut s, v| (s.add(*v), s).1);
        let mut left = parts[0].clone();
        left.merge(&parts[1]);
        left.merge(&parts[2]);
        let mut right_tail = parts[1].clone();
        right_tail.merge(&parts[2]);
        let mut right = parts[0].clone();
        right.merge(&right_tail);
        assert_eq!(left.bins, whole.bins);
        assert_eq!(right.bins, whole.bins);
        assert_eq!((left.count, left.zeros), (whole.count, whole.zeros));
        assert!((left.sum - whole.sum).abs() < 1e-6);
    }

    #[test]
    fn zeros_empty_and_the_bound_on_bins() {
        assert_eq!(Sketch::new().quantile(0.5), None);
        let mut s = Sketch::of(0.0);
        s.add(0.0);
        s.add(100.0);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert!((s.quantile(1.0).unwrap() - 100.0).abs() <= 1.0);
        let mut wide = Sketch::new();
        for e in -3000..3000 {
            wide.add(1.02f64.powi(e));
        }
        assert!(wide.bins.len() <= MAX_BINS);
        assert_eq!(wide.count(), 6000);
        // The top of the distribution is unaffected by folding the bottom.
        let top = 1.02f64.powi(2999);
        assert!((wide.quantile(1.0).unwrap() - top).abs() <= RELATIVE_ACCURACY * top);
    }

    #[test]
    fn the_stored_form_is_compact_and_round_trips() {
        let mut s = Sketch::of(12.0);
        s.add(0.0);
        s.add(250.0);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.starts_with(r#"{"n":3,"s":262.0,"z":1,"b":[["#), "{json}");
        assert_eq!(serde_json::from_str::<Sketch>(&json).unwrap(), s);
    }
}
