//! The live dashboard against a stand-in trainer thread: keys become
//! `Control` messages, and quitting waits for the trainer's `run_end`.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use driftui::events::{read_log, Event, Marker, RunEnd, RunStatus, SnapshotEvent, SnapshotReason};
use driftui::train::Control;
use driftui::tui::action::Mode;
use driftui::tui::app::{App, Quit};
use driftui::tui::event_loop::{self, LiveSource, Source};
use driftui::tui::theme::Theme;
use futures::StreamExt;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::Path;
use std::time::Duration;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

/// Plays the first 60 events of the sample run, then answers commands the
/// way the real trainer does, and reports what it was asked.
fn fake_trainer(
    events: tokio::sync::mpsc::Sender<Event>,
    control: std::sync::mpsc::Receiver<Control>,
) -> std::thread::JoinHandle<Vec<Control>> {
    std::thread::spawn(move || {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/sample-run.jsonl");
        let (log, _) = read_log(&path).unwrap();
        for e in log.into_iter().take(60) {
            events.blocking_send(e).unwrap();
        }
        let mut asked = Vec::new();
        let marker = Marker {
            t: 2e9,
            global_step: 50,
            reason: "user".into(),
        };
        while let Ok(c) = control.recv_timeout(Duration::from_secs(5)) {
            asked.push(c);
            let reply = match c {
                Control::Pause => Event::Pause(marker.clone()),
                Control::Resume => Event::Resume(marker.clone()),
                Control::Snapshot | Control::Stop => Event::Snapshot(SnapshotEvent {
                    t: 2e9,
                    phase: 0,
                    step: 50,
                    global_step: 50,
                    path: "snapshots/step-000050".into(),
                    reason: if c == Control::Stop {
                        SnapshotReason::Stop
                    } else {
                        SnapshotReason::Manual
                    },
                }),
                Control::ProbeNow => continue,
            };
            events.blocking_send(reply).unwrap();
            if c == Control::Stop {
                events
                    .blocking_send(Event::RunEnd(RunEnd {
                        t: 2e9,
                        status: RunStatus::Stopped,
                        global_step: 50,
                        seconds: 60.0,
                        message: None,
                    }))
                    .unwrap();
                break;
            }
        }
        asked
    })
}

#[tokio::test(flavor = "current_thread")]
async fn keys_steer_the_trainer_and_quit_waits_for_run_end() {
    let (event_tx, event_rx) = tokio::sync::mpsc::channel(8);
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let trainer = fake_trainer(event_tx, control_rx);
    let mut app = App::new(Mode::Live, Theme::default(), "runs/test");
    let mut source = Source::Live(LiveSource {
        events: event_rx,
        control: control_tx,
        closed: false,
    });
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let keys = [key('p'), key('s'), key('P'), key('q'), key('y')].map(|k| Ok(TermEvent::Key(k)));
    // The terminal stays open after the keys: only the run's end may stop the loop.
    let input = futures::stream::iter(keys).chain(futures::stream::pending());
    tokio::time::timeout(
        Duration::from_secs(10),
        event_loop::run(&mut terminal, &mut app, &mut source, input),
    )
    .await
    .expect("the loop did not end after run_end")
    .unwrap();
    let asked = trainer.join().unwrap();
    assert_eq!(
        asked,
        [
            Control::Pause,
            Control::Snapshot,
            Control::ProbeNow,
            Control::Stop
        ]
    );
    assert_eq!(app.quit, Quit::Now);
    assert_eq!(app.run.ended, Some(RunStatus::Stopped));
    assert_eq!(app.run.snapshots, 2);
    assert!(app.run.events >= 60);
}

#[tokio::test(flavor = "current_thread")]
async fn a_trainer_that_dies_is_reported_and_q_then_quits_at_once() {
    let (event_tx, event_rx) = tokio::sync::mpsc::channel::<Event>(8);
    let (control_tx, _control_rx) = std::sync::mpsc::channel();
    drop(event_tx);
    let mut app = App::new(Mode::Live, Theme::default(), "runs/test");
    let mut source = Source::Live(LiveSource {
        events: event_rx,
        control: control_tx,
        closed: false,
    });
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    // Let the closed channel be noticed before the key arrives.
    let input = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(TermEvent::Key(key('q')))
    })
    .chain(futures::stream::pending());
    tokio::time::timeout(
        Duration::from_secs(5),
        event_loop::run(&mut terminal, &mut app, &mut source, Box::pin(input)),
    )
    .await
    .expect("q did not quit")
    .unwrap();
    assert!(app.trainer_done);
    let status = app.run.status.as_ref().unwrap();
    assert!(status.text.contains("without a run_end"), "{status:?}");
}
