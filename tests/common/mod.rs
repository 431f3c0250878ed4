//! Helpers the integration tests share: the binary, the demo assets, small
//! recipes and probe files, runs, and model outputs to compare.

// Every test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use driftui::model::{load_model, ForwardOptions, LoadOptions, LoadedModel, Mode};
use driftui::train::{self, RunOutcome, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
