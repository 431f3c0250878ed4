//! Reward models, PPO and GRPO as TRL computes them, on plain numbers.
//!
//! - reward model: Bradley–Terry loss on scores (TRL 1.16 `RewardTrainer`);
//! - PPO: rewards with a per-token KL penalty, GAE, whitening, clipped
//!   policy and value losses (TRL 1.12 `trl.experimental.ppo.PPOTrainer`, the
//!   last TRL that has it: 1.13 removed PPO);
//! - GRPO: group-relative advantages and TRL 1.16 `GRPOTrainer`'s loss types.
//!
//! Losses come with their derivatives with respect to the per-token
//! log-probabilities (and values), worked out with PyTorch's rules at ties
//! (`max`/`min` split the gradient in two; `clamp` with number bounds passes
//! it only strictly inside them, with tensor bounds half of it at a bound:
//! measured on torch 2.15, see [`clamp_slope`]), so the trainer backpropagates `Σ slope·x` and gets the gradient
//! TRL's autograd gets, kinks included. `tests/rl_parity.rs` checks every
//! number against TRL's own code (`scripts/reference/trl_rl.py`).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// TRL's filler for the log-probability of a padded position.
pub const INVALID_LOGPROB: f64 = 1.0;

/// PPO's KL estimator (TRL's `kl_estimator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// −log r: unbiased, can be negative per token.
    #[default]
    K1,
    /// (r − 1) − log r: unbiased, never negative, lower variance.
    K3,
}

/// GRPO's loss types (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrpoLoss {
    /// Clipped surrogate; each sequence's token mean, then the mean over sequences.
    Grpo,
    /// Clipped surrogate; token mean over the micro-batch.
    Bnpo,
    /// Clipped surrogate; token sum over rows × `max_completion_length`.
    DrGrpo,
    /// Clipped surrogate; token sum over the tokens of the whole step (TRL's default).
    Dapo,
    /// Clipped-weight REINFORCE (the weight detached); normalised as dapo.
    Cispo,
    /// Soft sigmoid gate instead of the clip; normalised as grpo.
    Sapo,
    /// Clipped surrogate; each sequence's token sum, then the mean over sequences.
    Luspo,
}

impl GrpoLoss {
    /// Whether the loss is the clipped surrogate (and logs `clip_ratio/*`).
    pub fn clipped(self) -> bool {
        matches!(
            self,
            GrpoLoss::Grpo | GrpoLoss::Bnpo | GrpoLoss::DrGrpo | GrpoLoss::Dapo | GrpoLoss::Luspo
        )
    }
}

/// How GRPO scales the centred rewards (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// By the group's standard deviation.
    #[default]
    Group,
    /// By the whole batch's standard deviation.
    Batch,
    /// Not scaled (Dr. GRPO).
    None,
}

/// PPO's settings (TRL's `PPOConfig` names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct PpoSettings {
    pub response_length: usize,
    pub temperature: f64,
    /// `stop_token = "eos"`: responses end at the end-of-turn token.
    pub stop_at_eos: bool,
    pub missing_eos_penalty: Option<f64>,
    pub num_ppo_epochs: usize,
    pub num_mini_batches: usize,
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub cliprange: f64,
    pub vf_coef: f64,
    pub cliprange_value: f64,
    pub gamma: f64,
    pub lam: f64,
    pub whiten_rewards: bool,
}

impl Default for PpoSettings {
    fn default() -> Self {
        Self {
            response_length: 53,
            temperature: 0.7,
            stop_at_eos: false,
            missing_eos_penalty: None,
            num_ppo_epochs: 4,
            num_mini_batches: 1,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            cliprange: 0.2,
            vf_coef: 0.1,
            cliprange_value: 0.2,
            gamma: 1.0,
            lam: 0.95,
            whiten_rewards: false,
        }
    }
}

impl PpoSettings {
    /// What TRL divides logits by before every log-softmax (`temperature + 1e-7`).
    pub fn logit_temperature(&self) -> f64 {
        self.temperature + 1e-7
    }
}

/// GRPO's settings (TRL's `GRPOConfig` names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoSettings {
    pub num_generations: usize,
    pub max_completion_length: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// KL coefficient (0: no reference model is needed).
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    pub loss_type: GrpoLoss,
    pub scale_rewards: ScaleRewards,
}

impl Default for GrpoSettings {
    fn default() -> Self {
        Self {
            num_generations: 8,
            max_completion_length: 512,
            temperature: 1.0,
            top_p: 1.0,
            beta: 0.0,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            loss_type: GrpoLoss::Dapo,
            scale_rewards: ScaleRewards::Group,
        }
    }
}

/// SAPO's gate temperatures (TRL's defaults `sapo_temperature_pos|neg`).
pub const SAPO_TEMPERATURE_POS: f64 = 1.0;
pub const SAPO_TEMPERATURE_NEG: f64 = 1.05;

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log σ(x), stable.
fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// d max(a, b) as PyTorch splits it: the larger side, half each at a tie.
fn max_split(a: f64, b: f64) -> (f64, f64) {
    if a > b {
        (1.0, 0.0)
    } else if b > a {
        (0.0, 1.0)
    } else {
        (0.5, 0.5)
    }
}

/// d clamp(x, lo, hi)/dx as torch 2.15 has it for number bounds
/// (`torch.clamp(x, 0.8, 1.2)`): 1 strictly inside, 0 at a bound and outside.
/// Measured: the gradient at x = lo is 0, not 1.
fn clamp_slope(x: f64, lo: f64, hi: f64) -> f64 {
    if x > lo && x < hi {
        1.0
    } else {
        0.0
    }
}

/// d clamp(x, lo, hi)/dx as torch 2.15 has it for tensor bounds (PPO's value
/// clip, `torch.clamp(vpred, values − c, values + c)`): it is max then min,
/// so a tie with a bound splits the gradient in two, as `max`/`min` do.
fn clamp_slope_tensor(x: f64, lo: f64, hi: f64) -> f64 {
    if x > lo && x < hi {
        1.0
    } else if x == lo || x == hi {
        0.5
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------
// Reward model

/// The reward model's loss on a batch of pair scores, with its metrics.
pub struct RewardLoss {
    pub loss: f64,
    /// d loss / d chosen score, per pair.
    pub d_chosen: Vec<f64>,
    /// d loss / d rejected score, per pair.
    pub d_rejected: Vec<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// TRL's `RewardTrainer.compute_loss`: −mean log σ(r_c − r_r), plus
/// `center_rewards_coefficient` × mean((r_c + r_r)²); metrics `min_reward`,
/// `mean_reward`, `max_reward` (over both sides), `accuracy` (chosen
/// strictly above rejected) and `margin`.
pub fn reward_loss(chosen: &[f64], rejected: &[f64], center: Option<f64>) -> RewardLoss {
    let n = chosen.len().max(1) as f64;
    let mut loss = 0.0;
    let mut d_chosen = Vec::with_capacity(chosen.len());
    let mut d_rejected = Vec::with_capacity(chosen.len());
    for (&c, &r) in chosen.iter().zip(rejected) {
        let m = c - r;
        loss -= log_sigmoid(m) / n;
        // d/dm −log σ(m) = −σ(−m)
        let g = -sigmoid(-m) / n;
        let (mut gc, mut gr) = (g, -g);
        if let Some(k) = center {
            loss += k * (c + r).powi(2) / n;
            gc += 2.0 * k * (c + r) / n;
            gr += 2.0 * k * (c + r) / n;
        }
        d_chosen.push(gc);
        d_rejected.push(gr);
    }
    let all: Vec<f64> = chosen.iter().chain(rejected).copied().collect();
    let margins: Vec<f64> = chosen.iter().zip(rejected).map(|(c, r)| c - r).collect();
    let acc: Vec<f64> = chosen
        .iter()
        .zip(rejected)
        .map(|(c, r)| if c > r { 1.0 } else { 0.0 })
        .collect();
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "min_reward".into(),
        all.iter().copied().fold(f64::INFINITY, f64::min),
    );
    metrics.insert("mean_reward".into(), mean(&all));
    metrics.insert(
        "max_reward".into(),
        all.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    metrics.insert("accuracy".into(), mean(&acc));
    metrics.insert("margin".into(), mean(&margins));
    RewardLoss {
        loss,
        d_chosen,
        d_rejected,
        metrics,
    }
}

/// [`reward_loss`] on score tensors (each (n,)), for backward: the tensor's
/// value is TRL's loss, computed in f64, and its gradient towards the scores
/// is TRL's, given explicitly as value + Σ (s − s̄)·slope (s − s̄ is exactly
/// 0), so candle's rules at kinks never enter. Returns the metrics too.
pub fn reward_loss_tensor(
    chosen: &Tensor,
    rejected: &Tensor,
    center: Option<f64>,
) -> anyhow::Result<(Tensor, BTreeMap<String, f64>)> {
    let f64s = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
    let (c, r) = (f64s(chosen)?, f64s(rejected)?);
    if c.len() != r.len() || c.is_empty() {
        anyhow::bail!(
            "a reward loss needs as many chosen as rejected scores, at least one ({} and {})",
            c.len(),
            r.len()
        );
    }
    let out = reward_loss(&c, &r, center);
    let dtype = chosen.dtype();
    let dev = chosen.device();
    let slope = |d: &[f64]| Tensor::new(d, dev)?.to_dtype(dtype);
    let zero = |t: &Tensor| t - t.detach();
    let g = (zero(chosen)?.mul(&slope(&out.d_chosen)?)?.sum_all()?
        + zero(rejected)?.mul(&slope(&out.d_rejected)?)?.sum_all()?)?;
    let loss = (g + out.loss)?;
    Ok((loss, out.metrics))
}

// ---------------------------------------------------------------------------
// PPO

/// A PPO rollout batch on TRL's response grid: `rows` responses padded to
/// `width` tokens (the longest response, stop token included). Row-major
/// `rows × width` arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct PpoRollouts {
    pub rows: usize,
    pub width: usize,
    /// Log-probabilities the policy gave its sampled tokens (at the sampling
    /// temperature); padded positions are ignored.
    pub logprobs: Vec<f64>,
    /// The reference model's, on the same tokens.
    pub ref_logprobs: Vec<f64>,
    /// The value model's estimate before each response token; positions
    /// past `seq_len + 1` are ignored.
    pub values: Vec<f64>,
    /// Index of each row's last real token (TRL's `sequence_lengths`): the
    /// stop token, or `width − 1`.
    pub seq_len: Vec<usize>,
    /// The reward model's score of each response (missing-EOS penalty
    /// already applied).
    pub scores: Vec<f64>,
}

/// What PPO trains towards, computed once per rollout batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PpoTargets {
    /// Whitened advantages, 0 on padded positions.
    pub advantages: Vec<f64>,
    /// GAE's advantages before whitening.
    pub gae_advantages: Vec<f64>,
    pub returns: Vec<f64>,
    /// Values with positions past `seq_len + 1` set to 0.
    pub values: Vec<f64>,
    /// Old log-probabilities with padded positions set to [`INVALID_LOGPROB`].
    pub logprobs: Vec<f64>,
    /// Per-token KL estimate (0 on padded positions).
    pub kl: Vec<f64>,
    /// Per-token rewards before any whitening: −kl_coef·kl, plus the score
    /// at the row's end.
    pub rewards: Vec<f64>,
    /// Per-token rewards as GAE used them (whitened when asked).
    pub gae_rewards: Vec<f64>,
    /// True past `seq_len` (TRL's `padding_mask`).
    pub padding: Vec<bool>,
    /// True past `seq_len + 1` (TRL's `padding_mask_p1`).
    pub padding_p1: Vec<bool>,
}

/// Masked mean over the positions where `keep`.
fn masked_mean(values: &[f64], keep: &[bool]) -> f64 {
    let (s, n) = values
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
    s / n as f64
}

/// TRL's `masked_var` (unbiased: Bessel's correction).
fn masked_var(values: &[f64], keep: &[bool]) -> f64 {
    let m = masked_mean(values, keep);
    let centred: Vec<f64> = values.iter().map(|v| (v - m).powi(2)).collect();
    let n = keep.iter().filter(|&&k| k).count() as f64;
    masked_mean(&centred, keep) * n / (n - 1.0)
}

/// TRL's `masked_whiten`: (x − mean)/sqrt(var + 1e-8), the mean added back
/// when `shift_mean` is false. Every position is transformed.
pub fn masked_whiten(values: &[f64], keep: &[bool], shift_mean: bool) -> Vec<f64> {
    let m = masked_mean(values, keep);
    let v = masked_var(values, keep);
    let inv = 1.0 / (v + 1e-8).sqrt();
    values
        .iter()
        .map(|x| {
            let w = (x - m) * inv;
            if shift_mean {
                w
            } else {
                w + m
            }
        })
        .collect()
}

/// Rewards, GAE, returns and whitened advantages of a rollout batch, as
/// TRL's `PPOTrainer.train` computes them between generation and the
/// PPO epochs.
pub fn ppo_targets(r: &PpoRollouts, s: &PpoSettings) -> PpoTargets {
    let (rows, width) = (r.rows, r.width);
    let at = |row: usize, t: usize| row * width + t;
    let mut padding = vec![false; rows * width];
    let mut padding_p1 = vec![false; rows * width];
    for row in 0..rows {
        for t in 0..width {
            padding[at(row, t)] = t > r.seq_len[row];
            padding_p1[at(row, t)] = t > r.seq_len[row] + 1;
        }
    }
    let fill = |v: &[f64], mask: &[bool], with: f64| -> Vec<f64> {
        v.iter()
            .zip(mask)
            .map(|(&x, &m)| if m { with } else { x })
            .collect()
    };
    let logprobs = fill(&r.logprobs, &padding, INVALID_LOGPROB);
    let ref_logprobs = fill(&r.ref_logprobs, &padding, INVALID_LOGPROB);
    let values = fill(&r.values, &padding_p1, 0.0);
    let kl: Vec<f64> = logprobs
        .iter()
        .zip(&ref_logprobs)
        .map(|(lp, rlp)| {
            let logr = rlp - lp;
            match s.kl_estimator {
                KlEstimator::K1 => -logr,
                KlEstimator::K3 => (logr.exp() - 1.0) - logr,
            }
        })
        .collect();
    let mut rewards: Vec<f64> = kl.iter().map(|k| -s.kl_coef * k).collect();
    for row in 0..rows {
        let end = if r.seq_len[row] + 1 < width {
            r.seq_len[row] + 1
        } else {
            r.seq_len[row]
        };
        rewards[at(row, end)] += r.scores[row];
    }
    let gae_rewards = if s.whiten_rewards {
        let keep: Vec<bool> = padding_p1.iter().map(|p| !p).collect();
        fill(&masked_whiten(&rewards, &keep, false), &padding_p1, 0.0)
    } else {
        rewards.clone()
    };
    let mut advantages = vec![0.0; rows * width];
    for row in 0..rows {
        let mut last = 0.0;
        for t in (0..width).rev() {
            let next = if t + 1 < width {
                values[at(row, t + 1)]
            } else {
                0.0
            };
            let delta = gae_rewards[at(row, t)] + s.gamma * next - values[at(row, t)];
            last = delta + s.gamma * s.lam * last;
            advantages[at(row, t)] = last;
        }
    }
    let returns: Vec<f64> = advantages.iter().zip(&values).map(|(a, v)| a + v).collect();
    let keep: Vec<bool> = padding.iter().map(|p| !p).collect();
    let whitened = fill(&masked_whiten(&advantages, &keep, true), &padding, 0.0);
    PpoTargets {
        advantages: whitened,
        gae_advantages: advantages,
        returns,
        values,
        logprobs,
        kl,
        rewards,
        gae_rewards,
        padding,
        padding_p1,
    }
}

/// The rollout metrics TRL logs once per PPO update: `objective/kl`
/// (per-row KL sums, averaged), `objective/entropy` (per-row sums of
/// −log p of the sampled tokens, averaged), `objective/non_score_reward`,
/// `objective/rlhf_reward`, `objective/scores`.
pub fn ppo_rollout_metrics(
    r: &PpoRollouts,
    t: &PpoTargets,
    s: &PpoSettings,
) -> BTreeMap<String, f64> {
    let rows = r.rows.max(1) as f64;
    let w = r.width;
    let row_sum = |v: &dyn Fn(usize) -> f64| -> f64 {
        (0..r.rows)
            .map(|row| (0..w).map(|i| v(row * w + i)).sum::<f64>())
            .sum::<f64>()
            / rows
    };
    let kl = row_sum(&|i| t.kl[i]);
    let entropy = row_sum(&|i| if t.padding[i] { 0.0 } else { -t.logprobs[i] });
    let non_score = row_sum(&|i| -s.kl_coef * t.kl[i]);
    let scores = mean(&r.scores);
    let mut m = BTreeMap::new();
    m.insert("objective/kl".into(), kl);
    m.insert("objective/entropy".into(), entropy);
    m.insert("objective/non_score_reward".into(), non_score);
    m.insert("objective/rlhf_reward".into(), non_score + scores);
    m.insert("objective/scores".into(), scores);
    m
}

/// One PPO micro-batch: its rows' targets and the new model outputs.
pub struct PpoMicroBatch<'a> {
    pub width: usize,
    /// New log-probabilities of the sampled tokens, `rows × width`.
    pub new_logprobs: &'a [f64],
    /// New value predictions, `rows × width`.
    pub vpred: &'a [f64],
    /// The rows' targets, gathered: old log-probs, advantages, returns,
    /// old values, masks (each `rows × width`).
    pub old_logprobs: &'a [f64],
    pub advantages: &'a [f64],
    pub returns: &'a [f64],
    pub values: &'a [f64],
    pub padding: &'a [bool],
    pub padding_p1: &'a [bool],
}

/// A PPO micro-batch's loss, its derivatives and TRL's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct PpoLoss {
    /// pg_loss + vf_coef · vf_loss.
    pub loss: f64,
    pub pg_loss: f64,
    pub vf_loss: f64,
    pub pg_clipfrac: f64,
    pub vf_clipfrac: f64,
    /// ½ mean of the squared log-ratio over the whole grid.
    pub approxkl: f64,
    /// Mean ratio over the whole grid.
    pub ratio: f64,
    /// d loss / d new log-prob, per position.
    pub d_logprobs: Vec<f64>,
    /// d loss / d value prediction, per position.
    pub d_vpred: Vec<f64>,
}

/// TRL's PPO loss on one micro-batch: the clipped policy loss (mean over
/// real tokens) plus `vf_coef` × the clipped value loss (½ mean over real
/// tokens and the one after each row's end).
pub fn ppo_loss(mb: &PpoMicroBatch, s: &PpoSettings) -> PpoLoss {
    let n = mb.new_logprobs.len();
    let real = mb.padding.iter().filter(|&&p| !p).count() as f64;
    let real_p1 = mb.padding_p1.iter().filter(|&&p| !p).count() as f64;
    let (lo, hi) = (1.0 - s.cliprange, 1.0 + s.cliprange);
    let (mut pg, mut pg_clip, mut vf, mut vf_clip) = (0.0, 0.0, 0.0, 0.0);
    let (mut approx, mut ratio_sum) = (0.0, 0.0);
    let mut d_logprobs = vec![0.0; n];
    let mut d_vpred = vec![0.0; n];
    for i in 0..n {
        // TRL fills padded new log-probs with INVALID_LOGPROB (no gradient).
        let new = if mb.padding[i] {
            INVALID_LOGPROB
        } else {
            mb.new_logprobs[i]
        };
        let diff = new - mb.old_logprobs[i];
        let ratio = diff.exp();
        approx += 0.5 * diff * diff / n as f64;
        ratio_sum += ratio / n as f64;
        if !mb.padding[i] {
            let a = mb.advantages[i];
            let l1 = -a * ratio;
            let l2 = -a * ratio.clamp(lo, hi);
            pg += l1.max(l2) / real;
            if l2 > l1 {
                pg_clip += 1.0 / real;
            }
            let (w1, w2) = max_split(l1, l2);
            let d_ratio = w1 * -a + w2 * -a * clamp_slope(ratio, lo, hi);
            d_logprobs[i] = d_ratio * ratio / real;
        }
        if !mb.padding_p1[i] {
            let v = mb.vpred[i];
            let (vl, vh) = (
                mb.values[i] - s.cliprange_value,
                mb.values[i] + s.cliprange_value,
            );
            let vc = v.clamp(vl, vh);
            let ret = mb.returns[i];
            let (l1, l2) = ((v - ret).powi(2), (vc - ret).powi(2));
            vf += 0.5 * l1.max(l2) / real_p1;
            if l2 > l1 {
                vf_clip += 1.0 / real_p1;
            }
            let (w1, w2) = max_split(l1, l2);
            let d = w1 * 2.0 * (v - ret) + w2 * 2.0 * (vc - ret) * clamp_slope_tensor(v, vl, vh);
            d_vpred[i] = s.vf_coef * 0.5 * d / real_p1;
        }
    }
    PpoLoss {
        loss: pg + s.vf_coef * vf,
        pg_loss: pg,
        vf_loss: vf,
        pg_clipfrac: pg_clip,
        vf_clipfrac: vf_clip,
        approxkl: approx,
        ratio: ratio_sum,
        d_logprobs,
        d_vpred,
    }
}

/// The statistics of a PPO update's micro-batches, logged under TRL's
/// names as means over every micro-batch of every PPO epoch.
#[derive(Debug, Clone, Default)]
pub struct PpoStats {
    approxkl: Vec<f64>,
    pg_clipfrac: Vec<f64>,
    pg_loss: Vec<f64>,
    vf_loss: Vec<f64>,
    vf_clipfrac: Vec<f64>,
    entropy: Vec<f64>,
    ratio: Vec<f64>,
}

impl PpoStats {
    /// One micro-batch's loss and its mean next-token entropy.
    pub fn push(&mut self, l: &PpoLoss, entropy: f64) {
        self.approxkl.push(l.approxkl);
        self.pg_clipfrac.push(l.pg_clipfrac);
        self.pg_loss.push(l.pg_loss);
        self.vf_loss.push(l.vf_loss);
        self.vf_clipfrac.push(l.vf_clipfrac);
        self.entropy.push(entropy);
        self.ratio.push(l.ratio);
    }

    /// `policy/approxkl_avg`, `policy/clipfrac_avg`, `loss/policy_avg`,
    /// `loss/value_avg`, `val/clipfrac_avg`, `policy/entropy_avg`,
    /// `val/ratio`, `val/ratio_var` (unbiased, as torch's `var`).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("policy/approxkl_avg".into(), mean(&self.approxkl));
        m.insert("policy/clipfrac_avg".into(), mean(&self.pg_clipfrac));
        m.insert("loss/policy_avg".into(), mean(&self.pg_loss));
        m.insert("loss/value_avg".into(), mean(&self.vf_loss));
        m.insert("val/clipfrac_avg".into(), mean(&self.vf_clipfrac));
        m.insert("policy/entropy_avg".into(), mean(&self.entropy));
        let r = mean(&self.ratio);
        m.insert("val/ratio".into(), r);
        let n = self.ratio.len() as f64;
        let var = self.ratio.iter().map(|x| (x - r).powi(2)).sum::<f64>() / (n - 1.0);
        m.insert("val/ratio_var".into(), if n > 1.0 { var } else { f64::NAN });
        m
    }
}

// ---------------------------------------------------------------------------
// GRPO

/// Mean and unbiased standard deviation ignoring NaNs (TRL's `nanmean`,
/// `nanstd`).
fn nan_mean_std(v: &[f64]) -> (f64, f64) {
    let xs: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    let m = mean(&xs);
    let n = xs.len() as f64;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    (m, (var * n / (n - 1.0)).sqrt())
}

/// Group-relative advantages of a generation batch (`num_generations`
/// consecutive completions per prompt), and TRL's reward metrics
/// (`reward`, `reward_std`, `frac_reward_zero_std`). A NaN reward gets
/// advantage 0 and is left out of its group's statistics.
pub fn grpo_advantages(
    rewards: &[f64],
    num_generations: usize,
    scale: ScaleRewards,
) -> (Vec<f64>, BTreeMap<String, f64>) {
    let g = num_generations.max(1);
    let (batch_mean, batch_std) = nan_mean_std(rewards);
    let mut adv = Vec::with_capacity(rewards.len());
    let mut zero_std = 0.0;
    for group in rewards.chunks(g) {
        let (m, group_std) = nan_mean_std(group);
        let std = match scale {
            ScaleRewards::Batch => batch_std,
            _ if g > 1 => group_std,
            _ => 0.0,
        };
        for &r in group {
            let mut a = r - m;
            if scale != ScaleRewards::None {
                a /= std + 1e-4;
            }
            adv.push(if a.is_nan() { 0.0 } else { a });
            // torch.isclose(std, 0): |std| ≤ 1e-8 (atol) + 1e-5·0.
            if std.abs() <= 1e-8 {
                zero_std += 1.0;
            }
        }
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("reward".into(), batch_mean);
    metrics.insert("reward_std".into(), batch_std);
    metrics.insert(
        "frac_reward_zero_std".into(),
        zero_std / rewards.len().max(1) as f64,
    );
    (adv, metrics)
}

/// One GRPO micro-batch: `rows` completions of width `width`
/// (row-major), each with its advantage.
pub struct GrpoMicroBatch<'a> {
    pub width: usize,
    /// Policy log-probabilities of the completion tokens (at the sampling
    /// temperature), differentiated.
    pub logprobs: &'a [f64],
    /// The log-probabilities the completions were sampled with; `None`
    /// when they are the current policy's (TRL: `num_iterations = 1`,
    /// `old_per_token_logps = per_token_logps.detach()`).
    pub old_logprobs: Option<&'a [f64]>,
    /// The reference's (needed when β ≠ 0).
    pub ref_logprobs: Option<&'a [f64]>,
    /// Per-token entropies (for the `entropy` metric only).
    pub entropies: &'a [f64],
    /// 1 on completion tokens.
    pub mask: &'a [bool],
    pub advantages: &'a [f64],
    /// Completion tokens in the whole step's generation batch (dapo, cispo).
    pub step_tokens: usize,
    /// Micro-batches per optimizer step (TRL divides by it).
    pub grad_accum: usize,
}

/// A GRPO micro-batch's loss (already divided for accumulation, as TRL
/// backpropagates it), its derivative and TRL's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoLossOut {
    pub loss: f64,
    pub d_logprobs: Vec<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// The per-token loss and its derivative with respect to the log-prob.
fn grpo_token(
    s: &GrpoSettings,
    x: f64,
    old: f64,
    reference: Option<f64>,
    a: f64,
) -> (f64, f64, f64) {
    let coef = (x - old).exp();
    let (mut l, mut d) = match s.loss_type {
        GrpoLoss::Cispo => {
            let w = coef.min(s.epsilon_high);
            (-w * a * x, -w * a)
        }
        GrpoLoss::Sapo => {
            let tau = if a > 0.0 {
                SAPO_TEMPERATURE_POS
            } else {
                SAPO_TEMPERATURE_NEG
            };
            let sg = sigmoid(tau * (coef - 1.0));
            (-sg * 4.0 / tau * a, -4.0 * sg * (1.0 - sg) * a * coef)
        }
        _ => {
            let (lo, hi) = (1.0 - s.epsilon_low, 1.0 + s.epsilon_high);
            let (l1, l2) = (coef * a, coef.clamp(lo, hi) * a);
            // −min(l1, l2) = max(−l1, −l2).
            let (w1, w2) = max_split(-l1, -l2);
            let dc = w1 * -a + w2 * -a * clamp_slope(coef, lo, hi);
            (-(l1.min(l2)), dc * coef)
        }
    };
    let mut kl = 0.0;
    if let Some(r) = reference {
        // k3 estimator, times the importance weight (use_bias_correction_kl).
        let k = (r - x).exp() - (r - x) - 1.0;
        let dk = -(r - x).exp() + 1.0;
        kl = k * coef;
        l += s.beta * kl;
        d += s.beta * (dk * coef + k * coef);
    }
    (l, d, kl)
}

/// TRL's `GRPOTrainer._compute_loss` for token-level importance sampling.
pub fn grpo_loss(mb: &GrpoMicroBatch, s: &GrpoSettings) -> GrpoLossOut {
    let w = mb.width;
    let rows = mb.logprobs.len() / w.max(1);
    let mut per_token = vec![0.0; rows * w];
    let mut d_tok = vec![0.0; rows * w];
    let mut kl = vec![0.0; rows * w];
    for i in 0..rows * w {
        let old = mb.old_logprobs.map_or(mb.logprobs[i], |o| o[i]);
        let reference = mb.ref_logprobs.filter(|_| s.beta != 0.0).map(|r| r[i]);
        let (l, d, k) = grpo_token(s, mb.logprobs[i], old, reference, mb.advantages[i / w]);
        per_token[i] = l;
        d_tok[i] = d;
        kl[i] = k;
    }
    let m = |i: usize| if mb.mask[i] { 1.0 } else { 0.0 };
    let row_tokens: Vec<f64> = (0..rows)
        .map(|r| (0..w).map(|t| m(r * w + t)).sum())
        .collect();
    let total: f64 = row_tokens.iter().sum();
    let ga = mb.grad_accum.max(1) as f64;
    // Each position's weight in the loss: the loss is Σ weight·per_token.
    let weight = |i: usize| -> f64 {
        let r = i / w;
        m(i) * match s.loss_type {
            GrpoLoss::Grpo | GrpoLoss::Sapo => 1.0 / row_tokens[r].max(1.0) / rows as f64 / ga,
            GrpoLoss::Bnpo => 1.0 / total.max(1.0) / ga,
            GrpoLoss::DrGrpo => 1.0 / (rows as f64 * s.max_completion_length as f64) / ga,
            GrpoLoss::Dapo | GrpoLoss::Cispo => 1.0 / (mb.step_tokens as f64).max(1.0),
            GrpoLoss::Luspo => 1.0 / rows as f64 / ga,
        }
    };
    let loss: f64 = (0..rows * w).map(|i| weight(i) * per_token[i]).sum();
    let d_logprobs: Vec<f64> = (0..rows * w).map(|i| weight(i) * d_tok[i]).collect();
    let masked = |v: &dyn Fn(usize) -> f64| -> f64 {
        (0..rows * w).map(|i| m(i) * v(i)).sum::<f64>() / total.max(1.0)
    };
    let mut metrics = BTreeMap::new();
    if s.beta != 0.0 {
        metrics.insert("kl".into(), masked(&|i| kl[i]));
    }
    metrics.insert("entropy".into(), masked(&|i| mb.entropies[i]));
    let coef = |i: usize| (mb.logprobs[i] - mb.old_logprobs.map_or(mb.logprobs[i], |o| o[i])).exp();
    let adv = |i: usize| mb.advantages[i / w];
    if s.loss_type.clipped() {
        let low = |i: usize| coef(i) < 1.0 - s.epsilon_low && adv(i) < 0.0;
        let high = |i: usize| coef(i) > 1.0 + s.epsilon_high && adv(i) > 0.0;
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        metrics.insert("clip_ratio/low_mean".into(), masked(&|i| b(low(i))));
        metrics.insert("clip_ratio/high_mean".into(), masked(&|i| b(high(i))));
        metrics.insert(
            "clip_ratio/region_mean".into(),
            masked(&|i| b(low(i) || high(i))),
        );
        // Per sequence, then the extreme over sequences (NaN rows skipped).
        let seq = |f: &dyn Fn(usize) -> bool| -> Vec<f64> {
            (0..rows)
                .filter(|&r| row_tokens[r] > 0.0)
                .map(|r| {
                    (0..w).map(|t| m(r * w + t) * b(f(r * w + t))).sum::<f64>() / row_tokens[r]
                })
                .collect()
        };
        let lows = seq(&low);
        let highs = seq(&high);
        if !lows.is_empty() {
            metrics.insert(
                "clip_ratio/low_min".into(),
                lows.iter().copied().fold(f64::INFINITY, f64::min),
            );
            metrics.insert(
                "clip_ratio/high_max".into(),
                highs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
        }
    } else if s.loss_type == GrpoLoss::Cispo {
        let b = |i: usize| {
            if coef(i) > s.epsilon_high && adv(i) > 0.0 {
                1.0
            } else {
                0.0
            }
        };
        metrics.insert("cispo_clip_ratio".into(), masked(&b));
    }
    GrpoLossOut {
        loss,
        d_logprobs,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finite-difference check of an analytic derivative (away from kinks).
    fn numeric(f: &dyn Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-6;
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn reward_loss_by_hand() {
        // One pair with margin 0: loss ln 2, gradient ∓½.
        let out = reward_loss(&[1.5], &[1.5], None);
        assert!((out.loss - std::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(out.d_chosen, vec![-0.5]);
        assert_eq!(out.d_rejected, vec![0.5]);
        assert_eq!(out.metrics["accuracy"], 0.0);
        // Centring adds k·(c + r)²: 0.01 · 9 = 0.09.
        let out = reward_loss(&[1.5], &[1.5], Some(0.01));
        assert!((out.loss - (std::f64::consts::LN_2 + 0.09)).abs() < 1e-15);
    }

    #[test]
    fn whitening_is_unbiased_and_respects_the_mask() {
        let w = masked_whiten(&[1.0, 2.0, 3.0, 100.0], &[true, true, true, false], true);
        // mean 2, unbiased var 1
        assert!((w[0] + 1.0).abs() < 1e-8 && w[1].abs() < 1e-12 && (w[2] - 1.0).abs() < 1e-8);
        assert!(
            (w[3] - 98.0).abs() < 1e-6,
            "masked positions are shifted too"
        );
    }

    #[test]
    fn ppo_derivatives_match_finite_differences() {
        let s = PpoSettings::default();
        let old = [-1.0, -2.0, -0.5, INVALID_LOGPROB];
        let adv = [0.7, -1.3, 0.2, 0.0];
        let ret = [0.5, 0.1, -0.2, 0.3];
        let val = [0.4, 0.3, -0.1, 0.3];
        let pad = [false, false, false, true];
        let pad1 = [false, false, false, false];
        let new = [-0.9, -2.4, -0.55, 0.0];
        let vpred = [0.45, 0.7, -0.05, 0.1];
        let run = |new: &[f64], vpred: &[f64]| {
            ppo_loss(
                &PpoMicroBatch {
                    width: 4,
                    new_logprobs: new,
                    vpred,
                    old_logprobs: &old,
                    advantages: &adv,
                    returns: &ret,
                    values: &val,
                    padding: &pad,
                    padding_p1: &pad1,
                },
                &s,
            )
        };
        let out = run(&new, &vpred);
        for i in 0..4 {
            let f = |x: f64| {
                let mut n = new;
                n[i] = x;
                run(&n, &vpred).loss
            };
            assert!(
                (numeric(&f, new[i]) - out.d_logprobs[i]).abs() < 1e-6,
                "{i}"
            );
            let g = |x: f64| {
                let mut v = vpred;
                v[i] = x;
                run(&new, &v).loss
            };
            assert!((numeric(&g, vpred[i]) - out.d_vpred[i]).abs() < 1e-6, "{i}");
        }
        assert_eq!(out.d_logprobs[3], 0.0, "padded positions get no gradient");
    }

    #[test]
    fn grpo_advantages_by_hand() {
        let (adv, m) = grpo_advantages(&[1.0, 3.0, 2.0, 2.0], 2, ScaleRewards::Group);
        // Group 1: mean 2, std √2; group 2: std 0.
        let a = 1.0 / (2f64.sqrt() + 1e-4);
        assert!((adv[0] + a).abs() < 1e-12 && (adv[1] - a).abs() < 1e-12);
        assert_eq!(&adv[2..], &[0.0, 0.0]);
        assert_eq!(m["frac_reward_zero_std"], 0.5);
        assert_eq!(m["reward"], 2.0);
        // A NaN reward: left out of its group, advantage 0.
        let (adv, _) = grpo_advantages(&[1.0, f64::NAN, 0.0, 2.0], 2, ScaleRewards::None);
        assert_eq!(adv, vec![0.0, 0.0, -1.0, 1.0]);
    }

    #[test]
    fn grpo_derivatives_match_finite_differences() {
        // (CISPO's weight is detached, so its finite difference is not its
        // gradient; tests/rl_parity.rs checks it against TRL.)
        for loss_type in [
            GrpoLoss::Grpo,
            GrpoLoss::Bnpo,
            GrpoLoss::DrGrpo,
            GrpoLoss::Dapo,
            GrpoLoss::Sapo,
            GrpoLoss::Luspo,
        ] {
            let s = GrpoSettings {
                beta: 0.04,
                loss_type,
                max_completion_length: 3,
                epsilon_high: 0.28,
                ..Default::default()
            };
            let lp = [-1.0, -0.5, -2.0, -0.3, -0.7, -1.1];
            let old = [-1.1, -0.45, -2.5, -0.3, -0.2, -1.0];
            let rf = [-0.9, -0.6, -2.1, -0.2, -0.8, -1.3];
            let mask = [true, true, false, true, true, true];
            let run = |lp: &[f64]| {
                grpo_loss(
                    &GrpoMicroBatch {
                        width: 3,
                        logprobs: lp,
                        old_logprobs: Some(&old),
                        ref_logprobs: Some(&rf),
                        entropies: &[0.0; 6],
                        mask: &mask,
                        advantages: &[0.8, -1.2],
                        step_tokens: 10,
                        grad_accum: 2,
                    },
                    &s,
                )
            };
            let out = run(&lp);
            for i in 0..6 {
                let f = |x: f64| {
                    let mut v = lp;
                    v[i] = x;
                    run(&v).loss
                };
                let want = numeric(&f, lp[i]);
                assert!(
                    (want - out.d_logprobs[i]).abs() < 1e-6,
                    "{loss_type:?} {i}: {want} vs {}",
                    out.d_logprobs[i]
                );
            }
        }
    }
}
