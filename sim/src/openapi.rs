//! OpenAPI v3 documents per group version, generated from the registry: the PATCH operations kubectl's
//! field-validation check looks for, and schemas for `kubectl explain` (CRD schemas as declared).
use serde_json::{Map, Value, json};

use crate::discovery::fingerprint;
use crate::registry::{Registry, ResourceType, ServedVersion};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// GET /openapi/v3: where each group version's document is. The hash changes with the document, so
/// clients that cache documents by URL (kubectl does) refetch exactly when a CRD changes.
pub fn v3_index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let Some(document) = v3_document(registry, &group, &version) else {
                continue;
            };
            let key = group_version_path(&group, &version);
            let hash = format!("{:032X}", fingerprint(document.to_string().as_bytes()));
            let url = format!("/openapi/v3/{key}?hash={hash}");
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// GET /openapi/v3/api/v1 or /openapi/v3/apis/{group}/{version}; None when nothing is served there.
pub fn v3_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = meta_schemas();
    for rt in &types {
        let Some(served) = rt.version(version) else {
            continue;
        };
        let resource = Resource { rt, served };
        resource.add_paths(&mut paths);
        schemas.insert(resource.schema_name(&rt.kind), resource.kind_schema());
        schemas.insert(resource.schema_name(&rt.list_kind), resource.list_schema());
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `api/v1` for the core group, `apis/{group}/{version}` otherwise: the index key and the REST prefix.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// What an operation does; decides its HTTP method, operation id, parameters, body and responses.
#[derive(Clone, Copy)]
enum Action {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Action {
    fn method(self) -> &'static str {
        match self {
            Action::List | Action::Read => "get",
            Action::Create => "post",
            Action::Replace => "put",
            Action::Patch => "patch",
            Action::Delete | Action::DeleteCollection => "delete",
        }
    }

    /// The `x-kubernetes-action` value.
    fn name(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Create => "post",
            Action::DeleteCollection => "deletecollection",
            Action::Read => "get",
            Action::Replace => "put",
            Action::Patch => "patch",
            Action::Delete => "delete",
        }
    }

    /// The verb that starts the operation id (`patchAppsV1NamespacedReplicaSet`).
    fn op_verb(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Create => "create",
            Action::DeleteCollection => "deleteCollection",
            Action::Read => "read",
            Action::Replace => "replace",
            Action::Patch => "patch",
            Action::Delete => "delete",
        }
    }

    /// Query parameters. kubectl checks the PATCH operation for an inline `fieldValidation` query
    /// parameter to decide it may leave validation to the server.
    fn parameters(self) -> Vec<Value> {
        let names: Vec<&str> = match self {
            Action::List => LIST_PARAMS.to_vec(),
            Action::Create | Action::Replace => vec!["dryRun", "fieldManager", "fieldValidation"],
            Action::Patch => vec!["dryRun", "fieldManager", "fieldValidation", "force"],
            Action::Delete => DELETE_PARAMS.to_vec(),
            Action::DeleteCollection => DELETE_PARAMS.iter().chain(&LIST_PARAMS).copied().collect(),
            Action::Read => vec![],
        };
        names.iter().map(|name| query_param(name)).collect()
    }
}

const LIST_PARAMS: [&str; 10] = [
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

const DELETE_PARAMS: [&str; 3] = ["dryRun", "gracePeriodSeconds", "propagationPolicy"];

fn query_param(name: &str) -> Value {
    let (kind, description) = match name {
        "allowWatchBookmarks" => ("boolean", "Requests BOOKMARK watch events."),
        "continue" => ("string", "Continue token from a previous limited list."),
        "dryRun" => ("string", "When `All`, changes are validated but not persisted."),
        "fieldManager" => ("string", "Name of the actor making the change, for field ownership."),
        "fieldSelector" => ("string", "Restricts the list by object fields."),
        "fieldValidation" => (
            "string",
            "Ignore, Warn or Strict handling of unknown or duplicate fields.",
        ),
        "force" => ("boolean", "Forces an apply to take ownership of conflicting fields."),
        "gracePeriodSeconds" => ("integer", "Seconds before the object is deleted."),
        "labelSelector" => ("string", "Restricts the list by labels."),
        "limit" => ("integer", "Maximum number of items to return."),
        "propagationPolicy" => ("string", "Orphan, Background or Foreground deletion of dependents."),
        "timeoutSeconds" => ("integer", "Timeout of the list or watch call."),
        "watch" => ("boolean", "Watch for changes instead of listing."),
        _ => ("string", "See the Kubernetes API conventions."),
    };
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the object"),
        "schema": {"type": "string", "uniqueItems": true}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The response of an operation returning the schema `name`.
fn response(name: &str) -> Value {
    let schema = schema_ref(name);
    json!({"description": "OK", "content": {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}})
}

/// The object-metadata and helper schemas every document refers to, left open: clients only
/// need them to resolve references.
fn meta_schemas() -> Map<String, Value> {
    ["DeleteOptions", "ListMeta", "ObjectMeta", "Patch", "Status"]
        .iter()
        .map(|name| (format!("{META}.{name}"), json!({"type": "object"})))
        .collect()
}

/// One resource at one served version.
struct Resource<'a> {
    rt: &'a ResourceType,
    served: &'a ServedVersion,
}

impl Resource<'_> {
    fn gvk(&self, kind: &str) -> Value {
        json!({"group": self.rt.group, "version": self.served.name, "kind": kind})
    }

    /// `io.k8s.api.apps.v1.ReplicaSet` for built-in kinds (Kubernetes' own names), reverse-DNS group
    /// for custom ones (`dev.sluice.v1alpha1.Rollout`), as the API server names CRD schemas.
    fn schema_name(&self, kind: &str) -> String {
        let group = &self.rt.group;
        let package = match group.as_str() {
            _ if !self.rt.builtin => group.rsplit('.').collect::<Vec<_>>().join("."),
            "" => "io.k8s.api.core".into(),
            "apiextensions.k8s.io" => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".into(),
            _ => format!("io.k8s.api.{}", group.split('.').next().unwrap_or_default()),
        };
        format!("{package}.{}.{kind}", self.served.name)
    }

    /// `{verb}{Group}{Version}[Namespaced]{Kind}{suffix}`, the Kubernetes operation id convention.
    fn operation_id(&self, action: Action, namespaced: bool, suffix: &str) -> String {
        let group: String = match self.rt.group.as_str() {
            "" => "Core".into(),
            group => group
                .trim_end_matches(".k8s.io")
                .split(['.', '-'])
                .map(capitalize)
                .collect(),
        };
        let scope = if namespaced { "Namespaced" } else { "" };
        let version = capitalize(&self.served.name);
        format!("{}{group}{version}{scope}{}{suffix}", action.op_verb(), self.rt.kind)
    }

    /// Collection, item and status paths; namespaced kinds also get the all-namespaces list path.
    fn add_paths(&self, paths: &mut Map<String, Value>) {
        let prefix = format!("/{}", group_version_path(&self.rt.group, &self.served.name));
        let plural = &self.rt.plural;
        let namespaced = self.rt.namespaced;
        let collection = if namespaced {
            let all = self.path_item(&[Action::List], false, "ForAllNamespaces", &[]);
            paths.insert(format!("{prefix}/{plural}"), all);
            format!("{prefix}/namespaces/{{namespace}}/{plural}")
        } else {
            format!("{prefix}/{plural}")
        };
        let scope: &[&str] = if namespaced { &["namespace"] } else { &[] };
        let collection_actions = [Action::List, Action::Create, Action::DeleteCollection];
        let item_actions = [Action::Read, Action::Replace, Action::Patch, Action::Delete];
        let item_params = [&["name"], scope].concat();
        paths.insert(
            collection.clone(),
            self.path_item(&collection_actions, namespaced, "", scope),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            self.path_item(&item_actions, namespaced, "", &item_params),
        );
        if self.served.status_subresource {
            let status_actions = [Action::Read, Action::Replace, Action::Patch];
            paths.insert(
                format!("{collection}/{{name}}/status"),
                self.path_item(&status_actions, namespaced, "Status", &item_params),
            );
        }
    }

    fn path_item(&self, actions: &[Action], namespaced: bool, suffix: &str, path_params: &[&str]) -> Value {
        let mut item = Map::new();
        for action in actions {
            item.insert(action.method().into(), self.operation(*action, namespaced, suffix));
        }
        let mut parameters: Vec<Value> = path_params.iter().map(|name| path_param(name)).collect();
        parameters.push(
            json!({"name": "pretty", "in": "query", "description": "Pretty-print the output.",
            "schema": {"type": "string", "uniqueItems": true}}),
        );
        item.insert("parameters".into(), Value::Array(parameters));
        Value::Object(item)
    }

    fn operation(&self, action: Action, namespaced: bool, suffix: &str) -> Value {
        let mut op = json!({
            "description": format!("{} {}", action.name(), self.rt.kind),
            "operationId": self.operation_id(action, namespaced, suffix),
            "parameters": action.parameters(),
            "responses": self.responses(action),
            "x-kubernetes-action": action.name(),
            "x-kubernetes-group-version-kind": self.gvk(&self.rt.kind),
        });
        if let Some(body) = self.request_body(action) {
            op["requestBody"] = body;
        }
        op
    }

    fn request_body(&self, action: Action) -> Option<Value> {
        let object = schema_ref(&self.schema_name(&self.rt.kind));
        let content = match action {
            Action::Create | Action::Replace => json!({"*/*": {"schema": object}}),
            // No strategic merge patch, even for built-in kinds: kubectl then builds client-side
            // apply patches from its compiled-in types rather than from these open schemas.
            Action::Patch => {
                let patch = json!({"schema": schema_ref(&format!("{META}.Patch"))});
                json!({
                    "application/apply-patch+yaml": patch,
                    "application/json-patch+json": patch,
                    "application/merge-patch+json": patch,
                })
            }
            Action::Delete | Action::DeleteCollection => {
                json!({"*/*": {"schema": schema_ref(&format!("{META}.DeleteOptions"))}})
            }
            Action::List | Action::Read => return None,
        };
        let required = matches!(action, Action::Create | Action::Replace | Action::Patch);
        Some(json!({"content": content, "required": required}))
    }

    fn responses(&self, action: Action) -> Value {
        let object = response(&self.schema_name(&self.rt.kind));
        let status = response(&format!("{META}.Status"));
        let unauthorized = json!({"description": "Unauthorized"});
        match action {
            Action::List => json!({"200": response(&self.schema_name(&self.rt.list_kind)), "401": unauthorized}),
            Action::Read => json!({"200": object, "401": unauthorized}),
            Action::Replace | Action::Patch => json!({"200": object, "201": object, "401": unauthorized}),
            Action::Create => json!({"200": object, "201": object, "202": object, "401": unauthorized}),
            Action::Delete | Action::DeleteCollection => json!({"200": status, "202": status, "401": unauthorized}),
        }
    }

    /// The kind's schema: the CRD version's `openAPIV3Schema`, or an open object for built-in kinds
    /// (whose fields kubectl knows itself). `kubectl explain` finds it by the GVK extension.
    fn kind_schema(&self) -> Value {
        let mut schema = match &self.served.schema {
            Some(schema) if !self.rt.builtin => schema.clone(),
            _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        add_standard_properties(&mut schema);
        schema["x-kubernetes-group-version-kind"] = json!([self.gvk(&self.rt.kind)]);
        schema
    }

    fn list_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "items": {"type": "array", "items": schema_ref(&self.schema_name(&self.rt.kind))},
                "kind": {"type": "string"},
                "metadata": schema_ref(&format!("{META}.ListMeta")),
            },
            "x-kubernetes-group-version-kind": [self.gvk(&self.rt.list_kind)],
        })
    }
}

/// Adds `apiVersion`, `kind` and `metadata`, which CRD schemas usually leave out but the server adds.
fn add_standard_properties(schema: &mut Value) {
    if !schema.is_object() {
        *schema = json!({"type": "object"});
    }
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    let standard = [
        (
            "apiVersion",
            json!({"type": "string", "description": "Versioned schema of this object."}),
        ),
        (
            "kind",
            json!({"type": "string", "description": "REST resource this object represents."}),
        ),
        ("metadata", schema_ref(&format!("{META}.ObjectMeta"))),
    ];
    let properties = &mut schema["properties"];
    for (name, property) in standard {
        if properties.get(name).is_none() {
            properties[name] = property;
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::from_crd;

    fn rollout_crd(schema: Value) -> Value {
        json!({"spec": {"group": "sluice.dev", "scope": "Namespaced",
            "names": {"plural": "rollouts", "kind": "Rollout"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": schema}}]}})
    }

    fn registry_with(crd: Value) -> Registry {
        let mut registry = Registry::with_builtins();
        registry.insert(from_crd(&crd).unwrap());
        registry
    }

    /// Every PATCH operation of a kind, as kubectl's field-validation check walks them.
    fn patch_ops<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op["x-kubernetes-group-version-kind"]["kind"] == kind)
            .collect()
    }

    #[test]
    fn index_lists_every_group_version_and_hash_follows_crd_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let registry = registry_with(rollout_crd(schema.clone()));
        let index = v3_index(&registry);
        let paths = index["paths"].as_object().unwrap();
        for (group, versions) in registry.groups() {
            for version in versions {
                assert!(
                    paths.contains_key(&group_version_path(&group, &version)),
                    "{group}/{version}"
                );
            }
        }
        let url = |index: &Value| index["paths"]["apis/sluice.dev/v1alpha1"]["serverRelativeURL"].clone();
        let before = url(&index);
        assert!(
            before
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/sluice.dev/v1alpha1?hash=")
        );
        assert_eq!(url(&v3_index(&registry)), before, "hash is stable");

        let changed = json!({"type": "object", "properties": {"spec": {"type": "string"}}});
        let changed_index = v3_index(&registry_with(rollout_crd(changed)));
        assert_ne!(url(&changed_index), before);
        assert_eq!(changed_index["paths"]["apis/apps/v1"], index["paths"]["apis/apps/v1"]);
    }

    #[test]
    fn apps_document_has_replicaset_patch_with_field_validation() {
        let doc = v3_document(&Registry::with_builtins(), "apps", "v1").unwrap();
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"];
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "ReplicaSet"})
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedReplicaSet");
        let content = patch["requestBody"]["content"].as_object().unwrap();
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        // kubectl stops at the first matching PATCH op it meets, so every one must declare it.
        let ops = patch_ops(&doc, "ReplicaSet");
        assert_eq!(ops.len(), 2, "item and status");
        for op in ops {
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            );
        }
        assert!(doc["paths"]["/apis/apps/v1/replicasets"]["get"].is_object());
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.ReplicaSet"];
        assert_eq!(schema["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "ReplicaSet");
        assert!(v3_document(&Registry::with_builtins(), "apps", "v2").is_none());
    }

    #[test]
    fn crd_document_carries_the_declared_schema_and_cluster_paths_have_no_namespace() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let registry = registry_with(rollout_crd(schema));
        let doc = v3_document(&registry, "sluice.dev", "v1alpha1").unwrap();
        let rollout = &doc["components"]["schemas"]["dev.sluice.v1alpha1.Rollout"];
        assert_eq!(rollout["properties"]["spec"], json!({"type": "object"}));
        assert!(rollout["properties"]["metadata"]["$ref"].is_string());
        assert_eq!(
            rollout["x-kubernetes-group-version-kind"],
            json!([{"group": "sluice.dev", "version": "v1alpha1", "kind": "Rollout"}])
        );
        assert!(doc["components"]["schemas"]["dev.sluice.v1alpha1.RolloutList"].is_object());
        assert_eq!(patch_ops(&doc, "Rollout").len(), 2);

        let core = v3_document(&registry, "", "v1").unwrap();
        let namespace = &core["paths"]["/api/v1/namespaces/{name}"];
        assert_eq!(namespace["patch"]["operationId"], "patchCoreV1Namespace");
        assert_eq!(namespace["parameters"][0]["name"], "name");
        assert_eq!(namespace["parameters"].as_array().unwrap().len(), 2);
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"].is_object());
    }
}
