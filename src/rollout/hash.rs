//! The pod template hash: a short, deterministic name for a pod template, the same across controller
//! restarts, versions and machines. It names the ReplicaSet (`<rollout>-<hash>`) and labels its pods.
use serde_json::Value;

pub use crate::api::keys::POD_TEMPLATE_HASH_LABEL;

/// Characters Kubernetes uses in generated names: no vowels (no words), no look-alikes (0/o, 1/l).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Hash of a pod template given as JSON. Our own hash label is ignored, so a template read back from
/// a ReplicaSet hashes like the Rollout's; key order does not matter.
pub fn pod_template_hash(template: &Value) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            template["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    let mut canonical = String::new();
    write_canonical(&template, &mut canonical);
    encode(fnv1a64(canonical.as_bytes()))
}

/// JSON with object keys sorted and nulls and empty objects dropped, so that equivalent templates
/// (a field absent or explicitly null) hash alike.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| !is_empty(&map[*k])).collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                write_canonical(&map[*key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        _ => false,
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Ten characters of the safe alphabet (27^10 ≈ 2^47 names).
fn encode(mut hash: u64) -> String {
    (0..10)
        .map(|_| {
            let c = SAFE_ALPHABET[(hash % SAFE_ALPHABET.len() as u64) as usize] as char;
            hash /= SAFE_ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
    }

    #[test]
    fn same_template_same_hash_and_a_change_changes_it() {
        assert_eq!(
            pod_template_hash(&template("web:v1")),
            pod_template_hash(&template("web:v1"))
        );
        assert_ne!(
            pod_template_hash(&template("web:v1")),
            pod_template_hash(&template("web:v2"))
        );
        let hash = pod_template_hash(&template("web:v1"));
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{hash}");
    }

    #[test]
    fn a_known_template_keeps_its_hash_across_releases() {
        // Changing this value renames every ReplicaSet in every cluster: never do it by accident.
        insta::assert_snapshot!(pod_template_hash(&template("web:v1")), @"gcp7qkg5dt");
    }

    #[test]
    fn our_hash_label_nulls_and_key_order_do_not_matter() {
        let plain = template("web:v1");
        let mut labelled = plain.clone();
        labelled["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!("abc");
        let reordered = json!({"spec": {"containers": [{"image": "web:v1", "name": "web"}]}, "metadata": {"labels": {"app": "web"}, "annotations": null}});
        let hash = pod_template_hash(&plain);
        assert_eq!(pod_template_hash(&labelled), hash);
        assert_eq!(pod_template_hash(&reordered), hash);
    }

    proptest! {
        #[test]
        fn hashing_is_deterministic_and_label_insensitive(image in "[a-z]{1,8}:v[0-9]{1,3}", hash_label in "[a-z0-9]{0,10}") {
            let plain = template(&image);
            let mut labelled = plain.clone();
            labelled["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash_label);
            prop_assert_eq!(pod_template_hash(&plain), pod_template_hash(&labelled));
        }
    }
}
