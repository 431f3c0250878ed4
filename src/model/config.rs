//! Model configuration, read from (and written as) a Hugging Face `config.json`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Decoder families driftui implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3, SmolLM2, Mistral-style without sliding window.
    Llama,
    /// Qwen2: Llama with q/k/v biases.
    Qwen2,
    /// Qwen3: Llama with RMSNorm on q and k per head.
    Qwen3,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }

    fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

/// Llama-3 style RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Everything the decoder needs to know about its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q, k, v projections (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// transformers builds the input embedding with this `padding_idx`: its
    /// row gets no gradient through the lookup (it still gets the tied
    /// head's). SmolLM2's pad is `<|im_end|>`, a token of every turn.
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// Read the fields of a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).context("config.json is not valid JSON")?;
        Self::from_hf_value(&v)
    }

    pub fn from_hf_value(v: &Value) -> Result<Self> {
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("llama");
        let architecture = match model_type {
            "llama" | "mistral" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            other => bail!(
                "model_type \"{other}\" is not supported; driftui trains llama, mistral, qwen2 and qwen3 decoders"
            ),
        };
        let usize_field = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .with_context(|| format!("config.json lacks the integer field \"{k}\""))
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        if num_attention_heads == 0 {
            bail!("config.json: num_attention_heads is 0");
        }
        let num_key_value_heads = v
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            bail!("config.json: num_attention_heads ({num_attention_heads}) is not a multiple of num_key_value_heads ({num_key_value_heads})");
        }
        let head_dim = v
            .get("head_dim")
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(hidden_size / num_attention_heads);
        if !head_dim.is_multiple_of(2) {
            bail!("config.json: head_dim {head_dim} is odd; RoPE needs an even head size");
        }
        let rope_scaling = match v.get("rope_scaling") {
            Some(Value::Object(o)) => {
                let kind = o
                    .get("rope_type")
                    .or_else(|| o.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "llama3" => {
                        let f = |k: &str| -> Result<f64> {
                            o.get(k)
                                .and_then(Value::as_f64)
                                .with_context(|| format!("config.json: rope_scaling lacks \"{k}\""))
                        };
                        Some(RopeScaling {
                            factor: f("factor")?,
                            low_freq_factor: f("low_freq_factor")?,
                            high_freq_factor: f("high_freq_factor")?,
                            original_max_position_embeddings: f("original_max_position_embeddings")?
                                as usize,
                        })
                    }
                    other => bail!("config.json: rope_scaling type \"{other}\" is not supported (default and llama3 are)"),
                }
            }
            _ => None,
        };
        let eos_token_ids = match v.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|x| x as u32)
                .collect(),
            _ => Vec::new(),
        };
        let cfg = Self {
            architecture,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            // transformers 5 writes it inside `rope_parameters`.
            rope_theta: v
                .get("rope_theta")
                .or_else(|| v.get("rope_parameters").and_then(|r| r.get("rope_theta")))
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: v
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(4096) as usize,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias: v
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
            eos_token_ids,
            pad_token_id: v
                .get("pad_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
        };
        Ok(cfg)
    }

    /// A `config.json` that transformers loads for this model.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "torch_dtype": "float32",
        });
        if let Some(r) = &self.rope_scaling {
            v["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": r.factor,
                "low_freq_factor": r.low_freq_factor,
                "high_freq_factor": r.high_freq_factor,
                "original_max_position_embeddings": r.original_max_position_embeddings,
            });
        }
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = json!(b);
        }
        if let Some(p) = self.pad_token_id {
            v["pad_token_id"] = json!(p);
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => v["eos_token_id"] = json!(one),
            many => v["eos_token_id"] = json!(many),
        }
        v
    }

    /// Inverse RoPE frequencies, one per pair of head dimensions, with
    /// Llama-3 scaling applied where configured.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d)
            .step_by(2)
            .map(|i| 1.0 / self.rope_theta.powf(i as f64 / d as f64))
            .collect();
        let Some(rs) = &self.rope_scaling else {
            return base;
        };
        let old = rs.original_max_position_embeddings as f64;
        let low_wavelen = old / rs.low_freq_factor;
        let high_wavelen = old / rs.high_freq_factor;
        base.into_iter()
            .map(|freq| {
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    freq
                } else if wavelen > low_wavelen {
                    freq / rs.factor
                } else {
                    let smooth = (old / wavelen - rs.low_freq_factor)
                        / (rs.high_freq_factor - rs.low_freq_factor);
                    (1.0 - smooth) * freq / rs.factor + smooth * freq
                }
            })
            .collect()
    }

    /// Number of parameters the decoder holds.
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        let i = self.intermediate_size as u64;
        let v = self.vocab_size as u64;
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
        if self.attention_bias {
            layer += q + 2 * kv;
        }
        if self.architecture == Architecture::Qwen3 {
            layer += 2 * self.head_dim as u64;
        }
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + layer * self.num_hidden_layers as u64 + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama3_config_with_rope_scaling() {
        // Llama-3.2-1B's config.json, abridged.
        let text = r#"{
          "architectures": ["LlamaForCausalLM"], "model_type": "llama",
          "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
          "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
          "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 128256,
          "max_position_embeddings": 131072, "tie_word_embeddings": true,
          "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        }"#;
        let c = ModelConfig::from_hf_json(text).unwrap();
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
        assert!(c.tie_word_embeddings);
        // Llama-3.2-1B has 1.236B parameters (tied head).
        assert_eq!(c.parameter_count(), 1_235_814_400);
        let f = c.rope_inv_freq();
        // Highest frequency untouched, lowest divided by the factor.
        assert_eq!(f[0], 1.0);
        let lowest = 1.0 / 500000f64.powf(62.0 / 64.0);
        assert!((f[31] - lowest / 32.0).abs() < 1e-15);
        let back = ModelConfig::from_hf_value(&c.to_hf_json()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unsupported_architecture_is_named() {
        let err = ModelConfig::from_hf_json(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(err.to_string().contains("gpt2"), "{err}");
    }
}
