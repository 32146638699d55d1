//! Offline manifest tools for teams moving to Sluice: `sluice convert` turns Argo Rollouts manifests
//! into Sluice ones, `sluice lint` checks manifests as the API server and the controller would, without
//! a cluster (for CI). Both are pure functions over parsed YAML documents; reading files and printing
//! is the CLI's job (`app`).
use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

pub mod convert;
pub mod lint;
pub mod notifications;

/// Sluice's API group and version; Argo's group.
pub const SLUICE_API_VERSION: &str = "sluice.dev/v1alpha1";
pub const ARGO_GROUP: &str = "argoproj.io";

/// Largest manifest stream read (a Helm-rendered application is well below this).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Something to tell the user about one field of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based position of the document in the stream.
    pub document: usize,
    /// `Kind/name` of the object (`Kind/?` without a name).
    pub object: String,
    /// Dotted field path, e.g. `spec.strategy.canary.steps[1].experiment`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "document {} ({}): {}: {}",
            self.document, self.object, self.field, self.message
        )
    }
}

/// `Kind/name` of a document, for messages.
fn object_label(document: &Value) -> String {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// The group of `apiVersion` (`""` for the core group or when absent).
fn group_of(document: &Value) -> &str {
    let api_version = document.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The openAPIV3Schema of the Sluice CRD serving `kind`, if Sluice has that kind. Generated once.
fn sluice_schema(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        crate::api::crds::all()
            .into_iter()
            .filter_map(|crd| Some((crd.spec.names.kind.clone(), crate::api::crds::open_api_schema(&crd)?)))
            .collect()
    });
    schemas.iter().find(|(k, _)| k == kind).map(|(_, schema)| schema)
}
