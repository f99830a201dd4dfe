//! The file backend: one machine (or several sharing a folder), 0700 folders, 0600 files, writes by temporary
//! file + rename. Every call runs on tokio's blocking pool, never on the thread that asked.

use super::{LockToken, Storage, StorageError, StoreHealth};
use crate::keys;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Storage in a folder: 0700 folders, 0600 files, writes by temporary file + rename.
#[derive(Debug, Clone)]
pub struct FileStorage {
    root: PathBuf,
    health: Arc<StoreHealth>,
}

impl FileStorage {
    /// Creates the folder (0700) if needed. An existing folder looser than 0700 is refused, never changed:
    /// it may not be Gatehouse's own.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        make_dir(&root)?;
        let health = Arc::new(StoreHealth::new("file", root.display().to_string()));
        health.ok();
        Ok(FileStorage { root, health })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with('.'))
            && !key.contains('\0');
        if !ok {
            return Err(StorageError::BadKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |error| StorageError::Io {
        path: path.into(),
        error,
    }
}

/// Creates `dir` and its missing parents with mode 0700; an existing one looser than that is refused.
fn make_dir(dir: &Path) -> Result<(), StorageError> {
    let existed = dir.is_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    if existed {
        let mode = std::fs::metadata(dir)
            .map_err(io(dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(io(dir)(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("mode {:o} is looser than 0700: not a folder of Gatehouse's own (it is not changed)", mode & 0o777),
            )));
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// This process, for lock ownership: host name, pid and a random part.
pub(super) fn owner_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!(
        "{}:{}:{:016x}",
        host.trim(),
        std::process::id(),
        rand::random::<u64>()
    )
}

impl FileStorage {
    /// Runs `f` on the blocking pool: file system calls may stall for as long as the disk likes.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&FileStorage) -> Result<T, StorageError> + Send + 'static,
    {
        let this = self.clone();
        let r = tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
        match &r {
            Ok(_) => self.health.ok(),
            Err(e) => {
                self.health.failed(&e.to_string());
            }
        }
        r
    }
}

#[async_trait::async_trait]
impl Storage for FileStorage {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_string();
        self.blocking(move |s| s.load_now(&key)).await
    }

    async fn store(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.blocking(move |s| s.store_now(&key, &value)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let key = key.to_string();
        self.blocking(move |s| s.delete_now(&key)).await
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<LockToken>, StorageError> {
        let name = name.to_string();
        self.blocking(move |s| s.lock_now(&name, ttl)).await
    }

    async fn renew(&self, token: &LockToken, ttl: Duration) -> Result<bool, StorageError> {
        let token = token.clone();
        self.blocking(move |s| s.renew_now(&token, ttl)).await
    }

    async fn unlock(&self, token: &LockToken) -> Result<(), StorageError> {
        let token = token.clone();
        self.blocking(move |s| s.unlock_now(&token)).await
    }

    fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }
}

/// The same operations, synchronous, for the blocking pool.
impl FileStorage {
    fn load_now(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            // A path whose parent is a file cannot hold a key: nothing is stored there.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn store_now(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        make_dir(&dir)?;
        let tmp = dir.join(format!(
            ".{}.{:016x}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
            rand::random::<u64>()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(value)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&path)(e)
        })
    }

    fn delete_now(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Runs `f` holding an exclusive `flock` on the lock's guard file: every check-and-set of a lease (take,
    /// take over a stale one, renew, release) is one step that no other process can interleave with. The
    /// guard is held for microseconds; the lease itself is the lock file's contents.
    fn with_guard<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let key = keys::lock(name);
        let guard_path = self.path(&keys::lock_guard(name))?;
        make_dir(guard_path.parent().unwrap_or(&self.root))?;
        let guard = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&guard_path)
            .map_err(io(&guard_path))?;
        guard.lock().map_err(io(&guard_path))?;
        let result = f(&key);
        let _ = guard.unlock();
        result
    }

    /// The lease in a lock file: its owner and when it expires (0 when unreadable).
    fn lease(&self, key: &str) -> Result<Option<(String, u64)>, StorageError> {
        Ok(self.load_now(key)?.map(|b| {
            let text = String::from_utf8_lossy(&b);
            let mut lines = text.lines();
            let owner = lines.next().unwrap_or("").to_string();
            let expires = lines
                .next()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .unwrap_or(0);
            (owner, expires)
        }))
    }

    fn lock_now(&self, name: &str, ttl: Duration) -> Result<Option<LockToken>, StorageError> {
        self.with_guard(name, |key| {
            if let Some((_, expires)) = self.lease(key)? {
                if expires > now_ms() {
                    return Ok(None);
                }
                tracing::info!(
                    lock = name,
                    "taking over an expired lock left by a stopped holder"
                );
            }
            let owner = owner_id();
            // Written whole (temporary file + rename): never visible empty or half-written.
            let record = format!("{}\n{}\n", owner, now_ms() + ttl.as_millis() as u64);
            self.store_now(key, record.as_bytes())?;
            Ok(Some(LockToken {
                name: name.into(),
                owner,
            }))
        })
    }

    fn renew_now(&self, token: &LockToken, ttl: Duration) -> Result<bool, StorageError> {
        self.with_guard(&token.name, |key| {
            match self.lease(key)? {
                Some((owner, _)) if owner == token.owner => {}
                _ => return Ok(false),
            }
            let record = format!("{}\n{}\n", token.owner, now_ms() + ttl.as_millis() as u64);
            self.store_now(key, record.as_bytes())?;
            Ok(true)
        })
    }

    fn unlock_now(&self, token: &LockToken) -> Result<(), StorageError> {
        self.with_guard(&token.name, |key| match self.lease(key)? {
            Some((owner, _)) if owner == token.owner => self.delete_now(key),
            _ => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path().join("acme")).unwrap();
        s.store("certificates/a.test/key.pem", b"secret")
            .await
            .unwrap();
        assert_eq!(
            s.load("certificates/a.test/key.pem")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(s.load("nope").await.unwrap(), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("acme")), 0o700);
        assert_eq!(mode(&dir.path().join("acme/certificates/a.test")), 0o700);
        assert_eq!(
            mode(&dir.path().join("acme/certificates/a.test/key.pem")),
            0o600
        );
        assert!(s.store("../escape", b"x").await.is_err());
        // A folder that is not its own (looser than 0700) is refused, and left as it was.
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(FileStorage::open(&loose).is_err());
        assert_eq!(mode(&loose), 0o755);
        assert!(s.store("a/./b", b"x").await.is_err());
    }

    #[tokio::test]
    async fn a_lock_has_one_holder_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path().join("acme")).unwrap();
        let t = s
            .lock("a.test", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("free");
        assert!(
            s.lock("a.test", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "held"
        );
        assert!(s.renew(&t, Duration::from_secs(60)).await.unwrap());
        s.unlock(&t).await.unwrap();
        let t2 = s
            .lock("a.test", Duration::from_millis(1))
            .await
            .unwrap()
            .expect("released");
        std::thread::sleep(Duration::from_millis(20));
        // The holder "died": its lease ran out, so another can take it, and the old token is void.
        let t3 = s
            .lock("a.test", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("expired lock taken over");
        assert!(!s.renew(&t2, Duration::from_secs(60)).await.unwrap());
        s.unlock(&t2).await.unwrap();
        assert!(
            s.lock("a.test", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "t2's unlock did not free t3's lock"
        );
        s.unlock(&t3).await.unwrap();
    }
}
