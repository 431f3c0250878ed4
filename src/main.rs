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
    // MKL for the products when DRIFTUI_MKL names it; the trainer logs it.
    if let Err(err) = driftui::model::blas::configure() {
        eprintln!("driftui: error: {err:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // Still one thread: rayon's pool starts with the first parallel op.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
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
                inject_disk_fault: None,
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
        Command::Trace {
            dirs,
            out,
            base,
            probes,
            method,
            questions_per_topic,
            judge,
            samples,
            temperature,
            top_p,
            max_tokens,
            settle,
            once,
            headless,
            theme,
            keymap,
        } => {
            let mut opts = driftui::probe::trace::TraceOptions::new(dirs);
            opts.out = out;
            opts.base = base;
            opts.probes = probes;
            opts.method = method;
            opts.questions_per_topic = questions_per_topic;
            opts.judge = judge;
            opts.samples = samples;
            opts.temperature = temperature;
            opts.top_p = top_p;
            opts.max_tokens = max_tokens;
            anyhow::ensure!(
                settle.is_finite() && settle >= 0.0,
                "--settle must be a number of seconds, not {settle}"
            );
            opts.settle = std::time::Duration::from_secs_f64(settle);
            opts.once = once;
            trace(opts, headless, &UiOptions { theme, keymap })
        }
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

/// `driftui trace`: headless, the trace on this thread with progress lines;
/// else the trace on a thread of its own and the dashboard over the
/// trainers' logs and the trace's.
fn trace(opts: driftui::probe::trace::TraceOptions, headless: bool, ui: &UiOptions) -> Result<()> {
    use driftui::probe::trace::{check_dirs, run_trace};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    check_dirs(&opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    if headless {
        let summary = run_trace(&opts, &stop, &mut |n| eprintln!("{}", describe_news(&n)))?;
        eprintln!(
            "trace: {} probed, {} failed, {} probed before{}; log: {}",
            summary.probed,
            summary.failed,
            summary.skipped_as_done,
            if summary.trainers_done {
                "; the trainers reached their last steps"
            } else {
                ""
            },
            summary.trace_dir.join("events.jsonl").display()
        );
        return Ok(());
    }
    ui.validate()?;
    let trace_dir = opts.trace_dir();
    std::fs::create_dir_all(&trace_dir)?;
    let thread_opts = opts.clone();
    let thread_stop = stop.clone();
    let tracer = std::thread::Builder::new()
        .name("driftui-trace".into())
        .spawn(move || {
            let result = run_trace(&thread_opts, &thread_stop, &mut |n| {
                tracing::info!("{}", describe_news(&n))
            });
            if let Err(e) = &result {
                // The dashboard reads the trace's log: say it there.
                let log = thread_opts.trace_dir().join("events.jsonl");
                if let Ok(mut l) = driftui::events::EventLog::open(&log) {
                    let _ = l.append(&driftui::events::Event::Alert(driftui::events::Alert {
                        t: driftui::events::now(),
                        level: driftui::events::AlertLevel::Error,
                        message: format!("the trace stopped: {e:#}"),
                        global_step: 0,
                    }));
                }
            }
            result
        })?;
    // Wait for the trace's log to hold its plan, so the dashboard reads it as a trace.
    let log = trace_dir.join("events.jsonl");
    let t0 = std::time::Instant::now();
    while driftui::rundir::view::trace_plan(&log).is_none()
        && !tracer.is_finished()
        && t0.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if tracer.is_finished() && driftui::rundir::view::trace_plan(&log).is_none() {
        return match tracer.join() {
            Ok(r) => r.map(|_| ()),
            Err(_) => anyhow::bail!("the trace thread panicked"),
        };
    }
    let run = driftui::rundir::view::ForeignRun {
        dirs: opts.dirs.clone(),
        trace: Some(driftui::rundir::RunDir::at(&trace_dir)),
    };
    let shown = tui::watch_foreign(&run, ui);
    stop.store(true, Ordering::SeqCst);
    // A probe under way is left to the process's end; a restarted trace
    // probes that checkpoint again (its probe was never written).
    if tracer.is_finished() {
        if let Ok(Err(e)) = tracer.join() {
            eprintln!("driftui: the trace stopped: {e:#}");
        }
    }
    shown
}

fn describe_news(n: &driftui::probe::trace::TraceNews) -> String {
    use driftui::duration::clock as human;
    use driftui::probe::trace::TraceNews;
    match n {
        TraceNews::Waiting { checkpoint, why } => {
            format!("trace: waiting for {checkpoint}: {why}")
        }
        TraceNews::Probed {
            checkpoint,
            phase,
            step,
            scan,
            load,
            probe,
            error,
            queued,
            eta,
        } => {
            let head = format!("trace: {checkpoint} (phase {}, step {step})", phase + 1);
            let left = match eta {
                Some(eta) if *queued > 0 => format!("; {queued} waiting, ETA {}", human(*eta)),
                _ if *queued > 0 => format!("; {queued} waiting"),
                _ => String::new(),
            };
            match error {
                Some(e) => format!("{head} failed: {e}; the trace goes on{left}"),
                None => format!(
                    "{head}: probed in {:.1} s (load {:.2} s, scan {:.1} ms){left}",
                    probe,
                    load,
                    scan * 1000.0
                ),
            }
        }
        TraceNews::Note(m) => format!("trace: {m}"),
    }
}
