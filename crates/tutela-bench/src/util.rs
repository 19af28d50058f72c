//! Shared helpers: percentiles, machine facts, locating the release binary.

use std::path::PathBuf;
use std::time::Duration;

/// The `q`-quantile (0.0..=1.0) of a sample, by nearest rank.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Prints the facts a BENCHMARKS.md row needs.
pub fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    eprintln!("machine: {cores} cores, {cpu}");
}

/// The `tutela` binary next to this benchmark binary (same profile), or `TUTELA_BIN`.
pub fn tutela_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TUTELA_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let candidate = me.with_file_name("tutela");
    anyhow::ensure!(
        candidate.exists(),
        "{} not found: build it first with `cargo build --release -p tutela`, or set TUTELA_BIN",
        candidate.display()
    );
    Ok(candidate)
}

/// CPU time (user + system) of a process so far, in seconds, from `/proc/PID/stat` (100 ticks
/// per second); `pid` may be `"self"`. NaN when it cannot be read.
pub fn cpu_secs(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}
