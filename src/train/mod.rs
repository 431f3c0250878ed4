//! The training engine: objectives, optimizer, schedule and the loop.

pub mod control;
pub mod memory;
pub mod objectives;
pub mod optim;
pub mod phase;
pub mod policy;
pub mod prepare;
pub mod progress;
pub mod rl;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use control::{Control, RunOutcome, TrainerHandle, EVENT_CHANNEL_CAPACITY};
pub use prepare::{prepare, DiskFault, DiskFaultKind, Prepared, TrainOptions};
pub use trainer::{run, spawn};
