//! A line chart of some series, shared by the loss and reward panels: whole
//! run or recent window, log scale, smoothing, phase boundaries.

use super::fmt_value;
use crate::tui::app::{App, Zoom};
use crate::tui::series::{plot_points, PlotSpec, Series};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};
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
}

type PlottedLine<'a> = (Vec<(f64, f64)>, Style, Option<&'a str>);

/// Fewest steps the recent zoom shows.
const RECENT_MIN_STEPS: f64 = 50.0;

/// Width of the y labels plus the axis line.
const Y_LABEL_WIDTH: u16 = 8;

/// Draw `spec` into `area`, framed by `block`.
pub fn render(frame: &mut Frame, app: &App, area: Rect, block: Block, spec: ChartSpec) {
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width < Y_LABEL_WIDTH + 4 || inner.height < 3 {
        return;
    }
    if spec.lines.iter().all(|l| l.series.is_empty()) {
        let p = Paragraph::new(Line::from(Span::styled(
            spec.empty_message,
            Style::new().fg(app.theme.muted),
        )))
        .centered();
        let mid = Rect {
            y: inner.y + inner.height / 2,
            height: 1,
            ..inner
        };
        frame.render_widget(p, mid);
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
    let [y_lo, y_hi] = padded(y.unwrap_or([0.0, 1.0]));
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
    let y_label = |v: f64| {
        let v = if view.log_scale { 10f64.powf(v) } else { v };
        Span::raw(fmt_value(v))
    };
    let y_labels = [y_label(y_lo), y_label(0.5 * (y_lo + y_hi)), y_label(y_hi)];
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
    frame.render_widget(chart, inner);
}

/// A little room above and below the data; a flat line gets a visible band.
fn padded([lo, hi]: [f64; 2]) -> [f64; 2] {
    if !(lo.is_finite() && hi.is_finite()) {
        return [0.0, 1.0];
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = (hi.abs() * 0.1).max(0.5);
        return [lo - d, hi + d];
    }
    [lo - 0.05 * span, hi + 0.05 * span]
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
