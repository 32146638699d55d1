//! Sluice: progressive delivery for Kubernetes that closes the GitOps loop.
pub mod sim;
