//! `x Wᵀ` for few rows of x from a copy of the frozen W laid out as gemm's
//! kernel reads it, packed once ([`Panels`]): no packing per call, and
//! gemm's bits.
//!
//! gemm packs the weight into column panels on every call. For the model's
//! no-grad products of few rows (a scoring pass at batch 1 multiplies 40
//! rows by each weight) that copy costs as much as the arithmetic: the
//! weight is read, written and read again for 40 multiply-adds per element.
//! A kept copy already in panel order, (out / 16) panels of (in × 16)
//! floats, is read once per product, sequentially.
//!
//! The sums are gemm's, element for element: gemm's x86 kernels (FMA, and
//! AVX-512 with its `x86-v4` kernels) sum each element over k as one chain
//! of fused multiply-adds from +0, in blocks of `kc` along k, writing the
//! first block's sum and adding each further block's to the destination
//! with one rounding. This module runs the same chain per element, with the
//! same `kc` (gemm-common's own `kernel_params` for the kernel gemm picks,
//! or its rule for products of at most 64 × 64), so the results are the
//! same bits whatever the vector width. gemm takes other paths for blocks
//! of one row or column, at most 16 × 16 elements, or k ≤ 2, and on CPUs
//! without FMA: [`exact_block`] says where this module's bits are gemm's,
//! and callers use gemm elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};

/// Floats per panel: one AVX-512 vector, two AVX2 ones.
pub const LANES: usize = 16;

/// A weight W (out × in) copied as `ceil(out / 16)` panels of (in × 16)
/// floats: panel p holds columns 16p.. of Wᵀ, row after row (the last panel
/// padded with zeros).
#[derive(Debug)]
pub struct Panels {
    data: Vec<f32>,
    out: usize,
    input: usize,
}

impl Panels {
    /// The panels of W, given row-major as (out × input).
    pub fn of_weight(w: &[f32], (out, input): (usize, usize)) -> Panels {
        assert_eq!(w.len(), out * input, "Panels::of_weight: shape");
        let panels = out.div_ceil(LANES);
        let mut data = vec![0f32; panels * input * LANES];
        if input == 0 {
            return Panels { data, out, input };
        }
        for (p, panel) in data.chunks_mut(input * LANES).enumerate() {
            for lane in 0..LANES.min(out - p * LANES) {
                let row = &w[(p * LANES + lane) * input..][..input];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * LANES + lane] = v;
                }
            }
        }
        Panels { data, out, input }
    }

    /// W's rows: the product's columns.
    pub fn out(&self) -> usize {
        self.out
    }

    /// W's columns: the product's depth.
    pub fn input(&self) -> usize {
        self.input
    }
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn the panel products off (callers use gemm for every product) or
/// back on, process-wide: for benchmarks comparing the two. The bits are
/// the same either way.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

static AVX2_KERNEL: AtomicBool = AtomicBool::new(false);

/// Run the AVX2 kernel even where AVX-512 is at hand (with gemm's depth
/// blocks for the CPU, so the bits stay gemm's): lets an AVX-512 machine
/// test the kernel AVX2 machines run.
#[doc(hidden)]
pub fn use_avx2_kernel(on: bool) {
    AVX2_KERNEL.store(on, Ordering::Relaxed);
}

/// Whether the panel products are on ([`set_enabled`]): decoders then
/// hand out panels where [`exact_block`] holds.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether this CPU runs the panel products: x86-64 with FMA, where gemm's
/// own kernels are chains of fused multiply-adds.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        gemm_tile().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which of gemm's kernels (and so this module's) run this build's f32
/// products on this CPU: "AVX-512", "AVX2" (with FMA; also an AVX-512 CPU
/// in a build without the `avx512` feature) or "portable".
pub fn matrix_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match gemm_tile() {
            Some((_, _, true)) => "AVX-512",
            Some((_, _, false)) => "AVX2",
            None => "portable",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "portable"
    }
}

/// gemm's register tile for f32 on this CPU, (MR, NR, AVX-512): the rows
/// and columns of the kernel `gemm` dispatches to, which `kernel_params`
/// sizes `kc` from. `None` when gemm would use its portable kernels (no
/// FMA), whose sums are not a chain of fused multiply-adds.
#[cfg(target_arch = "x86_64")]
fn gemm_tile() -> Option<(usize, usize, bool)> {
    use std::sync::OnceLock;
    static TILE: OnceLock<Option<(usize, usize, bool)>> = OnceLock::new();
    *TILE.get_or_init(|| {
        // gemm-f32 0.19 picks its AVX-512 kernels (4 × 16 rows × 6 columns,
        // its `x86-v4` feature, driftui's `avx512`) on avx512f, else its FMA
        // kernels (2 × 8 × 6) on fma.
        if cfg!(feature = "avx512")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("fma")
        {
            Some((64, 6, true))
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Some((16, 6, false))
        } else {
            None
        }
    })
}

/// Whether an (m × n × k) product block computed here has gemm's bits:
/// gemm's general kernel (at least 2 × 2 and more than 16 × 16 elements,
/// k ≥ 3) on a CPU where it is a chain of fused multiply-adds.
pub fn exact_block((m, n, k): (usize, usize, usize)) -> bool {
    available() && m >= 2 && n >= 2 && m * n > 16 * 16 && k >= 3
}

/// The depth of gemm's blocks along k for an (m × n × k) product (its
/// rule, as gemm-common 0.19's `gemm_basic_generic` writes it). gemm sees
/// our row-major products transposed, (n × m); its `kc` depends on neither
/// (the small-product test is symmetric, `kernel_params`' kc only on k, the
/// tile and the L1 cache).
#[cfg(target_arch = "x86_64")]
fn depth_block((m, n, k): (usize, usize, usize), (mr, nr): (usize, usize)) -> usize {
    if m <= 64 && n <= 64 {
        k.min(512)
    } else {
        gemm_common::cache::kernel_params(m, n, k, mr, nr, std::mem::size_of::<f32>()).kc
    }
}

/// `dst = x Wᵀ` for one block: rows `rows` of x (row-major, row stride
/// `x_rs`) times columns `c0 .. c0 + cols` of Wᵀ, into `dst` (row stride
/// `d_rs`), as gemm computes it from W for a block of that size.
///
/// # Safety
/// `x` must hold `rows` rows of `panels.input()` floats at stride `x_rs`,
/// `dst` `rows` rows of `cols` floats at stride `d_rs` that no other
/// thread touches meanwhile; `c0` must be a multiple of [`LANES`] and
/// `c0 + cols ≤ panels.out()`; [`exact_block`] must hold for the block.
pub unsafe fn block(
    (rows, cols): (usize, usize),
    (dst, d_rs): (*mut f32, usize),
    (x, x_rs): (*const f32, usize),
    panels: &Panels,
    c0: usize,
) {
    let k = panels.input;
    assert!(
        c0.is_multiple_of(LANES) && c0 + cols <= panels.out,
        "streamed::block: columns"
    );
    assert!(
        exact_block((rows, cols, k)),
        "streamed::block: not gemm's kernel"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let Some((mr, nr, avx512)) = gemm_tile() else {
            unreachable!("exact_block holds only with FMA");
        };
        let op = Operands {
            k,
            kc: depth_block((rows, cols, k), (mr, nr)),
            dst,
            d_rs,
            x,
            x_rs,
            panels: panels.data.as_ptr().add(c0 * k),
        };
        if avx512 && !AVX2_KERNEL.load(Ordering::Relaxed) {
            x86::avx512(rows, cols, op);
        } else {
            x86::avx2(rows, cols, op);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dst, d_rs, x, x_rs);
        unreachable!("exact_block holds only on x86-64");
    }
}

/// One block's operands, offset to a tile by [`Operands::at`].
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Operands {
    k: usize,
    kc: usize,
    dst: *mut f32,
    d_rs: usize,
    x: *const f32,
    x_rs: usize,
    /// The block's first panel.
    panels: *const f32,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Operands {
    /// The tile starting at row `r0` and panel `p0` of the block.
    ///
    /// # Safety
    /// (r0, p0) must lie inside the block.
    unsafe fn at(self, r0: usize, p0: usize) -> Self {
        Self {
            dst: self.dst.add(r0 * self.d_rs + p0 * LANES),
            x: self.x.add(r0 * self.x_rs),
            panels: self.panels.add(p0 * self.k * LANES),
            ..self
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Operands, LANES};
    use std::arch::x86_64::*;

    /// The AVX-512 tile: 8 rows × 3 panels (24 sums, 3 panel loads and 8
    /// broadcasts per k, 28 of the 32 registers). Of the 24-sum tiles it
    /// reads the fewest panel bytes per multiply-add that still fit: the
    /// panels come from L2, and at 328 rows 8 × 3 ran 8-25% faster than
    /// 6 × 4 (2 threads, AMX Xeon; 12 × 2 and 4 × 6 measured slower).
    const ROWS_512: usize = 8;
    const VECTORS: usize = 3;
    /// The AVX2 tile: 6 rows × 2 ymm (one panel), 12 sums of the 16
    /// registers.
    const ROWS: usize = 6;

    /// Tiles of 8 rows and up to 3 panels over the block.
    ///
    /// # Safety
    /// As [`super::block`]; the CPU must have AVX-512F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn avx512(m: usize, n: usize, op: Operands) {
        let panels = n.div_ceil(LANES);
        let mut p0 = 0;
        while p0 < panels {
            let vectors = (panels - p0).min(VECTORS);
            // Columns of the tile's last vector that are in the block.
            let last = n - (p0 + vectors - 1) * LANES;
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(ROWS_512);
                let t = op.at(r0, p0);
                match (rows, vectors) {
                    (8, 3) => tile512::<8, 3>(t, last),
                    (8, 2) => tile512::<8, 2>(t, last),
                    (8, _) => tile512::<8, 1>(t, last),
                    (7, 3) => tile512::<7, 3>(t, last),
                    (7, 2) => tile512::<7, 2>(t, last),
                    (7, _) => tile512::<7, 1>(t, last),
                    (6, 3) => tile512::<6, 3>(t, last),
                    (6, 2) => tile512::<6, 2>(t, last),
                    (6, _) => tile512::<6, 1>(t, last),
                    (5, 3) => tile512::<5, 3>(t, last),
                    (5, 2) => tile512::<5, 2>(t, last),
                    (5, _) => tile512::<5, 1>(t, last),
                    (4, 3) => tile512::<4, 3>(t, last),
                    (4, 2) => tile512::<4, 2>(t, last),
                    (4, _) => tile512::<4, 1>(t, last),
                    (3, 3) => tile512::<3, 3>(t, last),
                    (3, 2) => tile512::<3, 2>(t, last),
                    (3, _) => tile512::<3, 1>(t, last),
                    (2, 3) => tile512::<2, 3>(t, last),
                    (2, 2) => tile512::<2, 2>(t, last),
                    (2, _) => tile512::<2, 1>(t, last),
                    (_, 3) => tile512::<1, 3>(t, last),
                    (_, 2) => tile512::<1, 2>(t, last),
                    (_, _) => tile512::<1, 1>(t, last),
                }
                r0 += rows;
            }
            p0 += vectors;
        }
    }

    /// One tile of R rows × C panels, the last panel's first `last` columns
    /// in the block: per element, gemm's chain.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    unsafe fn tile512<const R: usize, const C: usize>(op: Operands, last: usize) {
        let stride = op.k * LANES;
        let mask: __mmask16 = if last >= LANES {
            0xffff
        } else {
            (1u16 << last) - 1
        };
        let mut d0 = 0;
        while d0 < op.k {
            let depth = op.kc.min(op.k - d0);
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            for kk in d0..d0 + depth {
                let mut b = [_mm512_setzero_ps(); C];
                for (c, b) in b.iter_mut().enumerate() {
                    *b = _mm512_loadu_ps(op.panels.add(c * stride + kk * LANES));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*op.x.add(r * op.x_rs + kk));
                    for c in 0..C {
                        acc[c] = _mm512_fmadd_ps(a, b[c], acc[c]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (c, &sum) in acc.iter().enumerate() {
                    let p = op.dst.add(r * op.d_rs + c * LANES);
                    let m = if c + 1 == C { mask } else { 0xffff };
                    let v = if d0 == 0 {
                        sum
                    } else {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), sum)
                    };
                    _mm512_mask_storeu_ps(p, m, v);
                }
            }
            d0 += depth;
        }
    }

    /// Tiles of 6 rows and one panel over the block.
    ///
    /// # Safety
    /// As [`super::block`]; the CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(m: usize, n: usize, op: Operands) {
        let panels = n.div_ceil(LANES);
        for p0 in 0..panels {
            let width = (n - p0 * LANES).min(LANES);
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(ROWS);
                let t = op.at(r0, p0);
                match rows {
                    6 => tile256::<6>(t, width),
                    5 => tile256::<5>(t, width),
                    4 => tile256::<4>(t, width),
                    3 => tile256::<3>(t, width),
                    2 => tile256::<2>(t, width),
                    _ => tile256::<1>(t, width),
                }
                r0 += rows;
            }
        }
    }

    /// One tile of R rows × one panel (2 vectors of 8), its first `width`
    /// columns in the block: per element, gemm's chain.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile256<const R: usize>(op: Operands, width: usize) {
        let mut d0 = 0;
        while d0 < op.k {
            let depth = op.kc.min(op.k - d0);
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for kk in d0..d0 + depth {
                let row = op.panels.add(kk * LANES);
                let b = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_ps(*op.x.add(r * op.x_rs + kk));
                    acc[0] = _mm256_fmadd_ps(a, b[0], acc[0]);
                    acc[1] = _mm256_fmadd_ps(a, b[1], acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let p = op.dst.add(r * op.d_rs);
                if width == LANES {
                    for (c, &sum) in acc.iter().enumerate() {
                        let q = p.add(8 * c);
                        let v = if d0 == 0 {
                            sum
                        } else {
                            _mm256_add_ps(_mm256_loadu_ps(q), sum)
                        };
                        _mm256_storeu_ps(q, v);
                    }
                } else {
                    // A ragged last panel: through a buffer, element by
                    // element (the same one rounding per addition).
                    let mut s = [0f32; LANES];
                    _mm256_storeu_ps(s.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(s.as_mut_ptr().add(8), acc[1]);
                    for (j, &v) in s.iter().enumerate().take(width) {
                        let q = p.add(j);
                        *q = if d0 == 0 { v } else { *q + v };
                    }
                }
            }
            d0 += depth;
        }
    }
}
