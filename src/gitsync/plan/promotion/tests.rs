use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::api::gitsync::{
    BlockedRevision, GitRef, Promotion, PromotionRequirement, RollbackPolicy, SyncSource, UpstreamGitSync,
};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
const REPO: &str = "https://git.example/shop.git";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn ago(secs: i64) -> DateTime<Utc> {
    now() - TimeDelta::seconds(secs)
}

fn upstream(name: &str, soak: &str) -> UpstreamGitSync {
    UpstreamGitSync {
        name: name.into(),
        namespace: None,
        soak: Some(soak.into()),
    }
}

/// `prod` in `shop`, following `staging` with `soak`.
fn follower(soak: &str) -> GitSyncSpec {
    GitSyncSpec {
        source: Some(SyncSource {
            from_git_sync: Some(upstream("staging", soak)),
        }),
        ..GitSyncSpec::default()
    }
}

fn requiring(soak: &str, more: &[&str]) -> GitSyncSpec {
    let mut spec = follower(soak);
    spec.promotion = Some(Promotion {
        requires: more
            .iter()
            .map(|name| PromotionRequirement {
                git_sync: upstream(name, soak),
            })
            .collect(),
        hold: None,
    });
    spec
}

fn held(mut spec: GitSyncSpec) -> GitSyncSpec {
    spec.promotion.get_or_insert_with(Promotion::default).hold = Some(true);
    spec
}

fn node(healthy: Option<&str>, since: Option<DateTime<Utc>>, blocked: &[&str]) -> Stage {
    Stage::Found(StageNode {
        repo_url: Some(REPO.into()),
        upstreams: Vec::new(),
        last_healthy_revision: healthy.map(String::from),
        last_healthy_time: since,
        blocked: blocked.iter().map(|b| b.to_string()).collect(),
    })
}

/// The chain of `shop/prod` following `spec`, with `upstreams` as found.
fn chain(spec: &GitSyncSpec, upstreams: &[(&str, Stage)]) -> Chain {
    let mut chain = Chain::new();
    chain.insert("shop/prod".into(), Stage::Found(StageNode::new("shop", spec, None)));
    for (name, stage) in upstreams {
        chain.insert(format!("shop/{name}"), stage.clone());
    }
    chain
}

fn status_with(promotion: PromotionStatus) -> GitSyncStatus {
    GitSyncStatus {
        promotion: Some(promotion),
        ..GitSyncStatus::default()
    }
}

fn decide(spec: &GitSyncSpec, status: &GitSyncStatus, chain: &Chain, request: Option<&str>) -> PromotionPlan {
    plan(&PromotionInput {
        namespace: "shop",
        name: "prod",
        spec,
        status,
        chain,
        request,
        now: now(),
    })
}

fn waiting(plan: &PromotionPlan) -> &str {
    plan.waiting.as_ref().map(|(_, w)| w.as_str()).unwrap_or("")
}

#[test]
fn promotes_the_upstream_revision_once_soaked() {
    let spec = follower("5s");
    let chain = chain(&spec, &[("staging", node(Some(A), Some(ago(6)), &[]))]);
    let plan = decide(&spec, &GitSyncStatus::default(), &chain, None);
    assert_eq!(plan.head.as_deref(), Some(A));
    assert_eq!(plan.repo_url.as_deref(), Some(REPO));
    assert_eq!(plan.status.from.as_deref(), Some("shop/staging"));
    assert_eq!(plan.status.handled_candidate.as_deref(), Some(A));
    assert_eq!(plan.status.history.len(), 1);
    assert!(!plan.status.history[0].forced);
    assert!(
        plan.status.history[0]
            .message
            .as_deref()
            .unwrap()
            .contains("healthy in shop/staging for 6s (soak 5s)"),
        "{:?}",
        plan.status.history
    );
    assert_eq!(plan.events.len(), 1);
    assert_eq!(plan.events[0].reason, "Promoted");
    assert_eq!(plan.waiting, None);
}

#[test]
fn waits_for_the_soak_and_says_when_it_ends() {
    let spec = follower("5s");
    let chain = chain(&spec, &[("staging", node(Some(A), Some(ago(2)), &[]))]);
    let running = status_with(PromotionStatus {
        revision: Some(B.into()),
        handled_candidate: Some(B.into()),
        ..PromotionStatus::default()
    });
    let plan = decide(&spec, &running, &chain, None);
    assert_eq!(plan.head.as_deref(), Some(B), "what runs stays");
    assert_eq!(plan.status.candidate.as_deref(), Some(A));
    assert_eq!(plan.status.soak_until, Some(now() + TimeDelta::seconds(3)));
    assert_eq!(plan.recheck_in, Some(Duration::from_secs(3)));
    assert!(
        waiting(&plan).contains("shop/staging soaks 3s more (soak 5s)"),
        "{plan:?}"
    );
    assert!(plan.events.is_empty());
}

#[test]
fn nothing_promoted_yet_waits_for_upstream() {
    let spec = follower("5s");
    let chain = chain(&spec, &[("staging", node(None, None, &[]))]);
    let plan = decide(&spec, &GitSyncStatus::default(), &chain, None);
    assert_eq!(plan.head, None);
    let (reason, message) = plan.waiting.clone().unwrap();
    assert_eq!(reason, WAITING_FOR_UPSTREAM);
    assert_eq!(message, "upstream shop/staging has no healthy revision yet");
}

#[test]
fn a_revision_blocked_upstream_or_here_is_not_promoted() {
    let spec = follower("0s");
    // Blocked in dev, two stages up (staging follows dev).
    let mut staging = StageNode {
        repo_url: None,
        upstreams: vec!["shop/dev".into()],
        last_healthy_revision: Some(A.into()),
        last_healthy_time: Some(ago(60)),
        blocked: Vec::new(),
    };
    let dev = node(Some(A), Some(ago(100)), &[A]);
    let mut c = chain(&spec, &[("staging", Stage::Found(staging.clone())), ("dev", dev)]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, None);
    assert_eq!(plan.head, None);
    assert_eq!(waiting(&plan), "revision aaaaaaaa is blocked in shop/dev");
    assert_eq!(plan.repo_url.as_deref(), Some(REPO), "the repository is dev's");
    // Blocked here.
    staging.upstreams.clear();
    staging.repo_url = Some(REPO.into());
    c.insert("shop/staging".into(), Stage::Found(staging));
    c.remove("shop/dev");
    let mut status = GitSyncStatus::default();
    status.blocked_revisions.push(BlockedRevision {
        revision: A.into(),
        reason: "rollout failed".into(),
        blocked_at: ago(5),
        revert_commit: None,
        revert_message: None,
    });
    let plan = decide(&spec, &status, &c, None);
    assert_eq!(plan.head, None);
    assert_eq!(waiting(&plan), "revision aaaaaaaa is blocked in this GitSync");
}

#[test]
fn requires_waits_until_every_upstream_has_the_revision_healthy_and_soaked() {
    let spec = requiring("5s", &["staging-eu"]);
    let c = chain(
        &spec,
        &[
            ("staging", node(Some(A), Some(ago(60)), &[])),
            ("staging-eu", node(Some(B), Some(ago(60)), &[])),
        ],
    );
    let plan = decide(&spec, &GitSyncStatus::default(), &c, None);
    assert_eq!(plan.head, None);
    assert_eq!(
        waiting(&plan),
        "every upstream must have revision aaaaaaaa healthy: shop/staging has aaaaaaaa, shop/staging-eu has bbbbbbbb"
    );
    // Same revision, one not soaked yet.
    let c = chain(
        &spec,
        &[
            ("staging", node(Some(A), Some(ago(60)), &[])),
            ("staging-eu", node(Some(A), Some(ago(1)), &[])),
        ],
    );
    let plan = decide(&spec, &GitSyncStatus::default(), &c, None);
    assert_eq!(plan.head, None);
    assert!(waiting(&plan).contains("shop/staging-eu soaks 4s more"), "{plan:?}");
    let c = chain(
        &spec,
        &[
            ("staging", node(Some(A), Some(ago(60)), &[])),
            ("staging-eu", node(Some(A), Some(ago(5)), &[])),
        ],
    );
    assert_eq!(
        decide(&spec, &GitSyncStatus::default(), &c, None).head.as_deref(),
        Some(A)
    );
}

#[test]
fn hold_stops_new_promotions_and_keeps_what_runs() {
    let spec = held(follower("0s"));
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[]))]);
    let running = status_with(PromotionStatus {
        revision: Some(B.into()),
        handled_candidate: Some(B.into()),
        ..PromotionStatus::default()
    });
    let plan = decide(&spec, &running, &c, None);
    assert_eq!(plan.head.as_deref(), Some(B));
    assert_eq!(plan.status.candidate.as_deref(), Some(A));
    let (reason, message) = plan.waiting.clone().unwrap();
    assert_eq!(reason, PROMOTION_HELD);
    assert!(message.contains("held"), "{message}");
    assert!(plan.events.is_empty());
    // Released: promoted.
    let released = follower("0s");
    assert_eq!(decide(&released, &running, &c, None).head.as_deref(), Some(A));
}

#[test]
fn a_forced_promotion_skips_the_soak_and_is_not_undone_by_the_older_upstream_candidate() {
    let spec = follower("1h");
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[]))]);
    let request = format!("r1@{}", &C[..7]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, Some(&request));
    assert_eq!(plan.head.as_deref(), Some(&C[..7]));
    assert_eq!(plan.status.from.as_deref(), Some(FORCED_FROM));
    assert!(plan.status.history[0].forced);
    assert_eq!(plan.events[0].reason, "PromotionForced");
    assert_eq!(
        plan.status.last_handled_promote_request.as_deref(),
        Some(request.as_str())
    );
    let mut status = status_with(plan.status.clone());
    resolve_revision(status.promotion.as_mut().unwrap(), C);
    assert_eq!(status.promotion.as_ref().unwrap().history[0].revision, C);
    // A later reconcile: A soaked upstream meanwhile, but it was passed over by the forced one.
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(7200)), &[]))]);
    let plan = decide(&spec, &status, &c, Some(&request));
    assert_eq!(
        plan.head.as_deref(),
        Some(C),
        "no snap back to the older upstream candidate"
    );
    assert!(plan.events.is_empty(), "a request is handled once: {:?}", plan.events);
    // A new upstream candidate is promoted as usual.
    let c = chain(&spec, &[("staging", node(Some(B), Some(ago(7200)), &[]))]);
    assert_eq!(decide(&spec, &status, &c, Some(&request)).head.as_deref(), Some(B));
}

#[test]
fn a_forced_promotion_without_a_sha_takes_the_upstream_revision_now() {
    let spec = follower("1h");
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(1)), &[]))]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, Some("2026-12-06T12:00:00Z"));
    assert_eq!(plan.head.as_deref(), Some(A));
    assert!(plan.status.history[0].forced);
}

#[test]
fn a_forced_promotion_of_a_blocked_revision_is_refused() {
    let spec = follower("0s");
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[B]))]);
    let running = status_with(PromotionStatus {
        revision: Some(A.into()),
        handled_candidate: Some(A.into()),
        ..PromotionStatus::default()
    });
    let plan = decide(&spec, &running, &c, Some("r2@bbbbbb"));
    assert_eq!(plan.head.as_deref(), Some(A));
    assert_eq!(plan.events.len(), 1);
    assert_eq!(plan.events[0].reason, "PromotionRefused");
    assert!(plan.events[0].warning);
    assert_eq!(
        plan.events[0].note,
        "request r2: revision bbbbbb is blocked in shop/staging: not promoted"
    );
    assert_eq!(plan.status.last_handled_promote_request.as_deref(), Some("r2@bbbbbb"));
    assert!(plan.status.history.is_empty());
}

#[test]
fn a_forced_promotion_is_refused_while_held_and_bad_requests_are_refused_once() {
    let spec = held(follower("0s"));
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[]))]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, Some("r3"));
    assert_eq!(plan.head, None);
    assert_eq!(plan.events[0].reason, "PromotionRefused");
    assert!(plan.events[0].note.contains("--release"), "{:?}", plan.events);
    let spec = follower("1h");
    for bad in ["r4@xyz", "@abcd", "r4@abc", "has space@abcd", &"x".repeat(300)] {
        let plan = decide(&spec, &GitSyncStatus::default(), &c, Some(bad));
        assert_eq!(plan.head, None, "{bad}");
        assert_eq!(plan.events[0].reason, "PromotionRefused", "{bad}");
        let again = decide(&spec, &status_with(plan.status.clone()), &c, Some(bad));
        assert!(again.events.is_empty(), "refused once, not every reconcile: {bad}");
    }
}

#[test]
fn an_unreadable_upstream_waits_with_its_reason() {
    let spec = follower("0s");
    let c = chain(
        &spec,
        &[(
            "staging",
            Stage::Unavailable("forbidden: the GitSync's ServiceAccount may not get gitsyncs".into()),
        )],
    );
    let running = status_with(PromotionStatus {
        revision: Some(A.into()),
        ..PromotionStatus::default()
    });
    let plan = decide(&spec, &running, &c, None);
    assert_eq!(plan.stalled, None);
    assert_eq!(plan.head.as_deref(), Some(A), "what runs stays");
    assert_eq!(
        waiting(&plan),
        "upstream shop/staging: forbidden: the GitSync's ServiceAccount may not get gitsyncs"
    );
    assert_eq!(plan.repo_url, None);
}

#[test]
fn a_cycle_stalls_naming_it() {
    let spec = follower("0s");
    let staging = Stage::Found(StageNode {
        repo_url: Some(REPO.into()),
        upstreams: vec!["shop/dev".into()],
        ..StageNode::default()
    });
    let dev = Stage::Found(StageNode {
        upstreams: vec!["shop/prod".into()],
        ..StageNode::default()
    });
    let c = chain(&spec, &[("staging", staging), ("dev", dev)]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, None);
    assert_eq!(
        plan.stalled.as_deref(),
        Some("spec.source.fromGitSync: the upstreams form a cycle: shop/prod → shop/staging → shop/dev → shop/prod")
    );
}

#[test]
fn a_chain_deeper_than_the_bound_stalls() {
    let mut c = Chain::new();
    for i in 0..40 {
        c.insert(
            format!("shop/s{i}"),
            Stage::Found(StageNode {
                upstreams: vec![format!("shop/s{}", i + 1)],
                ..StageNode::default()
            }),
        );
    }
    match chain_problem("shop/s0", &c) {
        Some(ChainProblem::TooDeep(path)) => assert_eq!(path.len(), MAX_CHAIN_DEPTH),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_specs_stall_naming_the_field() {
    let c = Chain::new();
    let stalled = |spec: &GitSyncSpec| decide(spec, &GitSyncStatus::default(), &c, None).stalled.unwrap();
    let mut with_ref = follower("5s");
    with_ref.git_ref = Some(GitRef {
        branch: Some("main".into()),
        ..GitRef::default()
    });
    assert!(stalled(&with_ref).starts_with("spec.ref: "));
    let mut requires_only = requiring("5s", &["staging-eu"]);
    requires_only.source = None;
    assert!(stalled(&requires_only).starts_with("spec.promotion.requires: needs spec.source.fromGitSync"));
    assert!(stalled(&follower("5 parsecs")).starts_with("spec.source.fromGitSync.soak: "));
    assert!(stalled(&follower("9000h")).starts_with("spec.source.fromGitSync.soak: "));
    let mut bad_name = follower("5s");
    bad_name.source.as_mut().unwrap().from_git_sync.as_mut().unwrap().name = "Staging!".into();
    assert!(stalled(&bad_name).starts_with("spec.source.fromGitSync.name: "));
    let mut bad_ns = follower("5s");
    bad_ns
        .source
        .as_mut()
        .unwrap()
        .from_git_sync
        .as_mut()
        .unwrap()
        .namespace = Some("a.b".into());
    assert!(stalled(&bad_ns).starts_with("spec.source.fromGitSync.namespace: "));
    assert!(
        stalled(&requiring("5s", &["staging"]))
            .starts_with("spec.promotion.requires[0].gitSync: names shop/staging again")
    );
    let mut reverting = follower("5s");
    reverting.rollback = Some(RollbackPolicy {
        on_analysis_failure: Some(RollbackAction::Revert),
        ..RollbackPolicy::default()
    });
    assert!(stalled(&reverting).starts_with("spec.rollback.onAnalysisFailure: revert"));
    let many: Vec<String> = (0..=MAX_REQUIRES).map(|i| format!("s{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(stalled(&requiring("5s", &many)).starts_with("spec.promotion.requires: 9 entries"));
}

#[test]
fn a_different_repo_url_stalls_naming_spec_repo_url() {
    let mut spec = follower("0s");
    spec.repo_url = "https://git.example/other.git".into();
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[]))]);
    let plan = decide(&spec, &GitSyncStatus::default(), &c, None);
    assert!(
        plan.stalled
            .unwrap()
            .starts_with("spec.repoURL: https://git.example/other.git is not the repository")
    );
    spec.repo_url = "https://git.example/shop".into();
    let c = chain(&spec, &[("staging", node(Some(A), Some(ago(60)), &[]))]);
    assert_eq!(
        decide(&spec, &GitSyncStatus::default(), &c, None).head.as_deref(),
        Some(A)
    );
}

#[test]
fn promote_requests_round_trip() {
    let request = PromoteRequest::parse("2026-12-06T12:00:00Z@ABCDEF12").unwrap();
    assert_eq!(request.id, "2026-12-06T12:00:00Z");
    assert_eq!(request.revision.as_deref(), Some("abcdef12"));
    assert_eq!(PromoteRequest::parse(&request.value()).unwrap(), request);
    assert_eq!(PromoteRequest::parse("r1").unwrap().revision, None);
}

/// A random chain of `prod` following `staging` (and maybe `staging-eu`), each upstream with a
/// healthy revision from a small set, a healthy time, and blocked revisions; a random previous
/// promotion status and request.
fn arbitrary_case() -> impl Strategy<Value = (GitSyncSpec, GitSyncStatus, Chain, Option<String>)> {
    let revision = prop::sample::select(vec![A, B, C]);
    let stage = (
        prop::option::of(revision.clone()),
        prop::option::of(0i64..120),
        prop::collection::vec(revision.clone(), 0..2),
    );
    (
        0u64..60,
        any::<bool>(),
        any::<bool>(),
        stage.clone(),
        stage,
        prop::option::of(revision.clone()),
        prop::option::of(revision.clone()),
        prop::collection::vec(revision.clone(), 0..2),
        prop::option::of((0u8..3, prop::option::of(revision))),
    )
        .prop_map(|(soak, two, hold, s1, s2, running, handled, own_blocked, request)| {
            let soak = format!("{soak}s");
            let mut spec = if two {
                requiring(&soak, &["staging-eu"])
            } else {
                follower(&soak)
            };
            if hold {
                spec = held(spec);
            }
            let to_node = |(healthy, since, blocked): (Option<&str>, Option<i64>, Vec<&str>)| {
                node(healthy, since.map(ago), &blocked)
            };
            let c = chain(&spec, &[("staging", to_node(s1)), ("staging-eu", to_node(s2))]);
            let mut status = status_with(PromotionStatus {
                revision: running.map(String::from),
                handled_candidate: handled.map(String::from),
                last_handled_promote_request: Some("r0".into()),
                ..PromotionStatus::default()
            });
            status.blocked_revisions = own_blocked
                .into_iter()
                .map(|r| BlockedRevision {
                    revision: r.into(),
                    reason: "failed here".into(),
                    blocked_at: ago(1),
                    revert_commit: None,
                    revert_message: None,
                })
                .collect();
            let request = request.map(|(id, sha)| {
                PromoteRequest {
                    id: format!("r{id}"),
                    revision: sha.map(String::from),
                }
                .value()
            });
            (spec, status, c, request)
        })
}

fn blocked_anywhere(status: &GitSyncStatus, chain: &Chain, revision: &str) -> bool {
    status.is_blocked(revision)
        || chain
            .values()
            .any(|s| matches!(s, Stage::Found(n) if n.blocked.iter().any(|b| b == revision)))
}

proptest! {
    #[test]
    fn a_revision_blocked_upstream_is_never_the_promoted_head((spec, status, c, request) in arbitrary_case()) {
        let plan = decide(&spec, &status, &c, request.as_deref());
        let before = status.promotion.as_ref().and_then(|p| p.revision.clone());
        if plan.head != before && let Some(head) = &plan.head {
            prop_assert!(!blocked_anywhere(&status, &c, head), "{head} is blocked: {plan:?}");
        }
    }

    #[test]
    fn an_automatic_promotion_was_healthy_upstream_for_its_soak((spec, status, c, request) in arbitrary_case()) {
        let plan = decide(&spec, &status, &c, request.as_deref());
        let new: Vec<_> = plan.status.history.iter().filter(|r| r.at == now() && !r.forced).collect();
        let soak = upstreams(&spec, "shop").unwrap();
        for record in new {
            for upstream in &soak {
                let Some(Stage::Found(node)) = c.get(&upstream.key) else { panic!("promoted without {}", upstream.key) };
                prop_assert_eq!(node.last_healthy_revision.as_deref(), Some(record.revision.as_str()));
                // A healthy time the upstream never recorded (a status from before the field) passes
                // only a zero soak.
                match node.last_healthy_time {
                    Some(since) => prop_assert!(now() - since >= TimeDelta::from_std(upstream.soak).unwrap(), "{plan:?}"),
                    None => prop_assert!(upstream.soak.is_zero(), "{plan:?}"),
                }
            }
        }
    }

    #[test]
    fn with_requires_a_promoted_revision_is_healthy_in_every_upstream((spec, status, c, request) in arbitrary_case()) {
        let plan = decide(&spec, &status, &c, request.as_deref());
        let before = status.promotion.as_ref().and_then(|p| p.revision.clone());
        let forced = plan.status.history.last().is_some_and(|r| r.at == now() && r.forced);
        if plan.head != before && !forced && let Some(head) = &plan.head {
            for key in ["shop/staging", "shop/staging-eu"].into_iter().take(spec.upstreams().count()) {
                let Some(Stage::Found(node)) = c.get(key) else { panic!() };
                prop_assert_eq!(node.last_healthy_revision.as_deref(), Some(head.as_str()));
            }
        }
    }
}
