//! The ACME loop: keep every `tls = "acme"` site's certificate present and fresh.
//!
//! For each site, in turn:
//! 1. A valid stored certificate that is not due is served as is (a restart orders nothing).
//! 2. Otherwise take the site's lock in [`Storage`] (waiting while another node holds it), and look in storage
//!    again: the other node may just have stored a fresh certificate.
//! 3. Order: publish the answer to the preferred challenge (HTTP-01 token, or TLS-ALPN-01 certificate), tell
//!    the CA, wait for validation; if that challenge fails and the other is possible, order again with it.
//! 4. Store key and chain, serve them from the next handshake, release the lock.
//!
//! A failure never removes a serving certificate; it is logged with what the CA said and retried after an
//! exponential backoff (capped at a day), or after the time a rate-limit answer names.

use crate::schedule::{backoff, due_at, is_due, retry_after_from_detail, RenewBefore};
use crate::storage::{LockToken, Storage, StorageError};
use gatehouse_tls::{CertStore, Http01Tokens, LoadedCert};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    fn acme(self) -> ChallengeType {
        match self {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }

    fn other(self) -> Self {
        match self {
            ChallengeKind::Http01 => ChallengeKind::TlsAlpn01,
            ChallengeKind::TlsAlpn01 => ChallengeKind::Http01,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// PEM file to trust for the ACME server's own HTTPS (a private CA, Pebble).
    pub ca_root: Option<PathBuf>,
    pub challenge: ChallengeKind,
    pub renew_before: RenewBefore,
    /// How often certificates are looked at (with ±10% jitter).
    pub check_interval: Duration,
    /// First wait after a failure; doubles per failure up to `retry_cap`.
    pub retry_initial: Duration,
    pub retry_cap: Duration,
    /// Which challenges this configuration can answer: HTTP-01 needs a plain listener, TLS-ALPN-01 a TLS one.
    pub http01_possible: bool,
    pub tls_alpn01_possible: bool,
}

/// A site that wants an ACME certificate: one certificate for all its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSite {
    /// Storage and lock name: the first host.
    pub id: String,
    pub names: Vec<String>,
    pub default: bool,
}

/// Puts a certificate into service.
pub type Install = Arc<dyn Fn(&AcmeSite, LoadedCert) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{what}: {source}")]
    Ca {
        what: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    #[error("{names}: {challenge} validation failed: {problem}")]
    Validation {
        names: String,
        challenge: &'static str,
        problem: String,
    },
    #[error("the CA offered no {0} challenge")]
    NoChallenge(&'static str),
    #[error(
        "no challenge can be answered: http-01 needs a plain listener, tls-alpn-01 a TLS listener"
    )]
    NoChallengePossible,
    #[error("another node has held the lock for {0} too long")]
    Locked(String),
    #[error("{0}")]
    Other(String),
}

impl AcmeError {
    fn ca(what: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        move |source| AcmeError::Ca { what, source }
    }

    /// How long the CA asked us to wait (rate limits).
    fn retry_after(&self) -> Option<Duration> {
        let AcmeError::Ca {
            source: instant_acme::Error::Api(problem),
            ..
        } = self
        else {
            return None;
        };
        let limited = problem
            .r#type
            .as_deref()
            .is_some_and(|t| t.ends_with("rateLimited"));
        limited.then(|| {
            problem
                .detail
                .as_deref()
                .and_then(|d| retry_after_from_detail(d, SystemTime::now()))
                .unwrap_or(Duration::from_secs(3600))
        })
    }
}

pub struct AcmeManager {
    config: AcmeConfig,
    storage: Arc<dyn Storage>,
    tls: Arc<CertStore>,
    http01: Arc<Http01Tokens>,
    install: Install,
}

impl std::fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("config", &self.config)
            .finish()
    }
}

/// A lock's lease; renewed every third of it while an order runs.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long to wait for another node's order before trying again later.
const LOCK_WAIT: Duration = Duration::from_secs(180);

/// How waiting for a site's lock ended.
enum Wait {
    Locked(LockToken),
    /// Another node stored a fresh certificate meanwhile: no order needed.
    Stored(LoadedCert),
}

#[derive(Debug, Default)]
struct SiteState {
    next: Option<Instant>,
    failures: u32,
}

impl AcmeManager {
    pub fn new(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
        tls: Arc<CertStore>,
        http01: Arc<Http01Tokens>,
        install: Install,
    ) -> Arc<Self> {
        // Any node can answer an HTTP-01 token another node published.
        let s = storage.clone();
        http01.set_fallback(Arc::new(move |token: &str| {
            s.load(&format!("challenges/{token}"))
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        }));
        Arc::new(AcmeManager {
            config,
            storage,
            tls,
            http01,
            install,
        })
    }

    /// Serves stored certificates now, without contacting the CA (startup). Returns how many were loaded.
    pub fn load_stored(&self, sites: &[AcmeSite]) -> usize {
        let mut n = 0;
        for site in sites {
            if let Ok(Some(cert)) = self.stored(site) {
                (self.install)(site, cert);
                n += 1;
            }
        }
        n
    }

    /// Runs until `sites` is closed; a reload sends the new list of ACME sites.
    pub async fn run(self: Arc<Self>, mut sites: watch::Receiver<Vec<AcmeSite>>) {
        let mut state: HashMap<String, SiteState> = HashMap::new();
        let mut account: Option<Account> = None;
        loop {
            let current = sites.borrow_and_update().clone();
            state.retain(|id, _| current.iter().any(|s| &s.id == id));
            for site in &current {
                let st = state.entry(site.id.clone()).or_default();
                if st.next.is_some_and(|t| t > Instant::now()) {
                    continue;
                }
                match self.ensure(site, &mut account).await {
                    Ok(due) => {
                        st.failures = 0;
                        let until_due = due
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO);
                        let wait = if until_due.is_zero() {
                            // Due as soon as obtained: renew_before is as long as the lifetime. Do not order in
                            // a loop; look again at the normal pace.
                            tracing::warn!(site = %site.id, "the certificate is due as soon as issued: renew_before is longer than its lifetime");
                            jitter(self.config.check_interval)
                        } else {
                            jitter(self.config.check_interval).min(until_due)
                        };
                        st.next = Some(Instant::now() + wait);
                    }
                    Err(e) => {
                        st.failures += 1;
                        let wait = e.retry_after().unwrap_or_else(|| {
                            backoff(
                                st.failures,
                                self.config.retry_initial,
                                self.config.retry_cap,
                            )
                        });
                        tracing::error!(site = %site.id, names = ?site.names, failures = st.failures, retry_in = ?wait, error = %e, "certificate not obtained; the current certificate (if any) keeps serving");
                        st.next = Some(Instant::now() + wait);
                    }
                }
            }
            let next = state
                .values()
                .filter_map(|s| s.next)
                .min()
                .unwrap_or_else(|| Instant::now() + self.config.check_interval);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = sites.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Makes sure `site` has a valid certificate that is not due; returns when it will be due.
    async fn ensure(
        &self,
        site: &AcmeSite,
        account: &mut Option<Account>,
    ) -> Result<SystemTime, AcmeError> {
        if let Some(cert) = self.stored(site)? {
            let fresh = !is_due(
                cert.not_before,
                cert.not_after,
                SystemTime::now(),
                self.config.renew_before,
            );
            let due = self.serve(site, cert);
            if fresh {
                return Ok(due);
            }
            tracing::info!(site = %site.id, "certificate due for renewal");
        }
        let token = match self.wait_for_lock(site).await? {
            Wait::Locked(token) => token,
            // Another node stored a fresh certificate while we waited.
            Wait::Stored(cert) => return Ok(self.serve(site, cert)),
        };
        let result = self.order_locked(site, account, &token).await;
        if let Err(e) = self.storage.unlock(&token) {
            tracing::warn!(site = %site.id, error = %e, "cannot release the lock; it expires by itself");
        }
        result
    }

    /// Serves `cert` for `site` from the next handshake on; returns when it will be due.
    fn serve(&self, site: &AcmeSite, cert: LoadedCert) -> SystemTime {
        let due = due_at(cert.not_before, cert.not_after, self.config.renew_before);
        (self.install)(site, cert);
        due
    }

    /// Takes the site's lock, unless another node stores a fresh certificate while we wait.
    async fn wait_for_lock(&self, site: &AcmeSite) -> Result<Wait, AcmeError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut logged = false;
        loop {
            if let Some(t) = self.storage.lock(&site.id, LOCK_TTL)? {
                return Ok(Wait::Locked(t));
            }
            if !logged {
                tracing::info!(site = %site.id, "another node is ordering this certificate; waiting for it");
                logged = true;
            }
            if let Some(cert) = self.fresh_stored(site)? {
                return Ok(Wait::Stored(cert));
            }
            if Instant::now() > deadline {
                return Err(AcmeError::Locked(site.id.clone()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn order_locked(
        &self,
        site: &AcmeSite,
        account: &mut Option<Account>,
        token: &LockToken,
    ) -> Result<SystemTime, AcmeError> {
        // Look again under the lock: another node may have finished just before we took it.
        if let Some(cert) = self.fresh_stored(site)? {
            return Ok(self.serve(site, cert));
        }
        let lease = async {
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                match self.storage.renew(token, LOCK_TTL) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(site = %site.id, "lost the lock lease while ordering")
                    }
                    Err(e) => {
                        tracing::warn!(site = %site.id, error = %e, "cannot renew the lock lease")
                    }
                }
            }
        };
        let work = async {
            if account.is_none() {
                *account = Some(self.account().await?);
            }
            let Some(acct) = account.as_ref() else {
                return Err(AcmeError::Other("no ACME account".into()));
            };
            let (chain, key) = self.order(site, acct).await?;
            let cert = gatehouse_tls::certificate::from_pem(
                chain.as_bytes(),
                key.as_bytes(),
                "acme chain".as_ref(),
                "acme key".as_ref(),
            )
            .map_err(|e| AcmeError::Other(format!("the CA's certificate does not load: {e}")))?;
            self.storage
                .store(&format!("certificates/{}/key.pem", site.id), key.as_bytes())?;
            self.storage.store(
                &format!("certificates/{}/cert.pem", site.id),
                chain.as_bytes(),
            )?;
            tracing::info!(site = %site.id, names = ?site.names, not_after = ?cert.not_after, "certificate obtained and serving");
            Ok(self.serve(site, cert))
        };
        tokio::select! {
            r = work => r,
            _ = lease => unreachable_lease(),
        }
    }

    /// The stored certificate for `site` if it loads and covers its names.
    fn stored(&self, site: &AcmeSite) -> Result<Option<LoadedCert>, AcmeError> {
        let cert = self
            .storage
            .load(&format!("certificates/{}/cert.pem", site.id))?;
        let key = self
            .storage
            .load(&format!("certificates/{}/key.pem", site.id))?;
        let (Some(cert), Some(key)) = (cert, key) else {
            return Ok(None);
        };
        match gatehouse_tls::certificate::from_pem(
            &cert,
            &key,
            "stored cert".as_ref(),
            "stored key".as_ref(),
        ) {
            Ok(c) if site.names.iter().all(|n| c.names.contains(n)) => Ok(Some(c)),
            Ok(_) => {
                tracing::info!(site = %site.id, "stored certificate does not cover the site's names; ordering a new one");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(site = %site.id, error = %e, "stored certificate unusable; ordering a new one");
                Ok(None)
            }
        }
    }

    fn fresh_stored(&self, site: &AcmeSite) -> Result<Option<LoadedCert>, AcmeError> {
        Ok(self.stored(site)?.filter(|c| {
            !is_due(
                c.not_before,
                c.not_after,
                SystemTime::now(),
                self.config.renew_before,
            )
        }))
    }

    /// The stored account, or a new one (created once, under a lock, and stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || match &self.config.ca_root {
            Some(root) => {
                Account::builder_with_root(root).map_err(AcmeError::ca("loading ca_root"))
            }
            None => Account::builder().map_err(AcmeError::ca("HTTP client")),
        };
        if let Some(creds) = self.stored_account()? {
            return builder()?
                .from_credentials(creds)
                .await
                .map_err(AcmeError::ca("account"));
        }
        let token = loop {
            if let Some(t) = self.storage.lock("account", LOCK_TTL)? {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let result = async {
            if let Some(creds) = self.stored_account()? {
                return builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(AcmeError::ca("account"));
            }
            let contact: Vec<String> = self
                .config
                .email
                .iter()
                .map(|e| format!("mailto:{e}"))
                .collect();
            let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
            let new = NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            };
            let (account, creds) = builder()?
                .create(&new, self.config.directory.clone(), None)
                .await
                .map_err(AcmeError::ca("creating the ACME account"))?;
            let json =
                serde_json::to_vec_pretty(&creds).map_err(|e| AcmeError::Other(e.to_string()))?;
            self.storage.store("account.json", &json)?;
            tracing::info!(directory = %self.config.directory, "ACME account created");
            Ok(account)
        }
        .await;
        let _ = self.storage.unlock(&token);
        result
    }

    fn stored_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        match self.storage.load("account.json")? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| AcmeError::Other(format!("account.json: {e}"))),
        }
    }

    /// Orders with the preferred challenge, then the other when the first fails validation.
    async fn order(
        &self,
        site: &AcmeSite,
        account: &Account,
    ) -> Result<(String, String), AcmeError> {
        let preferred = self.config.challenge;
        let possible = |k: ChallengeKind| match k {
            ChallengeKind::Http01 => self.config.http01_possible,
            ChallengeKind::TlsAlpn01 => self.config.tls_alpn01_possible,
        };
        let kinds: Vec<ChallengeKind> = [preferred, preferred.other()]
            .into_iter()
            .filter(|k| possible(*k))
            .collect();
        let mut last = AcmeError::NoChallengePossible;
        for kind in kinds {
            match self.order_with(site, account, kind).await {
                Ok(done) => return Ok(done),
                Err(e @ (AcmeError::Validation { .. } | AcmeError::NoChallenge(_))) => {
                    tracing::warn!(site = %site.id, challenge = kind.name(), error = %e, "challenge failed");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn order_with(
        &self,
        site: &AcmeSite,
        account: &Account,
        kind: ChallengeKind,
    ) -> Result<(String, String), AcmeError> {
        tracing::info!(site = %site.id, names = ?site.names, challenge = kind.name(), "ordering a certificate");
        let ids: Vec<Identifier> = site.names.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(AcmeError::ca("new order"))?;
        let mut published: Vec<(ChallengeKind, String)> = Vec::new();
        let result = async {
            {
                let mut authzs = order.authorizations();
                while let Some(authz) = authzs.next().await {
                    let mut authz = authz.map_err(AcmeError::ca("authorization"))?;
                    match authz.status {
                        AuthorizationStatus::Pending => {}
                        AuthorizationStatus::Valid => continue,
                        other => {
                            return Err(AcmeError::Validation {
                                names: site.names.join(", "),
                                challenge: kind.name(),
                                problem: format!("authorization is {other:?}"),
                            })
                        }
                    }
                    let mut challenge = authz
                        .challenge(kind.acme())
                        .ok_or(AcmeError::NoChallenge(kind.name()))?;
                    let name = challenge.identifier().to_string();
                    let key_auth = challenge.key_authorization();
                    match kind {
                        ChallengeKind::Http01 => {
                            let token = challenge.token.clone();
                            self.http01.insert(&token, key_auth.as_str());
                            self.storage.store(
                                &format!("challenges/{token}"),
                                key_auth.as_str().as_bytes(),
                            )?;
                            published.push((kind, token));
                        }
                        ChallengeKind::TlsAlpn01 => {
                            self.tls.set_challenge(
                                &name,
                                alpn_certificate(&name, key_auth.digest().as_ref())?,
                            );
                            published.push((kind, name));
                        }
                    }
                    challenge
                        .set_ready()
                        .await
                        .map_err(AcmeError::ca("challenge ready"))?;
                }
            }
            let retry = RetryPolicy::new().timeout(Duration::from_secs(120));
            let status = match order.poll_ready(&retry).await {
                Ok(status) => status,
                // An order that turned invalid comes back as the CA's problem document: a failed validation.
                Err(instant_acme::Error::Api(problem)) => {
                    return Err(AcmeError::Validation {
                        names: site.names.join(", "),
                        challenge: kind.name(),
                        problem: problem.to_string(),
                    })
                }
                Err(e) => return Err(AcmeError::ca("waiting for validation")(e)),
            };
            if status != OrderStatus::Ready {
                return Err(validation_problem(&mut order, site, kind).await);
            }
            let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Other(e.to_string()))?;
            let csr = rcgen::CertificateParams::new(site.names.clone())
                .and_then(|p| p.serialize_request(&key))
                .map_err(|e| AcmeError::Other(format!("CSR: {e}")))?;
            order
                .finalize_csr(csr.der())
                .await
                .map_err(AcmeError::ca("finalize"))?;
            let chain = order
                .poll_certificate(&retry)
                .await
                .map_err(AcmeError::ca("certificate download"))?;
            Ok((chain, key.serialize_pem()))
        }
        .await;
        for (k, what) in published {
            match k {
                ChallengeKind::Http01 => {
                    self.http01.remove(&what);
                    let _ = self.storage.delete(&format!("challenges/{what}"));
                }
                ChallengeKind::TlsAlpn01 => self.tls.clear_challenge(&what),
            }
        }
        result
    }
}

fn unreachable_lease() -> Result<SystemTime, AcmeError> {
    Err(AcmeError::Other("lease task ended".into()))
}

/// What the CA said about a failed validation: the challenge's problem document.
async fn validation_problem(
    order: &mut instant_acme::Order,
    site: &AcmeSite,
    kind: ChallengeKind,
) -> AcmeError {
    let mut problems = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        for ch in &authz.challenges {
            if let Some(p) = &ch.error {
                problems.push(p.to_string());
            }
        }
    }
    if problems.is_empty() {
        problems.push("the order did not become ready".into());
    }
    AcmeError::Validation {
        names: site.names.join(", "),
        challenge: kind.name(),
        problem: problems.join("; "),
    }
}

/// The TLS-ALPN-01 answer (RFC 8737): a self-signed certificate for `name` with the critical acmeIdentifier
/// extension. rustls' `from_der` refuses that extension, so the key is loaded separately.
fn alpn_certificate(
    name: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Other(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    let signing = gatehouse_tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// ±10%, so that many sites (or nodes) do not all look at the same instant.
fn jitter(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}
