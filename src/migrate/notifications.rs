//! `sluice convert` for Argo's notifications: `notifications.argoproj.io/subscribe.<trigger>.<service>`
//! annotations become Sluice's where the trigger has a Sluice counterpart, and Argo's
//! `argo-rollouts-notification-configmap` becomes `sluice-notifications` with the `service.*` and
//! `template.*` entries Sluice understands. Everything else is reported, never silently dropped.
use serde_json::{Map, Value, json};

use crate::api::keys::NOTIFY_SUBSCRIBE_PREFIX;
use crate::notify::template::Template;
use crate::notify::triggers::Trigger;

/// Argo's subscription annotations.
const ARGO_SUBSCRIBE_PREFIX: &str = "notifications.argoproj.io/subscribe.";
/// Argo's ConfigMap of services, templates and triggers.
pub const ARGO_CONFIGMAP: &str = "argo-rollouts-notification-configmap";
/// Where Sluice reads its own (`--notifications-configmap` default).
const SLUICE_CONFIGMAP: (&str, &str) = ("sluice-system", "sluice-notifications");

/// Argo triggers that map 1:1 to Sluice's (same name).
const MAPPED_TRIGGERS: [Trigger; 5] = [
    Trigger::RolloutStepCompleted,
    Trigger::RolloutPaused,
    Trigger::RolloutCompleted,
    Trigger::RolloutAborted,
    Trigger::AnalysisRunFailed,
];

/// Rewrites the subscription annotations of a converted object; `report(field, message)` is told
/// what was mapped differently or not carried over.
pub fn convert_subscriptions(document: &mut Value, report: &mut dyn FnMut(String, String)) {
    let Some(annotations) = document
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let argo_keys: Vec<String> = annotations
        .keys()
        .filter(|k| k.starts_with("notifications.argoproj.io/"))
        .cloned()
        .collect();
    for key in argo_keys {
        let field = format!("metadata.annotations[{key:?}]");
        let Some(rest) = key.strip_prefix(ARGO_SUBSCRIBE_PREFIX) else {
            report(
                field,
                "not carried over: only `subscribe.<trigger>.<service>` annotations have a Sluice form".into(),
            );
            continue;
        };
        let mapped = rest
            .split_once('.')
            .and_then(|(trigger, service)| Some((Trigger::parse(trigger)?, service)))
            .filter(|(trigger, _)| MAPPED_TRIGGERS.contains(trigger));
        match mapped {
            Some((trigger, service)) => {
                let value = annotations.remove(&key).unwrap_or(Value::Null);
                annotations.insert(format!("{NOTIFY_SUBSCRIBE_PREFIX}{}.{service}", trigger.name()), value);
            }
            None => report(
                field,
                format!(
                    "not carried over: Sluice's built-in triggers that Argo has are {}",
                    MAPPED_TRIGGERS.map(Trigger::name).join(", ")
                ),
            ),
        }
    }
}

/// Whether `document` is Argo's notifications ConfigMap.
pub fn is_argo_configmap(document: &Value) -> bool {
    document.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && document.get("kind").and_then(Value::as_str) == Some("ConfigMap")
        && document.pointer("/metadata/name").and_then(Value::as_str) == Some(ARGO_CONFIGMAP)
}

/// Argo's ConfigMap as Sluice's: the entries Sluice understands, with the fields it reads.
pub fn convert_configmap(document: &Value, report: &mut dyn FnMut(String, String)) -> Value {
    let mut data = Map::new();
    let entries = document
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in entries {
        let field = format!("data[{key:?}]");
        let Some(text) = value.as_str() else {
            report(field, "left out: not a string".into());
            continue;
        };
        let kept = if key.starts_with("service.webhook.") {
            keep_fields(text, &["url", "method", "headers"], &field, report)
        } else if key == "service.slack" {
            keep_fields(text, &["token", "apiURL"], &field, report)
        } else if key == "service.teams" {
            keep_fields(text, &["recipientUrls"], &field, report)
        } else if let Some(name) = key.strip_prefix("template.") {
            convert_template(name, text, &field, report)
        } else {
            report(
                field,
                "not carried over: Sluice has built-in triggers (see the README's Notifications) and no other settings"
                    .into(),
            );
            None
        };
        if let Some(kept) = kept {
            data.insert(key, Value::String(kept));
        }
    }
    report(
        "metadata".into(),
        format!(
            "renamed to {}/{}; `$key` values are read from Secret {} there (Argo's is argo-rollouts-notification-secret)",
            SLUICE_CONFIGMAP.0,
            SLUICE_CONFIGMAP.1,
            crate::notify::config::SECRET_NAME
        ),
    );
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SLUICE_CONFIGMAP.1, "namespace": SLUICE_CONFIGMAP.0},
        "data": data,
    })
}

/// The YAML mapping `text` with only `fields`; the others reported.
fn keep_fields(text: &str, fields: &[&str], field: &str, report: &mut dyn FnMut(String, String)) -> Option<String> {
    let Ok(Value::Object(mut entry)) = serde_saphyr::from_str::<Value>(text) else {
        report(field.into(), "left out: not a YAML mapping".into());
        return None;
    };
    let dropped: Vec<String> = entry
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in &dropped {
        entry.remove(key);
        report(format!("{field}.{key}"), "dropped: Sluice has no such setting".into());
    }
    serde_saphyr::to_string(&Value::Object(entry)).ok()
}

/// Argo's template `name` kept when it names a Sluice trigger's template and its message uses only
/// field paths (Go template functions and conditions are reported).
fn convert_template(name: &str, text: &str, field: &str, report: &mut dyn FnMut(String, String)) -> Option<String> {
    if !Trigger::ALL.iter().any(|t| t.template_name() == name) {
        report(
            field.into(),
            "not carried over: Sluice templates are named after a built-in trigger without `on-`".into(),
        );
        return None;
    }
    let Ok(Value::Object(entry)) = serde_saphyr::from_str::<Value>(text) else {
        report(field.into(), "left out: not a YAML mapping".into());
        return None;
    };
    for key in entry.keys().filter(|k| *k != "message") {
        report(
            format!("{field}.{key}"),
            "dropped: Sluice formats Slack, Teams and webhook bodies itself".into(),
        );
    }
    let message = entry.get("message").and_then(Value::as_str).unwrap_or_default();
    if let Err(why) = Template::parse(message) {
        report(
            format!("{field}.message"),
            format!("not carried over, the built-in message is used: {why}"),
        );
        return None;
    }
    serde_saphyr::to_string(&json!({"message": message})).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argo_subscriptions_map_one_to_one_and_the_rest_is_reported() {
        let mut rollout = json!({"metadata": {"annotations": {
            "notifications.argoproj.io/subscribe.on-rollout-aborted.slack": "#deploys",
            "notifications.argoproj.io/subscribe.on-analysis-run-failed.hook": "",
            "notifications.argoproj.io/subscribe.on-rollout-updated.slack": "#x",
            "notified.notifications.argoproj.io": "{}",
            "notifications.argoproj.io/subscriptions": "- recipients: [slack:x]",
            "team": "payments",
        }}});
        let mut notes = Vec::new();
        convert_subscriptions(&mut rollout, &mut |field, message| {
            notes.push(format!("{field}: {message}"))
        });
        let annotations = &rollout["metadata"]["annotations"];
        assert_eq!(
            annotations["notifications.sluice.dev/subscribe.on-rollout-aborted.slack"],
            "#deploys"
        );
        assert_eq!(
            annotations["notifications.sluice.dev/subscribe.on-analysis-run-failed.hook"],
            ""
        );
        assert!(
            annotations
                .get("notifications.argoproj.io/subscribe.on-rollout-aborted.slack")
                .is_none()
        );
        assert_eq!(annotations["team"], "payments");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("on-rollout-updated.slack") && notes[0].contains("not carried over"));
        assert!(notes[1].contains("notifications.argoproj.io/subscriptions"));
    }

    #[test]
    fn argos_configmap_keeps_what_sluice_reads_and_reports_the_rest() {
        let argo = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ARGO_CONFIGMAP, "namespace": "argo-rollouts"},
            "data": {
                "service.slack": "token: $slack-token\nusername: bot\n",
                "service.webhook.hook": "url: https://hooks.example.com\nheaders:\n- name: X\n  value: y\nbasicAuth: {username: a}\n",
                "template.rollout-aborted": "message: \"{{.rollout.metadata.name}} aborted\"\nslack:\n  attachments: x\n",
                "template.rollout-paused": "message: \"{{if .x}}y{{end}}\"\n",
                "template.my-own": "message: hi\n",
                "trigger.on-rollout-aborted": "- send: [rollout-aborted]\n",
                "defaultTriggers": "- on-rollout-aborted\n",
            },
        });
        assert!(is_argo_configmap(&argo));
        let mut notes = Vec::new();
        let converted = convert_configmap(&argo, &mut |field, message| notes.push(format!("{field}: {message}")));
        assert_eq!(
            converted["metadata"],
            json!({"name": "sluice-notifications", "namespace": "sluice-system"})
        );
        let data: std::collections::BTreeMap<String, String> =
            serde_json::from_value(converted["data"].clone()).unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["service.slack", "service.webhook.hook", "template.rollout-aborted"]
        );
        let parsed = crate::notify::config::parse(&data, Some(&[("slack-token".to_string(), "x".to_string())].into()));
        assert_eq!(
            parsed.problems,
            Vec::<String>::new(),
            "what convert keeps, Sluice reads"
        );
        let notes = notes.join("\n");
        for expected in [
            "data[\"service.slack\"].username: dropped",
            "data[\"service.webhook.hook\"].basicAuth: dropped",
            "data[\"template.rollout-aborted\"].slack: dropped",
            "data[\"template.rollout-paused\"].message: not carried over",
            "data[\"template.my-own\"]: not carried over",
            "data[\"trigger.on-rollout-aborted\"]: not carried over",
            "data[\"defaultTriggers\"]: not carried over",
            "metadata: renamed to sluice-system/sluice-notifications",
        ] {
            assert!(notes.contains(expected), "{expected:?} missing from:\n{notes}");
        }
    }
}
