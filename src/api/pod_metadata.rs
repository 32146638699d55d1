//! Per-role pod extras shared by the strategies: ephemeral metadata (Argo's `canaryMetadata`,
//! `stableMetadata`, `activeMetadata`, `previewMetadata`) and `antiAffinity`.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Labels and annotations put on the pods of one role while they hold it, and taken off when the role
/// moves (Argo's ephemeral metadata).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Labels added to the pods (never the selector's or `sluice.dev/pod-template-hash`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadata {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Keep the new version's pods off the nodes of the old version's pods (set one; Argo's shape).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    /// A scheduling preference of this weight (1..100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// A hard rule: a node running an old pod is never chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// The weight of a preferred anti-affinity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    /// The preference's weight against the scheduler's other scores (1..100).
    #[serde(default)]
    pub weight: i32,
}

/// A required anti-affinity (no settings).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct RequiredAntiAffinity {}
