//! Training loss over all phases on one global-step axis, phase starts marked.

use super::chart::{self, ChartSpec, Trace};
use super::panel_block;
use crate::tui::app::{App, Panel};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::Frame;

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let run = &app.run;
    let phases: Vec<&str> = run.phases.iter().map(|p| p.name.as_str()).collect();
    let title = format!(
        " loss {}· {} ",
        chart::view_tags(app),
        if phases.is_empty() {
            "—".to_string()
        } else {
            phases.join(" │ ")
        }
    );
    let block = panel_block(app, Panel::Loss, Line::from(title));
    let mut lines = Vec::new();
    if let Some(s) = run.series.get("loss") {
        lines.push(Trace {
            name: "loss",
            series: s,
            color: app.theme.series_color(0),
        });
    }
    let spec = ChartSpec {
        lines,
        boundaries: run
            .phase_boundaries()
            .iter()
            .map(|(s, _)| *s as f64)
            .collect(),
        x_start: 0.0,
        x_end: run.total_steps() as f64,
        empty_message: "waiting for the first step…".into(),
        footer: Vec::new(),
    };
    chart::render(frame, app, area, block, spec);
}
