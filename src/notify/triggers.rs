//! Which built-in triggers fire for an object, from its previous-known and current status — pure.
//!
//! A trigger fires for a *state* (this revision's canary aborted at T, step 2 of revision H completed,
//! commit C blocked), named by a dedup key. The key, not the transition, decides whether to send: what
//! was sent is recorded on the object (`notifications.sluice.dev/sent`), so seeing the same status again
//! — a resync, a restart, a second controller — never sends again, and a state the controller never saw
//! change (it was down) still fires once. The previous status only widens what is looked at: the steps
//! completed between two observations, the commits blocked since the last one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::api::analysis::{AnalysisPhase, AnalysisRunStatus};
use crate::api::gitsync::GitSyncStatus;
use crate::api::rollout::{AbortReason, RolloutPhase, RolloutStatus};

/// The built-in triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Trigger {
    RolloutStepCompleted,
    RolloutPaused,
    RolloutCompleted,
    RolloutAborted,
    AnalysisRunFailed,
    GitSyncBlocked,
    GitSyncReverted,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::RolloutStepCompleted,
        Trigger::RolloutPaused,
        Trigger::RolloutCompleted,
        Trigger::RolloutAborted,
        Trigger::AnalysisRunFailed,
        Trigger::GitSyncBlocked,
        Trigger::GitSyncReverted,
    ];

    /// The name used in subscription annotations (Argo's names where Argo has the trigger).
    pub fn name(self) -> &'static str {
        match self {
            Trigger::RolloutStepCompleted => "on-rollout-step-completed",
            Trigger::RolloutPaused => "on-rollout-paused",
            Trigger::RolloutCompleted => "on-rollout-completed",
            Trigger::RolloutAborted => "on-rollout-aborted",
            Trigger::AnalysisRunFailed => "on-analysis-run-failed",
            Trigger::GitSyncBlocked => "on-gitsync-blocked",
            Trigger::GitSyncReverted => "on-gitsync-reverted",
        }
    }

    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The name of its template entry (`template.<name>`): the trigger's name without `on-`, as
    /// Argo's catalog names the template each trigger sends.
    pub fn template_name(self) -> &'static str {
        &self.name()[3..]
    }

    /// The message sent when the ConfigMap has no template for the trigger.
    pub fn default_message(self) -> &'static str {
        match self {
            Trigger::RolloutStepCompleted => {
                "Rollout {{.object.namespace}}/{{.object.name}}: step {{.detail}} completed (revision {{.revision}})."
            }
            Trigger::RolloutPaused => {
                "Rollout {{.object.namespace}}/{{.object.name}} is paused: {{.detail}} (revision {{.revision}})."
            }
            Trigger::RolloutCompleted => {
                "Rollout {{.object.namespace}}/{{.object.name}} completed: revision {{.revision}} is stable."
            }
            Trigger::RolloutAborted => {
                "Rollout {{.object.namespace}}/{{.object.name}} was aborted: {{.detail}} (revision {{.revision}})."
            }
            Trigger::AnalysisRunFailed => {
                "Analysis of {{.object.kind}} {{.object.namespace}}/{{.object.name}} failed: {{.detail}}."
            }
            Trigger::GitSyncBlocked => {
                "GitSync {{.object.namespace}}/{{.object.name}} blocked commit {{.revision}}: {{.detail}}."
            }
            Trigger::GitSyncReverted => {
                "GitSync {{.object.namespace}}/{{.object.name}} reverted commit {{.revision}} in Git: {{.detail}}."
            }
        }
    }

    /// The kind of object it fires on.
    pub fn applies_to(self, kind: ObjectKind) -> bool {
        match self {
            Trigger::RolloutStepCompleted
            | Trigger::RolloutPaused
            | Trigger::RolloutCompleted
            | Trigger::RolloutAborted => kind == ObjectKind::Rollout,
            Trigger::AnalysisRunFailed => matches!(kind, ObjectKind::Rollout | ObjectKind::AnalysisRun),
            Trigger::GitSyncBlocked | Trigger::GitSyncReverted => kind == ObjectKind::GitSync,
        }
    }
}

/// The kinds that can subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Rollout,
    GitSync,
    AnalysisRun,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Rollout => "Rollout",
            ObjectKind::GitSync => "GitSync",
            ObjectKind::AnalysisRun => "AnalysisRun",
        }
    }
}

/// A trigger that fires, with the key that makes it send at most once per object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Firing {
    pub trigger: Trigger,
    /// `<trigger>:<revision>[:<instance>]`; unique per state, stable across observations.
    pub key: String,
    /// The revision it is about: a pod template hash, a commit, or the run's name.
    pub revision: String,
    /// A short human text (which step, why it aborted, …), for the message.
    pub detail: String,
}

/// Longest revision text kept in a key (hashes and commit SHAs are far shorter; status is hostile).
const MAX_REVISION_CHARS: usize = 64;
/// Most step completions one observation reports (a jump over more reports the latest).
const MAX_STEPS_PER_OBSERVATION: i64 = 16;
/// Most blocked/reverted commits one observation reports.
const MAX_COMMITS_PER_OBSERVATION: usize = 8;

fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REVISION_CHARS)
        .collect()
}

fn firing(trigger: Trigger, revision: &str, instance: Option<&str>, detail: String) -> Firing {
    let revision = bounded(revision);
    let key = match instance {
        Some(instance) => format!("{}:{revision}:{}", trigger.name(), bounded(instance)),
        None => format!("{}:{revision}", trigger.name()),
    };
    Firing {
        trigger,
        key,
        revision,
        detail: super::template::truncate(&detail, 512),
    }
}

/// A Rollout's firings. Nothing fires before the controller has recorded the revision it works on.
pub fn rollout_firings(previous: Option<&RolloutStatus>, current: &RolloutStatus) -> Vec<Firing> {
    let Some(hash) = current.current_pod_hash.as_deref().filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let aborted = current.is_aborted();
    // Step completions: every step between the previously seen index and the current one (same
    // revision and steps), else only the one just behind the current index.
    let index = i64::from(current.current_step_index.unwrap_or(0)).clamp(0, 100_000);
    if !aborted && index > 0 {
        let from = previous
            .filter(|p| p.current_pod_hash.as_deref() == Some(hash) && p.current_step_hash == current.current_step_hash)
            .map(|p| i64::from(p.current_step_index.unwrap_or(0)).clamp(0, index))
            .unwrap_or(index - 1)
            .max(index - MAX_STEPS_PER_OBSERVATION);
        for step in from..index {
            out.push(firing(
                Trigger::RolloutStepCompleted,
                hash,
                Some(&step.to_string()),
                step.to_string(),
            ));
        }
    }
    if current.phase == Some(RolloutPhase::Paused) && !aborted {
        // One pause per start time (a pause step, an inconclusive analysis, a human's pause).
        let pause = current.pause_conditions.iter().min_by_key(|c| c.start_time);
        let instance = match pause {
            Some(p) => format!("{}@{}", index, p.start_time.timestamp()),
            None => index.to_string(),
        };
        let detail = match pause {
            Some(p) => format!("{:?} at step {index}", p.reason),
            None => format!("paused at step {index}"),
        };
        out.push(firing(Trigger::RolloutPaused, hash, Some(&instance), detail));
    }
    if current.phase == Some(RolloutPhase::Healthy) && current.stable_rs.as_deref() == Some(hash) && !aborted {
        out.push(firing(Trigger::RolloutCompleted, hash, None, "healthy".into()));
    }
    // Aborted once the controller has acted on it (abortedAt set): `sluice abort` sets status.abort
    // alone first. Each abort is its own instance: a retry that aborts again notifies again.
    if let (true, Some(aborted_at)) = (aborted, current.aborted_at) {
        let instance = aborted_at.timestamp().to_string();
        let reason = match current.abort_reason {
            Some(AbortReason::AnalysisFailed) => "analysis failed",
            Some(AbortReason::ProgressDeadlineExceeded) => "progress deadline exceeded",
            Some(AbortReason::Requested) => "abort requested",
            None => "aborted",
        };
        let detail = match current.message.as_deref().filter(|m| !m.is_empty()) {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_string(),
        };
        out.push(firing(Trigger::RolloutAborted, hash, Some(&instance), detail.clone()));
        if current.abort_reason == Some(AbortReason::AnalysisFailed) {
            out.push(firing(Trigger::AnalysisRunFailed, hash, Some(&instance), detail));
        }
    }
    out
}

/// An AnalysisRun's firing: once, when it ends Failed or Error (the run is the instance).
pub fn analysis_run_firings(name: &str, current: &AnalysisRunStatus) -> Vec<Firing> {
    match current.phase {
        Some(phase @ (AnalysisPhase::Failed | AnalysisPhase::Error)) => {
            let detail = match current.message.as_deref().filter(|m| !m.is_empty()) {
                Some(message) => format!("{phase:?}: {message}"),
                None => format!("{phase:?}"),
            };
            vec![firing(Trigger::AnalysisRunFailed, name, None, detail)]
        }
        _ => Vec::new(),
    }
}

/// A GitSync's firings: commits newly blocked, and newly reverted in Git. With no previous status only
/// the latest of each is looked at, so a first observation of a long block list sends one message, not
/// dozens (and a record bounded in size cannot make old ones send again).
pub fn gitsync_firings(previous: Option<&GitSyncStatus>, current: &GitSyncStatus) -> Vec<Firing> {
    let mut out = Vec::new();
    let mut by_time: Vec<_> = current.blocked_revisions.iter().collect();
    by_time.sort_by_key(|b| b.blocked_at);
    let newest_first = by_time.iter().rev();
    let blocked: Vec<_> = match previous {
        Some(p) => {
            let known: BTreeSet<&str> = p.blocked_revisions.iter().map(|b| b.revision.as_str()).collect();
            newest_first
                .clone()
                .filter(|b| !known.contains(b.revision.as_str()))
                .take(MAX_COMMITS_PER_OBSERVATION)
                .collect()
        }
        None => newest_first.clone().take(1).collect(),
    };
    for b in blocked.into_iter().rev() {
        out.push(firing(Trigger::GitSyncBlocked, &b.revision, None, b.reason.clone()));
    }
    let reverted: Vec<_> = match previous {
        Some(p) => {
            let known: BTreeSet<&str> = p
                .blocked_revisions
                .iter()
                .filter(|b| b.revert_commit.is_some())
                .map(|b| b.revision.as_str())
                .collect();
            newest_first
                .clone()
                .filter(|b| b.revert_commit.is_some() && !known.contains(b.revision.as_str()))
                .take(MAX_COMMITS_PER_OBSERVATION)
                .collect()
        }
        None => newest_first.filter(|b| b.revert_commit.is_some()).take(1).collect(),
    };
    for b in reverted.into_iter().rev() {
        let commit = b.revert_commit.as_deref().unwrap_or_default();
        out.push(firing(
            Trigger::GitSyncReverted,
            &b.revision,
            None,
            format!("revert commit {}", bounded(commit)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gitsync::BlockedRevision;
    use crate::api::rollout::{PauseCondition, PauseReason};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn at(seconds: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    fn rollout(hash: &str, step: i32, phase: RolloutPhase) -> RolloutStatus {
        RolloutStatus {
            current_pod_hash: Some(hash.into()),
            current_step_index: Some(step),
            current_step_hash: Some("steps".into()),
            phase: Some(phase),
            stable_rs: Some("old".into()),
            ..Default::default()
        }
    }

    fn keys(firings: &[Firing]) -> Vec<&str> {
        firings.iter().map(|f| f.key.as_str()).collect()
    }

    #[test]
    fn every_trigger_name_parses_back_and_names_its_template() {
        for trigger in Trigger::ALL {
            assert_eq!(Trigger::parse(trigger.name()), Some(trigger));
            assert!(!trigger.template_name().starts_with("on-"));
        }
        assert_eq!(Trigger::RolloutAborted.template_name(), "rollout-aborted");
        assert_eq!(Trigger::parse("on-deployed"), None);
    }

    #[test]
    fn steps_completed_between_two_observations_all_fire() {
        let before = rollout("h1", 1, RolloutPhase::Progressing);
        let after = rollout("h1", 4, RolloutPhase::Progressing);
        assert_eq!(
            keys(&rollout_firings(Some(&before), &after)),
            [
                "on-rollout-step-completed:h1:1",
                "on-rollout-step-completed:h1:2",
                "on-rollout-step-completed:h1:3"
            ]
        );
        assert_eq!(
            keys(&rollout_firings(None, &after)),
            ["on-rollout-step-completed:h1:3"],
            "with no history only the step just done"
        );
        let new_revision = rollout("h2", 1, RolloutPhase::Progressing);
        assert_eq!(
            keys(&rollout_firings(Some(&after), &new_revision)),
            ["on-rollout-step-completed:h2:0"]
        );
    }

    #[test]
    fn an_abort_fires_aborted_and_for_analysis_also_analysis_failed_each_abort_its_own_key() {
        let mut status = rollout("h1", 1, RolloutPhase::Degraded);
        status.abort = Some(true);
        status.aborted_at = Some(at(10));
        status.abort_reason = Some(AbortReason::AnalysisFailed);
        status.message = Some("error-rate Failed".into());
        let firings = rollout_firings(None, &status);
        assert_eq!(
            keys(&firings),
            [
                "on-rollout-aborted:h1:1700000010",
                "on-analysis-run-failed:h1:1700000010"
            ]
        );
        assert_eq!(firings[0].detail, "analysis failed: error-rate Failed");
        status.aborted_at = Some(at(99));
        status.abort_reason = Some(AbortReason::Requested);
        assert_eq!(
            keys(&rollout_firings(None, &status)),
            ["on-rollout-aborted:h1:1700000099"]
        );
    }

    #[test]
    fn an_abort_fires_once_the_controller_has_acted_on_it() {
        let mut requested = rollout("h1", 1, RolloutPhase::Paused);
        requested.abort = Some(true);
        assert!(
            !keys(&rollout_firings(None, &requested))
                .iter()
                .any(|k| k.starts_with("on-rollout-aborted")),
            "status.abort alone is a request, not yet an abort"
        );
        requested.aborted_at = Some(at(3));
        assert!(keys(&rollout_firings(None, &requested)).contains(&"on-rollout-aborted:h1:1700000003"));
    }

    #[test]
    fn paused_and_completed_fire_on_their_phase() {
        let mut paused = rollout("h1", 2, RolloutPhase::Paused);
        paused.pause_conditions = vec![PauseCondition {
            reason: PauseReason::CanaryPauseStep,
            start_time: at(5),
        }];
        assert_eq!(
            keys(&rollout_firings(None, &paused))[1],
            "on-rollout-paused:h1:2@1700000005"
        );
        let mut done = rollout("h1", 3, RolloutPhase::Healthy);
        done.stable_rs = Some("h1".into());
        assert!(keys(&rollout_firings(None, &done)).contains(&"on-rollout-completed:h1"));
        let unreconciled = RolloutStatus::default();
        assert!(rollout_firings(None, &unreconciled).is_empty());
    }

    #[test]
    fn hostile_status_values_are_bounded() {
        let mut status = rollout(&"x".repeat(10_000), i32::MAX, RolloutPhase::Progressing);
        status.current_step_index = Some(i32::MAX);
        let firings = rollout_firings(
            Some(&rollout(&"x".repeat(10_000), -5, RolloutPhase::Progressing)),
            &status,
        );
        assert_eq!(firings.len(), MAX_STEPS_PER_OBSERVATION as usize);
        assert!(firings.iter().all(|f| f.key.len() < 200));
    }

    fn blocked(revision: &str, seconds: i64, reverted: bool) -> BlockedRevision {
        BlockedRevision {
            revision: revision.into(),
            reason: format!("{revision} failed"),
            blocked_at: at(seconds),
            revert_commit: reverted.then(|| format!("revert-of-{revision}")),
            revert_message: None,
        }
    }

    #[test]
    fn gitsync_fires_for_new_blocks_and_reverts() {
        let before = GitSyncStatus {
            blocked_revisions: vec![blocked("a", 1, false)],
            ..Default::default()
        };
        let after = GitSyncStatus {
            blocked_revisions: vec![blocked("a", 1, true), blocked("b", 2, false), blocked("c", 3, false)],
            ..Default::default()
        };
        assert_eq!(
            keys(&gitsync_firings(Some(&before), &after)),
            ["on-gitsync-blocked:b", "on-gitsync-blocked:c", "on-gitsync-reverted:a"]
        );
        assert_eq!(
            keys(&gitsync_firings(None, &after)),
            ["on-gitsync-blocked:c", "on-gitsync-reverted:a"]
        );
    }

    #[test]
    fn a_failed_or_errored_run_fires_once_per_run() {
        let mut status = AnalysisRunStatus {
            phase: Some(AnalysisPhase::Running),
            ..Default::default()
        };
        assert!(analysis_run_firings("run-1", &status).is_empty());
        status.phase = Some(AnalysisPhase::Error);
        assert_eq!(
            keys(&analysis_run_firings("run-1", &status)),
            ["on-analysis-run-failed:run-1"]
        );
    }

    /// One step of a rollout's life, for the property tests.
    #[derive(Clone, Debug)]
    enum Event {
        Advance,
        Pause,
        /// `sluice abort`: status.abort set, the controller has not acted yet.
        RequestAbort,
        /// The controller aborts (abortedAt set).
        Abort,
        Retry,
        Complete,
        NewRevision,
        /// The controller sees nothing new (a resync, a restart with the record intact).
        Same,
        /// The notifier restarts: it forgets the previous status (the record on the object stays).
        Restart,
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(Event::Advance),
                1 => Just(Event::Pause),
                1 => Just(Event::RequestAbort),
                1 => Just(Event::Abort),
                1 => Just(Event::Retry),
                1 => Just(Event::Complete),
                1 => Just(Event::NewRevision),
                2 => Just(Event::Same),
                1 => Just(Event::Restart),
            ],
            1..40,
        )
    }

    proptest! {
        /// Whatever the order of events and restarts: the same status seen twice never sends twice, and
        /// every step completion and every abort the notifier observed (index moved forward within a
        /// revision while it watched; each distinct abort) sends exactly once.
        #[test]
        fn every_state_sends_once_and_repeats_send_nothing(events in events()) {
            let mut status = rollout("r0", 0, RolloutPhase::Progressing);
            let mut revision = 0;
            let mut clock = 0;
            let mut previous: Option<RolloutStatus> = None;
            let mut sent: BTreeSet<String> = BTreeSet::new();
            let mut expected_aborts = BTreeSet::new();
            // Whether the controller has acted on the current abort (set abortedAt).
            let mut acted = false;
            let mut expected_steps = BTreeSet::new();
            for event in events {
                clock += 1;
                match event {
                    Event::Advance if !status.is_aborted() => {
                        let index = status.current_step_index.unwrap_or(0);
                        expected_steps.insert(format!("on-rollout-step-completed:r{revision}:{index}"));
                        status.current_step_index = Some(index + 1);
                        status.phase = Some(RolloutPhase::Progressing);
                        status.pause_conditions.clear();
                    }
                    Event::Pause if !status.is_aborted() => {
                        status.phase = Some(RolloutPhase::Paused);
                        status.pause_conditions = vec![PauseCondition { reason: PauseReason::CanaryPauseStep, start_time: at(clock) }];
                    }
                    Event::Abort if !acted => {
                        acted = true;
                        status.abort = Some(true);
                        status.aborted_at = Some(at(clock));
                        status.phase = Some(RolloutPhase::Degraded);
                        expected_aborts.insert(format!("on-rollout-aborted:r{revision}:{}", at(clock).timestamp()));
                    }
                    Event::RequestAbort => status.abort = Some(true),
                    Event::Retry => {
                        // As the controller reads a retry: abort cleared, abortedAt kept.
                        acted = false;
                        status.abort = None;
                        status.current_step_index = Some(0);
                        status.phase = Some(RolloutPhase::Progressing);
                    }
                    Event::Complete if !status.is_aborted() => {
                        status.phase = Some(RolloutPhase::Healthy);
                        status.stable_rs = status.current_pod_hash.clone();
                    }
                    Event::NewRevision => {
                        acted = false;
                        revision += 1;
                        status = rollout(&format!("r{revision}"), 0, RolloutPhase::Progressing);
                    }
                    Event::Restart => previous = None,
                    _ => {}
                }
                let firings = rollout_firings(previous.as_ref(), &status);
                let distinct: BTreeSet<&str> = firings.iter().map(|f| f.key.as_str()).collect();
                prop_assert_eq!(distinct.len(), firings.len(), "one observation names a state once");
                for f in firings {
                    // What the record holds already is filtered out; a new key is sent and recorded.
                    sent.insert(f.key);
                }
                previous = Some(status.clone());
                // The same status again: nothing the record does not hold already.
                let repeat: Vec<_> = rollout_firings(previous.as_ref(), &status)
                    .into_iter()
                    .filter(|f| !sent.contains(&f.key))
                    .collect();
                prop_assert!(repeat.is_empty(), "the same status fired again: {:?}", repeat);
            }
            for key in &expected_aborts {
                prop_assert!(sent.contains(key), "abort {} never fired", key);
            }
            for key in &expected_steps {
                prop_assert!(sent.contains(key), "step {} never fired", key);
            }
        }

        /// The same GitSync status twice fires nothing new; each newly blocked commit fires once.
        #[test]
        fn each_newly_blocked_commit_fires_once(commits in prop::collection::vec(0u8..20, 1..30)) {
            let mut status = GitSyncStatus::default();
            let mut previous: Option<GitSyncStatus> = None;
            let mut sent = BTreeSet::new();
            for (clock, commit) in commits.into_iter().enumerate() {
                let revision = format!("c{commit}");
                if !status.is_blocked(&revision) {
                    status.blocked_revisions.push(blocked(&revision, clock as i64, false));
                }
                for f in gitsync_firings(previous.as_ref(), &status) {
                    prop_assert!(sent.insert(f.key.clone()), "{} fired twice", f.key);
                }
                previous = Some(status.clone());
                prop_assert!(gitsync_firings(previous.as_ref(), &status).is_empty());
            }
            let every: BTreeSet<String> = status.blocked_revisions.iter().map(|b| format!("on-gitsync-blocked:{}", b.revision)).collect();
            prop_assert_eq!(sent, every);
        }
    }
}
