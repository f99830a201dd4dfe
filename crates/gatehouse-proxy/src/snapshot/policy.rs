//! A route's traffic policy, compiled: what the layers and phases read (see `gatehouse_policy`). Rate
//! limiters come from the registries, so a reload that leaves a rule as it was keeps its clients' buckets.

use super::Registries;
use gatehouse_config::{Codec, Compress, Policy, RateScope};
use gatehouse_metrics::Counter;
use gatehouse_policy::basic_auth::Users;
use gatehouse_policy::header_rules::HeaderRuleSet;
use gatehouse_policy::rate_limit::Limiter;
use gatehouse_policy::rewrite::PathRewrite;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct RoutePolicy {
    pub rate_limit: Option<RateLimitRt>,
    /// `None` when there are no rules (nothing to do per request).
    pub request_headers: Option<HeaderRuleSet>,
    pub response_headers: Option<HeaderRuleSet>,
    pub rewrite: Option<PathRewrite>,
    pub basic_auth: Option<Users>,
    pub compress: Option<CompressRt>,
}

#[derive(Debug)]
pub struct RateLimitRt {
    pub limiter: Arc<Limiter>,
    /// 429s of this route.
    pub refused: Counter,
}

#[derive(Debug)]
pub struct CompressRt {
    pub rule: Compress,
    /// Responses compressed, by codec (index of [`Codec`] in `rule.codecs`).
    pub counted: Box<[Counter]>,
}

impl CompressRt {
    pub fn count(&self, codec: Codec) {
        if let Some(i) = self.rule.codecs.iter().position(|c| *c == codec) {
            if let Some(c) = self.counted.get(i) {
                c.inc();
            }
        }
    }
}

/// Identifies a limiter across reloads: where its rule is written, and the rule.
pub type LimiterKey = String;

pub fn compile(
    p: &Policy,
    site: &str,
    route: &str,
    reg: &Registries,
) -> Result<RoutePolicy, String> {
    let rate_limit = p.rate_limit.as_ref().map(|rule| {
        let at = match rule.scope {
            RateScope::Site => "",
            RateScope::Route => route,
        };
        let key = format!("{site}\u{0}{at}\u{0}{rule:?}");
        RateLimitRt {
            limiter: reg.limiters.get_or_insert_with(key, || Limiter::new(rule)),
            refused: reg.metrics.rate_limited(site, route),
        }
    });
    let rules = |r: &gatehouse_config::HeaderRules| -> Result<Option<HeaderRuleSet>, String> {
        if r.is_empty() {
            return Ok(None);
        }
        HeaderRuleSet::compile(r).map(Some)
    };
    Ok(RoutePolicy {
        rate_limit,
        request_headers: rules(&p.request_headers)?,
        response_headers: rules(&p.response_headers)?,
        rewrite: p.rewrite.as_ref().map(PathRewrite::compile).transpose()?,
        basic_auth: p.basic_auth.as_ref().map(Users::compile).transpose()?,
        compress: p.compress.as_ref().map(|c| CompressRt {
            counted: c
                .codecs
                .iter()
                .map(|codec| reg.metrics.compressed(codec.token()))
                .collect(),
            rule: c.clone(),
        }),
    })
}
