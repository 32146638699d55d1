//! Wiring: starts the controllers, the metrics and health endpoints, and shuts them down cleanly.
pub mod analysis;
pub mod departures;
pub mod experiments;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod gitsync;
pub mod isolate;
pub mod leader;
pub mod metrics;
pub mod notifications;
pub mod rollouts;
pub mod server;
pub mod shard;
pub mod supervise;
pub mod workload_refs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::analysis::allowlist::Allowlist;
use crate::analysis::reconcile::AnalysisContext;
use crate::rollout::analysis_runs::TemplateAnalysisRunFactory;

/// Where the notifications ConfigMap is unless `--notifications-configmap` says otherwise.
/// Reconciles one controller runs at once. Unbounded (kube-runtime's default), a wave spawns one
/// reconcile per object with work: 2,000 Rollouts changed at once held 7,500 live reconcile
/// futures (50 MB) and 600 pooled HTTP connections, all waiting on the same client-side rate limit,
/// and the heap kept that size after the wave. Objects beyond the bound wait in kube-runtime's
/// queue, one small entry each; 32 keeps `--kube-qps 1000` busy at the simulator's latency.
pub const RECONCILE_CONCURRENCY: u16 = 32;

/// The kube-runtime settings every Sluice controller runs with.
pub fn reconcile_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY)
}

pub const DEFAULT_NOTIFICATIONS_CONFIGMAP: &str = "sluice-system/sluice-notifications";

/// How `sluice controller` runs; its flags are these fields.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerConfig {
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, short = 'n', env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address for /metrics, /healthz and /readyz; port 0 picks a free one (the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICE_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Prometheus used by analysis metrics that name no address.
    #[arg(long, env = "SLUICE_PROMETHEUS_ADDRESS")]
    pub prometheus_address: Option<String>,
    /// Hosts, *.domain wildcards, IPs and CIDRs analysis providers may connect to (comma-separated;
    /// empty: anywhere but link-local/cloud metadata addresses, which need an explicit entry). Redirects
    /// are never followed.
    #[arg(long, value_delimiter = ',', env = "SLUICE_ANALYSIS_ADDRESS_ALLOWLIST")]
    pub analysis_address_allowlist: Vec<String>,
    /// The notifications ConfigMap, `NAMESPACE/NAME`; a missing one means no services (see README,
    /// Notifications).
    #[arg(
        long,
        default_value = DEFAULT_NOTIFICATIONS_CONFIGMAP,
        env = "SLUICE_NOTIFICATIONS_CONFIGMAP"
    )]
    pub notifications_configmap: String,
    /// Git mirrors, impersonation and the webhook listener of the GitSync controller.
    #[command(flatten)]
    pub gitsync: gitsync::GitSyncConfig,
}

/// A running controller process: every controller plus the endpoints.
pub struct Running {
    pub metrics_addr: SocketAddr,
    /// Where `POST /hooks/gitsync/{namespace}/{name}` listens, when enabled.
    pub webhook_addr: Option<SocketAddr>,
    pub metrics: Arc<metrics::Metrics>,
    pub health: Arc<server::Health>,
    pub per_object_state: PerObjectState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Stops every controller, waiting at most `grace` for in-flight reconciles.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(grace, futures::future::join_all(self.tasks)).await;
    }

    /// Waits until the controllers stop (after `shutdown` is cancelled).
    pub async fn wait(self) {
        futures::future::join_all(self.tasks).await;
    }

    /// Runs until `stop` (then stops within `grace`), or until a controller task ends on its own: then
    /// stops the others and returns the error the process exits non-zero with, to be restarted.
    pub async fn run_until(self, stop: CancellationToken, grace: Duration) -> anyhow::Result<()> {
        let health = self.health.clone();
        tokio::select! {
            _ = stop.cancelled() => {
                self.stop(grace).await;
                Ok(())
            }
            ended = health.until_a_controller_ends() => {
                self.stop(grace).await;
                Err(anyhow::anyhow!("{ended}; exiting so that the process is restarted"))
            }
        }
    }
}

/// Starts the Rollout, AnalysisRun, Experiment and GitSync controllers and the metrics/health endpoints.
pub async fn start(client: Client, config: ControllerConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let endpoints = serve_endpoints(config.metrics_addr, shutdown.clone()).await?;
    endpoints.metrics.set_leader(true);
    let started = start_controllers(
        client,
        &config,
        endpoints.metrics.clone(),
        endpoints.health.clone(),
        shutdown.clone(),
    )
    .await;
    let Controllers {
        mut tasks,
        webhook_addr,
        per_object_state,
    } = match started {
        Ok(controllers) => controllers,
        Err(e) => {
            endpoints.task.abort();
            return Err(e);
        }
    };
    tasks.push(endpoints.task);
    Ok(Running {
        metrics_addr: endpoints.addr,
        webhook_addr,
        metrics: endpoints.metrics,
        health: endpoints.health,
        per_object_state,
        tasks,
        shutdown,
    })
}

/// `/metrics`, `/healthz` and `/readyz`, served for the whole life of the process, leader or not.
pub struct Endpoints {
    pub addr: SocketAddr,
    pub metrics: Arc<metrics::Metrics>,
    pub health: Arc<server::Health>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn serve_endpoints(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<Endpoints> {
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(server::Health::default());
    let router = server::router(metrics.clone(), health.clone());
    let (addr, task) = server::serve(addr, router, shutdown).await?;
    Ok(Endpoints {
        addr,
        metrics,
        health,
        task,
    })
}

/// The controllers' tasks, and where the GitSync webhook listens (it only exists on the leader: a
/// webhook call wakes a reconcile).
pub struct Controllers {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub webhook_addr: Option<SocketAddr>,
    pub per_object_state: PerObjectState,
}

/// What the controllers keep in memory per object, the metrics exporter's bookkeeping included (the
/// series themselves show in `/metrics`): a handle to tell its size by.
pub struct PerObjectState {
    rollouts: Arc<crate::rollout::reconcile::Context>,
    gitsyncs: Arc<crate::gitsync::reconcile::Context>,
    metrics: Arc<metrics::Metrics>,
    notifications: Arc<notifications::Memory>,
}

impl PerObjectState {
    /// How many objects each per-object memory holds, by what it is; all zero once every object is
    /// deleted (tests look for leaks with it).
    pub fn sizes(&self) -> Vec<(&'static str, usize)> {
        let mut sizes = self.rollouts.per_object_sizes();
        sizes.extend(self.gitsyncs.per_object_sizes());
        sizes.extend(self.metrics.per_object_sizes());
        sizes.extend(self.notifications.sizes());
        sizes
    }
}

/// Starts every controller (the writers); they run until `shutdown`. Under leader election this runs
/// only on the Lease holder, so every controller that writes belongs here.
pub async fn start_controllers(
    client: Client,
    config: &ControllerConfig,
    metrics: Arc<metrics::Metrics>,
    health: Arc<server::Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<Controllers> {
    start_controllers_for(client, config, None, metrics, health, shutdown).await
}

/// [`start_controllers`] for the namespaces of some shards only (`None`: all of them).
pub async fn start_controllers_for(
    client: Client,
    config: &ControllerConfig,
    shards: Option<shard::ShardFilter>,
    metrics: Arc<metrics::Metrics>,
    health: Arc<server::Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<Controllers> {
    let allowlist = Allowlist::parse(&config.analysis_address_allowlist)
        .map_err(|e| anyhow::anyhow!("--analysis-address-allowlist: {e}"))?;
    let notification_settings = notifications::Settings::parse(&config.notifications_configmap, Default::default())?;
    let scope = rollouts::Scope {
        namespace: config.namespace.clone(),
        shards,
    };
    let factory = Arc::new(TemplateAnalysisRunFactory::new(client.clone()));
    let rollout_ctx = rollouts::context(client.clone(), metrics.clone(), factory);
    let rollout_task = supervise::spawn_controller(
        "rollout",
        rollouts::run(rollout_ctx.clone(), scope.clone(), health.clone(), shutdown.clone()),
        health.clone(),
        shutdown.clone(),
    );
    let analysis_ctx = AnalysisContext {
        client: client.clone(),
        metrics: metrics.clone(),
        allowlist: allowlist.clone(),
        default_prometheus: config.prometheus_address.clone(),
    };
    let analysis_task = supervise::spawn_controller(
        "analysisrun",
        analysis::run(Arc::new(analysis_ctx), scope.clone(), shutdown.clone()),
        health.clone(),
        shutdown.clone(),
    );
    let experiment_task = supervise::spawn_controller(
        "experiment",
        experiments::run(
            experiments::context(client.clone(), metrics.clone()),
            scope.clone(),
            shutdown.clone(),
        ),
        health.clone(),
        shutdown.clone(),
    );
    // Notification URLs can come from annotations (a Teams recipient): the analysis allowlist
    // guards them as it guards metric providers.
    let notify = notifications::start(
        client.clone(),
        notification_settings,
        allowlist,
        metrics.clone(),
        scope.clone(),
        health.clone(),
        shutdown.clone(),
    )?;
    let gitsync = gitsync::start(client, scope, config.gitsync.clone(), metrics.clone(), health, shutdown).await?;
    let mut tasks = vec![rollout_task, analysis_task, experiment_task];
    tasks.extend(notify.tasks);
    tasks.extend(gitsync.tasks);
    Ok(Controllers {
        tasks,
        webhook_addr: gitsync.webhook_addr,
        per_object_state: PerObjectState {
            rollouts: rollout_ctx,
            gitsyncs: gitsync.context,
            metrics,
            notifications: notify.memory,
        },
    })
}
