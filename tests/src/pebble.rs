//! A real ACME server for the tests: Let's Encrypt's Pebble (Debian package `pebble`), with
//! `pebble-challtestsrv` as its DNS (every name → 127.0.0.1, its own challenge responders off). Pebble's
//! validation goes to Gatehouse's listeners (`httpPort`/`tlsPort`). Both bind 127.0.0.1 only. If Pebble is not
//! installed the tests fail, they do not skip: `tests/run.sh` installs it.

use crate::tls::TestCa;
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Pebble {
    pebble: Child,
    dns: Child,
    pub directory: String,
    /// PEM of the CA that signed Pebble's HTTPS certificate: Gatehouse's `acme.ca_root`.
    pub ca_root: PathBuf,
    pub management: SocketAddr,
    pub dns_management: SocketAddr,
    pub dir: tempfile::TempDir,
    ca: TestCa,
}

fn wait_port(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {addr}");
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("Pebble HTTPS test CA");
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), cert).expect("cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("key");
        let ca_root = ca.write_ca(dir.path());

        let dns_port = crate::free_port();
        let dns_management: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let mut dns = Command::new(crate::installed("pebble-challtestsrv", "pebble"))
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &dns_management.to_string()])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        wait_port(dns_management, &mut dns, "pebble-challtestsrv");

        let listen: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let management: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "{listen}", "managementListenAddress": "{management}",
               "certificate": "{d}/cert.pem", "privateKey": "{d}/key.pem",
               "httpPort": {http_port}, "tlsPort": {tls_port}, "ocspResponderURL": "",
               "externalAccountBindingRequired": false}}}}"#,
            d = dir.path().display()
        );
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config).expect("pebble config");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log");
        let mut pebble = Command::new(crate::installed("pebble", "pebble"))
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pebble");
        wait_port(listen, &mut pebble, "pebble");
        // The management listener (issuing roots) opens a moment after the ACME one.
        wait_port(management, &mut pebble, "pebble management");
        Pebble {
            pebble,
            dns,
            directory: format!("https://{listen}/dir"),
            ca_root,
            management,
            dns_management,
            dir,
            ca,
        }
    }

    /// Makes `host` resolve to `ip` (e.g. 127.0.0.2, where nothing answers: validation fails).
    pub async fn set_a_record(&self, host: &str, ip: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = format!(r#"{{"host":"{host}","addresses":["{ip}"]}}"#);
        let req = format!(
            "POST /add-a HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.dns_management,
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(self.dns_management)
            .await
            .expect("challtestsrv");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 200"), "add-a: {out}");
    }

    /// Pebble's issuing root (PEM), to verify what Gatehouse serves.
    pub async fn issuing_root(&self) -> String {
        let tls = crate::tls::connect(
            self.management,
            "127.0.0.1",
            self.ca.client(
                &[&rustls::version::TLS13, &rustls::version::TLS12],
                &[b"http/1.1"],
            ),
        )
        .await
        .expect("pebble management");
        let (resp, _) = crate::tls::get_over(tls, &self.management.to_string(), "/roots/0").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.body
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The `[acme]` section pointing at this Pebble.
    pub fn acme_section(&self, storage: &std::path::Path, challenge: &str, extra: &str) -> String {
        format!(
            "[acme]\nemail = \"ops@example.test\"\ndirectory = \"{}\"\nca_root = \"{}\"\nchallenge = \"{challenge}\"\nstorage = \"{}\"\ncheck_interval = \"500ms\"\nretry_initial = \"500ms\"\n{extra}\n",
            self.directory,
            self.ca_root.display(),
            storage.display()
        )
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
        if std::thread::panicking() {
            eprintln!("--- pebble log ---\n{}", self.logs());
        }
    }
}

/// A client that trusts Pebble's issuing root only.
pub async fn pebble_client(pebble: &Pebble) -> Arc<rustls::ClientConfig> {
    let root = pebble.issuing_root().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The certificate served for `name`, verified against Pebble's root, once there is one.
pub async fn served(
    https: SocketAddr,
    name: &str,
    client: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(tls) = crate::tls::connect(https, name, client.clone()).await {
            return Some(
                tls.get_ref().1.peer_certificates().expect("certificates")[0]
                    .as_ref()
                    .to_vec(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
