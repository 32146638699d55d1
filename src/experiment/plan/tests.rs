use super::*;
use crate::api::experiment::Experiment;
use crate::experiment::fixtures::{analysis, experiment};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

fn created(mut e: Experiment) -> Experiment {
    e.metadata.creation_timestamp = serde_json::from_value(serde_json::json!(t0().to_rfc3339())).unwrap();
    e
}

fn rs(name: &str, desired: i32, available: i32) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: name.into(),
        desired,
        replicas: desired,
        ready: available,
        available,
        observed_current: true,
    }
}

fn run(name: &str, phase: AnalysisPhase) -> ObservedRun {
    ObservedRun {
        name: name.into(),
        phase: Some(phase),
        message: None,
        terminating: false,
    }
}

struct World {
    experiment: Experiment,
    replica_sets: Vec<ObservedReplicaSet>,
    services: Vec<String>,
    runs: Vec<ObservedRun>,
}

impl World {
    fn new(experiment: Experiment) -> Self {
        World {
            experiment: created(experiment),
            replica_sets: vec![],
            services: vec![],
            runs: vec![],
        }
    }

    /// Plans at `now` and keeps the status, as a status write would.
    fn step(&mut self, now: DateTime<Utc>) -> Plan {
        let plan = plan(&Observed {
            experiment: &self.experiment,
            replica_sets: &self.replica_sets,
            services: &self.services,
            runs: &self.runs,
            reference_errors: vec![],
            now,
        });
        self.experiment.status = Some(plan.status.clone());
        plan
    }

    /// Applies the plan's writes, pods available at once.
    fn apply(&mut self, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::CreateReplicaSet { name, replicas, .. } => {
                    self.replica_sets.push(rs(name, *replicas, *replicas))
                }
                Action::ScaleReplicaSet { name, replicas } => {
                    if let Some(rs) = self.replica_sets.iter_mut().find(|r| r.name == *name) {
                        *rs = self::rs(name, *replicas, *replicas);
                    }
                }
                Action::CreateService { name, .. } => self.services.push(name.clone()),
                Action::DeleteService { name } => self.services.retain(|s| s != name),
                Action::CreateAnalysisRun { name, .. } => self.runs.push(run(name, AnalysisPhase::Running)),
                Action::TerminateAnalysisRun { name } => {
                    if let Some(r) = self.runs.iter_mut().find(|r| r.name == *name) {
                        r.terminating = true;
                        r.phase = Some(AnalysisPhase::Successful);
                    }
                }
            }
        }
    }

    fn phase(&self) -> Option<AnalysisPhase> {
        self.experiment.status.as_ref().and_then(|s| s.phase)
    }
}

fn two_templates() -> Experiment {
    let mut e = experiment("exp", &["baseline", "canary"]);
    e.spec.duration = Some("10s".into());
    e
}

#[test]
fn creates_a_replica_set_per_template_and_waits_pending() {
    let mut world = World::new(two_templates());
    let plan = world.step(secs(0));
    assert_eq!(
        plan.actions,
        vec![
            Action::CreateReplicaSet {
                template: 0,
                name: "exp-baseline".into(),
                hash: names::template_hash(&world.experiment, &world.experiment.spec.templates[0]),
                replicas: 1
            },
            Action::CreateReplicaSet {
                template: 1,
                name: "exp-canary".into(),
                hash: names::template_hash(&world.experiment, &world.experiment.spec.templates[1]),
                replicas: 1
            },
        ]
    );
    assert_eq!(world.phase(), Some(AnalysisPhase::Pending));
    // Woken at the progress deadline (600 s by default) at the latest.
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(600)));
    let statuses = &plan.status.template_statuses;
    assert_eq!(statuses[0].replica_set_name.as_deref(), Some("exp-baseline"));
    assert_ne!(statuses[0].pod_template_hash, statuses[1].pod_template_hash);
}

#[test]
fn hashes_differ_between_experiments_running_the_same_template() {
    let a = experiment("a", &["baseline"]);
    let b = experiment("b", &["baseline"]);
    assert_ne!(
        names::template_hash(&a, &a.spec.templates[0]),
        names::template_hash(&b, &b.spec.templates[0])
    );
}

#[test]
fn runs_once_available_and_succeeds_after_the_duration_then_scales_down() {
    let mut world = World::new(two_templates());
    let plan = world.step(secs(0));
    world.apply(&plan);
    let plan = world.step(secs(2));
    assert_eq!(world.phase(), Some(AnalysisPhase::Running));
    assert_eq!(plan.status.available_at, Some(secs(2)));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    assert!(plan.events.iter().any(|e| e.reason == "ExperimentRunning"));
    world.step(secs(11));
    assert_eq!(world.phase(), Some(AnalysisPhase::Running));
    let plan = world.step(secs(12));
    assert_eq!(world.phase(), Some(AnalysisPhase::Successful));
    assert!(
        plan.actions.is_empty(),
        "the scale-down waits for the delay: {:?}",
        plan.actions
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    let plan = world.step(secs(42));
    assert_eq!(
        plan.actions,
        vec![
            Action::ScaleReplicaSet {
                name: "exp-baseline".into(),
                replicas: 0
            },
            Action::ScaleReplicaSet {
                name: "exp-canary".into(),
                replicas: 0
            },
        ]
    );
    assert!(
        plan.status
            .template_statuses
            .iter()
            .all(|t| t.status == Some(TemplateStatusCode::Successful))
    );
}

#[test]
fn a_template_not_available_within_the_progress_deadline_fails_it() {
    let mut e = two_templates();
    e.spec.progress_deadline_seconds = Some(30);
    let mut world = World::new(e);
    world.step(secs(0));
    world.replica_sets = vec![rs("exp-baseline", 1, 1), rs("exp-canary", 1, 0)];
    let plan = world.step(secs(10));
    assert_eq!(world.phase(), Some(AnalysisPhase::Pending));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    let plan = world.step(secs(30));
    assert_eq!(world.phase(), Some(AnalysisPhase::Failed));
    assert!(plan.status.message.as_deref().unwrap().contains("\"canary\""));
    let canary = &plan.status.template_statuses[1];
    assert_eq!(canary.status, Some(TemplateStatusCode::Failed));
    assert!(plan.events.iter().any(|e| e.reason == "ExperimentFailed" && e.warning));
}

#[test]
fn analyses_start_when_running_and_a_failed_one_ends_the_experiment_at_once() {
    let mut e = two_templates();
    e.spec.duration = Some("1h".into());
    e.spec.analyses = vec![analysis("compare", "error-rate")];
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun { .. }))
    );
    world.apply(&plan);
    let plan = world.step(secs(1));
    assert!(plan.actions.contains(&Action::CreateAnalysisRun {
        analysis: 0,
        name: "exp-compare".into()
    }));
    assert_eq!(
        plan.status.analysis_runs[0].analysis_run.as_deref(),
        Some("exp-compare")
    );
    world.apply(&plan);
    world.runs[0].phase = Some(AnalysisPhase::Failed);
    world.runs[0].message = Some("error rate 0.4".into());
    world.step(secs(5));
    assert_eq!(world.phase(), Some(AnalysisPhase::Failed));
    let status = world.experiment.status.clone().unwrap();
    assert!(status.message.unwrap().contains("error rate 0.4"));
    assert_eq!(status.analysis_runs[0].phase, Some(AnalysisPhase::Failed));
}

#[test]
fn inconclusive_and_error_end_with_their_phase() {
    for phase in [AnalysisPhase::Error, AnalysisPhase::Inconclusive] {
        let mut e = two_templates();
        e.spec.analyses = vec![analysis("a", "t")];
        let mut world = World::new(e);
        let plan = world.step(secs(0));
        world.apply(&plan);
        let plan = world.step(secs(1));
        world.apply(&plan);
        world.runs[0].phase = Some(phase);
        world.step(secs(2));
        assert_eq!(world.phase(), Some(phase));
    }
}

#[test]
fn required_analyses_hold_completion_past_the_duration() {
    let mut e = two_templates();
    let mut required = analysis("must", "t");
    required.required_for_completion = Some(true);
    e.spec.analyses = vec![required, analysis("optional", "t")];
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    world.apply(&plan);
    let plan = world.step(secs(1));
    world.apply(&plan);
    world.step(secs(60));
    assert_eq!(
        world.phase(),
        Some(AnalysisPhase::Running),
        "the required run is still running"
    );
    world.runs[0].phase = Some(AnalysisPhase::Successful);
    let plan = world.step(secs(61));
    assert_eq!(world.phase(), Some(AnalysisPhase::Successful));
    // The optional run, still running, is terminated.
    assert_eq!(
        plan.actions,
        vec![Action::TerminateAnalysisRun {
            name: "exp-optional".into()
        }]
    );
}

#[test]
fn without_duration_or_required_analyses_it_runs_until_terminated() {
    let mut e = experiment("exp", &["a"]);
    e.spec.analyses = vec![analysis("x", "t")];
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    world.apply(&plan);
    let plan = world.step(secs(1));
    world.apply(&plan);
    world.runs[0].phase = Some(AnalysisPhase::Successful);
    let plan = world.step(secs(100_000));
    assert_eq!(world.phase(), Some(AnalysisPhase::Running));
    assert_eq!(plan.requeue_after, None);
    world.experiment.spec.terminate = Some(true);
    world.step(secs(100_001));
    assert_eq!(world.phase(), Some(AnalysisPhase::Successful));
    assert_eq!(
        world.experiment.status.as_ref().unwrap().message.as_deref(),
        Some("terminated")
    );
}

#[test]
fn terminate_takes_an_analysis_verdict_and_terminates_unfinished_runs() {
    let mut e = two_templates();
    e.spec.analyses = vec![analysis("a", "t"), analysis("b", "t")];
    e.spec.scale_down_delay_seconds = Some(0);
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    world.apply(&plan);
    let plan = world.step(secs(1));
    world.apply(&plan);
    world.runs[0].phase = Some(AnalysisPhase::Inconclusive);
    world.experiment.spec.terminate = Some(true);
    let plan = world.step(secs(2));
    assert_eq!(world.phase(), Some(AnalysisPhase::Inconclusive));
    assert!(
        plan.actions
            .contains(&Action::TerminateAnalysisRun { name: "exp-b".into() })
    );
    assert!(plan.actions.contains(&Action::ScaleReplicaSet {
        name: "exp-canary".into(),
        replicas: 0
    }));
}

#[test]
fn terminated_while_pending_creates_nothing_more() {
    let mut e = two_templates();
    e.spec.terminate = Some(true);
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    assert_eq!(world.phase(), Some(AnalysisPhase::Successful));
    assert!(plan.actions.is_empty());
}

#[test]
fn a_service_is_created_per_template_that_asks_and_deleted_at_scale_down() {
    let mut e = two_templates();
    e.spec.templates[1].service = Some(Default::default());
    e.spec.scale_down_delay_seconds = Some(0);
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::CreateService { name, template: 1, .. } if name == "exp-canary"))
    );
    assert_eq!(
        plan.status.template_statuses[1].service_name.as_deref(),
        Some("exp-canary")
    );
    world.apply(&plan);
    world.step(secs(1));
    let plan = world.step(secs(11));
    assert!(plan.actions.contains(&Action::DeleteService {
        name: "exp-canary".into()
    }));
}

#[test]
fn an_invalid_spec_ends_in_error_with_the_field_and_one_event() {
    let mut e = two_templates();
    e.spec.templates[1].name = "Bad Name".into();
    let mut world = World::new(e);
    let plan = world.step(secs(0));
    assert_eq!(world.phase(), Some(AnalysisPhase::Error));
    assert!(plan.actions.is_empty());
    let condition = conditions::find(&plan.status.conditions, types::INVALID_SPEC).unwrap();
    assert!(condition.message.as_deref().unwrap().contains("spec.templates[1].name"));
    assert_eq!(plan.events.iter().filter(|e| e.reason == "InvalidSpec").count(), 1);
    let plan = world.step(secs(1));
    assert!(plan.events.is_empty(), "no second event: {:?}", plan.events);
}

#[test]
fn a_missing_analysis_template_is_an_error_naming_the_field() {
    let mut e = two_templates();
    e.spec.analyses = vec![analysis("a", "missing")];
    let e = created(e);
    let plan = plan(&Observed {
        experiment: &e,
        replica_sets: &[],
        services: &[],
        runs: &[],
        reference_errors: vec![SpecError {
            field: "spec.analyses[0].templateName".into(),
            message: "AnalysisTemplate \"missing\" not found".into(),
        }],
        now: secs(0),
    });
    assert_eq!(plan.status.phase, Some(AnalysisPhase::Error));
    assert!(plan.status.message.unwrap().contains("spec.analyses[0].templateName"));
}

#[test]
fn a_huge_duration_never_ends_and_never_overflows() {
    let mut e = two_templates();
    e.spec.duration = Some("8760h".into());
    e.spec.progress_deadline_seconds = Some(crate::api::duration::MAX_SECONDS);
    let mut world = World::new(e);
    // Created "now", at the end of representable time: every deadline is past it.
    world.experiment.metadata.creation_timestamp = None;
    let plan = world.step(DateTime::<Utc>::MAX_UTC - TimeDelta::seconds(5));
    world.apply(&plan);
    assert_eq!(
        world.phase(),
        Some(AnalysisPhase::Pending),
        "{:?}",
        world.experiment.status
    );
    world.step(DateTime::<Utc>::MAX_UTC - TimeDelta::seconds(4));
    assert_eq!(
        world.phase(),
        Some(AnalysisPhase::Running),
        "{:?}",
        world.experiment.status
    );
}

/// One step of a random world: time passes, pods come and go, runs end, terminate is set.
#[derive(Debug, Clone)]
enum Event {
    Wait(u32),
    Apply,
    PodsLost,
    RunEnds(usize, u8),
    Terminate,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u32..2000).prop_map(Event::Wait),
        Just(Event::Apply),
        Just(Event::PodsLost),
        (0usize..3, 0u8..5).prop_map(|(i, p)| Event::RunEnds(i, p)),
        Just(Event::Terminate),
    ]
}

proptest! {
    #[test]
    fn lifecycle_invariants(
        events in proptest::collection::vec(event(), 1..40),
        duration in proptest::option::of(0u32..3000),
        required in any::<bool>(),
        deadline in 0i32..1000,
        delay in 0i32..100,
    ) {
        let mut e = two_templates();
        e.spec.duration = duration.map(|d| format!("{d}s"));
        e.spec.progress_deadline_seconds = Some(deadline);
        e.spec.scale_down_delay_seconds = Some(delay);
        let mut a = analysis("a", "t");
        a.required_for_completion = Some(required);
        e.spec.analyses = vec![a, analysis("b", "t")];
        let mut world = World::new(e);
        let mut now = secs(0);
        let mut ended_at: Option<DateTime<Utc>> = None;
        for event in events {
            match event {
                Event::Wait(s) => now += TimeDelta::seconds(i64::from(s)),
                Event::Apply => {
                    let plan = world.step(now);
                    world.apply(&plan);
                }
                Event::PodsLost => world.replica_sets.iter_mut().for_each(|rs| rs.available = 0),
                Event::RunEnds(i, p) => {
                    let phase = [AnalysisPhase::Successful, AnalysisPhase::Failed, AnalysisPhase::Error,
                                 AnalysisPhase::Inconclusive, AnalysisPhase::Running][p as usize];
                    if let Some(r) = world.runs.get_mut(i) { r.phase = Some(phase); }
                }
                Event::Terminate => world.experiment.spec.terminate = Some(true),
            }
            let before = world.phase();
            let plan = world.step(now);
            let after = world.phase();
            // A completed phase never changes.
            if let Some(b) = before.filter(|b| b.is_completed()) {
                prop_assert_eq!(after, Some(b));
            }
            if after.is_some_and(AnalysisPhase::is_completed) {
                ended_at.get_or_insert(now);
                // Nothing created or scaled up after the end.
                for action in &plan.actions {
                    let scales_up = matches!(action, Action::ScaleReplicaSet { replicas, .. } if *replicas > 0);
                    let creates = matches!(action, Action::CreateReplicaSet { .. } | Action::CreateService { .. } | Action::CreateAnalysisRun { .. });
                    prop_assert!(!scales_up && !creates, "{:?} after the end", action);
                }
                // Requeue never past the scale-down deadline.
                if let (Some(wait), Some(ended)) = (plan.requeue_after, ended_at) {
                    let due = ended + TimeDelta::seconds(i64::from(delay));
                    let wait = TimeDelta::from_std(wait).unwrap();
                    prop_assert!(now + wait <= due.max(now + TimeDelta::seconds(1)));
                }
            } else {
                let status = plan.status.clone();
                // Never past the end of the duration.
                if let (Some(wait), Some(available), Some(d)) = (plan.requeue_after, status.available_at, duration) {
                    let due = available + TimeDelta::seconds(i64::from(d));
                    prop_assert!(now + TimeDelta::from_std(wait).unwrap() <= due.max(now + TimeDelta::seconds(1)));
                }
                // Runs exist only once every template was available.
                if plan.actions.iter().any(|a| matches!(a, Action::CreateAnalysisRun { .. })) {
                    prop_assert!(status.available_at.is_some());
                }
            }
            world.apply(&plan);
        }
    }
}
