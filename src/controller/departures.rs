//! Which watched objects are gone, so per-object state (metrics series, expectations, held counts,
//! sync times) is dropped with them. kube-runtime's Controller never reconciles an object deleted
//! without a finalizer, so the watch is the one place that sees every delete: a Delete event, or — for
//! an object deleted while the watch was down — its absence from the re-list.
use std::collections::HashMap;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// An object that left the watch. `uid` keys the state some objects are known by (a Rollout's
/// ReplicaSets, by their owner's uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

type Key = (String, String);

/// The objects a watch holds, by `(namespace, name)`, with their uid.
#[derive(Debug, Default)]
pub struct Departures {
    present: HashMap<Key, Option<String>>,
    /// Objects listed since the watch (re)started; replaces `present` when the list is complete.
    relisting: Option<HashMap<Key, Option<String>>>,
}

impl Departures {
    /// Takes the next event of the watch (every event, in order) and returns the objects it shows gone.
    pub fn observe<K: Resource>(&mut self, event: &watcher::Event<K>) -> Vec<Departed> {
        match event {
            watcher::Event::Apply(object) => {
                let (key, uid) = entry(object);
                self.present.insert(key, uid);
                vec![]
            }
            watcher::Event::Delete(object) => {
                let (key, uid) = entry(object);
                self.present.remove(&key);
                vec![departed(key, uid)]
            }
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                vec![]
            }
            watcher::Event::InitApply(object) => {
                let (key, uid) = entry(object);
                self.relisting.get_or_insert_default().insert(key, uid);
                vec![]
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let before = std::mem::replace(&mut self.present, listed);
                // Only what is absent by name: state is kept by name, and an object deleted and created
                // again meanwhile may have been reconciled from the list already (its state is current).
                before
                    .into_iter()
                    .filter(|(key, _)| !self.present.contains_key(key))
                    .map(|(key, uid)| departed(key, uid))
                    .collect()
            }
        }
    }

    /// How many objects the watch holds.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }
}

/// Whether `object` left the cache while it was reconciled: its departure may have been handled while
/// the reconcile still wrote state for it, so that state is dropped again after the reconcile.
pub fn left_the_cache<K>(cache: &Store<K>, object: &K) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    cache.get(&ObjectRef::from_obj(object)).is_none()
}

fn entry<K: Resource>(object: &K) -> (Key, Option<String>) {
    (
        (object.namespace().unwrap_or_default(), object.name_any()),
        object.uid(),
    )
}

fn departed((namespace, name): Key, uid: Option<String>) -> Departed {
    Departed { namespace, name, uid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::Rollout;
    use watcher::Event;

    fn rollout(name: &str, uid: &str) -> Rollout {
        let mut rollout = Rollout::example(name, 1, vec![]);
        rollout.metadata.uid = Some(uid.into());
        rollout
    }

    fn gone(name: &str, uid: &str) -> Departed {
        Departed {
            namespace: rollout(name, uid).namespace().unwrap_or_default(),
            name: name.into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn a_delete_event_departs_the_object() {
        let mut departures = Departures::default();
        assert!(departures.observe(&Event::Apply(rollout("web", "u1"))).is_empty());
        assert!(departures.observe(&Event::Apply(rollout("api", "u2"))).is_empty());
        assert_eq!(
            departures.observe(&Event::Delete(rollout("web", "u1"))),
            vec![gone("web", "u1")]
        );
        assert_eq!(departures.len(), 1);
    }

    #[test]
    fn a_relist_departs_what_it_no_longer_holds() {
        let mut departures = Departures::default();
        for event in [
            Event::Init,
            Event::InitApply(rollout("kept", "u1")),
            Event::InitApply(rollout("deleted", "u2")),
            Event::InitApply(rollout("recreated", "u3")),
            Event::InitDone,
        ] {
            assert!(departures.observe(&event).is_empty(), "the first list departs nothing");
        }
        // The watch went down; meanwhile `deleted` was deleted and `recreated` deleted and created again.
        assert!(departures.observe(&Event::<Rollout>::Init).is_empty());
        assert!(departures.observe(&Event::InitApply(rollout("kept", "u1"))).is_empty());
        assert!(
            departures
                .observe(&Event::InitApply(rollout("recreated", "u4")))
                .is_empty()
        );
        assert_eq!(departures.len(), 3, "the old state holds until the list is complete");
        assert_eq!(
            departures.observe(&Event::<Rollout>::InitDone),
            vec![gone("deleted", "u2")],
            "`recreated` is listed by name: its state (already the new object's, maybe) stays"
        );
        assert_eq!(departures.len(), 2);
    }
}
