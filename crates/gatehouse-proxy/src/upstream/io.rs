//! An HTTP/1.1 upstream connection's socket, plain or TLS, as one type: so that one client ([`super::h1`])
//! and one parked list ([`super::pool`]) serve both.

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub type UpstreamIo = crate::socket::Socket<TlsStream<TcpStream>>;

impl UpstreamIo {
    /// Whether a connection nobody has read from for a while can take a request: the server has neither
    /// closed it nor sent anything unasked (an HTTP/1.1 server may send nothing between exchanges but a
    /// close; over TLS, a close_notify). Reads at most one byte of the socket: any byte means the connection is
    /// not to be used (and is dropped).
    pub fn is_quiet(&self) -> bool {
        let tcp = match self {
            crate::socket::Socket::Plain(s) => s,
            crate::socket::Socket::Tls(s) => s.get_ref().0,
        };
        let mut byte = [0u8; 1];
        matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
