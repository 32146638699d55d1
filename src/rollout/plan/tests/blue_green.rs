//! Blue-green through whole rollouts in the in-memory world: each transition, and property tests that
//! the active Service only ever selects fully available pods and returns to stable on every abort.
use super::*;
use crate::api::rollout::{BlueGreenStrategy, RolloutAnalysis};

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";

impl World {
    /// A blue-green Rollout with Services web-active and web-preview (selecting nothing yet).
    fn blue_green(replicas: i32, edit: impl FnOnce(&mut BlueGreenStrategy)) -> Self {
        let mut world = World::new(replicas, vec![]);
        world.rollout = Rollout::blue_green_example("web", replicas)
            .with_generation(1)
            .with_blue_green(edit);
        world.services = [ACTIVE, PREVIEW]
            .map(|name| ObservedService {
                name: name.into(),
                selector_hash: None,
            })
            .to_vec();
        world
    }

    fn active(&self) -> Option<String> {
        self.selector(ACTIVE)
    }

    fn preview(&self) -> Option<String> {
        self.selector(PREVIEW)
    }

    fn stable(&self) -> String {
        self.status().stable_rs.clone().unwrap()
    }

    fn current(&self) -> String {
        current_hash(&self.rollout)
    }

    fn rs(&self, hash: &str) -> &ObservedReplicaSet {
        self.replica_sets.iter().find(|rs| rs.hash == hash).unwrap()
    }

    fn paused_for_promotion(&self) -> bool {
        self.status()
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::BlueGreenPause)
    }

    /// Sets the verdict of every unfinished run of `kind`.
    fn verdict(&mut self, kind: AnalysisKind, phase: AnalysisPhase) {
        for run in self
            .runs
            .iter_mut()
            .filter(|r| r.kind == kind && !r.phase.is_completed())
        {
            run.phase = phase;
        }
    }
}

use crate::api::rollout::PauseReason;

fn manual(strategy: &mut BlueGreenStrategy) {
    strategy.auto_promotion_enabled = Some(false);
    strategy.scale_down_delay_seconds = Some(3);
}

fn deployed_blue_green(replicas: i32, edit: impl FnOnce(&mut BlueGreenStrategy)) -> World {
    let mut world = World::blue_green(replicas, edit);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    world
}

#[test]
fn the_first_version_is_active_and_preview_at_once_and_healthy() {
    let mut world = World::blue_green(3, |_| {});
    let plan = world.reconcile();
    assert!(
        matches!(
            &plan.actions[..],
            [
                Action::SetServiceSelector { .. },
                Action::SetServiceSelector { .. },
                Action::CreateReplicaSet { replicas: 3, .. }
            ]
        ),
        "{:?}",
        plan.actions
    );
    world.converge();
    let hash = world.current();
    assert_eq!(
        (world.active(), world.preview()),
        (Some(hash.clone()), Some(hash.clone()))
    );
    let selectors = world.status().blue_green.clone().unwrap();
    assert_eq!(selectors.active_selector, Some(hash.clone()));
    assert_eq!(selectors.preview_selector, Some(hash));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert!(
        conditions::find(&world.status().conditions, conditions::STRATEGY_DEFAULTED).is_none(),
        "blueGreen names a strategy"
    );
}

/// The first "Done when": v1 Healthy with active on it; a new image → Paused with preview on
/// v2 and active on v1; promote → active on v2, Healthy; v1 scaled to 0 after the delay.
#[test]
fn a_new_version_waits_in_preview_until_promoted_then_switches_and_the_old_one_leaves_after_the_delay() {
    let mut world = deployed_blue_green(2, manual);
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Paused);
    assert!(world.paused_for_promotion());
    let paused = conditions::find(&world.status().conditions, conditions::PAUSED).unwrap();
    assert_eq!(paused.reason.as_deref(), Some("BlueGreenPause"));
    assert_eq!(world.status().message.as_deref(), Some("paused (BlueGreenPause)"));
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v2.clone())));
    assert_eq!((world.rs(&v1).spec_replicas, world.rs(&v2).spec_replicas), (2, 2));
    world.advance(Duration::from_secs(3600));
    world.converge();
    assert_eq!(
        world.active(),
        Some(v1.clone()),
        "without autoPromotionSeconds the pause is open"
    );

    world.promote();
    world.converge();
    assert_eq!(world.active(), Some(v2.clone()));
    assert_eq!(world.stable(), v2);
    assert_eq!(
        world.phase(),
        RolloutPhase::Healthy,
        "Healthy while v1 waits out its delay"
    );
    assert_eq!(world.rs(&v1).spec_replicas, 2, "v1 keeps its pods for a fast rollback");
    assert_eq!(world.plan().requeue_after, Some(Duration::from_secs(3)));
    world.advance(Duration::from_secs(3));
    world.converge();
    assert_eq!(world.rs(&v1).spec_replicas, 0);
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    for reason in [
        "NewRevision",
        "RolloutPaused",
        "RolloutPromoted",
        "ActiveServiceSwitched",
        "RolloutCompleted",
    ] {
        assert!(
            world.reasons().contains(&reason),
            "missing {reason}: {:?}",
            world.reasons()
        );
    }
}

#[test]
fn the_switch_waits_until_every_pod_of_the_new_version_is_available() {
    let mut world = deployed_blue_green(4, |b| {
        manual(b);
        b.preview_replica_count = Some(1);
    });
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    assert_eq!(
        world.rs(&v2).spec_replicas,
        1,
        "previewReplicaCount pods before promotion"
    );
    assert!(world.paused_for_promotion());
    world.promote();
    world.reconcile();
    assert_eq!(world.rs(&v2).spec_replicas, 4, "full scale before the switch");
    world.reconcile();
    assert_eq!(world.active(), Some(v1.clone()), "3 of 4 pods are not available yet");
    world
        .replica_sets
        .iter_mut()
        .find(|rs| rs.hash == v2)
        .unwrap()
        .available = 3;
    world.reconcile();
    assert_eq!(world.active(), Some(v1));
    world.settle();
    world.reconcile();
    assert_eq!(world.active(), Some(v2));
}

#[test]
fn with_auto_promotion_the_switch_follows_availability() {
    let mut world = deployed_blue_green(3, |_| {});
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.reconcile();
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v2.clone())));
    world.converge();
    assert_eq!(world.active(), Some(v2.clone()));
    assert_eq!(world.stable(), v2);
    assert!(!world.reasons().contains(&"RolloutPaused"));
    assert_eq!(world.rs(&v1).spec_replicas, 3, "default scaleDownDelaySeconds: 30");
    world.advance(Duration::from_secs(30));
    world.converge();
    assert_eq!(world.rs(&v1).spec_replicas, 0);
}

#[test]
fn auto_promotion_seconds_ends_the_pause() {
    let mut world = deployed_blue_green(2, |b| {
        manual(b);
        b.auto_promotion_seconds = Some(20);
    });
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    assert!(world.paused_for_promotion());
    assert_eq!(world.plan().requeue_after, Some(Duration::from_secs(20)));
    world.advance(Duration::from_secs(19));
    world.converge();
    assert_ne!(world.active(), Some(v2.clone()));
    world.advance(Duration::from_secs(1));
    world.converge();
    assert_eq!(world.active(), Some(v2));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn a_failed_pre_promotion_analysis_aborts_and_active_never_leaves_stable() {
    let mut world = deployed_blue_green(3, |b| {
        b.pre_promotion_analysis = Some(RolloutAnalysis::template("smoke"));
        b.abort_scale_down_delay_seconds = Some(5);
    });
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    for _ in 0..5 {
        world.reconcile();
        world.settle();
        assert_eq!(world.active(), Some(v1.clone()));
    }
    let run = world
        .runs
        .iter()
        .find(|r| r.kind == AnalysisKind::PrePromotion)
        .unwrap();
    assert_eq!(run.hash, v2);
    assert_eq!(
        world
            .status()
            .blue_green
            .as_ref()
            .unwrap()
            .pre_promotion_analysis_run
            .as_ref()
            .unwrap()
            .name,
        run.name
    );
    world.verdict(AnalysisKind::PrePromotion, AnalysisPhase::Failed);
    let plan = world.reconcile();
    assert!(plan.aborted_now);
    assert_eq!(world.status().abort_reason, Some(AbortReason::AnalysisFailed));
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v1.clone())));
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert_eq!(world.rs(&v2).spec_replicas, 3, "abortScaleDownDelaySeconds");
    world.advance(Duration::from_secs(5));
    world.converge();
    assert_eq!(world.rs(&v2).spec_replicas, 0);
    assert_eq!(world.rs(&v1).spec_replicas, 3);
    assert_eq!(world.active(), Some(v1));
}

#[test]
fn a_passed_pre_promotion_analysis_lets_the_switch_happen() {
    let mut world = deployed_blue_green(2, |b| {
        b.pre_promotion_analysis = Some(RolloutAnalysis::template("smoke"))
    });
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    assert_ne!(world.active(), Some(v2.clone()));
    world.verdict(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    world.converge();
    assert_eq!(world.active(), Some(v2));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert!(
        world
            .status()
            .blue_green
            .as_ref()
            .unwrap()
            .pre_promotion_analysis_run
            .is_none()
    );
}

#[test]
fn a_failed_post_promotion_analysis_switches_active_back() {
    let mut world = deployed_blue_green(2, |b| {
        b.post_promotion_analysis = Some(RolloutAnalysis::template("smoke"))
    });
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    assert_eq!(
        world.active(),
        Some(v2.clone()),
        "switched; the post-promotion analysis runs"
    );
    assert_eq!(world.stable(), v1, "not stable until the analysis passes");
    assert_eq!(world.phase(), RolloutPhase::Progressing);
    assert_eq!(
        world.rs(&v1).spec_replicas,
        2,
        "the old version keeps every pod meanwhile"
    );
    world.verdict(AnalysisKind::PostPromotion, AnalysisPhase::Failed);
    let plan = world.reconcile();
    assert!(
        matches!(&plan.actions[0], Action::SetServiceSelector { service, hash } if service == ACTIVE && *hash == v1),
        "active moves back first: {:?}",
        plan.actions
    );
    world.converge();
    assert_eq!(world.active(), Some(v1.clone()));
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert_eq!(world.status().abort_reason, Some(AbortReason::AnalysisFailed));
    assert_eq!(world.stable(), v1);
    // What a GitSync reads to block the revision and pin the last healthy one, as for a canary.
    let state = crate::gitsync::plan::RolloutState::observe(&world.rollout);
    assert!(state.aborted && state.abort_reason == Some(AbortReason::AnalysisFailed) && !state.healthy);
}

#[test]
fn a_passed_post_promotion_analysis_makes_the_new_version_stable() {
    let mut world = deployed_blue_green(2, |b| {
        b.post_promotion_analysis = Some(RolloutAnalysis::template("smoke"))
    });
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.verdict(AnalysisKind::PostPromotion, AnalysisPhase::Successful);
    world.converge();
    assert_eq!(world.stable(), v2);
    assert_eq!(world.phase(), RolloutPhase::Healthy);
}

#[test]
fn abort_retry_and_undo() {
    let mut world = deployed_blue_green(2, manual);
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.edit_status(|s| s.abort = Some(true));
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Degraded);
    assert_eq!(world.status().abort_reason, Some(AbortReason::Requested));
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v1.clone())));

    // Retry: back to the preview and the pause.
    world.edit_status(|s| s.abort = None);
    world.converge();
    assert!(world.paused_for_promotion());
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v2.clone())));
    assert_eq!(world.rs(&v2).spec_replicas, 2);

    // Undo: the template is v1's again.
    world.edit_status(|s| s.abort = Some(true));
    world.converge();
    world.rollout.spec.template = world.templates[&v1].clone();
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert_eq!((world.active(), world.preview()), (Some(v1.clone()), Some(v1)));
    assert!(world.reasons().contains(&"RolledBack"));
}

#[test]
fn promote_full_skips_the_promotion_analyses() {
    let mut world = deployed_blue_green(2, |b| {
        b.pre_promotion_analysis = Some(RolloutAnalysis::template("smoke"));
        b.post_promotion_analysis = Some(RolloutAnalysis::template("smoke"));
    });
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.edit_status(|s| s.promote_full = Some(true));
    world.converge();
    assert_eq!(world.stable(), v2);
    assert_eq!(world.active(), Some(v2));
    assert!(
        world.runs.iter().all(|r| r.kind == AnalysisKind::PrePromotion),
        "no post-promotion run"
    );
}

#[test]
fn an_inconclusive_pre_promotion_analysis_pauses_until_promoted() {
    let mut world = deployed_blue_green(2, |b| {
        b.pre_promotion_analysis = Some(RolloutAnalysis::template("smoke"))
    });
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.verdict(AnalysisKind::PrePromotion, AnalysisPhase::Inconclusive);
    world.converge();
    assert_eq!(world.phase(), RolloutPhase::Paused);
    world.promote();
    world.converge();
    assert_eq!(world.active(), Some(v2));
}

#[test]
fn scale_down_delay_revision_limit_bounds_the_old_versions_kept() {
    let mut world = deployed_blue_green(2, |b| {
        b.scale_down_delay_seconds = Some(600);
        b.scale_down_delay_revision_limit = Some(1);
    });
    let v1 = world.stable();
    world.new_template("web:v2");
    world.converge();
    let v2 = world.stable();
    assert_eq!(world.rs(&v1).spec_replicas, 2);
    world.new_template("web:v3");
    world.converge();
    assert_eq!(
        world.rs(&v2).spec_replicas,
        2,
        "the newest old version waits out its delay"
    );
    assert_eq!(world.rs(&v1).spec_replicas, 0, "beyond the limit: at once");
}

#[test]
fn a_superseded_preview_goes_at_once_and_the_newest_template_is_previewed() {
    let mut world = deployed_blue_green(2, manual);
    let v1 = world.stable();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.new_template("web:v3");
    let v3 = world.current();
    world.converge();
    assert_eq!(world.rs(&v2).spec_replicas, 0);
    assert_eq!((world.active(), world.preview()), (Some(v1), Some(v3)));
    assert!(world.reasons().contains(&"Superseded"));
}

#[test]
fn a_return_within_the_rollback_window_skips_analysis_and_pause_but_not_availability() {
    let mut world = deployed_blue_green(2, |b| {
        manual(b);
        b.pre_promotion_analysis = Some(RolloutAnalysis::template("smoke"));
    });
    world.rollout.spec.rollback_window = Some(crate::api::rollout::RollbackWindow { revisions: 1 });
    let v1 = world.stable();
    let v1_template = world.rollout.spec.template.clone();
    world.new_template("web:v2");
    let v2 = world.current();
    world.converge();
    world.verdict(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    world.converge();
    assert!(world.paused_for_promotion(), "v2 waits for a person");
    world.promote();
    world.converge();
    assert_eq!(world.stable(), v2);

    // Back to v1's template: within the window, so no analysis and no pause.
    world.rollout.spec.template = v1_template;
    world.new_template_generation();
    world.converge();
    assert_eq!(world.stable(), v1);
    assert_eq!(world.active(), Some(v1.clone()));
    assert_eq!(world.phase(), RolloutPhase::Healthy);
    assert!(world.reasons().contains(&"RolledBack"));
    assert_eq!(world.rs(&v1).available, 2, "the switch still waited for every pod");
}

/// Argo's test/e2e/functional/rollout-bluegreen.yaml: an active Service only, scaleDownDelaySeconds 10.
#[test]
fn without_a_preview_service_only_active_moves() {
    let mut world = World::blue_green(3, |b| {
        b.preview_service = None;
        b.scale_down_delay_seconds = Some(10);
    });
    world.services.retain(|s| s.name == ACTIVE);
    world.converge();
    let v1 = world.stable();
    assert_eq!(world.status().blue_green.as_ref().unwrap().preview_selector, None);
    world.new_template("web:v2");
    let v2 = world.current();
    world.reconcile();
    assert_eq!(world.active(), Some(v1.clone()));
    world.converge();
    assert_eq!((world.active(), world.stable()), (Some(v2.clone()), v2));
    world.advance(Duration::from_secs(10));
    world.converge();
    assert_eq!(world.rs(&v1).spec_replicas, 0);
}

#[derive(Debug, Clone)]
enum BlueGreenEvent {
    Reconcile,
    SettleSome(u8),
    NewTemplate,
    Abort,
    Retry,
    Promote,
    Verdict(bool),
    Advance(u16),
}

fn blue_green_events() -> impl Strategy<Value = Vec<BlueGreenEvent>> {
    let event = prop_oneof![
        6 => Just(BlueGreenEvent::Reconcile),
        4 => any::<u8>().prop_map(BlueGreenEvent::SettleSome),
        1 => Just(BlueGreenEvent::NewTemplate),
        1 => Just(BlueGreenEvent::Abort),
        1 => Just(BlueGreenEvent::Retry),
        1 => Just(BlueGreenEvent::Promote),
        2 => any::<bool>().prop_map(BlueGreenEvent::Verdict),
        1 => (0..60u16).prop_map(BlueGreenEvent::Advance),
    ];
    proptest::collection::vec(event, 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever happens: the active Service only ever selects a ReplicaSet with every pod available
    /// (except the very first version, which has nothing to compare with); after an abort it selects
    /// stable; no ReplicaSet is ever asked for more than spec.replicas pods; planning is deterministic.
    #[test]
    fn active_selects_only_fully_available_pods_and_returns_to_stable_on_abort(
        replicas in 1..6i32,
        preview in proptest::option::of(1..6i32),
        auto in any::<bool>(),
        pre in any::<bool>(),
        post in any::<bool>(),
        events in blue_green_events(),
    ) {
        let mut world = World::blue_green(replicas, |b| {
            b.auto_promotion_enabled = Some(auto);
            b.preview_replica_count = preview;
            b.scale_down_delay_seconds = Some(10);
            b.abort_scale_down_delay_seconds = Some(5);
            if pre { b.pre_promotion_analysis = Some(RolloutAnalysis::template("pre")); }
            if post { b.post_promotion_analysis = Some(RolloutAnalysis::template("post")); }
        });
        let mut version = 1;
        let mut first_version_up = false;
        for event in events {
            match event {
                BlueGreenEvent::Reconcile => {
                    prop_assert_eq!(world.plan(), world.plan());
                    world.reconcile();
                    let active = world.active();
                    if let Some(active) = &active {
                        let rs = world.rs(active);
                        let first = !first_version_up && world.replica_sets.first().is_some_and(|rs| rs.hash == *active);
                        prop_assert!(first || rs.available >= replicas, "active on {} with {} of {} available", active, rs.available, replicas);
                    }
                    if world.status().is_aborted() {
                        prop_assert_eq!(active, world.status().stable_rs.clone(), "aborted, active not on stable");
                    }
                    for rs in &world.replica_sets {
                        prop_assert!(rs.spec_replicas <= replicas, "{} asked for {} pods", rs.name, rs.spec_replicas);
                    }
                }
                BlueGreenEvent::SettleSome(n) => {
                    settle_some(&mut world, n);
                    first_version_up |= world.replica_sets.first().is_some_and(|rs| rs.available >= replicas);
                }
                BlueGreenEvent::NewTemplate => {
                    version += 1;
                    world.new_template(&format!("web:v{version}"));
                }
                BlueGreenEvent::Abort => if world.rollout.status.is_some() { world.edit_status(|s| s.abort = Some(true)) },
                BlueGreenEvent::Retry => if world.rollout.status.is_some() { world.edit_status(|s| s.abort = None) },
                BlueGreenEvent::Promote => if world.rollout.status.is_some() { world.promote() },
                BlueGreenEvent::Verdict(passed) => {
                    let phase = if passed { AnalysisPhase::Successful } else { AnalysisPhase::Failed };
                    if let Some(run) = world.runs.iter_mut().find(|r| !r.phase.is_completed()) {
                        run.phase = phase;
                    }
                }
                BlueGreenEvent::Advance(secs) => world.advance(Duration::from_secs(u64::from(secs))),
            }
        }
        // Whatever happened, an abort ends with both Services and every pod on stable.
        world.reconcile();
        if world.status().stable_rs != world.status().current_pod_hash {
            world.edit_status(|s| s.abort = Some(true));
            world.converge();
            world.advance(Duration::from_secs(10));
            world.converge();
            let stable = world.stable();
            prop_assert_eq!(world.active(), Some(stable.clone()));
            prop_assert_eq!(world.preview(), Some(stable.clone()));
            prop_assert_eq!(world.counts(), (replicas, 0));
            prop_assert_eq!(world.phase(), RolloutPhase::Degraded);
        }
    }
}
