//! The drift table: per topic and phase (and the whole run), each stance's
//! drift magnitude (last probe − first probe of the phase, on the same
//! questions) with its 95% paired-bootstrap interval, and drift time
//! (fraction of the phase until the stance is within the 95% interval of
//! its extreme), from [`crate::probe::drift`]. A drift whose interval
//! contains 0 is marked `~`, drawn muted, and has no time.
//!
//! ```text
//! ┏ drift · 12 topics · 2 phases · j/k move · Enter opens a topic · Esc back ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
//! ┃ topic        phase  support Δ  95% interval  time  neutral Δ  95% interval  time  oppose Δ  95% interval  time ┃
//! ┃ abortion     sft    +0.233     [+.19,+.27]   0.50  −0.121     [−.16,−.08]   0.45  ~−0.112   [−.23,+.01]   —    ┃
//! ┗━ Δ: last − first probe, same questions · ~: the interval contains 0 (noise) · time: … ━━━━━━━━━━━━━━━━━━━━━━━━━━━┛
//! ```

use super::stance::{pad, truncate};
use crate::events::Stance;
use crate::probe::drift::StanceDrift;
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

/// A drift time: `0.50`, or `—` where it is not defined (the `run` rows,
/// and drifts within noise).
pub fn fmt_time(t: Option<f64>) -> String {
    t.map_or("—".into(), |t| format!("{t:.2}"))
}

/// A magnitude with its noise mark: `~−0.012` where the interval contains 0.
pub fn fmt_drift(d: &StanceDrift) -> String {
    let m = fmt_magnitude(d.magnitude);
    if d.noise {
        format!("~{}", m.trim_start())
    } else {
        m
    }
}

/// A 95% interval, short: `[+.19,+.27]`; `—` where there is none.
pub fn fmt_interval(iv: Option<(f64, f64)>) -> String {
    let short = |x: f64| {
        let s = format!("{:.2}", x.abs());
        let s = s.trim_start_matches('0');
        // A bound that rounds to .00 keeps its sign: [−.34,−.00] excludes
        // 0, [−.23,+.00] contains it.
        if x == 0.0 {
            format!(" {s}")
        } else if x > 0.0 {
            format!("+{s}")
        } else {
            format!("−{s}")
        }
    };
    iv.map_or("—".into(), |(lo, hi)| {
        format!("[{},{}]", short(lo), short(hi))
    })
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
            " Δ: last − first probe, same questions, with its 95% interval · ~: the interval contains 0 (noise) · time: share of the phase until within the 95% interval of the extreme ",
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
        super::empty_note(frame, app, inner, text);
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
    // The intervals only where the whole row fits (the last time column's
    // padding may be cut): on a narrow terminal the oppose column's time
    // would go first, and `~` still marks the noise.
    let show_interval = inner.width as usize + 2 >= topic_w + phase_w + 3 * (10 + 14 + 6);
    let mut head = vec![
        Span::styled(pad("topic", topic_w), muted),
        Span::styled(pad("phase", phase_w), muted),
    ];
    for s in Stance::EACH {
        head.push(Span::styled(pad(&format!("{s} Δ"), 10), muted));
        if show_interval {
            head.push(Span::styled(pad("95% interval", 14), muted));
        }
        head.push(Span::styled(pad("time", 6), muted));
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
            if d.noise {
                style = muted;
            } else if d.magnitude.abs() >= NOTABLE {
                style = style.add_modifier(Modifier::BOLD);
            }
            spans.push(Span::styled(pad(&fmt_drift(d), 10), style));
            if show_interval {
                spans.push(Span::styled(pad(&fmt_interval(d.interval), 14), style));
            }
            spans.push(Span::styled(
                pad(&fmt_time(d.time), 6),
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
        assert_eq!(fmt_interval(Some((0.191, 0.268))), "[+.19,+.27]");
        assert_eq!(fmt_interval(Some((-0.231, 0.004))), "[−.23,+.00]");
        assert_eq!(fmt_interval(Some((-0.34, -0.002))), "[−.34,−.00]");
        assert_eq!(fmt_interval(Some((0.0, 0.0))), "[ .00, .00]");
        let noisy = StanceDrift {
            magnitude: -0.0123,
            time: None,
            interval: Some((-0.05, 0.02)),
            se: Some(0.02),
            noise: true,
        };
        assert_eq!(fmt_drift(&noisy), "~−0.012");
        assert_eq!(
            fmt_drift(&StanceDrift {
                noise: false,
                ..noisy
            }),
            "−0.012"
        );
    }
}
