//! The reward model (issue 12, part 1) on the built-in model: the score head
//! pools where transformers pools, padding does not reach a score, the loss
//! carries TRL's value and gradient (`train::rl::reward_loss_tensor`, whose
//! numbers `tests/rl_parity.rs` checks against TRL), every weight gets a
//! gradient, and a few AdamW steps on the demo's preference pairs teach it
//! to rank chosen above rejected.
//!
//! Loading and saving transformers' `*ForSequenceClassification` layout:
//! scores equal transformers' own on a tiny reward model it made
//! (`tests/fixtures/reward`, `scripts/reference/reward_model.py`), and a
//! saved model loads back with the same scores. The trained model is also
//! exported to `target/tmp/reward-tiny` with its rows and scores, for
//! `reward_model.py score` to check with transformers.
//!
//! Not yet here: a recipe phase (`algorithm = "reward"` is refused).

use crate::common;

use candle_core::{Tensor, Var};
use driftui::data::{self, DataKind, Example};
use driftui::model::reward::{self, init_score, pooled_position, RewardModel, SCORE_WEIGHT};
use driftui::model::{load_model, LoadOptions, LoadedModel, Mode};
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use driftui::train::policy::Policy;
use driftui::train::rl::{reward_loss, reward_loss_tensor};
use std::collections::BTreeMap;

fn tiny() -> LoadedModel {
    load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The first `n` demo preference pairs as whole token sequences (prompt and
/// completion, as TRL's RewardTrainer scores them).
fn demo_pairs(model: &LoadedModel, n: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    let path = common::assets().join("demo/preference.jsonl");
    let examples = data::load_jsonl(&path, DataKind::Preference).unwrap();
    examples[..n]
        .iter()
        .map(|ex| {
            let Example::Preference(p) = ex else {
                panic!("not a preference row")
            };
            let whole = |c: &str| {
                let pc = data::tokenize_prompt_completion(&model.tokenizer, &p.prompt, c).unwrap();
                [pc.prompt, pc.completion].concat()
            };
            (whole(&p.chosen), whole(&p.rejected))
        })
        .collect()
}

/// A trainable reward model: every decoder weight and the score head.
fn trainable(model: &LoadedModel, seed: u64) -> (RewardModel, BTreeMap<String, Var>) {
    let policy = Policy::new(model, None, seed, None).unwrap();
    let mut vars = policy.vars;
    let score = Var::from_tensor(
        &init_score(model.cfg.hidden_size, 0.02, seed, &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap();
    vars.insert(SCORE_WEIGHT.into(), score.clone());
    let rm = RewardModel {
        decoder: policy.decoder,
        score: score.as_tensor().clone(),
    };
    (rm, vars)
}

fn pair_scores(rm: &RewardModel, pairs: &[(Vec<u32>, Vec<u32>)], pad: u32) -> (Tensor, Tensor) {
    let chosen: Vec<&[u32]> = pairs.iter().map(|p| p.0.as_slice()).collect();
    let rejected: Vec<&[u32]> = pairs.iter().map(|p| p.1.as_slice()).collect();
    (
        rm.scores(&chosen, pad, Mode::Train).unwrap(),
        rm.scores(&rejected, pad, Mode::Train).unwrap(),
    )
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn pooling_is_transformers_rightmost_non_pad_token() {
    // transformers: argmax over position × (id != pad).
    assert_eq!(pooled_position(&[5, 6, 7], 0), 2);
    assert_eq!(pooled_position(&[5, 6, 2, 2], 2), 1);
    assert_eq!(pooled_position(&[5, 2, 6, 2], 2), 2);
    assert_eq!(pooled_position(&[2, 2], 2), 0);
}

#[test]
fn a_score_does_not_depend_on_the_padding_of_its_batch() {
    let model = tiny();
    let pad = model.tokenizer.pad_id;
    let pairs = demo_pairs(&model, 3);
    let (rm, _) = trainable(&model, 1);
    let rows: Vec<&[u32]> = pairs
        .iter()
        .flat_map(|p| [p.0.as_slice(), p.1.as_slice()])
        .collect();
    let lens: Vec<usize> = rows.iter().map(|r| r.len()).collect();
    assert!(
        lens.iter().any(|&l| l != lens[0]),
        "rows of one length: {lens:?}"
    );
    let batched = f64s(&rm.scores(&rows, pad, Mode::Train).unwrap());
    for (i, r) in rows.iter().enumerate() {
        let alone = f64s(&rm.scores(&[r], pad, Mode::Train).unwrap())[0];
        assert!(
            (alone - batched[i]).abs() <= 1e-5 * (1.0 + alone.abs()),
            "row {i}: alone {alone}, in a padded batch {}",
            batched[i]
        );
    }
    // And the fused no-gradient path scores the same.
    let fast = f64s(&rm.scores(&rows, pad, Mode::Fast).unwrap());
    for (a, b) in fast.iter().zip(&batched) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// The loss tensor's value is TRL's loss of the scores, and its gradient
/// towards the score head is the finite difference of that loss: the score
/// is linear in the head, so a small step in one weight is exact but for
/// rounding.
#[test]
fn the_loss_has_trls_value_and_gradient_and_every_weight_gets_one() {
    let model = tiny();
    let pad = model.tokenizer.pad_id;
    let pairs = demo_pairs(&model, 4);
    let (rm, vars) = trainable(&model, 2);
    let center = Some(0.01);
    let (c, r) = pair_scores(&rm, &pairs, pad);
    let (loss, metrics) = reward_loss_tensor(&c, &r, center).unwrap();
    let want = reward_loss(&f64s(&c), &f64s(&r), center);
    let got = loss
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want.loss).abs() < 1e-6, "{got} vs {}", want.loss);
    assert_eq!(metrics, want.metrics);
    // A fresh head scores near 0: the loss is near ln 2.
    assert!((got - std::f64::consts::LN_2).abs() < 0.05, "{got}");

    let grads = collect_grads(&loss.backward().unwrap(), &vars);
    for (name, v) in &vars {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{name} gets no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
        assert_eq!(g.dims(), v.dims(), "{name}");
    }

    // Finite differences on three score-head weights.
    let head = vars[SCORE_WEIGHT].as_tensor().flatten_all().unwrap();
    let analytic = f64s(&grads[SCORE_WEIGHT].flatten_all().unwrap());
    let base: Vec<f32> = head.to_vec1().unwrap();
    let eps = 1e-2f32;
    for k in [0usize, 17, 200] {
        let loss_at = |delta: f32| {
            let mut w = base.clone();
            w[k] += delta;
            let score = Tensor::from_vec(w, (1, base.len()), head.device()).unwrap();
            let moved = RewardModel {
                decoder: rm.decoder.no_grad().unwrap(),
                score,
            };
            let (c, r) = pair_scores(&moved, &pairs, pad);
            reward_loss(&f64s(&c), &f64s(&r), center).loss
        };
        let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
        assert!(
            (numeric - analytic[k]).abs() <= 2e-3 * analytic[k].abs().max(1e-2),
            "score.weight[{k}]: analytic {} vs numeric {numeric}",
            analytic[k]
        );
    }
}

#[test]
fn adamw_steps_on_demo_pairs_teach_it_to_rank_chosen_first() {
    let model = tiny();
    let pad = model.tokenizer.pad_id;
    let pairs = demo_pairs(&model, 32);
    let (rm, vars) = trainable(&model, 3);
    let mut opt = AdamW::new(&vars, AdamWConfig::default()).unwrap();
    let evaluate = |rm: &RewardModel| {
        let (c, r) = pair_scores(rm, &pairs, pad);
        reward_loss(&f64s(&c), &f64s(&r), None)
    };
    let before = evaluate(&rm);
    for step in 0..24 {
        let batch = &pairs[(step % 4) * 8..(step % 4 + 1) * 8];
        let (c, r) = pair_scores(&rm, batch, pad);
        let (loss, _) = reward_loss_tensor(&c, &r, None).unwrap();
        let grads = collect_grads(&loss.backward().unwrap(), &vars);
        opt.step(&grads, 1e-3, 1.0).unwrap();
    }
    let after = evaluate(&rm);
    eprintln!(
        "loss {:.4} → {:.4}, accuracy {} → {}, margin {:.4} → {:.4}",
        before.loss,
        after.loss,
        before.metrics["accuracy"],
        after.metrics["accuracy"],
        before.metrics["margin"],
        after.metrics["margin"]
    );
    assert!(
        after.loss < before.loss - 0.2,
        "{} → {}",
        before.loss,
        after.loss
    );
    assert!(after.metrics["accuracy"] >= 0.8, "{:?}", after.metrics);
    assert!(after.metrics["margin"] > before.metrics["margin"]);

    // Export, reload, same scores; leave it for transformers to check.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reward-tiny");
    let mut tensors: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let score = tensors.remove(SCORE_WEIGHT).unwrap();
    reward::save(&dir, &model.cfg, &tensors, &score, pad).unwrap();
    let (back, _, back_pad) = reward::load(&dir, &candle_core::Device::Cpu).unwrap();
    assert_eq!(back_pad, pad);
    let rows: Vec<Vec<u32>> = pairs[..4]
        .iter()
        .flat_map(|p| [p.0.clone(), p.1.clone()])
        .collect();
    let alone = |m: &RewardModel| -> Vec<f64> {
        rows.iter()
            .map(|r| f64s(&m.scores(&[r.as_slice()], pad, Mode::Fast).unwrap())[0])
            .collect()
    };
    let ours = alone(&rm);
    assert_eq!(alone(&back), ours, "the saved model scores differently");
    std::fs::write(dir.join("rows.json"), serde_json::to_vec(&rows).unwrap()).unwrap();
    std::fs::write(
        dir.join("driftui_scores.json"),
        serde_json::to_vec(&ours).unwrap(),
    )
    .unwrap();
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reward")
}

/// transformers' own reward model (LlamaForSequenceClassification, rope θ
/// written the transformers-5 way) scores the same in driftui, padded batch
/// and fused path included.
#[test]
fn scores_equal_transformers_on_its_own_reward_model() {
    let dev = candle_core::Device::Cpu;
    let (rm, cfg, pad) = reward::load(&fixture_dir(), &dev).unwrap();
    assert_eq!(cfg.rope_theta, 500.0, "rope_parameters.rope_theta");
    assert_eq!(pad, 0);
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("scores.json")).unwrap())
            .unwrap();
    let rows: Vec<Vec<u32>> = serde_json::from_value(f["rows"].clone()).unwrap();
    let want: Vec<f64> = serde_json::from_value(f["scores"].clone()).unwrap();
    let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
    for mode in [Mode::Train, Mode::Fast] {
        let got = f64s(&rm.scores(&refs, pad, mode).unwrap());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-5,
                "{mode:?} row {i}: driftui {g} vs transformers {w}"
            );
        }
    }

    // Saved in transformers' layout and loaded back: the same scores.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reward-fixture-copy");
    let mut w = driftui::model::TensorMap::load_safetensors(
        &[fixture_dir().join("model.safetensors")],
        &dev,
        candle_core::DType::F32,
    )
    .unwrap();
    w.tensors.remove(SCORE_WEIGHT);
    reward::save(&out, &cfg, &w.tensors, &rm.score, pad).unwrap();
    let (back, _, _) = reward::load(&out, &dev).unwrap();
    assert_eq!(
        f64s(&back.scores(&refs, pad, Mode::Train).unwrap()),
        f64s(&rm.scores(&refs, pad, Mode::Train).unwrap())
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(c["id2label"].as_object().unwrap().len(), 1);
    assert_eq!(c["rope_theta"], 500.0);
}

#[test]
fn a_classifier_with_two_labels_is_not_a_reward_model() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reward-two-labels");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap())
            .unwrap();
    c["id2label"] = serde_json::json!({"0": "NEG", "1": "POS"});
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let err = reward::load(&dir, &candle_core::Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("one label") && err.contains("config.json"),
        "{err}"
    );
}
