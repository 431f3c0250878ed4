//! The module layering of docs/architecture.md holds in the code: a module
//! imports only from its own layer or the layers below it. Reads every
//! `src/**/*.rs` and fails on an import that points up (the model knowing
//! the trainer, the report knowing the dashboard, ...).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, highest first. `main.rs` and `cli.rs` sit
/// above them all.
const LAYERS: &[&[&str]] = &[
    &["tui"],
    &["report"],
    &["train"],
    &["probe"],
    &["model"],
    &["rundir"],
    &["data", "events", "recipe", "location", "duration"],
];

/// Imports that point up today, each with why it is still there. The test
/// fails when one of them is gone, so the list only shrinks.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "recipe",
        "train",
        "the recipe schema uses the objectives' DpoLoss, LossAverage and Objective, and rl's settings and enums",
    ),
    (
        "recipe",
        "model",
        "recipe paths are resolved by model::source::resolve",
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level modules a file names through `crate::` outside comments, with
/// the line of the first mention.
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, i + 1));
            }
        }
    }
    out
}

/// Every import from a module into a module of a higher layer.
fn upward_imports() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let from = module_of(&src, &file);
        let Some(from_layer) = layer_of(&from) else {
            assert!(
                from == "main" || from == "cli" || from == "lib",
                "{} is in no layer: add its module to LAYERS and to docs/architecture.md",
                file.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (to, line) in imports(&text) {
            let to_layer = layer_of(&to)
                .unwrap_or_else(|| panic!("{}:{line}: crate::{to} is in no layer", file.display()));
            if to_layer < from_layer {
                let at = format!("{}:{line}", file.strip_prefix(&src).unwrap().display());
                found.push((from.clone(), to, at));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let upward = upward_imports();
    let unexpected: Vec<String> = upward
        .iter()
        .filter(|(from, to, _)| {
            !KNOWN_EXCEPTIONS
                .iter()
                .any(|(f, t, _)| f == from && t == to)
        })
        .map(|(from, to, at)| format!("src/{at}: {from} imports {to}, a layer above it"))
        .collect();
    assert!(unexpected.is_empty(), "\n{}", unexpected.join("\n"));
    let still: BTreeSet<(&str, &str)> = upward
        .iter()
        .map(|(f, t, _)| (f.as_str(), t.as_str()))
        .collect();
    for (from, to, why) in KNOWN_EXCEPTIONS {
        assert!(
            still.contains(&(*from, *to)),
            "{from} no longer imports {to} ({why}): remove the exception"
        );
    }
}

/// The rules the design names, spelled out: each pair is forbidden by the
/// layers above (a check on LAYERS itself).
#[test]
fn the_design_s_forbidden_imports_are_upward() {
    for (from, to) in [
        ("model", "train"),
        ("model", "probe"),
        ("model", "report"),
        ("model", "tui"),
        ("report", "tui"),
        ("train", "tui"),
        ("probe", "tui"),
        ("probe", "train"),
        ("rundir", "model"),
        ("events", "tui"),
    ] {
        assert!(
            layer_of(to).unwrap() < layer_of(from).unwrap(),
            "{from} → {to} must be forbidden"
        );
    }
}

/// The scanner sees imports in `use` lines and in paths, and not in comments.
#[test]
fn imports_are_read_from_code_not_comments() {
    let text = "use crate::events::Event;\n/// see [`crate::tui::app`]\nlet x = crate::train::run(a); // crate::report\n";
    let names: Vec<String> = imports(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["events", "train"]);
}

/// docs/architecture.md states the same layers, in the same order.
#[test]
fn the_architecture_page_shows_these_layers() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let chain = LAYERS
        .iter()
        .map(|l| l.join(" · "))
        .collect::<Vec<_>>()
        .join(" → ");
    assert!(
        doc.contains(&chain),
        "docs/architecture.md does not state the layers as\n{chain}"
    );
    for (from, to, _) in KNOWN_EXCEPTIONS {
        assert!(
            doc.contains(&format!("`{from}` → `{to}`")),
            "docs/architecture.md does not list the exception {from} → {to}"
        );
    }
}
