//! The model being trained, and the frozen reference a preference phase
//! compares it with.

use crate::model::weights::TensorMap;
use crate::model::{Decoder, LoadedModel};
use crate::recipe::LoraConfig;
use crate::rundir::snapshot;
use anyhow::{Context, Result};
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;
use std::path::Path;

/// A decoder over trainable variables.
pub struct Policy {
    pub decoder: Decoder,
    /// Trainable variables by name (HF names; PEFT names for LoRA adapters).
    pub vars: BTreeMap<String, Var>,
    /// The adapters' settings when only LoRA adapters train.
    pub lora: Option<LoraConfig>,
}

impl Policy {
    /// The model to train: every weight a variable, or LoRA adapters over
    /// the frozen weights; from `resume` (a snapshot directory) when given.
    pub fn new(
        model: &LoadedModel,
        lora: Option<&LoraConfig>,
        seed: u64,
        resume: Option<&Path>,
    ) -> Result<Self> {
        match (resume, lora) {
            (None, None) => Policy::full(model, &model.weights),
            (Some(dir), None) => {
                let (device, dtype) = model.weights.device_dtype();
                let w =
                    TensorMap::load_safetensors(&[dir.join("model.safetensors")], &device, dtype)?;
                Policy::full(model, &w).with_context(|| {
                    format!(
                        "the snapshot {} does not fit the recipe's model",
                        dir.display()
                    )
                })
            }
            (dir, Some(cfg)) => {
                let adapters = match dir {
                    Some(d) => Some(
                        crate::model::lora::load_adapters(d, &model.weights)
                            .with_context(|| format!("loading the adapters of {}", d.display()))?,
                    ),
                    None => None,
                };
                let (decoder, vars) = crate::model::lora::attach(model, cfg, seed, adapters)?;
                Ok(Policy {
                    decoder,
                    vars,
                    lora: Some(cfg.clone()),
                })
            }
        }
    }

    /// Full fine-tuning: every weight a variable.
    fn full(model: &LoadedModel, weights: &TensorMap) -> Result<Self> {
        let mut vars = BTreeMap::new();
        let mut tensors = TensorMap::new(weights.origin.clone());
        for (name, t) in &weights.tensors {
            let v = Var::from_tensor(&t.copy()?)?;
            tensors.tensors.insert(name.clone(), v.as_tensor().clone());
            vars.insert(name.clone(), v);
        }
        let decoder = Decoder::from_weights(&model.cfg, &mut tensors)?;
        Ok(Self {
            decoder,
            vars,
            lora: None,
        })
    }

    /// The trainable tensors by name, as they stand (shared, not copied).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// A frozen copy (the reference model of a preference phase): the same
    /// structure over copies of the trainable tensors, so it scores what the
    /// policy scores now, bit for bit.
    pub fn frozen_copy(&self) -> Result<Decoder> {
        Ok(self.decoder.frozen_copy()?)
    }

    /// The reference model kept in a snapshot directory, built as
    /// [`Policy::frozen_copy`] built it when the snapshot was taken.
    pub fn load_reference(&self, model: &LoadedModel, dir: &Path, seed: u64) -> Result<Decoder> {
        snapshot::verify(dir)
            .with_context(|| format!("the reference snapshot {}", dir.display()))?;
        if dir.join("model.safetensors").exists() {
            let (device, dtype) = model.weights.device_dtype();
            let mut w =
                TensorMap::load_safetensors(&[dir.join("model.safetensors")], &device, dtype)?;
            return Decoder::from_weights(&model.cfg, &mut w);
        }
        // Unmerged, as the uninterrupted run's reference was: the same
        // structure gives the same numbers.
        let adapters = crate::model::lora::load_adapters(dir, &model.weights)?;
        let cfg = self
            .lora
            .as_ref()
            .context("the reference snapshot holds LoRA adapters, but the recipe trains no LoRA")?;
        let (decoder, _vars) = crate::model::lora::attach(model, cfg, seed, Some(adapters))?;
        Ok(decoder.frozen_copy()?)
    }
}
