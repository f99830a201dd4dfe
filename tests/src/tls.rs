//! TLS test support: a private CA (rcgen) issuing certificates into files, a TLS client that reports what
//! the server presented and negotiated, and an HTTPS backend.

use crate::client::Resp;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A private certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (chain PEM with the CA, key PEM); the serial differs per call.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.leaf(names, |_| {})
    }

    /// Issues for `names` into `dir/stem.pem` and `dir/stem.key` (key 0600); returns both paths.
    pub fn issue_files(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        write_pair(dir, stem, self.issue(names))
    }

    /// Like [`issue_files`](Self::issue_files), valid only in 2020: expired.
    pub fn issue_expired_files(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> (PathBuf, PathBuf) {
        let pair = self.leaf(names, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        });
        write_pair(dir, stem, pair)
    }

    /// Signs a leaf for `names` after `adjust` has had its say on the parameters.
    fn leaf(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        )
    }

    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.cert_pem).expect("write ca");
        p
    }

    /// A client trusting this CA, for the given TLS versions and ALPN protocols.
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("root");
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// Writes a (chain, key) pair as `dir/stem.pem` and `dir/stem.key`, the key 0600.
fn write_pair(dir: &Path, stem: &str, (cert, key): (String, String)) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (cp, kp) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cp, cert).expect("write cert");
    std::fs::write(&kp, key).expect("write key");
    std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (cp, kp)
}

/// Handshakes with `addr` asking for `sni`.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The DNS names in the certificate the server presented.
pub fn presented_names(tls: &TlsStream<TcpStream>) -> Vec<String> {
    let certs = tls.get_ref().1.peer_certificates().expect("peer certs");
    let (_, cert) = x509_names(&certs[0]);
    cert
}

fn x509_names(der: &CertificateDer<'_>) -> ((), Vec<String>) {
    // Decode just the SAN DNS names with rcgen's parser-free approach: use rustls-webpki via rustls? Keep it
    // simple: search the DER for the names we issued (they are stored as IA5String bytes).
    let bytes = der.as_ref();
    let mut names = Vec::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        // SAN dNSName is context tag [2] (0x82) followed by a short length.
        if bytes[i] == 0x82 {
            let len = bytes[i + 1] as usize;
            if len > 0 && len < 128 && i + 2 + len <= bytes.len() {
                let s = &bytes[i + 2..i + 2 + len];
                if s.iter().all(|&b| b.is_ascii_graphic()) && s.contains(&b'.') {
                    names.push(String::from_utf8_lossy(s).into_owned());
                    i += 2 + len;
                    continue;
                }
            }
        }
        i += 1;
    }
    ((), names)
}

/// One GET over an established TLS stream, HTTP/2 if that was negotiated, else HTTP/1.1.
pub async fn get_over(
    tls: TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> (Resp, Option<Vec<u8>>) {
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("req");
        send.send_request(req).await.expect("h2 response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .expect("req");
        send.send_request(req).await.expect("h1 response")
    };
    (Resp::read(resp).await, alpn)
}

/// An HTTPS backend: the test backend's handler behind TLS, offering `alpn` (h2 and/or http/1.1).
pub async fn https_backend(
    name: &str,
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> crate::Backend {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.expect("pem"))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    crate::Backend::start_with_tls(
        name,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
    )
    .await
}
