//! MKL's sgemm as the fused kernels call it (`model::blas`), and candle's
//! backward pass as driftui patches it (vendor/README.md).
//!
//! The MKL checks run where the library is: `DRIFTUI_MKL`, or `models/mkl/`
//! as `scripts/fetch-mkl.sh` (run by CI) leaves it; elsewhere they say they
//! skipped. The refusals and the backward checks run everywhere.

use crate::common;

use candle_core::{Device, Tensor, Var};
use driftui::events::read_log;
use driftui::events::Event;
use driftui::model::blas::{Mkl, LIBRARY};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn mkl_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DRIFTUI_MKL").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mkl");
    dir.join(LIBRARY).is_file().then_some(dir)
}

fn mkl() -> Option<&'static Mkl> {
    static MKL: OnceLock<Option<Mkl>> = OnceLock::new();
    MKL.get_or_init(|| {
        let path = mkl_path()?;
        Some(Mkl::open(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())))
    })
    .as_ref()
}

fn skipped(test: &str) {
    eprintln!("{test}: skipped, no MKL (scripts/fetch-mkl.sh, or DRIFTUI_MKL)");
}

/// Deterministic values in [-0.5, 0.5).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// One product in a given layout against a float64 reference: `lhs_t` /
/// `rhs_t` store the operand transposed, `pad` widens every stored row (a
/// view into a wider matrix), and the destination's rows are padded too;
/// the padding must come back untouched. With `accumulate` the destination
/// holds values first and the product is added to them.
fn check_product(
    mkl: &Mkl,
    (m, n, k): (usize, usize, usize),
    (lhs_t, rhs_t): (bool, bool),
    pad: usize,
    accumulate: bool,
) {
    // op(lhs) is m × k: stored m rows of k (+pad), or k rows of m (+pad).
    let (l_rows, l_cols) = if lhs_t { (k, m) } else { (m, k) };
    let l_ld = l_cols + pad;
    let lhs = values(l_rows * l_ld, 1);
    let (l_rs, l_cs) = if lhs_t { (1, l_ld) } else { (l_ld, 1) };
    let (r_rows, r_cols) = if rhs_t { (n, k) } else { (k, n) };
    let r_ld = r_cols + pad;
    let rhs = values(r_rows * r_ld, 2);
    let (r_rs, r_cs) = if rhs_t { (1, r_ld) } else { (r_ld, 1) };
    let d_ld = n + pad;
    let mut dst = vec![f32::NAN; m * d_ld];
    let prior = values(m * n, 3);
    if accumulate {
        for i in 0..m {
            dst[i * d_ld..i * d_ld + n].copy_from_slice(&prior[i * n..(i + 1) * n]);
        }
    }
    // SAFETY: every stride above stays inside its buffer.
    let done = unsafe {
        mkl.product(
            (m, n, k),
            (dst.as_mut_ptr(), d_ld),
            (lhs.as_ptr(), l_rs, l_cs),
            (rhs.as_ptr(), r_rs, r_cs),
            accumulate,
        )
    };
    let what =
        format!("{m}×{k}·{k}×{n} lhs_t={lhs_t} rhs_t={rhs_t} pad={pad} accumulate={accumulate}");
    assert!(done, "{what}: MKL refused a CBLAS layout");
    let mut worst = 0f64;
    let mut scale = 0f64;
    for i in 0..m {
        for j in 0..n {
            let start = if accumulate {
                prior[i * n + j] as f64
            } else {
                0.0
            };
            let want: f64 = start
                + (0..k)
                    .map(|p| lhs[i * l_rs + p * l_cs] as f64 * rhs[p * r_rs + j * r_cs] as f64)
                    .sum::<f64>();
            let got = dst[i * d_ld + j] as f64;
            worst = worst.max((got - want).abs());
            scale = scale.max(want.abs());
        }
        for j in n..d_ld {
            assert!(dst[i * d_ld + j].is_nan(), "{what}: wrote into the padding");
        }
    }
    assert!(
        worst <= 1e-5 * scale.max(1.0),
        "{what}: off by {worst} (largest {scale})"
    );
}

#[test]
fn mkl_products_match_a_float64_reference_in_every_layout() {
    let Some(mkl) = mkl() else {
        return skipped("mkl_products_match_a_float64_reference_in_every_layout");
    };
    // SmolLM2-135M's training products (x Wᵀ, g W, gᵀ x at 128 rows), a
    // head's attention products, and degenerate sides of 1.
    let shapes = [
        (128, 1536, 576),
        (128, 576, 1536),
        (576, 1536, 128),
        (128, 64, 128),
        (37, 5, 64),
        (1, 300, 576),
        (300, 1, 7),
        (5, 7, 1),
        (1, 1, 1),
    ];
    for shape in shapes {
        for (lhs_t, rhs_t) in [(false, false), (false, true), (true, false), (true, true)] {
            for pad in [0, 3] {
                check_product(mkl, shape, (lhs_t, rhs_t), pad, false);
            }
            check_product(mkl, shape, (lhs_t, rhs_t), 3, true);
        }
    }
}

#[test]
fn mkl_leaves_a_layout_cblas_cannot_take_to_gemm() {
    let Some(mkl) = mkl() else {
        return skipped("mkl_leaves_a_layout_cblas_cannot_take_to_gemm");
    };
    let a = values(64, 3);
    let mut dst = vec![f32::NAN; 4];
    // A 2 × 2 operand read with strides (4, 2): neither is 1.
    // SAFETY: the largest index read is 1·4 + 1·2 = 6 < 64.
    let done = unsafe {
        mkl.product(
            (2, 2, 2),
            (dst.as_mut_ptr(), 2),
            (a.as_ptr(), 4, 2),
            (a.as_ptr(), 2, 1),
            false,
        )
    };
    assert!(!done);
    assert!(
        dst.iter().all(|x| x.is_nan()),
        "touched the destination: {dst:?}"
    );
}

#[test]
fn mkl_refuses_a_path_that_is_not_mkl() {
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", Mkl::open(dir.path()).unwrap_err());
    assert!(err.contains(LIBRARY) && err.contains("fetch-mkl"), "{err}");
    let missing = dir.path().join("nope.so");
    let err = format!("{:#}", Mkl::open(&missing).unwrap_err());
    assert!(err.contains("nope.so"), "{err}");
    // A real shared library without MKL's entry points.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file());
    if let Some(libm) = libm {
        let err = format!("{:#}", Mkl::open(libm).unwrap_err());
        assert!(err.contains("not mkl_rt"), "{err}");
    }
    // A file that is no library at all.
    let junk = dir.path().join("libmkl_rt.so.3");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let err = format!("{:#}", Mkl::open(dir.path()).unwrap_err());
    assert!(err.contains("could not open"), "{err}");
}

/// Train the three-step micro recipe with the binary, DRIFTUI_MKL as given;
/// (per-step losses, the run's alert messages).
fn micro_run(dir: &Path, name: &str, mkl: Option<&Path>) -> (Vec<f64>, Vec<String>) {
    let recipe = dir.join(format!("{name}.toml"));
    std::fs::write(&recipe, common::micro_sft_recipe(name, &dir.join("runs"))).unwrap();
    let out = dir.join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftui"));
    cmd.args([
        "train",
        recipe.to_str().unwrap(),
        "--headless",
        "--output",
        out.to_str().unwrap(),
    ]);
    match mkl {
        Some(p) => cmd.env("DRIFTUI_MKL", p),
        None => cmd.env_remove("DRIFTUI_MKL"),
    };
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let log = out.join("events.jsonl");
    let (events, _) = read_log(&log).unwrap();
    let mut losses = vec![];
    let mut alerts = vec![];
    for e in events {
        match e {
            Event::Step(s) => losses.push(s.loss),
            Event::Alert(a) => alerts.push(a.message),
            _ => {}
        }
    }
    (losses, alerts)
}

#[test]
fn training_on_mkl_gives_gemms_losses_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Asked for and missing: an error naming the variable and the path,
    // before anything trains.
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        common::micro_sft_recipe("bad", &dir.path().join("runs")),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_driftui"))
        .args(["train", recipe.to_str().unwrap(), "--headless"])
        .env("DRIFTUI_MKL", dir.path().join("no-such-dir"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("DRIFTUI_MKL") && err.contains("no-such-dir"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists(), "a run was started");

    let Some(path) = mkl_path() else {
        return skipped("training_on_mkl_gives_gemms_losses_and_says_so");
    };
    let (plain, plain_alerts) = micro_run(dir.path(), "gemm", None);
    let (mkl, mkl_alerts) = micro_run(dir.path(), "mkl", Some(&path));
    assert_eq!(plain.len(), 3);
    assert_eq!(mkl.len(), 3);
    for (a, b) in plain.iter().zip(&mkl) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "losses {plain:?} (gemm) vs {mkl:?} (MKL)"
        );
    }
    let says = |alerts: &[String]| alerts.iter().any(|m| m.contains("Math Kernel Library"));
    assert!(says(&mkl_alerts), "{mkl_alerts:?}");
    assert!(!says(&plain_alerts), "{plain_alerts:?}");
}

#[test]
fn backward_stores_first_gradients_without_aliasing_or_losing_views() {
    let dev = Device::Cpu;
    let x = Var::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev).unwrap();
    let v = Var::new(&[[0.5f32, -1., 2.], [1., 0., -3.]], &dev).unwrap();
    let w = Var::new(&[1f32, -2., 4.], &dev).unwrap();
    // (x + v): one gradient tensor reaches both; x gets more afterwards, so
    // v's must not change with it.
    let shared = (x.as_tensor() + v.as_tensor()).unwrap().sum_all().unwrap();
    let tripled = (x.as_tensor() * 3.0).unwrap().sum_all().unwrap();
    // A transposed, narrowed view: d/dx of Σ x[:, 1..3]² = 2x there.
    let view = x.as_tensor().t().unwrap().narrow(0, 1, 2).unwrap();
    let squares = (&view * &view).unwrap().sum_all().unwrap();
    // A broadcast and a concatenation: 4 and 2 per element of x.
    let broad = x
        .as_tensor()
        .sum_keepdim(1)
        .unwrap()
        .broadcast_as((2, 4))
        .unwrap()
        .sum_all()
        .unwrap();
    let cat = Tensor::cat(&[x.as_tensor(), x.as_tensor()], 0)
        .unwrap()
        .sum_all()
        .unwrap();
    // w reached once, through a broadcast multiply: its gradient is stored
    // as first computed.
    let once = x
        .as_tensor()
        .broadcast_mul(w.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap();
    let loss = (((((shared + tripled).unwrap() + squares).unwrap() + broad).unwrap() + cat)
        .unwrap()
        + once)
        .unwrap();
    let grads = loss.backward().unwrap();

    let gx = grads.get(x.as_tensor()).unwrap();
    let gv = grads.get(v.as_tensor()).unwrap();
    let gw = grads.get(w.as_tensor()).unwrap();
    assert!(gx.is_contiguous() && gv.is_contiguous() && gw.is_contiguous());
    let xs = [[1f32, 2., 3.], [4., 5., 6.]];
    let ws = [1f32, -2., 4.];
    let want_x: Vec<Vec<f32>> = (0..2)
        .map(|i| {
            (0..3)
                .map(|j| 1. + 3. + if j >= 1 { 2. * xs[i][j] } else { 0. } + 4. + 2. + ws[j])
                .collect()
        })
        .collect();
    assert_eq!(gx.to_vec2::<f32>().unwrap(), want_x);
    assert_eq!(gv.to_vec2::<f32>().unwrap(), vec![vec![1f32; 3]; 2]);
    // Σ over rows of x: 5, 7, 9.
    assert_eq!(gw.to_vec1::<f32>().unwrap(), vec![5f32, 7., 9.]);
}
