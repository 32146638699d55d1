//! Runs the Rollout controller: shared caches of ReplicaSets and AnalysisRuns (one watch each, read by
//! the reconciler and used as triggers), and a kube-runtime Controller over Rollouts.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::api::analysis::AnalysisRun;
use crate::api::rollout::Rollout;
use crate::controller::metrics::Metrics;
use crate::controller::server::Health;
use crate::rollout::hash::POD_TEMPLATE_HASH_LABEL;
use crate::rollout::reconcile::{self, AnalysisRunFactory, Context};

/// Where the controller looks: one namespace or all of them.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespace: Option<String>,
}

impl Scope {
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
}

/// Runs until `shutdown`; marks `health` ready once every cache has synced.
pub async fn run(
    client: Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    analysis: Arc<dyn AnalysisRunFactory>,
    shutdown: CancellationToken,
) {
    let (replica_sets, rs_writer) = reflector::store();
    // Only ReplicaSets Sluice made carry the hash label; pod templates are dropped from the cache
    // (the reconciler never reads them), which keeps memory flat with many rollouts.
    let rs_watch = watcher(
        scope.api::<ReplicaSet>(&client),
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
    )
    .default_backoff()
    .modify(|rs: &mut ReplicaSet| {
        rs.managed_fields_mut().clear();
        if let Some(spec) = rs.spec.as_mut() {
            spec.template = None;
        }
    })
    .reflect(rs_writer)
    .touched_objects();
    let (analysis_runs, run_writer) = reflector::store();
    let run_watch = watcher(scope.api::<AnalysisRun>(&client), watcher::Config::default())
        .default_backoff()
        .modify(|run: &mut AnalysisRun| run.managed_fields_mut().clear())
        .reflect(run_writer)
        .touched_objects();
    let rollouts = scope.api::<Rollout>(&client);
    let controller = Controller::new(rollouts, watcher::Config::default())
        .owns_stream(rs_watch)
        .owns_stream(run_watch)
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    let rollout_store = controller.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        replica_sets: replica_sets.clone(),
        analysis_runs: analysis_runs.clone(),
        metrics,
        analysis,
    });
    let readiness = tokio::spawn(async move {
        let synced = async {
            replica_sets.wait_until_ready().await.ok()?;
            analysis_runs.wait_until_ready().await.ok()?;
            rollout_store.wait_until_ready().await.ok()
        };
        if synced.await.is_some() {
            health.set_ready(true);
            tracing::info!("rollout controller caches synced");
        }
    });
    controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "rollout controller event");
            }
        })
        .await;
    readiness.abort();
}
