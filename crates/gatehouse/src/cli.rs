//! Command-line interface (clap).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "HTTP reverse proxy and load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground (SIGHUP reloads the config, SIGTERM/SIGINT drain and exit).
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a config file: exit 0 if it is good, else print every problem with file:line and exit 1.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path of the config file.
    #[arg(short = 'c', long = "config", default_value = "config/gatehouse.toml")]
    pub path: PathBuf,
}
