//! The rollouts view: the newest RL step's sampled completions (one
//! prompt's group, as the trainer logs them), each with its reward and
//! group-relative advantage, so a user reads what the policy now writes.
//!
//! ```text
//! ┏ rollouts · step 246 (grpo) · 4 completions · j/k scroll · Esc back ━━━━━━━━━━━┓
//! ┃ prompt  Do you think abortion should stay legal?                               ┃
//! ┃                                                                                ┃
//! ┃ 1  reward 0.702  advantage +1.21  12 tokens                                    ┃
//! ┃    I believe people should be able to get a safe, legal abortion. …            ┃
//! ┃ 2  reward 0.498  advantage −0.87  32 tokens, cut at the length                 ┃
//! ┗━ reward: the phase's reward source · advantage: relative to the group ━━━━━━━━━┛
//! ```

use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph, Wrap};
use ratatui::Frame;

/// A signed number with a real minus sign: `+1.21`, `−0.87`.
fn signed(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x < 0.0 {
        format!("−{:.2}", -x)
    } else {
        format!("+{x:.2}")
    }
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let muted = Style::new().fg(t.muted);
    let bold = Style::new().fg(t.title).add_modifier(Modifier::BOLD);
    let r = app.run.rollouts.as_ref();
    let what = match r {
        Some(r) => {
            let algo = app
                .run
                .phases
                .get(r.phase)
                .map(|p| format!(" ({})", p.algorithm))
                .unwrap_or_default();
            format!(
                "· step {}{algo} · {} completions · j/k scroll · Esc back ",
                r.global_step,
                r.samples.len()
            )
        }
        None => "· Esc back ".into(),
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(t.border_focused))
        .title(Line::from(vec![
            Span::styled(" rollouts ", bold),
            Span::styled(what, muted),
        ]))
        .title_bottom(Line::from(Span::styled(
            " reward: the phase's reward source · advantage: relative to the prompt's group ",
            muted,
        )))
        .style(Style::new().fg(t.foreground).bg(t.background));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(r) = r else {
        let has_rl = app
            .run
            .phases
            .iter()
            .any(|p| matches!(p.algorithm.as_str(), "grpo" | "ppo"));
        let text = if has_rl {
            "no rollouts yet: the RL phase's first step logs them"
        } else {
            "this run has no RL phase (grpo, ppo): nothing is sampled during training"
        };
        super::empty_note(frame, app, inner, text);
        return;
    };
    let mut lines: Vec<Line> = Vec::new();
    let mut prompt_shown: Option<&str> = None;
    for (i, s) in r.samples.iter().enumerate() {
        if prompt_shown != Some(s.prompt.as_str()) {
            if prompt_shown.is_some() {
                lines.push(Line::default());
            }
            lines.push(Line::from(vec![
                Span::styled("prompt  ", bold),
                Span::raw(s.prompt.clone()),
            ]));
            lines.push(Line::default());
            prompt_shown = Some(s.prompt.as_str());
        }
        let reward = if s.reward.is_finite() {
            format!("{:.3}", s.reward)
        } else {
            "not a number".into()
        };
        let end = if s.finished {
            format!("{} tokens", s.tokens)
        } else {
            format!("{} tokens, cut at the length", s.tokens)
        };
        let adv_color = if s.advantage > 0.0 {
            t.ok
        } else if s.advantage < 0.0 {
            t.warning
        } else {
            t.muted
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<3}", i + 1), bold),
            Span::raw(format!("reward {reward}  ")),
            Span::styled(
                format!("advantage {}", signed(s.advantage)),
                Style::new().fg(adv_color),
            ),
            Span::styled(format!("  {end}"), muted),
        ]));
        let text = if s.completion.trim().is_empty() {
            "(empty)".to_string()
        } else {
            s.completion.clone()
        };
        for l in text.lines() {
            lines.push(Line::from(format!("   {l}")));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.rollouts_scroll, 0)),
        inner,
    );
}
