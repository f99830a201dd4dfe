//! `gatehouse`: the command line. `run` serves in the foreground; `check` validates a config and exits.

mod cli;
mod logging;
mod reload;
mod run;
mod watch;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Check { config } => match gatehouse_config::load(&config.path) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} listener(s), {} site(s), {} pool(s))",
                    config.path.display(),
                    cfg.listeners.len(),
                    cfg.sites.len(),
                    cfg.pools.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        cli::Command::Run { config } => run::run(&config.path),
    }
}
