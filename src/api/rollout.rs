//! The Rollout: a Deployment-like workload whose new versions go out as a canary in weighted steps or
//! blue-green behind a preview Service.
//! Spec fields follow Argo Rollouts; `*_or_default` accessors apply defaults the API server may not have.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{AnalysisPhase, Argument};
use super::conditions::Condition;
use super::pod_template::PodTemplate;
use crate::api::duration::{self, InvalidDuration};

pub const DEFAULT_REPLICAS: i32 = 1;
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
pub const DEFAULT_MAX_SURGE: &str = "25%";
pub const DEFAULT_MAX_UNAVAILABLE: &str = "25%";
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
pub const DEFAULT_MAX_TRAFFIC_WEIGHT: i32 = 100;

/// A workload rolled out progressively: replicas of a pod template, and the strategy that moves traffic
/// from the stable version to a new one.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "ro",
    category = "sluice",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired pods"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Existing pods"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Pods of the current template"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Available pods"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex",
        description = "Index of the current canary step"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canaryWeight",
        description = "Traffic percent on the canary"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "A workload whose new versions are rolled out progressively (canary steps or blue-green), gated by metrics."
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Number of desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    #[schemars(extend("minimum" = 0))]
    pub replicas: Option<i32>,
    /// Label selector for the Rollout's pods; must match the template's labels. With workloadRef it
    /// may be left out: the Deployment's selector is used.
    #[serde(default, skip_serializing_if = "is_empty_selector")]
    pub selector: LabelSelector,
    /// The pods to run. A change here starts a new canary. Left out with workloadRef.
    #[serde(default, skip_serializing_if = "PodTemplate::is_empty")]
    pub template: PodTemplate,
    /// Seconds a new pod must be ready, without any container crashing, to count as available
    /// (default 0), as for Deployments: steps wait for available pods. Applies to ReplicaSets created
    /// after it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub min_ready_seconds: Option<i32>,
    /// Take the pod template (and, without spec.selector, the selector) from this Deployment instead
    /// of spec.template; a change of its template starts a new canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<super::workload_ref::WorkloadRef>,
    /// Old ReplicaSets kept for rollback (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10))]
    #[schemars(extend("minimum" = 0))]
    pub revision_history_limit: Option<i32>,
    /// A template equal to one of the last `revisions` revisions before the stable one is a rollback:
    /// it skips the steps, as a return to the stable template does (Argo's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// Seconds a step may take to make progress before the Rollout is marked ProgressDeadlineExceeded
    /// (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 600))]
    #[schemars(extend("minimum" = 1, "maximum" = duration::MAX_SECONDS))]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the canary when the progress deadline passes, instead of only reporting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Stop progressing until unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Restart every pod created before this time (RFC3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub restart_at: Option<DateTime<Utc>>,
    /// How new versions are rolled out.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// How many finished AnalysisRuns of this Rollout are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunHistory>,
}

fn is_empty_selector(selector: &LabelSelector) -> bool {
    *selector == LabelSelector::default()
}

impl RolloutSpec {
    /// spec.replicas, or 1 when unset.
    pub fn replicas_or_default(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// revisionHistoryLimit, or 10 when unset.
    pub fn revision_history_limit_or_default(&self) -> i32 {
        self.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// progressDeadlineSeconds, or 600 when unset.
    pub fn progress_deadline_seconds_or_default(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// Whether passing the progress deadline aborts the canary.
    pub fn is_progress_deadline_abort(&self) -> bool {
        self.progress_deadline_abort.unwrap_or(false)
    }

    /// Whether spec.paused is set.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// The canary strategy, or an empty one (no steps: promote at once) when unset.
    pub fn canary(&self) -> CanaryStrategy {
        self.strategy.canary.clone().unwrap_or_default()
    }

    /// The blue-green strategy, when that is the one set.
    pub fn blue_green(&self) -> Option<&BlueGreenStrategy> {
        self.strategy.blue_green.as_deref()
    }
}

/// How many finished AnalysisRuns a Rollout keeps (older ones are deleted, so runs do not pile up).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunHistory {
    /// Successful runs kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 5))]
    #[schemars(extend("minimum" = 0))]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, Error and Inconclusive runs kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 5))]
    #[schemars(extend("minimum" = 0))]
    pub unsuccessful_run_history_limit: Option<i32>,
}

impl AnalysisRunHistory {
    /// (successful, unsuccessful) limits, defaults applied.
    pub fn limits(history: Option<&AnalysisRunHistory>) -> (usize, usize) {
        let limit = |v: Option<i32>| v.unwrap_or(DEFAULT_RUN_HISTORY_LIMIT).max(0) as usize;
        (
            limit(history.and_then(|h| h.successful_run_history_limit)),
            limit(history.and_then(|h| h.unsuccessful_run_history_limit)),
        )
    }
}

/// Finished AnalysisRuns of each kind kept by default.
pub const DEFAULT_RUN_HISTORY_LIMIT: i32 = 5;

/// The rollout strategy: set exactly one of canary and blueGreen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Shift traffic to the new version in steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Run the new version beside the old one behind a preview Service, then switch the active
    /// Service over at once.
    // Boxed: most Rollouts are canaries, and every cached Rollout would carry the unboxed size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<Box<BlueGreenStrategy>>,
}

/// Blue-green strategy (Argo Rollouts' field names and semantics): the new version comes up beside the
/// stable one, is reachable through previewService, and activeService switches to it once it is fully
/// available, its pre-promotion analysis passed and (without autoPromotionEnabled) it was promoted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service whose selector Sluice points at the live version; it switches at promotion.
    pub active_service: String,
    /// Service whose selector Sluice points at the new version before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Pods of the new version before promotion (default: spec.replicas); scaled to full before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub preview_replica_count: Option<i32>,
    /// Switch as soon as the new version is ready (default true); false pauses before the switch until
    /// `sluice promote` (or autoPromotionSeconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub auto_promotion_enabled: Option<bool>,
    /// With autoPromotionEnabled false: promote by itself this many seconds after pausing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub auto_promotion_seconds: Option<i32>,
    /// Seconds the previous version keeps its pods after the switch, for a fast rollback (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 30))]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old ReplicaSets may wait out their scale-down delay; older ones scale to zero at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds before the new version's pods go after an abort (default 30; 0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 30))]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Analysis before the switch: failing it aborts, and the active Service never leaves the stable version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis after the switch: failing it switches the active Service back and aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Keep the new version's pods off the nodes of the previous version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Labels and annotations for the pods the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodMetadata>,
    /// Labels and annotations for the pods the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodMetadata>,
}

impl BlueGreenStrategy {
    /// autoPromotionEnabled, or true when unset.
    pub fn is_auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled.unwrap_or(true)
    }

    /// scaleDownDelaySeconds, or 30 when unset.
    pub fn scale_down_delay_seconds_or_default(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// abortScaleDownDelaySeconds, or 30 when unset.
    pub fn abort_scale_down_delay_seconds_or_default(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS)
    }
}

pub use super::pod_metadata::{AntiAffinity, PodMetadata, PreferredAntiAffinity, RequiredAntiAffinity};

/// How far back a rollback skips the steps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// Revisions before the stable one a template may return to without steps (0: none).
    #[serde(default)]
    #[schemars(extend("minimum" = 0))]
    pub revisions: i32,
}

/// Canary strategy: steps, the Services and router that carry the traffic, and background analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The steps, in order. No steps: the new version is promoted at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Service whose selector Sluice points at the canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service whose selector Sluice points at the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// The traffic router that splits requests by weight. Unset: weights are approximated with
    /// replica counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Analysis that runs in the background for the whole rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Pods above replicas allowed during the update: a number or a percentage (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "25%"))]
    #[schemars(transform = duration::int_or_percent_schema)]
    pub max_surge: Option<IntOrString>,
    /// Pods below replicas allowed to be unavailable during the update: a number or a percentage
    /// (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "25%"))]
    #[schemars(transform = duration::int_or_percent_schema)]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds before an aborted canary is scaled to zero (default 30; 0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 30))]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Seconds before the old stable ReplicaSet is scaled down after promotion (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 30))]
    #[schemars(extend("minimum" = 0, "maximum" = duration::MAX_SECONDS))]
    pub scale_down_delay_seconds: Option<i32>,
    /// With a traffic router, scale the stable ReplicaSet down as traffic moves to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// The total weight the router splits (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 100))]
    #[schemars(extend("minimum" = 1))]
    pub max_traffic_weight: Option<i32>,
    /// What a Failed or Error analysis does: abort (default) or pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "abort"))]
    pub on_analysis_failure: Option<AnalysisFailureAction>,
    /// When the canary aborts because its revision was judged bad (failed analysis, progress
    /// deadline), roll back: a Rollout labelled sluice.dev/gitsync is left to its GitSync, which
    /// re-applies the last healthy Git revision; any other gets the stable ReplicaSet's pod template
    /// written back into spec.template and returns to Healthy without steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_on_abort: Option<bool>,
    /// Labels and annotations on the canary's pods while they are the canary (Argo's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<super::pod_metadata::PodMetadata>,
    /// Labels and annotations on the stable pods while they are stable (Argo's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<super::pod_metadata::PodMetadata>,
    /// Keep the canary's pods off the nodes running stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<super::pod_metadata::AntiAffinity>,
    /// How many old ReplicaSets may stay up waiting for their scale-down deadline; older ones are
    /// scaled to zero at once (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// With a traffic router: the fewest pods each of canary and stable keeps while both take traffic,
    /// so a small weight still has a pod to go to (Argo's field; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 1))]
    pub min_pods_per_replica_set: Option<i32>,
}

impl CanaryStrategy {
    /// maxSurge, or 25% when unset.
    pub fn max_surge_or_default(&self) -> IntOrString {
        self.max_surge
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE.into()))
    }

    /// maxUnavailable, or 25% when unset.
    pub fn max_unavailable_or_default(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_UNAVAILABLE.into()))
    }

    /// abortScaleDownDelaySeconds, or 30 when unset.
    pub fn abort_scale_down_delay_seconds_or_default(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// scaleDownDelaySeconds, or 30 when unset.
    pub fn scale_down_delay_seconds_or_default(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// Whether stable scales down as traffic moves to the canary.
    pub fn is_dynamic_stable_scale(&self) -> bool {
        self.dynamic_stable_scale.unwrap_or(false)
    }

    /// maxTrafficWeight, or 100 when unset.
    pub fn max_traffic_weight_or_default(&self) -> i32 {
        self.max_traffic_weight.unwrap_or(DEFAULT_MAX_TRAFFIC_WEIGHT)
    }

    /// onAnalysisFailure, or abort when unset.
    pub fn on_analysis_failure_or_default(&self) -> AnalysisFailureAction {
        self.on_analysis_failure.unwrap_or_default()
    }

    /// Whether an abort also rolls Git back.
    pub fn is_rollback_on_abort(&self) -> bool {
        self.rollback_on_abort.unwrap_or(false)
    }
}

/// What a Failed or Error analysis does to the Rollout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnalysisFailureAction {
    /// Abort: all traffic back to stable, the canary scaled down.
    #[default]
    Abort,
    /// Pause at the current step for a human to decide.
    Pause,
}

/// One canary step. Set exactly one kind; the controller reports anything else as InvalidSpec with
/// the step's index (unknown kinds are kept rather than pruned so they can be reported, not ignored).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Send this percent of traffic to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub set_weight: Option<i32>,
    /// Wait: for a duration, or until promoted when no duration is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Run an analysis and wait for its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Scale the canary independently of its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Route requests matching headers to the canary (a route named in trafficRouting.managedRoutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    /// Copy a share of matching requests to the canary (a route named in trafficRouting.managedRoutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
    /// Run an Experiment (e.g. a baseline beside the canary) and wait for it to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<super::experiment::RolloutExperimentStep>,
    /// Step kinds Sluice does not know (e.g. Argo's plugin steps); reported as InvalidSpec.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl CanaryStep {
    /// The names of the kinds set in this step, known ones first. Valid steps have exactly one.
    pub fn kinds(&self) -> Vec<&str> {
        let known = [
            ("setWeight", self.set_weight.is_some()),
            ("pause", self.pause.is_some()),
            ("analysis", self.analysis.is_some()),
            ("setCanaryScale", self.set_canary_scale.is_some()),
            ("setHeaderRoute", self.set_header_route.is_some()),
            ("setMirrorRoute", self.set_mirror_route.is_some()),
            ("experiment", self.experiment.is_some()),
        ];
        known
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .chain(self.unknown.keys().map(String::as_str))
            .collect()
    }
}

/// A setHeaderRoute step: requests matching every header condition go to the canary, whatever the
/// weight. An empty `match` removes the route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// A name listed in trafficRouting.managedRoutes.
    pub name: String,
    /// Header conditions, all of which must hold.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HeaderRoutingMatch>,
}

/// One header condition of a setHeaderRoute step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// The header's name.
    pub header_name: String,
    /// How its value must match.
    pub header_value: StringMatch,
}

/// A setMirrorRoute step: copies `percentage` of the requests matching any `match` entry to the canary
/// (responses discarded). An empty `match` removes the route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// A name listed in trafficRouting.managedRoutes.
    pub name: String,
    /// Request conditions; a request matching any entry is mirrored.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Percent of the matching requests copied (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub percentage: Option<i32>,
}

impl SetMirrorRoute {
    /// percentage, or 100.
    pub fn percentage_or_default(&self) -> i32 {
        self.percentage.unwrap_or(100)
    }
}

/// One request condition of a setMirrorRoute step: every field set must hold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Header name → how its value must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

/// How a string must match: set exactly one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// The whole value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// An RE2-style regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A route Sluice may write into the routing objects (setHeaderRoute / setMirrorRoute name it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    /// The route's name; routes take precedence in the order listed.
    pub name: String,
}

/// A pause step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to wait: `30s`, `5m`, `1h`, or a number of seconds, at most a year. Unset: until
    /// promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::int_or_string_schema)]
    pub duration: Option<IntOrString>,
}

impl PauseStep {
    /// The parsed duration; None for an indefinite pause.
    pub fn duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        match &self.duration {
            None => Ok(None),
            Some(IntOrString::Int(seconds)) => duration::from_seconds(i64::from(*seconds)).map(Some),
            Some(IntOrString::String(text)) => duration::parse(text).map(Some),
        }
    }
}

/// Scales the canary independently of traffic (set one of replicas, weight, matchTrafficWeight).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// An explicit number of canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub replicas: Option<i32>,
    /// Canary pods as a percent of spec.replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "maximum" = 100))]
    pub weight: Option<i32>,
    /// Go back to scaling the canary with its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// Analysis a Rollout runs: templates instantiated into one AnalysisRun.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// The templates whose metrics the run combines.
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Background analysis only: start when this step index is reached (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub starting_step: Option<i32>,
    /// Metrics (by name or pattern) measured but never deciding the run; beats the templates' lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<super::analysis::DryRun>,
    /// Measurements kept per matching metric; beats the templates' lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<super::analysis::MeasurementRetention>,
}

/// A reference to an AnalysisTemplate (or a ClusterAnalysisTemplate with clusterScope).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Name of the template.
    pub template_name: String,
    /// The template is a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

impl AnalysisTemplateRef {
    /// The template's name.
    pub fn name(&self) -> &str {
        &self.template_name
    }

    /// Whether the reference names a ClusterAnalysisTemplate.
    pub fn is_cluster_scope(&self) -> bool {
        self.cluster_scope.unwrap_or(false)
    }
}

/// The router that splits traffic by weight (set one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Gateway API HTTPRoutes.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "gatewayAPI")]
    pub gateway_api: Option<GatewayApiTrafficRouting>,
    /// An SMI TrafficSplit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<SmiTrafficRouting>,
    /// An Istio VirtualService (and optionally DestinationRule subsets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    /// An NGINX Ingress canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
    /// Routes that setHeaderRoute and setMirrorRoute steps may set; Sluice removes them all when the
    /// rollout completes or aborts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_routes: Vec<ManagedRoute>,
}

/// Gateway API routing: the rules of the HTTPRoute(s) whose backendRefs name both Services.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTrafficRouting {
    /// A single HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "httpRoute")]
    pub http_route: Option<String>,
    /// Several HTTPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "httpRoutes")]
    pub http_routes: Vec<HttpRouteRef>,
    /// Namespace of the routes (default: the Rollout's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl GatewayApiTrafficRouting {
    /// Every route named, httpRoute first.
    pub fn route_names(&self) -> Vec<&str> {
        self.http_route
            .iter()
            .map(String::as_str)
            .chain(self.http_routes.iter().map(|r| r.name.as_str()))
            .collect()
    }
}

/// A named HTTPRoute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRef {
    /// Name of the HTTPRoute.
    pub name: String,
}

/// SMI routing: a TrafficSplit over the root Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SmiTrafficRouting {
    /// The Service clients call (default: the stable Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Name of the TrafficSplit Sluice manages (default: the Rollout's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_split_name: Option<String>,
}

/// Istio routing: weights on a VirtualService's HTTP routes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    /// The VirtualService whose route weights Sluice sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualService>,
    /// Route by DestinationRule subsets instead of by Service host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

/// A VirtualService and the routes in it to weight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    /// Name of the VirtualService.
    pub name: String,
    /// Names of its HTTP routes to weight (unset: the only route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// A DestinationRule whose subsets tell canary and stable pods apart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    /// Name of the DestinationRule.
    pub name: String,
    /// The subset for canary pods.
    pub canary_subset_name: String,
    /// The subset for stable pods.
    pub stable_subset_name: String,
}

/// NGINX routing: a canary Ingress cloned from the stable one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// The Ingress that routes to the stable Service.
    pub stable_ingress: String,
    /// Annotation prefix of the controller (default `nginx.ingress.kubernetes.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Extra canary annotations, e.g. `canary-by-header`, without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_ingress_annotations: BTreeMap<String, String>,
}

impl NginxTrafficRouting {
    /// annotationPrefix, or `nginx.ingress.kubernetes.io`.
    pub fn annotation_prefix_or_default(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or("nginx.ingress.kubernetes.io")
    }
}

/// The phase of a Rollout (first rule that applies: Degraded, Paused, Progressing, Healthy).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// Fully promoted and available.
    Healthy,
    /// Moving towards the desired state.
    Progressing,
    /// Waiting: spec.paused or a pause condition.
    Paused,
    /// Aborted, invalid, or past the progress deadline.
    Degraded,
}

/// Why a Rollout is paused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PauseReason {
    /// A pause step.
    CanaryPauseStep,
    /// An analysis was Inconclusive.
    InconclusiveAnalysisRun,
    /// Blue-green without autoPromotionEnabled: waiting for `sluice promote` before the switch.
    BlueGreenPause,
}

/// A reason the Rollout is paused and since when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// Why.
    pub reason: PauseReason,
    /// Since when.
    #[schemars(with = "crate::api::Timestamp")]
    pub start_time: DateTime<Utc>,
}

/// What the Rollout controller observed and decided.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Healthy, Progressing, Paused or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why the Rollout is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pod template hash of the current spec.template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Pod template hash of the stable ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "stableRS")]
    pub stable_rs: Option<String>,
    /// Index of the current step; equal to the number of steps when all are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Hash of the steps, to notice when they change mid-rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Why the Rollout is paused; empty when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// The controller paused the Rollout (as opposed to spec.paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// The canary was aborted; cleared by retry or a new template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// When it was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub aborted_at: Option<DateTime<Utc>>,
    /// Why it was aborted: a GitSync blocks the revision only when the evidence, not a human, said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<AbortReason>,
    /// The step index a user promoted past (`sluice promote`): that step counts as done. Naming the
    /// index, not "next", makes promote idempotent: promoting twice does not skip two steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_step: Option<i32>,
    /// Skip every remaining step and analysis (`sluice promote --full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// Canary traffic and analysis state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Blue-green Services and analysis state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Percent of traffic on the canary (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// Pods of every revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Available pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The pod selector as a string, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Available, Progressing, Paused, Completed, Healthy, InvalidSpec, Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision running as stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<RevisionInfo>,
    /// The revision running as canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<RevisionInfo>,
    /// When the current step started (timed pauses count from here, across controller restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// The spec.restartAt that was last carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub restarted_at: Option<DateTime<Utc>>,
}

impl RolloutStatus {
    /// Whether the canary is aborted.
    pub fn is_aborted(&self) -> bool {
        self.abort.unwrap_or(false)
    }

    /// currentStepIndex, or 0 when unset.
    pub fn current_step_index_or_default(&self) -> i32 {
        self.current_step_index.unwrap_or(0)
    }
}

/// What aborted a canary.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AbortReason {
    /// A step or background analysis ended Failed or Error.
    AnalysisFailed,
    /// No progress within progressDeadlineSeconds, with progressDeadlineAbort.
    ProgressDeadlineExceeded,
    /// `sluice abort` (status.abort set by a person or another tool).
    Requested,
}

impl AbortReason {
    /// Whether the canary's revision itself was judged bad (as opposed to a human stopping it).
    pub fn blames_revision(self) -> bool {
        matches!(
            self,
            AbortReason::AnalysisFailed | AbortReason::ProgressDeadlineExceeded
        )
    }
}

/// Where a version came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    /// The Git commit that produced it (from the GitSync that applied it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// The Rollout's revision number (1, 2, …), as on its ReplicaSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

/// Canary traffic weights and the analysis runs in flight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The weights last written to the traffic router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// The AnalysisRun of the current analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run: Option<AnalysisRunRef>,
    /// The background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run: Option<AnalysisRunRef>,
    /// The Experiment of the current experiment step (Argo's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_experiment: Option<String>,
}

/// Where a blue-green rollout's Services point and the promotion analyses it follows (Argo's names).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// The pod template hash the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// The pod template hash the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// The AnalysisRun of prePromotionAnalysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run: Option<AnalysisRunRef>,
    /// The AnalysisRun of postPromotionAnalysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run: Option<AnalysisRunRef>,
}

/// The weights of canary and stable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// The canary's share.
    pub canary: WeightDestination,
    /// The stable's share.
    pub stable: WeightDestination,
}

/// One destination's traffic share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Pod template hash of the ReplicaSet receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    /// Its weight, out of maxTrafficWeight.
    pub weight: i32,
}

/// An AnalysisRun the Rollout is waiting on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunRef {
    /// Name of the AnalysisRun.
    pub name: String,
    /// Its phase when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AnalysisPhase>,
    /// Its message when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    const ARGO_STYLE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: checkout
  namespace: shop
spec:
  replicas: 5
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
      - name: checkout
        image: example.com/checkout:2.1.0
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      canaryService: checkout-canary
      stableService: checkout-stable
      maxSurge: 1
      maxUnavailable: 0
      trafficRouting:
        gatewayAPI:
          httpRoute: checkout
      analysis:
        templates: [{templateName: error-rate}]
        startingStep: 2
        args:
        - name: service
          value: checkout
        - name: canary-hash
          valueFrom: {podTemplateHashValue: Latest}
      steps:
      - setWeight: 20
      - pause: {duration: 30s}
      - setWeight: 50
      - pause: {duration: 60}
      - analysis:
          templates:
          - templateName: success-rate
            clusterScope: true
      - setCanaryScale: {replicas: 2}
      - pause: {}
"#;

    #[test]
    fn argo_style_rollout_parses() {
        let rollout: Rollout = serde_saphyr::from_str(ARGO_STYLE).unwrap();
        assert_eq!(rollout.spec.replicas_or_default(), 5);
        let canary = rollout.spec.canary();
        assert_eq!(canary.max_surge_or_default(), IntOrString::Int(1));
        assert_eq!(canary.max_unavailable_or_default(), IntOrString::Int(0));
        assert_eq!(
            canary
                .traffic_routing
                .as_ref()
                .unwrap()
                .gateway_api
                .as_ref()
                .unwrap()
                .route_names(),
            ["checkout"]
        );
        let background = canary.analysis.as_ref().unwrap();
        assert_eq!(background.starting_step, Some(2));
        assert_eq!(
            background.args[1].value_from.as_ref().unwrap().pod_template_hash_value,
            Some(crate::api::analysis::PodTemplateHashValue::Latest)
        );
        let steps = &canary.steps;
        assert_eq!(steps.len(), 7);
        assert_eq!(steps[0], CanaryStep::set_weight(20));
        assert_eq!(steps[1], CanaryStep::pause_for("30s"));
        assert_eq!(
            steps[1].pause.as_ref().unwrap().duration(),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            steps[3].pause.as_ref().unwrap().duration(),
            Ok(Some(Duration::from_secs(60)))
        );
        assert!(steps[4].analysis.as_ref().unwrap().templates[0].is_cluster_scope());
        assert_eq!(steps[5], CanaryStep::set_canary_replicas(2));
        assert_eq!(steps[6], CanaryStep::pause());
        assert_eq!(steps[6].pause.as_ref().unwrap().duration(), Ok(None));
        assert!(steps.iter().all(|s| s.kinds().len() == 1));
    }

    /// Argo's examples/rollout-bluegreen.yaml (group changed) and the fields of its blue-green e2e
    /// manifests.
    const ARGO_BLUE_GREEN: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: rollout-bluegreen
spec:
  replicas: 2
  revisionHistoryLimit: 2
  selector:
    matchLabels:
      app: rollout-bluegreen
  template:
    metadata:
      labels:
        app: rollout-bluegreen
    spec:
      containers:
      - name: rollouts-demo
        image: argoproj/rollouts-demo:blue
        imagePullPolicy: Always
        ports:
        - containerPort: 8080
  strategy:
    blueGreen:
      activeService: rollout-bluegreen-active
      previewService: rollout-bluegreen-preview
      autoPromotionEnabled: false
      autoPromotionSeconds: 20
      previewReplicaCount: 1
      scaleDownDelaySeconds: 10
      scaleDownDelayRevisionLimit: 2
      abortScaleDownDelaySeconds: 5
      prePromotionAnalysis:
        templates: [{templateName: smoke}]
        args: [{name: service, value: rollout-bluegreen-preview}]
      postPromotionAnalysis:
        templates: [{templateName: smoke}]
      antiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution: {}
      activeMetadata:
        labels: {role: active}
      previewMetadata:
        labels: {role: preview}
        annotations: {note: preview}
"#;

    #[test]
    fn argo_blue_green_parses_and_round_trips() {
        let rollout: Rollout = serde_saphyr::from_str(ARGO_BLUE_GREEN).unwrap();
        let blue_green = rollout.spec.blue_green().unwrap();
        assert_eq!(blue_green.active_service, "rollout-bluegreen-active");
        assert!(!blue_green.is_auto_promotion_enabled());
        assert_eq!(blue_green.preview_replica_count, Some(1));
        assert!(
            blue_green
                .anti_affinity
                .as_ref()
                .unwrap()
                .required_during_scheduling_ignored_during_execution
                .is_some()
        );
        assert_eq!(
            blue_green.preview_metadata.as_ref().unwrap().annotations["note"],
            "preview"
        );
        assert!(rollout.spec.strategy.canary.is_none());
        let json = serde_json::to_value(&rollout).unwrap();
        assert_eq!(
            json["spec"]["strategy"]["blueGreen"]["antiAffinity"],
            serde_json::json!({"requiredDuringSchedulingIgnoredDuringExecution": {}})
        );
        let again: Rollout = serde_json::from_value(json).unwrap();
        assert_eq!(again, rollout);
        let defaults: BlueGreenStrategy = serde_saphyr::from_str("activeService: a").unwrap();
        assert!(defaults.is_auto_promotion_enabled());
        assert_eq!(defaults.scale_down_delay_seconds_or_default(), 30);
        assert_eq!(defaults.abort_scale_down_delay_seconds_or_default(), 30);
    }

    #[test]
    fn round_trip_keeps_unset_fields_absent() {
        let rollout: Rollout = serde_saphyr::from_str(ARGO_STYLE).unwrap();
        let json = serde_json::to_value(&rollout).unwrap();
        assert!(json["spec"].get("paused").is_none());
        assert!(json["spec"].get("revisionHistoryLimit").is_none());
        assert!(json.get("status").is_none());
        assert_eq!(
            json["spec"]["strategy"]["canary"]["steps"][2],
            serde_json::json!({"setWeight": 50})
        );
        let yaml = serde_saphyr::to_string(&rollout).unwrap();
        let again: Rollout = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(again, rollout);
    }

    #[test]
    fn unknown_and_mixed_step_kinds_are_surfaced() {
        let steps: Vec<CanaryStep> =
            serde_saphyr::from_str("[{plugin: {name: x}}, {setWeight: 10, pause: {}}]").unwrap();
        assert_eq!(steps[0].kinds(), ["plugin"]);
        assert_eq!(steps[1].kinds(), ["setWeight", "pause"]);
        // The unknown kind survives a round trip, so it can be reported rather than dropped.
        let json = serde_json::to_value(&steps[0]).unwrap();
        assert_eq!(json, serde_json::json!({"plugin": {"name": "x"}}));
    }

    #[test]
    fn wrongly_typed_fields_are_rejected() {
        let err = serde_saphyr::from_str::<CanaryStep>("setWeight: lots").unwrap_err();
        assert!(
            err.to_string().contains("lots") || err.to_string().contains("invalid"),
            "{err}"
        );
        assert!(serde_saphyr::from_str::<CanaryStrategy>("onAnalysisFailure: explode").is_err());
        let negative = PauseStep {
            duration: Some(IntOrString::Int(-5)),
        };
        assert!(negative.duration().is_err());
    }

    #[test]
    fn accessors_default_missing_values() {
        let spec: RolloutSpec = serde_saphyr::from_str("selector: {}\ntemplate: {}").unwrap();
        assert_eq!(spec.replicas_or_default(), 1);
        assert_eq!(spec.revision_history_limit_or_default(), 10);
        assert_eq!(spec.progress_deadline_seconds_or_default(), 600);
        assert!(!spec.is_paused() && !spec.is_progress_deadline_abort());
        let canary = spec.canary();
        assert!(canary.steps.is_empty());
        assert_eq!(canary.max_surge_or_default(), IntOrString::String("25%".into()));
        assert_eq!(canary.max_unavailable_or_default(), IntOrString::String("25%".into()));
        assert_eq!(canary.abort_scale_down_delay_seconds_or_default(), 30);
        assert_eq!(canary.scale_down_delay_seconds_or_default(), 30);
        assert_eq!(canary.max_traffic_weight_or_default(), 100);
        assert_eq!(canary.on_analysis_failure_or_default(), AnalysisFailureAction::Abort);
        assert!(!canary.is_dynamic_stable_scale() && !canary.is_rollback_on_abort());
    }

    /// The defaults the API server fills in from the schema and the accessors' defaults agree.
    #[test]
    fn schema_defaults_match_accessor_defaults() {
        let crd = serde_json::to_value(Rollout::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut object = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "x"},
            "spec": {"selector": {}, "template": {}, "strategy": {"canary": {}}}
        });
        sluice_sim::schema::apply_defaults(schema, &mut object);
        let defaulted: Rollout = serde_json::from_value(object).unwrap();
        let (spec, canary) = (&defaulted.spec, defaulted.spec.canary());
        assert_eq!(spec.replicas, Some(spec.replicas_or_default()));
        assert_eq!(spec.revision_history_limit, Some(DEFAULT_REVISION_HISTORY_LIMIT));
        assert_eq!(spec.progress_deadline_seconds, Some(DEFAULT_PROGRESS_DEADLINE_SECONDS));
        let bare = CanaryStrategy::default();
        assert_eq!(canary.max_surge, Some(bare.max_surge_or_default()));
        assert_eq!(canary.max_unavailable, Some(bare.max_unavailable_or_default()));
        assert_eq!(
            canary.abort_scale_down_delay_seconds,
            Some(bare.abort_scale_down_delay_seconds_or_default())
        );
        assert_eq!(
            canary.scale_down_delay_seconds,
            Some(bare.scale_down_delay_seconds_or_default())
        );
        assert_eq!(canary.max_traffic_weight, Some(bare.max_traffic_weight_or_default()));
        assert_eq!(canary.on_analysis_failure, Some(bare.on_analysis_failure_or_default()));
    }

    #[test]
    fn status_field_names_match_argo() {
        let status = RolloutStatus {
            stable_rs: Some("abc".into()),
            current_step_index: Some(2),
            canary: Some(CanaryStatus {
                weights: Some(TrafficWeights {
                    canary: WeightDestination {
                        pod_template_hash: Some("def".into()),
                        weight: 20,
                    },
                    stable: WeightDestination {
                        pod_template_hash: Some("abc".into()),
                        weight: 80,
                    },
                }),
                ..CanaryStatus::default()
            }),
            ..RolloutStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["stableRS"], "abc");
        assert_eq!(json["currentStepIndex"], 2);
        assert_eq!(json["canary"]["weights"]["canary"]["weight"], 20);
        assert_eq!(json["canary"]["weights"]["stable"]["podTemplateHash"], "abc");
    }
}
