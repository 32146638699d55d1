//! Benchmarks behind `sluice bench`: measured figures for the README and issue notes, never asserted
//! in tests (timing on shared CI machines is noise).
pub mod abort;
pub mod fuzz;
pub mod plan;
pub mod rollouts;
pub mod sim;
pub mod steps;
pub mod support;
pub mod wave;

/// Resident memory of this process in bytes (Linux `/proc/self/status`), if it can be read.
pub fn resident_bytes() -> Option<u64> {
    support::parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}
