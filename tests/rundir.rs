//! The run directory end to end: a snapshot's size said before it is
//! written, a disk that cannot take a snapshot (stopped cleanly headless,
//! paused live, resumable from the last good snapshot, nothing half-written
//! left looking complete), retention, and resuming into a new directory.

use crate::common;

use common::{assets, train_options, train_to_end};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use driftui::events::{read_log, AlertLevel, Event, RunStatus, SnapshotReason};
use driftui::rundir::disk::dir_bytes;
use driftui::rundir::snapshot::{self, verify};
use driftui::train::{self, Control, DiskFault, DiskFaultKind, RunOutcome, TrainOptions};
use driftui::tui::action::Mode;
use driftui::tui::app::App;
use driftui::tui::event_loop::{self, LiveSource, Source};
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use futures::StreamExt;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `builtin:micro`: SFT (6 steps, a snapshot every 2), then DPO (4 steps,
/// every 2), with `run_extra` in `[run]`; returns the recipe's path.
fn recipe(dir: &Path, run_extra: &str, dpo: bool) -> PathBuf {
    let a = assets();
    let mut text = format!(
        r#"[run]
name = "t"
seed = 5
output_dir = "{out}"
{run_extra}

[model]
source = "builtin:micro"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{a}/demo/sft.jsonl"
steps = 6
batch_size = 4
lr = 1e-3
max_len = 64
snapshot_every = 2
"#,
        out = dir.join("runs").display(),
        a = a.display()
    );
    if dpo {
        text.push_str(&format!(
            r#"
[[phase]]
name = "dpo"
algorithm = "dpo"
dataset = "{a}/demo/preference.jsonl"
steps = 4
batch_size = 2
lr = 1e-3
max_len = 64
snapshot_every = 2
"#,
            a = a.display()
        ));
    }
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn with_fault(recipe: &Path, out: &Path, at_step: u64, kind: DiskFaultKind) -> TrainOptions {
    TrainOptions {
        inject_disk_fault: Some(DiskFault { at_step, kind }),
        ..train_options(recipe, Some(out.to_path_buf()))
    }
}

fn resume(recipe: &Path, snapshot: PathBuf, output: Option<PathBuf>) -> RunOutcome {
    train_to_end(&TrainOptions {
        resume: Some(snapshot),
        ..train_options(recipe, output)
    })
}

/// Every entry under `snapshots/`, sorted: hidden ones (partial, being
/// deleted) included.
fn snapshot_dirs(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// The log, read whole: no line skipped, none torn.
fn events(run: &Path) -> Vec<Event> {
    let (events, report) = read_log(&run.join("events.jsonl")).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(!report.torn_tail);
    events
}

fn alerts(events: &[Event], level: AlertLevel) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.level == level => Some(a.message.clone()),
            _ => None,
        })
        .collect()
}

fn snapshot_paths(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.path.clone()),
            _ => None,
        })
        .collect()
}

/// "about 2.4 MB" → bytes.
fn about_bytes(message: &str) -> f64 {
    let rest = message.split("about ").nth(1).expect("a size");
    let mut it = rest.split_whitespace();
    let v: f64 = it.next().unwrap().parse().unwrap();
    let unit = it.next().unwrap().trim_end_matches([',', '(']);
    v * match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other}"),
    }
}

/// Headless, a disk without room for a snapshot stops the run cleanly: an
/// error alert and `run_end` say why and name the last good snapshot, the
/// log is whole, no partial directory is left, and the run resumes from
/// that snapshot to the same losses as a run that never stopped.
#[test]
fn headless_full_disk_stops_cleanly_and_the_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "", false);
    let whole = train_to_end(&train_options(&r, Some(dir.path().join("whole"))));
    assert_eq!(whole.status, RunStatus::Completed);

    let out = dir.path().join("run");
    let stopped = train_to_end(&with_fault(&r, &out, 4, DiskFaultKind::NoRoom));
    assert_eq!(stopped.status, RunStatus::Stopped);
    assert_eq!(stopped.global_step, 4);
    let ev = events(&out);
    let errors = alerts(&ev, AlertLevel::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(
        e.starts_with("no room for snapshot sft-000004: about "),
        "{e}"
    );
    assert!(
        e.contains("the run stops here, intact")
            && e.contains("the last good snapshot is")
            && e.contains("sft-000002"),
        "{e}"
    );
    match ev.last() {
        Some(Event::RunEnd(end)) => {
            assert_eq!(end.status, RunStatus::Stopped);
            assert_eq!(end.message.as_deref(), Some(e.as_str()));
        }
        other => panic!("last event {other:?}"),
    }
    // No stop snapshot was attempted after the failure, nothing half-written.
    assert_eq!(snapshot_paths(&ev), ["snapshots/sft-000002"]);
    assert_eq!(snapshot_dirs(&out), ["sft-000002"]);

    // Each snapshot's size was said before it was written, close to what
    // it took.
    let sized = alerts(&ev, AlertLevel::Info);
    let note = sized
        .iter()
        .find(|m| m.starts_with("writing snapshot sft-000002: about "))
        .expect("the size of sft-000002 said");
    let said = about_bytes(note);
    let took = dir_bytes(&out.join("snapshots/sft-000002")) as f64;
    assert!(
        (said - took).abs() / took < 0.1,
        "said {said}, took {took}: {note}"
    );
    assert!(
        note.contains("optimizer state") && note.contains("free"),
        "{note}"
    );

    let resumed = resume(&r, out.join("snapshots/sft-000002"), None);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(resumed.global_step, 6);
    let bits = |o: &RunOutcome| o.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed), bits(&whole));
    verify(&out.join("snapshots/sft-000004")).unwrap();
}

/// A write that fails midway (the disk filled up) leaves no half-written
/// snapshot: its partial directory is gone, the last good one is intact
/// and the run resumes from it.
#[test]
fn a_write_failing_midway_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "", false);
    let out = dir.path().join("run");
    let stopped = train_to_end(&with_fault(&r, &out, 4, DiskFaultKind::WriteFails));
    assert_eq!(stopped.status, RunStatus::Stopped);
    let ev = events(&out);
    let errors = alerts(&ev, AlertLevel::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("the disk filled up writing snapshot sft-000004; the run stops here"),
        "{}",
        errors[0]
    );
    assert_eq!(snapshot_dirs(&out), ["sft-000002"]);
    verify(&out.join("snapshots/sft-000002")).unwrap();
    assert!(matches!(ev.last(), Some(Event::RunEnd(e)) if e.status == RunStatus::Stopped));
    let resumed = resume(&r, out.join("snapshots/sft-000002"), None);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(
        snapshot_dirs(&out),
        ["sft-000002", "sft-000004", "sft-000006"]
    );
}

/// Live, a full disk pauses the run; resuming (space freed) writes the
/// snapshot and the run goes on; stopping instead ends it without trying
/// another snapshot.
#[test]
fn live_full_disk_pauses_until_resumed_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "", false);
    for stop in [false, true] {
        let out = dir.path().join(format!("run-{stop}"));
        let prep = train::prepare(&with_fault(&r, &out, 4, DiskFaultKind::NoRoom)).unwrap();
        let mut handle = train::spawn(prep).unwrap();
        let mut seen = Vec::new();
        while let Some(e) = handle.events.blocking_recv() {
            let paused = matches!(&e, Event::Pause(m) if m.reason == "disk full");
            seen.push(e);
            if paused {
                break;
            }
        }
        let error = alerts(&seen, AlertLevel::Error);
        assert_eq!(error.len(), 1, "{seen:?}");
        assert!(
            error[0].contains("no room for snapshot sft-000004: about ")
                && error[0].contains("free; free space and resume to retry, or stop ("),
            "{}",
            error[0]
        );
        let cmd = if stop { Control::Stop } else { Control::Resume };
        handle.control.send(cmd).unwrap();
        while let Some(e) = handle.events.blocking_recv() {
            seen.push(e);
        }
        let outcome = handle.thread.join().unwrap().unwrap();
        let ev = events(&out);
        if stop {
            assert_eq!(outcome.status, RunStatus::Stopped);
            assert_eq!(outcome.global_step, 4);
            assert_eq!(snapshot_dirs(&out), ["sft-000002"]);
            match ev.last() {
                Some(Event::RunEnd(end)) => {
                    let m = end.message.as_deref().unwrap_or_default();
                    assert!(m.contains("stopped by the user"), "{m}");
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(outcome.status, RunStatus::Completed);
            assert_eq!(outcome.global_step, 6);
            assert_eq!(
                snapshot_paths(&ev),
                [
                    "snapshots/sft-000002",
                    "snapshots/sft-000004",
                    "snapshots/sft-000006"
                ]
            );
            // The retry came after the resume.
            let kinds: Vec<&str> = ev.iter().map(Event::kind).collect();
            let resumed_at = kinds.iter().position(|k| *k == "resume").unwrap();
            let second = ev
                .iter()
                .position(|e| matches!(e, Event::Snapshot(s) if s.step == 4))
                .unwrap();
            assert!(second > resumed_at);
        }
    }
}

/// `keep_snapshots` deletes the oldest snapshots, never the newest nor a
/// reference a kept snapshot needs; only the newest keeps its optimizer
/// state, and a resume from one that lost it is refused with a reason.
#[test]
fn retention_keeps_the_newest_and_the_references_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "keep_snapshots = 2", true);
    let out = dir.path().join("run");
    let outcome = train_to_end(&train_options(&r, Some(out.clone())));
    assert_eq!(outcome.status, RunStatus::Completed);
    // Written: sft 2, 4, 6 (end), dpo 2, 4 (end). Kept: the two newest and
    // the end of SFT, which is the DPO snapshots' reference.
    assert_eq!(
        snapshot_dirs(&out),
        ["dpo-000002", "dpo-000004", "sft-000006"]
    );
    for name in snapshot_dirs(&out) {
        let s = out.join("snapshots").join(&name);
        verify(&s).unwrap();
        // The newest is a phase end: no snapshot keeps an optimizer state.
        assert!(!snapshot::has_optimizer_state(&s), "{name}");
    }
    let ev = events(&out);
    let removed = alerts(&ev, AlertLevel::Info)
        .into_iter()
        .filter(|m| m.starts_with("removed snapshot"))
        .collect::<Vec<_>>();
    assert!(
        removed
            .iter()
            .any(|m| m.starts_with("removed snapshot sft-000002 (keep_snapshots = 2):")),
        "{removed:?}"
    );
    // dpo-000002 lost its optimizer state to the newer dpo-000004.
    let err = train::prepare(&TrainOptions {
        resume: Some(out.join("snapshots/dpo-000002")),
        ..train_options(&r, None)
    })
    .err()
    .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("no longer holds the optimizer state") && err.contains("optimizer_state"),
        "{err}"
    );
}

/// `--resume SNAPSHOT --output DIR`: the run goes on in DIR, which names
/// its parent and stands alone (the reference model of the resumed phase
/// is brought over); the parent is not touched; the losses are those of a
/// run never interrupted.
#[test]
fn resume_into_a_new_directory_names_its_parent_and_stands_alone() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "optimizer_state = \"all\"", true);
    let a = dir.path().join("a");
    let whole = train_to_end(&train_options(&r, Some(a.clone())));
    let parent_log = std::fs::read(a.join("events.jsonl")).unwrap();
    let parent_snaps = snapshot_dirs(&a);

    let b = dir.path().join("b");
    let from = a.join("snapshots/dpo-000002");
    let branched = resume(&r, from.clone(), Some(b.clone()));
    assert_eq!(branched.run_dir, b);
    assert_eq!(branched.status, RunStatus::Completed);
    let bits = |o: &RunOutcome| o.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&branched), bits(&whole));

    // The parent is as it was.
    assert_eq!(std::fs::read(a.join("events.jsonl")).unwrap(), parent_log);
    assert_eq!(snapshot_dirs(&a), parent_snaps);

    // The new run's log holds the parent's, then names where it came from.
    let log = std::fs::read(b.join("events.jsonl")).unwrap();
    assert!(log.starts_with(&parent_log));
    let ev = events(&b);
    let point = ev
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::RunStart(rs) => rs.resumed_from.clone(),
            _ => None,
        })
        .expect("a resumed run_start");
    assert_eq!(point.global_step, 8);
    assert_eq!(point.snapshot, from.display().to_string());
    assert_eq!(point.parent_run.as_deref(), Some(a.to_str().unwrap()));
    assert!(b.join("recipe.toml").is_file());
    // The snapshot resumed from and its phase's reference came along.
    assert_eq!(
        snapshot_dirs(&b),
        ["dpo-000002", "dpo-000004", "sft-000006"]
    );
    for name in snapshot_dirs(&b) {
        verify(&b.join("snapshots").join(name)).unwrap();
    }

    // It stands alone: with the parent gone, it resumes from its own copy
    // of the snapshot, finding the reference inside itself.
    std::fs::remove_dir_all(&a).unwrap();
    let again = resume(&r, b.join("snapshots/dpo-000002"), None);
    assert_eq!(again.run_dir, b);
    assert_eq!(bits(&again), bits(&whole));

    // An output directory in use is refused; the snapshot's own run
    // directory given as the output is a resume in place.
    let err = train::prepare(&TrainOptions {
        resume: Some(b.join("snapshots/dpo-000002")),
        ..train_options(&r, Some(dir.path().to_path_buf()))
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("exists and is not empty"), "{err}");
    let in_place = resume(&r, b.join("snapshots/dpo-000002"), Some(b.clone()));
    assert_eq!(in_place.run_dir, b);
    assert_eq!(in_place.status, RunStatus::Completed);
}

/// A snapshot replaced by a resumed run's own (same name) is never missing
/// and never half there; a crash's leftovers are swept when a run resumes
/// in its directory.
#[test]
fn a_resume_in_place_sweeps_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "optimizer_state = \"all\"", false);
    let out = dir.path().join("run");
    train_to_end(&train_options(&r, Some(out.clone())));
    // A crash mid-write left a partial snapshot of 1 MB.
    let partial = out.join("snapshots/.partial-sft-000008");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("model.safetensors"), vec![0u8; 1 << 20]).unwrap();
    let resumed = resume(&r, out.join("snapshots/sft-000002"), None);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert!(!partial.exists());
    let ev = events(&out);
    assert!(
        alerts(&ev, AlertLevel::Warning).iter().any(|m| m
            .starts_with("removed snapshots left half-written by an earlier crash")
            && m.ends_with("(1.0 MB freed)")),
        "{:?}",
        alerts(&ev, AlertLevel::Warning)
    );
    let reasons: Vec<SnapshotReason> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.last(), Some(&SnapshotReason::PhaseEnd));
    assert_eq!(
        snapshot_dirs(&out),
        ["sft-000002", "sft-000004", "sft-000006"]
    );
}

fn screen(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buf = terminal.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect()
        })
        .collect()
}

/// Run the live loop without keys for up to `limit`, a tenth of a second
/// at a time, until `done` holds.
async fn run_until(
    terminal: &mut Terminal<TestBackend>,
    app: &mut App,
    source: &mut Source,
    mut keys: Vec<char>,
    done: impl Fn(&App) -> bool,
) {
    for _ in 0..600 {
        let input = futures::stream::iter(keys.drain(..).map(|c| {
            Ok(TermEvent::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )))
        }))
        .chain(futures::stream::pending());
        let tick = event_loop::run(terminal, app, source, input);
        let _ = tokio::time::timeout(Duration::from_millis(100), tick).await;
        if done(app) {
            // The loop draws at most every frame; show what it holds now.
            terminal.draw(|f| ui::draw(f, app)).unwrap();
            return;
        }
    }
    panic!("the dashboard never got there: {:?}", app.run.status);
}

/// On screen, live: the snapshot's size shows in the status line while it
/// is written; a full disk pauses the run, the header says why and the
/// status line what to do; the pause key resumes, the snapshot is retried
/// and the run completes.
#[tokio::test(flavor = "current_thread")]
async fn the_dashboard_shows_sizes_and_a_full_disk_and_resumes_on_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "", false);
    let out = dir.path().join("run");
    let prep = train::prepare(&with_fault(&r, &out, 4, DiskFaultKind::NoRoom)).unwrap();
    let handle = train::spawn(prep).unwrap();
    let mut app = App::new(Mode::Live, Theme::default(), "runs/test");
    let mut source = Source::Live(LiveSource {
        events: handle.events,
        control: handle.control.clone(),
        closed: false,
    });
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    run_until(&mut terminal, &mut app, &mut source, vec![], |a| {
        a.run.paused
    })
    .await;
    let rows = screen(&terminal);
    assert!(rows[1].contains("⏸ paused (disk full)"), "{}", rows[1]);
    let status = &rows[39];
    assert!(
        status.starts_with(" error: no room for snapshot sft-000004: about "),
        "{status}"
    );
    // The notes of each snapshot's size are shown, not counted among the
    // alerts (here the disk's error and the data's truncation warning).
    let logged = events(&out);
    let notes = alerts(&logged, AlertLevel::Info).len();
    let counted = alerts(&logged, AlertLevel::Warning).len() + 1;
    assert!(notes >= 1);
    assert_eq!(app.run.alerts, counted as u64);
    assert!(
        status.ends_with(&format!("{counted} alerts · 1 snapshot · ? help")),
        "{status}"
    );

    run_until(&mut terminal, &mut app, &mut source, vec!['p'], |a| {
        a.run.ended.is_some()
    })
    .await;
    assert_eq!(app.run.ended, Some(RunStatus::Completed));
    assert_eq!(app.run.snapshots, 3);
    assert_eq!(handle.thread.join().unwrap().unwrap().global_step, 6);

    // The size of a snapshot, in the status line while it is written.
    let ev = events(&out);
    let note = ev
        .iter()
        .position(|e| matches!(e, Event::Alert(a) if a.message.starts_with("writing snapshot sft-000004")))
        .unwrap();
    let mut app = App::new(Mode::Live, Theme::default(), "runs/test");
    app.apply(&ev[..=note]);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| ui::draw(f, &app)).unwrap();
    let status = &screen(&terminal)[39];
    assert!(
        status.starts_with(" writing snapshot sft-000004: about ")
            && status.contains(" free (weights "),
        "{status}"
    );
}
