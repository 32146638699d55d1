//! The resource types the simulator serves: the built-in kinds, plus every kind a stored
//! CustomResourceDefinition declares. Discovery, OpenAPI, routing and validation all read from here.
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::status::{ApiError, ApiResult};
use crate::table::PrinterColumn;

/// One version of a resource as served.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedVersion {
    pub name: String,
    /// `openAPIV3Schema` of a CRD version; None for built-in kinds.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    pub status_subresource: bool,
    /// Where the `scale` subresource reads and writes, when served.
    pub scale: Option<ScalePaths>,
}

/// The `scale` subresource's view of an object (CRD `subresources.scale`), as dotted paths.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// Path of the serialized label selector; built-in kinds derive it from `spec.selector` instead.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    fn replicas() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        }
    }
}

/// A dotted field path (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
pub fn dotted_to_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .map(|segment| format!("/{segment}"))
        .collect()
}

/// A resource (group + plural) with every version it is served at. Objects are stored once per
/// resource; versions differ only in the `apiVersion` they are presented with (no conversion).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, preferred (and storage) first.
    pub versions: Vec<ServedVersion>,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Built-in kinds accept strategic merge patch and use the built-in merge keys.
    pub builtin: bool,
    /// Objects of this kind carry `metadata.generation` (bumped on spec changes).
    pub has_generation: bool,
    /// A kind that is only ever created and answered, never stored (the access and rules reviews).
    pub create_only: bool,
}

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }
    pub fn preferred_version(&self) -> &ServedVersion {
        &self.versions[0]
    }
    pub fn version(&self, name: &str) -> Option<&ServedVersion> {
        self.versions.iter().find(|v| v.name == name)
    }
    pub fn has_status_subresource(&self) -> bool {
        self.versions.iter().any(|v| v.status_subresource)
    }
    /// `plural.group`, the name RBAC and error messages use.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// Where objects of this resource are stored: itself, except `events.k8s.io` Events, which are
    /// a second view of core Events (as in a real cluster).
    pub fn storage_resource(&self) -> GroupResource {
        if self.is_events_v1_view() {
            return GroupResource {
                group: String::new(),
                plural: "events".into(),
            };
        }
        GroupResource {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    pub fn is_events_v1_view(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// Whether the `token` subresource (TokenRequest) is served: ServiceAccounts only.
    pub fn serves_token(&self) -> bool {
        self.builtin && self.group.is_empty() && self.plural == "serviceaccounts"
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Identifies a resource independent of version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub plural: String,
}

#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: BTreeMap<GroupResource, Arc<ResourceType>>,
}

impl Registry {
    /// The registry with every built-in kind.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::default();
        for rt in builtin_types() {
            registry.insert(rt);
        }
        registry
    }

    pub fn insert(&mut self, rt: ResourceType) {
        let key = GroupResource {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
        };
        self.types.insert(key, Arc::new(rt));
    }

    pub fn remove(&mut self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.remove(&GroupResource {
            group: group.into(),
            plural: plural.into(),
        })
    }

    /// The resource served at `group/version/plural`, or 404 as the API server answers unknown paths.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> ApiResult<Arc<ResourceType>> {
        self.types
            .get(&GroupResource {
                group: group.into(),
                plural: plural.into(),
            })
            .filter(|rt| rt.version(version).is_some())
            .cloned()
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|rt| rt.group == group && rt.kind == kind)
            .cloned()
    }

    pub fn get(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&GroupResource {
                group: group.into(),
                plural: plural.into(),
            })
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Groups in discovery order: the core group first, then built-in groups, then custom ones, each
    /// with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>, bool)> = Vec::new();
        for rt in self.types.values() {
            let entry = match groups.iter_mut().find(|(g, _, _)| *g == rt.group) {
                Some(entry) => entry,
                None => {
                    groups.push((rt.group.clone(), Vec::new(), rt.builtin));
                    groups.last_mut().expect("just pushed")
                }
            };
            for v in &rt.versions {
                if !entry.1.contains(&v.name) {
                    entry.1.push(v.name.clone());
                }
            }
        }
        groups.sort_by_key(|(g, _, builtin)| (!g.is_empty(), !*builtin, g.clone()));
        groups.into_iter().map(|(g, v, _)| (g, v)).collect()
    }

    /// The resources of one group version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .values()
            .filter(|rt| rt.group == group && rt.version(version).is_some())
            .cloned()
            .collect()
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    let has_generation = !matches!(
        plural,
        "configmaps" | "secrets" | "events" | "leases" | "namespaces" | "services" | "endpoints"
    );
    ResourceType {
        group: group.into(),
        versions: vec![ServedVersion {
            name: version.into(),
            schema: None,
            printer_columns: vec![],
            status_subresource: status,
            scale: matches!(plural, "replicasets" | "deployments").then(ScalePaths::replicas),
        }],
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if matches!(plural, "pods" | "services" | "replicasets" | "deployments") {
            vec!["all".into()]
        } else {
            vec![]
        },
        builtin: true,
        has_generation,
        create_only: false,
    }
}

/// A built-in kind that is only created (a review): answered, never stored.
fn review(group: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
    let mut rt = builtin(group, "v1", kind, plural, namespaced, &[], false);
    rt.create_only = true;
    rt.has_generation = false;
    rt
}

fn builtin_types() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true),
        builtin("", "v1", "Pod", "pods", true, &["po"], true),
        builtin("", "v1", "Service", "services", true, &["svc"], true),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
        builtin("", "v1", "Secret", "secrets", true, &[], false),
        builtin("", "v1", "Event", "events", true, &["ev"], false),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], false),
        builtin("", "v1", "Endpoints", "endpoints", true, &["ep"], false),
        builtin("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], true),
        builtin("apps", "v1", "Deployment", "deployments", true, &["deploy"], true),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"], false),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[], false),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
        ),
        builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], false),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
        ),
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            true,
        ),
        builtin("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], true),
        builtin("batch", "v1", "Job", "jobs", true, &[], true),
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        ),
        review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        ),
        review(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        ),
        review("authentication.k8s.io", "TokenReview", "tokenreviews", false),
    ]
    .into_iter()
    .map(|mut rt| {
        // Kubernetes' own names where the lower-cased kind is not the singular.
        if rt.plural == "endpoints" {
            rt.singular = "endpoints".into();
        }
        rt
    })
    .collect()
}

/// The resource type a CustomResourceDefinition declares, or the reason it cannot be served.
pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
    let group = text(spec, "group").ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = text(names, "plural").ok_or("spec.names.plural is required")?;
    let kind = text(names, "kind").ok_or("spec.names.kind is required")?;
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut versions = Vec::new();
    let mut storage_first: Option<usize> = None;
    for (i, v) in spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?
        .iter()
        .enumerate()
    {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let name = text(v, "name").ok_or(format!("spec.versions[{i}].name is required"))?;
        let printer_columns = match v.get("additionalPrinterColumns") {
            Some(cols) => serde_json::from_value(cols.clone())
                .map_err(|e| format!("spec.versions[{i}].additionalPrinterColumns: {e}"))?,
            None => vec![],
        };
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage_first = Some(versions.len());
        }
        versions.push(ServedVersion {
            name,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            status_subresource: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(|scale| ScalePaths {
                spec_replicas: scale
                    .get("specReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".spec.replicas")
                    .into(),
                status_replicas: scale
                    .get("statusReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".status.replicas")
                    .into(),
                label_selector: scale
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }),
        });
    }
    if versions.is_empty() {
        return Err("spec.versions must serve at least one version".into());
    }
    if let Some(i) = storage_first {
        let storage = versions.remove(i);
        versions.insert(0, storage);
    }
    Ok(ResourceType {
        singular: text(names, "singular").unwrap_or_else(|| kind.to_lowercase()),
        list_kind: text(names, "listKind").unwrap_or_else(|| format!("{kind}List")),
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        namespaced: text(spec, "scope").as_deref() != Some("Cluster"),
        group,
        versions,
        kind,
        plural,
        builtin: false,
        has_generation: true,
        create_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_declares_a_served_resource_with_storage_version_first() {
        let crd = json!({"spec": {"group": "sluice.dev", "scope": "Namespaced",
            "names": {"plural": "rollouts", "kind": "Rollout", "shortNames": ["ro"]},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false},
                {"name": "v1beta1", "served": true, "storage": true, "subresources": {"status": {}},
                 "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}]},
                {"name": "v0", "served": false, "storage": false}]}});
        let rt = from_crd(&crd).unwrap();
        assert_eq!(
            rt.versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["v1beta1", "v1alpha1"]
        );
        assert!(rt.has_status_subresource());
        assert_eq!(rt.short_names, ["ro"]);
        assert_eq!(rt.list_kind, "RolloutList");
        assert_eq!(rt.versions[0].printer_columns[0].json_path, ".status.phase");
    }

    #[test]
    fn crd_without_group_is_rejected_with_the_field() {
        let err = from_crd(&json!({"spec": {"names": {"plural": "x", "kind": "X"}, "versions": []}})).unwrap_err();
        assert!(err.contains("spec.group"), "{err}");
    }

    #[test]
    fn lookup_unknown_resource_is_404_and_groups_start_with_core() {
        let registry = Registry::with_builtins();
        assert_eq!(registry.lookup("apps", "v1", "widgets").unwrap_err().code, 404);
        assert!(registry.lookup("apps", "v1", "replicasets").is_ok());
        assert_eq!(registry.groups()[0].0, "");
    }
}
