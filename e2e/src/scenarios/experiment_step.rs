//! A Rollout's experiment step: given a Rollout whose steps run an Experiment, when a new version
//! rolls out, then the Experiment appears (owned by the Rollout, named in its status), and its phase
//! decides: Successful → the next step and completion; Failed → abort back to stable.
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::analysis::{service, success_rate_template};
use super::context::{Ctx, canary_hash, ensure, phase, stable_hash};
use sluice::api::analysis::AnalysisPhase;
use sluice::api::experiment::Experiment;
use sluice::api::keys::ROLLOUT_LABEL;
use sluice::api::rollout::{Rollout, RolloutPhase};

/// The Experiments of Rollout `rollout` (by label and controller owner).
async fn experiments_of(ctx: &Ctx<'_>, rollout: &Rollout) -> anyhow::Result<Vec<Experiment>> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let uid = rollout.metadata.uid.clone().unwrap_or_default();
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    Ok(api
        .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect())
}

fn experiment_phase(experiment: &Experiment) -> Option<AnalysisPhase> {
    experiment.status.as_ref().and_then(|s| s.phase)
}

fn current_experiment(rollout: &Rollout) -> Option<String> {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.current_experiment.clone())
}

/// Waits for the one Experiment of Rollout `name` to reach a phase `check` accepts.
async fn wait_experiment(
    ctx: &Ctx<'_>,
    name: &str,
    what: &str,
    check: impl Fn(Option<AnalysisPhase>) -> bool,
) -> anyhow::Result<Experiment> {
    let result = ctx
        .eventually(what, || async {
            let rollout = ctx.rollout(name).await?;
            let found = experiments_of(ctx, &rollout).await?;
            Ok(found.into_iter().find(|e| check(experiment_phase(e))))
        })
        .await;
    match result {
        Ok(experiment) => Ok(experiment),
        Err(e) => {
            let rollout = ctx.rollout(name).await?;
            let found = experiments_of(ctx, &rollout).await.unwrap_or_default();
            let statuses: Vec<_> = found
                .iter()
                .map(|x| serde_json::to_string(&x.status).unwrap_or_default())
                .collect();
            Err(e.context(format!(
                "experiments: {statuses:?}; rollout status: {}",
                serde_json::to_string(&rollout.status).unwrap_or_default()
            )))
        }
    }
}

/// Argo's examples/rollout-experiment-step.yaml: group sluice.dev, the analyses removed, the
/// experiment given `duration: 10s`, the simulator's image.
fn argo_experiment_step(ctx: &Ctx<'_>, version: u32) -> Value {
    let mut template = ctx.target.workload().pod_template("rollout-experiment-step", version, 0.0);
    template["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "rollout-experiment-step"},
        "spec": {
            "replicas": 4,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": "rollout-experiment-step"}},
            "template": template,
            "strategy": {"canary": {"steps": [
                {"setWeight": 25},
                {"experiment": {
                    "duration": "10s",
                    "templates": [{"name": "canary", "specRef": "canary"}],
                }},
            ]}},
        },
    })
}

/// `experiment-step`: v1 Healthy; v2 → an Experiment owned by the Rollout and named in
/// status.canary.currentExperiment runs the canary template for 10 s, ends Successful, and the
/// rollout completes on v2.
pub async fn experiment_step(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    const NAME: &str = "rollout-experiment-step";
    ctx.create(argo_experiment_step(ctx, 1)).await?;
    let v1 = ctx
        .wait_rollout(NAME, "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();
    let v2 = argo_experiment_step(ctx, 2)["spec"]["template"].clone();
    ctx.patch_rollout(NAME, json!({"spec": {"template": v2}})).await?;
    let at_step = ctx
        .wait_rollout(NAME, "the rollout at its experiment step, naming its Experiment", |r| {
            current_experiment(r).is_some()
        })
        .await?;
    let named = current_experiment(&at_step).unwrap_or_default();
    let running = wait_experiment(ctx, NAME, "the Experiment Running", |p| {
        matches!(p, Some(AnalysisPhase::Running | AnalysisPhase::Successful))
    })
    .await?;
    ensure(running.metadata.name.as_deref() == Some(named.as_str()), || {
        format!("status names {named}, the Experiment is {:?}", running.metadata.name)
    })?;
    ensure(running.spec.duration.as_deref() == Some("10s"), || {
        format!("duration {:?}", running.spec.duration)
    })?;
    let hash = ctx.target.workload().pod_template("x", 2, 0.0)["metadata"]["annotations"].clone();
    let canary_template = running.spec.templates.first().map(|t| t.template.to_value());
    ensure(
        canary_template
            .as_ref()
            .is_some_and(|t| t["metadata"]["annotations"]["e2e.sluice.dev/version"] == hash["e2e.sluice.dev/version"]),
        || format!("the experiment's canary template is not v2: {canary_template:?}"),
    )?;
    let rollout = ctx.rollout(NAME).await?;
    ensure(phase(&rollout) != Some(RolloutPhase::Healthy), || {
        "the rollout completed while its Experiment was running".into()
    })?;
    wait_experiment(ctx, NAME, "the Experiment Successful", |p| p == Some(AnalysisPhase::Successful)).await?;
    let done = ctx
        .wait_rollout(NAME, "v2 promoted after the Experiment", |r| {
            phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).is_some_and(|s| s != v1)
        })
        .await?;
    ensure(current_experiment(&done).is_none(), || {
        format!("currentExperiment still {:?} after the step", current_experiment(&done))
    })?;
    let found = experiments_of(ctx, &done).await?;
    ensure(found.len() == 1, || format!("{} Experiments, expected 1", found.len()))?;
    Ok(())
}

/// `experiment-fail`: the experiment step runs the canary (v2, failing 40% of its requests) with an
/// analysis of its own pods (`{{templates.canary.podTemplateHash}}`): the analysis fails, the
/// Experiment ends Failed, the Rollout aborts (AnalysisFailed) with all replicas back on stable.
pub async fn experiment_fail(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    const NAME: &str = "web";
    ctx.create(service()).await?;
    ctx.create(success_rate_template(ctx, "web")?).await?;
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": NAME},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": ctx.target.workload().pod_template("web", 1, 0.0),
            "strategy": {"canary": {"steps": [
                {"setWeight": 25},
                {"experiment": {
                    "duration": "1m",
                    "templates": [{"name": "canary", "specRef": "canary", "replicas": 2}],
                    "analyses": [{
                        "name": "success-rate", "templateName": "success-rate",
                        "args": [{"name": "canary-hash", "value": "{{templates.canary.podTemplateHash}}"}],
                    }],
                }},
                {"setWeight": 75},
            ]}},
        },
    }))
    .await?;
    let v1 = ctx
        .wait_rollout(NAME, "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();
    let template = ctx.target.workload().pod_template("web", 2, 0.4);
    ctx.patch_rollout(NAME, json!({"spec": {"template": template}})).await?;
    wait_experiment(ctx, NAME, "the Experiment Failed on its analysis", |p| {
        matches!(p, Some(AnalysisPhase::Failed | AnalysisPhase::Error))
    })
    .await?;
    let aborted = ctx
        .wait_rollout(NAME, "the rollout aborted on the failed Experiment", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    let status = aborted.status.clone().unwrap_or_default();
    ensure(status.canary_weight == Some(0), || {
        format!("canary weight after abort: {:?}", status.canary_weight)
    })?;
    ensure(status.stable_rs.as_deref() == Some(v1.as_str()), || "stable changed".into())?;
    ensure(
        status.abort_reason == Some(sluice::api::rollout::AbortReason::AnalysisFailed),
        || format!("abort reason {:?}", status.abort_reason),
    )?;
    let message = status.message.clone().unwrap_or_default();
    ensure(message.contains("experiment"), || format!("abort message {message:?}"))?;
    let canary = canary_hash(&aborted).unwrap_or_default();
    ctx.eventually("all replicas back on stable, the canary at 0", || async {
        Ok((ctx.replicas(NAME, &v1).await?.0 == 4 && ctx.replicas(NAME, &canary).await?.0 == 0).then_some(()))
    })
    .await
}
