//! Experiment steps through whole rollouts in the in-memory world: created once, followed to their
//! phase, terminated when the rollout leaves the step early, recreated when deleted, pruned; and
//! property tests that a step is never both advanced and aborted, and never left with its
//! Experiment still running.
use super::*;
use crate::api::experiment::{ReplicaSetSpecRef, RolloutExperimentStep, RolloutExperimentTemplate};
use crate::api::rollout::PauseReason;

fn experiment(duration: Option<&str>) -> CanaryStep {
    let template = |name: &str, spec_ref| RolloutExperimentTemplate {
        name: name.into(),
        spec_ref,
        replicas: Some(1),
        metadata: None,
        selector: None,
        weight: None,
        service: None,
    };
    CanaryStep {
        experiment: Some(RolloutExperimentStep {
            templates: vec![
                template("baseline", ReplicaSetSpecRef::Stable),
                template("canary", ReplicaSetSpecRef::Canary),
            ],
            duration: duration.map(str::to_string),
            ..Default::default()
        }),
        ..CanaryStep::default()
    }
}

fn steps() -> Vec<CanaryStep> {
    vec![
        CanaryStep::set_weight(20),
        experiment(Some("10s")),
        CanaryStep::set_weight(60),
    ]
}

impl World {
    /// Sets the phase of every unfinished Experiment.
    fn experiment_phase(&mut self, phase: AnalysisPhase) {
        for experiment in self.experiments.iter_mut().filter(|e| !e.phase.is_completed()) {
            experiment.phase = phase;
        }
    }

    fn followed_experiment(&self) -> Option<String> {
        self.status().canary.as_ref().and_then(|c| c.current_experiment.clone())
    }

    fn terminated_experiments(&self) -> usize {
        self.experiments.iter().filter(|e| e.terminated).count()
    }
}

/// A rollout at its experiment step, the Experiment created and Running.
fn at_experiment() -> World {
    let mut world = deployed(10, steps());
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.status().current_step_index, Some(1));
    world.experiment_phase(AnalysisPhase::Running);
    world
}

#[test]
fn an_experiment_step_creates_one_experiment_and_completes_when_it_succeeds() {
    let mut world = deployed(10, steps());
    world.new_template("web:v2");
    world.converge();
    assert_eq!(world.experiments.len(), 1, "one Experiment for the step");
    let hash = current_hash(&world.rollout);
    let name = &world.experiments[0].name;
    assert_eq!(*name, format!("web-{hash}-2-1"), "<rollout>-<hash>-<revision>-<step>");
    assert_eq!(world.followed_experiment().as_deref(), Some(name.as_str()));
    assert_eq!(world.phase(), RolloutPhase::Progressing);
    assert!(world.reasons().contains(&"ExperimentCreated"));
    // The step waits on the Experiment, with the weight of the step before it.
    world.experiment_phase(AnalysisPhase::Running);
    world.converge();
    assert_eq!(world.status().current_step_index, Some(1));
    assert_eq!(world.status().canary_weight, Some(20));
    world.experiment_phase(AnalysisPhase::Successful);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!(world.experiments.len(), 1, "not created twice");
    assert_eq!(
        world.terminated_experiments(),
        0,
        "a finished Experiment is not terminated"
    );
    assert_eq!(world.followed_experiment(), None, "the step is over");
    assert!(
        world
            .events
            .iter()
            .any(|e| e.message == "step 2/3 completed: experiment baseline, canary for 10s"),
        "{:?}",
        world.events
    );
}

#[test]
fn a_failed_experiment_aborts_the_rollout_blaming_the_revision() {
    for phase in [AnalysisPhase::Failed, AnalysisPhase::Error] {
        let mut world = at_experiment();
        world.experiments[0].phase = phase;
        world.experiments[0].message = Some("analysis compare: 0.6 < 0.95".into());
        let plan = world.reconcile();
        assert!(plan.aborted_now, "{phase:?}");
        assert_eq!(plan.status.abort_reason, Some(AbortReason::AnalysisFailed));
        assert!(AbortReason::AnalysisFailed.blames_revision());
        assert_eq!(plan.status.canary_weight, Some(0), "traffic back on stable at once");
        let message = plan.status.message.clone().unwrap();
        assert!(
            message.contains("experiment") && message.contains("0.6 < 0.95"),
            "{message}"
        );
        world.converge();
        assert_eq!(world.phase(), RolloutPhase::Degraded);
        assert_eq!(world.counts(), (10, 0));
        assert_eq!(world.experiments.len(), 1, "an aborted rollout does not start it again");
    }
}

#[test]
fn an_inconclusive_experiment_pauses_until_promoted() {
    let mut world = at_experiment();
    world.experiment_phase(AnalysisPhase::Inconclusive);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Paused);
    assert!(
        world
            .status()
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
    );
    assert_eq!(
        world
            .reasons()
            .iter()
            .filter(|r| **r == "ExperimentInconclusive")
            .count(),
        1
    );
    // Deleted while paused on its verdict: not recreated, the pause stands.
    world.experiments.clear();
    world.converge();
    assert!(world.experiments.is_empty());
    assert_eq!(world.phase(), RolloutPhase::Paused);
    world.promote();
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn leaving_the_step_early_terminates_the_experiment() {
    // Promoted past the step.
    let mut world = at_experiment();
    world.promote();
    world.converge();
    assert_eq!(world.terminated_experiments(), 1, "promote");
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    // promote --full.
    let mut world = at_experiment();
    world.edit_status(|s| s.promote_full = Some(true));
    world.converge();
    assert_eq!(world.terminated_experiments(), 1, "promote --full");
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    // sluice abort.
    let mut world = at_experiment();
    world.edit_status(|s| s.abort = Some(true));
    world.converge();
    assert_eq!(world.terminated_experiments(), 1, "abort");
    assert_eq!(world.counts(), (10, 0));
    // A newer template supersedes the revision.
    let mut world = at_experiment();
    world.new_template("web:v3");
    world.reconcile();
    assert_eq!(world.terminated_experiments(), 1, "superseded");
}

#[test]
fn an_experiment_deleted_while_running_is_created_again() {
    let mut world = at_experiment();
    let name = world.experiments[0].name.clone();
    world.experiments.clear();
    let plan = world.reconcile();
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::CreateExperiment { name: n, step: 1, .. } if *n == name)),
        "{:?}",
        plan.actions
    );
    world.converge();
    assert_eq!(world.experiments.len(), 1);
    assert_eq!(world.followed_experiment(), Some(name));
    world.experiment_phase(AnalysisPhase::Successful);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn a_crash_before_the_status_write_follows_the_experiment_already_created() {
    let mut world = at_experiment();
    world.edit_status(|s| s.canary.as_mut().unwrap().current_experiment = None);
    let plan = world.reconcile();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateExperiment { .. })),
        "{:?}",
        plan.actions
    );
    assert_eq!(
        world.followed_experiment().as_deref(),
        Some(world.experiments[0].name.as_str())
    );
}

#[test]
fn retry_after_a_failed_experiment_starts_a_new_attempt() {
    let mut world = at_experiment();
    world.experiment_phase(AnalysisPhase::Failed);
    world.converge();
    assert!(world.status().is_aborted());
    world.edit_status(|s| s.abort = None);
    world.converge();
    assert_eq!(world.experiments.len(), 2, "a second attempt");
    assert!(
        world.experiments[1].name.ends_with("-1-1"),
        "{}",
        world.experiments[1].name
    );
    world.experiment_phase(AnalysisPhase::Successful);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn an_experiment_step_is_not_a_missed_progress_deadline() {
    let mut world = at_experiment();
    world.rollout.spec.progress_deadline_seconds = Some(60);
    world.rollout.spec.progress_deadline_abort = Some(true);
    world.advance(Duration::from_secs(600));
    world.converge();
    assert!(!world.status().is_aborted());
    assert_eq!(world.phase(), RolloutPhase::Progressing);
}

#[test]
fn finished_experiments_are_kept_within_the_history_limits() {
    let mut world = deployed(10, steps());
    world.rollout.spec.analysis = Some(AnalysisRunHistory {
        successful_run_history_limit: Some(1),
        unsuccessful_run_history_limit: Some(1),
    });
    for version in ["web:v2", "web:v3", "web:v4"] {
        world.new_template(version);
        world.converge();
        world.experiment_phase(AnalysisPhase::Successful);
        world.converge();
        assert_eq!(world.phase(), RolloutPhase::Healthy);
        world.advance(Duration::from_secs(1));
    }
    assert_eq!(world.experiments.len(), 1, "{:?}", world.experiments);
    assert!(world.experiments[0].hash == current_hash(&world.rollout));
}

#[test]
fn a_long_rollout_name_gives_a_bounded_experiment_name() {
    let mut world = deployed(3, steps());
    world.rollout.metadata.name = Some("w".repeat(253));
    world.new_template("web:v2");
    world.converge();
    let name = &world.experiments[0].name;
    assert!(name.len() <= 253, "{}", name.len());
    assert!(name.ends_with("-1"));
}

#[derive(Debug, Clone)]
enum Event {
    Settle,
    Phase(AnalysisPhase),
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Delete,
    Tick,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let phase = prop_oneof![
        Just(AnalysisPhase::Running),
        Just(AnalysisPhase::Successful),
        Just(AnalysisPhase::Failed),
        Just(AnalysisPhase::Error),
        Just(AnalysisPhase::Inconclusive),
    ];
    proptest::collection::vec(
        prop_oneof![
            3 => Just(Event::Settle),
            3 => phase.prop_map(Event::Phase),
            1 => Just(Event::Promote),
            1 => Just(Event::PromoteFull),
            1 => Just(Event::Abort),
            1 => Just(Event::Retry),
            1 => Just(Event::Delete),
            2 => Just(Event::Tick),
        ],
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever happens, one plan never both advances past the experiment step and aborts; and
    /// whenever the rollout is no longer at the step (promoted, aborted, completed), no Experiment
    /// of the revision is left running without spec.terminate.
    #[test]
    fn experiment_steps_never_advance_and_abort_at_once_and_never_leave_one_running(
        routed in any::<bool>(),
        events in events(),
    ) {
        let mut world = if routed { World::routed(4, steps()) } else { World::new(4, steps()) };
        world.converge();
        world.new_template("web:v2");
        for event in events {
            match event {
                Event::Settle => world.settle(),
                Event::Phase(phase) => world.experiment_phase(phase),
                Event::Promote => world.promote(),
                Event::PromoteFull => world.edit_status(|s| s.promote_full = Some(true)),
                Event::Abort => world.edit_status(|s| s.abort = Some(true)),
                Event::Retry => world.edit_status(|s| s.abort = None),
                Event::Delete => world.experiments.clear(),
                Event::Tick => world.advance(Duration::from_secs(5)),
            }
            let before = world.rollout.status.as_ref().and_then(|s| s.current_step_index);
            let plan = world.reconcile();
            let after = plan.status.current_step_index;
            let advanced_past_experiment = before == Some(1) && after.is_some_and(|a| a > 1);
            prop_assert!(
                !(plan.aborted_now && advanced_past_experiment),
                "advanced and aborted in one plan: {:?}", plan
            );
            let hash = current_hash(&world.rollout);
            let at_step = !plan.status.is_aborted()
                && after == Some(1)
                && plan.status.stable_rs.as_deref() != Some(hash.as_str());
            if !at_step {
                for experiment in &world.experiments {
                    prop_assert!(
                        experiment.terminated || experiment.phase.is_completed(),
                        "left running: {:?} (status {:?})", experiment, plan.status
                    );
                }
            }
        }
    }
}
