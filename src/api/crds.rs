//! The CustomResourceDefinitions generated from the Rust types, in a stable order; `sluice crds`
//! prints them and `tests/crds.rs` checks the committed `crds/` files against them.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment, GitSync, Rollout};

/// Every Sluice CRD: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, GitSync, Experiment.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        rollout_crd(),
        analysis_crd(AnalysisTemplate::crd()),
        analysis_crd(ClusterAnalysisTemplate::crd()),
        analysis_crd(AnalysisRun::crd()),
        GitSync::crd(),
        experiment_crd(),
    ]
    .into_iter()
    .map(|crd| edit(crd, unwrap_descriptions))
    .collect()
}

/// The `openAPIV3Schema` of the Sluice CRD serving `kind` (as in `crds/sluice.dev.yaml`), if Sluice has
/// that kind.
pub fn schema(kind: &str) -> Option<Value> {
    all()
        .iter()
        .find(|crd| crd.spec.names.kind == kind)
        .and_then(open_api_schema)
}

/// A CRD's (first and only version's) `openAPIV3Schema` as JSON.
pub fn open_api_schema(crd: &CustomResourceDefinition) -> Option<Value> {
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

/// One CRD as a YAML document (without the `---` separator).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("CRDs serialize to YAML")
}

/// Every CRD as one multi-document YAML stream, `---` before each document.
pub fn to_yaml() -> String {
    all().iter().map(|crd| format!("---\n{}", crd_yaml(crd))).collect()
}

/// The Rollout CRD without the descriptions inside the embedded pod template. With them the CRD is
/// ~360 kB of JSON, beyond the 256 kB last-applied annotation of client-side `kubectl apply` (and of
/// Argo CD's default sync); Argo Rollouts trims its CRD the same way. `kubectl explain pod.spec`
/// still documents those fields.
fn rollout_crd() -> CustomResourceDefinition {
    edit(Rollout::crd(), |crd| {
        let template = crd
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/template/properties")
            .expect("the Rollout schema has spec.template");
        if let Value::Object(fields) = template {
            fields.values_mut().for_each(strip_descriptions);
        }
    })
}

/// An analysis CRD without the descriptions inside a job metric's embedded JobSpec, for the reason
/// given at [`rollout_crd`]: with them each analysis CRD is ~750 kB of YAML. `kubectl explain job.spec`
/// documents those fields.
fn analysis_crd(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    edit(crd, |crd| {
        let job_spec = crd
            .pointer_mut(
                "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/metrics/items/properties/provider\
                 /properties/job/properties/spec/properties",
            )
            .expect("the analysis schemas have spec.metrics[].provider.job.spec");
        if let Value::Object(fields) = job_spec {
            fields.values_mut().for_each(strip_descriptions);
        }
    })
}

/// The Experiment CRD without the descriptions inside its templates' pod templates, for the reason
/// given at [`rollout_crd`].
fn experiment_crd() -> CustomResourceDefinition {
    edit(Experiment::crd(), |crd| {
        let template = crd
            .pointer_mut(
                "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/templates/items/properties\
                 /template/properties",
            )
            .expect("the Experiment schema has spec.templates[].template");
        if let Value::Object(fields) = template {
            fields.values_mut().for_each(strip_descriptions);
        }
    })
}

/// Edits a CRD as JSON.
fn edit(crd: CustomResourceDefinition, change: impl FnOnce(&mut Value)) -> CustomResourceDefinition {
    let mut json = serde_json::to_value(crd).expect("CRDs serialize to JSON");
    change(&mut json);
    serde_json::from_value(json).expect("an edited CRD is still a CRD")
}

/// Joins the hard-wrapped lines of doc comments, keeping paragraph breaks: `kubectl explain` wraps
/// descriptions itself, and a line break it did not choose reads as a stray one.
fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get_mut("description") {
                *text = text
                    .split("\n\n")
                    .map(|paragraph| paragraph.lines().map(str::trim).collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(unwrap_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Removes every `description` from a schema and its subschemas. A property that happens to be named
/// `description` stays: only the keyword, whose value is a string, goes.
fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("description").is_some_and(Value::is_string) {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
