//! Stance distributions and drift: the measurements of "Value Drifts"
//! (Bhatia et al., 2025).
//!
//! - v_t(T): mean stance vector of topic T at checkpoint t, over the topic's
//!   questions (and sampled answers), with standard errors;
//! - drift magnitude M_s(T; t, t') = v_t'(T)_s − v_t(T)_s, signed;
//! - drift time: the fraction of a phase's steps after which stance s first
//!   lies within the 95% confidence interval of its extreme value in that
//!   phase (the probe value farthest from the phase's starting value).
//!
//! Like is compared with like: every point of a series is measured on the
//! same questions (the run's periodic subset, where periodic probes use
//! one; the whole set's numbers at phase ends are kept beside), and a
//! magnitude comes with a 95% paired-bootstrap interval over the questions.
//! A drift whose interval contains 0 is noise: it is marked, and has no
//! drift time.

use crate::events::{
    Event, PerStance, ProbeEvent, QuestionScore, Stance, StanceDistribution, TopicStance,
};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Resamples of the paired bootstrap: the 2.5% and 97.5% points are then
/// the 50th and 1950th of 2000 sorted means.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Most probes a topic keeps per phase; past it every other interior probe
/// is dropped (a phase keeps its first and last, so magnitudes stay exact).
pub const MAX_PROBES_PER_PHASE: usize = 4096;

/// Mean and standard error (sample standard deviation / √n) of each stance
/// over a topic's per-item distributions.
pub fn topic_stance(
    topic: &str,
    items: &[StanceDistribution],
    raw: Option<&[StanceDistribution]>,
) -> TopicStance {
    let n = items.len();
    let m = StanceDistribution::mean(items);
    TopicStance {
        topic: topic.to_string(),
        mean: m,
        se: standard_errors(items),
        n: n as u32,
        raw: raw.map(StanceDistribution::mean),
        ..Default::default()
    }
}

/// Per stance, the standard error of the mean of `items` (0 below two).
pub fn standard_errors(items: &[StanceDistribution]) -> PerStance<f64> {
    let n = items.len();
    let m = StanceDistribution::mean(items);
    PerStance::from_fn(|s| {
        if n < 2 {
            0.0
        } else {
            let var = items.iter().map(|x| (x[s] - m[s]).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        }
    })
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

/// The scores of one question at the two ends of a change: one
/// distribution per sampled answer (one in all for `choice`).
pub type PairedScores<'a> = (&'a [StanceDistribution], &'a [StanceDistribution]);

/// 95% paired-bootstrap interval of the mean change over questions, per
/// stance: resample the questions with replacement and, where a question
/// has several sampled answers, its answers at each end too; the interval
/// is the 2.5% and 97.5% points of the resampled mean changes (sorted
/// values number ⌊0.025·B⌋ and ⌈0.975·B⌉−1, counting from 0).
pub fn paired_bootstrap(
    pairs: &[PairedScores],
    resamples: usize,
    seed: u64,
) -> Option<PerStance<(f64, f64)>> {
    let n = pairs.len();
    if n == 0 || resamples == 0 || pairs.iter().any(|(a, b)| a.is_empty() || b.is_empty()) {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draws: PerStance<Vec<f64>> = PerStance::from_fn(|_| Vec::with_capacity(resamples));
    let mean_of = |xs: &[StanceDistribution], rng: &mut rand_chacha::ChaCha8Rng| {
        if xs.len() == 1 {
            return xs[0];
        }
        let mut acc = StanceDistribution::default();
        for _ in 0..xs.len() {
            let x = xs[rng.random_range(0..xs.len())];
            for s in Stance::EACH {
                acc[s] += x[s];
            }
        }
        acc.map(|v| v / xs.len() as f64)
    };
    for _ in 0..resamples {
        let mut sum = StanceDistribution::default();
        for _ in 0..n {
            let (a, b) = pairs[rng.random_range(0..n)];
            let d = mean_of(b, &mut rng) - mean_of(a, &mut rng);
            for s in Stance::EACH {
                sum[s] += d[s];
            }
        }
        for s in Stance::EACH {
            draws[s].push(sum[s] / n as f64);
        }
    }
    let lo = (0.025 * resamples as f64).floor() as usize;
    let hi = ((0.975 * resamples as f64).ceil() as usize).clamp(1, resamples) - 1;
    Some(PerStance::from_fn(|s| {
        let v = &mut draws[s];
        v.sort_by(f64::total_cmp);
        (v[lo], v[hi])
    }))
}

/// Changes smaller than this are float noise, not drift: probes score in
/// f32, and the same question scored in a batch of other neighbours and
/// padding (a subset pass against a whole-set pass) moves by ~1e-8. An
/// interval reaching within this of 0 counts as containing 0.
pub const SCORE_TOLERANCE: f64 = 1e-6;

/// Magnitude and time of one stance's drift in one phase.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StanceDrift {
    /// End minus start, signed.
    pub magnitude: f64,
    /// Fraction of the phase (0 = immediate, 1 = only at the end); only
    /// where the drift is real (its interval excludes 0).
    pub time: Option<f64>,
    /// 95% interval of the magnitude: a paired bootstrap over questions
    /// (and sampled answers), or, for logs without per-question scores, the
    /// normal interval ±1.96·√(se₁² + se₂²) of two unpaired means.
    pub interval: Option<(f64, f64)>,
    /// Standard error of the change: of the paired per-question differences
    /// (unpaired logs: √(se₁² + se₂²)).
    pub se: Option<f64>,
    /// The interval contains 0: the drift is within noise.
    pub noise: bool,
}

/// The whole probe set's means where a drift series uses a subset: the
/// phase's first and last probes as logged, when they asked every question.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FullSet {
    pub questions: u32,
    pub start: Option<StanceDistribution>,
    pub end: Option<StanceDistribution>,
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
    /// Questions the series is measured on (the same at every point).
    pub questions: u32,
    /// Whether start and end were paired question by question (logs without
    /// per-question scores are not).
    pub paired: bool,
    /// Where the series is a subset: the whole set at the phase's ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_set: Option<FullSet>,
    /// Mean spread over the questions' wordings at the end, where the
    /// probe set has paraphrases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paraphrase_sd: Option<PerStance<f64>>,
}

impl TopicDrift {
    /// Whether any stance drifted beyond noise.
    pub fn real(&self) -> bool {
        self.stances.values().any(|d| !d.noise)
    }
}

/// One topic's probe as logged, with its point on the drift series.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicProbe {
    pub global_step: u64,
    /// The probe asked only the periodic subset.
    pub subset: bool,
    /// What the probe logged for the topic.
    pub logged: Arc<TopicStance>,
    /// The point on the drift series: the series' questions only.
    pub point: Point,
}

impl TopicProbe {
    /// Scores of the series' questions (all of them when none is marked
    /// periodic), by id.
    fn series_scores(&self) -> Vec<&QuestionScore> {
        series_questions(&self.logged)
    }
}

/// The questions a drift series follows in one logged topic probe: those
/// marked periodic, or all when none is (no subset configured).
fn series_questions(ts: &TopicStance) -> Vec<&QuestionScore> {
    let marked: Vec<&QuestionScore> = ts.questions.iter().filter(|q| q.periodic).collect();
    if marked.is_empty() {
        ts.questions.iter().collect()
    } else {
        marked
    }
}

/// The drift-series point of a logged topic probe: over the series'
/// questions where they are logged, else the logged means.
pub fn series_point(global_step: u64, ts: &TopicStance) -> Point {
    let qs = series_questions(ts);
    if qs.is_empty() {
        return Point {
            global_step,
            mean: ts.mean,
            se: ts.se,
        };
    }
    let items: Vec<StanceDistribution> = qs
        .iter()
        .flat_map(|q| {
            if q.samples.is_empty() {
                vec![q.p]
            } else {
                q.samples.clone()
            }
        })
        .collect();
    Point {
        global_step,
        mean: StanceDistribution::mean(&items),
        se: standard_errors(&items),
    }
}

/// Probe series of every topic, split by phase, from an event stream.
#[derive(Debug, Clone, Default)]
pub struct DriftTable {
    /// Phase names in order.
    pub phases: Vec<String>,
    /// (phase index, topic) → the drift series: one point per probe in step
    /// order, every point on the same questions.
    pub series: BTreeMap<(usize, String), Vec<Point>>,
    /// (phase index, topic) → the probes behind `series`, as logged.
    pub probes: BTreeMap<(usize, String), Vec<TopicProbe>>,
    /// Topics in order of first appearance.
    pub topics: Vec<String>,
    /// Seeds the bootstrap (the run's seed), so a table is the same each time.
    pub seed: u64,
    /// `rows()`, computed once (it bootstraps every topic and phase).
    rows: OnceLock<Vec<TopicDrift>>,
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
                    t.seed = rs.seed;
                    if let Some(r) = &rs.resumed_from {
                        // Drop what the resumed run recomputes.
                        t.truncate_after(r.global_step);
                    }
                }
                Event::Probe(p) => t.add(p),
                _ => {}
            }
        }
        t
    }

    /// Name the phases (rows are recomputed when the names change).
    pub fn set_phases(&mut self, names: Vec<String>) {
        if self.phases != names {
            self.phases = names;
            self.rows = OnceLock::new();
        }
    }

    /// Drop every probe after `global_step` (a resumed run redoes them).
    pub fn truncate_after(&mut self, global_step: u64) {
        for pts in self.series.values_mut() {
            pts.retain(|p| p.global_step <= global_step);
        }
        for pts in self.probes.values_mut() {
            pts.retain(|p| p.global_step <= global_step);
        }
        self.rows = OnceLock::new();
    }

    /// Fold in one probe event (a failed one is skipped).
    pub fn add(&mut self, p: &ProbeEvent) {
        if p.error.is_some() {
            return;
        }
        self.rows = OnceLock::new();
        for ts in &p.topics {
            if !self.topics.contains(&ts.topic) {
                self.topics.push(ts.topic.clone());
            }
            let key = (p.phase, ts.topic.clone());
            let probes = self.probes.entry(key.clone()).or_default();
            // A repeated probe at the same step (manual + periodic) keeps the last.
            probes.retain(|x| x.global_step != p.global_step);
            let at = probes.partition_point(|x| x.global_step < p.global_step);
            probes.insert(
                at,
                TopicProbe {
                    global_step: p.global_step,
                    subset: p.subset,
                    logged: Arc::new(ts.clone()),
                    point: series_point(p.global_step, ts),
                },
            );
            if probes.len() > MAX_PROBES_PER_PHASE {
                let n = probes.len();
                let mut i = 0;
                probes.retain(|_| {
                    i += 1;
                    i == 1 || i == n || i % 2 == 1
                });
            }
            self.series
                .insert(key, probes.iter().map(|x| x.point).collect());
        }
    }

    /// Drift per topic and phase, plus `run` rows (first probe → last probe).
    pub fn rows(&self) -> Vec<TopicDrift> {
        self.rows.get_or_init(|| self.compute_rows()).clone()
    }

    /// The `run` row of `topic` (its first probe → its last), if it has two.
    pub fn run_row(&self, topic: &str) -> Option<TopicDrift> {
        self.rows
            .get_or_init(|| self.compute_rows())
            .iter()
            .find(|r| r.topic == topic && r.phase == "run")
            .cloned()
    }

    fn compute_rows(&self) -> Vec<TopicDrift> {
        let mut out = Vec::new();
        for topic in &self.topics {
            let mut all: Vec<&TopicProbe> = Vec::new();
            for (pi, name) in self.phases.iter().enumerate() {
                let Some(probes) = self.probes.get(&(pi, topic.clone())) else {
                    continue;
                };
                all.extend(probes.iter());
                if probes.len() < 2 {
                    continue;
                }
                let seed = self.seed ^ super::set::fnv1a(topic) ^ (pi as u64 + 1);
                out.push(row(topic, name, probes, seed));
            }
            all.sort_by_key(|p| p.global_step);
            all.dedup_by_key(|p| p.global_step);
            if all.len() >= 2 {
                let owned: Vec<TopicProbe> = all.into_iter().cloned().collect();
                let seed = self.seed ^ super::set::fnv1a(topic);
                let mut r = row(topic, "run", &owned, seed);
                r.stances = r.stances.map(|s| StanceDrift { time: None, ..s });
                out.push(r);
            }
        }
        out
    }
}

fn row(topic: &str, phase: &str, probes: &[TopicProbe], seed: u64) -> TopicDrift {
    let (a, b) = (&probes[0], &probes[probes.len() - 1]);
    let pts: Vec<Point> = probes.iter().map(|p| p.point).collect();
    // Pair the two ends question by question.
    let sa = a.series_scores();
    let sb = b.series_scores();
    let by_id: BTreeMap<&str, &QuestionScore> = sa.iter().map(|q| (q.id.as_str(), *q)).collect();
    let pairs: Vec<(&QuestionScore, &QuestionScore)> = sb
        .iter()
        .filter_map(|q| by_id.get(q.id.as_str()).map(|s| (*s, *q)))
        .collect();
    let paired = !pairs.is_empty();
    let samples = |q: &QuestionScore| -> Vec<StanceDistribution> {
        if q.samples.is_empty() {
            vec![q.p]
        } else {
            q.samples.clone()
        }
    };
    let (start, end, questions, intervals, ses) = if paired {
        let owned: Vec<(Vec<StanceDistribution>, Vec<StanceDistribution>)> = pairs
            .iter()
            .map(|(s, e)| (samples(s), samples(e)))
            .collect();
        let refs: Vec<PairedScores> = owned
            .iter()
            .map(|(s, e)| (s.as_slice(), e.as_slice()))
            .collect();
        let starts: Vec<StanceDistribution> = owned.iter().flat_map(|x| x.0.clone()).collect();
        let ends: Vec<StanceDistribution> = owned.iter().flat_map(|x| x.1.clone()).collect();
        let start = StanceDistribution::mean(&starts);
        let end = StanceDistribution::mean(&ends);
        let diffs: Vec<StanceDistribution> = owned
            .iter()
            .map(|(s, e)| StanceDistribution::mean(e) - StanceDistribution::mean(s))
            .collect();
        let se = standard_errors(&diffs);
        let iv = paired_bootstrap(&refs, BOOTSTRAP_RESAMPLES, seed);
        (
            start,
            end,
            pairs.len() as u32,
            iv.map(|iv| iv.map(Some)).unwrap_or_default(),
            se.map(Some),
        )
    } else {
        // Unpaired means: the normal interval of a difference of two.
        let (pa, pb) = (a.point, b.point);
        let se = PerStance::from_fn(|s| (pa.se[s].powi(2) + pb.se[s].powi(2)).sqrt());
        let d = pb.mean - pa.mean;
        let iv = PerStance::from_fn(|s| Some((d[s] - Z95 * se[s], d[s] + Z95 * se[s])));
        (pa.mean, pb.mean, b.logged.n, iv, se.map(Some))
    };
    let stances = PerStance::from_fn(|s| {
        let interval = intervals[s];
        let noise = interval.is_none_or(|(lo, hi)| lo <= SCORE_TOLERANCE && hi >= -SCORE_TOLERANCE);
        StanceDrift {
            magnitude: end[s] - start[s],
            time: if noise { None } else { drift_time(&pts, s) },
            interval,
            se: ses[s],
            noise,
        }
    });
    let full = |p: &TopicProbe| (!p.subset && p.logged.n > questions).then_some(p.logged.mean);
    let full_set = (!a.subset && a.logged.n > questions || !b.subset && b.logged.n > questions)
        .then(|| FullSet {
            questions: a.logged.n.max(b.logged.n),
            start: full(a),
            end: full(b),
        });
    TopicDrift {
        topic: topic.to_string(),
        phase: phase.to_string(),
        start,
        end,
        stances,
        questions,
        paired,
        full_set,
        paraphrase_sd: b.logged.paraphrase_sd,
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
                    ..Default::default()
                }],
                seconds: 0.1,
                error: None,
                subset: false,
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
        // No per-question scores (an old log): unpaired, with the normal
        // interval of two means, ±1.96·√(0.01² + 0.01²) = ±0.0277.
        assert!(!rows[0].paired);
        let (lo, hi) = rows[0].stances[Stance::Support].interval.unwrap();
        assert!(
            (lo - (0.4 - Z95 * 0.02f64.sqrt() * 0.1)).abs() < 1e-12,
            "{lo}"
        );
        assert!(
            (hi - (0.4 + Z95 * 0.02f64.sqrt() * 0.1)).abs() < 1e-12,
            "{hi}"
        );
        assert!(!rows[0].stances[Stance::Support].noise);
        assert!(rows[0].stances[Stance::Oppose].noise);
        assert_eq!(rows[0].stances[Stance::Oppose].time, None);
        assert_eq!(rows[0].phase, "sft");
        let (support, neutral) = (Stance::Support, Stance::Neutral);
        assert!((rows[0].stances[support].magnitude - 0.4).abs() < 1e-12);
        assert!((rows[0].stances[neutral].magnitude + 0.4).abs() < 1e-12);
        assert!((rows[1].stances[support].magnitude + 0.1).abs() < 1e-12);
        assert_eq!(rows[2].phase, "run");
        assert!((rows[2].stances[support].magnitude - 0.3).abs() < 1e-12);
        assert_eq!(rows[2].stances[support].time, None);
    }

    /// Bootstrap intervals against the exact bootstrap distribution,
    /// enumerated by hand.
    #[test]
    fn bootstrap_intervals_by_hand() {
        let d = |x: f64| StanceDistribution::from([x, -x, 0.0]);
        let zero = [d(0.0)];
        let ends = |xs: &[f64]| xs.iter().map(|&x| [d(x)]).collect::<Vec<_>>();
        let run = |xs: &[f64]| {
            let e = ends(xs);
            let pairs: Vec<PairedScores> = e.iter().map(|x| (&zero[..], &x[..])).collect();
            paired_bootstrap(&pairs, BOOTSTRAP_RESAMPLES, 7).unwrap()
        };
        // Two questions, changes 0.1 and 0.3: the resampled mean is 0.1
        // (p = 1/4), 0.2 (1/2) or 0.3 (1/4); 2.5% and 97.5% points: 0.1, 0.3.
        let iv = run(&[0.1, 0.3]);
        assert!((iv[Stance::Support].0 - 0.1).abs() < 1e-12, "{iv:?}");
        assert!((iv[Stance::Support].1 - 0.3).abs() < 1e-12, "{iv:?}");
        // The neutral column is the mirror image.
        assert!((iv[Stance::Neutral].0 + 0.3).abs() < 1e-12, "{iv:?}");
        assert_eq!(iv[Stance::Oppose], (0.0, 0.0));
        // Changes 0, 0, 0.3: the mean is 0 with p = 8/27 (> 2.5%), 0.3 only
        // with p = 1/27 and P(mean ≤ 0.2) = 26/27 < 97.5%: [0, 0.3], which
        // contains 0.
        let iv = run(&[0.0, 0.0, 0.3]);
        assert_eq!(iv[Stance::Support].0, 0.0);
        assert!((iv[Stance::Support].1 - 0.3).abs() < 1e-12, "{iv:?}");
        // Changes 0.1, 0.2, 0.3: sums of three draws from {1,2,3}/10 run
        // from 3 to 9 with counts 1,3,6,7,6,3,1 of 27: P(sum = 3) = 1/27 >
        // 2.5%, P(sum ≤ 8) = 26/27 < 97.5%: [0.1, 0.3].
        let iv = run(&[0.1, 0.2, 0.3]);
        assert!((iv[Stance::Support].0 - 0.1).abs() < 1e-12, "{iv:?}");
        assert!((iv[Stance::Support].1 - 0.3).abs() < 1e-12, "{iv:?}");
        // Sampled answers are resampled too: one question, samples 0 and 1
        // at the end, 0 at the start: the mean of two resampled answers is
        // 0 (1/4), 0.5 (1/2) or 1 (1/4): [0, 1].
        let end = [d(0.0), d(1.0)];
        let pairs: Vec<PairedScores> = vec![(&zero[..], &end[..])];
        let iv = paired_bootstrap(&pairs, BOOTSTRAP_RESAMPLES, 7).unwrap();
        assert_eq!(iv[Stance::Support], (0.0, 1.0));
        assert!(paired_bootstrap(&[], BOOTSTRAP_RESAMPLES, 7).is_none());
    }

    fn q(id: &str, s: f64, periodic: bool) -> QuestionScore {
        QuestionScore {
            id: id.into(),
            p: [s, 1.0 - s, 0.0].into(),
            periodic,
            ..Default::default()
        }
    }

    /// A probe of topic `t` with the given per-question support values:
    /// the periodic subset is q1, q2; boundary probes ask q1..q4.
    fn probe_of(phase: usize, step: u64, subset: bool, vals: [f64; 4]) -> Event {
        use crate::events::*;
        let names = ["q1", "q2", "q3", "q4"];
        let questions: Vec<QuestionScore> = names
            .iter()
            .zip(vals)
            .enumerate()
            .filter(|(i, _)| !subset || *i < 2)
            .map(|(i, (n, v))| q(n, v, i < 2))
            .collect();
        let items: Vec<StanceDistribution> = questions.iter().map(|q| q.p).collect();
        let mut ts = topic_stance("t", &items, None);
        ts.questions = questions;
        Event::Probe(ProbeEvent {
            t: 0.0,
            phase,
            step,
            global_step: step,
            method: ProbeMethod::Choice,
            reason: if subset {
                ProbeReason::Periodic
            } else {
                ProbeReason::PhaseEnd
            },
            topics: vec![ts],
            seconds: 1.0,
            error: None,
            subset,
        })
    }

    fn one_phase_start() -> Event {
        use crate::events::*;
        Event::RunStart(RunStart {
            schema: 1,
            t: 0.0,
            run: "r".into(),
            seed: 5,
            recipe: String::new(),
            model: ModelInfo::default(),
            phases: vec![PhasePlan {
                name: "dpo".into(),
                algorithm: "dpo".into(),
                steps: 30,
            }],
            versions: Default::default(),
            resumed_from: None,
            config: None,
            trace: None,
        })
    }

    /// A model that does not change, probed on a subset (mean support 0.2)
    /// between two whole-set probes (mean 0.5): no drift at any point, and
    /// the whole set's numbers are beside, labelled as such.
    #[test]
    fn a_subset_between_whole_set_probes_is_no_drift() {
        let vals = [0.1, 0.3, 0.8, 0.8];
        let ev = vec![
            one_phase_start(),
            probe_of(0, 0, false, vals),
            probe_of(0, 10, true, vals),
            probe_of(0, 20, true, vals),
            probe_of(0, 30, false, vals),
        ];
        let t = DriftTable::from_events(&ev);
        let series = &t.series[&(0, "t".to_string())];
        assert_eq!(series.len(), 4);
        for p in series {
            assert!((p.mean[Stance::Support] - 0.2).abs() < 1e-12, "{p:?}");
        }
        let rows = t.rows();
        let r = &rows[0];
        assert!(r.paired);
        assert_eq!(r.questions, 2);
        for (_, d) in r.stances.iter() {
            assert_eq!(d.magnitude, 0.0);
            assert_eq!(d.interval, Some((0.0, 0.0)));
            assert!(d.noise);
            assert_eq!(d.time, None);
        }
        let full = r.full_set.as_ref().unwrap();
        assert_eq!(full.questions, 4);
        assert!((full.start.unwrap()[Stance::Support] - 0.5).abs() < 1e-12);
        assert!((full.end.unwrap()[Stance::Support] - 0.5).abs() < 1e-12);
        assert!(!r.real());
    }

    /// An unchanged model scored in batches of another make-up moves by
    /// float rounding only; an interval of such changes, wholly above 0,
    /// is still noise. A change just beyond the tolerance is not.
    #[test]
    fn float_rounding_is_no_drift() {
        let drift_of = |eps: f64| {
            let ev = vec![
                one_phase_start(),
                probe_of(0, 0, false, [0.1, 0.3, 0.8, 0.8]),
                probe_of(0, 10, true, [0.1 + eps, 0.3 + 2.0 * eps, 0.0, 0.0]),
            ];
            DriftTable::from_events(&ev).rows()[0].stances[Stance::Support]
        };
        let d = drift_of(1e-8);
        let (lo, _) = d.interval.unwrap();
        assert!(lo > 0.0, "{d:?}");
        assert!(d.noise && d.time.is_none(), "{d:?}");
        let d = drift_of(1e-5);
        assert!(!d.noise && d.time.is_some(), "{d:?}");
    }

    /// The same run where the subset's questions move: the drift is the
    /// paired change on them, its standard error that of the paired
    /// differences, and its time is on the paired series.
    #[test]
    fn paired_change_and_its_standard_error() {
        let ev = vec![
            one_phase_start(),
            probe_of(0, 0, false, [0.1, 0.3, 0.8, 0.8]),
            probe_of(0, 10, true, [0.4, 0.5, 0.0, 0.0]),
            probe_of(0, 20, true, [0.5, 0.6, 0.0, 0.0]),
            probe_of(0, 30, false, [0.5, 0.6, 0.1, 0.1]),
        ];
        let rows = DriftTable::from_events(&ev).rows();
        let d = rows[0].stances[Stance::Support];
        // Changes 0.4 and 0.3: mean 0.35, sd √0.005, se √0.005/√2 = 0.05.
        assert!((d.magnitude - 0.35).abs() < 1e-12);
        assert!((d.se.unwrap() - 0.05).abs() < 1e-12, "{d:?}");
        // Two questions: the bootstrap interval is [0.3, 0.4].
        let (lo, hi) = d.interval.unwrap();
        assert!(
            (lo - 0.3).abs() < 1e-12 && (hi - 0.4).abs() < 1e-12,
            "{d:?}"
        );
        assert!(!d.noise);
        // Paired series 0.2, 0.45, 0.55, 0.55: the extreme 0.55 (se 0.05,
        // interval ±0.098) is first reached at step 20: time 20/30.
        assert!((d.time.unwrap() - 2.0 / 3.0).abs() < 1e-12, "{d:?}");
        // The whole set moved from 0.5 to 0.325, shown beside.
        let full = rows[0].full_set.as_ref().unwrap();
        assert!((full.end.unwrap()[Stance::Support] - 0.325).abs() < 1e-12);
    }
}
