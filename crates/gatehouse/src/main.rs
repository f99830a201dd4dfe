//! `gatehouse`: the command line. `run` serves in the foreground; `check` validates a config and exits.

mod acme;
mod cli;
mod ctl;
mod logging;
mod memory;
mod observe;
mod reload;
mod run;
mod watch;

use clap::Parser;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Check { config } => check(&config.path),
        cli::Command::Run { config } => run::run(&config.path),
        cli::Command::Ctl(args) => ctl::ctl(args),
        cli::Command::HashPassword { algorithm, cost } => hash_password(algorithm, cost),
    }
}

/// `gatehouse hash-password`: a basic_auth hash of a password read from the terminal or stdin.
fn hash_password(algorithm: cli::HashAlgorithm, cost: u32) -> ExitCode {
    use std::io::{IsTerminal, Read};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ");
        let again = rpassword::prompt_password("Again: ");
        match (first, again) {
            (Ok(a), Ok(b)) if a == b => a.into_bytes(),
            (Ok(_), Ok(_)) => {
                eprintln!("the two passwords differ");
                return ExitCode::from(1);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("cannot read the password: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            eprintln!("cannot read the password from stdin: {e}");
            return ExitCode::from(1);
        }
        if buf.ends_with(b"\n") {
            buf.pop();
            if buf.ends_with(b"\r") {
                buf.pop();
            }
        }
        buf
    };
    if password.is_empty() {
        eprintln!("an empty password protects nothing");
        return ExitCode::from(1);
    }
    let alg = match algorithm {
        cli::HashAlgorithm::Bcrypt => gatehouse_policy::basic_auth::Algorithm::Bcrypt(cost),
        cli::HashAlgorithm::Argon2id => gatehouse_policy::basic_auth::Algorithm::Argon2id,
    };
    match gatehouse_policy::basic_auth::hash_password(&password, alg) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot hash: {e}");
            ExitCode::from(1)
        }
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
