//! Cost of one dashboard redraw with long series (release build):
//!
//! ```text
//! cargo run --release --example bench_redraw
//! ```
//!
//! Fills 8 metric series with 100,000 points each, then times (a) one chart
//! holding all 8 series, (b) the whole dashboard, on a 200×50 TestBackend.
//! Each timed frame alternates the view (log scale on/off) so the screen
//! really changes and the diff is not empty.

use driftui::tui::action::Mode;
use driftui::tui::app::App;
use driftui::tui::panels::{chart, panel_block};
use driftui::tui::run::StepView;
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use ratatui::backend::TestBackend;
use ratatui::text::Line;
use ratatui::Terminal;
use std::time::{Duration, Instant};

const POINTS: u64 = 100_000;
const FRAMES: usize = 200;

fn main() {
    let mut app = App::new(Mode::Replay, Theme::default(), "bench");
    let fill = Instant::now();
    let names = [
        "rewards/margins",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "kl",
    ];
    for i in 1..=POINTS {
        let x = i as f64;
        let wave = (x / 700.0).sin();
        let spike = if i % 25_000 == 0 { 5.0 } else { 0.0 };
        let step = StepView {
            t: 1.0e9 + x,
            phase: 0,
            step: i,
            global_step: i,
            loss: 2.0 + 0.5 * wave + spike,
            lr: 1e-4 * (1.0 - x / POINTS as f64),
            grad_norm: 1.0 + 0.2 * wave,
            tokens: 2048,
            seconds: 0.5,
            metrics: names
                .iter()
                .enumerate()
                .map(|(k, n)| (*n, (k as f64 + 1.0) * 0.1 * wave + k as f64))
                .collect(),
        };
        app.run.apply_step(&step);
    }
    let fill = fill.elapsed();
    let all: Vec<&str> = app.run.series.keys().map(|s| s.as_str()).collect();
    assert_eq!(all.len(), 8, "{all:?}");
    let total_points: u64 = app.run.series.values().map(|s| s.len()).sum();
    println!(
        "filled {} series, {} points in all, in {:.1} ms",
        all.len(),
        total_points,
        fill.as_secs_f64() * 1e3
    );

    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let one_chart = |app: &App, terminal: &mut Terminal<TestBackend>| {
        terminal
            .draw(|f| {
                let lines = app
                    .run
                    .series
                    .iter()
                    .enumerate()
                    .map(|(i, (name, s))| chart::Trace {
                        name,
                        series: s,
                        color: app.theme.series_color(i),
                    })
                    .collect();
                let spec = chart::ChartSpec {
                    lines,
                    boundaries: vec![50_000.0],
                    x_start: 0.0,
                    x_end: POINTS as f64,
                    empty_message: String::new(),
                    footer: Vec::new(),
                };
                let block = panel_block(app, app.view.focus, Line::from(" 8 series "));
                chart::render(f, app, f.area(), block, spec);
            })
            .unwrap();
    };
    let dashboard = |app: &App, terminal: &mut Terminal<TestBackend>| {
        terminal.draw(|f| ui::draw(f, app)).unwrap();
    };
    for (name, draw) in [
        (
            "one chart, 8 series x 100k points",
            &one_chart as &dyn Fn(&App, &mut Terminal<TestBackend>),
        ),
        ("whole dashboard (loss + 5 reward series)", &dashboard),
    ] {
        for (label, smoothing) in [("raw", None), ("smoothed", Some(0.6))] {
            app.view.smoothing = smoothing;
            let mut times: Vec<Duration> = Vec::with_capacity(FRAMES);
            for i in 0..FRAMES {
                app.view.log_scale = i % 2 == 1;
                let t = Instant::now();
                draw(&app, &mut terminal);
                times.push(t.elapsed());
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / FRAMES as u32;
            println!(
                "{name}, {label}: mean {:.3} ms, median {:.3} ms, p99 {:.3} ms, max {:.3} ms ({FRAMES} frames, 200x50)",
                mean.as_secs_f64() * 1e3,
                times[FRAMES / 2].as_secs_f64() * 1e3,
                times[FRAMES * 99 / 100].as_secs_f64() * 1e3,
                times[FRAMES - 1].as_secs_f64() * 1e3,
            );
        }
    }
}
