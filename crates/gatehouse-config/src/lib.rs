//! Gatehouse's config file, in three stages, each its own type:
//!
//! ```text
//! gatehouse.toml ──parse──▶ RawConfig ──validate──▶ Config ──(gatehouse-proxy compiles)──▶ Snapshot
//!                (serde, spans)       (all errors, file:line:col)
//! ```
//!
//! * [`raw`] mirrors the file exactly (`deny_unknown_fields`), keeping byte spans of the values that
//!   later checks may reject, so every error names the file, the line and the key.
//! * [`validate`] checks everything at once and returns either a [`Config`] or *all* the problems. It is
//!   pure: no DNS, no files. Certificate and CA files and server names are checked when the config is
//!   prepared for use (`gatehouse_proxy::prepare`), which `check`, start-up and reload all run; the model keeps
//!   each such value's line ([`At`]) for those messages.
//! * [`model`] is the typed, validated result: no strings left to parse, no defaults left to apply.
//!
//! This crate knows nothing of sockets or runtimes: `gatehouse check` and a reload run exactly the
//! same code, and the proxy never sees TOML.

pub mod diagnostic;
pub mod diff;
pub mod model;
pub mod policy;
pub mod raw;
pub mod units;
pub mod validate;

pub use diagnostic::{ConfigError, Diagnostic};
pub use diff::{diff, Change};
pub use model::*;
pub use policy::{
    BasicAuth, Codec, Compress, CompressLevel, HeaderRules, Policy, RateLimit, RateScope, Rewrite,
};

use std::path::Path;

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    parse(&source, &path.display().to_string())
}

/// Parses and validates `source`; `origin` names it in error messages (usually the file path).
pub fn parse(source: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(source).map_err(|e| {
        let diag = Diagnostic::new(e.span(), "", e.message().trim_end().to_string());
        ConfigError::Invalid {
            origin: origin.to_string(),
            diagnostics: vec![diag.locate(source)],
        }
    })?;
    validate::validate(raw, source, origin).map_err(|diagnostics| ConfigError::Invalid {
        origin: origin.to_string(),
        diagnostics: diagnostics.into_iter().map(|d| d.locate(source)).collect(),
    })
}
