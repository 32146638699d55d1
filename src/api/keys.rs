//! Every key Sluice writes on or reads from Kubernetes objects — labels, annotations, finalizers, field
//! managers, event reporters and condition types — spelled once. A key here is part of the API: changing
//! one breaks clusters that already carry it.

// Labels.
/// On ReplicaSets, their selectors and pods, and in the selectors of the canary and stable Services.
pub const POD_TEMPLATE_HASH_LABEL: &str = "sluice.dev/pod-template-hash";
/// On AnalysisRuns: the Rollout they belong to.
pub const ROLLOUT_LABEL: &str = "sluice.dev/rollout";
/// On AnalysisRuns: which analysis of the Rollout (a step's or the background one).
pub const ANALYSIS_LABEL: &str = "sluice.dev/analysis";
/// On an Experiment a Rollout created: the index of the experiment step it runs.
pub const EXPERIMENT_STEP_LABEL: &str = "sluice.dev/experiment-step";
/// On a job metric's Jobs: the AnalysisRun that created them (its name, or a hash when too long).
pub const ANALYSIS_RUN_LABEL: &str = "sluice.dev/analysis-run";
/// On a job metric's Jobs: the metric (its name, or a hash when not a valid label value).
pub const METRIC_LABEL: &str = "sluice.dev/metric";
/// On an Experiment's ReplicaSets, Services and AnalysisRuns: the Experiment's name (bounded to a label
/// value with a hash suffix when longer); ownership is still decided by the controller ownerReference.
pub const EXPERIMENT_LABEL: &str = "sluice.dev/experiment";
/// On every object a GitSync applied: `<namespace>.<name>` of the GitSync.
pub const GITSYNC_LABEL: &str = "sluice.dev/gitsync";

// Annotations.
/// On a ReplicaSet: its revision number (1, 2, 3…).
pub const REVISION_ANNOTATION: &str = "sluice.dev/revision";
/// On a ReplicaSet: the ephemeral pod metadata (canaryMetadata, stableMetadata, …) its pod template
/// and pods carry, as JSON, so a role change removes exactly those keys.
pub const POD_METADATA_ANNOTATION: &str = "sluice.dev/pod-metadata";
/// On an old ReplicaSet: when it may be scaled down (scaleDownDelaySeconds after promotion).
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "sluice.dev/scale-down-deadline";
/// On every object a GitSync applied (and so on a Rollout: the commit that produced its template).
pub const GIT_REVISION_ANNOTATION: &str = "sluice.dev/git-revision";
/// On a GitSync: setting it to any new value (e.g. a timestamp) syncs at once.
pub const REQUESTED_AT_ANNOTATION: &str = "sluice.dev/requested-at";
/// On a GitSync following upstream stages: `<request id>` or `<request id>@<commit SHA>` forces a
/// promotion (skipping the soak) once per new request id; `sluice promote gitsync` writes it.
pub const PROMOTE_ANNOTATION: &str = "sluice.dev/promote";
/// `sluice.dev/prune: disabled` on an object keeps it when it leaves Git.
/// On an NGINX canary Ingress: the managed route (setHeaderRoute) its canary-by-header annotations carry.
pub const HEADER_ROUTE_ANNOTATION: &str = "sluice.dev/header-route";
pub const PRUNE_ANNOTATION: &str = "sluice.dev/prune";
/// The sync wave of an object a GitSync applies (`"N"`, default 0): waves go in ascending order.
pub const SYNC_WAVE_ANNOTATION: &str = "sluice.dev/sync-wave";
/// On an Argo CD Application: the revision to go back to.
pub const LAST_HEALTHY_REVISION_ANNOTATION: &str = "sluice.dev/last-healthy-revision";
/// On an Argo CD Application: `<rollout ns>/<name> aborted (<reason>) at <time>`; also how the adapter
/// knows it already handled an abort.
pub const AUTO_SYNC_DISABLED_BY_ANNOTATION: &str = "sluice.dev/auto-sync-disabled-by";
/// On an Argo CD Application: the `spec.syncPolicy.automated` block that was removed (JSON), so a human
/// can put back exactly what was there (prune, selfHeal, …).
pub const PREVIOUS_AUTOMATED_ANNOTATION: &str = "sluice.dev/previous-automated-sync-policy";
/// Argo CD's own tracking annotation (read, never written): `<app>:<group>/<kind>:<namespace>/<name>`.
pub const ARGOCD_TRACKING_ID_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// Notifications: `notifications.sluice.dev/subscribe.<trigger>.<service>: <recipient>[;<recipient>…]` on
/// a Rollout, GitSync or AnalysisRun subscribes it (`sluice::notify`).
pub const NOTIFY_SUBSCRIBE_PREFIX: &str = "notifications.sluice.dev/subscribe.";
/// Notifications: the dedup keys of what was sent about the object (JSON list, newest last, bounded),
/// written after a successful send so a restart does not send again.
pub const NOTIFY_SENT_ANNOTATION: &str = "notifications.sluice.dev/sent";

// Finalizers.
/// On every GitSync, so that deleting one first deletes what it applied.
pub const GITSYNC_CLEANUP_FINALIZER: &str = "sluice.dev/gitsync-cleanup";

// Field managers (`managedFields` tell who wrote what) and event reporters.
/// Every write of the rollout controller and its traffic routers; also the reporter of its events.
pub const CONTROLLER_FIELD_MANAGER: &str = "sluice";
/// Every write of the CLI, so CLI edits are told from Git's.
pub const CLI_FIELD_MANAGER: &str = "sluice-cli";
/// Every GitSync apply; also the reporter of GitSync events.
pub const GITSYNC_FIELD_MANAGER: &str = "sluice-gitsync";
/// The Argo CD adapter's Application patches; also the reporter of its events.
pub const ARGOCD_ADAPTER_FIELD_MANAGER: &str = "sluice-argocd-adapter";

/// Tests only (feature `fault-injection`): makes the controller panic on the annotated object
/// (`sluice::controller::faults`).
#[cfg(feature = "fault-injection")]
pub const FAULT_PANIC_ANNOTATION: &str = "faults.sluice.dev/panic";

/// Status condition types of every Sluice resource: Argo-style types plus the kstatus trio (Ready,
/// Reconciling, Stalled) that Flux and Argo CD health checks read unmodified.
pub mod condition {
    /// The Rollout has at least the minimum number of available pods.
    pub const AVAILABLE: &str = "Available";
    /// The Rollout is moving towards its desired state (or failed to: reason ProgressDeadlineExceeded).
    pub const PROGRESSING: &str = "Progressing";
    /// The Rollout is paused (spec.paused or a pause condition).
    pub const PAUSED: &str = "Paused";
    /// The Rollout finished every step and the canary became stable.
    pub const COMPLETED: &str = "Completed";
    /// The Rollout is fully promoted and all its pods are available.
    pub const HEALTHY: &str = "Healthy";
    /// The spec cannot be acted on; the message names the field and what is wrong.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `spec.strategy` names no strategy (`{}`, or one this version does not know that the API server
    /// pruned): it keeps its meaning, a canary without steps, and this condition says so.
    pub const STRATEGY_DEFAULTED: &str = "StrategyDefaulted";
    /// kstatus: the object reached its desired state.
    pub const READY: &str = "Ready";
    /// kstatus: the controller is working towards the desired state.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the controller cannot make progress without outside help.
    pub const STALLED: &str = "Stalled";
}
