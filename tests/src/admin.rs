//! The admin listener from a test: requests with or without the token, the metrics text, the status JSON.

use crate::client::{http1, send, Resp};
use bytes::Bytes;
use http::Method;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    /// An admin listener address to put in `[server] admin`, and the client for it.
    pub fn on_free_port(token: Option<&str>) -> Admin {
        Admin {
            addr: format!("127.0.0.1:{}", crate::free_port())
                .parse()
                .expect("addr"),
            token: token.map(str::to_string),
        }
    }

    /// The `[server]` lines that enable it.
    pub fn server_keys(&self) -> String {
        let mut s = format!("admin = \"{}\"\n", self.addr);
        if let Some(t) = &self.token {
            s += &format!("admin_token = \"{t}\"\n");
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the token (when there is one) and `headers`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        send(
            &http1(),
            method,
            &self.url(path),
            &h,
            Bytes::from(body.to_string()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.request(Method::POST, path, &[], body).await
    }

    pub async fn status(&self) -> serde_json::Value {
        let r = self.get("/status").await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("status is JSON")
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// The server entry of `addr` in pool `pool` of `/status`.
    pub async fn server(&self, pool: &str, addr: SocketAddr) -> serde_json::Value {
        let s = self.status().await;
        s["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == pool)
            .and_then(|p| {
                p["servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["addr"] == addr.to_string())
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no server {addr} in pool {pool}: {s}"))
    }

    /// Drains, disables or enables a server.
    pub async fn set(&self, pool: &str, addr: SocketAddr, action: &str) -> Resp {
        self.post(&format!("/pools/{pool}/servers/{addr}/{action}"), "")
            .await
    }
}

/// The value of the sample `name{labels}` in a metrics text; the labels must be written as the text has them.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
