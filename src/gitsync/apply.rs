//! Server-side apply of a prepared revision, all or nothing as far as the API server lets us: cluster
//! definitions (CRDs, Namespaces) first, then a dry run of everything else, then the real apply only
//! when every object passed. Also pruning and the live reads health needs.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PropagationPolicy};
use kube::core::ApiResource;
use kube::discovery::{ApiCapabilities, Discovery, Scope as DiscoveryScope};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::gitsync::health::{self, Health};
use crate::gitsync::manifest::{Manifest, ObjectId, Scope, is_cluster_definition};
use crate::gitsync::plan::waves::{self, Next};
use crate::gitsync::preserve::{ControllerFields, preserve_controller_fields_with};
use crate::gitsync::{FIELD_MANAGER, GITSYNC_LABEL, PRUNE_ANNOTATION};

/// A discovery older than this is refreshed before it is used for a sync.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// How long a CRD applied in this revision may take to be served.
const CRD_ESTABLISH_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("the API server does not serve {0}")]
    UnknownKind(String),
    #[error("{} of {} objects failed validation, nothing applied: {}", .errors.len(), .total, .errors.join("; "))]
    Rejected { errors: Vec<String>, total: usize },
    #[error("applying {id}: {message}")]
    Apply {
        id: String,
        message: String,
        transient: bool,
    },
    #[error("{0}")]
    Api(String),
}

impl ApplyError {
    /// Whether retrying the same revision can succeed without a change in Git.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Discovery(_) | ApplyError::Api(_) => true,
            ApplyError::Apply { transient, .. } => *transient,
            ApplyError::UnknownKind(_) | ApplyError::Rejected { .. } => false,
        }
    }
}

/// The API server's kinds, refreshed when older than a few minutes or when a kind is missing.
pub struct DiscoveryCache {
    client: Client,
    cached: Mutex<Option<(Instant, Arc<Discovery>)>>,
}

impl DiscoveryCache {
    pub fn new(client: Client) -> Self {
        DiscoveryCache {
            client,
            cached: Mutex::new(None),
        }
    }

    /// The cached discovery, or a fresh one when `refresh` or when it is stale.
    pub async fn get(&self, refresh: bool) -> Result<Arc<Discovery>, ApplyError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, discovery)) = cached.as_ref()
            && !refresh
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(discovery.clone());
        }
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| ApplyError::Discovery(e.to_string()))?;
        let discovery = Arc::new(discovery);
        *cached = Some((Instant::now(), discovery.clone()));
        Ok(discovery)
    }
}

/// Discovery as the manifest preparer's scope lookup.
pub struct DiscoveredScope(pub Arc<Discovery>);

impl Scope for DiscoveredScope {
    fn is_namespaced(&self, group: &str, version: &str, kind: &str) -> Option<bool> {
        resolve(&self.0, group, version, kind).map(|(_, caps)| caps.scope == DiscoveryScope::Namespaced)
    }
}

fn resolve(discovery: &Discovery, group: &str, version: &str, kind: &str) -> Option<(ApiResource, ApiCapabilities)> {
    discovery.resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn api_for(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Objects whose resourceVersion changed (created or updated), by id.
    pub changed: Vec<String>,
    pub total: usize,
    /// The apply stopped after this sync wave, not healthy yet: later waves are not applied.
    pub waiting: Option<WaveWait>,
}

/// A sync wave the apply waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveWait {
    pub wave: i32,
    pub message: String,
}

/// Applies `manifests` (already prepared and ordered) with `client` (the GitSync's identity): every
/// object through a dry run first, then the sync waves in order, stopping after the first wave that
/// is not healthy yet (see `plan::waves`).
pub async fn apply_revision(
    client: &Client,
    discovery: &DiscoveryCache,
    manifests: &mut [Manifest],
    target_namespace: &str,
) -> Result<ApplyReport, ApplyError> {
    // Which routes split traffic between a Rollout's canary and stable Services, per this revision.
    let controller_fields = ControllerFields::from_objects(manifests.iter().map(|m| &m.object), target_namespace);
    let split = manifests.iter().filter(|m| is_cluster_definition(&m.id)).count();
    let (definitions, rest) = manifests.split_at_mut(split);
    let mut report = ApplyReport {
        total: definitions.len() + rest.len(),
        ..ApplyReport::default()
    };
    if !definitions.is_empty() {
        let disc = discovery.get(false).await?;
        let resources = resources_for(&disc, definitions)?;
        let before = dry_run_all(client, &resources, definitions).await?;
        apply_all(client, &resources, definitions, &before, &mut report).await?;
    }
    let mut disc = discovery.get(false).await?;
    let deadline = Instant::now() + CRD_ESTABLISH_WAIT;
    // Kinds defined by a CRD of this revision are served a moment after the CRD is applied.
    let resources = loop {
        match resources_for(&disc, rest) {
            Ok(resources) => break resources,
            Err(ApplyError::UnknownKind(kind)) if Instant::now() < deadline => {
                tracing::debug!(%kind, "waiting for a new kind to be served");
                tokio::time::sleep(Duration::from_millis(500)).await;
                disc = discovery.get(true).await?;
            }
            Err(e) => return Err(e),
        }
    };
    preserve_live_fields(client, &resources, rest, &controller_fields).await?;
    let before = dry_run_all(client, &resources, rest).await?;
    let managed = health::workload_ref_deployments(rest.iter().map(|m| &m.object));
    let numbers: Vec<i32> = rest.iter().map(|m| m.wave).collect();
    let plan = waves::waves(&numbers);
    for (index, wave) in plan.iter().enumerate() {
        let members = wave.members.clone();
        let (resources, manifests) = (&resources[members.clone()], &rest[members.clone()]);
        apply_all(client, resources, manifests, &before[members], &mut report).await?;
        // The last wave is not waited for: the revision's health covers it.
        let health = if index + 1 < plan.len() {
            Some(wave_health(client, resources, manifests, &managed).await?)
        } else {
            None
        };
        match waves::after(&plan, index, health.as_ref()) {
            Next::Continue => {}
            Next::Done => break,
            Next::Wait { wave, message } => {
                report.waiting = Some(WaveWait { wave, message });
                break;
            }
        }
    }
    Ok(report)
}

/// The health of one wave's objects as the API server has them now.
async fn wave_health(
    client: &Client,
    resources: &[ApiResource],
    manifests: &[Manifest],
    managed: &std::collections::HashSet<(String, String)>,
) -> Result<Health, ApplyError> {
    let mut items = Vec::with_capacity(manifests.len());
    for (manifest, resource) in manifests.iter().zip(resources) {
        let api = api_for(client, resource, manifest.id.namespace.as_deref());
        let live = api
            .get_opt(&manifest.id.name)
            .await
            .map_err(|e| ApplyError::Api(format!("reading {}: {e}", manifest.id)))?;
        let health = match live.and_then(|o| serde_json::to_value(o).ok()) {
            Some(object) => health::object_health_managed(&object, managed),
            None => Health::Progressing("not found".into()),
        };
        items.push((&manifest.id, health));
    }
    Ok(health::aggregate(items))
}

fn resources_for(discovery: &Discovery, manifests: &[Manifest]) -> Result<Vec<ApiResource>, ApplyError> {
    manifests
        .iter()
        .map(|m| {
            resolve(discovery, &m.id.group, &m.id.version, &m.id.kind)
                .map(|(resource, _)| resource)
                .ok_or_else(|| ApplyError::UnknownKind(format!("{} ({})", m.id.kind, m.id.api_version())))
        })
        .collect()
}

/// Kinds whose live objects carry fields the rollout controller writes (weights, selectors).
fn may_carry_controller_fields(id: &ObjectId, fields: &ControllerFields) -> bool {
    let scaled = (id.group.as_str(), id.kind.as_str()) == ("apps", "Deployment")
        && fields.scales_deployment(id.namespace.as_deref().unwrap_or_default(), &id.name);
    scaled
        || matches!(
            (id.group.as_str(), id.kind.as_str()),
            ("", "Service")
                | ("gateway.networking.k8s.io", "HTTPRoute" | "GRPCRoute")
                | ("split.smi-spec.io", "TrafficSplit")
                | ("networking.istio.io", "VirtualService" | "DestinationRule")
                | ("networking.k8s.io", "Ingress")
        )
}

async fn preserve_live_fields(
    client: &Client,
    resources: &[ApiResource],
    manifests: &mut [Manifest],
    fields: &ControllerFields,
) -> Result<(), ApplyError> {
    for (manifest, resource) in manifests.iter_mut().zip(resources) {
        if !may_carry_controller_fields(&manifest.id, fields) {
            continue;
        }
        let api = api_for(client, resource, manifest.id.namespace.as_deref());
        match api.get_opt(&manifest.id.name).await {
            Ok(Some(live)) => {
                let live = serde_json::to_value(&live).unwrap_or(Value::Null);
                preserve_controller_fields_with(&mut manifest.object, &live, fields);
            }
            Ok(None) => {}
            Err(e) => return Err(ApplyError::Api(format!("reading {}: {e}", manifest.id))),
        }
    }
    Ok(())
}

/// Server-side apply, forced, with `fieldValidation=Strict` as kubectl applies by default: a field the
/// schema does not know (a typo, a strategy this version lacks) fails the dry run, naming it, instead
/// of being pruned silently while the rest of the object is applied.
fn apply_params(dry_run: bool) -> PatchParams {
    let params = PatchParams::apply(FIELD_MANAGER).force().validation_strict();
    if dry_run { params.dry_run() } else { params }
}

/// Every object through a server-side dry run; all failures are reported together. Returns each
/// object's resourceVersion before the apply (a dry run leaves it as stored; none for a new object),
/// so the real apply can tell what it changed without reading every object again.
async fn dry_run_all(
    client: &Client,
    resources: &[ApiResource],
    manifests: &[Manifest],
) -> Result<Vec<Option<String>>, ApplyError> {
    let mut errors = Vec::new();
    let mut versions = Vec::with_capacity(manifests.len());
    for (manifest, resource) in manifests.iter().zip(resources) {
        let api = api_for(client, resource, manifest.id.namespace.as_deref());
        match api
            .patch(&manifest.id.name, &apply_params(true), &Patch::Apply(&manifest.object))
            .await
        {
            Ok(dry) => versions.push(dry.metadata.resource_version.filter(|v| !v.is_empty())),
            Err(e) if is_transient(&e) => {
                return Err(ApplyError::Api(format!("dry run of {}: {e}", manifest.id)));
            }
            Err(e) => errors.push(format!("{}: {}", manifest.id, api_message(&e))),
        }
    }
    if errors.is_empty() {
        Ok(versions)
    } else {
        Err(ApplyError::Rejected {
            errors,
            total: manifests.len(),
        })
    }
}

async fn apply_all(
    client: &Client,
    resources: &[ApiResource],
    manifests: &[Manifest],
    before: &[Option<String>],
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    for ((manifest, resource), before) in manifests.iter().zip(resources).zip(before) {
        let api = api_for(client, resource, manifest.id.namespace.as_deref());
        let applied = api
            .patch(&manifest.id.name, &apply_params(false), &Patch::Apply(&manifest.object))
            .await
            .map_err(|e| ApplyError::Apply {
                id: manifest.id.to_string(),
                message: api_message(&e),
                transient: is_transient(&e),
            })?;
        if *before != applied.metadata.resource_version {
            report.changed.push(manifest.id.to_string());
        }
    }
    Ok(())
}

/// What pruning did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    /// Left in place: owned by someone else, or `sluice.dev/prune: disabled`.
    pub kept: Vec<String>,
}

/// Deletes objects that left Git, if they are still ours. Objects of kinds no longer served count as
/// gone.
pub async fn prune(
    client: &Client,
    discovery: &DiscoveryCache,
    stale: &[ObjectId],
    owner_label: &str,
) -> Result<PruneReport, ApplyError> {
    let disc = discovery.get(false).await?;
    let mut report = PruneReport::default();
    for id in stale {
        let Some((resource, _)) = resolve(&disc, &id.group, &id.version, &id.kind) else {
            continue;
        };
        let api = api_for(client, &resource, id.namespace.as_deref());
        let live = match api.get_metadata_opt(&id.name).await {
            Ok(Some(live)) => live,
            Ok(None) => continue,
            Err(e) => return Err(ApplyError::Api(format!("reading {id}: {e}"))),
        };
        let ours = live.labels().get(GITSYNC_LABEL).map(String::as_str) == Some(owner_label);
        let disabled = live.annotations().get(PRUNE_ANNOTATION).map(String::as_str) == Some("disabled");
        if !ours || disabled || live.metadata.deletion_timestamp.is_some() {
            report.kept.push(id.to_string());
            continue;
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&id.name, &params).await {
            Ok(_) => report.deleted.push(id.to_string()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(ApplyError::Api(format!("deleting {id}: {e}"))),
        }
    }
    Ok(report)
}

/// The live objects of `ids` (missing ones are None), for health.
pub async fn read_live(
    client: &Client,
    discovery: &DiscoveryCache,
    ids: &[ObjectId],
) -> Result<Vec<(ObjectId, Option<Value>)>, ApplyError> {
    let disc = discovery.get(false).await?;
    let mut apis: HashMap<(String, String, String, Option<String>), Api<DynamicObject>> = HashMap::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some((resource, _)) = resolve(&disc, &id.group, &id.version, &id.kind) else {
            out.push((id.clone(), None));
            continue;
        };
        let key = (
            id.group.clone(),
            id.version.clone(),
            id.kind.clone(),
            id.namespace.clone(),
        );
        let api = apis
            .entry(key)
            .or_insert_with(|| api_for(client, &resource, id.namespace.as_deref()));
        let live = api
            .get_opt(&id.name)
            .await
            .map_err(|e| ApplyError::Api(format!("reading {id}: {e}")))?;
        out.push((id.clone(), live.and_then(|o| serde_json::to_value(o).ok())));
    }
    Ok(out)
}

/// Server-side failures that a retry may fix: timeouts, throttling, conflicts, 5xx, transport.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429) || status.code >= 500,
        _ => true,
    }
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}
