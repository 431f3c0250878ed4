//! The default build on CPUs other than the one under it, through QEMU's
//! user-mode emulator (Debian's `qemu-user`: `qemu-x86_64 -cpu MODEL` runs
//! this machine's x86-64 code with that model's CPUID and instructions):
//!
//! - an AMD EPYC-Rome, AVX2 and FMA without AVX-512: the binary with the
//!   `avx512` feature must pick gemm's AVX2 kernels at run time, and the
//!   panel products that gemm's depth blocks, so that their bits stay
//!   gemm's;
//! - an Intel Nehalem, without AVX: gemm's portable kernels, no panel
//!   product, and the run's log says so once.
//!
//! A training run on each gives the losses of this machine's own run up to
//! the rounding of another summation order. QEMU runs the vector code far
//! slower than the CPU does, so the checks are small. Without
//! `qemu-x86_64` (or `DRIFTUI_QEMU`, its path) the test says SKIPPED,
//! unless `DRIFTUI_REQUIRE_QEMU=1`, as `.ci/run` sets it: then its absence
//! fails.

use crate::common::micro_sft_recipe;
use crate::fused::{bits, rand_tensor};
use driftui::events::{read_log, AlertLevel, Event};
use driftui::model::{fused, streamed};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernels `kernels_on_this_cpu` must find (set by the test below for
/// its emulated runs).
const EXPECT: &str = "DRIFTUI_EXPECT_KERNELS";

/// What this CPU runs, checked at shapes small enough for an emulator: the
/// kernels named (and, under `DRIFTUI_EXPECT_KERNELS`, the ones expected)
/// and the panel products' bits against gemm's from W
/// where the rule lets a product read panels (depths of several of gemm's
/// blocks, ragged widths and row counts), none where the CPU has no FMA.
#[test]
fn kernels_on_this_cpu() {
    let kernels = streamed::matrix_kernels();
    if let Ok(want) = std::env::var(EXPECT) {
        assert_eq!(kernels, want, "the kernels this CPU runs");
    }
    assert_eq!(streamed::available(), kernels != "portable");
    let mut exact = 0;
    for (rows, input, out) in [(13, 2500, 40), (7, 1300, 50), (40, 576, 64), (65, 700, 33)] {
        let w = rand_tensor(&[out, input], 0.05, (rows * out) as u64);
        let x = rand_tensor(&[rows, input], 1.0, (rows + input) as u64);
        let panels = streamed::Panels::of_weight(
            &w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            (out, input),
        );
        for threads in [1, 2] {
            if !fused::transposed_product_is_exact((rows, out, input), threads) {
                continue;
            }
            exact += 1;
            let plain = fused::product_on(&x, false, &w, true, threads).unwrap();
            let from_panels = fused::linear_transposed_on(&x, &panels, threads).unwrap();
            assert!(
                bits(&plain) == bits(&from_panels),
                "{rows} × {input} → {out} on {threads} threads ({kernels} kernels)"
            );
        }
    }
    if kernels == "portable" {
        assert_eq!(exact, 0, "panel products on a CPU without FMA");
    } else {
        assert!(exact >= 6, "only {exact} products read panels");
    }
}

/// `qemu-x86_64`, or why there is none to run.
fn qemu() -> Option<PathBuf> {
    let found = std::env::var_os("DRIFTUI_QEMU")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("qemu-x86_64"))
                    .find(|q| q.is_file())
            })
        })
        .filter(|q| q.is_file());
    if found.is_none() {
        let why = "qemu-x86_64 is absent (Debian: apt-get install qemu-user)";
        if std::env::var("DRIFTUI_REQUIRE_QEMU").is_ok_and(|v| v == "1") {
            panic!("{why}, and DRIFTUI_REQUIRE_QEMU=1");
        }
        eprintln!("SKIPPED: {why}; the default build is not checked on emulated CPUs");
    }
    found
}

/// The micro recipe's run under `prefix` (an emulator and its CPU, or
/// nothing): each step's loss, and the warnings of its log.
fn run_micro(dir: &Path, name: &str, prefix: &[&str]) -> (Vec<f64>, Vec<String>) {
    let runs = dir.join(name);
    let recipe = dir.join(format!("{name}.toml"));
    std::fs::write(&recipe, micro_sft_recipe(name, &runs)).unwrap();
    let driftui = env!("CARGO_BIN_EXE_driftui");
    let (program, args): (&str, Vec<&str>) = match prefix {
        [] => (driftui, vec![]),
        [program, rest @ ..] => (program, [rest, &[driftui]].concat()),
    };
    let out = Command::new(program)
        .args(args)
        .args(["train", recipe.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {err}");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path();
    let (events, _) = read_log(&run.join("events.jsonl")).unwrap();
    let mut losses = Vec::new();
    let mut warnings = Vec::new();
    for e in events {
        match e {
            Event::Step(s) => losses.push(s.loss),
            Event::Alert(a) if a.level == AlertLevel::Warning => warnings.push(a.message),
            _ => {}
        }
    }
    (losses, warnings)
}

/// The default build on an emulated AVX2 CPU and an emulated pre-AVX one:
/// the kernels each should pick (`kernels_on_this_cpu` and
/// `fused::the_kernels_follow_the_build_and_the_cpu` under the emulator),
/// and a three-step run whose losses equal this machine's up to rounding,
/// with the warning about the portable kernels exactly where they run.
#[test]
fn the_default_build_runs_on_an_avx2_and_a_pre_avx_cpu() {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return;
    }
    let Some(qemu) = qemu() else { return };
    let qemu = qemu.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (native, native_warnings) = run_micro(dir.path(), "native", &[]);
    assert_eq!(native.len(), 3);
    let this = std::env::current_exe().unwrap();
    for (cpu, kernels) in [("EPYC-Rome", "AVX2"), ("Nehalem", "portable")] {
        let out = Command::new(qemu)
            .args(["-cpu", cpu])
            .arg(&this)
            // With the test of the kernels' names and the log's warning
            // against the CPU's features.
            .args([
                "cpus::kernels_on_this_cpu",
                "fused::the_kernels_follow_the_build_and_the_cpu",
                "--exact",
                "--test-threads",
                "1",
            ])
            .env(EXPECT, kernels)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("2 passed"),
            "{cpu}: {text}"
        );
        let (losses, warnings) = run_micro(dir.path(), cpu, &[qemu, "-cpu", cpu]);
        assert_eq!(losses.len(), native.len(), "{cpu}");
        for (step, (a, b)) in losses.iter().zip(&native).enumerate() {
            assert!(
                ((a - b) / b).abs() < 1e-5,
                "{cpu}, step {}: loss {a} here, {b} natively",
                step + 1
            );
        }
        let portable: Vec<_> = warnings
            .iter()
            .filter(|w| w.contains("gemm's portable kernels"))
            .collect();
        assert_eq!(
            portable.len(),
            usize::from(kernels == "portable"),
            "{cpu}: {warnings:?}"
        );
        // Otherwise the same warnings as natively (the data's).
        let rest: Vec<_> = warnings
            .iter()
            .filter(|w| !w.contains("gemm's portable kernels"))
            .collect();
        let native_rest: Vec<_> = native_warnings
            .iter()
            .filter(|w| !w.contains("no AVX-512 kernels"))
            .collect();
        assert_eq!(rest, native_rest, "{cpu}");
    }
}
