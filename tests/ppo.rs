//! `algorithm = "ppo"` end to end on builtin:tiny (issue 12, part 2): one
//! response per prompt scored by a frozen reward model, a value model
//! started from it and trained beside the policy, the KL penalty to the
//! reference; the score of fresh rollouts rises while the KL stays bounded;
//! every policy and value-model tensor moves; TRL's PPOTrainer metric names
//! are logged; a run resumed from a mid-phase snapshot (value model and
//! its optimizer state in it) repeats the uninterrupted one bit for bit.
//!
//! The reward model is the one `tests/grpo.rs` makes: builtin:tiny's weights
//! with a random score head.

use crate::common;
use crate::grpo::{reward_dir, start_weights, steps_of, weights, MODEL_SEED};

use common::{assets, train_options, train_to_end};
use driftui::events::{read_log, Event, RunStatus, StepEvent};
use driftui::train::TrainOptions;
use std::path::{Path, PathBuf};

/// A one-phase PPO recipe from builtin:tiny, 8 rollouts an update in 2
/// mini-batches of 2 micro-batches of 2.
fn recipe(dir: &Path, steps: u64, extra: &str) -> PathBuf {
    let a = assets();
    let rm = reward_dir(dir, 1.0);
    let text = format!(
        r#"
[run]
name = "ppo"
seed = {MODEL_SEED}
optimizer_state = "all"

[model]
source = "builtin:tiny"

[[phase]]
name = "ppo"
algorithm = "ppo"
dataset = "{a}/demo/value-gap-small.jsonl"
steps = {steps}
batch_size = 2
grad_accum = 2
num_mini_batches = 2
num_ppo_epochs = 2
response_length = 12
temperature = 1.0
kl_coef = 0.05
lr = 1e-3
schedule = "constant"
max_len = 64
reward_model = {rm:?}
{extra}
"#,
        a = a.display(),
        rm = rm.display().to_string()
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn ppo_raises_the_score_of_fresh_rollouts_with_a_bounded_kl() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 20;
    let recipe_path = recipe(dir.path(), steps, "");
    let run_dir = dir.path().join("run");
    let outcome = train_to_end(&train_options(&recipe_path, Some(run_dir.clone())));
    assert_eq!(outcome.status, RunStatus::Completed);
    let s = steps_of(&run_dir);
    assert_eq!(s.len(), steps as usize);
    for name in [
        "objective/kl",
        "objective/entropy",
        "objective/non_score_reward",
        "objective/rlhf_reward",
        "objective/scores",
        "policy/approxkl_avg",
        "policy/clipfrac_avg",
        "loss/policy_avg",
        "loss/value_avg",
        "val/clipfrac_avg",
        "policy/entropy_avg",
        "val/ratio",
        "val/ratio_var",
        "val/num_eos_tokens",
        "episode",
    ] {
        assert!(
            s.iter().all(|x| x.metrics.contains_key(name)),
            "{name} missing: {:?}",
            s[0].metrics.keys().collect::<Vec<_>>()
        );
    }
    // The first update's rollouts come from the reference itself: no KL.
    assert!(
        s[0].metrics["objective/kl"].abs() < 1e-4,
        "{}",
        s[0].metrics["objective/kl"]
    );
    assert_eq!(s[0].metrics["episode"], 8.0);
    assert_eq!(s[steps as usize - 1].metrics["episode"], 8.0 * steps as f64);
    let mean =
        |xs: &[StepEvent], k: &str| xs.iter().map(|x| x.metrics[k]).sum::<f64>() / xs.len() as f64;
    let (first, last) = (
        mean(&s[..5], "objective/scores"),
        mean(&s[s.len() - 5..], "objective/scores"),
    );
    let kl = mean(&s[s.len() - 5..], "objective/kl");
    let vloss = (
        mean(&s[..5], "loss/value_avg"),
        mean(&s[s.len() - 5..], "loss/value_avg"),
    );
    eprintln!(
        "PPO score {first:.3} → {last:.3}, KL (last 5) {kl:.3}, value loss {:.3} → {:.3}",
        vloss.0, vloss.1
    );
    assert!(last > first + 0.5, "score {first:.3} → {last:.3}");
    assert!(kl.is_finite() && kl < 20.0, "KL {kl}");
    for x in &s {
        assert!(x.loss.is_finite() && x.grad_norm.is_finite(), "{x:?}");
    }
}

#[test]
fn policy_and_value_model_move_and_a_mid_ppo_resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = recipe(dir.path(), 4, "snapshot_every = 2");
    let whole = dir.path().join("whole");
    train_to_end(&train_options(&recipe_path, Some(whole.clone())));
    let end = whole.join("snapshots/ppo-000004");
    // Every policy weight moved; every value-model weight (and its head) too.
    let start = start_weights();
    for (name, after) in weights(&end.join("model.safetensors")) {
        let before = &start[&name];
        assert!(
            before.iter().zip(&after).any(|(a, b)| a != b),
            "policy {name}"
        );
    }
    let rm = weights(&dir.path().join("rm/model.safetensors"));
    let value = weights(&end.join("value_model.safetensors"));
    assert_eq!(
        value.iter().map(|v| &v.0).collect::<Vec<_>>(),
        rm.iter().map(|v| &v.0).collect::<Vec<_>>(),
        "the value model is the reward model's layout"
    );
    for ((name, after), (_, before)) in value.iter().zip(&rm) {
        assert!(
            before.iter().zip(after).any(|(a, b)| a != b),
            "value {name}"
        );
    }
    // Resume from update 2: the same updates and the same weights.
    let resumed = dir.path().join("resumed");
    train_to_end(&TrainOptions {
        resume: Some(whole.join("snapshots/ppo-000002")),
        ..train_options(&recipe_path, Some(resumed.clone()))
    });
    let a = steps_of(&whole);
    let b = steps_of(&resumed);
    let key = |s: &StepEvent| (s.global_step, s.loss.to_bits(), s.grad_norm.to_bits());
    assert_eq!(
        a[2..].iter().map(key).collect::<Vec<_>>(),
        b[b.len() - 2..].iter().map(key).collect::<Vec<_>>()
    );
    let r_end = resumed.join("snapshots/ppo-000004");
    assert_eq!(
        weights(&end.join("model.safetensors")),
        weights(&r_end.join("model.safetensors"))
    );
    assert_eq!(value, weights(&r_end.join("value_model.safetensors")));
    // The rollouts were logged, four per update.
    let (events, _) = read_log(&whole.join("events.jsonl")).unwrap();
    let n = events
        .iter()
        .filter(|e| matches!(e, Event::Rollouts(r) if r.samples.len() == 4))
        .count();
    assert_eq!(n, 4);
}

#[test]
fn ppo_with_a_stance_reward_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe(dir.path(), 1, "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("reward_model"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\nreward_stance = \"support\"\n";
    std::fs::write(&p, text).unwrap();
    let err = match driftui::train::prepare(&train_options(&p, Some(dir.path().join("a")))) {
        Err(e) => format!("{e:#}"),
        Ok(prep) => {
            let (_tx, rx) = std::sync::mpsc::channel();
            format!("{:#}", driftui::train::run(prep, rx, None).unwrap_err())
        }
    };
    assert!(
        err.contains("reward_stance") || err.contains("value model"),
        "{err}"
    );
}

#[test]
fn nan_scores_skip_the_ppo_update_with_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let p = recipe(dir.path(), 1, "");
    let nan_rm = reward_dir(&dir.path().join("nan"), f32::NAN);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("reward_model") {
                format!("reward_model = {:?}", nan_rm.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&p, text).unwrap();
    let run_dir = dir.path().join("run");
    let outcome = train_to_end(&train_options(&p, Some(run_dir.clone())));
    assert_eq!(outcome.status, RunStatus::Completed);
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Alert(a)
            if a.message.contains("8 of 8 reward model scores are not finite")
                && a.message.contains("skipped"))),
        "no alert"
    );
    let start = start_weights();
    for (name, w) in weights(&run_dir.join("snapshots/ppo-000001/model.safetensors")) {
        let before = &start[&name];
        assert_eq!(*before, w, "{name} changed");
    }
}
