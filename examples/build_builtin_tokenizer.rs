//! Remake `assets/builtin/tokenizer.json`: a byte-level BPE (digits split one
//! by one, as SmolLM2 does) trained on the project's own text in `assets/`.
//!
//!     cargo run --release --example build_builtin_tokenizer
use std::collections::HashSet;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, TokenizerBuilder};

const VOCAB: usize = 2048;
const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

fn main() -> anyhow::Result<()> {
    let mut texts = Vec::new();
    let mut files: Vec<_> = glob_jsonl("assets")?;
    files.sort();
    for f in &files {
        for line in std::fs::read_to_string(f)?.lines() {
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            collect_strings(&v, &mut texts);
        }
    }
    // Role names and template words the chat template writes.
    texts.extend(
        [
            "system",
            "user",
            "assistant",
            "support",
            "neutral",
            "oppose",
        ]
        .map(String::from),
    );
    eprintln!(
        "training on {} strings from {} files",
        texts.len(),
        files.len()
    );

    let byte_level = ByteLevel::new(false, true, false);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ]);
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(VOCAB)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect::<HashSet<char>>())
        .special_tokens(
            SPECIALS
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .build();
    let mut tok = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(pre))
        .with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)))
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
        .build()
        .map_err(anyhow::Error::msg)?;
    tok.train(&mut trainer, texts.into_iter())
        .map_err(anyhow::Error::msg)?;
    let json = tok.to_string(true).map_err(anyhow::Error::msg)?;
    std::fs::write("assets/builtin/tokenizer.json", json + "\n")?;
    eprintln!(
        "wrote assets/builtin/tokenizer.json, vocabulary {}",
        tok.get_vocab_size(true)
    );
    Ok(())
}

fn glob_jsonl(dir: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            out.extend(glob_jsonl(&p.to_string_lossy())?);
        } else if p.extension().is_some_and(|e| e == "jsonl") {
            out.push(p);
        }
    }
    Ok(out)
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}
