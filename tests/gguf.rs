//! `gguf:` sources on small files written here the way llama.cpp's converter
//! writes them (its tensor names, Q/K rows permuted for its RoPE, tokenizer
//! in metadata), and the errors for files driftui cannot use.

use crate::common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::{logits, max_diff, micro};
use driftui::data::TemplateChoice;
use driftui::model::{load_model, LoadOptions, LoadedModel};
use std::path::{Path, PathBuf};

/// llama.cpp's `permute` from convert_hf_to_gguf.py, written independently of
/// the loader: reshape(n_head, 2, rows/n_head/2, in).swapaxes(1, 2).
fn llama_cpp_permute(w: &Tensor, n_head: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((n_head, 2, rows / n_head / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn gguf_name(hf: &str) -> String {
    if hf == "model.embed_tokens.weight" {
        return "token_embd.weight".into();
    }
    if hf == "model.norm.weight" {
        return "output_norm.weight".into();
    }
    if hf == "lm_head.weight" {
        return "output.weight".into();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (l, rest) = rest.split_once('.').unwrap();
    let (rest, suffix) = match rest.strip_suffix(".weight") {
        Some(r) => (r, "weight"),
        None => (rest.strip_suffix(".bias").unwrap(), "bias"),
    };
    let kind = match rest {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        other => panic!("{other}"),
    };
    format!("blk.{l}.{kind}.{suffix}")
}

struct Spec {
    arch: &'static str,
    tokenizer_model: &'static str,
    pre: &'static str,
    chat_template: Option<&'static str>,
    untied_head: Option<Tensor>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            arch: "llama",
            tokenizer_model: "gpt2",
            pre: "smollm",
            chat_template: Some(driftui::data::chat::CHATML),
            untied_head: None,
        }
    }
}

/// Write `m` as llama.cpp would: F32 tensors under ggml names.
fn write_gguf(m: &LoadedModel, spec: &Spec, path: &Path) {
    let cfg = &m.cfg;
    let tj: serde_json::Value = serde_json::from_str(&m.tokenizer_files.tokenizer_json).unwrap();
    let vocab = tj["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); cfg.vocab_size];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let mut types = vec![1i32; cfg.vocab_size];
    for a in tj["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().to_string();
        types[id] = 3;
    }
    let merges: Vec<Value> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = m.as_array().unwrap();
            Value::String(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            ))
        })
        .collect();
    let a = spec.arch;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (
            format!("{a}.block_count"),
            Value::U32(cfg.num_hidden_layers as u32),
        ),
        (
            format!("{a}.context_length"),
            Value::U32(cfg.max_position_embeddings as u32),
        ),
        (
            format!("{a}.embedding_length"),
            Value::U32(cfg.hidden_size as u32),
        ),
        (
            format!("{a}.feed_forward_length"),
            Value::U32(cfg.intermediate_size as u32),
        ),
        (
            format!("{a}.attention.head_count"),
            Value::U32(cfg.num_attention_heads as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(cfg.num_key_value_heads as u32),
        ),
        (
            format!("{a}.rope.freq_base"),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            "tokenizer.ggml.model".into(),
            Value::String(spec.tokenizer_model.into()),
        ),
        ("tokenizer.ggml.pre".into(), Value::String(spec.pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    if let Some(t) = spec.chat_template {
        meta.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    // llama.cpp permutes Q/K rows for Llama only (Qwen uses NeoX RoPE).
    let permute = spec.arch == "llama";
    for (name, w) in &m.weights.tensors {
        let w = if !permute {
            w.clone()
        } else if name.ends_with("q_proj.weight") {
            llama_cpp_permute(w, cfg.num_attention_heads)
        } else if name.ends_with("k_proj.weight") {
            llama_cpp_permute(w, cfg.num_key_value_heads)
        } else {
            w.clone()
        };
        tensors.push((
            gguf_name(name),
            QTensor::quantize(&w, GgmlDType::F32).unwrap(),
        ));
    }
    if let Some(head) = &spec.untied_head {
        tensors.push((
            "output.weight".into(),
            QTensor::quantize(head, GgmlDType::F32).unwrap(),
        ));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta_refs, &tensor_refs).unwrap();
}

fn load(path: &Path, template: TemplateChoice) -> anyhow::Result<LoadedModel> {
    load_model(
        &format!("gguf:{}", path.display()),
        &LoadOptions {
            template,
            ..Default::default()
        },
    )
}

#[test]
fn a_llama_cpp_layout_file_loads_as_the_original_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = micro(3);
    for untied in [false, true] {
        let path = dir.path().join(format!("m-{untied}.gguf"));
        let mut want = micro(3);
        let spec = Spec {
            untied_head: untied.then(|| {
                let h = (want.weights.tensors["model.embed_tokens.weight"].clone() * 0.5).unwrap();
                want.cfg.tie_word_embeddings = false;
                want.weights
                    .tensors
                    .insert("lm_head.weight".into(), h.clone());
                h
            }),
            ..Default::default()
        };
        write_gguf(&m, &spec, &path);
        let g = load(&path, TemplateChoice::Model).unwrap();
        assert_eq!(g.cfg.tie_word_embeddings, !untied);
        assert_eq!(g.cfg.hidden_size, want.cfg.hidden_size);
        assert_eq!(g.cfg.num_key_value_heads, want.cfg.num_key_value_heads);
        assert_eq!(g.cfg.eos_token_ids, vec![2]);
        assert_eq!(g.cfg.bos_token_id, Some(1));
        assert_eq!(
            g.weights.tensors.keys().collect::<Vec<_>>(),
            want.weights.tensors.keys().collect::<Vec<_>>()
        );
        for (name, w) in &want.weights.tensors {
            assert_eq!(max_diff(w, &g.weights.tensors[name]), 0.0, "{name}");
        }
        assert_eq!(max_diff(&logits(&g), &logits(&want)), 0.0);
        // The tokenizer's specials and chat template came from the metadata.
        assert_eq!(g.tokenizer.eos_ids, vec![2]);
        assert_eq!(g.tokenizer.pad_id, 0);
        let ids = g
            .tokenizer
            .encode("<|im_start|>user\nhi 42<|im_end|>")
            .unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), 2);
        assert_eq!(
            g.tokenizer.decode(&ids, false).unwrap(),
            "<|im_start|>user\nhi 42<|im_end|>"
        );
        // Digits one by one (the smollm pre-tokenizer).
        let four = g.tokenizer.encode("4").unwrap();
        let two = g.tokenizer.encode("2").unwrap();
        assert_eq!(g.tokenizer.encode("42").unwrap(), [four, two].concat());
        let prompt = g
            .tokenizer
            .prompt_text(&[driftui::data::Message::new("user", "Hi")])
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // The snapshot copy of the tokenizer is a tokenizer.json that loads.
        let back =
            tokenizers::Tokenizer::from_bytes(g.tokenizer_files.tokenizer_json.as_bytes()).unwrap();
        assert_eq!(
            back.encode("hi 42 there", false).unwrap().get_ids(),
            g.tokenizer.encode("hi 42 there").unwrap()
        );
    }
}

/// Qwen2 (q/k/v biases) and Qwen3 (q/k norms) files: no Q/K permutation,
/// architecture-prefixed metadata.
#[test]
fn qwen_files_load_as_the_original_model() {
    use driftui::model::weights::init_weights;
    use driftui::model::Architecture;
    let dir = tempfile::tempdir().unwrap();
    for (arch, architecture, bias) in [
        ("qwen3", Architecture::Qwen3, false),
        ("qwen2", Architecture::Qwen2, true),
    ] {
        let mut m = micro(3);
        m.cfg.architecture = architecture;
        m.cfg.attention_bias = bias;
        m.weights = init_weights(&m.cfg, 9, &Device::Cpu, DType::F32).unwrap();
        // Non-trivial norms and biases, so a misplaced one shows.
        let names: Vec<String> = m.weights.tensors.keys().cloned().collect();
        for (i, n) in names.iter().enumerate() {
            if n.ends_with(".bias") || n.contains("q_norm") || n.contains("k_norm") {
                let t = &m.weights.tensors[n];
                let r = Tensor::rand(-0.5f32, 0.5, t.shape(), &Device::Cpu).unwrap();
                let v = (t + r * (1.0 + i as f64 * 1e-3)).unwrap();
                m.weights.tensors.insert(n.clone(), v);
            }
        }
        let path = dir.path().join(format!("{arch}.gguf"));
        write_gguf(
            &m,
            &Spec {
                arch,
                ..Default::default()
            },
            &path,
        );
        let g = load(&path, TemplateChoice::Model).unwrap();
        assert_eq!(g.cfg.architecture, architecture);
        assert_eq!(g.cfg.attention_bias, bias);
        assert_eq!(g.weights.tensors.len(), m.weights.tensors.len());
        for (name, w) in &m.weights.tensors {
            assert_eq!(max_diff(w, &g.weights.tensors[name]), 0.0, "{arch} {name}");
        }
        assert_eq!(max_diff(&logits(&g), &logits(&m)), 0.0, "{arch}");
    }
}

#[test]
fn dtypes_follow_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let m = micro(3);
    write_gguf(&m, &Spec::default(), &path);
    let f32_logits = logits(&load(&path, TemplateChoice::Model).unwrap());
    for dtype in [DType::BF16, DType::F16] {
        let g = load_model(
            &format!("gguf:{}", path.display()),
            &LoadOptions {
                dtype,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(g.weights.tensors.values().all(|t| t.dtype() == dtype));
        let l = logits(&g);
        assert_eq!(l.dtype(), DType::F32);
        let d = max_diff(&l, &f32_logits);
        assert!(d < 0.05, "{dtype:?}: {d}");
    }
}

#[test]
fn a_file_without_a_chat_template_follows_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_gguf(
        &micro(3),
        &Spec {
            chat_template: None,
            ..Default::default()
        },
        &path,
    );
    let err = format!("{:#}", load(&path, TemplateChoice::Model).unwrap_err());
    assert!(
        err.contains("has no chat template") && err.contains("chat_template"),
        "{err}"
    );
    let plain = load(&path, TemplateChoice::None).unwrap();
    assert!(plain.tokenizer.template.is_none());
    let custom = load(
        &path,
        TemplateChoice::Custom("{% for m in messages %}[{{ m.content }}]{% endfor %}".into()),
    )
    .unwrap();
    assert_eq!(
        custom
            .tokenizer
            .prompt_text(&[driftui::data::Message::new("user", "x")])
            .unwrap(),
        "[x]"
    );
}

fn expect_error(spec: Spec, patch: Option<(&str, u32)>, wants: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    write_gguf(&micro(3), &spec, &path);
    if let Some((tensor, ty)) = patch {
        // Rewrite the tensor's ggml type in its header entry: name, n_dims
        // (u32), dims (2 × u64), then the type (u32).
        let mut bytes = std::fs::read(&path).unwrap();
        let pos = bytes
            .windows(tensor.len())
            .position(|w| w == tensor.as_bytes())
            .unwrap();
        let at = pos + tensor.len() + 4 + 16;
        bytes[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
    }
    let err = format!("{:#}", load(&path, TemplateChoice::Model).unwrap_err());
    eprintln!("{err}");
    for w in wants {
        assert!(err.contains(w), "missing {w:?} in: {err}");
    }
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn unusable_files_are_refused_with_the_reason() {
    expect_error(
        Spec {
            arch: "gpt2",
            ..Default::default()
        },
        None,
        &["\"gpt2\" model", "llama, qwen2 and qwen3"],
    );
    expect_error(
        Spec::default(),
        Some(("blk.1.attn_q.weight", 20)),
        &["blk.1.attn_q.weight", "IQ4_NL", "cannot dequantise"],
    );
    expect_error(
        Spec {
            pre: "falcon",
            ..Default::default()
        },
        None,
        &["pre-tokenizer \"falcon\""],
    );
    expect_error(
        Spec {
            tokenizer_model: "llama",
            ..Default::default()
        },
        None,
        &["\"llama\" tokenizer"],
    );
    let missing = PathBuf::from("/nonexistent/model.gguf");
    let err = format!("{:#}", load(&missing, TemplateChoice::Model).unwrap_err());
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("does not exist"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let err = format!("{:#}", load(&junk, TemplateChoice::Model).unwrap_err());
    assert!(err.contains("not a readable GGUF file"), "{err}");
}
