//! Other trainers' logs, as the real programs wrote them
//! (`tests/fixtures/foreign/`, made by `scripts/reference/foreign_fixtures.py`),
//! read into the same numbers the programs logged.

use driftui::events::foreign::pipeline::Pipeline;
use driftui::events::foreign::{find_log, read_all, Format, FoundLog};
use driftui::events::{Event, StepEvent};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/foreign")
}

fn expected(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v[name].as_array().unwrap().clone()
}

fn steps(events: &[Event]) -> Vec<StepEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The value driftui holds under TRL's `name` (loss, lr, grad_norm or a metric).
fn value(s: &StepEvent, name: &str) -> f64 {
    match name {
        "loss" => s.loss,
        "lr" => s.lr,
        "grad_norm" => s.grad_norm,
        other => *s
            .metrics
            .get(other)
            .unwrap_or_else(|| panic!("step {} has no {other}: {:?}", s.step, s.metrics)),
    }
}

/// Each logged (step, metrics) equals driftui's step under the mapped name.
fn assert_same(
    got: &[StepEvent],
    want: &[Value],
    metrics_of: impl Fn(&Value) -> &serde_json::Map<String, Value>,
    step_of: impl Fn(&Value) -> u64,
    name_of: impl Fn(&str) -> Option<&'static str>,
) {
    assert_eq!(got.len(), want.len(), "step count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.step, step_of(w));
        let mut compared = 0;
        for (k, v) in metrics_of(w) {
            let Some(x) = v.as_f64() else { continue };
            let Some(name) = name_of(k) else { continue };
            let name = if name.is_empty() { k.as_str() } else { name };
            assert_eq!(value(g, name), x, "step {} {k} → {name}", g.step);
            compared += 1;
        }
        assert!(
            compared >= 3,
            "step {}: only {compared} values compared",
            g.step
        );
    }
}

fn trl_name(k: &str) -> Option<&'static str> {
    match k {
        "learning_rate" => Some("lr"),
        "step" | "total_flos" => None,
        _ => Some(""),
    }
}

#[test]
fn trl_trainer_state_reads_as_trl_logged_and_as_the_callback_wrote() {
    for run in ["trl-sft", "trl-dpo-lora"] {
        let dir = fixtures().join(run);
        let (events, skipped) = read_all(&FoundLog {
            format: Format::TrainerState,
            path: dir.clone(),
        })
        .unwrap();
        assert_eq!(skipped, 0);
        let from_state = steps(&events);
        assert_same(
            &from_state,
            &expected(run),
            |w| w["metrics"].as_object().unwrap(),
            |w| w["step"].as_u64().unwrap(),
            trl_name,
        );
        // The plan and the end: max_steps 6, reached.
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::PhaseStart(p) if p.steps == 6)));
        assert!(matches!(events.last(), Some(Event::RunEnd(_))));
        // Two writers in one run: the callback's steps hold the same numbers.
        let found = find_log(&dir).unwrap();
        assert_eq!(
            found.format,
            Format::Driftui,
            "the callback's log is preferred"
        );
        let (cb, skipped) = read_all(&found).unwrap();
        assert_eq!(skipped, 0);
        let cb_steps = steps(&cb);
        assert_eq!(cb_steps.len(), from_state.len());
        for (a, b) in cb_steps.iter().zip(&from_state) {
            assert_eq!((a.step, a.loss, a.lr), (b.step, b.loss, b.lr), "{run}");
            assert_eq!(a.grad_norm, b.grad_norm);
            for (k, v) in &b.metrics {
                assert_eq!(a.metrics.get(k), Some(v), "{run} step {} {k}", a.step);
            }
        }
        // The callback's snapshots name the checkpoints, relative to its log.
        let snaps: Vec<String> = cb
            .iter()
            .filter_map(|e| match e {
                Event::Snapshot(s) => Some(s.path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(snaps, ["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
        match &cb[0] {
            Event::RunStart(rs) => {
                let algo = if run == "trl-sft" { "sft" } else { "dpo" };
                assert_eq!(rs.phases[0].algorithm, algo);
                assert_eq!(rs.phases[0].steps, 6);
                let cfg = rs.config.as_ref().expect("the trainer's config");
                assert_eq!(cfg["save_steps"], 2.0);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn llamafactory_trainer_log_reads_as_it_logged() {
    for run in ["llamafactory-sft", "llamafactory-dpo"] {
        let dir = fixtures().join(run);
        let found = find_log(&dir).unwrap();
        assert_eq!(found.format, Format::LlamaFactory, "{run}");
        let (events, skipped) = read_all(&found).unwrap();
        assert_eq!(skipped, 0);
        // The last line is the end-of-training summary: no loss, not a step.
        let want: Vec<Value> = expected(run)
            .into_iter()
            .filter(|w| w.get("loss").is_some())
            .collect();
        assert_eq!(want.len(), 6);
        assert_same(
            &steps(&events),
            &want,
            |w| w.as_object().unwrap(),
            |w| w["current_steps"].as_u64().unwrap(),
            |k| match k {
                "lr" => Some("lr"),
                "accuracy" => Some("rewards/accuracies"),
                "current_steps" | "total_steps" | "percentage" => None,
                _ => Some(""),
            },
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::PhaseStart(p) if p.steps == 6)));
        assert!(matches!(events.last(), Some(Event::RunEnd(_))));
        // Times come from elapsed_time: never decreasing, never before 2020.
        let ts: Vec<f64> = steps(&events).iter().map(|s| s.t).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
        assert!(ts[0] > 1.5e9);
    }
}

#[test]
fn torchtune_disk_log_reads_as_it_logged_with_trl_names() {
    for (run, dir) in [("torchtune-sft", "sft"), ("torchtune-dpo", "dpo")] {
        let found = find_log(&fixtures().join("torchtune").join(dir)).unwrap();
        assert_eq!(found.format, Format::Torchtune);
        let (events, skipped) = read_all(&found).unwrap();
        assert_eq!(skipped, 0);
        assert_same(
            &steps(&events),
            &expected(run),
            |w| w["metrics"].as_object().unwrap(),
            |w| w["step"].as_u64().unwrap(),
            |k| match k {
                "log_probs/chosen" => Some("logps/chosen"),
                "log_probs/rejected" => Some("logps/rejected"),
                _ => Some(""),
            },
        );
    }
}

#[test]
fn verl_file_log_reads_as_it_logged() {
    let found = find_log(&fixtures().join("verl")).unwrap();
    assert_eq!(found.format, Format::Verl);
    let (events, skipped) = read_all(&found).unwrap();
    assert_eq!(skipped, 0);
    assert_same(
        &steps(&events),
        &expected("verl-sft"),
        |w| w["metrics"].as_object().unwrap(),
        |w| w["step"].as_u64().unwrap(),
        |k| match k {
            "train/loss" => Some("loss"),
            "train/lr" => Some("lr"),
            "train/grad_norm" => Some("grad_norm"),
            _ => Some(""),
        },
    );
}

#[test]
fn unreadable_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("log_1760000000.txt"),
        "Step 1 | loss:2.5 lr:0.1 \nStep two | loss:1\nStep 2 | loss:oops \nStep 3 | loss:2.0 lr:0.1 extra:7 \n",
    )
    .unwrap();
    let (events, skipped) = read_all(&find_log(dir.path()).unwrap()).unwrap();
    assert_eq!(skipped, 2);
    let s = steps(&events);
    assert_eq!(s.iter().map(|s| s.step).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(s[1].metrics["extra"], 7.0, "unknown metrics are kept");
    assert!(s[0].grad_norm.is_nan(), "not logged is not zero");

    std::fs::write(
        dir.path().join("trainer_log.jsonl"),
        "{\"current_steps\": 1, \"total_steps\": 2, \"loss\": 1.0, \"lr\": 0.1, \"elapsed_time\": \"0:00:01\"}\nnot json\n{\"current_steps\": 2, \"total_steps\": 2, \"loss\": 0.5, \"lr\": 0.1, \"elapsed_time\": \"0:00:02\"}\n",
    )
    .unwrap();
    let found = find_log(dir.path()).unwrap();
    assert_eq!(found.format, Format::LlamaFactory);
    let (events, skipped) = read_all(&found).unwrap();
    assert_eq!(skipped, 1);
    assert_eq!(steps(&events).len(), 2);
}

#[test]
fn a_directory_without_a_log_says_what_it_found_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    assert!(find_log(dir.path()).is_none());
    let err = driftui::events::foreign::not_a_log_error(dir.path()).to_string();
    assert!(err.contains("data/, notes.txt"), "{err}");
    assert!(
        err.contains("trainer_log.jsonl") && err.contains("trainer_state.json"),
        "{err}"
    );
}

#[test]
fn a_pipeline_puts_each_directory_after_the_one_before() {
    let dirs = [
        fixtures().join("trl-sft"),
        fixtures().join("llamafactory-dpo"),
    ];
    let (events, skipped) = Pipeline::read_all(&dirs, None).unwrap();
    assert_eq!(skipped, 0);
    let Event::RunStart(rs) = &events[0] else {
        panic!("{:?}", events[0])
    };
    let names: Vec<&str> = rs.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sft", "llamafactory-dpo"]);
    let s = steps(&events);
    let placed: Vec<(usize, u64, u64)> =
        s.iter().map(|s| (s.phase, s.step, s.global_step)).collect();
    assert_eq!(placed[0], (0, 1, 1));
    assert_eq!(placed[6], (1, 1, 7));
    assert_eq!(placed[11], (1, 6, 12));
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseStart(p) => Some(p.global_step),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [0, 6]);
    assert!(matches!(events.last(), Some(Event::RunEnd(r)) if r.global_step == 12));
}
