//! The Experiment's decisions, pure: from the Experiment, what it owns and `now`, the actions to take
//! and the status to write. Lifecycle (Argo's): a ReplicaSet per template; Pending until every template
//! is available (Failed when one is not within progressDeadlineSeconds); then Running, `availableAt`
//! set and one AnalysisRun per analysis; Successful once the duration has passed and every
//! requiredForCompletion analysis succeeded; an analysis that ends Failed/Error/Inconclusive ends the
//! Experiment with that phase; `terminate` ends it Successful unless an analysis says otherwise. Once
//! ended, nothing is created or scaled up: unfinished runs are terminated, and after
//! scaleDownDelaySeconds the ReplicaSets go to 0 and the Services are deleted.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kube::ResourceExt;

use crate::api::analysis::AnalysisPhase;
use crate::api::conditions::{self, Condition, ConditionStatus, MAX_CONDITION_MESSAGE_BYTES};
use crate::api::experiment::{
    Experiment, ExperimentAnalysisRunStatus, ExperimentStatus, TemplateStatus, TemplateStatusCode,
};
use crate::api::keys::condition as types;
use crate::api::spec_error::{SpecError, summary};
use crate::bounds::truncate;

use super::names;
use super::validate::validate;

/// A ReplicaSet the Experiment owns, as the plan reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedReplicaSet {
    pub name: String,
    /// spec.replicas.
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    /// status.observedGeneration has caught up with metadata.generation.
    pub observed_current: bool,
}

/// An AnalysisRun the Experiment owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedRun {
    pub name: String,
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    /// spec.terminate is already set.
    pub terminating: bool,
}

/// What the reconciler observed.
pub struct Observed<'a> {
    pub experiment: &'a Experiment,
    pub replica_sets: &'a [ObservedReplicaSet],
    /// Names of the Services the Experiment owns.
    pub services: &'a [String],
    pub runs: &'a [ObservedRun],
    /// Problems found while reading what the spec references (a missing AnalysisTemplate, arguments
    /// that do not resolve), with their field paths.
    pub reference_errors: Vec<SpecError>,
    pub now: DateTime<Utc>,
}

/// One write against the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the ReplicaSet of `spec.templates[template]`.
    CreateReplicaSet {
        template: usize,
        name: String,
        hash: String,
        replicas: i32,
    },
    ScaleReplicaSet {
        name: String,
        replicas: i32,
    },
    /// Create the Service of `spec.templates[template]`, selecting the template's pods by hash.
    CreateService {
        template: usize,
        name: String,
        hash: String,
    },
    DeleteService {
        name: String,
    },
    /// Create the AnalysisRun of `spec.analyses[analysis]`.
    CreateAnalysisRun {
        analysis: usize,
        name: String,
    },
    TerminateAnalysisRun {
        name: String,
    },
}

/// An event to record on the Experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: ExperimentStatus,
    pub events: Vec<PlannedEvent>,
    /// When a timer (progress deadline, duration, scale-down delay) ends; None: wait for a change.
    pub requeue_after: Option<Duration>,
}

/// `at + seconds`, None when it does not fit (treated as never).
fn after(at: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    at.checked_add_signed(TimeDelta::try_seconds(seconds)?)
}

fn after_duration(at: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    at.checked_add_signed(TimeDelta::from_std(duration).ok()?)
}

/// When the Experiment was created (the progress deadline of a template not seen yet counts from it).
fn created_at(experiment: &Experiment) -> Option<DateTime<Utc>> {
    let time = experiment.metadata.creation_timestamp.as_ref()?;
    DateTime::parse_from_rfc3339(&time.0.to_string())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a template's ReplicaSet has every pod it asks for available.
fn is_available(rs: &ObservedReplicaSet, desired: i32) -> bool {
    rs.desired == desired && rs.observed_current && rs.available >= desired && rs.replicas <= desired.max(rs.available)
}

/// The phase an analysis verdict ends the Experiment with, the worst first.
fn analysis_verdict(runs: &[(String, Option<&ObservedRun>)]) -> Option<(AnalysisPhase, String)> {
    for worst in [AnalysisPhase::Failed, AnalysisPhase::Error, AnalysisPhase::Inconclusive] {
        for (analysis, run) in runs {
            if let Some(run) = run
                && run.phase == Some(worst)
            {
                let detail = run.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                return Some((worst, format!("analysis {analysis:?} ended {worst:?}{detail}")));
            }
        }
    }
    None
}

fn set_message(status: &mut ExperimentStatus, message: impl Into<String>) {
    status.message = Some(truncate(&message.into(), MAX_CONDITION_MESSAGE_BYTES).into_owned());
}

/// Keeps `requeue` at the earliest of the timers ending after `now`.
fn wake_at(requeue: &mut Option<Duration>, now: DateTime<Utc>, at: Option<DateTime<Utc>>) {
    let Some(at) = at else { return };
    // A timer already past: come back at once (a second, not zero, so a lagging cache settles).
    let wait = (at - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1));
    *requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
}

/// The plan for one Experiment.
pub fn plan(observed: &Observed<'_>) -> Plan {
    let experiment = observed.experiment;
    let spec = &experiment.spec;
    let now = observed.now;
    let name = experiment.name_any();
    let previous = experiment.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = experiment.metadata.generation;
    let mut actions = Vec::new();
    let mut events = Vec::new();
    let mut requeue_after = None;

    let mut errors = validate(experiment);
    errors.extend(observed.reference_errors.iter().cloned());
    let was_ended = previous.phase.is_some_and(AnalysisPhase::is_completed);

    // The phase.
    if !errors.is_empty() {
        let message = format!("invalid spec: {}", summary(&errors));
        let condition = Condition::new(
            types::INVALID_SPEC,
            ConditionStatus::True,
            "InvalidSpec",
            truncate(&message, MAX_CONDITION_MESSAGE_BYTES),
        )
        .observed(experiment.metadata.generation);
        if conditions::set_condition(&mut status.conditions, condition, now) {
            events.push(PlannedEvent {
                reason: "InvalidSpec",
                message: truncate(&message, MAX_CONDITION_MESSAGE_BYTES).into_owned(),
                warning: true,
            });
        }
        if !was_ended {
            status.phase = Some(AnalysisPhase::Error);
            set_message(&mut status, message);
        }
    } else {
        conditions::remove_condition(&mut status.conditions, types::INVALID_SPEC);
    }
    let valid = errors.is_empty();
    let desired_of = |i: usize| spec.templates.get(i).map_or(0, |t| t.replicas_or_default());

    // Per template: names, hash and availability (only for a valid spec: names of invalid templates
    // may not be valid object names).
    struct Template<'a> {
        name: String,
        rs_name: String,
        service: Option<String>,
        hash: String,
        rs: Option<&'a ObservedReplicaSet>,
        available: bool,
    }
    let templates: Vec<Template<'_>> = if valid {
        spec.templates
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let rs_name = names::replica_set_name(&name, &t.name);
                let rs = observed.replica_sets.iter().find(|rs| rs.name == rs_name);
                Template {
                    name: t.name.clone(),
                    available: rs.is_some_and(|rs| is_available(rs, desired_of(i))),
                    service: names::service_name(&name, t),
                    hash: names::template_hash(experiment, t),
                    rs_name,
                    rs,
                }
            })
            .collect()
    } else {
        vec![]
    };
    let run_names: Vec<(String, Option<&ObservedRun>)> = if valid {
        spec.analyses
            .iter()
            .map(|a| {
                let run_name = names::analysis_run_name(&name, a);
                let run = observed.runs.iter().find(|r| r.name == run_name);
                (a.name.clone(), run)
            })
            .collect()
    } else {
        vec![]
    };

    let mut failed_template: Option<usize> = None;
    if valid && !was_ended {
        let verdict = analysis_verdict(&run_names);
        if spec.is_terminated() {
            let (phase, message) = verdict.unwrap_or((AnalysisPhase::Successful, "terminated".to_string()));
            status.phase = Some(phase);
            set_message(&mut status, message);
        } else if let Some((phase, message)) = verdict {
            status.phase = Some(phase);
            set_message(&mut status, message);
        } else if status.available_at.is_none() {
            // Pending: wait for every template, each within its progress deadline.
            status.phase = Some(AnalysisPhase::Pending);
            let deadline = i64::from(spec.progress_deadline_seconds_or_default());
            for (i, t) in templates.iter().enumerate() {
                if t.available {
                    continue;
                }
                let since = previous
                    .template_statuses
                    .iter()
                    .find(|s| s.name == t.name)
                    .and_then(|s| s.last_transition_time)
                    .or(created_at(experiment))
                    .unwrap_or(now);
                let due = after(since, deadline);
                if due.is_some_and(|due| now >= due) {
                    failed_template = Some(i);
                    status.phase = Some(AnalysisPhase::Failed);
                    set_message(
                        &mut status,
                        format!("template {:?} did not become available within {deadline}s", t.name),
                    );
                    break;
                }
                wake_at(&mut requeue_after, now, due);
            }
            if status.phase == Some(AnalysisPhase::Pending) {
                if templates.iter().all(|t| t.available) {
                    status.available_at = Some(now);
                    status.phase = Some(AnalysisPhase::Running);
                    set_message(&mut status, "every template is available");
                } else {
                    set_message(&mut status, "waiting for every template to be available");
                }
            }
        } else {
            status.phase = Some(AnalysisPhase::Running);
        }
        // Running: has the duration passed, and have the required analyses succeeded?
        if status.phase == Some(AnalysisPhase::Running)
            && let Some(available_at) = status.available_at
        {
            let required: Vec<&(String, Option<&ObservedRun>)> = spec
                .analyses
                .iter()
                .zip(&run_names)
                .filter(|(a, _)| a.is_required_for_completion())
                .map(|(_, r)| r)
                .collect();
            let required_done = required
                .iter()
                .all(|(_, run)| run.is_some_and(|r| r.phase == Some(AnalysisPhase::Successful)));
            let duration = spec.duration().ok().flatten();
            let ends_at = duration.map(|d| after_duration(available_at, d));
            let duration_done = match ends_at {
                Some(Some(at)) => now >= at,
                // A duration too long to represent never ends.
                Some(None) => false,
                None => !required.is_empty(),
            };
            if duration_done && required_done {
                status.phase = Some(AnalysisPhase::Successful);
                let message = match &spec.duration {
                    Some(text) if duration.is_some() => format!("ran for {text}"),
                    _ => "every required analysis succeeded".to_string(),
                };
                set_message(&mut status, message);
            } else {
                if let Some(Some(at)) = ends_at {
                    wake_at(&mut requeue_after, now, Some(at));
                }
                set_message(&mut status, "running");
            }
        }
    }
    let ended = status.phase.is_some_and(AnalysisPhase::is_completed);
    if ended {
        let condition = Condition::new(types::COMPLETED, ConditionStatus::True, "Ended", "the Experiment ended")
            .observed(experiment.metadata.generation);
        conditions::set_condition(&mut status.conditions, condition, now);
    }
    if status.phase != previous.phase
        && let Some(phase) = status.phase
    {
        let warning = matches!(
            phase,
            AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
        );
        events.push(PlannedEvent {
            reason: match phase {
                AnalysisPhase::Pending => "ExperimentPending",
                AnalysisPhase::Running => "ExperimentRunning",
                AnalysisPhase::Successful => "ExperimentSuccessful",
                AnalysisPhase::Failed => "ExperimentFailed",
                AnalysisPhase::Error => "ExperimentError",
                AnalysisPhase::Inconclusive => "ExperimentInconclusive",
            },
            message: status.message.clone().unwrap_or_default(),
            warning,
        });
    }

    // Actions.
    let ended_at = conditions::find(&status.conditions, types::COMPLETED).and_then(|c| c.last_transition_time);
    if !ended {
        for (i, t) in templates.iter().enumerate() {
            let desired = desired_of(i);
            match t.rs {
                None => actions.push(Action::CreateReplicaSet {
                    template: i,
                    name: t.rs_name.clone(),
                    hash: t.hash.clone(),
                    replicas: desired,
                }),
                Some(rs) if rs.desired != desired => actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: desired,
                }),
                Some(_) => {}
            }
            if let Some(service) = &t.service
                && !observed.services.contains(service)
            {
                actions.push(Action::CreateService {
                    template: i,
                    name: service.clone(),
                    hash: t.hash.clone(),
                });
            }
        }
        if status.phase == Some(AnalysisPhase::Running) {
            for (i, (analysis, run)) in spec.analyses.iter().zip(&run_names).enumerate() {
                if run.1.is_none() {
                    actions.push(Action::CreateAnalysisRun {
                        analysis: i,
                        name: names::analysis_run_name(&name, analysis),
                    });
                }
            }
        }
    } else {
        for run in observed.runs {
            if !run.phase.is_some_and(AnalysisPhase::is_completed) && !run.terminating {
                actions.push(Action::TerminateAnalysisRun { name: run.name.clone() });
            }
        }
        let delay = i64::from(spec.scale_down_delay_seconds_or_default().max(0));
        // An invalid spec has no usable delay: scale down at once.
        let scale_down_at = if valid {
            after(ended_at.unwrap_or(now), delay)
        } else {
            Some(now)
        };
        let due = scale_down_at.is_some_and(|at| now >= at);
        let pending_work = observed.replica_sets.iter().any(|rs| rs.desired > 0) || !observed.services.is_empty();
        if due {
            for rs in observed.replica_sets.iter().filter(|rs| rs.desired > 0) {
                actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: 0,
                });
            }
            for service in observed.services {
                actions.push(Action::DeleteService { name: service.clone() });
            }
        } else if pending_work {
            wake_at(&mut requeue_after, now, scale_down_at);
        }
    }

    // Template statuses.
    status.template_statuses = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let before = previous.template_statuses.iter().find(|s| s.name == t.name);
            let code = if ended {
                if failed_template == Some(i) || before.is_some_and(|b| b.status == Some(TemplateStatusCode::Failed)) {
                    TemplateStatusCode::Failed
                } else {
                    TemplateStatusCode::Successful
                }
            } else if failed_template == Some(i) {
                TemplateStatusCode::Failed
            } else if t.rs.is_none() {
                TemplateStatusCode::Pending
            } else if t.available {
                TemplateStatusCode::Running
            } else {
                TemplateStatusCode::Progressing
            };
            // The progress deadline counts from the first time the template was seen; a later
            // transition (Progressing → Running) moves it.
            let last_transition_time = match before {
                Some(b) if b.status == Some(code) => b.last_transition_time.or(Some(now)),
                Some(b) if b.status == Some(TemplateStatusCode::Pending) && code == TemplateStatusCode::Progressing => {
                    b.last_transition_time.or(Some(now))
                }
                _ => Some(now),
            };
            let message = match code {
                TemplateStatusCode::Failed => Some(format!(
                    "not available within {}s",
                    spec.progress_deadline_seconds_or_default()
                )),
                _ => None,
            };
            TemplateStatus {
                name: t.name.clone(),
                replicas: t.rs.map_or(0, |rs| rs.replicas),
                updated_replicas: t.rs.map_or(0, |rs| rs.replicas),
                ready_replicas: t.rs.map_or(0, |rs| rs.ready),
                available_replicas: t.rs.map_or(0, |rs| rs.available),
                status: Some(code),
                message: message.or_else(|| before.and_then(|b| b.message.clone()).filter(|_| ended)),
                last_transition_time,
                replica_set_name: Some(t.rs_name.clone()),
                service_name: t.service.clone(),
                pod_template_hash: Some(t.hash.clone()),
            }
        })
        .collect();
    if !valid {
        status.template_statuses = previous.template_statuses.clone();
    }
    status.analysis_runs = if valid {
        spec.analyses
            .iter()
            .zip(&run_names)
            .map(|(a, (_, run))| {
                let run_name = names::analysis_run_name(&name, a);
                let created = run.is_some()
                    || actions
                        .iter()
                        .any(|act| matches!(act, Action::CreateAnalysisRun { name, .. } if *name == run_name));
                ExperimentAnalysisRunStatus {
                    name: a.name.clone(),
                    analysis_run: created.then_some(run_name),
                    phase: run.and_then(|r| r.phase).or(created.then_some(AnalysisPhase::Pending)),
                    message: run
                        .and_then(|r| r.message.as_deref())
                        .map(|m| truncate(m, MAX_CONDITION_MESSAGE_BYTES).into_owned()),
                }
            })
            .collect()
    } else {
        previous.analysis_runs.clone()
    };

    Plan {
        actions,
        status,
        events,
        requeue_after,
    }
}

#[cfg(test)]
mod tests;
