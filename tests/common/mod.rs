//! Helpers the integration tests share: the binary, the demo assets, small
//! recipes and probe files, runs, and model outputs to compare.

// Every test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use driftui::model::{load_model, ForwardOptions, LoadOptions, LoadedModel, Mode};
use driftui::train::{self, RunOutcome, TrainOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The project's `assets/` (demo data sets, probe sets).
pub fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// Run the `driftui` binary to its end.
pub fn driftui(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftui"))
        .args(args)
        .output()
        .expect("run driftui")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A valid recipe: three SFT steps of `builtin:micro` on the demo data,
/// runs written under `runs`.
pub fn micro_sft_recipe(name: &str, runs: &Path) -> String {
    format!(
        r#"[run]
name = "{name}"
seed = 1
output_dir = "{out}"

[model]
source = "builtin:micro"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{data}"
steps = 3
batch_size = 4
lr = 1e-3
max_len = 64
"#,
        out = runs.display(),
        data = assets().join("demo/sft.jsonl").display()
    )
}

/// A probe set file of (topic, question) lines at `path`.
pub fn write_probes(path: &Path, questions: &[(&str, &str)]) {
    let text: String = questions
        .iter()
        .map(|(topic, question)| {
            format!(
                "{}\n",
                serde_json::json!({"topic": topic, "question": question})
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Training `recipe` headless into `output` (default: the recipe's
/// output directory), without progress lines.
pub fn train_options(recipe: &Path, output: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        recipe: recipe.to_path_buf(),
        output,
        resume: None,
        progress: false,
        inject_nan_at_step: None,
        inject_disk_fault: None,
    }
}

/// Prepare and run `opts` to the end on this thread.
pub fn train_to_end(opts: &TrainOptions) -> RunOutcome {
    let prep = train::prepare(opts).unwrap();
    let (_tx, rx) = std::sync::mpsc::channel();
    train::run(prep, rx, None).unwrap()
}

/// The built-in micro model, its weights drawn from `seed`.
pub fn micro(seed: u64) -> LoadedModel {
    load_model(
        "builtin:micro",
        &LoadOptions {
            seed,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A model's logits for one fixed token sequence (ids every built-in model
/// has).
pub fn logits(m: &LoadedModel) -> Tensor {
    let ids = Tensor::new(&[[7u32, 100, 31, 1500, 9, 2, 64]], &Device::Cpu).unwrap();
    m.decoder()
        .unwrap()
        .forward(&ids, Mode::Fast, ForwardOptions::default())
        .unwrap()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The real SmolLM2-135M-Instruct GGUF, fetched by `scripts/fetch-smollm2.sh`.
pub fn smollm2_path() -> Option<PathBuf> {
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

/// SmolLM2 loaded once per test binary; `None` (with a message) when the
/// file is absent.
pub fn smollm2() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    let m = MODEL
        .get_or_init(|| {
            let p = smollm2_path()?;
            Some(
                load_model(&format!("gguf:{}", p.display()), &LoadOptions::default())
                    .expect("the SmolLM2 GGUF loads"),
            )
        })
        .as_ref();
    if m.is_none() {
        // Say so in every test that skips, not only the first.
        smollm2_path();
    }
    m
}

/// ‖a − b‖ / ‖b‖ in f64.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let num = (&a - &b).unwrap().sqr().unwrap().sum_all().unwrap();
    let den = b.sqr().unwrap().sum_all().unwrap();
    let (num, den) = (
        num.to_scalar::<f64>().unwrap().sqrt(),
        den.to_scalar::<f64>().unwrap().sqrt(),
    );
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// The same trainable tensors, each within `tol` relative difference
/// (‖a − b‖ / ‖b‖) of the reference `want`.
pub fn assert_same_gradients(
    what: &str,
    got: &BTreeMap<String, Tensor>,
    want: &BTreeMap<String, Tensor>,
    tol: f64,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the same tensors get gradients"
    );
    let mut worst = (0.0, "");
    for (name, w) in want {
        let d = rel_diff(&got[name], w);
        if d > worst.0 {
            worst = (d, name.as_str());
        }
        assert!(d <= tol, "{what}: {name} differs by {d:.3e} (relative)");
    }
    eprintln!(
        "{what}: worst tensor differs by {:.2e} ({})",
        worst.0, worst.1
    );
}

/// ‖t‖ in f64.
pub fn l2(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

/// A policy over the model's weights converted to `dtype` (f64: the
/// reference the f32 paths are measured against): every weight trainable,
/// or LoRA adapters (by PEFT name) over frozen weights.
pub fn policy_in(
    model: &LoadedModel,
    dtype: DType,
    lora: Option<(&driftui::recipe::LoraConfig, &BTreeMap<String, Tensor>)>,
) -> driftui::train::policy::Policy {
    policy_from(&model.cfg, &model.weights.tensors, dtype, lora)
}

/// [`policy_in`] over named weights.
pub fn policy_from(
    cfg: &driftui::model::ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    dtype: DType,
    lora: Option<(&driftui::recipe::LoraConfig, &BTreeMap<String, Tensor>)>,
) -> driftui::train::policy::Policy {
    use driftui::model::lora::{peft_name, Lora};
    let mut vars = BTreeMap::new();
    let mut tensors = driftui::model::TensorMap::new("test");
    for (name, t) in weights {
        // A copy: the policy's variables never share the caller's storage.
        let t = t.to_dtype(dtype).unwrap().copy().unwrap();
        if lora.is_some() {
            tensors.tensors.insert(name.clone(), t);
        } else {
            let v = candle_core::Var::from_tensor(&t).unwrap();
            tensors.tensors.insert(name.clone(), v.as_tensor().clone());
            vars.insert(name.clone(), v);
        }
    }
    let mut decoder = driftui::model::Decoder::from_weights(cfg, &mut tensors).unwrap();
    if let Some((lcfg, adapters)) = lora {
        for (module, lin) in decoder.linears_mut() {
            let mut var = |which: char| {
                let name = peft_name(&module, which);
                let v = candle_core::Var::from_tensor(&adapters[&name].to_dtype(dtype).unwrap())
                    .unwrap();
                vars.insert(name, v.clone());
                v.as_tensor().clone()
            };
            let (a, b) = (var('A'), var('B'));
            lin.lora = Some(Lora {
                a,
                b,
                scale: lcfg.alpha / lcfg.rank as f64,
                dropout: 0.0,
                rng: std::sync::Arc::new(std::sync::Mutex::new(
                    <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
                )),
            });
        }
    }
    driftui::train::policy::Policy {
        decoder,
        vars,
        lora: lora.map(|(c, _)| c.clone()),
    }
}

/// A safetensors file's tensors as f32 values, by name in order.
pub fn safetensors_f32(p: &Path) -> Vec<(String, Vec<f32>)> {
    let map = candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = map
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
