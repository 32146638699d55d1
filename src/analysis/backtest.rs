//! Backtest: what an analysis would have said at past instants, from the metrics' history.
//!
//! For each instant `t` of a window (`from`, `from + every`, … ≤ `to`):
//! - every metric is measured once *at* `t` (a Prometheus instant query with `time = t`, so range
//!   selectors keep their meaning) and judged by the same rules as a live measurement
//!   ([`rules::assess_measurement`] via [`judge_within_budget`]): its value and phase;
//! - the run is simulated as if it had started at `t`: [`rules::step_judged`] — the live controller's
//!   own loop, not a copy — is driven with a simulated clock, each measurement taken at the instant the
//!   rules ask for it (`t`, `t + interval`, error retries 10 s later, initialDelay …). The run's phase is
//!   the verdict it reached, or — when the next measurement would fall after `to`, or after
//!   [`MAX_RUN_MEASUREMENTS`] — the phase it still had then (`Running`): the window cannot say more.
//!
//! The I/O is behind [`Source`], so tests use a fake; [`PrometheusSource`] is the real one. Measurements
//! are cached by (metric, instant): a run whose interval is a multiple of `every` reuses the per-instant
//! measurements and costs no extra query. Everything is bounded: instants ([`MAX_INSTANTS`]), queries
//! ([`MAX_QUERIES`]), queries in flight ([`QUERIES_IN_FLIGHT`]), each query by its provider timeout,
//! conditions by the controller's evaluation budget.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::allowlist::Allowlist;
use super::providers::{self, SecretValues};
use super::reconcile::judge_within_budget;
use super::rules;
use super::{MeasurementOutcome, ResultValue};
use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric};
use crate::bounds::truncate;

/// At most this many instants per backtest (a day every 9 s, a week every minute).
pub const MAX_INSTANTS: usize = 10_000;
/// At most this many provider queries per backtest; past it the backtest stops with an error.
pub const MAX_QUERIES: usize = 100_000;
/// Queries (and simulated runs) in flight at once: a backtest must not flood the Prometheus it reads.
pub const QUERIES_IN_FLIGHT: usize = 8;
/// The smallest `every`: Prometheus rarely scrapes more often, finer instants only repeat samples.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// A simulated run stops after this many measurements (a metric with an interval and no count runs until
/// the rollout ends it; the window bounds it too) and is reported with the phase it had then.
pub const MAX_RUN_MEASUREMENTS: usize = 500;
/// Stored texts (values, messages) are cut to this: a backtest holds thousands of them.
const MAX_TEXT_BYTES: usize = 512;

/// Where measurements come from: one measurement of `metric` as it would have been taken at `at`.
pub trait Source: Sync {
    /// The value at `at`, or why there is none (an Error measurement).
    fn query(&self, metric: &Metric, at: DateTime<Utc>) -> impl Future<Output = Result<ResultValue, String>> + Send;
}

/// The real source: each metric's own provider ([`providers::measure`]: Secret arguments, the address
/// check, timeouts, bounded answers) with the query evaluated at the instant. Only Prometheus can be
/// asked about the past; see [`check_backtestable`].
pub struct PrometheusSource {
    /// The run spec the metrics belong to (for Secret arguments).
    pub spec: AnalysisRunSpec,
    /// Secret values read for the metrics, if any.
    pub secrets: SecretValues,
    /// Where providers may go.
    pub allowlist: Allowlist,
}

impl Source for PrometheusSource {
    async fn query(&self, metric: &Metric, at: DateTime<Utc>) -> Result<ResultValue, String> {
        providers::measure(&self.spec, metric, &self.secrets, &self.allowlist, at)
            .await
            .value
    }
}

/// Every metric can be measured at a past instant (Prometheus), else the names of those that cannot
/// and why.
pub fn check_backtestable(spec: &AnalysisRunSpec) -> Result<(), String> {
    let others: Vec<String> = spec
        .metrics
        .iter()
        .filter(|m| m.provider.prometheus.is_none() || m.provider.count() != 1)
        .map(|m| format!("{:?} ({})", m.name, provider_kind(m)))
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "metric(s) {} cannot be backtested: only Prometheus can be queried at a past instant",
            others.join(", ")
        ))
    }
}

/// The provider a metric uses, for messages.
pub fn provider_kind(metric: &Metric) -> &'static str {
    let p = &metric.provider;
    match (p.prometheus.is_some(), p.web.is_some(), p.job.is_some()) {
        (true, false, false) => "prometheus",
        (false, true, false) => "web",
        (false, false, true) => "job",
        (false, false, false) => "no provider",
        _ => "several providers",
    }
}

/// The instants of a window: `from`, `from + every`, … up to and including `to`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub every: Duration,
}

impl Window {
    /// The instants, or why the window is refused: `to` before `from`, `every` under [`MIN_EVERY`], more
    /// than [`MAX_INSTANTS`] instants (the message says which `every` fits).
    pub fn instants(&self) -> Result<Vec<DateTime<Utc>>, String> {
        if self.every < MIN_EVERY {
            return Err(format!("--every must be at least {}s", MIN_EVERY.as_secs()));
        }
        if self.to < self.from {
            return Err(format!(
                "--to ({}) is before --from ({})",
                rfc3339(self.to),
                rfc3339(self.from)
            ));
        }
        let span = (self.to - self.from).to_std().unwrap_or_default();
        let every = self.every.as_millis().max(1);
        let count = span.as_millis() / every + 1;
        if count > MAX_INSTANTS as u128 {
            let fits = span.as_secs().div_ceil(MAX_INSTANTS as u64 - 1).max(1);
            return Err(format!(
                "{count} instants from --from to --to every {:?}; at most {MAX_INSTANTS} (use --every {fits}s or a shorter window)",
                self.every
            ));
        }
        let step = TimeDelta::from_std(self.every).map_err(|_| "--every is too large".to_string())?;
        let mut instants = Vec::with_capacity(count as usize);
        let mut at = self.from;
        while at <= self.to && instants.len() < MAX_INSTANTS {
            instants.push(at);
            at = match at.checked_add_signed(step) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(instants)
    }

    /// `every` chosen so that the window holds at most `instants` instants (at least [`MIN_EVERY`]).
    pub fn every_for(from: DateTime<Utc>, to: DateTime<Utc>, instants: usize) -> Duration {
        let span = (to - from).to_std().unwrap_or_default().as_secs();
        let gaps = instants.saturating_sub(1).max(1) as u64;
        Duration::from_secs(span.div_ceil(gaps)).max(MIN_EVERY)
    }
}

/// One metric at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricEvaluation {
    pub name: String,
    pub phase: AnalysisPhase,
    /// The value as a measurement stores it (`0.99`, `[0.5]`, `[]`); `null` when the query failed.
    pub value: Option<String>,
    /// Why the phase (the failed condition, no data, the provider's error).
    #[serde(skip)]
    pub message: Option<String>,
}

/// One instant: each metric measured there, and the run's phase had it started there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    #[serde(serialize_with = "serialize_time")]
    pub time: DateTime<Utc>,
    pub phase: AnalysisPhase,
    pub metrics: Vec<MetricEvaluation>,
    /// Why the run ended so (its status message).
    #[serde(skip)]
    pub message: Option<String>,
}

/// The longest run of consecutive instants whose run would have Failed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stretch {
    #[serde(serialize_with = "serialize_time")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "serialize_time")]
    pub to: DateTime<Utc>,
    pub instants: usize,
}

/// Counts and shares of the runs' phases over the instants.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub instants: usize,
    pub successful: usize,
    pub failed: usize,
    pub inconclusive: usize,
    pub error: usize,
    /// Runs the window ended before they decided.
    pub running: usize,
    pub longest_failing: Option<Stretch>,
    /// Provider queries the backtest sent.
    pub queries: usize,
}

impl Summary {
    /// The share of instants (0–1) whose run ended in `phase`.
    pub fn share(&self, phase: AnalysisPhase) -> f64 {
        let n = match phase {
            AnalysisPhase::Successful => self.successful,
            AnalysisPhase::Failed => self.failed,
            AnalysisPhase::Inconclusive => self.inconclusive,
            AnalysisPhase::Error => self.error,
            AnalysisPhase::Pending | AnalysisPhase::Running => self.running,
        };
        if self.instants == 0 {
            0.0
        } else {
            n as f64 / self.instants as f64
        }
    }
}

/// What a backtest found: `{"evaluations": [...], "summary": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub evaluations: Vec<Evaluation>,
    pub summary: Summary,
}

fn serialize_time<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*time))
}

/// RFC 3339 in UTC with `Z`, seconds precision unless there are milliseconds.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Parses `--from`/`--to`: RFC 3339 (`2026-12-07T05:00:00Z`), `now`, or a time relative to `now`
/// (`-2h`, `-90m`, `-1h30m`; the duration grammar of the CRDs). `now` counts in whole seconds, so the
/// instants read as whole seconds too.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::SubsecRound as _;
    let now = now.trunc_subsecs(0);
    let text = text.trim();
    if text.len() > 64 {
        return Err("a time is at most 64 characters".to_string());
    }
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = crate::api::duration::parse(ago).map_err(|e| format!("{text:?}: {e}"))?;
        let ago = TimeDelta::from_std(ago).map_err(|_| format!("{text:?}: too far back"))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| format!("{text:?}: too far back"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is neither RFC 3339 (2026-12-07T05:00:00Z), `now`, nor relative (-2h, -90m)"))
}

/// Measurements taken so far, by (metric index, instant in ms), and the query budget.
struct Measured<'a, S> {
    spec: &'a AnalysisRunSpec,
    source: &'a S,
    cache: Mutex<HashMap<(usize, i64), Measurement>>,
    queries: AtomicUsize,
}

impl<S: Source> Measured<'_, S> {
    /// Metric `index` measured at `at` and judged, once per (metric, instant).
    async fn at(&self, index: usize, at: DateTime<Utc>) -> Result<Measurement, String> {
        let key = (index, at.timestamp_millis());
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        if self.queries.fetch_add(1, Ordering::Relaxed) >= MAX_QUERIES {
            return Err(format!(
                "the backtest needs more than {MAX_QUERIES} queries; use a larger --every or a shorter window"
            ));
        }
        let metric = &self.spec.metrics[index];
        let value = self.source.query(metric, at).await;
        let outcome = MeasurementOutcome {
            started_at: at,
            // The simulated clock: the next measurement is scheduled from this instant.
            finished_at: at,
            query: None,
            value,
        };
        let mut measurement = judge_within_budget(metric, outcome).await;
        measurement.value = measurement.value.map(|v| truncate(&v, MAX_TEXT_BYTES).into_owned());
        measurement.message = measurement.message.map(|v| truncate(&v, MAX_TEXT_BYTES).into_owned());
        self.lock().insert(key, measurement.clone());
        Ok(measurement)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, i64), Measurement>> {
        // A panic elsewhere cannot leave the map half-written: recover it.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The run had it started at `start`, measured no later than `to`: its final phase and message, or
    /// the phase it still had when the window (or [`MAX_RUN_MEASUREMENTS`]) ran out.
    async fn run_from(
        &self,
        start: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(AnalysisPhase, Option<String>), String> {
        let mut status: Option<AnalysisRunStatus> = None;
        let mut now = start;
        let mut measurements = 0usize;
        loop {
            let due = rules::step_judged(self.spec, status.as_ref(), now, vec![]);
            let phase = due.status.phase.unwrap_or_default();
            if phase.is_completed() {
                return Ok((phase, due.status.message));
            }
            if due.measure.is_empty() {
                let Some(wait) = due.requeue_after.and_then(|w| TimeDelta::from_std(w).ok()) else {
                    return Ok((phase, due.status.message));
                };
                match now.checked_add_signed(wait.max(TimeDelta::milliseconds(1))) {
                    Some(next) if next <= to => now = next,
                    _ => {
                        return Ok((
                            phase,
                            Some(format!("the window ends at {} before the run would", rfc3339(to))),
                        ));
                    }
                }
                status = Some(due.status);
                continue;
            }
            if measurements >= MAX_RUN_MEASUREMENTS {
                return Ok((
                    phase,
                    Some(format!("still running after {MAX_RUN_MEASUREMENTS} measurements")),
                ));
            }
            let mut taken = Vec::with_capacity(due.measure.len());
            for name in &due.measure {
                let Some(index) = self.spec.metrics.iter().position(|m| &m.name == name) else {
                    continue;
                };
                taken.push((name.clone(), self.at(index, now).await?));
                measurements += 1;
            }
            status = Some(rules::step_judged(self.spec, Some(&due.status), now, taken).status);
        }
    }
}

/// Backtests `spec` (a run spec: arguments already substituted, see
/// [`template::build_run_spec`](super::template::build_run_spec)) over `window` with measurements from
/// `source`. Errors: an invalid window, an invalid spec, a metric that cannot be measured at a past
/// instant (with [`PrometheusSource`]; fakes may answer anything), or more than [`MAX_QUERIES`] queries.
pub async fn backtest<S: Source>(spec: &AnalysisRunSpec, window: &Window, source: &S) -> Result<Report, String> {
    let instants = window.instants()?;
    rules::validate(spec).map_err(|e| format!("invalid analysis: {e}"))?;
    let measured = Measured {
        spec,
        source,
        cache: Mutex::new(HashMap::new()),
        queries: AtomicUsize::new(0),
    };
    let measured = &measured;
    // First every instant's measurements, then the runs: a run then finds the instants it measures at
    // already cached instead of racing their first query.
    let per_instant: Vec<Result<Vec<MetricEvaluation>, String>> = futures::stream::iter(instants.iter().copied())
        .map(|time| async move {
            let mut metrics = Vec::with_capacity(spec.metrics.len());
            for (index, metric) in spec.metrics.iter().enumerate() {
                let measurement = measured.at(index, time).await?;
                metrics.push(MetricEvaluation {
                    name: metric.name.clone(),
                    phase: measurement.phase,
                    value: measurement.value,
                    message: measurement.message,
                });
            }
            Ok(metrics)
        })
        .buffered(QUERIES_IN_FLIGHT)
        .collect()
        .await;
    let evaluations: Vec<Result<Evaluation, String>> = futures::stream::iter(instants.into_iter().zip(per_instant))
        .map(|(time, metrics)| async move {
            let metrics = metrics?;
            let (phase, message) = measured.run_from(time, window.to).await?;
            Ok(Evaluation {
                time,
                phase,
                metrics,
                message: message.map(|m| truncate(&m, MAX_TEXT_BYTES).into_owned()),
            })
        })
        .buffered(QUERIES_IN_FLIGHT)
        .collect()
        .await;
    let evaluations = evaluations.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut summary = summarize(&evaluations);
    summary.queries = measured.queries.load(Ordering::Relaxed).min(MAX_QUERIES);
    Ok(Report { evaluations, summary })
}

/// Counts per phase and the longest stretch of Failed instants.
pub fn summarize(evaluations: &[Evaluation]) -> Summary {
    let mut summary = Summary {
        instants: evaluations.len(),
        ..Summary::default()
    };
    let mut current: Option<Stretch> = None;
    for evaluation in evaluations {
        match evaluation.phase {
            AnalysisPhase::Successful => summary.successful += 1,
            AnalysisPhase::Failed => summary.failed += 1,
            AnalysisPhase::Inconclusive => summary.inconclusive += 1,
            AnalysisPhase::Error => summary.error += 1,
            AnalysisPhase::Pending | AnalysisPhase::Running => summary.running += 1,
        }
        if evaluation.phase == AnalysisPhase::Failed {
            let stretch = current.get_or_insert(Stretch {
                from: evaluation.time,
                to: evaluation.time,
                instants: 0,
            });
            stretch.to = evaluation.time;
            stretch.instants += 1;
            if summary
                .longest_failing
                .as_ref()
                .is_none_or(|l| stretch.instants > l.instants)
            {
                summary.longest_failing = Some(stretch.clone());
            }
        } else {
            current = None;
        }
    }
    summary
}

/// The report as text: one line per instant (the run's phase, then each metric's value and phase) and
/// a summary.
pub fn render_text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for evaluation in &report.evaluations {
        let _ = write!(
            out,
            "{}  {:<12}",
            rfc3339(evaluation.time),
            format!("{:?}", evaluation.phase)
        );
        for metric in &evaluation.metrics {
            let _ = write!(
                out,
                "  {}={} {}",
                metric.name,
                metric.value.as_deref().unwrap_or("error"),
                symbol(metric.phase)
            );
        }
        out.push('\n');
    }
    let s = &report.summary;
    let percent = |phase| format!("{:.0}%", s.share(phase) * 100.0);
    let _ = writeln!(
        out,
        "\n{} instants: Successful {}, Failed {}, Inconclusive {}, Error {}{}",
        s.instants,
        percent(AnalysisPhase::Successful),
        percent(AnalysisPhase::Failed),
        percent(AnalysisPhase::Inconclusive),
        percent(AnalysisPhase::Error),
        if s.running > 0 {
            format!(", undecided by --to {}", percent(AnalysisPhase::Running))
        } else {
            String::new()
        }
    );
    match &s.longest_failing {
        Some(stretch) => {
            let _ = writeln!(
                out,
                "longest failing stretch: {} → {} ({} instants)",
                rfc3339(stretch.from),
                rfc3339(stretch.to),
                stretch.instants
            );
        }
        None => out.push_str("no instant would have failed\n"),
    }
    out
}

/// One character per measurement phase, for the timeline.
fn symbol(phase: AnalysisPhase) -> &'static str {
    match phase {
        AnalysisPhase::Successful => "✔",
        AnalysisPhase::Failed => "✖",
        AnalysisPhase::Inconclusive => "?",
        AnalysisPhase::Error => "!",
        AnalysisPhase::Pending | AnalysisPhase::Running => "…",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use proptest::prelude::*;

    /// Answers from a function of (metric name, seconds since the epoch).
    struct Fake<F>(F);

    impl<F: Fn(&str, i64) -> Result<ResultValue, String> + Sync> Source for Fake<F> {
        async fn query(&self, metric: &Metric, at: DateTime<Utc>) -> Result<ResultValue, String> {
            (self.0)(&metric.name, at.timestamp())
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn spec(metrics: Vec<Metric>) -> AnalysisRunSpec {
        AnalysisRunSpec {
            metrics,
            ..AnalysisRunSpec::default()
        }
    }

    fn ratio() -> Metric {
        Metric::prometheus("ratio", "http://prometheus:9090", "q").with_success("result[0] >= 0.9")
    }

    /// Healthy (0.99) before second 100, failing (0.5) from it on.
    fn switch_at_100(_: &str, t: i64) -> Result<ResultValue, String> {
        Ok(ResultValue::Vector(vec![if t < 100 { 0.99 } else { 0.5 }]))
    }

    fn window(from: i64, to: i64, every: u64) -> Window {
        Window {
            from: at(from),
            to: at(to),
            every: Duration::from_secs(every),
        }
    }

    #[tokio::test]
    async fn single_measurements_follow_the_switch() {
        let report = backtest(&spec(vec![ratio()]), &window(50, 150, 10), &Fake(switch_at_100))
            .await
            .unwrap();
        let phases: Vec<_> = report
            .evaluations
            .iter()
            .map(|e| (e.time.timestamp(), e.phase))
            .collect();
        for (t, phase) in phases {
            let expected = if t < 100 {
                AnalysisPhase::Successful
            } else {
                AnalysisPhase::Failed
            };
            assert_eq!(phase, expected, "at {t}");
        }
        assert_eq!(report.summary.instants, 11);
        assert_eq!(report.summary.failed, 6);
        let longest = report.summary.longest_failing.unwrap();
        assert_eq!((longest.from, longest.to, longest.instants), (at(100), at(150), 6));
        assert_eq!(report.evaluations[0].metrics[0].value.as_deref(), Some("[0.99]"));
        // One query per instant: nothing measured twice.
        assert_eq!(report.summary.queries, 11);
    }

    #[tokio::test]
    async fn runs_use_count_interval_and_limits() {
        // Three measurements 10 s apart, one failure allowed: a run fails once two of its three
        // measurements fall after the switch, i.e. when it starts at 90 or later.
        let metric = ratio().with_failure_limit(1).with_schedule("10s", 3);
        let report = backtest(&spec(vec![metric]), &window(50, 150, 10), &Fake(switch_at_100))
            .await
            .unwrap();
        let phase = |t: i64| report.evaluations.iter().find(|e| e.time == at(t)).unwrap().phase;
        assert_eq!(phase(70), AnalysisPhase::Successful);
        assert_eq!(phase(80), AnalysisPhase::Successful, "one failure is allowed");
        assert_eq!(phase(90), AnalysisPhase::Failed);
        assert_eq!(phase(120), AnalysisPhase::Failed);
        // Its per-instant measurement is still judged alone.
        let at_90 = report.evaluations.iter().find(|e| e.time == at(90)).unwrap();
        assert_eq!(at_90.metrics[0].phase, AnalysisPhase::Successful);
        assert_eq!(phase(140), AnalysisPhase::Failed, "two failures by 150");
        assert_eq!(
            phase(150),
            AnalysisPhase::Running,
            "the window ends before its second measurement"
        );
        assert_eq!(report.summary.running, 1);
        assert_eq!(report.summary.queries, 11, "the runs reuse the instants' measurements");
    }

    #[tokio::test]
    async fn no_data_errors_and_retries() {
        let mut no_data = Metric::prometheus("empty", "http://p", "q").with_success("result[0] > 0");
        no_data.on_no_data = Some(crate::api::analysis::NoDataPolicy::Failed);
        let report = backtest(
            &spec(vec![no_data]),
            &window(0, 20, 10),
            &Fake(|_: &str, _| Ok(ResultValue::Vector(vec![]))),
        )
        .await
        .unwrap();
        assert!(report.evaluations.iter().all(|e| e.phase == AnalysisPhase::Failed));
        assert!(
            report.evaluations[0].metrics[0]
                .message
                .as_deref()
                .unwrap()
                .contains("no data")
        );

        // Errors are retried every 10 s; five in a row end the run as Error.
        let failing = Fake(|_: &str, _| Err("connection refused".to_string()));
        let report = backtest(&spec(vec![ratio()]), &window(0, 100, 10), &failing)
            .await
            .unwrap();
        assert_eq!(report.evaluations[0].phase, AnalysisPhase::Error);
        assert_eq!(report.evaluations[0].metrics[0].value, None);
        assert_eq!(
            report.evaluations[10].phase,
            AnalysisPhase::Running,
            "no time left to retry"
        );
    }

    #[test]
    fn windows_are_bounded() {
        assert_eq!(window(0, 0, 1).instants().unwrap(), vec![at(0)]);
        assert_eq!(window(0, 25, 10).instants().unwrap(), vec![at(0), at(10), at(20)]);
        assert!(window(10, 0, 1).instants().unwrap_err().contains("before"));
        let error = window(0, 86_400, 1).instants().unwrap_err();
        assert!(
            error.contains("at most 10000") && error.contains("--every 9s"),
            "{error}"
        );
        assert_eq!(window(0, 86_400, 9).instants().unwrap().len(), 9_601);
        let sub_second = Window {
            every: Duration::from_millis(500),
            ..window(0, 1, 1)
        };
        assert!(sub_second.instants().is_err());
        let every = Window::every_for(at(0), at(86_400), 300);
        assert!(window(0, 86_400, every.as_secs()).instants().unwrap().len() <= 300);
    }

    #[test]
    fn times_parse() {
        let now = at(10_000);
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-2h", now), Ok(at(10_000 - 7_200)));
        assert_eq!(parse_time("-90m", now), Ok(at(10_000 - 5_400)));
        assert_eq!(parse_time("1970-01-01T00:00:05Z", now), Ok(at(5)));
        assert_eq!(parse_time("1970-01-01T01:00:05+01:00", now), Ok(at(5)));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-99999999999h", now).is_err());
        assert!(parse_time(&"1".repeat(100), now).is_err());
    }

    #[test]
    fn only_prometheus_is_backtestable() {
        let mut web = ratio();
        web.name = "web".into();
        web.provider.prometheus = None;
        web.provider.web = Some(Default::default());
        let error = check_backtestable(&spec(vec![ratio(), web])).unwrap_err();
        assert!(error.contains("\"web\" (web)") && !error.contains("ratio"), "{error}");
        assert!(check_backtestable(&spec(vec![ratio()])).is_ok());
    }

    #[tokio::test]
    async fn text_and_json() {
        let report = backtest(&spec(vec![ratio()]), &window(90, 110, 10), &Fake(switch_at_100))
            .await
            .unwrap();
        let text = render_text(&report);
        assert!(
            text.starts_with("1970-01-01T00:01:30Z  Successful    ratio=[0.99] ✔\n"),
            "{text}"
        );
        assert!(
            text.contains("3 instants: Successful 33%, Failed 67%, Inconclusive 0%, Error 0%"),
            "{text}"
        );
        assert!(text.contains("longest failing stretch: 1970-01-01T00:01:40Z → 1970-01-01T00:01:50Z (2 instants)"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["evaluations"][0],
            serde_json::json!({"time": "1970-01-01T00:01:30Z", "phase": "Successful",
                "metrics": [{"name": "ratio", "phase": "Successful", "value": "[0.99]"}]})
        );
        assert_eq!(json["summary"]["failed"], 2);
        assert_eq!(json["summary"]["longestFailing"]["instants"], 2);
    }

    fn any_value() -> impl Strategy<Value = Result<ResultValue, String>> {
        let number = prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>(),
            0.0..1.0f64
        ];
        prop_oneof![
            number.clone().prop_map(|n| Ok(ResultValue::Scalar(n))),
            proptest::collection::vec(number, 0..4).prop_map(|v| Ok(ResultValue::Vector(v))),
            Just(Err("boom".to_string())),
            Just(Ok(ResultValue::Text("x".into()))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any values, any limits: no panic, one evaluation per instant, never more than the cap.
        #[test]
        fn backtests_never_panic(
            values in proptest::collection::vec(any_value(), 1..8),
            count in prop_oneof![Just(None), (0..5i32).prop_map(Some)],
            interval in prop_oneof![Just(None), (1..30u64).prop_map(Some)],
            failure_limit in -1..3i32,
            inconclusive_limit in -1..3i32,
            from in 0..1_000i64,
            span in 0..300i64,
            every in 1..60u64,
        ) {
            let mut metric = Metric::prometheus("m", "http://p", "q").with_success("result[0] >= 0.5");
            metric.count = count.map(IntOrString::Int);
            metric.interval = interval.map(|s| format!("{s}s"));
            metric.failure_limit = Some(IntOrString::Int(failure_limit));
            metric.inconclusive_limit = Some(IntOrString::Int(inconclusive_limit));
            let source = Fake(move |_: &str, t: i64| values[(t.rem_euclid(values.len() as i64)) as usize].clone());
            let window = window(from, from + span, every);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let result = runtime.block_on(backtest(&spec(vec![metric]), &window, &source));
            if let Ok(report) = result {
                let instants = window.instants().unwrap();
                prop_assert_eq!(report.evaluations.len(), instants.len());
                prop_assert!(report.evaluations.len() <= MAX_INSTANTS);
                prop_assert_eq!(report.summary.instants, instants.len());
                let _ = render_text(&report);
            }
        }
    }
}
