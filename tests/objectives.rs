//! Objectives against values computed independently by
//! `scripts/reference/objectives.py` (TRL's formulas in plain Python),
//! committed as `tests/fixtures/objectives.json`.

use candle_core::{DType, Device, Tensor};
use driftui::train::objectives::{
    cpo_loss, dpo_loss, kto_loss, orpo_loss, simpo_loss, DpoLoss, LossOut, PairLogps,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/objectives.json")).unwrap()
}

fn t(v: &Value) -> Tensor {
    let xs: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    Tensor::new(xs, &Device::Cpu).unwrap()
}

fn pair(f: &Value, chosen: &str, rejected: &str) -> PairLogps {
    let i = &f["inputs"];
    PairLogps {
        chosen: t(&i[chosen]),
        rejected: t(&i[rejected]),
        chosen_len: t(&i["chosen_len"]),
        rejected_len: t(&i["rejected_len"]),
    }
}

fn check(name: &str, out: &LossOut, expected: &Value) {
    let exp = expected.as_object().unwrap();
    let loss: f64 = out.loss.to_dtype(DType::F64).unwrap().to_scalar().unwrap();
    let want = exp["loss"].as_f64().unwrap();
    assert!(
        (loss - want).abs() < 1e-9 * want.abs().max(1.0),
        "{name}: loss {loss} vs {want}"
    );
    for (k, v) in exp {
        if k == "loss" {
            continue;
        }
        let got = out
            .metrics
            .get(k)
            .unwrap_or_else(|| panic!("{name}: metric {k} missing"));
        let want = v.as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9 * want.abs().max(1.0),
            "{name}: {k} = {got}, expected {want}"
        );
    }
}

#[test]
fn dpo_variants_match_reference() {
    let f = fixture();
    let pol = pair(&f, "policy_chosen", "policy_rejected");
    let reference = pair(&f, "reference_chosen", "reference_rejected");
    for (key, beta, loss, ls) in [
        ("dpo_sigmoid_b0.1", 0.1, DpoLoss::Sigmoid, 0.0),
        ("dpo_sigmoid_b0.5_ls0.2", 0.5, DpoLoss::Sigmoid, 0.2),
        ("dpo_hinge_b0.1", 0.1, DpoLoss::Hinge, 0.0),
        ("dpo_ipo_b0.1", 0.1, DpoLoss::Ipo, 0.0),
        ("dpo_robust_b0.1_ls0.1", 0.1, DpoLoss::Robust, 0.1),
    ] {
        let out = dpo_loss(&pol, &reference, beta, loss, ls).unwrap();
        check(key, &out, &f[key]);
    }
}

#[test]
fn dpo_with_policy_equal_to_reference_is_ln2() {
    let f = fixture();
    let pol = pair(&f, "policy_chosen", "policy_rejected");
    let out = dpo_loss(&pol, &pol, 0.1, DpoLoss::Sigmoid, 0.0).unwrap();
    let loss: f64 = out.loss.to_scalar().unwrap();
    assert_eq!(
        loss,
        f["dpo_policy_equals_reference"]["loss"].as_f64().unwrap()
    );
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-15);
    assert_eq!(out.metrics["rewards/margins"], 0.0);
}

#[test]
fn kto_matches_reference() {
    let f = fixture();
    let i = &f["inputs"];
    let labels: Vec<bool> = i["kto_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    let (p, r) = (t(&i["kto_policy"]), t(&i["kto_reference"]));
    let (pk, rk) = (t(&i["kto_policy_kl"]), t(&i["kto_reference_kl"]));
    let out = kto_loss(&p, &r, &labels, &pk, &rk, 0.1, 1.0, 1.0).unwrap();
    check("kto_b0.1", &out, &f["kto_b0.1"]);
    let out = kto_loss(&p, &r, &labels, &pk, &rk, 0.5, 1.33, 0.75).unwrap();
    check("kto_b0.5_w1.33_0.75", &out, &f["kto_b0.5_w1.33_0.75"]);
    let neg = Tensor::new(vec![-25.0f64; 5], &Device::Cpu).unwrap();
    let neg_ref = Tensor::new(vec![-20.0f64; 5], &Device::Cpu).unwrap();
    let out = kto_loss(&p, &r, &labels, &neg, &neg_ref, 0.1, 1.0, 1.0).unwrap();
    check("kto_b0.1_negative_kl", &out, &f["kto_b0.1_negative_kl"]);
    assert_eq!(out.metrics["kl"], 0.0);
}

#[test]
fn reference_free_objectives_match_reference() {
    let f = fixture();
    let pol = pair(&f, "policy_chosen", "policy_rejected");
    let nll = Tensor::new(f["inputs"]["chosen_nll"].as_f64().unwrap(), &Device::Cpu).unwrap();
    check(
        "simpo_b2_g0.5",
        &simpo_loss(&pol, 2.0, 0.5, 0.0).unwrap(),
        &f["simpo_b2_g0.5"],
    );
    check(
        "cpo_b0.1_a1",
        &cpo_loss(&pol, &nll, 0.1, 1.0, 0.0).unwrap(),
        &f["cpo_b0.1_a1"],
    );
    check(
        "orpo_l0.1",
        &orpo_loss(&pol, &nll, 0.1).unwrap(),
        &f["orpo_l0.1"],
    );
}

/// The DPO loss's gradient with respect to the policy's chosen log-prob is
/// −β·σ(−βΔ)/n (d/dx of −log σ(βx)), checked by hand for one pair.
#[test]
fn dpo_gradient_by_hand() {
    let pc = candle_core::Var::new(&[-10.0f64], &Device::Cpu).unwrap();
    let pol = PairLogps {
        chosen: pc.as_tensor().clone(),
        rejected: Tensor::new(&[-12.0f64], &Device::Cpu).unwrap(),
        chosen_len: Tensor::new(&[1.0f64], &Device::Cpu).unwrap(),
        rejected_len: Tensor::new(&[1.0f64], &Device::Cpu).unwrap(),
    };
    let zero = Tensor::new(&[-11.0f64], &Device::Cpu).unwrap();
    let reference = PairLogps {
        chosen: zero.clone(),
        rejected: zero.clone(),
        chosen_len: pol.chosen_len.clone(),
        rejected_len: pol.rejected_len.clone(),
    };
    let out = dpo_loss(&pol, &reference, 0.1, DpoLoss::Sigmoid, 0.0).unwrap();
    let g = out.loss.backward().unwrap();
    let got: Vec<f64> = g.get(pc.as_tensor()).unwrap().to_vec1().unwrap();
    // Δ = (−10 − −11) − (−12 − −11) = 2; βΔ = 0.2.
    let expected = -0.1 / (1.0 + 0.2f64.exp());
    assert!(
        (got[0] - expected).abs() < 1e-12,
        "{} vs {expected}",
        got[0]
    );
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
        mean_logits: vec![0.0, 0.0],
        accuracy: 0.5,
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
