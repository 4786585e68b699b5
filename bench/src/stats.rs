//! Throughput and latency summaries, and reading a process's memory.

use std::time::Duration;

/// Operations completed in `elapsed`, each with its latency in microseconds.
pub struct OpStats {
    pub ops: usize,
    pub elapsed: Duration,
    pub lat_us: Vec<u32>,
    /// CPU the client used meanwhile, percent of one core.
    pub client_cpu_pct: f64,
}

impl OpStats {
    pub fn new(elapsed: Duration, mut lat_us: Vec<u32>) -> OpStats {
        lat_us.sort_unstable();
        OpStats {
            ops: lat_us.len(),
            elapsed,
            lat_us,
            client_cpu_pct: f64::NAN,
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

/// CPU time this whole process (client and do-nothing server) has used, in
/// seconds, from /proc/self/stat (utime + stime, 100 ticks a second).
fn self_cpu_s() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// The client's CPU use over a phase, as a percentage of one core.
pub struct CpuMeter {
    cpu: f64,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            cpu: self_cpu_s(),
            wall: std::time::Instant::now(),
        }
    }

    pub fn pct(&self) -> f64 {
        (self_cpu_s() - self.cpu) / self.wall.elapsed().as_secs_f64() * 100.0
    }
}
