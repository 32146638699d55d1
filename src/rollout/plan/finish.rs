//! Status composition at the end of a plan: pod counts, selector, stable and canary revisions,
//! then phase, conditions and the progress deadline (which may abort), and the resulting Plan.
use std::collections::BTreeMap;
use std::time::Duration;

use super::{Action, ObservedReplicaSet, Plan, Planner};
use crate::api::rollout::{AbortReason, RevisionInfo, Rollout};
use crate::rollout::replicas::ScaleLimits;
use crate::rollout::status::{self, Progress};

impl Planner<'_> {
    /// Counts, revisions, phase, conditions and the progress deadline.
    pub(super) fn finish(mut self, live: &[&ObservedReplicaSet], limits: ScaleLimits) -> Plan {
        if !self.status.is_aborted()
            && self
                .actions
                .iter()
                .all(|a| !matches!(a, Action::CreateReplicaSet { .. }))
        {
            self.restart(limits);
        }
        self.record_counts(live);
        self.record_revisions(live);
        let progress = self.progress(live, limits);
        self.conclude(&progress);
        Plan {
            actions: self.actions,
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
            aborted_now: self.aborted_now,
        }
    }

    /// The current template's ReplicaSet, if it exists.
    fn current_rs<'r>(&self, live: &[&'r ObservedReplicaSet]) -> Option<&'r ObservedReplicaSet> {
        live.iter().find(|rs| rs.hash == self.current_hash).copied()
    }

    /// Pod counts over every live ReplicaSet, and the selector (for the scale subresource).
    fn record_counts(&mut self, live: &[&ObservedReplicaSet]) {
        let current = self.current_rs(live);
        // Each count fits an i32, their sum need not (two ReplicaSets near i32::MAX mid-canary): the
        // status saturates rather than the controller panicking.
        let total =
            |count: fn(&ObservedReplicaSet) -> i32| live.iter().fold(0i32, |sum, rs| sum.saturating_add(count(rs)));
        self.status.replicas = Some(total(|rs| rs.pods));
        self.status.updated_replicas = Some(current.map_or(0, |rs| rs.pods));
        self.status.ready_replicas = Some(total(|rs| rs.ready));
        self.status.available_replicas = Some(total(|rs| rs.available));
        self.status.selector = Some(selector_string(self.rollout));
    }

    /// The stable revision and, while a canary is in flight, the canary's.
    fn record_revisions(&mut self, live: &[&ObservedReplicaSet]) {
        let current = self.current_rs(live);
        let stable = live
            .iter()
            .find(|rs| Some(&rs.hash) == self.status.stable_rs.as_ref())
            .copied();
        self.status.stable_revision = self.revision_of(self.status.stable_rs.as_ref(), stable);
        self.status.canary_revision = if self.status.stable_rs.as_ref() != Some(&self.current_hash) {
            self.revision_of(Some(&self.current_hash), current)
        } else {
            None
        };
    }

    /// The revision of the ReplicaSet `rs` of `hash`. A ReplicaSet created in this reconcile is named
    /// already, so the next status write is not just for its revision.
    fn revision_of(&self, hash: Option<&String>, rs: Option<&ObservedReplicaSet>) -> Option<RevisionInfo> {
        match rs {
            Some(rs) => Some(RevisionInfo {
                git_revision: rs.git_revision.clone(),
                revision: Some(rs.revision),
            }),
            None => self.actions.iter().find_map(|action| match action {
                Action::CreateReplicaSet {
                    hash: created,
                    revision,
                    git_revision,
                    ..
                } if Some(created) == hash => Some(RevisionInfo {
                    git_revision: git_revision.clone(),
                    revision: Some(*revision),
                }),
                _ => None,
            }),
        }
    }

    /// What the phase rules look at.
    fn progress(&self, live: &[&ObservedReplicaSet], limits: ScaleLimits) -> Progress {
        Progress {
            replicas: self.replicas,
            updated_available: self.current_rs(live).map_or(0, |rs| rs.available),
            stable_is_current: self.status.stable_rs.as_deref() == Some(self.current_hash.as_str()),
            all_replica_sets_settled: live.iter().all(|rs| {
                let target = if rs.hash == self.current_hash { self.replicas } else { 0 };
                rs.spec_replicas == target && rs.pods == target || self.waits_out_scale_down_delay(rs)
            }),
            step: self.step_index(),
            steps: self.steps.len(),
            paused: self.rollout.spec.is_paused(),
            max_unavailable: limits.max_unavailable,
            awaiting_analysis: (self
                .steps
                .get(self.step_index())
                // An experiment step waits on its Experiment as an analysis step on its run
                // (Argo counts both as indefinite for the progress deadline).
                .is_some_and(|step| step.analysis.is_some() || step.experiment.is_some())
                || self.awaiting_promotion_analysis())
                && live
                    .iter()
                    .all(|rs| rs.pods == rs.spec_replicas && rs.available == rs.spec_replicas),
        }
    }

    /// Phase and conditions; the progress deadline is watched, and once exceeded reported and, with
    /// progressDeadlineAbort, an abort (concluded again so the status says so at once).
    fn conclude(&mut self, progress: &Progress) {
        let deadline = Duration::from_secs(self.rollout.spec.progress_deadline_seconds_or_default().max(1) as u64);
        let outcome = status::conclude(&mut self.status, progress, deadline, self.now);
        let names_a_strategy =
            self.rollout.spec.strategy.canary.is_some() || self.rollout.spec.strategy.blue_green.is_some();
        status::report_strategy(&mut self.status, names_a_strategy, self.now);
        if let Some(wait) = outcome.check_deadline_in {
            self.requeue_in(wait);
        }
        if outcome.deadline_exceeded_now {
            self.warn(
                "ProgressDeadlineExceeded",
                format!("no progress for {}s", deadline.as_secs()),
            );
            if self.rollout.spec.is_progress_deadline_abort() && !self.status.is_aborted() {
                self.abort(
                    AbortReason::ProgressDeadlineExceeded,
                    format!("progress deadline of {}s exceeded", deadline.as_secs()),
                );
                status::conclude(&mut self.status, progress, deadline, self.now);
            }
        }
    }
}

impl Planner<'_> {
    /// Blue-green: an old version kept for a fast rollback until its scale-down deadline (set now or
    /// before) does not keep the rollout from being Healthy, as in Argo.
    fn waits_out_scale_down_delay(&self, rs: &ObservedReplicaSet) -> bool {
        if self.rollout.spec.blue_green().is_none() || rs.hash == self.current_hash {
            return false;
        }
        let planned = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetScaleDownDeadline { name, at } if *name == rs.name && *at > self.now));
        let scaled_now = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { name, .. } if *name == rs.name));
        !scaled_now && (planned || super::blue_green::pending(rs.scale_down_at, self.now))
    }

    /// Blue-green: a pre- or post-promotion AnalysisRun is running (a verdict, not pods, is awaited).
    fn awaiting_promotion_analysis(&self) -> bool {
        self.status.blue_green.as_ref().is_some_and(|b| {
            [&b.pre_promotion_analysis_run, &b.post_promotion_analysis_run]
                .into_iter()
                .flatten()
                .any(|run| run.status.is_none_or(|phase| !phase.is_completed()))
        })
    }
}

/// The pod selector in query form, for the scale subresource.
fn selector_string(rollout: &Rollout) -> String {
    let labels: BTreeMap<String, String> = rollout.spec.selector.match_labels.clone().unwrap_or_default();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
