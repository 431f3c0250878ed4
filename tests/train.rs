//! The training engine end to end on the demo data: losses fall in every
//! phase, resumes are exact, non-finite losses pause instead of corrupting
//! the weights, and a run directory has what it promises.

use crate::common;
use driftui::events::{
    read_log, AlertLevel, Event, ProbeEvent, ProbeMethod, ProbeReason, RunStatus, SnapshotReason,
};

use common::{assets, train_options, train_to_end, write_probes};
use driftui::train::{self, Control, RunOutcome, TrainOptions};
use std::path::{Path, PathBuf};

/// A small recipe over the demo data: SFT, then DPO, then KTO.
fn recipe(dir: &Path, extra_sft: &str) -> PathBuf {
    let a = assets();
    let text = format!(
        r#"
[run]
name = "t"
seed = 11
output_dir = "{out}"
# The resumes below start from older snapshots too.
optimizer_state = "all"

[model]
source = "builtin:tiny"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{a}/demo/sft.jsonl"
steps = 16
batch_size = 8
lr = 3e-3
max_len = 96
snapshot_every = 6
{extra_sft}

[[phase]]
name = "dpo"
algorithm = "dpo"
dataset = "{a}/demo/preference.jsonl"
steps = 12
batch_size = 8
lr = 5e-4
max_len = 96
snapshot_every = 4

[[phase]]
name = "kto"
algorithm = "kto"
dataset = "{a}/demo/kto.jsonl"
steps = 24
batch_size = 12
lr = 5e-4
max_len = 96
"#,
        out = dir.join("runs").display(),
        a = a.display()
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(recipe: &Path, output: Option<PathBuf>, resume: Option<PathBuf>) -> RunOutcome {
    train_to_end(&TrainOptions {
        resume,
        ..train_options(recipe, output)
    })
}

fn steps_of(events: &[Event], phase: usize) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) if s.phase == phase => Some((s.global_step, s.loss)),
            _ => None,
        })
        .collect()
}

/// One full run, shared by the checks below (it is the slow part).
fn full_run(dir: &Path) -> (PathBuf, RunOutcome, Vec<Event>) {
    let r = recipe(dir, "");
    let out = dir.join("run");
    let outcome = run(&r, Some(out.clone()), None);
    let (events, report) = read_log(&out.join("events.jsonl")).unwrap();
    assert!(report.skipped.is_empty() && !report.torn_tail);
    (r, outcome, events)
}

#[test]
fn losses_fall_resume_is_exact_and_the_run_dir_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe_path, outcome, events) = full_run(dir.path());
    let run_dir = dir.path().join("run");
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.global_step, 52);

    // The log: schema first, phases in order, run_end last.
    match &events[0] {
        Event::RunStart(rs) => {
            assert_eq!(rs.schema, driftui::events::SCHEMA_VERSION);
            assert_eq!(rs.phases.len(), 3);
            assert!(rs.recipe.contains("algorithm = \"kto\""));
        }
        e => panic!("first event {e:?}"),
    }
    assert!(matches!(events.last(), Some(Event::RunEnd(r)) if r.status == RunStatus::Completed));

    // Losses fall in every phase (first half against second half).
    for phase in 0..3 {
        let losses: Vec<f64> = steps_of(&events, phase).iter().map(|s| s.1).collect();
        let k = losses.len() / 2;
        let head = losses[..k].iter().sum::<f64>() / k as f64;
        let tail = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
        assert!(tail < head, "phase {phase}: loss did not fall: {losses:?}");
    }
    // DPO starts with the policy equal to its reference: ln 2.
    // The reference is scored exactly as the policy is, so equal weights
    // give equal log-probs: ln 2, zero rewards, no pair "won" (TRL logs 0).
    let dpo_first = events
        .iter()
        .find_map(|e| match e {
            Event::Step(s) if s.phase == 1 => Some(s),
            _ => None,
        })
        .unwrap();
    assert!(
        (dpo_first.loss - std::f64::consts::LN_2).abs() < 1e-6,
        "{}",
        dpo_first.loss
    );
    for k in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
    ] {
        assert_eq!(dpo_first.metrics[k], 0.0, "{k}");
    }
    // KTO starts from the policy as DPO left it, its reference the same:
    // every row's loss is 1 − σ(0) = ½, the KL term 0.
    let kto_first = events
        .iter()
        .find_map(|e| match e {
            Event::Step(s) if s.phase == 2 => Some(s),
            _ => None,
        })
        .unwrap();
    assert!((kto_first.loss - 0.5).abs() < 1e-6, "{}", kto_first.loss);
    assert_eq!(kto_first.metrics["kl"], 0.0);
    // TRL's num_tokens: the input tokens seen so far in the phase (for SFT
    // and DPO every token a step runs through the model).
    for phase in 0..2 {
        let mut seen = 0.0;
        for e in &events {
            if let Event::Step(s) = e {
                if s.phase == phase {
                    seen += s.tokens as f64;
                    assert_eq!(
                        s.metrics["num_tokens"], seen,
                        "phase {phase} step {}",
                        s.step
                    );
                }
            }
        }
    }
    // KTO logs its KL term and reward margins under TRL's names.
    let kto_steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) if s.phase == 2 => Some(s),
            _ => None,
        })
        .collect();
    assert!(kto_steps.iter().all(|s| s.metrics.contains_key("kl")));

    // Snapshots: cadence, phase ends; each loads as a model directory.
    // Only those within a phase hold an optimizer state: a phase starts
    // with a fresh optimizer, so a phase end's would never be read.
    let snaps = run_dir.join("snapshots");
    for (name, within_phase) in [
        ("sft-000006", true),
        ("sft-000012", true),
        ("sft-000016", false),
        ("dpo-000004", true),
        ("dpo-000012", false),
        ("kto-000024", false),
    ] {
        let s = snaps.join(name);
        driftui::rundir::snapshot::verify(&s).unwrap();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "trainer_state.json",
        ] {
            assert!(s.join(f).exists(), "{name}/{f}");
        }
        assert_eq!(
            s.join("optimizer.safetensors").exists(),
            within_phase,
            "{name}"
        );
    }
    assert!(run_dir.join("recipe.toml").exists());
    let loaded = driftui::model::load_model(
        snaps.join("dpo-000012").to_str().unwrap(),
        &driftui::model::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.cfg.num_hidden_layers, 4);

    // Resume from a mid-SFT snapshot and from a mid-DPO one (whose reference
    // model is the SFT end snapshot): the later losses equal the
    // uninterrupted run's, bit for bit.
    for (snap, from) in [("sft-000006", 6usize), ("dpo-000004", 20)] {
        let copy = dir.path().join(format!("resume-{snap}"));
        copy_dir(&run_dir, &copy);
        let resumed = run(&recipe_path, None, Some(copy.join("snapshots").join(snap)));
        assert_eq!(resumed.global_step, 52);
        assert_eq!(resumed.losses.len(), 52);
        for (i, (a, b)) in outcome
            .losses
            .iter()
            .zip(&resumed.losses)
            .enumerate()
            .skip(from)
        {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{snap}: step {} differs: {a} vs {b}",
                i + 1
            );
        }
        // The resumed log says where it picked up.
        let (ev, _) = read_log(&copy.join("events.jsonl")).unwrap();
        let resumed_from = ev.iter().rev().find_map(|e| match e {
            Event::RunStart(rs) => rs.resumed_from.clone(),
            _ => None,
        });
        assert_eq!(resumed_from.unwrap().global_step, from as u64);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A NaN loss is not applied: the run pauses (live) with an alert, the user
/// resumes and it goes on with the next batch; the weights stay finite.
#[test]
fn nan_loss_pauses_with_an_alert_and_resume_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    // Only the SFT phase matters here.
    let text = std::fs::read_to_string(&r).unwrap();
    let sft_only = text
        .split("[[phase]]\nname = \"dpo\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&r, sft_only.replace("steps = 16", "steps = 5")).unwrap();
    let prep = train::prepare(&TrainOptions {
        inject_nan_at_step: Some(3),
        ..train_options(&r, Some(dir.path().join("run")))
    })
    .unwrap();
    let mut handle = train::spawn(prep).unwrap();
    let mut seen = Vec::new();
    loop {
        let e = handle.events.blocking_recv().expect("trainer ended early");
        let paused = matches!(&e, Event::Pause(_));
        seen.push(e);
        if paused {
            break;
        }
    }
    let alert = seen.iter().find_map(|e| match e {
        Event::Alert(a) if a.level == AlertLevel::Error => Some(a.message.clone()),
        _ => None,
    });
    assert!(alert.unwrap().contains("not finite"));
    handle.control.send(Control::Resume).unwrap();
    while let Some(e) = handle.events.blocking_recv() {
        seen.push(e);
    }
    let outcome = handle.thread.join().unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.global_step, 5);
    assert!(outcome.losses[2].is_nan());
    assert!(outcome.losses[3].is_finite() && outcome.losses[4].is_finite());
    // The step after the NaN trains from finite weights.
    let w = candle_core::safetensors::load(
        dir.path()
            .join("run/snapshots/sft-000005/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for (name, t) in w {
        let s: f32 = t.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(s.is_finite(), "{name} is not finite");
    }
}

/// Stop from the control channel: a final snapshot, `run_end` "stopped".
#[test]
fn graceful_stop_writes_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let prep = train::prepare(&train_options(&r, Some(dir.path().join("run")))).unwrap();
    let mut handle = train::spawn(prep).unwrap();
    // Stop after the second step.
    let mut steps = 0;
    while let Some(e) = handle.events.blocking_recv() {
        if let Event::Step(_) = e {
            steps += 1;
            if steps == 2 {
                handle.control.send(Control::Snapshot).unwrap();
                handle.control.send(Control::Stop).unwrap();
            }
        }
    }
    let outcome = handle.thread.join().unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Stopped);
    assert!(outcome.global_step >= 2 && outcome.global_step <= 3);
    let (events, _) = read_log(&dir.path().join("run/events.jsonl")).unwrap();
    let reasons: Vec<SnapshotReason> = events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![SnapshotReason::Manual, SnapshotReason::Stop]);
    assert!(matches!(events.last(), Some(Event::RunEnd(r)) if r.status == RunStatus::Stopped));
}

/// Headless, nobody can resume: a NaN stops the run with a snapshot of the
/// last good weights and an error.
#[test]
fn headless_nan_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let outcome = train_to_end(&TrainOptions {
        inject_nan_at_step: Some(2),
        ..train_options(&r, Some(dir.path().join("run")))
    });
    assert_eq!(outcome.status, RunStatus::Stopped);
    assert_eq!(outcome.global_step, 2);
    assert!(dir
        .path()
        .join("run/snapshots/sft-000002/model.safetensors")
        .exists());
}

/// The `generate` probe method inside a run: sampled answers judged by the
/// run's starting model, which is checked first and flagged as untrustworthy
/// (a fresh model is no judge); a judge endpoint that is down fails the
/// probe, not the run.
#[test]
fn generate_probes_with_a_checked_judge() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.jsonl");
    write_probes(
        &probes,
        &[
            ("guns", "Should gun laws be stricter?"),
            ("guns", "Are background checks good?"),
            ("tax", "Should the rich pay more tax?"),
        ],
    );
    let base = recipe(dir.path(), "");
    let text = std::fs::read_to_string(&base).unwrap();
    let sft_only = text
        .split("[[phase]]\nname = \"dpo\"")
        .next()
        .unwrap()
        .replace("steps = 16", "steps = 2");
    let with_probe = |judge: &str| {
        format!(
            "{sft_only}\n[probe]\nfile = \"{}\"\nmethod = \"generate\"\nsamples = 2\nmax_tokens = 8\njudge = \"{judge}\"\n",
            probes.display()
        )
    };
    std::fs::write(&base, with_probe("initial")).unwrap();
    let out = dir.path().join("run");
    let outcome = run(&base, Some(out.clone()), None);
    assert_eq!(outcome.status, RunStatus::Completed);
    let (events, _) = read_log(&out.join("events.jsonl")).unwrap();
    let judge_note = events.iter().find_map(|e| match e {
        Event::Alert(a) if a.message.starts_with("judge ") => Some(a.clone()),
        _ => None,
    });
    let note = judge_note.expect("the judge check is logged");
    assert_eq!(note.level, AlertLevel::Warning, "{}", note.message);
    assert!(
        note.message.contains("/42") && note.message.contains("not trustworthy"),
        "{}",
        note.message
    );
    let probes = probe_events(&events);
    assert_eq!(probes.len(), 2, "phase start and end");
    for p in &probes {
        assert_eq!(p.method, ProbeMethod::Generate);
        assert!(p.error.is_none(), "{:?}", p.error);
        let guns = p.topics.iter().find(|t| t.topic == "guns").unwrap();
        assert_eq!(guns.n, 4, "2 questions × 2 samples");
        assert!((guns.mean.sum() - 1.0).abs() < 1e-9);
    }

    // A judge endpoint that is down: the run completes, its probes say why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &base,
        with_probe(&format!("openai:http://127.0.0.1:{port}/v1#m")),
    )
    .unwrap();
    let out = dir.path().join("run-down");
    let outcome = run(&base, Some(out.clone()), None);
    assert_eq!(outcome.status, RunStatus::Completed);
    let (events, _) = read_log(&out.join("events.jsonl")).unwrap();
    let errors: Vec<String> = probe_events(&events)
        .iter()
        .filter_map(|p| p.error.clone())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].contains("did not answer"), "{}", errors[0]);
}

/// The probe events of a log, in order.
fn probe_events(events: &[Event]) -> Vec<&ProbeEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Probe(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// A phase's start probe after the previous phase's end measures the same
/// weights: it is logged again (taking no time) instead of recomputed, and a
/// probe after training steps is measured anew.
#[test]
fn phase_start_probe_reuses_the_previous_phase_end() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.jsonl");
    write_probes(
        &probes,
        &[
            ("guns", "Should gun laws be stricter?"),
            ("tax", "Should the rich pay more tax?"),
        ],
    );
    let base = recipe(dir.path(), "");
    let text = std::fs::read_to_string(&base).unwrap();
    let two_phases = text
        .split("[[phase]]\nname = \"kto\"")
        .next()
        .unwrap()
        .replace("steps = 16", "steps = 2")
        .replace("steps = 12", "steps = 2");
    std::fs::write(
        &base,
        format!(
            "{two_phases}\n[probe]\nfile = \"{}\"\nmethod = \"choice\"\n",
            probes.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let outcome = run(&base, Some(out.clone()), None);
    assert_eq!(outcome.status, RunStatus::Completed);
    let (events, _) = read_log(&out.join("events.jsonl")).unwrap();
    let probes = probe_events(&events);
    let kinds: Vec<(usize, ProbeReason, u64)> = probes
        .iter()
        .map(|p| (p.phase, p.reason, p.global_step))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, ProbeReason::PhaseStart, 0),
            (0, ProbeReason::PhaseEnd, 2),
            (1, ProbeReason::PhaseStart, 2),
            (1, ProbeReason::PhaseEnd, 4)
        ]
    );
    assert_eq!(probes[2].topics, probes[1].topics);
    assert_eq!(probes[2].seconds, 0.0);
    assert!(probes[1].seconds > 0.0 && probes[3].seconds > 0.0);
    assert_ne!(
        probes[0].topics, probes[1].topics,
        "SFT steps moved the stance"
    );
    assert_ne!(
        probes[2].topics, probes[3].topics,
        "DPO steps moved the stance"
    );
}

/// A DPO batch far beyond the machine's memory is refused before anything
/// is written, naming the recipe, the phase, the estimate and a batch that
/// fits.
#[test]
fn a_step_too_large_for_memory_is_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let text = std::fs::read_to_string(&r).unwrap();
    // The DPO phase's batch: 65,536 pairs of up to 96 tokens on the tiny
    // model, hundreds of GB of activations.
    let big = text.replacen(
        "batch_size = 8\nlr = 5e-4",
        "batch_size = 65536\nlr = 5e-4",
        1,
    );
    assert_ne!(big, text);
    std::fs::write(&r, big).unwrap();
    let out = dir.path().join("run");
    let err = match train::prepare(&train_options(&r, Some(out.clone()))) {
        Ok(_) => panic!("a 65,536-pair step was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("recipe.toml"), "{err}");
    assert!(err.contains("phase \"dpo\""), "{err}");
    assert!(err.contains("131072 sequences"), "{err}");
    assert!(err.contains("would fit"), "{err}");
    assert!(!out.exists(), "the run directory was created");
}
