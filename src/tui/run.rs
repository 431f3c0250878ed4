//! What the dashboard knows about a run, folded from its events.
//!
//! The same model serves live training, replay and watch: events go in
//! through [`RunModel::apply`], panels read it. Memory is bounded by the
//! series' capacities, not by the run's length.

use super::run_clock::RunClock;
use super::series::{Capacity, Series};
use crate::events::{
    AlertLevel, Event, PerStance, ProbeEvent, ProbeMethod, RunStart, RunStatus, SnapshotEvent,
    Stance, StanceDistribution, StepEvent,
};
use crate::probe::drift::{DriftTable, Point};
use std::collections::BTreeMap;
use std::path::Path;

/// Metric names the reward panel shows, in TRL's spelling.
pub const REWARD_METRICS: [&str; 11] = [
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "kl",
    // RL phases: TRL's GRPOTrainer names,
    "reward",
    "entropy",
    "clip_ratio/region_mean",
    // and its PPOTrainer's.
    "objective/scores",
    "objective/kl",
    "policy/clipfrac_avg",
];

/// Reward-panel metrics drawn only in a run with an RL phase (SFT logs
/// `entropy` too, which is not a reward).
pub const RL_ONLY_METRICS: [&str; 1] = ["entropy"];

/// One phase as planned, and where it actually started and ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub algorithm: String,
    pub steps: u64,
    /// Global step before the phase's first step, once it has started.
    pub start: Option<u64>,
    pub ended: bool,
}

impl Phase {
    /// Preference phases have rewards to show.
    pub fn is_preference(&self) -> bool {
        !matches!(self.algorithm.as_str(), "sft" | "")
    }

    /// Whether the phase samples from the policy (GRPO, PPO).
    pub fn is_rl(&self) -> bool {
        matches!(self.algorithm.as_str(), "grpo" | "ppo")
    }
}

/// Most probe points a topic keeps for its curves and drift table; past
/// it, every other interior point is dropped (each phase keeps its first
/// and last probe, so magnitudes stay exact).
pub const MAX_TOPIC_POINTS: usize = 4096;

/// One topic's stance over the probes.
#[derive(Debug, Clone)]
pub struct TopicTrack {
    pub first: StanceDistribution,
    pub latest: StanceDistribution,
    pub latest_se: PerStance<f64>,
    /// p(stance) per probe, x = global step.
    pub history: PerStance<Series>,
    /// Every probe (up to [`MAX_TOPIC_POINTS`]) with its phase and standard
    /// errors, in step order: the drill-down's curves and the drift table.
    pub points: Vec<(usize, Point)>,
}

impl TopicTrack {
    fn new(mean: StanceDistribution, se: PerStance<f64>) -> Self {
        Self {
            first: mean,
            latest: mean,
            latest_se: se,
            history: PerStance::from_fn(|_| Series::new(Capacity::PROBES)),
            points: Vec::new(),
        }
    }

    fn push_point(&mut self, phase: usize, p: Point) {
        // A repeated probe at the same step (manual + periodic) keeps the last.
        if let Some(i) = self
            .points
            .iter()
            .rposition(|(ph, q)| *ph == phase && q.global_step == p.global_step)
        {
            self.points[i] = (phase, p);
            return;
        }
        let at = self
            .points
            .partition_point(|(ph, q)| (*ph, q.global_step) <= (phase, p.global_step));
        self.points.insert(at, (phase, p));
        if self.points.len() > MAX_TOPIC_POINTS {
            let n = self.points.len();
            let keep: Vec<bool> = (0..n)
                .map(|i| {
                    let edge = i == 0
                        || i + 1 == n
                        || self.points[i - 1].0 != self.points[i].0
                        || self.points[i + 1].0 != self.points[i].0;
                    edge || i % 2 == 0
                })
                .collect();
            let mut k = keep.iter();
            self.points.retain(|_| *k.next().unwrap_or(&true));
        }
    }

    /// The stance with the highest latest probability.
    pub fn leading(&self) -> Stance {
        self.latest.leading()
    }

    /// Signed change of each stance since the first probe.
    pub fn drift(&self) -> PerStance<f64> {
        self.latest - self.first
    }
}

/// How serious a status message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// The line the status bar shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusMessage {
    pub level: Level,
    pub text: String,
    pub global_step: u64,
}

/// A compact, borrowed view of one step: what the model needs of a `step`
/// event, without its metric map (replay fills it straight from JSON).
#[derive(Debug, Clone, Default)]
pub struct StepView<'a> {
    pub t: f64,
    pub phase: usize,
    pub step: u64,
    pub global_step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub seconds: f64,
    pub metrics: Vec<(&'a str, f64)>,
}

impl<'a> StepView<'a> {
    pub fn of(e: &'a StepEvent) -> Self {
        Self {
            t: e.t,
            phase: e.phase,
            step: e.step,
            global_step: e.global_step,
            loss: e.loss,
            lr: e.lr,
            grad_norm: e.grad_norm,
            tokens: e.tokens,
            seconds: e.seconds,
            metrics: e.metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        }
    }
}

/// Everything the panels draw.
#[derive(Debug, Clone, Default)]
pub struct RunModel {
    pub run_name: String,
    pub model_source: String,
    pub phases: Vec<Phase>,
    /// Index of the phase now running (or last run).
    pub phase: Option<usize>,
    pub step: u64,
    pub global_step: u64,
    /// Wall and running time, and the step rate over running time.
    pub clock: RunClock,
    /// Metric series by name (`loss`, `lr`, `grad_norm`, `rewards/margins`, ...).
    pub series: BTreeMap<String, Series>,
    /// Stance per topic, in the order topics first appeared.
    pub topics: Vec<(String, TopicTrack)>,
    pub probes: u64,
    pub last_probe_step: Option<u64>,
    /// Probes that failed (their `error` set).
    pub failed_probes: u64,
    /// Wall time all probes took, successful or not.
    pub probe_seconds: f64,
    /// The last successful probe's method.
    pub probe_method: Option<ProbeMethod>,
    /// Every successful probe, paired and bootstrapped (see
    /// [`crate::probe::drift`]): the drift table, marks of noise.
    pub drift: DriftTable,
    pub paused: bool,
    /// Why the trainer paused itself (a full disk, a non-finite loss);
    /// `None` for a pause the user asked for.
    pub pause_reason: Option<String>,
    pub snapshots: u64,
    pub last_snapshot: Option<String>,
    /// Every snapshot the log announced, in order.
    pub snapshot_events: Vec<SnapshotEvent>,
    /// A trace's view: the trainer's log and the trace's are read as one.
    pub traced: bool,
    pub status: Option<StatusMessage>,
    /// Warnings and errors the log raised (notes are not counted).
    pub alerts: u64,
    /// How the run ended, once it has.
    pub ended: Option<RunStatus>,
    pub events: u64,
    /// The newest RL step's sampled rollouts (the rollouts view).
    pub rollouts: Option<crate::events::RolloutsEvent>,
}

impl RunModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Planned steps over all phases.
    pub fn total_steps(&self) -> u64 {
        // Saturating: a corrupt log's step counts may add past 2^64.
        self.phases
            .iter()
            .fold(0u64, |n, p| n.saturating_add(p.steps))
    }

    /// Global steps at which a phase after the first began.
    pub fn phase_boundaries(&self) -> Vec<(u64, &str)> {
        crate::events::phase_boundaries(self.phases.iter().map(|p| (p.name.as_str(), p.start)))
    }

    pub fn current_phase(&self) -> Option<&Phase> {
        self.phase.and_then(|i| self.phases.get(i))
    }

    /// Whether any preference phase has started.
    pub fn has_preference_steps(&self) -> bool {
        REWARD_METRICS
            .iter()
            .filter(|m| !RL_ONLY_METRICS.contains(m))
            .any(|m| self.series.get(*m).is_some_and(|s| !s.is_empty()))
    }

    /// Share of the running time up to the latest event spent in probes;
    /// none while the run stands at step 0, when the time so far is the
    /// first probe itself and says nothing of what probing costs the run.
    pub fn probe_share(&self) -> Option<f64> {
        let running = self.clock.running()?;
        let step = self.global_step.max(self.last_probe_step.unwrap_or(0));
        let ran = step > 0 && running > 0.0 && self.probe_seconds > 0.0;
        ran.then(|| (self.probe_seconds / running).min(1.0))
    }

    /// The drift table of the probes seen so far (see [`crate::probe::drift`]).
    pub fn drift_table(&self) -> &DriftTable {
        &self.drift
    }

    /// Running seconds left at the present rate.
    pub fn eta(&self) -> Option<f64> {
        if self.ended.is_some() {
            return Some(0.0);
        }
        self.clock
            .eta(self.total_steps().saturating_sub(self.global_step))
    }

    /// Fold one event in.
    pub fn apply(&mut self, event: &Event) {
        self.events += 1;
        if !matches!(event, Event::RunStart(_)) {
            self.clock.observe(event.time());
        }
        match event {
            Event::RunStart(rs) => self.run_start(rs),
            Event::PhaseStart(ps) => {
                let i = self.ensure_phase(ps.phase);
                let p = &mut self.phases[i];
                p.name.clone_from(&ps.name);
                p.algorithm.clone_from(&ps.algorithm);
                p.steps = ps.steps;
                p.start = Some(ps.global_step);
                p.ended = false;
                self.phase = Some(i);
                self.step = 0;
                self.global_step = ps.global_step;
            }
            Event::Step(s) => {
                self.events -= 1;
                self.apply_step(&StepView::of(s));
            }
            Event::Probe(p) => self.probe(p),
            Event::Snapshot(s) => {
                // A traced run hears of each checkpoint twice, from the
                // trainer's log and from the trace's: one checkpoint.
                let name = |p: &str| Path::new(p).file_name().map(|n| n.to_os_string());
                let seen = self.traced
                    && self
                        .snapshot_events
                        .iter()
                        .any(|e| e.global_step == s.global_step && name(&e.path) == name(&s.path));
                if !seen {
                    self.note_snapshot(s);
                }
            }
            Event::Pause(m) => {
                self.paused = true;
                self.pause_reason =
                    (m.reason != "user" && !m.reason.is_empty()).then(|| m.reason.clone());
                self.clock.pause(m.t);
                self.say(Level::Info, "training paused".into(), m.global_step);
            }
            Event::Resume(m) => {
                self.paused = false;
                self.pause_reason = None;
                // The user acted on what paused the run: the error that
                // held the status line (a full disk, a NaN) gives way.
                self.status = None;
                self.clock.resume(m.t);
                self.say(Level::Info, "training resumed".into(), m.global_step);
            }
            Event::Alert(a) => {
                // A note (a snapshot's size, old snapshots removed) is
                // shown, not counted among the alerts to look at.
                if a.level != AlertLevel::Info {
                    self.alerts += 1;
                }
                let level = match a.level {
                    AlertLevel::Error => Level::Error,
                    AlertLevel::Warning => Level::Warning,
                    AlertLevel::Info => Level::Info,
                };
                self.say(level, a.message.clone(), a.global_step);
            }
            Event::Rollouts(r) => {
                self.rollouts = Some(r.clone());
            }
            Event::PhaseEnd(pe) => {
                let i = self.ensure_phase(pe.phase);
                self.phases[i].ended = true;
                self.global_step = self.global_step.max(pe.global_step);
            }
            Event::RunEnd(re) => {
                self.ended = Some(re.status);
                self.paused = false;
                self.clock.end(re.t);
                let level = match re.status {
                    RunStatus::Failed => Level::Error,
                    RunStatus::Completed | RunStatus::Stopped => Level::Info,
                };
                let mut text = format!("run {} at step {}", re.status, re.global_step);
                if let Some(m) = &re.message {
                    text.push_str(": ");
                    text.push_str(m);
                }
                self.say(level, text, re.global_step);
            }
        }
    }

    /// Fold one step in (the hot path of replay).
    pub fn apply_step(&mut self, s: &StepView<'_>) {
        self.events += 1;
        self.clock.step(s.t, s.global_step, s.tokens, s.seconds);
        let i = self.ensure_phase(s.phase);
        if self.phase != Some(i) {
            // A log without phase_start (another trainer's): infer the boundary.
            if self.phases[i].start.is_none() {
                self.phases[i].start = Some(s.global_step.saturating_sub(1));
            }
            self.phase = Some(i);
        }
        self.step = s.step;
        self.global_step = s.global_step;
        let x = s.global_step as f64;
        self.push_metric("loss", x, s.loss);
        self.push_metric("lr", x, s.lr);
        self.push_metric("grad_norm", x, s.grad_norm);
        for (name, v) in &s.metrics {
            self.push_metric(name, x, *v);
        }
    }

    fn push_metric(&mut self, name: &str, x: f64, y: f64) {
        match self.series.get_mut(name) {
            Some(s) => s.push(x, y),
            None => {
                let mut s = Series::new(Capacity::STEPS);
                s.push(x, y);
                self.series.insert(name.to_string(), s);
            }
        }
    }

    fn run_start(&mut self, rs: &RunStart) {
        if let Some(resume) = &rs.resumed_from {
            // The log already holds this run; steps after the resume point
            // were lost with the process and are replaced by what follows.
            self.truncate_after(resume.global_step);
            self.ended = None;
            self.paused = false;
            self.clock.resumed_run(rs.t);
            self.phase = Some(self.ensure_phase(resume.phase));
            self.step = resume.step;
            self.global_step = resume.global_step;
            let text = match &resume.parent_run {
                Some(parent) => format!(
                    "run resumed from {} at step {}, in a new directory (the run before: {parent})",
                    resume.snapshot, resume.global_step
                ),
                None => format!(
                    "run resumed from {} at step {}",
                    resume.snapshot, resume.global_step
                ),
            };
            self.say(Level::Info, text, resume.global_step);
        } else {
            *self = RunModel {
                events: self.events,
                clock: RunClock::started_at(rs.t),
                ..RunModel::default()
            };
        }
        self.traced |= rs.trace.is_some();
        self.run_name.clone_from(&rs.run);
        self.model_source.clone_from(&rs.model.source);
        for (i, plan) in rs.phases.iter().enumerate() {
            let i = self.ensure_phase(i);
            let p = &mut self.phases[i];
            p.name.clone_from(&plan.name);
            p.algorithm.clone_from(&plan.algorithm);
            p.steps = plan.steps;
        }
        self.drift.seed = rs.seed;
        self.sync_drift_phases();
    }

    /// The drift table's phase names follow the run's.
    fn sync_drift_phases(&mut self) {
        let names: Vec<String> = self.phases.iter().map(|p| p.name.clone()).collect();
        self.drift.set_phases(names);
    }

    fn truncate_after(&mut self, global_step: u64) {
        let x = global_step as f64;
        for s in self.series.values_mut() {
            s.truncate_after(x);
        }
        self.series.retain(|_, s| !s.is_empty());
        for (_, track) in &mut self.topics {
            for s in track.history.values_mut() {
                s.truncate_after(x);
            }
            let last = |s: Stance| track.history[s].last().map(|p| p.1);
            if let (Some(a), Some(b), Some(c)) = (
                last(Stance::Support),
                last(Stance::Neutral),
                last(Stance::Oppose),
            ) {
                track.latest = PerStance::new(a, b, c);
            }
        }
        for (_, track) in &mut self.topics {
            track.points.retain(|(_, p)| p.global_step <= global_step);
        }
        self.drift.truncate_after(global_step);
        self.topics
            .retain(|(_, t)| !t.history[Stance::Support].is_empty());
        self.snapshot_events
            .retain(|s| s.global_step <= global_step);
        for p in &mut self.phases {
            if p.start.is_some_and(|s| s >= global_step) {
                p.start = None;
                p.ended = false;
            }
        }
        if self.last_probe_step.is_some_and(|s| s > global_step) {
            self.last_probe_step = None;
        }
        self.clock.truncate_after(global_step);
    }

    fn probe(&mut self, p: &ProbeEvent) {
        if p.seconds.is_finite() && p.seconds > 0.0 {
            self.probe_seconds += p.seconds;
        }
        if let Some(err) = &p.error {
            self.failed_probes += 1;
            self.say(
                Level::Warning,
                format!("probe at step {} failed: {err}", p.global_step),
                p.global_step,
            );
            return;
        }
        self.probes += 1;
        self.last_probe_step = Some(p.global_step);
        self.probe_method = Some(p.method);
        self.sync_drift_phases();
        self.drift.add(p);
        let x = p.global_step as f64;
        for ts in &p.topics {
            // Curves and sparklines follow the drift series: the same
            // questions at every probe.
            let pt = crate::probe::drift::series_point(p.global_step, ts);
            let idx = match self.topics.iter().position(|(name, _)| *name == ts.topic) {
                Some(i) => i,
                None => {
                    self.topics
                        .push((ts.topic.clone(), TopicTrack::new(pt.mean, pt.se)));
                    self.topics.len() - 1
                }
            };
            let track = &mut self.topics[idx].1;
            track.latest = pt.mean;
            track.latest_se = pt.se;
            for (s, &v) in pt.mean.iter() {
                track.history[s].push(x, v);
            }
            track.push_point(p.phase, pt);
        }
    }

    fn say(&mut self, level: Level, text: String, global_step: u64) {
        // An info line never hides a warning or error about the same moment.
        if level == Level::Info {
            if let Some(prev) = &self.status {
                if prev.level != Level::Info && prev.global_step == global_step {
                    return;
                }
            }
        }
        self.status = Some(StatusMessage {
            level,
            text,
            global_step,
        });
    }

    /// A message from the dashboard itself (not from the log).
    pub fn note(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some(StatusMessage {
            level,
            text: text.into(),
            global_step: self.global_step,
        });
    }

    /// A snapshot taken: counted, kept for the probe screen, said.
    fn note_snapshot(&mut self, s: &SnapshotEvent) {
        self.snapshots += 1;
        self.last_snapshot = Some(s.path.clone());
        self.snapshot_events.push(s.clone());
        let shown = super::path_display::normalize(Path::new(&s.path));
        self.say(
            Level::Info,
            format!(
                "snapshot ({}) at step {}: {}",
                s.reason,
                s.global_step,
                shown.display()
            ),
            s.global_step,
        );
    }

    /// Make room for phase `i` and return where it is: an absurd index from
    /// a corrupt log lands on the last of [`crate::events::MAX_PHASES`] places.
    fn ensure_phase(&mut self, i: usize) -> usize {
        let i = i.min(crate::events::MAX_PHASES - 1);
        while self.phases.len() <= i {
            self.phases.push(Phase {
                name: format!("phase {}", self.phases.len() + 1),
                algorithm: String::new(),
                steps: 0,
                start: None,
                ended: false,
            });
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ModelInfo, PhasePlan, ResumePoint};

    fn run_start(resumed: Option<u64>) -> Event {
        Event::RunStart(RunStart {
            schema: 1,
            t: 100.0,
            run: "r".into(),
            seed: 1,
            recipe: String::new(),
            model: ModelInfo::default(),
            phases: vec![PhasePlan {
                name: "sft".into(),
                algorithm: "sft".into(),
                steps: 10,
            }],
            versions: Default::default(),
            resumed_from: resumed.map(|g| {
                Box::new(ResumePoint {
                    phase: 0,
                    step: g,
                    global_step: g,
                    snapshot: "snapshots/step-5".into(),
                    parent_run: None,
                })
            }),
            config: None,
            trace: None,
        })
    }

    fn step(g: u64, loss: f64) -> Event {
        Event::Step(StepEvent {
            t: 100.0 + g as f64,
            phase: 0,
            step: g,
            global_step: g,
            loss,
            lr: 1e-4,
            grad_norm: 1.0,
            tokens: 10,
            seconds: 1.0,
            metrics: Default::default(),
        })
    }

    /// Found by tests/mutation.rs: the absurd phase index of a corrupt
    /// line indexed past the phases made room for (a panic in replay).
    #[test]
    fn an_absurd_phase_index_lands_on_the_last_place() {
        use crate::events::{PhaseEnd, PhaseStart, MAX_PHASES};
        let huge = 9_223_372_036_854_775_807;
        let mut m = RunModel::new();
        m.apply(&run_start(None));
        m.apply(&Event::PhaseStart(PhaseStart {
            t: 101.0,
            phase: huge,
            name: "x".into(),
            algorithm: "dpo".into(),
            steps: 3,
            global_step: 1,
        }));
        let mut s = step(2, 1.0);
        if let Event::Step(st) = &mut s {
            st.phase = huge;
        }
        m.apply(&s);
        m.apply(&Event::PhaseEnd(PhaseEnd {
            t: 102.0,
            phase: huge,
            steps: 3,
            global_step: 2,
            seconds: 1.0,
        }));
        assert_eq!(m.phases.len(), MAX_PHASES);
        assert_eq!(m.phase, Some(MAX_PHASES - 1));
        assert_eq!(m.current_phase().map(|p| p.name.as_str()), Some("x"));
        assert!(m.phases[MAX_PHASES - 1].ended);
        let mut resumed = run_start(Some(1));
        if let Event::RunStart(rs) = &mut resumed {
            if let Some(r) = rs.resumed_from.as_mut() {
                r.phase = huge;
            }
        }
        m.apply(&resumed);
        assert_eq!(m.phase, Some(MAX_PHASES - 1));
    }

    /// Found by tests/mutation.rs: planned steps near 2^64 in two phases
    /// overflowed the total.
    #[test]
    fn planned_steps_past_the_largest_integer_saturate() {
        let mut start = run_start(None);
        if let Event::RunStart(rs) = &mut start {
            let p = rs.phases[0].clone();
            rs.phases = vec![p.clone(), p];
            rs.phases[0].steps = u64::MAX;
            rs.phases[1].steps = 2;
        }
        let mut m = RunModel::new();
        m.apply(&start);
        assert_eq!(m.total_steps(), u64::MAX);
    }

    /// A traced run reads each checkpoint from the trainer's log and from
    /// the trace's: counted once, shown with a normalised path.
    #[test]
    fn a_checkpoint_heard_of_twice_counts_once() {
        use crate::events::{SnapshotEvent, SnapshotReason};
        let snap = |step: u64, path: &str| {
            Event::Snapshot(SnapshotEvent {
                t: 100.0 + step as f64,
                phase: 0,
                step,
                global_step: step,
                path: path.into(),
                reason: SnapshotReason::Cadence,
            })
        };
        let mut m = RunModel::new();
        let mut start = run_start(None);
        if let Event::RunStart(rs) = &mut start {
            rs.trace = Some(Box::new(crate::events::TracePlan {
                dirs: vec!["/out".into()],
                method: crate::events::ProbeMethod::Choice,
                probes: String::new(),
                questions_per_topic: 0,
                base: None,
            }));
        }
        m.apply(&start);
        m.apply(&snap(2, "/out/checkpoint-2"));
        m.apply(&snap(2, "/out/driftui/../checkpoint-2"));
        m.apply(&snap(4, "/out/other-4"));
        m.apply(&snap(4, "/out/driftui/../checkpoint-4"));
        m.apply(&snap(4, "/out/checkpoint-4"));
        assert_eq!(m.snapshots, 3);
        let steps: Vec<u64> = m.snapshot_events.iter().map(|s| s.global_step).collect();
        assert_eq!(steps, [2, 4, 4]);
        let said = m.status.as_ref().map(|s| s.text.as_str());
        assert_eq!(
            said,
            Some("snapshot (cadence) at step 4: /out/checkpoint-4")
        );
    }

    #[test]
    fn resumed_run_drops_steps_after_the_resume_point() {
        let mut m = RunModel::new();
        m.apply(&run_start(None));
        for g in 1..=8 {
            m.apply(&step(g, 1.0));
        }
        m.apply(&run_start(Some(5)));
        assert_eq!(m.global_step, 5);
        assert_eq!(m.series["loss"].last(), Some((5.0, 1.0)));
        for g in 6..=7 {
            m.apply(&step(g, 2.0));
        }
        let loss: Vec<(f64, f64)> = m.series["loss"]
            .recent()
            .map(|b| (b.x_first, b.min))
            .collect();
        assert_eq!(
            loss,
            vec![
                (1.0, 1.0),
                (2.0, 1.0),
                (3.0, 1.0),
                (4.0, 1.0),
                (5.0, 1.0),
                (6.0, 2.0),
                (7.0, 2.0)
            ]
        );
        // The clock still starts at the first run_start (100; last event 108).
        assert_eq!(m.clock.wall(), Some(8.0));
    }

    #[test]
    fn topic_points_stay_bounded_and_keep_each_phase_s_ends() {
        let mut track = TopicTrack::new([0.3; 3].into(), [0.0; 3].into());
        let n = MAX_TOPIC_POINTS as u64 + 10;
        for g in 0..n {
            let phase = usize::from(g >= n / 2);
            let mean = [g as f64, 0.0, 0.0].into();
            track.push_point(
                phase,
                Point {
                    global_step: g,
                    mean,
                    se: [0.0; 3].into(),
                },
            );
        }
        assert!(track.points.len() <= MAX_TOPIC_POINTS);
        let steps: Vec<u64> = track.points.iter().map(|(_, p)| p.global_step).collect();
        for must in [0, n / 2 - 1, n / 2, n - 1] {
            assert!(steps.contains(&must), "step {must} was dropped");
        }
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        // A repeated probe at a step replaces the earlier one.
        track.push_point(
            1,
            Point {
                global_step: n - 1,
                mean: [9.0; 3].into(),
                se: [0.0; 3].into(),
            },
        );
        assert_eq!(track.points.last().unwrap().1.mean, [9.0; 3].into());
    }

    #[test]
    fn rates_use_wall_time_between_steps() {
        let mut m = RunModel::new();
        m.apply(&run_start(None));
        for g in 1..=5 {
            m.apply(&step(g, 1.0));
        }
        // Steps one second apart, 10 tokens each.
        assert!((m.clock.steps_per_second().unwrap() - 1.0).abs() < 1e-9);
        assert!((m.clock.tokens_per_second().unwrap() - 10.0).abs() < 1e-9);
        assert!((m.eta().unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(m.clock.wall(), Some(5.0));
    }
}
