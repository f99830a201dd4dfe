//! `POST /pools/<pool>/servers/<addr>/<action>`: drain, disable, enable, weight.
//!
//! The state lives in the server's [`gatehouse_balance::AdminControl`] (by pool and address, outside the
//! config snapshot), so it holds across reloads while the pool lists the server, and the balancers read it
//! on every pick: a drained server gets no new request from the next one on; requests in flight finish.
//! A weight is compiled into the pool's balancer, so setting one rebuilds the running config (its generation
//! rises). `<addr>` is the server's address as `/status` shows it, percent-encoded or not.

use crate::auth::percent_decode;
use crate::{json, text, Admin, Body};
use gatehouse_balance::AdminState;
use http::{Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;

pub async fn action(admin: &Admin, path: &str, body: &[u8]) -> Response<Body> {
    // /pools/<pool>/servers/<addr>/<action>
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["pools", pool, "servers", addr, what] = parts.as_slice() else {
        return text(
            StatusCode::NOT_FOUND,
            "expected /pools/<pool>/servers/<addr>/{drain,disable,enable,weight}\n",
        );
    };
    let pool = percent_decode(pool);
    let addr_text = percent_decode(addr);
    let Ok(addr) = addr_text.parse::<SocketAddr>() else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("{addr_text:?} is not an ip:port server address (as /status shows it)\n"),
        );
    };
    let snap = admin.proxy.snapshot();
    let Some(p) = snap.pools.iter().find(|p| *p.name == *pool) else {
        return text(StatusCode::NOT_FOUND, &format!("no pool {pool:?}\n"));
    };
    let Some(up) = p.upstreams.iter().find(|u| u.addr == addr) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pool {pool:?} has no server {addr}\n"),
        );
    };
    let control = up.admin.clone();
    let state = match *what {
        "drain" => AdminState::Drain,
        "disable" => AdminState::Disabled,
        "enable" => AdminState::Active,
        "weight" => {
            let text_body = String::from_utf8_lossy(body);
            let raw = crate::auth::form_value(body, "weight")
                .unwrap_or_else(|| text_body.trim().to_string());
            let weight = match raw.trim() {
                "" | "config" => None,
                n => match n.parse::<u32>() {
                    Ok(w) if (1..=gatehouse_config::defaults::MAX_WEIGHT).contains(&w) => Some(w),
                    _ => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "weight must be 1 to {} (or \"config\" for the config's)\n",
                                gatehouse_config::defaults::MAX_WEIGHT
                            ),
                        )
                    }
                },
            };
            let before = control.weight();
            control.set_weight(weight);
            let proxy = admin.proxy.clone();
            let rebuilt = tokio::task::spawn_blocking(move || proxy.rebuild()).await;
            return match rebuilt {
                Ok(Ok(report)) => {
                    tracing::info!(pool = %pool, server = %addr, weight = ?weight, generation = report.generation, "admin: server weight set");
                    json(
                        StatusCode::OK,
                        &json!({"pool": pool, "server": addr.to_string(), "weight": weight, "generation": report.generation}),
                    )
                }
                Ok(Err(e)) => {
                    control.set_weight(before);
                    text(
                        StatusCode::CONFLICT,
                        &format!("the running config could not be rebuilt: {e}\n"),
                    )
                }
                Err(e) => {
                    control.set_weight(before);
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("rebuild failed: {e}\n"),
                    )
                }
            };
        }
        other => {
            return text(
                StatusCode::NOT_FOUND,
                &format!("no action {other:?}: drain, disable, enable or weight\n"),
            )
        }
    };
    let was = control.state();
    control.set_state(state);
    if was != state {
        tracing::info!(pool = %pool, server = %addr, from = was.as_str(), to = state.as_str(), in_flight = up.state.in_flight(), "admin: server state changed");
    }
    json(
        StatusCode::OK,
        &json!({"pool": pool, "server": addr.to_string(), "admin_state": state.as_str(), "in_flight": up.state.in_flight()}),
    )
}
