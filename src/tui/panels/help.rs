//! The `?` overlay: every binding of the keymap, grouped, with its
//! description; bindings that do nothing in this mode are dimmed.

use crate::tui::action::Action;
use crate::tui::app::{App, Screen};
use crate::tui::keymap::Section;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

/// Sections in the order the overlay lists them, in two columns, per screen:
/// a screen's own keys first, then the ones that still work there.
fn groups(screen: Screen) -> [&'static [Section]; 2] {
    use Section::*;
    match screen {
        Screen::Dashboard => [&[View, Help, QuitDialog], &[Training, Replay]],
        Screen::Topic => [&[Topic, View, Help], &[Training, Replay, QuitDialog]],
        Screen::Drift => [&[DriftTable, View, Help], &[Training, Replay, QuitDialog]],
        Screen::Probe => [&[Probe, ProbeTyping, Help], &[Training, QuitDialog, View]],
        Screen::Rollouts => [&[Rollouts, View, Help], &[Training, Replay, QuitDialog]],
    }
}

/// The overlay's two columns of lines (also what tests read).
pub fn columns(app: &App) -> [Vec<Line<'static>>; 2] {
    groups(app.screen).map(|groups| lines(app, groups))
}

/// The keymap sections the overlay lists on `screen`.
pub fn groups_on(screen: Screen) -> Vec<Section> {
    groups(screen).concat()
}

fn lines(app: &App, groups: &[Section]) -> Vec<Line<'static>> {
    let t = &app.theme;
    let bindings = app.keymap.bindings();
    let key_w = bindings
        .iter()
        .map(|b| b.label().chars().count())
        .max()
        .unwrap_or(8)
        + 2;
    let mut out = Vec::new();
    for &group in groups {
        let in_group: Vec<_> = bindings.iter().filter(|b| b.section == group).collect();
        if in_group.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(Line::raw(""));
        }
        out.push(Line::from(Span::styled(
            group.title().to_string(),
            Style::new().fg(t.title).add_modifier(Modifier::BOLD),
        )));
        for b in in_group {
            let (key_style, text_style) = if b.works_in(app.mode) {
                (Style::new().fg(t.accent), Style::new().fg(t.foreground))
            } else {
                (Style::new().fg(t.muted), Style::new().fg(t.muted))
            };
            let label = b.label();
            let pad = key_w.saturating_sub(label.chars().count());
            out.push(Line::from(vec![
                Span::styled(format!("  {label}{}", " ".repeat(pad)), key_style),
                Span::styled(b.description.clone(), text_style),
            ]));
        }
    }
    out
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let [left, right] = columns(app);
    let width_of = |ls: &[Line]| ls.iter().map(|l| l.width()).max().unwrap_or(0) as u16;
    let (lw, rw) = (width_of(&left) + 2, width_of(&right));
    let width = lw + rw + 4;
    let height = left.len().max(right.len()) as u16 + 2;
    let [area] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [area] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let closes = app
        .keymap
        .bindings()
        .iter()
        .find(|b| b.section == Section::Help && b.action == Action::CloseOverlay)
        .map_or(String::new(), |b| {
            let keys: Vec<String> = b.keys.iter().take(2).map(|k| k.to_string()).collect();
            format!(" {} closes ", keys.join(" or "))
        });
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(t.border_focused))
        .title(Line::from(" keys (dimmed: not in this mode) ").style(Style::new().fg(t.title)))
        .title_bottom(Line::from(closes).style(Style::new().fg(t.muted)))
        .style(Style::new().fg(t.foreground).bg(t.background));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let [l, r] = Layout::horizontal([Constraint::Length(lw), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), r);
}
