//! `gatehouse`: the command line. `run` serves in the foreground; `check` validates a config and exits.

mod acme;
mod cli;
mod logging;
mod reload;
mod run;
mod watch;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Check { config } => match gatehouse_config::load(&config.path) {
            Ok(cfg) => {
                // The certificate files too: a config that would not start is not ok.
                let mut bad = false;
                for site in &cfg.sites {
                    if let Some(gatehouse_config::SiteTls::Files { cert, key }) = &site.tls {
                        if let Err(e) = gatehouse_tls::certificate::load_pair(cert, key) {
                            eprintln!("{}: {e}", config.path.display());
                            bad = true;
                        }
                    }
                }
                // Pool CA files too: they are read when the config is applied.
                for pool in cfg.pools.values() {
                    if let Some(tls) = &pool.tls {
                        if let Err(e) =
                            gatehouse_tls::client::client_config(tls.ca.as_deref(), pool.http2)
                        {
                            eprintln!("{}: pool.{}.ca: {e}", config.path.display(), pool.name);
                            bad = true;
                        }
                    }
                }
                if bad {
                    return ExitCode::from(1);
                }
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
