//! The trainer's side of the threads: commands in, events out.

use crate::events::{Event, RunStatus};
use std::sync::mpsc;

/// What the user can ask of a running trainer; checked between optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// Write a snapshot at the current step.
    Snapshot,
    /// Run the value probes now.
    ProbeNow,
    /// Graceful stop: final snapshot, `run_end`, thread exits.
    Stop,
}

/// How a run ended, returned by the trainer thread.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `Completed` or `Stopped` (a failed run returns its error).
    pub status: RunStatus,
    pub run_dir: std::path::PathBuf,
    pub global_step: u64,
    /// Loss of every step, in order, as logged.
    pub losses: Vec<f64>,
}

/// A running trainer as the front end sees it.
pub struct TrainerHandle {
    pub control: mpsc::Sender<Control>,
    /// Events in the order they were logged; bounded, so a stalled reader
    /// slows the trainer instead of growing memory.
    pub events: tokio::sync::mpsc::Receiver<Event>,
    pub thread: std::thread::JoinHandle<anyhow::Result<RunOutcome>>,
    pub run_dir: std::path::PathBuf,
}

/// Capacity of the trainer → front-end event channel.
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;
