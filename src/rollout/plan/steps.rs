//! Step progression: the weight in force at each step, running steps (setWeight, setCanaryScale,
//! pause, analysis) until one has to wait, and completion once every step is done.
use super::{ObservedReplicaSet, Planner, humantime};
use crate::api::rollout::{CanaryStatus, CanaryStep, TrafficWeights, WeightDestination};
use crate::rollout::replicas::ScaleLimits;

impl Planner<'_> {
    /// A new template appeared (or superseded an in-flight canary): start the steps from the beginning.
    pub(super) fn start_revision(&mut self, live: &[&ObservedReplicaSet]) {
        self.supersede_in_flight();
        self.clear_progress_state();
        self.status.current_step_index = Some(0);
        let existing = live.iter().find(|rs| rs.hash == self.current_hash);
        let revision = existing
            .map(|rs| rs.revision)
            .unwrap_or_else(|| self.next_revision(live));
        if let Some(back) = existing.filter(|rs| self.within_rollback_window(live, rs.revision)) {
            self.status.current_step_index = Some(self.steps.len() as i32);
            self.event(
                "RolledBack",
                format!(
                    "revision {} ({}) is within the rollback window: promoted without steps",
                    back.revision, self.current_hash
                ),
            );
            return;
        }
        self.event(
            "NewRevision",
            format!(
                "rolling out revision {revision} ({}) in {} steps",
                self.current_hash,
                self.steps.len()
            ),
        );
    }

    /// The revision in flight before this template (if any, and not the stable one) is superseded: its
    /// analyses stop.
    pub(super) fn supersede_in_flight(&mut self) {
        let superseded = self
            .old
            .current_pod_hash
            .clone()
            .filter(|h| Some(h) != self.old.stable_rs.as_ref());
        if let Some(old) = superseded {
            self.event(
                "Superseded",
                format!("revision {} superseded by a newer template", self.rs_name(&old)),
            );
            self.terminate_analysis_runs(|run| run.hash == old);
            self.terminate_experiments(|experiment| experiment.hash == old);
        }
    }

    /// Whether a template of an older ReplicaSet at `revision` is a rollback that skips the steps:
    /// it is older than the stable one, and at most `rollbackWindow.revisions` live ReplicaSets lie
    /// between them (the stable included), as Argo counts.
    pub(super) fn within_rollback_window(&self, live: &[&ObservedReplicaSet], revision: i64) -> bool {
        let window = self.rollout.spec.rollback_window.as_ref().map_or(0, |w| w.revisions);
        let stable = self.old.stable_rs.as_deref();
        let Some(stable_revision) = live
            .iter()
            .find(|rs| Some(rs.hash.as_str()) == stable)
            .map(|rs| rs.revision)
        else {
            return false;
        };
        let newer = live
            .iter()
            .filter(|rs| rs.revision > revision && rs.revision <= stable_revision)
            .count();
        window > 0 && revision < stable_revision && i64::try_from(newer).unwrap_or(i64::MAX) <= i64::from(window)
    }

    /// The current step, at most the number of steps (all done).
    pub(super) fn step_index(&self) -> usize {
        (self.status.current_step_index_or_default().max(0) as usize).min(self.steps.len())
    }

    /// The traffic weight in force at step `index`: its own setWeight, else the last one before it.
    pub(super) fn weight_at(&self, index: usize) -> i32 {
        if index >= self.steps.len() {
            return 100;
        }
        self.steps[..=index]
            .iter()
            .rev()
            .find_map(|s| s.set_weight)
            .unwrap_or(0)
    }

    /// Records the intended weights: `weight` for the current revision, the rest for stable.
    pub(super) fn set_weights(&mut self, weight: i32, stable_hash: &str) {
        let max = self.rollout.spec.canary().max_traffic_weight_or_default();
        self.status.canary_weight = Some(weight);
        let canary = self.status.canary.get_or_insert_with(CanaryStatus::default);
        canary.weights = Some(TrafficWeights {
            canary: WeightDestination {
                pod_template_hash: Some(self.current_hash.clone()),
                weight,
            },
            stable: WeightDestination {
                pod_template_hash: Some(stable_hash.to_string()),
                weight: max - weight,
            },
        });
    }

    /// Runs steps from the current index until one has to wait; all done means completion.
    pub(super) fn advance_steps(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) {
        if self.status.promote_full == Some(true) {
            self.promote_fully();
        }
        loop {
            let index = self.step_index();
            if index >= self.steps.len() {
                self.complete(stable, canary, older, limits);
                return;
            }
            let weight = self.weight_at(index);
            self.set_weights(weight, &stable.hash);
            let reached = if self.routed {
                self.routed_reached(stable, canary, index, weight)
            } else {
                self.weight_reached(stable, canary, older, weight, limits)
            };
            let step = self.steps[index].clone();
            let done = self.step_done(index, &step, reached);
            if self.status.is_aborted() {
                // The analysis failed in this reconcile: traffic goes back to stable now, not next time.
                self.aborted(stable, Some(canary), older, limits);
                return;
            }
            if !done {
                // Scaling is planned once, for the step the rollout waits on.
                if self.routed {
                    self.routed_step(stable, canary, older, index, weight);
                } else {
                    self.scale_basic(stable, Some(canary), older, weight, limits);
                }
                return;
            }
            self.step_completed(index, &step);
        }
    }

    /// Whether step `index` is done: promoted, or its weight `reached` and (for a pause or an analysis)
    /// its wait over. Starts what the step waits on (a pause, an AnalysisRun).
    fn step_done(&mut self, index: usize, step: &CanaryStep, reached: bool) -> bool {
        if self.status.promoted_step == Some(index as i32) {
            self.promote_step(index);
            true
        } else if step.set_weight.is_some() {
            reached
        } else if let Some(pause) = &step.pause {
            reached && self.pause_step(index, pause.duration().ok().flatten())
        } else if let Some(analysis) = &step.analysis {
            reached && self.analysis_step(index, analysis)
        } else if let Some(experiment) = &step.experiment {
            reached && self.experiment_step(index, experiment)
        } else {
            // setCanaryScale (routed canaries only; validation rejects it otherwise): done when
            // the canary has the new scale.
            reached
        }
    }

    /// Moves on to the step after `index`.
    fn step_completed(&mut self, index: usize, step: &CanaryStep) {
        self.status.current_step_index = Some(index as i32 + 1);
        self.status.step_started_at = None;
        if let Some(canary) = self.status.canary.as_mut() {
            canary.current_experiment = None;
        }
        self.event(
            "StepCompleted",
            format!(
                "step {}/{} completed: {}",
                index + 1,
                self.steps.len(),
                describe_step(step)
            ),
        );
    }

    /// Every step done: the canary goes to full scale and, once available, becomes stable.
    fn complete(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) {
        self.set_weights(self.max_weight, &stable.hash);
        self.status.pause_conditions.clear();
        self.status.controller_pause = None;
        let done = if self.routed {
            self.complete_routed(stable, canary, older)
        } else {
            let canary_full = canary.spec_replicas >= self.replicas && canary.available >= self.replicas;
            if !canary_full {
                // Grow the canary within the surge; stable and older shrink as the room allows.
                self.scale_basic(stable, Some(canary), older, 100, limits);
            }
            canary_full
        };
        if !done {
            return;
        }
        self.status.stable_rs = Some(self.current_hash.clone());
        self.status.current_step_index = Some(self.steps.len() as i32);
        // The promoted revision is stable now: no canary traffic (as the steady state reports it, so
        // the next reconcile does not write status just for this).
        self.status.canary_weight = Some(0);
        self.status.step_started_at = None;
        self.status.promote_full = None;
        self.status.promoted_step = None;
        // The promoted revision follows no analysis any more: say so in the same status write.
        if let Some(canary) = self.status.canary.as_mut() {
            canary.current_step_analysis_run = None;
            canary.current_background_analysis_run = None;
        }
        self.terminate_analysis_runs(|_| true);
        self.terminate_experiments(|_| true);
        self.event(
            "RolloutCompleted",
            format!("revision {} ({}) is now stable", canary.revision, self.current_hash),
        );
        if !self.routed {
            // The old stable scales away now that the canary carries everything (basic canary); with
            // a router it waits for its scale-down deadline.
            self.scale(stable, 0);
            for rs in older {
                self.scale(rs, 0);
            }
        }
    }
}

/// One step in words, for events and `sluice get`.
pub fn describe_step(step: &CanaryStep) -> String {
    if let Some(weight) = step.set_weight {
        return format!("setWeight {weight}%");
    }
    if let Some(pause) = &step.pause {
        return match pause.duration().ok().flatten() {
            Some(d) => format!("pause {}", humantime(d)),
            None => "pause until promoted".into(),
        };
    }
    if let Some(analysis) = &step.analysis {
        let names: Vec<&str> = analysis.templates.iter().map(|t| t.name()).collect();
        return format!("analysis {}", names.join(", "));
    }
    if step.set_canary_scale.is_some() {
        return "setCanaryScale".into();
    }
    if let Some(route) = &step.set_header_route {
        let verb = if route.matches.is_empty() { "removed" } else { "set" };
        return format!("setHeaderRoute {} {verb}", crate::bounds::truncate(&route.name, 63));
    }
    if let Some(experiment) = &step.experiment {
        let names: Vec<String> = experiment
            .templates
            .iter()
            .take(crate::api::experiment::MAX_TEMPLATES)
            .map(|t| crate::bounds::truncate(&t.name, 63).into_owned())
            .collect();
        let duration = match experiment.duration().ok().flatten() {
            Some(d) => format!(" for {}", humantime(d)),
            None => String::new(),
        };
        return format!("experiment {}{duration}", names.join(", "));
    }
    if let Some(route) = &step.set_mirror_route {
        let verb = if route.matches.is_empty() { "removed" } else { "set" };
        return format!("setMirrorRoute {} {verb}", crate::bounds::truncate(&route.name, 63));
    }
    "unknown step".into()
}
