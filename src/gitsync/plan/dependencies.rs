//! `spec.dependsOn`, with Flux's semantics: a GitSync applies a new revision only while every GitSync
//! it depends on is Ready at its own latest revision, and a dependency cycle through it stalls it.
//! Decided here without I/O, from the GitSyncs as the dependent's own identity could read them.
//!
//! Choices, where Flux leaves room:
//! - A dependency pinned over a blocked head (Ready, reason `Pinned`) does **not** count: it runs an
//!   older revision than its Git head, and what depends on it may need what that head brings.
//! - Only a *new* revision waits. Self-heal of the revision already applied goes on (it brings
//!   nothing new), and so does a rollback to the last healthy revision (waiting would keep a revision
//!   known to be bad running).
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Target;
use crate::api::conditions::{self, ConditionStatus};
use crate::api::gitsync::{GitSync, GitSyncSpec, GitSyncStatus};
use crate::bounds::truncate;

/// Most entries `spec.dependsOn` may hold: every entry costs an API read per reconcile.
pub const MAX_DEPENDS_ON: usize = 64;
/// Most GitSyncs one reconcile reads while looking for a cycle (one API call each).
pub const MAX_GRAPH_NODES: usize = 64;
/// Longest dependency chain the cycle search follows; a longer cycle is not reported as such (each
/// GitSync on it just waits, saying for which dependency).
pub const MAX_DEPTH: usize = 16;
/// Condition reason while a dependency is not Ready.
pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
/// Condition reason of a GitSync on a dependency cycle.
pub const DEPENDENCY_CYCLE: &str = "DependencyCycle";
/// How many dependencies a waiting message names (then "+N more").
const NAMED_IN_MESSAGE: usize = 3;
/// A dependency's own Ready message is quoted up to this many bytes.
const QUOTED_MESSAGE_BYTES: usize = 256;

/// A GitSync, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Key {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Checks `spec.dependsOn`: at most [`MAX_DEPENDS_ON`] entries, each naming a GitSync by a valid
/// name (and namespace, when set). The error names the field.
pub fn validate(spec: &GitSyncSpec) -> Result<(), String> {
    let count = spec.depends_on.len();
    if count > MAX_DEPENDS_ON {
        return Err(format!("spec.dependsOn: {count} entries, at most {MAX_DEPENDS_ON}"));
    }
    for (index, dependency) in spec.depends_on.iter().enumerate() {
        check_name(&dependency.name, 253).map_err(|e| format!("spec.dependsOn[{index}].name: {e}"))?;
        if let Some(namespace) = &dependency.namespace {
            check_name(namespace, 63).map_err(|e| format!("spec.dependsOn[{index}].namespace: {e}"))?;
        }
    }
    Ok(())
}

/// A DNS name of at most `max` bytes (lowercase letters, digits, `-` and `.`).
fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("required".into());
    }
    if name.len() > max {
        return Err(format!("longer than {max} characters"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{:?} is not a valid name", truncate(name, 64)));
    }
    Ok(())
}

/// The GitSyncs `spec` depends on, each once, in the order listed, with `namespace` where an entry
/// names none. At most [`MAX_DEPENDS_ON`] (validation refuses more).
pub fn dependencies(spec: &GitSyncSpec, namespace: &str) -> Vec<Key> {
    let mut seen = BTreeSet::new();
    spec.depends_on
        .iter()
        .take(MAX_DEPENDS_ON)
        .map(|d| Key::new(d.namespace.as_deref().unwrap_or(namespace), &d.name))
        .filter(|key| seen.insert(key.clone()))
        .collect()
}

/// A dependency as the dependent's identity read it.
#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Box<GitSync>),
    Missing,
    /// Could not be read (forbidden, timed out, or outside what a confined GitSync may read).
    Unreadable(String),
}

/// Why `dependency` is not Ready at its latest revision, or `Ok` when it is: its Ready condition True
/// for its current generation, and its last applied revision its last attempted one (its Git head).
pub fn readiness(dependency: &GitSync) -> Result<(), String> {
    let status = dependency.status.clone().unwrap_or_default();
    let Some(ready) = conditions::find(&status.conditions, conditions::READY) else {
        return Err("has no Ready condition yet".into());
    };
    let quoted = || truncate(ready.message.as_deref().unwrap_or_default(), QUOTED_MESSAGE_BYTES).into_owned();
    if ready.status != ConditionStatus::True {
        return Err(format!(
            "is not Ready ({}): {}",
            ready.reason.as_deref().unwrap_or("no reason"),
            quoted()
        ));
    }
    let generation = dependency.metadata.generation;
    if ready.observed_generation != generation {
        return Err(format!(
            "has not reconciled its current spec yet (Ready is for generation {}, it is at {})",
            ready.observed_generation.unwrap_or(0),
            generation.unwrap_or(0)
        ));
    }
    match (&status.last_applied_revision, &status.last_attempted_revision) {
        (Some(applied), Some(attempted)) if applied == attempted => Ok(()),
        (Some(applied), Some(attempted)) => Err(format!(
            "runs revision {}, not its latest {} ({})",
            short(applied),
            short(attempted),
            quoted()
        )),
        _ => Err("has applied no revision yet".into()),
    }
}

fn short(revision: &str) -> &str {
    revision.get(..8).unwrap_or(revision)
}

/// Whether applying `target` waits for the dependencies: a new revision from Git does; self-heal of
/// the revision already applied and a rollback (the healthy revision pinned over a blocked head) do
/// not. A revision whose sync waves are not all applied yet is not applied yet: it waits too.
pub fn waits_for_dependencies(target: &Target, status: &GitSyncStatus) -> bool {
    match target {
        Target::Apply {
            revision,
            pinned_over: None,
        } => status.last_applied_revision.as_deref() != Some(revision.as_str()),
        Target::Apply { .. } | Target::Hold(_) => false,
    }
}

/// What dependsOn allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Every dependency is Ready at its latest revision (or there are none).
    Open,
    /// Wait: the message names the dependencies that are not Ready, and why.
    Wait(String),
    /// This GitSync is on a dependency cycle, spelled out in the message.
    Cycle(String),
}

/// Whether the GitSync `own` may apply a new revision, given its direct dependencies as read and the
/// dependency graph read around it (`graph[key]` = what `key` depends on; only what could be read).
pub fn gate(own: &Key, direct: &[(Key, Lookup)], graph: &BTreeMap<Key, Vec<Key>>) -> Gate {
    if let Some(cycle) = find_cycle(own, graph) {
        let spelled: Vec<String> = cycle.iter().map(Key::to_string).collect();
        return Gate::Cycle(format!(
            "spec.dependsOn: dependency cycle {}: none of them can become Ready first",
            spelled.join(" → ")
        ));
    }
    let waiting: Vec<String> = direct
        .iter()
        .filter_map(|(key, lookup)| {
            let why = match lookup {
                Lookup::Missing => "not found".to_string(),
                Lookup::Unreadable(why) => format!("cannot be read: {}", truncate(why, QUOTED_MESSAGE_BYTES)),
                Lookup::Found(dependency) => readiness(dependency).err()?,
            };
            Some(format!("GitSync {key} {why}"))
        })
        .collect();
    if waiting.is_empty() {
        return Gate::Open;
    }
    let mut message = format!(
        "waiting for dependencies, nothing new applied: {}",
        waiting
            .iter()
            .take(NAMED_IN_MESSAGE)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if waiting.len() > NAMED_IN_MESSAGE {
        message.push_str(&format!(" (+{} more)", waiting.len() - NAMED_IN_MESSAGE));
    }
    Gate::Wait(message)
}

/// A path `start → … → start` through `graph`, if there is one within [`MAX_DEPTH`] steps. Depth
/// first, each GitSync expanded once: at most every node and edge of the graph once.
pub fn find_cycle(start: &Key, graph: &BTreeMap<Key, Vec<Key>>) -> Option<Vec<Key>> {
    let mut visited = BTreeSet::new();
    let mut path = vec![start.clone()];
    search(start, graph, &mut visited, &mut path).then_some(path)
}

fn search(start: &Key, graph: &BTreeMap<Key, Vec<Key>>, visited: &mut BTreeSet<Key>, path: &mut Vec<Key>) -> bool {
    let Some(at) = path.last().cloned() else {
        return false;
    };
    if path.len() > MAX_DEPTH {
        return false;
    }
    for next in graph.get(&at).into_iter().flatten() {
        if next == start {
            path.push(next.clone());
            return true;
        }
        if !visited.insert(next.clone()) {
            continue;
        }
        path.push(next.clone());
        if search(start, graph, visited, path) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::api::conditions::Condition;
    use crate::api::gitsync::{GitSyncReference, GitSyncStatus};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn key(name: &str) -> Key {
        Key::new("shop", name)
    }

    /// A GitSync `name` at generation 2 whose Ready condition is `ready` (reason, for generation
    /// `observed`), having applied `applied` of its head `attempted`.
    fn dependency(name: &str, ready: Option<(bool, &str)>, observed: i64, applied: &str, attempted: &str) -> GitSync {
        let mut gitsync = GitSync::new(name, GitSyncSpec::default());
        gitsync.metadata.namespace = Some("shop".into());
        gitsync.metadata.generation = Some(2);
        let conditions = ready
            .map(|(ready, reason)| {
                let status = if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                };
                let mut condition = Condition::new(conditions::READY, status, reason, format!("{name} says {reason}"))
                    .observed(Some(observed));
                condition.last_transition_time = Some(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap());
                condition
            })
            .into_iter()
            .collect();
        gitsync.status = Some(GitSyncStatus {
            conditions,
            last_applied_revision: Some(applied.into()),
            last_attempted_revision: Some(attempted.into()),
            ..GitSyncStatus::default()
        });
        gitsync
    }

    fn ready(name: &str) -> GitSync {
        dependency(name, Some((true, "Succeeded")), 2, A, A)
    }

    fn found(gitsync: GitSync) -> Lookup {
        Lookup::Found(Box::new(gitsync))
    }

    #[test]
    fn ready_means_ready_for_the_current_generation_at_the_latest_revision() {
        assert_eq!(readiness(&ready("db")), Ok(()));
        let failing = readiness(&dependency("db", Some((false, "SyncFailed")), 2, A, B)).unwrap_err();
        assert!(
            failing.contains("is not Ready (SyncFailed): db says SyncFailed"),
            "{failing}"
        );
        let stale = readiness(&dependency("db", Some((true, "Succeeded")), 1, A, A)).unwrap_err();
        assert!(stale.contains("generation 1, it is at 2"), "{stale}");
        let pinned = readiness(&dependency("db", Some((true, "Pinned")), 2, A, B)).unwrap_err();
        assert!(
            pinned.contains("runs revision aaaaaaaa, not its latest bbbbbbbb"),
            "{pinned}"
        );
        let new = readiness(&dependency("db", None, 2, A, A)).unwrap_err();
        assert!(new.contains("no Ready condition"), "{new}");
    }

    #[test]
    fn the_gate_names_each_dependency_that_is_not_ready_and_why() {
        let own = key("api");
        let failing = dependency("db", Some((false, "SyncFailed")), 2, A, B);
        let direct = vec![
            (key("db"), found(failing)),
            (key("cache"), found(ready("cache"))),
            (key("queue"), Lookup::Missing),
        ];
        let Gate::Wait(message) = gate(&own, &direct, &BTreeMap::new()) else {
            panic!("expected to wait");
        };
        assert!(
            message.contains("GitSync shop/db is not Ready (SyncFailed): db says SyncFailed"),
            "{message}"
        );
        assert!(message.contains("GitSync shop/queue not found"), "{message}");
        assert!(!message.contains("cache"), "{message}");
        let all_ready = vec![(key("cache"), found(ready("cache")))];
        assert_eq!(gate(&own, &all_ready, &BTreeMap::new()), Gate::Open);
        assert_eq!(gate(&own, &[], &BTreeMap::new()), Gate::Open);
    }

    #[test]
    fn cycles_are_spelled_out_self_two_and_longer() {
        let graph = |edges: &[(&str, &str)]| {
            let mut graph: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
            for (from, to) in edges {
                graph.entry(key(from)).or_default().push(key(to));
            }
            graph
        };
        let spelled = |g: &BTreeMap<Key, Vec<Key>>| match gate(&key("a"), &[], g) {
            Gate::Cycle(message) => message,
            other => panic!("expected a cycle, got {other:?}"),
        };
        assert!(spelled(&graph(&[("a", "a")])).contains("shop/a → shop/a"));
        assert!(spelled(&graph(&[("a", "b"), ("b", "a")])).contains("shop/a → shop/b → shop/a"));
        let long = graph(&[("a", "x"), ("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]);
        assert!(spelled(&long).contains("shop/a → shop/b → shop/c → shop/d → shop/a"));
        // A cycle that does not pass through this GitSync is its dependency's to report.
        let elsewhere = graph(&[("a", "b"), ("b", "c"), ("c", "b")]);
        assert_eq!(find_cycle(&key("a"), &elsewhere), None);
        // Longer than MAX_DEPTH: not searched to the end.
        let names: Vec<String> = (0..=MAX_DEPTH + 1).map(|i| format!("n{i}")).collect();
        let mut chain: Vec<(&str, &str)> = vec![("a", names[0].as_str())];
        chain.extend(names.windows(2).map(|w| (w[0].as_str(), w[1].as_str())));
        chain.push((names[MAX_DEPTH + 1].as_str(), "a"));
        assert_eq!(find_cycle(&key("a"), &graph(&chain)), None);
    }

    #[test]
    fn validation_bounds_the_list_and_names_the_field() {
        let with = |refs: Vec<GitSyncReference>| GitSyncSpec {
            depends_on: refs,
            ..GitSyncSpec::default()
        };
        let reference = |name: &str| GitSyncReference {
            name: name.into(),
            namespace: None,
        };
        let hostile = with((0..10_000).map(|i| reference(&format!("d{i}"))).collect());
        let error = validate(&hostile).unwrap_err();
        assert_eq!(error, "spec.dependsOn: 10000 entries, at most 64");
        assert_eq!(validate(&with(vec![reference("db"), reference("cache")])), Ok(()));
        assert!(
            validate(&with(vec![reference("")]))
                .unwrap_err()
                .starts_with("spec.dependsOn[0].name: required")
        );
        let bad_namespace = with(vec![GitSyncReference {
            name: "db".into(),
            namespace: Some("Not_A_Namespace".into()),
        }]);
        assert!(
            validate(&bad_namespace)
                .unwrap_err()
                .starts_with("spec.dependsOn[0].namespace:")
        );
        let twice = with(vec![reference("db"), reference("db")]);
        assert_eq!(dependencies(&twice, "shop"), vec![key("db")]);
    }

    #[test]
    fn a_wide_graph_is_searched_quickly() {
        // 64 dependencies each with 64 more, none back to the start: every edge once.
        let mut graph: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
        let direct: Vec<Key> = (0..MAX_DEPENDS_ON).map(|i| key(&format!("d{i}"))).collect();
        graph.insert(key("a"), direct.clone());
        for d in &direct {
            graph.insert(d.clone(), direct.clone());
        }
        let started = std::time::Instant::now();
        assert_eq!(find_cycle(&key("a"), &graph), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    fn arb_dependency() -> impl Strategy<Value = Lookup> {
        let revision = prop_oneof![Just(A), Just(B)];
        prop_oneof![
            1 => Just(Lookup::Missing),
            1 => Just(Lookup::Unreadable("forbidden".into())),
            6 => (
                proptest::option::of((any::<bool>(), prop_oneof![Just("Succeeded"), Just("Pinned"), Just("SyncFailed")])),
                1i64..=2,
                revision.clone(),
                revision,
            )
                .prop_map(|(ready, observed, applied, attempted)| found(dependency("dep", ready, observed, applied, attempted))),
        ]
    }

    #[test]
    fn only_a_new_revision_from_git_waits() {
        let status = GitSyncStatus {
            last_applied_revision: Some(A.into()),
            ..GitSyncStatus::default()
        };
        let apply = |revision: &str, pinned_over: Option<&str>| Target::Apply {
            revision: revision.into(),
            pinned_over: pinned_over.map(str::to_string),
        };
        assert!(waits_for_dependencies(&apply(B, None), &status), "a new head");
        assert!(!waits_for_dependencies(&apply(A, None), &status), "self-heal");
        assert!(!waits_for_dependencies(&apply(A, Some(B)), &status), "a rollback");
        assert!(!waits_for_dependencies(&Target::Hold("blocked".into()), &status));
        assert!(
            waits_for_dependencies(&apply(A, None), &GitSyncStatus::default()),
            "the first revision"
        );
    }

    proptest! {
        /// Whatever the target, the revision applied and the dependencies: a new revision from Git
        /// passes only an open gate, so it is never applied while a dependency is not Ready.
        #[test]
        fn a_new_revision_never_passes_a_closed_gate(
            applied in proptest::option::of(prop_oneof![Just(A), Just(B)]),
            revision in prop_oneof![Just(A), Just(B)],
            pinned in any::<bool>(),
            lookups in proptest::collection::vec(arb_dependency(), 0..4),
        ) {
            let status = GitSyncStatus { last_applied_revision: applied.map(str::to_string), ..GitSyncStatus::default() };
            let target = Target::Apply { revision: revision.to_string(), pinned_over: pinned.then(|| "c".repeat(40)) };
            let direct: Vec<(Key, Lookup)> =
                lookups.into_iter().enumerate().map(|(i, l)| (key(&format!("d{i}")), l)).collect();
            let open = gate(&key("api"), &direct, &BTreeMap::new()) == Gate::Open;
            // What the reconcile does: apply when the gate is open or the target does not wait.
            let applies = open || !waits_for_dependencies(&target, &status);
            let new_from_git = !pinned && status.last_applied_revision.as_deref() != Some(revision);
            if new_from_git && applies {
                prop_assert!(direct.iter().all(|(_, l)| matches!(l, Lookup::Found(g) if readiness(g).is_ok())));
            }
        }

        /// The gate opens only when every dependency is Ready, for its generation, at its latest
        /// revision: a GitSync never applies a new revision while a dependency is not Ready.
        #[test]
        fn the_gate_opens_only_when_every_dependency_is_ready(lookups in proptest::collection::vec(arb_dependency(), 0..6)) {
            let direct: Vec<(Key, Lookup)> = lookups
                .into_iter()
                .enumerate()
                .map(|(i, lookup)| (key(&format!("d{i}")), lookup))
                .collect();
            let all_ready = direct.iter().all(|(_, lookup)| match lookup {
                Lookup::Found(g) => {
                    let s = g.status.clone().unwrap_or_default();
                    let ready = conditions::find(&s.conditions, conditions::READY);
                    ready.is_some_and(|c| c.status == ConditionStatus::True && c.observed_generation == g.metadata.generation)
                        && s.last_applied_revision.is_some()
                        && s.last_applied_revision == s.last_attempted_revision
                }
                _ => false,
            });
            let decision = gate(&key("api"), &direct, &BTreeMap::new());
            prop_assert_eq!(decision == Gate::Open, all_ready);
        }

        /// Whatever the graph, the search ends, and a cycle it reports is a real path back to the start.
        #[test]
        fn a_reported_cycle_is_a_real_cycle(edges in proptest::collection::vec((0u8..8, 0u8..8), 0..40)) {
            let mut graph: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
            for (from, to) in &edges {
                graph.entry(key(&format!("n{from}"))).or_default().push(key(&format!("n{to}")));
            }
            let start = key("n0");
            if let Some(cycle) = find_cycle(&start, &graph) {
                prop_assert_eq!(cycle.first(), Some(&start));
                prop_assert_eq!(cycle.last(), Some(&start));
                for step in cycle.windows(2) {
                    prop_assert!(graph.get(&step[0]).is_some_and(|next| next.contains(&step[1])));
                }
            } else {
                // No cycle reported: no edge path back to n0 (graph small enough for the bound).
                let mut reach = BTreeSet::new();
                let mut todo = vec![start.clone()];
                while let Some(at) = todo.pop() {
                    for next in graph.get(&at).into_iter().flatten() {
                        prop_assert!(next != &start, "missed a cycle through {}", at);
                        if reach.insert(next.clone()) { todo.push(next.clone()); }
                    }
                }
            }
        }
    }
}
