//! Traffic routers against the simulator: each router writes its objects through a real kube client,
//! the simulator reports them live, and the simulated traffic splits the way a real data plane would.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{eventually, install_crds, start_sim};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{
    GatewayApiTrafficRouting, IstioDestinationRule, IstioTrafficRouting, IstioVirtualService, NginxTrafficRouting,
    Rollout, SmiTrafficRouting, TrafficRouting,
};
use sluice::traffic::{RouteTarget, TrafficRouter, router_for};
use sluice_sim::Simulator;
use sluice_sim::api::WriteOptions;
use sluice_sim::traffic::{RPS_ANNOTATION, Series, Traffic};

const CANARY_HASH: &str = "c4n4ry";
const STABLE_HASH: &str = "st4bl3";

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    }
}

fn create(sim: &Simulator, group: &str, plural: &str, body: Value) {
    let rt = sim
        .api
        .resource(group, plural)
        .unwrap_or_else(|| panic!("{plural} are served"));
    sim.api.create(&rt, "default", body, &options()).expect("created");
}

fn get(sim: &Simulator, group: &str, plural: &str, name: &str) -> Option<Value> {
    let rt = sim.api.resource(group, plural)?;
    sim.api.get(&rt, "default", name).ok().map(|o| o.to_value())
}

fn install_crd(sim: &Simulator, yaml: &str) {
    let crd = sluice_sim::crds::parse(yaml).expect("YAML");
    create(sim, "apiextensions.k8s.io", "customresourcedefinitions", crd);
}

fn replica_set(hash: &str, replicas: u64) -> Value {
    let labels = json!({"app": "web", "sluice.dev/pod-template-hash": hash});
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"), "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "example.com/web:1"}]}}},
    })
}

fn service(name: &str, selector: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"selector": selector, "ports": [{"port": 80}]}})
}

/// A simulator with Sluice's CRDs, a Rollout "web" (the owner of what routers create), stable (3 pods)
/// and canary (1 pod) ReplicaSets and their Services, all pods ready; and a client of the controller.
async fn cluster(routing: TrafficRouting) -> (Simulator, kube::Client, RouteTarget) {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().expect("client");
    let rollout = Rollout::example("web", 3, vec![])
        .with_services("web-canary", "web-stable")
        .with_traffic_routing(routing);
    let rollout = Api::<Rollout>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rollout)
        .await
        .expect("rollout created");
    let mut target = RouteTarget::from_rollout(&rollout).expect("services are set");
    target.canary_hash = Some(CANARY_HASH.into());
    target.stable_hash = Some(STABLE_HASH.into());
    assert!(!target.rollout_uid.is_empty());
    create(&sim, "apps", "replicasets", replica_set(STABLE_HASH, 3));
    create(&sim, "apps", "replicasets", replica_set(CANARY_HASH, 1));
    for (name, hash) in [("web-stable", STABLE_HASH), ("web-canary", CANARY_HASH)] {
        let selector = json!({"app": "web", "sluice.dev/pod-template-hash": hash});
        create(&sim, "", "services", service(name, selector, json!({})));
    }
    eventually(Duration::from_secs(10), "4 ready pods", || {
        let ready = ["web-st4bl3", "web-c4n4ry"]
            .iter()
            .map(|rs| {
                let rs = get(&sim, "apps", "replicasets", rs);
                rs.and_then(|r| r.pointer("/status/readyReplicas").and_then(Value::as_u64))
                    .unwrap_or(0)
            })
            .sum::<u64>();
        std::future::ready((ready == 4).then_some(()))
    })
    .await;
    // The routers run in the controller: they call the API as deploy/'s ServiceAccount.
    let controller = kube::Client::try_from(common::controller_kube_config(&sim).await.expect("controller config"))
        .expect("controller client");
    (sim, controller, target)
}

fn router(routing: TrafficRouting) -> Box<dyn TrafficRouter> {
    router_for(&routing).expect("a router is configured")
}

/// Sets the weight, then waits until the router reports it live.
async fn set_and_wait(router: &dyn TrafficRouter, client: &kube::Client, target: &RouteTarget, weight: i32) {
    router.set_weight(client, target, weight).await.expect("set_weight");
    eventually(Duration::from_secs(10), "the weight to be live", move || async move {
        let state = router.observe(client, target).await.expect("observe");
        (state.ready && state.canary_weight == Some(weight)).then_some(state)
    })
    .await;
}

/// The canary's share (percent) of the requests `services` (canary, stable) serve over 10 simulated
/// seconds, with a traffic generator of the test's own driven by explicit ticks.
fn canary_share(sim: &Simulator, services: (&str, &str)) -> f64 {
    let traffic = Traffic::new(sim.api.clone());
    for _ in 0..10 {
        traffic.tick(Duration::from_secs(1));
    }
    let metrics = traffic.metrics.lock().unwrap();
    let served = |service: &str, hash: &str| {
        let series = Series {
            namespace: "default".into(),
            service: service.into(),
            pod_template_hash: hash.into(),
            mirrored: false,
        };
        metrics.requests(&series, 200)
    };
    let canary = served(services.0, CANARY_HASH) as f64;
    let stable = served(services.1, STABLE_HASH) as f64;
    assert!(canary + stable >= 1000.0, "too few requests: {canary} + {stable}");
    100.0 * canary / (canary + stable)
}

fn assert_share(share: f64, expected: f64) {
    assert!(
        (share - expected).abs() <= 5.0,
        "canary share {share}%, expected {expected}% ± 5"
    );
}

#[tokio::test]
async fn gateway_api_router_moves_route_traffic() {
    let routing = TrafficRouting {
        gateway_api: Some(GatewayApiTrafficRouting {
            http_route: Some("web".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (sim, client, target) = cluster(routing.clone()).await;
    install_crd(&sim, sluice_sim::crds::HTTPROUTE);
    let router = router(routing);

    // No route yet: check names the field.
    let errors = router.check(&client, &target).await.expect("check");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].field,
        "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute"
    );

    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "annotations": {RPS_ANNOTATION: "200"}},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.example.com"],
            "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0},
            ]}],
        },
    });
    create(&sim, "gateway.networking.k8s.io", "httproutes", route);
    assert_eq!(router.check(&client, &target).await.expect("check"), vec![]);

    set_and_wait(router.as_ref(), &client, &target, 30).await;
    let live = get(&sim, "gateway.networking.k8s.io", "httproutes", "web").unwrap();
    assert_eq!(
        live["spec"]["hostnames"],
        json!(["web.example.com"]),
        "other fields are kept"
    );
    assert_eq!(live["spec"]["rules"][0]["backendRefs"][0]["port"], 80);
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"sluice"), "{managers:?}");
    assert_share(canary_share(&sim, ("web-canary", "web-stable")), 30.0);

    // Idempotent: the same weight writes nothing.
    let version = live["metadata"]["resourceVersion"].clone();
    router.set_weight(&client, &target, 30).await.expect("set_weight");
    let again = get(&sim, "gateway.networking.k8s.io", "httproutes", "web").unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], version);

    // Abort: everything back on stable.
    set_and_wait(router.as_ref(), &client, &target, 0).await;
    assert_share(canary_share(&sim, ("web-canary", "web-stable")), 0.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn smi_router_splits_the_root_service() {
    let routing = TrafficRouting {
        smi: Some(SmiTrafficRouting {
            root_service: Some("web".into()),
            traffic_split_name: None,
        }),
        ..Default::default()
    };
    let (sim, client, target) = cluster(routing.clone()).await;
    install_crd(&sim, sluice_sim::crds::TRAFFICSPLIT);
    let root = service("web", json!({"app": "web"}), json!({RPS_ANNOTATION: "200"}));
    create(&sim, "", "services", root);
    let router = router(routing);
    assert_eq!(router.check(&client, &target).await.expect("check"), vec![]);
    let before = router.observe(&client, &target).await.expect("observe");
    assert_eq!((before.canary_weight, before.ready), (None, false));

    set_and_wait(router.as_ref(), &client, &target, 30).await;
    let split = get(&sim, "split.smi-spec.io", "trafficsplits", "web").expect("TrafficSplit created");
    assert_eq!(
        split["metadata"]["ownerReferences"][0]["uid"],
        target.rollout_uid.as_str()
    );
    assert_share(canary_share(&sim, ("web-canary", "web-stable")), 30.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn nginx_router_adds_a_canary_ingress() {
    let routing = TrafficRouting {
        nginx: Some(NginxTrafficRouting {
            stable_ingress: "shop".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (sim, client, target) = cluster(routing.clone()).await;
    let router = router(routing);
    let errors = router.check(&client, &target).await.expect("check");
    assert_eq!(
        errors[0].field,
        "spec.strategy.canary.trafficRouting.nginx.stableIngress"
    );

    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "annotations": {RPS_ANNOTATION: "200"}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]},
    });
    create(&sim, "networking.k8s.io", "ingresses", ingress);
    assert_eq!(router.check(&client, &target).await.expect("check"), vec![]);

    set_and_wait(router.as_ref(), &client, &target, 30).await;
    let canary = get(&sim, "networking.k8s.io", "ingresses", "shop-web-canary").expect("canary Ingress");
    assert_eq!(
        canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"],
        "true"
    );
    assert_share(canary_share(&sim, ("web-canary", "web-stable")), 30.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn istio_router_weights_subsets_it_points_at_the_hashes() {
    let routing = TrafficRouting {
        istio: Some(IstioTrafficRouting {
            virtual_service: Some(IstioVirtualService {
                name: "web".into(),
                routes: vec!["primary".into()],
            }),
            destination_rule: Some(IstioDestinationRule {
                name: "web".into(),
                canary_subset_name: "canary".into(),
                stable_subset_name: "stable".into(),
            }),
        }),
        ..Default::default()
    };
    let (sim, client, target) = cluster(routing.clone()).await;
    install_crd(&sim, sluice_sim::crds::VIRTUALSERVICE);
    install_crd(&sim, sluice_sim::crds::DESTINATIONRULE);
    create(&sim, "", "services", service("web", json!({"app": "web"}), json!({})));
    // Both subsets select every pod until Sluice points them at the hashes.
    let rule = json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": {"name": "web"},
        "spec": {"host": "web", "subsets": [
            {"name": "stable", "labels": {"app": "web"}}, {"name": "canary", "labels": {"app": "web"}}]},
    });
    create(&sim, "networking.istio.io", "destinationrules", rule);
    let vs = json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "web", "annotations": {RPS_ANNOTATION: "200"}},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]},
    });
    create(&sim, "networking.istio.io", "virtualservices", vs);
    let router = router(routing);
    assert_eq!(router.check(&client, &target).await.expect("check"), vec![]);
    assert!(
        !router.observe(&client, &target).await.expect("observe").ready,
        "subsets not on the hashes yet"
    );

    set_and_wait(router.as_ref(), &client, &target, 30).await;
    let rule = get(&sim, "networking.istio.io", "destinationrules", "web").unwrap();
    assert_eq!(rule["spec"]["host"], "web", "fields besides the subsets are kept");
    assert_eq!(
        rule["spec"]["subsets"][1]["labels"]["sluice.dev/pod-template-hash"],
        CANARY_HASH
    );
    assert_share(canary_share(&sim, ("web", "web")), 30.0);
    sim.shutdown().await;
}
