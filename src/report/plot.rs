//! Plots for a paper: per-topic stance curves as small multiples, and the
//! training loss, each as SVG and PNG. Phase starts are marked on the step
//! axis. Text is drawn with DejaVu Sans compiled into the binary, so no
//! fontconfig or system font is needed.

use super::RunData;
use crate::events::{PerStance, Stance};
use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::sync::Once;

/// Font family the plots ask for (registered from the embedded DejaVu Sans).
const FONT: &str = "sans-serif";
/// Small multiples per row.
pub const COLUMNS: usize = 4;
/// Width of the stance figure, and height of one row of panels and of the header.
pub const STANCE_WIDTH: u32 = 1600;
const PANEL_HEIGHT: u32 = 340;
const HEADER_HEIGHT: u32 = 110;
/// Size of the loss figure.
pub const LOSS_SIZE: (u32, u32) = (1200, 600);

/// Okabe–Ito colours, distinguishable with colour-blindness: support
/// (bluish green), neutral (grey), oppose (vermillion).
pub const STANCE_COLORS: PerStance<RGBColor> = PerStance::new(
    RGBColor(0, 158, 115),
    RGBColor(128, 128, 128),
    RGBColor(213, 94, 0),
);
const BOUNDARY: RGBColor = RGBColor(110, 110, 110);
const LOSS_COLOR: RGBColor = RGBColor(0, 114, 178);

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e:?}")
}

/// Pixel size of the stance figure for `topics` topics.
pub fn stance_size(topics: usize) -> (u32, u32) {
    let rows = topics.div_ceil(COLUMNS).max(1) as u32;
    (STANCE_WIDTH, HEADER_HEIGHT + rows * PANEL_HEIGHT)
}

/// The stance figure as SVG text.
pub fn stance_svg(data: &RunData) -> Result<String> {
    svg(&Stances(data))
}

/// The stance figure as PNG bytes.
pub fn stance_png(data: &RunData) -> Result<Vec<u8>> {
    png(&Stances(data))
}

/// The loss figure as SVG text.
pub fn loss_svg(data: &RunData) -> Result<String> {
    svg(&Loss(data))
}

/// The loss figure as PNG bytes.
pub fn loss_png(data: &RunData) -> Result<Vec<u8>> {
    png(&Loss(data))
}

/// A figure drawn the same way on any plotters backend, so that its SVG and
/// its PNG are one drawing.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Per-topic stance curves as small multiples.
struct Stances<'a>(&'a RunData);

impl Figure for Stances<'_> {
    fn size(&self) -> (u32, u32) {
        stance_size(self.0.drift.topics.len())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        draw_stances(root, self.0)
    }
}

/// The training loss, one line per phase.
struct Loss<'a>(&'a RunData);

impl Figure for Loss<'_> {
    fn size(&self) -> (u32, u32) {
        LOSS_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        draw_loss(root, self.0)
    }
}

fn svg(figure: &impl Figure) -> Result<String> {
    fonts();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, figure.size()).into_drawing_area();
        figure.draw(&root)?;
        root.present().map_err(drawing)?;
    }
    Ok(s)
}

fn png(figure: &impl Figure) -> Result<Vec<u8>> {
    fonts();
    let (w, h) = figure.size();
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        figure.draw(&root)?;
        root.present().map_err(drawing)?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| anyhow!("bad image buffer"))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageOutputFormat::Png)
        .map_err(|e| anyhow!("cannot encode the PNG: {e}"))?;
    Ok(out.into_inner())
}

fn title_of(data: &RunData) -> String {
    if data.run.is_empty() {
        "run".into()
    } else {
        data.run.clone()
    }
}

fn draw_stances<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &RunData) -> Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let (header, body) = root.split_vertically(HEADER_HEIGHT);
    let method = data.method.map_or("—", |m| m.name());
    header
        .draw(&Text::new(
            format!("Stance per topic over training — {}", title_of(data)),
            (20, 14),
            (FONT, 30).into_font().style(FontStyle::Bold).color(&BLACK),
        ))
        .map_err(drawing)?;
    header
        .draw(&Text::new(
            format!(
                "p(stance) per probe ({method}), band ±1 standard error over the topic's questions; dashed lines: phase starts"
            ),
            (20, 54),
            (FONT, 18).into_font().color(&RGBColor(60, 60, 60)),
        ))
        .map_err(drawing)?;
    // Legend.
    let mut x = 20;
    for stance in Stance::EACH {
        header
            .draw(&Rectangle::new(
                [(x, 86), (x + 28, 94)],
                STANCE_COLORS[stance].filled(),
            ))
            .map_err(drawing)?;
        header
            .draw(&Text::new(
                stance.name(),
                (x + 36, 81),
                (FONT, 18).into_font().color(&BLACK),
            ))
            .map_err(drawing)?;
        x += 150;
    }
    let topics = &data.drift.topics;
    if topics.is_empty() {
        body.draw(&Text::new(
            "no successful probes in this run",
            (40, 120),
            (FONT, 24).into_font().color(&BLACK),
        ))
        .map_err(drawing)?;
        return Ok(());
    }
    let rows = topics.len().div_ceil(COLUMNS);
    let panels = body.split_evenly((rows, COLUMNS));
    let x_max = data.total_steps().max(1) as f64;
    for (topic, area) in topics.iter().zip(panels.iter()) {
        let points = data.topic_points(topic);
        let mut chart = ChartBuilder::on(area)
            .caption(topic, (FONT, 20))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..x_max, 0f64..1f64)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(5)
            .y_labels(6)
            .x_desc("global step")
            .y_desc("p(stance)")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(drawing)?;
        draw_phase_boundaries(
            &mut chart,
            data,
            BoundaryStyle {
                y: (0.0, 1.0),
                label_at: (x_max * 0.01, 0.98),
                dash: (6, 4),
                font: 13,
            },
        )?;
        for (s, color) in STANCE_COLORS.iter() {
            if points.len() >= 2 {
                let mut band: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|p| {
                        inside(p.global_step as f64, p.mean[s] + p.se[s], x_max, (0.0, 1.0))
                    })
                    .collect();
                band.extend(points.iter().rev().filter_map(|p| {
                    inside(p.global_step as f64, p.mean[s] - p.se[s], x_max, (0.0, 1.0))
                }));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(drawing)?;
            }
            let line: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| inside(p.global_step as f64, p.mean[s], x_max, (0.0, 1.0)))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(drawing)?;
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(drawing)?;
        }
    }
    Ok(())
}

fn draw_loss<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &RunData) -> Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let finite: Vec<(f64, f64)> = data
        .loss
        .iter()
        .filter(|(_, l)| l.is_finite())
        // Drawn at most ±PLOT_LIMIT, so the axis span stays finite.
        .map(|&(g, l)| (g as f64, l.clamp(-PLOT_LIMIT, PLOT_LIMIT)))
        .collect();
    let caption = format!("Training loss — {}", title_of(data));
    if finite.is_empty() {
        root.draw(&Text::new(
            caption,
            (20, 14),
            (FONT, 28).into_font().style(FontStyle::Bold).color(&BLACK),
        ))
        .map_err(drawing)?;
        root.draw(&Text::new(
            "no steps with a finite loss in this run",
            (40, 120),
            (FONT, 22).into_font().color(&BLACK),
        ))
        .map_err(drawing)?;
        return Ok(());
    }
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let x_max = data.total_steps().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 28).into_font().style(FontStyle::Bold))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("global step")
        .y_desc("loss")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(RGBColor(225, 225, 225))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(drawing)?;
    draw_phase_boundaries(
        &mut chart,
        data,
        BoundaryStyle {
            y: (lo - pad, hi + pad),
            label_at: (x_max * 0.005, hi + pad * 0.2),
            dash: (8, 5),
            font: 16,
        },
    )?;
    if let Some(first) = data.phases.first() {
        chart
            .draw_series(std::iter::once(Text::new(
                first.name.clone(),
                (x_max * 0.005, hi + pad * 0.2),
                (FONT, 16).into_font().color(&BOUNDARY),
            )))
            .map_err(drawing)?;
    }
    // One line per phase: the objectives differ, so their losses do not join.
    let starts: Vec<f64> = data
        .phase_boundaries()
        .iter()
        .map(|(b, _)| *b as f64)
        .collect();
    let phase_of = |x: f64| starts.iter().filter(|&&b| x > b).count();
    let mut segment: Vec<(f64, f64)> = Vec::new();
    for p in finite {
        if segment
            .last()
            .is_some_and(|q| phase_of(q.0) != phase_of(p.0))
        {
            chart
                .draw_series(LineSeries::new(
                    std::mem::take(&mut segment),
                    LOSS_COLOR.stroke_width(2),
                ))
                .map_err(drawing)?;
        }
        segment.push(p);
    }
    chart
        .draw_series(LineSeries::new(segment, LOSS_COLOR.stroke_width(2)))
        .map_err(drawing)?;
    Ok(())
}

/// How a plot marks its phase boundaries.
struct BoundaryStyle {
    /// The dashed line's extent on the y axis.
    y: (f64, f64),
    /// Where the phase's name goes: x offset from the line, and y.
    label_at: (f64, f64),
    /// Dash and gap lengths in pixels.
    dash: (u32, u32),
    font: u32,
}

/// A dashed line where each phase after the first begins, labelled with its
/// name.
/// The largest magnitude a loss is drawn at: plotters maps a point to a
/// pixel in integer arithmetic, which overflows for points far outside the
/// axes or axes whose span is not finite (a corrupt log's `1e308`).
const PLOT_LIMIT: f64 = 1e100;

/// `(x, y)` moved onto the axes `0..=x_max` × `y`, or none when `y` is not
/// a number: every point drawn lies inside its chart.
fn inside(x: f64, y: f64, x_max: f64, (lo, hi): (f64, f64)) -> Option<(f64, f64)> {
    (x.is_finite() && y.is_finite()).then(|| (x.clamp(0.0, x_max), y.clamp(lo, hi)))
}

fn draw_phase_boundaries<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    data: &RunData,
    style: BoundaryStyle,
) -> Result<()> {
    let x_max = data.total_steps().max(1) as f64;
    for (b, name) in data.phase_boundaries() {
        let b = (b as f64).min(x_max);
        chart
            .draw_series(DashedLineSeries::new(
                [(b, style.y.0), (b, style.y.1)],
                style.dash.0,
                style.dash.1,
                BOUNDARY.stroke_width(1),
            ))
            .map_err(drawing)?;
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (b + style.label_at.0, style.label_at.1),
                (FONT, style.font).into_font().color(&BOUNDARY),
            )))
            .map_err(drawing)?;
    }
    Ok(())
}
