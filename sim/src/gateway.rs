//! The simulator's data plane: reads the routing objects of every traffic router (HTTPRoute backendRefs,
//! SMI TrafficSplit backends, Istio VirtualService destinations with DestinationRule subsets, NGINX
//! canary Ingress annotations) into weighted backends for the traffic generator, and, as a Gateway API
//! implementation, reports each HTTPRoute's status (Accepted, ResolvedRefs) per parentRef.
use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::api::{ApiServer, ListOptions, PatchBody, PatchKind, WriteOptions, now_rfc3339};
use crate::routing::{self, Rule};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub const HTTPROUTES: &str = "httproutes";
pub const SMI_GROUP: &str = "split.smi-spec.io";
pub const TRAFFICSPLITS: &str = "trafficsplits";
pub const ISTIO_GROUP: &str = "networking.istio.io";
pub const VIRTUALSERVICES: &str = "virtualservices";
pub const DESTINATIONRULES: &str = "destinationrules";
pub const INGRESS_GROUP: &str = "networking.k8s.io";
pub const INGRESSES: &str = "ingresses";
/// The controllerName a Gateway API implementation writes into route status.
pub const CONTROLLER_NAME: &str = "sim.sluice.dev/gateway";
const FIELD_MANAGER: &str = "sluice-sim-gateway";

/// One weighted backend Service of a routing object (an HTTPRoute backendRef, a TrafficSplit backend,
/// a VirtualService destination, an Ingress backend), with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    pub namespace: String,
    pub name: String,
    pub weight: u64,
    /// False when the ref names something other than a core Service (or an unknown Istio subset):
    /// the gateway answers such requests itself with 500.
    pub is_service: bool,
    /// Labels the serving pods must carry besides the Service's selector (an Istio subset's labels).
    pub subset: Option<BTreeMap<String, String>>,
}

impl BackendRef {
    /// A core Service with weight 1.
    pub fn service(namespace: &str, name: &str) -> Self {
        BackendRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
            weight: 1,
            is_service: true,
            subset: None,
        }
    }

    fn weighted(mut self, weight: u64) -> Self {
        self.weight = weight;
        self
    }
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

/// The rules of an HTTPRoute as the data plane follows them: backends, header conditions (each entry
/// of `matches` an alternative; no `matches` matches everything) and RequestMirror filters.
pub fn http_route(route: &Value) -> Vec<Rule> {
    let namespace = text(route, "/metadata/namespace").unwrap_or("default");
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .zip(route_rules(route))
        .map(|(rule, backends)| Rule {
            backends,
            matches: rule
                .get("matches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(routing::gateway_header_matches)
                .collect(),
            mirrors: routing::gateway_mirrors(rule, namespace),
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
        subset: None,
    }
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// A weight that is a number, or a numeric string (SMI v1alpha1 quantities, annotations).
fn weight(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// SMI: the backends of a TrafficSplit (weights as numbers or quantities; unset is 0).
pub fn split_backends(split: &Value) -> Vec<BackendRef> {
    let namespace = text(split, "/metadata/namespace").unwrap_or("default");
    let backends = split.pointer("/spec/backends").and_then(Value::as_array);
    backends
        .into_iter()
        .flatten()
        .map(|b| {
            BackendRef::service(namespace, b["service"].as_str().unwrap_or_default())
                .weighted(weight(b.get("weight")).unwrap_or(0))
        })
        .collect()
}

/// Istio: the Service (namespace, name) an Istio host names: `web`, `web.shop`, `web.shop.svc` or
/// `web.shop.svc.cluster.local` (short names are relative to `namespace`).
pub fn istio_host_service(host: &str, namespace: &str) -> (String, String) {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default().to_string();
    (parts.next().unwrap_or(namespace).to_string(), name)
}

/// Istio: the weighted destinations a plain request to the VirtualService reaches. Istio takes the
/// first HTTP route that matches; a request without headers takes the first route without header
/// conditions (or the first route when all have some). A destination's subset is looked
/// up in the DestinationRules of its host; an unknown subset cannot serve. Unset weights: a lone
/// destination gets everything, several all unset split evenly, otherwise unset is 0.
pub fn virtual_service_backends(vs: &Value, destination_rules: &[Value]) -> Vec<BackendRef> {
    let rules = virtual_service_rules(vs, destination_rules);
    let plain = rules.iter().position(Rule::is_plain).unwrap_or(0);
    rules
        .into_iter()
        .nth(plain)
        .map(|rule| rule.backends)
        .unwrap_or_default()
}

/// The weighted backends of an Istio route's destinations.
fn istio_destinations(destinations: &[Value], namespace: &str, destination_rules: &[Value]) -> Vec<BackendRef> {
    let all_unset = destinations.iter().all(|d| d.get("weight").is_none());
    destinations
        .iter()
        .map(|d| {
            let (ns, name) = istio_host_service(text(d, "/destination/host").unwrap_or_default(), namespace);
            let mut backend = BackendRef::service(&ns, &name);
            backend.weight = weight(d.get("weight")).unwrap_or(u64::from(all_unset));
            if let Some(subset) = text(d, "/destination/subset") {
                match subset_labels(destination_rules, &ns, &name, subset) {
                    Some(labels) => backend.subset = Some(labels),
                    None => backend.is_service = false,
                }
            }
            backend
        })
        .collect()
}

/// Istio: every HTTP route of a VirtualService in order, with its header conditions (a match entry
/// without headers matches every request) and its `mirror` (`mirrorPercentage`, default 100%).
pub fn virtual_service_rules(vs: &Value, destination_rules: &[Value]) -> Vec<Rule> {
    let namespace = text(vs, "/metadata/namespace").unwrap_or("default");
    let http = vs.pointer("/spec/http").and_then(Value::as_array);
    http.into_iter()
        .flatten()
        .map(|route| {
            let destinations = route
                .get("route")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mirrors = route.get("mirror").map(|mirror| {
                let (ns, name) = istio_host_service(text(mirror, "/host").unwrap_or_default(), namespace);
                let mut backend = BackendRef::service(&ns, &name);
                if let Some(subset) = text(mirror, "/subset") {
                    match subset_labels(destination_rules, &ns, &name, subset) {
                        Some(labels) => backend.subset = Some(labels),
                        None => backend.is_service = false,
                    }
                }
                let percent = route
                    .pointer("/mirrorPercentage/value")
                    .and_then(Value::as_f64)
                    .unwrap_or(100.0);
                routing::Mirror {
                    backend,
                    percent: percent.clamp(0.0, 100.0),
                }
            });
            Rule {
                backends: istio_destinations(&destinations, namespace, destination_rules),
                matches: route
                    .get("match")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(routing::istio_header_matches)
                    .collect(),
                mirrors: mirrors.into_iter().collect(),
            }
        })
        .collect()
}

/// The labels of subset `subset` in a DestinationRule (in `namespace`) whose host is Service `name`.
fn subset_labels(rules: &[Value], namespace: &str, name: &str, subset: &str) -> Option<BTreeMap<String, String>> {
    rules
        .iter()
        .filter(|r| text(r, "/metadata/namespace") == Some(namespace))
        .filter(|r| {
            istio_host_service(text(r, "/spec/host").unwrap_or_default(), namespace)
                == (namespace.to_string(), name.to_string())
        })
        .flat_map(|r| {
            r.pointer("/spec/subsets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s["name"] == subset)
        .map(|s| {
            let labels = s.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
            labels
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                .collect()
        })
}

/// NGINX: the host of an Ingress's first rule ("" for none) and the Service its first path (else its
/// defaultBackend) sends to.
pub fn ingress_backend(ingress: &Value) -> Option<(String, BackendRef)> {
    let namespace = text(ingress, "/metadata/namespace").unwrap_or("default");
    let host = text(ingress, "/spec/rules/0/host").unwrap_or_default().to_string();
    let service = text(ingress, "/spec/rules/0/http/paths/0/backend/service/name")
        .or_else(|| text(ingress, "/spec/defaultBackend/service/name"))?;
    Some((host, BackendRef::service(namespace, service)))
}

/// NGINX: (canary-weight, canary-weight-total) of a canary Ingress — one annotated `<prefix>/canary:
/// "true"` under any prefix, since annotationPrefix is configurable. None for other Ingresses.
pub fn ingress_canary_weight(ingress: &Value) -> Option<(u64, u64)> {
    let annotations = ingress.pointer("/metadata/annotations").and_then(Value::as_object)?;
    let (key, _) = annotations
        .iter()
        .find(|(k, v)| k.ends_with("/canary") && v.as_str() == Some("true"))?;
    let prefix = key.trim_end_matches("canary");
    let canary_weight = weight(annotations.get(&format!("{prefix}canary-weight"))).unwrap_or(0);
    let total = weight(annotations.get(&format!("{prefix}canary-weight-total"))).unwrap_or(100);
    Some((canary_weight.min(total), total))
}

/// NGINX: the canary Ingress that takes a share of a stable one's host: the first by name.
fn first_canary<'a>(stable: &Value, ingresses: &'a [Value]) -> Option<&'a Value> {
    let (host, _) = ingress_backend(stable)?;
    let namespace = text(stable, "/metadata/namespace");
    ingresses
        .iter()
        .filter(|i| text(i, "/metadata/namespace") == namespace && ingress_canary_weight(i).is_some())
        .filter(|i| ingress_backend(i).is_some_and(|(h, _)| h == host))
        .min_by_key(|i| text(i, "/metadata/name").unwrap_or_default())
}

/// NGINX: the split of requests to a stable Ingress: all to its backend, except canary-weight of
/// canary-weight-total to the backend of the first canary Ingress (by name) with the same host.
pub fn ingress_backends(stable: &Value, ingresses: &[Value]) -> Option<Vec<BackendRef>> {
    let (_, backend) = ingress_backend(stable)?;
    let Some(canary) = first_canary(stable, ingresses) else {
        return Some(vec![backend]);
    };
    let (canary_weight, total) = ingress_canary_weight(canary)?;
    let (_, canary_backend) = ingress_backend(canary)?;
    Some(vec![
        backend.weighted(total - canary_weight),
        canary_backend.weighted(canary_weight),
    ])
}

/// NGINX: the rules of a stable Ingress: its weighted split, preceded (when the first canary Ingress
/// of its host routes by header) by a rule sending matching requests to the canary.
pub fn ingress_rules(stable: &Value, ingresses: &[Value]) -> Option<Vec<Rule>> {
    let split = ingress_backends(stable, ingresses)?;
    let by_header = first_canary(stable, ingresses).and_then(|canary| {
        let annotations = canary.pointer("/metadata/annotations").and_then(Value::as_object)?;
        let (key, _) = annotations
            .iter()
            .find(|(k, v)| k.ends_with("/canary") && v.as_str() == Some("true"))?;
        let header = routing::nginx_canary_header(annotations, key.trim_end_matches("canary"))?;
        let (_, canary_backend) = ingress_backend(canary)?;
        Some(Rule {
            matches: vec![vec![header]],
            ..Rule::plain(vec![canary_backend])
        })
    });
    Some(by_header.into_iter().chain([Rule::plain(split)]).collect())
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

/// Installs one of the third-party CRDs of `crate::crds`.
#[cfg(test)]
pub(crate) fn install_crd_yaml(api: &ApiServer, yaml: &str) {
    let crd = crate::crds::parse(yaml).expect("the CRD is YAML");
    let rt = api
        .resource("apiextensions.k8s.io", "customresourcedefinitions")
        .expect("CRDs are built in");
    let opts = WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    };
    api.create(&rt, "", crd, &opts).expect("the fixture CRD is valid");
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
    use crate::workload::tests::{eventually, opts, start};

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
    fn traffic_split_backends_accept_numbers_and_quantities() {
        let split = json!({"metadata": {"namespace": "shop"}, "spec": {"service": "web", "backends": [
            {"service": "web-canary", "weight": 30}, {"service": "web-stable", "weight": "70"}, {"service": "x"}]}});
        let backends = split_backends(&split);
        let weights: Vec<(&str, u64)> = backends.iter().map(|b| (b.name.as_str(), b.weight)).collect();
        assert_eq!(weights, [("web-canary", 30), ("web-stable", 70), ("x", 0)]);
        assert!(backends.iter().all(|b| b.namespace == "shop" && b.is_service));
    }

    #[test]
    fn virtual_service_takes_the_first_catch_all_route_and_resolves_subsets() {
        let vs = json!({"metadata": {"namespace": "shop"}, "spec": {"http": [
            {"match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}}]},
            {"route": [
                {"destination": {"host": "web.shop.svc.cluster.local", "subset": "stable"}, "weight": 90},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 10},
                {"destination": {"host": "web", "subset": "gone"}, "weight": 0},
                {"destination": {"host": "api.other"}},
            ]},
        ]}});
        let rules = [
            json!({"metadata": {"namespace": "shop"}, "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"sluice.dev/pod-template-hash": "a"}},
                {"name": "canary", "labels": {"sluice.dev/pod-template-hash": "b"}},
            ]}}),
        ];
        let backends = virtual_service_backends(&vs, &rules);
        let hash = |h: &str| {
            Some(BTreeMap::from([(
                "sluice.dev/pod-template-hash".to_string(),
                h.to_string(),
            )]))
        };
        assert_eq!(
            (backends[0].name.as_str(), backends[0].weight, &backends[0].subset),
            ("web", 90, &hash("a"))
        );
        assert_eq!((backends[1].weight, &backends[1].subset), (10, &hash("b")));
        assert!(!backends[2].is_service, "an unknown subset cannot serve");
        assert_eq!(
            (
                backends[3].namespace.as_str(),
                backends[3].name.as_str(),
                backends[3].weight
            ),
            ("other", "api", 0)
        );
        let lone = json!({"metadata": {"namespace": "shop"}, "spec": {"http": [
            {"route": [{"destination": {"host": "web"}}, {"destination": {"host": "api"}}]}]}});
        let weights: Vec<u64> = virtual_service_backends(&lone, &[]).iter().map(|b| b.weight).collect();
        assert_eq!(weights, [1, 1]);
    }

    fn ingress(name: &str, host: &str, service: &str, annotations: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop", "annotations": annotations},
               "spec": {"rules": [{"host": host, "http": {"paths": [
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}})
    }

    #[test]
    fn ingress_canaries_take_their_weight_of_the_same_host() {
        let stable = ingress("web", "web.example.com", "web-stable", json!({}));
        let canary = ingress(
            "web-canary",
            "web.example.com",
            "web-canary",
            json!({"custom.org/canary": "true", "custom.org/canary-weight": "30", "custom.org/canary-weight-total": "200"}),
        );
        let elsewhere = ingress(
            "api-canary",
            "api.example.com",
            "api-canary",
            json!({"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "50"}),
        );
        assert_eq!(ingress_canary_weight(&canary), Some((30, 200)));
        assert_eq!(ingress_canary_weight(&stable), None);
        let backends = ingress_backends(&stable, &[stable.clone(), canary, elsewhere.clone()]).unwrap();
        let weights: Vec<(&str, u64)> = backends.iter().map(|b| (b.name.as_str(), b.weight)).collect();
        assert_eq!(weights, [("web-stable", 170), ("web-canary", 30)]);
        let alone = ingress_backends(&stable, &[stable.clone(), elsewhere]).unwrap();
        assert_eq!(alone, vec![BackendRef::service("shop", "web-stable")]);
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
