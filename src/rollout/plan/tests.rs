//! The plan driven through whole rollouts in an in-memory world that applies its actions and brings
//! pods up, plus property tests over random sequences of events.
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::*;
use crate::api::conditions;
use crate::api::rollout::{
    AbortReason, AnalysisRunHistory, CanaryStep, GatewayApiTrafficRouting, PauseStep, RollbackWindow, RolloutPhase,
    TrafficRouting,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A tiny cluster: ReplicaSets whose pods become available when `settle` is called.
#[derive(Debug, Clone)]
struct World {
    rollout: Rollout,
    replica_sets: Vec<ObservedReplicaSet>,
    runs: Vec<ObservedAnalysisRun>,
    experiments: Vec<ObservedExperiment>,
    now: DateTime<Utc>,
    events: Vec<PlannedEvent>,
    writes: usize,
    traffic: Option<ObservedTraffic>,
    services: Vec<ObservedService>,
    /// The template each ReplicaSet was created from, by hash (for RestoreStableTemplate).
    templates: std::collections::HashMap<String, crate::api::PodTemplate>,
    /// Pods, for restartAt (the other cases count pods on the ReplicaSets).
    pods: Vec<ObservedPod>,
}

impl World {
    fn new(replicas: i32, steps: Vec<CanaryStep>) -> Self {
        World {
            rollout: Rollout::example("web", replicas, steps).with_generation(1),
            replica_sets: vec![],
            runs: vec![],
            experiments: vec![],
            now: t0(),
            events: vec![],
            writes: 0,
            traffic: None,
            services: vec![],
            templates: Default::default(),
            pods: vec![],
        }
    }

    /// The same world with canary/stable Services and a Gateway API route.
    fn routed(replicas: i32, steps: Vec<CanaryStep>) -> Self {
        let mut world = World::new(replicas, steps);
        world.rollout = world
            .rollout
            .with_services("web-canary", "web-stable")
            .with_traffic_routing(TrafficRouting {
                gateway_api: Some(GatewayApiTrafficRouting {
                    http_route: Some("web".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        world.traffic = Some(ObservedTraffic {
            canary_weight: None,
            ready: true,
        });
        world.services = vec![
            ObservedService {
                name: "web-canary".into(),
                selector_hash: None,
            },
            ObservedService {
                name: "web-stable".into(),
                selector_hash: None,
            },
        ];
        world
    }

    fn weight(&self) -> Option<i32> {
        self.traffic.and_then(|t| t.canary_weight)
    }

    fn selector(&self, service: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.selector_hash.clone())
    }

    fn observed(&self) -> Observed<'_> {
        Observed {
            rollout: &self.rollout,
            replica_sets: &self.replica_sets,
            pods: &self.pods,
            analysis_runs: &self.runs,
            experiments: &self.experiments,
            reference_errors: vec![],
            traffic: self.traffic,
            services: self.services.clone(),
            now: self.now,
        }
    }

    fn plan(&self) -> Plan {
        plan(&self.observed())
    }

    /// One reconcile: plan, then apply every action and the status.
    fn reconcile(&mut self) -> Plan {
        self.reconcile_writing_status(true)
    }

    /// One reconcile whose status write is lost (the controller killed after its actions).
    fn reconcile_losing_status(&mut self) -> Plan {
        self.reconcile_writing_status(false)
    }

    fn reconcile_writing_status(&mut self, write_status: bool) -> Plan {
        let plan = self.plan();
        for action in &plan.actions {
            self.writes += 1;
            match action {
                Action::CreateReplicaSet {
                    name,
                    hash,
                    revision,
                    replicas,
                    git_revision,
                } => {
                    self.templates.insert(hash.clone(), self.rollout.spec.template.clone());
                    self.replica_sets.push(ObservedReplicaSet {
                        name: name.clone(),
                        hash: hash.clone(),
                        revision: *revision,
                        spec_replicas: *replicas,
                        pods: 0,
                        ready: 0,
                        available: 0,
                        git_revision: git_revision.clone(),
                        created_at: Some(self.now),
                        deleting: false,
                        scale_down_at: None,
                        pod_metadata: None,
                    });
                }
                Action::ScaleReplicaSet { name, replicas } => {
                    let rs = self
                        .replica_sets
                        .iter_mut()
                        .find(|rs| rs.name == *name)
                        .expect("scaled RS exists");
                    rs.spec_replicas = *replicas;
                    // Scaling down removes pods at once; scaling up waits for `settle`.
                    rs.pods = rs.pods.min(*replicas);
                    rs.ready = rs.ready.min(*replicas);
                    rs.available = rs.available.min(*replicas);
                }
                Action::SetRevision { name, revision } => {
                    self.replica_sets
                        .iter_mut()
                        .find(|rs| rs.name == *name)
                        .unwrap()
                        .revision = *revision;
                }
                Action::DeleteReplicaSet { name } => self.replica_sets.retain(|rs| rs.name != *name),
                Action::DeletePod { .. } => {}
                Action::CreateAnalysisRun { name, kind, hash, .. } => self.runs.push(ObservedAnalysisRun {
                    name: name.clone(),
                    hash: hash.clone(),
                    kind: *kind,
                    phase: AnalysisPhase::Running,
                    message: None,
                    terminated: false,
                    created_at: Some(self.now),
                }),
                Action::DeleteAnalysisRun { name } => self.runs.retain(|r| r.name != *name),
                Action::SetCanaryWeight { weight } => {
                    self.traffic = Some(ObservedTraffic {
                        canary_weight: Some(*weight),
                        ready: true,
                    });
                }
                Action::SetServiceSelector { service, hash } => {
                    let service = self
                        .services
                        .iter_mut()
                        .find(|s| s.name == *service)
                        .expect("service exists");
                    service.selector_hash = Some(hash.clone());
                }
                Action::RestoreStableTemplate { replica_set } => {
                    let rs = self.replica_sets.iter().find(|rs| rs.name == *replica_set).unwrap();
                    self.rollout.spec.template = self.templates[&rs.hash].clone();
                    let generation = self.rollout.metadata.generation.unwrap_or(1) + 1;
                    self.rollout.metadata.generation = Some(generation);
                }
                Action::SetScaleDownDeadline { name, at } => {
                    self.replica_sets
                        .iter_mut()
                        .find(|rs| rs.name == *name)
                        .unwrap()
                        .scale_down_at = Some(*at);
                }
                Action::CreateExperiment { name, step, hash, .. } => {
                    // A create of what exists is a 409, tolerated.
                    if !self.experiments.iter().any(|e| e.name == *name) {
                        self.experiments.push(ObservedExperiment {
                            name: name.clone(),
                            hash: hash.clone(),
                            step: *step,
                            phase: AnalysisPhase::Pending,
                            message: None,
                            terminated: false,
                            created_at: Some(self.now),
                            template_services: vec![],
                        });
                    }
                }
                Action::TerminateExperiment { name } => {
                    let experiment = self.experiments.iter_mut().find(|e| e.name == *name).unwrap();
                    experiment.terminated = true;
                    if !experiment.phase.is_completed() {
                        experiment.phase = AnalysisPhase::Successful;
                    }
                }
                Action::DeleteExperiment { name } => self.experiments.retain(|e| e.name != *name),
                Action::TerminateAnalysisRun { name } => {
                    let run = self.runs.iter_mut().find(|r| r.name == *name).unwrap();
                    run.terminated = true;
                    if !run.phase.is_completed() {
                        run.phase = AnalysisPhase::Successful;
                    }
                }
            }
        }
        if write_status && self.rollout.status.as_ref() != Some(&plan.status) {
            self.writes += 1;
            self.rollout.status = Some(plan.status.clone());
        }
        self.events.extend(plan.events.clone());
        plan
    }

    /// Every pod becomes available.
    fn settle(&mut self) {
        for rs in &mut self.replica_sets {
            rs.pods = rs.spec_replicas;
            rs.ready = rs.spec_replicas;
            rs.available = rs.spec_replicas;
        }
    }

    /// Reconciles and settles until nothing changes; returns the last plan.
    fn converge(&mut self) -> Plan {
        let mut last = self.reconcile();
        for _ in 0..200 {
            self.settle();
            let next = self.reconcile();
            if next.actions.is_empty() && Some(&next.status) == self.rollout.status.as_ref() && next == last {
                return next;
            }
            last = next;
        }
        panic!(
            "did not converge: last actions {:?}, requeue {:?}, status {:#?}",
            last.actions, last.requeue_after, self.rollout.status
        );
    }

    fn status(&self) -> &RolloutStatus {
        self.rollout.status.as_ref().unwrap()
    }

    fn phase(&self) -> RolloutPhase {
        self.status().phase.unwrap()
    }

    fn counts(&self) -> (i32, i32) {
        let status = self.status();
        let of = |hash: Option<&String>| {
            self.replica_sets
                .iter()
                .find(|rs| Some(&rs.hash) == hash)
                .map_or(0, |rs| rs.spec_replicas)
        };
        let stable = of(status.stable_rs.as_ref());
        let canary = if status.stable_rs == status.current_pod_hash {
            0
        } else {
            of(status.current_pod_hash.as_ref())
        };
        (stable, canary)
    }

    fn new_template(&mut self, image: &str) {
        self.rollout = self.rollout.clone().with_image(image);
        self.new_template_generation();
    }

    /// The spec changed (a template edited in place): the next generation.
    fn new_template_generation(&mut self) {
        let generation = self.rollout.metadata.generation.unwrap_or(1) + 1;
        self.rollout.metadata.generation = Some(generation);
    }

    fn edit_status(&mut self, edit: impl FnOnce(&mut RolloutStatus)) {
        edit(self.rollout.status.as_mut().unwrap());
    }

    fn promote(&mut self) {
        let index = self.status().current_step_index;
        self.edit_status(|s| s.promoted_step = index);
    }

    fn advance(&mut self, by: Duration) {
        self.now += chrono::Duration::from_std(by).unwrap();
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.reason).collect()
    }
}

fn issue_steps() -> Vec<CanaryStep> {
    vec![
        CanaryStep::set_weight(20),
        CanaryStep::pause_for("2s"),
        CanaryStep::set_weight(50),
        CanaryStep::pause(),
        CanaryStep::set_weight(80),
    ]
}

fn deployed(replicas: i32, steps: Vec<CanaryStep>) -> World {
    let mut world = World::new(replicas, steps);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    world
}

#[test]
fn first_deployment_goes_straight_to_full_scale() {
    let mut world = World::new(10, issue_steps());
    let plan = world.reconcile();
    assert!(
        matches!(
            &plan.actions[..],
            [Action::CreateReplicaSet {
                replicas: 10,
                revision: 1,
                ..
            }]
        ),
        "{:?}",
        plan.actions
    );
    assert_eq!(world.phase(), RolloutPhase::Progressing);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.counts(), (10, 0));
    assert!(conditions::is_true(&world.status().conditions, conditions::READY));
    assert!(conditions::is_true(&world.status().conditions, conditions::COMPLETED));
}

#[test]
fn a_new_revision_and_an_ended_pause_are_one_event_each() {
    let mut world = deployed(10, issue_steps());
    world.events.clear();
    world.new_template("web:v2");
    let first = world.reconcile();
    let started: Vec<_> = first.events.iter().map(|e| (e.reason, e.message.as_str())).collect();
    assert!(
        !started.iter().any(|(reason, _)| *reason == "NewReplicaSet"),
        "{started:?}"
    );
    assert!(
        started
            .iter()
            .any(|(reason, message)| *reason == "NewRevision" && message.contains("created ReplicaSet")),
        "{started:?}"
    );
    world.converge();
    world.advance(Duration::from_secs(2));
    world.converge();
    assert!(!world.reasons().contains(&"RolloutResumed"), "{:?}", world.reasons());
    assert!(
        world
            .events
            .iter()
            .any(|e| e.reason == "StepCompleted" && e.message.starts_with("step 2/")),
        "the ended pause is a completed step: {:?}",
        world.reasons()
    );
}

#[test]
fn canary_walks_every_step_waits_for_promotion_and_completes() {
    let mut world = deployed(10, issue_steps());
    let old_stable = world.status().stable_rs.clone().unwrap();
    world.new_template("web:v2");

    // setWeight 20: canary 2, stable 8, then the 2s pause starts.
    world.converge();
    assert_eq!(world.counts(), (8, 2));
    assert_eq!(world.status().current_step_index, Some(1));
    assert_eq!(world.phase(), RolloutPhase::Paused);
    let plan = world.plan();
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(2)),
        "requeue exactly when the pause ends"
    );

    // After 2s: setWeight 50, then the open pause.
    world.advance(Duration::from_secs(2));
    world.converge();
    assert_eq!(world.counts(), (5, 5));
    assert_eq!(world.status().current_step_index, Some(3));
    assert_eq!(world.phase(), RolloutPhase::Paused);
    world.advance(Duration::from_secs(3600));
    world.converge();
    assert_eq!(
        world.status().current_step_index,
        Some(3),
        "an open pause waits for promote"
    );

    world.promote();
    world.converge();
    let status = world.status();
    assert_ne!(status.stable_rs.as_ref(), Some(&old_stable), "the canary became stable");
    assert_eq!(status.current_step_index, Some(5));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.counts(), (10, 0));
    let old = world.replica_sets.iter().find(|rs| rs.hash == old_stable).unwrap();
    assert_eq!(old.spec_replicas, 0, "the old stable is scaled to zero");
    for reason in [
        "NewRevision",
        "StepCompleted",
        "RolloutPaused",
        "RolloutPromoted",
        "RolloutCompleted",
    ] {
        assert!(
            world.reasons().contains(&reason),
            "missing event {reason}: {:?}",
            world.reasons()
        );
    }
}

#[test]
fn abort_returns_to_stable_and_retry_starts_again_at_step_zero() {
    let mut world = deployed(10, issue_steps());
    world.new_template("web:v2");
    world.advance(Duration::from_secs(5));
    world.converge();
    world.advance(Duration::from_secs(5));
    world.converge();
    assert_eq!(world.counts(), (5, 5));

    world.edit_status(|s| s.abort = Some(true));
    let plan = world.reconcile();
    assert!(plan.aborted_now);
    assert_eq!(plan.status.abort_reason, Some(AbortReason::Requested));
    assert_eq!(plan.status.canary_weight, Some(0), "weight 0 in the same reconcile");
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert!(world.status().message.as_deref().unwrap().starts_with("RolloutAborted"));
    assert_eq!(world.counts(), (10, 0));
    assert!(world.status().pause_conditions.is_empty());

    world.edit_status(|s| s.abort = None);
    world.converge();
    assert_eq!(
        world.status().current_step_index,
        Some(1),
        "back through setWeight 20 to the first pause"
    );
    assert_eq!(world.counts(), (8, 2));
    assert!(world.reasons().contains(&"RolloutRetried"));
}

#[test]
fn a_newer_template_supersedes_the_canary_and_the_stable_template_rolls_back_at_once() {
    let mut world = deployed(10, issue_steps());
    let stable = world.status().stable_rs.clone();
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.counts(), (8, 2));
    world.new_template("web:v3");
    world.converge();
    assert_eq!(world.status().stable_rs, stable, "stable unchanged");
    assert_eq!(world.status().current_step_index, Some(1), "v3 starts at step 0");
    let v2 = world.replica_sets.iter().find(|rs| rs.revision == 2).unwrap();
    assert_eq!(v2.spec_replicas, 0, "the superseded canary is scaled away");
    assert_eq!(world.counts(), (8, 2));

    world.new_template("example.com/web:1"); // the first template again
    let events_before = world.events.len();
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.counts(), (10, 0));
    assert_eq!(world.status().stable_rs, stable);
    let new_events: Vec<&str> = world.events[events_before..].iter().map(|e| e.reason).collect();
    assert!(
        new_events.contains(&"RolledBack") && !new_events.contains(&"StepCompleted"),
        "{new_events:?}"
    );
}

#[test]
fn promote_full_skips_every_remaining_step() {
    let mut world = deployed(4, issue_steps());
    world.new_template("web:v2");
    world.converge();
    world.edit_status(|s| s.promote_full = Some(true));
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.counts(), (4, 0));
    assert_eq!(world.status().promote_full, None);
}

#[test]
fn promoting_twice_at_the_same_step_skips_only_one_step() {
    let mut world = deployed(
        10,
        vec![CanaryStep::pause(), CanaryStep::pause(), CanaryStep::set_weight(50)],
    );
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.status().current_step_index, Some(0));
    world.promote();
    world.reconcile();
    world.edit_status(|s| s.promoted_step = Some(0));
    world.converge();
    assert_eq!(
        world.status().current_step_index,
        Some(1),
        "the second promote of step 0 is a no-op"
    );
}

#[test]
fn replica_changes_keep_the_step_weight() {
    let mut world = deployed(10, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.counts(), (5, 5));
    world.rollout.spec.replicas = Some(20);
    world.converge();
    assert_eq!(world.counts(), (10, 10));
    world.rollout.spec.paused = Some(true);
    world.rollout.spec.replicas = Some(4);
    world.converge();
    assert_eq!(world.counts(), (2, 2), "a paused rollout still holds its weight");
    assert_eq!(world.phase(), RolloutPhase::Paused);
}

#[test]
fn an_invalid_spec_changes_nothing_and_recovers_when_fixed() {
    let mut world = deployed(4, issue_steps());
    world.rollout.spec.strategy.canary.as_mut().unwrap().steps[0] = CanaryStep::set_weight(150);
    world.new_template("web:v2");
    let plan = world.reconcile();
    assert!(plan.actions.is_empty());
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    let invalid = conditions::find(&world.status().conditions, conditions::INVALID_SPEC).unwrap();
    assert!(
        invalid.message.as_deref().unwrap().contains("steps[0].setWeight"),
        "{invalid:?}"
    );
    assert!(plan.events.iter().any(|e| e.warning && e.reason == "InvalidSpec"));
    assert!(
        world.reconcile().events.is_empty(),
        "the same problem is not reported again"
    );

    world.rollout.spec.strategy.canary.as_mut().unwrap().steps[0] = CanaryStep::set_weight(20);
    world.converge();
    assert!(conditions::find(&world.status().conditions, conditions::INVALID_SPEC).is_none());
    assert_eq!(world.phase(), RolloutPhase::Paused);
}

#[test]
fn no_progress_past_the_deadline_degrades_and_can_abort() {
    let mut world = deployed(4, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    world.rollout.spec.progress_deadline_seconds = Some(60);
    world.new_template("web:v2");
    world.reconcile();
    world.reconcile(); // canary created but its pods never become available
    let plan = world.plan();
    assert!(plan.requeue_after.is_some_and(|d| d <= Duration::from_secs(60)));
    world.advance(Duration::from_secs(61));
    let plan = world.reconcile();
    assert!(plan.events.iter().any(|e| e.reason == "ProgressDeadlineExceeded"));
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert!(!world.status().is_aborted());

    let mut world = deployed(4, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    world.rollout.spec.progress_deadline_seconds = Some(60);
    world.rollout.spec.progress_deadline_abort = Some(true);
    world.new_template("web:v2");
    world.reconcile();
    world.reconcile();
    world.advance(Duration::from_secs(61));
    let plan = world.reconcile();
    assert!(plan.aborted_now);
    assert_eq!(plan.status.abort_reason, Some(AbortReason::ProgressDeadlineExceeded));
    world.converge();
    assert_eq!(world.counts(), (4, 0));
    assert_eq!(world.phase(), RolloutPhase::Degraded);
}

/// The progress deadline measures pods failing to come up. An analysis step whose pods are all up
/// waits for a verdict, however long the analysis runs; once the step moves on the deadline runs again.
#[test]
fn a_long_analysis_step_is_not_a_missed_progress_deadline() {
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::analysis("success-rate"),
        CanaryStep::set_weight(60),
    ];
    let mut world = deployed(10, steps);
    world.rollout.spec.progress_deadline_seconds = Some(60);
    world.rollout.spec.progress_deadline_abort = Some(true);
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.status().current_step_index, Some(1));
    world.advance(Duration::from_secs(3600));
    let plan = world.reconcile();
    assert!(
        !plan.events.iter().any(|e| e.reason == "ProgressDeadlineExceeded"),
        "{:?}",
        plan.events
    );
    assert!(!plan.aborted_now);
    assert_eq!(world.phase(), RolloutPhase::Progressing);

    world.runs[0].phase = AnalysisPhase::Successful;
    world.converge();
    assert_eq!(world.status().current_step_index, Some(3));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

/// Returning to a template of the last `rollbackWindow.revisions` revisions skips the steps (Argo's
/// rollbackWindow); without the window, or further back than it, the steps run.
#[test]
fn a_rollback_within_the_window_skips_the_steps() {
    let steps = vec![CanaryStep::set_weight(50), CanaryStep::pause()];
    let rolled_back = |window: Option<i32>, back_to: &str| {
        let mut world = deployed(4, steps.clone());
        world.rollout.spec.rollback_window = window.map(|revisions| RollbackWindow { revisions });
        for version in ["web:v2", "web:v3"] {
            world.new_template(version);
            world.converge();
            world.promote();
            world.converge();
            assert_eq!(world.phase(), RolloutPhase::Healthy, "{version} promoted");
        }
        world.new_template(back_to);
        let plan = world.reconcile();
        world.converge();
        (world.phase(), plan.events.iter().any(|e| e.reason == "RolledBack"))
    };
    assert_eq!(rolled_back(Some(1), "web:v2"), (RolloutPhase::Healthy, true));
    assert_eq!(
        rolled_back(None, "web:v2"),
        (RolloutPhase::Paused, false),
        "no window: steps"
    );
    // The first template (revision 1) is two revisions before the stable one (revision 3).
    let first = "example.com/web:1";
    assert_eq!(
        rolled_back(Some(1), first),
        (RolloutPhase::Paused, false),
        "outside a window of 1"
    );
    assert_eq!(rolled_back(Some(2), first), (RolloutPhase::Healthy, true));
}

#[test]
fn analysis_steps_follow_the_run_verdict() {
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::analysis("success-rate"),
        CanaryStep::set_weight(60),
    ];
    let mut world = deployed(10, steps.clone());
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.status().current_step_index, Some(1));
    assert_eq!(world.runs.len(), 1, "one run for the analysis step");
    assert!(world.runs[0].name.ends_with("-s1-0"), "{}", world.runs[0].name);
    world.runs[0].phase = AnalysisPhase::Successful;
    world.converge();
    assert_eq!(
        world.phase(),
        RolloutPhase::Healthy,
        "successful analysis: on to completion"
    );

    let mut world = deployed(10, steps.clone());
    world.new_template("web:v2");
    world.converge();
    world.runs[0].phase = AnalysisPhase::Failed;
    world.runs[0].message = Some("success-rate: 0.6 < 0.95".into());
    let plan = world.reconcile();
    assert!(plan.aborted_now);
    assert_eq!(plan.status.canary_weight, Some(0));
    assert_eq!(plan.status.abort_reason, Some(AbortReason::AnalysisFailed));
    world.converge();
    assert_eq!(world.counts(), (10, 0));
    assert!(
        world.status().message.as_deref().unwrap().contains("0.6 < 0.95"),
        "{:?}",
        world.status().message
    );

    let mut world = deployed(10, steps);
    world.new_template("web:v2");
    world.converge();
    world.runs[0].phase = AnalysisPhase::Inconclusive;
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Paused);
    assert_eq!(world.status().current_step_index, Some(1));
    world.promote();
    world.converge();
    assert_eq!(
        world.phase(),
        RolloutPhase::Healthy,
        "a human promoted past the inconclusive analysis"
    );
}

/// Reconciles (settling pods in between) up to the one that creates an AnalysisRun, whose status
/// write is lost; returns the created run's name.
fn create_run_and_lose_the_status(world: &mut World) -> String {
    for _ in 0..50 {
        let created = world.plan().actions.into_iter().find_map(|a| match a {
            Action::CreateAnalysisRun { name, .. } => Some(name),
            _ => None,
        });
        if let Some(name) = created {
            world.reconcile_losing_status();
            return name;
        }
        world.reconcile();
        world.settle();
    }
    panic!("no AnalysisRun created: {:#?}", world.rollout.status);
}

/// The chaos suite's "analysed twice": the controller created a step's run and was killed before the
/// status naming it was written, and the run finished while it was down. The restarted controller
/// takes that run's verdict instead of starting a second attempt.
#[test]
fn a_run_that_finished_while_its_status_write_was_lost_is_adopted() {
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::analysis("success-rate"),
        CanaryStep::set_weight(60),
    ];
    for (verdict, phase) in [
        (AnalysisPhase::Successful, RolloutPhase::Healthy),
        (AnalysisPhase::Failed, RolloutPhase::Degraded),
    ] {
        let mut world = deployed(10, steps.clone());
        world.new_template("web:v2");
        let name = create_run_and_lose_the_status(&mut world);
        assert!(name.ends_with("-s1-0"), "{name}");
        let named = world
            .status()
            .canary
            .as_ref()
            .and_then(|c| c.current_step_analysis_run.clone());
        assert_eq!(named, None, "the write naming the run was lost");
        world.runs[0].phase = verdict;
        world.converge();
        let names: Vec<&str> = world.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, [name.as_str()], "{verdict:?}: one run for the step");
        assert_eq!(world.phase(), phase, "{verdict:?}: the finished run's verdict holds");
    }
}

/// `sluice retry` starts a new attempt: the abort terminated the runs of the aborted attempt
/// (finished ones included), so none of them is adopted; a lost status write on the retry adopts the
/// new attempt's run rather than starting a third.
#[test]
fn retry_starts_a_new_analysis_attempt_and_never_adopts_the_retired_run() {
    let steps = vec![CanaryStep::analysis("success-rate"), CanaryStep::set_weight(50)];
    let mut world = deployed(4, steps);
    world.new_template("web:v2");
    world.converge();
    world.runs[0].phase = AnalysisPhase::Failed;
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert!(world.runs[0].name.ends_with("-s0-0"), "{}", world.runs[0].name);
    assert!(
        world.runs[0].terminated,
        "the aborted attempt's finished run is retired"
    );

    world.edit_status(|s| s.abort = None);
    let second = create_run_and_lose_the_status(&mut world);
    assert!(second.ends_with("-s0-1"), "{second}");
    world.converge();
    assert_eq!(
        world.phase(),
        RolloutPhase::Progressing,
        "the failed attempt is not followed again"
    );
    assert_eq!(world.runs.len(), 2, "the retry replayed adopts the run it created");
    assert!(world.reasons().contains(&"RolloutRetried"));

    // The write naming the second run is lost and the run succeeds meanwhile: it, not the retired
    // failed one, is adopted.
    world.edit_status(|s| s.canary.as_mut().unwrap().current_step_analysis_run = None);
    world.runs[1].phase = AnalysisPhase::Successful;
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.runs.len(), 2);
}

/// A pruned earlier run does not free its attempt number: the next run takes the one after the
/// highest, so creating it cannot collide with (and adopt) a later run still there.
#[test]
fn a_new_attempt_is_numbered_after_the_highest_one_left() {
    let mut world = deployed(4, vec![CanaryStep::analysis("success-rate")]);
    world.new_template("web:v2");
    world.converge();
    let first = world.runs[0].name.clone();
    let second = first.replace("-s0-0", "-s0-1");
    // Attempt 0 was pruned; attempt 1 finished and was retired by a retry.
    world.runs[0].name = second.clone();
    world.runs[0].phase = AnalysisPhase::Failed;
    world.runs[0].terminated = true;
    world.edit_status(|s| {
        s.canary.as_mut().unwrap().current_step_analysis_run = None;
    });
    let plan = world.plan();
    let created: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CreateAnalysisRun { .. }))
        .collect();
    assert!(
        matches!(created.as_slice(), [Action::CreateAnalysisRun { name, .. }] if name.ends_with("-s0-2")),
        "{created:?}"
    );
}

#[test]
fn rollback_on_abort_restores_the_stable_template_unless_a_gitsync_owns_the_rollout() {
    let steps = vec![CanaryStep::set_weight(20), CanaryStep::analysis("success-rate")];
    let failing = |world: &mut World| {
        world.new_template("web:v2");
        world.converge();
        world.runs[0].phase = AnalysisPhase::Failed;
        world.reconcile()
    };
    let mut world = deployed(10, steps.clone());
    world.rollout.spec.strategy.canary.as_mut().unwrap().rollback_on_abort = Some(true);
    let stable = world.status().stable_rs.clone().unwrap();
    let plan = failing(&mut world);
    assert!(plan.aborted_now);
    assert!(
        plan.actions.contains(&Action::RestoreStableTemplate {
            replica_set: format!("web-{stable}")
        }),
        "{:?}",
        plan.actions
    );
    let event = plan.events.iter().find(|e| e.reason == "RolledBackOnAbort").unwrap();
    assert!(event.message.contains("revision 1"), "{}", event.message);
    assert_eq!(current_hash(&world.rollout), stable, "the template is stable's again");
    let plan = world.converge();
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(plan.status.current_pod_hash.as_deref(), Some(stable.as_str()));
    assert_eq!(world.counts(), (10, 0));
    assert!(world.reasons().contains(&"RolledBack"));

    // A GitSync re-applies the last healthy revision itself.
    let mut world = deployed(10, steps.clone());
    world.rollout.spec.strategy.canary.as_mut().unwrap().rollback_on_abort = Some(true);
    world.rollout.metadata.labels =
        Some([(crate::api::keys::GITSYNC_LABEL.to_string(), "default.app".to_string())].into());
    let plan = failing(&mut world);
    assert!(plan.aborted_now);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::RestoreStableTemplate { .. }))
    );

    // A human's abort does not judge the revision; without rollbackOnAbort nothing is restored.
    let mut world = deployed(10, steps.clone());
    world.rollout.spec.strategy.canary.as_mut().unwrap().rollback_on_abort = Some(true);
    world.new_template("web:v2");
    world.converge();
    world.edit_status(|s| s.abort = Some(true));
    let plan = world.reconcile();
    assert_eq!(plan.status.abort_reason, Some(AbortReason::Requested));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::RestoreStableTemplate { .. }))
    );
    let mut world = deployed(10, steps);
    let plan = failing(&mut world);
    assert!(plan.aborted_now);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::RestoreStableTemplate { .. }))
    );
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Degraded);
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut world = deployed(2, vec![]);
    world.rollout.spec.revision_history_limit = Some(2);
    for version in 2..=6 {
        world.new_template(&format!("web:v{version}"));
        world.converge();
    }
    assert_eq!(world.replica_sets.len(), 3, "stable plus two old revisions");
    let revisions: Vec<i64> = world.replica_sets.iter().map(|rs| rs.revision).collect();
    assert!(
        revisions.contains(&6) && revisions.contains(&5) && revisions.contains(&4),
        "{revisions:?}"
    );
}

#[test]
fn a_setweight_step_costs_at_most_three_writes() {
    let mut world = deployed(
        10,
        vec![
            CanaryStep::set_weight(20),
            CanaryStep::set_weight(40),
            CanaryStep::pause(),
        ],
    );
    world.new_template("web:v2");
    world.reconcile(); // creates the canary ReplicaSet at its 20% size; stable shrinks
    world.settle();
    world.writes = 0;
    // 20% is reached: the step completes and the next one scales: canary, stable, status.
    world.reconcile();
    assert_eq!(world.status().current_step_index, Some(1));
    assert!(world.writes <= 3, "one setWeight step wrote {} times", world.writes);
}

#[test]
fn a_new_canary_is_created_at_its_first_step_size_and_completion_reports_no_canary_traffic() {
    let mut world = deployed(10, vec![CanaryStep::set_weight(20), CanaryStep::set_weight(60)]);
    world.new_template("web:v2");
    let plan = world.reconcile();
    assert!(
        matches!(
            &plan.actions[..],
            [
                Action::CreateReplicaSet { replicas: 2, .. },
                Action::ScaleReplicaSet { replicas: 8, .. }
            ]
        ),
        "created with 20% of 10 pods, no separate scale: {:?}",
        plan.actions
    );
    assert_eq!(plan.status.canary_revision.and_then(|r| r.revision), Some(2));
    let plan = world.converge();
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(plan.status.canary_weight, Some(0));

    let mut world = deployed(10, vec![CanaryStep::set_weight(20)]);
    world.rollout.spec.paused = Some(true);
    world.new_template("web:v3");
    let plan = world.reconcile();
    assert!(
        matches!(&plan.actions[..], [Action::CreateReplicaSet { replicas: 0, .. }]),
        "paused: created empty, {:?}",
        plan.actions
    );
}

#[test]
fn a_routed_canary_moves_traffic_only_onto_available_pods_and_keeps_stable_at_full_scale() {
    let mut world = World::routed(
        10,
        vec![
            CanaryStep::set_weight(30),
            CanaryStep::pause(),
            CanaryStep::set_weight(60),
        ],
    );
    world.converge();
    let stable = world.status().stable_rs.clone().unwrap();
    assert_eq!(world.selector("web-stable"), Some(stable.clone()));
    assert_eq!(world.weight(), Some(0));
    world.new_template("web:v2");
    world.reconcile(); // creates the canary ReplicaSet
    let plan = world.reconcile(); // scales it to ceil(10 × 30%) = 3, weight not yet moved
    assert!(
        plan.actions
            .iter()
            .all(|a| !matches!(a, Action::SetCanaryWeight { .. })),
        "{:?}",
        plan.actions
    );
    assert_eq!(world.counts(), (10, 3));
    world.converge();
    let canary = world.status().current_pod_hash.clone().unwrap();
    assert_eq!((world.counts(), world.weight()), ((10, 3), Some(30)));
    assert_eq!(world.selector("web-canary"), Some(canary.clone()));
    assert_eq!(world.selector("web-stable"), Some(stable.clone()));
    assert_eq!(world.status().current_step_index, Some(1));
    world.promote();
    world.converge();
    // Completion: all traffic to the promoted version before the old stable scales down.
    assert_eq!(world.status().stable_rs, Some(canary.clone()));
    assert_eq!(world.selector("web-stable"), Some(canary.clone()));
    assert_eq!(world.weight(), Some(0), "the stable Service now is the new version");
    let old = world.replica_sets.iter().find(|rs| rs.hash == stable).unwrap();
    assert_eq!(old.spec_replicas, 10, "the old stable waits for scaleDownDelaySeconds");
    world.advance(Duration::from_secs(31));
    world.converge();
    let old = world.replica_sets.iter().find(|rs| rs.hash == stable).unwrap();
    assert_eq!(old.spec_replicas, 0);
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn a_routed_abort_sets_weight_zero_first_and_scales_the_canary_down_after_the_delay() {
    let mut world = World::routed(10, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    world.converge();
    let stable = world.status().stable_rs.clone().unwrap();
    world.new_template("web:v2");
    world.converge();
    assert_eq!((world.counts(), world.weight()), ((10, 5), Some(50)));
    world.edit_status(|s| s.abort = Some(true));
    let plan = world.reconcile();
    assert_eq!(
        plan.actions.first(),
        Some(&Action::SetCanaryWeight { weight: 0 }),
        "traffic moves before anything else"
    );
    assert_eq!(
        world.selector("web-canary"),
        Some(stable.clone()),
        "the canary Service is back on stable"
    );
    world.converge();
    assert_eq!(
        world.counts(),
        (10, 5),
        "the canary waits for abortScaleDownDelaySeconds"
    );
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    world.advance(Duration::from_secs(31));
    world.converge();
    assert_eq!(world.counts(), (10, 0));
}

#[test]
fn dynamic_stable_scale_shrinks_stable_as_traffic_leaves_it() {
    let mut world = World::routed(10, vec![CanaryStep::set_weight(60), CanaryStep::pause()]);
    world
        .rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .dynamic_stable_scale = Some(true);
    world.converge();
    world.new_template("web:v2");
    world.converge();
    assert_eq!((world.counts(), world.weight()), ((4, 6), Some(60)));
}

/// dynamicStableScale removes stable pods only once the traffic they serve has moved: while the canary's
/// pods are not up, the router still sends stable everything, and stable keeps the pods for it.
#[test]
fn dynamic_stable_scale_keeps_stable_pods_until_traffic_has_left_them() {
    let mut world = World::routed(10, vec![CanaryStep::set_weight(60), CanaryStep::pause()]);
    world
        .rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .dynamic_stable_scale = Some(true);
    world.converge();
    let stable = world.status().stable_rs.clone().unwrap();
    world.new_template("web:v2");
    for _ in 0..5 {
        // The canary's pods never come up: no reconcile moves traffic, so stable keeps all its pods.
        world.reconcile();
        let stable_rs = world.replica_sets.iter().find(|rs| rs.hash == stable).unwrap();
        assert_eq!(world.weight().unwrap_or(0), 0);
        assert_eq!(stable_rs.spec_replicas, 10, "stable scaled down before traffic left it");
    }
    world.converge();
    assert_eq!((world.counts(), world.weight()), ((4, 6), Some(60)));
}

#[test]
fn finished_analysis_runs_are_kept_within_the_history_limits() {
    let mut world = deployed(2, vec![CanaryStep::analysis("success-rate")]);
    world.rollout.spec.analysis = Some(AnalysisRunHistory {
        successful_run_history_limit: Some(2),
        unsuccessful_run_history_limit: Some(1),
    });
    for version in 2..=7 {
        world.new_template(&format!("web:v{version}"));
        world.converge();
        let last = world.runs.len() - 1;
        world.runs[last].phase = if version % 2 == 0 {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Failed
        };
        world.advance(Duration::from_secs(1));
        world.converge();
    }
    let kept: Vec<AnalysisPhase> = world.runs.iter().map(|r| r.phase).collect();
    let successful = kept.iter().filter(|p| **p == AnalysisPhase::Successful).count();
    let unsuccessful = kept.len() - successful;
    // Six runs: v2, v4, v6 succeeded (two kept); v3, v5, v7 failed (one kept, plus v7's, which the
    // aborted rollout still shows).
    assert_eq!((successful, unsuccessful), (2, 2), "kept {kept:?}");
}

// ---- property tests -------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Event {
    Reconcile,
    SettleSome(u8),
    NewTemplate,
    Abort,
    Retry,
    Promote,
    Replicas(i32),
    Advance(u16),
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        6 => Just(Event::Reconcile),
        4 => any::<u8>().prop_map(Event::SettleSome),
        1 => Just(Event::NewTemplate),
        1 => Just(Event::Abort),
        1 => Just(Event::Retry),
        1 => Just(Event::Promote),
        1 => (0..12i32).prop_map(Event::Replicas),
        1 => (0..120u16).prop_map(Event::Advance),
    ];
    proptest::collection::vec(event, 1..60)
}

/// Brings up to `n` pods of each ReplicaSet to available (pods appear, then become ready).
fn settle_some(world: &mut World, n: u8) {
    for rs in &mut world.replica_sets {
        let room = (rs.spec_replicas - rs.available).max(0).min(i32::from(n % 4));
        rs.available += room;
        rs.ready = rs.available;
        rs.pods = rs.spec_replicas;
    }
}

fn stable_spec(world: &World) -> Option<i32> {
    let stable = world.rollout.status.as_ref()?.stable_rs.clone()?;
    world
        .replica_sets
        .iter()
        .find(|rs| rs.hash == stable)
        .map(|rs| rs.spec_replicas)
}

fn total_spec(world: &World) -> i32 {
    world.replica_sets.iter().map(|rs| rs.spec_replicas).sum()
}

fn total_available(world: &World) -> i32 {
    world.replica_sets.iter().map(|rs| rs.available).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
        fn planning_is_safe_deterministic_and_restartable(initial in 1..12i32, routed in any::<bool>(), events in events()) {
        let steps = vec![CanaryStep::set_weight(25), CanaryStep::pause_for("30s"), CanaryStep::set_weight(60), CanaryStep::pause()];
        let mut world = if routed { World::routed(initial, steps) } else { World::new(initial, steps) };
        let mut version = 1;
        for event in events {
            match event {
                Event::Reconcile => {
                    let replicas = world.rollout.spec.replicas_or_default();
                    let limits = ScaleLimits::parse(replicas, "25%", "25%").unwrap();
                    let (spec_before, available_before) = (total_spec(&world), total_available(&world));
                    let stable_before = stable_spec(&world);
                    // A restart at any point: planning twice on the same observations agrees.
                    let first = world.plan();
                    prop_assert_eq!(&first, &world.plan());
                    world.reconcile();
                    // With a router, stable stays at full scale beside the canary by design.
                    let surge_cap = if routed { 2 * replicas.max(spec_before) } else { (replicas + limits.max_surge).max(spec_before) };
                    prop_assert!(total_spec(&world) <= surge_cap, "more than replicas+maxSurge pods: {} > {}", total_spec(&world), surge_cap);
                    if routed {
                        // The router carries the weight: stable is never scaled below full size.
                        if let Some(stable) = stable_spec(&world) {
                            prop_assert!(stable >= replicas.min(stable_before.unwrap_or(replicas)), "stable scaled down to {stable}");
                        }
                    } else {
                        let floor = (replicas - limits.max_unavailable).min(available_before);
                        prop_assert!(total_available(&world) >= floor, "available fell below the floor: {} < {}", total_available(&world), floor);
                    }
                }
                Event::SettleSome(n) => settle_some(&mut world, n),
                Event::NewTemplate => {
                    version += 1;
                    world.new_template(&format!("web:v{version}"));
                }
                Event::Abort => if world.rollout.status.is_some() { world.edit_status(|s| s.abort = Some(true)) },
                Event::Retry => if world.rollout.status.is_some() { world.edit_status(|s| s.abort = None) },
                Event::Promote => if world.rollout.status.is_some() { world.promote() },
                Event::Replicas(n) => world.rollout.spec.replicas = Some(n),
                Event::Advance(secs) => world.advance(Duration::from_secs(u64::from(secs))),
            }
        }
        // Whatever happened, an abort ends with all traffic and pods on stable.
        world.reconcile();
        if world.status().stable_rs != world.status().current_pod_hash {
            world.edit_status(|s| s.abort = Some(true));
            world.converge();
            // A routed canary keeps its pods for abortScaleDownDelaySeconds (without traffic).
            world.advance(Duration::from_secs(31));
            world.converge();
            if routed {
                prop_assert_eq!(world.weight(), Some(0));
            }
            let replicas = world.rollout.spec.replicas_or_default();
            prop_assert_eq!(world.counts(), (replicas, 0));
            prop_assert_eq!(world.status().canary_weight, Some(0));
            prop_assert_eq!(world.phase(), RolloutPhase::Degraded);
        }
    }
}

#[derive(Debug, Clone)]
enum RunEvent {
    Reconcile,
    /// A reconcile whose status write is lost (SIGKILL after the actions).
    LoseStatus,
    Settle,
    /// The newest unfinished run ends with this verdict.
    Finish(AnalysisPhase),
    Abort,
    Retry,
    Promote,
    Advance(u16),
}

fn run_events() -> impl Strategy<Value = Vec<RunEvent>> {
    let verdict = prop_oneof![
        Just(AnalysisPhase::Successful),
        Just(AnalysisPhase::Failed),
        Just(AnalysisPhase::Inconclusive),
    ];
    let event = prop_oneof![
        5 => Just(RunEvent::Reconcile),
        3 => Just(RunEvent::LoseStatus),
        3 => Just(RunEvent::Settle),
        3 => verdict.prop_map(RunEvent::Finish),
        1 => Just(RunEvent::Abort),
        1 => Just(RunEvent::Retry),
        1 => Just(RunEvent::Promote),
        1 => (0..60u16).prop_map(RunEvent::Advance),
    ];
    proptest::collection::vec(event, 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever writes are lost and whenever runs finish, an analysis is never judged by two live
    /// runs at once, and a step gets a new run only per retry.
    #[test]
    fn each_attempt_analyses_a_step_once(routed in any::<bool>(), events in run_events()) {
        let steps = vec![
            CanaryStep::set_weight(25),
            CanaryStep::analysis("success-rate"),
            CanaryStep::set_weight(60),
            CanaryStep::analysis("success-rate"),
        ];
        let mut world = if routed { World::routed(4, steps) } else { World::new(4, steps) };
        world.converge();
        world.new_template("web:v2");
        let mut retries = 0;
        for event in events {
            match event {
                RunEvent::Reconcile => { world.reconcile(); }
                RunEvent::LoseStatus => { world.reconcile_losing_status(); }
                RunEvent::Settle => world.settle(),
                RunEvent::Finish(verdict) => {
                    if let Some(run) = world.runs.iter_mut().rev().find(|r| !r.phase.is_completed()) {
                        run.phase = verdict;
                    }
                }
                RunEvent::Abort => world.edit_status(|s| s.abort = Some(true)),
                RunEvent::Retry => {
                    retries += 1;
                    world.edit_status(|s| s.abort = None);
                }
                RunEvent::Promote => world.promote(),
                RunEvent::Advance(secs) => world.advance(Duration::from_secs(u64::from(secs))),
            }
            let mut live = std::collections::BTreeMap::<String, usize>::new();
            let mut all = std::collections::BTreeMap::<String, usize>::new();
            for run in &world.runs {
                let key = format!("{}/{:?}", run.hash, run.kind);
                *all.entry(key.clone()).or_default() += 1;
                if !run.terminated {
                    *live.entry(key).or_default() += 1;
                }
            }
            prop_assert!(live.values().all(|n| *n <= 1), "two live runs for one analysis: {:?}", world.runs);
            prop_assert!(all.values().all(|n| *n <= 1 + retries), "more attempts than retries ({retries}): {:?}", world.runs);
        }
    }
}

/// The pause durations of the bug report (issue 13): each is an InvalidSpec naming the step's
/// pause.duration, nothing is scaled, and fixing the step resumes the canary.
#[test]
fn a_pause_past_the_maximum_is_an_invalid_spec_naming_its_field() {
    for poison in ["100000000000000", "99999999999999999999s", "2562047788015216h", "8761h"] {
        let mut world = deployed(4, issue_steps());
        world.rollout.spec.strategy.canary.as_mut().unwrap().steps[1] = CanaryStep::pause_for(poison);
        world.new_template("web:v2");
        let plan = world.reconcile();
        assert!(plan.actions.is_empty(), "{poison}: {:?}", plan.actions);
        let invalid = conditions::find(&world.status().conditions, conditions::INVALID_SPEC).unwrap();
        let message = invalid.message.as_deref().unwrap();
        assert!(
            message.starts_with("spec.strategy.canary.steps[1].pause.duration: ")
                && message.contains(crate::api::duration::TOO_LONG),
            "{poison}: {message}"
        );
        world.rollout.spec.strategy.canary.as_mut().unwrap().steps[1] = CanaryStep::pause_for("2s");
        world.converge();
        assert_eq!(world.phase(), RolloutPhase::Paused, "{poison}");
    }
}

fn pause_durations() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        any::<String>().prop_map(IntOrString::String),
        "[ +]?([0-9.]{0,22}(ms|s|m|h|e)?){0,3}".prop_map(IntOrString::String),
        proptest::sample::select(vec![
            "100000000000000",
            "99999999999999999999s",
            "2562047788015216h",
            "8760h",
            "1s"
        ])
        .prop_map(|text| IntOrString::String(text.into())),
        any::<i32>().prop_map(IntOrString::Int),
    ]
}

/// Any second in chrono's range, with its two ends well represented.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![min..=max, (max - 100_000)..=max, min..=(min + 100_000)]
        .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).unwrap())
}

proptest! {
    /// For any pause duration, any clock and any recorded step start, planning never panics: an
    /// invalid duration is an InvalidSpec at the step's pause.duration, a valid one pauses for at
    /// most its duration.
    #[test]
    fn any_pause_at_any_time_plans_or_is_an_invalid_spec(
        duration in pause_durations(),
        now in any_time(),
        step_started_at in any_time(),
        aborted_at in any_time(),
        routed in any::<bool>(),
    ) {
        let steps = vec![CanaryStep::set_weight(25), CanaryStep::pause_for("1s"), CanaryStep::set_weight(50)];
        let mut world = if routed { World::routed(4, steps) } else { World::new(4, steps) };
        world.converge();
        let pause = PauseStep { duration: Some(duration.clone()) };
        let valid = pause.duration();
        world.rollout.spec.strategy.canary.as_mut().unwrap().steps[1] = CanaryStep { pause: Some(pause), ..Default::default() };
        world.new_template("web:v2");
        world.now = now;
        world.converge();
        world.edit_status(|s| s.step_started_at = Some(step_started_at));
        let plan = world.reconcile();
        let invalid = conditions::find(&world.status().conditions, conditions::INVALID_SPEC);
        match valid {
            Err(_) => {
                let message = invalid.and_then(|c| c.message.clone()).unwrap_or_default();
                prop_assert!(message.starts_with("spec.strategy.canary.steps[1].pause.duration: "), "{}", message);
                prop_assert!(plan.actions.is_empty());
            }
            Ok(wait) => {
                prop_assert!(invalid.is_none(), "{:?}", invalid);
                if let Some(requeue) = plan.requeue_after {
                    prop_assert!(requeue <= wait.unwrap_or_default().max(Duration::from_secs(600)), "{:?}", requeue);
                }
            }
        }
        // An abort recorded at any time scales the canary down without overflowing its deadline.
        world.edit_status(|s| { s.abort = Some(true); s.aborted_at = Some(aborted_at); });
        world.converge();
    }
}

/// restartAt with maxUnavailable at i32::MAX: the room to restart is figured in i64 (it used to
/// overflow i32 as ready − (replicas − maxUnavailable)), so every stale pod may go at once.
#[test]
fn restart_room_does_not_overflow_with_a_huge_max_unavailable() {
    // One replica with two ready pods (a surge pod still there): ready − (1 − i32::MAX) > i32::MAX.
    let mut world = deployed(1, vec![]);
    world.rollout = world
        .rollout
        .clone()
        .with_canary(|c| c.max_unavailable = Some(IntOrString::Int(i32::MAX)));
    let hash = world.status().stable_rs.clone().unwrap();
    world.pods = (0..2)
        .map(|i| ObservedPod {
            name: format!("web-{i}"),
            hash: hash.clone(),
            created_at: t0(),
            ready: true,
        })
        .collect();
    world.now = t0() + chrono::TimeDelta::seconds(60);
    world.rollout.spec.restart_at = Some(t0() + chrono::TimeDelta::seconds(30));
    let plan = world.plan();
    let deleted: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DeletePod { .. }))
        .collect();
    assert_eq!(deleted.len(), 2, "{:?}", plan.actions);
}

/// `strategy: {}` (or a strategy the API server pruned because this version does not know it) keeps
/// its meaning — the new template is promoted at once — and the status says so until a strategy is set.
#[test]
fn an_empty_strategy_promotes_at_once_and_is_reported() {
    let mut world = deployed(4, issue_steps());
    let defaulted =
        |world: &World| conditions::find(&world.status().conditions, conditions::STRATEGY_DEFAULTED).cloned();
    assert!(defaulted(&world).is_none());
    world.rollout.spec.strategy.canary = None;
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert!(world.status().pause_conditions.is_empty(), "no steps: nothing paused");
    let condition = defaulted(&world).expect("reported");
    assert!(condition.is_true());
    assert!(
        condition.message.as_deref().unwrap().contains("spec.strategy"),
        "{condition:?}"
    );

    world.rollout.spec.strategy.canary = Some(Default::default());
    world.converge();
    assert!(defaulted(&world).is_none(), "gone once a strategy is named");
}

/// Found by `sluice bench fuzz`: mid-canary at `replicas: 2147483647`, stable's pods plus the canary's
/// overflowed the i32 status counts. They saturate now.
#[test]
fn status_pod_counts_saturate_when_the_replica_sets_sum_past_i32_max() {
    let mut world = World::new(i32::MAX, issue_steps());
    let replica_set = |hash: &str, revision: i64, replicas: i32| ObservedReplicaSet {
        name: format!("web-{hash}"),
        hash: hash.to_string(),
        revision,
        spec_replicas: replicas,
        pods: replicas,
        ready: replicas,
        available: replicas,
        git_revision: None,
        created_at: Some(t0()),
        deleting: false,
        scale_down_at: None,
        pod_metadata: None,
    };
    let canary_hash = current_hash(&world.rollout);
    world.replica_sets = vec![
        replica_set("stable0000", 1, i32::MAX),
        replica_set(&canary_hash, 2, i32::MAX / 2),
    ];
    let status = world.plan().status;
    assert_eq!(status.replicas, Some(i32::MAX));
    assert_eq!(status.ready_replicas, Some(i32::MAX));
    assert_eq!(status.available_replicas, Some(i32::MAX));
}

fn routed_with(
    replicas: i32,
    steps: Vec<CanaryStep>,
    edit: impl FnOnce(&mut crate::api::rollout::CanaryStrategy),
) -> World {
    let mut world = World::routed(replicas, steps);
    edit(world.rollout.spec.strategy.canary.as_mut().unwrap());
    world
}

#[test]
fn min_pods_per_replica_set_gives_a_small_weight_its_pods() {
    let steps = vec![CanaryStep::set_weight(1), CanaryStep::pause()];
    let mut world = routed_with(10, steps.clone(), |c| c.min_pods_per_replica_set = Some(3));
    world.converge();
    world.new_template("web:v2");
    world.converge();
    assert_eq!((world.counts(), world.weight()), ((10, 3), Some(1)));
    // Without it, 1% of 10 is one pod.
    let mut world = World::routed(10, steps);
    world.converge();
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.counts(), (10, 1));
}

#[test]
fn old_replica_sets_past_the_scale_down_revision_limit_go_at_once() {
    let mut world = routed_with(4, vec![], |c| c.scale_down_delay_revision_limit = Some(1));
    world.converge();
    let v1 = world.status().stable_rs.clone().unwrap();
    world.new_template("web:v2");
    world.converge();
    let v2 = world.status().stable_rs.clone().unwrap();
    let spec_of = |world: &World, hash: &str| {
        world
            .replica_sets
            .iter()
            .find(|rs| rs.hash == hash)
            .unwrap()
            .spec_replicas
    };
    assert_eq!(spec_of(&world, &v1), 4, "one old revision waits for its delay");
    world.advance(Duration::from_secs(5));
    world.new_template("web:v3");
    world.converge();
    assert_ne!(world.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(spec_of(&world, &v2), 4, "the newest old revision waits for its delay");
    assert_eq!(spec_of(&world, &v1), 0, "beyond the limit: scaled down at once");
    world.advance(Duration::from_secs(31));
    world.converge();
    assert_eq!(spec_of(&world, &v2), 0);
}

fn replica_set_named(name: &str, revision: i64) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: name.into(),
        hash: name.into(),
        revision,
        spec_replicas: 1,
        pods: 1,
        ready: 1,
        available: 1,
        git_revision: None,
        created_at: None,
        deleting: false,
        scale_down_at: None,
        pod_metadata: None,
    }
}

proptest! {
    /// minPodsPerReplicaSet is never violated: a ReplicaSet given pods at a step gets at least that
    /// many, and one given none keeps none.
    #[test]
    fn min_pods_per_replica_set_is_never_violated(
        replicas in 0..200i32,
        weight in 0..=100i32,
        min_pods in 1..50i32,
        dynamic in any::<bool>(),
    ) {
        let world = routed_with(replicas, vec![CanaryStep::set_weight(weight)], |c| {
            c.min_pods_per_replica_set = Some(min_pods);
            c.dynamic_stable_scale = Some(dynamic);
        });
        let observed = world.observed();
        let (canary, stable) = Planner::new(&observed).routed_targets(0, weight);
        let without = routed_with(replicas, vec![CanaryStep::set_weight(weight)], |c| c.dynamic_stable_scale = Some(dynamic));
        let observed_without = without.observed();
        let (canary_without, stable_without) = Planner::new(&observed_without).routed_targets(0, weight);
        for (with, without) in [(canary, canary_without), (stable, stable_without)] {
            prop_assert!(with >= without);
            prop_assert!(without == 0 || with >= min_pods);
            prop_assert!(without != 0 || with == 0);
        }
    }

    /// The revision limit keeps exactly the newest `limit` waiting ReplicaSets.
    #[test]
    fn the_revision_limit_keeps_the_newest(revisions in proptest::collection::btree_set(1..1000i64, 0..12), limit in 0..15i32) {
        let sets: Vec<ObservedReplicaSet> = revisions.iter().map(|r| replica_set_named(&format!("rs-{r}"), *r)).collect();
        let waiting: Vec<&ObservedReplicaSet> = sets.iter().rev().collect();
        let past = routed::past_revision_limit(&waiting, Some(limit));
        prop_assert_eq!(past.len(), sets.len().saturating_sub(limit as usize));
        let kept_oldest = sets.iter().filter(|rs| !past.contains(&rs.name)).map(|rs| rs.revision).min();
        let past_newest = sets.iter().filter(|rs| past.contains(&rs.name)).map(|rs| rs.revision).max();
        if let (Some(kept), Some(gone)) = (kept_oldest, past_newest) {
            prop_assert!(gone < kept);
        }
        prop_assert!(routed::past_revision_limit(&waiting, None).is_empty());
    }
}

mod blue_green;
mod experiment;
