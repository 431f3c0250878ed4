//! Fused CPU kernels, each with an exact backward pass, for the training
//! forward (candle's own fused kernels have no backward, and its basic ops
//! allocate a tensor per step of a formula):
//!
//! - [`rms_norm`], [`rope`], [`softmax_last_dim`] (optionally causal),
//!   [`swiglu`]: one pass forward, one pass backward;
//! - [`linear`]: `x Wᵀ` whose backward skips the weight's gradient when the
//!   weight is frozen (LoRA's base weights; candle's matmul computes it anyway);
//! - [`token_logprobs`]: the vocabulary projection, log-softmax and target
//!   pick in row chunks, so the (tokens × vocabulary) log-softmax and its
//!   gradients never exist as whole tensors.
//!
//! CPU and f32 only ([`applies`]); elsewhere the decoder uses plain candle ops.
//! Every reduction runs in a fixed order over fixed blocks, so results do
//! not depend on the number of threads, with one exception in the matrix
//! products (see [`gemm_f32`]).

use super::streamed::Panels;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage,
    Tensor, D,
};
use multiversion::multiversion;
use rayon::prelude::*;
use std::sync::Mutex;

/// A row kernel compiled for AVX-512 (with the `avx512` feature) and AVX2
/// as well as the x86-64 baseline, the version chosen at run time
/// (`multiversion`): the same arithmetic in each, so the same bits.
macro_rules! row_kernel {
    ($item:item) => {
        #[cfg_attr(
            feature = "avx512",
            multiversion(targets(
                "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
                "x86_64+avx2+fma"
            ))
        )]
        #[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+fma")))]
        $item
    };
}

/// Ask mimalloc, when it is the global allocator (driftui's binary and
/// benchmarks), never to return freed memory to the OS. A training step frees
/// and allocates the same large buffers every step; returned, they come back
/// as fresh pages the kernel must fault in and zero (measured on SmolLM2-135M,
/// 1 × 128: 160k page faults and 6.5 s of system time in 6 steps, against 2k
/// and 1.9 s kept). The peak resident memory is the same.
pub fn keep_freed_memory() {
    // mi_option_purge_delay in mimalloc 3's mi_option_e; -1 = never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one integer option; called before training threads start.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Run candle's own element-wise CPU loops on one thread unless
/// `CANDLE_NUM_THREADS` says otherwise (matrix products and driftui's fused
/// kernels still use `RAYON_NUM_THREADS`). candle's pool waits for its
/// workers by spinning; when another program holds a core, every element-wise
/// op stalls. Measured on SmolLM2-135M, 2 threads, full fine-tune 1 × 128: on
/// a 2-core machine shared with other work 4.5–5.4 s/step with the pool,
/// 1.8–2.0 s without; on 2 quiet cores the same or better (2.4–2.6 vs
/// 2.7–3.1 s). Call before any tensor work.
pub fn configure_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Single-threaded at this point: called first thing in main.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Run `f` on a worker of rayon's pool (at once when this thread is one).
/// Each parallel op started from another thread is injected into the pool
/// and the caller sleeps until it ends: two wake-ups per op. Started from a
/// worker, the op's first block runs on the caller and only the others
/// wait for a thread. On scoring at batch 1 (SmolLM2, 40 tokens, 2 cores of
/// an AMX Xeon, alternated): 277–280 → 305–307 tok/s; the trainer runs
/// each optimizer step so (LoRA 1 × 128 +10%). The same bits (no
/// result depends on which thread computes it). `f` runs as one job: a
/// worker waiting inside another thread's op may pick it up and run it to
/// the end first (a delay for that op). No deadlock as long as such jobs
/// never touch the tensors `f` holds locks on while it waits for the pool:
/// a training step does so on the policy's Vars (AdamW updates them in
/// place, holding their storage's write lock and its moments' mutex across
/// its parallel loop), so no other thread's pool job may read the live
/// policy's Vars while it trains (the probe worker scores models it loads
/// itself). Work for another device, or on one thread (where the ops run
/// inline and the pool would only queue `f` behind other threads' jobs),
/// runs here.
pub fn on_pool<R: Send>(device: &candle_core::Device, f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some()
        || !device.is_cpu()
        || candle_core::utils::get_num_threads() <= 1
    {
        return f();
    }
    rayon::scope(|_| f())
}

/// A warning for the run's log when this CPU lacks what the matrix
/// products are tuned for: x86-64 without AVX2 and FMA, where gemm falls
/// back to its portable kernels (the run works, several times slower); or
/// when this build leaves an AVX-512 CPU's kernels out (built without the
/// `avx512` feature).
pub fn cpu_kernel_warning() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        kernel_warning(
            std::arch::is_x86_feature_detected!("avx2"),
            std::arch::is_x86_feature_detected!("fma"),
        )
        .or_else(|| {
            (!cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f")).then(|| {
                "this build has no AVX-512 kernels (built without the avx512 feature): matrix products run the AVX2 ones on this AVX-512 CPU".to_string()
            })
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

fn kernel_warning(avx2: bool, fma: bool) -> Option<String> {
    let missing: Vec<&str> = [("AVX2", avx2), ("FMA", fma)]
        .iter()
        .filter(|(_, has)| !has)
        .map(|(name, _)| *name)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "this CPU has no {}: matrix products run gemm's portable kernels, several times slower than on an AVX2 machine",
            missing.join(" or ")
        )
    })
}

/// Whether the fused kernels can run on this tensor (CPU, f32).
pub fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The f32 slice a contiguous CPU layout covers.
pub(crate) fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let all = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&all[a..b]),
        None => bail!("{what}: the input is not contiguous"),
    }
}

/// The f32 slice of a contiguous CPU tensor's storage (as
/// `storage_and_layout` lends it).
fn cpu_slice<'a>(s: &'a Storage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => data(c, l, what),
        _ => bail!("{what}: CPU tensors only"),
    }
}

/// The CPU f32 data of a tensor (contiguous), copied out.
fn to_storage(t: &Tensor) -> Result<CpuStorage> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cpu(c) => Ok(CpuStorage::F32(data(c, l, "fused")?.to_vec())),
        _ => bail!("fused kernels run on the CPU only"),
    }
}

/// `n` zeros, written on the pool's threads: a fresh buffer of the model's
/// size filled on this thread alone (a calloc) leaves the other cores idle.
fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0f32, n).with_min_len(ELEMENTS));
    v
}

/// Rows processed per task: fixed, so partial sums do not depend on threads.
const ROW_BLOCK: usize = 32;

// ---------------------------------------------------------------- RMSNorm

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "driftui-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, "rms_norm")?;
        let w = data(s2, l2, "rms_norm")?;
        let d = w.len();
        let mut y = zeros(x.len());
        y.par_chunks_mut(d * ROW_BLOCK)
            .zip(x.par_chunks(d * ROW_BLOCK))
            .for_each(|(yb, xb)| {
                for (yr, xr) in yb.chunks_mut(d).zip(xb.chunks(d)) {
                    let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
                    let r = 1.0 / (ms + self.eps).sqrt();
                    for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
                        *o = v * r * g;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3_no_bwd(
            &w.contiguous()?,
            &grad.contiguous()?,
            &RmsNormBwd { eps: self.eps },
        )?;
        let n = x.elem_count();
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((x.track_op().then_some(dx), w.track_op().then_some(dw)))
    }
}

/// dx and dw of RMSNorm, flattened one after the other.
struct RmsNormBwd {
    eps: f32,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "driftui-rms-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, "rms_norm bwd")?;
        let w = data(s2, l2, "rms_norm bwd")?;
        let g = data(s3, l3, "rms_norm bwd")?;
        let d = w.len();
        let n = x.len();
        let mut out = zeros(n + d);
        let (dx, dw_out) = out.split_at_mut(n);
        // One partial dw per block of rows, summed in block order.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(d * ROW_BLOCK)
            .zip(x.par_chunks(d * ROW_BLOCK))
            .zip(g.par_chunks(d * ROW_BLOCK))
            .map(|((dxb, xb), gb)| {
                let mut dw = vec![0f32; d];
                for ((dxr, xr), gr) in dxb.chunks_mut(d).zip(xb.chunks(d)).zip(gb.chunks(d)) {
                    let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
                    let r = 1.0 / (ms + self.eps).sqrt();
                    // Σ g·w·x over the row.
                    let dot: f32 = gr.iter().zip(w).zip(xr).map(|((a, b), c)| a * b * c).sum();
                    let k = r * r * r * dot / d as f32;
                    for i in 0..d {
                        dxr[i] = r * w[i] * gr[i] - k * xr[i];
                        dw[i] += gr[i] * xr[i] * r;
                    }
                }
                dw
            })
            .collect();
        for p in partials {
            for (o, v) in dw_out.iter_mut().zip(p) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(n + d)))
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

// ---------------------------------------------------------------- RoPE

/// Rotary embedding, rotate-half convention, on (b, h, t, d) with cos/sin of
/// (t, d/2) or (b, t, d/2). Its transpose (the backward) is the same
/// rotation with sin negated.
struct Rope;

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "driftui-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, "rope")?;
        let cos = data(s2, l2, "rope")?;
        let sin = data(s3, l3, "rope")?;
        let (b, h, t, d) = l1.shape().dims4()?;
        let half = d / 2;
        let batched = l2.shape().rank() == 3;
        if cos.len() != if batched { b * t * half } else { t * half } {
            bail!("rope: cos/sin do not fit (b, h, t, d) = ({b}, {h}, {t}, {d})");
        }
        let mut y = zeros(x.len());
        y.par_chunks_mut(t * d)
            .zip(x.par_chunks(t * d))
            .enumerate()
            .for_each(|(bh, (yh, xh))| {
                let bi = bh / h;
                for ti in 0..t {
                    let base = if batched {
                        (bi * t + ti) * half
                    } else {
                        ti * half
                    };
                    let (c, s) = (&cos[base..base + half], &sin[base..base + half]);
                    let xr = &xh[ti * d..(ti + 1) * d];
                    let yr = &mut yh[ti * d..(ti + 1) * d];
                    for i in 0..half {
                        let (x1, x2) = (xr[i], xr[i + half]);
                        yr[i] = x1 * c[i] - x2 * s[i];
                        yr[i + half] = x2 * c[i] + x1 * s[i];
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = grad
            .contiguous()?
            .apply_op3_no_bwd(cos, &sin.neg()?.contiguous()?, &Rope)?;
        Ok((Some(dx), None, None))
    }
}

/// Rotary embedding of `x` (b, h, t, d); cos/sin (t, d/2) or (b, t, d/2) are constants.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &cos.detach().contiguous()?,
        &sin.detach().contiguous()?,
        Rope,
    )
}

// ---------------------------------------------------------------- softmax

/// Softmax of `scale · x` over the last dimension; with `causal =
/// Some(offset)`, entries with key index j > query index i + offset are -inf
/// first (the query index is the row's index within the second-to-last
/// dimension).
struct Softmax {
    scale: f32,
    causal: Option<usize>,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "driftui-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "softmax")?;
        let dims = l.dims();
        let n = dims[dims.len() - 1];
        let t = if dims.len() >= 2 {
            dims[dims.len() - 2]
        } else {
            1
        };
        let mut y = zeros(x.len());
        y.par_chunks_mut(n * ROW_BLOCK)
            .zip(x.par_chunks(n * ROW_BLOCK))
            .enumerate()
            .for_each(|(blk, (yb, xb))| {
                for (k, (yr, xr)) in yb.chunks_mut(n).zip(xb.chunks(n)).enumerate() {
                    let row = blk * ROW_BLOCK + k;
                    let len = match self.causal {
                        Some(off) => ((row % t) + off + 1).min(n),
                        None => n,
                    };
                    yr[..len].copy_from_slice(&xr[..len]);
                    softmax_in_place(&mut yr[..len], self.scale);
                    // Masked entries stay 0.
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(
            &grad.contiguous()?,
            &SoftmaxBwd { scale: self.scale },
        )?))
    }
}

/// dx = scale · y ⊙ (g − Σ g⊙y), row by row.
struct SoftmaxBwd {
    scale: f32,
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "driftui-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = data(s1, l1, "softmax bwd")?;
        let g = data(s2, l2, "softmax bwd")?;
        let n = *l1.dims().last().unwrap_or(&1);
        let mut dx = zeros(y.len());
        dx.par_chunks_mut(n * ROW_BLOCK)
            .zip(y.par_chunks(n * ROW_BLOCK))
            .zip(g.par_chunks(n * ROW_BLOCK))
            .for_each(|((db, yb), gb)| {
                for ((dr, yr), gr) in db.chunks_mut(n).zip(yb.chunks(n)).zip(gb.chunks(n)) {
                    dr.copy_from_slice(gr);
                    softmax_grad_in_place(yr, dr, self.scale);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

row_kernel! {
    /// Softmax of `scale · row` in place (scale > 0): the row's maximum is
    /// subtracted first, so every exponent is ≤ 0 and the branch-free exp
    /// vectorises (libm's `expf` per score was a scalar call). Compiled for
    /// AVX-512 and AVX2 too (see [`logit_stats_row`]).
    fn softmax_in_place(row: &mut [f32], scale: f32) {
        let mx = row_max(row);
        for o in row.iter_mut() {
            *o = exp_nonpositive(scale * (*o - mx));
        }
        let inv = 1.0 / laned_sum(row);
        row.iter_mut().for_each(|o| *o *= inv);
    }
}

row_kernel! {
    /// The backward of [`softmax_in_place`] for one row, in place over the
    /// incoming gradient: g ← scale · y ⊙ (g − Σ g ⊙ y).
    fn softmax_grad_in_place(y: &[f32], g: &mut [f32], scale: f32) {
        let dot: f32 = y.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
        for (o, &yv) in g.iter_mut().zip(y) {
            *o = scale * yv * (*o - dot);
        }
    }
}

/// Softmax over the last dimension, causal-masked from `causal = Some(offset)`.
pub fn softmax_last_dim(x: &Tensor, causal: Option<usize>) -> Result<Tensor> {
    scaled_softmax_last_dim(x, 1.0, causal)
}

/// Softmax of `scale · x` over the last dimension (attention scores before
/// their 1/√d scaling), causal-masked from `causal = Some(offset)`.
pub fn scaled_softmax_last_dim(x: &Tensor, scale: f64, causal: Option<usize>) -> Result<Tensor> {
    if scale.is_nan() || scale <= 0.0 {
        bail!("scaled softmax: the scale must be positive, got {scale}");
    }
    x.contiguous()?.apply_op1(Softmax {
        scale: scale as f32,
        causal,
    })
}

// ---------------------------------------------------------------- attention

/// Causal self-attention on the projections' own layout: q (b, t, hq·d), k
/// and v (b, t, hkv·d) → (b, t, hq·d), with the rotary embedding (cos/sin of
/// (t, d/2) or (b, t, d/2), rotate-half) applied to q and k inside, grouped
/// query heads (head h reads key/value head h / (hq / hkv)), the 1/√d scale
/// and the causal mask. The plain path is some twenty candle ops a layer
/// (the per-head transposes and their copies, two rotations, the batched
/// products, the softmax and the reshapes back), and candle's backward
/// zero-fills and adds a gradient buffer for each of them; this is one op,
/// each head's products on one thread, the heads in parallel.
struct CausalAttention {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// cos/sin per batch row, (b, t, d/2), rather than (t, d/2).
    per_row: bool,
    /// Keep the forward's buffers for the backward (an input tracks a gradient).
    keep: bool,
    saved: Mutex<Option<AttentionParts>>,
}

/// What the backward reuses from the forward: the rotated queries and keys
/// and the values per head, (b, h, t, d), and the attention weights, (b, hq,
/// t, t).
struct AttentionParts {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    p: Vec<f32>,
}

impl CausalAttention {
    /// cos and sin for batch row `bi`, position `ti`: d/2 each.
    fn angles(&self, bi: usize, ti: usize, t: usize) -> (&[f32], &[f32]) {
        let half = self.head_dim / 2;
        let base = if self.per_row { bi * t + ti } else { ti } * half;
        (&self.cos[base..base + half], &self.sin[base..base + half])
    }

    /// (b, t, h·d) → (b, h, t, d), rotated when `rotate`.
    fn split_heads(&self, x: &[f32], (b, t, h): (usize, usize, usize), rotate: bool) -> Vec<f32> {
        let d = self.head_dim;
        let half = d / 2;
        let mut out = zeros(b * h * t * d);
        out.par_chunks_mut(t * d).enumerate().for_each(|(bh, dst)| {
            let (bi, hi) = (bh / h, bh % h);
            for ti in 0..t {
                let src = &x[(bi * t + ti) * h * d + hi * d..][..d];
                let row = &mut dst[ti * d..(ti + 1) * d];
                if rotate {
                    let (c, s) = self.angles(bi, ti, t);
                    for i in 0..half {
                        let (x1, x2) = (src[i], src[i + half]);
                        row[i] = x1 * c[i] - x2 * s[i];
                        row[i + half] = x2 * c[i] + x1 * s[i];
                    }
                } else {
                    row.copy_from_slice(src);
                }
            }
        });
        out
    }

    /// (b, hs, t, d) per-head gradients → (b, t, h·d), summing the `hs / h`
    /// heads that share each output head (in head order) and undoing the
    /// rotation (its transpose: the same rotation with sin negated) when
    /// `rotated`.
    fn merge_heads(
        &self,
        g: &[f32],
        (b, t, hs, h): (usize, usize, usize, usize),
        rotated: bool,
    ) -> Vec<f32> {
        let d = self.head_dim;
        let half = d / 2;
        let rep = hs / h;
        let mut out = zeros(b * t * h * d);
        out.par_chunks_mut(h * d).enumerate().for_each_init(
            || vec![0f32; d],
            |sum, (row, dst)| {
                let (bi, ti) = (row / t, row % t);
                for hi in 0..h {
                    sum.fill(0.0);
                    for r in 0..rep {
                        let src = &g[((bi * hs + hi * rep + r) * t + ti) * d..][..d];
                        sum.iter_mut().zip(src).for_each(|(a, v)| *a += v);
                    }
                    let o = &mut dst[hi * d..(hi + 1) * d];
                    if rotated {
                        let (c, s) = self.angles(bi, ti, t);
                        for i in 0..half {
                            let (g1, g2) = (sum[i], sum[i + half]);
                            o[i] = g1 * c[i] + g2 * s[i];
                            o[i + half] = g2 * c[i] - g1 * s[i];
                        }
                    } else {
                        o.copy_from_slice(&sum[..]);
                    }
                }
            },
        );
        out
    }

    /// The rotated heads, the weights and the output (b, t, hq·d).
    fn run(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        (b, t): (usize, usize),
    ) -> (AttentionParts, Vec<f32>) {
        let (hq, hkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let rep = hq / hkv;
        let qr = self.split_heads(q, (b, t, hq), true);
        let kr = self.split_heads(k, (b, t, hkv), true);
        let vh = self.split_heads(v, (b, t, hkv), false);
        let mut p = zeros(b * hq * t * t);
        let mut out: Vec<f32> = zeros(b * t * hq * d);
        let out_addr = out.as_mut_ptr() as usize;
        p.par_chunks_mut(t * t).enumerate().for_each(|(bh, ph)| {
            let (bi, g) = (bh / hq, (bh % hq) / rep);
            let qh = &qr[bh * t * d..][..t * d];
            let kh = &kr[(bi * hkv + g) * t * d..][..t * d];
            let vv = &vh[(bi * hkv + g) * t * d..][..t * d];
            // SAFETY: ph is this task's (t × t); qh, kh, vv are (t × d).
            unsafe {
                one_thread_product(
                    (t, t, d),
                    (ph.as_mut_ptr(), t),
                    (qh.as_ptr(), d, 1),
                    (kh.as_ptr(), 1, d),
                    false,
                );
            }
            for (i, row) in ph.chunks_mut(t).enumerate() {
                let (kept, masked) = row.split_at_mut(i + 1);
                softmax_in_place(kept, self.scale);
                masked.fill(0.0);
            }
            // SAFETY: head h's columns of the output, (t × d) at row stride
            // hq·d inside batch row bi; no other task writes them.
            unsafe {
                let dst = (out_addr as *mut f32).add(bi * t * hq * d + (bh % hq) * d);
                one_thread_product(
                    (t, d, t),
                    (dst, hq * d),
                    (ph.as_ptr(), t, 1),
                    (vv.as_ptr(), d, 1),
                    false,
                );
            }
        });
        (
            AttentionParts {
                q: qr,
                k: kr,
                v: vh,
                p,
            },
            out,
        )
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "driftui-causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, qw) = ql.shape().dims3()?;
        let (hq, hkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let kv_dims = (b, t, hkv * d);
        if qw != hq * d || kl.shape().dims3()? != kv_dims || vl.shape().dims3()? != kv_dims {
            bail!(
                "attention: q {:?}, k {:?}, v {:?} for {hq} heads, {hkv} key/value heads of {d}",
                ql.dims(),
                kl.dims(),
                vl.dims()
            );
        }
        let half = d / 2;
        if self.cos.len() != if self.per_row { b * t * half } else { t * half } {
            bail!("attention: cos/sin do not fit (b, t) = ({b}, {t}), head size {d}");
        }
        let (q, k, v) = (
            data(qs, ql, "attention")?,
            data(ks, kl, "attention")?,
            data(vs, vl, "attention")?,
        );
        let (parts, out) = self.run(q, k, v, (b, t));
        if self.keep {
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("attention: poisoned".into()))? = Some(parts);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, t, hq * d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, _) = q.dims3()?;
        let (hq, hkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let rep = hq / hkv;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: poisoned".into()))?
            .take();
        // A second backward over the same graph recomputes the forward.
        let parts = match saved {
            Some(parts) => parts,
            None => {
                let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
                let (q, k, v) = (
                    q.flatten_all()?.to_vec1::<f32>()?,
                    k.flatten_all()?.to_vec1::<f32>()?,
                    v.flatten_all()?.to_vec1::<f32>()?,
                );
                self.run(&q, &k, &v, (b, t)).0
            }
        };
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let n = b * hq * t * d;
        let (mut dq, mut dk, mut dv) = (zeros(n), zeros(n), zeros(n));
        let AttentionParts {
            q: qr,
            k: kr,
            v: vh,
            p,
        } = &parts;
        dq.par_chunks_mut(t * d)
            .zip(dk.par_chunks_mut(t * d))
            .zip(dv.par_chunks_mut(t * d))
            .enumerate()
            .for_each(|(bh, ((dqh, dkh), dvh))| {
                let (bi, hi) = (bh / hq, bh % hq);
                let kvo = (bi * hkv + hi / rep) * t * d;
                let ph = &p[bh * t * t..][..t * t];
                let (qh, kh, vv) = (
                    &qr[bh * t * d..][..t * d],
                    &kr[kvo..][..t * d],
                    &vh[kvo..][..t * d],
                );
                let go = g[bi * t * hq * d + hi * d..].as_ptr();
                let mut ds = vec![0f32; t * t];
                // SAFETY: every operand is this head's (t × t) or (t × d)
                // block (the output gradient at row stride hq·d); the
                // destinations are this task's own.
                unsafe {
                    // dP = dO Vᵀ, then dS = scale · P ⊙ (dP − Σ P ⊙ dP).
                    one_thread_product(
                        (t, t, d),
                        (ds.as_mut_ptr(), t),
                        (go, hq * d, 1),
                        (vv.as_ptr(), 1, d),
                        false,
                    );
                    for (i, (pr, dr)) in ph.chunks(t).zip(ds.chunks_mut(t)).enumerate() {
                        let (kept, masked) = dr.split_at_mut(i + 1);
                        softmax_grad_in_place(&pr[..=i], kept, self.scale);
                        masked.fill(0.0);
                    }
                    one_thread_product(
                        (t, d, t),
                        (dqh.as_mut_ptr(), d),
                        (ds.as_ptr(), t, 1),
                        (kh.as_ptr(), d, 1),
                        false,
                    );
                    one_thread_product(
                        (t, d, t),
                        (dkh.as_mut_ptr(), d),
                        (ds.as_ptr(), 1, t),
                        (qh.as_ptr(), d, 1),
                        false,
                    );
                    one_thread_product(
                        (t, d, t),
                        (dvh.as_mut_ptr(), d),
                        (ph.as_ptr(), 1, t),
                        (go, hq * d, 1),
                        false,
                    );
                }
            });
        let dq = self.merge_heads(&dq, (b, t, hq, hq), true);
        let dk = self.merge_heads(&dk, (b, t, hq, hkv), true);
        let dv = self.merge_heads(&dv, (b, t, hq, hkv), false);
        let dev = q.device();
        let grad = |x: Vec<f32>, of: &Tensor| -> Result<Option<Tensor>> {
            Ok(if of.track_op() {
                Some(Tensor::from_vec(x, of.shape(), dev)?)
            } else {
                None
            })
        };
        Ok((grad(dq, q)?, grad(dk, k)?, grad(dv, v)?))
    }
}

/// Causal self-attention of q (b, t, heads·d), k and v (b, t, kv_heads·d),
/// as the projections lay them out, with the rotary embedding of cos/sin
/// ((t, d/2) or (b, t, d/2)) applied to q and k, `heads / kv_heads` query
/// heads per key/value head and scores scaled by 1/√d: (b, t, heads·d).
/// Positions run 0..t (no cache, no padding bias). CPU f32 only.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    (heads, kv_heads, head_dim): (usize, usize, usize),
) -> Result<Tensor> {
    if kv_heads == 0 || heads % kv_heads != 0 || head_dim % 2 != 0 {
        bail!("attention: {heads} heads over {kv_heads} key/value heads of size {head_dim}");
    }
    let table = |t: &Tensor| -> Result<Vec<f32>> {
        t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
    };
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        CausalAttention {
            heads,
            kv_heads,
            head_dim,
            scale: (1.0 / (head_dim as f64).sqrt()) as f32,
            cos: table(cos)?,
            sin: table(sin)?,
            per_row: cos.rank() == 3,
            keep: q.track_op() || k.track_op() || v.track_op(),
            saved: Mutex::new(None),
        },
    )
}

// ---------------------------------------------------------------- SwiGLU

/// silu(g) · u.
struct SwiGlu;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "driftui-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = data(s1, l1, "swiglu")?;
        let u = data(s2, l2, "swiglu")?;
        let y = zip_map(g, u, |a, b| a * sigmoid(a) * b);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = g.apply_op3_no_bwd(u, &grad.contiguous()?, &SwiGluBwd)?;
        let n = g.elem_count();
        Ok((
            Some(both.narrow(0, 0, n)?.reshape(g.shape())?),
            Some(both.narrow(0, n, n)?.reshape(u.shape())?),
        ))
    }
}

/// d/dg and d/du of silu(g)·u, flattened one after the other.
struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "driftui-swiglu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = data(s1, l1, "swiglu bwd")?;
        let u = data(s2, l2, "swiglu bwd")?;
        let dy = data(s3, l3, "swiglu bwd")?;
        let n = g.len();
        let mut out = zeros(2 * n);
        let (dg, du) = out.split_at_mut(n);
        const C: usize = ELEMENTS;
        dg.par_chunks_mut(C)
            .zip(du.par_chunks_mut(C))
            .zip(g.par_chunks(C))
            .zip(u.par_chunks(C).zip(dy.par_chunks(C)))
            .for_each(|(((dgb, dub), gb), (ub, yb))| {
                for i in 0..gb.len() {
                    let a = gb[i];
                    let s = sigmoid(a);
                    let silu = a * s;
                    dub[i] = yb[i] * silu;
                    dgb[i] = yb[i] * ub[i] * s * (1.0 + a * (1.0 - s));
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

/// Elements per task of the element-wise ops below.
const ELEMENTS: usize = 1 << 14;

/// `f(a[i], b[i])` for every i, on the pool's threads.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    let mut y = Vec::with_capacity(a.len());
    y.par_extend(
        a.par_iter()
            .zip(b.par_iter())
            .with_min_len(ELEMENTS)
            .map(|(&a, &b)| f(a, b)),
    );
    y
}

/// `a + b` (same shape) on the pool's threads: candle's add runs on its own
/// pool, kept to one thread (see [`configure_cpu_threads`]), and the
/// residual stream takes two a layer. The same bits as candle's add; the
/// gradient reaches both sides unchanged, as candle's does.
struct Add;

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        "driftui-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (data(s1, l1, "add")?, data(s2, l2, "add")?);
        Ok((
            CpuStorage::F32(zip_map(a, b, |a, b| a + b)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.clone())))
    }
}

/// `a + b` for two tensors of one shape (CPU f32), on rayon's threads.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        bail!("add: shapes {:?} and {:?}", a.dims(), b.dims());
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, Add)
}

/// silu(gate) · up with no gradient (scoring, generation), in exactly
/// candle's arithmetic (`silu(g) = g / (1 + e^(−g))`, then the product), so
/// the bits equal `candle_nn::ops::silu(g) * u`, but on rayon's threads
/// instead of candle's one: sampled trajectories (the PPO test's) depend on
/// the rounding of no-grad passes.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    struct SiluMul;
    impl CustomOp2 for SiluMul {
        fn name(&self) -> &'static str {
            "driftui-silu-mul"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let (g, u) = (data(s1, l1, "silu·up")?, data(s2, l2, "silu·up")?);
            let y = zip_map(g, u, |g, u| g / (1.0 + (-g).exp()) * u);
            Ok((CpuStorage::F32(y), l1.shape().clone()))
        }
    }
    if gate.shape() != up.shape() {
        bail!("silu·up: shapes {:?} and {:?}", gate.dims(), up.dims());
    }
    gate.contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SiluMul)
}

/// silu(gate) · up.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

// ---------------------------------------------------------------- linear

/// `op(a) · op(b)` for 2-D contiguous CPU f32 tensors, `op` a transpose
/// where asked, through gemm as candle's CPU matmul calls it (the same
/// kernels, operand strides and threads, so the same bits), but into an
/// uninitialised buffer: candle zero-fills every product's output first,
/// and the linear layer's value was then copied once more into its op.
/// Elsewhere (another device or dtype) candle's matmul.
pub fn product(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Result<Tensor> {
    product_on(a, ta, b, tb, candle_core::utils::get_num_threads())
}

/// [`product`] cut for `threads` threads (for the tests: the bits must not
/// depend on it).
#[doc(hidden)]
pub fn product_on(a: &Tensor, ta: bool, b: &Tensor, tb: bool, threads: usize) -> Result<Tensor> {
    let op = |t: &Tensor, tr: bool| if tr { t.t() } else { Ok(t.clone()) };
    if !applies(a) || !applies(b) {
        return op(a, ta)?.matmul(&op(b, tb)?);
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let (ar, ac) = a.dims2()?;
    let (br, bc) = b.dims2()?;
    // op(a) is m × k, op(b) is k × n; (row, column) strides in each buffer.
    let (m, k, a_rs, a_cs) = if ta { (ac, ar, 1, ac) } else { (ar, ac, ac, 1) };
    let (kb, n, b_rs, b_cs) = if tb { (bc, br, 1, bc) } else { (br, bc, bc, 1) };
    if kb != k {
        bail!("product: shapes ({m}, {k}) and ({kb}, {n}) do not chain");
    }
    let dst = {
        let (sa, la) = a.storage_and_layout();
        let (sb, lb) = b.storage_and_layout();
        let (Storage::Cpu(ca), Storage::Cpu(cb)) = (&*sa, &*sb) else {
            bail!("product: CPU tensors only");
        };
        gemm_f32(
            (m, n, k),
            (data(ca, la, "product")?, a_rs, a_cs),
            (data(cb, lb, "product")?, b_rs, b_cs),
            threads,
        )
    };
    Tensor::from_vec(dst, (m, n), a.device())
}

/// `dst (m × n) = lhs (m × k) · rhs (k × n)` (`+=` when `accumulate`) on
/// this thread, through MKL
/// when [`super::blas::configure`] opened it, else gemm; operands and
/// destination as (pointer, row stride, column stride): one block of
/// [`gemm_f32`], and each head's products in the attention.
///
/// # Safety
/// The strides must keep every access inside the buffers, and no other
/// thread may touch the destination's elements meanwhile.
unsafe fn one_thread_product(
    (m, n, k): (usize, usize, usize),
    (dst, d_rs): (*mut f32, usize),
    (lhs, l_rs, l_cs): (*const f32, usize, usize),
    (rhs, r_rs, r_cs): (*const f32, usize, usize),
    accumulate: bool,
) {
    if let Some(mkl) = super::blas::active() {
        let (l, r) = ((lhs, l_rs, l_cs), (rhs, r_rs, r_cs));
        if mkl.product((m, n, k), (dst, d_rs), l, r, accumulate) {
            return;
        }
    }
    // gemm: dst = alpha · dst + beta · lhs · rhs, dst read only when asked.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        d_rs as isize,
        accumulate,
        lhs,
        l_cs as isize,
        l_rs as isize,
        rhs,
        r_cs as isize,
        r_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// `dst (m × n) = lhs (m × k) · rhs (k × n)`, operands as (data, row
/// stride, column stride).
///
/// On several threads the longer side of `dst` is cut into one block per
/// thread, each a one-thread gemm: gemm's own threading barely gains on the
/// model's narrow products (measured on an AMX Xeon, 2 cores, SmolLM2
/// shapes: x Wᵀ at 128 × 1536 → 576 ran 64–67 GFLOP/s with gemm's threads,
/// 58–60 on one thread, 124–126 cut in two). gemm's blocking along the
/// inner dimension depends only on `k` for blocks of more than 64 rows or
/// columns, so every element sums in the same order as in one call: the
/// same bits, whatever the number of blocks, as long as the blocks stay
/// that large. Not so on many threads: a block of at most 64 × 64 takes
/// gemm's small-product blocking (k in steps of 512 from the start rather
/// than in equal parts; SmolLM2's 40 × 576 → 576 cut for 9 or more threads
/// gives 40 × 64 blocks), one of at most 16 × 16 elements its horizontal
/// kernel, so the bits then change with the thread count.
fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    threads: usize,
) -> Vec<f32> {
    let len = m * n;
    if len == 0 || k == 0 {
        return vec![0.0; len];
    }
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: dst has room for m × n; without accumulating every element is
    // written and none is read.
    unsafe {
        gemm_f32_at(dst.as_mut_ptr(), false, (m, n, k), lhs, rhs, threads);
        dst.set_len(len);
    }
    dst
}

/// `dst += lhs · rhs` for a (m × n) row-major `dst`, cut as [`gemm_f32`]:
/// a second product summed into the first one's buffer, with no temporary
/// and no pass to add it.
fn gemm_f32_add(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    threads: usize,
) {
    assert_eq!(dst.len(), m * n, "gemm_f32_add: destination");
    if dst.is_empty() || k == 0 {
        return;
    }
    // SAFETY: dst holds m × n initialised floats.
    unsafe { gemm_f32_at(dst.as_mut_ptr(), true, (m, n, k), lhs, rhs, threads) }
}

/// The blocks of [`gemm_f32`] and [`gemm_f32_add`] into `dst`, (m × n) at
/// row stride n.
///
/// # Safety
/// `dst` must have room for m × n floats (initialised when `accumulate`),
/// and m, n, k must be at least 1.
unsafe fn gemm_f32_at(
    dst: *mut f32,
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    (lhs, l_rs, l_cs): (&[f32], usize, usize),
    (rhs, r_rs, r_cs): (&[f32], usize, usize),
    threads: usize,
) {
    // The last element each operand's strides reach must be inside it.
    assert!((m - 1) * l_rs + (k - 1) * l_cs < lhs.len(), "gemm_f32: lhs");
    assert!((k - 1) * r_rs + (n - 1) * r_cs < rhs.len(), "gemm_f32: rhs");
    let (dst_addr, lhs_addr, rhs_addr) =
        (dst as usize, lhs.as_ptr() as usize, rhs.as_ptr() as usize);
    // One block: rows r0.., columns c0.., of size (rows, cols).
    let block = |r0: usize, rows: usize, c0: usize, cols: usize| {
        // SAFETY: the block lies inside dst (m × n, row stride n) and reads
        // rows r0..r0+rows of lhs and columns c0..c0+cols of rhs, inside
        // the extents checked above; blocks write disjoint parts of dst.
        unsafe {
            one_thread_product(
                (rows, cols, k),
                ((dst_addr as *mut f32).add(r0 * n + c0), n),
                ((lhs_addr as *const f32).add(r0 * l_rs), l_rs, l_cs),
                ((rhs_addr as *const f32).add(c0 * r_cs), r_rs, r_cs),
                accumulate,
            )
        }
    };
    run_blocks(&product_blocks((m, n, k), threads), block);
}

/// Run `block(first row, rows, first column, columns)` for each of
/// `blocks` ([`product_blocks`]), one task each on the pool (on this thread
/// when there is one block).
fn run_blocks(blocks: &[[usize; 4]], block: impl Fn(usize, usize, usize, usize) + Sync) {
    if let [[r0, rows, c0, cols]] = blocks[..] {
        block(r0, rows, c0, cols);
    } else {
        rayon::scope(|s| {
            for &[r0, rows, c0, cols] in blocks {
                let block = &block;
                s.spawn(move |_| block(r0, rows, c0, cols));
            }
        });
    }
}

/// How [`gemm_f32_at`] cuts an (m × n) product for `threads` threads:
/// blocks (first row, rows, first column, columns).
fn product_blocks((m, n, k): (usize, usize, usize), threads: usize) -> Vec<[usize; 4]> {
    // Below gemm's own threading threshold one thread does it all.
    let small = m * n * k < gemm::get_threading_threshold();
    let side = m.max(n);
    // Blocks of whole 16-float vectors, at least 64 wide.
    let width = side.div_ceil(threads.max(1)).next_multiple_of(16).max(64);
    if threads <= 1 || small || width >= side {
        return vec![[0, m, 0, n]];
    }
    (0..side)
        .step_by(width)
        .map(|start| {
            let size = width.min(side - start);
            if m >= n {
                [start, size, 0, n]
            } else {
                [0, m, start, size]
            }
        })
        .collect()
}

/// Whether `x Wᵀ`, (m × k)·(k × n) cut for `threads`, has the same bits
/// computed from W's panels ([`super::streamed`]) as by gemm from W: every
/// block must reach gemm's general kernel (gemm picks its paths for one
/// row, one column, or at most 16 × 16 elements per block), on a CPU where
/// that kernel is a chain of fused multiply-adds. MKL's products are not
/// covered (no such claim is made for them).
#[doc(hidden)]
pub fn transposed_product_is_exact((m, n, k): (usize, usize, usize), threads: usize) -> bool {
    product_blocks((m, n, k), threads)
        .iter()
        .all(|&[_, rows, _, cols]| super::streamed::exact_block((rows, cols, k)))
}

/// `x Wᵀ` for row-major x (rows × input) and W (out × input): the layout of
/// every linear layer's forward.
fn times_transposed(
    x: &[f32],
    w: &[f32],
    (rows, input, out): (usize, usize, usize),
    threads: usize,
) -> Vec<f32> {
    gemm_f32((rows, out, input), (x, input, 1), (w, 1, input), threads)
}

/// `x Wᵀ`, computed in the op itself; the backward skips the weight's
/// gradient when the weight is frozen.
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "driftui-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, input) = rows_of(xl.shape())?;
        let (out, wi) = wl.shape().dims2()?;
        if wi != input {
            bail!("linear: input of width {input}, weight ({out}, {wi})");
        }
        let y = times_transposed(
            data(xs, xl, "linear")?,
            data(ws, wl, "linear")?,
            (rows, input, out),
            candle_core::utils::get_num_threads(),
        );
        Ok((CpuStorage::F32(y), with_last(xl.shape(), out)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, input) = rows_of(x.shape())?;
        let grad = grad.reshape((rows, w.dim(0)?))?;
        let dx = if x.track_op() {
            Some(product(&grad, false, &w.detach(), false)?.reshape(x.shape())?)
        } else {
            None
        };
        // A frozen weight (LoRA's base) needs no gradient: skip its matmul.
        let dw = if w.track_op() {
            Some(product(
                &grad,
                true,
                &x.detach().reshape((rows, input))?,
                false,
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The rows and width of an input whose last dimension is the width.
fn rows_of(shape: &Shape) -> Result<(usize, usize)> {
    let input = *shape
        .dims()
        .last()
        .ok_or_else(|| candle_core::Error::Msg("linear: a scalar input".into()))?;
    Ok((shape.elem_count() / input.max(1), input))
}

/// `shape` with its last dimension set to `last`.
fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims = shape.dims().to_vec();
    if let Some(l) = dims.last_mut() {
        *l = last;
    }
    Shape::from(dims)
}

/// Rows up to which a product with a frozen weight reads the weight's
/// panels, where a decoder keeps them. gemm packs the weight into column
/// panels for every call, a strided scalar copy from W (out, in); with few
/// rows there is little arithmetic to hide that copy behind. 2 threads of
/// an AMX Xeon, `bench_smollm2 --mode matmul`, panels ÷ gemm from W: 40
/// rows ×1.2–2.0 (the vocabulary's 576 → 49,152 ×1.8), 328 rows ×1.0–1.25,
/// 1024 rows ×0.7–1.0.
pub const TRANSPOSED_ROWS: usize = 512;

/// Whether products may read panel copies at all in this process: the
/// panel products on ([`super::streamed::enabled`]) and gemm, not MKL,
/// computing the rest (the bits are claimed equal to gemm's only).
/// [`TransposedWeights`] hands out copies under this rule, and the memory
/// check counts them under it.
pub fn panels_may_serve() -> bool {
    super::streamed::enabled() && super::blas::active().is_none()
}

/// Copies of frozen weights as [`Panels`] (Wᵀ in column panels of 16, the
/// order the product reads them in), by the weight's tensor id, made on
/// first use; handed out only where the product from the copy has the same
/// bits as gemm's from the weight ([`transposed_product_is_exact`]). The
/// name is older than the panels: they began as plain row-major Wᵀ, which
/// gemm still packed on every call. A tensor id names
/// fixed data except for a Var and the detached views of one (an optimizer
/// updates them in place): those must not reach a decoder that keeps
/// copies.
#[derive(Debug, Default)]
pub struct TransposedWeights(
    Mutex<std::collections::HashMap<candle_core::TensorId, std::sync::Arc<Panels>>>,
);

impl TransposedWeights {
    /// W's panels for a product of `x`'s rows with the frozen `w`, where
    /// they apply.
    pub fn for_rows(&self, x: &Tensor, w: &Tensor) -> Option<Result<std::sync::Arc<Panels>>> {
        if !applies(x) {
            return None;
        }
        let rows = rows_of(x.shape()).ok()?.0;
        self.for_rows_count(rows, w)
    }

    /// W's panels for a product of `rows` rows with the frozen `w` (out,
    /// in): for 2 to [`TRANSPOSED_ROWS`] rows, without MKL, when every
    /// block of the product has gemm's bits from the panels.
    pub fn for_rows_count(
        &self,
        rows: usize,
        w: &Tensor,
    ) -> Option<Result<std::sync::Arc<Panels>>> {
        if !(2..=TRANSPOSED_ROWS).contains(&rows)
            || !panels_may_serve()
            || !applies(w)
            || w.track_op()
        {
            return None;
        }
        let (out, input) = w.dims2().ok()?;
        let threads = candle_core::utils::get_num_threads();
        if !transposed_product_is_exact((rows, out, input), threads) {
            return None;
        }
        Some(self.of(w))
    }

    /// A cache holding `other`'s copies (the same ones, shared): a pass
    /// over a LoRA policy's merged weights starts with the base's copies of
    /// the frozen tensors it shares with the policy (the embedding or head
    /// among them), which then are not made again. Only frozen tensors are
    /// ever copied, so the shared copies stay true.
    pub fn seeded_from(other: &TransposedWeights) -> TransposedWeights {
        let map = other.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        TransposedWeights(Mutex::new(map))
    }

    /// Whether it holds a copy of `w`.
    pub fn holds(&self, w: &Tensor) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&w.id())
    }

    /// How many copies it holds.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn of(&self, w: &Tensor) -> Result<std::sync::Arc<Panels>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let id = w.id();
        if let Some(t) = map.get(&id) {
            return Ok(t.clone());
        }
        // (A copy of a strided weight has another id: the key is w's.)
        let w = w.contiguous()?;
        let (storage, layout) = w.storage_and_layout();
        let t = std::sync::Arc::new(Panels::of_weight(
            cpu_slice(&storage, layout, "transposed copies")?,
            w.dims2()?,
        ));
        map.insert(id, t.clone());
        Ok(t)
    }
}

/// `x Wᵀ` from W's panels, for x (..., in) with no gradient: (..., out),
/// the same bits as [`linear`] (where [`transposed_product_is_exact`]).
pub fn linear_transposed(x: &Tensor, w: &Panels) -> Result<Tensor> {
    linear_transposed_on(x, w, candle_core::utils::get_num_threads())
}

/// [`linear_transposed`] cut for `threads` threads (as [`product_on`]).
#[doc(hidden)]
pub fn linear_transposed_on(x: &Tensor, w: &Panels, threads: usize) -> Result<Tensor> {
    let (rows, input) = rows_of(x.shape())?;
    if input != w.input() {
        bail!("linear: input of width {input}, weight of {}", w.input());
    }
    if !transposed_product_is_exact((rows, w.out(), input), threads) {
        bail!(
            "linear: {rows} rows x {input} -> {} is not gemm's kernel here",
            w.out()
        );
    }
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let dst = times_panels(cpu_slice(&storage, layout, "linear")?, rows, w, threads);
    drop(storage);
    Tensor::from_vec(dst, with_last(x.shape(), w.out()), x.device())
}

/// `x Wᵀ` for row-major x (rows × W's input) from W's panels, cut for
/// `threads` as [`product_blocks`] cuts it; the caller has checked
/// [`transposed_product_is_exact`] for that cut.
fn times_panels(xs: &[f32], rows: usize, w: &Panels, threads: usize) -> Vec<f32> {
    let input = w.input();
    assert_eq!(xs.len(), rows * input, "times_panels: x");
    let (n, len) = (w.out(), rows * w.out());
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    let (dst_addr, x_addr) = (dst.as_mut_ptr() as usize, xs.as_ptr() as usize);
    let block = |r0: usize, rows: usize, c0: usize, cols: usize| {
        // SAFETY: the block lies inside dst (rows × n) and reads rows
        // r0..r0+rows of x; blocks write disjoint parts of dst; c0 is a
        // multiple of 16 (product_blocks cuts whole vectors) and the rule
        // above holds for every block.
        unsafe {
            super::streamed::block(
                (rows, cols),
                ((dst_addr as *mut f32).add(r0 * n + c0), n),
                ((x_addr as *const f32).add(r0 * input), input),
                w,
                c0,
            )
        }
    };
    run_blocks(&product_blocks((rows, n, input), threads), block);
    // SAFETY: the blocks cover dst, each element written once.
    unsafe { dst.set_len(len) };
    dst
}

/// `x Wᵀ` for x (..., in), W (out, in): (..., out). Any leading dimensions
/// stay as they are (no reshape in the graph, whose backward candle would
/// zero-fill and add a buffer for).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !applies(x) || !applies(w) {
        let (rows, input) = rows_of(x.shape())?;
        let y = x.reshape((rows, input))?.matmul(&w.t()?)?;
        return y.reshape(with_last(x.shape(), w.dim(0)?));
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}

// ---------------------------------------------------------------- LoRA

/// `x Wᵀ + s · (m ⊙ x) Aᵀ Bᵀ` with W frozen, in one op: the plain path keeps
/// four (rows × out) tensors per adapted layer for the backward (the base
/// product, the two adapter products, the scaled one) and runs two
/// element-wise passes over them; this keeps only `s (m ⊙ x) Aᵀ`, (rows × r).
struct LoraLinear {
    w: Tensor,
    /// W's panels, where the decoder keeps them and they give gemm's bits
    /// for these rows: the forward's `x Wᵀ` reads them.
    panels: Option<std::sync::Arc<Panels>>,
    scale: f32,
    /// The dropout mask over x, if any.
    mask: Option<Vec<f32>>,
    /// `s (m ⊙ x) Aᵀ` from the forward, for B's gradient.
    h: Mutex<Option<Tensor>>,
}

impl LoraLinear {
    fn masked<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.mask {
            Some(m) => x.iter().zip(m).map(|(a, b)| a * b).collect(),
            None => std::borrow::Cow::Borrowed(x),
        }
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "driftui-lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, input) = rows_of(xl.shape())?;
        let (r, ai) = al.shape().dims2()?;
        let (out, br) = bl.shape().dims2()?;
        let (wo, wi) = self.w.dims2()?;
        if ai != input || wi != input || br != r || wo != out {
            bail!(
                "lora linear: x ({rows}, {input}), W ({wo}, {wi}), A ({r}, {ai}), B ({out}, {br})"
            );
        }
        let threads = candle_core::utils::get_num_threads();
        let x = data(xs, xl, "lora linear")?;
        // Panels only where they give gemm's bits for this cut (the
        // decoder checked as much when it handed them out); gemm otherwise.
        let panels = self.panels.as_ref().filter(|p| {
            p.out() == out
                && p.input() == input
                && transposed_product_is_exact((rows, out, input), threads)
        });
        let mut y = match panels {
            Some(p) => times_panels(x, rows, p, threads),
            None => {
                let (ws, wl) = self.w.storage_and_layout();
                let w = cpu_slice(&ws, wl, "lora linear")?;
                times_transposed(x, w, (rows, input, out), threads)
            }
        };
        let xd = self.masked(x);
        let a = data(as_, al, "lora linear")?;
        let mut h = times_transposed(&xd, a, (rows, input, r), threads);
        h.iter_mut().for_each(|v| *v *= self.scale);
        // y += h Bᵀ, into the base product's buffer.
        let b = data(bs, bl, "lora linear")?;
        gemm_f32_add(&mut y, (rows, out, r), (&h, r, 1), (b, 1, r), threads);
        let h = Tensor::from_vec(h, (rows, r), &candle_core::Device::Cpu)?;
        *self
            .h
            .lock()
            .map_err(|_| candle_core::Error::Msg("lora linear: poisoned".into()))? = Some(h);
        Ok((CpuStorage::F32(y), with_last(xl.shape(), out)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need_dx = x.track_op();
        let x_shape = x.shape().clone();
        let (rows, input) = rows_of(&x_shape)?;
        let grad = &grad.reshape((rows, b.dim(0)?))?;
        let (x, a, b) = (x.detach().reshape((rows, input))?, a.detach(), b.detach());
        let s = self.scale as f64;
        // g B (rows × r), the gradient reaching s (m ⊙ x) Aᵀ.
        let gb = product(grad, false, &b, false)?;
        let mask = match &self.mask {
            Some(m) => Some(Tensor::from_vec(m.clone(), x.shape(), x.device())?),
            None => None,
        };
        let xd = match &mask {
            Some(m) => (&x * m)?,
            None => x.clone(),
        };
        let dx = if need_dx {
            // g W + s (g B A) ⊙ m, summed in one buffer on the pool's threads
            // (candle's add would run on this thread alone).
            let threads = candle_core::utils::get_num_threads();
            let out = b.dim(0)?;
            let r = a.dim(0)?;
            let (grad, gbs, a) = (grad.contiguous()?, (&gb * s)?, a.contiguous()?);
            let what = "lora linear";
            let ((gs, gl), (ws, wl)) = (grad.storage_and_layout(), self.w.storage_and_layout());
            let ((ss, sl), (as_, al)) = (gbs.storage_and_layout(), a.storage_and_layout());
            let (g, w) = (cpu_slice(&gs, gl, what)?, cpu_slice(&ws, wl, what)?);
            let (gbs, a) = (cpu_slice(&ss, sl, what)?, cpu_slice(&as_, al, what)?);
            let mut dx = gemm_f32((rows, input, out), (g, out, 1), (w, input, 1), threads);
            let lora = ((rows, input, r), (gbs, r, 1), (a, input, 1));
            match &self.mask {
                None => gemm_f32_add(&mut dx, lora.0, lora.1, lora.2, threads),
                Some(m) => {
                    let lora = gemm_f32(lora.0, lora.1, lora.2, threads);
                    dx.par_chunks_mut(input)
                        .zip(lora.par_chunks(input).zip(m.par_chunks(input)))
                        .for_each(|(d, (l, m))| {
                            d.iter_mut()
                                .zip(l.iter().zip(m))
                                .for_each(|(d, (l, m))| *d += l * m)
                        });
                }
            }
            Some(Tensor::from_vec(dx, &x_shape, x.device())?)
        } else {
            None
        };
        let da = (product(&gb, true, &xd, false)? * s)?;
        let h = self
            .h
            .lock()
            .map_err(|_| candle_core::Error::Msg("lora linear: poisoned".into()))?
            .take();
        let Some(h) = h else {
            bail!("lora linear: the backward ran before the forward");
        };
        let db = product(grad, true, &h, false)?;
        Ok((dx, Some(da), Some(db)))
    }
}

/// `x Wᵀ + s · (mask ⊙ x) Aᵀ Bᵀ` for a frozen W (out, in), A (r, in),
/// B (out, r), x (..., in); the gradient reaches x, A and B. `panels`, W's
/// panels from [`TransposedWeights::for_rows`], make the forward's `x Wᵀ`
/// read them instead of packing W: the same bits.
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    panels: Option<std::sync::Arc<Panels>>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Vec<f32>>,
) -> Result<Tensor> {
    if let Some(m) = &mask {
        if m.len() != x.elem_count() {
            bail!(
                "lora linear: a mask of {} for {} inputs",
                m.len(),
                x.elem_count()
            );
        }
    }
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraLinear {
            w: w.contiguous()?.detach(),
            panels,
            scale: scale as f32,
            mask,
            h: Mutex::new(None),
        },
    )
}

// ---------------------------------------------------------------- vocabulary

/// Take a precomputed value out of its slot (each op runs forward once).
fn take_value(slot: &Mutex<Option<Tensor>>, what: &str) -> Result<(CpuStorage, Shape)> {
    let value = slot
        .lock()
        .map_err(|_| candle_core::Error::Msg(format!("{what}: poisoned")))?
        .take();
    match value {
        Some(v) => Ok((to_storage(&v)?, v.shape().clone())),
        None => bail!("{what}: the forward value was already used"),
    }
}

/// Rows of logits per chunk: about 16M floats (64 MB) at a time.
fn chunk_rows(vocab: usize) -> usize {
    ((16usize << 20) / vocab.max(1)).max(1)
}

/// Keep the logits for the backward when they take at most this many floats
/// (128 MiB); recompute them chunk by chunk otherwise. Measured on SmolLM2
/// full 4×256 (AVX-512 EPYC, 2 cores, 3 rounds each): keeping them (1 GiB
/// limit) peaked at 5.49 GB, recomputing at 5.31 GB (PyTorch 5.23–5.32),
/// at the same speed within the rounds' noise (231–255 vs 216–273 tok/s).
const KEEP_LOGITS: usize = 32 << 20;

/// Per row: log p(target), the mean logit, the argmax (as f32).
struct TokenLogprobs {
    value: Mutex<Option<Tensor>>,
    targets: Vec<u32>,
    /// log Σ exp(logits) per row.
    lse: Vec<f32>,
    /// Rows per chunk.
    rows: usize,
    /// The logits chunk by chunk, when small enough to keep.
    logits: Option<Vec<Tensor>>,
    /// With the projection frozen: `(onehot(target) − softmax) W` per row,
    /// (n, H), so that the backward is `grad ⊙ it` and needs no vocabulary
    /// product at all.
    direction: Option<Tensor>,
}

impl CustomOp2 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "driftui-token-logprobs"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        take_value(&self.value, "token_logprobs")
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Only log p(target) is differentiable; the mean logit and argmax
        // are statistics.
        if let Some(direction) = &self.direction {
            // d log p / d h = (onehot − softmax) W, computed in the forward.
            let g = grad.narrow(1, 0, 1)?.contiguous()?;
            return Ok((Some(direction.broadcast_mul(&g)?), None));
        }
        let g: Vec<f32> = grad.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?;
        let (n, _) = h.dims2()?;
        let rows = self.rows;
        let hd = h.detach();
        let wd = w.detach();
        let mut dh = Vec::new();
        let mut dw: Option<Tensor> = None;
        let mut start = 0;
        let mut c = 0;
        while start < n {
            let len = rows.min(n - start);
            let hc = hd.narrow(0, start, len)?;
            let logits = match &self.logits {
                Some(l) => l[c].clone(),
                None => product(&hc, false, &wd, true)?,
            };
            let dl = logits.apply_op1_no_bwd(&LogitsGrad {
                targets: self.targets[start..start + len].to_vec(),
                lse: self.lse[start..start + len].to_vec(),
                grad: g[start..start + len].to_vec(),
            })?;
            if h.track_op() {
                dh.push(product(&dl, false, &wd, false)?);
            }
            if w.track_op() {
                let part = product(&dl, true, &hc, false)?;
                dw = Some(match dw {
                    None => part,
                    Some(acc) => (acc + part)?,
                });
            }
            start += len;
            c += 1;
        }
        let dh = if h.track_op() {
            Some(Tensor::cat(&dh, 0)?)
        } else {
            None
        };
        Ok((dh, dw))
    }
}

/// d log p(target) / d logits = onehot(target) − softmax, times the row's grad.
struct LogitsGrad {
    targets: Vec<u32>,
    lse: Vec<f32>,
    grad: Vec<f32>,
}

impl CustomOp1 for LogitsGrad {
    fn name(&self) -> &'static str {
        "driftui-logits-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "logits grad")?;
        let v = *l.dims().last().unwrap_or(&1);
        let mut out = zeros(x.len());
        out.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .enumerate()
            .for_each(|(r, (o, xr))| {
                logits_grad_row(o, xr, self.lse[r], self.grad[r], self.targets[r] as usize)
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

row_kernel! {
    /// One row of [`LogitsGrad`]: `o = g · (onehot(target) − exp(x − lse))`.
    /// xi − lse ≤ 0 (lse ≥ the row's maximum): the vectorising exp. Compiled
    /// for AVX-512 and AVX2 too (see [`logit_stats_row`]).
    fn logits_grad_row(o: &mut [f32], xr: &[f32], lse: f32, g: f32, target: usize) {
        for (oi, &xi) in o.iter_mut().zip(xr) {
            *oi = -g * exp_nonpositive(xi - lse);
        }
        o[target] += g;
    }
}

/// Columns of [`LogitStats`]' output.
const STATS: usize = 5;

/// Row statistics of a logits chunk: (log p(target), lse, mean, argmax,
/// entropy).
struct LogitStats {
    targets: Vec<u32>,
}

impl CustomOp1 for LogitStats {
    fn name(&self) -> &'static str {
        "driftui-logit-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "logit stats")?;
        let v = *l.dims().last().unwrap_or(&1);
        let rows = x.len() / v;
        let mut out = vec![0f32; rows * STATS];
        out.par_chunks_mut(STATS)
            .zip(x.par_chunks(v))
            .enumerate()
            .for_each(|(r, (o, xr))| logit_stats_row(xr, self.targets[r] as usize, o));
        Ok((CpuStorage::F32(out), Shape::from((rows, STATS))))
    }
}

row_kernel! {
    /// [`LogitStats`] of one row of logits into `o` (STATS floats).
    ///
    /// Compiled three times, for AVX-512, AVX2 (each with FMA) and the x86-64
    /// baseline, the best the CPU has picked at run time: the baseline's SSE
    /// does 4 lanes of the exp where AVX-512 does 16 (on an AMX Xeon the row
    /// statistics took 6.4% of a scoring pass at batch 8). The arithmetic is
    /// the same in every version (no fused multiply-add is formed, the sums
    /// run over the same fixed lanes), so are the bits.
    fn logit_stats_row(xr: &[f32], target: usize, o: &mut [f32]) {
        let mx = row_max(xr);
        // The first index of the maximum (0 when no logit is above −∞), and the
        // maximum as that element (a tie of −0 and +0 keeps the first one's
        // sign, as a scan for the first strict maximum does).
        let (mx, arg) = match xr.iter().position(|&xi| xi == mx) {
            Some(i) if mx > f32::NEG_INFINITY => (xr[i], i),
            _ => (mx, 0),
        };
        let (sum, se, sez) = shifted_exp_sums(xr, mx);
        let lse = mx as f64 + se.ln();
        o[0] = (xr[target] as f64 - lse) as f32;
        o[1] = lse as f32;
        o[2] = (sum / xr.len() as f64) as f32;
        o[3] = arg as f32;
        // Entropy of the next-token distribution: lse − Σ p·z.
        o[4] = (lse - sez / se) as f32;
    }
}

/// The largest value of `x` that is not NaN (−∞ when there is none), over
/// [`LANES`] running maxima, which vectorise (the maximum is exact in any
/// order).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut groups = x.chunks_exact(LANES);
    for g in &mut groups {
        for k in 0..LANES {
            if g[k] > lanes[k] {
                lanes[k] = g[k];
            }
        }
    }
    let mut mx = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(groups.remainder()) {
        if v > mx {
            mx = v;
        }
    }
    mx
}

/// Lanes of the blocked sums below: independent accumulators the compiler
/// keeps in vector registers.
const LANES: usize = 16;
/// Terms per lane summed in f32 before the block's sums join the f64 totals.
const BLOCK: usize = 16 * LANES;

/// For one row of logits `x` with maximum `mx`: (Σ x, Σ e, Σ e·x) with
/// e = exp(x − mx). A single f32 running sum of 49k terms drifts by ~1e-3
/// relative (SmolLM2's log-probs came out 3e-3 too high), and one f64
/// running sum is a serial chain of scalar adds behind a scalar `expf`
/// call per term (it cost 6–30% of the forward). Here each lane sums 16
/// terms in f32 (relative error ≤ 16 ulp) and the blocks join in f64, and
/// the exponential is [`exp_nonpositive`], which vectorises.
#[inline(always)]
fn shifted_exp_sums(x: &[f32], mx: f32) -> (f64, f64, f64) {
    let (mut s, mut e, mut ez) = (0f64, 0f64, 0f64);
    for block in x.chunks(BLOCK) {
        let mut ls = [0f32; LANES];
        let mut le = [0f32; LANES];
        let mut lz = [0f32; LANES];
        let mut groups = block.chunks_exact(LANES);
        for g in &mut groups {
            for k in 0..LANES {
                let xi = g[k];
                let ei = exp_nonpositive(xi - mx);
                ls[k] += xi;
                le[k] += ei;
                lz[k] += ei * xi;
            }
        }
        for &xi in groups.remainder() {
            let ei = exp_nonpositive(xi - mx);
            ls[0] += xi;
            le[0] += ei;
            lz[0] += ei * xi;
        }
        s += ls.iter().map(|&v| f64::from(v)).sum::<f64>();
        e += le.iter().map(|&v| f64::from(v)).sum::<f64>();
        ez += lz.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (s, e, ez)
}

/// Σ x over 16 f32 lanes (vectorised; rows here are at most a few
/// thousand terms, each in (0, 1]).
#[inline(always)]
fn laned_sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut groups = x.chunks_exact(LANES);
    for g in &mut groups {
        for k in 0..LANES {
            lanes[k] += g[k];
        }
    }
    lanes.iter().sum::<f32>() + groups.remainder().iter().sum::<f32>()
}

/// exp(x) for x ≤ 0 in f32, within 2 ulp of the exact value, with no branch
/// and no library call, so that a loop over it vectorises: x = n·ln 2 + r
/// with |r| ≤ ln 2 / 2, a degree-6 polynomial for exp(r) (Cephes' `expf`
/// coefficients), and 2^n built in the exponent bits. Below −87.3 (where
/// exp underflows f32's normal range) and at −∞ it is 0; NaN stays NaN.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: n·LN2_HI is exact for the n that occur here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const FLOOR: f32 = -87.3;
    let xc = x.max(FLOOR);
    // Round to nearest for xc·log2(e) ≤ 0: truncating the positive −z + ½
    // (a plain conversion, which vectorises where `round` would not).
    let n = -((0.5 - xc * LOG2E) as i32);
    let nf = n as f32;
    let r = xc - nf * LN2_HI - nf * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n ∈ [−126, 0]: 2^n is a normal float.
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    let y = er * scale;
    if x < FLOOR {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// How [`token_logprobs_with`] splits its work.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPlan {
    /// Rows of logits computed at a time.
    pub rows: usize,
    /// Keep the logits for the backward when they hold at most this many
    /// floats; recompute them otherwise.
    pub keep_floats: usize,
}

impl ChunkPlan {
    /// The chunking [`token_logprobs`] uses for a vocabulary of `vocab`.
    fn for_vocab(vocab: usize) -> ChunkPlan {
        ChunkPlan {
            rows: chunk_rows(vocab),
            keep_floats: KEEP_LOGITS,
        }
    }
}

/// For hidden rows `h` (n, H), the projection `w` (V, H) and one target per
/// row: (n, 4) with log p(target) (differentiable), then statistics without
/// gradient: the mean logit, the argmax index and the entropy of the
/// next-token distribution.
pub fn token_logprobs(h: &Tensor, w: &Tensor, targets: &Tensor) -> Result<Tensor> {
    token_logprobs_with(h, w, targets, ChunkPlan::for_vocab(w.dim(0)?))
}

/// [`token_logprobs`], each chunk's logits from the panels `transposed`
/// hands out for a frozen `w` (a LoRA run's head): the same numbers.
pub fn token_logprobs_kept(
    h: &Tensor,
    w: &Tensor,
    transposed: Option<&TransposedWeights>,
    targets: &Tensor,
) -> Result<Tensor> {
    token_logprobs_from(h, w, transposed, targets, ChunkPlan::for_vocab(w.dim(0)?))
}

/// [`token_logprobs`] with no gradient, each chunk's logits from the
/// panels of W that `transposed` hands out for it, if any: the same numbers
/// (see [`TransposedWeights`]).
pub fn token_logprobs_frozen(
    h: &Tensor,
    w: &Tensor,
    transposed: Option<&TransposedWeights>,
    targets: &Tensor,
) -> Result<Tensor> {
    token_logprobs_kept(&h.detach(), w, transposed, targets)
}

/// [`token_logprobs`] with an explicit chunking (tests use small chunks).
pub fn token_logprobs_with(
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    plan: ChunkPlan,
) -> Result<Tensor> {
    token_logprobs_from(h, w, None, targets, plan)
}

fn token_logprobs_from(
    h: &Tensor,
    w: &Tensor,
    transposed: Option<&TransposedWeights>,
    targets: &Tensor,
    plan: ChunkPlan,
) -> Result<Tensor> {
    let (n, hidden) = h.dims2()?;
    let (vocab, wh) = w.dims2()?;
    if wh != hidden {
        bail!("token_logprobs: hidden size {hidden} vs projection {wh}");
    }
    let targets: Vec<u32> = targets.flatten_all()?.to_vec1()?;
    if targets.len() != n {
        bail!("token_logprobs: {n} rows, {} targets", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("token_logprobs: target {t} outside the vocabulary of {vocab}");
    }
    let hd = h.detach();
    let wd = w.detach();
    let rows = plan.rows.max(1);
    // A frozen projection (LoRA's, or a reference model's head under a
    // trained one): the gradient reaching h is the row's grad times
    // (onehot − softmax) W, a (n, H) tensor the forward can compute from the
    // chunk it holds; the backward then needs neither the logits nor a
    // product with W (at 4 × 256 on SmolLM2 that is a recomputed chunk and a
    // product of 58 GFLOP each).
    let frozen = h.track_op() && !w.track_op();
    let keep = !frozen && (h.track_op() || w.track_op()) && n * vocab <= plan.keep_floats;
    let mut kept = Vec::new();
    let mut directions = Vec::new();
    let mut stats = Vec::new();
    let mut start = 0;
    while start < n {
        let len = rows.min(n - start);
        let rows_h = hd.narrow(0, start, len)?;
        let wt = transposed
            .and_then(|c| c.for_rows_count(len, w))
            .transpose()?;
        let logits = match wt {
            Some(wt) => linear_transposed(&rows_h, &wt)?,
            None => product(&rows_h, false, &wd, true)?,
        };
        let chunk_stats = logits.apply_op1_no_bwd(&LogitStats {
            targets: targets[start..start + len].to_vec(),
        })?;
        if frozen {
            let unit = logits.apply_op1_no_bwd(&LogitsGrad {
                targets: targets[start..start + len].to_vec(),
                lse: chunk_stats.narrow(1, 1, 1)?.flatten_all()?.to_vec1()?,
                grad: vec![1.0; len],
            })?;
            drop(logits);
            directions.push(product(&unit, false, &wd, false)?);
        } else if keep {
            kept.push(logits);
        }
        stats.push(chunk_stats);
        start += len;
    }
    let stats = Tensor::cat(&stats, 0)?;
    let lse: Vec<f32> = stats.narrow(1, 1, 1)?.flatten_all()?.to_vec1()?;
    let value = Tensor::cat(
        &[
            stats.narrow(1, 0, 1)?,
            stats.narrow(1, 2, 1)?,
            stats.narrow(1, 3, 1)?,
            stats.narrow(1, 4, 1)?,
        ],
        D::Minus1,
    )?;
    if !h.track_op() && !w.track_op() {
        return Ok(value);
    }
    h.apply_op2(
        w,
        TokenLogprobs {
            value: Mutex::new(Some(value)),
            targets,
            lse,
            rows,
            logits: keep.then_some(kept),
            direction: if frozen {
                Some(Tensor::cat(&directions, 0)?)
            } else {
                None
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_without_avx2_or_fma_is_named_once() {
        assert_eq!(kernel_warning(true, true), None);
        let w = kernel_warning(false, true).unwrap();
        assert!(w.starts_with("this CPU has no AVX2:"), "{w}");
        let w = kernel_warning(false, false).unwrap();
        assert!(w.starts_with("this CPU has no AVX2 or FMA:"), "{w}");
        assert!(kernel_warning(true, false).unwrap().contains("no FMA"));
    }

    /// The vectorisable exp against f64's over the whole range it serves,
    /// and at its edges.
    #[test]
    fn exp_nonpositive_is_within_two_ulp_of_exact() {
        let mut worst = 0f64;
        let mut x = 0f32;
        while x > -87.0 {
            let got = f64::from(exp_nonpositive(x));
            let want = f64::from(x).exp();
            worst = worst.max((got - want).abs() / want);
            x -= 0.000_731;
        }
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst <= 2.4e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-1e30), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    /// The row kernels as dispatched (AVX-512 or AVX2 where this CPU has
    /// them) against the same arithmetic written out here for the x86-64
    /// baseline (the first strict maximum by a scalar scan, as before the
    /// kernels were multiversioned): equal bits, on rows of SmolLM2's
    /// vocabulary with a ragged tail, a tie for the maximum, −∞ and NaN.
    #[test]
    fn dispatched_row_kernels_give_the_baseline_bits() {
        let v = 49_152 + 5;
        let mut x: Vec<f32> = (0..v)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 30.0)
            .collect();
        x[17] = f32::NEG_INFINITY;
        // A tie: the first index of the maximum is the argmax.
        x[40_000] = 16.0;
        x[45_000] = 16.0;
        x[v - 1] = 16.0;
        let first_strict_max = |x: &[f32]| {
            let (mut mx, mut arg) = (f32::NEG_INFINITY, 0usize);
            for (i, &xi) in x.iter().enumerate() {
                if xi > mx {
                    mx = xi;
                    arg = i;
                }
            }
            (mx, arg)
        };
        let (mx, arg) = first_strict_max(&x);
        assert_eq!(arg, 40_000);
        let (sum, se, sez) = shifted_exp_sums(&x, mx);
        let lse = mx as f64 + se.ln();
        let target = 1234;
        let want = [
            (x[target] as f64 - lse) as f32,
            lse as f32,
            (sum / v as f64) as f32,
            arg as f32,
            (lse - sez / se) as f32,
        ];
        let mut got = [0f32; STATS];
        logit_stats_row(&x, target, &mut got);
        assert_eq!(
            got.map(f32::to_bits),
            want.map(f32::to_bits),
            "{got:?} vs {want:?}"
        );

        // NaN is never the maximum; a row of −∞ and NaN has argmax 0.
        let mut y = x.clone();
        y[3] = f32::NAN;
        y[40_000] = f32::NAN;
        assert_eq!(row_max(&y), first_strict_max(&y).0);
        let mut o = [0f32; STATS];
        logit_stats_row(&y, target, &mut o);
        assert_eq!(o[3], 45_000.0);
        // The maximum in the ragged tail past the last 16 lanes.
        y[v - 2] = 20.0;
        logit_stats_row(&y, target, &mut o);
        assert_eq!(o[3], (v - 2) as f32);
        let blank = [f32::NAN, f32::NEG_INFINITY, f32::NAN];
        assert_eq!(row_max(&blank), f32::NEG_INFINITY);
        logit_stats_row(&blank, 1, &mut o);
        assert_eq!(o[3], 0.0);

        // The gradient row: g · (onehot − exp(x − lse)).
        let (lse, g) = (want[1], -0.75f32);
        let mut want_grad: Vec<f32> = x.iter().map(|&xi| -g * exp_nonpositive(xi - lse)).collect();
        want_grad[target] += g;
        let mut got_grad = vec![0f32; v];
        logits_grad_row(&mut got_grad, &x, lse, g, target);
        assert!(got_grad
            .iter()
            .zip(&want_grad)
            .all(|(a, b)| a.to_bits() == b.to_bits()));

        // Softmax rows of attention's lengths, masked tail and all.
        for len in [1, 7, 41, 256] {
            let row: Vec<f32> = x[..len].to_vec();
            let scale = 0.125f32;
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut want: Vec<f32> = row
                .iter()
                .map(|&r| exp_nonpositive(scale * (r - m)))
                .collect();
            let inv = 1.0 / laned_sum(&want);
            want.iter_mut().for_each(|w| *w *= inv);
            let mut got = row.clone();
            softmax_in_place(&mut got, scale);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "softmax of {len}"
            );
        }
    }

    /// The blocked sums against f64 sums of f64 exponentials, on a row of
    /// SmolLM2's vocabulary size with a ragged tail.
    #[test]
    fn blocked_sums_match_f64_on_a_vocabulary_row() {
        let v = 49_152 + 7;
        let x: Vec<f32> = (0..v)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 20.0)
            .collect();
        let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (s, e, ez) = shifted_exp_sums(&x, mx);
        let (mut ws, mut we, mut wz) = (0f64, 0f64, 0f64);
        for &xi in &x {
            let ei = (f64::from(xi) - f64::from(mx)).exp();
            ws += f64::from(xi);
            we += ei;
            wz += ei * f64::from(xi);
        }
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-30);
        assert!(rel(e, we) < 1e-6, "Σe {e} vs {we}");
        assert!(rel(ez, wz) < 1e-6, "Σe·x {ez} vs {wz}");
        // Σx nearly cancels (symmetric values): compare on its scale.
        assert!((s - ws).abs() < 1e-6 * v as f64 * 10.0, "Σx {s} vs {ws}");
    }
}
