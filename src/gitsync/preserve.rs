//! The fields Sluice's rollout controller writes are not drift. Self-heal re-applies Git with a forced
//! server-side apply, and the lists the traffic routers write into (HTTPRoute rules, TrafficSplit
//! backends, VirtualService http routes, DestinationRule subsets) are atomic: applying Git's version
//! as it is would reset the canary weight in the middle of a rollout. So before applying, the live
//! values of exactly those fields are copied into Git's object; every other field stays as Git says.
//!
//! What is copied, per kind (matching entries by identity, not position, wherever there is one):
//! - HTTPRoute (gateway.networking.k8s.io): `weight` of backendRefs, by group/kind/namespace/name/port,
//!   in rules matched by rule name, else by `matches`, else by position;
//! - TrafficSplit (split.smi-spec.io): `weight` of backends, by service;
//! - VirtualService (networking.istio.io): `weight` of http[].route[], by destination host/subset/port,
//!   in routes matched by name, else by `match`, else by position;
//! - DestinationRule (networking.istio.io): the `sluice.dev/pod-template-hash` label of subsets, by name;
//! - Ingress (networking.k8s.io): the `<prefix>/canary`, `canary-weight` and `canary-weight-total`
//!   annotations, when the live Ingress is a canary (`<prefix>/canary: "true"`);
//! - Service: the `sluice.dev/pod-template-hash` selector key.
//!
//! Which weights are Sluice's: [`preserve_controller_fields`] does not know the Rollouts, so it treats
//! every rule or route with two or more backends as a canary split (a weight edited in Git for an
//! existing backend of such a rule is then not applied). [`preserve_controller_fields_with`] is exact:
//! given the [`ControllerFields`] of the Rollouts being applied, it keeps only the weights of rules
//! that route to both the canary and the stable Service of a Rollout, as the routers do.
use serde_json::{Map, Value};

use crate::rollout::hash::POD_TEMPLATE_HASH_LABEL;

/// The canary/stable pairs whose weights Sluice's traffic routers write, read from Rollouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerFields {
    splits: Vec<Split>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Split {
    namespace: String,
    canary_service: String,
    stable_service: String,
    /// Istio subsets, when the Rollout routes by DestinationRule subset.
    subsets: Option<(String, String)>,
}

impl ControllerFields {
    /// The splits of the sluice.dev Rollouts among `objects` (other objects are ignored; a Rollout
    /// without both canaryService and stableService writes no weights). `default_namespace` is used for
    /// Rollouts that set no namespace.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>, default_namespace: &str) -> Self {
        let splits = objects
            .into_iter()
            .filter(|o| {
                o["kind"] == "Rollout"
                    && o["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with(&format!("{}/", crate::api::GROUP)))
            })
            .filter_map(|rollout| {
                let canary = rollout.pointer("/spec/strategy/canary")?;
                let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
                let rule = canary.pointer("/trafficRouting/istio/destinationRule");
                Some(Split {
                    namespace: text(rollout, "/metadata/namespace").unwrap_or_else(|| default_namespace.to_string()),
                    canary_service: text(canary, "/canaryService")?,
                    stable_service: text(canary, "/stableService")?,
                    subsets: rule.and_then(|r| Some((text(r, "/canarySubsetName")?, text(r, "/stableSubsetName")?))),
                })
            })
            .collect();
        ControllerFields { splits }
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
    preserve(desired, live, Some(fields));
}

fn preserve(desired: &mut Value, live: &Value, fields: Option<&ControllerFields>) {
    let api_version = desired["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    let kind = desired["kind"].as_str().unwrap_or_default().to_string();
    let namespace = desired
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match (group, kind.as_str()) {
        ("gateway.networking.k8s.io", "HTTPRoute" | "GRPCRoute") => {
            let is_split = |backends: &[&Value]| {
                select_split(fields, backends, |split, b| {
                    let text = |f: &str| b.get(f).and_then(Value::as_str);
                    let names = |service: &str| {
                        text("name") == Some(service)
                            && text("namespace").unwrap_or(&namespace) == split.namespace
                            && text("group").unwrap_or_default().is_empty()
                            && text("kind").unwrap_or("Service") == "Service"
                    };
                    (names(&split.canary_service), names(&split.stable_service))
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
        ("split.smi-spec.io", "TrafficSplit") => {
            let (Some(desired_backends), Some(live_backends)) = (
                desired.pointer_mut("/spec/backends").and_then(Value::as_array_mut),
                live.pointer("/spec/backends").and_then(Value::as_array),
            ) else {
                return;
            };
            let all: Vec<&Value> = desired_backends.iter().collect();
            let split = select_split(fields, &all, |split, b| {
                let service = b.get("service").and_then(Value::as_str);
                (
                    service == Some(split.canary_service.as_str()) && namespace == split.namespace,
                    service == Some(split.stable_service.as_str()) && namespace == split.namespace,
                )
            });
            if split.is_some() {
                copy_weights(desired_backends, live_backends, &|b| b.get("service").cloned(), &split);
            }
        }
        ("networking.istio.io", "VirtualService") => {
            let is_split = |destinations: &[&Value]| {
                select_split(fields, destinations, |split, d| {
                    let host = d
                        .pointer("/destination/host")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let subset = d.pointer("/destination/subset").and_then(Value::as_str);
                    match &split.subsets {
                        Some((canary, stable)) => (subset == Some(canary), subset == Some(stable)),
                        None => (
                            same_host(host, &split.canary_service, &split.namespace, &namespace),
                            same_host(host, &split.stable_service, &split.namespace, &namespace),
                        ),
                    }
                })
            };
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
        ("networking.istio.io", "DestinationRule") => {
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
                    .and_then(|s| s.pointer(&format!("/labels/{}", escape(POD_TEMPLATE_HASH_LABEL))));
                if let (Some(hash), Some(fields)) = (live_hash, subset.as_object_mut()) {
                    let labels = object_entry(fields, "labels");
                    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
                }
            }
        }
        ("networking.k8s.io", "Ingress") => {
            let Some(live_annotations) = live.pointer("/metadata/annotations").and_then(Value::as_object) else {
                return;
            };
            let prefixes: Vec<&str> = live_annotations
                .iter()
                .filter(|(_, v)| v.as_str() == Some("true"))
                .filter_map(|(k, _)| k.strip_suffix("/canary"))
                .collect();
            let copied: Vec<(String, Value)> = prefixes
                .iter()
                .flat_map(|prefix| {
                    ["canary", "canary-weight", "canary-weight-total"].map(|key| format!("{prefix}/{key}"))
                })
                .filter_map(|key| live_annotations.get(&key).map(|v| (key, v.clone())))
                .collect();
            if copied.is_empty() {
                return;
            }
            let Some(metadata) = desired.get_mut("metadata").and_then(Value::as_object_mut) else {
                return;
            };
            let annotations = object_entry(metadata, "annotations");
            annotations.extend(copied);
        }
        ("", "Service") => {
            let pointer = format!("/spec/selector/{}", escape(POD_TEMPLATE_HASH_LABEL));
            let Some(hash) = live.pointer(&pointer) else { return };
            if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
                object_entry(spec, "selector").insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
            }
        }
        _ => {}
    }
}

/// Which backends of a rule get their live weight back: None when the rule is not a canary split.
/// Without `fields`, a rule of two or more backends is a split and all its backends keep their
/// weights; with them, only the canary and stable backends of a Rollout that the rule routes to both.
type Selected = Option<Vec<bool>>;

fn select_split(
    fields: Option<&ControllerFields>,
    backends: &[&Value],
    sides: impl Fn(&Split, &Value) -> (bool, bool),
) -> Selected {
    let Some(fields) = fields else {
        return (backends.len() >= 2).then(|| vec![true; backends.len()]);
    };
    let mut selected = vec![false; backends.len()];
    let mut any = false;
    for split in &fields.splits {
        let sides: Vec<(bool, bool)> = backends.iter().map(|b| sides(split, b)).collect();
        if sides.iter().any(|s| s.0) && sides.iter().any(|s| s.1) {
            any = true;
            for (i, (canary, stable)) in sides.into_iter().enumerate() {
                selected[i] |= canary || stable;
            }
        }
    }
    any.then_some(selected)
}

/// For each rule of `desired.spec.<rules>` that is a split, the live weights of its backends.
fn preserve_rules(
    desired: &mut Value,
    live: &Value,
    rules_key: &str,
    backends_key: &str,
    matches_key: &str,
    identity: &dyn Fn(&Value) -> Option<Value>,
    is_split: &dyn Fn(&[&Value]) -> Selected,
) {
    let live_rules = live
        .pointer(&format!("/spec/{rules_key}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(rules) = desired
        .pointer_mut(&format!("/spec/{rules_key}"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let positional = rules.len() == live_rules.len();
    for (index, rule) in rules.iter_mut().enumerate() {
        let live_rule = match rule.get("name").filter(|n| n.is_string()) {
            Some(name) => live_rules.iter().find(|r| r.get("name") == Some(name)),
            None => {
                let by_matches = live_rules
                    .iter()
                    .filter(|r| r.get("name").is_none() && r.get(matches_key) == rule.get(matches_key))
                    .collect::<Vec<_>>();
                match by_matches[..] {
                    [only] => Some(only),
                    _ if positional => live_rules.get(index),
                    _ => None,
                }
            }
        };
        let Some(live_backends) = live_rule.and_then(|r| r.get(backends_key)).and_then(Value::as_array) else {
            continue;
        };
        let Some(backends) = rule.get_mut(backends_key).and_then(Value::as_array_mut) else {
            continue;
        };
        let selected = {
            let all: Vec<&Value> = backends.iter().collect();
            is_split(&all)
        };
        copy_weights(backends, live_backends, identity, &selected);
    }
}

/// Copies `weight` from the live entry of the same identity into each selected desired entry.
fn copy_weights(
    desired: &mut [Value],
    live: &[Value],
    identity: &dyn Fn(&Value) -> Option<Value>,
    selected: &Selected,
) {
    let Some(selected) = selected else { return };
    for (entry, _) in desired.iter_mut().zip(selected).filter(|(_, s)| **s) {
        let Some(id) = identity(entry) else { continue };
        let mut same = live.iter().filter(|l| identity(l).as_ref() == Some(&id));
        // An identity listed twice cannot be matched safely: leave Git's value.
        let (Some(live_entry), None) = (same.next(), same.next()) else {
            continue;
        };
        // A live entry without a weight was not written by Sluice: Git's value stands.
        if let (Some(weight), Some(fields)) = (live_entry.get("weight"), entry.as_object_mut()) {
            fields.insert("weight".into(), weight.clone());
        }
    }
}

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

fn destination_identity(route: &Value) -> Option<Value> {
    let destination = route.get("destination")?;
    Some(Value::Array(vec![
        destination.get("host")?.clone(),
        destination.get("subset").cloned().unwrap_or(Value::Null),
        destination.get("port").cloned().unwrap_or(Value::Null),
    ]))
}

/// Whether Istio `host` (relative to `host_namespace`) names Service `service` in `namespace`.
fn same_host(host: &str, service: &str, namespace: &str, host_namespace: &str) -> bool {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default();
    let host_ns = parts.next().unwrap_or(host_namespace);
    !host.is_empty() && name == service && host_ns == namespace
}

fn object_entry<'a>(fields: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = fields.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// A key as a JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn http_route(stable: i64, canary: i64, hostname: &str) -> Value {
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

    fn rollout() -> Value {
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"strategy": {"canary": {"canaryService": "web-canary", "stableService": "web-stable"}}},
        })
    }

    fn fields() -> ControllerFields {
        ControllerFields::from_objects([&rollout()], "shop")
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
        preserve_controller_fields(&mut desired, &live);
        preserve_controller_fields_with(&mut with, &live, &fields());
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
        preserve_controller_fields(&mut desired, &live);
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
        preserve_controller_fields_with(&mut desired, &live, &fields());
        assert_eq!(desired["spec"]["rules"][1]["backendRefs"][0]["weight"], 70);
        assert_eq!(
            desired["spec"]["rules"][2]["backendRefs"][0]["weight"], 90,
            "Git's own split applies"
        );

        // A Rollout in another namespace does not own this route's weights.
        let mut elsewhere = rollout();
        elsewhere["metadata"]["namespace"] = json!("other");
        let mut untouched = http_route(100, 0, "web.example.com");
        let before = untouched.clone();
        preserve_controller_fields_with(
            &mut untouched,
            &live,
            &ControllerFields::from_objects([&elsewhere], "shop"),
        );
        assert_eq!(untouched, before);
    }

    #[test]
    fn traffic_split_backends_by_service() {
        let split = |canary: i64, stable: i64, service: &str| {
            json!({
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"service": service, "backends": [
                    {"service": "web-canary", "weight": canary},
                    {"service": "web-stable", "weight": stable},
                ]},
            })
        };
        let live = split(20, 80, "web");
        let mut desired = split(0, 100, "web-root");
        desired["spec"]["backends"].as_array_mut().unwrap().reverse();
        let mut with = desired.clone();
        preserve_controller_fields(&mut desired, &live);
        preserve_controller_fields_with(&mut with, &live, &fields());
        for result in [desired, with] {
            assert_eq!(result["spec"]["service"], "web-root");
            assert_eq!(
                result["spec"]["backends"],
                json!([{"service": "web-stable", "weight": 80}, {"service": "web-canary", "weight": 20}])
            );
        }
    }

    fn virtual_service(stable: i64, canary: i64, timeout: &str) -> Value {
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
        let live = virtual_service(60, 40, "5s");
        let mut desired = virtual_service(100, 0, "10s");
        desired["spec"]["http"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "other", "route": [{"destination": {"host": "x"}}]}));
        let mut with = desired.clone();
        preserve_controller_fields(&mut desired, &live);
        preserve_controller_fields_with(&mut with, &live, &fields());
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
        let mut by_subset = rollout();
        by_subset["spec"]["strategy"]["canary"]["trafficRouting"] = json!({"istio": {
            "virtualService": {"name": "web"},
            "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        }});
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
        preserve_controller_fields_with(
            &mut desired,
            &vs(75, 25),
            &ControllerFields::from_objects([&by_subset], "shop"),
        );
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
        preserve_controller_fields(&mut desired, &live);
        assert_eq!(
            desired,
            rule(
                json!({"app": "web", "tier": "front", POD_TEMPLATE_HASH_LABEL: "abc"}),
                "LEAST_REQUEST"
            )
        );
    }

    #[test]
    fn canary_ingress_keeps_its_canary_annotations() {
        let ingress = |annotations: Value, host: &str| {
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web-canary", "namespace": "shop", "annotations": annotations},
                "spec": {"rules": [{"host": host}]},
            })
        };
        let live = ingress(
            json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "30",
                "nginx.ingress.kubernetes.io/canary-weight-total": "1000",
                "team": "old",
            }),
            "old.example.com",
        );
        let mut desired = ingress(
            json!({"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "0", "team": "new"}),
            "web.example.com",
        );
        preserve_controller_fields(&mut desired, &live);
        assert_eq!(
            desired,
            ingress(
                json!({
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "30",
                    "team": "new",
                    "nginx.ingress.kubernetes.io/canary-weight-total": "1000",
                }),
                "web.example.com",
            )
        );

        // Not a canary Ingress: nothing is copied.
        let plain_live = ingress(json!({"nginx.ingress.kubernetes.io/canary-weight": "30"}), "a");
        let mut plain = ingress(json!({}), "a");
        preserve_controller_fields(&mut plain, &plain_live);
        assert_eq!(plain, ingress(json!({}), "a"));
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
