//! Runs the AnalysisRun controller: a kube-runtime Controller over AnalysisRuns that measures on
//! schedule (each reconcile requeues itself when the next measurement is due).
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::{Controller, watcher};
use tokio_util::sync::CancellationToken;

use crate::analysis::reconcile::{self, AnalysisContext};
use crate::api::analysis::AnalysisRun;
use crate::controller::isolate::{PanicReport, isolated};
use crate::controller::rollouts::Scope;

pub async fn run(ctx: AnalysisContext, scope: Scope, shutdown: CancellationToken) {
    let runs = scope.api::<AnalysisRun>(&ctx.client);
    Controller::new(runs, watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |run, ctx| async move {
                let report = PanicReport {
                    controller: "analysisrun",
                    metrics: &*ctx.metrics,
                    recorder: None,
                };
                let reconciled = reconcile::reconcile(run.clone(), ctx.clone());
                isolated(&*run, report, reconciled, |message| {
                    reconcile::Error::panicked(&run, message)
                })
                .await
            },
            reconcile::error_policy,
            Arc::new(ctx),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "analysis controller event");
            }
        })
        .await;
}
