//! The checkpoint probe screen: the run's snapshots (newest first), the
//! question, and one column of answers per picked checkpoint (A and B side
//! by side), each with the question's `choice` distribution and a judge's
//! distribution per answer. The judge is named and flagged when it failed
//! the check on answers of known stance.
//!
//! ```text
//! ╭ snapshots · Space picks ──────────╮╭ question · e types · n/N probe set · Enter asks ─╮
//! │ A dpo-000049    step 162 phase_end││ Should the death penalty be abolished?            │
//! │ ▸ sft-000100    step 100 cadence  ││ death-penalty · 3/196 of assets/probes/default… │
//! │ B sft-000050    step 50  cadence  ││ judge: the run's starting model (t switches)      │
//! ╰───────────────────────────────────╯╰───────────────────────────────────────────────────╯
//! ╭ A · dpo-000049 · step 162 · done ╮╭ B · sft-000050 · step 50 · sampling 3 answers… ──╮
//! │ choice  S .41 N .33 O .26 ███▓▓▒▒ ││ choice  S .52 N .28 O .20 ████▓▓▒                  │
//! │ judge   builtin:tiny — untrusted  ││                                                   │
//! │ answer 1 · judge S .50 N .30 O .20││ answer 1                                          │
//! │ The death penalty …               ││ I think …                                         │
//! ╰───────────────────────────────────╯╰───────────────────────────────────────────────────╯
//! ```

use super::stance::{distribution_bar, pad, prob, truncate};
use crate::events::{SnapshotReason, StanceDistribution};
use crate::probe::worker::JudgeChoice;
use crate::tui::action::{Action, Context};
use crate::tui::app::App;
use crate::tui::checkpoints::{ColumnView, QuestionSource};
use crate::tui::path_display;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Wrap};
use ratatui::Frame;
use std::path::Path;

const COLUMN_NAMES: [&str; 2] = ["A", "B"];

fn block<'a>(app: &App, title: Line<'a>, active: bool) -> Block<'a> {
    let t = &app.theme;
    let (border, kind) = if active {
        (t.border_focused, BorderType::Thick)
    } else {
        (t.border, BorderType::Rounded)
    };
    Block::new()
        .borders(Borders::ALL)
        .border_type(kind)
        .border_style(Style::new().fg(border))
        .title(title.style(Style::new().fg(t.title)))
        .style(Style::new().fg(t.foreground).bg(t.background))
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let p = &app.probe;
    let top_h = (p.snapshots.len() as u16 + 2).clamp(8, (area.height / 3).max(8));
    let [top, bottom] = Layout::vertical([
        Constraint::Length(top_h.min(area.height)),
        Constraint::Min(0),
    ])
    .areas(area);
    let [list_area, question_area] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    snapshots(frame, app, list_area);
    question(frame, app, question_area);
    answers(frame, app, bottom);
}

fn snapshots(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let p = &app.probe;
    let muted = Style::new().fg(t.muted);
    let hint = app.keymap.hint(
        Context::Probe,
        app.mode,
        &[
            (Action::PickSnapshot, "picks A, B"),
            (Action::Rescan, "re-reads"),
        ],
    );
    let b = block(
        app,
        Line::from(format!(" snapshots ({}) · {hint} ", p.snapshots.len())),
        !p.editing,
    );
    let inner = b.inner(area);
    frame.render_widget(b, area);
    if p.snapshots.is_empty() {
        let text = match &app.run_dir {
            None => "no run directory: nothing to probe".to_string(),
            Some(_) => "no snapshots yet (s saves one while training)".to_string(),
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, muted)).wrap(Wrap { trim: true }),
            inner,
        );
        return;
    }
    let name_w = p
        .snapshots
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(8)
        .min(24)
        + 1;
    let rows = inner.height as usize;
    let first = if p.cursor >= rows {
        p.cursor + 1 - rows
    } else {
        0
    };
    let mut lines = Vec::new();
    for (i, s) in p.snapshots.iter().enumerate().skip(first).take(rows) {
        let mark = match p.picked.iter().position(|&x| x == i) {
            Some(k) => Span::styled(
                format!("{} ", COLUMN_NAMES[k]),
                Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
            ),
            None => Span::raw("  "),
        };
        let step = s
            .global_step
            .or(s.step)
            .map_or("—".to_string(), |g| g.to_string());
        let mut spans = vec![
            mark,
            Span::raw(pad(&truncate(&s.name, name_w - 1), name_w)),
            Span::styled(format!("step {} ", pad(&step, 6)), muted),
        ];
        match &s.problem {
            Some(problem) => spans.push(Span::styled(problem.clone(), Style::new().fg(t.warning))),
            None => spans.push(Span::styled(
                s.reason.map_or("on disk", SnapshotReason::name),
                muted,
            )),
        }
        let mut line = Line::from(spans);
        if i == p.cursor {
            line = line.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn question(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let p = &app.probe;
    let muted = Style::new().fg(t.muted);
    let keys = &app.keymap;
    let typing_keys = keys.hint(
        Context::ProbeInput,
        app.mode,
        &[(Action::Ask, "asks"), (Action::StopEditing, "stops")],
    );
    let title = if p.editing && p.replace_on_type {
        format!(" question · typing replaces it (Backspace edits it) · {typing_keys} ")
    } else if p.editing {
        format!(" question · typing: {typing_keys} · Ctrl-u clears ")
    } else {
        let set_keys = match (
            keys.key_for(Context::Probe, app.mode, Action::NextQuestion),
            keys.key_for(Context::Probe, app.mode, Action::PrevQuestion),
        ) {
            (Some(n), Some(prev)) => format!(" · {n}/{prev} probe set"),
            (Some(n), None) | (None, Some(n)) => format!(" · {n} probe set"),
            (None, None) => String::new(),
        };
        let edit = keys.hint(Context::Probe, app.mode, &[(Action::EditQuestion, "types")]);
        let rest = keys.hint(
            Context::Probe,
            app.mode,
            &[(Action::ToggleJudge, "judge"), (Action::Ask, "asks")],
        );
        format!(" question · {edit}{set_keys} · {rest} ")
    };
    let b = block(app, Line::from(title), p.editing);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut lines = Vec::new();
    let mut q = vec![Span::styled(
        if p.question.is_empty() && !p.editing {
            "(no question: e to type one, n to take one from the probe set)".to_string()
        } else {
            p.question.clone()
        },
        if p.question.is_empty() {
            muted
        } else {
            Style::new().fg(t.foreground).add_modifier(Modifier::BOLD)
        },
    )];
    if p.editing {
        q.push(Span::styled("▏", Style::new().fg(t.accent)));
    }
    lines.push(Line::from(q));
    let origin = match (&p.source, &p.set) {
        (QuestionSource::Set(i), Some(set)) => format!(
            "{} · question {}/{} of {}",
            p.topic().unwrap_or("?"),
            i + 1,
            set.questions.len(),
            path_display::shown(Path::new(&set.origin))
        ),
        _ => "typed by you".to_string(),
    };
    lines.push(Line::from(Span::styled(origin, muted)));
    lines.push(Line::from(Span::styled(
        format!(
            "{} answers each · temperature {} · top-p {} · ≤ {} tokens",
            p.samples, p.params.temperature, p.params.top_p, p.params.max_tokens
        ),
        muted,
    )));
    let other = match p.judge {
        JudgeChoice::StartingModel => JudgeChoice::Checkpoint,
        JudgeChoice::Checkpoint => JudgeChoice::StartingModel,
    };
    lines.push(Line::from(vec![
        Span::styled("judge: ", muted),
        Span::raw(p.judge.describe()),
        Span::styled(format!(" (t: {})", other.describe()), muted),
    ]));
    if let Some(note) = &p.set_note {
        lines.push(Line::from(Span::styled(
            note.clone(),
            Style::new().fg(t.warning),
        )));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn answers(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let p = &app.probe;
    if p.columns.is_empty() {
        let b = block(app, Line::from(" answers "), false);
        let inner = b.inner(area);
        frame.render_widget(b, area);
        let text = vec![
            Line::raw(""),
            Line::from(Span::styled(
                "Pick one or two snapshots (Space), choose a question, press Enter.",
                Style::new().fg(t.muted),
            )),
            Line::from(Span::styled(
                "Answers stream in here, side by side, each with its stance; training and the dashboard go on.",
                Style::new().fg(t.muted),
            )),
        ];
        frame.render_widget(
            Paragraph::new(text).centered().wrap(Wrap { trim: true }),
            inner,
        );
        return;
    }
    let n = p.columns.len().max(1) as u32;
    let areas = Layout::horizontal((0..n).map(|_| Constraint::Ratio(1, n))).split(area);
    for (k, (c, a)) in p.columns.iter().zip(areas.iter()).enumerate() {
        column(frame, app, *a, k, c);
    }
}

fn dist_spans(app: &App, d: StanceDistribution) -> Vec<Span<'static>> {
    d.iter()
        .map(|(s, p)| {
            Span::styled(
                format!("{} {} ", s.initial(), prob(*p)),
                Style::new().fg(app.theme.stance[s]),
            )
        })
        .collect()
}

fn column(frame: &mut Frame, app: &App, area: Rect, k: usize, c: &ColumnView) {
    let t = &app.theme;
    let muted = Style::new().fg(t.muted);
    let step = c
        .global_step
        .map_or(String::new(), |g| format!(" · step {g}"));
    let scrolled = if app.probe.scroll > 0 {
        format!("· ↓{} ", app.probe.scroll)
    } else {
        String::new()
    };
    let title = Line::from(format!(
        " {} · {}{} · {} {scrolled}",
        COLUMN_NAMES.get(k).unwrap_or(&"?"),
        c.name,
        step,
        c.status
    ));
    let b = block(app, title, false);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut lines = Vec::new();
    let mut choice = vec![Span::styled("choice ", muted)];
    match c.choice {
        Some(d) => {
            choice.extend(dist_spans(app, d));
            if inner.width > 45 {
                choice.extend(distribution_bar(app, d, 12));
            }
        }
        None => choice.push(Span::styled("…", muted)),
    }
    lines.push(Line::from(choice));
    if let Some((name, check, trusted)) = &c.judge {
        let verdict = if *trusted {
            Span::styled("passed the known-stance check", Style::new().fg(t.ok))
        } else {
            Span::styled(
                "⚠ untrusted: tiny models are not judges",
                Style::new().fg(t.warning).add_modifier(Modifier::BOLD),
            )
        };
        lines.push(Line::from(vec![
            Span::styled("judge  ", muted),
            Span::raw(name.clone()),
        ]));
        lines.push(Line::from(vec![Span::raw("       "), verdict]));
        if let Some(check) = check {
            // "judge X: 5/42 = 12% on answers of known stance (…)": the score part.
            let score = check.split_once(": ").map_or(check.as_str(), |(_, s)| s);
            let score = score.split(" (").next().unwrap_or(score);
            lines.push(Line::from(Span::styled(format!("       {score}"), muted)));
        }
    }
    if let Some(e) = &c.error {
        lines.push(Line::from(Span::styled(
            format!("error: {e}"),
            Style::new().fg(t.error).add_modifier(Modifier::BOLD),
        )));
    }
    for (i, a) in c.answers.iter().enumerate() {
        lines.push(Line::raw(""));
        let mut head = vec![Span::styled(
            format!("answer {} ", i + 1),
            Style::new().fg(t.title).add_modifier(Modifier::BOLD),
        )];
        if let Some(d) = a.judged {
            head.push(Span::styled("· judge ", muted));
            head.extend(dist_spans(app, d));
        }
        lines.push(Line::from(head));
        if a.text.is_empty() {
            lines.push(Line::from(Span::styled("…", muted)));
        } else {
            for l in a.text.lines() {
                lines.push(Line::raw(l.to_string()));
            }
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.probe.scroll, 0)),
        inner,
    );
}
