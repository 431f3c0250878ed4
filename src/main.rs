use anyhow::Result;
use clap::Parser;
use driftui::cli::{Cli, Command};
use driftui::events::{RunStatus, Stance};
use driftui::report;
use driftui::train::{self, TrainOptions};
use driftui::tui::{self, UiOptions};
use std::path::PathBuf;
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
            keymap,
        } => {
            let opts = TrainOptions {
                recipe,
                output,
                resume,
                progress: headless,
                inject_nan_at_step: None,
            };
            let ui = UiOptions { theme, keymap };
            if !headless {
                // A broken explicit theme stops us before anything is written.
                ui.validate()?;
            }
            let prepared = train::prepare(&opts)?;
            if headless {
                let (_tx, rx) = std::sync::mpsc::channel();
                let outcome = train::run(prepared, rx, None)?;
                eprintln!("run directory: {}", outcome.run_dir.display());
                if outcome.status != RunStatus::Completed {
                    anyhow::bail!("the run {}", outcome.status);
                }
                Ok(())
            } else {
                let handle = train::spawn(prepared)?;
                tui::run_live(handle, &ui)
            }
        }
        Command::Synth {
            model,
            probes,
            chosen,
            rejected,
            out,
            temperature,
            max_tokens,
            seed,
        } => synth(
            &model,
            &probes,
            chosen,
            rejected,
            &out,
            temperature,
            max_tokens,
            seed,
        ),
        Command::Replay { run, theme, keymap } => tui::replay(&run, &UiOptions { theme, keymap }),
        Command::Watch {
            path,
            theme,
            keymap,
        } => tui::watch(&path, &UiOptions { theme, keymap }),
        Command::Probe {
            checkpoint,
            probes,
            json,
        } => {
            let p = driftui::probe::checkpoint::probe_checkpoint(&checkpoint, probes.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", driftui::probe::checkpoint::format_table(&p));
            }
            Ok(())
        }
        Command::Report { run, more, out } => {
            let compare = !more.is_empty();
            let runs: Vec<PathBuf> = std::iter::once(run).chain(more).collect();
            for run in &runs {
                let r = report::write_report(run, if compare { None } else { out.as_deref() })?;
                println!(
                    "report of {} topics ({} drift rows) in {}:",
                    r.topics,
                    r.rows,
                    r.dir.display()
                );
                for f in &r.files {
                    println!("  {}", f.display());
                }
            }
            if compare {
                let dir = out.unwrap_or_else(|| {
                    runs[0]
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
                });
                for f in report::write_comparison(&runs, &dir)? {
                    println!("  {}", f.display());
                }
            }
            Ok(())
        }
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

#[allow(clippy::too_many_arguments)]
fn synth(
    model: &str,
    probes: &std::path::Path,
    chosen: Stance,
    rejected: Stance,
    out: &std::path::Path,
    temperature: f64,
    max_tokens: usize,
    seed: u64,
) -> Result<()> {
    use anyhow::Context;
    use driftui::probe::synth::{synthesize, SynthOptions};
    anyhow::ensure!(
        chosen != rejected,
        "--chosen and --rejected are both {chosen}: there would be no value gap"
    );
    let set = driftui::probe::set::ProbeSet::load(probes)?;
    let loaded = driftui::model::load_model(model, &driftui::model::LoadOptions::default())?;
    let decoder = loaded.decoder()?;
    let partial = out.with_extension("jsonl.partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?,
    );
    let opts = SynthOptions {
        chosen,
        rejected,
        params: driftui::model::generate::SamplingParams {
            temperature,
            top_p: 0.95,
            max_tokens,
            seed,
        },
    };
    let n = synthesize(&decoder, &loaded.tokenizer, &set, &opts, &mut file, true)?;
    drop(file);
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {n} preference pairs ({chosen} chosen over {rejected}) to {}",
        out.display()
    );
    Ok(())
}
