//! The simulator's Deployment controller, simplified: one ReplicaSet per pod template
//! (`<deployment>-<hash>`, labelled `pod-template-hash`), the current one at spec.replicas and older
//! ones at 0 at once (no surge-paced rolling update), and the Deployment's status summed from them.
//! Enough for a Deployment's pods to exist and go away as it is scaled (workloadRef.scaleDown).
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::api::{ApiServer, ListOptions, WriteOptions};
use crate::registry::ResourceType;
use crate::store::{ObjectKey, StoredObject};

const FIELD_MANAGER: &str = "sluice-sim-deployment-controller";
/// Kubernetes' own label (not Sluice's `sluice.dev/pod-template-hash`).
pub const HASH_LABEL: &str = "pod-template-hash";

/// One pass over every Deployment.
pub fn sync(api: &ApiServer, deployments: &ResourceType, replica_sets: &ResourceType) {
    let Ok(list) = api.list(deployments, None, &ListOptions::default()) else {
        return;
    };
    for stored in list.items.iter().filter(|d| !d.deleting) {
        sync_one(api, deployments, replica_sets, stored);
    }
}

/// Syncs only the named Deployments (those whose object or ReplicaSets changed).
pub fn sync_keys<'a>(
    api: &ApiServer,
    deployments: &ResourceType,
    replica_sets: &ResourceType,
    keys: impl IntoIterator<Item = &'a ObjectKey>,
) {
    for key in keys {
        let stored = api.store.lock().get(key);
        if let Some(stored) = stored.filter(|d| !d.deleting) {
            sync_one(api, deployments, replica_sets, &stored);
        }
    }
}

fn template_hash(template: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    template.to_string().hash(&mut hasher);
    format!("{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

/// ReplicaSets whose controller ownerReference is the Deployment.
fn owned_replica_sets(api: &ApiServer, deployment: &StoredObject) -> Vec<Value> {
    let txn = api.store.lock();
    txn.dependents_of(&deployment.uid)
        .iter()
        .filter(|k| k.resource.group == "apps" && k.resource.plural == "replicasets")
        .filter_map(|k| txn.get(k))
        .filter(|rs| !rs.deleting)
        .map(|rs| rs.to_value())
        .filter(|rs| super::workload::controller_uid(rs) == Some(deployment.uid.as_str()))
        .collect()
}

fn sync_one(api: &ApiServer, deployments: &ResourceType, replica_sets: &ResourceType, stored: &StoredObject) {
    let deployment = stored.to_value();
    let namespace = &stored.key.namespace;
    let name = &stored.key.name;
    let desired = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0);
    let template = deployment.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let current_name = format!("{name}-{hash}");
    let opts = WriteOptions {
        field_manager: FIELD_MANAGER.into(),
        ..Default::default()
    };
    let owned = owned_replica_sets(api, stored);
    if !owned.iter().any(|rs| rs["metadata"]["name"] == current_name.as_str()) {
        let mut template = template.clone();
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = deployment.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": current_name,
                "labels": template["metadata"]["labels"].clone(),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                    "uid": stored.uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": desired, "selector": selector, "template": template},
        });
        if let Err(e) = api.create(replica_sets, namespace, rs, &opts) {
            tracing::debug!(deployment = %name, error = %e.message, "could not create ReplicaSet");
        }
    }
    for rs in &owned {
        let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
        let target = if rs_name == current_name { desired } else { 0 };
        if rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(target) {
            let mut scaled = rs.clone();
            scaled["spec"]["replicas"] = json!(target);
            if let Some(meta) = scaled["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            if let Err(e) = api.update(replica_sets, namespace, rs_name, scaled, &opts) {
                tracing::debug!(replicaset = %rs_name, error = %e.message, "could not scale ReplicaSet");
            }
        }
    }
    let count = |rs: &Value, field: &str| {
        rs.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let sum = |field: &str| owned.iter().map(|rs| count(rs, field)).sum::<i64>();
    let updated = owned
        .iter()
        .find(|rs| rs["metadata"]["name"] == current_name.as_str())
        .map_or(0, |rs| count(rs, "replicas"));
    let available = sum("availableReplicas");
    let complete = updated == desired && sum("replicas") == desired && available >= desired;
    let status = json!({
        "observedGeneration": deployment.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": sum("replicas"),
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "conditions": [
            {"type": "Available", "status": if available >= desired { "True" } else { "False" },
             "reason": if available >= desired { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
            {"type": "Progressing", "status": "True",
             "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }},
        ],
    });
    if deployment.get("status") != Some(&status) {
        let mut updated = deployment;
        updated["status"] = status;
        if let Some(meta) = updated["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let opts = WriteOptions {
            subresource: Some("status".into()),
            ..opts
        };
        if let Err(e) = api.update(deployments, namespace, name, updated, &opts) {
            tracing::debug!(deployment = %name, error = %e.message, "could not write status");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{PatchBody, PatchKind};
    use crate::workload::tests::{eventually, opts, start};

    fn deployment(image: &str, replicas: u64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}},
            },
        })
    }

    #[tokio::test]
    async fn a_deployment_runs_pods_follows_its_template_and_scale() {
        let sim = start().await;
        let deployments = sim.api.resource("apps", "deployments").unwrap();
        let status = |field: &str| {
            sim.api.get(&deployments, "default", "web").unwrap().to_value()["status"][field]
                .as_i64()
                .unwrap_or(-1)
        };
        let patch = |body: Value| {
            let body = body.to_string();
            sim.api
                .patch(
                    &deployments,
                    "v1",
                    "default",
                    "web",
                    PatchBody::new(PatchKind::Merge, body.as_bytes()),
                    &opts(),
                )
                .unwrap();
        };
        sim.api
            .create(&deployments, "default", deployment("web:1", 2), &opts())
            .unwrap();
        eventually(Duration::from_secs(5), "2 available pods", || {
            (status("availableReplicas") == 2).then_some(())
        })
        .await;
        // A new template: a new ReplicaSet takes over, the old one goes to 0.
        patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}));
        eventually(Duration::from_secs(5), "2 updated, 2 in all", || {
            (status("updatedReplicas") == 2 && status("replicas") == 2 && status("availableReplicas") == 2)
                .then_some(())
        })
        .await;
        // Scaled to 0 (as workloadRef.scaleDown does): no pods.
        patch(json!({"spec": {"replicas": 0}}));
        eventually(Duration::from_secs(5), "no pods", || {
            (status("replicas") == 0).then_some(())
        })
        .await;
        let pods = sim.api.resource("", "pods").unwrap();
        let live = sim.api.list(&pods, Some("default"), &ListOptions::default()).unwrap();
        assert!(live.items.iter().all(|p| p.deleting), "{} pods left", live.items.len());
    }
}
