//! What the reconcilers report about their work. Domain code (rollout, analysis, gitsync) calls this
//! trait; the controller's Prometheus registry (`controller::metrics::Metrics`) implements it, so the
//! domain knows what happened, not how it is exported.
use std::time::Duration;

pub trait Observer: Send + Sync {
    /// A rollout's phase, step and canary weight after a reconcile.
    fn observe_rollout(&self, namespace: &str, name: &str, phase: &str, step: i64, canary_weight: i64);
    /// The rollout is gone: drop what was reported about it.
    fn forget_rollout(&self, namespace: &str, name: &str);
    /// The rollout aborted in this reconcile.
    fn count_abort(&self, namespace: &str, name: &str);
    /// An AnalysisRun's phase after a reconcile.
    fn observe_analysis_run(&self, namespace: &str, name: &str, phase: &str);
    /// The latest numeric value one metric of a run measured.
    fn observe_measurement(&self, namespace: &str, analysis_run: &str, metric: &str, value: f64);
    /// The AnalysisRun is gone: drop what was reported about it.
    fn forget_analysis_run(&self, namespace: &str, name: &str);
    /// A GitSync's stage after a reconcile: the revisions it applied, found healthy and may promote
    /// next, and since when (None: gone, drop what was reported).
    fn observe_gitsync(&self, namespace: &str, name: &str, status: Option<&crate::api::gitsync::GitSyncStatus>);
    /// One reconcile of `controller` ("rollout", "analysisrun", "gitsync") and how long it took.
    fn count_reconcile(&self, controller: &str, took: Duration);
    /// One failed reconcile, by the error's kind.
    fn count_reconcile_error(&self, controller: &str, error_kind: &str);
    /// One reconcile of `controller` that panicked (a bug; the reconcile is retried with backoff).
    fn count_reconcile_panic(&self, controller: &str);
}
