//! The Flux healthCheckExprs in deploy/flux/README.md, evaluated with a CEL interpreter against
//! sample Rollouts and GitSyncs: at most one expression holds for any object, and it is the right one.
//! Like Flux, the object's top-level fields are the variables and integers are int64.
use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Value as Cel};
use serde_json::{Value, json};

fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Cel::Int)
            .unwrap_or_else(|| Cel::Float(n.as_f64().unwrap())),
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => Cel::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// The healthCheckExprs entry for `kind` from the README's Kustomization.
fn exprs(kind: &str) -> HashMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/flux/README.md")).unwrap();
    let yaml = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let kustomization: Value = serde_saphyr::from_str(yaml).expect("the Kustomization is YAML");
    let entry = kustomization["spec"]["healthCheckExprs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no healthCheckExprs for {kind}"));
    assert_eq!(entry["apiVersion"], "sluice.dev/v1alpha1");
    ["inProgress", "failed", "current"]
        .into_iter()
        .map(|k| (k.to_string(), entry[k].as_str().unwrap().to_string()))
        .collect()
}

/// Which expressions hold for `obj` (an evaluation error counts as not holding, as Flux keeps waiting).
fn holding(exprs: &HashMap<String, String>, obj: &Value) -> Vec<String> {
    let env = Arc::new(Env::stdlib());
    let mut context = Context::with_env(env.clone());
    for (field, value) in obj.as_object().unwrap() {
        context.add_variable_from_value(field.clone(), to_cel(value));
    }
    let mut holding: Vec<String> = exprs
        .iter()
        .filter(|(_, source)| {
            let program = env.compile(source).unwrap_or_else(|e| panic!("{source}: {e:?}"));
            matches!(program.execute(&context), Ok(Cel::Bool(true)))
        })
        .map(|(name, _)| name.clone())
        .collect();
    holding.sort();
    holding
}

fn condition(kind: &str, status: bool, reason: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": ""})
}

fn object(kind: &str, status: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "web", "namespace": "default", "generation": 2},
           "spec": {}, "status": status})
}

#[test]
fn rollout_expressions() {
    let exprs = exprs("Rollout");
    let kstatus = |ready: bool, reconciling: bool, stalled: bool| {
        json!([
            condition("Ready", ready, "x"),
            condition("Reconciling", reconciling, "x"),
            condition("Stalled", stalled, "x")
        ])
    };
    let cases = [
        (
            "healthy",
            json!({"observedGeneration": 2, "conditions": kstatus(true, false, false)}),
            "current",
        ),
        (
            "progressing",
            json!({"observedGeneration": 2, "conditions": kstatus(false, true, false)}),
            "inProgress",
        ),
        (
            "stale generation",
            json!({"observedGeneration": 1, "conditions": kstatus(true, false, false)}),
            "inProgress",
        ),
        ("no conditions yet", json!({"observedGeneration": 1}), "inProgress"),
        (
            "stalled",
            json!({"observedGeneration": 2, "conditions": kstatus(false, false, true)}),
            "failed",
        ),
        // Abort written (by `sluice abort`) before the controller updated its conditions.
        (
            "aborted",
            json!({"observedGeneration": 2, "abort": true, "conditions": kstatus(false, true, false)}),
            "failed",
        ),
        (
            "invalid spec",
            json!({"observedGeneration": 2, "conditions": [condition("InvalidSpec", true, "InvalidSpec")]}),
            "failed",
        ),
    ];
    for (what, status, expected) in cases {
        assert_eq!(holding(&exprs, &object("Rollout", status)), [expected], "{what}");
    }
}

#[test]
fn gitsync_expressions() {
    let exprs = exprs("GitSync");
    let cases = [
        (
            "synced",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", true, "Succeeded")]}),
            Some("current"),
        ),
        (
            "pinned",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", true, "Pinned")]}),
            Some("current"),
        ),
        (
            "progressing",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", false, "Progressing"), condition("Reconciling", true, "Progressing")]}),
            Some("inProgress"),
        ),
        (
            "retrying",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", false, "SyncFailed"), condition("Reconciling", true, "Retrying")]}),
            Some("inProgress"),
        ),
        (
            "stale generation",
            json!({"observedGeneration": 1, "conditions": [condition("Ready", true, "Succeeded")]}),
            Some("inProgress"),
        ),
        (
            "stalled",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", false, "SyncFailed"), condition("Stalled", true, "SyncFailed")]}),
            Some("failed"),
        ),
        (
            "unhealthy",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", false, "HealthCheckFailed")]}),
            Some("failed"),
        ),
        (
            "suspended",
            json!({"observedGeneration": 2, "conditions": [condition("Ready", false, "Suspended")]}),
            None,
        ),
    ];
    for (what, status, expected) in cases {
        let expected: Vec<&str> = expected.into_iter().collect();
        assert_eq!(holding(&exprs, &object("GitSync", status)), expected, "{what}");
    }
}
