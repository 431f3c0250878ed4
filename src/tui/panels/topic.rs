//! One topic's three stance curves over global steps, with phase starts
//! marked and ±1 standard error as dots above and below each probe; under
//! them the topic's drift per phase.
//!
//! ```text
//! ┏ climate-change · 11 probes · j/k other topics · Esc back ━━━━━━━━━━━━━━━━━━━━━┓
//! ┃ .62┤            ⠤⠤⠔⠒⠒⠒⠉│⠉⠉⠉⠉⠒⠒⠒  (support)                                      ┃
//! ┃ .20┤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤⠤│⠤⠤⠤⠤⠤⠤⠤⠤  (neutral, oppose)                             ┃
//! ┃ phase  probes  steps     support Δ  time   neutral Δ  time   oppose Δ  time       ┃
//! ┃ sft         7  0→120      +0.251    0.50    −0.130    0.45    −0.121    0.30       ┃
//! ┗━ ━ support ━ neutral ━ oppose · ±1 se ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┛
//! ```

use super::drift::{fmt_drift, fmt_interval, fmt_time};
use super::stance::pad;
use crate::events::Stance;
use crate::probe::drift::Point;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, BorderType, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let run = &app.run;
    let Some((name, track)) = run
        .topics
        .get(app.selected_topic.min(run.topics.len().saturating_sub(1)))
    else {
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(Style::new().fg(t.border))
            .title(" topic ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no probes yet: a topic's curves appear with its first probe (Esc back)",
                Style::new().fg(t.muted),
            ))
            .centered(),
            inner,
        );
        return;
    };
    let points: Vec<Point> = {
        let mut v: Vec<Point> = track.points.iter().map(|(_, p)| *p).collect();
        v.sort_by_key(|p| p.global_step);
        v.dedup_by_key(|p| p.global_step);
        v
    };
    let mut legend = vec![Span::raw(" ")];
    for s in Stance::EACH {
        legend.push(Span::styled(
            format!("━ {s} "),
            Style::new().fg(t.stance[s]),
        ));
    }
    legend.push(Span::styled(
        "· dots ±1 standard error · │ phase start ",
        Style::new().fg(t.muted),
    ));
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(t.border_focused))
        .title(Line::from(vec![
            Span::styled(
                format!(" {name} "),
                Style::new().fg(t.title).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!(
                    "· {} topic {}/{} · {} probes · j/k other topics · Esc back ",
                    "stance over global steps ·",
                    app.selected_topic.min(run.topics.len() - 1) + 1,
                    run.topics.len(),
                    points.len()
                ),
                Style::new().fg(t.muted),
            ),
        ]))
        .title_bottom(Line::from(legend))
        .style(Style::new().fg(t.foreground).bg(t.background));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 4 || inner.width < 20 {
        return;
    }
    let table = table_lines(app, name);
    let table_h = (table.len() as u16).min(inner.height / 2);
    let [chart_area, table_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(table_h)]).areas(inner);
    render_chart(frame, app, chart_area, &points);
    frame.render_widget(Paragraph::new(table), table_area);
}

fn render_chart(frame: &mut Frame, app: &App, area: Rect, points: &[Point]) {
    let t = &app.theme;
    let run = &app.run;
    let last = points.last().map_or(0, |p| p.global_step);
    let x = [0.0, (run.total_steps().max(last).max(1)) as f64];
    // Probabilities of small models sit close together: zoom to the data.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in points {
        for s in Stance::EACH {
            lo = lo.min(p.mean[s] - p.se[s]);
            hi = hi.max(p.mean[s] + p.se[s]);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (0.0, 1.0);
    }
    let span = (hi - lo).max(0.05);
    let mid = (lo + hi) / 2.0;
    let y = [(mid - span * 0.55).max(0.0), (mid + span * 0.55).min(1.0)];
    let lines: Vec<Vec<(f64, f64)>> = Stance::EACH
        .into_iter()
        .map(|s| {
            points
                .iter()
                .map(|p| (p.global_step as f64, p.mean[s]))
                .collect()
        })
        .collect();
    let bands: Vec<Vec<(f64, f64)>> = Stance::EACH
        .into_iter()
        .map(|s| {
            points
                .iter()
                .flat_map(|p| {
                    let x = p.global_step as f64;
                    [(x, p.mean[s] + p.se[s]), (x, p.mean[s] - p.se[s])]
                })
                .collect()
        })
        .collect();
    let boundaries: Vec<[(f64, f64); 2]> = run
        .phase_boundaries()
        .iter()
        .map(|(b, _)| *b as f64)
        .filter(|&b| b > x[0] && b < x[1])
        .map(|b| [(b, y[0]), (b, y[1])])
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
    for (s, band) in Stance::EACH.into_iter().zip(&bands) {
        datasets.push(
            Dataset::default()
                .data(band)
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(Style::new().fg(t.stance[s])),
        );
    }
    for (s, line) in Stance::EACH.into_iter().zip(&lines) {
        datasets.push(
            Dataset::default()
                .name(s.name())
                .data(line)
                .marker(t.marker)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(t.stance[s])),
        );
    }
    let axis = Style::new().fg(t.axis);
    let x_labels = [x[0], (x[0] + x[1]) / 2.0, x[1]].map(|v| Span::raw(format!("{v:.0}")));
    let y_labels = [y[0], (y[0] + y[1]) / 2.0, y[1]].map(|v| Span::raw(format!("{v:.2}")));
    let chart = Chart::new(datasets)
        .style(Style::new().fg(t.foreground).bg(t.background))
        .x_axis(
            Axis::default()
                .bounds(x)
                .labels(x_labels)
                .style(axis)
                .title("global step"),
        )
        .y_axis(Axis::default().bounds(y).labels(y_labels).style(axis))
        .legend_position(None);
    frame.render_widget(chart, area);
}

/// The topic's drift per phase and over the run, then its latest probe.
fn table_lines(app: &App, topic: &str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let run = &app.run;
    let muted = Style::new().fg(t.muted);
    let phase_w = run
        .phases
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(3)
        .max(5)
        + 2;
    let mut head = vec![
        Span::styled(pad("phase", phase_w), muted),
        Span::styled(pad("probes", 8), muted),
        Span::styled(pad("steps", 12), muted),
    ];
    for s in Stance::EACH {
        head.push(Span::styled(pad(&format!("{s} Δ"), 10), muted));
        head.push(Span::styled(pad("95% interval", 14), muted));
        head.push(Span::styled(pad("time", 6), muted));
    }
    let mut out = vec![Line::from(head)];
    let track = run.topics.iter().find(|(n, _)| n == topic).map(|(_, t)| t);
    let rows = run.drift_table().rows();
    for r in rows.iter().filter(|r| r.topic == topic) {
        let (count, steps) = match track {
            Some(tr) => {
                let pts: Vec<u64> = tr
                    .points
                    .iter()
                    .filter(|(ph, _)| {
                        r.phase == "run" || run.phases.get(*ph).is_some_and(|p| p.name == r.phase)
                    })
                    .map(|(_, p)| p.global_step)
                    .collect();
                let mut uniq = pts.clone();
                uniq.sort_unstable();
                uniq.dedup();
                (
                    uniq.len(),
                    format!(
                        "{}→{}",
                        uniq.first().copied().unwrap_or(0),
                        uniq.last().copied().unwrap_or(0)
                    ),
                )
            }
            None => (0, String::new()),
        };
        let mut spans = vec![
            Span::raw(pad(&r.phase, phase_w)),
            Span::raw(pad(&count.to_string(), 8)),
            Span::raw(pad(&steps, 12)),
        ];
        for (s, d) in r.stances.iter() {
            let style = if d.noise {
                muted
            } else {
                Style::new().fg(t.stance[s])
            };
            spans.push(Span::styled(pad(&fmt_drift(d), 10), style));
            spans.push(Span::styled(pad(&fmt_interval(d.interval), 14), style));
            spans.push(Span::styled(pad(&fmt_time(d.time), 6), style));
        }
        out.push(Line::from(spans));
        // The whole set's numbers at the phase's ends, beside the subset's.
        if let Some(full) = &r.full_set {
            let fmt = |d: Option<crate::events::StanceDistribution>| {
                d.map_or("—".to_string(), |d| {
                    Stance::EACH
                        .iter()
                        .map(|s| format!("{} {:.3}", s.initial(), d[*s]))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            };
            out.push(Line::from(Span::styled(
                format!(
                    "{}whole set ({} questions; Δ above: {} the same at every probe): start {} · end {}",
                    " ".repeat(phase_w),
                    full.questions,
                    r.questions,
                    fmt(full.start),
                    fmt(full.end)
                ),
                muted,
            )));
        }
        if let Some(sd) = r.paraphrase_sd {
            out.push(Line::from(Span::styled(
                format!(
                    "{}spread over paraphrases (mean sd): S {:.3} N {:.3} O {:.3}",
                    " ".repeat(phase_w),
                    sd[Stance::Support],
                    sd[Stance::Neutral],
                    sd[Stance::Oppose]
                ),
                muted,
            )));
        }
    }
    if out.len() == 1 {
        out.push(Line::from(Span::styled(
            "no phase has two probes of this topic yet: no drift to show",
            muted,
        )));
    }
    if let Some(tr) = track {
        let mut now = vec![Span::styled(
            format!(
                "latest (step {}): ",
                tr.points.last().map_or(0, |(_, p)| p.global_step)
            ),
            muted,
        )];
        for s in Stance::EACH {
            now.push(Span::styled(
                format!(
                    "{} {:.3} ± {:.3}  ",
                    s.initial(),
                    tr.latest[s],
                    tr.latest_se[s]
                ),
                Style::new().fg(t.stance[s]),
            ));
        }
        out.push(Line::from(now));
    }
    out
}
