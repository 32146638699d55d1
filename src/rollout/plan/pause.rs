//! Pauses and promotion: spec.paused holding the current weight, pause steps (timed or until
//! promoted), pauses on an analysis verdict, and `sluice promote` (one step or fully) releasing them.
use std::time::Duration;

use super::{AnalysisKind, ObservedReplicaSet, Planner, humantime};
use crate::api::duration::deadline_after;
use crate::api::rollout::{PauseCondition, PauseReason};
use crate::rollout::replicas::ScaleLimits;

impl Planner<'_> {
    /// spec.paused: no step advances, but the current weight holds (e.g. when spec.replicas changes).
    pub(super) fn hold_paused(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) {
        let weight = self.weight_at(self.step_index());
        self.set_weights(weight, &stable.hash);
        if let Some(canary) = canary {
            if self.routed {
                self.hold_routed(stable, canary, older, weight);
            } else {
                self.scale_basic(stable, Some(canary), older, weight, limits);
            }
        }
    }

    /// `sluice promote --full`: every remaining step is skipped, and the pauses and step analyses with
    /// them (the background analysis keeps judging until completion).
    pub(super) fn promote_fully(&mut self) {
        if self.step_index() < self.steps.len() {
            self.event("RolloutPromoted", "promoted fully: skipping the remaining steps");
        }
        self.status.current_step_index = Some(self.steps.len() as i32);
        self.status.pause_conditions.clear();
        self.terminate_analysis_runs(|run| run.kind != AnalysisKind::Background);
        self.terminate_experiments(|_| true);
    }

    /// `sluice promote`: step `index` counts as done, whatever it waits on.
    pub(super) fn promote_step(&mut self, index: usize) {
        self.event(
            "RolloutPromoted",
            format!("step {}/{} promoted", index + 1, self.steps.len()),
        );
        self.status.pause_conditions.clear();
        self.terminate_analysis_runs(|run| run.kind == AnalysisKind::Step(index as i32));
        self.terminate_experiments(|experiment| experiment.step == index as i32);
    }

    /// A pause step: timed (from status.stepStartedAt, so it survives restarts) or until promoted.
    pub(super) fn pause_step(&mut self, index: usize, duration: Option<Duration>) -> bool {
        let started = match self.status.step_started_at {
            Some(started) => started,
            None => {
                self.status.step_started_at = Some(self.now);
                let how = duration.map_or("until promoted".to_string(), |d| format!("for {}", humantime(d)));
                self.event(
                    "RolloutPaused",
                    format!("step {}/{}: paused {how}", index + 1, self.steps.len()),
                );
                self.now
            }
        };
        if let Some(duration) = duration {
            // A start later than now (a skewed clock, an edited status) counts as now: the pause is
            // never longer than its duration.
            let ends = deadline_after(started.min(self.now), duration);
            if self.now >= ends {
                // No Event of its own: the StepCompleted written at the same moment says the pause
                // step is done (one write per rollout fewer in a wave).
                self.status.pause_conditions.clear();
                return true;
            }
            self.requeue_in((ends - self.now).to_std().unwrap_or_default());
        }
        if !self
            .status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::CanaryPauseStep)
        {
            self.status.pause_conditions.push(PauseCondition {
                reason: PauseReason::CanaryPauseStep,
                start_time: started,
            });
        }
        self.status.controller_pause = Some(true);
        false
    }

    /// Pauses for a human on an analysis verdict; the condition and its event are recorded once.
    pub(super) fn pause_on_analysis(&mut self, event: &'static str, message: String) {
        if !self
            .status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
        {
            self.status.pause_conditions.push(PauseCondition {
                reason: PauseReason::InconclusiveAnalysisRun,
                start_time: self.now,
            });
            self.warn(event, message);
        }
        self.status.controller_pause = Some(true);
    }
}
