//! Sequence log-probabilities: how likely a model finds the trained tokens
//! of a batch. The objectives train on them and the probes score labels
//! with them.

use super::{Decoder, ForwardOptions, Mode};
use crate::data::SeqBatch;
use candle_core::{DType, Result, Tensor, D};

/// Log-probabilities of a batch's trained targets.
pub struct SeqLogps {
    /// (n,) log p(target) of every trained target.
    pub tokens: Tensor,
    /// (rows,) sums over each row's targets.
    pub sums: Tensor,
    /// Trained targets per row.
    pub counts: Vec<usize>,
    /// Mean logit over each row's target positions and the vocabulary
    /// (TRL's `logits/chosen`), detached.
    pub mean_logits: Vec<f64>,
    /// Share of targets that are the argmax prediction, detached.
    pub accuracy: f64,
}

/// Score a batch: log p(target) at every trained position. Only the trained
/// positions go through the vocabulary projection (it dominates memory).
pub fn seq_logps(decoder: &Decoder, batch: &SeqBatch, mode: Mode) -> Result<SeqLogps> {
    let hidden = decoder.hidden(&batch.input, mode, ForwardOptions::default())?;
    let h = hidden.dim(D::Minus1)?;
    let picked = hidden
        .reshape((batch.rows * batch.len, h))?
        .index_select(&batch.positions, 0)?;
    let (tokens, mean_logit, argmax) = decoder.target_logprobs(&picked, &batch.targets, mode)?;
    let sums = batch.segments.matmul(&tokens.unsqueeze(1)?)?.squeeze(1)?;
    let n = batch.targets_len();
    let (mean_logits, accuracy) = {
        let row_sum = batch
            .segments
            .matmul(&mean_logit.unsqueeze(1)?)?
            .squeeze(1)?
            .to_vec1::<f32>()?;
        let mean_logits = row_sum
            .iter()
            .zip(&batch.counts)
            .map(|(s, &c)| if c > 0 { *s as f64 / c as f64 } else { 0.0 })
            .collect();
        let hits = argmax
            .eq(&batch.targets)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        (
            mean_logits,
            if n > 0 { hits as f64 / n as f64 } else { 0.0 },
        )
    };
    Ok(SeqLogps {
        tokens,
        sums,
        counts: batch.counts.clone(),
        mean_logits,
        accuracy,
    })
}
