//! "Stop the run and quit?" — asked before a live run is stopped.

use crate::tui::app::App;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let [area] = Layout::horizontal([Constraint::Length(52.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [area] = Layout::vertical([Constraint::Length(7.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(t.warning))
        .title(Line::from(" quit? ").style(Style::new().fg(t.warning).add_modifier(Modifier::BOLD)))
        .style(Style::new().fg(t.foreground).bg(t.background));
    let text = vec![
        Line::raw("Stop training? The trainer saves a final snapshot,"),
        Line::raw("writes run_end, and then driftui exits."),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", Style::new().fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::raw(" stop and quit    "),
            Span::styled("n", Style::new().fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::raw(" keep training"),
        ]),
    ];
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text)
            .block(block)
            .wrap(Wrap { trim: true })
            .centered(),
        area,
    );
}
