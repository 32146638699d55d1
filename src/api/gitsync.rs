//! GitSync: keeps a namespace in sync with a path of a Git repository and remembers which revisions
//! were healthy, so a failed canary sends the cluster (and optionally Git) back to the last good one.
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use crate::api::duration::{self, InvalidDuration};

pub const DEFAULT_INTERVAL: &str = "1m";

/// A Git source applied to the cluster with server-side apply, pruned and self-healed.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    derive = "PartialEq",
    kind = "GitSync",
    namespaced,
    status = "GitSyncStatus",
    shortname = "gs",
    category = "sluice",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.lastAppliedRevision"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "Keeps a namespace in sync with a path of a Git repository, rolling back to the last healthy revision."
)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncSpec {
    /// URL of the repository (https://, ssh:// or a local path). May be omitted when
    /// `source.fromGitSync` is set: the repository is then the upstream's.
    #[serde(rename = "repoURL", default, skip_serializing_if = "String::is_empty")]
    pub repo_url: String,
    /// Follow another GitSync instead of a ref: apply the revisions it proved healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SyncSource>,
    /// How revisions are promoted into this GitSync from its upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// GitSyncs that must be Ready at their latest revision before this one applies anything new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<GitSyncReference>,
    /// What to check out (default: the repository's default branch).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub git_ref: Option<GitRef>,
    /// Directory within the repository holding the manifests (default: the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often to fetch and re-apply, e.g. `1m` (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "1m"), transform = duration::string_schema)]
    pub interval: Option<String>,
    /// Give up on a fetch, render or apply after this long, e.g. `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::string_schema)]
    pub timeout: Option<String>,
    /// Secret with Git credentials (username/password, or identity/known_hosts for SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// How the manifests are rendered (default plain YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<Render>,
    /// Namespace for objects that do not set one (default: the GitSync's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Delete objects that were applied before but are no longer in Git (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub prune: Option<bool>,
    /// Undo changes made to applied objects outside Git (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub self_heal: Option<bool>,
    /// Stop syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// ServiceAccount whose permissions the apply uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// What to do when a Rollout this GitSync applied fails its analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
}

impl GitSyncSpec {
    /// The interval text, or `1m` when unset.
    pub fn interval_or_default(&self) -> &str {
        self.interval.as_deref().unwrap_or(DEFAULT_INTERVAL)
    }

    /// The parsed interval (default 1m).
    pub fn interval_duration(&self) -> Result<Duration, InvalidDuration> {
        duration::parse(self.interval_or_default())
    }

    /// The parsed timeout, if set.
    pub fn timeout_duration(&self) -> Result<Option<Duration>, InvalidDuration> {
        self.timeout.as_deref().map(duration::parse).transpose()
    }

    /// Whether pruning is on (default true).
    pub fn is_prune(&self) -> bool {
        self.prune.unwrap_or(true)
    }

    /// Whether self-heal is on (default true).
    pub fn is_self_heal(&self) -> bool {
        self.self_heal.unwrap_or(true)
    }

    /// Whether syncing is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// The render type (default plain).
    pub fn render_type_or_default(&self) -> RenderType {
        self.render.as_ref().and_then(|r| r.type_).unwrap_or_default()
    }

    /// The upstream GitSync this one follows, if any.
    pub fn upstream(&self) -> Option<&UpstreamGitSync> {
        self.source.as_ref().and_then(|s| s.from_git_sync.as_ref())
    }

    /// Every upstream a promotion waits for: `source.fromGitSync` first, then `promotion.requires`.
    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamGitSync> {
        let required = self
            .promotion
            .iter()
            .flat_map(|p| p.requires.iter().map(|r| &r.git_sync));
        self.upstream().into_iter().chain(required)
    }

    /// Whether promotions into this GitSync are held.
    pub fn is_promotion_held(&self) -> bool {
        self.promotion.as_ref().and_then(|p| p.hold).unwrap_or(false)
    }

    /// `(namespace, name)` of every GitSync this one refers to (upstreams and dependencies), with
    /// `namespace` the GitSync's own where the reference names none: a change of any of them may
    /// change what this one does.
    pub fn referenced_gitsyncs<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        let upstreams = self
            .upstreams()
            .map(move |u| (u.namespace.as_deref().unwrap_or(namespace), u.name.as_str()));
        let dependencies = self
            .depends_on
            .iter()
            .map(move |d| (d.namespace.as_deref().unwrap_or(namespace), d.name.as_str()));
        upstreams.chain(dependencies)
    }

    /// The rollback action on a failed analysis (default pin).
    pub fn rollback_action_or_default(&self) -> RollbackAction {
        self.rollback
            .as_ref()
            .and_then(|r| r.on_analysis_failure)
            .unwrap_or_default()
    }
}

/// Where a GitSync's revisions come from when not from its own ref.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncSource {
    /// The upstream stage: its `lastHealthyRevision`, once healthy there for `soak`, is applied here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_git_sync: Option<UpstreamGitSync>,
}

/// An upstream stage and how long a revision must stay healthy there before it is promoted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamGitSync {
    /// Name of the upstream GitSync.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Its namespace (default: this GitSync's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// How long the revision must have been healthy upstream, e.g. `10m` (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = duration::string_schema)]
    pub soak: Option<String>,
}

/// Promotion settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// More upstreams that must all have a revision healthy (for their soak) before it is promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<PromotionRequirement>,
    /// Stop promotions into this GitSync (what runs stays); `sluice hold gitsync` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<bool>,
}

/// One more upstream a promotion waits for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRequirement {
    /// The upstream GitSync.
    pub git_sync: UpstreamGitSync,
}

/// A GitSync, by name and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncReference {
    /// Name of the GitSync.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Its namespace (default: the referring GitSync's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// A branch, tag or commit (the most specific one set wins: commit, then tag, then branch).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    /// Branch to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Tag to check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Commit SHA to check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object.
    pub name: String,
}

/// How manifests are rendered from the checked-out path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Render {
    /// plain (YAML files as they are), kustomize or helm (default plain).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[schemars(extend("default" = "plain"))]
    pub type_: Option<RenderType>,
    /// Helm options, for type helm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmRender>,
}

/// The renderer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum RenderType {
    /// YAML files as they are.
    #[default]
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
}

/// Options for `helm template`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct HelmRender {
    /// Release name (default: the GitSync's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the path, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, applied after the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values: Option<serde_json::Value>,
}

/// Any JSON object, kept as it is by the API server.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// What happens when a Rollout this GitSync applied fails its analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// none: leave it; pin: re-apply lastHealthyRevision and block the failed one until Git moves on;
    /// revert: pin, and also push a revert commit (default pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "pin"))]
    pub on_analysis_failure: Option<RollbackAction>,
    /// Branch the revert commit is pushed to (default: the followed branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_branch: Option<String>,
    /// Author of the revert commit, as `Name <email>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// The rollback action.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum RollbackAction {
    /// Do nothing (the Rollout stays aborted; Git keeps declaring the bad version).
    None,
    /// Re-apply the last healthy revision and skip the failed one until Git moves on.
    #[default]
    Pin,
    /// Pin, and push a revert commit.
    Revert,
}

/// What the GitSync controller did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last commit fetched and tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The last commit applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last commit whose Rollouts all became Healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_revision: Option<String>,
    /// When `lastHealthyRevision` became healthy (downstream stages soak from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub last_healthy_time: Option<DateTime<Utc>>,
    /// Where the revisions of a GitSync following upstream stages come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionStatus>,
    /// Objects that left Git, deleted once no Rollout of this GitSync is mid-rollout (so a rollback
    /// still finds the stable version's ConfigMaps and Secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_prune: Vec<InventoryEntry>,
    /// Commits not applied again because their canary failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_revisions: Vec<BlockedRevision>,
    /// The objects applied, for pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// Recent syncs, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SyncHistoryEntry>,
    /// Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `sluice.dev/requested-at` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
}

impl GitSyncStatus {
    /// Whether this commit is blocked.
    pub fn is_blocked(&self, revision: &str) -> bool {
        self.blocked_revisions.iter().any(|b| b.revision == revision)
    }
}

/// The promotion state of a GitSync that follows upstream stages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The revision promoted into this stage, which it applies (unless it blocked it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Where it came from: `namespace/name` of the upstream, or `sluice promote` for a forced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When it was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub promoted_at: Option<DateTime<Utc>>,
    /// The upstreams' healthy revision waiting to be promoted, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// When the candidate's soak ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub soak_until: Option<DateTime<Utc>>,
    /// Why the candidate is not promoted yet (soaking, held, blocked, upstreams disagree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The `sluice.dev/promote` annotation value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_promote_request: Option<String>,
    /// The upstreams' soaked revision last promoted or passed over (a forced promotion passes over
    /// the one upstream then): only a different one is promoted automatically, so a stage does not
    /// snap back from a forced revision to an older upstream one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_candidate: Option<String>,
    /// Recent promotions, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PromotionRecord>,
}

/// One promotion into a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRecord {
    /// The commit SHA.
    pub revision: String,
    /// `namespace/name` of the upstream, or `sluice promote`.
    pub from: String,
    /// When.
    #[schemars(with = "crate::api::Timestamp")]
    pub at: DateTime<Utc>,
    /// Promoted by hand (`sluice promote gitsync`), skipping the soak.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// Details (who asked, how long it was healthy upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A commit that is not applied again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedRevision {
    /// The commit SHA.
    pub revision: String,
    /// Why, e.g. `rollout default/checkout: analysis error-rate Failed`.
    pub reason: String,
    /// When it was blocked.
    #[schemars(with = "crate::api::Timestamp")]
    pub blocked_at: DateTime<Utc>,
    /// The commit that reverted it in Git (rollback.onAnalysisFailure: revert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_commit: Option<String>,
    /// Why no revert commit was pushed (e.g. the branch moved on), so it is not tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_message: Option<String>,
}

/// The applied objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// One entry per object.
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

/// An applied object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// `namespace_name_group_kind`, as Flux writes it.
    pub id: String,
    /// The object's API version.
    pub v: String,
}

/// One sync attempt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncHistoryEntry {
    /// The commit SHA.
    pub revision: String,
    /// When the attempt started.
    #[schemars(with = "crate::api::Timestamp")]
    pub started_at: DateTime<Utc>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Outcome, e.g. Applied, Healthy, Failed, RolledBack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn gitsync_parses_with_helm_values() {
        let sync: GitSync = serde_saphyr::from_str(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: GitSync
metadata: {name: shop, namespace: shop}
spec:
  repoURL: https://git.example.com/shop.git
  ref: {branch: main}
  path: deploy/prod
  interval: 30s
  secretRef: {name: git-creds}
  render:
    type: helm
    helm:
      releaseName: shop
      valuesFiles: [values-prod.yaml]
      values: {replicaCount: 3, image: {tag: "2.1.0"}}
  rollback: {onAnalysisFailure: revert, revertBranch: main}
"#,
        )
        .unwrap();
        let spec = &sync.spec;
        assert_eq!(spec.git_ref.as_ref().unwrap().branch.as_deref(), Some("main"));
        assert_eq!(spec.interval_duration(), Ok(Duration::from_secs(30)));
        assert_eq!(spec.render_type_or_default(), RenderType::Helm);
        let values = spec
            .render
            .as_ref()
            .unwrap()
            .helm
            .as_ref()
            .unwrap()
            .values
            .as_ref()
            .unwrap();
        assert_eq!(values["image"]["tag"], "2.1.0");
        assert_eq!(spec.rollback_action_or_default(), RollbackAction::Revert);
        let json = serde_json::to_value(&sync).unwrap();
        assert_eq!(json["spec"]["repoURL"], "https://git.example.com/shop.git");
        assert_eq!(json["spec"]["ref"]["branch"], "main");
    }

    #[test]
    fn defaults() {
        let spec = GitSync::example("s", "https://git.example.com/r.git", ".").spec;
        assert_eq!(spec.interval_or_default(), "1m");
        assert_eq!(spec.interval_duration(), Ok(Duration::from_secs(60)));
        assert!(spec.is_prune() && spec.is_self_heal() && !spec.is_suspended());
        assert_eq!(spec.render_type_or_default(), RenderType::Plain);
        assert_eq!(spec.rollback_action_or_default(), RollbackAction::Pin);
        assert_eq!(spec.timeout_duration(), Ok(None));
    }

    #[test]
    fn schema_defaults_match_accessor_defaults() {
        let crd = serde_json::to_value(GitSync::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut object = serde_json::to_value(GitSync::example("s", "https://git.example.com/r.git", ".")).unwrap();
        object["spec"]["render"] = serde_json::json!({});
        object["spec"]["rollback"] = serde_json::json!({});
        sluice_sim::schema::apply_defaults(schema, &mut object);
        let defaulted: GitSync = serde_json::from_value(object).unwrap();
        let (spec, bare) = (&defaulted.spec, GitSyncSpec::default());
        assert_eq!(spec.interval.as_deref(), Some(bare.interval_or_default()));
        assert_eq!(spec.prune, Some(bare.is_prune()));
        assert_eq!(spec.self_heal, Some(bare.is_self_heal()));
        assert_eq!(spec.render.as_ref().unwrap().type_, Some(bare.render_type_or_default()));
        assert_eq!(
            spec.rollback.as_ref().unwrap().on_analysis_failure,
            Some(bare.rollback_action_or_default())
        );
    }

    #[test]
    fn referenced_gitsyncs_name_upstreams_then_dependencies_in_their_namespaces() {
        let sync: GitSync = serde_saphyr::from_str(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: GitSync
metadata: {name: prod, namespace: shop-prod}
spec:
  source: {fromGitSync: {name: staging, namespace: shop-staging, soak: 10m}}
  promotion:
    requires: [{gitSync: {name: staging-eu, namespace: shop-staging}}]
    hold: true
  dependsOn: [{name: db}]
"#,
        )
        .unwrap();
        let referenced: Vec<_> = sync.spec.referenced_gitsyncs("shop-prod").collect();
        assert_eq!(
            referenced,
            [
                ("shop-staging", "staging"),
                ("shop-staging", "staging-eu"),
                ("shop-prod", "db")
            ]
        );
        assert!(sync.spec.is_promotion_held());
        assert_eq!(sync.spec.upstream().unwrap().soak.as_deref(), Some("10m"));
        assert!(sync.spec.repo_url.is_empty());
        let json = serde_json::to_value(&sync).unwrap();
        assert!(
            json["spec"].get("repoURL").is_none(),
            "an omitted repoURL stays omitted"
        );
    }

    #[test]
    fn status_blocked_revisions() {
        let status = GitSyncStatus {
            blocked_revisions: vec![BlockedRevision {
                revision: "abc123".into(),
                reason: "rollout shop/checkout: analysis success-rate Failed".into(),
                blocked_at: chrono::DateTime::UNIX_EPOCH,
                revert_commit: None,
                revert_message: None,
            }],
            ..GitSyncStatus::default()
        };
        assert!(status.is_blocked("abc123") && !status.is_blocked("def456"));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["blockedRevisions"][0]["blockedAt"], "1970-01-01T00:00:00Z");
    }
}
