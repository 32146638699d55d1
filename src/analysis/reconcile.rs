//! The AnalysisRun controller: asks the rules what is due, reads the Secrets those measurements need,
//! measures (concurrently, each bounded by its provider timeout), records the outcomes, writes status
//! only when it changed, and requeues exactly when the next measurement is due.
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use tokio::sync::Semaphore;

use crate::analysis::allowlist::Allowlist;
use crate::analysis::providers::{self, SecretValues, job};
use crate::analysis::rules::{self, MetricConditions};
use crate::analysis::{MeasurementOutcome, ResultValue};
use crate::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisRunSpec, Measurement, Metric};
use crate::bounds::{MAX_STATUS_BYTES, json_len};
use crate::merge_patch::merge_diff;
use crate::observe::Observer;

/// Bound on reading one Secret.
const SECRET_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one measurement's conditions may take once they run. The `cel` crate has no cost limit, so
/// a condition such as nested `exists` over long lists could run for hours.
pub const CONDITION_BUDGET: Duration = Duration::from_secs(1);

/// How long a measurement waits for an evaluation slot. Waiting is not the condition's fault — another
/// run's (maybe another tenant's) runaway conditions hold the slots — so it is not charged to the
/// budget; a runaway evaluation stops itself about a budget later, so slots free up within seconds.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// Conditions evaluated at once, each on a blocking thread so it never stalls the async runtime (the
/// reconcilers, `/healthz`). A condition past its budget is abandoned but its thread runs on until the
/// evaluation ends (see `condition::Condition::evaluate` for how it is cut short); the slot it holds
/// is freed only then. This bounds runaway conditions to a few threads instead of exhausting tokio's
/// blocking pool, which DNS lookups and file IO share.
const CONDITION_EVALUATION_SLOTS: usize = 4;

static CONDITION_SLOTS: Semaphore = Semaphore::const_new(CONDITION_EVALUATION_SLOTS);

/// Judges a measurement ([`rules::judge`]) with its conditions evaluated off the async runtime within
/// [`CONDITION_BUDGET`] once a slot is free. Overrunning the budget, or finding no slot for
/// [`SLOT_WAIT`], is an Error measurement saying so.
pub async fn judge_within_budget(metric: &Metric, outcome: MeasurementOutcome) -> Measurement {
    let needs_conditions = metric.success_condition.is_some() || metric.failure_condition.is_some();
    if !needs_conditions || outcome.value.as_ref().is_ok_and(ResultValue::is_no_data) || outcome.value.is_err() {
        // Provider errors and no data never reach the conditions: nothing expensive to bound.
        return rules::judge(metric, &MetricConditions::default(), outcome);
    }
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, CONDITION_SLOTS.acquire()).await else {
        let why = format!(
            "the conditions were not evaluated: all {CONDITION_EVALUATION_SLOTS} evaluation slots stayed held \
             for {SLOT_WAIT:?} by conditions running past their budget"
        );
        return rules::judged(AnalysisPhase::Error, Some(why), outcome);
    };
    let evaluation = {
        let (metric, outcome) = (metric.clone(), outcome.clone());
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            match MetricConditions::compile(&metric) {
                Ok(conditions) => rules::judge(&metric, &conditions, outcome),
                Err(error) => rules::judged(AnalysisPhase::Error, Some(error), outcome),
            }
        })
    };
    let overrun = match tokio::time::timeout(CONDITION_BUDGET, evaluation).await {
        Ok(Ok(measurement)) => return measurement,
        Ok(Err(panic)) => format!("evaluating the conditions failed: {panic}"),
        Err(_) => format!(
            "the conditions did not finish within their {CONDITION_BUDGET:?} evaluation budget; simplify them \
             (e.g. fewer nested all/exists/map over long lists)"
        ),
    };
    rules::judged(AnalysisPhase::Error, Some(overrun), outcome)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("analysis run {namespace}/{name}: {action}: {source}")]
    Kube {
        namespace: String,
        name: String,
        action: &'static str,
        source: kube::Error,
    },
    /// A bug met this AnalysisRun (see `controller::isolate`).
    #[error("analysis run {namespace}/{name}: reconcile panicked: {message}")]
    Panicked {
        namespace: String,
        name: String,
        message: String,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Panicked { .. } => "panic",
        }
    }

    pub fn panicked(run: &AnalysisRun, message: String) -> Error {
        Error::Panicked {
            namespace: run.namespace().unwrap_or_default(),
            name: run.name_any(),
            message,
        }
    }
}

pub struct AnalysisContext {
    pub client: Client,
    pub metrics: Arc<dyn Observer>,
    /// Where providers may connect (`--analysis-address-allowlist`); empty: anywhere.
    pub allowlist: Allowlist,
    /// Prometheus address for metrics that leave theirs empty (`--prometheus-address`).
    pub default_prometheus: Option<String>,
}

impl AnalysisContext {
    /// Drops everything kept about an AnalysisRun that is gone (its metrics series).
    pub fn forget_run(&self, namespace: &str, name: &str) {
        self.metrics.forget_analysis_run(namespace, name);
    }
}

/// The spec with the controller's default Prometheus address filled in where a metric has none.
fn with_default_address(spec: &AnalysisRunSpec, default: Option<&str>) -> AnalysisRunSpec {
    let mut spec = spec.clone();
    if let Some(default) = default {
        for metric in &mut spec.metrics {
            if let Some(prometheus) = metric.provider.prometheus.as_mut()
                && prometheus.address.trim().is_empty()
            {
                prometheus.address = default.to_string();
            }
        }
    }
    spec
}

/// Reads the Secret values the due measurements need. A missing or unreadable Secret is left out:
/// the measurement then ends as an Error naming it, like any other provider failure.
async fn read_secrets(client: &Client, namespace: &str, spec: &AnalysisRunSpec, due: &[&Metric]) -> SecretValues {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut values = SecretValues::new();
    let refs: Vec<_> = due.iter().flat_map(|m| providers::required_secrets(spec, m)).collect();
    for secret_ref in refs {
        let key = (secret_ref.name.clone(), secret_ref.key.clone());
        if values.contains_key(&key) {
            continue;
        }
        let Ok(Ok(Some(secret))) = tokio::time::timeout(SECRET_TIMEOUT, api.get_opt(&secret_ref.name)).await else {
            continue;
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&secret_ref.key))
            .map(|b| b.0.clone());
        let text = bytes.and_then(|b| String::from_utf8(b).ok()).or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&secret_ref.key))
                .cloned()
        });
        if let Some(text) = text {
            values.insert(key, text);
        }
    }
    values
}

/// The number a measurement shows as a metric: a scalar, or the first element of a vector.
fn gauge_value(value: &ResultValue) -> Option<f64> {
    match value {
        ResultValue::Scalar(v) => Some(*v),
        ResultValue::Vector(values) => values.first().copied(),
        ResultValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        ResultValue::Text(_) => None,
    }
}

pub async fn reconcile(run: Arc<AnalysisRun>, ctx: Arc<AnalysisContext>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    if run.metadata.deletion_timestamp.is_some() {
        ctx.forget_run(&namespace, &name);
        return Ok(Requeue::await_change());
    }
    let spec = with_default_address(&run.spec, ctx.default_prometheus.as_deref());
    let due = rules::step(&spec, run.status.as_ref(), Utc::now(), vec![]);
    // Job metrics start (or look at) a Job; the others query a provider and are judged.
    let jobs = job_measurements(&ctx.client, &run, &spec, &due).await;
    let metrics: Vec<&Metric> = due
        .measure
        .iter()
        .filter_map(|n| spec.metrics.iter().find(|m| m.name == *n))
        .filter(|m| m.provider.job.is_none())
        .collect();
    let secrets = if metrics.is_empty() {
        SecretValues::new()
    } else {
        read_secrets(&ctx.client, &namespace, &spec, &metrics).await
    };
    let outcomes = join_all(metrics.iter().map(|metric| {
        let (spec, secrets, allowlist) = (&spec, &secrets, &ctx.allowlist);
        async move {
            (
                metric.name.clone(),
                providers::measure(spec, metric, secrets, allowlist, Utc::now()).await,
            )
        }
    }))
    .await;
    for (metric, outcome) in &outcomes {
        if let Ok(value) = &outcome.value
            && let Some(number) = gauge_value(value)
        {
            ctx.metrics.observe_measurement(&namespace, &name, metric, number);
        }
    }
    let plan = if outcomes.is_empty() && jobs.is_empty() {
        due
    } else {
        let mut judged = join_all(outcomes.into_iter().map(|(metric, outcome)| {
            let spec = &spec;
            async move {
                let measurement = match spec.metrics.iter().find(|m| m.name == metric) {
                    Some(definition) => judge_within_budget(definition, outcome).await,
                    None => rules::judged(AnalysisPhase::Error, None, outcome),
                };
                (metric, measurement)
            }
        }))
        .await;
        judged.extend(jobs);
        rules::step_judged(&spec, Some(&due.status), Utc::now(), judged)
    };
    let has_jobs = spec.metrics.iter().any(|m| m.provider.job.is_some());
    let was_completed = run
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(AnalysisPhase::is_completed);
    let ending = spec.is_terminated() || plan.status.phase.is_some_and(AnalysisPhase::is_completed);
    if has_jobs && !was_completed && ending {
        // Before the final status is written: if this fails, the next reconcile tries again.
        job::delete_running(&ctx.client, &run)
            .await
            .map_err(|source| Error::Kube {
                namespace: namespace.clone(),
                name: name.clone(),
                action: "deleting running analysis Jobs",
                source,
            })?;
    }
    let old = serde_json::to_value(run.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let new = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
    let diff = merge_diff(&old, &new);
    if !diff.as_object().is_some_and(|d| d.is_empty()) {
        let size = json_len(&new);
        if size > MAX_STATUS_BYTES {
            // `rules::fit_status` could not trim it enough (hundreds of metrics): written anyway, the
            // API server has the last word; say why if it refuses.
            tracing::warn!(analysis_run = %name, bytes = size, "status still over {MAX_STATUS_BYTES} bytes after trimming");
        }
        let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": diff})))
            .await
            .map_err(|source| Error::Kube {
                namespace: namespace.clone(),
                name: name.clone(),
                action: "writing status",
                source,
            })?;
    }
    let phase = plan
        .status
        .phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".into());
    ctx.metrics.observe_analysis_run(&namespace, &name, &phase);
    ctx.metrics.count_reconcile("analysisrun", started.elapsed());
    Ok(match plan.requeue_after {
        Some(after) => Requeue::requeue(after.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    })
}

/// Starts the Jobs of the job metrics that are due and looks at those already running, as measurements
/// for [`rules::step_judged`]. The index of a new measurement is one past those counted so far, so a
/// restart before the status is written names the same Job.
async fn job_measurements(
    client: &Client,
    run: &AnalysisRun,
    spec: &AnalysisRunSpec,
    due: &rules::StepOutput,
) -> Vec<(String, Measurement)> {
    let job_metric = |name: &String| {
        spec.metrics
            .iter()
            .find(|m| m.name == *name && m.provider.job.is_some())
    };
    let result_of = |name: &str| due.status.metric_results.iter().find(|r| r.name == name);
    let started = due.measure.iter().filter_map(job_metric).map(|metric| async move {
        let index = result_of(&metric.name)
            .map_or(0, |r| r.count.saturating_add(r.error))
            .saturating_add(1);
        (
            metric.name.clone(),
            job::start(client, run, metric, index, Utc::now()).await,
        )
    });
    let resumed = due.resume.iter().filter_map(job_metric).filter_map(|metric| {
        let in_flight = result_of(&metric.name).and_then(rules::in_flight)?.clone();
        Some(async move {
            (
                metric.name.clone(),
                job::resume(client, run, &in_flight, Utc::now()).await,
            )
        })
    });
    let mut measurements = join_all(started).await;
    measurements.extend(join_all(resumed).await);
    measurements
}

pub fn error_policy(run: Arc<AnalysisRun>, error: &Error, ctx: Arc<AnalysisContext>) -> Requeue {
    tracing::warn!(analysis_run = %run.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_reconcile_error("analysisrun", error.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{Metric, MetricProvider, PrometheusMetric};

    #[test]
    fn the_default_prometheus_address_fills_only_empty_addresses() {
        let metric = |address: &str| Metric {
            name: address.to_string(),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    address: address.into(),
                    query: "up".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = AnalysisRunSpec {
            metrics: vec![metric(""), metric("http://other:9090")],
            ..Default::default()
        };
        let filled = with_default_address(&spec, Some("http://prometheus:9090"));
        let addresses: Vec<&str> = filled
            .metrics
            .iter()
            .map(|m| m.provider.prometheus.as_ref().unwrap().address.as_str())
            .collect();
        assert_eq!(addresses, ["http://prometheus:9090", "http://other:9090"]);
    }

    fn outcome(value: Result<ResultValue, String>) -> MeasurementOutcome {
        MeasurementOutcome {
            started_at: Utc::now(),
            finished_at: Utc::now(),
            query: None,
            value,
        }
    }

    /// Nested `exists` eight deep over ten elements: 10^8 innermost tests, minutes of CPU.
    fn runaway_condition() -> String {
        let mut condition = "result < 0.0".to_string();
        for level in 0..8 {
            condition = format!("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].exists(x{level}, {condition})");
        }
        condition
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runaway_condition_is_an_error_measurement_within_the_budget() {
        let runaway = Metric::prometheus("m", "http://prometheus:9090", "up").with_success(&runaway_condition());
        let started = Instant::now();
        let measurement = judge_within_budget(&runaway, outcome(Ok(ResultValue::Scalar(1.0)))).await;
        assert!(
            started.elapsed() < CONDITION_BUDGET + Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(measurement.phase, AnalysisPhase::Error);
        let message = measurement.message.unwrap();
        assert!(message.contains("evaluation budget"), "{message}");

        let cheap = Metric::prometheus("m", "http://prometheus:9090", "up").with_success("result == 1.0");
        let measurement = judge_within_budget(&cheap, outcome(Ok(ResultValue::Scalar(1.0)))).await;
        assert_eq!(measurement.phase, AnalysisPhase::Successful);
        let measurement = judge_within_budget(&cheap, outcome(Err("cannot connect".into()))).await;
        assert_eq!(
            (measurement.phase, measurement.message.as_deref()),
            (AnalysisPhase::Error, Some("cannot connect"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runaway_conditions_hold_at_most_their_slots_and_the_runtime_stays_free() {
        let runaway = Metric::prometheus("m", "http://prometheus:9090", "up").with_success(&runaway_condition());
        let judging = (0..CONDITION_EVALUATION_SLOTS * 2)
            .map(|_| judge_within_budget(&runaway, outcome(Ok(ResultValue::Scalar(1.0)))));
        let ticker = tokio::spawn(async {
            // A task that needs the runtime every 10 ms: it must never wait long.
            let mut slowest = Duration::ZERO;
            for _ in 0..150 {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                slowest = slowest.max(started.elapsed());
            }
            slowest
        });
        let started = Instant::now();
        let measurements = join_all(judging).await;
        // Twice as many as there are slots: the second half waited for the first to stop itself, and
        // then had its own full budget — the wait is not charged to it.
        assert!(started.elapsed() >= CONDITION_BUDGET * 2, "{:?}", started.elapsed());
        for measurement in &measurements {
            assert_eq!(measurement.phase, AnalysisPhase::Error);
            let message = measurement.message.as_deref().unwrap();
            assert!(message.contains("evaluation budget"), "{message}");
        }
        let slowest = ticker.await.unwrap();
        assert!(
            slowest < Duration::from_millis(200),
            "the runtime stalled for {slowest:?}"
        );
    }

    #[test]
    fn measurements_show_as_numbers() {
        assert_eq!(gauge_value(&ResultValue::Vector(vec![0.97, 0.5])), Some(0.97));
        assert_eq!(gauge_value(&ResultValue::Vector(vec![])), None);
        assert_eq!(gauge_value(&ResultValue::Scalar(f64::INFINITY)), Some(f64::INFINITY));
    }
}
