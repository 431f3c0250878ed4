//! The drift table: per topic and phase (and the whole run), each stance's
//! drift magnitude (last probe − first probe of the phase) and drift time
//! (fraction of the phase until the stance is within the 95% interval of
//! its extreme), from [`crate::probe::drift`].
//!
//! ```text
//! ┏ drift · 12 topics · 2 phases · j/k move · Enter opens a topic · Esc back ━━━━━━━━┓
//! ┃ topic             phase   support Δ  time   neutral Δ  time   oppose Δ  time     ┃
//! ┃ abortion          sft       +0.233   0.50     −0.121   0.45     −0.112   0.30     ┃
//! ┃                   dpo       −0.050   0.20     +0.020   1.00     +0.030   0.80     ┃
//! ┃                   run       +0.183      —     −0.101      —     −0.082      —     ┃
//! ┗━ Δ: last − first probe of the phase · time: share of the phase until within ━━━━━┛
//! ```

use super::stance::{pad, truncate};
use crate::events::Stance;
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;

/// A drift magnitude: `+0.233`, `−0.121` (a real minus sign).
pub fn fmt_magnitude(m: f64) -> String {
    if !m.is_finite() {
        return "—".into();
    }
    let s = format!("{:.3}", m.abs());
    if s == "0.000" {
        format!(" {s}")
    } else if m > 0.0 {
        format!("+{s}")
    } else {
        format!("−{s}")
    }
}

/// A drift time: `0.50`, or `—` where it is not defined (the `run` rows).
pub fn fmt_time(t: Option<f64>) -> String {
    t.map_or("—".into(), |t| format!("{t:.2}"))
}

/// Magnitudes at least this large are drawn bold.
const NOTABLE: f64 = 0.1;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let run = &app.run;
    let rows = run.drift_table().rows();
    let muted = Style::new().fg(t.muted);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(t.border_focused))
        .title(Line::from(vec![
            Span::styled(
                " drift ",
                Style::new().fg(t.title).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!(
                    "· {} topics · {} phases · j/k move · Enter opens a topic · Esc back ",
                    run.topics.len(),
                    run.phases.len()
                ),
                muted,
            ),
        ]))
        .title_bottom(Line::from(Span::styled(
            " Δ: last − first probe of the phase · time: share of the phase until the stance is within the 95% interval of its extreme ",
            muted,
        )))
        .style(Style::new().fg(t.foreground).bg(t.background));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 2 || inner.width < 20 {
        return;
    }
    if rows.is_empty() {
        let text = if run.probes == 0 {
            "no probes yet"
        } else {
            "no topic has two probes in one phase yet: nothing has drifted"
        };
        let mid = Rect {
            y: inner.y + inner.height / 2,
            height: 1,
            ..inner
        };
        frame.render_widget(Paragraph::new(Span::styled(text, muted)).centered(), mid);
        return;
    }
    let topic_w = rows
        .iter()
        .map(|r| r.topic.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24)
        + 2;
    let phase_w = rows
        .iter()
        .map(|r| r.phase.chars().count())
        .max()
        .unwrap_or(3)
        .max(5)
        + 2;
    let mut head = vec![
        Span::styled(pad("topic", topic_w), muted),
        Span::styled(pad("phase", phase_w), muted),
    ];
    for s in Stance::EACH {
        head.push(Span::styled(pad(&format!("{s} Δ"), 11), muted));
        head.push(Span::styled(pad("time", 7), muted));
    }
    let mut lines = vec![Line::from(head)];
    let visible = inner.height as usize - 1;
    let cursor = app.drift_row.min(rows.len() - 1);
    let first = if cursor >= visible {
        cursor + 1 - visible
    } else {
        0
    };
    for (i, r) in rows.iter().enumerate().skip(first).take(visible) {
        // The topic name only on its first row, as in a paper's table.
        let first_of_topic = i == 0 || rows[i - 1].topic != r.topic || i == first;
        let name = if first_of_topic {
            truncate(&r.topic, topic_w - 2)
        } else {
            String::new()
        };
        let mut spans = vec![
            Span::raw(pad(&name, topic_w)),
            Span::raw(pad(&r.phase, phase_w)),
        ];
        for (s, d) in r.stances.iter() {
            let mut style = Style::new().fg(t.stance[s]);
            if d.magnitude.abs() >= NOTABLE {
                style = style.add_modifier(Modifier::BOLD);
            }
            spans.push(Span::styled(pad(&fmt_magnitude(d.magnitude), 11), style));
            spans.push(Span::styled(
                pad(&fmt_time(d.time), 7),
                Style::new().fg(t.stance[s]),
            ));
        }
        let mut line = Line::from(spans);
        if i == cursor {
            line = line.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes_and_times_print_signed_and_fixed() {
        assert_eq!(fmt_magnitude(0.2334), "+0.233");
        assert_eq!(fmt_magnitude(-0.1206), "−0.121");
        assert_eq!(fmt_magnitude(-0.0001), " 0.000");
        assert_eq!(fmt_time(Some(0.5)), "0.50");
        assert_eq!(fmt_time(None), "—");
    }
}
