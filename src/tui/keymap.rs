//! Which key does what, as data: the built-in keymap (`keymap.toml`, embedded)
//! with a user's file read over it. Dispatch, the `?` help and the hints in
//! panel titles all read the same [`Keymap`].
//!
//! A user file names only what it changes: an entry replaces the keys of its
//! action where the entry applies (its section's screen, and the modes it
//! names), `keys = []` unbinds it.
//! Unknown sections, fields, actions and key names, an action in a section
//! where it does nothing, and a key bound twice where both bindings would
//! apply are errors with the file, line and column: a broken keymap never
//! falls back silently.

use super::action::{Action, Context, Key, Mode};
use anyhow::{anyhow, bail, Context as _, Result};
use crossterm::event::{KeyEvent, KeyEventKind, KeyModifiers};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use toml::Spanned;

/// The built-in keymap's text.
pub const BUILT_IN: &str = include_str!("keymap.toml");
const BUILT_IN_ORIGIN: &str = "src/tui/keymap.toml (built in)";

/// A part of the keymap: where its bindings work, and the help's heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    View,
    Training,
    Replay,
    Help,
    QuitDialog,
    Topic,
    DriftTable,
    Probe,
    ProbeTyping,
    Rollouts,
}

impl Section {
    pub const ALL: [Section; 10] = [
        Section::View,
        Section::Training,
        Section::Replay,
        Section::Help,
        Section::QuitDialog,
        Section::Topic,
        Section::DriftTable,
        Section::Probe,
        Section::ProbeTyping,
        Section::Rollouts,
    ];

    pub fn context(self) -> Context {
        match self {
            Section::View | Section::Training | Section::Replay => Context::Main,
            Section::Help => Context::Help,
            Section::QuitDialog => Context::Confirm,
            Section::Topic => Context::Topic,
            Section::DriftTable => Context::Drift,
            Section::Probe => Context::Probe,
            Section::ProbeTyping => Context::ProbeInput,
            Section::Rollouts => Context::Rollouts,
        }
    }

    /// The modes its bindings can work in.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Section::Training => &[Mode::Live],
            Section::Replay => &[Mode::Replay],
            _ => &Mode::ALL,
        }
    }

    /// As the keymap file writes it.
    pub fn name(self) -> &'static str {
        match self {
            Section::View => "view",
            Section::Training => "training",
            Section::Replay => "replay",
            Section::Help => "help",
            Section::QuitDialog => "quit_dialog",
            Section::Topic => "topic",
            Section::DriftTable => "drift_table",
            Section::Probe => "probe",
            Section::ProbeTyping => "probe_typing",
            Section::Rollouts => "rollouts",
        }
    }

    /// The help overlay's heading.
    pub fn title(self) -> &'static str {
        match self {
            Section::View => "view",
            Section::Training => "training",
            Section::Replay => "replay",
            Section::Help => "help",
            Section::QuitDialog => "quit dialog",
            Section::Topic => "stance topic",
            Section::DriftTable => "drift table",
            Section::Probe => "checkpoint probe",
            Section::ProbeTyping => "typing a question",
            Section::Rollouts => "rollouts",
        }
    }
}

/// The sections where `action` does something.
fn sections_of(action: Action) -> &'static [Section] {
    use Action::*;
    match action {
        TogglePause | Snapshot | ProbeNow => &[Section::Training],
        PlayPause | SpeedUp | SpeedDown | SeekBack | SeekForward | PrevPhase | NextPhase
        | JumpStart | JumpEnd => &[Section::Replay],
        // The main screen's own keys; a mode's section may hold its variant.
        FocusNext | FocusPrev | ToggleEnlarge | ToggleLogScale | ToggleSmoothing | ToggleZoom
        | ToggleDrift | OpenProbe | ToggleRollouts | ToggleHelp | Quit => {
            &[Section::View, Section::Training, Section::Replay]
        }
        Interrupt => &[
            Section::View,
            Section::Training,
            Section::Replay,
            Section::Help,
            Section::QuitDialog,
            Section::ProbeTyping,
        ],
        NextTopic | PrevTopic => &[
            Section::View,
            Section::Training,
            Section::Replay,
            Section::Topic,
        ],
        CloseOverlay => &[Section::Help],
        ConfirmYes | ConfirmNo => &[Section::QuitDialog],
        Back => &[
            Section::Topic,
            Section::DriftTable,
            Section::Probe,
            Section::Rollouts,
        ],
        Down | Up | PageDown | PageUp => &[Section::DriftTable, Section::Probe, Section::Rollouts],
        OpenTopic => &[Section::DriftTable],
        PickSnapshot | EditQuestion | NextQuestion | PrevQuestion | ToggleJudge | CancelProbe
        | Rescan => &[Section::Probe],
        Ask => &[Section::Probe, Section::ProbeTyping],
        StopEditing => &[Section::ProbeTyping],
    }
}

/// The keys that leave each context that does not fall back on the main
/// screen's: a keymap without one would trap the user there.
const WAYS_OUT: [(Context, &[Action]); 4] = [
    (Context::Main, &[Action::Quit, Action::Interrupt]),
    (Context::Help, &[Action::CloseOverlay, Action::Interrupt]),
    (
        Context::Confirm,
        &[Action::ConfirmNo, Action::ConfirmYes, Action::Interrupt],
    ),
    (
        Context::ProbeInput,
        &[Action::StopEditing, Action::Ask, Action::Interrupt],
    ),
];

/// One binding: keys, the action they ask for, where, and what the help says.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub section: Section,
    pub action: Action,
    pub keys: Vec<Key>,
    /// The modes it works in (within its section's).
    pub modes: Vec<Mode>,
    pub description: String,
    /// `file:line:col` of each key, for conflict messages.
    key_origins: Vec<String>,
    /// 0: the built-in keymap; 1: the user's file.
    layer: u8,
}

impl Binding {
    pub fn works_in(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }

    /// All its keys, as the help shows them: `Tab ↓ →`.
    pub fn label(&self) -> String {
        self.keys
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every key binding of the dashboard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keymap {
    bindings: Vec<Binding>,
}

static BUILT_IN_KEYMAP: LazyLock<Result<Keymap, String>> = LazyLock::new(|| {
    let mut k = Keymap::default();
    k.layer(BUILT_IN, BUILT_IN_ORIGIN, 0)
        .map(|()| k)
        .map_err(|e| format!("{e:#}"))
});

impl Keymap {
    /// The built-in keymap. (A test keeps it valid; should it ever fail,
    /// [`Keymap::load`] says so before the dashboard starts.)
    pub fn built_in() -> Keymap {
        BUILT_IN_KEYMAP.as_ref().cloned().unwrap_or_default()
    }

    /// Where a user's keymap is looked for when `--keymap` is not given:
    /// `$XDG_CONFIG_HOME/driftui/keymap.toml`, else `~/.config/driftui/keymap.toml`.
    pub fn user_file() -> Option<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })?;
        Some(config.join("driftui").join("keymap.toml"))
    }

    /// The built-in keymap with the file at `user` (if any) read over it.
    pub fn load(user: Option<&Path>) -> Result<Keymap> {
        let mut k = (*BUILT_IN_KEYMAP).clone().map_err(|e| anyhow!(e))?;
        if let Some(path) = user {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the keymap {}", path.display()))?;
            k.layer(&text, &path.display().to_string(), 1)?;
        }
        Ok(k)
    }

    /// Every binding, in the order the help lists them.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The action bound to `ev` in `context` and `mode`, if any (key
    /// releases are ignored).
    pub fn lookup(&self, ev: &KeyEvent, context: Context, mode: Mode) -> Option<Action> {
        if ev.kind == KeyEventKind::Release {
            return None;
        }
        // Shifted characters arrive with SHIFT set on some terminals, not others.
        let key = Key {
            code: ev.code,
            mods: ev.modifiers - KeyModifiers::SHIFT,
        };
        self.bindings
            .iter()
            .find(|b| b.section.context() == context && b.works_in(mode) && b.keys.contains(&key))
            .map(|b| b.action)
    }

    /// The first key bound to `action` in `context` and `mode`, for a hint.
    pub fn key_for(&self, context: Context, mode: Mode, action: Action) -> Option<Key> {
        self.bindings
            .iter()
            .find(|b| b.section.context() == context && b.works_in(mode) && b.action == action)
            .and_then(|b| b.keys.first().copied())
    }

    /// A hint line from (action, what it does) pairs: `Space picks · r re-reads`;
    /// unbound actions are left out.
    pub fn hint(&self, context: Context, mode: Mode, parts: &[(Action, &str)]) -> String {
        parts
            .iter()
            .filter_map(|(a, what)| {
                self.key_for(context, mode, *a)
                    .map(|k| format!("{k} {what}"))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// Read `text` (TOML) over this keymap; `origin` names it in errors.
    fn layer(&mut self, text: &str, origin: &str, layer: u8) -> Result<()> {
        let at = |offset: usize| {
            let (line, col) = crate::location::line_col(text, offset);
            format!("{origin}:{line}:{col}")
        };
        let file: KeymapFile = toml::from_str(text).map_err(|e| {
            let place = e
                .span()
                .map_or_else(|| format!("{origin}:1:1"), |s| at(s.start));
            anyhow!("{place}: {}", e.message().trim())
        })?;
        for (section, entries) in file.sections() {
            for entry in entries {
                self.apply(section, entry, &at, layer)?;
            }
        }
        self.check_conflicts()?;
        self.check_ways_out(origin)
    }

    fn apply(
        &mut self,
        section: Section,
        entry: Entry,
        at: &dyn Fn(usize) -> String,
        layer: u8,
    ) -> Result<()> {
        let action = *entry.action.get_ref();
        let here = at(entry.action.span().start);
        let allowed = sections_of(action);
        if !allowed.contains(&section) {
            let homes: Vec<String> = allowed
                .iter()
                .map(|s| format!("[[{}]]", s.name()))
                .collect();
            bail!(
                "{here}: {} does nothing in [[{}]]; it belongs in {}",
                action.name(),
                section.name(),
                homes.join(" or ")
            );
        }
        let modes = match entry.modes {
            None => section.modes().to_vec(),
            Some(m) => {
                let where_ = at(m.span().start);
                if section != Section::View {
                    bail!(
                        "{where_}: `modes` narrows [[view]] bindings only; [[{}]] bindings work in {} mode",
                        section.name(),
                        section
                            .modes()
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                let m = m.into_inner();
                if m.is_empty() {
                    bail!("{where_}: `modes` is empty: leave it out for every mode, or unbind with keys = []");
                }
                m
            }
        };
        // Parsed here rather than by serde, so that an error points at the
        // key itself and not at its list.
        let keys: Option<Vec<(Key, String)>> = match entry.keys {
            None => None,
            Some(ks) => Some(
                ks.into_iter()
                    .map(|k| {
                        let place = at(k.span().start);
                        match k.get_ref().parse::<Key>() {
                            Ok(key) => Ok((key, place)),
                            Err(e) => Err(anyhow!("{place}: {e}")),
                        }
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        if section == Section::ProbeTyping {
            if let Some((k, place)) = keys.iter().flatten().find(|(k, _)| k.is_typed_text()) {
                bail!(
                    "{place}: `{k}` types into the question in [[probe_typing]]; \
                     bind a named key or one with Ctrl or Alt"
                );
            }
        }
        // The entry takes its action over wherever it applies: in its
        // context and modes (a [[view]] entry also replaces the replay
        // section's variant of its action).
        let mut replaced: Option<(usize, Binding)> = None;
        for (i, b) in self.bindings.iter_mut().enumerate() {
            if b.section.context() == section.context()
                && b.action == action
                && b.modes.iter().any(|m| modes.contains(m))
            {
                if replaced.is_none() {
                    replaced = Some((i, b.clone()));
                }
                b.modes.retain(|m| !modes.contains(m));
            }
        }
        self.bindings.retain(|b| !b.modes.is_empty());
        let (keys, key_origins): (Vec<Key>, Vec<String>) = match (keys, &replaced) {
            (Some(k), _) => k.into_iter().unzip(),
            (None, Some((_, old))) => (old.keys.clone(), old.key_origins.clone()),
            (None, None) => bail!("{here}: a new binding needs `keys`"),
        };
        if keys.is_empty() {
            return Ok(()); // unbound
        }
        let description = match (entry.description, &replaced) {
            (Some(d), _) => d,
            (None, Some((_, old))) => old.description.clone(),
            (None, None) => {
                bail!("{here}: a new binding needs a `description` (the help shows it)")
            }
        };
        let binding = Binding {
            section,
            action,
            keys,
            modes,
            description,
            key_origins,
            layer,
        };
        // Where the replaced binding was, so the help keeps its order.
        let at_index = replaced
            .map(|(i, _)| i.min(self.bindings.len()))
            .unwrap_or(self.bindings.len());
        self.bindings.insert(at_index, binding);
        Ok(())
    }

    /// A key bound twice where both bindings would apply.
    fn check_conflicts(&self) -> Result<()> {
        for (i, a) in self.bindings.iter().enumerate() {
            for b in &self.bindings[i + 1..] {
                if a.section.context() != b.section.context() {
                    continue;
                }
                let Some(mode) = a.modes.iter().find(|m| b.modes.contains(m)) else {
                    continue;
                };
                for (ka, key) in a.keys.iter().enumerate() {
                    let Some(kb) = b.keys.iter().position(|k| k == key) else {
                        continue;
                    };
                    // Point at the user's binding when one of the two is theirs.
                    let (here, there, k_here, k_there) = if b.layer >= a.layer {
                        (b, a, kb, ka)
                    } else {
                        (a, b, ka, kb)
                    };
                    let place = match here.section.context() {
                        Context::Main => format!("on the main screen in {} mode", mode.name()),
                        _ => format!("in [[{}]]", here.section.name()),
                    };
                    bail!(
                        "{}: `{key}` is bound twice {place}: to {} here, and to {} at {}; \
                         unbind one (keys = []) or choose another key",
                        here.key_origins[k_here],
                        here.action.name(),
                        there.action.name(),
                        there.key_origins[k_there],
                    );
                }
            }
        }
        // The same key twice in one binding is harmless but a slip.
        for b in &self.bindings {
            for (i, k) in b.keys.iter().enumerate() {
                if b.keys[..i].contains(k) {
                    bail!("{}: `{k}` is listed twice", b.key_origins[i]);
                }
            }
        }
        Ok(())
    }

    fn check_ways_out(&self, origin: &str) -> Result<()> {
        for (context, ways) in WAYS_OUT {
            for mode in Mode::ALL {
                let bound = self.bindings.iter().any(|b| {
                    b.section.context() == context && b.works_in(mode) && ways.contains(&b.action)
                });
                if !bound {
                    let sections: Vec<&str> = Section::ALL
                        .iter()
                        .filter(|s| s.context() == context)
                        .map(|s| s.name())
                        .collect();
                    bail!(
                        "{origin}: no key is left for {} in [[{}]] ({} mode): \
                         the dashboard could not be left from there",
                        ways.iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>()
                            .join(" or "),
                        sections.join("]] or [["),
                        mode.name()
                    );
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    view: Vec<Entry>,
    #[serde(default)]
    training: Vec<Entry>,
    #[serde(default)]
    replay: Vec<Entry>,
    #[serde(default)]
    help: Vec<Entry>,
    #[serde(default)]
    quit_dialog: Vec<Entry>,
    #[serde(default)]
    topic: Vec<Entry>,
    #[serde(default)]
    drift_table: Vec<Entry>,
    #[serde(default)]
    probe: Vec<Entry>,
    #[serde(default)]
    probe_typing: Vec<Entry>,
    #[serde(default)]
    rollouts: Vec<Entry>,
}

impl KeymapFile {
    fn sections(self) -> [(Section, Vec<Entry>); 10] {
        [
            (Section::Training, self.training),
            (Section::Replay, self.replay),
            (Section::View, self.view),
            (Section::Help, self.help),
            (Section::QuitDialog, self.quit_dialog),
            (Section::Topic, self.topic),
            (Section::DriftTable, self.drift_table),
            (Section::Probe, self.probe),
            (Section::ProbeTyping, self.probe_typing),
            (Section::Rollouts, self.rollouts),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    action: Spanned<Action>,
    keys: Option<Vec<Spanned<String>>>,
    modes: Option<Spanned<Vec<Mode>>>,
    description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyCode;

    fn press(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    fn user(text: &str) -> Result<Keymap> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keymap.toml");
        std::fs::write(&path, text).unwrap();
        Keymap::load(Some(&path))
    }

    fn err(text: &str) -> String {
        format!("{:#}", user(text).unwrap_err())
    }

    #[test]
    fn the_built_in_keymap_is_valid_and_every_action_has_a_key() {
        let k = Keymap::load(None).unwrap();
        assert_eq!(k, Keymap::built_in());
        let all = [
            Action::Quit,
            Action::Interrupt,
            Action::TogglePause,
            Action::PlayPause,
            Action::PickSnapshot,
            Action::StopEditing,
            Action::OpenTopic,
        ];
        for a in all {
            assert!(k.bindings().iter().any(|b| b.action == a), "{a:?}");
        }
        assert!(k.bindings().iter().all(|b| !b.description.is_empty()));
    }

    #[test]
    fn arrows_seek_in_replay_and_move_focus_elsewhere() {
        let k = Keymap::built_in();
        let left = press(KeyCode::Left, KeyModifiers::NONE);
        let main = Context::Main;
        assert_eq!(k.lookup(&left, main, Mode::Replay), Some(Action::SeekBack));
        assert_eq!(k.lookup(&left, main, Mode::Live), Some(Action::FocusPrev));
        assert_eq!(k.lookup(&left, main, Mode::Watch), Some(Action::FocusPrev));
    }

    #[test]
    fn training_keys_only_live_and_dialog_keys_only_in_dialogs() {
        let k = Keymap::built_in();
        let p = press(KeyCode::Char('p'), KeyModifiers::NONE);
        assert_eq!(
            k.lookup(&p, Context::Main, Mode::Live),
            Some(Action::TogglePause)
        );
        assert_eq!(k.lookup(&p, Context::Main, Mode::Replay), None);
        let y = press(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(k.lookup(&y, Context::Main, Mode::Live), None);
        assert_eq!(
            k.lookup(&y, Context::Confirm, Mode::Live),
            Some(Action::ConfirmYes)
        );
        let big_p = press(KeyCode::Char('P'), KeyModifiers::SHIFT);
        assert_eq!(
            k.lookup(&big_p, Context::Main, Mode::Live),
            Some(Action::ProbeNow)
        );
        let back_tab = press(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(
            k.lookup(&back_tab, Context::Main, Mode::Replay),
            Some(Action::FocusPrev)
        );
        let cc = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            k.lookup(&cc, Context::Help, Mode::Replay),
            Some(Action::Interrupt)
        );
        let mut release = p;
        release.kind = KeyEventKind::Release;
        assert_eq!(k.lookup(&release, Context::Main, Mode::Live), None);
    }

    #[test]
    fn a_user_file_rebinds_unbinds_and_keeps_the_rest() {
        let k = user(
            "[[view]]\naction = \"toggle_log_scale\"\nkeys = [\"L\", \"F2\"]\n\
             [[training]]\naction = \"snapshot\"\nkeys = []\n\
             [[view]]\naction = \"toggle_zoom\"\ndescription = \"zoom in and out\"\n",
        )
        .unwrap();
        let main = Context::Main;
        let l = press(KeyCode::Char('l'), KeyModifiers::NONE);
        let big_l = press(KeyCode::Char('L'), KeyModifiers::SHIFT);
        let f2 = press(KeyCode::F(2), KeyModifiers::NONE);
        let s = press(KeyCode::Char('s'), KeyModifiers::NONE);
        let z = press(KeyCode::Char('z'), KeyModifiers::NONE);
        assert_eq!(k.lookup(&l, main, Mode::Live), None);
        assert_eq!(
            k.lookup(&big_l, main, Mode::Live),
            Some(Action::ToggleLogScale)
        );
        assert_eq!(
            k.lookup(&f2, main, Mode::Replay),
            Some(Action::ToggleLogScale)
        );
        assert_eq!(k.lookup(&s, main, Mode::Live), None);
        assert_eq!(k.lookup(&z, main, Mode::Live), Some(Action::ToggleZoom));
        let zoom = k
            .bindings()
            .iter()
            .find(|b| b.action == Action::ToggleZoom)
            .unwrap();
        assert_eq!(zoom.description, "zoom in and out");
        let log = k
            .bindings()
            .iter()
            .find(|b| b.action == Action::ToggleLogScale)
            .unwrap();
        assert_eq!(
            (log.label(), log.description.as_str()),
            ("L F2".to_string(), "log scale on the y axis")
        );
        // The rebound binding keeps its place in the help's order.
        let order: Vec<Action> = k
            .bindings()
            .iter()
            .filter(|b| b.section == Section::View)
            .map(|b| b.action)
            .collect();
        let at = order
            .iter()
            .position(|a| *a == Action::ToggleLogScale)
            .unwrap();
        assert_eq!(
            order[at - 1..=at + 1],
            [
                Action::ToggleEnlarge,
                Action::ToggleLogScale,
                Action::ToggleSmoothing
            ]
        );
    }

    #[test]
    fn one_entry_replaces_an_action_in_every_mode_it_names() {
        // focus_next has a binding for live/watch and one for replay.
        let k = user("[[view]]\naction = \"focus_next\"\nkeys = [\"Tab\"]\n").unwrap();
        let focus: Vec<_> = k
            .bindings()
            .iter()
            .filter(|b| b.action == Action::FocusNext)
            .collect();
        assert_eq!(focus.len(), 1);
        assert_eq!(focus[0].modes, Mode::ALL);
        let down = press(KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(k.lookup(&down, Context::Main, Mode::Live), None);
        // Only in replay: live and watch keep the built-in keys.
        let k = user("[[view]]\naction = \"focus_next\"\nkeys = [\"n\"]\nmodes = [\"replay\"]\n")
            .unwrap();
        let n = press(KeyCode::Char('n'), KeyModifiers::NONE);
        assert_eq!(
            k.lookup(&n, Context::Main, Mode::Replay),
            Some(Action::FocusNext)
        );
        assert_eq!(k.lookup(&n, Context::Main, Mode::Live), None);
        assert_eq!(
            k.lookup(&down, Context::Main, Mode::Live),
            Some(Action::FocusNext)
        );
    }

    #[test]
    fn mistakes_are_errors_with_file_line_and_column() {
        let e = err("[[view]]\naction = \"toggle_logscale\"\nkeys = [\"L\"]\n");
        assert!(e.contains("keymap.toml:2:10:"), "{e}");
        assert!(
            e.contains("toggle_logscale") && e.contains("toggle_log_scale"),
            "{e}"
        );
        let e = err("[[view]]\naction = \"toggle_zoom\"\nkeys = [\"z\", \"PgDown\"]\n");
        assert!(e.contains("keymap.toml:3:14:"), "{e}");
        assert!(e.contains("\"PgDown\" is not a key"), "{e}");
        let e = err("[[view]]\naction = \"toggle_zoom\"\n  key = [\"Z\"]\n");
        assert!(e.contains("keymap.toml:3:3:"), "{e}");
        assert!(e.contains("key"), "{e}");
        let e = err("[[views]]\naction = \"toggle_zoom\"\n");
        assert!(e.contains("keymap.toml:1:"), "{e}");
        assert!(e.contains("views"), "{e}");
        let e = err("[[view]]\naction = \"seek_back\"\nkeys = [\"b\"]\n");
        assert!(e.contains("keymap.toml:2:10:"), "{e}");
        assert!(
            e.contains("seek_back does nothing in [[view]]; it belongs in [[replay]]"),
            "{e}"
        );
        let e = err("[[training]]\naction = \"snapshot\"\nkeys = [\"S\"]\nmodes = [\"watch\"]\n");
        assert!(
            e.contains("keymap.toml:4:9:") && e.contains("narrows [[view]]"),
            "{e}"
        );
        let e = err("[[probe_typing]]\naction = \"ask\"\nkeys = [\"Enter\", \"a\"]\n");
        assert!(
            e.contains("keymap.toml:3:18:") && e.contains("types into the question"),
            "{e}"
        );
        let e = err("[[view]]\naction = \"toggle_help\"\nkeys = [\"h\"]\nmodes = [\"paused\"]\n");
        assert!(e.contains("keymap.toml:4:"), "{e}");
        let e = err("[[topic]]\naction = \"back\"\nkeys = [\"h\", \"h\"]\n");
        assert!(
            e.contains("keymap.toml:3:14:") && e.contains("listed twice"),
            "{e}"
        );
        let e = err(
            "[[view]]\naction = \"quit\"\nkeys = []\n[[view]]\naction = \"interrupt\"\nkeys = []\n",
        );
        assert!(
            e.contains("keymap.toml:") && e.contains("no key is left for quit or interrupt"),
            "{e}"
        );
        let e = err("[[probe]]\naction = \"rescan\"\nkeys = []\n[[probe]]\naction = \"rescan\"\n");
        assert!(
            e.contains("keymap.toml:5:10:") && e.contains("needs `keys`"),
            "{e}"
        );
    }

    #[test]
    fn a_conflicting_binding_is_reported_with_both_places() {
        // `l` is the built-in log-scale key.
        let e = err("[[view]]\naction = \"toggle_zoom\"\nkeys = [\"l\"]\n");
        assert!(e.contains("keymap.toml:3:9:"), "{e}");
        assert!(
            e.contains("`l` is bound twice on the main screen in live mode: to toggle_zoom here, and to toggle_log_scale at src/tui/keymap.toml (built in):"),
            "{e}"
        );
        // A view key that a replay key already holds, in replay mode only.
        let e = err("[[view]]\naction = \"toggle_help\"\nkeys = [\"?\", \"Home\"]\n");
        assert!(
            e.contains("keymap.toml:3:14:") && e.contains("in replay mode"),
            "{e}"
        );
        assert!(e.contains("jump_start"), "{e}");
        user("[[view]]\naction = \"toggle_help\"\nkeys = [\"?\", \"Home\"]\nmodes = [\"live\", \"watch\"]\n")
            .unwrap();
        // In a dialog of its own.
        let e = err("[[quit_dialog]]\naction = \"confirm_no\"\nkeys = [\"y\"]\n");
        assert!(
            e.contains("in [[quit_dialog]]") && e.contains("confirm_yes"),
            "{e}"
        );
        // Screens of their own may shadow the main screen's keys: that is
        // how `j` moves rows in the drift table.
        user("[[drift_table]]\naction = \"open_topic\"\nkeys = [\"Enter\", \"o\"]\n").unwrap();
    }

    #[test]
    fn hints_name_the_bound_keys() {
        let k = Keymap::built_in();
        assert_eq!(
            k.hint(
                Context::Probe,
                Mode::Live,
                &[
                    (Action::PickSnapshot, "picks A, B"),
                    (Action::Rescan, "re-reads")
                ]
            ),
            "Space picks A, B · r re-reads"
        );
        let k = user("[[probe]]\naction = \"rescan\"\nkeys = []\n").unwrap();
        assert_eq!(
            k.hint(
                Context::Probe,
                Mode::Live,
                &[
                    (Action::PickSnapshot, "picks A, B"),
                    (Action::Rescan, "re-reads")
                ]
            ),
            "Space picks A, B"
        );
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = format!(
            "{:#}",
            Keymap::load(Some(Path::new("/no/such/keymap.toml"))).unwrap_err()
        );
        assert!(
            e.contains("cannot read the keymap /no/such/keymap.toml"),
            "{e}"
        );
    }
}
