//! Hostile metric answers and conditions against the running controller: a web metric answering
//! megabytes must end the run without making the AnalysisRun too big to write, and a condition that
//! would evaluate for hours must end as Error while the controller stays responsive.
use sluice_e2e::kit as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{RunningController, eventually, install_crds, start_sim};
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::bounds::MAX_STATUS_BYTES;

const LONG: Duration = Duration::from_secs(60);

/// A body of `bytes` bytes: `{"data": {"blob": "xxx…"}}`.
fn blob(bytes: usize) -> String {
    let overhead = r#"{"data": {"blob": ""}}"#.len();
    format!(r#"{{"data": {{"blob": "{}"}}}}"#, "x".repeat(bytes - overhead))
}

/// A web metric server on 127.0.0.1: `/huge` answers 2 MiB of JSON, `/big` 900 KiB (under the
/// response limit), `/ok` a small number.
async fn metric_server() -> String {
    let huge = blob(2 * 1024 * 1024);
    let big = blob(900 * 1024);
    let app = axum::Router::new()
        .route("/huge", axum::routing::get(move || async move { huge }))
        .route("/big", axum::routing::get(move || async move { big }))
        .route("/ok", axum::routing::get(|| async { r#"{"v": 1}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A single-measurement web metric whose first Error ends it (consecutiveErrorLimit 0).
fn run(name: &str, url: &str, json_path: &str, success_condition: &str) -> AnalysisRun {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"metrics": [{
            "name": "m",
            "consecutiveErrorLimit": 0,
            "successCondition": success_condition,
            "provider": {"web": {"url": url, "jsonPath": json_path}},
        }]},
    }))
    .unwrap()
}

async fn completed(runs: &Api<AnalysisRun>, name: &str) -> AnalysisRun {
    eventually(LONG, &format!("AnalysisRun {name} completed"), || async {
        runs.get(name).await.ok().filter(|run| {
            run.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(AnalysisPhase::is_completed)
        })
    })
    .await
}

fn size(run: &AnalysisRun) -> usize {
    serde_json::to_vec(run).unwrap().len()
}

fn measurement_message(run: &AnalysisRun) -> String {
    let status = run.status.as_ref().unwrap();
    let measurement = status.metric_results[0].measurements.last().unwrap();
    measurement.message.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_metric_answering_megabytes_ends_the_run_and_the_run_stays_small() {
    let sim = start_sim().await;
    install_crds(&sim);
    let controller = RunningController::start(&sim, None).await;
    let base = metric_server().await;
    let runs: Api<AnalysisRun> = Api::namespaced(sim.client().unwrap(), "default");

    // 2 MiB: refused while reading, an Error measurement; consecutiveErrorLimit 0 ends the run.
    runs.create(
        &PostParams::default(),
        &run("huge", &format!("{base}/huge"), "$.data.blob", "size(result) > 0"),
    )
    .await
    .unwrap();
    let huge = completed(&runs, "huge").await;
    let status = huge.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Error), "{status:#?}");
    let message = measurement_message(&huge);
    assert!(message.contains("response body exceeds 1 MiB"), "{message}");
    assert!(size(&huge) < MAX_STATUS_BYTES, "AnalysisRun of {} bytes", size(&huge));

    // 900 KiB: read and judged whole (the condition sees every byte), stored cut to 4 KiB.
    runs.create(
        &PostParams::default(),
        &run("big", &format!("{base}/big"), "$.data.blob", "size(result) > 900000"),
    )
    .await
    .unwrap();
    let big = completed(&runs, "big").await;
    let status = big.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    let value = status.metric_results[0].measurements[0].value.as_deref().unwrap();
    assert!(value.len() <= 4096, "value stored with {} bytes", value.len());
    assert!(
        value.ends_with("…[truncated, 921580 bytes]"),
        "{}",
        &value[value.len() - 40..]
    );
    assert!(size(&big) < MAX_STATUS_BYTES, "AnalysisRun of {} bytes", size(&big));
    eprintln!(
        "AnalysisRun sizes: 2 MiB answer {} bytes, 900 KiB answer {} bytes",
        size(&huge),
        size(&big)
    );

    controller.stop().await;
    sim.shutdown().await;
}

/// Nested `exists` over ten-element lists, eight deep, whose innermost test is never true: 10^8
/// evaluations of the innermost test (minutes with the `cel` crate) unless it is cut short.
fn expensive_condition() -> String {
    let list = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
    let variables = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut condition = format!("{} < 0", variables.join(" + "));
    for variable in variables.iter().rev() {
        condition = format!("{list}.exists({variable}, {condition})");
    }
    format!("result == 1.0 && {condition}")
}

/// Polls `/healthz` every 50 ms until stopped; returns the slowest answer.
fn watch_health(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                client.get(format!("http://{addr}/healthz")).send(),
            )
            .await;
            let took = started.elapsed();
            assert!(
                matches!(&answer, Ok(Ok(response)) if response.status().is_success()),
                "/healthz failed: {answer:?}"
            );
            slowest = slowest.max(took);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expensive_condition_ends_as_error_and_the_controller_stays_responsive() {
    let sim = start_sim().await;
    install_crds(&sim);
    let controller = RunningController::start(&sim, None).await;
    let base = metric_server().await;
    let runs: Api<AnalysisRun> = Api::namespaced(sim.client().unwrap(), "default");
    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(controller.metrics_addr(), stop.clone());

    // More runaway conditions than the runtime has worker threads: on the runtime they would stall it.
    let names = ["slow-1", "slow-2", "slow-3"];
    let condition = expensive_condition();
    for name in names {
        runs.create(
            &PostParams::default(),
            &run(name, &format!("{base}/ok"), "$.v", &condition),
        )
        .await
        .unwrap();
    }
    for name in names {
        let done = completed(&runs, name).await;
        let status = done.status.as_ref().unwrap();
        assert_eq!(status.phase, Some(AnalysisPhase::Error), "{name}: {status:#?}");
        let message = measurement_message(&done);
        assert!(message.contains("budget"), "{name}: {message}");
    }

    stop.store(true, Ordering::SeqCst);
    let slowest = health.await.unwrap();
    eprintln!("slowest /healthz answer while conditions ran: {slowest:?}");
    // Well under a second: evaluated on the runtime, each condition would stall a worker for its whole
    // 1 s budget (measured: /healthz then took 950 ms; here about 50 ms).
    assert!(slowest < Duration::from_millis(500), "/healthz took {slowest:?}");

    controller.stop().await;
    sim.shutdown().await;
}
