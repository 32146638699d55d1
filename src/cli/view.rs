//! Rendering for `sluice get rollout` and `sluice list rollouts`: pure functions from objects and
//! the time to text, so the output is tested without a cluster.
use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::actions::{Stage, stage};
use super::undo::{hash_of, revision_of};
use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::{PauseReason, Rollout};
use crate::rollout::plan::describe_step;

/// How many analysis runs and events the summary shows (the newest).
const RECENT: usize = 5;

/// Everything `sluice get rollout` shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub rollout: Rollout,
    /// The Rollout's own ReplicaSets.
    pub replica_sets: Vec<ReplicaSet>,
    /// Pods matching the Rollout's selector.
    pub pods: Vec<Pod>,
    /// AnalysisRuns owned by the Rollout.
    pub analysis_runs: Vec<AnalysisRun>,
    /// Experiments owned by the Rollout (its experiment steps').
    pub experiments: Vec<Experiment>,
    /// Events about the Rollout.
    pub events: Vec<Event>,
}

impl Snapshot {
    /// A rollout alone, with nothing related found yet.
    pub fn of(rollout: Rollout) -> Self {
        Snapshot {
            rollout,
            replica_sets: Vec::new(),
            pods: Vec::new(),
            analysis_runs: Vec::new(),
            experiments: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A Kubernetes timestamp as chrono.
pub fn to_chrono(time: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond().max(0) as u32)
}

/// Age the way kubectl prints it: 45s, 3m20s, 15m, 5h12m, 3d4h, 40d, 2y.
pub fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let seconds = (now - since).num_seconds().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    match () {
        _ if seconds < 120 => format!("{seconds}s"),
        _ if minutes < 10 && seconds % 60 != 0 => format!("{minutes}m{}s", seconds % 60),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 && minutes % 60 != 0 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if days < 8 && hours % 24 != 0 => format!("{days}d{}h", hours % 24),
        _ if days < 730 => format!("{days}d"),
        _ => format!("{}y", days / 365),
    }
}

/// Left-aligned columns two spaces apart, like kubectl.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The traffic weight the steps ask for at `index`: the last setWeight at or before it, 100 past the end.
fn weight_at(rollout: &Rollout, index: i32) -> i32 {
    let steps = rollout.spec.canary().steps;
    let index = index.max(0) as usize;
    if index >= steps.len() {
        return 100;
    }
    steps[..=index].iter().rev().find_map(|s| s.set_weight).unwrap_or(0)
}

/// The weight the new version should have now; None while the controller has not caught up.
pub fn set_weight(rollout: &Rollout) -> Option<i32> {
    match stage(rollout) {
        Stage::Pending { .. } => None,
        // The stable revision runs the current template and has all the traffic.
        Stage::Steady => Some(100),
        Stage::Aborted => Some(0),
        Stage::Canary { index, .. } => Some(weight_at(rollout, index)),
    }
}

/// The weight the controller last wrote to the router for the new version.
pub fn actual_weight(rollout: &Rollout) -> Option<i32> {
    if stage(rollout) == Stage::Steady {
        return Some(100);
    }
    let status = rollout.status.as_ref()?;
    status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight)
        .or(status.canary_weight)
}

/// "2/4" for the step in progress (1-based, as the controller's events count), "done" when all
/// steps are done, "-" before the controller reports.
pub fn step_column(rollout: &Rollout) -> String {
    let steps = rollout.spec.canary().steps.len();
    let Some(index) = rollout.status.as_ref().and_then(|s| s.current_step_index) else {
        return "-".into();
    };
    if index.max(0) as usize >= steps {
        "done".into()
    } else {
        format!("{}/{steps}", index + 1)
    }
}

pub fn phase(rollout: &Rollout) -> String {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or("Unknown".to_string(), |p| format!("{p:?}"))
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `get rollout` summary.
pub fn render(snapshot: &Snapshot, now: DateTime<Utc>) -> String {
    let rollout = &snapshot.rollout;
    let status = rollout.status.clone().unwrap_or_default();
    let steps = rollout.spec.canary().steps;
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<17}{value}", format!("{label}:"));
    };
    field("Name", or_dash(rollout.metadata.name.as_deref()));
    field("Namespace", or_dash(rollout.metadata.namespace.as_deref()));
    let message = match (&rollout.status, status.message.as_deref()) {
        (None, _) => ": the controller has not reported on it yet".to_string(),
        (_, Some(message)) => format!(": {message}"),
        (_, None) => String::new(),
    };
    field("Status", format!("{}{message}", phase(rollout)));
    if rollout.spec.is_paused() {
        field(
            "Paused",
            "by `sluice pause` (spec.paused); `sluice resume` continues".into(),
        );
    }
    for condition in &status.pause_conditions {
        let why = match condition.reason {
            PauseReason::CanaryPauseStep => "pause step",
            PauseReason::InconclusiveAnalysisRun => "inconclusive analysis",
            PauseReason::BlueGreenPause => "before the switch",
        };
        field(
            "Waiting",
            format!(
                "{why} since {} ({} ago); `sluice promote` continues",
                timestamp(condition.start_time),
                age(Some(condition.start_time), now)
            ),
        );
    }
    if status.is_aborted() {
        let when = status
            .aborted_at
            .map(|t| format!(" at {}", timestamp(t)))
            .unwrap_or_default();
        field("Aborted", format!("yes{when}; `sluice retry` starts the steps again"));
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        field("Strategy", "BlueGreen".into());
        let selectors = status.blue_green.clone().unwrap_or_default();
        field(
            "  Active",
            format!(
                "Service {} → {}",
                blue_green.active_service,
                or_dash(selectors.active_selector)
            ),
        );
        if let Some(preview) = &blue_green.preview_service {
            field(
                "  Preview",
                format!("Service {preview} → {}", or_dash(selectors.preview_selector)),
            );
        }
        let run = |run: Option<&crate::api::rollout::AnalysisRunRef>| {
            run.map(|r| {
                format!(
                    "{} ({})",
                    r.name,
                    r.status.map_or("-".to_string(), |p| format!("{p:?}"))
                )
            })
        };
        if let Some(pre) = run(selectors.pre_promotion_analysis_run.as_ref()) {
            field("  Pre-promotion", pre);
        }
        if let Some(post) = run(selectors.post_promotion_analysis_run.as_ref()) {
            field("  Post-promotion", post);
        }
    } else {
        field("Strategy", "Canary".into());
        let step = match status.current_step_index {
            _ if steps.is_empty() => "- (no steps: new versions are promoted at once)".to_string(),
            None => "-".into(),
            Some(index) => match steps.get(index.max(0) as usize) {
                Some(current) => format!("{}/{}: {}", index + 1, steps.len(), describe_step(current)),
                None => format!("{}/{} done", steps.len(), steps.len()),
            },
        };
        field("  Step", step);
        if let Some(name) = status.canary.as_ref().and_then(|c| c.current_experiment.as_deref()) {
            let phase = snapshot
                .experiments
                .iter()
                .find(|e| e.metadata.name.as_deref() == Some(name))
                .map_or("not found".to_string(), |e| {
                    format!("{:?}", e.status.as_ref().and_then(|s| s.phase).unwrap_or_default())
                });
            field("  Experiment", format!("{name} ({phase})"));
        }
        field("  Set weight", or_dash(set_weight(rollout)));
        field("  Actual weight", or_dash(actual_weight(rollout)));
    }
    let revision_number = |hash: Option<&str>| {
        snapshot
            .replica_sets
            .iter()
            .find(|rs| hash.is_some() && hash_of(rs) == hash)
            .and_then(revision_of)
    };
    let describe_revision = |info: Option<&crate::api::rollout::RevisionInfo>, hash: Option<&str>| {
        let number = info.and_then(|i| i.revision).or_else(|| revision_number(hash));
        let mut text = format!("revision {}", or_dash(number));
        if let Some(hash) = hash {
            let _ = write!(text, ", hash {hash}");
        }
        if let Some(git) = info.and_then(|i| i.git_revision.as_deref()) {
            let _ = write!(text, ", git {git}");
        }
        text
    };
    if status.stable_rs.is_some() {
        field(
            "Stable",
            describe_revision(status.stable_revision.as_ref(), status.stable_rs.as_deref()),
        );
    }
    if status.current_pod_hash.is_some() && status.current_pod_hash != status.stable_rs {
        let role = if rollout.spec.blue_green().is_some() {
            "New"
        } else {
            "Canary"
        };
        field(
            role,
            describe_revision(status.canary_revision.as_ref(), status.current_pod_hash.as_deref()),
        );
    }
    let images: Vec<String> = rollout
        .spec
        .template
        .spec()
        .spec
        .iter()
        .flat_map(|pod| &pod.containers)
        .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("-")))
        .collect();
    field("Images", images.join(" "));
    field(
        "Replicas",
        format!(
            "desired {}, current {}, updated {}, ready {}, available {}",
            rollout.spec.replicas_or_default(),
            status.replicas.unwrap_or(0),
            status.updated_replicas.unwrap_or(0),
            status.ready_replicas.unwrap_or(0),
            status.available_replicas.unwrap_or(0)
        ),
    );

    out.push('\n');
    out.push_str(&replica_set_table(snapshot));
    if !snapshot.analysis_runs.is_empty() {
        out.push('\n');
        out.push_str(&analysis_run_table(snapshot, now));
    }
    if !snapshot.experiments.is_empty() {
        out.push('\n');
        out.push_str(&experiment_table(snapshot, now));
    }
    out.push('\n');
    out.push_str(&event_table(snapshot, now));
    out
}

fn replica_set_table(snapshot: &Snapshot) -> String {
    let status = snapshot.rollout.status.clone().unwrap_or_default();
    if snapshot.replica_sets.is_empty() {
        return "No ReplicaSets yet.\n".into();
    }
    // Pods per hash: (ready, total); deleted pods on their way out still count, as they hold capacity.
    let mut pods: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for pod in &snapshot.pods {
        let Some(hash) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
        else {
            continue;
        };
        let entry = pods.entry(hash.as_str()).or_default();
        entry.1 += 1;
        if is_ready(pod) {
            entry.0 += 1;
        }
    }
    let mut replica_sets: Vec<&ReplicaSet> = snapshot.replica_sets.iter().collect();
    replica_sets.sort_by_key(|rs| std::cmp::Reverse(revision_of(rs)));
    let mut rows = vec![
        [
            "REPLICASET",
            "REVISION",
            "HASH",
            "DESIRED",
            "READY",
            "AVAILABLE",
            "PODS-READY",
            "TAGS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for rs in replica_sets {
        let hash = hash_of(rs);
        let rs_status = rs.status.clone().unwrap_or_default();
        let mut tags = Vec::new();
        if hash.is_some() && hash == status.stable_rs.as_deref() {
            tags.push("stable");
        }
        let blue_green = snapshot.rollout.spec.blue_green().is_some();
        if hash.is_some() && hash == status.current_pod_hash.as_deref() && status.current_pod_hash != status.stable_rs {
            tags.push(if blue_green { "new" } else { "canary" });
        }
        let selectors = status.blue_green.clone().unwrap_or_default();
        if blue_green && hash.is_some() && hash == selectors.active_selector.as_deref() {
            tags.push("active");
        }
        if blue_green && hash.is_some() && hash == selectors.preview_selector.as_deref() {
            tags.push("preview");
        }
        let (ready, total) = hash.and_then(|h| pods.get(h)).copied().unwrap_or_default();
        rows.push(vec![
            or_dash(rs.metadata.name.as_deref()),
            or_dash(revision_of(rs)),
            or_dash(hash),
            or_dash(rs.spec.as_ref().and_then(|s| s.replicas)),
            rs_status.ready_replicas.unwrap_or(0).to_string(),
            rs_status.available_replicas.unwrap_or(0).to_string(),
            format!("{ready}/{total}"),
            tags.join(","),
        ]);
    }
    table(&rows)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn analysis_run_table(snapshot: &Snapshot, now: DateTime<Utc>) -> String {
    let mut runs: Vec<&AnalysisRun> = snapshot.analysis_runs.iter().collect();
    runs.sort_by_key(|r| r.metadata.creation_timestamp.clone());
    let skip = runs.len().saturating_sub(RECENT);
    let mut rows = vec![["ANALYSISRUN", "PHASE", "AGE", "MESSAGE"].map(String::from).to_vec()];
    for run in &runs[skip..] {
        let status = run.status.clone().unwrap_or_default();
        rows.push(vec![
            or_dash(run.metadata.name.as_deref()),
            format!("{:?}", status.phase.unwrap_or_default()),
            age(run.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
            status.message.unwrap_or_default(),
        ]);
    }
    let mut out = table(&rows);
    if skip > 0 {
        let _ = writeln!(out, "({skip} older not shown)");
    }
    out
}

fn experiment_table(snapshot: &Snapshot, now: DateTime<Utc>) -> String {
    let mut experiments: Vec<&Experiment> = snapshot.experiments.iter().collect();
    experiments.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    let skip = experiments.len().saturating_sub(RECENT);
    let mut rows = vec![["EXPERIMENT", "PHASE", "AGE", "MESSAGE"].map(String::from).to_vec()];
    for experiment in &experiments[skip..] {
        let status = experiment.status.clone().unwrap_or_default();
        rows.push(vec![
            or_dash(experiment.metadata.name.as_deref()),
            format!("{:?}", status.phase.unwrap_or_default()),
            age(experiment.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
            crate::bounds::truncate(&status.message.unwrap_or_default(), 200).into_owned(),
        ]);
    }
    let mut out = table(&rows);
    if skip > 0 {
        let _ = writeln!(out, "({skip} older not shown)");
    }
    out
}

/// When an event last happened: its series or last timestamp, else when it was first seen or created.
pub fn event_time(event: &Event) -> Option<DateTime<Utc>> {
    event
        .last_timestamp
        .as_ref()
        .and_then(to_chrono)
        .or_else(|| {
            event
                .event_time
                .as_ref()
                .map(|t| t.0)
                .and_then(|t| DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32))
        })
        .or_else(|| event.first_timestamp.as_ref().and_then(to_chrono))
        .or_else(|| event.metadata.creation_timestamp.as_ref().and_then(to_chrono))
}

fn event_table(snapshot: &Snapshot, now: DateTime<Utc>) -> String {
    if snapshot.events.is_empty() {
        return "No events.\n".into();
    }
    let mut events: Vec<&Event> = snapshot.events.iter().collect();
    events.sort_by_key(|e| event_time(e));
    let skip = events.len().saturating_sub(RECENT);
    let mut rows = vec![["LAST SEEN", "TYPE", "REASON", "MESSAGE"].map(String::from).to_vec()];
    for event in &events[skip..] {
        let count = event
            .count
            .filter(|c| *c > 1)
            .map(|c| format!(" (x{c})"))
            .unwrap_or_default();
        rows.push(vec![
            age(event_time(event), now),
            or_dash(event.type_.as_deref()),
            or_dash(event.reason.as_deref()),
            format!("{}{count}", event.message.as_deref().unwrap_or_default()),
        ]);
    }
    table(&rows)
}

/// The `list rollouts` table; `wide` adds the weight the router has, the stable and canary pod hashes
/// and the Git commit being rolled out.
pub fn render_list(rollouts: &[Rollout], with_namespace: bool, wide: bool, now: DateTime<Utc>) -> String {
    let mut header = vec!["NAME", "STATUS", "STEP", "SET-WEIGHT", "READY", "AGE"];
    if wide {
        header.extend(["ACTUAL-WEIGHT", "STABLE", "CANARY", "COMMIT"]);
    }
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for rollout in rollouts {
        let mut row = vec![
            or_dash(rollout.metadata.name.as_deref()),
            phase(rollout),
            step_column(rollout),
            or_dash(set_weight(rollout)),
            format!(
                "{}/{}",
                rollout.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                rollout.spec.replicas_or_default()
            ),
            age(rollout.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
        ];
        if wide {
            row.extend(wide_columns(rollout));
        }
        if with_namespace {
            row.insert(0, or_dash(rollout.metadata.namespace.as_deref()));
        }
        rows.push(row);
    }
    table(&rows)
}

/// ACTUAL-WEIGHT, STABLE, CANARY (the current hash while it differs from stable) and COMMIT (the
/// canary's, else the stable's).
fn wide_columns(rollout: &Rollout) -> [String; 4] {
    let status = rollout.status.as_ref();
    let stable = status.and_then(|s| s.stable_rs.clone());
    let current = status.and_then(|s| s.current_pod_hash.clone());
    let canary = current.filter(|hash| Some(hash) != stable.as_ref());
    let commit = status
        .and_then(|s| s.canary_revision.as_ref().or(s.stable_revision.as_ref()))
        .and_then(|revision| revision.git_revision.as_deref())
        .map(|commit| crate::gitsync::plan::short(commit).to_string());
    [
        or_dash(actual_weight(rollout)),
        or_dash(stable),
        or_dash(canary),
        or_dash(commit),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    use k8s_openapi::api::core::v1::{ObjectReference, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus};
    use crate::api::rollout::{
        CanaryStatus, CanaryStep, PauseCondition, RevisionInfo, RolloutPhase, RolloutStatus, TrafficWeights,
        WeightDestination,
    };
    use crate::cli::undo::hash_of;
    use crate::cli::undo::tests::{UID, replica_set};
    use crate::rollout::plan::current_hash;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn time(seconds_ago: i64) -> Time {
        let t = now() - chrono::Duration::seconds(seconds_ago);
        Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap())
    }

    fn steps() -> Vec<CanaryStep> {
        vec![
            CanaryStep::set_weight(25),
            CanaryStep::pause(),
            CanaryStep::set_weight(50),
            CanaryStep::analysis("error-rate"),
        ]
    }

    fn with_status(mut rs: ReplicaSet, ready: i32) -> ReplicaSet {
        rs.spec.as_mut().unwrap().replicas = Some(ready);
        rs.status = Some(ReplicaSetStatus {
            replicas: ready,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            ..ReplicaSetStatus::default()
        });
        rs
    }

    fn pod(hash: &str, name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    POD_TEMPLATE_HASH_LABEL.to_string(),
                    hash.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn event(seconds_ago: i64, reason: &str, message: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(format!("web.{seconds_ago}")),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: Some("Rollout".into()),
                name: Some("web".into()),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            last_timestamp: Some(time(seconds_ago)),
            ..Event::default()
        }
    }

    /// web, mid-canary: revision 1 stable (3 pods), revision 2 canary (1 pod, not yet ready), paused at step 2.
    fn paused_canary() -> Snapshot {
        let mut rollout = Rollout::example("web", 4, steps()).with_image("example.com/web:2");
        rollout.metadata.uid = Some(UID.into());
        rollout.metadata.creation_timestamp = Some(time(3600));
        let stable = with_status(replica_set(UID, "example.com/web:1", 1), 3);
        let canary = with_status(replica_set(UID, "example.com/web:2", 2), 1);
        let stable_hash = hash_of(&stable).unwrap().to_string();
        let canary_hash = hash_of(&canary).unwrap().to_string();
        assert_eq!(canary_hash, current_hash(&rollout));
        let rollout = rollout.with_status(RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            message: Some("step 2/4: paused until promoted".into()),
            stable_rs: Some(stable_hash.clone()),
            current_pod_hash: Some(canary_hash.clone()),
            current_step_index: Some(1),
            pause_conditions: vec![PauseCondition {
                reason: PauseReason::CanaryPauseStep,
                start_time: now() - chrono::Duration::seconds(90),
            }],
            canary: Some(CanaryStatus {
                weights: Some(TrafficWeights {
                    canary: WeightDestination {
                        pod_template_hash: Some(canary_hash.clone()),
                        weight: 25,
                    },
                    stable: WeightDestination {
                        pod_template_hash: Some(stable_hash.clone()),
                        weight: 75,
                    },
                }),
                ..CanaryStatus::default()
            }),
            replicas: Some(4),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            stable_revision: Some(RevisionInfo {
                git_revision: Some("1a2b3c4".into()),
                revision: Some(1),
            }),
            canary_revision: Some(RevisionInfo {
                git_revision: Some("9f8e7d6".into()),
                revision: Some(2),
            }),
            ..RolloutStatus::default()
        });
        let mut run = AnalysisRun::new(
            "web-canary-s3-0",
            AnalysisRunSpec {
                metrics: vec![],
                ..AnalysisRunSpec::default()
            },
        );
        run.metadata.creation_timestamp = Some(time(600));
        run.status = Some(AnalysisRunStatus {
            phase: Some(AnalysisPhase::Successful),
            message: Some("all metrics passed".into()),
            ..AnalysisRunStatus::default()
        });
        Snapshot {
            rollout,
            replica_sets: vec![stable, canary],
            pods: vec![
                pod(&stable_hash, "a", true),
                pod(&stable_hash, "b", true),
                pod(&stable_hash, "c", true),
                pod(&canary_hash, "d", false),
            ],
            analysis_runs: vec![run],
            experiments: vec![],
            events: vec![
                event(90, "RolloutPaused", "step 2/4: paused until promoted"),
                event(200, "StepCompleted", "step 1/4 completed: setWeight 25%"),
            ],
        }
    }

    #[test]
    fn summary_of_a_blue_green_waiting_for_promotion() {
        let mut snapshot = paused_canary();
        let status = snapshot.rollout.status.clone().unwrap();
        let (stable, new) = (
            status.stable_rs.clone().unwrap(),
            status.current_pod_hash.clone().unwrap(),
        );
        let mut rollout = snapshot.rollout.clone();
        rollout.spec.strategy = Rollout::blue_green_example("web", 4).spec.strategy;
        let mut status = status;
        status.pause_conditions[0].reason = PauseReason::BlueGreenPause;
        status.blue_green = Some(crate::api::rollout::BlueGreenStatus {
            active_selector: Some(stable.clone()),
            preview_selector: Some(new.clone()),
            ..Default::default()
        });
        snapshot.rollout = rollout.with_status(status);
        let text = render(&snapshot, now());
        for line in [
            "Waiting:         before the switch since",
            "Strategy:        BlueGreen\n",
            &format!("  Active:        Service web-active → {stable}\n"),
            &format!("  Preview:       Service web-preview → {new}\n"),
            &format!("New:             revision 2, hash {new}"),
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("Set weight"), "{text}");
        let row = |hash: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("web-{hash}")))
                .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        };
        assert_eq!(row(&new).as_deref(), Some("new,preview"));
        assert_eq!(row(&stable).as_deref(), Some("stable,active"));
    }

    #[test]
    fn summary_of_a_paused_canary() {
        let snapshot = paused_canary();
        let text = render(&snapshot, now());
        let stable = snapshot.rollout.status.as_ref().unwrap().stable_rs.clone().unwrap();
        let canary = snapshot
            .rollout
            .status
            .as_ref()
            .unwrap()
            .current_pod_hash
            .clone()
            .unwrap();
        let expected = format!(
            "\
Name:            web
Namespace:       default
Status:          Paused: step 2/4: paused until promoted
Waiting:         pause step since 2025-03-01T11:58:30Z (90s ago); `sluice promote` continues
Strategy:        Canary
  Step:          2/4: pause until promoted
  Set weight:    25
  Actual weight: 25
Stable:          revision 1, hash {stable}, git 1a2b3c4
Canary:          revision 2, hash {canary}, git 9f8e7d6
Images:          app=example.com/web:2
Replicas:        desired 4, current 4, updated 1, ready 3, available 3
"
        );
        assert!(text.starts_with(&expected), "got:\n{text}\nexpected start:\n{expected}");
        let tables = &text[expected.len()..];
        let lines: Vec<&str> = tables.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>()[..2],
            ["REPLICASET", "REVISION"]
        );
        // Newest revision first, with its tags and pod readiness.
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [&format!("web-{canary}"), "2", &canary, "1", "1", "1", "0/1", "canary"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [&format!("web-{stable}"), "1", &stable, "3", "3", "3", "3/3", "stable"]
        );
        assert!(
            tables.contains("web-canary-s3-0  Successful  10m  all metrics passed"),
            "{tables}"
        );
        // Events oldest first, so the newest is next to the prompt.
        let step = tables.find("StepCompleted").unwrap();
        let paused = tables.find("RolloutPaused").unwrap();
        assert!(step < paused, "{tables}");
        assert!(
            tables.contains("3m20s      Normal  StepCompleted  step 1/4 completed: setWeight 25%"),
            "{tables}"
        );
    }

    #[test]
    fn summary_of_a_canary_at_an_experiment_step_names_the_experiment_and_its_phase() {
        use crate::api::experiment::{ExperimentSpec, ExperimentStatus};
        let mut snapshot = paused_canary();
        snapshot
            .rollout
            .status
            .as_mut()
            .unwrap()
            .canary
            .get_or_insert_with(Default::default)
            .current_experiment = Some("web-abc-2-1".into());
        let mut experiment = Experiment::new("web-abc-2-1", ExperimentSpec::default());
        experiment.metadata.creation_timestamp = Some(time(600));
        experiment.status = Some(ExperimentStatus {
            phase: Some(AnalysisPhase::Running),
            message: Some("templates available".into()),
            ..ExperimentStatus::default()
        });
        snapshot.experiments = vec![experiment];
        let text = render(&snapshot, now());
        assert!(text.contains("  Experiment:    web-abc-2-1 (Running)\n"), "{text}");
        assert!(
            text.contains("web-abc-2-1  Running  10m  templates available"),
            "{text}"
        );
        snapshot.experiments.clear();
        let text = render(&snapshot, now());
        assert!(text.contains("  Experiment:    web-abc-2-1 (not found)\n"), "{text}");
        assert!(!text.contains("EXPERIMENT"), "{text}");
    }

    #[test]
    fn summary_of_a_steady_rollout_without_status_details() {
        let mut rollout = Rollout::example("api", 2, vec![]);
        let hash = current_hash(&rollout);
        rollout = rollout.with_status(RolloutStatus {
            phase: Some(RolloutPhase::Healthy),
            stable_rs: Some(hash.clone()),
            current_pod_hash: Some(hash.clone()),
            current_step_index: Some(0),
            ..RolloutStatus::default()
        });
        let text = render(&Snapshot::of(rollout), now());
        assert!(text.contains("Status:          Healthy\n"), "{text}");
        assert!(text.contains("  Step:          - (no steps"), "{text}");
        assert!(text.contains("  Set weight:    100\n"), "{text}");
        assert!(
            text.contains(&format!("Stable:          revision -, hash {hash}\n")),
            "{text}"
        );
        assert!(!text.contains("Canary:          "), "{text}");
        assert!(
            text.contains("No ReplicaSets yet.") && text.contains("No events."),
            "{text}"
        );
    }

    #[test]
    fn summary_before_the_controller_reports() {
        let text = render(&Snapshot::of(Rollout::example("web", 1, vec![])), now());
        assert!(
            text.contains("Status:          Unknown: the controller has not reported on it yet\n"),
            "{text}"
        );
        assert!(text.contains("  Step:          - (no steps"), "{text}");
        assert!(text.contains("  Set weight:    -\n"), "{text}");
    }

    #[test]
    fn summary_of_an_aborted_and_user_paused_rollout() {
        let mut snapshot = paused_canary();
        snapshot.rollout.spec.paused = Some(true);
        let status = snapshot.rollout.status.as_mut().unwrap();
        status.abort = Some(true);
        status.aborted_at = Some(now());
        status.pause_conditions.clear();
        let text = render(&snapshot, now());
        assert!(text.contains("Paused:          by `sluice pause`"), "{text}");
        assert!(
            text.contains("Aborted:         yes at 2025-03-01T12:00:00Z; `sluice retry`"),
            "{text}"
        );
        assert!(text.contains("  Set weight:    0\n"), "{text}");
    }

    #[test]
    fn only_the_newest_events_are_shown() {
        let mut snapshot = paused_canary();
        snapshot.events = (0..8).map(|i| event(i * 10, &format!("R{i}"), "m")).collect();
        let text = render(&snapshot, now());
        assert!(
            text.contains("R4") && text.contains("R0") && !text.contains("R5"),
            "{text}"
        );
        assert!(text.find("R4").unwrap() < text.find("R0").unwrap());
    }

    #[test]
    fn list_table() {
        let snapshot = paused_canary();
        let fresh = Rollout::example("new", 1, vec![]).with_namespace("shop");
        let text = render_list(&[snapshot.rollout, fresh], true, false, now());
        assert_eq!(
            text,
            "\
NAMESPACE  NAME  STATUS   STEP  SET-WEIGHT  READY  AGE
default    web   Paused   2/4   25          3/4    60m
shop       new   Unknown  -     -           0/1    -
"
        );
        assert!(render_list(&[], false, false, now()).starts_with("NAME  STATUS"));
    }

    #[test]
    fn step_column_counts_from_one_and_says_done() {
        let mut rollout = paused_canary().rollout;
        assert_eq!(step_column(&rollout), "2/4");
        rollout.status.as_mut().unwrap().current_step_index = Some(4);
        assert_eq!(step_column(&rollout), "done");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let ago = |s: i64| age(Some(now() - chrono::Duration::seconds(s)), now());
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(200), "3m20s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600 + 60), "3h1m");
        assert_eq!(ago(30 * 3600), "30h");
        assert_eq!(ago(3 * 86_400 + 3600), "3d1h");
        assert_eq!(ago(40 * 86_400), "40d");
        assert_eq!(ago(-5), "0s");
        assert_eq!(age(None, now()), "-");
    }
}
