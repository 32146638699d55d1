//! The dashboard's view of the cluster, kept by watches: a reflector store of Rollouts and GitSyncs,
//! each Rollout's weight history (recorded from watch updates, bounded), and a broadcast of which
//! namespace changed so open pages are pushed updates instead of polling.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::model::{WeightHistory, WeightPoint};
use crate::api::analysis::AnalysisRun;
use crate::api::gitsync::GitSync;
use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::Rollout;

/// Rollouts whose weight history is kept; past this, new rollouts are not charted until others go.
const MAX_TRACKED_ROLLOUTS: usize = 5000;
/// Change notices buffered per open page; a slow page that falls behind just refreshes once.
const CHANGE_BUFFER: usize = 256;

/// A change somewhere in `namespace` (a Rollout or something a rollout view shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub namespace: String,
}

type Key = (String, String);

#[derive(Clone)]
pub struct Live {
    pub rollouts: Store<Rollout>,
    pub gitsyncs: Store<GitSync>,
    history: Arc<Mutex<HashMap<Key, WeightHistory>>>,
    changes: broadcast::Sender<Change>,
    /// The Rollout watch's last error, until it next succeeds (shown on the page: an empty list
    /// because of a missing grant must not look like "no rollouts").
    watch_error: Arc<Mutex<Option<String>>>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Live {
    /// Starts the watches (all namespaces, or only `namespace`); they run until `stop`.
    pub fn start(client: &Client, namespace: Option<&str>, stop: CancellationToken) -> Live {
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let (rollouts, rollout_writer) = reflector::store();
        let (gitsyncs, gitsync_writer) = reflector::store();
        let live = Live {
            rollouts,
            gitsyncs,
            history: Arc::default(),
            changes,
            watch_error: Arc::default(),
        };
        let recorder = live.clone();
        let rollout_watch = watcher(api::<Rollout>(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(|rollout: &mut Rollout| rollout.managed_fields_mut().clear())
            .reflect(rollout_writer)
            .map(move |event| {
                let error = match &event {
                    Ok(event) => {
                        recorder.observe(event, chrono::Utc::now());
                        None
                    }
                    Err(e) => Some(e.to_string()),
                };
                let mut last = recorder.watch_error.lock().unwrap_or_else(|e| e.into_inner());
                if *last != error {
                    *last = error;
                    drop(last);
                    let _ = recorder.changes.send(Change {
                        namespace: String::new(),
                    });
                }
            });
        spawn(rollout_watch, stop.clone());
        let gitsync_watch = watcher(api::<GitSync>(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(|gitsync: &mut GitSync| gitsync.managed_fields_mut().clear())
            .reflect(gitsync_writer)
            .touched_objects();
        spawn(live.notify_on(gitsync_watch), stop.clone());
        let labelled = || watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL);
        let rs_watch = watcher(api::<ReplicaSet>(client, namespace), labelled())
            .default_backoff()
            .touched_objects();
        spawn(live.notify_on(rs_watch), stop.clone());
        let pod_watch = watcher(api::<Pod>(client, namespace), labelled())
            .default_backoff()
            .touched_objects();
        spawn(live.notify_on(pod_watch), stop.clone());
        let run_watch = watcher(api::<AnalysisRun>(client, namespace), watcher::Config::default())
            .default_backoff()
            .touched_objects();
        spawn(live.notify_on(run_watch), stop);
        live
    }

    /// Sends a change for the namespace of each object the stream yields (errors are retried by
    /// the watcher's backoff and logged at debug: a page just shows the last state meanwhile).
    fn notify_on<K: Resource, E: std::fmt::Display>(
        &self,
        objects: impl Stream<Item = Result<K, E>> + Send + 'static,
    ) -> impl Stream<Item = ()> + Send + 'static {
        let changes = self.changes.clone();
        objects.map(move |object| match object {
            Ok(object) => {
                let _ = changes.send(Change {
                    namespace: object.meta().namespace.clone().unwrap_or_default(),
                });
            }
            Err(e) => tracing::debug!(error = %e, "dashboard watch"),
        })
    }

    /// Records weights and announces the change for one Rollout watch event.
    pub fn observe(&self, event: &watcher::Event<Rollout>, now: chrono::DateTime<chrono::Utc>) {
        let (rollout, deleted) = match event {
            watcher::Event::Apply(r) | watcher::Event::InitApply(r) => (r, false),
            watcher::Event::Delete(r) => (r, true),
            watcher::Event::Init | watcher::Event::InitDone => {
                let _ = self.changes.send(Change {
                    namespace: String::new(),
                });
                return;
            }
        };
        let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if deleted {
                history.remove(&key);
            } else if history.contains_key(&key) || history.len() < MAX_TRACKED_ROLLOUTS {
                history.entry(key.clone()).or_default().record(rollout, now);
            }
        }
        let _ = self.changes.send(Change { namespace: key.0 });
    }

    pub fn weights(&self, namespace: &str, name: &str) -> Vec<WeightPoint> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .get(&(namespace.to_string(), name.to_string()))
            .map(WeightHistory::points)
            .unwrap_or_default()
    }

    pub fn watch_error(&self) -> Option<String> {
        self.watch_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The Rollouts in the store, all or one namespace's.
    pub fn rollouts(&self) -> Vec<Rollout> {
        self.rollouts.state().iter().map(|r| Rollout::clone(r)).collect()
    }

    pub fn gitsync(&self, namespace: &str, name: &str) -> Option<GitSync> {
        self.gitsyncs
            .get(&reflector::ObjectRef::new(name).within(namespace))
            .map(|g| GitSync::clone(&g))
    }
}

fn spawn(stream: impl Stream<Item = ()> + Send + 'static, stop: CancellationToken) {
    tokio::spawn(async move {
        let drained = stream.for_each(|()| async {});
        tokio::select! {
            () = drained => {}
            () = stop.cancelled() => {}
        }
    });
}
