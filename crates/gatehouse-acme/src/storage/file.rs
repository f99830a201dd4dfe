//! The file backend: one machine (or several sharing a folder), 0700 folders, 0600 files, writes by temporary
//! file + rename. Every call runs on tokio's blocking pool, never on the thread that asked.

use super::{LockToken, Storage, StorageError};
use crate::keys;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Storage in a folder: 0700 folders, 0600 files, writes by temporary file + rename.
#[derive(Debug, Clone)]
pub struct FileStorage {
    root: PathBuf,
}

impl FileStorage {
    /// Creates the folder (0700) if needed. An existing folder looser than 0700 is refused, never changed:
    /// it may not be Gatehouse's own.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        make_dir(&root)?;
        let s = FileStorage { root };
        Ok(s)
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
fn owner_id() -> String {
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
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
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
}

/// The same operations, synchronous, for the blocking pool.
impl FileStorage {
    fn load_now(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
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

    fn lock_now(&self, name: &str, ttl: Duration) -> Result<Option<LockToken>, StorageError> {
        let key = keys::lock(name);
        let path = self.path(&key)?;
        make_dir(path.parent().unwrap_or(&self.root))?;
        let owner = owner_id();
        for _ in 0..2 {
            let record = format!("{}\n{}\n", owner, now_ms() + ttl.as_millis() as u64);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(record.as_bytes()).map_err(io(&path))?;
                    return Ok(Some(LockToken {
                        name: name.into(),
                        owner,
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Held, unless its lease ran out (a dead holder): then clear it and try once more.
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let expires = text
                        .lines()
                        .nth(1)
                        .and_then(|l| l.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    if expires > now_ms() {
                        return Ok(None);
                    }
                    tracing::info!(
                        lock = name,
                        "removing an expired lock left by a stopped holder"
                    );
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(None)
    }

    fn renew_now(&self, token: &LockToken, ttl: Duration) -> Result<bool, StorageError> {
        let key = keys::lock(&token.name);
        let current = self
            .load_now(&key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if current.lines().next() != Some(token.owner.as_str()) {
            return Ok(false);
        }
        self.store_now(
            &key,
            format!("{}\n{}\n", token.owner, now_ms() + ttl.as_millis() as u64).as_bytes(),
        )?;
        Ok(true)
    }

    fn unlock_now(&self, token: &LockToken) -> Result<(), StorageError> {
        let key = keys::lock(&token.name);
        let current = self
            .load_now(&key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if current.lines().next() == Some(token.owner.as_str()) {
            self.delete_now(&key)?;
        }
        Ok(())
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
