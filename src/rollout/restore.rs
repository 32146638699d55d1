//! Putting a previous pod template back into a Rollout: the patch `sluice undo` and
//! `rollbackOnAbort` both write.
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

/// Replaces the whole template. A merge patch would keep labels and annotations the old template
/// did not have, so the result would match neither revision.
pub fn undo_patch(template: &PodTemplateSpec) -> Value {
    json!([{"op": "replace", "path": "/spec/template", "value": template}])
}
