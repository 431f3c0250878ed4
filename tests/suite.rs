//! driftui's integration tests, one module per subject, linked into one
//! test binary: 32 binaries that each linked candle, arrow and the rest took
//! ~2 GB of disk and minutes of link time in a clean `cargo test` (CI ran out
//! of disk). Run one subject with `cargo test --test suite SUBJECT::`.

mod common;

mod blas;
mod cli;
mod cpus;
mod data_formats;
mod decoder;
mod dtypes;
mod event_log_compat;
mod foreign_logs;
mod foreign_screens;
mod fused;
mod gguf;
mod gradients;
mod grpo;
mod hub;
mod judge_endpoint;
mod layering;
mod lora;
mod model_dir;
mod mutation;
mod objectives;
mod ppo;
mod probe;
mod probe_screens;
mod recipes;
mod report;
mod reward_model;
mod reward_phase;
mod rl_parity;
mod rundir;
mod smollm2;
mod templates;
mod trace;
mod train;
mod trl_parity;
mod tui_live;
mod tui_screens;
