//! Metric-gated steps: the app's traffic measured by Prometheus, an AnalysisRun per analysis step,
//! and the rollout following its verdict.
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::context::{Ctx, canary_hash, ensure, phase, stable_hash};
use sluice::api::AnalysisRun;
use sluice::api::rollout::RolloutPhase;

/// AnalysisTemplate `success-rate`: three measurements 2 s apart after 5 s, each ≥ 0.95.
pub fn success_rate_template(ctx: &Ctx<'_>, service: &str) -> anyhow::Result<Value> {
    let query = ctx.target.workload().success_rate(&ctx.namespace, service)?;
    Ok(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
        "spec": {
            "args": [{"name": "canary-hash"}],
            "metrics": [{
                "name": "success-rate",
                "initialDelay": "5s", "interval": "2s", "count": 3,
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {
                    "address": ctx.target.analysis_prometheus_address(),
                    "timeout": "3s",
                    "query": query,
                }},
            }],
        },
    }))
}

/// Service `web` receiving 100 requests per second on the simulator (the annotation is inert elsewhere).
pub fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "100"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// Deploys Rollout `web` (50% → analysis → 75%) at v1 and waits until it is Healthy.
async fn set_up(ctx: &Ctx<'_>) -> anyhow::Result<String> {
    let template = success_rate_template(ctx, "web")?;
    ctx.create(service()).await?;
    ctx.create(template).await?;
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": ctx.target.workload().pod_template("web", 1, 0.0),
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "success-rate"}],
                              "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}},
                {"setWeight": 75},
            ]}},
        },
    }))
    .await?;
    let v1 = ctx
        .wait_rollout("web", "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    Ok(stable_hash(&v1).unwrap_or_default())
}

async fn deploy(ctx: &Ctx<'_>, version: u32, error_rate: f64) -> anyhow::Result<()> {
    let template = ctx.target.workload().pod_template("web", version, error_rate);
    ctx.patch_rollout("web", json!({"spec": {"template": template}})).await
}

pub async fn pass(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let v1 = set_up(ctx).await?;
    deploy(ctx, 2, 0.0).await?;
    ctx.wait_rollout("web", "v2 promoted after a successful analysis", |r| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).is_some_and(|s| s != v1)
    })
    .await?;
    let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let runs = runs.list(&ListParams::default()).await?.items;
    ensure(runs.len() == 1, || format!("{} AnalysisRuns, expected 1", runs.len()))?;
    let status = runs[0].status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    ensure(phase == "Successful", || format!("AnalysisRun phase {phase}"))?;
    let measured = status
        .metric_results
        .first()
        .and_then(|m| m.measurements.first())
        .and_then(|m| m.value.clone());
    ensure(measured.is_some(), || "the run recorded no measured value".into())?;
    Ok(())
}

pub async fn fail(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let v1 = set_up(ctx).await?;
    deploy(ctx, 2, 0.4).await?;
    let aborted = ctx
        .wait_rollout("web", "aborted on the failed analysis", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    let status = aborted.status.clone().unwrap_or_default();
    ensure(status.canary_weight == Some(0), || {
        format!("canary weight after abort: {:?}", status.canary_weight)
    })?;
    ensure(status.stable_rs.as_deref() == Some(v1.as_str()), || {
        "stable changed".into()
    })?;
    let message = status.message.clone().unwrap_or_default();
    ensure(message.contains("failed"), || format!("abort message {message:?}"))?;
    let canary = canary_hash(&aborted).unwrap_or_default();
    ctx.eventually("all replicas back on stable, the canary at 0", || async {
        Ok((ctx.replicas("web", &v1).await?.0 == 4 && ctx.replicas("web", &canary).await?.0 == 0).then_some(()))
    })
    .await
}
