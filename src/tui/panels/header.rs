//! Run name, phase k/n and algorithm, step/total, speed, elapsed and ETA.

use super::{fmt_duration, fmt_rate, label_value};
use crate::events::RunStatus;
use crate::tui::action::Mode;
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let run = &app.run;
    let mode = match app.mode {
        Mode::Live => "live",
        Mode::Replay => "replay",
        Mode::Watch => "watch",
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(t.border))
        .title(Line::from(vec![
            Span::styled(
                " driftui ",
                Style::new().fg(t.title).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("{mode} · {} ", app.source),
                Style::new().fg(t.muted),
            ),
        ]))
        .style(Style::new().fg(t.foreground).bg(t.background));

    let name = if run.run_name.is_empty() {
        "(waiting for run_start)".to_string()
    } else {
        run.run_name.clone()
    };
    let mut first = vec![Span::styled(
        name,
        Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
    )];
    let state = match (&run.ended, run.paused) {
        (Some(status), _) => {
            let color = match status {
                RunStatus::Failed => t.error,
                RunStatus::Stopped => t.warning,
                RunStatus::Completed => t.ok,
            };
            Some((format!("■ {status}"), color))
        }
        (None, true) => Some((
            match &run.pause_reason {
                Some(why) => format!("⏸ paused ({why})"),
                None => "⏸ paused".to_string(),
            },
            t.warning,
        )),
        _ => None,
    };
    if let Some((text, color)) = state {
        first.push(Span::raw("  "));
        first.push(Span::styled(
            text,
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ));
    }

    if let Some(i) = run.phase {
        let p = &run.phases[i];
        first.push(Span::raw("  "));
        first.extend(label_value(
            app,
            "phase ",
            format!(
                "{}/{} {} ({})",
                i + 1,
                run.phases.len(),
                p.name,
                p.algorithm
            ),
        ));
        first.push(Span::raw("  "));
        first.extend(label_value(
            app,
            "step ",
            format!("{}/{}", run.step, p.steps),
        ));
    }
    let total = run.total_steps();
    first.push(Span::raw("  "));
    first.extend(label_value(
        app,
        "global ",
        format!("{}/{}", run.global_step, total),
    ));
    if total > 0 {
        let pct = (run.global_step as f64 / total as f64 * 100.0).min(100.0);
        first.push(Span::styled(
            format!(" {pct:.0}%"),
            Style::new().fg(t.muted),
        ));
    }
    let mut second = Vec::new();
    let rate = |v: Option<f64>| v.map_or("—".to_string(), fmt_rate);
    // Rates and the ETA are over running time: a pause does not slow them.
    let clock = &run.clock;
    second.extend(label_value(app, "steps/s ", rate(clock.steps_per_second())));
    second.push(Span::raw("  "));
    second.extend(label_value(
        app,
        "tokens/s ",
        rate(clock.tokens_per_second()),
    ));
    second.push(Span::raw("  "));
    // Running time, and the pauses that make up the rest of the wall time.
    let elapsed = match (clock.running(), clock.paused()) {
        (Some(running), Some(paused)) if paused >= 1.0 => format!(
            "{} (+{} paused)",
            fmt_duration(running),
            fmt_duration(paused)
        ),
        (Some(running), _) => fmt_duration(running),
        _ => "—".into(),
    };
    second.extend(label_value(app, "elapsed ", elapsed));
    second.push(Span::raw("  "));
    second.extend(label_value(
        app,
        "ETA ",
        run.eta().map_or("—".into(), fmt_duration),
    ));
    if run.probes > 0 || run.failed_probes > 0 {
        // What probing costs: its share of the running time so far.
        second.push(Span::raw("  "));
        let share = run
            .probe_share()
            .map_or("—".to_string(), |s| format!("{:.1}% of time", s * 100.0));
        second.extend(label_value(app, "probing ", share));
    }
    if !run.model_source.is_empty() {
        second.push(Span::raw("  "));
        second.extend(label_value(app, "model ", run.model_source.clone()));
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]).block(block),
        area,
    );
}
