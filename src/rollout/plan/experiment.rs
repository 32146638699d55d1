//! Experiment steps: the Experiment a step runs beside the canary, created once per attempt, followed
//! to its phase (Successful → next step, Failed/Error → abort, Inconclusive → pause), terminated when
//! the rollout leaves the step early, and pruned within the analysis history limits.
use super::{Action, ObservedExperiment, Planner};
use crate::api::analysis::AnalysisPhase;
use crate::api::experiment::RolloutExperimentStep;
use crate::api::rollout::{AbortReason, AnalysisFailureAction, AnalysisRunHistory, CanaryStatus, PauseReason};

/// Longest Experiment name (a DNS subdomain).
const MAX_NAME: usize = 253;

impl Planner<'_> {
    /// An experiment step: create its Experiment (again, if it was deleted while running) and follow
    /// its phase. Done when it is Successful.
    pub(super) fn experiment_step(&mut self, index: usize, step: &RolloutExperimentStep) -> bool {
        let what = format!("step {}/{}", index + 1, self.steps.len());
        let Some(experiment) = self.current_experiment(index) else {
            if self.paused_on_verdict() {
                // Inconclusive, then deleted: the verdict stands until someone promotes or aborts.
                self.status.controller_pause = Some(true);
                return false;
            }
            let Some((stable_replica_set, stable_hash)) = self.stable_replica_set() else {
                return false;
            };
            let name = self.new_experiment_name(index);
            let recreated = self.followed_experiment().as_deref() == Some(name.as_str());
            self.actions.push(Action::CreateExperiment {
                name: name.clone(),
                step: index as i32,
                hash: self.current_hash.clone(),
                stable_replica_set,
                stable_hash,
                experiment: step.clone(),
            });
            if !recreated {
                self.event("ExperimentCreated", format!("{what}: started experiment {name}"));
            }
            self.status
                .canary
                .get_or_insert_with(CanaryStatus::default)
                .current_experiment = Some(name);
            if self.status.step_started_at.is_none() {
                self.status.step_started_at = Some(self.now);
            }
            return false;
        };
        self.status
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_experiment = Some(experiment.name.clone());
        let why = experiment
            .message
            .as_deref()
            .map(|m| format!(": {}", crate::bounds::truncate(m, 512)))
            .unwrap_or_default();
        match experiment.phase {
            AnalysisPhase::Pending | AnalysisPhase::Running => false,
            AnalysisPhase::Successful => true,
            AnalysisPhase::Inconclusive => {
                let message = format!(
                    "{what}: experiment {} was inconclusive{why}; paused until promoted",
                    experiment.name
                );
                self.pause_on_analysis("ExperimentInconclusive", message);
                false
            }
            AnalysisPhase::Failed | AnalysisPhase::Error => {
                let verdict = if experiment.phase == AnalysisPhase::Failed {
                    "failed"
                } else {
                    "errored"
                };
                let message = format!("{what}: experiment {} {verdict}{why}", experiment.name);
                match self.rollout.spec.canary().on_analysis_failure_or_default() {
                    // The revision is judged bad as by a failed analysis (rollbackOnAbort, GitSync).
                    AnalysisFailureAction::Abort => self.abort(AbortReason::AnalysisFailed, message),
                    AnalysisFailureAction::Pause => self.pause_on_analysis(
                        "ExperimentFailed",
                        format!("{message}; paused (onAnalysisFailure: pause)"),
                    ),
                }
                false
            }
        }
    }

    /// The Experiment status names, if any.
    fn followed_experiment(&self) -> Option<String> {
        self.status.canary.as_ref().and_then(|c| c.current_experiment.clone())
    }

    /// The rollout waits for a human on a verdict (Inconclusive, or a failure with onAnalysisFailure: pause).
    fn paused_on_verdict(&self) -> bool {
        self.status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
    }

    /// The stable ReplicaSet's name and hash (the `specRef: stable` pod template).
    fn stable_replica_set(&self) -> Option<(String, String)> {
        let stable = self.status.stable_rs.as_deref()?;
        self.observed
            .replica_sets
            .iter()
            .find(|rs| rs.hash == stable && !rs.deleting)
            .map(|rs| (rs.name.clone(), rs.hash.clone()))
    }

    /// The Experiment of step `index` for this revision: the one status names, else (after a crash
    /// between creating it and writing status) the newest unfinished one.
    fn current_experiment(&self, index: usize) -> Option<ObservedExperiment> {
        let ours = self
            .observed
            .experiments
            .iter()
            .filter(|e| e.hash == self.current_hash && e.step == index as i32);
        if let Some(named) = self.followed_experiment()
            && let Some(found) = ours.clone().find(|e| e.name == named)
        {
            return Some(found.clone());
        }
        ours.filter(|e| !e.phase.is_completed() && !e.terminated)
            .max_by_key(|e| e.created_at)
            .cloned()
    }

    /// `<rollout>-<hash>-<revision>-<step>` (Argo's name), `-<attempt>` after a retry; bounded to a
    /// DNS subdomain by shortening the Rollout's name. The same when re-planned.
    fn new_experiment_name(&self, index: usize) -> String {
        let revision = self
            .observed
            .replica_sets
            .iter()
            .find(|rs| rs.hash == self.current_hash)
            .map_or(0, |rs| rs.revision);
        let attempts = self
            .observed
            .experiments
            .iter()
            .filter(|e| e.hash == self.current_hash && e.step == index as i32)
            .count();
        let mut suffix = format!("-{}-{revision}-{index}", self.current_hash);
        if attempts > 0 {
            suffix.push_str(&format!("-{attempts}"));
        }
        let rollout = self.rollout.metadata.name.as_deref().unwrap_or("rollout");
        let room = MAX_NAME.saturating_sub(suffix.len());
        let prefix = crate::bounds::truncate(rollout, room);
        format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
    }

    /// Sets `spec.terminate` on the unfinished Experiments `which` selects.
    pub(super) fn terminate_experiments(&mut self, which: impl Fn(&ObservedExperiment) -> bool) {
        for experiment in self.observed.experiments {
            let queued = self
                .actions
                .iter()
                .any(|a| matches!(a, Action::TerminateExperiment { name } if *name == experiment.name));
            if !experiment.phase.is_completed() && !experiment.terminated && !queued && which(experiment) {
                self.actions.push(Action::TerminateExperiment {
                    name: experiment.name.clone(),
                });
            }
        }
    }

    /// Keeps the newest finished Experiments within the analysis history limits (as AnalysisRuns);
    /// the one the rollout follows is never deleted.
    pub(super) fn prune_experiments(&mut self) {
        let (keep_successful, keep_unsuccessful) = AnalysisRunHistory::limits(self.rollout.spec.analysis.as_ref());
        let followed = self.followed_experiment();
        let mut finished: Vec<&ObservedExperiment> = self
            .observed
            .experiments
            .iter()
            .filter(|e| e.phase.is_completed() && Some(&e.name) != followed.as_ref())
            .collect();
        finished.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.name.cmp(&a.name)));
        let (successful, unsuccessful): (Vec<_>, Vec<_>) =
            finished.into_iter().partition(|e| e.phase == AnalysisPhase::Successful);
        for experiment in successful
            .into_iter()
            .skip(keep_successful)
            .chain(unsuccessful.into_iter().skip(keep_unsuccessful))
        {
            self.actions.push(Action::DeleteExperiment {
                name: experiment.name.clone(),
            });
        }
    }
}
