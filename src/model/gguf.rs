//! `gguf:PATH`: a llama.cpp model file, dequantised into our decoder's
//! Hugging Face layout, with its tokenizer rebuilt from the file's metadata.
//!
//! llama.cpp stores the rows of Llama's Q and K projections permuted for its
//! interleaved RoPE; they are put back in Hugging Face's order here. Qwen2/3
//! files are converted without that permutation and are taken as they are.

use super::config::{Architecture, ModelConfig, RopeScaling};
use super::source::{LoadOptions, LoadedModel, TokenizerFiles};
use super::weights::TensorMap;
use crate::data::TextTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value as GValue};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

/// Load `path` (a GGUF file) as a model.
pub fn load_gguf(path: &Path, source: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let shown = path.display();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open the GGUF file {shown}"))?;
    let content = match Content::read(&mut file) {
        Ok(c) => c,
        Err(err) => {
            // candle names only the type number of a tensor it cannot read;
            // find the tensor and the quantisation's name ourselves.
            if let Ok(Some((tensor, ty))) = first_unknown_tensor_type(path) {
                bail!(
                    "the GGUF file {shown} stores the tensor {tensor} as {} (ggml type {ty}), a quantisation \
                     driftui cannot dequantise; it reads {}",
                    ggml_type_name(ty),
                    SUPPORTED_TYPES
                );
            }
            return Err(anyhow!(err))
                .with_context(|| format!("{shown} is not a readable GGUF file"));
        }
    };
    let meta = Meta {
        map: &content.metadata,
        file: path,
    };
    let arch_name = meta.string("general.architecture")?;
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        other => bail!(
            "the GGUF file {shown} holds a \"{other}\" model; driftui trains llama, qwen2 and qwen3 decoders"
        ),
    };
    let tokens = meta.string_array("tokenizer.ggml.tokens")?;
    let mut cfg = config_from_meta(&meta, &arch_name, architecture, tokens.len())?;
    cfg.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    // Qwen2 files carry q/k/v biases; the tensors decide.
    cfg.attention_bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");

    let mut weights = TensorMap::new(path.display().to_string());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let q = info
            .read(&mut file, content.tensor_data_offset, &Device::Cpu)
            .with_context(|| format!("cannot read the tensor {name} from {shown}"))?;
        let w = q.dequantize(&Device::Cpu).with_context(|| {
            format!(
                "cannot dequantise the tensor {name} ({:?}) from {shown}",
                info.ggml_dtype
            )
        })?;
        if name == "rope_freqs.weight" {
            cfg.rope_scaling = Some(
                llama3_scaling_from_factors(&cfg, &meta, &w)
                    .with_context(|| format!("the rope_freqs.weight tensor of {shown}"))?,
            );
            continue;
        }
        let hf = hf_name(name).with_context(|| {
            format!("the GGUF file {shown} has a tensor {name} that driftui does not know")
        })?;
        let w = match (architecture, hf.rsplit('.').nth(1)) {
            (Architecture::Llama, Some("q_proj")) => unpermute(&w, cfg.num_attention_heads)?,
            (Architecture::Llama, Some("k_proj")) => unpermute(&w, cfg.num_key_value_heads)?,
            _ => w,
        };
        let w = w.to_dtype(opts.dtype)?.to_device(&opts.device)?;
        weights.tensors.insert(hf, w);
    }

    let (inner, tokenizer_config) = tokenizer_from_meta(&meta, &tokens)?;
    let tokenizer_json = inner
        .to_string(false)
        .map_err(|e| anyhow!("cannot serialise the tokenizer rebuilt from {shown}: {e}"))?;
    let tokenizer = TextTokenizer::from_tokenizer(inner, Some(&tokenizer_config), &opts.template)
        .with_context(|| format!("the tokenizer of {shown}"))?;
    cfg.bos_token_id = meta
        .opt_u64("tokenizer.ggml.bos_token_id")?
        .map(|x| x as u32);
    let mut eos = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = meta.opt_u64(key)? {
            if !eos.contains(&(id as u32)) {
                eos.push(id as u32);
            }
        }
    }
    cfg.eos_token_ids = eos;
    // transformers' GGUF loader makes this the config's pad_token_id.
    cfg.pad_token_id = meta
        .opt_u64("tokenizer.ggml.padding_token_id")?
        .map(|x| x as u32);

    let model = LoadedModel {
        cfg,
        weights,
        tokenizer,
        source: source.to_string(),
        base_ref: format!(
            "gguf:{}",
            std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
        ),
        config_json: None,
        tokenizer_files: TokenizerFiles {
            tokenizer_json,
            tokenizer_config,
        },
    };
    // Every tensor there with the shape the metadata implies.
    model
        .decoder()
        .with_context(|| format!("loading {shown}"))?;
    Ok(model)
}

/// Typed access to the metadata, with errors naming the file and key.
struct Meta<'a> {
    map: &'a HashMap<String, GValue>,
    file: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&GValue> {
        self.map.get(key).with_context(|| {
            format!(
                "the GGUF file {} lacks the metadata key {key}",
                self.file.display()
            )
        })
    }

    fn string(&self, key: &str) -> Result<String> {
        match self.get(key)? {
            GValue::String(s) => Ok(s.clone()),
            other => bail!(
                "the GGUF metadata {key} in {} is a {:?}, not a string",
                self.file.display(),
                other.value_type()
            ),
        }
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.map.get(key) else {
            return Ok(None);
        };
        let n = match v {
            GValue::U8(x) => *x as u64,
            GValue::U16(x) => *x as u64,
            GValue::U32(x) => *x as u64,
            GValue::U64(x) => *x,
            GValue::I8(x) if *x >= 0 => *x as u64,
            GValue::I16(x) if *x >= 0 => *x as u64,
            GValue::I32(x) if *x >= 0 => *x as u64,
            GValue::I64(x) if *x >= 0 => *x as u64,
            other => bail!(
                "the GGUF metadata {key} in {} is {other:?}, not a count",
                self.file.display()
            ),
        };
        Ok(Some(n))
    }

    fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.with_context(|| {
            format!(
                "the GGUF file {} lacks the metadata key {key}",
                self.file.display()
            )
        })
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(v) = self.map.get(key) else {
            return Ok(None);
        };
        Ok(Some(match v {
            GValue::F32(x) => *x as f64,
            GValue::F64(x) => *x,
            _ => match self.opt_u64(key) {
                Ok(Some(n)) => n as f64,
                _ => bail!(
                    "the GGUF metadata {key} in {} is {v:?}, not a number",
                    self.file.display()
                ),
            },
        }))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(GValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => bail!(
                "the GGUF metadata {key} in {} is {v:?}, not a boolean",
                self.file.display()
            ),
        }
    }

    fn array(&self, key: &str) -> Result<&Vec<GValue>> {
        match self.get(key)? {
            GValue::Array(a) => Ok(a),
            v => bail!(
                "the GGUF metadata {key} in {} is a {:?}, not an array",
                self.file.display(),
                v.value_type()
            ),
        }
    }

    fn string_array(&self, key: &str) -> Result<Vec<String>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                GValue::String(s) => Ok(s.clone()),
                other => bail!(
                    "the GGUF metadata {key}[{i}] in {} is a {:?}, not a string",
                    self.file.display(),
                    other.value_type()
                ),
            })
            .collect()
    }
}

fn config_from_meta(
    meta: &Meta,
    arch: &str,
    architecture: Architecture,
    n_tokens: usize,
) -> Result<ModelConfig> {
    let k = |key: &str| format!("{arch}.{key}");
    let hidden_size = meta.u64(&k("embedding_length"))? as usize;
    let heads = meta.u64(&k("attention.head_count"))? as usize;
    if heads == 0 {
        bail!(
            "the GGUF file {}: {arch}.attention.head_count is 0",
            meta.file.display()
        );
    }
    let kv_heads = meta
        .opt_u64(&k("attention.head_count_kv"))?
        .map(|x| x as usize)
        .unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        bail!(
            "the GGUF file {}: {heads} attention heads are not a multiple of {kv_heads} KV heads",
            meta.file.display()
        );
    }
    let head_dim = meta
        .opt_u64(&k("attention.key_length"))?
        .map(|x| x as usize)
        .unwrap_or(hidden_size / heads);
    if head_dim % 2 != 0 {
        bail!(
            "the GGUF file {}: head size {head_dim} is odd",
            meta.file.display()
        );
    }
    if let Some(kind) = meta.opt_string(&k("rope.scaling.type"))? {
        if kind != "none" && kind != "llama3" {
            bail!(
                "the GGUF file {} uses RoPE scaling \"{kind}\", which driftui does not implement",
                meta.file.display()
            );
        }
    }
    let vocab_size = meta
        .opt_u64(&k("vocab_size"))?
        .map(|x| x as usize)
        .unwrap_or(n_tokens);
    Ok(ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: meta.u64(&k("feed_forward_length"))? as usize,
        num_hidden_layers: meta.u64(&k("block_count"))? as usize,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: meta
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: meta.opt_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: meta
            .opt_u64(&k("context_length"))?
            .map(|x| x as usize)
            .unwrap_or(4096),
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        pad_token_id: None,
        eos_token_ids: Vec::new(),
    })
}

/// llama.cpp's tensor name → Hugging Face's.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (kind, suffix) = rest.split_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let module = match kind {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{suffix}"))
}

/// Undo llama.cpp's row permutation of a Q or K projection (or its bias):
/// rows grouped per head as (pairs, 2) go back to (2, pairs).
pub fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    if heads == 0 || !out.is_multiple_of(2 * heads) {
        bail!("a Q/K projection with {out} rows does not split into {heads} heads");
    }
    let half = out / heads / 2;
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// llama.cpp's permutation of a Q or K projection (the inverse of
/// [`unpermute`]), for writing test files.
pub fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    if heads == 0 || !out.is_multiple_of(2 * heads) {
        bail!("a Q/K projection with {out} rows does not split into {heads} heads");
    }
    let half = out / heads / 2;
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((heads, 2, half, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// Llama-3.1+ files carry RoPE scaling as per-frequency divisors
/// (`rope_freqs.weight`) instead of parameters: find the Llama-3 parameters
/// that produce exactly these divisors.
fn llama3_scaling_from_factors(cfg: &ModelConfig, meta: &Meta, w: &Tensor) -> Result<RopeScaling> {
    let got: Vec<f32> = w.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let given_factor = meta.opt_f64("llama.rope.scaling.factor")?;
    let given_ctx = meta.opt_u64("llama.rope.scaling.original_context_length")?;
    let factors: Vec<f64> = match given_factor {
        Some(f) => vec![f],
        None => vec![8.0, 16.0, 32.0, 4.0, 2.0],
    };
    let contexts: Vec<usize> = match given_ctx {
        Some(c) => vec![c as usize],
        None => vec![8192, 4096, 16384],
    };
    for &factor in &factors {
        for &ctx in &contexts {
            let cand = RopeScaling {
                factor,
                low_freq_factor: meta
                    .opt_f64("llama.rope.scaling.low_freq_factor")?
                    .unwrap_or(1.0),
                high_freq_factor: meta
                    .opt_f64("llama.rope.scaling.high_freq_factor")?
                    .unwrap_or(4.0),
                original_max_position_embeddings: ctx,
            };
            let mut c = cfg.clone();
            c.rope_scaling = None;
            let base = c.rope_inv_freq();
            c.rope_scaling = Some(cand.clone());
            let scaled = c.rope_inv_freq();
            if base.len() != got.len() {
                bail!(
                    "it has {} entries for a head size of {} ({} expected)",
                    got.len(),
                    cfg.head_dim,
                    base.len()
                );
            }
            let fits = base
                .iter()
                .zip(&scaled)
                .zip(&got)
                .all(|((b, s), g)| ((b / s) - *g as f64).abs() <= 1e-3 * (*g as f64).abs());
            if fits {
                return Ok(cand);
            }
        }
    }
    bail!("its frequency divisors match no Llama-3 RoPE scaling driftui knows")
}

// Token types in `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Llama-3's pre-tokenizer split (tokenizer.json of Llama-3.x).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2/Qwen3's pre-tokenizer split (single digits).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Rebuild the Hugging Face tokenizer a GGUF file was converted from, and the
/// `tokenizer_config.json` fields that go with it.
fn tokenizer_from_meta(meta: &Meta, tokens: &[String]) -> Result<(tokenizers::Tokenizer, Value)> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

    let shown = meta.file.display();
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!(
            "the GGUF file {shown} has a \"{model}\" tokenizer; driftui rebuilds byte-level BPE (\"gpt2\") \
             tokenizers only — use the model's Hugging Face directory or hf: source instead"
        );
    }
    let pre = meta
        .opt_string("tokenizer.ggml.pre")?
        .unwrap_or_else(|| "default".into());
    let merges_raw = meta.string_array("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match meta.map.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(_) => meta
            .array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| match v {
                GValue::I32(x) => Ok(*x as i64),
                GValue::U32(x) => Ok(*x as i64),
                GValue::I8(x) => Ok(*x as i64),
                GValue::U8(x) => Ok(*x as i64),
                other => bail!("tokenizer.ggml.token_type in {shown} holds {other:?}"),
            })
            .collect::<Result<_>>()?,
    };
    if types.len() != tokens.len() {
        bail!(
            "the GGUF file {shown} has {} tokens but {} token types",
            tokens.len(),
            types.len()
        );
    }
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        // A duplicated token keeps its first id, as llama.cpp's map does.
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let merges: Vec<(String, String)> = merges_raw
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| {
                    format!("tokenizer.ggml.merges[{i}] in {shown} is not \"a b\": {m:?}")
                })
        })
        .collect::<Result<_>>()?;
    let (pre_tokenizer, ignore_merges, nfc): (PreTokenizerWrapper, bool, bool) = match pre.as_str()
    {
        "smollm" => (
            Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            false,
            false,
        ),
        "gpt-2" | "gpt2" | "default" => (ByteLevel::new(false, true, true).into(), false, false),
        "llama-bpe" | "llama3" => (
            Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(LLAMA3_SPLIT.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow!("{e}"))?
                .into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            true,
            false,
        ),
        "qwen2" => (
            Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow!("{e}"))?
                .into(),
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
            false,
            true,
        ),
        other => bail!(
            "the GGUF file {shown} uses the pre-tokenizer \"{other}\", which driftui cannot rebuild \
             (it knows smollm, gpt-2, llama-bpe and qwen2); use the model's Hugging Face directory or hf: source"
        ),
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| anyhow!("the BPE vocabulary of {shown} does not build: {e}"))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    if nfc {
        tok.with_normalizer(Some(tokenizers::normalizers::unicode::NFC))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_USER_DEFINED)
        .map(|(s, _)| AddedToken::from(s.clone(), false).normalized(false))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow!("the special tokens of {shown}: {e}"))?;
    tok.add_tokens(user)
        .map_err(|e| anyhow!("the added tokens of {shown}: {e}"))?;

    let token_at = |key: &str| -> Result<Option<String>> {
        Ok(match meta.opt_u64(key)? {
            None => None,
            Some(id) => Some(
                tokens
                    .get(id as usize)
                    .with_context(|| format!("{key} = {id} in {shown} is outside the vocabulary"))?
                    .clone(),
            ),
        })
    };
    let bos = token_at("tokenizer.ggml.bos_token_id")?;
    let eos = token_at("tokenizer.ggml.eos_token_id")?;
    let pad = token_at("tokenizer.ggml.padding_token_id")?;
    let add_bos = meta
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(false);
    if add_bos {
        let b = bos
            .clone()
            .with_context(|| format!("{shown} asks for a BOS token but names none"))?;
        let id = tok
            .token_to_id(&b)
            .with_context(|| format!("the BOS token {b:?} is not in the vocabulary of {shown}"))?;
        let post = tokenizers::processors::template::TemplateProcessing::builder()
            .try_single(format!("{b} $A"))
            .and_then(|t| t.try_pair(format!("{b} $A {b} $B")))
            .map_err(|e| anyhow!("{e}"))?
            .special_tokens(vec![(b.clone(), id)])
            .build()
            .map_err(|e| anyhow!("{e}"))?;
        tok.with_post_processor(Some(post));
    }
    let mut config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "clean_up_tokenization_spaces": false,
        "model_max_length": meta
            .opt_u64(&format!("{}.context_length", meta.string("general.architecture")?))?
            .unwrap_or(4096),
    });
    for (k, v) in [
        ("bos_token", &bos),
        ("eos_token", &eos),
        ("pad_token", &pad),
    ] {
        if let Some(v) = v {
            config[k] = json!(v);
        }
    }
    if let Some(t) = meta.opt_string("tokenizer.chat_template")? {
        config["chat_template"] = json!(t);
    }
    Ok((tok, config))
}

/// The ggml types candle dequantises.
const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K";

/// llama.cpp's name of a ggml tensor type.
pub fn ggml_type_name(ty: u32) -> String {
    let name = match ty {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2",
        5 => "Q4_3",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("an unknown type {ty}"),
    };
    name.to_string()
}

/// Whether candle reads this ggml type (the types of its `GgmlDType`).
fn is_supported(ty: u32) -> bool {
    matches!(ty, 0..=3 | 6..=15 | 30)
}

/// Walk a GGUF header (metadata, then tensor infos) and return the first
/// tensor whose type candle cannot read.
fn first_unknown_tensor_type(path: &Path) -> Result<Option<(String, u32)>> {
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Ok(None);
    }
    let version = read_u32(&mut r)?;
    let wide = version >= 2;
    let len = |r: &mut std::io::BufReader<std::fs::File>| -> Result<u64> {
        if wide {
            read_u64(r)
        } else {
            Ok(read_u32(r)? as u64)
        }
    };
    let n_tensors = len(&mut r)?;
    let n_kv = len(&mut r)?;
    fn skip_value<R: Read + Seek>(r: &mut R, ty: u32, wide: bool, depth: usize) -> Result<()> {
        if depth > 4 {
            bail!("nested arrays too deep");
        }
        let fixed = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => 0,
        };
        if fixed > 0 {
            r.seek(std::io::SeekFrom::Current(fixed))?;
            return Ok(());
        }
        let rd_len = |r: &mut R| -> Result<u64> {
            if wide {
                read_u64(r)
            } else {
                Ok(read_u32(r)? as u64)
            }
        };
        match ty {
            8 => {
                let n = rd_len(r)?;
                r.seek(std::io::SeekFrom::Current(n as i64))?;
            }
            9 => {
                let inner = read_u32(r)?;
                let n = rd_len(r)?;
                for _ in 0..n {
                    skip_value(r, inner, wide, depth + 1)?;
                }
            }
            other => bail!("unknown metadata value type {other}"),
        }
        Ok(())
    }
    for _ in 0..n_kv {
        let n = len(&mut r)?;
        r.seek(std::io::SeekFrom::Current(n as i64))?;
        let ty = read_u32(&mut r)?;
        skip_value(&mut r, ty, wide, 0)?;
    }
    for _ in 0..n_tensors {
        let n = len(&mut r)? as usize;
        if n > 1 << 16 {
            bail!("a tensor name of {n} bytes");
        }
        let mut name = vec![0u8; n];
        r.read_exact(&mut name)?;
        let dims = read_u32(&mut r)?;
        for _ in 0..dims {
            len(&mut r)?;
        }
        let ty = read_u32(&mut r)?;
        let _offset = read_u64(&mut r)?;
        if !is_supported(ty) {
            return Ok(Some((String::from_utf8_lossy(&name).into_owned(), ty)));
        }
    }
    Ok(None)
}

fn read_u32<R: Read>(r: &mut R) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64<R: Read>(r: &mut R) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp's convert script: reshape(n_head, 2, rows/n_head/2, in)
        // then swap axes 1 and 2. Row r of head h, half s, pair p lands at
        // h*rows_per_head + p*2 + s.
        let (heads, hd, inp) = (3usize, 8usize, 5usize);
        let w = Tensor::arange(0f32, (heads * hd * inp) as f32, &Device::Cpu)
            .unwrap()
            .reshape((heads * hd, inp))
            .unwrap();
        let p = permute(&w, heads).unwrap();
        let wv: Vec<Vec<f32>> = w.to_vec2().unwrap();
        let pv: Vec<Vec<f32>> = p.to_vec2().unwrap();
        for h in 0..heads {
            for s in 0..2 {
                for q in 0..hd / 2 {
                    let src = h * hd + s * hd / 2 + q;
                    let dst = h * hd + q * 2 + s;
                    assert_eq!(pv[dst], wv[src]);
                }
            }
        }
        let back = unpermute(&p, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), wv);
    }

    #[test]
    fn tensor_names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.12.attn_output.weight").unwrap(),
            "model.layers.12.self_attn.o_proj.weight"
        );
        assert_eq!(
            hf_name("blk.0.attn_q.bias").unwrap(),
            "model.layers.0.self_attn.q_proj.bias"
        );
        assert_eq!(
            hf_name("token_embd.weight").unwrap(),
            "model.embed_tokens.weight"
        );
        assert!(hf_name("blk.0.ffn_gate_exps.weight").is_none());
        assert!(hf_name("blk.x.attn_q.weight").is_none());
    }

    #[test]
    fn ggml_types_are_named() {
        assert_eq!(ggml_type_name(20), "IQ4_NL");
        assert_eq!(ggml_type_name(3), "Q4_1");
        assert!(is_supported(14) && is_supported(30));
        assert!(!is_supported(20) && !is_supported(4));
    }
}
