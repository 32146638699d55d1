//! `spec.workloadRef`: Argo's own `examples/rollout-template-ref.yaml` (only the API group changed)
//! runs Healthy and follows its Deployment's template; a missing Deployment is InvalidSpec until it
//! appears; `scaleDown: progressively` and `onsuccess` scale a migrated Deployment to 0.
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::context::{Ctx, canary_hash, ensure, phase, stable_hash};
use sluice::api::conditions::{INVALID_SPEC, find};
use sluice::api::rollout::{Rollout, RolloutPhase};

/// argoproj/argo-rollouts `examples/rollout-template-ref.yaml`, as vendored in the Argo corpus.
const ARGO_TEMPLATE_REF: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/argo-rollouts/examples/rollout-template-ref.yaml"
));

const NAME: &str = "rollout-ref-deployment";

fn deployments(ctx: &Ctx<'_>) -> Api<Deployment> {
    Api::namespaced(ctx.client.clone(), &ctx.namespace)
}

async fn patch_deployment(ctx: &Ctx<'_>, name: &str, patch: Value) -> anyhow::Result<()> {
    deployments(ctx)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// The Deployment's spec.replicas.
async fn deployment_replicas(ctx: &Ctx<'_>, name: &str) -> anyhow::Result<i32> {
    let deployment = deployments(ctx).get(name).await?;
    Ok(deployment.spec.and_then(|s| s.replicas).unwrap_or(1))
}

fn invalid_message(rollout: &Rollout) -> Option<String> {
    let status = rollout.status.as_ref()?;
    find(&status.conditions, INVALID_SPEC)
        .filter(|c| c.is_true())
        .and_then(|c| c.message.clone())
}

pub async fn workload_ref(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    // Given Argo's example, as Argo ships it.
    for document in serde_saphyr::from_multiple::<Value>(
        &ARGO_TEMPLATE_REF.replace("apiVersion: argoproj.io/", "apiVersion: sluice.dev/"),
    )? {
        ctx.create(document).await?;
    }
    let v1 = ctx
        .wait_counts(
            NAME,
            "Argo's template-ref example Healthy with 5 of 5 available",
            |r, c| phase(r) == Some(RolloutPhase::Healthy) && c == (5, 0, 5),
        )
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();
    ensure(deployment_replicas(ctx, NAME).await? == 0, || {
        "scaleDown never: the Deployment was scaled".into()
    })?;

    // When the Deployment's template changes, a canary of it starts: 20% (1 of 5), then the timed pause.
    let green = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "rollouts-demo", "image": "argoproj/rollouts-demo:green"}]}}}});
    patch_deployment(ctx, NAME, green).await?;
    ctx.wait_counts(
        NAME,
        "a canary of the Deployment's new template at 20%: 4 stable, 1 canary",
        |r, c| canary_hash(r).is_some_and(|h| h != v1) && (c.0, c.1) == (4, 1),
    )
    .await?;
    ctx.wait_counts(
        NAME,
        "the new template Healthy with 5 of 5 after the 10s pause",
        |r, c| phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).is_some_and(|h| h != v1) && c == (5, 0, 5),
    )
    .await?;

    // A Rollout whose Deployment does not exist yet is InvalidSpec, and recovers when it appears.
    let legacy = "legacy";
    let template = ctx.target.workload().pod_template(legacy, 1, 0.0);
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": legacy},
        "spec": {
            "replicas": 4,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": legacy, "scaleDown": "progressively"},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }))
    .await?;
    let missing = ctx
        .wait_rollout(legacy, "InvalidSpec while Deployment legacy is missing", |r| {
            invalid_message(r).is_some()
        })
        .await?;
    let message = invalid_message(&missing).unwrap_or_default();
    ensure(
        message.contains("spec.workloadRef.name") && message.contains("not found"),
        || format!("InvalidSpec message: {message}"),
    )?;

    // Migrating a running Deployment progressively: it gives up its pods as the Rollout's come up.
    ctx.create(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": legacy},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": legacy}}, "template": template},
    }))
    .await?;
    ctx.wait_counts(
        legacy,
        "legacy Healthy with 4 of 4 once its Deployment exists",
        |r, c| phase(r) == Some(RolloutPhase::Healthy) && invalid_message(r).is_none() && c == (4, 0, 4),
    )
    .await?;
    ctx.eventually(
        "scaleDown progressively: Deployment legacy at 0, its pods gone",
        || async {
            let deployment = deployments(ctx).get(legacy).await?;
            let pods = deployment.status.and_then(|s| s.replicas).unwrap_or(0);
            Ok((deployment_replicas(ctx, legacy).await? == 0 && pods == 0).then_some(()))
        },
    )
    .await?;

    // onsuccess: a Deployment scaled up again by hand goes back to 0 while the Rollout is Healthy.
    ctx.patch_rollout(legacy, json!({"spec": {"workloadRef": {"scaleDown": "onsuccess"}}}))
        .await?;
    patch_deployment(ctx, legacy, json!({"spec": {"replicas": 2}})).await?;
    ctx.eventually("scaleDown onsuccess: Deployment legacy back at 0", || async {
        Ok((deployment_replicas(ctx, legacy).await? == 0).then_some(()))
    })
    .await?;

    // never: left as it is.
    ctx.patch_rollout(legacy, json!({"spec": {"workloadRef": {"scaleDown": "never"}}}))
        .await?;
    ctx.wait_rollout(legacy, "legacy's status for the spec with scaleDown never", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
    })
    .await?;
    patch_deployment(ctx, legacy, json!({"spec": {"replicas": 1}})).await?;
    // Give the reconcile the Deployment's change triggers time to (wrongly) act.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    ensure(deployment_replicas(ctx, legacy).await? == 1, || {
        "scaleDown never: the Deployment was scaled".into()
    })?;
    Ok(())
}
