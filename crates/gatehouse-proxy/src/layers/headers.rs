//! `response_headers`: remove, set and add rules on every answer of the route (the upstream's and
//! Gatehouse's own: a 401, 403 or 429 carries them too, like nginx's `add_header … always`).

use crate::body::ResponseBody;
use gatehouse_policy::header_rules::{HeaderRuleSet, Vars};
use http::{HeaderValue, Response};
use std::net::IpAddr;

/// The rules and the request values their variables stand for.
#[derive(Debug, Clone)]
pub struct ResponseRules<'a> {
    pub rules: &'a HeaderRuleSet,
    pub client_ip: IpAddr,
    pub host: Option<HeaderValue>,
    pub request_id: HeaderValue,
    pub scheme: &'static str,
}

impl ResponseRules<'_> {
    pub fn apply(&self, mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
        let vars = Vars {
            client_ip: self.client_ip,
            host: self.host.as_ref().map(HeaderValue::as_bytes),
            request_id: &self.request_id,
            scheme: self.scheme,
        };
        self.rules.apply(resp.headers_mut(), &vars);
        resp
    }
}
