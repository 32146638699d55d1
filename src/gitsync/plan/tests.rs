use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::api::gitsync::{GitRef, RollbackPolicy};

const V2: &str = "2222222222222222222222222222222222222222";
const V3: &str = "3333333333333333333333333333333333333333";
const V4: &str = "4444444444444444444444444444444444444444";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()
}

fn spec(action: RollbackAction) -> GitSyncSpec {
    GitSyncSpec {
        repo_url: "file:///repo.git".into(),
        git_ref: Some(GitRef {
            branch: Some("main".into()),
            ..GitRef::default()
        }),
        rollback: Some(RollbackPolicy {
            on_analysis_failure: Some(action),
            ..RollbackPolicy::default()
        }),
        ..GitSyncSpec::default()
    }
}

fn healthy_on(revision: &str) -> GitSyncStatus {
    GitSyncStatus {
        last_attempted_revision: Some(revision.into()),
        last_applied_revision: Some(revision.into()),
        last_healthy_revision: Some(revision.into()),
        ..GitSyncStatus::default()
    }
}

fn healthy_rollout() -> RolloutState {
    RolloutState {
        name: "shop/web".into(),
        aborted: false,
        abort_reason: None,
        message: None,
        canary_revision: None,
        healthy: true,
        mid_rollout: false,
    }
}

fn aborted(reason: AbortReason, canary: &str) -> RolloutState {
    RolloutState {
        aborted: true,
        abort_reason: Some(reason),
        message: Some("RolloutAborted: step 1: analysis web-v3-1 failed".into()),
        canary_revision: Some(canary.into()),
        healthy: false,
        mid_rollout: true,
        ..healthy_rollout()
    }
}

fn decide_for(spec: &GitSyncSpec, status: &GitSyncStatus, head: &str, rollouts: &[RolloutState]) -> Decision {
    decide(&Observed {
        spec,
        status,
        head: Some(head),
        rollouts,
        now: now(),
    })
}

fn block(status: &mut GitSyncStatus, decision: &Decision) {
    status.blocked_revisions.extend(decision.block.iter().cloned());
}

#[test]
fn an_unblocked_head_is_applied() {
    let decision = decide_for(&spec(RollbackAction::Pin), &healthy_on(V2), V3, &[healthy_rollout()]);
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V3.into(),
            pinned_over: None
        }
    );
    assert!(decision.block.is_empty() && decision.revert.is_none());
    assert_eq!(decision.prune, Prune::Allowed);
}

#[test]
fn a_failed_canary_blocks_its_revision_and_pins_the_healthy_one_until_git_moves_on() {
    let spec = spec(RollbackAction::Pin);
    let mut status = healthy_on(V2);
    status.last_applied_revision = Some(V3.into());
    let rollouts = [aborted(AbortReason::AnalysisFailed, V3)];
    let decision = decide_for(&spec, &status, V3, &rollouts);
    assert_eq!(decision.block.len(), 1);
    assert_eq!(decision.block[0].revision, V3);
    assert!(decision.block[0].reason.contains("shop/web") && decision.block[0].reason.contains("failed"));
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V2.into(),
            pinned_over: Some(V3.into())
        }
    );
    assert_eq!(decision.revert, None, "pin only pins");

    block(&mut status, &decision);
    // Later intervals: the Rollout is back on stable; the blocked head keeps being skipped.
    let decision = decide_for(&spec, &status, V3, &[healthy_rollout()]);
    assert!(decision.block.is_empty(), "blocked once");
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V2.into(),
            pinned_over: Some(V3.into())
        }
    );
    // A newer commit resumes normal sync.
    let decision = decide_for(&spec, &status, V4, &[healthy_rollout()]);
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V4.into(),
            pinned_over: None
        }
    );
}

#[test]
fn a_progress_deadline_abort_blocks_but_a_manual_abort_does_not() {
    let spec = spec(RollbackAction::Pin);
    let status = healthy_on(V2);
    let decision = decide_for(
        &spec,
        &status,
        V3,
        &[aborted(AbortReason::ProgressDeadlineExceeded, V3)],
    );
    assert_eq!(decision.block.len(), 1);
    let decision = decide_for(&spec, &status, V3, &[aborted(AbortReason::Requested, V3)]);
    assert!(
        decision.block.is_empty(),
        "a person stopping a canary is not evidence against it"
    );
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V3.into(),
            pinned_over: None
        }
    );
}

#[test]
fn policy_none_keeps_applying_the_head() {
    let spec = spec(RollbackAction::None);
    let mut status = healthy_on(V2);
    status.blocked_revisions.push(BlockedRevision {
        revision: V3.into(),
        reason: "earlier, under pin".into(),
        blocked_at: now(),
        revert_commit: None,
        revert_message: None,
    });
    let decision = decide_for(&spec, &status, V3, &[aborted(AbortReason::AnalysisFailed, V3)]);
    assert!(decision.block.is_empty());
    assert_eq!(
        decision.target,
        Target::Apply {
            revision: V3.into(),
            pinned_over: None
        }
    );
}

#[test]
fn a_blocked_head_without_a_healthy_revision_applies_nothing() {
    let spec = spec(RollbackAction::Pin);
    let status = GitSyncStatus {
        last_applied_revision: Some(V3.into()),
        ..GitSyncStatus::default()
    };
    let decision = decide_for(&spec, &status, V3, &[aborted(AbortReason::AnalysisFailed, V3)]);
    assert_eq!(decision.block.len(), 1);
    assert!(matches!(decision.target, Target::Hold(ref why) if why.contains("no healthy revision")));
}

#[test]
fn the_healthy_revision_is_never_blocked() {
    let decision = decide_for(
        &spec(RollbackAction::Pin),
        &healthy_on(V2),
        V2,
        &[aborted(AbortReason::AnalysisFailed, V2)],
    );
    assert!(decision.block.is_empty());
}

#[test]
fn revert_is_planned_once_on_the_tracked_branch() {
    let spec = spec(RollbackAction::Revert);
    let mut status = healthy_on(V2);
    let decision = decide_for(&spec, &status, V3, &[aborted(AbortReason::AnalysisFailed, V3)]);
    assert_eq!(
        decision.revert,
        Some(RevertPlan {
            blocked: V3.into(),
            to_revision: V2.into(),
            branch: "main".into()
        })
    );
    block(&mut status, &decision);
    status.blocked_revisions[0].revert_commit = Some(V4.into());
    let decision = decide_for(&spec, &status, V3, &[healthy_rollout()]);
    assert_eq!(decision.revert, None, "pushed already");

    let mut tag_spec = spec.clone();
    tag_spec.git_ref = Some(GitRef {
        tag: Some("v3".into()),
        ..GitRef::default()
    });
    let decision = decide_for(
        &tag_spec,
        &healthy_on(V2),
        V3,
        &[aborted(AbortReason::AnalysisFailed, V3)],
    );
    assert_eq!(decision.revert, None);
    assert!(decision.revert_impossible.unwrap().contains("revertBranch"));
}

#[test]
fn prune_waits_for_rollouts_to_finish_and_respects_prune_false() {
    let spec_on = spec(RollbackAction::Pin);
    let moving = RolloutState {
        mid_rollout: true,
        ..healthy_rollout()
    };
    let decision = decide_for(&spec_on, &healthy_on(V2), V2, &[moving]);
    assert!(matches!(decision.prune, Prune::HeldBack(ref why) if why.contains("shop/web")));
    let mut spec_off = spec_on.clone();
    spec_off.prune = Some(false);
    assert_eq!(
        decide_for(&spec_off, &healthy_on(V2), V2, &[healthy_rollout()]).prune,
        Prune::Disabled
    );
}

#[test]
fn health_is_concluded_only_for_the_applied_revision_with_every_rollout_healthy() {
    let mut status = healthy_on(V2);
    status.last_applied_revision = Some(V3.into());
    let progressing = RolloutState {
        healthy: false,
        mid_rollout: true,
        ..healthy_rollout()
    };
    assert_eq!(
        conclude_health(&mut status, &Health::Healthy, &[progressing], now()),
        None
    );
    assert_eq!(
        conclude_health(
            &mut status,
            &Health::Progressing("web 2/3".into()),
            &[healthy_rollout()],
            now()
        ),
        None
    );
    assert_eq!(
        conclude_health(&mut status, &Health::Healthy, &[healthy_rollout()], now()),
        Some(V3.into())
    );
    assert_eq!(status.last_healthy_revision.as_deref(), Some(V3));
    assert_eq!(status.history.last().unwrap().result.as_deref(), Some("Healthy"));
    assert_eq!(
        conclude_health(&mut status, &Health::Healthy, &[healthy_rollout()], now()),
        None,
        "once"
    );
}

#[test]
fn history_is_bounded_and_repeats_update_the_newest_entry() {
    let mut status = GitSyncStatus::default();
    let apply = |revision: &str| Target::Apply {
        revision: revision.into(),
        pinned_over: None,
    };
    for i in 0..15 {
        let revision = format!("{i:040}");
        record_applied(&mut status, &apply(&revision), "applied".into(), now());
        record_applied(&mut status, &apply(&revision), "self-heal".into(), now());
    }
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(status.history.last().unwrap().revision, format!("{:040}", 14));
    assert_eq!(status.history.last().unwrap().message.as_deref(), Some("self-heal"));
}

/// Self-heal re-applies a Healthy revision every interval; its history entry stays Healthy.
#[test]
fn re_applying_a_healthy_revision_keeps_its_history_healthy() {
    let mut status = GitSyncStatus::default();
    let revision = format!("{:040}", 7);
    let target = Target::Apply {
        revision: revision.clone(),
        pinned_over: None,
    };
    record_applied(&mut status, &target, "applied".into(), now());
    assert_eq!(
        conclude_health(&mut status, &Health::Healthy, &[], now()),
        Some(revision.clone())
    );
    record_applied(&mut status, &target, "self-heal".into(), now());
    let last = status.history.last().unwrap();
    assert_eq!(
        (last.revision.as_str(), last.result.as_deref()),
        (revision.as_str(), Some("Healthy"))
    );
    assert_eq!(status.history.len(), 1);
}

#[test]
fn blocked_revisions_are_bounded_oldest_dropped_and_reasons_cut() {
    let mut status = GitSyncStatus::default();
    for i in 0..MAX_BLOCKED_REVISIONS + 5 {
        record_blocked(
            &mut status,
            BlockedRevision {
                revision: format!("{i:040}"),
                reason: "x".repeat(10_000),
                blocked_at: now(),
                revert_commit: None,
                revert_message: None,
            },
        );
    }
    assert_eq!(status.blocked_revisions.len(), MAX_BLOCKED_REVISIONS);
    assert!(
        !status.is_blocked(&format!("{:040}", 4)),
        "the oldest blocks are dropped"
    );
    assert!(status.is_blocked(&format!("{:040}", 5)));
    assert!(status.is_blocked(&format!("{:040}", MAX_BLOCKED_REVISIONS + 4)));
    let reason = &status.blocked_revisions[0].reason;
    assert!(reason.len() <= MAX_STATUS_MESSAGE_BYTES, "{}", reason.len());
    assert!(reason.ends_with("[truncated, 10000 bytes]"), "{reason}");
}

#[test]
fn history_messages_are_cut() {
    let mut status = GitSyncStatus::default();
    let target = Target::Apply {
        revision: format!("{:040}", 1),
        pinned_over: None,
    };
    record_applied(&mut status, &target, "e".repeat(1 << 20), now());
    let message = status.history[0].message.as_deref().unwrap();
    assert!(message.len() <= MAX_STATUS_MESSAGE_BYTES && message.contains("[truncated, 1048576 bytes]"));
}

#[test]
fn conditions_follow_kstatus() {
    let mut status = healthy_on(V2);
    set_conditions(&mut status, Some(3), &SyncResult::Synced, Some(&Health::Healthy), now());
    assert!(conditions::is_true(&status.conditions, conditions::READY));
    assert!(conditions::find(&status.conditions, conditions::STALLED).is_none());
    assert_eq!(status.observed_generation, Some(3));

    set_conditions(
        &mut status,
        Some(3),
        &SyncResult::Stalled("authentication failed for https://git.example.com/shop.git".into()),
        None,
        now(),
    );
    let ready = conditions::find(&status.conditions, conditions::READY).unwrap();
    assert!(!ready.is_true() && ready.message.as_deref().unwrap().contains("authentication"));
    assert!(conditions::is_true(&status.conditions, conditions::STALLED));

    assert!(
        matches!(previous_result(&status), Some(SyncResult::Stalled(m)) if m.contains("authentication")),
        "a reconcile that does not sync keeps the failure"
    );
    set_conditions(
        &mut status,
        Some(3),
        &SyncResult::Synced,
        Some(&Health::Progressing("rollout shop/web: Progressing".into())),
        now(),
    );
    assert_eq!(previous_result(&status), None);
    assert!(conditions::is_true(&status.conditions, conditions::RECONCILING));
    assert!(conditions::find(&status.conditions, conditions::STALLED).is_none());

    status.last_attempted_revision = Some(V3.into());
    status.blocked_revisions.push(BlockedRevision {
        revision: V3.into(),
        reason: "x".into(),
        blocked_at: now(),
        revert_commit: None,
        revert_message: None,
    });
    set_conditions(&mut status, Some(3), &SyncResult::Synced, Some(&Health::Healthy), now());
    let ready = conditions::find(&status.conditions, conditions::READY).unwrap();
    assert_eq!(ready.reason.as_deref(), Some("Pinned"));
    assert!(ready.message.as_deref().unwrap().contains("33333333 is blocked"));
}

fn revision_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec![V2.to_string(), V3.to_string(), V4.to_string()])
}

proptest! {
    /// Whatever happened, under pin or revert a blocked revision is never the one applied, and the
    /// canary revision of a Rollout that failed on evidence is blocked by the same decision.
    #[test]
    fn a_blocked_revision_is_never_applied(
        revert in any::<bool>(),
        head in revision_strategy(),
        healthy in prop::option::of(revision_strategy()),
        already_blocked in prop::collection::btree_set(revision_strategy(), 0..3),
        failures in prop::collection::vec((revision_strategy(), 0..3usize), 0..3),
    ) {
        let spec = spec(if revert { RollbackAction::Revert } else { RollbackAction::Pin });
        let status = GitSyncStatus {
            last_healthy_revision: healthy.clone(),
            blocked_revisions: already_blocked
                .iter()
                .filter(|r| Some(*r) != healthy.as_ref())
                .map(|r| BlockedRevision {
                    revision: r.clone(),
                    reason: "earlier".into(),
                    blocked_at: now(),
                    revert_commit: None,
                    revert_message: None,
                })
                .collect(),
            ..GitSyncStatus::default()
        };
        let reasons = [AbortReason::AnalysisFailed, AbortReason::ProgressDeadlineExceeded, AbortReason::Requested];
        let rollouts: Vec<RolloutState> = failures.iter().map(|(r, i)| aborted(reasons[*i], r)).collect();
        let decision = decide_for(&spec, &status, &head, &rollouts);
        let mut after = status.clone();
        block(&mut after, &decision);
        if let Target::Apply { revision, .. } = &decision.target {
            prop_assert!(!after.is_blocked(revision), "applied blocked {revision}");
        }
        for rollout in &rollouts {
            let blamed = rollout.abort_reason.unwrap().blames_revision();
            let revision = rollout.canary_revision.as_deref().unwrap();
            if blamed && Some(revision) != healthy.as_deref() {
                prop_assert!(after.is_blocked(revision));
            }
        }
        let mut unique: Vec<&str> = after.blocked_revisions.iter().map(|b| b.revision.as_str()).collect();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), after.blocked_revisions.len(), "each revision blocked once");
    }
}

#[test]
fn deleting_a_gitsync_deletes_what_it_applied_crds_and_namespaces_last() {
    let crd = ObjectId::example(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        None,
        "widgets.example.com",
    );
    let namespace = ObjectId::example("", "Namespace", None, "shop");
    let rollout = ObjectId::example("sluice.dev", "Rollout", Some("shop"), "web");
    let config = ObjectId::example("", "ConfigMap", Some("shop"), "web-v1");
    let status = GitSyncStatus {
        inventory: Some(crate::api::gitsync::Inventory {
            entries: [&crd, &namespace, &rollout].map(ObjectId::to_inventory).to_vec(),
        }),
        // Pending prune and the inventory may name the same object: deleted once.
        pending_prune: [&config, &rollout].map(ObjectId::to_inventory).to_vec(),
        ..healthy_on("v2")
    };
    let targets = cleanup_targets(&spec(RollbackAction::Pin), &status).unwrap();
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert!(targets[..2].contains(&config) && targets[..2].contains(&rollout));
    assert_eq!(targets[2..], [namespace, crd]);

    let kept = GitSyncSpec {
        prune: Some(false),
        ..spec(RollbackAction::Pin)
    };
    assert_eq!(cleanup_targets(&kept, &status), Err("spec.prune is false"));
    let suspended = GitSyncSpec {
        suspend: Some(true),
        ..spec(RollbackAction::Pin)
    };
    assert_eq!(cleanup_targets(&suspended, &status), Err("the GitSync is suspended"));
    assert_eq!(
        cleanup_targets(&spec(RollbackAction::Pin), &GitSyncStatus::default()),
        Ok(vec![])
    );
}

const MINUTE: Duration = Duration::from_secs(60);

fn timings_of(interval: Option<&str>, timeout: Option<&str>, suspend: Option<bool>) -> Result<Timings, SyncResult> {
    timings(&GitSyncSpec {
        interval: interval.map(String::from),
        timeout: timeout.map(String::from),
        suspend,
        ..spec(RollbackAction::Pin)
    })
}

#[test]
fn timings_default_the_timeout_and_stall_on_a_bad_field_before_suspend() {
    assert_eq!(
        timings_of(Some("1m"), None, None),
        Ok(Timings {
            interval: MINUTE,
            timeout: DEFAULT_TIMEOUT
        })
    );
    assert_eq!(
        timings_of(Some("1m"), Some("30s"), Some(false)).map(|t| t.timeout),
        Ok(Duration::from_secs(30))
    );
    assert_eq!(timings_of(Some("1m"), None, Some(true)), Err(SyncResult::Suspended));
    for (interval, timeout, field) in [
        (Some("0s"), None, "spec.interval"),
        (Some("soon"), None, "spec.interval"),
        (Some("1m"), Some("never"), "spec.timeout"),
        (Some("1m"), Some("0s"), "spec.timeout"),
        (Some("100000000000000"), None, "spec.interval"),
        (Some("2562047788015216h"), None, "spec.interval"),
        (Some("1m"), Some("99999999999999999999s"), "spec.timeout"),
    ] {
        // A bad field is reported even while suspended: the spec needs fixing either way.
        match timings_of(interval, timeout, Some(true)) {
            Err(SyncResult::Stalled(message)) => assert!(message.starts_with(field), "{message}"),
            other => panic!("{interval:?} {timeout:?}: {other:?}"),
        }
    }
}

proptest! {
    /// Any text in spec.interval or spec.timeout: timings within a year, or Stalled naming the field.
    #[test]
    fn any_interval_or_timeout_gives_bounded_timings_or_names_the_field(
        in_timeout in any::<bool>(),
        text in prop_oneof![any::<String>(), "[ +]?([0-9.]{0,22}(ms|s|m|h)?){0,3}"],
    ) {
        let (interval, timeout, field) = if in_timeout {
            (Some("1m"), Some(text.as_str()), "spec.timeout: ")
        } else {
            (Some(text.as_str()), None, "spec.interval: ")
        };
        match timings_of(interval, timeout, None) {
            Ok(timings) => {
                prop_assert!(timings.interval <= crate::api::duration::MAX && timings.timeout <= crate::api::duration::MAX);
                prop_assert!(!timings.interval.is_zero() && !timings.timeout.is_zero());
            }
            Err(SyncResult::Stalled(message)) => prop_assert!(message.starts_with(field), "{}", message),
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }
}

/// A GitSync that synced V2 at generation 1, one minute apart, nothing asked for.
fn quiet() -> (SyncTrigger<'static>, GitSyncStatus) {
    let trigger = SyncTrigger {
        generation: Some(1),
        requested_at: None,
        webhook_requested: false,
        since_last_sync: Some(Duration::from_secs(10)),
        interval: MINUTE,
    };
    let status = GitSyncStatus {
        observed_generation: Some(1),
        ..healthy_on(V2)
    };
    (trigger, status)
}

#[test]
fn a_sync_is_due_when_the_interval_elapsed_or_is_unknown() {
    let (trigger, status) = quiet();
    assert!(!sync_due(&trigger, &status));
    let almost = SyncTrigger {
        since_last_sync: Some(MINUTE - Duration::from_millis(1)),
        ..trigger.clone()
    };
    assert!(!sync_due(&almost, &status));
    let elapsed = SyncTrigger {
        since_last_sync: Some(MINUTE),
        ..trigger.clone()
    };
    assert!(sync_due(&elapsed, &status));
    // After a restart nothing is known about the last sync: every GitSync syncs once at once.
    let restarted = SyncTrigger {
        since_last_sync: None,
        ..trigger
    };
    assert!(sync_due(&restarted, &status));
}

#[test]
fn a_sync_is_due_on_a_spec_change_a_webhook_or_when_nothing_was_fetched() {
    let (trigger, status) = quiet();
    let changed = SyncTrigger {
        generation: Some(2),
        ..trigger.clone()
    };
    assert!(sync_due(&changed, &status));
    let hooked = SyncTrigger {
        webhook_requested: true,
        ..trigger.clone()
    };
    assert!(sync_due(&hooked, &status));
    let never_fetched = GitSyncStatus {
        last_attempted_revision: None,
        ..status
    };
    assert!(sync_due(&trigger, &never_fetched));
}

#[test]
fn a_sync_is_due_once_per_new_requested_at_value() {
    let (trigger, mut status) = quiet();
    let requested = SyncTrigger {
        requested_at: Some("2026-12-02T10:00:00Z"),
        ..trigger.clone()
    };
    assert!(sync_due(&requested, &status));
    status.last_handled_requested_at = Some("2026-12-02T10:00:00Z".into());
    assert!(!sync_due(&requested, &status), "the same value was handled already");
    let again = SyncTrigger {
        requested_at: Some("2026-12-02T10:05:00Z"),
        ..trigger.clone()
    };
    assert!(sync_due(&again, &status));
    // Removing the annotation asks for nothing.
    assert!(!sync_due(&trigger, &status));
}

fn apply_decision(revision: &str, block: &[&str]) -> Decision {
    Decision {
        block: block
            .iter()
            .map(|revision| BlockedRevision {
                revision: revision.to_string(),
                reason: "canary failed".into(),
                blocked_at: now(),
                revert_commit: None,
                revert_message: None,
            })
            .collect(),
        target: Target::Apply {
            revision: revision.into(),
            pinned_over: None,
        },
        revert: None,
        revert_impossible: None,
        prune: Prune::Allowed,
    }
}

const NOT_DUE: SyncAttempt = SyncAttempt {
    due: false,
    fetched: false,
};
const FETCHED: SyncAttempt = SyncAttempt {
    due: true,
    fetched: true,
};
const FETCH_FAILED: SyncAttempt = SyncAttempt {
    due: true,
    fetched: false,
};

#[test]
fn a_new_revision_is_applied_an_unchanged_one_only_to_heal() {
    let (_, status) = quiet();
    let self_heal = |on: bool| GitSyncSpec {
        self_heal: Some(on),
        ..spec(RollbackAction::Pin)
    };
    let generation = Some(1);
    for attempt in [NOT_DUE, FETCHED] {
        assert!(must_apply(
            &apply_decision(V3, &[]),
            attempt,
            &self_heal(false),
            &status,
            generation
        ));
    }
    // Unchanged: re-applied on a due sync with self-heal (the default) on, never between syncs.
    let same = apply_decision(V2, &[]);
    assert!(must_apply(
        &same,
        FETCHED,
        &spec(RollbackAction::Pin),
        &status,
        generation
    ));
    assert!(!must_apply(&same, NOT_DUE, &self_heal(true), &status, generation));
    assert!(!must_apply(&same, FETCHED, &self_heal(false), &status, generation));
    // A spec change re-applies even without self-heal, on the sync it triggers.
    assert!(must_apply(&same, FETCHED, &self_heal(false), &status, Some(2)));
    assert!(!must_apply(&same, NOT_DUE, &self_heal(false), &status, Some(2)));
    // Blocking a revision re-applies (the rollback), whatever else holds.
    assert!(must_apply(
        &apply_decision(V2, &[V3]),
        NOT_DUE,
        &self_heal(false),
        &status,
        generation
    ));
}

#[test]
fn a_failed_fetch_applies_only_a_rollback_and_a_hold_applies_nothing() {
    let (_, status) = quiet();
    let spec = spec(RollbackAction::Pin);
    assert!(!must_apply(
        &apply_decision(V3, &[]),
        FETCH_FAILED,
        &spec,
        &status,
        Some(2)
    ));
    assert!(!must_apply(
        &apply_decision(V2, &[]),
        FETCH_FAILED,
        &spec,
        &status,
        Some(1)
    ));
    assert!(must_apply(
        &apply_decision(V2, &[V3]),
        FETCH_FAILED,
        &spec,
        &status,
        Some(1)
    ));
    let hold = Decision {
        target: Target::Hold("no revision fetched yet".into()),
        ..apply_decision(V3, &[V3])
    };
    for attempt in [NOT_DUE, FETCHED, FETCH_FAILED] {
        assert!(!must_apply(&hold, attempt, &spec, &GitSyncStatus::default(), Some(2)));
    }
}

#[test]
fn requeue_waits_for_the_rest_of_the_interval_when_settled() {
    let healthy = Some(&Health::Healthy);
    let secs = Duration::from_secs;
    assert_eq!(requeue_after(MINUTE, Some(secs(10)), healthy, false), secs(50));
    assert_eq!(requeue_after(MINUTE, Some(secs(10)), None, false), secs(50));
    // Due now, overdue, or a full interval assumed passed: as soon as allowed, never zero.
    assert_eq!(requeue_after(MINUTE, Some(MINUTE), healthy, false), MIN_REQUEUE);
    assert_eq!(requeue_after(MINUTE, Some(secs(3600)), healthy, false), MIN_REQUEUE);
    assert_eq!(requeue_after(MINUTE, None, healthy, false), MIN_REQUEUE);
}

#[test]
fn requeue_rechecks_soon_until_healthy_or_after_a_revert() {
    let secs = Duration::from_secs;
    for health in [
        Health::Progressing("rollout".into()),
        Health::Degraded("crash".into()),
        Health::Unknown("read failed".into()),
    ] {
        assert_eq!(
            requeue_after(MINUTE, Some(secs(10)), Some(&health), false),
            HEALTH_RECHECK
        );
        assert_eq!(
            requeue_after(MINUTE, Some(MINUTE - secs(2)), Some(&health), false),
            secs(2),
            "the next sync comes first"
        );
        assert_eq!(requeue_after(MINUTE, Some(MINUTE), Some(&health), false), MIN_REQUEUE);
    }
    // A pushed revert is fetched soon even when everything is healthy.
    assert_eq!(
        requeue_after(MINUTE, Some(secs(10)), Some(&Health::Healthy), true),
        HEALTH_RECHECK
    );
}
