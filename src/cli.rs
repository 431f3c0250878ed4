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
    /// Probe one checkpoint's stance per topic (the `choice` method), headless.
    Probe {
        /// A snapshot or model directory, or a model source (builtin:NAME).
        checkpoint: String,
        /// Probe set (JSONL); default: the run's, else the shipped one.
        #[arg(long, value_name = "FILE")]
        probes: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a run's drift table (markdown, CSV, JSON) and plots (SVG, PNG).
    Report {
        /// The run directory or its events.jsonl.
        run: PathBuf,
        /// Where to write (default: RUN_DIR/report).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}
