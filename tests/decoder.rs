//! Our decoder against candle-transformers' Llama and Qwen3 (an independent
//! implementation of the same architectures), and its gradients.

use crate::common;

use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use common::max_diff;
use driftui::data::{SeqBatch, TokenSeq};
use driftui::model::decoder::causal_bias;
use driftui::model::seq_logps;
use driftui::model::weights::{expected_shapes, TensorMap};
use driftui::model::{Architecture, Decoder, ForwardOptions, KvCache, Mode, ModelConfig};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

fn config(arch: Architecture, seed: u64) -> ModelConfig {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let heads = [2, 4, 6][rng.random_range(0..3)];
    let kv = [1, 2][rng.random_range(0..2)];
    let heads = heads / kv * kv;
    let head_dim = [8, 16][rng.random_range(0..2)];
    let hidden = heads * head_dim;
    let llama3 = arch == Architecture::Llama && rng.random_bool(0.5);
    ModelConfig {
        architecture: arch,
        vocab_size: rng.random_range(50..120),
        hidden_size: hidden,
        intermediate_size: rng.random_range(20..90),
        num_hidden_layers: rng.random_range(1..4),
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        rms_norm_eps: 1e-5,
        rope_theta: [10_000.0, 500_000.0][rng.random_range(0..2)],
        rope_scaling: llama3.then_some(driftui::model::config::RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        }),
        max_position_embeddings: 64,
        tie_word_embeddings: rng.random_bool(0.5),
        attention_bias: false,
        bos_token_id: None,
        pad_token_id: None,
        eos_token_ids: vec![1],
    }
}

/// Weights with enough spread that a wrong op shows in the logits.
fn weights(cfg: &ModelConfig, seed: u64) -> TensorMap {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut map = TensorMap::new("test");
    for (name, shape) in expected_shapes(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + rng.random_range(-0.3..0.3)).collect()
        } else {
            let s = 1.0 / (*shape.last().unwrap() as f32).sqrt();
            (0..n)
                .map(|_| rng.random_range(-2.0 * s..2.0 * s))
                .collect()
        };
        map.tensors.insert(
            name,
            Tensor::from_vec(data, shape.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    map
}

fn ids(cfg: &ModelConfig, b: usize, t: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<u32> = (0..b * t)
        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
        .collect();
    Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
}

fn reference_logits(cfg: &ModelConfig, w: &TensorMap, input: &Tensor) -> Tensor {
    let tensors: HashMap<String, Tensor> = w.tensors.clone().into_iter().collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    match cfg.architecture {
        Architecture::Llama => {
            use candle_transformers::models::llama;
            let lc: llama::LlamaConfig = serde_json::from_value(cfg.to_hf_json()).unwrap();
            let c = lc.into_config(false);
            let model = llama::Llama::load(vb, &c).unwrap();
            let mut cache = llama::Cache::new(false, DType::F32, &c, &Device::Cpu).unwrap();
            model.forward(input, 0, &mut cache).unwrap()
        }
        Architecture::Qwen3 => {
            use candle_transformers::models::qwen3;
            let mut j = cfg.to_hf_json();
            j["sliding_window"] = serde_json::Value::Null;
            j["max_window_layers"] = serde_json::json!(cfg.num_hidden_layers);
            j["use_sliding_window"] = serde_json::json!(false);
            let qc: qwen3::Config = serde_json::from_value(j).unwrap();
            let mut model = qwen3::ModelForCausalLM::new(&qc, vb).unwrap();
            model.forward(input, 0).unwrap().squeeze(1).unwrap()
        }
        Architecture::Qwen2 => unreachable!(),
    }
}

#[test]
fn logits_match_candle_transformers_llama_and_qwen3() {
    let mut checked = 0;
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        for seed in 0..6u64 {
            let cfg = config(arch, seed * 31 + arch as u64);
            let w = weights(&cfg, seed);
            let decoder = Decoder::from_weights(&cfg, &mut w.clone()).unwrap();
            let t = 5 + seed as usize * 3;
            let input = ids(&cfg, 2, t, seed + 100);
            let expected = reference_logits(&cfg, &w, &input);
            for mode in [Mode::Train, Mode::Fast] {
                let ours = decoder
                    .forward(&input, mode, ForwardOptions::default())
                    .unwrap();
                let last = ours.i((.., t - 1, ..)).unwrap();
                let d = max_diff(&last, &expected);
                let scale: f32 = expected
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert!(scale > 0.5, "logits too small to test anything: {scale}");
                assert!(
                    d <= 1e-4,
                    "{arch:?} seed {seed} {mode:?}: max |Δ| = {d} (cfg {cfg:?})"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn kv_cache_and_left_padding_give_the_full_forward_logits() {
    let cfg = config(Architecture::Qwen3, 5);
    let w = weights(&cfg, 5);
    let decoder = Decoder::from_weights(&cfg, &mut w.clone()).unwrap();
    let input = ids(&cfg, 1, 9, 3);
    let full = decoder
        .forward(&input, Mode::Fast, ForwardOptions::default())
        .unwrap();

    // Prefill 6 tokens, then 3 more one at a time.
    let mut cache = KvCache::new(cfg.num_hidden_layers);
    let mut parts = vec![decoder
        .forward(
            &input.narrow(1, 0, 6).unwrap(),
            Mode::Fast,
            ForwardOptions {
                cache: Some(&mut cache),
                ..Default::default()
            },
        )
        .unwrap()];
    for i in 6..9 {
        parts.push(
            decoder
                .forward(
                    &input.narrow(1, i, 1).unwrap(),
                    Mode::Fast,
                    ForwardOptions {
                        cache: Some(&mut cache),
                        ..Default::default()
                    },
                )
                .unwrap(),
        );
    }
    let stepped = Tensor::cat(&parts, 1).unwrap();
    assert!(max_diff(&full, &stepped) < 1e-4);

    // The same sequence left-padded by 3, with positions and a padding mask.
    let pad = Tensor::zeros((1, 3), DType::U32, &Device::Cpu).unwrap();
    let padded = Tensor::cat(&[&pad, &input], 1).unwrap();
    let positions = Tensor::new(&[[0u32, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]], &Device::Cpu).unwrap();
    let causal = causal_bias(12, 0, &Device::Cpu).unwrap();
    let keymask: Vec<f32> = (0..12)
        .map(|j| if j < 3 { f32::NEG_INFINITY } else { 0.0 })
        .collect();
    let keymask = Tensor::from_vec(keymask, (1, 1, 1, 12), &Device::Cpu).unwrap();
    // Pad queries still need one key to look at: let them see themselves.
    let eye = Tensor::eye(12, DType::F32, &Device::Cpu)
        .unwrap()
        .ge(0.5)
        .unwrap();
    let bias = causal.broadcast_add(&keymask).unwrap();
    let bias = eye
        .broadcast_as(bias.shape())
        .unwrap()
        .where_cond(&causal.broadcast_as(bias.shape()).unwrap(), &bias)
        .unwrap();
    for mode in [Mode::Train, Mode::Fast] {
        let out = decoder
            .forward(
                &padded,
                mode,
                ForwardOptions {
                    positions: Some(&positions),
                    attn_bias: Some(&bias),
                    cache: None,
                },
            )
            .unwrap();
        let d = max_diff(&out.narrow(1, 3, 9).unwrap(), &full);
        assert!(d < 1e-4, "{mode:?}: {d}");
    }
}

/// A full training forward-backward must reach every weight: candle's fused
/// kernels detach silently, and a head-only model still lowers the loss.
#[test]
fn every_trainable_tensor_gets_a_nonzero_gradient() {
    for (arch, tie, bias) in [
        (Architecture::Llama, true, false),
        (Architecture::Llama, false, false),
        (Architecture::Qwen3, false, false),
        (Architecture::Qwen2, true, true),
    ] {
        let mut cfg = config(
            if arch == Architecture::Qwen2 {
                Architecture::Llama
            } else {
                arch
            },
            11,
        );
        cfg.architecture = arch;
        cfg.tie_word_embeddings = tie;
        cfg.attention_bias = bias;
        cfg.num_hidden_layers = 2;
        let w = weights(&cfg, 3);
        let mut vars = BTreeMap::new();
        let mut tm = TensorMap::new("vars");
        for (n, t) in &w.tensors {
            let v = Var::from_tensor(t).unwrap();
            tm.tensors.insert(n.clone(), v.as_tensor().clone());
            vars.insert(n.clone(), v);
        }
        let decoder = Decoder::from_weights(&cfg, &mut tm).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let seqs: Vec<TokenSeq> = (0..3)
            .map(|r| {
                let n = 6 + r * 2;
                TokenSeq {
                    ids: (0..n)
                        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
                        .collect(),
                    trained: (0..n).map(|i| i >= 2).collect(),
                }
            })
            .collect();
        let refs: Vec<&TokenSeq> = seqs.iter().collect();
        let batch = SeqBatch::new(&refs, 0, &Device::Cpu).unwrap();
        let lp = seq_logps(&decoder, &batch, Mode::Train).unwrap();
        let loss = lp.tokens.mean_all().unwrap().neg().unwrap();
        let grads = loss.backward().unwrap();
        assert_eq!(vars.len(), expected_shapes(&cfg).len());
        for (name, v) in &vars {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{arch:?}: no gradient for {name}"));
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{arch:?}: zero gradient for {name}"
            );
        }
    }
}

/// Sequence scores from `seq_logps` equal log-softmax picked by hand.
#[test]
fn seq_logps_sum_the_trained_targets() {
    let cfg = config(Architecture::Llama, 2);
    let w = weights(&cfg, 2);
    let decoder = Decoder::from_weights(&cfg, &mut w.clone()).unwrap();
    let seq = TokenSeq {
        ids: vec![3, 9, 4, 7, 2],
        trained: vec![false, false, true, false, true],
    };
    let batch = SeqBatch::new(&[&seq], 0, &Device::Cpu).unwrap();
    let lp = seq_logps(&decoder, &batch, Mode::Train).unwrap();
    let input = Tensor::new(&[[3u32, 9, 4, 7]], &Device::Cpu).unwrap();
    let logits = decoder
        .forward(&input, Mode::Train, ForwardOptions::default())
        .unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    // Targets: position 1 predicts 4, position 3 predicts 2.
    let a: f32 = logp.i((0, 1, 4)).unwrap().to_scalar().unwrap();
    let b: f32 = logp.i((0, 3, 2)).unwrap().to_scalar().unwrap();
    let sum: f32 = lp.sums.i(0).unwrap().to_scalar().unwrap();
    assert!((sum - (a + b)).abs() < 1e-5, "{sum} vs {}", a + b);
    assert_eq!(lp.counts, vec![2]);
}
