//! Stance distributions and drift: the measurements of "Value Drifts"
//! (Bhatia et al., 2025).
//!
//! - v_t(T): mean stance vector of topic T at checkpoint t, over the topic's
//!   questions (and sampled answers), with standard errors;
//! - drift magnitude M_s(T; t, t') = v_t'(T)_s − v_t(T)_s, signed;
//! - drift time: the fraction of a phase's steps after which stance s first
//!   lies within the 95% confidence interval of its extreme value in that
//!   phase (the probe value farthest from the phase's starting value).

use crate::events::{Event, PerStance, ProbeEvent, Stance, StanceDistribution, TopicStance};
use std::collections::BTreeMap;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Mean and standard error (sample standard deviation / √n) of each stance
/// over a topic's per-item distributions.
pub fn topic_stance(
    topic: &str,
    items: &[StanceDistribution],
    raw: Option<&[StanceDistribution]>,
) -> TopicStance {
    let n = items.len();
    let m = StanceDistribution::mean(items);
    let se = PerStance::from_fn(|s| {
        if n < 2 {
            0.0
        } else {
            let var = items.iter().map(|x| (x[s] - m[s]).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        }
    });
    TopicStance {
        topic: topic.to_string(),
        mean: m,
        se,
        n: n as u32,
        raw: raw.map(StanceDistribution::mean),
    }
}

/// One probe of one topic at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub global_step: u64,
    pub mean: StanceDistribution,
    pub se: PerStance<f64>,
}

/// Drift time of one stance over a phase's probe series (ordered by step,
/// first point at the phase start, last at its end): the fraction of the
/// phase's steps at which the value first lies within Z95·se of the extreme.
/// `None` when the phase has fewer than two probes.
pub fn drift_time(series: &[Point], stance: Stance) -> Option<f64> {
    let (first, last) = (series.first()?, series.last()?);
    if series.len() < 2 || last.global_step <= first.global_step {
        return None;
    }
    let start = first.mean[stance];
    let extreme = series.iter().max_by(|a, b| {
        (a.mean[stance] - start)
            .abs()
            .partial_cmp(&(b.mean[stance] - start).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
    })?;
    let half = Z95 * extreme.se[stance];
    let lo = extreme.mean[stance] - half;
    let hi = extreme.mean[stance] + half;
    let hit = series
        .iter()
        .find(|p| p.mean[stance] >= lo && p.mean[stance] <= hi)
        .unwrap_or(extreme);
    Some(
        (hit.global_step - first.global_step) as f64
            / (last.global_step - first.global_step) as f64,
    )
}

/// Magnitude and time of one stance's drift in one phase.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StanceDrift {
    /// End minus start, signed.
    pub magnitude: f64,
    /// Fraction of the phase (0 = immediate, 1 = only at the end).
    pub time: Option<f64>,
}

/// Drift of one topic in one phase (or over the whole run).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicDrift {
    pub topic: String,
    /// Phase name, or `run` for start → end of the whole run.
    pub phase: String,
    pub start: StanceDistribution,
    pub end: StanceDistribution,
    pub stances: PerStance<StanceDrift>,
}

/// Probe series of every topic, split by phase, from an event stream.
#[derive(Debug, Clone, Default)]
pub struct DriftTable {
    /// Phase names in order.
    pub phases: Vec<String>,
    /// (phase index, topic) → points in step order.
    pub series: BTreeMap<(usize, String), Vec<Point>>,
    /// Topics in order of first appearance.
    pub topics: Vec<String>,
}

impl DriftTable {
    /// Collect the successful probes of a run. A probe at a phase's end also
    /// opens the next phase's series when that phase has no start probe.
    pub fn from_events(events: &[Event]) -> Self {
        let mut t = DriftTable::default();
        for e in events {
            match e {
                Event::RunStart(rs) => {
                    t.phases = rs.phases.iter().map(|p| p.name.clone()).collect();
                    if let Some(r) = &rs.resumed_from {
                        // Drop what the resumed run recomputes.
                        for pts in t.series.values_mut() {
                            pts.retain(|p| p.global_step <= r.global_step);
                        }
                    }
                }
                Event::Probe(p) => t.add(p),
                _ => {}
            }
        }
        t
    }

    fn add(&mut self, p: &ProbeEvent) {
        if p.error.is_some() {
            return;
        }
        for ts in &p.topics {
            if !self.topics.contains(&ts.topic) {
                self.topics.push(ts.topic.clone());
            }
            let pts = self.series.entry((p.phase, ts.topic.clone())).or_default();
            // A repeated probe at the same step (manual + periodic) keeps the last.
            pts.retain(|x| x.global_step != p.global_step);
            pts.push(Point {
                global_step: p.global_step,
                mean: ts.mean,
                se: ts.se,
            });
            pts.sort_by_key(|x| x.global_step);
        }
    }

    /// Drift per topic and phase, plus `run` rows (first probe → last probe).
    pub fn rows(&self) -> Vec<TopicDrift> {
        let mut out = Vec::new();
        for topic in &self.topics {
            let mut all: Vec<Point> = Vec::new();
            for (pi, name) in self.phases.iter().enumerate() {
                let Some(pts) = self.series.get(&(pi, topic.clone())) else {
                    continue;
                };
                all.extend(pts.iter().copied());
                if pts.len() < 2 {
                    continue;
                }
                out.push(row(topic, name, pts));
            }
            all.sort_by_key(|p| p.global_step);
            all.dedup_by_key(|p| p.global_step);
            if all.len() >= 2 {
                let mut r = row(topic, "run", &all);
                r.stances = r.stances.map(|s| StanceDrift { time: None, ..s });
                out.push(r);
            }
        }
        out
    }
}

fn row(topic: &str, phase: &str, pts: &[Point]) -> TopicDrift {
    let (a, b) = (pts[0], pts[pts.len() - 1]);
    TopicDrift {
        topic: topic.to_string(),
        phase: phase.to_string(),
        start: a.mean,
        end: b.mean,
        stances: PerStance::from_fn(|s| StanceDrift {
            magnitude: b.mean[s] - a.mean[s],
            time: drift_time(pts, s),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(step: u64, s: f64, se: f64) -> Point {
        Point {
            global_step: step,
            mean: [s, 0.5 - s / 2.0, 0.5 - s / 2.0].into(),
            se: [se; 3].into(),
        }
    }

    #[test]
    fn drift_time_by_hand() {
        // Steps 0..100 of a phase; support rises 0.2 → 0.62 (the extreme, at
        // step 75, se 0.02 → interval 0.62 ± 0.0392 = [0.5808, 0.6592]),
        // and is first inside it at step 50 (0.59): drift time 50/100.
        let s = [
            pt(0, 0.2, 0.02),
            pt(25, 0.45, 0.02),
            pt(50, 0.59, 0.02),
            pt(75, 0.62, 0.02),
            pt(100, 0.60, 0.02),
        ];
        assert_eq!(drift_time(&s, Stance::Support), Some(0.5));
        // With a tight interval only the extreme itself qualifies: 75/100.
        let tight: Vec<Point> = s
            .iter()
            .map(|p| Point {
                se: [0.001; 3].into(),
                ..*p
            })
            .collect();
        assert_eq!(drift_time(&tight, Stance::Support), Some(0.75));
        // A stance that falls: the extreme is the minimum.
        let fall = [
            pt(0, 0.8, 0.0),
            pt(10, 0.3, 0.0),
            pt(20, 0.1, 0.0),
            pt(40, 0.1, 0.0),
        ];
        assert_eq!(drift_time(&fall, Stance::Support), Some(0.5));
        // Immediate drift.
        let now = [pt(0, 0.2, 0.05), pt(10, 0.9, 0.05), pt(100, 0.88, 0.05)];
        assert_eq!(drift_time(&now, Stance::Support), Some(0.1));
        assert_eq!(drift_time(&s[..1], Stance::Support), None);
    }

    #[test]
    fn mean_and_standard_error_by_hand() {
        // support values 0.2, 0.4, 0.9: mean 0.5, sample sd √0.13 = 0.3606,
        // se = 0.3606/√3 = 0.2082.
        let items =
            [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.9, 0.1, 0.0]].map(StanceDistribution::from);
        let t = topic_stance("x", &items, None);
        assert!((t.mean[Stance::Support] - 0.5).abs() < 1e-12);
        assert!((t.se[Stance::Support] - (0.13f64).sqrt() / 3f64.sqrt()).abs() < 1e-12);
        assert!((t.mean[Stance::Oppose] - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!(t.n, 3);
    }

    #[test]
    fn magnitudes_per_phase_and_run() {
        use crate::events::*;
        let probe = |phase: usize, step: u64, s: f64| {
            Event::Probe(ProbeEvent {
                t: 0.0,
                phase,
                step,
                global_step: step,
                method: ProbeMethod::Choice,
                reason: ProbeReason::Periodic,
                topics: vec![TopicStance {
                    topic: "guns".into(),
                    mean: [s, 1.0 - s, 0.0].into(),
                    se: [0.01; 3].into(),
                    n: 12,
                    raw: None,
                }],
                seconds: 0.1,
                error: None,
            })
        };
        let start = Event::RunStart(RunStart {
            schema: 1,
            t: 0.0,
            run: "r".into(),
            seed: 0,
            recipe: String::new(),
            model: ModelInfo::default(),
            phases: vec![
                PhasePlan {
                    name: "sft".into(),
                    algorithm: "sft".into(),
                    steps: 10,
                },
                PhasePlan {
                    name: "dpo".into(),
                    algorithm: "dpo".into(),
                    steps: 10,
                },
            ],
            versions: Default::default(),
            resumed_from: None,
            config: None,
            trace: None,
        });
        let ev = vec![
            start,
            probe(0, 0, 0.3),
            probe(0, 10, 0.7),
            probe(1, 10, 0.7),
            probe(1, 20, 0.6),
        ];
        let rows = DriftTable::from_events(&ev).rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].phase, "sft");
        let (support, neutral) = (Stance::Support, Stance::Neutral);
        assert!((rows[0].stances[support].magnitude - 0.4).abs() < 1e-12);
        assert!((rows[0].stances[neutral].magnitude + 0.4).abs() < 1e-12);
        assert!((rows[1].stances[support].magnitude + 0.1).abs() < 1e-12);
        assert_eq!(rows[2].phase, "run");
        assert!((rows[2].stances[support].magnitude - 0.3).abs() < 1e-12);
        assert_eq!(rows[2].stances[support].time, None);
    }
}
