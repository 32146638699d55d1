//! Sluice: progressive delivery for Kubernetes that closes the GitOps loop.
#![allow(clippy::result_large_err)] // ApiError is only built on failure paths; boxing it buys nothing here.
pub mod analysis;
pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod duration;
pub mod e2e;
pub mod gitsync;
pub mod memory;
pub mod rollout;
pub mod sim;
pub mod traffic;
