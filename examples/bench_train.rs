//! Tokens/s of training steps (forward + backward + AdamW) and of no-grad
//! scoring on synthetic ids, for `builtin:tiny` or a model directory.
//!
//!     cargo run --release --example bench_train -- [SOURCE] [BATCH] [SEQ] [STEPS]
use candle_core::{DType, Var};
use driftui::data::{SeqBatch, TokenSeq};
use driftui::model::seq_logps;
use driftui::model::{load_model, Decoder, LoadOptions, Mode, TensorMap};
use driftui::train::optim::{collect_grads, AdamW, AdamWConfig};
use std::collections::BTreeMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let source = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "builtin:tiny".into());
    let b: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let t: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let steps: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(6);
    let model = load_model(&source, &LoadOptions::default())?;
    let v = model.cfg.vocab_size as u64;
    let seqs: Vec<TokenSeq> = (0..b)
        .map(|r| {
            let ids: Vec<u32> = (0..=t as u64)
                .map(|i| (((r as u64 * (t as u64 + 1) + i) * 7919) % (v - 100) + 100) as u32)
                .collect();
            TokenSeq {
                trained: vec![true; ids.len()],
                ids,
            }
        })
        .collect();
    let refs: Vec<&TokenSeq> = seqs.iter().collect();
    let batch = SeqBatch::new(&refs, 0, &candle_core::Device::Cpu)?;
    let mut vars = BTreeMap::new();
    let mut tm = TensorMap::new("bench");
    for (n, w) in &model.weights.tensors {
        let var = Var::from_tensor(w)?;
        tm.tensors.insert(n.clone(), var.as_tensor().clone());
        vars.insert(n.clone(), var);
    }
    let decoder = Decoder::from_weights(&model.cfg, &mut tm)?;
    let mut opt = AdamW::new(&vars, AdamWConfig::default())?;
    let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..steps {
        let t0 = Instant::now();
        let lp = seq_logps(&decoder, &batch, Mode::Train)?;
        let loss = lp.tokens.mean_all()?.neg()?;
        let l: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let grads = collect_grads(&grads, &vars);
        let t2 = Instant::now();
        opt.step(&grads, 1e-5, 1.0)?;
        let t3 = Instant::now();
        if s == 0 {
            println!("step-0 loss {l:.4}");
        }
        fwd.push((t1 - t0).as_secs_f64());
        bwd.push((t2 - t1).as_secs_f64());
        upd.push((t3 - t2).as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        let mut w = v[1..].to_vec();
        w.sort_by(|a, b| a.partial_cmp(b).unwrap());
        w[w.len() / 2]
    };
    let (f, bw, u) = (med(&mut fwd), med(&mut bwd), med(&mut upd));
    let tokens = (b * t) as f64;
    println!(
        "train {source} {b}x{t}: forward {:.3}s backward {:.3}s update {:.3}s → {:.0} tok/s",
        f,
        bw,
        u,
        tokens / (f + bw + u)
    );
    let t0 = Instant::now();
    for _ in 0..3 {
        let lp = seq_logps(&decoder, &batch, Mode::Fast)?;
        let _: f32 = lp.sums.sum_all()?.to_scalar()?;
    }
    println!(
        "score (no grad, fast) {b}x{t}: {:.0} tok/s",
        3.0 * tokens / t0.elapsed().as_secs_f64()
    );
    Ok(())
}
