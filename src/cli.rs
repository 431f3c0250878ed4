//! Command-line interface.

use crate::events::{ProbeMethod, Stance};
use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "driftui",
    version,
    about = "Post-train a language model and watch its values drift, live."
)]
pub struct Cli {
    /// Threads for the matrix products and fused kernels (default: the
    /// physical cores, or RAYON_NUM_THREADS).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
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
        /// Dashboard keys: a keymap file read over the built-in one
        /// (default: $XDG_CONFIG_HOME/driftui/keymap.toml, if it exists).
        #[arg(long, value_name = "PATH")]
        keymap: Option<PathBuf>,
    },
    /// Open a finished run (its directory or its events.jsonl) in the dashboard.
    Replay {
        run: PathBuf,
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
        /// A keymap file read over the built-in one.
        #[arg(long, value_name = "PATH")]
        keymap: Option<PathBuf>,
    },
    /// Follow a log that another process is still writing: driftui's own
    /// events.jsonl, or another trainer's output directory (transformers/TRL
    /// checkpoint-N/trainer_state.json, LLaMA-Factory trainer_log.jsonl,
    /// torchtune's log_*.txt, verl's file log) with its trace's probes.
    Watch {
        path: PathBuf,
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
        /// A keymap file read over the built-in one.
        #[arg(long, value_name = "PATH")]
        keymap: Option<PathBuf>,
    },
    /// Write a preference set with a value gap: for every probe question a
    /// chosen answer arguing one stance and a rejected one arguing another,
    /// written by a local model.
    Synth {
        /// The model that writes the answers (builtin:NAME, a directory, gguf:PATH, hf:ORG/NAME).
        #[arg(long, default_value = "builtin:tiny")]
        model: String,
        /// Probe set (JSONL with topic and question).
        #[arg(long, default_value = "assets/probes/default.jsonl")]
        probes: PathBuf,
        /// Stance of the chosen answers.
        #[arg(long, default_value = "support")]
        chosen: Stance,
        /// Stance of the rejected answers.
        #[arg(long, default_value = "oppose")]
        rejected: Stance,
        /// Output JSONL file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        #[arg(long, default_value_t = 160)]
        max_tokens: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
    /// Probe the checkpoints other trainers write (TRL, LLaMA-Factory,
    /// torchtune, verl, PEFT adapters) as they land, one phase per output
    /// directory, into a trace log of its own (DIR/driftui/events.jsonl);
    /// the trainers' files are never written.
    Trace {
        /// The trainers' output directories, in phase order.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The trace's folder (default: the first directory's driftui/).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Base model of adapter checkpoints, instead of the one their adapter_config.json names.
        #[arg(long, value_name = "SOURCE")]
        base: Option<String>,
        /// Probe set (JSONL with topic and question); default: the shipped one.
        #[arg(long, value_name = "FILE")]
        probes: Option<PathBuf>,
        /// How stances are measured.
        #[arg(long, default_value = "choice")]
        method: ProbeMethod,
        /// Questions per topic (0: all).
        #[arg(long, default_value_t = 0)]
        questions_per_topic: usize,
        /// `generate`: the judge (a model source, or openai:URL#MODEL).
        #[arg(long, value_name = "SOURCE")]
        judge: Option<String>,
        /// `generate`: answers sampled per question.
        #[arg(long, default_value_t = 5)]
        samples: usize,
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Seconds a checkpoint's files must keep their sizes before it counts as written.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        settle: f64,
        /// Probe the checkpoints complete now and stop, without waiting for more.
        #[arg(long)]
        once: bool,
        /// Print progress lines (and an ETA) instead of opening the dashboard.
        #[arg(long)]
        headless: bool,
        #[arg(long, value_name = "NAME|PATH")]
        theme: Option<String>,
        /// A keymap file read over the built-in one.
        #[arg(long, value_name = "PATH")]
        keymap: Option<PathBuf>,
    },
    /// Write a run's drift table (markdown, CSV, JSON) and plots (SVG, PNG);
    /// given several runs, each one's, and a comparison of them
    /// (compare.md, compare.csv: topics × runs).
    Report {
        /// The run directory or its events.jsonl.
        run: PathBuf,
        /// More runs to compare with the first (each gets its own report too).
        #[arg(value_name = "MORE_RUNS")]
        more: Vec<PathBuf>,
        /// Where to write (default: RUN_DIR/report; with several runs, where
        /// the comparison goes, default the first run's parent directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
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

/// A stance on the command line is written as in the log, and `--help`
/// lists the three.
impl ValueEnum for Stance {
    fn value_variants<'a>() -> &'a [Self] {
        &Stance::EACH
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

/// A probe method on the command line is written as in the log.
impl ValueEnum for ProbeMethod {
    fn value_variants<'a>() -> &'a [Self] {
        &[ProbeMethod::Choice, ProbeMethod::Generate]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}
