//! The run behind a path, native or trained elsewhere: driftui's own run
//! directory (or log), or another trainer's output directories with the
//! trace that probes them.
//!
//! ```text
//! OUT/                    another trainer's output directory (read, never written)
//!   checkpoint-N/ ...
//!   events.jsonl          when the TRL callback wrote it (a driftui log)
//!   driftui/              everything driftui writes for OUT
//!     events.jsonl        the trace's log (run_start carries the plan: which directories)
//!     report/             `driftui report OUT`
//! ```

use super::{RunDir, RunLog, EVENTS_FILE};
use crate::events::foreign::{find_log, not_a_log_error, pipeline::Pipeline};
use crate::events::{Event, TracePlan};
use anyhow::{bail, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The folder driftui writes into for another trainer's output directory.
pub const TRACE_DIR: &str = "driftui";

/// A run another program trained: its output directories (one phase each)
/// and the trace's folder, if a trace ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRun {
    pub dirs: Vec<PathBuf>,
    /// The trace's folder, when it has a log.
    pub trace: Option<RunDir>,
}

impl ForeignRun {
    /// Where driftui writes for this run: the trace's folder, or the
    /// first directory's `driftui/`.
    pub fn own_dir(&self) -> PathBuf {
        match &self.trace {
            Some(t) => t.root().to_path_buf(),
            None => self
                .dirs
                .first()
                .map(|d| {
                    if d.is_file() {
                        d.parent().unwrap_or(Path::new(".")).join(TRACE_DIR)
                    } else {
                        d.join(TRACE_DIR)
                    }
                })
                .unwrap_or_else(|| PathBuf::from(TRACE_DIR)),
        }
    }

    /// The events of the whole run, as they come.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(&self.dirs, self.trace.as_ref().map(RunDir::root))
    }
}

/// A run as a path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunView {
    /// driftui's own log (a native run, or the TRL callback's log alone).
    Native(RunLog),
    Foreign(ForeignRun),
}

/// The trace plan of the log at `log`, if its first record has one.
pub fn trace_plan(log: &Path) -> Option<Box<TracePlan>> {
    let f = std::fs::File::open(log).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(f).read_line(&mut first).ok()?;
    match serde_json::from_str::<Event>(first.trim_end()).ok()? {
        Event::RunStart(rs) => rs.trace,
        _ => None,
    }
}

/// The run of a trace whose folder is `dir`, from its plan.
fn traced(dir: &Path, plan: &TracePlan) -> ForeignRun {
    ForeignRun {
        dirs: plan
            .dirs
            .iter()
            .map(|d| {
                let p = Path::new(d);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    dir.join(p)
                }
            })
            .collect(),
        trace: Some(RunDir::at(dir)),
    }
}

/// The run behind `path`: a trace's folder or log, an output directory a
/// trace probes (its `driftui/` folder), another trainer's output directory
/// or log file, or driftui's own run (see [`RunLog::locate`]).
pub fn locate_view(path: &Path) -> Result<RunView> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path.is_file() {
        if let Some(plan) = trace_plan(path) {
            return Ok(RunView::Foreign(traced(RunDir::of_log(path).root(), &plan)));
        }
        let is_driftui_log = path.file_name().is_some_and(|n| n == EVENTS_FILE)
            || find_log(path).is_some_and(|f| f.format == crate::events::foreign::Format::Driftui);
        if is_driftui_log {
            return Ok(RunView::Native(RunLog::of_file(path)));
        }
        return Ok(RunView::Foreign(ForeignRun {
            dirs: vec![path.to_path_buf()],
            trace: None,
        }));
    }
    for dir in [path.to_path_buf(), path.join(TRACE_DIR)] {
        let log = dir.join(EVENTS_FILE);
        if let Some(plan) = trace_plan(&log) {
            return Ok(RunView::Foreign(traced(&dir, &plan)));
        }
    }
    let run = RunDir::at(path);
    if run.has_log() {
        return Ok(RunView::Native(RunLog::locate(path)?));
    }
    if find_log(path).is_some() || crate::events::foreign::trainer_state::has_state(path) {
        return Ok(RunView::Foreign(ForeignRun {
            dirs: vec![path.to_path_buf()],
            trace: None,
        }));
    }
    match RunLog::locate(path) {
        Ok(native) => Ok(RunView::Native(native)),
        Err(_) => Err(not_a_log_error(path)),
    }
}
