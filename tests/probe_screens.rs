//! The probing screens without a terminal: a topic's drill-down, the drift
//! table (numbers against values computed by hand from the fixture), the
//! probing cost and failed probes, and the checkpoint probe screen driven
//! through the real event loop with a fake probe worker.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use driftui::events::{
    read_log, Event, ModelInfo, PhasePlan, PhaseStart, ProbeEvent, ProbeMethod, ProbeReason,
    RunStart, SnapshotEvent, SnapshotReason, TopicStance,
};
use driftui::probe::set::ProbeSet;
use driftui::probe::worker::{JobEvent, ProbeEngine, ProbeJob, ProbeWorker};
use driftui::tui::action::Mode;
use driftui::tui::app::{App, Effect, Quit, Screen};
use driftui::tui::event_loop::{self, Source};
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use futures::StreamExt;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/sample-run.jsonl")
}

fn events() -> Vec<Event> {
    read_log(&fixture()).unwrap().0
}

fn app_with(events: &[Event]) -> App {
    let mut app = App::new(
        Mode::Replay,
        Theme::default(),
        "tests/fixtures/events/sample-run.jsonl",
    );
    app.apply(events);
    app
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

/// The screen line that contains `needle`, with runs of spaces squeezed.
fn line_with(screen: &str, needle: &str) -> String {
    let line = screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}\n{screen}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Effect> {
    keys.iter().flat_map(|k| app.on_key(k)).collect()
}

// Hand values from the fixture (computed outside driftui, from the JSON):
// climate change, sft (steps 0→120): support −0.174974, neutral +0.325302,
// oppose −0.150328; drift times 20/120, 40/120, 20/120. dpo: +0.023890,
// −0.013195, −0.010695, all at once (0). Run: −0.153306, +0.306654, −0.153348.
// The fixture logs no per-question scores, so each interval is the normal
// one of two unpaired means, Δ ± 1.959964·√(se₁² + se₂²) (se from the
// JSON): sft [−0.3414, −0.0085], [+0.1400, +0.5106], [−0.3141, +0.0134];
// dpo [−0.1244, +0.1722], [−0.1983, +0.1719], [−0.1554, +0.1340]; run
// [−0.3230, +0.0164], [+0.1201, +0.4932], [−0.3166, +0.0099]. Intervals
// that contain 0 mark the drift `~` and drop its time.
#[test]
fn topic_drilldown_shows_three_curves_and_drift_per_phase() {
    let mut app = app_with(&events());
    // j selects topics in the stance panel (focusing it); Enter opens one.
    press(&mut app, &[key('j'), key('j'), code(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Topic);
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains(" climate change "), "{screen}");
    assert!(screen.contains("topic 3/12 · 10 probes"), "{screen}");
    assert_eq!(
        line_with(&screen, "┃sft "),
        "┃sft 7 0→120 −0.175 [−.34,−.01] 0.17 +0.325 [+.14,+.51] 0.33 ~−0.150 [−.31,+.01] — ┃"
    );
    assert_eq!(
        line_with(&screen, "┃dpo "),
        "┃dpo 4 120→180 ~+0.024 [−.12,+.17] — ~−0.013 [−.20,+.17] — ~−0.011 [−.16,+.13] — ┃"
    );
    assert_eq!(
        line_with(&screen, "┃run "),
        "┃run 10 0→180 ~−0.153 [−.32,+.02] — +0.307 [+.12,+.49] — ~−0.153 [−.32,+.01] — ┃"
    );
    // Three curves in the three stance colours, and the ±se dots.
    let buf = t.backend().buffer();
    let theme = Theme::default();
    for (s, color) in theme.stance.iter() {
        let drawn = (0..buf.area.height)
            .flat_map(|y| (0..buf.area.width).map(move |x| (x, y)))
            .any(|(x, y)| {
                let c = &buf[(x, y)];
                c.fg == *color
                    && ('\u{2801}'..='\u{28ff}').contains(&c.symbol().chars().next().unwrap_or(' '))
            });
        assert!(drawn, "stance {s} has no curve");
    }
    assert!(screen.contains('•'), "no standard-error dots\n{screen}");
    insta::assert_snapshot!("topic_drilldown_120x40", t.backend());
    // j/k walk the topics (wrapping), Esc goes back.
    press(&mut app, &[key('j')]);
    assert!(text(draw(&app, 120, 40).backend().buffer()).contains(" death penalty "));
    press(&mut app, &[key('k'), key('k'), key('k'), key('k')]);
    assert!(text(draw(&app, 120, 40).backend().buffer()).contains(" universal healthcare "));
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::Dashboard);
}

// abortion, sft: start (0.354997, 0.354221, 0.290782) → end (0.591748,
// 0.232873, 0.175378): Δ +0.236751, −0.121348, −0.115403; each stance is
// within the 95% interval of its extreme from the step-20 probe: 20/120.
// Unpaired normal intervals (see above), from the JSON's se: sft
// [+0.0466, +0.4269], [−0.2983, +0.0556], [−0.2796, +0.0488]; dpo
// [−0.1765, +0.2083], [−0.1673, +0.1614], [−0.1625, +0.1366]; run
// [+0.0589, +0.4382], [−0.3043, +0.0479], [−0.2837, +0.0431].
#[test]
fn drift_table_numbers_match_hand_values() {
    let mut app = app_with(&events());
    press(&mut app, &[key('d')]);
    assert_eq!(app.screen, Screen::Drift);
    let t = draw(&app, 120, 40);
    let screen = text(t.backend().buffer());
    assert_eq!(
        line_with(&screen, "┃abortion"),
        "┃abortion sft +0.237 [+.05,+.43] 0.17 ~−0.121 [−.30,+.06] — ~−0.115 [−.28,+.05] — ┃"
    );
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().position(|l| l.contains("┃abortion")).unwrap();
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        squeeze(lines[at + 1]),
        "┃ dpo ~+0.016 [−.18,+.21] — ~−0.003 [−.17,+.16] — ~−0.013 [−.16,+.14] — ┃"
    );
    assert_eq!(
        squeeze(lines[at + 2]),
        "┃ run +0.249 [+.06,+.44] — ~−0.128 [−.30,+.05] — ~−0.120 [−.28,+.04] — ┃"
    );
    insta::assert_snapshot!("drift_table_120x40", t.backend());
    // Enter opens the topic of the row under the cursor; d toggles back.
    press(
        &mut app,
        &[key('j'), key('j'), key('j'), code(KeyCode::Enter)],
    );
    assert_eq!(app.screen, Screen::Topic);
    assert_eq!(app.run.topics[app.selected_topic].0, "animal rights");
    press(&mut app, &[key('d'), key('d')]);
    assert_eq!(app.screen, Screen::Dashboard);
}

fn probe(phase: usize, step: u64, support: f64, se: f64) -> Event {
    Event::Probe(ProbeEvent {
        t: 100.0 + step as f64,
        phase,
        step,
        global_step: step,
        method: ProbeMethod::Choice,
        reason: ProbeReason::Periodic,
        topics: vec![TopicStance {
            topic: "t".into(),
            mean: [support, (1.0 - support) / 2.0, (1.0 - support) / 2.0].into(),
            se: [se; 3].into(),
            n: 12,
            ..Default::default()
        }],
        seconds: 1.0,
        error: None,
        subset: false,
    })
}

#[test]
fn drift_time_by_hand_on_screen() {
    // Steps 0..100; support rises 0.20 → 0.60 with its extreme 0.62 at step
    // 75 (se 0.02: interval 0.62 ± 0.0392 = [0.5808, 0.6592]); first inside
    // it at step 50 (0.59): drift time 0.50, magnitude +0.400.
    let start = Event::RunStart(RunStart {
        schema: 1,
        t: 100.0,
        run: "hand".into(),
        seed: 0,
        recipe: String::new(),
        model: ModelInfo::default(),
        phases: vec![PhasePlan {
            name: "sft".into(),
            algorithm: "sft".into(),
            steps: 100,
        }],
        versions: Default::default(),
        resumed_from: None,
        config: None,
        trace: None,
    });
    let phase = Event::PhaseStart(PhaseStart {
        t: 100.0,
        phase: 0,
        name: "sft".into(),
        algorithm: "sft".into(),
        steps: 100,
        global_step: 0,
    });
    let mut ev = vec![start, phase];
    for (step, s) in [(0, 0.2), (25, 0.45), (50, 0.59), (75, 0.62), (100, 0.60)] {
        ev.push(probe(0, step, s, 0.02));
    }
    let mut app = app_with(&ev);
    press(&mut app, &[key('d')]);
    let screen = text(draw(&app, 120, 20).backend().buffer());
    // neutral and oppose fall from 0.40 to 0.20 with extreme 0.19 at step 75
    // (interval ±0.0392): first inside at step 50 (0.205): also 0.50.
    // The 95% interval of each change (no per-question scores: two
    // unpaired means) is Δ ± 1.96·√(0.02² + 0.02²) = Δ ± 0.0554.
    assert_eq!(
        line_with(&screen, "┃t "),
        "┃t sft +0.400 [+.34,+.46] 0.50 −0.200 [−.26,−.14] 0.50 −0.200 [−.26,−.14] 0.50 ┃"
    );
    // Header: 5 probes of 1 s over 100 s of wall time.
    assert!(screen.contains("probing 5.0% of time"), "{screen}");
    // Where the intervals do not fit, they go and every time stays.
    let narrow = text(draw(&app, 100, 20).backend().buffer());
    assert_eq!(
        line_with(&narrow, "┃t "),
        "┃t sft +0.400 0.50 −0.200 0.50 −0.200 0.50 ┃"
    );
}

#[test]
fn probing_cost_in_the_header_and_failed_probes_in_the_status_line() {
    let mut ev = events();
    ev.push(Event::Probe(ProbeEvent {
        t: 1764000152.0,
        phase: 1,
        step: 60,
        global_step: 180,
        method: ProbeMethod::Generate,
        reason: ProbeReason::Manual,
        topics: Vec::new(),
        seconds: 2.0,
        error: Some("the judge endpoint did not answer".into()),
        subset: false,
    }));
    let app = app_with(&ev);
    let screen = text(draw(&app, 140, 40).backend().buffer());
    // 11 probes of 3 s and a failed one of 2 s over 1764000152 − 1764000000 s
    // less the 12 s pause: 35 / 140.
    assert!(screen.contains("probing 25.0% of time"), "{screen}");
    assert!(
        screen.contains("warning: probe at step 180 failed: the judge endpoint did not answer"),
        "{screen}"
    );
    assert!(screen.contains("1 probe failed"), "{screen}");
    assert_eq!(app.run.probes, 11);
}

/// Answers the way the real worker does, without a model: a `choice`
/// distribution per checkpoint, streamed text, an untrusted judge.
struct FakeEngine;

impl ProbeEngine for FakeEngine {
    fn run(
        &mut self,
        job: &ProbeJob,
        emit: &mut dyn FnMut(JobEvent),
        _cancelled: &dyn Fn() -> bool,
    ) -> anyhow::Result<()> {
        if job.question.contains("explode") {
            anyhow::bail!("the model exploded");
        }
        if job.question.contains("panic") {
            panic!("a bug in the engine");
        }
        for (column, ck) in job.checkpoints.iter().enumerate() {
            emit(JobEvent::Status {
                column,
                text: format!("loading {}…", ck.name),
            });
            // Each snapshot its own numbers, so a column shows whose they are.
            let (dist, says) = match ck.name.as_str() {
                "dpo-000180" => ([0.5, 0.3, 0.2], "support it."),
                "dpo-000150" => ([0.3, 0.4, 0.3], "am not sure."),
                _ => ([0.2, 0.3, 0.5], "oppose it."),
            };
            emit(JobEvent::Choice {
                column,
                dist: dist.into(),
            });
            for sample in 0..job.samples {
                for piece in ["I ", says] {
                    emit(JobEvent::Text {
                        column,
                        sample,
                        text: piece.into(),
                    });
                }
            }
            emit(JobEvent::Judge {
                column,
                name: "builtin:micro (the run's starting model)".into(),
                check: Some("judge builtin:micro: 7/42 = 17% on answers of known stance (support 7/14, neutral 0/14, oppose 0/14) — below 80%: its stance scores are not trustworthy".into()),
                trusted: false,
            });
            for sample in 0..job.samples {
                emit(JobEvent::Judged {
                    column,
                    sample,
                    dist: [0.4, 0.35, 0.25].into(),
                });
            }
            emit(JobEvent::ColumnDone {
                column,
                seconds: 1.5,
            });
        }
        Ok(())
    }
}

/// A run directory with two complete snapshots and the fixture's log; the
/// log also names a snapshot that is not on disk.
fn run_dir() -> tempfile::TempDir {
    run_dir_with(&["sft-000120", "dpo-000180"])
}

/// A run directory with the fixture's log and these snapshots on disk.
fn run_dir_with(snapshots: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), dir.path().join("events.jsonl")).unwrap();
    for name in snapshots {
        let s = dir.path().join("snapshots").join(name);
        std::fs::create_dir_all(&s).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::write(s.join(f), "{}").unwrap();
        }
    }
    dir
}

fn snapshot_events() -> Vec<Event> {
    let mut ev = events();
    // The fixture names step-000120 etc.; point it at what is on disk.
    for e in &mut ev {
        if let Event::Snapshot(s) = e {
            s.path = match s.global_step {
                120 => "snapshots/sft-000120".into(),
                150 => "snapshots/dpo-000150".into(),
                _ => "snapshots/dpo-000180".into(),
            };
        }
    }
    ev
}

fn keys_then_wait(
    keys: Vec<KeyEvent>,
    wait_ms: u64,
) -> impl futures::Stream<Item = std::io::Result<TermEvent>> + Unpin {
    let keys = futures::stream::iter(keys.into_iter().map(|k| Ok(TermEvent::Key(k))));
    let wait = futures::stream::once(async move {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        Ok(TermEvent::Resize(120, 40))
    });
    keys.chain(wait).boxed()
}

#[tokio::test(flavor = "current_thread")]
async fn probe_screen_streams_two_checkpoints_side_by_side_from_the_worker() {
    let dir = run_dir();
    let mut app = app_with(&snapshot_events());
    app.run_dir = Some(dir.path().to_path_buf());
    let mut worker = ProbeWorker::spawn(Box::new(FakeEngine)).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut keys = vec![
        key('c'), // the probe screen; cursor on the newest snapshot, on top
        key(' '), // A = dpo-000180
        key('j'), // dpo-000150: in the log, not on disk
        key(' '), // refused, with a warning
        key('j'), // sft-000120
        key(' '), // B
        key('e'), // type a question ('q' must not quit)
    ];
    keys.extend("Is it quite fair?".chars().map(key));
    keys.push(code(KeyCode::Enter));
    event_loop::run_with_worker(
        &mut terminal,
        &mut app,
        &mut Source::Still,
        keys_then_wait(keys, 400),
        Some(&mut worker),
    )
    .await
    .unwrap();
    assert_eq!(app.quit, Quit::Running);
    assert_eq!(app.screen, Screen::Probe);
    let p = &app.probe;
    assert_eq!(p.asked, "Is it quite fair?");
    assert_eq!(p.snapshots.len(), 3);
    assert_eq!(p.snapshots[1].problem.as_deref(), Some("missing on disk"));
    assert_eq!(p.columns.len(), 2);
    assert_eq!(p.columns[0].name, "dpo-000180");
    assert_eq!(p.columns[0].choice, Some([0.5, 0.3, 0.2].into()));
    assert_eq!(p.columns[1].answers[2].text, "I oppose it.");
    assert_eq!(
        p.columns[1].answers[2].judged,
        Some([0.4, 0.35, 0.25].into())
    );
    assert!(p.running.is_none());
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("A · dpo-000180 · step 180 · done in 1.5 s"),
        "{screen}"
    );
    assert!(
        screen.contains("B · sft-000120 · step 120 · done in 1.5 s"),
        "{screen}"
    );
    assert!(screen.contains("choice S .50 N .30 O .20"), "{screen}");
    assert!(screen.contains("choice S .20 N .30 O .50"), "{screen}");
    assert!(
        screen.contains("⚠ untrusted: tiny models are not judges"),
        "{screen}"
    );
    assert!(
        screen.contains("7/42 = 17% on answers of known stance"),
        "{screen}"
    );
    assert!(
        screen.contains("answer 3 · judge S .40 N .35 O .25"),
        "{screen}"
    );
    assert!(screen.contains("I support it."), "{screen}");
    assert!(
        screen.contains("dpo-000150 step 150    missing on disk"),
        "{screen}"
    );
    assert!(
        screen.contains("checkpoint probe done (2 checkpoints)"),
        "{screen}"
    );
    insta::assert_snapshot!("probe_screen_two_checkpoints_120x40", terminal.backend());
    // PgDn scrolls the answers; the snapshot list keeps its place.
    app.on_key(&code(KeyCode::PageDown));
    assert_eq!(app.probe.scroll, 5);
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("A · dpo-000180 · step 180 · done in 1.5 s · ↓5"),
        "{screen}"
    );
    assert!(!screen.contains("choice S .50"), "{screen}");
    assert!(screen.contains("A dpo-000180 step 180"), "{screen}");
}

#[tokio::test(flavor = "current_thread")]
async fn probe_worker_failures_reach_the_status_line_and_the_worker_lives_on() {
    // The engine's panic is expected: keep its backtrace out of the output
    // (as the dashboard's own hook does).
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(driftui::probe::worker::THREAD_NAME) {
            previous(info);
        }
    }));
    let dir = run_dir();
    let mut app = app_with(&snapshot_events());
    app.run_dir = Some(dir.path().to_path_buf());
    let mut worker = ProbeWorker::spawn(Box::new(FakeEngine)).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut keys = vec![key('c'), key('e')];
    keys.extend("panic now".chars().map(key));
    keys.push(code(KeyCode::Enter));
    event_loop::run_with_worker(
        &mut terminal,
        &mut app,
        &mut Source::Still,
        keys_then_wait(keys, 1000),
        Some(&mut worker),
    )
    .await
    .unwrap();
    let status = app.run.status.clone().unwrap();
    assert!(
        status
            .text
            .contains("checkpoint probe failed: the probe worker hit a bug"),
        "{status:?}"
    );
    // The same worker takes the next job.
    let mut keys = vec![
        key('e'),
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
    ];
    keys.extend("explode".chars().map(key));
    keys.push(code(KeyCode::Enter));
    event_loop::run_with_worker(
        &mut terminal,
        &mut app,
        &mut Source::Still,
        keys_then_wait(keys, 400),
        Some(&mut worker),
    )
    .await
    .unwrap();
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("warning: checkpoint probe failed: the model exploded"),
        "{screen}"
    );
}

#[test]
fn probe_screen_bad_input_is_explained_not_fatal() {
    // No run directory (a foreign log): nothing to probe, and Enter says why.
    let mut app = app_with(&events());
    press(&mut app, &[key('c')]);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(
        screen.contains("no run directory: nothing to probe"),
        "{screen}"
    );
    let effects = press(&mut app, &[code(KeyCode::Enter)]);
    assert!(effects.is_empty());
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(
        screen.contains("warning: no run directory: checkpoint probing needs the run's snapshots"),
        "{screen}"
    );
    // A run directory without snapshots.
    let empty = tempfile::tempdir().unwrap();
    let no_snapshots: Vec<Event> = events()
        .into_iter()
        .filter(|e| !matches!(e, Event::Snapshot(_)))
        .collect();
    let mut app = app_with(&no_snapshots);
    app.run_dir = Some(empty.path().to_path_buf());
    press(&mut app, &[key('c'), code(KeyCode::Enter)]);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(screen.contains("no snapshots yet"), "{screen}");
    assert!(screen.contains("this run has no snapshots yet"), "{screen}");
    // No question: the probe set gives the first one; clearing it and asking is refused.
    let dir = run_dir();
    let mut app = app_with(&snapshot_events());
    app.run_dir = Some(dir.path().to_path_buf());
    press(&mut app, &[key('c')]);
    assert!(
        !app.probe.question.is_empty(),
        "the probe set's first question"
    );
    press(
        &mut app,
        &[
            key('e'),
            KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        ],
    );
    let effects = press(&mut app, &[code(KeyCode::Enter)]);
    assert!(effects.is_empty());
    assert!(app
        .run
        .status
        .unwrap()
        .text
        .contains("type a question first"));
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_worker_the_probe_screen_says_so() {
    let dir = run_dir();
    let mut app = app_with(&snapshot_events());
    app.run_dir = Some(dir.path().to_path_buf());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let input =
        futures::stream::iter([key('c'), code(KeyCode::Enter)].map(|k| Ok(TermEvent::Key(k))));
    event_loop::run(&mut terminal, &mut app, &mut Source::Still, input)
        .await
        .unwrap();
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("checkpoint probing is not available here (no probe worker)"),
        "{screen}"
    );
    assert!(app.probe.running.is_none());
}

#[test]
fn new_snapshots_appear_on_the_open_probe_screen() {
    let dir = run_dir();
    let ev = snapshot_events();
    let cut = ev
        .iter()
        .position(|e| matches!(e, Event::Snapshot(_)))
        .unwrap();
    let mut app = app_with(&ev[..cut]);
    app.run_dir = Some(dir.path().to_path_buf());
    press(&mut app, &[key('c')]);
    // On disk but not yet announced: listed from the directory.
    assert_eq!(app.probe.snapshots.len(), 2);
    assert!(app.probe.snapshots.iter().all(|s| s.reason.is_none()));
    app.apply(&[Event::Snapshot(SnapshotEvent {
        t: 1.0,
        phase: 0,
        step: 120,
        global_step: 120,
        path: "snapshots/sft-000120".into(),
        reason: SnapshotReason::PhaseEnd,
    })]);
    let s = &app.probe.snapshots[0];
    assert_eq!(
        (s.name.as_str(), s.global_step, s.reason),
        ("sft-000120", Some(120), Some(SnapshotReason::PhaseEnd))
    );
}

#[test]
fn the_probe_set_s_path_is_shown_normalised() {
    let mut app = app_with(&events());
    let set = ProbeSet::parse(
        "{\"topic\": \"t\", \"question\": \"Is it fair?\"}\n\
         {\"topic\": \"t\", \"question\": \"Is it just?\"}\n",
        "recipes/../runs/../assets/probes/default.jsonl",
    )
    .unwrap();
    app.probe.set = Some(set);
    app.probe.pick_question(1);
    press(&mut app, &[key('c')]);
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(
        screen.contains("t · question 2/2 of assets/probes/default.jsonl "),
        "{screen}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn space_down_space_enter_asks_two_snapshots_side_by_side() {
    // The hint says `Space picks A, B`: Space on one snapshot, ↓, Space on
    // the next, Enter must bring back two columns, A and B.
    let dir = run_dir_with(&["sft-000120", "dpo-000150", "dpo-000180"]);
    let mut app = app_with(&snapshot_events());
    app.run_dir = Some(dir.path().to_path_buf());
    let mut worker = ProbeWorker::spawn(Box::new(FakeEngine)).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    // Each pick says where the picks stand and what the next key does.
    press(&mut app, &[key('c'), key(' ')]);
    assert_eq!(
        app.run.status.as_ref().unwrap().text,
        "A = dpo-000180; Space on another snapshot picks B, Enter asks A alone"
    );
    press(&mut app, &[code(KeyCode::Down), key(' ')]);
    assert_eq!(
        app.run.status.as_ref().unwrap().text,
        "A = dpo-000180, B = dpo-000150; Enter asks both, side by side"
    );
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("┃A dpo-000180 step 180"), "{screen}");
    assert!(screen.contains("┃B dpo-000150 step 150"), "{screen}");
    event_loop::run_with_worker(
        &mut terminal,
        &mut app,
        &mut Source::Still,
        keys_then_wait(vec![code(KeyCode::Enter)], 400),
        Some(&mut worker),
    )
    .await
    .unwrap();
    let names: Vec<&str> = app.probe.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dpo-000180", "dpo-000150"]);
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    let screen = text(terminal.backend().buffer());
    // Two columns on one row, A on the left, B on the right, each with its
    // own snapshot's numbers.
    let side_by_side = |left: &str, right: &str| {
        let row = screen
            .lines()
            .find(|l| l.contains(left))
            .unwrap_or_else(|| panic!("no {left:?}\n{screen}"));
        let (l, r) = (row.find(left).unwrap(), row.find(right));
        assert!(r.is_some_and(|r| l < r), "{left:?} | {right:?}\n{screen}");
        let half = row.chars().count() / 2;
        assert!(
            row[..l].chars().count() < half,
            "{left:?} is not on the left"
        );
        assert!(
            row[..r.unwrap()].chars().count() >= half,
            "{right:?} not on the right"
        );
    };
    side_by_side(
        "A · dpo-000180 · step 180 · done in 1.5 s",
        "B · dpo-000150 · step 150 · done in 1.5 s",
    );
    side_by_side("choice S .50 N .30 O .20", "choice S .30 N .40 O .30");
    side_by_side("I support it.", "I am not sure.");
    assert!(
        screen.contains("checkpoint probe done (2 checkpoints)"),
        "{screen}"
    );
    insta::assert_snapshot!(
        "probe_screen_space_down_space_enter_120x40",
        terminal.backend()
    );
}
