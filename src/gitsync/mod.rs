//! GitSync: fetch a Git revision, render it, validate all of it, apply it with server-side apply,
//! prune what left Git, and close the loop: a revision whose canary failed is blocked and the last
//! healthy one re-applied (optionally with a revert commit pushed to Git).
pub mod apply;
pub mod argocd;
pub mod depends_on;
pub mod git;
pub mod health;
pub mod manifest;
pub mod plan;
pub mod preserve;
pub mod reconcile;
pub mod render;
pub mod upstream;
pub mod webhook;

pub use crate::api::keys::GITSYNC_FIELD_MANAGER as FIELD_MANAGER;
pub use crate::api::keys::{
    GIT_REVISION_ANNOTATION, GITSYNC_LABEL, PROMOTE_ANNOTATION, PRUNE_ANNOTATION, REQUESTED_AT_ANNOTATION,
};

/// The label value that ties an object to its GitSync.
pub fn gitsync_label_value(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}
