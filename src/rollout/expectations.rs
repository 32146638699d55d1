//! Our own recent writes, remembered until the watch caches show them. A reconcile that starts before
//! the cache has caught up would otherwise plan from the old state and repeat the same patches (under
//! load, most of them). Each write is kept with the resourceVersion the API server returned; a cached
//! object older than that is overlaid with what we wrote, a newer one replaces the memory.
use std::collections::HashMap;
use std::sync::Mutex;

use crate::api::rollout::RolloutStatus;
use crate::rollout::plan::ObservedReplicaSet;

type Key = (String, String);

#[derive(Debug, Default)]
pub struct Expectations {
    replicas: Mutex<HashMap<Key, (u64, i32)>>,
    statuses: Mutex<HashMap<Key, (u64, RolloutStatus)>>,
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

    /// The ReplicaSets as we last wrote them where the cache is older than our write.
    pub fn overlay_replica_sets(
        &self,
        namespace: &str,
        observed: &mut [ObservedReplicaSet],
        versions: &HashMap<String, String>,
    ) {
        let mut map = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        for rs in observed {
            let key = (namespace.to_string(), rs.name.clone());
            let Some((written_rv, replicas)) = map.get(&key).copied() else {
                continue;
            };
            match version(versions.get(&rs.name).map(String::as_str)) {
                Some(cached) if cached < written_rv => rs.spec_replicas = replicas,
                _ => {
                    map.remove(&key);
                }
            }
        }
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
        }
    }

    #[test]
    fn a_stale_cache_sees_our_last_scale_and_a_fresh_one_clears_it() {
        let expectations = Expectations::default();
        expectations.scaled("ns", "web-a", 5, Some("20"));
        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets(
            "ns",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "15".to_string())]),
        );
        assert_eq!(
            observed[0].spec_replicas, 5,
            "the cache (rv 15) has not seen our write (rv 20)"
        );
        let mut observed = vec![rs("web-a", 7)];
        expectations.overlay_replica_sets(
            "ns",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "21".to_string())]),
        );
        assert_eq!(observed[0].spec_replicas, 7, "a newer object (someone scaled it) wins");
        let mut observed = vec![rs("web-a", 3)];
        expectations.overlay_replica_sets(
            "ns",
            &mut observed,
            &HashMap::from([("web-a".to_string(), "15".to_string())]),
        );
        assert_eq!(
            observed[0].spec_replicas, 3,
            "the memory was dropped once the cache caught up"
        );
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
}
