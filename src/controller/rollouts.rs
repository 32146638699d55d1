//! Runs the Rollout controller: indexes of ReplicaSets and AnalysisRuns by Rollout (one watch each, read by
//! the reconciler and used as triggers), and a kube-runtime Controller over Rollouts.
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::Rollout;
use crate::controller::departures::{Departures, left_the_cache};
use crate::controller::isolate::{PanicReport, isolated};
use crate::controller::metrics::Metrics;
use crate::controller::server::Health;
use crate::controller::shard::ShardFilter;
use crate::controller::workload_refs::WorkloadRefs;
use crate::events::{Recorder, Reporter};
use crate::rollout::reconcile::{self, AnalysisRunFactory, Context};

/// Where the controller looks: one namespace or all of them, and, when sharded, only the namespaces
/// of the held shards.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespace: Option<String>,
    pub shards: Option<ShardFilter>,
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

    /// Whether an object is in this scope's shards (always, unsharded).
    pub fn holds<K: ResourceExt>(&self, object: &K) -> bool {
        self.shards
            .as_ref()
            .is_none_or(|shards| shards.holds(object.namespace().as_deref().unwrap_or_default()))
    }

    /// A watch over the scope whose events of other shards' namespaces are dropped before any cache
    /// or trigger sees them, and whose objects come without managedFields: no controller reads them,
    /// and server-side apply makes them the largest part of an object (a Rollout's cache entry was
    /// 15 KB with them, 4.7 KB without; every cache of every kind holds what this yields).
    pub fn watch<K>(
        &self,
        client: &Client,
        config: watcher::Config,
    ) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let scope = self.clone();
        watcher(self.api::<K>(client), config)
            .try_filter(move |event| {
                let keep = match event {
                    watcher::Event::Apply(object)
                    | watcher::Event::InitApply(object)
                    | watcher::Event::Delete(object) => scope.holds(object),
                    watcher::Event::Init | watcher::Event::InitDone => true,
                };
                std::future::ready(keep)
            })
            .modify(|object| object.managed_fields_mut().clear())
    }
}

/// What every Rollout reconcile shares; built apart from [`run`] so the caller keeps a handle on its
/// per-object state.
pub fn context(client: Client, metrics: Arc<Metrics>, analysis: Arc<dyn AnalysisRunFactory>) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: crate::api::keys::CONTROLLER_FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        replica_sets: reconcile::replica_set_index(),
        analysis_runs: reconcile::analysis_run_index(),
        experiments: reconcile::experiment_index(),
        metrics,
        analysis,
        expectations: Default::default(),
        count_updates: Default::default(),
    })
}

/// Runs until `shutdown`; marks `health` ready once every cache has synced, and holds reconciles
/// until then (a reconcile on a partial ReplicaSet cache would recreate ReplicaSets and flap the
/// status of Healthy rollouts after every restart).
///
/// Readiness comes from the watch streams' own InitDone events rather than `Store::wait_until_ready`:
/// the kube-runtime Controller already waits on its store that way, and a second waiter on the same
/// store from another task can miss the wake-up for good (the store's one-shot keeps one waker), which
/// left `/readyz` at 503 forever in about one start in four.
///
/// What is kept per Rollout and per ReplicaSet is dropped when their watch shows them gone.
pub async fn run(ctx: Arc<Context>, scope: Scope, health: Arc<Health>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (rs_synced, rs_synced_rx) = tokio::sync::watch::channel(false);
    let (runs_synced, runs_synced_rx) = tokio::sync::watch::channel(false);
    let (rollouts_synced, rollouts_synced_rx) = tokio::sync::watch::channel(false);
    let (experiments_synced, experiments_synced_rx) = tokio::sync::watch::channel(false);
    // ReplicaSets and AnalysisRuns are kept as the plan reads them, indexed by their Rollout; the
    // watched objects themselves only pass through to trigger reconciles. Only ReplicaSets Sluice
    // made carry the hash label.
    let rs_ctx = ctx.clone();
    let mut rs_departures = Departures::default();
    let rs_watch = scope
        .watch::<ReplicaSet>(&client, watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL))
        .default_backoff()
        .inspect_ok(move |event| {
            rs_ctx.replica_sets.apply(event);
            for gone in rs_departures.observe(event) {
                rs_ctx.forget_replica_set(&gone.namespace, &gone.name);
            }
        })
        .inspect(move |event| mark_synced(event, &rs_synced))
        .touched_objects();
    let run_index = ctx.analysis_runs.clone();
    let run_watch = scope
        .watch::<AnalysisRun>(&client, watcher::Config::default())
        .default_backoff()
        .inspect_ok(move |event| run_index.apply(event))
        .inspect(move |event| mark_synced(event, &runs_synced))
        .touched_objects();
    // Only Experiments of experiment steps carry the step label.
    let experiment_index = ctx.experiments.clone();
    let experiment_watch = scope
        .watch::<Experiment>(
            &client,
            watcher::Config::default().labels(crate::api::keys::EXPERIMENT_STEP_LABEL),
        )
        .default_backoff()
        .inspect_ok(move |event| experiment_index.apply(event))
        .inspect(move |event| mark_synced(event, &experiments_synced))
        .touched_objects();
    let (rollout_store, rollout_writer) = reflector::store();
    let departed_ctx = ctx.clone();
    let mut departures = Departures::default();
    let workload_refs = WorkloadRefs::default();
    let refs_writer = workload_refs.clone();
    let rollout_watch = scope
        .watch::<Rollout>(&client, watcher::Config::default())
        .reflect(rollout_writer)
        .inspect_ok(move |event| {
            refs_writer.apply(event);
            for gone in departures.observe(event) {
                departed_ctx.forget_rollout(&gone.namespace, &gone.name, gone.uid.as_deref());
            }
        })
        .inspect(move |event| mark_synced(event, &rollouts_synced))
        .applied_objects();
    // Deployments named by a workloadRef: only their metadata is watched (a template change bumps the
    // generation and resourceVersion); the reconcile reads the one it needs.
    let deployment_watch = scope
        .watch::<PartialObjectMeta<Deployment>>(&client, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let cached = rollout_store.clone();
    let controller = Controller::for_stream(rollout_watch, rollout_store)
        .with_config(super::reconcile_config())
        .owns_stream(rs_watch)
        .owns_stream(run_watch)
        .owns_stream(experiment_watch)
        .watches_stream(deployment_watch, move |deployment| {
            workload_refs.rollouts_of(&deployment.namespace().unwrap_or_default(), &deployment.name_any())
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    let (all_synced, all_synced_rx) = tokio::sync::watch::channel(false);
    let readiness = tokio::spawn(async move {
        for mut synced in [rs_synced_rx, runs_synced_rx, experiments_synced_rx, rollouts_synced_rx] {
            if synced.wait_for(|s| *s).await.is_err() {
                return;
            }
        }
        all_synced.send_replace(true);
        health.set_ready(true);
        tracing::info!("rollout controller caches synced");
    });
    controller
        .run(
            move |rollout, ctx| {
                let mut synced = all_synced_rx.clone();
                let cached = cached.clone();
                async move {
                    // Err: the readiness task ended without syncing (shutting down); nothing to wait for.
                    let _ = synced.wait_for(|s| *s).await;
                    let report = PanicReport {
                        controller: "rollout",
                        metrics: &*ctx.metrics,
                        recorder: Some(&ctx.recorder),
                    };
                    let reconciled = reconcile::reconcile(rollout.clone(), ctx.clone());
                    let result = isolated(&*rollout, report, reconciled, |message| {
                        reconcile::Error::panicked(&rollout, message)
                    })
                    .await;
                    if left_the_cache(&cached, &rollout) {
                        ctx.forget_rollout(
                            &rollout.namespace().unwrap_or_default(),
                            &rollout.name_any(),
                            rollout.uid().as_deref(),
                        );
                    }
                    result
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "rollout controller event");
            }
        })
        .await;
    readiness.abort();
}

/// Flags a watch stream as synced at its first InitDone (the initial list is in the cache).
fn mark_synced<K>(event: &Result<watcher::Event<K>, watcher::Error>, synced: &tokio::sync::watch::Sender<bool>) {
    if matches!(event, Ok(watcher::Event::InitDone)) && !*synced.borrow() {
        synced.send_replace(true);
    }
}
