//! What a key does: one table, [`KEYMAP`], maps keys to [`Action`]s with a
//! description; dispatch and the `?` help overlay both read it.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Everything the user can ask of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    /// Ctrl-C: stop at once (live: graceful stop without asking).
    Interrupt,
    ConfirmYes,
    ConfirmNo,
    TogglePause,
    Snapshot,
    ProbeNow,
    FocusNext,
    FocusPrev,
    ToggleEnlarge,
    ToggleLogScale,
    ToggleSmoothing,
    ToggleZoom,
    ToggleHelp,
    CloseOverlay,
    PlayPause,
    SpeedUp,
    SpeedDown,
    SeekBack,
    SeekForward,
    PrevPhase,
    NextPhase,
    JumpStart,
    JumpEnd,
    /// Select the next / previous topic of the stance panel (or, on a
    /// topic's screen, show the next / previous topic).
    NextTopic,
    PrevTopic,
    /// Open or close the drift table.
    ToggleDrift,
    /// Open the checkpoint probe screen.
    OpenProbe,
    /// Back to the dashboard (or out of typing).
    Back,
    Down,
    Up,
    PageDown,
    PageUp,
    /// Drift table: open the topic of the row under the cursor.
    OpenTopic,
    PickSnapshot,
    EditQuestion,
    NextQuestion,
    PrevQuestion,
    ToggleJudge,
    Ask,
    CancelProbe,
    Rescan,
    StopEditing,
}

/// Which dashboard is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
    Watch,
}

/// Where a binding applies: the main screen in some modes, or a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Main {
        live: bool,
        replay: bool,
        watch: bool,
    },
    Help,
    Confirm,
    /// A topic's stance curves.
    Topic,
    /// The drift table.
    Drift,
    /// The checkpoint probe screen.
    Probe,
    /// Typing a question on the probe screen.
    ProbeInput,
}

impl Context {
    const ALL: Context = Context::Main {
        live: true,
        replay: true,
        watch: true,
    };
    const LIVE: Context = Context::Main {
        live: true,
        replay: false,
        watch: false,
    };
    const REPLAY: Context = Context::Main {
        live: false,
        replay: true,
        watch: false,
    };
    const NOT_REPLAY: Context = Context::Main {
        live: true,
        replay: false,
        watch: true,
    };

    /// Whether the binding works on the main screen of `mode`.
    pub fn in_mode(self, mode: Mode) -> bool {
        match self {
            Context::Main {
                live,
                replay,
                watch,
            } => match mode {
                Mode::Live => live,
                Mode::Replay => replay,
                Mode::Watch => watch,
            },
            _ => false,
        }
    }

    /// The group the help overlay files it under.
    pub fn group(self) -> &'static str {
        match self {
            Context::Main {
                live: true,
                replay: false,
                watch: false,
            } => "training",
            Context::Main {
                live: false,
                replay: true,
                watch: false,
            } => "replay",
            Context::Main { .. } => "view",
            Context::Help => "help",
            Context::Confirm => "quit dialog",
            Context::Topic => "stance topic",
            Context::Drift => "drift table",
            Context::Probe => "checkpoint probe",
            Context::ProbeInput => "typing a question",
        }
    }

    /// A screen of its own: keys it does not bind fall through to the main ones.
    pub fn falls_through(self) -> bool {
        matches!(self, Context::Topic | Context::Drift | Context::Probe)
    }
}

/// A key as bound: code and modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const fn key(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

const fn code(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

/// One line of the keymap.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    pub action: Action,
    pub context: Context,
    pub description: &'static str,
}

const fn bind(
    keys: &'static [Key],
    action: Action,
    context: Context,
    description: &'static str,
) -> Binding {
    Binding {
        keys,
        action,
        context,
        description,
    }
}

/// Every key binding; the first match for the current context wins.
pub const KEYMAP: &[Binding] = &[
    bind(
        &[key('p')],
        Action::TogglePause,
        Context::LIVE,
        "pause / resume training",
    ),
    bind(
        &[key('s')],
        Action::Snapshot,
        Context::LIVE,
        "save a snapshot now",
    ),
    bind(
        &[key('P')],
        Action::ProbeNow,
        Context::LIVE,
        "probe stances now",
    ),
    bind(
        &[key(' ')],
        Action::PlayPause,
        Context::REPLAY,
        "play / pause the replay",
    ),
    bind(
        &[key('+'), key('=')],
        Action::SpeedUp,
        Context::REPLAY,
        "faster (up to ×64)",
    ),
    bind(
        &[key('-')],
        Action::SpeedDown,
        Context::REPLAY,
        "slower (down to ×¼)",
    ),
    bind(
        &[code(KeyCode::Left)],
        Action::SeekBack,
        Context::REPLAY,
        "seek back 2% of the run",
    ),
    bind(
        &[code(KeyCode::Right)],
        Action::SeekForward,
        Context::REPLAY,
        "seek forward 2% of the run",
    ),
    bind(
        &[key('[')],
        Action::PrevPhase,
        Context::REPLAY,
        "to the previous phase start",
    ),
    bind(
        &[key(']')],
        Action::NextPhase,
        Context::REPLAY,
        "to the next phase start",
    ),
    bind(
        &[code(KeyCode::Home)],
        Action::JumpStart,
        Context::REPLAY,
        "to the start",
    ),
    bind(
        &[code(KeyCode::End)],
        Action::JumpEnd,
        Context::REPLAY,
        "to the end",
    ),
    bind(
        &[
            code(KeyCode::Tab),
            code(KeyCode::Down),
            code(KeyCode::Right),
        ],
        Action::FocusNext,
        Context::NOT_REPLAY,
        "focus the next panel",
    ),
    bind(
        &[
            code(KeyCode::BackTab),
            code(KeyCode::Up),
            code(KeyCode::Left),
        ],
        Action::FocusPrev,
        Context::NOT_REPLAY,
        "focus the previous panel",
    ),
    bind(
        &[code(KeyCode::Tab), code(KeyCode::Down)],
        Action::FocusNext,
        Context::REPLAY,
        "focus the next panel",
    ),
    bind(
        &[code(KeyCode::BackTab), code(KeyCode::Up)],
        Action::FocusPrev,
        Context::REPLAY,
        "focus the previous panel",
    ),
    bind(
        &[code(KeyCode::Enter)],
        Action::ToggleEnlarge,
        Context::ALL,
        "enlarge / restore the focused panel",
    ),
    bind(
        &[key('l')],
        Action::ToggleLogScale,
        Context::ALL,
        "log scale on the y axis",
    ),
    bind(
        &[key('m')],
        Action::ToggleSmoothing,
        Context::ALL,
        "smoothing (debiased EMA)",
    ),
    bind(
        &[key('z')],
        Action::ToggleZoom,
        Context::ALL,
        "zoom: recent window / whole run",
    ),
    bind(
        &[key('j')],
        Action::NextTopic,
        Context::ALL,
        "stance panel: select the next topic",
    ),
    bind(
        &[key('k')],
        Action::PrevTopic,
        Context::ALL,
        "stance panel: select the previous topic",
    ),
    bind(
        &[key('d')],
        Action::ToggleDrift,
        Context::ALL,
        "drift table (topic × stance × phase)",
    ),
    bind(
        &[key('c')],
        Action::OpenProbe,
        Context::ALL,
        "probe checkpoints: answers and stances",
    ),
    bind(&[key('?')], Action::ToggleHelp, Context::ALL, "this help"),
    bind(
        &[key('q')],
        Action::Quit,
        Context::ALL,
        "quit (live: asks, then stops gracefully)",
    ),
    bind(
        &[ctrl('c')],
        Action::Interrupt,
        Context::ALL,
        "quit now (live: graceful stop)",
    ),
    bind(
        &[key('?'), code(KeyCode::Esc), key('q')],
        Action::CloseOverlay,
        Context::Help,
        "close the help",
    ),
    bind(
        &[key('y'), code(KeyCode::Enter)],
        Action::ConfirmYes,
        Context::Confirm,
        "stop the run and quit",
    ),
    bind(
        &[key('n'), code(KeyCode::Esc), key('q')],
        Action::ConfirmNo,
        Context::Confirm,
        "keep training",
    ),
    bind(
        &[code(KeyCode::Esc), code(KeyCode::Backspace)],
        Action::Back,
        Context::Topic,
        "back to the dashboard",
    ),
    bind(
        &[key('j'), code(KeyCode::Down)],
        Action::NextTopic,
        Context::Topic,
        "next topic",
    ),
    bind(
        &[key('k'), code(KeyCode::Up)],
        Action::PrevTopic,
        Context::Topic,
        "previous topic",
    ),
    bind(
        &[code(KeyCode::Esc), code(KeyCode::Backspace), key('d')],
        Action::Back,
        Context::Drift,
        "back to the dashboard",
    ),
    bind(
        &[key('j'), code(KeyCode::Down)],
        Action::Down,
        Context::Drift,
        "next row",
    ),
    bind(
        &[key('k'), code(KeyCode::Up)],
        Action::Up,
        Context::Drift,
        "previous row",
    ),
    bind(
        &[code(KeyCode::PageDown)],
        Action::PageDown,
        Context::Drift,
        "a page down",
    ),
    bind(
        &[code(KeyCode::PageUp)],
        Action::PageUp,
        Context::Drift,
        "a page up",
    ),
    bind(
        &[code(KeyCode::Enter)],
        Action::OpenTopic,
        Context::Drift,
        "this row's topic: its stance curves",
    ),
    bind(
        &[code(KeyCode::Esc)],
        Action::Back,
        Context::Probe,
        "back to the dashboard (a running probe goes on)",
    ),
    bind(
        &[key('j'), code(KeyCode::Down)],
        Action::Down,
        Context::Probe,
        "next snapshot",
    ),
    bind(
        &[key('k'), code(KeyCode::Up)],
        Action::Up,
        Context::Probe,
        "previous snapshot",
    ),
    bind(
        &[code(KeyCode::PageDown)],
        Action::PageDown,
        Context::Probe,
        "scroll the answers down",
    ),
    bind(
        &[code(KeyCode::PageUp)],
        Action::PageUp,
        Context::Probe,
        "scroll the answers up",
    ),
    bind(
        &[key(' ')],
        Action::PickSnapshot,
        Context::Probe,
        "pick / unpick a snapshot (two side by side)",
    ),
    bind(
        &[key('e'), key('/')],
        Action::EditQuestion,
        Context::Probe,
        "type a question",
    ),
    bind(
        &[key('n')],
        Action::NextQuestion,
        Context::Probe,
        "next question of the probe set",
    ),
    bind(
        &[key('N')],
        Action::PrevQuestion,
        Context::Probe,
        "previous question of the probe set",
    ),
    bind(
        &[key('t')],
        Action::ToggleJudge,
        Context::Probe,
        "judge: starting model / checkpoint itself",
    ),
    bind(
        &[code(KeyCode::Enter)],
        Action::Ask,
        Context::Probe,
        "ask: sample answers, score their stances",
    ),
    bind(
        &[key('x')],
        Action::CancelProbe,
        Context::Probe,
        "cancel the running probe",
    ),
    bind(
        &[key('r')],
        Action::Rescan,
        Context::Probe,
        "re-read the run's snapshots",
    ),
    bind(
        &[code(KeyCode::Enter)],
        Action::Ask,
        Context::ProbeInput,
        "ask this question",
    ),
    bind(
        &[code(KeyCode::Esc)],
        Action::StopEditing,
        Context::ProbeInput,
        "stop typing (Ctrl-u clears)",
    ),
    bind(
        &[ctrl('c')],
        Action::Interrupt,
        Context::ProbeInput,
        "quit now",
    ),
    bind(&[ctrl('c')], Action::Interrupt, Context::Help, "quit now"),
    bind(
        &[ctrl('c')],
        Action::Interrupt,
        Context::Confirm,
        "quit now",
    ),
];

/// The action bound to `ev` in `context`, if any (key releases are ignored).
pub fn lookup(ev: &KeyEvent, context: Context, mode: Mode) -> Option<Action> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    // Shifted characters arrive with SHIFT set on some terminals, not others.
    let mods = ev.modifiers - KeyModifiers::SHIFT;
    let code = ev.code;
    KEYMAP
        .iter()
        .filter(|b| match (b.context, context) {
            (c @ Context::Main { .. }, Context::Main { .. }) => c.in_mode(mode),
            (a, b) => a == b,
        })
        .find(|b| b.keys.iter().any(|k| k.code == code && k.mods == mods))
        .map(|b| b.action)
}

/// How a key is written in the help: `p`, `Ctrl-c`, `Tab`, `←`.
pub fn key_label(k: &Key) -> String {
    let base = match k.code {
        KeyCode::Char(' ') => "Space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Esc => "Esc".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Home => "Home".into(),
        KeyCode::End => "End".into(),
        KeyCode::Backspace => "Bksp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::PageUp => "PgUp".into(),
        other => format!("{other:?}"),
    };
    if k.mods.contains(KeyModifiers::CONTROL) {
        format!("Ctrl-{base}")
    } else {
        base
    }
}

/// All keys of a binding, as the help shows them: `Tab ↓ →`.
pub fn binding_label(b: &Binding) -> String {
    b.keys.iter().map(key_label).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn arrows_seek_in_replay_and_move_focus_elsewhere() {
        let left = press(KeyCode::Left, KeyModifiers::NONE);
        let main = Context::ALL;
        assert_eq!(lookup(&left, main, Mode::Replay), Some(Action::SeekBack));
        assert_eq!(lookup(&left, main, Mode::Live), Some(Action::FocusPrev));
        assert_eq!(lookup(&left, main, Mode::Watch), Some(Action::FocusPrev));
    }

    #[test]
    fn training_keys_only_live_and_dialog_keys_only_in_dialogs() {
        let p = press(KeyCode::Char('p'), KeyModifiers::NONE);
        assert_eq!(
            lookup(&p, Context::ALL, Mode::Live),
            Some(Action::TogglePause)
        );
        assert_eq!(lookup(&p, Context::ALL, Mode::Replay), None);
        let y = press(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(lookup(&y, Context::ALL, Mode::Live), None);
        assert_eq!(
            lookup(&y, Context::Confirm, Mode::Live),
            Some(Action::ConfirmYes)
        );
        let big_p = press(KeyCode::Char('P'), KeyModifiers::SHIFT);
        assert_eq!(
            lookup(&big_p, Context::ALL, Mode::Live),
            Some(Action::ProbeNow)
        );
        let cc = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            lookup(&cc, Context::Help, Mode::Replay),
            Some(Action::Interrupt)
        );
    }

    #[test]
    fn screens_fall_through_to_the_main_keys() {
        let j = press(KeyCode::Char('j'), KeyModifiers::NONE);
        assert_eq!(lookup(&j, Context::Drift, Mode::Live), Some(Action::Down));
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(lookup(&q, Context::Drift, Mode::Live), None);
        assert!(Context::Drift.falls_through() && !Context::ProbeInput.falls_through());
        let space = press(KeyCode::Char(' '), KeyModifiers::NONE);
        assert_eq!(
            lookup(&space, Context::Probe, Mode::Replay),
            Some(Action::PickSnapshot)
        );
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for ctx in [
            Context::Topic,
            Context::Drift,
            Context::Probe,
            Context::ProbeInput,
            Context::Help,
            Context::Confirm,
        ] {
            let mut seen = Vec::new();
            for b in KEYMAP.iter().filter(|b| b.context == ctx) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} bound twice in {ctx:?}");
                    seen.push(*k);
                }
            }
        }
        for mode in [Mode::Live, Mode::Replay, Mode::Watch] {
            let mut seen = Vec::new();
            for b in KEYMAP.iter().filter(|b| b.context.in_mode(mode)) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} bound twice in {mode:?}");
                    seen.push(*k);
                }
            }
        }
    }
}
