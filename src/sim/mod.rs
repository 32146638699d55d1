//! Kubernetes API simulator: serves the API a controller and kubectl use, runs ReplicaSets → Pods and
//! splits simulated traffic by weights, so every part of Sluice can be tested, demonstrated and
//! benchmarked without a cluster.
pub mod patch;
pub mod registry;
pub mod status;
pub mod store;
pub mod structure;
pub mod table;
