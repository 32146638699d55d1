//! Runs notifications (leader only): watches the notifications ConfigMap (reloaded on change, and its
//! Secret re-read every few minutes), watches Rollouts, GitSyncs and AnalysisRuns, queues what fires
//! for their subscriptions, and records what was sent on each object (`notify::delivery`).
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::analysis::allowlist::Allowlist;
use crate::api::analysis::{AnalysisRun, AnalysisRunStatus};
use crate::api::gitsync::{GitSync, GitSyncStatus};
use crate::api::rollout::{Rollout, RolloutStatus};
use crate::controller::departures::Departures;
use crate::controller::metrics::Metrics;
use crate::controller::rollouts::Scope;
use crate::controller::server::Health;
use crate::controller::supervise::spawn_controller;
use crate::events::{Event, EventType, Recorder, Reporter};
use crate::notify::config::{self, NotifyConfig, SECRET_NAME};
use crate::notify::delivery::{
    self, Ledger, NotifyObserver, ObjectId, Queue, RetryPolicy, Sender, SentRecorder, Workers,
};
use crate::notify::subscriptions::has_subscriptions;
use crate::notify::triggers::{self, Firing, ObjectKind};

/// Notifications waiting to be sent at most; a full queue makes the object's reconcile retry later.
const QUEUE_CAPACITY: usize = 1024;
/// Notifications sent at once.
const WORKERS: usize = 4;
/// How long a reconcile waits to try again when the queue was full.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(5);
/// How often the Secret is read again (its changes are not watched: only `get` on it is granted).
const SECRET_REREAD: Duration = Duration::from_secs(300);

/// Where the ConfigMap is and how sending behaves (tests shorten the retries).
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    pub retry: RetryPolicy,
}

impl Settings {
    /// `NAMESPACE/NAME` of `--notifications-configmap`.
    pub fn parse(configmap: &str, retry: RetryPolicy) -> anyhow::Result<Settings> {
        let (namespace, name) = configmap
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| anyhow::anyhow!("--notifications-configmap {configmap:?}: expected NAMESPACE/NAME"))?;
        Ok(Settings {
            namespace: namespace.into(),
            name: name.into(),
            retry,
        })
    }
}

/// What notifications keep per object: the last status seen (to find the steps and commits passed
/// between two observations), the problems last reported, and the ledger of what was sent.
#[derive(Default)]
pub struct Memory {
    statuses: Mutex<HashMap<String, serde_json::Value>>,
    reported: Mutex<HashMap<String, Vec<String>>>,
    ledger: Ledger,
}

impl Memory {
    fn forget(&self, uid: &str) {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        self.reported.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        self.ledger.forget(uid);
    }

    /// How many objects each memory holds (tests look for leaks with it).
    pub fn sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            (
                "notification statuses",
                self.statuses.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
            (
                "notification problems",
                self.reported.lock().unwrap_or_else(|p| p.into_inner()).len(),
            ),
            ("notification ledger", self.ledger.objects()),
        ]
    }
}

/// The tasks notifications run, and their per-object memory.
pub struct Started {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub memory: Arc<Memory>,
}

/// Starts the ConfigMap watch, the senders and the three object watches.
pub fn start(
    client: Client,
    settings: Settings,
    allowlist: Allowlist,
    metrics: Arc<Metrics>,
    scope: Scope,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let (config_tx, config_rx) = watch::channel(Arc::new(NotifyConfig::default()));
    let memory = Arc::new(Memory::default());
    let observer: Arc<dyn NotifyObserver> = metrics.clone();
    let (queue, receiver) = Queue::new(QUEUE_CAPACITY, memory.ledger.clone(), observer.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::api::keys::CONTROLLER_FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let workers = Workers {
        sender: Sender::new(allowlist, settings.retry.clone())?,
        config: config_rx.clone(),
        recorder: Arc::new(KubeSentRecorder { client: client.clone() }),
        observer,
        ledger: memory.ledger.clone(),
        concurrency: WORKERS,
    };
    let mut tasks = vec![
        spawn_controller(
            "notifications-config",
            watch_config(client.clone(), settings, config_tx, recorder.clone(), shutdown.clone()),
            health.clone(),
            shutdown.clone(),
        ),
        spawn_controller(
            "notifications-delivery",
            delivery::run_workers(workers, receiver, shutdown.clone()),
            health.clone(),
            shutdown.clone(),
        ),
    ];
    let ctx = |kind| {
        Arc::new(Context {
            kind,
            queue: queue.clone(),
            config: config_rx.clone(),
            memory: memory.clone(),
            recorder: recorder.clone(),
        })
    };
    tasks.push(spawn_controller(
        "notifications-rollout",
        watch_objects::<Rollout>(
            scope.watch(&client, watcher::Config::default()),
            ctx(ObjectKind::Rollout),
            shutdown.clone(),
        ),
        health.clone(),
        shutdown.clone(),
    ));
    tasks.push(spawn_controller(
        "notifications-gitsync",
        watch_objects::<GitSync>(
            scope.watch(&client, watcher::Config::default()),
            ctx(ObjectKind::GitSync),
            shutdown.clone(),
        ),
        health.clone(),
        shutdown.clone(),
    ));
    tasks.push(spawn_controller(
        "notifications-analysisrun",
        watch_objects::<AnalysisRun>(
            scope.watch(&client, watcher::Config::default()),
            ctx(ObjectKind::AnalysisRun),
            shutdown.clone(),
        ),
        health,
        shutdown,
    ));
    Ok(Started { tasks, memory })
}

/// Keeps `config` up to date with the ConfigMap (none: no services) and its Secret; reports each new
/// set of problems as a log line and a Warning event on the ConfigMap.
async fn watch_config(
    client: Client,
    settings: Settings,
    config: watch::Sender<Arc<NotifyConfig>>,
    recorder: Recorder,
    shutdown: CancellationToken,
) {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &settings.namespace);
    let pinned = watcher::Config::default().fields(&format!("metadata.name={}", settings.name));
    let mut changes = watcher(configmaps, pinned)
        .default_backoff()
        .applied_objects_or_deleted()
        .boxed();
    let mut reread = tokio::time::interval(SECRET_REREAD);
    reread.tick().await;
    let mut current: Option<ConfigMap> = None;
    let mut reported: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = reread.tick() => {}
            change = changes.next() => match change {
                Some(Ok(Change::Applied(map))) => current = Some(*map),
                Some(Ok(Change::Deleted)) => current = None,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the notifications ConfigMap");
                    continue;
                }
                None => return,
            },
        }
        let data = current.as_ref().and_then(|m| m.data.clone()).unwrap_or_default();
        let secret = if data.values().any(|v| v.contains('$')) {
            read_secret(&secrets).await
        } else {
            None
        };
        let parsed = config::parse(&data, secret.as_ref());
        if **config.borrow() != parsed.config {
            tracing::info!(
                configmap = %format!("{}/{}", settings.namespace, settings.name),
                services = ?parsed.config.services.keys().collect::<Vec<_>>(),
                "notifications configuration loaded"
            );
        }
        if parsed.problems != reported {
            if let Some(map) = &current {
                for problem in &parsed.problems {
                    tracing::warn!(configmap = %settings.name, problem = %problem, "notifications ConfigMap entry left out");
                }
                if !parsed.problems.is_empty() {
                    publish(
                        &recorder,
                        &map.object_ref(&()),
                        "InvalidNotificationConfig",
                        &parsed.problems.join("; "),
                    )
                    .await;
                }
            }
            reported = parsed.problems.clone();
        }
        config.send_replace(Arc::new(parsed.config));
    }
}

/// A change of the pinned ConfigMap.
enum Change {
    Applied(Box<ConfigMap>),
    Deleted,
}

trait AppliedOrDeleted {
    fn applied_objects_or_deleted(self) -> impl futures::Stream<Item = Result<Change, watcher::Error>> + Send;
}

impl<S> AppliedOrDeleted for S
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Send,
{
    fn applied_objects_or_deleted(self) -> impl futures::Stream<Item = Result<Change, watcher::Error>> + Send {
        // A re-list that no longer holds the ConfigMap ends with InitDone and no InitApply: deleted.
        let mut listed = false;
        self.filter_map(move |event| {
            let change = match event {
                Ok(watcher::Event::Apply(map)) | Ok(watcher::Event::InitApply(map)) => {
                    listed = true;
                    Some(Ok(Change::Applied(Box::new(map))))
                }
                Ok(watcher::Event::Delete(_)) => Some(Ok(Change::Deleted)),
                Ok(watcher::Event::Init) => {
                    listed = false;
                    None
                }
                Ok(watcher::Event::InitDone) => (!listed).then_some(Ok(Change::Deleted)),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(change)
        })
    }
}

/// The Secret's data as text (keys that are not UTF-8 are left out); None when it is missing or
/// cannot be read (logged; the entries that need it are reported).
async fn read_secret(secrets: &Api<Secret>) -> Option<BTreeMap<String, String>> {
    match secrets.get_opt(SECRET_NAME).await {
        Ok(Some(secret)) => Some(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v.trim_end().to_string())))
                .collect(),
        ),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, secret = SECRET_NAME, "reading the notifications Secret");
            None
        }
    }
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Notify".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %e, "publishing an event failed");
    }
}

/// A kind that can subscribe: how its status is read and which triggers it fires.
trait Subscriber:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + DeserializeOwned + Send + Sync;
    fn status(&self) -> Option<&Self::Status>;
    fn firings(&self, previous: Option<&Self::Status>, current: &Self::Status) -> Vec<Firing>;
}

impl Subscriber for Rollout {
    type Status = RolloutStatus;
    fn status(&self) -> Option<&RolloutStatus> {
        self.status.as_ref()
    }
    fn firings(&self, previous: Option<&RolloutStatus>, current: &RolloutStatus) -> Vec<Firing> {
        triggers::rollout_firings(previous, current)
    }
}

impl Subscriber for GitSync {
    type Status = GitSyncStatus;
    fn status(&self) -> Option<&GitSyncStatus> {
        self.status.as_ref()
    }
    fn firings(&self, previous: Option<&GitSyncStatus>, current: &GitSyncStatus) -> Vec<Firing> {
        triggers::gitsync_firings(previous, current)
    }
}

impl Subscriber for AnalysisRun {
    type Status = AnalysisRunStatus;
    fn status(&self) -> Option<&AnalysisRunStatus> {
        self.status.as_ref()
    }
    fn firings(&self, _previous: Option<&AnalysisRunStatus>, current: &AnalysisRunStatus) -> Vec<Firing> {
        triggers::analysis_run_firings(&self.name_any(), current)
    }
}

struct Context {
    kind: ObjectKind,
    queue: Queue,
    config: watch::Receiver<Arc<NotifyConfig>>,
    memory: Arc<Memory>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Never(String);

/// One watch of kind `K`: each change of a subscribed object queues what fires for it.
async fn watch_objects<K: Subscriber>(
    watch: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let (store, writer) = reflector::store();
    let departed = ctx.clone();
    let mut departures = Departures::default();
    let objects = watch
        .default_backoff()
        .try_filter_map(|event| std::future::ready(Ok(only_subscribed(event))))
        .reflect(writer)
        .inspect_ok(move |event| {
            for gone in departures.observe(event) {
                if let Some(uid) = gone.uid {
                    departed.memory.forget(&uid);
                }
            }
        })
        .applied_objects();
    Controller::for_stream(objects, store)
        .with_config(super::reconcile_config())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |object, ctx| async move { Ok::<_, Never>(observe(&*object, &ctx).await) },
            |_, _: &Never, _| Action::requeue(QUEUE_FULL_RETRY),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// Notifications cache only objects that subscribe (most Rollouts, AnalysisRuns and GitSyncs do not,
/// and a second cache of them all doubled the controller's largest structure): an unsubscribed
/// object is left out of the initial list, and its change is passed on as its deletion, so the cache
/// and the remembered status let go of an object whose subscriptions were removed.
fn only_subscribed<K: Resource>(event: watcher::Event<K>) -> Option<watcher::Event<K>> {
    match event {
        watcher::Event::Apply(object) if !has_subscriptions(object.annotations()) => {
            Some(watcher::Event::Delete(object))
        }
        watcher::Event::InitApply(object) if !has_subscriptions(object.annotations()) => None,
        other => Some(other),
    }
}

/// Queues what fires for `object`; the status is remembered only once everything was queued.
async fn observe<K: Subscriber>(object: &K, ctx: &Context) -> Action {
    let Some(uid) = object.uid() else {
        return Action::await_change();
    };
    // Only subscribing objects reach here (`only_subscribed`); one whose subscriptions went was
    // passed on as deleted, and its memory forgotten with the departure.
    let annotations = object.annotations();
    let Some(current) = object.status() else {
        return Action::await_change();
    };
    let previous: Option<K::Status> = ctx
        .memory
        .statuses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&uid)
        .and_then(|value| serde_json::from_value(value.clone()).ok());
    let firings = object.firings(previous.as_ref(), current);
    let id = ObjectId {
        kind: ctx.kind,
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        uid: uid.clone(),
    };
    let object_json = serde_json::to_value(object).unwrap_or_default();
    let config = ctx.config.borrow().clone();
    let (notifications, problems) =
        crate::notify::notifications_for(&id, annotations, &object_json, firings, &config, &ctx.memory.ledger);
    report_problems(ctx, object, &uid, problems).await;
    let mut all_queued = true;
    for notification in notifications {
        if let Err(left) = ctx.queue.try_push(notification) {
            tracing::warn!(object = %format!("{}/{}", id.namespace, id.name), key = %left.firing.key, "notification queue full; trying again shortly");
            all_queued = false;
        }
    }
    if !all_queued {
        return Action::requeue(QUEUE_FULL_RETRY);
    }
    if let Ok(value) = serde_json::to_value(current) {
        ctx.memory
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid, value);
    }
    Action::await_change()
}

/// A Warning event `InvalidSubscription` on the object when its subscription problems change.
async fn report_problems<K: Subscriber>(ctx: &Context, object: &K, uid: &str, problems: Vec<String>) {
    let changed = {
        let mut reported = ctx.memory.reported.lock().unwrap_or_else(|p| p.into_inner());
        if problems.is_empty() {
            reported.remove(uid);
            false
        } else if reported.get(uid) == Some(&problems) {
            false
        } else {
            reported.insert(uid.to_string(), problems.clone());
            true
        }
    };
    if changed {
        let note = problems.join("; ");
        tracing::warn!(object = %object.name_any(), problems = %note, "notification subscriptions left out");
        publish(&ctx.recorder, &object.object_ref(&()), "InvalidSubscription", &note).await;
    }
}

/// Records sent keys in the object's `notifications.sluice.dev/sent` annotation: a merge patch that
/// carries the resourceVersion read, so two writers cannot drop each other's keys (a conflict is
/// retried by the caller on a fresh read).
struct KubeSentRecorder {
    client: Client,
}

impl KubeSentRecorder {
    async fn record_on<K: Subscriber>(&self, object: &ObjectId, keys: &[String]) -> Result<(), String> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &object.namespace);
        let Some(current) = api.get_opt(&object.name).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        if current.uid().as_deref() != Some(object.uid.as_str()) {
            // Deleted and created again: the new object has not seen this notification's state.
            return Ok(());
        }
        let mut patch = delivery::sent_patch(current.annotations(), keys);
        patch["metadata"]["resourceVersion"] = current.resource_version().unwrap_or_default().into();
        api.patch(
            &object.name,
            &PatchParams::apply(crate::api::keys::CONTROLLER_FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl SentRecorder for KubeSentRecorder {
    async fn record(&self, object: &ObjectId, keys: &[String]) -> Result<(), String> {
        match object.kind {
            ObjectKind::Rollout => self.record_on::<Rollout>(object, keys).await,
            ObjectKind::GitSync => self.record_on::<GitSync>(object, keys).await,
            ObjectKind::AnalysisRun => self.record_on::<AnalysisRun>(object, keys).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(annotations: &[(&str, &str)]) -> Rollout {
        let mut rollout = Rollout::example("app", 1, vec![]);
        rollout.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        rollout
    }

    fn kind(event: Option<watcher::Event<Rollout>>) -> &'static str {
        match event {
            None => "dropped",
            Some(watcher::Event::Apply(_)) => "apply",
            Some(watcher::Event::InitApply(_)) => "init-apply",
            Some(watcher::Event::Delete(_)) => "delete",
            Some(watcher::Event::Init) => "init",
            Some(watcher::Event::InitDone) => "init-done",
        }
    }

    #[test]
    fn only_subscribed_objects_reach_the_cache() {
        let key = format!("{}on-rollout-aborted.slack", crate::api::keys::NOTIFY_SUBSCRIBE_PREFIX);
        let subscribed = rollout(&[(key.as_str(), "#deploys")]);
        let plain = rollout(&[("team", "payments")]);
        assert_eq!(
            kind(only_subscribed(watcher::Event::Apply(subscribed.clone()))),
            "apply"
        );
        assert_eq!(
            kind(only_subscribed(watcher::Event::InitApply(subscribed.clone()))),
            "init-apply"
        );
        assert_eq!(kind(only_subscribed(watcher::Event::Delete(subscribed))), "delete");
        // Subscriptions removed: the cache and the remembered status must let go.
        assert_eq!(kind(only_subscribed(watcher::Event::Apply(plain.clone()))), "delete");
        assert_eq!(
            kind(only_subscribed(watcher::Event::InitApply(plain.clone()))),
            "dropped"
        );
        assert_eq!(kind(only_subscribed(watcher::Event::Delete(plain))), "delete");
        assert_eq!(kind(only_subscribed(watcher::Event::<Rollout>::Init)), "init");
        assert_eq!(kind(only_subscribed(watcher::Event::<Rollout>::InitDone)), "init-done");
    }

    #[test]
    fn the_configmap_flag_is_namespace_slash_name() {
        let settings = Settings::parse("sluice-system/sluice-notifications", RetryPolicy::default()).unwrap();
        assert_eq!(
            (settings.namespace.as_str(), settings.name.as_str()),
            ("sluice-system", "sluice-notifications")
        );
        for bad in ["", "name", "/name", "ns/", "a/b/c"] {
            assert!(Settings::parse(bad, RetryPolicy::default()).is_err(), "{bad:?}");
        }
    }
}
