//! The committed CRDs are exactly what `sluice crds` prints, parse back, declare the expected names,
//! scopes, subresources and columns, and are structural schemas the API server accepts.
use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use sluice::api::crds;

const COMMITTED: &str = "crds/sluice.dev.yaml";
/// The Helm chart's copy: Helm installs CRDs only from the chart's own crds/ directory.
const HELM_CHART_COPY: &str = "deploy/helm/sluice/crds/sluice.dev.yaml";
const REGENERATE: &str =
    "run SLUICE_UPDATE_CRDS=1 cargo test --test crds (it writes crds/sluice.dev.yaml and the Helm chart's copy)";

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}; {REGENERATE}", path.display()))
}

#[test]
fn committed_crds_match_the_types() {
    let generated = crds::to_yaml();
    if std::env::var_os("SLUICE_UPDATE_CRDS").is_some() {
        for file in [COMMITTED, HELM_CHART_COPY] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            std::fs::write(&path, &generated).expect("writing the CRDs");
        }
    }
    let chart_copy = Path::new(env!("CARGO_MANIFEST_DIR")).join(HELM_CHART_COPY);
    let chart_copy = std::fs::read_to_string(&chart_copy).unwrap_or_default();
    assert!(
        chart_copy == generated,
        "{HELM_CHART_COPY} is out of date with the API types; {REGENERATE}"
    );
    let committed = committed();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{COMMITTED} is out of date with the API types (first difference at line {}: committed {:?}, generated {:?}); {REGENERATE}",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

fn parsed() -> BTreeMap<String, CustomResourceDefinition> {
    let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&committed()).expect("committed CRDs parse");
    assert_eq!(docs, crds::all(), "the committed CRDs parse back to the generated ones");
    docs.into_iter().map(|crd| (crd.spec.names.kind.clone(), crd)).collect()
}

#[test]
fn each_crd_has_its_names_scope_and_subresources() {
    let crds = parsed();
    let expected = [
        // kind, plural, scope, short names, status subresource, scale subresource
        ("Rollout", "rollouts", "Namespaced", vec!["ro"], true, true),
        (
            "AnalysisTemplate",
            "analysistemplates",
            "Namespaced",
            vec![],
            false,
            false,
        ),
        (
            "ClusterAnalysisTemplate",
            "clusteranalysistemplates",
            "Cluster",
            vec![],
            false,
            false,
        ),
        ("AnalysisRun", "analysisruns", "Namespaced", vec![], true, false),
        ("GitSync", "gitsyncs", "Namespaced", vec!["gs"], true, false),
        ("Experiment", "experiments", "Namespaced", vec!["exp"], true, false),
    ];
    assert_eq!(crds.len(), expected.len());
    for (kind, plural, scope, short_names, status, scale) in expected {
        let crd = &crds[kind];
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.sluice.dev").as_str())
        );
        assert_eq!(crd.spec.group, "sluice.dev");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.scope, scope, "{kind} scope");
        assert_eq!(
            crd.spec.names.short_names.clone().unwrap_or_default(),
            short_names,
            "{kind} short names"
        );
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["sluice".to_string()][..]));
        let [version] = crd.spec.versions.as_slice() else {
            panic!("{kind}: expected exactly one version");
        };
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let subresources = version.subresources.as_ref();
        assert_eq!(
            subresources.and_then(|s| s.status.as_ref()).is_some(),
            status,
            "{kind} status subresource"
        );
        assert_eq!(
            subresources.and_then(|s| s.scale.as_ref()).is_some(),
            scale,
            "{kind} scale subresource"
        );
    }
    let scale = crds["Rollout"].spec.versions[0]
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
}

#[test]
fn printer_columns() {
    let crds = parsed();
    let columns = |kind: &str| -> Vec<(String, String)> {
        crds[kind].spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.json_path.clone()))
            .collect()
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(
        columns("Rollout"),
        owned(&[
            ("Desired", ".spec.replicas"),
            ("Current", ".status.replicas"),
            ("Up-to-date", ".status.updatedReplicas"),
            ("Available", ".status.availableReplicas"),
            ("Phase", ".status.phase"),
            ("Step", ".status.currentStepIndex"),
            ("Weight", ".status.canaryWeight"),
            ("Age", ".metadata.creationTimestamp"),
        ])
    );
    assert_eq!(
        columns("AnalysisRun"),
        owned(&[("Phase", ".status.phase"), ("Age", ".metadata.creationTimestamp")])
    );
    assert_eq!(
        columns("GitSync"),
        owned(&[
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Revision", ".status.lastAppliedRevision"),
            ("Age", ".metadata.creationTimestamp"),
        ])
    );
}

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap()
}

/// The API server's structural-schema rules, as far as our generator could break them: every node
/// has a type (or is int-or-string / preserve-unknown-fields), no $ref or combinators carrying
/// structure, no properties next to additionalProperties, no uniqueItems, arrays have items, and
/// enum values and defaults are of the declared type.
fn structural_violations(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    let flag = |key: &str| node.get(key) == Some(&Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    let ty = node.get("type").and_then(Value::as_str);
    if ty.is_none() && !int_or_string && !flag("x-kubernetes-preserve-unknown-fields") {
        out.push(format!("{path}: no type"));
    }
    for key in ["$ref", "oneOf", "anyOf", "allOf", "not", "definitions", "$defs"] {
        if node.contains_key(key) {
            out.push(format!("{path}: {key} is not allowed here"));
        }
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        out.push(format!("{path}: properties and additionalProperties together"));
    }
    if flag("uniqueItems") {
        out.push(format!("{path}: uniqueItems: true"));
    }
    if node.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!("{path}: additionalProperties: false"));
    }
    let of_type = |v: &Value| match ty {
        _ if int_or_string => v.is_i64() || v.is_string(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        _ => true,
    };
    for value in node.get("enum").and_then(Value::as_array).into_iter().flatten() {
        if !of_type(value) {
            out.push(format!("{path}: enum value {value} is not a {ty:?}"));
        }
    }
    if let Some(default) = node.get("default")
        && !of_type(default)
    {
        out.push(format!("{path}: default {default} is not a {ty:?}"));
    }
    if ty == Some("array") {
        match node.get("items") {
            Some(items) => structural_violations(items, &format!("{path}[]"), out),
            None => out.push(format!("{path}: array without items")),
        }
    }
    if let Some(Value::Object(props)) = node.get("properties") {
        for (name, prop) in props {
            structural_violations(prop, &format!("{path}.{name}"), out);
        }
    }
    if let Some(additional @ Value::Object(_)) = node.get("additionalProperties") {
        structural_violations(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn schemas_are_structural() {
    for (kind, crd) in parsed() {
        let mut violations = vec![];
        structural_violations(&schema_of(&crd), &kind, &mut violations);
        assert!(
            violations.is_empty(),
            "{kind} schema is not structural:\n{}",
            violations.join("\n")
        );
    }
}

#[test]
fn every_field_outside_the_pod_template_is_documented() {
    fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
        if path.ends_with(".spec.template")
            || path.ends_with(".spec.templates.template")
            || path.ends_with(".provider.job.spec")
        {
            return; // trimmed on purpose: see crds::rollout_crd, crds::experiment_crd and crds::analysis_crd
        }
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (name, prop) in props {
                let child = format!("{path}.{name}");
                let is_root_field = ["apiVersion", "kind", "metadata"].contains(&name.as_str()) && !path.contains('.');
                if prop.get("description").is_none() && !is_root_field {
                    out.push(child.clone());
                }
                undocumented(prop, &child, out);
            }
        }
        if let Some(items) = schema.get("items") {
            undocumented(items, path, out);
        }
    }
    for (kind, crd) in parsed() {
        let mut missing = vec![];
        undocumented(&schema_of(&crd), &kind, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description (kubectl explain shows nothing):\n{}",
            missing.join("\n")
        );
    }
}

#[test]
fn rollout_schema_shapes_that_kubectl_and_the_server_rely_on() {
    let crds = parsed();
    let schema = schema_of(&crds["Rollout"]);
    let canary = &schema["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]["properties"];
    assert_eq!(canary["maxSurge"]["x-kubernetes-int-or-string"], json!(true));
    assert_eq!(canary["maxSurge"]["default"], json!("25%"));
    assert_eq!(canary["onAnalysisFailure"]["enum"], json!(["abort", "pause"]));
    // Unknown step kinds are kept so the controller can report them instead of silently dropping a step.
    assert_eq!(
        canary["steps"]["items"]["x-kubernetes-preserve-unknown-fields"],
        json!(true)
    );
    let template = &schema["properties"]["spec"]["properties"]["template"];
    assert!(template["properties"]["spec"]["properties"]["containers"].is_object());
    assert!(
        serde_json::to_string(&crds["Rollout"]).unwrap().len() < 256 * 1024,
        "the Rollout CRD must fit the last-applied annotation of client-side kubectl apply"
    );
    let status = &schema["properties"]["status"]["properties"];
    assert_eq!(
        status["phase"]["enum"],
        json!(["Healthy", "Progressing", "Paused", "Degraded"])
    );
    assert!(status["stableRS"].is_object());
}
