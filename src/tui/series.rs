//! Metric time series with bounded memory, however long the run.
//!
//! Each series keeps two views of the same points:
//! - a whole-run history of at most `history` buckets; when it fills up, pairs
//!   of neighbours merge and the stride (points per bucket) doubles. A bucket
//!   keeps its min and max, so a one-step spike stays visible in the overview.
//! - a full-resolution window of the most recent `recent` points.
//!
//! Bounds are kept up to date on insert; drawing re-buckets only the visible
//! samples into at most a few points per screen column.

use std::collections::VecDeque;

/// Capacities of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Buckets of the whole-run history (an even number).
    pub history: usize,
    /// Points of the full-resolution recent window.
    pub recent: usize,
}

impl Capacity {
    /// For per-step metrics.
    pub const STEPS: Capacity = Capacity {
        history: 2048,
        recent: 4096,
    };
    /// For per-probe stance values (a probe is rare next to a step).
    pub const PROBES: Capacity = Capacity {
        history: 256,
        recent: 256,
    };
}

/// A run of consecutive points summarised: x span, min, max, mean, last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub x_first: f64,
    pub x_last: f64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub last: f64,
    pub n: u64,
    /// The minimum came before the maximum (so a drawn line keeps its order).
    pub min_first: bool,
}

impl Bucket {
    /// One point.
    pub fn point(x: f64, y: f64) -> Self {
        Self {
            x_first: x,
            x_last: x,
            min: y,
            max: y,
            sum: y,
            last: y,
            n: 1,
            min_first: true,
        }
    }

    fn push(&mut self, x: f64, y: f64) {
        self.merge(&Bucket::point(x, y));
    }

    /// Fold a later bucket into this one.
    pub fn merge(&mut self, later: &Bucket) {
        let min_idx_later = later.min < self.min;
        let max_idx_later = later.max > self.max;
        // Order of the extremes after the merge: which one happened first.
        let min_pos = if min_idx_later { 1 } else { 0 };
        let max_pos = if max_idx_later { 1 } else { 0 };
        self.min_first = match min_pos.cmp(&max_pos) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => {
                if min_pos == 0 {
                    self.min_first
                } else {
                    later.min_first
                }
            }
        };
        if min_idx_later {
            self.min = later.min;
        }
        if max_idx_later {
            self.max = later.max;
        }
        self.x_last = later.x_last;
        self.sum += later.sum;
        self.last = later.last;
        self.n += later.n;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    /// Middle of the x span, where the bucket is drawn.
    pub fn x(&self) -> f64 {
        0.5 * (self.x_first + self.x_last)
    }
}

/// Whole-run ranges, kept on insert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub x: [f64; 2],
    pub y: [f64; 2],
    /// Smallest positive y, for log scale.
    pub y_min_positive: Option<f64>,
}

impl Bounds {
    fn of(x: f64, y: f64) -> Self {
        Self {
            x: [x, x],
            y: [y, y],
            y_min_positive: (y > 0.0).then_some(y),
        }
    }

    fn include(&mut self, b: &Bucket) {
        self.x[0] = self.x[0].min(b.x_first);
        self.x[1] = self.x[1].max(b.x_last);
        self.y[0] = self.y[0].min(b.min);
        self.y[1] = self.y[1].max(b.max);
        let pos = if b.min > 0.0 {
            Some(b.min)
        } else if b.max > 0.0 {
            Some(b.max)
        } else {
            None
        };
        if let Some(p) = pos {
            self.y_min_positive = Some(self.y_min_positive.map_or(p, |m| m.min(p)));
        }
    }
}

/// One metric over the run: whole-run buckets plus a recent full-resolution window.
#[derive(Debug, Clone)]
pub struct Series {
    cap: Capacity,
    buckets: Vec<Bucket>,
    open: Option<Bucket>,
    /// Points per closed bucket.
    stride: u64,
    recent: VecDeque<(f64, f64)>,
    bounds: Option<Bounds>,
    len: u64,
    /// Points dropped because they were NaN or infinite.
    non_finite: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self::new(Capacity::STEPS)
    }
}

impl Series {
    pub fn new(cap: Capacity) -> Self {
        let history = cap.history.max(2) & !1;
        Self {
            cap: Capacity {
                history,
                recent: cap.recent.max(1),
            },
            buckets: Vec::new(),
            open: None,
            stride: 1,
            recent: VecDeque::new(),
            bounds: None,
            len: 0,
            non_finite: 0,
        }
    }

    /// Append a point; x must not decrease. Non-finite values are counted, not stored.
    pub fn push(&mut self, x: f64, y: f64) {
        if !y.is_finite() || !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.len += 1;
        match &mut self.bounds {
            Some(b) => b.include(&Bucket::point(x, y)),
            None => self.bounds = Some(Bounds::of(x, y)),
        }
        if self.recent.len() == self.cap.recent {
            self.recent.pop_front();
        }
        self.recent.push_back((x, y));
        let open = match &mut self.open {
            Some(o) => {
                o.push(x, y);
                o
            }
            None => self.open.insert(Bucket::point(x, y)),
        };
        if open.n >= self.stride {
            let closed = *open;
            self.open = None;
            self.buckets.push(closed);
            if self.buckets.len() >= self.cap.history {
                self.halve();
            }
        }
    }

    /// Merge neighbouring buckets pairwise and double the stride.
    fn halve(&mut self) {
        let merged: Vec<Bucket> = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = pair[0];
                if let Some(next) = pair.get(1) {
                    b.merge(next);
                }
                b
            })
            .collect();
        self.buckets = merged;
        self.stride *= 2;
    }

    /// Drop every point after `x` (a resumed run replaces them).
    pub fn truncate_after(&mut self, x: f64) {
        self.recent.retain(|p| p.0 <= x);
        self.buckets.retain(|b| b.x_last <= x);
        if self.open.is_some_and(|o| o.x_last > x) {
            self.open = None;
        }
        self.len = self.buckets.iter().map(|b| b.n).sum::<u64>() + self.open.map_or(0, |o| o.n);
        self.bounds = None;
        let all = self.buckets.iter().copied().chain(self.open);
        let recent = self.recent.iter().map(|&(x, y)| Bucket::point(x, y));
        for b in all.chain(recent) {
            match &mut self.bounds {
                Some(bounds) => bounds.include(&b),
                None => {
                    let mut bounds = Bounds::of(b.x_first, b.min);
                    bounds.include(&b);
                    self.bounds = Some(bounds);
                }
            }
        }
    }

    /// Points stored (finite ones).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// The newest point.
    pub fn last(&self) -> Option<(f64, f64)> {
        self.recent.back().copied()
    }

    pub fn bounds(&self) -> Option<Bounds> {
        self.bounds
    }

    /// Points per whole-run bucket at present.
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// The whole run, oldest first: the coarse buckets that begin before the
    /// recent window, then the window's points that no bucket shown covers.
    /// Every point is in exactly one of the two.
    pub fn whole(&self) -> impl Iterator<Item = Bucket> + '_ {
        let recent_start = self.recent.front().map_or(f64::INFINITY, |p| p.0);
        let closed = self.buckets.partition_point(|b| b.x_first < recent_start);
        let open = self.open.filter(|o| o.x_first < recent_start);
        let covered = open
            .or_else(|| closed.checked_sub(1).map(|i| self.buckets[i]))
            .map_or(f64::NEG_INFINITY, |b| b.x_last);
        self.buckets[..closed].iter().copied().chain(open).chain(
            self.recent
                .iter()
                .filter(move |p| p.0 > covered)
                .map(|&(x, y)| Bucket::point(x, y)),
        )
    }

    /// The recent window at full resolution, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.recent.iter().map(|&(x, y)| Bucket::point(x, y))
    }

    /// The most recent `n` y values, oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = f64> + '_ {
        let skip = self.recent.len().saturating_sub(n);
        self.recent.iter().skip(skip).map(|p| p.1)
    }
}

/// TensorBoard's debiased exponential moving average of `values` with
/// smoothing weight `w` in [0, 1): `last = last·w + (1−w)·x`, divided by
/// `1 − w^n` so that early values are not pulled toward zero.
pub fn ema_debiased(values: &[f64], w: f64) -> Vec<f64> {
    let mut ema = Ema::new(w);
    values.iter().map(|&v| ema.push(v, 1)).collect()
}

/// Running debiased EMA that can also take a bucket (its mean, `n` times).
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    w: f64,
    last: f64,
    /// w^(values so far), kept as a product: the debias term is 1 − this.
    w_pow: f64,
}

impl Ema {
    pub fn new(w: f64) -> Self {
        Self {
            w: w.clamp(0.0, 0.999_999),
            last: 0.0,
            w_pow: 1.0,
        }
    }

    /// Feed `value` as if it came `n` times in a row; returns the smoothed value.
    pub fn push(&mut self, value: f64, n: u64) -> f64 {
        if !value.is_finite() || n == 0 {
            return self.current();
        }
        let wn = if n == 1 {
            self.w
        } else {
            self.w.powi(n.min(i32::MAX as u64) as i32)
        };
        self.last = self.last * wn + (1.0 - wn) * value;
        self.w_pow *= wn;
        self.current()
    }

    fn current(&self) -> f64 {
        let debias = 1.0 - self.w_pow;
        if debias > 0.0 {
            self.last / debias
        } else {
            f64::NAN
        }
    }
}

/// The largest magnitude a point is drawn at. ratatui maps a point to a
/// cell as `(y - bottom) × rows / (top - bottom)`: near `f64::MAX` the product
/// overflows to infinity, the cell index saturates, and the canvas walks a
/// line of 2^64 cells (a corrupt log with `"loss": 1e308` froze replay).
/// A value past the limit is drawn at it; the footer still prints it.
pub const PLOT_LIMIT: f64 = 1e100;

/// How to turn samples into points on screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotSpec {
    /// Visible x range.
    pub x: [f64; 2],
    /// Horizontal resolution: how many distinct x positions the chart can show.
    pub columns: usize,
    /// Plot log10(y); non-positive values are left out.
    pub log: bool,
    /// Debiased EMA weight, or none for raw values.
    pub smoothing: Option<f64>,
}

/// Re-bucket `samples` (sorted by x) into at most two points per column,
/// keeping each column's min and max; appends to `out` and returns the y range
/// of what it appended.
pub fn plot_points(
    samples: impl Iterator<Item = Bucket>,
    spec: &PlotSpec,
    out: &mut Vec<(f64, f64)>,
) -> Option<[f64; 2]> {
    let [x0, x1] = spec.x;
    let width = (x1 - x0).max(f64::EPSILON);
    let columns = spec.columns.max(1);
    let mut ema = spec.smoothing.map(Ema::new);
    let mut col: Option<(usize, Bucket)> = None;
    let mut range: Option<[f64; 2]> = None;
    let mut emit = |b: &Bucket, out: &mut Vec<(f64, f64)>| {
        let x = b.x();
        let (first, second) = if b.min_first {
            (b.min, b.max)
        } else {
            (b.max, b.min)
        };
        for (i, y) in [first, second].into_iter().enumerate() {
            if i == 1 && b.min == b.max {
                break;
            }
            let y = if spec.log {
                if y <= 0.0 {
                    continue;
                }
                y.log10()
            } else {
                y
            }
            .clamp(-PLOT_LIMIT, PLOT_LIMIT);
            range = Some(match range {
                Some([lo, hi]) => [lo.min(y), hi.max(y)],
                None => [y, y],
            });
            out.push((x, y));
        }
    };
    for mut b in samples {
        if let Some(e) = &mut ema {
            let v = e.push(b.mean(), b.n);
            b = Bucket {
                min: v,
                max: v,
                sum: v * b.n as f64,
                last: v,
                ..b
            };
        }
        if b.x_last < x0 || b.x_first > x1 {
            continue;
        }
        let c = (((b.x() - x0) / width) * columns as f64).floor().max(0.0) as usize;
        let c = c.min(columns - 1);
        match &mut col {
            Some((cur, acc)) if *cur == c => acc.merge(&b),
            _ => {
                if let Some((_, acc)) = col.take() {
                    emit(&acc, out);
                }
                col = Some((c, b));
            }
        }
    }
    if let Some((_, acc)) = col {
        emit(&acc, out);
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/mutation.rs: a loss of 1e308 made ratatui's canvas
    /// overflow and walk 2^64 cells.
    #[test]
    fn values_near_the_largest_float_are_drawn_at_the_limit() {
        let spec = PlotSpec {
            x: [0.0, 3.0],
            columns: 80,
            log: false,
            smoothing: None,
        };
        let samples =
            [(1.0, 0.5), (2.0, 1e308), (3.0, -f64::MAX)].map(|(x, y)| Bucket::point(x, y));
        let mut out = Vec::new();
        let range = plot_points(samples.into_iter(), &spec, &mut out);
        assert_eq!(range, Some([-PLOT_LIMIT, PLOT_LIMIT]));
        assert_eq!(out, vec![(1.0, 0.5), (2.0, PLOT_LIMIT), (3.0, -PLOT_LIMIT)]);
    }

    #[test]
    fn ema_matches_hand_computed_values() {
        // w = 0.5 over [1, 2, 3]:
        // step 1: last = 0.5,  debias = 0.5,   smoothed = 1
        // step 2: last = 1.25, debias = 0.75,  smoothed = 5/3
        // step 3: last = 2.125, debias = 0.875, smoothed = 17/7
        let s = ema_debiased(&[1.0, 2.0, 3.0], 0.5);
        let want = [1.0, 5.0 / 3.0, 17.0 / 7.0];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
        // w = 0.9 over [10, 0]: 1.0 → 10; then last = 0.9, debias = 0.19 → 4.7368...
        let s = ema_debiased(&[10.0, 0.0], 0.9);
        assert!((s[0] - 10.0).abs() < 1e-12);
        assert!((s[1] - 0.9 / 0.19).abs() < 1e-12, "{s:?}");
        // w = 0 is no smoothing at all.
        assert_eq!(ema_debiased(&[3.0, -1.0, 7.0], 0.0), vec![3.0, -1.0, 7.0]);
    }

    #[test]
    fn ema_of_a_bucket_equals_its_mean_fed_n_times() {
        let mut a = Ema::new(0.8);
        a.push(2.0, 1);
        let bucket = a.push(5.0, 3);
        let mut b = Ema::new(0.8);
        b.push(2.0, 1);
        let mut one = 0.0;
        for _ in 0..3 {
            one = b.push(5.0, 1);
        }
        assert!((bucket - one).abs() < 1e-12);
    }

    #[test]
    fn history_halves_and_keeps_spikes() {
        let cap = Capacity {
            history: 16,
            recent: 8,
        };
        let mut s = Series::new(cap);
        for i in 0..10_000u64 {
            let y = if i == 4321 {
                100.0
            } else if i == 7777 {
                -50.0
            } else {
                (i % 7) as f64 * 0.01
            };
            s.push(i as f64, y);
        }
        assert_eq!(s.len(), 10_000);
        let whole: Vec<Bucket> = s.whole().collect();
        assert!(whole.len() <= 16 + 8, "bounded: {}", whole.len());
        assert!(s.stride() >= 10_000 / 16, "stride {}", s.stride());
        let max = whole.iter().map(|b| b.max).fold(f64::MIN, f64::max);
        let min = whole.iter().map(|b| b.min).fold(f64::MAX, f64::min);
        assert_eq!(max, 100.0, "spike up survives");
        assert_eq!(min, -50.0, "spike down survives");
        let spike = whole.iter().find(|b| b.max == 100.0).unwrap();
        assert!(spike.x_first <= 4321.0 && spike.x_last >= 4321.0);
        // Every point is accounted for exactly once.
        let counted: u64 = whole.iter().map(|b| b.n).sum();
        assert_eq!(counted, 10_000);
        assert_eq!(s.recent().next().unwrap().x_first, 9_992.0);
        let b = s.bounds().unwrap();
        assert_eq!(b.y, [-50.0, 100.0]);
        assert_eq!(b.x, [0.0, 9_999.0]);
    }

    #[test]
    fn a_spike_survives_wherever_it_falls() {
        // Each halving merges pairs; the spike must survive on either side.
        for spike_at in [0u64, 1, 2, 3, 777, 2048, 4321, 5000, 6001, 8191, 9990] {
            let mut s = Series::new(Capacity {
                history: 8,
                recent: 4,
            });
            for i in 0..10_000u64 {
                let y = match i {
                    _ if i == spike_at => 100.0,
                    _ if i == (spike_at + 5_000) % 10_000 => -100.0,
                    _ => (i % 3) as f64,
                };
                s.push(i as f64, y);
            }
            let whole: Vec<Bucket> = s.whole().collect();
            let max = whole.iter().map(|b| b.max).fold(f64::MIN, f64::max);
            let min = whole.iter().map(|b| b.min).fold(f64::MAX, f64::min);
            assert_eq!((min, max), (-100.0, 100.0), "spikes at {spike_at}");
        }
    }

    #[test]
    fn plotting_keeps_the_spike_of_a_column() {
        let samples = (0..1000).map(|i| Bucket::point(i as f64, if i == 500 { 9.0 } else { 1.0 }));
        let spec = PlotSpec {
            x: [0.0, 999.0],
            columns: 10,
            log: false,
            smoothing: None,
        };
        let mut out = Vec::new();
        let range = plot_points(samples, &spec, &mut out);
        assert!(out.len() <= 20, "{}", out.len());
        assert_eq!(range, Some([1.0, 9.0]));
        assert!(out.iter().any(|p| p.1 == 9.0));
    }

    #[test]
    fn log_scale_leaves_out_non_positive_values() {
        let samples = [(1.0, 10.0), (2.0, 0.0), (3.0, 100.0)]
            .into_iter()
            .map(|(x, y)| Bucket::point(x, y));
        let spec = PlotSpec {
            x: [0.0, 4.0],
            columns: 100,
            log: true,
            smoothing: None,
        };
        let mut out = Vec::new();
        assert_eq!(plot_points(samples, &spec, &mut out), Some([1.0, 2.0]));
        assert_eq!(out, vec![(1.0, 1.0), (3.0, 2.0)]);
    }

    #[test]
    fn truncate_drops_later_points_and_recomputes_bounds() {
        let mut s = Series::new(Capacity {
            history: 8,
            recent: 4,
        });
        for i in 1..=20 {
            s.push(i as f64, i as f64);
        }
        s.truncate_after(18.0);
        assert_eq!(s.last(), Some((18.0, 18.0)));
        assert!(s.bounds().unwrap().y[1] <= 18.0);
        s.push(19.0, -3.0);
        assert_eq!(s.last(), Some((19.0, -3.0)));
        assert_eq!(s.bounds().unwrap().y[0], -3.0);
    }

    #[test]
    fn non_finite_values_are_counted_not_stored() {
        let mut s = Series::default();
        s.push(1.0, f64::NAN);
        s.push(2.0, 1.0);
        assert_eq!((s.len(), s.non_finite()), (1, 1));
    }
}
