//! Local model directories: what is missing is named before weights load,
//! and a tokenizer without a chat template follows the recipe's choice.

use driftui::data::{Message, TemplateChoice};
use driftui::model::{load_model, LoadOptions, LoadedModel};
use std::path::Path;

fn write_dir(d: &Path, template: bool, sharded: bool) {
    let m = load_model("builtin:micro", &LoadOptions::default()).unwrap();
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("config.json"),
        serde_json::to_vec(&m.cfg.to_hf_json()).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("tokenizer.json"), &m.tokenizer_files.tokenizer_json).unwrap();
    let mut tc = m.tokenizer_files.tokenizer_config.clone();
    if !template {
        tc.as_object_mut().unwrap().remove("chat_template");
    }
    std::fs::write(d.join("tokenizer_config.json"), tc.to_string()).unwrap();
    if sharded {
        let names: Vec<String> = m.weights.tensors.keys().cloned().collect();
        let mut map = serde_json::Map::new();
        for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
            let file = format!("model-{:05}-of-00002.safetensors", i + 1);
            let t = part
                .iter()
                .map(|n| (n.clone(), m.weights.tensors[n].clone()))
                .collect();
            driftui::model::weights::save_tensors(&t, &d.join(&file)).unwrap();
            for n in part {
                map.insert(n.clone(), serde_json::json!(file));
            }
        }
        std::fs::write(
            d.join("model.safetensors.index.json"),
            serde_json::json!({ "weight_map": map }).to_string(),
        )
        .unwrap();
    } else {
        m.weights
            .save_safetensors(&d.join("model.safetensors"))
            .unwrap();
    }
}

fn load(d: &Path, template: TemplateChoice) -> anyhow::Result<LoadedModel> {
    load_model(
        &d.display().to_string(),
        &LoadOptions {
            template,
            ..Default::default()
        },
    )
}

fn err(r: anyhow::Result<LoadedModel>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    write_dir(&d, true, true);
    load(&d, TemplateChoice::Model).unwrap();

    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let e = err(load(&d, TemplateChoice::Model));
    assert!(
        e.contains("model-00002-of-00002.safetensors")
            && e.contains("model.safetensors.index.json")
            && e.contains("missing"),
        "{e}"
    );
    std::fs::remove_file(d.join("config.json")).unwrap();
    let e = err(load(&d, TemplateChoice::Model));
    assert!(
        e.contains("config.json") && e.contains(&d.display().to_string()),
        "{e}"
    );

    let d2 = tmp.path().join("m2");
    write_dir(&d2, true, false);
    std::fs::remove_file(d2.join("tokenizer.json")).unwrap();
    let e = err(load(&d2, TemplateChoice::Model));
    assert!(e.contains("tokenizer.json"), "{e}");

    // A shard that lacks a tensor the config implies.
    let d3 = tmp.path().join("m3");
    write_dir(&d3, true, false);
    let mut w = driftui::model::TensorMap::load_safetensors(
        &[d3.join("model.safetensors")],
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    w.tensors.remove("model.layers.1.mlp.up_proj.weight");
    w.save_safetensors(&d3.join("model.safetensors")).unwrap();
    let e = err(load(&d3, TemplateChoice::Model));
    assert!(e.contains("model.layers.1.mlp.up_proj.weight"), "{e}");

    let e = err(load(&tmp.path().join("absent"), TemplateChoice::Model));
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn no_chat_template_follows_the_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    write_dir(&d, false, false);
    let e = err(load(&d, TemplateChoice::Model));
    assert!(
        e.contains("no chat template") && e.contains("chat_template = \"none\""),
        "{e}"
    );
    let plain = load(&d, TemplateChoice::None).unwrap();
    assert_eq!(
        plain
            .tokenizer
            .prompt_text(&[Message::new("user", "Hi?")])
            .unwrap(),
        "Hi?"
    );
    // A chat_template.jinja file next to it is the model's template.
    std::fs::write(
        d.join("chat_template.jinja"),
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let t = load(&d, TemplateChoice::Model).unwrap();
    assert_eq!(
        t.tokenizer
            .prompt_text(&[Message::new("user", "Hi?")])
            .unwrap(),
        "<user>Hi?"
    );
}

/// Every shipped recipe parses and validates, and names the model and
/// hardware it expects.
#[test]
fn shipped_recipes_are_valid() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes");
    for (file, source, lora) in [
        (
            "llama3-sft-kto.toml",
            "hf:meta-llama/Llama-3.2-3B-Instruct",
            true,
        ),
        ("qwen3-sft-dpo.toml", "hf:Qwen/Qwen3-4B", true),
        (
            "smollm2-sft-kto.toml",
            "gguf:../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            true,
        ),
        ("demo.toml", "builtin:tiny", false),
    ] {
        let p = dir.join(file);
        let r = driftui::recipe::load(&p).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(r.recipe.model.source, source, "{file}");
        assert_eq!(r.recipe.model.lora.is_some(), lora, "{file}");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("Hardware:") || file == "demo.toml",
            "{file} does not say what hardware it needs"
        );
        for d in r.recipe.phases.iter().map(|ph| r.resolve(&ph.dataset)) {
            assert!(d.is_file(), "{file}: {} is missing", d.display());
        }
    }
}
