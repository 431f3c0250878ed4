//! `tracing` to a file through a non-blocking writer: the dashboard owns the
//! screen, so nothing may print to it.

use std::path::{Path, PathBuf};
use tracing_appender::non_blocking::WorkerGuard;

/// Where logs go when there is no run directory to put them in.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("driftui");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/driftui");
    }
    std::env::temp_dir().join("driftui")
}

/// Send `tracing` output to `dir/file` (level from `DRIFTUI_LOG`, default
/// info). Keep the guard until exit so buffered lines are written. Returns
/// `None` if logging could not be set up or already was; the dashboard runs
/// without it.
pub fn init(dir: &Path, file: &str) -> Option<WorkerGuard> {
    std::fs::create_dir_all(dir).ok()?;
    let appender = tracing_appender::rolling::never(dir, file);
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}
