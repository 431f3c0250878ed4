//! Composes the panels into one screen.
//!
//! ```text
//! ╭ driftui live · runs/demo ────────────────────────────────────────────╮
//! │ demo-sft-dpo  phase 2/2 dpo (dpo)  step 40/60  global 160/180 89%      │  header
//! │ steps/s 1.1  tokens/s 3.4k  elapsed 2:31  ETA 0:18  model builtin:…    │
//! ╰──────────────────────────────────────────────────────────────────────╯
//! ┏ loss · sft │ dpo ━━━━━━━━━━━━━━━━┓╭ rewards ─────────────────────────╮
//! ┃         ⠈⠢⡀     │                ┃│      margins ⣀⠤⠔⠊⠉               │  loss | reward
//! ┃            ⠈⠒⠤⠤⣀│⣀⣀⡀            ┃│ rejected ⠉⠒⠢⢄⣀                   │
//! ┗━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┛╰ margins 1.2 chosen 0.3 … ────────╯
//! ╭ stance · 12 topics · 9 probes, last at step 160 ─────────────────────╮
//! │ topic           p(leading) per probe   now          drift            │  stance
//! │ climate change  S ▃▄▅▆▆▇▇              ████▓▓▒▒  …  S +.29 …         │
//! ╰──────────────────────────────────────────────────────────────────────╯
//!  ▶ ×4 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━──────────── 1:02 / 2:10 · event 91/203   timeline (replay)
//!  snapshot (manual) at step 150           2 alerts · 3 snapshots · ? help    status
//! ```
//!
//! Enter enlarges the focused panel over the loss, reward and stance area.
//! Below [`MIN_WIDTH`]×[`MIN_HEIGHT`] only a "too small" notice is drawn.

use super::action::Mode;
use super::app::{App, Overlay, Panel, Screen};
use super::panels::{
    confirm, drift, header, help, loss, probe, reward, rollouts, stance, status, timeline, topic,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Draw the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    frame.render_widget(
        Block::new().style(
            Style::new()
                .fg(app.theme.foreground)
                .bg(app.theme.background),
        ),
        area,
    );
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, app, area);
        return;
    }
    let timeline_h = if app.mode == Mode::Replay { 1 } else { 0 };
    let [header_area, body, timeline_area, status_area] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(0),
        Constraint::Length(timeline_h),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(frame, app, header_area);
    match app.screen {
        Screen::Topic => topic::render(frame, app, body),
        Screen::Drift => drift::render(frame, app, body),
        Screen::Probe => probe::render(frame, app, body),
        Screen::Rollouts => rollouts::render(frame, app, body),
        Screen::Dashboard => dashboard(frame, app, body),
    }
    if timeline_h > 0 {
        timeline::render(frame, app, timeline_area);
    }
    status::render(frame, app, status_area);
    match app.overlay {
        Overlay::Help => help::render(frame, app, area),
        Overlay::ConfirmQuit => confirm::render(frame, app, area),
        Overlay::None => {}
    }
}

fn dashboard(frame: &mut Frame, app: &App, body: Rect) {
    if app.view.enlarged {
        match app.view.focus {
            Panel::Loss => loss::render(frame, app, body),
            Panel::Reward => reward::render(frame, app, body),
            Panel::Stance => stance::render(frame, app, body),
        }
    } else {
        // Stance rows: a header row, one per topic, borders; at most half the body.
        let topics = app.run.topics.len().max(1) as u16;
        let stance_h = (topics + 3).clamp(5, body.height / 2);
        let [charts, stance_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(stance_h)]).areas(body);
        let [loss_area, reward_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(charts);
        loss::render(frame, app, loss_area);
        reward::render(frame, app, reward_area);
        stance::render(frame, app, stance_area);
    }
}

fn too_small(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let text = vec![
        Line::from(Span::styled(
            "terminal too small",
            Style::new().fg(t.warning).add_modifier(Modifier::BOLD),
        )),
        Line::raw(""),
        Line::raw(format!(
            "driftui needs {MIN_WIDTH}×{MIN_HEIGHT}; this is {}×{}.",
            area.width, area.height
        )),
        Line::raw("Enlarge the window, or press q to quit."),
    ];
    let h = (text.len() as u16 + 1).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .centered()
            .style(Style::new().fg(t.foreground)),
        Rect {
            y,
            height: h,
            ..area
        },
    );
}
