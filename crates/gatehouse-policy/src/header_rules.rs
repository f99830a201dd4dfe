//! `request_headers` / `response_headers`: remove, set and add rules compiled once per config. A value without
//! variables is a ready `HeaderValue` (a clone per use: a reference count); one with variables is rendered
//! per request from its parts.

use gatehouse_config::HeaderRules;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// What `{client_ip}`, `{host}`, `{request_id}` and `{scheme}` stand for in one request.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub client_ip: IpAddr,
    /// The host the request was routed by (empty when it had none).
    pub host: Option<&'a [u8]>,
    pub request_id: &'a HeaderValue,
    pub scheme: &'static str,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(Box<str>),
    ClientIp,
    Host,
    RequestId,
    Scheme,
}

/// A header value, fixed or with variables.
#[derive(Debug, Clone)]
pub struct Template(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Fixed(HeaderValue),
    Parts(Box<[Part]>),
}

impl Template {
    pub fn compile(text: &str) -> Result<Self, String> {
        gatehouse_config::validate::check_template(text)?;
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let var = after.find('}').and_then(|close| {
                let part = match &after[..close] {
                    "client_ip" => Part::ClientIp,
                    "host" => Part::Host,
                    "request_id" => Part::RequestId,
                    "scheme" => Part::Scheme,
                    _ => return None,
                };
                Some((part, close))
            });
            match var {
                Some((part, close)) => {
                    lit.push_str(&rest[..open]);
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit).into()));
                    }
                    parts.push(part);
                    rest = &after[close + 1..];
                }
                None => {
                    lit.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if parts.is_empty() {
            return HeaderValue::from_str(&lit)
                .map(|v| Template(Kind::Fixed(v)))
                .map_err(|_| format!("{text:?} is not a header value"));
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        Ok(Template(Kind::Parts(parts.into())))
    }

    pub fn render(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        let parts = match &self.0 {
            Kind::Fixed(v) => return Some(v.clone()),
            Kind::Parts(p) => p,
        };
        let mut out: Vec<u8> = Vec::with_capacity(64);
        for p in parts.iter() {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::ClientIp => {
                    use std::io::Write;
                    let _ = write!(out, "{}", gatehouse_config::canonical(vars.client_ip));
                }
                Part::Host => out.extend_from_slice(vars.host.unwrap_or_default()),
                Part::RequestId => out.extend_from_slice(vars.request_id.as_bytes()),
                Part::Scheme => out.extend_from_slice(vars.scheme.as_bytes()),
            }
        }
        HeaderValue::from_bytes(&out).ok()
    }

    /// Whether rendering needs the request id (so the caller knows what to keep).
    pub fn uses_request_id(&self) -> bool {
        matches!(&self.0, Kind::Parts(p) if p.iter().any(|p| matches!(p, Part::RequestId)))
    }
}

/// One direction's rules, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct HeaderRuleSet {
    remove: Box<[HeaderName]>,
    set: Box<[(HeaderName, Template)]>,
    add: Box<[(HeaderName, Template)]>,
}

impl HeaderRuleSet {
    pub fn compile(rules: &HeaderRules) -> Result<Self, String> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
        };
        let pairs = |list: &[(String, String)]| -> Result<Box<[(HeaderName, Template)]>, String> {
            list.iter()
                .map(|(n, v)| Ok((name(n)?, Template::compile(v)?)))
                .collect()
        };
        Ok(HeaderRuleSet {
            remove: rules
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set: pairs(&rules.set)?,
            add: pairs(&rules.add)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Remove, then set (replacing every value of the name), then add (appending).
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        for n in self.remove.iter() {
            headers.remove(n);
        }
        for (n, t) in self.set.iter() {
            match t.render(vars) {
                Some(v) => {
                    headers.insert(n.clone(), v);
                }
                None => {
                    tracing::debug!(header = %n, "a header rule rendered no valid value: skipped")
                }
            }
        }
        for (n, t) in self.add.iter() {
            if let Some(v) = t.render(vars) {
                headers.append(n.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(id: &HeaderValue) -> Vars<'_> {
        Vars {
            client_ip: "::ffff:127.0.0.2".parse().unwrap(),
            host: Some(b"example.com"),
            request_id: id,
            scheme: "https",
        }
    }

    #[test]
    fn templates_render_their_variables() {
        let id = HeaderValue::from_static("abc123");
        let t =
            Template::compile("{scheme}://{host}/ from {client_ip} id={request_id} {unknown {x")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.render(&vars(&id)).unwrap(),
            "https://example.com/ from 127.0.0.2 id=abc123 {unknown {x"
        );
        assert!(t.uses_request_id());
        assert!(matches!(
            Template::compile("plain").unwrap().0,
            Kind::Fixed(_)
        ));
        assert!(Template::compile("{nope}").is_err());
    }

    #[test]
    fn rules_remove_then_set_then_add() {
        let rules = HeaderRules {
            remove: vec!["server".into(), "x-powered-by".into()],
            set: vec![("x-env".into(), "prod".into())],
            add: vec![("x-trace".into(), "{client_ip}".into())],
        };
        let set = HeaderRuleSet::compile(&rules).unwrap();
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("Apache"));
        h.insert("x-powered-by", HeaderValue::from_static("PHP"));
        h.append("x-env", HeaderValue::from_static("a"));
        h.append("x-env", HeaderValue::from_static("b"));
        h.insert("x-trace", HeaderValue::from_static("first"));
        let id = HeaderValue::from_static("i");
        set.apply(&mut h, &vars(&id));
        assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());
        assert_eq!(h.get_all("x-env").iter().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(
            h.get_all("x-trace").iter().collect::<Vec<_>>(),
            ["first", "127.0.0.2"]
        );
    }
}
