//! Training objectives, with TRL 1.16's formulas, metric names and metric
//! meanings (`scripts/reference/TRL.md` says where each comes from in TRL's
//! source; `tests/trl_parity.rs` checks them against TRL's own output).
//!
//! Every preference loss works on sequence log-probabilities: sums over the
//! completion tokens (averages where the algorithm length-normalises). The
//! reference log-probabilities are constants.

pub use crate::model::{seq_logps, SeqLogps};
use candle_core::{DType, Result, Tensor};
use std::collections::BTreeMap;

/// DPO's loss variants (TRL's `loss_type`, and driftui's `cdpo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// −log σ(βΔ). TRL 1.16 applies no label smoothing here.
    Sigmoid,
    /// max(0, 1 − βΔ).
    Hinge,
    /// (Δ − 1/(2β))² on length-averaged log-probabilities.
    Ipo,
    /// Robust DPO: [−(1−ε) log σ(βΔ) + ε log σ(−βΔ)] / (1 − 2ε).
    Robust,
    /// Conservative DPO (driftui's opt-in variant, what TRL before 1.x
    /// computed for `sigmoid` with label smoothing):
    /// −(1−ε) log σ(βΔ) − ε log σ(−βΔ).
    Cdpo,
}

impl DpoLoss {
    /// Whether `label_smoothing` enters the loss.
    pub fn uses_label_smoothing(self) -> bool {
        matches!(self, DpoLoss::Robust | DpoLoss::Cdpo)
    }
}

/// How SFT averages token losses in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossAverage {
    /// Mean over every completion token of the optimizer step (TRL's
    /// default): long answers weigh more.
    #[default]
    Token,
    /// Mean over sequences of each sequence's mean token loss: every example
    /// weighs the same, short answers included.
    Sequence,
}

/// Which tokens of the chosen rows ORPO's NLL term averages over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrpoNll {
    /// Prompt and completion, every token but the first (TRL).
    #[default]
    PromptAndCompletion,
    /// The completion only (driftui's opt-in variant).
    Completion,
}

/// An objective with its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    Sft {
        average: LossAverage,
    },
    Dpo {
        beta: f64,
        loss: DpoLoss,
        label_smoothing: f64,
    },
    Kto {
        beta: f64,
        desirable_weight: f64,
        undesirable_weight: f64,
    },
    /// Reference-free, length-averaged, margin γ (TRL: `CPOTrainer` with
    /// `loss_type = "simpo"`), plus α·NLL on the chosen answers.
    SimPo {
        beta: f64,
        gamma: f64,
        label_smoothing: f64,
        alpha: f64,
    },
    /// Reference-free sigmoid loss plus α·NLL on the chosen answers.
    Cpo {
        beta: f64,
        alpha: f64,
        label_smoothing: f64,
    },
    /// NLL − λ·log σ(log-odds ratio), λ = `beta`.
    Orpo {
        beta: f64,
        nll: OrpoNll,
    },
    /// A Bradley–Terry reward model on preference pairs (TRL's
    /// `RewardTrainer`), with the optional centring coefficient.
    Reward {
        center: Option<f64>,
    },
    /// PPO (TRL's `PPOTrainer`).
    Ppo(crate::train::rl::PpoSettings),
    /// GRPO (TRL's `GRPOTrainer`).
    Grpo(crate::train::rl::GrpoSettings),
}

impl Objective {
    /// Whether the phase needs a frozen reference model.
    pub fn needs_reference(&self) -> bool {
        match self {
            Objective::Dpo { .. } | Objective::Kto { .. } | Objective::Ppo(_) => true,
            Objective::Grpo(g) => g.beta != 0.0,
            _ => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::Sft { .. } => "sft",
            Objective::Dpo { .. } => "dpo",
            Objective::Kto { .. } => "kto",
            Objective::SimPo { .. } => "simpo",
            Objective::Cpo { .. } => "cpo",
            Objective::Orpo { .. } => "orpo",
            Objective::Reward { .. } => "reward",
            Objective::Ppo(_) => "ppo",
            Objective::Grpo(_) => "grpo",
        }
    }

    /// Whether TRL logs `num_tokens` (the input tokens seen so far) for it.
    pub fn logs_num_tokens(&self) -> bool {
        matches!(
            self,
            Objective::Sft { .. }
                | Objective::Dpo { .. }
                | Objective::Kto { .. }
                | Objective::Reward { .. }
                | Objective::Grpo(_)
        )
    }
}

/// A scalar loss to backpropagate and the metrics to log with it.
pub struct LossOut {
    pub loss: Tensor,
    pub metrics: BTreeMap<String, f64>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

fn vec(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.to_vec1::<f64>()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn insert_some(metrics: &mut BTreeMap<String, f64>, key: &str, v: Option<f64>) {
    if let Some(v) = v {
        metrics.insert(key.into(), v);
    }
}

/// `value` (computed from `x` detached) with the derivative `slope` (also
/// detached) towards `x`: value + (x − x̄)·slope, where x − x̄ is exactly 0.
///
/// candle's backward rules at kinks differ from PyTorch's (`abs` has
/// gradient +1 at 0, `relu` 1 at 0), so a function assembled from `abs`,
/// `minimum` or `relu` can have the wrong derivative exactly at a tie — and
/// ties are what a DPO step with policy = reference produces
/// (`shared/findings/dpo-gradient-at-zero-margin.md`). Giving the derivative
/// explicitly makes it right everywhere, on every device.
fn with_slope(x: &Tensor, value: Tensor, slope: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(value);
    }
    let zero = (x - x.detach())?;
    value + zero.mul(slope)?
}

/// log σ(x), stable for large |x|, with the exact derivative σ(−x)
/// everywhere (x = 0 included, where it is ½).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let xd = x.detach();
    // −softplus(−x) = min(x, 0) − log(1 + exp(−|x|))
    let log1p = (xd.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let value = (xd.minimum(0.0)? - log1p)?;
    let slope = candle_nn::ops::sigmoid(&xd.neg()?)?;
    with_slope(x, value, &slope)
}

/// max(x, 0) with PyTorch's derivative: 1 where x > 0, 0 elsewhere (0 at
/// x = 0, where candle's `relu` says 1).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let xd = x.detach();
    let slope = xd.gt(0.0)?.to_dtype(xd.dtype())?;
    with_slope(x, xd.relu()?, &slope)
}

/// SFT: mean token cross-entropy over completion tokens, averaged per token
/// or per sequence; `mean_token_accuracy` and `entropy` over the same tokens.
pub fn sft_loss(lp: &SeqLogps, average: LossAverage) -> Result<LossOut> {
    let loss = match average {
        LossAverage::Token => lp.tokens.mean_all()?.neg()?,
        LossAverage::Sequence => {
            let counts: Vec<f32> = lp.counts.iter().map(|&c| c.max(1) as f32).collect();
            let counts = Tensor::from_vec(counts, lp.counts.len(), lp.sums.device())?
                .to_dtype(lp.sums.dtype())?;
            lp.sums.div(&counts)?.mean_all()?.neg()?
        }
    };
    let rows = 0..lp.counts.len();
    let mut metrics = BTreeMap::new();
    insert_some(
        &mut metrics,
        "mean_token_accuracy",
        lp.accuracy(rows.clone()),
    );
    insert_some(&mut metrics, "entropy", lp.entropy(rows));
    Ok(LossOut { loss, metrics })
}

/// Sequence log-probabilities of a preference batch, split in chosen and rejected.
pub struct PairLogps {
    pub chosen: Tensor,
    pub rejected: Tensor,
    pub chosen_len: Tensor,
    pub rejected_len: Tensor,
}

impl PairLogps {
    /// Split the 2·pairs rows of a pair batch.
    pub fn split(lp: &SeqLogps, pairs: usize) -> Result<Self> {
        let dev = lp.sums.device();
        let lens: Vec<f32> = lp.counts.iter().map(|&c| c.max(1) as f32).collect();
        let lens = Tensor::from_vec(lens, lp.counts.len(), dev)?.to_dtype(lp.sums.dtype())?;
        Ok(Self {
            chosen: lp.sums.narrow(0, 0, pairs)?,
            rejected: lp.sums.narrow(0, pairs, pairs)?,
            chosen_len: lens.narrow(0, 0, pairs)?,
            rejected_len: lens.narrow(0, pairs, pairs)?,
        })
    }

    fn chosen_avg(&self) -> Result<Tensor> {
        self.chosen.div(&self.chosen_len)
    }

    fn rejected_avg(&self) -> Result<Tensor> {
        self.rejected.div(&self.rejected_len)
    }
}

/// Sigmoid loss with label smoothing: −(1−ε) log σ(βx) − ε log σ(−βx).
fn smoothed_sigmoid_loss(x: &Tensor, beta: f64, eps: f64) -> Result<Tensor> {
    let bx = (x * beta)?;
    let pos = log_sigmoid(&bx)?;
    if eps == 0.0 {
        return pos.neg();
    }
    let neg = log_sigmoid(&bx.neg()?)?;
    (pos * -(1.0 - eps))? - (neg * eps)?
}

/// `rewards/chosen|rejected|margins|accuracies` (accuracy: chosen strictly
/// above rejected, as TRL counts it).
fn reward_metrics(
    metrics: &mut BTreeMap<String, f64>,
    chosen_rewards: &[f64],
    rejected_rewards: &[f64],
) {
    let margins: Vec<f64> = chosen_rewards
        .iter()
        .zip(rejected_rewards)
        .map(|(c, r)| c - r)
        .collect();
    let acc: Vec<f64> = chosen_rewards
        .iter()
        .zip(rejected_rewards)
        .map(|(c, r)| if c > r { 1.0 } else { 0.0 })
        .collect();
    metrics.insert("rewards/chosen".into(), mean(chosen_rewards));
    metrics.insert("rewards/rejected".into(), mean(rejected_rewards));
    metrics.insert("rewards/margins".into(), mean(&margins));
    metrics.insert("rewards/accuracies".into(), mean(&acc));
}

/// β·x for each x of a detached tensor.
fn scaled(t: &Tensor, beta: f64) -> Result<Vec<f64>> {
    Ok(vec(&t.detach())?.iter().map(|x| beta * x).collect())
}

fn logps_metrics(
    metrics: &mut BTreeMap<String, f64>,
    chosen: &Tensor,
    rejected: &Tensor,
) -> Result<()> {
    metrics.insert("logps/chosen".into(), mean(&vec(&chosen.detach())?));
    metrics.insert("logps/rejected".into(), mean(&vec(&rejected.detach())?));
    Ok(())
}

/// DPO against a frozen reference. `rewards/*` are β × the summed log-ratio
/// and `logps/*` the summed log-probs for every loss type (IPO included,
/// whose loss uses the averages), as TRL logs them.
pub fn dpo_loss(
    policy: &PairLogps,
    reference: &PairLogps,
    beta: f64,
    loss_type: DpoLoss,
    label_smoothing: f64,
) -> Result<LossOut> {
    let chosen_ratio = (&policy.chosen - &reference.chosen)?;
    let rejected_ratio = (&policy.rejected - &reference.rejected)?;
    let delta = (&chosen_ratio - &rejected_ratio)?;
    let losses = match loss_type {
        DpoLoss::Sigmoid => smoothed_sigmoid_loss(&delta, beta, 0.0)?,
        DpoLoss::Cdpo => smoothed_sigmoid_loss(&delta, beta, label_smoothing)?,
        DpoLoss::Hinge => relu(&((&delta * beta)?.neg()? + 1.0)?)?,
        DpoLoss::Ipo => {
            let avg = (chosen_ratio.div(&policy.chosen_len)?
                - rejected_ratio.div(&policy.rejected_len)?)?;
            (avg - 1.0 / (2.0 * beta))?.sqr()?
        }
        DpoLoss::Robust => {
            let e = label_smoothing;
            let bx = (&delta * beta)?;
            let pos = log_sigmoid(&bx)?;
            let neg = log_sigmoid(&bx.neg()?)?;
            (((pos * -(1.0 - e))? + (neg * e)?)? / (1.0 - 2.0 * e))?
        }
    };
    let loss = losses.mean_all()?;
    let mut metrics = BTreeMap::new();
    reward_metrics(
        &mut metrics,
        &scaled(&chosen_ratio, beta)?,
        &scaled(&rejected_ratio, beta)?,
    );
    logps_metrics(&mut metrics, &policy.chosen, &policy.rejected)?;
    Ok(LossOut { loss, metrics })
}

/// DPO's token-level metrics from the policy's scores of a pair batch
/// (chosen rows `0..pairs`, rejected after): `logits/chosen|rejected`,
/// `mean_token_accuracy` (chosen tokens), `entropy` (all completion tokens).
pub fn dpo_token_metrics(lp: &SeqLogps, pairs: usize, metrics: &mut BTreeMap<String, f64>) {
    let rows = lp.counts.len();
    insert_some(metrics, "logits/chosen", lp.mean_logit(0..pairs));
    insert_some(metrics, "logits/rejected", lp.mean_logit(pairs..rows));
    insert_some(metrics, "mean_token_accuracy", lp.accuracy(0..pairs));
    insert_some(metrics, "entropy", lp.entropy(0..rows));
}

/// KTO: `labels[i]` says whether row i is desirable; the KL term is
/// estimated from mismatched (prompt, completion) pairs, averaged over all
/// rows, clamped at 0 and detached. The loss is the plain mean of the
/// weighted row losses.
#[allow(clippy::too_many_arguments)]
pub fn kto_loss(
    policy: &Tensor,
    reference: &Tensor,
    labels: &[bool],
    policy_kl: &Tensor,
    reference_kl: &Tensor,
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Result<LossOut> {
    let kl = scalar(&(policy_kl.detach() - reference_kl.detach())?.mean_all()?)?.max(0.0);
    let ratio = (policy - reference)?;
    let dev = policy.device();
    let mask: Vec<f32> = labels.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, labels.len(), dev)?.to_dtype(policy.dtype())?;
    // Desirable: 1 − σ(β(r − kl)); undesirable: 1 − σ(β(kl − r)).
    let desirable = (candle_nn::ops::sigmoid(&((&ratio - kl)? * beta)?)?.neg()? + 1.0)?;
    let undesirable = (candle_nn::ops::sigmoid(&((ratio.neg()? + kl)? * beta)?)?.neg()? + 1.0)?;
    let weighted = ((desirable * desirable_weight)?.mul(&mask)?
        + (undesirable * undesirable_weight)?.mul(&(mask.neg()? + 1.0)?)?)?;
    let loss = weighted.mean_all()?;
    let r = vec(&ratio.detach())?;
    let p = vec(&policy.detach())?;
    let pick = |want: bool, v: &[f64]| -> Vec<f64> {
        v.iter()
            .zip(labels)
            .filter(|(_, &l)| l == want)
            .map(|(x, _)| *x)
            .collect()
    };
    let chosen_rewards: Vec<f64> = pick(true, &r).iter().map(|x| beta * x).collect();
    let rejected_rewards: Vec<f64> = pick(false, &r).iter().map(|x| beta * x).collect();
    let mut metrics = BTreeMap::new();
    // TRL logs per-side means only where the batch has that side.
    if !chosen_rewards.is_empty() {
        metrics.insert("rewards/chosen".into(), mean(&chosen_rewards));
        metrics.insert("logps/chosen".into(), mean(&pick(true, &p)));
    }
    if !rejected_rewards.is_empty() {
        metrics.insert("rewards/rejected".into(), mean(&rejected_rewards));
        metrics.insert("logps/rejected".into(), mean(&pick(false, &p)));
    }
    if !chosen_rewards.is_empty() && !rejected_rewards.is_empty() {
        metrics.insert(
            "rewards/margins".into(),
            mean(&chosen_rewards) - mean(&rejected_rewards),
        );
    }
    metrics.insert("kl".into(), kl);
    Ok(LossOut { loss, metrics })
}

/// KTO's token-level metrics from the policy's scores of the main rows:
/// `logits/chosen` over desirable rows' completion tokens,
/// `logits/rejected` over undesirable ones', `entropy` over all.
pub fn kto_token_metrics(lp: &SeqLogps, labels: &[bool], metrics: &mut BTreeMap<String, f64>) {
    for (want, key) in [(true, "logits/chosen"), (false, "logits/rejected")] {
        let (sum, n) = (0..lp.owner.len())
            .filter(|&j| lp.trained[j] && labels[lp.owner[j]] == want)
            .fold((0.0, 0usize), |(s, n), j| {
                (s + lp.mean_logit[j] as f64, n + 1)
            });
        if n > 0 {
            metrics.insert(key.into(), sum / n as f64);
        }
    }
    insert_some(metrics, "entropy", lp.entropy(0..labels.len()));
}

/// SimPO (TRL: `CPOTrainer`, `loss_type = "simpo"`): the label-smoothed
/// sigmoid loss on β·(Ā_c − Ā_r − γ/β) with length-averaged log-probs Ā, plus
/// α × the chosen answers' NLL (α = 0 is the SimPO paper's loss). `logps/*`
/// are the averages and `rewards/*` β × the averages, as TRL logs them.
pub fn simpo_loss(
    policy: &PairLogps,
    chosen_token_nll: &Tensor,
    beta: f64,
    gamma: f64,
    label_smoothing: f64,
    alpha: f64,
) -> Result<LossOut> {
    let c = policy.chosen_avg()?;
    let r = policy.rejected_avg()?;
    let logits = ((&c - &r)? - gamma / beta)?;
    let pref = smoothed_sigmoid_loss(&logits, beta, label_smoothing)?.mean_all()?;
    let loss = if alpha == 0.0 {
        pref
    } else {
        (pref + (chosen_token_nll * alpha)?)?
    };
    let mut metrics = BTreeMap::new();
    reward_metrics(&mut metrics, &scaled(&c, beta)?, &scaled(&r, beta)?);
    logps_metrics(&mut metrics, &c, &r)?;
    metrics.insert("nll_loss".into(), nll_metric(chosen_token_nll, alpha)?);
    Ok(LossOut { loss, metrics })
}

/// CPO's and SimPO's `nll_loss`: TRL computes (and logs) it only when α ≠ 0.
fn nll_metric(nll: &Tensor, alpha: f64) -> Result<f64> {
    if alpha == 0.0 {
        Ok(0.0)
    } else {
        scalar(&nll.detach())
    }
}

/// CPO: reference-free sigmoid loss on summed log-probabilities plus
/// α × the chosen answers' NLL (mean over their completion tokens).
pub fn cpo_loss(
    policy: &PairLogps,
    chosen_token_nll: &Tensor,
    beta: f64,
    alpha: f64,
    label_smoothing: f64,
) -> Result<LossOut> {
    let logits = (&policy.chosen - &policy.rejected)?;
    let pref = smoothed_sigmoid_loss(&logits, beta, label_smoothing)?.mean_all()?;
    let loss = (pref + (chosen_token_nll * alpha)?)?;
    let mut metrics = BTreeMap::new();
    reward_metrics(
        &mut metrics,
        &scaled(&policy.chosen, beta)?,
        &scaled(&policy.rejected, beta)?,
    );
    metrics.insert("nll_loss".into(), nll_metric(chosen_token_nll, alpha)?);
    logps_metrics(&mut metrics, &policy.chosen, &policy.rejected)?;
    Ok(LossOut { loss, metrics })
}

/// ORPO: NLL of the chosen rows − λ · mean log σ(log-odds ratio), with
/// length-averaged log-probabilities. `chosen_token_nll` is TRL's NLL
/// (prompt and completion tokens) or the completion-only variant.
pub fn orpo_loss(policy: &PairLogps, chosen_token_nll: &Tensor, lambda: f64) -> Result<LossOut> {
    let c = policy.chosen_avg()?;
    let r = policy.rejected_avg()?;
    // log odds(p) = log p − log(1 − p), with log p = c.
    let log1m = |x: &Tensor| -> Result<Tensor> { (x.exp()?.neg()? + 1.0)?.log() };
    let log_odds = ((&c - &r)? - (log1m(&c)? - log1m(&r)?)?)?;
    let ratio = log_sigmoid(&log_odds)?;
    let loss = (chosen_token_nll - (ratio.mean_all()? * lambda)?)?;
    let mut metrics = BTreeMap::new();
    reward_metrics(&mut metrics, &scaled(&c, lambda)?, &scaled(&r, lambda)?);
    metrics.insert("nll_loss".into(), scalar(&chosen_token_nll.detach())?);
    metrics.insert("log_odds_ratio".into(), mean(&vec(&ratio.detach())?));
    metrics.insert("log_odds_chosen".into(), mean(&vec(&log_odds.detach())?));
    logps_metrics(&mut metrics, &c, &r)?;
    Ok(LossOut { loss, metrics })
}
