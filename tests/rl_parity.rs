//! Reward-model, PPO and GRPO formulas against TRL's own code on fixed
//! tensors: `tests/fixtures/trl/rl.json` (TRL 1.16: `RewardTrainer`,
//! `GRPOTrainer`, made by `scripts/reference/trl_rl.py`) and
//! `tests/fixtures/trl/ppo.json` (TRL 1.12, the last with `PPOTrainer`,
//! made by `scripts/reference/trl_ppo.py`). Losses, gradients, advantages
//! and every logged metric that is a function of these inputs.

use driftui::train::rl::{
    grpo_advantages, grpo_loss, ppo_loss, ppo_rollout_metrics, ppo_targets, reward_loss, GrpoLoss,
    GrpoMicroBatch, GrpoSettings, KlEstimator, PpoMicroBatch, PpoRollouts, PpoSettings, PpoStats,
    ScaleRewards,
};
use serde_json::Value;
use std::collections::BTreeMap;

fn fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trl")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn grid(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().flat_map(f64s).collect()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: driftui {got} vs TRL {want}"
    );
}

fn close_all(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        close(&format!("{what}[{i}]"), *g, *w, tol);
    }
}

/// Every metric TRL logged, except those named in `skip`, is logged by
/// driftui with the same value.
fn same_metrics(case: &str, ours: &BTreeMap<String, f64>, trl: &Value, skip: &[&str], tol: f64) {
    let mut n = 0;
    for (k, v) in trl.as_object().unwrap() {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let got = *ours
            .get(k)
            .unwrap_or_else(|| panic!("{case}: driftui does not log {k}"));
        close(&format!("{case} {k}"), got, v.as_f64().unwrap(), tol);
        n += 1;
    }
    // SAPO with β = 0 logs one (entropy); none means the fixture lost them.
    assert!(n >= 1, "{case}: no metrics compared");
}

#[test]
fn reward_model_loss_gradients_and_metrics_equal_trl() {
    let f = fixture("rl.json");
    for (name, c) in f["reward"].as_object().unwrap() {
        let out = reward_loss(
            &f64s(&c["chosen"]),
            &f64s(&c["rejected"]),
            c["center_rewards_coefficient"].as_f64(),
        );
        close(name, out.loss, c["loss"].as_f64().unwrap(), 1e-12);
        close_all(name, &out.d_chosen, &f64s(&c["d_chosen"]), 1e-12);
        close_all(name, &out.d_rejected, &f64s(&c["d_rejected"]), 1e-12);
        same_metrics(name, &out.metrics, &c["metrics"], &[], 1e-12);
    }
}

#[test]
fn grpo_advantages_and_reward_metrics_equal_trl() {
    let f = fixture("rl.json");
    for (name, c) in f["grpo_advantages"].as_object().unwrap() {
        let scale: ScaleRewards = serde_json::from_value(c["scale_rewards"].clone()).unwrap();
        let rewards = f64s(&c["rewards"]);
        let g = c["num_generations"].as_u64().unwrap() as usize;
        let (adv, m) = grpo_advantages(&rewards, g, scale);
        close_all(name, &adv, &f64s(&c["advantages"]), 1e-12);
        same_metrics(
            name,
            &m,
            &c["metrics"],
            // Completion and per-function metrics: tests/rl_rollouts.rs.
            &[
                "completions/clipped_ratio",
                "completions/max_length",
                "completions/max_terminated_length",
                "completions/mean_length",
                "completions/mean_terminated_length",
                "completions/min_length",
                "completions/min_terminated_length",
                "num_tokens",
                "rewards/judge/mean",
                "rewards/judge/std",
            ],
            1e-7,
        );
    }
}

#[test]
fn grpo_losses_gradients_and_metrics_equal_trl_for_every_loss_type() {
    let f = fixture("rl.json");
    let mut types = std::collections::BTreeSet::new();
    for (name, c) in f["grpo_loss"].as_object().unwrap() {
        let cfg = &c["config"];
        let loss_type: GrpoLoss = serde_json::from_value(cfg["loss_type"].clone()).unwrap();
        types.insert(format!("{loss_type:?}"));
        let s = GrpoSettings {
            beta: cfg["beta"].as_f64().unwrap(),
            epsilon_low: cfg["epsilon"].as_f64().unwrap(),
            epsilon_high: cfg["epsilon_high"].as_f64().unwrap(),
            max_completion_length: cfg["max_completion_length"].as_u64().unwrap() as usize,
            loss_type,
            ..Default::default()
        };
        let lp = grid(&c["logprobs"]);
        let width = c["logprobs"][0].as_array().unwrap().len();
        let old = (!c["old_logprobs"].is_null()).then(|| grid(&c["old_logprobs"]));
        let rf = (!c["ref_logprobs"].is_null()).then(|| grid(&c["ref_logprobs"]));
        let mask: Vec<bool> = grid(&c["mask"]).iter().map(|&m| m == 1.0).collect();
        let out = grpo_loss(
            &GrpoMicroBatch {
                width,
                logprobs: &lp,
                old_logprobs: old.as_deref(),
                ref_logprobs: rf.as_deref(),
                entropies: &grid(&c["entropies"]),
                mask: &mask,
                advantages: &f64s(&c["advantages"]),
                step_tokens: c["num_items_in_batch"].as_f64().unwrap() as usize,
                grad_accum: c["gradient_accumulation_steps"].as_u64().unwrap() as usize,
            },
            &s,
        );
        close(name, out.loss, c["loss"].as_f64().unwrap(), 1e-12);
        close_all(name, &out.d_logprobs, &grid(&c["d_logprobs"]), 1e-12);
        // Clip fractions are float32 means in TRL.
        same_metrics(name, &out.metrics, &c["metrics"], &[], 1e-7);
        // And nothing TRL does not log.
        for k in out.metrics.keys() {
            assert!(
                c["metrics"].get(k).is_some(),
                "{name}: TRL does not log {k}"
            );
        }
    }
    assert_eq!(types.len(), 7, "{types:?}");
    // Every ratio on a clip bound (on-policy, ε = 0): min() splits the
    // gradient and torch's clamp passes none at a number bound.
    for name in ["grpo_tie_at_clip_bounds", "dapo_tie_at_clip_bounds"] {
        assert!(
            f["grpo_loss"].get(name).is_some(),
            "the fixture lacks {name}"
        );
    }
}

fn ppo_settings(cfg: &Value) -> PpoSettings {
    let num = |k: &str, d: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(d);
    let d = PpoSettings::default();
    PpoSettings {
        stop_at_eos: cfg.get("stop_token").is_some(),
        missing_eos_penalty: cfg.get("missing_eos_penalty").and_then(Value::as_f64),
        kl_estimator: match cfg.get("kl_estimator").and_then(Value::as_str) {
            Some("k3") => KlEstimator::K3,
            _ => KlEstimator::K1,
        },
        kl_coef: num("kl_coef", d.kl_coef),
        whiten_rewards: cfg.get("whiten_rewards").is_some(),
        gamma: num("gamma", d.gamma),
        lam: num("lam", d.lam),
        cliprange: num("cliprange", d.cliprange),
        cliprange_value: num("cliprange_value", d.cliprange_value),
        vf_coef: num("vf_coef", d.vf_coef),
        num_ppo_epochs: 2,
        ..d
    }
}

#[test]
fn ppo_rewards_gae_whitening_losses_and_metrics_equal_trl() {
    let f = fixture("ppo.json");
    assert_eq!(f["versions"]["trl"], "1.12.0");
    for (name, c) in f["cases"].as_object().unwrap() {
        let s = ppo_settings(&c["config"]);
        let r = &c["rollouts"];
        let (rows, width) = (
            r["rows"].as_u64().unwrap() as usize,
            r["width"].as_u64().unwrap() as usize,
        );
        let eos = r["eos"].as_u64().unwrap();
        let responses: Vec<Vec<u64>> = serde_json::from_value(r["responses"].clone()).unwrap();
        // The missing-EOS penalty, as the trainer applies it to the scores.
        let scores: Vec<f64> = f64s(&r["scores"])
            .iter()
            .zip(&responses)
            .map(
                |(s0, resp)| match (resp.contains(&eos), s.missing_eos_penalty) {
                    (false, Some(p)) => s0 - p,
                    _ => *s0,
                },
            )
            .collect();
        let rollouts = PpoRollouts {
            rows,
            width,
            logprobs: grid(&r["logprobs"]),
            ref_logprobs: grid(&r["ref_logprobs"]),
            values: grid(&r["values"]),
            seq_len: serde_json::from_value(r["seq_len"].clone()).unwrap(),
            scores,
        };
        let t = ppo_targets(&rollouts, &s);
        if let Some(w) = c.get("whitened_rewards") {
            // The fixture holds masked_whiten's output; TRL then zeroes the
            // positions past seq_len + 1, as driftui does.
            let want: Vec<f64> = grid(w)
                .iter()
                .zip(&t.padding_p1)
                .map(|(&x, &p)| if p { 0.0 } else { x })
                .collect();
            close_all(&format!("{name} rewards"), &t.gae_rewards, &want, 1e-12);
        }
        close_all(
            &format!("{name} GAE"),
            &t.gae_advantages,
            &grid(&c["gae_advantages"]),
            1e-12,
        );
        close_all(
            &format!("{name} advantages"),
            &t.advantages,
            &grid(&c["advantages"]),
            1e-12,
        );
        let mut stats = PpoStats::default();
        for mb in c["micro_batches"].as_array().unwrap() {
            let idx: Vec<usize> = serde_json::from_value(mb["rows"].clone()).unwrap();
            let gather = |v: &[f64]| -> Vec<f64> {
                idx.iter()
                    .flat_map(|&i| v[i * width..(i + 1) * width].to_vec())
                    .collect()
            };
            let gather_b = |v: &[bool]| -> Vec<bool> {
                idx.iter()
                    .flat_map(|&i| v[i * width..(i + 1) * width].to_vec())
                    .collect()
            };
            let out = ppo_loss(
                &PpoMicroBatch {
                    width,
                    new_logprobs: &grid(&mb["new_logprobs"]),
                    vpred: &grid(&mb["vpred"]),
                    old_logprobs: &gather(&t.logprobs),
                    advantages: &gather(&t.advantages),
                    returns: &gather(&t.returns),
                    values: &gather(&t.values),
                    padding: &gather_b(&t.padding),
                    padding_p1: &gather_b(&t.padding_p1),
                },
                &s,
            );
            let what = format!("{name} epoch {} rows {idx:?}", mb["epoch"]);
            close(&what, out.loss, mb["loss"].as_f64().unwrap(), 1e-12);
            close_all(&what, &out.d_logprobs, &grid(&mb["d_new_logprobs"]), 1e-12);
            close_all(&what, &out.d_vpred, &grid(&mb["d_vpred"]), 1e-12);
            stats.push(&out, f64::NAN);
        }
        let mut metrics = ppo_rollout_metrics(&rollouts, &t, &s);
        metrics.extend(stats.metrics());
        let eos_tokens = responses.iter().flatten().filter(|&&x| x == eos).count();
        metrics.insert("val/num_eos_tokens".into(), eos_tokens as f64);
        same_metrics(
            name,
            &metrics,
            &c["metrics"],
            // entropy_avg is of the fake model's logits; lr is the schedule's.
            &["policy/entropy_avg", "lr"],
            1e-7,
        );
    }
}
