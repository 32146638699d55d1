//! The end-to-end scenarios of `sluice e2e` (src/e2e) on their default target: the simulator, a
//! real Prometheus and the controller in-process. One test per scenario, each with its own target,
//! so they run in parallel; `sluice e2e` runs the same code against a real cluster.
use sluice_e2e::scenarios::{RunOptions, SimOptions, SimTarget, Verdict};

async fn run(name: &str) {
    let target = SimTarget::start(SimOptions::default())
        .await
        .expect("simulator, Prometheus (scripts/install-tools.sh) and controller start");
    let scenario = sluice_e2e::scenarios::select(&[name.to_string()]).unwrap().remove(0);
    let outcome = sluice_e2e::scenarios::run_one(&target, &scenario, &RunOptions::default()).await;
    // The controller runs as deploy/'s ServiceAccount: every call it made was granted — except that
    // deleting the scenario's namespace takes the namespace's grant to act as its `deployer` away in
    // no set order, so a GitSync's cleanup may meet a refused impersonation before it sees the grant
    // is gone (it then leaves what it applied in place, as the README says).
    let teardown = format!(" as system:serviceaccount:{}:deployer ", outcome.namespace);
    let denied: Vec<String> = sluice_e2e::kit::denied_to_controller(&target.sim.url())
        .await
        .into_iter()
        .filter(|call| !call.contains(&teardown))
        .collect();
    target.stop().await;
    assert!(
        denied.is_empty(),
        "calls deploy/'s RBAC refused the controller: {denied:#?}"
    );
    assert_eq!(outcome.verdict, Verdict::Pass, "{outcome:#?}");
    assert!(
        outcome.notes.is_empty(),
        "the simulator checks everything: {:?}",
        outcome.notes
    );
}

const TESTED: [&str; 23] = [
    "canary-steps",
    "abort-retry",
    "analysis-pass",
    "analysis-fail",
    "gateway-api",
    "header-route",
    "experiment-step",
    "experiment-fail",
    "baseline-vs-canary",
    "canary-metadata",
    "workload-ref",
    "blue-green-promote",
    "blue-green-auto",
    "blue-green-pre-analysis-fail",
    "blue-green-post-analysis-fail",
    "blue-green-abort",
    "gitsync-rollback",
    "gitsync-stages",
    "gitsync-depends-on",
    "gitsync-app-of-apps",
    "experiment-duration",
    "experiment-analysis-fail",
    "experiment-terminate",
];

#[test]
fn every_scenario_has_a_test() {
    let names: Vec<_> = sluice_e2e::scenarios::scenarios().iter().map(|s| s.name).collect();
    assert_eq!(names, TESTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_steps() {
    run("canary-steps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_retry() {
    run("abort-retry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_pass() {
    run("analysis-pass").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_fail() {
    run("analysis-fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api() {
    run("gateway-api").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_route() {
    run("header-route").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_step() {
    run("experiment-step").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_fail() {
    run("experiment-fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_vs_canary() {
    run("baseline-vs-canary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsync_rollback() {
    run("gitsync-rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsync_stages() {
    run("gitsync-stages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsync_depends_on() {
    run("gitsync-depends-on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsync_app_of_apps() {
    run("gitsync-app-of-apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_ref() {
    run("workload-ref").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_metadata() {
    run("canary-metadata").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_promote() {
    run("blue-green-promote").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_auto() {
    run("blue-green-auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_pre_analysis_fail() {
    run("blue-green-pre-analysis-fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_post_analysis_fail() {
    run("blue-green-post-analysis-fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_abort() {
    run("blue-green-abort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_duration() {
    run("experiment-duration").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_analysis_fail() {
    run("experiment-analysis-fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_terminate() {
    run("experiment-terminate").await;
}
