//! Validates a rendered revision as a whole before anything is applied: every object gets an identity,
//! a namespace, the GitSync's label and revision annotation, and a place in the apply order. All
//! problems are collected at once, so one Stalled condition tells the user everything to fix.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value};

use super::{GIT_REVISION_ANNOTATION, GITSYNC_LABEL, gitsync_label_value};
use crate::api::gitsync::{Inventory, InventoryEntry};
use crate::gitsync::plan::waves::{SYNC_WAVE_ANNOTATION, wave_of};

/// The most bytes one revision's inventory may take in the GitSync's status. The status holds the old
/// and the new inventory together while a revision is applied (and pendingPrune besides), and an API
/// server refuses objects past about 1.5 MiB: a revision past this could never be recorded, and so
/// never pruned. About 6,000 objects of ordinary names.
pub const MAX_INVENTORY_BYTES: usize = 512 * 1024;

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_KIND: &str = "CustomResourceDefinition";
/// Metadata the API server owns: applying it is refused or meaningless.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The identity of an object: what server-side apply and the inventory key on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// An inventory entry or apiVersion that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

impl ObjectId {
    /// Flux's format `<namespace>_<name>_<group>_<kind>`: namespace empty for cluster-scoped objects,
    /// group empty for the core group. Unambiguous because none of the parts may contain `_`.
    pub fn inventory_id(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace.as_deref().unwrap_or_default(),
            self.name,
            self.group,
            self.kind
        )
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Reads an inventory entry back. `v` is the version as Flux writes it (`v1`); a full apiVersion
    /// (`apps/v1`) is accepted too as long as its group agrees with the id.
    pub fn from_inventory(entry: &InventoryEntry) -> Result<ObjectId, ManifestError> {
        let parts: Vec<&str> = entry.id.split('_').collect();
        let [namespace, name, group, kind] = parts[..] else {
            return Err(ManifestError(format!(
                "inventory entry {:?}: expected <namespace>_<name>_<group>_<kind>",
                entry.id
            )));
        };
        if name.is_empty() || kind.is_empty() {
            return Err(ManifestError(format!(
                "inventory entry {:?}: name and kind must not be empty",
                entry.id
            )));
        }
        let version = match entry.v.rsplit_once('/') {
            Some((v_group, version)) if v_group == group => version,
            Some(_) => {
                return Err(ManifestError(format!(
                    "inventory entry {:?}: version {:?} is not of group {group:?}",
                    entry.id, entry.v
                )));
            }
            None => entry.v.as_str(),
        };
        if version.is_empty() {
            return Err(ManifestError(format!("inventory entry {:?}: empty version", entry.id)));
        }
        Ok(ObjectId {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name: name.to_string(),
        })
    }

    /// The entry in Flux's format (`v` holds the version only).
    pub fn to_inventory(&self) -> InventoryEntry {
        InventoryEntry {
            id: self.inventory_id(),
            v: self.version.clone(),
        }
    }

    /// The object's identity, where a GitSync reads it: apiVersion, kind, metadata.namespace/name.
    pub fn of(object: &Value) -> Result<ObjectId, ManifestError> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
        let (group, version) = split_api_version(text("/apiVersion"))?;
        let namespace = text("/metadata/namespace");
        Ok(ObjectId {
            group,
            version,
            kind: text("/kind").to_string(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name: text("/metadata/name").to_string(),
        })
    }
}

#[cfg(test)]
impl ObjectId {
    /// An id at version v1, for tests.
    pub(crate) fn example(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectId {
    /// `apps/Deployment shop/web`, `ConfigMap shop/settings`, `Namespace shop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} ", self.kind)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        write!(f, "{}", self.name)
    }
}

fn split_api_version(api_version: &str) -> Result<(String, String), ManifestError> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if version.is_empty() || version.contains('/') || (api_version.contains('/') && group.is_empty()) {
        return Err(ManifestError(format!(
            "apiVersion {api_version:?} is not <group>/<version> or <version>"
        )));
    }
    Ok((group.to_string(), version.to_string()))
}

/// An object ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub id: ObjectId,
    pub object: Value,
    /// Its `sluice.dev/sync-wave` (see `plan::waves`).
    pub wave: i32,
}

/// Scope lookup from the API server's discovery; None = the server does not know this kind.
pub trait Scope {
    fn is_namespaced(&self, group: &str, version: &str, kind: &str) -> Option<bool>;
}

impl<F> Scope for F
where
    F: Fn(&str, &str, &str) -> Option<bool>,
{
    fn is_namespaced(&self, group: &str, version: &str, kind: &str) -> Option<bool> {
        self(group, version, kind)
    }
}

/// The built-in Kubernetes kinds and Sluice's own, for tests and as a fallback when discovery is
/// not available. Versions are not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinScope;

impl Scope for BuiltinScope {
    fn is_namespaced(&self, group: &str, _version: &str, kind: &str) -> Option<bool> {
        let namespaced = match (group, kind) {
            (
                "",
                "ConfigMap"
                | "Secret"
                | "Service"
                | "ServiceAccount"
                | "Pod"
                | "PersistentVolumeClaim"
                | "Endpoints"
                | "LimitRange"
                | "ResourceQuota"
                | "ReplicationController"
                | "Event",
            ) => true,
            ("", "Namespace" | "PersistentVolume" | "Node") => false,
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ControllerRevision") => true,
            ("batch", "Job" | "CronJob") => true,
            ("autoscaling", "HorizontalPodAutoscaler") => true,
            ("policy", "PodDisruptionBudget") => true,
            ("networking.k8s.io", "Ingress" | "NetworkPolicy") => true,
            ("networking.k8s.io", "IngressClass") => false,
            ("rbac.authorization.k8s.io", "Role" | "RoleBinding") => true,
            ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding") => false,
            ("storage.k8s.io", "StorageClass") => false,
            ("scheduling.k8s.io", "PriorityClass") => false,
            (CRD_GROUP, CRD_KIND) => false,
            ("admissionregistration.k8s.io", _) => false,
            ("sluice.dev", "Rollout" | "AnalysisTemplate" | "AnalysisRun" | "GitSync") => true,
            ("sluice.dev", "ClusterAnalysisTemplate") => false,
            _ => return None,
        };
        Some(namespaced)
    }
}

/// What `prepare` needs to know about the GitSync and the cluster.
pub struct PrepareContext<'a> {
    pub gitsync_namespace: &'a str,
    pub gitsync_name: &'a str,
    /// Namespace of namespaced objects that set none.
    pub target_namespace: &'a str,
    /// The commit being applied.
    pub revision: &'a str,
    pub scope: &'a dyn Scope,
    /// When set, every object must be namespaced and land in this namespace: a GitSync that applies as
    /// the controller (no ServiceAccount) may not reach past its own namespace.
    pub confine_to: Option<&'a str>,
}

/// Every problem found in a revision, each naming the object and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<String>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for ManifestErrors {}

/// What a CustomResourceDefinition in the same revision declares.
struct DefinedKind {
    namespaced: bool,
    versions: Vec<String>,
}

/// Validates and prepares a rendered revision for server-side apply: each object gets its namespace,
/// the GitSync label and revision annotation (in metadata only: a change inside a pod template would
/// start a rollout on every commit), loses the fields the API server owns and its status, and the
/// result comes in apply order. Every problem is reported, not just the first.
pub fn prepare(objects: Vec<Value>, ctx: &PrepareContext<'_>) -> Result<Vec<Manifest>, ManifestErrors> {
    let mut errors = Vec::new();
    let label = gitsync_label_value(ctx.gitsync_namespace, ctx.gitsync_name);
    if let Err(problem) = check_label_value(&label) {
        errors.push(format!(
            "GitSync {}/{}: label {GITSYNC_LABEL}={label:?} would be invalid: {problem}",
            ctx.gitsync_namespace, ctx.gitsync_name
        ));
    }
    let defined = defined_kinds(&objects);
    let mut manifests = Vec::with_capacity(objects.len());
    for (index, object) in objects.into_iter().enumerate() {
        match prepare_one(object, index, ctx, &defined, &label) {
            Ok(manifest) => manifests.push(manifest),
            Err(problems) => errors.extend(problems),
        }
    }
    let mut seen: BTreeMap<String, (&ObjectId, usize)> = BTreeMap::new();
    for manifest in &manifests {
        seen.entry(manifest.id.inventory_id()).or_insert((&manifest.id, 0)).1 += 1;
    }
    for (id, count) in seen.values().filter(|(_, count)| *count > 1) {
        errors.push(format!("{id}: defined {count} times"));
    }
    if let Some(namespace) = ctx.confine_to {
        errors.extend(manifests.iter().filter_map(|m| outside_of(&m.id, namespace)));
        errors.extend(manifests.iter().filter_map(child_with_identity));
    }
    // Each entry as stored: {"id":"…","v":"…"}, plus a comma.
    let inventory_bytes: usize = manifests
        .iter()
        .map(|m| m.id.inventory_id().len() + m.id.version.len() + 16)
        .sum();
    if inventory_bytes > MAX_INVENTORY_BYTES {
        errors.push(format!(
            "{} objects would take {} KiB of the GitSync's status inventory, more than {} KiB: split the \
             repository's path over several GitSyncs",
            manifests.len(),
            inventory_bytes / 1024,
            MAX_INVENTORY_BYTES / 1024
        ));
    }
    if !errors.is_empty() {
        return Err(ManifestErrors(errors));
    }
    // CRDs and Namespaces first whatever their wave (everything else may need them served), then
    // the waves in ascending order, each in the usual kind order.
    let order = |m: &Manifest| {
        (
            !is_cluster_definition(&m.id),
            (!is_cluster_definition(&m.id)).then_some(m.wave),
        )
    };
    manifests.sort_by(|a, b| (order(a), apply_order(&a.id)).cmp(&(order(b), apply_order(&b.id))));
    Ok(manifests)
}

/// A GitSync applied by a confined GitSync (one applying as the controller, with no ServiceAccount)
/// may not name a ServiceAccount: it would act as an identity its parent does not have.
fn child_with_identity(manifest: &Manifest) -> Option<String> {
    let is_gitsync = manifest.id.group == "sluice.dev" && manifest.id.kind == "GitSync";
    let account = manifest.object.pointer("/spec/serviceAccountName")?;
    (is_gitsync && !account.is_null()).then(|| {
        format!(
            "{}: spec.serviceAccountName: a GitSync without spec.serviceAccountName may not apply a GitSync \
             that names one (it would act as an identity its parent does not have)",
            manifest.id
        )
    })
}

/// Why `id` may not be applied by a GitSync confined to `namespace`, if it may not.
fn outside_of(id: &ObjectId, namespace: &str) -> Option<String> {
    let why = match &id.namespace {
        None => format!("{} is cluster-scoped", id.kind),
        Some(ns) if ns != namespace => format!("namespace {ns:?} is not the GitSync's {namespace:?}"),
        Some(_) => return None,
    };
    Some(format!(
        "{id}: {why}; a GitSync without spec.serviceAccountName applies only namespaced objects into its own \
         namespace (name a ServiceAccount that may do this, or ask the operator)"
    ))
}

fn defined_kinds(objects: &[Value]) -> HashMap<(String, String), DefinedKind> {
    let crds = objects.iter().filter(|o| {
        o["kind"] == CRD_KIND
            && o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("{CRD_GROUP}/")))
    });
    crds.filter_map(|crd| {
        let spec = crd.get("spec")?;
        let group = spec.get("group")?.as_str()?;
        let kind = spec.pointer("/names/kind")?.as_str()?;
        let versions = spec.get("versions").and_then(Value::as_array).into_iter().flatten();
        let defined = DefinedKind {
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            versions: versions
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect(),
        };
        Some(((group.to_string(), kind.to_string()), defined))
    })
    .collect()
}

fn prepare_one(
    mut object: Value,
    index: usize,
    ctx: &PrepareContext<'_>,
    defined: &HashMap<(String, String), DefinedKind>,
    label: &str,
) -> Result<Manifest, Vec<String>> {
    let wave = wave_of(&object);
    let Value::Object(fields) = &mut object else {
        return Err(vec![format!(
            "object {}: not a mapping but {}",
            index + 1,
            type_name(&object)
        )]);
    };
    // Name the object as well as it can be named, for every message about it.
    let text = |f: &Map<String, Value>, key: &str| f.get(key).and_then(Value::as_str).map(str::to_string);
    let api_version = text(fields, "apiVersion").unwrap_or_default();
    let kind = text(fields, "kind").unwrap_or_default();
    let metadata_name = fields
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    let metadata_namespace = fields
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let who = match (kind.as_str(), metadata_name) {
        ("", _) | (_, None) => format!("object {} ({} {})", index + 1, or_unset(&api_version), or_unset(&kind)),
        (kind, Some(name)) => {
            let group = api_version
                .split_once('/')
                .map(|(g, _)| format!("{g}/"))
                .unwrap_or_default();
            let namespace = metadata_namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default();
            format!("{group}{kind} {namespace}{name}")
        }
    };
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| problems.push(format!("{who}: {field}: {message}"));

    if api_version.is_empty() {
        problem("apiVersion", "required".into());
    }
    if kind.is_empty() {
        problem("kind", "required".into());
    }
    let (group, version) = match split_api_version(&api_version) {
        Ok(parts) => parts,
        Err(e) if !api_version.is_empty() => {
            problem("apiVersion", e.0);
            Default::default()
        }
        Err(_) => Default::default(),
    };
    match fields.get("metadata") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => problem("metadata", "required".into()),
        Some(other) => problem("metadata", format!("must be a mapping, not {}", type_name(other))),
    }
    let has_metadata = matches!(fields.get("metadata"), Some(Value::Object(_)));
    let name = metadata_name.map(str::to_string);
    match &name {
        None if has_metadata => problem("metadata.name", "required (generateName cannot be applied)".into()),
        None => {}
        Some(name) => {
            if let Err(e) = check_name(&group, &kind, name) {
                problem("metadata.name", format!("{name:?} {e}"));
            }
        }
    }
    if let Some(namespace) = &metadata_namespace
        && let Err(e) = check_dns_label(namespace)
    {
        problem("metadata.namespace", format!("{namespace:?} {e}"));
    }
    for key in ["labels", "annotations"] {
        match fields.get("metadata").and_then(|m| m.get(key)) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => problem(
                &format!("metadata.{key}"),
                format!("must be a mapping, not {}", type_name(other)),
            ),
        }
    }
    let namespaced = if kind.is_empty() || version.is_empty() {
        None
    } else {
        let from_crd = defined.get(&(group.clone(), kind.clone()));
        match (ctx.scope.is_namespaced(&group, &version, &kind), from_crd) {
            (Some(namespaced), _) => Some(namespaced),
            (None, Some(crd)) if crd.versions.is_empty() || crd.versions.contains(&version) => Some(crd.namespaced),
            (None, Some(crd)) => {
                problem(
                    "apiVersion",
                    format!(
                        "the CustomResourceDefinition in this revision defines {kind} only in versions {}",
                        crd.versions.join(", ")
                    ),
                );
                None
            }
            (None, None) => {
                problem(
                    "kind",
                    format!(
                        "unknown kind: the API server does not serve {api_version} {kind}, and no \
                         CustomResourceDefinition in this revision defines it"
                    ),
                );
                None
            }
        }
    };
    if let Err(e) = &wave {
        problem(&format!("metadata.annotations.{SYNC_WAVE_ANNOTATION}"), e.clone());
    }
    if namespaced == Some(false)
        && let Some(namespace) = &metadata_namespace
    {
        problem(
            "metadata.namespace",
            format!("{kind} is cluster-scoped; remove namespace {namespace:?}"),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(namespaced), Some(name)) = (namespaced, name) else {
        unreachable!("every way to get here without a scope or name reports a problem")
    };

    let namespace = namespaced.then(|| metadata_namespace.unwrap_or_else(|| ctx.target_namespace.to_string()));
    fields.remove("status");
    let metadata = fields
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("checked above");
    for key in SERVER_METADATA {
        metadata.remove(*key);
    }
    match &namespace {
        Some(namespace) => {
            metadata.insert("namespace".into(), Value::String(namespace.clone()));
        }
        None => {
            metadata.remove("namespace");
        }
    }
    insert_into(metadata, "labels", GITSYNC_LABEL, label);
    insert_into(metadata, "annotations", GIT_REVISION_ANNOTATION, ctx.revision);
    Ok(Manifest {
        id: ObjectId {
            group,
            version,
            kind,
            namespace,
            name,
        },
        object,
        wave: wave.unwrap_or_default(),
    })
}

fn insert_into(metadata: &mut Map<String, Value>, map: &str, key: &str, value: &str) {
    let entry = metadata.entry(map).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry[key] = Value::String(value.to_string());
}

fn or_unset(text: &str) -> &str {
    if text.is_empty() { "<unset>" } else { text }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Names as the API server validates them: RBAC objects allow any path segment (`system:viewer`),
/// Namespaces are DNS labels, everything else a DNS subdomain.
fn check_name(group: &str, kind: &str, name: &str) -> Result<(), String> {
    match (group, kind) {
        ("rbac.authorization.k8s.io", _) => {
            if name == "." || name == ".." || name.contains('/') || name.contains('%') || name.is_empty() {
                Err("is not a valid path segment name".into())
            } else {
                Ok(())
            }
        }
        ("", "Namespace") => check_dns_label(name),
        _ => check_dns_subdomain(name),
    }
}

fn check_dns_label(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters (RFC 1123 label)".into());
    }
    if !name.chars().all(|c| alnum(c) || c == '-') || !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err("must consist of lower case alphanumerics and '-', starting and ending with an alphanumeric (RFC 1123 label)".into());
    }
    Ok(())
}

fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters (RFC 1123 subdomain)".into());
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let label_ok = |l: &str| {
        !l.is_empty() && l.starts_with(alnum) && l.ends_with(alnum) && l.chars().all(|c| alnum(c) || c == '-')
    };
    if !name.split('.').all(label_ok) {
        return Err("must consist of lower case alphanumerics, '-' and '.', each part starting and ending with an alphanumeric (RFC 1123 subdomain)".into());
    }
    Ok(())
}

fn check_label_value(value: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if value.len() > 63 {
        return Err(format!("{} characters, at most 63 are allowed", value.len()));
    }
    if !value.is_empty()
        && (!value.starts_with(alnum)
            || !value.ends_with(alnum)
            || !value.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')))
    {
        return Err("must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric".into());
    }
    Ok(())
}

/// Where a kind goes when applying: definitions first, then what others refer to (accounts, RBAC,
/// configuration, storage, Services, analysis templates), then workloads, then what points at
/// workloads; unknown custom resources after that, admission webhooks last so a broken webhook
/// cannot block the rest. Deletion runs the other way round.
const KIND_ORDER: &[(&str, &str)] = &[
    (CRD_GROUP, CRD_KIND),
    ("", "Namespace"),
    ("", "ResourceQuota"),
    ("", "LimitRange"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("policy", "PodDisruptionBudget"),
    ("", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("storage.k8s.io", "StorageClass"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Service"),
    ("sluice.dev", "ClusterAnalysisTemplate"),
    ("sluice.dev", "AnalysisTemplate"),
    ("apps", "DaemonSet"),
    ("", "Pod"),
    ("", "ReplicationController"),
    ("apps", "ReplicaSet"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("sluice.dev", "Rollout"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "Ingress"),
];
/// After unknown kinds.
const LAST_KINDS: &[(&str, &str)] = &[
    ("apiregistration.k8s.io", "APIService"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
];
fn kind_rank(id: &ObjectId) -> usize {
    let position = |kinds: &[(&str, &str)]| kinds.iter().position(|(g, k)| *g == id.group && *k == id.kind);
    position(KIND_ORDER)
        .or_else(|| position(LAST_KINDS).map(|i| KIND_ORDER.len() + 1 + i))
        .unwrap_or(KIND_ORDER.len())
}

fn apply_order(id: &ObjectId) -> (usize, &str, &str, &str, &str, &str) {
    let namespace = id.namespace.as_deref().unwrap_or_default();
    (kind_rank(id), &id.group, &id.kind, namespace, &id.name, &id.version)
}

/// CRDs and Namespaces: what everything else needs to exist first.
pub fn is_cluster_definition(id: &ObjectId) -> bool {
    (id.group == CRD_GROUP && id.kind == CRD_KIND) || (id.group.is_empty() && id.kind == "Namespace")
}

/// The inventory of an applied set: one entry per object, sorted.
pub fn inventory(manifests: &[Manifest]) -> Inventory {
    let entries: BTreeSet<InventoryEntry> = manifests.iter().map(|m| m.id.to_inventory()).collect();
    Inventory {
        entries: entries.into_iter().collect(),
    }
}

/// Objects in `old` that are not in `new` (compared without the version: an object whose apiVersion
/// moved from v1beta1 to v1 is the same object), in deletion order: the reverse of the apply order,
/// so workloads go before what they use and Namespaces and CRDs go last. Entries that cannot be read
/// are skipped with a warning: deleting a guess is worse than leaving an orphan.
pub fn stale(old: &Inventory, new: &Inventory) -> Vec<ObjectId> {
    let keep: BTreeSet<&str> = new.entries.iter().map(|e| e.id.as_str()).collect();
    let mut gone: Vec<ObjectId> = old
        .entries
        .iter()
        .filter(|e| !keep.contains(e.id.as_str()))
        .filter_map(|entry| match ObjectId::from_inventory(entry) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, "skipping an inventory entry that cannot be read");
                None
            }
        })
        .collect();
    gone.sort_by(|a, b| apply_order(b).cmp(&apply_order(a)));
    gone.dedup_by(|a, b| a.inventory_id() == b.inventory_id());
    gone
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn ctx() -> PrepareContext<'static> {
        PrepareContext {
            gitsync_namespace: "flux",
            gitsync_name: "shop",
            target_namespace: "shop",
            revision: "abc123",
            scope: &BuiltinScope,
            confine_to: None,
        }
    }

    #[test]
    fn a_confined_gitsync_applies_only_namespaced_objects_into_its_own_namespace() {
        let ctx = PrepareContext {
            confine_to: Some("shop"),
            ..ctx()
        };
        let mut elsewhere = deployment("web");
        elsewhere["metadata"]["namespace"] = json!("kube-system");
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}});
        let found = prepare(vec![deployment("ok"), elsewhere, namespace], &ctx)
            .unwrap_err()
            .0;
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|e| e.contains("kube-system") && e.contains("is not the GitSync's")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("Namespace") && e.contains("cluster-scoped")),
            "{found:?}"
        );
        assert!(found.iter().all(|e| e.contains("spec.serviceAccountName")), "{found:?}");
        assert_eq!(prepare(vec![deployment("ok")], &ctx).unwrap().len(), 1);
        let other_target = PrepareContext {
            target_namespace: "team-b",
            ..ctx
        };
        let found = prepare(vec![deployment("ok")], &other_target).unwrap_err().0;
        assert!(
            found[0].contains("\"team-b\" is not the GitSync's \"shop\""),
            "{found:?}"
        );
    }

    #[test]
    fn waves_order_the_apply_after_definitions_and_a_bad_wave_names_object_and_annotation() {
        let with_wave = |mut object: Value, wave: &str| {
            object["metadata"]["annotations"] = json!({"sluice.dev/sync-wave": wave});
            object
        };
        let config = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        let migrate = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"}});
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        let out = prepare(
            vec![
                with_wave(deployment("api"), "1"),
                config("settings"),
                with_wave(migrate, "-1"),
                with_wave(namespace, "5"),
                with_wave(config("late"), "1"),
            ],
            &ctx(),
        )
        .unwrap();
        let order: Vec<String> = out
            .iter()
            .map(|m| format!("{} {} {}", m.wave, m.id.kind, m.id.name))
            .collect();
        assert_eq!(
            order,
            [
                "5 Namespace shop",
                "-1 Job migrate",
                "0 ConfigMap settings",
                "1 ConfigMap late",
                "1 Deployment api"
            ]
        );
        let found = errors(vec![with_wave(deployment("api"), "soon"), config("ok")]);
        assert_eq!(
            found,
            [
                "apps/Deployment api: metadata.annotations.sluice.dev/sync-wave: \"soon\" is not a whole number from -2147483648 to 2147483647"
            ]
        );
    }

    #[test]
    fn a_confined_gitsync_may_apply_gitsyncs_that_name_no_service_account() {
        let ctx = PrepareContext {
            confine_to: Some("shop"),
            ..ctx()
        };
        let child = |account: Option<&str>| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "api"},
                "spec": {"repoURL": "https://example.com/repo.git", "serviceAccountName": account}})
        };
        assert_eq!(prepare(vec![child(None)], &ctx).unwrap()[0].id.kind, "GitSync");
        let found = prepare(vec![child(Some("admin"))], &ctx).unwrap_err().0;
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("sluice.dev/GitSync shop/api: spec.serviceAccountName: "),
            "{found:?}"
        );
        // Not confined: RBAC decides (the controller may impersonate only what the namespace grants).
        assert!(
            prepare(
                vec![child(Some("deployer"))],
                &PrepareContext {
                    confine_to: None,
                    ..ctx
                }
            )
            .is_ok()
        );
    }

    fn deployment(name: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                },
            },
        })
    }

    fn errors(objects: Vec<Value>) -> Vec<String> {
        prepare(objects, &ctx()).unwrap_err().0
    }

    #[test]
    fn inventory_ids_follow_flux() {
        let web = ObjectId::example("apps", "Deployment", Some("shop"), "web");
        assert_eq!(web.inventory_id(), "shop_web_apps_Deployment");
        assert_eq!(
            ObjectId::example("", "Namespace", None, "shop").inventory_id(),
            "_shop__Namespace"
        );
        assert_eq!(web.api_version(), "apps/v1");
        assert_eq!(ObjectId::example("", "ConfigMap", None, "x").api_version(), "v1");
        assert_eq!(web.to_string(), "apps/Deployment shop/web");
        assert_eq!(
            ObjectId::example("", "Namespace", None, "shop").to_string(),
            "Namespace shop"
        );
        for id in [web, ObjectId::example("", "Namespace", None, "shop")] {
            assert_eq!(ObjectId::from_inventory(&id.to_inventory()).unwrap(), id);
        }
        let full = InventoryEntry {
            id: "shop_web_apps_Deployment".into(),
            v: "apps/v1".into(),
        };
        assert_eq!(ObjectId::from_inventory(&full).unwrap().version, "v1");
        for (bad_id, v) in [
            ("a_b_c", "v1"),
            ("shop_web_apps_Deployment", "batch/v1"),
            ("_x__", "v1"),
            ("a_b__C", ""),
        ] {
            let entry = InventoryEntry {
                id: bad_id.into(),
                v: v.into(),
            };
            assert!(ObjectId::from_inventory(&entry).is_err(), "{bad_id} {v}");
        }
    }

    #[test]
    fn stamps_metadata_only_and_defaults_the_namespace() {
        let mut input = deployment("web");
        input["metadata"]["resourceVersion"] = json!("12");
        input["metadata"]["uid"] = json!("u");
        input["metadata"]["managedFields"] = json!([]);
        input["metadata"]["creationTimestamp"] = json!(null);
        input["status"] = json!({"replicas": 1});
        let out = prepare(vec![input.clone()], &ctx()).unwrap();
        let object = &out[0].object;
        assert_eq!(out[0].id, ObjectId::example("apps", "Deployment", Some("shop"), "web"));
        assert_eq!(
            object["metadata"],
            json!({
                "name": "web",
                "labels": {"app": "web", "sluice.dev/gitsync": "flux.shop"},
                "namespace": "shop",
                "annotations": {"sluice.dev/git-revision": "abc123"},
            })
        );
        assert_eq!(object["spec"], input["spec"], "the pod template is untouched");
        assert!(object.get("status").is_none());
    }

    #[test]
    fn a_revision_whose_inventory_would_not_fit_the_status_is_refused_whole() {
        let config_maps = |count: usize| -> Vec<Value> {
            (0..count)
                .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("config-{i:05}")}}))
                .collect()
        };
        // 46 bytes an entry as counted: 10,000 fit in 512 KiB, 20,000 do not.
        assert_eq!(prepare(config_maps(10_000), &ctx()).unwrap().len(), 10_000);
        let refused = prepare(config_maps(20_000), &ctx()).unwrap_err().to_string();
        assert!(
            refused.contains("20000 objects") && refused.contains("split"),
            "{refused}"
        );
    }

    #[test]
    fn cluster_scoped_objects_get_no_namespace() {
        let out = prepare(
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})],
            &ctx(),
        )
        .unwrap();
        assert_eq!(out[0].id.namespace, None);
        assert!(out[0].object["metadata"].get("namespace").is_none());
        assert!(is_cluster_definition(&out[0].id));
    }

    #[test]
    fn reports_every_problem_naming_object_and_field() {
        let mut bad_name = deployment("Web_1");
        bad_name["metadata"]["namespace"] = json!("shop");
        let found = errors(vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            json!(["not", "an", "object"]),
            bad_name,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "Bad.NS"}}),
        ]);
        let expected = [
            "ConfigMap a: apiVersion: required",
            "object 2 (v1 <unset>): kind: required",
            "object 3 (v1 ConfigMap): metadata.name: required",
            "object 4 (v1 ConfigMap): metadata: required",
            "object 5: not a mapping but a list",
            "apps/Deployment shop/Web_1: metadata.name: \"Web_1\" must consist of",
            "example.com/Widget w: kind: unknown kind: the API server does not serve example.com/v1 Widget",
            "Namespace shop/x: metadata.namespace: Namespace is cluster-scoped; remove namespace \"shop\"",
            "ConfigMap shop/dup: defined 2 times",
            "ConfigMap Bad.NS/c: metadata.namespace: \"Bad.NS\" must consist",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for want in expected {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn kinds_defined_by_a_crd_in_the_same_revision_are_known() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": true, "storage": true}],
            },
        });
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let out = prepare(vec![widget.clone(), crd.clone()], &ctx()).unwrap();
        assert_eq!(out[0].id.kind, "CustomResourceDefinition");
        assert_eq!(out[1].id, ObjectId::example("example.com", "Widget", None, "w"));

        let mut namespaced_widget = widget.clone();
        namespaced_widget["metadata"]["namespace"] = json!("shop");
        let found = errors(vec![namespaced_widget, crd.clone()]);
        assert!(found[0].contains("cluster-scoped"), "{found:?}");

        let mut v2 = widget;
        v2["apiVersion"] = json!("example.com/v2");
        let found = errors(vec![v2, crd]);
        assert!(found[0].contains("only in versions v1"), "{found:?}");
    }

    #[test]
    fn the_scope_from_discovery_wins() {
        let discovery = |group: &str, _: &str, kind: &str| (group == "example.com" && kind == "Widget").then_some(true);
        let ctx = PrepareContext {
            scope: &discovery,
            ..ctx()
        };
        let out = prepare(
            vec![json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})],
            &ctx,
        )
        .unwrap();
        assert_eq!(out[0].id.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn rbac_names_may_hold_colons() {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "shop:viewer"}});
        assert!(prepare(vec![role], &ctx()).is_ok());
    }

    #[test]
    fn a_gitsync_label_value_too_long_is_reported() {
        let name = "n".repeat(70);
        let ctx = PrepareContext {
            gitsync_name: &name,
            ..ctx()
        };
        let found = prepare(vec![deployment("web")], &ctx).unwrap_err().0;
        assert!(found[0].contains("at most 63"), "{found:?}");
    }

    #[test]
    fn apply_order_puts_definitions_first_and_rollouts_after_their_templates() {
        let object =
            |api: &str, kind: &str, name: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget"}},
        });
        let out = prepare(
            vec![
                object("example.com/v1", "Widget", "w"),
                object("sluice.dev/v1alpha1", "Rollout", "web"),
                object(
                    "admissionregistration.k8s.io/v1",
                    "ValidatingWebhookConfiguration",
                    "hook",
                ),
                object("v1", "Service", "web"),
                object("sluice.dev/v1alpha1", "AnalysisTemplate", "error-rate"),
                object("v1", "ConfigMap", "b"),
                object("v1", "ConfigMap", "a"),
                object("v1", "ServiceAccount", "web"),
                object("v1", "Namespace", "shop"),
                crd,
            ],
            &ctx(),
        )
        .unwrap();
        let kinds: Vec<String> = out.iter().map(|m| format!("{} {}", m.id.kind, m.id.name)).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition widgets.example.com",
                "Namespace shop",
                "ServiceAccount web",
                "ConfigMap a",
                "ConfigMap b",
                "Service web",
                "AnalysisTemplate error-rate",
                "Rollout web",
                "Widget w",
                "ValidatingWebhookConfiguration hook",
            ]
        );
    }

    #[test]
    fn stale_objects_come_in_deletion_order_and_unreadable_entries_are_skipped() {
        let entry = |i: &ObjectId| i.to_inventory();
        let ns = ObjectId::example("", "Namespace", None, "shop");
        let crd = ObjectId {
            group: CRD_GROUP.into(),
            kind: CRD_KIND.into(),
            ..ObjectId::example("", "", None, "widgets.example.com")
        };
        let web = ObjectId::example("apps", "Deployment", Some("shop"), "web");
        let cm = ObjectId::example("", "ConfigMap", Some("shop"), "settings");
        let kept = ObjectId::example("", "Service", Some("shop"), "web");
        let mut old = Inventory {
            entries: vec![entry(&ns), entry(&crd), entry(&cm), entry(&web), entry(&kept)],
        };
        old.entries.push(InventoryEntry {
            id: "garbage".into(),
            v: "v1".into(),
        });
        let mut moved = entry(&kept);
        moved.v = "v2".into();
        let new = Inventory { entries: vec![moved] };
        assert_eq!(stale(&old, &new), vec![web, cm, ns, crd]);
    }

    #[test]
    fn inventory_is_sorted_and_unique() {
        let out = prepare(vec![deployment("b"), deployment("a")], &ctx()).unwrap();
        let ids: Vec<String> = inventory(&out).entries.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["shop_a_apps_Deployment", "shop_b_apps_Deployment"]);
    }

    fn arb_object() -> impl Strategy<Value = Value> {
        let name = "[a-z][a-z0-9-]{0,8}[a-z0-9]";
        let namespace = proptest::option::of("[a-z]{1,5}");
        (0..5usize, name, namespace, any::<u8>()).prop_map(|(kind, name, namespace, n)| {
            let mut object = match kind {
                0 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": n.to_string()}}),
                1 => deployment(&name),
                2 => {
                    let mut rollout = deployment(&name);
                    rollout["apiVersion"] = json!("sluice.dev/v1alpha1");
                    rollout["kind"] = json!("Rollout");
                    rollout["spec"]["template"]["metadata"]["annotations"] = json!({"n": n.to_string()});
                    rollout
                }
                3 => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                _ => json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}}),
            };
            if kind < 3
                && let Some(namespace) = namespace
            {
                object["metadata"]["namespace"] = json!(namespace);
            }
            object
        })
    }

    /// Valid object sets: objects whose ids collide are dropped (the first wins).
    fn arb_set() -> impl Strategy<Value = Vec<Value>> {
        proptest::collection::vec(arb_object(), 0..12).prop_map(|objects| {
            let mut seen = BTreeSet::new();
            objects
                .into_iter()
                .filter(|o| {
                    let mut id = ObjectId::of(o).unwrap();
                    if BuiltinScope.is_namespaced(&id.group, &id.version, &id.kind) == Some(true) {
                        id.namespace.get_or_insert_with(|| "shop".into());
                    }
                    seen.insert(id.inventory_id())
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn prepare_is_deterministic_stamps_metadata_only_and_stale_is_set_difference(a in arb_set(), b in arb_set()) {
            let out = prepare(a.clone(), &ctx()).unwrap();
            let mut reversed = a.clone();
            reversed.reverse();
            prop_assert_eq!(&out, &prepare(a.clone(), &ctx()).unwrap());
            prop_assert_eq!(&out, &prepare(reversed, &ctx()).unwrap());
            let ids: BTreeSet<String> = out.iter().map(|m| m.id.inventory_id()).collect();
            prop_assert_eq!(ids.len(), out.len());
            for manifest in &out {
                let metadata = &manifest.object["metadata"];
                prop_assert_eq!(&metadata["labels"][GITSYNC_LABEL], "flux.shop");
                prop_assert_eq!(&metadata["annotations"][GIT_REVISION_ANNOTATION], "abc123");
                let input = a.iter().find(|o| o["kind"] == manifest.id.kind.as_str() && o["metadata"]["name"] == manifest.id.name.as_str()
                    && o["metadata"]["namespace"].as_str().unwrap_or("shop") == manifest.id.namespace.as_deref().unwrap_or("shop")).unwrap();
                prop_assert_eq!(&manifest.object["spec"], &input["spec"]);
            }
            let out_b = prepare(b, &ctx()).unwrap();
            let in_b: BTreeSet<String> = out_b.iter().map(|m| m.id.inventory_id()).collect();
            let expected: BTreeSet<String> = ids.difference(&in_b).cloned().collect();
            let gone = stale(&inventory(&out), &inventory(&out_b));
            let got: BTreeSet<String> = gone.iter().map(ObjectId::inventory_id).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(gone.len(), ids.len() - ids.intersection(&in_b).count());
        }
    }
}
