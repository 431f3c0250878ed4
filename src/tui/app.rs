//! The dashboard's state: the run as known from its events, plus how the user
//! is looking at it. Keys become [`Action`]s, actions change the view or
//! become [`Effect`]s that the event loop carries out.

use super::action::{Action, Context, Mode};
use super::checkpoints::{Pick, ProbeScreen};
use super::keymap::Keymap;
use super::path_display;
use super::run::{Level, RunModel};
use super::theme::Theme;
use crate::events::Event;
use crate::probe::worker::{JudgeChoice, ProbeJob, WorkerUpdate};
use crate::train::Control;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};

/// The panels that can take focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Loss,
    Reward,
    Stance,
}

impl Panel {
    const ORDER: [Panel; 3] = [Panel::Loss, Panel::Reward, Panel::Stance];

    fn step(self, by: isize) -> Panel {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0) as isize;
        let n = Self::ORDER.len() as isize;
        Self::ORDER[((i + by).rem_euclid(n)) as usize]
    }
}

/// Whole run or only the recent window, on every chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoom {
    WholeRun,
    Recent,
}

/// Weight of the debiased EMA when smoothing is on (TensorBoard's default).
pub const SMOOTHING_WEIGHT: f64 = 0.6;

/// How the user is looking at the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewState {
    pub focus: Panel,
    pub enlarged: bool,
    pub log_scale: bool,
    pub smoothing: Option<f64>,
    pub zoom: Zoom,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            focus: Panel::Loss,
            enlarged: false,
            log_scale: false,
            smoothing: None,
            zoom: Zoom::WholeRun,
        }
    }
}

/// What fills the body between the header and the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    /// The selected topic's three stance curves.
    Topic,
    /// Drift magnitude and time per topic, stance and phase.
    Drift,
    /// Probing checkpoints: answers and their stances.
    Probe,
    /// The newest RL step's sampled completions and their rewards.
    Rollouts,
}

/// A dialog drawn over the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
}

/// Where quitting stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quit {
    Running,
    /// Stop sent to the trainer; waiting for its `run_end`.
    Stopping,
    Now,
}

/// A replay navigation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCommand {
    PlayPause,
    Faster,
    Slower,
    /// Seek by a fraction of the run, in percent.
    SeekPercent(i32),
    PrevPhase,
    NextPhase,
    Start,
    End,
}

/// Something the event loop must do on the app's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Control(Control),
    Replay(ReplayCommand),
    /// Hand a job to the probe worker.
    Probe(Box<ProbeJob>),
    CancelProbe,
    Quit,
}

/// Where the replay stands, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReplayStatus {
    pub position: usize,
    pub total: usize,
    pub playing: bool,
    pub speed: f64,
    /// Replay clock and the replay's length, in (gap-capped) log seconds.
    pub clock: f64,
    pub duration: f64,
}

/// The whole dashboard state.
#[derive(Debug, Clone)]
pub struct App {
    pub mode: Mode,
    pub run: RunModel,
    pub view: ViewState,
    pub theme: Theme,
    pub overlay: Overlay,
    pub quit: Quit,
    pub replay: Option<ReplayStatus>,
    /// The file or run being shown, for the header (normalised).
    pub source: String,
    /// Log lines that could not be read (replay and watch).
    pub skipped_lines: u64,
    /// The live trainer's thread has ended (its channel closed).
    pub trainer_done: bool,
    pub screen: Screen,
    /// Index into `run.topics` of the topic the stance panel selects.
    pub selected_topic: usize,
    /// Row under the drift table's cursor.
    pub drift_row: usize,
    /// Lines scrolled down in the rollouts view.
    pub rollouts_scroll: u16,
    pub probe: ProbeScreen,
    /// The run's directory, where its snapshots are (none for foreign logs).
    pub run_dir: Option<PathBuf>,
    /// Which key does what (the built-in keymap unless the user has one).
    pub keymap: Keymap,
}

impl App {
    pub fn new(mode: Mode, theme: Theme, source: impl Into<String>) -> Self {
        let source = path_display::shown(Path::new(&source.into()));
        Self {
            mode,
            run: RunModel::new(),
            view: ViewState::default(),
            theme,
            overlay: Overlay::None,
            quit: Quit::Running,
            replay: None,
            source,
            skipped_lines: 0,
            trainer_done: false,
            screen: Screen::Dashboard,
            selected_topic: 0,
            drift_row: 0,
            rollouts_scroll: 0,
            probe: ProbeScreen::default(),
            run_dir: None,
            keymap: Keymap::built_in(),
        }
    }

    /// The run directory's snapshots change: keep the probe screen's list current.
    fn refresh_snapshots(&mut self) {
        let dir = self.run_dir.clone();
        self.probe
            .refresh(dir.as_deref(), &self.run.snapshot_events);
    }

    /// A message from the probe worker.
    pub fn on_worker(&mut self, update: WorkerUpdate) {
        if let Some((is_error, text)) = self.probe.apply(update) {
            let level = if is_error {
                Level::Warning
            } else {
                Level::Info
            };
            self.run.note(level, text);
        }
    }

    /// Fold events in.
    pub fn apply(&mut self, events: &[Event]) {
        let snapshots = self.run.snapshot_events.len();
        for e in events {
            self.run.apply(e);
        }
        if self.screen == Screen::Probe && self.run.snapshot_events.len() != snapshots {
            self.refresh_snapshots();
        }
        if self.quit == Quit::Stopping && self.run.ended.is_some() {
            self.quit = Quit::Now;
        }
    }

    /// The live trainer's event channel closed.
    pub fn trainer_finished(&mut self) {
        self.trainer_done = true;
        if self.quit == Quit::Stopping {
            self.quit = Quit::Now;
        } else if self.run.ended.is_none() {
            self.run.note(
                Level::Warning,
                "the trainer stopped without a run_end event",
            );
        }
    }

    /// Where keys are looked up now.
    pub fn context(&self) -> Context {
        match self.overlay {
            Overlay::Help => Context::Help,
            Overlay::ConfirmQuit => Context::Confirm,
            Overlay::None => match self.screen {
                Screen::Dashboard => Context::Main,
                Screen::Topic => Context::Topic,
                Screen::Drift => Context::Drift,
                Screen::Probe if self.probe.editing => Context::ProbeInput,
                Screen::Probe => Context::Probe,
                Screen::Rollouts => Context::Rollouts,
            },
        }
    }

    /// A key press; returns what the loop must do.
    pub fn on_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        let context = self.context();
        if context == Context::ProbeInput && key.kind != KeyEventKind::Release {
            let plain = key.modifiers - KeyModifiers::SHIFT;
            match key.code {
                KeyCode::Char('u') if plain == KeyModifiers::CONTROL => {
                    self.probe.clear_question();
                    return Vec::new();
                }
                KeyCode::Char(c) if plain.is_empty() => {
                    self.probe.type_char(c);
                    return Vec::new();
                }
                KeyCode::Backspace => {
                    self.probe.backspace();
                    return Vec::new();
                }
                _ => {}
            }
        }
        let action = self.keymap.lookup(key, context, self.mode).or_else(|| {
            if context.falls_through() {
                self.keymap.lookup(key, Context::Main, self.mode)
            } else {
                None
            }
        });
        match action {
            Some(a) => self.on_action(a),
            None => Vec::new(),
        }
    }

    fn open(&mut self, screen: Screen) {
        self.screen = screen;
        if screen == Screen::Probe {
            self.refresh_snapshots();
        }
    }

    fn step_topic(&mut self, by: isize) {
        let n = self.run.topics.len();
        if n == 0 {
            return;
        }
        let i = self.selected_topic.min(n - 1) as isize + by;
        self.selected_topic = if self.screen == Screen::Topic {
            i.rem_euclid(n as isize) as usize
        } else {
            i.clamp(0, n as isize - 1) as usize
        };
    }

    /// Whether stopping needs the trainer's consent (a live run still going).
    fn run_is_live(&self) -> bool {
        self.mode == Mode::Live && !self.trainer_done && self.run.ended.is_none()
    }

    pub fn on_action(&mut self, action: Action) -> Vec<Effect> {
        let mut effects = Vec::new();
        match action {
            Action::Quit => {
                if self.run_is_live() && self.quit == Quit::Running {
                    self.overlay = Overlay::ConfirmQuit;
                } else {
                    self.quit = Quit::Now;
                    effects.push(Effect::Quit);
                }
            }
            Action::Interrupt => {
                if self.run_is_live() && self.quit == Quit::Running {
                    self.overlay = Overlay::None;
                    self.begin_stop(&mut effects);
                } else {
                    self.quit = Quit::Now;
                    effects.push(Effect::Quit);
                }
            }
            Action::ConfirmYes => {
                self.overlay = Overlay::None;
                self.begin_stop(&mut effects);
            }
            Action::ConfirmNo | Action::CloseOverlay => self.overlay = Overlay::None,
            Action::ToggleHelp => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                }
            }
            Action::TogglePause => {
                let c = if self.run.paused {
                    Control::Resume
                } else {
                    Control::Pause
                };
                self.run.note(
                    Level::Info,
                    if c == Control::Pause {
                        "pause requested (takes effect after the current step)"
                    } else {
                        "resume requested"
                    },
                );
                effects.push(Effect::Control(c));
            }
            Action::Snapshot => {
                self.run.note(Level::Info, "snapshot requested");
                effects.push(Effect::Control(Control::Snapshot));
            }
            Action::ProbeNow => {
                self.run.note(Level::Info, "probe requested");
                effects.push(Effect::Control(Control::ProbeNow));
            }
            Action::FocusNext => self.view.focus = self.view.focus.step(1),
            Action::FocusPrev => self.view.focus = self.view.focus.step(-1),
            Action::ToggleEnlarge => {
                if self.view.focus == Panel::Stance && !self.run.topics.is_empty() {
                    self.selected_topic = self.selected_topic.min(self.run.topics.len() - 1);
                    self.open(Screen::Topic);
                } else {
                    self.view.enlarged = !self.view.enlarged;
                }
            }
            Action::NextTopic | Action::PrevTopic => {
                if self.screen == Screen::Dashboard {
                    self.view.focus = Panel::Stance;
                }
                self.step_topic(if action == Action::NextTopic { 1 } else { -1 });
            }
            Action::ToggleDrift => {
                let to = if self.screen == Screen::Drift {
                    Screen::Dashboard
                } else {
                    Screen::Drift
                };
                self.open(to);
            }
            Action::OpenProbe => self.open(Screen::Probe),
            Action::ToggleRollouts => {
                let to = if self.screen == Screen::Rollouts {
                    Screen::Dashboard
                } else {
                    Screen::Rollouts
                };
                self.open(to);
            }
            Action::Back => self.open(Screen::Dashboard),
            Action::Down | Action::Up | Action::PageDown | Action::PageUp => {
                let by: isize = match action {
                    Action::Down => 1,
                    Action::Up => -1,
                    Action::PageDown => 10,
                    _ => -10,
                };
                if self.screen == Screen::Rollouts {
                    self.rollouts_scroll =
                        (self.rollouts_scroll as isize + by).clamp(0, 10_000) as u16;
                } else if self.screen == Screen::Probe && by.abs() > 1 {
                    let lines = if by > 0 { 5 } else { -5 };
                    self.probe.scroll =
                        (self.probe.scroll as isize + lines).clamp(0, 10_000) as u16;
                } else if self.screen == Screen::Probe {
                    self.probe.move_cursor(by);
                } else {
                    self.drift_row = (self.drift_row as isize + by).max(0) as usize;
                }
            }
            Action::OpenTopic => {
                let rows = self.run.drift_table().rows();
                if let Some(r) = rows.get(self.drift_row.min(rows.len().saturating_sub(1))) {
                    if let Some(i) = self.run.topics.iter().position(|(n, _)| *n == r.topic) {
                        self.selected_topic = i;
                        self.open(Screen::Topic);
                    }
                }
            }
            Action::PickSnapshot => self.pick_snapshot(),
            Action::EditQuestion => self.probe.start_editing(),
            Action::StopEditing => self.probe.editing = false,
            Action::NextQuestion => self.probe.step_question(1),
            Action::PrevQuestion => self.probe.step_question(-1),
            Action::ToggleJudge => {
                self.probe.judge = match self.probe.judge {
                    JudgeChoice::StartingModel => JudgeChoice::Checkpoint,
                    JudgeChoice::Checkpoint => JudgeChoice::StartingModel,
                }
            }
            Action::Ask => {
                self.probe.editing = false;
                let dir = self.run_dir.clone();
                match self.probe.job(dir.as_deref()) {
                    Ok(job) => {
                        self.run.note(
                            Level::Info,
                            format!(
                                "probing {} (answers stream in; the dashboard goes on)",
                                job.checkpoints
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                            ),
                        );
                        effects.push(Effect::Probe(Box::new(job)));
                    }
                    Err(msg) => self.run.note(Level::Warning, msg),
                }
            }
            Action::CancelProbe => {
                if self.probe.running.is_some() {
                    effects.push(Effect::CancelProbe);
                }
            }
            Action::Rescan => self.refresh_snapshots(),
            Action::ToggleLogScale => self.view.log_scale = !self.view.log_scale,
            Action::ToggleSmoothing => {
                self.view.smoothing = match self.view.smoothing {
                    Some(_) => None,
                    None => Some(SMOOTHING_WEIGHT),
                }
            }
            Action::ToggleZoom => {
                self.view.zoom = match self.view.zoom {
                    Zoom::WholeRun => Zoom::Recent,
                    Zoom::Recent => Zoom::WholeRun,
                }
            }
            Action::PlayPause => effects.push(Effect::Replay(ReplayCommand::PlayPause)),
            Action::SpeedUp => effects.push(Effect::Replay(ReplayCommand::Faster)),
            Action::SpeedDown => effects.push(Effect::Replay(ReplayCommand::Slower)),
            Action::SeekBack => effects.push(Effect::Replay(ReplayCommand::SeekPercent(-2))),
            Action::SeekForward => effects.push(Effect::Replay(ReplayCommand::SeekPercent(2))),
            Action::PrevPhase => effects.push(Effect::Replay(ReplayCommand::PrevPhase)),
            Action::NextPhase => effects.push(Effect::Replay(ReplayCommand::NextPhase)),
            Action::JumpStart => effects.push(Effect::Replay(ReplayCommand::Start)),
            Action::JumpEnd => effects.push(Effect::Replay(ReplayCommand::End)),
        }
        effects
    }

    /// Space on the probe screen: say where the picks stand and what the
    /// next key does, so that a pick undone by a second Space is seen.
    fn pick_snapshot(&mut self) {
        let key = |action: Action| {
            self.keymap
                .key_for(Context::Probe, self.mode, action)
                .map_or_else(|| action.name(), |k| k.to_string())
        };
        let (pick, ask) = (key(Action::PickSnapshot), key(Action::Ask));
        let picks = |names: &[&str]| {
            names
                .iter()
                .zip(["A", "B"])
                .map(|(n, c)| format!("{c} = {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (level, text) = match self.probe.toggle_pick() {
            Pick::Nothing => return,
            Pick::Refused(why) => (Level::Warning, why),
            Pick::Picked { column: 0, .. } => {
                let now = picks(&self.probe.picked_names());
                (
                    Level::Info,
                    format!("{now}; {pick} on another snapshot picks B, {ask} asks A alone"),
                )
            }
            Pick::Picked { .. } => {
                let now = picks(&self.probe.picked_names());
                (Level::Info, format!("{now}; {ask} asks both, side by side"))
            }
            Pick::Unpicked { name } => {
                let names = self.probe.picked_names();
                let now = if names.is_empty() {
                    "none picked".to_string()
                } else {
                    picks(&names)
                };
                (Level::Info, format!("{name} unpicked; {now}"))
            }
        };
        self.run.note(level, text);
    }

    fn begin_stop(&mut self, effects: &mut Vec<Effect>) {
        self.quit = Quit::Stopping;
        self.run.note(
            Level::Info,
            "stopping: waiting for the final snapshot and run_end (Ctrl-C again to quit now)",
        );
        effects.push(Effect::Control(Control::Stop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn live_quit_asks_then_stops_and_waits_for_run_end() {
        let mut app = App::new(Mode::Live, Theme::default(), "run");
        assert!(app.on_key(&key('q')).is_empty());
        assert_eq!(app.overlay, Overlay::ConfirmQuit);
        assert!(app.on_key(&key('n')).is_empty());
        assert_eq!(app.overlay, Overlay::None);
        app.on_key(&key('q'));
        assert_eq!(app.on_key(&key('y')), vec![Effect::Control(Control::Stop)]);
        assert_eq!(app.quit, Quit::Stopping);
        app.apply(&[Event::RunEnd(crate::events::RunEnd {
            t: 1.0,
            status: crate::events::RunStatus::Stopped,
            global_step: 3,
            seconds: 1.0,
            message: None,
        })]);
        assert_eq!(app.quit, Quit::Now);
    }

    #[test]
    fn replay_quits_without_asking() {
        let mut app = App::new(Mode::Replay, Theme::default(), "run");
        assert_eq!(app.on_key(&key('q')), vec![Effect::Quit]);
    }

    #[test]
    fn second_interrupt_while_stopping_quits_now() {
        let mut app = App::new(Mode::Live, Theme::default(), "run");
        let cc = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(&cc), vec![Effect::Control(Control::Stop)]);
        assert_eq!(app.on_key(&cc), vec![Effect::Quit]);
    }
}
