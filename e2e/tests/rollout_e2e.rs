//! The rollout engine on the simulator, the cases that reach into the target (restarting the
//! in-process controller, counting its writes, crash-looping pods). Steps, promote, abort and retry
//! are the e2e scenarios canary-steps and abort-retry (src/e2e, tests/e2e.rs).
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};

struct Harness {
    rollouts: Api<Rollout>,
    replica_sets: Api<ReplicaSet>,
}

impl Harness {
    /// Rollouts and ReplicaSets in `default` of the simulator.
    fn new(sim: &sluice_sim::Simulator) -> Harness {
        let client = sim.client().unwrap();
        Harness {
            rollouts: Api::namespaced(client.clone(), "default"),
            replica_sets: Api::namespaced(client, "default"),
        }
    }

    async fn rollout(&self) -> Rollout {
        self.rollouts.get("web").await.expect("rollout exists")
    }

    /// (stable replicas, canary replicas) by spec, from the ReplicaSets and the Rollout's status.
    async fn counts(&self) -> Option<(i32, i32, i32)> {
        let rollout = self.rollout().await;
        let status = rollout.status?;
        let list = self.replica_sets.list(&ListParams::default()).await.ok()?;
        let of = |hash: &Option<String>| {
            list.items
                .iter()
                .find(|rs| {
                    rs.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("sluice.dev/pod-template-hash"))
                        == hash.as_ref()
                })
                .map(|rs| {
                    (
                        rs.spec.as_ref().unwrap().replicas.unwrap_or(0),
                        rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
                    )
                })
                .unwrap_or((0, 0))
        };
        let (stable, stable_available) = of(&status.stable_rs);
        let (canary, canary_available) = if status.stable_rs == status.current_pod_hash {
            (0, 0)
        } else {
            of(&status.current_pod_hash)
        };
        Some((stable, canary, stable_available + canary_available))
    }

    async fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&Rollout, (i32, i32, i32)) -> bool) {
        eventually(timeout, what, || async {
            let rollout = self.rollout().await;
            let counts = self.counts().await?;
            check(&rollout, counts).then_some(())
        })
        .await;
    }

    async fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        self.rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
}

fn at_step(rollout: &Rollout, step: i32) -> bool {
    rollout.status.as_ref().and_then(|s| s.current_step_index) == Some(step)
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_mid_rollout_resumes_without_rescaling() {
    let sim = start_sim().await;
    install_crds(&sim);
    let harness = Harness::new(&sim);
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::pause_for("2s"),
        CanaryStep::set_weight(50),
        CanaryStep::pause(),
        CanaryStep::set_weight(80),
    ];
    let rollout = Rollout::example("web", 10, steps);
    harness.rollouts.create(&PostParams::default(), &rollout).await.unwrap();
    let mut controller = RunningController::start(&sim, None).await;
    let long = Duration::from_secs(30);

    harness
        .wait_for("v1 healthy at full scale", long, |r, c| {
            phase(r) == Some(RolloutPhase::Healthy) && c == (10, 0, 10)
        })
        .await;

    // v2: 20% → timed pause → 50% → open pause.
    harness.set_image("example.com/web:2").await;
    harness
        .wait_for("50% after the 2s pause, waiting at the open pause", long, |r, c| {
            at_step(r, 3) && (c.0, c.1) == (5, 5) && phase(r) == Some(RolloutPhase::Paused)
        })
        .await;
    // A controller restart mid-rollout resumes at the same step without extra scaling.
    let writes_before = scale_writes(&sim);
    controller.stop().await;
    controller = RunningController::start(&sim, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(at_step(&harness.rollout().await, 3));
    assert_eq!(harness.counts().await.unwrap().0, 5);
    assert_eq!(
        scale_writes(&sim),
        writes_before,
        "a restarted controller does not rescale"
    );

    controller.stop().await;
    sim.shutdown().await;
}

/// Writes the controller made to ReplicaSets (scaling), from the simulator's request log.
fn scale_writes(sim: &sluice_sim::Simulator) -> usize {
    sim.http
        .requests
        .snapshot()
        .iter()
        .filter(|r| r.resource == "replicasets" && r.verb == "patch")
        .count()
}

/// rollbackOnAbort without a GitSync: a canary whose pods never become ready passes the progress
/// deadline, aborts, and the controller puts the stable template back, so the Rollout is Healthy on
/// the stable revision again instead of staying Degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_abort_restores_the_stable_template() {
    let sim = start_sim().await;
    install_crds(&sim);
    let harness = Harness::new(&sim);
    let mut rollout = Rollout::example("web", 4, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    rollout.spec.progress_deadline_seconds = Some(2);
    rollout.spec.progress_deadline_abort = Some(true);
    rollout
        .spec
        .strategy
        .canary
        .get_or_insert_with(Default::default)
        .rollback_on_abort = Some(true);
    harness.rollouts.create(&PostParams::default(), &rollout).await.unwrap();
    let controller = RunningController::start(&sim, None).await;
    let long = Duration::from_secs(30);
    harness
        .wait_for("v1 healthy", long, |r, c| {
            phase(r) == Some(RolloutPhase::Healthy) && c == (4, 0, 4)
        })
        .await;
    let v1 = harness.rollout().await;
    let stable = v1.status.clone().unwrap().stable_rs.unwrap();

    // v2 crash-loops: its pods never become ready, so the step makes no progress.
    let patch = json!({"spec": {"template": {
        "metadata": {"annotations": {"sim.sluice.dev/crash": "true"}},
        "spec": {"containers": [{"name": "app", "image": "example.com/web:2"}]},
    }}});
    harness
        .rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    harness
        .wait_for("rolled back to the stable template, Healthy", long, |r, c| {
            let status = r.status.clone().unwrap_or_default();
            r.spec.template == v1.spec.template
                && status.observed_generation == r.metadata.generation
                && phase(r) == Some(RolloutPhase::Healthy)
                && status.current_pod_hash.as_deref() == Some(stable.as_str())
                && status.stable_rs.as_deref() == Some(stable.as_str())
                && c == (4, 0, 4)
        })
        .await;
    let rollout = harness.rollout().await;
    assert!(
        rollout.metadata.generation > v1.metadata.generation,
        "the template changed twice"
    );
    let status = rollout.status.unwrap();
    assert_eq!(status.canary_weight, Some(0));
    let canary: Vec<ReplicaSet> = harness
        .replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| rs.metadata.name.as_deref() != Some(format!("web-{stable}").as_str()))
        .collect();
    assert!(
        canary.iter().all(|rs| rs.spec.as_ref().unwrap().replicas == Some(0)),
        "the canary is at 0"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(sim.client().unwrap(), "default");
    eventually(
        long,
        "ProgressDeadlineExceeded, RolloutAborted and RolledBackOnAbort events",
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let seen = |reason: &str| list.items.iter().any(|e| e.reason.as_deref() == Some(reason));
            (seen("ProgressDeadlineExceeded") && seen("RolloutAborted") && seen("RolledBackOnAbort")).then_some(())
        },
    )
    .await;
    // As deploy/'s ServiceAccount on the RBAC-enforcing simulator: the restore (a patch of the Rollout's
    // spec) was granted, and no call was refused.
    controller.stop().await;
    sim.shutdown().await;
}

/// Issue 13: pause durations the schema lets through but no clock can add (they used to panic the
/// planner and kill the Rollout controller task). Each Rollout, healthy, gets one as a new canary's
/// pause: it must end InvalidSpec naming the step's pause.duration with no canary scaled, and the
/// controller must still carry another Rollout through a whole canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_past_the_maximum_are_invalid_specs_and_the_controller_keeps_working() {
    let sim = start_sim().await;
    install_crds(&sim);
    let harness = Harness::new(&sim);
    let rollouts = harness.rollouts.clone();
    let poison = ["100000000000000", "99999999999999999999s", "2562047788015216h", "8761h"];
    let steps = || vec![CanaryStep::set_weight(50), CanaryStep::pause_for("1s")];
    for i in 0..poison.len() {
        let rollout = Rollout::example(&format!("poison-{i}"), 2, steps());
        rollouts.create(&PostParams::default(), &rollout).await.unwrap();
    }
    let _controller = RunningController::start(&sim, None).await;
    let long = Duration::from_secs(30);
    for i in 0..poison.len() {
        let name = format!("poison-{i}");
        eventually(long, &format!("{name} healthy"), || async {
            let rollout = rollouts.get(&name).await.ok()?;
            (phase(&rollout) == Some(RolloutPhase::Healthy)).then_some(())
        })
        .await;
    }

    // Given healthy Rollouts, when a new version comes with a poisoned pause …
    for (i, duration) in poison.iter().enumerate() {
        let patch = json!({"spec": {
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": duration}}]}},
            "template": {"spec": {"containers": [{"name": "web", "image": "example.com/web:2"}]}},
        }});
        rollouts
            .patch(&format!("poison-{i}"), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("the schema accepts the grammar's shape; the controller judges the value");
    }
    // … then each is InvalidSpec at the step's pause.duration, quoting the value.
    for (i, duration) in poison.iter().enumerate() {
        let name = format!("poison-{i}");
        let message = eventually(long, &format!("{name} InvalidSpec"), || async {
            let rollout = rollouts.get(&name).await.ok()?;
            let status = rollout.status?;
            let invalid = sluice::api::conditions::find(&status.conditions, sluice::api::conditions::INVALID_SPEC)?;
            invalid.is_true().then(|| invalid.message.clone().unwrap_or_default())
        })
        .await;
        assert!(
            message.starts_with("spec.strategy.canary.steps[1].pause.duration: ")
                && message.contains(&format!("{duration:?}"))
                && message.contains(sluice::api::duration::TOO_LONG),
            "{name}: {message}"
        );
        let rollout = rollouts.get(&name).await.unwrap();
        assert_eq!(phase(&rollout), Some(RolloutPhase::Degraded), "{name}");
    }
    // No canary ReplicaSet was made for an invalid spec: each poisoned Rollout still has only its v1.
    let replica_sets = harness.replica_sets.list(&ListParams::default()).await.unwrap();
    for i in 0..poison.len() {
        let owned = replica_sets
            .items
            .iter()
            .filter(|rs| {
                rs.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("poison-{i}-")))
            })
            .count();
        assert_eq!(owned, 1, "poison-{i}: only the stable ReplicaSet");
    }

    // The controller is alive: another Rollout goes through a whole canary.
    let web = Rollout::example("web", 4, steps());
    rollouts.create(&PostParams::default(), &web).await.unwrap();
    harness
        .wait_for("web v1 healthy", long, |r, c| {
            phase(r) == Some(RolloutPhase::Healthy) && c == (4, 0, 4)
        })
        .await;
    let v1 = harness.rollout().await.status.unwrap().stable_rs;
    harness.set_image("example.com/web:2").await;
    harness
        .wait_for("web v2 promoted through setWeight and the pause", long, |r, c| {
            let status = r.status.as_ref().unwrap();
            phase(r) == Some(RolloutPhase::Healthy)
                && status.stable_rs != v1
                && status.stable_rs == status.current_pod_hash
                && c == (4, 0, 4)
        })
        .await;
}
