//! `algorithm = "grpo"` end to end on builtin:tiny (issue 12, part 3): the
//! policy samples completions, a reward model scores them, and the update
//! raises the score of fresh rollouts; every trainable tensor moves; a run
//! resumed from a mid-phase snapshot samples and trains bit for bit as the
//! one that was never stopped; TRL's metric names are logged with a sample
//! of the rollouts; and a broken reward source is refused before training.
//!
//! The reward model is made here, not trained: builtin:tiny's own weights
//! with a score head drawn at random (std 1), written as transformers'
//! `LlamaForSequenceClassification`, so the rewards are a fixed function of
//! the text that the policy can learn to please.

use crate::common;

use common::{assets, train_options, train_to_end};
use driftui::events::{read_log, Event, RunStatus, StepEvent};
use driftui::model::reward::{self, init_score};
use driftui::model::{load_model, LoadOptions, LoadedModel};
use driftui::train::TrainOptions;
use std::path::{Path, PathBuf};

pub const MODEL_SEED: u64 = 11;

fn tiny() -> LoadedModel {
    load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: MODEL_SEED,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A reward model directory: the tiny model's weights, a random score head
/// (`score_scale` times a std-1 draw: NaN makes every score NaN).
pub fn reward_dir(dir: &Path, score_scale: f32) -> PathBuf {
    let model = tiny();
    let out = dir.join("rm");
    let score = (init_score(model.cfg.hidden_size, 1.0, 99, &candle_core::Device::Cpu).unwrap()
        * score_scale as f64)
        .unwrap();
    let score = if score_scale.is_nan() {
        score.ones_like().unwrap().affine(0.0, f64::NAN).unwrap()
    } else {
        score
    };
    reward::save(
        &out,
        &model.cfg,
        &model.weights.tensors,
        &score,
        model.tokenizer.pad_id,
    )
    .unwrap();
    std::fs::write(
        out.join("tokenizer.json"),
        &model.tokenizer_files.tokenizer_json,
    )
    .unwrap();
    std::fs::write(
        out.join("tokenizer_config.json"),
        serde_json::to_vec(&model.tokenizer_files.tokenizer_config).unwrap(),
    )
    .unwrap();
    out
}

/// A one-phase GRPO recipe from builtin:tiny (its weights drawn from the
/// run's seed, [`MODEL_SEED`]).
fn recipe(dir: &Path, steps: u64, reward: &str, extra: &str) -> PathBuf {
    let a = assets();
    let text = format!(
        r#"
[run]
name = "grpo"
seed = {MODEL_SEED}
# Every snapshot keeps its optimizer state: the resume test starts mid-phase.
optimizer_state = "all"

[model]
source = "builtin:tiny"

[[phase]]
name = "grpo"
algorithm = "grpo"
dataset = "{a}/demo/value-gap-small.jsonl"
steps = {steps}
batch_size = 8
num_generations = 4
max_completion_length = 12
temperature = 1.0
lr = 1e-3
schedule = "constant"
max_len = 64
{reward}
{extra}
"#,
        a = a.display()
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn steps_of(run_dir: &Path) -> Vec<StepEvent> {
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some(s),
            _ => None,
        })
        .collect()
}

pub use common::safetensors_f32 as weights;

/// The starting model's weights as f32 values, by name.
pub fn start_weights() -> std::collections::BTreeMap<String, Vec<f32>> {
    tiny()
        .weights
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

#[test]
fn grpo_raises_the_reward_of_fresh_rollouts_with_trl_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let rm = reward_dir(dir.path(), 1.0);
    let steps = 24;
    let recipe_path = recipe(
        dir.path(),
        steps,
        &format!("reward_model = {:?}", rm.display().to_string()),
        "beta = 0.04",
    );
    let run_dir = dir.path().join("run");
    let outcome = train_to_end(&train_options(&recipe_path, Some(run_dir.clone())));
    assert_eq!(outcome.status, RunStatus::Completed);
    let s = steps_of(&run_dir);
    assert_eq!(s.len(), steps as usize);
    for name in [
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "kl",
        "entropy",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "completions/mean_length",
        "completions/min_length",
        "completions/max_length",
        "completions/clipped_ratio",
        "num_tokens",
    ] {
        assert!(
            s.iter().all(|x| x.metrics.contains_key(name)),
            "{name} missing: {:?}",
            s[0].metrics.keys().collect::<Vec<_>>()
        );
    }
    // Step 1: the policy is its reference, and the completions were sampled
    // from it: no KL, no clipping.
    assert_eq!(s[0].metrics["kl"], 0.0);
    assert_eq!(s[0].metrics["clip_ratio/region_mean"], 0.0);
    for x in &s {
        assert!(x.loss.is_finite() && x.grad_norm.is_finite(), "{x:?}");
        let len = x.metrics["completions/mean_length"];
        assert!((1.0..=12.0).contains(&len), "{len}");
    }
    let mean =
        |xs: &[StepEvent]| xs.iter().map(|x| x.metrics["reward"]).sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&s[..6]), mean(&s[s.len() - 6..]));
    let kl_last = s[s.len() - 6..]
        .iter()
        .map(|x| x.metrics["kl"])
        .sum::<f64>()
        / 6.0;
    eprintln!("GRPO reward {first:.3} → {last:.3}, KL (last 6 steps) {kl_last:.4}");
    assert!(last > first + 0.5, "reward {first:.3} → {last:.3}");
    assert!(kl_last.is_finite() && kl_last < 5.0, "KL {kl_last}");

    // A sample of each step's rollouts is in the log.
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    let rollouts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Rollouts(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rollouts.len(), steps as usize);
    for r in &rollouts {
        assert_eq!(r.samples.len(), 4, "one prompt's group");
        assert!(r
            .samples
            .iter()
            .all(|x| x.reward.is_finite() && !x.prompt.is_empty()));
        // Advantages are centred on the group.
        let sum: f64 = r.samples.iter().map(|x| x.advantage).sum();
        assert!(sum.abs() < 1e-6, "{sum}");
    }
}

#[test]
fn every_trainable_tensor_moves_and_a_resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rm = reward_dir(dir.path(), 1.0);
    let reward = format!("reward_model = {:?}", rm.display().to_string());
    let recipe_path = recipe(dir.path(), 4, &reward, "beta = 0.04\nsnapshot_every = 2");
    let whole = dir.path().join("whole");
    train_to_end(&train_options(&recipe_path, Some(whole.clone())));
    // Every weight moved from the starting model's.
    let start = start_weights();
    let end = weights(&whole.join("snapshots/grpo-000004/model.safetensors"));
    for (name, after) in &end {
        let before = &start[name];
        assert!(
            before.iter().zip(after).any(|(a, b)| a != b),
            "{name} did not change"
        );
    }
    // Resume from step 2 into a new directory: the same rollouts, losses
    // and weights.
    let resumed = dir.path().join("resumed");
    train_to_end(&TrainOptions {
        resume: Some(whole.join("snapshots/grpo-000002")),
        ..train_options(&recipe_path, Some(resumed.clone()))
    });
    let a = steps_of(&whole);
    let b = steps_of(&resumed);
    // The resumed log starts with the parent's (copied); its own steps are last.
    let key = |s: &StepEvent| (s.global_step, s.loss.to_bits(), s.grad_norm.to_bits());
    assert_eq!(
        a[2..].iter().map(key).collect::<Vec<_>>(),
        b[b.len() - 2..].iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(b[b.len() - 2].global_step, 3);
    assert_eq!(
        end,
        weights(&resumed.join("snapshots/grpo-000004/model.safetensors")),
        "the resumed run ends elsewhere"
    );
}

#[test]
fn a_stance_judge_rewards_in_probability_units() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = recipe(dir.path(), 2, "reward_stance = \"support\"", "");
    let run_dir = dir.path().join("run");
    train_to_end(&train_options(&recipe_path, Some(run_dir.clone())));
    let s = steps_of(&run_dir);
    assert_eq!(s.len(), 2);
    for x in &s {
        let r = x.metrics["reward"];
        assert!((0.0..=1.0).contains(&r), "p(support) {r}");
        assert!(x.metrics.contains_key("rewards/stance_support/mean"));
        assert!(!x.metrics.contains_key("kl"), "β = 0 logs no KL, as TRL");
    }
}

#[test]
fn nan_rewards_skip_the_update_with_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let rm = reward_dir(dir.path(), f32::NAN);
    let recipe_path = recipe(
        dir.path(),
        2,
        &format!("reward_model = {:?}", rm.display().to_string()),
        "",
    );
    let run_dir = dir.path().join("run");
    let outcome = train_to_end(&train_options(&recipe_path, Some(run_dir.clone())));
    assert_eq!(
        outcome.status,
        RunStatus::Completed,
        "NaN rewards do not stop a run"
    );
    let (events, _) = read_log(&run_dir.join("events.jsonl")).unwrap();
    let alerts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(a.message.as_str()),
            _ => None,
        })
        .filter(|m| m.contains("rewards"))
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts[0].contains("8 of 8 rewards") && alerts[0].contains("skipped"));
    // The weights are the starting model's.
    let start = start_weights();
    for (name, w) in weights(&run_dir.join("snapshots/grpo-000002/model.safetensors")) {
        let before = &start[&name];
        assert_eq!(*before, w, "{name} changed");
    }
}

#[test]
fn a_reward_model_with_another_tokenizer_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let rm = reward_dir(dir.path(), 1.0);
    // Another vocabulary: one token renamed.
    let path = rm.join("tokenizer.json");
    let mut tj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tj["model"]["vocab"].as_object_mut().unwrap();
    let (k, v) = vocab
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    vocab.remove(&k);
    vocab.insert(format!("{k}_other"), v);
    std::fs::write(&path, serde_json::to_vec(&tj).unwrap()).unwrap();
    let reward = format!("reward_model = {:?}", rm.display().to_string());
    let recipe_path = recipe(dir.path(), 1, &reward, "");
    let prep =
        driftui::train::prepare(&train_options(&recipe_path, Some(dir.path().join("a")))).unwrap();
    let (_tx, rx) = std::sync::mpsc::channel();
    let err = format!("{:#}", driftui::train::run(prep, rx, None).unwrap_err());
    assert!(
        err.contains("tokenizer") && err.contains("tokenizer.json") && err.contains("builtin:tiny"),
        "{err}"
    );
    assert!(err.contains("reward_retokenize = true"), "{err}");
    // With re-tokenising asked for, it trains.
    let recipe_path = recipe(dir.path(), 1, &reward, "reward_retokenize = true");
    let run_dir = dir.path().join("b");
    let outcome = train_to_end(&train_options(&recipe_path, Some(run_dir.clone())));
    assert_eq!(outcome.status, RunStatus::Completed);
    assert!(steps_of(&run_dir)[0].metrics["reward"].is_finite());
}

#[test]
fn a_reward_model_that_is_not_one_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = recipe(dir.path(), 1, "reward_model = \"no-such-dir\"", "");
    let prep =
        driftui::train::prepare(&train_options(&recipe_path, Some(dir.path().join("a")))).unwrap();
    let (_tx, rx) = std::sync::mpsc::channel();
    let err = format!("{:#}", driftui::train::run(prep, rx, None).unwrap_err());
    assert!(
        err.contains("no-such-dir") && err.contains("is not a reward model directory"),
        "{err}"
    );
}

#[test]
fn a_prompt_longer_than_max_len_keeps_its_end_and_is_counted() {
    use driftui::data::{self, DataKind};
    use driftui::recipe::PhaseConfig;
    use driftui::train::phase::{Phase, PhaseData};
    let model = tiny();
    let long = "why ".repeat(200);
    let rows = format!(
        "{}\n{}\n",
        serde_json::json!({"prompt": format!("{long}Should taxes rise?")}),
        serde_json::json!({"prompt": [{"role": "user", "content": "Short?"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompts.jsonl");
    std::fs::write(&path, rows).unwrap();
    let examples = data::load_jsonl(&path, DataKind::Prompt).unwrap();
    let cfg: PhaseConfig = toml::from_str(
        "name = \"g\"\nalgorithm = \"grpo\"\ndataset = \"-\"\nsteps = 1\nbatch_size = 2\n\
         num_generations = 2\nreward_model = \"rm\"\nmax_len = 48\n",
    )
    .unwrap();
    let (phase, fit) = Phase::from_examples(&cfg, &examples, &model).unwrap();
    assert_eq!(fit.truncated, 1);
    let PhaseData::Prompts(p) = &phase.data else {
        panic!("not prompts")
    };
    assert_eq!(p[0].ids.len(), 48);
    // The end is kept: the question and the template's generation prompt,
    // exactly as the short prompt ends.
    let tail = model.tokenizer.decode(&p[0].ids, false).unwrap();
    let short = model.tokenizer.decode(&p[1].ids, false).unwrap();
    assert!(tail.contains("Should taxes rise?"), "{tail}");
    let ending = &short[short.find("Short?").unwrap() + "Short?".len()..];
    assert!(tail.ends_with(ending), "{tail:?} vs {ending:?}");
    assert_eq!(p[1].question, "Short?");
    // A row without a prompt names what it needs.
    std::fs::write(&path, "{\"text\": \"hello\"}\n").unwrap();
    let err = format!(
        "{:#}",
        data::load_jsonl(&path, DataKind::Prompt).unwrap_err()
    );
    assert!(
        err.contains("line 1") && err.contains("\"prompt\""),
        "{err}"
    );
}

#[test]
fn a_reward_model_of_an_untied_base_loads_with_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let rm = reward_dir(dir.path(), 1.0);
    let model = tiny();
    let row = model
        .tokenizer
        .encode("Is a wealth tax fair? I support it.")
        .unwrap();
    let score = |dir: &Path| -> f32 {
        let (m, _, pad) = reward::load(dir, &candle_core::Device::Cpu).unwrap();
        m.scores(&[row.as_slice()], pad, driftui::model::Mode::Fast)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0]
    };
    let tied = score(&rm);
    // As transformers writes an untied base's classifier: the flag off, no
    // lm_head among the weights.
    let path = rm.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["tie_word_embeddings"] = serde_json::Value::Bool(false);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert_eq!(score(&rm), tied);
}
