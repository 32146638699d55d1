//! The controller's HTTP endpoints: `/metrics` for Prometheus, `/healthz` (the process answers and
//! no controller task has ended; one that did is named, and the process is on its way out) and
//! `/readyz` (caches are synced, so decisions are made on a complete picture; a standby replica under
//! leader election is ready too: it is healthy and able to take over, and marking it unready would
//! stall every rolling update of a two-replica Deployment on the pod that can never become leader).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::controller::metrics::Metrics;

/// Shared between the controllers (who report readiness and their own end) and the endpoints.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    standby: AtomicBool,
    /// Which controller task ended before shutdown, and how (the first one).
    controller_ended: tokio::sync::watch::Sender<Option<String>>,
}

impl Health {
    /// A replica waiting for the lease: ready (it can take over), reported as such.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A controller task ended before shutdown: /healthz fails from now on. The first one is kept.
    pub fn set_controller_ended(&self, what: String) {
        self.controller_ended.send_if_modified(|ended| {
            let first = ended.is_none();
            if first {
                *ended = Some(what);
            }
            first
        });
    }

    /// The controller task that ended before shutdown, and how.
    pub fn controller_ended(&self) -> Option<String> {
        self.controller_ended.borrow().clone()
    }

    /// Resolves when a controller task ends before shutdown, with what ended and how.
    pub async fn until_a_controller_ends(&self) -> String {
        let mut ended = self.controller_ended.subscribe();
        match ended.wait_for(Option::is_some).await {
            Ok(what) => what.clone().unwrap_or_default(),
            // The sender lives in `self`, so it is never dropped while this borrows it.
            Err(_) => std::future::pending().await,
        }
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health })
}

async fn render_metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    match shared.health.controller_ended() {
        Some(ended) => (StatusCode::SERVICE_UNAVAILABLE, ended),
        None => (StatusCode::OK, "ok".to_string()),
    }
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.health.is_standby() {
        (StatusCode::OK, "ok: standby, not the leader")
    } else if shared.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Binds `addr` (port 0 picks one), logs the bound address and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding metrics address {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((bound, task))
}
