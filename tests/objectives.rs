//! Objectives against TRL 1.16's own loss code: `scripts/reference/trl_objectives.py`
//! ran `DPOTrainer._compute_loss`, `KTOTrainer._compute_loss`, `CPOTrainer`
//! (CPO and SimPO) and `ORPOTrainer` on fixed sequence log-probabilities in
//! float64 and recorded the loss, every metric and the gradient with respect
//! to every input (`tests/fixtures/trl/objectives.json`).

use candle_core::{DType, Device, Tensor, Var};
use driftui::train::objectives::{
    cpo_loss, dpo_loss, kto_loss, orpo_loss, simpo_loss, DpoLoss, LossOut, PairLogps,
};
use serde_json::Value;
use std::collections::BTreeMap;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/trl/objectives.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
        x => vec![x.as_f64().unwrap()],
    }
}

/// The inputs of a case as f64 variables, by the fixture's names.
fn vars(inputs: &Value) -> BTreeMap<String, Var> {
    inputs
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.ends_with("len") && *k != "labels")
        .map(|(k, v)| {
            let t = if v.is_array() {
                Tensor::new(floats(v), &Device::Cpu).unwrap()
            } else {
                Tensor::new(v.as_f64().unwrap(), &Device::Cpu).unwrap()
            };
            (k.clone(), Var::from_tensor(&t).unwrap())
        })
        .collect()
}

fn pair(v: &BTreeMap<String, Var>, inputs: &Value, prefix: &str) -> PairLogps {
    let t = |k: &str| v[&format!("{prefix}_{k}")].as_tensor().clone();
    let len = |k: &str| Tensor::new(floats(&inputs[k]), &Device::Cpu).unwrap();
    PairLogps {
        chosen: t("chosen"),
        rejected: t("rejected"),
        chosen_len: len("chosen_len"),
        rejected_len: len("rejected_len"),
    }
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

/// driftui's objective for a TRL case, or `None` for a TRL variant driftui
/// does not offer (CPO's hinge and ipo loss types).
fn driftui_loss(case: &Value, inputs: &Value, v: &BTreeMap<String, Var>) -> Option<LossOut> {
    let cfg = &case["config"];
    let num = |k: &str, d: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(d);
    let beta = num("beta", 0.1);
    let nll = || v["chosen_nll"].as_tensor().clone();
    let out = match case["trainer"].as_str().unwrap() {
        "DPOTrainer" => {
            let lt = match cfg["loss_type"][0].as_str().unwrap() {
                "sigmoid" => DpoLoss::Sigmoid,
                "hinge" => DpoLoss::Hinge,
                "ipo" => DpoLoss::Ipo,
                "robust" => DpoLoss::Robust,
                other => panic!("unexpected DPO loss type {other}"),
            };
            let pol = pair(v, inputs, "policy");
            let reference = pair(v, inputs, "reference");
            dpo_loss(&pol, &reference, beta, lt, num("label_smoothing", 0.0))
        }
        "KTOTrainer" => {
            let labels: Vec<bool> = inputs["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect();
            let t = |k: &str| v[k].as_tensor().clone();
            kto_loss(
                &t("policy"),
                &t("reference"),
                &labels,
                &t("policy_kl"),
                &t("reference_kl"),
                beta,
                num("desirable_weight", 1.0),
                num("undesirable_weight", 1.0),
            )
        }
        "CPOTrainer" => {
            let pol = pair(v, inputs, "policy");
            let (alpha, ls) = (num("cpo_alpha", 1.0), num("label_smoothing", 0.0));
            match cfg["loss_type"].as_str().unwrap() {
                "sigmoid" => cpo_loss(&pol, &nll(), beta, alpha, ls),
                "simpo" => simpo_loss(&pol, &nll(), beta, num("simpo_gamma", 0.5), ls, alpha),
                _ => return None,
            }
        }
        "ORPOTrainer" => orpo_loss(&pair(v, inputs, "policy"), &nll(), beta),
        other => panic!("unexpected trainer {other}"),
    };
    Some(out.unwrap())
}

/// Loss, every metric TRL logs, and d loss / d input for every input, on
/// every case (policy = reference ties and the hinge kink included).
#[test]
fn every_objective_equals_trl_1_16() {
    let f = fixture();
    let mut checked = 0;
    for (name, case) in f["cases"].as_object().unwrap() {
        let inputs = &f["inputs"][case["inputs"].as_str().unwrap()];
        let v = vars(inputs);
        let Some(out) = driftui_loss(case, inputs, &v) else {
            continue;
        };
        // ORPO's TRL code is float32 math.
        let tol = if case["trainer"] == "ORPOTrainer" {
            1e-6
        } else {
            1e-9
        };
        let loss: f64 = out.loss.to_dtype(DType::F64).unwrap().to_scalar().unwrap();
        let want = case["loss"].as_f64().unwrap();
        assert!(close(loss, want, tol), "{name}: loss {loss} vs TRL {want}");
        for (k, want) in case["metrics"].as_object().unwrap() {
            let want = want.as_f64().unwrap();
            let got = *out
                .metrics
                .get(k)
                .unwrap_or_else(|| panic!("{name}: driftui does not log {k}"));
            assert!(close(got, want, tol), "{name}: {k} = {got}, TRL {want}");
        }
        let grads = out.loss.backward().unwrap();
        for (k, want) in case["grad"].as_object().unwrap() {
            let want = floats(want);
            let got: Vec<f64> = match grads.get(v[k].as_tensor()) {
                Some(g) => floats(
                    &serde_json::to_value(g.flatten_all().unwrap().to_vec1::<f64>().unwrap())
                        .unwrap(),
                ),
                None => vec![0.0; want.len()],
            };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    close(*g, *w, tol),
                    "{name}: d loss/d {k}[{i}] = {g}, TRL {w}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 35, "cases checked (39 less CPO hinge and ipo)");
}

/// driftui's opt-in conservative DPO: the label-smoothed sigmoid loss
/// −(1−ε) log σ(βΔ) − ε log σ(−βΔ), by hand for one pair (Δ = 2, β = 0.5,
/// ε = 0.2), while `sigmoid` ignores ε as TRL 1.16 does.
#[test]
fn cdpo_is_the_label_smoothed_sigmoid_and_sigmoid_ignores_smoothing() {
    let t = |x: f64| Tensor::new(&[x], &Device::Cpu).unwrap();
    let one = t(1.0);
    let pol = PairLogps {
        chosen: t(-10.0),
        rejected: t(-12.0),
        chosen_len: one.clone(),
        rejected_len: one.clone(),
    };
    let reference = PairLogps {
        chosen: t(-11.0),
        rejected: t(-11.0),
        chosen_len: one.clone(),
        rejected_len: one,
    };
    let ls = |x: f64| -(1.0 + (-x).exp()).ln();
    let loss = |lt| -> f64 {
        dpo_loss(&pol, &reference, 0.5, lt, 0.2)
            .unwrap()
            .loss
            .to_scalar()
            .unwrap()
    };
    assert!((loss(DpoLoss::Cdpo) - (-(0.8 * ls(1.0)) - 0.2 * ls(-1.0))).abs() < 1e-12);
    assert!((loss(DpoLoss::Sigmoid) + ls(1.0)).abs() < 1e-12);
}

/// SFT loss averaged per token and per sequence, by hand: row 0 has token
/// log-probs −1 and −3, row 1 has −4. Per token: 8/3. Per sequence: (2 + 4)/2.
#[test]
fn sft_loss_token_and_sequence_averages() {
    use driftui::model::SeqLogps;
    use driftui::train::objectives::{sft_loss, LossAverage};
    let lp = SeqLogps {
        tokens: Tensor::new(&[-1.0f64, -3.0, -4.0], &Device::Cpu).unwrap(),
        sums: Tensor::new(&[-4.0f64, -4.0], &Device::Cpu).unwrap(),
        counts: vec![2, 1],
        owner: vec![0, 0, 1],
        trained: vec![true, true, true],
        mean_logit: vec![0.5, 1.5, -2.0],
        top1: vec![true, false, false],
        entropy: vec![1.0, 2.0, 6.0],
    };
    let t: f64 = sft_loss(&lp, LossAverage::Token)
        .unwrap()
        .loss
        .to_scalar()
        .unwrap();
    let s: f64 = sft_loss(&lp, LossAverage::Sequence)
        .unwrap()
        .loss
        .to_scalar()
        .unwrap();
    assert!((t - 8.0 / 3.0).abs() < 1e-12, "{t}");
    assert!((s - 3.0).abs() < 1e-12, "{s}");
    // TRL's token-level metrics: over the 3 completion tokens.
    let m = sft_loss(&lp, LossAverage::Token).unwrap().metrics;
    assert!((m["mean_token_accuracy"] - 1.0 / 3.0).abs() < 1e-12);
    assert!((m["entropy"] - 3.0).abs() < 1e-12);
}

/// d/dx log σ(x) = σ(−x) at the tie and around it, in f64 and f32. At x = 0
/// exactly the old `min(x, 0) − log(1 + e^−|x|)` gave 1.0 under candle's
/// rules (`abs` has gradient +1 at 0): a DPO pair with a zero margin — every
/// pair of a step with policy = reference — counted twice.
#[test]
fn log_sigmoid_derivative_is_exact_at_and_near_zero() {
    use driftui::train::objectives::log_sigmoid;
    let xs = [0.0f64, -0.0, 1e-30, -1e-30, 1.0, -1.0, 50.0, -50.0];
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    for dtype in [DType::F64, DType::F32] {
        let x = candle_core::Var::from_tensor(
            &Tensor::new(&xs[..], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let y = log_sigmoid(x.as_tensor()).unwrap();
        let values: Vec<f64> = y.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f64> = grads
            .get(x.as_tensor())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let want = sigma(-x);
            assert!(
                (g[i] - want).abs() <= 1e-7,
                "{dtype:?}: d/dx log σ({x:e}) = {}, expected σ(−x) = {want}",
                g[i]
            );
            let value = -(1.0 + (-x).exp()).ln();
            assert!(
                (values[i] - value).abs() <= 1e-6 * value.abs().max(1.0),
                "{dtype:?}: log σ({x:e}) = {}, expected {value}",
                values[i]
            );
        }
    }
}

/// relu with PyTorch's derivative: 0 at the kink (candle's says 1).
#[test]
fn relu_derivative_is_zero_at_the_kink() {
    use driftui::train::objectives::relu;
    let x = candle_core::Var::new(&[-1.0f64, 0.0, -0.0, 2.0], &Device::Cpu).unwrap();
    let y = relu(x.as_tensor()).unwrap();
    assert_eq!(y.to_vec1::<f64>().unwrap(), vec![0.0, 0.0, 0.0, 2.0]);
    let g = y.sum_all().unwrap().backward().unwrap();
    let g: Vec<f64> = g.get(x.as_tensor()).unwrap().to_vec1().unwrap();
    assert_eq!(g, vec![0.0, 0.0, 0.0, 1.0]);
}

/// Every pair of a DPO step with policy = reference has a margin of exactly
/// 0; the gradient of the mean loss with respect to each chosen log-prob is
/// then −β·σ(0)/n = −β/(2n), not twice that.
#[test]
fn dpo_gradient_at_zero_margin_is_not_doubled() {
    for loss_type in [DpoLoss::Sigmoid, DpoLoss::Robust] {
        let pc = candle_core::Var::new(&[-10.0f64, -20.0], &Device::Cpu).unwrap();
        let len = Tensor::new(&[1.0f64, 1.0], &Device::Cpu).unwrap();
        let rejected = Tensor::new(&[-12.0f64, -7.0], &Device::Cpu).unwrap();
        let pol = PairLogps {
            chosen: pc.as_tensor().clone(),
            rejected: rejected.clone(),
            chosen_len: len.clone(),
            rejected_len: len.clone(),
        };
        let reference = PairLogps {
            chosen: pc.as_tensor().detach(),
            rejected,
            chosen_len: len.clone(),
            rejected_len: len,
        };
        let out = dpo_loss(&pol, &reference, 0.1, loss_type, 0.0).unwrap();
        let loss: f64 = out.loss.to_scalar().unwrap();
        assert!((loss - std::f64::consts::LN_2).abs() < 1e-15);
        let g = out.loss.backward().unwrap();
        let g: Vec<f64> = g.get(pc.as_tensor()).unwrap().to_vec1().unwrap();
        for x in g {
            assert!((x - (-0.1 / 4.0)).abs() < 1e-15, "{loss_type:?}: {x}");
        }
    }
}
