//! GitSync: fetch a Git revision, render it, validate all of it, apply it with server-side apply,
//! prune what left Git, and close the loop: a revision whose canary failed is blocked and the last
//! healthy one re-applied (optionally with a revert commit pushed to Git).
pub mod apply;
pub mod argocd;
pub mod git;
pub mod health;
pub mod manifest;
pub mod plan;
pub mod preserve;
pub mod reconcile;
pub mod render;
pub mod webhook;

/// Label on every object a GitSync applied: `<namespace>.<name>` of the GitSync.
pub const GITSYNC_LABEL: &str = "sluice.dev/gitsync";
/// Annotation on every applied object (and on a Rollout: the commit that produced its template).
pub use crate::rollout::plan::GIT_REVISION_ANNOTATION;
/// Field manager of every GitSync apply.
pub const FIELD_MANAGER: &str = "sluice-gitsync";
/// Setting this annotation (to any new value, e.g. a timestamp) on a GitSync syncs it at once.
pub const REQUESTED_AT_ANNOTATION: &str = "sluice.dev/requested-at";
/// `sluice.dev/prune: disabled` on an object keeps it when it leaves Git.
pub const PRUNE_ANNOTATION: &str = "sluice.dev/prune";

/// The label value that ties an object to its GitSync.
pub fn gitsync_label_value(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}
