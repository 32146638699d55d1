//! The ready-to-use ClusterAnalysisTemplates in `analysis-templates/`: each parses, documents its
//! arguments, builds into a valid AnalysisRun with example arguments, has conditions that compile and
//! judge sensibly, and sends a query a real Prometheus accepts. The simulator's success-rate template
//! also measures the success rate the simulated traffic was generated with.
use sluice_e2e::kit as common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use common::{Prometheus, eventually, start_sim};
use serde_json::{Value, json};
use sluice::analysis::providers::Authentication;
use sluice::analysis::providers::prometheus::PrometheusQuery;
use sluice::analysis::template::{ArgumentSources, build_run_spec};
use sluice::analysis::{ResultValue, condition, rules};
use sluice::api::analysis::{AnalysisRunSpec, Argument, ClusterAnalysisTemplate, NoDataPolicy};
use sluice_sim::api::WriteOptions;

const DESCRIPTION: &str = "sluice.dev/description";
const STABLE_HASH: &str = "aaa111";
const CANARY_HASH: &str = "bbb222";

/// Example values for the arguments templates leave to the Rollout (no value, no valueFrom).
const REQUIRED_ARGS: &[(&str, &str)] = &[
    ("service", "checkout-canary"),
    ("ingress", "checkout"),
    ("cluster-name", "shop/checkout-canary/80/.*"),
];

struct Template {
    file: String,
    text: String,
    template: ClusterAnalysisTemplate,
}

fn templates() -> Vec<Template> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../analysis-templates"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("analysis-templates/ exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "expected the template set, found {files:?}");
    files
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let template: ClusterAnalysisTemplate =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: not a ClusterAnalysisTemplate: {e}"));
            Template { file, text, template }
        })
        .collect()
}

fn rollout() -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "checkout", "namespace": "shop"}})
}

/// The Rollout's arguments: the required ones from [`REQUIRED_ARGS`], the Prometheus address, and
/// `overrides`; everything else from the template's defaults.
fn rollout_args(prometheus: &str, overrides: &[(&str, &str)]) -> Vec<Argument> {
    let mut args: BTreeMap<&str, &str> = REQUIRED_ARGS.iter().copied().collect();
    args.insert("prometheus-address", prometheus);
    args.extend(overrides.iter().copied());
    args.into_iter()
        .map(|(name, value)| Argument {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        })
        .collect()
}

fn build(
    file: &str,
    templates: &[(&str, &ClusterAnalysisTemplate)],
    rollout: &Value,
    args: &[Argument],
) -> AnalysisRunSpec {
    let specs: Vec<(&str, &sluice::api::analysis::AnalysisTemplateSpec)> = templates
        .iter()
        .map(|(name, template)| (*name, &template.spec.template))
        .collect();
    let sources = ArgumentSources {
        rollout,
        stable_hash: Some(STABLE_HASH),
        latest_hash: Some(CANARY_HASH),
    };
    let run = build_run_spec(&specs, args, &sources, Default::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    rules::validate(&run).unwrap_or_else(|e| panic!("{file}: the run is invalid: {e}"));
    run
}

fn query_of(run: &AnalysisRunSpec, metric: usize) -> PrometheusQuery {
    let prometheus = run.metrics[metric]
        .provider
        .prometheus
        .as_ref()
        .expect("a Prometheus metric");
    PrometheusQuery {
        address: prometheus.address.clone(),
        query: prometheus.query.clone(),
        timeout: Duration::from_secs(10),
        headers: vec![],
        authentication: Authentication::None,
        insecure: false,
        sensitive: vec![],
    }
}

/// A result the condition must accept and one it must reject, by what the template measures.
fn good_and_bad(file: &str) -> (f64, f64) {
    if file.contains("success-rate") {
        (1.0, 0.5)
    } else if file.contains("latency") {
        (0.01, 5.0)
    } else {
        panic!("{file}: add its good and bad results to good_and_bad()")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_is_documented_valid_and_accepted_by_prometheus() {
    let prometheus = Prometheus::start(&[]).await;
    let rollout = rollout();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../analysis-templates/README.md"))
        .expect("analysis-templates/README.md");
    let templates = templates();
    for Template { file, text, template } in &templates {
        let name = template.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(
            format!("{name}.yaml"),
            *file,
            "{file}: metadata.name matches the file name"
        );
        assert!(
            text.contains("apiVersion: sluice.dev/v1alpha1") && text.contains("kind: ClusterAnalysisTemplate"),
            "{file}: apiVersion sluice.dev/v1alpha1, kind ClusterAnalysisTemplate"
        );
        assert!(readme.contains(&format!("`{name}`")), "{file}: listed in README.md");
        let description = template
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION))
            .unwrap_or_else(|| panic!("{file}: annotation {DESCRIPTION}"));
        let header: String = text
            .lines()
            .take_while(|line| line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for arg in &template.spec.args {
            assert!(
                description.contains(&arg.name),
                "{file}: {DESCRIPTION} documents argument {:?}",
                arg.name
            );
            assert!(
                header.contains(&format!("#   {} ", arg.name)),
                "{file}: the header comment documents argument {:?}",
                arg.name
            );
            assert!(
                readme.contains(&arg.name),
                "{file}: README.md mentions argument {:?}",
                arg.name
            );
        }

        let run = build(
            file,
            &[(name, template)],
            &rollout,
            &rollout_args(&prometheus.address, &[]),
        );
        let (good, bad) = good_and_bad(file);
        for (i, metric) in run.metrics.iter().enumerate() {
            let what = format!("{file}: metric {:?}", metric.name);
            assert_eq!(
                metric.on_no_data,
                Some(NoDataPolicy::Inconclusive),
                "{what}: explicit onNoData"
            );
            assert!(
                metric.count.is_some() && metric.interval.is_some() && metric.initial_delay.is_some(),
                "{what}: interval, count and initialDelay are set"
            );
            let text = serde_json::to_string(metric).unwrap();
            assert!(!text.contains("{{"), "{what}: a placeholder is left: {text}");
            let success = metric
                .success_condition
                .as_deref()
                .unwrap_or_else(|| panic!("{what}: successCondition"));
            let success = condition::compile(success).unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(failure) = metric.failure_condition.as_deref() {
                condition::compile(failure).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            let judge = |value: f64| {
                success
                    .evaluate(&ResultValue::Vector(vec![value]))
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
            };
            assert!(judge(good), "{what}: {good} passes");
            assert!(!judge(bad), "{what}: {bad} fails");

            let query = query_of(&run, i);
            let uses_hash = template.spec.args.iter().any(|a| a.name == "canary-hash");
            assert!(
                !uses_hash || query.query.contains(CANARY_HASH),
                "{what}: the query selects the canary's hash"
            );
            match query.run(Utc::now()).await {
                Ok(ResultValue::Vector(values)) => {
                    assert!(values.is_empty(), "{what}: no data yet, got {values:?}")
                }
                Ok(other) => panic!("{what}: expected an instant vector, got {other}"),
                Err(error) => panic!("{what}: Prometheus rejected the query: {error}\n{}", query.query),
            }
        }
    }

    // Templates of one family (sim-*, http-*, istio-*) share argument names, so a Rollout can reference
    // them together: their defaults must agree and their metric names differ.
    let mut families: BTreeMap<&str, Vec<&Template>> = BTreeMap::new();
    for template in &templates {
        let family = template.file.split('-').next().unwrap();
        families.entry(family).or_default().push(template);
    }
    for (family, members) in families.into_iter().filter(|(_, members)| members.len() > 1) {
        let refs: Vec<(&str, &ClusterAnalysisTemplate)> = members
            .iter()
            .map(|t| (t.template.metadata.name.as_deref().unwrap(), &t.template))
            .collect();
        let run = build(
            &format!("{family}-* together"),
            &refs,
            &rollout,
            &rollout_args(&prometheus.address, &[]),
        );
        assert_eq!(run.metrics.len(), members.len());
    }
}

/// A ReplicaSet whose pods fail 20% of requests behind a Service taking 50 rps, scraped by a real
/// Prometheus: sim-success-rate measures ≈ 0.8 (and fails at the default threshold), sim-latency-p99 a
/// p99 near the pods' 40 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_templates_measure_the_simulated_traffic() {
    let sim = start_sim().await;
    let options = WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    };
    let rs = sim.api.resource("apps", "replicasets").unwrap();
    let svc = sim.api.resource("", "services").unwrap();
    let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-bbb222"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "sluice.dev/pod-template-hash": CANARY_HASH},
                "annotations": {"sim.sluice.dev/error-rate": "0.2", "sim.sluice.dev/latency-ms": "40"}},
                "spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}});
    sim.api.create(&rs, "default", replica_set, &options).unwrap();
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "50"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    sim.api.create(&svc, "default", service, &options).unwrap();

    let prometheus = Prometheus::start(&[("sim", sim.addr.to_string(), "/sim/metrics")]).await;
    let history = format!(
        "count_over_time(sim_http_requests_total{{service=\"web\",pod_template_hash=\"{CANARY_HASH}\",code=\"200\"}}[15s])"
    );
    eventually(Duration::from_secs(60), "15 s of scraped samples", || async {
        prometheus.scalar(&history).await.filter(|samples| *samples >= 14.0)
    })
    .await;

    let templates = templates();
    let find = |name: &str| {
        &templates
            .iter()
            .find(|t| t.file == format!("{name}.yaml"))
            .unwrap_or_else(|| panic!("{name}.yaml"))
            .template
    };
    let rollout = json!({"metadata": {"name": "web", "namespace": "default"}});
    let measure = |name: &'static str, overrides: Vec<(&'static str, &'static str)>| {
        let mut overrides = overrides;
        overrides.push(("service", "web"));
        let run = build(
            name,
            &[(name, find(name))],
            &rollout,
            &rollout_args(&prometheus.address, &overrides),
        );
        let query = query_of(&run, 0);
        let success = condition::compile(run.metrics[0].success_condition.as_deref().unwrap()).unwrap();
        async move {
            let value = query
                .run(Utc::now())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", query.query));
            let passes = success.evaluate(&value).unwrap();
            (value, passes)
        }
    };

    let (value, passes) = measure("sim-success-rate", vec![]).await;
    let ResultValue::Vector(values) = &value else {
        panic!("sim-success-rate: expected a vector, got {value}")
    };
    assert_eq!(values.len(), 1, "one value: {value}");
    assert!((values[0] - 0.8).abs() <= 0.05, "success rate {value}, expected 0.8");
    assert!(!passes, "0.8 is below the default min-success-rate 0.95");
    let (_, passes) = measure("sim-success-rate", vec![("min-success-rate", "0.7")]).await;
    assert!(passes, "0.8 passes min-success-rate 0.7");
    let (value, _) = measure("sim-success-rate", vec![("min-requests", "100000")]).await;
    assert!(value.is_no_data(), "too few requests is no data, got {value}");
    let (value, _) = measure("sim-success-rate", vec![("canary-hash", STABLE_HASH)]).await;
    assert!(value.is_no_data(), "another hash has no traffic, got {value}");

    let (value, passes) = measure("sim-latency-p99", vec![]).await;
    let ResultValue::Vector(values) = &value else {
        panic!("sim-latency-p99: expected a vector, got {value}")
    };
    assert_eq!(values.len(), 1, "one value: {value}");
    assert!(
        (0.025..=0.05).contains(&values[0]),
        "p99 {value}s, expected in the 25–50 ms bucket"
    );
    assert!(passes, "{value}s is below the default max-latency-seconds 0.5");
    let (_, passes) = measure("sim-latency-p99", vec![("max-latency-seconds", "0.02")]).await;
    assert!(!passes, "{value}s is above 0.02");
    sim.shutdown().await;
}
