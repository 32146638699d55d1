//! The rollout engine without a router: replica-weighted steps, timed and open pauses, promote,
//! abort and retry.
use serde_json::{Value, json};

use super::context::{Ctx, at_step, ensure, phase, stable_hash};
use sluice::api::rollout::RolloutPhase;

/// Rollout `web` with 10 replicas of version 1 and the given steps.
fn rollout(ctx: &Ctx<'_>, steps: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "template": ctx.target.workload().pod_template("web", 1, 0.0),
            "strategy": {"canary": {"steps": steps}},
        },
    })
}

/// Creates Rollout `web` with `steps` and waits until version 1 is Healthy with 10 of 10 available;
/// returns its pod-template hash.
async fn create_v1(ctx: &Ctx<'_>, steps: Value) -> anyhow::Result<String> {
    ctx.create(rollout(ctx, steps)).await?;
    let v1 = ctx
        .wait_counts("web", "v1 Healthy with 10 of 10 available", |r, c| {
            phase(r) == Some(RolloutPhase::Healthy) && c == (10, 0, 10)
        })
        .await?;
    Ok(stable_hash(&v1).unwrap_or_default())
}

async fn deploy(ctx: &Ctx<'_>, version: u32) -> anyhow::Result<()> {
    let template = ctx.target.workload().pod_template("web", version, 0.0);
    ctx.patch_rollout("web", json!({"spec": {"template": template}})).await
}

pub async fn canary_steps(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let steps =
        json!([{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 80}]);
    let v1 = create_v1(ctx, steps).await?;

    deploy(ctx, 2).await?;
    ctx.wait_counts("web", "step 1 (20%): 8 stable, 2 canary", |r, c| {
        at_step(r, 1) && (c.0, c.1) == (8, 2)
    })
    .await?;
    ctx.wait_counts("web", "50% after the 2s pause, Paused at the open pause", |r, c| {
        at_step(r, 3) && (c.0, c.1) == (5, 5) && phase(r) == Some(RolloutPhase::Paused)
    })
    .await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    ensure(at_step(&ctx.rollout("web").await?, 3), || {
        "the open pause did not wait for promote".into()
    })?;

    // `sluice promote web`: past the open pause to 80%, then completion.
    ctx.patch_rollout_status("web", json!({"promotedStep": 3})).await?;
    let done = ctx
        .wait_counts("web", "v2 Healthy at full scale after promote", |r, c| {
            phase(r) == Some(RolloutPhase::Healthy)
                && stable_hash(r).as_deref() != Some(v1.as_str())
                && c == (10, 0, 10)
        })
        .await?;
    ensure(done.status.as_ref().and_then(|s| s.canary_weight) == Some(0), || {
        format!(
            "canary weight after completion: {:?}",
            done.status.as_ref().and_then(|s| s.canary_weight)
        )
    })?;
    ctx.eventually("the old stable ReplicaSet scaled to 0", || async {
        Ok((ctx.replicas("web", &v1).await?.0 == 0).then_some(()))
    })
    .await
}

pub async fn abort_retry(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    let v1 = create_v1(ctx, steps).await?;
    deploy(ctx, 2).await?;
    ctx.wait_counts("web", "Paused at 20%: 8 stable, 2 canary", |r, c| {
        at_step(r, 1) && (c.0, c.1) == (8, 2) && phase(r) == Some(RolloutPhase::Paused)
    })
    .await?;

    // `sluice abort web`: stable back to full, canary to zero, Degraded.
    ctx.patch_rollout_status("web", json!({"abort": true})).await?;
    let aborted = ctx
        .wait_counts("web", "aborted: Degraded, 10 stable, 0 canary", |r, c| {
            phase(r) == Some(RolloutPhase::Degraded) && (c.0, c.1) == (10, 0)
        })
        .await?;
    let status = aborted.status.unwrap_or_default();
    ensure(status.canary_weight == Some(0), || {
        format!("canary weight after abort: {:?}", status.canary_weight)
    })?;
    ensure(status.stable_rs.as_deref() == Some(v1.as_str()), || {
        "abort changed the stable ReplicaSet".into()
    })?;

    // `sluice retry web`: back to step 0.
    ctx.patch_rollout_status("web", json!({"abort": null})).await?;
    ctx.wait_counts("web", "retried: Paused at 20% again", |r, c| {
        at_step(r, 1) && (c.0, c.1) == (8, 2) && !r.status.as_ref().is_some_and(|s| s.is_aborted())
    })
    .await?;

    // `sluice promote web --full`.
    ctx.patch_rollout_status("web", json!({"promoteFull": true})).await?;
    ctx.wait_counts("web", "v2 Healthy at full scale after a full promote", |r, c| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).as_deref() != Some(v1.as_str()) && c == (10, 0, 10)
    })
    .await?;
    Ok(())
}
