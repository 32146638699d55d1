//! The story, act by act, driven only by commits: v1 is applied and healthy; v2 canaries to 100% on
//! passing analysis; v3 fails analysis at 20%, is blocked, and the GitSync pins v2 — and keeps it
//! while Git still says v3. Then the summary, and the checks that it all happened.
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::app::{self, Release, V1, V2, V3};
use super::timeline::{Commits, Timeline};
use crate::kit::local_repo::LocalRepo;
use sluice::api::gitsync::{GitSync, GitSyncStatus};
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice::gitsync::REQUESTED_AT_ANNOTATION;
use sluice::gitsync::plan::short;

/// Each act must finish within this.
const ACT_TIMEOUT: Duration = Duration::from_secs(90);
/// How many sync intervals the demo watches v3 not coming back.
const HOLD_INTERVALS: u32 = 3;
/// The GitSync's spec.interval: how soon a commit is noticed.
const SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// A moment for the timeline's watchers to print what led to the rollback before the story narrates it.
const SETTLE: Duration = Duration::from_millis(500);
const GITSYNC_NAME: &str = "web";
const ROLLOUT_NAME: &str = "web";

/// The commits the story made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub v1: String,
    pub v2: String,
    pub v3: String,
}

pub struct Story {
    pub repo: LocalRepo,
    pub commits: Commits,
    pub gitsyncs: Api<GitSync>,
    pub rollouts: Api<Rollout>,
    pub timeline: Timeline,
}

impl Story {
    pub async fn tell(&self) -> anyhow::Result<Outcome> {
        let v1 = self.ship(
            &V1,
            "the first version rolls out at once (there is nothing to compare it with)",
        )?;
        self.create_gitsync().await?;
        self.wait_gitsync("v1 recorded healthy", |s| {
            s.last_healthy_revision.as_deref() == Some(v1.as_str())
        })
        .await?;

        let v2 = self.ship(&V2, "expect a canary: 20% → analysis → 50% → pause 5s → 100%")?;
        self.wait_gitsync("v2 recorded healthy", |s| {
            s.last_healthy_revision.as_deref() == Some(v2.as_str())
        })
        .await?;

        let v3 = self.ship(
            &V3,
            "expect the analysis at 20% to fail, the canary to abort and v3 to be blocked",
        )?;
        self.wait_gitsync("v3 blocked and v2 re-applied", |s| {
            s.is_blocked(&v3) && s.last_applied_revision.as_deref() == Some(v2.as_str())
        })
        .await?;
        self.wait_rollout("the Rollout Healthy on v2 again", |r| healthy_on(r, &v2))
            .await?;
        // The timeline's watchers print what led here first.
        tokio::time::sleep(SETTLE).await;
        self.timeline.say(
            "demo",
            format!(
                "rolled back: all traffic and pods on {} — Git main still says {}",
                self.commits.describe(&v2),
                short(&v3)
            ),
        );
        self.hold(&v2, &v3).await?;
        Ok(Outcome { v1, v2, v3 })
    }

    /// Commits `release` as a person would; the GitSync picks it up on its next interval.
    fn ship(&self, release: &Release, expect: &str) -> anyhow::Result<String> {
        let sha = app::commit(&self.repo, release).with_context(|| format!("committing {}", release.subject()))?;
        self.timeline.say(
            "git",
            format!("commit {} to main: {expect}", self.commits.describe(&sha)),
        );
        Ok(sha)
    }

    /// The platform points a GitSync at the repository: it applies app/ of main, and pins the last
    /// healthy revision when a canary fails.
    async fn create_gitsync(&self) -> anyhow::Result<()> {
        let gitsync = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
            "metadata": {"name": GITSYNC_NAME, "namespace": "default"},
            "spec": {
                "repoURL": self.repo.url(), "ref": {"branch": "main"}, "path": app::APP_PATH,
                "interval": format!("{}s", SYNC_INTERVAL.as_secs()),
                "serviceAccountName": super::DEPLOYER,
                "rollback": {"onAnalysisFailure": "pin"},
            },
        });
        self.gitsyncs
            .create(&PostParams::default(), &serde_json::from_value(gitsync)?)
            .await
            .context("creating the GitSync")?;
        self.timeline.say(
            "setup",
            format!(
                "GitSync {GITSYNC_NAME} created: applies {}/ of branch main every {}s; rollback.onAnalysisFailure: pin",
                app::APP_PATH,
                SYNC_INTERVAL.as_secs()
            ),
        );
        Ok(())
    }

    /// Watches the GitSync keep `healthy` applied for a few intervals while main stays at `blocked`,
    /// then asks for one more sync (as a webhook would) to show it fetches and still says no.
    async fn hold(&self, healthy: &str, blocked: &str) -> anyhow::Result<()> {
        let generation = self.rollouts.get(ROLLOUT_NAME).await?.metadata.generation;
        let hold = SYNC_INTERVAL * HOLD_INTERVALS;
        self.timeline.say(
            "demo",
            format!(
                "watching {HOLD_INTERVALS} sync intervals ({}s): Git still says {}, which a plain GitOps sync would re-apply now",
                hold.as_secs(),
                short(blocked)
            ),
        );
        let until = Instant::now() + hold;
        while Instant::now() < until {
            self.still_on(healthy, generation).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let requested = chrono::Utc::now().to_rfc3339();
        let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: requested}}});
        self.gitsyncs
            .patch(GITSYNC_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.wait_gitsync("the requested sync", |s| {
            s.last_handled_requested_at.as_deref() == Some(requested.as_str())
        })
        .await?;
        self.still_on(healthy, generation).await?;
        self.timeline.say(
            "demo",
            format!(
                "{HOLD_INTERVALS} intervals and one sync on request ({REQUESTED_AT_ANNOTATION}) later: main is still {}, \
                 the cluster still runs {}, the Rollout was not touched",
                short(blocked),
                short(healthy)
            ),
        );
        Ok(())
    }

    /// Fails when anything but `healthy` was applied or the Rollout changed since `generation`.
    async fn still_on(&self, healthy: &str, generation: Option<i64>) -> anyhow::Result<()> {
        let status = self.gitsync_status().await?;
        let rollout = self.rollouts.get(ROLLOUT_NAME).await?;
        if status.last_applied_revision.as_deref() != Some(healthy) || rollout.metadata.generation != generation {
            bail!(
                "the blocked revision was applied again: lastAppliedRevision {:?}, Rollout generation {:?} (was {generation:?})",
                status.last_applied_revision,
                rollout.metadata.generation
            );
        }
        Ok(())
    }

    /// Prints what Git and the cluster say now, then checks it is what the story promised.
    pub async fn conclude(&self, outcome: &Outcome) -> anyhow::Result<()> {
        let status = self.gitsync_status().await?;
        let rollout = self.rollouts.get(ROLLOUT_NAME).await?;
        let describe = |sha: &str| self.commits.describe(sha);
        let describe_opt = |sha: &Option<String>| sha.as_deref().map_or("none".into(), describe);
        let head = self.repo.head("main")?;
        println!("\nSummary");
        println!(
            "  Git      main is at {} ({} commits; rollback pin leaves Git as it is)",
            describe(&head),
            self.repo.log_subjects("main").len()
        );
        println!(
            "  GitSync  lastAttemptedRevision {}   what Git says\n           lastAppliedRevision   {}   what the cluster runs\n           lastHealthyRevision   {}",
            describe_opt(&status.last_attempted_revision),
            describe_opt(&status.last_applied_revision),
            describe_opt(&status.last_healthy_revision),
        );
        for blocked in &status.blocked_revisions {
            println!(
                "           blockedRevisions      {}: {}",
                short(&blocked.revision),
                blocked.reason
            );
        }
        let rollout_status = rollout.status.clone().unwrap_or_default();
        println!(
            "  Rollout  {ROLLOUT_NAME} {}: {}/{} pods available of {} (stable {}), canary weight {}%",
            rollout_status
                .phase
                .map_or("without a phase".into(), |p| format!("{p:?}")),
            rollout_status.available_replicas.unwrap_or(0),
            rollout.spec.replicas.unwrap_or(1),
            image(&rollout).as_deref().unwrap_or("no image"),
            rollout_status
                .stable_revision
                .as_ref()
                .and_then(|r| r.git_revision.as_deref())
                .map_or("unknown commit", short),
            rollout_status.canary_weight.unwrap_or(0),
        );
        println!(
            "  → Git declares v3; the cluster runs v2, the last revision that proved healthy, until main moves on.\n"
        );
        check(outcome, &status, &rollout)
    }

    async fn gitsync_status(&self) -> anyhow::Result<GitSyncStatus> {
        Ok(self.gitsyncs.get(GITSYNC_NAME).await?.status.unwrap_or_default())
    }

    async fn wait_gitsync(&self, what: &str, done: impl Fn(&GitSyncStatus) -> bool) -> anyhow::Result<()> {
        wait_until(
            what,
            async || self.gitsync_status().await,
            done,
            |status| format!("GitSync status: {}", serde_json::to_string(status).unwrap_or_default()),
        )
        .await
    }

    async fn wait_rollout(&self, what: &str, done: impl Fn(&Rollout) -> bool) -> anyhow::Result<()> {
        wait_until(
            what,
            async || Ok(self.rollouts.get(ROLLOUT_NAME).await?),
            done,
            |rollout| {
                format!(
                    "Rollout status: {}",
                    serde_json::to_string(&rollout.status).unwrap_or_default()
                )
            },
        )
        .await
    }
}

/// Observes until `done` holds; after ACT_TIMEOUT fails with `report` of what was seen last.
async fn wait_until<T>(
    what: &str,
    mut observe: impl AsyncFnMut() -> anyhow::Result<T>,
    done: impl Fn(&T) -> bool,
    report: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ACT_TIMEOUT;
    loop {
        let seen = observe().await?;
        if done(&seen) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {}s waiting for {what}; {}",
                ACT_TIMEOUT.as_secs(),
                report(&seen)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Healthy at its current generation, with `revision`'s pods stable and no canary.
fn healthy_on(rollout: &Rollout, revision: &str) -> bool {
    let Some(status) = &rollout.status else { return false };
    status.phase == Some(RolloutPhase::Healthy)
        && status.observed_generation == rollout.metadata.generation
        && status.stable_revision.as_ref().and_then(|r| r.git_revision.as_deref()) == Some(revision)
        && status.current_pod_hash == status.stable_rs
        && status.canary_weight.unwrap_or(0) == 0
}

fn image(rollout: &Rollout) -> Option<String> {
    rollout.spec.template.spec().spec?.containers.first()?.image.clone()
}

/// Every promise of the story, each failure named.
fn check(outcome: &Outcome, status: &GitSyncStatus, rollout: &Rollout) -> anyhow::Result<()> {
    let Outcome { v2, v3, .. } = outcome;
    let rollout_status = rollout.status.clone().unwrap_or_default();
    let checks = [
        (
            status.last_attempted_revision.as_deref() == Some(v3.as_str()),
            "lastAttemptedRevision is v3 (what Git says)",
        ),
        (
            status.last_applied_revision.as_deref() == Some(v2.as_str()),
            "lastAppliedRevision is v2",
        ),
        (
            status.last_healthy_revision.as_deref() == Some(v2.as_str()),
            "lastHealthyRevision is v2",
        ),
        (status.is_blocked(v3), "v3 is in blockedRevisions"),
        (
            rollout_status.phase == Some(RolloutPhase::Healthy),
            "the Rollout is Healthy",
        ),
        (healthy_on(rollout, v2), "v2 is stable and healthy"),
        (rollout_status.canary_weight.unwrap_or(0) == 0, "the canary weight is 0"),
        (image(rollout) == Some(V2.image()), "the Rollout runs v2's image"),
    ];
    let failed: Vec<&str> = checks.iter().filter(|(ok, _)| !ok).map(|(_, what)| *what).collect();
    if !failed.is_empty() {
        bail!(
            "not as told: {}. GitSync status: {}; Rollout status: {}",
            failed.join("; "),
            serde_json::to_string(status)?,
            serde_json::to_string(&rollout.status)?
        );
    }
    Ok(())
}
