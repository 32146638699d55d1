//! Rendering for `sluice get gitsync` and `sluice get pipeline`: the stage chains GitSyncs form by
//! following each other (`spec.source.fromGitSync`, `spec.promotion.requires`), drawn from objects
//! and the time alone so the output is tested without a cluster.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::view::{age, table, to_chrono};
use crate::api::conditions::{self, Condition};
use crate::api::gitsync::{GitSync, GitSyncStatus};
use crate::gitsync::plan::short;

/// How many blocked revisions, history entries and promotions the detail view shows (the newest).
const RECENT: usize = 5;

/// `namespace/name` of a GitSync.
pub type Key = (String, String);

fn key_of(gitsync: &GitSync) -> Key {
    (gitsync.namespace().unwrap_or_default(), gitsync.name_any())
}

/// The upstreams a GitSync waits for, as keys (a reference without a namespace means its own).
fn upstream_keys(gitsync: &GitSync) -> Vec<Key> {
    let namespace = gitsync.namespace().unwrap_or_default();
    gitsync
        .spec
        .upstreams()
        .map(|u| (u.namespace.clone().unwrap_or_else(|| namespace.clone()), u.name.clone()))
        .collect()
}

/// One chain of stages: every GitSync connected to the others by following, by depth (a root —
/// following a branch — at 0, a stage one past its deepest upstream). Upstreams named but not among
/// the GitSyncs read are listed as missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub stages: Vec<Vec<Key>>,
    pub missing: Vec<Key>,
    /// Stages whose upstreams lead back to themselves (refused by the controller).
    pub cyclic: Vec<Key>,
}

/// The pipelines among `gitsyncs`: connected sets of at least one GitSync that follows another
/// (or names an upstream that is missing). A GitSync following nobody and followed by nobody is no
/// pipeline. Cycles and any number of GitSyncs are handled: depth is bounded by the count.
pub fn pipelines(gitsyncs: &[GitSync]) -> Vec<Pipeline> {
    let by_key: BTreeMap<Key, &GitSync> = gitsyncs.iter().map(|g| (key_of(g), g)).collect();
    let upstreams: BTreeMap<Key, Vec<Key>> = by_key.iter().map(|(k, g)| (k.clone(), upstream_keys(g))).collect();
    // Connected components over "follows" edges, present nodes only.
    let mut component: BTreeMap<Key, usize> = BTreeMap::new();
    let mut members: Vec<BTreeSet<Key>> = Vec::new();
    for start in by_key.keys() {
        if component.contains_key(start) {
            continue;
        }
        let id = members.len();
        let mut set = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(node) = todo.pop() {
            if component.contains_key(&node) || !by_key.contains_key(&node) {
                continue;
            }
            component.insert(node.clone(), id);
            set.insert(node.clone());
            todo.extend(upstreams[&node].iter().cloned());
            todo.extend(
                upstreams
                    .iter()
                    .filter(|(_, ups)| ups.contains(&node))
                    .map(|(k, _)| k.clone()),
            );
        }
        members.push(set);
    }
    let depths = depths(&upstreams);
    members
        .into_iter()
        .filter(|set| set.len() > 1 || set.iter().any(|k| !upstreams[k].is_empty()))
        .map(|set| {
            let mut stages: Vec<Vec<Key>> = Vec::new();
            let mut cyclic = Vec::new();
            for key in &set {
                let depth = match depths.get(key) {
                    Some(Some(depth)) => *depth,
                    _ => {
                        cyclic.push(key.clone());
                        continue;
                    }
                };
                if stages.len() <= depth {
                    stages.resize(depth + 1, Vec::new());
                }
                stages[depth].push(key.clone());
            }
            let missing = set
                .iter()
                .flat_map(|k| &upstreams[k])
                .filter(|u| !by_key.contains_key(*u))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            Pipeline {
                stages,
                missing,
                cyclic,
            }
        })
        .collect()
}

/// Depth of each GitSync: 0 with no present upstream, else one past its deepest present upstream;
/// `None` on a cycle. Iterative relaxation, at most one round per GitSync, so any input terminates.
fn depths(upstreams: &BTreeMap<Key, Vec<Key>>) -> BTreeMap<Key, Option<usize>> {
    let mut depth: BTreeMap<Key, usize> = BTreeMap::new();
    for _ in 0..=upstreams.len() {
        let mut changed = false;
        for (key, ups) in upstreams {
            let present = ups.iter().filter(|u| upstreams.contains_key(*u));
            let mut next = Some(0);
            for up in present {
                next = match (next, depth.get(up)) {
                    (Some(n), Some(d)) => Some(n.max(d + 1)),
                    _ => None,
                };
            }
            if let Some(next) = next
                && depth.get(key) != Some(&next)
            {
                depth.insert(key.clone(), next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // A depth beyond the number of GitSyncs can only come from going round a cycle.
    upstreams
        .keys()
        .map(|k| (k.clone(), depth.get(k).copied().filter(|d| *d < upstreams.len())))
        .collect()
}

/// `name` when in the namespace the user looks at, else `namespace/name`.
fn display(key: &Key, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if ns == key.0 => key.1.clone(),
        _ => format!("{}/{}", key.0, key.1),
    }
}

fn status_of(gitsync: &GitSync) -> GitSyncStatus {
    gitsync.status.clone().unwrap_or_default()
}

fn revision_or_dash(revision: Option<&str>) -> String {
    revision.map(|r| short(r).to_string()).unwrap_or_else(|| "-".into())
}

/// What the stage is doing about promotions, in a few words.
fn promotion_state(gitsync: &GitSync, now: DateTime<Utc>) -> String {
    let status = status_of(gitsync);
    let promotion = status.promotion.unwrap_or_default();
    if gitsync.spec.upstream().is_none() {
        return match gitsync.spec.git_ref.as_ref() {
            Some(r) if r.commit.is_some() => format!("commit {}", revision_or_dash(r.commit.as_deref())),
            Some(r) if r.tag.is_some() => format!("tag {}", r.tag.as_deref().unwrap_or_default()),
            Some(r) if r.branch.is_some() => format!("branch {}", r.branch.as_deref().unwrap_or_default()),
            _ => "default branch".into(),
        };
    }
    let mut words = Vec::new();
    if gitsync.spec.is_promotion_held() {
        words.push("held".to_string());
    }
    if let Some(candidate) = promotion.candidate.as_deref() {
        let soak = match promotion.soak_until {
            Some(until) if until > now => format!(", soak {} left", age(Some(now), until)),
            _ => String::new(),
        };
        words.push(format!("next {}{soak}", short(candidate)));
    }
    if let Some(waiting) = promotion.waiting {
        words.push(waiting);
    }
    if words.is_empty() {
        words.push("up to date".into());
    }
    words.join("; ")
}

/// Healthy revision and for how long, e.g. `a1b2c3d4 (3m)`.
fn healthy_for(status: &GitSyncStatus, now: DateTime<Utc>) -> String {
    match (&status.last_healthy_revision, status.last_healthy_time) {
        (Some(revision), Some(since)) => format!("{} ({})", short(revision), age(Some(since), now)),
        (Some(revision), None) => short(revision).to_string(),
        _ => "-".into(),
    }
}

fn ready(status: &GitSyncStatus) -> String {
    conditions::find(&status.conditions, conditions::READY)
        .map(|c| format!("{:?}", c.status))
        .unwrap_or_else(|| "Unknown".into())
}

/// `sluice get pipeline`: each chain on one line (`dev@a1b2c3d4 → staging@a1b2c3d4 → prod@9f8e7d6c`,
/// stages at the same depth joined by `+`), then a table of its stages.
pub fn render_pipelines(gitsyncs: &[GitSync], namespace: Option<&str>, now: DateTime<Utc>) -> String {
    let by_key: BTreeMap<Key, &GitSync> = gitsyncs.iter().map(|g| (key_of(g), g)).collect();
    let mut out = String::new();
    for pipeline in pipelines(gitsyncs) {
        let line: Vec<String> = pipeline
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|key| {
                        let status = status_of(by_key[key]);
                        format!(
                            "{}@{}",
                            display(key, namespace),
                            revision_or_dash(status.last_applied_revision.as_deref())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .collect();
        let _ = writeln!(out, "{}", line.join(" → "));
        let mut rows = vec![
            ["STAGE", "FROM", "READY", "APPLIED", "HEALTHY", "BLOCKED", "PROMOTION"]
                .map(String::from)
                .to_vec(),
        ];
        for key in pipeline.stages.iter().flatten().chain(&pipeline.cyclic) {
            let gitsync = by_key[key];
            let status = status_of(gitsync);
            let from: Vec<String> = upstream_keys(gitsync).iter().map(|u| display(u, namespace)).collect();
            rows.push(vec![
                display(key, namespace),
                if from.is_empty() { "git".into() } else { from.join(",") },
                ready(&status),
                revision_or_dash(status.last_applied_revision.as_deref()),
                healthy_for(&status, now),
                status.blocked_revisions.len().to_string(),
                if pipeline.cyclic.contains(key) {
                    "cycle: its upstreams lead back to it".into()
                } else {
                    promotion_state(gitsync, now)
                },
            ]);
        }
        for key in &pipeline.missing {
            let mut row = vec![display(key, namespace), "-".into(), "missing".into()];
            row.extend(std::iter::repeat_n("-".to_string(), 3));
            row.push("not found or not readable".into());
            rows.push(row);
        }
        out.push_str(&table(&rows));
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("No pipelines: no GitSync follows another (spec.source.fromGitSync).\n");
    }
    out
}

/// `sluice get gitsyncs`: NAME, READY, APPLIED, HEALTHY, SOURCE, AGE; `wide` adds the revision last
/// attempted, how many revisions are blocked, and the repository's path.
pub fn render_list(gitsyncs: &[GitSync], all_namespaces: bool, wide: bool, now: DateTime<Utc>) -> String {
    let mut header = vec!["NAME", "READY", "APPLIED", "HEALTHY", "SOURCE", "AGE"];
    if wide {
        header.extend(["ATTEMPTED", "BLOCKED", "PATH"]);
    }
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for gitsync in gitsyncs {
        let status = status_of(gitsync);
        let source = match upstream_keys(gitsync).as_slice() {
            [] => promotion_state(gitsync, now),
            upstreams => {
                let names: Vec<String> = upstreams
                    .iter()
                    .map(|u| display(u, gitsync.namespace().as_deref()))
                    .collect();
                format!("from {}", names.join(","))
            }
        };
        let mut row = vec![
            gitsync.name_any(),
            ready(&status),
            revision_or_dash(status.last_applied_revision.as_deref()),
            healthy_for(&status, now),
            source,
            age(gitsync.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
        ];
        if wide {
            row.extend([
                revision_or_dash(status.last_attempted_revision.as_deref()),
                status.blocked_revisions.len().to_string(),
                gitsync
                    .spec
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        if all_namespaces {
            row.insert(0, gitsync.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    table(&rows)
}

/// `sluice get gitsync NAME`: where its revisions come from, what runs, what is blocked, the stage
/// chain it is part of (`related`: the other GitSyncs read — its upstreams and those following it),
/// its dependencies and recent history.
pub fn render(gitsync: &GitSync, related: &[GitSync], now: DateTime<Utc>) -> String {
    let status = status_of(gitsync);
    let spec = &gitsync.spec;
    let namespace = gitsync.namespace().unwrap_or_default();
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<14}{value}", format!("{label}:"));
    };
    field("Name", gitsync.name_any());
    field("Namespace", namespace.clone());
    let ready_line = |condition: Option<&Condition>| match condition {
        Some(c) => format!(
            "{:?} ({}): {}",
            c.status,
            c.reason.as_deref().unwrap_or("-"),
            c.message.as_deref().unwrap_or("")
        ),
        None => "Unknown: the controller has not reported on it yet".into(),
    };
    field(
        "Ready",
        ready_line(conditions::find(&status.conditions, conditions::READY)),
    );
    match spec.upstream() {
        Some(upstream) => {
            let key = (
                upstream.namespace.clone().unwrap_or_else(|| namespace.clone()),
                upstream.name.clone(),
            );
            let soak = upstream.soak.as_deref().unwrap_or("0s");
            field("Follows", format!("{} (soak {soak})", display(&key, Some(&namespace))));
            for required in spec.promotion.iter().flat_map(|p| &p.requires) {
                let key = (
                    required.git_sync.namespace.clone().unwrap_or_else(|| namespace.clone()),
                    required.git_sync.name.clone(),
                );
                let soak = required.git_sync.soak.as_deref().unwrap_or("0s");
                field(
                    "Also needs",
                    format!("{} (soak {soak})", display(&key, Some(&namespace))),
                );
            }
        }
        None => field("Source", format!("{} {}", spec.repo_url, promotion_state(gitsync, now))),
    }
    field("Path", spec.path.clone().unwrap_or_else(|| ".".into()));
    field("Applied", revision_or_dash(status.last_applied_revision.as_deref()));
    field("Healthy", healthy_for(&status, now));
    if spec.upstream().is_some() {
        let promotion = status.promotion.clone().unwrap_or_default();
        if let Some(revision) = promotion.revision.as_deref() {
            field(
                "Promoted",
                format!(
                    "{} from {} {} ago",
                    short(revision),
                    promotion.from.as_deref().unwrap_or("-"),
                    age(promotion.promoted_at, now)
                ),
            );
        }
        field("Promotion", promotion_state(gitsync, now));
    }
    let mut all: Vec<GitSync> = related.to_vec();
    if !all.iter().any(|g| key_of(g) == key_of(gitsync)) {
        all.push(gitsync.clone());
    }
    let by_key: BTreeMap<Key, &GitSync> = all.iter().map(|g| (key_of(g), g)).collect();
    if let Some(pipeline) = pipelines(&all)
        .into_iter()
        .find(|p| p.stages.iter().flatten().any(|k| *k == key_of(gitsync)))
    {
        let chain: Vec<String> = pipeline
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|key| {
                        let here = if *key == key_of(gitsync) { "*" } else { "" };
                        let applied = status_of(by_key[key]).last_applied_revision;
                        format!(
                            "{here}{}@{}",
                            display(key, Some(&namespace)),
                            revision_or_dash(applied.as_deref())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .collect();
        field("Chain", chain.join(" → "));
    }
    if !spec.depends_on.is_empty() {
        let dependencies: Vec<String> = spec
            .depends_on
            .iter()
            .map(|d| {
                let key = (d.namespace.clone().unwrap_or_else(|| namespace.clone()), d.name.clone());
                let state = by_key
                    .get(&key)
                    .map(|g| format!("Ready {}", ready(&status_of(g))))
                    .unwrap_or_else(|| "not read".into());
                format!("{} ({state})", display(&key, Some(&namespace)))
            })
            .collect();
        field("Depends on", dependencies.join(", "));
    }
    if !status.blocked_revisions.is_empty() {
        let _ = writeln!(out, "\nBlocked revisions:");
        let mut rows = vec![vec!["REVISION".to_string(), "AGE".into(), "REASON".into()]];
        for blocked in status.blocked_revisions.iter().rev().take(RECENT) {
            rows.push(vec![
                short(&blocked.revision).to_string(),
                age(Some(blocked.blocked_at), now),
                blocked.reason.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    let promotions = status
        .promotion
        .as_ref()
        .map(|p| p.history.as_slice())
        .unwrap_or_default();
    if !promotions.is_empty() {
        let _ = writeln!(out, "\nPromotions:");
        let mut rows = vec![vec!["REVISION".to_string(), "FROM".into(), "AGE".into(), "NOTE".into()]];
        for promotion in promotions.iter().rev().take(RECENT) {
            let forced = if promotion.forced { "forced; " } else { "" };
            rows.push(vec![
                short(&promotion.revision).to_string(),
                promotion.from.clone(),
                age(Some(promotion.at), now),
                format!("{forced}{}", promotion.message.as_deref().unwrap_or("")),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !status.history.is_empty() {
        let _ = writeln!(out, "\nHistory:");
        let mut rows = vec![vec![
            "REVISION".to_string(),
            "RESULT".into(),
            "AGE".into(),
            "MESSAGE".into(),
        ]];
        for entry in status.history.iter().rev().take(RECENT) {
            rows.push(vec![
                short(&entry.revision).to_string(),
                entry.result.clone().unwrap_or_else(|| "-".into()),
                age(entry.finished_at.or(Some(entry.started_at)), now),
                entry.message.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

#[cfg(test)]
mod tests;
