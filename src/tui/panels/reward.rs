//! Preference-phase rewards: margins, chosen, rejected, accuracies (and KL for
//! KTO), as TRL names them.

use super::chart::{self, ChartSpec, Trace};
use super::panel_block;
use crate::tui::app::{App, Panel};
use crate::tui::run::{REWARD_METRICS, RL_ONLY_METRICS};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::Frame;

/// Short legend names for the metrics.
fn short(metric: &str) -> &str {
    match metric {
        "clip_ratio/region_mean" | "policy/clipfrac_avg" => "clip",
        "objective/scores" => "score",
        "objective/kl" => "kl",
        m => m.strip_prefix("rewards/").unwrap_or(m),
    }
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let run = &app.run;
    let title = format!(" rewards {}", chart::view_tags(app));
    let rl = run.phases.iter().any(|p| p.is_rl());
    let present: Vec<(usize, &str)> = REWARD_METRICS
        .iter()
        .enumerate()
        .filter(|(_, m)| rl || !RL_ONLY_METRICS.contains(m))
        .filter(|(_, m)| run.series.get(**m).is_some_and(|s| !s.is_empty()))
        .map(|(i, m)| (i, *m))
        .collect();
    let empty_message = match run.phases.iter().position(|p| p.is_preference()) {
        Some(i) => format!(
            "no preference steps yet: phase {} ({}) fills this panel",
            i + 1,
            run.phases[i].algorithm
        ),
        None => "this run has no preference phase".to_string(),
    };
    let x_start = present
        .iter()
        .filter_map(|(_, m)| run.series[*m].bounds().map(|b| b.x[0]))
        .fold(f64::INFINITY, f64::min);
    let x_start = if x_start.is_finite() {
        (x_start - 1.0).max(0.0)
    } else {
        0.0
    };
    let lines = present
        .iter()
        .map(|(i, m)| Trace {
            name: short(m),
            series: &run.series[*m],
            color: app.theme.series_color(i + 1),
        })
        .collect();
    // Latest values ride on the bottom border, in the axis's number format.
    let footer = present
        .iter()
        .filter_map(|(i, m)| {
            let (_, v) = run.series[*m].last()?;
            let label = match *m {
                "rewards/margins" => "margin",
                "rewards/accuracies" => "acc",
                "clip_ratio/region_mean" | "policy/clipfrac_avg" => "clip",
                "objective/scores" => "score",
                "objective/kl" => "kl",
                other => short(other),
            };
            Some((label, v, app.theme.series_color(i + 1)))
        })
        .collect();
    let block = panel_block(app, Panel::Reward, Line::from(title));
    let spec = ChartSpec {
        lines,
        boundaries: Vec::new(),
        x_start,
        x_end: run.total_steps() as f64,
        empty_message,
        footer,
    };
    chart::render(frame, app, area, block, spec);
}
