//! The controller survives its own bugs and forgets what it deleted: a reconcile that panics fails only
//! its object, a controller task that ends fails /healthz, and deleted objects leave no per-object state.
//! Panics are injected with the `faults.sluice.dev/panic` annotation (feature `fault-injection`).
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::analysis::AnalysisRun;
use sluice::api::gitsync::GitSync;
use sluice::api::keys::FAULT_PANIC_ANNOTATION;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};
use sluice::controller::faults::{PANIC_IN_CONTROLLER, PANIC_IN_RECONCILE};
use sluice::controller::gitsync::GitSyncConfig;
use sluice::controller::isolate::PANICKED_REASON;

const LONG: Duration = Duration::from_secs(30);

fn rollout(name: &str) -> Rollout {
    Rollout::example(name, 2, vec![CanaryStep::set_weight(50)])
}

fn with_fault<K: kube::Resource>(mut object: K, fault: &str) -> K {
    object
        .meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(FAULT_PANIC_ANNOTATION.into(), fault.into());
    object
}

async fn is_healthy(rollouts: &Api<Rollout>, name: &str) -> Option<()> {
    let rollout = rollouts.get(name).await.ok()?;
    (rollout.status?.phase == Some(RolloutPhase::Healthy)).then_some(())
}

/// `GET path` on the controller's endpoints: status and body.
async fn get(controller: &RunningController, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", controller.metrics_addr()))
        .await
        .expect("the endpoints answer");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the series `series` (name and labels exactly as rendered) in `/metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reconcile_fails_only_its_object_and_is_counted() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    rollouts
        .create(&post, &with_fault(rollout("poisoned"), PANIC_IN_RECONCILE))
        .await
        .unwrap();
    rollouts.create(&post, &rollout("web")).await.unwrap();
    let run = with_fault(AnalysisRun::example("poisoned-run", vec![]), PANIC_IN_RECONCILE);
    runs.create(&post, &run).await.unwrap();
    let controller = RunningController::start(&sim, None).await;

    eventually(LONG, "the healthy rollout to progress", || is_healthy(&rollouts, "web")).await;
    let metrics = eventually(LONG, "the panics to be counted", || async {
        let (_, metrics) = get(&controller, "/metrics").await;
        let counted = |series| sample(&metrics, series).is_some_and(|n| n >= 1.0);
        (counted(r#"sluice_reconcile_panics_total{controller="rollout"}"#)
            && counted(r#"sluice_reconcile_panics_total{controller="analysisrun"}"#))
        .then_some(metrics)
    })
    .await;
    assert!(
        sample(
            &metrics,
            r#"sluice_reconcile_errors_total{controller="rollout",error="panic"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "a panic is a failed reconcile too (the error policy backs it off): {metrics}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually(LONG, "a ReconcilePanicked event on the poisoned rollout", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(PANICKED_REASON)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("poisoned")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event.note.as_deref().unwrap_or_default().contains("fault injected"),
        "the note carries the panic message: {event:?}"
    );
    assert_eq!(get(&controller, "/healthz").await, (200, "ok".to_string()));

    // Without the poison the same object reconciles again: the panic cost it one backoff, not its controller.
    let cured = json!({"metadata": {"annotations": {FAULT_PANIC_ANNOTATION: null}}});
    rollouts
        .patch("poisoned", &PatchParams::default(), &Patch::Merge(&cured))
        .await
        .unwrap();
    eventually(LONG, "the cured rollout to progress", || {
        is_healthy(&rollouts, "poisoned")
    })
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_task_that_ends_fails_healthz_naming_it() {
    let sim = start_sim().await;
    install_crds(&sim);
    let rollouts: Api<Rollout> = Api::namespaced(sim.client().unwrap(), "default");
    let controller = RunningController::start(&sim, None).await;
    assert_eq!(get(&controller, "/healthz").await, (200, "ok".to_string()));

    rollouts
        .create(
            &PostParams::default(),
            &with_fault(rollout("fatal"), PANIC_IN_CONTROLLER),
        )
        .await
        .unwrap();
    let (status, body) = eventually(LONG, "/healthz to fail", || async {
        let answer = get(&controller, "/healthz").await;
        (answer.0 != 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 503);
    // kube-runtime runs each reconcile in a task of its own and re-raises its panic in the
    // controller's task, so the message wraps the injected one.
    assert!(
        body.starts_with("controller rollout panicked outside a reconcile:") && body.contains("fault injected"),
        "{body}"
    );
    controller.stop().await;
}

/// The per-object memories that hold something.
fn non_empty(sizes: Vec<(&'static str, usize)>) -> Vec<(&'static str, usize)> {
    sizes.into_iter().filter(|(_, n)| *n > 0).collect()
}

fn size_of(controller: &RunningController, what: &str) -> usize {
    let sizes = controller.per_object_sizes();
    sizes
        .iter()
        .find(|(name, _)| *name == what)
        .map(|(_, n)| *n)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_leave_no_per_object_state() {
    const ROLLOUTS: usize = 5;
    const RUNS: usize = 3;
    const GITSYNCS: usize = 2;
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), "default");
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), "default");
    let cache = tempfile::tempdir().unwrap();
    let config = GitSyncConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        allow_file_repos: true,
        ..GitSyncConfig::default()
    };
    let controller = RunningController::start_with(&sim, None, config).await;
    let post = PostParams::default();
    for i in 0..ROLLOUTS {
        rollouts.create(&post, &rollout(&format!("web-{i}"))).await.unwrap();
    }
    for i in 0..RUNS {
        runs.create(&post, &AnalysisRun::example(&format!("run-{i}"), vec![]))
            .await
            .unwrap();
    }
    // Their fetch fails (no repository there), but every sync attempt is remembered all the same.
    let missing_repo = format!("file://{}/missing", cache.path().display());
    for i in 0..GITSYNCS {
        let gitsync = GitSync::example(&format!("sync-{i}"), &missing_repo, "app");
        gitsyncs.create(&post, &gitsync).await.unwrap();
    }
    for i in 0..ROLLOUTS {
        let name = format!("web-{i}");
        eventually(LONG, "every rollout healthy", || is_healthy(&rollouts, &name)).await;
    }
    eventually(LONG, "state kept for every object", || async {
        (size_of(&controller, "rollout phases") == ROLLOUTS
            && size_of(&controller, "analysis run phases") == RUNS
            && size_of(&controller, "last syncs") == GITSYNCS)
            .then_some(())
    })
    .await;

    let delete = DeleteParams::default();
    for i in 0..ROLLOUTS {
        rollouts.delete(&format!("web-{i}"), &delete).await.unwrap();
    }
    for i in 0..RUNS {
        runs.delete(&format!("run-{i}"), &delete).await.unwrap();
    }
    for i in 0..GITSYNCS {
        gitsyncs.delete(&format!("sync-{i}"), &delete).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (_, metrics) = get(&controller, "/metrics").await;
        let series: Vec<&str> = metrics
            .lines()
            .filter(|line| {
                ["web-", "run-", "sync-"]
                    .iter()
                    .any(|name| line.contains(&format!("=\"{name}")))
            })
            .collect();
        let held = non_empty(controller.per_object_sizes());
        if series.is_empty() && held.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deleted objects left series {series:#?} and state {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller.stop().await;
}
