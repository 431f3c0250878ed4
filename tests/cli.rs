//! The `driftui` binary on bad input: a clear error naming the file (and line),
//! a non-zero exit, and nothing half-written left looking valid.

use crate::common;

use common::{assets, driftui, micro_sft_recipe, stderr, write_probes};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A valid one-phase recipe in `dir`, with `tweak` applied to its text.
fn recipe(dir: &Path, tweak: impl Fn(String) -> String) -> PathBuf {
    let p = dir.join("recipe.toml");
    std::fs::write(&p, tweak(micro_sft_recipe("cli", &dir.join("runs")))).unwrap();
    p
}

fn no_run_dir(dir: &Path) {
    let runs = dir.join("runs");
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none(),
        "a run directory was left behind"
    );
}

#[test]
fn headless_run_succeeds_and_prints_progress() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| t);
    let o = driftui(&["train", r.to_str().unwrap(), "--headless"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("[sft 1/1] step 3/3 (100%)  loss "), "{err}");
    assert!(err.contains("run completed: 3 steps"), "{err}");
    // The memory check's estimate, before the first step.
    let note = err
        .lines()
        .position(|l| {
            l.starts_with("info: phase \"sft\": memory at its step's peak about ")
                && l.contains("of memory free now")
        })
        .unwrap_or_else(|| panic!("no memory estimate: {err}"));
    let first_step = err.lines().position(|l| l.contains("step 1/3")).unwrap();
    assert!(note < first_step, "{err}");
}

#[test]
fn broken_recipe_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| {
        t.replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 2")
    });
    let o = driftui(&["train", r.to_str().unwrap(), "--headless"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:16:1: unknown field `learning_rate`",
            r.display()
        )),
        "{err}"
    );
    no_run_dir(dir.path());
}

#[test]
fn bad_dataset_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"only a prompt\"}\n",
    )
    .unwrap();
    let r = recipe(dir.path(), |t| {
        t.replace(
            assets().join("demo/sft.jsonl").to_str().unwrap(),
            data.to_str().unwrap(),
        )
    });
    let o = driftui(&["train", r.to_str().unwrap(), "--headless"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("in the dataset {}: line 3:", data.display())),
        "{err}"
    );
    no_run_dir(dir.path());

    std::fs::write(
        &data,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json\n",
    )
    .unwrap();
    let err = stderr(&driftui(&["train", r.to_str().unwrap(), "--headless"]));
    assert!(err.contains("line 2: not valid JSON"), "{err}");

    std::fs::write(&data, "\n").unwrap();
    let err = stderr(&driftui(&["train", r.to_str().unwrap(), "--headless"]));
    assert!(err.contains("the dataset has no rows"), "{err}");
    no_run_dir(dir.path());
}

#[test]
fn missing_model_source_and_unwritable_output_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| {
        t.replace("builtin:micro", "models/not-here")
    });
    let o = driftui(&["train", r.to_str().unwrap(), "--headless"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let r = recipe(dir.path(), |t| t.replace("builtin:micro", "builtin:huge"));
    assert!(
        stderr(&driftui(&["train", r.to_str().unwrap(), "--headless"]))
            .contains("there is no built-in model \"huge\"")
    );

    // An output directory under a file cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let r = recipe(dir.path(), |t| t);
    let out = blocker.join("run");
    let o = driftui(&[
        "train",
        r.to_str().unwrap(),
        "--headless",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot create the run directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn corrupted_snapshot_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| t);
    let out = dir.path().join("run");
    let o = driftui(&[
        "train",
        r.to_str().unwrap(),
        "--headless",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = out.join("snapshots/sft-000003");
    // Flip a byte in the weights.
    let w = snap.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&w, bytes).unwrap();
    let o = driftui(&[
        "train",
        r.to_str().unwrap(),
        "--headless",
        "--resume",
        snap.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("model.safetensors fails its checksum"),
        "{err}"
    );

    // A directory that is no snapshot at all.
    let o = driftui(&[
        "train",
        r.to_str().unwrap(),
        "--headless",
        "--resume",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("not a complete driftui snapshot"),
        "{}",
        stderr(&o)
    );
}

/// A process killed mid-run leaves a log whose complete lines all parse.
#[test]
fn killed_run_leaves_a_parseable_log() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| t.replace("steps = 3", "steps = 400"));
    let out = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftui"))
        .args([
            "train",
            r.to_str().unwrap(),
            "--headless",
            "--output",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = out.join("events.jsonl");
    let start = std::time::Instant::now();
    loop {
        let steps = std::fs::read_to_string(&log)
            .map(|t| t.matches("\"kind\":\"step\"").count())
            .unwrap_or(0);
        if steps >= 5 || start.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (events, report) = driftui::events::read_log(&log).unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert!(events.len() >= 5);
    // No snapshot directory is left looking complete without its manifest.
    if let Ok(entries) = std::fs::read_dir(out.join("snapshots")) {
        for e in entries {
            let p = e.unwrap().path();
            if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".partial")
            {
                driftui::rundir::snapshot::verify(&p).unwrap();
            }
        }
    }
}

/// `driftui synth` writes a preference set that the trainer reads back.
#[test]
fn synth_writes_a_value_gap_preference_set() {
    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("p.jsonl");
    write_probes(
        &probes,
        &[
            ("guns", "Should gun laws be stricter?"),
            ("tax", "Should the rich pay more tax?"),
        ],
    );
    let out = dir.path().join("gap.jsonl");
    let o = driftui(&[
        "synth",
        "--model",
        "builtin:micro",
        "--probes",
        probes.to_str().unwrap(),
        "--chosen",
        "oppose",
        "--rejected",
        "support",
        "--out",
        out.to_str().unwrap(),
        "--max-tokens",
        "6",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("synth 2/2 (100%)"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let rows = driftui::data::parse_jsonl(&text, driftui::data::DataKind::Preference).unwrap();
    assert_eq!(rows.len(), 2);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["chosen_stance"], "oppose");
    assert_eq!(first["prompt"], "Should gun laws be stricter?");
    assert!(!out.with_extension("jsonl.partial").exists());

    let o = driftui(&[
        "synth",
        "--chosen",
        "oppose",
        "--rejected",
        "oppose",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("no value gap"));
}

#[test]
fn threads_zero_is_refused_and_threads_one_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| t);
    let o = driftui(&["train", r.to_str().unwrap(), "--headless", "--threads", "0"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("invalid value '0' for '--threads <N>'"),
        "{err}"
    );
    no_run_dir(dir.path());
    let o = driftui(&["--threads", "1", "train", r.to_str().unwrap(), "--headless"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("run completed: 3 steps"), "{err}");
}

#[test]
fn a_step_too_large_for_memory_is_refused_with_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), |t| {
        // 65,536 rows of the demo's SFT data on the tiny model: hundreds
        // of GB of activations.
        t.replace("batch_size = 4", "batch_size = 65536")
            .replace("builtin:micro", "builtin:tiny")
    });
    let o = driftui(&["train", r.to_str().unwrap(), "--headless"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&r.display().to_string()), "{err}");
    assert!(err.contains("batch_size = "), "{err}");
    assert!(err.contains("would fit"), "{err}");
    no_run_dir(dir.path());
}
