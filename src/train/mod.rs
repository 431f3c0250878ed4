//! The training engine: objectives, optimizer, schedule, the loop, snapshots.

pub mod control;

pub use control::{Control, RunOutcome, TrainerHandle, EVENT_CHANNEL_CAPACITY};
