//! Named tensors: loading and saving safetensors under Hugging Face names,
//! and the seeded initialisation of a fresh model.

use super::config::ModelConfig;
use super::decoder::WeightSource;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;
use std::path::Path;

/// Tensors by name, in sorted order (order changes numbers: norms, saving).
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    pub tensors: BTreeMap<String, Tensor>,
    /// Where the tensors came from, for error messages.
    pub origin: String,
}

impl TensorMap {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            tensors: BTreeMap::new(),
            origin: origin.into(),
        }
    }

    /// The device and dtype the tensors live in (CPU f32 when empty).
    pub fn device_dtype(&self) -> (candle_core::Device, candle_core::DType) {
        match self.tensors.values().next() {
            Some(t) => (t.device().clone(), t.dtype()),
            None => (candle_core::Device::Cpu, candle_core::DType::F32),
        }
    }

    /// Read one or more safetensors files (shards) onto `device` as `dtype`.
    pub fn load_safetensors(
        paths: &[std::path::PathBuf],
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let origin = paths
            .first()
            .and_then(|p| p.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut map = Self::new(origin);
        for path in paths {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let loaded = candle_core::safetensors::load_buffer(&bytes, device)
                .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
            for (name, t) in loaded {
                let t = if t.dtype() == dtype {
                    t
                } else {
                    t.to_dtype(dtype)?
                };
                map.tensors.insert(name, t);
            }
        }
        Ok(map)
    }

    /// Write all tensors to one safetensors file, atomically (temp file + rename).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        save_tensors(&self.tensors, path)
    }
}

/// Write named tensors to `path` with `{"format": "pt"}` metadata, atomically.
pub fn save_tensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.partial");
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize_to_file(contiguous, Some(meta), &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

impl WeightSource for TensorMap {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.get_opt(name, shape)? {
            Some(t) => Ok(t),
            None => bail!("the weights in {} lack the tensor {name}", self.origin),
        }
    }

    fn get_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        if t.dims() != shape {
            bail!(
                "the tensor {name} in {} has shape {:?}, the config says {:?}",
                self.origin,
                t.dims(),
                shape
            );
        }
        Ok(Some(t.clone()))
    }
}

/// Every weight name and shape of a decoder with this config, sorted.
pub fn expected_shapes(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
    struct Recorder(BTreeMap<String, Vec<usize>>);
    impl WeightSource for Recorder {
        fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
            self.0.insert(name.to_string(), shape.to_vec());
            Ok(Tensor::zeros(shape, DType::F32, &Device::Cpu)?)
        }
        fn get_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
            self.get(name, shape).map(Some)
        }
    }
    let mut rec = Recorder(BTreeMap::new());
    // Building never fails for the recorder.
    let _ = super::decoder::Decoder::from_weights(cfg, &mut rec);
    rec.0
}

/// A fresh model: normal(0, 0.02) matrices and embeddings, unit norms, zero
/// biases — Hugging Face's `initializer_range` init — from a seeded RNG, in
/// sorted name order so the same seed gives the same weights everywhere.
pub fn init_weights(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<TensorMap> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
    let mut map = TensorMap::new(format!("a fresh model (seed {seed})"));
    for (name, shape) in expected_shapes(cfg) {
        let n: usize = shape.iter().product();
        let t = if name.ends_with("norm.weight") {
            Tensor::ones(shape.as_slice(), DType::F32, device)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape.as_slice(), DType::F32, device)?
        } else {
            let data: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
            Tensor::from_vec(data, shape.as_slice(), device)?
        };
        map.tensors.insert(name, t.to_dtype(dtype)?);
    }
    Ok(map)
}
