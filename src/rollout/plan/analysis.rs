//! Analysis: the AnalysisRuns of analysis steps and of the background analysis, created once per
//! attempt, followed to their verdict, and terminated when the revision they judge moves on.
use super::{Action, AnalysisKind, ObservedAnalysisRun, Planner};
use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{
    AbortReason, AnalysisFailureAction, AnalysisRunRef, BlueGreenStatus, CanaryStatus, RolloutAnalysis,
};

impl Planner<'_> {
    /// An analysis step: create its AnalysisRun and follow its verdict.
    pub(super) fn analysis_step(&mut self, index: usize, analysis: &RolloutAnalysis) -> bool {
        let kind = AnalysisKind::Step(index as i32);
        let run = self.current_run(kind);
        let Some(run) = run else {
            let name = self.start_run(kind, analysis.clone());
            if self.status.step_started_at.is_none() {
                self.status.step_started_at = Some(self.now);
            }
            self.event(
                "AnalysisRunCreated",
                format!("step {}/{}: started analysis {name}", index + 1, self.steps.len()),
            );
            return false;
        };
        self.set_run_ref(kind, run_ref(&run));
        self.follow_verdict(&run, &format!("step {}/{}", index + 1, self.steps.len()))
    }

    /// The background analysis: started once the rollout reaches its startingStep.
    pub(super) fn run_background_analysis(&mut self) {
        let Some(analysis) = self.rollout.spec.canary().analysis else {
            return;
        };
        if (self.step_index() as i32) < analysis.starting_step.unwrap_or(0) || self.step_index() >= self.steps.len() {
            return;
        }
        match self.current_run(AnalysisKind::Background) {
            None => {
                let name = self.start_run(AnalysisKind::Background, analysis);
                self.event("AnalysisRunCreated", format!("started background analysis {name}"));
            }
            Some(run) => {
                self.set_run_ref(AnalysisKind::Background, run_ref(&run));
                if run.phase.is_completed() && run.phase != AnalysisPhase::Successful {
                    self.follow_verdict(&run, "background analysis");
                }
            }
        }
    }

    /// Creates the next AnalysisRun of `kind` for the current revision and follows it (Pending),
    /// returning its name.
    pub(super) fn start_run(&mut self, kind: AnalysisKind, analysis: RolloutAnalysis) -> String {
        let name = self.new_run_name(kind);
        self.actions.push(Action::CreateAnalysisRun {
            name: name.clone(),
            kind,
            hash: self.current_hash.clone(),
            analysis,
        });
        self.set_run_ref(
            kind,
            AnalysisRunRef {
                name: name.clone(),
                status: Some(AnalysisPhase::Pending),
                message: None,
            },
        );
        name
    }

    /// Names the run the rollout follows for `kind` in status.canary.
    pub(super) fn set_run_ref(&mut self, kind: AnalysisKind, run: AnalysisRunRef) {
        match kind {
            AnalysisKind::Step(_) | AnalysisKind::Background => {
                let canary = self.status.canary.get_or_insert_with(CanaryStatus::default);
                match kind {
                    AnalysisKind::Step(_) => canary.current_step_analysis_run = Some(run),
                    _ => canary.current_background_analysis_run = Some(run),
                }
            }
            AnalysisKind::PrePromotion => {
                self.status
                    .blue_green
                    .get_or_insert_with(BlueGreenStatus::default)
                    .pre_promotion_analysis_run = Some(run)
            }
            AnalysisKind::PostPromotion => {
                self.status
                    .blue_green
                    .get_or_insert_with(BlueGreenStatus::default)
                    .post_promotion_analysis_run = Some(run)
            }
        }
    }

    /// Successful → done; Failed/Error → abort (or pause); Inconclusive → pause for a human.
    pub(super) fn follow_verdict(&mut self, run: &ObservedAnalysisRun, what: &str) -> bool {
        let why = run.message.clone().map(|m| format!(": {m}")).unwrap_or_default();
        match run.phase {
            AnalysisPhase::Pending | AnalysisPhase::Running => false,
            AnalysisPhase::Successful => true,
            AnalysisPhase::Inconclusive => {
                let message = format!(
                    "{what}: analysis {} was inconclusive{why}; paused until promoted",
                    run.name
                );
                self.pause_on_analysis("AnalysisInconclusive", message);
                false
            }
            AnalysisPhase::Failed | AnalysisPhase::Error => {
                let verdict = if run.phase == AnalysisPhase::Failed {
                    "failed"
                } else {
                    "errored"
                };
                match self.rollout.spec.canary().on_analysis_failure_or_default() {
                    AnalysisFailureAction::Abort => self.abort(
                        AbortReason::AnalysisFailed,
                        format!("{what}: analysis {} {verdict}{why}", run.name),
                    ),
                    AnalysisFailureAction::Pause => {
                        let message = format!(
                            "{what}: analysis {} {verdict}{why}; paused (onAnalysisFailure: pause)",
                            run.name
                        );
                        self.pause_on_analysis("AnalysisFailed", message);
                    }
                }
                false
            }
        }
    }

    /// The run the rollout follows for `kind`: the one named in status, else (after a crash between
    /// creating it and writing status) the newest run of this attempt, finished or not: a run that
    /// finished while the controller was down holds the verdict, and starting another would analyse
    /// the step twice. Runs of an attempt that ended (aborted, superseded, completed) are terminated
    /// by [`Self::terminate_analysis_runs`] and never adopted, so `sluice retry` starts afresh.
    pub(super) fn current_run(&self, kind: AnalysisKind) -> Option<ObservedAnalysisRun> {
        let named = match kind {
            AnalysisKind::Background | AnalysisKind::Step(_) => self.status.canary.as_ref().and_then(|c| match kind {
                AnalysisKind::Background => c.current_background_analysis_run.as_ref(),
                _ => c.current_step_analysis_run.as_ref(),
            }),
            AnalysisKind::PrePromotion => self
                .status
                .blue_green
                .as_ref()
                .and_then(|b| b.pre_promotion_analysis_run.as_ref()),
            AnalysisKind::PostPromotion => self
                .status
                .blue_green
                .as_ref()
                .and_then(|b| b.post_promotion_analysis_run.as_ref()),
        };
        let runs = self
            .observed
            .analysis_runs
            .iter()
            .filter(|r| r.kind == kind && r.hash == self.current_hash);
        if let Some(named) = named
            && let Some(run) = runs.clone().find(|r| r.name == named.name)
        {
            return Some(run.clone());
        }
        runs.filter(|r| !r.terminated && !self.terminated_runs.contains(&r.name))
            .max_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)))
            .cloned()
    }

    /// `<rollout>-<hash>-<step|bg>-<attempt>`: unique per attempt, the same when re-planned. The
    /// attempt follows the highest one seen, so a pruned earlier run does not free a name that a
    /// later run still holds (creating it would adopt that run instead).
    fn new_run_name(&self, kind: AnalysisKind) -> String {
        let which = match kind {
            AnalysisKind::Step(i) => format!("s{i}"),
            AnalysisKind::Background => "bg".into(),
            AnalysisKind::PrePromotion => "pre".into(),
            AnalysisKind::PostPromotion => "post".into(),
        };
        let prefix = format!("{}-{which}-", self.rs_name(&self.current_hash));
        let runs = || {
            self.observed
                .analysis_runs
                .iter()
                .filter(|r| r.kind == kind && r.hash == self.current_hash)
        };
        let after_highest = runs()
            .filter_map(|r| r.name.strip_prefix(&prefix)?.parse::<u64>().ok())
            .max()
            .map_or(0, |highest| highest.saturating_add(1));
        let attempt = after_highest.max(runs().count() as u64);
        format!("{prefix}{attempt}")
    }

    /// The runs the status to write names.
    pub(super) fn followed_runs(&self) -> Vec<String> {
        let canary = self.status.canary.iter().flat_map(|c| {
            [
                c.current_step_analysis_run.as_ref(),
                c.current_background_analysis_run.as_ref(),
            ]
        });
        let blue_green = self.status.blue_green.iter().flat_map(|b| {
            [
                b.pre_promotion_analysis_run.as_ref(),
                b.post_promotion_analysis_run.as_ref(),
            ]
        });
        canary.chain(blue_green).flatten().map(|r| r.name.clone()).collect()
    }

    /// Aborted: every analysis stops and the attempt's runs are retired, except, in the reconcile that
    /// aborts, the runs whose verdict it acted on: were that status write lost, the next reconcile
    /// must find their verdict again rather than start a new attempt.
    pub(super) fn terminate_aborted_attempt(&mut self) {
        let spared = if self.aborted_now {
            self.followed_runs()
        } else {
            Vec::new()
        };
        self.terminate_analysis_runs(|run| !spared.contains(&run.name));
    }

    /// Terminates the runs `which` selects: unfinished ones stop; finished ones (where terminating
    /// changes nothing) are marked as belonging to an attempt that ended, so none is adopted later.
    pub(super) fn terminate_analysis_runs(&mut self, which: impl Fn(&ObservedAnalysisRun) -> bool) {
        for run in self.observed.analysis_runs {
            if !run.terminated && !self.terminated_runs.contains(&run.name) && which(run) {
                self.actions
                    .push(Action::TerminateAnalysisRun { name: run.name.clone() });
                self.terminated_runs.push(run.name.clone());
            }
        }
    }
}

/// How status names an observed run: its name, phase and message.
pub(super) fn run_ref(run: &ObservedAnalysisRun) -> AnalysisRunRef {
    AnalysisRunRef {
        name: run.name.clone(),
        status: Some(run.phase),
        message: run.message.clone(),
    }
}
