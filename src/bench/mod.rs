//! Benchmarks behind `sluice bench`: measured figures for the README and issue notes, never asserted
//! in tests (timing on shared CI machines is noise).
pub mod plan;
pub mod sim;

/// Resident memory of this process in bytes (Linux `/proc/self/status`), if it can be read.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
