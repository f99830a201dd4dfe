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
    /// Talk to a running Gatehouse's admin listener: show status, drain, disable or enable a server, set a
    /// weight. The address and token come from the config file's [server] admin / admin_token unless given.
    Ctl(CtlArgs),
    /// Hash a password for a basic_auth user: asked twice on a terminal (not echoed), or read from stdin
    /// (one trailing newline removed); the hash is printed, ready for `users = { name = "<hash>" }`.
    HashPassword {
        /// bcrypt (the default, as Caddy's) or argon2id.
        #[arg(long, value_enum, default_value = "bcrypt")]
        algorithm: HashAlgorithm,
        /// bcrypt's cost (4-31): each step doubles the work of every check that misses the cache.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HashAlgorithm {
    Bcrypt,
    Argon2id,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The admin listener (default: [server] admin of the config file).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
    /// The admin token (default: $GATEHOUSE_ADMIN_TOKEN, then [server] admin_token of the config file).
    #[arg(long, env = "GATEHOUSE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Pools and servers with health, admin state, in-flight and weight (--json: the whole /status).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// No new requests to the server; in-flight ones finish.
    Drain { pool: String, server: String },
    /// Take the server out (no new requests).
    Disable { pool: String, server: String },
    /// Put a drained or disabled server back.
    Enable { pool: String, server: String },
    /// Set the server's weight (1-1000), or "config" for the config file's.
    Weight {
        pool: String,
        server: String,
        weight: String,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path of the config file.
    #[arg(short = 'c', long = "config", default_value = "config/gatehouse.toml")]
    pub path: PathBuf,
}
