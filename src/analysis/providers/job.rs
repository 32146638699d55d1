//! The job provider (Argo's `provider.job`): a measurement is a Kubernetes Job in the run's namespace.
//! It is Successful when the Job completes, Failed when the Job fails, and Running in between — across
//! reconciles: the measurement stays in the status without `finishedAt` and the controller looks at the
//! Job again (by its recorded name) on each poll, never blocking.
//!
//! The Job's name is derived from the run's uid, the metric and the measurement's index, so a controller
//! that restarts between creating the Job and recording the measurement finds the same Job (409 → read
//! it) instead of starting a second one. Pure parts ([`job_name`], [`build_job`], [`job_state`]) are
//! apart from the calls ([`start`], [`resume`], [`delete_running`]).
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::analysis::rules::MAX_MEASUREMENT_TEXT_BYTES;
use crate::api::analysis::{AnalysisPhase, AnalysisRun, JobMetric, Measurement, Metric};
use crate::api::keys::{ANALYSIS_RUN_LABEL, METRIC_LABEL};
use crate::bounds::truncate;

/// Bound on each call to the API server about a Job.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `Measurement.metadata` key of the Job's name (Argo's).
pub const JOB_NAME_KEY: &str = "job-name";
/// `Measurement.metadata` key of the Job's namespace (Argo's).
pub const JOB_NAMESPACE_KEY: &str = "job-namespace";
/// Longest Job name: the Job controller copies it into its pods' `job-name` label, a 63-character value.
const MAX_JOB_NAME: usize = 63;

/// The Job of measurement number `index` (1, 2, …) of `metric` in the run: `<run>-<metric>-<index>`
/// when that is a valid name of at most 63 characters, else a cut, cleaned prefix with a hash of all
/// three (and the run's uid, so a recreated run of the same name never adopts an old Job).
pub fn job_name(run_name: &str, run_uid: &str, metric: &str, index: i32) -> String {
    let plain = format!("{run_name}-{metric}-{index}");
    if plain.len() <= MAX_JOB_NAME && is_dns_label(&plain) {
        return plain;
    }
    let digest = Sha256::digest(format!("{run_uid}\n{run_name}\n{metric}\n{index}").as_bytes());
    let hash = hex::encode(&digest[..5]);
    let suffix = format!("-{index}-{hash}");
    let cleaned: String = format!("{run_name}-{metric}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let room = MAX_JOB_NAME.saturating_sub(suffix.len());
    let prefix = cleaned.get(..room.min(cleaned.len())).unwrap_or_default();
    let prefix = prefix.trim_matches('-');
    if prefix.is_empty() {
        format!("m{suffix}")
    } else {
        format!("{prefix}{suffix}")
    }
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `text` as a label value: itself when valid (at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric
/// at both ends), else `h-` and a hash of it. The full name is in an annotation anyway.
pub fn label_value(text: &str) -> String {
    let bytes = text.as_bytes();
    let valid = bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        && (bytes.is_empty() || (bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric()));
    if valid {
        text.to_string()
    } else {
        format!("h-{}", hex::encode(&Sha256::digest(text.as_bytes())[..10]))
    }
}

/// The labels that find every Job of `run` (for cleanup).
pub fn run_selector(run_name: &str) -> String {
    format!("{ANALYSIS_RUN_LABEL}={}", label_value(run_name))
}

/// The Job a measurement creates: the metric's metadata and spec (arguments were substituted when the
/// run was built), the run as controlling owner, labels naming the run and the metric. A spec still
/// holding an `{{args.…}}` placeholder is refused: that argument comes from a Secret, and a Secret's
/// value must not be copied into a Job's spec where anyone who can read Jobs sees it — use the
/// container's `env[].valueFrom.secretKeyRef` instead.
pub fn build_job(run: &AnalysisRun, metric: &Metric, job: &JobMetric, name: &str) -> Result<Job, String> {
    let spec_json = serde_json::to_string(&job.spec).map_err(|e| e.to_string())?;
    if let Some(at) = spec_json.find("{{") {
        let placeholder: String = spec_json[at..].chars().take(48).collect();
        return Err(format!(
            "the Job spec still holds {placeholder:?}: Secret arguments are not copied into Jobs; read the Secret \
             with env[].valueFrom.secretKeyRef in the container instead"
        ));
    }
    let owner = run
        .controller_owner_ref(&())
        .ok_or_else(|| "the AnalysisRun has no uid yet".to_string())?;
    let mut labels = job.metadata.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(ANALYSIS_RUN_LABEL.to_string(), label_value(&run.name_any()));
    labels.insert(METRIC_LABEL.to_string(), label_value(&metric.name));
    let mut annotations = job.metadata.as_ref().map(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(ANALYSIS_RUN_LABEL.to_string(), run.name_any());
    annotations.insert(METRIC_LABEL.to_string(), metric.name.clone());
    let mut created = Job {
        spec: Some(job.spec.clone()),
        ..Job::default()
    };
    created.metadata.name = Some(name.to_string());
    created.metadata.namespace = run.namespace();
    created.metadata.labels = Some(labels);
    created.metadata.annotations = Some(annotations);
    created.metadata.owner_references = Some(vec![owner]);
    Ok(created)
}

/// Where a Job stands, from its status as the Job controller writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// No terminal condition yet.
    Running,
    /// Condition `Complete` is True.
    Complete,
    /// Condition `Failed` is True: its reason and message.
    Failed(String),
}

/// The state of `job`: a True `Failed` condition wins over `Complete` (it cannot have both; if an
/// edited status says so, failure is the safe reading).
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if let Some(failed) = holds("Failed") {
        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".to_string());
        let message = failed.message.clone().unwrap_or_default();
        return JobState::Failed(if message.is_empty() {
            reason
        } else {
            format!("{reason}: {message}")
        });
    }
    if holds("Complete").is_some() {
        return JobState::Complete;
    }
    JobState::Running
}

/// The measurement `job`'s state makes, from the in-flight one (its start and metadata kept).
pub fn measurement_for(job: &Job, in_flight: &Measurement, now: DateTime<Utc>) -> Measurement {
    let name = job.name_any();
    let (phase, message) = match job_state(job) {
        JobState::Running => return in_flight.clone(),
        JobState::Complete => (AnalysisPhase::Successful, format!("Job {name:?} completed")),
        JobState::Failed(why) => (AnalysisPhase::Failed, format!("Job {name:?} failed: {why}")),
    };
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
        .map(|t| chrono::DateTime::<Utc>::from_timestamp(t.as_second(), 0).unwrap_or(now))
        .unwrap_or(now)
        .min(now);
    Measurement {
        phase,
        finished_at: Some(finished),
        message: Some(truncate(&message, MAX_MEASUREMENT_TEXT_BYTES).into_owned()),
        ..in_flight.clone()
    }
}

fn error(started_at: DateTime<Utc>, now: DateTime<Utc>, why: String) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        started_at: Some(started_at),
        finished_at: Some(now),
        message: Some(truncate(&why, MAX_MEASUREMENT_TEXT_BYTES).into_owned()),
        ..Measurement::default()
    }
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// Starts measurement number `index` of `metric`: creates its Job (or, after a restart, finds the one
/// already created) and returns the Running measurement recording it — or an Error measurement saying
/// why no Job could be created (retried like any Error).
pub async fn start(client: &Client, run: &AnalysisRun, metric: &Metric, index: i32, now: DateTime<Utc>) -> Measurement {
    let Some(job) = &metric.provider.job else {
        return error(now, now, "the metric has no job provider".to_string());
    };
    let namespace = run.namespace().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let name = job_name(&run.name_any(), &uid, &metric.name, index);
    let body = match build_job(run, metric, job, &name) {
        Ok(body) => body,
        Err(why) => return error(now, now, why),
    };
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let created = tokio::time::timeout(CALL_TIMEOUT, api.create(&PostParams::default(), &body)).await;
    let outcome = match created {
        Err(_) => Err(format!("creating Job {name:?}: no answer within {CALL_TIMEOUT:?}")),
        Ok(Ok(_)) => Ok(()),
        // Created before a restart: adopt it only if it is this run's, never a stranger's of that name.
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
            match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(&name)).await {
                Ok(Ok(Some(existing))) if existing.owner_references().iter().any(|o| o.uid == uid) => Ok(()),
                Ok(Ok(Some(_))) => Err(format!("a Job named {name:?} exists and is not this run's")),
                _ => Err(format!("Job {name:?} exists but could not be read")),
            }
        }
        Ok(Err(e)) => Err(format!("creating Job {name:?}: {}", describe(&e))),
    };
    if let Err(why) = outcome {
        return error(now, now, why);
    }
    Measurement {
        phase: AnalysisPhase::Running,
        started_at: Some(now),
        message: Some(format!("Job {name:?} running")),
        metadata: BTreeMap::from([
            (JOB_NAME_KEY.to_string(), name),
            (JOB_NAMESPACE_KEY.to_string(), namespace),
        ]),
        ..Measurement::default()
    }
}

/// Looks at the Job of an in-flight measurement: still Running, Successful, Failed — or Error when the
/// Job is gone (deleted by someone) or cannot be read.
pub async fn resume(client: &Client, run: &AnalysisRun, in_flight: &Measurement, now: DateTime<Utc>) -> Measurement {
    let started = in_flight.started_at.unwrap_or(now);
    let Some(name) = in_flight.metadata.get(JOB_NAME_KEY) else {
        return error(
            started,
            now,
            "the running measurement does not name its Job".to_string(),
        );
    };
    let namespace = run.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name)).await {
        Err(_) => in_flight.clone(), // the next poll tries again
        Ok(Ok(Some(job))) => measurement_for(&job, in_flight, now),
        Ok(Ok(None)) => error(started, now, format!("Job {name:?} is gone before it finished")),
        Ok(Err(e)) => error(started, now, format!("reading Job {name:?}: {}", describe(&e))),
    }
}

/// Deletes the run's Jobs that are still running (propagationPolicy Background: their pods go too),
/// once the run is terminated or finished. Finished Jobs stay for their logs; all go with the run.
pub async fn delete_running(client: &Client, run: &AnalysisRun) -> Result<(), kube::Error> {
    let namespace = run.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let params = ListParams::default().labels(&run_selector(&run.name_any()));
    let jobs = match tokio::time::timeout(CALL_TIMEOUT, api.list(&params)).await {
        Ok(listed) => listed?,
        Err(_) => return Ok(()),
    };
    let uid = run.metadata.uid.as_deref();
    let delete = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for job in jobs {
        let owned = job.owner_references().iter().any(|o| Some(o.uid.as_str()) == uid);
        if !owned || job_state(&job) != JobState::Running || job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match tokio::time::timeout(CALL_TIMEOUT, api.delete(&job.name_any(), &delete)).await {
            Ok(Ok(_)) | Ok(Err(kube::Error::Api(_))) | Err(_) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn run() -> AnalysisRun {
        let mut run = AnalysisRun::new("checkout-abc-3", Default::default());
        run.metadata.namespace = Some("shop".into());
        run.metadata.uid = Some("uid-1".into());
        run
    }

    fn job_metric() -> JobMetric {
        JobMetric {
            metadata: None,
            spec: JobSpec {
                backoff_limit: Some(0),
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "smoke".into(),
                            image: Some("busybox".into()),
                            ..Container::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..PodSpec::default()
                    }),
                    ..PodTemplateSpec::default()
                },
                ..JobSpec::default()
            },
        }
    }

    #[test]
    fn job_names_are_deterministic_valid_and_short() {
        assert_eq!(job_name("run", "u", "smoke", 1), "run-smoke-1");
        let long = "r".repeat(200);
        let a = job_name(&long, "u", "Metric_Name!", 7);
        assert!(a.len() <= 63 && is_dns_label(&a), "{a}");
        assert_eq!(a, job_name(&long, "u", "Metric_Name!", 7), "deterministic");
        assert_ne!(a, job_name(&long, "u", "Metric_Name!", 8));
        assert_ne!(a, job_name(&long, "other-uid", "Metric_Name!", 7));
        let odd = job_name("-", "u", "---", 1);
        assert!(is_dns_label(&odd), "{odd}");
    }

    #[test]
    fn label_values_are_valid_or_hashed() {
        assert_eq!(label_value("smoke.v1"), "smoke.v1");
        let hashed = label_value(&"x".repeat(64));
        assert!(hashed.starts_with("h-") && hashed.len() <= 63);
        assert!(label_value("a b").starts_with("h-"));
    }

    #[test]
    fn the_job_is_owned_and_labelled_and_secret_placeholders_are_refused() {
        let metric = Metric {
            name: "smoke".into(),
            ..Metric::default()
        };
        let job = build_job(&run(), &metric, &job_metric(), "checkout-abc-3-smoke-1").unwrap();
        let labels = job.metadata.labels.unwrap();
        assert_eq!(labels[ANALYSIS_RUN_LABEL], "checkout-abc-3");
        assert_eq!(labels[METRIC_LABEL], "smoke");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("AnalysisRun", "uid-1"));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(job.metadata.namespace.as_deref(), Some("shop"));

        let mut secret = job_metric();
        secret.spec.template.spec.as_mut().unwrap().containers[0].args = Some(vec!["{{args.token}}".into()]);
        let error = build_job(&run(), &metric, &secret, "n").unwrap_err();
        assert!(error.contains("secretKeyRef"), "{error}");
    }

    fn with_condition(kind: &str, status: &str) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: kind.into(),
                    status: status.into(),
                    reason: Some("BackoffLimitExceeded".into()),
                    message: Some("Job has reached the specified backoff limit".into()),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn job_states_follow_the_conditions() {
        assert_eq!(job_state(&Job::default()), JobState::Running);
        assert_eq!(job_state(&with_condition("Complete", "True")), JobState::Complete);
        assert_eq!(job_state(&with_condition("Complete", "False")), JobState::Running);
        assert_eq!(
            job_state(&with_condition("Failed", "True")),
            JobState::Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into())
        );
        let now = Utc::now();
        let in_flight = Measurement {
            phase: AnalysisPhase::Running,
            started_at: Some(now),
            ..Measurement::default()
        };
        assert_eq!(measurement_for(&Job::default(), &in_flight, now), in_flight);
        let failed = measurement_for(&with_condition("Failed", "True"), &in_flight, now);
        assert_eq!(failed.phase, AnalysisPhase::Failed);
        assert!(failed.finished_at.is_some());
        let done = measurement_for(&with_condition("Complete", "True"), &in_flight, now);
        assert_eq!(done.phase, AnalysisPhase::Successful);
    }

    /// Templates written the way Argo's e2e job templates are (sleep-job, multiple-job-fail, an invalid
    /// image, a long-running background job), the API group changed: each must pass the CRD schema,
    /// build into a run with its defaults and the Rollout's arguments, and validate.
    const ARGO_SHAPED: &[(&str, &str)] = &[
        (
            "sleep",
            r#"
kind: AnalysisTemplate
apiVersion: sluice.dev/v1alpha1
metadata: {name: sleep}
spec:
  args:
  - {name: duration, value: "1"}
  - {name: exit-code, value: "0"}
  - {name: count, value: "1"}
  - {name: rev, value: notset}
  metrics:
  - name: sleep
    count: "{{args.count}}"
    provider:
      job:
        spec:
          template:
            metadata:
              labels: {rev: "{{ args.rev }}"}
            spec:
              containers:
              - name: sleep
                image: nginx:1.19-alpine
                command: [sh, -c, -x]
                args: ["sleep {{args.duration}} && exit {{args.exit-code}}"]
              restartPolicy: Never
          backoffLimit: 0
"#,
        ),
        (
            "two-jobs",
            r#"
kind: AnalysisTemplate
apiVersion: sluice.dev/v1alpha1
metadata: {name: two-jobs}
spec:
  args:
  - {name: duration, value: 0s}
  metrics:
  - name: first
    initialDelay: 10000s
    count: 1
    provider:
      job:
        spec:
          template:
            spec:
              containers: [{name: c, image: nginx:1.19-alpine, command: [sh, -c], args: ["sleep {{args.duration}}"]}]
              restartPolicy: Never
          backoffLimit: 0
  - name: repeated
    count: 2
    interval: 1s
    failureLimit: 1
    provider:
      job:
        metadata:
          labels: {purpose: e2e}
          annotations: {note: repeated}
        spec:
          template:
            spec:
              containers: [{name: c, image: nginx:1.19-alpine, command: [sh, -c], args: ["exit 1"]}]
              restartPolicy: Never
          backoffLimit: 0
"#,
        ),
        (
            "bad-image",
            r#"
kind: ClusterAnalysisTemplate
apiVersion: sluice.dev/v1alpha1
metadata: {name: bad-image}
spec:
  metrics:
  - name: bad-image
    provider:
      job:
        spec:
          activeDeadlineSeconds: 60
          template:
            spec:
              containers: [{name: c, image: "registry.invalid/does-not-exist:0"}]
              restartPolicy: Never
          backoffLimit: 0
"#,
        ),
        (
            "long-running",
            r#"
kind: AnalysisTemplate
apiVersion: sluice.dev/v1alpha1
metadata: {name: long-running}
spec:
  dryRun: [{metricName: ".*"}]
  measurementRetention: [{metricName: long, limit: 3}]
  metrics:
  - name: long-running
    consecutiveSuccessLimit: "{{args.streak}}"
    failureLimit: -1
    interval: 5s
    provider:
      job:
        spec:
          template:
            spec:
              containers: [{name: c, image: nginx:1.19-alpine, command: [sleep, "3600"]}]
              restartPolicy: Never
  args:
  - {name: streak, value: "2"}
"#,
        ),
    ];

    #[test]
    fn argo_shaped_job_templates_parse_validate_and_build() {
        use crate::analysis::rules;
        use crate::analysis::template::{ArgumentSources, MetricLists, build_run_spec};
        use crate::api::analysis::{AnalysisTemplateSpec, ClusterAnalysisTemplate};
        use kube::CustomResourceExt;

        let rollout = serde_json::json!({"metadata": {"name": "web"}});
        let sources = ArgumentSources {
            rollout: &rollout,
            stable_hash: Some("s"),
            latest_hash: Some("l"),
        };
        for (name, yaml) in ARGO_SHAPED {
            let object: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
            let crd = if object["kind"] == "ClusterAnalysisTemplate" {
                ClusterAnalysisTemplate::crd()
            } else {
                crate::api::analysis::AnalysisTemplate::crd()
            };
            let crd = serde_json::to_value(crd).unwrap();
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let causes = sluice_sim::schema::validate(schema, &object);
            assert!(causes.is_empty(), "{name}: the CRD refuses it: {causes:?}");
            let spec: AnalysisTemplateSpec = serde_json::from_value(object["spec"].clone()).unwrap();
            let run = build_run_spec(&[(name, &spec)], &[], &sources, MetricLists::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            rules::validate(&run).unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = serde_json::to_string(&run).unwrap();
            assert!(!text.contains("{{"), "{name}: every placeholder substituted: {text}");
        }
        // What the lists and limits became.
        let object: serde_json::Value = serde_saphyr::from_str(ARGO_SHAPED[3].1).unwrap();
        let spec: AnalysisTemplateSpec = serde_json::from_value(object["spec"].clone()).unwrap();
        let run = build_run_spec(&[("long-running", &spec)], &[], &sources, MetricLists::default()).unwrap();
        let metric = &run.metrics[0];
        assert_eq!((metric.dry_run, metric.measurement_retention), (Some(true), Some(3)));
        assert_eq!(metric.consecutive_success_limit_or_default(), 2);
        let object: serde_json::Value = serde_saphyr::from_str(ARGO_SHAPED[0].1).unwrap();
        let spec: AnalysisTemplateSpec = serde_json::from_value(object["spec"].clone()).unwrap();
        let args = [crate::api::analysis::Argument::literal("exit-code", "1")];
        let run = build_run_spec(&[("sleep", &spec)], &args, &sources, MetricLists::default()).unwrap();
        let job = run.metrics[0].provider.job.as_ref().unwrap();
        let pod = job.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].args.as_ref().unwrap()[0], "sleep 1 && exit 1");
        let labels = job.spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels["rev"], "notset");
    }

    #[test]
    fn an_oversized_job_spec_is_refused() {
        let mut metric = job_metric();
        metric.spec.template.spec.as_mut().unwrap().containers[0].args =
            Some(vec!["x".repeat(crate::analysis::rules::MAX_JOB_SPEC_BYTES)]);
        let spec = crate::api::analysis::AnalysisRunSpec {
            metrics: vec![Metric {
                name: "big".into(),
                provider: crate::api::analysis::MetricProvider {
                    job: Some(metric),
                    ..Default::default()
                },
                ..Metric::default()
            }],
            ..Default::default()
        };
        let error = crate::analysis::rules::validate(&spec).unwrap_err();
        assert!(
            error.contains("provider.job.spec") && error.contains("at most"),
            "{error}"
        );
    }
}
