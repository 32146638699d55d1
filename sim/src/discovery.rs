//! Discovery documents (`/version`, `/api`, `/apis`, resource lists, aggregated discovery) built as pure
//! functions of the registry, so clients always see exactly the kinds the simulator serves.
use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// Content type of an aggregated discovery answer; clients check it before decoding the body.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Verbs of the `status` subresource, as the API server lists them.
const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

/// GET /version. kubectl warns when the server is more than one minor version away from it, so this
/// claims the release kubectl 1.35 expects.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-12-17T00:00:00Z",
        "goVersion": "go1.25.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// GET /api: the core group's versions. `APIVersions` carries no `apiVersion` on a real server either.
pub fn legacy_api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// GET /apis: every named group with its versions, preferred first.
pub fn legacy_api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| group_body(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// GET /apis/{group}; None for the core group (it lives at /api) and for unknown groups.
pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let (name, versions) = registry.groups().into_iter().find(|(g, _)| g == group)?;
    let entries = version_entries(&name, &versions);
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": entries,
        "preferredVersion": entries.first(),
    }))
}

/// GET /api/v1 or /apis/{group}/{version}; None when no resource is served at that group version.
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let resources: Vec<Value> = types.iter().flat_map(|rt| legacy_resources(rt, version)).collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): the core group alone when `core` (served at /api),
/// otherwise every named group (served at /apis). One request then replaces a request per group version.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| aggregated_group(registry, group, versions))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Whether an Accept header asks for aggregated discovery v2 as JSON. Only v2 is served, so a header
/// listing just v2beta1 (or only the protobuf form) gets the unaggregated documents instead.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let params: Vec<(&str, &str)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let has = |key: &str, value: &str| params.iter().any(|(k, v)| k.eq_ignore_ascii_case(key) && *v == value);
        media.eq_ignore_ascii_case("application/json")
            && has("g", "apidiscovery.k8s.io")
            && has("v", "v2")
            && has("as", "APIGroupDiscoveryList")
    })
}

/// A stable 128-bit FNV-1a hash: the same input gives the same hash in every build, which the
/// storage-version and OpenAPI hashes need (std's hasher makes no such promise).
pub fn fingerprint(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes
        .iter()
        .fold(OFFSET, |hash, byte| (hash ^ u128::from(*byte)).wrapping_mul(PRIME))
}

/// `v1` for the core group, `group/version` otherwise.
fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// An APIGroupList entry.
fn group_body(group: &str, versions: &[String]) -> Value {
    let entries = version_entries(group, versions);
    json!({"name": group, "versions": entries, "preferredVersion": entries.first()})
}

/// `GroupVersionForDiscovery` entries, preferred first (the first is also `preferredVersion`).
fn version_entries(group: &str, versions: &[String]) -> Vec<Value> {
    versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect()
}

/// A resource's APIResourceList entries: the resource, then its `status` subresource if served.
fn legacy_resources(rt: &ResourceType, version: &str) -> Vec<Value> {
    let mut entry = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": rt.verbs(),
    });
    insert_names(&mut entry, rt);
    if !rt.create_only {
        entry["storageVersionHash"] = json!(storage_version_hash(rt));
    }
    let mut entries = vec![entry];
    if serves_status(rt, version) {
        entries.push(json!({
            "name": format!("{}/status", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": STATUS_VERBS,
        }));
    }
    if serves_scale(rt, version) {
        entries.push(json!({
            "name": format!("{}/scale", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": STATUS_VERBS,
        }));
    }
    if rt.serves_token() {
        entries.push(json!({
            "name": format!("{}/token", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced,
            "group": "authentication.k8s.io",
            "version": "v1",
            "kind": "TokenRequest",
            "verbs": ["create"],
        }));
    }
    entries
}

fn aggregated_group(registry: &Registry, group: &str, versions: &[String]) -> Value {
    // The real server leaves the core group's name out of its metadata rather than sending "".
    let metadata = if group.is_empty() {
        json!({})
    } else {
        json!({"name": group})
    };
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = registry
                .in_group_version(group, version)
                .iter()
                .map(|rt| aggregated_resource(rt, version))
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": metadata, "versions": versions})
}

fn aggregated_resource(rt: &ResourceType, version: &str) -> Value {
    // client-go drops entries without a responseKind, so both resource and subresource carry one.
    let kind = json!({"group": rt.group, "version": version, "kind": rt.kind});
    let mut entry = json!({
        "resource": rt.plural,
        "responseKind": kind,
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs(),
    });
    insert_names(&mut entry, rt);
    let mut subresources = Vec::new();
    if serves_status(rt, version) {
        subresources.push(json!({"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}));
    }
    if serves_scale(rt, version) {
        let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        subresources.push(json!({"subresource": "scale", "responseKind": scale, "verbs": STATUS_VERBS}));
    }
    if rt.serves_token() {
        let token = json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"});
        subresources.push(json!({"subresource": "token", "responseKind": token, "verbs": ["create"]}));
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Array(subresources);
    }
    entry
}

/// Adds `shortNames` and `categories` when set; the API server omits them when empty.
fn insert_names(entry: &mut Value, rt: &ResourceType) {
    if !rt.short_names.is_empty() {
        entry["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        entry["categories"] = json!(rt.categories);
    }
}

fn serves_scale(rt: &ResourceType, version: &str) -> bool {
    rt.version(version).is_some_and(|v| v.scale.is_some())
}

fn serves_status(rt: &ResourceType, version: &str) -> bool {
    rt.version(version).is_some_and(|v| v.status_subresource)
}

/// Identifies the storage version, as the real hash does: clients only compare it for changes.
fn storage_version_hash(rt: &ResourceType) -> String {
    let key = format!("{}/{}/{}", rt.group, rt.preferred_version().name, rt.kind);
    format!("{:016x}", fingerprint(key.as_bytes()) >> 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::from_crd;

    fn registry_with_rollouts() -> Registry {
        let crd = json!({"spec": {"group": "sluice.dev", "scope": "Namespaced",
            "names": {"plural": "rollouts", "kind": "Rollout", "shortNames": ["ro"], "categories": ["sluice"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        let mut registry = Registry::with_builtins();
        registry.insert(from_crd(&crd).unwrap());
        registry
    }

    fn find<'a>(items: &'a Value, field: &str, name: &str) -> &'a Value {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item.pointer(field).and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {items}"))
    }

    #[test]
    fn core_aggregated_document_lists_pods_with_verbs_and_status() {
        let doc = aggregated(&Registry::with_builtins(), true);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({}));
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = find(&v1["resources"], "/resource", "pods");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(
            pods["subresources"],
            json!([{"subresource": "status", "responseKind": pods["responseKind"], "verbs": ["get", "patch", "update"]}])
        );
        let namespaces = find(&v1["resources"], "/resource", "namespaces");
        assert_eq!(namespaces["scope"], "Cluster");
        let configmaps = find(&v1["resources"], "/resource", "configmaps");
        assert!(configmaps.get("subresources").is_none());
    }

    #[test]
    fn crd_appears_in_aggregated_and_legacy_discovery() {
        let registry = registry_with_rollouts();
        let groups = aggregated(&registry, false);
        let sluice = find(&groups["items"], "/metadata/name", "sluice.dev");
        let rollouts = &sluice["versions"][0]["resources"][0];
        assert_eq!(rollouts["resource"], "rollouts");
        assert_eq!(rollouts["categories"], json!(["sluice"]));
        assert_eq!(rollouts["subresources"][0]["subresource"], "status");
        assert!(
            groups["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["metadata"]["name"] != "")
        );

        let list = legacy_api_group_list(&registry);
        let entry = find(&list["groups"], "/name", "sluice.dev");
        assert_eq!(
            entry["preferredVersion"],
            json!({"groupVersion": "sluice.dev/v1alpha1", "version": "v1alpha1"})
        );
        assert_eq!(api_group(&registry, "sluice.dev").unwrap()["kind"], "APIGroup");
        assert!(api_group(&registry, "").is_none());
        assert!(api_group(&registry, "nope.dev").is_none());

        let resources = api_resource_list(&registry, "sluice.dev", "v1alpha1").unwrap();
        assert_eq!(resources["groupVersion"], "sluice.dev/v1alpha1");
        let names: Vec<&str> = resources["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rollouts", "rollouts/status"]);
        assert_eq!(resources["resources"][0]["shortNames"], json!(["ro"]));
        assert!(resources["resources"][0]["storageVersionHash"].is_string());
        assert!(api_resource_list(&registry, "sluice.dev", "v9").is_none());
    }

    #[test]
    fn core_resource_list_and_api_versions() {
        let list = api_resource_list(&Registry::with_builtins(), "", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let status = find(&list["resources"], "/name", "pods/status");
        assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
        let api = legacy_api_versions("127.0.0.1:6443");
        assert_eq!(api["serverAddressByClientCIDRs"][0]["serverAddress"], "127.0.0.1:6443");
        assert_eq!(version()["gitVersion"], "v1.35.0");
    }

    #[test]
    fn aggregated_is_wanted_only_as_json_v2() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        assert!(wants_aggregated(
            "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated("application/json, */*"));
    }
}
