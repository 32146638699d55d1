//! The rollout decision: from what was observed (the Rollout, its ReplicaSets, pods and analysis runs)
//! and the time, the actions to take and the status to write. Pure: no client, no clock, no randomness,
//! so re-planning after a restart at any point gives the same actions, and it is testable in microseconds.
//!
//! One plan's state is a `Planner`. This file holds the types, the entry point and the top-level flow
//! (first deployment, steady state, canary); each concern has its own file of `impl Planner` methods:
//! `replica_sets` (creating and scaling), `steps`, `pause` (pauses and promotion), `analysis`, `abort`,
//! `routed` (with a traffic router), `restart`, `history` (pruning) and `finish` (status composition);
//! `blue_green` holds the blue-green strategy's flow.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{CanaryStep, Rollout, RolloutAnalysis, RolloutStatus};
use crate::rollout::hash::pod_template_hash;
use crate::rollout::replicas::ScaleLimits;
use crate::rollout::status;
use crate::rollout::validate::{self, SpecError};

mod abort;
mod analysis;
mod blue_green;
mod experiment;
mod finish;
mod history;
mod pause;
mod replica_sets;
mod restart;
mod routed;
pub mod routes;
mod steps;

pub use steps::describe_step;

/// A ReplicaSet of the Rollout, as observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedReplicaSet {
    pub name: String,
    /// Its `sluice.dev/pod-template-hash` label.
    pub hash: String,
    /// Its `sluice.dev/revision` annotation.
    pub revision: i64,
    pub spec_replicas: i32,
    /// Pods it has (status.replicas).
    pub pods: i32,
    pub ready: i32,
    pub available: i32,
    pub git_revision: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// Being deleted: ignored.
    pub deleting: bool,
    /// When this (old) ReplicaSet may be scaled to zero (annotation `sluice.dev/scale-down-deadline`).
    pub scale_down_at: Option<DateTime<Utc>>,
    /// The ephemeral pod metadata it carries (annotation `sluice.dev/pod-metadata`).
    pub pod_metadata: Option<crate::api::pod_metadata::PodMetadata>,
}

/// What the traffic router currently does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedTraffic {
    /// The canary's weight as the router has it (None: never set, or the route is gone).
    pub canary_weight: Option<i32>,
    /// The router has accepted its latest change (e.g. HTTPRoute Accepted for its generation).
    pub ready: bool,
}

/// A Service named by canaryService / stableService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedService {
    pub name: String,
    /// The `sluice.dev/pod-template-hash` in its selector, if any.
    pub selector_hash: Option<String>,
}

/// A pod of one of the Rollout's ReplicaSets (for restarts).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub ready: bool,
}

/// Which analysis an AnalysisRun belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisKind {
    /// The analysis step at this index.
    Step(i32),
    /// The background analysis (`strategy.canary.analysis`).
    Background,
    /// Blue-green `prePromotionAnalysis` (before the active Service switches).
    PrePromotion,
    /// Blue-green `postPromotionAnalysis` (after the switch, before the new version becomes stable).
    PostPromotion,
}

/// An AnalysisRun owned by the Rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedAnalysisRun {
    pub name: String,
    pub hash: String,
    pub kind: AnalysisKind,
    pub phase: AnalysisPhase,
    pub message: Option<String>,
    pub terminated: bool,
    pub created_at: Option<DateTime<Utc>>,
}

/// An Experiment owned by the Rollout (an experiment step's).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedExperiment {
    pub name: String,
    /// The revision it was created for (its `sluice.dev/pod-template-hash` label).
    pub hash: String,
    /// The experiment step it runs (its `sluice.dev/experiment-step` label).
    pub step: i32,
    /// Pending until the controller reports otherwise.
    pub phase: AnalysisPhase,
    pub message: Option<String>,
    /// `spec.terminate` is set.
    pub terminated: bool,
    pub created_at: Option<DateTime<Utc>>,
    /// (template, Service) of each template with a Service (status.templateStatuses).
    pub template_services: Vec<(String, String)>,
}

/// Everything the plan looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub rollout: &'a Rollout,
    pub replica_sets: &'a [ObservedReplicaSet],
    pub pods: &'a [ObservedPod],
    pub analysis_runs: &'a [ObservedAnalysisRun],
    /// The Experiments of experiment steps.
    pub experiments: &'a [ObservedExperiment],
    /// Problems found while reading referenced objects (missing AnalysisTemplate, Service, …).
    pub reference_errors: Vec<SpecError>,
    /// The router's state; None without trafficRouting.
    pub traffic: Option<ObservedTraffic>,
    /// canaryService and stableService, when set.
    pub services: Vec<ObservedService>,
    pub now: DateTime<Utc>,
}

/// One change to make in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `<rollout>-<hash>` from the Rollout's template.
    CreateReplicaSet {
        name: String,
        hash: String,
        revision: i64,
        replicas: i32,
        git_revision: Option<String>,
    },
    ScaleReplicaSet {
        name: String,
        replicas: i32,
    },
    /// An old ReplicaSet comes back (undo): it becomes the newest revision.
    SetRevision {
        name: String,
        revision: i64,
    },
    DeleteReplicaSet {
        name: String,
    },
    /// Restart: replace a pod created before `spec.restartAt`.
    DeletePod {
        name: String,
    },
    CreateAnalysisRun {
        name: String,
        kind: AnalysisKind,
        hash: String,
        analysis: RolloutAnalysis,
    },
    TerminateAnalysisRun {
        name: String,
    },
    /// A finished AnalysisRun beyond the history limits.
    DeleteAnalysisRun {
        name: String,
    },
    /// Create the Experiment of experiment step `step` for revision `hash`, its `specRef: stable`
    /// templates from `stable_replica_set`'s pod template.
    CreateExperiment {
        name: String,
        step: i32,
        hash: String,
        stable_replica_set: String,
        stable_hash: String,
        experiment: crate::api::experiment::RolloutExperimentStep,
    },
    /// Set `spec.terminate` on an Experiment the rollout left early.
    TerminateExperiment {
        name: String,
    },
    /// A finished Experiment beyond the history limits.
    DeleteExperiment {
        name: String,
    },
    /// Write the canary's weight to the traffic router (stable gets maxTrafficWeight − weight).
    SetCanaryWeight {
        weight: i32,
    },
    /// Point a Service's selector at one ReplicaSet's pods.
    SetServiceSelector {
        service: String,
        hash: String,
    },
    /// Put the pod template of `replica_set` (the stable one) back into the Rollout's spec.template,
    /// as `sluice undo` does: rollbackOnAbort for a Rollout no GitSync owns, after its revision was
    /// judged bad. The template then equals stable's and the rollout returns to Healthy without steps.
    RestoreStableTemplate {
        replica_set: String,
    },
    /// When an old ReplicaSet may be scaled down (scaleDownDelaySeconds after promotion).
    SetScaleDownDeadline {
        name: String,
        at: DateTime<Utc>,
    },
}

pub use crate::api::keys::SCALE_DOWN_DEADLINE_ANNOTATION;

/// An event to record on the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of planning: actions in order, the status to write (when it differs), events, and when
/// to look again if nothing else happens first.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: RolloutStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue_after: Option<Duration>,
    /// Set when the rollout aborted in this plan (for the aborts metric).
    pub aborted_now: bool,
}

pub use crate::api::keys::GIT_REVISION_ANNOTATION;

/// The pod template hash of the Rollout's current template.
pub fn current_hash(rollout: &Rollout) -> String {
    pod_template_hash(&rollout.spec.template.to_value())
}

/// Plans one reconcile.
pub fn plan(observed: &Observed) -> Plan {
    Planner::new(observed).run()
}

struct Planner<'a> {
    observed: &'a Observed<'a>,
    rollout: &'a Rollout,
    now: DateTime<Utc>,
    old: RolloutStatus,
    status: RolloutStatus,
    actions: Vec<Action>,
    events: Vec<PlannedEvent>,
    requeue: Option<Duration>,
    aborted_now: bool,
    current_hash: String,
    replicas: i32,
    steps: Vec<CanaryStep>,
    /// A traffic router splits requests; replica counts no longer carry the weight.
    routed: bool,
    max_weight: i32,
    /// AnalysisRuns this plan terminates: none of them is adopted by it.
    terminated_runs: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(observed: &'a Observed<'a>) -> Self {
        let rollout = observed.rollout;
        let old = rollout.status.clone().unwrap_or_default();
        let template = rollout.spec.template.to_value();
        Planner {
            observed,
            rollout,
            now: observed.now,
            status: old.clone(),
            old,
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
            aborted_now: false,
            current_hash: pod_template_hash(&template),
            replicas: rollout.spec.replicas_or_default(),
            steps: rollout.spec.canary().steps,
            routed: rollout.spec.canary().traffic_routing.is_some(),
            max_weight: rollout.spec.canary().max_traffic_weight_or_default(),
            terminated_runs: Vec::new(),
        }
    }

    fn run(mut self) -> Plan {
        self.status.observed_generation = self.rollout.metadata.generation;
        let mut errors = validate::validate(self.rollout);
        errors.extend(self.observed.reference_errors.iter().cloned());
        if !errors.is_empty() {
            return self.invalid(errors);
        }
        let limits = ScaleLimits::parse(
            self.replicas,
            &text(&self.rollout.spec.canary().max_surge_or_default()),
            &text(&self.rollout.spec.canary().max_unavailable_or_default()),
        )
        .expect("validated above");
        let live: Vec<&ObservedReplicaSet> = self.observed.replica_sets.iter().filter(|rs| !rs.deleting).collect();
        let stable = self
            .old
            .stable_rs
            .clone()
            .filter(|hash| live.iter().any(|rs| rs.hash == *hash));
        match stable {
            _ if self.rollout.spec.blue_green().is_some() => self.blue_green(&live, stable),
            None => self.first_deployment(&live),
            Some(stable) if stable == self.current_hash => self.steady(&live, &stable, limits),
            Some(stable) => self.canary(&live, &stable, limits),
        }
        self.prune_history(&live);
        self.prune_analysis_runs();
        self.prune_experiments();
        self.finish(&live, limits)
    }

    /// An invalid spec: report it and change nothing in the cluster.
    fn invalid(mut self, errors: Vec<SpecError>) -> Plan {
        let message = validate::summary(&errors);
        let already = crate::api::conditions::find(&self.old.conditions, crate::api::conditions::INVALID_SPEC)
            .is_some_and(|c| c.is_true() && c.message.as_deref() == Some(message.as_str()));
        if !already {
            self.warn("InvalidSpec", message.clone());
        }
        status::mark_invalid(&mut self.status, &message, self.now);
        Plan {
            actions: vec![],
            status: self.status,
            events: self.events,
            requeue_after: None,
            aborted_now: false,
        }
    }

    fn event(&mut self, reason: &'static str, message: impl Into<String>) {
        self.events.push(PlannedEvent {
            warning: false,
            reason,
            message: message.into(),
        });
    }

    /// Adds `message` to this plan's `joins` Event when it has one (what happened in one reconcile is
    /// one Event, and one API write), else publishes it as `reason`.
    fn event_or_join(&mut self, joins: &'static str, reason: &'static str, message: String) {
        match self.events.iter_mut().find(|e| e.reason == joins && !e.warning) {
            Some(event) => {
                event.message.push_str("; ");
                event.message.push_str(&message);
            }
            None => self.event(reason, message),
        }
    }

    fn warn(&mut self, reason: &'static str, message: impl Into<String>) {
        self.events.push(PlannedEvent {
            warning: true,
            reason,
            message: message.into(),
        });
    }

    fn requeue_in(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(100));
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn rs_name(&self, hash: &str) -> String {
        format!("{}-{hash}", self.rollout.metadata.name.as_deref().unwrap_or("rollout"))
    }

    /// No stable ReplicaSet yet: the first version goes straight to full scale and becomes stable.
    fn first_deployment(&mut self, live: &[&ObservedReplicaSet]) {
        if let Some(rs) = self.ensure_current(live, self.replicas) {
            self.scale(rs, self.replicas);
        }
        let current = self.current_hash.clone();
        for rs in live.iter().filter(|rs| rs.hash != current) {
            self.scale(rs, 0);
        }
        self.status.stable_rs = Some(self.current_hash.clone());
        self.status.current_pod_hash = Some(self.current_hash.clone());
        self.status.current_step_index = Some(self.steps.len() as i32);
        self.clear_progress_state();
        self.status.canary_weight = Some(0);
    }

    /// The template is the stable one: no steps. Either nothing to do, or a fast rollback from an
    /// aborted or superseded canary, with the canary scaled away within the surge limits.
    fn steady(&mut self, live: &[&ObservedReplicaSet], stable: &str, limits: ScaleLimits) {
        if self.old.current_pod_hash.as_deref().is_some_and(|h| h != stable) {
            self.event(
                "RolledBack",
                format!(
                    "the template is the stable revision again: rolled back to {} without steps",
                    self.rs_name(stable)
                ),
            );
        }
        self.status.current_pod_hash = Some(stable.to_string());
        self.status.current_step_index = Some(self.steps.len() as i32);
        self.clear_progress_state();
        self.status.canary_weight = Some(0);
        let Some(stable_rs) = live.iter().find(|rs| rs.hash == stable).copied() else {
            return;
        };
        self.sync_services(stable, stable);
        if self.routed {
            self.steady_routed(live, stable_rs);
        } else {
            let (canary, older) = self.split_others(live, &[stable]);
            self.scale_basic(stable_rs, canary, &older, 0, limits);
        }
        self.terminate_analysis_runs(|_| true);
        self.terminate_experiments(|_| true);
    }

    /// Resets everything a rollout in progress keeps in status.
    fn clear_progress_state(&mut self) {
        self.status.pause_conditions.clear();
        self.status.controller_pause = None;
        self.status.abort = None;
        self.status.aborted_at = None;
        self.status.abort_reason = None;
        self.status.promote_full = None;
        self.status.promoted_step = None;
        self.status.step_started_at = None;
        if let Some(canary) = self.status.canary.as_mut() {
            canary.current_step_analysis_run = None;
            canary.current_background_analysis_run = None;
            canary.current_experiment = None;
        }
        if let Some(blue_green) = self.status.blue_green.as_mut() {
            blue_green.pre_promotion_analysis_run = None;
            blue_green.post_promotion_analysis_run = None;
        }
    }

    /// A rollout in progress: the current template differs from the stable one. The Services follow:
    /// canaryService selects the canary's pods, stableService the stable's (both stable once aborted).
    fn canary(&mut self, live: &[&ObservedReplicaSet], stable: &str, limits: ScaleLimits) {
        self.canary_steps(live, stable, limits);
        let canary_exists = live.iter().any(|rs| rs.hash == self.current_hash);
        let promoted = self.status.stable_rs.as_deref() == Some(self.current_hash.as_str());
        let stable_hash = if promoted {
            self.current_hash.clone()
        } else {
            stable.to_string()
        };
        let canary_hash = if self.status.is_aborted() || !canary_exists {
            stable_hash.clone()
        } else {
            self.current_hash.clone()
        };
        // A routed completion moves the stable Service itself, in its own order.
        let completing = self.routed && !promoted && !self.status.is_aborted() && self.step_index() >= self.steps.len();
        if !completing {
            self.sync_services(&canary_hash, &stable_hash);
        }
    }

    /// The canary's side of a rollout in progress: a new revision starts its steps, manual abort and
    /// retry apply, then aborted, paused, just created or advancing through the steps.
    fn canary_steps(&mut self, live: &[&ObservedReplicaSet], stable: &str, limits: ScaleLimits) {
        let stable_rs = live
            .iter()
            .find(|rs| rs.hash == stable)
            .copied()
            .expect("stable exists");
        if self.old.current_pod_hash.as_deref() != Some(self.current_hash.as_str()) {
            self.start_revision(live);
        }
        self.status.current_pod_hash = Some(self.current_hash.clone());
        let older: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| rs.hash != stable && rs.hash != self.current_hash)
            .copied()
            .collect();
        self.handle_manual_controls();
        let initial = self.initial_canary_replicas(live, stable_rs, &older, limits);
        let canary_rs = self.ensure_current(live, initial);
        if self.status.is_aborted() {
            self.aborted(stable_rs, canary_rs, &older, limits);
            return;
        }
        if self.rollout.spec.is_paused() {
            self.hold_paused(stable_rs, canary_rs, &older, limits);
            return;
        }
        self.run_background_analysis();
        if self.status.is_aborted() {
            self.aborted(stable_rs, canary_rs, &older, limits);
            return;
        }
        let Some(canary_rs) = canary_rs else {
            // Created in this reconcile, already at its first step's size (basic canary); the rest
            // of the scaling waits for it to be observed.
            let weight = self.weight_at(self.step_index());
            self.set_weights(weight, stable);
            if !self.routed {
                let created = self.unobserved(&self.current_hash, initial);
                self.scale_basic(stable_rs, Some(&created), &older, weight, limits);
            }
            return;
        };
        self.advance_steps(stable_rs, canary_rs, &older, limits);
    }
}

fn text(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match value {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

/// `90s` → "1m30s", `2s` → "2s", `500ms` → "500ms".
pub fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests;
