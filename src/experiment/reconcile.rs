//! The Experiment reconciler: observe what the Experiment owns (listed by label, kept only when its
//! controller ownerReference is this Experiment), build the AnalysisRuns it may need (templates read
//! the way Rollouts read them), plan, apply, write the status when it changed, record events.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::analysis::template::{self, ArgumentSources, MetricLists};
use crate::api::analysis::{AnalysisRun, AnalysisTemplateSpec, Argument};
use crate::api::experiment::Experiment;
use crate::api::keys::{CONTROLLER_FIELD_MANAGER, EXPERIMENT_LABEL, POD_TEMPLATE_HASH_LABEL};
use crate::api::spec_error::SpecError;
use crate::events::{Event, EventType, Recorder};
use crate::merge_patch::merge_diff;
use crate::observe::Observer;
use crate::rollout::analysis_runs::{TemplateAnalysisRunFactory, kind};

use super::names;
use super::plan::{self, Action, ObservedReplicaSet, ObservedRun, Plan};
use super::validate::substitute_templates;

/// Every call to the API server gives up after this long (the reconcile then fails and is retried).
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a reconcile failed; the error policy requeues with backoff and counts it by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("experiment {namespace}/{name}: {action}: {message}")]
    Kube {
        namespace: String,
        name: String,
        action: String,
        message: String,
    },
    /// A bug met this Experiment (see `controller::isolate`).
    #[error("experiment {namespace}/{name}: reconcile panicked: {message}")]
    Panicked {
        namespace: String,
        name: String,
        message: String,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Panicked { .. } => "panic",
        }
    }

    pub fn panicked(experiment: &Experiment, message: String) -> Error {
        Error::Panicked {
            namespace: experiment.namespace().unwrap_or_default(),
            name: experiment.name_any(),
            message,
        }
    }
}

/// What every Experiment reconcile shares.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<dyn Observer>,
    pub recorder: Recorder,
    /// Reads AnalysisTemplates / ClusterAnalysisTemplates, as for Rollouts.
    pub templates: TemplateAnalysisRunFactory,
}

/// Runs `call` within [`API_TIMEOUT`]; a timeout or an API error becomes an [`Error`] naming `action`.
async fn call<T>(
    experiment: &Experiment,
    action: impl Into<String>,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, Error> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => Ok(result),
        Err(_) => Err(Error::Kube {
            namespace: experiment.namespace().unwrap_or_default(),
            name: experiment.name_any(),
            action: action.into(),
            message: format!("no answer within {API_TIMEOUT:?}"),
        }),
    }
}

/// [`call`], where every API error fails the reconcile except HTTP `tolerated` (404 deleting what is
/// gone, 409 creating what a lost status write hid).
async fn write<T>(
    experiment: &Experiment,
    action: impl Into<String>,
    tolerated: Option<u16>,
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Option<T>, Error> {
    let action = action.into();
    match call(experiment, action.clone(), future).await? {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(e)) if Some(e.code) == tolerated => Ok(None),
        Err(e) => Err(Error::Kube {
            namespace: experiment.namespace().unwrap_or_default(),
            name: experiment.name_any(),
            action,
            message: e.to_string(),
        }),
    }
}

fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn owner_reference(experiment: &Experiment) -> Option<OwnerReference> {
    experiment.controller_owner_ref(&())
}

/// The name of the Experiment controlling `service` when that Experiment has ended or is gone; None
/// when the Service is not an Experiment's or its Experiment still runs.
async fn ended_experiment_owner(
    service: &Service,
    experiment: &Experiment,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let Some(owner) = service.metadata.owner_references.iter().flatten().find(|o| {
        o.controller == Some(true) && o.kind == "Experiment" && o.api_version == Experiment::api_version(&())
    }) else {
        return Ok(None);
    };
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &experiment.namespace().unwrap_or_default());
    let current = write(
        experiment,
        format!("reading Experiment {}", owner.name),
        None,
        api.get_opt(&owner.name),
    )
    .await?
    .flatten();
    let ended = match current {
        None => true,
        Some(other) if other.uid().as_deref() != Some(owner.uid.as_str()) => true,
        Some(other) => other
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_completed()),
    };
    Ok(ended.then(|| owner.name.clone()))
}

/// Reconciles one Experiment.
pub async fn reconcile(experiment: Arc<Experiment>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    if experiment.meta().deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let namespace = experiment.namespace().unwrap_or_default();
    let name = experiment.name_any();
    let uid = experiment.uid().unwrap_or_default();
    let label = format!("{EXPERIMENT_LABEL}={}", names::experiment_label(&name));
    let by_label = ListParams::default().labels(&label);

    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let run_api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let service_api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let replica_sets: Vec<ReplicaSet> = write(&experiment, "listing ReplicaSets", None, rs_api.list(&by_label))
        .await?
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|rs| owned_by(&rs.metadata, &uid))
        .collect();
    let observed_sets: Vec<ObservedReplicaSet> = replica_sets.iter().map(observed_replica_set).collect();
    let runs: Vec<ObservedRun> = write(&experiment, "listing AnalysisRuns", None, run_api.list(&by_label))
        .await?
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|run| owned_by(&run.metadata, &uid))
        .map(observed_run)
        .collect();
    // Services are read one by one (the names are known): the controller needs no list on Services.
    let mut reference_errors = Vec::new();
    let mut services = Vec::new();
    for (i, template) in experiment.spec.templates.iter().enumerate() {
        let Some(service) = names::service_name(&name, template) else {
            continue;
        };
        if super::validate::dns_label(&service).is_err() {
            continue;
        }
        let found = write(
            &experiment,
            format!("reading Service {service}"),
            None,
            service_api.get_opt(&service),
        )
        .await?
        .flatten();
        if let Some(found) = found {
            if owned_by(&found.metadata, &uid) {
                services.push(service);
            } else if let Some(owner) = ended_experiment_owner(&found, &experiment, &ctx).await? {
                // A Service an ended Experiment leaves until its scale-down delay is over (the previous
                // revision's experiment step with the same service.name): its owner is done with it,
                // so it goes now and this Experiment creates its own.
                let preconditions = kube::api::Preconditions {
                    uid: found.metadata.uid.clone(),
                    resource_version: None,
                };
                let delete = DeleteParams {
                    preconditions: Some(preconditions),
                    ..DeleteParams::background()
                };
                write(
                    &experiment,
                    format!("deleting Service {service} left by ended Experiment {owner}"),
                    Some(404),
                    service_api.delete(&service, &delete),
                )
                .await?;
            } else {
                // Someone else's Service is never taken over.
                reference_errors.push(SpecError {
                    field: format!("spec.templates[{i}].service.name"),
                    message: format!("Service {service:?} exists and does not belong to this Experiment"),
                });
            }
        }
    }

    // AnalysisRuns the plan may create: built now so a missing template or a bad argument is an
    // invalid spec with its field path rather than a failing reconcile.
    let ended = experiment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_completed());
    let mut built: BTreeMap<usize, AnalysisRun> = BTreeMap::new();
    if !ended && !experiment.spec.is_terminated() && super::validate::validate(&experiment).is_empty() {
        for (i, analysis) in experiment.spec.analyses.iter().enumerate() {
            let run_name = names::analysis_run_name(&name, analysis);
            if runs.iter().any(|r| r.name == run_name) {
                continue;
            }
            match build_run(&experiment, i, &ctx).await {
                Ok(run) => {
                    built.insert(i, run);
                }
                Err(Built::Spec(error)) => reference_errors.push(error),
                Err(Built::Unreachable(message)) => {
                    return Err(Error::Kube {
                        namespace,
                        name,
                        action: format!("reading spec.analyses[{i}]'s template"),
                        message,
                    });
                }
            }
        }
    }

    let now = Utc::now();
    let plan = plan::plan(&plan::Observed {
        experiment: &experiment,
        replica_sets: &observed_sets,
        services: &services,
        runs: &runs,
        reference_errors,
        now,
    });
    for action in &plan.actions {
        apply_action(&experiment, action, &built, &ctx).await?;
    }
    write_status(&experiment, &plan, &ctx).await?;
    publish_events(&experiment, &plan, &ctx).await;
    ctx.metrics.count_reconcile("experiment", started.elapsed());
    Ok(match plan.requeue_after {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    })
}

pub fn error_policy(experiment: Arc<Experiment>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(experiment = %experiment.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_reconcile_error("experiment", error.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

fn observed_replica_set(rs: &ReplicaSet) -> ObservedReplicaSet {
    let status = rs.status.clone().unwrap_or_default();
    ObservedReplicaSet {
        name: rs.name_any(),
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        replicas: status.replicas,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        observed_current: status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0),
    }
}

fn observed_run(run: &AnalysisRun) -> ObservedRun {
    let status = run.status.clone().unwrap_or_default();
    ObservedRun {
        name: run.name_any(),
        phase: status.phase,
        message: status.message,
        terminating: run.spec.terminate.unwrap_or(false),
    }
}

enum Built {
    /// The spec's fault, at a field path.
    Spec(SpecError),
    /// The API server did not answer: retried.
    Unreachable(String),
}

/// The AnalysisRun of `spec.analyses[index]`: the template read as Rollouts read it, the
/// `{{templates.NAME.…}}` placeholders of the arguments replaced, then built by the shared
/// `analysis::template::build_run_spec`.
async fn build_run(experiment: &Experiment, index: usize, ctx: &Context) -> Result<AnalysisRun, Built> {
    let namespace = experiment.namespace().unwrap_or_default();
    let name = experiment.name_any();
    let analysis = &experiment.spec.analyses[index];
    let at = format!("spec.analyses[{index}]");
    let cluster = analysis.cluster_scope.unwrap_or(false);
    let spec: AnalysisTemplateSpec = ctx
        .templates
        .template(&namespace, &analysis.template_name, cluster)
        .await
        .map_err(Built::Unreachable)?
        .ok_or_else(|| {
            Built::Spec(SpecError {
                field: format!("{at}.templateName"),
                message: format!("{} {:?} not found", kind(cluster), analysis.template_name),
            })
        })?;
    let lookup = |template: &str, field: &str| {
        let t = experiment.spec.templates.iter().find(|t| t.name == template)?;
        match field {
            "podTemplateHash" => Some(names::template_hash(experiment, t)),
            "replicaSetName" => Some(names::replica_set_name(&name, &t.name)),
            _ => None,
        }
    };
    let mut args: Vec<Argument> = Vec::with_capacity(analysis.args.len());
    for (j, arg) in analysis.args.iter().enumerate() {
        let mut arg = arg.clone();
        if let Some(value) = &arg.value {
            arg.value = Some(substitute_templates(value, lookup).map_err(|message| {
                Built::Spec(SpecError {
                    field: format!("{at}.args[{j}].value"),
                    message,
                })
            })?);
        }
        args.push(arg);
    }
    let experiment_json = serde_json::to_value(experiment).unwrap_or(Value::Null);
    // fieldRef reads the Experiment; podTemplateHashValue has no Stable/Latest here (a Rollout's
    // experiment step resolves those into literal values).
    let sources = ArgumentSources {
        rollout: &experiment_json,
        stable_hash: None,
        latest_hash: None,
    };
    let lists = MetricLists {
        dry_run: &experiment.spec.dry_run,
        measurement_retention: &experiment.spec.measurement_retention,
    };
    let named = [(analysis.template_name.as_str(), &spec)];
    let run_spec = template::build_run_spec(&named, &args, &sources, lists).map_err(|message| {
        Built::Spec(SpecError {
            field: at.clone(),
            message,
        })
    })?;
    let mut run = AnalysisRun::new(&names::analysis_run_name(&name, analysis), run_spec);
    run.metadata.namespace = Some(namespace);
    run.metadata.labels = Some(BTreeMap::from([(
        EXPERIMENT_LABEL.to_string(),
        names::experiment_label(&name),
    )]));
    run.metadata.owner_references = owner_reference(experiment).map(|o| vec![o]);
    Ok(run)
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(CONTROLLER_FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// The ReplicaSet of `spec.templates[index]`: the template's pods with the hash label on the pod
/// template and the selector, owned by the Experiment.
pub fn build_replica_set(
    experiment: &Experiment,
    index: usize,
    name: &str,
    hash: &str,
    replicas: i32,
) -> Option<ReplicaSet> {
    let template = experiment.spec.templates.get(index)?;
    let mut pod_template = template.template.spec();
    let meta = pod_template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut selector = template.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let labels = BTreeMap::from([
        (
            EXPERIMENT_LABEL.to_string(),
            names::experiment_label(&experiment.name_any()),
        ),
        (POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string()),
    ]);
    Some(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: experiment.namespace(),
            labels: Some(labels),
            owner_references: owner_reference(experiment).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: template.min_ready_seconds,
            selector,
            template: Some(pod_template),
        }),
        status: None,
    })
}

/// The Service of `spec.templates[index]`: the ports `service.ports` lists, else the containers'
/// ports, selecting the template's pods by their hash (unique to this Experiment and template).
pub fn build_service(experiment: &Experiment, index: usize, name: &str, hash: &str) -> Option<Service> {
    let template = experiment.spec.templates.get(index)?;
    let listed = template.service.as_ref().map(|s| s.ports.clone()).unwrap_or_default();
    let pod_template = template.template.spec();
    let ports: Vec<ServicePort> = if !listed.is_empty() {
        listed
    } else {
        container_ports(&pod_template)
    };
    let mut selector = template.selector.match_labels.clone().unwrap_or_default();
    selector.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    Some(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: experiment.namespace(),
            labels: Some(BTreeMap::from([(
                EXPERIMENT_LABEL.to_string(),
                names::experiment_label(&experiment.name_any()),
            )])),
            owner_references: owner_reference(experiment).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    })
}

/// One Service port per container port, targeting it.
fn container_ports(pod_template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Vec<ServicePort> {
    pod_template
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .enumerate()
        .map(|(i, port)| ServicePort {
            name: Some(port.name.clone().unwrap_or_else(|| format!("port-{i}"))),
            port: port.container_port,
            target_port: Some(IntOrString::Int(port.container_port)),
            protocol: port.protocol.clone(),
            ..Default::default()
        })
        .collect()
}

async fn apply_action(
    experiment: &Experiment,
    action: &Action,
    built: &BTreeMap<usize, AnalysisRun>,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = experiment.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let merge = PatchParams::default();
    match action {
        Action::CreateReplicaSet {
            template,
            name,
            hash,
            replicas,
        } => {
            if let Some(rs) = build_replica_set(experiment, *template, name, hash, *replicas) {
                write(
                    experiment,
                    format!("creating ReplicaSet {name}"),
                    Some(409),
                    rs_api.create(&create_params(), &rs),
                )
                .await?;
            }
        }
        Action::ScaleReplicaSet { name, replicas } => {
            let patch = json!({"spec": {"replicas": replicas}});
            write(
                experiment,
                format!("scaling ReplicaSet {name} to {replicas}"),
                Some(404),
                rs_api.patch(name, &merge, &Patch::Merge(&patch)),
            )
            .await?;
        }
        Action::CreateService { template, name, hash } => {
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            if let Some(service) = build_service(experiment, *template, name, hash) {
                write(
                    experiment,
                    format!("creating Service {name}"),
                    Some(409),
                    services.create(&create_params(), &service),
                )
                .await?;
            }
        }
        Action::DeleteService { name } => {
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            // Only the Experiment's own: a Service of the same name someone else made stays.
            let uid = experiment.uid().unwrap_or_default();
            let current = write(
                experiment,
                format!("reading Service {name}"),
                None,
                services.get_opt(name),
            )
            .await?
            .flatten();
            if current.is_some_and(|s| owned_by(&s.metadata, &uid)) {
                write(
                    experiment,
                    format!("deleting Service {name}"),
                    Some(404),
                    services.delete(name, &DeleteParams::background()),
                )
                .await?;
            }
        }
        Action::CreateAnalysisRun { analysis, name } => {
            let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
            if let Some(run) = built.get(analysis) {
                write(
                    experiment,
                    format!("creating AnalysisRun {name}"),
                    Some(409),
                    runs.create(&create_params(), run),
                )
                .await?;
            }
        }
        Action::TerminateAnalysisRun { name } => {
            let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"spec": {"terminate": true}});
            write(
                experiment,
                format!("terminating AnalysisRun {name}"),
                Some(404),
                runs.patch(name, &merge, &Patch::Merge(&patch)),
            )
            .await?;
        }
    }
    Ok(())
}

/// Writes the status as a merge patch of what changed; nothing when nothing did.
async fn write_status(experiment: &Experiment, plan: &Plan, ctx: &Context) -> Result<(), Error> {
    let current = experiment.status.clone().unwrap_or_default();
    if current == plan.status {
        return Ok(());
    }
    let old = serde_json::to_value(&current).unwrap_or(Value::Null);
    let new = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
    let diff = merge_diff(&old, &new);
    if diff.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(());
    }
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &experiment.namespace().unwrap_or_default());
    let patch = json!({"status": diff});
    let name = experiment.name_any();
    write(
        experiment,
        "writing status",
        None,
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await?;
    Ok(())
}

async fn publish_events(experiment: &Experiment, plan: &Plan, ctx: &Context) {
    let reference = experiment.object_ref(&());
    for planned in &plan.events {
        let event = Event {
            type_: if planned.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: planned.reason.to_string(),
            note: Some(planned.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // Best effort, bounded: a failure to record an event must not fail the Experiment.
        match tokio::time::timeout(API_TIMEOUT, ctx.recorder.publish(&event, &reference)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, reason = planned.reason, "could not record event"),
            Err(_) => tracing::debug!(reason = planned.reason, "recording an event timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::fixtures::experiment;

    #[test]
    fn replica_sets_and_services_select_the_template_pods_by_hash_and_are_owned() {
        let mut e = experiment("exp", &["canary"]);
        e.spec.templates[0].service = Some(Default::default());
        let rs = build_replica_set(&e, 0, "exp-canary", "h1", 2).unwrap();
        let spec = rs.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.selector.match_labels.unwrap()[POD_TEMPLATE_HASH_LABEL], "h1");
        let pod_labels = spec.template.unwrap().metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels[POD_TEMPLATE_HASH_LABEL], "h1");
        assert_eq!(pod_labels["app"], "canary");
        let owner = &rs.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Experiment", Some(true)));
        let service = build_service(&e, 0, "exp-canary", "h1").unwrap();
        let service_spec = service.spec.unwrap();
        assert_eq!(service_spec.selector.unwrap()[POD_TEMPLATE_HASH_LABEL], "h1");
        assert_eq!(service_spec.ports.unwrap()[0].port, 8080);
        assert!(build_replica_set(&e, 5, "x", "h", 1).is_none());
        // Listed ports (Argo's service.ports) replace the containers'.
        let listed = ServicePort {
            name: Some("web".into()),
            port: 80,
            target_port: Some(IntOrString::String("http".into())),
            ..Default::default()
        };
        e.spec.templates[0].service.as_mut().unwrap().ports = vec![listed.clone()];
        let service = build_service(&e, 0, "exp-canary", "h1").unwrap();
        assert_eq!(service.spec.unwrap().ports.unwrap(), vec![listed]);
    }
}
