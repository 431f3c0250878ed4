//! A run trained elsewhere on the dashboard: TRL's logs and the trace's
//! probes fill the same panels, drift table and probe screen as a native
//! run, and new checkpoints arrive through the watch.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use driftui::events::watch::follow_source;
use driftui::probe::trace::{run_trace, TraceOptions};
use driftui::rundir::view::{locate_view, RunView};
use driftui::tui::action::Mode;
use driftui::tui::app::App;
use driftui::tui::theme::Theme;
use driftui::tui::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

/// The committed TRL SFT run, with the tokenizer files a real checkpoint carries.
fn sft_copy(into: &Path) -> PathBuf {
    let dst = into.join("sft_out");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture("trl-sft")).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_checkpoint(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    dst
}

fn copy_checkpoint(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    std::fs::write(
        to.join("tokenizer.json"),
        driftui::model::builtin::TOKENIZER_JSON,
    )
    .unwrap();
    std::fs::write(
        to.join("tokenizer_config.json"),
        driftui::model::builtin::tokenizer_config().to_string(),
    )
    .unwrap();
}

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

#[test]
fn a_traced_trl_run_fills_the_dashboard_the_drift_table_and_the_probe_screen() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sft_copy(tmp.path());
    // Trace the first two checkpoints; the third lands while we watch.
    let late = tmp.path().join("held-back");
    std::fs::rename(out.join("checkpoint-6"), &late).unwrap();
    let mut opts = TraceOptions::new(vec![out.clone()]);
    opts.questions_per_topic = 1;
    opts.settle = Duration::ZERO;
    opts.once = true;
    let s = run_trace(&opts, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(s.probed, 2);

    let RunView::Foreign(run) = locate_view(&out).unwrap() else {
        panic!("not read as a traced run")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (first, mut updates, _handle) = follow_source(run.pipeline(), &out).unwrap();
    let mut app = App::new(
        Mode::Watch,
        Theme::built_in("dark").unwrap(),
        run.pipeline().describe(),
    );
    app.run_dir = Some(run.own_dir());
    app.apply(&first.events);
    let s = screen(&app);
    // The callback's log: the whole SFT run; the trace: two probes.
    assert!(s.contains("phase 1/1 sft (sft)"), "{s}");
    assert!(s.contains("global 6/6"), "{s}");
    assert!(s.contains("immigration"), "{s}");
    assert_eq!(app.run.probes, 2);
    assert_eq!(app.run.series["loss"].len(), 6);

    // The trainer saves its last checkpoint; the trace probes it; the watch shows it.
    copy_checkpoint(&late, &out.join("checkpoint-6"));
    let s = run_trace(&opts, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((s.probed, s.skipped_as_done), (1, 2));
    rt.block_on(async {
        while app.run.probes < 3 {
            let u = tokio::time::timeout(Duration::from_secs(10), updates.recv())
                .await
                .expect("no update within 10 s")
                .expect("watch ended")
                .expect("watch failed");
            app.apply(&u.events);
        }
    });
    assert_eq!(app.run.last_probe_step, Some(6));

    // The drift table, as for a native run.
    app.on_key(&KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE));
    let s = screen(&app);
    assert!(s.contains("sft"), "{s}");
    assert!(s.contains("immigration"), "{s}");
    // The probe screen lists the trainer's checkpoints the trace announced.
    app.on_key(&KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE));
    app.on_key(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE));
    let s = screen(&app);
    for c in ["checkpoint-2", "checkpoint-4", "checkpoint-6"] {
        assert!(s.contains(c), "{c} missing:\n{s}");
    }
}
