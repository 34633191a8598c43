//! The machine a benchmark ran on: CPU, cores, memory, and how long the data directory's
//! filesystem takes to make a small write durable (the cost every acknowledged request of
//! both systems pays at least once).
//!
//! The flush probe writes 4 KiB at successive offsets of a preallocated, already synced file
//! and times each `pwrite + fdatasync`, so it measures the device's flush, not file growth.
//! Called by `main.rs` before the runs. Also here: [`free_port`], for the throw-away baseline
//! servers.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// Samples of the flush probe; the median is reported.
pub const FLUSH_SAMPLES: usize = 32;
const FLUSH_BLOCK_SIZE: usize = 4096;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    /// Median of `FLUSH_SAMPLES` 4 KiB `pwrite + fdatasync` in the data directory.
    pub flush_us_median: u64,
    pub flush_us_max: u64,
}

impl Machine {
    pub fn measure(data_dir: &Path) -> std::io::Result<Machine> {
        let (flush_us_median, flush_us_max) = flush_latency_us(data_dir)?;
        Ok(Machine {
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU".to_string()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: memory_bytes().unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            flush_us_median,
            flush_us_max,
        })
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}, 4 KiB write+fdatasync: median {} µs, max {} µs",
            self.cores,
            self.cpu,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.flush_us_median,
            self.flush_us_max
        )
    }
}

/// Median and max of timed 4 KiB `pwrite + fdatasync` in a temporary file in `dir`.
pub fn flush_latency_us(dir: &Path) -> std::io::Result<(u64, u64)> {
    let path = dir.join(format!("flush-probe-{}", std::process::id()));
    let result = (|| {
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let block = [0x5Au8; FLUSH_BLOCK_SIZE];
        for index in 0..FLUSH_SAMPLES {
            file.write_all_at(&block, (index * FLUSH_BLOCK_SIZE) as u64)?;
        }
        file.sync_all()?;
        let mut samples = Vec::with_capacity(FLUSH_SAMPLES);
        for index in 0..FLUSH_SAMPLES {
            let start = Instant::now();
            file.write_all_at(&block, (index * FLUSH_BLOCK_SIZE) as u64)?;
            file.sync_data()?;
            samples.push(start.elapsed().as_micros() as u64);
        }
        samples.sort_unstable();
        Ok((samples[samples.len() / 2], samples[samples.len() - 1]))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map(|name| name.trim().to_string())
}

fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A port of 127.0.0.1 nothing listens on right now (bound, then released for a server to
/// take).
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("kassa-bench-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (median, max) = flush_latency_us(&dir).expect("probe");
        assert!(median <= max);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let machine = Machine::measure(&std::env::temp_dir()).expect("machine");
        assert!(machine.cores >= 1);
        assert!(machine.line().contains("fdatasync"));
    }
}
