//! Versioned object storage with watch history: a global, monotonic resourceVersion, a bounded log of
//! changes for watches that resume, and indexes for owner references and uids. Semantics (validation,
//! patches, finalizers) live in `api`; this module only keeps objects and tells watchers what changed.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::registry::GroupResource;

/// Where an object lives. Cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub resource: GroupResource,
    pub namespace: String,
    pub name: String,
}

/// One stored version of an object: its JSON text plus what watches and indexes need without parsing.
#[derive(Debug)]
pub struct StoredObject {
    pub key: ObjectKey,
    pub resource_version: u64,
    pub uid: String,
    pub labels: Map<String, Value>,
    /// uids of the owners in metadata.ownerReferences.
    pub owners: Vec<String>,
    pub deleting: bool,
    /// The full object, serialized.
    pub json: Bytes,
    /// The parsed object, kept while this is the stored version so the workload, traffic and API
    /// paths read it without parsing `json` again; released when a newer version (or a delete)
    /// supersedes it, so watch history keeps only the bytes.
    parsed: Mutex<Option<Arc<Value>>>,
}

impl StoredObject {
    pub fn from_value(key: ObjectKey, object: &Value) -> Self {
        Self::build(key, object, None)
    }

    /// Like `from_value`, keeping `object` as the parsed form (it is serialized once, here).
    pub fn from_owned(key: ObjectKey, object: Value) -> Self {
        let object = Arc::new(object);
        Self::build(key, &object.clone(), Some(object))
    }

    fn build(key: ObjectKey, object: &Value, parsed: Option<Arc<Value>>) -> Self {
        let meta = object.get("metadata");
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let owners = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let text = |field: &str| {
            meta.and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        StoredObject {
            resource_version: text("resourceVersion").parse().unwrap_or(0),
            uid: text("uid").to_string(),
            deleting: meta
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some_and(|d| !d.is_null()),
            labels,
            owners,
            json: Bytes::from(serde_json::to_vec(object).expect("JSON values always serialize")),
            key,
            parsed: Mutex::new(parsed),
        }
    }

    /// An owned copy of the object (a clone of the parsed form: no parsing while it is kept).
    pub fn to_value(&self) -> Value {
        Value::clone(&self.value())
    }

    /// The parsed object, shared: what read-only paths use. Parses `json` only for superseded
    /// versions (watch history), and does not keep that parse.
    pub fn value(&self) -> Arc<Value> {
        if let Some(parsed) = self.parsed.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return parsed.clone();
        }
        Arc::new(serde_json::from_slice(&self.json).expect("stored objects are valid JSON"))
    }

    /// Drops the parsed form once this version is no longer the stored one.
    fn release_parsed(&self) {
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as kept in history and broadcast to watchers. `previous` lets selector-filtered watches
/// turn "stopped matching" into DELETED and "started matching" into ADDED, as the API server does.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: EventType,
    pub resource_version: u64,
    pub object: Arc<StoredObject>,
    pub previous: Option<Arc<StoredObject>>,
}

#[derive(Debug)]
pub struct StoreConfig {
    /// How many changes are kept for watches that resume from a resourceVersion.
    pub history_limit: usize,
    /// Capacity of the live broadcast; a watcher that falls this far behind is ended with 410.
    pub broadcast_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_limit: 20_000,
            broadcast_capacity: 65_536,
        }
    }
}

#[derive(Default)]
pub struct Inner {
    resource_version: u64,
    collections: HashMap<GroupResource, BTreeMap<(String, String), Arc<StoredObject>>>,
    by_uid: HashMap<String, ObjectKey>,
    /// owner uid → dependents
    dependents: HashMap<String, HashSet<ObjectKey>>,
    history: VecDeque<Arc<Change>>,
    /// Changes at or below this resourceVersion are no longer in history.
    compacted_through: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    config: StoreConfig,
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        let (changes, _) = broadcast::channel(config.broadcast_capacity);
        Store {
            inner: Mutex::new(Inner::default()),
            changes,
            config,
        }
    }

    /// A transaction: everything done through it is atomic with respect to other writers and watchers.
    pub fn lock(&self) -> Txn<'_> {
        Txn {
            inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            store: self,
        }
    }

    pub fn current_resource_version(&self) -> u64 {
        self.lock().inner.resource_version
    }

    /// Drops all history, as etcd compaction does: watches resuming from an older resourceVersion get 410.
    pub fn compact(&self) {
        let mut txn = self.lock();
        txn.inner.history.clear();
        txn.inner.compacted_through = txn.inner.resource_version;
    }

    pub fn object_count(&self) -> usize {
        self.lock().inner.collections.values().map(BTreeMap::len).sum()
    }

    pub fn history_len(&self) -> usize {
        self.lock().inner.history.len()
    }
}

pub struct Txn<'a> {
    inner: MutexGuard<'a, Inner>,
    store: &'a Store,
}

/// A watch asked to resume from a resourceVersion whose changes are no longer kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub compacted_through: u64,
}

/// What a watch that starts now must replay, and the live feed that continues it without a gap.
pub struct WatchStart {
    pub replay: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
}

impl Txn<'_> {
    pub fn resource_version(&self) -> u64 {
        self.inner.resource_version
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<StoredObject>> {
        self.inner
            .collections
            .get(&key.resource)?
            .get(&(key.namespace.clone(), key.name.clone()))
            .cloned()
    }

    pub fn key_of_uid(&self, uid: &str) -> Option<ObjectKey> {
        self.inner.by_uid.get(uid).cloned()
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.inner.by_uid.contains_key(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjectKey> {
        self.inner
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of a resource in key order, optionally in one namespace, starting after `after`.
    pub fn range(
        &self,
        resource: &GroupResource,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = &Arc<StoredObject>> {
        use std::ops::Bound;
        let collection = self.inner.collections.get(resource);
        let start = match (after, namespace) {
            (Some(after), _) => Bound::Excluded(after.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let namespace = namespace.map(str::to_string);
        collection
            .into_iter()
            .flat_map(move |c| c.range((start.clone(), Bound::Unbounded)))
            .take_while(move |((ns, _), _)| namespace.as_ref().is_none_or(|want| want == ns))
            .map(|(_, object)| object)
    }

    /// Every resource that has objects in `namespace`.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.inner
            .collections
            .values()
            .flat_map(|c| c.values())
            .filter(|o| o.key.namespace == namespace)
            .map(|o| o.key.clone())
            .collect()
    }

    pub fn keys_of_resource(&self, resource: &GroupResource) -> Vec<ObjectKey> {
        self.inner
            .collections
            .get(resource)
            .map(|c| c.values().map(|o| o.key.clone()).collect())
            .unwrap_or_default()
    }

    /// Stores `object` under the next resourceVersion (written into its metadata) and tells watchers.
    pub fn put(&mut self, key: ObjectKey, mut object: Value) -> Arc<StoredObject> {
        self.inner.resource_version += 1;
        let rv = self.inner.resource_version;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let stored = Arc::new(StoredObject::from_owned(key.clone(), object));
        let previous = self
            .inner
            .collections
            .entry(key.resource.clone())
            .or_default()
            .insert((key.namespace.clone(), key.name.clone()), stored.clone());
        if let Some(previous) = &previous {
            previous.release_parsed();
            self.unindex(previous);
        }
        self.index(&stored);
        let event = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            event,
            resource_version: rv,
            object: stored.clone(),
            previous,
        });
        stored
    }

    /// Removes the object; watchers see it as DELETED with a new resourceVersion.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Arc<StoredObject>> {
        let removed = self
            .inner
            .collections
            .get_mut(&key.resource)?
            .remove(&(key.namespace.clone(), key.name.clone()))?;
        self.unindex(&removed);
        self.inner.resource_version += 1;
        let rv = self.inner.resource_version;
        let mut object = removed.to_value();
        removed.release_parsed();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let tombstone = Arc::new(StoredObject::from_value(key.clone(), &object));
        self.record(Change {
            event: EventType::Deleted,
            resource_version: rv,
            object: tombstone.clone(),
            previous: Some(removed),
        });
        Some(tombstone)
    }

    /// Starts a watch after `from` (None: from now); refused when `from` is older than the kept history.
    pub fn watch_from(&self, from: Option<u64>) -> Result<WatchStart, TooOld> {
        let live = self.store.changes.subscribe();
        let replay = match from {
            None => Vec::new(),
            Some(rv) if rv < self.inner.compacted_through => {
                return Err(TooOld {
                    compacted_through: self.inner.compacted_through,
                });
            }
            // History is contiguous: it holds every change after `compacted_through`.
            Some(rv) => self
                .inner
                .history
                .iter()
                .filter(|c| c.resource_version > rv)
                .cloned()
                .collect(),
        };
        Ok(WatchStart { replay, live })
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.inner.history.push_back(change.clone());
        while self.inner.history.len() > self.store.config.history_limit {
            if let Some(dropped) = self.inner.history.pop_front() {
                self.inner.compacted_through = dropped.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.store.changes.send(change);
    }

    fn index(&mut self, object: &Arc<StoredObject>) {
        if !object.uid.is_empty() {
            self.inner.by_uid.insert(object.uid.clone(), object.key.clone());
        }
        for owner in &object.owners {
            self.inner
                .dependents
                .entry(owner.clone())
                .or_default()
                .insert(object.key.clone());
        }
    }

    fn unindex(&mut self, object: &Arc<StoredObject>) {
        if self.inner.by_uid.get(&object.uid) == Some(&object.key) {
            self.inner.by_uid.remove(&object.uid);
        }
        for owner in &object.owners {
            if let Some(set) = self.inner.dependents.get_mut(owner) {
                set.remove(&object.key);
                if set.is_empty() {
                    self.inner.dependents.remove(owner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            resource: GroupResource {
                group: "".into(),
                plural: "configmaps".into(),
            },
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn object(name: &str, uid: &str, owner: Option<&str>) -> Value {
        let mut o = json!({"metadata": {"name": name, "namespace": "default", "uid": uid}});
        if let Some(owner) = owner {
            o["metadata"]["ownerReferences"] = json!([{"uid": owner, "name": "x", "kind": "X", "apiVersion": "v1"}]);
        }
        o
    }

    #[test]
    fn resource_versions_are_global_and_monotonic() {
        let store = Store::new(StoreConfig::default());
        let mut txn = store.lock();
        let a = txn.put(key("a"), object("a", "1", None));
        let b = txn.put(key("b"), object("b", "2", None));
        let a2 = txn.put(key("a"), object("a", "1", None));
        assert_eq!((a.resource_version, b.resource_version, a2.resource_version), (1, 2, 3));
        let gone = txn.remove(&key("b")).unwrap();
        assert_eq!(gone.resource_version, 4);
        assert!(txn.get(&key("b")).is_none());
    }

    #[test]
    fn owner_index_follows_puts_and_removes() {
        let store = Store::new(StoreConfig::default());
        let mut txn = store.lock();
        txn.put(key("child"), object("child", "c", Some("p")));
        assert_eq!(txn.dependents_of("p"), vec![key("child")]);
        txn.put(key("child"), object("child", "c", None));
        assert!(txn.dependents_of("p").is_empty());
    }

    #[test]
    fn watch_replays_history_after_the_given_version_and_refuses_compacted_ones() {
        let store = Store::new(StoreConfig {
            history_limit: 2,
            broadcast_capacity: 16,
        });
        {
            let mut txn = store.lock();
            for name in ["a", "b", "c"] {
                txn.put(key(name), object(name, name, None));
            }
        }
        let txn = store.lock();
        let start = txn.watch_from(Some(1)).ok().unwrap();
        assert_eq!(
            start.replay.iter().map(|c| c.resource_version).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(txn.watch_from(Some(0)).is_err(), "event 1 was dropped from history");
        drop(txn);
        store.compact();
        assert!(store.lock().watch_from(Some(2)).is_err());
        assert!(store.lock().watch_from(Some(3)).is_ok());
    }

    #[test]
    fn the_stored_version_keeps_its_parsed_form_and_superseded_ones_read_from_their_bytes() {
        let store = Store::new(StoreConfig::default());
        let mut txn = store.lock();
        let first = txn.put(
            key("a"),
            json!({"metadata": {"name": "a", "uid": "1"}, "data": {"v": "1"}}),
        );
        assert!(
            Arc::ptr_eq(&first.value(), &first.value()),
            "no parse while it is the stored version"
        );
        let second = txn.put(
            key("a"),
            json!({"metadata": {"name": "a", "uid": "1"}, "data": {"v": "2"}}),
        );
        assert!(!Arc::ptr_eq(&first.value(), &first.value()), "released once superseded");
        // History still serves each version as it was, resourceVersion included.
        assert_eq!(first.value()["data"]["v"], "1");
        assert_eq!(first.value()["metadata"]["resourceVersion"], "1");
        assert_eq!(second.to_value()["data"]["v"], "2");
        assert_eq!(second.value()["metadata"]["resourceVersion"], "2");
        let gone = txn.remove(&key("a")).unwrap();
        assert!(!Arc::ptr_eq(&second.value(), &second.value()), "released once deleted");
        assert_eq!(gone.value()["metadata"]["resourceVersion"], "3");
        assert_eq!(serde_json::from_slice::<Value>(&second.json).unwrap(), *second.value());
    }

    #[test]
    fn range_is_limited_to_a_namespace() {
        let store = Store::new(StoreConfig::default());
        let mut txn = store.lock();
        txn.put(key("a"), object("a", "1", None));
        let mut other = key("b");
        other.namespace = "other".into();
        txn.put(other, object("b", "2", None));
        let resource = key("a").resource;
        assert_eq!(txn.range(&resource, Some("default"), None).count(), 1);
        assert_eq!(txn.range(&resource, None, None).count(), 2);
    }
}
