//! `rewrite = { from, to }`: a regex replacement on the path sent upstream, applied once (its result is not
//! matched again). Captures are `$1`, `${1}`, `${name}`. A result with a `?` brings its own query, to which
//! the request's own query is appended (nginx's rule); otherwise the request's query is kept.

use gatehouse_config::Rewrite;
use regex::Regex;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct PathRewrite {
    from: Regex,
    to: Box<str>,
}

/// The target after a rewrite.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten<'a> {
    pub path: Cow<'a, str>,
    /// A query the replacement wrote (the request's own follows it).
    pub query: Option<String>,
}

impl PathRewrite {
    pub fn compile(r: &Rewrite) -> Result<Self, String> {
        Ok(PathRewrite {
            from: Regex::new(&r.from).map_err(|e| format!("rewrite.from: {e}"))?,
            to: r.to.as_str().into(),
        })
    }

    /// `path` rewritten, or `None` when the pattern does not match it.
    pub fn apply<'a>(&self, path: &'a str) -> Option<Rewritten<'a>> {
        if !self.from.is_match(path) {
            return None;
        }
        let out = self.from.replacen(path, 1, &*self.to);
        let (path, query) = match out.split_once('?') {
            Some((p, q)) => (Cow::Owned(p.to_string()), Some(q.to_string())),
            None => (out, None),
        };
        // A capture may have held the leading slash, or nothing at all.
        let path = if path.starts_with('/') {
            path
        } else {
            Cow::Owned(format!("/{path}"))
        };
        Some(Rewritten { path, query })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(from: &str, to: &str) -> PathRewrite {
        PathRewrite::compile(&Rewrite {
            from: from.into(),
            to: to.into(),
        })
        .unwrap()
    }

    #[test]
    fn captures_fill_the_replacement() {
        let r = rw("^/old/(.*)$", "/new/$1");
        assert_eq!(r.apply("/old/a/b.html").unwrap().path, "/new/a/b.html");
        assert_eq!(r.apply("/other"), None);
        let r = rw("^/u/(?P<id>[0-9]+)$", "/users?id=${id}");
        let out = r.apply("/u/42").unwrap();
        assert_eq!(
            (out.path.as_ref(), out.query.as_deref()),
            ("/users", Some("id=42"))
        );
        assert_eq!(rw("^/(.*)$", "$1").apply("/x").unwrap().path, "/x");
    }

    #[test]
    fn applied_once() {
        // The result matches the pattern again; it is not rewritten twice.
        let r = rw("^/a", "/aa");
        assert_eq!(r.apply("/a").unwrap().path, "/aa");
    }
}
