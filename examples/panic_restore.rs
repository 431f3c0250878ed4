//! Manual check that a panic restores the terminal (run it in a terminal,
//! then look at `stty -a`: `icanon` and `echo` are back, the screen is the
//! shell's again, and the panic message is readable):
//!
//! ```text
//! cargo run --example panic_restore; stty -a | grep -o 'icanon\|echo '
//! ```

fn main() {
    let mut guard = driftui::tui::terminal::enter().expect("a terminal");
    guard
        .terminal
        .draw(|f| {
            f.render_widget(ratatui::widgets::Paragraph::new("about to panic"), f.area());
        })
        .expect("draw");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Leak the guard so that only the panic hook can restore the terminal.
    std::mem::forget(guard);
    panic!("deliberate panic to check the terminal is restored");
}
