//! The rollout decision: from what was observed (the Rollout, its ReplicaSets, pods and analysis runs)
//! and the time, the actions to take and the status to write. Pure: no client, no clock, no randomness,
//! so re-planning after a restart at any point gives the same actions, and it is testable in microseconds.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{
    AbortReason, AnalysisFailureAction, AnalysisRunHistory, AnalysisRunRef, CanaryStatus, CanaryStep, PauseCondition,
    PauseReason, RevisionInfo, Rollout, RolloutAnalysis, RolloutStatus, TrafficWeights, WeightDestination,
};
use crate::rollout::hash::pod_template_hash;
use crate::rollout::replicas::{self, ReplicaSetCounts, RolloutReplicaSets, ScaleLimits, ScalePlan};
use crate::rollout::status::{self, Progress};
use crate::rollout::validate::{self, SpecError};

mod routed;

/// A ReplicaSet of the Rollout, as observed.
#[derive(Debug, Clone, PartialEq)]
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

/// Everything the plan looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub rollout: &'a Rollout,
    pub replica_sets: &'a [ObservedReplicaSet],
    pub pods: &'a [ObservedPod],
    pub analysis_runs: &'a [ObservedAnalysisRun],
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
            None => self.first_deployment(&live),
            Some(stable) if stable == self.current_hash => self.steady(&live, &stable, limits),
            Some(stable) => self.canary(&live, &stable, limits),
        }
        self.prune_history(&live);
        self.prune_analysis_runs();
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

    fn git_revision(&self) -> Option<String> {
        self.rollout
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GIT_REVISION_ANNOTATION))
            .cloned()
    }

    fn next_revision(&self, live: &[&ObservedReplicaSet]) -> i64 {
        live.iter().map(|rs| rs.revision).max().unwrap_or(0) + 1
    }

    /// Makes sure the ReplicaSet of the current template exists with `replicas` pods, returning it if
    /// it already existed.
    fn ensure_current<'r>(&mut self, live: &[&'r ObservedReplicaSet], replicas: i32) -> Option<&'r ObservedReplicaSet> {
        let revision = self.next_revision(live);
        match live.iter().find(|rs| rs.hash == self.current_hash) {
            Some(rs) => {
                let newest = live.iter().all(|other| other.revision <= rs.revision);
                if !newest {
                    // Undo to an old template: the old ReplicaSet becomes the newest revision.
                    self.actions.push(Action::SetRevision {
                        name: rs.name.clone(),
                        revision,
                    });
                }
                Some(rs)
            }
            None => {
                let name = self.rs_name(&self.current_hash);
                self.actions.push(Action::CreateReplicaSet {
                    name: name.clone(),
                    hash: self.current_hash.clone(),
                    revision,
                    replicas,
                    git_revision: self.git_revision(),
                });
                self.event(
                    "NewReplicaSet",
                    format!("created ReplicaSet {name} (revision {revision}) with {replicas} replicas"),
                );
                None
            }
        }
    }

    fn scale(&mut self, rs: &ObservedReplicaSet, replicas: i32) {
        if rs.spec_replicas != replicas {
            self.actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas,
            });
            self.event(
                "ScalingReplicaSet",
                format!("scaled ReplicaSet {} from {} to {replicas}", rs.name, rs.spec_replicas),
            );
        }
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
        }
    }

    /// Splits the ReplicaSets other than `exclude` into the biggest (the one being scaled away first
    /// as "canary") and the rest (older), newest first.
    fn split_others<'r>(
        &self,
        live: &[&'r ObservedReplicaSet],
        exclude: &[&str],
    ) -> (Option<&'r ObservedReplicaSet>, Vec<&'r ObservedReplicaSet>) {
        let mut others: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| !exclude.contains(&rs.hash.as_str()))
            .copied()
            .collect();
        others.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        let biggest = others
            .iter()
            .enumerate()
            .max_by_key(|(_, rs)| (rs.spec_replicas, rs.revision))
            .map(|(i, _)| i);
        match biggest {
            Some(i) => {
                let canary = others.remove(i);
                (Some(canary), others)
            }
            None => (None, others),
        }
    }

    fn counts(rs: Option<&ObservedReplicaSet>) -> ReplicaSetCounts {
        rs.map(|rs| ReplicaSetCounts {
            spec: rs.spec_replicas,
            available: rs.available.min(rs.spec_replicas),
        })
        .unwrap_or_default()
    }

    fn current_counts(
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
    ) -> RolloutReplicaSets {
        RolloutReplicaSets {
            stable: Self::counts(Some(stable)),
            canary: Self::counts(canary),
            older: older.iter().map(|rs| Self::counts(Some(rs))).collect(),
        }
    }

    /// Whether the replica counts of `weight` are reached, with every desired pod available.
    fn weight_reached(
        &self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        weight: i32,
        limits: ScaleLimits,
    ) -> bool {
        replicas::step_reached(
            self.replicas,
            weight,
            limits,
            &Self::current_counts(stable, Some(canary), older),
        )
    }

    /// Scales stable, canary and older ReplicaSets one reconcile towards `weight` (basic canary).
    fn scale_basic(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
        weight: i32,
        limits: ScaleLimits,
    ) {
        let current = Self::current_counts(stable, canary, older);
        let plan: ScalePlan = replicas::plan_basic_canary(self.replicas, weight, limits, &current);
        self.scale(stable, plan.stable);
        if let Some(canary) = canary {
            self.scale(canary, plan.canary);
        }
        for (rs, replicas) in older.iter().zip(plan.older) {
            self.scale(rs, replicas);
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
            // Paused: no step advances, but the current weight holds (e.g. when spec.replicas changes).
            let weight = self.weight_at(self.step_index());
            self.set_weights(weight, stable);
            if let Some(canary_rs) = canary_rs {
                if self.routed {
                    self.hold_routed(stable_rs, canary_rs, &older, weight);
                } else {
                    self.scale_basic(stable_rs, Some(canary_rs), &older, weight, limits);
                }
            }
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

    /// Pods a canary ReplicaSet that does not exist yet is created with: in a basic canary that is
    /// moving, what scaling towards the current step's weight would give it once it exists (within the
    /// surge), which saves a scale write; otherwise none.
    fn initial_canary_replicas(
        &self,
        live: &[&ObservedReplicaSet],
        stable: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) -> i32 {
        let exists = live.iter().any(|rs| rs.hash == self.current_hash);
        if exists || self.routed || self.status.is_aborted() || self.rollout.spec.is_paused() {
            return 0;
        }
        let weight = self.weight_at(self.step_index());
        let empty = self.unobserved(&self.current_hash, 0);
        let current = Self::current_counts(stable, Some(&empty), older);
        replicas::plan_basic_canary(self.replicas, weight, limits, &current).canary
    }

    /// The ReplicaSet for `hash` as it will be once created with `replicas` (no pods yet).
    fn unobserved(&self, hash: &str, replicas: i32) -> ObservedReplicaSet {
        ObservedReplicaSet {
            name: self.rs_name(hash),
            hash: hash.to_string(),
            revision: 0,
            spec_replicas: replicas,
            pods: 0,
            ready: 0,
            available: 0,
            git_revision: None,
            created_at: None,
            deleting: false,
            scale_down_at: None,
        }
    }

    /// A new template appeared (or superseded an in-flight canary): start the steps from the beginning.
    fn start_revision(&mut self, live: &[&ObservedReplicaSet]) {
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
        }
        self.clear_progress_state();
        self.status.current_step_index = Some(0);
        let revision = live
            .iter()
            .find(|rs| rs.hash == self.current_hash)
            .map(|rs| rs.revision)
            .unwrap_or_else(|| self.next_revision(live));
        self.event(
            "NewRevision",
            format!(
                "rolling out revision {revision} ({}) in {} steps",
                self.current_hash,
                self.steps.len()
            ),
        );
    }

    /// Abort and retry requests written to status by `sluice abort` / `sluice retry`.
    fn handle_manual_controls(&mut self) {
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
            // `sluice retry` clears status.abort and leaves abortedAt: start again at step 0.
            self.clear_progress_state();
            self.status.current_step_index = Some(0);
            self.event("RolloutRetried", "retrying the rollout from step 0");
        }
    }

    fn abort(&mut self, reason: AbortReason, message: String) {
        self.status.abort = Some(true);
        self.status.aborted_at = Some(self.now);
        self.status.abort_reason = Some(reason);
        self.status.pause_conditions.clear();
        self.status.message = Some(message.clone());
        self.aborted_now = true;
        self.warn("RolloutAborted", message);
    }

    /// Aborted: weight 0 at once, stable back to full scale, the canary scaled away.
    fn aborted(
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
        self.terminate_analysis_runs(|_| true);
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
            .is_some_and(|l| l.contains_key(crate::gitsync::GITSYNC_LABEL));
        if !blamed || git_owned || !self.rollout.spec.canary().is_rollback_on_abort() {
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

    fn step_index(&self) -> usize {
        (self.status.current_step_index_or_default().max(0) as usize).min(self.steps.len())
    }

    /// The traffic weight in force at step `index`: its own setWeight, else the last one before it.
    fn weight_at(&self, index: usize) -> i32 {
        if index >= self.steps.len() {
            return 100;
        }
        self.steps[..=index]
            .iter()
            .rev()
            .find_map(|s| s.set_weight)
            .unwrap_or(0)
    }

    fn set_weights(&mut self, weight: i32, stable_hash: &str) {
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
    fn advance_steps(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) {
        if self.status.promote_full == Some(true) {
            if self.step_index() < self.steps.len() {
                self.event("RolloutPromoted", "promoted fully: skipping the remaining steps");
            }
            self.status.current_step_index = Some(self.steps.len() as i32);
            self.status.pause_conditions.clear();
            self.terminate_analysis_runs(|run| run.kind != AnalysisKind::Background);
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
            let promoted = self.status.promoted_step == Some(index as i32);
            let step = self.steps[index].clone();
            let done = if promoted {
                self.event(
                    "RolloutPromoted",
                    format!("step {}/{} promoted", index + 1, self.steps.len()),
                );
                self.status.pause_conditions.clear();
                self.terminate_analysis_runs(|run| run.kind == AnalysisKind::Step(index as i32));
                true
            } else if step.set_weight.is_some() {
                reached
            } else if let Some(pause) = &step.pause {
                reached && self.pause_step(index, pause.duration().ok().flatten())
            } else if let Some(analysis) = &step.analysis {
                reached && self.analysis_step(index, analysis)
            } else {
                // setCanaryScale (routed canaries only; validation rejects it otherwise): done when
                // the canary has the new scale.
                reached
            };
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
            self.status.current_step_index = Some(index as i32 + 1);
            self.status.step_started_at = None;
            self.event(
                "StepCompleted",
                format!(
                    "step {}/{} completed: {}",
                    index + 1,
                    self.steps.len(),
                    describe_step(&step)
                ),
            );
        }
    }

    /// A pause step: timed (from status.stepStartedAt, so it survives restarts) or until promoted.
    fn pause_step(&mut self, index: usize, duration: Option<Duration>) -> bool {
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
            let ends = started + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::zero());
            if self.now >= ends {
                self.status.pause_conditions.clear();
                self.event(
                    "RolloutResumed",
                    format!(
                        "step {}/{}: pause of {} ended",
                        index + 1,
                        self.steps.len(),
                        humantime(duration)
                    ),
                );
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

    /// An analysis step: create its AnalysisRun and follow its verdict.
    fn analysis_step(&mut self, index: usize, analysis: &RolloutAnalysis) -> bool {
        let kind = AnalysisKind::Step(index as i32);
        let run = self.current_run(kind);
        let Some(run) = run else {
            let name = self.new_run_name(kind);
            self.actions.push(Action::CreateAnalysisRun {
                name: name.clone(),
                kind,
                hash: self.current_hash.clone(),
                analysis: analysis.clone(),
            });
            self.status
                .canary
                .get_or_insert_with(CanaryStatus::default)
                .current_step_analysis_run = Some(AnalysisRunRef {
                name: name.clone(),
                status: Some(AnalysisPhase::Pending),
                message: None,
            });
            if self.status.step_started_at.is_none() {
                self.status.step_started_at = Some(self.now);
            }
            self.event(
                "AnalysisRunCreated",
                format!("step {}/{}: started analysis {name}", index + 1, self.steps.len()),
            );
            return false;
        };
        self.status
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_step_analysis_run = Some(AnalysisRunRef {
            name: run.name.clone(),
            status: Some(run.phase),
            message: run.message.clone(),
        });
        self.follow_verdict(&run, &format!("step {}/{}", index + 1, self.steps.len()))
    }

    /// The background analysis: started once the rollout reaches its startingStep.
    fn run_background_analysis(&mut self) {
        let Some(analysis) = self.rollout.spec.canary().analysis else {
            return;
        };
        if (self.step_index() as i32) < analysis.starting_step.unwrap_or(0) || self.step_index() >= self.steps.len() {
            return;
        }
        match self.current_run(AnalysisKind::Background) {
            None => {
                let name = self.new_run_name(AnalysisKind::Background);
                self.actions.push(Action::CreateAnalysisRun {
                    name: name.clone(),
                    kind: AnalysisKind::Background,
                    hash: self.current_hash.clone(),
                    analysis,
                });
                self.status
                    .canary
                    .get_or_insert_with(CanaryStatus::default)
                    .current_background_analysis_run = Some(AnalysisRunRef {
                    name: name.clone(),
                    status: Some(AnalysisPhase::Pending),
                    message: None,
                });
                self.event("AnalysisRunCreated", format!("started background analysis {name}"));
            }
            Some(run) => {
                self.status
                    .canary
                    .get_or_insert_with(CanaryStatus::default)
                    .current_background_analysis_run = Some(AnalysisRunRef {
                    name: run.name.clone(),
                    status: Some(run.phase),
                    message: run.message.clone(),
                });
                if run.phase.is_completed() && run.phase != AnalysisPhase::Successful {
                    self.follow_verdict(&run, "background analysis");
                }
            }
        }
    }

    /// Successful → done; Failed/Error → abort (or pause); Inconclusive → pause for a human.
    fn follow_verdict(&mut self, run: &ObservedAnalysisRun, what: &str) -> bool {
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

    /// Pauses for a human on an analysis verdict; the condition and its event are recorded once.
    fn pause_on_analysis(&mut self, event: &'static str, message: String) {
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

    /// The run the rollout follows for `kind`: the one named in status, else (after a crash between
    /// creating it and writing status) the newest unfinished one of this revision.
    fn current_run(&self, kind: AnalysisKind) -> Option<ObservedAnalysisRun> {
        let named = self.status.canary.as_ref().and_then(|c| match kind {
            AnalysisKind::Background => c.current_background_analysis_run.as_ref(),
            AnalysisKind::Step(_) => c.current_step_analysis_run.as_ref(),
        });
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
        runs.filter(|r| !r.phase.is_completed() && !r.terminated)
            .max_by_key(|r| r.created_at)
            .cloned()
    }

    /// `<rollout>-<hash>-<step|bg>-<attempt>`: unique per attempt, the same when re-planned.
    fn new_run_name(&self, kind: AnalysisKind) -> String {
        let attempts = self
            .observed
            .analysis_runs
            .iter()
            .filter(|r| r.kind == kind && r.hash == self.current_hash)
            .count();
        let which = match kind {
            AnalysisKind::Step(i) => format!("s{i}"),
            AnalysisKind::Background => "bg".into(),
        };
        format!("{}-{}-{attempts}", self.rs_name(&self.current_hash), which)
    }

    fn terminate_analysis_runs(&mut self, which: impl Fn(&ObservedAnalysisRun) -> bool) {
        for run in self.observed.analysis_runs {
            if !run.phase.is_completed() && !run.terminated && which(run) {
                self.actions
                    .push(Action::TerminateAnalysisRun { name: run.name.clone() });
            }
        }
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

    /// Keeps the newest finished AnalysisRuns within the successful / unsuccessful history limits; the
    /// runs the rollout currently follows are never deleted.
    fn prune_analysis_runs(&mut self) {
        let (keep_successful, keep_unsuccessful) = AnalysisRunHistory::limits(self.rollout.spec.analysis.as_ref());
        let followed: Vec<String> = self
            .status
            .canary
            .iter()
            .flat_map(|c| {
                [
                    c.current_step_analysis_run.as_ref(),
                    c.current_background_analysis_run.as_ref(),
                ]
            })
            .flatten()
            .map(|r| r.name.clone())
            .collect();
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
    fn prune_history(&mut self, live: &[&ObservedReplicaSet]) {
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

    /// Restarts (spec.restartAt): replace pods created before it, within maxUnavailable.
    fn restart(&mut self, limits: ScaleLimits) {
        let Some(restart_at) = self.rollout.spec.restart_at else {
            return;
        };
        if self.status.restarted_at.is_some_and(|done| done >= restart_at) {
            return;
        }
        if restart_at > self.now {
            self.requeue_in((restart_at - self.now).to_std().unwrap_or_default());
            return;
        }
        let stale: Vec<&ObservedPod> = self
            .observed
            .pods
            .iter()
            .filter(|p| p.created_at < restart_at)
            .collect();
        if stale.is_empty() {
            self.status.restarted_at = Some(restart_at);
            self.event("RolloutRestarted", "every pod was restarted");
            return;
        }
        let ready = self.observed.pods.iter().filter(|p| p.ready).count() as i32;
        let room = ready - (self.replicas - limits.max_unavailable);
        let not_ready_stale = stale.iter().filter(|p| !p.ready).count();
        if not_ready_stale > 0 {
            return; // wait for replacements to become ready before taking more down
        }
        let mut stale = stale;
        stale.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        for pod in stale.into_iter().take(room.max(0) as usize) {
            self.actions.push(Action::DeletePod { name: pod.name.clone() });
        }
    }

    /// Counts, revisions, phase, conditions and the progress deadline.
    fn finish(mut self, live: &[&ObservedReplicaSet], limits: ScaleLimits) -> Plan {
        if !self.status.is_aborted()
            && self
                .actions
                .iter()
                .all(|a| !matches!(a, Action::CreateReplicaSet { .. }))
        {
            self.restart(limits);
        }
        let current = live.iter().find(|rs| rs.hash == self.current_hash);
        let stable = live.iter().find(|rs| Some(&rs.hash) == self.status.stable_rs.as_ref());
        self.status.replicas = Some(live.iter().map(|rs| rs.pods).sum());
        self.status.updated_replicas = Some(current.map_or(0, |rs| rs.pods));
        self.status.ready_replicas = Some(live.iter().map(|rs| rs.ready).sum());
        self.status.available_replicas = Some(live.iter().map(|rs| rs.available).sum());
        self.status.selector = Some(selector_string(self.rollout));
        // A ReplicaSet created in this reconcile is named already, so the next status write is not
        // just for its revision.
        let revision_of = |hash: Option<&String>, rs: Option<&&ObservedReplicaSet>| match rs {
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
        };
        self.status.stable_revision = revision_of(self.status.stable_rs.as_ref(), stable);
        self.status.canary_revision = if self.status.stable_rs.as_ref() != Some(&self.current_hash) {
            revision_of(Some(&self.current_hash), current)
        } else {
            None
        };
        let progress = Progress {
            replicas: self.replicas,
            updated_available: current.map_or(0, |rs| rs.available),
            stable_is_current: self.status.stable_rs.as_deref() == Some(self.current_hash.as_str()),
            all_replica_sets_settled: live.iter().all(|rs| {
                let target = if rs.hash == self.current_hash { self.replicas } else { 0 };
                rs.spec_replicas == target && rs.pods == target
            }),
            step: self.step_index(),
            steps: self.steps.len(),
            paused: self.rollout.spec.is_paused(),
            max_unavailable: limits.max_unavailable,
        };
        let deadline = Duration::from_secs(self.rollout.spec.progress_deadline_seconds_or_default().max(1) as u64);
        let outcome = status::conclude(&mut self.status, &progress, deadline, self.now);
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
                status::conclude(&mut self.status, &progress, deadline, self.now);
            }
        }
        Plan {
            actions: self.actions,
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
            aborted_now: self.aborted_now,
        }
    }
}

fn text(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match value {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
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
        let names: Vec<&str> = analysis.templates.iter().map(|t| t.template_name.as_str()).collect();
        return format!("analysis {}", names.join(", "));
    }
    if step.set_canary_scale.is_some() {
        return "setCanaryScale".into();
    }
    "unknown step".into()
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
