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
    let mut template = ctx
        .target
        .workload()
        .pod_template("rollout-experiment-step", version, 0.0);
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
    wait_experiment(ctx, NAME, "the Experiment Successful", |p| {
        p == Some(AnalysisPhase::Successful)
    })
    .await?;
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
        p == Some(AnalysisPhase::Failed)
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
    ensure(status.stable_rs.as_deref() == Some(v1.as_str()), || {
        "stable changed".into()
    })?;
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

/// Every backendRef of the route's first rule: (name, weight).
async fn route_backends(ctx: &Ctx<'_>) -> anyhow::Result<Vec<(String, i64)>> {
    let route = ctx
        .api_for("gateway.networking.k8s.io/v1", "HTTPRoute")
        .get("web")
        .await?;
    Ok(route
        .data
        .pointer("/spec/rules/0/backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect())
}

async fn wait_backends(ctx: &Ctx<'_>, what: &str, wanted: &[(&str, i64)]) -> anyhow::Result<()> {
    let wanted: Vec<(String, i64)> = wanted.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    let result = ctx
        .eventually(what, || async {
            let mut backends = route_backends(ctx).await?;
            backends.sort();
            let mut expected = wanted.clone();
            expected.sort();
            Ok((backends == expected).then_some(()))
        })
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(e.context(format!("route backends: {:?}", route_backends(ctx).await.ok()))),
    }
}

/// AnalysisTemplate `compare`: the canary template's success rate minus the baseline's, three
/// measurements after 5 s; it passes when the canary is at most 10 points worse.
fn compare_template(ctx: &Ctx<'_>) -> anyhow::Result<Value> {
    let workload = ctx.target.workload();
    let rate = |service: &str, arg: &str| -> anyhow::Result<String> {
        let query = workload.success_rate(&ctx.namespace, service)?;
        Ok(query.replace("{{args.canary-hash}}", &format!("{{{{args.{arg}}}}}")))
    };
    let query = format!(
        "({}) - ({})",
        rate("web-exp-canary", "canary-hash")?,
        rate("web-baseline", "baseline-hash")?
    );
    Ok(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "compare"},
        "spec": {
            "args": [{"name": "baseline-hash"}, {"name": "canary-hash"}],
            "metrics": [{
                "name": "canary-vs-baseline",
                "initialDelay": "5s", "interval": "2s", "count": 3,
                "successCondition": "result[0] >= -0.1",
                "provider": {"prometheus": {
                    "address": ctx.target.analysis_prometheus_address(),
                    "timeout": "3s",
                    "query": query,
                }},
            }],
        },
    }))
}

/// `baseline-vs-canary`: Argo's rollout-baseline-vs-canary.yaml pattern on the Gateway API router:
/// the experiment step runs a baseline (stable's template) and a canary template, 10% of traffic each
/// through their Services beside the canary's 20%, and an analysis compares their success rates by
/// `{{templates.NAME.podTemplateHash}}`. v2 as good as v1: Successful, the backends leave the route,
/// Healthy on v2. v3 failing 40%: the Experiment fails, the Rollout aborts, traffic back on stable.
pub async fn baseline_vs_canary(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    const NAME: &str = "web";
    let parent_refs = ctx.target.gateway_parent_refs()?;
    let compare = compare_template(ctx)?;
    for name in ["web-canary", "web-stable"] {
        ctx.create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await?;
    }
    ctx.create(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "200"}},
        "spec": {"parentRefs": parent_refs, "hostnames": [format!("web.{}.example.com", ctx.namespace)], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]},
    }))
    .await?;
    ctx.create(compare).await?;
    let mut template = ctx.target.workload().pod_template("web", 1, 0.0);
    template["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": NAME},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template,
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
                "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                "steps": [
                    {"setWeight": 20},
                    {"experiment": {
                        "duration": "15s",
                        "templates": [
                            {"name": "baseline", "specRef": "stable", "weight": 10, "service": {"name": "web-baseline"}},
                            {"name": "canary", "specRef": "canary", "weight": 10, "service": {"name": "web-exp-canary"}},
                        ],
                        "analyses": [{
                            "name": "compare", "templateName": "compare",
                            "args": [
                                {"name": "baseline-hash", "value": "{{templates.baseline.podTemplateHash}}"},
                                {"name": "canary-hash", "value": "{{templates.canary.podTemplateHash}}"},
                            ],
                        }],
                    }},
                    {"setWeight": 60},
                ],
            }},
        },
    }))
    .await?;
    let v1 = ctx
        .wait_rollout(NAME, "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();

    // v2, as good as v1: the templates get their 10% each while the Experiment runs.
    let mut v2 = ctx.target.workload().pod_template("web", 2, 0.0);
    v2["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    ctx.patch_rollout(NAME, json!({"spec": {"template": v2}})).await?;
    wait_experiment(ctx, NAME, "the v2 Experiment Running", |p| {
        p == Some(AnalysisPhase::Running)
    })
    .await?;
    wait_backends(
        ctx,
        "the experiment's templates on the route (10% each, canary 20%, stable the rest)",
        &[
            ("web-stable", 60),
            ("web-canary", 20),
            ("web-baseline", 10),
            ("web-exp-canary", 10),
        ],
    )
    .await?;
    wait_experiment(ctx, NAME, "the v2 Experiment Successful", |p| {
        p == Some(AnalysisPhase::Successful)
    })
    .await?;
    let done = ctx
        .wait_rollout(NAME, "v2 promoted after the comparison passed", |r| {
            phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).is_some_and(|s| s != v1)
        })
        .await?;
    let v2 = stable_hash(&done).unwrap_or_default();
    wait_backends(
        ctx,
        "the experiment's backends gone from the route",
        &[("web-stable", 100), ("web-canary", 0)],
    )
    .await?;

    // v3 fails 40% of its requests: the comparison fails the Experiment, the rollout aborts.
    let mut v3 = ctx.target.workload().pod_template("web", 3, 0.4);
    v3["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    ctx.patch_rollout(NAME, json!({"spec": {"template": v3}})).await?;
    // Failed, not Error: the comparison measured the canary worse, rather than failing to measure.
    wait_experiment(ctx, NAME, "the v3 Experiment Failed", |p| {
        p == Some(AnalysisPhase::Failed)
    })
    .await?;
    let aborted = ctx
        .wait_rollout(NAME, "aborted on the failed comparison", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    ensure(stable_hash(&aborted).as_deref() == Some(v2.as_str()), || {
        "stable changed".into()
    })?;
    wait_backends(
        ctx,
        "all traffic back on stable, the experiment's backends gone",
        &[("web-stable", 100), ("web-canary", 0)],
    )
    .await
}
