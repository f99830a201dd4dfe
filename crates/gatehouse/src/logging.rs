//! Logs go to stderr through tracing; `RUST_LOG` overrides the config's `log_level`.

use tracing_subscriber::EnvFilter;

pub fn init(log_level: &str) {
    // rustls warns once per handshake about things any client can send (an IP address as SNI): at the
    // config's level that would let clients flood the log, so it speaks only of errors unless RUST_LOG asks.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{log_level},rustls=error")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
