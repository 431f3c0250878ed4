use anyhow::Result;
use clap::Parser;
use driftui::cli::{Cli, Command};
use driftui::train::{self, TrainOptions};
use driftui::tui::{self, UiOptions};
use std::process::ExitCode;

// candle allocates a fresh buffer for every op; glibc returns large ones to
// the OS each time, and the page faults cost a third of a training step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    driftui::model::fused::keep_freed_memory();
    driftui::model::fused::configure_cpu_threads();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("driftui: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            recipe,
            headless,
            resume,
            output,
            theme,
        } => {
            let opts = TrainOptions {
                recipe,
                output,
                resume,
                progress: headless,
                inject_nan_at_step: None,
            };
            let ui = UiOptions { theme };
            if !headless {
                // A broken explicit theme stops us before anything is written.
                ui.validate()?;
            }
            let prepared = train::prepare(&opts)?;
            if headless {
                let (_tx, rx) = std::sync::mpsc::channel();
                let outcome = train::run(prepared, rx, None)?;
                eprintln!("run directory: {}", outcome.run_dir.display());
                if outcome.status != "completed" {
                    anyhow::bail!("the run {}", outcome.status);
                }
                Ok(())
            } else {
                let handle = train::spawn(prepared)?;
                tui::run_live(handle, &ui)
            }
        }
        Command::Replay { run, theme } => tui::replay(&run, &UiOptions { theme }),
        Command::Watch { path, theme } => tui::watch(&path, &UiOptions { theme }),
        Command::Export {
            snapshot,
            out_dir,
            base,
        } => {
            let opts = driftui::model::export::ExportOptions {
                base,
                ..Default::default()
            };
            let done = driftui::model::export::export(&snapshot, &out_dir, &opts)?;
            eprintln!(
                "wrote {} ({} tensors{}): {}",
                done.dir.display(),
                done.tensors,
                if done.merged_lora {
                    ", LoRA adapters merged"
                } else {
                    ""
                },
                done.files.join(", ")
            );
            Ok(())
        }
    }
}
