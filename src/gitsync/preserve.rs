//! The fields Sluice's rollout controller writes are not drift. Self-heal re-applies Git with a forced
//! server-side apply, and the lists the traffic routers write into (HTTPRoute rules, TrafficSplit
//! backends, VirtualService http routes, DestinationRule subsets) are atomic: applying Git's version
//! as it is would reset the canary weight in the middle of a rollout. So before applying, the live
//! values of exactly those fields are copied into Git's object; every other field stays as Git says.
//!
//! What is copied, per kind (matching entries by identity, not position, wherever there is one):
//! - Service: the `sluice.dev/pod-template-hash` selector key (here);
//! - Deployment named by a Rollout's workloadRef with scaleDown `onsuccess` or `progressively`: its
//!   `spec.replicas` (here, with [`ControllerFields`] only);
//! - the objects a traffic router writes into: what the router owns, as its rule in
//!   [`traffic::owned_fields`] says — HTTPRoute and GRPCRoute backendRef weights (`gateway_api`),
//!   TrafficSplit backend weights (`smi`), VirtualService destination weights and DestinationRule subset
//!   hashes (`istio`), canary Ingress annotations (`nginx`).
//!
//! Which weights are Sluice's: [`preserve_controller_fields`] does not know the Rollouts, so it treats
//! every rule or route with two or more backends as a canary split (a weight edited in Git for an
//! existing backend of such a rule is then not applied). [`preserve_controller_fields_with`] is exact:
//! given the [`ControllerFields`] of the Rollouts being applied, it keeps only the weights of rules
//! that route to both the canary and the stable Service of a Rollout, as the routers do.
use serde_json::Value;

use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::traffic::{self, CanarySplit, object_entry, pointer_escape};

/// The canary/stable pairs whose weights Sluice's traffic routers write, read from Rollouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerFields {
    splits: Vec<CanarySplit>,
    /// (namespace, name) of the Deployments a Rollout scales down (workloadRef.scaleDown other than
    /// never): their spec.replicas is Sluice's.
    scaled_deployments: Vec<(String, String)>,
}

impl ControllerFields {
    /// The splits of the sluice.dev Rollouts among `objects` (other objects are ignored; a Rollout
    /// without both canaryService and stableService writes no weights). `default_namespace` is used for
    /// Rollouts that set no namespace.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>, default_namespace: &str) -> Self {
        let rollouts: Vec<&Value> = objects
            .into_iter()
            .filter(|o| {
                o["kind"] == "Rollout"
                    && o["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with(&format!("{}/", crate::api::GROUP)))
            })
            .collect();
        let splits = rollouts
            .iter()
            .filter_map(|rollout| {
                let canary = rollout.pointer("/spec/strategy/canary")?;
                let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
                let rule = canary.pointer("/trafficRouting/istio/destinationRule");
                let subsets = rule.and_then(|r| Some((text(r, "/canarySubsetName")?, text(r, "/stableSubsetName")?)));
                // A subset-level split names no Service: its subsets identify the split.
                let service = |p: &str| text(canary, p).or_else(|| subsets.is_some().then(String::new));
                Some(CanarySplit {
                    namespace: text(rollout, "/metadata/namespace").unwrap_or_else(|| default_namespace.to_string()),
                    canary_service: service("/canaryService")?,
                    stable_service: service("/stableService")?,
                    subsets,
                })
            })
            .collect();
        let scaled_deployments = rollouts
            .iter()
            .filter_map(|rollout| {
                let reference = rollout.pointer("/spec/workloadRef")?;
                let scales = reference["apiVersion"] == "apps/v1"
                    && reference["kind"] == "Deployment"
                    && matches!(reference["scaleDown"].as_str(), Some("onsuccess" | "progressively"));
                let namespace = rollout.pointer("/metadata/namespace").and_then(Value::as_str);
                scales.then(|| {
                    (
                        namespace.unwrap_or(default_namespace).to_string(),
                        reference["name"].as_str().unwrap_or_default().to_string(),
                    )
                })
            })
            .collect();
        ControllerFields {
            splits,
            scaled_deployments,
        }
    }

    /// Whether a Rollout scales Deployment `name` in `namespace` (its spec.replicas is Sluice's).
    pub fn scales_deployment(&self, namespace: &str, name: &str) -> bool {
        self.scaled_deployments.iter().any(|(n, d)| n == namespace && d == name)
    }
}

/// Copies into `desired` (from Git) the live values of the fields Sluice's rollout controller owns, so
/// re-applying Git is not a traffic change. Treats every multi-backend rule as a canary split; prefer
/// [`preserve_controller_fields_with`] when the Rollouts are known.
pub fn preserve_controller_fields(desired: &mut Value, live: &Value) {
    preserve(desired, live, None);
}

/// As [`preserve_controller_fields`], but only for the rules that split traffic between the canary
/// and stable Services of the Rollouts in `fields`.
pub fn preserve_controller_fields_with(desired: &mut Value, live: &Value, fields: &ControllerFields) {
    preserve(desired, live, Some(&fields.splits));
    preserve_scaled_deployment(desired, live, fields);
}

/// Keeps the live spec.replicas of a Deployment a Rollout scales down (workloadRef.scaleDown), so
/// self-heal does not scale it back up under the Rollout. Git's value applies again once no Rollout
/// of the revision scales it.
fn preserve_scaled_deployment(desired: &mut Value, live: &Value, fields: &ControllerFields) {
    let is_deployment = desired["apiVersion"] == "apps/v1" && desired["kind"] == "Deployment";
    let namespace = live
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = live
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_deployment || !fields.scales_deployment(namespace, name) {
        return;
    }
    let Some(replicas) = live.pointer("/spec/replicas") else {
        return;
    };
    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), replicas.clone());
    }
}

/// Applies the rule of `desired`'s kind: the generic one of a Service, else the rule of the router
/// that writes into such objects, if any.
fn preserve(desired: &mut Value, live: &Value, splits: Option<&[CanarySplit]>) {
    let api_version = desired["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    let kind = desired["kind"].as_str().unwrap_or_default();
    if (group, kind) == ("", "Service") {
        preserve_service_selector(desired, live);
    } else if let Some(preserve_owned_fields) = traffic::owned_fields(group, kind) {
        preserve_owned_fields(desired, live, splits);
    }
}

/// Keeps the live `sluice.dev/pod-template-hash` key of a Service's selector.
fn preserve_service_selector(desired: &mut Value, live: &Value) {
    let pointer = format!("/spec/selector/{}", pointer_escape(POD_TEMPLATE_HASH_LABEL));
    let Some(hash) = live.pointer(&pointer) else { return };
    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
        object_entry(spec, "selector").insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::traffic::gateway_api::tests::http_route;

    fn rollout() -> Value {
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"strategy": {"canary": {"canaryService": "web-canary", "stableService": "web-stable"}}},
        })
    }

    #[test]
    fn controller_fields_are_the_splits_of_the_rollouts() {
        let mut by_subset = rollout();
        by_subset["metadata"]["namespace"] = json!(null);
        by_subset["spec"]["strategy"]["canary"]["trafficRouting"] = json!({"istio": {
            "virtualService": {"name": "web"},
            "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        }});
        let mut no_stable = rollout();
        no_stable["spec"]["strategy"]["canary"]["stableService"] = json!(null);
        let mut not_sluice = rollout();
        not_sluice["apiVersion"] = json!("argoproj.io/v1alpha1");
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-canary"}});
        let fields =
            ControllerFields::from_objects([&rollout(), &by_subset, &no_stable, &not_sluice, &service], "apps");
        let split = |namespace: &str, subsets: Option<(&str, &str)>| CanarySplit {
            namespace: namespace.into(),
            canary_service: "web-canary".into(),
            stable_service: "web-stable".into(),
            subsets: subsets.map(|(c, s)| (c.into(), s.into())),
        };
        assert_eq!(
            fields.splits,
            [split("shop", None), split("apps", Some(("canary", "stable")))]
        );
    }

    #[test]
    fn routing_objects_get_their_router_rule() {
        let live = http_route(70, 30, "web.example.com");
        let mut desired = http_route(100, 0, "web.example.com");
        let mut with = desired.clone();
        preserve_controller_fields(&mut desired, &live);
        preserve_controller_fields_with(&mut with, &live, &ControllerFields::from_objects([&rollout()], "shop"));
        assert_eq!(desired, live);
        assert_eq!(with, live);
    }

    #[test]
    fn service_keeps_the_pod_template_hash_selector() {
        let service = |selector: Value, port: i64| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web-canary", "namespace": "shop"},
                "spec": {"selector": selector, "ports": [{"port": port}]},
            })
        };
        let live = service(json!({"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"}), 80);
        let mut desired = service(json!({"app": "web", "tier": "front"}), 8080);
        preserve_controller_fields(&mut desired, &live);
        assert_eq!(
            desired,
            service(
                json!({"app": "web", "tier": "front", POD_TEMPLATE_HASH_LABEL: "abc"}),
                8080
            )
        );
        let mut untouched = service(json!({"app": "web"}), 80);
        preserve_controller_fields(&mut untouched, &service(json!({"app": "web"}), 80));
        assert_eq!(untouched, service(json!({"app": "web"}), 80));
    }

    #[test]
    fn a_deployment_a_rollout_scales_down_keeps_its_live_replicas() {
        let rollout = |scale_down: &str| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
                "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": scale_down}}})
        };
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 0}});
        let git = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5, "template": {}}});
        let progressively = rollout("progressively");
        let fields = ControllerFields::from_objects([&progressively], "shop");
        let mut desired = git.clone();
        preserve_controller_fields_with(&mut desired, &live, &fields);
        assert_eq!(desired["spec"]["replicas"], 0);
        assert_eq!(desired["spec"]["template"], json!({}));
        // scaleDown never, or another namespace: Git's replicas.
        for fields in [
            ControllerFields::from_objects([&rollout("never")], "shop"),
            ControllerFields::from_objects([&progressively], "other"),
        ] {
            let mut desired = git.clone();
            preserve_controller_fields_with(&mut desired, &live, &fields);
            assert_eq!(desired["spec"]["replicas"], 5);
        }
    }

    #[test]
    fn other_kinds_and_malformed_objects_are_left_alone() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}});
        let mut desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 1}});
        preserve_controller_fields(&mut desired, &deployment);
        assert_eq!(desired["spec"]["replicas"], 1);
        for mut odd in [
            json!(null),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "spec": {"rules": "x"}}),
            json!({"apiVersion": "v1", "kind": "Service", "spec": 3}),
        ] {
            let before = odd.clone();
            preserve_controller_fields(&mut odd, &http_route(1, 2, "x"));
            assert_eq!(odd, before);
        }
    }
}
