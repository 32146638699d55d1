//! The simulator as a Gateway API implementation: reads HTTPRoute backendRefs for the traffic
//! generator and reports each route's status (Accepted, ResolvedRefs) per parentRef.
use std::collections::HashSet;

use serde_json::{Value, json};

use crate::sim::api::{ApiServer, ListOptions, PatchBody, PatchKind, WriteOptions, now_rfc3339};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub const HTTPROUTES: &str = "httproutes";
/// The controllerName a Gateway API implementation writes into route status.
pub const CONTROLLER_NAME: &str = "sim.sluice.dev/gateway";
const FIELD_MANAGER: &str = "sluice-sim-gateway";

/// One backendRef of an HTTPRoute rule, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    pub namespace: String,
    pub name: String,
    pub weight: u64,
    /// False when the ref names something other than a core Service.
    pub is_service: bool,
}

/// The backendRefs of each rule of an HTTPRoute (in order); refs default to the route's namespace.
pub fn route_rules(route: &Value) -> Vec<Vec<BackendRef>> {
    let namespace = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .map(|rule| {
            let refs = rule.get("backendRefs").and_then(Value::as_array);
            refs.into_iter().flatten().map(|r| backend_ref(r, namespace)).collect()
        })
        .collect()
}

fn backend_ref(r: &Value, route_namespace: &str) -> BackendRef {
    let text = |field: &str| r.get(field).and_then(Value::as_str);
    BackendRef {
        namespace: text("namespace").unwrap_or(route_namespace).to_string(),
        name: text("name").unwrap_or_default().to_string(),
        weight: r.get("weight").and_then(Value::as_u64).unwrap_or(1),
        is_service: text("group").unwrap_or_default().is_empty() && text("kind").unwrap_or("Service") == "Service",
    }
}

/// Brings every HTTPRoute's status up to date; a no-op when the HTTPRoute CRD is not installed.
pub fn sync_route_status(api: &ApiServer) {
    let Some(routes_rt) = api.resource(GATEWAY_GROUP, HTTPROUTES) else {
        return;
    };
    let Some(services_rt) = api.resource("", "services") else {
        return;
    };
    let Ok(routes) = api.list(&routes_rt, None, &ListOptions::default()) else {
        return;
    };
    if routes.items.is_empty() {
        return;
    }
    let services: HashSet<(String, String)> = match api.list(&services_rt, None, &ListOptions::default()) {
        Ok(list) => list
            .items
            .iter()
            .map(|s| (s.key.namespace.clone(), s.key.name.clone()))
            .collect(),
        Err(_) => return,
    };
    let version = routes_rt.preferred_version().name.clone();
    for stored in routes.items.iter().filter(|r| !r.deleting) {
        let route = stored.to_value();
        let current = route.pointer("/status/parents").cloned().unwrap_or(Value::Null);
        let desired = desired_parents(&route, &|ns, name| {
            services.contains(&(ns.to_string(), name.to_string()))
        });
        if current == desired {
            continue;
        }
        let body = json!({"status": {"parents": desired}}).to_string();
        let opts = WriteOptions {
            field_manager: FIELD_MANAGER.into(),
            subresource: Some("status".into()),
            ..Default::default()
        };
        let (ns, name) = (&stored.key.namespace, &stored.key.name);
        if let Err(e) = api.patch(
            &routes_rt,
            &version,
            ns,
            name,
            PatchBody::new(PatchKind::Merge, body.as_bytes()),
            &opts,
        ) {
            tracing::debug!(route = %name, error = %e.message, "could not write HTTPRoute status");
        }
    }
}

/// status.parents as the route should report it. Conditions keep their lastTransitionTime while their
/// status is unchanged, so an unchanged route yields exactly its current status (and no write).
pub fn desired_parents(route: &Value, service_exists: &dyn Fn(&str, &str) -> bool) -> Value {
    let generation = route
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let existing = route
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (resolved, reason, message) = resolution(route, service_exists);
    let parent_refs = route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let parents = parent_refs.into_iter().map(|parent_ref| {
        let previous = existing.iter().find(|p| p.get("parentRef") == Some(&parent_ref));
        let conditions = vec![
            condition(previous, "Accepted", true, "Accepted", "Route is accepted", generation),
            condition(previous, "ResolvedRefs", resolved, reason, &message, generation),
        ];
        json!({"parentRef": parent_ref, "controllerName": CONTROLLER_NAME, "conditions": conditions})
    });
    Value::Array(parents.collect())
}

/// Whether every backendRef resolves: (status, reason, message) of the ResolvedRefs condition.
fn resolution(route: &Value, service_exists: &dyn Fn(&str, &str) -> bool) -> (bool, &'static str, String) {
    let refs: Vec<BackendRef> = route_rules(route).into_iter().flatten().collect();
    if let Some(bad) = refs.iter().find(|r| !r.is_service) {
        return (
            false,
            "InvalidKind",
            format!("backendRef {} is not a core Service", bad.name),
        );
    }
    if let Some(missing) = refs.iter().find(|r| !service_exists(&r.namespace, &r.name)) {
        return (
            false,
            "BackendNotFound",
            format!("service \"{}/{}\" not found", missing.namespace, missing.name),
        );
    }
    (
        true,
        "ResolvedRefs",
        "Resolved all the object references for the Route".to_string(),
    )
}

fn condition(previous: Option<&Value>, kind: &str, ok: bool, reason: &str, message: &str, generation: i64) -> Value {
    let status = if ok { "True" } else { "False" };
    let conditions = previous.and_then(|p| p.get("conditions")).and_then(Value::as_array);
    let same = conditions
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status);
    let since = same
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or_else(|| json!(now_rfc3339()));
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    })
}

/// Installs a minimal HTTPRoute CRD, as tests that need routes do.
#[cfg(test)]
pub(crate) fn install_httproute_crd(api: &ApiServer) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
        "spec": {
            "group": GATEWAY_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "httproutes", "singular": "httproute", "kind": "HTTPRoute", "listKind": "HTTPRouteList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    });
    let rt = api
        .resource("apiextensions.k8s.io", "customresourcedefinitions")
        .expect("CRDs are built in");
    let opts = WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    };
    api.create(&rt, "", crd, &opts).expect("the HTTPRoute CRD is valid");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::workload::tests::{eventually, opts, start};

    fn route() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [
                    {"name": "web-stable", "port": 80, "weight": 70},
                    {"name": "web-canary", "namespace": "other", "port": 80},
                    {"name": "bucket", "group": "storage.example.com", "kind": "Bucket", "weight": 0},
                ]}],
            },
        })
    }

    #[test]
    fn backend_refs_get_defaults() {
        let rules = route_rules(&route());
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(
            (r[0].namespace.as_str(), r[0].weight, r[0].is_service),
            ("shop", 70, true)
        );
        assert_eq!((r[1].namespace.as_str(), r[1].weight), ("other", 1));
        assert_eq!((r[2].weight, r[2].is_service), (0, false));
    }

    #[test]
    fn status_reports_each_parent_and_resolution() {
        let mut route = route();
        route["spec"]["rules"][0]["backendRefs"].as_array_mut().unwrap().pop();
        let parents = desired_parents(&route, &|_, name| name == "web-stable");
        let parent = &parents[0];
        assert_eq!(parent["parentRef"], json!({"name": "gw"}));
        assert_eq!(parent["controllerName"], CONTROLLER_NAME);
        assert_eq!(parent["conditions"][0]["type"], "Accepted");
        assert_eq!(parent["conditions"][0]["observedGeneration"], 3);
        assert_eq!(parent["conditions"][1]["status"], "False");
        assert_eq!(parent["conditions"][1]["reason"], "BackendNotFound");

        let resolved = desired_parents(&route, &|_, _| true);
        assert_eq!(resolved[0]["conditions"][1]["status"], "True");
    }

    #[test]
    fn unchanged_route_yields_its_current_status() {
        let mut route = route();
        route["status"] = json!({"parents": desired_parents(&route, &|_, _| true)});
        let again = desired_parents(&route, &|_, _| true);
        assert_eq!(route["status"]["parents"], again);
    }

    fn service(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
    }

    #[tokio::test]
    async fn route_status_follows_backends() {
        let sim = start().await;
        install_httproute_crd(&sim.api);
        let services = sim.api.resource("", "services").unwrap();
        sim.api
            .create(&services, "default", service("web-stable"), &opts())
            .unwrap();
        let routes = sim.api.resource(GATEWAY_GROUP, HTTPROUTES).unwrap();
        let mut route = route();
        route["apiVersion"] = json!("gateway.networking.k8s.io/v1");
        route["kind"] = json!("HTTPRoute");
        route["metadata"] = json!({"name": "web"});
        route["spec"]["rules"][0]["backendRefs"] =
            json!([{"name": "web-stable", "weight": 90}, {"name": "web-canary", "weight": 10}]);
        sim.api.create(&routes, "default", route, &opts()).unwrap();
        let resolved = |want: &'static str| {
            let api = sim.api.clone();
            let routes = routes.clone();
            move || {
                let route = api.get(&routes, "default", "web").ok()?.to_value();
                let parent = route.pointer("/status/parents/0")?.clone();
                (parent.pointer("/conditions/1/status")? == want).then_some(parent)
            }
        };
        let parent = eventually(Duration::from_secs(2), "BackendNotFound", resolved("False")).await;
        assert_eq!(parent["conditions"][1]["reason"], "BackendNotFound");
        assert_eq!(parent["conditions"][0]["status"], "True");
        assert_eq!(parent["conditions"][0]["observedGeneration"], 1);
        assert_eq!(parent["parentRef"], json!({"name": "gw"}));
        sim.api
            .create(&services, "default", service("web-canary"), &opts())
            .unwrap();
        let parent = eventually(Duration::from_secs(2), "ResolvedRefs", resolved("True")).await;
        assert_eq!(parent["controllerName"], CONTROLLER_NAME);
        sim.shutdown().await;
    }
}
