//! How lists merge. Strategic merge patch and server-side apply both need to know, for a list at a
//! given place in an object, whether it is atomic, a set of scalars, or a map keyed by some fields.
//! Built-in kinds use the merge keys Kubernetes declares; custom resources use their schema's
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` (atomic when unset).

pub use sluice_crd_schema::ListType;

/// Answers the list type of the list found at `path`: the chain of map keys from the object root to
/// the list. Items of lists along the way contribute no segment: `spec.template.spec.containers[*].ports`
/// is `["spec", "template", "spec", "containers", "ports"]`.
pub trait Structure: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;
}

/// Merge keys of the built-in kinds the simulator serves (`patchMergeKey` / `listType` in the
/// Kubernetes API types), matched on the tail of the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinStructure;

impl Structure for BuiltinStructure {
    fn list_type(&self, path: &[&str]) -> ListType {
        let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| s.to_string()).collect());
        let last = path.last().copied().unwrap_or("");
        let parent = if path.len() >= 2 { path[path.len() - 2] } else { "" };
        match (parent, last) {
            ("metadata", "ownerReferences") => keys(&["uid"]),
            ("metadata", "finalizers") => ListType::Set,
            ("metadata", "managedFields") => ListType::Atomic,
            (_, "containers" | "initContainers" | "ephemeralContainers") => keys(&["name"]),
            ("containers" | "initContainers" | "ephemeralContainers", "ports") => keys(&["containerPort", "protocol"]),
            ("containers" | "initContainers" | "ephemeralContainers", "env") => keys(&["name"]),
            ("containers" | "initContainers" | "ephemeralContainers", "volumeMounts") => keys(&["mountPath"]),
            ("containers" | "initContainers" | "ephemeralContainers", "volumeDevices") => keys(&["devicePath"]),
            ("containers" | "initContainers" | "ephemeralContainers", "resizePolicy") => keys(&["resourceName"]),
            ("spec", "ports") => keys(&["port", "protocol"]),
            ("spec", "volumes") => keys(&["name"]),
            ("spec", "imagePullSecrets") => keys(&["name"]),
            ("spec", "hostAliases") => keys(&["ip"]),
            ("spec", "topologySpreadConstraints") => keys(&["topologyKey", "whenUnsatisfiable"]),
            ("spec", "schedulingGates") => keys(&["name"]),
            ("spec", "resourceClaims") => keys(&["name"]),
            ("status", "conditions") => keys(&["type"]),
            ("status", "containerStatuses" | "initContainerStatuses") => ListType::Atomic,
            ("status", "podIPs") => keys(&["ip"]),
            ("spec", "finalizers") => ListType::Set,
            _ => ListType::Atomic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_ports_by_port() {
        let s = BuiltinStructure;
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers", "ports"]),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            s.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            s.list_type(&["spec", "template", "spec", "containers", "args"]),
            ListType::Atomic
        );
    }
}
