//! Every storage key Gatehouse's ACME state uses, built in one place so that backends, nodes and versions agree.

/// The ACME account's credentials (JSON).
pub const ACCOUNT: &str = "account.json";

/// The lock taken while the account is created, so two nodes do not both create one.
pub const ACCOUNT_LOCK: &str = "account";

/// A site's certificate chain (PEM, leaf first); `site` is the site's id (its first host).
pub fn certificate(site: &str) -> String {
    format!("certificates/{site}/cert.pem")
}

/// A site's private key (PEM).
pub fn private_key(site: &str) -> String {
    format!("certificates/{site}/key.pem")
}

/// An HTTP-01 key authorization, published so that any node the CA reaches can answer.
pub fn http01(token: &str) -> String {
    format!("challenges/{token}")
}

/// The file holding lock `name` (file backend).
pub fn lock(name: &str) -> String {
    format!("locks/{name}.lock")
}
