//! `sluice demo` end to end (simulator, a real Prometheus, a real Git repository, the controller):
//! the demo checks its own story and fails when it did not happen as told; this runs it.
use std::path::PathBuf;

use sluice_e2e::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tells_the_gitops_story() {
    let outcome = run(DemoOptions {
        keep: false,
        prometheus: std::env::var_os("SLUICE_PROMETHEUS").map(PathBuf::from),
        stages: false,
    })
    .await
    .expect("the demo's story happened as told");
    assert!(
        outcome.v1 != outcome.v2 && outcome.v2 != outcome.v3,
        "three commits: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stages_demo_promotes_on_evidence_and_stops_a_bad_commit_in_dev() {
    let outcome = sluice_e2e::demo::stages::run(DemoOptions {
        keep: false,
        prometheus: std::env::var_os("SLUICE_PROMETHEUS").map(PathBuf::from),
        stages: true,
    })
    .await
    .expect("the stages demo's story happened as told");
    assert!(
        outcome.v1 != outcome.v2 && outcome.v2 != outcome.v3,
        "three commits: {outcome:?}"
    );
}
