//! The Experiment controller: ReplicaSets from one or more pod templates run side by side, judged by
//! AnalysisRuns (Argo Rollouts' Experiment). The decisions are pure ([`plan`]); [`reconcile`] observes,
//! plans and applies.
#[cfg(test)]
pub mod fixtures;
pub mod names;
pub mod plan;
pub mod reconcile;
pub mod validate;
