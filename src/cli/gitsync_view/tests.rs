use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::api::conditions::{Condition, ConditionStatus};
use crate::api::gitsync::{
    BlockedRevision, GitSyncReference, GitSyncStatus, Promotion, PromotionRecord, PromotionRequirement,
    PromotionStatus, SyncSource, UpstreamGitSync,
};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn upstream(name: &str, namespace: Option<&str>, soak: &str) -> UpstreamGitSync {
    UpstreamGitSync {
        name: name.into(),
        namespace: namespace.map(Into::into),
        soak: Some(soak.into()),
    }
}

/// A GitSync `namespace/name` applied and healthy at `revision` (healthy for 10 minutes), following
/// `follows` when given.
fn stage(namespace: &str, name: &str, revision: &str, follows: Option<UpstreamGitSync>) -> GitSync {
    let mut gitsync = GitSync::example(name, "https://git.example.com/shop.git", &format!("overlays/{name}"));
    gitsync.metadata.namespace = Some(namespace.into());
    if let Some(follows) = follows {
        gitsync.spec.git_ref = None;
        gitsync.spec.repo_url = String::new();
        gitsync.spec.source = Some(SyncSource {
            from_git_sync: Some(follows),
        });
    }
    gitsync.status = Some(GitSyncStatus {
        last_applied_revision: Some(revision.into()),
        last_healthy_revision: Some(revision.into()),
        last_healthy_time: Some(now() - Duration::minutes(10)),
        conditions: vec![Condition::new(
            crate::api::conditions::READY,
            ConditionStatus::True,
            "Succeeded",
            format!("applied revision {}", short(revision)),
        )],
        ..GitSyncStatus::default()
    });
    gitsync
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.into(), name.into())
}

#[test]
fn a_chain_is_ordered_by_depth_whatever_the_input_order() {
    let gitsyncs = [
        stage("shop", "prod", "1111111111", Some(upstream("staging", None, "5s"))),
        stage("shop", "dev", "2222222222", None),
        stage("shop", "staging", "2222222222", Some(upstream("dev", None, "5s"))),
        stage("shop", "lonely", "3333333333", None),
    ];
    let found = pipelines(&gitsyncs);
    assert_eq!(
        found,
        [Pipeline {
            stages: vec![
                vec![key("shop", "dev")],
                vec![key("shop", "staging")],
                vec![key("shop", "prod")]
            ],
            missing: vec![],
            cyclic: vec![],
        }],
        "a GitSync nobody follows and that follows nobody is no pipeline"
    );
    let text = render_pipelines(&gitsyncs, Some("shop"), now());
    assert!(
        text.starts_with("dev@22222222 → staging@22222222 → prod@11111111\n"),
        "{text}"
    );
    assert!(!text.contains("lonely"), "{text}");
}

#[test]
fn parallel_stages_share_a_depth_and_requires_waits_for_the_deepest_upstream() {
    let mut prod = stage(
        "prod",
        "prod",
        "aaaaaaaaaa",
        Some(upstream("staging-eu", Some("staging"), "1m")),
    );
    prod.spec.promotion = Some(Promotion {
        requires: vec![PromotionRequirement {
            git_sync: upstream("staging-us", Some("staging"), "1m"),
        }],
        hold: None,
    });
    let gitsyncs = [
        stage("dev", "dev", "aaaaaaaaaa", None),
        stage(
            "staging",
            "staging-eu",
            "aaaaaaaaaa",
            Some(upstream("dev", Some("dev"), "0s")),
        ),
        stage(
            "staging",
            "staging-us",
            "aaaaaaaaaa",
            Some(upstream("dev", Some("dev"), "0s")),
        ),
        prod,
    ];
    let found = pipelines(&gitsyncs);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].stages,
        vec![
            vec![key("dev", "dev")],
            vec![key("staging", "staging-eu"), key("staging", "staging-us")],
            vec![key("prod", "prod")],
        ]
    );
    let text = render_pipelines(&gitsyncs, None, now());
    assert!(
        text.contains(
            "dev/dev@aaaaaaaa → staging/staging-eu@aaaaaaaa + staging/staging-us@aaaaaaaa → prod/prod@aaaaaaaa"
        ),
        "{text}"
    );
    assert!(text.contains("staging/staging-eu,staging/staging-us"), "{text}");
}

#[test]
fn cycles_and_missing_upstreams_are_shown_not_looped_over() {
    let gitsyncs = [
        stage("shop", "a", "aaaaaaaaaa", Some(upstream("b", None, "0s"))),
        stage("shop", "b", "bbbbbbbbbb", Some(upstream("a", None, "0s"))),
        stage("shop", "c", "cccccccccc", Some(upstream("gone", None, "0s"))),
        stage("shop", "self", "dddddddddd", Some(upstream("self", None, "0s"))),
    ];
    let mut found = pipelines(&gitsyncs);
    found.sort_by_key(|p| p.cyclic.len());
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.missing == [key("shop", "gone")] && p.stages == [vec![key("shop", "c")]])
    );
    assert!(found.iter().any(|p| p.cyclic == [key("shop", "self")]));
    assert!(found.iter().any(|p| p.cyclic == [key("shop", "a"), key("shop", "b")]));
    let text = render_pipelines(&gitsyncs, Some("shop"), now());
    assert!(text.contains("cycle: its upstreams lead back to it"), "{text}");
    assert!(
        text.contains("gone") && text.contains("not found or not readable"),
        "{text}"
    );
}

#[test]
fn a_long_chain_of_many_stages_renders() {
    // Hostile sizes: 300 stages in one chain, each following the previous.
    let mut gitsyncs = vec![stage("ns", "s0", "0000000000", None)];
    for i in 1..300 {
        gitsyncs.push(stage(
            "ns",
            &format!("s{i}"),
            "0000000000",
            Some(upstream(&format!("s{}", i - 1), None, "0s")),
        ));
    }
    gitsyncs.reverse();
    let found = pipelines(&gitsyncs);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].stages.len(), 300);
    assert_eq!(found[0].stages[299], [key("ns", "s299")]);
}

#[test]
fn the_detail_view_shows_the_chain_the_promotion_and_what_is_blocked() {
    let dev = stage("shop", "dev", "bbbbbbbbbbbb", None);
    let staging = stage("shop", "staging", "bbbbbbbbbbbb", Some(upstream("dev", None, "5s")));
    let mut prod = stage("shop", "prod", "aaaaaaaaaaaa", Some(upstream("staging", None, "5s")));
    prod.spec.depends_on = vec![GitSyncReference {
        name: "db".into(),
        namespace: None,
    }];
    let status = prod.status.as_mut().unwrap();
    status.promotion = Some(PromotionStatus {
        revision: Some("aaaaaaaaaaaa".into()),
        from: Some("shop/staging".into()),
        promoted_at: Some(now() - Duration::hours(1)),
        candidate: Some("bbbbbbbbbbbb".into()),
        soak_until: Some(now() + Duration::seconds(3)),
        waiting: None,
        last_handled_promote_request: None,
        handled_candidate: None,
        history: vec![PromotionRecord {
            revision: "aaaaaaaaaaaa".into(),
            from: "sluice promote".into(),
            at: now() - Duration::hours(1),
            forced: true,
            message: Some("asked by alice".into()),
        }],
    });
    status.blocked_revisions = vec![BlockedRevision {
        revision: "cccccccccccc".into(),
        reason: "rollout shop/web-prod aborted: analysis success-rate Failed".into(),
        blocked_at: now() - Duration::minutes(2),
        revert_commit: None,
        revert_message: None,
    }];
    let text = render(&prod, &[dev, staging], now());
    for expected in [
        "Follows:      staging (soak 5s)",
        "Path:         overlays/prod",
        "Promoted:     aaaaaaaa from shop/staging 60m ago",
        "Promotion:    next bbbbbbbb, soak 3s left",
        "Chain:        dev@bbbbbbbb → staging@bbbbbbbb → *prod@aaaaaaaa",
        "Depends on:   db (not read)",
        "cccccccc  2m   rollout shop/web-prod aborted: analysis success-rate Failed",
        "aaaaaaaa  sluice promote  60m  forced; asked by alice",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn the_list_names_the_source_of_each_gitsync() {
    let mut held = stage("shop", "prod", "aaaaaaaaaa", Some(upstream("staging", None, "5s")));
    held.spec.promotion = Some(Promotion {
        requires: vec![],
        hold: Some(true),
    });
    let gitsyncs = [stage("shop", "dev", "aaaaaaaaaa", None), held];
    let text = render_list(&gitsyncs, false, false, now());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME  READY  APPLIED   HEALTHY"), "{text}");
    assert!(lines[1].contains("branch main"), "{text}");
    assert!(lines[2].contains("from staging"), "{text}");
    assert!(render_pipelines(&gitsyncs, Some("shop"), now()).contains("held"));
}
