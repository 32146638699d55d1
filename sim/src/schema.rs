//! List types of custom resources, read from their CRD schemas (`x-kubernetes-list-type`). Validation,
//! defaulting and pruning live in the `sluice-crd-schema` crate, shared with `sluice lint`.
use serde_json::Value;

pub use sluice_crd_schema::{apply_defaults, prune, validate, validate_object_name};
use sluice_crd_schema::{field_schema, is_embedded, list_type_of};

use crate::structure::{BuiltinStructure, ListType, Structure};

/// List types of a custom resource, read from its schema. Resource metadata (root or embedded) has the
/// built-in merge keys (finalizers, ownerReferences), which schemas do not describe.
pub struct SchemaStructure {
    schema: Value,
}

impl SchemaStructure {
    pub fn new(schema: Value) -> Self {
        SchemaStructure { schema }
    }
}

impl Structure for SchemaStructure {
    fn list_type(&self, path: &[&str]) -> ListType {
        let mut node = &self.schema;
        for (depth, segment) in path.iter().enumerate() {
            // List items contribute no path segment: step through them.
            while let Some(items) = node.get("items") {
                node = items;
            }
            if *segment == "metadata" && (depth == 0 || is_embedded(node)) {
                return BuiltinStructure.list_type(&path[depth..]);
            }
            match field_schema(node, segment) {
                Some(next) => node = next,
                None => return ListType::Atomic,
            }
        }
        list_type_of(node)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schema_list_types() {
        let s = SchemaStructure::new(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "tags": {"type": "array", "x-kubernetes-list-type": "set"},
                "strategy": {"type": "object", "properties": {"canary": {"type": "object", "properties": {
                    "steps": {"type": "array", "items": {"type": "object"}},
                    "analyses": {"type": "array", "x-kubernetes-list-type": "map",
                                 "x-kubernetes-list-map-keys": ["name"],
                                 "items": {"type": "object", "properties": {"args": {"type": "array"}}}}}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true}}}}
        }));
        let cases: Vec<(Vec<&str>, ListType)> = vec![
            (vec!["spec", "tags"], ListType::Set),
            (
                vec!["spec", "strategy", "canary", "analyses"],
                ListType::Map(vec!["name".into()]),
            ),
            (vec!["spec", "strategy", "canary", "analyses", "args"], ListType::Atomic),
            (vec!["spec", "strategy", "canary", "steps"], ListType::Atomic),
            (vec!["spec", "nope", "x"], ListType::Atomic),
            (vec!["metadata", "finalizers"], ListType::Set),
            (vec!["metadata", "ownerReferences"], ListType::Map(vec!["uid".into()])),
            (vec!["spec", "template", "metadata", "finalizers"], ListType::Set),
        ];
        for (path, want) in cases {
            assert_eq!(s.list_type(&path), want, "{path:?}");
        }
    }

    #[test]
    fn list_types_through_nested_lists_and_maps() {
        let schema = json!({"type": "object", "properties": {"groups": {"type": "array", "items": {
            "type": "array", "items": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["port", "protocol"]}}}}},
            "byName": {"type": "object", "additionalProperties": {"type": "array",
                       "x-kubernetes-list-type": "set"}}}});
        let s = SchemaStructure::new(schema);
        assert_eq!(
            s.list_type(&["groups", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(s.list_type(&["byName", "anything"]), ListType::Set);
        assert_eq!(s.list_type(&["groups"]), ListType::Atomic);
    }
}
