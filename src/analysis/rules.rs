//! The verdict rules (docs/analysis-verdicts.md) and the measurement schedule, as pure functions
//! of the spec, the status and the time.
//!
//! Three levels, each a function with a table of tests:
//! - one measurement: [`measurement_phase`] (the condition table) and [`assess_measurement`] (no data,
//!   provider errors, condition errors);
//! - one metric: [`record_measurement`] (counters, bounded history) and [`metric_phase`] (limits, count,
//!   termination);
//! - the run: [`run_phase`] (worst non-dry-run metric, early end).
//!
//! [`step`] composes them for the controller: record what was measured, assess, and say what to measure
//! now and when to come back ([`next_measurement_at`]).
//!
//! Where Sluice differs from Argo Rollouts, on purpose:
//! - An empty result or one holding NaN never reaches the conditions: it counts as the metric's
//!   `onNoData` (Inconclusive by default, or Failed, or Error). In Argo `len(result) == 0 || result[0] <
//!   0.05` style conditions silently pass on a dead exporter; here missing evidence is never success.
//! - If several limits are crossed at once the metric is Error before Inconclusive before Failed.
//! - `consecutiveFailureLimit`: when set, the metric fails only after that many Failed measurements in a
//!   row, and `failureLimit` is ignored — the API server defaults failureLimit to 0, so honouring both
//!   would fail on the first failure and defeat the streak. Only a Successful measurement breaks a
//!   streak: an Error or an Inconclusive measurement is no evidence of recovery.
//! - A limit of −1 (any negative value) means "never" for all three limits, not only failureLimit.
//! - Argo rejects a metric on which neither failureLimit (≥ 0) nor consecutiveSuccessLimit (> 0)
//!   applies; Sluice keeps its documented `failureLimit: -1` ("never fail on failures": the metric
//!   succeeds once its count is reached).
//!
//! A measurement may stay Running across reconciles (a Job): it is the metric's last measurement, with
//! no `finishedAt`, and counts for nothing until it finishes; [`step`] lists it in
//! [`StepOutput::resume`] and polls it every [`IN_FLIGHT_POLL_INTERVAL`].
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::condition::{self, Condition};
use super::{MeasurementOutcome, ResultValue};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric, MetricResult, NoDataPolicy, RunSummary,
};
use crate::api::duration::deadline_after as after;
use crate::bounds::{MAX_STATUS_BYTES, json_len, truncate, truncate_in_place};

/// After an Error measurement the next try comes this much later (Argo's fixed error retry).
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// How often a measurement that is still running (a Job) is looked at again.
pub const IN_FLIGHT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A job metric's spec larger than this (as JSON) is refused: every measurement copies it into a Job.
pub const MAX_JOB_SPEC_BYTES: usize = 64 * 1024;

/// Whether `measurement` is still under way (a Job not yet finished).
pub fn is_in_flight(measurement: &Measurement) -> bool {
    measurement.phase == AnalysisPhase::Running && measurement.finished_at.is_none()
}

/// The metric's in-flight measurement: its last one, if still running.
pub fn in_flight(result: &MetricResult) -> Option<&Measurement> {
    result.measurements.last().filter(|m| is_in_flight(m))
}

/// A measurement's value, message and query are stored cut to this many bytes (with a marker naming the
/// full length); the conditions still judge the whole value. A metric answers with a few numbers; a
/// megabyte of JSON stored whole would make the AnalysisRun too big to write.
pub const MAX_MEASUREMENT_TEXT_BYTES: usize = 4 * 1024;

/// `measurementRetention` above this is lowered to it: each measurement may hold
/// [`MAX_MEASUREMENT_TEXT_BYTES`] three times over, and the status must stay writable.
pub const MAX_MEASUREMENT_RETENTION: i32 = 100;

/// When a status is still over [`MAX_STATUS_BYTES`] with one measurement per metric, stored texts are cut
/// to this instead.
const SHORT_TEXT_BYTES: usize = 256;

/// The compiled conditions of one metric.
#[derive(Debug, Default)]
pub struct MetricConditions {
    /// successCondition, if set.
    pub success: Option<Condition>,
    /// failureCondition, if set.
    pub failure: Option<Condition>,
}

impl MetricConditions {
    /// Compiles the metric's conditions; the error names the metric and the expression.
    pub fn compile(metric: &Metric) -> Result<Self, String> {
        let compile = |expression: &Option<String>| {
            expression
                .as_deref()
                .map(condition::compile)
                .transpose()
                .map_err(|e| format!("metric {:?}: {e}", metric.name))
        };
        Ok(MetricConditions {
            success: compile(&metric.success_condition)?,
            failure: compile(&metric.failure_condition)?,
        })
    }
}

/// The condition table for one measurement, given what each condition evaluated to (`None`: not set).
///
/// | successCondition | failureCondition | phase        |
/// |------------------|------------------|--------------|
/// | –                | –                | Successful   |
/// | true             | –                | Successful   |
/// | false            | –                | Failed       |
/// | –                | true             | Failed       |
/// | –                | false            | Successful   |
/// | any              | true             | Failed       |
/// | true             | false            | Successful   |
/// | false            | false            | Inconclusive |
pub fn measurement_phase(success: Option<bool>, failure: Option<bool>) -> AnalysisPhase {
    match (success, failure) {
        (_, Some(true)) => AnalysisPhase::Failed,
        (Some(false), None) => AnalysisPhase::Failed,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
        (None | Some(true), None | Some(false)) => AnalysisPhase::Successful,
    }
}

/// The phase of one measurement and why.
///
/// - a provider error → Error, with the provider's message;
/// - no data (`[]`, or any NaN) → the metric's `onNoData` (default Inconclusive) **without evaluating
///   the conditions**, so a condition such as `len(result) == 0 || result[0] < 0.05` cannot turn a dead
///   exporter into a success (Sluice's documented difference from Argo Rollouts);
/// - a condition that fails to evaluate → Error, with the expression and the value;
/// - otherwise [`measurement_phase`].
pub fn assess_measurement(
    metric: &Metric,
    conditions: &MetricConditions,
    value: &Result<ResultValue, String>,
) -> (AnalysisPhase, Option<String>) {
    let value = match value {
        Err(error) => return (AnalysisPhase::Error, Some(error.clone())),
        Ok(value) => value,
    };
    if value.is_no_data() {
        let policy = metric.on_no_data_or_default();
        let phase = match policy {
            NoDataPolicy::Inconclusive => AnalysisPhase::Inconclusive,
            NoDataPolicy::Failed => AnalysisPhase::Failed,
            NoDataPolicy::Error => AnalysisPhase::Error,
        };
        let what = if matches!(value, ResultValue::Vector(v) if v.is_empty()) {
            "the result is empty"
        } else {
            "the result holds NaN"
        };
        return (phase, Some(format!("no data: {what} (onNoData: {policy:?})")));
    }
    let evaluate = |condition: &Option<Condition>| condition.as_ref().map(|c| c.evaluate(value)).transpose();
    let (success, failure) = match (evaluate(&conditions.success), evaluate(&conditions.failure)) {
        (Ok(success), Ok(failure)) => (success, failure),
        (Err(error), _) | (_, Err(error)) => return (AnalysisPhase::Error, Some(error)),
    };
    let phase = measurement_phase(success, failure);
    let expression = |condition: &Option<Condition>| condition.as_ref().map_or("", |c| c.expression()).to_string();
    let message = match (success, failure) {
        (_, Some(true)) => Some(format!(
            "failureCondition {:?} is true",
            expression(&conditions.failure)
        )),
        (Some(false), None) => Some(format!(
            "successCondition {:?} is false",
            expression(&conditions.success)
        )),
        (Some(false), Some(false)) => Some("neither successCondition nor failureCondition is true".to_string()),
        _ => None,
    };
    (phase, message)
}

/// Folds a measurement into the metric's result: counters (which keep counting for the whole run) and
/// the measurement history, trimmed to the newest `retention` (at least 1: the schedule needs the
/// latest one; at most [`MAX_MEASUREMENT_RETENTION`]).
///
/// A measurement that is still running ([`is_in_flight`]) is stored but counted for nothing; a later
/// one replaces it (the same Job, looked at again) and is counted once it finishes.
///
/// `count` counts measurements that produced a verdict; Errors do not use up a metric's `count`, they
/// are retried (as in Argo Rollouts). `consecutive_failure` is broken only by a Successful measurement;
/// `consecutive_success` by anything else (an Error is no evidence of health either).
/// Counters saturate: they come back from a status anyone with access may have edited.
pub fn record_measurement(result: &mut MetricResult, measurement: Measurement, retention: i32) {
    if result.measurements.last().is_some_and(is_in_flight) {
        result.measurements.pop();
    }
    match measurement.phase {
        AnalysisPhase::Pending | AnalysisPhase::Running => {}
        AnalysisPhase::Error => {
            result.error = result.error.saturating_add(1);
            result.consecutive_error = result.consecutive_error.saturating_add(1);
            result.consecutive_success = 0;
        }
        phase => {
            result.count = result.count.saturating_add(1);
            result.consecutive_error = 0;
            match phase {
                AnalysisPhase::Successful => {
                    result.successful = result.successful.saturating_add(1);
                    result.consecutive_failure = 0;
                    result.consecutive_success = result.consecutive_success.saturating_add(1);
                }
                AnalysisPhase::Failed => {
                    result.failed = result.failed.saturating_add(1);
                    result.consecutive_failure = result.consecutive_failure.saturating_add(1);
                    result.consecutive_success = 0;
                }
                AnalysisPhase::Inconclusive => {
                    result.inconclusive = result.inconclusive.saturating_add(1);
                    result.consecutive_success = 0;
                }
                AnalysisPhase::Pending | AnalysisPhase::Running | AnalysisPhase::Error => {}
            }
        }
    }
    result.measurements.push(measurement);
    let keep = retention.clamp(1, MAX_MEASUREMENT_RETENTION) as usize;
    if result.measurements.len() > keep {
        let excess = result.measurements.len() - keep;
        result.measurements.drain(..excess);
    }
}

/// The number of measurements after which a metric is done: `count`, or 1 with neither count nor
/// interval, or `None` (until the run is terminated) with an interval and no count. A count of 0 is
/// "unset", as in Argo Rollouts.
pub fn effective_count(metric: &Metric) -> Result<Option<i32>, String> {
    let count = metric.count_value()?.filter(|count| *count != 0);
    let interval = metric
        .interval_duration()
        .map_err(|e| format!("metric {:?}: interval: {e}", metric.name))?;
    Ok(match (count, interval) {
        (Some(count), _) => Some(count),
        (None, None) => Some(1),
        (None, Some(_)) => None,
    })
}

/// The metric's phase from its counters, and why. Checked in this order (the first that holds wins):
/// 1. Error: consecutive errors > consecutiveErrorLimit (default 4);
/// 2. Inconclusive: inconclusive > inconclusiveLimit (default 0);
/// 3. Failed: failed > failureLimit (default 0), or — when consecutiveFailureLimit is set, instead —
///    failures in a row ≥ consecutiveFailureLimit;
/// 4. Successful: successes in a row ≥ consecutiveSuccessLimit (when > 0);
/// 5. Running while a measurement is in flight;
/// 6. the end — [`effective_count`] measurements taken, or the run is `terminated`: Successful, except
///    with consecutiveSuccessLimit set (Argo): Failed when it was the only limit that applies
///    (failureLimit −1), Inconclusive when failureLimit applies too (neither was reached);
/// 7. Running once anything was measured, else Pending.
///
/// Each measurement moves one counter, and a completed metric is never assessed again, so with both
/// limits whichever is reached first decides. Negative limits never trip. A metric whose spec is
/// invalid is Error (see [`validate`]).
pub fn metric_phase(metric: &Metric, result: &MetricResult, terminated: bool) -> (AnalysisPhase, Option<String>) {
    let count = match effective_count(metric) {
        Ok(count) => count,
        Err(error) => return (AnalysisPhase::Error, Some(error)),
    };
    let exceeded = |value: i32, limit: i32| limit >= 0 && value > limit;
    let error_limit = metric.consecutive_error_limit_or_default();
    if exceeded(result.consecutive_error, error_limit) {
        let why = format!(
            "consecutive errors ({}) > consecutiveErrorLimit ({error_limit})",
            result.consecutive_error
        );
        return (AnalysisPhase::Error, Some(why));
    }
    let inconclusive_limit = metric.inconclusive_limit_or_default();
    if exceeded(result.inconclusive, inconclusive_limit) {
        let why = format!(
            "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
            result.inconclusive
        );
        return (AnalysisPhase::Inconclusive, Some(why));
    }
    let failure_applies = match metric.consecutive_failure_limit {
        Some(limit) if limit >= 0 && result.consecutive_failure >= limit.max(1) => {
            let why = format!(
                "failures in a row ({}) reached consecutiveFailureLimit ({limit})",
                result.consecutive_failure
            );
            return (AnalysisPhase::Failed, Some(why));
        }
        Some(limit) => limit >= 0,
        None => {
            let failure_limit = metric.failure_limit_or_default();
            if exceeded(result.failed, failure_limit) {
                let why = format!("failed ({}) > failureLimit ({failure_limit})", result.failed);
                return (AnalysisPhase::Failed, Some(why));
            }
            failure_limit >= 0
        }
    };
    let success_limit = metric.consecutive_success_limit_or_default();
    if success_limit > 0 && result.consecutive_success >= success_limit {
        let why = format!(
            "successes in a row ({}) reached consecutiveSuccessLimit ({success_limit})",
            result.consecutive_success
        );
        return (AnalysisPhase::Successful, Some(why));
    }
    if in_flight(result).is_some() {
        return (AnalysisPhase::Running, None);
    }
    let reached = count.is_some_and(|count| result.count >= count);
    if reached || terminated {
        let end = if reached { "count reached" } else { "run terminated" };
        return match (success_limit > 0, failure_applies) {
            (false, _) => (AnalysisPhase::Successful, (!reached).then(|| end.to_string())),
            (true, false) => (
                AnalysisPhase::Failed,
                Some(format!(
                    "{end} before {success_limit} successes in a row (consecutiveSuccessLimit)"
                )),
            ),
            (true, true) => (
                AnalysisPhase::Inconclusive,
                Some(format!(
                    "{end} with neither consecutiveSuccessLimit ({success_limit}) nor the failure limit reached"
                )),
            ),
        };
    }
    if result.count == 0 && result.error == 0 {
        (AnalysisPhase::Pending, None)
    } else {
        (AnalysisPhase::Running, None)
    }
}

/// Whether `metric` is dry-run in `spec`: its own `dryRun` when set, else whether an entry of the run's
/// `dryRun` list selects it (an invalid pattern selects nothing; [`validate`] reports it).
pub fn is_dry_run(spec: &AnalysisRunSpec, metric: &Metric) -> bool {
    metric.dry_run.unwrap_or_else(|| {
        dry_run_patterns(spec)
            .iter()
            .any(|pattern| pattern.is_match(&metric.name))
    })
}

/// [`is_dry_run`] for every metric of `spec`, in order, each pattern compiled once.
fn dry_run_flags(spec: &AnalysisRunSpec) -> Vec<bool> {
    let patterns = dry_run_patterns(spec);
    spec.metrics
        .iter()
        .map(|metric| {
            metric
                .dry_run
                .unwrap_or_else(|| patterns.iter().any(|pattern| pattern.is_match(&metric.name)))
        })
        .collect()
}

/// The run's `dryRun` patterns that compile (at most the bounded number of entries).
fn dry_run_patterns(spec: &AnalysisRunSpec) -> Vec<regex::Regex> {
    spec.dry_run
        .iter()
        .take(super::template::MAX_METRIC_LIST_ENTRIES)
        .filter_map(|entry| super::template::metric_name_pattern(&entry.metric_name).ok())
        .collect()
}

/// How bad a completed phase is for the run: Successful < Inconclusive < Error < Failed.
fn severity(phase: AnalysisPhase) -> u8 {
    match phase {
        AnalysisPhase::Pending | AnalysisPhase::Running => 0,
        AnalysisPhase::Successful => 1,
        AnalysisPhase::Inconclusive => 2,
        AnalysisPhase::Error => 3,
        AnalysisPhase::Failed => 4,
    }
}

/// The run's phase from its metrics' phases, and why.
///
/// - Any non-dry-run metric that ended Failed, Error or Inconclusive ends the run at once, with the
///   worst such phase (Inconclusive < Error < Failed) — the Rollout must not wait for slower metrics
///   to abort.
/// - Otherwise the run is Running until every metric (dry-run ones included: they are still measured
///   and reported) has finished, then Successful.
/// - Dry-run metrics never decide: a run of only dry-run metrics ends Successful whatever they say.
///
/// `results` are matched to `spec.metrics` by name; a metric without a result is not finished.
pub fn run_phase(spec: &AnalysisRunSpec, results: &[MetricResult]) -> (AnalysisPhase, Option<String>) {
    let phase_of = |metric: &Metric| {
        results
            .iter()
            .find(|r| r.name == metric.name)
            .map_or(AnalysisPhase::Pending, |r| r.phase)
    };
    let dry_run = dry_run_flags(spec);
    let worst = spec
        .metrics
        .iter()
        .zip(dry_run)
        .filter(|(_, dry_run)| !dry_run)
        .map(|(metric, _)| (metric, phase_of(metric)))
        .filter(|(_, phase)| phase.is_completed() && *phase != AnalysisPhase::Successful)
        .max_by_key(|(_, phase)| severity(*phase));
    if let Some((metric, phase)) = worst {
        let detail = results
            .iter()
            .find(|r| r.name == metric.name)
            .and_then(|r| r.message.as_deref())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return (phase, Some(format!("metric {:?} is {phase:?}{detail}", metric.name)));
    }
    if spec.metrics.iter().all(|metric| phase_of(metric).is_completed()) {
        let message = spec.is_terminated().then(|| "run terminated".to_string());
        (AnalysisPhase::Successful, message)
    } else {
        (AnalysisPhase::Running, None)
    }
}

/// Checks what the rules rely on, so a broken spec ends the run as Error with a message instead of
/// hanging or measuring nonsense: at least one metric, unique names, exactly one provider, durations
/// that parse to at most a year (a positive interval and provider timeout), a whole `count` ≥ 0 (more
/// than 1 needs an interval), conditions that compile, consecutiveFailureLimit ≥ 1, measurementRetention
/// within 0..=[`MAX_MEASUREMENT_RETENTION`]. Duration and retention errors name their field path.
pub fn validate(spec: &AnalysisRunSpec) -> Result<(), String> {
    prepare(spec).map(|_| ())
}

/// A metric with what the rules need parsed once.
struct Prepared<'a> {
    metric: &'a Metric,
    conditions: MetricConditions,
    dry_run: bool,
}

fn prepare(spec: &AnalysisRunSpec) -> Result<Vec<Prepared<'_>>, String> {
    if spec.metrics.is_empty() {
        return Err("the run has no metrics".to_string());
    }
    if let Some(retention) = spec
        .measurement_retention
        .filter(|r| !(0..=MAX_MEASUREMENT_RETENTION).contains(r))
    {
        return Err(format!(
            "spec.measurementRetention: must be between 0 and {MAX_MEASUREMENT_RETENTION}, got {retention}"
        ));
    }
    if spec.dry_run.len() > super::template::MAX_METRIC_LIST_ENTRIES {
        return Err(format!(
            "spec.dryRun: {} entries; at most {}",
            spec.dry_run.len(),
            super::template::MAX_METRIC_LIST_ENTRIES
        ));
    }
    for (i, entry) in spec.dry_run.iter().enumerate() {
        super::template::metric_name_pattern(&entry.metric_name).map_err(|e| format!("spec.dryRun[{i}]: {e}"))?;
    }
    let dry_run = dry_run_flags(spec);
    let mut prepared = Vec::with_capacity(spec.metrics.len());
    for (i, metric) in spec.metrics.iter().enumerate() {
        let name = &metric.name;
        let fail = |why: String| Err(format!("metric {name:?}: {why}"));
        if name.is_empty() {
            return Err(format!("metric #{}: name is empty", i + 1));
        }
        if spec.metrics[..i].iter().any(|earlier| earlier.name == *name) {
            return fail("the name is used by another metric".to_string());
        }
        if metric.provider.count() != 1 {
            return fail("set exactly one provider (prometheus, web or job)".to_string());
        }
        if let Some(job) = &metric.provider.job {
            let size = json_len(&job.spec);
            if size > MAX_JOB_SPEC_BYTES {
                return fail(format!(
                    "spec.metrics[{i}].provider.job.spec: {size} bytes of JSON; at most {MAX_JOB_SPEC_BYTES}"
                ));
            }
            if job
                .spec
                .template
                .spec
                .as_ref()
                .is_none_or(|pod| pod.containers.is_empty())
            {
                return fail(format!(
                    "spec.metrics[{i}].provider.job.spec.template.spec.containers: at least one container"
                ));
            }
        }
        // Each duration error names its field path, as a Rollout's InvalidSpec does.
        let at = format!("spec.metrics[{i}]");
        let interval = metric
            .interval_duration()
            .map_err(|e| format!("metric {name:?}: {at}.interval: {e}"))?;
        if interval == Some(Duration::ZERO) {
            return fail(format!("{at}.interval: must be positive"));
        }
        metric
            .initial_delay_duration()
            .map_err(|e| format!("metric {name:?}: {at}.initialDelay: {e}"))?;
        let timeouts = [
            (
                "prometheus",
                metric.provider.prometheus.as_ref().and_then(|p| p.timeout.as_deref()),
            ),
            ("web", metric.provider.web.as_ref().and_then(|w| w.timeout.as_deref())),
        ];
        for (provider, timeout) in timeouts {
            let field = format!("{at}.provider.{provider}.timeout");
            match timeout.map(crate::api::duration::parse) {
                Some(Err(e)) => return fail(format!("{field}: {e}")),
                Some(Ok(Duration::ZERO)) => return fail(format!("{field}: must be positive")),
                _ => {}
            }
        }
        match metric.count_value()? {
            Some(count) if count < 0 => return fail(format!("count {count} is negative")),
            Some(count) if count > 1 && interval.is_none() => {
                return fail(format!("count {count} needs an interval between measurements"));
            }
            _ => {}
        }
        if let Some(error) = metric.limit_errors().into_iter().next() {
            return fail(format!("{at}.{error}"));
        }
        if metric.consecutive_success_limit_or_default() < 0 {
            return fail(format!(
                "{at}.consecutiveSuccessLimit: {} is negative (0 turns it off)",
                metric.consecutive_success_limit_or_default()
            ));
        }
        if let Some(limit) = metric.consecutive_failure_limit.filter(|limit| *limit < 1) {
            return fail(format!("consecutiveFailureLimit {limit} must be at least 1"));
        }
        if let Some(retention) = metric
            .measurement_retention
            .filter(|r| !(0..=MAX_MEASUREMENT_RETENTION).contains(r))
        {
            return fail(format!(
                "{at}.measurementRetention: must be between 0 and {MAX_MEASUREMENT_RETENTION}, got {retention}"
            ));
        }
        let conditions = MetricConditions::compile(metric)?;
        prepared.push(Prepared {
            metric,
            conditions,
            dry_run: dry_run[i],
        });
    }
    Ok(prepared)
}

/// When the metric should next be measured, never earlier than `now` (so `Some(now)` means "due now");
/// `None` when it is finished or waits for nothing (its spec is invalid, see [`validate`]).
///
/// - first measurement: `run_started_at` + initialDelay;
/// - after an Error: its finish + 10 s ([`ERROR_RETRY_INTERVAL`]);
/// - after anything else: its finish + interval, or `None` once [`effective_count`] is reached.
///
/// Computed from the status alone, so a restarted controller resumes the same schedule.
pub fn next_measurement_at(
    metric: &Metric,
    result: &MetricResult,
    run_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if result.phase.is_completed() || in_flight(result).is_some() {
        return None;
    }
    let count = effective_count(metric).ok()?;
    // Recorded times later than now (a skewed clock, an edited status) count as now, so no wait is
    // ever longer than the spec's duration.
    let due = match result.measurements.last() {
        None => after(
            run_started_at.min(now),
            metric.initial_delay_duration().ok()?.unwrap_or_default(),
        ),
        Some(last) => {
            let finished = last.finished_at.or(last.started_at).unwrap_or(now).min(now);
            if last.phase == AnalysisPhase::Error {
                after(finished, ERROR_RETRY_INTERVAL)
            } else if count.is_some_and(|count| result.count >= count) {
                return None;
            } else {
                // Without an interval the only way to get here is count 1 not yet reached, i.e. after
                // Errors only — covered above; keep a sane fallback anyway.
                after(
                    finished,
                    metric.interval_duration().ok()?.unwrap_or(ERROR_RETRY_INTERVAL),
                )
            }
        }
    };
    Some(due.max(now))
}

/// What [`step`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The status to write: measurements recorded, metric and run phases, summary, messages.
    pub status: AnalysisRunStatus,
    /// Metrics to measure now, by name, in spec order. Empty once the run is completed.
    pub measure: Vec<String>,
    /// Metrics whose measurement is still running (a Job) and should be looked at now.
    pub resume: Vec<String>,
    /// When to reconcile again for the next measurement not yet due (`None`: nothing scheduled — the
    /// run is completed, or every pending metric is in `measure`).
    pub requeue_after: Option<Duration>,
}

/// One turn of the analysis loop, pure: record `outcomes` (metric name → finished measurement), assess
/// every metric and the run, and say which metrics are due now and when the next one is.
///
/// - A completed run is returned unchanged: its verdict is final, late outcomes are dropped.
/// - An invalid spec ([`validate`]) ends the run as Error with the reason; nothing is measured.
/// - `startedAt` is set on the first step; initialDelay counts from it.
/// - Outcomes for unknown or already finished metrics are dropped.
/// - `spec.terminate`: unfinished metrics end Successful unless a limit was crossed, so the run ends.
///
/// The controller calls it once to learn what is due, measures those metrics, and calls it again with
/// the outcomes (the second call never asks to measure a metric it just recorded).
pub fn step(
    spec: &AnalysisRunSpec,
    status: Option<&AnalysisRunStatus>,
    now: DateTime<Utc>,
    outcomes: Vec<(String, MeasurementOutcome)>,
) -> StepOutput {
    let measurements = match prepare(spec) {
        Ok(prepared) => outcomes
            .into_iter()
            .filter_map(|(name, outcome)| {
                let p = prepared.iter().find(|p| p.metric.name == name)?;
                Some((name, judge(p.metric, &p.conditions, outcome)))
            })
            .collect(),
        // `step_judged` ends the run with the reason.
        Err(_) => vec![],
    };
    step_judged(spec, status, now, measurements)
}

/// A finished measurement as the status stores it: its phase ([`assess_measurement`]) and its value,
/// message and query cut to [`MAX_MEASUREMENT_TEXT_BYTES`]. The conditions judge the whole value.
pub fn judge(metric: &Metric, conditions: &MetricConditions, outcome: MeasurementOutcome) -> Measurement {
    let (phase, message) = assess_measurement(metric, conditions, &outcome.value);
    judged(phase, message, outcome)
}

/// The stored form of `outcome` once judged `phase` for the reason `message` (see [`judge`]); for
/// callers that judged it another way, e.g. a condition that ran out of its evaluation budget.
pub fn judged(phase: AnalysisPhase, message: Option<String>, outcome: MeasurementOutcome) -> Measurement {
    let cut = |text: String| truncate(&text, MAX_MEASUREMENT_TEXT_BYTES).into_owned();
    Measurement {
        phase,
        value: outcome.value.as_ref().ok().map(|value| cut(value.to_string())),
        started_at: Some(outcome.started_at),
        finished_at: Some(outcome.finished_at),
        message: message.map(cut),
        query: outcome.query.map(cut),
        metadata: Default::default(),
    }
}

/// [`step`] for measurements already judged ([`judge`]): the controller judges off the async runtime,
/// under a time budget, and records here. The returned status fits [`MAX_STATUS_BYTES`] as far as
/// [`fit_status`] can make it.
pub fn step_judged(
    spec: &AnalysisRunSpec,
    status: Option<&AnalysisRunStatus>,
    now: DateTime<Utc>,
    measurements: Vec<(String, Measurement)>,
) -> StepOutput {
    let mut output = step_unfitted(spec, status, now, measurements);
    // A completed run is final and already written; trimming it would only produce a needless write.
    if status.is_none_or(|s| !s.phase.is_some_and(AnalysisPhase::is_completed)) {
        fit_status(&mut output.status, MAX_STATUS_BYTES);
    }
    output
}

fn step_unfitted(
    spec: &AnalysisRunSpec,
    status: Option<&AnalysisRunStatus>,
    now: DateTime<Utc>,
    measurements: Vec<(String, Measurement)>,
) -> StepOutput {
    let mut status = status.cloned().unwrap_or_default();
    let done = |status: AnalysisRunStatus| StepOutput {
        status,
        measure: vec![],
        resume: vec![],
        requeue_after: None,
    };
    if status.phase.is_some_and(AnalysisPhase::is_completed) {
        return done(status);
    }
    let started_at = *status.started_at.get_or_insert(now);
    let prepared = match prepare(spec) {
        Ok(prepared) => prepared,
        Err(error) => {
            status.phase = Some(AnalysisPhase::Error);
            let message = format!("invalid analysis: {error}");
            status.message = Some(truncate(&message, MAX_MEASUREMENT_TEXT_BYTES).into_owned());
            return done(status);
        }
    };

    // One result per metric, in spec order; results of metrics no longer in the spec are dropped.
    let mut results: Vec<MetricResult> = prepared
        .iter()
        .map(|p| {
            let mut result = status
                .metric_results
                .iter()
                .find(|r| r.name == p.metric.name)
                .cloned()
                .unwrap_or_else(|| MetricResult {
                    name: p.metric.name.clone(),
                    ..MetricResult::default()
                });
            result.dry_run = p.dry_run.then_some(true);
            result
        })
        .collect();

    for (name, measurement) in measurements {
        let Some(index) = prepared.iter().position(|p| p.metric.name == name) else {
            continue;
        };
        let (metric, result) = (prepared[index].metric, &mut results[index]);
        if result.phase.is_completed() {
            continue;
        }
        record_measurement(result, measurement, spec.measurement_retention_for(metric));
    }

    if spec.is_terminated() {
        close_in_flight(&mut results, now, "the run was terminated while this measurement ran");
    }
    for (p, result) in prepared.iter().zip(results.iter_mut()) {
        if !result.phase.is_completed() {
            (result.phase, result.message) = metric_phase(p.metric, result, spec.is_terminated());
        }
    }

    let (phase, message) = run_phase(spec, &results);
    if phase.is_completed() {
        // Their Jobs are deleted by the controller; the record says why they never finished.
        close_in_flight(&mut results, now, "the run ended while this measurement ran");
    }
    status.phase = Some(phase);
    status.message = message;
    status.run_summary = Some(summary(&prepared, &results));
    let mut output = StepOutput {
        measure: vec![],
        resume: vec![],
        requeue_after: None,
        status: AnalysisRunStatus {
            metric_results: results,
            ..status
        },
    };
    if phase.is_completed() {
        return output;
    }
    for (p, result) in prepared.iter().zip(&output.status.metric_results) {
        if !result.phase.is_completed() && in_flight(result).is_some() {
            output.resume.push(p.metric.name.clone());
            let poll = IN_FLIGHT_POLL_INTERVAL;
            output.requeue_after = Some(output.requeue_after.map_or(poll, |w| w.min(poll)));
            continue;
        }
        match next_measurement_at(p.metric, result, started_at, now) {
            Some(due) if due <= now => output.measure.push(p.metric.name.clone()),
            Some(due) => {
                let wait = (due - now).to_std().unwrap_or_default();
                output.requeue_after = Some(output.requeue_after.map_or(wait, |w| w.min(wait)));
            }
            None => {}
        }
    }
    output
}

/// Ends every in-flight measurement as Successful-but-uncounted with `why` (as Argo ends a terminated
/// Job measurement): nothing is left Running in a status that will not be looked at again.
fn close_in_flight(results: &mut [MetricResult], now: DateTime<Utc>, why: &str) {
    for result in results {
        if let Some(last) = result.measurements.last_mut().filter(|m| is_in_flight(m)) {
            last.phase = AnalysisPhase::Successful;
            last.finished_at = Some(now);
            last.message = Some(why.to_string());
        }
    }
}

/// Makes `status` fit in `max_bytes` of JSON, dropping the least useful first: the oldest measurements
/// of the metric holding the most (each metric keeps its newest: the schedule needs it), then every
/// stored text cut to a few hundred bytes. Counters, phases and the run's verdict are never touched.
/// Returns whether it fits; a status that still does not (hundreds of metrics) is written as it is and
/// the API server decides.
pub fn fit_status(status: &mut AnalysisRunStatus, max_bytes: usize) -> bool {
    let mut size = json_len(status);
    if size <= max_bytes {
        return true;
    }
    // Sizes are counted once and subtracted: re-serializing after each drop would be quadratic.
    let mut sizes: Vec<Vec<usize>> = status
        .metric_results
        .iter()
        .map(|result| result.measurements.iter().map(|m| json_len(m) + 1).collect())
        .collect();
    while size > max_bytes {
        let fullest = sizes
            .iter()
            .enumerate()
            .filter(|(_, measurements)| measurements.len() > 1)
            .max_by_key(|(_, measurements)| measurements.len());
        let Some((index, _)) = fullest else { break };
        size = size.saturating_sub(sizes[index].remove(0));
        status.metric_results[index].measurements.remove(0);
    }
    if size <= max_bytes {
        return true;
    }
    truncate_in_place(&mut status.message, SHORT_TEXT_BYTES);
    for result in &mut status.metric_results {
        truncate_in_place(&mut result.message, SHORT_TEXT_BYTES);
        for measurement in &mut result.measurements {
            truncate_in_place(&mut measurement.value, SHORT_TEXT_BYTES);
            truncate_in_place(&mut measurement.message, SHORT_TEXT_BYTES);
            truncate_in_place(&mut measurement.query, SHORT_TEXT_BYTES);
        }
    }
    json_len(status) <= max_bytes
}

/// Non-dry-run metrics per phase (dry-run metrics are visible in `metricResults`).
fn summary(prepared: &[Prepared<'_>], results: &[MetricResult]) -> RunSummary {
    let mut summary = RunSummary::default();
    for (_, result) in prepared.iter().zip(results).filter(|(p, _)| !p.dry_run) {
        summary.count += 1;
        match result.phase {
            AnalysisPhase::Successful => summary.successful += 1,
            AnalysisPhase::Failed => summary.failed += 1,
            AnalysisPhase::Inconclusive => summary.inconclusive += 1,
            AnalysisPhase::Error => summary.error += 1,
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{MetricProvider, WebMetric};
    use AnalysisPhase::*;
    use ResultValue::*;
    use chrono::TimeZone;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn metric() -> Metric {
        Metric::prometheus("m", "http://prometheus:9090", "up")
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    /// A result with these counters (count = successful + failed + inconclusive).
    fn counters(successful: i32, failed: i32, inconclusive: i32, error: i32) -> MetricResult {
        MetricResult {
            name: "m".into(),
            count: successful + failed + inconclusive,
            successful,
            failed,
            inconclusive,
            error,
            ..MetricResult::default()
        }
    }

    fn outcome(at: i64, value: Result<ResultValue, String>) -> MeasurementOutcome {
        MeasurementOutcome {
            started_at: t(at),
            finished_at: t(at),
            query: Some("up".into()),
            value,
        }
    }

    #[test]
    fn measurement_phase_table() {
        let table = [
            (None, None, Successful),
            (Some(true), None, Successful),
            (Some(false), None, Failed),
            (None, Some(false), Successful),
            (None, Some(true), Failed),
            (Some(true), Some(false), Successful),
            (Some(false), Some(false), Inconclusive),
            (Some(true), Some(true), Failed),
            (Some(false), Some(true), Failed),
        ];
        for (success, failure, expected) in table {
            assert_eq!(measurement_phase(success, failure), expected, "{success:?} {failure:?}");
        }
    }

    #[test]
    fn assess_measurement_table() {
        let success = metric().with_success("result[0] >= 0.95");
        let failure = metric().with_failure("result[0] > 0.05");
        let both = metric()
            .with_success("result[0] < 0.01")
            .with_failure("result[0] > 0.05");
        // A condition that Argo would pass on an empty result: here it is never even evaluated.
        let lenient = metric().with_success("len(result) == 0 || result[0] < 0.05");
        let with_policy = |policy: NoDataPolicy| Metric {
            on_no_data: Some(policy),
            ..lenient.clone()
        };
        let (no_data_failed, no_data_error, no_data_inconclusive) = (
            with_policy(NoDataPolicy::Failed),
            with_policy(NoDataPolicy::Error),
            with_policy(NoDataPolicy::Inconclusive),
        );
        let bare = metric();
        type Case<'a> = (&'a Metric, Result<ResultValue, String>, AnalysisPhase, Option<&'a str>);
        let table: Vec<Case> = vec![
            (&success, Ok(Vector(vec![0.97])), Successful, None),
            (
                &success,
                Ok(Vector(vec![0.90])),
                Failed,
                Some("successCondition \"result[0] >= 0.95\" is false"),
            ),
            (&failure, Ok(Vector(vec![0.01])), Successful, None),
            (
                &failure,
                Ok(Vector(vec![0.10])),
                Failed,
                Some("failureCondition \"result[0] > 0.05\" is true"),
            ),
            (&both, Ok(Vector(vec![0.001])), Successful, None),
            (&both, Ok(Vector(vec![0.03])), Inconclusive, Some("neither")),
            (&both, Ok(Vector(vec![0.5])), Failed, Some("failureCondition")),
            (
                &success,
                Err("connection refused".into()),
                Error,
                Some("connection refused"),
            ),
            (&success, Ok(Scalar(0.99)), Error, Some("compare it directly")),
            (&success, Ok(Vector(vec![f64::INFINITY])), Successful, None),
            (
                &lenient,
                Ok(Vector(vec![])),
                Inconclusive,
                Some("no data: the result is empty"),
            ),
            (
                &lenient,
                Ok(Vector(vec![f64::NAN])),
                Inconclusive,
                Some("no data: the result holds NaN"),
            ),
            (
                &lenient,
                Ok(Scalar(f64::NAN)),
                Inconclusive,
                Some("onNoData: Inconclusive"),
            ),
            (&success, Ok(Vector(vec![0.99, f64::NAN])), Inconclusive, Some("NaN")),
            (&no_data_failed, Ok(Vector(vec![])), Failed, Some("onNoData: Failed")),
            (&no_data_error, Ok(Vector(vec![])), Error, Some("onNoData: Error")),
            (&no_data_inconclusive, Ok(Vector(vec![])), Inconclusive, None),
            (&bare, Ok(Vector(vec![])), Inconclusive, None),
            (&bare, Ok(Vector(vec![0.0])), Successful, None),
        ];
        for (metric, value, phase, message) in table {
            let conditions = MetricConditions::compile(metric).unwrap();
            let (got, why) = assess_measurement(metric, &conditions, &value);
            assert_eq!(
                got, phase,
                "{:?} {:?} with {value:?}: {why:?}",
                metric.success_condition, metric.failure_condition
            );
            if let Some(message) = message {
                let why = why.unwrap_or_default();
                assert!(why.contains(message), "{why:?} should contain {message:?}");
            }
        }
    }

    #[test]
    fn record_measurement_counts_streaks_and_trims_history() {
        let mut result = MetricResult::default();
        let phases = [Failed, Error, Inconclusive, Failed, Error, Error, Successful, Failed];
        for (i, phase) in phases.into_iter().enumerate() {
            let measurement = Measurement {
                phase,
                finished_at: Some(t(i as i64)),
                ..Measurement::default()
            };
            record_measurement(&mut result, measurement, 3);
            let expected_streak = match i {
                0 => 1,
                1 | 2 => 1, // an Error or Inconclusive neither extends nor breaks the streak
                3..=5 => 2,
                6 => 0, // only Successful breaks it
                _ => 1,
            };
            assert_eq!(result.consecutive_failure, expected_streak, "after #{i} {phase:?}");
        }
        assert_eq!(
            (
                result.count,
                result.successful,
                result.failed,
                result.inconclusive,
                result.error
            ),
            (5, 1, 3, 1, 3)
        );
        assert_eq!(result.consecutive_error, 0);
        let kept: Vec<_> = result.measurements.iter().map(|m| m.finished_at.unwrap()).collect();
        assert_eq!(kept, vec![t(5), t(6), t(7)], "the newest three, oldest first");

        let mut result = MetricResult::default();
        for phase in [Error, Error] {
            record_measurement(
                &mut result,
                Measurement {
                    phase,
                    ..Measurement::default()
                },
                0,
            );
        }
        assert_eq!(
            (result.count, result.error, result.consecutive_error),
            (0, 2, 2),
            "errors do not use up count"
        );
        assert_eq!(
            result.measurements.len(),
            1,
            "retention 0 still keeps the latest for the schedule"
        );
    }

    #[test]
    fn metric_phase_table() {
        let with = |f: fn(&mut Metric)| {
            let mut m = metric();
            f(&mut m);
            m
        };
        let once = metric();
        let five = metric().with_schedule("1m", 5);
        let endless = with(|m| m.interval = Some("1m".into()));
        let endless_count_zero = with(|m| {
            m.interval = Some("1m".into());
            m.count = Some(IntOrString::Int(0));
        });
        let tolerant = metric().with_schedule("1m", 5).with_failure_limit(1);
        let never_fail = metric().with_schedule("1m", 5).with_failure_limit(-1);
        let inconclusive_2 = with(|m| {
            *m = m.clone().with_schedule("1m", 5);
            m.inconclusive_limit = Some(IntOrString::Int(2));
        });
        let errors_1 = with(|m| {
            *m = m.clone().with_schedule("1m", 5);
            m.consecutive_error_limit = Some(IntOrString::Int(1));
        });
        let streak_3 = with(|m| {
            *m = m.clone().with_schedule("1m", 10);
            m.consecutive_failure_limit = Some(3);
        });
        let streak = |failed, in_a_row| MetricResult {
            consecutive_failure: in_a_row,
            ..counters(0, failed, 0, 0)
        };
        let errors = |total, in_a_row| MetricResult {
            consecutive_error: in_a_row,
            ..counters(0, 0, 0, total)
        };
        let all_bad = MetricResult {
            consecutive_error: 5,
            ..counters(0, 3, 3, 5)
        };
        #[rustfmt::skip]
        let table: Vec<(&str, &Metric, MetricResult, bool, AnalysisPhase)> = vec![
            ("nothing measured yet", &five, counters(0, 0, 0, 0), false, Pending),
            ("single measurement succeeded", &once, counters(1, 0, 0, 0), false, Successful),
            ("single measurement failed", &once, counters(0, 1, 0, 0), false, Failed),
            ("single measurement errored: retried", &once, errors(1, 1), false, Running),
            ("count not reached", &five, counters(4, 0, 0, 0), false, Running),
            ("count reached", &five, counters(5, 0, 0, 0), false, Successful),
            ("failureLimit 0 (default): first failure fails", &five, counters(1, 1, 0, 0), false, Failed),
            ("failed == failureLimit tolerated", &tolerant, counters(1, 1, 0, 0), false, Running),
            ("failed > failureLimit", &tolerant, counters(1, 2, 0, 0), false, Failed),
            ("count reached with tolerated failures", &tolerant, counters(4, 1, 0, 0), false, Successful),
            ("failureLimit -1 never fails", &never_fail, counters(0, 5, 0, 0), false, Successful),
            ("inconclusiveLimit 0 (default)", &five, counters(0, 0, 1, 0), false, Inconclusive),
            ("inconclusive == limit tolerated", &inconclusive_2, counters(0, 0, 2, 0), false, Running),
            ("inconclusive > limit", &inconclusive_2, counters(0, 0, 3, 0), false, Inconclusive),
            ("4 errors in a row tolerated (default 4)", &five, errors(4, 4), false, Running),
            ("5 errors in a row", &five, errors(5, 5), false, Error),
            ("errors not in a row", &five, MetricResult { consecutive_error: 2, ..counters(1, 0, 0, 9) }, false, Running),
            ("consecutiveErrorLimit 1", &errors_1, errors(2, 2), false, Error),
            ("Error beats Inconclusive beats Failed", &five, all_bad.clone(), false, Error),
            ("Inconclusive beats Failed", &five, counters(0, 3, 3, 0), false, Inconclusive),
            ("streak below consecutiveFailureLimit; failureLimit ignored", &streak_3, streak(7, 2), false, Running),
            ("streak reaches consecutiveFailureLimit", &streak_3, streak(3, 3), false, Failed),
            ("interval without count runs on", &endless, counters(500, 0, 0, 0), false, Running),
            ("count 0 is unset", &endless_count_zero, counters(500, 0, 0, 0), false, Running),
            ("terminated: Successful", &endless, counters(3, 0, 0, 0), true, Successful),
            ("terminated before measuring", &endless, counters(0, 0, 0, 0), true, Successful),
            ("terminated after a crossed limit", &endless, counters(3, 1, 0, 0), true, Failed),
            ("terminated after too many errors", &endless, errors(5, 5), true, Error),
        ];
        for (case, metric, result, terminated, expected) in table {
            let (phase, message) = metric_phase(metric, &result, terminated);
            assert_eq!(phase, expected, "{case}: {message:?}");
        }
        let (_, message) = metric_phase(&tolerant, &counters(0, 2, 0, 0), false);
        assert_eq!(message.as_deref(), Some("failed (2) > failureLimit (1)"));
        let (_, message) = metric_phase(&five, &all_bad, false);
        assert_eq!(
            message.as_deref(),
            Some("consecutive errors (5) > consecutiveErrorLimit (4)")
        );
    }

    #[test]
    fn run_phase_table() {
        let spec = |dry_run: &[bool]| AnalysisRunSpec {
            metrics: dry_run
                .iter()
                .enumerate()
                .map(|(i, dry)| Metric {
                    name: format!("m{i}"),
                    dry_run: Some(*dry),
                    ..metric()
                })
                .collect(),
            ..AnalysisRunSpec::default()
        };
        let results = |phases: &[AnalysisPhase]| -> Vec<MetricResult> {
            phases
                .iter()
                .enumerate()
                .map(|(i, phase)| MetricResult {
                    name: format!("m{i}"),
                    phase: *phase,
                    ..MetricResult::default()
                })
                .collect()
        };
        let table: &[(&[bool], &[AnalysisPhase], AnalysisPhase)] = &[
            (&[false, false], &[Successful, Running], Running),
            (&[false, false], &[Successful, Pending], Running),
            (&[false, false], &[Successful, Successful], Successful),
            (&[false, false], &[Failed, Running], Failed),
            (&[false, false], &[Error, Running], Error),
            (&[false, false], &[Inconclusive, Running], Inconclusive),
            (&[false, false], &[Inconclusive, Error], Error),
            (&[false, false], &[Error, Failed], Failed),
            (&[false, false, false], &[Inconclusive, Failed, Error], Failed),
            (&[false, true], &[Successful, Failed], Successful),
            (&[false, true], &[Running, Failed], Running),
            (&[false, true], &[Successful, Running], Running),
            (&[true, true], &[Failed, Error], Successful),
            (&[false, true], &[Inconclusive, Failed], Inconclusive),
        ];
        for (dry_run, phases, expected) in table {
            let (phase, message) = run_phase(&spec(dry_run), &results(phases));
            assert_eq!(phase, *expected, "dry-run {dry_run:?}, metrics {phases:?}: {message:?}");
        }
        let (_, message) = run_phase(&spec(&[false, false]), &results(&[Successful, Failed]));
        assert_eq!(message.as_deref(), Some("metric \"m1\" is Failed"));
        assert_eq!(run_phase(&spec(&[false]), &[]).0, Running, "no result yet");
    }

    #[test]
    fn next_measurement_at_table() {
        let start = t(0);
        let measured = |phase, at, count| MetricResult {
            phase: Running,
            count,
            measurements: vec![Measurement {
                phase,
                started_at: Some(t(at - 1)),
                finished_at: Some(t(at)),
                ..Measurement::default()
            }],
            ..MetricResult::default()
        };
        let delayed = Metric {
            initial_delay: Some("30s".into()),
            ..metric().with_schedule("1m", 3)
        };
        let every_minute = metric().with_schedule("1m", 3);
        let once = metric();
        let table: Vec<(&str, &Metric, MetricResult, i64, Option<i64>)> = vec![
            (
                "first, no delay: due at start",
                &every_minute,
                MetricResult::default(),
                0,
                Some(0),
            ),
            (
                "first, overdue: now",
                &every_minute,
                MetricResult::default(),
                50,
                Some(50),
            ),
            ("first, initialDelay", &delayed, MetricResult::default(), 10, Some(30)),
            (
                "after a success: interval",
                &every_minute,
                measured(Successful, 100, 1),
                120,
                Some(160),
            ),
            (
                "after a failure: interval",
                &every_minute,
                measured(Failed, 100, 1),
                100,
                Some(160),
            ),
            (
                "after an error: 10 s",
                &every_minute,
                measured(Error, 100, 1),
                100,
                Some(110),
            ),
            ("count reached", &every_minute, measured(Successful, 100, 3), 100, None),
            (
                "single measurement done",
                &once,
                measured(Successful, 100, 1),
                100,
                None,
            ),
            (
                "single measurement errored: retry",
                &once,
                measured(Error, 100, 0),
                105,
                Some(110),
            ),
            (
                "completed",
                &every_minute,
                MetricResult {
                    phase: Failed,
                    ..MetricResult::default()
                },
                0,
                None,
            ),
        ];
        for (case, metric, result, now, expected) in table {
            assert_eq!(
                next_measurement_at(metric, &result, start, t(now)),
                expected.map(t),
                "{case}"
            );
        }
    }

    #[test]
    fn validate_names_the_problem() {
        let run = |metrics: Vec<Metric>| AnalysisRunSpec {
            metrics,
            ..AnalysisRunSpec::default()
        };
        let web = Metric {
            provider: MetricProvider {
                prometheus: None,
                web: Some(WebMetric::default()),
                ..MetricProvider::default()
            },
            ..metric()
        };
        assert_eq!(
            validate(&run(vec![metric(), web.clone()])),
            Err("metric \"m\": the name is used by another metric".into())
        );
        let cases: Vec<(Metric, &str)> = vec![
            (
                Metric {
                    provider: MetricProvider::default(),
                    ..metric()
                },
                "exactly one provider",
            ),
            (
                Metric {
                    interval: Some("soon".into()),
                    ..metric()
                },
                "spec.metrics[0].interval: invalid duration \"soon\"",
            ),
            (
                Metric {
                    interval: Some("0s".into()),
                    ..metric()
                },
                "spec.metrics[0].interval: must be positive",
            ),
            (
                Metric {
                    initial_delay: Some("x".into()),
                    ..metric()
                },
                "spec.metrics[0].initialDelay: invalid duration",
            ),
            (
                Metric {
                    interval: Some("100000000000000".into()),
                    ..metric()
                },
                "spec.metrics[0].interval: invalid duration \"100000000000000\": longer than the maximum",
            ),
            (
                Metric {
                    initial_delay: Some("2562047788015216h".into()),
                    ..metric()
                },
                "spec.metrics[0].initialDelay: invalid duration \"2562047788015216h\": longer than the maximum",
            ),
            (
                Metric {
                    provider: MetricProvider {
                        web: Some(WebMetric {
                            url: "http://x".into(),
                            timeout: Some("99999999999999999999s".into()),
                            ..WebMetric::default()
                        }),
                        ..MetricProvider::default()
                    },
                    ..metric()
                },
                "spec.metrics[0].provider.web.timeout: invalid duration",
            ),
            (
                Metric {
                    provider: MetricProvider {
                        prometheus: Some(crate::api::analysis::PrometheusMetric {
                            address: "http://p".into(),
                            query: "up".into(),
                            timeout: Some("0s".into()),
                            ..Default::default()
                        }),
                        ..MetricProvider::default()
                    },
                    ..metric()
                },
                "spec.metrics[0].provider.prometheus.timeout: must be positive",
            ),
            (
                Metric {
                    count: Some(IntOrString::Int(3)),
                    ..metric()
                },
                "needs an interval",
            ),
            (
                Metric {
                    count: Some(IntOrString::String("{{args.n}}".into())),
                    ..metric()
                },
                "not a whole number",
            ),
            (
                Metric {
                    count: Some(IntOrString::Int(-1)),
                    interval: Some("1m".into()),
                    ..metric()
                },
                "negative",
            ),
            (
                Metric {
                    failure_limit: Some(IntOrString::String("{{args.limit}}".into())),
                    ..metric()
                },
                "spec.metrics[0].failureLimit: \"{{args.limit}}\" is not a whole number",
            ),
            (
                Metric {
                    inconclusive_limit: Some(IntOrString::String("many".into())),
                    ..metric()
                },
                "spec.metrics[0].inconclusiveLimit: \"many\" is not a whole number",
            ),
            (
                Metric {
                    consecutive_failure_limit: Some(0),
                    ..metric()
                },
                "consecutiveFailureLimit 0",
            ),
            (metric().with_success("result[0] >="), "does not parse"),
            (
                Metric {
                    measurement_retention: Some(i32::MAX),
                    ..metric()
                },
                "spec.metrics[0].measurementRetention: must be between 0 and 100",
            ),
            (
                Metric {
                    name: String::new(),
                    ..metric()
                },
                "name is empty",
            ),
        ];
        for (metric, expected) in cases {
            let error = validate(&run(vec![metric])).unwrap_err();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        }
        assert_eq!(validate(&run(vec![])), Err("the run has no metrics".into()));
        let mut spec = run(vec![metric()]);
        spec.measurement_retention = Some(-1);
        assert!(validate(&spec).unwrap_err().starts_with("spec.measurementRetention: "));
        assert_eq!(
            validate(&run(vec![
                metric(),
                Metric {
                    name: "w".into(),
                    ..web
                }
            ])),
            Ok(())
        );
    }

    fn run(metrics: Vec<Metric>) -> AnalysisRunSpec {
        AnalysisRunSpec {
            metrics,
            ..AnalysisRunSpec::default()
        }
    }

    #[test]
    fn step_measures_on_schedule_until_the_count_is_reached() {
        let spec = run(vec![metric().with_schedule("1m", 3).with_success("result[0] >= 0.95")]);
        let first = step(&spec, None, t(0), vec![]);
        assert_eq!(first.measure, vec!["m"]);
        assert_eq!(first.status.started_at, Some(t(0)));
        assert_eq!(first.status.phase, Some(Running));
        assert_eq!(first.status.metric_results[0].phase, Pending);

        let recorded = step(
            &spec,
            Some(&first.status),
            t(1),
            vec![("m".into(), outcome(1, Ok(Vector(vec![0.99]))))],
        );
        assert!(recorded.measure.is_empty(), "just measured");
        assert_eq!(recorded.requeue_after, Some(Duration::from_secs(60)));
        let result = &recorded.status.metric_results[0];
        assert_eq!((result.phase, result.count, result.successful), (Running, 1, 1));
        let measurement = &result.measurements[0];
        assert_eq!(measurement.value.as_deref(), Some("[0.99]"));
        assert_eq!(measurement.query.as_deref(), Some("up"));
        assert_eq!(
            (measurement.started_at, measurement.finished_at),
            (Some(t(1)), Some(t(1)))
        );

        let early = step(&spec, Some(&recorded.status), t(30), vec![]);
        assert!(early.measure.is_empty());
        assert_eq!(early.requeue_after, Some(Duration::from_secs(31)));
        assert_eq!(early.status, recorded.status, "nothing changes between measurements");

        let mut status = recorded.status;
        for at in [61, 121] {
            let due = step(&spec, Some(&status), t(at), vec![]);
            assert_eq!(due.measure, vec!["m"], "at {at}");
            status = step(
                &spec,
                Some(&due.status),
                t(at),
                vec![("m".into(), outcome(at, Ok(Vector(vec![0.97]))))],
            )
            .status;
        }
        assert_eq!(status.phase, Some(Successful));
        assert_eq!(status.metric_results[0].phase, Successful);
        assert_eq!(
            status.run_summary,
            Some(RunSummary {
                count: 1,
                successful: 1,
                ..RunSummary::default()
            })
        );
        let after = step(
            &spec,
            Some(&status),
            t(500),
            vec![("m".into(), outcome(500, Ok(Vector(vec![0.0]))))],
        );
        assert_eq!(after.status, status, "a completed run never changes");
        assert_eq!((after.measure.len(), after.requeue_after), (0, None));
    }

    #[test]
    fn step_ends_the_run_at_the_first_failed_metric() {
        let spec = run(vec![
            Metric {
                name: "slow".into(),
                ..metric().with_schedule("5m", 10)
            },
            Metric {
                name: "errors".into(),
                ..metric().with_schedule("1m", 5).with_failure("result[0] > 0.05")
            },
        ]);
        let first = step(&spec, None, t(0), vec![]);
        assert_eq!(first.measure, vec!["slow", "errors"]);
        let outcomes = vec![
            ("slow".to_string(), outcome(0, Ok(Vector(vec![1.0])))),
            ("errors".to_string(), outcome(0, Ok(Vector(vec![0.2])))),
        ];
        let done = step(&spec, Some(&first.status), t(0), outcomes);
        assert_eq!(done.status.phase, Some(Failed));
        let message = done.status.message.unwrap();
        assert!(
            message.contains("\"errors\" is Failed: failed (1) > failureLimit (0)"),
            "{message}"
        );
        assert_eq!(
            done.status.metric_results[0].phase, Running,
            "the other metric is left as it was"
        );
        assert_eq!((done.measure.len(), done.requeue_after), (0, None));
    }

    #[test]
    fn step_retries_errors_after_10s_and_gives_up_after_the_limit() {
        let spec = run(vec![metric().with_schedule("1m", 3)]);
        let mut status = step(&spec, None, t(0), vec![]).status;
        let mut now = 0;
        for attempt in 1..=5 {
            let due = step(&spec, Some(&status), t(now), vec![]);
            assert_eq!(due.measure, vec!["m"], "attempt {attempt}");
            let recorded = step(
                &spec,
                Some(&due.status),
                t(now),
                vec![("m".into(), outcome(now, Err("connection refused".into())))],
            );
            status = recorded.status;
            if attempt < 5 {
                assert_eq!(status.phase, Some(Running));
                assert_eq!(recorded.requeue_after, Some(ERROR_RETRY_INTERVAL));
            }
            now += 10;
        }
        assert_eq!(status.phase, Some(Error));
        let result = &status.metric_results[0];
        assert_eq!((result.error, result.consecutive_error, result.count), (5, 5, 0));
        assert_eq!(result.measurements[0].message.as_deref(), Some("connection refused"));
        assert_eq!(result.measurements[0].value, None);
    }

    #[test]
    fn step_no_data_pauses_instead_of_passing() {
        let spec = run(vec![metric().with_success("len(result) == 0 || result[0] < 0.05")]);
        let status = step(&spec, None, t(0), vec![]).status;
        let done = step(
            &spec,
            Some(&status),
            t(0),
            vec![("m".into(), outcome(0, Ok(Vector(vec![]))))],
        );
        assert_eq!(done.status.phase, Some(Inconclusive));
        assert_eq!(
            done.status.metric_results[0].measurements[0].value.as_deref(),
            Some("[]")
        );
    }

    #[test]
    fn step_initial_delay_and_termination() {
        let spec = run(vec![Metric {
            initial_delay: Some("30s".into()),
            interval: Some("1m".into()),
            ..metric()
        }]);
        let first = step(&spec, None, t(0), vec![]);
        assert!(first.measure.is_empty());
        assert_eq!(first.requeue_after, Some(Duration::from_secs(30)));
        let due = step(&spec, Some(&first.status), t(30), vec![]);
        assert_eq!(due.measure, vec!["m"]);
        let mut status = step(
            &spec,
            Some(&due.status),
            t(31),
            vec![("m".into(), outcome(31, Ok(Vector(vec![1.0]))))],
        )
        .status;
        assert_eq!(status.phase, Some(Running));

        let terminated = AnalysisRunSpec {
            terminate: Some(true),
            ..spec.clone()
        };
        let done = step(&terminated, Some(&status), t(40), vec![]);
        assert_eq!(done.status.phase, Some(Successful));
        assert_eq!(done.status.message.as_deref(), Some("run terminated"));

        status.metric_results[0].failed = 1;
        let done = step(&terminated, Some(&status), t(40), vec![]);
        assert_eq!(
            done.status.phase,
            Some(Failed),
            "a crossed limit still fails a terminated run"
        );
    }

    #[test]
    fn step_dry_run_metrics_report_but_never_decide() {
        let spec = run(vec![
            metric(),
            Metric {
                name: "dry".into(),
                dry_run: Some(true),
                ..metric().with_success("result[0] > 1")
            },
        ]);
        let status = step(&spec, None, t(0), vec![]).status;
        let outcomes = vec![
            ("m".to_string(), outcome(0, Ok(Vector(vec![1.0])))),
            ("dry".to_string(), outcome(0, Ok(Vector(vec![0.0])))),
        ];
        let done = step(&spec, Some(&status), t(0), outcomes);
        assert_eq!(done.status.phase, Some(Successful));
        let dry = &done.status.metric_results[1];
        assert_eq!((dry.phase, dry.dry_run), (Failed, Some(true)));
        assert_eq!(
            done.status.run_summary,
            Some(RunSummary {
                count: 1,
                successful: 1,
                ..RunSummary::default()
            })
        );
    }

    #[test]
    fn step_invalid_spec_is_an_error_without_measuring() {
        let spec = run(vec![metric().with_success("result[0] >=")]);
        let done = step(&spec, None, t(0), vec![]);
        assert_eq!(done.status.phase, Some(Error));
        assert!(
            done.status
                .message
                .unwrap()
                .starts_with("invalid analysis: metric \"m\": condition")
        );
        assert!(done.measure.is_empty());
    }

    #[test]
    fn step_keeps_measurements_bounded_while_counters_count() {
        let spec = AnalysisRunSpec {
            measurement_retention: Some(2),
            ..run(vec![metric().with_schedule("1s", 5)])
        };
        let mut status = step(&spec, None, t(0), vec![]).status;
        for at in 0..5 {
            status = step(
                &spec,
                Some(&status),
                t(at),
                vec![("m".into(), outcome(at, Ok(Vector(vec![1.0]))))],
            )
            .status;
        }
        let result = &status.metric_results[0];
        assert_eq!((result.count, result.measurements.len()), (5, 2));
        assert_eq!(status.phase, Some(Successful));
    }

    #[test]
    fn a_huge_value_is_judged_whole_and_stored_cut() {
        let spec = run(vec![metric().with_success("size(result) == 2097152")]);
        let due = step(&spec, None, t(0), vec![]);
        let mut huge = outcome(0, Ok(Text("x".repeat(2 * 1024 * 1024))));
        huge.query = Some("q".repeat(100_000));
        let done = step(&spec, Some(&due.status), t(0), vec![("m".into(), huge)]);
        assert_eq!(done.status.phase, Some(Successful), "the condition saw all 2 MiB");
        let stored = &done.status.metric_results[0].measurements[0];
        let value = stored.value.as_deref().unwrap();
        assert!(value.len() <= MAX_MEASUREMENT_TEXT_BYTES, "{}", value.len());
        // The stored text is the value's display form, quotes included: 2 MiB + 2.
        assert!(
            value.ends_with("…[truncated, 2097154 bytes]"),
            "{}",
            &value[value.len() - 40..]
        );
        let query = stored.query.as_deref().unwrap();
        assert!(query.len() <= MAX_MEASUREMENT_TEXT_BYTES && query.ends_with("[truncated, 100000 bytes]"));
    }

    #[test]
    fn an_error_message_quoting_a_huge_value_is_cut() {
        let spec = run(vec![metric().with_success("result > 1.0")]);
        let due = step(&spec, None, t(0), vec![]);
        let huge = outcome(0, Ok(Text("y".repeat(1 << 20))));
        let done = step(&spec, Some(&due.status), t(0), vec![("m".into(), huge)]);
        let message = done.status.metric_results[0].measurements[0]
            .message
            .as_deref()
            .unwrap();
        assert!(message.len() <= MAX_MEASUREMENT_TEXT_BYTES, "{}", message.len());
        assert!(message.contains("result > 1.0"), "{message}");
    }

    #[test]
    fn retention_is_capped() {
        let mut result = MetricResult::default();
        for at in 0..MAX_MEASUREMENT_RETENTION + 20 {
            let measurement = Measurement {
                phase: Successful,
                finished_at: Some(t(at.into())),
                ..Measurement::default()
            };
            record_measurement(&mut result, measurement, 1_000_000);
        }
        assert_eq!(result.measurements.len(), MAX_MEASUREMENT_RETENTION as usize);
        assert_eq!(
            result.measurements.last().unwrap().finished_at,
            Some(t((MAX_MEASUREMENT_RETENTION + 19).into())),
            "the newest are kept"
        );
        assert_eq!(result.count, MAX_MEASUREMENT_RETENTION + 20, "counters count every one");
    }

    /// A status of `metrics` metrics holding `measurements` measurements each, every text at the cap.
    fn bulky_status(metrics: usize, measurements: usize) -> AnalysisRunStatus {
        let text = "z".repeat(MAX_MEASUREMENT_TEXT_BYTES);
        AnalysisRunStatus {
            phase: Some(Running),
            message: Some(text.clone()),
            metric_results: (0..metrics)
                .map(|i| MetricResult {
                    name: format!("m{i}"),
                    count: measurements as i32,
                    successful: measurements as i32,
                    message: Some(text.clone()),
                    measurements: (0..measurements)
                        .map(|at| Measurement {
                            phase: Successful,
                            value: Some(text.clone()),
                            message: Some(text.clone()),
                            query: Some(text.clone()),
                            finished_at: Some(t(at as i64)),
                            ..Measurement::default()
                        })
                        .collect(),
                    ..MetricResult::default()
                })
                .collect(),
            ..AnalysisRunStatus::default()
        }
    }

    #[test]
    fn an_oversized_status_drops_the_oldest_measurements_first() {
        let mut status = bulky_status(3, 40);
        let before = json_len(&status);
        assert!(before > MAX_STATUS_BYTES, "{before}");
        assert!(fit_status(&mut status, MAX_STATUS_BYTES));
        let after = json_len(&status);
        assert!(after <= MAX_STATUS_BYTES, "{after}");
        for result in &status.metric_results {
            let kept = result.measurements.len();
            assert!((1..40).contains(&kept), "{kept}");
            assert_eq!(
                result.measurements.last().unwrap().finished_at,
                Some(t(39)),
                "the newest stays"
            );
            assert_eq!(
                result.measurements[0].value.as_ref().unwrap().len(),
                MAX_MEASUREMENT_TEXT_BYTES
            );
            assert_eq!(
                (result.count, result.successful),
                (40, 40),
                "counters are never trimmed"
            );
        }
        let counts: Vec<usize> = status.metric_results.iter().map(|r| r.measurements.len()).collect();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
    }

    #[test]
    fn a_status_too_big_even_with_one_measurement_per_metric_has_its_texts_cut() {
        let mut status = bulky_status(30, 2);
        assert!(fit_status(&mut status, MAX_STATUS_BYTES));
        assert!(json_len(&status) <= MAX_STATUS_BYTES);
        let result = &status.metric_results[7];
        assert_eq!(result.measurements.len(), 1);
        let value = result.measurements[0].value.as_deref().unwrap();
        assert!(
            value.len() <= SHORT_TEXT_BYTES && value.ends_with("[truncated, 4096 bytes]"),
            "{value}"
        );

        // Hundreds of metrics do not fit whatever is cut: it says so, and keeps every verdict.
        let mut status = bulky_status(2000, 1);
        assert!(!fit_status(&mut status, MAX_STATUS_BYTES));
        assert_eq!(status.metric_results.len(), 2000);
    }

    #[test]
    fn step_drops_outcomes_for_unknown_metrics() {
        let spec = run(vec![metric()]);
        let status = step(&spec, None, t(0), vec![]).status;
        let out = step(
            &spec,
            Some(&status),
            t(0),
            vec![("other".into(), outcome(0, Ok(Scalar(1.0))))],
        );
        assert_eq!(out.status, status);
    }

    #[test]
    fn counters_from_an_edited_status_saturate() {
        let mut result = MetricResult {
            count: i32::MAX,
            failed: i32::MAX,
            consecutive_failure: i32::MAX,
            error: i32::MAX,
            consecutive_error: i32::MAX,
            ..counters(0, 0, 0, 0)
        };
        let measured = |phase| Measurement {
            phase,
            ..Measurement::default()
        };
        record_measurement(&mut result, measured(Error), 10);
        assert_eq!((result.error, result.consecutive_error), (i32::MAX, i32::MAX));
        record_measurement(&mut result, measured(Failed), 10);
        assert_eq!(
            (result.count, result.failed, result.consecutive_failure),
            (i32::MAX, i32::MAX, i32::MAX)
        );
    }

    /// Any text in a duration field, at any time (chrono's whole range, the ends included): the run
    /// either ends Error naming the field, or schedules within a year — never a panic.
    mod hostile_durations {
        use super::*;
        use proptest::prelude::*;

        fn duration_text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ +]?([0-9.]{0,22}(ms|s|m|h|e)?){0,3}",
                proptest::sample::select(vec![
                    "100000000000000",
                    "99999999999999999999s",
                    "2562047788015216h",
                    "8760h",
                    "1ms"
                ])
                .prop_map(String::from),
            ]
        }

        fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
            let (min, max) = (
                DateTime::<Utc>::MIN_UTC.timestamp(),
                DateTime::<Utc>::MAX_UTC.timestamp(),
            );
            prop_oneof![min..=max, (max - 100_000)..=max, min..=(min + 100_000)]
                .prop_map(|seconds| Utc.timestamp_opt(seconds, 0).unwrap())
        }

        proptest! {
            #[test]
            fn any_duration_at_any_time_is_scheduled_or_an_error_naming_the_field(
                field in 0..3usize,
                text in duration_text(),
                now in any_time(),
                measured_at in any_time(),
            ) {
                let mut metric = Metric { count: Some(IntOrString::Int(3)), interval: Some("1m".into()), ..metric() };
                let name = ["interval", "initialDelay", "provider.prometheus.timeout"][field];
                match field {
                    0 => metric.interval = Some(text.clone()),
                    1 => metric.initial_delay = Some(text.clone()),
                    _ => metric.provider.prometheus.as_mut().unwrap().timeout = Some(text.clone()),
                }
                let valid = crate::api::duration::parse(&text).is_ok_and(|d| field == 1 || !d.is_zero());
                let spec = run(vec![metric]);
                let first = step(&spec, None, now, vec![]);
                if !valid {
                    prop_assert_eq!(first.status.phase, Some(Error));
                    let message = first.status.message.unwrap_or_default();
                    let expected = format!("spec.metrics[0].{name}: ");
                    prop_assert!(message.contains(&expected), "{}", message);
                    return Ok(());
                }
                let outcome = MeasurementOutcome { started_at: measured_at, finished_at: measured_at, query: None, value: Ok(Scalar(1.0)) };
                let second = step(&spec, Some(&first.status), now, vec![("m".into(), outcome)]);
                for out in [first, second] {
                    prop_assert_ne!(out.status.phase, Some(Error));
                    if let Some(wait) = out.requeue_after {
                        prop_assert!(wait <= crate::api::duration::MAX, "{:?}", wait);
                    }
                }
            }
        }
    }

    /// A metric with count 10 (interval 1m), the given limits (`None`: unset).
    fn limited(failure: i32, success: Option<i32>) -> Metric {
        Metric {
            consecutive_success_limit: success.map(IntOrString::Int),
            inconclusive_limit: Some(IntOrString::Int(-1)),
            ..metric().with_schedule("1m", 10).with_failure_limit(failure)
        }
    }

    /// Records `phases` one by one, stopping at the first completed metric phase: (phase, after how many).
    fn play(metric: &Metric, phases: &[AnalysisPhase], terminated_at_end: bool) -> (AnalysisPhase, usize) {
        let mut result = MetricResult::default();
        for (i, phase) in phases.iter().enumerate() {
            let measurement = Measurement {
                phase: *phase,
                finished_at: Some(t(i as i64)),
                ..Measurement::default()
            };
            record_measurement(&mut result, measurement, 10);
            let (got, _) = metric_phase(metric, &result, false);
            if got.is_completed() {
                return (got, i + 1);
            }
        }
        (metric_phase(metric, &result, terminated_at_end).0, phases.len())
    }

    #[test]
    fn consecutive_success_limit_table() {
        let only_success = limited(-1, Some(3));
        let both = limited(1, Some(3));
        let sfs = [Successful, Failed, Successful, Successful, Successful];
        // Only consecutiveSuccessLimit: a failure breaks the streak, three in a row succeed.
        assert_eq!(play(&only_success, &sfs, false), (Successful, 5));
        // Never three in a row by the end (terminated): Failed, as Argo.
        assert_eq!(play(&only_success, &[Successful, Failed, Successful], true).0, Failed);
        // The count reached without the streak: Failed.
        let ten = [Successful, Failed].repeat(5);
        assert_eq!(play(&only_success, &ten, false), (Failed, 10));
        // Both: the streak first wins …
        assert_eq!(play(&both, &sfs, false), (Successful, 5));
        // … the failure limit first wins …
        assert_eq!(play(&both, &[Failed, Successful, Failed], false), (Failed, 3));
        // … neither by the count: Inconclusive.
        let tolerant = limited(3, Some(3));
        assert_eq!(
            play(&tolerant, &[Successful, Successful, Failed].repeat(4)[..10], false),
            (Inconclusive, 10)
        );
        // An Error or Inconclusive measurement breaks the streak too.
        let lenient = Metric {
            consecutive_error_limit: Some(IntOrString::Int(-1)),
            ..only_success.clone()
        };
        assert_eq!(
            play(&lenient, &[Successful, Successful, Error, Successful, Successful], true).0,
            Failed
        );
        // Unset: the old rule, Successful at the count.
        assert_eq!(play(&limited(0, None), &[Successful; 10], false), (Successful, 10));
        // "{{args.n}}" substituted into a string: a number like any other.
        let mut from_args = limited(-1, None);
        from_args.consecutive_success_limit = Some(IntOrString::String(" 2 ".into()));
        from_args.normalize_numbers();
        assert_eq!(from_args.consecutive_success_limit, Some(IntOrString::Int(2)));
        assert_eq!(play(&from_args, &[Successful; 3], false), (Successful, 2));
    }

    #[test]
    fn consecutive_success_limit_is_validated() {
        let mut negative = limited(0, Some(-1));
        assert!(
            validate(&run(vec![negative.clone()]))
                .unwrap_err()
                .contains("consecutiveSuccessLimit")
        );
        negative.consecutive_success_limit = Some(IntOrString::String("{{args.n}}".into()));
        let error = validate(&run(vec![negative])).unwrap_err();
        assert!(
            error.contains("consecutiveSuccessLimit") && error.contains("not a whole number"),
            "{error}"
        );
    }

    #[test]
    fn an_in_flight_measurement_is_polled_counted_once_and_closed_on_termination() {
        let job_metric = Metric {
            name: "m".into(),
            provider: MetricProvider {
                job: Some(crate::api::analysis::JobMetric {
                    metadata: None,
                    spec: serde_json::from_value(serde_json::json!({
                        "template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}
                    }))
                    .unwrap(),
                }),
                ..MetricProvider::default()
            },
            ..Metric::default()
        };
        let spec = run(vec![job_metric]);
        let first = step(&spec, None, t(0), vec![]);
        assert_eq!(first.measure, ["m"]);
        let running = Measurement {
            phase: Running,
            started_at: Some(t(0)),
            ..Measurement::default()
        };
        let second = step_judged(&spec, Some(&first.status), t(0), vec![("m".into(), running.clone())]);
        assert_eq!(second.status.phase, Some(Running));
        assert_eq!(second.requeue_after, Some(IN_FLIGHT_POLL_INTERVAL));
        let third = step(&spec, Some(&second.status), t(5), vec![]);
        assert!(third.measure.is_empty(), "never a second Job while one runs");
        assert_eq!(third.resume, ["m"]);
        let result = &third.status.metric_results[0];
        assert_eq!((result.count, result.phase, result.measurements.len()), (0, Running, 1));

        // The Job completes: the same measurement, now finished, counted once.
        let done = Measurement {
            phase: Successful,
            finished_at: Some(t(9)),
            ..running.clone()
        };
        let fourth = step_judged(&spec, Some(&third.status), t(9), vec![("m".into(), done)]);
        let result = &fourth.status.metric_results[0];
        assert_eq!((result.count, result.successful, result.measurements.len()), (1, 1, 1));
        assert_eq!(fourth.status.phase, Some(Successful));

        // Terminated while running: the measurement is closed, the metric ends, nothing is left Running.
        let terminated = AnalysisRunSpec {
            terminate: Some(true),
            ..spec.clone()
        };
        let ended = step(&terminated, Some(&second.status), t(5), vec![]);
        assert_eq!(ended.status.phase, Some(Successful));
        let measurement = &ended.status.metric_results[0].measurements[0];
        assert_eq!(measurement.phase, Successful);
        assert!(measurement.finished_at.is_some() && ended.resume.is_empty());
        assert_eq!(
            ended.status.metric_results[0].count, 0,
            "not counted: the Job never finished"
        );
    }

    #[test]
    fn run_level_dry_run_list_keeps_a_metric_from_deciding() {
        let failing = Metric {
            name: "error-rate".into(),
            ..metric()
        };
        let mut spec = run(vec![failing, metric()]);
        spec.dry_run = vec![crate::api::analysis::DryRun {
            metric_name: "^error-.*".into(),
        }];
        let failed = outcome(0, Ok(Vector(vec![0.0])));
        let spec_fail = AnalysisRunSpec {
            metrics: vec![
                spec.metrics[0].clone().with_success("result[0] > 1.0"),
                spec.metrics[1].clone(),
            ],
            ..spec.clone()
        };
        let first = step(&spec_fail, None, t(0), vec![]);
        let out = step(
            &spec_fail,
            Some(&first.status),
            t(0),
            vec![("error-rate".into(), failed.clone()), ("m".into(), failed)],
        );
        assert_eq!(out.status.metric_results[0].phase, Failed);
        assert_eq!(out.status.metric_results[0].dry_run, Some(true));
        assert_eq!(
            out.status.phase,
            Some(Successful),
            "the dry-run failure does not decide"
        );
        // The metric's own dryRun: false wins over the list.
        let mut own = spec_fail.clone();
        own.metrics[0].dry_run = Some(false);
        let first = step(&own, None, t(0), vec![]);
        let out = step(
            &own,
            Some(&first.status),
            t(0),
            vec![("error-rate".into(), outcome(0, Ok(Vector(vec![0.0]))))],
        );
        assert_eq!(out.status.phase, Some(Failed));
        // A hostile pattern is refused with its field path, not compiled without bound.
        spec.dry_run[0].metric_name = "(a{1000}){1000}".into();
        let error = validate(&spec).unwrap_err();
        assert!(error.contains("spec.dryRun[0]"), "{error}");
        spec.dry_run[0].metric_name = "x".repeat(300);
        assert!(validate(&spec).unwrap_err().contains("at most 253"));
    }

    mod limit_properties {
        use super::*;
        use proptest::prelude::*;

        fn phases() -> impl Strategy<Value = Vec<AnalysisPhase>> {
            proptest::collection::vec(
                proptest::sample::select(vec![Successful, Failed, Inconclusive, Error]),
                0..14,
            )
        }

        fn with(failure: i32, success: i32, inconclusive: i32, errors: i32) -> Metric {
            Metric {
                consecutive_success_limit: Some(IntOrString::Int(success)),
                inconclusive_limit: Some(IntOrString::Int(inconclusive)),
                consecutive_error_limit: Some(IntOrString::Int(errors)),
                ..metric().with_schedule("1m", 10).with_failure_limit(failure)
            }
        }

        proptest! {
            /// A metric that ends Successful never had its failures past failureLimit, one that ends
            /// Failed never had its success streak reached: the first limit reached decides, alone.
            #[test]
            fn never_both_succeeds_and_fails(
                seq in phases(), failure in -1i32..4, success in 0i32..5, inconclusive in -1i32..3, errors in -1i32..3,
            ) {
                let metric = with(failure, success, inconclusive, errors);
                let mut result = MetricResult::default();
                for phase in seq {
                    record_measurement(&mut result, Measurement { phase, ..Measurement::default() }, 10);
                    let (got, _) = metric_phase(&metric, &result, false);
                    let failed = failure >= 0 && result.failed > failure;
                    let succeeded = success > 0 && result.consecutive_success >= success;
                    prop_assert!(!(failed && succeeded), "a measurement moves one counter");
                    if got == Successful { prop_assert!(!failed); }
                    if got == Failed { prop_assert!(!succeeded); }
                    if got.is_completed() { break; }
                }
            }

            /// Lowering a limit never makes a metric finish later (a stricter limit only adds ways to end).
            #[test]
            fn limits_are_monotone(
                seq in phases(), failure in 0i32..4, success in 1i32..5, lower_failure in any::<bool>(),
            ) {
                let (low, high) = if lower_failure {
                    (with(failure, success, -1, -1), with(failure + 1, success, -1, -1))
                } else {
                    (with(failure, success, -1, -1), with(failure, success + 1, -1, -1))
                };
                let finish = |metric: &Metric| {
                    let (phase, at) = play(metric, &seq, false);
                    if phase.is_completed() { at } else { usize::MAX }
                };
                prop_assert!(finish(&low) <= finish(&high));
            }
        }
    }
}
