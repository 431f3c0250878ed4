//! Precision and device choices of a recipe: bf16/f16 training runs (on the
//! plain-op path), and a device the build lacks stops before training with
//! the cargo feature to build with.

use crate::common;
use driftui::events::{read_log, Event, RunStatus};

use driftui::train;
use std::path::Path;

fn recipe(dir: &Path, dtype: &str, device: &str) -> std::path::PathBuf {
    let a = common::assets().join("demo");
    let p = dir.join(format!("{dtype}-{}.toml", device.replace(':', "_")));
    std::fs::write(
        &p,
        format!(
            r#"
[run]
name = "dt"
seed = 2

[model]
source = "builtin:micro"
dtype = "{dtype}"
device = "{device}"

[[phase]]
name = "sft"
algorithm = "sft"
dataset = "{a}/sft.jsonl"
steps = 3
batch_size = 4
lr = 1e-3
max_len = 48
"#,
            a = a.display()
        ),
    )
    .unwrap();
    p
}

fn prepare(r: &Path, out: &Path) -> anyhow::Result<train::Prepared> {
    train::prepare(&common::train_options(r, Some(out.to_path_buf())))
}

#[test]
fn half_precision_recipes_train() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in ["bf16", "f16"] {
        let out = tmp.path().join(dtype);
        let prep = prepare(&recipe(tmp.path(), dtype, "cpu"), &out).unwrap();
        let (_tx, rx) = std::sync::mpsc::channel();
        let outcome = train::run(prep, rx, None).unwrap();
        assert_eq!(outcome.status, RunStatus::Completed, "{dtype}");
        let (events, _) = read_log(&out.join("events.jsonl")).unwrap();
        let losses: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Step(s) => Some(s.loss),
                _ => None,
            })
            .collect();
        assert_eq!(losses.len(), 3, "{dtype}");
        assert!(
            losses.iter().all(|l| l.is_finite() && *l > 0.0),
            "{dtype}: {losses:?}"
        );
        // The snapshot says what it holds.
        let cfg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("snapshots/sft-000003/config.json")).unwrap(),
        )
        .unwrap();
        let want = if dtype == "bf16" {
            "bfloat16"
        } else {
            "float16"
        };
        assert_eq!(cfg["torch_dtype"], want);
    }
}

#[test]
fn a_device_this_build_lacks_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        #[cfg(not(feature = "cuda"))]
        ("cuda:0", "--features cuda"),
        #[cfg(not(feature = "metal"))]
        ("metal", "--features metal"),
    ];
    for (device, hint) in cases {
        let out = tmp.path().join("never");
        let err = match prepare(&recipe(tmp.path(), "f32", device), &out) {
            Ok(_) => panic!("{device} accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(hint) && err.contains(device), "{err}");
        assert!(!out.exists(), "{device}: a run directory was created");
    }
    // "auto" falls back to the CPU when there is no GPU.
    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    {
        let out = tmp.path().join("auto");
        prepare(&recipe(tmp.path(), "f32", "auto"), &out).unwrap();
    }
}
