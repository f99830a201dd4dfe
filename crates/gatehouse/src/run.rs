//! `gatehouse run`: load the config, start the runtime and the proxy, then follow signals.
//!
//! SIGHUP re-reads the config file (a bad file is logged and the running config kept); SIGTERM or SIGINT stop
//! accepting and drain for `grace_period`, exit 0; a second SIGTERM/SIGINT exits at once.

use gatehouse_proxy::Proxy;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub fn run(path: &Path) -> ExitCode {
    let config = match gatehouse_config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    crate::logging::init(&config.server.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.workers)
        .thread_name("gatehouse-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(path, config))
}

async fn serve(path: &Path, config: gatehouse_config::Config) -> ExitCode {
    let workers = config.server.workers;
    let proxy = match Proxy::start(config) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %path.display(), workers, generation = proxy.generation(), "gatehouse started");
    match follow_signals(path, &proxy).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            ExitCode::from(1)
        }
    }
}

async fn follow_signals(path: &Path, proxy: &Arc<Proxy>) -> std::io::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(path, proxy),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let grace = proxy.snapshot().config.server.grace_period;
    tracing::info!(grace = ?grace, open = proxy.open_connections(), "shutting down: no new connections, draining");
    let report = tokio::select! {
        r = proxy.shutdown(grace) => r,
        _ = term.recv() => return Ok(exit_now()),
        _ = int.recv() => return Ok(exit_now()),
    };
    if report.cut > 0 {
        tracing::warn!(cut = report.cut, waited = ?report.waited, "grace period over: open connections cut");
    } else {
        tracing::info!(waited = ?report.waited, "drained, exiting");
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_now() -> ExitCode {
    tracing::warn!("second signal: exiting at once");
    ExitCode::SUCCESS
}

/// Re-reads the config file; an invalid file leaves the running config in place.
pub fn reload(path: &Path, proxy: &Proxy) {
    match gatehouse_config::load(path) {
        Ok(config) => match proxy.reload(config) {
            Ok(r) => tracing::info!(
                generation = r.generation,
                listeners_added = r.listeners_added.len(),
                listeners_removed = r.listeners_removed.len(),
                "config reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the previous config keeps serving")
            }
        },
        Err(e) => tracing::error!("reload rejected; the previous config keeps serving:\n{e}"),
    }
}
