//! The GitOps loop: a GitSync applies each commit of a real Git repository; a commit whose canary
//! fails analysis is blocked, the last healthy commit re-applied and a revert pushed to the branch.
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{Value, json};

use super::context::{Ctx, ensure};
use super::target::Workload;
use crate::kit::local_repo::LocalRepo;
use sluice::api::gitsync::{GitSync, GitSyncStatus};
use sluice::api::rollout::RolloutPhase;

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}

/// Writes version `version` of the app (its ConfigMap replacing the previous one's) and commits it.
fn commit_version(ctx: &Ctx<'_>, repo: &LocalRepo, version: u32, error_rate: f64) -> anyhow::Result<String> {
    if version > 1 {
        repo.remove(&format!("app/config-v{}.yaml", version - 1))?;
    }
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("web-config-v{version}")},
        "data": {"version": version.to_string()}});
    repo.write(&format!("app/config-v{version}.yaml"), &yaml(&config)?)?;
    let mut template = ctx.target.workload().pod_template("web", version, error_rate);
    template["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": format!("web-config-v{version}")}}]);
    let rollout = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template,
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "success-rate"}],
                              "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}},
                {"setWeight": 75},
            ]}},
        },
    });
    repo.write("app/rollout.yaml", &yaml(&rollout)?)?;
    repo.commit(&format!("web v{version}"))
}

/// Onboards the scenario's namespace as the README tells operators to (deploy/tenant/): the
/// ServiceAccount `deployer` the GitSync applies as, and the controller's right to act as it.
async fn onboard(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    for object in crate::kit::tenant_objects(&ctx.namespace)? {
        ctx.create(object).await?;
    }
    Ok(())
}

fn status(gitsync: &GitSync) -> GitSyncStatus {
    gitsync.status.clone().unwrap_or_default()
}

async fn wait_gitsync(ctx: &Ctx<'_>, what: &str, check: impl Fn(&GitSync) -> bool) -> anyhow::Result<GitSync> {
    let gitsyncs: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let result = ctx
        .eventually(what, || async {
            Ok(gitsyncs.get("shop").await.ok().filter(|g| check(g)))
        })
        .await;
    match result {
        Ok(gitsync) => Ok(gitsync),
        Err(e) => {
            let last = gitsyncs.get("shop").await.ok().and_then(|g| g.status);
            Err(e.context(format!(
                "GitSync status: {}",
                serde_json::to_string(&last).unwrap_or_default()
            )))
        }
    }
}

fn healthy_at(gitsync: &GitSync, revision: &str) -> bool {
    status(gitsync).last_healthy_revision.as_deref() == Some(revision)
}

async fn running_version(ctx: &Ctx<'_>) -> anyhow::Result<Option<String>> {
    Ok(ctx
        .rollouts()
        .get_opt("web")
        .await?
        .as_ref()
        .and_then(Workload::version_of))
}

pub async fn rollback(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let template = super::analysis::success_rate_template(ctx, "web")?;
    let location = ctx.target.git_repository(&ctx.namespace)?;
    let repo = LocalRepo::create(&location.dir)?;
    let url = location.url.clone().unwrap_or_else(|| repo.url());
    repo.write("app/service.yaml", &yaml(&super::analysis::service())?)?;
    repo.write("app/analysis.yaml", &yaml(&template)?)?;
    let v1 = commit_version(ctx, &repo, 1, 0.0)?;
    onboard(ctx).await?;
    ctx.create(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "shop"},
        "spec": {
            "repoURL": url, "ref": {"branch": "main"}, "path": "app", "interval": "2s", "timeout": "30s",
            "serviceAccountName": "deployer",
            "rollback": {"onAnalysisFailure": "revert", "author": "Sluice e2e <e2e@sluice.dev>"},
        },
    }))
    .await?;
    let synced = wait_gitsync(ctx, "v1 applied and healthy", |g| healthy_at(g, &v1)).await?;
    let applied = status(&synced).last_applied_revision;
    ensure(applied.as_deref() == Some(v1.as_str()), || {
        format!("lastAppliedRevision {applied:?}")
    })?;
    let rollout = ctx.rollout("web").await?;
    let annotated = rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sluice.dev/git-revision"))
        .cloned();
    ensure(annotated.as_deref() == Some(v1.as_str()), || {
        format!("the Rollout's sluice.dev/git-revision is {annotated:?}")
    })?;

    let owner = rollout
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("sluice.dev/gitsync"))
        .cloned();
    ensure(owner == Some(format!("{}.shop", ctx.namespace)), || {
        format!("the Rollout's sluice.dev/gitsync label is {owner:?}")
    })?;

    let v2 = commit_version(ctx, &repo, 2, 0.0)?;
    wait_gitsync(ctx, "v2 canaried, analysed and healthy", |g| healthy_at(g, &v2)).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    ctx.eventually("web-config-v1 pruned after the rollout", || async {
        Ok(config_maps.get_opt("web-config-v1").await?.is_none().then_some(()))
    })
    .await?;

    let v3 = commit_version(ctx, &repo, 3, 0.4)?;
    let blocked = wait_gitsync(ctx, "v3 blocked after its canary failed analysis", |g| {
        status(g).is_blocked(&v3)
    })
    .await?;
    let blocked_at = status(&blocked)
        .blocked_revisions
        .iter()
        .find(|b| b.revision == v3)
        .map(|b| b.blocked_at);
    let reverted = wait_gitsync(ctx, "a revert commit pushed and applied", |g| {
        let s = status(g);
        s.blocked_revisions.iter().any(|b| b.revert_commit.is_some())
            && s.last_applied_revision.as_deref() == repo.head("main").ok().as_deref()
    })
    .await?;
    let revert = status(&reverted)
        .blocked_revisions
        .iter()
        .find_map(|b| b.revert_commit.clone())
        .unwrap_or_default();
    ensure(
        repo.show(&revert, "app/rollout.yaml") == repo.show(&v2, "app/rollout.yaml"),
        || "the revert commit does not restore v2's Rollout".into(),
    )?;
    wait_gitsync(ctx, "the revert healthy", |g| healthy_at(g, &revert)).await?;
    let rollout = ctx.rollout("web").await?;
    ensure(
        rollout.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy),
        || {
            format!(
                "Rollout phase after the revert: {:?}",
                rollout.status.as_ref().and_then(|s| s.phase)
            )
        },
    )?;
    let version = running_version(ctx).await?;
    ensure(version.as_deref() == Some("2"), || {
        format!("running version {version:?}, expected 2")
    })?;

    // Several intervals later v3 has not been applied again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let version = running_version(ctx).await?;
    ensure(version.as_deref() == Some("2"), || {
        format!("version {version:?} running 6 s after the revert")
    })?;
    let gitsyncs: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let history = status(&gitsyncs.get("shop").await?).history;
    let reapplied = history
        .iter()
        .any(|h| h.revision == v3 && h.result.as_deref() == Some("Applied") && Some(h.started_at) > blocked_at);
    ensure(!reapplied, || {
        format!("v3 applied again after being blocked: {history:?}")
    })?;
    Ok(())
}
