//! The event stream: everything the trainer reports, as it is written to
//! `RUN_DIR/events.jsonl` and fed to the dashboard (live, replayed or watched).
//!
//! One JSON object per line, tagged by `kind`. The first record of a log is a
//! `run_start` carrying the schema version. Step metrics use TRL's names
//! (`rewards/chosen`, `logps/rejected`, `kl`, ...) so that logs from other
//! trainers map onto the same panels.

/// A closed set of names the log writes as strings: an enum whose serde
/// names, `name()`, `Display` and `FromStr` come from one list, so the log's
/// spelling cannot drift from the code's.
macro_rules! log_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// The name as the log writes it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: widths and alignment apply as to a `str`.
                f.pad(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "\"{other}\" is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use log_names;

pub mod foreign;
mod log;
mod stance;
pub mod watch;

pub use log::{read_log, EventLog, LogReader, ReadReport};
pub use stance::{PerStance, Stance, StanceDistribution};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// File name of a run's event log.
pub const LOG_FILE: &str = "events.jsonl";

/// The schema version this build writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = 1;

/// Phases a reader makes room for: far more than any recipe has, few enough
/// that the phase index of a corrupt line cannot exhaust memory (a larger
/// one is read as the last).
pub const MAX_PHASES: usize = 1025;

log_names! {
    /// How a probe measured stances.
    pub enum ProbeMethod {
        /// The model's own probability of each stance label.
        Choice = "choice",
        /// Sampled answers, each scored by a judge.
        Generate = "generate",
    }
}

log_names! {
    /// Why a probe ran.
    pub enum ProbeReason {
        PhaseStart = "phase_start",
        /// Every `[probe] every` steps.
        Periodic = "periodic",
        PhaseEnd = "phase_end",
        /// The user asked for it.
        Manual = "manual",
    }
}

log_names! {
    /// Why a snapshot was written.
    pub enum SnapshotReason {
        /// Every `snapshot_every` steps.
        Cadence = "cadence",
        /// The user asked for it.
        Manual = "manual",
        PhaseEnd = "phase_end",
        /// The run was stopped.
        Stop = "stop",
        /// The frozen reference model of a run's first, preference, phase.
        Reference = "reference",
    }
}

log_names! {
    /// How serious an alert is.
    pub enum AlertLevel {
        Info = "info",
        Warning = "warning",
        Error = "error",
    }
}

log_names! {
    /// How a run ended.
    pub enum RunStatus {
        Completed = "completed",
        Stopped = "stopped",
        Failed = "failed",
    }
}

/// One record of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    RunStart(RunStart),
    PhaseStart(PhaseStart),
    Step(StepEvent),
    Probe(ProbeEvent),
    Snapshot(SnapshotEvent),
    Pause(Marker),
    Resume(Marker),
    Alert(Alert),
    PhaseEnd(PhaseEnd),
    RunEnd(RunEnd),
    /// A sample of an RL step's rollouts: what the policy now writes.
    Rollouts(RolloutsEvent),
}

impl Event {
    /// Wall-clock time of the event, seconds since the Unix epoch.
    pub fn time(&self) -> f64 {
        match self {
            Event::RunStart(e) => e.t,
            Event::PhaseStart(e) => e.t,
            Event::Step(e) => e.t,
            Event::Probe(e) => e.t,
            Event::Snapshot(e) => e.t,
            Event::Pause(e) | Event::Resume(e) => e.t,
            Event::Alert(e) => e.t,
            Event::PhaseEnd(e) => e.t,
            Event::RunEnd(e) => e.t,
            Event::Rollouts(e) => e.t,
        }
    }

    /// The `kind` tag as written in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStart(_) => "run_start",
            Event::PhaseStart(_) => "phase_start",
            Event::Step(_) => "step",
            Event::Probe(_) => "probe",
            Event::Snapshot(_) => "snapshot",
            Event::Pause(_) => "pause",
            Event::Resume(_) => "resume",
            Event::Alert(_) => "alert",
            Event::PhaseEnd(_) => "phase_end",
            Event::RunEnd(_) => "run_end",
            Event::Rollouts(_) => "rollouts",
        }
    }
}

/// Where each phase after the first begins on the global step axis, with its
/// name: the boundaries the dashboard's charts and the report's plots draw.
/// `phases` gives each phase's name and start (when known), in order.
pub fn phase_boundaries<'a>(
    phases: impl IntoIterator<Item = (&'a str, Option<u64>)>,
) -> Vec<(u64, &'a str)> {
    phases
        .into_iter()
        .skip(1)
        .filter_map(|(name, start)| Some((start?, name)))
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a run is going to do, written once at its start (and again, with
/// `resumed_from`, when a run is resumed from a snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub schema: u32,
    pub t: f64,
    pub run: String,
    pub seed: u64,
    /// The recipe file's text, verbatim.
    #[serde(default)]
    pub recipe: String,
    pub model: ModelInfo,
    pub phases: Vec<PhasePlan>,
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Set when this run continues from a snapshot: the log already holds the
    /// steps up to this point, and a reader drops any it saw after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<Box<ResumePoint>>,
    /// The trainer's own configuration, for a run another program trained
    /// (the TRL callback writes `TrainingArguments` here as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Box<serde_json::Value>>,
    /// Set in the log of a trace: the runs it probes (`driftui trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Box<TracePlan>>,
}

/// What a trace probes: other trainers' output directories, one phase
/// each, and how their checkpoints are probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracePlan {
    /// The output directories in phase order; a relative one is relative
    /// to the directory of the trace's log.
    pub dirs: Vec<String>,
    pub method: ProbeMethod,
    /// The probe set's file, empty for the built-in set.
    #[serde(default)]
    pub probes: String,
    /// Questions per topic (0: all of them).
    #[serde(default)]
    pub questions_per_topic: usize,
    /// The base model of adapter checkpoints, when the user named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// Where a resumed run picked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub phase: usize,
    pub step: u64,
    pub global_step: u64,
    /// The snapshot resumed from, as the user named it.
    pub snapshot: String,
    /// The run directory the snapshot belongs to, when the run was resumed
    /// into a new directory (`--output`); its log up to here was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run: Option<String>,
}

/// The model being trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelInfo {
    pub source: String,
    pub architecture: String,
    pub parameters: u64,
    pub trainable: u64,
    pub dtype: String,
    pub device: String,
}

/// One phase as planned at the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhasePlan {
    pub name: String,
    pub algorithm: String,
    pub steps: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseStart {
    pub t: f64,
    /// Index into `RunStart::phases`.
    pub phase: usize,
    pub name: String,
    pub algorithm: String,
    pub steps: u64,
    /// Global step before this phase's first step.
    pub global_step: u64,
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub t: f64,
    pub phase: usize,
    /// 1-based step within the phase.
    pub step: u64,
    /// 1-based step over the whole run, all phases on one axis.
    pub global_step: u64,
    #[serde(with = "finite")]
    pub loss: f64,
    pub lr: f64,
    #[serde(with = "finite")]
    pub grad_norm: f64,
    /// Tokens processed in this step (completion and prompt).
    pub tokens: u64,
    /// Wall time of this step.
    pub seconds: f64,
    /// The algorithm's metrics under TRL's names.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// A bounded sample of one RL step's rollouts (one prompt's group), logged
/// so the dashboard and a replay show what the policy now writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutsEvent {
    pub t: f64,
    pub phase: usize,
    /// 1-based step within the phase.
    pub step: u64,
    pub global_step: u64,
    pub samples: Vec<Rollout>,
}

/// One sampled completion and what it earned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub prompt: String,
    pub completion: String,
    /// The reward source's score (NaN written as null).
    #[serde(with = "finite")]
    pub reward: f64,
    #[serde(with = "finite")]
    pub advantage: f64,
    /// Completion tokens (the end-of-turn token included when it ended).
    pub tokens: usize,
    /// Whether it ended with an end-of-turn token (not cut at the length).
    pub finished: bool,
}

/// Stance distributions over the probe set at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeEvent {
    pub t: f64,
    pub phase: usize,
    pub step: u64,
    pub global_step: u64,
    pub method: ProbeMethod,
    pub reason: ProbeReason,
    pub topics: Vec<TopicStance>,
    /// Wall time the probe took.
    pub seconds: f64,
    /// Set when the probe failed; `topics` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the probe asked only the periodic subset of the probe set
    /// (`[probe] questions_per_topic`); false (and absent) for the whole set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub subset: bool,
}

/// One question's stance at one probe: what a paired drift (the same
/// questions at both ends) and its bootstrap interval are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QuestionScore {
    pub id: String,
    /// The question's distribution: the mean over its label orderings,
    /// wordings and (`generate`) sampled answers.
    pub p: StanceDistribution,
    /// `generate`: one distribution per sampled answer (the bootstrap
    /// resamples them too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<StanceDistribution>,
    /// Standard deviation over the question's wordings (its paraphrases),
    /// where it has more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<PerStance<f64>>,
    /// The question is in the run's periodic subset: the questions every
    /// point of a drift series is measured on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub periodic: bool,
}

/// Mean stance vector of one topic, over its questions, with standard errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TopicStance {
    pub topic: String,
    /// The stance distribution averaged over the topic's questions.
    pub mean: StanceDistribution,
    /// Standard error of each mean over the topic's questions (and samples).
    pub se: PerStance<f64>,
    /// Number of (question, sample) scores averaged.
    pub n: u32,
    /// Uncalibrated means, where the method calibrates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<StanceDistribution>,
    /// Each question's scores. Logs written before they were logged have
    /// none; their drift is computed from the means, unpaired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<QuestionScore>,
    /// Mean over the topic's questions of the standard deviation over each
    /// question's wordings, where the probe set has paraphrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paraphrase_sd: Option<PerStance<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEvent {
    pub t: f64,
    pub phase: usize,
    pub step: u64,
    pub global_step: u64,
    /// Directory of the snapshot, relative to the run directory.
    pub path: String,
    pub reason: SnapshotReason,
}

/// A pause or resume of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub t: f64,
    pub global_step: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub t: f64,
    pub level: AlertLevel,
    pub message: String,
    #[serde(default)]
    pub global_step: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseEnd {
    pub t: f64,
    pub phase: usize,
    pub steps: u64,
    pub global_step: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub t: f64,
    pub status: RunStatus,
    pub global_step: u64,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// JSON has no NaN or infinity: write them as `null` and read `null` back as NaN.
mod finite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_the_later_phases_that_have_started() {
        let phases = [("sft", Some(0)), ("dpo", Some(120)), ("kto", None)];
        assert_eq!(phase_boundaries(phases), vec![(120, "dpo")]);
        assert_eq!(phase_boundaries([("sft", Some(0))]), vec![]);
    }

    #[test]
    fn step_metrics_sit_at_top_level_under_trl_names() {
        let mut metrics = BTreeMap::new();
        metrics.insert("rewards/margins".to_string(), 0.25);
        let e = Event::Step(StepEvent {
            t: 1.0,
            phase: 1,
            step: 3,
            global_step: 13,
            loss: 0.5,
            lr: 1e-4,
            grad_norm: f64::NAN,
            tokens: 100,
            seconds: 0.1,
            metrics,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with(r#"{"kind":"step","#), "{line}");
        assert!(line.contains(r#""rewards/margins":0.25"#), "{line}");
        assert!(line.contains(r#""grad_norm":null"#), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        match back {
            Event::Step(s) => {
                assert!(s.grad_norm.is_nan());
                assert_eq!(s.metrics["rewards/margins"], 0.25);
                assert_eq!(s.global_step, 13);
            }
            other => panic!("read back {other:?}"),
        }
    }
}
