//! The dashboard without a terminal: a recorded run in, keys in, screens out.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use driftui::events::{
    read_log, Event, Marker, ModelInfo, PhasePlan, PhaseStart, RunStart, Stance, StepEvent,
};
use driftui::tui::action::Mode;
use driftui::tui::app::{App, Overlay, Panel, Quit, Screen, Zoom};
use driftui::tui::event_loop::{self, Source};
use driftui::tui::keymap::Keymap;
use driftui::tui::panels::help;
use driftui::tui::replay::Replay;
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use driftui::tui::UiOptions;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/sample-run.jsonl")
}

/// The app after the first `n` events of the sample run (all when `None`).
fn app_after(mode: Mode, n: Option<usize>, theme: &str) -> App {
    let (events, report) = read_log(&fixture()).unwrap();
    assert!(report.skipped.is_empty());
    let n = n.unwrap_or(events.len());
    let mut app = App::new(
        mode,
        Theme::built_in(theme).unwrap(),
        "tests/fixtures/events/sample-run.jsonl",
    );
    app.apply(&events[..n]);
    app
}

/// Index just after the step event with this global step.
fn after_step(global: u64) -> usize {
    let (events, _) = read_log(&fixture()).unwrap();
    events
        .iter()
        .position(|e| matches!(e, Event::Step(s) if s.global_step == global))
        .unwrap()
        + 1
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    t
}

fn text(buf: &Buffer) -> String {
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &[KeyEvent]) {
    for k in keys {
        app.on_key(k);
    }
}

#[test]
fn mid_sft_screen() {
    let app = app_after(Mode::Live, Some(after_step(75)), "dark");
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("phase 1/2 sft (sft)"), "{screen}");
    assert!(screen.contains("global 75/180"), "{screen}");
    assert!(screen.contains("no preference steps yet"), "{screen}");
    insta::assert_snapshot!("mid_sft_120x40", t.backend());
}

#[test]
fn mid_dpo_screen_with_rewards_and_stances() {
    let app = app_after(Mode::Live, Some(after_step(160)), "dark");
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("phase 2/2 dpo (dpo)"), "{screen}");
    assert!(screen.contains("margin 1.19"), "{screen}");
    assert!(screen.contains("climate change"), "{screen}");
    insta::assert_snapshot!("mid_dpo_120x40", t.backend());
}

#[test]
fn finished_run_in_replay_with_timeline() {
    let (mut replay, _) = Replay::open(&fixture()).unwrap();
    let mut app = App::new(
        Mode::Replay,
        Theme::default(),
        "tests/fixtures/events/sample-run.jsonl",
    );
    replay.seek(replay.len(), &mut app.run).unwrap();
    app.replay = Some(replay.status());
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("■ completed"), "{screen}");
    assert!(
        screen.contains(&format!("event {0}/{0}", replay.len())),
        "{screen}"
    );
    // The stance panel's drift since the first probe, `~` where the run's
    // 95% interval contains 0. By hand from the fixture's JSON (unpaired
    // normal intervals, see tests/probe_screens.rs): abortion +0.249
    // [+0.059, +0.438], −0.128 [−0.304, +0.048], −0.120 [−0.284, +0.043];
    // climate change −0.153 [−0.323, +0.016], +0.307 [+0.120, +0.493],
    // −0.153 [−0.317, +0.010].
    let squeeze = |needle: &str| {
        let line = screen.lines().find(|l| l.contains(needle)).unwrap();
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(
        squeeze("│abortion").ends_with("S +.25 N ~−.13 O ~−.12 │"),
        "{screen}"
    );
    assert!(
        squeeze("│climate change").ends_with("S ~−.15 N +.31 O ~−.15 │"),
        "{screen}"
    );
    insta::assert_snapshot!("replay_end_120x40", t.backend());
}

#[test]
fn no_probes_yet() {
    let (events, _) = read_log(&fixture()).unwrap();
    let mut app = App::new(Mode::Live, Theme::default(), "run");
    let steps: Vec<Event> = events
        .into_iter()
        .filter(|e| !matches!(e, Event::Probe(_)))
        .take(30)
        .collect();
    app.apply(&steps);
    let screen = text(draw(&app, 100, 30).backend().buffer());
    assert!(screen.contains("no probes yet"), "{screen}");
}

#[test]
fn help_overlay_lists_every_binding() {
    let mut listed = std::collections::HashSet::new();
    for mode in [Mode::Live, Mode::Replay, Mode::Watch] {
        for screen in [
            Screen::Dashboard,
            Screen::Topic,
            Screen::Drift,
            Screen::Probe,
            Screen::Rollouts,
        ] {
            let mut app = app_after(mode, Some(after_step(20)), "dark");
            app.screen = screen;
            press(&mut app, &[key('?')]);
            assert_eq!(app.overlay, Overlay::Help);
            let t = draw(&app, 120, 40);
            let screen_text = text(t.backend().buffer());
            // Every binding of the sections this screen lists is on it.
            let groups = help::groups_on(screen);
            let keymap = app.keymap.clone();
            let shown: Vec<_> = keymap
                .bindings()
                .iter()
                .enumerate()
                .filter(|(_, b)| groups.contains(&b.section))
                .collect();
            for (i, b) in &shown {
                let line = format!("{}  ", b.label());
                assert!(
                    screen_text.contains(&line) && screen_text.contains(&b.description),
                    "{mode:?} {screen:?}: help lacks {line:?} {:?}\n{screen_text}",
                    b.description
                );
                listed.insert(*i);
            }
            // Exactly one help line per binding, nothing invented.
            let entries = help::columns(&app)
                .iter()
                .flatten()
                .filter(|l| l.spans.len() == 2)
                .count();
            assert_eq!(entries, shown.len(), "{mode:?} {screen:?}");
            if mode == Mode::Live && screen == Screen::Dashboard {
                insta::assert_snapshot!("help_live_120x40", t.backend());
            }
            press(&mut app, &[KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)]);
            assert_eq!(app.overlay, Overlay::None);
        }
    }
    // Over all screens, the help shows the whole keymap.
    assert_eq!(listed.len(), Keymap::built_in().bindings().len());
}

/// A keymap file in a temporary directory, loaded over the built-in one.
fn user_keymap(text: &str) -> anyhow::Result<Keymap> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keymap.toml");
    std::fs::write(&path, text).unwrap();
    UiOptions {
        keymap: Some(path),
        ..Default::default()
    }
    .keymap()
}

#[test]
fn a_rebound_key_works_and_the_help_reads_it_from_the_keymap() {
    let keymap = user_keymap(
        "[[view]]\naction = \"toggle_log_scale\"\nkeys = [\"L\"]\n\
         description = \"logarithmic loss and rewards\"\n\
         [[view]]\naction = \"toggle_help\"\nkeys = [\"F1\"]\n",
    )
    .unwrap();
    let mut app = app_after(Mode::Live, Some(after_step(170)), "dark");
    app.keymap = keymap;
    // The old key does nothing now; the new one does what the old did.
    press(&mut app, &[key('l')]);
    assert!(!app.view.log_scale);
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::Char('L'), KeyModifiers::SHIFT)],
    );
    assert!(app.view.log_scale);
    press(&mut app, &[key('?')]);
    assert_eq!(app.overlay, Overlay::None);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(screen.contains("F1 help"), "{screen}");
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE)],
    );
    assert_eq!(app.overlay, Overlay::Help);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = screen.lines().map(squeeze).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("│ L logarithmic loss and rewards")),
        "{screen}"
    );
    assert!(
        lines.iter().any(|l| l.contains("│ F1 this help")),
        "{screen}"
    );
    assert!(!screen.contains("log scale on the y axis"), "{screen}");
    // Keys the file leaves alone keep their built-in binding and text.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("│ m smoothing (debiased EMA)")),
        "{screen}"
    );
}

#[test]
fn a_bad_keymap_file_stops_the_dashboard_with_file_line_and_column() {
    let err = user_keymap("[[view]]\naction = \"toggle_zoom\"\nkeys = [\"z\", \"Ctrl-Shift\"]\n")
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("keymap.toml:3:14: \"Ctrl-Shift\" is not a key"),
        "{msg}"
    );
    let err = user_keymap("[[replay]]\naction = \"faster\"\nkeys = [\">\"]\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("keymap.toml:2:10: unknown variant `faster`"),
        "{msg}"
    );
    let opts = UiOptions {
        keymap: Some("/no/such/keymap.toml".into()),
        ..Default::default()
    };
    let msg = format!("{:#}", opts.validate().unwrap_err());
    assert!(
        msg.contains("cannot read the keymap /no/such/keymap.toml"),
        "{msg}"
    );
}

#[test]
fn keys_change_the_view() {
    let mut app = app_after(Mode::Live, Some(after_step(170)), "dark");
    press(&mut app, &[key('l'), key('m'), key('z')]);
    assert!(app.view.log_scale);
    assert_eq!(app.view.smoothing, Some(0.6));
    assert_eq!(app.view.zoom, Zoom::Recent);
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("[log · ema 0.6 · recent]"), "{screen}");
    insta::assert_snapshot!("log_smooth_recent_120x40", t.backend());

    let tab = KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE);
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    // Enter enlarges the loss panel; Tab moves the enlarged view to stance.
    press(&mut app, &[key('l'), key('m'), key('z'), enter, tab, tab]);
    assert_eq!(app.view.focus, Panel::Stance);
    assert!(app.view.enlarged);
    let t = draw(&app, 120, 40);
    insta::assert_snapshot!("stance_enlarged_120x40", t.backend());
    // On the stance panel, Enter opens the selected topic's curves.
    press(&mut app, &[enter]);
    assert_eq!(app.screen, Screen::Topic);
}

#[test]
fn quit_in_live_mode_asks_first() {
    let mut app = app_after(Mode::Live, Some(after_step(50)), "dark");
    press(&mut app, &[key('q')]);
    let t = draw(&app, 100, 30);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("Stop training?"), "{screen}");
    insta::assert_snapshot!("confirm_quit_100x30", t.backend());
    press(&mut app, &[key('n')]);
    assert_eq!(app.quit, Quit::Running);
}

#[test]
fn tiny_terminal_gets_a_readable_notice() {
    let app = app_after(Mode::Live, Some(after_step(50)), "dark");
    let t = draw(&app, 40, 12);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("too small"), "{screen}");
    assert!(screen.contains("40×12"), "{screen}");
    insta::assert_snapshot!("too_small_40x12", t.backend());
    // Resizing back up draws the dashboard again.
    let mut t = t;
    t.backend_mut().resize(120, 40);
    t.draw(|f| ui::draw(f, &app)).unwrap();
    assert!(text(t.backend().buffer()).contains("global 50/180"));
    // And nothing panics at any small size.
    for w in [1, 5, 20, 59, 60, 61] {
        for h in [1, 3, 15, 16, 17] {
            draw(&app, w, h);
        }
    }
}

/// Where `needle` starts on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for y in 0..buf.area.height {
        let row: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        let line: String = row.concat();
        if let Some(byte) = line.find(needle) {
            let col = line[..byte].chars().count() as u16;
            return Some((col, y));
        }
    }
    None
}

#[test]
fn themes_colour_the_cells() {
    for name in ["dark", "light", "high-contrast"] {
        let theme = Theme::built_in(name).unwrap();
        let app = app_after(Mode::Live, Some(after_step(170)), name);
        let t = draw(&app, 120, 40);
        let buf = t.backend().buffer();
        // The stance bar of the first topic: support █, neutral ▓, oppose ▒.
        let (_, row) = find(buf, "abortion").unwrap();
        for (glyph, stance) in [
            ("█", Stance::Support),
            ("▓", Stance::Neutral),
            ("▒", Stance::Oppose),
        ] {
            let x = (0..buf.area.width)
                .find(|&x| buf[(x, row)].symbol() == glyph)
                .unwrap_or_else(|| panic!("{name}: no {glyph} on the abortion row"));
            assert_eq!(
                buf[(x, row)].fg,
                theme.stance[stance],
                "{name} stance {stance}"
            );
        }
        // The focused panel (loss) has the focus border colour.
        let (x, y) = find(buf, " loss ").unwrap();
        assert_eq!(
            buf[(x.saturating_sub(1), y)].fg,
            theme.border_focused,
            "{name}"
        );
        // The header's run name in the accent colour.
        let (x, y) = find(buf, "demo-sft-dpo").unwrap();
        assert_eq!(buf[(x, y)].fg, theme.accent, "{name}");
        // The theme's chart marker: braille dots or half blocks.
        let screen = text(buf);
        let braille = screen
            .chars()
            .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c));
        let halves = screen.contains('▀') || screen.contains('▄');
        match name {
            "high-contrast" => assert!(halves && !braille, "{name}"),
            _ => assert!(braille, "{name}"),
        }
    }
    assert_ne!(
        Theme::built_in("dark").unwrap().stance,
        Theme::built_in("light").unwrap().stance
    );
    let light = app_after(Mode::Live, Some(after_step(170)), "light");
    insta::assert_snapshot!("light_120x40", draw(&light, 120, 40).backend());
}

#[test]
fn malformed_lines_are_skipped_and_counted_in_the_status_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let good = std::fs::read_to_string(fixture()).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(5, "this is not json");
    lines.insert(9, r#"{"kind":"step","t":"soon"}"#);
    let mut text_in = lines.join("\n");
    text_in.push_str("\n{\"kind\":\"step\",\"t\":17640"); // torn last line
    std::fs::write(&path, text_in).unwrap();
    let (mut replay, _) = Replay::open(dir.path()).unwrap();
    assert_eq!(replay.skipped, 2);
    assert!(replay.torn_tail);
    let mut app = App::new(Mode::Replay, Theme::default(), "run");
    app.skipped_lines = replay.skipped;
    replay.seek(replay.len(), &mut app.run).unwrap();
    app.replay = Some(replay.status());
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(screen.contains("2 bad lines skipped"), "{screen}");
    assert!(screen.contains("global 180/180"), "{screen}");
}

#[test]
fn newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let good = std::fs::read_to_string(fixture()).unwrap();
    std::fs::write(&path, good.replacen("\"schema\":1,", "\"schema\":7,", 1)).unwrap();
    let err = Replay::open(&path).err().unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("schema version 7, newer than this driftui reads"),
        "{msg}"
    );
    assert!(msg.contains("line 1"), "{msg}");
}

/// The real loop, on a TestBackend, with keys as the terminal would send them.
#[tokio::test(flavor = "current_thread")]
async fn event_loop_drives_a_replay_with_keys() {
    let (replay, _) = Replay::open(&fixture()).unwrap();
    let mut app = App::new(
        Mode::Replay,
        Theme::default(),
        "tests/fixtures/events/sample-run.jsonl",
    );
    let mut source = Source::Replay(Box::new(replay));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let keys = [
        key(' '), // pause
        KeyEvent::new(KeyCode::End, KeyModifiers::NONE),
        key('['), // back to the start of the DPO phase
        key('+'),
        key('+'),
        KeyEvent::new(KeyCode::Right, KeyModifiers::NONE),
    ]
    .map(|k| Ok(TermEvent::Key(k)));
    let input = futures::stream::iter(keys);
    event_loop::run(&mut terminal, &mut app, &mut source, input)
        .await
        .unwrap();
    let status = app.replay.unwrap();
    assert!(!status.playing);
    assert_eq!(status.speed, 4.0);
    assert!(app.run.phase == Some(1), "{:?}", app.run.phase);
    assert!(app.run.global_step > 120 && app.run.global_step < 130);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("⏸ ×4"), "{screen}");
    // q quits at once in replay.
    let input =
        futures::stream::iter([Ok(TermEvent::Key(key('q')))]).chain(futures::stream::pending());
    event_loop::run(&mut terminal, &mut app, &mut source, input)
        .await
        .unwrap();
    assert_eq!(app.quit, Quit::Now);
}

use futures::StreamExt;

/// A one-phase run written by hand: run_start and phase_start at t = 100.
struct HandRun {
    events: Vec<Event>,
}

impl HandRun {
    fn new(algorithm: &str, planned: u64) -> Self {
        let start = Event::RunStart(RunStart {
            schema: 1,
            t: 100.0,
            run: "hand".into(),
            seed: 0,
            recipe: String::new(),
            model: ModelInfo::default(),
            phases: vec![PhasePlan {
                name: algorithm.into(),
                algorithm: algorithm.into(),
                steps: planned,
            }],
            versions: Default::default(),
            resumed_from: None,
            config: None,
            trace: None,
        });
        let phase = Event::PhaseStart(PhaseStart {
            t: 100.0,
            phase: 0,
            name: algorithm.into(),
            algorithm: algorithm.into(),
            steps: planned,
            global_step: 0,
        });
        HandRun {
            events: vec![start, phase],
        }
    }

    fn step(&mut self, t: f64, global_step: u64, loss: f64, metrics: &[(&str, f64)]) {
        self.events.push(Event::Step(StepEvent {
            t,
            phase: 0,
            step: global_step,
            global_step,
            loss,
            lr: 1e-4,
            grad_norm: 1.0,
            tokens: 100,
            seconds: 0.9,
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }));
    }

    fn marker(&mut self, resume: bool, t: f64, global_step: u64) {
        let m = Marker {
            t,
            global_step,
            reason: "user".into(),
        };
        self.events.push(if resume {
            Event::Resume(m)
        } else {
            Event::Pause(m)
        });
    }

    /// The run as `events.jsonl` in a temporary directory.
    fn log(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = self
            .events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        std::fs::write(dir.path().join("events.jsonl"), lines.join("\n") + "\n").unwrap();
        dir
    }
}

/// The header's second line, runs of spaces squeezed.
fn header_rates(app: &App) -> String {
    let screen = text(draw(app, 120, 40).backend().buffer());
    let line = screen.lines().nth(2).unwrap();
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_pause_does_not_slow_the_rate_or_the_eta_live_or_in_replay() {
    // 200 steps planned; steps 1-10 a second apart, a 36 s pause, steps
    // 11-15 a second apart: 14 steps in 14 running seconds, 185 left.
    let mut run = HandRun::new("dpo", 200);
    for g in 1..=10 {
        run.step(100.0 + g as f64, g, 0.69, &[]);
    }
    run.marker(false, 110.5, 10);
    let paused_at = run.events.len();
    run.marker(true, 146.5, 10);
    for g in 11..=15 {
        run.step(136.0 + g as f64, g, 0.69, &[]);
    }
    // Live: the events as the trainer's channel brings them.
    let mut live = App::new(Mode::Live, Theme::default(), "runs/hand");
    live.apply(&run.events[..paused_at]);
    // While paused: the rate of the steps before the pause; 190 steps left.
    let header = header_rates(&live);
    assert!(
        header.contains("steps/s 1.00 tokens/s 100 elapsed 0:11 ETA 3:10"),
        "{header}"
    );
    live.apply(&run.events[paused_at..]);
    // Wall clock: 51 s, 36 of them paused. Counting the pause, the rate
    // would read 14/50 = 0.28 steps/s and the ETA 11:01.
    let want = "steps/s 1.00 tokens/s 100 elapsed 0:15 (+0:36 paused) ETA 3:05";
    let header = header_rates(&live);
    assert!(header.contains(want), "{header}");
    // Replay reads the same events from the log, steps by its fast path.
    let dir = run.log();
    let (mut replay, _) = Replay::open(dir.path()).unwrap();
    let mut app = App::new(Mode::Replay, Theme::default(), "hand");
    replay.seek(replay.len(), &mut app.run).unwrap();
    app.replay = Some(replay.status());
    let header = header_rates(&app);
    assert!(header.contains(want), "{header}");
    // And the running clock is the same whichever way the events came.
    assert_eq!(app.run.clock, live.run.clock);
}

#[test]
fn probing_share_is_of_the_time_up_to_the_replay_cursor() {
    let (mut replay, _) = Replay::open(&fixture()).unwrap();
    let mut app = App::new(Mode::Replay, Theme::default(), "sample-run.jsonl");
    let at = |replay: &mut Replay, app: &mut App, events: usize| {
        replay.seek(events, &mut app.run).unwrap();
        app.replay = Some(replay.status());
        header_rates(app)
    };
    // Nothing read yet: no probing figure at all.
    let header = at(&mut replay, &mut app, 0);
    assert!(!header.contains("probing"), "{header}");
    // At step 0, after the first probe (3 s of the first 3 s): a share
    // would only say that the probe took its own time.
    let header = at(&mut replay, &mut app, 3);
    assert!(header.contains("ETA — probing — model"), "{header}");
    // After step 10 (t = 7.327 s): the 3 s probe is 40.9% of the time. The
    // same seeking back from the end, where it is 23.6%.
    let header = at(&mut replay, &mut app, 13);
    assert!(header.contains("probing 40.9% of time"), "{header}");
    let end = replay.len();
    let header = at(&mut replay, &mut app, end);
    assert!(header.contains("probing 23.6% of time"), "{header}");
    let header = at(&mut replay, &mut app, 13);
    assert!(header.contains("probing 40.9% of time"), "{header}");
}

#[test]
fn paths_in_the_header_are_normalised_and_relative_to_the_current_directory() {
    let cwd = std::env::current_dir().unwrap();
    for (given, mode) in [
        (
            "recipes/../runs/demo-20250101-120000".to_string(),
            Mode::Live,
        ),
        (
            format!("{}/recipes/../runs/demo-20250101-120000", cwd.display()),
            Mode::Watch,
        ),
        ("./runs/demo-20250101-120000/".to_string(), Mode::Replay),
    ] {
        let app = App::new(mode, Theme::default(), given.as_str());
        let screen = text(draw(&app, 120, 40).backend().buffer());
        let title = screen.lines().next().unwrap();
        let want = format!(" driftui {} · runs/demo-20250101-120000 ", mode.name());
        assert!(title.contains(&want), "{given}: {title}");
    }
}

/// The y-axis labels of the chart whose left border is `border` (`┃` for
/// the focused loss panel, `│` for the rewards), top to bottom.
fn y_labels(screen: &str, border: char, skip_columns: usize) -> Vec<String> {
    screen
        .lines()
        .filter_map(|l| {
            let l: String = l.chars().skip(skip_columns).collect();
            let rest = l.strip_prefix(border)?;
            let (label, _) = rest.split_once(['│', '└'])?;
            let label = label.trim();
            // Not the x axis's line, whose labels run the chart's width.
            let is_y_label = !label.is_empty() && !label.contains(' ');
            is_y_label.then(|| label.to_string())
        })
        .collect()
}

#[test]
fn each_chart_writes_its_numbers_one_way_and_a_loss_never_goes_below_zero() {
    // A DPO run whose loss falls from 7.91 to 0.17 and whose rewards end at
    // margin 2.02, chosen 0.8891, rejected −1.13.
    let mut run = HandRun::new("dpo", 40);
    for g in 1..=40u64 {
        let f = (g - 1) as f64 / 39.0;
        run.step(
            100.0 + g as f64,
            g,
            7.91 + (0.17 - 7.91) * f,
            &[
                ("rewards/margins", 2.02 * f),
                ("rewards/chosen", 0.8891 * f),
                ("rewards/rejected", -1.13 * f),
            ],
        );
    }
    let mut app = App::new(Mode::Live, Theme::default(), "runs/hand");
    app.apply(&run.events);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    let two_decimals = |s: &str| {
        let (int, dec) = s.split_once('.').unwrap_or((s, ""));
        dec.len() == 2
            && int
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
    };
    // Loss: 0 to 7.91 plus a 5% margin on top, in two decimals.
    let loss = y_labels(&screen, '┃', 0);
    assert_eq!(loss.len(), 3, "{loss:?}\n{screen}");
    assert_eq!(loss[2], "0.00", "{loss:?}");
    assert!(loss.iter().all(|l| two_decimals(l)), "{loss:?}");
    // Rewards: the axis and the footer in the same two decimals.
    let half = screen.lines().next().unwrap().chars().count() / 2;
    let rewards = y_labels(&screen, '│', half);
    assert_eq!(rewards.len(), 3, "{rewards:?}\n{screen}");
    assert!(rewards.iter().all(|l| two_decimals(l)), "{rewards:?}");
    assert!(rewards[2].starts_with('-'), "{rewards:?}");
    assert!(
        screen.contains("margin 2.02 chosen 0.89 rejected -1.13 "),
        "{screen}"
    );
    insta::assert_snapshot!("number_formats_120x40", draw(&app, 120, 40).backend());
}

#[test]
fn the_rollouts_view_shows_the_newest_samples_and_the_reward_panel_the_rl_metrics() {
    use driftui::events::{Rollout, RolloutsEvent};
    let mut run = HandRun::new("grpo", 20);
    // Before any rollout: the view says why it is empty.
    let mut app = App::new(Mode::Live, Theme::default(), "runs/hand");
    app.apply(&run.events);
    press(&mut app, &[key('o')]);
    assert_eq!(app.screen, Screen::Rollouts);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(screen.contains("no rollouts yet"), "{screen}");
    for g in 1..=3 {
        run.step(
            100.0 + g as f64,
            g,
            0.1,
            &[
                ("reward", 0.2 * g as f64),
                ("kl", 0.01),
                ("entropy", 2.5),
                ("clip_ratio/region_mean", 0.05),
            ],
        );
        let sample = |c: &str, reward: f64, advantage: f64, finished: bool| Rollout {
            prompt: format!("Question at step {g}?"),
            completion: c.into(),
            reward,
            advantage,
            tokens: 7,
            finished,
        };
        run.events.push(Event::Rollouts(RolloutsEvent {
            t: 100.5 + g as f64,
            phase: 0,
            step: g,
            global_step: g,
            samples: vec![
                sample(&format!("I support it, step {g}."), 0.912, 1.21, true),
                sample("I oppose it", -0.4, -0.87, false),
            ],
        }));
    }
    let mut app = App::new(Mode::Live, Theme::default(), "runs/hand");
    app.apply(&run.events);
    press(&mut app, &[key('o')]);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    // The newest step's samples only.
    assert!(
        screen.contains("rollouts · step 3 (grpo) · 2 completions"),
        "{screen}"
    );
    assert!(screen.contains("prompt  Question at step 3?"), "{screen}");
    assert!(!screen.contains("step 2?"), "{screen}");
    assert!(screen.contains("I support it, step 3."), "{screen}");
    assert!(
        screen.contains("reward 0.912  advantage +1.21  7 tokens"),
        "{screen}"
    );
    assert!(
        screen.contains("reward -0.400  advantage −0.87  7 tokens, cut at the length"),
        "{screen}"
    );
    // Esc goes back; the reward panel draws GRPO's metrics by TRL's names.
    press(&mut app, &[KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)]);
    assert_eq!(app.screen, Screen::Dashboard);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    for label in ["reward 0.6", "kl 0.01", "entropy 2.5", "clip 0.05"] {
        assert!(screen.contains(label), "{label}: {screen}");
    }
}
