//! LoRA: only the adapters train, snapshots hold PEFT's layout, and a LoRA
//! snapshot, its merged export and the live adapted decoder give the same
//! logits; the export keeps the original model's config.json and names.

use crate::common;

use candle_core::{Device, Tensor};
use common::{logits, max_diff, micro, train_options};
use driftui::data::{SeqBatch, TokenSeq};
use driftui::events::{RunStatus, Stance};
use driftui::model::export::{export, ExportOptions};
use driftui::model::seq_logps;
use driftui::model::{load_model, lora, ForwardOptions, LoadOptions, Mode};
use driftui::recipe::LoraConfig;
use driftui::train;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn all_linear(rank: usize) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        targets: vec!["all-linear".into()],
    }
}

fn batch(vocab: usize) -> SeqBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let seqs: Vec<TokenSeq> = (0..3)
        .map(|r| {
            let n = 9 + r * 3;
            TokenSeq {
                ids: (0..n).map(|_| rng.random_range(3..vocab as u32)).collect(),
                trained: (0..n).map(|i| i >= 3).collect(),
            }
        })
        .collect();
    let refs: Vec<&TokenSeq> = seqs.iter().collect();
    SeqBatch::new(&refs, 0, &Device::Cpu).unwrap()
}

fn norm(t: &Tensor) -> f32 {
    t.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap()
}

#[test]
fn gradients_reach_every_adapter_and_no_base_weight() {
    let m = micro(0);
    let (decoder, vars) = lora::attach(&m, &all_linear(4), 1, None).unwrap();
    let layers = m.cfg.num_hidden_layers;
    assert_eq!(vars.len(), 2 * 7 * layers);
    let b = batch(m.cfg.vocab_size);
    let grads = |d: &driftui::model::Decoder| {
        let lp = seq_logps(d, &b, Mode::Train).unwrap();
        lp.tokens
            .mean_all()
            .unwrap()
            .neg()
            .unwrap()
            .backward()
            .unwrap()
    };
    // At init B = 0, so (as in PEFT) only B gets a non-zero gradient.
    let g = grads(&decoder);
    for (name, v) in &vars {
        let n = norm(
            g.get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}")),
        );
        if name.contains("lora_B") {
            assert!(n > 0.0 && n.is_finite(), "{name}: {n}");
        } else {
            assert_eq!(n, 0.0, "{name} before B moved");
        }
    }
    for (name, w) in &m.weights.tensors {
        assert!(g.get(w).is_none(), "the base weight {name} got a gradient");
    }
    // Once B has moved, every adapter tensor gets a gradient.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for (name, v) in &vars {
        if name.contains("lora_B") {
            let dims = v.as_tensor().dims().to_vec();
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
            v.set(&Tensor::from_vec(data, dims, &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let g = grads(&decoder);
    for (name, v) in &vars {
        let n = norm(g.get(v.as_tensor()).unwrap());
        assert!(n > 0.0 && n.is_finite(), "{name}: {n}");
    }
    for (name, w) in &m.weights.tensors {
        assert!(g.get(w).is_none(), "the base weight {name} got a gradient");
    }
}

/// The built-in micro model written as an original Hugging Face directory,
/// with config.json fields driftui itself does not use.
fn original_dir(dir: &Path) -> (PathBuf, serde_json::Value) {
    let m = micro(0);
    let d = dir.join("original");
    std::fs::create_dir_all(&d).unwrap();
    let mut cfg = m.cfg.to_hf_json();
    cfg["transformers_version"] = serde_json::json!("4.57.1");
    cfg["pad_token_id"] = serde_json::json!(0);
    cfg["initializer_range"] = serde_json::json!(0.02);
    cfg["use_cache"] = serde_json::json!(true);
    cfg["mlp_bias"] = serde_json::json!(false);
    std::fs::write(
        d.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("tokenizer.json"), &m.tokenizer_files.tokenizer_json).unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        serde_json::to_vec(&m.tokenizer_files.tokenizer_config).unwrap(),
    )
    .unwrap();
    m.weights
        .save_safetensors(&d.join("model.safetensors"))
        .unwrap();
    (d, cfg)
}

fn recipe(dir: &Path, source: &Path) -> PathBuf {
    let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let text = format!(
        r#"
[run]
name = "lora"
seed = 5

[model]
source = "{src}"

[model.lora]
rank = 4
alpha = 8.0
targets = ["q_proj", "v_proj", "up_proj", "down_proj"]

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{a}/sft.jsonl"
steps = 4
batch_size = 4
lr = 1e-2
max_len = 64
"#,
        src = source.display(),
        a = a.display()
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn lora_snapshot_and_merged_export_reload_with_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, orig_cfg) = original_dir(tmp.path());
    let r = recipe(tmp.path(), &orig);
    let run_dir = tmp.path().join("run");
    let prep = train::prepare(&train_options(&r, Some(run_dir.clone()))).unwrap();
    let (_tx, rx) = std::sync::mpsc::channel();
    let outcome = train::run(prep, rx, None).unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    let snap = run_dir.join("snapshots/sft-000004");

    // PEFT's layout: adapter_config.json and adapter_model.safetensors with
    // base_model.model.<module>.lora_{A,B}.weight, A (r, in), B (out, r).
    assert!(!snap.join("model.safetensors").exists());
    let ac: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(ac["peft_type"], "LORA");
    assert_eq!(ac["task_type"], "CAUSAL_LM");
    assert_eq!(ac["r"], 4);
    assert_eq!(ac["lora_alpha"], 8.0);
    assert_eq!(
        ac["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "up_proj", "down_proj"])
    );
    assert_eq!(
        ac["base_model_name_or_path"],
        std::fs::canonicalize(&orig).unwrap().display().to_string()
    );
    let base = micro(0);
    let adapters =
        candle_core::safetensors::load(snap.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let layers = base.cfg.num_hidden_layers;
    assert_eq!(adapters.len(), 2 * 4 * layers);
    for l in 0..layers {
        for (module, out, inp) in [
            (
                "self_attn.q_proj",
                base.cfg.num_attention_heads * base.cfg.head_dim,
                base.cfg.hidden_size,
            ),
            (
                "self_attn.v_proj",
                base.cfg.num_key_value_heads * base.cfg.head_dim,
                base.cfg.hidden_size,
            ),
            (
                "mlp.up_proj",
                base.cfg.intermediate_size,
                base.cfg.hidden_size,
            ),
            (
                "mlp.down_proj",
                base.cfg.hidden_size,
                base.cfg.intermediate_size,
            ),
        ] {
            let p = format!("base_model.model.model.layers.{l}.{module}");
            assert_eq!(
                adapters[&format!("{p}.lora_A.weight")].dims(),
                [4, inp],
                "{p}"
            );
            let b = &adapters[&format!("{p}.lora_B.weight")];
            assert_eq!(b.dims(), [out, 4], "{p}");
            assert!(norm(b) > 0.0, "{p}: B did not train");
        }
    }

    // 1. The adapted decoder as training ran it (base + unmerged adapters).
    let saved: BTreeMap<String, Tensor> = adapters.clone().into_iter().collect();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![
            "q_proj".into(),
            "v_proj".into(),
            "up_proj".into(),
            "down_proj".into(),
        ],
    };
    let (live, _) = lora::attach(&base, &cfg, 0, Some(saved)).unwrap();
    let ids = Tensor::new(&[[7u32, 100, 31, 1500, 9, 2, 64]], &Device::Cpu).unwrap();
    let live_logits = live
        .forward(&ids, Mode::Fast, ForwardOptions::default())
        .unwrap();
    // 2. The snapshot loaded as a model source (adapters merged on load).
    let snap_model = load_model(&snap.display().to_string(), &LoadOptions::default()).unwrap();
    let snap_logits = logits(&snap_model);
    // 3. The merged export, loaded as a plain model directory.
    let out = tmp.path().join("export");
    let done = export(&snap, &out, &ExportOptions::default()).unwrap();
    assert!(done.merged_lora);
    let exported = load_model(&out.display().to_string(), &LoadOptions::default()).unwrap();
    let export_logits = logits(&exported);
    // Merging changes only the order of f32 sums.
    assert_eq!(max_diff(&snap_logits, &export_logits), 0.0);
    let d = max_diff(&live_logits, &export_logits);
    assert!(d <= 1e-5, "live vs merged: {d}");
    // And training moved the model.
    assert!(max_diff(&logits(&base), &export_logits) > 1e-3);

    // The export is the original model's directory, trained.
    let cfg_out: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_out, orig_cfg, "config.json changed");
    let names = |p: &Path| {
        let mut v: Vec<String> = candle_core::safetensors::load(p, &Device::Cpu)
            .unwrap()
            .into_keys()
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&out.join("model.safetensors")),
        names(&orig.join("model.safetensors"))
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(orig.join("tokenizer.json")).unwrap()
    );
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(
        json(out.join("tokenizer_config.json")),
        json(orig.join("tokenizer_config.json"))
    );

    // Sharded, with an index, when past the size limit.
    let sharded = tmp.path().join("sharded");
    let done = export(
        &snap,
        &sharded,
        &ExportOptions {
            max_shard_bytes: 200_000,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(done.files.iter().filter(|f| f.contains("-of-")).count() > 1);
    let again = load_model(&sharded.display().to_string(), &LoadOptions::default()).unwrap();
    assert_eq!(max_diff(&logits(&again), &export_logits), 0.0);

    // The LoRA snapshot probes like its merged export (`driftui probe` and the
    // probe screen load it through the same path).
    let probe_snap =
        driftui::probe::checkpoint::probe_checkpoint(&snap.display().to_string(), None).unwrap();
    let probe_out =
        driftui::probe::checkpoint::probe_checkpoint(&out.display().to_string(), None).unwrap();
    assert_eq!(probe_snap.topics.len(), 14);
    for (a, b) in probe_snap.topics.iter().zip(&probe_out.topics) {
        for k in Stance::EACH {
            assert!(
                (a.mean[k] - b.mean[k]).abs() < 1e-6,
                "{}: {:?} vs {:?}",
                a.topic,
                a.mean,
                b.mean
            );
        }
    }
    let snaps = driftui::rundir::RunDir::at(&run_dir).snapshots(&[]);
    assert!(
        snaps
            .iter()
            .any(|s| s.name == "sft-000004" && s.problem.is_none()),
        "{snaps:?}"
    );

    // A full (non-LoRA) export refuses to overwrite.
    let err = export(&snap, &out, &ExportOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
}

/// `driftui export` through the binary, on a full fine-tuning snapshot.
#[test]
fn export_command_writes_a_model_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, orig_cfg) = original_dir(tmp.path());
    let r = recipe(tmp.path(), &orig);
    // Full fine-tuning: drop the [model.lora] table.
    let text = std::fs::read_to_string(&r).unwrap();
    let start = text.find("[model.lora]").unwrap();
    let end = text.find("[[phase]]").unwrap();
    std::fs::write(&r, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let run_dir = tmp.path().join("run");
    let prep = train::prepare(&train_options(&r, Some(run_dir.clone()))).unwrap();
    let (_tx, rx) = std::sync::mpsc::channel();
    train::run(prep, rx, None).unwrap();
    let snap = run_dir.join("snapshots/sft-000004");
    let out = tmp.path().join("hf-model");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_driftui"))
        .arg("export")
        .arg(&snap)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let cfg_out: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_out, orig_cfg);
    let snap_model = load_model(&snap.display().to_string(), &LoadOptions::default()).unwrap();
    let exported = load_model(&out.display().to_string(), &LoadOptions::default()).unwrap();
    assert_eq!(max_diff(&logits(&snap_model), &logits(&exported)), 0.0);
    // Bad input is an error naming the thing, not a panic.
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_driftui"))
        .arg("export")
        .arg(tmp.path().join("nope"))
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        !st.status.success() && err.contains("nope") && err.contains("not a snapshot"),
        "{err}"
    );
}
