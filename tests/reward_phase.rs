//! `algorithm = "reward"` end to end on the demo (issue 12, part 1): SFT,
//! then a reward phase, then DPO, on builtin:tiny. The reward phase logs
//! TRL's RewardTrainer metrics, its loss falls and its accuracy rises, it
//! leaves the policy as it was (the DPO phase after it starts at ln 2 from
//! the SFT weights), it writes a `*ForSequenceClassification` directory
//! that loads with scores that rank the demo's pairs, and a resume from the
//! snapshot before it redoes it bit for bit.

use crate::common;

use common::{assets, safetensors_f32, train_options, train_to_end};
use driftui::data::{self, DataKind, Example};
use driftui::events::{read_log, Event, RunStatus};
use driftui::model::reward;
use driftui::model::Mode;
use driftui::train::{RunOutcome, TrainOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const REWARD_STEPS: usize = 32;

fn recipe(dir: &Path) -> PathBuf {
    let a = assets();
    let text = format!(
        r#"
[run]
name = "rm"
seed = 5

[model]
source = "builtin:tiny"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{a}/demo/sft.jsonl"
steps = 4
batch_size = 8
lr = 3e-3
max_len = 96

[[phase]]
name = "rm"
algorithm = "reward"
dataset = "{a}/demo/preference.jsonl"
steps = {REWARD_STEPS}
batch_size = 4
grad_accum = 2
lr = 2e-3
max_len = 96
center_rewards_coefficient = 0.01

[[phase]]
name = "dpo"
algorithm = "dpo"
dataset = "{a}/demo/preference.jsonl"
steps = 2
batch_size = 4
max_len = 96
"#,
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

#[test]
fn a_reward_phase_trains_a_reward_model_beside_an_unchanged_policy() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = recipe(dir.path());
    let run_dir = dir.path().join("run");
    let outcome = run(&recipe_path, Some(run_dir.clone()), None);
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.global_step, 4 + REWARD_STEPS as u64 + 2);
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();

    // TRL's RewardTrainer metrics, and nothing else.
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) if s.phase == 1 => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), REWARD_STEPS);
    let want: BTreeSet<&str> = [
        "accuracy",
        "margin",
        "min_reward",
        "mean_reward",
        "max_reward",
        "num_tokens",
    ]
    .into();
    for s in &steps {
        let keys: BTreeSet<&str> = s.metrics.keys().map(String::as_str).collect();
        assert_eq!(keys, want, "step {}", s.step);
        assert!(s.loss.is_finite() && s.grad_norm.is_finite());
        assert!(s.metrics["min_reward"] <= s.metrics["max_reward"]);
    }
    // num_tokens counts every chosen and rejected token, cumulatively.
    let mut total = 0.0;
    for s in &steps {
        total += s.tokens as f64;
        assert_eq!(s.metrics["num_tokens"], total);
    }
    // A fresh head scores near 0: ln 2 (plus a tiny centring term) at first.
    assert!(
        (steps[0].loss - std::f64::consts::LN_2).abs() < 0.05,
        "{}",
        steps[0].loss
    );
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let loss: Vec<f64> = steps.iter().map(|s| s.loss).collect();
    let acc: Vec<f64> = steps.iter().map(|s| s.metrics["accuracy"]).collect();
    let (first, last) = (mean(&loss[..4]), mean(&loss[REWARD_STEPS - 4..]));
    eprintln!(
        "reward phase: loss {first:.4} → {last:.4}, accuracy {:.3} → {:.3}",
        mean(&acc[..4]),
        mean(&acc[REWARD_STEPS - 4..])
    );
    assert!(last < first - 0.1, "loss {first} → {last}");
    assert!(mean(&acc[REWARD_STEPS - 4..]) > mean(&acc[..4]));

    // The policy did not move: the reward phase's snapshot holds the SFT
    // weights, and DPO after it starts at ln 2 against them.
    let snaps = run_dir.join("snapshots");
    assert_eq!(
        safetensors_f32(&snaps.join("sft-000004/model.safetensors")),
        safetensors_f32(&snaps.join(format!("rm-{REWARD_STEPS:06}/model.safetensors")))
    );
    let dpo_first = events
        .iter()
        .find_map(|e| match e {
            Event::Step(s) if s.phase == 2 => Some(s.loss),
            _ => None,
        })
        .unwrap();
    assert!(
        (dpo_first - std::f64::consts::LN_2).abs() < 1e-5,
        "{dpo_first}"
    );

    // The reward model: transformers' layout, and it ranks the demo pairs.
    let rm_dir = driftui::train::trainer::reward_model_dir(&run_dir, "rm");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(rm_dir.join(f).is_file(), "{f}");
    }
    let (rm, _, pad) = reward::load(&rm_dir, &candle_core::Device::Cpu).unwrap();
    let model = driftui::model::load_model("builtin:tiny", &driftui::model::LoadOptions::default())
        .unwrap();
    let examples = data::load_jsonl(
        &assets().join("demo/preference.jsonl"),
        DataKind::Preference,
    )
    .unwrap();
    let mut right = 0;
    let n = 48;
    for ex in &examples[..n] {
        let Example::Preference(p) = ex else {
            panic!("not a pair")
        };
        let whole = |c: &str| {
            let pc = data::tokenize_prompt_completion(&model.tokenizer, &p.prompt, c).unwrap();
            [pc.prompt, pc.completion].concat()
        };
        let (c, r) = (whole(&p.chosen), whole(&p.rejected));
        let s: Vec<f32> = rm
            .scores(&[c.as_slice(), r.as_slice()], pad, Mode::Fast)
            .unwrap()
            .to_vec1()
            .unwrap();
        right += usize::from(s[0] > s[1]);
    }
    eprintln!("reward model ranks {right} of {n} demo pairs right");
    assert!(right as f64 >= 0.7 * n as f64, "{right} of {n}");

    // Resumed from the SFT end, the reward phase is the same, bit for bit.
    let copy = dir.path().join("resumed");
    copy_dir(&run_dir, &copy);
    let resumed = run(&recipe_path, None, Some(copy.join("snapshots/sft-000004")));
    assert_eq!(resumed.losses.len(), outcome.losses.len());
    for (i, (a, b)) in outcome
        .losses
        .iter()
        .zip(&resumed.losses)
        .enumerate()
        .skip(4)
    {
        assert_eq!(a.to_bits(), b.to_bits(), "step {}: {a} vs {b}", i + 1);
    }
    assert_eq!(
        safetensors_f32(&rm_dir.join("model.safetensors")),
        safetensors_f32(
            &driftui::train::trainer::reward_model_dir(&copy, "rm").join("model.safetensors")
        )
    );
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

/// Stopped inside a reward phase: a stop snapshot of the policy, and a
/// resume from it is refused, saying so, rather than retraining the reward
/// model from a state it does not have.
#[test]
fn resuming_inside_a_reward_phase_is_refused_with_a_reason() {
    use driftui::train::{self, Control};
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = recipe(dir.path());
    let run_dir = dir.path().join("run");
    let prep = train::prepare(&train_options(&recipe_path, Some(run_dir.clone()))).unwrap();
    let mut handle = train::spawn(prep).unwrap();
    while let Some(e) = handle.events.blocking_recv() {
        if let Event::Step(s) = e {
            if s.phase == 1 && s.step == 2 {
                handle.control.send(Control::Stop).unwrap();
            }
        }
    }
    let outcome = handle.thread.join().unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Stopped);
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    let stop = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Snapshot(s) => Some(s.path.clone()),
            _ => None,
        })
        .unwrap();
    assert!(stop.contains("rm-"), "{stop}");
    assert!(!driftui::train::trainer::reward_model_dir(&run_dir, "rm").exists());
    // Refused when the run is prepared or when it reaches the phase.
    let (_tx, rx) = std::sync::mpsc::channel();
    let err = train::prepare(&TrainOptions {
        resume: Some(run_dir.join(&stop)),
        ..train_options(&recipe_path, None)
    })
    .and_then(|prep| train::run(prep, rx, None))
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap();
    assert!(
        err.contains("inside reward phase \"rm\"") && err.contains("not implemented yet"),
        "{err}"
    );
}

/// A reward phase leaves the policy as it was: the next phase's start probe
/// reuses the one the reward phase began with (no second pass over the same
/// weights), and says so by its zero seconds.
#[test]
fn the_phase_after_a_reward_phase_reuses_its_start_probe() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.jsonl");
    common::write_probes(
        &probes,
        &[
            ("tax", "Should taxes rise?"),
            ("tax", "Is a wealth tax fair?"),
            ("climate", "Should carbon be taxed?"),
            ("climate", "Are emission caps good?"),
        ],
    );
    let path = recipe(dir.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("steps = {REWARD_STEPS}"), "steps = 2")
        + &format!(
            "\n[probe]\nfile = {:?}\nmethod = \"choice\"\n",
            probes.display().to_string()
        );
    std::fs::write(&path, text).unwrap();
    let run_dir = dir.path().join("run");
    run(&path, Some(run_dir.clone()), None);
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    let starts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Probe(p) if p.reason == driftui::events::ProbeReason::PhaseStart => Some(p),
            _ => None,
        })
        .collect();
    // sft's start, the reward phase's (reusing sft's end), dpo's (reusing it too).
    assert_eq!(starts.len(), 3);
    let (rm, dpo) = (starts[1], starts[2]);
    assert_eq!((rm.phase, dpo.phase), (1, 2));
    assert_eq!(dpo.seconds, 0.0, "measured again");
    assert_eq!(dpo.topics, rm.topics);
    assert_eq!(dpo.global_step, rm.global_step + 2);
}
