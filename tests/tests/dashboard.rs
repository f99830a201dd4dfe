//! The dashboard in a real headless browser (Debian's chromium over the DevTools protocol): it logs in with
//! the token through its form, loads with no console error and no request anywhere but the admin listener,
//! shows a server going red when it is stopped, and its Drain button drains the server.

use gatehouse_e2e::admin::Admin;
use gatehouse_e2e::browser::Browser;
use gatehouse_e2e::client::get;
use gatehouse_e2e::{eventually, single_pool, Backend, Gatehouse};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_dashboard_loads_clean_shows_a_stopped_server_red_and_drains_from_its_button() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(Some("dash-token"));
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", a.addr, b.addr),
        "max_fails = 1\nfail_timeout = \"60s\"",
        &admin.server_keys(),
    ));
    for _ in 0..6 {
        get(&g.url("/")).await;
    }
    let mut browser = Browser::start().await;
    let base = admin.url("");
    browser.navigate(&admin.url("/")).await;
    assert!(
        browser
            .wait_for("!!document.querySelector('input[name=token]')", WAIT)
            .await,
        "the login form"
    );
    browser
        .eval("document.querySelector('input[name=token]').value = 'dash-token'; document.forms[0].submit(); true")
        .await;
    let row = |addr: std::net::SocketAddr| {
        format!("document.querySelector('tr[data-server=\"{addr}\"]')")
    };
    assert!(
        browser.wait_for(&format!("!!{}", row(a.addr)), WAIT).await,
        "the dashboard shows the pool's servers"
    );
    let from = browser.events.len();
    assert!(
        browser
            .wait_for(
                &format!("{}.classList.contains('state-up')", row(b.addr)),
                WAIT
            )
            .await
    );

    // b stops; traffic finds it gone; the page turns its row red.
    b.stop();
    assert!(
        eventually(WAIT, || async {
            get(&g.url("/")).await;
            admin.server("p", b.addr).await["healthy"] == false
        })
        .await
    );
    assert!(
        browser
            .wait_for(
                &format!("{}.classList.contains('state-down')", row(b.addr)),
                WAIT
            )
            .await,
        "b shown down: {}",
        browser.eval(&format!("{}.outerHTML", row(b.addr))).await
    );

    // The Drain button on a's row drains a.
    browser
        .eval(&format!(
            "{}.querySelector('button.drain').click(); true",
            row(a.addr)
        ))
        .await;
    assert!(
        eventually(WAIT, || async {
            admin.server("p", a.addr).await["admin_state"] == "drain"
        })
        .await,
        "the button drained the server"
    );
    assert!(
        browser
            .wait_for(
                &format!("{}.classList.contains('state-drain')", row(a.addr)),
                WAIT
            )
            .await
    );
    assert!(
        browser
            .wait_for(
                "document.querySelector('#heatmap td[title]') !== null",
                WAIT
            )
            .await,
        "the heat map"
    );
    if let Ok(path) = std::env::var("GATEHOUSE_SCREENSHOT") {
        std::fs::write(path, browser.screenshot().await).expect("screenshot");
    }

    let problems = browser.problems(from);
    assert!(
        problems.is_empty(),
        "console errors on the dashboard: {problems:#?}"
    );
    assert!(
        browser
            .requests()
            .iter()
            .any(|u| u.starts_with(&format!("{base}/status"))),
        "the page polls /status (and the request log sees it)"
    );
    let outside: Vec<String> = browser
        .requests()
        .into_iter()
        .filter(|u| !u.starts_with(&base) && !u.starts_with("data:") && u != "about:blank")
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside the admin listener: {outside:?}"
    );
}
