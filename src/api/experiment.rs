//! The Experiment: a short-lived run of one or more ReplicaSets, each from its own pod template, with
//! AnalysisRuns beside them (Argo Rollouts' Experiment, same field names). A Rollout's `experiment`
//! step creates one to compare a baseline with the canary on equal terms (both fresh, same size).
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{AnalysisPhase, Argument, DryRun, MeasurementRetention};
use super::conditions::Condition;
use super::pod_metadata::PodMetadata;
use super::pod_template::PodTemplate;
use crate::api::duration::{self, InvalidDuration};

/// At most this many templates per Experiment (and per experiment step).
pub const MAX_TEMPLATES: usize = 16;
/// At most this many analyses per Experiment (and per experiment step).
pub const MAX_ANALYSES: usize = 16;
/// Replicas per template when unset (Argo's default).
pub const DEFAULT_TEMPLATE_REPLICAS: i32 = 1;
/// How long a template's ReplicaSet may take to become available when unset (Argo's default).
pub const DEFAULT_EXPERIMENT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// How long finished templates keep their pods when unset (Argo's default).
pub const DEFAULT_EXPERIMENT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// Ephemeral ReplicaSets and the analyses that judge them.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "Experiment",
    namespaced,
    status = "ExperimentStatus",
    shortname = "exp",
    category = "sluice",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Duration",
        type_ = "string",
        json_path = ".spec.duration",
        description = "How long the templates run once available"
    ),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "Short-lived ReplicaSets from one or more pod templates, judged by AnalysisRuns (e.g. baseline vs canary)."
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The pod templates to run, each as its own ReplicaSet.
    #[schemars(length(min = 1, max = 16))]
    pub templates: Vec<TemplateSpec>,
    /// How long to run once every template is available (`30s`, `1h`). Unset: until the analyses marked
    /// requiredForCompletion finish, or until terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::string_schema)]
    pub duration: Option<String>,
    /// Seconds a template may take to become available before the Experiment fails (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 31_536_000))]
    pub progress_deadline_seconds: Option<i32>,
    /// Stop now: scale the templates down and terminate the analyses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// AnalysisTemplates run against the templates once they are available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub analyses: Vec<ExperimentAnalysisTemplateRef>,
    /// Seconds the templates keep their pods after the Experiment ends (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 31_536_000))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Metrics measured and shown but never deciding a run (Argo's list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Measurements kept per matching metric (Argo's list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
}

impl ExperimentSpec {
    /// The parsed duration; None when the Experiment has no time limit.
    pub fn duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        self.duration.as_deref().map(duration::parse).transpose()
    }

    /// Whether the Experiment was asked to stop.
    pub fn is_terminated(&self) -> bool {
        self.terminate.unwrap_or(false)
    }

    pub fn progress_deadline_seconds_or_default(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_EXPERIMENT_PROGRESS_DEADLINE_SECONDS)
    }

    pub fn scale_down_delay_seconds_or_default(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_EXPERIMENT_SCALE_DOWN_DELAY_SECONDS)
    }
}

/// One template of an Experiment: a ReplicaSet's worth of pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    /// The template's name, unique in the Experiment; part of its ReplicaSet's name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Pods to run (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 10_000))]
    pub replicas: Option<i32>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 31_536_000))]
    pub min_ready_seconds: Option<i32>,
    /// Selects the template's pods; must match the template's labels.
    pub selector: LabelSelector,
    /// The pods to run.
    pub template: PodTemplate,
    /// A Service in front of the template's pods (needed to send traffic to them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
}

impl TemplateSpec {
    pub fn replicas_or_default(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_TEMPLATE_REPLICAS)
    }
}

/// A Service for a template's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateService {
    /// The Service's name; default: the template's ReplicaSet name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name: Option<String>,
    /// The Service's ports (Argo's field); unset: one per container port, targeting it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<ServicePort>,
}

/// At most this many ports on a template's Service.
pub const MAX_SERVICE_PORTS: usize = 32;

/// An AnalysisTemplate run by an Experiment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisTemplateRef {
    /// The analysis's name, unique in the Experiment; part of its AnalysisRun's name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The AnalysisTemplate (or ClusterAnalysisTemplate, with clusterScope) to run.
    #[schemars(length(min = 1, max = 253))]
    pub template_name: String,
    /// Read a ClusterAnalysisTemplate instead of an AnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Arguments; values may use `{{templates.NAME.podTemplateHash}}` and
    /// `{{templates.NAME.replicaSetName}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// The Experiment does not complete until this analysis has, even past its duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

impl ExperimentAnalysisTemplateRef {
    pub fn is_required_for_completion(&self) -> bool {
        self.required_for_completion.unwrap_or(false)
    }
}

/// What the Experiment controller observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// Pending until every template is available, then Running, then Successful, Failed or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// Why the Experiment is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The metadata.generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One entry per template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_statuses: Vec<TemplateStatus>,
    /// When every template became available (the duration counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub available_at: Option<DateTime<Utc>>,
    /// One entry per analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<ExperimentAnalysisRunStatus>,
    /// InvalidSpec, and the kstatus Ready/Reconciling/Stalled conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// How one template is doing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    /// The template's name in the spec.
    pub name: String,
    /// Pods of the template's ReplicaSet.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of the template's current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Available pods.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pending, Progressing, Running, Successful, Failed or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TemplateStatusCode>,
    /// Why the template is in its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// The template's ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set_name: Option<String>,
    /// The template's Service, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The hash labelling the template's pods (`sluice.dev/pod-template-hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// The state of one template (Argo's names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TemplateStatusCode {
    /// The ReplicaSet is not created yet.
    #[default]
    Pending,
    /// Pods are starting.
    Progressing,
    /// Every pod is available.
    Running,
    /// The Experiment ended well.
    Successful,
    /// The template did not become available in time.
    Failed,
    /// The template could not be created.
    Error,
}

/// The AnalysisRun behind one analysis of an Experiment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    /// The analysis's name in the spec.
    pub name: String,
    /// The AnalysisRun's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run: Option<String>,
    /// The AnalysisRun's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// The AnalysisRun's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A Rollout's `experiment` step: the Experiment to create from the Rollout's stable and canary pod
/// templates. The step is complete when the Experiment is Successful; Failed or Error aborts the Rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStep {
    /// The templates, each from the stable or the canary pod template.
    #[schemars(length(min = 1, max = 16))]
    pub templates: Vec<RolloutExperimentTemplate>,
    /// How long the Experiment runs once available; unset: until its required analyses finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::string_schema)]
    pub duration: Option<String>,
    /// AnalysisTemplates the Experiment runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub analyses: Vec<ExperimentAnalysisTemplateRef>,
    /// Metrics measured and shown but never deciding a run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
}

impl RolloutExperimentStep {
    /// The parsed duration; None when the Experiment has no time limit.
    pub fn duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        self.duration.as_deref().map(duration::parse).transpose()
    }
}

/// One template of an experiment step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentTemplate {
    /// The template's name, unique in the step.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Which of the Rollout's pod templates to run.
    pub spec_ref: ReplicaSetSpecRef,
    /// Pods to run (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 10_000))]
    pub replicas: Option<i32>,
    /// Labels and annotations added to the template's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodMetadata>,
    /// Selects the template's pods (default: the Rollout's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Percent of traffic sent to this template while the Experiment runs (needs a traffic router; the
    /// template then gets a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub weight: Option<i32>,
    /// A Service in front of the template's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
}

/// Which pod template of the Rollout an experiment template runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaSetSpecRef {
    /// The stable ReplicaSet's pod template (the baseline).
    Stable,
    /// The Rollout's current pod template (the canary).
    Canary,
}
