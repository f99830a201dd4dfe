//! The thread that writes log lines, and the bounded queue in front of it.
//!
//! Requests hand finished lines to the queue with `try_send` and go on: when the writer falls behind (a slow
//! disk, a blocked stdout pipe) the queue fills and further lines are dropped and counted
//! (`gatehouse_access_log_dropped_lines_total`), never waited for. The writer does not sleep in a blocking
//! `recv` between lines — that would make every line a futex wake-up for the worker that sent it — but drains
//! the queue, flushes, and naps for a few milliseconds when it found it empty.
//!
//! SIGUSR1 ([`Writer::reopen`]) sets a flag the writer checks between batches: it flushes, closes the file
//! and opens the path again (logrotate has renamed the old one). Every line already taken from the queue was
//! written to the old file; every later one goes to the new file: none is lost or written twice.

use gatehouse_metrics::Counter;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines the queue holds: ~1 s of a busy worker, a few MiB at most.
pub const QUEUE_LINES: usize = 16 * 1024;
/// How long the writer naps when the queue is empty.
const NAP: Duration = Duration::from_millis(5);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

#[derive(Debug)]
struct Shared {
    reopen: AtomicBool,
    stop: AtomicBool,
}

/// The sending side, shared by every worker.
#[derive(Debug)]
pub struct Writer {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
    dropped: Counter,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Opens the target (a file is created 0640 if missing, appended to) and starts the writer thread.
    pub fn start(target: Target, dropped: Counter) -> std::io::Result<Writer> {
        Self::with_capacity(target, dropped, QUEUE_LINES)
    }

    pub fn with_capacity(
        target: Target,
        dropped: Counter,
        lines: usize,
    ) -> std::io::Result<Writer> {
        let sink = Sink::open(&target)?;
        let (tx, rx) = sync_channel(lines.max(1));
        let shared = Arc::new(Shared {
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || run(rx, sink, target, &s))?;
        Ok(Writer {
            tx,
            shared,
            dropped,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a line; drops (and counts) it if the queue is full. Never blocks.
    pub fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Asks the writer to reopen its file after the lines it has taken (SIGUSR1, for logrotate).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
    }

    /// Writes what is queued, flushes and stops the thread (at exit).
    pub fn close(&self) {
        self.shared.stop.store(true, Relaxed);
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(std::io::BufWriter<File>),
}

impl Sink {
    fn open(target: &Target) -> std::io::Result<Sink> {
        Ok(match target {
            Target::Stdout => Sink::Stdout(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            Target::File(p) => {
                Sink::File(std::io::BufWriter::with_capacity(64 * 1024, open_file(p)?))
            }
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File(w) => w,
        }
    }
}

fn open_file(p: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(p)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

fn run(rx: Receiver<Vec<u8>>, mut sink: Sink, target: Target, shared: &Shared) {
    let mut failing = false;
    loop {
        // Drain what is queued.
        let mut wrote = false;
        let disconnected = loop {
            match rx.try_recv() {
                Ok(line) => {
                    wrote = true;
                    if let Err(e) = sink.out().write_all(&line) {
                        if !failing {
                            tracing::error!(error = %e, "cannot write the access log; lines are lost until it works again");
                            failing = true;
                        }
                    } else {
                        failing = false;
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            let _ = sink.out().flush();
        }
        if shared.reopen.swap(false, Relaxed) {
            let _ = sink.out().flush();
            match Sink::open(&target) {
                Ok(new) => {
                    sink = new;
                    tracing::info!("access log reopened");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the access log; still writing the old file")
                }
            }
        }
        if disconnected || shared.stop.load(Relaxed) {
            // One last drain: lines queued before the stop was seen.
            while let Ok(line) = rx.try_recv() {
                let _ = sink.out().write_all(&line);
            }
            let _ = sink.out().flush();
            return;
        }
        if !wrote {
            std::thread::sleep(NAP);
        }
    }
}
