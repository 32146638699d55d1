//! Standalone Experiments: ReplicaSets run side by side for a while, judged by AnalysisRuns, then
//! scaled down. Given an Experiment, when it runs, then its phase, ReplicaSets, Service and runs.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::analysis::service;
use super::context::{Ctx, ensure};
use sluice::api::AnalysisRun;
use sluice::api::analysis::AnalysisPhase;
use sluice::api::experiment::{Experiment, TemplateStatusCode};

fn experiments(ctx: &Ctx<'_>) -> Api<Experiment> {
    Api::namespaced(ctx.client.clone(), &ctx.namespace)
}

/// A template of `app` at `version` with `error_rate`, labelled `app: <app>` (and `role: <name>`, so
/// two templates of one app select apart).
fn template(ctx: &Ctx<'_>, name: &str, app: &str, version: u32, error_rate: f64) -> Value {
    let mut pod = ctx.target.workload().pod_template(app, version, error_rate);
    pod["metadata"]["labels"]["role"] = json!(name);
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    json!({
        "name": name,
        "replicas": 1,
        "selector": {"matchLabels": {"app": app, "role": name}},
        "template": pod,
    })
}

async fn wait_experiment(
    ctx: &Ctx<'_>,
    name: &str,
    what: &str,
    check: impl Fn(&Experiment) -> bool,
) -> anyhow::Result<Experiment> {
    let api = experiments(ctx);
    let found = ctx
        .eventually(what, || async { Ok(api.get(name).await.ok().filter(|e| check(e))) })
        .await;
    match found {
        Ok(e) => Ok(e),
        Err(e) => {
            let status = api.get(name).await.ok().and_then(|x| x.status);
            Err(e.context(format!(
                "experiment status: {}",
                serde_json::to_string(&status).unwrap_or_default()
            )))
        }
    }
}

fn phase(e: &Experiment) -> Option<AnalysisPhase> {
    e.status.as_ref().and_then(|s| s.phase)
}

/// Replicas (spec) of each ReplicaSet the Experiment owns, by name.
async fn owned_replica_sets(ctx: &Ctx<'_>, experiment: &Experiment) -> anyhow::Result<BTreeMap<String, i32>> {
    let uid = experiment.metadata.uid.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
        .map(|rs| {
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            (rs.metadata.name.unwrap_or_default(), replicas)
        })
        .collect())
}

/// Two templates (baseline v1, canary v2 with a Service), `duration: 10s`: Pending → Running with
/// every template available → Successful after ≥ 10 s → ReplicaSets at 0 and the Service gone.
pub async fn duration(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let mut canary = template(ctx, "canary", "web", 2, 0.0);
    canary["service"] = json!({});
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": "exp"},
        "spec": {
            "duration": "10s",
            "scaleDownDelaySeconds": 2,
            "templates": [template(ctx, "baseline", "web", 1, 0.0), canary],
        },
    }))
    .await?;
    let running = wait_experiment(ctx, "exp", "Running, every template available", |e| {
        phase(e) == Some(AnalysisPhase::Running)
    })
    .await?;
    let status = running.status.clone().unwrap_or_default();
    let available_at = status
        .available_at
        .ok_or_else(|| anyhow::anyhow!("Running without availableAt"))?;
    let hashes: Vec<Option<String>> = status
        .template_statuses
        .iter()
        .map(|t| t.pod_template_hash.clone())
        .collect();
    ensure(
        hashes.len() == 2 && hashes[0].is_some() && hashes[0] != hashes[1],
        || format!("template hashes {hashes:?}"),
    )?;
    ensure(
        status
            .template_statuses
            .iter()
            .all(|t| t.status == Some(TemplateStatusCode::Running) && t.available_replicas == 1),
        || format!("template statuses {:?}", status.template_statuses),
    )?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let canary_service = services.get("exp-canary").await?;
    let selector = canary_service.spec.and_then(|s| s.selector).unwrap_or_default();
    ensure(
        selector.get("sluice.dev/pod-template-hash") == hashes[1].as_ref(),
        || format!("Service exp-canary selects {selector:?}"),
    )?;
    let done = wait_experiment(ctx, "exp", "Successful after the duration", |e| {
        phase(e) == Some(AnalysisPhase::Successful)
    })
    .await?;
    let elapsed = chrono::Utc::now() - available_at;
    ensure(elapsed >= chrono::TimeDelta::seconds(10), || {
        format!("Successful {elapsed} after availableAt")
    })?;
    ctx.eventually("both ReplicaSets at 0 and the Service deleted", || async {
        let sets = owned_replica_sets(ctx, &done).await?;
        let gone = services.get_opt("exp-canary").await?.is_none();
        Ok((sets.len() == 2 && sets.values().all(|r| *r == 0) && gone).then_some(()))
    })
    .await
}

/// An analysis comparing nothing but the canary's success rate (40% errors) ends the Experiment
/// Failed at once; the other, still running, analysis is terminated and the ReplicaSets go to 0.
pub async fn analysis_fail(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let query = ctx.target.workload().success_rate(&ctx.namespace, "web")?;
    let metric = |name: &str, count: i32| {
        json!({
            "name": name,
            "initialDelay": "8s", "interval": "2s", "count": count,
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {
                "address": ctx.target.analysis_prometheus_address(),
                "timeout": "3s",
                "query": query,
            }},
        })
    };
    for (name, count) in [("success-rate", 3), ("long-success-rate", 1000)] {
        ctx.create(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
            "spec": {"args": [{"name": "canary-hash"}], "metrics": [metric(name, count)]},
        }))
        .await?;
    }
    ctx.create(service()).await?;
    let arg = |template: &str| json!([{"name": "canary-hash", "value": format!("{{{{templates.{template}.podTemplateHash}}}}")}]);
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": "exp"},
        "spec": {
            "scaleDownDelaySeconds": 0,
            "templates": [template(ctx, "baseline", "web", 1, 0.0), template(ctx, "canary", "web", 2, 0.4)],
            "analyses": [
                {"name": "canary", "templateName": "success-rate", "args": arg("canary")},
                {"name": "baseline", "templateName": "long-success-rate", "args": arg("baseline")},
            ],
        },
    }))
    .await?;
    let failed = wait_experiment(ctx, "exp", "Failed on the canary's analysis", |e| {
        phase(e).is_some_and(AnalysisPhase::is_completed)
    })
    .await?;
    let status = failed.status.clone().unwrap_or_default();
    ensure(phase(&failed) == Some(AnalysisPhase::Failed), || {
        format!("ended {:?}: {:?}", status.phase, status.message)
    })?;
    ensure(
        status.message.as_deref().unwrap_or_default().contains("\"canary\""),
        || format!("message {:?}", status.message),
    )?;
    let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let canary_run = runs.get("exp-canary").await?;
    let hash = status
        .template_statuses
        .iter()
        .find(|t| t.name == "canary")
        .and_then(|t| t.pod_template_hash.clone());
    let arg_value = canary_run.spec.args.first().and_then(|a| a.value.clone());
    ensure(arg_value.is_some() && arg_value == hash, || {
        format!("the run's canary-hash {arg_value:?}, the canary's hash {hash:?}")
    })?;
    ctx.eventually("the baseline run terminated and both ReplicaSets at 0", || async {
        let baseline = runs.get("exp-baseline").await?;
        let terminated = baseline.spec.terminate == Some(true);
        let sets = owned_replica_sets(ctx, &failed).await?;
        Ok((terminated && sets.len() == 2 && sets.values().all(|r| *r == 0)).then_some(()))
    })
    .await
}

/// Without a duration or a required analysis an Experiment runs until `terminate: true`; then it
/// ends Successful and scales down.
pub async fn terminate(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": "exp"},
        "spec": {"scaleDownDelaySeconds": 0, "templates": [template(ctx, "canary", "web", 2, 0.0)]},
    }))
    .await?;
    wait_experiment(ctx, "exp", "Running", |e| phase(e) == Some(AnalysisPhase::Running)).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let still = experiments(ctx).get("exp").await?;
    ensure(phase(&still) == Some(AnalysisPhase::Running), || {
        format!("ended on its own: {:?}", still.status)
    })?;
    experiments(ctx)
        .patch(
            "exp",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"terminate": true}})),
        )
        .await?;
    let ended = wait_experiment(ctx, "exp", "Successful once terminated", |e| {
        phase(e).is_some_and(AnalysisPhase::is_completed)
    })
    .await?;
    ensure(phase(&ended) == Some(AnalysisPhase::Successful), || {
        format!("ended {:?}", ended.status)
    })?;
    ctx.eventually("the ReplicaSet at 0", || async {
        let sets = owned_replica_sets(ctx, &ended).await?;
        Ok((sets.len() == 1 && sets.values().all(|r| *r == 0)).then_some(()))
    })
    .await
}
