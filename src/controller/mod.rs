//! Wiring: starts the controllers, the metrics and health endpoints, and shuts them down cleanly.
pub mod analysis;
pub mod gitsync;
pub mod metrics;
pub mod rollouts;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::analysis::allowlist::Allowlist;
use crate::analysis::reconcile::AnalysisContext;
use crate::rollout::analysis_runs::TemplateAnalysisRunFactory;

/// How `sluice controller` runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// One namespace, or all when None.
    pub namespace: Option<String>,
    /// `/metrics`, `/healthz`, `/readyz`; port 0 picks a free port (logged).
    pub metrics_addr: SocketAddr,
    /// Prometheus for metrics that name no address.
    pub prometheus_address: Option<String>,
    /// Hosts and CIDRs analysis providers may connect to; empty: anywhere.
    pub analysis_address_allowlist: Vec<String>,
    /// Git mirrors, impersonation and the webhook listener of the GitSync controller.
    pub gitsync: gitsync::GitSyncConfig,
}

/// A running controller process: every controller plus the endpoints.
pub struct Running {
    pub metrics_addr: SocketAddr,
    /// Where `POST /hooks/gitsync/{namespace}/{name}` listens, when enabled.
    pub webhook_addr: Option<SocketAddr>,
    pub metrics: Arc<metrics::Metrics>,
    pub health: Arc<server::Health>,
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
}

/// Starts the Rollout, AnalysisRun and GitSync controllers and the metrics/health endpoints.
pub async fn start(client: Client, config: ControllerConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let allowlist = Allowlist::parse(&config.analysis_address_allowlist)
        .map_err(|e| anyhow::anyhow!("--analysis-address-allowlist: {e}"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(server::Health::default());
    let router = server::router(metrics.clone(), health.clone());
    let (metrics_addr, server_task) = server::serve(config.metrics_addr, router, shutdown.clone()).await?;
    let scope = rollouts::Scope {
        namespace: config.namespace.clone(),
    };
    let factory = Arc::new(TemplateAnalysisRunFactory::new(client.clone()));
    let rollout_task = tokio::spawn(rollouts::run(
        client.clone(),
        scope.clone(),
        metrics.clone(),
        health.clone(),
        factory,
        shutdown.clone(),
    ));
    let analysis_ctx = AnalysisContext {
        client: client.clone(),
        metrics: metrics.clone(),
        allowlist,
        default_prometheus: config.prometheus_address.clone(),
    };
    let analysis_task = tokio::spawn(analysis::run(analysis_ctx, scope.clone(), shutdown.clone()));
    let gitsync = gitsync::start(client, scope, config.gitsync.clone(), metrics.clone(), shutdown.clone()).await?;
    let mut tasks = vec![server_task, rollout_task, analysis_task];
    tasks.extend(gitsync.tasks);
    Ok(Running {
        metrics_addr,
        webhook_addr: gitsync.webhook_addr,
        metrics,
        health,
        tasks,
        shutdown,
    })
}
