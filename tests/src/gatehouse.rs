//! Running the real binary.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `gatehouse` binary next to this test executable (target/<profile>/gatehouse), or `$GATEHOUSE_BIN`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("GATEHOUSE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("gatehouse");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p gatehouse` (tests/run.sh does)",
        bin.display()
    );
    bin
}

pub struct Gatehouse {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
}

impl Gatehouse {
    /// Starts gatehouse with `config` plus one plain listener on a free port (appended; `config` must not end
    /// inside a table that would swallow it... it is added as a new [[listener]] entry, so any config works).
    pub fn start(config: &str) -> Gatehouse {
        let port = crate::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let full = format!("{config}\n\n[[listener]]\nname = \"test\"\nbind = \"{addr}\"\n");
        Self::start_raw(&full, addr)
    }

    /// Starts gatehouse with exactly `config`, waiting for `addr` to accept connections.
    pub fn start_raw(config: &str, addr: SocketAddr) -> Gatehouse {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gatehouse.toml");
        std::fs::write(&config_path, config).expect("write config");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(binary())
            .args(["run", "-c"])
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("GATEHOUSE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn gatehouse");
        let mut g = Gatehouse {
            child,
            addr,
            dir,
            config_path,
            stderr_path,
        };
        g.wait_ready();
        g
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gatehouse exited early ({status}):\n{}", self.logs());
            }
            // A connection to itself (the kernel picked the destination port as the source port: TCP's
            // simultaneous open) would look like a listener that is not there yet.
            if let Ok(s) = std::net::TcpStream::connect(self.addr) {
                if s.local_addr().ok() != s.peer_addr().ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "gatehouse did not listen on {} within 10 s:\n{}",
            self.addr,
            self.logs()
        );
    }

    /// The [[listener]] block `start` appended, to keep in rewritten configs.
    pub fn listener_block(&self) -> String {
        format!(
            "\n\n[[listener]]\nname = \"test\"\nbind = \"{}\"\n",
            self.addr
        )
    }

    /// Replaces the config file the way editors do: write a temporary file, rename it over the config.
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".gatehouse.toml.tmp");
        std::fs::write(&tmp, format!("{config}{}", self.listener_block())).expect("write tmp");
        std::fs::rename(&tmp, &self.config_path).expect("rename");
    }

    /// Rewrites the config file in place (truncate and write), as `echo > file` does.
    pub fn write_config_in_place(&self, config: &str) {
        std::fs::write(
            &self.config_path,
            format!("{config}{}", self.listener_block()),
        )
        .expect("write");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What gatehouse logged so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// A field of /proc/PID/status in KiB, such as "VmRSS" or "VmHWM".
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .expect("memory field")
    }

    pub fn signal(&self, sig: i32) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        // Whether it was still running when the test gave up: a failed request to a dead process and one
        // to a live process are different bugs.
        let before = self.child.try_wait();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let state = match before {
                Ok(None) => "still running when the test failed".to_string(),
                Ok(Some(status)) => format!("had exited before the test failed: {status}"),
                Err(e) => format!("state unknown: {e}"),
            };
            eprintln!(
                "--- gatehouse (pid {}) {state}; its log ---\n{}",
                self.child.id(),
                self.logs()
            );
        }
    }
}

/// Runs `gatehouse check -c FILE` on `config`; returns (success, stdout + stderr).
pub fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("g.toml");
    std::fs::write(&path, config).expect("write");
    check_file(&path)
}

pub fn check_file(path: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run check");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
