//! A GRPO step (TRL's `GRPOTrainer`, one iteration per generation batch):
//! `num_generations` completions sampled per prompt with the KV-cache
//! generator, rewards from a reward model or a stance judge, group-relative
//! advantages, and the loss of [`crate::train::rl::grpo_loss`] — checked
//! against TRL's own code — backpropagated through the policy's per-token
//! log-probabilities at the sampling temperature.
//!
//! ```text
//! prompts (batcher) ─▶ generate ×G ─▶ rewards ─▶ advantages ─▶ per micro-batch:
//!                                                  logp (grad) ─▶ grpo_loss ─▶ Σ dℓ/dlogp · logp ─▶ backward
//! ```
//!
//! The sampler is seeded from the run's seed, the global step and the
//! prompt's place in the batch: a run resumed from a snapshot samples the
//! same completions as one that was never stopped, with nothing to save.

use super::reward_model_dir;
use super::{StepDone, Trainer};
use crate::data::{Batcher, SeqBatch, TemplateChoice, TextTokenizer, TokenSeq};
use crate::events::{AlertLevel, Rollout, Stance};
use crate::model::generate::{generate, Answer, Finish, SamplingParams};
use crate::model::reward::{self, RewardModel};
use crate::model::score::target_hidden;
use crate::model::{Decoder, Mode};
use crate::probe::judge::Judge;
use crate::recipe::Algorithm;
use crate::train::objectives::Objective;
use crate::train::optim::collect_grads;
use crate::train::phase::{Phase, PhaseData, RlPrompt};
use crate::train::rl::{grpo_advantages, grpo_loss, GrpoMicroBatch};
use crate::train::step;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

/// Rows per reward-model forward pass.
const REWARD_BATCH: usize = 16;

/// Where an RL phase's rewards come from.
pub(super) enum RewardSource {
    /// A reward model's score of prompt and completion.
    Model {
        model: Box<RewardModel>,
        /// The pad id it pools with.
        pad: u32,
        name: String,
        /// Its directory (PPO's value model starts from it).
        dir: std::path::PathBuf,
        /// Its own tokenizer, when it differs from the policy's and the
        /// recipe said to re-tokenise (`reward_retokenize = true`): rollouts
        /// are decoded and tokenized again.
        retokenize: Option<Box<(TextTokenizer, TextTokenizer)>>,
    },
    /// A judge's p(stance | question, completion).
    Stance {
        judge: Box<dyn Judge>,
        stance: Stance,
    },
}

impl RewardSource {
    /// How the rewards are named in the metrics (TRL's `rewards/<name>/…`).
    pub(super) fn metric_name(&self) -> String {
        match self {
            RewardSource::Model { name, .. } => name.clone(),
            RewardSource::Stance { stance, .. } => format!("stance_{stance}"),
        }
    }

    /// A reward per (prompt, completion): `rows` the token sequences (prompt
    /// and completion), `pairs` the question and completion texts.
    pub(super) fn rewards(
        &mut self,
        rows: &[Vec<u32>],
        pairs: &[(String, String)],
    ) -> Result<Vec<f64>> {
        match self {
            RewardSource::Model {
                model,
                pad,
                retokenize,
                ..
            } => {
                let again: Vec<Vec<u32>>;
                let rows = match retokenize {
                    Some(pair) => {
                        let (policy, theirs) = &**pair;
                        again = rows
                            .iter()
                            .map(|r| theirs.encode_with_specials(&policy.decode(r, false)?))
                            .collect::<Result<_>>()?;
                        &again
                    }
                    None => rows,
                };
                let mut out = Vec::with_capacity(rows.len());
                for chunk in rows.chunks(REWARD_BATCH) {
                    let r: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
                    let s = model.scores(&r, *pad, Mode::Fast)?;
                    out.extend(s.to_vec1::<f32>()?.into_iter().map(f64::from));
                }
                Ok(out)
            }
            RewardSource::Stance { judge, stance } => Ok(judge
                .score(pairs)
                .with_context(|| format!("the stance judge {}", judge.name()))?
                .into_iter()
                .map(|d| d[*stance])
                .collect()),
        }
    }
}

/// One sampled completion of a step.
struct Sample {
    /// Index into the phase's prompts.
    prompt: usize,
    /// Completion tokens, the end-of-turn token included when it ended.
    ids: Vec<u32>,
    text: String,
    finished: bool,
}

/// The sampler's seed for prompt `k` of the batch at `global_step`.
pub(super) fn sample_seed(run_seed: u64, global_step: u64, k: usize) -> u64 {
    // splitmix64 of the three: well spread, and a function of nothing else.
    let mut z = run_seed
        ^ global_step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (k as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-token log-probabilities of each row's trained (completion) tokens at
/// `temperature` (logits divided by it, as TRL's GRPO does), in target order,
/// with the per-token entropies of the same distributions.
pub fn completion_logps(
    decoder: &Decoder,
    batch: &SeqBatch,
    temperature: f64,
    mode: Mode,
) -> Result<(Tensor, Vec<f32>)> {
    let mut picked = target_hidden(decoder, batch, mode)?;
    // logits / T = (h / T)·Wᵀ: the head is linear without a bias.
    if temperature != 1.0 {
        picked = (picked / temperature)?;
    }
    let scores = decoder.target_logprobs(&picked, &batch.targets, mode)?;
    Ok((scores.logp, scores.entropy))
}

impl Trainer {
    /// `n` completions of each prompt `idx[k]`, sampled from the policy
    /// (adapters merged where that is faster) with `params`, its seed drawn
    /// from the run's seed, the global step and `k`: a resumed run samples
    /// what an uninterrupted one did. In batch order, `n` per prompt.
    pub(super) fn sample_rollouts(
        &self,
        prompts: &[RlPrompt],
        idx: &[usize],
        n: usize,
        params: &SamplingParams,
    ) -> Result<Vec<(usize, Answer)>> {
        // Adapters merged, panel copies where they fit: dropped before the
        // step's update (Decoder::for_inference_pass).
        let pass = self.policy.decoder.for_inference_pass()?;
        let sampler = pass.as_ref().unwrap_or(&self.policy.decoder);
        let tok = &self.prep.model.tokenizer;
        let seed = self.prep.recipe.recipe.run.seed;
        let mut out = Vec::with_capacity(idx.len() * n);
        for (k, &i) in idx.iter().enumerate() {
            let params = SamplingParams {
                seed: sample_seed(seed, self.global_step, k),
                ..params.clone()
            };
            let answers = generate(sampler, tok, &prompts[i].ids, n, &params, &mut |_, _| {})
                .with_context(|| format!("sampling from prompt {}", i + 1))?;
            out.extend(answers.into_iter().map(|a| (i, a)));
        }
        Ok(out)
    }

    /// Phase `pi`'s reward source: a judge's p(stance) (`reward_stance`), the
    /// reward model the recipe names (`reward_model`), or the one the last
    /// reward phase before it wrote.
    pub(super) fn reward_source(&mut self, pi: usize, phase: &Phase) -> Result<RewardSource> {
        let cfg = &phase.cfg;
        if let Some(stance) = cfg.reward_stance {
            let spec = self
                .prep
                .recipe
                .recipe
                .probe
                .as_ref()
                .map_or_else(|| "initial".to_string(), |p| p.judge.clone());
            let judge = crate::probe::make_judge(&spec, &self.prep.recipe, &self.prep.model)
                .with_context(|| format!("the stance judge of phase \"{}\"", cfg.name))?;
            return Ok(RewardSource::Stance { judge, stance });
        }
        let (dir, name) = match &cfg.reward_model {
            Some(src) => (self.prep.recipe.resolve(src), src.clone()),
            None => {
                let earlier = self.phases[..pi]
                    .iter()
                    .rev()
                    .find(|p| p.cfg.algorithm == Algorithm::Reward)
                    .with_context(|| format!("phase \"{}\" has no reward source", cfg.name))?;
                (
                    reward_model_dir(self.prep.run_dir.root(), &earlier.cfg.name),
                    format!("reward_{}", earlier.cfg.name),
                )
            }
        };
        if !dir.join("config.json").is_file() {
            bail!(
                "phase \"{}\": the reward model {} is not a reward model directory \
                 (transformers' *ForSequenceClassification with config.json, model.safetensors \
                 and tokenizer.json, as a reward phase writes it)",
                cfg.name,
                dir.display()
            );
        }
        let (model, _, pad) = reward::load(&dir, self.policy.decoder.device())
            .with_context(|| format!("phase \"{}\": loading the reward model", cfg.name))?;
        let retokenize = self.reward_tokenizer(cfg, &dir)?;
        Ok(RewardSource::Model {
            model: Box::new(model),
            pad,
            name,
            dir,
            retokenize,
        })
    }

    /// The reward model's tokenizer when it is not the policy's: refused
    /// with both named, unless the recipe says to re-tokenise.
    fn reward_tokenizer(
        &self,
        cfg: &crate::recipe::PhaseConfig,
        dir: &std::path::Path,
    ) -> Result<Option<Box<(TextTokenizer, TextTokenizer)>>> {
        let path = dir.join("tokenizer.json");
        let theirs = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the reward model's {}", path.display()))?;
        let vocab = |text: &str| -> Result<serde_json::Value> {
            let v: serde_json::Value = serde_json::from_str(text)?;
            Ok(serde_json::json!([v["model"]["vocab"], v["added_tokens"]]))
        };
        let ours = &self.prep.model.tokenizer_files.tokenizer_json;
        if vocab(&theirs).with_context(|| format!("{} is not valid JSON", path.display()))?
            == vocab(ours)?
        {
            return Ok(None);
        }
        if cfg.reward_retokenize != Some(true) {
            bail!(
                "phase \"{}\": the reward model's tokenizer ({}) is not the policy's ({}): its \
                 token ids mean other words. Set reward_retokenize = true to decode each rollout \
                 and tokenize it again for the reward model",
                cfg.name,
                path.display(),
                self.prep.model.source
            );
        }
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<serde_json::Value> = std::fs::read_to_string(&config_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let theirs = TextTokenizer::from_json(&theirs, config.as_ref(), &TemplateChoice::None)
            .with_context(|| format!("loading {}", path.display()))?;
        Ok(Some(Box::new((self.prep.model.tokenizer.clone(), theirs))))
    }

    /// One GRPO optimizer step (step `step`, 0-based, of phase `pi`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn grpo_step(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        reference: Option<&Decoder>,
        batcher: &mut Batcher,
        source: &mut RewardSource,
    ) -> Result<()> {
        let t0 = Instant::now();
        let cfg = &phase.cfg;
        let Objective::Grpo(s) = &phase.objective else {
            bail!("phase \"{}\" is not a GRPO phase", cfg.name);
        };
        let PhaseData::Prompts(prompts) = &phase.data else {
            bail!("GRPO phase \"{}\" has no prompts", cfg.name);
        };
        let lr = phase.lr_at(step);
        let g = s.num_generations;
        let accum = cfg.grad_accum;
        let total = cfg.batch_size * accum;
        let tok = self.prep.model.tokenizer.clone();
        let seed = self.prep.recipe.recipe.run.seed;

        // 1. Rollouts: G completions of each of the step's prompts.
        let idx = batcher.micro_batch(step, total / g);
        let sampling = SamplingParams {
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_completion_length,
            seed: 0,
        };
        let samples: Vec<Sample> = self
            .sample_rollouts(prompts, &idx, g, &sampling)?
            .into_iter()
            .map(|(i, a)| {
                let mut ids = a.ids;
                ids.extend(a.stop);
                Sample {
                    prompt: i,
                    ids,
                    text: a.text,
                    finished: a.finish == Finish::Stop,
                }
            })
            .collect();
        let generate_s = t0.elapsed().as_secs_f64();

        // 2. Rewards and advantages.
        let t1 = Instant::now();
        let rows: Vec<Vec<u32>> = samples
            .iter()
            .map(|x| {
                let mut r = prompts[x.prompt].ids.clone();
                r.extend_from_slice(&x.ids);
                r
            })
            .collect();
        let pairs: Vec<(String, String)> = samples
            .iter()
            .map(|x| (prompts[x.prompt].question.clone(), x.text.clone()))
            .collect();
        let rewards = source.rewards(&rows, &pairs)?;
        let reward_s = t1.elapsed().as_secs_f64();
        let (advantages, mut metrics) = grpo_advantages(&rewards, g, s.scale_rewards);
        let name = source.metric_name();
        metrics.insert(format!("rewards/{name}/mean"), metrics["reward"]);
        metrics.insert(format!("rewards/{name}/std"), metrics["reward_std"]);
        completion_metrics(&samples, &mut metrics);

        // A sample of the rollouts for the log: the first prompt's group.
        let shown: Vec<Rollout> = samples
            .iter()
            .zip(&rewards)
            .zip(&advantages)
            .take(g)
            .map(|((x, &r), &a)| Rollout {
                prompt: prompts[x.prompt].question.clone(),
                completion: x.text.clone(),
                reward: r,
                advantage: a,
                tokens: x.ids.len(),
                finished: x.finished,
            })
            .collect();

        // 3. The update, micro-batch by micro-batch.
        let t2 = Instant::now();
        let nan_rewards = rewards.iter().filter(|r| !r.is_finite()).count();
        let poison = self.prep.inject_nan_at == Some(self.global_step + 1);
        let pad = tok.pad_id;
        let step_tokens: usize = samples.iter().map(|x| x.ids.len()).sum();
        let input_tokens: u64 = rows.iter().map(|r| r.len() as u64).sum();
        let mut loss = 0.0;
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        if nan_rewards == 0 {
            let dev = self.policy.decoder.device().clone();
            for (m, chunk) in (0..samples.len())
                .collect::<Vec<_>>()
                .chunks(cfg.batch_size)
                .enumerate()
            {
                if self.policy.lora.as_ref().is_some_and(|l| l.dropout > 0.0) {
                    crate::model::lora::reseed(
                        &self.policy.decoder,
                        seed ^ ((step * accum as u64 + m as u64)
                            .wrapping_mul(0x2545_F491_4F6C_DD1D)),
                    );
                }
                let seqs: Vec<TokenSeq> = chunk
                    .iter()
                    .map(|&j| {
                        let p = prompts[samples[j].prompt].ids.len();
                        let c = samples[j].ids.len();
                        TokenSeq {
                            ids: rows[j].clone(),
                            trained: (0..p + c).map(|t| t >= p).collect(),
                        }
                    })
                    .collect();
                let refs: Vec<&TokenSeq> = seqs.iter().collect();
                let b = SeqBatch::new(&refs, pad, &dev)?;
                let (logp, entropy) =
                    completion_logps(&self.policy.decoder, &b, s.temperature, Mode::Train)?;
                let ref_lp = match reference {
                    Some(r) if s.beta != 0.0 => Some(
                        completion_logps(r, &b, s.temperature, Mode::Train)?
                            .0
                            .detach()
                            .to_dtype(DType::F64)?
                            .to_vec1::<f64>()?,
                    ),
                    _ => None,
                };
                let lp: Vec<f64> = logp.detach().to_dtype(DType::F64)?.to_vec1()?;
                let mb = MicroLayout::new(&b, chunk.len());
                let out = grpo_loss(
                    &GrpoMicroBatch {
                        width: mb.width,
                        logprobs: &mb.spread(&lp, 0.0),
                        old_logprobs: None,
                        ref_logprobs: ref_lp.as_ref().map(|r| mb.spread(r, 0.0)).as_deref(),
                        entropies: &mb
                            .spread(&entropy.iter().map(|&e| e as f64).collect::<Vec<_>>(), 0.0),
                        mask: &mb.mask(),
                        advantages: &chunk.iter().map(|&j| advantages[j]).collect::<Vec<_>>(),
                        step_tokens,
                        grad_accum: accum,
                    },
                    s,
                );
                let mut lv = out.loss;
                if poison {
                    lv = f64::NAN;
                }
                for (k, v) in out.metrics {
                    *sums.entry(k).or_default() += v;
                }
                if !lv.is_finite() {
                    loss = f64::NAN;
                    grads.clear();
                    break;
                }
                loss += lv;
                // Σ dℓ/dlogp · logp has ℓ's gradient (dℓ/dlogp held fixed).
                let d = Tensor::from_vec(mb.gather(&out.d_logprobs), lp.len(), &dev)?
                    .to_dtype(logp.dtype())?;
                let surrogate = (logp * d)?.sum_all()?;
                step::add_grads(
                    &mut grads,
                    collect_grads(&surrogate.backward()?, &self.policy.vars),
                )?;
            }
        } else {
            loss = f64::NAN;
        }
        let micro = samples.len().div_ceil(cfg.batch_size.max(1)).max(1) as f64;
        for (k, v) in sums {
            if v.is_finite() {
                metrics.insert(k, v / micro);
            }
        }
        let opt = self.opt.as_mut().context("no optimizer")?;
        let grad_norm = if loss.is_finite() {
            step::update(opt, &grads, lr, cfg.max_grad_norm())?
        } else {
            f64::NAN
        };
        let update_s = t2.elapsed().as_secs_f64();
        metrics.insert("timing/generate_s".into(), generate_s);
        metrics.insert("timing/reward_s".into(), reward_s);
        metrics.insert("timing/update_s".into(), update_s);
        let finite = loss.is_finite() && grad_norm.is_finite();
        metrics.retain(|_, v| v.is_finite());
        self.record_step(
            pi,
            phase,
            step,
            t0,
            StepDone {
                loss,
                lr,
                grad_norm,
                tokens: input_tokens,
                input_tokens,
                metrics,
                rollouts: Some(shown),
            },
        )?;
        if nan_rewards > 0 {
            // Nothing learnt from rewards that are not numbers; go on.
            self.alert(
                AlertLevel::Warning,
                format!(
                    "{} step {}: {nan_rewards} of {} rewards from {name} are not finite; \
                     the update was skipped",
                    cfg.name,
                    step + 1,
                    rewards.len()
                ),
            )?;
        } else if !finite {
            self.not_finite(&cfg.name, step + 1, loss.is_finite())?;
        }
        Ok(())
    }
}

/// TRL's `completions/…` metrics: lengths of all completions and of those
/// that ended (terminated) with an end-of-turn token, and the share cut at
/// `max_completion_length` (`clipped_ratio`).
fn completion_metrics(samples: &[Sample], m: &mut BTreeMap<String, f64>) {
    let stats = |v: &[f64]| -> (f64, f64, f64) {
        if v.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    };
    let all: Vec<f64> = samples.iter().map(|x| x.ids.len() as f64).collect();
    let ended: Vec<f64> = samples
        .iter()
        .filter(|x| x.finished)
        .map(|x| x.ids.len() as f64)
        .collect();
    let (mean, min, max) = stats(&all);
    m.insert("completions/mean_length".into(), mean);
    m.insert("completions/min_length".into(), min);
    m.insert("completions/max_length".into(), max);
    let (mean, min, max) = stats(&ended);
    m.insert("completions/mean_terminated_length".into(), mean);
    m.insert("completions/min_terminated_length".into(), min);
    m.insert("completions/max_terminated_length".into(), max);
    m.insert(
        "completions/clipped_ratio".into(),
        1.0 - ended.len() as f64 / samples.len().max(1) as f64,
    );
}

/// Where each target of a [`SeqBatch`] (completion tokens only) sits in the
/// (rows × width) layout [`grpo_loss`] takes.
struct MicroLayout {
    width: usize,
    rows: usize,
    /// Per target: its flat index `row * width + t`.
    at: Vec<usize>,
}

impl MicroLayout {
    fn new(b: &SeqBatch, rows: usize) -> Self {
        let width = b.counts.iter().copied().max().unwrap_or(0).max(1);
        let mut seen = vec![0usize; rows];
        let at = b
            .owner
            .iter()
            .map(|&r| {
                let i = r * width + seen[r];
                seen[r] += 1;
                i
            })
            .collect();
        Self { width, rows, at }
    }

    /// Per-target values laid out, `fill` elsewhere.
    fn spread(&self, v: &[f64], fill: f64) -> Vec<f64> {
        let mut out = vec![fill; self.rows * self.width];
        for (j, &i) in self.at.iter().enumerate() {
            out[i] = v[j];
        }
        out
    }

    fn mask(&self) -> Vec<bool> {
        let mut out = vec![false; self.rows * self.width];
        for &i in &self.at {
            out[i] = true;
        }
        out
    }

    /// The laid-out values back in target order.
    fn gather(&self, v: &[f64]) -> Vec<f32> {
        self.at.iter().map(|&i| v[i] as f32).collect()
    }
}
