//! `basic_auth`: users with bcrypt or argon2 hashes. A check never blocks a worker: hashes are verified on
//! tokio's blocking pool, at most two at once in the whole process (a flood of wrong passwords queues
//! instead of taking every core), and a user name that does not exist is verified against a real hash all
//! the same, so timing does not tell which names exist. Credentials that verified are remembered for a while by a salted SHA-256 of
//! them (never the password itself), as Caddy does, so a browser sending them with every request costs one
//! hash, not one bcrypt per request.

use base64::Engine;
use gatehouse_config::BasicAuth;
use http::HeaderValue;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(Arc<str>),
    Argon2(Arc<str>),
}

impl Hash {
    fn parse(h: &str) -> Result<Hash, String> {
        if h.starts_with("$argon2") {
            argon2::PasswordHash::new(h).map_err(|e| format!("not an argon2 hash: {e}"))?;
            Ok(Hash::Argon2(h.into()))
        } else {
            // `$2b$NN$` + 53 characters of bcrypt's own base64 (22 of salt, 31 of digest).
            let cost_ok = h
                .get(4..6)
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|c| (4..=31).contains(&c));
            let tail_ok = h.get(7..).is_some_and(|t| {
                t.len() == 53
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
            });
            if !(cost_ok && tail_ok && h.parse::<bcrypt::HashParts>().is_ok()) {
                return Err(
                    "not a bcrypt hash ($2b$ + a cost from 04 to 31 + 53 characters)".into(),
                );
            }
            Ok(Hash::Bcrypt(h.into()))
        }
    }

    /// Constant-time inside each crate (bcrypt and argon2 compare their digests so).
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Argon2(h) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}

#[derive(Debug)]
pub struct Users {
    users: HashMap<Box<str>, Hash>,
    /// Verified for a user that does not exist, so that a miss costs what a hit costs.
    decoy: Hash,
    /// `Basic realm="…", charset="UTF-8"`.
    challenge: HeaderValue,
    forward: bool,
    salt: [u8; 32],
    verified: Cache<[u8; 32], ()>,
}

/// Hash verifications running at once, for the whole process: every route with `basic_auth` (and every
/// config generation) shares this one bound, so a flood of guesses spread over many routes still queues.
fn gate() -> &'static Semaphore {
    static GATE: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| Semaphore::new(2))
}

impl Users {
    pub fn compile(b: &BasicAuth) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (name, hash) in &b.users {
            let h = Hash::parse(hash).map_err(|e| format!("basic_auth.users.{name}: {e}"))?;
            users.insert(name.as_str().into(), h);
        }
        let decoy = users
            .values()
            .next()
            .cloned()
            .ok_or("basic_auth needs at least one user")?;
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{}\", charset=\"UTF-8\"", b.realm))
                .map_err(|_| format!("basic_auth.realm {:?} is not a header value", b.realm))?;
        Ok(Users {
            users,
            decoy,
            challenge,
            forward: b.forward,
            salt: rand::random(),
            verified: Cache::builder()
                .max_capacity(4096)
                .time_to_live(Duration::from_secs(600))
                .build(),
        })
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the client's `Authorization` header goes on to the servers.
    pub fn forward(&self) -> bool {
        self.forward
    }

    /// Whether `authorization` holds the credentials of a user.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let key = self.key(&user, &password);
        if self.verified.contains_key(&key) {
            return true;
        }
        let (hash, known) = match self.users.get(user.as_str()) {
            Some(h) => (h.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let Ok(_permit) = gate().acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false)
            && known;
        if ok {
            self.verified.insert(key, ());
        }
        ok
    }

    fn key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password);
        h.finalize().into()
    }
}

/// `Basic base64(user:password)` → (user, password). The user is UTF-8 and has no ':'; the password is bytes.
fn parse_basic(v: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = v.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Which hash `gatehouse hash-password` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// bcrypt with this cost (4–31).
    Bcrypt(u32),
    /// argon2id with the crate's recommended parameters (19 MiB, 2 passes).
    Argon2id,
}

/// A hash of `password` for a `basic_auth.users` entry.
pub fn hash_password(password: &[u8], alg: Algorithm) -> Result<String, String> {
    match alg {
        Algorithm::Bcrypt(cost) => bcrypt::hash(password, cost).map_err(|e| e.to_string()),
        Algorithm::Argon2id => {
            use argon2::PasswordHasher;
            let salt_bytes: [u8; 16] = rand::random();
            let salt = argon2::password_hash::SaltString::encode_b64(&salt_bytes)
                .map_err(|e| e.to_string())?;
            argon2::Argon2::default()
                .hash_password(password, &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: &str, pw: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[tokio::test]
    async fn bcrypt_and_argon2_users_and_wrong_credentials() {
        let users = Users::compile(&BasicAuth {
            realm: "ops".into(),
            users: [
                (
                    "alice".to_string(),
                    hash_password(b"s3cret", Algorithm::Bcrypt(4)).unwrap(),
                ),
                (
                    "bob".to_string(),
                    hash_password(b"hunter2", Algorithm::Argon2id).unwrap(),
                ),
            ]
            .into(),
            forward: false,
        })
        .unwrap();
        assert!(users.check(Some(&auth("alice", "s3cret"))).await);
        assert!(
            users.check(Some(&auth("alice", "s3cret"))).await,
            "remembered"
        );
        assert!(users.check(Some(&auth("bob", "hunter2"))).await);
        assert!(!users.check(Some(&auth("alice", "hunter2"))).await);
        assert!(
            !users.check(Some(&auth("carol", "s3cret"))).await,
            "no such user"
        );
        assert!(!users.check(None).await);
        assert!(
            !users
                .check(Some(&HeaderValue::from_static("Basic !!!")))
                .await
        );
        assert!(
            !users
                .check(Some(&HeaderValue::from_static("Bearer abc")))
                .await
        );
        assert_eq!(users.challenge(), "Basic realm=\"ops\", charset=\"UTF-8\"");
    }

    #[test]
    fn a_broken_hash_is_a_compile_error() {
        let bad = BasicAuth {
            realm: "r".into(),
            users: [("a".to_string(), format!("$2b$04${}", "!".repeat(53)))].into(),
            forward: false,
        };
        assert!(Users::compile(&bad)
            .unwrap_err()
            .contains("basic_auth.users.a"));
    }
}
