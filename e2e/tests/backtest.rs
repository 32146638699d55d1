//! `sluice analysis backtest` and `analysis run` against a real Prometheus scraping the simulator's
//! traffic: a healthy version, then one failing half its requests.
//!
//! Each period lasts `SLUICE_BACKTEST_PERIOD_SECS` seconds (default 20, to keep CI short; the issue's
//! "done when" is the same test with 45):
//!
//! ```text
//! SLUICE_BACKTEST_PERIOD_SECS=45 SLUICE_BACKTEST_PRINT=1 cargo nextest run -p sluice-e2e --test backtest --no-capture
//! ```
use sluice_e2e::kit as common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Prometheus, eventually, install_crds, start_sim};
use serde_json::{Value, json};
use sluice::analysis::backtest::{Window, rfc3339};
use sluice::api::analysis::{
    AnalysisPhase, AnalysisTemplate, Argument, ArgumentValueFrom, Metric, NoDataPolicy, PodTemplateHashValue,
};
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice::cli::ClusterArgs;
use sluice::cli::analysis::{
    self, AnalysisCommand, BacktestArgs, ReportFormat, RunArgs, TemplateArgs, backtest_spec, load_template, no_sources,
    run_spec,
};
use sluice_sim::Simulator;
use sluice_sim::api::{PatchBody, PatchKind, WriteOptions};

/// The error ratio of Service `{{args.service}}` over the last 10 s (`or vector(0)`: a healthy version
/// has no 500 series at all, and an empty numerator would be "no data").
const ERROR_RATIO: &str = "(sum(rate(sim_http_requests_total{service=\"{{args.service}}\",code=\"500\"}[10s])) or vector(0)) / \
     sum(rate(sim_http_requests_total{service=\"{{args.service}}\"}[10s]))";

fn period() -> Duration {
    let seconds = std::env::var("SLUICE_BACKTEST_PERIOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    Duration::from_secs(seconds.max(20))
}

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    }
}

/// A ReplicaSet of the Rollout `web` (owner `uid`) whose pods fail `error_rate` of their requests.
fn replica_set(hash: &str, revision: &str, replicas: i32, error_rate: &str, uid: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"),
            "labels": {"app": "web", "sluice.dev/pod-template-hash": hash},
            "annotations": {"sluice.dev/revision": revision},
            "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": uid}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", "sluice.dev/pod-template-hash": hash}},
            "template": {"metadata": {"labels": {"app": "web", "sluice.dev/pod-template-hash": hash},
                "annotations": {"sim.sluice.dev/error-rate": error_rate}},
                "spec": {"containers": [{"name": "app", "image": format!("web:{hash}")}]}}}})
}

/// An AnalysisRun of revision `hash` that started at `started` and ended `phase`.
fn analysis_run(sim: &Simulator, hash: &str, started: DateTime<Utc>, phase: &str) {
    let runs = sim.api.resource("sluice.dev", "analysisruns").unwrap();
    let run = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": format!("web-{hash}-1"),
            "labels": {"sluice.dev/rollout": "web", "sluice.dev/pod-template-hash": hash}},
        "spec": {"metrics": [{"name": "m", "provider": {"prometheus": {"address": "http://x", "query": "1"}}}]}});
    sim.api.create(&runs, "default", run, &options()).unwrap();
    let status = json!({"status": {"phase": phase, "startedAt": rfc3339(started)}}).to_string();
    let status_options = WriteOptions {
        subresource: Some("status".into()),
        ..options()
    };
    sim.api
        .patch(
            &runs,
            "v1alpha1",
            "default",
            &format!("web-{hash}-1"),
            PatchBody::new(PatchKind::Merge, status.as_bytes()),
            &status_options,
        )
        .unwrap();
}

fn template_args(
    file: Option<std::path::PathBuf>,
    args: &[(&str, &str)],
    kubeconfig: &std::path::Path,
) -> TemplateArgs {
    TemplateArgs {
        file,
        template: None,
        cluster_scope: false,
        args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        prometheus_address: None,
        cluster: ClusterArgs {
            namespace: Some("default".into()),
            kubeconfig: Some(kubeconfig.to_path_buf()),
            context: None,
            request_timeout: Duration::from_secs(10),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_tells_a_healthy_period_from_a_failing_one() {
    let period = period();
    let sim = start_sim().await;
    install_crds(&sim);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    // The Rollout `web` and its revisions: 1 (base, no canary), 2 (good, serving first), 3 (bad).
    let rollouts = sim.api.resource("sluice.dev", "rollouts").unwrap();
    let rollout = Rollout::example("web", 2, vec![CanaryStep::analysis("web-errors")]);
    let written = sim
        .api
        .create(
            &rollouts,
            "default",
            serde_json::to_value(&rollout).unwrap(),
            &options(),
        )
        .unwrap();
    let uid = written.object["metadata"]["uid"].as_str().unwrap().to_string();
    let replica_sets = sim.api.resource("apps", "replicasets").unwrap();
    sim.api
        .create(
            &replica_sets,
            "default",
            replica_set("base", "1", 0, "0", &uid),
            &options(),
        )
        .unwrap();
    sim.api
        .create(
            &replica_sets,
            "default",
            replica_set("good", "2", 2, "0", &uid),
            &options(),
        )
        .unwrap();
    let services = sim.api.resource("", "services").unwrap();
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "50"}},
        "spec": {"selector": {"app": "web", "sluice.dev/pod-template-hash": "good"}, "ports": [{"port": 80}]}});
    sim.api.create(&services, "default", service, &options()).unwrap();

    let prometheus = Prometheus::start(&[("sim", sim.addr.to_string(), "/sim/metrics")]).await;
    eventually(Duration::from_secs(30), "traffic scraped", || async {
        prometheus
            .scalar("sum(sim_http_requests_total{service=\"web\"})")
            .await
            .filter(|n| *n > 0.0)
    })
    .await;
    // The first instant has a full 10 s rate window behind it.
    let scraped = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
    let from = scraped + Duration::from_secs(10);
    tokio::time::sleep(period).await;

    // The switch: revision 3 fails half its requests and takes all the traffic.
    sim.api
        .create(
            &replica_sets,
            "default",
            replica_set("bad", "3", 2, "0.5", &uid),
            &options(),
        )
        .unwrap();
    eventually(Duration::from_secs(10), "bad pods ready", || async {
        let pods = sim.api.resource("", "pods").unwrap();
        let list = sim.api.list(&pods, Some("default"), &Default::default()).ok()?;
        let ready = list
            .items
            .iter()
            .filter_map(|p| serde_json::from_slice::<Value>(&p.json).ok())
            .filter(|p| p["metadata"]["labels"]["sluice.dev/pod-template-hash"] == "bad")
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        (ready == 2).then_some(())
    })
    .await;
    let switch = Utc::now();
    let patch = json!({"spec": {"selector": {"app": "web", "sluice.dev/pod-template-hash": "bad"}}}).to_string();
    sim.api
        .patch(
            &services,
            "v1",
            "default",
            "web",
            PatchBody::new(PatchKind::Merge, patch.as_bytes()),
            &options(),
        )
        .unwrap();
    analysis_run(&sim, "good", from, "Successful");
    analysis_run(&sim, "bad", switch + Duration::from_secs(15), "Failed");
    tokio::time::sleep(period).await;
    let to = Utc::now();

    // The template as a user writes it, from a file, with an argument.
    let file = dir.path().join("template.yaml");
    let mut template = AnalysisTemplate::example(
        "web-errors",
        vec![Metric::prometheus("errors", &prometheus.address, ERROR_RATIO).with_success("result[0] < 0.1")],
    );
    template.spec.args = vec![Argument {
        name: "service".into(),
        value: None,
        value_from: None,
    }];
    std::fs::write(&file, serde_json::to_string(&template).unwrap()).unwrap();
    let args = template_args(Some(file.clone()), &[("service", "web")], &kubeconfig);
    let (name, spec) = load_template(&args).await.unwrap();
    let run = run_spec(&name, &spec, &args, &no_sources()).unwrap();
    assert!(
        run.metrics[0]
            .provider
            .prometheus
            .as_ref()
            .unwrap()
            .query
            .contains("service=\"web\""),
        "args substituted"
    );
    let window = Window {
        from,
        to,
        every: Duration::from_secs(5),
    };
    let report = backtest_spec(&run, &window).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    if std::env::var_os("SLUICE_BACKTEST_PRINT").is_some() {
        println!("switch at {}", rfc3339(switch));
        println!("{}", serde_json::to_string_pretty(&json).unwrap());
        println!("{}", sluice::analysis::backtest::render_text(&report));
    }
    // The JSON shape of the issue.
    let evaluations = json["evaluations"].as_array().unwrap();
    assert!(evaluations.len() >= (2 * period.as_secs() / 5 - 2) as usize);
    for evaluation in evaluations {
        let keys: Vec<&str> = evaluation.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["time", "phase", "metrics"]);
        let metric = &evaluation["metrics"][0];
        let keys: Vec<&str> = metric.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "phase", "value"]);
        let time: DateTime<Utc> = evaluation["time"].as_str().unwrap().parse().unwrap();
        let phase = evaluation["phase"].as_str().unwrap();
        if time <= switch {
            assert_eq!(phase, "Successful", "{evaluation}");
        } else if time >= switch + Duration::from_secs(15) {
            assert_eq!(phase, "Failed", "{evaluation}");
        }
    }
    assert!(json["summary"]["failed"].as_u64().unwrap() >= (period.as_secs() - 15) / 5);
    let longest = &json["summary"]["longestFailing"];
    assert!(longest["to"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap() > switch);

    // A query that matches nothing: every instant is the metric's onNoData.
    let mut no_data = Metric::prometheus(
        "missing",
        &prometheus.address,
        "sim_http_requests_total{service=\"nope\"}",
    )
    .with_success("result[0] > 0");
    no_data.on_no_data = Some(NoDataPolicy::Failed);
    let mut empty = run.clone();
    empty.metrics = vec![no_data];
    let report = backtest_spec(&empty, &window).await.unwrap();
    assert!(
        report
            .evaluations
            .iter()
            .all(|e| e.phase == AnalysisPhase::Failed && e.metrics[0].value.as_deref() == Some("[]"))
    );

    // `analysis run`: now, the error ratio is 0.5 — Failed, exit code 2.
    let command = AnalysisCommand::Run(RunArgs {
        template: args.clone(),
        output: ReportFormat::Json,
    });
    let error = analysis::run(command).await.unwrap_err();
    assert_eq!(error.exit_code(), 2, "{error}");

    // --revisions with the Rollout's own template in the cluster: revision 2 passed, 3 was caught.
    let templates = sim.api.resource("sluice.dev", "analysistemplates").unwrap();
    let mut in_cluster = AnalysisTemplate::example(
        "web-errors",
        vec![
            Metric::prometheus(
                "errors",
                &prometheus.address,
                &ERROR_RATIO.replace("service=\"{{args.service}}\"", "pod_template_hash=\"{{args.hash}}\""),
            )
            .with_success("result[0] < 0.1"),
        ],
    );
    in_cluster.spec.args = vec![Argument {
        name: "hash".into(),
        value: None,
        value_from: Some(ArgumentValueFrom {
            pod_template_hash_value: Some(PodTemplateHashValue::Latest),
            ..Default::default()
        }),
    }];
    sim.api
        .create(
            &templates,
            "default",
            serde_json::to_value(&in_cluster).unwrap(),
            &options(),
        )
        .unwrap();
    let revisions = BacktestArgs {
        template: template_args(None, &[], &kubeconfig),
        from: "-1h".into(),
        to: "now".into(),
        every: Duration::from_secs(5),
        revisions: true,
        rollout: Some("web".into()),
        output: ReportFormat::Text,
    };
    let replays = analysis::revisions::replay(&revisions).await.unwrap();
    let verdicts: Vec<(&str, AnalysisPhase)> = replays
        .iter()
        .map(|r| (r.revision.revision.as_str(), r.would))
        .collect();
    assert_eq!(
        verdicts,
        [("2", AnalysisPhase::Successful), ("3", AnalysisPhase::Failed)]
    );
    assert_eq!(
        analysis::revisions::sentence(&replays),
        "This template would have caught revisions 3; would have wrongly failed none; would have missed none."
    );

    // The dashboard's "Backtest (last 24 h)": the Rollout's templates with its current canary hash,
    // bounded to 300 instants.
    let rollout_status = json!({"status": {"currentPodHash": "bad", "stableRS": "good"}}).to_string();
    let status_options = WriteOptions {
        subresource: Some("status".into()),
        ..options()
    };
    sim.api
        .patch(
            &rollouts,
            "v1alpha1",
            "default",
            "web",
            PatchBody::new(PatchKind::Merge, rollout_status.as_bytes()),
            &status_options,
        )
        .unwrap();
    let target = sluice::cli::Target::connect(&template_args(None, &[], &kubeconfig).cluster)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let dashboard = sluice::dashboard::Dashboard::start(target, Some("default".into()), stop.clone()).unwrap();
    dashboard.set_prometheus_address(Some(prometheus.address.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let login = dashboard.login_url(addr).split_whitespace().last().unwrap().to_string();
    tokio::spawn(dashboard.serve(listener, stop.clone()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = client.get(&login).send().await.unwrap().headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let response = client
        .get(format!("http://{addr}/api/rollouts/default/web/backtest"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let instants = body["evaluations"].as_array().unwrap().len();
    assert!((290..=300).contains(&instants), "{instants} instants");
    assert_eq!(body["summary"]["instants"], instants);
    stop.cancel();
    sim.shutdown().await;
}
