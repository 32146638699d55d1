//! Rollout phase and conditions, in the order docs/analysis-verdicts.md ("The Rollout's phase and
//! conditions") gives them (Degraded, Paused, Progressing, Healthy), with Argo's condition types plus
//! kstatus Ready/Reconciling/Stalled so Argo CD and Flux health checks work unmodified. Also the
//! progress deadline, measured from the last progress.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::conditions::{
    self, AVAILABLE, COMPLETED, Condition, ConditionStatus, HEALTHY, INVALID_SPEC, PAUSED, PROGRESSING, READY,
    RECONCILING, STALLED, STRATEGY_DEFAULTED,
};
use crate::api::rollout::{PauseReason, RolloutPhase, RolloutStatus};

/// What the plan saw, summarised for the phase rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub replicas: i32,
    /// Available pods of the current template.
    pub updated_available: i32,
    pub stable_is_current: bool,
    /// Every ReplicaSet at its final size (current at replicas, the others at zero).
    pub all_replica_sets_settled: bool,
    pub step: usize,
    pub steps: usize,
    /// spec.paused
    pub paused: bool,
    pub max_unavailable: i32,
    /// The current step is an analysis and every ReplicaSet has the pods it asks for, all available:
    /// the rollout waits for a verdict, not for pods, so the progress deadline (which measures pods
    /// failing to come up) does not run — an analysis longer than progressDeadlineSeconds is normal.
    pub awaiting_analysis: bool,
}

/// What `conclude` found about the deadline.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Look again then: the deadline passes if nothing progresses before.
    pub check_deadline_in: Option<Duration>,
    /// The deadline passed in this reconcile (the first time).
    pub deadline_exceeded_now: bool,
}

const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
const ABORTED: &str = "RolloutAborted: ";

/// Reports a `spec.strategy` that names no strategy: every new template is then promoted at once (a
/// canary without steps), which a user who wrote a strategy this version does not know — pruned by
/// the API server on its way in — should learn from the status, not from an outage.
pub fn report_strategy(status: &mut RolloutStatus, names_a_strategy: bool, now: DateTime<Utc>) {
    if names_a_strategy {
        conditions::remove_condition(&mut status.conditions, STRATEGY_DEFAULTED);
    } else {
        let message = "spec.strategy names no strategy: each new template is promoted at once, as a canary \
                       without steps; set spec.strategy.canary or spec.strategy.blueGreen";
        set(
            status,
            Condition::new(STRATEGY_DEFAULTED, true, "EmptyStrategy", message),
            now,
        );
    }
}

/// An invalid spec: Degraded with the reasons, nothing else changes.
pub fn mark_invalid(status: &mut RolloutStatus, message: &str, now: DateTime<Utc>) {
    set(status, Condition::new(INVALID_SPEC, true, "InvalidSpec", message), now);
    set(status, Condition::new(READY, false, "InvalidSpec", message), now);
    set(
        status,
        Condition::new(RECONCILING, false, "InvalidSpec", "the spec must be fixed"),
        now,
    );
    set(status, Condition::new(STALLED, true, "InvalidSpec", message), now);
    set(status, Condition::new(HEALTHY, false, "InvalidSpec", message), now);
    status.phase = Some(RolloutPhase::Degraded);
    status.message = Some(format!("InvalidSpec: {message}"));
}

/// Sets phase, message and conditions from the planned status and what was observed.
pub fn conclude(status: &mut RolloutStatus, progress: &Progress, deadline: Duration, now: DateTime<Utc>) -> Outcome {
    conditions::remove_condition(&mut status.conditions, INVALID_SPEC);
    let aborted = status.is_aborted();
    let paused = progress.paused || !status.pause_conditions.is_empty();
    let complete = progress.stable_is_current
        && progress.updated_available >= progress.replicas
        && progress.all_replica_sets_settled;
    let fingerprint = fingerprint(progress);
    let in_progress = !complete && !paused && !aborted && !progress.awaiting_analysis;
    let (exceeded, outcome) = if in_progress {
        let previous = conditions::find(&status.conditions, PROGRESSING);
        watch_deadline(previous, &fingerprint, deadline, now)
    } else {
        (false, Outcome::default())
    };
    let state = State {
        aborted,
        paused,
        complete,
        exceeded,
    };
    let (progressing, reason) = state.progressing();
    set(
        status,
        Condition::new(PROGRESSING, progressing, reason, fingerprint.clone()),
        now,
    );
    let phase = state.phase();
    let message = phase_message(status, progress, &state, phase, deadline, fingerprint);
    status.phase = Some(phase);
    status.message = (!message.is_empty()).then_some(message.clone());
    set_progress_conditions(status, progress, &state, now);
    set_phase_conditions(status, phase, message, now);
    outcome
}

/// What `conclude` decided about the rollout, before it is written as phase and conditions.
struct State {
    aborted: bool,
    /// By spec.paused or by a pause condition.
    paused: bool,
    /// The current revision is stable, fully available and alone.
    complete: bool,
    /// The progress deadline passed (now or before).
    exceeded: bool,
}

impl State {
    /// The Progressing condition's status and reason.
    fn progressing(&self) -> (ConditionStatus, &'static str) {
        if self.exceeded {
            (ConditionStatus::False, DEADLINE_EXCEEDED)
        } else if self.aborted {
            (ConditionStatus::False, "RolloutAborted")
        } else if self.paused {
            (ConditionStatus::Unknown, "RolloutPaused")
        } else if self.complete {
            (ConditionStatus::True, "NewReplicaSetAvailable")
        } else {
            (ConditionStatus::True, "ReplicaSetUpdated")
        }
    }

    fn phase(&self) -> RolloutPhase {
        if self.aborted || self.exceeded {
            RolloutPhase::Degraded
        } else if self.paused {
            RolloutPhase::Paused
        } else if !self.complete {
            RolloutPhase::Progressing
        } else {
            RolloutPhase::Healthy
        }
    }
}

/// Sets a condition, observed at the status's generation.
fn set(status: &mut RolloutStatus, condition: Condition, now: DateTime<Utc>) {
    let generation = status.observed_generation;
    conditions::set_condition(&mut status.conditions, condition.observed(generation), now);
}

/// The progress as the Progressing condition's message: any change in it is progress.
fn fingerprint(progress: &Progress) -> String {
    format!(
        "step {}/{}: {} of {} pods of the current revision available{}",
        progress.step,
        progress.steps,
        progress.updated_available,
        progress.replicas,
        if progress.all_replica_sets_settled {
            ""
        } else {
            ", ReplicaSets scaling"
        }
    )
}

/// For a rollout in progress: whether the deadline has passed since the last progress (the
/// `previous` Progressing condition with the same fingerprint), and when to look again if not.
fn watch_deadline(
    previous: Option<&Condition>,
    fingerprint: &str,
    deadline: Duration,
    now: DateTime<Utc>,
) -> (bool, Outcome) {
    let mut outcome = Outcome::default();
    let same_progress = previous.is_some_and(|c| c.message.as_deref() == Some(fingerprint));
    let already_exceeded = same_progress && previous.and_then(|c| c.reason.as_deref()) == Some(DEADLINE_EXCEEDED);
    let since = previous
        .filter(|_| same_progress)
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    let elapsed = (now - since).to_std().unwrap_or_default();
    let exceeded = already_exceeded || elapsed >= deadline;
    if exceeded {
        outcome.deadline_exceeded_now = !already_exceeded;
    } else {
        outcome.check_deadline_in = Some(deadline - elapsed);
    }
    (exceeded, outcome)
}

/// status.message for `phase`.
fn phase_message(
    status: &RolloutStatus,
    progress: &Progress,
    state: &State,
    phase: RolloutPhase,
    deadline: Duration,
    fingerprint: String,
) -> String {
    match phase {
        RolloutPhase::Degraded if state.exceeded && !state.aborted => {
            format!(
                "ProgressDeadlineExceeded: no progress for {}s ({fingerprint})",
                deadline.as_secs()
            )
        }
        RolloutPhase::Degraded => match status.message.clone() {
            // The reason was recorded when the rollout aborted; keep it for as long as it stays aborted.
            Some(message) if message.starts_with(ABORTED) => message,
            Some(why) if !why.is_empty() => format!("{ABORTED}{why}"),
            _ => format!("{ABORTED}aborted; traffic is back on stable"),
        },
        RolloutPhase::Paused => pause_message(status, progress),
        RolloutPhase::Progressing => fingerprint,
        RolloutPhase::Healthy => String::new(),
    }
}

/// Available, Paused and Completed.
fn set_progress_conditions(status: &mut RolloutStatus, progress: &Progress, state: &State, now: DateTime<Utc>) {
    let available = status.available_replicas.unwrap_or(0) >= progress.replicas - progress.max_unavailable;
    set(
        status,
        Condition::new(
            AVAILABLE,
            available,
            if available {
                "AvailableReplicas"
            } else {
                "NotEnoughReplicas"
            },
            "",
        ),
        now,
    );
    let blue_green_pause = status
        .pause_conditions
        .iter()
        .any(|c| c.reason == PauseReason::BlueGreenPause);
    let pause_reason = if progress.paused {
        "PausedBySpec"
    } else if blue_green_pause {
        "BlueGreenPause"
    } else {
        "CanaryPauseStep"
    };
    match state.paused {
        true => set(status, Condition::new(PAUSED, true, pause_reason, ""), now),
        false => {
            conditions::remove_condition(&mut status.conditions, PAUSED);
        }
    }
    set(
        status,
        Condition::new(
            COMPLETED,
            state.complete,
            if state.complete {
                "RolloutCompleted"
            } else {
                "RolloutNotCompleted"
            },
            "",
        ),
        now,
    );
}

/// Healthy, and kstatus: Ready when Healthy; Reconciling while moving or paused; Stalled when Degraded.
fn set_phase_conditions(status: &mut RolloutStatus, phase: RolloutPhase, message: String, now: DateTime<Utc>) {
    let healthy = phase == RolloutPhase::Healthy;
    set(
        status,
        Condition::new(HEALTHY, healthy, phase_reason(phase), message.clone()),
        now,
    );
    set(
        status,
        Condition::new(READY, healthy, phase_reason(phase), message.clone()),
        now,
    );
    let reconciling = matches!(phase, RolloutPhase::Progressing | RolloutPhase::Paused);
    set(
        status,
        Condition::new(
            RECONCILING,
            reconciling,
            phase_reason(phase),
            if reconciling { message.clone() } else { String::new() },
        ),
        now,
    );
    let stalled = phase == RolloutPhase::Degraded;
    set(
        status,
        Condition::new(
            STALLED,
            stalled,
            phase_reason(phase),
            if stalled { message } else { String::new() },
        ),
        now,
    );
}

/// Whether `new` differs from `old` only in pod counts (replicas, updated, ready, available) and the
/// progress messages that quote them. Such a change may wait briefly to be written with the next one;
/// a change of phase, step, weights, revisions, abort, pauses or any condition's status or reason may not.
pub fn only_counts_changed(old: &RolloutStatus, new: &RolloutStatus) -> bool {
    old != new && without_counts(old) == without_counts(new)
}

fn without_counts(status: &RolloutStatus) -> RolloutStatus {
    let mut status = status.clone();
    status.replicas = None;
    status.updated_replicas = None;
    status.ready_replicas = None;
    status.available_replicas = None;
    if status.phase == Some(RolloutPhase::Progressing) {
        // "step 2/5: 3 of 4 pods of the current revision available" (the step is compared by index).
        status.message = None;
    }
    for condition in &mut status.conditions {
        // Messages repeat status.message or the progress counts; last_update_time follows them.
        condition.message = None;
        condition.last_update_time = None;
    }
    status
}

fn phase_reason(phase: RolloutPhase) -> &'static str {
    match phase {
        RolloutPhase::Healthy => "Healthy",
        RolloutPhase::Progressing => "Progressing",
        RolloutPhase::Paused => "Paused",
        RolloutPhase::Degraded => "Degraded",
    }
}

fn pause_message(status: &RolloutStatus, progress: &Progress) -> String {
    if progress.paused {
        return "paused by spec.paused".into();
    }
    let reasons: Vec<&str> = status
        .pause_conditions
        .iter()
        .map(|c| match c.reason {
            PauseReason::CanaryPauseStep => "CanaryPauseStep",
            PauseReason::InconclusiveAnalysisRun => "InconclusiveAnalysisRun",
            PauseReason::BlueGreenPause => "BlueGreenPause",
        })
        .collect();
    if progress.steps == 0 {
        // Blue-green (or a canary without steps): there is no step to name.
        return format!("paused ({})", reasons.join(", "));
    }
    format!(
        "paused at step {}/{} ({})",
        progress.step + 1,
        progress.steps,
        reasons.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn progress(step: usize, updated_available: i32) -> Progress {
        Progress {
            replicas: 4,
            updated_available,
            stable_is_current: false,
            all_replica_sets_settled: false,
            step,
            steps: 5,
            paused: false,
            max_unavailable: 1,
            awaiting_analysis: false,
        }
    }

    fn concluded(old: &RolloutStatus, progress: &Progress, available: i32, seconds: i64) -> RolloutStatus {
        let mut status = old.clone();
        status.available_replicas = Some(available);
        status.ready_replicas = Some(available);
        status.replicas = Some(5);
        conclude(
            &mut status,
            progress,
            Duration::from_secs(600),
            Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap(),
        );
        status
    }

    #[test]
    fn pods_coming_up_change_only_counts_but_a_step_or_a_condition_does_not() {
        let first = concluded(&RolloutStatus::default(), &progress(1, 0), 4, 0);
        assert!(!only_counts_changed(&first, &first), "no change at all");
        let pod_up = concluded(&first, &progress(1, 1), 5, 1);
        assert_ne!(first, pod_up);
        assert!(
            only_counts_changed(&first, &pod_up),
            "a canary pod became available: counts and the progress message"
        );
        let mut next_step = pod_up.clone();
        next_step.current_step_index = Some(2);
        assert!(!only_counts_changed(&pod_up, &next_step), "the step index");
        let unavailable = concluded(&pod_up, &progress(1, 1), 2, 2);
        assert!(
            !only_counts_changed(&pod_up, &unavailable),
            "Available turned False: written at once"
        );
        let paused = concluded(
            &pod_up,
            &Progress {
                paused: true,
                ..progress(1, 1)
            },
            4,
            2,
        );
        assert!(!only_counts_changed(&pod_up, &paused), "phase Paused");
    }
}
