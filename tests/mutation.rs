//! Mutation tests: the shipped recipes and the fixture event logs, mutated
//! (numbers, strings, keys and lines swapped for awkward ones, bytes flipped,
//! lines cut), go through recipe validation, the log reader, the replay
//! loader (and a frame of the dashboard), and the report. No input may panic
//! or hang: each gives a result, or an error that says where (a recipe's
//! `file:line:col`, a log's file).
//!
//! Bounded for CI: a fixed seed and `DRIFTUI_MUTATIONS` cases per target
//! (default below, about a minute on two cores). A longer run:
//!
//! ```text
//! DRIFTUI_MUTATIONS=100000 cargo test --test suite mutation:: -- --nocapture
//! ```
//!
//! Every panic found here has a regression test of its own, in the module
//! that was fixed.

use driftui::data::{Batcher, TokenSeq};
use driftui::events::{read_log, LogReader};
use driftui::recipe::{self, Recipe};
use driftui::report::{self, RunData};
use driftui::train::phase::{Phase, PhaseData};
use driftui::train::schedule::lr_at;
use driftui::tui::action::Mode;
use driftui::tui::app::App;
use driftui::tui::replay::Replay;
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cases per target when `DRIFTUI_MUTATIONS` is not set.
const DEFAULT_RECIPE_CASES: u32 = 3000;
const DEFAULT_LOG_CASES: u32 = 600;
/// A case that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(30);

fn cases(default: u32) -> u32 {
    std::env::var("DRIFTUI_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A runner whose cases are the same on every run.
fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Values that have broken parsers and size arithmetic before.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "4294967296",
    "65536",
    "65537",
    "1099511627777",
    "1e308",
    "-1e308",
    "1e-320",
    "0.0",
    "-0.0",
    "0.5",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "null",
    "true",
    "\"7\"",
    "[]",
    "{}",
    "[1, 2]",
];
const STRINGS: &[&str] = &[
    "\"\"",
    "\" \"",
    "\".\"",
    "\"..\"",
    "\"a/b\"",
    "\".hidden\"",
    "\"\\u0000\"",
    "\"\\n\"",
    "\"Zürich → Genève\"",
    "\"builtin:micro\"",
    "\"builtin:nope\"",
    "\"hf:\"",
    "\"gguf:\"",
    "\"sft\"",
    "\"dpo\"",
    "\"kto\"",
    "\"simpo\"",
    "\"cpo\"",
    "\"orpo\"",
    "\"choice\"",
    "\"generate\"",
    "\"all\"",
    "\"newest\"",
    "\"cosine\"",
    "\"wsd\"",
    "\"keep_end\"",
    "\"cdpo\"",
    "\"robust\"",
    "\"cuda:99999999999999999999\"",
    "\"{{ nope\"",
];
/// Whole lines to insert: keys of every table with awkward values, and
/// tables out of place.
const LINES: &[&str] = &[
    "batch_size = 9223372036854775807",
    "grad_accum = 65536",
    "max_len = 1048576",
    "steps = 1099511627776",
    "epochs = 1e300",
    "epochs = 1e-300",
    "warmup_steps = 18446744073709551615",
    "warmup_ratio = 1.0",
    "decay_ratio = 1.0",
    "snapshot_every = 1",
    "keep_snapshots = 1",
    "optimizer_state = \"all\"",
    "weight_decay = 1e308",
    "max_grad_norm = inf",
    "beta = 1e-300",
    "label_smoothing = 0.49999",
    "loss_type = \"ipo\"",
    "simpo_gamma = 1e6",
    "gamma = 0",
    "max_length = 8",
    "every = 1",
    "questions_per_topic = 1",
    "samples = 1024",
    "max_tokens = 65536",
    "temperature = 1e308",
    "top_p = 1e-300",
    "calibrate = false",
    "judge = \"openai:http://127.0.0.1:9/v1#m\"",
    "lora = { rank = 16384, alpha = 1e-300 }",
    "lora = { rank = 1, targets = [] }",
    "lora = { rank = 1, targets = [\"all-linear\", \"q_proj\"] }",
    "[probe]",
    "[[phase]]",
    "[run]",
    "[model]",
    "[model.lora]",
    "name = \"x\"",
    "x = 1",
    "",
    "#",
    "[",
    "\"",
];

/// One change to a text, by line.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the `n`-th number (mod their count) with `NUMBERS[v]`.
    Number(usize, usize),
    /// Replace the `n`-th quoted string with `STRINGS[v]`.
    String(usize, usize),
    /// Insert `LINES[v]` before line `n`.
    Insert(usize, usize),
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Set byte `n` to `b`.
    Byte(usize, u8),
    /// Cut the text at byte `n`.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0..NUMBERS.len()).prop_map(|(n, v)| Edit::Number(n, v)),
        3 => (any::<usize>(), 0..STRINGS.len()).prop_map(|(n, v)| Edit::String(n, v)),
        4 => (any::<usize>(), 0..LINES.len()).prop_map(|(n, v)| Edit::Insert(n, v)),
        2 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Edit::Byte(n, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Byte ranges of the tokens `is_start` / `token_end` find.
fn spans(text: &str, number: bool) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if number && (b[i].is_ascii_digit() || b[i] == b'-') {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b"+-._".contains(&b[i])) {
                i += 1;
            }
            out.push((s, i));
        } else if !number && b[i] == b'"' {
            let s = i;
            i += 1;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

fn apply(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut text = text.to_string();
    for e in edits {
        let lines = || text.split('\n').map(str::to_string).collect::<Vec<_>>();
        match *e {
            Edit::Number(n, v) | Edit::String(n, v) => {
                let number = matches!(e, Edit::Number(..));
                let s = spans(&text, number);
                if !s.is_empty() {
                    let (a, b) = s[n % s.len()];
                    let with = if number { NUMBERS[v] } else { STRINGS[v] };
                    text.replace_range(a..b, with);
                }
            }
            Edit::Insert(n, v) => {
                let mut l = lines();
                let at = n % (l.len() + 1);
                l.insert(at, LINES[v].to_string());
                text = l.join("\n");
            }
            Edit::Delete(n) => {
                let mut l = lines();
                l.remove(n % l.len());
                text = l.join("\n");
            }
            Edit::Duplicate(n) => {
                let mut l = lines();
                let i = n % l.len();
                l.insert(i, l[i].clone());
                text = l.join("\n");
            }
            Edit::Swap(a, b) => {
                let mut l = lines();
                let n = l.len();
                l.swap(a % n, b % n);
                text = l.join("\n");
            }
            // Byte edits leave the UTF-8 world: finish on bytes.
            Edit::Byte(..) | Edit::Truncate(_) => {}
        }
    }
    let mut bytes = text.into_bytes();
    for e in edits {
        match *e {
            Edit::Byte(n, b) if !bytes.is_empty() => {
                let i = n % bytes.len();
                bytes[i] = b;
            }
            Edit::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

/// Watches the cases: a case that makes no progress for [`HANG`] fails
/// the test with its input.
struct Watchdog {
    done: Arc<AtomicU64>,
    current: Arc<Mutex<Case>>,
}

/// The case under way: the mutations, and the input they made.
type Case = (String, Vec<u8>);

impl Watchdog {
    fn run<F>(name: &str, work: F) -> u64
    where
        F: FnOnce(Arc<AtomicU64>, Arc<Mutex<Case>>) + Send + 'static,
    {
        let w = Watchdog {
            done: Arc::new(AtomicU64::new(0)),
            current: Arc::new(Mutex::new(Case::default())),
        };
        let (done, current) = (Arc::clone(&w.done), Arc::clone(&w.current));
        let started = Instant::now();
        let worker = std::thread::spawn(move || work(done, current));
        let mut last = (0, Instant::now());
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
            let n = w.done.load(Ordering::Relaxed);
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() > HANG {
                let (edits, input) = w.current.lock().map(|c| c.clone()).unwrap_or_default();
                let kept = std::env::temp_dir().join(format!("driftui-mutation-hang-{name}"));
                let _ = std::fs::write(&kept, &input);
                panic!(
                    "{name}: case {n} ran past {HANG:?} (a hang): {edits}; its input is in {}",
                    kept.display()
                );
            }
        }
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
        let n = w.done.load(Ordering::Relaxed);
        eprintln!(
            "{name}: {n} mutated inputs in {:.1} s, no panic, no hang",
            started.elapsed().as_secs_f64()
        );
        n
    }
}

/// `LINE:COL: message` at the start of an error.
fn located(msg: &str) -> bool {
    let mut parts = msg.splitn(3, ':');
    let num = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.parse::<u32>().is_ok());
    num(parts.next()) && num(parts.next()) && parts.next().is_some_and(|m| m.len() > 1)
}

/// What a validated recipe's sizes drive before any model exists: step
/// counts, the data order at the last micro-batch, warmup and schedules.
fn exercise(r: &Recipe) {
    for (pi, cfg) in r.phases.iter().enumerate() {
        let rows = 37;
        let seq = TokenSeq {
            ids: vec![1, 2, 3],
            trained: vec![false, true, true],
        };
        let phase = Phase::new(cfg, PhaseData::Sft(vec![seq; rows]));
        let _ = cfg.objective();
        let _ = cfg.cut();
        let mut batcher = Batcher::new(rows, r.run.seed, pi, cfg.shuffle);
        let accum = cfg.grad_accum as u64;
        let last_micro = (phase.steps - 1) * accum + (accum - 1);
        for m in [0, last_micro] {
            let idx = batcher.micro_batch(m, cfg.batch_size);
            assert_eq!(idx.len(), cfg.batch_size);
            assert!(idx.iter().all(|&i| i < rows));
        }
        for done in [0, phase.warmup, phase.steps - 1] {
            let lr = lr_at(
                cfg.schedule,
                cfg.lr(),
                done,
                phase.warmup,
                phase.steps,
                cfg.decay(phase.steps),
            );
            assert!(lr.is_finite() && lr >= 0.0, "lr {lr} at {done}");
        }
    }
}

#[test]
fn mutated_recipes_validate_or_fail_at_a_line_and_column() {
    let mut bases = Vec::new();
    for e in std::fs::read_dir(root().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            bases.push(std::fs::read_to_string(&p).unwrap());
        }
    }
    bases.sort();
    assert!(bases.len() >= 4);
    let n = cases(DEFAULT_RECIPE_CASES);
    let total = Watchdog::run("recipes", move |done, current| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mutated.toml");
        let strategy = (0..bases.len(), prop::collection::vec(edit(), 1..5));
        let result = runner(n, 7).run(&strategy, |(base, edits)| {
            let bytes = apply(&bases[base], &edits);
            *current.lock().unwrap() = (format!("base {base}, {edits:?}"), bytes.clone());
            done.fetch_add(1, Ordering::Relaxed);
            std::fs::write(&file, &bytes).unwrap();
            match recipe::load(&file) {
                Ok(loaded) => exercise(&loaded.recipe),
                Err(err) => {
                    let msg = err.to_string();
                    let at = msg
                        .strip_prefix(&format!("{}:", file.display()))
                        .filter(|rest| located(rest));
                    // Bytes that are not UTF-8 cannot be read as a recipe.
                    let unreadable = msg.starts_with("cannot read the recipe");
                    if at.is_none() && !unreadable {
                        return Err(TestCaseError::fail(format!("unlocated: {msg}")));
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    });
    assert!(total >= n as u64);
}

/// Read a mutated log every way driftui reads one.
fn read_every_way(log: &Path, bytes: &[u8], chunk: usize, out: &Path) -> Result<(), String> {
    match read_log(log) {
        Ok((events, _)) => {
            let data = RunData::from_events(&events);
            let rows = data.drift.rows();
            let _ = report::drift_markdown(&data, &rows);
            let _ = report::drift_csv(&rows);
            let _ = report::drift_json(&data, &rows);
            report::plot::stance_svg(&data).map_err(|e| format!("stance plot: {e:#}"))?;
            report::plot::loss_svg(&data).map_err(|e| format!("loss plot: {e:#}"))?;
            // The whole command, PNGs included, on a tenth of the cases.
            if chunk.is_multiple_of(10) {
                if let Err(e) = report::write_report(log, Some(out)) {
                    let msg = format!("{e:#}");
                    if !msg.contains(&log.display().to_string()) {
                        return Err(format!("report error without its file: {msg}"));
                    }
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if !msg.contains(&log.display().to_string()) || !msg.contains("line ") {
                return Err(format!("read error without file and line: {msg}"));
            }
        }
    }
    // As `watch` reads a growing log: in chunks.
    let mut reader = LogReader::new();
    let mut events = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        if reader.feed(c, &mut events).is_err() {
            break;
        }
    }
    let _ = reader.finish(&mut events);

    match Replay::open(log) {
        Ok((mut replay, model)) => {
            let end = replay.len().saturating_sub(1);
            let mut app = App::new(Mode::Replay, Theme::default(), "mutated");
            app.run = model;
            replay
                .seek(end / 2, &mut app.run)
                .map_err(|e| format!("seek: {e:#}"))?;
            replay.seek(end, &mut app.run).ok();
            let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
            t.draw(|f| ui::draw(f, &app)).unwrap();
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if !msg.contains(&log.display().to_string()) {
                return Err(format!("replay error without its file: {msg}"));
            }
        }
    }
    Ok(())
}

#[test]
fn mutated_event_logs_read_replay_and_report_without_panic() {
    let dir = root().join("tests/fixtures/events");
    let mut bases: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect();
    bases.sort();
    assert!(bases.len() >= 4);
    let texts: Vec<String> = bases.into_iter().map(|b| b.1).collect();
    let n = cases(DEFAULT_LOG_CASES);
    let total = Watchdog::run("event logs", move |done, current| {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let log = run.join("events.jsonl");
        let out = tmp.path().join("report");
        let strategy = (
            0..texts.len(),
            prop::collection::vec(edit(), 1..6),
            1usize..4096,
        );
        let result = runner(n, 11).run(&strategy, |(base, edits, chunk)| {
            let bytes = apply(&texts[base], &edits);
            *current.lock().unwrap() = (
                format!("base {base}, chunk {chunk}, {edits:?}"),
                bytes.clone(),
            );
            done.fetch_add(1, Ordering::Relaxed);
            std::fs::write(&log, &bytes).unwrap();
            read_every_way(&log, &bytes, chunk, &out).map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    });
    assert!(total >= n as u64);
}

/// The mutations reach what they aim at: numbers, strings, lines.
#[test]
fn edits_do_what_they_say() {
    let text = "a = 1\nb = \"x\"\nc = -2.5e3\n";
    assert_eq!(
        apply(text, &[Edit::Number(1, 4)]),
        b"a = 1\nb = \"x\"\nc = 9223372036854775807\n"
    );
    assert_eq!(
        apply(text, &[Edit::String(0, 0)]),
        b"a = 1\nb = \"\"\nc = -2.5e3\n"
    );
    assert_eq!(apply(text, &[Edit::Delete(0)]), b"b = \"x\"\nc = -2.5e3\n");
    assert_eq!(
        apply(text, &[Edit::Insert(1, 0)]),
        b"a = 1\nbatch_size = 9223372036854775807\nb = \"x\"\nc = -2.5e3\n"
    );
    assert_eq!(apply(text, &[Edit::Truncate(3)]), b"a =");
    assert!(located("3:7: lr must be in (0, 1]"));
    assert!(!located("lr must be in (0, 1]"));
    assert!(!located("3:: x"));
}
