//! One optimizer step's worth of work before the update: the loss of each
//! micro-batch, its backward pass, and the gradients summed over the
//! accumulation.
//!
//! The policy is scored in [`Mode::Train`]; the reference and every
//! no-gradient term are scored in the same mode, batch for batch, so that
//! equal weights give bit-identical log-probabilities (a DPO step with
//! policy = reference is exactly ln 2).

use super::objectives::{self, LossOut, Objective, PairLogps};
use super::optim::collect_grads;
use super::phase::{Phase, PhaseData};
use super::policy::Policy;
use crate::data::{PromptCompletion, SeqBatch, TokenSeq};
use crate::model::{seq_logps, Decoder, Mode};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// The loss and metrics of one micro-batch (row indices into the phase's
/// data), and the tokens it processed.
pub fn micro_batch_loss(
    policy: &Decoder,
    reference: Option<&Decoder>,
    phase: &Phase,
    idx: &[usize],
    pad: u32,
) -> Result<(LossOut, usize)> {
    let max_len = phase.cfg.max_len;
    let dev = policy.device().clone();
    match (&phase.data, &phase.objective) {
        (PhaseData::Sft(seqs), Objective::Sft { average }) => {
            let rows: Vec<&TokenSeq> = idx.iter().map(|&i| &seqs[i]).collect();
            let b = SeqBatch::new(&rows, pad, &dev)?;
            let lp = seq_logps(policy, &b, Mode::Train)?;
            Ok((objectives::sft_loss(&lp, *average)?, b.tokens))
        }
        (PhaseData::Pairs(pairs), obj) => {
            let chosen: Vec<TokenSeq> = idx.iter().map(|&i| pairs[i].0.to_seq(max_len).0).collect();
            let rejected: Vec<TokenSeq> =
                idx.iter().map(|&i| pairs[i].1.to_seq(max_len).0).collect();
            let rows: Vec<&TokenSeq> = chosen.iter().chain(rejected.iter()).collect();
            let b = SeqBatch::new(&rows, pad, &dev)?;
            let out = pair_loss(policy, reference, obj, &b, idx.len())?;
            Ok((out, b.tokens))
        }
        (PhaseData::Kto(rows), obj @ Objective::Kto { .. }) => {
            kto_loss(policy, reference, obj, rows, idx, max_len, pad)
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
    let chosen_nll = || -> Result<Tensor> {
        let n: usize = lp.counts[..pairs].iter().sum();
        Ok(lp.tokens.narrow(0, 0, n)?.mean_all()?.neg()?)
    };
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
            add_logit_metrics(&mut out, &lp.mean_logits, pairs);
            out
        }
        Objective::SimPo {
            beta,
            gamma,
            label_smoothing,
        } => objectives::simpo_loss(&pol, *beta, *gamma, *label_smoothing)?,
        Objective::Cpo {
            beta,
            alpha,
            label_smoothing,
        } => objectives::cpo_loss(&pol, &chosen_nll()?, *beta, *alpha, *label_smoothing)?,
        Objective::Orpo { beta } => objectives::orpo_loss(&pol, &chosen_nll()?, *beta)?,
        other => bail!(
            "objective {} cannot train on preference pairs",
            other.name()
        ),
    })
}

/// KTO on a micro-batch, with the KL term estimated from mismatched pairs.
fn kto_loss(
    policy: &Decoder,
    reference: Option<&Decoder>,
    objective: &Objective,
    rows: &[(PromptCompletion, bool)],
    idx: &[usize],
    max_len: usize,
    pad: u32,
) -> Result<(LossOut, usize)> {
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
    let main: Vec<TokenSeq> = idx.iter().map(|&i| rows[i].0.to_seq(max_len).0).collect();
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
            .to_seq(max_len)
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
    let out = objectives::kto_loss(
        &pol.sums,
        &ref_main,
        &labels,
        &pol_kl.sums,
        &ref_kl,
        *beta,
        *desirable_weight,
        *undesirable_weight,
    )?;
    Ok((out, mb.tokens + kb.tokens))
}

fn add_logit_metrics(out: &mut LossOut, mean_logits: &[f64], pairs: usize) {
    let avg = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    out.metrics
        .insert("logits/chosen".into(), avg(&mean_logits[..pairs]));
    out.metrics
        .insert("logits/rejected".into(), avg(&mean_logits[pairs..]));
}

/// The gradients of one optimizer step, before clipping and the update.
pub struct StepGradients {
    /// Mean loss over the micro-batches (NaN if one was not finite).
    pub loss: f64,
    /// Metrics averaged over the micro-batches (non-finite ones dropped).
    pub metrics: BTreeMap<String, f64>,
    /// Gradient of the mean loss for every trainable variable that got one;
    /// empty when a loss was not finite (the backward is skipped).
    pub grads: BTreeMap<String, Tensor>,
    pub tokens: u64,
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
    let accum = micro.len().max(1);
    let mut grads = BTreeMap::new();
    let mut loss_sum = 0.0;
    let mut metric_sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut tokens = 0u64;
    for (m, idx) in micro {
        if policy.lora.as_ref().is_some_and(|l| l.dropout > 0.0) {
            crate::model::lora::reseed(
                &policy.decoder,
                seed ^ (m.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            );
        }
        let (out, toks) = micro_batch_loss(&policy.decoder, reference, phase, idx, pad)?;
        tokens += toks as u64;
        let mut loss_val = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if poison_loss {
            loss_val = f64::NAN;
        }
        loss_sum += loss_val;
        for (k, v) in out.metrics {
            *metric_sums.entry(k).or_default() += v;
        }
        if !loss_val.is_finite() {
            // Skip the backward: nothing good comes of it.
            grads.clear();
            break;
        }
        let store = (out.loss / accum as f64)?.backward()?;
        add_grads(&mut grads, collect_grads(&store, &policy.vars))?;
    }
    Ok(StepGradients {
        loss: loss_sum / accum as f64,
        metrics: metric_sums
            .into_iter()
            .map(|(k, v)| (k, v / accum as f64))
            .filter(|(_, v)| v.is_finite())
            .collect(),
        grads,
        tokens,
    })
}

/// Sum of two gradient maps (accumulation).
fn add_grads(acc: &mut BTreeMap<String, Tensor>, g: BTreeMap<String, Tensor>) -> Result<()> {
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
