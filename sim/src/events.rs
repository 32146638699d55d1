//! `events.k8s.io/v1` Events are a second view of core `v1` Events, as in a real cluster: stored once
//! in the core shape and renamed field by field on the way in and out.
use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) for every field whose name differs.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// A core/v1 Event as an events.k8s.io/v1 Event (apiVersion and kind are set by the caller).
pub fn core_to_events_v1(core: Value) -> Value {
    rename(core, |name| {
        RENAMES.iter().find(|(_, core)| *core == name).map(|(new, _)| *new)
    })
}

/// An events.k8s.io/v1 Event as a core/v1 Event.
pub fn events_v1_to_core(event: Value) -> Value {
    let mut core = rename(event, |name| {
        RENAMES.iter().find(|(new, _)| *new == name).map(|(_, core)| *core)
    });
    if let Some(o) = core.as_object_mut() {
        o.insert("apiVersion".into(), Value::String("v1".into()));
    }
    core
}

fn rename(value: Value, new_name: impl Fn(&str) -> Option<&'static str>) -> Value {
    match value {
        Value::Object(map) => {
            let renamed: Map<String, Value> = map
                .into_iter()
                .map(|(key, v)| match new_name(&key) {
                    Some(name) => (name.to_string(), v),
                    None => (key, v),
                })
                .collect();
            Value::Object(renamed)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_the_two_shapes() {
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Rollout", "name": "web"}, "note": "scaled", "reason": "Scaled",
            "reportingController": "sluice", "deprecatedCount": 2, "type": "Normal"});
        let core = events_v1_to_core(event.clone());
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "scaled");
        assert_eq!(core["reportingComponent"], "sluice");
        assert_eq!(core["count"], 2);
        assert_eq!(core["apiVersion"], "v1");
        let back = core_to_events_v1(core);
        assert_eq!(back["regarding"], event["regarding"]);
        assert_eq!(back["note"], "scaled");
        assert_eq!(back["deprecatedCount"], 2);
        assert!(back.get("message").is_none());
    }
}
