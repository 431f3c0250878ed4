//! Value probes: stance distributions per topic while a model trains.

use crate::events::ProbeEvent;
use crate::model::{Decoder, LoadedModel};
use crate::recipe::{LoadedRecipe, ProbeConfig};
use anyhow::{bail, Result};

/// Runs the recipe's probe set against a model between optimizer steps.
pub struct Prober {
    every: u64,
}

impl Prober {
    pub fn new(_cfg: &ProbeConfig, _recipe: &LoadedRecipe, _model: &LoadedModel) -> Result<Self> {
        bail!("[probe] is not supported by this build yet")
    }

    /// Probe cadence in steps (0: phase start and end only).
    pub fn every(&self) -> u64 {
        self.every
    }

    pub fn run(
        &mut self,
        _model: &Decoder,
        _phase: usize,
        _step: u64,
        _global_step: u64,
        _reason: &str,
    ) -> ProbeEvent {
        unreachable!()
    }
}
