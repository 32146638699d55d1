//! Sluice: progressive delivery for Kubernetes that closes the GitOps loop.
//!
//! Dependencies point one way: `api` (types, wire keys, durations) ← `rollout`, `analysis`, `traffic`,
//! `gitsync` (domain; they report through `observe` and build clients with `client`) ← `controller`
//! (wiring, leader election, metrics, health) ← `app` (commands). The user CLI (`cli`) uses `api` and
//! `rollout`.
pub mod analysis;
pub mod api;
pub mod app;
pub mod bounds;
pub mod cli;
pub mod client;
pub mod controller;
pub mod dashboard;
pub mod events;
pub mod experiment;
pub mod gitsync;
pub mod memory;
pub mod merge_patch;
pub mod migrate;
pub mod notify;
pub mod observe;
pub mod rollout;
pub mod traffic;
