//! The Prometheus provider against a real Prometheus scraping a tiny exporter: scalar and vector
//! results, empty results, NaN, PromQL errors, a dead or silent server, and a whole metric judged by the
//! verdict rules.
use sluice_e2e::kit as common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Prometheus, eventually, free_port};
use sluice::analysis::providers::Authentication;
use sluice::analysis::providers::prometheus::PrometheusQuery;
use sluice::analysis::{MeasurementOutcome, ResultValue, rules};
use sluice::api::analysis::{AnalysisPhase, AnalysisRunSpec, Metric};

const EXPOSITION: &str = "\
# TYPE sluice_test_success_ratio gauge
sluice_test_success_ratio{service=\"good\"} 0.97
sluice_test_success_ratio{service=\"bad\"} 0.5
# TYPE sluice_test_requests_total counter
sluice_test_requests_total 42
# TYPE sluice_test_broken gauge
sluice_test_broken NaN
";

/// Serves the exposition above on `/metrics` at a free loopback port.
async fn start_exporter() -> u16 {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { EXPOSITION }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn query(address: &str, promql: &str) -> PrometheusQuery {
    PrometheusQuery {
        address: address.to_string(),
        query: promql.to_string(),
        timeout: Duration::from_secs(5),
        headers: vec![],
        authentication: Authentication::None,
        insecure: false,
        sensitive: vec![],
    }
}

/// Measures `metric` once through the provider and the rules, as the controller will: the run's phase
/// and the measurement's message.
async fn judge(metric: Metric, address: &str) -> (AnalysisPhase, Option<String>) {
    let spec = AnalysisRunSpec {
        metrics: vec![metric],
        ..AnalysisRunSpec::default()
    };
    let now = Utc::now();
    let due = rules::step(&spec, None, now, vec![]);
    assert_eq!(due.measure, vec!["m"]);
    let promql = &spec.metrics[0].provider.prometheus.as_ref().unwrap().query;
    let started_at = Utc::now();
    let value = query(address, promql).run(started_at).await;
    let outcome = MeasurementOutcome {
        started_at,
        finished_at: Utc::now(),
        query: Some(promql.clone()),
        value,
    };
    let done = rules::step(&spec, Some(&due.status), Utc::now(), vec![("m".to_string(), outcome)]);
    let measurement = done.status.metric_results[0].measurements.last().unwrap();
    (done.status.phase.unwrap(), measurement.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_provider_against_a_real_prometheus() {
    let port = start_exporter().await;
    let prometheus = Prometheus::start(&[("exporter", format!("127.0.0.1:{port}"), "/metrics")]).await;
    let address = prometheus.address.clone();
    eventually(Duration::from_secs(30), "the exporter scraped", || async {
        prometheus
            .scalar("count(sluice_test_success_ratio)")
            .await
            .filter(|n| *n == 2.0)
    })
    .await;
    let run = |promql: &str| {
        let request = query(&address, promql);
        async move { request.run(Utc::now()).await }
    };

    assert_eq!(
        run("scalar(sluice_test_requests_total)").await,
        Ok(ResultValue::Scalar(42.0))
    );
    assert_eq!(run("0.25").await, Ok(ResultValue::Scalar(0.25)));
    assert_eq!(
        run("sort_desc(sluice_test_success_ratio)").await,
        Ok(ResultValue::Vector(vec![0.97, 0.5])),
        "series order is kept"
    );
    assert_eq!(
        run("sort(sluice_test_success_ratio)").await,
        Ok(ResultValue::Vector(vec![0.5, 0.97]))
    );
    assert_eq!(
        run("sluice_test_success_ratio{service=\"missing\"}").await,
        Ok(ResultValue::Vector(vec![]))
    );
    assert!(matches!(run("0/0").await, Ok(ResultValue::Scalar(n)) if n.is_nan()));
    assert!(matches!(run("sluice_test_broken").await, Ok(ResultValue::Vector(v)) if v.len() == 1 && v[0].is_nan()));
    assert_eq!(run("1/0").await, Ok(ResultValue::Scalar(f64::INFINITY)));
    assert_eq!(
        run("-sluice_test_requests_total / 0").await,
        Ok(ResultValue::Vector(vec![f64::NEG_INFINITY]))
    );

    let error = run("sum(rate(sluice_test_requests_total[1m]").await.unwrap_err();
    assert!(
        error.contains("Prometheus rejected the query") && error.contains("bad_data"),
        "{error}"
    );
    let error = run("sluice_test_requests_total[1m]").await.unwrap_err();
    assert!(error.contains("range vector"), "{error}");

    // Headers and credentials go out (Prometheus ignores them) and never come back in errors.
    let mut with_credentials = query(&address, "sum(");
    with_credentials.headers = vec![("X-Scope-OrgID".into(), "tenant-secret-id".into())];
    with_credentials.authentication = Authentication::Bearer {
        token: "s3cret-token".into(),
    };
    let error = with_credentials.run(Utc::now()).await.unwrap_err();
    assert!(
        !error.contains("s3cret-token") && !error.contains("tenant-secret-id"),
        "{error}"
    );
    with_credentials.query = "sum(sluice_test_requests_total)".into();
    assert_eq!(
        with_credentials.run(Utc::now()).await,
        Ok(ResultValue::Vector(vec![42.0]))
    );

    // A whole metric, judged by the rules.
    let success = |service: &str| {
        Metric::prometheus(
            "m",
            &address,
            &format!("sluice_test_success_ratio{{service=\"{service}\"}}"),
        )
        .with_success("result[0] >= 0.95")
    };
    assert_eq!(judge(success("good"), &address).await.0, AnalysisPhase::Successful);
    let (phase, message) = judge(success("bad"), &address).await;
    assert_eq!(phase, AnalysisPhase::Failed);
    assert!(
        message
            .unwrap()
            .contains("successCondition \"result[0] >= 0.95\" is false")
    );
    assert_eq!(
        judge(success("missing"), &address).await.0,
        AnalysisPhase::Inconclusive,
        "no data is never success"
    );
    let lenient = Metric::prometheus("m", &address, "sluice_test_broken").with_success("isNaN(result[0])");
    assert_eq!(
        judge(lenient, &address).await.0,
        AnalysisPhase::Inconclusive,
        "NaN never reaches the conditions"
    );

    // A stopped Prometheus is an error within the timeout, never a value.
    drop(prometheus);
    let mut dead = query(&address, "sluice_test_requests_total");
    dead.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let error = dead.run(Utc::now()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("cannot connect"), "{error}");
    assert_eq!(
        judge(success("good"), &address).await.0,
        AnalysisPhase::Running,
        "an error is retried, not judged"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut silent = query(&address, "up");
    silent.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let error = silent.run(Utc::now()).await.unwrap_err();
    assert!(error.contains("no answer within 500ms"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let refused = query(&format!("http://127.0.0.1:{}", free_port()), "up");
    let error = refused.run(Utc::now()).await.unwrap_err();
    assert!(error.contains("cannot connect"), "{error}");
}
