//! One file per panel; each has `render(frame, &app, area)`. The layout that
//! composes them is in `ui.rs`.

pub mod chart;
pub mod confirm;
pub mod drift;
pub mod header;
pub mod help;
pub mod loss;
pub mod probe;
pub mod reward;
pub mod rollouts;
pub mod stance;
pub mod status;
pub mod timeline;
pub mod topic;

use super::app::{App, Panel};
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;

/// Why a panel has nothing to draw: one muted line, centred in `inner`.
pub fn empty_note(frame: &mut Frame, app: &App, inner: Rect, text: &str) {
    let mid = Rect {
        y: inner.y + inner.height / 2,
        height: 1,
        ..inner
    };
    frame.render_widget(
        Paragraph::new(Span::styled(text, Style::new().fg(app.theme.muted))).centered(),
        mid,
    );
}

/// A panel's frame; focused panels get the accent border and a bold title.
pub fn panel_block<'a>(app: &App, panel: Panel, title: Line<'a>) -> Block<'a> {
    let focused = app.view.focus == panel;
    let t = &app.theme;
    let (border, kind) = if focused {
        (t.border_focused, BorderType::Thick)
    } else {
        (t.border, BorderType::Rounded)
    };
    let mut title_style = Style::new().fg(t.title);
    if focused {
        title_style = title_style.add_modifier(Modifier::BOLD);
    }
    Block::new()
        .borders(Borders::ALL)
        .border_type(kind)
        .border_style(Style::new().fg(border))
        .title(title.style(title_style))
        .style(Style::new().fg(t.foreground).bg(t.background))
}

/// A number in at most about six characters: `0.6931`, `-12.5`, `3.2e-5`, `45.1k`.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 1e-3 {
        format!("{v:.4}")
    } else {
        format!("{v:.1e}")
    }
}

/// `1 alert`, `3 alerts`
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A rate: two decimals below 10, else as [`fmt_value`].
pub fn fmt_rate(v: f64) -> String {
    if v.is_finite() && v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        fmt_value(v)
    }
}

/// Seconds as `1:02:03` or `4:05`.
pub fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "—".into();
    }
    crate::duration::clock(secs)
}

/// A muted label followed by a value, for one-line summaries.
pub fn label_value<'a>(app: &App, label: &'a str, value: String) -> [Span<'a>; 2] {
    [
        Span::styled(label, Style::new().fg(app.theme.muted)),
        Span::styled(value, Style::new().fg(app.theme.foreground)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_durations_are_compact() {
        assert_eq!(fmt_value(0.512_34), "0.5123");
        assert_eq!(fmt_value(-12.5), "-12.50");
        assert_eq!(fmt_value(45_123.0), "45.1k");
        assert_eq!(fmt_value(0.00002), "2.0e-5");
        assert_eq!(fmt_value(f64::NAN), "—");
        assert_eq!(fmt_duration(65.0), "1:05");
        assert_eq!(fmt_duration(3723.0), "1:02:03");
    }
}
