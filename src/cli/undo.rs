//! `sluice undo`: put an earlier revision's pod template back into the Rollout. The ReplicaSets are
//! the revision history (like Deployments): each keeps the template it was created from, its hash
//! label and its revision number. The controller then sees a known template and rolls back to it.
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::actions::{self, Change, Planned};
use super::{Error, Result, Target};
use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::Rollout;

pub use crate::api::keys::REVISION_ANNOTATION;
use crate::rollout::restore::undo_patch;

/// One revision of a Rollout, from its ReplicaSet.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// Name of the ReplicaSet.
    pub name: String,
    pub number: i64,
    pub hash: String,
    pub template: PodTemplateSpec,
}

/// Whether an object's owner references name the rollout (by uid, so a deleted and recreated
/// Rollout of the same name does not adopt its predecessor's history).
pub fn owned_by(rollout: &Rollout, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    let Some(uid) = rollout.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references.iter().flatten().any(|owner| owner.uid == uid)
}

/// The revision number of a ReplicaSet, from its annotation.
pub fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .trim()
        .parse()
        .ok()
}

/// The hash label of a ReplicaSet.
pub fn hash_of(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .labels
        .as_ref()?
        .get(POD_TEMPLATE_HASH_LABEL)
        .map(String::as_str)
}

/// The rollout's revisions, oldest first. ReplicaSets without a revision, hash or template are skipped.
pub fn revisions(rollout: &Rollout, replica_sets: &[ReplicaSet]) -> Vec<Revision> {
    let mut revisions: Vec<Revision> = replica_sets
        .iter()
        .filter(|rs| owned_by(rollout, &rs.metadata))
        .filter_map(|rs| {
            Some(Revision {
                name: rs.metadata.name.clone()?,
                number: revision_of(rs)?,
                hash: hash_of(rs)?.to_string(),
                template: rs.spec.as_ref()?.template.clone()?,
            })
        })
        .collect();
    revisions.sort_by_key(|r| r.number);
    revisions
}

fn list(revisions: &[Revision], current_hash: &str) -> String {
    revisions
        .iter()
        .map(|r| {
            if r.hash == current_hash {
                format!("{} (current)", r.number)
            } else {
                r.number.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The revision to roll back to: `to`, or the newest one older than the current revision.
pub fn choose<'r>(
    rollout_name: &str,
    revisions: &'r [Revision],
    current_hash: &str,
    to: Option<i64>,
) -> Result<&'r Revision> {
    let available = || {
        if revisions.is_empty() {
            "it has no revisions yet".to_string()
        } else {
            format!("available revisions: {}", list(revisions, current_hash))
        }
    };
    if let Some(number) = to {
        let Some(revision) = revisions.iter().find(|r| r.number == number) else {
            return Err(Error::Invalid(format!(
                "rollout \"{rollout_name}\" has no revision {number}; {}",
                available()
            )));
        };
        if revision.hash == current_hash {
            return Err(Error::Refused(format!(
                "rollout \"{rollout_name}\" already runs revision {number}"
            )));
        }
        return Ok(revision);
    }
    // Without a ReplicaSet for the current template yet, every other revision counts as older.
    let current = revisions.iter().find(|r| r.hash == current_hash).map(|r| r.number);
    revisions
        .iter()
        .filter(|r| r.hash != current_hash && current.is_none_or(|c| r.number < c))
        .max_by_key(|r| r.number)
        .ok_or_else(|| {
            Error::Refused(format!(
                "rollout \"{rollout_name}\" has no earlier revision to roll back to; {}",
                available()
            ))
        })
}

/// A revision's template as it goes back into the Rollout: without the hash label, which the
/// controller adds to the ReplicaSets it creates and which is not part of the user's template.
pub fn rollback_template(revision: &Revision) -> PodTemplateSpec {
    let mut template = revision.template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    template
}

/// `sluice undo [--to-revision N]`.
pub fn plan_undo(rollout: &Rollout, replica_sets: &[ReplicaSet], to: Option<i64>) -> Result<Planned> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let revisions = revisions(rollout, replica_sets);
    let revision = choose(name, &revisions, &crate::rollout::plan::current_hash(rollout), to)?;
    Ok(Planned {
        change: Some(Change::Json(undo_patch(&rollback_template(revision)))),
        message: format!(
            "rollout \"{name}\" rolled back to revision {} ({})",
            revision.number, revision.hash
        ),
    })
}

pub async fn undo(target: &Target, name: &str, to: Option<i64>) -> Result<String> {
    let rollout = target.get_rollout(name).await?;
    let replica_sets = super::get::replica_sets(target, &rollout).await?;
    let planned = plan_undo(&rollout, &replica_sets, to)?;
    if let Some(change) = &planned.change {
        actions::apply(target, name, change).await?;
    }
    Ok(planned.message)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use serde_json::{Value, json};

    use super::*;
    use crate::rollout::hash::pod_template_hash;

    pub const UID: &str = "uid-web";

    pub fn rollout() -> Rollout {
        let mut rollout = Rollout::example("web", 3, vec![]).with_image("example.com/web:3");
        rollout.metadata.uid = Some(UID.into());
        rollout
    }

    /// The ReplicaSet the controller would have created for `image` at `revision`.
    pub fn replica_set(owner_uid: &str, image: &str, revision: i64) -> ReplicaSet {
        let mut template = Rollout::example("web", 3, vec![])
            .with_image(image)
            .spec
            .template
            .spec();
        let hash = pod_template_hash(&serde_json::to_value(&template).unwrap());
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{hash}")),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(POD_TEMPLATE_HASH_LABEL.to_string(), hash)])),
                annotations: Some(BTreeMap::from([(
                    REVISION_ANNOTATION.to_string(),
                    revision.to_string(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "sluice.dev/v1alpha1".into(),
                    kind: "Rollout".into(),
                    name: "web".into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                template: Some(template),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn history() -> Vec<ReplicaSet> {
        vec![
            replica_set(UID, "example.com/web:1", 1),
            replica_set(UID, "example.com/web:3", 3),
            replica_set(UID, "example.com/web:2", 2),
            // Same name, earlier incarnation of the Rollout: not its history.
            replica_set("uid-old", "example.com/web:0", 7),
        ]
    }

    fn image_of(patch: &Value) -> &Value {
        &patch[0]["value"]["spec"]["containers"][0]["image"]
    }

    #[test]
    fn undo_defaults_to_the_revision_before_the_current() {
        let planned = plan_undo(&rollout(), &history(), None).unwrap();
        let Some(Change::Json(patch)) = &planned.change else {
            panic!("a JSON patch")
        };
        assert_eq!(patch[0]["op"], "replace");
        assert_eq!(patch[0]["path"], "/spec/template");
        assert_eq!(image_of(patch), "example.com/web:2");
        assert!(
            planned
                .message
                .starts_with("rollout \"web\" rolled back to revision 2 (")
        );
    }

    #[test]
    fn undo_removes_the_hash_label_so_the_template_hashes_as_before() {
        let planned = plan_undo(&rollout(), &history(), Some(1)).unwrap();
        let Some(Change::Json(patch)) = planned.change else {
            panic!("a JSON patch")
        };
        let template = &patch[0]["value"];
        assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
        let original = Rollout::example("web", 3, vec![])
            .with_image("example.com/web:1")
            .spec
            .template;
        assert_eq!(
            pod_template_hash(template),
            pod_template_hash(&serde_json::to_value(original).unwrap())
        );
    }

    #[test]
    fn after_an_undo_the_older_revision_is_next() {
        // Undo to 2 made it the newest revision (4); the next undo goes to 3.
        let rollout = rollout().with_image("example.com/web:2");
        let mut history = history();
        history[2] = replica_set(UID, "example.com/web:2", 4);
        let planned = plan_undo(&rollout, &history, None).unwrap();
        let Some(Change::Json(patch)) = planned.change else {
            panic!("a JSON patch")
        };
        assert_eq!(image_of(&patch), "example.com/web:3");
    }

    #[test]
    fn a_missing_revision_lists_the_available_ones() {
        let e = plan_undo(&rollout(), &history(), Some(7)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rollout \"web\" has no revision 7; available revisions: 1, 2, 3 (current)"
        );
        let e = plan_undo(&rollout(), &history(), Some(3)).unwrap_err();
        assert_eq!(e.to_string(), "rollout \"web\" already runs revision 3");
        let e = plan_undo(&rollout(), &history()[1..2], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rollout \"web\" has no earlier revision to roll back to; available revisions: 3 (current)"
        );
        let e = plan_undo(&rollout(), &[], None).unwrap_err();
        assert!(e.to_string().ends_with("it has no revisions yet"), "{e}");
    }

    #[test]
    fn without_a_current_replica_set_the_newest_other_revision_is_chosen() {
        let rollout = rollout().with_image("example.com/web:9");
        let planned = plan_undo(&rollout, &history(), None).unwrap();
        let Some(Change::Json(patch)) = planned.change else {
            panic!("a JSON patch")
        };
        assert_eq!(image_of(&patch), "example.com/web:3");
    }
}
