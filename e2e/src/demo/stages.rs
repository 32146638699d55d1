//! `sluice demo --stages`: one repository, three stages. GitSync `dev` follows main; `staging` follows
//! dev and `prod` follows staging, each promoting only a revision its upstream has had healthy for 5 s.
//! Each stage renders its own path (`stages/<stage>/`) at the promoted revision, with its own canary
//! gated by analysis. v2 (healthy) travels dev → staging → prod; v3 (failing) is stopped in dev and
//! never reaches staging or prod. The demo checks that it all happened, timestamps included.
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};

use super::app::{Release, V1, V2, V3};
use super::timeline::{self, Commits, Timeline};
use super::{DemoOptions, Stack};
use crate::kit::local_repo::LocalRepo;
use sluice::api::gitsync::{GitSync, GitSyncStatus};
use sluice::gitsync::plan::short;

/// The stages, upstream first.
pub const STAGES: [&str; 3] = ["dev", "staging", "prod"];
/// How long a revision must be healthy upstream before the next stage takes it.
const SOAK: Duration = Duration::from_secs(5);
/// dev's spec.interval: how soon a commit is noticed.
const SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// Each act must finish within this.
const ACT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the demo watches v3 not leaving dev.
const HOLD: Duration = Duration::from_secs(12);

/// The commits the story made.
#[derive(Debug, Clone)]
pub struct StagesOutcome {
    pub v1: String,
    pub v2: String,
    pub v3: String,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<StagesOutcome> {
    let timeline = Timeline::start();
    let stack = Stack::start(&options, timeline).await?;
    for stage in STAGES {
        stack
            .repo
            .write(&format!("stages/{stage}/service.yaml"), &service(stage))?;
    }
    timeline.say(
        "setup",
        format!(
            "Git repository {}: stages/dev, stages/staging, stages/prod — one Service and one Rollout each",
            stack.repo.bare_path().display()
        ),
    );
    let gitsyncs: Api<GitSync> = Api::namespaced(stack.client.clone(), "default");
    let commits = Commits(stack.repo.clone());
    let printers = [
        tokio::spawn(timeline::print_gitsync(
            gitsyncs.clone(),
            commits.clone(),
            timeline,
            |name| format!("gs/{name}"),
        )),
        tokio::spawn(timeline::print_rollout(
            stack.client.clone(),
            stack.prometheus.address.clone(),
            timeline,
            |name| format!("ro/{}", name.trim_start_matches("web-")),
        )),
    ];
    let story = StagesStory {
        repo: stack.repo.clone(),
        commits,
        gitsyncs,
        timeline,
    };
    let result = story.tell().await;
    let result = match result {
        Ok(outcome) => story.conclude(&outcome).await.map(|()| outcome),
        Err(e) => Err(e),
    };
    let keep = options.keep.then(|| {
        format!(
            "\nEverything keeps running. export KUBECONFIG={} and try `sluice get pipeline`, \
             `sluice get gitsync prod`, `sluice hold gitsync prod`. Press Ctrl-C to stop.",
            stack.kubeconfig.display()
        )
    });
    let told = "v2 reached prod only on evidence from each stage; v3 stopped in dev";
    stack.finish(result, timeline, told, keep, printers).await
}

struct StagesStory {
    repo: LocalRepo,
    commits: Commits,
    gitsyncs: Api<GitSync>,
    timeline: Timeline,
}

impl StagesStory {
    async fn tell(&self) -> anyhow::Result<StagesOutcome> {
        let v1 = self.ship(
            &V1,
            "the first version: each stage takes it once the one before has it healthy",
        )?;
        self.create_gitsyncs().await?;
        self.wait_healthy_everywhere(&v1).await?;

        let v2 = self.ship(
            &V2,
            "expect a canary in dev, then 5 s of soak, a canary in staging, 5 s more, a canary in prod",
        )?;
        self.wait_healthy_everywhere(&v2).await?;

        let v3 = self.ship(&V3, "expect the analysis in dev to fail: blocked there, never promoted")?;
        self.wait("v3 blocked in dev and v2 re-applied there", "dev", |s| {
            s.is_blocked(&v3) && s.last_applied_revision.as_deref() == Some(v2.as_str())
        })
        .await?;
        self.timeline.say(
            "demo",
            format!(
                "watching {}s: staging and prod must keep {} although main says {}",
                HOLD.as_secs(),
                short(&v2),
                short(&v3)
            ),
        );
        let until = Instant::now() + HOLD;
        while Instant::now() < until {
            for stage in ["staging", "prod"] {
                let status = self.status(stage).await?;
                if status.last_attempted_revision.as_deref() == Some(v3.as_str())
                    || status.last_applied_revision.as_deref() != Some(v2.as_str())
                {
                    bail!(
                        "{stage} left v2: lastAttemptedRevision {:?}, lastAppliedRevision {:?}",
                        status.last_attempted_revision,
                        status.last_applied_revision
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(StagesOutcome { v1, v2, v3 })
    }

    /// Commits `release` to every stage's path as a person would.
    fn ship(&self, release: &Release, expect: &str) -> anyhow::Result<String> {
        for stage in STAGES {
            self.repo
                .write(&format!("stages/{stage}/rollout.yaml"), &rollout(stage, release))?;
        }
        let sha = self
            .repo
            .commit(&release.subject())
            .with_context(|| format!("committing {}", release.subject()))?;
        self.timeline.say(
            "git",
            format!("commit {} to main: {expect}", self.commits.describe(&sha)),
        );
        Ok(sha)
    }

    /// dev follows main; staging follows dev and prod follows staging, each with a 5 s soak.
    async fn create_gitsyncs(&self) -> anyhow::Result<()> {
        for (index, stage) in STAGES.iter().enumerate() {
            let source = match index.checked_sub(1).map(|i| STAGES[i]) {
                None => serde_json::json!({"repoURL": self.repo.url(), "ref": {"branch": "main"}}),
                Some(upstream) => serde_json::json!({
                    "source": {"fromGitSync": {"name": upstream, "soak": format!("{}s", SOAK.as_secs())}},
                }),
            };
            let mut spec = serde_json::json!({
                "path": format!("stages/{stage}"),
                "interval": format!("{}s", SYNC_INTERVAL.as_secs()),
                "serviceAccountName": super::DEPLOYER,
                "rollback": {"onAnalysisFailure": "pin"},
            });
            for (key, value) in source.as_object().into_iter().flatten() {
                spec[key] = value.clone();
            }
            let gitsync = serde_json::json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
                "metadata": {"name": stage, "namespace": "default"},
                "spec": spec,
            });
            self.gitsyncs
                .create(&PostParams::default(), &serde_json::from_value(gitsync)?)
                .await
                .with_context(|| format!("creating GitSync {stage}"))?;
        }
        self.timeline.say(
            "setup",
            format!(
                "GitSyncs created: dev follows main; staging follows dev, prod follows staging (soak {}s each)",
                SOAK.as_secs()
            ),
        );
        Ok(())
    }

    /// Waits for `revision` healthy in every stage, and checks each stage took it only after its
    /// upstream had it healthy for the soak.
    async fn wait_healthy_everywhere(&self, revision: &str) -> anyhow::Result<()> {
        for stage in STAGES {
            self.wait(&format!("{} healthy in {stage}", short(revision)), stage, |s| {
                s.last_healthy_revision.as_deref() == Some(revision)
            })
            .await?;
        }
        for pair in STAGES.windows(2) {
            let (upstream, downstream) = (self.status(pair[0]).await?, self.status(pair[1]).await?);
            check_soaked(pair[0], &upstream, pair[1], &downstream, revision)?;
        }
        Ok(())
    }

    async fn status(&self, stage: &str) -> anyhow::Result<GitSyncStatus> {
        Ok(self.gitsyncs.get(stage).await?.status.unwrap_or_default())
    }

    async fn wait(&self, what: &str, stage: &str, done: impl Fn(&GitSyncStatus) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + ACT_TIMEOUT;
        loop {
            let status = self.status(stage).await?;
            if done(&status) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {}s waiting for {what}; GitSync {stage} status: {}",
                    ACT_TIMEOUT.as_secs(),
                    serde_json::to_string(&status).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prints the pipeline as `sluice get pipeline` does, then checks the story's end state.
    async fn conclude(&self, outcome: &StagesOutcome) -> anyhow::Result<()> {
        let gitsyncs = self.gitsyncs.list(&Default::default()).await?.items;
        println!("\nsluice get pipeline");
        print!(
            "{}",
            sluice::cli::gitsync_view::render_pipelines(&gitsyncs, Some("default"), Utc::now())
        );
        let dev = self.status("dev").await?;
        let mut failed = Vec::new();
        if !dev.is_blocked(&outcome.v3) {
            failed.push("v3 is blocked in dev".to_string());
        }
        for stage in STAGES {
            let status = self.status(stage).await?;
            if status.last_applied_revision.as_deref() != Some(outcome.v2.as_str()) {
                failed.push(format!("{stage} runs v2"));
            }
            if stage != "dev" && status.history.iter().any(|h| h.revision == outcome.v3) {
                failed.push(format!("{stage} never tried v3"));
            }
        }
        if !failed.is_empty() {
            bail!("not as told: {}", failed.join("; "));
        }
        Ok(())
    }
}

/// The downstream stage started on `revision` (promotedAt) no sooner than the soak after the
/// upstream found it healthy (lastHealthyTime).
fn check_soaked(
    upstream_name: &str,
    upstream: &GitSyncStatus,
    downstream_name: &str,
    downstream: &GitSyncStatus,
    revision: &str,
) -> anyhow::Result<()> {
    let healthy_since: Option<DateTime<Utc>> = upstream
        .last_healthy_time
        .filter(|_| upstream.last_healthy_revision.as_deref() == Some(revision));
    let promotion = downstream.promotion.as_ref();
    let promoted_at = promotion
        .filter(|p| p.revision.as_deref() == Some(revision))
        .and_then(|p| p.promoted_at);
    let (Some(healthy_since), Some(promoted_at)) = (healthy_since, promoted_at) else {
        bail!(
            "{downstream_name} has {} without a record of when {upstream_name} found it healthy ({:?}) or when it was promoted ({:?})",
            short(revision),
            upstream.last_healthy_time,
            promotion
        );
    };
    let soaked = promoted_at - healthy_since;
    if soaked < chrono::Duration::from_std(SOAK)? {
        bail!(
            "{downstream_name} took {} {}ms after {upstream_name} found it healthy: less than the {}s soak",
            short(revision),
            soaked.num_milliseconds(),
            SOAK.as_secs()
        );
    }
    Ok(())
}

fn service(stage: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web-{stage}
  annotations:
    sim.sluice.dev/rps: "40"
spec:
  selector: {{app: web-{stage}}}
  ports: [{{port: 80}}]
"#
    )
}

/// The stage's Rollout at `release`: a short canary gated by the platform's success-rate analysis.
fn rollout(stage: &str, release: &Release) -> String {
    format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web-{stage}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web-{stage}}}
  template:
    metadata:
      labels: {{app: web-{stage}}}
      annotations:
        sim.sluice.dev/error-rate: "{error_rate}"
    spec:
      containers:
      - name: web
        image: {image}
  strategy:
    canary:
      steps:
      - setWeight: 34
      - analysis:
          templates: [{{templateName: sim-success-rate, clusterScope: true}}]
          args: [{{name: service, value: web-{stage}}}]
      - setWeight: 100
"#,
        error_rate = release.error_rate,
        image = release.image(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::api::gitsync::PromotionStatus;
    use sluice::api::rollout::Rollout;

    #[test]
    fn every_stage_release_is_a_valid_rollout_of_its_own_service() {
        for stage in STAGES {
            for release in [V1, V2, V3] {
                let rollout: Rollout = serde_saphyr::from_str(&rollout(stage, &release)).unwrap();
                assert_eq!(rollout.metadata.name.as_deref(), Some(format!("web-{stage}").as_str()));
                assert_eq!(rollout.spec.canary().steps.len(), 3);
            }
        }
    }

    #[test]
    fn a_promotion_before_the_soak_ended_is_caught() {
        let at = |secs| DateTime::from_timestamp(secs, 0);
        let upstream = GitSyncStatus {
            last_healthy_revision: Some("abc".into()),
            last_healthy_time: at(100),
            ..GitSyncStatus::default()
        };
        let promoted = |secs| GitSyncStatus {
            promotion: Some(PromotionStatus {
                revision: Some("abc".into()),
                promoted_at: at(secs),
                ..PromotionStatus::default()
            }),
            ..GitSyncStatus::default()
        };
        assert!(check_soaked("dev", &upstream, "staging", &promoted(105), "abc").is_ok());
        assert!(check_soaked("dev", &upstream, "staging", &promoted(103), "abc").is_err());
        assert!(check_soaked("dev", &upstream, "staging", &GitSyncStatus::default(), "abc").is_err());
    }
}
