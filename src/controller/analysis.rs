//! Runs the AnalysisRun controller: a kube-runtime Controller over AnalysisRuns that measures on
//! schedule (each reconcile requeues itself when the next measurement is due). A run's metrics series
//! are dropped when its watch shows it gone.
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use tokio_util::sync::CancellationToken;

use crate::analysis::reconcile::{self, AnalysisContext};
use crate::api::analysis::AnalysisRun;
use crate::controller::departures::{Departures, left_the_cache};
use crate::controller::isolate::{PanicReport, isolated};
use crate::controller::rollouts::Scope;

pub async fn run(ctx: Arc<AnalysisContext>, scope: Scope, shutdown: CancellationToken) {
    let (store, writer) = reflector::store();
    let departed_ctx = ctx.clone();
    let mut departures = Departures::default();
    let runs = scope
        .watch::<AnalysisRun>(&ctx.client, watcher::Config::default())
        .reflect(writer)
        .inspect_ok(move |event| {
            for gone in departures.observe(event) {
                departed_ctx.forget_run(&gone.namespace, &gone.name);
            }
        })
        .applied_objects();
    let cached = store.clone();
    Controller::for_stream(runs, store)
        .with_config(super::reconcile_config())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            move |run, ctx| {
                let cached = cached.clone();
                async move {
                    let report = PanicReport {
                        controller: "analysisrun",
                        metrics: &*ctx.metrics,
                        recorder: None,
                    };
                    let reconciled = reconcile::reconcile(run.clone(), ctx.clone());
                    let result = isolated(&*run, report, reconciled, |message| {
                        reconcile::Error::panicked(&run, message)
                    })
                    .await;
                    if left_the_cache(&cached, &run) {
                        ctx.forget_run(&run.namespace().unwrap_or_default(), &run.name_any());
                    }
                    result
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "analysis controller event");
            }
        })
        .await;
}
