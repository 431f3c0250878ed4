//! A line chart of some series, shared by the loss and reward panels: whole
//! run or recent window, log scale, smoothing, phase boundaries, and a
//! footer of latest values written in the axis's number format.

use crate::tui::app::{App, Zoom};
use crate::tui::series::{plot_points, PlotSpec, Series};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};
use ratatui::Frame;

/// One line on the chart.
pub struct Trace<'a> {
    pub name: &'a str,
    pub series: &'a Series,
    pub color: Color,
}

/// What to draw and where.
pub struct ChartSpec<'a> {
    pub lines: Vec<Trace<'a>>,
    /// Global steps where a new phase began.
    pub boundaries: Vec<f64>,
    /// Left end of the x axis in whole-run view (the first step shown).
    pub x_start: f64,
    /// Right end of the x axis in whole-run view (the planned last step).
    pub x_end: f64,
    /// Shown when no line has a point yet.
    pub empty_message: String,
    /// Latest values for the bottom border: label, value, colour.
    pub footer: Vec<(&'a str, f64, Color)>,
}

/// How every number of one chart panel is written, its axis and its footer
/// alike, so that they read as one scale: fixed decimals, or scientific
/// notation where a few fixed digits cannot hold the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFormat {
    Fixed(usize),
    Scientific,
}

impl NumberFormat {
    /// Most decimals a fixed format uses.
    const MAX_DECIMALS: i32 = 4;

    /// About three significant digits on `largest` (the largest magnitude
    /// shown), and enough decimals that a difference of `finest` shows.
    pub fn fitting(largest: f64, finest: f64) -> NumberFormat {
        if !largest.is_finite() || largest <= 0.0 {
            return NumberFormat::Fixed(2);
        }
        if !(1e-3..1e5).contains(&largest) {
            return NumberFormat::Scientific;
        }
        let for_largest = 2 - largest.log10().floor() as i32;
        let for_finest = if finest.is_finite() && finest > 0.0 {
            (-finest.log10()).ceil() as i32
        } else {
            0
        };
        let decimals = for_largest.max(for_finest).clamp(0, Self::MAX_DECIMALS);
        NumberFormat::Fixed(decimals as usize)
    }

    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "—".into();
        }
        match self {
            NumberFormat::Fixed(d) => {
                let s = format!("{v:.d$}");
                // `-0.00` is zero.
                match s.strip_prefix('-') {
                    Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
                    _ => s,
                }
            }
            NumberFormat::Scientific => format!("{v:.2e}"),
        }
    }
}

type PlottedLine<'a> = (Vec<(f64, f64)>, Style, Option<&'a str>);

/// Fewest steps the recent zoom shows.
const RECENT_MIN_STEPS: f64 = 50.0;

/// Width of the y labels plus the axis line.
const Y_LABEL_WIDTH: u16 = 8;

/// Draw `spec` into `area`, framed by `block`.
pub fn render(frame: &mut Frame, app: &App, area: Rect, block: Block, spec: ChartSpec) {
    let inner = block.inner(area);
    if inner.width < Y_LABEL_WIDTH + 4 || inner.height < 3 {
        frame.render_widget(block, area);
        return;
    }
    if spec.lines.iter().all(|l| l.series.is_empty()) {
        frame.render_widget(block, area);
        super::empty_note(frame, app, inner, &spec.empty_message);
        return;
    }
    let t = &app.theme;
    let view = &app.view;
    // The visible x range.
    let x = match view.zoom {
        Zoom::WholeRun => {
            let mut hi = spec.x_end;
            for l in &spec.lines {
                if let Some(b) = l.series.bounds() {
                    hi = hi.max(b.x[1]);
                }
            }
            [spec.x_start, hi.max(spec.x_start + 1.0)]
        }
        Zoom::Recent => {
            let mut lo = f64::INFINITY;
            let mut hi = f64::NEG_INFINITY;
            for l in &spec.lines {
                if let (Some(first), Some(last)) = (l.series.recent().next(), l.series.last()) {
                    lo = lo.min(first.x_first);
                    hi = hi.max(last.0);
                }
            }
            if lo.is_finite() {
                // While the window still holds the whole run, zooming in
                // means its last quarter (at least RECENT_MIN_STEPS steps).
                let first = spec
                    .lines
                    .iter()
                    .filter_map(|l| l.series.bounds().map(|b| b.x[0]))
                    .fold(f64::INFINITY, f64::min);
                let span = ((hi - first) * 0.25).max(RECENT_MIN_STEPS);
                let lo = lo.max(hi - span);
                [lo, hi.max(lo + 1.0)]
            } else {
                [spec.x_start, spec.x_end.max(spec.x_start + 1.0)]
            }
        }
    };
    // Braille and half blocks resolve two x positions per cell.
    let columns = (inner.width.saturating_sub(Y_LABEL_WIDTH) as usize) * 2;
    let plot = |smoothing| PlotSpec {
        x,
        columns,
        log: view.log_scale,
        smoothing,
    };
    // (points, style, legend name): raw lines under smoothed ones have no name.
    let mut points: Vec<PlottedLine> = Vec::new();
    let mut y: Option<[f64; 2]> = None;
    let mut widen = |r: Option<[f64; 2]>| {
        if let Some([lo, hi]) = r {
            y = Some(match y {
                Some([a, b]) => [a.min(lo), b.max(hi)],
                None => [lo, hi],
            });
        }
    };
    for l in &spec.lines {
        let samples = || -> Box<dyn Iterator<Item = _>> {
            match view.zoom {
                Zoom::WholeRun => Box::new(l.series.whole()),
                Zoom::Recent => Box::new(l.series.recent()),
            }
        };
        if let Some(w) = view.smoothing {
            let mut raw = Vec::new();
            widen(plot_points(samples(), &plot(None), &mut raw));
            points.push((raw, Style::new().fg(t.raw_when_smoothed), None));
            let mut smooth = Vec::new();
            widen(plot_points(samples(), &plot(Some(w)), &mut smooth));
            points.push((smooth, Style::new().fg(l.color), Some(l.name)));
        } else {
            let mut raw = Vec::new();
            widen(plot_points(samples(), &plot(None), &mut raw));
            points.push((raw, Style::new().fg(l.color), Some(l.name)));
        }
    }
    // A series that never goes below zero (a loss) gets no negative bound.
    let non_negative = !view.log_scale && y.is_some_and(|[lo, _]| lo >= 0.0);
    let [y_lo, y_hi] = padded(y.unwrap_or([0.0, 1.0]), non_negative);
    let boundaries: Vec<[(f64, f64); 2]> = spec
        .boundaries
        .iter()
        .filter(|&&b| b > x[0] && b < x[1])
        .map(|&b| [(b, y_lo), (b, y_hi)])
        .collect();
    let mut datasets: Vec<Dataset> = boundaries
        .iter()
        .map(|seg| {
            Dataset::default()
                .data(seg)
                .marker(t.marker)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(t.phase_boundary))
        })
        .collect();
    for (data, style, name) in &points {
        let mut d = Dataset::default()
            .data(data)
            .marker(t.marker)
            .graph_type(GraphType::Line)
            .style(*style);
        if let Some(n) = name {
            d = d.name(*n);
        }
        datasets.push(d);
    }
    let axis_style = Style::new().fg(t.axis);
    let x_labels = [x[0], 0.5 * (x[0] + x[1]), x[1]].map(|v| Span::raw(format!("{v:.0}")));
    let real = |v: f64| if view.log_scale { 10f64.powf(v) } else { v };
    let label_values = [y_lo, 0.5 * (y_lo + y_hi), y_hi].map(real);
    let format = axis_format(&label_values, view.log_scale);
    let y_labels = label_values.map(|v| Span::raw(format.format(v)));
    let chart = Chart::new(datasets)
        .style(Style::new().fg(t.foreground).bg(t.background))
        .x_axis(Axis::default().bounds(x).labels(x_labels).style(axis_style))
        .y_axis(
            Axis::default()
                .bounds([y_lo, y_hi])
                .labels(y_labels)
                .style(axis_style),
        )
        // Names are in the panel's title or bottom line, in the lines' colours:
        // a legend box would cover the newest points.
        .legend_position(None);
    let block = if spec.footer.is_empty() {
        block
    } else {
        let mut spans = Vec::new();
        for (label, v, color) in &spec.footer {
            spans.push(Span::styled(format!("{label} "), Style::new().fg(*color)));
            spans.push(Span::styled(
                format!("{} ", format.format(*v)),
                Style::new().fg(t.foreground),
            ));
        }
        block.title_bottom(Line::from(spans))
    };
    frame.render_widget(block, area);
    frame.render_widget(chart, inner);
}

/// The number format of an axis with labels `labels` (low, middle, high).
fn axis_format(labels: &[f64; 3], log: bool) -> NumberFormat {
    let largest = labels.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if log {
        // Labels a decade or more apart: each must show, the smallest too.
        let smallest = labels.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
        if largest / smallest > 1e3 || smallest < 1e-3 {
            return NumberFormat::Scientific;
        }
        return NumberFormat::fitting(largest, smallest);
    }
    NumberFormat::fitting(largest, labels[2] - labels[1])
}

/// A little room above and below the data; a flat line gets a visible
/// band. Data that is never negative keeps its lower bound at zero or above.
fn padded([lo, hi]: [f64; 2], non_negative: bool) -> [f64; 2] {
    if !(lo.is_finite() && hi.is_finite()) {
        return [0.0, 1.0];
    }
    let span = hi - lo;
    let [lo, hi] = if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = (hi.abs() * 0.1).max(0.5);
        [lo - d, hi + d]
    } else {
        [lo - 0.05 * span, hi + 0.05 * span]
    };
    if non_negative {
        [lo.max(0.0), hi]
    } else {
        [lo, hi]
    }
}

/// The view flags for a chart title: `log`, `ema 0.6`, `recent`.
pub fn view_tags(app: &App) -> String {
    let mut tags = Vec::new();
    if app.view.log_scale {
        tags.push("log".to_string());
    }
    if let Some(w) = app.view.smoothing {
        tags.push(format!("ema {w}"));
    }
    if app.view.zoom == Zoom::Recent {
        tags.push("recent".to_string());
    }
    if tags.is_empty() {
        String::new()
    } else {
        format!("[{}] ", tags.join(" · "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_format_holds_the_largest_value_and_the_finest_step() {
        use NumberFormat::*;
        assert_eq!(NumberFormat::fitting(7.91, 3.9), Fixed(2));
        assert_eq!(NumberFormat::fitting(0.69, 0.3), Fixed(3));
        assert_eq!(NumberFormat::fitting(45.0, 20.0), Fixed(1));
        assert_eq!(NumberFormat::fitting(450.0, 200.0), Fixed(0));
        // A nearly flat line: the labels must differ.
        assert_eq!(NumberFormat::fitting(2.3005, 0.0002), Fixed(4));
        assert_eq!(NumberFormat::fitting(2.3, 1e-9), Fixed(4));
        assert_eq!(NumberFormat::fitting(3e5, 1e5), Scientific);
        assert_eq!(NumberFormat::fitting(4e-4, 1e-4), Scientific);
        assert_eq!(NumberFormat::fitting(0.0, 0.0), Fixed(2));
        assert_eq!(Fixed(2).format(0.8891), "0.89");
        assert_eq!(Fixed(2).format(-1.1349), "-1.13");
        assert_eq!(Fixed(2).format(-0.001), "0.00");
        assert_eq!(Fixed(0).format(449.6), "450");
        assert_eq!(Scientific.format(0.000_123_4), "1.23e-4");
        assert_eq!(Fixed(2).format(f64::NAN), "—");
    }

    #[test]
    fn bounds_respect_the_data() {
        // The loss: 7.91 down to 0.17 once read −0.2057 at the bottom.
        let [lo, hi] = padded([0.17, 7.91], true);
        assert_eq!(lo, 0.0);
        assert!((hi - (7.91 + 0.05 * 7.74)).abs() < 1e-12);
        let [lo, _] = padded([0.17, 7.91], false);
        assert!(lo < 0.0);
        // A flat non-negative line gets a band that stops at zero.
        assert_eq!(padded([0.3, 0.3], true), [0.0, 0.8]);
        assert_eq!(padded([-1.0, -1.0], false), [-1.5, -0.5]);
        // Log axes: labels decades apart are scientific, close ones fixed.
        assert_eq!(
            axis_format(&[0.001, 0.1, 10.0], true),
            NumberFormat::Scientific
        );
        assert_eq!(axis_format(&[0.5, 1.0, 2.0], true), NumberFormat::Fixed(2));
        assert_eq!(
            axis_format(&[0.0, 4.15, 8.3], false),
            NumberFormat::Fixed(2)
        );
    }
}
