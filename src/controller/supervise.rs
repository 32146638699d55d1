//! A controller task never ends silently: one that ends before shutdown — it returned, or panicked
//! outside a reconcile — fails /healthz naming it, and the process exits non-zero (see
//! `Running::run_until` and `leader::run`), so Kubernetes restarts it and, under leader election, the
//! Lease moves to a standby. Without this a dead controller kept answering 200 and kept the Lease.
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controller::isolate::panic_message;
use crate::controller::server::Health;

/// Spawns controller task `name`; if it ends before `shutdown` is cancelled, `health` is told.
pub fn spawn_controller(
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let outcome = AssertUnwindSafe(task).catch_unwind().await;
        let panic = outcome.err().map(|payload| panic_message(payload.as_ref()));
        if let Some(ended) = unexpected_end(name, shutdown.is_cancelled(), panic) {
            tracing::error!(controller = name, "{ended}; exiting so that the process is restarted");
            health.set_controller_ended(ended);
        }
    })
}

/// What to report when controller task `name` ended: nothing when it was asked to stop (even if it
/// panicked on the way out, the process is stopping anyway), else how it ended.
fn unexpected_end(name: &str, shutting_down: bool, panic: Option<String>) -> Option<String> {
    if shutting_down {
        return None;
    }
    Some(match panic {
        Some(message) => format!("controller {name} panicked outside a reconcile: {message}"),
        None => format!("controller {name} stopped"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_end_before_shutdown_is_reported_and_it_says_how() {
        assert_eq!(unexpected_end("rollout", true, Some("boom".into())), None);
        assert_eq!(unexpected_end("rollout", true, None), None);
        assert_eq!(
            unexpected_end("rollout", false, Some("boom".into())).as_deref(),
            Some("controller rollout panicked outside a reconcile: boom")
        );
        assert_eq!(
            unexpected_end("gitsync", false, None).as_deref(),
            Some("controller gitsync stopped")
        );
    }

    #[tokio::test]
    async fn a_controller_task_that_ends_fails_health_until_shutdown_says_otherwise() {
        let health = Arc::new(Health::default());
        let shutdown = CancellationToken::new();
        spawn_controller(
            "analysisrun",
            async { panic!("watch stream broke") },
            health.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), health.until_a_controller_ends())
            .await
            .expect("the end is reported");
        assert_eq!(
            ended,
            "controller analysisrun panicked outside a reconcile: watch stream broke"
        );
        assert_eq!(health.controller_ended(), Some(ended));

        let quiet = Arc::new(Health::default());
        shutdown.cancel();
        spawn_controller("rollout", async {}, quiet.clone(), shutdown)
            .await
            .unwrap();
        assert_eq!(quiet.controller_ended(), None, "a stop asked for is not a failure");
    }
}
