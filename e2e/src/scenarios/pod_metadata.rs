//! canaryMetadata / stableMetadata (Argo's ephemeral metadata) and antiAffinity: the pods of each role
//! carry its labels and annotations, moved in place on promotion; the canary's pods avoid the stable
//! pods' nodes.
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::context::{Ctx, at_step, canary_hash, ensure, phase, stable_hash};
use sluice::api::keys::POD_TEMPLATE_HASH_LABEL;
use sluice::api::rollout::RolloutPhase;

/// (labels "role", annotation "e2e.sluice.dev/note") of every pod of revision `hash`; errors when it
/// has no pods.
async fn pod_roles(ctx: &Ctx<'_>, hash: &str) -> anyhow::Result<Vec<(Option<String>, Option<String>)>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
        .await?;
    anyhow::ensure!(!listed.items.is_empty(), "no pods of {hash} yet");
    Ok(listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let labels = p.metadata.labels.unwrap_or_default();
            let annotations = p.metadata.annotations.unwrap_or_default();
            (
                labels.get("role").cloned(),
                annotations.get("e2e.sluice.dev/note").cloned(),
            )
        })
        .collect())
}

/// Waits until every pod of `hash` carries `role` and `note`.
async fn wait_roles(ctx: &Ctx<'_>, hash: &str, role: &str, note: Option<&str>) -> anyhow::Result<()> {
    let what = format!("every pod of {hash} labelled role={role}, note {note:?}");
    ctx.eventually(&what, || async {
        let roles = pod_roles(ctx, hash).await?;
        Ok(roles
            .iter()
            .all(|(r, n)| r.as_deref() == Some(role) && n.as_deref() == note)
            .then_some(()))
    })
    .await
}

pub async fn canary_metadata(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let rollout = |version: u32| {
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": ctx.target.workload().pod_template("web", version, 0.0),
                "strategy": {"canary": {
                    "canaryMetadata": {"labels": {"role": "canary"}, "annotations": {"e2e.sluice.dev/note": "under test"}},
                    "stableMetadata": {"labels": {"role": "stable"}},
                    "antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 50}},
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                }},
            },
        })
    };
    ctx.create(rollout(1)).await?;
    let v1 = ctx
        .wait_counts("web", "v1 Healthy with 4 of 4 available", |r, c| {
            phase(r) == Some(RolloutPhase::Healthy) && c == (4, 0, 4)
        })
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();
    wait_roles(ctx, &v1, "stable", None).await?;

    let template = ctx.target.workload().pod_template("web", 2, 0.0);
    ctx.patch_rollout("web", json!({"spec": {"template": template}}))
        .await?;
    let paused = ctx
        .wait_counts("web", "Paused at 50%: 2 stable, 2 canary, all available", |r, c| {
            at_step(r, 1) && c == (2, 2, 4) && phase(r) == Some(RolloutPhase::Paused)
        })
        .await?;
    let v2 = canary_hash(&paused).unwrap_or_default();
    wait_roles(ctx, &v2, "canary", Some("under test")).await?;
    wait_roles(ctx, &v1, "stable", None).await?;
    // The canary's pods prefer nodes without stable pods.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let canary_rs = replica_sets.get(&format!("web-{v2}")).await?;
    let terms = canary_rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .and_then(|s| s.affinity)
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    let avoids_stable = terms.iter().any(|t| {
        t.weight == 50
            && t.pod_affinity_term
                .label_selector
                .as_ref()
                .and_then(|s| s.match_expressions.as_ref())
                .is_some_and(|e| e.iter().any(|e| e.values.as_deref() == Some(&[v1.clone()][..])))
    });
    ensure(avoids_stable, || format!("canary anti-affinity terms: {terms:?}"))?;

    // `sluice promote`: v2 becomes stable; its pods lose the canary metadata and get stable's.
    ctx.patch_rollout_status("web", json!({"promotedStep": 1})).await?;
    ctx.wait_counts("web", "v2 Healthy with 4 of 4 after promote", |r, c| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).as_deref() == Some(v2.as_str()) && c == (4, 0, 4)
    })
    .await?;
    wait_roles(ctx, &v2, "stable", None).await?;
    Ok(())
}
