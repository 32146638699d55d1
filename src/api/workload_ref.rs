//! `spec.workloadRef`: a Rollout that takes its pod template from an existing Deployment (Argo's
//! field), so a Deployment can be migrated without copying its template, and scaled down as the
//! Rollout takes over.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only workload kind a Rollout can reference.
pub const DEPLOYMENT_API_VERSION: &str = "apps/v1";
pub const DEPLOYMENT_KIND: &str = "Deployment";

/// The workload whose pod template the Rollout runs (in the Rollout's namespace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1` (the only one supported).
    #[serde(default)]
    pub api_version: String,
    /// `Deployment` (the only one supported).
    #[serde(default)]
    pub kind: String,
    /// Name of the Deployment.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub name: String,
    /// What happens to the Deployment's own pods: `never` (default), `onsuccess`, `progressively`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

impl WorkloadRef {
    /// scaleDown, or `never` when unset.
    pub fn scale_down_or_default(&self) -> WorkloadScaleDown {
        self.scale_down.unwrap_or_default()
    }
}

/// How the referenced Deployment is scaled as the Rollout takes over (Argo's values).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadScaleDown {
    /// Leave the Deployment alone.
    #[default]
    Never,
    /// Scale it to 0 once the Rollout is Healthy with every pod available.
    #[serde(rename = "onsuccess")]
    OnSuccess,
    /// Scale it down as the Rollout's pods become available.
    Progressively,
}
