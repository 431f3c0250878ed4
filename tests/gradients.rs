//! One gradient, every path: the fused CPU kernels and the plain candle
//! path (what CUDA, Metal and half precision run) in f32 against an f64
//! reference, for every objective, full fine-tuning and LoRA, through the
//! trainer's own step code (`train::step`). The f64 reference is itself
//! checked against finite differences of the loss — at a policy equal to
//! its reference, where every DPO margin is exactly 0 (the tie at which
//! driftui's gradient used to double). `tests/trl_parity.rs` does the same
//! on the real SmolLM2 against TRL.

use crate::common;

use candle_core::{DType, Tensor};
use driftui::data::{self, DataKind};
use driftui::model::config::ModelConfig;
use driftui::model::{load_model, Architecture, LoadOptions, LoadedModel};
use driftui::recipe::{LoraConfig, PhaseConfig};
use driftui::train::optim::{AdamW, AdamWConfig};
use driftui::train::phase::{Phase, PhaseData};
use driftui::train::policy::Policy;
use driftui::train::step;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const ALGORITHMS: [&str; 6] = ["sft", "dpo", "kto", "simpo", "cpo", "orpo"];

fn tiny() -> LoadedModel {
    load_model(
        "builtin:tiny",
        &LoadOptions {
            seed: 7,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A phase of `rows` demo rows for `algorithm` (pairs for the preference
/// objectives), batch = all rows.
fn demo_phase(model: &LoadedModel, algorithm: &str, rows: usize, extra: &str) -> Phase {
    let (file, kind) = match algorithm {
        "sft" => ("sft.jsonl", DataKind::Sft),
        "kto" => ("kto.jsonl", DataKind::Kto),
        _ => ("preference.jsonl", DataKind::Preference),
    };
    let examples = data::load_jsonl(&common::assets().join("demo").join(file), kind).unwrap();
    let cfg: PhaseConfig = toml::from_str(&format!(
        "name = \"p\"\nalgorithm = \"{algorithm}\"\ndataset = \"-\"\nsteps = 8\n\
         lr = 1e-3\nschedule = \"constant\"\nbatch_size = {rows}\nmax_len = 64\nshuffle = false\n{extra}"
    ))
    .unwrap();
    let (phase, _) = Phase::from_examples(&cfg, &examples[..rows * 3], model).unwrap();
    let n = phase.data.len().min(rows);
    let data = match phase.data {
        PhaseData::Sft(v) => PhaseData::Sft(v.into_iter().take(n).collect()),
        PhaseData::Pairs(v) => PhaseData::Pairs(v.into_iter().take(n).collect()),
        PhaseData::Kto(v) => PhaseData::Kto(v.into_iter().take(n).collect()),
        PhaseData::Prompts(v) => PhaseData::Prompts(v.into_iter().take(n).collect()),
    };
    Phase::new(&cfg, data)
}

/// LoRA adapters on every projection with A and B both away from zero (so
/// both get gradients), drawn from `seed`.
fn adapters(model: &LoadedModel, rank: usize, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    let dev = candle_core::Device::Cpu;
    let mut d = model.decoder().unwrap();
    for (module, lin) in d.linears_mut() {
        let (o, i) = lin.weight.dims2().unwrap();
        let mut draw =
            |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
        let a = Tensor::from_vec(draw(rank * i, 1.0 / (i as f32).sqrt()), (rank, i), &dev);
        let b = Tensor::from_vec(draw(o * rank, 0.05), (o, rank), &dev);
        out.insert(driftui::model::lora::peft_name(&module, 'A'), a.unwrap());
        out.insert(driftui::model::lora::peft_name(&module, 'B'), b.unwrap());
    }
    out
}

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["all-linear".into()],
    }
}

fn policy(
    model: &LoadedModel,
    dtype: DType,
    fused: bool,
    lora: Option<&BTreeMap<String, Tensor>>,
) -> Policy {
    let cfg = lora_cfg();
    let mut p = common::policy_in(model, dtype, lora.map(|a| (&cfg, a)));
    p.decoder.set_fused(fused);
    p
}

/// Loss and gradients of step 1 (reference = the policy, frozen).
fn step1(p: &Policy, phase: &Phase) -> step::StepGradients {
    let reference = phase
        .objective
        .needs_reference()
        .then(|| p.frozen_copy().unwrap());
    let rows: Vec<usize> = (0..phase.data.len()).collect();
    step::gradients(p, reference.as_ref(), phase, &[(0, rows)], 0, 0, false).unwrap()
}

fn assert_every_tensor_gets_a_gradient(what: &str, p: &Policy, g: &BTreeMap<String, Tensor>) {
    for name in p.vars.keys() {
        let t = g
            .get(name)
            .unwrap_or_else(|| panic!("{what}: {name} got no gradient"));
        assert!(common::l2(t) > 0.0, "{what}: {name}'s gradient is zero");
    }
}

/// Fused f32 and plain f32 gradients equal the f64 reference to 1e-4 on
/// every tensor, for every objective, full and LoRA.
#[test]
fn every_objective_has_one_gradient_on_every_path() {
    let model = tiny();
    let lora = adapters(&model, 4, 11);
    for algorithm in ALGORITHMS {
        let phase = demo_phase(&model, algorithm, 4, "");
        for adapters in [None, Some(&lora)] {
            let what = format!(
                "{algorithm}{}",
                if adapters.is_some() { " lora" } else { "" }
            );
            let reference = policy(&model, DType::F64, false, adapters);
            let g64 = step1(&reference, &phase);
            assert_every_tensor_gets_a_gradient(&what, &reference, &g64.grads);
            for fused in [true, false] {
                let g = step1(&policy(&model, DType::F32, fused, adapters), &phase);
                let path = if fused { "fused" } else { "plain" };
                assert!(
                    (g.loss - g64.loss).abs() <= 1e-5 * g64.loss.abs().max(1.0),
                    "{what} {path}: loss {} vs f64 {}",
                    g.loss,
                    g64.loss
                );
                common::assert_same_gradients(
                    &format!("{what} {path} f32 vs f64"),
                    &g.grads,
                    &g64.grads,
                    1e-4,
                );
            }
        }
    }
}

/// The f64 reference against central finite differences of the step's loss,
/// on the coordinate of largest gradient and a random one of every tensor.
/// At step 1 the DPO policy equals its reference: every margin is exactly
/// 0, where the loss is smooth and its slope σ(0)·β (the old log σ doubled
/// it). KTO is left out: TRL detaches its KL term, which finite differences
/// would move; its gradient is checked against TRL in `tests/objectives.rs`
/// and `tests/trl_parity.rs`.
#[test]
fn the_f64_reference_equals_finite_differences() {
    let model = load_model("builtin:micro", &LoadOptions::default()).unwrap();
    let lora = adapters(&model, 4, 12);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for algorithm in ["sft", "dpo", "simpo", "cpo", "orpo"] {
        let phase = demo_phase(&model, algorithm, 3, "");
        for adapters in [None, Some(&lora)] {
            let p = policy(&model, DType::F64, false, adapters);
            let reference = phase
                .objective
                .needs_reference()
                .then(|| p.frozen_copy().unwrap());
            let rows: Vec<usize> = (0..phase.data.len()).collect();
            let loss_now = || -> f64 {
                step::micro_batch_loss(&p.decoder, reference.as_ref(), &phase, &rows, 0)
                    .unwrap()
                    .out
                    .loss
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let g = step1(&p, &phase).grads;
            for (name, var) in &p.vars {
                let grad: Vec<f64> = g[name].flatten_all().unwrap().to_vec1().unwrap();
                let flat = var.as_tensor().flatten_all().unwrap();
                let mut w: Vec<f64> = flat.to_vec1().unwrap();
                let top = (0..grad.len())
                    .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
                    .unwrap();
                for i in [top, rng.random_range(0..grad.len())] {
                    let h = 1e-5;
                    let w0 = w[i];
                    let mut at = |x: f64| {
                        w[i] = x;
                        let t = Tensor::from_vec(w.clone(), var.as_tensor().shape(), var.device());
                        var.set(&t.unwrap()).unwrap();
                        loss_now()
                    };
                    let fd = (at(w0 + h) - at(w0 - h)) / (2.0 * h);
                    at(w0);
                    assert!(
                        (fd - grad[i]).abs() <= 1e-5 * grad[i].abs() + 1e-9,
                        "{algorithm} {name}[{i}]: gradient {} vs finite differences {fd}",
                        grad[i]
                    );
                }
            }
        }
    }
}

/// Every step's gradient equals the same batch computed fresh (a new
/// policy from copies of the current weights, the same frozen reference):
/// nothing the trainer carries from one step to the next leaks into a
/// gradient. At lr 1e-12 the f32 weights do not move, so DPO's margins stay
/// exactly 0 at every step; the f64 reference (checked by finite
/// differences above) must agree there too.
#[test]
fn every_step_gradient_equals_the_batch_computed_fresh() {
    let model = tiny();
    for (algorithm, lr) in [("dpo", 1e-12), ("dpo", 1e-3), ("kto", 1e-3), ("sft", 1e-3)] {
        let mut phase = demo_phase(&model, algorithm, 6, "");
        phase.cfg.batch_size = 2;
        let p = policy(&model, DType::F32, true, None);
        // Copies: the optimizer updates the variables in place.
        let initial: BTreeMap<String, Tensor> = p
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.copy().unwrap()))
            .collect();
        let reference = phase
            .objective
            .needs_reference()
            .then(|| p.frozen_copy().unwrap());
        let mut opt = AdamW::new(&p.vars, AdamWConfig::default()).unwrap();
        for s in 0..6u64 {
            let rows = vec![(2 * s as usize) % 6, (2 * s as usize + 1) % 6];
            let g = step::gradients(
                &p,
                reference.as_ref(),
                &phase,
                &[(s, rows.clone())],
                0,
                0,
                false,
            )
            .unwrap();
            // Fresh: new decoders over copies of the weights as they stand.
            let now: BTreeMap<String, Tensor> = p
                .tensors()
                .into_iter()
                .map(|(n, t)| (n, t.copy().unwrap()))
                .collect();
            let fresh = common::policy_from(&model.cfg, &now, DType::F32, None);
            let fresh_ref = reference
                .as_ref()
                .map(|_| common::policy_from(&model.cfg, &initial, DType::F32, None).decoder);
            let gf = step::gradients(
                &fresh,
                fresh_ref.as_ref(),
                &phase,
                &[(s, rows.clone())],
                0,
                0,
                false,
            )
            .unwrap();
            assert_eq!(
                g.loss.to_bits(),
                gf.loss.to_bits(),
                "{algorithm} step {s}: loss"
            );
            common::assert_same_gradients(
                &format!("{algorithm} lr {lr} step {s}: carried vs fresh"),
                &g.grads,
                &gf.grads,
                0.0,
            );
            let r64 = reference
                .as_ref()
                .map(|_| common::policy_from(&model.cfg, &initial, DType::F64, None).decoder);
            let g64 = step::gradients(
                &common::policy_from(&model.cfg, &now, DType::F64, None),
                r64.as_ref(),
                &phase,
                &[(s, rows)],
                0,
                0,
                false,
            )
            .unwrap();
            common::assert_same_gradients(
                &format!("{algorithm} lr {lr} step {s}: f32 vs f64"),
                &g.grads,
                &g64.grads,
                1e-4,
            );
            step::update(&mut opt, &g.grads, lr, 1.0).unwrap();
        }
    }
}

/// SmolLM2-135M's shapes (49,152 vocabulary, tied embedding and head, 9
/// query and 3 key/value heads of 64, SwiGLU of 1,536, its pad token) with
/// two layers of random weights: batch sizes 1 to 8 of ragged rows, fused
/// and plain f32 against f64, for a DPO step at the tie and an SFT step.
#[test]
fn batch_sizes_and_row_lengths_at_smollm2_shapes() {
    let cfg = ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 2,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        rope_scaling: None,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(2),
    };
    let weights =
        driftui::model::weights::init_weights(&cfg, 3, &candle_core::Device::Cpu, DType::F32)
            .unwrap()
            .tensors;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for (rows, algorithm) in [(1, "dpo"), (2, "dpo"), (3, "sft"), (5, "dpo"), (8, "sft")] {
        // Ragged rows: prompts of 4–60 tokens with the pad id among them,
        // answers of 1–30.
        fn seq(rng: &mut rand_chacha::ChaCha8Rng, len: usize) -> Vec<u32> {
            (0..len)
                .map(|_| {
                    if rng.random_bool(0.05) {
                        2
                    } else {
                        rng.random_range(3..49152)
                    }
                })
                .collect()
        }
        let mut pcs = Vec::new();
        for _ in 0..rows {
            let prompt = {
                let n = rng.random_range(4..60);
                seq(&mut rng, n)
            };
            let one = |rng: &mut rand_chacha::ChaCha8Rng| {
                let n = rng.random_range(1..30);
                driftui::data::PromptCompletion {
                    prompt: prompt.clone(),
                    completion: seq(rng, n),
                }
            };
            let (c, r) = (one(&mut rng), one(&mut rng));
            pcs.push((c, r));
        }
        let data = match algorithm {
            "sft" => PhaseData::Sft(
                pcs.iter()
                    .map(|(c, _)| {
                        c.to_seq(1024, driftui::data::Cut::Sequence(Default::default()))
                            .0
                    })
                    .collect(),
            ),
            _ => PhaseData::Pairs(pcs),
        };
        let pc: PhaseConfig = toml::from_str(&format!(
            "name = \"p\"\nalgorithm = \"{algorithm}\"\ndataset = \"-\"\nsteps = 1\nbatch_size = {rows}\n"
        ))
        .unwrap();
        let phase = Phase::new(&pc, data);
        let g64 = step1(
            &common::policy_from(&cfg, &weights, DType::F64, None),
            &phase,
        );
        for fused in [true, false] {
            let mut p = common::policy_from(&cfg, &weights, DType::F32, None);
            p.decoder.set_fused(fused);
            let g = step1(&p, &phase);
            common::assert_same_gradients(
                &format!("{algorithm} × {rows} rows, fused {fused}"),
                &g.grads,
                &g64.grads,
                1e-4,
            );
        }
    }
}
