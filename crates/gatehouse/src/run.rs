//! `gatehouse run`: load the config, start the runtime and the proxy, then follow signals and file edits.
//!
//! SIGHUP re-reads the config file; edits are noticed by [`crate::watch`] within about a second; either way a bad
//! file is logged and the running config kept ([`crate::reload`]). SIGTERM or SIGINT stop accepting and drain
//! for `grace_period`, then exit 0; a second SIGTERM/SIGINT exits at once.

use crate::reload::{Reloader, Trigger};
use gatehouse_proxy::Proxy;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The safety-net re-read interval, for changes no watcher reports.
const POLL: Duration = Duration::from_secs(2);

pub fn run(path: &Path) -> ExitCode {
    let loaded = std::fs::read(path)
        .map_err(|e| format!("{}: cannot read config: {e}", path.display()))
        .and_then(|bytes| {
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
            let config = gatehouse_config::parse(&text, &path.display().to_string())
                .map_err(|e| e.to_string())?;
            Ok((config, bytes))
        });
    let (config, bytes) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    crate::logging::init(&config.server.log_level);
    // Workers serve connections; this thread's own small runtime handles signals, reloads and sweeps.
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let started = gatehouse_proxy::Workers::start(workers).and_then(|workers| {
        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok((workers, control))
    });
    let (workers, control) = match started {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = control.block_on(serve(path, config, bytes, &workers));
    // Tunnels and connections still open after the grace period are cut here, without waiting.
    workers.stop();
    control.shutdown_background();
    code
}

async fn serve(
    path: &Path,
    config: gatehouse_config::Config,
    bytes: Vec<u8>,
    runtimes: &gatehouse_proxy::Workers,
) -> ExitCode {
    let workers = runtimes.len();
    let observer = Arc::new(crate::observe::LogObserver);
    let proxy = match Proxy::start(config, runtimes.handles(), observer) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %path.display(), workers, generation = proxy.generation(), "gatehouse started");
    let acme = match crate::acme::Acme::start(&proxy.snapshot().config, &proxy).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start ACME");
            return ExitCode::from(1);
        }
    };
    let reloader = Reloader::new(path.to_path_buf(), proxy.clone(), bytes);
    match follow(path, &proxy, reloader, acme).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            ExitCode::from(1)
        }
    }
}

async fn follow(
    path: &Path,
    proxy: &Arc<Proxy>,
    mut reloader: Reloader,
    mut acme: Option<crate::acme::Acme>,
) -> std::io::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // SIGUSR1 means "reopen the access log" (logrotate); handled so that it never kills the process.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (tx, mut file_events) = tokio::sync::mpsc::channel(1);
    let _watcher = match crate::watch::watch_config(path, tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config folder; edits apply on SIGHUP or within {POLL:?}");
            None
        }
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let applied = tokio::select! {
            _ = hup.recv() => {
                let applied = reloader.check(Trigger::Signal).await;
                proxy.refresh_certificates(true);
                applied
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: no access log file is open to reopen");
                false
            }
            Some(()) = file_events.recv() => reloader.check(Trigger::FileEvent).await,
            _ = poll.tick() => {
                let applied = reloader.check(Trigger::Poll).await;
                // Certificate files are watched by their size and modification time.
                proxy.refresh_certificates(false);
                applied
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if applied {
            // A reload may add or remove ACME sites, or add the [acme] section itself.
            let config = proxy.snapshot().config.clone();
            match &acme {
                Some(a) => a.update(&config, proxy),
                None => match crate::acme::Acme::start(&config, proxy).await {
                    Ok(a) => acme = a,
                    Err(e) => tracing::error!(error = %e, "cannot start ACME"),
                },
            }
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
    tracing::warn!("second signal: exiting at once, open connections cut");
    ExitCode::SUCCESS
}
