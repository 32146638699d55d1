//! What a GitSync does next, decided without I/O: whether it syncs at all and whether a sync is due,
//! which revision to apply (the head of the ref, or the last healthy one while the head is blocked)
//! and whether to apply it now, which revisions to block because their canary failed, whether to push
//! a revert, whether pruning may run, how the status reads afterwards and when to look again.
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::api::conditions::{self, Condition, ConditionStatus};
use crate::api::gitsync::{BlockedRevision, GitSyncSpec, GitSyncStatus, RollbackAction, SyncHistoryEntry};
use crate::api::rollout::{AbortReason, Rollout, RolloutPhase};
use crate::bounds::{keep_newest, truncate, truncate_in_place};
use crate::gitsync::GIT_REVISION_ANNOTATION;
use crate::gitsync::health::Health;
use crate::gitsync::manifest::ObjectId;

pub mod dependencies;
pub mod promotion;
pub mod waves;

/// How many sync attempts status.history keeps.
pub const HISTORY_LIMIT: usize = 10;

/// How many blocked commits status.blockedRevisions keeps; the oldest block is dropped first. A dropped
/// block means nothing while the ref has moved past that commit (only the head is ever applied), but if
/// the ref were reset back to it, it would be applied again. 100 failed canaries is far more than a
/// branch accumulates between such resets, and each entry is bounded, so the list stays a few tens of
/// KiB.
pub const MAX_BLOCKED_REVISIONS: usize = 100;

/// Messages and reasons stored in the GitSync status (history, blocked revisions) are cut to this many
/// bytes: they quote API server and Git errors, whose length nobody bounds.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// Records a blocked commit (its reason cut to [`MAX_STATUS_MESSAGE_BYTES`]), keeping the newest
/// [`MAX_BLOCKED_REVISIONS`].
pub fn record_blocked(status: &mut GitSyncStatus, mut blocked: BlockedRevision) {
    blocked.reason = truncate(&blocked.reason, MAX_STATUS_MESSAGE_BYTES).into_owned();
    truncate_in_place(&mut blocked.revert_message, MAX_STATUS_MESSAGE_BYTES);
    status.blocked_revisions.push(blocked);
    keep_newest(&mut status.blocked_revisions, MAX_BLOCKED_REVISIONS);
}

/// What the GitSync needs to know about one of the Rollouts it applied.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutState {
    /// `namespace/name`.
    pub name: String,
    pub aborted: bool,
    pub abort_reason: Option<AbortReason>,
    pub message: Option<String>,
    /// The commit that produced the canary (its ReplicaSet's annotation), else the Rollout's own.
    pub canary_revision: Option<String>,
    /// Phase Healthy for the current generation.
    pub healthy: bool,
    /// A canary is in flight (or about to start): its ConfigMaps and Secrets must not be pruned yet.
    pub mid_rollout: bool,
}

impl RolloutState {
    pub fn observe(rollout: &Rollout) -> Self {
        let status = rollout.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == rollout.metadata.generation;
        let phase = status.and_then(|s| s.phase);
        let canary_hash = status.and_then(|s| s.current_pod_hash.as_deref());
        let stable_hash = status.and_then(|s| s.stable_rs.as_deref());
        RolloutState {
            name: format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any()),
            aborted: status.is_some_and(|s| s.is_aborted()),
            abort_reason: status.and_then(|s| s.abort_reason),
            message: status.and_then(|s| s.message.clone()),
            canary_revision: status
                .and_then(|s| s.canary_revision.as_ref())
                .and_then(|r| r.git_revision.clone())
                .or_else(|| rollout.annotations().get(GIT_REVISION_ANNOTATION).cloned()),
            healthy: current && phase == Some(RolloutPhase::Healthy),
            mid_rollout: !current || phase == Some(RolloutPhase::Progressing) || canary_hash != stable_hash,
        }
    }

    /// Aborted because the evidence said the revision is bad (not because a person stopped it).
    fn failed_on_evidence(&self) -> Option<AbortReason> {
        self.abort_reason.filter(|r| self.aborted && r.blames_revision())
    }
}

/// Everything a decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub spec: &'a GitSyncSpec,
    pub status: &'a GitSyncStatus,
    /// The head of the followed ref: fetched in this reconcile, or the last one attempted.
    pub head: Option<&'a str>,
    pub rollouts: &'a [RolloutState],
    pub now: DateTime<Utc>,
}

/// The revision to have in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Apply this revision; `pinned_over` is the blocked head it stands in for.
    Apply {
        revision: String,
        pinned_over: Option<String>,
    },
    /// Apply nothing (and leave what runs alone), for this reason.
    Hold(String),
}

/// A revert commit to push: the GitSync's path back to `to_revision`, on top of the blocked head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevertPlan {
    pub blocked: String,
    pub to_revision: String,
    pub branch: String,
}

/// Whether objects that left Git may be deleted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prune {
    Allowed,
    Disabled,
    /// Kept for a later sync, for this reason.
    HeldBack(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Revisions to add to status.blockedRevisions now.
    pub block: Vec<BlockedRevision>,
    pub target: Target,
    pub revert: Option<RevertPlan>,
    /// Why no revert is pushed although the policy asks for one.
    pub revert_impossible: Option<String>,
    pub prune: Prune,
}

/// Decides which revision to apply and what to block, revert and prune.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let status = observed.status;
    let action = observed.spec.rollback_action_or_default();
    let block = if action == RollbackAction::None {
        Vec::new()
    } else {
        newly_blocked(observed)
    };
    let blocked = |revision: &str| status.is_blocked(revision) || block.iter().any(|b| b.revision == revision);
    let target = match observed.head {
        None => Target::Hold("no revision fetched yet".into()),
        Some(head) if action != RollbackAction::None && blocked(head) => {
            match status.last_healthy_revision.as_deref() {
                Some(healthy) if healthy != head => Target::Apply {
                    revision: healthy.to_string(),
                    pinned_over: Some(head.to_string()),
                },
                _ => Target::Hold(format!(
                    "revision {} is blocked and no healthy revision is known: nothing applied",
                    short(head)
                )),
            }
        }
        Some(head) => Target::Apply {
            revision: head.to_string(),
            pinned_over: None,
        },
    };
    let (revert, revert_impossible) = match (&target, action) {
        (
            Target::Apply {
                revision,
                pinned_over: Some(blocked_head),
            },
            RollbackAction::Revert,
        ) => plan_revert(observed, &block, blocked_head, revision),
        _ => (None, None),
    };
    Decision {
        prune: prune(observed),
        block,
        target,
        revert,
        revert_impossible,
    }
}

/// Canary revisions of Rollouts that aborted on failed analysis or a progress deadline.
fn newly_blocked(observed: &Observed<'_>) -> Vec<BlockedRevision> {
    let status = observed.status;
    let mut block: Vec<BlockedRevision> = Vec::new();
    for rollout in observed.rollouts {
        let (Some(reason), Some(revision)) = (rollout.failed_on_evidence(), rollout.canary_revision.as_deref()) else {
            continue;
        };
        // The healthy revision is where a rollback goes; blocking it would leave nowhere to go.
        if status.last_healthy_revision.as_deref() == Some(revision)
            || status.is_blocked(revision)
            || block.iter().any(|b| b.revision == revision)
        {
            continue;
        }
        let why = rollout.message.clone().unwrap_or_else(|| format!("{reason:?}"));
        block.push(BlockedRevision {
            revision: revision.to_string(),
            reason: format!("rollout {} aborted: {why}", rollout.name),
            blocked_at: observed.now,
            revert_commit: None,
            revert_message: None,
        });
    }
    block
}

fn plan_revert(
    observed: &Observed<'_>,
    block: &[BlockedRevision],
    blocked_head: &str,
    healthy: &str,
) -> (Option<RevertPlan>, Option<String>) {
    let entry = block
        .iter()
        .chain(&observed.status.blocked_revisions)
        .find(|b| b.revision == blocked_head);
    if entry.is_some_and(|b| b.revert_commit.is_some() || b.revert_message.is_some()) {
        return (None, None);
    }
    let rollback = observed.spec.rollback.as_ref();
    let tracked = observed.spec.git_ref.as_ref().and_then(|r| r.branch.as_deref());
    match rollback.and_then(|r| r.revert_branch.as_deref()).or(tracked) {
        Some(branch) => (
            Some(RevertPlan {
                blocked: blocked_head.to_string(),
                to_revision: healthy.to_string(),
                branch: branch.to_string(),
            }),
            None,
        ),
        None => (
            None,
            Some("no branch to push a revert to: set spec.rollback.revertBranch or follow a branch".into()),
        ),
    }
}

fn prune(observed: &Observed<'_>) -> Prune {
    if !observed.spec.is_prune() {
        return Prune::Disabled;
    }
    match observed.rollouts.iter().find(|r| r.mid_rollout) {
        Some(r) => Prune::HeldBack(format!("rollout {} is mid-rollout", r.name)),
        None => Prune::Allowed,
    }
}

/// Records an apply of `revision` (the head, or the healthy revision pinned over a blocked head).
pub fn record_applied(status: &mut GitSyncStatus, target: &Target, message: String, now: DateTime<Utc>) {
    let Target::Apply { revision, pinned_over } = target else {
        return;
    };
    let result = if pinned_over.is_some() { "Pinned" } else { "Applied" };
    let healthy = status.last_healthy_revision.as_deref() == Some(revision.as_str());
    // Self-heal re-applies the running revision every interval: once it is Healthy, its newest history
    // entry stays Healthy (health is concluded once per revision, so nothing would set it back).
    let healthy_entry = healthy && status.history.last().is_some_and(|entry| entry.revision == *revision);
    let record = match pinned_over {
        Some(_) => !healthy,
        None => !healthy_entry,
    };
    if record {
        push_history(status, revision, result, message, now);
    }
    status.last_applied_revision = Some(revision.clone());
}

/// Records a failed attempt (fetch, render, validation or apply).
pub fn record_failure(status: &mut GitSyncStatus, revision: Option<&str>, message: &str, now: DateTime<Utc>) {
    if let Some(revision) = revision {
        push_history(status, revision, "Failed", message.to_string(), now);
    }
}

/// Marks the applied revision healthy when the objects are healthy and every Rollout is Healthy at
/// its current generation; returns the revision when it became the last healthy one just now.
pub fn conclude_health(
    status: &mut GitSyncStatus,
    health: &Health,
    rollouts: &[RolloutState],
    now: DateTime<Utc>,
) -> Option<String> {
    let applied = status.last_applied_revision.clone()?;
    if status.last_healthy_revision.as_deref() == Some(applied.as_str()) || status.is_blocked(&applied) {
        return None;
    }
    let rollouts_healthy = rollouts.iter().all(|r| r.healthy && !r.aborted);
    if *health != Health::Healthy || !rollouts_healthy {
        return None;
    }
    status.last_healthy_revision = Some(applied.clone());
    status.last_healthy_time = Some(now);
    push_history(
        status,
        &applied,
        "Healthy",
        "applied and every Rollout Healthy".into(),
        now,
    );
    Some(applied)
}

/// Appends one history entry per revision attempt; a repeated outcome for the same revision updates
/// the newest entry instead, so self-heal every interval does not flush the history.
fn push_history(status: &mut GitSyncStatus, revision: &str, result: &str, message: String, now: DateTime<Utc>) {
    let message = truncate(&message, MAX_STATUS_MESSAGE_BYTES).into_owned();
    match status.history.last_mut() {
        Some(last) if last.revision == revision => {
            last.result = Some(result.to_string());
            last.message = Some(message);
            last.finished_at = Some(now);
        }
        _ => status.history.push(SyncHistoryEntry {
            revision: revision.to_string(),
            started_at: now,
            finished_at: Some(now),
            result: Some(result.to_string()),
            message: Some(message),
        }),
    }
    keep_newest(&mut status.history, HISTORY_LIMIT);
}

/// How the last sync went, for the kstatus conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// Applied (or nothing to apply) without error.
    Synced,
    /// Suspended by spec.suspend.
    Suspended,
    /// Failed in a way retrying alone will not fix (bad URL, credentials, render or validation error).
    Stalled(String),
    /// Failed, retrying.
    Failed(String),
    /// Nothing applied on purpose.
    Held(String),
    /// Nothing new applied until something else is ready (a dependency); not an error.
    Waiting { reason: &'static str, message: String },
    /// Like `Stalled`, with its own reason (a dependency cycle): nothing applied until the spec changes.
    StalledOn { reason: &'static str, message: String },
}

/// The failure the conditions record from the last sync, for reconciles that do not sync (woken by
/// a Rollout change): they must not turn a stalled GitSync Ready.
pub fn previous_result(status: &GitSyncStatus) -> Option<SyncResult> {
    let ready = conditions::find(&status.conditions, conditions::READY)?;
    let message = ready.message.clone().unwrap_or_default();
    if conditions::is_true(&status.conditions, conditions::STALLED) {
        let stalled = conditions::find(&status.conditions, conditions::STALLED)?;
        let message = stalled.message.clone().unwrap_or(message);
        return Some(match stalled.reason.as_deref() {
            Some("NothingApplied") => SyncResult::Held(message),
            Some(dependencies::DEPENDENCY_CYCLE) => SyncResult::StalledOn {
                reason: dependencies::DEPENDENCY_CYCLE,
                message,
            },
            _ => SyncResult::Stalled(message),
        });
    }
    (ready.reason.as_deref() == Some("SyncFailed")).then_some(SyncResult::Failed(message))
}

/// Sets Ready, Reconciling and Stalled from the sync result and the health of what runs.
pub fn set_conditions(
    status: &mut GitSyncStatus,
    generation: Option<i64>,
    result: &SyncResult,
    health: Option<&Health>,
    now: DateTime<Utc>,
) {
    use ConditionStatus::{False, True};
    let applied = status.last_applied_revision.as_deref().map(short).unwrap_or("none");
    let pinned = status
        .last_attempted_revision
        .as_deref()
        .filter(|head| status.is_blocked(head))
        .map(|head| format!(" (pinned: revision {} is blocked)", short(head)))
        .unwrap_or_default();
    let (ready, reconciling, stalled) = match (result, health) {
        (SyncResult::Stalled(message), _) => (
            (False, "SyncFailed", message.clone()),
            None,
            Some(("SyncFailed", message.clone())),
        ),
        (SyncResult::Failed(message), _) => (
            (False, "SyncFailed", message.clone()),
            Some(("Retrying", message.clone())),
            None,
        ),
        (SyncResult::Held(message), _) => (
            (False, "NothingApplied", message.clone()),
            None,
            Some(("NothingApplied", message.clone())),
        ),
        (SyncResult::StalledOn { reason, message }, _) => (
            (False, *reason, message.clone()),
            None,
            Some((*reason, message.clone())),
        ),
        (SyncResult::Waiting { reason, message }, _) => (
            (False, *reason, message.clone()),
            Some((*reason, message.clone())),
            None,
        ),
        (SyncResult::Suspended, _) => (
            (False, "Suspended", "spec.suspend is true: not syncing".into()),
            None,
            None,
        ),
        (SyncResult::Synced, Some(Health::Degraded(message))) => (
            (False, "HealthCheckFailed", format!("revision {applied}: {message}")),
            None,
            None,
        ),
        (SyncResult::Synced, Some(Health::Progressing(message) | Health::Unknown(message))) => {
            let message = format!("revision {applied}{pinned}: {message}");
            (
                (False, "Progressing", message.clone()),
                Some(("Progressing", message)),
                None,
            )
        }
        (SyncResult::Synced, _) => {
            let reason = if pinned.is_empty() { "Succeeded" } else { "Pinned" };
            (
                (True, reason, format!("applied revision {applied}{pinned}")),
                None,
                None,
            )
        }
    };
    let conditions = &mut status.conditions;
    let (ready_status, reason, message) = ready;
    conditions::set_condition(
        conditions,
        Condition::new(conditions::READY, ready_status, reason, message).observed(generation),
        now,
    );
    for (type_, value) in [(conditions::RECONCILING, reconciling), (conditions::STALLED, stalled)] {
        match value {
            Some((reason, message)) => {
                conditions::set_condition(
                    conditions,
                    Condition::new(type_, True, reason, message).observed(generation),
                    now,
                );
            }
            None => {
                conditions::remove_condition(conditions, type_);
            }
        }
    }
    status.observed_generation = generation;
}

/// A sync that names no timeout gives up after this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// While what was applied is not healthy yet, look again this often (Rollout changes also wake us).
pub const HEALTH_RECHECK: Duration = Duration::from_secs(5);
/// The soonest a reconcile is requeued, so a sync that is due right now does not spin.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// spec.interval and spec.timeout of a GitSync that syncs at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub interval: Duration,
    pub timeout: Duration,
}

/// The timings of a GitSync that may sync, or why it does nothing until its spec changes: Stalled
/// naming the bad field (checked first), or Suspended.
pub fn timings(spec: &GitSyncSpec) -> Result<Timings, SyncResult> {
    let interval = spec
        .interval_duration()
        .map_err(|e| SyncResult::Stalled(format!("spec.interval: {e}")))?;
    let timeout = spec
        .timeout_duration()
        .map_err(|e| SyncResult::Stalled(format!("spec.timeout: {e}")))?
        .unwrap_or(DEFAULT_TIMEOUT);
    if interval.is_zero() {
        return Err(SyncResult::Stalled("spec.interval: must be more than 0s".into()));
    }
    if timeout.is_zero() {
        return Err(SyncResult::Stalled("spec.timeout: must be more than 0s".into()));
    }
    if spec.is_suspended() {
        return Err(SyncResult::Suspended);
    }
    Ok(Timings { interval, timeout })
}

/// What says whether a sync (fetch, then apply) is due, as the reconcile observed it.
#[derive(Clone, Debug)]
pub struct SyncTrigger<'a> {
    /// metadata.generation of the GitSync.
    pub generation: Option<i64>,
    /// The value of its `sluice.dev/requested-at` annotation.
    pub requested_at: Option<&'a str>,
    /// The webhook asked for a sync since the last reconcile.
    pub webhook_requested: bool,
    /// How long ago this GitSync last fetched; `None` when it has not since the controller started.
    pub since_last_sync: Option<Duration>,
    pub interval: Duration,
}

/// Whether this reconcile syncs: asked for (webhook, or a new `sluice.dev/requested-at` value), the
/// spec changed, nothing was ever fetched, or the interval has elapsed (or is unknown after a restart).
pub fn sync_due(trigger: &SyncTrigger<'_>, status: &GitSyncStatus) -> bool {
    trigger.webhook_requested
        || status.observed_generation != trigger.generation
        || trigger.requested_at.is_some() && trigger.requested_at != status.last_handled_requested_at.as_deref()
        || status.last_attempted_revision.is_none()
        || trigger.since_last_sync.is_none_or(|since| since >= trigger.interval)
}

/// How this reconcile's sync went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncAttempt {
    /// A sync was due (see [`sync_due`]).
    pub due: bool,
    /// The due sync fetched the head of the ref (false when none was due or the fetch failed).
    pub fetched: bool,
}

/// Whether the decided target is applied in this reconcile: a new revision or a rollback always; an
/// unchanged revision again only on a due sync with self-heal on (undoing drift) or a changed spec
/// (targetNamespace, render options). A failed fetch applies only a rollback: the source may have
/// changed (a new URL) and the last attempted revision is no longer what the spec names.
pub fn must_apply(
    decision: &Decision,
    attempt: SyncAttempt,
    spec: &GitSyncSpec,
    status: &GitSyncStatus,
    generation: Option<i64>,
) -> bool {
    match &decision.target {
        Target::Apply { .. } if attempt.due && !attempt.fetched => !decision.block.is_empty(),
        Target::Apply { revision, .. } => {
            let heal = attempt.due && (spec.is_self_heal() || status.observed_generation != generation);
            heal || !decision.block.is_empty() || status.last_applied_revision.as_deref() != Some(revision.as_str())
        }
        Target::Hold(_) => false,
    }
}

/// How long until the next reconcile: the rest of the interval since the last sync (`None`: a full
/// interval has passed), never less than [`MIN_REQUEUE`], and at most [`HEALTH_RECHECK`] while what
/// was applied is not healthy yet or a pushed revert should be fetched soon. `health` is `None` when
/// nothing is applied.
pub fn requeue_after(
    interval: Duration,
    since_last_sync: Option<Duration>,
    health: Option<&Health>,
    resync_soon: bool,
) -> Duration {
    let next_sync = interval.saturating_sub(since_last_sync.unwrap_or(interval));
    let settled = health.is_none_or(|h| *h == Health::Healthy);
    if settled && !resync_soon {
        next_sync.max(MIN_REQUEUE)
    } else {
        next_sync.clamp(MIN_REQUEUE, HEALTH_RECHECK)
    }
}

/// The first 8 characters of a commit SHA, for messages.
pub fn short(revision: &str) -> &str {
    revision.get(..8).unwrap_or(revision)
}

/// What deleting a GitSync deletes: everything it applied (its inventory, and what still waits to be
/// pruned), other objects before Namespaces before CRDs, so nothing is removed from under the objects
/// still being deleted. `Err` says why everything is left in place: prune is off, or the GitSync is
/// suspended (as Flux does for a deleted Kustomization).
pub fn cleanup_targets(spec: &GitSyncSpec, status: &GitSyncStatus) -> Result<Vec<ObjectId>, &'static str> {
    if !spec.is_prune() {
        return Err("spec.prune is false");
    }
    if spec.is_suspended() {
        return Err("the GitSync is suspended");
    }
    let unique: std::collections::BTreeSet<ObjectId> = status
        .inventory
        .iter()
        .flat_map(|inventory| &inventory.entries)
        .chain(&status.pending_prune)
        .filter_map(|entry| ObjectId::from_inventory(entry).ok())
        .collect();
    let mut targets: Vec<ObjectId> = unique.into_iter().collect();
    targets.sort_by_key(|id| match (id.group.as_str(), id.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 2,
        ("", "Namespace") => 1,
        _ => 0,
    });
    Ok(targets)
}

#[cfg(test)]
mod tests;
