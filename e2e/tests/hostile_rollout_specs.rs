//! Hostile blue-green, workloadRef, route and Experiment values, sent through the API server as a user
//! would, against a controller running as deploy/'s ServiceAccount: numbers out of range are refused by
//! the CRD's schema; each value the schema lets through ends InvalidSpec naming its field path
//! (condition and Warning event), nothing is scaled for it, no call is refused, and the controller still
//! carries another Rollout through a canary.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisPhase;
use sluice::api::conditions::{INVALID_SPEC, find};
use sluice::api::experiment::Experiment;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};

const LONG: Duration = Duration::from_secs(30);

/// A blue-green Rollout (as JSON) with `edit` applied to spec.strategy.blueGreen.
fn blue_green(name: &str, edit: Value) -> Value {
    let mut rollout = serde_json::to_value(Rollout::blue_green_example(name, 2)).unwrap();
    for (key, value) in edit.as_object().unwrap() {
        rollout["spec"]["strategy"]["blueGreen"][key] = value.clone();
    }
    rollout
}

/// A canary Rollout (as JSON) taking its template from `reference`, with its own template removed.
fn workload_ref(name: &str, reference: Value) -> Value {
    let mut rollout = serde_json::to_value(Rollout::example(name, 2, vec![CanaryStep::set_weight(50)])).unwrap();
    rollout["spec"]["workloadRef"] = reference;
    let spec = rollout["spec"].as_object_mut().unwrap();
    spec.remove("template");
    spec.remove("selector");
    rollout
}

/// The CRD's schema refuses `object` with a 422 naming `field`.
async fn expect_refused(rollouts: &Api<Rollout>, object: Value, field: &str) {
    let rollout: Rollout = serde_json::from_value(object).unwrap();
    match rollouts.create(&PostParams::default(), &rollout).await {
        Err(kube::Error::Api(status)) => assert!(
            status.code == 422 && status.message.contains(field),
            "{field}: {status:?}"
        ),
        other => panic!("{field}: the schema should refuse it, got {other:?}"),
    }
}

/// Waits for `name`'s InvalidSpec condition: its message names `field` and is bounded.
async fn expect_invalid_spec(rollouts: &Api<Rollout>, name: &str, field: &str) {
    let message = eventually(LONG, &format!("{name} InvalidSpec"), || async {
        let status = rollouts.get(name).await.ok()?.status?;
        let invalid = find(&status.conditions, INVALID_SPEC)?;
        invalid.is_true().then(|| invalid.message.clone().unwrap_or_default())
    })
    .await;
    assert!(
        message.starts_with(&format!("{field}: ")) || message.contains(&format!("; {field}: ")),
        "{name}: {message}"
    );
    assert!(
        message.len() < 2048,
        "{name}: the message is bounded ({} bytes)",
        message.len()
    );
}

/// An Experiment (as JSON) of one template `canary` (app=NAME), with `edit` applied to its spec and
/// `template_edit` to that template.
fn experiment(name: &str, edit: Value, template_edit: Value) -> Value {
    let mut template = json!({
        "name": "canary", "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": "example.com/app:1",
                                              "ports": [{"containerPort": 8080}]}]}}
    });
    for (key, value) in template_edit.as_object().unwrap() {
        template[key] = value.clone();
    }
    let mut spec = json!({"duration": "10s", "templates": [template]});
    for (key, value) in edit.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec})
}

/// Nothing was scaled for an invalid spec: no ReplicaSet but those named with one of `valid` prefixes.
async fn expect_no_replica_sets_but(client: &kube::Client, valid: &[&str]) {
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let made: Vec<String> = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|rs| rs.metadata.name)
        .filter(|name| !valid.iter().any(|prefix| name.starts_with(prefix)))
        .collect();
    assert!(made.is_empty(), "no ReplicaSet for an invalid spec: {made:?}");
}

/// Waits until each of `names` has an InvalidSpec Warning event.
async fn expect_invalid_spec_events(client: &kube::Client, names: &[&str]) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(LONG, "an InvalidSpec event per Rollout", || async {
        let events = events.list(&ListParams::default()).await.ok()?.items;
        let warned: Vec<String> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .filter_map(|e| e.regarding.as_ref()?.name.clone())
            .collect();
        names.iter().all(|name| warned.iter().any(|w| w == name)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_blue_green_and_workload_ref_values_are_invalid_specs_naming_their_field() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let deployment_ref = |kind: &str, name: &str| json!({"apiVersion": "apps/v1", "kind": kind, "name": name});
    // (name, object, the field path the InvalidSpec message must start with)
    let cases = [
        (
            "same-services",
            blue_green("same-services", json!({"previewService": "same-services-active"})),
            "spec.strategy.blueGreen.previewService",
        ),
        (
            "zero-preview",
            blue_green("zero-preview", json!({"previewReplicaCount": 0})),
            "spec.strategy.blueGreen.previewReplicaCount",
        ),
        (
            "both-strategies",
            {
                let mut both = blue_green("both-strategies", json!({}));
                both["spec"]["strategy"]["canary"] = json!({"steps": [{"setWeight": 10}]});
                both
            },
            "spec.strategy",
        ),
        (
            "statefulset-ref",
            workload_ref("statefulset-ref", deployment_ref("StatefulSet", "db")),
            "spec.workloadRef.kind",
        ),
        (
            "traversal-ref",
            workload_ref("traversal-ref", deployment_ref("Deployment", "../kube-system/x")),
            "spec.workloadRef.name",
        ),
    ];
    // Numbers out of range and oversized names never reach the controller: the CRD's schema bounds
    // them (422 naming the field).
    let refused = [
        (
            workload_ref("huge-ref", deployment_ref("Deployment", &"a".repeat(10_000))),
            "spec.workloadRef.name",
        ),
        (
            blue_green("promote-never", json!({"autoPromotionSeconds": i32::MAX})),
            "spec.strategy.blueGreen.autoPromotionSeconds",
        ),
        (
            blue_green("negative-delay", json!({"scaleDownDelaySeconds": i32::MIN})),
            "spec.strategy.blueGreen.scaleDownDelaySeconds",
        ),
    ];
    for (object, field) in refused {
        expect_refused(&rollouts, object, field).await;
    }
    for (name, object, _) in &cases {
        let rollout: Rollout = serde_json::from_value(object.clone()).unwrap();
        rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .unwrap_or_else(|e| panic!("{name}: the schema lets it through, the controller judges it: {e}"));
    }
    let controller = RunningController::start(&sim, None).await;

    for (name, _, field) in &cases {
        expect_invalid_spec(&rollouts, name, field).await;
        let rollout = rollouts.get(name).await.unwrap();
        assert_eq!(
            rollout.status.and_then(|s| s.phase),
            Some(RolloutPhase::Degraded),
            "{name}"
        );
    }
    // A Warning event names each, and nothing was scaled for any of them.
    let names: Vec<&str> = cases.iter().map(|(name, _, _)| *name).collect();
    expect_invalid_spec_events(&client, &names).await;
    expect_no_replica_sets_but(&client, &[]).await;

    // The controller is alive: another Rollout becomes Healthy.
    let web = Rollout::example("web", 2, vec![CanaryStep::set_weight(50)]);
    rollouts.create(&PostParams::default(), &web).await.unwrap();
    eventually(LONG, "web Healthy", || async {
        let rollout = rollouts.get("web").await.ok()?;
        (rollout.status?.phase == Some(RolloutPhase::Healthy)).then_some(())
    })
    .await;
    // As deploy/'s ServiceAccount on the RBAC-enforcing simulator: no call was refused.
    controller.stop().await;
    sim.shutdown().await;
}

/// A canary Rollout (as JSON) routed by `router` (a trafficRouting entry such as
/// `{"gatewayAPI": {"httpRoute": "web"}}`) with `managed` as managedRoutes and `steps`.
fn routed(name: &str, router: Value, managed: Value, steps: Value) -> Value {
    let mut rollout = serde_json::to_value(Rollout::example(name, 2, vec![])).unwrap();
    let canary = &mut rollout["spec"]["strategy"]["canary"];
    canary["canaryService"] = json!(format!("{name}-canary"));
    canary["stableService"] = json!(format!("{name}-stable"));
    let mut routing = router;
    routing["managedRoutes"] = managed;
    canary["trafficRouting"] = routing;
    canary["steps"] = steps;
    rollout
}

/// `count` managedRoutes entries named route-0, route-1, ….
fn managed_routes(count: usize) -> Value {
    (0..count).map(|i| json!({"name": format!("route-{i}")})).collect()
}

/// A setHeaderRoute step of route-0 with these `match` entries.
fn header_step(matches: Value) -> Value {
    json!([{"setHeaderRoute": {"name": "route-0", "match": matches}}])
}

/// A setMirrorRoute step of route-0: `edit` is merged into it.
fn mirror_step(edit: Value) -> Value {
    let mut step = json!({"name": "route-0", "match": [{"method": {"exact": "GET"}}]});
    for (key, value) in edit.as_object().unwrap() {
        step[key] = value.clone();
    }
    json!([{"setMirrorRoute": step}])
}

/// Hostile setHeaderRoute / setMirrorRoute / managedRoutes values: percentages out of range are
/// refused by the CRD's schema (422 naming the field); everything else ends InvalidSpec naming its
/// field path with a Warning event, the controller (as deploy/'s ServiceAccount) carries another
/// Rollout through a canary meanwhile and no call of it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_header_and_mirror_routes_are_invalid_specs_naming_their_field() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let gateway = || json!({"gatewayAPI": {"httpRoute": "web"}});
    let istio = || json!({"istio": {"virtualService": {"name": "web"}}});
    let nginx = || json!({"nginx": {"stableIngress": "web"}});
    let header = |value: Value| header_step(json!([{"headerName": "X-Canary", "headerValue": value}]));
    let step = "spec.strategy.canary.steps[0]";
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "too-many-routes",
            routed("too-many-routes", gateway(), managed_routes(17), json!([])),
            "spec.strategy.canary.trafficRouting.managedRoutes".into(),
        ),
        (
            "too-many-matches",
            routed(
                "too-many-matches",
                istio(),
                managed_routes(1),
                header_step(
                    (0..17)
                        .map(|i| json!({"headerName": format!("X-H{i}"), "headerValue": {"exact": "1"}}))
                        .collect(),
                ),
            ),
            format!("{step}.setHeaderRoute.match"),
        ),
        (
            "too-many-mirror-matches",
            routed(
                "too-many-mirror-matches",
                gateway(),
                managed_routes(1),
                mirror_step(json!({"match": (0..17).map(|_| json!({"method": {"exact": "GET"}})).collect::<Value>()})),
            ),
            format!("{step}.setMirrorRoute.match"),
        ),
        (
            "huge-header-value",
            routed(
                "huge-header-value",
                gateway(),
                managed_routes(1),
                header(json!({"exact": "v".repeat(1025)})),
            ),
            format!("{step}.setHeaderRoute.match[0].headerValue.exact"),
        ),
        (
            "regex-over-cap",
            routed(
                "regex-over-cap",
                istio(),
                managed_routes(1),
                header(json!({"regex": "(?:[a-z]{999}){999}"})),
            ),
            format!("{step}.setHeaderRoute.match[0].headerValue.regex"),
        ),
        (
            "two-value-kinds",
            routed(
                "two-value-kinds",
                gateway(),
                managed_routes(1),
                header(json!({"exact": "yes", "prefix": "y"})),
            ),
            format!("{step}.setHeaderRoute.match[0].headerValue"),
        ),
        (
            "unknown-route",
            routed(
                "unknown-route",
                gateway(),
                managed_routes(1),
                json!([{"setHeaderRoute": {"name": "nowhere", "match": [
                    {"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}}]),
            ),
            format!("{step}.setHeaderRoute.name"),
        ),
        (
            "mirror-on-nginx",
            routed("mirror-on-nginx", nginx(), managed_routes(1), mirror_step(json!({}))),
            format!("{step}.setMirrorRoute"),
        ),
    ];
    // Percentages out of range never reach the controller: the schema bounds them.
    for (name, percentage) in [
        ("percent-negative", -1),
        ("percent-101", 101),
        ("percent-max", i32::MAX),
    ] {
        let object = routed(
            name,
            gateway(),
            managed_routes(1),
            mirror_step(json!({"percentage": percentage})),
        );
        expect_refused(&rollouts, object, &format!("{step}.setMirrorRoute.percentage")).await;
    }
    for (name, object, _) in &cases {
        let rollout: Rollout = serde_json::from_value(object.clone()).unwrap();
        rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .unwrap_or_else(|e| panic!("{name}: the schema lets it through, the controller judges it: {e}"));
    }
    let controller = RunningController::start(&sim, None).await;
    // The controller keeps working beside them: another Rollout goes through a canary.
    let web = Rollout::example("web", 2, vec![CanaryStep::set_weight(50)]);
    rollouts.create(&PostParams::default(), &web).await.unwrap();

    for (name, _, field) in &cases {
        expect_invalid_spec(&rollouts, name, field).await;
    }
    let names: Vec<&str> = cases.iter().map(|(name, _, _)| *name).collect();
    expect_invalid_spec_events(&client, &names).await;
    expect_no_replica_sets_but(&client, &["web-"]).await;
    let v1 = eventually(LONG, "web Healthy", || async {
        let status = rollouts.get("web").await.ok()?.status?;
        (status.phase == Some(RolloutPhase::Healthy)).then_some(status.stable_rs)
    })
    .await;
    // Its canary: a new template goes through setWeight 50 to Healthy at the new revision.
    let v2 = rollouts.get("web").await.unwrap().with_image("web:v2");
    rollouts.replace("web", &PostParams::default(), &v2).await.unwrap();
    eventually(LONG, "web v2 Healthy", || async {
        let status = rollouts.get("web").await.ok()?.status?;
        let promoted = status.stable_rs.is_some() && status.stable_rs != v1;
        (promoted && status.phase == Some(RolloutPhase::Healthy)).then_some(())
    })
    .await;
    controller.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_experiments_end_in_error_naming_their_field() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), "default");
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let none = || json!({});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "bad-template-name",
            experiment("bad-template-name", none(), json!({"name": "Canary_1"})),
            "spec.templates[0].name",
        ),
        (
            "selector-mismatch",
            experiment(
                "selector-mismatch",
                none(),
                json!({"selector": {"matchLabels": {"app": "someone-else"}}}),
            ),
            "spec.templates[0].selector.matchLabels",
        ),
        (
            "unnamed-ports",
            experiment(
                "unnamed-ports",
                none(),
                json!({"service": {"ports": [{"port": 80}, {"port": 81}]}}),
            ),
            "spec.templates[0].service.ports[1].name",
        ),
        (
            "port-out-of-range",
            experiment(
                "port-out-of-range",
                none(),
                json!({"service": {"ports": [{"port": 70000}]}}),
            ),
            "spec.templates[0].service.ports[0].port",
        ),
        (
            "endless-duration",
            experiment("endless-duration", json!({"duration": "9999999999999h"}), none()),
            "spec.duration",
        ),
    ];
    for (name, object, _) in &cases {
        let experiment: Experiment = serde_json::from_value(object.clone()).unwrap();
        experiments
            .create(&PostParams::default(), &experiment)
            .await
            .unwrap_or_else(|e| panic!("{name}: the schema lets it through, the controller judges it: {e}"));
    }
    // The same service.ports in a Rollout's experiment step: the Rollout is refused before it creates
    // an Experiment that would fail mid-canary.
    let mut step_ports = serde_json::to_value(Rollout::example("step-ports", 1, vec![])).unwrap();
    step_ports["spec"]["strategy"]["canary"]["steps"] = json!([{"experiment": {"templates": [
        {"name": "base", "specRef": "stable", "service": {"ports": [{"port": 0}]}}]}}]);
    let step_ports: Rollout = serde_json::from_value(step_ports).unwrap();
    rollouts.create(&PostParams::default(), &step_ports).await.unwrap();

    let controller = RunningController::start(&sim, None).await;
    for (name, _, field) in &cases {
        let message = eventually(LONG, &format!("{name} Error"), || async {
            let status = experiments.get(name).await.ok()?.status?;
            let invalid = find(&status.conditions, INVALID_SPEC)?;
            (status.phase == Some(AnalysisPhase::Error) && invalid.is_true())
                .then(|| invalid.message.clone().unwrap_or_default())
        })
        .await;
        assert!(message.contains(&format!("{field}: ")), "{name}: {message}");
        assert!(message.len() < 2048, "{name}: bounded message");
    }
    expect_invalid_spec(
        &rollouts,
        "step-ports",
        "spec.strategy.canary.steps[0].experiment.templates[0].service.ports[0].port",
    )
    .await;
    let mut names: Vec<&str> = cases.iter().map(|(name, _, _)| *name).collect();
    names.push("step-ports");
    expect_invalid_spec_events(&client, &names).await;
    expect_no_replica_sets_but(&client, &[]).await;
    // A valid Experiment beside them runs: the controller (as deploy/'s ServiceAccount) is unharmed.
    let good: Experiment = serde_json::from_value(experiment("good", json!({"duration": "1s"}), none())).unwrap();
    experiments.create(&PostParams::default(), &good).await.unwrap();
    eventually(LONG, "good Successful", || async {
        let status = experiments.get("good").await.ok()?.status?;
        (status.phase == Some(AnalysisPhase::Successful)).then_some(())
    })
    .await;
    controller.stop().await;
    sim.shutdown().await;
}
