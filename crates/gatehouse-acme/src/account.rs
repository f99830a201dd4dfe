//! The ACME account: loaded from storage, or created once (under a lock, so two nodes do not both create one)
//! and stored.

use crate::ca::{call, CALL_TIMEOUT};
use crate::error::AcmeError;
use crate::keys;
use crate::storage::Storage;
use instant_acme::{Account, AccountBuilder, AccountCredentials, NewAccount};
use std::path::Path;
use std::time::Duration;

/// How to reach the CA.
#[derive(Debug, Clone, Copy)]
pub struct Directory<'a> {
    pub url: &'a str,
    pub email: Option<&'a str>,
    /// PEM file to trust for the CA's own HTTPS (a private CA, Pebble).
    pub ca_root: Option<&'a Path>,
}

/// The stored account, or a new one.
pub async fn load_or_create(
    storage: &dyn Storage,
    dir: Directory<'_>,
    lock_ttl: Duration,
) -> Result<Account, AcmeError> {
    if let Some(creds) = stored(storage).await? {
        return from_credentials(dir, creds).await;
    }
    let token = loop {
        if let Some(t) = storage.lock(keys::ACCOUNT_LOCK, lock_ttl).await? {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let result = async {
        // Another node may have created it while we waited for the lock.
        if let Some(creds) = stored(storage).await? {
            return from_credentials(dir, creds).await;
        }
        let contact: Vec<String> = dir.email.iter().map(|e| format!("mailto:{e}")).collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, creds) = call(
            "creating the ACME account",
            CALL_TIMEOUT,
            builder(dir)?.create(&new, dir.url.to_string(), None),
        )
        .await?;
        let json =
            serde_json::to_vec_pretty(&creds).map_err(|e| AcmeError::Other(e.to_string()))?;
        storage.store(keys::ACCOUNT, &json).await?;
        tracing::info!(directory = %dir.url, "ACME account created");
        Ok(account)
    }
    .await;
    if let Err(e) = storage.unlock(&token).await {
        tracing::warn!(error = %e, "cannot release the account lock; it expires by itself");
    }
    result
}

fn builder(dir: Directory<'_>) -> Result<AccountBuilder, AcmeError> {
    let map = |what| move |source| AcmeError::Ca { what, source };
    match dir.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(map("loading ca_root")),
        None => Account::builder().map_err(map("HTTP client")),
    }
}

async fn from_credentials(
    dir: Directory<'_>,
    creds: AccountCredentials,
) -> Result<Account, AcmeError> {
    call(
        "account",
        CALL_TIMEOUT,
        builder(dir)?.from_credentials(creds),
    )
    .await
}

async fn stored(storage: &dyn Storage) -> Result<Option<AccountCredentials>, AcmeError> {
    match storage.load(keys::ACCOUNT).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| AcmeError::Other(format!("{}: {e}", keys::ACCOUNT))),
    }
}
