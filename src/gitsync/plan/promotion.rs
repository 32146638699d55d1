//! Promotion between stages, decided without I/O: which revision a GitSync that follows upstream
//! GitSyncs (`spec.source.fromGitSync`, `spec.promotion.requires`) runs — the one its upstreams proved
//! healthy for their soak and nobody on the way blocked, or one forced with `sluice.dev/promote` — or
//! why it waits. The result is the "head" `plan::decide` works from, so this stage's own blocking and
//! pinning stay exactly as for a GitSync following a branch.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::gitsync::{GitSyncSpec, GitSyncStatus, PromotionRecord, PromotionStatus, RollbackAction};
use crate::bounds::{keep_newest, truncate};
use crate::gitsync::plan::{MAX_STATUS_MESSAGE_BYTES, short};
use crate::rollout::plan::humantime;

/// How far a chain of upstreams is followed (cycle search, repository lookup); deeper is refused.
pub const MAX_CHAIN_DEPTH: usize = 16;
/// How many GitSyncs one chain may hold in all (the reconcile reads at most this many).
pub const MAX_CHAIN_NODES: usize = 64;
/// How many `spec.promotion.requires` entries are accepted.
pub const MAX_REQUIRES: usize = 8;
/// How many promotions status.promotion.history keeps.
pub const PROMOTION_HISTORY_LIMIT: usize = 10;
/// The longest `sluice.dev/promote` value acted on.
pub const MAX_PROMOTE_REQUEST_BYTES: usize = 256;
/// The longest request id in a `sluice.dev/promote` value.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// `from` of a forced promotion.
pub const FORCED_FROM: &str = "sluice promote";
/// Condition reason while nothing has been promoted yet.
pub const WAITING_FOR_UPSTREAM: &str = "WaitingForUpstream";
/// Condition reason while nothing has been promoted yet and promotions are held.
pub const PROMOTION_HELD: &str = "PromotionHeld";

/// `namespace/name` of a GitSync: how the chain names its members.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// What promotion needs to know of one GitSync of the chain.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StageNode {
    /// Its spec.repoURL, when it names one.
    pub repo_url: Option<String>,
    /// Keys of its own upstreams, `fromGitSync` first.
    pub upstreams: Vec<String>,
    pub last_healthy_revision: Option<String>,
    pub last_healthy_time: Option<DateTime<Utc>>,
    /// Its status.blockedRevisions.
    pub blocked: Vec<String>,
}

impl StageNode {
    pub fn new(namespace: &str, spec: &GitSyncSpec, status: Option<&GitSyncStatus>) -> StageNode {
        StageNode {
            repo_url: Some(spec.repo_url.trim().to_string()).filter(|url| !url.is_empty()),
            upstreams: spec
                .upstreams()
                .take(MAX_REQUIRES + 1)
                .map(|u| key(u.namespace.as_deref().unwrap_or(namespace), &u.name))
                .collect(),
            last_healthy_revision: status.and_then(|s| s.last_healthy_revision.clone()),
            last_healthy_time: status.and_then(|s| s.last_healthy_time),
            blocked: status
                .map(|s| s.blocked_revisions.iter().map(|b| b.revision.clone()).collect())
                .unwrap_or_default(),
        }
    }
}

/// One GitSync of the chain as the reconcile found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Found(StageNode),
    /// Not found, not readable as this GitSync's identity, or the read timed out: why.
    Unavailable(String),
}

/// Every GitSync reachable from the one deciding (itself included), by key.
pub type Chain = BTreeMap<String, Stage>;

/// A validated upstream of the deciding GitSync.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    pub key: String,
    pub soak: Duration,
    /// The spec field naming it, for messages.
    pub field: String,
}

/// The upstreams of `spec` with their soaks, or the Stalled message naming the bad field.
pub fn upstreams(spec: &GitSyncSpec, namespace: &str) -> Result<Vec<Upstream>, String> {
    let Some(primary) = spec.upstream() else {
        return Err(match spec.promotion.as_ref().is_some_and(|p| !p.requires.is_empty()) {
            true => "spec.promotion.requires: needs spec.source.fromGitSync (the upstream followed)".into(),
            false => "spec.source.fromGitSync: not set".into(),
        });
    };
    if spec.git_ref.is_some() {
        return Err(
            "spec.ref: must not be set with spec.source.fromGitSync (the revision comes from the upstream)".into(),
        );
    }
    if spec.rollback_action_or_default() == RollbackAction::Revert {
        return Err(
            "spec.rollback.onAnalysisFailure: revert pushes to the followed branch, and a stage following \
                    another GitSync follows none: use pin (the default)"
                .into(),
        );
    }
    let requires = spec
        .promotion
        .as_ref()
        .map(|p| p.requires.as_slice())
        .unwrap_or_default();
    if requires.len() > MAX_REQUIRES {
        return Err(format!(
            "spec.promotion.requires: {} entries, at most {MAX_REQUIRES} are allowed",
            requires.len()
        ));
    }
    let named = std::iter::once(("spec.source.fromGitSync".to_string(), primary)).chain(
        requires
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("spec.promotion.requires[{i}].gitSync"), &r.git_sync)),
    );
    let mut result: Vec<Upstream> = Vec::new();
    for (field, upstream) in named {
        check_name(&upstream.name, 253).map_err(|why| format!("{field}.name: {why}"))?;
        if let Some(ns) = &upstream.namespace {
            check_name(ns, 63).map_err(|why| format!("{field}.namespace: {why}"))?;
            if ns.contains('.') {
                return Err(format!("{field}.namespace: must not contain '.' (RFC 1123 label)"));
            }
        }
        let soak = match upstream.soak.as_deref() {
            None => Duration::ZERO,
            Some(text) => crate::api::duration::parse(text).map_err(|e| format!("{field}.soak: {e}"))?,
        };
        let key = key(upstream.namespace.as_deref().unwrap_or(namespace), &upstream.name);
        if let Some(first) = result.iter().find(|u| u.key == key) {
            return Err(format!("{field}: names {key} again (already in {})", first.field));
        }
        result.push(Upstream { key, soak, field });
    }
    Ok(result)
}

/// Kubernetes object names: lower-case alphanumerics, '-' and '.', alphanumeric at both ends.
pub fn check_name(name: &str, max: usize) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() || name.len() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if !name.chars().all(|c| alnum(c) || c == '-' || c == '.') || !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err("must be lower-case alphanumerics, '-' and '.', starting and ending with an alphanumeric".into());
    }
    Ok(())
}

/// What is wrong with the shape of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    /// The keys of a loop, its first repeated at the end.
    Cycle(Vec<String>),
    /// Deeper than [`MAX_CHAIN_DEPTH`]: the path followed.
    TooDeep(Vec<String>),
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Cycle(keys) => write!(f, "the upstreams form a cycle: {}", keys.join(" → ")),
            ChainProblem::TooDeep(keys) => write!(
                f,
                "the chain of upstreams is deeper than {MAX_CHAIN_DEPTH}: {} → …",
                keys.join(" → ")
            ),
        }
    }
}

/// A loop (or a chain too deep to follow) among the upstreams reachable from `start`: a depth-first
/// walk with a visited set, so each GitSync is expanded once, and a hard depth bound.
pub fn chain_problem(start: &str, chain: &Chain) -> Option<ChainProblem> {
    fn walk(key: &str, chain: &Chain, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Result<(), ChainProblem> {
        if let Some(at) = path.iter().position(|k| k == key) {
            let mut cycle = path[at..].to_vec();
            cycle.push(key.to_string());
            return Err(ChainProblem::Cycle(cycle));
        }
        if done.contains(key) {
            return Ok(());
        }
        if path.len() >= MAX_CHAIN_DEPTH {
            return Err(ChainProblem::TooDeep(path.clone()));
        }
        path.push(key.to_string());
        if let Some(Stage::Found(node)) = chain.get(key) {
            for upstream in &node.upstreams {
                walk(upstream, chain, path, done)?;
            }
        }
        path.pop();
        done.insert(key.to_string());
        Ok(())
    }
    walk(start, chain, &mut Vec::new(), &mut BTreeSet::new()).err()
}

/// The repository of the GitSync `start`: its own repoURL, else its `fromGitSync`'s, and so on up.
/// `Err` says what is missing (an upstream not read, or none naming a repository).
pub fn resolve_repo(start: &str, chain: &Chain) -> Result<String, String> {
    let mut key = start;
    for _ in 0..MAX_CHAIN_DEPTH {
        match chain.get(key) {
            None => return Err(format!("upstream {key}: not read yet")),
            Some(Stage::Unavailable(why)) => return Err(format!("upstream {key}: {why}")),
            Some(Stage::Found(node)) => match (&node.repo_url, node.upstreams.first()) {
                (Some(url), _) => return Ok(url.clone()),
                (None, Some(next)) => key = next,
                (None, None) => return Err(format!("upstream {key} names no repository (spec.repoURL)")),
            },
        }
    }
    Err(format!("no repository within {MAX_CHAIN_DEPTH} upstreams of {start}"))
}

/// Two repository URLs name the same repository (a trailing `/` or `.git` aside).
fn same_repo(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.trim().trim_end_matches('/');
        u.strip_suffix(".git").unwrap_or(u).to_string()
    };
    norm(a) == norm(b)
}

/// A `sluice.dev/promote` value: `<request id>` (promote the upstream's healthy revision now) or
/// `<request id>@<commit SHA>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteRequest {
    pub id: String,
    /// Lower-case hex, 4 to 64 digits.
    pub revision: Option<String>,
}

impl PromoteRequest {
    pub fn parse(value: &str) -> Result<PromoteRequest, String> {
        if value.len() > MAX_PROMOTE_REQUEST_BYTES {
            return Err(format!("longer than {MAX_PROMOTE_REQUEST_BYTES} bytes"));
        }
        let (id, revision) = match value.rsplit_once('@') {
            Some((id, sha)) => (id, Some(sha)),
            None => (value, None),
        };
        if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES {
            return Err(format!("the request id must be 1 to {MAX_REQUEST_ID_BYTES} bytes"));
        }
        if id.chars().any(|c| c.is_control() || c.is_whitespace() || c == '@') {
            return Err("the request id must not contain spaces, control characters or '@'".into());
        }
        let revision = match revision {
            None => None,
            Some(sha) if (4..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit()) => {
                Some(sha.to_ascii_lowercase())
            }
            Some(sha) => {
                return Err(format!(
                    "{:?} is not a commit SHA (4 to 64 hex digits)",
                    truncate(sha, 70)
                ));
            }
        };
        Ok(PromoteRequest {
            id: id.to_string(),
            revision,
        })
    }

    /// The annotation value for this request.
    pub fn value(&self) -> String {
        match &self.revision {
            Some(revision) => format!("{}@{revision}", self.id),
            None => self.id.clone(),
        }
    }
}

/// Everything a promotion decision depends on.
#[derive(Clone, Debug)]
pub struct PromotionInput<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a GitSyncSpec,
    pub status: &'a GitSyncStatus,
    /// The GitSyncs reachable upstream, as read (this one may be in it too: a cycle).
    pub chain: &'a Chain,
    /// The value of the `sluice.dev/promote` annotation.
    pub request: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// A promotion event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionEvent {
    /// `Promoted`, `PromotionForced` or `PromotionRefused`.
    pub reason: &'static str,
    pub warning: bool,
    pub note: String,
}

/// What promotion decided.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotionPlan {
    /// The spec (or the chain) cannot work until someone changes it: nothing is applied.
    pub stalled: Option<String>,
    /// The repository the chain follows, when known.
    pub repo_url: Option<String>,
    /// The revision this stage runs (fed to `plan::decide` as the head); `None`: nothing promoted yet.
    pub head: Option<String>,
    /// Why nothing new is promoted now, and the condition reason to show while nothing runs yet.
    pub waiting: Option<(&'static str, String)>,
    /// The new status.promotion.
    pub status: PromotionStatus,
    pub events: Vec<PromotionEvent>,
    /// Look again then: the candidate's soak ends.
    pub recheck_in: Option<Duration>,
}

/// One direct upstream as found.
struct View<'a> {
    upstream: &'a Upstream,
    node: &'a StageNode,
}

/// Decides what this stage runs: a forced request first (once per request id), else the upstreams'
/// common healthy revision once every one of them had it healthy for its soak, never one blocked here
/// or anywhere upstream, never while held, and only when that candidate differs from the one last
/// acted on (so a forced revision is not replaced by an older upstream one).
pub fn plan(input: &PromotionInput<'_>) -> PromotionPlan {
    let current = input.status.promotion.clone().unwrap_or_default();
    let stalled = |message: String| PromotionPlan {
        stalled: Some(message),
        repo_url: None,
        head: current.revision.clone(),
        waiting: None,
        status: current.clone(),
        events: Vec::new(),
        recheck_in: None,
    };
    let upstreams = match upstreams(input.spec, input.namespace) {
        Ok(upstreams) => upstreams,
        Err(message) => return stalled(message),
    };
    let own = key(input.namespace, input.name);
    if let Some(problem) = chain_problem(&own, input.chain) {
        return stalled(format!("spec.source.fromGitSync: {problem}"));
    }

    // The repository: every upstream must follow the same one, and spec.repoURL (if set) name it.
    let mut repo_url: Option<(String, &Upstream)> = None;
    let mut waits: Vec<String> = Vec::new();
    for upstream in &upstreams {
        match resolve_repo(&upstream.key, input.chain) {
            Ok(url) => match &repo_url {
                Some((first, by)) if !same_repo(first, &url) => {
                    return stalled(format!(
                        "{}: {} follows repository {url}, but {} follows {first}: a revision exists in one repository",
                        upstream.field, upstream.key, by.key
                    ));
                }
                Some(_) => {}
                None => repo_url = Some((url, upstream)),
            },
            Err(why) => waits.push(why),
        }
    }
    let own_url = input.spec.repo_url.trim();
    if let Some((url, by)) = &repo_url
        && !own_url.is_empty()
        && !same_repo(own_url, url)
    {
        return stalled(format!(
            "spec.repoURL: {own_url} is not the repository of upstream {} ({url}); omit it or name the same",
            by.key
        ));
    }

    // Blocked anywhere: here, or in any GitSync of the chain upstream.
    let mut blocked_in: Vec<(&str, &str)> = input
        .status
        .blocked_revisions
        .iter()
        .map(|b| (b.revision.as_str(), "this GitSync"))
        .collect();
    for (key, stage) in input.chain {
        if let (Stage::Found(node), false) = (stage, *key == own) {
            blocked_in.extend(node.blocked.iter().map(|r| (r.as_str(), key.as_str())));
        }
    }
    // A forced SHA may be abbreviated: a blocked commit it could name refuses it.
    let blocked = |revision: &str| -> Option<String> {
        let revision = revision.to_ascii_lowercase();
        blocked_in
            .iter()
            .find(|(b, _)| {
                let b = b.to_ascii_lowercase();
                b.starts_with(&revision) || revision.starts_with(&b)
            })
            .map(|(_, where_)| where_.to_string())
    };

    let mut views: Vec<View<'_>> = Vec::new();
    for upstream in &upstreams {
        match input.chain.get(&upstream.key) {
            Some(Stage::Found(node)) => views.push(View { upstream, node }),
            Some(Stage::Unavailable(why)) => waits.push(format!("upstream {}: {why}", upstream.key)),
            None => waits.push(format!("upstream {}: not read yet", upstream.key)),
        }
    }
    let all_found = views.len() == upstreams.len();
    let primary_healthy = views
        .first()
        .filter(|v| v.upstream.field == "spec.source.fromGitSync")
        .and_then(|v| v.node.last_healthy_revision.clone());

    // The candidate: the upstreams' common healthy revision, and when every soak is over.
    let mut candidate: Option<String> = None;
    let mut soak_until: Option<DateTime<Utc>> = None;
    let mut ready = false;
    if all_found && waits.is_empty() {
        match &primary_healthy {
            None => waits.push(format!("upstream {} has no healthy revision yet", upstreams[0].key)),
            Some(revision) => {
                let disagree = views
                    .iter()
                    .any(|v| v.node.last_healthy_revision.as_deref() != Some(revision.as_str()));
                if disagree {
                    let who: Vec<String> = views
                        .iter()
                        .map(|v| {
                            let has = v.node.last_healthy_revision.as_deref().map(short).unwrap_or("none");
                            format!("{} has {has}", v.upstream.key)
                        })
                        .collect();
                    waits.push(format!(
                        "every upstream must have revision {} healthy: {}",
                        short(revision),
                        who.join(", ")
                    ));
                } else if let Some(where_) = blocked(revision) {
                    waits.push(format!("revision {} is blocked in {where_}", short(revision)));
                } else {
                    candidate = Some(revision.clone());
                    let mut soaking: Vec<String> = Vec::new();
                    for view in &views {
                        let end = view
                            .node
                            .last_healthy_time
                            .and_then(|since| TimeDelta::from_std(view.upstream.soak).ok().map(|d| (since, d)))
                            .and_then(|(since, soak)| since.checked_add_signed(soak));
                        match end {
                            Some(end) if end <= input.now => {}
                            Some(end) => {
                                soak_until = soak_until.max(Some(end));
                                let left = (end - input.now).to_std().unwrap_or_default();
                                soaking.push(format!(
                                    "{} soaks {} more (soak {})",
                                    view.upstream.key,
                                    humantime(left),
                                    humantime(view.upstream.soak)
                                ));
                            }
                            None if view.upstream.soak.is_zero() => {}
                            None => soaking.push(format!(
                                "{} does not say since when it is healthy (status.lastHealthyTime)",
                                view.upstream.key
                            )),
                        }
                    }
                    if soaking.is_empty() {
                        ready = true;
                    } else {
                        waits.push(format!(
                            "revision {} is soaking: {}",
                            short(revision),
                            soaking.join(", ")
                        ));
                    }
                }
            }
        }
    }

    let held = input.spec.is_promotion_held();
    let mut next = current.clone();
    let mut events = Vec::new();
    let mut forced = false;
    // A forced request, once per value.
    if let Some(value) = input.request {
        let value = truncate(value, MAX_PROMOTE_REQUEST_BYTES + 1).into_owned();
        if current.last_handled_promote_request.as_deref() != Some(value.as_str()) {
            next.last_handled_promote_request = Some(value.clone());
            let refuse = |note: String| PromotionEvent {
                reason: "PromotionRefused",
                warning: true,
                note,
            };
            match PromoteRequest::parse(&value) {
                Err(why) => events.push(refuse(format!("annotation sluice.dev/promote: {why}: not promoted"))),
                Ok(_) if held => events.push(refuse(format!(
                    "promotions into {own} are held (spec.promotion.hold): release the hold first \
                     (`sluice hold gitsync {} --release`)",
                    input.name
                ))),
                Ok(request) => match request.revision.clone().or_else(|| primary_healthy.clone()) {
                    None => events.push(refuse(format!(
                        "request {}: no revision given and upstream {} has no healthy revision: not promoted",
                        request.id, upstreams[0].key
                    ))),
                    Some(revision) => match blocked(&revision) {
                        Some(where_) => events.push(refuse(format!(
                            "request {}: revision {} is blocked in {where_}: not promoted",
                            request.id,
                            short(&revision)
                        ))),
                        None => {
                            let note = format!(
                                "revision {} promoted by request {} (soak skipped)",
                                short(&revision),
                                request.id
                            );
                            promote(&mut next, &revision, FORCED_FROM, true, note.clone(), input.now);
                            // The upstream's revision of now is passed over: not promoted over this one later.
                            next.handled_candidate = primary_healthy.clone().or(next.handled_candidate);
                            events.push(PromotionEvent {
                                reason: "PromotionForced",
                                warning: false,
                                note,
                            });
                            forced = true;
                        }
                    },
                },
            }
        }
    }
    let fresh = |next: &PromotionStatus, revision: &str| next.handled_candidate.as_deref() != Some(revision);
    if let Some(revision) = candidate.clone().filter(|r| ready && !forced && fresh(&next, r)) {
        if held {
            waits.push(format!(
                "revision {} is ready but promotions are held (spec.promotion.hold)",
                short(&revision)
            ));
        } else {
            if next.revision.as_deref() != Some(revision.as_str()) {
                let how_long: Vec<String> = views
                    .iter()
                    .map(|v| {
                        let since = v.node.last_healthy_time.unwrap_or(input.now);
                        let healthy = (input.now - since).to_std().unwrap_or_default();
                        format!(
                            "healthy in {} for {} (soak {})",
                            v.upstream.key,
                            humantime(healthy),
                            humantime(v.upstream.soak)
                        )
                    })
                    .collect();
                let note = format!("revision {}: {}", short(&revision), how_long.join(", "));
                promote(&mut next, &revision, &upstreams[0].key, false, note.clone(), input.now);
                events.push(PromotionEvent {
                    reason: "Promoted",
                    warning: false,
                    note,
                });
            }
            next.handled_candidate = Some(revision);
        }
    }
    if held && waits.is_empty() {
        waits.push("promotions are held (spec.promotion.hold)".into());
    }
    let pending = candidate.filter(|r| fresh(&next, r) && next.revision.as_deref() != Some(r.as_str()));
    next.soak_until = soak_until.filter(|_| pending.is_some());
    next.candidate = pending;
    next.waiting = waits
        .first()
        .map(|w| truncate(w, MAX_STATUS_MESSAGE_BYTES).into_owned());
    let reason = if held { PROMOTION_HELD } else { WAITING_FOR_UPSTREAM };
    PromotionPlan {
        stalled: None,
        repo_url: repo_url.map(|(url, _)| url),
        head: next.revision.clone(),
        waiting: next.waiting.clone().map(|w| (reason, w)),
        recheck_in: next.soak_until.and_then(|end| (end - input.now).to_std().ok()),
        status: next,
        events,
    }
}

/// Whether a Stalled message is one [`plan`] gives (so it ends when the plan no longer stalls).
pub fn is_promotion_stall(message: &str) -> bool {
    [
        "spec.source.",
        "spec.promotion",
        "spec.repoURL: ",
        "spec.ref: must not be set with",
        "spec.rollback.onAnalysisFailure: revert pushes to the followed branch",
    ]
    .iter()
    .any(|prefix| message.starts_with(prefix))
}

fn promote(
    status: &mut PromotionStatus,
    revision: &str,
    from: &str,
    forced: bool,
    message: String,
    now: DateTime<Utc>,
) {
    status.revision = Some(revision.to_string());
    status.from = Some(from.to_string());
    status.promoted_at = Some(now);
    status.history.push(PromotionRecord {
        revision: revision.to_string(),
        from: from.to_string(),
        at: now,
        forced,
        message: Some(truncate(&message, MAX_STATUS_MESSAGE_BYTES).into_owned()),
    });
    keep_newest(&mut status.history, PROMOTION_HISTORY_LIMIT);
}

/// After the fetch resolved a forced, abbreviated SHA to the full one, the status names the full one.
pub fn resolve_revision(status: &mut PromotionStatus, fetched: &str) {
    let Some(promoted) = status.revision.clone() else {
        return;
    };
    if promoted == fetched || !fetched.starts_with(&promoted) {
        return;
    }
    status.revision = Some(fetched.to_string());
    for record in status.history.iter_mut().filter(|r| r.revision == promoted) {
        record.revision = fetched.to_string();
    }
}

#[cfg(test)]
mod tests;
