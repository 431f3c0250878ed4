//! Taking over the terminal and giving it back on every way out: normal
//! return, error (the guard's `Drop`), panic (a hook that restores first).

use anyhow::{Context, Result};
use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyEvent, KeyModifiers};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use futures::{Stream, StreamExt};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{stdout, Stdout};
use std::sync::Once;

/// Restores the terminal when dropped.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Raw mode, alternate screen, hidden cursor; and a panic hook that undoes them.
pub fn enter() -> Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode().context("cannot put the terminal in raw mode (is this a terminal?)")?;
    // From here on, failures must restore what was done.
    let setup = || -> Result<Terminal<CrosstermBackend<Stdout>>> {
        execute!(stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(Terminal::new(CrosstermBackend::new(stdout()))?)
    };
    match setup() {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            restore();
            Err(e.context("cannot set up the terminal"))
        }
    }
}

/// Leave the alternate screen and raw mode; safe to call more than once.
pub fn restore() {
    let _ = execute!(stdout(), LeaveAlternateScreen, cursor::Show);
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The probe worker catches its panics and carries on: the
            // dashboard keeps the terminal, the log gets the message.
            if std::thread::current().name() == Some(crate::probe::worker::THREAD_NAME) {
                tracing::error!("probe worker panic: {info}");
                return;
            }
            restore();
            previous(info);
        }));
    });
}

/// Terminal events, plus Ctrl-C / SIGTERM from outside as a Ctrl-C key (in
/// raw mode the terminal's own Ctrl-C already arrives as a key).
pub fn input() -> impl Stream<Item = std::io::Result<TermEvent>> + Unpin {
    let ctrl_c = TermEvent::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let signals = futures::stream::unfold((), move |()| {
        let ev = ctrl_c.clone();
        async move {
            wait_for_signal().await?;
            Some((Ok(ev), ()))
        }
    });
    futures::stream::select(EventStream::new(), Box::pin(signals)).boxed()
}

async fn wait_for_signal() -> Option<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok()?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok(),
            r = term.recv() => r,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok()
    }
}
