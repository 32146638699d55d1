//! The duration grammar of every spec field and flag (`500ms`, `30s`, `5m`, `1h30m`, bare seconds),
//! kept in its own crate so the simulator parses its annotations the same way.
pub use sluice_duration::{InvalidDuration, parse};
