use anyhow::Result;
use clap::Parser;
use driftui::cli::{Cli, Command};
use driftui::tui::{self, UiOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("driftui: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { .. } => anyhow::bail!("training is not built yet"),
        Command::Replay { run, theme } => tui::replay(&run, &UiOptions { theme }),
        Command::Watch { path, theme } => tui::watch(&path, &UiOptions { theme }),
    }
}
