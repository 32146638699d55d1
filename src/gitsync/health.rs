//! Health of applied objects, kstatus-style: an object is Progressing until its controller has seen
//! the current generation and reached what the spec asks; Degraded when it cannot get there without
//! a person; Healthy otherwise. A GitSync records a revision as healthy only when all of it is.
use serde_json::Value;

use super::manifest::ObjectId;

/// How an object is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Progressing(String),
    Degraded(String),
    Unknown(String),
}

impl Health {
    /// Worse is bigger: Degraded > Progressing > Unknown > Healthy.
    fn severity(&self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Unknown(_) => 1,
            Health::Progressing(_) => 2,
            Health::Degraded(_) => 3,
        }
    }

    /// The message, empty for Healthy.
    pub fn message(&self) -> &str {
        match self {
            Health::Healthy => "",
            Health::Progressing(m) | Health::Degraded(m) | Health::Unknown(m) => m,
        }
    }

    pub fn is_healthy(&self) -> bool {
        *self == Health::Healthy
    }

    fn with_message(&self, message: String) -> Health {
        match self {
            Health::Healthy => Health::Healthy,
            Health::Progressing(_) => Health::Progressing(message),
            Health::Degraded(_) => Health::Degraded(message),
            Health::Unknown(_) => Health::Unknown(message),
        }
    }
}

/// How many offending objects an aggregate message names.
const NAMED_IN_AGGREGATE: usize = 3;

/// The health of a live object, by apiVersion and kind. Kinds without rules are Healthy once they exist.
pub fn object_health(object: &Value) -> Health {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Health::Unknown("the object has no apiVersion or kind".into());
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("sluice.dev", "Rollout") => rollout(object),
        ("sluice.dev", "GitSync") => gitsync(object),
        ("apps", "Deployment") => deployment(object),
        ("apps", "ReplicaSet") => replica_set(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("", "Pod") => pod(object),
        ("", "Service") => service(object),
        ("batch", "Job") => job(object),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(object),
        _ => Health::Healthy,
    }
}

/// The Deployments, as (namespace, name), that a sluice.dev Rollout among `objects` runs through
/// spec.workloadRef. Their own health is not the revision's: the Rollout runs their template, may
/// scale them to 0 (workloadRef.scaleDown), and is judged itself.
pub fn workload_ref_deployments<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
) -> std::collections::HashSet<(String, String)> {
    objects
        .into_iter()
        .filter(|o| o["kind"] == "Rollout" && o["apiVersion"].as_str().is_some_and(|v| v.starts_with("sluice.dev/")))
        .filter_map(|rollout| {
            let reference = rollout.pointer("/spec/workloadRef")?;
            if reference["kind"] != "Deployment" || reference["apiVersion"] != "apps/v1" {
                return None;
            }
            Some((
                text(rollout, "/metadata/namespace").unwrap_or_default().to_string(),
                reference["name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// [`object_health`], except that a Deployment in `managed` (see [`workload_ref_deployments`]) is
/// Healthy once it exists: a Rollout runs its pods.
pub fn object_health_managed(object: &Value, managed: &std::collections::HashSet<(String, String)>) -> Health {
    let is_deployment = object["kind"] == "Deployment" && object["apiVersion"] == "apps/v1";
    let key = || {
        (
            text(object, "/metadata/namespace").unwrap_or_default().to_string(),
            text(object, "/metadata/name").unwrap_or_default().to_string(),
        )
    };
    if is_deployment && managed.contains(&key()) {
        return Health::Healthy;
    }
    object_health(object)
}

/// The worst of `items` (Degraded > Progressing > Unknown > Healthy), its message naming the first
/// objects in that state (at most three, then "+N more"). Nothing at all is Healthy.
pub fn aggregate<'a>(items: impl IntoIterator<Item = (&'a ObjectId, Health)>) -> Health {
    let items: Vec<(&ObjectId, Health)> = items.into_iter().collect();
    let Some(worst) = items.iter().map(|(_, h)| h).max_by_key(|h| h.severity()).cloned() else {
        return Health::Healthy;
    };
    if worst.is_healthy() {
        return Health::Healthy;
    }
    let offending: Vec<String> = items
        .iter()
        .filter(|(_, h)| h.severity() == worst.severity())
        .map(|(id, h)| format!("{id}: {}", h.message()))
        .collect();
    let mut message = offending
        .iter()
        .take(NAMED_IN_AGGREGATE)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if offending.len() > NAMED_IN_AGGREGATE {
        message.push_str(&format!(" (+{} more)", offending.len() - NAMED_IN_AGGREGATE));
    }
    worst.with_message(message)
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    match object.pointer(pointer)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == status)
}

fn condition_message(condition: &Value) -> String {
    let reason = condition["reason"].as_str().unwrap_or_default();
    let message = condition["message"].as_str().unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        _ => message.to_string(),
    }
}

/// Progressing while the controller has not seen the current generation (kinds that have one).
fn generation_observed(object: &Value) -> Result<(), Health> {
    let Some(generation) = int(object, "/metadata/generation") else {
        return Ok(());
    };
    match int(object, "/status/observedGeneration") {
        Some(observed) if observed >= generation => Ok(()),
        Some(observed) => Err(Health::Progressing(format!(
            "the controller has observed generation {observed}, not yet {generation}"
        ))),
        None => Err(Health::Progressing(format!(
            "the controller has not observed generation {generation} yet"
        ))),
    }
}

fn spec_replicas(object: &Value) -> i64 {
    int(object, "/spec/replicas").unwrap_or(1)
}

fn status_count(object: &Value, field: &str) -> i64 {
    int(object, &format!("/status/{field}")).unwrap_or(0)
}

/// kstatus: Degraded when Stalled, Healthy when Ready, else Progressing; None without a Ready condition.
fn kstatus(object: &Value) -> Option<Health> {
    if let Some(stalled) = condition(object, "Stalled").filter(|c| c["status"] == "True") {
        return Some(Health::Degraded(condition_message(stalled)));
    }
    let ready = condition(object, "Ready")?;
    Some(if ready["status"] == "True" {
        Health::Healthy
    } else {
        Health::Progressing(condition_message(ready))
    })
}

fn rollout(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    // kstatus conditions first: they are what Flux and Argo CD read too.
    if let Some(health) = kstatus(object) {
        return health;
    }
    let message = text(object, "/status/message").unwrap_or_default().to_string();
    match text(object, "/status/phase") {
        Some("Healthy") => Health::Healthy,
        Some("Degraded") => Health::Degraded(if message.is_empty() { "Degraded".into() } else { message }),
        Some(phase @ ("Progressing" | "Paused")) => Health::Progressing(if message.is_empty() {
            phase.to_string()
        } else {
            format!("{phase}: {message}")
        }),
        Some(other) => Health::Unknown(format!("unknown phase {other:?}")),
        None => Health::Progressing("waiting for the rollout controller to report".into()),
    }
}

/// A GitSync another one applied (app of apps): healthy once it is Ready at its current generation —
/// applied, and what it applied healthy — so a root's revision is healthy only with its children's.
fn gitsync(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    kstatus(object).unwrap_or_else(|| Health::Progressing("waiting for the GitSync controller to report".into()))
}

fn deployment(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    if let Some(progressing) = condition(object, "Progressing")
        && progressing["reason"] == "ProgressDeadlineExceeded"
    {
        return Health::Degraded(condition_message(progressing));
    }
    let replicas = spec_replicas(object);
    let updated = status_count(object, "updatedReplicas");
    let total = status_count(object, "replicas");
    let available = status_count(object, "availableReplicas");
    if updated < replicas {
        return Health::Progressing(format!("{updated} of {replicas} replicas updated"));
    }
    if total > updated {
        return Health::Progressing(format!("{} old replicas pending termination", total - updated));
    }
    if available < updated {
        return Health::Progressing(format!("{available} of {updated} updated replicas available"));
    }
    if condition_is(object, "Available", "False") {
        let message = condition(object, "Available")
            .map(condition_message)
            .unwrap_or_default();
        return Health::Progressing(format!("not available: {message}"));
    }
    Health::Healthy
}

fn replica_set(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    if let Some(failure) = condition(object, "ReplicaFailure").filter(|c| c["status"] == "True") {
        return Health::Degraded(condition_message(failure));
    }
    let replicas = spec_replicas(object);
    let available = status_count(object, "availableReplicas");
    if available < replicas {
        return Health::Progressing(format!("{available} of {replicas} replicas available"));
    }
    Health::Healthy
}

fn stateful_set(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    let replicas = spec_replicas(object);
    let ready = status_count(object, "readyReplicas");
    if ready < replicas {
        return Health::Progressing(format!("{ready} of {replicas} replicas ready"));
    }
    if text(object, "/spec/updateStrategy/type").unwrap_or("RollingUpdate") == "RollingUpdate" {
        let partition = int(object, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
        let updated = status_count(object, "updatedReplicas");
        let wanted = (replicas - partition).max(0);
        if updated < wanted {
            return Health::Progressing(format!("{updated} of {wanted} replicas updated"));
        }
        let current = text(object, "/status/currentRevision");
        let update = text(object, "/status/updateRevision");
        if partition == 0 && current.is_some() && update.is_some() && current != update {
            return Health::Progressing(format!("rolling out revision {}", update.unwrap_or_default()));
        }
    }
    Health::Healthy
}

fn daemon_set(object: &Value) -> Health {
    if let Err(health) = generation_observed(object) {
        return health;
    }
    let desired = status_count(object, "desiredNumberScheduled");
    let updated = status_count(object, "updatedNumberScheduled");
    let available = status_count(object, "numberAvailable");
    if updated < desired {
        return Health::Progressing(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Health::Progressing(format!("{available} of {desired} pods available"));
    }
    Health::Healthy
}

/// Waiting reasons that do not go away without a change.
const STUCK_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn pod(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Succeeded") => return Health::Healthy,
        Some("Failed") => {
            let reason = text(object, "/status/reason").unwrap_or("Failed");
            let message = text(object, "/status/message").unwrap_or_default();
            return Health::Degraded(format!("{reason}: {message}").trim_end_matches(": ").to_string());
        }
        _ => {}
    }
    for statuses in ["initContainerStatuses", "containerStatuses"] {
        let statuses = object.pointer(&format!("/status/{statuses}")).and_then(Value::as_array);
        for status in statuses.into_iter().flatten() {
            let Some(reason) = status.pointer("/state/waiting/reason").and_then(Value::as_str) else {
                continue;
            };
            if STUCK_WAITING_REASONS.contains(&reason) {
                let name = status["name"].as_str().unwrap_or("?");
                let message = status.pointer("/state/waiting/message").and_then(Value::as_str);
                return Health::Degraded(match message {
                    Some(message) => format!("container {name}: {reason}: {message}"),
                    None => format!("container {name}: {reason}"),
                });
            }
        }
    }
    let phase = text(object, "/status/phase").unwrap_or("Pending");
    if phase == "Running" && condition_is(object, "Ready", "True") {
        return Health::Healthy;
    }
    Health::Progressing(match condition(object, "Ready").map(condition_message) {
        Some(message) if !message.is_empty() => format!("{phase}, not ready: {message}"),
        _ => format!("{phase}, not ready"),
    })
}

fn service(object: &Value) -> Health {
    if text(object, "/spec/type") != Some("LoadBalancer") {
        return Health::Healthy;
    }
    let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
    if ingress.is_some_and(|i| !i.is_empty()) {
        Health::Healthy
    } else {
        Health::Progressing("waiting for the load balancer".into())
    }
}

fn job(object: &Value) -> Health {
    if let Some(failed) = condition(object, "Failed").filter(|c| c["status"] == "True") {
        return Health::Degraded(condition_message(failed));
    }
    if condition_is(object, "Complete", "True") {
        return Health::Healthy;
    }
    if object.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        return Health::Progressing("suspended".into());
    }
    let active = status_count(object, "active");
    Health::Progressing(format!("running ({active} active)"))
}

fn persistent_volume_claim(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Bound") => Health::Healthy,
        Some("Lost") => Health::Degraded("the bound volume is lost".into()),
        phase => Health::Progressing(format!("{}, not bound", phase.unwrap_or("Pending"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_child_gitsync_is_healthy_once_ready_at_its_generation() {
        let gitsync = |generation: i64, observed: i64, conditions: Value| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
                   "metadata": {"name": "api", "generation": generation},
                   "status": {"observedGeneration": observed, "conditions": conditions}})
        };
        let ready = json!([{"type": "Ready", "status": "True", "reason": "Succeeded"}]);
        assert_eq!(object_health(&gitsync(2, 2, ready.clone())), Health::Healthy);
        assert!(progressing(object_health(&gitsync(3, 2, ready))).contains("not yet 3"));
        let waiting = json!([{"type": "Ready", "status": "False", "reason": "DependencyNotReady", "message": "db"}]);
        assert_eq!(
            progressing(object_health(&gitsync(1, 1, waiting))),
            "DependencyNotReady: db"
        );
        let stalled = json!([{"type": "Ready", "status": "False", "reason": "SyncFailed"},
                             {"type": "Stalled", "status": "True", "reason": "SyncFailed", "message": "render failed"}]);
        assert_eq!(
            object_health(&gitsync(1, 1, stalled)),
            Health::Degraded("SyncFailed: render failed".into())
        );
        assert_eq!(
            progressing(object_health(&gitsync(1, 1, json!([])))),
            "waiting for the GitSync controller to report"
        );
    }

    fn progressing(health: Health) -> String {
        match health {
            Health::Progressing(message) => message,
            other => panic!("expected Progressing, got {other:?}"),
        }
    }

    fn degraded(health: Health) -> String {
        match health {
            Health::Degraded(message) => message,
            other => panic!("expected Degraded, got {other:?}"),
        }
    }

    #[test]
    fn a_deployment_a_rollout_references_is_managed_by_it() {
        let rollout = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": "onsuccess"}}});
        let elsewhere = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "x", "namespace": "other"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}}});
        let managed = workload_ref_deployments([&rollout, &elsewhere]);
        assert_eq!(managed.len(), 1);
        // Scaled to 0 by the Rollout, never observed by a deployment controller: still Healthy.
        let scaled_down = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 0}, "status": {"observedGeneration": 1, "replicas": 5}});
        assert!(!object_health(&scaled_down).is_healthy());
        assert_eq!(object_health_managed(&scaled_down, &managed), Health::Healthy);
        let unrelated = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "other", "generation": 3}, "spec": {"replicas": 0}});
        assert!(!object_health_managed(&unrelated, &managed).is_healthy());
    }

    fn rollout(status: Value) -> Value {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "generation": 2}, "status": status})
    }

    #[test]
    fn rollout_by_conditions_then_phase() {
        let observed = |extra: Value| {
            let mut status = json!({"observedGeneration": 2});
            status
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            rollout(status)
        };
        assert_eq!(object_health(&observed(json!({"phase": "Healthy"}))), Health::Healthy);
        assert_eq!(
            degraded(object_health(&observed(
                json!({"phase": "Degraded", "message": "analysis error-rate Failed"})
            ))),
            "analysis error-rate Failed"
        );
        assert!(
            progressing(object_health(&observed(
                json!({"phase": "Paused", "message": "step 2"})
            )))
            .contains("Paused")
        );
        assert!(progressing(object_health(&observed(json!({"phase": "Progressing"})))).contains("Progressing"));
        assert!(matches!(
            object_health(&observed(json!({"phase": "Weird"}))),
            Health::Unknown(_)
        ));

        // Conditions win over the phase.
        let stalled = observed(json!({"phase": "Healthy", "conditions": [
            {"type": "Ready", "status": "False", "reason": "Degraded", "message": "aborted"},
            {"type": "Stalled", "status": "True", "reason": "Degraded", "message": "aborted"},
        ]}));
        assert_eq!(degraded(object_health(&stalled)), "Degraded: aborted");
        let not_ready = observed(json!({"phase": "Healthy", "conditions": [
            {"type": "Ready", "status": "False", "reason": "Progressing", "message": "step 1/4"},
            {"type": "Stalled", "status": "False", "reason": "Progressing"},
        ]}));
        assert_eq!(progressing(object_health(&not_ready)), "Progressing: step 1/4");
        let ready = observed(json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Healthy"}]}));
        assert_eq!(object_health(&ready), Health::Healthy);

        // An old generation's verdict does not count.
        let stale = rollout(json!({"observedGeneration": 1, "phase": "Healthy"}));
        assert!(progressing(object_health(&stale)).contains("generation 1, not yet 2"));
        assert!(progressing(object_health(&rollout(json!({})))).contains("not observed generation 2"));
    }

    fn deployment(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployment_waits_for_updated_available_replicas() {
        let healthy = json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"}]});
        assert_eq!(object_health(&deployment(healthy.clone())), Health::Healthy);
        let mut rolling = healthy.clone();
        rolling["updatedReplicas"] = json!(1);
        rolling["replicas"] = json!(4);
        assert_eq!(
            progressing(object_health(&deployment(rolling))),
            "1 of 3 replicas updated"
        );
        let mut surplus = healthy.clone();
        surplus["replicas"] = json!(4);
        assert!(progressing(object_health(&deployment(surplus))).contains("pending termination"));
        let mut unavailable = healthy.clone();
        unavailable["availableReplicas"] = json!(2);
        assert!(progressing(object_health(&deployment(unavailable))).contains("2 of 3"));
        let mut old = healthy.clone();
        old["observedGeneration"] = json!(2);
        assert!(progressing(object_health(&deployment(old))).contains("generation"));
        let mut stuck = healthy;
        stuck["updatedReplicas"] = json!(1);
        stuck["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet web-abc has timed out progressing."}]);
        assert!(degraded(object_health(&deployment(stuck))).starts_with("ProgressDeadlineExceeded"));
    }

    #[test]
    fn replica_set_stateful_set_and_daemon_set() {
        let rs = |available: i64, failure: bool| {
            let conditions = if failure {
                json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"}])
            } else {
                json!([])
            };
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
                "status": {"observedGeneration": 1, "availableReplicas": available, "conditions": conditions}})
        };
        assert_eq!(object_health(&rs(2, false)), Health::Healthy);
        assert!(progressing(object_health(&rs(1, false))).contains("1 of 2"));
        assert_eq!(degraded(object_health(&rs(1, true))), "FailedCreate: quota");

        let sts = |ready: i64, updated: i64, current: &str| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
                "status": {"observedGeneration": 1, "readyReplicas": ready, "updatedReplicas": updated,
                    "currentRevision": current, "updateRevision": "db-2"}})
        };
        assert_eq!(object_health(&sts(2, 2, "db-2")), Health::Healthy);
        assert!(progressing(object_health(&sts(1, 2, "db-2"))).contains("1 of 2 replicas ready"));
        assert!(progressing(object_health(&sts(2, 1, "db-1"))).contains("1 of 2 replicas updated"));
        assert!(progressing(object_health(&sts(2, 2, "db-1"))).contains("db-2"));

        let ds = |updated: i64, available: i64| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
                "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": updated, "numberAvailable": available}})
        };
        assert_eq!(object_health(&ds(3, 3)), Health::Healthy);
        assert!(progressing(object_health(&ds(2, 3))).contains("2 of 3 pods updated"));
        assert!(progressing(object_health(&ds(3, 1))).contains("1 of 3 pods available"));
    }

    #[test]
    fn pods() {
        let pod =
            |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        let running = pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(object_health(&running), Health::Healthy);
        assert_eq!(object_health(&pod(json!({"phase": "Succeeded"}))), Health::Healthy);
        assert_eq!(
            degraded(object_health(&pod(
                json!({"phase": "Failed", "reason": "Evicted", "message": "disk"})
            ))),
            "Evicted: disk"
        );
        let crashing = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}]}));
        assert_eq!(
            degraded(object_health(&crashing)),
            "container app: CrashLoopBackOff: back-off 5m0s"
        );
        let pulling = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}));
        assert_eq!(degraded(object_health(&pulling)), "container init: ImagePullBackOff");
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(progressing(object_health(&creating)), "Pending, not ready");
        let unready = pod(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]}),
        );
        assert_eq!(
            progressing(object_health(&unready)),
            "Running, not ready: ContainersNotReady"
        );
    }

    #[test]
    fn services_jobs_claims_and_everything_else() {
        let service = |type_: &str, status: Value| json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": type_}, "status": status});
        assert_eq!(object_health(&service("ClusterIP", json!({}))), Health::Healthy);
        assert!(
            progressing(object_health(&service("LoadBalancer", json!({"loadBalancer": {}})))).contains("load balancer")
        );
        assert_eq!(
            object_health(&service(
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
            )),
            Health::Healthy
        );

        let job = |conditions: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"active": 1, "conditions": conditions}});
        assert_eq!(
            object_health(&job(json!([{"type": "Complete", "status": "True"}]))),
            Health::Healthy
        );
        assert_eq!(
            degraded(object_health(&job(
                json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
            ))),
            "BackoffLimitExceeded"
        );
        assert_eq!(progressing(object_health(&job(json!([])))), "running (1 active)");

        let pvc =
            |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert_eq!(object_health(&pvc("Bound")), Health::Healthy);
        assert!(progressing(object_health(&pvc("Pending"))).contains("not bound"));
        assert!(matches!(object_health(&pvc("Lost")), Health::Degraded(_)));

        assert_eq!(
            object_health(&json!({"apiVersion": "v1", "kind": "ConfigMap"})),
            Health::Healthy
        );
        assert!(matches!(
            object_health(&json!({"kind": "ConfigMap"})),
            Health::Unknown(_)
        ));
    }

    #[test]
    fn aggregate_reports_the_worst_and_names_at_most_three() {
        let ids: Vec<ObjectId> = (0..5)
            .map(|i| ObjectId::example("apps", "Deployment", Some("shop"), &format!("d{i}")))
            .collect();
        assert_eq!(aggregate(std::iter::empty()), Health::Healthy);
        assert_eq!(aggregate(ids.iter().map(|id| (id, Health::Healthy))), Health::Healthy);
        let mixed = vec![
            (&ids[0], Health::Unknown("?".into())),
            (&ids[1], Health::Progressing("1 of 3".into())),
            (&ids[2], Health::Healthy),
        ];
        assert_eq!(
            aggregate(mixed),
            Health::Progressing("apps/Deployment shop/d1: 1 of 3".into())
        );
        let many = ids.iter().map(|id| (id, Health::Degraded("down".into())));
        assert_eq!(
            aggregate(many),
            Health::Degraded(
                "apps/Deployment shop/d0: down; apps/Deployment shop/d1: down; apps/Deployment shop/d2: down (+2 more)"
                    .into()
            )
        );
        let unknown = vec![
            (&ids[0], Health::Unknown("no status".into())),
            (&ids[1], Health::Healthy),
        ];
        assert_eq!(
            aggregate(unknown),
            Health::Unknown("apps/Deployment shop/d0: no status".into())
        );
    }
}
