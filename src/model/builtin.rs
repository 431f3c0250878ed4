//! `builtin:tiny`: a small Llama-architecture model created from a seed, with a
//! byte-level BPE tokenizer that ships inside the binary — the default recipe
//! needs no network and no file from outside the repository.

use super::config::{Architecture, ModelConfig};
use crate::data::chat::CHATML;
use crate::data::{TemplateChoice, TextTokenizer};
use anyhow::{bail, Result};
use serde_json::json;

/// The built-in tokenizer: byte-level BPE trained on the project's own text
/// (`cargo run --example build_builtin_tokenizer` remakes it).
pub const TOKENIZER_JSON: &str = include_str!("../../assets/builtin/tokenizer.json");

/// Names of the built-in models.
pub const NAMES: [&str; 2] = ["tiny", "micro"];

/// Configuration of a built-in model.
pub fn config(name: &str, vocab_size: usize) -> Result<ModelConfig> {
    let (hidden, layers, heads, kv_heads, ffn) = match name {
        // ~3.7M parameters: big enough to learn the demo data's stances in a
        // minute on two cores.
        "tiny" => (256, 4, 8, 4, 768),
        // ~0.2M: for tests.
        "micro" => (64, 2, 4, 2, 128),
        other => bail!(
            "there is no built-in model \"{other}\"; built-ins are {}",
            NAMES.map(|n| format!("builtin:{n}")).join(", ")
        ),
    };
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: hidden / heads,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 1024,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        pad_token_id: None,
        eos_token_ids: Vec::new(),
    })
}

/// `tokenizer_config.json` of the built-in models (ChatML template).
pub fn tokenizer_config() -> serde_json::Value {
    json!({
        "chat_template": CHATML,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "bos_token": null,
    })
}

/// The built-in tokenizer with its chat template.
pub fn tokenizer(choice: &TemplateChoice) -> Result<TextTokenizer> {
    TextTokenizer::from_json(TOKENIZER_JSON, Some(&tokenizer_config()), choice)
}
