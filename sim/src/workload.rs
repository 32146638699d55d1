//! The workloads a rollout acts on: a Deployment controller (simplified, `deployments`), a ReplicaSet
//! controller creating Pods, pods turning ready (or
//! crash-looping), ReplicaSet status, plus the traffic generator and HTTPRoute status behind one facade.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::SimConfig;
use crate::api::{ApiServer, DeleteOptions, ListOptions, WriteOptions, now_rfc3339};
use crate::gateway;
use crate::registry::ResourceType;
use crate::store::{Change, ObjectKey, StoredObject};
use crate::traffic::Traffic;

/// Per pod (template): how long until it turns ready, e.g. "1500ms", "2s", "0s".
pub const READY_DELAY_ANNOTATION: &str = "sim.sluice.dev/ready-delay";
/// Per pod (template): "true" makes the pod run but never turn ready (CrashLoopBackOff).
pub const CRASH_ANNOTATION: &str = "sim.sluice.dev/crash";
const FIELD_MANAGER: &str = "sluice-sim-replicaset-controller";
const NODE_NAME: &str = "sim-node";
const HOST_IP: &str = "172.18.0.2";
/// How often a crash-looping container restarts.
const CRASH_RESTART_INTERVAL: Duration = Duration::from_secs(3);
/// Safety net: everything is reconciled at least this often, whatever the change feed says. Between
/// full passes a pass looks only at what changed and what is due, so its cost follows the writes,
/// not the number of stored objects.
const RESYNC: Duration = Duration::from_secs(10);
/// A failed write is retried this soon (the object is due again), as the level-triggered pass did.
const RETRY: Duration = Duration::from_millis(500);
/// Resources whose changes can require work from the controller.
const WATCHED: [(&str, &str); 7] = [
    ("", "pods"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
    ("apps", "deployments"),
    ("", "services"),
    (gateway::GATEWAY_GROUP, gateway::HTTPROUTES),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
];

/// The simulator's workload machinery: started by `Simulator::start`.
pub struct Workloads {
    api: Arc<ApiServer>,
    pod_ready_delay: Duration,
    traffic_tick: Duration,
    traffic: Arc<Traffic>,
}

impl Workloads {
    pub fn new(api: Arc<ApiServer>, config: &SimConfig) -> Self {
        let traffic = Arc::new(Traffic::new(api.clone()));
        Workloads {
            api,
            pod_ready_delay: config.pod_ready_delay,
            traffic_tick: config.traffic_tick,
            traffic,
        }
    }

    /// `GET /sim/metrics`: the simulated traffic for Prometheus.
    pub fn routes(&self) -> axum::Router {
        self.traffic.routes()
    }

    /// The controller loop and the traffic loop, both ending when `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let controller = Controller::new(self.api.clone(), self.pod_ready_delay);
        let run_controller = spawn_on_own_thread(controller, shutdown.clone());
        let traffic = self.traffic.clone();
        let tick = self.traffic_tick.max(Duration::from_millis(1));
        let run_traffic = tokio::spawn(async move {
            tokio::select! { _ = run_traffic(traffic, tick) => {}, _ = shutdown.cancelled() => {} }
        });
        vec![run_controller, run_traffic]
    }
}

/// Runs the workload controller on a thread of its own. Its passes are synchronous work under the
/// store's lock (thousands of objects on a full pass); on the API's async workers they would stall
/// every request, and with two workers a pass long enough times clients out. The returned task ends
/// when the thread does.
fn spawn_on_own_thread(controller: Controller, shutdown: CancellationToken) -> JoinHandle<()> {
    let (ended, thread_ended) = tokio::sync::oneshot::channel::<()>();
    let started = std::thread::Builder::new().name("sim-workloads".into()).spawn(move || {
        let _ended = ended;
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return tracing::error!("the workload controller cannot start a runtime: {e}"),
        };
        runtime.block_on(async move {
            tokio::select! { _ = controller.run() => {}, _ = shutdown.cancelled() => {} }
        });
    });
    if let Err(e) = started {
        tracing::error!("the workload controller cannot start a thread: {e}");
    }
    tokio::spawn(async move {
        let _ = thread_ended.await;
    })
}

async fn run_traffic(traffic: Arc<Traffic>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        interval.tick().await;
        // Real elapsed time, not the nominal tick, so the rate holds when ticks are late.
        let now = Instant::now();
        traffic.tick(now - last);
        last = now;
    }
}

/// When the controller first saw a pod; its readiness and restarts are timed from there.
#[derive(Debug, Clone, Copy)]
struct PodClock {
    seen: Instant,
    /// When the pod turned Running (ready, unless it crash-loops).
    running: Option<Instant>,
}

/// Timed work found by a pass: the earliest moment, and which object (pod or ReplicaSet) is due when.
#[derive(Debug, Default)]
struct Wakeup {
    earliest: Option<Instant>,
    due: Vec<(Instant, ObjectKey)>,
}

impl Wakeup {
    fn at(&mut self, when: Instant) {
        self.earliest = Some(self.earliest.map_or(when, |w| w.min(when)));
    }

    fn object_at(&mut self, when: Instant, key: &ObjectKey) {
        self.at(when);
        self.due.push((when, key.clone()));
    }
}

/// What a pass looks at: everything (at start, every RESYNC, after the change feed lagged), or the
/// objects that changed since the last pass and those whose timed work is due.
#[derive(Debug, Default)]
struct Work {
    all: bool,
    pods: HashSet<ObjectKey>,
    replicasets: HashSet<ObjectKey>,
    deployments: HashSet<ObjectKey>,
    /// uids of owners of changed pods and ReplicaSets, resolved to their objects at the pass.
    owners: HashSet<String>,
    deleted_pods: Vec<String>,
    jobs: bool,
    routes: bool,
}

impl Work {
    fn everything() -> Self {
        Work {
            all: true,
            ..Default::default()
        }
    }

    fn note(&mut self, change: &Change) {
        let object = &change.object;
        let owners = object
            .owners
            .iter()
            .chain(change.previous.iter().flat_map(|p| p.owners.iter()));
        match (object.key.resource.group.as_str(), object.key.resource.plural.as_str()) {
            ("", "pods") => {
                self.owners.extend(owners.cloned());
                if change.event == crate::store::EventType::Deleted {
                    self.deleted_pods.push(object.uid.clone());
                } else {
                    self.pods.insert(object.key.clone());
                }
            }
            ("apps", "replicasets") => {
                self.owners.extend(owners.cloned());
                self.replicasets.insert(object.key.clone());
            }
            ("apps", "deployments") => {
                self.deployments.insert(object.key.clone());
            }
            ("batch", "jobs") => self.jobs = true,
            _ => self.routes = true,
        }
    }
}

/// The ReplicaSet and Pod controller (and HTTPRoute status): level-triggered passes over the store.
struct Controller {
    api: Arc<ApiServer>,
    pods_rt: Arc<ResourceType>,
    replicasets_rt: Arc<ResourceType>,
    deployments_rt: Arc<ResourceType>,
    default_ready_delay: Duration,
    clocks: HashMap<String, PodClock>,
    next_ip: u32,
    jobs: crate::job::JobController,
    /// Pods and ReplicaSets with timed work (readiness, restarts, minReadySeconds), by due time.
    timers: BTreeMap<Instant, HashSet<ObjectKey>>,
    /// When the Job controller next has timed work.
    jobs_due: Option<Instant>,
}

impl Controller {
    fn new(api: Arc<ApiServer>, default_ready_delay: Duration) -> Self {
        let pods_rt = api.resource("", "pods").expect("pods are built in");
        let replicasets_rt = api.resource("apps", "replicasets").expect("replicasets are built in");
        let jobs = crate::job::JobController::new(&api);
        let deployments_rt = api.resource("apps", "deployments").expect("deployments are built in");
        Controller {
            api,
            pods_rt,
            replicasets_rt,
            deployments_rt,
            default_ready_delay,
            clocks: HashMap::new(),
            next_ip: 0,
            jobs,
            timers: BTreeMap::new(),
            jobs_due: None,
        }
    }

    /// Reconciles on every relevant change, at timed deadlines (readiness, restarts) and every RESYNC.
    async fn run(mut self) {
        let mut changes = self
            .api
            .store
            .lock()
            .watch_from(None)
            .expect("watching from now always works")
            .live;
        let mut work = Work::everything();
        let mut resync = Instant::now() + RESYNC;
        loop {
            if work.all {
                resync = Instant::now() + RESYNC;
            }
            let wakeup = self.reconcile(work);
            let deadline = wakeup.map_or(resync, |w| w.min(resync));
            work = match wait_for_work(&mut changes, deadline).await {
                Some(work) => work,
                None => return,
            };
            if Instant::now() >= resync {
                work.all = true;
            }
        }
    }

    /// One pass: pod lifecycle first (so ReplicaSet status sees fresh readiness), then ReplicaSets,
    /// routes. Returns when timed work is next due.
    fn reconcile(&mut self, mut work: Work) -> Option<Instant> {
        let now = Instant::now();
        let mut wakeup = Wakeup::default();
        // Timed work that is due joins what changed.
        let later = self.timers.split_off(&(now + Duration::from_nanos(1)));
        for key in std::mem::replace(&mut self.timers, later).into_values().flatten() {
            if key.resource.plural == "pods" {
                work.pods.insert(key);
            } else {
                work.replicasets.insert(key);
            }
        }
        let jobs_due = self.jobs_due.is_some_and(|due| due <= now);
        if !work.all {
            // A pod's (or ReplicaSet's) change is work for its owners: ReplicaSets, Deployments, Jobs.
            let txn = self.api.store.lock();
            for key in work.pods.iter().chain(work.replicasets.iter()) {
                if let Some(object) = txn.get(key) {
                    work.owners.extend(object.owners.iter().cloned());
                }
            }
            for uid in &work.owners {
                match txn.key_of_uid(uid) {
                    Some(key) if key.resource.plural == "replicasets" => {
                        work.replicasets.insert(key);
                    }
                    Some(key) if key.resource.plural == "deployments" => {
                        work.deployments.insert(key);
                    }
                    // Jobs, and owners already gone (their pods may be Job pods).
                    _ => work.jobs = true,
                }
            }
        }
        for uid in &work.deleted_pods {
            self.clocks.remove(uid);
        }
        self.progress_pods(now, &mut wakeup, &work);
        if work.all {
            crate::deployments::sync(&self.api, &self.deployments_rt, &self.replicasets_rt);
        } else {
            crate::deployments::sync_keys(&self.api, &self.deployments_rt, &self.replicasets_rt, &work.deployments);
        }
        self.sync_replicasets(now, &mut wakeup, &work);
        if work.all || work.jobs || jobs_due {
            self.jobs_due = self.jobs.sync(&self.api, self.default_ready_delay, now);
        }
        if let Some(when) = self.jobs_due {
            wakeup.at(when);
        }
        if work.all || work.routes {
            gateway::sync_route_status(&self.api);
        }
        for (when, key) in wakeup.due {
            self.timers.entry(when).or_default().insert(key);
        }
        // Timed work of earlier passes counts too: this pass may not have looked at those objects.
        let timers = self.timers.keys().next().copied();
        [wakeup.earliest, timers].into_iter().flatten().min()
    }

    /// The objects of `rt` a pass looks at: all of them, or those named in `keys` still stored.
    fn selected(&self, rt: &ResourceType, all: bool, keys: &HashSet<ObjectKey>) -> Vec<Arc<StoredObject>> {
        if all {
            return self.list(rt);
        }
        let txn = self.api.store.lock();
        let mut objects: Vec<Arc<StoredObject>> = keys.iter().filter_map(|k| txn.get(k)).collect();
        // Key order, as a full pass goes: pod IPs and writes happen in the same order either way.
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects
    }

    fn list(&self, rt: &ResourceType) -> Vec<Arc<StoredObject>> {
        self.api
            .list(rt, None, &ListOptions::default())
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Moves pods through Pending → Running (ready or crash-looping) and counts crash restarts.
    fn progress_pods(&mut self, now: Instant, wakeup: &mut Wakeup, work: &Work) {
        let pods = self.selected(&self.pods_rt, work.all, &work.pods);
        if work.all {
            let live: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
            self.clocks.retain(|uid, _| live.contains(uid.as_str()));
        }
        for stored in pods.iter().filter(|p| !p.deleting) {
            let pod = stored.value();
            if crate::job::owned_by_job(&pod) {
                continue; // the Job controller runs its pods to completion
            }
            let clock = *self.clocks.entry(stored.uid.clone()).or_insert(PodClock {
                seen: now,
                running: None,
            });
            let crashing = annotation(&pod, CRASH_ANNOTATION) == Some("true");
            match pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
            {
                "Pending" => {
                    let due = clock.seen + self.ready_delay(&pod);
                    if now < due {
                        wakeup.object_at(due, &stored.key);
                        continue;
                    }
                    let ip = self.allocate_ip();
                    if !self.write_pod_status(stored, running_status(&pod, &ip, crashing, 0)) {
                        wakeup.object_at(now + RETRY, &stored.key);
                        continue;
                    }
                    self.clocks.insert(
                        stored.uid.clone(),
                        PodClock {
                            running: Some(now),
                            ..clock
                        },
                    );
                    if crashing {
                        wakeup.object_at(now + CRASH_RESTART_INTERVAL, &stored.key);
                    }
                }
                "Running" if crashing => self.count_restarts(stored, &pod, clock, now, wakeup),
                _ => {}
            }
        }
    }

    fn ready_delay(&self, pod: &Value) -> Duration {
        annotation(pod, READY_DELAY_ANNOTATION)
            .and_then(parse_duration)
            .unwrap_or(self.default_ready_delay)
    }

    fn count_restarts(
        &mut self,
        stored: &StoredObject,
        pod: &Value,
        clock: PodClock,
        now: Instant,
        wakeup: &mut Wakeup,
    ) {
        let running = clock.running.unwrap_or(clock.seen);
        let periods = (now - running).as_millis() / CRASH_RESTART_INTERVAL.as_millis();
        let restarts = u64::try_from(periods).unwrap_or(u64::MAX);
        let recorded = pod
            .pointer("/status/containerStatuses/0/restartCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if restarts > recorded {
            let ip = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !self.write_pod_status(stored, running_status(pod, &ip, true, restarts)) {
                wakeup.object_at(now + RETRY, &stored.key);
            }
        }
        wakeup.object_at(running + CRASH_RESTART_INTERVAL * (restarts as u32 + 1), &stored.key);
    }

    /// 10.244.x.y, like a kind cluster's pod network.
    fn allocate_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip = self.next_ip.wrapping_add(1);
        format!("10.244.{}.{}", (n / 254) % 256, n % 254 + 1)
    }

    fn write_pod_status(&self, stored: &StoredObject, status: Value) -> bool {
        let mut pod = stored.to_value();
        pod["status"] = status;
        self.write_status(&self.pods_rt, stored, pod)
    }

    /// Writes an object's status subresource; false (logged) when it failed, to be retried.
    fn write_status(&self, rt: &ResourceType, stored: &StoredObject, object: Value) -> bool {
        let opts = WriteOptions {
            field_manager: FIELD_MANAGER.into(),
            subresource: Some("status".into()),
            ..Default::default()
        };
        let (ns, name) = (&stored.key.namespace, &stored.key.name);
        // No resourceVersion: only the status is taken from the body, so a concurrent spec write is kept.
        let object = without_resource_version(object);
        match self.api.update(rt, ns, name, object, &opts) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(kind = %rt.kind, %name, error = %e.message, "could not write status");
                false
            }
        }
    }

    fn sync_replicasets(&mut self, now: Instant, wakeup: &mut Wakeup, work: &Work) {
        let replicasets = self.selected(&self.replicasets_rt, work.all, &work.replicasets);
        for stored in replicasets.iter().filter(|r| !r.deleting) {
            let rs = stored.to_value();
            let desired = rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize;
            let owned = self.owned_pods(stored);
            if owned.len() < desired {
                if !self.create_pods(stored, &rs, desired - owned.len()) {
                    wakeup.object_at(now + RETRY, &stored.key);
                }
            } else if owned.len() > desired {
                let excess = owned.len() - desired;
                self.delete_pods(owned, excess);
            }
            let owned = self.owned_pods(stored);
            let mut timed = Wakeup::default();
            let status = self.replicaset_status(&rs, &owned, now, &mut timed);
            if let Some(when) = timed.earliest {
                wakeup.object_at(when, &stored.key);
            }
            if rs.get("status") != Some(&status) {
                let mut updated = rs;
                updated["status"] = status;
                if !self.write_status(&self.replicasets_rt, stored, updated) {
                    wakeup.object_at(now + RETRY, &stored.key);
                }
            }
        }
    }

    /// Pods (not being deleted) whose controller ownerReference is this ReplicaSet.
    fn owned_pods(&self, rs: &StoredObject) -> Vec<Arc<Value>> {
        let txn = self.api.store.lock();
        let dependents = txn.dependents_of(&rs.uid);
        let pods = dependents
            .iter()
            .filter(|k| k.resource.group.is_empty() && k.resource.plural == "pods");
        let pods = pods
            .filter_map(|k| txn.get(k))
            .filter(|p| !p.deleting)
            .map(|p| p.value());
        pods.filter(|p| controller_uid(p) == Some(rs.uid.as_str())).collect()
    }

    /// False when a pod could not be created (the ReplicaSet is retried).
    fn create_pods(&self, stored: &StoredObject, rs: &Value, count: usize) -> bool {
        let opts = WriteOptions {
            field_manager: FIELD_MANAGER.into(),
            ..Default::default()
        };
        for _ in 0..count {
            // A name collision (unlikely) is retried with another suffix; other errors wait for the next pass.
            for _ in 0..3 {
                let pod = pod_from_template(rs, &stored.key.name, &stored.uid);
                match self.api.create(&self.pods_rt, &stored.key.namespace, pod, &opts) {
                    Err(e) if e.code == 409 => continue,
                    Err(e) => {
                        tracing::debug!(replicaset = %stored.key.name, error = %e.message, "could not create pod");
                        return false;
                    }
                    Ok(_) => break,
                }
            }
        }
        true
    }

    /// Deletes `count` pods: not-ready ones first, then the newest, as the ReplicaSet controller does.
    fn delete_pods(&self, mut owned: Vec<Arc<Value>>, count: usize) {
        owned.sort_by_cached_key(|pod| {
            let created = pod
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let seen = pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .and_then(|u| self.clocks.get(u));
            (
                is_ready(pod),
                std::cmp::Reverse((created.to_string(), seen.map(|c| c.seen))),
            )
        });
        for pod in owned.iter().take(count) {
            let (ns, name) = (pod["metadata"]["namespace"].as_str(), pod["metadata"]["name"].as_str());
            let (Some(ns), Some(name)) = (ns, name) else { continue };
            let version = &self.pods_rt.preferred_version().name;
            if let Err(e) = self
                .api
                .delete(&self.pods_rt, version, ns, name, &DeleteOptions::default())
            {
                tracing::debug!(pod = %name, error = %e.message, "could not delete pod");
            }
        }
    }

    fn replicaset_status(&self, rs: &Value, owned: &[Arc<Value>], now: Instant, wakeup: &mut Wakeup) -> Value {
        let template_labels = rs.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
        let min_ready = Duration::from_secs(rs.pointer("/spec/minReadySeconds").and_then(Value::as_u64).unwrap_or(0));
        let ready: Vec<&Value> = owned.iter().map(|p| &**p).filter(|p| is_ready(p)).collect();
        let available = ready
            .iter()
            .filter(|p| self.available(p, min_ready, now, wakeup))
            .count();
        let fully_labeled = owned
            .iter()
            .filter(|p| template_labels.is_none_or(|l| labels_match(l, labels(p))))
            .count();
        let mut status = Map::new();
        status.insert("replicas".into(), json!(owned.len()));
        // The API server omits zero counts (omitempty); so does the simulator.
        for (field, count) in [
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready.len()),
            ("availableReplicas", available),
        ] {
            if count > 0 {
                status.insert(field.into(), json!(count));
            }
        }
        if let Some(generation) = rs.pointer("/metadata/generation") {
            status.insert("observedGeneration".into(), generation.clone());
        }
        Value::Object(status)
    }

    /// Ready for at least minReadySeconds; schedules a pass for when a pod will become available.
    fn available(&self, pod: &Value, min_ready: Duration, now: Instant, wakeup: &mut Wakeup) -> bool {
        if min_ready.is_zero() {
            return true;
        }
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        // Pods that were ready before the controller saw them count as ready since then.
        let since = self.clocks.get(uid).map_or(now, |c| c.running.unwrap_or(c.seen));
        if now >= since + min_ready {
            return true;
        }
        wakeup.at(since + min_ready);
        false
    }
}

/// Waits for a change the controller cares about or for `deadline`, and gathers what else is queued:
/// the next pass's work (everything when the feed lagged). None when the store is gone.
async fn wait_for_work(changes: &mut broadcast::Receiver<Arc<Change>>, deadline: Instant) -> Option<Work> {
    let mut work = Work::default();
    loop {
        tokio::select! {
            received = changes.recv() => match received {
                Ok(change) if !is_watched(&change.object) => continue,
                Ok(change) => {
                    work.note(&change);
                    break;
                }
                Err(RecvError::Lagged(_)) => {
                    work.all = true;
                    break;
                }
                Err(RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    loop {
        match changes.try_recv() {
            Ok(change) if is_watched(&change.object) => work.note(&change),
            Ok(_) => {}
            Err(TryRecvError::Lagged(_)) => work.all = true,
            // Closed: the next wait reports it.
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Some(work)
}

fn is_watched(object: &StoredObject) -> bool {
    let resource = &object.key.resource;
    WATCHED
        .iter()
        .any(|(group, plural)| resource.group == *group && resource.plural == *plural)
}

fn without_resource_version(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    object
}

/// A new pod for a ReplicaSet, from its template.
fn pod_from_template(rs: &Value, rs_name: &str, rs_uid: &str) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!(NODE_NAME);
    let mut metadata = json!({
        "name": format!("{}-{}", generated_prefix(rs_name), random_suffix()),
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": rs_name,
            "uid": rs_uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    for field in ["labels", "annotations"] {
        if let Some(value) = template.pointer(&format!("/metadata/{field}")) {
            metadata[field] = value.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Like generateName: the prefix is cut so the name stays a valid 63-character label.
fn generated_prefix(name: &str) -> &str {
    let end = name.char_indices().nth(57).map_or(name.len(), |(i, _)| i);
    &name[..end]
}

fn random_suffix() -> String {
    // The alphabet Kubernetes uses for generated names: no vowels, no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// A Running pod's status: ready, or crash-looping with `restarts` restarts so far.
fn running_status(pod: &Value, ip: &str, crashing: bool, restarts: u64) -> Value {
    let now = now_rfc3339();
    let started = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map_or(now.clone(), str::to_string);
    let ready = if crashing { "False" } else { "True" };
    let condition = |kind: &str, status: &str| {
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": started});
        if status == "False" {
            c["reason"] = json!("ContainersNotReady");
        }
        c
    };
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| container_status(c, &started, &now, crashing, restarts))
        .collect();
    json!({
        "phase": "Running",
        "conditions": [
            condition("PodScheduled", "True"),
            condition("Initialized", "True"),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    })
}

fn container_status(container: &Value, started: &str, now: &str, crashing: bool, restarts: u64) -> Value {
    let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
    let image = container.get("image").and_then(Value::as_str).unwrap_or_default();
    let mut status = json!({
        "name": name,
        "image": image,
        "imageID": format!("sim://{image}"),
        "containerID": format!("sim://{name}-{restarts}"),
        "ready": !crashing,
        "started": !crashing,
        "restartCount": restarts,
        "state": {"running": {"startedAt": started}},
    });
    if crashing {
        let message = format!("back-off 10s restarting failed container={name}");
        status["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}});
        if restarts > 0 {
            let terminated = json!({"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": now});
            status["lastState"] = json!({"terminated": terminated});
        }
    }
    status
}

/// The ready-delay annotation's value, in the API's duration grammar ("1500ms", "2s", "1.5").
pub fn parse_duration(text: &str) -> Option<Duration> {
    sluice_duration::parse(text).ok()
}

pub(crate) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn labels(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Equality-based selection (Service spec.selector, template labels): every pair must be present.
pub(crate) fn labels_match(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub(crate) fn controller_uid(object: &Value) -> Option<&str> {
    let refs = object.pointer("/metadata/ownerReferences").and_then(Value::as_array)?;
    let controller = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    controller.get("uid").and_then(Value::as_str)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Simulator;
    use crate::api::{PatchBody, PatchKind};

    pub(crate) async fn start() -> Simulator {
        let config = SimConfig {
            pod_ready_delay: Duration::from_millis(100),
            ..Default::default()
        };
        Simulator::start(config).await.expect("the simulator starts")
    }

    /// Polls `check` until it returns Some, failing the test after `timeout`.
    pub(crate) async fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn replicaset(name: &str, replicas: u64, annotations: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web", "sluice.dev/pod-template-hash": name}},
                "template": {
                    "metadata": {
                        "labels": {"app": "web", "sluice.dev/pod-template-hash": name},
                        "annotations": annotations,
                    },
                    "spec": {"containers": [{"name": "app", "image": "example/web:1"}]},
                },
            },
        })
    }

    pub(crate) fn opts() -> WriteOptions {
        WriteOptions {
            field_manager: "test".into(),
            ..Default::default()
        }
    }

    fn rt(sim: &Simulator, group: &str, plural: &str) -> Arc<ResourceType> {
        sim.api.resource(group, plural).unwrap()
    }

    pub(crate) fn create_rs(sim: &Simulator, body: Value) {
        sim.api
            .create(&rt(sim, "apps", "replicasets"), "default", body, &opts())
            .unwrap();
    }

    fn rs_status(sim: &Simulator, name: &str) -> Value {
        sim.api
            .get(&rt(sim, "apps", "replicasets"), "default", name)
            .unwrap()
            .to_value()["status"]
            .clone()
    }

    /// The pods a ReplicaSet (by name) owns, sorted by name.
    pub(crate) fn pods_of(sim: &Simulator, rs_name: &str) -> Vec<Value> {
        let pods = sim
            .api
            .list(&rt(sim, "", "pods"), Some("default"), &ListOptions::default())
            .unwrap();
        let pods = pods.items.iter().map(|p| p.to_value());
        pods.filter(|p| p.pointer("/metadata/ownerReferences/0/name").and_then(Value::as_str) == Some(rs_name))
            .collect()
    }

    fn scale(sim: &Simulator, name: &str, replicas: u64) {
        let body = json!({"spec": {"replicas": replicas}}).to_string();
        let rt = rt(sim, "apps", "replicasets");
        sim.api
            .patch(
                &rt,
                "v1",
                "default",
                name,
                PatchBody::new(PatchKind::Merge, body.as_bytes()),
                &opts(),
            )
            .unwrap();
    }

    async fn wait_ready(sim: &Simulator, name: &str, ready: u64) {
        let what = format!("{name} to have {ready} ready replicas");
        eventually(Duration::from_secs(3), &what, || {
            (rs_status(sim, name)["readyReplicas"].as_u64().unwrap_or(0) == ready).then_some(())
        })
        .await;
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn pods_come_from_the_template() {
        let rs = replicaset("web-abc", 1, json!({"a": "b"}));
        let pod = pod_from_template(&rs, "web-abc", "uid-1");
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("web-abc-") && name.len() == "web-abc-".len() + 5,
            "{name}"
        );
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["annotations"]["a"], "b");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["spec"]["nodeName"], NODE_NAME);
        assert_eq!(pod["spec"]["containers"][0]["image"], "example/web:1");
        assert_eq!(generated_prefix(&"x".repeat(80)).len(), 57);
    }

    #[tokio::test]
    async fn replicaset_gets_ready_pods_and_status() {
        let sim = start().await;
        create_rs(&sim, replicaset("web-a", 3, json!({})));
        wait_ready(&sim, "web-a", 3).await;
        let status = rs_status(&sim, "web-a");
        assert_eq!(
            status,
            json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1})
        );
        let pods = pods_of(&sim, "web-a");
        assert_eq!(pods.len(), 3);
        let pod = &pods[0];
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(pod["status"]["podIP"].as_str().unwrap().starts_with("10.244."));
        assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(pod["status"]["containerStatuses"][0]["image"], "example/web:1");
        assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(pod["spec"]["nodeName"], NODE_NAME);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn pods_wait_for_their_ready_delay() {
        let sim = start().await;
        create_rs(
            &sim,
            replicaset("web-slow", 1, json!({READY_DELAY_ANNOTATION: "700ms"})),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(pods_of(&sim, "web-slow")[0]["status"]["phase"], "Pending");
        wait_ready(&sim, "web-slow", 1).await;
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn scaling_down_removes_not_ready_then_newest_pods() {
        let sim = start().await;
        create_rs(&sim, replicaset("web-b", 2, json!({})));
        wait_ready(&sim, "web-b", 2).await;
        let ready: Vec<Value> = pods_of(&sim, "web-b")
            .into_iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect();
        // A pod created now never turns ready: scaling down must remove it before the ready ones.
        let body =
            json!({"spec": {"replicas": 3, "template": {"metadata": {"annotations": {READY_DELAY_ANNOTATION: "1h"}}}}});
        let rt = rt(&sim, "apps", "replicasets");
        sim.api
            .patch(
                &rt,
                "v1",
                "default",
                "web-b",
                PatchBody::new(PatchKind::Merge, body.to_string().as_bytes()),
                &opts(),
            )
            .unwrap();
        eventually(Duration::from_secs(2), "a third pod", || {
            (pods_of(&sim, "web-b").len() == 3).then_some(())
        })
        .await;
        scale(&sim, "web-b", 2);
        eventually(Duration::from_secs(2), "two pods", || {
            (pods_of(&sim, "web-b").len() == 2).then_some(())
        })
        .await;
        let left: Vec<Value> = pods_of(&sim, "web-b")
            .into_iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect();
        assert_eq!(left, ready);
        scale(&sim, "web-b", 1);
        let status = eventually(Duration::from_secs(2), "one replica", || {
            let status = rs_status(&sim, "web-b");
            (status["replicas"] == 1 && pods_of(&sim, "web-b").len() == 1).then_some(status)
        })
        .await;
        assert_eq!(status["observedGeneration"], 4);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn crashing_pods_run_but_never_turn_ready() {
        let sim = start().await;
        create_rs(&sim, replicaset("web-crash", 1, json!({CRASH_ANNOTATION: "true"})));
        let pod = eventually(Duration::from_secs(5), "a restart", || {
            let pod = pods_of(&sim, "web-crash").pop()?;
            (pod.pointer("/status/containerStatuses/0/restartCount")?.as_u64()? >= 1).then_some(pod)
        })
        .await;
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(!is_ready(&pod));
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);
        let status = rs_status(&sim, "web-crash");
        assert_eq!(status["replicas"], 1);
        assert_eq!(status.get("readyReplicas"), None);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn available_replicas_wait_for_min_ready_seconds() {
        let sim = start().await;
        let mut rs = replicaset("web-min", 1, json!({}));
        rs["spec"]["minReadySeconds"] = json!(1);
        create_rs(&sim, rs);
        wait_ready(&sim, "web-min", 1).await;
        assert_eq!(rs_status(&sim, "web-min").get("availableReplicas"), None);
        eventually(Duration::from_secs(3), "availability", || {
            (rs_status(&sim, "web-min")["availableReplicas"] == 1).then_some(())
        })
        .await;
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn deleting_a_replicaset_collects_its_pods() {
        let sim = start().await;
        create_rs(&sim, replicaset("web-c", 2, json!({})));
        eventually(Duration::from_secs(2), "pods", || {
            (pods_of(&sim, "web-c").len() == 2).then_some(())
        })
        .await;
        let rt = rt(&sim, "apps", "replicasets");
        sim.api
            .delete(&rt, "v1", "default", "web-c", &DeleteOptions::default())
            .unwrap();
        eventually(Duration::from_secs(3), "pods to go", || {
            pods_of(&sim, "web-c").is_empty().then_some(())
        })
        .await;
        sim.shutdown().await;
    }
}
