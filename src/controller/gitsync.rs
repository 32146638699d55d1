//! Runs the GitSync controller: a kube-runtime Controller over GitSyncs, woken also by changes of the
//! Rollouts they applied (label `sluice.dev/gitsync`), by signed webhook calls, and by changes of the
//! GitSyncs they follow or depend on.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::api::gitsync::GitSync;
use crate::api::rollout::Rollout;
use crate::controller::departures::{Departures, left_the_cache};
use crate::controller::isolate::{PanicReport, isolated};
use crate::controller::metrics::Metrics;
use crate::controller::rollouts::Scope;
use crate::controller::server::Health;
use crate::controller::supervise::spawn_controller;
use crate::events::{Recorder, Reporter};
use crate::gitsync::argocd::{self, ArgoCdAdapterConfig};
use crate::gitsync::git::GitSource;
use crate::gitsync::reconcile::{self, Context, Tenancy};
use crate::gitsync::render::Tools;
use crate::gitsync::{GITSYNC_LABEL, webhook};

/// How many wake-ups of referring GitSyncs may wait; beyond that one is dropped (logged), and the
/// GitSync it was for looks again at its own requeue (soak end, interval).
const REFERRER_WAKEUPS: usize = 1024;

/// Wakes the GitSyncs that follow or depend on the one this watch event is about: its status (a
/// new healthy revision, Ready) decides what they do. A scan of the cache: GitSyncs number in the
/// hundreds, not the thousands, and the scan is a comparison of a few strings each.
fn wake_referrers(
    cache: &reflector::Store<GitSync>,
    event: &watcher::Event<GitSync>,
    wake: &tokio::sync::mpsc::Sender<ObjectRef<GitSync>>,
) {
    let changed = match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object) => object,
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    let (namespace, name) = (changed.namespace().unwrap_or_default(), changed.name_any());
    for referrer in cache.state() {
        let own_namespace = referrer.namespace().unwrap_or_default();
        let refers = referrer
            .spec
            .referenced_gitsyncs(&own_namespace)
            .any(|(ns, n)| ns == namespace && n == name);
        if refers && wake.try_send(ObjectRef::from_obj(&*referrer)).is_err() {
            tracing::debug!(gitsync = %referrer.name_any(), "too many waiting wake-ups: dropped one");
        }
    }
}

/// GitSync settings of `sluice controller`; its flags are these fields (the client fields are set by
/// the process, not by flags).
#[derive(Clone, Default, clap::Args)]
pub struct GitSyncConfig {
    /// The controller's client configuration, for impersonating a GitSync's ServiceAccount.
    #[arg(skip)]
    pub kube_config: Option<kube::Config>,
    /// Rate limit, User-Agent and leader write gate for those impersonating clients too.
    #[arg(skip)]
    pub client_options: Option<crate::client::ClientOptions>,
    /// Directory for the GitSync controller's Git mirrors (default: under the system temp dir).
    #[arg(long = "git-cache-dir", env = "SLUICE_GIT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Listen address for `POST /hooks/gitsync/{namespace}/{name}` (signed push webhooks); off when unset.
    #[arg(long, env = "SLUICE_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub argocd: ArgoCdAdapterOptions,
    /// Let kustomize fetch remote bases (URLs, `github.com/…`, `git@…`) when a GitSync renders; off: a
    /// revision must render from what its repository holds.
    #[arg(long, env = "SLUICE_ALLOW_REMOTE_BASES")]
    pub allow_remote_bases: bool,
    /// Accept file:// repository URLs in GitSyncs (the demo and tests; never a path into the git cache).
    #[arg(long, env = "SLUICE_ALLOW_FILE_REPOS")]
    pub allow_file_repos: bool,
    /// The ServiceAccount (in the GitSync's own namespace) a GitSync that names none applies, prunes and
    /// reads its secretRef as, as Flux's --default-service-account.
    #[arg(long, env = "SLUICE_GITSYNC_DEFAULT_SERVICE_ACCOUNT")]
    pub gitsync_default_service_account: Option<String>,
    /// Let a GitSync that names no ServiceAccount (and with no default one) apply as the controller
    /// itself, anywhere its rights reach (deploy/components/gitsync-admin sets this). Off: such a GitSync applies
    /// only namespaced objects into its own namespace.
    #[arg(long, env = "SLUICE_GITSYNC_APPLY_AS_CONTROLLER")]
    pub gitsync_apply_as_controller: bool,
}

/// The Argo CD adapter's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ArgoCdAdapterOptions {
    /// When a Rollout deployed by Argo CD aborts on failed analysis, turn off its Application's
    /// automated sync and record the last healthy revision on it.
    #[arg(long = "argocd-adapter", env = "SLUICE_ARGOCD_ADAPTER")]
    pub enabled: bool,
    /// Namespace of Argo CD's Applications (for tracking ids without a namespace).
    #[arg(long, default_value = argocd::DEFAULT_ARGOCD_NAMESPACE, env = "SLUICE_ARGOCD_NAMESPACE")]
    pub argocd_namespace: String,
}

impl Default for ArgoCdAdapterOptions {
    fn default() -> Self {
        ArgoCdAdapterOptions {
            enabled: false,
            argocd_namespace: argocd::DEFAULT_ARGOCD_NAMESPACE.to_string(),
        }
    }
}

impl ArgoCdAdapterOptions {
    /// The adapter's configuration when it is enabled.
    pub fn adapter(&self) -> Option<ArgoCdAdapterConfig> {
        self.enabled.then(|| ArgoCdAdapterConfig {
            argocd_namespace: self.argocd_namespace.clone(),
        })
    }
}

impl std::fmt::Debug for GitSyncConfig {
    // kube::Config holds credentials: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSyncConfig")
            .field("cache_dir", &self.cache_dir)
            .field("webhook_addr", &self.webhook_addr)
            .field("argocd", &self.argocd)
            .finish_non_exhaustive()
    }
}

/// The GitSync that applied an object, from its `sluice.dev/gitsync: <namespace>.<name>` label.
pub fn owner_of(labels: &std::collections::BTreeMap<String, String>) -> Option<ObjectRef<GitSync>> {
    // Namespaces are DNS labels (no dots), so the first dot separates namespace from name.
    let (namespace, name) = labels.get(GITSYNC_LABEL)?.split_once('.')?;
    Some(ObjectRef::new(name).within(namespace))
}

/// The running GitSync controller, its webhook listener and the Argo CD adapter.
pub struct Started {
    /// The bound webhook address, if one was asked for.
    pub webhook_addr: Option<SocketAddr>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What every GitSync reconcile shares, per-object state included.
    pub context: Arc<Context>,
}

pub async fn start(
    client: Client,
    scope: Scope,
    config: GitSyncConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sluice-git-{}", std::process::id())));
    std::fs::create_dir_all(&cache_dir).map_err(|e| anyhow::anyhow!("--git-cache-dir {}: {e}", cache_dir.display()))?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::api::keys::GITSYNC_FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.kube_config.clone(),
            config.client_options.clone(),
            GitSource::new(cache_dir).allow_file_repos(config.allow_file_repos),
            Tools {
                allow_remote_bases: config.allow_remote_bases,
                ..Tools::discover()
            },
            recorder,
            metrics,
        )
        .with_tenancy(Tenancy {
            default_service_account: config.gitsync_default_service_account.clone(),
            apply_as_controller: config.gitsync_apply_as_controller,
        }),
    );
    let (trigger, triggered) = tokio::sync::mpsc::channel::<ObjectRef<GitSync>>(256);
    let (webhook_addr, webhook_task) = match config.webhook_addr {
        Some(addr) => {
            let router = webhook::router(webhook::WebhookState::new(ctx.webhook_secrets.clone(), trigger));
            let (bound, task) = crate::controller::server::serve(addr, router, shutdown.clone()).await?;
            tracing::info!(%bound, "GitSync webhook listening");
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    // A webhook call marks the sync as requested (so the reconcile fetches) and then wakes it.
    let requests = futures::stream::unfold((triggered, ctx.clone()), |(mut triggered, ctx)| async move {
        let gitsync = triggered.recv().await?;
        ctx.request_sync(gitsync.clone());
        Some((gitsync, (triggered, ctx)))
    });
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = webhook_task.into_iter().collect();
    if let Some(adapter) = config.argocd.adapter() {
        tasks.push(spawn_controller(
            "argocd-adapter",
            argocd::run(client.clone(), scope.clone(), adapter, shutdown.clone()),
            health.clone(),
            shutdown.clone(),
        ));
    }
    let (store, writer) = reflector::store();
    let (wake, woken) = tokio::sync::mpsc::channel::<ObjectRef<GitSync>>(REFERRER_WAKEUPS);
    let referrers_of = store.clone();
    let departed_ctx = ctx.clone();
    let mut departures = Departures::default();
    // The finalizer's cleanup runs while the GitSync still exists; what is kept about it goes when the
    // watch shows it gone.
    let gitsyncs = scope
        .watch::<GitSync>(&client, watcher::Config::default())
        .reflect(writer)
        .inspect_ok(move |event| {
            for gone in departures.observe(event) {
                departed_ctx.forget(&gone.namespace, &gone.name);
            }
            wake_referrers(&referrers_of, event, &wake);
        })
        .applied_objects();
    let cached = store.clone();
    let rollouts = scope
        .watch::<Rollout>(&client, watcher::Config::default().labels(GITSYNC_LABEL))
        .default_backoff()
        .touched_objects();
    let controller_shutdown = shutdown.clone();
    let controller_ctx = ctx.clone();
    let controller = async move {
        Controller::for_stream(gitsyncs, store)
            .with_config(super::reconcile_config())
            .watches_stream(rollouts, |rollout: Rollout| {
                owner_of(&rollout.metadata.labels.clone().unwrap_or_default())
            })
            .reconcile_on(futures::stream::select(
                requests,
                futures::stream::unfold(woken, |mut woken| async move {
                    let gitsync = woken.recv().await?;
                    Some((gitsync, woken))
                }),
            ))
            .graceful_shutdown_on(async move { controller_shutdown.cancelled().await })
            .run(
                move |gitsync, ctx| {
                    let cached = cached.clone();
                    async move {
                        let report = PanicReport {
                            controller: "gitsync",
                            metrics: &*ctx.metrics,
                            recorder: Some(&ctx.recorder),
                        };
                        let reconciled = reconcile::reconcile(gitsync.clone(), ctx.clone());
                        let result = isolated(&*gitsync, report, reconciled, |message| {
                            reconcile::Error::panicked(&gitsync, message)
                        })
                        .await;
                        if left_the_cache(&cached, &gitsync) {
                            ctx.forget(&gitsync.namespace().unwrap_or_default(), &gitsync.name_any());
                        }
                        result
                    }
                },
                reconcile::error_policy,
                controller_ctx,
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gitsync controller event");
                }
            })
            .await;
    };
    tasks.push(spawn_controller("gitsync", controller, health, shutdown));
    Ok(Started {
        webhook_addr,
        tasks,
        context: ctx,
    })
}
