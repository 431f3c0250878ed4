//! Logs that other trainers write, read as driftui events.
//!
//! Each reader turns one trainer's log into the events of one phase, in the
//! trainer's own step numbers: `step` events (loss, lr, grad_norm and every
//! other number it logged), a `phase_start` carrying the planned steps once
//! the log says them, and a `run_end` once it says training is over. A
//! [`pipeline::Pipeline`] puts one such phase after another (a multi-stage
//! run) and adds a trace's probes.
//!
//! | format | file | read |
//! | --- | --- | --- |
//! | driftui (its TRL callback, or a native run) | `events.jsonl` | appended lines |
//! | LLaMA-Factory | `trainer_log.jsonl` | appended lines |
//! | transformers / TRL | `checkpoint-N/trainer_state.json`, `trainer_state.json` | the newest whole file, as checkpoints appear |
//! | torchtune (`DiskLogger`) | `log_<unix time>.txt`, also under `logs/` | appended lines `Step N \| name:value ...` |
//! | verl (`FileLogger`) | `<project>/<experiment>.jsonl` | appended lines `{"step": N, "data": {...}}` |
//!
//! Metric names: TRL's stay as they are (`rewards/margins`, `logps/chosen`);
//! another program's name for the same quantity maps onto TRL's (LLaMA-Factory's
//! `accuracy` is TRL's `rewards/accuracies` copied; torchtune's DPO
//! `log_probs/chosen` is TRL's `logps/chosen`: the batch mean of summed
//! completion log-probs; verl's `train/loss` is the loss). Every other
//! number is kept under its own name and can be plotted.

pub mod lines;
pub mod pipeline;
pub mod trainer_state;

use super::watch::FollowUpdate;
use super::{Event, PhaseStart, RunEnd, RunStatus, StepEvent};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The trainers whose logs driftui reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// driftui's own `events.jsonl` (a native run, or the TRL callback's).
    Driftui,
    LlamaFactory,
    /// transformers' `trainer_state.json` (TRL, LLaMA-Factory's checkpoints, any `Trainer`).
    TrainerState,
    Torchtune,
    Verl,
}

impl Format {
    /// The program, as a user knows it.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Driftui => "driftui events.jsonl",
            Format::LlamaFactory => "LLaMA-Factory trainer_log.jsonl",
            Format::TrainerState => "transformers/TRL trainer_state.json",
            Format::Torchtune => "torchtune disk log",
            Format::Verl => "verl file log",
        }
    }
}

/// A log found in a trainer's output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLog {
    pub format: Format,
    /// The file (for `TrainerState`: the output directory, whose newest
    /// checkpoint is read).
    pub path: PathBuf,
}

/// What [`find_log`] looks for, for its error message.
pub const EXPECTED: &str = "events.jsonl (driftui, or its TRL callback in integrations/), \
     trainer_log.jsonl (LLaMA-Factory), trainer_state.json or checkpoint-N/trainer_state.json \
     (transformers, TRL), log_*.txt or logs/log_*.txt (torchtune's disk logger), \
     or *.jsonl of {\"step\", \"data\"} records (verl's file logger)";

/// The log of a trainer's output directory `dir` (or the log file `dir`
/// names), in order of preference: driftui's own (the callback writes every
/// logging step), LLaMA-Factory's (every logging step), transformers'
/// (only at saves), torchtune's, verl's. `None` when there is none (yet).
pub fn find_log(dir: &Path) -> Option<FoundLog> {
    if dir.is_file() {
        return classify_file(dir);
    }
    let found = |format, path: PathBuf| Some(FoundLog { format, path });
    let events = dir.join(super::LOG_FILE);
    if events.is_file() {
        return found(Format::Driftui, events);
    }
    let lf = dir.join("trainer_log.jsonl");
    if lf.is_file() {
        return found(Format::LlamaFactory, lf);
    }
    if trainer_state::has_state(dir) {
        return found(Format::TrainerState, dir.to_path_buf());
    }
    if let Some(p) = newest_torchtune_log(dir).or_else(|| newest_torchtune_log(&dir.join("logs"))) {
        return found(Format::Torchtune, p);
    }
    verl_log(dir).and_then(|p| found(Format::Verl, p))
}

/// What a log file is, by its name and first line.
fn classify_file(path: &Path) -> Option<FoundLog> {
    let name = path.file_name()?.to_string_lossy().to_string();
    let format = if name == "trainer_log.jsonl" {
        Format::LlamaFactory
    } else if name == "trainer_state.json" {
        return Some(FoundLog {
            format: Format::TrainerState,
            path: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        });
    } else if name.starts_with("log_") && name.ends_with(".txt") {
        Format::Torchtune
    } else if name.ends_with(".jsonl") && lines::is_verl_log(path) {
        Format::Verl
    } else {
        Format::Driftui
    };
    Some(FoundLog {
        format,
        path: path.to_path_buf(),
    })
}

/// torchtune names a log by the time it was opened: the newest is the run.
fn newest_torchtune_log(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stamp) = name
            .strip_prefix("log_")
            .and_then(|r| r.strip_suffix(".txt"))
            .and_then(|r| r.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(s, _)| stamp > *s) {
            best = Some((stamp, e.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// verl writes `<root>/<project>/<experiment>.jsonl`: a JSONL file here or
/// one directory down whose first line is a `{"step", "data"}` record.
fn verl_log(dir: &Path) -> Option<PathBuf> {
    fn look(d: &Path, into: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jsonl") && lines::is_verl_log(&p) {
                    into.push(p);
                }
            }
        }
    }
    let mut candidates = Vec::new();
    look(dir, &mut candidates);
    if candidates.is_empty() {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                look(&e.path(), &mut candidates);
            }
        }
    }
    candidates.sort();
    candidates.pop()
}

/// A directory with no log driftui reads: say what is there and what was
/// looked for.
pub fn not_a_log_error(dir: &Path) -> anyhow::Error {
    let mut seen: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let mut n = e.file_name().to_string_lossy().to_string();
                    if e.path().is_dir() {
                        n.push('/');
                    }
                    n
                })
                .collect()
        })
        .unwrap_or_default();
    seen.sort();
    let found = if seen.is_empty() {
        "it is empty".to_string()
    } else if seen.len() > 12 {
        format!(
            "it holds {}, ... ({} entries)",
            seen[..12].join(", "),
            seen.len()
        )
    } else {
        format!("it holds {}", seen.join(", "))
    };
    anyhow::anyhow!(
        "{} has no training log driftui reads: {found}; expected {EXPECTED}",
        dir.display()
    )
}

/// A reader of one trainer's log, as the events of one phase.
pub trait PhaseLog: Send + 'static {
    /// What was logged since the last poll.
    fn poll(&mut self) -> Result<FollowUpdate>;
    /// The file or directory read.
    fn path(&self) -> &Path;
}

impl<F: super::watch::LogFormat> PhaseLog for super::watch::Follower<F> {
    fn poll(&mut self) -> Result<FollowUpdate> {
        super::watch::Follower::poll(self)
    }
    fn path(&self) -> &Path {
        super::watch::Follower::path(self)
    }
}

/// The reader for a log that [`find_log`] found.
pub fn open(found: &FoundLog) -> Box<dyn PhaseLog> {
    use super::watch::Follower;
    match found.format {
        Format::Driftui => Box::new(Follower::events_jsonl(&found.path)),
        Format::LlamaFactory => Box::new(Follower::new(
            &found.path,
            lines::Lines::new(&found.path, lines::LlamaFactory),
        )),
        Format::Torchtune => Box::new(Follower::new(
            &found.path,
            lines::Lines::new(&found.path, lines::Torchtune),
        )),
        Format::Verl => Box::new(Follower::new(
            &found.path,
            lines::Lines::new(&found.path, lines::Verl),
        )),
        Format::TrainerState => Box::new(trainer_state::TrainerStateLog::new(&found.path)),
    }
}

/// Read a whole log at once (the report, tests): the events of one phase
/// and the number of lines that could not be read.
pub fn read_all(found: &FoundLog) -> Result<(Vec<Event>, u64)> {
    let line_format: Box<dyn lines::LineFormat> = match found.format {
        Format::Driftui => {
            let (events, report) = super::read_log(&found.path)?;
            return Ok((events, report.skipped.len() as u64));
        }
        Format::TrainerState => {
            let u = trainer_state::TrainerStateLog::new(&found.path).poll()?;
            if u.missing {
                bail!(
                    "{} has no readable trainer_state.json",
                    found.path.display()
                );
            }
            return Ok((u.events, u.skipped));
        }
        Format::LlamaFactory => Box::new(lines::Lines::new(&found.path, lines::LlamaFactory)),
        Format::Torchtune => Box::new(lines::Lines::new(&found.path, lines::Torchtune)),
        Format::Verl => Box::new(lines::Lines::new(&found.path, lines::Verl)),
    };
    let mut l = line_format;
    let bytes = std::fs::read(&found.path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", found.path.display()))?;
    let mut out = Vec::new();
    l.feed_bytes(&bytes, &mut out)?;
    l.finish(&mut out);
    Ok((out, l.skipped_lines()))
}

/// Metric values of one logged step, by name, and what becomes of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logged {
    pub step: u64,
    /// Seconds since the Unix epoch, when the log says or lets us estimate.
    pub t: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// Names another program uses for TRL's quantities (same meaning, checked
/// in their sources): (theirs, TRL's).
pub const RENAMES: [(&str, &str); 10] = [
    ("learning_rate", "lr"),
    // LLaMA-Factory's LogCallback copies TRL's log entry under short names.
    ("accuracy", "rewards/accuracies"),
    // torchtune's DPO recipes: batch means of summed completion log-probs.
    ("log_probs/chosen", "logps/chosen"),
    ("log_probs/rejected", "logps/rejected"),
    // verl's SFT trainer.
    ("train/loss", "loss"),
    ("train/lr", "lr"),
    ("train/grad_norm", "grad_norm"),
    // verl's PPO/GRPO actor.
    ("actor/pg_loss", "loss"),
    ("actor/lr", "lr"),
    ("actor/grad_norm", "grad_norm"),
];

/// A step event of phase 0 from what a program logged: `loss`, `lr` and
/// `grad_norm` by TRL's names (NaN when not logged: nothing is drawn), the
/// rest as metrics. `tokens` is this step's count when the log gives one.
pub fn step_event(logged: Logged, seconds: f64, tokens: u64) -> StepEvent {
    let mut m = BTreeMap::new();
    for (k, v) in logged.metrics {
        let name = RENAMES
            .iter()
            .find(|(from, _)| *from == k)
            .map_or(k.clone(), |(_, to)| to.to_string());
        // The first name wins when two map onto one (verl logs train/loss only).
        m.entry(name).or_insert(v);
    }
    let mut take = |k: &str| m.remove(k).unwrap_or(f64::NAN);
    let loss = take("loss");
    let lr = take("lr");
    let grad_norm = take("grad_norm");
    StepEvent {
        t: logged.t.unwrap_or(f64::NAN),
        phase: 0,
        step: logged.step,
        global_step: logged.step,
        loss,
        lr,
        grad_norm,
        tokens,
        seconds,
        metrics: m,
    }
}

/// The `phase_start` a reader sends once the log says how many steps are planned.
pub fn plan_event(t: f64, steps: u64) -> Event {
    Event::PhaseStart(PhaseStart {
        t,
        phase: 0,
        name: String::new(),
        algorithm: String::new(),
        steps,
        global_step: 0,
    })
}

/// The `run_end` a reader sends once the log reaches its planned last step.
pub fn end_event(t: f64, step: u64) -> Event {
    Event::RunEnd(RunEnd {
        t,
        status: RunStatus::Completed,
        global_step: step,
        seconds: 0.0,
        message: None,
    })
}

/// Modification time of a file, seconds since the Unix epoch.
pub fn mtime(path: &Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    m.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}
