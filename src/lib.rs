//! driftui: post-train a language model on candle and watch its values drift,
//! live in the terminal.
//!
//! Data flows one way: trainer → events → (log file, dashboard state) → screen.

pub mod cli;
pub mod events;
pub mod train;
pub mod tui;
