//! Answers to ACME challenges, shared by the ACME manager (which publishes them) and the data path (which
//! serves them): HTTP-01 key authorizations by token here; TLS-ALPN-01 certificates live in the
//! [`crate::CertStore`].

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Looks a token up elsewhere (the shared storage), so any node of a cluster can answer. Asynchronous: the
/// store may be across the network, and the caller (a request on a worker thread) must not block on it.
pub type Fallback =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// HTTP-01: `/.well-known/acme-challenge/TOKEN` → key authorization.
#[derive(Default)]
pub struct Http01Tokens {
    tokens: ArcSwap<HashMap<String, String>>,
    fallback: ArcSwap<Option<Fallback>>,
    /// Fallback look-ups running now: any client can ask for a made-up token, so at most
    /// [`MAX_FALLBACK_LOOKUPS`] go to the shared store at once; beyond them a token is simply not found.
    lookups: std::sync::atomic::AtomicUsize,
}

/// Concurrent shared-store look-ups for tokens this node does not hold (a CA validates a name a few times).
pub const MAX_FALLBACK_LOOKUPS: usize = 8;

impl std::fmt::Debug for Http01Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http01Tokens")
            .field("tokens", &self.tokens.load().len())
            .finish()
    }
}

impl Http01Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.tokens.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(token.to_string(), key_authorization.to_string());
            m
        });
    }

    pub fn remove(&self, token: &str) {
        self.tokens.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(token);
            m
        });
    }

    pub fn set_fallback(&self, fallback: Fallback) {
        self.fallback.store(Arc::new(Some(fallback)));
    }

    /// The key authorization for `token`, if this node (or the shared storage) knows it. The caller bounds the
    /// wait (a slow store must not hold a request forever).
    pub async fn get(&self, token: &str) -> Option<String> {
        if let Some(v) = self.tokens.load().get(token) {
            return Some(v.clone());
        }
        // Tokens are base64url; anything else is not worth a storage lookup.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let fallback = self.fallback.load().as_ref().clone()?;
        if self.lookups.fetch_add(1, Relaxed) >= MAX_FALLBACK_LOOKUPS {
            self.lookups.fetch_sub(1, Relaxed);
            return None;
        }
        let _slot = Release(&self.lookups);
        fallback(token.to_string()).await
    }
}

/// Gives a look-up slot back, whether the look-up finished or was dropped (timed out).
struct Release<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
