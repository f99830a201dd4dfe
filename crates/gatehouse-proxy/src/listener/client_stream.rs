//! A client's socket, plain or TLS: one serving path (one `Protocols::serve` for both), the TLS session boxed
//! so that a parked plain connection does not carry its size.

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub type ClientStream = crate::socket::Socket<TlsStream<TcpStream>>;
