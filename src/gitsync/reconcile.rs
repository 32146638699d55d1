//! The GitSync reconciler: observe (Git head when a sync is due, the Rollouts it applied), decide
//! (`plan::decide`), act (block, apply, prune, revert), then write status and events.
//!
//! A sync (fetch + apply) runs every interval, on a spec change, on `sluice.dev/requested-at` and on a
//! webhook. Changes of the GitSync's Rollouts also reconcile, without fetching: that is how an abort
//! is noticed within one watch event and the last healthy revision re-applied at once.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::conditions;
use crate::api::gitsync::{GitRef, GitSync, GitSyncStatus};
use crate::api::rollout::Rollout;
use crate::client::{self, ClientOptions};
use crate::events::{Event, EventType, Recorder};
use crate::gitsync::apply::{self, ApplyError, DiscoveredScope, DiscoveryCache};
use crate::gitsync::depends_on;
use crate::gitsync::git::{Credentials, GitSource, RevertRequest, SourceError};
use crate::gitsync::health::{self, Health};
use crate::gitsync::manifest::{self, ObjectId, PrepareContext};
use crate::gitsync::plan::dependencies::{self, Gate};
use crate::gitsync::plan::promotion::{self, PromotionInput, PromotionPlan};
use crate::gitsync::plan::{
    self, Decision, Observed, Prune, RolloutState, SyncAttempt, SyncResult, SyncTrigger, Target, Timings, short,
};
use crate::gitsync::render::{self, RenderInput, Tools};
use crate::gitsync::webhook::{WEBHOOK_SECRET_KEY, WebhookSecrets};
use crate::gitsync::{PROMOTE_ANNOTATION, REQUESTED_AT_ANNOTATION, gitsync_label_value, upstream};
use crate::merge_patch::merge_diff;
use crate::observe::Observer;

/// A sync that names no timeout gives up after this long.
pub use crate::gitsync::plan::DEFAULT_TIMEOUT;
/// Keys of a GitSync's Secret that hold Git credentials (Flux's names).
const GIT_CREDENTIAL_KEYS: [&str; 4] = ["username", "password", "token", "identity"];
/// Default author of revert commits.
const DEFAULT_AUTHOR: &str = "Sluice <sluice@sluice.dev>";

pub use crate::api::keys::GITSYNC_CLEANUP_FINALIZER as CLEANUP_FINALIZER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("gitsync {gitsync}: deleting what it applied: {message}")]
    Cleanup { gitsync: String, message: String },
    #[error("{0}")]
    Finalizer(String),
    /// A bug met this GitSync (see `controller::isolate`).
    #[error("gitsync {gitsync}: reconcile panicked: {message}")]
    Panicked { gitsync: String, message: String },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Cleanup { .. } => "cleanup",
            Error::Finalizer(_) => "finalizer",
            Error::Panicked { .. } => "panic",
        }
    }

    pub fn panicked(gitsync: &GitSync, message: String) -> Error {
        Error::Panicked {
            gitsync: format!("{}/{}", gitsync.namespace().unwrap_or_default(), gitsync.name_any()),
            message,
        }
    }
}

impl From<FinalizerError<Error>> for Error {
    fn from(error: FinalizerError<Error>) -> Self {
        match error {
            FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
            FinalizerError::AddFinalizer(source) => Error::Kube {
                what: format!("adding finalizer {CLEANUP_FINALIZER}"),
                source,
            },
            FinalizerError::RemoveFinalizer(source) => Error::Kube {
                what: format!("removing finalizer {CLEANUP_FINALIZER}"),
                source,
            },
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Shared by every GitSync reconcile.
pub struct Context {
    pub client: Client,
    /// The controller's own client configuration, to impersonate a GitSync's ServiceAccount.
    pub kube_config: Option<kube::Config>,
    /// How impersonating clients are built (the controller's rate limit and write gate).
    client_options: Option<ClientOptions>,
    pub source: GitSource,
    pub tools: Tools,
    pub discovery: DiscoveryCache,
    pub recorder: Recorder,
    pub metrics: Arc<dyn Observer>,
    /// When each GitSync last fetched (in memory: after a restart every GitSync syncs once at once).
    last_sync: Mutex<HashMap<ObjectRef<GitSync>, Instant>>,
    /// Syncs asked for by the webhook, taken by the next reconcile.
    requested: Mutex<HashSet<ObjectRef<GitSync>>>,
    /// Clients impersonating ServiceAccounts, by `namespace/name`.
    impersonated: Mutex<HashMap<String, Client>>,
    /// The `webhookSecret` each sync read, for the webhook to check signatures without an API call.
    pub webhook_secrets: WebhookSecrets,
    /// Who a GitSync applies as when it names no ServiceAccount (`--gitsync-default-service-account`,
    /// `--gitsync-apply-as-controller`).
    pub tenancy: Tenancy,
}

/// Who a GitSync that names no `spec.serviceAccountName` applies as (Flux's model).
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    /// This ServiceAccount of the GitSync's own namespace.
    pub default_service_account: Option<String>,
    /// Else the controller itself, with whatever it may do (deploy/components/gitsync-admin grants it). Off: the
    /// controller applies only namespaced objects into the GitSync's own namespace.
    pub apply_as_controller: bool,
}

impl Context {
    pub fn new(
        client: Client,
        kube_config: Option<kube::Config>,
        client_options: Option<ClientOptions>,
        source: GitSource,
        tools: Tools,
        recorder: Recorder,
        metrics: Arc<dyn Observer>,
    ) -> Self {
        Context {
            discovery: DiscoveryCache::new(client.clone()),
            client,
            kube_config,
            client_options,
            source,
            tools,
            recorder,
            metrics,
            last_sync: Mutex::default(),
            requested: Mutex::default(),
            impersonated: Mutex::default(),
            webhook_secrets: WebhookSecrets::default(),
            tenancy: Tenancy::default(),
        }
    }

    /// Sets who GitSyncs without a ServiceAccount apply as.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// The ServiceAccount a GitSync applies, prunes and reads as: its own, else the default one.
    pub fn service_account<'a>(&'a self, gitsync: &'a GitSync) -> Option<&'a str> {
        gitsync
            .spec
            .service_account_name
            .as_deref()
            .or(self.tenancy.default_service_account.as_deref())
    }

    /// The namespace a GitSync applying as the controller is confined to (None: not confined).
    fn confinement<'a>(&self, gitsync: &'a GitSync) -> Option<&'a str> {
        let confined = self.service_account(gitsync).is_none() && !self.tenancy.apply_as_controller;
        confined.then(|| gitsync.metadata.namespace.as_deref().unwrap_or_default())
    }

    /// Marks a sync as wanted by the webhook; the caller then triggers a reconcile.
    pub fn request_sync(&self, gitsync: ObjectRef<GitSync>) {
        self.requested.lock().unwrap_or_else(|e| e.into_inner()).insert(gitsync);
    }

    fn take_request(&self, gitsync: &ObjectRef<GitSync>) -> bool {
        self.requested.lock().unwrap_or_else(|e| e.into_inner()).remove(gitsync)
    }

    fn since_last_sync(&self, gitsync: &ObjectRef<GitSync>) -> Option<Duration> {
        let last = self.last_sync.lock().unwrap_or_else(|e| e.into_inner());
        last.get(gitsync).map(Instant::elapsed)
    }

    fn mark_synced(&self, gitsync: ObjectRef<GitSync>, at: Instant) {
        self.last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(gitsync, at);
    }

    /// Drops everything kept about a GitSync that is gone: its sync time, a pending webhook request,
    /// its webhook secret and its metrics series.
    pub fn forget(&self, namespace: &str, name: &str) {
        let gitsync = ObjectRef::<GitSync>::new(name).within(namespace);
        self.last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&gitsync);
        self.requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&gitsync);
        self.webhook_secrets.forget(namespace, name);
        self.metrics.observe_gitsync(namespace, name, None);
    }

    /// How many GitSyncs each per-object memory holds (tests look for leaks with it). The clients
    /// impersonating ServiceAccounts are kept per ServiceAccount, shared by GitSyncs, and not counted.
    pub fn per_object_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            (
                "last syncs",
                self.last_sync.lock().unwrap_or_else(|e| e.into_inner()).len(),
            ),
            (
                "requested syncs",
                self.requested.lock().unwrap_or_else(|e| e.into_inner()).len(),
            ),
            ("webhook secrets", self.webhook_secrets.len()),
        ]
    }

    /// The client a GitSync applies with: its (or the default) ServiceAccount, else the controller's.
    fn client_for(&self, gitsync: &GitSync) -> Result<Client, String> {
        let Some(account) = self.service_account(gitsync) else {
            return Ok(self.client.clone());
        };
        let namespace = gitsync.namespace().unwrap_or_default();
        let key = format!("{namespace}/{account}");
        let mut cache = self.impersonated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = cache.get(&key) {
            return Ok(client.clone());
        }
        let Some(config) = self.kube_config.clone() else {
            return Err("spec.serviceAccountName: this controller was started without a client configuration it can impersonate with".into());
        };
        let client = impersonating(config, self.client_options.as_ref(), &namespace, account)?;
        cache.insert(key, client.clone());
        Ok(client)
    }
}

fn impersonating(
    mut config: kube::Config,
    options: Option<&ClientOptions>,
    namespace: &str,
    account: &str,
) -> Result<Client, String> {
    // The API server adds the ServiceAccount's groups itself when impersonating one, so only the user
    // is named (no `impersonate` on groups needed).
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
    match options {
        Some(options) => client::build(config, options).map_err(|e| format!("spec.serviceAccountName: {e}")),
        None => Client::try_from(config).map_err(|e| format!("spec.serviceAccountName: {e}")),
    }
}

pub fn error_policy(gitsync: Arc<GitSync>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(gitsync = %gitsync.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_reconcile_error("gitsync", error.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

pub async fn reconcile(gitsync: Arc<GitSync>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &gitsync.namespace().unwrap_or_default());
    // The cache lags the controller's own status writes (the inventory stored mid-sync, the status at
    // the end), and the reconcile those writes trigger can start before the watch delivers the last
    // one: on that copy an applied revision looks new and would be applied (and announced) again.
    // So a reconcile decides on the GitSync as the API has it now.
    let gitsync = match api.get_opt(&gitsync.name_any()).await {
        Ok(Some(live)) => Arc::new(live),
        Ok(None) => return Ok(Requeue::await_change()),
        Err(source) => {
            return Err(Error::Kube {
                what: format!("reading GitSync {}", gitsync.name_any()),
                source,
            });
        }
    };
    // The finalizer is added before the first sync applies anything, so a deletion always gets its cleanup.
    let result = finalizer(&api, CLEANUP_FINALIZER, gitsync, |event| async {
        match event {
            FinalizerEvent::Apply(gitsync) => reconcile_inner(&gitsync, &ctx).await,
            FinalizerEvent::Cleanup(gitsync) => cleanup(&gitsync, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.count_reconcile("gitsync", started.elapsed());
    result
}

/// Deleting a GitSync deletes what it applied, when prune is on and it is not suspended (as Flux does),
/// through the same checks as a prune: objects another GitSync took over or marked
/// `sluice.dev/prune: disabled` stay. Until that succeeds the GitSync stays, Terminating, and this retries.
async fn cleanup(gitsync: &GitSync, ctx: &Context) -> Result<Requeue, Error> {
    let (namespace, name) = (gitsync.namespace().unwrap_or_default(), gitsync.name_any());
    ctx.webhook_secrets.forget(&namespace, &name);
    ctx.metrics.observe_gitsync(&namespace, &name, None);
    let status = gitsync.status.clone().unwrap_or_default();
    let targets = match plan::cleanup_targets(&gitsync.spec, &status) {
        Ok(targets) => targets,
        Err(why) => {
            let note = format!("deleted; what it applied is left in place: {why}");
            info(ctx, gitsync, "CleanupSkipped", &note).await;
            return Ok(Requeue::await_change());
        }
    };
    let failed = |message: String| Error::Cleanup {
        gitsync: format!("{namespace}/{name}"),
        message,
    };
    // Deleting the namespace deletes the ServiceAccount too, and impersonating a deleted account can
    // never succeed: the GitSync (and its namespace) would stay Terminating for good. Flux skips the
    // cleanup then as well.
    if let Some(account) = ctx.service_account(gitsync) {
        let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
        let found = accounts.get_opt(account).await.map_err(|source| Error::Kube {
            what: format!("reading ServiceAccount {namespace}/{account}"),
            source,
        })?;
        if found.is_none() {
            let note =
                format!("deleted; what it applied is left in place: its ServiceAccount {account} no longer exists");
            warn(ctx, gitsync, "CleanupSkipped", &note).await;
            return Ok(Requeue::await_change());
        }
        // The namespace's grant to act as the account (deploy/tenant/) may be gone first — a namespace
        // being deleted loses its Roles in no set order — and a refused impersonation would hold the
        // GitSync, and its namespace, Terminating for good.
        let allowed = may_impersonate(&ctx.client, &namespace, account)
            .await
            .map_err(|source| Error::Kube {
                what: format!("asking whether the controller may act as ServiceAccount {namespace}/{account}"),
                source,
            })?;
        if !allowed {
            let note = format!(
                "deleted; what it applied is left in place: the controller may no longer act as its ServiceAccount \
                 {account} (the namespace's grant to impersonate it is gone)"
            );
            warn(ctx, gitsync, "CleanupSkipped", &note).await;
            return Ok(Requeue::await_change());
        }
    }
    let client = ctx.client_for(gitsync).map_err(failed)?;
    let owner = gitsync_label_value(&namespace, &name);
    let report = apply::prune(&client, &ctx.discovery, &targets, &owner)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let note = format!(
        "deleted; deleted what it applied: {}{}",
        if report.deleted.is_empty() {
            "nothing".to_string()
        } else {
            report.deleted.join(", ")
        },
        if report.kept.is_empty() {
            String::new()
        } else {
            format!(
                "; left in place (owned by another GitSync, sluice.dev/prune: disabled or already being deleted): {}",
                report.kept.join(", ")
            )
        }
    );
    info(ctx, gitsync, "CleanedUp", &note).await;
    Ok(Requeue::await_change())
}

/// Whether the controller may impersonate ServiceAccount `namespace/account`, by a
/// SelfSubjectAccessReview (every authenticated user may create one).
async fn may_impersonate(client: &Client, namespace: &str, account: &str) -> Result<bool, kube::Error> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("impersonate".into()),
                resource: Some("serviceaccounts".into()),
                namespace: Some(namespace.into()),
                name: Some(account.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = reviews.create(&Default::default(), &review).await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

async fn reconcile_inner(gitsync: &GitSync, ctx: &Context) -> Result<Requeue, Error> {
    let reference = ObjectRef::from_obj(gitsync);
    let mut old_status = gitsync.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let now = Utc::now();
    let generation = gitsync.metadata.generation;
    // An invalid interval or timeout stalls the GitSync and suspend stops it, until the spec changes.
    let Timings { interval, timeout } = match plan::timings(&gitsync.spec) {
        Ok(timings) => timings,
        Err(result) => {
            plan::set_conditions(&mut status, generation, &result, None, now);
            write_status(gitsync, &old_status, &status, ctx).await?;
            return Ok(Requeue::await_change());
        }
    };
    let client = match dependencies::validate(&gitsync.spec).and_then(|()| ctx.client_for(gitsync)) {
        Ok(client) => client,
        Err(message) => {
            warn(ctx, gitsync, "InvalidSpec", &message).await;
            plan::set_conditions(&mut status, generation, &SyncResult::Stalled(message), None, now);
            write_status(gitsync, &old_status, &status, ctx).await?;
            return Ok(Requeue::await_change());
        }
    };
    let mut sync = SyncRun {
        gitsync,
        ctx,
        client,
        timeout,
        owner: gitsync_label_value(&gitsync.namespace().unwrap_or_default(), &gitsync.name_any()),
        result: SyncResult::Synced,
        resync_soon: false,
        applied_new_revision: false,
        recorded_inventory: None,
    };
    // A stage following upstream GitSyncs: promotion decides its head (see `plan::promotion`).
    let promotion = if gitsync.spec.upstreams().next().is_some() {
        let plan = sync.promotion(&mut status, now).await;
        if let Some(message) = &plan.stalled {
            let result = SyncResult::Stalled(message.clone());
            if plan::previous_result(&status).as_ref() != Some(&result) {
                warn(ctx, gitsync, "InvalidSpec", message).await;
            }
            plan::set_conditions(&mut status, generation, &result, None, now);
            write_status(gitsync, &old_status, &status, ctx).await?;
            return Ok(Requeue::requeue(interval));
        }
        Some(plan)
    } else {
        None
    };
    // The webhook's request is taken first, so it is consumed by this reconcile whatever else is due.
    let webhook_requested = ctx.take_request(&reference);
    let trigger = SyncTrigger {
        generation,
        requested_at: gitsync.annotations().get(REQUESTED_AT_ANNOTATION).map(String::as_str),
        webhook_requested,
        since_last_sync: ctx.since_last_sync(&reference),
        interval,
    };
    let due = plan::sync_due(&trigger, &status);
    let mut fetched = false;
    let promoted = promotion.as_ref().map(|p| p.head.clone());
    // A stage fetches its promoted revision when it is new or a sync is due; nothing before one is.
    let fetch_due = match &promoted {
        Some(None) => false,
        Some(Some(revision)) => due || status.last_attempted_revision.as_ref() != Some(revision),
        None => due,
    };
    if due && !fetch_due {
        ctx.mark_synced(reference.clone(), Instant::now());
        status.last_handled_requested_at = gitsync.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
    }
    let head = if fetch_due {
        ctx.mark_synced(reference.clone(), Instant::now());
        status.last_handled_requested_at = gitsync.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
        let fetch = match (&promotion, promoted.clone().flatten()) {
            (Some(plan), Some(revision)) => sync.fetch_promoted(plan.repo_url.as_deref(), &revision).await,
            _ => sync.fetch().await,
        };
        match fetch {
            Ok(head) => {
                fetched = true;
                if let Some(promotion) = status.promotion.as_mut() {
                    plan::promotion::resolve_revision(promotion, &head);
                }
                status.last_attempted_revision = Some(head.clone());
                Some(head)
            }
            Err(failure) => {
                sync.fail(&mut status, None, failure).await;
                status.last_attempted_revision.clone()
            }
        }
    } else {
        // No sync this time: the outcome of the last one still stands.
        if let Some(previous) = plan::previous_result(&status) {
            sync.result = previous;
        }
        status.last_attempted_revision.clone()
    };
    if let Some(plan) = &promotion {
        // A stall of an earlier promotion decision (a cycle since broken elsewhere) no longer stands.
        if let SyncResult::Stalled(message) = &sync.result
            && promotion::is_promotion_stall(message)
        {
            sync.result = SyncResult::Synced;
        }
        // Nothing promoted yet: waiting, not an error and not held by hand.
        if plan.head.is_none() {
            let (reason, message) = plan
                .waiting
                .clone()
                .unwrap_or((promotion::WAITING_FOR_UPSTREAM, "nothing promoted yet".into()));
            sync.result = SyncResult::Waiting { reason, message };
        }
    }

    let rollouts = sync.rollout_states(&status).await;
    let decision = plan::decide(&Observed {
        spec: &gitsync.spec,
        status: &status,
        head: head.as_deref(),
        rollouts: &rollouts,
        now,
    });
    sync.block(&mut status, &decision).await;
    let attempt = SyncAttempt { due, fetched };
    let gate = sync.dependency_gate(&old_status, &status, &decision).await;
    if gate.is_open() && plan::must_apply(&decision, attempt, &gitsync.spec, &status, generation) {
        sync.apply(&mut status, &decision).await;
    }
    if let Target::Hold(why) = &decision.target
        && sync.result == SyncResult::Synced
    {
        sync.result = SyncResult::Held(why.clone());
    }
    sync.revert(&mut status, &decision).await;
    sync.prune_pending(&mut status, &decision).await;

    let health = sync.health(&mut status).await;
    plan::set_conditions(&mut status, generation, &sync.result, health.as_ref(), now);
    ctx.metrics.observe_gitsync(
        &gitsync.namespace().unwrap_or_default(),
        &gitsync.name_any(),
        Some(&status),
    );
    if let Some(recorded) = sync.recorded_inventory.take() {
        old_status.inventory = Some(recorded);
    }
    write_status(gitsync, &old_status, &status, ctx).await?;

    let requeue = plan::requeue_after(
        interval,
        ctx.since_last_sync(&reference),
        health.as_ref(),
        sync.resync_soon,
    );
    // A soaking candidate is looked at again as its soak ends.
    let soak_end = promotion
        .and_then(|p| p.recheck_in)
        .map(|left| left.saturating_add(plan::MIN_REQUEUE));
    let requeue = soak_end.map_or(requeue, |end| end.min(requeue));
    // A dependency becoming Ready wakes this GitSync at once; this covers a dropped wake-up.
    Ok(Requeue::requeue(match gate {
        DependencyGate::Waiting => requeue.min(DEPENDENCY_RECHECK),
        DependencyGate::Open | DependencyGate::Closed => requeue,
    }))
}

/// While waiting for a dependency, look again at least this often.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(30);

/// What `spec.dependsOn` did to this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DependencyGate {
    /// Apply as decided.
    Open,
    /// A new revision waits for a dependency; nothing applied.
    Waiting,
    /// A dependency cycle: nothing applied at all.
    Closed,
}

impl DependencyGate {
    fn is_open(self) -> bool {
        self == DependencyGate::Open
    }
}

/// Why a sync step failed, and whether retrying alone can fix it.
struct Failure {
    reason: &'static str,
    message: String,
    transient: bool,
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure {
            reason: "FetchFailed",
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        Failure {
            reason: "ApplyFailed",
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

/// One sync of a GitSync (a reconcile's I/O) with what it needs at hand; not `std::marker::Sync`.
struct SyncRun<'a> {
    gitsync: &'a GitSync,
    ctx: &'a Context,
    client: Client,
    timeout: Duration,
    owner: String,
    result: SyncResult,
    /// A revert was pushed: fetch it soon.
    resync_soon: bool,
    /// This reconcile applied a revision other than the last applied one.
    applied_new_revision: bool,
    /// The inventory stored ahead of the apply (see `record_inventory`): the final status write
    /// compares against it, since that is what the API server holds now.
    recorded_inventory: Option<crate::api::gitsync::Inventory>,
}

impl SyncRun<'_> {
    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.gitsync.namespace().unwrap_or_default(),
            self.gitsync.name_any()
        )
    }

    async fn credentials(&self) -> Result<Option<Credentials>, Failure> {
        let (namespace, name) = (self.gitsync.namespace().unwrap_or_default(), self.gitsync.name_any());
        let Some(secret_ref) = &self.gitsync.spec.secret_ref else {
            self.ctx.webhook_secrets.forget(&namespace, &name);
            return Ok(None);
        };
        // Read as the identity the GitSync applies as (its ServiceAccount, when it has one): a GitSync
        // reaches no Secret its ServiceAccount could not read itself.
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let stalled = |message: String| Failure {
            reason: "FetchFailed",
            message,
            transient: false,
        };
        let secret = tokio::time::timeout(self.timeout, secrets.get_opt(&secret_ref.name))
            .await
            .map_err(|_| Failure {
                reason: "FetchFailed",
                message: format!("reading Secret {}: timed out", secret_ref.name),
                transient: true,
            })?
            .map_err(|e| Failure {
                reason: "FetchFailed",
                message: format!("reading Secret {}: {e}", secret_ref.name),
                transient: true,
            })?
            .ok_or_else(|| stalled(format!("spec.secretRef: Secret {} not found", secret_ref.name)))?;
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let webhook_secret = data.get(WEBHOOK_SECRET_KEY).map(Vec::as_slice);
        self.ctx.webhook_secrets.record(&namespace, &name, webhook_secret);
        // A Secret holding only the webhook secret (a public repository) carries no Git credentials.
        if !GIT_CREDENTIAL_KEYS.iter().any(|key| data.contains_key(*key)) {
            return Ok(None);
        }
        Credentials::from_secret_data(&data)
            .map(Some)
            .map_err(|e| stalled(format!("spec.secretRef {}: {e}", secret_ref.name)))
    }

    async fn fetch(&self) -> Result<String, Failure> {
        let credentials = self.credentials().await?;
        let spec = &self.gitsync.spec;
        Ok(self
            .ctx
            .source
            .fetch(
                &self.key(),
                &spec.repo_url,
                spec.git_ref.as_ref(),
                credentials.as_ref(),
                self.timeout,
            )
            .await?)
    }

    /// Fetches a promoted revision of the upstreams' repository into this GitSync's mirror (with this
    /// GitSync's own credentials, if it names any).
    async fn fetch_promoted(&self, repo_url: Option<&str>, revision: &str) -> Result<String, Failure> {
        let Some(url) = repo_url else {
            return Err(Failure {
                reason: "FetchFailed",
                message: format!(
                    "revision {}: the upstreams' repository is not known right now (an upstream is not readable)",
                    short(revision)
                ),
                transient: true,
            });
        };
        let credentials = self.credentials().await?;
        let wanted = GitRef {
            commit: Some(revision.to_string()),
            ..GitRef::default()
        };
        Ok(self
            .ctx
            .source
            .fetch(&self.key(), url, Some(&wanted), credentials.as_ref(), self.timeout)
            .await?)
    }

    /// Reads the upstream chain and decides the promotion; records it in `status.promotion` and
    /// publishes its events (a forced promotion, a refusal, an automatic promotion).
    async fn promotion(&self, status: &mut GitSyncStatus, now: chrono::DateTime<Utc>) -> PromotionPlan {
        let chain = upstream::read_chain(
            &self.client,
            self.gitsync,
            self.ctx.confinement(self.gitsync),
            self.timeout,
        )
        .await;
        let namespace = self.gitsync.namespace().unwrap_or_default();
        let name = self.gitsync.name_any();
        let plan = promotion::plan(&PromotionInput {
            namespace: &namespace,
            name: &name,
            spec: &self.gitsync.spec,
            status,
            chain: &chain,
            request: self.gitsync.annotations().get(PROMOTE_ANNOTATION).map(String::as_str),
            now,
        });
        for event in &plan.events {
            match event.warning {
                true => warn(self.ctx, self.gitsync, event.reason, &event.note).await,
                false => info(self.ctx, self.gitsync, event.reason, &event.note).await,
            }
        }
        if plan.stalled.is_none() {
            status.promotion = Some(plan.status.clone());
        }
        plan
    }

    async fn fail(&mut self, status: &mut GitSyncStatus, revision: Option<&str>, failure: Failure) {
        let message = match revision {
            Some(revision) => format!("revision {}: {}", short(revision), failure.message),
            None => failure.message.clone(),
        };
        plan::record_failure(status, revision, &failure.message, Utc::now());
        warn(self.ctx, self.gitsync, failure.reason, &message).await;
        // A fetch failure is reported even when a pinned apply of a known revision succeeds after it.
        self.result = if failure.transient {
            SyncResult::Failed(message)
        } else {
            SyncResult::Stalled(message)
        };
    }

    /// The Rollouts in the inventory, read live (not from a cache: right after an apply a cached
    /// Rollout could still look Healthy at its old generation).
    async fn rollouts(&self, status: &GitSyncStatus) -> Vec<Rollout> {
        let ids: Vec<ObjectId> = inventory_ids(status)
            .into_iter()
            .filter(|id| id.group == "sluice.dev" && id.kind == "Rollout")
            .collect();
        let mut rollouts = Vec::with_capacity(ids.len());
        for id in ids {
            let api: Api<Rollout> = Api::namespaced(self.client.clone(), id.namespace.as_deref().unwrap_or_default());
            match tokio::time::timeout(self.timeout, api.get_opt(&id.name)).await {
                Ok(Ok(Some(rollout))) => rollouts.push(rollout),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(rollout = %id, error = %e, "reading a Rollout of a GitSync"),
                Err(_) => tracing::warn!(rollout = %id, "reading a Rollout of a GitSync timed out"),
            }
        }
        rollouts
    }

    async fn rollout_states(&self, status: &GitSyncStatus) -> Vec<RolloutState> {
        self.rollouts(status).await.iter().map(RolloutState::observe).collect()
    }

    /// Checks `spec.dependsOn` (see `plan::dependencies`) and records a wait or a cycle as the result.
    /// Only a new revision waits: self-heal of the applied one and a rollback to the last healthy one
    /// go on. A cycle stops every apply.
    async fn dependency_gate(
        &mut self,
        old: &GitSyncStatus,
        status: &GitSyncStatus,
        decision: &Decision,
    ) -> DependencyGate {
        if self.gitsync.spec.depends_on.is_empty() {
            return DependencyGate::Open;
        }
        let confine_to = self.ctx.confinement(self.gitsync);
        let gate = depends_on::gate(self.gitsync, &self.client, confine_to, self.timeout).await;
        let new_revision = dependencies::waits_for_dependencies(&decision.target, status);
        let (reason, message, outcome) = match gate {
            Gate::Open => return DependencyGate::Open,
            Gate::Wait(_) if !new_revision => return DependencyGate::Open,
            Gate::Wait(message) => (dependencies::DEPENDENCY_NOT_READY, message, DependencyGate::Waiting),
            Gate::Cycle(message) => (dependencies::DEPENDENCY_CYCLE, message, DependencyGate::Closed),
        };
        // A failed fetch is still what the conditions report (nothing new is applied either way).
        if outcome == DependencyGate::Waiting && matches!(self.result, SyncResult::Failed(_) | SyncResult::Stalled(_)) {
            return outcome;
        }
        // One event per episode, not one per wake-up.
        let ready_reason = conditions::find(&old.conditions, conditions::READY).and_then(|c| c.reason.as_deref());
        if ready_reason != Some(reason) {
            match outcome {
                DependencyGate::Closed => warn(self.ctx, self.gitsync, reason, &message).await,
                _ => info(self.ctx, self.gitsync, reason, &message).await,
            }
        }
        self.result = match outcome {
            DependencyGate::Closed => SyncResult::StalledOn { reason, message },
            _ => SyncResult::Waiting { reason, message },
        };
        outcome
    }

    async fn block(&self, status: &mut GitSyncStatus, decision: &Decision) {
        for blocked in &decision.block {
            let message = format!(
                "blocked revision {}: {}; {}",
                short(&blocked.revision),
                blocked.reason,
                match (&decision.target, status.last_healthy_revision.as_deref()) {
                    (Target::Apply { revision, .. }, _) => format!("returning to revision {}", short(revision)),
                    (Target::Hold(_), _) => "no healthy revision to return to".into(),
                }
            );
            warn(self.ctx, self.gitsync, "RevisionBlocked", &message).await;
            plan::record_blocked(status, blocked.clone());
        }
    }

    /// Checkout, render, validate everything, apply, then prune what left Git.
    async fn apply(&mut self, status: &mut GitSyncStatus, decision: &Decision) {
        let Target::Apply { revision, pinned_over } = &decision.target else {
            return;
        };
        let new_revision = status.last_applied_revision.as_deref() != Some(revision.as_str());
        let outcome = tokio::time::timeout(self.timeout, self.apply_revision(revision, status)).await;
        let applied = match outcome {
            Ok(Ok(apply::ApplyReport {
                waiting: Some(wait), ..
            })) => {
                let message = format!("revision {}: {}", short(revision), wait.message);
                self.result = SyncResult::Waiting {
                    reason: "WaitingForWave",
                    message,
                };
                // Waves are not watched: look again soon.
                self.resync_soon = true;
                return;
            }
            Ok(Ok(done)) => done,
            Ok(Err(failure)) => return self.fail(status, Some(revision), failure).await,
            Err(_) => {
                let failure = Failure {
                    reason: "SyncFailed",
                    message: format!("sync did not finish within {}s (spec.timeout)", self.timeout.as_secs()),
                    transient: true,
                };
                return self.fail(status, Some(revision), failure).await;
            }
        };
        let message = format!(
            "{} objects, {} changed{}",
            applied.total,
            applied.changed.len(),
            pinned_over
                .as_deref()
                .map(|blocked| format!("; pinned over blocked revision {}", short(blocked)))
                .unwrap_or_default()
        );
        plan::record_applied(status, &decision.target, message.clone(), Utc::now());
        if new_revision || !applied.changed.is_empty() {
            let reason = match (pinned_over, new_revision) {
                (Some(_), _) => "RolledBack",
                (None, true) => "Applied",
                (None, false) => "DriftCorrected",
            };
            let note = format!("revision {}: {message}", short(revision));
            info(self.ctx, self.gitsync, reason, &note).await;
        }
        if new_revision {
            self.applied_new_revision = true;
        }
        if decision.prune == Prune::Disabled {
            // prune: false leaves what left Git in place, untracked.
            status.pending_prune.clear();
        }
    }

    /// Deletes what left Git once no Rollout is mid-rollout, never in the reconcile that applied a
    /// new revision (its Rollouts have not started moving yet as far as this reconcile saw).
    async fn prune_pending(&mut self, status: &mut GitSyncStatus, decision: &Decision) {
        if status.pending_prune.is_empty() || decision.prune != Prune::Allowed || self.applied_new_revision {
            return;
        }
        let stale: Vec<ObjectId> = status
            .pending_prune
            .iter()
            .filter_map(|entry| ObjectId::from_inventory(entry).ok())
            .collect();
        match apply::prune(&self.client, &self.ctx.discovery, &stale, &self.owner).await {
            Ok(report) => {
                status.pending_prune.clear();
                let revision = status.last_applied_revision.as_deref().map(short).unwrap_or("none");
                if !report.deleted.is_empty() {
                    let note = format!("revision {revision}: pruned {}", report.deleted.join(", "));
                    info(self.ctx, self.gitsync, "Pruned", &note).await;
                }
                if !report.kept.is_empty() {
                    let note = format!(
                        "revision {revision}: left in place (owned by another GitSync or sluice.dev/prune: disabled): {}",
                        report.kept.join(", ")
                    );
                    info(self.ctx, self.gitsync, "PruneSkipped", &note).await;
                }
            }
            Err(e) => tracing::warn!(gitsync = %self.key(), error = %e, "prune failed; retrying"),
        }
    }

    /// Renders and applies `revision`; records the new inventory in `status`, and what left Git (in
    /// the old inventory or still pending, not in this revision) as pending prune.
    async fn apply_revision(
        &mut self,
        revision: &str,
        status: &mut GitSyncStatus,
    ) -> Result<apply::ApplyReport, Failure> {
        let spec = &self.gitsync.spec;
        let namespace = self.gitsync.namespace().unwrap_or_default();
        let checkout = self.ctx.source.checkout(&self.key(), revision, self.timeout).await?;
        let release_name = spec
            .render
            .as_ref()
            .and_then(|r| r.helm.as_ref())
            .and_then(|h| h.release_name.clone())
            .unwrap_or_else(|| self.gitsync.name_any());
        let target_namespace = spec.target_namespace.clone().unwrap_or_else(|| namespace.clone());
        let objects = render::render(
            &self.ctx.tools,
            &RenderInput {
                root: checkout.path(),
                path: spec.path.as_deref().unwrap_or("."),
                render: spec.render.as_ref(),
                release_name: &release_name,
                namespace: &target_namespace,
                timeout: self.timeout,
            },
        )
        .await
        .map_err(|e| Failure {
            reason: "RenderFailed",
            message: e.to_string(),
            transient: false,
        })?;
        let mut manifests = self.prepare(objects, &namespace, &target_namespace, revision).await?;
        let new_inventory = manifest::inventory(&manifests);
        let mut old_inventory = status.inventory.clone().unwrap_or_default();
        old_inventory.entries.extend(status.pending_prune.iter().cloned());
        let stale = manifest::stale(&old_inventory, &new_inventory);
        // Until the apply finishes, both generations are ours: a half-applied revision's objects
        // must still be found (and pruned) later — even when the controller dies mid-apply, so the
        // union is stored before the first object is applied.
        let mut both = old_inventory.clone();
        both.entries.extend(new_inventory.entries.iter().cloned());
        both.entries.sort();
        both.entries.dedup();
        // Stored already when this revision adds nothing to what the status lists (inventory and
        // pendingPrune): a re-apply of the same revision writes nothing extra.
        let mut stored = old_inventory.entries.clone();
        stored.sort();
        stored.dedup();
        if stored != both.entries {
            self.record_inventory(&both).await?;
            self.recorded_inventory = Some(both.clone());
        }
        status.inventory = Some(both);
        let report =
            apply::apply_revision(&self.client, &self.ctx.discovery, &mut manifests, &target_namespace).await?;
        if report.waiting.is_some() {
            // Later waves are still to come: both generations stay ours, nothing is pruned yet.
            return Ok(report);
        }
        status.inventory = Some(new_inventory);
        status.pending_prune = stale.iter().map(ObjectId::to_inventory).collect();
        Ok(report)
    }

    /// Stores `inventory` as the GitSync's status.inventory now, ahead of the reconcile's status write.
    async fn record_inventory(&self, inventory: &crate::api::gitsync::Inventory) -> Result<(), Failure> {
        let api: Api<GitSync> = Api::namespaced(self.ctx.client.clone(), &self.gitsync.namespace().unwrap_or_default());
        let patch = json!({"status": {"inventory": inventory}});
        api.patch_status(&self.gitsync.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| Failure {
                reason: "SyncFailed",
                message: format!("recording the inventory before applying, nothing applied: {e}"),
                transient: true,
            })
    }

    async fn prepare(
        &self,
        objects: Vec<Value>,
        namespace: &str,
        target_namespace: &str,
        revision: &str,
    ) -> Result<Vec<manifest::Manifest>, Failure> {
        let name = self.gitsync.name_any();
        let mut refreshed = false;
        loop {
            let discovery = self.ctx.discovery.get(refreshed).await?;
            let scope = DiscoveredScope(discovery);
            let context = PrepareContext {
                gitsync_namespace: namespace,
                gitsync_name: &name,
                target_namespace,
                revision,
                scope: &scope,
                confine_to: self.ctx.confinement(self.gitsync),
            };
            match manifest::prepare(objects.clone(), &context) {
                Ok(manifests) => return Ok(manifests),
                // A kind installed since discovery ran: look again once before calling it invalid.
                Err(_) if !refreshed => refreshed = true,
                Err(errors) => {
                    return Err(Failure {
                        reason: "ValidationFailed",
                        message: format!("invalid manifests, nothing applied: {errors}"),
                        transient: false,
                    });
                }
            }
        }
    }

    /// Pushes the revert commit the decision asks for and records the outcome on the blocked entry.
    async fn revert(&mut self, status: &mut GitSyncStatus, decision: &Decision) {
        let spec = &self.gitsync.spec;
        if let (Some(why), Some(head)) = (&decision.revert_impossible, status.last_attempted_revision.clone())
            && let Some(entry) = status.blocked_revisions.iter_mut().find(|b| b.revision == head)
            && entry.revert_message.is_none()
        {
            entry.revert_message = Some(why.clone());
            warn(self.ctx, self.gitsync, "RevertSkipped", why).await;
        }
        let Some(revert) = &decision.revert else {
            return;
        };
        let credentials = match self.credentials().await {
            Ok(credentials) => credentials,
            Err(failure) => {
                warn(self.ctx, self.gitsync, "RevertFailed", &failure.message).await;
                return;
            }
        };
        let author = spec
            .rollback
            .as_ref()
            .and_then(|r| r.author.as_deref())
            .unwrap_or(DEFAULT_AUTHOR);
        let reason = status
            .blocked_revisions
            .iter()
            .find(|b| b.revision == revert.blocked)
            .map(|b| b.reason.clone())
            .unwrap_or_default();
        let key = self.key();
        let request = RevertRequest {
            key: &key,
            url: &spec.repo_url,
            credentials: credentials.as_ref(),
            branch: &revert.branch,
            expected_head: &revert.blocked,
            to_revision: &revert.to_revision,
            path: spec.path.as_deref().unwrap_or("."),
            author,
            reason: &reason,
            timeout: self.timeout,
        };
        let outcome = self.ctx.source.revert_path_to(&request).await;
        let Some(entry) = status
            .blocked_revisions
            .iter_mut()
            .find(|b| b.revision == revert.blocked)
        else {
            return;
        };
        match outcome {
            Ok(Some(commit)) => {
                let note = format!(
                    "pushed {} to {}: reverts {} back to {}",
                    short(&commit),
                    revert.branch,
                    short(&revert.blocked),
                    short(&revert.to_revision)
                );
                entry.revert_commit = Some(commit);
                info(self.ctx, self.gitsync, "Reverted", &note).await;
                // Fetch the revert commit soon rather than an interval later.
                self.ctx.request_sync(ObjectRef::from_obj(self.gitsync));
                self.resync_soon = true;
            }
            Ok(None) => {
                let note = format!(
                    "not reverted: {} is no longer at {} or already matches {}",
                    revert.branch,
                    short(&revert.blocked),
                    short(&revert.to_revision)
                );
                entry.revert_message = Some(note.clone());
                info(self.ctx, self.gitsync, "RevertSkipped", &note).await;
            }
            Err(e) => {
                warn(
                    self.ctx,
                    self.gitsync,
                    "RevertFailed",
                    &format!("{e}; retrying next sync"),
                )
                .await;
            }
        }
    }

    /// Health of everything applied; concludes lastHealthyRevision. None when nothing is applied.
    async fn health(&self, status: &mut GitSyncStatus) -> Option<Health> {
        status.last_applied_revision.as_ref()?;
        let ids = inventory_ids(status);
        let live = match apply::read_live(&self.client, &self.ctx.discovery, &ids).await {
            Ok(live) => live,
            Err(e) => return Some(Health::Unknown(e.to_string())),
        };
        let mut rollouts = Vec::new();
        let managed = health::workload_ref_deployments(live.iter().filter_map(|(_, object)| object.as_ref()));
        let items: Vec<(ObjectId, Health)> = live
            .into_iter()
            .map(|(id, object)| {
                let health = match object {
                    Some(object) => {
                        if id.group == "sluice.dev"
                            && id.kind == "Rollout"
                            && let Ok(rollout) = serde_json::from_value::<Rollout>(object.clone())
                        {
                            rollouts.push(RolloutState::observe(&rollout));
                        }
                        health::object_health_managed(&object, &managed)
                    }
                    None => Health::Progressing("not found".into()),
                };
                (id, health)
            })
            .collect();
        let health = health::aggregate(items.iter().map(|(id, h)| (id, h.clone())));
        if let Some(revision) = plan::conclude_health(status, &health, &rollouts, Utc::now()) {
            let note = format!(
                "revision {} is healthy: applied and every Rollout Healthy",
                short(&revision)
            );
            info(self.ctx, self.gitsync, "Healthy", &note).await;
        }
        Some(health)
    }
}

fn inventory_ids(status: &GitSyncStatus) -> Vec<ObjectId> {
    status
        .inventory
        .iter()
        .flat_map(|inventory| &inventory.entries)
        .filter_map(|entry| ObjectId::from_inventory(entry).ok())
        .collect()
}

/// Writes only what changed, as a merge patch of the status subresource.
async fn write_status(gitsync: &GitSync, old: &GitSyncStatus, new: &GitSyncStatus, ctx: &Context) -> Result<(), Error> {
    let diff = merge_diff(
        &serde_json::to_value(old).unwrap_or(Value::Null),
        &serde_json::to_value(new).unwrap_or(Value::Null),
    );
    if diff.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(());
    }
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &gitsync.namespace().unwrap_or_default());
    api.patch_status(
        &gitsync.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": diff})),
    )
    .await
    .map_err(|source| Error::Kube {
        what: format!("writing status of GitSync {}", gitsync.name_any()),
        source,
    })?;
    Ok(())
}

async fn info(ctx: &Context, gitsync: &GitSync, reason: &str, note: &str) {
    publish(ctx, gitsync, EventType::Normal, reason, note).await;
}

async fn warn(ctx: &Context, gitsync: &GitSync, reason: &str, note: &str) {
    publish(ctx, gitsync, EventType::Warning, reason, note).await;
}

async fn publish(ctx: &Context, gitsync: &GitSync, type_: EventType, reason: &str, note: &str) {
    tracing::info!(gitsync = %gitsync.name_any(), reason, note, "event");
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &gitsync.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing an event failed");
    }
}
