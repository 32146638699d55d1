//! Our own recent writes, remembered until the watch caches show them. A reconcile that starts before
//! the cache has caught up would otherwise plan from the old state and repeat the same patches (under
//! load, most of them). Each write is kept with the resourceVersion the API server returned; a cached
//! object older than that is overlaid with what we wrote, a newer one replaces the memory. A ReplicaSet
//! we created is remembered until the cache holds it, so it is not created again (a 409) meanwhile.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::rollout::RolloutStatus;
use crate::rollout::plan::ObservedReplicaSet;

type Key = (String, String);

/// How long a created ReplicaSet is expected without the cache showing it. Watches deliver within
/// seconds; past this it was most likely deleted before we saw it, and planning from the cache (which
/// may create it again) is right. kube-controller-manager's expectations time out the same way.
pub const CREATE_EXPECTATION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Expectations {
    replicas: Mutex<HashMap<Key, (u64, i32)>>,
    statuses: Mutex<HashMap<Key, (u64, RolloutStatus)>>,
    created: Mutex<HashMap<Key, Created>>,
}

/// A ReplicaSet we created that the cache may not hold yet.
#[derive(Debug, Clone)]
struct Created {
    /// uid of the Rollout that owns it.
    owner: String,
    replica_set: ObservedReplicaSet,
    at: Instant,
}

/// resourceVersions are opaque to clients, but every API server (etcd's revision, the simulator's
/// counter) issues increasing integers; anything else disables the overlay for that object.
fn version(resource_version: Option<&str>) -> Option<u64> {
    resource_version?.parse().ok()
}

impl Expectations {
    /// Remembers that ReplicaSet `name` was scaled to `replicas`, as of `resource_version`.
    pub fn scaled(&self, namespace: &str, name: &str, replicas: i32, resource_version: Option<&str>) {
        if let Some(rv) = version(resource_version) {
            let mut map = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            map.insert((namespace.into(), name.into()), (rv, replicas));
        }
    }

    /// Remembers that we created `replica_set` for the Rollout with uid `owner`, at `at`.
    pub fn created(&self, namespace: &str, owner: &str, replica_set: ObservedReplicaSet, at: Instant) {
        let mut map = self.created.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            (namespace.into(), replica_set.name.clone()),
            Created {
                owner: owner.into(),
                replica_set,
                at,
            },
        );
    }

    /// The ReplicaSets of the Rollout with uid `owner` as we last wrote them: where the cache is older
    /// than our scale, our replicas; where the cache does not hold one we created, that one as created.
    /// `versions` has the resourceVersion of every cached ReplicaSet in the namespace, by name.
    /// Names of the ReplicaSets created in `namespace` that the cache has not shown yet.
    pub fn pending_creates(&self, namespace: &str) -> Vec<String> {
        let created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, name)| name.clone())
            .collect()
    }

    pub fn overlay_replica_sets(
        &self,
        namespace: &str,
        owner: &str,
        observed: &mut Vec<ObservedReplicaSet>,
        versions: &HashMap<String, String>,
        now: Instant,
    ) {
        {
            let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
            created.retain(|(ns, name), expected| {
                ns != namespace
                    || (!versions.contains_key(name) && now.duration_since(expected.at) < CREATE_EXPECTATION_TIMEOUT)
            });
            for ((ns, name), expected) in created.iter() {
                if ns == namespace && expected.owner == owner && !observed.iter().any(|rs| rs.name == *name) {
                    observed.push(expected.replica_set.clone());
                }
            }
        }
        let mut map = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        for rs in observed.iter_mut() {
            let key = (namespace.to_string(), rs.name.clone());
            let Some((written_rv, replicas)) = map.get(&key).copied() else {
                continue;
            };
            let cached = versions.get(&rs.name);
            match version(cached.map(String::as_str)) {
                Some(cached) if cached < written_rv => rs.spec_replicas = replicas,
                // Created and scaled before the cache saw it at all.
                None if cached.is_none() => rs.spec_replicas = replicas,
                _ => {
                    map.remove(&key);
                }
            }
        }
    }

    /// Forgets a Rollout that is gone: the status we wrote, and (with its `uid`) the ReplicaSets we
    /// created for it that the cache never showed.
    pub fn forget_rollout(&self, namespace: &str, name: &str, uid: Option<&str>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        statuses.remove(&(namespace.to_string(), name.to_string()));
        if let Some(uid) = uid {
            let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
            created.retain(|(ns, _), expected| ns != namespace || expected.owner != uid);
        }
    }

    /// Forgets a ReplicaSet that is gone: our scale and our create of it.
    pub fn forget_replica_set(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.replicas.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        self.created.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    /// How many objects each memory holds (tests look for leaks with it).
    pub fn sizes(&self) -> [(&'static str, usize); 3] {
        fn len<V>(map: &Mutex<HashMap<Key, V>>) -> usize {
            map.lock().unwrap_or_else(|p| p.into_inner()).len()
        }
        [
            ("expected replica counts", len(&self.replicas)),
            ("expected statuses", len(&self.statuses)),
            ("expected creates", len(&self.created)),
        ]
    }

    /// Remembers the status we wrote for a Rollout, as of `resource_version`.
    pub fn wrote_status(&self, namespace: &str, name: &str, status: &RolloutStatus, resource_version: Option<&str>) {
        if let Some(rv) = version(resource_version) {
            let mut map = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
            map.insert((namespace.into(), name.into()), (rv, status.clone()));
        }
    }

    /// The status to plan from: ours when the cached Rollout is older than our last status write.
    pub fn status_for(&self, namespace: &str, name: &str, cached_rv: Option<&str>) -> Option<RolloutStatus> {
        let mut map = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let (written_rv, status) = map.get(&key)?.clone();
        match version(cached_rv) {
            Some(cached) if cached < written_rv => Some(status),
            _ => {
                map.remove(&key);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32) -> ObservedReplicaSet {
        ObservedReplicaSet {
            name: name.into(),
            hash: "h".into(),
            revision: 1,
            spec_replicas: replicas,
            pods: replicas,
            ready: replicas,
            available: replicas,
            git_revision: None,
            created_at: None,
            deleting: false,
            scale_down_at: None,
            pod_metadata: None,
        }
    }

    #[test]
    fn a_stale_cache_sees_our_last_scale_and_a_fresh_one_clears_it() {
        let expectations = Expectations::default();
        expectations.scaled("ns", "web-a", 5, Some("20"));
        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets(
            "ns",
            "uid",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "15".to_string())]),
            Instant::now(),
        );
        assert_eq!(
            observed[0].spec_replicas, 5,
            "the cache (rv 15) has not seen our write (rv 20)"
        );
        let mut observed = vec![rs("web-a", 7)];
        expectations.overlay_replica_sets(
            "ns",
            "uid",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "21".to_string())]),
            Instant::now(),
        );
        assert_eq!(observed[0].spec_replicas, 7, "a newer object (someone scaled it) wins");
        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets(
            "ns",
            "uid",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "15".to_string())]),
            Instant::now(),
        );
        assert_eq!(
            observed[0].spec_replicas, 3,
            "the memory was dropped once the cache caught up"
        );
    }

    #[test]
    fn a_created_replica_set_is_seen_until_the_cache_has_it() {
        let expectations = Expectations::default();
        let t0 = Instant::now();
        expectations.created("ns", "uid-web", rs("web-b", 0), t0);
        expectations.scaled("ns", "web-b", 2, Some("40"));
        let cache_without = HashMap::from([("web-a".to_string(), "15".to_string())]);

        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets("ns", "uid-other", &mut observed, &cache_without, t0);
        assert_eq!(observed.len(), 1, "another Rollout's ReplicaSet is not added");

        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets("ns", "uid-web", &mut observed, &cache_without, t0);
        let names: Vec<(&str, i32)> = observed.iter().map(|r| (r.name.as_str(), r.spec_replicas)).collect();
        assert_eq!(
            names,
            vec![("web-a", 3), ("web-b", 2)],
            "created, then scaled, before the cache saw it"
        );

        let cache_with = HashMap::from([
            ("web-a".to_string(), "15".to_string()),
            ("web-b".to_string(), "41".to_string()),
        ]);
        let mut observed = vec![rs("web-a", 3), rs("web-b", 2)];
        expectations.overlay_replica_sets("ns", "uid-web", &mut observed, &cache_with, t0);
        assert_eq!(observed.len(), 2, "not added twice once cached");
        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets("ns", "uid-web", &mut observed, &cache_without, t0);
        assert_eq!(
            observed.len(),
            1,
            "forgotten once the cache held it (then it was deleted)"
        );

        expectations.created("ns", "uid-web", rs("web-c", 0), t0);
        let mut observed = vec![];
        let later = t0 + CREATE_EXPECTATION_TIMEOUT;
        expectations.overlay_replica_sets("ns", "uid-web", &mut observed, &cache_without, later);
        assert!(observed.is_empty(), "an expectation the cache never met times out");
    }

    #[test]
    fn status_is_ours_until_the_cache_catches_up() {
        let expectations = Expectations::default();
        let status = RolloutStatus {
            current_step_index: Some(2),
            ..Default::default()
        };
        expectations.wrote_status("ns", "web", &status, Some("30"));
        assert_eq!(expectations.status_for("ns", "web", Some("29")), Some(status));
        assert_eq!(expectations.status_for("ns", "web", Some("30")), None);
        assert_eq!(
            expectations.status_for("ns", "web", Some("29")),
            None,
            "forgotten once seen"
        );
        expectations.wrote_status("ns", "web", &RolloutStatus::default(), Some("not-a-number"));
        assert_eq!(expectations.status_for("ns", "web", Some("1")), None);
    }

    #[test]
    fn a_deleted_rollout_and_its_replica_sets_leave_no_expectation() {
        let expectations = Expectations::default();
        let t0 = Instant::now();
        expectations.wrote_status("ns", "web", &RolloutStatus::default(), Some("30"));
        expectations.created("ns", "uid-web", rs("web-never-seen", 1), t0);
        expectations.created("ns", "uid-web", rs("web-b", 1), t0);
        expectations.scaled("ns", "web-b", 2, Some("40"));
        expectations.created("ns", "uid-api", rs("api-a", 1), t0);
        expectations.wrote_status("ns", "api", &RolloutStatus::default(), Some("31"));

        expectations.forget_replica_set("ns", "web-b");
        expectations.forget_rollout("ns", "web", Some("uid-web"));
        assert_eq!(
            expectations.sizes().map(|(_, n)| n),
            [0, 1, 1],
            "only the other Rollout's status and create are left"
        );
        expectations.forget_replica_set("ns", "api-a");
        expectations.forget_rollout("ns", "api", None);
        assert_eq!(expectations.sizes().map(|(_, n)| n), [0, 0, 0]);
    }
}
