//! The rollout engine: pure planning (observed state → actions) apart from the I/O that observes and
//! applies, so the hard decisions are testable in microseconds.
pub mod analysis_runs;
pub mod anti_affinity;
pub mod coalesce;
pub mod expectations;
pub mod experiments;
pub mod hash;
pub mod owned;
pub mod plan;
pub mod pod_metadata;
pub mod reconcile;
pub mod replicas;
pub mod restore;
pub mod status;
pub mod validate;
pub mod workload_ref;
