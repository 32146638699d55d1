//! The API semantics over the store: what create, update, patch, apply and delete do to an object
//! (uid, generation, status isolation, managedFields, finalizers, schema validation) and the side
//! effects a real control plane adds (serving CRDs, garbage collection, namespace termination).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::apply;
use crate::events;
use crate::patch;
use crate::registry::{self, GroupResource, Registry, ResourceType};
use crate::schema::{self, SchemaStructure};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult, FieldCause};
use crate::store::{ObjectKey, Store, StoreConfig, StoredObject, Txn};
use crate::structure::{BuiltinStructure, Structure};

/// How unknown fields are treated (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Options shared by every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The manager named by the request, or derived from its user agent.
    pub field_manager: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub force: bool,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// A last check of the object to be stored, after validation (the RBAC escalation check).
    pub admission: Option<Admission>,
}

/// The function of an [`Admission`]: the resource, namespace and content of the object to write.
pub type AdmissionCheck = dyn Fn(&ResourceType, &str, &Value) -> ApiResult<()> + Send + Sync;

/// A check of an object about to be written.
#[derive(Clone)]
pub struct Admission(pub Arc<AdmissionCheck>);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// A PATCH request body and its flavour.
#[derive(Debug, Clone, Copy)]
pub struct PatchBody<'a> {
    pub kind: PatchKind,
    pub body: &'a [u8],
}

impl<'a> PatchBody<'a> {
    pub fn new(kind: PatchKind, body: &'a [u8]) -> Self {
        PatchBody { kind, body }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From a `DeleteOptions` body (may be empty) and the `propagationPolicy` / `dryRun` query parameters.
    pub fn parse(body: &[u8], propagation_query: Option<&str>, dry_run: bool) -> ApiResult<Self> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let policy = propagation_query.or_else(|| body.get("propagationPolicy").and_then(Value::as_str));
        let orphan = body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let propagation = match policy {
            Some("Foreground") => Propagation::Foreground,
            Some("Orphan") => Propagation::Orphan,
            Some("Background") | None if !orphan => Propagation::Background,
            None => Propagation::Orphan,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
                )));
            }
        };
        let dry_run = dry_run
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        let pre = |f: &str| {
            body.pointer(&format!("/preconditions/{f}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(DeleteOptions {
            propagation,
            precondition_uid: pre("uid"),
            precondition_resource_version: pre("resourceVersion"),
            dry_run,
        })
    }
}

/// The result of a write: the object as stored (or as it would be, for dry runs), warnings for the
/// `Warning` header, and whether it was created.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Arc<StoredObject>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// The simulated control plane: registry, store and the background work a real one does.
pub struct ApiServer {
    registry: RwLock<Registry>,
    pub store: Store,
    structures: Mutex<HashMap<(GroupResource, String), Arc<SchemaStructure>>>,
    gc: Mutex<GcQueue>,
    gc_wakeup: Notify,
}

#[derive(Default)]
struct GcQueue {
    /// uids of deleted objects whose dependents must be checked.
    removed_owners: Vec<String>,
    /// Objects waiting for their dependents before they go (foreground deletion).
    foreground: Vec<ObjectKey>,
    /// Namespaces being emptied before they go.
    terminating: Vec<String>,
    /// Objects created with owners that may not exist.
    maybe_orphaned: Vec<ObjectKey>,
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn key_of(rt: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        resource: rt.storage_resource(),
        namespace: if rt.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// True when anything but metadata and status differs: the API server bumps generation then.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let relevant = |k: &String| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind");
    let old_keys = old.keys().filter(|k| relevant(k));
    let new_keys = new.keys().filter(|k| relevant(k));
    old_keys.clone().count() != new_keys.count() || old_keys.into_iter().any(|k| old.get(k) != new.get(k))
}

/// Equal apart from resourceVersion and managedFields timestamps: such a write changes nothing.
fn same_object(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
                for e in entries {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
            }
        }
        v
    };
    strip(old) == strip(new)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

impl ApiServer {
    pub fn new(store_config: StoreConfig) -> Arc<Self> {
        let server = Arc::new(ApiServer {
            registry: RwLock::new(Registry::with_builtins()),
            store: Store::new(store_config),
            structures: Mutex::new(HashMap::new()),
            gc: Mutex::new(GcQueue::default()),
            gc_wakeup: Notify::new(),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rt = server.resource("", "namespaces").expect("namespaces are built in");
            server
                .create(
                    &rt,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    &WriteOptions {
                        field_manager: "sluice-sim".into(),
                        ..Default::default()
                    },
                )
                .expect("initial namespaces are valid");
        }
        server
    }

    pub fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn resource(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.registry().get(group, plural)
    }

    fn structure(&self, rt: &ResourceType, version: &str) -> Arc<dyn Structure> {
        if rt.builtin {
            return Arc::new(BuiltinStructure);
        }
        let key = (
            GroupResource {
                group: rt.group.clone(),
                plural: rt.plural.clone(),
            },
            version.to_string(),
        );
        let mut cache = self.structures.lock().unwrap_or_else(|p| p.into_inner());
        let schema = rt
            .version(version)
            .and_then(|v| v.schema.clone())
            .unwrap_or_else(|| json!({"type": "object"}));
        cache
            .entry(key)
            .or_insert_with(|| Arc::new(SchemaStructure::new(schema)))
            .clone()
    }

    /// The object as presented at `version` (objects are stored at the preferred version).
    pub fn present(rt: &ResourceType, version: &str, object: Value) -> Value {
        let mut object = if rt.is_events_v1_view() {
            events::core_to_events_v1(object)
        } else {
            object
        };
        if let Some(o) = object.as_object_mut() {
            o.insert("apiVersion".into(), Value::String(rt.api_version(version)));
            o.insert("kind".into(), Value::String(rt.kind.clone()));
        }
        object
    }

    /// The object as stored: the preferred version of its storage resource.
    fn to_storage(rt: &ResourceType, mut object: Value) -> Value {
        if rt.is_events_v1_view() {
            return events::events_v1_to_core(object);
        }
        if rt.group.is_empty() && rt.plural == "secrets" {
            fold_string_data(&mut object);
        }
        Self::present(rt, &rt.preferred_version().name, object)
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Arc<StoredObject>> {
        self.store
            .lock()
            .get(&key_of(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<ListResult> {
        let (snapshot_rv, after) = match &opts.continue_token {
            Some(token) => decode_continue(token)?,
            None => (None, None),
        };
        let txn = self.store.lock();
        let resource = rt.storage_resource();
        let namespace = namespace.filter(|_| rt.namespaced);
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let limit = opts.limit.filter(|l| *l > 0);
        for object in txn.range(&resource, namespace, after.as_ref()) {
            if !self.matches(object, opts.labels.as_ref(), opts.fields.as_ref()) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(object.clone());
        }
        let resource_version = snapshot_rv.unwrap_or_else(|| txn.resource_version());
        let continue_token = (remaining > 0).then(|| {
            let last = items.last().expect("a limit of at least one item was reached");
            encode_continue(resource_version, &last.key.namespace, &last.key.name)
        });
        Ok(ListResult {
            items,
            resource_version,
            continue_token,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    pub fn matches(
        &self,
        object: &StoredObject,
        labels: Option<&LabelSelector>,
        fields: Option<&FieldSelector>,
    ) -> bool {
        if let Some(labels) = labels
            && !labels.matches(&object.labels)
        {
            return false;
        }
        match fields {
            None => true,
            Some(fields) => {
                if let Some(name) = fields.pinned_name()
                    && name != object.key.name
                {
                    return false;
                }
                fields.matches(&object.value())
            }
        }
    }

    /// POST: a new object.
    pub fn create(&self, rt: &ResourceType, namespace: &str, body: Value, opts: &WriteOptions) -> ApiResult<Written> {
        self.create_with_ownership(rt, namespace, body, opts, None)
    }

    /// Creation; `managed_fields` is set when ownership was already computed (apply that creates).
    fn create_with_ownership(
        &self,
        rt: &ResourceType,
        namespace: &str,
        body: Value,
        opts: &WriteOptions,
        managed_fields: Option<Value>,
    ) -> ApiResult<Written> {
        let version = self.body_version(rt, &body)?;
        let mut warnings = Vec::new();
        let mut object = self.admit(rt, &version, namespace, body, opts, &mut warnings)?;
        let name = match meta_str(&object, "name").filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => match meta_str(&object, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => format!("{prefix}{}", random_suffix()),
                None => {
                    return Err(self.invalid(
                        rt,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "name or generateName is required",
                    ));
                }
            },
        };
        self.check_name(rt, &name)?;
        let now = now_rfc3339();
        {
            let m = meta_mut(&mut object);
            m.insert("name".into(), json!(name));
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now));
            for transient in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "managedFields",
                "selfLink",
            ] {
                m.remove(transient);
            }
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            if rt.has_generation {
                m.insert("generation".into(), json!(1));
            }
        }
        if rt.has_status_subresource()
            && rt.plural != "customresourcedefinitions"
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        self.initialize(rt, &mut object);
        match managed_fields {
            Some(managed) => {
                meta_mut(&mut object).insert("managedFields".into(), managed);
            }
            None => {
                let structure = self.structure(rt, &version);
                apply::track_update(None, &mut object, &opts.field_manager, structure.as_ref(), &now, None);
            }
        }
        let key = key_of(rt, namespace, &name);
        let mut txn = self.store.lock();
        if rt.namespaced {
            self.check_namespace_open(&txn, namespace)?;
        }
        if txn.get(&key).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if opts.dry_run {
            return Ok(Written {
                object: Self::present(rt, &version, object),
                created: true,
                warnings,
            });
        }
        let stored = txn.put(key.clone(), Self::to_storage(rt, object));
        drop(txn);
        self.after_write(rt, &key, &stored, true);
        Ok(Written {
            object: Self::present(rt, &version, stored.to_value()),
            created: true,
            warnings,
        })
    }

    /// PUT: replace an object (or its status), honouring the resourceVersion precondition.
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let version = self.body_version(rt, &body)?;
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let expected_rv = meta_str(&body, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        if expected_rv.is_none() && !rt.builtin {
            return Err(self.invalid(
                rt,
                name,
                "metadata.resourceVersion",
                "FieldValueInvalid",
                "must be specified for an update",
            ));
        }
        let mut warnings = Vec::new();
        let body = self.admit(rt, &version, namespace, body, opts, &mut warnings)?;
        let mut written = self.write_existing(rt, &version, namespace, name, opts, |current| {
            if let Some(expected) = &expected_rv
                && *expected != current.resource_version.to_string()
            {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            Ok((body, false))
        })?;
        written.warnings.extend(warnings);
        Ok(written)
    }

    /// PATCH in any of the four flavours; apply creates the object when it does not exist.
    pub fn patch(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: &str,
        name: &str,
        patch: PatchBody<'_>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let kind = patch.kind;
        let patch_doc = parse_patch_body(kind, patch.body)?;
        if kind == PatchKind::Strategic && !rt.builtin {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
            ));
        }
        if kind == PatchKind::Apply {
            if opts.field_manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests require fieldManager",
                ));
            }
            let exists = self.store.lock().get(&key_of(rt, namespace, name)).is_some();
            if !exists {
                if opts.subresource.is_some() {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                }
                return self.create_by_apply(rt, version, namespace, name, patch_doc, opts);
            }
        }
        let structure = self.structure(rt, version);
        let mut warnings = Vec::new();
        self.write_existing(rt, version, namespace, name, opts, |current| {
            let live = Self::present(rt, version, current.to_value());
            let patched = match kind {
                PatchKind::Merge => patch::merge_patch(&live, &patch_doc)?,
                PatchKind::Json => patch::json_patch(&live, &patch_doc)?,
                PatchKind::Strategic => patch::strategic_merge_patch(&live, &patch_doc, structure.as_ref())?,
                PatchKind::Apply => {
                    let applied = if opts.subresource.is_none() && rt.has_status_subresource() {
                        without(patch_doc.clone(), "status")
                    } else {
                        patch_doc.clone()
                    };
                    let result = apply::apply(
                        Some(&live),
                        &applied,
                        &opts.field_manager,
                        opts.force,
                        structure.as_ref(),
                        &now_rfc3339(),
                        opts.subresource.as_deref(),
                    )?;
                    // Validation applies to the result: an apply configuration may be partial.
                    let result = self.admit(rt, version, namespace, result, opts, &mut warnings)?;
                    return Ok((result, true));
                }
            };
            if meta_str(&patched, "resourceVersion").is_some_and(|rv| rv != current.resource_version.to_string()) {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let patched = self.admit(rt, version, namespace, patched, opts, &mut warnings)?;
            Ok((patched, false))
        })
        .map(|mut written| {
            written.warnings.extend(warnings);
            written
        })
    }

    fn create_by_apply(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: &str,
        name: &str,
        applied: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let structure = self.structure(rt, version);
        let mut applied = if rt.has_status_subresource() {
            without(applied, "status")
        } else {
            applied
        };
        meta_mut(&mut applied).insert("name".into(), json!(name));
        let object = apply::apply(
            None,
            &applied,
            &opts.field_manager,
            opts.force,
            structure.as_ref(),
            &now_rfc3339(),
            None,
        )?;
        let managed = meta(&object).and_then(|m| m.get("managedFields")).cloned();
        self.create_with_ownership(rt, namespace, object, opts, managed)
    }

    /// The shared tail of update and patch: `change` computes the new object from the current one
    /// (and says whether managedFields are already set, as apply does); this keeps identity, isolates
    /// status, bumps generation, tracks ownership, skips no-op writes and finishes deletions.
    fn write_existing(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: &str,
        name: &str,
        opts: &WriteOptions,
        change: impl FnOnce(&StoredObject) -> ApiResult<(Value, bool)>,
    ) -> ApiResult<Written> {
        let key = key_of(rt, namespace, name);
        let structure = self.structure(rt, version);
        let mut txn = self.store.lock();
        let current = txn
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        // Shared, not copied: only a no-op write hands it out, as its answer.
        let old = current.value();
        let (proposed, ownership_done) = change(&current)?;
        let mut new = scope_to_subresource(rt, opts.subresource.as_deref(), name, &old, proposed, ownership_done)?;
        keep_server_owned_metadata(&old, &mut new, ownership_done);
        let mut new = Self::to_storage(rt, new);
        if rt.has_generation && opts.subresource.is_none() && spec_changed(&old, &new) {
            bump_generation(&old, &mut new);
        }
        if !ownership_done {
            apply::track_update(
                Some(&*old),
                &mut new,
                &opts.field_manager,
                structure.as_ref(),
                &now_rfc3339(),
                opts.subresource.as_deref(),
            );
        }
        if current.deleting && finalizers(&new).len() > finalizers(&old).len() {
            return Err(self.invalid(
                rt,
                name,
                "metadata.finalizers",
                "Forbidden",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
        if same_object(&old, &new) {
            return Ok(Written {
                object: Self::present(rt, version, Value::clone(&old)),
                created: false,
                warnings: Vec::new(),
            });
        }
        if rt.plural == "customresourcedefinitions" {
            registry::from_crd(&new).map_err(|e| self.invalid(rt, name, "spec", "FieldValueInvalid", &e))?;
        }
        if opts.dry_run {
            return Ok(Written {
                object: Self::present(rt, version, new),
                created: false,
                warnings: Vec::new(),
            });
        }
        if current.deleting && finalizers(&new).is_empty() {
            let gone = txn.remove(&key).expect("the object was read in this transaction");
            drop(txn);
            self.after_remove(rt, &gone);
            return Ok(Written {
                object: Self::present(rt, version, gone.to_value()),
                created: false,
                warnings: Vec::new(),
            });
        }
        let stored = txn.put(key.clone(), new);
        drop(txn);
        self.after_write(rt, &key, &stored, false);
        Ok(Written {
            object: Self::present(rt, version, stored.to_value()),
            created: false,
            warnings: Vec::new(),
        })
    }

    /// The `scale` subresource (autoscaling/v1 Scale) of an object whose kind serves it.
    pub fn scale(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        let paths = scale_paths(rt)?;
        Ok(scale_of(rt, paths, &self.get(rt, namespace, name)?.to_value()))
    }

    /// Writes through the `scale` subresource: `change` turns the current Scale into the desired one,
    /// whose `spec.replicas` lands on the object (honouring a resourceVersion precondition).
    pub fn write_scale(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &WriteOptions,
        change: impl FnOnce(Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let paths = scale_paths(rt)?;
        let main = WriteOptions {
            subresource: None,
            ..opts.clone()
        };
        let written = self.write_existing(rt, &rt.preferred_version().name, namespace, name, &main, |current| {
            let mut object = current.to_value();
            let desired = change(scale_of(rt, paths, &object))?;
            if let Some(rv) = desired.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && !rv.is_empty()
                && rv != current.resource_version.to_string()
            {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let replicas = desired.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            if replicas < 0 {
                return Err(self.invalid(
                    rt,
                    name,
                    "spec.replicas",
                    "FieldValueInvalid",
                    &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            set_at_pointer(
                &mut object,
                &registry::dotted_to_pointer(&paths.spec_replicas),
                json!(replicas),
            );
            Ok((object, false))
        })?;
        Ok(scale_of(rt, paths, &written.object))
    }

    /// DELETE of one object. Returns the object and whether it is gone (false: waiting on finalizers).
    pub fn delete(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        let key = key_of(rt, namespace, name);
        let mut txn = self.store.lock();
        let current = txn
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(uid) = &opts.precondition_uid
            && *uid != current.uid
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current.uid
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && *rv != current.resource_version.to_string()
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current.resource_version
                ),
            ));
        }
        let mut object = current.to_value();
        let mut pending = finalizers(&object);
        if rt.plural == "namespaces" {
            pending.push("kubernetes".into());
        }
        if opts.propagation == Propagation::Foreground && !txn.dependents_of(&current.uid).is_empty() {
            pending.push("foregroundDeletion".into());
        }
        if opts.dry_run {
            return Ok((Self::present(rt, version, object), pending.is_empty()));
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&mut txn, &current.uid);
        }
        if pending.is_empty() {
            let gone = txn.remove(&key).expect("the object was read in this transaction");
            drop(txn);
            self.after_remove(rt, &gone);
            return Ok((Self::present(rt, version, gone.to_value()), true));
        }
        if !current.deleting {
            let m = meta_mut(&mut object);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if opts.propagation == Propagation::Foreground && pending.iter().any(|f| f == "foregroundDeletion") {
                let mut list = finalizers(&object);
                if !list.iter().any(|f| f == "foregroundDeletion") {
                    list.push("foregroundDeletion".into());
                }
                meta_mut(&mut object).insert("finalizers".into(), json!(list));
            }
            if rt.plural == "namespaces" {
                object["status"] = json!({"phase": "Terminating"});
            }
            let stored = txn.put(key.clone(), object);
            drop(txn);
            let mut gc = self.gc.lock().unwrap_or_else(|p| p.into_inner());
            if rt.plural == "namespaces" {
                gc.terminating.push(name.to_string());
            }
            if opts.propagation == Propagation::Foreground {
                gc.foreground.push(key);
            }
            drop(gc);
            self.gc_wakeup.notify_one();
            return Ok((Self::present(rt, version, stored.to_value()), false));
        }
        Ok((Self::present(rt, version, object), false))
    }

    /// DELETE of a collection: every matching object, each as a single delete would.
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Vec<Value>> {
        let listed = self.list(
            rt,
            namespace,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut deleted = Vec::new();
        for object in listed.items {
            match self.delete(rt, version, &object.key.namespace, &object.key.name, opts) {
                Ok((object, _)) => deleted.push(object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    fn orphan_dependents(&self, txn: &mut Txn<'_>, owner_uid: &str) {
        for dependent in txn.dependents_of(owner_uid) {
            if let Some(object) = txn.get(&dependent) {
                let mut value = object.to_value();
                if let Some(Value::Array(refs)) = value.pointer_mut("/metadata/ownerReferences") {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                }
                txn.put(dependent, value);
            }
        }
    }

    /// Checks a request body's apiVersion/kind against the endpoint and returns the version to use.
    fn body_version(&self, rt: &ResourceType, body: &Value) -> ApiResult<String> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        let preferred = rt.preferred_version().name.clone();
        match body.get("apiVersion").and_then(Value::as_str) {
            None => Ok(preferred),
            Some(api_version) => {
                let version = api_version.rsplit('/').next().unwrap_or_default();
                let group = if api_version.contains('/') {
                    api_version.split('/').next().unwrap_or_default()
                } else {
                    ""
                };
                if group != rt.group || rt.version(version).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "the API version in the data ({api_version}) does not match the expected API version ({})",
                        rt.api_version(&preferred)
                    )));
                }
                if let Some(kind) = body.get("kind").and_then(Value::as_str)
                    && kind != rt.kind
                {
                    return Err(ApiError::bad_request(format!(
                        "the kind in the data ({kind}) does not match the expected kind ({})",
                        rt.kind
                    )));
                }
                Ok(version.to_string())
            }
        }
    }

    /// Validation and defaulting of an incoming object: namespace, schema (CRDs), built-in rules.
    fn admit(
        &self,
        rt: &ResourceType,
        version: &str,
        namespace: &str,
        mut object: Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        if rt.namespaced
            && let Some(ns) = meta_str(&object, "namespace")
            && !ns.is_empty()
            && ns != namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        if let Some(schema) = rt.version(version).and_then(|v| v.schema.as_ref()) {
            let pruned = schema::prune(schema, &mut object);
            if !pruned.is_empty() {
                match opts.field_validation {
                    FieldValidation::Strict => {
                        let fields: Vec<String> = pruned.iter().map(|p| format!("unknown field \"{p}\"")).collect();
                        return Err(ApiError::bad_request(format!(
                            "strict decoding error: {}",
                            fields.join(", ")
                        )));
                    }
                    FieldValidation::Warn => warnings.extend(pruned.iter().map(|p| format!("unknown field \"{p}\""))),
                    FieldValidation::Ignore => {}
                }
            }
            schema::apply_defaults(schema, &mut object);
            let causes = schema::validate(schema, &object);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
            }
        }
        self.builtin_rules(rt, &name, &object)?;
        if let Some(admission) = &opts.admission {
            (admission.0)(rt, namespace, &object)?;
        }
        Ok(object)
    }

    fn builtin_rules(&self, rt: &ResourceType, name: &str, object: &Value) -> ApiResult<()> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("apps", "replicasets" | "deployments") => {
                let selector = object
                    .pointer("/spec/selector")
                    .filter(|s| !s.is_null())
                    .ok_or_else(|| self.invalid(rt, name, "spec.selector", "FieldValueRequired", "Required value"))?;
                let selector = LabelSelector::from_json(selector)?;
                if selector.is_empty() {
                    return Err(self.invalid(
                        rt,
                        name,
                        "spec.selector",
                        "FieldValueInvalid",
                        "empty selector is invalid for deployment",
                    ));
                }
                let labels = object
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if !selector.matches(&labels) {
                    return Err(self.invalid(
                        rt,
                        name,
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        "`selector` does not match template `labels`",
                    ));
                }
                Ok(())
            }
            ("", "pods") => {
                let containers = object.pointer("/spec/containers").and_then(Value::as_array);
                if containers.is_none_or(|c| c.is_empty()) {
                    return Err(self.invalid(rt, name, "spec.containers", "FieldValueRequired", "Required value"));
                }
                Ok(())
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let crd =
                    registry::from_crd(object).map_err(|e| self.invalid(rt, name, "spec", "FieldValueInvalid", &e))?;
                let expected = format!("{}.{}", crd.plural, crd.group);
                if !name.is_empty() && name != expected {
                    return Err(self.invalid(
                        rt,
                        name,
                        "metadata.name",
                        "FieldValueInvalid",
                        &format!("must be spec.names.plural+\".\"+spec.group ({expected})"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn invalid(&self, rt: &ResourceType, name: &str, field: &str, reason: &'static str, message: &str) -> ApiError {
        ApiError::invalid(
            &rt.group,
            &rt.kind,
            name,
            vec![FieldCause {
                reason,
                field: field.into(),
                message: message.into(),
            }],
        )
    }

    fn check_name(&self, rt: &ResourceType, name: &str) -> ApiResult<()> {
        match schema::validate_object_name(name) {
            Some(message) => Err(self.invalid(
                rt,
                name,
                "metadata.name",
                "FieldValueInvalid",
                &format!("Invalid value: {name:?}: {message}"),
            )),
            None => Ok(()),
        }
    }

    fn check_namespace_open(&self, txn: &Txn<'_>, namespace: &str) -> ApiResult<()> {
        let key = ObjectKey {
            resource: GroupResource {
                group: String::new(),
                plural: "namespaces".into(),
            },
            namespace: String::new(),
            name: namespace.into(),
        };
        match txn.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if ns.deleting => Err(ApiError::new(
                403,
                "Forbidden",
                format!("unable to create new content in namespace {namespace} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Fields a real control plane sets on creation.
    fn initialize(&self, rt: &ResourceType, object: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
                object["status"] = json!({"phase": "Active"});
            }
            ("", "services") => {
                let spec = object.get_mut("spec").and_then(Value::as_object_mut);
                if let Some(spec) = spec {
                    spec.entry("type").or_insert(json!("ClusterIP"));
                    if !spec.contains_key("clusterIP") {
                        let ip = format!("10.96.{}.{}", fastrand::u8(0..=255), fastrand::u8(1..=254));
                        spec.insert("clusterIP".into(), json!(ip));
                        spec.insert("clusterIPs".into(), json!([ip]));
                    }
                    spec.entry("sessionAffinity").or_insert(json!("None"));
                }
            }
            ("", "pods") => {
                object["status"] = json!({"phase": "Pending"});
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let names = object.pointer("/spec/names").cloned().unwrap_or(json!({}));
                let now = now_rfc3339();
                object["status"] = json!({
                    "acceptedNames": names,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                    ],
                    "storedVersions": [object.pointer("/spec/versions").and_then(Value::as_array)
                        .and_then(|vs| vs.iter().find(|v| v.get("storage") == Some(&json!(true))))
                        .and_then(|v| v.get("name")).cloned().unwrap_or(json!("v1"))],
                });
            }
            _ => {}
        }
    }

    fn after_write(&self, rt: &ResourceType, key: &ObjectKey, stored: &StoredObject, created: bool) {
        if rt.plural == "customresourcedefinitions"
            && rt.group == "apiextensions.k8s.io"
            && let Ok(served) = registry::from_crd(&stored.to_value())
        {
            self.structures.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.registry.write().unwrap_or_else(|p| p.into_inner()).insert(served);
        }
        if created && !stored.owners.is_empty() {
            let txn = self.store.lock();
            let orphaned = stored.owners.iter().any(|uid| !txn.uid_exists(uid));
            drop(txn);
            if orphaned {
                self.gc
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .maybe_orphaned
                    .push(key.clone());
                self.gc_wakeup.notify_one();
            }
        }
    }

    fn after_remove(&self, rt: &ResourceType, gone: &StoredObject) {
        if rt.plural == "customresourcedefinitions"
            && rt.group == "apiextensions.k8s.io"
            && let Ok(served) = registry::from_crd(&gone.to_value())
        {
            self.registry
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&served.group, &served.plural);
            self.structures.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let resource = GroupResource {
                group: served.group.clone(),
                plural: served.plural.clone(),
            };
            let mut txn = self.store.lock();
            for key in txn.keys_of_resource(&resource) {
                txn.remove(&key);
            }
        }
        self.gc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .removed_owners
            .push(gone.uid.clone());
        self.gc_wakeup.notify_one();
    }

    /// Runs garbage collection and namespace termination until the server is dropped.
    pub async fn run_gc(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.gc_wakeup.notified() => {},
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {},
            }
            self.collect_garbage();
        }
    }

    /// One pass of garbage collection: dependents of deleted owners, foreground deletions, namespaces.
    pub fn collect_garbage(&self) {
        let work = std::mem::take(&mut *self.gc.lock().unwrap_or_else(|p| p.into_inner()));
        let background = DeleteOptions::default();
        let mut dependents = Vec::new();
        {
            let txn = self.store.lock();
            for uid in &work.removed_owners {
                dependents.extend(txn.dependents_of(uid));
            }
            dependents.extend(work.maybe_orphaned.iter().cloned());
        }
        for key in dependents {
            self.collect_if_orphaned(&key, &background);
        }
        let mut still_waiting = GcQueue::default();
        for key in work.foreground {
            if !self.finish_foreground(&key) {
                still_waiting.foreground.push(key);
            }
        }
        for namespace in work.terminating {
            if !self.finish_namespace(&namespace) {
                still_waiting.terminating.push(namespace);
            }
        }
        let mut gc = self.gc.lock().unwrap_or_else(|p| p.into_inner());
        gc.foreground.extend(still_waiting.foreground);
        gc.terminating.extend(still_waiting.terminating);
    }

    fn rt_of(&self, key: &ObjectKey) -> Option<Arc<ResourceType>> {
        self.resource(&key.resource.group, &key.resource.plural)
    }

    /// Deletes an object whose owners are all gone; drops references to owners that are gone when
    /// some remain.
    fn collect_if_orphaned(&self, key: &ObjectKey, opts: &DeleteOptions) {
        let Some(rt) = self.rt_of(key) else { return };
        let mut txn = self.store.lock();
        let Some(object) = txn.get(key) else { return };
        let live: Vec<&String> = object.owners.iter().filter(|uid| txn.uid_exists(uid)).collect();
        if live.len() == object.owners.len() {
            return;
        }
        if live.is_empty() {
            drop(txn);
            let _ = self.delete(&rt, &rt.preferred_version().name, &key.namespace, &key.name, opts);
            return;
        }
        let mut value = object.to_value();
        let live: Vec<String> = live.into_iter().cloned().collect();
        if let Some(Value::Array(refs)) = value.pointer_mut("/metadata/ownerReferences") {
            refs.retain(|r| {
                r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| live.iter().any(|l| l == u))
            });
        }
        txn.put(key.clone(), value);
    }

    /// Foreground deletion: delete dependents, and once none are left, let the owner go.
    fn finish_foreground(&self, key: &ObjectKey) -> bool {
        let Some(rt) = self.rt_of(key) else { return true };
        let (uid, dependents) = {
            let txn = self.store.lock();
            let Some(object) = txn.get(key) else { return true };
            (object.uid.clone(), txn.dependents_of(&object.uid))
        };
        if !dependents.is_empty() {
            let foreground = DeleteOptions {
                propagation: Propagation::Foreground,
                ..Default::default()
            };
            for dependent in dependents {
                if let Some(dep_rt) = self.rt_of(&dependent) {
                    let _ = self.delete(
                        &dep_rt,
                        &dep_rt.preferred_version().name,
                        &dependent.namespace,
                        &dependent.name,
                        &foreground,
                    );
                }
            }
            let txn = self.store.lock();
            if !txn.dependents_of(&uid).is_empty() {
                return false;
            }
        }
        self.remove_finalizer(&rt, key, "foregroundDeletion");
        true
    }

    /// Namespace termination: delete everything in it, then the namespace itself.
    fn finish_namespace(&self, namespace: &str) -> bool {
        let keys = self.store.lock().keys_in_namespace(namespace);
        let background = DeleteOptions::default();
        for key in &keys {
            if let Some(rt) = self.rt_of(key) {
                let _ = self.delete(
                    &rt,
                    &rt.preferred_version().name,
                    &key.namespace,
                    &key.name,
                    &background,
                );
            }
        }
        if !self.store.lock().keys_in_namespace(namespace).is_empty() {
            return false;
        }
        let key = ObjectKey {
            resource: GroupResource {
                group: String::new(),
                plural: "namespaces".into(),
            },
            namespace: String::new(),
            name: namespace.into(),
        };
        let mut txn = self.store.lock();
        if let Some(gone) = txn.remove(&key) {
            drop(txn);
            if let Some(rt) = self.rt_of(&key) {
                self.after_remove(&rt, &gone);
            }
        }
        true
    }

    fn remove_finalizer(&self, rt: &ResourceType, key: &ObjectKey, finalizer: &str) {
        let opts = WriteOptions {
            field_manager: "sluice-sim-gc".into(),
            ..Default::default()
        };
        let _ = self.write_existing(
            rt,
            &rt.preferred_version().name,
            &key.namespace,
            &key.name,
            &opts,
            |current| {
                let mut value = current.to_value();
                if let Some(Value::Array(list)) = value.pointer_mut("/metadata/finalizers") {
                    list.retain(|f| f != finalizer);
                }
                Ok((value, false))
            },
        );
    }
}

fn scale_paths(rt: &ResourceType) -> ApiResult<&registry::ScalePaths> {
    rt.preferred_version().scale.as_ref().ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource (scale)",
        )
    })
}

/// The autoscaling/v1 Scale view of an object.
fn scale_of(rt: &ResourceType, paths: &registry::ScalePaths, object: &Value) -> Value {
    let at = |path: &str| object.pointer(&registry::dotted_to_pointer(path)).cloned();
    let selector = match &paths.label_selector {
        Some(path) => at(path)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        None if rt.builtin => object
            .pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_json(s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let meta = meta(object).cloned().unwrap_or_default();
    let pick = |field: &str| meta.get(field).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
                     "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp")},
        "spec": {"replicas": at(&paths.spec_replicas).unwrap_or(json!(0))},
        "status": {"replicas": at(&paths.status_replicas).unwrap_or(json!(0)), "selector": selector},
    })
}

/// Sets the value at a JSON pointer, creating intermediate objects.
fn set_at_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut current = target;
    let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if !current.is_object() {
            *current = json!({});
        }
        let map = current.as_object_mut().expect("made an object above");
        if i + 1 == segments.len() {
            map.insert(segment.to_string(), value);
            return;
        }
        current = map.entry(segment.to_string()).or_insert_with(|| json!({}));
    }
}

fn without(mut value: Value, field: &str) -> Value {
    if let Some(o) = value.as_object_mut() {
        o.remove(field);
    }
    value
}

/// Parses a PATCH body: JSON for every flavour, and YAML too for apply (kubectl sends JSON, people send YAML).
fn parse_patch_body(kind: PatchKind, body: &[u8]) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_error) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_error})")))
        }
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Continue tokens carry the list's resourceVersion and the last key returned.
fn encode_continue(resource_version: u64, namespace: &str, name: &str) -> String {
    let raw =
        serde_json::to_vec(&json!({"rv": resource_version, "ns": namespace, "name": name})).expect("serializable");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

type ContinueFrom = (Option<u64>, Option<(String, String)>);

fn decode_continue(token: &str) -> ApiResult<ContinueFrom> {
    let bad = || ApiError::bad_request("continue key is not valid");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect();
    let value: Value = serde_json::from_slice(&bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let rv = value.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = value.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = value.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((Some(rv), Some((ns.to_string(), name.to_string()))))
}

/// What a write may change: through `status`, only the status (and managedFields when the write tracked
/// ownership itself); through the main resource of a kind with a status subresource, everything but
/// the status.
fn scope_to_subresource(
    rt: &ResourceType,
    subresource: Option<&str>,
    name: &str,
    old: &Value,
    proposed: Value,
    ownership_done: bool,
) -> ApiResult<Value> {
    match subresource {
        Some("status") => {
            let mut new = old.clone();
            match proposed.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
            if ownership_done && let Some(managed) = meta(&proposed).and_then(|m| m.get("managedFields")) {
                meta_mut(&mut new).insert("managedFields".into(), managed.clone());
            }
            Ok(new)
        }
        Some(other) => Err(ApiError::not_found(&rt.group, &format!("{}/{other}", rt.plural), name)),
        None => {
            let mut new = proposed;
            if rt.has_status_subresource() && rt.plural != "customresourcedefinitions" {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            Ok(new)
        }
    }
}

/// Identity and server-owned metadata never come from the client; neither do managedFields unless the
/// write computed them (apply).
fn keep_server_owned_metadata(old: &Value, new: &mut Value, ownership_done: bool) {
    let old_meta = meta(old).cloned().unwrap_or_default();
    let m = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    if !ownership_done {
        match old_meta.get("managedFields") {
            Some(v) => m.insert("managedFields".into(), v.clone()),
            None => m.remove("managedFields"),
        };
    }
}

/// metadata.generation one above the old object's (a spec change).
fn bump_generation(old: &Value, new: &mut Value) {
    let generation = meta(old)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        + 1;
    meta_mut(new).insert("generation".into(), json!(generation));
}

#[cfg(test)]
mod tests;

/// A Secret's write-only `stringData` is merged into `data` (base64), winning over the same key, and
/// never stored, as the API server does.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(object) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = object.remove("stringData") else {
        return;
    };
    let data = object.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        data[key.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}
