//! A tiny authoritative DNS server on 127.0.0.1 for tests: A records from a table the test changes while it
//! runs (TTL 1 s); AAAA and other types get an empty answer, unknown names NXDOMAIN. UDP only.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

pub struct TestDns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Ipv4Addr>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TestDns {
    /// Serves on a thread of its own (the test's runtime may be blocked waiting for Gatehouse to start).
    pub async fn start() -> TestDns {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let records: Arc<Mutex<HashMap<String, Ipv4Addr>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let reply = answer(&buf[..n], &r.lock().expect("records"));
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        TestDns {
            addr,
            records,
            stop,
        }
    }

    /// `name` resolves to `ip` from now on.
    pub fn set(&self, name: &str, ip: Ipv4Addr) {
        self.records
            .lock()
            .expect("records")
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), ip);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The response to one query, or `None` for what is not a query.
fn answer(q: &[u8], records: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let found = records.get(&name);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q[0..2]); // id
    let rcode = if found.is_none() { 3 } else { 0 };
    out.extend_from_slice(&[0x84 | (q[2] & 0x01), 0x80 | rcode]); // QR, AA, RD copied; RA; rcode
    let answers: u16 = u16::from(found.is_some() && qtype == 1);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let (Some(ip), 1) = (found, qtype) {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]); // name ptr, A, IN, TTL 1, len 4
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
