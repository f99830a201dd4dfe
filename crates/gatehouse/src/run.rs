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
    crate::memory::start(&tokio::runtime::Handle::current());
    let metrics = Arc::new(gatehouse_metrics::Metrics::new());
    let access_log = match start_access_log(&config.server.access_log, &metrics) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the access log");
            return ExitCode::from(1);
        }
    };
    // Bound before anything serves: a busy admin port is a start-up error, not a silent absence.
    let admin_listener = match config.server.admin {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot bind the admin listener");
                return ExitCode::from(1);
            }
        },
    };
    let observer = Arc::new(crate::observe::Observers {
        access_log: access_log.clone(),
    });
    let proxy = match Proxy::start_with_metrics(config, runtimes.handles(), observer, metrics) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %path.display(), workers, generation = proxy.generation(), "gatehouse started");
    let acme_slot = gatehouse_admin::AcmeSlot::default();
    if let Some(listener) = admin_listener {
        let local = listener.local_addr().ok();
        if proxy.snapshot().config.server.admin_token.is_none()
            && local.is_some_and(|a| !a.ip().is_loopback())
        {
            tracing::warn!(admin = ?local, "the admin listener is not on loopback and has no admin_token: anyone who reaches it can drain servers");
        }
        tracing::info!(admin = ?local, "admin listener: /status, /metrics, dashboard at /");
        let admin =
            gatehouse_admin::Admin::new(proxy.clone(), path.to_path_buf(), acme_slot.clone());
        tokio::spawn(admin.serve(listener));
    }
    let acme = match crate::acme::Acme::start(&proxy.snapshot().config, &proxy).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start ACME");
            return ExitCode::from(1);
        }
    };
    let set_acme = move |a: &Option<crate::acme::Acme>| {
        *acme_slot.lock().unwrap_or_else(|e| e.into_inner()) = a.as_ref().map(|a| a.stats.clone());
    };
    set_acme(&acme);
    let reloader = Reloader::new(path.to_path_buf(), proxy.clone(), bytes);
    let code = match follow(
        path,
        &proxy,
        reloader,
        acme,
        access_log.as_deref(),
        set_acme,
    )
    .await
    {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            ExitCode::from(1)
        }
    };
    // Every line of the requests that finished is written before the process exits.
    if let Some(a) = &access_log {
        a.writer().close();
    }
    code
}

/// The access log's writer thread, unless the log is off.
fn start_access_log(
    target: &gatehouse_config::AccessLog,
    metrics: &gatehouse_metrics::Metrics,
) -> std::io::Result<Option<Arc<gatehouse_access_log::AccessLog>>> {
    use gatehouse_access_log::{AccessLog, Target, Writer};
    let target = match target {
        gatehouse_config::AccessLog::Off => return Ok(None),
        gatehouse_config::AccessLog::Stdout => Target::Stdout,
        gatehouse_config::AccessLog::File(p) => Target::File(p.clone()),
    };
    let writer = Writer::start(target, metrics.events.access_log_dropped.clone())?;
    Ok(Some(Arc::new(AccessLog::new(writer))))
}

async fn follow(
    path: &Path,
    proxy: &Arc<Proxy>,
    mut reloader: Reloader,
    mut acme: Option<crate::acme::Acme>,
    access_log: Option<&gatehouse_access_log::AccessLog>,
    set_acme: impl Fn(&Option<crate::acme::Acme>),
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
                match access_log {
                    Some(log) => log.writer().reopen(),
                    None => tracing::info!("SIGUSR1: no access log is open to reopen"),
                }
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
                    Ok(a) => {
                        acme = a;
                        set_acme(&acme);
                    }
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
