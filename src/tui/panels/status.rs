//! The bottom line: last message or alert on the left, counters on the right.

use super::plural;
use crate::tui::action::{Action, Context};
use crate::tui::app::{App, Quit};
use crate::tui::run::Level;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let run = &app.run;
    let mut right = Vec::new();
    if app.skipped_lines > 0 {
        right.push(Span::styled(
            format!("{} skipped", plural(app.skipped_lines, "bad line")),
            Style::new().fg(t.warning),
        ));
    }
    if run.failed_probes > 0 {
        right.push(Span::styled(
            format!("{} failed", plural(run.failed_probes, "probe")),
            Style::new().fg(t.warning),
        ));
    }
    if run.alerts > 0 {
        right.push(Span::styled(
            plural(run.alerts, "alert"),
            Style::new().fg(t.warning),
        ));
    }
    right.push(Span::styled(
        plural(run.snapshots, "snapshot"),
        Style::new().fg(t.muted),
    ));
    if let Some(k) = app
        .keymap
        .key_for(Context::Main, app.mode, Action::ToggleHelp)
    {
        right.push(Span::styled(format!("{k} help"), Style::new().fg(t.muted)));
    }
    let mut right_line = Vec::new();
    for (i, s) in right.into_iter().enumerate() {
        if i > 0 {
            right_line.push(Span::styled(" · ", Style::new().fg(t.muted)));
        }
        right_line.push(s);
    }
    let right_line = Line::from(right_line);
    let right_w = right_line.width() as u16 + 1;
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_w)]).areas(area);

    let left = match &run.status {
        Some(m) => {
            let (tag, color) = match m.level {
                Level::Info => ("", t.foreground),
                Level::Warning => ("warning: ", t.warning),
                Level::Error => ("error: ", t.error),
            };
            let mut style = Style::new().fg(color);
            if m.level != Level::Info {
                style = style.add_modifier(Modifier::BOLD);
            }
            Line::from(vec![Span::styled(format!(" {tag}{}", m.text), style)])
        }
        None => Line::from(Span::styled(" ready", Style::new().fg(t.muted))),
    };
    let left = if app.quit == Quit::Stopping {
        Line::from(Span::styled(
            " stopping: waiting for the trainer's final snapshot and run_end…",
            Style::new().fg(t.warning),
        ))
    } else {
        left
    };
    let bg = Style::new().bg(t.background);
    frame.render_widget(Paragraph::new(left).style(bg), left_area);
    frame.render_widget(
        Paragraph::new(right_line).style(bg).right_aligned(),
        right_area,
    );
}
