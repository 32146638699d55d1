//! Which Rollouts reference which Deployment (`spec.workloadRef`), kept from the Rollout watch, so a
//! change of a Deployment (seen by a metadata-only watch) reconciles exactly the Rollouts that run its
//! template, with a hash lookup rather than a scan of every Rollout.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::api::rollout::Rollout;

/// (namespace, name) of an object.
type Key = (String, String);

#[derive(Default)]
struct Inner {
    /// Deployment → the Rollouts that reference it.
    by_deployment: HashMap<Key, BTreeSet<String>>,
    /// Rollout → the Deployment it references (to drop the old entry when the reference changes).
    by_rollout: HashMap<Key, String>,
}

/// Shared between the Rollout watch (writer) and the Deployment watch's mapper (reader).
#[derive(Clone, Default)]
pub struct WorkloadRefs(Arc<Mutex<Inner>>);

impl WorkloadRefs {
    /// Follows one event of the Rollout watch. After a relist, entries of Rollouts deleted meanwhile
    /// may linger until they are seen again; that costs at most a spurious reconcile of a missing
    /// Rollout, which the Controller drops.
    pub fn apply(&self, event: &watcher::Event<Rollout>) {
        match event {
            watcher::Event::Apply(rollout) | watcher::Event::InitApply(rollout) => self.set(rollout),
            watcher::Event::Delete(rollout) => self.remove(&key(rollout)),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn set(&self, rollout: &Rollout) {
        let rollout_key = key(rollout);
        let referenced = rollout.spec.workload_ref.as_ref().map(|r| r.name.clone());
        let inner = self.lock();
        if inner.by_rollout.get(&rollout_key) == referenced.as_ref() {
            return;
        }
        drop(inner);
        self.remove(&rollout_key);
        let Some(deployment) = referenced else { return };
        let mut inner = self.lock();
        inner
            .by_deployment
            .entry((rollout_key.0.clone(), deployment.clone()))
            .or_default()
            .insert(rollout_key.1.clone());
        inner.by_rollout.insert(rollout_key, deployment);
    }

    fn remove(&self, rollout: &Key) {
        let mut inner = self.lock();
        let Some(deployment) = inner.by_rollout.remove(rollout) else {
            return;
        };
        let deployment_key = (rollout.0.clone(), deployment);
        if let Some(names) = inner.by_deployment.get_mut(&deployment_key) {
            names.remove(&rollout.1);
            if names.is_empty() {
                inner.by_deployment.remove(&deployment_key);
            }
        }
    }

    /// The Rollouts referencing the Deployment `name` in `namespace`.
    pub fn rollouts_of(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Rollout>> {
        let inner = self.lock();
        inner
            .by_deployment
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .map(|rollout| ObjectRef::new(rollout).within(namespace))
            .collect()
    }

    /// How many Rollouts reference a Deployment (for leak tests).
    pub fn len(&self) -> usize {
        self.lock().by_rollout.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (each update is one insert/remove).
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key(rollout: &Rollout) -> Key {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::workload_ref::WorkloadRef;

    fn rollout(namespace: &str, name: &str, deployment: Option<&str>) -> Rollout {
        let mut rollout = Rollout::example(name, 1, vec![]);
        rollout.metadata.namespace = Some(namespace.into());
        rollout.spec.workload_ref = deployment.map(|d| WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: d.into(),
            scale_down: None,
        });
        rollout
    }

    fn names(refs: Vec<ObjectRef<Rollout>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn deployments_map_to_the_rollouts_that_reference_them() {
        let index = WorkloadRefs::default();
        index.apply(&watcher::Event::Apply(rollout("a", "one", Some("web"))));
        index.apply(&watcher::Event::InitApply(rollout("a", "two", Some("web"))));
        index.apply(&watcher::Event::Apply(rollout("b", "three", Some("web"))));
        index.apply(&watcher::Event::Apply(rollout("a", "plain", None)));
        assert_eq!(names(index.rollouts_of("a", "web")), ["one", "two"]);
        assert_eq!(names(index.rollouts_of("b", "web")), ["three"]);
        // The reference moves, then goes; deletion forgets.
        index.apply(&watcher::Event::Apply(rollout("a", "one", Some("api"))));
        assert_eq!(names(index.rollouts_of("a", "web")), ["two"]);
        assert_eq!(names(index.rollouts_of("a", "api")), ["one"]);
        index.apply(&watcher::Event::Apply(rollout("a", "two", None)));
        index.apply(&watcher::Event::Delete(rollout("a", "one", Some("api"))));
        index.apply(&watcher::Event::Delete(rollout("b", "three", Some("web"))));
        assert!(index.rollouts_of("a", "web").is_empty() && index.is_empty());
        assert!(index.0.lock().unwrap().by_deployment.is_empty());
    }
}
