//! Low-rank adapters: `y = x Wᵀ + (α/r) · dropout(x) Aᵀ Bᵀ` with W frozen.

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};

/// The adapter of one linear layer.
#[derive(Debug, Clone)]
pub struct Lora {
    /// (r, in), seeded uniform like PEFT's Kaiming init.
    pub a: Tensor,
    /// (out, r), zeros: at init the adapted layer equals the base layer.
    pub b: Tensor,
    /// α / r.
    pub scale: f64,
    pub dropout: f32,
    /// Dropout masks come from here; the trainer reseeds it every step so a
    /// resumed run draws the same masks.
    pub rng: Arc<Mutex<rand_chacha::ChaCha8Rng>>,
}

impl Lora {
    /// The adapter's contribution for flattened input rows `x` (rows, in).
    pub fn delta(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = match self.dropout_mask(x.elem_count(), train) {
            Some(mask) => {
                let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
                (x * mask)?
            }
            None => x.clone(),
        };
        x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }

    /// The next dropout mask for `n` inputs (0 or 1/keep each), drawn from
    /// the adapter's stream; `None` without dropout or outside training.
    pub fn dropout_mask(&self, n: usize, train: bool) -> Option<Vec<f32>> {
        if !(train && self.dropout > 0.0) {
            return None;
        }
        let keep = 1.0 - self.dropout;
        let mut rng = self.rng.lock().expect("lora rng poisoned");
        Some(
            (0..n)
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect(),
        )
    }

    /// Reseed the dropout stream (same seed → same masks).
    pub fn reseed(&self, seed: u64) {
        if let Ok(mut rng) = self.rng.lock() {
            *rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        }
    }
}

use super::decoder::Decoder;
use super::source::LoadedModel;
use super::weights::TensorMap;
use crate::recipe::{LoraConfig, ALL_LINEAR, LORA_TARGETS};
use crate::rundir::SnapshotWriter;
use anyhow::{bail, Context};
use candle_core::{DType, Var};
use std::collections::BTreeMap;
use std::path::Path;

fn targeted(cfg: &LoraConfig, module: &str) -> bool {
    let short = module.rsplit('.').next().unwrap_or(module);
    cfg.targets.iter().any(|t| t == ALL_LINEAR || t == short)
}

/// The (out, in) shapes of the projections [`attach`] puts adapters on,
/// in a model whose weights have these names and shapes.
fn targeted_shapes<'a>(
    weights: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    cfg: &LoraConfig,
) -> Vec<(u64, u64)> {
    weights
        .into_iter()
        .filter_map(|(name, shape)| {
            let module = name.strip_suffix(".weight")?;
            let short = module.rsplit('.').next()?;
            let (&[out, input], true) = (shape, LORA_TARGETS.contains(&short)) else {
                return None;
            };
            targeted(cfg, module).then_some((out as u64, input as u64))
        })
        .collect()
}

/// The parameters of the adapters [`attach`] makes on a model whose
/// weights have these names and shapes: rank × (in + out) for each
/// targeted projection.
pub fn adapter_params<'a>(
    weights: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    cfg: &LoraConfig,
) -> u64 {
    targeted_shapes(weights, cfg)
        .into_iter()
        .map(|(out, input)| cfg.rank as u64 * (input + out))
        .sum()
}

/// The parameters of the base weights those adapters sit on: what
/// [`Decoder::lora_merged`] copies to merge them in (in · out each).
pub fn adapted_params<'a>(
    weights: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    cfg: &LoraConfig,
) -> u64 {
    targeted_shapes(weights, cfg)
        .into_iter()
        .map(|(out, input)| out * input)
        .sum()
}

/// PEFT's name of an adapter matrix: `base_model.model.<module>.lora_A.weight`.
pub fn peft_name(module: &str, which: char) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

/// Attach adapters to a decoder over the frozen base weights. New adapters
/// are seeded (A uniform ±1/√in as PEFT's Kaiming init, B zeros); `saved`
/// restores adapters from a snapshot. Returns the decoder and the trainable
/// adapter variables by PEFT name.
pub fn attach(
    model: &LoadedModel,
    cfg: &LoraConfig,
    seed: u64,
    saved: Option<BTreeMap<String, Tensor>>,
) -> anyhow::Result<(Decoder, BTreeMap<String, Var>)> {
    // The base weights stay frozen for the whole run: the decoder keeps
    // their panels where they fit, and the adapted layers' forward `x Wᵀ`
    // (and the frozen head's logits) read them for batches of few rows
    // (the same bits; see fused::TransposedWeights). A and B are Vars and
    // never copied.
    let mut decoder = model.scoring_decoder()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4C6F_5241);
    let mut vars = BTreeMap::new();
    let scale = cfg.alpha / cfg.rank as f64;
    for (i, (module, lin)) in decoder.linears_mut().into_iter().enumerate() {
        if !targeted(cfg, &module) {
            continue;
        }
        let (out, inp) = lin.weight.dims2()?;
        let dev = lin.weight.device().clone();
        let dtype = lin.weight.dtype();
        let (a_name, b_name) = (peft_name(&module, 'A'), peft_name(&module, 'B'));
        let (a, b) = match &saved {
            Some(s) => {
                let a = s
                    .get(&a_name)
                    .with_context(|| format!("the adapter lacks {a_name}"))?;
                let b = s
                    .get(&b_name)
                    .with_context(|| format!("the adapter lacks {b_name}"))?;
                if a.dims() != [cfg.rank, inp] || b.dims() != [out, cfg.rank] {
                    bail!(
                        "the adapter {a_name} does not have rank {} for a {out}×{inp} layer",
                        cfg.rank
                    );
                }
                (a.to_dtype(dtype)?, b.to_dtype(dtype)?)
            }
            None => {
                let bound = 1.0 / (inp as f32).sqrt();
                let data: Vec<f32> = (0..cfg.rank * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                (
                    Tensor::from_vec(data, (cfg.rank, inp), &dev)?.to_dtype(dtype)?,
                    Tensor::zeros((out, cfg.rank), dtype, &dev)?,
                )
            }
        };
        let (a, b) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
        lin.lora = Some(Lora {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale,
            dropout: cfg.dropout,
            rng: Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(
                seed.wrapping_add(i as u64),
            ))),
        });
        vars.insert(a_name, a);
        vars.insert(b_name, b);
    }
    if vars.is_empty() {
        bail!("no layer matches the LoRA targets {:?}", cfg.targets);
    }
    Ok((decoder, vars))
}

/// Reseed every adapter's dropout stream from one seed.
pub fn reseed(decoder: &Decoder, seed: u64) {
    for (i, lin) in decoder.linears().into_iter().enumerate() {
        if let Some(l) = &lin.lora {
            l.reseed(seed.wrapping_add(i as u64));
        }
    }
}

/// Base weights with the adapters merged in: W + (α/r)·B·A, under the base
/// model's names.
pub fn merge(
    base: &TensorMap,
    adapters: &BTreeMap<String, impl AsRef<Tensor>>,
    cfg: &LoraConfig,
) -> anyhow::Result<TensorMap> {
    let scale = cfg.alpha / cfg.rank as f64;
    let mut out = TensorMap::new(base.origin.clone());
    for (name, w) in &base.tensors {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        let a = adapters.get(&peft_name(module, 'A'));
        let b = adapters.get(&peft_name(module, 'B'));
        let merged = match (a, b) {
            (Some(a), Some(b)) => {
                let (a, b) = (
                    a.as_ref().to_dtype(DType::F32)?,
                    b.as_ref().to_dtype(DType::F32)?,
                );
                let delta = (b.matmul(&a)? * scale)?;
                (w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?
            }
            _ => w.detach().copy()?,
        };
        out.tensors.insert(name.clone(), merged);
    }
    Ok(out)
}

/// Read `adapter_model.safetensors` of a snapshot.
pub fn load_adapters(dir: &Path, base: &TensorMap) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let dev = base
        .tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let p = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(candle_core::safetensors::load_buffer(&bytes, &dev)
        .with_context(|| format!("{} is not a valid safetensors file", p.display()))?
        .into_iter()
        .collect())
}

/// PEFT's `base_model_name_or_path` and `revision` for a driftui base
/// reference: a hub id (`hf:ORG/NAME@REV`), a directory, or a driftui-only
/// source (`gguf:PATH`, `builtin:NAME`) kept as it is.
pub fn peft_base(base_ref: &str) -> (String, Option<String>) {
    match base_ref.strip_prefix("hf:") {
        Some(spec) => match spec.split_once('@') {
            Some((id, rev)) => (id.to_string(), Some(rev.to_string())),
            None => (spec.to_string(), None),
        },
        None => (base_ref.to_string(), None),
    }
}

/// The driftui source of a PEFT base: the inverse of [`peft_base`].
pub fn source_of_peft_base(name: &str, revision: Option<&str>) -> String {
    if name.starts_with("gguf:") || name.starts_with("builtin:") || Path::new(name).is_dir() {
        return name.to_string();
    }
    match revision {
        Some(r) => format!("hf:{name}@{r}"),
        None => format!("hf:{name}"),
    }
}

/// Write the adapters in PEFT's layout.
pub fn save_adapters(
    w: &mut SnapshotWriter,
    vars: &BTreeMap<String, Var>,
    cfg: &LoraConfig,
    base_source: &str,
) -> anyhow::Result<()> {
    let tensors: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let p = w.path("adapter_model.safetensors");
    super::weights::save_tensors(&tensors, &p)?;
    let targets: Vec<&str> = if cfg.targets.iter().any(|t| t == ALL_LINEAR) {
        LORA_TARGETS.to_vec()
    } else {
        cfg.targets.iter().map(String::as_str).collect()
    };
    let (base_name, revision) = peft_base(base_source);
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "base_model_name_or_path": base_name,
        "revision": revision,
    });
    w.write("adapter_config.json", &serde_json::to_vec_pretty(&config)?)
}
