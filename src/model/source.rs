//! Where a model comes from: `builtin:NAME`, or a local directory in Hugging
//! Face layout (`config.json`, `*.safetensors` with an index when sharded,
//! `tokenizer.json`, `tokenizer_config.json`).

use super::config::ModelConfig;
use super::weights::{init_weights, TensorMap};
use super::{builtin, Decoder};
use crate::data::{TemplateChoice, TextTokenizer};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// Seed of a built-in model's initial weights.
    pub seed: u64,
    pub template: TemplateChoice,
    /// Relative paths are resolved against this directory (the recipe's).
    pub base_dir: PathBuf,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            seed: 0,
            template: TemplateChoice::Model,
            base_dir: PathBuf::from("."),
        }
    }
}

/// A model ready to build decoders from.
pub struct LoadedModel {
    pub cfg: ModelConfig,
    pub weights: TensorMap,
    pub tokenizer: TextTokenizer,
    /// The source as the recipe wrote it.
    pub source: String,
    /// The source in a form that loads from anywhere (absolute paths), for
    /// adapters to name their base model.
    pub base_ref: String,
    /// The model's own `config.json` when it has one (directories, the hub):
    /// written back as it was so exports keep every field.
    pub config_json: Option<Value>,
    /// `tokenizer.json` and `tokenizer_config.json` texts, copied into snapshots.
    pub tokenizer_files: TokenizerFiles,
}

/// The tokenizer files a snapshot carries so it loads as a model directory.
#[derive(Debug, Clone)]
pub struct TokenizerFiles {
    pub tokenizer_json: String,
    pub tokenizer_config: Value,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("source", &self.source)
            .field("cfg", &self.cfg)
            .field("tensors", &self.weights.tensors.len())
            .field("tokenizer", &self.tokenizer)
            .finish()
    }
}

impl LoadedModel {
    /// The `config.json` to write next to these weights saved as `dtype`: the
    /// model's own, or one made from the config.
    pub fn hf_config_json(&self, dtype: DType) -> Value {
        let mut v = self
            .config_json
            .clone()
            .unwrap_or_else(|| self.cfg.to_hf_json());
        let name = match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            _ => "float32",
        };
        if let Value::Object(o) = &mut v {
            o.insert("torch_dtype".into(), Value::String(name.into()));
        }
        v
    }

    /// A decoder over these weights (sharing their storage).
    pub fn decoder(&self) -> Result<Decoder> {
        let mut w = self.weights.clone();
        Decoder::from_weights(&self.cfg, &mut w)
    }

    /// A decoder for no-grad scoring of many batches (a probe trace over
    /// checkpoints), or the frozen base of a LoRA run
    /// ([`super::lora::attach`]): [`LoadedModel::decoder`] keeping panel
    /// copies of its weights for products of few rows ([`Decoder::keep_transposed_weights`],
    /// the same numbers, faster) where they fit: when the matrices' f32
    /// size, what the copies can reach, is at most a quarter of the
    /// memory available (`available_memory`).
    pub fn scoring_decoder(&self) -> Result<Decoder> {
        let mut decoder = self.decoder()?;
        if copies_fit(self.matrix_bytes_f32(), available_memory()) {
            decoder.keep_transposed_weights();
        }
        Ok(decoder)
    }

    /// The f32 size of the model's matrices (every weight of two
    /// dimensions): what panel copies of all of them would take.
    pub(crate) fn matrix_bytes_f32(&self) -> u64 {
        self.weights
            .tensors
            .values()
            .filter(|t| t.rank() == 2)
            .map(|t| t.elem_count() as u64 * 4)
            .sum()
    }
}

/// Whether copies of `bytes` fit in a quarter of `available` (unknown: no).
pub(crate) fn copies_fit(bytes: u64, available: Option<u64>) -> bool {
    available.is_some_and(|a| bytes <= a / 4)
}

/// The memory available for new allocations, in bytes: Linux's
/// `MemAvailable`, or less where this process's cgroup (v2) is limited
/// (`memory.max` − `memory.current` + the inactive page cache of
/// `memory.stat`: a container's limit, which
/// `/proc/meminfo` does not show); `None` where it cannot be read.
pub(crate) fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let system = kib * 1024;
    Some(match cgroup_room() {
        Some(room) => system.min(room),
        None => system,
    })
}

/// Room left under this process's cgroup v2 memory limit, if it has one.
fn cgroup_room() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // v2: the one line "0::/path".
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max": no limit
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    // memory.current counts the page cache too (the model file just read):
    // its inactive part is reclaimed before the limit bites.
    let reclaimable: u64 = read("memory.stat")
        .and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("inactive_file "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(reclaimable)))
}

/// Load the model a recipe's `[model] source` names.
pub fn load_model(source: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    if let Some(name) = source.strip_prefix("builtin:") {
        let tokenizer = builtin::tokenizer(&opts.template)?;
        let mut cfg = builtin::config(name, tokenizer.vocab_size())?;
        cfg.eos_token_ids = tokenizer.eos_ids.clone();
        let weights = init_weights(&cfg, opts.seed, &opts.device, opts.dtype)?;
        return Ok(LoadedModel {
            cfg,
            weights,
            tokenizer,
            source: source.to_string(),
            base_ref: source.to_string(),
            config_json: None,
            tokenizer_files: TokenizerFiles {
                tokenizer_json: builtin::TOKENIZER_JSON.to_string(),
                tokenizer_config: builtin::tokenizer_config(),
            },
        });
    }
    if let Some(path) = source.strip_prefix("gguf:") {
        let path = resolve(&opts.base_dir, path);
        if !path.is_file() {
            bail!(
                "model source \"{source}\": the GGUF file {} does not exist",
                path.display()
            );
        }
        return super::gguf::load_gguf(&path, source, opts);
    }
    if let Some(name) = source.strip_prefix("hf:") {
        let dir = super::hub::fetch(name, &super::hub::HubOptions::from_env())
            .with_context(|| format!("model source \"{source}\""))?;
        let mut model = load_dir(&dir, source, opts)?;
        model.base_ref = source.to_string();
        return Ok(model);
    }
    let dir = resolve(&opts.base_dir, source);
    if !dir.exists() {
        bail!(
            "model source \"{source}\": {} does not exist (sources are builtin:tiny, a model directory, hf:ORG/NAME or gguf:PATH)",
            dir.display()
        );
    }
    if dir.join("adapter_config.json").is_file() && !dir.join("model.safetensors").exists() {
        return super::export::load_lora_snapshot(&dir, source, opts, None);
    }
    load_dir(&dir, source, opts)
}

/// Resolve a path relative to `base` unless it is absolute.
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Load a Hugging Face model directory.
pub fn load_dir(dir: &Path, source: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "{} has no readable config.json (a model directory holds config.json, \
             model.safetensors or its shards with model.safetensors.index.json, tokenizer.json)",
            dir.display()
        )
    })?;
    let config_json: Value = serde_json::from_str(&config_text)
        .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
    let cfg = ModelConfig::from_hf_value(&config_json)
        .with_context(|| format!("in {}", config_path.display()))?;
    // Every file is found before the (large) weights are read.
    let shards = safetensors_files(dir)?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer_json = std::fs::read_to_string(&tok_path)
        .with_context(|| format!("{} has no readable tokenizer.json", dir.display()))?;
    let tc_path = dir.join("tokenizer_config.json");
    let mut tokenizer_config: Value = match std::fs::read_to_string(&tc_path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{} is not valid JSON", tc_path.display()))?,
        Err(_) => Value::Object(Default::default()),
    };
    // Newer transformers keep the template in its own file.
    let jinja = dir.join("chat_template.jinja");
    if tokenizer_config.get("chat_template").is_none() && jinja.is_file() {
        let t = std::fs::read_to_string(&jinja)
            .with_context(|| format!("cannot read {}", jinja.display()))?;
        if let Value::Object(o) = &mut tokenizer_config {
            o.insert("chat_template".into(), Value::String(t));
        }
    }
    let tokenizer =
        TextTokenizer::from_json(&tokenizer_json, Some(&tokenizer_config), &opts.template)
            .with_context(|| format!("the tokenizer in {}", dir.display()))?;
    let weights = TensorMap::load_safetensors(&shards, &opts.device, opts.dtype)?;
    let base_ref = std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string();
    let model = LoadedModel {
        cfg,
        weights,
        tokenizer,
        source: source.to_string(),
        base_ref,
        config_json: Some(config_json),
        tokenizer_files: TokenizerFiles {
            tokenizer_json,
            tokenizer_config,
        },
    };
    // Check every tensor is there with the right shape before training starts.
    model
        .decoder()
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok(model)
}

/// The safetensors files of a model directory: the shards its index names, or
/// `model.safetensors`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{} has no weight_map", index.display()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        for p in &paths {
            if !p.exists() {
                bail!(
                    "the shard {} named in {} is missing",
                    p.display(),
                    index.display()
                );
            }
        }
        return Ok(paths);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{} has no model.safetensors (nor a model.safetensors.index.json)",
        dir.display()
    )
}
