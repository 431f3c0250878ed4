//! The terminal dashboard: live training, replay of a finished run, and
//! following a log another process writes.
//!
//! ```text
//! trainer thread ──events──▶ event_loop ──apply──▶ App { RunModel, ViewState } ──ui::draw──▶ screen
//!        ▲                     │  ▲
//!        └──── Control ────────┘  └── keys (keymap.toml), replay clock, file watch
//!                                  ▲
//!   probe worker thread ──updates──┘  (checkpoint probing for the probe screen)
//! ```

pub mod action;
pub mod app;
pub mod checkpoints;
pub mod event_loop;
pub mod ingest;
pub mod keymap;
pub mod logging;
pub mod panels;
pub mod path_display;
pub mod replay;
pub mod run;
pub mod run_clock;
pub mod series;
pub mod terminal;
pub mod theme;
pub mod ui;

use crate::events::watch::{follow, follow_source, Follower};
use crate::probe::worker::ProbeWorker;
use crate::rundir::view::{locate_view, ForeignRun, RunView};
use crate::rundir::RunLog;
use crate::train::{Control, TrainerHandle};
use action::Mode;
use anyhow::{Context, Result};
use app::App;
use event_loop::{LiveSource, Source, WatchSource};
use keymap::Keymap;
use replay::Replay;
use run::Level;
use std::path::{Path, PathBuf};
use theme::Theme;

/// Options shared by every dashboard mode.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// A built-in theme name or a path to a theme file.
    pub theme: Option<String>,
    /// A keymap file; without it, the user's keymap file if there is one.
    pub keymap: Option<PathBuf>,
}

impl UiOptions {
    /// Check the options before anything starts (a broken theme or keymap
    /// stops the program here, with file, line and column).
    pub fn validate(&self) -> Result<()> {
        Theme::load(self.theme.as_deref())?;
        self.keymap().map(|_| ())
    }

    /// The built-in keymap with the user's read over it.
    pub fn keymap(&self) -> Result<Keymap> {
        let user = self
            .keymap
            .clone()
            .or_else(|| Keymap::user_file().filter(|p| p.is_file()));
        Keymap::load(user.as_deref())
    }
}

/// Run the loop on the real terminal; it is restored however this returns.
fn run_on_terminal(app: &mut App, source: &mut Source) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Checkpoint probing runs on a thread of its own; without it the probe
    // screen says so and the dashboard works as before.
    let mut worker = match ProbeWorker::candle() {
        Ok(w) => Some(w),
        Err(e) => {
            app.run.note(Level::Warning, format!("{e:#}"));
            None
        }
    };
    rt.block_on(async {
        let mut guard = terminal::enter()?;
        let result = event_loop::run_with_worker(
            &mut guard.terminal,
            app,
            source,
            terminal::input(),
            worker.as_mut(),
        )
        .await;
        drop(guard);
        result
    })
}

/// Show the dashboard over a running trainer until the user quits or the run ends.
pub fn run_live(handle: TrainerHandle, opts: &UiOptions) -> Result<()> {
    let TrainerHandle {
        control,
        events,
        thread,
        run_dir,
    } = handle;
    let theme_and_keys = Theme::load(opts.theme.as_deref()).and_then(|t| Ok((t, opts.keymap()?)));
    let (theme, keymap) = match theme_and_keys {
        Ok(t) => t,
        Err(e) => {
            // Callers should `validate` first; never leave a trainer running headless.
            let _ = control.send(Control::Stop);
            let _ = thread.join();
            return Err(e);
        }
    };
    let _log = logging::init(&run_dir, "dashboard.log");
    tracing::info!("dashboard on {}", run_dir.display());
    let mut app = App::new(Mode::Live, theme, run_dir.display().to_string());
    app.keymap = keymap;
    app.run_dir = Some(run_dir.clone());
    let mut source = Source::Live(LiveSource {
        events,
        control,
        closed: false,
    });
    let result = run_on_terminal(&mut app, &mut source);
    let trainer_done = matches!(&source, Source::Live(l) if l.closed);
    if let Source::Live(l) = &source {
        if result.is_err() && !trainer_done {
            // The dashboard failed: stop training rather than run unseen.
            let _ = l.control.send(Control::Stop);
        }
    }
    drop(source);
    result?;
    if trainer_done || thread.is_finished() {
        match thread.join() {
            Ok(outcome) => {
                outcome.context("training failed")?;
            }
            Err(_) => anyhow::bail!("the trainer thread panicked"),
        }
    }
    Ok(())
}

/// Open a finished run (its directory or its `events.jsonl`) with a timeline.
pub fn replay(path: &Path, opts: &UiOptions) -> Result<()> {
    let theme = Theme::load(opts.theme.as_deref())?;
    let keymap = opts.keymap()?;
    let _log = logging::init(&logging::state_dir(), "driftui.log");
    if let Ok(RunView::Foreign(run)) = locate_view(path) {
        anyhow::bail!(
            "{} was trained by another program; open it with `driftui watch {}` \
             (its logs and the trace's probes) or write its report with `driftui report`",
            path.display(),
            run.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let (replay, _whole) = Replay::open(path)?;
    drop(_whole);
    tracing::info!(
        "replay of {} ({} events)",
        replay.path().display(),
        replay.len()
    );
    let mut app = App::new(Mode::Replay, theme, path.display().to_string());
    app.keymap = keymap;
    app.run_dir = Some(replay.run_dir().root().to_path_buf());
    app.skipped_lines = replay.skipped;
    if replay.torn_tail {
        app.run.note(
            Level::Warning,
            "the log's last line is cut off (a crash?); it was skipped",
        );
    }
    run_on_terminal(&mut app, &mut Source::Replay(Box::new(replay)))
}

/// Follow a log that another process is still writing: driftui's own, or
/// another trainer's output directory (and the trace that probes it).
pub fn watch(path: &Path, opts: &UiOptions) -> Result<()> {
    // A log that does not exist yet is waited for.
    let view = if path.exists() {
        locate_view(path)?
    } else {
        RunView::Native(RunLog::of_file(path))
    };
    match view {
        RunView::Native(log) => watch_native(log, opts),
        RunView::Foreign(run) => watch_foreign(&run, opts),
    }
}

fn watch_native(found: RunLog, opts: &UiOptions) -> Result<()> {
    let theme = Theme::load(opts.theme.as_deref())?;
    let keymap = opts.keymap()?;
    let _log = logging::init(&logging::state_dir(), "driftui.log");
    let RunLog { run, log: file } = found;
    let (first, updates, handle) = follow(Follower::events_jsonl(&file))?;
    tracing::info!("watching {}", file.display());
    let mut app = App::new(Mode::Watch, theme, file.display().to_string());
    app.keymap = keymap;
    app.run_dir = Some(run.root().to_path_buf());
    app.skipped_lines = first.skipped;
    if first.missing {
        let waiting = format!("waiting for {} to appear", app.source);
        app.run.note(Level::Warning, waiting);
    }
    app.apply(&first.events);
    run_on_terminal(
        &mut app,
        &mut Source::Watch(WatchSource {
            updates,
            closed: false,
            handle: Some(handle),
        }),
    )
}

/// Follow a run another trainer writes: its logs for loss and rewards, the
/// trace's log (if any) for stances, one phase per output directory.
pub fn watch_foreign(run: &ForeignRun, opts: &UiOptions) -> Result<()> {
    let theme = Theme::load(opts.theme.as_deref())?;
    let keymap = opts.keymap()?;
    let _log = logging::init(&logging::state_dir(), "driftui.log");
    let pipeline = run.pipeline();
    let shown = pipeline.describe();
    let shown_as = run.dirs.first().cloned().unwrap_or_default();
    let (first, updates, handle) = follow_source(pipeline, &shown_as)?;
    tracing::info!("watching {shown}");
    let mut app = App::new(Mode::Watch, theme, shown.clone());
    app.keymap = keymap;
    // The probe screen loads checkpoints the way the trace did (its log's
    // base model), and lists the checkpoints the trace announced.
    app.run_dir = Some(run.own_dir());
    app.skipped_lines = first.skipped;
    if first.events.is_empty() {
        app.run.note(
            Level::Warning,
            format!("waiting for a log or a trace in {shown}"),
        );
    }
    app.apply(&first.events);
    run_on_terminal(
        &mut app,
        &mut Source::Watch(WatchSource {
            updates,
            closed: false,
            handle: Some(handle),
        }),
    )
}
