//! The Job controller (batch/v1), as Kubernetes documents it for non-indexed Jobs: a Job runs pods from
//! its template — up to `parallelism` (default 1) at once until `completions` (default 1) succeeded —
//! replaces failed pods after an exponential back-off (10 s, 20 s, 40 s … capped at 6 min) until more
//! than `backoffLimit` (default 6) failed, and fails at `activeDeadlineSeconds`. Status as the Job
//! controller writes it: `active`, `ready`, `succeeded`, `failed` (zeros omitted), `startTime`,
//! `completionTime` on success, and the terminal conditions in pairs: `SuccessCriteriaMet` + `Complete`,
//! or `FailureTarget` + `Failed` (reason `BackoffLimitExceeded` or `DeadlineExceeded`).
//!
//! There are no containers to run, so annotations on the pod template decide the outcome:
//! `sim.sluice.dev/exit-code` (default 0) and `sim.sluice.dev/run-duration` (default 1 s, at most 1 h)
//! after the pod turned Running (its ready delay, as for other pods). With `restartPolicy: OnFailure` a
//! failing container restarts in place and each restart counts against `backoffLimit`, as in Kubernetes.
//!
//! Left out: indexed Jobs, `podFailurePolicy`, `successPolicy`, `suspend`, `ttlSecondsAfterFinished`,
//! the API server's defaulting of `spec.selector` (pods are found by ownerReference here).
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::api::{ApiServer, DeleteOptions, ListOptions, WriteOptions, now_rfc3339};
use crate::registry::ResourceType;
use crate::store::StoredObject;
use crate::workload::{annotation, parse_duration};

/// Per Job (pod template): the container's exit code, 0 (success) by default.
pub const EXIT_CODE_ANNOTATION: &str = "sim.sluice.dev/exit-code";
/// Per Job (pod template): how long the container runs once the pod is Running, e.g. "500ms", "3s".
pub const RUN_DURATION_ANNOTATION: &str = "sim.sluice.dev/run-duration";
const DEFAULT_RUN_DURATION: Duration = Duration::from_secs(1);
const MAX_RUN_DURATION: Duration = Duration::from_secs(3600);
const DEFAULT_BACKOFF_LIMIT: i64 = 6;
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// More pods than this per Job are never created (a hostile `parallelism`).
const MAX_PARALLELISM: i64 = 100;
const FIELD_MANAGER: &str = "sluice-sim-job-controller";

/// The pod's container: its exit code and how long it runs.
fn outcome(pod: &Value) -> (i64, Duration) {
    let exit_code = annotation(pod, EXIT_CODE_ANNOTATION)
        .and_then(|code| code.trim().parse::<i64>().ok())
        .map_or(0, |code| code.clamp(0, 255));
    let run = annotation(pod, RUN_DURATION_ANNOTATION)
        .and_then(parse_duration)
        .unwrap_or(DEFAULT_RUN_DURATION)
        .min(MAX_RUN_DURATION);
    (exit_code, run)
}

/// Whether the pod's controlling owner is a Job.
pub(crate) fn owned_by_job(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| r["kind"] == "Job" && r["controller"] == true)
}

/// When the controller first saw a Job pod, and when it turned Running.
#[derive(Clone, Copy, Debug)]
struct Clock {
    seen: Instant,
    running: Option<Instant>,
    /// The current container run started (a restart under OnFailure starts a new one).
    run_started: Option<Instant>,
    /// The pod ended Failed (the back-off before its replacement counts from here).
    failed: Option<Instant>,
}

/// The Job controller's memory between passes: pod clocks, and when each Job may next create a pod.
pub(crate) struct JobController {
    jobs_rt: std::sync::Arc<ResourceType>,
    pods_rt: std::sync::Arc<ResourceType>,
    clocks: HashMap<String, Clock>,
    started: HashMap<String, Instant>,
}

impl JobController {
    pub(crate) fn new(api: &ApiServer) -> Self {
        JobController {
            jobs_rt: api.resource("batch", "jobs").expect("jobs are built in"),
            pods_rt: api.resource("", "pods").expect("pods are built in"),
            clocks: HashMap::new(),
            started: HashMap::new(),
        }
    }

    /// One pass over every Job and Job pod; returns when it next has timed work.
    pub(crate) fn sync(&mut self, api: &ApiServer, default_ready_delay: Duration, now: Instant) -> Option<Instant> {
        let mut wakeup: Option<Instant> = None;
        let mut at = |when: Instant| wakeup = Some(wakeup.map_or(when, |w: Instant| w.min(when)));
        let jobs = list(api, &self.jobs_rt);
        // Job pods through the owner index: a pass costs the Jobs and their pods, not every pod.
        let pods: Vec<std::sync::Arc<StoredObject>> = {
            let txn = api.store.lock();
            jobs.iter()
                .flat_map(|job| txn.dependents_of(&job.uid))
                .filter(|k| k.resource.group.is_empty() && k.resource.plural == "pods")
                .filter_map(|k| txn.get(&k))
                .collect()
        };
        let live: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        self.clocks.retain(|uid, _| live.contains(uid.as_str()));
        for stored in pods.iter().filter(|p| !p.deleting) {
            let pod = stored.value();
            if owned_by_job(&pod) {
                self.progress_pod(api, stored, &pod, default_ready_delay, now, &mut at);
            }
        }
        let live: HashSet<&str> = jobs.iter().map(|j| j.uid.as_str()).collect();
        self.started.retain(|uid, _| live.contains(uid.as_str()));
        for stored in jobs.iter().filter(|j| !j.deleting) {
            self.sync_job(api, stored, now, &mut at);
        }
        wakeup
    }

    /// Pending → Running after the ready delay → Succeeded / Failed after the run duration (or, under
    /// OnFailure with a non-zero exit, a restart).
    fn progress_pod(
        &mut self,
        api: &ApiServer,
        stored: &StoredObject,
        pod: &Value,
        default_ready_delay: Duration,
        now: Instant,
        at: &mut impl FnMut(Instant),
    ) {
        let clock = *self.clocks.entry(stored.uid.clone()).or_insert(Clock {
            seen: now,
            running: None,
            run_started: None,
            failed: None,
        });
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        let (exit_code, run) = outcome(pod);
        match phase {
            "Pending" => {
                let delay = annotation(pod, crate::workload::READY_DELAY_ANNOTATION)
                    .and_then(parse_duration)
                    .unwrap_or(default_ready_delay);
                if now < clock.seen + delay {
                    at(clock.seen + delay);
                    return;
                }
                write_pod_status(api, &self.pods_rt, stored, pod_status(pod, "Running", None, 0));
                self.clocks.insert(
                    stored.uid.clone(),
                    Clock {
                        running: Some(now),
                        run_started: Some(now),
                        ..clock
                    },
                );
                at(now + run);
            }
            "Running" => {
                let started = clock.run_started.or(clock.running).unwrap_or(clock.seen);
                if now < started + run {
                    at(started + run);
                    return;
                }
                let restarts = restart_count(pod);
                let on_failure = pod.pointer("/spec/restartPolicy").and_then(Value::as_str) == Some("OnFailure");
                let status = if exit_code == 0 {
                    pod_status(pod, "Succeeded", Some(0), restarts)
                } else if on_failure {
                    // The kubelet restarts the container in place; the Job controller counts the restart.
                    self.clocks.insert(
                        stored.uid.clone(),
                        Clock {
                            run_started: Some(now),
                            ..clock
                        },
                    );
                    at(now + run);
                    pod_status(pod, "Running", Some(exit_code), restarts.saturating_add(1))
                } else {
                    self.clocks.insert(
                        stored.uid.clone(),
                        Clock {
                            failed: Some(now),
                            ..clock
                        },
                    );
                    pod_status(pod, "Failed", Some(exit_code), restarts)
                };
                write_pod_status(api, &self.pods_rt, stored, status);
            }
            _ => {}
        }
    }

    fn sync_job(&mut self, api: &ApiServer, stored: &StoredObject, now: Instant, at: &mut impl FnMut(Instant)) {
        let job = stored.to_value();
        if is_finished(&job) {
            return;
        }
        let pods = owned_pods(api, stored);
        let phase = |p: &Value| {
            p.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_string()
        };
        let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let active: Vec<&Value> = pods
            .iter()
            .filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
            .collect();
        let restarts: i64 = active.iter().map(|p| restart_count(p)).sum();
        let spec = |field: &str| job.pointer(&format!("/spec/{field}")).and_then(Value::as_i64);
        let completions = spec("completions");
        let parallelism = spec("parallelism").unwrap_or(1).clamp(0, MAX_PARALLELISM);
        let backoff_limit = spec("backoffLimit").unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0);
        let started_at = *self.started.entry(stored.uid.clone()).or_insert(now);
        let start_time = job
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .map_or_else(now_rfc3339, str::to_string);

        let mut status = Map::new();
        status.insert("startTime".into(), json!(start_time));
        let counts = |status: &mut Map<String, Value>, active: usize, ready: usize| {
            // The API omits zero counts (omitempty), as the simulator does elsewhere.
            for (field, count) in [
                ("active", active as i64),
                ("ready", ready as i64),
                ("succeeded", succeeded),
                ("failed", failed),
            ] {
                if count > 0 || field == "ready" {
                    status.insert(field.into(), json!(count));
                }
            }
        };
        let done = match completions {
            Some(completions) => succeeded >= completions.max(1),
            // Without completions, any success completes the Job once no pod is left running.
            None => succeeded > 0 && active.is_empty(),
        };
        let deadline = spec("activeDeadlineSeconds")
            .filter(|s| *s > 0)
            .map(|s| started_at + Duration::from_secs(s.unsigned_abs()));
        let terminal = if done {
            Some((
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ))
        } else if failed.saturating_add(restarts) > backoff_limit {
            Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| now >= d) {
            Some((
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((kind, reason, message)) = terminal {
            delete_pods(api, &self.pods_rt, &active);
            counts(&mut status, 0, 0);
            let time = now_rfc3339();
            let condition = |kind: &str| {
                json!({"type": kind, "status": "True", "reason": reason, "message": message,
                       "lastProbeTime": time, "lastTransitionTime": time})
            };
            let first = if kind == "Complete" {
                "SuccessCriteriaMet"
            } else {
                "FailureTarget"
            };
            status.insert("conditions".into(), json!([condition(first), condition(kind)]));
            if kind == "Complete" {
                status.insert("completionTime".into(), json!(time));
            }
            write_status(api, &self.jobs_rt, stored, job, Value::Object(status));
            return;
        }
        if let Some(deadline) = deadline {
            at(deadline);
        }
        // Pods to add: up to parallelism, never more than the completions still missing.
        let missing = completions.map_or(if succeeded > 0 { 0 } else { parallelism }, |c| {
            (c.max(1) - succeeded).max(0)
        });
        let wanted = parallelism.min(missing).max(0) as usize;
        if active.len() < wanted {
            // After a failure the replacement waits 10 s × 2^(failures − 1), at most 6 min.
            let last_failure = pods
                .iter()
                .filter(|p| phase(p) == "Failed")
                .filter_map(|p| p.pointer("/metadata/uid").and_then(Value::as_str))
                .filter_map(|uid| self.clocks.get(uid))
                .map(|c| c.failed.unwrap_or(c.seen))
                .max();
            let backoff = if failed > 0 {
                let exponent = u32::try_from(failed - 1).unwrap_or(u32::MAX).min(6);
                (BACKOFF_BASE * 2u32.pow(exponent)).min(BACKOFF_MAX)
            } else {
                Duration::ZERO
            };
            match last_failure.map(|t| t + backoff) {
                Some(when) if when > now => at(when),
                _ => {
                    for _ in active.len()..wanted {
                        create_pod(api, &self.pods_rt, stored, &job);
                    }
                }
            }
        }
        let ready = active.iter().filter(|p| crate::workload::is_ready(p)).count();
        counts(&mut status, active.len(), ready);
        if job.get("status") != Some(&Value::Object(status.clone())) {
            write_status(api, &self.jobs_rt, stored, job, Value::Object(status));
        }
    }
}

fn is_finished(job: &Value) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

fn restart_count(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses/0/restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn list(api: &ApiServer, rt: &ResourceType) -> Vec<std::sync::Arc<StoredObject>> {
    api.list(rt, None, &ListOptions::default())
        .map(|l| l.items)
        .unwrap_or_default()
}

fn owned_pods(api: &ApiServer, job: &StoredObject) -> Vec<Value> {
    let txn = api.store.lock();
    let dependents = txn.dependents_of(&job.uid);
    dependents
        .iter()
        .filter(|k| k.resource.group.is_empty() && k.resource.plural == "pods")
        .filter_map(|k| txn.get(k))
        .filter(|p| !p.deleting)
        .map(|p| p.to_value())
        .filter(|p| {
            p.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == job.uid.as_str() && r["controller"] == true)
        })
        .collect()
}

/// A pod for the Job: its template, the Job's labels (`job-name`, `controller-uid` and their
/// `batch.kubernetes.io/` forms), the Job as controlling owner.
fn create_pod(api: &ApiServer, pods_rt: &ResourceType, stored: &StoredObject, job: &Value) {
    let name = &stored.key.name;
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!("sim-node");
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", stored.uid.as_str()),
        ("batch.kubernetes.io/job-name", name.as_str()),
        ("controller-uid", stored.uid.as_str()),
        ("job-name", name.as_str()),
    ] {
        labels.insert(key.into(), json!(value));
    }
    let prefix: String = name.chars().take(57).collect();
    let mut metadata = json!({
        "name": format!("{prefix}-{}", suffix()),
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": stored.uid,
            "controller": true, "blockOwnerDeletion": true,
        }],
    });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let opts = WriteOptions {
        field_manager: FIELD_MANAGER.into(),
        ..Default::default()
    };
    if let Err(e) = api.create(pods_rt, &stored.key.namespace, pod, &opts) {
        tracing::debug!(job = %name, error = %e.message, "could not create pod");
    }
}

fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

fn delete_pods(api: &ApiServer, pods_rt: &ResourceType, pods: &[&Value]) {
    for pod in pods {
        let (Some(ns), Some(name)) = (
            pod.pointer("/metadata/namespace").and_then(Value::as_str),
            pod.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let version = &pods_rt.preferred_version().name;
        if let Err(e) = api.delete(pods_rt, version, ns, name, &DeleteOptions::default()) {
            tracing::debug!(pod = %name, error = %e.message, "could not delete pod");
        }
    }
}

/// A Job pod's status: `phase`, its container running or terminated with `exit_code`.
fn pod_status(pod: &Value, phase: &str, exit_code: Option<i64>, restarts: i64) -> Value {
    let now = now_rfc3339();
    let started = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map_or(now.clone(), str::to_string);
    let running = phase == "Running";
    let ready = if running { "True" } else { "False" };
    let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let mut status = json!({
                "name": name, "image": image, "imageID": format!("sim://{image}"),
                "containerID": format!("sim://{name}-{restarts}"),
                "ready": running, "started": running, "restartCount": restarts,
                "state": {"running": {"startedAt": now}},
            });
            if let Some(code) = exit_code {
                let reason = if code == 0 { "Completed" } else { "Error" };
                let terminated = json!({"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now});
                if running {
                    status["lastState"] = json!({ "terminated": terminated });
                } else {
                    status["state"] = json!({ "terminated": terminated });
                }
            }
            status
        })
        .collect();
    json!({
        "phase": phase,
        "conditions": [
            condition("PodScheduled", "True"),
            condition("Initialized", "True"),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "hostIP": "172.18.0.2",
        "startTime": started,
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    })
}

fn write_pod_status(api: &ApiServer, pods_rt: &ResourceType, stored: &StoredObject, status: Value) {
    let pod = stored.to_value();
    write_status(api, pods_rt, stored, pod, status);
}

/// Writes `status` through the status subresource, without a resourceVersion (only the status is
/// taken from the body); a failure is retried by the next pass.
fn write_status(api: &ApiServer, rt: &ResourceType, stored: &StoredObject, mut object: Value, status: Value) {
    object["status"] = status;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let opts = WriteOptions {
        field_manager: FIELD_MANAGER.into(),
        subresource: Some("status".into()),
        ..Default::default()
    };
    if let Err(e) = api.update(rt, &stored.key.namespace, &stored.key.name, object, &opts) {
        tracing::debug!(kind = %rt.kind, name = %stored.key.name, error = %e.message, "could not write status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Simulator;
    use crate::workload::tests::{eventually, opts, pods_of, start};

    fn job(name: &str, annotations: Value, spec: Value) -> Value {
        let mut body = json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "smoke"}, "annotations": annotations},
                    "spec": {"containers": [{"name": "smoke", "image": "busybox"}], "restartPolicy": "Never"},
                },
            },
        });
        if let (Some(target), Some(extra)) = (body["spec"].as_object_mut(), spec.as_object()) {
            target.extend(extra.clone());
        }
        body
    }

    fn create(sim: &Simulator, body: Value) {
        let rt = sim.api.resource("batch", "jobs").unwrap();
        sim.api.create(&rt, "default", body, &opts()).unwrap();
    }

    fn status(sim: &Simulator, name: &str) -> Value {
        let rt = sim.api.resource("batch", "jobs").unwrap();
        sim.api.get(&rt, "default", name).unwrap().to_value()["status"].clone()
    }

    fn condition_types(status: &Value) -> Vec<String> {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}={}",
                    c["type"].as_str().unwrap(),
                    c["reason"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    async fn finished(sim: &Simulator, name: &str) -> Value {
        eventually(Duration::from_secs(10), "the Job to finish", || {
            let status = status(sim, name);
            is_finished(&json!({ "status": status })).then_some(status)
        })
        .await
    }

    #[tokio::test]
    async fn a_job_whose_container_exits_0_completes() {
        let sim = start().await;
        create(&sim, job("ok", json!({RUN_DURATION_ANNOTATION: "200ms"}), json!({})));
        let running = eventually(Duration::from_secs(5), "an active pod", || {
            let status = status(&sim, "ok");
            (status["active"] == 1).then_some(status)
        })
        .await;
        assert!(running["startTime"].is_string());
        let status = finished(&sim, "ok").await;
        assert_eq!(
            condition_types(&status),
            ["SuccessCriteriaMet=CompletionsReached", "Complete=CompletionsReached"]
        );
        assert_eq!((status["succeeded"].as_i64(), status.get("active")), (Some(1), None));
        assert!(status["completionTime"].is_string());
        let pods = pods_of(&sim, "ok");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0]["status"]["phase"], "Succeeded");
        assert_eq!(pods[0]["metadata"]["labels"]["job-name"], "ok");
        assert_eq!(pods[0]["metadata"]["labels"]["app"], "smoke");
        assert_eq!(
            pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
    }

    #[tokio::test]
    async fn a_failing_job_respects_backoff_limit_0() {
        let sim = start().await;
        let annotations = json!({EXIT_CODE_ANNOTATION: "1", RUN_DURATION_ANNOTATION: "100ms"});
        create(&sim, job("bad", annotations, json!({"backoffLimit": 0})));
        let status = finished(&sim, "bad").await;
        assert_eq!(
            condition_types(&status),
            ["FailureTarget=BackoffLimitExceeded", "Failed=BackoffLimitExceeded"]
        );
        assert_eq!(status["failed"], 1);
        assert!(status.get("completionTime").is_none(), "only a completed Job has one");
        let pods = pods_of(&sim, "bad");
        assert_eq!(pods.len(), 1, "no replacement once the limit is exceeded");
        assert_eq!(
            pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
    }

    #[tokio::test]
    async fn a_failed_pod_is_replaced_after_the_back_off() {
        let sim = start().await;
        let annotations = json!({EXIT_CODE_ANNOTATION: "2", RUN_DURATION_ANNOTATION: "50ms"});
        create(&sim, job("retry", annotations, json!({"backoffLimit": 1})));
        eventually(Duration::from_secs(5), "the first failure", || {
            (status(&sim, "retry")["failed"] == 1).then_some(())
        })
        .await;
        // The replacement waits 10 s: nothing new shortly after the failure.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(pods_of(&sim, "retry").len(), 1);
        assert!(!is_finished(&json!({"status": status(&sim, "retry")})));
    }

    #[tokio::test]
    async fn active_deadline_fails_the_job_and_removes_its_pods() {
        let sim = start().await;
        let annotations = json!({RUN_DURATION_ANNOTATION: "1h"});
        create(&sim, job("slow", annotations, json!({"activeDeadlineSeconds": 1})));
        let status = finished(&sim, "slow").await;
        assert_eq!(
            condition_types(&status),
            ["FailureTarget=DeadlineExceeded", "Failed=DeadlineExceeded"]
        );
        assert!(status.get("active").is_none());
        eventually(Duration::from_secs(5), "the running pod deleted", || {
            pods_of(&sim, "slow").is_empty().then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn on_failure_restarts_count_against_the_backoff_limit() {
        let sim = start().await;
        let annotations = json!({EXIT_CODE_ANNOTATION: "1", RUN_DURATION_ANNOTATION: "50ms"});
        let mut body = job("restarts", annotations, json!({"backoffLimit": 2}));
        body["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        create(&sim, body);
        let status = finished(&sim, "restarts").await;
        assert_eq!(condition_types(&status)[1], "Failed=BackoffLimitExceeded");
        assert!(status.get("failed").is_none(), "the pod itself never failed");
    }

    #[tokio::test]
    async fn completions_and_parallelism() {
        let sim = start().await;
        let annotations = json!({RUN_DURATION_ANNOTATION: "100ms"});
        create(
            &sim,
            job("many", annotations, json!({"completions": 3, "parallelism": 2})),
        );
        eventually(Duration::from_secs(5), "two pods at once", || {
            (status(&sim, "many")["active"] == 2).then_some(())
        })
        .await;
        let status = finished(&sim, "many").await;
        assert_eq!(status["succeeded"], 3);
        assert_eq!(pods_of(&sim, "many").len(), 3);
    }

    #[test]
    fn outcomes_are_bounded() {
        let pod = |annotations: Value| json!({"metadata": {"annotations": annotations}});
        assert_eq!(outcome(&pod(json!({}))), (0, DEFAULT_RUN_DURATION));
        assert_eq!(
            outcome(&pod(
                json!({EXIT_CODE_ANNOTATION: "999", RUN_DURATION_ANNOTATION: "1000h"})
            )),
            (255, MAX_RUN_DURATION)
        );
        assert_eq!(outcome(&pod(json!({EXIT_CODE_ANNOTATION: "nope"}))).0, 0);
    }
}
