//! Sequence log-probabilities: how likely a model finds the trained tokens
//! of a batch, with the per-token statistics TRL logs (mean logit, entropy,
//! top-1). The objectives train on them and the probes score labels with
//! them.

use super::{Decoder, ForwardOptions, Mode};
use crate::data::SeqBatch;
use candle_core::{Result, Tensor, D};
use std::ops::Range;

/// Log-probabilities of a batch's targets, with per-target statistics.
pub struct SeqLogps {
    /// (n,) log p(target) of every target.
    pub tokens: Tensor,
    /// (rows,) sums over each row's trained targets.
    pub sums: Tensor,
    /// Trained targets per row.
    pub counts: Vec<usize>,
    /// The row of every target.
    pub owner: Vec<usize>,
    /// Whether a target is trained (completion); false for the prompt
    /// targets of rows scored whole.
    pub trained: Vec<bool>,
    /// Per target, detached: the mean logit over the vocabulary.
    pub mean_logit: Vec<f32>,
    /// Per target: whether it is the argmax prediction.
    pub top1: Vec<bool>,
    /// Per target: the entropy of the next-token distribution.
    pub entropy: Vec<f32>,
}

impl SeqLogps {
    /// Token-weighted mean of a per-target statistic over the trained
    /// targets of the rows in `rows` (TRL's token-level metrics); `None`
    /// when they have none.
    pub fn token_mean(&self, rows: Range<usize>, stat: impl Fn(usize) -> f64) -> Option<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for (j, r) in self.owner.iter().enumerate() {
            if self.trained[j] && rows.contains(r) {
                sum += stat(j);
                n += 1;
            }
        }
        (n > 0).then(|| sum / n as f64)
    }

    /// TRL's `logits/…` of DPO and KTO: the vocabulary-mean logit, averaged
    /// over the completion tokens of `rows`.
    pub fn mean_logit(&self, rows: Range<usize>) -> Option<f64> {
        self.token_mean(rows, |j| self.mean_logit[j] as f64)
    }

    /// TRL's `entropy`: the next-token entropy averaged over the completion
    /// tokens of `rows`.
    pub fn entropy(&self, rows: Range<usize>) -> Option<f64> {
        self.token_mean(rows, |j| self.entropy[j] as f64)
    }

    /// TRL's `mean_token_accuracy`: the share of completion tokens of `rows`
    /// that are the argmax prediction.
    pub fn accuracy(&self, rows: Range<usize>) -> Option<f64> {
        self.token_mean(rows, |j| if self.top1[j] { 1.0 } else { 0.0 })
    }

    /// Mean NLL over every target of `rows`, trained or not (tokens are in
    /// row order).
    pub fn nll(&self, rows: Range<usize>) -> Result<Tensor> {
        let start = self.owner.iter().position(|r| rows.contains(r));
        let n = self.owner.iter().filter(|r| rows.contains(r)).count();
        match start {
            Some(s) => self.tokens.narrow(0, s, n)?.mean_all()?.neg(),
            None => Tensor::zeros((), self.tokens.dtype(), self.tokens.device()),
        }
    }
}

/// The final hidden state at each target's position (the one that
/// predicts it), (n, hidden): what the vocabulary projection, or a value
/// head, reads.
pub fn target_hidden(decoder: &Decoder, batch: &SeqBatch, mode: Mode) -> Result<Tensor> {
    let hidden = decoder.hidden(&batch.input, mode, ForwardOptions::default())?;
    let h = hidden.dim(D::Minus1)?;
    hidden
        .reshape((batch.rows * batch.len, h))?
        .index_select(&batch.positions, 0)
}

/// Score a batch: log p(target) at every target. Only the targets go
/// through the vocabulary projection (it dominates memory).
pub fn seq_logps(decoder: &Decoder, batch: &SeqBatch, mode: Mode) -> Result<SeqLogps> {
    if mode == Mode::Fast {
        // No-grad scoring: every op's blocks start from a pool worker (see
        // fused::on_pool).
        return super::fused::on_pool(decoder.device(), || seq_logps_here(decoder, batch, mode));
    }
    seq_logps_here(decoder, batch, mode)
}

fn seq_logps_here(decoder: &Decoder, batch: &SeqBatch, mode: Mode) -> Result<SeqLogps> {
    let picked = target_hidden(decoder, batch, mode)?;
    let scores = decoder.target_logprobs(&picked, &batch.targets, mode)?;
    let sums = batch
        .segments
        .to_dtype(scores.logp.dtype())?
        .matmul(&scores.logp.unsqueeze(1)?)?
        .squeeze(1)?;
    Ok(SeqLogps {
        tokens: scores.logp,
        sums,
        counts: batch.counts.clone(),
        owner: batch.owner.clone(),
        trained: batch.trained.clone(),
        mean_logit: scores.mean_logit,
        top1: scores.top1,
        entropy: scores.entropy,
    })
}
