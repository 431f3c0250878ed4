//! driftui: post-train a language model on candle and watch its values drift,
//! live in the terminal.
//!
//! Data flows one way: trainer → events → (log file, dashboard state) → screen.

pub mod cli;
pub mod data;
pub mod duration;
pub mod events;
pub mod location;
pub mod model;
pub mod probe;
pub mod recipe;
pub mod report;
pub mod rundir;
pub mod train;
pub mod tui;
