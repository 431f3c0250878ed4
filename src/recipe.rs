//! Recipes: a TOML file that says what to train, on what, and how.
//!
//! ```toml
//! [run]
//! name = "demo"
//! seed = 7
//! output_dir = "../runs"        # relative to this file
//!
//! [model]
//! source = "builtin:tiny"       # builtin:NAME, a directory, hf:ORG/NAME[@REV], gguf:PATH
//!
//! [[phase]]
//! name = "sft"
//! algorithm = "sft"             # sft, dpo, kto, simpo, cpo, orpo, reward, ppo, grpo
//! dataset = "../assets/demo/sft.jsonl"
//! epochs = 2                    # or steps = N
//! lr = 1e-3
//! ```
//!
//! Unknown keys are errors; every error names the file, line and column.

use crate::data::TruncationMode;
use crate::events::Stance;
use crate::location::line_col;
use crate::train::objectives::{DpoLoss, LossAverage, Objective, OrpoNll};
use crate::train::rl::{GrpoLoss, GrpoSettings, KlEstimator, PpoSettings, ScaleRewards};
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A parsed, validated recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub run: RunConfig,
    pub model: ModelSection,
    #[serde(rename = "phase")]
    pub phases: Vec<PhaseConfig>,
    #[serde(default)]
    pub probe: Option<ProbeConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    /// Runs are written to `OUTPUT_DIR/NAME-YYYYMMDD-HHMMSS/`.
    #[serde(default = "default_output_dir")]
    pub output_dir: String,
    /// Keep at most this many snapshots in the run directory, deleting the
    /// oldest once a newer one is sealed. As transformers' `save_total_limit`
    /// the newest is never deleted, but unlike it, every reference model a
    /// kept snapshot or the phase under way needs is kept beyond the count
    /// (hence another name). 0 (the default) keeps all.
    #[serde(default)]
    pub keep_snapshots: u64,
    /// Which snapshots keep the optimizer state a resume needs (twice the
    /// trainable weights' size): only the `newest` (default) or `all`.
    #[serde(default)]
    pub optimizer_state: OptimizerState,
}

/// Which snapshots keep the optimizer state (`[run] optimizer_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerState {
    /// Only the newest snapshot a run would resume from: an older one loses
    /// its optimizer state once a newer one is sealed.
    #[default]
    Newest,
    /// Every snapshot taken within a phase.
    All,
}

fn default_output_dir() -> String {
    "runs".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub source: String,
    /// `f32` (default), `bf16` or `f16`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// `auto`, `cpu`, `cuda:N` or `metal`.
    #[serde(default = "default_device")]
    pub device: String,
    /// `model` (the model's own template, default), `none` (plain text), or
    /// a Jinja template.
    #[serde(default = "default_template")]
    pub chat_template: String,
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

fn default_dtype() -> String {
    "f32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_template() -> String {
    "model".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "default_rank")]
    pub rank: usize,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f32,
    /// Module names (`q_proj`, ..., `down_proj`), or `all-linear`.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
}

/// The projections LoRA can adapt, by their Hugging Face module names.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The LoRA target that means all of [`LORA_TARGETS`] (PEFT's spelling).
pub const ALL_LINEAR: &str = "all-linear";

fn default_rank() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    vec![ALL_LINEAR.into()]
}

/// Training algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sft,
    Dpo,
    Kto,
    Simpo,
    Cpo,
    Orpo,
    /// A Bradley–Terry reward model (TRL's `RewardTrainer`), trained from
    /// the policy as it stands; the policy itself does not change.
    Reward,
    /// PPO against a reward model (TRL's `PPOTrainer`).
    Ppo,
    /// GRPO with a reward model or a stance judge (TRL's `GRPOTrainer`).
    Grpo,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sft => "sft",
            Algorithm::Dpo => "dpo",
            Algorithm::Kto => "kto",
            Algorithm::Simpo => "simpo",
            Algorithm::Cpo => "cpo",
            Algorithm::Orpo => "orpo",
            Algorithm::Reward => "reward",
            Algorithm::Ppo => "ppo",
            Algorithm::Grpo => "grpo",
        }
    }

    /// Whether the phase samples from the policy and learns from rewards.
    pub fn is_rl(self) -> bool {
        matches!(self, Algorithm::Ppo | Algorithm::Grpo)
    }

    /// TRL's default learning rate for the algorithm.
    fn default_lr(self) -> f64 {
        match self {
            Algorithm::Sft => 2e-5,
            Algorithm::Dpo
            | Algorithm::Kto
            | Algorithm::Simpo
            | Algorithm::Cpo
            | Algorithm::Orpo
            | Algorithm::Grpo => 1e-6,
            Algorithm::Reward => 1e-4,
            Algorithm::Ppo => 3e-6,
        }
    }
}

/// Learning-rate schedules (after warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
    /// Warmup, stable, decay: constant, then a half-cosine over the last
    /// `decay_ratio` of the steps.
    Wsd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub name: String,
    pub algorithm: Algorithm,
    /// A JSONL or Parquet file relative to the recipe, or
    /// `hf-dataset:ORG/NAME[@REVISION]` on the Hugging Face hub.
    pub dataset: String,
    /// `hf-dataset:` only: the split to train on (default `train`).
    #[serde(default)]
    pub split: Option<String>,
    /// `hf-dataset:` only: the dataset's configuration (subset), where it
    /// has several.
    #[serde(default)]
    pub config: Option<String>,
    /// Columns under other names: TRL's field name → the dataset's column
    /// (`columns = { messages = "conversation" }` for WildChat).
    #[serde(default)]
    pub columns: Option<std::collections::BTreeMap<String, String>>,
    /// Optimizer steps; or give `epochs`.
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub epochs: Option<f64>,
    #[serde(default)]
    pub lr: Option<f64>,
    /// After warmup; TRL's default is `linear` (decay to 0).
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    /// `wsd`: the share of steps spent decaying at the end (default 0.2).
    #[serde(default)]
    pub decay_ratio: Option<f64>,
    /// Examples per micro-batch (pairs, for preference algorithms).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_accum")]
    pub grad_accum: usize,
    /// Tokens per sequence (TRL's `max_length`, default 1024).
    #[serde(default = "default_max_len", alias = "max_length")]
    pub max_len: usize,
    /// SFT and DPO: which end of a too-long sequence is kept (TRL's
    /// `truncation_mode`, default `keep_start`).
    #[serde(default)]
    pub truncation_mode: Option<TruncationMode>,
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient clipping (0: off); default 1.0, as TRL's trainers, and off
    /// for PPO, whose TRL loop does not clip (read it through
    /// [`PhaseConfig::max_grad_norm`]).
    #[serde(default, rename = "max_grad_norm")]
    pub max_grad_norm_set: Option<f64>,
    /// Snapshot every N steps (0: only at the phase end).
    #[serde(default)]
    pub snapshot_every: u64,
    #[serde(default = "default_true")]
    pub shuffle: bool,
    // Algorithm knobs (TRL's names and defaults). Each is an error where it
    // has no effect, so a setting is never silently ignored.
    #[serde(default)]
    pub beta: Option<f64>,
    /// DPO's or GRPO's loss type, by the phase's algorithm.
    #[serde(default)]
    pub loss_type: Option<LossType>,
    #[serde(default)]
    pub label_smoothing: Option<f64>,
    #[serde(default)]
    pub desirable_weight: Option<f64>,
    #[serde(default)]
    pub undesirable_weight: Option<f64>,
    /// SimPO's target margin γ (TRL's `simpo_gamma`).
    #[serde(default)]
    pub simpo_gamma: Option<f64>,
    /// PPO's discount γ (TRL's `gamma`); on a simpo phase, `simpo_gamma`
    /// (driftui's older spelling).
    #[serde(default)]
    pub gamma: Option<f64>,
    /// CPO's (and SimPO's) NLL weight α.
    #[serde(default)]
    pub cpo_alpha: Option<f64>,
    /// ORPO: the tokens its NLL term averages over (`prompt_and_completion`,
    /// TRL's; or `completion`).
    #[serde(default)]
    pub orpo_nll: Option<OrpoNll>,
    /// SFT: average the loss per `token` (TRL's default) or per `sequence`.
    #[serde(default)]
    pub loss_average: Option<LossAverage>,
    // Reward models (TRL's `RewardConfig`).
    #[serde(default)]
    pub center_rewards_coefficient: Option<f64>,
    // PPO and GRPO: where rewards come from.
    /// A reward model (a model source or a run's snapshot); default: the
    /// last `reward` phase before this one.
    #[serde(default)]
    pub reward_model: Option<String>,
    /// Score rollouts with a reward model whose tokenizer differs from the
    /// policy's, by decoding them and tokenizing the text again.
    #[serde(default)]
    pub reward_retokenize: Option<bool>,
    /// GRPO: reward = the `[probe]` judge's p(this stance | prompt, completion).
    #[serde(default)]
    pub reward_stance: Option<Stance>,
    // Sampling.
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    // PPO (TRL's `PPOConfig`).
    #[serde(default)]
    pub response_length: Option<usize>,
    #[serde(default)]
    pub stop_token: Option<StopToken>,
    #[serde(default)]
    pub missing_eos_penalty: Option<f64>,
    #[serde(default)]
    pub num_ppo_epochs: Option<usize>,
    #[serde(default)]
    pub num_mini_batches: Option<usize>,
    #[serde(default)]
    pub kl_coef: Option<f64>,
    #[serde(default)]
    pub kl_estimator: Option<KlEstimator>,
    #[serde(default)]
    pub cliprange: Option<f64>,
    #[serde(default)]
    pub vf_coef: Option<f64>,
    #[serde(default)]
    pub cliprange_value: Option<f64>,
    #[serde(default)]
    pub lam: Option<f64>,
    #[serde(default)]
    pub whiten_rewards: Option<bool>,
    // GRPO (TRL's `GRPOConfig`).
    #[serde(default)]
    pub num_generations: Option<usize>,
    #[serde(default)]
    pub max_completion_length: Option<usize>,
    #[serde(default)]
    pub epsilon: Option<f64>,
    #[serde(default)]
    pub epsilon_high: Option<f64>,
    #[serde(default)]
    pub scale_rewards: Option<ScaleRewards>,
}

/// TRL's `loss_type`: a DPO loss on dpo phases, a GRPO loss on grpo phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LossType {
    Dpo(DpoLoss),
    Grpo(GrpoLoss),
}

impl LossType {
    /// The name as a recipe writes it.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

const DPO_LOSSES: &str = "sigmoid, hinge, ipo, robust, cdpo";
const GRPO_LOSSES: &str = "grpo, bnpo, dr_grpo, dapo, cispo, sapo, luspo";

impl<'de> Deserialize<'de> for LossType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        type Plain = serde::de::value::Error;
        let s = String::deserialize(d)?;
        if let Ok(l) =
            DpoLoss::deserialize(IntoDeserializer::<Plain>::into_deserializer(s.as_str()))
        {
            return Ok(LossType::Dpo(l));
        }
        if let Ok(l) =
            GrpoLoss::deserialize(IntoDeserializer::<Plain>::into_deserializer(s.as_str()))
        {
            return Ok(LossType::Grpo(l));
        }
        Err(D::Error::custom(format!(
            "unknown loss_type \"{s}\": dpo phases take {DPO_LOSSES}; grpo phases take {GRPO_LOSSES}"
        )))
    }
}

/// PPO's `stop_token`: where a sampled response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopToken {
    /// At the tokenizer's end-of-turn token.
    Eos,
}

fn default_schedule() -> Schedule {
    Schedule::Linear
}
fn default_batch() -> usize {
    8
}
fn default_accum() -> usize {
    1
}
fn default_max_len() -> usize {
    1024
}
fn default_true() -> bool {
    true
}

impl PhaseConfig {
    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.algorithm.default_lr())
    }

    /// The objective with its hyper-parameters (TRL's defaults where unset;
    /// SimPO's are the SimPO paper's: β 2, no NLL term).
    pub fn objective(&self) -> Objective {
        match self.algorithm {
            Algorithm::Sft => Objective::Sft {
                average: self.loss_average.unwrap_or_default(),
            },
            Algorithm::Dpo => Objective::Dpo {
                beta: self.beta.unwrap_or(0.1),
                loss: self.dpo_loss(),
                label_smoothing: self.label_smoothing.unwrap_or(0.0),
            },
            Algorithm::Kto => Objective::Kto {
                beta: self.beta.unwrap_or(0.1),
                desirable_weight: self.desirable_weight.unwrap_or(1.0),
                undesirable_weight: self.undesirable_weight.unwrap_or(1.0),
            },
            Algorithm::Simpo => Objective::SimPo {
                beta: self.beta.unwrap_or(2.0),
                gamma: self.simpo_gamma.or(self.gamma).unwrap_or(0.5),
                label_smoothing: self.label_smoothing.unwrap_or(0.0),
                alpha: self.cpo_alpha.unwrap_or(0.0),
            },
            Algorithm::Cpo => Objective::Cpo {
                beta: self.beta.unwrap_or(0.1),
                alpha: self.cpo_alpha.unwrap_or(1.0),
                label_smoothing: self.label_smoothing.unwrap_or(0.0),
            },
            Algorithm::Orpo => Objective::Orpo {
                beta: self.beta.unwrap_or(0.1),
                nll: self.orpo_nll.unwrap_or_default(),
            },
            Algorithm::Reward => Objective::Reward {
                center: self.center_rewards_coefficient,
            },
            Algorithm::Ppo => Objective::Ppo(self.ppo()),
            Algorithm::Grpo => Objective::Grpo(self.grpo()),
        }
    }

    /// DPO's loss type (sigmoid unless set).
    pub fn dpo_loss(&self) -> DpoLoss {
        match self.loss_type {
            Some(LossType::Dpo(l)) => l,
            _ => DpoLoss::Sigmoid,
        }
    }

    /// PPO's settings, TRL's defaults where unset.
    pub fn ppo(&self) -> PpoSettings {
        let d = PpoSettings::default();
        PpoSettings {
            response_length: self.response_length.unwrap_or(d.response_length),
            temperature: self.temperature.unwrap_or(d.temperature),
            stop_at_eos: self.stop_token == Some(StopToken::Eos),
            missing_eos_penalty: self.missing_eos_penalty,
            num_ppo_epochs: self.num_ppo_epochs.unwrap_or(d.num_ppo_epochs),
            num_mini_batches: self.num_mini_batches.unwrap_or(d.num_mini_batches),
            kl_coef: self.kl_coef.unwrap_or(d.kl_coef),
            kl_estimator: self.kl_estimator.unwrap_or_default(),
            cliprange: self.cliprange.unwrap_or(d.cliprange),
            vf_coef: self.vf_coef.unwrap_or(d.vf_coef),
            cliprange_value: self.cliprange_value.unwrap_or(d.cliprange_value),
            gamma: self.gamma.unwrap_or(d.gamma),
            lam: self.lam.unwrap_or(d.lam),
            whiten_rewards: self.whiten_rewards.unwrap_or(false),
        }
    }

    /// The clipping norm (0: off): the recipe's, else 1.0 as TRL's trainers
    /// clip, and 0 for PPO (TRL's `PPOTrainer.train` steps its optimizer
    /// without clipping).
    pub fn max_grad_norm(&self) -> f64 {
        self.max_grad_norm_set
            .unwrap_or(if self.algorithm == Algorithm::Ppo {
                0.0
            } else {
                1.0
            })
    }

    /// GRPO's settings, TRL's defaults where unset.
    pub fn grpo(&self) -> GrpoSettings {
        let d = GrpoSettings::default();
        let eps = self.epsilon.unwrap_or(d.epsilon_low);
        GrpoSettings {
            num_generations: self.num_generations.unwrap_or(d.num_generations),
            max_completion_length: self
                .max_completion_length
                .unwrap_or(d.max_completion_length),
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            beta: self.beta.unwrap_or(d.beta),
            epsilon_low: eps,
            epsilon_high: self.epsilon_high.unwrap_or(eps),
            loss_type: match self.loss_type {
                Some(LossType::Grpo(l)) => l,
                _ => d.loss_type,
            },
            scale_rewards: self.scale_rewards.unwrap_or_default(),
        }
    }

    /// Where a too-long row loses tokens: TRL's CPO and ORPO cut the
    /// completion only; the others cut the joined sequence.
    pub fn cut(&self) -> crate::data::Cut {
        match self.algorithm {
            Algorithm::Cpo | Algorithm::Simpo | Algorithm::Orpo => crate::data::Cut::Completion,
            _ => crate::data::Cut::Sequence(self.truncation_mode.unwrap_or_default()),
        }
    }

    /// Decay steps out of `total` (for `wsd`).
    pub fn decay(&self, total: u64) -> u64 {
        ((total as f64) * self.decay_ratio.unwrap_or(0.2)).round() as u64
    }

    /// Warmup steps out of `total`.
    pub fn warmup(&self, total: u64) -> u64 {
        match (self.warmup_steps, self.warmup_ratio) {
            (Some(s), _) => s.min(total),
            (None, Some(r)) => ((total as f64) * r).ceil() as u64,
            (None, None) => 0,
        }
    }
}

/// The `[probe]` table: value probes during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probe set (JSONL: topic, question, optional id), relative to the recipe.
    pub file: String,
    /// `choice` (default) or `generate`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Probe every N optimizer steps within a phase (0: phase start and end only).
    #[serde(default)]
    pub every: u64,
    /// Use at most this many questions per topic in periodic probes (0: all),
    /// drawn per topic with the run's seed; every drift series is measured
    /// on them, and phase ends also ask the whole set.
    #[serde(default)]
    pub questions_per_topic: usize,
    /// `choice`: label orderings asked per question, 6 (all, default) or 3
    /// (cyclic: each label once in each position, half the cost).
    #[serde(default)]
    pub orderings: Option<usize>,
    /// Calibrate `choice` scores against content-free questions (the event's
    /// `mean`); the uncalibrated ordering average is logged as `raw` either way.
    #[serde(default = "default_true")]
    pub calibrate: bool,
    /// `generate`: answers sampled per question.
    #[serde(default = "default_samples")]
    pub samples: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// `generate`: the judge — `initial` (the run's starting model), a model
    /// source, or `openai:URL#MODEL` for an OpenAI-compatible endpoint.
    #[serde(default = "default_judge")]
    pub judge: String,
    /// Judge-check set (answers with known stance), relative to the recipe.
    #[serde(default)]
    pub judge_check: Option<String>,
}

fn default_method() -> String {
    "choice".into()
}
fn default_samples() -> usize {
    5
}
fn default_temperature() -> f64 {
    0.7
}
fn default_top_p() -> f64 {
    1.0
}
fn default_max_tokens() -> usize {
    256
}
fn default_judge() -> String {
    "initial".into()
}

/// A recipe with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    pub path: PathBuf,
    pub text: String,
}

impl LoadedRecipe {
    /// Directory relative paths in the recipe are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    pub fn resolve(&self, path: &str) -> PathBuf {
        crate::model::source::resolve(&self.base_dir(), path)
    }
}

/// Read and validate a recipe file.
pub fn load(path: &Path) -> Result<LoadedRecipe> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the recipe {}: {e}", path.display()))?;
    let recipe = parse(&text).map_err(|e| anyhow!("{}:{e}", path.display()))?;
    Ok(LoadedRecipe {
        recipe,
        path: path.to_path_buf(),
        text,
    })
}

/// Parse and validate recipe text; an error reads `LINE:COL: message`.
pub fn parse(text: &str) -> std::result::Result<Recipe, String> {
    let recipe: Recipe = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        format!("{line}:{col}: {}", e.message().trim_end())
    })?;
    validate(&recipe).map_err(|(path, msg)| {
        let (line, col) = locate(text, &path).unwrap_or((1, 1));
        format!("{line}:{col}: {msg}")
    })?;
    Ok(recipe)
}

/// A place in the recipe: table keys and array indices.
#[derive(Debug, Clone)]
enum Seg {
    Key(&'static str),
    Index(usize),
    /// A key the user named (a `columns` entry).
    Name(String),
}

/// (field, alias) pairs: a recipe may spell a key either way.
const KEY_ALIASES: [(&str, &str); 1] = [("max_len", "max_length")];

/// Line and column of the value at `path`, or of the nearest enclosing one.
fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut span = doc.span();
    let mut table = Some(doc.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue>]> = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => table
                .and_then(|t| {
                    t.iter().find(|(key, _)| {
                        let key = key.get_ref().as_ref();
                        key == *k || KEY_ALIASES.contains(&(*k, key))
                    })
                })
                .map(|(_, v)| v),
            Seg::Index(i) => array.and_then(|a| a.get(*i)),
            Seg::Name(k) => table
                .and_then(|t| {
                    t.iter()
                        .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                })
                .map(|(_, v)| v),
        };
        let Some(v) = next else { break };
        span = v.span();
        table = None;
        array = None;
        match v.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a.as_ref()),
            _ => {}
        }
    }
    Some(line_col(text, span.start))
}

type Invalid = (Vec<Seg>, String);

fn validate(r: &Recipe) -> std::result::Result<(), Invalid> {
    use Seg::{Index, Key};
    let bad = |path: Vec<Seg>, msg: String| Err((path, msg));
    if !is_dir_name(&r.run.name) {
        return bad(
            vec![Key("run"), Key("name")],
            format!("run.name {DIR_NAME_RULE}"),
        );
    }
    if !["f32", "bf16", "f16"].contains(&r.model.dtype.as_str()) {
        return bad(
            vec![Key("model"), Key("dtype")],
            format!("dtype \"{}\" is not one of f32, bf16, f16", r.model.dtype),
        );
    }
    let d = r.model.device.as_str();
    let device_ok = d == "auto"
        || d == "cpu"
        || d == "metal"
        || d == "cuda"
        || d.strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    if !device_ok {
        return bad(
            vec![Key("model"), Key("device")],
            format!("device \"{d}\" is not one of auto, cpu, cuda:N, metal"),
        );
    }
    if let Some(l) = &r.model.lora {
        if l.rank == 0 || l.rank > MAX_LORA_RANK {
            return bad(
                vec![Key("model"), Key("lora"), Key("rank")],
                format!("LoRA rank must be in 1..={MAX_LORA_RANK}"),
            );
        }
        if !(l.alpha.is_finite() && l.alpha > 0.0) {
            return bad(
                vec![Key("model"), Key("lora"), Key("alpha")],
                "LoRA alpha must be a positive number".into(),
            );
        }
        if !(0.0..1.0).contains(&l.dropout) {
            return bad(
                vec![Key("model"), Key("lora"), Key("dropout")],
                "LoRA dropout must be in [0, 1)".into(),
            );
        }
        let known = |t: &str| t == ALL_LINEAR || LORA_TARGETS.contains(&t);
        if let Some(t) = l.targets.iter().find(|t| !known(t)) {
            return bad(
                vec![Key("model"), Key("lora"), Key("targets")],
                format!(
                    "unknown LoRA target \"{t}\" (one of {ALL_LINEAR}, {})",
                    LORA_TARGETS.join(", ")
                ),
            );
        }
    }
    if r.phases.is_empty() {
        return bad(vec![], "the recipe has no [[phase]]".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in r.phases.iter().enumerate() {
        let at = |k: &'static str| vec![Key("phase"), Index(i), Key(k)];
        // A phase names its snapshot directories (`NAME-000050`).
        if !is_dir_name(&p.name) || p.name.contains(' ') {
            return bad(
                at("name"),
                format!("a phase name {DIR_NAME_RULE}, and without spaces"),
            );
        }
        if !names.insert(p.name.clone()) {
            return bad(at("name"), format!("two phases are named \"{}\"", p.name));
        }
        match (p.steps, p.epochs) {
            (Some(_), Some(_)) => {
                return bad(at("epochs"), "give steps or epochs, not both".into())
            }
            (None, None) => {
                return bad(
                    vec![Key("phase"), Index(i)],
                    format!("phase \"{}\" needs steps or epochs", p.name),
                )
            }
            (Some(0), _) => return bad(at("steps"), "steps must be at least 1".into()),
            (_, Some(e)) if e.is_nan() || e <= 0.0 => {
                return bad(at("epochs"), "epochs must be positive".into())
            }
            _ => {}
        }
        if p.lr.is_some_and(|lr| lr.is_nan() || lr <= 0.0 || lr > 1.0) {
            return bad(at("lr"), "lr must be in (0, 1]".into());
        }
        check_sizes(p).map_err(|(k, msg)| (at(k), msg))?;
        check_rl(p).map_err(|(k, msg)| (at(k), msg))?;
        let earlier_reward = r.phases[..i]
            .iter()
            .any(|q| q.algorithm == Algorithm::Reward);
        if p.algorithm.is_rl()
            && p.reward_model.is_none()
            && p.reward_stance.is_none()
            && !earlier_reward
        {
            let stance = if p.algorithm == Algorithm::Grpo {
                ", reward_stance = \"support\" (a judge's stance probability)"
            } else {
                ""
            };
            return bad(
                vec![Key("phase"), Index(i), Key("algorithm")],
                format!(
                    "phase \"{}\" ({}) has no reward source: set reward_model = SOURCE{stance}, \
                     or put a reward phase before it",
                    p.name,
                    p.algorithm.name()
                ),
            );
        }
        if p.algorithm == Algorithm::Kto && p.batch_size < 2 {
            return bad(at("batch_size"), "KTO estimates its KL term from mismatched pairs in a batch: batch_size must be at least 2".into());
        }
        if p.beta.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return bad(at("beta"), "beta must be a positive number".into());
        }
        if !(p.weight_decay.is_finite() && p.weight_decay >= 0.0) {
            return bad(
                at("weight_decay"),
                "weight_decay must be a number ≥ 0".into(),
            );
        }
        if p.label_smoothing.is_some_and(|e| !(0.0..0.5).contains(&e)) {
            return bad(
                at("label_smoothing"),
                "label_smoothing must be in [0, 0.5)".into(),
            );
        }
        if p.decay_ratio.is_some_and(|d| !(0.0..=1.0).contains(&d)) {
            return bad(at("decay_ratio"), "decay_ratio must be in [0, 1]".into());
        }
        if p.warmup_ratio.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad(at("warmup_ratio"), "warmup_ratio must be in [0, 1]".into());
        }
        if p.max_grad_norm_set.is_some_and(|m| m.is_nan() || m < 0.0) {
            return bad(
                at("max_grad_norm"),
                "max_grad_norm must be ≥ 0 (0 turns clipping off)".into(),
            );
        }
        for (w, key) in [
            (p.desirable_weight, "desirable_weight"),
            (p.undesirable_weight, "undesirable_weight"),
            (p.cpo_alpha, "cpo_alpha"),
            (p.simpo_gamma, "simpo_gamma"),
        ] {
            if w.is_some_and(|w| !(0.0..=1e6).contains(&w)) {
                return bad(at(key), format!("{key} must be in [0, 1e6]"));
            }
        }
        if let Some((key, msg)) = ineffective_key(p) {
            return bad(at(key), msg);
        }
        let hub = p.dataset.starts_with(HUB_DATASET);
        for (key, set) in [("split", p.split.is_some()), ("config", p.config.is_some())] {
            if set && !hub {
                return bad(
                    at(key),
                    format!("{key} has no effect on a local dataset; it applies to {HUB_DATASET}ORG/NAME datasets"),
                );
            }
        }
        if let Some(cols) = &p.columns {
            if let Some(k) = cols
                .keys()
                .find(|k| !crate::data::FIELDS.contains(&k.as_str()))
            {
                return bad(
                    vec![Key("phase"), Index(i), Key("columns"), Seg::Name(k.clone())],
                    format!(
                        "\"{k}\" is not a field driftui reads; columns maps one of {} to a column of the dataset",
                        crate::data::FIELDS.join(", ")
                    ),
                );
            }
        }
        if p.loss_type == Some(LossType::Dpo(DpoLoss::Cdpo))
            && p.label_smoothing.unwrap_or(0.0) == 0.0
        {
            return bad(
                at("loss_type"),
                "loss_type \"cdpo\" (conservative DPO) needs label_smoothing > 0".into(),
            );
        }
        if p.algorithm == Algorithm::Reward && p.snapshot_every > 0 {
            return bad(
                at("snapshot_every"),
                "snapshots inside a reward phase are not implemented yet \
                 (its model is written at the phase's end): leave snapshot_every out"
                    .into(),
            );
        }
    }
    if let Some(pr) = &r.probe {
        if !["choice", "generate"].contains(&pr.method.as_str()) {
            return bad(
                vec![Key("probe"), Key("method")],
                format!("probe method \"{}\" is not choice or generate", pr.method),
            );
        }
        check_probe_sizes(pr).map_err(|(k, msg)| (vec![Key("probe"), Key(k)], msg))?;
        if !(pr.temperature.is_finite() && pr.temperature >= 0.0) {
            return bad(
                vec![Key("probe"), Key("temperature")],
                "temperature must be a number ≥ 0".into(),
            );
        }
        match (pr.orderings, pr.method.as_str()) {
            (Some(3 | 6), "choice") | (None, _) => {}
            (Some(_), "choice") => {
                return bad(
                    vec![Key("probe"), Key("orderings")],
                    "orderings must be 6 (every label ordering) or 3 (cyclic)".into(),
                )
            }
            (Some(_), _) => return bad(
                vec![Key("probe"), Key("orderings")],
                "orderings has no effect with method \"generate\"; it applies to method \"choice\""
                    .into(),
            ),
        }
        if !(pr.top_p > 0.0 && pr.top_p <= 1.0) {
            return bad(
                vec![Key("probe"), Key("top_p")],
                "top_p must be in (0, 1]".into(),
            );
        }
    }
    Ok(())
}

/// The prefix of a dataset on the Hugging Face hub.
pub const HUB_DATASET: &str = "hf-dataset:";

/// Upper bounds of the sizes a recipe sets: far above any real run, low
/// enough that no product of them overflows or asks for absurd memory.
pub const MAX_BATCH: usize = 1 << 16;
pub const MAX_ACCUM: usize = 1 << 16;
pub const MAX_LEN: usize = 1 << 20;
pub const MAX_STEPS: u64 = 1 << 40;
pub const MAX_EPOCHS: f64 = 1e6;

/// Examples a phase may read in all (`steps × grad_accum × batch_size`):
/// the data order's positions stay exact integers, far from overflow.
pub const MAX_EXAMPLES: u64 = 1 << 53;
pub const MAX_LORA_RANK: usize = 1 << 14;
/// `[probe] samples`: answers sampled per question (the paper: 5).
pub const MAX_SAMPLES: usize = 1 << 10;
/// `[probe] max_tokens`: tokens per sampled answer.
pub const MAX_TOKENS: usize = 1 << 16;
/// `[probe] questions_per_topic`.
pub const MAX_QUESTIONS: usize = 1 << 20;

const DIR_NAME_RULE: &str =
    "must be a non-empty name without slashes or control characters, not starting with '.'";

/// Whether `name` can name a directory of its own: a run's, a snapshot's
/// (a name starting with '.' would hide it, as a partial snapshot is).
fn is_dir_name(name: &str) -> bool {
    !name.trim().is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// The `[probe]` table's sizes against their bounds: the key and the message.
fn check_probe_sizes(p: &ProbeConfig) -> std::result::Result<(), (&'static str, String)> {
    if p.every > MAX_STEPS {
        return Err(("every", format!("every must be at most {MAX_STEPS}")));
    }
    if p.questions_per_topic > MAX_QUESTIONS {
        return Err((
            "questions_per_topic",
            format!("questions_per_topic must be at most {MAX_QUESTIONS} (0: all)"),
        ));
    }
    if p.samples == 0 || p.samples > MAX_SAMPLES {
        return Err(("samples", format!("samples must be in 1..={MAX_SAMPLES}")));
    }
    if p.max_tokens == 0 || p.max_tokens > MAX_TOKENS {
        return Err((
            "max_tokens",
            format!("max_tokens must be in 1..={MAX_TOKENS}"),
        ));
    }
    Ok(())
}

/// The reward-model, PPO and GRPO values against their ranges: the key and
/// the message.
fn check_rl(p: &PhaseConfig) -> std::result::Result<(), (&'static str, String)> {
    let err = |k: &'static str, m: &str| Err((k, format!("{k} {m}")));
    let bad_f =
        |v: Option<f64>, ok: &dyn Fn(f64) -> bool| v.is_some_and(|x| !x.is_finite() || !ok(x));
    if p.reward_model.is_some() && p.reward_stance.is_some() {
        return err(
            "reward_stance",
            "and reward_model are two reward sources: give one",
        );
    }
    if bad_f(p.center_rewards_coefficient, &|x| x >= 0.0) {
        return err("center_rewards_coefficient", "must be ≥ 0");
    }
    if bad_f(p.temperature, &|x| x > 0.0 && x <= 100.0) {
        return err(
            "temperature",
            "must be in (0, 100] (sampling needs a positive temperature)",
        );
    }
    if bad_f(p.top_p, &|x| x > 0.0 && x <= 1.0) {
        return err("top_p", "must be in (0, 1]");
    }
    if p.response_length.is_some_and(|n| n == 0 || n > MAX_LEN) {
        return err("response_length", &format!("must be in 1..={MAX_LEN}"));
    }
    if p.max_completion_length
        .is_some_and(|n| n == 0 || n > MAX_LEN)
    {
        return err(
            "max_completion_length",
            &format!("must be in 1..={MAX_LEN}"),
        );
    }
    if bad_f(p.missing_eos_penalty, &|_| true) {
        return err("missing_eos_penalty", "must be a finite number");
    }
    if p.num_ppo_epochs.is_some_and(|n| n == 0 || n > 1000) {
        return err("num_ppo_epochs", "must be in 1..=1000");
    }
    if p.num_mini_batches.is_some_and(|n| n == 0 || n > 65536) {
        return err("num_mini_batches", "must be in 1..=65536");
    }
    for (k, v) in [("kl_coef", p.kl_coef), ("vf_coef", p.vf_coef)] {
        if bad_f(v, &|x| (0.0..=1e6).contains(&x)) {
            return err(k, "must be in [0, 1e6]");
        }
    }
    for (k, v) in [
        ("cliprange", p.cliprange),
        ("cliprange_value", p.cliprange_value),
        ("epsilon_high", p.epsilon_high),
    ] {
        if bad_f(v, &|x| x > 0.0 && x <= 1e6) {
            return err(k, "must be positive");
        }
    }
    if bad_f(p.epsilon, &|x| x > 0.0 && x < 1.0) {
        return err("epsilon", "must be in (0, 1)");
    }
    if bad_f(p.lam, &|x| (0.0..=1.0).contains(&x)) {
        return err("lam", "must be in [0, 1]");
    }
    match p.algorithm {
        Algorithm::Ppo if bad_f(p.gamma, &|x| (0.0..=1.0).contains(&x)) => {
            return err("gamma", "(the discount) must be in [0, 1]");
        }
        Algorithm::Simpo if p.gamma.is_some() && p.simpo_gamma.is_some() => {
            return err("gamma", "and simpo_gamma are the same key: give one");
        }
        Algorithm::Simpo if bad_f(p.gamma, &|x| (0.0..=1e6).contains(&x)) => {
            return err("gamma", "must be in [0, 1e6]");
        }
        _ => {}
    }
    let rollouts = p.batch_size * p.grad_accum;
    if p.algorithm == Algorithm::Ppo && p.whiten_rewards == Some(true) {
        // TRL: a mini-batch is grad_accum micro-batches of batch_size.
        let mini = rollouts;
        if mini < 8 {
            return err(
                "whiten_rewards",
                &format!(
                    "needs mini-batches of at least 8 rollouts (TRL's rule); these have {mini}"
                ),
            );
        }
    }
    if p.algorithm == Algorithm::Grpo {
        let g = p
            .num_generations
            .unwrap_or(GrpoSettings::default().num_generations);
        if g < 2 {
            return err(
                "num_generations",
                "must be at least 2 (advantages are relative to the group)",
            );
        }
        if !rollouts.is_multiple_of(g) {
            return err(
                "num_generations",
                &format!(
                    "({g}) must divide batch_size × grad_accum = {rollouts} completions per step \
                     (TRL's generation batch holds whole groups)"
                ),
            );
        }
    }
    Ok(())
}

/// The sizes of a phase against their bounds: the key and the message.
fn check_sizes(p: &PhaseConfig) -> std::result::Result<(), (&'static str, String)> {
    if p.batch_size == 0 || p.batch_size > MAX_BATCH {
        return Err((
            "batch_size",
            format!("batch_size must be in 1..={MAX_BATCH}"),
        ));
    }
    if p.grad_accum == 0 || p.grad_accum > MAX_ACCUM {
        return Err((
            "grad_accum",
            format!("grad_accum must be in 1..={MAX_ACCUM}"),
        ));
    }
    if p.max_len < 8 || p.max_len > MAX_LEN {
        return Err(("max_len", format!("max_len must be in 8..={MAX_LEN}")));
    }
    if p.steps.is_some_and(|s| s > MAX_STEPS) {
        return Err(("steps", format!("steps must be at most {MAX_STEPS}")));
    }
    if p.epochs.is_some_and(|e| e > MAX_EPOCHS) {
        return Err(("epochs", format!("epochs must be at most {MAX_EPOCHS}")));
    }
    if p.warmup_steps.is_some_and(|s| s > MAX_STEPS) {
        return Err((
            "warmup_steps",
            format!("warmup_steps must be at most {MAX_STEPS}"),
        ));
    }
    if p.snapshot_every > MAX_STEPS {
        return Err((
            "snapshot_every",
            format!("snapshot_every must be at most {MAX_STEPS}"),
        ));
    }
    // Each factor is bounded above, so the product fits in a u128.
    let examples = u128::from(p.steps.unwrap_or(0)) * p.grad_accum as u128 * p.batch_size as u128;
    if examples > u128::from(MAX_EXAMPLES) {
        return Err((
            "steps",
            format!(
                "steps × grad_accum × batch_size (the examples the phase reads) must be at most {MAX_EXAMPLES}"
            ),
        ));
    }
    Ok(())
}

/// The reward-model, PPO and GRPO keys set where they change nothing.
fn ineffective_rl_key(p: &PhaseConfig) -> Option<(&'static str, String)> {
    use Algorithm::*;
    let alg = p.algorithm;
    let keys: [(&'static str, bool, &[Algorithm], &str); 22] = [
        (
            "center_rewards_coefficient",
            p.center_rewards_coefficient.is_some(),
            &[Reward],
            "reward phases",
        ),
        (
            "reward_model",
            p.reward_model.is_some(),
            &[Ppo, Grpo],
            "ppo and grpo phases",
        ),
        (
            "reward_retokenize",
            p.reward_retokenize.is_some(),
            &[Ppo, Grpo],
            "ppo and grpo phases",
        ),
        (
            "reward_stance",
            p.reward_stance.is_some(),
            &[Grpo],
            "grpo phases",
        ),
        (
            "temperature",
            p.temperature.is_some(),
            &[Ppo, Grpo],
            "ppo and grpo phases",
        ),
        ("top_p", p.top_p.is_some(), &[Grpo], "grpo phases"),
        (
            "response_length",
            p.response_length.is_some(),
            &[Ppo],
            "ppo phases (grpo: max_completion_length)",
        ),
        (
            "stop_token",
            p.stop_token.is_some(),
            &[Ppo],
            "ppo phases (grpo always stops at the end-of-turn token)",
        ),
        (
            "missing_eos_penalty",
            p.missing_eos_penalty.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        (
            "num_ppo_epochs",
            p.num_ppo_epochs.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        (
            "num_mini_batches",
            p.num_mini_batches.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        (
            "kl_coef",
            p.kl_coef.is_some(),
            &[Ppo],
            "ppo phases (grpo: beta)",
        ),
        (
            "kl_estimator",
            p.kl_estimator.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        (
            "cliprange",
            p.cliprange.is_some(),
            &[Ppo],
            "ppo phases (grpo: epsilon)",
        ),
        ("vf_coef", p.vf_coef.is_some(), &[Ppo], "ppo phases"),
        (
            "cliprange_value",
            p.cliprange_value.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        ("lam", p.lam.is_some(), &[Ppo], "ppo phases"),
        (
            "whiten_rewards",
            p.whiten_rewards.is_some(),
            &[Ppo],
            "ppo phases",
        ),
        (
            "num_generations",
            p.num_generations.is_some(),
            &[Grpo],
            "grpo phases",
        ),
        (
            "max_completion_length",
            p.max_completion_length.is_some(),
            &[Grpo],
            "grpo phases (ppo: response_length)",
        ),
        (
            "epsilon",
            p.epsilon.is_some() || p.epsilon_high.is_some(),
            &[Grpo],
            "grpo phases (ppo: cliprange)",
        ),
        (
            "scale_rewards",
            p.scale_rewards.is_some(),
            &[Grpo],
            "grpo phases",
        ),
    ];
    keys.into_iter()
        .find(|(_, set, algs, _)| *set && !algs.contains(&alg))
        .map(|(key, _, _, applies)| {
            let key = if key == "epsilon" && p.epsilon.is_none() {
                "epsilon_high"
            } else {
                key
            };
            (
                key,
                format!(
                    "{key} has no effect on a {} phase; it applies to {applies}",
                    alg.name()
                ),
            )
        })
}

/// A key set on a phase where it changes nothing (TRL 1.16's semantics),
/// with a message saying where it does apply.
fn ineffective_key(p: &PhaseConfig) -> Option<(&'static str, String)> {
    use Algorithm::*;
    let alg = p.algorithm;
    let on = |algs: &[Algorithm]| algs.contains(&alg);
    let not_here = |key: &'static str, applies: &str| {
        Some((
            key,
            format!(
                "{key} has no effect on a {} phase; it applies to {applies}",
                alg.name()
            ),
        ))
    };
    if p.beta.is_some() && on(&[Sft, Reward, Ppo]) {
        let more = if alg == Ppo {
            " (PPO's KL coefficient is kl_coef)"
        } else {
            ""
        };
        return not_here(
            "beta",
            &format!("dpo, kto, simpo, cpo, orpo and grpo phases{more}"),
        );
    }
    if let Some(found) = ineffective_rl_key(p) {
        return Some(found);
    }
    match (p.loss_type, alg) {
        (None, _) | (Some(LossType::Dpo(_)), Dpo) | (Some(LossType::Grpo(_)), Grpo) => {}
        (Some(LossType::Dpo(l)), Grpo) => {
            return Some((
                "loss_type",
                format!(
                    "loss_type \"{}\" is a DPO loss; grpo phases take {GRPO_LOSSES}",
                    LossType::Dpo(l).name()
                ),
            ))
        }
        (Some(LossType::Grpo(l)), Dpo) => {
            return Some((
                "loss_type",
                format!(
                    "loss_type \"{}\" is a GRPO loss; dpo phases take {DPO_LOSSES}",
                    LossType::Grpo(l).name()
                ),
            ))
        }
        (Some(_), _) => return not_here("loss_type", "dpo and grpo phases"),
    }
    if p.label_smoothing.is_some() {
        if alg == Dpo {
            let lt = p.dpo_loss();
            if !lt.uses_label_smoothing() {
                let name = serde_json::to_value(lt)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                return Some((
                    "label_smoothing",
                    format!(
                        "label_smoothing has no effect with loss_type \"{name}\" (TRL 1.16 ignores it there); \
                         it applies to loss_type \"robust\", to loss_type \"cdpo\" (conservative DPO, \
                         driftui's label-smoothed sigmoid loss), and to cpo and simpo phases"
                    ),
                ));
            }
        } else if !on(&[Cpo, Simpo]) {
            return not_here(
                "label_smoothing",
                "dpo phases with loss_type \"robust\" or \"cdpo\", and cpo and simpo phases",
            );
        }
    }
    if p.desirable_weight.is_some() && alg != Kto {
        return not_here("desirable_weight", "kto phases");
    }
    if p.undesirable_weight.is_some() && alg != Kto {
        return not_here("undesirable_weight", "kto phases");
    }
    if p.simpo_gamma.is_some() && alg != Simpo {
        return not_here("simpo_gamma", "simpo phases");
    }
    if p.gamma.is_some() && !on(&[Simpo, Ppo]) {
        return not_here(
            "gamma",
            "ppo phases (the discount) and simpo phases (as simpo_gamma)",
        );
    }
    if p.cpo_alpha.is_some() && !on(&[Cpo, Simpo]) {
        return not_here("cpo_alpha", "cpo and simpo phases");
    }
    if p.orpo_nll.is_some() && alg != Orpo {
        return not_here("orpo_nll", "orpo phases");
    }
    if p.loss_average.is_some() && alg != Sft {
        return not_here("loss_average", "sft phases");
    }
    if p.truncation_mode.is_some() && !on(&[Sft, Dpo]) {
        return not_here(
            "truncation_mode",
            "sft and dpo phases (TRL's KTO always keeps the start; its CPO, SimPO and ORPO cut the completion only)",
        );
    }
    if p.decay_ratio.is_some() && p.schedule != Schedule::Wsd {
        return Some((
            "decay_ratio",
            "decay_ratio has no effect with this schedule; it applies to schedule = \"wsd\"".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[run]
name = "t"
seed = 3

[model]
source = "builtin:tiny"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "d.jsonl"
steps = 10
lr = 1e-3

[[phase]]
name = "pref"
algorithm = "dpo"
dataset = "p.jsonl"
epochs = 1.5
beta = 0.2
"#;

    #[test]
    fn good_recipe_parses_with_defaults() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.phases.len(), 2);
        assert_eq!(r.phases[1].lr(), 1e-6);
        assert_eq!(
            r.phases[1].objective(),
            Objective::Dpo {
                beta: 0.2,
                loss: DpoLoss::Sigmoid,
                label_smoothing: 0.0
            }
        );
        assert_eq!(r.run.output_dir, "runs");
        // TRL 1.16's defaults: linear decay, max_length 1024, keep_start.
        assert_eq!(r.phases[0].schedule, Schedule::Linear);
        assert_eq!(r.phases[0].max_len, 1024);
        assert_eq!(
            r.phases[0].cut(),
            crate::data::Cut::Sequence(TruncationMode::KeepStart)
        );
    }

    /// A key that changes nothing for its phase is an error at the key,
    /// saying where it applies (TRL 1.16's semantics).
    #[test]
    fn a_key_without_effect_is_located_and_says_where_it_applies() {
        let cases = [
            (
                "beta = 0.2",
                "beta = 0.2\nsimpo_gamma = 0.5",
                "22:15",
                "simpo_gamma has no effect on a dpo phase; it applies to simpo phases",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\ngamma = 0.5",
                "22:9",
                "gamma has no effect on a dpo phase; it applies to ppo phases (the discount) \
                 and simpo phases (as simpo_gamma)",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\nkl_coef = 0.05",
                "22:11",
                "kl_coef has no effect on a dpo phase; it applies to ppo phases (grpo: beta)",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\nloss_type = \"dapo\"",
                "22:13",
                "loss_type \"dapo\" is a GRPO loss; dpo phases take sigmoid, hinge, ipo, robust, cdpo",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\nlabel_smoothing = 0.1",
                "22:19",
                "label_smoothing has no effect with loss_type \"sigmoid\"",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\ndesirable_weight = 2.0",
                "22:20",
                "desirable_weight has no effect on a dpo phase; it applies to kto phases",
            ),
            (
                "lr = 1e-3",
                "lr = 1e-3\nbeta = 0.5",
                "15:8",
                "beta has no effect on a sft phase",
            ),
            (
                "lr = 1e-3",
                "lr = 1e-3\norpo_nll = \"completion\"",
                "15:12",
                "orpo_nll has no effect on a sft phase; it applies to orpo phases",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\ndecay_ratio = 0.3",
                "22:15",
                "decay_ratio has no effect with this schedule",
            ),
            (
                "beta = 0.2",
                "beta = 0.2\nloss_type = \"cdpo\"",
                "22:13",
                "loss_type \"cdpo\" (conservative DPO) needs label_smoothing > 0",
            ),
        ];
        for (from, to, at, msg) in cases {
            let err = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.starts_with(&format!("{at}: {msg}")), "{to}: {err}");
        }
        // Where they apply, they parse.
        for ok in [
            "beta = 0.2\nloss_type = \"robust\"\nlabel_smoothing = 0.1",
            "beta = 0.2\nloss_type = \"cdpo\"\nlabel_smoothing = 0.1",
            "beta = 0.2\ntruncation_mode = \"keep_end\"",
        ] {
            parse(&GOOD.replace("beta = 0.2", ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let simpo = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"simpo\"")
            .replace(
                "beta = 0.2",
                "beta = 2.0\ngamma = 0.3\ncpo_alpha = 0.5\nlabel_smoothing = 0.1",
            );
        let r = parse(&simpo).unwrap();
        assert_eq!(
            r.phases[1].objective(),
            Objective::SimPo {
                beta: 2.0,
                gamma: 0.3,
                label_smoothing: 0.1,
                alpha: 0.5
            }
        );
    }

    /// ppo and grpo are known names whose settings are checked, but they
    /// cannot train yet: the recipe refuses them at the algorithm, after
    /// every other check, and says so. reward trains, but not with LoRA or
    /// snapshots inside the phase.
    #[test]
    fn reward_ppo_and_grpo_settings_are_checked() {
        let reward = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"reward\"")
            .replace("beta = 0.2", "center_rewards_coefficient = 0.01");
        let r = parse(&reward).unwrap();
        assert_eq!(
            r.phases[1].objective(),
            Objective::Reward { center: Some(0.01) }
        );
        let err =
            parse(&reward.replace("epochs = 1.5", "epochs = 1.5\nsnapshot_every = 2")).unwrap_err();
        assert!(
            err.starts_with("21:18: snapshots inside a reward phase are not implemented yet"),
            "{err}"
        );
        // A LoRA recipe's reward phase trains a full reward model.
        parse(&reward.replace(
            "source = \"builtin:tiny\"",
            "source = \"builtin:tiny\"\nlora = { rank = 4 }",
        ))
        .unwrap();
        // PPO and GRPO train.
        let text = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"grpo\"")
            .replace(
                "beta = 0.2",
                "reward_model = \"rm\"\nnum_generations = 2\nloss_type = \"grpo\"",
            );
        parse(&text).unwrap();
        let text = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"ppo\"")
            .replace(
                "beta = 0.2",
                "reward_model = \"rm\"\nkl_coef = 0.05\ngamma = 1.0",
            );
        parse(&text).unwrap();
        // Their settings are still checked first, at the key.
        let ppo = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"ppo\"")
            .replace("beta = 0.2", "reward_model = \"builtin:tiny\"\ngamma = 1.5");
        assert_eq!(
            parse(&ppo).unwrap_err(),
            "22:9: gamma (the discount) must be in [0, 1]"
        );
        let no_source = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"grpo\"")
            .replace("beta = 0.2", "num_generations = 2");
        let err = parse(&no_source).unwrap_err();
        assert!(
            err.starts_with("18:13: phase \"pref\" (grpo) has no reward source"),
            "{err}"
        );
        let groups = GOOD
            .replace("algorithm = \"dpo\"", "algorithm = \"grpo\"")
            .replace(
                "beta = 0.2",
                "reward_model = \"builtin:tiny\"\nbatch_size = 3\nnum_generations = 2",
            );
        let err = parse(&groups).unwrap_err();
        assert!(
            err.starts_with("23:19: num_generations (2) must divide batch_size × grad_accum = 3"),
            "{err}"
        );
    }

    /// Every size a recipe sets has a bound: no panic or overflow later.
    #[test]
    fn sizes_out_of_bounds_are_located() {
        for (from, to, msg) in [
            (
                "steps = 10",
                "steps = 10\nbatch_size = 9223372036854775807",
                "batch_size must be in 1..=65536",
            ),
            (
                "steps = 10",
                "steps = 10\ngrad_accum = 0",
                "grad_accum must be in 1..=65536",
            ),
            (
                "steps = 10",
                "steps = 10\nmax_len = 4",
                "max_len must be in 8..=1048576",
            ),
            (
                "steps = 10",
                "steps = 9223372036854775807",
                "steps must be at most 1099511627776",
            ),
            (
                "epochs = 1.5",
                "epochs = 1e300",
                "epochs must be at most 1000000",
            ),
        ] {
            let err = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.contains(msg), "{to}: {err}");
        }
    }

    /// The probe table's and LoRA's sizes are bounded too, and a product of
    /// bounded sizes that would overflow the data order is refused.
    #[test]
    fn probe_lora_and_product_bounds_are_located() {
        let with = format!(
            "{GOOD}\n[probe]\nfile = \"p.jsonl\"\nsamples = 5\nmax_tokens = 64\nevery = 10\n"
        )
        .replace(
            "source = \"builtin:tiny\"",
            "source = \"builtin:tiny\"\nlora = { rank = 8, alpha = 16.0 }",
        );
        parse(&with).unwrap();
        for (from, to, at, msg) in [
            ("samples = 5", "samples = 9223372036854775807", "26:11", "samples must be in 1..=1024"),
            ("samples = 5", "samples = 0", "26:11", "samples must be in 1..=1024"),
            ("max_tokens = 64", "max_tokens = 1000000000", "27:14", "max_tokens must be in 1..=65536"),
            ("every = 10", "every = 18446744073709551615", "28:9", "every must be at most"),
            ("samples = 5", "questions_per_topic = 9999999999", "26:23", "questions_per_topic must be at most 1048576"),
            ("rank = 8", "rank = 9223372036854775807", "8:17", "LoRA rank must be in 1..=16384"),
            ("alpha = 16.0", "alpha = nan", "8:28", "LoRA alpha must be a positive number"),
            ("alpha = 16.0", "alpha = inf", "8:28", "LoRA alpha must be a positive number"),
            ("lr = 1e-3", "lr = 1e-3\nweight_decay = nan", "16:16", "weight_decay must be a number ≥ 0"),
            ("beta = 0.2", "beta = inf", "22:8", "beta must be a positive number"),
            (
                "steps = 10",
                "steps = 1099511627776\nbatch_size = 65536\ngrad_accum = 65536",
                "14:9",
                "steps × grad_accum × batch_size (the examples the phase reads) must be at most 9007199254740992",
            ),
            ("name = \"sft\"", "name = \".sft\"", "11:8", "a phase name must be a non-empty name"),
            ("name = \"t\"", "name = \"a\\nb\"", "3:8", "run.name must be a non-empty name"),
        ] {
            let text = with.replacen(from, to, 1);
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with(&format!("{at}: {msg}")), "{to}: {err}");
        }
    }

    #[test]
    fn retention_keys_parse() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.run.keep_snapshots, 0, "keeps all by default");
        assert_eq!(r.run.optimizer_state, OptimizerState::Newest);
        let r = parse(&GOOD.replace(
            "seed = 3",
            "seed = 3\nkeep_snapshots = 3\noptimizer_state = \"all\"",
        ))
        .unwrap();
        assert_eq!(r.run.keep_snapshots, 3);
        assert_eq!(r.run.optimizer_state, OptimizerState::All);
        let err =
            parse(&GOOD.replace("seed = 3", "seed = 3\noptimizer_state = \"some\"")).unwrap_err();
        assert!(err.starts_with("5:19: unknown variant `some`"), "{err}");
        let err = parse(&GOOD.replace("seed = 3", "seed = 3\nkeep_snapshots = -1")).unwrap_err();
        assert!(err.starts_with("5:18:"), "{err}");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = GOOD.replace("beta = 0.2", "beta = 0.2\nbetta = 0.3");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("22:1: unknown field `betta`"), "{err}");
    }

    #[test]
    fn invalid_value_points_at_the_value() {
        let text = GOOD.replace("lr = 1e-3", "lr = -1.0");
        let err = parse(&text).unwrap_err();
        assert_eq!(err, "14:6: lr must be in (0, 1]");
        let text = GOOD.replace("epochs = 1.5", "epochs = 1.5\nsteps = 4");
        let err = parse(&text).unwrap_err();
        assert_eq!(err, "20:10: give steps or epochs, not both");
    }

    #[test]
    fn wrong_type_and_bad_enum_are_located() {
        let err = parse(&GOOD.replace("algorithm = \"dpo\"", "algorithm = \"rlhf\"")).unwrap_err();
        assert!(err.starts_with("18:13: unknown variant `rlhf`"), "{err}");
        let err = parse(&GOOD.replace("seed = 3", "seed = \"three\"")).unwrap_err();
        assert!(err.starts_with("4:8:"), "{err}");
        let err = parse("[run\nname=1").unwrap_err();
        assert!(err.starts_with("1:"), "{err}");
    }

    #[test]
    fn columns_after_non_ascii_text_count_characters() {
        let text = GOOD.replace(
            "source = \"builtin:tiny\"",
            "source = \"builtin:tiny\" # Zürich → Genève\ndtype = \"f64\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("8:9: dtype \"f64\""), "{err}");
        let text = GOOD
            .replace("[model]\nsource = \"builtin:tiny\"\n", "")
            .replace(
                "\n[run]",
                "\nmodel = { source = \"Zürich\", dtype = \"f64\" }\n[run]",
            );
        let err = parse(&text).unwrap_err();
        // `"f64"` starts at character 38 (byte 39: ü is two bytes).
        assert!(err.starts_with("2:38: dtype \"f64\""), "{err}");
    }
}

#[cfg(test)]
mod shipped {
    /// Every recipe in `recipes/` parses and validates.
    #[test]
    fn shipped_recipes_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                super::load(&p).unwrap_or_else(|e| panic!("{e:#}"));
                n += 1;
            }
        }
        assert!(n >= 2);
    }
}
