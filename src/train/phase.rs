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
}

impl PhaseData {
    pub fn len(&self) -> usize {
        match self {
            PhaseData::Sft(v) => v.len(),
            PhaseData::Pairs(v) => v.len(),
            PhaseData::Kto(v) => v.len(),
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
    /// Read and tokenize the phase's dataset; a warning says how many rows
    /// were truncated.
    pub fn load(
        recipe: &LoadedRecipe,
        cfg: &PhaseConfig,
        model: &LoadedModel,
    ) -> Result<(Phase, Option<String>)> {
        let path = recipe.resolve(&cfg.dataset);
        let kind = match cfg.algorithm {
            Algorithm::Sft => DataKind::Sft,
            Algorithm::Kto => DataKind::Kto,
            _ => DataKind::Preference,
        };
        let examples =
            data::load_jsonl(&path, kind).with_context(|| format!("phase \"{}\"", cfg.name))?;
        let (phase, truncated) = Phase::from_examples(cfg, &examples, model)
            .with_context(|| format!("tokenizing {} for phase \"{}\"", path.display(), cfg.name))?;
        let warning = (truncated > 0).then(|| {
            format!(
                "phase \"{}\": {truncated} of {} rows are longer than max_len = {} tokens and were truncated",
                cfg.name,
                phase.data.len(),
                cfg.max_len
            )
        });
        Ok((phase, warning))
    }

    /// A phase over rows already read; also returns how many rows are
    /// longer than `max_len`.
    pub fn from_examples(
        cfg: &PhaseConfig,
        examples: &[Example],
        model: &LoadedModel,
    ) -> Result<(Phase, usize)> {
        let (data, truncated) = tokenize(model, examples, cfg)?;
        let per_step = (cfg.batch_size * cfg.grad_accum) as f64;
        let steps = match (cfg.steps, cfg.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => ((e * data.len() as f64) / per_step).ceil().max(1.0) as u64,
            (None, None) => bail!("phase \"{}\" needs steps or epochs", cfg.name),
        };
        let phase = Phase {
            objective: cfg.objective(),
            warmup: cfg.warmup(steps),
            cfg: cfg.clone(),
            data,
            steps,
        };
        Ok((phase, truncated))
    }
}

fn tokenize(
    model: &LoadedModel,
    examples: &[Example],
    p: &PhaseConfig,
) -> Result<(PhaseData, usize)> {
    let tok = &model.tokenizer;
    let mut truncated = 0;
    let data = match p.algorithm {
        Algorithm::Sft => {
            let mut seqs = Vec::with_capacity(examples.len());
            for ex in examples {
                let mut s = data::tokenize_sft(tok, ex)?;
                if s.len() > p.max_len {
                    // As for preference data: keep the end of the context and
                    // the start of the answer, so no row loses its answer.
                    let first = s.trained.iter().position(|&t| t).unwrap_or(0);
                    let (keep_ctx, keep_rest) =
                        data::truncate_pair(first, s.len() - first, p.max_len);
                    let range = first - keep_ctx..first + keep_rest;
                    s.ids = s.ids[range.clone()].to_vec();
                    s.trained = s.trained[range].to_vec();
                    truncated += 1;
                }
                if s.trained_targets() == 0 {
                    bail!(
                        "a row has no answer tokens left after truncation to max_len = {}",
                        p.max_len
                    );
                }
                seqs.push(s);
            }
            PhaseData::Sft(seqs)
        }
        Algorithm::Kto => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Kto(k) = ex else {
                    bail!("not a KTO row")
                };
                let pc = data::tokenize_prompt_completion(tok, &k.prompt, &k.completion)?;
                if pc.prompt.len() + pc.completion.len() > p.max_len {
                    truncated += 1;
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
                if c.prompt.len() + c.completion.len().max(r.completion.len()) > p.max_len {
                    truncated += 1;
                }
                rows.push((c, r));
            }
            PhaseData::Pairs(rows)
        }
    };
    Ok((data, truncated))
}
