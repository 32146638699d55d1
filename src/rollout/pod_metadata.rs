//! Role metadata (Argo's activeMetadata / previewMetadata, and the canary's canaryMetadata /
//! stableMetadata): labels and annotations a role adds to the pods of the ReplicaSet that plays it.
//! Roles move between ReplicaSets without new pods, so a change is written to the ReplicaSet's pod
//! template (for pods still to come) and to the pods that exist; what the old role added is removed.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use crate::api::rollout::PodMetadata;

/// What to write to one ReplicaSet's pods: the metadata of its role now, and the keys other roles
/// added that it must lose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataChange {
    pub set: PodMetadata,
    pub remove_labels: BTreeSet<String>,
    pub remove_annotations: BTreeSet<String>,
}

impl MetadataChange {
    /// The change that gives pods `desired` and drops every other key any of `roles` adds.
    pub fn towards(desired: &PodMetadata, roles: &[&PodMetadata]) -> MetadataChange {
        let others = |keys: fn(&PodMetadata) -> Vec<&String>, wanted: &BTreeMap<String, String>| {
            roles
                .iter()
                .flat_map(|role| keys(role))
                .filter(|key| !wanted.contains_key(*key))
                .cloned()
                .collect::<BTreeSet<String>>()
        };
        MetadataChange {
            remove_labels: others(|m| m.labels.keys().collect(), &desired.labels),
            remove_annotations: others(|m| m.annotations.keys().collect(), &desired.annotations),
            set: desired.clone(),
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove_labels.is_empty() && self.remove_annotations.is_empty()
    }

    /// A JSON merge patch of an object's `metadata`. A removed key the pod template itself carries goes
    /// back to the template's value rather than away.
    pub fn merge_patch(&self, template: Option<&ObjectMeta>) -> Value {
        let own_labels = template.and_then(|m| m.labels.clone()).unwrap_or_default();
        let own_annotations = template.and_then(|m| m.annotations.clone()).unwrap_or_default();
        let section = |set: &BTreeMap<String, String>, remove: &BTreeSet<String>, own: &BTreeMap<String, String>| {
            let mut map = Map::new();
            for key in remove {
                map.insert(
                    key.clone(),
                    own.get(key).map_or(Value::Null, |v| Value::String(v.clone())),
                );
            }
            for (key, value) in set {
                map.insert(key.clone(), Value::String(value.clone()));
            }
            Value::Object(map)
        };
        let mut metadata = Map::new();
        if !self.set.labels.is_empty() || !self.remove_labels.is_empty() {
            metadata.insert(
                "labels".into(),
                section(&self.set.labels, &self.remove_labels, &own_labels),
            );
        }
        if !self.set.annotations.is_empty() || !self.remove_annotations.is_empty() {
            metadata.insert(
                "annotations".into(),
                section(&self.set.annotations, &self.remove_annotations, &own_annotations),
            );
        }
        Value::Object(metadata)
    }
}

/// Adds `metadata` to a pod template's metadata (for a ReplicaSet created in a role).
pub fn apply(meta: &mut ObjectMeta, metadata: &PodMetadata) {
    if !metadata.labels.is_empty() {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(metadata.labels.clone());
    }
    if !metadata.annotations.is_empty() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(metadata.annotations.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn metadata(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodMetadata {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        PodMetadata {
            labels: map(labels),
            annotations: map(annotations),
        }
    }

    #[test]
    fn a_role_change_sets_the_new_role_and_drops_the_old_one() {
        let active = metadata(&[("role", "active")], &[("lb", "on")]);
        let preview = metadata(&[("role", "preview"), ("shadow", "yes")], &[]);
        let change = MetadataChange::towards(&active, &[&active, &preview]);
        assert_eq!(change.remove_labels, BTreeSet::from(["shadow".to_string()]));
        assert!(change.remove_annotations.is_empty());
        assert_eq!(
            change.merge_patch(None),
            json!({"labels": {"role": "active", "shadow": null}, "annotations": {"lb": "on"}})
        );
        let none = MetadataChange::towards(&PodMetadata::default(), &[&active, &preview]);
        assert_eq!(
            none.merge_patch(None),
            json!({"labels": {"role": null, "shadow": null}, "annotations": {"lb": null}})
        );
        assert!(MetadataChange::towards(&PodMetadata::default(), &[]).is_empty());
    }

    #[test]
    fn a_removed_key_the_template_has_gets_the_template_value_back() {
        let preview = metadata(&[("tier", "preview")], &[]);
        let template = ObjectMeta {
            labels: Some(BTreeMap::from([("tier".to_string(), "web".to_string())])),
            ..ObjectMeta::default()
        };
        let change = MetadataChange::towards(&PodMetadata::default(), &[&preview]);
        assert_eq!(change.merge_patch(Some(&template)), json!({"labels": {"tier": "web"}}));
    }

    #[test]
    fn apply_adds_to_what_the_template_has() {
        let mut meta = ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..ObjectMeta::default()
        };
        apply(&mut meta, &metadata(&[("role", "active")], &[("note", "x")]));
        assert_eq!(meta.labels.unwrap().len(), 2);
        assert_eq!(meta.annotations.unwrap()["note"], "x");
    }
}
