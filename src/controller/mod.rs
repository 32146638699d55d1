//! Wiring: starts the controllers, the metrics and health endpoints, and shuts them down cleanly.
pub mod metrics;
pub mod rollouts;
pub mod server;
