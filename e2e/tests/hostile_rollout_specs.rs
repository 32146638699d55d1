//! Hostile blue-green and workloadRef values, sent through the API server as a user would, against a
//! controller running as deploy/'s ServiceAccount: numbers out of range are refused by the CRD's schema;
//! each value the schema lets through ends InvalidSpec naming
//! its field path (condition and Warning event), nothing is scaled for it, no call is refused, and the
//! controller still carries another Rollout through a canary.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::conditions::{INVALID_SPEC, find};
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
        let rollout: Rollout = serde_json::from_value(object).unwrap();
        match rollouts.create(&PostParams::default(), &rollout).await {
            Err(kube::Error::Api(status)) => assert!(
                status.code == 422 && status.message.contains(field),
                "{field}: {status:?}"
            ),
            other => panic!("{field}: the schema should refuse it, got {other:?}"),
        }
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
        let rollout = rollouts.get(name).await.unwrap();
        assert_eq!(
            rollout.status.and_then(|s| s.phase),
            Some(RolloutPhase::Degraded),
            "{name}"
        );
    }
    // A Warning event names each, and nothing was scaled for any of them.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warned = eventually(LONG, "an InvalidSpec event per Rollout", || async {
        let events = events.list(&ListParams::default()).await.ok()?.items;
        let warned: Vec<String> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .filter_map(|e| e.regarding.as_ref()?.name.clone())
            .collect();
        cases
            .iter()
            .all(|(name, _, _)| warned.iter().any(|w| w == name))
            .then_some(warned)
    })
    .await;
    assert!(!warned.is_empty());
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let made = replica_sets.list(&ListParams::default()).await.unwrap().items;
    assert!(
        made.is_empty(),
        "no ReplicaSet for an invalid spec: {:?}",
        made.iter().map(|rs| rs.metadata.name.clone()).collect::<Vec<_>>()
    );

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
