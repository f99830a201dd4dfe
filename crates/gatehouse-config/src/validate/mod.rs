//! Checks a [`RawConfig`] and builds the typed [`Config`], collecting *every* problem rather than stopping at
//! the first, so an operator fixes a broken file in one pass.
//!
//! Validation is pure: it reads the text it is given and nothing else (no DNS, no files, nothing of the
//! machine). What needs the outside world (certificate and CA files, server names) is checked when the config
//! is prepared for use, by the same code for `gatehouse check`, start-up and reload; the model keeps each such
//! value's [`At`] so those problems name their line too.
//!
//! One file per section of the config, each with its tests beside it: [`server`], [`listeners`], [`pools`],
//! [`sites`], [`acme`], and [`coherence`] for the checks that span sections. They share the [`Checker`]
//! defined here (and this file calls them): a cycle inside the folder, which is one stage.

mod acme;
mod coherence;
mod listeners;
mod policy;
mod pools;
mod server;
mod sites;
mod streams;

use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::raw::*;
use crate::units::{parse_duration, parse_size};
use ipnet::IpNet;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

pub use policy::{check_template, parse_rate};

/// Validates `raw`, parsed from `source` (the text, for line numbers) that came from `origin`.
pub fn validate(raw: RawConfig, source: &str, origin: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        diags: Vec::new(),
        lines: source
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect(),
    };

    let server = server::check(&mut c, &raw.server);
    let listeners = listeners::check(
        &mut c,
        &raw.listeners,
        server.tls_min_version,
        !server.trusted_proxies.is_empty(),
    );
    let acme = raw.acme.as_ref().map(|a| acme::check(&mut c, a));
    let streams = streams::check(
        &mut c,
        &raw.streams,
        &raw.pools,
        &listeners,
        !server.trusted_proxies.is_empty(),
    );
    let pools = pools::check(&mut c, &raw.pools);
    let sites = sites::check(&mut c, &raw.sites, &raw.pools);
    coherence::check(&mut c, &raw, &listeners, &sites);

    if c.diags.is_empty() {
        Ok(Config {
            origin: Origin(origin.to_string()),
            server,
            listeners,
            acme,
            sites,
            pools,
            streams,
        })
    } else {
        c.diags
            .sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(c.diags)
    }
}

/// Collects diagnostics while building the model.
struct Checker {
    diags: Vec<Diagnostic>,
    /// Byte offsets of the source's newlines, to turn spans into lines in O(log n): a 100,000-server file
    /// must not be rescanned for each server.
    lines: Vec<usize>,
}

impl Checker {
    fn err(&mut self, span: Range<usize>, key: impl Into<String>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(Some(span), key, msg));
    }

    /// The line and column where `span` starts, kept in the model for checks made after validation.
    fn at(&self, span: Range<usize>) -> At {
        let before = self.lines.partition_point(|&nl| nl < span.start);
        let line_start = if before == 0 {
            0
        } else {
            self.lines[before - 1] + 1
        };
        At {
            line: before + 1,
            col: span.start.saturating_sub(line_start) + 1,
        }
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.err(s.span(), key, e);
                default
            }),
        }
    }

    /// A timeout: like [`duration`](Self::duration), but zero is refused (it would cut every connection).
    fn timeout(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let d = self.duration(v, key, default);
        if d.is_zero() {
            if let Some(s) = v {
                self.err(
                    s.span(),
                    key,
                    "must be longer than 0: a zero timeout would cut every connection",
                );
            }
            return default;
        }
        d
    }

    fn size(&mut self, v: &Option<Spanned<RawSize>>, key: &str) -> Option<u64> {
        let s = v.as_ref()?;
        let parsed = match s.get_ref() {
            RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is not a size")),
            RawSize::Text(t) => parse_size(t),
        };
        parsed.map_err(|e| self.err(s.span(), key, e)).ok()
    }

    fn count(&mut self, v: &Option<Spanned<i64>>, key: &str, default: u32, max: u32) -> u32 {
        match v {
            None => default,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(x) if x <= max => x,
                _ => {
                    self.err(n.span(), key, format!("must be between 0 and {max}"));
                    default
                }
            },
        }
    }

    fn cidrs(&mut self, list: &[Spanned<String>], key: &str) -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| match parse_cidr(s.get_ref()) {
                Ok(net) => Some(net),
                Err(e) => {
                    self.err(s.span(), key, e);
                    None
                }
            })
            .collect()
    }

    fn tls_version(&mut self, v: &Spanned<String>, key: &str) -> TlsVersion {
        match v.get_ref().as_str() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            _ => {
                self.err(
                    v.span(),
                    key,
                    "expected \"1.2\" or \"1.3\" (older versions are never offered)",
                );
                TlsVersion::Tls12
            }
        }
    }

    /// A connection cap: absent or 0 means "no fixed limit"; `zero` says what 0 means for this key.
    fn connection_cap(&mut self, v: Option<&Spanned<i64>>, key: &str, zero: &str) -> usize {
        let Some(n) = v else { return 0 };
        match usize::try_from(*n.get_ref()) {
            Ok(x) if x <= 10_000_000 => x,
            _ => {
                self.err(
                    n.span(),
                    key,
                    format!("must be 0 ({zero}) or a number up to 10000000"),
                );
                0
            }
        }
    }
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"))
}

/// Control characters cannot go into a header value.
fn http_header_unsafe(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// Shared by the section tests: a small valid config and a way to list a broken edit's errors.
#[cfg(test)]
mod testing {
    use crate::{parse, ConfigError};

    /// Each error as `line: key: message`.
    pub fn errors(src: &str) -> Vec<String> {
        match parse(src, "t.toml") {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
                .into_iter()
                .map(|d| format!("{}:{}: {}", d.line_col.map_or(0, |l| l.0), d.key, d.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    pub const OK: &str = r#"
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[[site]]
hosts = ["example.com", "*.example.org"]
  [[site.route]]
  path = "/"
  pool = "web"

[pool.web]
servers = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 3 }, { addr = "127.0.0.1:9003", backup = true }]
"#;

    /// Asserts that `OK` with `from` replaced by `to` is rejected at `line` with a message containing `words`.
    pub fn rejects(name: &str, from: &str, to: &str, line: usize, words: &str) {
        let src = OK.replacen(from, to, 1);
        assert_ne!(src, OK, "{name}: the edit changed nothing");
        let errs = errors(&src);
        assert!(!errs.is_empty(), "{name}: accepted");
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{line}:")) && e.contains(words)),
            "{name}: wanted line {line} with {words:?}, got {errs:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{errors, rejects, OK};
    use crate::parse;

    #[test]
    fn a_good_config_builds_with_defaults() {
        let cfg = parse(OK, "t.toml").unwrap();
        let pool = &cfg.pools["web"];
        assert_eq!(pool.retries, 2);
        assert_eq!(pool.servers[1].weight, 3);
        assert!(pool.servers[2].backup);
        assert_eq!(cfg.server.idle_timeout, std::time::Duration::from_secs(65));
        assert_eq!(
            cfg.sites[0].hosts[1],
            crate::HostPattern::Wildcard(".example.org".into())
        );
        assert_eq!(cfg.origin.0, "t.toml");
    }

    #[test]
    fn syntax_and_unknown_keys_name_their_line() {
        rejects("syntax", "[pool.web]", "[pool.web", 12, "");
        rejects(
            "unknown key",
            "[pool.web]",
            "[pool.web]\nbalanse = 1",
            13,
            "unknown field",
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let src = OK
            .replace("pool = \"web\"", "pool = \"nope\"")
            .replace("127.0.0.1:8080", "nowhere");
        assert_eq!(errors(&src).len(), 2, "{:?}", errors(&src));
    }

    /// Validation reads nothing but the text: a server named by a host that does not exist, and files that do
    /// not exist, are for the prepare step (which reports them with file:line too).
    #[test]
    fn validation_touches_neither_dns_nor_files() {
        let src = OK.replace("127.0.0.1:9001", "no-such-host.invalid:9001")
            + "\n[[site]]\nhosts = [\"t.test\"]\ntls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:8443\"\ntls = true\n";
        let cfg = parse(&src, "t.toml").unwrap();
        let s = &cfg.pools["web"].servers[0];
        assert_eq!((s.host.as_str(), s.port), ("no-such-host.invalid", 9001));
        assert_eq!(s.literal(), None);
        assert_eq!(s.at.line, 13);
    }
}
