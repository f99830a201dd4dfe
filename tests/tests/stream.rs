//! L4 TCP forwarding (`[[stream]]`) against the real binary: a round trip with a server that speaks first,
//! half-close passed on, 100 MB through, round-robin by connection, failover past a refusing server, deny by
//! CIDR, and the PROXY protocol v1 and v2 headers as the server reads them.

use gatehouse_e2e::admin::{sample, Admin};
use gatehouse_e2e::{dead_addr, free_port, Gatehouse};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(20);

/// A TCP server that greets with `banner\n` (it speaks first, as SSH does), echoes what it reads, and when the
/// client half-closes, writes `bye` and closes.
async fn banner_server(banner: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(format!("{banner}\n").as_bytes()).await;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(b"bye").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A server that reads everything until the client's half-close and answers how many bytes it got.
async fn counting_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = s.write_all(n.to_string().as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A server that reads the PROXY header its clients send first and answers with what it parsed (v1: the
/// line; v2: the addresses), then closes.
async fn proxy_reading_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 512];
                let mut got = 0;
                let answer = loop {
                    let Ok(k) = s.read(&mut buf[got..]).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got += k;
                    let head = &buf[..got];
                    if head.starts_with(b"PROXY ") {
                        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                            break format!("v1 {}", String::from_utf8_lossy(&head[..end + 2]));
                        }
                    } else if let Ok(h) = ppp::v2::Header::try_from(head) {
                        break format!("v2 {:?} {:?}", h.command, h.addresses);
                    }
                };
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn stream_config(
    servers: &[SocketAddr],
    stream_keys: &str,
    pool_keys: &str,
    server_keys: &str,
) -> (String, SocketAddr) {
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    let cfg = format!(
        "[server]\n{server_keys}\n\n[[stream]]\nname = \"tcp\"\nbind = \"{bind}\"\npool = \"tcp\"\n{stream_keys}\n\n[pool.tcp]\nservers = [{}]\n{pool_keys}\n\n[[site]]\nhosts = [\"x.test\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n",
        servers.join(", ")
    );
    (cfg, bind)
}

async fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before {:?}: got {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn a_round_trip_with_a_server_that_speaks_first_and_a_half_close() {
    let a = banner_server("SSH-2.0-vm1").await;
    let admin = Admin::on_free_port(None);
    let (cfg, bind) = stream_config(&[a], "", "", &admin.server_keys());
    let _g = Gatehouse::start(&cfg);
    let mut c = TcpStream::connect(bind).await.unwrap();
    read_until(&mut c, b"SSH-2.0-vm1\n").await;
    c.write_all(b"hello").await.unwrap();
    read_until(&mut c, b"hello").await;
    // Half-close: the server sees the end of the client's bytes and can still answer.
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest, b"bye",
        "the answer after the half-close, then the close"
    );
    let s = admin.status().await;
    let l = s["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "tcp")
        .cloned()
        .unwrap();
    assert_eq!(l["kind"], "stream");
    assert!(l["accepted"].as_u64() >= Some(1));
    let m = admin.metrics().await;
    assert!(
        gatehouse_e2e::eventually(T, || async {
            sample(
                &admin.metrics().await,
                r#"gatehouse_stream_bytes_total{stream="tcp",direction="in"}"#,
            ) == Some(5.0)
        })
        .await,
        "{m}"
    );
}

#[tokio::test]
async fn a_hundred_megabytes_go_through() {
    let sink = counting_server().await;
    let (cfg, bind) = stream_config(&[sink], "", "", "");
    let _g = Gatehouse::start(&cfg);
    let mut c = TcpStream::connect(bind).await.unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..100 {
        c.write_all(&chunk).await.unwrap();
    }
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), c.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, (100u64 << 20).to_string());
}

async fn banner_of(bind: SocketAddr) -> String {
    let mut c = TcpStream::connect(bind).await.unwrap();
    let got = read_until(&mut c, b"\n").await;
    String::from_utf8_lossy(&got).trim().to_string()
}

#[tokio::test]
async fn connections_are_balanced_round_robin_and_a_refusing_server_is_skipped() {
    let (a, b) = (banner_server("a").await, banner_server("b").await);
    let (cfg, bind) = stream_config(&[a, b], "", "", "");
    let _g = Gatehouse::start(&cfg);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(banner_of(bind).await);
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"], "one connection each in turn");

    let (cfg, bind) = stream_config(&[dead_addr(), a], "", "max_fails = 0", "");
    let _g = Gatehouse::start(&cfg);
    for _ in 0..4 {
        assert_eq!(banner_of(bind).await, "a", "the refusing server is skipped");
    }
}

#[tokio::test]
async fn a_denied_address_gets_nothing() {
    let a = banner_server("a").await;
    let (cfg, bind) = stream_config(&[a], "deny = [\"127.0.0.2/32\"]", "", "");
    let _g = Gatehouse::start(&cfg);
    // From 127.0.0.2: closed without a byte of the server's.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut c = sock.connect(bind).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(T, c.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // From 127.0.0.1: served.
    assert_eq!(banner_of(bind).await, "a");
}

#[tokio::test]
async fn the_server_reads_a_proxy_v1_or_v2_header_naming_the_client() {
    let p = proxy_reading_server().await;
    for (version, want) in [
        ("v1", "v1 PROXY TCP4 127.0.0.1 127.0.0.1"),
        ("v2", "v2 Proxy IPv4("),
    ] {
        let (cfg, bind) = stream_config(&[p], &format!("proxy_protocol = \"{version}\""), "", "");
        let _g = Gatehouse::start(&cfg);
        let mut c = TcpStream::connect(bind).await.unwrap();
        let client = c.local_addr().unwrap();
        let mut answer = String::new();
        tokio::time::timeout(T, c.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with(want), "{version}: {answer}");
        match version {
            "v1" => assert_eq!(
                answer,
                format!(
                    "v1 PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
                    client.port(),
                    bind.port()
                ),
                "byte for byte"
            ),
            _ => {
                let want = format!("{:?}", ppp::v2::Addresses::from((client, bind)));
                assert!(answer.ends_with(&want), "{answer} vs {want}");
            }
        }
    }
}

#[test]
fn a_stream_config_is_checked() {
    let (ok, out) = gatehouse_e2e::gatehouse::check(
        "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:1\"\n[[stream]]\nname = \"ssh\"\nbind = \"127.0.0.1:1\"\npool = \"nope\"\nproxy_protocol = \"v3\"\n[[site]]\nhosts = [\"x.test\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n",
    );
    assert!(!ok);
    for words in [
        "already bound",
        "no pool named \"nope\"",
        "expected \"off\", \"v1\" or \"v2\"",
    ] {
        assert!(out.contains(words), "{words}: {out}");
    }
}

/// Waits until the probes find the stream pool's first server up and its second down.
async fn first_up_second_down(admin: &Admin) {
    assert!(
        gatehouse_e2e::eventually(T, || async {
            let s = admin.status().await;
            let servers = &s["pools"][0]["servers"];
            servers[0]["health_check"] == "up" && servers[1]["health_check"] == "down"
        })
        .await,
        "{}",
        admin.status().await
    );
}

#[tokio::test]
async fn a_tcp_health_check_finds_a_server_that_stopped_listening() {
    let a = banner_server("a").await;
    let gone = dead_addr();
    let admin = Admin::on_free_port(None);
    let (cfg, bind) = stream_config(
        &[a, gone],
        "",
        "health = { interval = \"200ms\", timeout = \"500ms\", fall = 1, rise = 1 }",
        &admin.server_keys(),
    );
    let _g = Gatehouse::start(&cfg);
    // No connection has been made through the stream: the probes alone find it.
    first_up_second_down(&admin).await;
    for _ in 0..4 {
        assert_eq!(banner_of(bind).await, "a");
    }
}

#[tokio::test]
async fn a_proxy_header_from_a_trusted_balancer_names_the_client_for_the_rules_and_the_server() {
    let p = proxy_reading_server().await;
    // Only 10.1.2.3 may use the stream; the balancer in front (127.0.0.1, trusted) says the client is it.
    let (cfg, bind) = stream_config(
        &[p],
        "accept_proxy_protocol = true\nproxy_protocol = \"v1\"\nallow = [\"10.1.2.3/32\"]",
        "",
        "trusted_proxies = [\"127.0.0.1/32\"]",
    );
    let _g = Gatehouse::start(&cfg);
    let mut c = TcpStream::connect(bind).await.unwrap();
    c.write_all(b"PROXY TCP4 10.1.2.3 192.0.2.1 40000 2201\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(T, c.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        answer,
        format!("v1 PROXY TCP4 10.1.2.3 127.0.0.1 40000 {}\r\n", bind.port())
    );
    // Without a header: closed. With a header naming someone not allowed: closed.
    for first in [
        &b"hello\r\n"[..],
        b"PROXY TCP4 10.9.9.9 192.0.2.1 40000 2201\r\n",
    ] {
        let mut c = TcpStream::connect(bind).await.unwrap();
        c.write_all(first).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(T, c.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
}

#[tokio::test]
async fn a_tcp_check_can_expect_what_the_server_says_first() {
    let (good, wrong) = (
        banner_server("SSH-2.0-vm1").await,
        banner_server("HTTP/1.1 400").await,
    );
    let admin = Admin::on_free_port(None);
    let (cfg, bind) = stream_config(
        &[good, wrong],
        "",
        "health = { interval = \"200ms\", timeout = \"500ms\", fall = 1, rise = 1, expect = \"SSH-2.0\" }",
        &admin.server_keys(),
    );
    let _g = Gatehouse::start(&cfg);
    first_up_second_down(&admin).await;
    for _ in 0..4 {
        assert_eq!(banner_of(bind).await, "SSH-2.0-vm1");
    }
}
