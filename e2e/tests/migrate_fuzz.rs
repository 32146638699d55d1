//! `sluice convert` and `sluice lint` on hostile manifests: objects generated from the CRD schemas (the
//! API fuzzer's generator), relabelled as Argo's and salted with fields Sluice does not have, must convert
//! without a panic into objects the Sluice schema keeps whole (nothing left for the API server to prune:
//! every loss was reported), and lint must judge anything without a panic.
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use sluice::migrate::{convert::convert, lint::lint};
use sluice_e2e::fuzz::{self, Kind};

/// Argo fields Sluice lacks, and shapes convert maps, put where Argo puts them.
fn argo_extras() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let extras: Vec<(&'static str, Value)> = vec![
        (
            "/spec/strategy/canary/trafficRouting",
            json!({"alb": {"ingress": "i", "servicePort": 80}}),
        ),
        (
            "/spec/strategy/canary/trafficRouting",
            json!({"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r"}, "x/y": 1}}),
        ),
        (
            "/spec/strategy/canary/trafficRouting",
            json!({"istio": {"virtualServices": [{"name": "a"}, {"name": "b"}]}}),
        ),
        (
            "/spec/strategy/canary/trafficRouting",
            json!({"nginx": {"stableIngresses": ["a", "b"]}, "traefik": {}}),
        ),
        (
            "/spec/strategy/canary/pingPong",
            json!({"pingService": "a", "pongService": "b"}),
        ),
        (
            "/spec/strategy/canary/steps",
            json!([{"experiment": {"templates": []}}, {"setWeight": 5}]),
        ),
        ("/spec/unknownArgoField", json!({"deep": [1, {"x": null}]})),
        (
            "/spec/metrics",
            json!([{"name": "m", "successCondition": "all(result, {# > 0})",
                                  "provider": {"prometheus": {"query": "up"}}}]),
        ),
    ];
    proptest::sample::subsequence(extras, 0..4)
}

fn set(document: &mut Value, pointer: &str, value: Value) {
    let mut node = document;
    for key in pointer.split('/').skip(1) {
        if !node.is_object() {
            *node = json!({});
        }
        node = node.as_object_mut().unwrap().entry(key).or_insert(Value::Null);
    }
    *node = value;
}

fn fuzz_kind(kind: Kind, cases: u32) {
    let schema = fuzz::crd_schema(kind);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (fuzz::document_strategy(kind), argo_extras());
    runner
        .run(&strategy, |(document, extras)| {
            lint(std::slice::from_ref(&document));
            let mut argo = document;
            argo["apiVersion"] = json!("argoproj.io/v1alpha1");
            for (pointer, value) in extras {
                set(&mut argo, pointer, value);
            }
            let conversion = convert(vec![argo]);
            prop_assert_eq!(conversion.documents.len(), 1);
            let mut converted = conversion.documents[0].clone();
            prop_assert_eq!(&converted["apiVersion"], "sluice.dev/v1alpha1");
            let left = sluice_crd_schema::prune(&schema, &mut converted);
            prop_assert!(
                left.is_empty(),
                "convert left fields the API server would prune: {left:?}"
            );
            lint(&conversion.documents);
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{kind}: {failure}"));
}

#[test]
fn hostile_argo_rollouts_convert_whole_and_lint_without_panics() {
    fuzz_kind(Kind::Rollout, 120);
}

#[test]
fn hostile_argo_analysis_objects_convert_whole_and_lint_without_panics() {
    fuzz_kind(Kind::AnalysisTemplate, 100);
    fuzz_kind(Kind::AnalysisRun, 50);
}
