//! `driftui report` and `driftui probe`: the drift table's files against
//! values computed by hand from the fixture, the plots (SVG titles, PNG
//! size and drawn text), and a headless probe of a snapshot that a tiny
//! training run writes in the test.

use crate::common;

use common::{assets, driftui, micro_sft_recipe, stderr, stdout, write_probes};
use driftui::probe::set::ProbeSet;
use driftui::report::{plot, write_report};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/sample-run.jsonl")
}

// Hand values (from the fixture's JSON, outside driftui): abortion in sft
// goes from (0.354997, 0.354221, 0.290782) at step 0 to (0.591748, 0.232873,
// 0.175378) at step 120; every stance is within the 95% interval of its
// extreme from the step-20 probe on: drift time 20/120 = 0.166667. The log
// predates per-question scores: the interval of a change is the normal one
// of two unpaired means, ±1.96·√(se₀² + se₁²): support se 0.067672 and
// 0.069510 → ±0.190138, [0.046613, 0.426889], real; neutral se 0.067639
// and 0.059773 → [−0.298265, 0.055569], contains 0: noise, so no time;
// oppose [−0.279584, 0.048778], noise.
#[test]
fn report_writes_the_drift_table_in_three_formats() {
    let out = tempfile::tempdir().unwrap();
    let r = write_report(&fixture(), Some(out.path())).unwrap();
    assert_eq!(r.topics, 12);
    assert_eq!(r.rows, 12 * 3, "sft, dpo and run per topic");

    let csv = std::fs::read_to_string(out.path().join("drift.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "topic,phase,stance,start,end,magnitude,drift_time,ci_low,ci_high,se,noise,questions,paired,full_start,full_end"
    );
    assert_eq!(lines.len(), 1 + 12 * 3 * 3);
    assert!(
        csv.contains("abortion,sft,support,0.354997,0.591748,0.236751,0.166667,0.046613,0.426889,0.097011,false,50,false,,\n"),
        "{csv}"
    );
    assert!(
        csv.contains("abortion,sft,neutral,0.354221,0.232873,-0.121348,,-0.298265,0.055569,0.090265,true,50,false,,\n"),
        "{csv}"
    );
    assert!(
        csv.contains("abortion,sft,oppose,0.290782,0.175378,-0.115403,,-0.279584,0.048778,"),
        "{csv}"
    );
    // Run rows have a magnitude and no drift time.
    assert!(csv.contains("abortion,run,support,0.354997,"), "{csv}");
    let run_row = lines
        .iter()
        .find(|l| l.starts_with("climate change,run,neutral,"))
        .unwrap();
    assert!(run_row.contains(",0.306654,"), "{run_row}");
    // No drift time on a run row.
    assert!(run_row.contains(",0.306654,,"), "{run_row}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("drift.json")).unwrap())
            .unwrap();
    assert_eq!(json["run"], "demo-sft-dpo");
    assert_eq!(json["stances"][0], "support");
    assert_eq!(json["probes"], 11);
    assert_eq!(json["probe_seconds"], 33.0);
    assert_eq!(json["phases"][1]["name"], "dpo");
    assert_eq!(json["phases"][1]["start"], 120);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 36);
    let first = &rows[0];
    assert_eq!(first["topic"], "abortion");
    assert_eq!(first["phase"], "sft");
    let m = first["stances"][0]["magnitude"].as_f64().unwrap();
    assert!((m - 0.236751).abs() < 1e-6, "{m}");
    let t = first["stances"][0]["time"].as_f64().unwrap();
    assert!((t - 1.0 / 6.0).abs() < 1e-12, "{t}");
    assert!(rows[2]["stances"][0]["time"].is_null(), "run rows: no time");

    let md = std::fs::read_to_string(out.path().join("drift.md")).unwrap();
    assert!(md.starts_with("# Value drift: demo-sft-dpo"), "{md}");
    assert!(
        md.contains(
            "| abortion | sft | 50 (unpaired) | 0.355 | 0.592 | +0.237 [+0.047, +0.427] | 0.17 | 0.354 | 0.233 | ~-0.121 [-0.298, +0.056] | — |"
        ),
        "{md}"
    );
    assert!(
        md.contains("probing took 33.0 s of 151.9 s wall time (21.7%)"),
        "{md}"
    );
}

fn decode_png(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Dark pixels (text, axes) in a band of rows.
fn dark_pixels(img: &image::RgbImage, rows: std::ops::Range<u32>) -> usize {
    rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = img.get_pixel(x, y);
            p[0] < 90 && p[1] < 90 && p[2] < 90
        })
        .count()
}

// The comparison (`driftui report RUN RUN ...`, how the CPU study ends):
// each run's last phase. The fixture's last phase is dpo; abortion there,
// by hand from the JSON (unpaired normal intervals, as above): support
// +0.015907 [−0.176450, +0.208265], oppose −0.012942 [−0.162513,
// +0.136629]: both contain 0.
#[test]
fn comparison_of_runs_is_topics_by_runs_over_their_last_phase() {
    let out = tempfile::tempdir().unwrap();
    let files = driftui::report::write_comparison(&[fixture(), fixture()], out.path()).unwrap();
    assert_eq!(files.len(), 2);
    let md = std::fs::read_to_string(out.path().join("compare.md")).unwrap();
    // Runs are named by their last phase's algorithm, or by run name where
    // two share one.
    assert!(md.contains("\n| dpo | "), "{md}");
    assert!(md.contains("\n| demo-sft-dpo | "), "{md}");
    let support = md.split("## support").nth(1).unwrap();
    assert!(
        support.contains("| abortion | ~+0.016 [-0.176, +0.208] | ~+0.016 [-0.176, +0.208] |"),
        "{md}"
    );
    let oppose = md.split("## oppose").nth(1).unwrap();
    assert!(
        oppose.contains("| abortion | ~-0.013 [-0.163, +0.137] |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.path().join("compare.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "topic,stance,run,magnitude,ci_low,ci_high,noise,drift_time"
    );
    assert!(
        csv.contains("abortion,support,dpo,0.015907,-0.176450,0.208265,true,\n"),
        "{csv}"
    );
    // 12 topics × 3 stances × 2 runs.
    assert_eq!(csv.lines().count(), 1 + 12 * 3 * 2);
}

#[test]
fn report_plots_are_svg_and_png_with_titles() {
    let out = tempfile::tempdir().unwrap();
    write_report(&fixture(), Some(out.path())).unwrap();
    let svg = std::fs::read_to_string(out.path().join("stance.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.contains("Stance per topic over training — demo-sft-dpo"));
    for topic in ["abortion", "climate change", "universal healthcare"] {
        assert!(
            svg.contains(&format!(">\n{topic}\n<")),
            "{topic} has no panel title"
        );
    }
    assert!(svg.contains(">\ndpo\n<"), "the phase start is labelled");
    let loss = std::fs::read_to_string(out.path().join("loss.svg")).unwrap();
    assert!(loss.contains("Training loss — demo-sft-dpo"));
    assert!(loss.contains(">\nglobal step\n<"));

    let stance = decode_png(&out.path().join("stance.png"));
    assert_eq!((stance.width(), stance.height()), plot::stance_size(12));
    assert_eq!(plot::stance_size(12), (1600, 110 + 3 * 340));
    // The title is drawn (text needs a font; none comes from the system).
    assert!(dark_pixels(&stance, 10..50) > 500, "no title text");
    // Each stance colour is on the figure.
    for c in plot::STANCE_COLORS.values() {
        let n = stance.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(n > 200, "colour {c:?}: {n} pixels");
    }
    let loss = decode_png(&out.path().join("loss.png"));
    assert_eq!((loss.width(), loss.height()), plot::LOSS_SIZE);
    assert!(dark_pixels(&loss, 10..50) > 300, "no title text");
}

#[test]
fn report_of_a_missing_run_fails_with_a_message() {
    let o = driftui(&["report", "/nonexistent/run"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/run does not exist"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let o = driftui(&["report", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("has no training log driftui reads: it is empty")
            && err.contains("events.jsonl"),
        "{err}"
    );
    assert!(
        !dir.path().join("driftui").exists(),
        "nothing written for a bad path"
    );
}

/// metrics.csv: one row per logged step, one column per metric, the numbers
/// the log holds (read here with serde_json, not driftui's reader).
#[test]
fn report_writes_every_logged_metric_per_step_as_csv() {
    let out = tempfile::tempdir().unwrap();
    write_report(&fixture(), Some(out.path())).unwrap();
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let steps: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "step")
        .collect();
    assert_eq!(rows.len(), steps.len());
    assert!(header.contains(&"rewards/margins"), "{header:?}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (row, step) in rows.iter().zip(&steps) {
        assert_eq!(row.len(), header.len());
        assert_eq!(row[col("global_step")], step["global_step"].to_string());
        let loss: f64 = row[col("loss")].parse().unwrap();
        assert_eq!(loss, step["loss"].as_f64().unwrap());
        let margin = row[col("rewards/margins")];
        match step.get("rewards/margins").and_then(|v| v.as_f64()) {
            Some(m) => assert_eq!(margin.parse::<f64>().unwrap(), m),
            None => assert_eq!(margin, "", "an SFT step has no margin"),
        }
    }
}

/// A 3-step SFT run of the built-in micro model; returns its run directory.
fn tiny_run(dir: &Path) -> PathBuf {
    let recipe = dir.join("recipe.toml");
    std::fs::write(&recipe, micro_sft_recipe("probe-cli", &dir.join("runs"))).unwrap();
    let o = driftui(&["train", recipe.to_str().unwrap(), "--headless"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

#[test]
fn probe_prints_every_topic_of_a_snapshot_from_a_tiny_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let snap = run.join("snapshots/sft-000003");
    assert!(
        snap.join("model.safetensors").is_file(),
        "{}",
        snap.display()
    );
    let set = ProbeSet::load(&assets().join("probes/default.jsonl")).unwrap();

    let o = driftui(&["probe", snap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("choice probe over 196 questions"), "{table}");
    for topic in &set.topics {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{topic} ")))
            .unwrap_or_else(|| panic!("no row for {topic}\n{table}"));
        assert_eq!(row.matches(" ± ").count(), 3, "{row}");
    }

    let o = driftui(&["probe", snap.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let topics = v["topics"].as_array().unwrap();
    assert_eq!(topics.len(), set.topics.len());
    for t in topics {
        let sum: f64 = t["mean"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-6, "{t}");
        assert_eq!(t["n"], 14);
    }
    assert_eq!(v["method"], "choice");

    // A probe file of its own, and one with a bad line.
    let probes = dir.path().join("mine.jsonl");
    write_probes(
        &probes,
        &[
            ("tea", "Is tea better than coffee?"),
            ("tea", "Should tea be free?"),
        ],
    );
    let o = driftui(&[
        "probe",
        snap.to_str().unwrap(),
        "--probes",
        probes.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("tea ")),
        "{}",
        stdout(&o)
    );
    std::fs::write(
        &probes,
        "{\"topic\":\"tea\",\"question\":\"q\"}\n{\"question\":\"no topic\"}\n",
    )
    .unwrap();
    let o = driftui(&[
        "probe",
        snap.to_str().unwrap(),
        "--probes",
        probes.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("mine.jsonl") && err.contains("line 2: missing the field \"topic\""),
        "{err}"
    );

    // The run directory itself: told to name a snapshot.
    let o = driftui(&["probe", run.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is a run directory; name one of its snapshots"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn probe_of_a_missing_or_broken_checkpoint_fails_with_a_message() {
    let o = driftui(&["probe", "/nonexistent/snapshot"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the checkpoint /nonexistent/snapshot does not exist"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let o = driftui(&["probe", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot load the checkpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
