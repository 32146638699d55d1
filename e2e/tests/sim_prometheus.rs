//! A real Prometheus scraping the simulator's traffic metrics computes the rates, error ratios and
//! latency quantiles the traffic was generated with.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{Prometheus, eventually, start_sim};
use serde_json::json;
use sluice_sim::api::WriteOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_rates_and_quantiles_match_the_simulated_traffic() {
    let sim = start_sim().await;
    let options = WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    };
    let rs = sim.api.resource("apps", "replicasets").unwrap();
    let svc = sim.api.resource("", "services").unwrap();
    let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-abc"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "sluice.dev/pod-template-hash": "abc"},
                "annotations": {"sim.sluice.dev/error-rate": "0.2", "sim.sluice.dev/latency-ms": "40"}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}});
    sim.api.create(&rs, "default", replica_set, &options).unwrap();
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "50"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    sim.api.create(&svc, "default", service, &options).unwrap();

    let prometheus = Prometheus::start(&[("sim", sim.addr.to_string(), "/sim/metrics")]).await;
    let rate = "sum(rate(sim_http_requests_total{service=\"web\",pod_template_hash=\"abc\"}[10s]))";
    // The first windows hold partial data; once 15 s of samples exist the rate must be 50 rps.
    let history =
        "count_over_time(sim_http_requests_total{service=\"web\",pod_template_hash=\"abc\",code=\"200\"}[15s])";
    eventually(Duration::from_secs(60), "15 s of scraped samples", || async {
        prometheus.scalar(history).await.filter(|samples| *samples >= 14.0)
    })
    .await;
    let total = prometheus.scalar(rate).await.expect("request rate");
    assert!((total - 50.0).abs() <= 5.0, "rate {total} rps, expected 50");

    let errors = "sum(rate(sim_http_requests_total{service=\"web\",code=\"500\"}[10s])) / sum(rate(sim_http_requests_total{service=\"web\"}[10s]))";
    let error_ratio = prometheus.scalar(errors).await.expect("error ratio");
    assert!(
        (error_ratio - 0.2).abs() <= 0.05,
        "error ratio {error_ratio}, expected 0.2"
    );

    let p50 =
        "histogram_quantile(0.5, sum by (le) (rate(sim_http_request_duration_seconds_bucket{service=\"web\"}[10s])))";
    let median = prometheus.scalar(p50).await.expect("median latency");
    assert!(
        (0.025..=0.06).contains(&median),
        "median latency {median}s, expected about 0.04s"
    );
    sim.shutdown().await;
}
