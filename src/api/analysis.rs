//! AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun: metrics that decide whether a canary is
//! healthy. Field names and verdict rules follow Argo Rollouts; accessors apply the documented defaults.
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::duration::{self, InvalidDuration};

/// Measurements that fail before the metric fails, when unset (−1 = never fail on failures).
pub const DEFAULT_FAILURE_LIMIT: i32 = 0;
/// Inconclusive measurements tolerated before the metric is Inconclusive, when unset.
pub const DEFAULT_INCONCLUSIVE_LIMIT: i32 = 0;
/// Errors in a row tolerated before the metric is Error, when unset.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// Measurements kept per metric in the AnalysisRun status, when unset.
pub const DEFAULT_MEASUREMENT_RETENTION: i32 = 10;

/// The spec shared by AnalysisTemplate and ClusterAnalysisTemplate: arguments and the metrics to check.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "AnalysisTemplate",
    namespaced,
    category = "sluice",
    doc = "Metrics that decide whether a canary is healthy, instantiated as an AnalysisRun by a Rollout."
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Arguments the metrics refer to as `{{args.NAME}}`; a value here is the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// The metrics to measure; the run's verdict is the worst metric's.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Argo's template-level dry-run list: metrics whose name matches an entry are measured and shown
    /// but never decide the run (a metric's own `dryRun` wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Argo's template-level retention list: measurements kept per matching metric (a metric's own
    /// `measurementRetention` wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
}

/// One entry of a `dryRun` list (Argo's shape).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// A metric name, or a regular expression matched anywhere in the name as Argo does (`.*`: all).
    #[schemars(length(max = 253))]
    pub metric_name: String,
}

/// One entry of a `measurementRetention` list (Argo's shape).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// A metric name, or a regular expression matched anywhere in the name as Argo does (`.*`: all).
    #[schemars(length(max = 253))]
    pub metric_name: String,
    /// Measurements kept for the matching metrics (at most 100).
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub limit: i32,
}

/// The cluster-scoped twin of AnalysisTemplate, usable from every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "ClusterAnalysisTemplate",
    category = "sluice",
    doc = "A cluster-scoped AnalysisTemplate, referenced with clusterScope: true."
)]
#[serde(transparent)]
pub struct ClusterAnalysisTemplateSpec {
    /// Arguments and metrics, exactly as in an AnalysisTemplate.
    pub template: AnalysisTemplateSpec,
}

impl Deref for ClusterAnalysisTemplateSpec {
    type Target = AnalysisTemplateSpec;
    fn deref(&self) -> &AnalysisTemplateSpec {
        &self.template
    }
}

impl DerefMut for ClusterAnalysisTemplateSpec {
    fn deref_mut(&mut self) -> &mut AnalysisTemplateSpec {
        &mut self.template
    }
}

/// A named argument: a literal value or one taken from a Secret, a field of the Rollout, or a pod
/// template hash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    /// The name metrics use as `{{args.NAME}}`.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from, when not literal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// The source of an argument's value (set exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// The pod template hash of the stable or the latest (canary) ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout, e.g. `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// A key of a Secret in the Rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// Which ReplicaSet's pod template hash an argument takes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PodTemplateHashValue {
    /// The stable ReplicaSet's hash.
    Stable,
    /// The newest (canary) ReplicaSet's hash.
    Latest,
}

/// A path to a field of the owning Rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// The field, e.g. `metadata.name` or `metadata.labels['app']`.
    pub field_path: String,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// One metric: how to measure it, how often, and which results count as success or failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Unique name of the metric within the template.
    pub name: String,
    /// Time between measurements, e.g. `1m`. Without interval and count: a single measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::metric_string_schema)]
    pub interval: Option<String>,
    /// Wait this long before the first measurement, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::metric_string_schema)]
    pub initial_delay: Option<String>,
    /// Number of measurements to take; unset with an interval: measure until the run is terminated.
    /// A string may hold an `{{args.NAME}}` placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub count: Option<IntOrString>,
    /// Expression over `result` that must hold for a measurement to succeed, e.g. `result[0] >= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement fail, e.g. `result[0] > 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// The metric fails when more measurements than this failed (default 0; -1: never). A string may
    /// hold an `{{args.NAME}}` placeholder (as in Argo, so a Rollout's args can set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub failure_limit: Option<IntOrString>,
    /// The metric is Inconclusive when more measurements than this were inconclusive (default 0). A
    /// string may hold an `{{args.NAME}}` placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub inconclusive_limit: Option<IntOrString>,
    /// The metric is Error when more measurements than this errored in a row (default 4). A string may
    /// hold an `{{args.NAME}}` placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 4))]
    pub consecutive_error_limit: Option<IntOrString>,
    /// The metric succeeds once this many measurements in a row succeeded (default 0: off). With
    /// failureLimit too, whichever is reached first decides; see docs/analysis-verdicts.md. A string
    /// may hold an `{{args.NAME}}` placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// Sluice extension: fail only after this many failed measurements in a row (unset: count all
    /// failures against failureLimit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 1))]
    pub consecutive_failure_limit: Option<i32>,
    /// What an empty or NaN result counts as; it never counts as success (default Inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Inconclusive"))]
    pub on_no_data: Option<NoDataPolicy>,
    /// Measurements kept in the AnalysisRun status (at most 100). Unset: a matching
    /// `measurementRetention` list entry, else the run's, else 10 — so no schema default here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub measurement_retention: Option<i32>,
    /// Measure and report, but leave the run's verdict alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Where the measurement comes from.
    pub provider: MetricProvider,
}

impl Metric {
    /// failureLimit, or 0 when unset; -1 means failures never fail the metric. A limit that is not a
    /// whole number ([`Metric::limit_values`] reports it) counts as the default: the strict one.
    pub fn failure_limit_or_default(&self) -> i32 {
        whole_number(self.failure_limit.as_ref()).unwrap_or(DEFAULT_FAILURE_LIMIT)
    }

    /// inconclusiveLimit, or 0 when unset.
    pub fn inconclusive_limit_or_default(&self) -> i32 {
        whole_number(self.inconclusive_limit.as_ref()).unwrap_or(DEFAULT_INCONCLUSIVE_LIMIT)
    }

    /// consecutiveErrorLimit, or 4 when unset.
    pub fn consecutive_error_limit_or_default(&self) -> i32 {
        whole_number(self.consecutive_error_limit.as_ref()).unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT)
    }

    /// consecutiveSuccessLimit, or 0 (off) when unset; only a value above 0 applies, as in Argo.
    pub fn consecutive_success_limit_or_default(&self) -> i32 {
        whole_number(self.consecutive_success_limit.as_ref()).unwrap_or(0)
    }

    /// Every int-or-string limit that is set but not a whole number (placeholders are substituted
    /// when the run is created, so by then each must be one), as "field: why".
    pub fn limit_errors(&self) -> Vec<String> {
        [
            ("failureLimit", &self.failure_limit),
            ("inconclusiveLimit", &self.inconclusive_limit),
            ("consecutiveErrorLimit", &self.consecutive_error_limit),
            ("consecutiveSuccessLimit", &self.consecutive_success_limit),
        ]
        .into_iter()
        .filter_map(|(field, value)| match value {
            Some(IntOrString::String(text)) if whole_number(value.as_ref()).is_none() => {
                Some(format!("{field}: {:?} is not a whole number", truncated(text)))
            }
            _ => None,
        })
        .collect()
    }

    /// Turns limits and count written as strings (`"{{args.limit}}"` once substituted) into numbers.
    pub fn normalize_numbers(&mut self) {
        for value in [
            &mut self.count,
            &mut self.failure_limit,
            &mut self.inconclusive_limit,
            &mut self.consecutive_error_limit,
            &mut self.consecutive_success_limit,
        ] {
            if let Some(number) = whole_number(value.as_ref()) {
                *value = Some(IntOrString::Int(number));
            }
        }
    }

    /// onNoData, or Inconclusive when unset.
    pub fn on_no_data_or_default(&self) -> NoDataPolicy {
        self.on_no_data.unwrap_or_default()
    }

    /// measurementRetention, or 10 when unset.
    pub fn measurement_retention_or_default(&self) -> i32 {
        self.measurement_retention.unwrap_or(DEFAULT_MEASUREMENT_RETENTION)
    }

    /// Whether the metric is dry-run (reported, never decides the run).
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }

    /// The parsed interval, if set.
    pub fn interval_duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        self.interval.as_deref().map(duration::parse).transpose()
    }

    /// The parsed initial delay, if set.
    pub fn initial_delay_duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        self.initial_delay.as_deref().map(duration::parse).transpose()
    }

    /// The count as a number, if set. A string must hold a whole number by now (placeholders are
    /// substituted when the run is created).
    pub fn count_value(&self) -> Result<Option<i32>, String> {
        match &self.count {
            None => Ok(None),
            Some(IntOrString::Int(n)) => Ok(Some(*n)),
            Some(IntOrString::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("metric {:?}: count {s:?} is not a whole number", self.name)),
        }
    }
}

/// An int-or-string as a whole number: the int, or a string holding one (surrounding spaces allowed).
fn whole_number(value: Option<&IntOrString>) -> Option<i32> {
    match value? {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(text) => text.trim().parse().ok(),
    }
}

/// A user's text quoted in an error: at most 64 characters of it.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What an empty or NaN query result counts as.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum NoDataPolicy {
    /// The measurement is Inconclusive (the Rollout pauses).
    #[default]
    Inconclusive,
    /// The measurement Failed.
    Failed,
    /// The measurement is an Error (retried; too many in a row fail the metric).
    Error,
}

/// The source of a metric (set exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// Query a Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// Call an HTTP endpoint and read a number from its JSON response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// Run a Kubernetes Job: the measurement succeeds when it completes, fails when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
}

impl MetricProvider {
    /// How many providers are set (a valid metric has exactly one).
    pub fn count(&self) -> usize {
        usize::from(self.prometheus.is_some()) + usize::from(self.web.is_some()) + usize::from(self.job.is_some())
    }
}

/// A Job per measurement (Argo's `provider.job`): created in the run's namespace, owned by the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the Job (the controller adds its own labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// The Job's spec (batch/v1 JobSpec); may contain `{{args.NAME}}` placeholders.
    pub spec: k8s_openapi::api::batch::v1::JobSpec,
}

/// The metadata a job metric may set on its Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    /// Labels added to the Job.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Annotations added to the Job.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A PromQL query; its result is `result` in the conditions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// The PromQL query; may contain `{{args.NAME}}` placeholders.
    pub query: String,
    /// Give up on a query after this long, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::metric_string_schema)]
    pub timeout: Option<String>,
    /// Extra HTTP headers sent with the query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Credentials, read from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuthentication>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// An HTTP header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// How to authenticate to Prometheus (set at most one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuthentication {
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuthentication>,
    /// A bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerAuthentication>,
}

/// Username and password from Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthentication {
    /// The Secret key holding the username.
    pub username_secret_ref: SecretKeyRef,
    /// The Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// A bearer token from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BearerAuthentication {
    /// The Secret key holding the token.
    pub token_secret_ref: SecretKeyRef,
}

/// An HTTP call whose JSON response holds the value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// The URL; may contain `{{args.NAME}}` placeholders.
    pub url: String,
    /// HTTP method: GET (default), POST or PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP headers sent with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Request body, for POST and PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// JSONPath of the value in the response, e.g. `{$.data.ok}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Give up on a request after this long, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::metric_string_schema)]
    pub timeout: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// A run of metrics against one canary, created by a Rollout from its templates.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "AnalysisRun",
    namespaced,
    status = "AnalysisRunStatus",
    category = "sluice",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "One evaluation of metrics against a canary; its phase is the verdict the Rollout acts on."
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The metrics, with arguments already resolved from the templates.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// The resolved arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Stop measuring; metrics without a count end Successful unless a limit was crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// Measurements kept per metric when the metric does not say (default 10, at most 100). Sluice's
    /// run-wide number; Argo's per-metric list is resolved into each metric when the run is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub measurement_retention: Option<i32>,
    /// Argo's dry-run list: matching metrics are measured and shown but never decide the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
}

impl AnalysisRunSpec {
    /// Whether the run was asked to stop.
    pub fn is_terminated(&self) -> bool {
        self.terminate.unwrap_or(false)
    }

    /// Measurements kept for `metric`: the metric's own setting, else the run's, else 10.
    pub fn measurement_retention_for(&self, metric: &Metric) -> i32 {
        metric
            .measurement_retention
            .or(self.measurement_retention)
            .unwrap_or(DEFAULT_MEASUREMENT_RETENTION)
    }
}

/// The phase of a measurement, a metric or a whole run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum AnalysisPhase {
    /// Not started.
    #[default]
    Pending,
    /// Measuring.
    Running,
    /// Every metric succeeded.
    Successful,
    /// A metric failed.
    Failed,
    /// A metric errored too many times in a row.
    Error,
    /// A metric could not decide; the Rollout pauses for a human.
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether the phase is final.
    pub fn is_completed(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }
}

/// What the AnalysisRun controller observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// The verdict so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// Why the run is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the first measurement was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub started_at: Option<DateTime<Utc>>,
    /// Per-metric results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
    /// How many metrics ended in each phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
}

/// The measurements and tallies of one metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// The metric's verdict so far.
    pub phase: AnalysisPhase,
    /// The latest measurements, oldest first, at most measurementRetention of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// Measurements taken.
    #[serde(default)]
    pub count: i32,
    /// Successful measurements.
    #[serde(default)]
    pub successful: i32,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,
    /// Inconclusive measurements.
    #[serde(default)]
    pub inconclusive: i32,
    /// Errored measurements.
    #[serde(default)]
    pub error: i32,
    /// Errors in a row, reset by any other outcome.
    #[serde(default)]
    pub consecutive_error: i32,
    /// Failures in a row, reset by any other outcome.
    #[serde(default)]
    pub consecutive_failure: i32,
    /// Successes in a row, reset by any other outcome (Argo's field).
    #[serde(default)]
    pub consecutive_success: i32,
    /// Why the metric is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The metric is dry-run: reported, not counted in the run's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// One measurement of a metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Outcome of this measurement.
    pub phase: AnalysisPhase,
    /// The value measured, as text (a number, a list of numbers, or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// When the measurement started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Error or explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The query as sent, placeholders substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Provider details, as Argo: a job measurement records `job-name` and `job-namespace`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Metrics per phase.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Metrics in the run.
    #[serde(default)]
    pub count: i32,
    /// Metrics that succeeded.
    #[serde(default)]
    pub successful: i32,
    /// Metrics that failed.
    #[serde(default)]
    pub failed: i32,
    /// Metrics that were inconclusive.
    #[serde(default)]
    pub inconclusive: i32,
    /// Metrics that errored.
    #[serde(default)]
    pub error: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    const ARGO_STYLE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
  - name: service
  - name: api-token
    valueFrom:
      secretKeyRef: {name: prom, key: token}
  metrics:
  - name: success-rate
    interval: 1m
    count: 5
    successCondition: result[0] >= 0.95
    failureLimit: 1
    provider:
      prometheus:
        address: http://prometheus.monitoring:9090
        timeout: 20s
        headers: [{key: X-Scope-OrgID, value: shop}]
        authentication:
          bearer:
            tokenSecretRef: {name: prom, key: token}
        query: |
          sum(rate(http_requests_total{service="{{args.service}}",code!~"5.."}[1m]))
          / sum(rate(http_requests_total{service="{{args.service}}"}[1m]))
  - name: smoke
    count: "{{args.count}}"
    provider:
      web:
        url: https://smoke.example.com/{{args.service}}
        jsonPath: "{$.ok}"
"#;

    #[test]
    fn argo_style_template_parses() {
        let template: AnalysisTemplate = serde_saphyr::from_str(ARGO_STYLE).unwrap();
        let [rate, smoke] = template.spec.metrics.as_slice() else {
            panic!("two metrics");
        };
        assert_eq!(rate.interval_duration(), Ok(Some(Duration::from_secs(60))));
        assert_eq!(rate.count_value(), Ok(Some(5)));
        assert_eq!(rate.failure_limit_or_default(), 1);
        let prometheus = rate.provider.prometheus.as_ref().unwrap();
        assert!(prometheus.query.contains("{{args.service}}"));
        assert_eq!(
            prometheus
                .authentication
                .as_ref()
                .unwrap()
                .bearer
                .as_ref()
                .unwrap()
                .token_secret_ref
                .key,
            "token"
        );
        assert_eq!(
            template.spec.args[1]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "prom"
        );
        assert!(smoke.count_value().unwrap_err().contains("{{args.count}}"));
        assert_eq!(
            smoke.provider.web.as_ref().unwrap().json_path.as_deref(),
            Some("{$.ok}")
        );
    }

    #[test]
    fn metric_defaults() {
        let metric = Metric::prometheus("m", "http://p:9090", "up");
        assert_eq!(metric.failure_limit_or_default(), 0);
        assert_eq!(metric.inconclusive_limit_or_default(), 0);
        assert_eq!(metric.consecutive_error_limit_or_default(), 4);
        assert_eq!(metric.on_no_data_or_default(), NoDataPolicy::Inconclusive);
        assert_eq!(metric.measurement_retention_or_default(), 10);
        assert!(!metric.is_dry_run());
        assert_eq!(metric.count_value(), Ok(None));
        assert_eq!(metric.interval_duration(), Ok(None));
        let run = AnalysisRunSpec {
            measurement_retention: Some(3),
            ..AnalysisRunSpec::default()
        };
        assert_eq!(run.measurement_retention_for(&metric), 3);
        assert_eq!(run.measurement_retention_for(&metric.clone().with_failure_limit(2)), 3);
    }

    #[test]
    fn schema_defaults_match_accessor_defaults() {
        let crd = serde_json::to_value(AnalysisTemplate::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut object = serde_json::to_value(AnalysisTemplate::example(
            "t",
            vec![Metric::prometheus("m", "http://p:9090", "up")],
        ))
        .unwrap();
        sluice_sim::schema::apply_defaults(schema, &mut object);
        let defaulted: AnalysisTemplate = serde_json::from_value(object).unwrap();
        let metric = &defaulted.spec.metrics[0];
        let bare = Metric::default();
        let int = |n: i32| Some(IntOrString::Int(n));
        assert_eq!(metric.failure_limit, int(bare.failure_limit_or_default()));
        assert_eq!(metric.inconclusive_limit, int(bare.inconclusive_limit_or_default()));
        assert_eq!(
            metric.consecutive_error_limit,
            int(bare.consecutive_error_limit_or_default())
        );
        assert_eq!(metric.on_no_data, Some(bare.on_no_data_or_default()));
        // No schema default: a defaulted 10 would hide the dryRun/measurementRetention lists and the
        // run's own measurementRetention (the accessor still answers 10).
        assert_eq!(metric.measurement_retention, None);
        assert_eq!(bare.measurement_retention_or_default(), DEFAULT_MEASUREMENT_RETENTION);
        assert_eq!(metric.consecutive_success_limit, None, "0 (off) needs no default");
    }

    #[test]
    fn cluster_template_has_the_same_wire_format() {
        let namespaced: AnalysisTemplate = serde_saphyr::from_str(ARGO_STYLE).unwrap();
        let yaml = ARGO_STYLE.replace("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate");
        let cluster: ClusterAnalysisTemplate = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(cluster.spec.metrics, namespaced.spec.metrics);
        assert_eq!(
            serde_json::to_value(&cluster.spec).unwrap(),
            serde_json::to_value(&namespaced.spec).unwrap()
        );
    }

    #[test]
    fn run_status_round_trips() {
        let status: AnalysisRunStatus = serde_saphyr::from_str(
            r#"
phase: Running
startedAt: 2025-01-02T03:04:05Z
metricResults:
- name: success-rate
  phase: Running
  count: 1
  successful: 1
  measurements:
  - {phase: Successful, value: "[0.99]", startedAt: 2025-01-02T03:04:05Z, finishedAt: 2025-01-02T03:04:06Z}
runSummary: {count: 1}
"#,
        )
        .unwrap();
        assert_eq!(status.phase, Some(AnalysisPhase::Running));
        assert!(!AnalysisPhase::Running.is_completed() && AnalysisPhase::Inconclusive.is_completed());
        let result = &status.metric_results[0];
        assert_eq!(result.measurements[0].value.as_deref(), Some("[0.99]"));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["startedAt"], "2025-01-02T03:04:05Z");
        assert_eq!(serde_json::from_value::<AnalysisRunStatus>(json).unwrap(), status);
    }
}
