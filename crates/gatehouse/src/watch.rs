//! Notices edits to the config file.
//!
//! The *parent folder* is watched, not the file: editors save by writing a new file and renaming it over the old
//! one, Kubernetes swaps a `..data` symlink, some tools delete then create. Every event in the folder becomes one
//! "look again" signal after a short debounce; [`crate::reload::Reloader`] then reads the file and drops events
//! whose bytes it has already seen. A periodic re-read in the run loop covers what no watcher can see (a symlink
//! target edited in another folder, a watcher that failed to start).

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the folder must be quiet before a burst of events becomes one look.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

pub type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Starts watching the folder of `config`; each debounced burst sends one `()` on `tx` (coalesced when full).
pub fn watch_config(config: &Path, tx: mpsc::Sender<()>) -> notify::Result<Watcher> {
    let absolute = std::path::absolute(config).map_err(notify::Error::io)?;
    let folder = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut debouncer =
        new_debouncer(
            DEBOUNCE,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) if !events.is_empty() => {
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "config watcher error; still watching");
                    }
                }
            },
        )?;
    debouncer.watch(&folder, RecursiveMode::NonRecursive)?;
    tracing::info!(folder = %folder.display(), "watching the config folder");
    Ok(debouncer)
}
