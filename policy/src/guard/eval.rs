//! Measuring the detectors against labelled text: precision and recall per PII type, and for
//! prompt injection at given score thresholds. Used by the quality test and the benchmark.

use std::collections::BTreeMap;

use super::injection::InjectionDetector;
use super::pii::{PiiKind, PiiScanner};

/// One labelled text: spans by type and exact value; `("injection", None)` labels the document.
pub struct Sample<'a> {
    pub id: &'a str,
    pub text: &'a str,
    pub labels: Vec<(&'a str, Option<&'a str>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindQuality {
    pub labels: u32,
    pub found: u32,
    pub true_positives: u32,
    pub false_positives: u32,
}

impl KindQuality {
    pub fn precision(&self) -> Option<f64> {
        let n = self.true_positives + self.false_positives;
        (n > 0).then(|| self.true_positives as f64 / n as f64)
    }

    pub fn recall(&self) -> Option<f64> {
        (self.labels > 0).then(|| self.found as f64 / self.labels as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InjectionQuality {
    pub threshold: f32,
    pub true_positives: u32,
    pub false_positives: u32,
    pub false_negatives: u32,
    pub true_negatives: u32,
}

impl InjectionQuality {
    pub fn precision(&self) -> Option<f64> {
        let n = self.true_positives + self.false_positives;
        (n > 0).then(|| self.true_positives as f64 / n as f64)
    }

    pub fn recall(&self) -> Option<f64> {
        let n = self.true_positives + self.false_negatives;
        (n > 0).then(|| self.true_positives as f64 / n as f64)
    }
}

/// A miss or a false alarm, for looking at.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    pub id: String,
    pub kind: String,
    pub text: String,
    pub missed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Quality {
    pub kinds: BTreeMap<&'static str, KindQuality>,
    pub injection: Vec<InjectionQuality>,
    pub mistakes: Vec<Mistake>,
}

pub fn evaluate(scanner: &PiiScanner, detector: &InjectionDetector, samples: &[Sample<'_>], thresholds: &[f32]) -> Quality {
    let mut quality = Quality {
        injection: thresholds
            .iter()
            .map(|&threshold| InjectionQuality { threshold, true_positives: 0, false_positives: 0, false_negatives: 0, true_negatives: 0 })
            .collect(),
        ..Default::default()
    };
    for sample in samples {
        let findings = scanner.scan(sample.text);
        let mut spans: Vec<(PiiKind, usize, usize)> = Vec::new();
        let mut is_injection = false;
        for (kind, value) in &sample.labels {
            if *kind == "injection" {
                is_injection = true;
                continue;
            }
            let (Some(kind), Some(value)) = (PiiKind::from_name(kind), value) else { continue };
            let entry = quality.kinds.entry(kind.name()).or_default();
            entry.labels += 1;
            let occurrences: Vec<(usize, usize)> = sample.text.match_indices(value).map(|(i, v)| (i, i + v.len())).collect();
            if findings.iter().any(|f| f.kind == kind && occurrences.iter().any(|(s, e)| f.start < *e && f.end > *s)) {
                entry.found += 1;
            } else {
                quality.mistakes.push(Mistake { id: sample.id.into(), kind: kind.name().into(), text: value.to_string(), missed: true });
            }
            spans.extend(occurrences.into_iter().map(|(s, e)| (kind, s, e)));
        }
        for finding in &findings {
            let entry = quality.kinds.entry(finding.kind.name()).or_default();
            if spans.iter().any(|(k, s, e)| *k == finding.kind && finding.start < *e && finding.end > *s) {
                entry.true_positives += 1;
            } else {
                entry.false_positives += 1;
                quality.mistakes.push(Mistake {
                    id: sample.id.into(),
                    kind: finding.kind.name().into(),
                    text: sample.text[finding.start..finding.end].to_string(),
                    missed: false,
                });
            }
        }
        let score = detector.score(sample.text).score;
        let highest = thresholds.iter().copied().fold(0.0f32, f32::max);
        let lowest = thresholds.iter().copied().fold(1.0f32, f32::min);
        if (is_injection && score < highest) || (!is_injection && score >= lowest) {
            quality.mistakes.push(Mistake {
                id: sample.id.into(),
                kind: format!("injection (score {score:.2})"),
                text: sample.text.chars().take(80).collect(),
                missed: is_injection,
            });
        }
        for q in &mut quality.injection {
            match (score >= q.threshold, is_injection) {
                (true, true) => q.true_positives += 1,
                (true, false) => q.false_positives += 1,
                (false, true) => q.false_negatives += 1,
                (false, false) => q.true_negatives += 1,
            }
        }
    }
    quality
}
