//! Intel MKL's `cblas_sgemm` for the fused kernels' f32 products, when the
//! user points `DRIFTUI_MKL` at the library (`libmkl_rt.so.3` from PyPI's
//! `mkl` wheel, or the directory holding it; `scripts/fetch-mkl.sh` puts it
//! in `models/mkl/`). Without it the products are gemm's, as always.
//!
//! Why: MKL is what PyTorch's CPU wheels multiply with. On an AMX Xeon
//! (2 cores), at SmolLM2-135M's training shapes, gemm's f32 kernels ran
//! 60–147 GFLOP/s where MKL's ran 107–231 (sequential, one block per
//! thread as driftui cuts them), so with gemm driftui's every other saving
//! was spent waiting on products. No maintained crate links MKL without
//! downloading it at build time, so it is opened at run time (libloading):
//! the default build needs nothing, and one binary serves machines with and
//! without it.
//!
//! MKL runs in its sequential layer: driftui cuts each product into one
//! block per thread itself ([`super::fused`]), so MKL's own threads would
//! only contend with rayon's.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library's file name in the `mkl` wheel (MKL 2025 and later).
pub const LIBRARY: &str = "libmkl_rt.so.3";

// CBLAS and MKL constants (mkl_cblas.h, mkl_service.h).
const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;
const THREADING_SEQUENTIAL: i32 = 1;
const INTERFACE_LP64: i32 = 0;

type Sgemm = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

/// An opened MKL: its `cblas_sgemm`, sequential.
pub struct Mkl {
    sgemm: Sgemm,
    version: String,
    path: PathBuf,
    // Keeps the library mapped for as long as `sgemm` may be called.
    _library: libloading::Library,
}

impl std::fmt::Debug for Mkl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mkl")
            .field("version", &self.version)
            .field("path", &self.path)
            .finish()
    }
}

impl Mkl {
    /// Open MKL at `path` (the library itself, or a directory holding
    /// [`LIBRARY`]) in its sequential threading layer.
    pub fn open(path: &Path) -> Result<Mkl> {
        let file = if path.is_dir() {
            path.join(LIBRARY)
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            bail!(
                "MKL: {} does not exist (expected {LIBRARY} from PyPI's `mkl` wheel; scripts/fetch-mkl.sh puts it in models/mkl/)",
                file.display()
            );
        }
        // SAFETY: loading MKL runs its initialisers, which only set up its
        // dispatch tables; the symbols below are its documented C API, each
        // read with its C signature.
        unsafe {
            let library = libloading::Library::new(&file)
                .with_context(|| format!("MKL: could not open {}", file.display()))?;
            let set_interface: unsafe extern "C" fn(i32) -> i32 =
                symbol(&library, &file, b"MKL_Set_Interface_Layer\0")?;
            set_interface(INTERFACE_LP64);
            let set_threading: unsafe extern "C" fn(i32) -> i32 =
                symbol(&library, &file, b"MKL_Set_Threading_Layer\0")?;
            if set_threading(THREADING_SEQUENTIAL) != THREADING_SEQUENTIAL {
                bail!(
                    "MKL: {} would not take its sequential layer (was it already used with another?)",
                    file.display()
                );
            }
            let version_string: unsafe extern "C" fn(*mut u8, i32) =
                symbol(&library, &file, b"MKL_Get_Version_String\0")?;
            let mut buf = [0u8; 256];
            version_string(buf.as_mut_ptr(), buf.len() as i32);
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let version = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            let sgemm: Sgemm = symbol(&library, &file, b"cblas_sgemm\0")?;
            let mkl = Mkl {
                sgemm,
                version,
                path: file,
                _library: library,
            };
            mkl.check()?;
            Ok(mkl)
        }
    }

    /// One product against its hand-computed value: a library that loads but
    /// multiplies wrongly (or not at all) is refused here, not found later in
    /// a loss curve.
    fn check(&self) -> Result<()> {
        let lhs = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        let rhs = [1.0f32, 0.5, -1.0, 2.0, 0.0, 1.0]; // 3 × 2
        let mut dst = [f32::NAN; 4];
        // SAFETY: 2 × 3 by 3 × 2 into 2 × 2, all row-major and in bounds.
        let done = unsafe {
            self.product(
                (2, 2, 3),
                (dst.as_mut_ptr(), 2),
                (lhs.as_ptr(), 3, 1),
                (rhs.as_ptr(), 2, 1),
                false,
            )
        };
        let want = [-1.0f32, 7.5, -1.0, 18.0];
        if !done || dst != want {
            bail!(
                "MKL at {}: a 2 × 3 · 3 × 2 product gave {dst:?}, not {want:?}",
                self.path.display()
            );
        }
        Ok(())
    }

    /// What the run's log says: the library's version and file.
    pub fn describe(&self) -> String {
        format!(
            "matrix products: {} ({}), sequential, one block per thread",
            self.version,
            self.path.display()
        )
    }

    /// MKL's own version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The library file opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `dst (m × n) = lhs (m × k) · rhs (k × n)` on this thread (`dst +=`
    /// when `accumulate`), in the arguments of [`super::fused`]'s one-thread
    /// product: destination (pointer, row stride; columns contiguous),
    /// operands (pointer, row stride, column stride). Returns false, touching
    /// nothing, when a
    /// layout is not one CBLAS takes (neither stride 1); the caller then
    /// uses gemm.
    ///
    /// # Safety
    /// As for gemm: every access the strides reach is inside its buffer,
    /// and no other thread touches the destination meanwhile.
    pub unsafe fn product(
        &self,
        (m, n, k): (usize, usize, usize),
        (dst, d_rs): (*mut f32, usize),
        (lhs, l_rs, l_cs): (*const f32, usize, usize),
        (rhs, r_rs, r_cs): (*const f32, usize, usize),
        accumulate: bool,
    ) -> bool {
        let fits = |x: usize| i32::try_from(x).is_ok();
        if m == 0
            || n == 0
            || k == 0
            || ![m, n, k, d_rs, l_rs, l_cs, r_rs, r_cs]
                .iter()
                .all(|&x| fits(x))
        {
            return false;
        }
        // A row-major operand of `rows × cols`, stored either as is (column
        // stride 1, leading dimension = row stride) or transposed (row stride
        // 1, leading dimension = column stride). A stride along a dimension
        // of size 1 is never used, so it is replaced by the smallest leading
        // dimension CBLAS accepts.
        let operand = |rows: usize, cols: usize, rs: usize, cs: usize| -> Option<(i32, usize)> {
            if cs == 1 || cols == 1 {
                let ld = if rows == 1 { cols } else { rs };
                (ld >= cols).then_some((NO_TRANS, ld))
            } else if rs == 1 || rows == 1 {
                let ld = if cols == 1 { rows } else { cs };
                (ld >= rows).then_some((TRANS, ld))
            } else {
                None
            }
        };
        let (Some((ta, lda)), Some((tb, ldb))) =
            (operand(m, k, l_rs, l_cs), operand(k, n, r_rs, r_cs))
        else {
            return false;
        };
        let ldc = if m == 1 { n } else { d_rs };
        if ldc < n {
            return false;
        }
        // beta 0 never reads the destination (uninitialised memory is fine).
        let beta = if accumulate { 1.0 } else { 0.0 };
        (self.sgemm)(
            ROW_MAJOR, ta, tb, m as i32, n as i32, k as i32, 1.0, lhs, lda as i32, rhs, ldb as i32,
            beta, dst, ldc as i32,
        );
        true
    }
}

/// The function `name` (NUL-terminated) in MKL's `library`, opened from `file`.
///
/// # Safety
/// `F` must be the symbol's C signature; the result must not outlive `library`.
unsafe fn symbol<F: Copy>(library: &libloading::Library, file: &Path, name: &[u8]) -> Result<F> {
    let f: libloading::Symbol<F> = library.get(name).with_context(|| {
        format!(
            "MKL: {} is not mkl_rt (no {})",
            file.display(),
            String::from_utf8_lossy(&name[..name.len() - 1])
        )
    })?;
    Ok(*f)
}

static ACTIVE: OnceLock<Option<Mkl>> = OnceLock::new();

/// The MKL the fused kernels multiply with, if [`configure`] opened one.
pub fn active() -> Option<&'static Mkl> {
    ACTIVE.get().and_then(Option::as_ref)
}

/// Open MKL where `DRIFTUI_MKL` says (once per process, before training):
/// `Ok(Some(line))` with a line for the run's log when it is in use,
/// `Ok(None)` when the variable is unset or empty, an error naming the path
/// when it is set but unusable (a user who asked for MKL is told, not
/// silently given gemm).
pub fn configure() -> Result<Option<String>> {
    let Some(path) = std::env::var_os("DRIFTUI_MKL").filter(|p| !p.is_empty()) else {
        let _ = ACTIVE.set(None);
        return Ok(None);
    };
    let mkl = Mkl::open(Path::new(&path)).context("DRIFTUI_MKL")?;
    let line = mkl.describe();
    let _ = ACTIVE.set(Some(mkl));
    Ok(Some(line))
}
