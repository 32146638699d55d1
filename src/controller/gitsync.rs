//! Runs the GitSync controller: a kube-runtime Controller over GitSyncs, woken also by changes of the
//! Rollouts they applied (label `sluice.dev/gitsync`) and by signed webhook calls.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use tokio_util::sync::CancellationToken;

use crate::api::gitsync::GitSync;
use crate::api::rollout::Rollout;
use crate::controller::metrics::Metrics;
use crate::controller::rollouts::Scope;
use crate::gitsync::argocd::{self, ArgoCdAdapterConfig};
use crate::gitsync::git::GitSource;
use crate::gitsync::reconcile::{self, Context};
use crate::gitsync::render::Tools;
use crate::gitsync::{GITSYNC_LABEL, webhook};

/// GitSync settings of `sluice controller`.
#[derive(Clone, Default)]
pub struct GitSyncConfig {
    /// The controller's client configuration, for impersonating a GitSync's ServiceAccount.
    pub kube_config: Option<kube::Config>,
    /// Rate limit, User-Agent and leader write gate for those impersonating clients too.
    pub client_options: Option<crate::client::ClientOptions>,
    /// Where Git mirrors are kept (default: a directory under the system temp dir).
    pub cache_dir: Option<PathBuf>,
    /// Listen address of `POST /hooks/gitsync/{namespace}/{name}`; no webhook when None.
    pub webhook_addr: Option<SocketAddr>,
    /// Turn off the automated sync of the Argo CD Application of a Rollout that aborts; off when None.
    pub argocd: Option<ArgoCdAdapterConfig>,
    /// Let kustomize fetch remote bases (off: a revision renders from what its repository holds).
    pub allow_remote_bases: bool,
    /// Accept file:// repository URLs (off: a path on the controller's disk is not a tenant's repository).
    pub allow_file_repos: bool,
}

impl std::fmt::Debug for GitSyncConfig {
    // kube::Config holds credentials: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSyncConfig")
            .field("cache_dir", &self.cache_dir)
            .field("webhook_addr", &self.webhook_addr)
            .field("argocd", &self.argocd.as_ref().map(|a| &a.argocd_namespace))
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
}

pub async fn start(
    client: Client,
    scope: Scope,
    config: GitSyncConfig,
    metrics: Arc<Metrics>,
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
    let ctx = Arc::new(Context::new(
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
    ));
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
    if let Some(adapter) = config.argocd.clone() {
        let namespace = scope.namespace.clone();
        tasks.push(tokio::spawn(argocd::run(
            client.clone(),
            namespace,
            adapter,
            shutdown.clone(),
        )));
    }
    let gitsyncs = scope.api::<GitSync>(&client);
    let rollouts = scope.api::<Rollout>(&client);
    tasks.push(tokio::spawn(async move {
        Controller::new(gitsyncs, watcher::Config::default())
            .watches(rollouts, watcher::Config::default().labels(GITSYNC_LABEL), |rollout| {
                owner_of(&rollout.metadata.labels.clone().unwrap_or_default())
            })
            .reconcile_on(requests)
            .graceful_shutdown_on(async move { shutdown.cancelled().await })
            .run(reconcile::reconcile, reconcile::error_policy, ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gitsync controller event");
                }
            })
            .await;
    }));
    Ok(Started { webhook_addr, tasks })
}
