//! `driftui trace`: checkpoints written while a trace runs are each probed
//! once, in step order, a half-written one only once complete; a restart
//! probes nothing twice; a broken checkpoint fails alone; the trainer's
//! files are never touched.

use driftui::events::{read_log, Event, ProbeEvent};
use driftui::model::{load_model, LoadOptions, LoadedModel};
use driftui::probe::trace::{run_trace, TraceNews, TraceOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn micro() -> LoadedModel {
    load_model("builtin:micro", &LoadOptions::default()).unwrap()
}

/// Everything of a Hugging Face checkpoint but the trainer's marker.
fn write_weights(m: &LoadedModel, d: &Path) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("config.json"),
        serde_json::to_vec(&m.cfg.to_hf_json()).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("tokenizer.json"), &m.tokenizer_files.tokenizer_json).unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        m.tokenizer_files.tokenizer_config.to_string(),
    )
    .unwrap();
    m.weights
        .save_safetensors(&d.join("model.safetensors"))
        .unwrap();
}

/// transformers writes trainer_state.json last: the checkpoint is complete.
fn write_marker(d: &Path, step: u64, max_steps: u64) {
    let history: Vec<serde_json::Value> = (1..=step)
        .map(|s| serde_json::json!({"step": s, "loss": 3.0 - s as f64 * 0.1, "learning_rate": 1e-3, "grad_norm": 1.0, "epoch": s as f64 / max_steps as f64}))
        .collect();
    std::fs::write(
        d.join("trainer_state.json"),
        serde_json::json!({"global_step": step, "max_steps": max_steps, "log_history": history})
            .to_string(),
    )
    .unwrap();
}

fn probes(log: &Path) -> Vec<ProbeEvent> {
    if !log.exists() {
        return Vec::new();
    }
    read_log(log)
        .unwrap()
        .0
        .into_iter()
        .filter_map(|e| match e {
            Event::Probe(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir` but the trace's folder, with size and mtime.
fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "driftui") {
                continue;
            }
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(p, (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

fn options(dir: &Path) -> TraceOptions {
    let mut o = TraceOptions::new(vec![dir.to_path_buf()]);
    o.questions_per_topic = 1;
    o.settle = Duration::from_millis(300);
    o
}

#[test]
fn checkpoints_written_during_a_trace_are_probed_once_each_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sft_out");
    std::fs::create_dir(&out).unwrap();
    let m = micro();
    let opts = options(&out);
    let log = opts.trace_dir().join("events.jsonl");
    let stop = Arc::new(AtomicBool::new(false));
    let news = Arc::new(std::sync::Mutex::new(Vec::<TraceNews>::new()));
    let (o, s, n) = (opts.clone(), stop.clone(), news.clone());
    let tracer = std::thread::spawn(move || {
        run_trace(&o, &s, &mut |x| n.lock().unwrap().push(x)).map_err(|e| format!("{e:#}"))
    });

    // A half-written checkpoint: weights there, trainer_state.json not yet.
    let c2 = out.join("checkpoint-2");
    write_weights(&m, &c2);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(probes(&log).is_empty(), "probed before it was complete");
    assert!(news
        .lock()
        .unwrap()
        .iter()
        .any(|x| matches!(x, TraceNews::Waiting { checkpoint, why } if checkpoint.ends_with("checkpoint-2") && why.contains("trainer_state.json"))));
    write_marker(&c2, 2, 6);
    wait_for("checkpoint-2 probed", || probes(&log).len() == 1);

    // A corrupted checkpoint fails alone; the next one is probed.
    let c4 = out.join("checkpoint-4");
    write_weights(&m, &c4);
    std::fs::write(c4.join("model.safetensors"), b"not safetensors at all").unwrap();
    write_marker(&c4, 4, 6);
    wait_for("checkpoint-4 tried", || probes(&log).len() == 2);
    let before = files(&out);
    let c6 = out.join("checkpoint-6");
    write_weights(&m, &c6);
    write_marker(&c6, 6, 6);
    // max_steps reached and everything probed: the trace ends by itself.
    let summary = tracer.join().unwrap().unwrap();
    assert!(summary.trainers_done);
    assert_eq!((summary.probed, summary.failed), (2, 1));

    let got = probes(&log);
    let steps: Vec<u64> = got.iter().map(|p| p.step).collect();
    assert_eq!(steps, [2, 4, 6], "each once, in step order");
    assert!(got[0].error.is_none() && !got[0].topics.is_empty());
    let err = got[1].error.as_deref().expect("the corrupted one failed");
    assert!(err.contains("checkpoint-4"), "{err}");
    assert!(got[2].error.is_none());
    // The trainer's files are as they were; the trace wrote only its folder.
    let mut after = files(&out);
    after.retain(|p, _| !p.starts_with(&c6));
    assert_eq!(before, after);

    // A restart probes nothing that was probed; the failed one is tried again.
    std::fs::remove_dir_all(&c4).unwrap();
    write_weights(&m, &c4);
    write_marker(&c4, 4, 6);
    let mut again = options(&out);
    again.once = true;
    let s2 = run_trace(&again, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((s2.probed, s2.failed, s2.skipped_as_done), (1, 0, 2));
    let all: Vec<(u64, bool)> = probes(&log)
        .iter()
        .map(|p| (p.step, p.error.is_none()))
        .collect();
    assert_eq!(all, [(2, true), (4, false), (6, true), (4, true)]);
    let s3 = run_trace(&again, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((s3.probed, s3.failed, s3.skipped_as_done), (0, 0, 3));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

/// A copy of a committed TRL run, with the tokenizer files the fixture
/// script left out (every checkpoint of a real run carries them).
fn trl_copy(name: &str, into: &Path) -> PathBuf {
    let dst = into.join(name);
    let tok = driftui::model::builtin::TOKENIZER_JSON;
    let tc = driftui::model::builtin::tokenizer_config().to_string();
    let mut stack = vec![(fixture(name), dst.clone())];
    while let Some((from, to)) = stack.pop() {
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap().flatten() {
            let p = e.path();
            let t = to.join(e.file_name());
            if p.is_dir() {
                std::fs::create_dir_all(&t).unwrap();
                std::fs::write(t.join("tokenizer.json"), tok).unwrap();
                std::fs::write(t.join("tokenizer_config.json"), &tc).unwrap();
                stack.push((p, t));
            } else {
                std::fs::copy(&p, &t).unwrap();
            }
        }
    }
    dst
}

#[test]
fn a_real_trl_pipeline_is_traced_and_an_adapter_without_its_base_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let sft = trl_copy("trl-sft", tmp.path());
    let dpo = trl_copy("trl-dpo-lora", tmp.path());
    let mut opts = TraceOptions::new(vec![sft.clone(), dpo.clone()]);
    opts.questions_per_topic = 1;
    opts.settle = Duration::ZERO;
    opts.once = true;
    let s = run_trace(&opts, &AtomicBool::new(false), &mut |_| {}).unwrap();
    // The adapters name a base that is gone: they fail, naming it and --base.
    assert_eq!((s.probed, s.failed), (3, 3));
    let log = sft.join("driftui/events.jsonl");
    let got = probes(&log);
    let failed: Vec<&str> = got.iter().filter_map(|p| p.error.as_deref()).collect();
    assert_eq!(failed.len(), 3);
    for e in &failed {
        assert!(e.contains("sft-final") && e.contains("--base"), "{e}");
    }
    // Given the base, a restart probes the adapters and nothing else.
    opts.base = Some(sft.join("checkpoint-6").display().to_string());
    let s = run_trace(&opts, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((s.probed, s.failed, s.skipped_as_done), (3, 0, 3));
    let placed: Vec<(usize, u64)> = probes(&log)
        .iter()
        .filter(|p| p.error.is_none())
        .map(|p| (p.phase, p.step))
        .collect();
    assert_eq!(placed, [(0, 2), (0, 4), (0, 6), (1, 2), (1, 4), (1, 6)]);

    // One view: the trainers' steps and the trace's probes on one axis.
    let view = driftui::rundir::view::locate_view(&sft).unwrap();
    let driftui::rundir::view::RunView::Foreign(run) = view else {
        panic!("{view:?}")
    };
    assert_eq!(run.dirs.len(), 2);
    let events = run.pipeline().poll().unwrap().events;
    let probe_steps: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Probe(p) if p.error.is_none() => Some(p.global_step),
            _ => None,
        })
        .collect();
    assert_eq!(probe_steps, [2, 4, 6, 8, 10, 12]);
    let data = driftui::report::RunData::from_events(&events);
    assert_eq!(data.phases.len(), 2);
    assert_eq!(data.phases[1].start, 6);
    assert_eq!(data.loss.len(), 12);
    assert!(!data.drift.rows().is_empty());
}

#[test]
fn checkpoints_that_need_a_converter_or_another_architecture_fail_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds_out");
    let m = micro();
    // DeepSpeed ZeRO: shards and the script to gather them, no weights.
    let ds = out.join("checkpoint-2");
    std::fs::create_dir_all(ds.join("global_step2")).unwrap();
    std::fs::write(ds.join("global_step2/mp_rank_00_model_states.pt"), b"x").unwrap();
    std::fs::write(ds.join("latest"), "global_step2").unwrap();
    std::fs::write(ds.join("zero_to_fp32.py"), "").unwrap();
    write_marker(&ds, 2, 8);
    // torch DCP.
    let dcp = out.join("checkpoint-4");
    std::fs::create_dir_all(&dcp).unwrap();
    std::fs::write(dcp.join(".metadata"), b"x").unwrap();
    std::fs::write(dcp.join("__0_0.distcp"), b"x").unwrap();
    write_marker(&dcp, 4, 8);
    // An architecture driftui does not run.
    let gpt2 = out.join("checkpoint-6");
    write_weights(&m, &gpt2);
    let mut cfg = m.cfg.to_hf_json();
    cfg["model_type"] = serde_json::json!("gpt2");
    std::fs::write(gpt2.join("config.json"), cfg.to_string()).unwrap();
    write_marker(&gpt2, 6, 8);
    let ok = out.join("checkpoint-8");
    write_weights(&m, &ok);
    write_marker(&ok, 8, 8);
    let mut opts = options(&out);
    opts.settle = Duration::ZERO;
    opts.once = true;
    let s = run_trace(&opts, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((s.probed, s.failed), (1, 3));
    let got = probes(&opts.trace_dir().join("events.jsonl"));
    let errs: Vec<String> = got
        .iter()
        .map(|p| p.error.clone().unwrap_or_default())
        .collect();
    assert!(errs[0].contains("zero_to_fp32.py"), "{}", errs[0]);
    assert!(errs[1].contains("dcp_to_torch"), "{}", errs[1]);
    assert!(errs[2].contains("gpt2"), "{}", errs[2]);
    assert!(errs[3].is_empty());
}

#[test]
fn a_directory_that_is_no_trainers_output_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    let opts = options(tmp.path());
    let err = run_trace(&opts, &AtomicBool::new(false), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("checkpoint-N"),
        "{err}"
    );
    assert!(!tmp.path().join("driftui").exists());
    let err = run_trace(
        &options(&tmp.path().join("nope")),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not a directory"), "{err}");
}

fn driftui(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_driftui"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_line_prints_progress_with_an_eta_and_refuses_what_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let m = micro();
    for step in 1..=3 {
        let c = out.join(format!("checkpoint-{step}"));
        write_weights(&m, &c);
        write_marker(&c, step, 3);
    }
    let dir = out.to_str().unwrap();
    let o = driftui(&[
        "trace",
        dir,
        "--headless",
        "--settle",
        "0",
        "--questions-per-topic",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("trace: out/checkpoint-1 (phase 1, step 1): probed in"),
        "{err}"
    );
    assert!(err.contains("2 waiting, ETA "), "{err}");
    assert!(
        err.contains(
            "trace: 3 probed, 0 failed, 0 probed before; the trainers reached their last steps"
        ),
        "{err}"
    );
    // The report of the traced run goes into the trace's folder.
    let o = driftui(&["report", dir]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("driftui/report/metrics.csv").is_file());
    assert!(out.join("driftui/report/drift.md").is_file());
    // Replay reads driftui's own logs: it points at watch.
    let o = driftui(&["replay", dir]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success() && err.contains("driftui watch"),
        "{err}"
    );
    // A directory of something else: what was found, what was expected.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("data.csv"), "a,b\n").unwrap();
    for cmd in ["watch", "report"] {
        let o = driftui(&[cmd, other.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{cmd}");
        assert!(
            err.contains("it holds data.csv") && err.contains("trainer_log.jsonl (LLaMA-Factory)"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        1,
        "nothing written"
    );
}
