//! The demo's live timeline: one line per thing a reader should notice, tagged with who did it —
//! `git` (a person committing), `gitsync` (what the GitSync fetched, applied, blocked, pinned, judged
//! healthy) and `rollout` (step, weights, the success rate Prometheus measures, the analysis verdict).
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::kit::local_repo::LocalRepo;
use crate::kit::prometheus;
use sluice::api::analysis::AnalysisRun;
use sluice::api::conditions;
use sluice::api::gitsync::{GitSync, GitSyncStatus};
use sluice::api::rollout::{Rollout, RolloutStatus};
use sluice::gitsync::plan::short;

/// Prints lines stamped with the time since the demo started.
#[derive(Clone, Copy)]
pub struct Timeline(Instant);

impl Timeline {
    pub fn start() -> Self {
        Timeline(Instant::now())
    }

    pub fn say(&self, who: &str, line: impl AsRef<str>) {
        println!("[{:>6.1}s] {who:<8} {}", self.0.elapsed().as_secs_f64(), line.as_ref());
    }
}

/// Names commits as `1a2b3c4d "web v2: …"` from the demo's repository.
#[derive(Clone)]
pub struct Commits(pub LocalRepo);

impl Commits {
    pub fn describe(&self, sha: &str) -> String {
        match self.0.message(sha).as_deref().and_then(|m| m.lines().next()) {
            Some(subject) => format!("{} \"{subject}\"", short(sha)),
            None => short(sha).to_string(),
        }
    }
}

/// Prints what changed in each GitSync's status, as it happens; `who` tags a GitSync's lines by its name.
pub async fn print_gitsync(gitsyncs: Api<GitSync>, commits: Commits, timeline: Timeline, who: fn(&str) -> String) {
    let mut previous: HashMap<String, GitSyncStatus> = HashMap::new();
    let mut changes = watcher(gitsyncs, watcher::Config::default()).applied_objects().boxed();
    while let Some(next) = changes.next().await {
        // A watch error is retried by the watcher; the next event carries the whole status anyway.
        let Ok(gitsync) = next else { continue };
        let name = gitsync.name_any();
        let status = gitsync.status.unwrap_or_default();
        let old = previous.remove(&name).unwrap_or_default();
        for line in gitsync_news(&old, &status, |sha| commits.describe(sha)) {
            timeline.say(&who(&name), line);
        }
        previous.insert(name, status);
    }
}

/// What a reader needs to know about a GitSync status change, in the order it happened within one
/// sync: fetched, blocked, applied (or pinned), healthy, and the Ready condition when its reason changes.
pub fn gitsync_news(old: &GitSyncStatus, new: &GitSyncStatus, describe: impl Fn(&str) -> String) -> Vec<String> {
    let mut news = Vec::new();
    let promotion = new.promotion.as_ref();
    if let Some(candidate) = changed(
        &old.promotion.as_ref().and_then(|p| p.candidate.clone()),
        &promotion.and_then(|p| p.candidate.clone()),
    ) {
        let soak = promotion
            .and_then(|p| p.soak_until)
            .map(|until| format!(", soaking until {}", until.format("%H:%M:%S")))
            .unwrap_or_default();
        news.push(format!("healthy upstream: {}{soak}", describe(candidate)));
    }
    if let Some(head) = changed(&old.last_attempted_revision, &new.last_attempted_revision) {
        match promotion.and_then(|p| p.from.as_deref()) {
            Some(from) => news.push(format!("PROMOTED from {from}: {}", describe(head))),
            None => news.push(format!("fetched main: {}", describe(head))),
        }
    }
    for blocked in &new.blocked_revisions {
        if !old.is_blocked(&blocked.revision) {
            news.push(format!(
                "BLOCKED {} (not applied again until main moves on): {}",
                describe(&blocked.revision),
                blocked.reason
            ));
        }
    }
    if let Some(applied) = changed(&old.last_applied_revision, &new.last_applied_revision) {
        let head = new.last_attempted_revision.as_deref();
        match head.filter(|head| *head != applied && new.is_blocked(head)) {
            Some(blocked_head) => news.push(format!(
                "PINNED: re-applied the last healthy revision {} in place of blocked {}",
                describe(applied),
                short(blocked_head)
            )),
            None => {
                let details = new
                    .history
                    .iter()
                    .rev()
                    .find(|h| h.revision == applied && h.result.as_deref() == Some("Applied"))
                    .and_then(|h| h.message.as_deref())
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                news.push(format!("applied {}{details}", describe(applied)));
            }
        }
    }
    if let Some(healthy) = changed(&old.last_healthy_revision, &new.last_healthy_revision) {
        news.push(format!(
            "lastHealthyRevision = {}: every Rollout Healthy",
            describe(healthy)
        ));
    }
    let ready = |status: &GitSyncStatus| conditions::find(&status.conditions, conditions::READY).cloned();
    // Progress is what the Rollout lines show; the Ready verdicts (Succeeded, Pinned, failures) are news.
    if let Some(now) = ready(new)
        && ready(old).and_then(|c| c.reason) != now.reason
        && now.reason.as_deref() != Some("Progressing")
    {
        news.push(format!(
            "Ready={:?} {}: {}",
            now.status,
            now.reason.unwrap_or_default(),
            now.message.unwrap_or_default()
        ));
    }
    news
}

fn changed<'a>(old: &Option<String>, new: &'a Option<String>) -> Option<&'a str> {
    new.as_deref().filter(|new| old.as_deref() != Some(*new))
}

/// Prints a line whenever a Rollout's phase, step, weights, revisions or analysis verdict change,
/// with the success rate Prometheus measures for the canary and stable pods at that moment (behind
/// the Service named as the Rollout); `who` tags a Rollout's lines by its name.
pub async fn print_rollout(
    client: kube::Client,
    prometheus_address: String,
    timeline: Timeline,
    who: fn(&str) -> String,
) {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let runs: Api<AnalysisRun> = Api::namespaced(client, "default");
    let mut last: HashMap<String, String> = HashMap::new();
    let mut changes = watcher(rollouts, watcher::Config::default()).applied_objects().boxed();
    // Analysis verdicts change the AnalysisRun, not the Rollout: look again now and then.
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut latest: BTreeMap<String, Rollout> = BTreeMap::new();
    loop {
        tokio::select! {
            Some(Ok(rollout)) = changes.next() => {
                latest.insert(rollout.name_any(), rollout);
            }
            _ = tick.tick() => {}
        }
        for (name, rollout) in &latest {
            report_rollout(rollout, &runs, &prometheus_address, &mut last, timeline, &who(name)).await;
        }
    }
}

/// One timeline line for `rollout` when what it shows changed since the last one (`last`, by name).
async fn report_rollout(
    rollout: &Rollout,
    runs: &Api<AnalysisRun>,
    prometheus_address: &str,
    last: &mut HashMap<String, String>,
    timeline: Timeline,
    who: &str,
) {
    let Some(status) = &rollout.status else { return };
    let analysis = match status.canary.as_ref().and_then(|c| c.current_step_analysis_run.clone()) {
        Some(run) => match runs
            .get(&run.name)
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.phase)
        {
            Some(phase) => format!(" · analysis {phase:?}"),
            None => " · analysis Pending".into(),
        },
        None => String::new(),
    };
    let state = RolloutLine::of(rollout, status);
    let key = format!("{state:?}{analysis}");
    let name = rollout.name_any();
    if last.get(&name) == Some(&key) {
        return;
    }
    last.insert(name.clone(), key);
    let stable_rate = success_rate(prometheus_address, &name, status.stable_rs.as_deref()).await;
    let canary_rate = match state.canary_hash {
        Some(hash) => success_rate(prometheus_address, &name, Some(hash)).await,
        None => None,
    };
    timeline.say(who, state.render(stable_rate, canary_rate, &analysis));
}

/// The part of a Rollout's status a timeline line shows.
#[derive(Debug)]
struct RolloutLine<'a> {
    phase: String,
    step: usize,
    steps: usize,
    canary_weight: i32,
    canary_hash: Option<&'a str>,
    canary_commit: Option<&'a str>,
    stable_commit: Option<&'a str>,
    degraded_because: Option<&'a str>,
}

impl<'a> RolloutLine<'a> {
    fn of(rollout: &Rollout, status: &'a RolloutStatus) -> Self {
        let steps = rollout.spec.canary().steps.len();
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let canary_hash = status
            .current_pod_hash
            .as_deref()
            .filter(|h| Some(*h) != status.stable_rs.as_deref());
        let commit = |info: &'a Option<sluice::api::rollout::RevisionInfo>| {
            info.as_ref().and_then(|r| r.git_revision.as_deref()).map(short)
        };
        RolloutLine {
            // 1-based, as in events: "step 2/5" is the second step (all done shows 5/5).
            step: (status.current_step_index.unwrap_or(0) as usize + 1).min(steps),
            steps,
            canary_weight: status.canary_weight.unwrap_or(0),
            canary_commit: canary_hash.and_then(|_| commit(&status.canary_revision)),
            stable_commit: commit(&status.stable_revision),
            canary_hash,
            degraded_because: status
                .message
                .as_deref()
                .filter(|m| phase == "Degraded" && !m.is_empty()),
            phase,
        }
    }

    fn render(&self, stable_rate: Option<f64>, canary_rate: Option<f64>, analysis: &str) -> String {
        let percent = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{:.1}%", r * 100.0));
        let at = |commit: Option<&str>| commit.map(|c| format!(" @{c}")).unwrap_or_default();
        let stable = format!(
            "stable {}%{} ({})",
            100 - self.canary_weight,
            at(self.stable_commit),
            percent(stable_rate)
        );
        let canary = match self.canary_hash {
            Some(_) => format!(
                " · canary {}%{} ({})",
                self.canary_weight,
                at(self.canary_commit),
                percent(canary_rate)
            ),
            None => String::new(),
        };
        let because = self.degraded_because.map(|m| format!(" · {m}")).unwrap_or_default();
        format!(
            "{:<11} step {}/{} · {stable}{canary}{analysis}{because}",
            self.phase, self.step, self.steps
        )
    }
}

/// The share of non-5xx responses of the pods with this template hash behind `service` over the last 10 s.
async fn success_rate(prometheus_address: &str, service: &str, hash: Option<&str>) -> Option<f64> {
    let selector = format!(r#"service="{service}",pod_template_hash="{}""#, hash?);
    let promql = format!(
        r#"sum(rate(sim_http_requests_total{{{selector},code!~"5.."}}[10s])) / sum(rate(sim_http_requests_total{{{selector}}}[10s]))"#
    );
    prometheus::query(prometheus_address, &promql).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::api::conditions::{Condition, ConditionStatus};
    use sluice::api::gitsync::{BlockedRevision, SyncHistoryEntry};

    const V2: &str = "2222222222222222222222222222222222222222";
    const V3: &str = "3333333333333333333333333333333333333333";

    fn describe(sha: &str) -> String {
        format!("{} \"web\"", short(sha))
    }

    fn ready(reason: &str, message: &str) -> Vec<Condition> {
        vec![Condition::new(
            conditions::READY,
            ConditionStatus::True,
            reason,
            message.to_string(),
        )]
    }

    #[test]
    fn a_new_head_is_fetched_then_applied_with_its_details() {
        let old = GitSyncStatus {
            last_attempted_revision: Some(V2.into()),
            last_applied_revision: Some(V2.into()),
            ..Default::default()
        };
        let new = GitSyncStatus {
            last_attempted_revision: Some(V3.into()),
            last_applied_revision: Some(V3.into()),
            history: vec![SyncHistoryEntry {
                revision: V3.into(),
                started_at: chrono::DateTime::UNIX_EPOCH,
                finished_at: None,
                result: Some("Applied".into()),
                message: Some("2 objects, 1 changed".into()),
            }],
            ..Default::default()
        };
        assert_eq!(
            gitsync_news(&old, &new, describe),
            vec![
                "fetched main: 33333333 \"web\"",
                "applied 33333333 \"web\" (2 objects, 1 changed)"
            ]
        );
        assert!(gitsync_news(&new, &new, describe).is_empty(), "no change, no news");
    }

    #[test]
    fn a_blocked_head_and_the_pin_read_in_order() {
        let old = GitSyncStatus {
            last_attempted_revision: Some(V3.into()),
            last_applied_revision: Some(V3.into()),
            last_healthy_revision: Some(V2.into()),
            conditions: ready("Progressing", "revision 33333333: step 2/5"),
            ..Default::default()
        };
        let new = GitSyncStatus {
            last_applied_revision: Some(V2.into()),
            blocked_revisions: vec![BlockedRevision {
                revision: V3.into(),
                reason: "rollout default/web aborted: analysis failed".into(),
                blocked_at: chrono::DateTime::UNIX_EPOCH,
                revert_commit: None,
                revert_message: None,
            }],
            conditions: ready(
                "Pinned",
                "applied revision 22222222 (pinned: revision 33333333 is blocked)",
            ),
            ..old.clone()
        };
        assert_eq!(
            gitsync_news(&old, &new, describe),
            vec![
                "BLOCKED 33333333 \"web\" (not applied again until main moves on): rollout default/web aborted: analysis failed",
                "PINNED: re-applied the last healthy revision 22222222 \"web\" in place of blocked 33333333",
                "Ready=True Pinned: applied revision 22222222 (pinned: revision 33333333 is blocked)",
            ]
        );
    }
}
