//! Blue-green: Argo's examples/rollout-bluegreen.yaml (only the API group changed) promoted by hand,
//! auto-promotion with role metadata, failing pre- and post-promotion analyses, and abort. The active
//! Service's selector is read at every poll, so "active never left v1" is checked on every observed
//! state, not only at the end.
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::analysis::success_rate_template;
use super::context::{Ctx, canary_hash, ensure, phase, stable_hash};
use sluice::api::rollout::{AbortReason, Rollout, RolloutPhase};
use sluice::cli::actions::{Change, plan_abort, plan_promote};

/// The `sluice.dev/pod-template-hash` a Service selects, if any.
async fn selects(ctx: &Ctx<'_>, service: &str) -> anyhow::Result<Option<String>> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let service = services.get(service).await?;
    Ok(service
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("sluice.dev/pod-template-hash").cloned()))
}

/// A Service for the app's pods; `rps` requests per second on the simulator (inert elsewhere).
fn service(name: &str, app: &str, rps: Option<u32>) -> Value {
    let annotations = rps.map_or(json!({}), |rps| json!({"sim.sluice.dev/rps": rps.to_string()}));
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": {"app": app}, "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}]}})
}

/// A blue-green Rollout of `app` at version 1 with `strategy`.
fn rollout(ctx: &Ctx<'_>, app: &str, replicas: i32, strategy: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": app},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": app}},
            "template": ctx.target.workload().pod_template(app, 1, 0.0),
            "strategy": {"blueGreen": strategy},
        },
    })
}

/// Creates the Services and the Rollout and waits until v1 is Healthy with the active Service on it;
/// returns v1's hash.
async fn create_v1(ctx: &Ctx<'_>, services: Vec<Value>, rollout: Value) -> anyhow::Result<String> {
    let name = rollout["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let active = rollout["spec"]["strategy"]["blueGreen"]["activeService"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for service in services {
        ctx.create(service).await?;
    }
    ctx.create(rollout).await?;
    let v1 = ctx
        .wait_rollout(&name, "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    let v1 = stable_hash(&v1).unwrap_or_default();
    ctx.eventually("the active Service on v1", || async {
        Ok((selects(ctx, &active).await?.as_deref() == Some(v1.as_str())).then_some(()))
    })
    .await?;
    Ok(v1)
}

async fn deploy(ctx: &Ctx<'_>, app: &str, version: u32, error_rate: f64) -> anyhow::Result<()> {
    let template = ctx.target.workload().pod_template(app, version, error_rate);
    ctx.patch_rollout(app, json!({"spec": {"template": template}})).await
}

/// Applies what a `sluice` command decided (its status patch), as the CLI does.
async fn run_command(
    ctx: &Ctx<'_>,
    name: &str,
    decided: sluice::cli::Result<sluice::cli::actions::Planned>,
) -> anyhow::Result<()> {
    let planned = decided.map_err(|e| anyhow::anyhow!("{e}"))?;
    match planned.change {
        Some(Change::Status(patch)) => ctx.patch_rollout_status(name, patch["status"].clone()).await,
        other => anyhow::bail!("expected a status patch, got {other:?}"),
    }
}

/// Polls until `done` holds, failing at once if the active Service ever selects `forbidden`.
async fn wait_never_active(
    ctx: &Ctx<'_>,
    name: &str,
    active: &str,
    forbidden: &str,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> anyhow::Result<Rollout> {
    ctx.eventually(what, || async {
        if selects(ctx, active).await?.as_deref() == Some(forbidden) {
            return Ok(Some(Err(anyhow::anyhow!(
                "the active Service {active} selected {forbidden} while waiting for {what}"
            ))));
        }
        let rollout = ctx.rollout(name).await?;
        Ok(done(&rollout).then_some(Ok(rollout)))
    })
    .await?
}

/// Argo's examples/rollout-bluegreen.yaml: v1 Healthy with active on it; a new image → Paused, preview
/// on v2, active on v1; `sluice promote` → active on v2, Healthy; v1 scaled to 0 after the delay.
pub async fn promote(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    const APP: &str = "rollout-bluegreen";
    const ACTIVE: &str = "rollout-bluegreen-active";
    const PREVIEW: &str = "rollout-bluegreen-preview";
    let strategy = json!({
        "activeService": ACTIVE,
        "previewService": PREVIEW,
        "autoPromotionEnabled": false,
        // Argo's example keeps the default 30s; shorter so the test sees v1 leave.
        "scaleDownDelaySeconds": 2,
    });
    let services = vec![service(ACTIVE, APP, None), service(PREVIEW, APP, None)];
    let v1 = create_v1(ctx, services, rollout(ctx, APP, 2, strategy)).await?;

    deploy(ctx, APP, 2, 0.0).await?;
    let paused = ctx
        .wait_rollout(APP, "Paused with v2 in preview", |r| {
            phase(r) == Some(RolloutPhase::Paused) && canary_hash(r).is_some_and(|h| h != v1)
        })
        .await?;
    let v2 = canary_hash(&paused).unwrap_or_default();
    ctx.eventually("preview on v2, active still on v1", || async {
        let (active, preview) = (selects(ctx, ACTIVE).await?, selects(ctx, PREVIEW).await?);
        Ok((active.as_deref() == Some(v1.as_str()) && preview.as_deref() == Some(v2.as_str())).then_some(()))
    })
    .await?;
    ensure(ctx.replicas(APP, &v2).await?.0 == 2, || {
        "v2 not at full scale in preview".into()
    })?;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ensure(selects(ctx, ACTIVE).await?.as_deref() == Some(v1.as_str()), || {
        "the active Service moved without a promote".into()
    })?;

    run_command(ctx, APP, plan_promote(&ctx.rollout(APP).await?, false)).await?;
    ctx.wait_rollout(APP, "v2 Healthy and stable after promote", |r| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).as_deref() == Some(v2.as_str())
    })
    .await?;
    ensure(selects(ctx, ACTIVE).await?.as_deref() == Some(v2.as_str()), || {
        "the active Service is not on v2".into()
    })?;
    ctx.eventually("v1 scaled to 0 after scaleDownDelaySeconds", || async {
        Ok((ctx.replicas(APP, &v1).await?.0 == 0).then_some(()))
    })
    .await
}

/// The labels of the pods of `hash`.
async fn pod_roles(ctx: &Ctx<'_>, hash: &str) -> anyhow::Result<Vec<Option<String>>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("sluice.dev/pod-template-hash={hash}")))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.labels.as_ref().and_then(|l| l.get("role").cloned()))
        .collect())
}

/// autoPromotionEnabled (the default): no pause; the switch follows availability and the role labels
/// move with it, onto pods that already run.
pub async fn auto_promotion(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let strategy = json!({
        "activeService": "web-active", "previewService": "web-preview",
        "activeMetadata": {"labels": {"role": "active"}},
        "previewMetadata": {"labels": {"role": "preview"}},
    });
    let services = vec![service("web-active", "web", None), service("web-preview", "web", None)];
    let v1 = create_v1(ctx, services, rollout(ctx, "web", 3, strategy)).await?;
    ctx.eventually("v1's pods labelled role=active", || async {
        Ok(pod_roles(ctx, &v1)
            .await?
            .iter()
            .all(|r| r.as_deref() == Some("active"))
            .then_some(()))
    })
    .await?;
    deploy(ctx, "web", 2, 0.0).await?;
    let done = ctx
        .eventually("v2 stable without a pause", || async {
            let rollout = ctx.rollout("web").await?;
            if phase(&rollout) == Some(RolloutPhase::Paused) {
                return Ok(Some(Err(anyhow::anyhow!("paused although autoPromotionEnabled"))));
            }
            let promoted = phase(&rollout) == Some(RolloutPhase::Healthy) && stable_hash(&rollout) != Some(v1.clone());
            Ok(promoted.then_some(Ok(rollout)))
        })
        .await??;
    let v2 = stable_hash(&done).unwrap_or_default();
    ensure(
        selects(ctx, "web-active").await?.as_deref() == Some(v2.as_str()),
        || "the active Service is not on v2".into(),
    )?;
    ctx.eventually("role=active moved to v2's pods, off v1's", || async {
        let (new, old) = (pod_roles(ctx, &v2).await?, pod_roles(ctx, &v1).await?);
        let moved =
            new.len() == 3 && new.iter().all(|r| r.as_deref() == Some("active")) && old.iter().all(Option::is_none);
        Ok(moved.then_some(()))
    })
    .await
}

/// Services with traffic, the success-rate template over `analysed`, and Rollout `web` judged by it
/// before (`when: prePromotionAnalysis`) or after the switch.
async fn with_analysis(ctx: &Ctx<'_>, when: &str, analysed: &str) -> anyhow::Result<String> {
    ctx.create(success_rate_template(ctx, analysed)?).await?;
    let analysis = json!({
        "templates": [{"templateName": "success-rate"}],
        "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}],
    });
    let mut strategy = json!({
        "activeService": "web-active", "previewService": "web-preview", "abortScaleDownDelaySeconds": 1,
    });
    strategy[when] = analysis;
    let services = vec![
        service("web-active", "web", Some(100)),
        service("web-preview", "web", Some(100)),
    ];
    create_v1(ctx, services, rollout(ctx, "web", 2, strategy)).await
}

/// A failing prePromotionAnalysis: Degraded, aborted on the analysis, and the active Service never
/// left v1 at any observed moment; v2 scaled to 0.
pub async fn pre_promotion_fails(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let v1 = with_analysis(ctx, "prePromotionAnalysis", "web-preview").await?;
    deploy(ctx, "web", 2, 0.4).await?;
    let v2 = ctx
        .wait_rollout("web", "v2 created", |r| canary_hash(r).is_some_and(|h| h != v1))
        .await
        .map(|r| canary_hash(&r).unwrap_or_default())?;
    let aborted = wait_never_active(ctx, "web", "web-active", &v2, "Degraded on the failed analysis", |r| {
        phase(r) == Some(RolloutPhase::Degraded)
    })
    .await?;
    aborted_on_analysis(aborted, &v1)?;
    ctx.eventually("v2 scaled to 0, active and preview on v1", || async {
        let (active, preview) = (selects(ctx, "web-active").await?, selects(ctx, "web-preview").await?);
        let on_v1 = active.as_deref() == Some(v1.as_str()) && preview.as_deref() == Some(v1.as_str());
        Ok((on_v1 && ctx.replicas("web", &v2).await?.0 == 0).then_some(()))
    })
    .await
}

/// The rollout aborted because an analysis failed, and `stable` is still the stable version (what a
/// GitSync reads to block the revision).
fn aborted_on_analysis(rollout: Rollout, stable: &str) -> anyhow::Result<()> {
    let status = rollout.status.unwrap_or_default();
    ensure(status.abort_reason == Some(AbortReason::AnalysisFailed), || {
        format!("abort reason {:?}", status.abort_reason)
    })?;
    ensure(status.stable_rs.as_deref() == Some(stable), || {
        format!("stable is {:?}, not {stable}", status.stable_rs)
    })
}

/// A failing postPromotionAnalysis: the active Service switches to v2, then back to v1; Degraded.
pub async fn post_promotion_fails(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let v1 = with_analysis(ctx, "postPromotionAnalysis", "web-active").await?;
    deploy(ctx, "web", 2, 0.4).await?;
    let switched = ctx
        .eventually("the active Service switched to v2", || async {
            let active = selects(ctx, "web-active").await?;
            Ok(active.filter(|h| *h != v1))
        })
        .await?;
    let aborted = ctx
        .wait_rollout("web", "Degraded on the failed post-promotion analysis", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    aborted_on_analysis(aborted, &v1)?;
    ctx.eventually("the active Service back on v1, v2 scaled to 0", || async {
        let back = selects(ctx, "web-active").await?.as_deref() == Some(v1.as_str());
        Ok((back && ctx.replicas("web", &switched).await?.0 == 0).then_some(()))
    })
    .await
}

/// `sluice abort` while paused before the switch: both Services on v1, Degraded, v2 scaled to 0.
pub async fn abort(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let strategy = json!({
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 1,
    });
    let services = vec![service("web-active", "web", None), service("web-preview", "web", None)];
    let v1 = create_v1(ctx, services, rollout(ctx, "web", 2, strategy)).await?;
    deploy(ctx, "web", 2, 0.0).await?;
    let paused = ctx
        .wait_rollout("web", "Paused before the switch", |r| {
            phase(r) == Some(RolloutPhase::Paused)
        })
        .await?;
    let v2 = canary_hash(&paused).unwrap_or_default();
    run_command(ctx, "web", plan_abort(&paused)).await?;
    let aborted = wait_never_active(ctx, "web", "web-active", &v2, "Degraded after abort", |r| {
        phase(r) == Some(RolloutPhase::Degraded)
    })
    .await?;
    let status = aborted.status.unwrap_or_default();
    ensure(status.abort_reason == Some(AbortReason::Requested), || {
        format!("abort reason {:?}", status.abort_reason)
    })?;
    ctx.eventually("preview back on v1 and v2 scaled to 0", || async {
        let preview = selects(ctx, "web-preview").await?;
        Ok((preview.as_deref() == Some(v1.as_str()) && ctx.replicas("web", &v2).await?.0 == 0).then_some(()))
    })
    .await
}
