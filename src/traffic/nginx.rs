//! NGINX router: a canary Ingress `<stableIngress>-<rollout>-canary` cloned from the stable Ingress
//! (same class, hosts, TLS and paths, but only the paths to the stable Service, now pointing at the
//! canary Service) with `<prefix>/canary: "true"` and `<prefix>/canary-weight: "<w>"`
//! (`canary-weight-total` too when maxTrafficWeight is not 100). ingress-nginx then sends w of every
//! total requests for those hosts and paths to the canary.
//!
//! Sluice creates and owns the canary Ingress (ownerReference to the Rollout) and applies it whole, so
//! changes to the stable Ingress reach it at the next write; the stable Ingress itself is never written.
//! Ready once written: ingress-nginx reports no per-generation status.
use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::api::keys::HEADER_ROUTE_ANNOTATION;
use crate::api::rollout::NginxTrafficRouting;
use crate::api::spec_error::SpecError;
use crate::traffic::ManagedRoute;
use crate::traffic::routes::MatchKind;
use crate::traffic::{
    CanarySplit, ObjectKind, OwnedFields, RouteTarget, RouterError, RouterState, TrafficRouter, object_entry,
    object_name, spec_error,
};

pub(crate) const INGRESS: ObjectKind = ObjectKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "Ingress",
    plural: "ingresses",
};

/// The class annotation older setups use instead of spec.ingressClassName; the canary must keep it or
/// another controller (or none) would serve it.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The router for `trafficRouting.nginx`.
#[derive(Debug, Clone)]
pub struct NginxRouter {
    spec: NginxTrafficRouting,
}

/// The canary Ingress's name: `<stableIngress>-<rollout>-canary`.
pub fn canary_ingress_name(spec: &NginxTrafficRouting, target: &RouteTarget) -> String {
    format!("{}-{}-canary", spec.stable_ingress, target.rollout)
}

impl NginxRouter {
    pub fn new(spec: NginxTrafficRouting) -> Self {
        NginxRouter { spec }
    }

    async fn stable_ingress(&self, client: &kube::Client, target: &RouteTarget) -> Result<Value, RouterError> {
        let name = &self.spec.stable_ingress;
        INGRESS.get(client, &target.namespace, name).await?.ok_or_else(|| {
            spec_error(
                "nginx.stableIngress",
                format!("Ingress {}/{name} not found", target.namespace),
            )
            .into()
        })
    }
}

#[async_trait]
impl TrafficRouter for NginxRouter {
    fn name(&self) -> &'static str {
        "nginx"
    }

    async fn check(&self, client: &kube::Client, target: &RouteTarget) -> Result<Vec<SpecError>, RouterError> {
        let stable = match self.stable_ingress(client, target).await {
            Ok(stable) => stable,
            Err(RouterError::Invalid(e)) => return Ok(vec![e]),
            Err(e) => return Err(e),
        };
        let canary = INGRESS
            .get(client, &target.namespace, &canary_ingress_name(&self.spec, target))
            .await?;
        Ok(desired(&stable, canary.as_ref(), &self.spec, target, 0)
            .err()
            .into_iter()
            .collect())
    }

    async fn observe(&self, client: &kube::Client, target: &RouteTarget) -> Result<RouterState, RouterError> {
        let name = canary_ingress_name(&self.spec, target);
        let Some(canary) = INGRESS.get(client, &target.namespace, &name).await? else {
            return Ok(RouterState {
                canary_weight: None,
                ready: false,
                message: Some(format!("canary Ingress {}/{name} not created yet", target.namespace)),
            });
        };
        let canary_weight = observed_weight(&canary, &self.spec, target);
        Ok(RouterState {
            canary_weight,
            ready: true,
            message: canary_weight
                .is_none()
                .then(|| format!("canary Ingress {} carries no canary weight", object_name(&canary))),
        })
    }

    async fn set_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<(), RouterError> {
        let canary_weight = canary_weight.clamp(0, target.max_weight);
        let stable = self.stable_ingress(client, target).await?;
        let name = canary_ingress_name(&self.spec, target);
        let current = INGRESS.get(client, &target.namespace, &name).await?;
        let body = desired(&stable, current.as_ref(), &self.spec, target, canary_weight)?;
        let unchanged = current.as_ref().is_some_and(|c| {
            c.get("spec") == body.get("spec")
                && body["metadata"]["annotations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .all(|(k, v)| c.pointer("/metadata/annotations").and_then(|a| a.get(k)) == Some(v))
        });
        if unchanged {
            return Ok(());
        }
        INGRESS.apply(client, &target.namespace, &name, &body).await
    }

    async fn set_routes(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        routes: &[ManagedRoute],
    ) -> Result<(), RouterError> {
        let name = canary_ingress_name(&self.spec, target);
        let current = INGRESS.get(client, &target.namespace, &name).await?;
        let carries_route = current
            .as_ref()
            .and_then(|c| c.pointer("/metadata/annotations"))
            .is_some_and(|a| a.get(HEADER_ROUTE_ANNOTATION).is_some());
        if routes.is_empty() && !carries_route {
            return Ok(());
        }
        let stable = self.stable_ingress(client, target).await?;
        let weight = current
            .as_ref()
            .and_then(|c| observed_weight(c, &self.spec, target))
            .unwrap_or(0);
        let mut body = desired(&stable, current.as_ref(), &self.spec, target, weight)?;
        set_header_route(&mut body, &self.spec, routes)?;
        if current.as_ref().is_some_and(|c| {
            c.get("spec") == body.get("spec")
                && c.pointer("/metadata/annotations") == body.pointer("/metadata/annotations")
        }) {
            return Ok(());
        }
        INGRESS.apply(client, &target.namespace, &name, &body).await
    }
}

/// The canary-by-header annotations a managed header route writes (without the prefix).
const HEADER_ROUTE_KEYS: [&str; 3] = ["canary-by-header", "canary-by-header-value", "canary-by-header-pattern"];

/// Puts the header route of `routes` (at most one: NGINX has one canary-by-header) into the
/// canary Ingress `body`, or takes Sluice's away: exact → `canary-by-header-value`; prefix and regex
/// → `canary-by-header-pattern`. A mirror route is refused: NGINX cannot mirror.
pub fn set_header_route(
    body: &mut Value,
    spec: &NginxTrafficRouting,
    routes: &[ManagedRoute],
) -> Result<(), SpecError> {
    let prefix = spec.annotation_prefix_or_default();
    let annotations = object_entry(
        object_entry(body.as_object_mut().expect("an object"), "metadata"),
        "annotations",
    );
    annotations.remove(HEADER_ROUTE_ANNOTATION);
    for key in HEADER_ROUTE_KEYS {
        annotations.remove(&format!("{prefix}/{key}"));
    }
    if let Some(ManagedRoute::Mirror { name, .. }) = routes.iter().find(|r| matches!(r, ManagedRoute::Mirror { .. })) {
        return Err(spec_error(
            "managedRoutes",
            format!("nginx cannot mirror (managed route {name:?})"),
        ));
    }
    let (name, matches) = match routes {
        [] => return Ok(()),
        [ManagedRoute::Header { name, matches }] => (name, matches),
        _ => return Err(spec_error("managedRoutes", "nginx carries one header route at a time")),
    };
    let [only] = matches.as_slice() else {
        return Err(spec_error(
            "managedRoutes",
            "nginx matches one header (canary-by-header)",
        ));
    };
    annotations.insert(HEADER_ROUTE_ANNOTATION.into(), json!(name));
    annotations.insert(format!("{prefix}/canary-by-header"), json!(only.header_name));
    match MatchKind::of(&only.header_value) {
        MatchKind::Exact(value) => annotations.insert(format!("{prefix}/canary-by-header-value"), json!(value)),
        kind => annotations.insert(format!("{prefix}/canary-by-header-pattern"), json!(kind.as_regex())),
    };
    Ok(())
}

/// The header route annotations of the live canary Ingress Sluice wrote (marked by
/// [`HEADER_ROUTE_ANNOTATION`]): a weight change carries them over.
fn live_header_route(current: Option<&Value>, prefix: &str) -> Map<String, Value> {
    let Some(live) = current
        .and_then(|c| c.pointer("/metadata/annotations"))
        .and_then(Value::as_object)
    else {
        return Map::new();
    };
    if !live.contains_key(HEADER_ROUTE_ANNOTATION) {
        return Map::new();
    }
    let keys: Vec<String> = std::iter::once(HEADER_ROUTE_ANNOTATION.to_string())
        .chain(HEADER_ROUTE_KEYS.map(|k| format!("{prefix}/{k}")))
        .collect();
    live.iter()
        .filter(|(k, _)| keys.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The only annotations `additionalIngressAnnotations` may set: the canary family that routes by header
/// or cookie. Anything else (`configuration-snippet`, `server-snippet`, `auth-url`, …) would let whoever
/// can write a Rollout configure the ingress controller through Sluice's rights.
pub const ADDITIONAL_ANNOTATIONS_ALLOWED: [&str; 4] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// The longest value an additional annotation may have: a header value or a pattern, not a document.
const MAX_ANNOTATION_VALUE: usize = 1024;

/// The ingress controller writes these values into its configuration: no control characters (a newline
/// would start a directive of its own), a bounded length, and header and cookie names that are HTTP
/// tokens (RFC 9110).
fn check_annotation_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_ANNOTATION_VALUE {
        return Err(format!("{} bytes; at most {MAX_ANNOTATION_VALUE}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character (a newline, tab, …)".into());
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if matches!(key, "canary-by-header" | "canary-by-cookie") && (value.is_empty() || !value.chars().all(is_token_char))
    {
        return Err(format!(
            "{value:?} is not an HTTP header or cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    Ok(())
}

/// The spec errors of an NGINX routing block, each naming its field under `at`.
pub fn check_spec(spec: &NginxTrafficRouting, at: &str) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for (key, value) in &spec.additional_ingress_annotations {
        let field = format!("{at}.additionalIngressAnnotations.{key}");
        if !ADDITIONAL_ANNOTATIONS_ALLOWED.contains(&key.as_str()) {
            errors.push(SpecError {
                field,
                message: format!(
                    "not allowed: only the canary annotations {} may be set here (without the prefix)",
                    ADDITIONAL_ANNOTATIONS_ALLOWED.join(", ")
                ),
            });
        } else if let Err(why) = check_annotation_value(key, value) {
            errors.push(SpecError { field, message: why });
        }
    }
    if let Some(prefix) = &spec.annotation_prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            errors.push(SpecError {
                field: format!("{at}.annotationPrefix"),
                message: format!("{prefix:?} is not a DNS subdomain (e.g. nginx.ingress.kubernetes.io)"),
            });
        }
    }
    errors
}

/// The annotations the canary Ingress carries for `canary_weight`.
fn canary_annotations(stable: &Value, spec: &NginxTrafficRouting, target: &RouteTarget, w: i32) -> Map<String, Value> {
    let prefix = spec.annotation_prefix_or_default();
    let mut annotations = BTreeMap::new();
    if let Some(class) = stable
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        annotations.insert(CLASS_ANNOTATION.to_string(), class.clone());
    }
    for (key, value) in &spec.additional_ingress_annotations {
        annotations.insert(format!("{prefix}/{key}"), json!(value));
    }
    // Ours last: additionalIngressAnnotations cannot override the weight.
    annotations.insert(format!("{prefix}/canary"), json!("true"));
    annotations.insert(format!("{prefix}/canary-weight"), json!(w.to_string()));
    if target.max_weight != 100 {
        annotations.insert(
            format!("{prefix}/canary-weight-total"),
            json!(target.max_weight.to_string()),
        );
    }
    annotations.into_iter().collect()
}

/// `backend` pointing at the canary Service when it points at the stable one; None otherwise.
fn canary_backend(backend: &Value, target: &RouteTarget) -> Option<Value> {
    if backend.pointer("/service/name").and_then(Value::as_str) != Some(&target.stable_service) {
        return None;
    }
    let mut backend = backend.clone();
    backend["service"]["name"] = json!(target.canary_service);
    Some(backend)
}

/// The canary Ingress Sluice applies for `canary_weight`, cloned from `stable`: ingressClassName,
/// TLS, and the rules' paths (and defaultBackend) whose backend is the stable Service, pointed at the
/// canary Service. `current` is the live canary Ingress, if any. Errs when the stable Ingress routes
/// nothing to the stable Service, or the canary Ingress is not the Rollout's.
pub fn desired(
    stable: &Value,
    current: Option<&Value>,
    spec: &NginxTrafficRouting,
    target: &RouteTarget,
    canary_weight: i32,
) -> Result<Value, SpecError> {
    let name = canary_ingress_name(spec, target);
    if let Some(current) = current
        && !target.owns(current)
    {
        return Err(spec_error(
            "nginx.stableIngress",
            format!(
                "Ingress {}/{name} exists and is not owned by Rollout {}/{}",
                target.namespace, target.namespace, target.rollout
            ),
        ));
    }
    let mut canary_spec = Map::new();
    if let Some(class) = stable.pointer("/spec/ingressClassName") {
        canary_spec.insert("ingressClassName".into(), class.clone());
    }
    if let Some(backend) = stable
        .pointer("/spec/defaultBackend")
        .and_then(|b| canary_backend(b, target))
    {
        canary_spec.insert("defaultBackend".into(), backend);
    }
    let rules: Vec<Value> = stable
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| {
            let paths: Vec<Value> = rule
                .pointer("/http/paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|path| {
                    let backend = canary_backend(path.get("backend")?, target)?;
                    let mut path = path.clone();
                    path["backend"] = backend;
                    Some(path)
                })
                .collect();
            if paths.is_empty() {
                return None;
            }
            let mut rule = rule.clone();
            rule["http"]["paths"] = Value::Array(paths);
            Some(rule)
        })
        .collect();
    if rules.is_empty() && !canary_spec.contains_key("defaultBackend") {
        return Err(spec_error(
            "nginx.stableIngress",
            format!(
                "Ingress {} routes nothing to the stable Service {}",
                object_name(stable),
                target.stable_service
            ),
        ));
    }
    if !rules.is_empty() {
        canary_spec.insert("rules".into(), Value::Array(rules));
    }
    if let Some(tls) = stable.pointer("/spec/tls") {
        canary_spec.insert("tls".into(), tls.clone());
    }
    let mut annotations = canary_annotations(stable, spec, target, canary_weight);
    annotations.extend(live_header_route(current, spec.annotation_prefix_or_default()));
    Ok(json!({
        "apiVersion": INGRESS.api_version(),
        "kind": INGRESS.kind,
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "annotations": annotations,
            "ownerReferences": [target.owner_reference()],
        },
        "spec": canary_spec,
    }))
}

/// The canary weight of a canary Ingress: `<prefix>/canary-weight` while `<prefix>/canary` is "true",
/// and the total (default 100) is the target's max_weight.
pub fn observed_weight(canary: &Value, spec: &NginxTrafficRouting, target: &RouteTarget) -> Option<i32> {
    let prefix = spec.annotation_prefix_or_default();
    let annotations = canary.pointer("/metadata/annotations")?;
    let annotation = |key: &str| annotations.get(format!("{prefix}/{key}")).and_then(Value::as_str);
    if annotation("canary") != Some("true") {
        return None;
    }
    let total = annotation("canary-weight-total").map_or(Some(100), |t| t.trim().parse().ok())?;
    (total == target.max_weight).then_some(())?;
    annotation("canary-weight")?.trim().parse().ok()
}

/// The fields GitSync keeps (see [`OwnedFields`]): the canary annotations of canary Ingresses.
pub(crate) const OWNED_FIELDS: &[OwnedFields] = &[OwnedFields {
    group: INGRESS.group,
    kind: INGRESS.kind,
    preserve: preserve_canary_annotations,
}];

/// Keeps the live `<prefix>/canary`, `canary-weight` and `canary-weight-total` annotations, when the
/// live Ingress is a canary (`<prefix>/canary: "true"`).
fn preserve_canary_annotations(desired: &mut Value, live: &Value, _splits: Option<&[CanarySplit]>) {
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
        .flat_map(|prefix| ["canary", "canary-weight", "canary-weight-total"].map(|key| format!("{prefix}/{key}")))
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

#[cfg(test)]
mod tests {
    use insta::assert_json_snapshot;

    use super::*;
    use crate::traffic::tests::target;

    fn spec() -> NginxTrafficRouting {
        NginxTrafficRouting {
            stable_ingress: "web".into(),
            annotation_prefix: None,
            additional_ingress_annotations: BTreeMap::from([("canary-by-header".into(), "X-Canary".into())]),
        }
    }

    fn stable_ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default", "annotations": {
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
            }},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
                "rules": [
                    {"host": "web.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}},
                        {"path": "/docs", "pathType": "Prefix",
                         "backend": {"service": {"name": "docs", "port": {"number": 80}}}},
                    ]}},
                    {"host": "docs.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "docs", "port": {"number": 80}}}},
                    ]}},
                ],
            },
        })
    }

    #[test]
    fn clones_the_stable_ingress_towards_the_canary() {
        let body = desired(&stable_ingress(), None, &spec(), &target(), 30).unwrap();
        assert_json_snapshot!(body, @r#"
        {
          "apiVersion": "networking.k8s.io/v1",
          "kind": "Ingress",
          "metadata": {
            "name": "web-web-canary",
            "namespace": "default",
            "annotations": {
              "nginx.ingress.kubernetes.io/canary": "true",
              "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
              "nginx.ingress.kubernetes.io/canary-weight": "30"
            },
            "ownerReferences": [
              {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Rollout",
                "name": "web",
                "uid": "uid-1",
                "controller": true,
                "blockOwnerDeletion": true
              }
            ]
          },
          "spec": {
            "ingressClassName": "nginx",
            "rules": [
              {
                "host": "web.example.com",
                "http": {
                  "paths": [
                    {
                      "path": "/",
                      "pathType": "Prefix",
                      "backend": {
                        "service": {
                          "name": "web-canary",
                          "port": {
                            "number": 80
                          }
                        }
                      }
                    }
                  ]
                }
              }
            ],
            "tls": [
              {
                "hosts": [
                  "web.example.com"
                ],
                "secretName": "web-tls"
              }
            ]
          }
        }
        "#);
    }

    #[test]
    fn custom_prefix_and_weight_total() {
        let spec = NginxTrafficRouting {
            annotation_prefix: Some("custom.nginx.org".into()),
            ..spec()
        };
        let target = RouteTarget {
            max_weight: 1000,
            ..target()
        };
        let mut stable = stable_ingress();
        stable["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "nginx"});
        let body = desired(&stable, None, &spec, &target, 30).unwrap();
        assert_json_snapshot!(body["metadata"]["annotations"], @r#"
        {
          "custom.nginx.org/canary": "true",
          "custom.nginx.org/canary-by-header": "X-Canary",
          "custom.nginx.org/canary-weight": "30",
          "custom.nginx.org/canary-weight-total": "1000",
          "kubernetes.io/ingress.class": "nginx"
        }
        "#);
        assert_eq!(observed_weight(&body, &spec, &target), Some(30));
        // Read with the default total, the same annotations are not a consistent split.
        assert_eq!(observed_weight(&body, &spec, &super::tests::target()), None);
    }

    #[test]
    fn errors_for_a_stable_ingress_without_the_stable_service_or_a_foreign_canary() {
        let mut stable = stable_ingress();
        stable["spec"]["rules"][0]["http"]["paths"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        let error = desired(&stable, None, &spec(), &target(), 30).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.strategy.canary.trafficRouting.nginx.stableIngress: \
             Ingress default/web routes nothing to the stable Service web-stable"
        );
        let foreign = json!({"metadata": {"name": "web-web-canary"}});
        let error = desired(&stable_ingress(), Some(&foreign), &spec(), &target(), 30).unwrap_err();
        assert_eq!(
            error.message,
            "Ingress default/web-web-canary exists and is not owned by Rollout default/web"
        );
    }

    #[test]
    fn default_backend_alone_is_enough() {
        let stable = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"defaultBackend": {"service": {"name": "web-stable", "port": {"number": 80}}}}});
        let body = desired(&stable, None, &spec(), &target(), 5).unwrap();
        assert_eq!(body["spec"]["defaultBackend"]["service"]["name"], "web-canary");
        assert!(body["spec"].get("rules").is_none());
    }

    #[test]
    fn observed_weight_needs_the_canary_annotation() {
        let target = target();
        let body = desired(&stable_ingress(), None, &spec(), &target, 30).unwrap();
        assert_eq!(observed_weight(&body, &spec(), &target), Some(30));
        let mut off = body.clone();
        off["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"] = json!("false");
        assert_eq!(observed_weight(&off, &spec(), &target), None);
        assert_eq!(observed_weight(&json!({"metadata": {}}), &spec(), &target), None);
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
        preserve_canary_annotations(&mut desired, &live, None);
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
        preserve_canary_annotations(&mut plain, &plain_live, None);
        assert_eq!(plain, ingress(json!({}), "a"));
    }

    #[test]
    fn only_canary_annotations_may_be_added() {
        let mut spec = NginxTrafficRouting::default();
        for key in ADDITIONAL_ANNOTATIONS_ALLOWED {
            spec.additional_ingress_annotations.insert(key.into(), "x".into());
        }
        assert_eq!(check_spec(&spec, "nginx"), vec![]);
        for key in [
            "configuration-snippet",
            "server-snippet",
            "auth-url",
            "canary-weight",
            "canary",
            "",
            "nginx.ingress.kubernetes.io/configuration-snippet",
            " canary-by-header",
            "canary-by-header\n",
        ] {
            let mut bad = spec.clone();
            bad.additional_ingress_annotations.insert(key.into(), "x".into());
            let errors = check_spec(&bad, "spec.strategy.canary.trafficRouting.nginx");
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert_eq!(
                errors[0].field,
                format!("spec.strategy.canary.trafficRouting.nginx.additionalIngressAnnotations.{key}")
            );
        }
        for (key, value) in [
            ("canary-by-header", "X-Canary\nmore_set_headers x"),
            ("canary-by-header", "X Canary"),
            ("canary-by-header", ""),
            ("canary-by-cookie", "a;b"),
            ("canary-by-header-value", "on\r\n"),
            ("canary-by-header-pattern", &"a".repeat(MAX_ANNOTATION_VALUE + 1)),
        ] {
            let mut bad = spec.clone();
            bad.additional_ingress_annotations.insert(key.into(), value.into());
            let errors = check_spec(&bad, "nginx");
            assert_eq!(errors.len(), 1, "{key}={value:?}: {errors:?}");
            assert_eq!(errors[0].field, format!("nginx.additionalIngressAnnotations.{key}"));
        }
        let mut fine = spec.clone();
        fine.additional_ingress_annotations
            .insert("canary-by-header-pattern".into(), "^(beta|canary)$".into());
        assert_eq!(check_spec(&fine, "nginx"), vec![]);
        for prefix in ["", "Nginx.Ingress", "a..b", "x/y", "-a.b"] {
            let bad = NginxTrafficRouting {
                annotation_prefix: Some(prefix.into()),
                ..spec.clone()
            };
            let errors = check_spec(&bad, "nginx");
            assert_eq!(errors.len(), 1, "{prefix:?}: {errors:?}");
            assert_eq!(errors[0].field, "nginx.annotationPrefix");
        }
    }

    #[test]
    fn a_header_route_becomes_canary_by_header_and_survives_weight_changes() {
        let plain = NginxTrafficRouting {
            additional_ingress_annotations: BTreeMap::new(),
            ..spec()
        };
        let routes = crate::traffic::gateway_api::tests::header_and_mirror();
        let mut body = desired(&stable_ingress(), None, &plain, &target(), 0).unwrap();
        let error = set_header_route(&mut body, &plain, &routes).unwrap_err();
        assert!(error.message.contains("nginx cannot mirror"), "{}", error.message);
        let ManagedRoute::Header { name, matches } = &routes[0] else {
            panic!("a header route")
        };
        let one = vec![ManagedRoute::Header {
            name: name.clone(),
            matches: matches[..1].to_vec(),
        }];
        set_header_route(&mut body, &plain, &one).unwrap();
        assert_json_snapshot!(body["metadata"]["annotations"], @r#"
        {
          "nginx.ingress.kubernetes.io/canary": "true",
          "nginx.ingress.kubernetes.io/canary-weight": "0",
          "sluice.dev/header-route": "canary-header",
          "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
          "nginx.ingress.kubernetes.io/canary-by-header-value": "yes"
        }
        "#);
        // A later weight write keeps the route; removing it leaves only the weight.
        let live = body.clone();
        let mut reweighted = desired(&stable_ingress(), Some(&live), &plain, &target(), 40).unwrap();
        assert_eq!(
            reweighted["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"],
            "X-Canary"
        );
        set_header_route(&mut reweighted, &plain, &[]).unwrap();
        let keys: Vec<&String> = reweighted["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            keys,
            [
                "nginx.ingress.kubernetes.io/canary",
                "nginx.ingress.kubernetes.io/canary-weight"
            ]
        );
        // Prefix and regex values become a pattern.
        let mut prefixed = live.clone();
        let ManagedRoute::Header { matches, .. } = &routes[0] else {
            unreachable!()
        };
        let tenant = vec![ManagedRoute::Header {
            name: name.clone(),
            matches: matches[1..].to_vec(),
        }];
        set_header_route(&mut prefixed, &plain, &tenant).unwrap();
        assert_eq!(
            prefixed["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header-pattern"],
            "^int\\..*"
        );
    }
}
