#![allow(clippy::unwrap_used)] // a test: a failed step is a failed test
//! Two processes that both find a lease expired race to take it over; exactly one may win, every time.
//! The test runs itself as the two racers (this same binary, told by an environment variable).

use gatehouse_acme::storage::{FileStorage, Storage};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ROUNDS: usize = 40;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// One racer: wait for the start time, try the lock once, say whether it won.
fn racer(dir: &str, start_ms: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = FileStorage::open(dir).unwrap();
    while now_ms() < start_ms {
        std::hint::spin_loop();
    }
    let won = rt
        .block_on(storage.lock("race.test", Duration::from_secs(30)))
        .unwrap()
        .is_some();
    println!("RACER {}", if won { "won" } else { "lost" });
}

#[test]
fn two_processes_racing_for_a_stale_lease_never_both_win() {
    if let (Ok(dir), Ok(start)) = (
        std::env::var("LOCK_RACE_DIR"),
        std::env::var("LOCK_RACE_START"),
    ) {
        return racer(&dir, start.parse().unwrap());
    }
    let exe = std::env::current_exe().unwrap();
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        // A lease left by a holder that died: expired long ago.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join("locks"))
                .unwrap();
        }
        std::fs::write(dir.join("locks/race.test.lock"), "dead-holder\n1\n").unwrap();
        let start = now_ms() + 150;
        let racers: Vec<_> = (0..2)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "two_processes_racing_for_a_stale_lease_never_both_win",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("LOCK_RACE_DIR", &dir)
                    .env("LOCK_RACE_START", start.to_string())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let racers: Vec<_> = racers
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let said: Vec<String> = racers
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .collect();
        let won = said.iter().filter(|s| s.contains("RACER won")).count();
        let lost = said.iter().filter(|s| s.contains("RACER lost")).count();
        assert_eq!((won, lost), (1, 1), "round {round}: {said:?}");
        let text = std::fs::read_to_string(dir.join("locks/race.test.lock")).unwrap_or_default();
        assert!(
            !text.is_empty() && !text.starts_with("dead-holder"),
            "round {round}: {text:?}"
        );
    }
}
