//! The fused CPU kernels against the plain candle ops they replace (values
//! and gradients), against central finite differences, and for determinism
//! across thread counts; and the whole decoder's gradients with and without
//! them.

use candle_core::{DType, Device, Tensor, Var, D};
use driftui::data::{SeqBatch, TokenSeq};
use driftui::model::fused::{self, ChunkPlan};
use driftui::model::seq_logps;
use driftui::model::weights::{expected_shapes, TensorMap};
use driftui::model::{lora, Architecture, Decoder, ForwardOptions, LoadOptions, Mode, ModelConfig};
use driftui::recipe::LoraConfig;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

pub(crate) fn rand_tensor(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The f32 bit patterns of a tensor, for comparisons that must be exact.
pub(crate) fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let d: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let s: f32 = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    d / s.max(1e-12)
}

/// Gradients of Σ f(inputs) ⊙ r with respect to each input.
fn grads_of(
    f: &dyn Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    r: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let out = ts.iter().map(|t| g.get(t).unwrap().clone()).collect();
    (y.detach(), out)
}

/// Fused and reference agree in value and every gradient.
fn agree(
    name: &str,
    fused_f: &dyn Fn(&[Tensor]) -> Tensor,
    reference: &dyn Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    tol: f32,
) {
    let r = rand_tensor(fused_f(inputs).dims(), 1.0, 99);
    let (yf, gf) = grads_of(fused_f, inputs, &r);
    let (yr, gr) = grads_of(reference, inputs, &r);
    let d = max_rel(&yf, &yr);
    assert!(d <= tol, "{name}: value differs by {d}");
    for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
        let d = max_rel(a, b);
        assert!(d <= tol, "{name}: gradient of input {i} differs by {d}");
    }
}

/// Central finite differences of Σ f ⊙ r at a few coordinates of each input.
fn finite_differences(name: &str, f: &dyn Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) {
    let r = rand_tensor(f(inputs).dims(), 1.0, 7);
    let (_, grads) = grads_of(f, inputs, &r);
    let loss = |xs: &[Tensor]| -> f64 {
        (f(xs) * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for (i, x) in inputs.iter().enumerate() {
        let flat: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let g: Vec<f32> = grads[i].flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..6 {
            let k = rng.random_range(0..flat.len());
            let eps = 1e-2f32;
            let shifted = |delta: f32| {
                let mut v = flat.clone();
                v[k] += delta;
                let mut xs = inputs.to_vec();
                xs[i] = Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap();
                loss(&xs)
            };
            let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps as f64);
            let err = (fd - g[k] as f64).abs();
            assert!(
                err <= 2e-2 * (1.0 + fd.abs()),
                "{name}: input {i}[{k}]: analytic {} vs finite difference {fd}",
                g[k]
            );
        }
    }
}

/// log p(target) per row through candle's plain ops: the whole logits
/// `h Wᵀ`, log-softmax, gather.
fn plain_logprobs(h: &Tensor, w: &Tensor, targets: &Tensor) -> Tensor {
    let logits = h.matmul(&w.t().unwrap()).unwrap();
    candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .gather(&targets.unsqueeze(1).unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
}

fn slow_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let d = x.dim(D::Minus1).unwrap();
    let cos = Tensor::cat(&[cos, cos], D::Minus1).unwrap();
    let sin = Tensor::cat(&[sin, sin], D::Minus1).unwrap();
    let x1 = x.narrow(D::Minus1, 0, d / 2).unwrap();
    let x2 = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
    let rot = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
    (x.broadcast_mul(&cos).unwrap() + rot.broadcast_mul(&sin).unwrap()).unwrap()
}

#[test]
fn kernels_match_candle_ops_and_finite_differences() {
    // RMSNorm, rows of 48 (blocks of 32 rows and a ragged last block).
    let x = rand_tensor(&[3, 25, 48], 2.0, 1);
    let w = (rand_tensor(&[48], 0.3, 2) + 1.0).unwrap();
    let f = |a: &[Tensor]| fused::rms_norm(&a[0], &a[1], 1e-5).unwrap();
    let s = |a: &[Tensor]| candle_nn::ops::rms_norm_slow(&a[0], &a[1], 1e-5).unwrap();
    agree("rms_norm", &f, &s, &[x.clone(), w.clone()], 2e-5);
    finite_differences("rms_norm", &f, &[x, w]);

    // RoPE with (t, d/2) and (b, t, d/2) tables.
    let x = rand_tensor(&[2, 3, 7, 16], 1.0, 3);
    let ang = rand_tensor(&[7, 8], 3.0, 4);
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    let f = |a: &[Tensor]| fused::rope(&a[0], &cos, &sin).unwrap();
    let s = |a: &[Tensor]| {
        slow_rope(
            &a[0],
            &cos.unsqueeze(0).unwrap().unsqueeze(0).unwrap(),
            &sin.unsqueeze(0).unwrap().unsqueeze(0).unwrap(),
        )
    };
    agree("rope", &f, &s, std::slice::from_ref(&x), 1e-6);
    finite_differences("rope", &f, std::slice::from_ref(&x));
    let angb = rand_tensor(&[2, 7, 8], 3.0, 5);
    let (cosb, sinb) = (angb.cos().unwrap(), angb.sin().unwrap());
    let f = |a: &[Tensor]| fused::rope(&a[0], &cosb, &sinb).unwrap();
    let s = |a: &[Tensor]| {
        slow_rope(
            &a[0],
            &cosb.unsqueeze(1).unwrap(),
            &sinb.unsqueeze(1).unwrap(),
        )
    };
    agree("rope (batched tables)", &f, &s, &[x], 1e-6);

    // Softmax, plain and causal (offset 0 and 2), over (b, h, t, tk).
    let x = rand_tensor(&[2, 3, 5, 5], 3.0, 6);
    let f = |a: &[Tensor]| fused::softmax_last_dim(&a[0], None).unwrap();
    let s = |a: &[Tensor]| candle_nn::ops::softmax(&a[0], D::Minus1).unwrap();
    agree("softmax", &f, &s, std::slice::from_ref(&x), 1e-5);
    finite_differences("softmax", &f, std::slice::from_ref(&x));
    for offset in [0usize, 2] {
        let t = 5 - offset;
        let x = rand_tensor(&[2, 3, t, 5], 3.0, 8 + offset as u64);
        let mask = driftui::model::decoder::causal_bias(t, offset, &Device::Cpu).unwrap();
        let f = move |a: &[Tensor]| fused::softmax_last_dim(&a[0], Some(offset)).unwrap();
        let m = mask.clone();
        let s = move |a: &[Tensor]| {
            candle_nn::ops::softmax(&a[0].broadcast_add(&m).unwrap(), D::Minus1).unwrap()
        };
        agree("causal softmax", &f, &s, std::slice::from_ref(&x), 1e-5);
        finite_differences("causal softmax", &f, &[x]);
    }

    // Scaled causal softmax (attention's 1/√d folded in).
    let x = rand_tensor(&[2, 4, 6], 3.0, 30);
    let mask = driftui::model::decoder::causal_bias(4, 2, &Device::Cpu).unwrap();
    let f = |a: &[Tensor]| fused::scaled_softmax_last_dim(&a[0], 0.125, Some(2)).unwrap();
    let s = |a: &[Tensor]| {
        candle_nn::ops::softmax(
            &(&a[0] * 0.125).unwrap().broadcast_add(&mask).unwrap(),
            D::Minus1,
        )
        .unwrap()
    };
    agree(
        "scaled causal softmax",
        &f,
        &s,
        std::slice::from_ref(&x),
        1e-5,
    );
    finite_differences("scaled causal softmax", &f, &[x]);

    // SwiGLU.
    let g = rand_tensor(&[4, 33], 4.0, 10);
    let u = rand_tensor(&[4, 33], 2.0, 11);
    let f = |a: &[Tensor]| fused::swiglu(&a[0], &a[1]).unwrap();
    let s = |a: &[Tensor]| (candle_nn::ops::silu(&a[0]).unwrap() * &a[1]).unwrap();
    agree("swiglu", &f, &s, &[g.clone(), u.clone()], 1e-5);
    finite_differences("swiglu", &f, &[g, u]);

    // Linear.
    let x = rand_tensor(&[9, 12], 1.0, 12);
    let w = rand_tensor(&[7, 12], 0.5, 13);
    let f = |a: &[Tensor]| fused::linear(&a[0], &a[1]).unwrap();
    let s = |a: &[Tensor]| a[0].matmul(&a[1].t().unwrap()).unwrap();
    agree("linear", &f, &s, &[x.clone(), w.clone()], 1e-6);
    finite_differences("linear", &f, &[x.clone(), w.clone()]);
    // A frozen weight gets no gradient (and costs no matmul).
    let xv = Var::from_tensor(&x).unwrap();
    let y = fused::linear(xv.as_tensor(), &w).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&w).is_none());
    assert!(g.get(xv.as_tensor()).is_some());

    // Vocabulary log-probs: one chunk, three chunks kept, three recomputed.
    let h = rand_tensor(&[10, 12], 1.0, 14);
    let w = rand_tensor(&[31, 12], 1.0, 15);
    let tgt = Tensor::new(&[3u32, 0, 30, 7, 7, 12, 1, 29, 5, 18], &Device::Cpu).unwrap();
    let s = |a: &[Tensor]| plain_logprobs(&a[0], &a[1], &tgt);
    for plan in [
        ChunkPlan {
            rows: 64,
            keep_floats: usize::MAX,
        },
        ChunkPlan {
            rows: 4,
            keep_floats: usize::MAX,
        },
        ChunkPlan {
            rows: 4,
            keep_floats: 0,
        },
    ] {
        let t2 = tgt.clone();
        let f = move |a: &[Tensor]| {
            fused::token_logprobs_with(&a[0], &a[1], &t2, plan)
                .unwrap()
                .narrow(1, 0, 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        };
        agree("token_logprobs", &f, &s, &[h.clone(), w.clone()], 1e-5);
        finite_differences("token_logprobs", &f, &[h.clone(), w.clone()]);
        // The projection frozen (LoRA's): h's gradient is formed in the
        // forward, (onehot − softmax) W per row, and scaled in the backward.
        let (t3, w3) = (tgt.clone(), w.clone());
        let f = move |a: &[Tensor]| {
            fused::token_logprobs_with(&a[0], &w3, &t3, plan)
                .unwrap()
                .narrow(1, 0, 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        };
        let s_frozen = |a: &[Tensor]| s(&[a[0].clone(), w.clone()]);
        agree(
            "token_logprobs, W frozen",
            &f,
            &s_frozen,
            std::slice::from_ref(&h),
            1e-5,
        );
        finite_differences("token_logprobs, W frozen", &f, std::slice::from_ref(&h));
    }
    let out = fused::token_logprobs(&h, &w, &tgt).unwrap();
    let logits = h.matmul(&w.t().unwrap()).unwrap();
    let mean = logits.mean(D::Minus1).unwrap();
    assert!(max_rel(&out.narrow(1, 1, 1).unwrap().squeeze(1).unwrap(), &mean) < 1e-5);
    let argmax = logits
        .argmax(D::Minus1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert_eq!(
        out.narrow(1, 2, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        argmax.to_vec1::<f32>().unwrap()
    );
}

/// The vocabulary log-probs with a frozen projection (LoRA's) at SmolLM2's
/// shapes: the gradient reaching h is formed chunk by chunk in the forward
/// (two chunks of 341 rows here) and must equal the plain candle path's
/// (full logits, log-softmax, gather) within 1e-5.
#[test]
fn frozen_projection_log_prob_gradients_equal_the_plain_path_at_smollm2_shapes() {
    let (n, hidden, vocab) = (400, 576, 49_152);
    let h = rand_tensor(&[n, hidden], 1.0, 21);
    let w = rand_tensor(&[vocab, hidden], 0.1, 22);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    let tgt: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab as u32)).collect();
    let tgt = Tensor::new(tgt.as_slice(), &Device::Cpu).unwrap();
    let (t1, w1) = (tgt.clone(), w.clone());
    let f = move |a: &[Tensor]| {
        fused::token_logprobs(&a[0], &w1, &t1)
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
    };
    let s = |a: &[Tensor]| plain_logprobs(&a[0], &w, &tgt);
    agree(
        "token_logprobs at SmolLM2's vocabulary, W frozen",
        &f,
        &s,
        &[h],
        1e-5,
    );
}

fn config(arch: Architecture, tie: bool, bias: bool) -> ModelConfig {
    ModelConfig {
        architecture: arch,
        vocab_size: 97,
        hidden_size: 48,
        intermediate_size: 80,
        num_hidden_layers: 2,
        num_attention_heads: 6,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: tie,
        attention_bias: bias,
        bos_token_id: None,
        pad_token_id: None,
        eos_token_ids: vec![1],
    }
}

fn weights(cfg: &ModelConfig, seed: u64) -> TensorMap {
    let mut map = TensorMap::new("test");
    for (i, (name, shape)) in expected_shapes(cfg).into_iter().enumerate() {
        let s = 1.5 / (*shape.last().unwrap() as f32).sqrt();
        let mut t = rand_tensor(&shape, s, seed * 1000 + i as u64);
        if name.ends_with("norm.weight") {
            t = (t + 1.0).unwrap();
        }
        map.tensors.insert(name, t);
    }
    map
}

fn batch(vocab: usize) -> SeqBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let seqs: Vec<TokenSeq> = (0..3)
        .map(|r| {
            let n = 7 + 3 * r;
            TokenSeq {
                ids: (0..n).map(|_| rng.random_range(0..vocab as u32)).collect(),
                trained: (0..n).map(|i| i >= 2).collect(),
            }
        })
        .collect();
    let refs: Vec<&TokenSeq> = seqs.iter().collect();
    SeqBatch::new(&refs, 0, &Device::Cpu).unwrap()
}

/// The kernels a build runs follow its `avx512` feature and the CPU: with
/// the feature, AVX-512 wherever the CPU has it; without it (the build
/// `.ci/run` tests the AVX2 kernels with), AVX2 even on an AVX-512 CPU, and
/// the run's log says so there. Either way a CPU with AVX2 and FMA runs no
/// portable kernel.
#[test]
fn the_kernels_follow_the_build_and_the_cpu() {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let expected = match (cfg!(feature = "avx512") && avx512 && avx2, avx2) {
            (true, _) => "AVX-512",
            (false, true) => "AVX2",
            (false, false) => "portable",
        };
        assert_eq!(driftui::model::streamed::matrix_kernels(), expected);
        let warning = fused::cpu_kernel_warning();
        if avx2 && avx512 && !cfg!(feature = "avx512") {
            let w = warning.expect("an AVX-512 CPU in a build without its kernels");
            assert!(w.contains("no AVX-512 kernels"), "{w}");
        } else if avx2 {
            assert_eq!(warning, None);
        } else {
            let w = warning.expect("a CPU without AVX2 and FMA");
            assert!(w.contains("gemm's portable kernels"), "{w}");
        }
    }
}

/// W (out, in) as the panels a decoder keeps.
fn panels_of(w: &Tensor) -> driftui::model::streamed::Panels {
    driftui::model::streamed::Panels::of_weight(
        &w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        w.dims2().unwrap(),
    )
}

/// A decoder that keeps its frozen weights as panels
/// (`keep_transposed_weights`, model::streamed) scores the same bits as one
/// that does not: wherever `transposed_product_is_exact` lets a product
/// read the panels (SmolLM2's layer shapes at 2, 40, 321 and 328 rows, cut
/// for 1, 2, 3 and 16 threads; ragged widths, several of gemm's depth
/// blocks, both kernels) it equals gemm's product from W, and so do the
/// vocabulary statistics (a ragged last chunk of one row falls back to W),
/// whole no-grad passes of a tied and an untied decoder with biases, and
/// the logits of one and five tokens. (On an AVX-512 machine the AVX2
/// kernel runs with the AVX-512 gemm's depth blocks; the AVX2 gemm's own,
/// from its 16 × 6 tile, are compared on an AVX2 machine and in a build
/// without the `avx512` feature, which `.ci/run` tests.)

#[test]
fn transposed_frozen_weights_give_the_same_bits() {
    // gemm's one-row path and its path for at most 16 × 16 elements are
    // picked per block: the rule must see the blocks.
    assert!(!fused::transposed_product_is_exact((2, 1536, 576), 16));
    assert!(!fused::transposed_product_is_exact((321, 192, 576), 16));
    assert!(!fused::transposed_product_is_exact((1, 1536, 576), 1));
    let mut exact = 0;
    for (i, (input, out)) in [(576, 1536), (1536, 576), (576, 192)]
        .into_iter()
        .enumerate()
    {
        let w = rand_tensor(&[out, input], 0.05, 30 + i as u64);
        let panels = panels_of(&w);
        for rows in [2, 40, 321, 328] {
            let x = rand_tensor(&[rows, input], 1.0, 40 + rows as u64);
            for threads in [1, 2, 3, 16] {
                if !fused::transposed_product_is_exact((rows, out, input), threads) {
                    continue;
                }
                exact += 1;
                let plain = fused::product_on(&x, false, &w, true, threads).unwrap();
                let from_t = fused::linear_transposed_on(&x, &panels, threads).unwrap();
                assert!(
                    bits(&plain) == bits(&from_t),
                    "{rows} × {input} → {out} on {threads} threads"
                );
            }
        }
    }
    // On x86-64 with FMA (every machine this project runs on); elsewhere no
    // copy is used and the rule refuses everything.
    if driftui::model::streamed::available() {
        assert!(exact >= 40, "only {exact} cases took the transposed path");
    }
    // Shapes beyond SmolLM2's: widths that end in a part of a panel, depths
    // of several of gemm's blocks along k (its rule for blocks of at most
    // 64 × 64, k.min(512), and kernel_params' for larger ones), row counts
    // of every remainder of the AVX-512 kernel's 8-row tiles (and most of
    // the AVX2 kernel's 6-row ones), panel counts of each remainder of its
    // 3-panel tiles.
    let mut extra = 0;
    for (rows, input, out) in [
        (40, 1536, 64),
        (7, 1300, 50),
        (41, 1000, 100),
        (13, 2500, 200),
        (65, 700, 33),
        (3, 600, 120),
        (100, 3000, 72),
        (14, 800, 40),
        (10, 900, 90),
    ] {
        let w = rand_tensor(&[out, input], 0.05, (rows * out) as u64);
        let x = rand_tensor(&[rows, input], 1.0, (rows + input) as u64);
        let panels = panels_of(&w);
        for threads in [1, 2] {
            if !fused::transposed_product_is_exact((rows, out, input), threads) {
                continue;
            }
            extra += 1;
            let plain = fused::product_on(&x, false, &w, true, threads).unwrap();
            // Both kernels where the CPU has AVX-512 (the AVX2 one with the
            // AVX-512 gemm's blocks: the same chains, so the same bits).
            for avx2 in [false, true] {
                driftui::model::streamed::use_avx2_kernel(avx2);
                let from_t = fused::linear_transposed_on(&x, &panels, threads).unwrap();
                driftui::model::streamed::use_avx2_kernel(false);
                assert!(
                    bits(&plain) == bits(&from_t),
                    "{rows} × {input} → {out} on {threads} threads (AVX2 kernel: {avx2})"
                );
            }
        }
    }
    if driftui::model::streamed::available() {
        assert!(
            extra >= 12,
            "only {extra} of the other shapes took the panels"
        );
    }
    let x = rand_tensor(&[40, 576], 1.0, 49);
    let w = rand_tensor(&[1536, 576], 0.05, 30);
    if fused::transposed_product_is_exact((40, 1536, 576), candle_core::utils::get_num_threads()) {
        assert!(
            bits(&fused::linear(&x, &w).unwrap())
                == bits(&fused::linear_transposed(&x, &panels_of(&w)).unwrap())
        );
    }

    // The vocabulary: a chunk of 341 rows from the copy, a last one of 1
    // from W.
    let e = rand_tensor(&[49_152, 576], 0.05, 50);
    let h = rand_tensor(&[342, 576], 1.0, 51);
    let targets = Tensor::new(
        (0..342u32).map(|i| i * 131).collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap();
    let cache = fused::TransposedWeights::default();
    let plain = fused::token_logprobs_frozen(&h, &e, None, &targets).unwrap();
    let from_t = fused::token_logprobs_frozen(&h, &e, Some(&cache), &targets).unwrap();
    // Copies are made on x86-64 with FMA and without MKL (every machine
    // this project is measured on); elsewhere none, and the same bits.
    let copies = driftui::model::streamed::available() && driftui::model::blas::active().is_none();
    assert_eq!(cache.len(), usize::from(copies), "the vocabulary's copy");
    assert!(bits(&plain) == bits(&from_t), "vocabulary statistics");

    for (arch, tie, bias) in [
        (Architecture::Llama, true, false),
        (Architecture::Qwen2, false, true),
    ] {
        let cfg = config(arch, tie, bias);
        let plain = Decoder::from_weights(&cfg, &mut weights(&cfg, 5)).unwrap();
        let mut kept = Decoder::from_weights(&cfg, &mut weights(&cfg, 5)).unwrap();
        kept.keep_transposed_weights();
        let b = batch(cfg.vocab_size);
        for pass in 0..2 {
            // The second pass reads the copies the first one made.
            let want = seq_logps(&plain, &b, Mode::Fast).unwrap();
            let got = seq_logps(&kept, &b, Mode::Fast).unwrap();
            assert!(
                bits(&want.tokens) == bits(&got.tokens),
                "{arch:?}: log-probs"
            );
            assert_eq!(want.entropy, got.entropy, "{arch:?}: entropy");
            if pass == 0 && copies {
                assert!(kept.transposed_weights() > 0, "{arch:?}: no copy was made");
            }
        }
        // Whole logits of one token and of five (generation's shapes).
        for len in [1u32, 5] {
            let ids: Vec<u32> = (0..len).map(|i| 3 + 11 * i).collect();
            let ids = Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let want = plain
                .forward(&ids, Mode::Fast, ForwardOptions::default())
                .unwrap();
            let got = kept
                .forward(&ids, Mode::Fast, ForwardOptions::default())
                .unwrap();
            assert!(bits(&want) == bits(&got), "{arch:?}: logits of {len}");
        }
    }
}

/// Loss and gradients of every variable, fused or not.
fn decoder_grads(
    decoder: &Decoder,
    vars: &BTreeMap<String, Var>,
    b: &SeqBatch,
) -> (f32, BTreeMap<String, Tensor>) {
    let lp = seq_logps(decoder, b, Mode::Train).unwrap();
    let loss = lp.tokens.mean_all().unwrap().neg().unwrap();
    let g = loss.backward().unwrap();
    let grads = vars
        .iter()
        .map(|(n, v)| (n.clone(), g.get(v.as_tensor()).unwrap().clone()))
        .collect();
    (loss.to_scalar().unwrap(), grads)
}

#[test]
fn decoder_gradients_with_fused_kernels_equal_the_plain_ops() {
    for (arch, tie, bias) in [
        (Architecture::Llama, true, false),
        (Architecture::Llama, false, false),
        (Architecture::Qwen3, false, false),
        (Architecture::Qwen2, true, true),
    ] {
        let cfg = config(arch, tie, bias);
        let w = weights(&cfg, 3);
        let mut vars = BTreeMap::new();
        let mut tm = TensorMap::new("vars");
        for (n, t) in &w.tensors {
            let v = Var::from_tensor(t).unwrap();
            tm.tensors.insert(n.clone(), v.as_tensor().clone());
            vars.insert(n.clone(), v);
        }
        let mut decoder = Decoder::from_weights(&cfg, &mut tm).unwrap();
        let b = batch(cfg.vocab_size);
        let (lf, gf) = decoder_grads(&decoder, &vars, &b);
        decoder.set_fused(false);
        let (ls, gs) = decoder_grads(&decoder, &vars, &b);
        assert!(
            (lf - ls).abs() <= 1e-5 * ls.abs(),
            "{arch:?}: loss {lf} vs {ls}"
        );
        for (name, g) in &gs {
            let d = max_rel(&gf[name], g);
            assert!(d <= 1e-4, "{arch:?} {name}: {d}");
        }
    }
}

#[test]
fn lora_gradients_with_fused_kernels_equal_the_plain_ops() {
    let model = driftui::model::load_model("builtin:micro", &LoadOptions::default()).unwrap();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["all-linear".into()],
    };
    let build = || {
        let (decoder, vars) = lora::attach(&model, &cfg, 2, None).unwrap();
        // Move B off zero so A has gradients too.
        for (n, v) in &vars {
            if n.contains("lora_B") {
                v.set(&rand_tensor(v.as_tensor().dims(), 0.05, n.len() as u64))
                    .unwrap();
            }
        }
        (decoder, vars)
    };
    let (mut decoder, vars) = build();
    let b = batch(model.cfg.vocab_size);
    let (lf, gf) = decoder_grads(&decoder, &vars, &b);
    // attach keeps the frozen base's panels (they fit): the adapted layers'
    // forward and the head's logits read them, with gemm's bits.
    if driftui::model::streamed::available() && driftui::model::blas::active().is_none() {
        assert!(
            decoder.transposed_weights() > 0,
            "the LoRA step read no panels"
        );
    }
    let (mut gemm_only, gemm_vars) = build();
    gemm_only.forget_transposed_weights();
    let (lg, gg) = decoder_grads(&gemm_only, &gemm_vars, &b);
    assert_eq!(
        lf.to_bits(),
        lg.to_bits(),
        "loss with panels {lf}, without {lg}"
    );
    for (name, g) in &gg {
        assert!(bits(&gf[name]) == bits(g), "{name} differs with panels");
    }
    decoder.set_fused(false);
    let (_, gs) = decoder_grads(&decoder, &vars, &b);
    for (name, g) in &gs {
        let d = max_rel(&gf[name], g);
        assert!(d <= 1e-4, "{name}: {d}");
    }
}

/// The LoRA layer's forward from W's panels gives the same bits as from W
/// (gemm), value and every gradient, at SmolLM2-135M's shapes of a 1 × 128
/// step and a ragged one.
#[test]
fn lora_linear_from_panels_gives_the_same_bits() {
    let mut cases = 0;
    for (rows, input, out, seed) in [
        (128usize, 576usize, 1536usize, 60u64),
        (128, 576, 192, 61),
        (128, 1536, 576, 62),
        (40, 576, 576, 63),
        (37, 300, 100, 64),
    ] {
        let threads = candle_core::utils::get_num_threads();
        if !fused::transposed_product_is_exact((rows, out, input), threads) {
            continue;
        }
        cases += 1;
        let x = rand_tensor(&[rows, input], 1.0, seed);
        let w = rand_tensor(&[out, input], 0.05, seed + 1);
        let a = rand_tensor(&[16, input], 0.1, seed + 2);
        let b = rand_tensor(&[out, 16], 0.1, seed + 3);
        let panels = std::sync::Arc::new(panels_of(&w));
        let r = rand_tensor(&[rows, out], 1.0, seed + 4);
        let run = |p: Option<std::sync::Arc<driftui::model::streamed::Panels>>| {
            let f = |t: &[Tensor]| {
                fused::lora_linear(&t[0], &w, p.clone(), &t[1], &t[2], 2.0, None).unwrap()
            };
            grads_of(&f, &[x.clone(), a.clone(), b.clone()], &r)
        };
        let (y0, g0) = run(None);
        let (y1, g1) = run(Some(panels));
        assert!(bits(&y0) == bits(&y1), "{rows} × {input} → {out}: value");
        for (i, (p, q)) in g0.iter().zip(&g1).enumerate() {
            assert!(bits(p) == bits(q), "{rows} × {input} → {out}: gradient {i}");
        }
    }
    if driftui::model::streamed::available() {
        assert!(cases >= 4, "only {cases} shapes took the panels");
    }
    // Panels of another weight's shape are not read: the layer uses W.
    let w = rand_tensor(&[64, 48], 0.1, 70);
    let x = rand_tensor(&[20, 48], 1.0, 71);
    let (a, b) = (
        rand_tensor(&[2, 48], 0.1, 72),
        rand_tensor(&[64, 2], 0.1, 73),
    );
    let other = std::sync::Arc::new(panels_of(&rand_tensor(&[32, 48], 0.1, 74)));
    let from_w = fused::lora_linear(&x, &w, None, &a, &b, 1.0, None).unwrap();
    let other = fused::lora_linear(&x, &w, Some(other), &a, &b, 1.0, None).unwrap();
    assert!(
        bits(&from_w) == bits(&other),
        "panels of another shape were read"
    );
}

#[test]
fn fused_gradients_do_not_depend_on_the_thread_count() {
    let cfg = config(Architecture::Llama, true, false);
    let w = weights(&cfg, 4);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut vars = BTreeMap::new();
            let mut tm = TensorMap::new("vars");
            for (n, t) in &w.tensors {
                let v = Var::from_tensor(t).unwrap();
                tm.tensors.insert(n.clone(), v.as_tensor().clone());
                vars.insert(n.clone(), v);
            }
            let decoder = Decoder::from_weights(&cfg, &mut tm).unwrap();
            // Long enough rows for several blocks per kernel.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let seqs: Vec<TokenSeq> = (0..4)
                .map(|_| TokenSeq {
                    ids: (0..40).map(|_| rng.random_range(0..97)).collect(),
                    trained: vec![true; 40],
                })
                .collect();
            let refs: Vec<&TokenSeq> = seqs.iter().collect();
            let b = SeqBatch::new(&refs, 0, &Device::Cpu).unwrap();
            decoder_grads(&decoder, &vars, &b)
        })
    };
    let (l1, g1) = run(1);
    let (l3, g3) = run(3);
    assert_eq!(l1.to_bits(), l3.to_bits());
    for (n, g) in &g1 {
        let a: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = g3[n].flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n} differs between 1 and 3 threads"
        );
    }
}

/// `fused::product` calls gemm as candle's matmul does, only without the
/// zero-filled output: the same bits, at SmolLM2-135M's own shapes (a
/// 1 × 128 step's MLP products forward and backward, and a vocabulary
/// chunk), in every transposition the decoder uses.
#[test]
fn product_equals_candles_matmul_bit_for_bit_at_model_shapes() {
    let x = rand_tensor(&[128, 576], 1.0, 20);
    let w = rand_tensor(&[1536, 576], 0.05, 21);
    let g = rand_tensor(&[128, 1536], 1.0, 22);
    let e = rand_tensor(&[4096, 576], 0.05, 23);
    let h = x.narrow(0, 32, 64).unwrap(); // a row chunk at an offset
    let cases: [(&str, Tensor, Tensor); 4] = [
        (
            "x Wᵀ",
            fused::product(&x, false, &w, true).unwrap(),
            x.matmul(&w.t().unwrap()).unwrap(),
        ),
        (
            "grad W",
            fused::product(&g, false, &w, false).unwrap(),
            g.matmul(&w).unwrap(),
        ),
        (
            "gradᵀ x",
            fused::product(&g, true, &x, false).unwrap(),
            g.t().unwrap().matmul(&x).unwrap(),
        ),
        (
            "chunk Eᵀ",
            fused::product(&h, false, &e, true).unwrap(),
            h.matmul(&e.t().unwrap()).unwrap(),
        ),
    ];
    for (name, ours, candle) in &cases {
        assert_eq!(ours.dims(), candle.dims(), "{name}");
        assert!(bits(ours) == bits(candle), "{name}: bits differ");
    }
    // Cut into blocks for 1 to 5 threads (along the rows for gradᵀ x,
    // along the columns for the others): still the same bits.
    let operands = [
        (&x, false, &w, true),
        (&g, false, &w, false),
        (&g, true, &x, false),
        (&h, false, &e, true),
    ];
    for ((a, ta, b, tb), (name, _, candle)) in operands.into_iter().zip(&cases) {
        for threads in 1..=5 {
            let ours = fused::product_on(a, ta, b, tb, threads).unwrap();
            assert!(
                bits(&ours) == bits(candle),
                "{name} on {threads} threads: bits differ"
            );
        }
    }
    // Shapes that do not chain are an error, not a panic.
    assert!(fused::product(&x, false, &w, false).is_err());
}

/// The fused LoRA layer, `x Wᵀ + s (m ⊙ x) Aᵀ Bᵀ` with W frozen, against the
/// plain candle formula: value and the gradients of x, A and B, with and
/// without a dropout mask, at a small shape (with finite differences) and at
/// SmolLM2-135M's MLP shape with rank 16.
#[test]
fn lora_linear_matches_the_plain_formula() {
    for (rows, input, out, r, seed) in [
        (9usize, 12usize, 7usize, 3usize, 30u64),
        (128, 576, 1536, 16, 40),
    ] {
        let x = rand_tensor(&[rows, input], 1.0, seed);
        let w = rand_tensor(&[out, input], 0.1, seed + 1);
        let a = rand_tensor(&[r, input], 0.1, seed + 2);
        let b = rand_tensor(&[out, r], 0.1, seed + 3);
        let scale = 2.0;
        // Dropout 0.25: kept inputs scaled by 1 / 0.75.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 4);
        let mask: Vec<f32> = (0..rows * input)
            .map(|_| {
                if rng.random::<f32>() < 0.75 {
                    1.0 / 0.75
                } else {
                    0.0
                }
            })
            .collect();
        for mask in [None, Some(mask)] {
            let m = mask.clone();
            let f = |t: &[Tensor]| {
                fused::lora_linear(&t[0], &w, None, &t[1], &t[2], scale, m.clone()).unwrap()
            };
            let mt = mask
                .as_ref()
                .map(|m| Tensor::from_vec(m.clone(), (rows, input), &Device::Cpu).unwrap());
            let s = |t: &[Tensor]| {
                let xd = match &mt {
                    Some(m) => (&t[0] * m).unwrap(),
                    None => t[0].clone(),
                };
                let base = t[0].matmul(&w.t().unwrap()).unwrap();
                let delta = xd
                    .matmul(&t[1].t().unwrap())
                    .unwrap()
                    .matmul(&t[2].t().unwrap())
                    .unwrap();
                (base + (delta * scale).unwrap()).unwrap()
            };
            let inputs = [x.clone(), a.clone(), b.clone()];
            agree("lora linear", &f, &s, &inputs, 1e-5);
            if rows < 16 {
                finite_differences("lora linear", &f, &inputs);
            }
        }
    }
    // A mask of the wrong size is an error.
    let x = rand_tensor(&[2, 3], 1.0, 1);
    let (w, a, b) = (
        rand_tensor(&[4, 3], 1.0, 2),
        rand_tensor(&[1, 3], 1.0, 3),
        rand_tensor(&[4, 1], 1.0, 4),
    );
    assert!(fused::lora_linear(&x, &w, None, &a, &b, 1.0, Some(vec![1.0; 5])).is_err());
}

/// The attention of the decoder's plain path, from candle ops: heads split
/// out, rotated, key/value heads repeated, masked softmax, merged back.
fn plain_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    (hq, hkv, d): (usize, usize, usize),
) -> Tensor {
    let (b, t, _) = q.dims3().unwrap();
    let heads = |x: &Tensor, h: usize| {
        x.reshape((b, t, h, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    // (b, t, d/2) tables broadcast over the heads.
    let (cos, sin) = if cos.rank() == 3 {
        (cos.unsqueeze(1).unwrap(), sin.unsqueeze(1).unwrap())
    } else {
        (cos.clone(), sin.clone())
    };
    let q = slow_rope(&heads(q, hq), &cos, &sin);
    let k = slow_rope(&heads(k, hkv), &cos, &sin);
    let v = heads(v, hkv);
    let rep = hq / hkv;
    let repeat = |x: &Tensor| {
        x.unsqueeze(2)
            .unwrap()
            .broadcast_as((b, hkv, rep, t, d))
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b, hq, t, d))
            .unwrap()
    };
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap();
    let scores = (q.matmul(&repeat(&k).t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
    let p = candle_nn::ops::softmax(&scores.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
    p.matmul(&repeat(&v))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, t, hq * d))
        .unwrap()
}

/// The fused attention op (rotation, grouped heads, scale, causal softmax
/// and both products in one) equals the plain candle path in value and in
/// the gradients of q, k and v, with one position table for all rows and
/// with one per row, at a small shape (and finite differences) and at
/// SmolLM2-135M's (9 heads over 3 key/value heads of 64, 128 tokens).
#[test]
fn causal_attention_matches_the_plain_path() {
    for (b, t, hq, hkv, d, seed) in [
        (2usize, 5usize, 6usize, 2usize, 8usize, 50u64),
        (1, 128, 9, 3, 64, 60),
        (2, 37, 9, 3, 64, 70),
    ] {
        let q = rand_tensor(&[b, t, hq * d], 1.0, seed);
        let k = rand_tensor(&[b, t, hkv * d], 1.0, seed + 1);
        let v = rand_tensor(&[b, t, hkv * d], 1.0, seed + 2);
        // Angles of positions 0..t, and of per-row positions shifted by 3.
        let table = |shift: f32, rows: Option<usize>| {
            let half = d / 2;
            let n = rows.unwrap_or(1);
            let angles: Vec<f32> = (0..n * t * half)
                .map(|i| {
                    let (row, pos, j) = (i / (t * half), (i / half) % t, i % half);
                    let freq = 10_000f32.powf(-((2 * j) as f32) / d as f32);
                    (pos as f32 + shift * row as f32) * freq
                })
                .collect();
            let shape: Vec<usize> = match rows {
                Some(r) => vec![r, t, half],
                None => vec![t, half],
            };
            let a = Tensor::from_vec(angles, shape, &Device::Cpu).unwrap();
            (a.cos().unwrap(), a.sin().unwrap())
        };
        for (cos, sin) in [table(0.0, None), table(3.0, Some(b))] {
            let shape = (hq, hkv, d);
            let f = |x: &[Tensor]| {
                fused::causal_attention(&x[0], &x[1], &x[2], &cos, &sin, shape).unwrap()
            };
            let s = |x: &[Tensor]| plain_attention(&x[0], &x[1], &x[2], &cos, &sin, shape);
            let inputs = [q.clone(), k.clone(), v.clone()];
            agree("causal attention", &f, &s, &inputs, 1e-5);
            if t < 16 {
                finite_differences("causal attention", &f, &inputs);
            }
        }
    }
    // Heads that do not group evenly are an error.
    let x = rand_tensor(&[1, 2, 8], 1.0, 1);
    let (cos, sin) = (rand_tensor(&[2, 2], 1.0, 2), rand_tensor(&[2, 2], 1.0, 3));
    assert!(fused::causal_attention(&x, &x, &x, &cos, &sin, (2, 3, 4)).is_err());
}

/// The element-wise ops that run on rayon's threads instead of candle's
/// one: the residual add and the no-grad silu·up give candle's bits, the
/// add's gradient reaches both sides, and the patched backward's parallel
/// sum of two gradients (64k+ elements) equals candle's add bit for bit.
#[test]
fn parallel_element_wise_ops_give_candles_bits_at_smollm2_shapes() {
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let a = rand_tensor(&[4, 256, 576], 1.0, 31);
    let b = rand_tensor(&[4, 256, 576], 1.0, 32);
    assert_eq!(
        bits(&fused::add(&a, &b).unwrap()),
        bits(&(&a + &b).unwrap())
    );
    let g = rand_tensor(&[4, 256, 1536], 8.0, 33);
    let u = rand_tensor(&[4, 256, 1536], 1.0, 34);
    let plain = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
    assert_eq!(bits(&fused::silu_mul(&g, &u).unwrap()), bits(&plain));
    assert!(
        fused::add(&a, &g).is_err(),
        "shapes that differ are refused"
    );

    // x reaches the loss twice, through the fused add: its gradient is the
    // parallel sum of r·c and r·d.
    let (c, d) = (
        rand_tensor(&[4, 256, 576], 1.0, 35),
        rand_tensor(&[4, 256, 576], 1.0, 36),
    );
    let r = rand_tensor(&[4, 256, 576], 1.0, 37);
    let x = Var::from_tensor(&a).unwrap();
    let y = fused::add(
        &(x.as_tensor() * &c).unwrap(),
        &(x.as_tensor() * &d).unwrap(),
    )
    .unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let want = ((&r * &c).unwrap() + (&r * &d).unwrap()).unwrap();
    assert_eq!(bits(grads.get(x.as_tensor()).unwrap()), bits(&want));
}

/// `n` answers sampled by `d` (the micro model's tokenizer) to one fixed
/// prompt, 12 tokens at most at temperature 1 with `seed`: their ids.
fn sample_answers(
    d: &Decoder,
    model: &driftui::model::LoadedModel,
    n: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    use driftui::model::generate::{generate, SamplingParams};
    let prompt = model.tokenizer.encode("Is a tax on meat fair?").unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        max_tokens: 12,
        seed,
    };
    generate(d, &model.tokenizer, &prompt, n, &params, &mut |_, _| {})
        .unwrap()
        .into_iter()
        .map(|a| a.ids)
        .collect()
}

/// A pass over a LoRA policy (`Decoder::for_inference_pass`, adapters
/// merged) starts with the policy's copies of the frozen tensors the two
/// share (the tied head's among them), hands out those very copies rather
/// than making them again, and samples what the policy samples.
#[test]
fn a_lora_pass_reuses_the_bases_copies() {
    if !(driftui::model::streamed::available() && driftui::model::blas::active().is_none()) {
        return;
    }
    let model = driftui::model::load_model("builtin:micro", &LoadOptions::default()).unwrap();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
    };
    let (policy, vars) = lora::attach(&model, &cfg, 9, None).unwrap();
    // Adapters away from zero, so the merged weights differ from the base.
    for (n, v) in &vars {
        let t = v.as_tensor();
        v.set(&(t + rand_tensor(t.dims(), 0.2, n.len() as u64)).unwrap())
            .unwrap();
    }
    let sample = |d: &Decoder| sample_answers(d, &model, 4, 3);
    // The policy's own sampling makes its copies of the base.
    let direct = sample(&policy);
    let base_copies = policy.transposed_weights();
    assert!(base_copies > 0, "the LoRA policy kept no copy");
    let pass = policy.for_inference_pass().unwrap().expect("a CPU pass");
    assert_eq!(pass.transposed_weights(), base_copies, "not seeded");
    let through = sample(&pass);
    assert_eq!(direct, through, "the pass samples other answers");
    // It made copies of what the base's cache lacked (the merged q and v
    // projections among them).
    assert!(pass.transposed_weights() > base_copies);
    // The seeded copies are the base's own, not made again: a cache seeded
    // from another hands out the very same panels.
    let w = rand_tensor(&[96, 64], 0.1, 11);
    let base = fused::TransposedWeights::default();
    let made = base.for_rows_count(8, &w).unwrap().unwrap();
    let seeded = fused::TransposedWeights::seeded_from(&base);
    assert!(seeded.holds(&w));
    let again = seeded.for_rows_count(8, &w).unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&made, &again), "a copy made again");
    assert!(!seeded.holds(&rand_tensor(&[96, 64], 0.1, 12)));
}

/// A pass for probing or rollouts (`Decoder::for_inference_pass`) over a
/// full fine-tune's variables reads panel copies of them and samples the
/// same answers as the trained decoder itself; after the variables change,
/// a new pass (as each probe and each rollout batch makes) samples what the
/// changed decoder samples: its copies are of the new weights.
#[test]
fn an_inference_pass_samples_the_same_answers_through_panels() {
    let model = driftui::model::load_model("builtin:micro", &LoadOptions::default()).unwrap();
    let mut tm = TensorMap::new("vars");
    let mut vars = BTreeMap::new();
    for (n, w) in &model.weights.tensors {
        let v = Var::from_tensor(w).unwrap();
        tm.tensors.insert(n.clone(), v.as_tensor().clone());
        vars.insert(n.clone(), v);
    }
    let policy = Decoder::from_weights(&model.cfg, &mut tm).unwrap();
    let sample = |d: &Decoder| sample_answers(d, &model, 8, 5);
    let panels_expected =
        driftui::model::streamed::available() && driftui::model::blas::active().is_none();
    let mut before: Option<Vec<Vec<u32>>> = None;
    for round in 0..2 {
        let pass = policy.for_inference_pass().unwrap().expect("a CPU pass");
        let (direct, through) = (sample(&policy), sample(&pass));
        if let Some(b) = &before {
            assert_ne!(b, &direct, "the change to the weights changed no answer");
        }
        assert!(
            direct.iter().map(Vec::len).sum::<usize>() > 8,
            "too few tokens sampled to compare"
        );
        assert_eq!(direct, through, "round {round}: other answers");
        if panels_expected {
            assert!(pass.transposed_weights() > 0, "round {round}: no copy read");
        }
        before = Some(direct);
        // A training step's worth of change to every weight.
        for (n, v) in &vars {
            let t = v.as_tensor();
            let noise = rand_tensor(t.dims(), 0.05, n.len() as u64 + 7);
            v.set(&(t + noise).unwrap()).unwrap();
        }
    }
}
