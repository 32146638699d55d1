//! History limits: old scaled-down ReplicaSets beyond revisionHistoryLimit and finished AnalysisRuns
//! beyond the analysis history limits are deleted, oldest first.
use super::{Action, ObservedAnalysisRun, ObservedReplicaSet, Planner};
use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::AnalysisRunHistory;

impl Planner<'_> {
    /// Keeps the newest finished AnalysisRuns within the successful / unsuccessful history limits; the
    /// runs the rollout currently follows are never deleted.
    pub(super) fn prune_analysis_runs(&mut self) {
        let (keep_successful, keep_unsuccessful) = AnalysisRunHistory::limits(self.rollout.spec.analysis.as_ref());
        let followed = self.followed_runs();
        let mut finished: Vec<&ObservedAnalysisRun> = self
            .observed
            .analysis_runs
            .iter()
            .filter(|r| r.phase.is_completed() && !followed.contains(&r.name))
            .collect();
        finished.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.name.cmp(&a.name)));
        let (successful, unsuccessful): (Vec<_>, Vec<_>) =
            finished.into_iter().partition(|r| r.phase == AnalysisPhase::Successful);
        for run in successful
            .into_iter()
            .skip(keep_successful)
            .chain(unsuccessful.into_iter().skip(keep_unsuccessful))
        {
            self.actions.push(Action::DeleteAnalysisRun { name: run.name.clone() });
        }
    }

    /// Keeps at most revisionHistoryLimit scaled-down old ReplicaSets, deleting the oldest.
    pub(super) fn prune_history(&mut self, live: &[&ObservedReplicaSet]) {
        let limit = self.rollout.spec.revision_history_limit_or_default().max(0) as usize;
        let keep = [self.status.stable_rs.clone(), Some(self.current_hash.clone())];
        let mut old: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| !keep.contains(&Some(rs.hash.clone())) && rs.spec_replicas == 0 && rs.pods == 0)
            .copied()
            .collect();
        old.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        for rs in old.into_iter().skip(limit) {
            if !self
                .actions
                .iter()
                .any(|a| matches!(a, Action::ScaleReplicaSet { name, .. } if *name == rs.name))
            {
                self.actions.push(Action::DeleteReplicaSet { name: rs.name.clone() });
            }
        }
    }
}
