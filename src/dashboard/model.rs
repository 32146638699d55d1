//! What the dashboard's JSON API returns: pure functions from objects (and the time) to view structs,
//! built on the CLI's view code so the page and `sluice get rollout` never disagree. Every list the
//! page gets is bounded here, whatever the cluster holds.
use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use serde::Serialize;

use crate::api::analysis::{AnalysisRun, Measurement};
use crate::api::gitsync::GitSync;
use crate::api::keys::{GIT_REVISION_ANNOTATION, GITSYNC_LABEL};
use crate::api::rollout::{RevisionInfo, Rollout};
use crate::cli::undo::{hash_of, revision_of};
use crate::cli::view::{self, Snapshot, actual_weight, age, event_time, set_weight, step_column, to_chrono};
use crate::rollout::plan::describe_step;

/// The newest events a rollout view shows.
pub const MAX_EVENTS: usize = 30;
/// The newest measurements per metric a rollout view shows (and charts).
pub const MAX_MEASUREMENTS: usize = 60;
/// The newest analysis runs a rollout view shows.
pub const MAX_ANALYSIS_RUNS: usize = 10;
/// Pods listed in a rollout view.
pub const MAX_PODS: usize = 100;
/// Points of weight history kept per rollout (one per change; a long rollout keeps its latest).
pub const MAX_WEIGHT_POINTS: usize = 360;
/// A message or condition longer than this is cut (the page is for reading, not for dumps).
const MAX_TEXT: usize = 2048;

fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One row of the rollouts table.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRow {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub message: Option<String>,
    /// "2/4", "done" or "-", as `sluice list rollouts` prints it.
    pub step: String,
    pub strategy: &'static str,
    pub set_weight: Option<i32>,
    pub actual_weight: Option<i32>,
    pub ready: String,
    pub stable: Option<Revision>,
    pub canary: Option<Revision>,
    /// The Git commit a GitSync applied this Rollout from.
    pub git_commit: Option<String>,
    /// `namespace/name` of the GitSync that applied it.
    pub git_sync: Option<String>,
    pub age: String,
    pub paused: bool,
    pub aborted: bool,
}

/// A revision of the pod template: its hash, number and Git commit.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub hash: String,
    pub revision: Option<i64>,
    pub git_revision: Option<String>,
}

fn revision(hash: Option<&String>, info: Option<&RevisionInfo>) -> Option<Revision> {
    hash.map(|hash| Revision {
        hash: hash.clone(),
        revision: info.and_then(|i| i.revision),
        git_revision: info.and_then(|i| i.git_revision.clone()),
    })
}

/// The GitSync named by a Rollout's `sluice.dev/gitsync` label (`<namespace>.<name>`; namespaces
/// have no dots, so the first dot splits).
pub fn owning_gitsync(rollout: &Rollout) -> Option<(String, String)> {
    let value = rollout.metadata.labels.as_ref()?.get(GITSYNC_LABEL)?;
    let (namespace, name) = value.split_once('.')?;
    (!namespace.is_empty() && !name.is_empty()).then(|| (namespace.to_string(), name.to_string()))
}

pub fn row(rollout: &Rollout, now: DateTime<Utc>) -> RolloutRow {
    let status = rollout.status.as_ref();
    let canary_hash = status
        .and_then(|s| s.current_pod_hash.as_ref())
        .filter(|hash| status.and_then(|s| s.stable_rs.as_ref()) != Some(*hash));
    RolloutRow {
        namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        phase: view::phase(rollout),
        message: status.and_then(|s| s.message.as_deref()).map(cut),
        step: step_column(rollout),
        strategy: if rollout.spec.blue_green().is_some() {
            "BlueGreen"
        } else {
            "Canary"
        },
        set_weight: set_weight(rollout),
        actual_weight: actual_weight(rollout),
        ready: format!(
            "{}/{}",
            status.and_then(|s| s.ready_replicas).unwrap_or(0),
            rollout.spec.replicas_or_default()
        ),
        stable: revision(
            status.and_then(|s| s.stable_rs.as_ref()),
            status.and_then(|s| s.stable_revision.as_ref()),
        ),
        canary: revision(canary_hash, status.and_then(|s| s.canary_revision.as_ref())),
        git_commit: rollout
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GIT_REVISION_ANNOTATION))
            .map(|c| cut(c)),
        git_sync: owning_gitsync(rollout).map(|(ns, name)| format!("{ns}/{name}")),
        age: age(rollout.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
        paused: rollout.spec.is_paused(),
        aborted: status.is_some_and(|s| s.is_aborted()),
    }
}

/// The rows of the table, sorted by namespace and name, only `namespace`'s when given.
pub fn rows(rollouts: &[Rollout], namespace: Option<&str>, now: DateTime<Utc>) -> Vec<RolloutRow> {
    let mut rows: Vec<RolloutRow> = rollouts
        .iter()
        .filter(|r| namespace.is_none_or(|ns| r.metadata.namespace.as_deref() == Some(ns)))
        .map(|r| row(r, now))
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

/// One canary step and whether it is done, in progress or to come.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Step {
    pub text: String,
    pub state: &'static str,
}

pub fn steps(rollout: &Rollout) -> Vec<Step> {
    let current = rollout.status.as_ref().and_then(|s| s.current_step_index);
    rollout
        .spec
        .canary()
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let i = i as i32;
            let state = match current {
                Some(c) if i < c => "done",
                Some(c) if i == c => "current",
                _ => "pending",
            };
            Step {
                text: describe_step(step),
                state,
            }
        })
        .collect()
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementView {
    pub phase: String,
    pub value: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub phase: String,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub count: i32,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    /// The newest [`MAX_MEASUREMENTS`], oldest first.
    pub measurements: Vec<MeasurementView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunView {
    pub name: String,
    pub phase: String,
    pub message: Option<String>,
    pub age: String,
    pub metrics: Vec<MetricView>,
}

fn measurement(m: &Measurement) -> MeasurementView {
    MeasurementView {
        phase: format!("{:?}", m.phase),
        value: m.value.as_deref().map(cut),
        finished_at: m.finished_at,
        message: m.message.as_deref().map(cut),
    }
}

pub fn analysis_run(run: &AnalysisRun, now: DateTime<Utc>) -> AnalysisRunView {
    let status = run.status.clone().unwrap_or_default();
    let metrics = run
        .spec
        .metrics
        .iter()
        .map(|metric| {
            let result = status.metric_results.iter().find(|r| r.name == metric.name);
            let measurements = result.map_or(Vec::new(), |r| {
                let skip = r.measurements.len().saturating_sub(MAX_MEASUREMENTS);
                r.measurements.iter().skip(skip).map(measurement).collect()
            });
            MetricView {
                name: metric.name.clone(),
                phase: result.map_or("Pending".into(), |r| format!("{:?}", r.phase)),
                success_condition: metric.success_condition.as_deref().map(cut),
                failure_condition: metric.failure_condition.as_deref().map(cut),
                count: result.map_or(0, |r| r.count),
                successful: result.map_or(0, |r| r.successful),
                failed: result.map_or(0, |r| r.failed),
                inconclusive: result.map_or(0, |r| r.inconclusive),
                error: result.map_or(0, |r| r.error),
                measurements,
            }
        })
        .collect();
    AnalysisRunView {
        name: run.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.map_or("Pending".into(), |p| format!("{p:?}")),
        message: status.message.as_deref().map(cut),
        age: age(run.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
        metrics,
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetView {
    pub name: String,
    pub hash: Option<String>,
    pub revision: Option<i64>,
    /// stable, canary or old.
    pub role: &'static str,
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub images: Vec<String>,
    pub age: String,
}

pub fn replica_set(rs: &ReplicaSet, rollout: &Rollout, now: DateTime<Utc>) -> ReplicaSetView {
    let status = rollout.status.as_ref();
    let hash = hash_of(rs).map(str::to_string);
    let role = if hash.is_some() && hash.as_ref() == status.and_then(|s| s.stable_rs.as_ref()) {
        "stable"
    } else if hash.is_some() && hash.as_ref() == status.and_then(|s| s.current_pod_hash.as_ref()) {
        "canary"
    } else {
        "old"
    };
    let images = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.image.as_deref().map(cut))
                .collect()
        })
        .unwrap_or_default();
    ReplicaSetView {
        name: rs.metadata.name.clone().unwrap_or_default(),
        hash,
        revision: revision_of(rs),
        role,
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready: rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        available: rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
        images,
        age: age(rs.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    pub hash: Option<String>,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    pub age: String,
}

pub fn pod(pod: &Pod, now: DateTime<Utc>) -> PodView {
    let status = pod.status.as_ref();
    PodView {
        name: pod.metadata.name.clone().unwrap_or_default(),
        hash: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::api::keys::POD_TEMPLATE_HASH_LABEL))
            .cloned(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into()),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        restarts: status
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).fold(0i32, i32::saturating_add)),
        age: age(pod.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub age: String,
}

/// The newest [`MAX_EVENTS`] events, newest first.
pub fn events(events: &[Event], now: DateTime<Utc>) -> Vec<EventView> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    sorted
        .into_iter()
        .take(MAX_EVENTS)
        .map(|e| EventView {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.as_deref().map(cut).unwrap_or_default(),
            count: e.count.unwrap_or(1),
            age: age(event_time(e), now),
        })
        .collect()
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockedView {
    pub revision: String,
    pub reason: String,
    pub age: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncView {
    pub namespace: String,
    pub name: String,
    pub last_attempted: Option<String>,
    pub last_applied: Option<String>,
    pub last_healthy: Option<String>,
    pub blocked: Vec<BlockedView>,
    /// The Ready condition's message, when not ready.
    pub message: Option<String>,
}

pub fn gitsync(gitsync: &GitSync, now: DateTime<Utc>) -> GitSyncView {
    let status = gitsync.status.clone().unwrap_or_default();
    GitSyncView {
        namespace: gitsync.metadata.namespace.clone().unwrap_or_default(),
        name: gitsync.metadata.name.clone().unwrap_or_default(),
        last_attempted: status.last_attempted_revision,
        last_applied: status.last_applied_revision,
        last_healthy: status.last_healthy_revision,
        blocked: status
            .blocked_revisions
            .iter()
            .rev()
            .take(MAX_EVENTS)
            .map(|b| BlockedView {
                revision: cut(&b.revision),
                reason: cut(&b.reason),
                age: age(Some(b.blocked_at), now),
            })
            .collect(),
        message: status
            .conditions
            .iter()
            .find(|c| {
                c.type_ == crate::api::keys::condition::READY
                    && c.status != crate::api::conditions::ConditionStatus::True
            })
            .and_then(|c| c.message.as_deref().map(cut)),
    }
}

/// The canary and stable weight at one moment, as watch updates reported them.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightPoint {
    /// Unix milliseconds.
    pub t: i64,
    /// The weight the steps ask for the new version.
    pub set: Option<i32>,
    /// The weight last written to the router for the new version (the stable has the rest).
    pub actual: Option<i32>,
}

/// A bounded record of one rollout's weights: a point per change, the oldest dropped first.
#[derive(Debug, Default, Clone)]
pub struct WeightHistory(VecDeque<WeightPoint>);

impl WeightHistory {
    /// Records the rollout's weights at `now` when they differ from the last point. A rollout with
    /// nothing in flight is charted as no canary (the stable has all traffic), where the list's
    /// "the current version has 100%" would read as a canary at 100.
    pub fn record(&mut self, rollout: &Rollout, now: DateTime<Utc>) {
        let steady = crate::cli::actions::stage(rollout) == crate::cli::actions::Stage::Steady;
        let point = WeightPoint {
            t: now.timestamp_millis(),
            set: if steady { Some(0) } else { set_weight(rollout) },
            actual: if steady { Some(0) } else { actual_weight(rollout) },
        };
        if self
            .0
            .back()
            .is_some_and(|last| (last.set, last.actual) == (point.set, point.actual))
        {
            return;
        }
        if self.0.len() >= MAX_WEIGHT_POINTS {
            self.0.pop_front();
        }
        self.0.push_back(point);
    }

    pub fn points(&self) -> Vec<WeightPoint> {
        self.0.iter().copied().collect()
    }
}

/// Everything the rollout view shows.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDetail {
    pub rollout: RolloutRow,
    pub steps: Vec<Step>,
    pub analysis_runs: Vec<AnalysisRunView>,
    pub replica_sets: Vec<ReplicaSetView>,
    pub pods: Vec<PodView>,
    pub pods_total: usize,
    pub events: Vec<EventView>,
    pub git_sync: Option<GitSyncView>,
    pub weights: Vec<WeightPoint>,
}

pub fn detail(
    snapshot: &Snapshot,
    gitsync_object: Option<&GitSync>,
    weights: Vec<WeightPoint>,
    now: DateTime<Utc>,
) -> RolloutDetail {
    let rollout = &snapshot.rollout;
    let mut runs: Vec<&AnalysisRun> = snapshot.analysis_runs.iter().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().and_then(to_chrono)));
    let mut replica_sets: Vec<&ReplicaSet> = snapshot.replica_sets.iter().collect();
    replica_sets.sort_by_key(|rs| std::cmp::Reverse(revision_of(rs)));
    RolloutDetail {
        rollout: row(rollout, now),
        steps: steps(rollout),
        analysis_runs: runs
            .into_iter()
            .take(MAX_ANALYSIS_RUNS)
            .map(|r| analysis_run(r, now))
            .collect(),
        replica_sets: replica_sets
            .into_iter()
            .take(MAX_EVENTS)
            .map(|rs| replica_set(rs, rollout, now))
            .collect(),
        pods: snapshot.pods.iter().take(MAX_PODS).map(|p| pod(p, now)).collect(),
        pods_total: snapshot.pods.len(),
        events: events(&snapshot.events, now),
        git_sync: gitsync_object.map(|g| gitsync(g, now)),
        weights,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::api::rollout::{
        CanaryStatus, CanaryStep, RolloutPhase, RolloutStatus, TrafficWeights, WeightDestination,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    /// `web` at step `index` of [setWeight 25, pause, setWeight 50, pause] with the router at `actual`.
    fn at_step(index: i32, actual: i32) -> Rollout {
        let steps = vec![
            CanaryStep::set_weight(25),
            CanaryStep::pause(),
            CanaryStep::set_weight(50),
            CanaryStep::pause(),
        ];
        let base = Rollout::example("web", 4, steps);
        let canary_hash = crate::rollout::plan::current_hash(&base);
        let mut rollout = base.with_status(RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            current_step_index: Some(index),
            stable_rs: Some("aaa".into()),
            current_pod_hash: Some(canary_hash.clone()),
            canary: Some(CanaryStatus {
                weights: Some(TrafficWeights {
                    canary: WeightDestination {
                        pod_template_hash: Some(canary_hash),
                        weight: actual,
                    },
                    stable: WeightDestination {
                        pod_template_hash: Some("aaa".into()),
                        weight: 100 - actual,
                    },
                }),
                ..Default::default()
            }),
            stable_revision: Some(RevisionInfo {
                git_revision: Some("c0ffee".into()),
                revision: Some(1),
            }),
            ..Default::default()
        });
        rollout.metadata.namespace = Some("shop".into());
        rollout
    }

    #[test]
    fn a_row_says_what_the_cli_list_says_plus_revisions_and_the_gitsync() {
        let mut rollout = at_step(1, 25);
        let labels = rollout.metadata.labels.get_or_insert_default();
        labels.insert(GITSYNC_LABEL.into(), "gitops.prod".into());
        rollout
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(GIT_REVISION_ANNOTATION.into(), "0123abcd".into());
        let row = row(&rollout, now());
        assert_eq!((row.phase.as_str(), row.step.as_str()), ("Paused", "2/4"));
        assert_eq!((row.set_weight, row.actual_weight), (Some(25), Some(25)));
        assert_eq!(row.stable.as_ref().map(|r| r.hash.as_str()), Some("aaa"));
        assert_eq!(row.stable.and_then(|r| r.git_revision).as_deref(), Some("c0ffee"));
        let canary_hash = crate::rollout::plan::current_hash(&rollout);
        assert_eq!(row.canary.map(|r| r.hash), Some(canary_hash));
        assert_eq!(row.git_commit.as_deref(), Some("0123abcd"));
        assert_eq!(row.git_sync.as_deref(), Some("gitops/prod"));
    }

    #[test]
    fn rows_filter_by_namespace_and_sort() {
        let mut other = at_step(0, 25);
        other.metadata.namespace = Some("apps".into());
        other.metadata.name = Some("zeta".into());
        let all = [at_step(1, 25), other];
        let names = |rows: Vec<RolloutRow>| {
            rows.into_iter()
                .map(|r| format!("{}/{}", r.namespace, r.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(rows(&all, None, now())), ["apps/zeta", "shop/web"]);
        assert_eq!(names(rows(&all, Some("shop"), now())), ["shop/web"]);
        assert!(rows(&all, Some("nope"), now()).is_empty());
    }

    #[test]
    fn the_timeline_marks_done_current_and_pending() {
        let states: Vec<_> = steps(&at_step(2, 50)).into_iter().map(|s| s.state).collect();
        assert_eq!(states, ["done", "done", "current", "pending"]);
        assert_eq!(steps(&at_step(2, 50))[0].text, "setWeight 25%");
    }

    #[test]
    fn a_label_that_is_not_namespace_dot_name_names_no_gitsync() {
        for value in ["", "nodot", ".name", "ns."] {
            let mut rollout = at_step(0, 0);
            rollout
                .metadata
                .labels
                .get_or_insert_default()
                .insert(GITSYNC_LABEL.into(), value.into());
            assert_eq!(owning_gitsync(&rollout), None, "{value:?}");
        }
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let cut_text = cut(&long);
        assert!(cut_text.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(cut_text.ends_with('…'));
    }

    #[test]
    fn an_analysis_run_shows_each_metrics_conditions_and_its_newest_measurements() {
        let measurements: Vec<serde_json::Value> = (0..MAX_MEASUREMENTS + 40)
            .map(|i| json!({"phase": if i % 10 == 9 { "Failed" } else { "Successful" }, "value": format!("0.0{}", i % 10)}))
            .collect();
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-2-1", "namespace": "shop"},
            "spec": {"metrics": [
                {"name": "error-rate", "successCondition": "result < 0.05", "failureCondition": "result >= 0.09",
                 "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "q"}}},
                {"name": "latency", "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "q"}}},
            ]},
            "status": {"phase": "Running", "metricResults": [
                {"name": "error-rate", "phase": "Running", "measurements": measurements, "count": 100,
                 "successful": 90, "failed": 10, "inconclusive": 0, "error": 0, "consecutiveError": 0},
            ]},
        }))
        .unwrap();
        let view = analysis_run(&run, now());
        assert_eq!((view.name.as_str(), view.phase.as_str()), ("web-2-1", "Running"));
        let error_rate = &view.metrics[0];
        assert_eq!(error_rate.success_condition.as_deref(), Some("result < 0.05"));
        assert_eq!(error_rate.failure_condition.as_deref(), Some("result >= 0.09"));
        assert_eq!((error_rate.successful, error_rate.failed), (90, 10));
        // The newest, oldest first: the 40 oldest are dropped.
        assert_eq!(error_rate.measurements.len(), MAX_MEASUREMENTS);
        assert_eq!(error_rate.measurements[0].value.as_deref(), Some("0.00"));
        assert_eq!(error_rate.measurements.last().unwrap().phase, "Failed");
        // A metric not measured yet is listed, pending, with nothing to chart.
        assert_eq!(
            (view.metrics[1].name.as_str(), view.metrics[1].phase.as_str()),
            ("latency", "Pending")
        );
        assert!(view.metrics[1].measurements.is_empty());
    }

    proptest! {
        // Each record hashes the pod template (to tell a steady rollout): fewer, longer cases.
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the updates, the history stays bounded, in time order, one point per change.
        #[test]
        fn weight_history_is_bounded_and_records_changes_only(weights in prop::collection::vec(0..=100i32, 0..1000)) {
            let mut history = WeightHistory::default();
            let mut rollout = at_step(0, 0);
            for (i, weight) in weights.iter().enumerate() {
                // The router's weight changes; the template (and its hash) stays.
                if let Some(w) = rollout.status.as_mut().and_then(|s| s.canary.as_mut()).and_then(|c| c.weights.as_mut()) {
                    w.canary.weight = *weight;
                }
                history.record(&rollout, now() + chrono::Duration::seconds(i as i64));
            }
            let points = history.points();
            prop_assert!(points.len() <= MAX_WEIGHT_POINTS);
            prop_assert!(points.windows(2).all(|w| w[0].t < w[1].t && w[0].actual != w[1].actual));
            if let Some(last) = weights.last() {
                prop_assert_eq!(points.last().and_then(|p| p.actual), Some(*last));
            }
        }
    }
}
