//! AdamW with parameter groups (no weight decay on norms and biases), global
//! gradient-norm clipping, and a one-pass fused update on CPU f32 tensors.

use crate::model::fused;
use anyhow::{bail, Context, Result};
use candle_core::{backprop::GradStore, CpuStorage, DType, Layout, Storage, Tensor, Var};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// AdamW's hyper-parameters (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Moment estimates of one parameter.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    /// CPU f32 fast path: moments in plain memory.
    cpu: Option<Mutex<Moments>>,
    /// Other devices and dtypes: moments as tensors.
    tensors: Option<(Tensor, Tensor)>,
}

/// Decides which parameters get weight decay: not norms, not biases
/// (transformers' `get_decay_parameter_names`).
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm"))
}

pub struct AdamW {
    slots: Vec<Slot>,
    pub cfg: AdamWConfig,
    /// Optimizer steps taken.
    pub step: u64,
}

impl AdamW {
    /// Over the given trainable parameters, in sorted name order.
    pub fn new(vars: &BTreeMap<String, Var>, cfg: AdamWConfig) -> Result<Self> {
        let slots = vars
            .iter()
            .map(|(name, var)| {
                let fast = fused::applies(var.as_tensor());
                let n = var.elem_count();
                Ok(Slot {
                    name: name.clone(),
                    var: var.clone(),
                    decay: decays(name),
                    cpu: fast.then(|| {
                        Mutex::new(Moments {
                            m: vec![0.0; n],
                            v: vec![0.0; n],
                        })
                    }),
                    tensors: if fast {
                        None
                    } else {
                        Some((var.zeros_like()?, var.zeros_like()?))
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            cfg,
            step: 0,
        })
    }

    /// Global L2 norm of the gradients, accumulated in f64 in name order.
    /// CPU f32 gradients are read in place (no squared copy), in fixed blocks
    /// summed in order, so the norm does not depend on the thread count.
    pub fn grad_norm(&self, grads: &BTreeMap<String, Tensor>) -> Result<f64> {
        let mut total = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(&s.name) {
                total += match sum_sq_in_place(g)? {
                    Some(x) => x,
                    None => g
                        .to_dtype(DType::F32)?
                        .sqr()?
                        .sum_all()?
                        .to_scalar::<f32>()? as f64,
                };
            }
        }
        Ok(total.sqrt())
    }

    /// One AdamW step with learning rate `lr`, gradients scaled by `scale`
    /// (clipping) first. Every parameter must have a gradient: one without is
    /// a bug (a detached op), not something to skip silently.
    pub fn step(&mut self, grads: &BTreeMap<String, Tensor>, lr: f64, scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for s in &mut self.slots {
            let g = grads
                .get(&s.name)
                .with_context(|| format!("the parameter {} received no gradient", s.name))?;
            let wd = if s.decay { c.weight_decay } else { 0.0 };
            if let Some(moments) = &s.cpu {
                let op = FusedAdamW {
                    moments,
                    lr,
                    scale,
                    beta1: c.beta1,
                    beta2: c.beta2,
                    eps: c.eps,
                    wd,
                    bc1,
                    bc2,
                };
                let g = g.contiguous()?;
                s.var.as_tensor().inplace_op2(&g, &op)?;
            } else if let Some((m, v)) = &mut s.tensors {
                let g = (g.to_dtype(DType::F32)? * scale)?;
                let p = s.var.as_tensor().to_dtype(DType::F32)?;
                let m_new = ((m.to_dtype(DType::F32)? * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                let v_new = ((v.to_dtype(DType::F32)? * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let update = ((&m_new / bc1)? / ((&v_new / bc2)?.sqrt()? + c.eps)?)?;
                let p_new = ((&p * (1.0 - lr * wd))? - (update * lr)?)?;
                s.var.set(&p_new.to_dtype(s.var.dtype())?)?;
                *m = m_new;
                *v = v_new;
            }
        }
        Ok(())
    }

    /// Moments by parameter name (`NAME.exp_avg`, `NAME.exp_avg_sq`), for snapshots.
    /// Bytes [`AdamW::state_tensors`] will hold (two moments per parameter),
    /// known before they are copied out: what a snapshot's optimizer file takes.
    pub fn state_bytes(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| {
                let per = match &s.tensors {
                    Some((m, _)) => m.dtype().size_in_bytes(),
                    None => std::mem::size_of::<f32>(),
                };
                2 * (s.var.elem_count() * per) as u64
            })
            .sum()
    }

    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for s in &self.slots {
            let (m, v) = if let Some(moments) = &s.cpu {
                let mo = moments
                    .lock()
                    .map_err(|_| anyhow::anyhow!("optimizer state poisoned"))?;
                (
                    Tensor::from_slice(&mo.m, s.var.shape(), s.var.device())?,
                    Tensor::from_slice(&mo.v, s.var.shape(), s.var.device())?,
                )
            } else {
                let (m, v) = s.tensors.as_ref().expect("one of the two states");
                (m.clone(), v.clone())
            };
            out.insert(format!("{}.exp_avg", s.name), m);
            out.insert(format!("{}.exp_avg_sq", s.name), v);
        }
        Ok(out)
    }

    /// Restore moments saved by [`state_tensors`](Self::state_tensors).
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            let get = |suffix: &str| -> Result<Tensor> {
                let key = format!("{}.{suffix}", s.name);
                let t = state
                    .get(&key)
                    .with_context(|| format!("the optimizer state lacks {key}"))?;
                if t.dims() != s.var.dims() {
                    bail!(
                        "the optimizer state's {key} has shape {:?}, the parameter {:?}",
                        t.dims(),
                        s.var.dims()
                    );
                }
                Ok(t.clone())
            };
            let (m, v) = (get("exp_avg")?, get("exp_avg_sq")?);
            if let Some(moments) = &s.cpu {
                let mut mo = moments
                    .lock()
                    .map_err(|_| anyhow::anyhow!("optimizer state poisoned"))?;
                mo.m = m.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
                mo.v = v.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            } else {
                s.tensors = Some((m, v));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// p ← p − lr·(m̂ / (√v̂ + ε) + wd·p), with m, v updated from g·scale, in one
/// pass over memory.
struct FusedAdamW<'a> {
    moments: &'a Mutex<Moments>,
    lr: f64,
    scale: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    wd: f64,
    bc1: f64,
    bc2: f64,
}

impl candle_core::InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        pl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (p, g) else {
            candle_core::bail!("fused-adamw needs f32 parameters and gradients");
        };
        let (Some((ps, pe)), Some((gs, ge))) = (pl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("fused-adamw needs contiguous tensors");
        };
        let p = &mut p[ps..pe];
        let g = &g[gs..ge];
        let mut mo = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("optimizer state poisoned".into()))?;
        let Moments { m, v } = &mut *mo;
        if m.len() != p.len() || g.len() != p.len() {
            candle_core::bail!("fused-adamw: size mismatch");
        }
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (lr, eps, scale) = (self.lr as f32, self.eps as f32, self.scale as f32);
        let decay = 1.0 - (self.lr * self.wd) as f32;
        let (ibc1, isbc2) = (1.0 / self.bc1 as f32, 1.0 / (self.bc2 as f32).sqrt());
        // Element-wise, so blocks on any number of threads give the same bits.
        let block = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let gi = g * scale;
                let mi = b1 * *m + (1.0 - b1) * gi;
                let vi = b2 * *v + (1.0 - b2) * gi * gi;
                *m = mi;
                *v = vi;
                *p = *p * decay - lr * (mi * ibc1) / (vi.sqrt() * isbc2 + eps);
            }
        };
        if p.len() < 2 * UPDATE_BLOCK {
            block(p, g, m, v);
        } else {
            p.par_chunks_mut(UPDATE_BLOCK)
                .zip(g.par_chunks(UPDATE_BLOCK))
                .zip(m.par_chunks_mut(UPDATE_BLOCK))
                .zip(v.par_chunks_mut(UPDATE_BLOCK))
                .for_each(|(((p, g), m), v)| block(p, g, m, v));
        }
        Ok(())
    }
}

/// Elements per parallel block of the fused update: large enough that the
/// threads' hand-off is noise beside the memory traffic.
const UPDATE_BLOCK: usize = 1 << 15;
/// Elements per partial sum of [`sum_sq_in_place`].
const NORM_BLOCK: usize = 1 << 12;

/// Σx² of a CPU f32 tensor without a squared copy, in f64: 8 lanes per
/// block (vectorised; the pass is bound by memory, not by the adds),
/// blocks added in order. `None` for other
/// devices and dtypes.
fn sum_sq_in_place(t: &Tensor) -> Result<Option<f64>> {
    if !fused::applies(t) {
        return Ok(None);
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(c) = &*storage else {
        return Ok(None);
    };
    let x = fused::data(c, layout, "grad norm")?;
    let block = |x: &[f32]| -> f64 {
        let mut lanes = [0f64; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f64::from(v) * f64::from(v);
            }
        }
        let tail: f64 = chunks
            .remainder()
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum();
        lanes.iter().sum::<f64>() + tail
    };
    let parts: Vec<f64> = x.par_chunks(NORM_BLOCK).map(block).collect();
    Ok(Some(parts.iter().sum()))
}

/// Gradients of the given parameters from a backward pass, by name.
pub fn collect_grads(store: &GradStore, vars: &BTreeMap<String, Var>) -> BTreeMap<String, Tensor> {
    vars.iter()
        .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two AdamW steps on p = [1, -2] with g = [0.5, -1] then [0.1, 0.2],
    /// lr 0.1, wd 0.1, computed by hand from PyTorch's AdamW definition:
    ///   p ← p(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
    ///   p ← p − lr · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).
    #[test]
    fn matches_hand_computed_adamw_on_both_paths() {
        let expected = {
            let (b1, b2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8f64, 0.1f64, 0.1f64);
            let mut p = [1.0f64, -2.0];
            let mut m = [0.0f64; 2];
            let mut v = [0.0f64; 2];
            for (t, g) in [[0.5f64, -1.0], [0.1, 0.2]].iter().enumerate() {
                let t = (t + 1) as i32;
                for i in 0..2 {
                    p[i] *= 1.0 - lr * wd;
                    m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                    let mh = m[i] / (1.0 - b1.powi(t));
                    let vh = v[i] / (1.0 - b2.powi(t));
                    p[i] -= lr * mh / (vh.sqrt() + eps);
                }
            }
            p
        };
        // Worked on paper for w[0]: step 1 → 0.99 − 0.1 = 0.89; step 2:
        // 0.89·0.99 − 0.1·(0.055/0.19)/√(0.00025975/0.001999) = 0.800796.
        assert!((expected[0] - 0.800796).abs() < 1e-6, "{expected:?}");
        for dtype in [DType::F32, DType::F64] {
            let var = Var::from_tensor(
                &Tensor::new(&[1.0f32, -2.0], &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let mut vars = BTreeMap::new();
            vars.insert("w".to_string(), var.clone());
            let cfg = AdamWConfig {
                weight_decay: 0.1,
                ..Default::default()
            };
            let mut opt = AdamW::new(&vars, cfg).unwrap();
            for g in [[0.5f32, -1.0], [0.1, 0.2]] {
                let mut grads = BTreeMap::new();
                grads.insert(
                    "w".to_string(),
                    Tensor::new(&g, &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                );
                opt.step(&grads, 0.1, 1.0).unwrap();
            }
            let got = var
                .as_tensor()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for i in 0..2 {
                assert!(
                    (got[i] - expected[i]).abs() < 1e-5,
                    "{dtype:?}: {got:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn norms_and_biases_do_not_decay() {
        assert!(decays("model.layers.0.mlp.up_proj.weight"));
        assert!(!decays("model.layers.0.input_layernorm.weight"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.layers.0.self_attn.q_norm.weight"));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias"));
    }

    #[test]
    fn missing_gradient_is_an_error() {
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("w".to_string(), var);
        let mut opt = AdamW::new(&vars, AdamWConfig::default()).unwrap();
        let err = opt.step(&BTreeMap::new(), 0.1, 1.0).unwrap_err();
        assert!(err.to_string().contains("received no gradient"));
    }

    /// At a size that takes the parallel blocks (3.5 of them, a ragged end)
    /// the fused update equals the tensor path computed in f64 and gives the
    /// same bits on 1 and on 2 threads; the in-place norm equals a plain f64
    /// sum of squares.
    #[test]
    fn large_update_and_norm_match_reference_on_any_thread_count() {
        let n = UPDATE_BLOCK * 7 / 2 + 5;
        let p0: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 89) as f32 - 44.5) / 30.0)
            .collect();
        let run = |dtype: DType, threads: usize| -> (Vec<f64>, f64) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let t = Tensor::from_slice(&p0, n, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let var = Var::from_tensor(&t).unwrap();
                let mut vars = BTreeMap::new();
                vars.insert("w".to_string(), var.clone());
                let cfg = AdamWConfig {
                    weight_decay: 0.01,
                    ..Default::default()
                };
                let mut opt = AdamW::new(&vars, cfg).unwrap();
                let mut grads = BTreeMap::new();
                let gt = Tensor::from_slice(&g, n, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                grads.insert("w".to_string(), gt);
                let norm = opt.grad_norm(&grads).unwrap();
                for _ in 0..3 {
                    opt.step(&grads, 1e-3, 0.5).unwrap();
                }
                let p = var
                    .as_tensor()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                (p, norm)
            })
        };
        let (one, norm1) = run(DType::F32, 1);
        let (two, norm2) = run(DType::F32, 2);
        assert!(one == two, "the fused update depends on the thread count");
        assert_eq!(norm1.to_bits(), norm2.to_bits());
        let exact: f64 = g
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        assert!((norm1 - exact).abs() < 1e-12 * exact, "{norm1} vs {exact}");
        let (reference, _) = run(DType::F64, 1);
        let worst = one
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "fused vs f64 tensor path: {worst}");
        // The update moved every element (3 steps of ~lr each).
        assert!(one
            .iter()
            .zip(&p0)
            .all(|(a, &b)| (a - b as f64).abs() > 1e-4));
    }
}
