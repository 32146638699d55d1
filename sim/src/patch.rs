//! The three non-apply PATCH flavours of the Kubernetes API — JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch — as pure functions from a stored object and a body to the result.
// `ApiError` is the simulator-wide error type and is large by design (it carries a whole `Status`);
// boxing it is a crate-wide decision, not one for this module.
#![allow(clippy::result_large_err)]
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};
use crate::structure::{ListType, Structure};

/// RFC 7386 JSON merge patch (application/merge-patch+json). A non-object patch body → 400 BadRequest.
pub fn merge_patch(target: &Value, patch: &Value) -> ApiResult<Value> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(format!(
            "merge patch body must be a JSON object, got {}",
            kind_of(patch)
        )));
    }
    let mut merged = target.clone();
    merge_json(&mut merged, patch);
    Ok(merged)
}

/// RFC 7386 merge written out rather than taken from json-patch: its `merge` removes keys with
/// `swap_remove`, which would shuffle the order of the remaining fields of the stored object.
fn merge_json(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        unreachable!("target was just made an object")
    };
    for (key, value) in patch {
        if value.is_null() {
            map.shift_remove(key);
        } else {
            merge_json(map.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902 JSON patch (application/json-patch+json), including `test`. A body that is not a valid
/// list of operations → 400 BadRequest; an operation that fails → 422 Invalid naming the op and path.
pub fn json_patch(target: &Value, patch: &Value) -> ApiResult<Value> {
    let ops =
        json_patch::Patch::deserialize(patch).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    let mut patched = target.clone();
    for (index, op) in ops.0.iter().enumerate() {
        // As the API server's JSON patch (evanphx/json-patch): testing a missing path for null passes
        // (kube-runtime's finalizer helper tests `/metadata/finalizers` for null before adding it).
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && patched.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        // `patch_unsafe` skips the crate's undo log: on failure the half-patched copy is dropped anyway.
        json_patch::patch_unsafe(&mut patched, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = index;
            rejected_operation(&ops, &e)
        })?;
    }
    Ok(patched)
}

/// The API server answers a failing operation with a generic 422; we add which operation failed.
fn rejected_operation(ops: &json_patch::Patch, error: &json_patch::PatchError) -> ApiError {
    let op = ops.0.get(error.operation).map_or("unknown", operation_name);
    ApiError::new(
        422,
        "Invalid",
        format!(
            "the server rejected our request due to an error in our request: \
             {op} operation {} at path \"{}\" failed: {}",
            error.operation, error.path, error.kind
        ),
    )
}

fn operation_name(op: &json_patch::PatchOperation) -> &'static str {
    use json_patch::PatchOperation::*;
    match op {
        Add(_) => "add",
        Remove(_) => "remove",
        Replace(_) => "replace",
        Move(_) => "move",
        Copy(_) => "copy",
        Test(_) => "test",
    }
}

/// Kubernetes strategic merge patch (application/strategic-merge-patch+json), as kubectl sends it:
/// lists merge according to `structure`, and the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/`
/// and `$setElementOrder/` directives are applied and never left in the result.
pub fn strategic_merge_patch(target: &Value, patch: &Value, structure: &dyn Structure) -> ApiResult<Value> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(format!(
            "strategic merge patch body must be a JSON object, got {}",
            kind_of(patch)
        )));
    };
    let original = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let merged = Merger { structure }.merge_map(original, patch, &mut Vec::new())?;
    // `$patch: delete` at the root empties the object; the caller's validation will reject it.
    Ok(Value::Object(merged.unwrap_or_default()))
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// The value of a `$patch` directive, in a map or as a list item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

/// `$patch` of a patch map (`Merge` when absent); any other value is a malformed patch.
fn directive_of(map: &Map<String, Value>) -> ApiResult<Directive> {
    match map.get(DIRECTIVE) {
        None => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(Directive::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(Directive::Delete),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown patch type: {other} in map: {}",
            Value::Object(map.clone())
        ))),
    }
}

/// Rejects `$`-keys that are not directives this implementation knows: silently storing them would
/// put garbage in the object, and the API server would not understand them either.
fn check_directive_keys(patch: &Map<String, Value>) -> ApiResult<()> {
    for key in patch.keys().filter(|k| k.starts_with('$')) {
        let known = key == DIRECTIVE
            || key == RETAIN_KEYS
            || key
                .strip_prefix(DELETE_FROM_PRIMITIVE_LIST)
                .is_some_and(|f| !f.is_empty())
            || key.strip_prefix(SET_ELEMENT_ORDER).is_some_and(|f| !f.is_empty());
        if !known {
            return Err(ApiError::bad_request(format!(
                "unknown directive {key:?} in strategic merge patch"
            )));
        }
    }
    Ok(())
}

/// Walks a patch alongside the original, tracking the path of map keys so lists can be looked up.
/// Path segments borrow from the patch, which outlives the whole merge.
struct Merger<'s> {
    structure: &'s dyn Structure,
}

impl Merger<'_> {
    /// Merges a patch map into `original`; `None` when the patch says `$patch: delete`.
    fn merge_map<'p>(
        &self,
        mut original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> ApiResult<Option<Map<String, Value>>> {
        check_directive_keys(patch)?;
        match directive_of(patch)? {
            Directive::Delete => return Ok(None),
            // Merging the rest of the patch into nothing yields it minus nulls and directives.
            Directive::Replace => original = Map::new(),
            Directive::Merge => {}
        }
        retain_keys(&mut original, patch)?;
        // Deletions first, so a patch that also adds to the same list cannot have its additions undone.
        for (key, values) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                delete_from_list(&mut original, field, values)?;
            }
        }
        for (key, value) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
            self.merge_field(&mut original, key, value, path)?;
        }
        // Ordering last: it applies to the list as merged.
        for (key, order) in patch {
            if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
                self.set_element_order(&mut original, field, order, path)?;
            }
        }
        Ok(Some(original))
    }

    /// Applies one patch field to `original` in place, keeping the field's position among its siblings.
    fn merge_field<'p>(
        &self,
        original: &mut Map<String, Value>,
        key: &'p str,
        patch: &'p Value,
        path: &mut Vec<&'p str>,
    ) -> ApiResult<()> {
        if patch.is_null() {
            original.shift_remove(key);
            return Ok(());
        }
        path.push(key);
        let current = original.get_mut(key).map(std::mem::take);
        let merged = self.merge_value(current, patch, path);
        path.pop();
        match merged? {
            Some(value) => {
                original.insert(key.to_string(), value);
            }
            None => {
                original.shift_remove(key);
            }
        }
        Ok(())
    }

    /// Merges maps with maps and lists with lists; anything else takes the (cleaned) patch value.
    fn merge_value<'p>(
        &self,
        current: Option<Value>,
        patch: &'p Value,
        path: &mut Vec<&'p str>,
    ) -> ApiResult<Option<Value>> {
        match (current, patch) {
            (Some(Value::Object(original)), Value::Object(patch)) => {
                Ok(self.merge_map(original, patch, path)?.map(Value::Object))
            }
            (Some(Value::Array(original)), Value::Array(patch)) => {
                Ok(Some(Value::Array(self.merge_list(original, patch, path)?)))
            }
            _ => self.fresh(patch, path),
        }
    }

    /// A patch value with nothing to merge into: merged into an empty value of its own kind so that
    /// nested directives are applied and nulls dropped rather than stored.
    fn fresh<'p>(&self, patch: &'p Value, path: &mut Vec<&'p str>) -> ApiResult<Option<Value>> {
        match patch {
            Value::Object(patch) => Ok(self.merge_map(Map::new(), patch, path)?.map(Value::Object)),
            Value::Array(patch) => Ok(Some(Value::Array(self.merge_list(Vec::new(), patch, path)?))),
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Merges a patch list into the list at `path`, according to its list type.
    fn merge_list<'p>(
        &self,
        mut original: Vec<Value>,
        patch: &'p [Value],
        path: &mut Vec<&'p str>,
    ) -> ApiResult<Vec<Value>> {
        let list_type = self.structure.list_type(path);
        let merge_key = match &list_type {
            ListType::Map(keys) => keys.first().map(String::as_str),
            _ => None,
        };
        let mut items = Vec::with_capacity(patch.len());
        for item in patch {
            match list_item_directive(item)? {
                None => items.push(item),
                Some((Directive::Merge, _)) => {}
                Some((Directive::Replace, _)) => original.clear(),
                Some((Directive::Delete, map)) => delete_matching(&mut original, map, merge_key)?,
            }
        }
        match (&list_type, merge_key) {
            (ListType::Map(_), Some(key)) => self.merge_keyed_items(original, &items, key, path),
            (ListType::Set, _) => Ok(union(original, items)),
            _ => Ok(items.into_iter().cloned().collect()),
        }
    }

    /// Items matching an original item by merge key are merged into it; the others are appended.
    fn merge_keyed_items<'p>(
        &self,
        mut original: Vec<Value>,
        items: &[&'p Value],
        key: &str,
        path: &mut Vec<&'p str>,
    ) -> ApiResult<Vec<Value>> {
        for &item in items {
            let Value::Object(patch) = item else {
                return Err(ApiError::bad_request(format!(
                    "list item {item} is not a map; it needs merge key {key:?}"
                )));
            };
            let id = merge_key_value(patch, key)?;
            let existing = original.iter().position(|o| o.get(key) == Some(id));
            let current = existing.map(|i| std::mem::take(&mut original[i]));
            match (existing, self.merge_value(current, item, path)?) {
                (Some(i), Some(merged)) => original[i] = merged,
                (Some(i), None) => {
                    original.remove(i);
                }
                (None, Some(merged)) => original.push(merged),
                (None, None) => {}
            }
        }
        Ok(original)
    }

    /// Reorders the merged list `field` so the items named in `order` come first, in that order;
    /// items only the server knows keep their relative order after them.
    fn set_element_order<'p>(
        &self,
        original: &mut Map<String, Value>,
        field: &'p str,
        order: &Value,
        path: &mut Vec<&'p str>,
    ) -> ApiResult<()> {
        let Value::Array(order) = order else {
            return Err(ApiError::bad_request(format!(
                "invalid patch: {SET_ELEMENT_ORDER}{field} must be a list"
            )));
        };
        let Some(Value::Array(list)) = original.get_mut(field) else {
            return Ok(());
        };
        path.push(field);
        let list_type = self.structure.list_type(path);
        path.pop();
        // Map lists are ordered by merge key (kubectl sends `{key: value}` stubs); others by value.
        let identity = |item: &'_ Value| -> Option<Value> {
            match &list_type {
                ListType::Map(keys) => keys.first().and_then(|k| item.get(k)).cloned(),
                _ => Some(item.clone()),
            }
        };
        let mut rest = std::mem::take(list);
        let mut ordered = Vec::with_capacity(rest.len());
        for wanted in order.iter().filter_map(&identity) {
            if let Some(i) = rest.iter().position(|item| identity(item).as_ref() == Some(&wanted)) {
                ordered.push(rest.remove(i));
            }
        }
        ordered.append(&mut rest);
        *list = ordered;
        Ok(())
    }
}

/// `$patch` of a list item (with the item), when the item is a map carrying one.
fn list_item_directive(item: &Value) -> ApiResult<Option<(Directive, &Map<String, Value>)>> {
    match item {
        Value::Object(map) if map.contains_key(DIRECTIVE) => Ok(Some((directive_of(map)?, map))),
        _ => Ok(None),
    }
}

/// `{key: v, "$patch": "delete"}` removes every item whose merge key is `v`.
fn delete_matching(original: &mut Vec<Value>, item: &Map<String, Value>, merge_key: Option<&str>) -> ApiResult<()> {
    let Some(key) = merge_key else {
        return Err(ApiError::bad_request(format!(
            "$patch: delete item {} in a list that has no merge key",
            Value::Object(item.clone())
        )));
    };
    let id = merge_key_value(item, key)?;
    original.retain(|o| o.get(key) != Some(id));
    Ok(())
}

fn merge_key_value<'a>(item: &'a Map<String, Value>, key: &str) -> ApiResult<&'a Value> {
    item.get(key).ok_or_else(|| {
        ApiError::bad_request(format!(
            "map: {} does not contain declared merge key: {key}",
            Value::Object(item.clone())
        ))
    })
}

/// Set union keeping the original order, new values appended in patch order.
fn union(mut original: Vec<Value>, items: Vec<&Value>) -> Vec<Value> {
    for item in items {
        if !original.contains(item) {
            original.push(item.clone());
        }
    }
    original
}

/// `$deleteFromPrimitiveList/<field>: [..]` removes those values from the list `field`.
fn delete_from_list(original: &mut Map<String, Value>, field: &str, values: &Value) -> ApiResult<()> {
    let Value::Array(values) = values else {
        return Err(ApiError::bad_request(format!(
            "invalid patch: {DELETE_FROM_PRIMITIVE_LIST}{field} must be a list"
        )));
    };
    if let Some(Value::Array(list)) = original.get_mut(field) {
        list.retain(|v| !values.contains(v));
    }
    Ok(())
}

/// `$retainKeys: [..]` clears every field of the original not listed; a patch setting a field that is
/// not listed contradicts itself and is rejected, as the API server does.
fn retain_keys(original: &mut Map<String, Value>, patch: &Map<String, Value>) -> ApiResult<()> {
    let Some(keys) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || {
        ApiError::bad_request(format!(
            "invalid patch: {RETAIN_KEYS} must be a list of strings, got {keys}"
        ))
    };
    let keep = keys
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect::<ApiResult<Vec<&str>>>()?;
    let unlisted = patch
        .iter()
        .find(|(k, v)| !k.starts_with('$') && !v.is_null() && !keep.contains(&k.as_str()));
    if let Some((key, _)) = unlisted {
        return Err(ApiError::bad_request(format!(
            "invalid patch: field {key:?} is set but not listed in {RETAIN_KEYS}"
        )));
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::BuiltinStructure;
    use proptest::prelude::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value) -> Value {
        strategic_merge_patch(&target, &patch, &BuiltinStructure).expect("patch applies")
    }

    fn smp_err(target: Value, patch: Value) -> ApiError {
        strategic_merge_patch(&target, &patch, &BuiltinStructure).expect_err("patch is rejected")
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 3,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"spec": {"containers": [
                    {"name": "app", "image": "app:v1", "args": ["--a", "--b"],
                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "proxy:v1"}
                ]}}
            }
        })
    }

    fn containers(object: &Value) -> &Vec<Value> {
        object["spec"]["template"]["spec"]["containers"].as_array().unwrap()
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    fn has_directive(value: &Value) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(k, v)| k.starts_with('$') || has_directive(v)),
            Value::Array(items) => items.iter().any(has_directive),
            _ => false,
        }
    }

    // ---- strategic merge patch ----

    #[test]
    fn containers_merge_by_name() {
        let out = smp(
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}}),
        );
        let cs = containers(&out);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "app:v2");
        assert_eq!(
            cs[0]["ports"],
            json!([{"containerPort": 8080, "protocol": "TCP"}]),
            "unpatched fields of the item stay"
        );
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(
            cs[1],
            json!({"name": "sidecar", "image": "proxy:v1"}),
            "other containers stay"
        );
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn new_container_is_appended_and_atomic_list_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "args": ["--c"]},
            {"name": "debug", "image": "busybox", "env": [{"name": "X", "value": null}]}
        ]}}}});
        let out = smp(deployment(), patch);
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["app", "sidecar", "debug"]
        );
        assert_eq!(
            containers(&out)[0]["args"],
            json!(["--c"]),
            "args is atomic: replaced, not merged"
        );
        assert_eq!(
            containers(&out)[2]["env"],
            json!([{"name": "X"}]),
            "nulls in new items are dropped"
        );
    }

    #[test]
    fn ports_merge_by_first_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090}]}
        ]}}}});
        let out = smp(deployment(), patch);
        assert_eq!(
            containers(&out)[0]["ports"],
            json!([{"containerPort": 8080, "protocol": "TCP", "name": "http"}, {"containerPort": 9090}])
        );
    }

    #[test]
    fn env_item_deleted_with_patch_delete() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "$patch": "delete"}]}
        ]}}}});
        let out = smp(deployment(), patch);
        assert_eq!(containers(&out)[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert!(!has_directive(&out));
    }

    #[test]
    fn set_element_order_reorders_and_is_stripped() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:v3"}]
        }}}});
        let out = smp(deployment(), patch);
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["sidecar", "app"]
        );
        assert_eq!(containers(&out)[1]["image"], "app:v3");
        assert!(!has_directive(&out), "directive leaked into {out}");
    }

    #[test]
    fn set_element_order_on_primitive_list_keeps_server_only_items_last() {
        let target = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "d"], "finalizers": ["d"]}});
        assert_eq!(
            smp(target, patch),
            json!({"metadata": {"finalizers": ["c", "a", "d", "b"]}})
        );
    }

    #[test]
    fn set_element_order_alone_only_reorders() {
        let target = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}});
        assert_eq!(
            smp(target, patch),
            json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}})
        );
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = smp(deployment(), patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert!(!has_directive(&out));
    }

    #[test]
    fn retain_keys_rejects_a_patch_setting_an_unlisted_field() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 2}}}});
        assert_eq!(smp_err(deployment(), patch).code, 400);
        let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
        assert_eq!(smp_err(deployment(), patch).code, 400);
    }

    #[test]
    fn delete_from_primitive_list_on_finalizers() {
        let out = smp(
            deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert!(!has_directive(&out));
        let out = smp(
            deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        let out = smp(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        );
        assert_eq!(out, json!({"metadata": {}}), "nothing to delete from creates nothing");
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let out = smp(deployment(), json!({"metadata": {"finalizers": ["c", "a", "c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn null_deletes_labels() {
        let out = smp(
            deployment(),
            json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        let out = smp(deployment(), json!({"metadata": {"labels": null}}));
        assert!(out["metadata"].get("labels").is_none());
        let out = smp(
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": {"a": null, "b": "1"}, "gone": null}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"b": "1"}}}),
            "unmatched nulls are not stored"
        );
    }

    #[test]
    fn field_order_is_preserved() {
        let out = smp(
            deployment(),
            json!({"metadata": {"labels": {"app": null}, "name": "web2"}}),
        );
        let keys: Vec<&String> = out["metadata"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "labels", "finalizers"]);
    }

    #[test]
    fn replace_directive_in_map_and_list() {
        let out = smp(
            deployment(),
            json!({"metadata": {"labels": {"$patch": "replace", "only": "me"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"only": "me"}));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "x"}]}}}});
        let out = smp(deployment(), patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "solo", "image": "x"}])
        );
        assert!(!has_directive(&out));
    }

    #[test]
    fn delete_directive_in_map_removes_it() {
        let out = smp(deployment(), json!({"spec": {"strategy": {"$patch": "delete"}}}));
        assert!(out["spec"].get("strategy").is_none());
        let out = smp(json!({"spec": {}}), json!({"spec": {"strategy": {"$patch": "delete"}}}));
        assert_eq!(out, json!({"spec": {}}));
    }

    #[test]
    fn explicit_merge_directive_is_the_default() {
        let out = smp(
            deployment(),
            json!({"metadata": {"labels": {"$patch": "merge", "x": "1"}}}),
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "x": "1"})
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let target = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": true}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"}
        ]}});
        let out = smp(target, patch);
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": true, "blockOwnerDeletion": true},
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"}
            ])
        );
        let out = smp(
            out,
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "$patch": "delete"}]}}),
        );
        assert_eq!(names(&out["metadata"]["ownerReferences"]), ["cm"]);
    }

    #[test]
    fn value_of_another_type_replaces() {
        let out = smp(json!({"a": "text", "b": {"c": 1}}), json!({"a": {"x": 1}, "b": [1]}));
        assert_eq!(out, json!({"a": {"x": 1}, "b": [1]}));
    }

    #[test]
    fn malformed_strategic_patches_are_bad_requests() {
        let cases = [
            json!([{"op": "add"}]),
            json!("text"),
            json!({"metadata": {"$unknown": 1}}),
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["just-a-string"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            json!({"metadata": {"finalizers": [{"$patch": "delete"}]}}),
        ];
        for patch in cases {
            let err = smp_err(deployment(), patch.clone());
            assert_eq!((err.code, err.reason), (400, "BadRequest"), "{patch} → {err}");
        }
    }

    // ---- JSON merge patch ----

    #[test]
    fn merge_patch_null_removes_and_lists_replace() {
        let out = merge_patch(
            &deployment(),
            &json!({"metadata": {"labels": {"tier": null}, "finalizers": ["z"]}, "spec": {"replicas": 5}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["z"]));
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(containers(&out).len(), 2);
        let out = merge_patch(&json!({"a": 1}), &json!({"b": {"c": null, "d": 2}})).unwrap();
        assert_eq!(out, json!({"a": 1, "b": {"d": 2}}));
    }

    #[test]
    fn merge_patch_rejects_non_objects() {
        for patch in [json!([1]), json!("x"), json!(null), json!(3)] {
            let err = merge_patch(&deployment(), &patch).unwrap_err();
            assert_eq!((err.code, err.reason), (400, "BadRequest"));
        }
    }

    // ---- JSON patch ----

    #[test]
    fn json_patch_test_op_guards_the_change() {
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/metadata/labels/new", "value": "x"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]);
        let out = json_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
        assert_eq!(out["metadata"]["labels"]["new"], "x");
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn json_patch_failed_test_is_invalid() {
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "test", "path": "/spec/replicas", "value": 3}
        ]);
        let err = json_patch(&deployment(), &patch).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert!(
            err.message.contains("test operation 1") && err.message.contains("/spec/replicas"),
            "{}",
            err.message
        );
        assert!(
            err.message.starts_with("the server rejected our request"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_patch_testing_a_missing_path_for_null_passes_as_on_the_api_server() {
        let patch = json!([
            {"op": "test", "path": "/metadata/annotations", "value": null},
            {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}
        ]);
        let out = json_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"], json!({"a": "b"}));
        // Once there, the same test fails: the add is not repeated.
        let err = json_patch(&out, &patch).unwrap_err();
        assert!(err.message.contains("test operation 0"), "{}", err.message);
    }

    #[test]
    fn json_patch_missing_path_or_bad_index_is_invalid() {
        for patch in [
            json!([{"op": "remove", "path": "/metadata/nothere"}]),
            json!([{"op": "replace", "path": "/metadata/finalizers/7", "value": "x"}]),
            json!([{"op": "add", "path": "/metadata/finalizers/x", "value": "x"}]),
            json!([{"op": "move", "from": "/nothere", "path": "/x"}]),
        ] {
            let err = json_patch(&deployment(), &patch).unwrap_err();
            assert_eq!((err.code, err.reason), (422, "Invalid"), "{patch}");
            assert!(
                err.message.contains(patch[0]["op"].as_str().unwrap()),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn json_patch_malformed_body_is_bad_request() {
        for patch in [
            json!({"op": "add", "path": "/a", "value": 1}),
            json!([{"op": "explode", "path": "/a"}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "add", "path": "no-slash", "value": 1}]),
            json!("[]"),
        ] {
            let err = json_patch(&deployment(), &patch).unwrap_err();
            assert_eq!((err.code, err.reason), (400, "BadRequest"), "{patch}");
        }
    }

    // ---- properties ----

    /// Test structure: lists under `items` merge by `name`, `tags` are sets, everything else atomic.
    struct TestStructure;

    impl Structure for TestStructure {
        fn list_type(&self, path: &[&str]) -> ListType {
            match path.last().copied() {
                Some("items") => ListType::Map(vec!["name".into()]),
                Some("tags") => ListType::Set,
                _ => ListType::Atomic,
            }
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from)
        ]
    }

    fn any_json() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), scalar()].prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z$]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects shaped like Kubernetes ones for `TestStructure`: no nulls, keyed `items` with unique
    /// names, `tags` with unique values. Plain keys use letters a–h, so never collide with those.
    fn k8s_like() -> impl Strategy<Value = Value> {
        let leaf = scalar().boxed();
        leaf.prop_recursive(3, 32, 4, |inner| {
            let plain = prop::collection::btree_map("[a-h]{1,4}", inner.clone(), 0..4);
            let atomic = prop::collection::vec(inner.clone(), 0..3);
            let items = prop::option::of(prop::collection::vec(
                prop::collection::btree_map("[a-h]{1,3}", inner, 0..3),
                0..3,
            ));
            let tags = prop::option::of(prop::collection::btree_set("[a-z]{1,3}", 0..4));
            (plain, atomic, items, tags).prop_map(|(plain, atomic, items, tags)| {
                let mut map: Map<String, Value> = plain.into_iter().collect();
                map.insert("list".into(), Value::Array(atomic));
                if let Some(items) = items {
                    let named = items.into_iter().enumerate().map(|(i, fields)| {
                        let mut item: Map<String, Value> = fields.into_iter().collect();
                        item.insert("name".into(), json!(format!("n{i}")));
                        Value::Object(item)
                    });
                    map.insert("items".into(), Value::Array(named.collect()));
                }
                if let Some(tags) = tags {
                    map.insert("tags".into(), Value::Array(tags.into_iter().map(Value::from).collect()));
                }
                Value::Object(map)
            })
        })
    }

    /// A deterministic pseudo-random choice stream, so one generated seed picks the sub-object.
    fn next_bit(seed: &mut u64) -> bool {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) & 1 == 1
    }

    /// A patch that restates part of `value`: some map fields, some keyed items (with their key),
    /// some set members; atomic values whole.
    fn sub_object(value: &Value, path: &mut Vec<String>, seed: &mut u64) -> Value {
        match value {
            Value::Object(map) => {
                let mut sub = Map::new();
                for (k, v) in map {
                    if next_bit(seed) || k == "name" {
                        path.push(k.clone());
                        sub.insert(k.clone(), sub_object(v, path, seed));
                        path.pop();
                    }
                }
                Value::Object(sub)
            }
            Value::Array(items) => {
                let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                match TestStructure.list_type(&segments) {
                    ListType::Atomic => value.clone(),
                    _ => {
                        let mut kept = Vec::new();
                        for item in items {
                            if next_bit(seed) {
                                kept.push(sub_object(item, path, seed));
                            }
                        }
                        Value::Array(kept)
                    }
                }
            }
            scalar => scalar.clone(),
        }
    }

    proptest! {
        #[test]
        fn empty_merge_patch_changes_nothing(target in prop::collection::btree_map("[a-z]{1,4}", any_json(), 0..5)) {
            let target = Value::Object(target.into_iter().collect());
            prop_assert_eq!(merge_patch(&target, &json!({})).unwrap(), target);
        }

        #[test]
        fn strategic_patch_restating_part_of_target_changes_nothing(target in k8s_like(), mut seed in any::<u64>()) {
            prop_assume!(target.is_object());
            let patch = sub_object(&target, &mut Vec::new(), &mut seed);
            let out = strategic_merge_patch(&target, &patch, &TestStructure).unwrap();
            prop_assert_eq!(out, target, "patch {}", patch);
        }
    }
}
