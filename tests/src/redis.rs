//! A real Redis for the cluster tests (Debian package `redis-server`), on a free 127.0.0.1 port with its
//! data in a temporary folder (append-only file on, so a stopped and restarted Redis keeps what it had). If
//! redis-server is not installed the tests fail, they do not skip: `tests/run.sh` installs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// `rediss://` only, with this server certificate and key (PEM files), and `requirepass`.
    tls: Option<(PathBuf, PathBuf, String)>,
}

impl Redis {
    pub fn start() -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let mut r = Redis {
            child: None,
            addr,
            dir: tempfile::tempdir().expect("tempdir"),
            tls: None,
        };
        r.restart();
        r
    }

    /// Redis over TLS only (no plain port), with a certificate from `ca` for 127.0.0.1 and a password.
    pub fn start_tls(ca: &crate::tls::TestCa, password: &str) -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.issue_files(dir.path(), "redis", &["127.0.0.1", "localhost"]);
        let mut r = Redis {
            child: None,
            addr,
            dir,
            tls: Some((cert, key, password.to_string())),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Starts it (again) on the same port and data folder.
    pub fn restart(&mut self) {
        let port = self.addr.port().to_string();
        let mut cmd = Command::new(crate::installed("redis-server", "redis-server"));
        cmd.args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            None => {
                cmd.args(["--port", &port]);
            }
            Some((cert, key, password)) => {
                cmd.args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--requirepass", password]);
            }
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited early: {status}");
            }
            let up = match &self.tls {
                None => self.cli(&["PING"]).trim() == "PONG",
                // The CLI would need the CA to check the certificate: the port only has to be open.
                Some(_) => std::net::TcpStream::connect(self.addr).is_ok(),
            };
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
    }

    /// Kills it (as a crash would); `restart` brings it back with its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis-cli -p PORT ARGS…`, its output (empty when Redis is down).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(crate::installed("redis-cli", "redis-tools"))
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
