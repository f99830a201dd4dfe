//! The process's own CPU, memory and file descriptors, read from `/proc/self` at scrape time, under the
//! names every Prometheus client uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`), so existing dashboards find them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct ProcessGauges {
    /// CPU time in milliseconds, shown in seconds.
    cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    rss: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    /// Bits of the last CPU reading (an f64 counter can only be added to).
    last_cpu: AtomicU64,
}

impl ProcessGauges {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "process_cpu",
            "User and system CPU time spent",
            Unit::Seconds,
            self.cpu.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            self.rss.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors",
            self.open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "The open file descriptor limit",
            self.max_fds.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            self.start_time.clone(),
        );
    }

    /// Reads `/proc/self`; a value that cannot be read keeps its last reading.
    pub(crate) fn refresh(&self) {
        let Some(stat) = read_stat() else { return };
        let cpu = stat.cpu_seconds;
        let last = f64::from_bits(self.last_cpu.swap(cpu.to_bits(), Relaxed));
        if cpu > last {
            self.cpu.inc_by(cpu - last);
        }
        crate::set_gauge(&self.rss, stat.rss_bytes);
        crate::set_gauge(&self.start_time, stat.start_unix);
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            crate::set_gauge(&self.open_fds, dir.count());
        }
        if let Some(max) = max_fds() {
            crate::set_gauge(&self.max_fds, max);
        }
    }
}

/// What `/proc/self/stat` and `status` say.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub start_unix: u64,
}

pub fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14, 15 (utime, stime) and 22 (starttime) of proc(5), here 11, 12 and 19 after the name.
    let ticks = clock_ticks();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let start_ticks: f64 = f.get(19)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Stat {
        cpu_seconds: (utime + stime) / ticks,
        rss_bytes: rss_kib * 1024,
        start_unix: boot_time().map_or(0, |b| b + (start_ticks / ticks) as u64),
    })
}

fn clock_ticks() -> f64 {
    // USER_HZ: the unit of /proc's CPU times, 100 on every Linux architecture (sysconf(_SC_CLK_TCK)).
    100.0
}

fn boot_time() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
