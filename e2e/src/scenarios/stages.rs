//! Stages: three GitSyncs over one repository — dev follows `main`, staging follows dev, prod follows
//! staging, each soaking 5 s — each rendering its own overlay with its own analysis-gated Rollout. A
//! healthy commit travels dev → staging → prod on evidence; a commit failing analysis in dev stops
//! there; hold and forced promotion (`sluice hold|promote gitsync`) behave as documented.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kube::api::Api;
use serde_json::{Value, json};

use super::context::{Ctx, ensure};
use super::target::Workload;
use crate::kit::local_repo::LocalRepo;
use sluice::api::gitsync::{GitSync, GitSyncStatus, PromotionStatus};
use sluice::cli::Target as CliTarget;

const STAGES: [&str; 3] = ["dev", "staging", "prod"];
const SOAK: TimeDelta = TimeDelta::seconds(5);

fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(value)?)
}

/// Writes version `version` of every stage's overlay (`overlays/<stage>`: Service, AnalysisTemplate
/// and Rollout `web-<stage>`) and commits it.
fn commit_version(ctx: &Ctx<'_>, repo: &LocalRepo, version: u32, error_rate: f64) -> anyhow::Result<String> {
    for stage in STAGES {
        let app = format!("web-{stage}");
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": app, "annotations": {"sim.sluice.dev/rps": "100"}},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let mut template = super::analysis::success_rate_template(ctx, &app)?;
        template["metadata"]["name"] = json!(format!("success-rate-{stage}"));
        let rollout = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": app},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": app}},
                "template": ctx.target.workload().pod_template(&app, version, error_rate),
                "strategy": {"canary": {"steps": [
                    {"setWeight": 50},
                    {"analysis": {"templates": [{"templateName": format!("success-rate-{stage}")}],
                                  "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}},
                ]}},
            },
        });
        repo.write(&format!("overlays/{stage}/service.yaml"), &yaml(&service)?)?;
        repo.write(&format!("overlays/{stage}/analysis.yaml"), &yaml(&template)?)?;
        repo.write(&format!("overlays/{stage}/rollout.yaml"), &yaml(&rollout)?)?;
    }
    repo.commit(&format!("web v{version}"))
}

fn status(gitsync: &GitSync) -> GitSyncStatus {
    gitsync.status.clone().unwrap_or_default()
}

fn promotion(gitsync: &GitSync) -> PromotionStatus {
    status(gitsync).promotion.unwrap_or_default()
}

struct Stages<'a> {
    ctx: &'a Ctx<'a>,
    api: Api<GitSync>,
}

impl Stages<'_> {
    async fn get(&self, stage: &str) -> anyhow::Result<GitSync> {
        Ok(self.api.get(stage).await?)
    }

    /// Waits until GitSync `stage` passes `check`; a timeout reports every stage's status.
    async fn wait(&self, stage: &str, what: &str, check: impl Fn(&GitSync) -> bool) -> anyhow::Result<GitSync> {
        let result = self
            .ctx
            .eventually(what, || async {
                Ok(self.api.get_opt(stage).await?.filter(|g| check(g)))
            })
            .await;
        match result {
            Ok(gitsync) => Ok(gitsync),
            Err(e) => {
                let mut report = String::new();
                for stage in STAGES {
                    let last = self.api.get_opt(stage).await.ok().flatten().and_then(|g| g.status);
                    report.push_str(&format!(
                        "\n{stage}: {}",
                        serde_json::to_string(&last).unwrap_or_default()
                    ));
                }
                Err(e.context(format!("GitSync statuses:{report}")))
            }
        }
    }

    async fn wait_healthy(&self, stage: &str, revision: &str, what: &str) -> anyhow::Result<GitSync> {
        self.wait(stage, what, |g| {
            status(g).last_healthy_revision.as_deref() == Some(revision)
        })
        .await
    }

    /// The version Rollout `web-<stage>` runs.
    async fn version(&self, stage: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .ctx
            .rollouts()
            .get_opt(&format!("web-{stage}"))
            .await?
            .as_ref()
            .and_then(Workload::version_of))
    }

    /// `stage` promoted `revision` from its upstream only after the upstream had it healthy for the
    /// soak: the promotion record's time against the upstream's lastHealthyTime.
    async fn check_soaked(&self, stage: &str, upstream: &str, revision: &str) -> anyhow::Result<TimeDelta> {
        let promoted = promotion(&self.get(stage).await?);
        let record = promoted
            .history
            .iter()
            .rev()
            .find(|r| r.revision == revision)
            .ok_or_else(|| anyhow::anyhow!("{stage} has no promotion record of {revision}: {promoted:?}"))?;
        let from = format!("{}/{upstream}", self.ctx.namespace);
        ensure(!record.forced && record.from == from, || {
            format!("{stage}: {record:?}, expected an automatic promotion from {from}")
        })?;
        let upstream_status = status(&self.get(upstream).await?);
        let healthy_since: Option<DateTime<Utc>> = (upstream_status.last_healthy_revision.as_deref() == Some(revision))
            .then_some(upstream_status.last_healthy_time)
            .flatten();
        let since = healthy_since.ok_or_else(|| anyhow::anyhow!("{upstream} no longer has {revision} healthy"))?;
        let soaked = record.at - since;
        ensure(soaked >= SOAK, || {
            format!("{stage} promoted {revision} {soaked} after {upstream} had it healthy, soak is {SOAK}")
        })?;
        Ok(soaked)
    }
}

pub async fn promotion_chain(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let location = ctx.target.git_repository(&ctx.namespace)?;
    let repo = LocalRepo::create(&location.dir)?;
    let url = location.url.clone().unwrap_or_else(|| repo.url());
    let v1 = commit_version(ctx, &repo, 1, 0.0)?;
    // deploy/tenant/: the GitSyncs apply, and read their upstreams, as `deployer`.
    for object in crate::kit::tenant_objects(&ctx.namespace)? {
        ctx.create(object).await?;
    }
    let common = json!({"interval": "2s", "timeout": "30s", "serviceAccountName": "deployer"});
    let mut specs = [
        json!({"repoURL": url, "ref": {"branch": "main"}, "path": "overlays/dev"}),
        json!({"source": {"fromGitSync": {"name": "dev", "soak": "5s"}}, "path": "overlays/staging"}),
        json!({"source": {"fromGitSync": {"name": "staging", "soak": "5s"}}, "path": "overlays/prod"}),
    ];
    for (stage, spec) in STAGES.iter().zip(specs.iter_mut()) {
        for (key, value) in common.as_object().into_iter().flatten() {
            spec[key] = value.clone();
        }
        ctx.create(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
            "metadata": {"name": stage}, "spec": spec}))
            .await?;
    }
    let stages = Stages {
        ctx,
        api: Api::namespaced(ctx.client.clone(), &ctx.namespace),
    };

    // v1 travels the chain; each promotion after its upstream's soak.
    stages.wait_healthy("prod", &v1, "v1 healthy in prod").await?;
    stages.check_soaked("staging", "dev", &v1).await?;
    stages.check_soaked("prod", "staging", &v1).await?;

    // A healthy v2: canaried and analysed in each stage in turn.
    let v2 = commit_version(ctx, &repo, 2, 0.0)?;
    stages.wait_healthy("dev", &v2, "v2 healthy in dev").await?;
    let staging = stages.get("staging").await?;
    ensure(
        status(&staging).last_applied_revision.as_deref() == Some(v1.as_str()),
        || "staging applied v2 before dev's soak".into(),
    )?;
    stages.wait_healthy("prod", &v2, "v2 healthy in prod").await?;
    let staging_soak = stages.check_soaked("staging", "dev", &v2).await?;
    let prod_soak = stages.check_soaked("prod", "staging", &v2).await?;
    tracing::info!(%staging_soak, %prod_soak, "v2 promoted into staging and prod this long after their upstream had it healthy");
    for stage in STAGES {
        let version = stages.version(stage).await?;
        ensure(version.as_deref() == Some("2"), || {
            format!("{stage} runs version {version:?}")
        })?;
    }

    // v3 fails analysis in dev: blocked there, never applied to staging or prod.
    let v3 = commit_version(ctx, &repo, 3, 0.4)?;
    stages
        .wait("dev", "v3 blocked in dev after its canary failed analysis", |g| {
            status(g).is_blocked(&v3)
        })
        .await?;
    for _ in 0..10 {
        for stage in ["staging", "prod"] {
            let gitsync = stages.get(stage).await?;
            let (s, p) = (status(&gitsync), promotion(&gitsync));
            ensure(p.revision.as_deref() == Some(v2.as_str()), || {
                format!("{stage} promoted {:?} after v3 was blocked in dev", p.revision)
            })?;
            ensure(s.last_applied_revision.as_deref() == Some(v2.as_str()), || {
                format!(
                    "{stage} applied {:?} after v3 was blocked in dev",
                    s.last_applied_revision
                )
            })?;
            ensure(!s.history.iter().any(|h| h.revision == v3), || {
                format!("{stage} tried v3: {:?}", s.history)
            })?;
            let version = stages.version(stage).await?;
            ensure(version.as_deref() == Some("2"), || {
                format!("{stage} runs version {version:?}")
            })?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Hold prod: v4 reaches staging and soaks there, prod keeps v2 until the hold is released.
    let cli = CliTarget::new(ctx.client.clone(), &ctx.namespace, Duration::from_secs(10));
    sluice::cli::gitsync::hold(&cli, "prod", false).await?;
    let v4 = commit_version(ctx, &repo, 4, 0.0)?;
    let staging = stages.wait_healthy("staging", &v4, "v4 healthy in staging").await?;
    let soaked_at = status(&staging).last_healthy_time.unwrap_or_else(Utc::now) + SOAK;
    stages
        .wait("prod", "prod says v4 is ready but held", |g| {
            let p = promotion(g);
            p.candidate.as_deref() == Some(v4.as_str()) && p.waiting.as_deref().is_some_and(|w| w.contains("held"))
        })
        .await?;
    let left = (soaked_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(3)).await;
    let prod = stages.get("prod").await?;
    ensure(promotion(&prod).revision.as_deref() == Some(v2.as_str()), || {
        format!("prod promoted {:?} while held", promotion(&prod).revision)
    })?;
    let refused = sluice::cli::gitsync::promote(&cli, "prod", None, Utc::now()).await;
    ensure(refused.is_err(), || "sluice promote gitsync went through a hold".into())?;
    sluice::cli::gitsync::hold(&cli, "prod", true).await?;
    stages
        .wait("prod", "v4 promoted into prod once released", |g| {
            promotion(g).revision.as_deref() == Some(v4.as_str())
        })
        .await?;

    // Forced promotions: a revision blocked upstream is refused; an older healthy one goes (its
    // abbreviated SHA resolved), and stays — prod does not snap back to staging's v4.
    sluice::cli::gitsync::promote(&cli, "prod", Some(&v3), Utc::now()).await?;
    let refused = stages
        .wait("prod", "the forced promotion of blocked v3 handled", |g| {
            promotion(g)
                .last_handled_promote_request
                .as_deref()
                .is_some_and(|r| r.ends_with(&v3))
        })
        .await?;
    ensure(promotion(&refused).revision.as_deref() == Some(v4.as_str()), || {
        format!(
            "prod promoted {:?} on a forced request for blocked v3",
            promotion(&refused).revision
        )
    })?;
    sluice::cli::gitsync::promote(&cli, "prod", Some(&v1[..10]), Utc::now()).await?;
    let forced = stages
        .wait("prod", "v1 forced into prod and applied", |g| {
            promotion(g).revision.as_deref() == Some(v1.as_str())
                && status(g).last_applied_revision.as_deref() == Some(v1.as_str())
        })
        .await?;
    let record = promotion(&forced).history.last().cloned();
    ensure(
        record
            .as_ref()
            .is_some_and(|r| r.forced && r.from == "sluice promote" && r.revision == v1),
        || format!("the forced promotion's record: {record:?}"),
    )?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let prod = stages.get("prod").await?;
    ensure(promotion(&prod).revision.as_deref() == Some(v1.as_str()), || {
        format!("prod went from forced v1 back to {:?}", promotion(&prod).revision)
    })?;
    Ok(())
}
