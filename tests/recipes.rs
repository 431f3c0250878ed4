//! Every shipped recipe (`recipes/`, `recipes/study/`, ...) parses, has a
//! `[probe]` table whose probe set loads and whose periodic subset is drawn
//! from it, and — for real models — names its hardware and states what
//! probing costs.

use driftui::probe::set::ProbeSet;
use driftui::recipe;
use std::path::{Path, PathBuf};

fn recipes() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes"),
        &mut out,
    );
    out.sort();
    out
}

#[test]
fn every_shipped_recipe_probes_values_and_its_probe_set_loads() {
    let all = recipes();
    // The walk finds the recipes in subdirectories too (12 when written).
    assert!(all.len() >= 12, "{all:?}");
    for path in &all {
        let r = recipe::load(path).unwrap_or_else(|e| panic!("{e:#}"));
        let probe = r
            .recipe
            .probe
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no [probe] table", path.display()));
        let set = ProbeSet::load(&r.resolve(&probe.file))
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(set.questions.len() >= 56, "{}", path.display());
        if probe.questions_per_topic > 0 {
            let sub = set.subset(probe.questions_per_topic, r.recipe.run.seed);
            assert_eq!(
                sub.questions.len(),
                set.topics.len() * probe.questions_per_topic,
                "{}",
                path.display()
            );
            assert!(
                probe.every > 0,
                "{}: a subset that is never used",
                path.display()
            );
        }
        if !r.recipe.model.source.starts_with("builtin:") {
            assert!(
                r.text.contains("Hardware:"),
                "{} names no hardware",
                path.display()
            );
            assert!(
                r.text.contains("Cost"),
                "{} does not state what probing costs",
                path.display()
            );
        }
        // Datasets: local files exist; hub datasets name ORG/NAME.
        for p in &r.recipe.phases {
            match p.dataset.strip_prefix(recipe::HUB_DATASET) {
                Some(spec) => assert!(spec.contains('/'), "{}: {spec}", path.display()),
                None => assert!(
                    r.resolve(&p.dataset).is_file(),
                    "{}: {} is missing",
                    path.display(),
                    p.dataset
                ),
            }
        }
    }
}

#[test]
fn dataset_keys_without_effect_are_errors_at_the_key() {
    let base = "[run]\nname = \"t\"\n\n[model]\nsource = \"builtin:tiny\"\n\n[[phase]]\nname = \"p\"\nalgorithm = \"sft\"\nsteps = 1\n";
    let cases = [
        (
            "dataset = \"d.jsonl\"\nsplit = \"train\"\n",
            "12:9: split has no effect on a local dataset; it applies to hf-dataset:ORG/NAME datasets",
        ),
        (
            "dataset = \"d.parquet\"\nconfig = \"default\"\n",
            "12:10: config has no effect on a local dataset",
        ),
        (
            "dataset = \"hf-dataset:o/d\"\ncolumns = { message = \"conversation\" }\n",
            "12:23: \"message\" is not a field driftui reads; columns maps one of prompt, chosen",
        ),
    ];
    for (keys, want) in cases {
        let err = recipe::parse(&format!("{base}{keys}")).unwrap_err();
        assert!(err.starts_with(want), "{keys}\n{err}");
    }
    let ok = format!(
        "{base}dataset = \"hf-dataset:allenai/WildChat-1M@main\"\nsplit = \"train\"\nconfig = \"default\"\ncolumns = {{ messages = \"conversation\" }}\n"
    );
    let r = recipe::parse(&ok).unwrap();
    assert_eq!(r.phases[0].split.as_deref(), Some("train"));
    // Probe orderings: 3 or 6, and only for `choice`.
    let probe =
        |t: &str| format!("{base}dataset = \"d.jsonl\"\n\n[probe]\nfile = \"p.jsonl\"\n{t}");
    recipe::parse(&probe("orderings = 3\n")).unwrap();
    let err = recipe::parse(&probe("orderings = 4\n")).unwrap_err();
    assert!(err.starts_with("15:13: orderings must be 6"), "{err}");
    let err = recipe::parse(&probe("method = \"generate\"\norderings = 3\n")).unwrap_err();
    assert!(
        err.contains("orderings has no effect with method \"generate\""),
        "{err}"
    );
}
