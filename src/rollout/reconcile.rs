//! The Rollout reconciler: observe (from the shared caches), plan (pure), apply the plan's actions,
//! write status only when it changed, record events, and requeue exactly when a timer ends.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::pod_metadata::PodMetadata;
use crate::api::rollout::{Rollout, RolloutStatus};
use crate::events::{Event, EventType, Recorder};
use crate::merge_patch::merge_diff;
use crate::observe::Observer;
use crate::rollout::coalesce::CountUpdates;
use crate::rollout::expectations::Expectations;
use crate::rollout::hash::POD_TEMPLATE_HASH_LABEL;
use crate::rollout::owned::OwnedIndex;
use crate::rollout::plan::{
    self, Action, AnalysisKind, ObservedAnalysisRun, ObservedExperiment, ObservedPod, ObservedReplicaSet,
    ObservedService, Plan,
};
use crate::rollout::pod_metadata;
use crate::rollout::status::only_counts_changed;
use crate::rollout::validate::SpecError;
use crate::traffic::{ManagedRoute, RouteTarget, RouterError, TrafficRouter, router_for};

pub use crate::api::keys::CONTROLLER_FIELD_MANAGER as FIELD_MANAGER;
pub use crate::api::keys::{ANALYSIS_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL};

/// The `ANALYSIS_LABEL` values of blue-green's promotion analyses.
pub const PRE_PROMOTION: &str = "pre-promotion";
pub const POST_PROMOTION: &str = "post-promotion";

/// Why a reconcile failed; the error policy requeues with backoff and counts it by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rollout {namespace}/{name}: {action}: {source}")]
    Kube {
        namespace: String,
        name: String,
        action: String,
        source: kube::Error,
    },
    #[error("rollout {namespace}/{name}: {message}")]
    Analysis {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("rollout {namespace}/{name}: rollbackOnAbort: {message}")]
    Rollback {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("rollout {namespace}/{name}: traffic router: {message}")]
    Traffic {
        namespace: String,
        name: String,
        message: String,
    },
    /// A bug met this Rollout (see `controller::isolate`).
    #[error("rollout {namespace}/{name}: reconcile panicked: {message}")]
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
            Error::Analysis { .. } => "analysis",
            Error::Traffic { .. } => "traffic",
            Error::Rollback { .. } => "rollback",
            Error::Panicked { .. } => "panic",
        }
    }

    pub fn panicked(rollout: &Rollout, message: String) -> Error {
        Error::Panicked {
            namespace: rollout.namespace().unwrap_or_default(),
            name: rollout.name_any(),
            message,
        }
    }
}

/// What every reconcile shares: the client, the caches the controller keeps, metrics and events.
pub struct Context {
    pub client: Client,
    pub replica_sets: ReplicaSetIndex,
    pub analysis_runs: AnalysisRunIndex,
    /// The Experiments of experiment steps.
    pub experiments: ExperimentIndex,
    pub metrics: Arc<dyn Observer>,
    pub recorder: Recorder,
    /// Creates the AnalysisRun a plan asks for (templates are read here, at the I/O edge).
    pub analysis: Arc<dyn AnalysisRunFactory>,
    /// Our writes the caches may not show yet.
    pub expectations: Expectations,
    /// Count-only status changes held back for a moment.
    pub count_updates: CountUpdates,
}

impl Context {
    /// Drops everything kept about a Rollout that is gone: its metrics series, held counts and
    /// expectations (with its `uid`, also of ReplicaSets created for it that the cache never showed).
    pub fn forget_rollout(&self, namespace: &str, name: &str, uid: Option<&str>) {
        self.metrics.forget_rollout(namespace, name);
        self.count_updates.release(namespace, name);
        self.expectations.forget_rollout(namespace, name, uid);
    }

    /// Drops what is remembered of our writes to a ReplicaSet that is gone.
    pub fn forget_replica_set(&self, namespace: &str, name: &str) {
        self.expectations.forget_replica_set(namespace, name);
    }

    /// How many objects each per-object memory holds (tests look for leaks with it).
    pub fn per_object_sizes(&self) -> Vec<(&'static str, usize)> {
        let mut sizes = self.expectations.sizes().to_vec();
        sizes.push(("held status counts", self.count_updates.len()));
        sizes
    }
}

/// Builds AnalysisRuns from a Rollout's analysis references (implemented by the analysis engine).
#[async_trait::async_trait]
pub trait AnalysisRunFactory: Send + Sync {
    /// The AnalysisRun for `analysis` of `rollout`, or a message saying what is wrong (a missing
    /// template, an unknown argument).
    async fn build(&self, rollout: &Rollout, request: &AnalysisRequest) -> Result<AnalysisRun, String>;
    /// Problems with the templates a Rollout references, as spec errors (checked while it rolls out).
    async fn check_references(&self, rollout: &Rollout) -> Vec<SpecError>;
}

/// One AnalysisRun the plan wants.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    pub name: String,
    pub kind: AnalysisKind,
    pub hash: String,
    pub stable_hash: Option<String>,
    pub analysis: crate::api::rollout::RolloutAnalysis,
}

fn kube_error(rollout: &Rollout, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error + '_ {
    let action = action.into();
    move |source| Error::Kube {
        namespace: rollout.namespace().unwrap_or_default(),
        name: rollout.name_any(),
        action,
        source,
    }
}

/// Reconciles one Rollout.
pub async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    if rollout.meta().deletion_timestamp.is_some() {
        ctx.forget_rollout(&namespace, &name, rollout.uid().as_deref());
        return Ok(Requeue::await_change());
    }
    let now = Utc::now();
    // Plan from what we last wrote when the cached Rollout has not seen it yet.
    let rollout = match ctx
        .expectations
        .status_for(&namespace, &name, rollout.metadata.resource_version.as_deref())
    {
        Some(status) => {
            let mut current = (*rollout).clone();
            current.status = Some(status);
            Arc::new(current)
        }
        None => rollout,
    };
    // workloadRef: plan with the Deployment's template in spec.template.
    let mut workload_errors = Vec::new();
    let (rollout, deployment) = resolve_workload(&ctx.client, rollout, &mut workload_errors).await?;
    let uid = rollout.uid().unwrap_or_default();
    let mut replica_sets = ctx.replica_sets.owned_by(&namespace, &uid);
    let versions: std::collections::HashMap<String, String> = replica_sets
        .iter()
        .map(|rs| rs.name.clone())
        .chain(ctx.expectations.pending_creates(&namespace))
        .filter_map(|name| Some((name.clone(), ctx.replica_sets.resource_version(&namespace, &name)?)))
        .collect();
    ctx.expectations
        .overlay_replica_sets(&namespace, &uid, &mut replica_sets, &versions, Instant::now());
    let analysis_runs = ctx.analysis_runs.owned_by(&namespace, &uid);
    let experiments = ctx.experiments.owned_by(&namespace, &uid);
    let pods = if restart_pending(&rollout, now) {
        observe_pods(&ctx.client, &rollout, &replica_sets).await?
    } else {
        vec![]
    };
    let mid_rollout = rollout
        .status
        .as_ref()
        .is_none_or(|s| s.stable_rs != s.current_pod_hash);
    let mut reference_errors = if mid_rollout {
        ctx.analysis.check_references(&rollout).await
    } else {
        vec![]
    };
    let resolved = workload_errors.is_empty();
    reference_errors.extend(workload_errors);
    let services = observe_services(&ctx.client, &rollout, &mut reference_errors).await?;
    let router = Router::for_rollout(&rollout, &experiments);
    let traffic = match &router {
        Some(router) => {
            router
                .observe(&ctx.client, &rollout, mid_rollout, &mut reference_errors)
                .await?
        }
        None => None,
    };
    let observed = plan::Observed {
        rollout: &rollout,
        replica_sets: &replica_sets,
        pods: &pods,
        analysis_runs: &analysis_runs,
        experiments: &experiments,
        reference_errors,
        traffic,
        services,
        now,
    };
    let plan = plan::plan(&observed);
    // Managed routes (setHeaderRoute / setMirrorRoute) first: on abort they go before the weight does.
    let mut result = match (&router, plan::routes::managed_routes(&rollout, &plan.status)) {
        (Some(router), Some(routes)) => router.set_routes(&ctx.client, &rollout, &routes).await,
        _ => Ok(None),
    };
    if result.is_ok() {
        result = apply(&rollout, &plan, router.as_ref(), &ctx).await;
    }
    if result.is_ok() {
        result = sync_pod_metadata(&rollout, &plan, &replica_sets, &ctx)
            .await
            .and(result);
    }
    if result.is_ok()
        && resolved
        && let Some(deployment) = &deployment
    {
        result = scale_down_workload(&rollout, &plan, deployment, &ctx).await.and(result);
    }
    let status = &plan.status;
    ctx.metrics.observe_rollout(
        &namespace,
        &name,
        status.phase.map(|p| format!("{p:?}")).as_deref().unwrap_or("Unknown"),
        i64::from(status.current_step_index.unwrap_or(0)),
        i64::from(status.canary_weight.unwrap_or(0)),
    );
    if plan.aborted_now {
        ctx.metrics.count_abort(&namespace, &name);
    }
    ctx.metrics.count_reconcile("rollout", started.elapsed());
    let held = result?;
    let requeue_after = match (plan.requeue_after, held) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(match requeue_after {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    })
}

pub fn error_policy(rollout: Arc<Rollout>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(rollout = %rollout.name_any(), error = %error, "reconcile failed");
    ctx.metrics.count_reconcile_error("rollout", error.metric_label());
    Requeue::requeue(Duration::from_secs(5))
}

fn parse_time(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<DateTime<Utc>> {
    time.and_then(|t| DateTime::parse_from_rfc3339(&t.0.to_string()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The ReplicaSets of every Rollout, kept as the plan sees them.
pub type ReplicaSetIndex = OwnedIndex<ReplicaSet, ObservedReplicaSet>;
/// The AnalysisRuns of every Rollout, kept as the plan sees them.
pub type AnalysisRunIndex = OwnedIndex<AnalysisRun, ObservedAnalysisRun>;

/// The Experiments of every Rollout, kept as the plan sees them.
pub type ExperimentIndex = OwnedIndex<Experiment, ObservedExperiment>;

pub fn experiment_index() -> ExperimentIndex {
    OwnedIndex::new(observed_experiment)
}

/// An Experiment as the plan sees it; None without the step and hash labels (not a Rollout's step's).
fn observed_experiment(experiment: &Experiment) -> Option<ObservedExperiment> {
    let labels = experiment.labels();
    let status = experiment.status.as_ref();
    Some(ObservedExperiment {
        name: experiment.name_any(),
        hash: labels.get(POD_TEMPLATE_HASH_LABEL)?.clone(),
        step: labels.get(crate::api::keys::EXPERIMENT_STEP_LABEL)?.parse().ok()?,
        phase: status.and_then(|s| s.phase).unwrap_or_default(),
        message: status.and_then(|s| s.message.clone()),
        terminated: experiment.spec.is_terminated(),
        created_at: parse_time(experiment.metadata.creation_timestamp.as_ref()),
        template_services: status
            .iter()
            .flat_map(|s| &s.template_statuses)
            .filter_map(|t| Some((t.name.clone(), t.service_name.clone()?)))
            .collect(),
    })
}

pub fn replica_set_index() -> ReplicaSetIndex {
    OwnedIndex::new(observed_replica_set)
}

pub fn analysis_run_index() -> AnalysisRunIndex {
    OwnedIndex::new(observed_analysis_run)
}

/// A ReplicaSet as the plan sees it; None without the hash label (not one of Sluice's).
fn observed_replica_set(rs: &ReplicaSet) -> Option<ObservedReplicaSet> {
    let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
    let status = rs.status.as_ref();
    Some(ObservedReplicaSet {
        name: rs.name_any(),
        hash,
        revision: rs
            .annotations()
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        spec_replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        pods: status.map_or(0, |s| s.replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available: status.and_then(|s| s.available_replicas).unwrap_or(0),
        git_revision: rs.annotations().get(plan::GIT_REVISION_ANNOTATION).cloned(),
        created_at: parse_time(rs.metadata.creation_timestamp.as_ref()),
        deleting: rs.metadata.deletion_timestamp.is_some(),
        scale_down_at: rs
            .annotations()
            .get(plan::SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc)),
        pod_metadata: crate::rollout::pod_metadata::recorded(rs.annotations()),
    })
}

/// An AnalysisRun as the plan sees it; None without the analysis and hash labels (not a Rollout's).
fn observed_analysis_run(run: &AnalysisRun) -> Option<ObservedAnalysisRun> {
    let labels = run.labels();
    let kind = match labels.get(ANALYSIS_LABEL).map(String::as_str) {
        Some("background") => AnalysisKind::Background,
        Some(PRE_PROMOTION) => AnalysisKind::PrePromotion,
        Some(POST_PROMOTION) => AnalysisKind::PostPromotion,
        Some(step) => AnalysisKind::Step(step.strip_prefix("step-")?.parse().ok()?),
        None => return None,
    };
    let status = run.status.as_ref();
    Some(ObservedAnalysisRun {
        name: run.name_any(),
        hash: labels.get(POD_TEMPLATE_HASH_LABEL)?.clone(),
        kind,
        phase: status.and_then(|s| s.phase).unwrap_or_default(),
        message: status.and_then(|s| s.message.clone()),
        terminated: run.spec.is_terminated(),
        created_at: parse_time(run.metadata.creation_timestamp.as_ref()),
    })
}

/// canaryService and stableService: their selector's hash, or a spec error when a Service is missing
/// or already steered by another Rollout (two Rollouts moving one selector would fight).
async fn observe_services(
    client: &Client,
    rollout: &Rollout,
    errors: &mut Vec<SpecError>,
) -> Result<Vec<ObservedService>, Error> {
    let canary = rollout.spec.canary();
    let namespace = rollout.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let mut observed = Vec::new();
    let mut services = vec![
        ("canary.canaryService", canary.canary_service),
        ("canary.stableService", canary.stable_service),
    ];
    if let Some(blue_green) = rollout.spec.blue_green() {
        services.push(("blueGreen.activeService", Some(blue_green.active_service.clone())));
        services.push(("blueGreen.previewService", blue_green.preview_service.clone()));
    }
    for (field, name) in services {
        let Some(name) = name else { continue };
        let field = format!("spec.strategy.{field}");
        match api
            .get_opt(&name)
            .await
            .map_err(kube_error(rollout, format!("reading Service {name}")))?
        {
            None => errors.push(SpecError {
                field,
                message: format!("Service {name:?} not found in namespace {namespace:?}"),
            }),
            Some(service) => {
                let owner = service.annotations().get(ROLLOUT_LABEL);
                if let Some(owner) = owner.filter(|o| **o != rollout.name_any()) {
                    errors.push(SpecError {
                        field,
                        message: format!("Service {name:?} is already used by Rollout {owner:?}"),
                    });
                    continue;
                }
                let selector_hash = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
                    .cloned();
                observed.push(ObservedService { name, selector_hash });
            }
        }
    }
    Ok(observed)
}

fn restart_pending(rollout: &Rollout, now: DateTime<Utc>) -> bool {
    let Some(restart_at) = rollout.spec.restart_at else {
        return false;
    };
    restart_at <= now
        && rollout
            .status
            .as_ref()
            .and_then(|s| s.restarted_at)
            .is_none_or(|done| done < restart_at)
}

/// Pods are read only while a restart is pending (they are not cached: most reconciles never need them).
async fn observe_pods(
    client: &Client,
    rollout: &Rollout,
    replica_sets: &[ObservedReplicaSet],
) -> Result<Vec<ObservedPod>, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let hashes: Vec<&str> = replica_sets.iter().map(|rs| rs.hash.as_str()).collect();
    if hashes.is_empty() {
        return Ok(vec![]);
    }
    let selector = format!("{POD_TEMPLATE_HASH_LABEL} in ({})", hashes.join(","));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_error(rollout, "listing pods"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(ObservedPod {
                name: pod.name_any(),
                hash: pod.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone(),
                created_at: parse_time(pod.metadata.creation_timestamp.as_ref())?,
                ready,
            })
        })
        .collect())
}

fn owner_reference(rollout: &Rollout) -> OwnerReference {
    rollout
        .controller_owner_ref(&())
        .expect("a stored Rollout has a name and uid")
}

/// The ReplicaSet for the current template: hash label on selector and pod template, revision and
/// Git revision annotations, owned by the Rollout.
pub fn build_replica_set(
    rollout: &Rollout,
    name: &str,
    hash: &str,
    revision: i64,
    replicas: i32,
    git_revision: Option<&str>,
) -> ReplicaSet {
    let mut template = rollout.spec.template.spec();
    let template_meta = template.metadata.get_or_insert_with(Default::default);
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    template_meta.labels = Some(labels.clone());
    let mut selector: LabelSelector = rollout.spec.selector.clone();
    let mut match_labels = selector.match_labels.clone().unwrap_or_default();
    match_labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    selector.match_labels = Some(match_labels);
    let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]);
    if let Some(git) = git_revision {
        annotations.insert(plan::GIT_REVISION_ANNOTATION.into(), git.into());
    }
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(rollout)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// A write whose failure with `code` is fine: 404 for deleting what is gone, 409 for creating what a
/// previous reconcile (whose status write was lost) already created.
fn tolerate<T>(result: Result<T, kube::Error>, code: u16) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == code => Ok(()),
        Err(e) => Err(e),
    }
}

/// With a valid workloadRef, the Rollout with the Deployment's template (and selector, when it sets
/// none) and the Deployment read; problems (missing Deployment, template next to the reference) go to
/// `errors` and leave the Rollout as written. Read live, not cached: only the Deployment's metadata
/// is watched, and the template is needed only here.
async fn resolve_workload(
    client: &Client,
    rollout: Arc<Rollout>,
    errors: &mut Vec<SpecError>,
) -> Result<(Arc<Rollout>, Option<Deployment>), Error> {
    let Some(reference) = &rollout.spec.workload_ref else {
        return Ok((rollout, None));
    };
    // An invalid reference is reported by validation; nothing to read.
    if !crate::rollout::workload_ref::check_reference(reference).is_empty() {
        return Ok((rollout, None));
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let name = reference.name.clone();
    let deployment = deployments
        .get_opt(&name)
        .await
        .map_err(kube_error(&rollout, format!("reading Deployment {name}")))?;
    match crate::rollout::workload_ref::resolve(&rollout, deployment.as_ref()) {
        Ok(resolved) => Ok((Arc::new(resolved), deployment)),
        Err(problems) => {
            errors.extend(problems);
            Ok((rollout, None))
        }
    }
}

/// workloadRef.scaleDown: scales the referenced Deployment as the mode says (patch of its scale
/// subresource, field manager `sluice`), never while the spec is invalid.
async fn scale_down_workload(
    rollout: &Rollout,
    plan: &Plan,
    deployment: &Deployment,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(reference) = &rollout.spec.workload_ref else {
        return Ok(());
    };
    let invalid = crate::api::conditions::find(&plan.status.conditions, crate::api::conditions::INVALID_SPEC)
        .is_some_and(|c| c.is_true());
    let current = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let target = crate::rollout::workload_ref::deployment_replicas(
        reference.scale_down_or_default(),
        &plan.status,
        rollout.spec.replicas_or_default(),
        current,
    );
    let Some(target) = target.filter(|_| !invalid) else {
        return Ok(());
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patch = json!({"spec": {"replicas": target}});
    let name = &reference.name;
    tolerate(
        deployments
            .patch_scale(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
        404,
    )
    .map_err(kube_error(rollout, format!("scaling Deployment {name} to {target}")))?;
    let event = Event {
        type_: EventType::Normal,
        reason: "ScaledDownWorkload".into(),
        note: Some(format!(
            "workloadRef.scaleDown {}: Deployment {name} scaled from {current} to {target}",
            serde_json::to_value(reference.scale_down_or_default())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
        tracing::debug!(error = %e, "could not record event");
    }
    Ok(())
}

/// The canary strategy's roles for ephemeral pod metadata: the canary (while it differs from stable),
/// then stable.
fn roles<'a>(rollout: &'a Rollout, status: &'a RolloutStatus) -> Vec<(&'a str, Option<&'a PodMetadata>)> {
    if let Some(blue_green) = rollout.spec.blue_green() {
        // The ReplicaSets the Services select, active first (a ReplicaSet both select is active).
        let selectors = status.blue_green.as_ref();
        let active = selectors.and_then(|s| s.active_selector.as_deref());
        let preview = selectors.and_then(|s| s.preview_selector.as_deref());
        let mut roles = Vec::new();
        roles.extend(active.map(|hash| (hash, blue_green.active_metadata.as_ref())));
        roles.extend(preview.map(|hash| (hash, blue_green.preview_metadata.as_ref())));
        return roles;
    }
    let Some(canary) = rollout.spec.strategy.canary.as_ref() else {
        return vec![];
    };
    let stable = status.stable_rs.as_deref();
    let mut roles = Vec::new();
    if let Some(current) = status.current_pod_hash.as_deref().filter(|h| Some(*h) != stable) {
        roles.push((current, canary.canary_metadata.as_ref()));
    }
    if let Some(stable) = stable {
        roles.push((stable, canary.stable_metadata.as_ref()));
    }
    roles
}

/// A new ReplicaSet: its role's metadata (recorded on it), and for the new version the anti-affinity
/// against the stable pods (canary and blue-green alike).
fn add_pod_extras(rollout: &Rollout, status: &RolloutStatus, hash: &str, rs: &mut ReplicaSet) {
    let anti_affinity = match (&rollout.spec.strategy.canary, rollout.spec.blue_green()) {
        (Some(canary), _) => canary.anti_affinity.as_ref(),
        (None, Some(blue_green)) => blue_green.anti_affinity.as_ref(),
        (None, None) => None,
    };
    let Some(template) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) else {
        return;
    };
    let role = roles(rollout, status)
        .into_iter()
        .find(|(role_hash, _)| *role_hash == hash)
        .and_then(|(_, metadata)| metadata);
    if let Some(metadata) = role.filter(|m| !m.is_empty()) {
        pod_metadata::apply_to_template(template, metadata);
        let record = serde_json::to_string(metadata).unwrap_or_default();
        rs.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(pod_metadata::POD_METADATA_ANNOTATION.into(), record);
    }
    let stable = status.stable_rs.as_deref().filter(|stable| *stable != hash);
    if let (Some(anti_affinity), Some(stable)) = (anti_affinity, stable) {
        crate::rollout::anti_affinity::inject(template, anti_affinity, stable);
    }
}

/// Moves ephemeral pod metadata to where the roles now are (promotion: canary metadata off, stable
/// on), on each ReplicaSet's template and its existing pods. Not while the spec is invalid.
async fn sync_pod_metadata(
    rollout: &Rollout,
    plan: &Plan,
    replica_sets: &[ObservedReplicaSet],
    ctx: &Context,
) -> Result<(), Error> {
    let invalid = crate::api::conditions::find(&plan.status.conditions, crate::api::conditions::INVALID_SPEC)
        .is_some_and(|c| c.is_true());
    if invalid {
        return Ok(());
    }
    let changes = pod_metadata::changes(replica_sets, &roles(rollout, &plan.status));
    let namespace = rollout.namespace().unwrap_or_default();
    let merge = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for change in changes {
        let name = &change.replica_set;
        let patch = pod_metadata::replica_set_patch(&change);
        tolerate(rs_api.patch(name, &merge, &Patch::Merge(&patch)).await, 404).map_err(kube_error(
            rollout,
            format!("updating the pod metadata of ReplicaSet {name}"),
        ))?;
        // The Rollout's own labels too: two Rollouts with one template share a hash.
        let selector = rollout
            .spec
            .selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!("{POD_TEMPLATE_HASH_LABEL}={}", change.hash)])
            .collect::<Vec<_>>()
            .join(",");
        let listed = pods
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_error(rollout, format!("listing the pods of ReplicaSet {name}")))?;
        let patch = json!({"metadata": pod_metadata::metadata_patch(&change.from, &change.to)});
        for pod in listed.items {
            let pod_name = pod.name_any();
            tolerate(pods.patch(&pod_name, &merge, &Patch::Merge(&patch)).await, 404)
                .map_err(kube_error(rollout, format!("updating the metadata of pod {pod_name}")))?;
        }
    }
    Ok(())
}

/// Applies the plan: actions in order, then status (only when it changed), then events. Returns how
/// long a held-back count-only status change may still wait.
async fn apply(
    rollout: &Rollout,
    plan: &Plan,
    router: Option<&Router>,
    ctx: &Context,
) -> Result<Option<Duration>, Error> {
    for action in &plan.actions {
        apply_action(rollout, plan, action, router, ctx).await?;
    }
    let held = write_status(rollout, &plan.status, ctx).await?;
    publish_events(rollout, plan, ctx).await;
    Ok(held)
}

/// The field manager on every create.
fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// One action of the plan, against the API.
async fn apply_action(
    rollout: &Rollout,
    plan: &Plan,
    action: &Action,
    router: Option<&Router>,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let merge = PatchParams::default();
    match action {
        Action::CreateReplicaSet {
            name,
            hash,
            revision,
            replicas,
            git_revision,
        } => {
            let mut rs = build_replica_set(rollout, name, hash, *revision, *replicas, git_revision.as_deref());
            add_pod_extras(rollout, &plan.status, hash, &mut rs);
            create_replica_set(rollout, &replica_sets, &rs, ctx).await?;
        }
        Action::ScaleReplicaSet { name, replicas } => {
            let patch = json!({"spec": {"replicas": replicas}});
            let scaled = replica_sets
                .patch(name, &merge, &Patch::Merge(&patch))
                .await
                .map_err(kube_error(rollout, format!("scaling ReplicaSet {name}")))?;
            ctx.expectations
                .scaled(&namespace, name, *replicas, scaled.metadata.resource_version.as_deref());
        }
        Action::SetRevision { name, revision } => {
            let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision.to_string()}}});
            replica_sets
                .patch(name, &merge, &Patch::Merge(&patch))
                .await
                .map_err(kube_error(rollout, format!("annotating ReplicaSet {name}")))?;
        }
        Action::DeleteReplicaSet { name } => {
            tolerate(replica_sets.delete(name, &DeleteParams::background()).await, 404)
                .map_err(kube_error(rollout, format!("deleting ReplicaSet {name}")))?;
        }
        Action::DeletePod { name } => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            tolerate(pods.delete(name, &DeleteParams::default()).await, 404)
                .map_err(kube_error(rollout, format!("restarting pod {name}")))?;
        }
        Action::CreateAnalysisRun {
            name,
            kind,
            hash,
            analysis,
        } => {
            let request = AnalysisRequest {
                name: name.clone(),
                kind: *kind,
                hash: hash.clone(),
                stable_hash: plan.status.stable_rs.clone(),
                analysis: analysis.clone(),
            };
            create_analysis_run(rollout, &request, ctx).await?;
        }
        Action::SetServiceSelector { service, hash } => {
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({
                "metadata": {"annotations": {ROLLOUT_LABEL: rollout.name_any()}},
                "spec": {"selector": {POD_TEMPLATE_HASH_LABEL: hash}},
            });
            services
                .patch(service, &merge, &Patch::Merge(&patch))
                .await
                .map_err(kube_error(rollout, format!("pointing Service {service} at {hash}")))?;
        }
        Action::RestoreStableTemplate { replica_set } => {
            restore_template(&ctx.client, rollout, &replica_sets, replica_set).await?;
        }
        Action::SetScaleDownDeadline { name, at } => {
            let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let patch = json!({"metadata": {"annotations": {plan::SCALE_DOWN_DEADLINE_ANNOTATION: at}}});
            replica_sets
                .patch(name, &merge, &Patch::Merge(&patch))
                .await
                .map_err(kube_error(rollout, format!("annotating ReplicaSet {name}")))?;
        }
        Action::SetCanaryWeight { weight } => {
            let Some(router) = router else { return Ok(()) };
            router
                .router
                .set_weight(&ctx.client, &router.target, *weight)
                .await
                .map_err(|e| router_error(rollout, e))?;
        }
        Action::DeleteAnalysisRun { name } => {
            let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
            tolerate(runs.delete(name, &DeleteParams::background()).await, 404)
                .map_err(kube_error(rollout, format!("deleting AnalysisRun {name}")))?;
        }
        Action::CreateExperiment {
            name,
            step,
            hash,
            stable_replica_set,
            stable_hash,
            experiment,
        } => {
            // The stable template is read from the API: the cache drops templates.
            let stable = replica_sets
                .get(stable_replica_set)
                .await
                .map_err(kube_error(rollout, format!("reading ReplicaSet {stable_replica_set}")))?;
            let annotations = stable.metadata.annotations.clone().unwrap_or_default();
            let template = stable.spec.and_then(|s| s.template).unwrap_or_default();
            let source = crate::rollout::experiments::ExperimentSource {
                name,
                step: *step,
                hash,
                stable_hash,
                stable_template: crate::rollout::experiments::stable_template(template, &annotations),
            };
            let built =
                crate::rollout::experiments::build(rollout, source, experiment).map_err(|message| Error::Analysis {
                    namespace: namespace.clone(),
                    name: rollout.name_any(),
                    message: format!("creating Experiment {name}: {message}"),
                })?;
            let experiments: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace);
            tolerate(experiments.create(&create_params(), &built).await, 409)
                .map_err(kube_error(rollout, format!("creating Experiment {name}")))?;
        }
        Action::TerminateExperiment { name } => {
            let experiments: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"spec": {"terminate": true}});
            tolerate(experiments.patch(name, &merge, &Patch::Merge(&patch)).await, 404)
                .map_err(kube_error(rollout, format!("terminating Experiment {name}")))?;
        }
        Action::DeleteExperiment { name } => {
            let experiments: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace);
            tolerate(experiments.delete(name, &DeleteParams::background()).await, 404)
                .map_err(kube_error(rollout, format!("deleting Experiment {name}")))?;
        }
        Action::TerminateAnalysisRun { name } => {
            let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"spec": {"terminate": true}});
            tolerate(runs.patch(name, &merge, &Patch::Merge(&patch)).await, 404)
                .map_err(kube_error(rollout, format!("terminating AnalysisRun {name}")))?;
        }
    }
    Ok(())
}

/// Creates the canary's ReplicaSet and remembers it until the cache shows it.
async fn create_replica_set(
    rollout: &Rollout,
    replica_sets: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    ctx: &Context,
) -> Result<(), Error> {
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    match replica_sets.create(&create_params(), rs).await {
        Ok(created) => {
            // Until the cache shows it, plan as if it did: no second create (409).
            if let (Some(owner), Some(observed)) = (rollout.uid(), observed_replica_set(&created)) {
                let namespace = rollout.namespace().unwrap_or_default();
                ctx.expectations.created(&namespace, &owner, observed, Instant::now());
            }
            Ok(())
        }
        // A previous reconcile (whose status write was lost) already created it.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(kube_error(rollout, format!("creating ReplicaSet {name}"))(e)),
    }
}

/// Builds the AnalysisRun a step or the background analysis asks for and creates it (409: it exists).
async fn create_analysis_run(rollout: &Rollout, request: &AnalysisRequest, ctx: &Context) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = &request.name;
    let run = ctx
        .analysis
        .build(rollout, request)
        .await
        .map_err(|message| Error::Analysis {
            namespace: namespace.clone(),
            name: rollout.name_any(),
            message: format!("creating AnalysisRun {name}: {message}"),
        })?;
    let runs: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    tolerate(runs.create(&create_params(), &run).await, 409)
        .map_err(kube_error(rollout, format!("creating AnalysisRun {name}")))?;
    Ok(())
}

/// Replaces spec.template with the template of `replica_set` (read from the API: the cache drops
/// templates), without the hash label the controller added, so it hashes as that revision did.
async fn restore_template(
    client: &Client,
    rollout: &Rollout,
    replica_sets: &Api<ReplicaSet>,
    replica_set: &str,
) -> Result<(), Error> {
    let rs = replica_sets
        .get(replica_set)
        .await
        .map_err(kube_error(rollout, format!("reading ReplicaSet {replica_set}")))?;
    let Some(mut template) = rs.spec.and_then(|s| s.template) else {
        return Err(Error::Rollback {
            namespace: rollout.namespace().unwrap_or_default(),
            name: rollout.name_any(),
            message: format!("ReplicaSet {replica_set} has no pod template to restore"),
        });
    };
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    // Nor the role's ephemeral metadata it carries now.
    if let Some(carried) = rs.metadata.annotations.as_ref().and_then(pod_metadata::recorded) {
        pod_metadata::strip_from_template(&mut template, &carried);
    }
    // A JSON patch replaces the whole template (a merge patch would keep labels the stable one lacks).
    // Sent by hand: kube's Patch::Json wants its own json-patch major version.
    let namespace = rollout.namespace().unwrap_or_default();
    let url = format!(
        "{}/{}?fieldManager={FIELD_MANAGER}",
        Rollout::url_path(&(), Some(&namespace)),
        rollout.name_any()
    );
    let body = serde_json::to_vec(&crate::rollout::restore::undo_patch(&template)).map_err(kube::Error::SerdeError);
    let action = format!("restoring the template of ReplicaSet {replica_set}");
    let request = body.and_then(|body| {
        http::Request::patch(url)
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(body)
            .map_err(kube::Error::HttpError)
    });
    let request = request.map_err(kube_error(rollout, action.clone()))?;
    client
        .request::<Rollout>(request)
        .await
        .map_err(kube_error(rollout, action))?;
    Ok(())
}

/// The Rollout's traffic router and what it routes (the Services, and the revisions for subsets).
pub struct Router {
    router: Box<dyn TrafficRouter>,
    target: RouteTarget,
}

impl Router {
    fn for_rollout(rollout: &Rollout, experiments: &[ObservedExperiment]) -> Option<Router> {
        let router = router_for(rollout.spec.canary().traffic_routing.as_ref()?)?;
        let mut target = RouteTarget::from_rollout(rollout)?;
        target.experiment_backends = crate::rollout::experiments::running_backends(rollout, experiments);
        let status = rollout.status.clone().unwrap_or_default();
        target.stable_hash = status.stable_rs.clone();
        target.canary_hash = Some(plan::current_hash(rollout)).filter(|h| Some(h) != status.stable_rs.as_ref());
        Some(Router { router, target })
    }

    /// Makes the routing objects carry exactly `routes` of the Rollout's managedRoutes.
    async fn set_routes(
        &self,
        client: &Client,
        rollout: &Rollout,
        routes: &[ManagedRoute],
    ) -> Result<Option<Duration>, Error> {
        self.router
            .set_routes(client, &self.target, routes)
            .await
            .map_err(|e| router_error(rollout, e))?;
        Ok(None)
    }

    /// The router's weight and readiness; while rolling out, also whether its objects are usable.
    async fn observe(
        &self,
        client: &Client,
        rollout: &Rollout,
        check: bool,
        errors: &mut Vec<SpecError>,
    ) -> Result<Option<plan::ObservedTraffic>, Error> {
        if check {
            let problems = self
                .router
                .check(client, &self.target)
                .await
                .map_err(|e| router_error(rollout, e))?;
            if !problems.is_empty() {
                errors.extend(problems);
                return Ok(None);
            }
        }
        match self.router.observe(client, &self.target).await {
            Ok(state) => Ok(Some(plan::ObservedTraffic {
                canary_weight: state.canary_weight,
                ready: state.ready,
            })),
            Err(RouterError::Invalid(problem)) => {
                errors.push(problem);
                Ok(None)
            }
            Err(e) => Err(router_error(rollout, e)),
        }
    }
}

fn router_error(rollout: &Rollout, error: RouterError) -> Error {
    Error::Traffic {
        namespace: rollout.namespace().unwrap_or_default(),
        name: rollout.name_any(),
        message: error.to_string(),
    }
}

/// Writes status as a merge patch of only what changed, so fields a user wrote concurrently
/// (`sluice abort` between our read and our write) are kept. A change of pod counts alone waits up to
/// `COUNTS_WINDOW` (returned: look again then) and goes out with the next write; a step, phase, weight
/// or condition change is written at once, with whatever counts are current.
async fn write_status(rollout: &Rollout, status: &RolloutStatus, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    let current = rollout.status.clone().unwrap_or_default();
    if current == *status {
        ctx.count_updates.release(&namespace, &name);
        return Ok(None);
    }
    if only_counts_changed(&current, status)
        && let Some(wait) = ctx.count_updates.hold(&namespace, &name, Instant::now())
    {
        return Ok(Some(wait));
    }
    let old = serde_json::to_value(current).unwrap_or(Value::Null);
    let new = serde_json::to_value(status).unwrap_or(Value::Null);
    let diff = merge_diff(&old, &new);
    if diff.as_object().is_some_and(|o| o.is_empty()) {
        ctx.count_updates.release(&namespace, &name);
        return Ok(None);
    }
    let rollouts: Api<Rollout> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let patch = json!({"status": diff});
    tracing::debug!(%namespace, %name, %patch, "writing rollout status");
    let written = rollouts
        .patch_status(&rollout.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_error(rollout, "writing status"))?;
    ctx.count_updates.release(&namespace, &name);
    let stored = written.status.clone().unwrap_or_default();
    ctx.expectations
        .wrote_status(&namespace, &name, &stored, written.metadata.resource_version.as_deref());
    Ok(None)
}

async fn publish_events(rollout: &Rollout, plan: &Plan, ctx: &Context) {
    let reference = rollout.object_ref(&());
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
        // Events are best effort: a failure to record one must not fail the rollout.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, reason = planned.reason, "could not record event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::CanaryStep;

    #[test]
    fn a_blue_green_preview_replica_set_gets_its_role_metadata_and_anti_affinity() {
        use crate::api::rollout::{AntiAffinity, BlueGreenStatus, PodMetadata, PreferredAntiAffinity};
        let mut rollout = Rollout::blue_green_example("web", 2).with_blue_green(|b| {
            b.preview_metadata = Some(PodMetadata {
                labels: [("role".to_string(), "preview".to_string())].into(),
                ..PodMetadata::default()
            });
            b.anti_affinity = Some(AntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity { weight: 50 }),
                ..AntiAffinity::default()
            });
        });
        rollout.metadata.uid = Some("uid-1".into());
        let status = RolloutStatus {
            stable_rs: Some("stable1".into()),
            blue_green: Some(BlueGreenStatus {
                active_selector: Some("stable1".into()),
                preview_selector: Some("new1".into()),
                ..BlueGreenStatus::default()
            }),
            ..RolloutStatus::default()
        };
        let mut rs = build_replica_set(&rollout, "web-new1", "new1", 2, 2, None);
        add_pod_extras(&rollout, &status, "new1", &mut rs);
        let recorded = rs.metadata.annotations.as_ref().and_then(pod_metadata::recorded);
        assert_eq!(recorded, b_preview_metadata(&rollout));
        let template = rs.spec.unwrap().template.unwrap();
        let labels = template.metadata.unwrap().labels.unwrap();
        assert_eq!((labels["role"].as_str(), labels["app"].as_str()), ("preview", "web"));
        let anti = template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
        let term = &anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0];
        assert_eq!(term.weight, 50);
        let requirement = &term
            .pod_affinity_term
            .label_selector
            .clone()
            .unwrap()
            .match_expressions
            .unwrap()[0];
        assert_eq!(requirement.key, POD_TEMPLATE_HASH_LABEL);
        assert_eq!(requirement.values, Some(vec!["stable1".to_string()]));
    }

    fn b_preview_metadata(rollout: &Rollout) -> Option<crate::api::rollout::PodMetadata> {
        rollout.spec.blue_green().and_then(|b| b.preview_metadata.clone())
    }

    #[test]
    fn blue_green_roles_follow_the_service_selectors_active_first() {
        use crate::api::rollout::{BlueGreenStatus, PodMetadata};
        let role = |name: &str| PodMetadata {
            labels: [("role".to_string(), name.to_string())].into(),
            ..PodMetadata::default()
        };
        let rollout = Rollout::blue_green_example("web", 2).with_blue_green(|b| {
            b.active_metadata = Some(role("active"));
            b.preview_metadata = Some(role("preview"));
        });
        let status = |active: &str, preview: &str| RolloutStatus {
            blue_green: Some(BlueGreenStatus {
                active_selector: Some(active.into()),
                preview_selector: Some(preview.into()),
                ..BlueGreenStatus::default()
            }),
            ..RolloutStatus::default()
        };
        let (active, preview) = (role("active"), role("preview"));
        let during = status("v1", "v2");
        assert_eq!(
            roles(&rollout, &during),
            vec![("v1", Some(&active)), ("v2", Some(&preview))]
        );
        // After the switch both select v2: it is active, and v1 has no role left.
        let after = status("v2", "v2");
        let found = roles(&rollout, &after);
        assert_eq!(found[0], ("v2", Some(&active)));
        let observed = |hash: &str, carried: Option<PodMetadata>| ObservedReplicaSet {
            name: format!("web-{hash}"),
            hash: hash.into(),
            pod_metadata: carried,
            ..ObservedReplicaSet::default()
        };
        let replica_sets = [
            observed("v1", Some(active.clone())),
            observed("v2", Some(preview.clone())),
        ];
        let changes = pod_metadata::changes(&replica_sets, &found);
        let moves: Vec<(&str, &PodMetadata, &PodMetadata)> =
            changes.iter().map(|c| (c.hash.as_str(), &c.from, &c.to)).collect();
        assert_eq!(
            moves,
            vec![("v1", &active, &PodMetadata::default()), ("v2", &preview, &active)]
        );
    }

    #[test]
    fn replica_sets_carry_the_hash_on_selector_and_template_and_are_owned() {
        let mut rollout = Rollout::example("web", 3, vec![CanaryStep::set_weight(20)]);
        rollout.metadata.uid = Some("uid-1".into());
        rollout.spec.min_ready_seconds = Some(7);
        let rs = build_replica_set(&rollout, "web-abc", "abc", 2, 1, Some("deadbeef"));
        let spec = rs.spec.unwrap();
        assert_eq!(
            spec.min_ready_seconds,
            Some(7),
            "pods count as available as the Rollout says"
        );
        assert_eq!(spec.selector.match_labels.unwrap()[POD_TEMPLATE_HASH_LABEL], "abc");
        assert_eq!(
            spec.template.unwrap().metadata.unwrap().labels.unwrap()[POD_TEMPLATE_HASH_LABEL],
            "abc"
        );
        let annotations = rs.metadata.annotations.unwrap();
        assert_eq!(annotations[REVISION_ANNOTATION], "2");
        assert_eq!(annotations[plan::GIT_REVISION_ANNOTATION], "deadbeef");
        let owner = &rs.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-1", Some(true)));
    }
}
