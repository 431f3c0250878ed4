//! A PPO update (TRL 1.12's `PPOTrainer`, the last TRL that has it): one
//! response sampled per prompt, scored by a frozen reward model; a value
//! model started from that reward model and trained beside the policy; the
//! per-token KL penalty to the reference, GAE and whitening of
//! [`crate::train::rl::ppo_targets`]; then `num_ppo_epochs` passes over the
//! rollouts in `num_mini_batches` shuffled mini-batches of `grad_accum`
//! micro-batches, each mini-batch one optimizer step of policy and value
//! model together (one gradient norm, clipped as one), with the clipped
//! losses of [`crate::train::rl::ppo_loss`] — every formula checked against
//! TRL's own code.
//!
//! ```text
//! prompts ─▶ generate ─▶ logp, ref logp, values, scores ─▶ ppo_targets ─▶ epochs × mini-batches:
//!                                                        logp, vpred (grad) ─▶ ppo_loss ─▶ backward ─▶ AdamW
//! ```
//!
//! Where driftui differs from TRL: the sampler always ends a response at the
//! end-of-turn token (TRL without `stop_token` samples on to
//! `response_length`); a response that is only its stop token when the pad
//! token is the stop token (TRL's sequence length −1) counts the stop token
//! as its one real token.
//!
//! The sampler and the mini-batch order are seeded from the run's seed and
//! the global step; the value model and its optimizer state are written
//! into every snapshot of the phase, so a resumed run repeats the updates
//! of one that was never stopped, bit for bit.

use super::grpo_phase::{completion_logps, sample_seed, RewardSource};
use super::{StepDone, Trainer};
use crate::data::{Batcher, SeqBatch, TokenSeq};
use crate::events::{AlertLevel, Rollout};
use crate::model::generate::SamplingParams;
use crate::model::reward;
use crate::model::score::target_hidden;
use crate::model::weights::{save_tensors, TensorMap};
use crate::model::{Decoder, Mode};
use crate::train::objectives::Objective;
use crate::train::optim::{collect_grads, AdamW, AdamWConfig};
use crate::train::phase::{Phase, PhaseData};
use crate::train::rl::{
    ppo_loss, ppo_rollout_metrics, ppo_targets, PpoMicroBatch, PpoRollouts, PpoStats,
};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The value model's weights in a snapshot.
pub const VALUE_FILE: &str = "value_model.safetensors";
/// Its optimizer state.
pub use crate::rundir::snapshot::VALUE_OPTIMIZER_FILE;

/// PPO's value model: a decoder with a scalar head, every weight trained,
/// and its own AdamW (stepped with the policy's, one clipping norm).
pub(super) struct ValueModel {
    decoder: Decoder,
    head: Var,
    /// Every trainable tensor, the head as `score.weight`.
    vars: BTreeMap<String, Var>,
    opt: AdamW,
}

impl ValueModel {
    /// From a reward model directory (`from`) or, resuming, from a
    /// snapshot's [`VALUE_FILE`] over that directory's config.
    fn load(
        reward_dir: &Path,
        snapshot: Option<(&Path, u64)>,
        device: &candle_core::Device,
        weight_decay: f64,
    ) -> Result<Self> {
        let (cfg, mut w, head, _) = reward::load_parts(reward_dir, device)?;
        let mut head = head;
        if let Some((dir, _)) = snapshot {
            let saved = TensorMap::load_safetensors(&[dir.join(VALUE_FILE)], device, DType::F32)
                .with_context(|| format!("the value model in {}", dir.display()))?;
            for (name, t) in saved.tensors {
                if name == reward::SCORE_WEIGHT {
                    head = t;
                } else {
                    w.tensors.insert(name, t);
                }
            }
        }
        let (decoder, mut vars) = reward::trainable_decoder(&cfg, &w.tensors)?;
        let head = Var::from_tensor(&head.copy()?)?;
        vars.insert(reward::SCORE_WEIGHT.into(), head.clone());
        let mut opt = AdamW::new(
            &vars,
            AdamWConfig {
                weight_decay,
                ..Default::default()
            },
        )?;
        if let Some((dir, step)) = snapshot {
            let st = candle_core::safetensors::load(dir.join(VALUE_OPTIMIZER_FILE), device)
                .with_context(|| {
                    format!("the value model's optimizer state in {}", dir.display())
                })?;
            opt.load_state(&st.into_iter().collect(), step)?;
        }
        Ok(Self {
            decoder,
            head,
            vars,
            opt,
        })
    }

    /// Value predictions at a batch's target positions (the position
    /// before each response token), (n,).
    fn values(&self, batch: &SeqBatch, mode: Mode) -> Result<Tensor> {
        let picked = target_hidden(&self.decoder, batch, mode)?;
        let head = self.head.as_tensor().to_dtype(picked.dtype())?;
        Ok(picked.matmul(&head.t()?)?.squeeze(1)?)
    }

    /// Bytes of its weights (and optimizer state) in a snapshot.
    pub(super) fn bytes(&self, optimizer: bool) -> u64 {
        let n: u64 = self.vars.values().map(|v| v.elem_count() as u64).sum();
        n * 4 * if optimizer { 3 } else { 1 }
    }

    /// Write the weights (and the optimizer state) into a snapshot's files.
    pub(super) fn save(&self, weights: &Path, optimizer: Option<&Path>) -> Result<()> {
        let tensors: BTreeMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        save_tensors(&tensors, weights)?;
        if let Some(p) = optimizer {
            save_tensors(&self.opt.state_tensors()?, p)?;
        }
        Ok(())
    }
}

/// One sampled response on TRL's grid.
struct Response {
    prompt: usize,
    /// `width` tokens: the response, its stop token, then pad.
    grid: Vec<u32>,
    text: String,
    /// Index of the last real token (TRL's `sequence_lengths`).
    seq_len: usize,
    /// Tokens up to the first pad (what the reward model scores).
    scored: usize,
    has_eos: bool,
}

impl Trainer {
    /// The value model of PPO phase `pi`: the reward model's weights, or
    /// the resume snapshot's when resuming inside the phase.
    pub(super) fn value_model(
        &self,
        pi: usize,
        phase: &Phase,
        first_step: u64,
        source: &RewardSource,
    ) -> Result<ValueModel> {
        let RewardSource::Model {
            dir, retokenize, ..
        } = source
        else {
            bail!(
                "phase \"{}\": PPO's value model starts from a reward model; a stance judge cannot be one",
                phase.cfg.name
            );
        };
        if retokenize.is_some() {
            bail!(
                "phase \"{}\": PPO's value model reads the policy's tokens, so its reward model must \
                 share the policy's tokenizer (reward_retokenize is for GRPO)",
                phase.cfg.name
            );
        }
        let snapshot = match &self.prep.resume {
            Some(res) if res.state.phase == pi && first_step > 0 => {
                Some((res.dir.as_path(), res.state.optimizer_step))
            }
            _ => None,
        };
        ValueModel::load(
            dir,
            snapshot,
            self.policy.decoder.device(),
            phase.cfg.weight_decay,
        )
        .with_context(|| format!("phase \"{}\": the value model", phase.cfg.name))
    }

    /// One PPO update (step `step`, 0-based, of phase `pi`), with the value
    /// model the phase keeps in `self.value`.
    pub(super) fn ppo_step(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        reference: Option<&Decoder>,
        batcher: &mut Batcher,
        source: &mut RewardSource,
    ) -> Result<()> {
        let mut value = self
            .value
            .take()
            .context("a PPO phase without its value model")?;
        let out = self.ppo_update(pi, phase, step, reference, batcher, source, &mut value);
        self.value = Some(value);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn ppo_update(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        reference: Option<&Decoder>,
        batcher: &mut Batcher,
        source: &mut RewardSource,
        value: &mut ValueModel,
    ) -> Result<()> {
        let t0 = Instant::now();
        let cfg = &phase.cfg;
        let Objective::Ppo(s) = &phase.objective else {
            bail!("phase \"{}\" is not a PPO phase", cfg.name);
        };
        let PhaseData::Prompts(prompts) = &phase.data else {
            bail!("PPO phase \"{}\" has no prompts", cfg.name);
        };
        let reference = reference.context("a PPO phase without its reference model")?;
        let lr = phase.lr_at(step);
        let micro = cfg.batch_size;
        let mini = micro * cfg.grad_accum;
        let total = mini * s.num_mini_batches;
        let tok = self.prep.model.tokenizer.clone();
        let pad = tok.pad_id;
        let seed = self.prep.recipe.recipe.run.seed;
        let temperature = s.logit_temperature();

        // 1. Rollouts: one response per prompt.
        let idx = batcher.micro_batch(step, total);
        let answers = self.sample_rollouts(
            prompts,
            &idx,
            1,
            &SamplingParams {
                temperature,
                top_p: 1.0,
                max_tokens: s.response_length,
                seed: 0,
            },
        )?;
        let width = answers
            .iter()
            .map(|(_, a)| a.ids.len() + usize::from(a.stop.is_some()))
            .max()
            .unwrap_or(1)
            .max(1);
        let responses: Vec<Response> = answers
            .into_iter()
            .map(|(i, a)| {
                let mut grid = a.ids.clone();
                grid.extend(a.stop);
                grid.resize(width, pad);
                let first_pad = grid.iter().position(|&t| t == pad).unwrap_or(width);
                let has_eos = grid.iter().any(|t| tok.eos_ids.contains(t));
                Response {
                    prompt: i,
                    text: a.text,
                    seq_len: first_pad.saturating_sub(1).min(width - 1),
                    scored: first_pad,
                    has_eos,
                    grid,
                }
            })
            .collect();
        let generate_s = t0.elapsed().as_secs_f64();

        // 2. Scores, log-probabilities and values of the rollouts.
        let t1 = Instant::now();
        let rows: Vec<Vec<u32>> = responses
            .iter()
            .map(|r| {
                let mut v = prompts[r.prompt].ids.clone();
                v.extend_from_slice(&r.grid[..r.scored]);
                v
            })
            .collect();
        let pairs: Vec<(String, String)> = responses
            .iter()
            .map(|r| (prompts[r.prompt].question.clone(), r.text.clone()))
            .collect();
        let mut scores = source.rewards(&rows, &pairs)?;
        if let Some(p) = s.missing_eos_penalty {
            for (sc, r) in scores.iter_mut().zip(&responses) {
                if !r.has_eos {
                    *sc -= p;
                }
            }
        }
        let dev = self.policy.decoder.device().clone();
        let batch_of = |rows: &[usize]| -> Result<SeqBatch> {
            let seqs: Vec<TokenSeq> = rows
                .iter()
                .map(|&j| {
                    let p = &prompts[responses[j].prompt].ids;
                    let mut ids = p.clone();
                    ids.extend_from_slice(&responses[j].grid);
                    TokenSeq {
                        trained: (0..ids.len()).map(|t| t >= p.len()).collect(),
                        ids,
                    }
                })
                .collect();
            let refs: Vec<&TokenSeq> = seqs.iter().collect();
            SeqBatch::new(&refs, pad, &dev)
        };
        let (mut logprobs, mut ref_logprobs, mut values) = (
            Vec::with_capacity(total * width),
            Vec::with_capacity(total * width),
            Vec::with_capacity(total * width),
        );
        let f64s = |t: Tensor| -> Result<Vec<f64>> { Ok(t.to_dtype(DType::F64)?.to_vec1()?) };
        for chunk in (0..total).collect::<Vec<_>>().chunks(micro) {
            let b = batch_of(chunk)?;
            logprobs.extend(f64s(
                completion_logps(&self.policy.decoder, &b, temperature, Mode::Fast)?.0,
            )?);
            ref_logprobs.extend(f64s(
                completion_logps(reference, &b, temperature, Mode::Fast)?.0,
            )?);
            values.extend(f64s(value.values(&b, Mode::Fast)?)?);
        }
        let rollouts = PpoRollouts {
            rows: total,
            width,
            logprobs,
            ref_logprobs,
            values,
            seq_len: responses.iter().map(|r| r.seq_len).collect(),
            scores: scores.clone(),
        };
        let score_s = t1.elapsed().as_secs_f64();
        let nan = scores.iter().filter(|x| !x.is_finite()).count();
        let targets = ppo_targets(&rollouts, s);
        let mut metrics = ppo_rollout_metrics(&rollouts, &targets, s);
        metrics.insert(
            "val/num_eos_tokens".into(),
            responses.iter().filter(|r| r.has_eos).count() as f64,
        );

        // 3. PPO epochs over shuffled mini-batches.
        let t2 = Instant::now();
        let mut stats = PpoStats::default();
        let mut loss_sum = 0.0;
        let mut losses = 0usize;
        let mut grad_norm = f64::NAN;
        let poison = self.prep.inject_nan_at == Some(self.global_step + 1);
        let mut failed = nan > 0;
        // Optimizer steps taken before a failure (they stay applied).
        let mut applied = 0usize;
        let mut failed_on = "loss";
        'epochs: for epoch in 0..s.num_ppo_epochs {
            if failed {
                break;
            }
            let mut order: Vec<usize> = (0..total).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(sample_seed(
                seed ^ 0x5050_0000,
                self.global_step,
                epoch,
            ));
            order.shuffle(&mut rng);
            for mb in order.chunks(mini) {
                let mut pg: BTreeMap<String, Tensor> = BTreeMap::new();
                let mut vg: BTreeMap<String, Tensor> = BTreeMap::new();
                for rows_in in mb.chunks(micro) {
                    let b = batch_of(rows_in)?;
                    let (logp, entropy) =
                        completion_logps(&self.policy.decoder, &b, temperature, Mode::Train)?;
                    let vpred = value.values(&b, Mode::Train)?;
                    let gather = |v: &[f64]| -> Vec<f64> {
                        rows_in
                            .iter()
                            .flat_map(|&j| v[j * width..(j + 1) * width].iter().copied())
                            .collect()
                    };
                    let gather_b = |v: &[bool]| -> Vec<bool> {
                        rows_in
                            .iter()
                            .flat_map(|&j| v[j * width..(j + 1) * width].iter().copied())
                            .collect()
                    };
                    let new_lp = f64s(logp.detach())?;
                    let vp = f64s(vpred.detach())?;
                    let out = ppo_loss(
                        &PpoMicroBatch {
                            width,
                            new_logprobs: &new_lp,
                            vpred: &vp,
                            old_logprobs: &gather(&targets.logprobs),
                            advantages: &gather(&targets.advantages),
                            returns: &gather(&targets.returns),
                            values: &gather(&targets.values),
                            padding: &gather_b(&targets.padding),
                            padding_p1: &gather_b(&targets.padding_p1),
                        },
                        s,
                    );
                    let ent = entropy.iter().map(|&e| e as f64).sum::<f64>()
                        / entropy.len().max(1) as f64;
                    stats.push(&out, ent);
                    let lv = if poison { f64::NAN } else { out.loss };
                    if !lv.is_finite() {
                        failed = true;
                        failed_on = "loss";
                        break 'epochs;
                    }
                    loss_sum += lv;
                    losses += 1;
                    // accelerate divides each micro-batch's loss by the
                    // accumulation steps; ppo_loss gives the derivatives of
                    // the undivided loss.
                    let ga = cfg.grad_accum as f64;
                    let dl = Tensor::from_vec(
                        out.d_logprobs.iter().map(|&d| (d / ga) as f32).collect(),
                        new_lp.len(),
                        &dev,
                    )?
                    .to_dtype(logp.dtype())?;
                    let dv = Tensor::from_vec(
                        out.d_vpred.iter().map(|&d| (d / ga) as f32).collect(),
                        vp.len(),
                        &dev,
                    )?
                    .to_dtype(vpred.dtype())?;
                    let surrogate = ((logp * dl)?.sum_all()? + (vpred * dv)?.sum_all()?)?;
                    let store = surrogate.backward()?;
                    crate::train::step::add_grads(
                        &mut pg,
                        collect_grads(&store, &self.policy.vars),
                    )?;
                    crate::train::step::add_grads(&mut vg, collect_grads(&store, &value.vars))?;
                }
                // One clipping norm over policy and value model, as TRL's
                // one optimizer over its PolicyAndValueWrapper.
                let opt = self.opt.as_mut().context("no optimizer")?;
                let np = opt.grad_norm(&pg)?;
                let nv = value.opt.grad_norm(&vg)?;
                let norm = (np * np + nv * nv).sqrt();
                if !norm.is_finite() {
                    grad_norm = norm;
                    failed = true;
                    failed_on = "gradient norm";
                    break 'epochs;
                }
                let clip = cfg.max_grad_norm();
                let scale = if clip > 0.0 {
                    (clip / (norm + 1e-6)).min(1.0)
                } else {
                    1.0
                };
                opt.step(&pg, lr, scale)?;
                value.opt.step(&vg, lr, scale)?;
                grad_norm = norm;
                applied += 1;
            }
        }
        let update_s = t2.elapsed().as_secs_f64();
        let loss = if failed || losses == 0 {
            f64::NAN
        } else {
            loss_sum / losses as f64
        };
        metrics.extend(stats.metrics());
        metrics.insert("timing/generate_s".into(), generate_s);
        metrics.insert("timing/reward_s".into(), score_s);
        metrics.insert("timing/update_s".into(), update_s);
        metrics.insert("episode".into(), ((step + 1) * total as u64) as f64);
        metrics.retain(|_, v| v.is_finite());
        let tokens: u64 = rows.iter().map(|r| r.len() as u64).sum();
        // A sample of the rollouts for the log: the first four.
        let shown: Vec<Rollout> = responses
            .iter()
            .zip(&scores)
            .enumerate()
            .take(4)
            .map(|(j, (r, &sc))| {
                let real: Vec<f64> = (0..=r.seq_len)
                    .map(|t| targets.advantages[j * width + t])
                    .collect();
                Rollout {
                    prompt: prompts[r.prompt].question.clone(),
                    completion: r.text.clone(),
                    reward: sc,
                    advantage: real.iter().sum::<f64>() / real.len().max(1) as f64,
                    tokens: r.scored,
                    finished: r.has_eos,
                }
            })
            .collect();
        self.record_step(
            pi,
            phase,
            step,
            t0,
            StepDone {
                loss,
                lr,
                grad_norm,
                tokens,
                input_tokens: tokens,
                metrics,
                rollouts: Some(shown),
            },
        )?;
        if nan > 0 {
            self.alert(
                AlertLevel::Warning,
                format!(
                    "{} step {}: {nan} of {total} reward model scores are not finite; \
                     the update was skipped",
                    cfg.name,
                    step + 1
                ),
            )?;
        } else if failed && applied > 0 {
            let what = failed_on;
            self.halt(
                format!(
                    "{} step {}: the {what} is not finite in mini-batch {} of the PPO update; \
                 its {applied} optimizer steps before it stay applied, the rest were not \
                 (snapshot, resume to go on with the next rollouts, or stop)",
                    cfg.name,
                    step + 1,
                    applied + 1
                ),
                what,
            )?;
        } else if failed {
            self.not_finite(&cfg.name, step + 1, loss.is_finite())?;
        }
        Ok(())
    }
}
