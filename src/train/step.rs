//! One optimizer step's worth of work before the update: the loss of each
//! micro-batch, its backward pass, and the gradients summed over the
//! accumulation.
//!
//! The policy is scored in [`Mode::Train`]; the reference and every
//! no-gradient term are scored in the same mode, batch for batch, so that
//! equal weights give bit-identical log-probabilities (a DPO step with
//! policy = reference is exactly ln 2).

use super::objectives::{self, LossAverage, LossOut, Objective, OrpoNll, PairLogps};
use super::optim::{collect_grads, AdamW};
use super::phase::{Phase, PhaseData};
use super::policy::Policy;
use crate::data::{Cut, PromptCompletion, SeqBatch, TokenSeq};
use crate::model::{seq_logps, Decoder, Mode};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// One micro-batch's loss and metrics.
pub struct MicroBatch {
    pub out: LossOut,
    /// Tokens run through the model (KL rows included): throughput.
    pub processed: usize,
    /// Real input tokens as TRL counts them for `num_tokens` (chosen and
    /// rejected rows; KTO's main rows only).
    pub input_tokens: usize,
}

/// The loss and metrics of one micro-batch (row indices into the phase's
/// data).
pub fn micro_batch_loss(
    policy: &Decoder,
    reference: Option<&Decoder>,
    phase: &Phase,
    idx: &[usize],
    pad: u32,
) -> Result<MicroBatch> {
    let max_len = phase.cfg.max_len;
    let cut = phase.cfg.cut();
    let dev = policy.device().clone();
    match (&phase.data, &phase.objective) {
        (PhaseData::Sft(seqs), Objective::Sft { average }) => {
            let rows: Vec<&TokenSeq> = idx.iter().map(|&i| &seqs[i]).collect();
            let b = SeqBatch::new(&rows, pad, &dev)?;
            let lp = seq_logps(policy, &b, Mode::Train)?;
            Ok(MicroBatch {
                out: objectives::sft_loss(&lp, *average)?,
                processed: b.tokens,
                input_tokens: b.tokens,
            })
        }
        (PhaseData::Pairs(pairs), obj) => {
            let chosen: Vec<TokenSeq> = idx
                .iter()
                .map(|&i| pairs[i].0.to_seq(max_len, cut).0)
                .collect();
            let rejected: Vec<TokenSeq> = idx
                .iter()
                .map(|&i| pairs[i].1.to_seq(max_len, cut).0)
                .collect();
            let rows: Vec<&TokenSeq> = chosen.iter().chain(rejected.iter()).collect();
            // TRL's ORPO NLL also scores the chosen rows' prompt tokens.
            let whole = match obj {
                Objective::Orpo {
                    nll: OrpoNll::PromptAndCompletion,
                    ..
                } => idx.len(),
                _ => 0,
            };
            let b = SeqBatch::with_whole_rows(&rows, pad, &dev, whole)?;
            let out = pair_loss(policy, reference, obj, &b, idx.len())?;
            Ok(MicroBatch {
                out,
                processed: b.tokens,
                input_tokens: b.tokens,
            })
        }
        (PhaseData::Kto(rows), obj @ Objective::Kto { .. }) => {
            kto_loss(policy, reference, obj, rows, idx, max_len, cut, pad)
        }
        _ => bail!("phase data does not fit its objective"),
    }
}

/// A preference objective on a batch of `pairs` chosen rows followed by as
/// many rejected rows.
fn pair_loss(
    policy: &Decoder,
    reference: Option<&Decoder>,
    objective: &Objective,
    b: &SeqBatch,
    pairs: usize,
) -> Result<LossOut> {
    let lp = seq_logps(policy, b, Mode::Train)?;
    let pol = PairLogps::split(&lp, pairs)?;
    let chosen_nll = || lp.nll(0..pairs);
    Ok(match objective {
        Objective::Dpo {
            beta,
            loss,
            label_smoothing,
        } => {
            let reference = reference.context("a DPO phase without its reference model")?;
            let rlp = seq_logps(reference, b, Mode::Train)?;
            let refp = PairLogps::split(&rlp, pairs)?;
            let mut out = objectives::dpo_loss(&pol, &refp, *beta, *loss, *label_smoothing)?;
            objectives::dpo_token_metrics(&lp, pairs, &mut out.metrics);
            out
        }
        Objective::SimPo {
            beta,
            gamma,
            label_smoothing,
            alpha,
        } => objectives::simpo_loss(
            &pol,
            &chosen_nll()?,
            *beta,
            *gamma,
            *label_smoothing,
            *alpha,
        )?,
        Objective::Cpo {
            beta,
            alpha,
            label_smoothing,
        } => objectives::cpo_loss(&pol, &chosen_nll()?, *beta, *alpha, *label_smoothing)?,
        Objective::Orpo { beta, .. } => objectives::orpo_loss(&pol, &chosen_nll()?, *beta)?,
        other => bail!(
            "objective {} cannot train on preference pairs",
            other.name()
        ),
    })
}

/// KTO on a micro-batch, with the KL term estimated from mismatched pairs.
#[allow(clippy::too_many_arguments)]
fn kto_loss(
    policy: &Decoder,
    reference: Option<&Decoder>,
    objective: &Objective,
    rows: &[(PromptCompletion, bool)],
    idx: &[usize],
    max_len: usize,
    cut: Cut,
    pad: u32,
) -> Result<MicroBatch> {
    let Objective::Kto {
        beta,
        desirable_weight,
        undesirable_weight,
    } = objective
    else {
        bail!("not a KTO objective");
    };
    let reference = reference.context("a KTO phase without its reference model")?;
    let dev = policy.device().clone();
    let k = idx.len();
    let main: Vec<TokenSeq> = idx
        .iter()
        .map(|&i| rows[i].0.to_seq(max_len, cut).0)
        .collect();
    // Mismatched pairs for the KL estimate: prompt i with the completion of
    // row i−1 (TRL rotates completions by one).
    let kl: Vec<TokenSeq> = (0..k)
        .map(|j| {
            let p = &rows[idx[j]].0;
            let c = &rows[idx[(j + k - 1) % k]].0;
            PromptCompletion {
                prompt: p.prompt.clone(),
                completion: c.completion.clone(),
            }
            .to_seq(max_len, cut)
            .0
        })
        .collect();
    let labels: Vec<bool> = idx.iter().map(|&i| rows[i].1).collect();
    let main_refs: Vec<&TokenSeq> = main.iter().collect();
    let kl_refs: Vec<&TokenSeq> = kl.iter().collect();
    let mb = SeqBatch::new(&main_refs, pad, &dev)?;
    let kb = SeqBatch::new(&kl_refs, pad, &dev)?;
    let pol = seq_logps(policy, &mb, Mode::Train)?;
    // The KL term carries no gradient (TRL: no_grad), and the reference is
    // scored batch for batch as the policy is.
    let pol_kl = seq_logps(&policy.no_grad()?, &kb, Mode::Train)?;
    let ref_main = seq_logps(reference, &mb, Mode::Train)?.sums;
    let ref_kl = seq_logps(reference, &kb, Mode::Train)?.sums;
    let mut out = objectives::kto_loss(
        &pol.sums,
        &ref_main,
        &labels,
        &pol_kl.sums,
        &ref_kl,
        *beta,
        *desirable_weight,
        *undesirable_weight,
    )?;
    objectives::kto_token_metrics(&pol, &labels, &mut out.metrics);
    Ok(MicroBatch {
        out,
        processed: mb.tokens + kb.tokens,
        input_tokens: mb.tokens,
    })
}

/// The gradients of one optimizer step, before clipping and the update.
pub struct StepGradients {
    /// The step's loss (NaN if a micro-batch's was not finite).
    pub loss: f64,
    /// Metrics averaged over the micro-batches (non-finite ones dropped).
    pub metrics: BTreeMap<String, f64>,
    /// Gradient of the step's loss for every trainable variable that got
    /// one; empty when a loss was not finite (the backward is skipped).
    pub grads: BTreeMap<String, Tensor>,
    /// Tokens run through the model.
    pub tokens: u64,
    /// Real input tokens as TRL counts them for `num_tokens`.
    pub input_tokens: u64,
}

/// Each micro-batch's share of the step's loss. TRL's SFT loss is the token
/// mean over the whole optimizer step (`num_items_in_batch`), so a
/// micro-batch weighs by its trained tokens; every other objective is the
/// mean of the micro-batches' means.
fn micro_weights(phase: &Phase, micro: &[(u64, Vec<usize>)]) -> Vec<f64> {
    let equal = vec![1.0 / micro.len().max(1) as f64; micro.len()];
    let (
        PhaseData::Sft(seqs),
        Objective::Sft {
            average: LossAverage::Token,
        },
    ) = (&phase.data, &phase.objective)
    else {
        return equal;
    };
    let counts: Vec<usize> = micro
        .iter()
        .map(|(_, idx)| idx.iter().map(|&i| seqs[i].trained_targets()).sum())
        .collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return equal;
    }
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

/// Losses and summed gradients over a step's micro-batches: `micro` holds
/// each micro-batch's global index (it seeds LoRA dropout, so a resumed run
/// draws the same masks) and its rows.
pub fn gradients(
    policy: &Policy,
    reference: Option<&Decoder>,
    phase: &Phase,
    micro: &[(u64, Vec<usize>)],
    pad: u32,
    seed: u64,
    poison_loss: bool,
) -> Result<StepGradients> {
    let weights = micro_weights(phase, micro);
    let mut grads = BTreeMap::new();
    let mut loss = 0.0;
    let mut metric_sums: BTreeMap<String, f64> = BTreeMap::new();
    let (mut tokens, mut input_tokens) = (0u64, 0u64);
    for ((m, idx), &w) in micro.iter().zip(&weights) {
        if policy.lora.as_ref().is_some_and(|l| l.dropout > 0.0) {
            crate::model::lora::reseed(
                &policy.decoder,
                seed ^ (m.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            );
        }
        let mb = micro_batch_loss(&policy.decoder, reference, phase, idx, pad)?;
        tokens += mb.processed as u64;
        input_tokens += mb.input_tokens as u64;
        let mut loss_val = mb.out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if poison_loss {
            loss_val = f64::NAN;
        }
        loss += w * loss_val;
        for (k, v) in mb.out.metrics {
            *metric_sums.entry(k).or_default() += v;
        }
        if !loss_val.is_finite() {
            // Skip the backward: nothing good comes of it.
            grads.clear();
            loss = f64::NAN;
            break;
        }
        let store = (mb.out.loss * w)?.backward()?;
        add_grads(&mut grads, collect_grads(&store, &policy.vars))?;
    }
    let n = micro.len().max(1) as f64;
    Ok(StepGradients {
        loss,
        metrics: metric_sums
            .into_iter()
            .map(|(k, v)| (k, v / n))
            .filter(|(_, v)| v.is_finite())
            .collect(),
        grads,
        tokens,
        input_tokens,
    })
}

/// The update after [`gradients`]: the pre-clip global norm (logged as
/// `grad_norm`, as TRL does), clipping to `max_grad_norm` (0: off) as
/// `torch.nn.utils.clip_grad_norm_` does, and AdamW. A non-finite norm, or
/// no gradients, applies nothing and returns NaN.
pub fn update(
    opt: &mut AdamW,
    grads: &BTreeMap<String, Tensor>,
    lr: f64,
    max_grad_norm: f64,
) -> Result<f64> {
    if grads.is_empty() {
        return Ok(f64::NAN);
    }
    let norm = opt.grad_norm(grads)?;
    if !norm.is_finite() {
        return Ok(norm);
    }
    let scale = if max_grad_norm > 0.0 {
        (max_grad_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    opt.step(grads, lr, scale)?;
    Ok(norm)
}

/// Sum of two gradient maps (accumulation).
pub(crate) fn add_grads(
    acc: &mut BTreeMap<String, Tensor>,
    g: BTreeMap<String, Tensor>,
) -> Result<()> {
    for (n, t) in g {
        match acc.get_mut(&n) {
            Some(a) => *a = (&*a + &t)?,
            None => {
                acc.insert(n, t);
            }
        }
    }
    Ok(())
}
