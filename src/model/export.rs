//! Snapshots as models: a LoRA snapshot loads as its base with the adapters
//! merged in, and `driftui export` writes any snapshot as a Hugging Face
//! model directory (the original `config.json` fields and tensor names,
//! tokenizer files, safetensors shards with an index when large) that
//! transformers and vLLM load.

use super::lora::{self, source_of_peft_base};
use super::source::{load_dir, load_model, LoadOptions, LoadedModel, TokenizerFiles};
use crate::data::TextTokenizer;
use crate::recipe::LoraConfig;
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a LoRA snapshot's `adapter_config.json` says.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    pub lora: LoraConfig,
    /// The driftui source of the base model.
    pub base_source: String,
}

/// Read `adapter_config.json` (PEFT's fields).
pub fn read_adapter_config(dir: &Path) -> Result<AdapterConfig> {
    let p = dir.join("adapter_config.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", p.display()))?;
    let field = |k: &str| {
        v.get(k)
            .with_context(|| format!("{} lacks \"{k}\"", p.display()))
    };
    let rank = field("r")?
        .as_u64()
        .with_context(|| format!("\"r\" in {} is not a whole number", p.display()))?
        as usize;
    let alpha = field("lora_alpha")?
        .as_f64()
        .with_context(|| format!("\"lora_alpha\" in {} is not a number", p.display()))?;
    if rank == 0 {
        bail!("{} says r = 0", p.display());
    }
    let targets: Vec<String> = match field("target_modules")? {
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("target_modules in {} holds {t}", p.display()))
            })
            .collect::<Result<_>>()?,
        Value::String(s) => vec![s.clone()],
        other => bail!("target_modules in {} is {other}", p.display()),
    };
    let base = field("base_model_name_or_path")?
        .as_str()
        .with_context(|| format!("base_model_name_or_path in {} is not a string", p.display()))?;
    let revision = v.get("revision").and_then(Value::as_str);
    Ok(AdapterConfig {
        lora: LoraConfig {
            rank,
            alpha,
            dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0) as f32,
            targets,
        },
        base_source: source_of_peft_base(base, revision),
    })
}

/// Load a LoRA snapshot: its base model (from `base_model_name_or_path`, or
/// `base` when given) with the adapters merged into the weights.
pub fn load_lora_snapshot(
    dir: &Path,
    source: &str,
    opts: &LoadOptions,
    base: Option<&str>,
) -> Result<LoadedModel> {
    let ac = read_adapter_config(dir)?;
    let base_source = base.map(str::to_string).unwrap_or(ac.base_source.clone());
    // A built-in base is made from the run's seed.
    let mut base_opts = opts.clone();
    if let Ok(text) = std::fs::read_to_string(dir.join("trainer_state.json")) {
        if let Some(seed) = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("seed").and_then(Value::as_u64))
        {
            base_opts.seed = seed;
        }
    }
    let base_model = load_model(&base_source, &base_opts).with_context(|| {
        format!(
            "loading the base model {base_source} of the LoRA snapshot {} (give another with --base)",
            dir.display()
        )
    })?;
    let adapters = lora::load_adapters(dir, &base_model.weights)?;
    for name in adapters.keys() {
        let module = name
            .strip_prefix("base_model.model.")
            .and_then(|n| {
                n.strip_suffix(".lora_A.weight")
                    .or_else(|| n.strip_suffix(".lora_B.weight"))
            })
            .with_context(|| {
                format!(
                    "{}: {name} is not a PEFT LoRA tensor name",
                    dir.join("adapter_model.safetensors").display()
                )
            })?;
        if !base_model
            .weights
            .tensors
            .contains_key(&format!("{module}.weight"))
        {
            bail!(
                "the adapter {name} in {} has no layer {module} in the base model {base_source}",
                dir.display()
            );
        }
    }
    let weights = lora::merge(&base_model.weights, &adapters, &ac.lora)?;
    // The snapshot's own tokenizer files (the base's, as training saw them).
    let tokenizer_files = match std::fs::read_to_string(dir.join("tokenizer.json")) {
        Ok(tokenizer_json) => {
            let tokenizer_config = match std::fs::read_to_string(dir.join("tokenizer_config.json"))
            {
                Ok(t) => serde_json::from_str(&t).with_context(|| {
                    format!(
                        "{} is not valid JSON",
                        dir.join("tokenizer_config.json").display()
                    )
                })?,
                Err(_) => Value::Object(Default::default()),
            };
            TokenizerFiles {
                tokenizer_json,
                tokenizer_config,
            }
        }
        Err(_) => base_model.tokenizer_files.clone(),
    };
    let tokenizer = TextTokenizer::from_json(
        &tokenizer_files.tokenizer_json,
        Some(&tokenizer_files.tokenizer_config),
        &opts.template,
    )
    .with_context(|| format!("the tokenizer in {}", dir.display()))?;
    let model = LoadedModel {
        cfg: base_model.cfg.clone(),
        weights,
        tokenizer,
        source: source.to_string(),
        base_ref: std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        config_json: base_model.config_json.clone(),
        tokenizer_files,
    };
    model.decoder()?;
    Ok(model)
}

/// How to write an export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Base model of a LoRA snapshot, instead of the one its adapter names.
    pub base: Option<String>,
    /// Largest safetensors file; larger models are sharded with an index.
    pub max_shard_bytes: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            base: None,
            max_shard_bytes: 5_000_000_000,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub dir: PathBuf,
    pub tensors: usize,
    pub files: Vec<String>,
    pub merged_lora: bool,
}

/// Write `snapshot` (full or LoRA) as a Hugging Face model directory `out`.
pub fn export(snapshot: &Path, out: &Path, opts: &ExportOptions) -> Result<Exported> {
    if !snapshot.is_dir() {
        bail!("{} is not a snapshot directory", snapshot.display());
    }
    if snapshot.join("manifest.json").exists() {
        crate::rundir::snapshot::verify(snapshot)?;
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "the export directory {} exists and is not empty",
            out.display()
        );
    }
    let load_opts = LoadOptions {
        template: crate::data::TemplateChoice::None,
        base_dir: snapshot.to_path_buf(),
        ..Default::default()
    };
    let is_lora = snapshot.join("adapter_config.json").is_file();
    let model = if is_lora {
        load_lora_snapshot(
            snapshot,
            &snapshot.display().to_string(),
            &load_opts,
            opts.base.as_deref(),
        )?
    } else {
        load_dir(snapshot, &snapshot.display().to_string(), &load_opts)?
    };
    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("export")
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the leftover {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let files = write_model_dir(&model, &tmp, opts.max_shard_bytes)?;
    if out.exists() {
        std::fs::remove_dir(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move the export into {}", out.display()))?;
    Ok(Exported {
        dir: out.to_path_buf(),
        tensors: model.weights.tensors.len(),
        files,
        merged_lora: is_lora,
    })
}

/// Write config, weights (sharded past `max_shard_bytes`) and tokenizer files.
fn write_model_dir(model: &LoadedModel, dir: &Path, max_shard_bytes: u64) -> Result<Vec<String>> {
    let dtype = model
        .weights
        .tensors
        .values()
        .next()
        .map(|t| t.dtype())
        .context("the model has no tensors")?;
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(name.to_string());
        Ok(())
    };
    write(
        "config.json",
        &serde_json::to_vec_pretty(&model.hf_config_json(dtype))?,
    )?;
    write(
        "tokenizer.json",
        model.tokenizer_files.tokenizer_json.as_bytes(),
    )?;
    write(
        "tokenizer_config.json",
        &serde_json::to_vec_pretty(&model.tokenizer_files.tokenizer_config)?,
    )?;
    let mut generation = json!({});
    if let Some(b) = model.cfg.bos_token_id {
        generation["bos_token_id"] = json!(b);
    }
    match model.cfg.eos_token_ids.as_slice() {
        [] => {}
        [one] => generation["eos_token_id"] = json!(one),
        many => generation["eos_token_id"] = json!(many),
    }
    write(
        "generation_config.json",
        &serde_json::to_vec_pretty(&generation)?,
    )?;

    // Shards in name order, each under the size limit (a tensor larger than
    // the limit gets a shard of its own).
    let mut shards: Vec<BTreeMap<String, Tensor>> = vec![BTreeMap::new()];
    let mut size = 0u64;
    let mut total = 0u64;
    for (name, t) in &model.weights.tensors {
        let bytes = (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        total += bytes;
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(BTreeMap::new());
            size = 0;
        }
        size += bytes;
        if let Some(last) = shards.last_mut() {
            last.insert(name.clone(), t.clone());
        }
    }
    if shards.len() == 1 {
        super::weights::save_tensors(&shards[0], &dir.join("model.safetensors"))?;
        files.push("model.safetensors".into());
    } else {
        let n = shards.len();
        let mut weight_map = serde_json::Map::new();
        for (i, shard) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            super::weights::save_tensors(shard, &dir.join(&file))?;
            for name in shard.keys() {
                weight_map.insert(name.clone(), json!(file));
            }
            files.push(file);
        }
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let p = dir.join("model.safetensors.index.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&index)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        files.push("model.safetensors.index.json".into());
    }
    Ok(files)
}
