//! Command-line interface.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "driftui",
    version,
    about = "Post-train a language model and watch its values drift, live."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe's phases with the live dashboard.
    Train {
        /// The recipe (TOML).
        recipe: PathBuf,
        /// Print progress lines instead of opening the dashboard.
        #[arg(long)]
        headless: bool,
        /// Continue a run from one of its snapshots.
        #[arg(long, value_name = "SNAPSHOT")]
        resume: Option<PathBuf>,
        /// Write the run here instead of the recipe's output directory.
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Dashboard theme: a built-in name (dark, light, high-contrast) or a file.
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
    },
    /// Open a finished run (its directory or its events.jsonl) in the dashboard.
    Replay {
        run: PathBuf,
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
    },
    /// Follow a log that another process is still writing.
    Watch {
        path: PathBuf,
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
    },
    /// Write a snapshot as a Hugging Face model directory (LoRA adapters
    /// merged into the base weights) that transformers and vLLM load.
    Export {
        /// A snapshot directory (RUN/snapshots/NAME).
        snapshot: PathBuf,
        /// Where to write the model (must not exist, or be empty).
        out_dir: PathBuf,
        /// Base model of a LoRA snapshot, instead of the one its adapter_config.json names.
        #[arg(long, value_name = "SOURCE")]
        base: Option<String>,
    },
}
