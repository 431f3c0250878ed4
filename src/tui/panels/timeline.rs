//! The replay's timeline: play state, speed, position, clock.

use super::fmt_duration;
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// `×¼`, `×1`, `×64`
pub fn speed_label(speed: f64) -> String {
    if speed >= 1.0 {
        format!("×{speed:.0}")
    } else if (speed - 0.5).abs() < 1e-9 {
        "×½".into()
    } else if (speed - 0.25).abs() < 1e-9 {
        "×¼".into()
    } else {
        format!("×{speed}")
    }
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let Some(r) = app.replay else {
        return;
    };
    let t = &app.theme;
    let state = if r.playing { "▶" } else { "⏸" };
    let left = vec![Span::styled(
        format!(" {state} {} ", speed_label(r.speed)),
        Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
    )];
    let right = format!(
        " {} / {} · event {}/{} ",
        fmt_duration(r.clock),
        fmt_duration(r.duration),
        r.position,
        r.total
    );
    let used = left.iter().map(|s| s.width()).sum::<usize>() + right.chars().count();
    let bar_w = (area.width as usize).saturating_sub(used + 2).max(4);
    let frac = if r.total > 0 {
        r.position as f64 / r.total as f64
    } else {
        0.0
    };
    let done = ((frac * bar_w as f64).round() as usize).min(bar_w);
    let mut spans = left;
    spans.push(Span::styled("━".repeat(done), Style::new().fg(t.accent)));
    spans.push(Span::styled(
        "─".repeat(bar_w - done),
        Style::new().fg(t.border),
    ));
    spans.push(Span::styled(right, Style::new().fg(t.muted)));
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().bg(t.background)),
        area,
    );
}
