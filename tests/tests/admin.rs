//! The admin listener against the real binary: metrics that count exactly, a status page that follows
//! servers and reloads, drain/disable/enable/weight, the token on every route, `gatehouse ctl`, request ids.

use bytes::Bytes;
use gatehouse_e2e::admin::{sample, Admin};
use gatehouse_e2e::client::{get, get_with, h2c, http1, send};
use gatehouse_e2e::{dead_addr, eventually, single_pool, Backend, Gatehouse};
use http::Method;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn n_requests_raise_the_counter_and_histograms_by_exactly_n_with_bounded_labels() {
    let a = Backend::start("a").await;
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\"", a.addr),
        "",
        &admin.server_keys(),
    ));
    let h1 = http1();
    for i in 0..20 {
        // Each path different: no path may become a label.
        let r = send(
            &h1,
            Method::GET,
            &g.url(&format!("/p{i}?x={i}")),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let h2 = h2c();
    for _ in 0..17 {
        assert_eq!(
            send(&h2, Method::GET, &g.url("/"), &[], Bytes::new())
                .await
                .status,
            200
        );
    }
    let series = |class: &str, proto: &str| {
        format!(
            r#"gatehouse_requests_total{{site="example.com",route="/",class="{class}",protocol="{proto}"}}"#
        )
    };
    // A request is counted when its last byte has been handed over, which may be just after the client read
    // it: wait for the counts to settle, then they must be exact.
    let total = r#"gatehouse_request_duration_seconds_count{site="example.com"}"#;
    assert!(
        eventually(SECS, || async {
            sample(&admin.metrics().await, total) >= Some(37.0)
        })
        .await
    );
    let m = admin.metrics().await;
    assert_eq!(sample(&m, &series("2xx", "http/1.1")), Some(20.0), "{m}");
    assert_eq!(sample(&m, &series("2xx", "h2")), Some(17.0), "{m}");
    assert_eq!(sample(&m, &series("5xx", "http/1.1")), Some(0.0));
    assert!(m.contains("# TYPE gatehouse_requests counter"));
    assert!(m.contains("# TYPE gatehouse_request_duration_seconds histogram"));
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_request_duration_seconds_count{site="example.com"}"#
        ),
        Some(37.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_request_duration_seconds_bucket{le="+Inf",site="example.com"}"#
        ),
        Some(37.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_upstream_response_duration_seconds_count{pool="p"}"#
        ),
        Some(37.0)
    );
    let server = format!(r#"{{pool="p",server="{}"}}"#, a.addr);
    assert_eq!(
        sample(&m, &format!("gatehouse_server_selections_total{server}")),
        Some(37.0)
    );
    assert_eq!(
        sample(&m, &format!("gatehouse_server_up{server}")),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            r#"gatehouse_client_connections_accepted_total{listener="test"}"#
        ) >= Some(2.0)
    );
    assert!(sample(&m, "process_resident_memory_bytes") > Some(1e6));
    assert!(sample(&m, "process_open_fds") > Some(3.0));
    assert_eq!(sample(&m, "gatehouse_config_generation"), Some(1.0));
    // Bounded: one series per (site, route, class, protocol), whatever the paths and clients were.
    let request_series = m
        .lines()
        .filter(|l| l.starts_with("gatehouse_requests_total{"))
        .count();
    assert_eq!(
        request_series,
        2 * 15,
        "the route and the no-route counters, 5 classes x 3 protocols"
    );
    assert!(!m.contains("/p1"), "no path in any label");
    assert!(!m.contains("127.0.0.1\""), "no client address in any label");
}

#[tokio::test]
async fn a_failed_upstream_shows_in_failures_retries_ejections_and_last_error() {
    let a = Backend::start("a").await;
    let dead = dead_addr();
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{dead}\", \"{}\"", a.addr),
        "max_fails = 1\nfail_timeout = \"30s\"",
        &admin.server_keys(),
    ));
    for _ in 0..4 {
        assert_eq!(get(&g.url("/")).await.status, 200, "retried on a");
    }
    assert!(
        eventually(SECS, || async {
            admin.server("p", a.addr).await["requests"] == 4
        })
        .await
    );
    let m = admin.metrics().await;
    let d = format!(r#"{{pool="p",server="{dead}"}}"#);
    assert_eq!(
        sample(&m, &format!("gatehouse_server_failures_total{d}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, &format!("gatehouse_server_retries_total{d}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, &format!("gatehouse_server_ejections_total{d}")),
        Some(1.0)
    );
    assert_eq!(sample(&m, &format!("gatehouse_server_up{d}")), Some(0.0));
    let s = admin.server("p", dead).await;
    assert_eq!(s["healthy"], false);
    assert_eq!(s["failures"], 1);
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{s}"
    );
}

#[tokio::test]
async fn status_follows_a_server_going_down_and_reloads_bumping_the_generation() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let servers = format!("\"{}\", \"{}\"", a.addr, b.addr);
    let config = |extra: &str| {
        single_pool(
            &servers,
            &format!("max_fails = 1\n{extra}"),
            &admin.server_keys(),
        )
    };
    let g = Gatehouse::start(&config(""));
    let s = admin.status().await;
    assert_eq!(s["generation"], 1);
    assert!(s["last_reload"].is_null());
    assert_eq!(admin.server("p", b.addr).await["healthy"], true);
    b.stop();
    // Requests find b gone (retried on a) and take it out.
    assert!(
        eventually(SECS, || async {
            get(&g.url("/")).await;
            admin.server("p", b.addr).await["healthy"] == false
        })
        .await
    );
    assert_eq!(admin.server("p", a.addr).await["healthy"], true);

    g.write_config(&config("retries = 1"));
    assert!(eventually(SECS, || async { admin.status().await["generation"] == 2 }).await);
    assert_eq!(admin.status().await["last_reload"]["ok"], true);
    g.write_config("[pool.p]\nservers = [\"not an address\"]\n");
    assert!(
        eventually(SECS, || async {
            admin.status().await["last_reload"]["ok"] == false
        })
        .await,
        "a rejected reload shows"
    );
    let s = admin.status().await;
    assert_eq!(s["generation"], 2, "the running config kept serving");
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("gatehouse.toml")),
        "{s}"
    );
    let m = admin.metrics().await;
    assert_eq!(
        sample(&m, r#"gatehouse_config_reloads_total{result="ok"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"gatehouse_config_reloads_total{result="failed"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&m, "gatehouse_config_generation"), Some(2.0));
}

#[tokio::test]
async fn a_drained_server_gets_nothing_new_while_its_slow_request_finishes_and_stays_drained_across_a_reload(
) {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let servers = format!("\"{}\", \"{}\"", a.addr, b.addr);
    let config = |extra: &str| single_pool(&servers, extra, &admin.server_keys());
    let g = Gatehouse::start(&config(""));
    let url = g.url("/slow/1500");
    let slow = tokio::spawn(async move { get(&url).await });
    // Which server has it?
    assert!(eventually(SECS, || async { a.count() + b.count() == 1 }).await);
    let (busy, other) = if a.count() == 1 { (&a, &b) } else { (&b, &a) };
    let r = admin.set("p", busy.addr, "drain").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = admin.server("p", busy.addr).await;
    assert_eq!(s["admin_state"], "drain");
    assert_eq!(s["in_flight"], 1, "its request is still running");
    for _ in 0..20 {
        assert_eq!(get(&g.url("/")).await.backend(), other.name);
    }
    let done = slow.await.expect("slow request");
    assert_eq!(
        (done.status, done.backend()),
        (200, busy.name.as_str()),
        "the in-flight request finished on the drained server"
    );
    assert_eq!(busy.count(), 1);

    g.write_config(&config("retries = 1"));
    assert!(eventually(SECS, || async { admin.status().await["generation"] == 2 }).await);
    assert_eq!(
        admin.server("p", busy.addr).await["admin_state"],
        "drain",
        "kept across the reload"
    );
    for _ in 0..10 {
        assert_eq!(get(&g.url("/")).await.backend(), other.name);
    }
    assert_eq!(admin.set("p", busy.addr, "enable").await.status, 200);
    let mut seen_busy = false;
    for _ in 0..10 {
        seen_busy |= get(&g.url("/")).await.backend() == busy.name;
    }
    assert!(seen_busy, "enabled again");
    assert_eq!(admin.set("p", busy.addr, "disable").await.status, 200);
    assert_eq!(
        admin.server("p", busy.addr).await["admin_state"],
        "disabled"
    );
    for _ in 0..10 {
        assert_eq!(get(&g.url("/")).await.backend(), other.name);
    }
    assert_eq!(
        admin.set("p", dead_addr(), "drain").await.status,
        404,
        "not a server of the pool"
    );
    assert_eq!(admin.set("nope", a.addr, "drain").await.status, 404);
    assert_eq!(admin.set("p", a.addr, "explode").await.status, 404);
}

#[tokio::test]
async fn a_weight_set_on_the_admin_api_takes_effect_and_shows() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", a.addr, b.addr),
        "",
        &admin.server_keys(),
    ));
    let r = admin
        .post(&format!("/pools/p/servers/{}/weight", a.addr), "3")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(admin.server("p", a.addr).await["weight"], 3);
    assert_eq!(
        admin.status().await["generation"],
        2,
        "the balancer was rebuilt"
    );
    let mut on_a = 0;
    for _ in 0..40 {
        on_a += usize::from(get(&g.url("/")).await.backend() == "a");
    }
    assert_eq!(on_a, 30, "weight 3 against 1");
    assert_eq!(
        admin
            .post(&format!("/pools/p/servers/{}/weight", a.addr), "0")
            .await
            .status,
        400
    );
    assert_eq!(
        admin
            .post(&format!("/pools/p/servers/{}/weight", a.addr), "config")
            .await
            .status,
        200
    );
    assert_eq!(admin.server("p", a.addr).await["weight"], 1);
}

#[tokio::test]
async fn the_token_is_enforced_on_every_admin_route_and_actions_are_post_only() {
    let a = Backend::start("a").await;
    let admin = Admin::on_free_port(Some("s3cr3t-t0ken"));
    let _g = Gatehouse::start(&single_pool(
        &format!("\"{}\"", a.addr),
        "",
        &admin.server_keys(),
    ));
    let action = format!("/pools/p/servers/{}/drain", a.addr);
    let anonymous = Admin {
        token: None,
        ..admin.clone()
    };
    let wrong = Admin {
        token: Some("s3cr3t-t0kex".into()),
        ..admin.clone()
    };
    for who in [&anonymous, &wrong] {
        for (m, path) in [
            (Method::GET, "/"),
            (Method::GET, "/status"),
            (Method::GET, "/metrics"),
            (Method::POST, action.as_str()),
            (Method::POST, "/logout"),
            (Method::GET, "/nope"),
        ] {
            let r = who.request(m.clone(), path, &[], "").await;
            assert_eq!(r.status, 401, "{m} {path} with {:?}", who.token);
            assert!(!r.body.contains("\"pools\""), "nothing leaks");
        }
    }
    assert_eq!(admin.get("/status").await.status, 200);
    assert_eq!(admin.get("/metrics").await.status, 200);
    let r = admin.get(&action).await;
    assert_eq!(r.status, 405, "an action by GET");
    assert_eq!(
        admin.server("p", a.addr).await["admin_state"],
        "active",
        "and it did nothing"
    );

    // A browser: the login form trades the token for an HttpOnly, SameSite=Strict session cookie.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = anonymous
        .request(Method::POST, "/login", &form, "token=nope")
        .await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("set-cookie").is_none());
    let r = anonymous
        .request(Method::POST, "/login", &form, "token=s3cr3t-t0ken")
        .await;
    assert_eq!(r.status, 303);
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cr3t"),
        "the cookie is a session id, not the token"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let with_cookie = [("cookie", session.as_str())];
    let page = anonymous.request(Method::GET, "/", &with_cookie, "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"pools\""), "the dashboard");
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let r = anonymous
        .request(Method::POST, &action, &with_cookie, "")
        .await;
    assert_eq!(
        r.status, 403,
        "a cookie alone cannot act (cross-site forms)"
    );
    let headers = [("cookie", session.as_str()), ("x-gatehouse-action", "1")];
    assert_eq!(
        anonymous
            .request(Method::POST, &action, &headers, "")
            .await
            .status,
        200
    );
    assert_eq!(admin.server("p", a.addr).await["admin_state"], "drain");
    assert_eq!(
        anonymous
            .request(Method::POST, "/logout", &with_cookie, "")
            .await
            .status,
        303
    );
    assert_eq!(
        anonymous
            .request(Method::GET, "/status", &with_cookie, "")
            .await
            .status,
        401,
        "logged out"
    );
}

#[tokio::test]
async fn ctl_shows_status_and_drains_and_enables() {
    let a = Backend::start("a").await;
    let admin = Admin::on_free_port(Some("ctl-token"));
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\"", a.addr),
        "",
        &admin.server_keys(),
    ));
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(gatehouse_e2e::gatehouse::binary())
            .arg("ctl")
            .arg("-c")
            .arg(&g.config_path)
            .args(args)
            .env_remove("GATEHOUSE_ADMIN_TOKEN")
            .output()
            .expect("ctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let addr = a.addr.to_string();
    let (ok, out) = ctl(&["drain", "p", &addr]);
    assert!(ok, "{out}");
    assert_eq!(admin.server("p", a.addr).await["admin_state"], "drain");
    let (ok, out) = ctl(&["status"]);
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&addr) && l.contains("drain")),
        "{out}"
    );
    let (ok, out) = ctl(&["enable", "p", &addr]);
    assert!(ok, "{out}");
    assert_eq!(admin.server("p", a.addr).await["admin_state"], "active");
    let (ok, out) = ctl(&["--token", "wrong", "status"]);
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test]
async fn a_valid_request_id_is_kept_else_one_is_made_and_it_goes_up_and_back() {
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&single_pool(&format!("\"{}\"", a.addr), "", ""));
    let r = get_with(&g.url("/"), &[("x-request-id", "front-proxy-42")]).await;
    assert_eq!(r.headers["x-request-id"], "front-proxy-42");
    assert_eq!(a.seen()[0].headers["x-request-id"], "front-proxy-42");
    for bad in ["has space", "<script>", &"x".repeat(200)] {
        let r = get_with(&g.url("/"), &[("x-request-id", bad)]).await;
        let id = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert!(
            id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{bad:?} replaced by {id}"
        );
        assert_eq!(
            a.seen().last().unwrap().headers["x-request-id"],
            id.as_str()
        );
    }
    // Gatehouse's own answers carry one too.
    let r = get(&format!("http://{}/", g.addr)).await;
    assert!(r.headers.contains_key("x-request-id"));
}
