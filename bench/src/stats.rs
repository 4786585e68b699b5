//! Throughput and latency summaries, and reading a process's memory.

use std::time::Duration;

/// Operations completed in `elapsed`, each with its latency in microseconds.
pub struct OpStats {
    pub ops: usize,
    pub elapsed: Duration,
    pub lat_us: Vec<u32>,
}

impl OpStats {
    pub fn new(elapsed: Duration, mut lat_us: Vec<u32>) -> OpStats {
        lat_us.sort_unstable();
        OpStats {
            ops: lat_us.len(),
            elapsed,
            lat_us,
        }
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.lat_us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.lat_us.len()) - 1;
        self.lat_us[i] as f64 / 1000.0
    }
}

pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// MB/s with MB = 10^6 bytes.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// A `VmXXX:` line of /proc/PID/status, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}
