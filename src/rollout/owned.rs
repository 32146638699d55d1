//! The ReplicaSets and AnalysisRuns of every Rollout as the reconciler reads them: fed by a watch,
//! indexed by the owning Rollout, and holding only what the plan reads (a projection), not whole
//! objects. A reconcile looks up its own few children instead of scanning every cached object, and a
//! child costs a few hundred bytes here instead of the ~5 KB of a deserialized ReplicaSet.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher;

/// `(namespace, name)` of a child.
type ChildKey = (String, String);
/// `(namespace, uid)` of an owner: an owner reference only counts within the child's namespace.
type OwnerKey = (String, String);

/// What is kept of one child.
#[derive(Debug, Clone)]
struct Entry<T> {
    owner: Option<OwnerKey>,
    resource_version: Option<String>,
    value: T,
}

#[derive(Debug)]
struct Index<T> {
    children: HashMap<ChildKey, Entry<T>>,
    by_owner: HashMap<OwnerKey, BTreeSet<String>>,
    /// Children listed since the watch (re)started; replaces `children` when the list is complete,
    /// so readers never see a half-listed state and children deleted while disconnected disappear.
    relisting: Option<HashMap<ChildKey, Entry<T>>>,
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            children: HashMap::new(),
            by_owner: HashMap::new(),
            relisting: None,
        }
    }
}

impl<T> Index<T> {
    fn insert(&mut self, key: ChildKey, entry: Entry<T>) {
        self.remove(&key);
        if let Some(owner) = &entry.owner {
            self.by_owner.entry(owner.clone()).or_default().insert(key.1.clone());
        }
        self.children.insert(key, entry);
    }

    fn remove(&mut self, key: &ChildKey) {
        let Some(old) = self.children.remove(key) else { return };
        if let Some(owner) = old.owner
            && let Some(names) = self.by_owner.get_mut(&owner)
        {
            names.remove(&key.1);
            if names.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    fn replace_all(&mut self, children: HashMap<ChildKey, Entry<T>>) {
        self.children.clear();
        self.by_owner.clear();
        for (key, entry) in children {
            self.insert(key, entry);
        }
    }
}

/// Turns a child into what is kept of it; `None` skips it (not one of ours).
pub type Projection<K, T> = fn(&K) -> Option<T>;

/// Children of kind `K`, kept as `T`, looked up by their controlling owner's uid.
pub struct OwnedIndex<K, T> {
    index: Arc<RwLock<Index<T>>>,
    project: Projection<K, T>,
}

impl<K, T> Clone for OwnedIndex<K, T> {
    fn clone(&self) -> Self {
        OwnedIndex {
            index: self.index.clone(),
            project: self.project,
        }
    }
}

impl<K: kube::Resource, T: Clone> OwnedIndex<K, T> {
    pub fn new(project: Projection<K, T>) -> Self {
        OwnedIndex {
            index: Arc::default(),
            project,
        }
    }

    /// Applies one watch event (call it for every event of the child watch, in order).
    pub fn apply(&self, event: &watcher::Event<K>) {
        // A poisoned lock only means a reader panicked; the index itself is consistent.
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => index.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(child) => {
                if let Some((key, entry)) = self.entry(child) {
                    index.relisting.get_or_insert_default().insert(key, entry);
                }
            }
            watcher::Event::InitDone => {
                let listed = index.relisting.take().unwrap_or_default();
                index.replace_all(listed);
            }
            watcher::Event::Apply(child) => match self.entry(child) {
                Some((key, entry)) => index.insert(key, entry),
                // No longer one of ours (a label removed): forget it.
                None => index.remove(&child_key(child)),
            },
            watcher::Event::Delete(child) => index.remove(&child_key(child)),
        }
    }

    fn entry(&self, child: &K) -> Option<(ChildKey, Entry<T>)> {
        let value = (self.project)(child)?;
        let key = child_key(child);
        let owner = child
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| (key.0.clone(), r.uid.clone()));
        let entry = Entry {
            owner,
            resource_version: child.resource_version(),
            value,
        };
        Some((key, entry))
    }

    /// The children controlled by the owner with this uid in `namespace`, by name.
    pub fn owned_by(&self, namespace: &str, owner_uid: &str) -> Vec<T> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let owner = (namespace.to_string(), owner_uid.to_string());
        let Some(names) = index.by_owner.get(&owner) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| index.children.get(&(namespace.to_string(), name.clone())))
            .map(|entry| entry.value.clone())
            .collect()
    }

    /// The resourceVersion of a child as the watch last showed it (whoever owns it).
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index
            .children
            .get(&(namespace.to_string(), name.to_string()))?
            .resource_version
            .clone()
    }

    /// How many children are kept (for tests and metrics).
    pub fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn child_key<K: kube::Resource>(child: &K) -> ChildKey {
    (child.namespace().unwrap_or_default(), child.name_any())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    /// Children are ConfigMaps here; the projection keeps the `value` key, and skips those without it.
    fn index() -> OwnedIndex<ConfigMap, String> {
        OwnedIndex::new(|cm: &ConfigMap| cm.data.as_ref()?.get("value").cloned())
    }

    fn child(namespace: &str, name: &str, owner: Option<&str>, value: Option<&str>, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                resource_version: Some(version.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            data: value.map(|v| [("value".to_string(), v.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    fn listed(index: &OwnedIndex<ConfigMap, String>, children: Vec<ConfigMap>) {
        index.apply(&watcher::Event::Init);
        for c in children {
            index.apply(&watcher::Event::InitApply(c));
        }
        index.apply(&watcher::Event::InitDone);
    }

    #[test]
    fn children_are_found_by_owner_in_name_order() {
        let index = index();
        listed(
            &index,
            vec![
                child("ns", "b", Some("u1"), Some("B"), "1"),
                child("ns", "a", Some("u1"), Some("A"), "2"),
                child("ns", "c", Some("u2"), Some("C"), "3"),
                child("ns", "orphan", None, Some("O"), "4"),
                child("ns", "not-ours", Some("u1"), None, "5"),
            ],
        );
        assert_eq!(index.owned_by("ns", "u1"), ["A", "B"]);
        assert_eq!(index.owned_by("ns", "u2"), ["C"]);
        assert_eq!(
            index.owned_by("other", "u1"),
            Vec::<String>::new(),
            "owners count within the namespace"
        );
        assert_eq!(index.resource_version("ns", "orphan").as_deref(), Some("4"));
        assert_eq!(index.resource_version("ns", "not-ours"), None);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn changes_move_children_between_owners_and_deletes_forget_them() {
        let index = index();
        listed(&index, vec![child("ns", "a", Some("u1"), Some("A"), "1")]);
        index.apply(&watcher::Event::Apply(child("ns", "a", Some("u2"), Some("A2"), "2")));
        assert!(index.owned_by("ns", "u1").is_empty());
        assert_eq!(index.owned_by("ns", "u2"), ["A2"]);
        assert_eq!(index.resource_version("ns", "a").as_deref(), Some("2"));

        index.apply(&watcher::Event::Apply(child("ns", "a", None, Some("A3"), "3")));
        assert!(index.owned_by("ns", "u2").is_empty(), "released by its owner");
        index.apply(&watcher::Event::Apply(child("ns", "a", Some("u1"), None, "4")));
        assert_eq!(index.len(), 0, "no longer one of ours");

        index.apply(&watcher::Event::Apply(child("ns", "b", Some("u1"), Some("B"), "5")));
        index.apply(&watcher::Event::Delete(child("ns", "b", Some("u1"), Some("B"), "6")));
        assert!(index.owned_by("ns", "u1").is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_at_once() {
        let index = index();
        listed(
            &index,
            vec![
                child("ns", "kept", Some("u1"), Some("old"), "1"),
                child("ns", "gone", Some("u1"), Some("G"), "2"),
            ],
        );
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(child(
            "ns",
            "kept",
            Some("u1"),
            Some("new"),
            "3",
        )));
        assert_eq!(
            index.owned_by("ns", "u1"),
            ["G", "old"],
            "readers see the old list until it is complete"
        );
        index.apply(&watcher::Event::InitDone);
        assert_eq!(
            index.owned_by("ns", "u1"),
            ["new"],
            "deleted while the watch was down: gone after the relist"
        );
        assert_eq!(index.resource_version("ns", "gone"), None);
    }
}
