//! Training throughput on SmolLM2-135M, the same work as
//! `../shared/bench/torch_baseline.py` (so the two can be run side by side):
//! synthetic ids `(i·7919 + salt·104729) % 40000 + 100` over the row-major
//! (batch, seq + 1) grid, loss = mean token cross-entropy over batch × seq,
//! AdamW lr 1e-5, weight decay 0.01. Step-0 losses: 13.7592 at 1 × 128,
//! 13.3469 at 4 × 256 (PyTorch, same dequantised weights).
//!
//!     cargo run --release --example bench_smollm2 -- \
//!         --mode full|lora --batch 1 --seq 128 --steps 4 [--fused off] \
//!         --gguf models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
//!
//! `--random` builds a SmolLM2-135M-shaped model from a seed instead of
//! reading the file (same work, other losses), for machines without the
//! file; `scripts/reference/torch_random_smollm2.py` does the same in PyTorch.
//!
//! `--mode score --batch B --seq LEN [--n 64]`: no-grad scoring, the work of
//! the baseline's `--mode score` — sum log p(target) of N sequences of LEN
//! targets (ids with salt 3) in batches of B, timed per pass over all N
//! (`--steps` passes, the first excluded), through the same path as the
//! value probes and the reference model's log-probs (`seq_logps`, fused
//! no-grad kernels). `--transposed on`: the decoder keeps copies of its
//! frozen weights as panels for products of few rows (model::streamed, the
//! same numbers); `auto` (the default): where they fit, as a probe trace
//! decides; `off`: none. `--streamed off`: products that would read the
//! panels run on gemm (the same numbers).
//!
//! Prints per-step times and a RESULT line with the median step time of the
//! steps after the first, tokens/s and the peak RSS (getrusage).
use anyhow::{bail, Result};
use candle_core::{DType, Device, Var};
use driftui::data::{SeqBatch, TokenSeq};
use driftui::model::seq_logps;
use driftui::model::weights::init_weights;
use driftui::model::{load_model, lora, Architecture, LoadOptions, ModelConfig, TensorMap};
use driftui::model::{Decoder, Mode};
use driftui::recipe::LoraConfig;
use driftui::train::objectives::{sft_loss, LossAverage};
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use std::collections::BTreeMap;
use std::time::Instant;

const USAGE: &str =
    "usage: bench_smollm2 [--mode full|lora|score|matmul|generate|kernels] [--batch B] [--seq T] \
[--steps N] [--rank R] [--n N (score)] [--transposed on|off|auto (score)] [--streamed on|off] \
[--fused off] [--gguf FILE | --random]";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc_rusage = unsafe { std::mem::zeroed() };
    unsafe { getrusage(0, &mut u) };
    let tv = |t: [i64; 2]| t[0] as f64 + t[1] as f64 * 1e-6;
    tv(u.utime) + tv(u.stime)
}

/// The head of Linux's `struct rusage` (x86-64): user and system time.
#[repr(C)]
#[allow(non_camel_case_types)]
struct libc_rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
}

fn peak_rss_mib() -> f64 {
    // /proc/self/status VmHWM: the resident set's high-water mark.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Seconds per call of a product of `flop` FLOP: one warm-up call, then
/// about 20 GFLOP of calls (2 to `max_reps` of them).
fn seconds_per_call(
    flop: f64,
    max_reps: f64,
    f: impl Fn() -> candle_core::Result<()>,
) -> Result<f64> {
    f()?;
    let reps = (20e9 / flop).ceil().clamp(2.0, max_reps) as usize;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// f32 GEMM GFLOP/s through candle at torch_baseline.py's `--mode matmul`
/// shapes (`(x@W^T)` marks a transposed right operand, as in a linear layer).
fn matmul_bench() -> Result<()> {
    use candle_core::Tensor;
    let shapes = [
        (2048, 2048, 2048, false),
        (4096, 4096, 4096, false),
        (1024, 576, 1536, true),
        (1024, 1536, 576, true),
        (1024, 576, 576, true),
        (1024, 576, 49152, true),
    ];
    for (m, k, n, wt) in shapes {
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let w = if wt {
            Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?.t()?
        } else {
            Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?
        };
        let flop = 2.0 * (m * k * n) as f64;
        let el = seconds_per_call(flop, 50.0, || a.matmul(&w).map(drop))?;
        println!(
            "RESULT matmul candle f32 threads={} {m}x{k}x{n}{}: {:.2} ms, {:.1} GFLOP/s",
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
            if wt { " (x@W^T)" } else { "" },
            el * 1e3,
            flop / el / 1e9
        );
    }
    // driftui's own product (fused::product: gemm, or MKL under
    // DRIFTUI_MKL), which every linear layer of training and scoring runs,
    // at the layers' shapes and the vocabulary projection's, for 1024 rows,
    // a scoring batch of 8 × 41 and one sequence's 40 targets.
    for rows in [1024, 328, 40] {
        for (k, n) in [
            (576, 1536),
            (1536, 576),
            (576, 576),
            (576, 192),
            (576, 49152),
        ] {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
            // W^T laid out row-major: gemm from it (it still packs it), for
            // comparison with the panels below.
            let wt = w.t()?.contiguous()?;
            let flop = 2.0 * (rows * k * n) as f64;
            // W as kept panels (Decoder::keep_transposed_weights), where
            // they give gemm's bits.
            let panels = driftui::model::streamed::Panels::of_weight(
                &w.flatten_all()?.to_vec1::<f32>()?,
                (n, k),
            );
            let threads = candle_core::utils::get_num_threads();
            let exact = driftui::model::fused::transposed_product_is_exact((rows, n, k), threads);
            for label in ["x@W^T", "x@(W^T) row-major", "panels"] {
                if label == "panels" && !exact {
                    continue;
                }
                let el = seconds_per_call(flop, 2000.0, || match label {
                    "x@W^T" => driftui::model::fused::product(&x, false, &w, true).map(drop),
                    "panels" => driftui::model::fused::linear_transposed(&x, &panels).map(drop),
                    _ => driftui::model::fused::product(&x, false, &wt, false).map(drop),
                })?;
                println!(
                    "RESULT matmul driftui f32 {rows}x{k}x{n} ({label}): {:.3} ms, {:.1} GFLOP/s",
                    el * 1e3,
                    flop / el / 1e9
                );
            }
        }
    }
    Ok(())
}

/// The baseline's `--mode score`: `passes` timed passes over `n` sequences
/// of `len` targets (`len + 1` ids, salt 3), in batches of `bs`, no grad.
fn score_bench(
    model: &driftui::model::LoadedModel,
    fused: bool,
    transposed: Option<bool>,
    n: usize,
    bs: usize,
    len: usize,
    passes: usize,
) -> Result<()> {
    // auto: the decoder a probe trace scores with.
    let mut decoder = match transposed {
        None => model.scoring_decoder()?,
        Some(on) => {
            let mut d = model.decoder()?;
            if on {
                d.keep_transposed_weights();
            }
            d
        }
    };
    decoder.set_fused(fused);
    let salt = 3u64;
    let seqs: Vec<TokenSeq> = (0..n)
        .map(|r| {
            let ids: Vec<u32> = (0..=len)
                .map(|j| {
                    let i = (r * (len + 1) + j) as u64;
                    ((i * 7919 + salt * 104729) % 40000 + 100) as u32
                })
                .collect();
            let mut trained = vec![true; len + 1];
            trained[0] = false;
            TokenSeq { ids, trained }
        })
        .collect();
    let mut times = Vec::new();
    let mut total = 0.0f64;
    for pass in 0..passes {
        let a = Instant::now();
        total = 0.0;
        for chunk in seqs.chunks(bs) {
            let refs: Vec<&TokenSeq> = chunk.iter().collect();
            let batch = SeqBatch::new(&refs, 0, &Device::Cpu)?;
            let lp = seq_logps(&decoder, &batch, Mode::Fast)?;
            total += lp
                .sums
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        let el = a.elapsed().as_secs_f64();
        println!(
            "driftui score n={n} len={len} batch={bs} pass {pass}: {el:.2}s (sum lp {total:.1})"
        );
        times.push(el);
    }
    let first = times[0];
    let mut warm: Vec<f64> = if times.len() > 1 {
        times[1..].to_vec()
    } else {
        times.clone()
    };
    warm.sort_by(f64::total_cmp);
    let med = warm[warm.len() / 2];
    println!(
        "RESULT driftui score fused={fused} transposed={} ({} copies) threads={} n={n} len={len} batch={bs}: {med:.2}s total median of {} passes excl. first (first {first:.2}s), {:.1} ms/seq, {:.0} tok/s, first pass {:.0} tok/s (sum lp {total:.1}); peak RSS {:.0} MiB",
        match transposed {
            None => "auto",
            Some(true) => "on",
            Some(false) => "off",
        },
        decoder.transposed_weights(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        warm.len(),
        1000.0 * med / n as f64,
        (n * len) as f64 / med,
        (n * len) as f64 / first,
        peak_rss_mib()
    );
    Ok(())
}

/// SmolLM2-135M's shape, as its GGUF metadata gives it.
fn smollm2_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
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
    }
}

/// `--mode generate`: `samples` answers of up to `max_tokens` tokens to one
/// prompt, sampled with the KV cache (model::generate, as a probe's or
/// GRPO's rollouts), `reps` timed times after one warm-up.
fn generate_bench(
    model: &driftui::model::LoadedModel,
    samples: usize,
    max_tokens: usize,
    reps: usize,
) -> Result<()> {
    use driftui::model::generate::{generate, SamplingParams};
    // GENERATE_DECODER=plain: without panel copies; =pass: a fresh
    // Decoder::for_inference_pass per repetition (its copies made inside
    // the timed part), as each in-training probe and rollout batch does.
    let which = std::env::var("GENERATE_DECODER").unwrap_or_default();
    let decoder = match which.as_str() {
        "plain" | "pass" => model.decoder()?,
        _ => model.scoring_decoder()?,
    };
    let prompt = model
        .tokenizer
        .encode("Should cities ban cars from their centres? Answer in one paragraph.")?;
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        max_tokens,
        seed: 7,
    };
    let mut times = Vec::new();
    let mut tokens = 0;
    let mut digest = 0u64;
    for rep in 0..=reps {
        let t0 = Instant::now();
        let pass = if which == "pass" {
            decoder.for_inference_pass()?
        } else {
            None
        };
        let answers = generate(
            pass.as_ref().unwrap_or(&decoder),
            &model.tokenizer,
            &prompt,
            samples,
            &params,
            &mut |_, _| {},
        )?;
        let el = t0.elapsed().as_secs_f64();
        let n: usize = answers.iter().map(|a| a.ids.len()).sum();
        // A digest of the answers: the same ids whatever the speed-ups.
        digest = answers.iter().flat_map(|a| &a.ids).fold(0u64, |h, &id| {
            h.wrapping_mul(1_000_003).wrapping_add(id as u64)
        });
        if rep > 0 {
            times.push(el);
            tokens = n;
        }
        eprintln!("generate rep {rep}: {n} tokens in {el:.2}s");
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "RESULT driftui generate samples={samples} max_tokens={max_tokens} prompt={}: {med:.2}s median of {reps}, {tokens} tokens (ids digest {digest:016x}), {:.1} tok/s",
        prompt.len(),
        tokens as f64 / med
    );
    Ok(())
}

fn main() -> Result<()> {
    // As driftui's binary does (DRIFTUI_PURGE=1 to measure without).
    if std::env::var("DRIFTUI_PURGE").is_err() {
        driftui::model::fused::keep_freed_memory();
    }
    driftui::model::fused::configure_cpu_threads();
    // Which kernels this build runs here (vs-torch.sh prints the line).
    println!(
        "driftui kernels: {} ({}){}",
        driftui::model::streamed::matrix_kernels(),
        if driftui::model::streamed::available() {
            "gemm and panels"
        } else {
            "gemm; no panel products on this CPU"
        },
        if cfg!(feature = "avx512") {
            ""
        } else {
            ", built without avx512"
        }
    );
    if let Some(line) = driftui::model::blas::configure()? {
        eprintln!("{line}");
    }
    let mut mode = "full".to_string();
    let (mut b, mut t, mut steps, mut rank) = (1usize, 128usize, 4usize, 16usize);
    let mut gguf = "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_string();
    let mut fused = true;
    let mut transposed = None;
    let mut random = false;
    let mut n_score = 64usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--help" || args[i] == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        if args[i] == "--random" {
            random = true;
            i += 1;
            continue;
        }
        const VALUED: [&str; 10] = [
            "--mode",
            "--batch",
            "--seq",
            "--steps",
            "--rank",
            "--gguf",
            "--n",
            "--fused",
            "--transposed",
            "--streamed",
        ];
        if !VALUED.contains(&args[i].as_str()) {
            bail!("unknown flag {}\n{USAGE}", args[i]);
        }
        let Some(v) = args.get(i + 1) else {
            bail!("{} without its value\n{USAGE}", args[i]);
        };
        match args[i].as_str() {
            "--mode" => mode = v.clone(),
            "--batch" => b = v.parse()?,
            "--seq" => t = v.parse()?,
            "--steps" => steps = v.parse()?,
            "--rank" => rank = v.parse()?,
            "--gguf" => gguf = v.clone(),
            "--n" => n_score = v.parse()?,
            // `--fused off`: the plain candle ops instead of driftui's kernels.
            "--fused" => fused = v != "off",
            // `--transposed on` (scoring): the decoder keeps its frozen
            // weights as panels (Decoder::keep_transposed_weights); auto,
            // the default: where they fit, as a probe trace does.
            "--transposed" => {
                transposed = match v.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    "auto" => None,
                    other => bail!("--transposed {other}: on, off or auto\n{USAGE}"),
                }
            }
            // `--streamed off`: gemm computes every product, also those
            // model::streamed reads in place (the same bits).
            "--streamed" => match v.as_str() {
                "on" => driftui::model::streamed::set_enabled(true),
                "off" => driftui::model::streamed::set_enabled(false),
                other => bail!("--streamed {other}: on or off\n{USAGE}"),
            },
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
        i += 2;
    }
    if b == 0 || t == 0 || steps == 0 || n_score == 0 {
        bail!("--batch, --seq, --steps and --n must be at least 1");
    }
    if mode == "kernels" {
        // The kernels line above is all it prints.
        return Ok(());
    }
    if mode == "matmul" {
        return matmul_bench();
    }
    let t0 = Instant::now();
    let model = if random {
        let mut m = load_model("builtin:micro", &LoadOptions::default())?;
        m.cfg = smollm2_config();
        m.weights = init_weights(&m.cfg, 0, &Device::Cpu, DType::F32)?;
        m
    } else {
        load_model(&format!("gguf:{gguf}"), &LoadOptions::default())?
    };
    eprintln!(
        "loaded in {:.1}s, peak RSS so far {:.0} MiB",
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    if mode == "score" {
        return score_bench(&model, fused, transposed, n_score, b, t, steps);
    }
    if mode == "generate" {
        return generate_bench(&model, b, t, steps);
    }
    // The baseline's ids, salt 0, over (b, t + 1) row-major.
    let seqs: Vec<TokenSeq> = (0..b)
        .map(|r| {
            let ids: Vec<u32> = (0..=t)
                .map(|j| (((r * (t + 1) + j) as u64 * 7919) % 40000 + 100) as u32)
                .collect();
            let mut trained = vec![true; t + 1];
            trained[0] = false;
            TokenSeq { ids, trained }
        })
        .collect();
    let refs: Vec<&TokenSeq> = seqs.iter().collect();
    let batch = SeqBatch::new(&refs, 0, &Device::Cpu)?;

    let (mut decoder, vars): (Decoder, BTreeMap<String, Var>) = match mode.as_str() {
        "full" => {
            let mut vars = BTreeMap::new();
            let mut tm = TensorMap::new("bench");
            for (n, w) in &model.weights.tensors {
                let var = Var::from_tensor(w)?;
                tm.tensors.insert(n.clone(), var.as_tensor().clone());
                vars.insert(n.clone(), var);
            }
            (Decoder::from_weights(&model.cfg, &mut tm)?, vars)
        }
        "lora" => {
            let cfg = LoraConfig {
                rank,
                alpha: 2.0 * rank as f64,
                dropout: 0.0,
                targets: vec!["all-linear".into()],
            };
            lora::attach(&model, &cfg, 1, None)?
        }
        other => bail!("--mode {other}: full, lora, score or matmul"),
    };
    decoder.set_fused(fused);
    let trainable: usize = vars.values().map(|v| v.elem_count()).sum();
    let mut opt = AdamW::new(
        &vars,
        AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let rss_before = peak_rss_mib();
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for s in 0..steps {
        let c0 = cpu_seconds();
        let a = Instant::now();
        let step = || -> Result<(f32, Instant, Instant, Instant)> {
            let lp = seq_logps(&decoder, &batch, Mode::Train)?;
            let loss = sft_loss(&lp, LossAverage::Token)?.loss;
            let l: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
            let f = Instant::now();
            let grads = loss.backward()?;
            let grads = collect_grads(&grads, &vars);
            drop(lp);
            drop(loss);
            let g = Instant::now();
            opt.step(&grads, 1e-5, 1.0)?;
            Ok((l, f, g, Instant::now()))
        };
        // As the trainer runs a step: one job on a pool worker.
        let (l, f, g, u) = driftui::model::fused::on_pool(decoder.device(), step)?;
        println!(
            "driftui {mode} b={b} t={t} step {s}: loss {l:.4} fwd {:.2}s bwd {:.2}s adamw {:.2}s total {:.2}s",
            (f - a).as_secs_f64(),
            (g - f).as_secs_f64(),
            (u - g).as_secs_f64(),
            (u - a).as_secs_f64()
        );
        if s > 0 {
            times.push((u - a).as_secs_f64());
            cpu.push(cpu_seconds() - c0);
        }
    }
    cpu.sort_by(f64::total_cmp);
    let cpu_med = cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN);
    times.sort_by(f64::total_cmp);
    let med = if times.is_empty() {
        f64::NAN
    } else {
        times[times.len() / 2]
    };
    println!(
        "RESULT driftui train-{mode} fused={fused} threads={} trainable={:.2}M b={b} t={t}: {med:.2} s/step median ({} steps excl. first), {:.0} tok/s, {cpu_med:.2} CPU-s/step; peak RSS after load {rss_before:.0} MiB, end {:.0} MiB",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        trainable as f64 / 1e6,
        times.len(),
        (b * t) as f64 / med,
        peak_rss_mib()
    );
    Ok(())
}
