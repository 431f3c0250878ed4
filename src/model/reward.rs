//! A reward model: the decoder with a scalar score head, laid out as
//! transformers' `*ForSequenceClassification` with `num_labels = 1`
//! (`score.weight`, (1, hidden), no bias). A sequence's score is
//! `score.weight · h`, h the final-normed hidden state at the rightmost token
//! that is not the pad token — transformers' pooling rule, so that a pad id
//! that is also the end-of-turn id is pooled the way transformers pools it.

use super::config::ModelConfig;
use super::decoder::{Decoder, ForwardOptions, Mode};
use super::weights::{save_tensors, TensorMap};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The score head's name in a `*ForSequenceClassification` checkpoint.
pub const SCORE_WEIGHT: &str = "score.weight";

/// The decoder and its score head.
pub struct RewardModel {
    pub decoder: Decoder,
    /// (1, hidden).
    pub score: Tensor,
}

/// A fresh score head: normal(0, `std`) from a seeded RNG, as transformers
/// initialises `score` (`initializer_range`, 0.02 for Llama and Qwen3), so
/// the same seed gives the same head everywhere.
pub fn init_score(hidden: usize, std: f32, seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, std)?;
    let data: Vec<f32> = (0..hidden).map(|_| normal.sample(&mut rng)).collect();
    Ok(Tensor::from_vec(data, (1, hidden), device)?)
}

/// The position transformers pools a row at: the rightmost token that is
/// not `pad` (0 when every token is `pad`, as its argmax gives).
pub fn pooled_position(ids: &[u32], pad: u32) -> usize {
    ids.iter().rposition(|&t| t != pad).unwrap_or(0)
}

impl RewardModel {
    /// Scores of whole token sequences, (rows,) in f32, differentiable in
    /// [`Mode::Train`]. Rows are right-padded with `pad`: attention is
    /// causal, so the pooled position never sees the padding.
    pub fn scores(&self, rows: &[&[u32]], pad: u32, mode: Mode) -> Result<Tensor> {
        if rows.is_empty() || rows.iter().any(|r| r.is_empty()) {
            bail!("a reward model scores non-empty sequences");
        }
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut at = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(pad, len - r.len()));
            at.push((i * len + pooled_position(r, pad)) as u32);
        }
        let dev = self.decoder.device().clone();
        let ids = Tensor::from_vec(ids, (rows.len(), len), &dev)?;
        let hidden = self.decoder.hidden(&ids, mode, ForwardOptions::default())?;
        let h = hidden.dim(2)?;
        let pooled = hidden
            .reshape((rows.len() * len, h))?
            .index_select(&Tensor::new(at, &dev)?, 0)?;
        let score = self.score.to_dtype(pooled.dtype())?;
        let s = pooled.matmul(&score.t()?)?.squeeze(1)?;
        Ok(s.to_dtype(DType::F32)?)
    }
}

/// A decoder over a copy of `tensors`, each a new variable to train, and
/// those variables by name — without `lm_head.weight`, which a scoring
/// model (reward or value) never uses.
pub fn trainable_decoder<'a>(
    cfg: &ModelConfig,
    tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
) -> Result<(Decoder, BTreeMap<String, candle_core::Var>)> {
    let mut vars = BTreeMap::new();
    let mut weights = TensorMap::new("a scoring model");
    for (name, t) in tensors {
        let v = candle_core::Var::from_tensor(&t.copy()?)?;
        weights.tensors.insert(name.clone(), v.as_tensor().clone());
        vars.insert(name.clone(), v);
    }
    let decoder = Decoder::from_weights(cfg, &mut weights)?;
    vars.remove("lm_head.weight");
    Ok((decoder, vars))
}

/// transformers' class for a reward model of this architecture.
fn hf_class(cfg: &ModelConfig) -> String {
    let causal = cfg.to_hf_json()["architectures"][0]
        .as_str()
        .unwrap_or("LlamaForCausalLM")
        .to_string();
    causal.replace("ForCausalLM", "ForSequenceClassification")
}

/// Write a reward model as transformers' `*ForSequenceClassification`
/// directory: `config.json` (`num_labels = 1` through `id2label`, the pad id
/// it pools with) and `model.safetensors` (the decoder's `tensors` by HF
/// name, without `lm_head.weight`, which the class does not have, and
/// `score.weight`). Tokenizer files are the caller's to add.
pub fn save(
    dir: &Path,
    cfg: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    score: &Tensor,
    pad: u32,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out: BTreeMap<String, Tensor> = tensors
        .iter()
        .filter(|(n, _)| n.as_str() != "lm_head.weight")
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    out.insert(SCORE_WEIGHT.into(), score.clone());
    save_tensors(&out, &dir.join("model.safetensors"))?;
    let mut c = cfg.to_hf_json();
    c["architectures"] = json!([hf_class(cfg)]);
    c["id2label"] = json!({"0": "LABEL_0"});
    c["label2id"] = json!({"LABEL_0": 0});
    c["pad_token_id"] = json!(pad);
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&c)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Load a `*ForSequenceClassification` directory with one label: the
/// reward model, its config and the pad id it pools with (its config's
/// `pad_token_id`).
pub fn load(dir: &Path, device: &Device) -> Result<(RewardModel, ModelConfig, u32)> {
    let (cfg, mut w, score, pad) = load_parts(dir, device)?;
    let decoder = Decoder::from_weights(&cfg, &mut w)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((RewardModel { decoder, score }, cfg, pad))
}

/// A reward model directory's parts: its config, the decoder's tensors, the
/// score head and the pad id it pools with (PPO builds its trained value
/// model from them).
pub fn load_parts(dir: &Path, device: &Device) -> Result<(ModelConfig, TensorMap, Tensor, u32)> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let labels = v
        .get("id2label")
        .and_then(Value::as_object)
        .map_or(2, |m| m.len());
    if labels != 1 {
        bail!(
            "{}: a reward model has one label (num_labels = 1); this one has {labels}",
            path.display()
        );
    }
    let pad = v
        .get("pad_token_id")
        .and_then(Value::as_u64)
        .with_context(|| {
            format!(
                "{}: no pad_token_id; transformers pools a reward model's score at the last token that is not the pad token",
                path.display()
            )
        })? as u32;
    let mut cfg =
        ModelConfig::from_hf_value(&v).with_context(|| format!("in {}", path.display()))?;
    let mut w = TensorMap::load_safetensors(&[dir.join("model.safetensors")], device, DType::F32)?;
    // A *ForSequenceClassification has no lm_head (an untied base's is
    // dropped), and a scoring decoder never computes logits: build it tied.
    cfg.tie_word_embeddings = true;
    w.tensors.remove("lm_head.weight");
    let score = w
        .tensors
        .remove(SCORE_WEIGHT)
        .with_context(|| format!("{} has no {SCORE_WEIGHT}", dir.display()))?;
    if score.dims() != [1, cfg.hidden_size] {
        bail!(
            "{} in {} has shape {:?}, not [1, {}]",
            SCORE_WEIGHT,
            dir.display(),
            score.dims(),
            cfg.hidden_size
        );
    }
    Ok((cfg, w, score, pad))
}
