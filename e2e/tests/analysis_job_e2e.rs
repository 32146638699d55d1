//! Job metrics on the simulator, the controller running as deploy/'s ServiceAccount in a namespace
//! onboarded with deploy/tenant/ (which grants the Jobs): a step analysis whose Job exits 0 lets the
//! rollout finish; one whose Job exits 1 aborts it. The exit code comes from a Rollout argument,
//! substituted into the Job's pod template annotations.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{RunningController, install_crds, onboard_tenant, start_sim};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::AnalysisRun;
use sluice::api::analysis::{AnalysisPhase, AnalysisTemplate};
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice_sim::Simulator;

const LONG: Duration = Duration::from_secs(90);

/// Argo's job template shape (test/e2e/functional/analysis-template-job.yaml style), group changed.
fn job_template() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "smoke-job"},
        "spec": {
            "args": [{"name": "exit-code", "value": "0"}, {"name": "run-duration", "value": "1s"}],
            "metrics": [{
                "name": "smoke",
                "provider": {"job": {
                    "metadata": {"labels": {"team": "web"}},
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "metadata": {"annotations": {
                                "sim.sluice.dev/exit-code": "{{args.exit-code}}",
                                "sim.sluice.dev/run-duration": "{{args.run-duration}}",
                            }},
                            "spec": {
                                "containers": [{"name": "smoke", "image": "busybox", "command": ["sh", "-c", "exit {{args.exit-code}}"]}],
                                "restartPolicy": "Never",
                            },
                        },
                    },
                }},
            }],
        },
    })
}

/// A background analysis whose Job never ends on its own, and two steps.
fn background_rollout() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "strategy": {"canary": {
                "analysis": {"templates": [{"templateName": "smoke-job"}],
                             "args": [{"name": "run-duration", "value": "1h"}]},
                "steps": [{"setWeight": 50}, {"pause": {"duration": "3s"}}],
            }},
        },
    })
}

fn rollout(exit_code: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "smoke-job"}],
                              "args": [{"name": "exit-code", "value": exit_code}]}},
            ]}},
        },
    })
}

struct Scenario {
    sim: Simulator,
    controller: RunningController,
    rollouts: Api<Rollout>,
}

async fn scenario(exit_code: &str) -> Scenario {
    scenario_with(rollout(exit_code)).await
}

async fn scenario_with(rollout: Value) -> Scenario {
    let sim = start_sim().await;
    install_crds(&sim);
    onboard_tenant(&sim, "default").unwrap();
    let client = sim.client().unwrap();
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), "default");
    templates
        .create(&PostParams::default(), &serde_json::from_value(job_template()).unwrap())
        .await
        .unwrap();
    let controller = RunningController::start(&sim, None).await;
    let rollouts: Api<Rollout> = Api::namespaced(client, "default");
    rollouts
        .create(&PostParams::default(), &serde_json::from_value(rollout).unwrap())
        .await
        .unwrap();
    let s = Scenario {
        sim,
        controller,
        rollouts,
    };
    s.wait("v1 healthy", |r| phase(r) == Some(RolloutPhase::Healthy)).await;
    s
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

impl Scenario {
    async fn wait(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            if let Ok(rollout) = self.rollouts.get("web").await
                && check(&rollout)
            {
                return rollout;
            }
            if tokio::time::Instant::now() > deadline {
                let runs = self.runs().await;
                let statuses: Vec<_> = runs
                    .iter()
                    .map(|r| (r.metadata.name.clone(), r.status.clone()))
                    .collect();
                panic!(
                    "timed out waiting for {what}: rollout {:#?}\nruns {statuses:#?}",
                    self.rollouts.get("web").await.ok().and_then(|r| r.status)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an AnalysisRun to end in `phase`, and returns it.
    async fn wait_run(&self, phase: AnalysisPhase) -> AnalysisRun {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let runs = self.runs().await;
            if let Some(run) = runs
                .iter()
                .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(phase))
            {
                return run.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no {phase:?} run: {runs:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn runs(&self) -> Vec<AnalysisRun> {
        let runs: Api<AnalysisRun> = Api::namespaced(self.sim.client().unwrap(), "default");
        runs.list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    async fn jobs(&self) -> Vec<Job> {
        let jobs: Api<Job> = Api::namespaced(self.sim.client().unwrap(), "default");
        let params = ListParams::default().labels("sluice.dev/metric=smoke");
        jobs.list(&params).await.unwrap().items
    }

    async fn deploy_v2(&self) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
        self.rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn finish(self) {
        self.controller.stop().await;
        self.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exits_0_passes_the_analysis_step() {
    let s = scenario("0").await;
    s.deploy_v2().await;
    let run = s.wait_run(AnalysisPhase::Successful).await;
    s.wait("v2 promoted", |r| {
        let status = r.status.as_ref();
        let promoted = status.is_some_and(|st| st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash);
        phase(r) == Some(RolloutPhase::Healthy) && promoted
    })
    .await;
    let status = run.status.as_ref().unwrap();
    let result = &status.metric_results[0];
    assert_eq!((result.count, result.successful), (1, 1), "{result:#?}");
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1, "one Job per measurement, even across reconciles");
    let job = &jobs[0];
    assert_eq!(
        result.measurements[0].metadata.get("job-name"),
        job.metadata.name.as_ref()
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid)),
        ("AnalysisRun", run.metadata.uid.as_ref())
    );
    assert_eq!(job.metadata.labels.as_ref().unwrap()["team"], "web");
    let annotations = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref();
    assert_eq!(
        annotations.unwrap()["sim.sluice.dev/exit-code"],
        "0",
        "the argument was substituted"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exits_1_aborts_the_rollout() {
    let s = scenario("1").await;
    s.deploy_v2().await;
    let aborted = s.wait("aborted", |r| phase(r) == Some(RolloutPhase::Degraded)).await;
    let status = aborted.status.unwrap();
    assert!(status.aborted_at.is_some() || status.message.is_some(), "{status:#?}");
    let runs = s.runs().await;
    let run = runs
        .iter()
        .find(|r| r.status.as_ref().and_then(|st| st.phase) == Some(AnalysisPhase::Failed));
    let run = run.unwrap_or_else(|| panic!("a Failed run: {runs:#?}"));
    let measurement = &run.status.as_ref().unwrap().metric_results[0].measurements[0];
    let message = measurement.message.as_deref().unwrap_or_default();
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_job_of_a_terminated_background_run_is_deleted() {
    let s = scenario_with(background_rollout()).await;
    s.deploy_v2().await;
    let deadline = tokio::time::Instant::now() + LONG;
    while s.jobs().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Job started: {:#?}",
            s.runs().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.wait("v2 promoted", |r| {
        let status = r.status.as_ref();
        let promoted = status.is_some_and(|st| st.stable_rs.is_some() && st.stable_rs == st.current_pod_hash);
        phase(r) == Some(RolloutPhase::Healthy) && promoted
    })
    .await;
    // The rollout completed: the background run is terminated and its still-running Job deleted.
    let run = s.wait_run(AnalysisPhase::Successful).await;
    let measurement = &run.status.as_ref().unwrap().metric_results[0].measurements[0];
    assert!(measurement.finished_at.is_some(), "{measurement:#?}");
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let jobs = s.jobs().await;
        if jobs.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the Job stayed: {jobs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.finish().await;
}
