//! Per-topic stance from `probe` events: a sparkline of the leading stance's
//! probability over the probes, the current distribution as a bar, and the
//! drift of each stance since the first probe (on the same questions; `~`
//! marks a drift whose 95% interval contains 0).
//!
//! ```text
//! topic            p(leading) per probe       now (support neutral oppose)     drift since first probe
//! climate change   S ▃▄▅▆▆▇▇▇                 ████████▒▒▒░░░  S .62 N .21 O .17  S +.29 N −.17 O −.12
//! ```

use super::{panel_block, plural};
use crate::events::{Stance, StanceDistribution};
use crate::tui::app::{App, Panel};
use crate::tui::run::TopicTrack;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const BAR_WIDTH: usize = 15;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let run = &app.run;
    let title = match run.last_probe_step {
        Some(step) => format!(
            " stance · {} · {}, last at step {step} ",
            plural(run.topics.len() as u64, "topic"),
            plural(run.probes, "probe")
        ),
        None => " stance ".to_string(),
    };
    let block = panel_block(app, Panel::Stance, Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 20 {
        return;
    }
    let muted = Style::new().fg(app.theme.muted);
    if run.topics.is_empty() {
        let text = if run.probes == 0 {
            "no probes yet".to_string()
        } else {
            "the probes returned no topics".to_string()
        };
        super::empty_note(frame, app, inner, &text);
        return;
    }
    let width = inner.width as usize;
    let topic_w = run
        .topics
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 22)
        + 1;
    // Columns that fit, widest layout first.
    let numbers_w = 19;
    let drift_w = 25;
    let show_drift = width >= topic_w + 12 + BAR_WIDTH + 1 + numbers_w + drift_w;
    let show_numbers = width >= topic_w + 12 + BAR_WIDTH + 1 + numbers_w;
    let show_bar = width > topic_w + 10 + BAR_WIDTH;
    let fixed = topic_w
        + if show_bar { BAR_WIDTH + 1 } else { 0 }
        + if show_numbers { numbers_w } else { 0 }
        + if show_drift { drift_w } else { 0 };
    let spark_w = width.saturating_sub(fixed).max(4);

    let mut lines = Vec::new();
    let mut head = vec![
        Span::styled(pad("topic", topic_w), muted),
        Span::styled(pad("p(leading) per probe", spark_w), muted),
    ];
    if show_bar {
        head.push(Span::styled(pad("now", BAR_WIDTH + 1), muted));
    }
    if show_numbers {
        head.push(Span::styled(pad("probabilities", numbers_w), muted));
    }
    if show_drift {
        head.push(Span::styled("drift since 1st probe", muted));
    }
    lines.push(Line::from(head));
    let rows = inner.height as usize - 1;
    let hidden = run.topics.len().saturating_sub(rows);
    let shown = if hidden > 0 {
        rows.saturating_sub(1)
    } else {
        run.topics.len()
    };
    // The selected topic (j/k, Enter opens it) stays in view.
    let focused = app.view.focus == Panel::Stance;
    let selected = app.selected_topic.min(run.topics.len() - 1);
    let first = if focused && shown > 0 && selected >= shown {
        selected + 1 - shown
    } else {
        0
    };
    for (i, (name, track)) in run.topics.iter().enumerate().skip(first).take(shown) {
        let name_style = if focused && i == selected {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        let mut spans = vec![
            Span::styled(truncate(name, topic_w - 1), name_style),
            Span::raw(" ".repeat(topic_w - truncate(name, topic_w - 1).chars().count())),
        ];
        spans.extend(sparkline(app, track, spark_w));
        if show_bar {
            spans.extend(distribution_bar(app, track.latest, BAR_WIDTH));
            spans.push(Span::raw(" "));
        }
        if show_numbers {
            for (s, p) in track.latest.iter() {
                spans.push(Span::styled(
                    format!("{} {} ", s.initial(), prob(*p)),
                    Style::new().fg(app.theme.stance[s]),
                ));
            }
            spans.push(Span::raw(" "));
        }
        if show_drift {
            let row = run.drift_table().run_row(name);
            for (s, d) in track.drift().iter() {
                let noise = row.as_ref().is_none_or(|r| r.stances[s].noise);
                let (text, style) = if noise {
                    (format!("~{}", signed(*d).trim_start()), muted)
                } else {
                    (signed(*d), Style::new().fg(app.theme.stance[s]))
                };
                // Five wide: "~−.12" (a drift within noise) must not lose
                // its last digit.
                spans.push(Span::styled(
                    format!("{} {} ", s.initial(), pad(&text, 5)),
                    style,
                ));
            }
        }
        lines.push(Line::from(spans));
    }
    if hidden > 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "… {} more topics (j/k select, Enter opens one)",
                run.topics.len() - shown
            ),
            muted,
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// `S ▃▄▅▆`: the leading stance's initial, then one bar per probe (newest right).
fn sparkline<'a>(app: &App, track: &TopicTrack, width: usize) -> Vec<Span<'a>> {
    let lead = track.leading();
    let color = app.theme.stance[lead];
    let n = width.saturating_sub(3);
    let values: Vec<char> = track.history[lead]
        .tail(n)
        .map(|p| {
            let level = (p.clamp(0.0, 1.0) * LEVELS.len() as f64).ceil() as usize;
            LEVELS[level.clamp(1, LEVELS.len()) - 1]
        })
        .collect();
    let drawn: String = values.iter().collect();
    vec![
        Span::styled(format!("{} ", lead.initial()), Style::new().fg(color)),
        Span::styled(pad(&drawn, n + 1), Style::new().fg(color)),
    ]
}

/// A bar `width` cells long split in proportion to support, neutral, oppose.
pub fn distribution_bar<'a>(app: &App, mean: StanceDistribution, width: usize) -> Vec<Span<'a>> {
    let total: f64 = mean.values().map(|p| p.max(0.0)).sum();
    let total = if total > 0.0 { total } else { 1.0 };
    // Largest remainder, so the three parts always fill the bar exactly.
    let exact: Vec<f64> = mean
        .values()
        .map(|p| p.max(0.0) / total * width as f64)
        .collect();
    let mut cells: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = width.saturating_sub(cells.iter().sum());
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order {
        if left == 0 {
            break;
        }
        cells[i] += 1;
        left -= 1;
    }
    Stance::EACH
        .into_iter()
        .zip(cells)
        .map(|(s, n)| {
            let glyph = match s {
                Stance::Support => '█',
                Stance::Neutral => '▓',
                Stance::Oppose => '▒',
            };
            Span::styled(
                glyph.to_string().repeat(n),
                Style::new().fg(app.theme.stance[s]),
            )
        })
        .collect()
}

/// `.62`, `1.0`
pub fn prob(p: f64) -> String {
    if p >= 0.995 {
        "1.0".into()
    } else {
        format!("{:.2}", p.max(0.0))
            .trim_start_matches('0')
            .to_string()
    }
}

/// `+.12`, `−.03`, ` .00`
pub fn signed(d: f64) -> String {
    let mag = prob(d.abs());
    if d >= 0.005 {
        format!("+{mag}")
    } else if d <= -0.005 {
        format!("−{mag}")
    } else {
        format!(" {mag}")
    }
}

pub fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.chars().take(w).collect()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

pub fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The colour a stance is drawn in (for tests and other panels).
pub fn stance_color(app: &App, stance: Stance) -> Color {
    app.theme.stance[stance]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_and_drifts_are_short() {
        assert_eq!(prob(0.617), ".62");
        assert_eq!(prob(0.999), "1.0");
        assert_eq!(signed(0.12), "+.12");
        assert_eq!(signed(-0.034), "−.03");
        assert_eq!(signed(0.001), " .00");
    }

    #[test]
    fn bar_cells_add_up_to_its_width() {
        let app = App::new(
            crate::tui::action::Mode::Replay,
            crate::tui::theme::Theme::default(),
            "x",
        );
        for mean in [[0.333, 0.333, 0.334], [1.0, 0.0, 0.0], [0.5, 0.25, 0.25]] {
            let n: usize = distribution_bar(&app, mean.into(), 15)
                .iter()
                .map(|s| s.content.chars().count())
                .sum();
            assert_eq!(n, 15, "{mean:?}");
        }
    }
}
