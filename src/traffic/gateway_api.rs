//! Gateway API router: sets the backendRef weights of every HTTPRoute rule that names both the canary
//! and the stable Service (canary w, stable max − w); rules naming only one of them are left alone.
//!
//! # Why the whole `spec.rules` list is applied
//! `HTTPRoute.spec.rules` (and each rule's `backendRefs`) is an atomic list in the upstream CRD schema:
//! it has no list-map keys, so server-side apply cannot own one weight inside it. An apply that carried
//! only the weights would replace the list with rules holding nothing but weights. The router therefore
//! reads the route and applies `spec.rules` exactly as observed with only the weights changed, under the
//! field manager `sluice` with `force`, and puts the observed `metadata.resourceVersion` into the apply
//! configuration: the API server treats it as a precondition, so a rule edited between our read and our
//! write fails the apply with 409 (retried from a fresh read) instead of being reverted.
//!
//! The trade-off: after the first write `sluice` owns all of `spec.rules`, so a GitOps tool applying the
//! route server-side sees a conflict on every rules change and must force it (Argo CD and Flux do), and
//! any tool re-applying the route resets the weights to what Git says until the next reconcile puts them
//! back. Keep the weights out of the comparison so the tool neither reports drift nor reverts them —
//! for Argo CD (with `RespectIgnoreDifferences=true` in syncOptions so a sync keeps the live weights):
//!
//! ```yaml
//! ignoreDifferences:
//!   - group: gateway.networking.k8s.io
//!     kind: HTTPRoute
//!     jqPathExpressions:
//!       - .spec.rules[].backendRefs[].weight
//! ```
//!
//! Ready means live: every parent in `status.parents` reports `Accepted=True` for the route's current
//! `metadata.generation` (a weight change bumps the generation, so an older acceptance does not count).
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::api::rollout::{GatewayApiTrafficRouting, StringMatch};
use crate::api::spec_error::SpecError;
use crate::traffic::routes::{MatchKind, is_managed_rule, preserve_managed_rules, rule_name};
use crate::traffic::{
    CanarySplit, ManagedRoute, ObjectKind, OwnedFields, RouteTarget, RouterError, RouterState, TrafficRouter, agreed,
    apply_metadata, namespace_of, object_name, preserve_rules, retry_on_conflict, select_split, spec_error,
};

pub(crate) const HTTP_ROUTE: ObjectKind = ObjectKind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "HTTPRoute",
    plural: "httproutes",
};

/// The router for `trafficRouting.gatewayAPI`.
#[derive(Debug, Clone)]
pub struct GatewayApiRouter {
    spec: GatewayApiTrafficRouting,
}

/// One HTTPRoute the spec names, and the spec field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRoute {
    pub name: String,
    pub field: String,
}

impl GatewayApiRouter {
    pub fn new(spec: GatewayApiTrafficRouting) -> Self {
        GatewayApiRouter { spec }
    }

    /// The routes' namespace: gatewayAPI.namespace, else the Rollout's.
    pub fn namespace<'a>(&'a self, target: &'a RouteTarget) -> &'a str {
        self.spec.namespace.as_deref().unwrap_or(&target.namespace)
    }

    /// Every route named, httpRoute first, with the field path errors about it point at.
    pub fn routes(&self) -> Vec<NamedRoute> {
        let single = self.spec.http_route.iter().map(|name| NamedRoute {
            name: name.clone(),
            field: "gatewayAPI.httpRoute".into(),
        });
        let listed = self.spec.http_routes.iter().enumerate().map(|(i, r)| NamedRoute {
            name: r.name.clone(),
            field: format!("gatewayAPI.httpRoutes[{i}].name"),
        });
        single.chain(listed).collect()
    }

    fn missing(&self, route: &NamedRoute, target: &RouteTarget) -> SpecError {
        let namespace = self.namespace(target);
        spec_error(&route.field, format!("HTTPRoute {namespace}/{} not found", route.name))
    }

    /// Applies, to each configured HTTPRoute, the rules `desired` makes of the live object (given
    /// the route's field path for errors); no write when they are unchanged, retried on conflict.
    async fn update_rules(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        desired: impl Fn(&Value, &str) -> Result<Value, SpecError>,
    ) -> Result<(), RouterError> {
        let namespace = self.namespace(target);
        for route in self.routes() {
            retry_on_conflict(|| async {
                let current = HTTP_ROUTE
                    .get(client, namespace, &route.name)
                    .await?
                    .ok_or_else(|| self.missing(&route, target))?;
                let body = desired(&current, &route.field)?;
                if body.pointer("/spec/rules") == current.pointer("/spec/rules") {
                    return Ok(());
                }
                HTTP_ROUTE.apply(client, namespace, &route.name, &body).await
            })
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for GatewayApiRouter {
    fn name(&self) -> &'static str {
        "gatewayAPI"
    }

    async fn check(&self, client: &kube::Client, target: &RouteTarget) -> Result<Vec<SpecError>, RouterError> {
        let mut errors = Vec::new();
        for route in self.routes() {
            match HTTP_ROUTE.get(client, self.namespace(target), &route.name).await? {
                None => errors.push(self.missing(&route, target)),
                Some(current) => errors.extend(desired(&current, target, 0, &route.field).err()),
            }
        }
        Ok(errors)
    }

    async fn observe(&self, client: &kube::Client, target: &RouteTarget) -> Result<RouterState, RouterError> {
        let mut weights = Vec::new();
        let mut messages = Vec::new();
        let mut ready = true;
        for route in self.routes() {
            let Some(current) = HTTP_ROUTE.get(client, self.namespace(target), &route.name).await? else {
                messages.push(self.missing(&route, target).message);
                weights.push(None);
                ready = false;
                continue;
            };
            let weight = observed_weight(&current, target);
            if weight.is_none() {
                messages.push(format!(
                    "HTTPRoute {} carries no consistent split",
                    object_name(&current)
                ));
            }
            weights.push(weight);
            let (route_ready, message) = readiness(&current);
            ready &= route_ready;
            messages.extend(message);
        }
        Ok(RouterState {
            // Every route must carry the same split: one lagging route is work for set_weight.
            canary_weight: agreed(weights.into_iter()),
            ready,
            message: (!messages.is_empty()).then(|| messages.join("; ")),
        })
    }

    async fn set_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<(), RouterError> {
        let canary_weight = canary_weight.clamp(0, target.max_weight);
        self.update_rules(client, target, |current, field| {
            desired(current, target, canary_weight, field)
        })
        .await
    }

    async fn set_routes(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        routes: &[ManagedRoute],
    ) -> Result<(), RouterError> {
        self.update_rules(client, target, |current, field| {
            desired_routes(current, target, routes, field)
        })
        .await
    }
}

/// The apply configuration that makes `current` carry exactly `routes` as managed rules: Sluice's
/// earlier managed rules (named `sluice-…`) are dropped, and one rule per route is put before the
/// first weighted rule (so it wins ties of precedence). A header route matches the weighted rule's
/// matches plus the headers and goes to the canary backend alone; a mirror route matches its own
/// conditions, goes where the weighted rule goes (same backends and weights: set_weight keeps them in
/// step) and adds a RequestMirror filter to the canary with `percent`.
pub fn desired_routes(
    current: &Value,
    target: &RouteTarget,
    routes: &[ManagedRoute],
    field: &str,
) -> Result<Value, SpecError> {
    let route_namespace = current
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut rules: Vec<Value> = current
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rules.retain(|r| !is_managed_rule(r));
    let without: Value = json!({"metadata": current.get("metadata"), "spec": {"rules": rules}});
    let weighted_index = split_rules(&without, target).first().copied();
    let Some(weighted_index) = weighted_index.filter(|_| !routes.is_empty()) else {
        // Nothing to add: the rules without Sluice's (an error only if routes were asked for).
        if routes.is_empty() {
            return Ok(json!({
                "apiVersion": HTTP_ROUTE.api_version(),
                "kind": HTTP_ROUTE.kind,
                "metadata": apply_metadata(current),
                "spec": {"rules": rules},
            }));
        }
        return Err(desired(current, target, 0, field).err().unwrap_or_else(|| {
            spec_error(
                field,
                format!("HTTPRoute {} has no weighted rule", object_name(current)),
            )
        }));
    };
    let weighted = rules[weighted_index].clone();
    let canary_ref = weighted
        .get("backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|b| names_service(b, route_namespace, &target.canary_service, &target.namespace))
        .cloned()
        .unwrap_or_else(|| json!({"name": target.canary_service}));
    let mut managed_rules = Vec::with_capacity(routes.len());
    for route in routes {
        let rule = match route {
            ManagedRoute::Header { name, matches } => {
                let headers: Vec<Value> = matches
                    .iter()
                    .map(|m| header_match(&m.header_name, &m.header_value))
                    .collect();
                let base: Vec<Value> = weighted
                    .get("matches")
                    .and_then(Value::as_array)
                    .cloned()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| vec![json!({})]);
                let matches: Vec<Value> = base
                    .into_iter()
                    .map(|mut m| {
                        let mut all = m.get("headers").and_then(Value::as_array).cloned().unwrap_or_default();
                        all.extend(headers.iter().cloned());
                        m["headers"] = Value::Array(all);
                        m
                    })
                    .collect();
                let mut backend = canary_ref.clone();
                backend["weight"] = json!(100);
                let mut rule = json!({
                    "name": rule_name(name),
                    "matches": matches,
                    "backendRefs": [backend],
                });
                if let Some(filters) = weighted.get("filters") {
                    rule["filters"] = filters.clone();
                }
                rule
            }
            ManagedRoute::Mirror {
                name,
                percentage,
                matches,
            } => {
                let matches: Vec<Value> = matches
                    .iter()
                    .map(|m| {
                        let mut entry = serde_json::Map::new();
                        if let Some(path) = &m.path {
                            let (kind, value) = match MatchKind::of(path) {
                                MatchKind::Exact(v) => ("Exact", v.to_string()),
                                MatchKind::Prefix(v) => ("PathPrefix", v.to_string()),
                                MatchKind::Regex(v) => ("RegularExpression", v.to_string()),
                            };
                            entry.insert("path".into(), json!({"type": kind, "value": value}));
                        }
                        if let Some(method) = m.method.as_ref().and_then(|m| m.exact.as_ref()) {
                            entry.insert("method".into(), json!(method.to_ascii_uppercase()));
                        }
                        if !m.headers.is_empty() {
                            let headers = m.headers.iter().map(|(n, v)| header_match(n, v)).collect();
                            entry.insert("headers".into(), Value::Array(headers));
                        }
                        Value::Object(entry)
                    })
                    .collect();
                let mut mirror_ref = serde_json::Map::new();
                for key in ["group", "kind", "namespace", "name", "port"] {
                    if let Some(value) = canary_ref.get(key) {
                        mirror_ref.insert(key.into(), value.clone());
                    }
                }
                let mut filters = weighted
                    .get("filters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                filters.push(json!({
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": mirror_ref, "percent": percentage},
                }));
                json!({
                    "name": rule_name(name),
                    "matches": matches,
                    "filters": filters,
                    "backendRefs": weighted.get("backendRefs").cloned().unwrap_or_else(|| json!([])),
                })
            }
        };
        managed_rules.push(rule);
    }
    rules.splice(weighted_index..weighted_index, managed_rules);
    Ok(json!({
        "apiVersion": HTTP_ROUTE.api_version(),
        "kind": HTTP_ROUTE.kind,
        "metadata": apply_metadata(current),
        "spec": {"rules": rules},
    }))
}

/// An HTTPHeaderMatch: exact → Exact; prefix and regex → RegularExpression (Gateway API has no
/// prefix match for headers).
fn header_match(name: &str, value: &StringMatch) -> Value {
    match MatchKind::of(value) {
        MatchKind::Exact(v) => json!({"type": "Exact", "name": name, "value": v}),
        kind => json!({"type": "RegularExpression", "name": name, "value": kind.as_regex()}),
    }
}

/// Whether a backendRef names `service` in `namespace` (refs default to the route's namespace, and to
/// the core group and kind Service).
fn names_service(backend: &Value, route_namespace: &str, service: &str, namespace: &str) -> bool {
    let text = |field: &str| backend.get(field).and_then(Value::as_str);
    backend.get("name").and_then(Value::as_str) == Some(service)
        && text("namespace").unwrap_or(route_namespace) == namespace
        && text("group").unwrap_or_default().is_empty()
        && text("kind").unwrap_or("Service") == "Service"
}

/// Indexes of the rules whose backendRefs name both Services.
fn split_rules(route: &Value, target: &RouteTarget) -> Vec<usize> {
    let route_namespace = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    let names = |rule: &Value, service: &str| {
        let refs = rule.get("backendRefs").and_then(Value::as_array);
        refs.into_iter()
            .flatten()
            .any(|b| names_service(b, route_namespace, service, &target.namespace))
    };
    rules
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, rule)| names(rule, &target.canary_service) && names(rule, &target.stable_service))
        .map(|(i, _)| i)
        .collect()
}

/// The server-side apply configuration that puts `canary_weight` on `current` (a live HTTPRoute):
/// `spec.rules` as observed with the weights of both Services set in every rule naming both (see the
/// module doc for why the whole list), plus the resourceVersion it was computed from.
/// Errs, at `field`, when no rule names both Services.
pub fn desired(current: &Value, target: &RouteTarget, canary_weight: i32, field: &str) -> Result<Value, SpecError> {
    let matching = split_rules(current, target);
    if matching.is_empty() {
        return Err(spec_error(
            field,
            format!(
                "HTTPRoute {} has no rule whose backendRefs include both Services {} and {}",
                object_name(current),
                target.canary_service,
                target.stable_service
            ),
        ));
    }
    let route_namespace = current
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut rules = current.pointer("/spec/rules").cloned().unwrap_or_else(|| json!([]));
    for i in matching {
        let Some(refs) = rules[i]["backendRefs"].as_array_mut() else {
            continue;
        };
        // A split rule routes to the two Services and a running experiment's weighted templates; any
        // other backend is one an experiment left behind (Argo's weighted experiment step).
        refs.retain(|backend| {
            names_service(backend, route_namespace, &target.canary_service, &target.namespace)
                || names_service(backend, route_namespace, &target.stable_service, &target.namespace)
                || target
                    .experiment_backends
                    .iter()
                    .any(|b| names_service(backend, route_namespace, &b.service, &target.namespace))
        });
        let template = refs
            .iter()
            .find(|b| names_service(b, route_namespace, &target.canary_service, &target.namespace))
            .cloned();
        for experiment in &target.experiment_backends {
            let present = refs
                .iter()
                .any(|b| names_service(b, route_namespace, &experiment.service, &target.namespace));
            if let (false, Some(template)) = (present, template.as_ref()) {
                // Same kind, namespace and port as the canary's backendRef.
                let mut backend = template.clone();
                backend["name"] = json!(experiment.service);
                refs.push(backend);
            }
        }
        for backend in refs.iter_mut() {
            let weight = if names_service(backend, route_namespace, &target.canary_service, &target.namespace) {
                canary_weight
            } else if names_service(backend, route_namespace, &target.stable_service, &target.namespace) {
                target.stable_weight(canary_weight)
            } else {
                let name = backend.get("name").and_then(Value::as_str).unwrap_or_default();
                target.experiment_weight(name).unwrap_or(0)
            };
            backend["weight"] = json!(weight);
        }
    }
    Ok(json!({
        "apiVersion": HTTP_ROUTE.api_version(),
        "kind": HTTP_ROUTE.kind,
        "metadata": apply_metadata(current),
        "spec": {"rules": rules},
    }))
}

/// The canary weight of the rules naming both Services: Some(w) when every such rule gives the canary
/// w and stable max − w; None when there is no such rule, a weight is unset or the rules disagree.
pub fn observed_weight(current: &Value, target: &RouteTarget) -> Option<i32> {
    let route_namespace = current
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rules = current.pointer("/spec/rules").and_then(Value::as_array)?;
    let weight_of = |rule: &Value, service: &str| -> Option<i32> {
        let refs = rule.get("backendRefs").and_then(Value::as_array)?;
        let backend = refs
            .iter()
            .find(|b| names_service(b, route_namespace, service, &target.namespace))?;
        backend.get("weight").and_then(crate::traffic::weight_value)
    };
    let splits = split_rules(current, target).into_iter().map(|i| {
        let canary = weight_of(&rules[i], &target.canary_service)?;
        let stable = weight_of(&rules[i], &target.stable_service)?;
        // A running experiment's backends each with their weight, and no backend left behind.
        let backends = rules[i]
            .get("backendRefs")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let experiments_in_place = backends == 2 + target.experiment_backends.len()
            && target
                .experiment_backends
                .iter()
                .all(|b| weight_of(&rules[i], &b.service) == Some(b.weight));
        (experiments_in_place && stable == target.stable_weight(canary)).then_some(canary)
    });
    agreed(splits)
}

/// Whether the route's current generation is live: every parent in status.parents reports
/// Accepted=True with observedGeneration equal to metadata.generation. The message says which is not.
pub fn readiness(current: &Value) -> (bool, Option<String>) {
    let name = object_name(current);
    let generation = current.pointer("/metadata/generation").and_then(Value::as_i64);
    let parents = current.pointer("/status/parents").and_then(Value::as_array);
    let Some(parents) = parents.filter(|p| !p.is_empty()) else {
        return (
            false,
            Some(format!("HTTPRoute {name}: no Gateway has reported on it yet")),
        );
    };
    for parent in parents {
        let parent_name = parent.pointer("/parentRef/name").and_then(Value::as_str).unwrap_or("?");
        let conditions = parent.get("conditions").and_then(Value::as_array);
        let accepted = conditions.into_iter().flatten().find(|c| c["type"] == "Accepted");
        let problem = match accepted {
            None => "has not reported Accepted".to_string(),
            Some(c) if c.get("observedGeneration").and_then(Value::as_i64) != generation => format!(
                "has not observed generation {} yet",
                generation.map_or("?".into(), |g| g.to_string())
            ),
            Some(c) if c["status"] != "True" => format!(
                "did not accept it ({}: {})",
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            ),
            Some(_) => continue,
        };
        return (false, Some(format!("HTTPRoute {name}: parent {parent_name} {problem}")));
    }
    (true, None)
}

/// The fields GitSync keeps (see [`OwnedFields`]): the backendRef weights of HTTPRoutes and GRPCRoutes.
pub(crate) const OWNED_FIELDS: &[OwnedFields] = &[
    OwnedFields {
        group: HTTP_ROUTE.group,
        kind: "HTTPRoute",
        preserve: preserve_backend_weights,
    },
    OwnedFields {
        group: HTTP_ROUTE.group,
        kind: "GRPCRoute",
        preserve: preserve_backend_weights,
    },
];

/// Keeps the live `weight` of the backendRefs (matched by group/kind/namespace/name/port) of the rules
/// that split traffic, in rules matched by rule name, else by `matches`, else by position.
fn preserve_backend_weights(desired: &mut Value, live: &Value, splits: Option<&[CanarySplit]>) {
    let namespace = namespace_of(desired);
    // Sluice's managed rules (setHeaderRoute / setMirrorRoute) are not in Git: keep them, before the
    // first rule that splits traffic.
    let is_weighted = |rule: &Value| {
        let backends: Vec<&Value> = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        select_split(splits, &backends, |split, b| {
            (
                names_service(b, &namespace, &split.canary_service, &split.namespace),
                names_service(b, &namespace, &split.stable_service, &split.namespace),
            )
        })
        .is_some()
    };
    preserve_managed_rules(desired, live, "rules", &is_weighted);
    let is_split = |backends: &[&Value]| {
        select_split(splits, backends, |split, b| {
            (
                names_service(b, &namespace, &split.canary_service, &split.namespace),
                names_service(b, &namespace, &split.stable_service, &split.namespace),
            )
        })
    };
    preserve_rules(
        desired,
        live,
        "rules",
        "backendRefs",
        "matches",
        &backend_ref_identity,
        &is_split,
    );
}

/// What tells a backendRef apart from the others of its rule.
fn backend_ref_identity(backend: &Value) -> Option<Value> {
    let name = backend.get("name")?;
    Some(Value::Array(vec![
        backend.get("group").cloned().unwrap_or(Value::String(String::new())),
        backend.get("kind").cloned().unwrap_or(Value::String("Service".into())),
        backend.get("namespace").cloned().unwrap_or(Value::Null),
        name.clone(),
        backend.get("port").cloned().unwrap_or(Value::Null),
    ]))
}

#[cfg(test)]
pub(crate) mod tests {
    use insta::assert_json_snapshot;

    use super::*;
    use crate::api::rollout::HttpRouteRef;
    use crate::traffic::tests::{split, target};

    fn route() -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "default", "generation": 4, "resourceVersion": "812"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["web.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [
                            {"name": "web-stable", "port": 80, "weight": 100},
                            {"name": "web-canary", "port": 80, "weight": 0},
                        ],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                        "backendRefs": [{"name": "admin", "port": 80}],
                    },
                ],
            },
        })
    }

    #[test]
    fn writes_the_whole_rules_list_with_only_the_weights_changed() {
        let body = desired(&route(), &target(), 30, "gatewayAPI.httpRoute").unwrap();
        assert_json_snapshot!(body, @r#"
        {
          "apiVersion": "gateway.networking.k8s.io/v1",
          "kind": "HTTPRoute",
          "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": "812"
          },
          "spec": {
            "rules": [
              {
                "matches": [
                  {
                    "path": {
                      "type": "PathPrefix",
                      "value": "/"
                    }
                  }
                ],
                "backendRefs": [
                  {
                    "name": "web-stable",
                    "port": 80,
                    "weight": 70
                  },
                  {
                    "name": "web-canary",
                    "port": 80,
                    "weight": 30
                  }
                ]
              },
              {
                "matches": [
                  {
                    "path": {
                      "type": "PathPrefix",
                      "value": "/admin"
                    }
                  }
                ],
                "backendRefs": [
                  {
                    "name": "admin",
                    "port": 80
                  }
                ]
              }
            ]
          }
        }
        "#);
    }

    #[test]
    fn stable_gets_the_rest_of_max_traffic_weight() {
        let target = RouteTarget {
            max_weight: 1000,
            ..target()
        };
        let body = desired(&route(), &target, 30, "f").unwrap();
        assert_eq!(body["spec"]["rules"][0]["backendRefs"][0]["weight"], 970);
    }

    #[test]
    fn a_running_experiment_gets_its_backends_and_they_go_when_it_ends() {
        use crate::traffic::ExperimentBackend;
        let with_experiment = RouteTarget {
            experiment_backends: vec![
                ExperimentBackend {
                    service: "web-exp-baseline".into(),
                    weight: 10,
                },
                ExperimentBackend {
                    service: "web-exp-canary".into(),
                    weight: 5,
                },
            ],
            ..target()
        };
        let route = route();
        assert_eq!(observed_weight(&route, &with_experiment), None, "backends missing");
        let body = desired(&route, &with_experiment, 20, "f").unwrap();
        let refs = body["spec"]["rules"][0]["backendRefs"].as_array().unwrap();
        let weights: Vec<(String, i64)> = refs
            .iter()
            .map(|b| (b["name"].as_str().unwrap().to_string(), b["weight"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            weights,
            [
                ("web-stable".to_string(), 65),
                ("web-canary".to_string(), 20),
                ("web-exp-baseline".to_string(), 10),
                ("web-exp-canary".to_string(), 5),
            ]
        );
        assert_eq!(refs[2]["port"], refs[1]["port"], "the canary's port");
        let mut applied = route.clone();
        applied["spec"]["rules"] = body["spec"]["rules"].clone();
        assert_eq!(observed_weight(&applied, &with_experiment), Some(20));
        // The step over: the plain target no longer agrees, and its write removes the backends.
        assert_eq!(observed_weight(&applied, &target()), None);
        let body = desired(&applied, &target(), 20, "f").unwrap();
        assert_eq!(body["spec"]["rules"][0]["backendRefs"].as_array().unwrap().len(), 2);
        assert_eq!(body["spec"]["rules"][0]["backendRefs"][0]["weight"], 80);
        // Other rules keep their backends.
        assert_eq!(body["spec"]["rules"][1], route["spec"]["rules"][1]);
    }

    #[test]
    fn refs_to_other_namespaces_or_kinds_are_not_the_services() {
        let mut route = route();
        route["spec"]["rules"][0]["backendRefs"][1]["namespace"] = json!("other");
        let error = desired(&route, &target(), 30, "gatewayAPI.httpRoutes[1].name").unwrap_err();
        assert_eq!(
            error.field,
            "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoutes[1].name"
        );
        assert_eq!(
            error.message,
            "HTTPRoute default/web has no rule whose backendRefs include both Services web-canary and web-stable"
        );
        let mut route = self::route();
        route["spec"]["rules"][0]["backendRefs"][1]["kind"] = json!("Bucket");
        assert!(desired(&route, &target(), 30, "f").is_err());
        // Explicitly in the Rollout's namespace is the same as defaulted.
        let mut route = self::route();
        route["spec"]["rules"][0]["backendRefs"][1]["namespace"] = json!("default");
        assert!(desired(&route, &target(), 30, "f").is_ok());
    }

    #[test]
    fn observed_weight_needs_a_consistent_split() {
        let target = target();
        assert_eq!(observed_weight(&route(), &target), Some(0));
        let written = desired(&route(), &target, 30, "f").unwrap();
        let mut live = route();
        live["spec"] = written["spec"].clone();
        assert_eq!(observed_weight(&live, &target), Some(30));
        // Stable not at max − canary.
        live["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(50);
        assert_eq!(observed_weight(&live, &target), None);
        // Weights unset.
        let mut unset = route();
        for backend in unset["spec"]["rules"][0]["backendRefs"].as_array_mut().unwrap() {
            backend.as_object_mut().unwrap().remove("weight");
        }
        assert_eq!(observed_weight(&unset, &target), None);
        // Two rules naming both Services that disagree.
        let mut two = route();
        let first = two["spec"]["rules"][0].clone();
        two["spec"]["rules"].as_array_mut().unwrap().push(first);
        assert_eq!(observed_weight(&two, &target), Some(0));
        two["spec"]["rules"][2]["backendRefs"][1]["weight"] = json!(10);
        two["spec"]["rules"][2]["backendRefs"][0]["weight"] = json!(90);
        assert_eq!(observed_weight(&two, &target), None);
    }

    fn with_parents(generation: i64, parents: Value) -> Value {
        let mut route = route();
        route["metadata"]["generation"] = json!(generation);
        route["status"] = json!({"parents": parents});
        route
    }

    fn parent(name: &str, status: &str, observed: i64) -> Value {
        json!({"parentRef": {"name": name}, "controllerName": "example.com/gw", "conditions": [
            {"type": "ResolvedRefs", "status": "True", "observedGeneration": observed},
            {"type": "Accepted", "status": status, "reason": "NotAllowedByListeners",
             "message": "no listener", "observedGeneration": observed},
        ]})
    }

    #[test]
    fn ready_when_every_parent_accepted_the_current_generation() {
        assert_eq!(
            readiness(&with_parents(
                4,
                json!([parent("a", "True", 4), parent("b", "True", 4)])
            )),
            (true, None)
        );
        let (ready, message) = readiness(&with_parents(
            5,
            json!([parent("a", "True", 5), parent("b", "True", 4)]),
        ));
        assert!(!ready);
        assert_eq!(
            message.unwrap(),
            "HTTPRoute default/web: parent b has not observed generation 5 yet"
        );
        let (ready, message) = readiness(&with_parents(4, json!([parent("a", "False", 4)])));
        assert!(!ready);
        assert_eq!(
            message.unwrap(),
            "HTTPRoute default/web: parent a did not accept it (NotAllowedByListeners: no listener)"
        );
        let (ready, message) = readiness(&with_parents(4, json!([])));
        assert!(!ready);
        assert_eq!(
            message.unwrap(),
            "HTTPRoute default/web: no Gateway has reported on it yet"
        );
        assert!(!readiness(&route()).0);
        let no_accepted = json!([{"parentRef": {"name": "a"}, "conditions": []}]);
        assert!(!readiness(&with_parents(4, no_accepted)).0);
    }

    #[test]
    fn routes_are_named_at_their_fields() {
        let router = GatewayApiRouter::new(GatewayApiTrafficRouting {
            http_route: Some("web".into()),
            http_routes: vec![HttpRouteRef { name: "a".into() }, HttpRouteRef { name: "b".into() }],
            namespace: Some("gateways".into()),
        });
        let fields: Vec<(String, String)> = router.routes().into_iter().map(|r| (r.name, r.field)).collect();
        assert_eq!(
            fields,
            [
                ("web", "gatewayAPI.httpRoute"),
                ("a", "gatewayAPI.httpRoutes[0].name"),
                ("b", "gatewayAPI.httpRoutes[1].name")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(router.namespace(&target()), "gateways");
        let missing = router.missing(&router.routes()[2], &target());
        assert_eq!(
            missing.to_string(),
            "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoutes[1].name: HTTPRoute gateways/b not found"
        );
    }

    pub(crate) fn http_route(stable: i64, canary: i64, hostname: &str) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "hostnames": [hostname],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                        "backendRefs": [{"name": "admin", "port": 80}],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [
                            {"name": "web-stable", "port": 80, "weight": stable},
                            {"name": "web-canary", "port": 80, "weight": canary},
                        ],
                    },
                ],
            },
        })
    }

    #[test]
    fn http_route_keeps_live_weights_and_git_changes_elsewhere() {
        let live = http_route(70, 30, "old.example.com");
        let mut desired = http_route(100, 0, "web.example.com");
        // Git also reorders the backends and adds a header match to the admin rule.
        let rules = desired["spec"]["rules"].as_array_mut().unwrap();
        rules[1]["backendRefs"].as_array_mut().unwrap().reverse();
        rules[0]["filters"] = json!([{"type": "RequestHeaderModifier"}]);
        let mut with = desired.clone();
        preserve_backend_weights(&mut desired, &live, None);
        preserve_backend_weights(&mut with, &live, Some(&[split()]));
        for result in [desired, with] {
            assert_eq!(result["spec"]["hostnames"], json!(["web.example.com"]));
            assert_eq!(
                result["spec"]["rules"][0]["filters"],
                json!([{"type": "RequestHeaderModifier"}])
            );
            assert_eq!(
                result["spec"]["rules"][1]["backendRefs"],
                json!([
                    {"name": "web-canary", "port": 80, "weight": 30},
                    {"name": "web-stable", "port": 80, "weight": 70},
                ])
            );
        }
    }

    #[test]
    fn http_route_rules_are_matched_by_matches_not_position() {
        let live = http_route(70, 30, "web.example.com");
        let mut desired = http_route(100, 0, "web.example.com");
        desired["spec"]["rules"].as_array_mut().unwrap().reverse();
        desired["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"backendRefs": [{"name": "x"}, {"name": "y", "weight": 5}]}));
        preserve_backend_weights(&mut desired, &live, None);
        assert_eq!(desired["spec"]["rules"][0]["backendRefs"][0]["weight"], 70);
        assert_eq!(
            desired["spec"]["rules"][2]["backendRefs"][1]["weight"], 5,
            "a new rule stays as Git says"
        );
    }

    #[test]
    fn with_rollouts_only_their_splits_are_preserved() {
        let mut live = http_route(70, 30, "web.example.com");
        let other = json!({"backendRefs": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]});
        live["spec"]["rules"].as_array_mut().unwrap().push(other);
        let mut desired = live.clone();
        desired["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(100);
        desired["spec"]["rules"][1]["backendRefs"][1]["weight"] = json!(0);
        desired["spec"]["rules"][2]["backendRefs"][0]["weight"] = json!(90);
        desired["spec"]["rules"][2]["backendRefs"][1]["weight"] = json!(10);
        preserve_backend_weights(&mut desired, &live, Some(&[split()]));
        assert_eq!(desired["spec"]["rules"][1]["backendRefs"][0]["weight"], 70);
        assert_eq!(
            desired["spec"]["rules"][2]["backendRefs"][0]["weight"], 90,
            "Git's own split applies"
        );

        // A Rollout in another namespace does not own this route's weights.
        let elsewhere = CanarySplit {
            namespace: "other".into(),
            ..split()
        };
        let mut untouched = http_route(100, 0, "web.example.com");
        let before = untouched.clone();
        preserve_backend_weights(&mut untouched, &live, Some(&[elsewhere]));
        assert_eq!(untouched, before);
    }

    pub(crate) fn header_and_mirror() -> Vec<ManagedRoute> {
        use crate::api::rollout::{HeaderRoutingMatch, RouteMatch};
        let exact = |v: &str| StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        };
        vec![
            ManagedRoute::Header {
                name: "canary-header".into(),
                matches: vec![
                    HeaderRoutingMatch {
                        header_name: "X-Canary".into(),
                        header_value: exact("yes"),
                    },
                    HeaderRoutingMatch {
                        header_name: "X-Tenant".into(),
                        header_value: StringMatch {
                            prefix: Some("int.".into()),
                            ..Default::default()
                        },
                    },
                ],
            },
            ManagedRoute::Mirror {
                name: "shadow".into(),
                percentage: 50,
                matches: vec![RouteMatch {
                    method: Some(exact("get")),
                    path: Some(StringMatch {
                        prefix: Some("/".into()),
                        ..Default::default()
                    }),
                    headers: Default::default(),
                }],
            },
        ]
    }

    #[test]
    fn managed_routes_go_before_the_weighted_rule_and_are_replaced_not_duplicated() {
        let body = desired_routes(&route(), &target(), &header_and_mirror(), "gatewayAPI.httpRoute").unwrap();
        assert_json_snapshot!(body["spec"]["rules"], @r#"
        [
          {
            "name": "sluice-canary-header",
            "matches": [
              {
                "path": {
                  "type": "PathPrefix",
                  "value": "/"
                },
                "headers": [
                  {
                    "type": "Exact",
                    "name": "X-Canary",
                    "value": "yes"
                  },
                  {
                    "type": "RegularExpression",
                    "name": "X-Tenant",
                    "value": "^int\\..*"
                  }
                ]
              }
            ],
            "backendRefs": [
              {
                "name": "web-canary",
                "port": 80,
                "weight": 100
              }
            ]
          },
          {
            "name": "sluice-shadow",
            "matches": [
              {
                "path": {
                  "type": "PathPrefix",
                  "value": "/"
                },
                "method": "GET"
              }
            ],
            "filters": [
              {
                "type": "RequestMirror",
                "requestMirror": {
                  "backendRef": {
                    "name": "web-canary",
                    "port": 80
                  },
                  "percent": 50
                }
              }
            ],
            "backendRefs": [
              {
                "name": "web-stable",
                "port": 80,
                "weight": 100
              },
              {
                "name": "web-canary",
                "port": 80,
                "weight": 0
              }
            ]
          },
          {
            "matches": [
              {
                "path": {
                  "type": "PathPrefix",
                  "value": "/"
                }
              }
            ],
            "backendRefs": [
              {
                "name": "web-stable",
                "port": 80,
                "weight": 100
              },
              {
                "name": "web-canary",
                "port": 80,
                "weight": 0
              }
            ]
          },
          {
            "matches": [
              {
                "path": {
                  "type": "PathPrefix",
                  "value": "/admin"
                }
              }
            ],
            "backendRefs": [
              {
                "name": "admin",
                "port": 80
              }
            ]
          }
        ]
        "#);
        // Applying again over the result changes nothing; an empty set leaves the route as it was.
        let mut applied = route();
        applied["spec"]["rules"] = body["spec"]["rules"].clone();
        let again = desired_routes(&applied, &target(), &header_and_mirror(), "gatewayAPI.httpRoute").unwrap();
        assert_eq!(again["spec"]["rules"], body["spec"]["rules"]);
        let removed = desired_routes(&applied, &target(), &[], "gatewayAPI.httpRoute").unwrap();
        assert_eq!(removed["spec"]["rules"], route()["spec"]["rules"]);
        // The mirror rule splits like the weighted rule: set_weight keeps both in step.
        let weighted = desired(&applied, &target(), 30, "gatewayAPI.httpRoute").unwrap();
        applied["spec"]["rules"] = weighted["spec"]["rules"].clone();
        assert_eq!(observed_weight(&applied, &target()), Some(30));
    }

    #[test]
    fn managed_routes_need_a_weighted_rule() {
        let mut lonely = route();
        lonely["spec"]["rules"] = json!([{"backendRefs": [{"name": "admin"}]}]);
        let error = desired_routes(&lonely, &target(), &header_and_mirror(), "gatewayAPI.httpRoute").unwrap_err();
        assert_eq!(error.field, "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute");
        assert!(desired_routes(&lonely, &target(), &[], "gatewayAPI.httpRoute").is_ok());
    }

    #[test]
    fn gitsync_keeps_the_managed_rules_sluice_wrote() {
        let mut live = route();
        let with_routes = desired_routes(&live, &target(), &header_and_mirror(), "gatewayAPI.httpRoute").unwrap();
        live["spec"]["rules"] = with_routes["spec"]["rules"].clone();
        for splits in [None, Some(&[split_default()][..])] {
            let mut git = route();
            preserve_backend_weights(&mut git, &live, splits);
            assert_eq!(
                git["spec"]["rules"],
                live["spec"]["rules"],
                "splits known: {}",
                splits.is_some()
            );
        }
    }

    fn split_default() -> CanarySplit {
        CanarySplit {
            namespace: "default".into(),
            ..split()
        }
    }
}
