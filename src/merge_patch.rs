//! The JSON merge patch (RFC 7386) that turns one value into another: what the reconcilers send when
//! they write a status or metadata change, so a write carries only what changed.
use serde_json::Value;

/// The JSON merge patch that turns `old` into `new` (lists are replaced whole, as merge patch does).
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous) if previous.is_object() && value.is_object() => {
                        patch.insert(key.clone(), merge_diff(previous, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        (_, new) => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_sets_changes_and_nulls_removed_fields() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "gone": true});
        let new = json!({"a": 1, "b": {"c": 2, "d": 4}, "e": [1, 2], "added": "x"});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"d": 4}, "e": [1, 2], "added": "x", "gone": null})
        );
        assert_eq!(merge_diff(&new, &new), json!({}));
    }
}
