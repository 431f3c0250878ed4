//! The training engine: objectives, optimizer, schedule, the loop, snapshots.

pub mod control;
pub mod objectives;
pub mod optim;
pub mod progress;
pub mod schedule;
pub mod snapshot;
pub mod trainer;

pub use control::{Control, RunOutcome, TrainerHandle, EVENT_CHANNEL_CAPACITY};
pub use trainer::{prepare, run, spawn, Prepared, TrainOptions};
