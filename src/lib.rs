//! Sluice: progressive delivery for Kubernetes that closes the GitOps loop.
pub mod analysis;
pub mod api;
pub mod app;
pub mod cli;
pub mod controller;
pub mod gitsync;
pub mod memory;
pub mod rollout;
pub mod traffic;
