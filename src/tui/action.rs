//! What the user can ask of the dashboard ([`Action`]), in which dashboard
//! ([`Mode`]) and where ([`Context`]), and the keys that ask it ([`Key`]).
//! Which key does what is data: see [`super::keymap`].

use crossterm::event::{KeyCode, KeyModifiers};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// Everything the user can ask of the dashboard; the keymap names these in
/// snake_case (`toggle_pause`, `seek_back`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// Open or close the rollouts view (an RL phase's sampled answers).
    ToggleRollouts,
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

impl Action {
    /// As the keymap writes it: `toggle_log_scale`.
    pub fn name(self) -> String {
        let mut out = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
}

/// Which dashboard is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Live,
    Replay,
    Watch,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Live, Mode::Replay, Mode::Watch];

    /// As the keymap and the header write it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Replay => "replay",
            Mode::Watch => "watch",
        }
    }
}

/// Where keys are looked up: the main screen (whatever the mode), or a
/// dialog or screen of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    Main,
    Help,
    Confirm,
    /// A topic's stance curves.
    Topic,
    /// The drift table.
    Drift,
    /// The checkpoint probe screen.
    Probe,
    /// The rollouts view.
    Rollouts,
    /// Typing a question on the probe screen.
    ProbeInput,
}

impl Context {
    /// A screen of its own: keys it does not bind fall through to the main ones.
    pub fn falls_through(self) -> bool {
        matches!(
            self,
            Context::Topic | Context::Drift | Context::Probe | Context::Rollouts
        )
    }
}

/// A key as bound: code and modifiers (Shift is in the character: `P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Key {
        Key {
            code,
            mods: KeyModifiers::NONE,
        }
    }

    /// A character typed without Ctrl or Alt: on the question line it is
    /// text, not a command.
    pub fn is_typed_text(&self) -> bool {
        matches!(self.code, KeyCode::Char(_)) && self.mods.is_empty()
    }
}

/// Names of the keys that are not one character, as the keymap writes them
/// (any case) and as the help shows them.
const NAMED: [(&str, KeyCode, &str); 16] = [
    ("space", KeyCode::Char(' '), "Space"),
    ("tab", KeyCode::Tab, "Tab"),
    ("backtab", KeyCode::BackTab, "S-Tab"),
    ("enter", KeyCode::Enter, "Enter"),
    ("esc", KeyCode::Esc, "Esc"),
    ("backspace", KeyCode::Backspace, "Bksp"),
    ("left", KeyCode::Left, "←"),
    ("right", KeyCode::Right, "→"),
    ("up", KeyCode::Up, "↑"),
    ("down", KeyCode::Down, "↓"),
    ("home", KeyCode::Home, "Home"),
    ("end", KeyCode::End, "End"),
    ("pageup", KeyCode::PageUp, "PgUp"),
    ("pagedown", KeyCode::PageDown, "PgDn"),
    ("delete", KeyCode::Delete, "Del"),
    ("insert", KeyCode::Insert, "Ins"),
];

/// Why a key name was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKey(String);

impl fmt::Display for BadKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Key {
    type Err = BadKey;

    /// `p`, `P`, `?`, `Space`, `Tab`, `Shift-Tab`, `Down`, `PageUp`, `F5`,
    /// `Ctrl-c`, `Alt-x`.
    fn from_str(s: &str) -> Result<Key, BadKey> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        // A lone "-" is the minus key, not a modifier's dash.
        while let Some((prefix, tail)) = rest.split_once('-').filter(|(_, t)| !t.is_empty()) {
            match prefix.to_ascii_lowercase().as_str() {
                "ctrl" => mods |= KeyModifiers::CONTROL,
                "alt" => mods |= KeyModifiers::ALT,
                // `S-Tab`, as the help writes it.
                "shift" | "s" => mods |= KeyModifiers::SHIFT,
                _ => break,
            }
            rest = tail;
        }
        let lower = rest.to_ascii_lowercase();
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => {
                if let Some((_, code, _)) = NAMED.iter().find(|(n, _, _)| *n == lower) {
                    *code
                } else if let Some(n) = lower
                    .strip_prefix('f')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=12).contains(n))
                {
                    KeyCode::F(n)
                } else {
                    return Err(BadKey(format!(
                        "{s:?} is not a key: use one character (p, P, ?) or a name \
                         (Space, Tab, Shift-Tab, Enter, Esc, Backspace, Left, Right, Up, Down, \
                         Home, End, PageUp, PageDown, Delete, Insert, F1-F12), \
                         optionally after Ctrl- or Alt-"
                    )));
                }
            }
        };
        if mods.contains(KeyModifiers::SHIFT) {
            mods -= KeyModifiers::SHIFT;
            match code {
                KeyCode::Tab => {
                    return Ok(Key {
                        code: KeyCode::BackTab,
                        mods,
                    })
                }
                KeyCode::Char(c) if c.is_alphabetic() => {
                    // Terminals send Shift-p as `P`: bind what arrives.
                    let upper = c.to_uppercase().next().unwrap_or(c);
                    return Ok(Key {
                        code: KeyCode::Char(upper),
                        mods,
                    });
                }
                _ => {
                    return Err(BadKey(format!(
                        "{s:?}: Shift goes only with Tab or a letter (write `P` for Shift-p)"
                    )))
                }
            }
        }
        Ok(Key { code, mods })
    }
}

impl fmt::Display for Key {
    /// How the help writes a key: `p`, `Ctrl-c`, `Tab`, `←`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("Ctrl-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("Alt-")?;
        }
        if let Some((_, _, label)) = NAMED.iter().find(|(_, code, _)| *code == self.code) {
            return f.write_str(label);
        }
        match self.code {
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        s.parse().unwrap()
    }

    #[test]
    fn keys_parse_from_their_names_and_print_as_the_help_shows_them() {
        assert_eq!(key("p"), Key::plain(KeyCode::Char('p')));
        assert_eq!(key("-"), Key::plain(KeyCode::Char('-')));
        assert_eq!(key("Space"), Key::plain(KeyCode::Char(' ')));
        assert_eq!(key("pagedown"), Key::plain(KeyCode::PageDown));
        assert_eq!(key("F5"), Key::plain(KeyCode::F(5)));
        assert_eq!(key("Shift-Tab"), Key::plain(KeyCode::BackTab));
        assert_eq!(key("shift-p"), Key::plain(KeyCode::Char('P')));
        let ctrl_c = key("Ctrl-c");
        assert_eq!(
            (ctrl_c.code, ctrl_c.mods),
            (KeyCode::Char('c'), KeyModifiers::CONTROL)
        );
        assert_eq!(key("ctrl--").code, KeyCode::Char('-'));
        for (name, label) in [
            ("Ctrl-c", "Ctrl-c"),
            ("Down", "↓"),
            ("backtab", "S-Tab"),
            ("space", "Space"),
            ("Alt-x", "Alt-x"),
            ("f12", "F12"),
            ("?", "?"),
        ] {
            assert_eq!(key(name).to_string(), label, "{name}");
        }
    }

    #[test]
    fn unknown_key_names_say_what_would_do() {
        for bad in ["", "pgdn", "Ctrl-", "Hyper-x", "F13", "Shift-1"] {
            let err = bad.parse::<Key>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let err = "pgdn".parse::<Key>().unwrap_err().to_string();
        assert!(err.contains("PageDown") && err.contains("F1-F12"), "{err}");
    }

    #[test]
    fn only_characters_without_ctrl_or_alt_are_typed_text() {
        assert!(key("x").is_typed_text() && key("Space").is_typed_text());
        assert!(!key("Ctrl-u").is_typed_text() && !key("Enter").is_typed_text());
    }
}
