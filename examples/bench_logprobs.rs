//! The vocabulary projection and log-softmax at SmolLM2's shapes: the fused
//! kernel's forward (and backward) over `ROWS` × 576 hidden states and a
//! 49,152 × 576 head, timed. Used to check that a change to the kernel
//! costs no measurable speed.
//!
//!     cargo run --release --example bench_logprobs [ROWS] [REPS]

use candle_core::{Device, Tensor, Var};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(128);
    let reps: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let dev = Device::Cpu;
    let h = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (rows, 576), &dev)?))?;
    let w = Var::from_tensor(&(Tensor::randn(0f32, 0.05, (49152, 576), &dev)?))?;
    let t = Tensor::arange(0u32, rows as u32, &dev)?;
    let mut fwd = Vec::new();
    let mut both = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let out = driftui::model::fused::token_logprobs(h.as_tensor(), w.as_tensor(), &t)?;
        let lp = out.narrow(1, 0, 1)?.sum_all()?;
        let _ = lp.to_scalar::<f32>()?;
        fwd.push(t0.elapsed().as_secs_f64());
        let _g = lp.backward()?;
        both.push(t0.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "RESULT rows={rows} forward_ms={:.2} forward_backward_ms={:.2}",
        med(&mut fwd) * 1e3,
        med(&mut both) * 1e3
    );
    Ok(())
}
