//! `sluice bench abort`: how fast a failed analysis puts traffic back on stable. Rollouts wait at an
//! analysis step (basic canary, no traffic router, setWeight 20 before it); the benchmark acts as the
//! analysis engine and patches each AnalysisRun's status to Failed, one rollout at a time, and times
//! — with watches opened before the patch — until the Rollout's status shows the abort with canary
//! weight 0, and until the canary ReplicaSet is scaled to zero. Only the Rollout controller runs for
//! that part, so nothing else writes the runs' status.
//!
//! Second part, the AnalysisRun controller's own cost: runs with one web metric (a trivial local
//! endpoint) measured `count` times each; reconcile time per measurement from
//! `sluice_reconcile_duration_seconds{controller="analysisrun"}`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::support::{self, Distribution, Histogram};
use sluice::analysis::allowlist::Allowlist;
use sluice::analysis::reconcile::AnalysisContext;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate, Metric, MetricProvider, WebMetric};
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice::controller::metrics::Metrics;
use sluice::controller::rollouts::Scope;
use sluice::controller::server::Health;
use sluice::rollout::analysis_runs::TemplateAnalysisRunFactory;
use sluice::rollout::reconcile::ROLLOUT_LABEL;
use sluice_sim::{SimConfig, Simulator};

#[derive(Debug, Clone, clap::Args)]
pub struct AbortBenchOptions {
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    #[arg(long, default_value_t = 5)]
    pub replicas: i32,
    /// How long a new pod takes to become Ready.
    #[arg(long, default_value = "50ms", value_parser = sluice::app::parse_duration)]
    pub pod_ready_delay: Duration,
    /// AnalysisRuns with a web metric for the cost-per-measurement part (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub measurement_runs: usize,
    /// Measurements per run in that part, 1 s apart.
    #[arg(long, default_value_t = 5)]
    pub measurements: i32,
    /// Upper bound of every wait, in seconds.
    #[arg(long = "timeout-seconds", value_name = "SECONDS", default_value = "120", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct AbortBenchReport {
    pub runs: usize,
    pub replicas: i32,
    /// From sending the status patch that fails the AnalysisRun until the Rollout's status (seen on a
    /// watch) has abort set and canary weight 0 — all traffic on stable.
    pub to_weight_zero_seconds: Distribution,
    /// Until the canary ReplicaSet's spec.replicas is 0 (seen on a watch).
    pub to_canary_scaled_down_seconds: Distribution,
    /// The status patch's own round trip (included in the figures above).
    pub patch_round_trip_seconds: Distribution,
    pub measurement_cost: Option<MeasurementCost>,
}

#[derive(Debug, Serialize)]
pub struct MeasurementCost {
    pub analysis_runs: usize,
    pub measurements: i64,
    pub reconciles: f64,
    /// Reconcile time summed over the runs, divided by the measurements taken (the web request included).
    pub controller_seconds_per_measurement: Option<f64>,
    pub reconcile_mean_seconds: Option<f64>,
    pub reconcile_p50_seconds: Option<f64>,
    pub reconcile_p99_seconds: Option<f64>,
    pub total_seconds: f64,
}

const TEMPLATE: &str = "bench-gate";

fn rollout(i: usize, replicas: i32) -> Rollout {
    Rollout::example(
        &format!("abort-{i:03}"),
        replicas,
        vec![
            CanaryStep::set_weight(20),
            CanaryStep::analysis(TEMPLATE),
            CanaryStep::set_weight(100),
        ],
    )
}

pub async fn run(options: AbortBenchOptions) -> anyhow::Result<AbortBenchReport> {
    let sim = Simulator::start(SimConfig {
        pod_ready_delay: options.pod_ready_delay,
        request_log_capacity: 0,
        ..SimConfig::default()
    })
    .await?;
    let result = async {
        let client = support::bench_client(sim.kube_config()?)?;
        support::install_crds(&client).await?;
        let mut report = abort_latency(&sim, &client, &options).await?;
        if options.measurement_runs > 0 {
            report.measurement_cost = Some(measurement_cost(&sim, &client, &options).await?);
        }
        Ok(report)
    }
    .await;
    sim.shutdown().await;
    result
}

async fn abort_latency(
    sim: &Simulator,
    client: &kube::Client,
    options: &AbortBenchOptions,
) -> anyhow::Result<AbortBenchReport> {
    // The template is never measured here (no AnalysisRun controller runs); its address is unused.
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), "default");
    let gate = AnalysisTemplate::example(
        TEMPLATE,
        vec![Metric::prometheus("gate", "http://127.0.0.1:9", "vector(1)")],
    );
    templates
        .create(&PostParams::default(), &gate)
        .await
        .context("creating the AnalysisTemplate")?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    support::for_each_concurrently(options.runs, 16, |i| {
        let rollouts = rollouts.clone();
        let replicas = options.replicas;
        async move { support::create_rollout(&rollouts, &rollout(i, replicas)).await }
    })
    .await?;

    // The Rollout controller alone.
    let controller_client = sim.client()?;
    let shutdown = CancellationToken::new();
    let ctx = sluice::controller::rollouts::context(
        controller_client.clone(),
        Arc::new(Metrics::new()),
        Arc::new(TemplateAnalysisRunFactory::new(controller_client)),
    );
    let controller = tokio::spawn(sluice::controller::rollouts::run(
        ctx,
        Scope::default(),
        Arc::new(Health::default()),
        shutdown.clone(),
    ));
    let result = abort_each(client, options, &rollouts).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    result
}

async fn abort_each(
    client: &kube::Client,
    options: &AbortBenchOptions,
    rollouts: &Api<Rollout>,
) -> anyhow::Result<AbortBenchReport> {
    let every = Duration::from_millis(100);
    support::wait_for_rollouts(
        rollouts,
        options.runs,
        options.timeout,
        every,
        "every Rollout to be Healthy on v1",
        support::is_healthy,
    )
    .await?;
    support::for_each_concurrently(options.runs, 16, |i| async move {
        support::set_image(rollouts, &format!("abort-{i:03}"), "example.com/abort:2").await
    })
    .await?;
    let at_analysis = |r: &Rollout| {
        r.status.as_ref().is_some_and(|s| {
            s.current_step_index == Some(1) && s.canary_weight == Some(20) && s.current_pod_hash != s.stable_rs
        })
    };
    support::wait_for_rollouts(
        rollouts,
        options.runs,
        options.timeout,
        every,
        "every Rollout to wait at its analysis step with canary weight 20",
        at_analysis,
    )
    .await?;

    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let (mut to_zero, mut to_scaled, mut patch_times) = (vec![], vec![], vec![]);
    for i in 0..options.runs {
        let name = format!("abort-{i:03}");
        let current = rollouts.get(&name).await?;
        let hash = current
            .status
            .as_ref()
            .and_then(|s| s.current_pod_hash.clone())
            .with_context(|| format!("Rollout {name} has no current pod hash"))?;
        let run = support::wait_until(options.timeout, &format!("the AnalysisRun of {name}"), || {
            let runs = runs.clone();
            let selector = format!("{ROLLOUT_LABEL}={name}");
            async move {
                let list = runs.list(&ListParams::default().labels(&selector)).await.ok()?;
                list.items.into_iter().next().map(|r| r.name_any())
            }
        })
        .await?;
        let canary_rs = format!("{name}-{hash}");
        let rs_version = replica_sets
            .get(&canary_rs)
            .await?
            .resource_version()
            .unwrap_or_default();

        // Watches first, then the verdict.
        let watch_timeout = options.timeout.as_secs().clamp(1, 290) as u32;
        let rollout_events = rollouts
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={name}"))
                    .timeout(watch_timeout),
                &current.resource_version().unwrap_or_default(),
            )
            .await?
            .boxed();
        let rs_events = replica_sets
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={canary_rs}"))
                    .timeout(watch_timeout),
                &rs_version,
            )
            .await?
            .boxed();
        let started = Instant::now();
        runs.patch_status(
            &run,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed", "message": "failed by sluice bench abort"}})),
        )
        .await
        .with_context(|| format!("failing AnalysisRun {run}"))?;
        patch_times.push(started.elapsed().as_secs_f64());
        let weight_zero = first_event(rollout_events, |r: &Rollout| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort == Some(true) && s.canary_weight == Some(0))
        });
        let scaled = first_event(rs_events, |rs: &ReplicaSet| {
            rs.spec.as_ref().and_then(|s| s.replicas) == Some(0)
        });
        let (weight_zero, scaled) = tokio::time::timeout(options.timeout, futures::future::join(weight_zero, scaled))
            .await
            .with_context(|| format!("Rollout {name} did not abort within {:?}", options.timeout))?;
        let weight_zero = weight_zero.with_context(|| format!("watching Rollout {name}"))?;
        let scaled = scaled.with_context(|| format!("watching ReplicaSet {canary_rs}"))?;
        to_zero.push((weight_zero - started).as_secs_f64());
        to_scaled.push((scaled - started).as_secs_f64());
    }
    Ok(AbortBenchReport {
        runs: options.runs,
        replicas: options.replicas,
        to_weight_zero_seconds: Distribution::of(&to_zero),
        to_canary_scaled_down_seconds: Distribution::of(&to_scaled),
        patch_round_trip_seconds: Distribution::of(&patch_times),
        measurement_cost: None,
    })
}

/// The instant the first watched object satisfying `done` arrived.
async fn first_event<K, S>(mut events: S, done: impl Fn(&K) -> bool) -> anyhow::Result<Instant>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    while let Some(event) = events.try_next().await? {
        match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) if done(&object) => return Ok(Instant::now()),
            WatchEvent::Error(e) => anyhow::bail!("watch error: {}", e.message),
            _ => {}
        }
    }
    anyhow::bail!("the watch ended before the condition held")
}

async fn measurement_cost(
    sim: &Simulator,
    client: &kube::Client,
    options: &AbortBenchOptions,
) -> anyhow::Result<MeasurementCost> {
    // A trivial web endpoint for the metric.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/value",
        axum::routing::get(|| async { axum::Json(json!({"value": 1})) }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let ctx = AnalysisContext {
        client: sim.client()?,
        metrics: metrics.clone(),
        allowlist: Allowlist::parse(&[]).map_err(|e| anyhow::anyhow!("allowlist: {e}"))?,
        default_prometheus: None,
    };
    let controller = tokio::spawn(sluice::controller::analysis::run(
        Arc::new(ctx),
        Scope::default(),
        shutdown.clone(),
    ));
    let result = async {
        let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), "default");
        let metric = Metric {
            name: "web".into(),
            provider: MetricProvider {
                prometheus: None,
                web: Some(WebMetric {
                    url: format!("http://{address}/value"),
                    json_path: Some("{$.value}".into()),
                    ..WebMetric::default()
                }),
                ..MetricProvider::default()
            },
            ..Metric::default()
        }
        .with_success("result == 1")
        .with_schedule("1s", options.measurements);
        let started = Instant::now();
        support::for_each_concurrently(options.measurement_runs, 16, |i| {
            let runs = runs.clone();
            let metric = metric.clone();
            async move {
                let run = AnalysisRun::example(&format!("cost-{i:04}"), vec![metric]);
                runs.create(&PostParams::default(), &run)
                    .await
                    .with_context(|| format!("creating AnalysisRun cost-{i:04}"))?;
                Ok(())
            }
        })
        .await?;
        let done = support::wait_until(
            options.timeout,
            "every measurement-cost AnalysisRun to finish",
            || async {
                let list = runs.list(&ListParams::default()).await.ok()?;
                let cost: Vec<&AnalysisRun> = list
                    .items
                    .iter()
                    .filter(|r| r.name_any().starts_with("cost-"))
                    .collect();
                let finished = cost.iter().all(|r| {
                    r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| {
                        matches!(
                            p,
                            AnalysisPhase::Successful
                                | AnalysisPhase::Failed
                                | AnalysisPhase::Error
                                | AnalysisPhase::Inconclusive
                        )
                    })
                });
                (cost.len() == options.measurement_runs && finished).then(|| {
                    let measured: i64 = cost
                        .iter()
                        .flat_map(|r| r.status.iter().flat_map(|s| s.metric_results.iter()))
                        .map(|m| i64::from(m.count))
                        .sum();
                    let successful = cost
                        .iter()
                        .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Successful))
                        .count();
                    (measured, successful)
                })
            },
        )
        .await?;
        let total_seconds = started.elapsed().as_secs_f64();
        let (measurements, successful) = done;
        if successful != options.measurement_runs {
            anyhow::bail!(
                "{} of {} measurement-cost AnalysisRuns did not succeed (is the web metric reachable?)",
                options.measurement_runs - successful,
                options.measurement_runs
            );
        }
        let histogram = Histogram::parse(
            &metrics.render(),
            "sluice_reconcile_duration_seconds",
            &[("controller", "analysisrun")],
        );
        Ok(MeasurementCost {
            analysis_runs: options.measurement_runs,
            measurements,
            reconciles: histogram.count,
            controller_seconds_per_measurement: (measurements > 0).then(|| histogram.sum / measurements as f64),
            reconcile_mean_seconds: histogram.mean(),
            reconcile_p50_seconds: histogram.quantile(0.5),
            reconcile_p99_seconds: histogram.quantile(0.99),
            total_seconds,
        })
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    server.abort();
    result
}
