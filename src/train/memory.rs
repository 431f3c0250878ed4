//! Whether a phase's training step fits in memory, estimated before
//! anything is allocated for it: a recipe whose batch or sequences cannot
//! fit is refused with the estimate and the batch or length that would fit,
//! instead of being killed by the kernel mid-run (or swapping the machine
//! to a halt).
//!
//! The estimate of a step on the CPU, for a model of P parameters of d
//! bytes each:
//!
//! - the loaded model, P·d (resident already when the check runs);
//! - a full fine-tune: the policy's own copy, its gradients and AdamW's
//!   two moments, 4·P·d, and a frozen reference copy, P·d, for objectives
//!   that need one (DPO, KTO, PPO, GRPO with β ≠ 0);
//! - LoRA: the adapters' parameters, gradients and moments (4·d each), and
//!   the frozen base's panel copies in f32 once the decoder has made them
//!   (f32 on the CPU with gemm, where they fit, after any micro-batch of
//!   this phase or an earlier one of at most
//!   [`crate::model::fused::TRANSPOSED_ROWS`] tokens: they are kept);
//! - a reward phase: the policy as it stands (P·d more for a full
//!   fine-tune's Vars) and the reward model it trains, a whole copy with
//!   gradients and moments, 4·P·d; PPO also a frozen reward model and a
//!   trained value model (5·P·d), GRPO a frozen reward model unless it
//!   scores with the stance judge (P·d); reward and value models are
//!   counted at the policy's size;
//! - the activations kept for the backward: per token and layer
//!   d·(12·hidden + 4·intermediate + heads·length) bytes (the layer's
//!   inputs, norms, projections, the SwiGLU's three streams, the attention
//!   row; with the transient gradients of one layer);
//! - where no-grad passes run while those are kept (a reference model's,
//!   KTO's mismatched KL rows, RL's scoring of its rollouts), one layer of
//!   theirs at a time: per token d·(4·hidden + 2·kv width + 3·intermediate
//!   + heads·length);
//! - an RL phase's sampling pass, which ends before the step's passes
//!   begin, so the larger of the two counts: the merged copies of the
//!   LoRA-adapted weights ([`crate::model::Decoder::lora_merged`]; a full
//!   fine-tune samples from its own weights), the KV cache of one prompt's
//!   answers (2·kv width·d per token and layer) and one layer of its
//!   prefill;
//! - 256 MiB for the rest (the process, the tokenizer, the data, the
//!   chunked logits).
//!
//! Checked against `bench_smollm2`'s peak RSS on SmolLM2-135M (f32, 2
//! threads, AMX Xeon, commit 0888bb2): full 1×128 3,184 MiB measured,
//! 3,030 estimated; full 4×256 4,610 / 4,622; LoRA r16 1×128 with panels
//! 1,504 / 1,565; LoRA 4×256 (no panels at 1,024 tokens) 2,597–2,718 /
//! 2,644. The test `estimate_matches_measured_peaks` keeps it within 10%.
//!
//! The sampling pass's panel copies are not counted: it makes them only
//! where they take at most a quarter of the memory free at that moment
//! ([`crate::model::Decoder::for_inference_pass`]).
//!
//! Checked against `driftui train --headless`'s peak RSS (GNU time),
//! SmolLM2-135M f32, 2 steps, AMX Xeon, 2026-12-05: KTO full fine-tune,
//! batch 8, max_len 256: 4.83 GB measured, 4.8 estimated; DPO the same:
//! 5.87 / 6.0; GRPO LoRA r16, batch 8 of 4 answers of 32 tokens: 1.89 /
//! 2.1; GRPO LoRA, batch 2 of 2 answers of 16 tokens, where the sampling
//! pass outgrows the step: 2.28 / 1.9 (+0.43 for the pass's panel copies
//! of the merged weights, made since they fit).
//!
//! Each phase's estimate opens the run's log as an information alert.

use super::phase::{Phase, PhaseData};
use crate::model::config::ModelConfig;
use crate::model::LoadedModel;
use crate::recipe::{Algorithm, LoraConfig};
use crate::rundir::disk::human_bytes;
use anyhow::{bail, Result};

/// Set to `off` to skip the check (an estimate can be wrong).
pub const CHECK_ENV: &str = "DRIFTUI_MEMORY_CHECK";

const OVERHEAD: u64 = 256 << 20;

/// What a phase's step holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// The loaded model: resident before the check.
    pub model: u64,
    /// The trainable state (copies, gradients, moments, a reference, panels).
    pub state: u64,
    /// The activations of the largest micro-batch.
    pub activations: u64,
    /// An RL phase's sampling pass: the merged weights, the KV cache (it
    /// ends before the activations are made).
    pub sampling: u64,
    /// The rest.
    pub overhead: u64,
}

impl StepMemory {
    pub fn total(&self) -> u64 {
        self.model + self.to_allocate()
    }

    /// What the step still has to allocate once the model is loaded.
    pub fn to_allocate(&self) -> u64 {
        self.state + self.activations.max(self.sampling) + self.overhead
    }
}

/// The shape of the work the estimate needs, free of the loaded objects.
#[derive(Debug, Clone, PartialEq)]
pub struct StepShape<'a> {
    pub cfg: &'a ModelConfig,
    /// Parameters of the model.
    pub params: u64,
    /// Bytes per parameter (and per activation).
    pub dtype_bytes: u64,
    /// The f32 size of the model's matrices (LoRA's panel copies).
    pub matrix_bytes_f32: u64,
    /// Whether a LoRA base holds its panel copies by this phase.
    pub panels: bool,
    /// A LoRA run's adapter parameters; `None`: a full fine-tune.
    pub adapters: Option<u64>,
    pub needs_reference: bool,
    /// Whether the phase trains the policy (not so a reward phase).
    pub trains_policy: bool,
    /// Other models of the policy's size the phase trains (a reward
    /// phase's reward model, PPO's value model).
    pub models_trained: u64,
    /// Other frozen models of the policy's size it holds (RL's reward
    /// model).
    pub models_frozen: u64,
    /// Sequences per micro-batch through the model with a gradient.
    pub rows: usize,
    /// Tokens of the longest of them.
    pub len: usize,
    /// Tokens of each that `max_len` does not bound (an RL completion).
    pub unbounded_len: usize,
    /// Whether no-grad passes run beside the kept activations (a
    /// reference, KL rows, a reward or value model's scores).
    pub no_grad_passes: bool,
    /// Answers an RL phase samples at once (one prompt's); 0: no sampling.
    pub sampled_rows: usize,
    /// Parameters of the base weights LoRA adapts (merged for sampling).
    pub adapted_params: u64,
}

/// The estimate for one step of `shape`.
pub fn estimate(shape: &StepShape) -> StepMemory {
    let c = shape.cfg;
    let d = shape.dtype_bytes;
    let model = shape.params * d;
    let tokens = (shape.rows * shape.len) as u64;
    let reference = if shape.needs_reference { model } else { 0 };
    let policy = match (shape.adapters, shape.trains_policy) {
        (None, true) => 4 * model + reference,
        // A reward phase: the policy's Vars stay beside the loaded model.
        (None, false) => model,
        (Some(adapters), trains) => {
            let panels = if shape.panels {
                shape.matrix_bytes_f32
            } else {
                0
            };
            adapters * if trains { 4 } else { 1 } * d + panels
        }
    };
    let state = policy + 4 * model * shape.models_trained + model * shape.models_frozen;
    let layers = c.num_hidden_layers as u64;
    let kv_width = (c.num_key_value_heads * c.head_dim) as u64;
    let per_token_layer = d
        * (12 * c.hidden_size + 4 * c.intermediate_size + c.num_attention_heads * shape.len) as u64;
    // One layer of a pass without a gradient, per token: the residual, the
    // norm, q, k and v, the attention row and output, the SwiGLU's streams.
    let no_grad_layer = d
        * ((4 * c.hidden_size + 3 * c.intermediate_size + c.num_attention_heads * shape.len)
            as u64
            + 2 * kv_width);
    let kept = tokens * layers * per_token_layer;
    let beside = if shape.no_grad_passes {
        tokens * no_grad_layer
    } else {
        0
    };
    let sampling = if shape.sampled_rows == 0 {
        0
    } else {
        let sampled = (shape.sampled_rows * shape.len) as u64;
        let merged = if shape.adapters.is_some() {
            shape.adapted_params * d
        } else {
            0
        };
        merged + sampled * (layers * 2 * kv_width * d + no_grad_layer)
    };
    StepMemory {
        model,
        state,
        activations: kept + beside,
        sampling,
        overhead: OVERHEAD,
    }
}

/// A phase's micro-batches: sequences with a gradient, the longest and the
/// shortest one's tokens (at most `max_len`, plus an RL completion), and
/// the tokens of each that `max_len` does not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseRows {
    pub rows: usize,
    pub longest: usize,
    pub shortest: usize,
    pub unbounded: usize,
}

/// The micro-batches of `phase`.
pub fn phase_rows(phase: &Phase) -> PhaseRows {
    let cfg = &phase.cfg;
    let cap = |n: usize| n.min(cfg.max_len.max(1));
    let span = |lens: &mut dyn Iterator<Item = usize>| {
        lens.fold((0, usize::MAX), |(hi, lo), n| {
            (hi.max(cap(n)), lo.min(cap(n)))
        })
    };
    let pc_len = |pc: &crate::data::PromptCompletion| pc.prompt.len() + pc.completion.len();
    let (rows, (longest, shortest), unbounded) = match &phase.data {
        PhaseData::Sft(rows) => (cfg.batch_size, span(&mut rows.iter().map(|r| r.len())), 0),
        PhaseData::Pairs(pairs) => (
            2 * cfg.batch_size,
            span(&mut pairs.iter().flat_map(|(c, r)| [pc_len(c), pc_len(r)])),
            0,
        ),
        PhaseData::Kto(rows) => (
            cfg.batch_size,
            span(&mut rows.iter().map(|(pc, _)| pc_len(pc))),
            0,
        ),
        PhaseData::Prompts(prompts) => {
            let completion = match cfg.algorithm {
                Algorithm::Ppo => cfg.ppo().response_length,
                _ => cfg.grpo().max_completion_length,
            };
            let (hi, lo) = span(&mut prompts.iter().map(|p| p.ids.len()));
            (
                cfg.batch_size,
                (hi + completion, lo + completion),
                completion,
            )
        }
    };
    PhaseRows {
        rows,
        longest,
        shortest: shortest.min(longest),
        unbounded,
    }
}

/// Whether a micro-batch of `rows` sequences of `shortest` tokens makes a
/// LoRA base's panel copies (a product of 2 to
/// [`crate::model::fused::TRANSPOSED_ROWS`] rows), where they may be made.
pub fn makes_panels(allowed: bool, rows: usize, shortest: usize) -> bool {
    allowed && (2..=crate::model::fused::TRANSPOSED_ROWS).contains(&(rows * shortest))
}

/// The shape of `phase`'s step on `model`; `panels`: whether a LoRA
/// base holds its panel copies by then.
pub fn shape_of<'a>(
    model: &'a LoadedModel,
    lora: Option<&'a LoraConfig>,
    phase: &Phase,
    panels: bool,
) -> StepShape<'a> {
    let r = phase_rows(phase);
    let (_, dtype) = model.weights.device_dtype();
    let cfg = &phase.cfg;
    let (trains_policy, models_trained, models_frozen) = match cfg.algorithm {
        Algorithm::Reward => (false, 1, 0),
        Algorithm::Ppo => (true, 1, 1),
        Algorithm::Grpo if cfg.reward_stance.is_none() => (true, 0, 1),
        _ => (true, 0, 0),
    };
    let needs_reference = trains_policy && phase.objective.needs_reference();
    let sampled_rows = match cfg.algorithm {
        Algorithm::Ppo => 1,
        Algorithm::Grpo => cfg.grpo().num_generations,
        _ => 0,
    };
    let names_dims = || {
        model
            .weights
            .tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.dims()))
    };
    StepShape {
        cfg: &model.cfg,
        params: model
            .weights
            .tensors
            .values()
            .map(|t| t.elem_count() as u64)
            .sum(),
        dtype_bytes: dtype.size_in_bytes() as u64,
        matrix_bytes_f32: model.matrix_bytes_f32(),
        panels,
        // A reward phase trains a whole model even on a LoRA run (the
        // policy's adapters are merged into it).
        adapters: lora.map(|l| crate::model::lora::adapter_params(names_dims(), l)),
        needs_reference,
        trains_policy,
        models_trained,
        models_frozen,
        rows: r.rows,
        len: r.longest,
        unbounded_len: r.unbounded,
        // A reference's scores, KTO's KL rows, RL's scoring of rollouts.
        no_grad_passes: needs_reference
            || sampled_rows > 0
            || matches!(phase.data, PhaseData::Kto(_)),
        sampled_rows,
        adapted_params: lora.map_or(0, |l| crate::model::lora::adapted_params(names_dims(), l)),
    }
}

/// Refuse a phase whose step would not fit in `available` bytes (what the
/// machine has free with the model loaded), naming the estimate and the
/// largest `batch_size`, or failing that the largest `max_len` at batch 1,
/// that would fit. Returns the estimate where it fits.
pub fn check(
    name: &str,
    shape: &StepShape,
    batch_size: usize,
    available: u64,
) -> Result<StepMemory> {
    let need = estimate(shape);
    if need.to_allocate() <= available {
        return Ok(need);
    }
    let fits = |s: &StepShape| estimate(s).to_allocate() <= available;
    let per_row = shape.rows / batch_size.max(1);
    let smaller_batch = (1..batch_size).rev().find(|&b| {
        fits(&StepShape {
            rows: b * per_row.max(1),
            ..shape.clone()
        })
    });
    let what_fits = match smaller_batch {
        Some(b) => {
            format!("batch_size = {b} would fit (raise grad_accum to keep the batch's size)")
        }
        None => {
            let one = StepShape {
                rows: per_row.max(1),
                ..shape.clone()
            };
            // The longest length that fits at batch 1, in steps of 64,
            // as the max_len that gives it (an RL completion comes on top).
            match (1..=shape.len.div_ceil(64))
                .rev()
                .map(|k| k * 64)
                .filter(|&l| l < shape.len && l > shape.unbounded_len)
                .find(|&len| fits(&StepShape { len, ..one.clone() }))
            {
                Some(len) => format!(
                    "batch_size = 1 with max_len = {} would fit",
                    len - shape.unbounded_len
                ),
                None if need.state + need.sampling + need.overhead > available
                    && need.state + need.overhead <= available =>
                {
                    format!(
                        "the sampling pass alone ({} for the merged weights and the KV cache \
                         of {} answers) does not fit beside the training state",
                        human_bytes(need.sampling),
                        shape.sampled_rows
                    )
                }
                None if need.state + need.overhead > available && shape.adapters.is_none() => {
                    "the full fine-tune's state alone does not fit here (a LoRA adapter, \
                     `lora = { rank = 16 }` under [model], trains far less state)"
                        .to_string()
                }
                None if need.state + need.overhead > available => {
                    "the training state alone does not fit on this machine".to_string()
                }
                None => "no batch or length offered here fits on this machine".to_string(),
            }
        }
    };
    // The larger of the step's activations and the sampling pass counts.
    let transient = if need.sampling > need.activations {
        format!(
            "{} for the sampling pass, more than the step's {} of activations",
            human_bytes(need.sampling),
            human_bytes(need.activations)
        )
    } else {
        format!("{} of activations", human_bytes(need.activations))
    };
    bail!(
        "phase \"{name}\": a training step of {} sequences of up to {} tokens needs about {} \
         more memory ({} of {}, {transient}; the model already loaded takes {}), but {} \
         is available; {what_fits}. Set {CHECK_ENV}=off to run anyway.",
        shape.rows,
        shape.len,
        human_bytes(need.to_allocate()),
        human_bytes(need.state),
        if shape.adapters.is_some() && shape.trains_policy && shape.models_trained == 0 {
            "adapter state and frozen-weight copies"
        } else {
            "trainable copies, gradients, AdamW moments and frozen models"
        },
        human_bytes(need.model),
        human_bytes(available),
    )
}

/// Check every phase of a run on the CPU against the memory available now
/// (skipped on other devices, where it is not known, and with
/// `DRIFTUI_MEMORY_CHECK=off`). Returns a line per phase with its estimate,
/// for the run's log.
pub fn check_phases(
    model: &LoadedModel,
    lora: Option<&LoraConfig>,
    phases: &[Phase],
) -> Result<Vec<String>> {
    if std::env::var(CHECK_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return Ok(Vec::new());
    }
    let (device, dtype) = model.weights.device_dtype();
    if !device.is_cpu() {
        return Ok(Vec::new());
    }
    let Some(available) = crate::model::source::available_memory() else {
        return Ok(Vec::new());
    };
    // Where a LoRA base's panels can be made at all (fused::TransposedWeights).
    let allowed = lora.is_some()
        && dtype == candle_core::DType::F32
        && crate::model::streamed::available()
        && crate::model::fused::panels_may_serve()
        && crate::model::source::copies_fit(model.matrix_bytes_f32(), Some(available));
    let mut panels = false;
    let mut lines = Vec::new();
    for phase in phases {
        let r = phase_rows(phase);
        // Made by the first short enough micro-batch, kept for the run.
        panels |=
            phase.cfg.algorithm != Algorithm::Reward && makes_panels(allowed, r.rows, r.shortest);
        let shape = shape_of(model, lora, phase, panels);
        let need = check(&phase.cfg.name, &shape, phase.cfg.batch_size, available)?;
        lines.push(format!(
            "phase \"{}\": memory at its step's peak about {} (the model {}, training state {}, \
             activations {}{}); {} of memory free now",
            phase.cfg.name,
            human_bytes(need.total()),
            human_bytes(need.model),
            human_bytes(need.state),
            human_bytes(need.activations),
            if need.sampling > 0 {
                format!(", or the sampling pass {}", human_bytes(need.sampling))
            } else {
                String::new()
            },
            human_bytes(available)
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M's shape (its config.json).
    fn smollm2() -> ModelConfig {
        let mut c = crate::model::builtin::config("tiny", 49_152).unwrap();
        c.hidden_size = 576;
        c.intermediate_size = 1536;
        c.num_hidden_layers = 30;
        c.num_attention_heads = 9;
        c.num_key_value_heads = 3;
        c.head_dim = 64;
        c
    }

    /// SmolLM2-135M's parameters, counted by hand: the tied embedding
    /// (49,152 × 576), per layer q and o (576²), k and v (576 × 192), the
    /// three MLP matrices (576 × 1536) and two norms, the final norm.
    const SMOLLM2_PARAMS: u64 =
        49_152 * 576 + 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) + 576;
    const SMOLLM2_MATRIX_BYTES: u64 =
        4 * (49_152 * 576 + 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536));

    fn shape<'a>(
        c: &'a ModelConfig,
        lora: Option<&'a LoraConfig>,
        rows: usize,
        len: usize,
    ) -> StepShape<'a> {
        StepShape {
            cfg: c,
            params: SMOLLM2_PARAMS,
            dtype_bytes: 4,
            matrix_bytes_f32: SMOLLM2_MATRIX_BYTES,
            // As bench_smollm2's LoRA runs: every micro-batch rows × len.
            panels: lora.is_some() && makes_panels(true, rows, len),
            adapters: lora.map(|l| adapter_params(c, l)),
            needs_reference: false,
            trains_policy: true,
            models_trained: 0,
            models_frozen: 0,
            rows,
            len,
            unbounded_len: 0,
            no_grad_passes: false,
            sampled_rows: 0,
            adapted_params: lora.map_or(0, |l| {
                let shapes = crate::model::weights::expected_shapes(c);
                crate::model::lora::adapted_params(
                    shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
                    l,
                )
            }),
        }
    }

    /// The adapters `lora::attach` makes on a model of shape `c`.
    fn adapter_params(c: &ModelConfig, l: &LoraConfig) -> u64 {
        let shapes = crate::model::weights::expected_shapes(c);
        crate::model::lora::adapter_params(
            shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
            l,
        )
    }

    fn r16() -> LoraConfig {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: vec!["all-linear".into()],
        }
    }

    #[test]
    fn estimate_matches_measured_peaks() {
        // Peak RSS of `bench_smollm2` (GNU time), SmolLM2-135M f32, 2
        // threads, AMX Xeon, commit 0888bb2 (README's Performance table):
        // (LoRA, rows, length, MiB).
        let c = smollm2();
        let l = r16();
        let measured = [
            (false, 1, 128, 3184.0),
            (false, 4, 256, 4610.0),
            (true, 1, 128, 1504.0),
            (true, 4, 256, 2597.0),
            (true, 4, 256, 2718.0),
        ];
        for (lora, rows, len, mib) in measured {
            let s = shape(&c, lora.then_some(&l), rows, len);
            let est = estimate(&s).total() as f64 / (1u64 << 20) as f64;
            assert!(
                (est / mib - 1.0).abs() < 0.1,
                "lora={lora} {rows}x{len}: estimated {est:.0} MiB, measured {mib}"
            );
        }
        // The adapters: r × (in + out) for each of the 7 projections, 30
        // layers: 4.88M, as the bench prints.
        assert_eq!(adapter_params(&c, &l), 4_884_480);
    }

    #[test]
    fn a_step_that_does_not_fit_names_the_batch_that_does() {
        let c = smollm2();
        let s = shape(&c, None, 64, 1024);
        let need = estimate(&s);
        // Room for the state and about 10 rows of activations.
        let per_row = need.activations / 64;
        let available = need.state + need.overhead + 10 * per_row + per_row / 2;
        let err = check("sft", &s, 64, available).unwrap_err().to_string();
        assert!(err.contains("phase \"sft\""), "{err}");
        assert!(err.contains("batch_size = 10 would fit"), "{err}");
        assert!(err.contains("DRIFTUI_MEMORY_CHECK=off"), "{err}");
        // And 10 rows do fit, 11 do not.
        assert!(check("sft", &shape(&c, None, 10, 1024), 10, available).is_ok());
        assert!(check("sft", &shape(&c, None, 11, 1024), 11, available).is_err());
    }

    #[test]
    fn pairs_count_two_rows_per_example_and_length_is_offered_last() {
        let c = smollm2();
        // A preference step: batch_size 4 is 8 rows.
        let s = shape(&c, None, 8, 2048);
        let one_pair = estimate(&shape(&c, None, 2, 2048));
        // Not even one pair of 2,048 tokens fits; one of 1,024 does.
        let short = estimate(&shape(&c, None, 2, 1024));
        assert!(short.to_allocate() < one_pair.to_allocate());
        let available = short.to_allocate() + 1;
        let err = check("dpo", &s, 4, available).unwrap_err().to_string();
        assert!(
            err.contains("batch_size = 1 with max_len = 1024 would fit"),
            "{err}"
        );
        // The full fine-tune's state alone too large: LoRA is suggested.
        let err = check("dpo", &s, 4, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("LoRA"), "{err}");
        // With room, nothing is said.
        assert!(check("dpo", &s, 4, estimate(&s).to_allocate()).is_ok());
    }

    #[test]
    fn lora_counts_panels_only_where_the_decoder_keeps_them() {
        let c = smollm2();
        let l = r16();
        let small = estimate(&shape(&c, Some(&l), 1, 128));
        let large = estimate(&shape(&c, Some(&l), 4, 256));
        let adapters = 4_884_480 * 4 * 4;
        assert_eq!(small.state, adapters + SMOLLM2_MATRIX_BYTES);
        assert_eq!(large.state, adapters);
        let mut no_room = shape(&c, Some(&l), 1, 128);
        no_room.panels = false;
        assert_eq!(estimate(&no_room).state, adapters);
        // Panels are made by a product of 2 to 512 rows, where allowed.
        assert!(makes_panels(true, 4, 128));
        assert!(!makes_panels(true, 4, 129));
        assert!(!makes_panels(true, 1, 1));
        assert!(!makes_panels(false, 1, 128));
    }

    #[test]
    fn a_reward_phase_counts_the_whole_model_it_trains() {
        let c = smollm2();
        let l = r16();
        let model = SMOLLM2_PARAMS * 4;
        let adapters = 4_884_480 * 4;
        // On a LoRA run: the adapters (not trained here) and a whole reward
        // model with its gradients and moments.
        let mut s = shape(&c, Some(&l), 2, 100);
        s.panels = false;
        s.trains_policy = false;
        s.models_trained = 1;
        assert_eq!(estimate(&s).state, adapters + 4 * model);
        // On a full fine-tune the policy's Vars stay too.
        let mut s = shape(&c, None, 2, 100);
        s.trains_policy = false;
        s.models_trained = 1;
        assert_eq!(estimate(&s).state, model + 4 * model);
        // PPO: the policy's state, a reference, a frozen reward model and
        // a trained value model.
        let mut s = shape(&c, None, 2, 100);
        s.needs_reference = true;
        s.models_trained = 1;
        s.models_frozen = 1;
        assert_eq!(estimate(&s).state, 4 * model + model + 4 * model + model);
    }

    #[test]
    fn an_rl_length_advice_leaves_room_for_the_completion() {
        let c = smollm2();
        // Prompts of up to 512 tokens and 256-token completions.
        let mut s = shape(&c, None, 4, 768);
        s.unbounded_len = 256;
        let mut fits = shape(&c, None, 1, 640);
        fits.unbounded_len = 256;
        let available = estimate(&fits).to_allocate();
        let err = check("grpo", &s, 4, available).unwrap_err().to_string();
        // 640 tokens of sequence = max_len 384 + the 256 of the completion.
        assert!(
            err.contains("batch_size = 1 with max_len = 384 would fit"),
            "{err}"
        );
    }

    #[test]
    fn no_grad_passes_add_one_layer_of_theirs() {
        let c = smollm2();
        // KTO on a full fine-tune, 4 × 256: the reference's and the KL
        // rows' passes run beside the policy's kept activations.
        let mut s = shape(&c, None, 4, 256);
        let alone = estimate(&s);
        s.needs_reference = true;
        s.no_grad_passes = true;
        let kto = estimate(&s);
        // Per token: residual, norm, q, attention output, o (4 × 576), k
        // and v (2 × 3 heads × 64), gate, up and their product (3 × 1536),
        // 9 heads' rows of 256; f32.
        let layer = 4 * (4 * 576 + 2 * 192 + 3 * 1536 + 9 * 256);
        assert_eq!(kto.activations - alone.activations, 4 * 256 * layer);
        assert_eq!(kto.state - alone.state, SMOLLM2_PARAMS * 4);
        assert_eq!(kto.sampling, 0);
    }

    #[test]
    fn an_rl_sampling_pass_counts_where_it_outgrows_the_step() {
        let c = smollm2();
        let l = r16();
        // The base weights LoRA all-linear adapts, counted by hand: q and
        // o (576²), k and v (576 × 192), the MLP's three (576 × 1536), 30
        // layers; the head and embedding are not adapted.
        let adapted: u64 = 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536);
        // GRPO, 8 answers of one prompt sampled at once, 320 tokens each.
        let mut s = shape(&c, Some(&l), 8, 320);
        s.panels = false;
        s.no_grad_passes = true;
        s.sampled_rows = 8;
        assert_eq!(s.adapted_params, adapted);
        let m = estimate(&s);
        // The merged copies, then per sampled token the KV cache (30 layers
        // × k and v × 192) and one prefill layer.
        let layer = 4 * (4 * 576 + 2 * 192 + 3 * 1536 + 9 * 320);
        let kv = 30 * 2 * 192 * 4;
        assert_eq!(m.sampling, adapted * 4 + 8 * 320 * (kv + layer));
        // Here the step's activations are larger: they count, not both.
        assert!(m.activations > m.sampling);
        assert_eq!(m.to_allocate(), m.state + m.activations + m.overhead);
        // Two answers of 40 tokens: the merged copies outgrow the step.
        let mut small = shape(&c, Some(&l), 2, 40);
        small.panels = false;
        small.no_grad_passes = true;
        small.sampled_rows = 2;
        let m = estimate(&small);
        assert!(m.sampling > m.activations);
        assert_eq!(m.to_allocate(), m.state + m.sampling + m.overhead);
        // A full fine-tune samples from its own weights: no merged copies.
        let mut full = shape(&c, None, 2, 40);
        full.sampled_rows = 2;
        assert_eq!(
            estimate(&full).sampling,
            2 * 40 * (kv + 4 * (4 * 576 + 2 * 192 + 3 * 1536 + 9 * 40))
        );
        // Room for the state and the step, not the pass: refused, naming it.
        let available = m.state + m.activations + m.overhead + (m.sampling - m.activations) / 2;
        let err = check("grpo", &small, 2, available).unwrap_err().to_string();
        assert!(err.contains("for the sampling pass"), "{err}");
        assert!(err.contains("the sampling pass alone"), "{err}");
        assert!(check("grpo", &small, 2, m.to_allocate()).is_ok());
    }
}
