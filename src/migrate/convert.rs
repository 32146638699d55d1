//! `sluice convert`: Argo Rollouts manifests (argoproj.io Rollouts, AnalysisTemplates,
//! ClusterAnalysisTemplates, AnalysisRuns, Experiments) into Sluice manifests. Field names and semantics are Argo's
//! wherever Sluice has the concept, so most of a conversion is the API group; the rest is mapping the
//! few fields Sluice spells differently and reporting, per field, what could not be carried and why.
//!
//! Anything Sluice's schema does not declare is dropped (the API server would prune it anyway) and
//! reported; fields whose absence changes what a rollout does get a reason of their own. Step kinds
//! Sluice does not run (e.g. plugin steps) are kept, not dropped: removing a
//! gating step would promote versions the author meant to test, so the Rollout stays InvalidSpec, with
//! the step named, until someone decides.
use serde_json::{Map, Value, json};

use super::{ARGO_GROUP, Finding, SLUICE_API_VERSION, group_of, object_label, sluice_schema};
use crate::analysis::condition;

/// The Argo kinds Sluice has, with the same name.
const CONVERTED_KINDS: [&str; 5] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
    "Experiment",
];

/// Argo's routers Sluice has no counterpart for, and what the user can do instead.
const UNSUPPORTED_ROUTERS: [&str; 5] = ["alb", "ambassador", "appMesh", "traefik", "apisix"];

/// Step kinds Sluice runs; any other kind is kept and reported.
const KNOWN_STEP_KINDS: [&str; 7] = [
    "setWeight",
    "pause",
    "analysis",
    "experiment",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
];

/// Argo's Gateway API plugin, which Sluice has built in as `trafficRouting.gatewayAPI`.
const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";

/// The converted stream and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// Every document: Argo kinds converted, other objects (Services, Deployments …) unchanged, Argo
    /// kinds Sluice does not have left out.
    pub documents: Vec<Value>,
    /// Per field: what was mapped differently, dropped or kept but not runnable, and why.
    pub notes: Vec<Finding>,
}

/// Converts a stream of documents (see the module doc).
pub fn convert(documents: Vec<Value>) -> Conversion {
    let mut conversion = Conversion {
        documents: Vec::with_capacity(documents.len()),
        notes: Vec::new(),
    };
    for (index, document) in documents.into_iter().enumerate() {
        let mut notes = Notes {
            document: index + 1,
            object: object_label(&document),
            found: &mut conversion.notes,
        };
        if super::notifications::is_argo_configmap(&document) {
            let converted =
                super::notifications::convert_configmap(&document, &mut |field, message| notes.add(field, message));
            conversion.documents.push(converted);
            continue;
        }
        if group_of(&document) != ARGO_GROUP {
            conversion.documents.push(document);
            continue;
        }
        let kind = document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !CONVERTED_KINDS.contains(&kind.as_str()) {
            notes.add("kind", format!("left out: Sluice has no {kind}"));
            continue;
        }
        conversion.documents.push(convert_object(document, &kind, &mut notes));
    }
    conversion
}

/// Collects notes about one document.
struct Notes<'a> {
    document: usize,
    object: String,
    found: &'a mut Vec<Finding>,
}

impl Notes<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.found.push(Finding {
            document: self.document,
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}

fn convert_object(mut document: Value, kind: &str, notes: &mut Notes) -> Value {
    document["apiVersion"] = json!(SLUICE_API_VERSION);
    super::notifications::convert_subscriptions(&mut document, &mut |field, message| notes.add(field, message));
    if kind == "Rollout" {
        if let Some(routing) = document.pointer_mut("/spec/strategy/canary/trafficRouting") {
            convert_traffic_routing(routing, notes);
            if routing.as_object().is_some_and(Map::is_empty) {
                remove(&mut document, "/spec/strategy/canary/trafficRouting");
                notes.add(
                    "spec.strategy.canary.trafficRouting",
                    "removed, no router Sluice has was left: weights are approximated with replica counts",
                );
            }
        }
        report_unknown_steps(&document, "/spec/strategy/canary/steps", notes);
    }
    check_conditions(&document, notes);
    if let Some(schema) = sluice_schema(kind) {
        for field in sluice_crd_schema::prune(schema, &mut document) {
            notes.add(field, "dropped: Sluice has no such field");
        }
    }
    document
}

/// Maps the routers Sluice spells differently and removes the ones it does not have.
fn convert_traffic_routing(routing: &mut Value, notes: &mut Notes) {
    const AT: &str = "spec.strategy.canary.trafficRouting";
    let Some(routing) = routing.as_object_mut() else { return };
    for router in UNSUPPORTED_ROUTERS {
        if routing.remove(router).is_some() {
            notes.add(
                format!("{AT}.{router}"),
                "dropped: Sluice routes with Gateway API, Istio, NGINX or SMI; configure one of those",
            );
        }
    }
    if let Some(Value::Object(mut plugins)) = routing.remove("plugins") {
        if let Some(gateway) = plugins.remove(GATEWAY_API_PLUGIN) {
            routing.insert("gatewayAPI".into(), gateway);
            notes.add(
                format!("{AT}.plugins.{GATEWAY_API_PLUGIN}"),
                "mapped to trafficRouting.gatewayAPI (built into Sluice, no plugin)",
            );
        }
        for name in plugins.keys() {
            notes.add(format!("{AT}.plugins.{name}"), "dropped: Sluice has no router plugins");
        }
    }
    take_first(routing, "istio", "virtualServices", "virtualService", notes);
    take_first(routing, "nginx", "stableIngresses", "stableIngress", notes);
}

/// Argo's plural form of a router field (several VirtualServices, several Ingresses) to Sluice's
/// single one: the first is kept, the others reported.
fn take_first(routing: &mut Map<String, Value>, router: &str, plural: &str, single: &str, notes: &mut Notes) {
    let Some(Value::Object(router_spec)) = routing.get_mut(router) else {
        return;
    };
    let Some(Value::Array(items)) = router_spec.remove(plural) else {
        return;
    };
    let at = format!("spec.strategy.canary.trafficRouting.{router}.{plural}");
    let mut items = items.into_iter();
    match (router_spec.contains_key(single), items.next()) {
        (false, Some(first)) => {
            router_spec.insert(single.into(), first);
            notes.add(&at, format!("the first entry became {single}"));
        }
        (true, Some(_)) => notes.add(&at, format!("dropped: {single} is set; Sluice routes one")),
        (_, None) => {}
    }
    let extra = items.len();
    if extra > 0 {
        notes.add(at, format!("{extra} more dropped: Sluice routes one {single}"));
    }
}

/// Step kinds Sluice does not run: kept (see the module doc) and reported.
fn report_unknown_steps(document: &Value, pointer: &str, notes: &mut Notes) {
    let Some(steps) = document.pointer(pointer).and_then(Value::as_array) else {
        return;
    };
    for (i, step) in steps.iter().enumerate() {
        let Some(step) = step.as_object() else { continue };
        for kind in step.keys().filter(|k| !KNOWN_STEP_KINDS.contains(&k.as_str())) {
            notes.add(
                format!("spec.strategy.canary.steps[{i}].{kind}"),
                format!(
                    "kept, but Sluice does not run {kind} steps yet: the Rollout is InvalidSpec until the \
                     step is removed or replaced (an analysis step can gate instead)"
                ),
            );
        }
    }
}

/// Conditions are CEL in Sluice and expr in Argo; the common forms (`result[0] >= 0.95`) are the same
/// in both. Ones that do not compile are reported, as the run would end in Error.
fn check_conditions(document: &Value, notes: &mut Notes) {
    let Some(metrics) = document.pointer("/spec/metrics").and_then(Value::as_array) else {
        return;
    };
    for (i, metric) in metrics.iter().enumerate() {
        for key in ["successCondition", "failureCondition"] {
            let Some(expression) = metric.get(key).and_then(Value::as_str) else {
                continue;
            };
            if let Err(e) = condition::compile(expression) {
                notes.add(
                    format!("spec.metrics[{i}].{key}"),
                    format!("does not compile as CEL, which Sluice evaluates conditions with: {e}"),
                );
            }
        }
    }
}

fn remove(document: &mut Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(parent)) = document.pointer_mut(parent) {
        parent.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(yaml: &str) -> Vec<Value> {
        serde_saphyr::from_multiple(yaml).unwrap()
    }

    fn fields(conversion: &Conversion) -> Vec<&str> {
        conversion.notes.iter().map(|n| n.field.as_str()).collect()
    }

    const CANARY: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      trafficRouting:
        alb: {ingress: web, servicePort: 80}
        istio:
          virtualServices: [{name: vs1, routes: [primary]}, {name: vs2}]
      steps:
      - setWeight: 20
      - experiment: {duration: 1h, templates: []}
      - pause: {}
      someFutureField: true
---
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec: {ports: [{port: 80}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata: {name: e}
spec:
  duration: 1m
  templates: [{name: a, selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: a}}}}]
  analysisRunMetadata: {labels: {team: a}}
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterWorkflowTemplate
metadata: {name: w}
"#;

    #[test]
    fn a_canary_converts_with_each_loss_reported() {
        let conversion = convert(docs(CANARY));
        assert_eq!(conversion.documents.len(), 3, "the ClusterWorkflowTemplate is left out");
        let rollout = &conversion.documents[0];
        assert_eq!(rollout["apiVersion"], "sluice.dev/v1alpha1");
        let routing = &rollout["spec"]["strategy"]["canary"]["trafficRouting"];
        assert_eq!(
            routing,
            &json!({"istio": {"virtualService": {"name": "vs1", "routes": ["primary"]}}})
        );
        assert_eq!(
            rollout["spec"]["strategy"]["canary"]["steps"][1]["experiment"]["duration"],
            "1h"
        );
        assert!(rollout["spec"]["strategy"]["canary"].get("someFutureField").is_none());
        assert_eq!(conversion.documents[1]["kind"], "Service");
        let experiment = &conversion.documents[2];
        assert_eq!(experiment["apiVersion"], "sluice.dev/v1alpha1");
        assert_eq!(experiment["spec"]["duration"], "1m");
        assert!(experiment["spec"].get("analysisRunMetadata").is_none());
        assert_eq!(
            fields(&conversion),
            vec![
                "spec.strategy.canary.trafficRouting.alb",
                "spec.strategy.canary.trafficRouting.istio.virtualServices",
                "spec.strategy.canary.trafficRouting.istio.virtualServices",
                "spec.strategy.canary.someFutureField",
                "spec.analysisRunMetadata",
                "kind",
            ]
        );
        assert_eq!(conversion.notes[4].object, "Experiment/e");
        assert_eq!(conversion.notes[5].object, "ClusterWorkflowTemplate/w");
        assert_eq!(conversion.notes[5].document, 4);
    }

    #[test]
    fn the_gateway_api_plugin_becomes_the_built_in_router() {
        let conversion = convert(docs(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  strategy:
    canary:
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: web, namespace: apps}
          acme/other: {}
"#,
        ));
        let routing = &conversion.documents[0]["spec"]["strategy"]["canary"]["trafficRouting"];
        assert_eq!(
            routing,
            &json!({"gatewayAPI": {"httpRoute": "web", "namespace": "apps"}})
        );
        assert_eq!(
            fields(&conversion),
            vec![
                "spec.strategy.canary.trafficRouting.plugins.argoproj-labs/gatewayAPI",
                "spec.strategy.canary.trafficRouting.plugins.acme/other",
            ]
        );
    }

    #[test]
    fn a_router_sluice_lacks_leaves_replica_weighting_and_says_so() {
        let conversion = convert(docs(
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\n\
             spec: {strategy: {canary: {trafficRouting: {alb: {ingress: i}}}}}\n",
        ));
        assert!(
            conversion.documents[0]
                .pointer("/spec/strategy/canary/trafficRouting")
                .is_none()
        );
        assert_eq!(
            fields(&conversion),
            vec![
                "spec.strategy.canary.trafficRouting.alb",
                "spec.strategy.canary.trafficRouting"
            ]
        );
    }

    #[test]
    fn conditions_that_are_not_cel_are_reported_and_others_pass() {
        let conversion = convert(docs(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: ok
    successCondition: result[0] >= 0.95
    provider: {prometheus: {address: "http://p:9090", query: up}}
  - name: expr-only
    successCondition: "all(result, {# > 0})"
    provider: {prometheus: {address: "http://p:9090", query: up}}
"#,
        ));
        assert_eq!(fields(&conversion), vec!["spec.metrics[1].successCondition"]);
        assert_eq!(conversion.documents[0]["apiVersion"], "sluice.dev/v1alpha1");
    }

    #[test]
    fn other_objects_and_hostile_shapes_pass_through_without_panics() {
        let input = vec![
            json!(null),
            json!("text"),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "spec": {"strategy": {"canary": {
                "trafficRouting": "not a map", "steps": [1, null, {"pause": {}}]}}}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "spec": {"strategy": {"canary": {
                "trafficRouting": {"istio": {"virtualServices": "x"}, "plugins": []}}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
        ];
        let conversion = convert(input.clone());
        assert_eq!(conversion.documents.len(), 5);
        assert_eq!(conversion.documents[4], input[4]);
    }
}
