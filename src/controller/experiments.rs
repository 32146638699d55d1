//! Runs the Experiment controller: a kube-runtime Controller over Experiments, woken by changes to the
//! ReplicaSets and AnalysisRuns they own (watched by the `sluice.dev/experiment` label only).
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Client;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use tokio_util::sync::CancellationToken;

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::keys::EXPERIMENT_LABEL;
use crate::controller::isolate::{PanicReport, isolated};
use crate::controller::metrics::Metrics;
use crate::controller::rollouts::Scope;
use crate::events::{Recorder, Reporter};
use crate::experiment::reconcile::{self, Context};
use crate::rollout::analysis_runs::TemplateAnalysisRunFactory;

pub fn context(client: Client, metrics: Arc<Metrics>) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: crate::api::keys::CONTROLLER_FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        templates: TemplateAnalysisRunFactory::new(client.clone()),
        client,
        metrics,
    })
}

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, scope: Scope, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(EXPERIMENT_LABEL);
    let (store, writer) = reflector::store();
    let experiments = scope
        .watch::<Experiment>(&client, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(experiments, store)
        .with_config(super::reconcile_config())
        .owns_stream(
            scope
                .watch::<ReplicaSet>(&client, owned.clone())
                .default_backoff()
                .touched_objects(),
        )
        .owns_stream(
            scope
                .watch::<AnalysisRun>(&client, owned)
                .default_backoff()
                .touched_objects(),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |experiment, ctx| async move {
                let report = PanicReport {
                    controller: "experiment",
                    metrics: &*ctx.metrics,
                    recorder: Some(&ctx.recorder),
                };
                let reconciled = reconcile::reconcile(experiment.clone(), ctx.clone());
                isolated(&*experiment, report, reconciled, |message| {
                    reconcile::Error::panicked(&experiment, message)
                })
                .await
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "experiment controller event");
            }
        })
        .await;
}
