//! Ephemeral pod metadata (Argo's `canaryMetadata`/`stableMetadata`, and blue-green's
//! `activeMetadata`/`previewMetadata`): labels and annotations the pods of a role carry while they
//! hold it. Role-agnostic: a strategy names its roles as (pod-template hash, metadata) pairs and gets
//! back which ReplicaSets must change, and from what to what.
//!
//! What a ReplicaSet carries is recorded on it (annotation `sluice.dev/pod-metadata`, the applied
//! [`PodMetadata`] as JSON), so a role change removes exactly the keys it added, and the keys are never
//! ones of the template itself ([`check`] refuses those), so removing them cannot take a label the
//! template set.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value, json};

use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::pod_metadata::PodMetadata;
use crate::rollout::plan::ObservedReplicaSet;
use crate::rollout::validate::SpecError;

pub use crate::api::keys::POD_METADATA_ANNOTATION;

/// Most labels plus annotations one role may add.
pub const MAX_ENTRIES: usize = 64;
/// Kubernetes' limit on the total size of an object's annotations.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// A ReplicaSet whose pods must move from the metadata they carry to their role's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetadataChange {
    pub replica_set: String,
    pub hash: String,
    pub from: PodMetadata,
    pub to: PodMetadata,
}

/// The changes that give each live ReplicaSet its role's metadata. `roles` are (hash, metadata) in
/// priority order (a hash holding two roles gets the first); a ReplicaSet of no role carries none.
pub fn changes(replica_sets: &[ObservedReplicaSet], roles: &[(&str, Option<&PodMetadata>)]) -> Vec<PodMetadataChange> {
    replica_sets
        .iter()
        .filter(|rs| !rs.deleting)
        .filter_map(|rs| {
            let to = roles
                .iter()
                .find(|(hash, _)| *hash == rs.hash)
                .and_then(|(_, metadata)| *metadata)
                .cloned()
                .unwrap_or_default();
            let from = rs.pod_metadata.clone().unwrap_or_default();
            (from != to).then(|| PodMetadataChange {
                replica_set: rs.name.clone(),
                hash: rs.hash.clone(),
                from,
                to,
            })
        })
        .collect()
}

/// The merge patch of a pod's (or pod template's) `metadata` that takes it from `from` to `to`:
/// keys of `from` missing in `to` are removed (null), the rest set.
pub fn metadata_patch(from: &PodMetadata, to: &PodMetadata) -> Value {
    let part = |old: &BTreeMap<String, String>, new: &BTreeMap<String, String>| {
        let mut patch = Map::new();
        for key in old.keys().filter(|k| !new.contains_key(*k)) {
            patch.insert(key.clone(), Value::Null);
        }
        for (key, value) in new {
            patch.insert(key.clone(), Value::String(value.clone()));
        }
        patch
    };
    let mut patch = Map::new();
    let labels = part(&from.labels, &to.labels);
    if !labels.is_empty() {
        patch.insert("labels".into(), Value::Object(labels));
    }
    let annotations = part(&from.annotations, &to.annotations);
    if !annotations.is_empty() {
        patch.insert("annotations".into(), Value::Object(annotations));
    }
    Value::Object(patch)
}

/// The merge patch of a ReplicaSet: its pod template's metadata and the record of what it carries.
pub fn replica_set_patch(change: &PodMetadataChange) -> Value {
    let record = if change.to.is_empty() {
        Value::Null
    } else {
        Value::String(serde_json::to_string(&change.to).unwrap_or_default())
    };
    json!({
        "metadata": {"annotations": {POD_METADATA_ANNOTATION: record}},
        "spec": {"template": {"metadata": metadata_patch(&change.from, &change.to)}},
    })
}

/// Adds `metadata` to a pod template (a ReplicaSet being created for a role).
pub fn apply_to_template(template: &mut PodTemplateSpec, metadata: &PodMetadata) {
    let meta = template.metadata.get_or_insert_with(Default::default);
    if !metadata.labels.is_empty() {
        let labels = meta.labels.get_or_insert_with(Default::default);
        labels.extend(metadata.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if !metadata.annotations.is_empty() {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.extend(metadata.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// The recorded metadata of a ReplicaSet (its `sluice.dev/pod-metadata` annotation); None when absent
/// or unreadable (then nothing is removed that it may carry: a hand-edited record is not trusted).
pub fn recorded(annotations: &BTreeMap<String, String>) -> Option<PodMetadata> {
    serde_json::from_str(annotations.get(POD_METADATA_ANNOTATION)?).ok()
}

/// Removes recorded ephemeral metadata from a template (undo restores the template as written).
pub fn strip_from_template(template: &mut PodTemplateSpec, metadata: &PodMetadata) {
    let Some(meta) = template.metadata.as_mut() else { return };
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| !metadata.labels.contains_key(k));
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| !metadata.annotations.contains_key(k));
    }
}

/// Problems with one role's metadata at `field` (e.g. `spec.strategy.canary.canaryMetadata`): keys and
/// values by Kubernetes' rules, bounded sizes, and no key the pod template (or the selector) already
/// has — the role's keys come and go, the template's must stay.
pub fn check(field: &str, metadata: &PodMetadata, template: &PodTemplateSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut add = |path: String, message: String| errors.push(SpecError { field: path, message });
    if metadata.labels.len() + metadata.annotations.len() > MAX_ENTRIES {
        add(
            field.to_string(),
            format!("at most {MAX_ENTRIES} labels and annotations"),
        );
        return errors;
    }
    let template_meta = template.metadata.clone().unwrap_or_default();
    let template_labels = template_meta.labels.unwrap_or_default();
    let template_annotations = template_meta.annotations.unwrap_or_default();
    for (key, value) in &metadata.labels {
        let path = format!("{field}.labels[{}]", shorten(key));
        if let Err(message) = qualified_name(key) {
            add(path, message);
        } else if let Err(message) = label_value(value) {
            add(path, message);
        } else if key == POD_TEMPLATE_HASH_LABEL || template_labels.contains_key(key) {
            add(
                path,
                "is a label of the pod template (or Sluice's): it cannot change with the role".into(),
            );
        }
    }
    let mut bytes = 0usize;
    for (key, value) in &metadata.annotations {
        let path = format!("{field}.annotations[{}]", shorten(key));
        bytes = bytes.saturating_add(key.len()).saturating_add(value.len());
        if let Err(message) = qualified_name(key) {
            add(path, message);
        } else if template_annotations.contains_key(key) {
            add(
                path,
                "is an annotation of the pod template: it cannot change with the role".into(),
            );
        }
    }
    if bytes > MAX_ANNOTATIONS_BYTES {
        add(
            format!("{field}.annotations"),
            format!("{bytes} bytes, more than Kubernetes allows ({MAX_ANNOTATIONS_BYTES})"),
        );
    }
    errors
}

/// A label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid {
            return Err("the key's prefix must be a DNS subdomain (lowercase, at most 253)".into());
        }
    }
    if !is_name(name) {
        return Err("the key's name must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at both ends".into());
    }
    Ok(())
}

/// A label value: empty, or a name as in a key.
fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name(value) {
        Ok(())
    } else {
        Err(format!(
            "value {:?}: at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends",
            shorten(value)
        ))
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A user's key or value in a message, cut at 64 characters.
fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use proptest::prelude::*;

    fn metadata(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodMetadata {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        PodMetadata {
            labels: map(labels),
            annotations: map(annotations),
        }
    }

    fn rs(name: &str, hash: &str, carried: Option<PodMetadata>) -> ObservedReplicaSet {
        ObservedReplicaSet {
            name: name.into(),
            hash: hash.into(),
            revision: 1,
            spec_replicas: 1,
            pods: 1,
            ready: 1,
            available: 1,
            git_revision: None,
            created_at: None,
            deleting: false,
            scale_down_at: None,
            pod_metadata: carried,
        }
    }

    #[test]
    fn promotion_moves_the_canary_from_canary_to_stable_metadata() {
        let canary = metadata(&[("role", "canary")], &[("note", "new")]);
        let stable = metadata(&[("role", "stable")], &[]);
        // Mid-rollout: each ReplicaSet carries its role's metadata; nothing to do.
        let live = [
            rs("web-a", "a", Some(stable.clone())),
            rs("web-b", "b", Some(canary.clone())),
        ];
        assert!(changes(&live, &[("b", Some(&canary)), ("a", Some(&stable))]).is_empty());
        // Promoted: b is stable (canary metadata off, stable on), a has no role any more.
        let moved = changes(&live, &[("b", Some(&stable))]);
        assert_eq!(moved.len(), 2);
        assert_eq!(
            (moved[0].replica_set.as_str(), &moved[0].to),
            ("web-a", &PodMetadata::default())
        );
        assert_eq!((moved[1].replica_set.as_str(), &moved[1].to), ("web-b", &stable));
        assert_eq!(
            metadata_patch(&moved[1].from, &moved[1].to),
            json!({"labels": {"role": "stable"}, "annotations": {"note": null}})
        );
        assert_eq!(
            replica_set_patch(&moved[0])["metadata"]["annotations"][POD_METADATA_ANNOTATION],
            Value::Null
        );
    }

    #[test]
    fn keys_values_sizes_and_template_keys_are_checked() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: None,
        };
        let ok = metadata(
            &[("example.com/role", "canary"), ("tier", "")],
            &[("note", "any text at all")],
        );
        assert!(check("m", &ok, &template).is_empty());
        let bad = metadata(
            &[
                ("app", "x"),
                ("Bad_Prefix/x", "y"),
                ("ok", "no spaces"),
                (POD_TEMPLATE_HASH_LABEL, "z"),
            ],
            &[("-x", "y")],
        );
        let fields: Vec<String> = check("m", &bad, &template).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "m.labels[Bad_Prefix/x]",
                "m.labels[app]",
                "m.labels[ok]",
                "m.labels[sluice.dev/pod-template-hash]",
                "m.annotations[-x]"
            ]
        );
        let huge = PodMetadata {
            annotations: [("big".to_string(), "x".repeat(300 * 1024))].into(),
            ..Default::default()
        };
        assert_eq!(check("m", &huge, &template)[0].field, "m.annotations");
        let many = PodMetadata {
            labels: (0..65).map(|i| (format!("k{i}"), "v".to_string())).collect(),
            ..Default::default()
        };
        assert_eq!(check("m", &many, &template).len(), 1);
    }

    #[test]
    fn the_record_round_trips_and_a_template_is_restored_without_it() {
        let carried = metadata(&[("role", "stable")], &[("note", "x")]);
        let change = PodMetadataChange {
            replica_set: "web-a".into(),
            hash: "a".into(),
            from: PodMetadata::default(),
            to: carried.clone(),
        };
        let record = replica_set_patch(&change)["metadata"]["annotations"][POD_METADATA_ANNOTATION]
            .as_str()
            .unwrap()
            .to_string();
        let annotations = BTreeMap::from([(POD_METADATA_ANNOTATION.to_string(), record)]);
        assert_eq!(recorded(&annotations), Some(carried.clone()));
        let mut template = PodTemplateSpec::default();
        apply_to_template(&mut template, &carried);
        assert_eq!(
            template.metadata.as_ref().unwrap().labels.as_ref().unwrap()["role"],
            "stable"
        );
        strip_from_template(&mut template, &carried);
        assert!(template.metadata.unwrap().labels.unwrap().is_empty());
    }

    fn small_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[a-d]", "[xy]", 0..4)
    }

    proptest! {
        /// Applying the patch to pods carrying `from` (plus the template's own keys) gives exactly
        /// the template's keys plus `to`.
        #[test]
        fn the_patch_takes_any_carried_metadata_to_the_roles(
            from_labels in small_map(), to_labels in small_map(),
            from_annotations in small_map(), to_annotations in small_map(),
        ) {
            let from = PodMetadata { labels: from_labels, annotations: from_annotations };
            let to = PodMetadata { labels: to_labels, annotations: to_annotations };
            let own = BTreeMap::from([("template-key".to_string(), "v".to_string())]);
            let mut pod = json!({"labels": own.clone(), "annotations": own.clone()});
            for (k, v) in &from.labels { pod["labels"][k] = json!(v); }
            for (k, v) in &from.annotations { pod["annotations"][k] = json!(v); }
            let patched = sluice_sim::patch::merge_patch(&pod, &metadata_patch(&from, &to)).unwrap();
            let mut expected_labels = own.clone();
            expected_labels.extend(to.labels.clone());
            let mut expected_annotations = own;
            expected_annotations.extend(to.annotations.clone());
            prop_assert_eq!(&patched["labels"], &json!(expected_labels));
            prop_assert_eq!(&patched["annotations"], &json!(expected_annotations));
        }
    }
}
