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
//!   the frozen base's panel copies in f32 where the decoder keeps them (a
//!   step of at most [`crate::model::fused::TRANSPOSED_ROWS`] tokens);
//! - the activations kept for the backward: per token and layer
//!   d·(12·hidden + 4·intermediate + heads·length) bytes (the layer's
//!   inputs, norms, projections, the SwiGLU's three streams, the attention
//!   row; with the transient gradients of one layer);
//! - 256 MiB for the rest (the process, the tokenizer, the data, the
//!   chunked logits).
//!
//! Checked against `bench_smollm2`'s peak RSS on SmolLM2-135M (f32, 2
//! threads, AMX Xeon, commit 0888bb2): full 1×128 3,184 MiB measured,
//! 3,174 estimated; full 4×256 4,610 / 4,843; LoRA r16 1×128 with panels
//! 1,504 / 1,554; LoRA 4×256 2,597–2,718 / 2,683. The test
//! `estimate_matches_measured_peaks` keeps it there.
//!
//! RL phases (PPO, GRPO) are estimated for their policy's training step
//! over `batch_size` rows of prompt and completion; their sampling and
//! PPO's value model are not counted.

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
    /// The rest.
    pub overhead: u64,
}

impl StepMemory {
    pub fn total(&self) -> u64 {
        self.model + self.state + self.activations + self.overhead
    }

    /// What the step still has to allocate once the model is loaded.
    pub fn to_allocate(&self) -> u64 {
        self.state + self.activations + self.overhead
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
    /// Whether the decoder may keep panel copies (they fit the memory).
    pub panels_allowed: bool,
    pub lora: Option<&'a LoraConfig>,
    pub needs_reference: bool,
    /// Sequences per micro-batch through the model with a gradient.
    pub rows: usize,
    /// Tokens of the longest of them.
    pub len: usize,
}

/// The estimate for one step of `shape`.
pub fn estimate(shape: &StepShape) -> StepMemory {
    let c = shape.cfg;
    let d = shape.dtype_bytes;
    let model = shape.params * d;
    let tokens = (shape.rows * shape.len) as u64;
    let state = match shape.lora {
        None => 4 * model + if shape.needs_reference { model } else { 0 },
        Some(l) => {
            let panels = if shape.panels_allowed
                && (2..=crate::model::fused::TRANSPOSED_ROWS as u64).contains(&tokens)
            {
                shape.matrix_bytes_f32
            } else {
                0
            };
            lora_params(c, l) * 4 * d + panels
        }
    };
    let per_token_layer = d
        * (12 * c.hidden_size + 4 * c.intermediate_size + c.num_attention_heads * shape.len) as u64;
    StepMemory {
        model,
        state,
        activations: tokens * c.num_hidden_layers as u64 * per_token_layer,
        overhead: OVERHEAD,
    }
}

/// Parameters of the adapters on every layer's targets.
fn lora_params(c: &ModelConfig, l: &LoraConfig) -> u64 {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let kv = c.num_key_value_heads * c.head_dim;
    let q = c.num_attention_heads * c.head_dim;
    let all = l.targets.iter().any(|t| t == "all-linear");
    let per_layer: usize = [
        ("q_proj", h, q),
        ("k_proj", h, kv),
        ("v_proj", h, kv),
        ("o_proj", q, h),
        ("gate_proj", h, i),
        ("up_proj", h, i),
        ("down_proj", i, h),
    ]
    .iter()
    .filter(|(name, _, _)| all || l.targets.iter().any(|t| t == name))
    .map(|&(_, input, out)| l.rank * (input + out))
    .sum();
    (per_layer * c.num_hidden_layers) as u64
}

/// Sequences per micro-batch with a gradient, and the longest one's tokens
/// (at most `max_len`).
pub fn phase_rows(phase: &Phase) -> (usize, usize) {
    let cfg = &phase.cfg;
    let cap = |n: usize| n.min(cfg.max_len.max(1));
    match &phase.data {
        PhaseData::Sft(rows) => (
            cfg.batch_size,
            cap(rows.iter().map(|r| r.len()).max().unwrap_or(0)),
        ),
        PhaseData::Pairs(pairs) => (
            2 * cfg.batch_size,
            cap(pairs
                .iter()
                .flat_map(|(c, r)| [c, r])
                .map(|pc| pc.prompt.len() + pc.completion.len())
                .max()
                .unwrap_or(0)),
        ),
        PhaseData::Kto(rows) => (
            cfg.batch_size,
            cap(rows
                .iter()
                .map(|(pc, _)| pc.prompt.len() + pc.completion.len())
                .max()
                .unwrap_or(0)),
        ),
        PhaseData::Prompts(prompts) => {
            let completion = match cfg.algorithm {
                Algorithm::Ppo => cfg.ppo().response_length,
                _ => cfg.grpo().max_completion_length,
            };
            let prompt = cap(prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0));
            (cfg.batch_size, prompt + completion)
        }
    }
}

/// The shape of `phase`'s step on `model`.
pub fn shape_of<'a>(
    model: &'a LoadedModel,
    lora: Option<&'a LoraConfig>,
    phase: &Phase,
    available: Option<u64>,
) -> StepShape<'a> {
    let (rows, len) = phase_rows(phase);
    let (_, dtype) = model.weights.device_dtype();
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
        panels_allowed: crate::model::source::copies_fit(model.matrix_bytes_f32(), available),
        lora,
        needs_reference: phase.objective.needs_reference(),
        rows,
        len,
    }
}

/// Refuse a phase whose step would not fit in `available` bytes (what the
/// machine has free with the model loaded), naming the estimate and the
/// largest `batch_size`, or failing that the largest `max_len` at batch 1,
/// that would fit.
pub fn check(name: &str, shape: &StepShape, batch_size: usize, available: u64) -> Result<()> {
    let need = estimate(shape);
    if need.to_allocate() <= available {
        return Ok(());
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
            // The longest length that fits at batch 1, in steps of 64.
            match (1..=shape.len.div_ceil(64))
                .rev()
                .map(|k| k * 64)
                .filter(|&l| l < shape.len)
                .find(|&len| fits(&StepShape { len, ..one.clone() }))
            {
                Some(len) => format!("batch_size = 1 with max_len = {len} would fit"),
                None if shape.lora.is_none() => "even one short row does not fit: the \
                     full fine-tune's state alone is too large here (a LoRA adapter, \
                     `lora = { rank = 16 }` under [model], trains far less state)"
                    .to_string(),
                None => "even one short row does not fit on this machine".to_string(),
            }
        }
    };
    bail!(
        "phase \"{name}\": a training step of {} sequences of up to {} tokens needs about {} \
         more memory ({} of {}, {} of activations; the model already loaded takes {}), but {} \
         is available; {what_fits}. Set {CHECK_ENV}=off to run anyway.",
        shape.rows,
        shape.len,
        human_bytes(need.to_allocate()),
        human_bytes(need.state),
        if shape.lora.is_some() {
            "adapter state and frozen-weight copies"
        } else {
            "trainable copy, gradients, AdamW moments and reference"
        },
        human_bytes(need.activations),
        human_bytes(need.model),
        human_bytes(available),
    )
}

/// Check every phase of a run on the CPU against the memory available now
/// (skipped on other devices, where it is not known, and with
/// `DRIFTUI_MEMORY_CHECK=off`).
pub fn check_phases(
    model: &LoadedModel,
    lora: Option<&LoraConfig>,
    phases: &[Phase],
) -> Result<()> {
    if std::env::var(CHECK_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return Ok(());
    }
    let (device, _) = model.weights.device_dtype();
    if !device.is_cpu() {
        return Ok(());
    }
    let Some(available) = crate::model::source::available_memory() else {
        return Ok(());
    };
    for phase in phases {
        let shape = shape_of(model, lora, phase, Some(available));
        check(&phase.cfg.name, &shape, phase.cfg.batch_size, available)?;
    }
    Ok(())
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
            panels_allowed: true,
            lora,
            needs_reference: false,
            rows,
            len,
        }
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
        assert_eq!(lora_params(&c, &l), 4_884_480);
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
        no_room.panels_allowed = false;
        assert_eq!(estimate(&no_room).state, adapters);
    }
}
