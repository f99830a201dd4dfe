//! Every storage key Gatehouse's ACME state uses, built in one place so that backends, nodes and versions agree.

/// The ACME account's credentials (JSON).
pub const ACCOUNT: &str = "account.json";

/// The lock taken while the account is created, so two nodes do not both create one.
pub const ACCOUNT_LOCK: &str = "account";

/// A site's certificate: its private key and chain (leaf first) in one PEM record, written at once, so a
/// reader never finds a new key beside an old chain. `site` is the site's id (its first host).
pub fn bundle(site: &str) -> String {
    format!("certificates/{site}/bundle.pem")
}

/// Where earlier versions kept the chain, beside [`legacy_key`]: read when there is no bundle yet.
pub fn legacy_certificate(site: &str) -> String {
    format!("certificates/{site}/cert.pem")
}

/// Where earlier versions kept the private key.
pub fn legacy_key(site: &str) -> String {
    format!("certificates/{site}/key.pem")
}

/// An HTTP-01 key authorization, published so that any node the CA reaches can answer.
pub fn http01(token: &str) -> String {
    format!("challenges/{token}")
}

/// A TLS-ALPN-01 answer's digest for `name`, published so that every node serves the challenge certificate.
pub fn tls_alpn01(name: &str) -> String {
    format!("{TLS_ALPN01_PREFIX}{name}")
}

pub const TLS_ALPN01_PREFIX: &str = "challenges/tls-alpn-01/";

/// The file holding lock `name`'s lease (file backend).
pub fn lock(name: &str) -> String {
    format!("locks/{name}.lock")
}

/// The file whose `flock` makes every change of lock `name`'s lease one step (file backend).
pub fn lock_guard(name: &str) -> String {
    format!("locks/{name}.guard")
}
