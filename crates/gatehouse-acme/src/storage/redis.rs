//! The Redis backend: every node of a cluster shares certificates, the account, HTTP-01 and TLS-ALPN-01
//! answers and order locks through one Redis (`[acme] storage = "redis://…"`, `rediss://` for TLS).
//!
//! * Records are plain keys under the prefix (`gatehouse:certificates/example.com/bundle.pem`); a `SET`
//!   replaces a record at once, so a reader sees the old bundle or the new.
//! * Locks are leases: `SET locks/<name> <token> NX PX <ttl>`, renewed and released by a script that checks
//!   the token first, so a node never extends or deletes a lease another node took after its own expired.
//! * Every store and delete is published on `<prefix>events` (`<node> stored|deleted <key>`): the other
//!   nodes' managers swap in a renewed certificate, or publish a TLS-ALPN-01 answer, within a round trip.
//!   A node that missed messages (Redis was away) is told to resync, and resyncs every minute anyway.
//! * The connection is made lazily and re-made by the `ConnectionManager`; each command is bounded by a
//!   timeout. When Redis cannot be reached the calls fail fast, the manager keeps serving what it holds, and
//!   [`StoreHealth`] says so.

use super::{LockToken, Storage, StorageError, StoreEvent, StoreHealth};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Connecting, and each command: a Redis that does not answer within this is unreachable for now.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How often locks are listed and a full resync is asked for (the fallback for missed messages).
const POLL: Duration = Duration::from_secs(60);
/// How often the lock list and reachability are refreshed for `/status`.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Checks a held lease's token, then extends it.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/// Checks a held lease's token, then deletes it.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

pub struct RedisStorage {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    prefix: String,
    /// This process, in lock tokens and in the events it publishes.
    node: String,
    health: Arc<StoreHealth>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("location", &self.health.location)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisStorage {
    /// Reads the URL (nothing is contacted yet). `shown` is the URL without its password, for logs;
    /// `ca` a PEM to trust for `rediss://` instead of the system's roots.
    pub fn open(
        url: &str,
        prefix: &str,
        ca: Option<Vec<u8>>,
        shown: String,
    ) -> Result<Arc<Self>, StorageError> {
        let bad = |e: redis::RedisError| StorageError::Unreachable {
            store: shown.clone(),
            error: e.to_string(),
        };
        let client = match ca {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(bad)?,
            None => redis::Client::open(url).map_err(bad)?,
        };
        Ok(Arc::new(RedisStorage {
            client,
            conn: Mutex::new(None),
            prefix: prefix.to_string(),
            node: super::file::owner_id(),
            health: Arc::new(StoreHealth::new("redis", shown)),
        }))
    }

    fn key(&self, key: &str) -> Result<String, StorageError> {
        if key.is_empty() || key.contains(['\0', '\r', '\n', ' ']) {
            return Err(StorageError::BadKey(key.to_string()));
        }
        Ok(format!("{}{}", self.prefix, key))
    }

    fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn fail(&self, error: impl std::fmt::Display) -> StorageError {
        let error = error.to_string();
        if self.health.failed(&error) {
            tracing::warn!(store = %self.health.location, %error, "Redis unreachable: serving the certificates this node holds; renewals wait for it");
        }
        StorageError::Unreachable {
            store: self.health.location.clone(),
            error,
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let made = tokio::time::timeout(
            TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await;
        match made {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail("no answer within 6 s")),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StorageError> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => {
                if !self.health.reachable() {
                    tracing::info!(store = %self.health.location, "Redis reachable again");
                }
                self.health.ok();
                Ok(v)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail("no answer within 3 s")),
        }
    }

    /// Tells the other nodes; a failure is only logged (they resync within a minute).
    async fn publish(&self, what: &str, key: &str) {
        let msg = format!("{} {what} {key}", self.node);
        let r: Result<i64, _> = self
            .run(redis::cmd("PUBLISH").arg(self.channel()).arg(msg))
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "cannot publish a storage change");
        }
    }

    /// Every lease under the prefix, and who holds it.
    async fn list_locks(&self) -> Result<BTreeMap<String, String>, StorageError> {
        let pattern = format!("{}locks/*", self.prefix);
        let mut cursor: u64 = 0;
        let mut out = BTreeMap::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(100),
                )
                .await?;
            for k in keys {
                let holder: Option<String> = self.run(redis::cmd("GET").arg(&k)).await?;
                if let Some(h) = holder {
                    let name = k
                        .strip_prefix(&format!("{}locks/", self.prefix))
                        .unwrap_or(&k)
                        .trim_end_matches(".lock");
                    // The token is "<node>#<random>": the node is what an operator wants to see.
                    let node = h.split_once('#').map_or(h.as_str(), |(n, _)| n);
                    out.insert(name.to_string(), node.to_string());
                }
            }
            cursor = next;
            if cursor == 0 || out.len() > 1000 {
                return Ok(out);
            }
        }
    }

    /// Subscribes, forwards other nodes' changes, and keeps the health fresh; reconnects forever.
    async fn follow(self: Arc<Self>, tx: mpsc::Sender<StoreEvent>) {
        let mut health_tick = tokio::time::interval(HEALTH_EVERY);
        // The subscription's own Resync covers the start: the first poll is one period away.
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        loop {
            let pubsub = tokio::time::timeout(TIMEOUT * 2, self.client.get_async_pubsub()).await;
            let mut pubsub = match pubsub {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    self.fail(e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => {
                    self.fail("no answer within 6 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = pubsub.subscribe(self.channel()).await {
                self.fail(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have changed while we were not listening.
            if tx.send(StoreEvent::Resync).await.is_err() {
                return;
            }
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        let Ok(text) = msg.get_payload::<String>() else { continue };
                        let mut parts = text.splitn(3, ' ');
                        let (node, what, key) = (parts.next(), parts.next(), parts.next());
                        let (Some(node), Some(what), Some(key)) = (node, what, key) else { continue };
                        if node == self.node {
                            continue;
                        }
                        let event = match what {
                            "stored" => StoreEvent::Stored(key.to_string()),
                            "deleted" => StoreEvent::Deleted(key.to_string()),
                            _ => continue,
                        };
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    _ = health_tick.tick() => {
                        if let Ok(locks) = self.list_locks().await {
                            self.health.set_locks(locks);
                        } else {
                            // The subscription may hang on a dead socket: start it again.
                            break;
                        }
                    }
                    _ = poll.tick() => {
                        if tx.send(StoreEvent::Resync).await.is_err() {
                            return;
                        }
                    }
                }
            }
            tracing::debug!(store = %self.health.location, "Redis subscription ended; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[async_trait::async_trait]
impl Storage for Arc<RedisStorage> {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let k = self.key(key)?;
        self.run(redis::cmd("GET").arg(k)).await
    }

    async fn store(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let k = self.key(key)?;
        let () = self.run(redis::cmd("SET").arg(k).arg(value)).await?;
        self.publish("stored", key).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let k = self.key(key)?;
        let _: i64 = self.run(redis::cmd("DEL").arg(k)).await?;
        self.publish("deleted", key).await;
        Ok(())
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<LockToken>, StorageError> {
        let k = self.key(&crate::keys::lock(name))?;
        let token = format!("{}#{:016x}", self.node, rand::random::<u64>());
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(k)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        Ok(set.map(|_| LockToken {
            name: name.to_string(),
            owner: token,
        }))
    }

    async fn renew(&self, token: &LockToken, ttl: Duration) -> Result<bool, StorageError> {
        let k = self.key(&crate::keys::lock(&token.name))?;
        let n: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(RENEW)
                    .arg(1)
                    .arg(k)
                    .arg(&token.owner)
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        Ok(n == 1)
    }

    async fn unlock(&self, token: &LockToken) -> Result<(), StorageError> {
        let k = self.key(&crate::keys::lock(&token.name))?;
        let _: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(k)
                    .arg(&token.owner),
            )
            .await?;
        Ok(())
    }

    fn watch(&self) -> Option<mpsc::Receiver<StoreEvent>> {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(self.clone().follow(tx));
        Some(rx)
    }

    fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    fn shared(&self) -> bool {
        true
    }
}
