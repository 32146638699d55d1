//! A Gateway API canary end to end: the controller writes the HTTPRoute's weights step by step, the
//! simulator routes requests by them, and the measured split follows; abort drops the canary to 0 at
//! once, and completion gives the promoted version all traffic before the old ReplicaSet goes.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{RunningController, eventually, install_crds, start_sim};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice::sim::Simulator;
use sluice::sim::api::WriteOptions;

const LONG: Duration = Duration::from_secs(60);

fn create(sim: &Simulator, group: &str, plural: &str, body: Value) {
    let rt = sim
        .api
        .resource(group, plural)
        .unwrap_or_else(|| panic!("{plural} are served"));
    sim.api
        .create(
            &rt,
            "default",
            body,
            &WriteOptions {
                field_manager: "test".into(),
                ..Default::default()
            },
        )
        .expect("created");
}

/// (canary, stable) weights on the route's rule.
async fn route_weights(routes: &Api<DynamicObject>) -> Option<(i64, i64)> {
    let route = routes.get("web").await.ok()?;
    let refs = route.data.pointer("/spec/rules/0/backendRefs")?.as_array()?.clone();
    let weight = |name: &str| {
        refs.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["weight"].as_i64())
    };
    Some((weight("web-canary")?, weight("web-stable")?))
}

/// Requests served so far per backend Service, from the simulator's metrics.
async fn served(sim: &Simulator) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("{}/sim/metrics", sim.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut totals = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("sim_http_requests_total{")) {
        let service = line
            .split("service=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *totals.entry(service.to_string()).or_insert(0.0) += value;
    }
    totals
}

/// The canary's share of requests over `window`.
async fn measured_canary_share(sim: &Simulator, window: Duration) -> f64 {
    let before = served(sim).await;
    tokio::time::sleep(window).await;
    let after = served(sim).await;
    let delta = |s: &str| after.get(s).copied().unwrap_or(0.0) - before.get(s).copied().unwrap_or(0.0);
    let (canary, stable) = (delta("web-canary"), delta("web-stable"));
    canary / (canary + stable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_weights_follow_the_steps_abort_and_completion() {
    let sim = start_sim().await;
    install_crds(&sim);
    let crd: Value = serde_saphyr::from_str(include_str!("fixtures/httproute-crd.yaml")).unwrap();
    create(&sim, "apiextensions.k8s.io", "customresourcedefinitions", crd);
    for name in ["web-canary", "web-stable"] {
        create(
            &sim,
            "",
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        );
    }
    create(
        &sim,
        "gateway.networking.k8s.io",
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "200"}},
            "spec": {"parentRefs": [{"name": "gateway"}], "hostnames": ["web.example.com"], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]},
        }),
    );
    let client = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let resource = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let rollout = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
                "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                "steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}}}});
    rollouts
        .create(&PostParams::default(), &serde_json::from_value(rollout).unwrap())
        .await
        .unwrap();
    let controller = RunningController::start(&sim, None).await;
    let wait = |what: &'static str, check: fn(&Rollout) -> bool| {
        let rollouts = rollouts.clone();
        async move { eventually(LONG, what, || async { rollouts.get("web").await.ok().filter(check) }).await }
    };
    let healthy = |r: &Rollout| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy);
    let v1 = wait("v1 healthy", healthy).await.status.unwrap().stable_rs.unwrap();
    eventually(LONG, "all traffic on stable", || async {
        (route_weights(&routes).await == Some((0, 100))).then_some(())
    })
    .await;

    // v2: 30% of requests, measured, at ceil(10 × 30%) = 3 canary pods beside 10 stable ones.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let paused = wait("paused at 30%", |r| {
        r.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await;
    let v2 = paused.status.unwrap().current_pod_hash.unwrap();
    assert_eq!(route_weights(&routes).await, Some((30, 70)));
    let share = measured_canary_share(&sim, Duration::from_secs(5)).await;
    assert!(
        (share - 0.30).abs() <= 0.05,
        "measured canary share {share:.3} at weight 30"
    );
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let selector = |s: k8s_openapi::api::core::v1::Service| {
        s.spec.unwrap().selector.unwrap()["sluice.dev/pod-template-hash"].clone()
    };
    assert_eq!(selector(services.get("web-canary").await.unwrap()), v2);
    assert_eq!(selector(services.get("web-stable").await.unwrap()), v1);

    // Abort: the canary's weight is 0 at once, and requests follow.
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"abort": true}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "canary weight 0 after abort", || async {
        (route_weights(&routes).await == Some((0, 100))).then_some(())
    })
    .await;
    let share = measured_canary_share(&sim, Duration::from_secs(3)).await;
    assert!(share < 0.01, "canary still served {share:.3} of requests after abort");

    // Retry and promote through every step: completion moves the stable Service and all traffic to v2.
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"abort": null}})),
        )
        .await
        .unwrap();
    wait("back at the first pause", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.current_step_index == Some(1) && !s.is_aborted())
    })
    .await;
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"promoteFull": true}})),
        )
        .await
        .unwrap();
    let done = wait("v2 stable", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.stable_rs == s.current_pod_hash && s.phase == Some(RolloutPhase::Healthy))
    })
    .await;
    assert_eq!(done.status.unwrap().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(selector(services.get("web-stable").await.unwrap()), v2);
    assert_eq!(
        route_weights(&routes).await,
        Some((0, 100)),
        "all traffic on the promoted version"
    );
    let replica_sets = sim.api.resource("apps", "replicasets").unwrap();
    eventually(LONG, "old stable scaled down after scaleDownDelaySeconds", || async {
        let old = sim
            .api
            .get(&replica_sets, "default", &format!("web-{v1}"))
            .ok()?
            .to_value();
        (old["spec"]["replicas"] == 0).then_some(())
    })
    .await;
    controller.stop().await;
    sim.shutdown().await;
}
