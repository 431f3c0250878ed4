//! `driftui trace DIR...`: probe the checkpoints another trainer writes, as
//! they land, into a log of the trace's own.
//!
//! ```text
//! DIR/                      the trainer's output directory (never written)
//!   checkpoint-2/ ...       TRL, LLaMA-Factory: probed once trainer_state.json is there
//!   epoch_0/ ...            torchtune: once config.json is copied in (last)
//!   driftui/events.jsonl    the trace's log: run_start with the plan, and per
//!                           checkpoint a snapshot (its path) then a probe
//! ```
//!
//! A checkpoint is probed once it is complete: the file its trainer writes
//! last is there ([`marker`]) and no file in it changed size for
//! [`TraceOptions::settle`]. Checkpoints are probed in step order, each
//! exactly once; a restarted trace reads its log and skips those probed
//! before (failed ones are tried again: the user may have fixed the cause).
//! A checkpoint that cannot be probed (corrupted, an architecture driftui
//! does not run, an adapter whose base is missing, shards that need a
//! converter) gets a probe event with its error and an alert, and the trace
//! goes on.

use super::checkpoint::{default_probe_set, load_checkpoint};
use super::judge::{check_judge, EndpointJudge, Judge, LocalJudge};
use super::set::{builtin_judge_cases, ProbeSet};
use super::{Method, Prober};
use crate::events::foreign::{find_log, open, PhaseLog};
use crate::events::{
    self, Alert, AlertLevel, Event, EventLog, ModelInfo, PhasePlan, ProbeEvent, ProbeMethod,
    ProbeReason, RunEnd, RunStart, RunStatus, SnapshotEvent, SnapshotReason, TracePlan,
};
use crate::model::generate::SamplingParams;
use crate::model::{LoadOptions, LoadedModel};
use crate::rundir::RunDir;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::rundir::view::TRACE_DIR;

/// How to trace.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// The trainers' output directories, one phase each.
    pub dirs: Vec<PathBuf>,
    /// Where the trace's log goes (default: `DIRS[0]/driftui`).
    pub out: Option<PathBuf>,
    /// Base model of adapter checkpoints, instead of their `adapter_config.json`'s.
    pub base: Option<String>,
    /// Probe set (JSONL); default: the shipped one.
    pub probes: Option<PathBuf>,
    pub method: ProbeMethod,
    /// Questions per topic (0: all).
    pub questions_per_topic: usize,
    /// `generate`: the judge (a model source or `openai:URL#MODEL`).
    pub judge: Option<String>,
    pub samples: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    /// How long a checkpoint's files must keep their sizes to count as written.
    pub settle: Duration,
    /// Probe what is complete now and stop, without waiting for more.
    pub once: bool,
}

impl TraceOptions {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            out: None,
            base: None,
            probes: None,
            method: ProbeMethod::Choice,
            questions_per_topic: 0,
            judge: None,
            samples: 5,
            temperature: 0.7,
            top_p: 1.0,
            max_tokens: 256,
            settle: Duration::from_secs(2),
            once: false,
        }
    }

    /// The trace's folder.
    pub fn trace_dir(&self) -> PathBuf {
        match &self.out {
            Some(o) => o.clone(),
            None => self
                .dirs
                .first()
                .map(|d| d.join(TRACE_DIR))
                .unwrap_or_else(|| PathBuf::from(TRACE_DIR)),
        }
    }
}

/// What kind of checkpoint a directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A Hugging Face model directory (safetensors).
    Model,
    /// A PEFT adapter over a base model.
    Adapter,
    /// Weights driftui cannot read until converted: what to run.
    NeedsConverter(String),
}

/// A checkpoint found in an output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub phase: usize,
    /// The directory to load.
    pub dir: PathBuf,
    /// Its name relative to the output directory (`checkpoint-4`, `epoch_0`).
    pub name: String,
    /// Its step in the trainer's own count.
    pub step: u64,
    pub kind: Kind,
    /// The file whose presence says the trainer finished writing it.
    pub marker: PathBuf,
}

fn has_model(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

fn has_adapter(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file() && dir.join("adapter_model.safetensors").is_file()
}

/// What a checkpoint directory holds, and the command that would make a
/// loadable model of weights driftui cannot read.
fn kind_of(dir: &Path) -> Kind {
    if has_adapter(dir) && !dir.join("model.safetensors").is_file() {
        return Kind::Adapter;
    }
    if has_model(dir) {
        return Kind::Model;
    }
    let d = dir.display();
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    let any = |f: &dyn Fn(&str) -> bool| entries.iter().any(|e| f(e));
    if dir.join("zero_to_fp32.py").is_file()
        || dir.join("latest").is_file() && any(&|e| e.starts_with("global_step"))
    {
        return Kind::NeedsConverter(format!(
            "DeepSpeed ZeRO shards without gathered weights: run `python {d}/zero_to_fp32.py {d} {d}-fp32 --safe_serialization` \
             (or train with stage3_gather_16bit_weights_on_model_save) and trace the result"
        ));
    }
    if any(&|e| e.starts_with("pytorch_model_fsdp") || e.starts_with("model_fsdp")) {
        return Kind::NeedsConverter(format!(
            "FSDP sharded weights: merge them with `accelerate merge-weights {d}/pytorch_model_fsdp_0 {d}-merged` \
             (or save with fsdp_state_dict_type FULL_STATE_DICT)"
        ));
    }
    if any(&|e| e.starts_with("model_world_size_") && e.ends_with(".pt")) {
        return Kind::NeedsConverter(format!(
            "verl FSDP shards: merge them with `python -m verl.model_merger merge --backend fsdp --local_dir {d} --target_dir {d}/huggingface`"
        ));
    }
    if any(&|e| e.ends_with(".distcp")) || dir.join(".metadata").is_file() {
        return Kind::NeedsConverter(format!(
            "a torch distributed checkpoint (DCP): convert it with `python -m torch.distributed.checkpoint.format_utils dcp_to_torch {d} {d}.pt`, \
             then save it with save_pretrained as safetensors"
        ));
    }
    if any(&|e| e.ends_with(".bin") && e.contains("model")) {
        return Kind::NeedsConverter(format!(
            "weights in PyTorch's pickle format (pytorch_model.bin) in {d}: driftui reads safetensors; \
             save with save_pretrained(..., safe_serialization=True)"
        ));
    }
    Kind::NeedsConverter(format!(
        "{d} holds no model driftui reads (config.json with model.safetensors, or adapter_config.json with adapter_model.safetensors)"
    ))
}

/// The checkpoints in output directory `dir` (phase `phase`): TRL's and
/// LLaMA-Factory's `checkpoint-N/`, torchtune's `epoch_N/`, verl's
/// `global_step_N/actor/`, and a model or adapter saved in `dir` itself
/// (the trainer's final save). `last_step` is the phase's last logged or
/// planned step (for a final model and torchtune's epochs).
pub fn checkpoints(dir: &Path, phase: usize, last_step: u64) -> Vec<Checkpoint> {
    let mut out = Vec::new();
    let mut epochs = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        if let Some(n) = crate::events::foreign::trainer_state::checkpoint_step(&name) {
            out.push(Checkpoint {
                phase,
                marker: path.join("trainer_state.json"),
                kind: kind_of(&path),
                dir: path,
                name,
                step: n,
            });
        } else if let Some(n) = name
            .strip_prefix("epoch_")
            .and_then(|n| n.parse::<u64>().ok())
        {
            epochs.push((n, path, name));
        } else if let Some(n) = name
            .strip_prefix("global_step_")
            .and_then(|n| n.parse::<u64>().ok())
        {
            let actor = path.join("actor");
            let hf = actor.join("huggingface");
            let (dir, kind) = if has_model(&hf) {
                (hf, Kind::Model)
            } else {
                (actor.clone(), kind_of(&actor))
            };
            out.push(Checkpoint {
                phase,
                // verl names the step it finished saving, last.
                marker: dir.join("config.json"),
                dir,
                name: format!("{name}/actor"),
                step: n,
                kind,
            });
        }
    }
    // torchtune saves epoch_N/ at the end of epoch N (from 0) and logs no
    // plan: with E epochs saved and the log at step S, epoch N ends near
    // step S·(N+1)/E.
    let count = epochs.iter().map(|(n, _, _)| n + 1).max().unwrap_or(0);
    for (n, path, name) in epochs {
        let step = if last_step > 0 && count > 0 {
            (last_step as f64 * (n + 1) as f64 / count as f64).round() as u64
        } else {
            n + 1
        };
        let kind = kind_of(&path);
        let marker = match kind {
            Kind::Adapter => path.join("adapter_config.json"),
            _ => path.join("config.json"),
        };
        out.push(Checkpoint {
            phase,
            marker,
            dir: path,
            name,
            step,
            kind,
        });
    }
    if has_model(dir) || has_adapter(dir) {
        let step = out.iter().map(|c| c.step).max().unwrap_or(0).max(last_step);
        out.push(Checkpoint {
            phase,
            marker: if has_adapter(dir) && !has_model(dir) {
                dir.join("adapter_model.safetensors")
            } else {
                dir.join("config.json")
            },
            kind: kind_of(dir),
            dir: dir.to_path_buf(),
            name: "final".into(),
            step,
        });
    }
    out.sort_by(|a, b| a.step.cmp(&b.step).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Every file under `dir` with its size (what "still being written" looks at).
fn sizes(dir: &Path, final_model: bool) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                // A final model lives beside the checkpoints and the trace:
                // only its own files count.
                if !final_model {
                    stack.push(p);
                }
            } else {
                out.insert(p, meta.len());
            }
        }
    }
    out
}

/// The last part of a path a person reads: `sft_out/checkpoint-4`.
fn label(dir: &Path, ck: &Checkpoint) -> String {
    let phase_dir = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    format!("{phase_dir}/{}", ck.name)
}

/// A path as the trace's log writes it: relative to the trace's folder when
/// the checkpoint lies beside it (the usual `DIR/driftui` and `DIR/checkpoint-N`),
/// so a copied output directory stays whole; absolute otherwise.
fn log_path(trace_dir: &Path, ck: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, c) = (abs(trace_dir), abs(ck));
    if let Some(parent) = t.parent() {
        if let Ok(rest) = c.strip_prefix(parent) {
            return Path::new("..").join(rest).display().to_string();
        }
    }
    c.display().to_string()
}

/// Progress of a trace, for the headless lines and the tests.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceNews {
    /// A checkpoint was found but is not complete yet.
    Waiting {
        checkpoint: String,
        why: String,
    },
    /// A checkpoint was probed (or failed): its times, and what is left.
    Probed {
        checkpoint: String,
        phase: usize,
        step: u64,
        /// Seconds to find and check it, to load it, and to probe it.
        scan: f64,
        load: f64,
        probe: f64,
        error: Option<String>,
        /// Complete checkpoints waiting, and the time they will take at this pace.
        queued: usize,
        eta: Option<f64>,
    },
    Note(String),
}

/// What a finished trace did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    pub trace_dir: PathBuf,
    pub probed: usize,
    pub failed: usize,
    pub skipped_as_done: usize,
    /// The trainers reached their last steps.
    pub trainers_done: bool,
}

struct PhaseState {
    dir: PathBuf,
    log: Option<Box<dyn PhaseLog>>,
    last_step: u64,
    planned: Option<u64>,
    finished: bool,
}

/// The probe method with what it needs, kept across checkpoints.
struct ProbeSetup {
    set: ProbeSet,
    judge: Option<Box<dyn Judge>>,
}

/// The directories must exist and look like trainers' output: a log or a
/// checkpoint driftui reads, or nothing yet (a trainer that just started).
pub fn check_dirs(opts: &TraceOptions) -> Result<()> {
    if opts.dirs.is_empty() {
        bail!("name at least one output directory to trace");
    }
    for d in &opts.dirs {
        if !d.is_dir() {
            bail!(
                "{} is not a directory (driftui trace takes trainers' output directories)",
                d.display()
            );
        }
        let empty = std::fs::read_dir(d)
            .map(|mut r| r.next().is_none())
            .unwrap_or(true);
        if !empty && find_log(d).is_none() && checkpoints(d, 0, 0).is_empty() {
            let e = crate::events::foreign::not_a_log_error(d);
            bail!("{e}; nor a checkpoint (checkpoint-N/, epoch_N/, global_step_N/, or a model or adapter directory)");
        }
    }
    Ok(())
}

/// Run a trace until the trainers end (or, with `once`, until what is
/// complete now is probed), or `stop` is set. `news` hears of progress.
pub fn run_trace(
    opts: &TraceOptions,
    stop: &AtomicBool,
    news: &mut dyn FnMut(TraceNews),
) -> Result<TraceSummary> {
    check_dirs(opts)?;
    let trace_dir = opts.trace_dir();
    std::fs::create_dir_all(&trace_dir)
        .with_context(|| format!("cannot create the trace's folder {}", trace_dir.display()))?;
    let run = RunDir::at(&trace_dir);
    let mut setup = probe_setup(opts)?;
    // What an earlier trace in this folder probed.
    let mut done: HashSet<String> = HashSet::new();
    let existing = run.has_log();
    if existing {
        let (events, _) = events::read_log(&run.events_log())?;
        let mut snap_at: HashMap<(usize, u64), String> = HashMap::new();
        for e in &events {
            match e {
                Event::Snapshot(s) => {
                    snap_at.insert((s.phase, s.step), s.path.clone());
                }
                Event::Probe(p) if p.error.is_none() => {
                    if let Some(path) = snap_at.get(&(p.phase, p.step)) {
                        done.insert(path.clone());
                    }
                }
                _ => {}
            }
        }
    }
    let mut log = EventLog::open(&run.events_log())?;
    let mut phases: Vec<PhaseState> = opts
        .dirs
        .iter()
        .map(|d| PhaseState {
            dir: d.clone(),
            log: None,
            last_step: 0,
            planned: None,
            finished: false,
        })
        .collect();
    poll_logs(&mut phases);
    if existing {
        log.append(&Event::Alert(Alert {
            t: events::now(),
            level: AlertLevel::Info,
            message: format!(
                "trace restarted: {} checkpoints probed before are skipped",
                done.len()
            ),
            global_step: 0,
        }))?;
    } else {
        log.append(&Event::RunStart(trace_start(opts, &trace_dir, &phases)))?;
    }
    let skipped_as_done = done.len();
    if let Some(judge) = &mut setup.judge {
        match check_judge(judge.as_mut(), &builtin_judge_cases()) {
            Ok(c) => {
                let level = if c.trusted() {
                    AlertLevel::Info
                } else {
                    AlertLevel::Warning
                };
                let message = c.summary(&judge.name());
                news(TraceNews::Note(message.clone()));
                log.append(&Event::Alert(Alert {
                    t: events::now(),
                    level,
                    message,
                    global_step: 0,
                }))?;
            }
            Err(e) => news(TraceNews::Note(format!(
                "the judge could not be checked: {e:#}"
            ))),
        }
    }
    // Changes under the directories wake the loop; a slow poll covers file
    // systems without notifications.
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let own = std::fs::canonicalize(&trace_dir).unwrap_or_else(|_| trace_dir.clone());
    let mut watcher = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
        // Reads (ours among them) and the trace's own writes change nothing.
        let news = match &r {
            Ok(e) => {
                !matches!(e.kind, notify::EventKind::Access(_))
                    && !e.paths.iter().all(|p| p.starts_with(&own))
            }
            Err(_) => true,
        };
        if news {
            let _ = wake_tx.send(());
        }
    })
    .context("cannot start the file watcher")?;
    for d in &opts.dirs {
        use notify::Watcher;
        watcher
            .watch(d, notify::RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", d.display()))?;
    }
    let mut seen: HashMap<PathBuf, (BTreeMap<PathBuf, u64>, Instant)> = HashMap::new();
    let mut told_waiting: HashSet<PathBuf> = HashSet::new();
    let mut summary = TraceSummary {
        trace_dir: trace_dir.clone(),
        skipped_as_done,
        ..Default::default()
    };
    let mut pace: Vec<f64> = Vec::new();
    let mut last_change = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let scan_start = Instant::now();
        poll_logs(&mut phases);
        let mut ready = Vec::new();
        let mut unsettled = 0usize;
        // (phase, step) of checkpoints with their marker whose files still move.
        let mut settling: Vec<(usize, u64)> = Vec::new();
        let scan_now = Instant::now();
        for (i, p) in phases.iter().enumerate() {
            // A final model stands at the planned end once the trainer got there.
            let last = if p.finished {
                p.planned.unwrap_or(0).max(p.last_step)
            } else {
                p.last_step
            };
            for ck in checkpoints(&p.dir, i, last) {
                let key = log_path(&trace_dir, &ck.dir);
                if done.contains(&key) {
                    continue;
                }
                let now_sizes = sizes(&ck.dir, ck.name == "final");
                let entry = seen
                    .entry(ck.dir.clone())
                    .or_insert_with(|| (now_sizes.clone(), scan_now));
                let moved = entry.0 != now_sizes;
                if moved {
                    *entry = (now_sizes, scan_now);
                    last_change = scan_now;
                }
                let settled = scan_now.duration_since(entry.1) >= opts.settle;
                if ck.marker.is_file() && settled {
                    ready.push(ck);
                } else {
                    unsettled += 1;
                    if ck.marker.is_file() {
                        settling.push((ck.phase, ck.step));
                    }
                    // Say so when it is not just the settling time of a first look.
                    if (moved || !ck.marker.is_file()) && told_waiting.insert(ck.dir.clone()) {
                        let why = if ck.marker.is_file() {
                            "its files are still changing".to_string()
                        } else {
                            format!(
                                "{} is not written yet",
                                ck.marker
                                    .file_name()
                                    .map_or(String::new(), |n| n.to_string_lossy().to_string())
                            )
                        };
                        news(TraceNews::Waiting {
                            checkpoint: label(&opts.dirs[ck.phase], &ck),
                            why,
                        });
                    }
                }
            }
        }
        ready.sort_by_key(|c| (c.phase, c.step));
        // In step order: what comes after a checkpoint about to settle waits for it.
        if let Some(first) = settling.iter().min() {
            ready.retain(|c| (c.phase, c.step) < *first);
        }
        let scan = scan_start.elapsed().as_secs_f64();
        let total_ready = ready.len();
        for (k, ck) in ready.into_iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let key = log_path(&trace_dir, &ck.dir);
            let reason = if phases[ck.phase].planned.is_some_and(|p| ck.step >= p) {
                ProbeReason::PhaseEnd
            } else {
                ProbeReason::Periodic
            };
            log.append(&Event::Snapshot(SnapshotEvent {
                t: events::now(),
                phase: ck.phase,
                step: ck.step,
                global_step: ck.step,
                path: key.clone(),
                reason: SnapshotReason::Cadence,
            }))?;
            let (event, load) = probe_one(&ck, opts, &mut setup, reason);
            let name = label(&opts.dirs[ck.phase], &ck);
            if let Some(err) = &event.error {
                summary.failed += 1;
                log.append(&Event::Alert(Alert {
                    t: events::now(),
                    level: AlertLevel::Error,
                    message: format!("{name} could not be probed: {err}"),
                    global_step: ck.step,
                }))?;
            } else {
                summary.probed += 1;
                pace.push(load + event.seconds);
            }
            let (probe, error) = (event.seconds, event.error.clone());
            log.append(&Event::Probe(event))?;
            // Probed or failed: not again in this trace.
            done.insert(key);
            let queued = total_ready - k - 1;
            let mean = (!pace.is_empty()).then(|| pace.iter().sum::<f64>() / pace.len() as f64);
            news(TraceNews::Probed {
                checkpoint: name,
                phase: ck.phase,
                step: ck.step,
                scan,
                load,
                probe,
                error,
                queued,
                eta: mean.map(|m| m * queued as f64),
            });
        }
        let trainers_done = phases.iter().all(|p| p.finished);
        summary.trainers_done = trainers_done;
        // `once`: what is complete now, after its files held still.
        if opts.once && total_ready == 0 && settling.is_empty() {
            break;
        }
        if trainers_done && total_ready == 0 {
            // What the trainer left unfinished will not finish now; give a
            // checkpoint whose files still move a little longer.
            if unsettled == 0 || last_change.elapsed() > opts.settle * 10 {
                if unsettled > 0 {
                    news(TraceNews::Note(format!(
                        "{unsettled} checkpoints were never completed (no marker file, or still changing)"
                    )));
                }
                break;
            }
        }
        if total_ready == 0 {
            // Nothing to do: wait for a change, or for sizes to settle.
            let wait = if unsettled > 0 {
                opts.settle / 2
            } else {
                Duration::from_secs(2)
            };
            let _ = wake_rx.recv_timeout(wait.max(Duration::from_millis(50)));
            while wake_rx.try_recv().is_ok() {}
        }
    }
    drop(watcher);
    let status = if stop.load(Ordering::SeqCst) {
        RunStatus::Stopped
    } else {
        RunStatus::Completed
    };
    log.append(&Event::RunEnd(RunEnd {
        t: events::now(),
        status,
        global_step: 0,
        seconds: 0.0,
        message: Some(format!(
            "trace: {} probed, {} failed, {} probed before",
            summary.probed, summary.failed, summary.skipped_as_done
        )),
    }))?;
    log.sync()?;
    Ok(summary)
}

fn poll_logs(phases: &mut [PhaseState]) {
    for p in phases {
        if p.log.is_none() {
            p.log = find_log(&p.dir).map(|f| open(&f));
        }
        let Some(log) = &mut p.log else { continue };
        let Ok(u) = log.poll() else { continue };
        if u.restarted {
            p.last_step = 0;
            p.planned = None;
            p.finished = false;
        }
        for e in &u.events {
            match e {
                Event::Step(s) => p.last_step = p.last_step.max(s.global_step),
                Event::PhaseStart(ps) if ps.steps > 0 => p.planned = Some(ps.steps),
                Event::RunStart(rs) => {
                    if let Some(f) = rs.phases.first().filter(|f| f.steps > 0) {
                        p.planned = Some(f.steps);
                    }
                }
                Event::RunEnd(_) => p.finished = true,
                _ => {}
            }
        }
    }
}

fn trace_start(opts: &TraceOptions, trace_dir: &Path, phases: &[PhaseState]) -> RunStart {
    let names: Vec<String> = opts
        .dirs
        .iter()
        .map(|d| {
            std::fs::canonicalize(d)
                .unwrap_or_else(|_| d.clone())
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| d.display().to_string())
        })
        .collect();
    RunStart {
        schema: events::SCHEMA_VERSION,
        t: events::now(),
        run: format!("trace of {}", names.join(" → ")),
        seed: 0,
        recipe: String::new(),
        model: ModelInfo {
            source: opts.base.clone().unwrap_or_default(),
            ..Default::default()
        },
        phases: names
            .iter()
            .zip(phases)
            .map(|(n, p)| PhasePlan {
                name: n.clone(),
                algorithm: String::new(),
                steps: p.planned.unwrap_or(0),
            })
            .collect(),
        versions: [("driftui".to_string(), env!("CARGO_PKG_VERSION").to_string())].into(),
        resumed_from: None,
        config: None,
        trace: Some(Box::new(TracePlan {
            dirs: opts.dirs.iter().map(|d| log_path(trace_dir, d)).collect(),
            method: opts.method,
            probes: opts
                .probes
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            questions_per_topic: opts.questions_per_topic,
            base: opts.base.clone(),
        })),
    }
}

fn probe_setup(opts: &TraceOptions) -> Result<ProbeSetup> {
    let set = match &opts.probes {
        Some(p) => ProbeSet::load(p)?,
        None => default_probe_set(),
    }
    // One subset for every checkpoint (a trace has no recipe seed; a fixed
    // one keeps a restarted trace on the same questions), so each point of
    // the series is measured on the same questions.
    .subset(opts.questions_per_topic, 0);
    let judge: Option<Box<dyn Judge>> = match opts.method {
        ProbeMethod::Choice => None,
        ProbeMethod::Generate => {
            let spec = opts.judge.as_deref().context(
                "--method generate needs a judge: --judge SOURCE (a model directory, hf:ORG/NAME, gguf:PATH) or openai:URL#MODEL",
            )?;
            Some(if spec.starts_with("openai:") {
                Box::new(EndpointJudge::from_spec(spec, Duration::from_secs(60))?)
            } else {
                let m = crate::model::load_model(spec, &LoadOptions::default())
                    .with_context(|| format!("loading the judge model {spec}"))?;
                Box::new(LocalJudge::new(m.scoring_decoder()?, &m.tokenizer, spec)?)
            })
        }
    };
    Ok(ProbeSetup { set, judge })
}

/// Load a checkpoint as the trace does: an adapter over `--base` when given.
pub fn load_traced(ck: &Checkpoint, base: Option<&str>) -> Result<LoadedModel> {
    let spec = ck.dir.display().to_string();
    match &ck.kind {
        Kind::NeedsConverter(how) => bail!("{how}"),
        Kind::Adapter => {
            let opts = LoadOptions {
                base_dir: PathBuf::from("."),
                ..LoadOptions::default()
            };
            crate::model::export::load_lora_snapshot(&ck.dir, &spec, &opts, base).map_err(|e| {
                let named = crate::model::export::read_adapter_config(&ck.dir)
                    .map(|a| a.base_source)
                    .unwrap_or_default();
                match base {
                    Some(b) => e.context(format!("the base model given with --base ({b})")),
                    None => e.context(format!(
                        "the adapter's base model {named} (adapter_config.json's base_model_name_or_path) \
                         could not be loaded; name it with --base"
                    )),
                }
            })
        }
        Kind::Model => load_checkpoint(&spec, &LoadOptions::default()),
    }
}

/// Load and probe one checkpoint; a failure is the event's error. Returns
/// the event and the seconds loading took.
fn probe_one(
    ck: &Checkpoint,
    opts: &TraceOptions,
    setup: &mut ProbeSetup,
    reason: ProbeReason,
) -> (ProbeEvent, f64) {
    let t0 = Instant::now();
    let failed = |error: String, seconds: f64| ProbeEvent {
        t: events::now(),
        phase: ck.phase,
        step: ck.step,
        global_step: ck.step,
        method: opts.method,
        reason,
        topics: Vec::new(),
        seconds,
        error: Some(error),
        subset: false,
    };
    let model = match load_traced(ck, opts.base.as_deref()) {
        Ok(m) => m,
        Err(e) => return (failed(format!("{e:#}"), 0.0), t0.elapsed().as_secs_f64()),
    };
    // Many batches of no-grad scoring per checkpoint: the panel copies pay
    // for themselves where they fit.
    let decoder = match model.scoring_decoder() {
        Ok(d) => d,
        Err(e) => return (failed(format!("{e:#}"), 0.0), t0.elapsed().as_secs_f64()),
    };
    let load = t0.elapsed().as_secs_f64();
    let method = match (&opts.method, setup.judge.take()) {
        (ProbeMethod::Generate, Some(judge)) => Method::Generate {
            params: SamplingParams {
                temperature: opts.temperature,
                top_p: opts.top_p,
                max_tokens: opts.max_tokens,
                seed: 0,
            },
            samples: opts.samples,
            judge,
        },
        _ => Method::Choice,
    };
    let mut prober = match Prober::with_method(setup.set.clone(), method, &model.tokenizer) {
        Ok(p) => p,
        Err(e) => return (failed(format!("{e:#}"), 0.0), load),
    };
    let event = prober.run(&decoder, ck.phase, ck.step, ck.step, reason);
    setup.judge = prober.take_judge();
    (event, load)
}
