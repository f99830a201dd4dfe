//! Traffic policy of a route, validated: rate limit, header rules, path rewrite, basic auth, compression.
//! Site values are inherited by the site's routes; a route's own value replaces the site's (header rules
//! add to them: the site's first, then the route's).

use std::collections::BTreeMap;

/// What a route applies to a request besides forwarding it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub rate_limit: Option<RateLimit>,
    /// Applied to the request sent upstream, after the forwarded headers (so a `set` wins).
    pub request_headers: HeaderRules,
    /// Applied to every answer of the route, Gatehouse's own included (nginx's `add_header … always`).
    pub response_headers: HeaderRules,
    pub rewrite: Option<Rewrite>,
    pub basic_auth: Option<BasicAuth>,
    pub compress: Option<Compress>,
}

/// `rate_limit = { rate = "10r/s", burst = 20 }`: a token bucket per client address.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Requests per second on average (from `"10r/s"`, `"600r/m"`, `"3600r/h"`).
    pub per_second: f64,
    /// Requests beyond the rate taken at once (a full bucket holds `burst + 1`).
    pub burst: u32,
    /// true: the burst is served at once; false (nginx's default without `nodelay`): requests beyond the rate
    /// wait for their turn, up to `burst` of them.
    pub nodelay: bool,
    /// IPv6 clients are counted by this prefix (a /64 is one subscriber); IPv4 by the whole address.
    pub ipv6_prefix: u8,
    /// Client addresses remembered at once; beyond it the least recently seen are forgotten.
    pub max_clients: u64,
    /// Written on the site (one set of buckets for all its routes) or on the route (its own).
    pub scope: RateScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateScope {
    Site,
    Route,
}

/// `request_headers` / `response_headers`: values may hold `{client_ip}`, `{host}`, `{request_id}`,
/// `{scheme}`. Applied in this order: remove, set (replaces), add (appends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Lower-case names.
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// `self`'s rules, then `later`'s.
    pub fn then(&self, later: &HeaderRules) -> HeaderRules {
        let mut out = self.clone();
        out.remove.extend(later.remove.iter().cloned());
        out.set.extend(later.set.iter().cloned());
        out.add.extend(later.add.iter().cloned());
        out
    }
}

/// The variables a header rule's value may name.
pub const HEADER_VARIABLES: &[&str] = &["client_ip", "host", "request_id", "scheme"];

/// `rewrite = { from = "^/old/(.*)$", to = "/new/$1" }`: a regex on the path sent upstream, applied once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

/// `basic_auth = { realm, users = { name = "hash" } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub realm: String,
    /// User name → bcrypt (`$2b$…`) or argon2 (`$argon2id$…`) hash.
    pub users: BTreeMap<String, String>,
    /// Pass the client's `Authorization` header on to the servers (default: removed).
    pub forward: bool,
}

/// `compress = ["zstd", "br", "gzip"]`: the codecs offered, in the server's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compress {
    pub codecs: Vec<Codec>,
    pub level: CompressLevel,
    /// Responses whose Content-Length says fewer bytes are sent as they are.
    pub min_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Zstd,
    Br,
    Gzip,
}

impl Codec {
    /// The Content-Encoding token.
    pub fn token(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Br => "br",
            Codec::Gzip => "gzip",
        }
    }
}

/// `compress_level`: "fastest", "default" (gzip 5, br 4, zstd 3: fast enough for live traffic), "best", or
/// a number on the codec's own scale (clamped to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressLevel {
    Fastest,
    Default,
    Best,
    Precise(i32),
}

pub mod defaults {
    pub const RATE_BURST: u32 = 0;
    pub const RATE_IPV6_PREFIX: u8 = 64;
    pub const RATE_MAX_CLIENTS: u64 = 65_536;
    pub const COMPRESS_MIN_SIZE: u64 = 512;
}
