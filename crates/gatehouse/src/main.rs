//! `gatehouse`: the command line. `run` serves in the foreground; `check` validates a config and exits.

mod acme;
mod cli;
mod ctl;
mod logging;
mod observe;
mod reload;
mod run;
mod watch;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Check { config } => check(&config.path),
        cli::Command::Run { config } => run::run(&config.path),
        cli::Command::Ctl(args) => ctl::ctl(args),
    }
}

/// `gatehouse check`: parse and validate, then exactly what start-up and reload run before binding a socket
/// (certificates, CA files, server names, the compiled snapshot), against throwaway registries.
fn check(path: &std::path::Path) -> ExitCode {
    let prepared = gatehouse_config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            let registries =
                gatehouse_proxy::Registries::new(1, Arc::new(gatehouse_proxy::NoObserver))
                    .map_err(|e| e.to_string())?;
            gatehouse_proxy::prepare(cfg, &registries).map_err(|e| e.to_string())
        });
    match prepared {
        Ok(p) if p.warnings_text().is_some() => {
            // Gatehouse would serve, without these certificates: for check, that is not ok.
            eprintln!("{}", p.warnings_text().unwrap_or_default());
            ExitCode::from(1)
        }
        Ok(p) => {
            let cfg = p.config();
            println!(
                "{}: ok ({} listener(s), {} site(s), {} pool(s))",
                path.display(),
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
    }
}
