//! driftui against the real TRL 1.16 on SmolLM2-135M-Instruct:
//! `scripts/reference/trl_end_to_end.py` trained two steps of SFT, DPO, KTO,
//! SimPO, CPO, ORPO and LoRA-DPO on a few rows and recorded the tokens, every
//! logged metric, the pre-clip gradient norm of every parameter and exact
//! gradient coordinates (`tests/fixtures/trl/e2e-*.json`).
//!
//! Two kinds of test:
//! - the trainer's own step (`train::step`) on TRL's token ids, fused CPU
//!   kernels and the plain candle path (the one CUDA, Metal and half
//!   precision take), compared with TRL tensor by tensor, and with each
//!   other on every coordinate;
//! - the whole trainer (`train::run`, a recipe, the events it logs) on the
//!   same rows as text, where driftui's tokens equal TRL's (SFT, DPO, KTO).
//!
//! The GGUF file is fetched by `scripts/fetch-smollm2.sh` (CI runs it); when
//! it is absent these tests say so and check nothing.

use crate::common;

use candle_core::{DType, Tensor};
use driftui::data::{PromptCompletion, TokenSeq};
use driftui::model::LoadedModel;
use driftui::recipe::{LoraConfig, PhaseConfig};
use driftui::train::optim::{AdamW, AdamWConfig};
use driftui::train::phase::{Phase, PhaseData};
use driftui::train::policy::Policy;
use driftui::train::step::{self, StepGradients};
use serde_json::Value;
use std::collections::BTreeMap;

fn fixture(run: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/trl/e2e-{run}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// driftui's algorithm name and its phase keys for a TRL run's config.
fn phase_config(f: &Value, rows: usize) -> PhaseConfig {
    let c = &f["trl_config"];
    let num = |k: &str| c[k].as_f64().unwrap();
    let keys = match f["run"].as_str().unwrap() {
        "sft" => "algorithm = \"sft\"".to_string(),
        "dpo" | "dpo-lora" => format!("algorithm = \"dpo\"\nbeta = {}", num("beta")),
        "kto" => format!(
            "algorithm = \"kto\"\nbeta = {}\ndesirable_weight = {}\nundesirable_weight = {}",
            num("beta"),
            num("desirable_weight"),
            num("undesirable_weight")
        ),
        "simpo" => format!(
            "algorithm = \"simpo\"\nbeta = {}\nsimpo_gamma = {}\ncpo_alpha = {}",
            num("beta"),
            num("simpo_gamma"),
            num("cpo_alpha")
        ),
        "cpo" => format!(
            "algorithm = \"cpo\"\nbeta = {}\ncpo_alpha = {}",
            num("beta"),
            num("cpo_alpha")
        ),
        "orpo" => format!("algorithm = \"orpo\"\nbeta = {}", num("beta")),
        other => panic!("unknown run {other}"),
    };
    let text = format!(
        "name = \"p\"\ndataset = \"unused\"\nsteps = 2\nlr = {}\nschedule = \"constant\"\n\
         batch_size = {rows}\nshuffle = false\nmax_grad_norm = {}\nmax_len = {}\n{keys}\n",
        num("learning_rate"),
        num("max_grad_norm"),
        c["max_length"].as_u64().unwrap()
    );
    toml::from_str(&text).unwrap()
}

/// The phase over TRL's own token ids (CPO, SimPO and ORPO completions end
/// with the extra `<|im_end|>` TRL appends).
fn trl_phase(f: &Value) -> Phase {
    let rows = f["tokens"].as_array().unwrap();
    let trl = |r: &Value, k: &str| ids(&r["trl"][k]);
    let data = match f["run"].as_str().unwrap() {
        "sft" => PhaseData::Sft(
            rows.iter()
                .map(|r| {
                    let labels = r["trl"]["labels"].as_array().unwrap();
                    TokenSeq {
                        ids: trl(r, "input_ids"),
                        trained: labels.iter().map(|l| l.as_i64() != Some(-100)).collect(),
                    }
                })
                .collect(),
        ),
        "kto" => PhaseData::Kto(
            rows.iter()
                .map(|r| {
                    let pc = PromptCompletion {
                        prompt: trl(r, "prompt_ids"),
                        completion: trl(r, "completion_ids"),
                    };
                    (pc, r["trl"]["label"].as_bool().unwrap())
                })
                .collect(),
        ),
        _ => PhaseData::Pairs(
            rows.iter()
                .map(|r| {
                    let pc = |k: &str| PromptCompletion {
                        prompt: trl(r, "prompt_ids"),
                        completion: trl(r, k),
                    };
                    (pc("chosen_ids"), pc("rejected_ids"))
                })
                .collect(),
        ),
    };
    let n = data.len();
    Phase::new(&phase_config(f, n), data)
}

/// The policy TRL trained, its weights in `dtype`: every weight, or LoRA
/// adapters with the fixture's deterministic A (B zero).
fn policy(model: &LoadedModel, f: &Value, dtype: DType, fused: bool) -> Policy {
    let lora = f.get("lora").map(|l| LoraConfig {
        rank: l["r"].as_u64().unwrap() as usize,
        alpha: l["lora_alpha"].as_f64().unwrap(),
        dropout: 0.0,
        targets: vec!["all-linear".into()],
    });
    let adapters = lora.as_ref().map(|cfg| fixture_adapters(model, cfg.rank));
    let mut p = common::policy_in(model, dtype, lora.as_ref().zip(adapters.as_ref()));
    p.decoder.set_fused(fused);
    p
}

/// `A[i, j] = (((7i + 13j + 3·layer + 5p) mod 17) − 8) / 256`, p the
/// projection's index in q, k, v, o, gate, up, down (the fixture's rule).
fn fixture_adapters(model: &LoadedModel, rank: usize) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    let dev = candle_core::Device::Cpu;
    for layer in 0..model.cfg.num_hidden_layers {
        for (p, proj) in driftui::recipe::LORA_TARGETS.iter().enumerate() {
            let module = if p < 4 {
                format!("model.layers.{layer}.self_attn.{proj}")
            } else {
                format!("model.layers.{layer}.mlp.{proj}")
            };
            let w = &model.weights.tensors[&format!("{module}.weight")];
            let (o, i) = w.dims2().unwrap();
            let a: Vec<f32> = (0..rank * i)
                .map(|k| {
                    let (r, c) = (k / i, k % i);
                    ((((7 * r + 13 * c + 3 * layer + 5 * p) % 17) as f32) - 8.0) / 256.0
                })
                .collect();
            out.insert(
                driftui::model::lora::peft_name(&module, 'A'),
                Tensor::from_vec(a, (rank, i), &dev).unwrap(),
            );
            out.insert(
                driftui::model::lora::peft_name(&module, 'B'),
                Tensor::zeros((o, rank), DType::F32, &dev).unwrap(),
            );
        }
    }
    out
}

/// One step as the trainer takes it: gradients over the batch, then the
/// clipped AdamW update. Returns the gradients and the pre-clip norm.
fn take_step(
    policy: &Policy,
    reference: Option<&driftui::model::Decoder>,
    phase: &Phase,
    opt: &mut AdamW,
    step: u64,
) -> (StepGradients, f64) {
    let rows: Vec<usize> = (0..phase.data.len()).collect();
    let g = step::gradients(policy, reference, phase, &[(step, rows)], 2, 0, false).unwrap();
    let norm = step::update(opt, &g.grads, phase.cfg.lr(), phase.cfg.max_grad_norm()).unwrap();
    (g, norm)
}

/// `|got − want| ≤ rel·|want| + abs`.
fn near(got: f64, want: f64, rel: f64, abs: f64) -> bool {
    (got - want).abs() <= rel * want.abs() + abs
}

/// TRL's names of metrics driftui does not log: CPO's and ORPO's
/// `logits/*` average the whole padded logits tensor (prompt and padding
/// positions included), which depends on TRL's padding, not on the model.
fn not_logged(run: &str, key: &str) -> bool {
    matches!(run, "cpo" | "simpo" | "orpo") && key.starts_with("logits/")
        || [
            "epoch",
            "step",
            "learning_rate",
            "loss",
            "grad_norm",
            "num_tokens",
        ]
        .contains(&key)
}

/// driftui's name of a TRL parameter (PEFT's adapter names lack `.default`).
fn our_name(trl: &str) -> String {
    trl.replace(".default.weight", ".weight")
}

fn check_metrics(run: &str, step: usize, want: &Value, got: &StepGradients) {
    let loss = want["loss"].as_f64().unwrap();
    assert!(
        near(got.loss, loss, 1e-4, 0.0),
        "{run} step {step}: loss {} vs TRL {loss}",
        got.loss
    );
    for (k, v) in want.as_object().unwrap() {
        if not_logged(run, k) {
            continue;
        }
        let w = v.as_f64().unwrap();
        let g = *got
            .metrics
            .get(k)
            .unwrap_or_else(|| panic!("{run}: driftui does not log {k}"));
        // An absolute floor for metrics that are (near) zero at step 1.
        assert!(
            near(g, w, 1e-4, 1e-5),
            "{run} step {step}: {k} = {g}, TRL {w}"
        );
    }
}

/// The gradients of step 1 through the trainer's own step code.
fn step1_gradients(policy: &Policy, phase: &Phase) -> StepGradients {
    let reference = phase
        .objective
        .needs_reference()
        .then(|| policy.frozen_copy().unwrap());
    let rows: Vec<usize> = (0..phase.data.len()).collect();
    step::gradients(policy, reference.as_ref(), phase, &[(0, rows)], 2, 0, false).unwrap()
}

/// One run against TRL:
/// - the f64 reference (the plain path in f64, checked against finite
///   differences in `tests/gradients.rs`): the gradient norm of every
///   parameter and TRL's exact coordinates equal TRL's at step 1;
/// - the fused CPU kernels and the plain path in f32: every tensor of their
///   step-1 gradient within 1e-4 (relative) of the f64 reference;
/// - the fused path: loss and every metric equal TRL's at step 1 and, after
///   the clipped AdamW update, at step 2; `grad_norm` within 1e-3 of TRL's.
fn parity(run: &str) {
    let Some(model) = common::smollm2() else {
        return;
    };
    let f = fixture(run);
    let phase = trl_phase(&f);

    // The f64 reference against TRL, tensor by tensor.
    let g64 = step1_gradients(&policy(model, &f, DType::F64, false), &phase).grads;
    let norms = f["step1"]["grad_norms"].as_object().unwrap();
    assert_eq!(norms.len(), g64.len(), "{run}: trainable tensors");
    let mut worst = (0.0f64, String::new());
    let mut total = 0.0;
    for (name, want) in norms {
        let ours = our_name(name);
        let want = want.as_f64().unwrap();
        let got = common::l2(
            g64.get(&ours)
                .unwrap_or_else(|| panic!("{run}: no gradient for {ours}")),
        );
        total += got * got;
        if want > 0.0 && (got - want).abs() / want > worst.0 {
            worst = ((got - want).abs() / want, ours.clone());
        }
        // An absolute floor only for TRL's exact zeros (LoRA's A at step 1).
        assert!(
            near(got, want, 1e-4, 1e-12),
            "{run}: |grad {ours}| = {got}, TRL {want}"
        );
    }
    eprintln!(
        "{run}: f64 reference vs TRL, worst tensor norm: {:.2e} ({})",
        worst.0, worst.1
    );
    let want_norm = f["step1"]["grad_norm_from_parts"].as_f64().unwrap();
    assert!(
        near(total.sqrt(), want_norm, 1e-4, 0.0),
        "{run}: total norm {} vs TRL {want_norm}",
        total.sqrt()
    );
    for (name, coords) in f["step1"]["grad_coords"].as_object().unwrap() {
        let g = &g64[&our_name(name)];
        let scale = common::l2(g) / (g.elem_count() as f64).sqrt();
        for c in coords.as_array().unwrap() {
            let c = c.as_array().unwrap();
            let (idx, want) = c.split_at(c.len() - 1);
            let want = want[0].as_f64().unwrap();
            let mut t = g.clone();
            for i in idx {
                t = t.get(i.as_u64().unwrap() as usize).unwrap();
            }
            let got = t.to_scalar::<f64>().unwrap();
            assert!(
                near(got, want, 1e-3, 1e-3 * scale),
                "{run}: {name}{idx:?} = {got}, TRL {want}"
            );
        }
    }

    // The plain path in f32 (what CUDA, Metal and half precision run).
    let gp = step1_gradients(&policy(model, &f, DType::F32, false), &phase);
    common::assert_same_gradients(&format!("{run} plain f32 vs f64"), &gp.grads, &g64, 1e-4);
    drop(gp);

    // The fused CPU path: the gradient, then two steps against TRL's log.
    let fused = policy(model, &f, DType::F32, true);
    let reference = phase
        .objective
        .needs_reference()
        .then(|| fused.frozen_copy().unwrap());
    let mut opt = AdamW::new(&fused.vars, AdamWConfig::default()).unwrap();
    let (g1, norm1) = take_step(&fused, reference.as_ref(), &phase, &mut opt, 0);
    common::assert_same_gradients(&format!("{run} fused f32 vs f64"), &g1.grads, &g64, 1e-4);
    let s1 = &f["steps"][0];
    check_metrics(run, 1, s1, &g1);
    assert!(
        near(norm1, want_norm, 1e-4, 0.0),
        "{run}: grad_norm {norm1} vs TRL {want_norm}"
    );
    assert!(near(norm1, s1["grad_norm"].as_f64().unwrap(), 1e-3, 0.0));
    if let Some(n) = s1.get("num_tokens") {
        assert_eq!(
            g1.input_tokens as f64,
            n.as_f64().unwrap(),
            "{run}: num_tokens"
        );
    }
    let (g2, norm2) = take_step(&fused, reference.as_ref(), &phase, &mut opt, 1);
    let s2 = &f["steps"][1];
    check_metrics(run, 2, s2, &g2);
    let want2 = s2["grad_norm"].as_f64().unwrap();
    assert!(
        near(norm2, want2, 1e-3, 0.0),
        "{run}: step-2 grad_norm {norm2} vs TRL {want2}"
    );
}

#[test]
fn sft_equals_trl() {
    parity("sft");
}

#[test]
fn dpo_equals_trl() {
    parity("dpo");
}

#[test]
fn kto_equals_trl() {
    parity("kto");
}

#[test]
fn simpo_equals_trl() {
    parity("simpo");
}

#[test]
fn cpo_equals_trl() {
    parity("cpo");
}

#[test]
fn orpo_equals_trl() {
    parity("orpo");
}

#[test]
fn lora_dpo_equals_trl() {
    parity("dpo-lora");
}

/// Per-token log-probabilities over SmolLM2's 49,152-token vocabulary, on
/// one 1×128 sequence: the fused kernel and the plain path within 1e-4 of
/// float64 over the same hidden states (an f32 running sum of the
/// normaliser was 3e-3 off), and the whole f32 model within 1e-4 of the
/// whole model in f64.
#[test]
fn log_probs_over_the_vocabulary_are_within_1e4_of_float64() {
    let Some(model) = common::smollm2() else {
        return;
    };
    let text = std::fs::read_to_string(common::assets().join("demo/sft.jsonl")).unwrap();
    let mut ids = model.tokenizer.encode(&text[..4000]).unwrap();
    ids.truncate(128);
    assert_eq!(ids.len(), 128);
    let seq = TokenSeq {
        ids: ids.clone(),
        trained: vec![true; 128],
    };
    let dev = candle_core::Device::Cpu;
    let batch = driftui::data::SeqBatch::new(&[&seq], 2, &dev).unwrap();
    let score = |dtype: DType, fused: bool| -> Vec<f64> {
        let mut p = common::policy_in(model, dtype, None);
        p.decoder.set_fused(fused);
        let lp = driftui::model::seq_logps(
            &p.decoder.no_grad().unwrap(),
            &batch,
            driftui::model::Mode::Train,
        )
        .unwrap();
        lp.tokens.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    };
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max)
    };
    // The normaliser alone: f32 hidden states, projected and normalised in
    // f64, against the fused kernel and the plain path on the same states.
    let decoder = model.decoder().unwrap();
    let hidden = decoder
        .hidden(
            &batch.input,
            driftui::model::Mode::Train,
            Default::default(),
        )
        .unwrap()
        .squeeze(0)
        .unwrap();
    let w = &model.weights.tensors["model.embed_tokens.weight"];
    let logits64 = hidden
        .to_dtype(DType::F64)
        .unwrap()
        .matmul(&w.to_dtype(DType::F64).unwrap().t().unwrap())
        .unwrap();
    let reference: Vec<f64> = candle_nn::ops::log_softmax(&logits64, candle_core::D::Minus1)
        .unwrap()
        .gather(&batch.targets.unsqueeze(1).unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .to_vec1()
        .unwrap();
    for fused in [true, false] {
        let mut d = model.decoder().unwrap();
        d.set_fused(fused);
        let got: Vec<f64> = d
            .target_logprobs(&hidden, &batch.targets, driftui::model::Mode::Train)
            .unwrap()
            .logp
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let e = max_diff(&got, &reference);
        eprintln!("normaliser, fused {fused}: max |Δ log p| = {e:.2e}");
        assert!(e <= 1e-4, "fused {fused}: {e}");
    }
    // The whole model.
    let r64 = score(DType::F64, false);
    for fused in [true, false] {
        let e = max_diff(&score(DType::F32, fused), &r64);
        eprintln!("whole model, fused {fused}: max |Δ log p| = {e:.2e}");
        assert!(e <= 1e-4, "whole model, fused {fused}: {e}");
    }
}
