//! `sluice lint`: checks Sluice manifests offline as the cluster would — first as the API server does
//! (the CRD schema: unknown fields refused as `kubectl apply`'s strict field validation refuses them,
//! types, bounds, patterns, names), then as the controller does (the InvalidSpec rules of a Rollout, the
//! rules an AnalysisRun's metrics must meet) — so CI fails where the cluster would, with the same field
//! paths and messages.
//!
//! An AnalysisTemplate's arguments without a value get theirs from each Rollout that uses it; linted on
//! its own, such an argument is given the placeholder [`PLACEHOLDER_ARGUMENT`], so a template is checked
//! as far as it can be without a Rollout.
use serde_json::Value;

use super::{ARGO_GROUP, Finding, group_of, object_label, sluice_schema};
use crate::analysis::rules;
use crate::analysis::template::{ArgumentSources, MetricLists, build_run_spec};
use crate::api::analysis::{AnalysisRun, AnalysisTemplateSpec, Argument};
use crate::api::rollout::Rollout;
use crate::rollout::validate;

/// The value a value-less template argument takes when a template is linted on its own.
pub const PLACEHOLDER_ARGUMENT: &str = "1";

/// What linting a stream found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Problems the cluster would refuse or report; any of them fails the lint.
    pub errors: Vec<Finding>,
    /// Documents of kinds Sluice does not define (Services, Deployments …), not checked.
    pub skipped: usize,
    /// Documents checked.
    pub checked: usize,
}

/// Lints every document of a stream.
pub fn lint(documents: &[Value]) -> Report {
    let mut report = Report::default();
    for (index, document) in documents.iter().enumerate() {
        let errors = lint_document(document);
        match errors {
            None => report.skipped += 1,
            Some(errors) => {
                report.checked += 1;
                let object = object_label(document);
                report.errors.extend(errors.into_iter().map(|(field, message)| Finding {
                    document: index + 1,
                    object: object.clone(),
                    field,
                    message,
                }));
            }
        }
    }
    report
}

/// The problems of one document as (field, message); None for a kind Sluice does not define.
fn lint_document(document: &Value) -> Option<Vec<(String, String)>> {
    let group = group_of(document);
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or_default();
    if group == ARGO_GROUP {
        return Some(vec![(
            "apiVersion".into(),
            format!("an Argo Rollouts {kind}: run `sluice convert` on it first"),
        )]);
    }
    if group != "sluice.dev" {
        return None;
    }
    if document.get("apiVersion").and_then(Value::as_str) != Some(super::SLUICE_API_VERSION) {
        return Some(vec![(
            "apiVersion".into(),
            format!("Sluice serves {}", super::SLUICE_API_VERSION),
        )]);
    }
    let Some(schema) = sluice_schema(kind) else {
        return Some(vec![("kind".into(), format!("sluice.dev has no kind {kind:?}"))]);
    };
    Some(schema_errors(schema, document).unwrap_or_else(|| controller_errors(kind, document)))
}

/// What the API server refuses: fields the schema does not declare, then the schema's rules on the
/// object as defaulted. None when the server would accept the object.
fn schema_errors(schema: &Value, document: &Value) -> Option<Vec<(String, String)>> {
    let mut object = document.clone();
    let mut errors: Vec<(String, String)> = sluice_crd_schema::prune(schema, &mut object)
        .into_iter()
        .map(|field| (field.clone(), format!("unknown field \"{field}\"")))
        .collect();
    // `kubectl create` names an object from generateName when it has no name (a random suffix is
    // added, so the prefix is what can be checked).
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let generate_name = object.pointer("/metadata/generateName").and_then(Value::as_str);
    match (name, generate_name) {
        (None, None) => errors.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        )),
        (Some(name), _) => {
            if let Some(message) = sluice_crd_schema::validate_object_name(name) {
                errors.push(("metadata.name".into(), message));
            }
        }
        (None, Some(prefix)) => {
            if let Some(message) = sluice_crd_schema::validate_object_name(&format!("{prefix}x")) {
                errors.push(("metadata.generateName".into(), message));
            }
        }
    }
    sluice_crd_schema::apply_defaults(schema, &mut object);
    errors.extend(
        sluice_crd_schema::validate(schema, &object)
            .into_iter()
            .map(|cause| (cause.field, cause.message)),
    );
    (!errors.is_empty()).then_some(errors)
}

/// What the controller reports (InvalidSpec for a Rollout, Error for an AnalysisRun) on an object
/// the API server accepted.
fn controller_errors(kind: &str, document: &Value) -> Vec<(String, String)> {
    let decode_error = |e: serde_json::Error| vec![("spec".to_string(), format!("cannot be read: {e}"))];
    match kind {
        "Rollout" => match serde_json::from_value::<Rollout>(document.clone()) {
            Ok(rollout) => validate::validate_as_written(&rollout)
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect(),
            Err(e) => decode_error(e),
        },
        "AnalysisTemplate" | "ClusterAnalysisTemplate" => {
            match serde_json::from_value::<AnalysisTemplateSpec>(document.get("spec").cloned().unwrap_or_default()) {
                Ok(spec) => template_errors(&spec),
                Err(e) => decode_error(e),
            }
        }
        "AnalysisRun" => match serde_json::from_value::<AnalysisRun>(document.clone()) {
            Ok(run) => rules::validate(&run.spec)
                .err()
                .map(|e| ("spec".to_string(), e))
                .into_iter()
                .collect(),
            Err(e) => decode_error(e),
        },
        // GitSync: its schema is its whole contract until it reconciles (sources are checked then).
        _ => Vec::new(),
    }
}

/// A template's metrics checked as the run built from it would be, value-less arguments given the
/// placeholder (see the module doc).
fn template_errors(spec: &AnalysisTemplateSpec) -> Vec<(String, String)> {
    let args: Vec<Argument> = spec
        .args
        .iter()
        .filter(|arg| {
            let secret = arg
                .value_from
                .as_ref()
                .is_some_and(|from| from.secret_key_ref.is_some());
            arg.value.is_none() && !secret
        })
        .map(|arg| Argument {
            name: arg.name.clone(),
            value: Some(PLACEHOLDER_ARGUMENT.to_string()),
            value_from: None,
        })
        .collect();
    let sources = ArgumentSources {
        rollout: &Value::Null,
        stable_hash: None,
        latest_hash: None,
    };
    let result = build_run_spec(&[("template", spec)], &args, &sources, MetricLists::default())
        .and_then(|run| rules::validate(&run));
    result.err().map(|e| ("spec".to_string(), e)).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rollout(spec: Value) -> Value {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"}, "spec": spec})
    }

    fn valid_spec() -> Value {
        json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}]}}
        })
    }

    fn fields(report: &Report) -> Vec<&str> {
        report.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_valid_rollout_and_other_kinds_pass() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let report = lint(&[rollout(valid_spec()), service]);
        assert_eq!(report.errors, vec![]);
        assert_eq!((report.checked, report.skipped), (1, 1));
    }

    #[test]
    fn schema_errors_name_the_field_as_the_api_server_does() {
        let mut spec = valid_spec();
        spec["replicas"] = json!(-1);
        spec["strategy"]["canary"]["stpes"] = json!([]);
        let report = lint(&[rollout(spec)]);
        assert_eq!(fields(&report), vec!["spec.strategy.canary.stpes", "spec.replicas"]);
        assert_eq!(report.errors[0].message, "unknown field \"spec.strategy.canary.stpes\"");
        assert_eq!(report.errors[0].object, "Rollout/web");
    }

    #[test]
    fn controller_rules_apply_once_the_schema_passes() {
        let mut spec = valid_spec();
        spec["strategy"]["canary"]["steps"] = json!([{"setWeight": 150}, {"plugin": {}}]);
        let report = lint(&[rollout(spec)]);
        assert_eq!(
            fields(&report),
            vec![
                "spec.strategy.canary.steps[0].setWeight",
                "spec.strategy.canary.steps[1].plugin"
            ]
        );
    }

    #[test]
    fn argo_objects_and_bad_names_are_refused() {
        let mut argo = rollout(valid_spec());
        argo["apiVersion"] = json!("argoproj.io/v1alpha1");
        let mut badly_named = rollout(valid_spec());
        badly_named["metadata"]["name"] = json!("Web_1");
        let report = lint(&[argo, badly_named]);
        assert_eq!(fields(&report), vec!["apiVersion", "metadata.name"]);
        assert!(report.errors[0].message.contains("sluice convert"));
    }

    #[test]
    fn templates_are_checked_with_placeholder_arguments() {
        let template = |condition: &str| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
                   "spec": {"args": [{"name": "service"}],
                            "metrics": [{"name": "rate", "interval": "1m", "successCondition": condition,
                                         "provider": {"prometheus": {"address": "http://127.0.0.1:9090",
                                                      "query": "rate{svc=\"{{args.service}}\"}"}}}]}})
        };
        assert_eq!(lint(&[template("result[0] >= 0.95")]).errors, vec![]);
        let report = lint(&[template("result[0] >=")]);
        assert_eq!(fields(&report), vec!["spec"]);
        assert!(
            report.errors[0].message.contains("rate"),
            "{}",
            report.errors[0].message
        );
    }

    #[test]
    fn hostile_documents_give_errors_not_panics() {
        let report = lint(&[
            json!(null),
            json!([1, 2]),
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Nope", "metadata": {"name": "x"}}),
            json!({"apiVersion": "sluice.dev/v9", "kind": "Rollout"}),
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "x"}, "spec": 7}),
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {}}),
        ]);
        assert_eq!(report.skipped, 2);
        assert_eq!(report.checked, 4);
        assert!(report.errors.len() >= 4, "{:?}", report.errors);
    }
}
