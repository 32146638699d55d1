//! Istio router: sets the destination weights of a VirtualService's HTTP routes (those named in
//! `virtualService.routes`, else every HTTP route that routes to both sides). Canary and stable
//! destinations are told apart by host (the canary and stable Service names) or, with a
//! `destinationRule`, by subset (`canarySubsetName`/`stableSubsetName` of the DestinationRule's host).
//!
//! With a DestinationRule and the pod-template hashes in [`RouteTarget`] (`canary_hash`, `stable_hash`),
//! `set_weight` first points the subsets at the hashes (label `sluice.dev/pod-template-hash`), then sets
//! the weights, so a weight never reaches a subset that selects the wrong pods. Without hashes the
//! subsets are left as they are (the user's labels decide).
//!
//! `spec.http` and `spec.subsets` are atomic lists to server-side apply (the Istio CRDs preserve unknown
//! fields), so, as for Gateway API (see `gateway_api`), the router applies each list whole as observed
//! with only the weights/labels changed, with the observed resourceVersion as precondition; Argo CD
//! users ignore `.spec.http[].route[].weight` (and `.spec.subsets[].labels` with hashes) in
//! `ignoreDifferences`. Ready once written (Istio reports no per-generation status by default), and,
//! with hashes, once the subsets select them.
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::{IstioDestinationRule, IstioTrafficRouting};
use crate::api::spec_error::SpecError;
use crate::traffic::routes::{MatchKind, is_managed_rule, preserve_managed_rules, rule_name};
use crate::traffic::{
    CanarySplit, ManagedRoute, ObjectKind, OwnedFields, RouteTarget, RouterError, RouterState, TrafficRouter, agreed,
    apply_metadata, namespace_of, object_entry, object_name, pointer_escape, preserve_rules, retry_on_conflict,
    select_split, spec_error,
};

pub(crate) const VIRTUAL_SERVICE: ObjectKind = ObjectKind {
    group: "networking.istio.io",
    version: "v1beta1",
    kind: "VirtualService",
    plural: "virtualservices",
};

pub(crate) const DESTINATION_RULE: ObjectKind = ObjectKind {
    group: "networking.istio.io",
    version: "v1beta1",
    kind: "DestinationRule",
    plural: "destinationrules",
};

/// The router for `trafficRouting.istio`.
#[derive(Debug, Clone)]
pub struct IstioRouter {
    spec: IstioTrafficRouting,
}

/// How a VirtualService destination is recognised as canary or stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destinations {
    /// By host: the canary and stable Services (in `namespace`).
    Hosts {
        canary: String,
        stable: String,
        namespace: String,
    },
    /// By subset of the DestinationRule's host.
    Subsets {
        host: String,
        canary: String,
        stable: String,
        namespace: String,
    },
}

impl Destinations {
    /// By subset when a DestinationRule is configured (`destination_rule` is the live one; its
    /// spec.host names the host), else by host.
    pub fn new(spec: &IstioTrafficRouting, target: &RouteTarget, destination_rule: Option<&Value>) -> Self {
        match &spec.destination_rule {
            Some(rule) => Destinations::Subsets {
                host: destination_rule
                    .and_then(|d| d.pointer("/spec/host"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                canary: rule.canary_subset_name.clone(),
                stable: rule.stable_subset_name.clone(),
                namespace: target.namespace.clone(),
            },
            None => Destinations::Hosts {
                canary: target.canary_service.clone(),
                stable: target.stable_service.clone(),
                namespace: target.namespace.clone(),
            },
        }
    }

    /// Whether a route's `destination` is the canary (`canary` true) or stable side.
    fn is(&self, destination: &Value, canary: bool) -> bool {
        let host = destination.get("host").and_then(Value::as_str).unwrap_or_default();
        let subset = destination.get("subset").and_then(Value::as_str);
        match self {
            Destinations::Hosts {
                canary: c,
                stable: s,
                namespace,
            } => same_host(host, if canary { c } else { s }, namespace),
            Destinations::Subsets {
                host: h,
                canary: c,
                stable: s,
                namespace,
            } => same_host(host, h, namespace) && subset == Some(if canary { c } else { s }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Destinations::Hosts { canary, stable, .. } => format!("hosts {canary} and {stable}"),
            Destinations::Subsets {
                host, canary, stable, ..
            } => format!("subsets {canary} and {stable} of host {host}"),
        }
    }
}

/// Whether two Istio hosts name the same Service: `web`, `web.shop`, `web.shop.svc` and
/// `web.shop.svc.cluster.local` all do (short names are relative to `namespace`).
fn same_host(a: &str, b: &str, namespace: &str) -> bool {
    let service = |host: &str| {
        let mut parts = host.split('.');
        let name = parts.next().unwrap_or_default().to_string();
        (name, parts.next().unwrap_or(namespace).to_string())
    };
    !a.is_empty() && service(a) == service(b)
}

impl IstioRouter {
    /// One write of the VirtualService's `spec.http`: `desired` builds it from the live object (the
    /// destinations told apart by the DestinationRule's host, read once: this router never changes
    /// it); no write when unchanged; read, build and apply again on a conflict.
    async fn update_http(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        desired: impl Fn(&Value, &Destinations) -> Result<Value, SpecError>,
    ) -> Result<(), RouterError> {
        let rule = self.get_destination_rule(client, target).await?;
        let destinations = Destinations::new(&self.spec, target, rule.as_ref());
        retry_on_conflict(|| async {
            let vs = self.get_virtual_service(client, target).await?;
            let body = desired(&vs, &destinations)?;
            if body.pointer("/spec/http") == vs.pointer("/spec/http") {
                return Ok(());
            }
            let name = self.virtual_service_name()?;
            VIRTUAL_SERVICE.apply(client, &target.namespace, name, &body).await
        })
        .await
    }

    pub fn new(spec: IstioTrafficRouting) -> Self {
        IstioRouter { spec }
    }

    fn virtual_service_name(&self) -> Result<&str, SpecError> {
        let vs = self.spec.virtual_service.as_ref();
        vs.map(|v| v.name.as_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| spec_error("istio.virtualService", "virtualService.name is required"))
    }

    async fn get_virtual_service(&self, client: &kube::Client, target: &RouteTarget) -> Result<Value, RouterError> {
        let name = self.virtual_service_name()?;
        VIRTUAL_SERVICE
            .get(client, &target.namespace, name)
            .await?
            .ok_or_else(|| {
                spec_error(
                    "istio.virtualService.name",
                    format!("VirtualService {}/{name} not found", target.namespace),
                )
                .into()
            })
    }

    /// The live DestinationRule when one is configured.
    async fn get_destination_rule(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<Option<Value>, RouterError> {
        let Some(rule) = &self.spec.destination_rule else {
            return Ok(None);
        };
        let found = DESTINATION_RULE.get(client, &target.namespace, &rule.name).await?;
        let rule = found.ok_or_else(|| {
            spec_error(
                "istio.destinationRule.name",
                format!("DestinationRule {}/{} not found", target.namespace, rule.name),
            )
        })?;
        Ok(Some(rule))
    }
}

#[async_trait]
impl TrafficRouter for IstioRouter {
    fn name(&self) -> &'static str {
        "istio"
    }

    async fn check(&self, client: &kube::Client, target: &RouteTarget) -> Result<Vec<SpecError>, RouterError> {
        let mut errors = Vec::new();
        let rule = match self.get_destination_rule(client, target).await {
            Ok(rule) => rule,
            Err(RouterError::Invalid(e)) => {
                errors.push(e);
                return Ok(errors);
            }
            Err(e) => return Err(e),
        };
        if let (Some(spec), Some(live)) = (&self.spec.destination_rule, &rule) {
            errors.extend(check_subsets(live, spec));
        }
        match self.get_virtual_service(client, target).await {
            Ok(vs) => {
                let destinations = Destinations::new(&self.spec, target, rule.as_ref());
                errors.extend(desired_virtual_service(&vs, &self.spec, &destinations, target, 0).err());
            }
            Err(RouterError::Invalid(e)) => errors.push(e),
            Err(e) => return Err(e),
        }
        Ok(errors)
    }

    async fn observe(&self, client: &kube::Client, target: &RouteTarget) -> Result<RouterState, RouterError> {
        let invalid = |e: SpecError| RouterState {
            canary_weight: None,
            ready: false,
            message: Some(e.message),
        };
        let rule = match self.get_destination_rule(client, target).await {
            Err(RouterError::Invalid(e)) => return Ok(invalid(e)),
            other => other?,
        };
        let vs = match self.get_virtual_service(client, target).await {
            Err(RouterError::Invalid(e)) => return Ok(invalid(e)),
            other => other?,
        };
        let destinations = Destinations::new(&self.spec, target, rule.as_ref());
        let canary_weight = observed_weight(&vs, &self.spec, &destinations, target);
        let mut messages = Vec::new();
        if canary_weight.is_none() {
            messages.push(format!(
                "VirtualService {} carries no consistent split",
                object_name(&vs)
            ));
        }
        // Weights only count once the subsets select the pods they are meant for.
        let mut ready = true;
        if let (Some(spec), Some(live)) = (&self.spec.destination_rule, &rule)
            && let Ok(Some(wanted)) = desired_destination_rule(live, spec, target)
            && wanted.pointer("/spec/subsets") != live.pointer("/spec/subsets")
        {
            ready = false;
            messages.push(format!(
                "DestinationRule {} subsets do not select the current pod-template hashes yet",
                object_name(live)
            ));
        }
        Ok(RouterState {
            canary_weight,
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
        if let Some(spec) = &self.spec.destination_rule {
            retry_on_conflict(|| async {
                let Some(live) = self.get_destination_rule(client, target).await? else {
                    return Ok(());
                };
                match desired_destination_rule(&live, spec, target)? {
                    Some(body) if body.pointer("/spec/subsets") != live.pointer("/spec/subsets") => {
                        DESTINATION_RULE
                            .apply(client, &target.namespace, &spec.name, &body)
                            .await
                    }
                    _ => Ok(()),
                }
            })
            .await?;
        }
        self.update_http(client, target, |vs, destinations| {
            desired_virtual_service(vs, &self.spec, destinations, target, canary_weight)
        })
        .await
    }

    async fn set_routes(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        routes: &[ManagedRoute],
    ) -> Result<(), RouterError> {
        self.update_http(client, target, |vs, destinations| {
            desired_managed_routes(vs, &self.spec, destinations, routes)
        })
        .await
    }
}

/// The apply configuration that makes the VirtualService carry exactly `routes` as managed HTTP
/// routes (named `sluice-…`), prepended before the first weighted route (Istio takes the first match).
/// A header route matches the weighted route's matches plus the headers and goes to the canary alone;
/// a mirror route is a copy of the weighted route with its own matches and `mirror` +
/// `mirrorPercentage` to the canary.
pub fn desired_managed_routes(
    vs: &Value,
    spec: &IstioTrafficRouting,
    destinations: &Destinations,
    routes: &[ManagedRoute],
) -> Result<Value, SpecError> {
    let mut http: Vec<Value> = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    http.retain(|r| !is_managed_rule(r));
    if !routes.is_empty() {
        let mut without = vs.clone();
        without["spec"]["http"] = Value::Array(http.clone());
        let weighted_index = selected_routes(&without, spec, destinations)?
            .first()
            .copied()
            .unwrap_or_default();
        let weighted = http[weighted_index].clone();
        let canary = weighted
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("destination"))
            .find(|d| destinations.is(d, true))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let base_matches: Vec<Value> = weighted
            .get("match")
            .and_then(Value::as_array)
            .cloned()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec![json!({})]);
        let managed: Vec<Value> = routes
            .iter()
            .map(|route| match route {
                ManagedRoute::Header { name, matches } => {
                    let matches: Vec<Value> = base_matches
                        .iter()
                        .map(|base| {
                            let mut entry = base.clone();
                            let headers = object_entry(entry.as_object_mut().expect("a match is an object"), "headers");
                            for m in matches {
                                headers.insert(m.header_name.to_ascii_lowercase(), string_match(&m.header_value));
                            }
                            entry
                        })
                        .collect();
                    json!({
                        "name": rule_name(name),
                        "match": matches,
                        "route": [{"destination": canary, "weight": 100}],
                    })
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
                            if let Some(method) = &m.method {
                                entry.insert("method".into(), string_match(method));
                            }
                            if let Some(path) = &m.path {
                                entry.insert("uri".into(), string_match(path));
                            }
                            if !m.headers.is_empty() {
                                let headers = m
                                    .headers
                                    .iter()
                                    .map(|(n, v)| (n.to_ascii_lowercase(), string_match(v)))
                                    .collect();
                                entry.insert("headers".into(), Value::Object(headers));
                            }
                            Value::Object(entry)
                        })
                        .collect();
                    let mut copy = weighted.clone();
                    copy["name"] = json!(rule_name(name));
                    copy["match"] = Value::Array(matches);
                    copy["mirror"] = canary.clone();
                    copy["mirrorPercentage"] = json!({"value": f64::from(*percentage)});
                    copy
                }
            })
            .collect();
        http.splice(weighted_index..weighted_index, managed);
    }
    Ok(json!({
        "apiVersion": VIRTUAL_SERVICE.api_version(),
        "kind": VIRTUAL_SERVICE.kind,
        "metadata": apply_metadata(vs),
        "spec": {"http": http},
    }))
}

/// An Istio StringMatch (exact, prefix or regex, as Argo writes them).
fn string_match(value: &crate::api::rollout::StringMatch) -> Value {
    match MatchKind::of(value) {
        MatchKind::Exact(v) => json!({"exact": v}),
        MatchKind::Prefix(v) => json!({"prefix": v}),
        MatchKind::Regex(v) => json!({"regex": v}),
    }
}

/// Indexes of the HTTP routes to weight: those named in `routes` (each must exist and route to both
/// sides), else every route that routes to both sides (there must be one).
fn selected_routes(
    vs: &Value,
    spec: &IstioTrafficRouting,
    destinations: &Destinations,
) -> Result<Vec<usize>, SpecError> {
    let http = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let routes_both = |route: &Value| {
        let dests: Vec<&Value> = route
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("destination"))
            .collect();
        dests.iter().any(|d| destinations.is(d, true)) && dests.iter().any(|d| destinations.is(d, false))
    };
    let named = spec
        .virtual_service
        .as_ref()
        .map(|v| v.routes.as_slice())
        .unwrap_or_default();
    if named.is_empty() {
        let all: Vec<usize> = (0..http.len()).filter(|i| routes_both(&http[*i])).collect();
        if all.is_empty() {
            return Err(spec_error(
                "istio.virtualService.name",
                format!(
                    "VirtualService {} has no HTTP route to both {}",
                    object_name(vs),
                    destinations.describe()
                ),
            ));
        }
        return Ok(all);
    }
    named
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let field = format!("istio.virtualService.routes[{i}]");
            let found = http.iter().position(|r| r["name"] == name.as_str());
            let index = found.ok_or_else(|| {
                spec_error(
                    &field,
                    format!("VirtualService {} has no HTTP route named {name}", object_name(vs)),
                )
            })?;
            if !routes_both(&http[index]) {
                return Err(spec_error(
                    &field,
                    format!(
                        "HTTP route {name} of VirtualService {} does not route to both {}",
                        object_name(vs),
                        destinations.describe()
                    ),
                ));
            }
            Ok(index)
        })
        .collect()
}

/// The server-side apply configuration that puts `canary_weight` on the VirtualService `vs`: its
/// `spec.http` as observed with the canary and stable destination weights of the selected routes set.
pub fn desired_virtual_service(
    vs: &Value,
    spec: &IstioTrafficRouting,
    destinations: &Destinations,
    target: &RouteTarget,
    canary_weight: i32,
) -> Result<Value, SpecError> {
    let selected = selected_routes(vs, spec, destinations)?;
    let mut http = vs.pointer("/spec/http").cloned().unwrap_or_else(|| json!([]));
    for i in selected {
        for destination in http[i]["route"].as_array_mut().into_iter().flatten() {
            let Some(dest) = destination.get("destination") else {
                continue;
            };
            if destinations.is(dest, true) {
                destination["weight"] = json!(canary_weight);
            } else if destinations.is(dest, false) {
                destination["weight"] = json!(target.stable_weight(canary_weight));
            }
        }
    }
    Ok(json!({
        "apiVersion": VIRTUAL_SERVICE.api_version(),
        "kind": VIRTUAL_SERVICE.kind,
        "metadata": apply_metadata(vs),
        "spec": {"http": http},
    }))
}

/// The canary weight of the selected routes: Some(w) when each gives the canary w and stable max − w.
pub fn observed_weight(
    vs: &Value,
    spec: &IstioTrafficRouting,
    destinations: &Destinations,
    target: &RouteTarget,
) -> Option<i32> {
    let selected = selected_routes(vs, spec, destinations).ok()?;
    let http = vs.pointer("/spec/http").and_then(Value::as_array)?;
    let splits = selected.into_iter().map(|i| {
        let route = http[i].get("route").and_then(Value::as_array)?;
        let weight_of = |canary: bool| {
            let entry = route
                .iter()
                .find(|r| r.get("destination").is_some_and(|d| destinations.is(d, canary)))?;
            entry.get("weight").and_then(crate::traffic::weight_value)
        };
        let canary = weight_of(true)?;
        (weight_of(false)? == target.stable_weight(canary)).then_some(canary)
    });
    agreed(splits)
}

/// Errors for subsets the DestinationRule lacks.
pub fn check_subsets(rule: &Value, spec: &IstioDestinationRule) -> Vec<SpecError> {
    let subsets = rule.pointer("/spec/subsets").and_then(Value::as_array);
    let has = |name: &str| subsets.into_iter().flatten().any(|s| s["name"] == name);
    [
        ("istio.destinationRule.canarySubsetName", &spec.canary_subset_name),
        ("istio.destinationRule.stableSubsetName", &spec.stable_subset_name),
    ]
    .into_iter()
    .filter(|(_, name)| !has(name))
    .map(|(field, name)| {
        spec_error(
            field,
            format!("DestinationRule {} has no subset {name}", object_name(rule)),
        )
    })
    .collect()
}

/// The server-side apply configuration pointing the canary and stable subsets of `rule` at the target's
/// pod-template hashes: `spec.subsets` as observed with the hash label set. None when the target carries
/// no hashes.
pub fn desired_destination_rule(
    rule: &Value,
    spec: &IstioDestinationRule,
    target: &RouteTarget,
) -> Result<Option<Value>, SpecError> {
    if target.canary_hash.is_none() && target.stable_hash.is_none() {
        return Ok(None);
    }
    if let Some(error) = check_subsets(rule, spec).into_iter().next() {
        return Err(error);
    }
    let mut subsets = rule.pointer("/spec/subsets").cloned().unwrap_or_else(|| json!([]));
    for subset in subsets.as_array_mut().into_iter().flatten() {
        let hash = if subset["name"] == spec.canary_subset_name.as_str() {
            &target.canary_hash
        } else if subset["name"] == spec.stable_subset_name.as_str() {
            &target.stable_hash
        } else {
            continue;
        };
        if let Some(hash) = hash {
            subset["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
        }
    }
    Ok(Some(json!({
        "apiVersion": DESTINATION_RULE.api_version(),
        "kind": DESTINATION_RULE.kind,
        "metadata": apply_metadata(rule),
        "spec": {"subsets": subsets},
    })))
}

/// The fields GitSync keeps (see [`OwnedFields`]): the destination weights of VirtualServices and the
/// pod-template-hash label of DestinationRule subsets.
pub(crate) const OWNED_FIELDS: &[OwnedFields] = &[
    OwnedFields {
        group: VIRTUAL_SERVICE.group,
        kind: VIRTUAL_SERVICE.kind,
        preserve: preserve_route_weights,
    },
    OwnedFields {
        group: DESTINATION_RULE.group,
        kind: DESTINATION_RULE.kind,
        preserve: preserve_subset_hashes,
    },
];

/// Keeps the live `weight` of `http[].route[]` (matched by destination host/subset/port), in routes
/// matched by name, else by `match`, else by position.
fn preserve_route_weights(desired: &mut Value, live: &Value, splits: Option<&[CanarySplit]>) {
    let namespace = namespace_of(desired);
    let split_of = |destinations: &[&Value]| {
        select_split(splits, destinations, |split, d| {
            let host = d
                .pointer("/destination/host")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let subset = d.pointer("/destination/subset").and_then(Value::as_str);
            match &split.subsets {
                Some((canary, stable)) => (subset == Some(canary), subset == Some(stable)),
                None => (
                    host_names_service(host, &split.canary_service, &split.namespace, &namespace),
                    host_names_service(host, &split.stable_service, &split.namespace, &namespace),
                ),
            }
        })
    };
    // Sluice's managed routes (setHeaderRoute / setMirrorRoute) are not in Git: keep them, before the
    // first route that splits traffic.
    let is_weighted = |route: &Value| {
        let destinations: Vec<&Value> = route
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        split_of(&destinations).is_some()
    };
    preserve_managed_rules(desired, live, "http", &is_weighted);
    let is_split = |destinations: &[&Value]| split_of(destinations);
    preserve_rules(
        desired,
        live,
        "http",
        "route",
        "match",
        &destination_identity,
        &is_split,
    );
}

/// What tells a route destination apart from the others of its HTTP route.
fn destination_identity(route: &Value) -> Option<Value> {
    let destination = route.get("destination")?;
    Some(Value::Array(vec![
        destination.get("host")?.clone(),
        destination.get("subset").cloned().unwrap_or(Value::Null),
        destination.get("port").cloned().unwrap_or(Value::Null),
    ]))
}

/// Whether Istio `host` (relative to `host_namespace`) names Service `service` in `namespace`.
fn host_names_service(host: &str, service: &str, namespace: &str, host_namespace: &str) -> bool {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default();
    let host_ns = parts.next().unwrap_or(host_namespace);
    !host.is_empty() && name == service && host_ns == namespace
}

/// Keeps the live `sluice.dev/pod-template-hash` label of the subsets, matched by name.
fn preserve_subset_hashes(desired: &mut Value, live: &Value, _splits: Option<&[CanarySplit]>) {
    let (Some(subsets), Some(live_subsets)) = (
        desired.pointer_mut("/spec/subsets").and_then(Value::as_array_mut),
        live.pointer("/spec/subsets").and_then(Value::as_array),
    ) else {
        return;
    };
    for subset in subsets {
        let live_hash = live_subsets
            .iter()
            .find(|s| s.get("name").is_some() && s.get("name") == subset.get("name"))
            .and_then(|s| s.pointer(&format!("/labels/{}", pointer_escape(POD_TEMPLATE_HASH_LABEL))));
        if let (Some(hash), Some(fields)) = (live_hash, subset.as_object_mut()) {
            let labels = object_entry(fields, "labels");
            labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_json_snapshot;

    use super::*;
    use crate::api::rollout::IstioVirtualService;
    use crate::traffic::tests::{split, target};

    fn by_host(routes: &[&str]) -> IstioTrafficRouting {
        IstioTrafficRouting {
            virtual_service: Some(IstioVirtualService {
                name: "web".into(),
                routes: routes.iter().map(|r| r.to_string()).collect(),
            }),
            destination_rule: None,
        }
    }

    fn by_subset() -> IstioTrafficRouting {
        IstioTrafficRouting {
            destination_rule: Some(IstioDestinationRule {
                name: "web".into(),
                canary_subset_name: "canary".into(),
                stable_subset_name: "stable".into(),
            }),
            ..by_host(&["primary"])
        }
    }

    fn virtual_service() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "77"},
            "spec": {
                "hosts": ["web.example.com"],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
                            {"destination": {"host": "web-canary.default.svc.cluster.local"}, "weight": 0},
                        ],
                    },
                    {"name": "other", "route": [{"destination": {"host": "legacy"}}]},
                ],
            },
        })
    }

    fn subset_virtual_service() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "78"},
            "spec": {"http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web.default.svc.cluster.local", "subset": "canary"}, "weight": 0},
            ]}]},
        })
    }

    fn destination_rule() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web"}},
            ]},
        })
    }

    fn hosts() -> Destinations {
        Destinations::new(&by_host(&[]), &target(), None)
    }

    #[test]
    fn sets_destination_weights_by_host() {
        let body = desired_virtual_service(&virtual_service(), &by_host(&[]), &hosts(), &target(), 30).unwrap();
        assert_json_snapshot!(body, @r#"
        {
          "apiVersion": "networking.istio.io/v1beta1",
          "kind": "VirtualService",
          "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": "77"
          },
          "spec": {
            "http": [
              {
                "name": "primary",
                "route": [
                  {
                    "destination": {
                      "host": "web-stable",
                      "port": {
                        "number": 80
                      }
                    },
                    "weight": 70
                  },
                  {
                    "destination": {
                      "host": "web-canary.default.svc.cluster.local"
                    },
                    "weight": 30
                  }
                ]
              },
              {
                "name": "other",
                "route": [
                  {
                    "destination": {
                      "host": "legacy"
                    }
                  }
                ]
              }
            ]
          }
        }
        "#);
    }

    #[test]
    fn sets_destination_weights_by_subset_and_points_subsets_at_the_hashes() {
        let rule = destination_rule();
        let destinations = Destinations::new(&by_subset(), &target(), Some(&rule));
        let vs =
            desired_virtual_service(&subset_virtual_service(), &by_subset(), &destinations, &target(), 30).unwrap();
        assert_json_snapshot!(vs["spec"], @r#"
        {
          "http": [
            {
              "name": "primary",
              "route": [
                {
                  "destination": {
                    "host": "web",
                    "subset": "stable"
                  },
                  "weight": 70
                },
                {
                  "destination": {
                    "host": "web.default.svc.cluster.local",
                    "subset": "canary"
                  },
                  "weight": 30
                }
              ]
            }
          ]
        }
        "#);
        let target = RouteTarget {
            canary_hash: Some("abc123".into()),
            stable_hash: Some("def456".into()),
            ..target()
        };
        let spec = by_subset().destination_rule.unwrap();
        let body = desired_destination_rule(&rule, &spec, &target).unwrap().unwrap();
        assert_json_snapshot!(body, @r#"
        {
          "apiVersion": "networking.istio.io/v1beta1",
          "kind": "DestinationRule",
          "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": "5"
          },
          "spec": {
            "subsets": [
              {
                "name": "stable",
                "labels": {
                  "app": "web",
                  "sluice.dev/pod-template-hash": "def456"
                }
              },
              {
                "name": "canary",
                "labels": {
                  "app": "web",
                  "sluice.dev/pod-template-hash": "abc123"
                }
              }
            ]
          }
        }
        "#);
        assert_eq!(
            desired_destination_rule(&rule, &spec, &super::tests::target()).unwrap(),
            None
        );
    }

    #[test]
    fn route_errors_name_the_field() {
        let vs = virtual_service();
        let error = desired_virtual_service(&vs, &by_host(&["primary", "nope"]), &hosts(), &target(), 30).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.strategy.canary.trafficRouting.istio.virtualService.routes[1]: \
             VirtualService default/web has no HTTP route named nope"
        );
        let error = desired_virtual_service(&vs, &by_host(&["other"]), &hosts(), &target(), 30).unwrap_err();
        assert_eq!(
            error.message,
            "HTTP route other of VirtualService default/web does not route to both hosts web-canary and web-stable"
        );
        let mut none = vs.clone();
        none["spec"]["http"].as_array_mut().unwrap().remove(0);
        let error = desired_virtual_service(&none, &by_host(&[]), &hosts(), &target(), 30).unwrap_err();
        assert_eq!(
            error.field,
            "spec.strategy.canary.trafficRouting.istio.virtualService.name"
        );
        // Subsets of another host are not ours.
        let mut rule = destination_rule();
        rule["spec"]["host"] = json!("api");
        let destinations = Destinations::new(&by_subset(), &target(), Some(&rule));
        assert!(desired_virtual_service(&subset_virtual_service(), &by_subset(), &destinations, &target(), 1).is_err());
    }

    #[test]
    fn missing_subsets_are_errors() {
        let mut rule = destination_rule();
        rule["spec"]["subsets"].as_array_mut().unwrap().pop();
        let errors = check_subsets(&rule, &by_subset().destination_rule.unwrap());
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "spec.strategy.canary.trafficRouting.istio.destinationRule.canarySubsetName: \
             DestinationRule default/web has no subset canary"
        );
    }

    #[test]
    fn observed_weight_reads_the_selected_routes() {
        let target = target();
        assert_eq!(
            observed_weight(&virtual_service(), &by_host(&[]), &hosts(), &target),
            Some(0)
        );
        let mut vs = virtual_service();
        vs["spec"]["http"] =
            desired_virtual_service(&vs, &by_host(&[]), &hosts(), &target, 45).unwrap()["spec"]["http"].clone();
        assert_eq!(
            observed_weight(&vs, &by_host(&["primary"]), &hosts(), &target),
            Some(45)
        );
        vs["spec"]["http"][0]["route"][0]["weight"] = json!(10);
        assert_eq!(observed_weight(&vs, &by_host(&[]), &hosts(), &target), None);
        assert_eq!(observed_weight(&vs, &by_host(&["nope"]), &hosts(), &target), None);
    }

    #[test]
    fn hosts_match_short_and_qualified_names() {
        assert!(same_host("web", "web", "shop"));
        assert!(same_host("web.shop.svc.cluster.local", "web", "shop"));
        assert!(same_host("web.shop", "web.shop.svc", "default"));
        assert!(!same_host("web.other.svc.cluster.local", "web", "shop"));
        assert!(!same_host("webx", "web", "shop"));
        assert!(!same_host("", "", "shop"));
    }

    fn weighted_virtual_service(stable: i64, canary: i64, timeout: &str) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "hosts": ["web.example.com"],
                "http": [{
                    "name": "primary",
                    "timeout": timeout,
                    "route": [
                        {"destination": {"host": "web-stable"}, "weight": stable},
                        {"destination": {"host": "web-canary.shop.svc.cluster.local"}, "weight": canary},
                    ],
                }],
            },
        })
    }

    #[test]
    fn virtual_service_routes_by_name_and_destination() {
        let live = weighted_virtual_service(60, 40, "5s");
        let mut desired = weighted_virtual_service(100, 0, "10s");
        desired["spec"]["http"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "other", "route": [{"destination": {"host": "x"}}]}));
        let mut with = desired.clone();
        preserve_route_weights(&mut desired, &live, None);
        preserve_route_weights(&mut with, &live, Some(&[split()]));
        for result in [desired, with] {
            assert_eq!(result["spec"]["http"][1]["timeout"], "10s");
            assert_eq!(result["spec"]["http"][1]["route"][0]["weight"], 60);
            assert_eq!(result["spec"]["http"][1]["route"][1]["weight"], 40);
            assert_eq!(
                result["spec"]["http"][0],
                json!({"name": "other", "route": [{"destination": {"host": "x"}}]})
            );
        }
    }

    #[test]
    fn virtual_service_by_subset() {
        let by_subset = CanarySplit {
            subsets: Some(("canary".into(), "stable".into())),
            ..split()
        };
        let vs = |stable: i64, canary: i64| {
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"http": [{"route": [
                    {"destination": {"host": "web", "subset": "stable"}, "weight": stable},
                    {"destination": {"host": "web", "subset": "canary"}, "weight": canary},
                ]}]},
            })
        };
        let mut desired = vs(100, 0);
        preserve_route_weights(&mut desired, &vs(75, 25), Some(&[by_subset]));
        assert_eq!(desired, vs(75, 25));
    }

    #[test]
    fn destination_rule_subsets_keep_their_hashes() {
        let rule = |canary_labels: Value, policy: &str| {
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"simple": policy}}, "subsets": [
                    {"name": "canary", "labels": canary_labels},
                    {"name": "stable"},
                ]},
            })
        };
        let live = rule(json!({"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"}), "ROUND_ROBIN");
        let mut desired = rule(json!({"app": "web", "tier": "front"}), "LEAST_REQUEST");
        preserve_subset_hashes(&mut desired, &live, None);
        assert_eq!(
            desired,
            rule(
                json!({"app": "web", "tier": "front", POD_TEMPLATE_HASH_LABEL: "abc"}),
                "LEAST_REQUEST"
            )
        );
    }

    #[test]
    fn managed_routes_are_prepended_and_removed_again() {
        let routes = crate::traffic::gateway_api::tests::header_and_mirror();
        let body = desired_managed_routes(&virtual_service(), &by_host(&["primary"]), &hosts(), &routes).unwrap();
        assert_json_snapshot!(body["spec"]["http"], @r#"
        [
          {
            "name": "sluice-canary-header",
            "match": [
              {
                "headers": {
                  "x-canary": {
                    "exact": "yes"
                  },
                  "x-tenant": {
                    "prefix": "int."
                  }
                }
              }
            ],
            "route": [
              {
                "destination": {
                  "host": "web-canary.default.svc.cluster.local"
                },
                "weight": 100
              }
            ]
          },
          {
            "name": "sluice-shadow",
            "route": [
              {
                "destination": {
                  "host": "web-stable",
                  "port": {
                    "number": 80
                  }
                },
                "weight": 100
              },
              {
                "destination": {
                  "host": "web-canary.default.svc.cluster.local"
                },
                "weight": 0
              }
            ],
            "match": [
              {
                "method": {
                  "exact": "get"
                },
                "uri": {
                  "prefix": "/"
                }
              }
            ],
            "mirror": {
              "host": "web-canary.default.svc.cluster.local"
            },
            "mirrorPercentage": {
              "value": 50.0
            }
          },
          {
            "name": "primary",
            "route": [
              {
                "destination": {
                  "host": "web-stable",
                  "port": {
                    "number": 80
                  }
                },
                "weight": 100
              },
              {
                "destination": {
                  "host": "web-canary.default.svc.cluster.local"
                },
                "weight": 0
              }
            ]
          },
          {
            "name": "other",
            "route": [
              {
                "destination": {
                  "host": "legacy"
                }
              }
            ]
          }
        ]
        "#);
        let mut applied = virtual_service();
        applied["spec"]["http"] = body["spec"]["http"].clone();
        let again = desired_managed_routes(&applied, &by_host(&["primary"]), &hosts(), &routes).unwrap();
        assert_eq!(again["spec"]["http"], body["spec"]["http"]);
        let removed = desired_managed_routes(&applied, &by_host(&["primary"]), &hosts(), &[]).unwrap();
        assert_eq!(removed["spec"]["http"], virtual_service()["spec"]["http"]);
        // GitSync re-applying Git's VirtualService keeps them.
        let mut git = virtual_service();
        preserve_route_weights(&mut git, &applied, None);
        assert_eq!(git["spec"]["http"], applied["spec"]["http"]);
    }
}
