//! Time and memory to open a long log in replay (release build):
//!
//! ```text
//! cargo run --release --example gen_events -- /tmp/big.jsonl --sft 505000 --dpo 494000 --probe-every 5000
//! cargo run --release --example bench_replay_open -- /tmp/big.jsonl
//! ```
//!
//! Opening reads the whole log once (every event folded into the dashboard's
//! model, checkpoints kept for seeking). Then it times seeks and the first
//! frame. Memory is the process's peak and current resident size.

use driftui::tui::action::Mode;
use driftui::tui::app::App;
use driftui::tui::replay::Replay;
use driftui::tui::run::RunModel;
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Instant;

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_replay_open LOG"))?;
    let size = std::fs::metadata(&path)?.len();
    println!("before: {}", memory());
    let t = Instant::now();
    let (mut replay, whole) = Replay::open(std::path::Path::new(&path))?;
    let open = t.elapsed();
    println!(
        "open: {} events, {:.1} MB, {:.3} s ({:.0} events/s); global step {}",
        replay.len(),
        size as f64 / 1e6,
        open.as_secs_f64(),
        replay.len() as f64 / open.as_secs_f64(),
        whole.global_step
    );
    println!("after open: {}", memory());
    drop(whole);
    let mut app = App::new(Mode::Replay, Theme::default(), path.clone());
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    let t = Instant::now();
    app.replay = Some(replay.status());
    terminal.draw(|f| ui::draw(f, &app))?;
    println!("first frame: {:.3} ms", t.elapsed().as_secs_f64() * 1e3);
    for (label, target) in [
        ("seek to end", replay.len()),
        ("seek to 50%", replay.len() / 2),
        ("seek to 49%", replay.len() * 49 / 100),
        ("seek to start", 0),
    ] {
        let mut model = std::mem::take(&mut app.run);
        let t = Instant::now();
        replay.seek(target, &mut model)?;
        let dt = t.elapsed();
        app.run = model;
        app.replay = Some(replay.status());
        terminal.draw(|f| ui::draw(f, &app))?;
        println!(
            "{label}: {:.1} ms (then {} events applied)",
            dt.as_secs_f64() * 1e3,
            app.run.events
        );
    }
    let _ = RunModel::new();
    println!("end: {}", memory());
    Ok(())
}
