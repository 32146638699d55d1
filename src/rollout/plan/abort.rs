//! Aborting: on request (`sluice abort`), on a failed analysis or an exceeded progress deadline;
//! traffic and scale back on stable, rollbackOnAbort, and `sluice retry` starting over.
use super::{Action, ObservedReplicaSet, Planner};
use crate::api::rollout::AbortReason;
use crate::rollout::replicas::ScaleLimits;

impl Planner<'_> {
    /// Abort and retry requests written to status by `sluice abort` / `sluice retry`.
    pub(super) fn handle_manual_controls(&mut self) {
        let aborted = self.status.is_aborted();
        if aborted && self.status.aborted_at.is_none() {
            self.status.aborted_at = Some(self.now);
            self.status.abort_reason = Some(AbortReason::Requested);
            self.status.pause_conditions.clear();
            self.status.message = Some("aborted on request (sluice abort)".into());
            self.aborted_now = true;
            self.warn(
                "RolloutAborted",
                "rollout aborted on request: traffic back to the stable revision",
            );
        }
        if !aborted && self.status.aborted_at.is_some() {
            // `sluice retry` clears status.abort and leaves abortedAt: start again at step 0. The runs
            // the aborted attempt followed are retired, should the abort not have done it yet.
            let followed = self.followed_runs();
            self.terminate_analysis_runs(|run| followed.contains(&run.name));
            self.clear_progress_state();
            self.status.current_step_index = Some(0);
            self.event("RolloutRetried", "retrying the rollout from step 0");
        }
    }

    pub(super) fn abort(&mut self, reason: AbortReason, message: String) {
        self.status.abort = Some(true);
        self.status.aborted_at = Some(self.now);
        self.status.abort_reason = Some(reason);
        self.status.pause_conditions.clear();
        self.status.message = Some(message.clone());
        self.aborted_now = true;
        self.warn("RolloutAborted", message);
    }

    /// Aborted: weight 0 at once, stable back to full scale, the canary scaled away.
    pub(super) fn aborted(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) {
        self.set_weights(0, &stable.hash);
        if self.routed {
            self.aborted_routed(stable, canary, older);
        } else {
            // Without a traffic router the canary's pods serve traffic through the shared Service, so
            // they go now (abortScaleDownDelaySeconds applies to routed canaries).
            self.scale_basic(stable, canary, older, 0, limits);
        }
        self.terminate_aborted_attempt();
        self.terminate_experiments(|_| true);
        self.rollback_on_abort(stable);
    }

    /// rollbackOnAbort: a revision judged bad (failed analysis, progress deadline) is replaced by the
    /// stable template, so a Rollout without Git behind it is not left Degraded. A Rollout applied by
    /// a GitSync is left to it: it re-applies the last healthy Git revision and blocks the bad one.
    fn rollback_on_abort(&mut self, stable: &ObservedReplicaSet) {
        let blamed = self.status.abort_reason.is_some_and(AbortReason::blames_revision);
        let git_owned = self
            .rollout
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(crate::api::keys::GITSYNC_LABEL));
        // With workloadRef the template is the Deployment's, which Sluice does not write.
        let referenced = self.rollout.spec.workload_ref.is_some();
        if !blamed || git_owned || referenced || !self.rollout.spec.canary().is_rollback_on_abort() {
            return;
        }
        self.actions.push(Action::RestoreStableTemplate {
            replica_set: stable.name.clone(),
        });
        self.event(
            "RolledBackOnAbort",
            format!(
                "rollbackOnAbort: restored the template of revision {} ({}) in place of revision {}",
                stable.revision, stable.hash, self.current_hash
            ),
        );
    }
}
