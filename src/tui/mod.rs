//! The terminal dashboard: live training, replay of a finished run, and
//! following a log another process writes.

use crate::train::TrainerHandle;
use anyhow::Result;
use std::path::Path;

/// Options shared by every dashboard mode.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// A built-in theme name or a path to a theme file.
    pub theme: Option<String>,
}

/// Show the dashboard over a running trainer until the user quits or the run ends.
pub fn run_live(_handle: TrainerHandle, _opts: &UiOptions) -> Result<()> {
    anyhow::bail!("the dashboard is not built yet; use --headless")
}

/// Open a finished run (its directory or its `events.jsonl`) with a timeline.
pub fn replay(_path: &Path, _opts: &UiOptions) -> Result<()> {
    anyhow::bail!("replay is not built yet")
}

/// Follow a log that another process is still writing.
pub fn watch(_path: &Path, _opts: &UiOptions) -> Result<()> {
    anyhow::bail!("watch is not built yet")
}
