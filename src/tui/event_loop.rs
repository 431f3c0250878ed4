//! The dashboard's loop: one `select!` over terminal input, the event source
//! (trainer channel, replay clock or file watch) and a redraw deadline.
//!
//! Events are drained in batches; the screen is redrawn only when something
//! changed, at most once per [`FRAME`]; with nothing happening the loop sleeps
//! (no tick), so an idle dashboard costs no CPU. Generic over the ratatui
//! backend so tests drive it on a `TestBackend`.

use super::app::{App, Effect, Quit};
use super::replay::Replay;
use super::run::{Level, RunModel};
use super::ui;
use crate::events::watch::{WatchHandle, WatchMessage};
use crate::events::Event;
use crate::probe::worker::{ProbeWorker, WorkerUpdate};
use crate::train::Control;
use anyhow::{anyhow, Result};
use crossterm::event::Event as TermEvent;
use futures::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::time::{Duration, Instant};

/// Shortest time between two redraws (about 30 frames a second).
pub const FRAME: Duration = Duration::from_millis(33);
/// Most events folded in before the screen gets a chance to redraw.
const MAX_BATCH: usize = 4096;
/// Longest sleep of a playing replay, so its clock moves on screen.
const REPLAY_MAX_SLEEP: Duration = Duration::from_millis(500);

/// A live trainer: its events, and the way to steer it.
pub struct LiveSource {
    pub events: tokio::sync::mpsc::Receiver<Event>,
    pub control: std::sync::mpsc::Sender<Control>,
    pub closed: bool,
}

/// A file being followed.
pub struct WatchSource {
    pub updates: tokio::sync::mpsc::Receiver<WatchMessage>,
    pub closed: bool,
    /// Keeps the watcher alive.
    pub handle: Option<WatchHandle>,
}

/// Where events come from.
pub enum Source {
    Live(LiveSource),
    Replay(Box<Replay>),
    Watch(WatchSource),
    /// Nothing: a fixed state (tests, benchmarks).
    Still,
}

enum Wake {
    Input(Option<std::io::Result<TermEvent>>),
    Live(Option<Box<Event>>),
    Watch(Option<WatchMessage>),
    Worker(Option<WorkerUpdate>),
    Redraw,
    Tick,
}

async fn recv_or_pending<T>(rx: Option<&mut tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_unbounded_or_pending<T>(
    rx: Option<&mut tokio::sync::mpsc::UnboundedReceiver<T>>,
) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_pending(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Run until the user quits (or, live, the stop they asked for completes),
/// or `input` ends. Without a probe worker: the probe screen says so.
pub async fn run<B, I>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    source: &mut Source,
    input: I,
) -> Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    I: Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    run_with_worker(terminal, app, source, input, None).await
}

/// [`run`], with a worker thread that probes checkpoints for the probe screen.
pub async fn run_with_worker<B, I>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    source: &mut Source,
    mut input: I,
    mut worker: Option<&mut ProbeWorker>,
) -> Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    I: Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut last_tick = Instant::now();
    let mut batch: Vec<Event> = Vec::with_capacity(256);
    if let Source::Replay(r) = source {
        app.replay = Some(r.status());
    }
    loop {
        if app.quit == Quit::Now {
            break;
        }
        let now = Instant::now();
        if dirty && last_draw.is_none_or(|t| now.duration_since(t) >= FRAME) {
            terminal
                .draw(|f| ui::draw(f, app))
                .map_err(|e| anyhow!("cannot draw: {e}"))?;
            dirty = false;
            last_draw = Some(now);
        }
        let redraw_at = if dirty {
            last_draw.map(|t| t + FRAME)
        } else {
            None
        };
        let tick_at = match source {
            Source::Replay(r) => r
                .next_due_in()
                .map(|s| now + Duration::from_secs_f64(s).clamp(FRAME, REPLAY_MAX_SLEEP)),
            _ => None,
        };
        let wake = {
            let (live_rx, watch_rx) = match source {
                Source::Live(l) if !l.closed => (Some(&mut l.events), None),
                Source::Watch(w) if !w.closed => (None, Some(&mut w.updates)),
                _ => (None, None),
            };
            let worker_rx = worker.as_mut().map(|w| &mut w.updates);
            tokio::select! {
                biased;
                e = input.next() => Wake::Input(e),
                u = recv_unbounded_or_pending(worker_rx) => Wake::Worker(u),
                e = recv_or_pending(live_rx) => Wake::Live(e.map(Box::new)),
                m = recv_or_pending(watch_rx) => Wake::Watch(m),
                _ = sleep_or_pending(tick_at) => Wake::Tick,
                _ = sleep_or_pending(redraw_at) => Wake::Redraw,
            }
        };
        match wake {
            Wake::Input(None) => break,
            Wake::Input(Some(Err(e))) => return Err(anyhow!("cannot read the terminal: {e}")),
            Wake::Input(Some(Ok(TermEvent::Key(key)))) => {
                dirty = true;
                for effect in app.on_key(&key) {
                    carry_out(effect, app, source, &mut last_tick, worker.as_deref_mut());
                }
            }
            Wake::Input(Some(Ok(TermEvent::Resize(..)))) => dirty = true,
            Wake::Input(Some(Ok(_))) => {}
            Wake::Live(Some(first)) => {
                batch.push(*first);
                if let Source::Live(l) = source {
                    while batch.len() < MAX_BATCH {
                        match l.events.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                }
                app.apply(&batch);
                batch.clear();
                dirty = true;
            }
            Wake::Live(None) => {
                if let Source::Live(l) = source {
                    l.closed = true;
                }
                app.trainer_finished();
                dirty = true;
            }
            Wake::Watch(Some(msg)) => {
                apply_watch(app, msg);
                if let Source::Watch(w) = source {
                    while let Ok(msg) = w.updates.try_recv() {
                        apply_watch(app, msg);
                    }
                }
                dirty = true;
            }
            Wake::Watch(None) => {
                if let Source::Watch(w) = source {
                    w.closed = true;
                }
                app.run.note(Level::Error, "the file watcher stopped");
                dirty = true;
            }
            Wake::Tick => {
                if let Source::Replay(r) = source {
                    let now = Instant::now();
                    let real = now.duration_since(last_tick).as_secs_f64();
                    last_tick = now;
                    if let Err(e) = r.advance(real, &mut app.run) {
                        app.run.note(Level::Error, format!("{e:#}"));
                    }
                    app.replay = Some(r.status());
                    dirty = true;
                }
            }
            Wake::Worker(Some(update)) => {
                app.on_worker(update);
                if let Some(w) = worker.as_mut() {
                    while let Ok(u) = w.updates.try_recv() {
                        app.on_worker(u);
                    }
                }
                dirty = true;
            }
            Wake::Worker(None) => {
                worker = None;
                app.run.note(Level::Error, "the probe worker stopped");
                dirty = true;
            }
            Wake::Redraw => {}
        }
    }
    if dirty {
        terminal
            .draw(|f| ui::draw(f, app))
            .map_err(|e| anyhow!("cannot draw: {e}"))?;
    }
    Ok(())
}

fn apply_watch(app: &mut App, msg: WatchMessage) {
    match msg {
        Ok(update) => {
            if update.restarted {
                app.run = RunModel::new();
            }
            app.apply(&update.events);
            app.skipped_lines = update.skipped;
            // After the events, so a new run_start does not wipe the notice.
            if update.restarted {
                app.run.note(
                    Level::Warning,
                    "the log was truncated or replaced: read it again from the start",
                );
            }
            if update.missing {
                app.run.note(
                    Level::Warning,
                    format!("waiting for {} to appear", app.source),
                );
            }
        }
        Err(e) => app.run.note(Level::Error, e),
    }
}

fn carry_out(
    effect: Effect,
    app: &mut App,
    source: &mut Source,
    last_tick: &mut Instant,
    worker: Option<&mut ProbeWorker>,
) {
    match (effect, source) {
        (Effect::Probe(job), _) => match worker {
            Some(w) => {
                if let Err(e) = w.submit(*job) {
                    app.run.note(Level::Error, format!("{e:#}"));
                    app.probe.running = None;
                }
            }
            None => {
                app.probe.running = None;
                app.run.note(
                    Level::Warning,
                    "checkpoint probing is not available here (no probe worker)",
                );
            }
        },
        (Effect::CancelProbe, _) => {
            if let Some(w) = worker {
                w.cancel();
            }
        }
        (Effect::Quit, _) => app.quit = Quit::Now,
        (Effect::Control(c), Source::Live(l)) if l.control.send(c).is_err() => {
            app.run
                .note(Level::Warning, "the trainer is no longer running");
            if c == Control::Stop {
                app.quit = Quit::Now;
            }
        }
        (Effect::Replay(cmd), Source::Replay(r)) => {
            *last_tick = Instant::now();
            if let Err(e) = r.command(cmd, &mut app.run) {
                app.run.note(Level::Error, format!("{e:#}"));
            }
            app.replay = Some(r.status());
        }
        _ => {}
    }
}
