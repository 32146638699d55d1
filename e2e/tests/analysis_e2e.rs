//! Metric-gated rollouts on the simulator, the cases that need to reach into the target (stopping
//! Prometheus, a query nothing matches). Pass and fail→abort are the e2e scenarios analysis-pass and
//! analysis-fail (src/e2e, tests/e2e.rs).
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{Prometheus, RunningController, install_crds, start_sim};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisTemplate;
use sluice::api::rollout::{PauseReason, Rollout, RolloutPhase};
use sluice_sim::Simulator;

const LONG: Duration = Duration::from_secs(90);

/// Success rate of the canary's pods behind Service `web`, as Argo users write it.
fn success_rate_template(name: &str, query_service: &str, consecutive_error_limit: i32) -> Value {
    let selector =
        format!(r#"namespace="default",service="{query_service}",pod_template_hash="{{{{args.canary-hash}}}}""#);
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {
            "args": [{"name": "canary-hash"}],
            "metrics": [{
                "name": "success-rate",
                "initialDelay": "5s", "interval": "2s", "count": 3,
                "consecutiveErrorLimit": consecutive_error_limit,
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {
                    "address": "",
                    "timeout": "3s",
                    "query": format!(r#"sum(rate(sim_http_requests_total{{{selector},code!~"5.."}}[6s])) / sum(rate(sim_http_requests_total{{{selector}}}[6s]))"#),
                }},
            }],
        },
    })
}

fn rollout(template: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": template}],
                              "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}},
                {"setWeight": 75},
            ]}},
        },
    })
}

struct Scenario {
    sim: Simulator,
    prometheus: Option<Prometheus>,
    controller: RunningController,
    rollouts: Api<Rollout>,
}

async fn scenario(template: Value) -> Scenario {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "100"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &serde_json::from_value(service).unwrap())
        .await
        .unwrap();
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), "default");
    let name = template["metadata"]["name"].as_str().unwrap().to_string();
    templates
        .create(&PostParams::default(), &serde_json::from_value(template).unwrap())
        .await
        .unwrap();
    let prometheus = Prometheus::start(&[("sim", sim.addr.to_string(), "/sim/metrics")]).await;
    let controller = RunningController::start(&sim, Some(prometheus.address.clone())).await;
    let rollouts: Api<Rollout> = Api::namespaced(client, "default");
    rollouts
        .create(&PostParams::default(), &serde_json::from_value(rollout(&name)).unwrap())
        .await
        .unwrap();
    let scenario = Scenario {
        sim,
        prometheus: Some(prometheus),
        controller,
        rollouts,
    };
    scenario
        .wait("v1 healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await;
    scenario
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

impl Scenario {
    async fn rollout(&self) -> Rollout {
        self.rollouts.get("web").await.unwrap()
    }

    /// Waits for `check`; on timeout the failure shows the rollout's and the runs' status.
    async fn wait(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            if let Ok(rollout) = self.rollouts.get("web").await
                && check(&rollout)
            {
                return rollout;
            }
            if tokio::time::Instant::now() > deadline {
                let runs: Api<sluice::api::AnalysisRun> = Api::namespaced(self.sim.client().unwrap(), "default");
                let runs = runs
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let statuses: Vec<_> = runs
                    .iter()
                    .map(|r| (r.metadata.name.clone(), r.status.clone()))
                    .collect();
                panic!(
                    "timed out waiting for {what}: rollout {:#?}\nruns {statuses:#?}",
                    self.rollout().await.status
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deploys v2 with the given error rate (annotations on the pod template drive the simulator).
    async fn deploy_v2(&self, error_rate: &str) {
        let patch = json!({"spec": {"template": {
            "metadata": {"annotations": {"sim.sluice.dev/error-rate": error_rate}},
            "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
        self.rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn finish(self) {
        self.controller.stop().await;
        drop(self.prometheus);
        self.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_going_away_mid_analysis_is_an_error_and_an_abort_never_a_promotion() {
    let mut s = scenario(success_rate_template("success-rate", "web", 0)).await;
    s.deploy_v2("0").await;
    s.wait("analysis step reached", |r| {
        r.status.as_ref().and_then(|st| st.current_step_index) == Some(1)
    })
    .await;
    drop(s.prometheus.take()); // before initialDelay ends: every measurement fails to connect
    let aborted = s
        .wait("aborted on analysis error", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await;
    let message = aborted.status.unwrap().message.unwrap();
    assert!(message.contains("errored"), "{message}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_pauses_the_rollout_as_inconclusive() {
    // A Service name nothing sends traffic to: the query matches no series.
    let s = scenario(success_rate_template("quiet", "nobody", 4)).await;
    s.deploy_v2("0").await;
    let paused = s
        .wait("paused as inconclusive", |r| phase(r) == Some(RolloutPhase::Paused))
        .await;
    let status = paused.status.unwrap();
    assert!(
        status
            .pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun),
        "{:?}",
        status.pause_conditions
    );
    assert_eq!(status.current_step_index, Some(1), "no promotion on missing evidence");
    s.finish().await;
}
