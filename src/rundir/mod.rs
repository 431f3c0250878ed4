//! A run's directory: its layout, finding the run behind any path a user
//! gives, and its snapshots (written sealed, verified before use).
//!
//! ```text
//! RUN/
//!   events.jsonl         the event log, append-only (crate::events::EventLog)
//!   recipe.toml          the recipe as the run started
//!   dashboard.log        the live dashboard's own log
//!   snapshots/
//!     sft-000050/        a snapshot, sealed by its manifest.json (snapshot)
//!     dpo-reference/     a first preference phase's reference model
//!     .partial-NAME/     a snapshot being written (never read as one)
//!   report/              `driftui report`'s default output
//! ```
//!
//! Nothing here knows models or the trainer: it knows files and names.

pub mod disk;
pub mod retention;
pub mod snapshot;
pub mod view;

pub use retention::{Pruned, Retention};
pub use snapshot::{SnapshotEntry, SnapshotWriter};

use crate::events::SnapshotEvent;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// File name of a run's event log.
pub const EVENTS_FILE: &str = crate::events::LOG_FILE;
const RECIPE_FILE: &str = "recipe.toml";
const SNAPSHOTS_DIR: &str = "snapshots";
const REPORT_DIR: &str = "report";

/// The directory of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (which need not exist yet).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A new directory for a run named `name` under `base`: `NAME-YYYYmmdd-HHMMSS`,
    /// with `-2`, `-3`, ... appended when that exists already.
    pub fn fresh_in(base: &Path, name: &str) -> Self {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let mut dir = base.join(format!("{name}-{stamp}"));
        let mut n = 2;
        while dir.exists() {
            dir = base.join(format!("{name}-{stamp}-{n}"));
            n += 1;
        }
        Self::at(dir)
    }

    /// The run a snapshot directory belongs to, by where it lies
    /// (`RUN/snapshots/NAME`); `None` for a directory elsewhere.
    pub fn of_snapshot(snapshot: &Path) -> Option<Self> {
        let parent = snapshot.parent()?;
        if parent.file_name()? != SNAPSHOTS_DIR {
            return None;
        }
        Some(Self::of_log(parent))
    }

    /// The directory a log file lies in (`.` for a bare file name).
    pub fn of_log(log: &Path) -> Self {
        match log.parent() {
            Some(p) if !p.as_os_str().is_empty() => Self::at(p),
            _ => Self::at("."),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the directory holds a run: it has an event log.
    pub fn has_log(&self) -> bool {
        self.events_log().is_file()
    }

    pub fn events_log(&self) -> PathBuf {
        self.root.join(EVENTS_FILE)
    }

    /// The copy of the recipe the run started with.
    pub fn recipe_copy(&self) -> PathBuf {
        self.root.join(RECIPE_FILE)
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR)
    }

    /// Where `driftui report` writes unless told otherwise.
    pub fn report_dir(&self) -> PathBuf {
        self.root.join(REPORT_DIR)
    }

    /// A snapshot's path as the log and trainer states write it: relative
    /// to the run, so a copied run directory stays whole.
    pub fn snapshot_rel(name: &str) -> String {
        format!("{SNAPSHOTS_DIR}/{name}")
    }

    /// A path the log or a trainer state gives relative to the run.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Start writing the snapshot `name`; it appears under `snapshots/` only
    /// once sealed.
    pub fn begin_snapshot(&self, name: &str) -> Result<SnapshotWriter> {
        SnapshotWriter::begin(&self.snapshots_dir(), name)
    }

    /// Bring another run's sealed snapshot into this run under its own
    /// name: hard links where the file system allows (no bytes copied, and
    /// no file of a sealed snapshot is ever written in place), else copies;
    /// checked against its manifest before it appears. Returns its path
    /// relative to this run.
    pub fn adopt_snapshot(&self, src: &Path) -> Result<String> {
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .with_context(|| format!("{} is not a snapshot directory", src.display()))?;
        self.begin_snapshot(&name)?.adopt(src)?;
        Ok(Self::snapshot_rel(&name))
    }

    /// Remove what a crash left under `snapshots/` (snapshots half-written
    /// or half-deleted); returns the bytes freed.
    pub fn sweep_partials(&self) -> Result<u64> {
        snapshot::sweep(&self.snapshots_dir())
    }

    /// The run's snapshots: those its log names (`known`) and those on disk
    /// under `snapshots/`, ordered by step.
    pub fn snapshots(&self, known: &[SnapshotEvent]) -> Vec<SnapshotEntry> {
        snapshot::list(self, known)
    }
}

/// A run found from a path a user gave, and the log to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLog {
    pub run: RunDir,
    pub log: PathBuf,
}

impl RunLog {
    /// The run behind `path`: a run directory, a snapshot inside one, or a
    /// log file of any name (its run is the directory it lies in).
    pub fn locate(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        if !path.is_dir() {
            return Ok(Self::of_file(path));
        }
        let run = RunDir::at(path);
        if run.has_log() {
            return Ok(Self {
                log: run.events_log(),
                run,
            });
        }
        match RunDir::of_snapshot(path).filter(RunDir::has_log) {
            Some(run) => Ok(Self {
                log: run.events_log(),
                run,
            }),
            None => bail!("{} is not a run: it has no {EVENTS_FILE}", path.display()),
        }
    }

    /// A log file, which may not exist yet (a watcher waits for it).
    pub fn of_file(log: &Path) -> Self {
        Self {
            run: RunDir::of_log(log),
            log: log.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_path_into_a_run_finds_the_run_and_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path().join("demo"));
        std::fs::create_dir_all(run.snapshots_dir().join("sft-000010")).unwrap();
        std::fs::write(run.events_log(), "").unwrap();
        let snap = run.snapshots_dir().join("sft-000010");
        for given in [run.root().to_path_buf(), run.events_log(), snap.clone()] {
            let found = RunLog::locate(&given).unwrap();
            assert_eq!(found.run, run, "{}", given.display());
            assert_eq!(found.log, run.events_log(), "{}", given.display());
        }
        assert_eq!(RunDir::of_snapshot(&snap), Some(run.clone()));
        assert_eq!(RunDir::of_snapshot(run.root()), None);

        // A log of another name: its directory is the run.
        let other = dir.path().join("x.jsonl");
        std::fs::write(&other, "").unwrap();
        let found = RunLog::locate(&other).unwrap();
        assert_eq!(found.run.root(), dir.path());
        assert_eq!(RunDir::of_log(Path::new("x.jsonl")).root(), Path::new("."));

        let err = RunLog::locate(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = RunLog::locate(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not a run"), "{err}");
    }

    #[test]
    fn fresh_run_directories_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunDir::fresh_in(dir.path(), "demo");
        std::fs::create_dir_all(a.root()).unwrap();
        let b = RunDir::fresh_in(dir.path(), "demo");
        assert_ne!(a, b);
        let name = |r: &RunDir| r.root().file_name().unwrap().to_string_lossy().to_string();
        assert!(name(&a).starts_with("demo-"), "{}", name(&a));
        assert!(name(&b).starts_with("demo-"), "{}", name(&b));
    }
}
