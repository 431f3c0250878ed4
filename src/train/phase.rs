//! A phase ready to train: its settings, its objective, its step count and
//! its tokenized data.

use super::objectives::Objective;
use crate::data::{self, DataKind, Example, PromptCompletion, TokenSeq};
use crate::model::LoadedModel;
use crate::recipe::{Algorithm, LoadedRecipe, PhaseConfig};
use anyhow::{bail, Context, Result};

/// A phase's tokenized rows.
pub enum PhaseData {
    Sft(Vec<TokenSeq>),
    /// (chosen, rejected), each with the same prompt.
    Pairs(Vec<(PromptCompletion, PromptCompletion)>),
    /// (prompt and completion, desirable).
    Kto(Vec<(PromptCompletion, bool)>),
    /// Prompts for on-policy RL: the policy writes the completions.
    Prompts(Vec<RlPrompt>),
}

/// One prompt of an RL phase.
#[derive(Debug, Clone, PartialEq)]
pub struct RlPrompt {
    /// Token ids with the chat template's generation prompt (what the
    /// policy continues), cut from the left to the phase's `max_len`.
    pub ids: Vec<u32>,
    /// The last user turn's text: the question a stance judge is shown.
    pub question: String,
}

impl PhaseData {
    pub fn len(&self) -> usize {
        match self {
            PhaseData::Sft(v) => v.len(),
            PhaseData::Pairs(v) => v.len(),
            PhaseData::Kto(v) => v.len(),
            PhaseData::Prompts(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One phase of a recipe, loaded.
pub struct Phase {
    pub cfg: PhaseConfig,
    pub objective: Objective,
    pub data: PhaseData,
    /// Optimizer steps in all.
    pub steps: u64,
    pub warmup: u64,
}

impl Phase {
    /// The learning rate of step `step` (0-based) under the phase's schedule.
    pub fn lr_at(&self, step: u64) -> f64 {
        super::schedule::lr_at(
            self.cfg.schedule,
            self.cfg.lr(),
            step,
            self.warmup,
            self.steps,
            self.cfg.decay(self.steps),
        )
    }

    /// Read and tokenize the phase's dataset; a warning says how many rows
    /// were truncated or dropped.
    pub fn load(
        recipe: &LoadedRecipe,
        cfg: &PhaseConfig,
        model: &LoadedModel,
    ) -> Result<(Phase, Option<String>)> {
        let kind = match cfg.algorithm {
            Algorithm::Sft => DataKind::Sft,
            Algorithm::Kto => DataKind::Kto,
            Algorithm::Ppo | Algorithm::Grpo => DataKind::Prompt,
            _ => DataKind::Preference,
        };
        let columns = data::Columns::new(cfg.columns.clone().unwrap_or_default());
        let (examples, origin) = match cfg.dataset.strip_prefix(crate::recipe::HUB_DATASET) {
            Some(spec) => {
                let files = crate::model::hub::fetch_dataset(
                    spec,
                    cfg.config.as_deref(),
                    cfg.split.as_deref(),
                    &crate::model::hub::HubOptions::from_env(),
                )
                .with_context(|| format!("phase \"{}\"", cfg.name))?;
                let mut all = Vec::new();
                for f in &files {
                    all.extend(
                        data::parquet::load_parquet(f, kind, &columns)
                            .with_context(|| format!("phase \"{}\" ({})", cfg.name, cfg.dataset))?,
                    );
                }
                (all, cfg.dataset.clone())
            }
            None => {
                let path = recipe.resolve(&cfg.dataset);
                let examples = data::load_file(&path, kind, &columns)
                    .with_context(|| format!("phase \"{}\"", cfg.name))?;
                (examples, path.display().to_string())
            }
        };
        let (phase, fit) = Phase::from_examples(cfg, &examples, model)
            .with_context(|| format!("tokenizing {origin} for phase \"{}\"", cfg.name))?;
        let mut notes = Vec::new();
        if fit.truncated > 0 && cfg.algorithm.is_rl() {
            notes.push(format!(
                "{} of {} prompts are longer than max_len = {} tokens and were cut from the left \
                 (their ends, where the question is asked, kept)",
                fit.truncated,
                examples.len(),
                cfg.max_len
            ));
        } else if fit.truncated > 0 {
            notes.push(format!(
                "{} of {} rows are longer than max_len = {} tokens and were truncated",
                fit.truncated,
                examples.len(),
                cfg.max_len
            ));
        }
        if fit.dropped > 0 {
            notes.push(format!(
                "{} rows were dropped: no answer token fits in max_len = {} (as TRL drops them)",
                fit.dropped, cfg.max_len
            ));
        }
        let warning =
            (!notes.is_empty()).then(|| format!("phase \"{}\": {}", cfg.name, notes.join("; ")));
        Ok((phase, warning))
    }

    /// A phase over rows already read.
    pub fn from_examples(
        cfg: &PhaseConfig,
        examples: &[Example],
        model: &LoadedModel,
    ) -> Result<(Phase, Fit)> {
        let (data, fit) = tokenize(model, examples, cfg)?;
        if data.is_empty() {
            bail!(
                "no row is left to train on ({} dropped: no answer token fits in max_len = {})",
                fit.dropped,
                cfg.max_len
            );
        }
        Ok((Phase::new(cfg, data), fit))
    }

    /// A phase over rows already tokenized.
    pub fn new(cfg: &PhaseConfig, data: PhaseData) -> Phase {
        // Rows a step consumes: prompts for RL (GRPO samples
        // num_generations completions of each; PPO's rollout batch is
        // num_mini_batches mini-batches).
        let rows = cfg.batch_size * cfg.grad_accum;
        let per_step = match cfg.algorithm {
            Algorithm::Grpo => (rows / cfg.grpo().num_generations.max(1)).max(1),
            Algorithm::Ppo => rows * cfg.ppo().num_mini_batches.max(1),
            _ => rows,
        } as f64;
        let steps = match (cfg.steps, cfg.epochs) {
            (Some(s), _) => s,
            (_, e) => ((e.unwrap_or(1.0) * data.len() as f64) / per_step)
                .ceil()
                .max(1.0) as u64,
        };
        Phase {
            objective: cfg.objective(),
            warmup: cfg.warmup(steps),
            cfg: cfg.clone(),
            data,
            steps,
        }
    }
}

/// How a dataset fit into `max_len`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fit {
    /// Rows cut to `max_len`.
    pub truncated: usize,
    /// Rows left without an answer token, dropped.
    pub dropped: usize,
}

fn tokenize(
    model: &LoadedModel,
    examples: &[Example],
    p: &PhaseConfig,
) -> Result<(PhaseData, Fit)> {
    let tok = &model.tokenizer;
    let mut fit = Fit::default();
    let cut = p.cut();
    let data = match p.algorithm {
        Algorithm::Sft => {
            let mode = p.truncation_mode.unwrap_or_default();
            let mut seqs = Vec::with_capacity(examples.len());
            for ex in examples {
                let mut s = data::tokenize_sft(tok, ex)?;
                if s.truncate(p.max_len, mode) {
                    fit.truncated += 1;
                }
                if s.trained_targets() == 0 {
                    fit.dropped += 1;
                } else {
                    seqs.push(s);
                }
            }
            PhaseData::Sft(seqs)
        }
        Algorithm::Ppo | Algorithm::Grpo => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Prompt(prompt) = ex else {
                    bail!("not a prompt row")
                };
                // The prompt's tokens exactly as a preference phase has them.
                let mut ids = data::tokenize_prompt_completion(tok, prompt, ".")?.prompt;
                if ids.len() > p.max_len {
                    ids.drain(..ids.len() - p.max_len);
                    fit.truncated += 1;
                }
                let question = prompt
                    .0
                    .iter()
                    .rev()
                    .find(|m| m.role == "user")
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                rows.push(RlPrompt { ids, question });
            }
            PhaseData::Prompts(rows)
        }
        Algorithm::Kto => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Kto(k) = ex else {
                    bail!("not a KTO row")
                };
                let pc = data::tokenize_prompt_completion(tok, &k.prompt, &k.completion)?;
                if pc.prompt_fills(p.max_len, cut) {
                    fit.dropped += 1;
                    continue;
                }
                if pc.prompt.len() + pc.completion.len() > p.max_len {
                    fit.truncated += 1;
                }
                rows.push((pc, k.label));
            }
            if !rows.iter().any(|r| r.1) || rows.iter().all(|r| r.1) {
                tracing::warn!("KTO data has only one label");
            }
            PhaseData::Kto(rows)
        }
        _ => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Preference(pp) = ex else {
                    bail!("not a preference row")
                };
                let c = data::tokenize_prompt_completion(tok, &pp.prompt, &pp.chosen)?;
                let r = data::tokenize_prompt_completion(tok, &pp.prompt, &pp.rejected)?;
                if c.prompt_fills(p.max_len, cut) || r.prompt_fills(p.max_len, cut) {
                    fit.dropped += 1;
                    continue;
                }
                if c.prompt.len() + c.completion.len().max(r.completion.len()) > p.max_len {
                    fit.truncated += 1;
                }
                rows.push((c, r));
            }
            PhaseData::Pairs(rows)
        }
    };
    Ok((data, fit))
}
