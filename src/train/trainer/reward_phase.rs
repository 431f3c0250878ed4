//! A reward phase (TRL's `RewardTrainer`): a Bradley–Terry reward model
//! trained on the phase's preference pairs beside the policy, which does not
//! change. The reward model starts as a copy of the policy as the phase finds
//! it, every weight trained, with a fresh score head; at the phase's end it
//! is written to `reward/<phase>/` in the run directory as transformers'
//! `*ForSequenceClassification` with the tokenizer files.
//!
//! A LoRA policy's reward model starts from its merged weights and trains
//! every weight. Not yet: snapshots inside the phase and resuming inside it
//! (the recipe refuses the first; a resume says so).

use super::{PhaseDone, StepDone, Trainer};
use crate::data::Batcher;
use crate::events::{self, Event, ProbeReason};
use crate::model::reward::{self, init_score, RewardModel, SCORE_WEIGHT};
use crate::model::{lora, Mode};
use crate::train::objectives::Objective;
use crate::train::optim::{collect_grads, AdamW, AdamWConfig};
use crate::train::phase::{Phase, PhaseData};
use crate::train::rl::reward_loss_tensor;
use crate::train::step;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Where a reward phase's model is written in its run directory.
pub fn reward_model_dir(run_root: &std::path::Path, phase: &str) -> PathBuf {
    run_root.join("reward").join(phase)
}

/// The model a reward phase trains and its variables (the score head's
/// included; an untied `lm_head`, which a reward model does not use, not).
struct Trained {
    model: RewardModel,
    vars: BTreeMap<String, Var>,
}

impl Trainer {
    /// Train reward phase `pi` to its end (or a stop) and write its model.
    pub(super) fn run_reward_phase(
        &mut self,
        pi: usize,
        phase: &Phase,
        first_step: u64,
    ) -> Result<PhaseDone> {
        let Objective::Reward { center } = phase.objective else {
            bail!("phase \"{}\" is not a reward phase", phase.cfg.name);
        };
        if first_step > 0 {
            bail!(
                "resuming inside reward phase \"{}\" (at step {first_step}) is not implemented yet: \
                 resume from a snapshot taken before the phase",
                phase.cfg.name
            );
        }
        let phase_started = Instant::now();
        self.emit(Event::PhaseStart(events::PhaseStart {
            t: events::now(),
            phase: pi,
            name: phase.cfg.name.clone(),
            algorithm: phase.cfg.algorithm.name().into(),
            steps: phase.steps,
            global_step: self.global_step,
        }))?;
        // The policy's optimizer does not run here; a snapshot taken during
        // the phase holds the policy alone.
        self.opt = None;
        self.phase_input_tokens = 0;
        self.probe(pi, 0, ProbeReason::PhaseStart)?;
        let seed = self.prep.recipe.recipe.run.seed;
        let mut trained = self.reward_model(pi)?;
        let mut opt = AdamW::new(
            &trained.vars,
            AdamWConfig {
                weight_decay: phase.cfg.weight_decay,
                ..Default::default()
            },
        )?;
        let mut batcher = Batcher::new(phase.data.len(), seed, pi, phase.cfg.shuffle);
        let mut stopped = false;
        let mut step = 0;
        while step < phase.steps {
            self.poll_control(pi, step)?;
            if self.stop_requested {
                stopped = true;
                break;
            }
            // One pool job per step, as the policy's steps (fused::on_pool).
            let dev = trained.model.decoder.device().clone();
            crate::model::fused::on_pool(&dev, || {
                self.reward_step(
                    pi,
                    phase,
                    step,
                    center,
                    &mut trained,
                    &mut opt,
                    &mut batcher,
                )
            })?;
            step += 1;
        }
        if !self.phase_end_snapshot(pi, step, stopped)? {
            return Ok(PhaseDone { stopped: true });
        }
        if !stopped {
            self.save_reward_model(phase, &trained)?;
            // The policy did not change: the next phase's start probe may
            // reuse the one this phase began with.
            let begun_at = self.global_step - step;
            if let Some(p) = self
                .last_probe
                .as_mut()
                .filter(|p| p.global_step == begun_at)
            {
                p.global_step = self.global_step;
            }
            self.emit(Event::PhaseEnd(events::PhaseEnd {
                t: events::now(),
                phase: pi,
                steps: step,
                global_step: self.global_step,
                seconds: phase_started.elapsed().as_secs_f64(),
            }))?;
            self.log.sync()?;
        }
        Ok(PhaseDone { stopped })
    }

    /// A copy of the policy's weights (a LoRA policy's adapters merged into
    /// its base), each a new variable: the reward model trains every weight.
    /// And a fresh score head drawn from the run's seed and the phase.
    fn reward_model(&self, pi: usize) -> Result<Trained> {
        let model = &self.prep.model;
        let policy = match &self.policy.lora {
            Some(cfg) => lora::merge(&model.weights, &self.policy.tensors(), cfg)?.tensors,
            None => self.policy.tensors(),
        };
        let (decoder, mut vars) = reward::trainable_decoder(&model.cfg, &policy)?;
        let seed = self.prep.recipe.recipe.run.seed ^ (0x5eed_0000 + pi as u64);
        let head = init_score(model.cfg.hidden_size, 0.02, seed, decoder.device())?
            .to_dtype(decoder.dtype())?;
        let score = Var::from_tensor(&head)?;
        vars.insert(SCORE_WEIGHT.into(), score.clone());
        Ok(Trained {
            model: RewardModel {
                decoder,
                score: score.as_tensor().clone(),
            },
            vars,
        })
    }

    /// One optimizer step of the reward model: the mean of the micro-batches'
    /// losses (TRL's gradient accumulation), clipping, AdamW, the `step`
    /// event with TRL's metric names.
    #[allow(clippy::too_many_arguments)]
    fn reward_step(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        center: Option<f64>,
        trained: &mut Trained,
        opt: &mut AdamW,
        batcher: &mut Batcher,
    ) -> Result<()> {
        let t0 = Instant::now();
        let cfg = &phase.cfg;
        let PhaseData::Pairs(pairs) = &phase.data else {
            bail!("reward phase \"{}\" has no preference pairs", cfg.name);
        };
        let lr = phase.lr_at(step);
        let pad = self.prep.model.tokenizer.pad_id;
        let accum = cfg.grad_accum as u64;
        let w = 1.0 / accum as f64;
        let poison = self.prep.inject_nan_at == Some(self.global_step + 1);
        let mut loss = 0.0;
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut tokens = 0u64;
        for a in 0..accum {
            let idx = batcher.micro_batch(step * accum + a, cfg.batch_size);
            let whole = |side: usize| -> Vec<Vec<u32>> {
                idx.iter()
                    .map(|&i| {
                        let pc = if side == 0 { &pairs[i].0 } else { &pairs[i].1 };
                        pc.to_seq(cfg.max_len, cfg.cut()).0.ids
                    })
                    .collect()
            };
            let (chosen, rejected) = (whole(0), whole(1));
            tokens += chosen
                .iter()
                .chain(&rejected)
                .map(|r| r.len() as u64)
                .sum::<u64>();
            let c: Vec<&[u32]> = chosen.iter().map(|r| r.as_slice()).collect();
            let r: Vec<&[u32]> = rejected.iter().map(|r| r.as_slice()).collect();
            let sc = trained.model.scores(&c, pad, Mode::Train)?;
            let sr = trained.model.scores(&r, pad, Mode::Train)?;
            let (l, metrics) = reward_loss_tensor(&sc, &sr, center)?;
            let mut lv = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if poison {
                lv = f64::NAN;
            }
            for (k, v) in metrics {
                *sums.entry(k).or_default() += v;
            }
            if !lv.is_finite() {
                // No backward of a loss that is not finite.
                loss = f64::NAN;
                grads.clear();
                break;
            }
            loss += w * lv;
            for (n, g) in collect_grads(&(l * w)?.backward()?, &trained.vars) {
                match grads.get_mut(&n) {
                    Some(acc) => *acc = (&*acc + &g)?,
                    None => {
                        grads.insert(n, g);
                    }
                }
            }
        }
        let grad_norm = if loss.is_finite() {
            step::update(opt, &grads, lr, cfg.max_grad_norm())?
        } else {
            f64::NAN
        };
        let finite = loss.is_finite() && grad_norm.is_finite();
        let metrics: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(k, v)| (k, v / accum as f64))
            .filter(|(_, v)| v.is_finite())
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
                rollouts: None,
            },
        )?;
        if !finite {
            self.not_finite(&cfg.name, step + 1, loss.is_finite())?;
        }
        Ok(())
    }

    /// The trained reward model in transformers' layout, with the tokenizer
    /// files, at [`reward_model_dir`].
    fn save_reward_model(&self, phase: &Phase, trained: &Trained) -> Result<()> {
        let dir = reward_model_dir(self.prep.run_dir.root(), &phase.cfg.name);
        let model = &self.prep.model;
        let mut tensors: BTreeMap<String, Tensor> = trained
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        tensors.remove(SCORE_WEIGHT);
        reward::save(
            &dir,
            &model.cfg,
            &tensors,
            &trained.model.score,
            model.tokenizer.pad_id,
        )?;
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes)
                .with_context(|| format!("writing {}", dir.join(name).display()))
        };
        write(
            "tokenizer.json",
            model.tokenizer_files.tokenizer_json.as_bytes(),
        )?;
        write(
            "tokenizer_config.json",
            &serde_json::to_vec_pretty(&model.tokenizer_files.tokenizer_config)?,
        )?;
        tracing::info!("reward model {}", dir.display());
        Ok(())
    }
}
