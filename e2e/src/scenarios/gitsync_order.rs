//! Ordering and composition of GitSyncs: `dependsOn` (a GitSync waits for its dependency to be Ready
//! at its latest revision; a cycle is refused), sync waves (a migration Job in wave -1 completes
//! before the Deployment of wave 1 is applied), and app-of-apps (a root GitSync applies one GitSync
//! per service and prunes the one that left Git, with what it applied).
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{Value, json};

use super::context::{Ctx, ensure};
use crate::kit::local_repo::LocalRepo;
use sluice::api::conditions;
use sluice::api::gitsync::GitSync;

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}

/// The namespace's `deployer` (deploy/tenant/) and the controller's right to act as it.
async fn onboard(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    for object in crate::kit::tenant_objects(&ctx.namespace)? {
        ctx.create(object).await?;
    }
    Ok(())
}

/// A GitSync of the scenario's repository at `path`, applying as `deployer`.
fn gitsync(name: &str, url: &str, path: &str, extra: Value) -> Value {
    let mut spec = json!({
        "repoURL": url, "ref": {"branch": "main"}, "path": path, "interval": "2s", "timeout": "30s",
        "serviceAccountName": "deployer",
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": name}, "spec": spec})
}

fn config_map(name: &str, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"version": version}})
}

fn ready(gitsync: &GitSync) -> Option<&conditions::Condition> {
    let status = gitsync.status.as_ref()?;
    conditions::find(&status.conditions, conditions::READY)
}

fn ready_is(gitsync: &GitSync, status: bool, reason: &str) -> bool {
    ready(gitsync).is_some_and(|c| c.is_true() == status && c.reason.as_deref() == Some(reason))
}

fn applied(gitsync: &GitSync) -> Option<&str> {
    gitsync.status.as_ref()?.last_applied_revision.as_deref()
}

/// Waits for GitSync `name` to pass `check`; a timeout shows its status.
async fn wait_gitsync(
    ctx: &Ctx<'_>,
    name: &str,
    what: &str,
    check: impl Fn(&GitSync) -> bool,
) -> anyhow::Result<GitSync> {
    let gitsyncs: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let result = ctx
        .eventually(what, || async {
            Ok(gitsyncs.get_opt(name).await?.filter(|g| check(g)))
        })
        .await;
    match result {
        Ok(gitsync) => Ok(gitsync),
        Err(e) => {
            let last = gitsyncs.get_opt(name).await.ok().flatten().and_then(|g| g.status);
            Err(e.context(format!(
                "GitSync {name} status: {}",
                serde_json::to_string(&last).unwrap_or_default()
            )))
        }
    }
}

/// The scenario's own grant: `deployer` may run Jobs here (deploy/tenant/ leaves Jobs out; a
/// repository with a migration Job adds this).
async fn grant_jobs(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    ctx.create(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deployer-jobs"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create", "patch", "delete"]}],
    }))
    .await?;
    ctx.create(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer-jobs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer-jobs"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ctx.namespace}],
    }))
    .await
}

/// `api` dependsOn `db`: while db fails to render, api applies nothing and names db; once db is
/// fixed, api applies — its migration Job (wave -1) complete before its Deployment (wave 1) is
/// created. Then two GitSyncs depending on each other are refused with DependencyCycle.
pub async fn depends_on(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let location = ctx.target.git_repository(&ctx.namespace)?;
    let repo = LocalRepo::create(&location.dir)?;
    let url = location.url.clone().unwrap_or_else(|| repo.url());
    repo.write(
        "db/schema.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [db-schema\n",
    )?;
    let migrate = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "api-migrate", "annotations": {"sluice.dev/sync-wave": "-1"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"sim.sluice.dev/run-duration": "4s"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "migrate", "image": "busybox:1.36", "command": ["sleep", "4"]}]},
        }},
    });
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "annotations": {"sluice.dev/sync-wave": "1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                 "template": ctx.target.workload().pod_template("api", 1, 0.0)},
    });
    repo.write("api/migrate.yaml", &yaml(&migrate)?)?;
    repo.write("api/deployment.yaml", &yaml(&deployment)?)?;
    repo.write("api/config.yaml", &yaml(&config_map("api-config", "1"))?)?;
    let broken = repo.commit("db: a typo; api v1")?;
    onboard(ctx).await?;
    grant_jobs(ctx).await?;
    ctx.create(gitsync("db", &url, "db", json!({}))).await?;
    ctx.create(gitsync("api", &url, "api", json!({"dependsOn": [{"name": "db"}]})))
        .await?;

    let db = wait_gitsync(ctx, "db", "db failing to render", |g| {
        ready(g).is_some_and(|c| !c.is_true() && c.reason.as_deref() == Some("SyncFailed"))
    })
    .await?;
    // First db "has no Ready condition yet", then its failure, quoted.
    let says_why = format!("GitSync {}/db is not Ready (SyncFailed)", ctx.namespace);
    let waiting = wait_gitsync(ctx, "api", "api waiting for db, saying why", |g| {
        ready_is(g, false, "DependencyNotReady")
            && ready(g)
                .and_then(|c| c.message.as_deref())
                .is_some_and(|m| m.contains(&says_why))
    })
    .await?;
    ensure(applied(&waiting).is_none(), || {
        format!("api applied {:?} while db was failing", applied(&waiting))
    })?;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    ensure(config_maps.get_opt("api-config").await?.is_none(), || {
        "api-config exists although api waits for db".into()
    })?;
    ensure(applied(&db).is_none(), || {
        "db applied a revision that does not render".into()
    })?;

    repo.write("db/schema.yaml", &yaml(&config_map("db-schema", "1"))?)?;
    let fixed = repo.commit("db: fixed")?;
    ensure(fixed != broken, || "no new commit".into())?;
    wait_gitsync(ctx, "db", "db Ready at the fix", |g| {
        ready_is(g, true, "Succeeded") && applied(g) == Some(fixed.as_str())
    })
    .await?;
    wait_gitsync(ctx, "api", "api applied and Ready once db is", |g| {
        ready_is(g, true, "Succeeded") && applied(g) == Some(fixed.as_str())
    })
    .await?;
    ensure(config_maps.get_opt("api-config").await?.is_some(), || {
        "api-config missing after api applied".into()
    })?;

    // Waves: the Job of wave -1 had completed when the Deployment of wave 1 was created.
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let completed = jobs
        .get("api-migrate")
        .await?
        .status
        .and_then(|s| s.completion_time)
        .map(|t| t.0);
    let created = deployments.get("api").await?.metadata.creation_timestamp.map(|t| t.0);
    ensure(
        matches!((completed, created), (Some(done), Some(created)) if created >= done),
        || format!("wave order: Job api-migrate completed at {completed:?}, Deployment api created at {created:?}"),
    )?;

    // A cycle: loop-a → loop-b → loop-a, refused on both with the cycle spelled out.
    ctx.create(gitsync(
        "loop-a",
        &url,
        "db",
        json!({"dependsOn": [{"name": "loop-b"}]}),
    ))
    .await?;
    ctx.create(gitsync(
        "loop-b",
        &url,
        "db",
        json!({"dependsOn": [{"name": "loop-a"}]}),
    ))
    .await?;
    let stalled = wait_gitsync(ctx, "loop-a", "loop-a stalled on the cycle", |g| {
        let status = g.status.clone().unwrap_or_default();
        conditions::find(&status.conditions, conditions::STALLED)
            .is_some_and(|c| c.is_true() && c.reason.as_deref() == Some("DependencyCycle"))
    })
    .await?;
    let message = ready(&stalled).and_then(|c| c.message.clone()).unwrap_or_default();
    let ns = &ctx.namespace;
    ensure(
        message.contains(&format!("{ns}/loop-a → {ns}/loop-b → {ns}/loop-a")),
        || format!("the cycle is not spelled out: {message}"),
    )?;
    ensure(applied(&stalled).is_none(), || "loop-a applied something".into())?;
    Ok(())
}

/// A root GitSync applies one GitSync per service (each its own path of the same repository), as
/// its own identity; both apply and become Ready; the one removed from Git is pruned with what it
/// applied, the other stays until the root is deleted.
pub async fn app_of_apps(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let location = ctx.target.git_repository(&ctx.namespace)?;
    let repo = LocalRepo::create(&location.dir)?;
    let url = location.url.clone().unwrap_or_else(|| repo.url());
    for service in ["cart", "search"] {
        repo.write(
            &format!("services/{service}/config.yaml"),
            &yaml(&config_map(&format!("{service}-config"), "1"))?,
        )?;
        repo.write(
            &format!("apps/{service}.yaml"),
            &yaml(&gitsync(service, &url, &format!("services/{service}"), json!({})))?,
        )?;
    }
    let first = repo.commit("two services")?;
    onboard(ctx).await?;
    ctx.create(gitsync("root", &url, "apps", json!({}))).await?;
    wait_gitsync(ctx, "root", "the root applied", |g| applied(g) == Some(first.as_str())).await?;
    for service in ["cart", "search"] {
        let child = wait_gitsync(ctx, service, &format!("{service} applied and Ready"), |g| {
            ready_is(g, true, "Succeeded") && applied(g) == Some(first.as_str())
        })
        .await?;
        let owner = child
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("sluice.dev/gitsync"))
            .cloned();
        ensure(owner == Some(format!("{}.root", ctx.namespace)), || {
            format!("{service}'s sluice.dev/gitsync label is {owner:?}")
        })?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    ensure(config_maps.get_opt("search-config").await?.is_some(), || {
        "search-config missing".into()
    })?;

    repo.remove("apps/search.yaml")?;
    let second = repo.commit("search retired")?;
    wait_gitsync(ctx, "root", "the root applied the removal", |g| {
        applied(g) == Some(second.as_str())
    })
    .await?;
    let gitsyncs: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    ctx.eventually("search and what it applied deleted", || async {
        let gone = gitsyncs.get_opt("search").await?.is_none() && config_maps.get_opt("search-config").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;
    ensure(gitsyncs.get_opt("cart").await?.is_some(), || {
        "cart was pruned too".into()
    })?;
    ensure(config_maps.get_opt("cart-config").await?.is_some(), || {
        "cart-config was deleted".into()
    })?;

    // Deleting the root deletes its children, and each child what it applied.
    gitsyncs.delete("root", &Default::default()).await?;
    ctx.eventually("root, cart and cart-config deleted", || async {
        let gone = gitsyncs.get_opt("root").await?.is_none()
            && gitsyncs.get_opt("cart").await?.is_none()
            && config_maps.get_opt("cart-config").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;
    Ok(())
}
