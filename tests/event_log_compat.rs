//! Logs written by earlier builds (tests/fixtures/events, see its README)
//! read into the same values and write back byte for byte: typing the
//! log's vocabulary (stances, probe methods and reasons, snapshot reasons,
//! alert levels, run statuses) did not change the format.

use driftui::events::{
    read_log, AlertLevel, Event, ProbeMethod, ProbeReason, RunStatus, SnapshotReason, Stance,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_line_reads_and_writes_back_byte_for_byte() {
    let files = fixtures();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.ends_with('\n'), "{}", file.display());
        for (i, line) in text.lines().enumerate() {
            let event: Event = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
            let back = serde_json::to_string(&event).unwrap();
            if back != line {
                let at = back
                    .bytes()
                    .zip(line.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(back.len().min(line.len()));
                let from = at.saturating_sub(60);
                panic!(
                    "{}:{}: written back differently from byte {at}:\n was {:?}\n now {:?}",
                    file.display(),
                    i + 1,
                    line.get(from..(at + 60).min(line.len())).unwrap_or(line),
                    back.get(from..(at + 60).min(back.len())).unwrap_or(&back),
                );
            }
        }
        let (events, report) = read_log(&file).unwrap();
        assert_eq!(events.len(), text.lines().count(), "{}", file.display());
        assert!(report.skipped.is_empty() && !report.torn_tail);
    }
}

/// Each name the earlier builds wrote, spelled out here (not taken from the
/// types), reads as the value it meant and writes back the same.
#[test]
fn the_names_earlier_builds_wrote_are_the_same_values() {
    fn same<T>(pairs: &[(&str, T)])
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug + Copy + std::fmt::Display,
    {
        for &(name, value) in pairs {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value);
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(value.to_string(), name);
        }
    }
    same(&[
        ("support", Stance::Support),
        ("neutral", Stance::Neutral),
        ("oppose", Stance::Oppose),
    ]);
    same(&[
        ("choice", ProbeMethod::Choice),
        ("generate", ProbeMethod::Generate),
    ]);
    same(&[
        ("phase_start", ProbeReason::PhaseStart),
        ("periodic", ProbeReason::Periodic),
        ("phase_end", ProbeReason::PhaseEnd),
        ("manual", ProbeReason::Manual),
    ]);
    same(&[
        ("cadence", SnapshotReason::Cadence),
        ("manual", SnapshotReason::Manual),
        ("phase_end", SnapshotReason::PhaseEnd),
        ("stop", SnapshotReason::Stop),
        ("reference", SnapshotReason::Reference),
    ]);
    same(&[
        ("info", AlertLevel::Info),
        ("warning", AlertLevel::Warning),
        ("error", AlertLevel::Error),
    ]);
    same(&[
        ("completed", RunStatus::Completed),
        ("stopped", RunStatus::Stopped),
        ("failed", RunStatus::Failed),
    ]);
}

/// What the fixtures hold, read as values: the typed fields carry what the
/// strings said.
#[test]
fn fixtures_read_into_the_values_they_were_written_with() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let (judged, _) = read_log(&dir.join("generate-judged.jsonl")).unwrap();
    let snapshot_reasons: Vec<SnapshotReason> = judged
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        snapshot_reasons,
        [
            SnapshotReason::Reference,
            SnapshotReason::PhaseEnd,
            SnapshotReason::Cadence,
            SnapshotReason::PhaseEnd
        ]
    );
    let judge_note = judged.iter().find_map(|e| match e {
        Event::Alert(a) if a.message.starts_with("judge ") => Some(a.level),
        _ => None,
    });
    assert_eq!(judge_note, Some(AlertLevel::Warning));
    for e in &judged {
        if let Event::Probe(p) = e {
            assert_eq!(p.method, ProbeMethod::Generate);
            for t in &p.topics {
                assert!((t.mean.sum() - 1.0).abs() < 1e-9, "{t:?}");
            }
        }
    }

    let (down, _) = read_log(&dir.join("generate-judge-down.jsonl")).unwrap();
    let failed: Vec<(ProbeReason, bool)> = down
        .iter()
        .filter_map(|e| match e {
            Event::Probe(p) => Some((p.reason, p.error.is_some() && p.topics.is_empty())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [
            (ProbeReason::PhaseStart, true),
            (ProbeReason::PhaseEnd, true),
            (ProbeReason::PhaseStart, true),
            (ProbeReason::PhaseEnd, true)
        ]
    );

    // The demo recipe probes uncalibrated (`calibrate = false`): the logged
    // mean is the raw one.
    let (demo, _) = read_log(&dir.join("demo-run.jsonl")).unwrap();
    assert!(matches!(demo.last(), Some(Event::RunEnd(r)) if r.status == RunStatus::Completed));
    let mut topics = 0;
    for e in &demo {
        if let Event::Probe(p) = e {
            assert_eq!(p.method, ProbeMethod::Choice);
            for t in &p.topics {
                assert_eq!(t.raw, Some(t.mean), "{t:?}");
                assert!((t.mean.sum() - 1.0).abs() < 1e-9, "{t:?}");
                topics += 1;
            }
        }
    }
    assert_eq!(topics, 12 * 14);
}
