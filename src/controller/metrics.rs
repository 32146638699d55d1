//! The controller's own Prometheus metrics (`/metrics`): rollout state as gauges, aborts, and the
//! cost and failures of reconciles per controller.
use crate::observe::Observer;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutPhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisRunPhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeasurementLabels {
    pub namespace: String,
    pub analysis_run: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitSyncRevisionLabels {
    pub namespace: String,
    pub name: String,
    /// applied, healthy, or candidate (healthy upstream, not promoted here yet).
    pub state: String,
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub trigger: String,
    pub service: String,
    /// sent, failed (given up after its retries) or unknown_service.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub error: String,
}

/// Every metric the controller exports, registered once at start-up.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    rollout_info: Family<RolloutPhaseLabels, Gauge>,
    rollout_step: Family<RolloutLabels, Gauge>,
    rollout_canary_weight: Family<RolloutLabels, Gauge>,
    aborts: Family<RolloutLabels, Counter>,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_panics: Family<ControllerLabels, Counter>,
    reconcile_duration: Family<ControllerLabels, Histogram>,
    analysis_run_phase: Family<AnalysisRunPhaseLabels, Gauge>,
    measurement_value: Family<MeasurementLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    gitsync_revision_info: Family<GitSyncRevisionLabels, Gauge>,
    gitsync_healthy_since: Family<RolloutLabels, Gauge>,
    gitsync_promoted_at: Family<RolloutLabels, Gauge>,
    /// The revisions each GitSync was last exported with, so a new revision replaces its series.
    gitsync_revisions: Mutex<std::collections::HashMap<(String, String, String), String>>,
    leader: Gauge,
    shards_held: Gauge,
    shard_held: Family<ShardLabels, Gauge>,
    notifications_sent: Family<NotificationLabels, Counter>,
    notification_queue_depth: Gauge,
    /// The phase each analysis run was last exported with.
    run_phases: Mutex<std::collections::HashMap<RolloutLabels, String>>,
    /// The metrics each analysis run exported a measurement of, so a deleted run's series can go.
    measured: Mutex<std::collections::HashMap<RolloutLabels, std::collections::BTreeSet<String>>>,
    /// The phase each rollout was last exported with, so a phase change replaces its info series.
    phases: Mutex<std::collections::HashMap<RolloutLabels, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let rollout_info = Family::<RolloutPhaseLabels, Gauge>::default();
        let rollout_step = Family::<RolloutLabels, Gauge>::default();
        let rollout_canary_weight = Family::<RolloutLabels, Gauge>::default();
        let aborts = Family::<RolloutLabels, Counter>::default();
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_panics = Family::<ControllerLabels, Counter>::default();
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register("rollout_info", "Rollouts by phase (always 1)", rollout_info.clone());
        registry.register(
            "rollout_step",
            "Index of the step a rollout is on",
            rollout_step.clone(),
        );
        registry.register(
            "rollout_canary_weight",
            "Traffic weight of the canary, percent",
            rollout_canary_weight.clone(),
        );
        registry.register("aborts", "Rollouts aborted", aborts.clone());
        registry.register("reconcile", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked (a bug; the object is retried with backoff, the others go on)",
            reconcile_panics.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let analysis_run_phase = Family::<AnalysisRunPhaseLabels, Gauge>::default();
        let measurement_value = Family::<MeasurementLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "analysis_run_phase",
            "AnalysisRuns by phase (always 1)",
            analysis_run_phase.clone(),
        );
        registry.register(
            "analysis_measurement_value",
            "The latest measured value of each analysis metric",
            measurement_value.clone(),
        );
        let gitsync_revision_info = Family::<GitSyncRevisionLabels, Gauge>::default();
        registry.register(
            "gitsync_revision_info",
            "The Git revision a GitSync last applied, last found healthy, and may promote next from its upstream stage (always 1)",
            gitsync_revision_info.clone(),
        );
        let gitsync_healthy_since = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "gitsync_healthy_since_timestamp_seconds",
            "When a GitSync's last healthy revision became healthy (Unix time): downstream stages soak from here",
            gitsync_healthy_since.clone(),
        );
        let gitsync_promoted_at = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "gitsync_promoted_timestamp_seconds",
            "When the revision a stage follows was promoted into it (Unix time)",
            gitsync_promoted_at.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the leader-election Lease, or runs without election)",
            leader.clone(),
        );
        let shards_held = Gauge::default();
        registry.register(
            "shards_held",
            "How many shard Leases this replica holds and writes to (--shard-count)",
            shards_held.clone(),
        );
        let shard_held = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_held",
            "1 for each shard this replica holds and writes to, 0 for the others",
            shard_held.clone(),
        );
        let notifications_sent = Family::<NotificationLabels, Counter>::default();
        let notification_queue_depth = Gauge::default();
        registry.register(
            "notifications_sent",
            "Notifications done per destination, by trigger, service and result",
            notifications_sent.clone(),
        );
        registry.register(
            "notification_queue_depth",
            "Notifications queued or being sent",
            notification_queue_depth.clone(),
        );
        Metrics {
            leader,
            shards_held,
            shard_held,
            notifications_sent,
            notification_queue_depth,
            registry,
            gitsync_revision_info,
            gitsync_healthy_since,
            gitsync_promoted_at,
            gitsync_revisions: Mutex::new(Default::default()),
            rollout_info,
            rollout_step,
            rollout_canary_weight,
            aborts,
            reconciles,
            reconcile_errors,
            reconcile_panics,
            reconcile_duration,
            analysis_run_phase,
            measurement_value,
            run_phases: Mutex::new(Default::default()),
            measured: Mutex::new(Default::default()),
            phases: Mutex::new(Default::default()),
        }
    }

    /// Exports whether this replica holds the Lease.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The shards this replica writes to, out of `shard_count`.
    pub fn set_shards_held(&self, shard_count: u16, held: &std::collections::BTreeSet<u16>) {
        self.shards_held.set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        for shard in 0..shard_count {
            self.shard_held
                .get_or_create(&ShardLabels {
                    shard: shard.to_string(),
                })
                .set(i64::from(held.contains(&shard)));
        }
    }

    /// Drops the series of every object whose namespace `keep` rejects: a replica that lost a shard
    /// stops exporting its objects (the new holder exports them).
    pub fn forget_namespaces(&self, keep: impl Fn(&str) -> bool) {
        let rollouts: Vec<RolloutLabels> = self
            .phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|labels| !keep(&labels.namespace))
            .cloned()
            .collect();
        for labels in rollouts {
            self.forget_rollout(&labels.namespace, &labels.name);
        }
        let mut runs: std::collections::BTreeSet<(String, String)> = Default::default();
        for map_keys in [
            self.run_phases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            self.measured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect(),
        ] {
            runs.extend(
                map_keys
                    .into_iter()
                    .filter(|labels| !keep(&labels.namespace))
                    .map(|labels| (labels.namespace, labels.name)),
            );
        }
        for (namespace, name) in runs {
            self.forget_analysis_run(&namespace, &name);
        }
        let gitsyncs: std::collections::BTreeSet<(String, String)> = self
            .gitsync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(namespace, _, _)| !keep(namespace))
            .map(|(namespace, name, _)| (namespace.clone(), name.clone()))
            .collect();
        for (namespace, name) in gitsyncs {
            self.observe_gitsync(&namespace, &name, None);
        }
    }

    /// How many objects each per-object memory of the exporter holds (tests look for leaks with it).
    pub fn per_object_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            (
                "rollout phases",
                self.phases.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
            (
                "analysis run phases",
                self.run_phases.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
            (
                "analysis runs measured",
                self.measured.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
            (
                "gitsync revisions",
                self.gitsync_revisions.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
        ]
    }

    /// The exposition text for `/metrics`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The reconcilers report through [`Observer`]; this registry turns what they report into series.
impl crate::notify::delivery::NotifyObserver for Metrics {
    fn count_notification(&self, trigger: &str, service: &str, result: &str) {
        self.notifications_sent
            .get_or_create(&NotificationLabels {
                trigger: trigger.into(),
                service: service.into(),
                result: result.into(),
            })
            .inc();
    }

    fn set_notification_queue_depth(&self, depth: i64) {
        self.notification_queue_depth.set(depth);
    }
}

impl Observer for Metrics {
    /// Exports a rollout's phase, step and canary weight.
    fn observe_rollout(&self, namespace: &str, name: &str, phase: &str, step: i64, canary_weight: i64) {
        let labels = RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = phases.insert(labels.clone(), phase.to_string())
            && previous != phase
        {
            self.rollout_info.remove(&RolloutPhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: previous,
            });
        }
        self.rollout_info
            .get_or_create(&RolloutPhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase: phase.into(),
            })
            .set(1);
        self.rollout_step.get_or_create(&labels).set(step);
        self.rollout_canary_weight.get_or_create(&labels).set(canary_weight);
    }

    /// Drops every series of a deleted rollout.
    fn forget_rollout(&self, namespace: &str, name: &str) {
        let labels = RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Some(phase) = self.phases.lock().unwrap_or_else(|p| p.into_inner()).remove(&labels) {
            self.rollout_info.remove(&RolloutPhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase,
            });
        }
        self.rollout_step.remove(&labels);
        self.rollout_canary_weight.remove(&labels);
        self.aborts.remove(&labels);
    }

    /// Exports an AnalysisRun's phase (one series per run, replaced when the phase changes).
    fn observe_analysis_run(&self, namespace: &str, name: &str, phase: &str) {
        let key = RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let labels = |phase: String| AnalysisRunPhaseLabels {
            namespace: namespace.into(),
            name: name.into(),
            phase,
        };
        let mut phases = self.run_phases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = phases.insert(key, phase.to_string())
            && previous != phase
        {
            self.analysis_run_phase.remove(&labels(previous));
        }
        self.analysis_run_phase.get_or_create(&labels(phase.into())).set(1);
    }

    /// Exports the latest value a metric of an AnalysisRun measured.
    fn observe_measurement(&self, namespace: &str, analysis_run: &str, metric: &str, value: f64) {
        let labels = MeasurementLabels {
            namespace: namespace.into(),
            analysis_run: analysis_run.into(),
            metric: metric.into(),
        };
        self.measurement_value.get_or_create(&labels).set(value);
        let run = RolloutLabels {
            namespace: namespace.into(),
            name: analysis_run.into(),
        };
        let mut measured = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        measured.entry(run).or_default().insert(metric.into());
    }

    /// Drops the series of a deleted AnalysisRun.
    fn forget_analysis_run(&self, namespace: &str, name: &str) {
        let key = RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Some(phase) = self.run_phases.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
            self.analysis_run_phase.remove(&AnalysisRunPhaseLabels {
                namespace: namespace.into(),
                name: name.into(),
                phase,
            });
        }
        let measured = self.measured.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        for metric in measured.unwrap_or_default() {
            self.measurement_value.remove(&MeasurementLabels {
                namespace: namespace.into(),
                analysis_run: name.into(),
                metric,
            });
        }
    }

    fn count_abort(&self, namespace: &str, name: &str) {
        self.aborts
            .get_or_create(&RolloutLabels {
                namespace: namespace.into(),
                name: name.into(),
            })
            .inc();
    }

    fn count_reconcile(&self, controller: &str, took: Duration) {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Exports the revisions a GitSync applied, found healthy and may promote next (one series per
    /// state), and when its healthy revision became healthy and its revision was promoted.
    fn observe_gitsync(&self, namespace: &str, name: &str, status: Option<&crate::api::gitsync::GitSyncStatus>) {
        let applied = status.and_then(|s| s.last_applied_revision.as_deref());
        let healthy = status.and_then(|s| s.last_healthy_revision.as_deref());
        let promotion = status.and_then(|s| s.promotion.as_ref());
        let candidate = promotion.and_then(|p| p.candidate.as_deref());
        let object = RolloutLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let times = [
            (&self.gitsync_healthy_since, status.and_then(|s| s.last_healthy_time)),
            (&self.gitsync_promoted_at, promotion.and_then(|p| p.promoted_at)),
        ];
        for (family, time) in times {
            match time {
                Some(time) => {
                    family.get_or_create(&object).set(time.timestamp());
                }
                None => {
                    family.remove(&object);
                }
            }
        }
        let mut last = self.gitsync_revisions.lock().unwrap_or_else(|p| p.into_inner());
        for (state, revision) in [("applied", applied), ("healthy", healthy), ("candidate", candidate)] {
            let key = (namespace.to_string(), name.to_string(), state.to_string());
            let labels = |revision: String| GitSyncRevisionLabels {
                namespace: namespace.into(),
                name: name.into(),
                state: state.into(),
                revision,
            };
            let previous = match revision {
                Some(revision) => last.insert(key, revision.to_string()),
                None => last.remove(&key),
            };
            if let Some(previous) = previous.filter(|p| Some(p.as_str()) != revision) {
                self.gitsync_revision_info.remove(&labels(previous));
            }
            if let Some(revision) = revision {
                self.gitsync_revision_info
                    .get_or_create(&labels(revision.to_string()))
                    .set(1);
            }
        }
    }

    fn count_reconcile_error(&self, controller: &str, error_kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: error_kind.into(),
            })
            .inc();
    }

    fn count_reconcile_panic(&self, controller: &str) {
        self.reconcile_panics
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gitsync::{GitSyncStatus, PromotionStatus};

    /// A GitSync status healthy since t=1000 whose revision was promoted at t=2000.
    fn gitsync_status(applied: Option<&str>, healthy: Option<&str>, candidate: Option<&str>) -> GitSyncStatus {
        let at = |secs| chrono::DateTime::from_timestamp(secs, 0);
        GitSyncStatus {
            last_applied_revision: applied.map(Into::into),
            last_healthy_revision: healthy.map(Into::into),
            last_healthy_time: healthy.and(at(1000)),
            promotion: candidate.map(|c| PromotionStatus {
                candidate: Some(c.into()),
                promoted_at: at(2000),
                ..PromotionStatus::default()
            }),
            ..GitSyncStatus::default()
        }
    }

    #[test]
    fn a_phase_change_replaces_the_info_series() {
        let metrics = Metrics::new();
        metrics.observe_rollout("shop", "web", "Progressing", 1, 20);
        metrics.observe_rollout("shop", "web", "Healthy", 3, 100);
        let text = metrics.render();
        assert!(
            text.contains(r#"sluice_rollout_info{namespace="shop",name="web",phase="Healthy"} 1"#),
            "{text}"
        );
        assert!(!text.contains("Progressing"), "{text}");
        assert!(
            text.contains(r#"sluice_rollout_canary_weight{namespace="shop",name="web"} 100"#),
            "{text}"
        );
        metrics.forget_rollout("shop", "web");
        assert!(!metrics.render().contains("name=\"web\""));
    }

    #[test]
    fn a_forgotten_object_leaves_no_series_and_no_memory() {
        let metrics = Metrics::new();
        metrics.observe_rollout("shop", "web", "Degraded", 1, 0);
        metrics.count_abort("shop", "web");
        metrics.observe_analysis_run("shop", "web-1", "Running");
        metrics.observe_measurement("shop", "web-1", "error-rate", 0.02);
        metrics.observe_measurement("shop", "web-1", "latency", 0.3);
        metrics.observe_gitsync(
            "shop",
            "app",
            Some(&gitsync_status(Some("aaa"), Some("aaa"), Some("bbb"))),
        );
        assert!(metrics.per_object_sizes().iter().all(|(_, n)| *n > 0));

        metrics.forget_rollout("shop", "web");
        metrics.forget_analysis_run("shop", "web-1");
        metrics.observe_gitsync("shop", "app", None);
        let text = metrics.render();
        assert!(!text.contains(r#"namespace="shop""#), "{text}");
        assert!(
            metrics.per_object_sizes().iter().all(|(_, n)| *n == 0),
            "{:?}",
            metrics.per_object_sizes()
        );
    }

    #[test]
    fn reconciles_are_counted_and_timed_per_controller() {
        let metrics = Metrics::new();
        metrics.count_reconcile("rollout", Duration::from_millis(3));
        metrics.count_reconcile_error("rollout", "kube");
        metrics.count_abort("shop", "web");
        metrics.observe_gitsync("shop", "app", Some(&gitsync_status(Some("aaa"), None, None)));
        metrics.observe_gitsync(
            "shop",
            "app",
            Some(&gitsync_status(Some("bbb"), Some("aaa"), Some("ccc"))),
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"sluice_gitsync_revision_info{namespace="shop",name="app",state="applied",revision="bbb"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sluice_gitsync_revision_info{namespace="shop",name="app",state="healthy",revision="aaa"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"state="applied",revision="aaa""#), "{text}");
        assert!(
            text.contains(
                r#"sluice_gitsync_revision_info{namespace="shop",name="app",state="candidate",revision="ccc"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_gitsync_healthy_since_timestamp_seconds{namespace="shop",name="app"} 1000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_gitsync_promoted_timestamp_seconds{namespace="shop",name="app"} 2000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconcile_total{controller="rollout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconcile_errors_total{controller="rollout",error="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconcile_duration_seconds_count{controller="rollout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_aborts_total{namespace="shop",name="web"} 1"#),
            "{text}"
        );
    }
}
