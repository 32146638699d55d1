//! Notifications: Rollouts, GitSyncs and AnalysisRuns subscribe with annotations
//! (`notifications.sluice.dev/subscribe.<trigger>.<service>: <recipient>`) to built-in triggers, and the
//! services of a ConfigMap (webhooks, Slack, Teams) are told.
//!
//! `triggers` decides what fires (pure), `subscriptions` who asked and what was sent already, `config`
//! and `template` what the ConfigMap says, `delivery` sends at-least-once apart from the reconciles;
//! `controller::notifications` wires it to the watches.
pub mod config;
pub mod delivery;
pub mod subscriptions;
pub mod template;
pub mod triggers;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use config::NotifyConfig;
use delivery::{Ledger, Notification, ObjectId};
use triggers::Firing;

/// What to send about one object now: its firings that it subscribed to and that were neither recorded
/// as sent on it nor queued, sent or recorded by this process; and the problems with its subscriptions.
pub fn notifications_for(
    object: &ObjectId,
    annotations: &BTreeMap<String, String>,
    object_json: &Value,
    firings: Vec<Firing>,
    config: &NotifyConfig,
    ledger: &Ledger,
) -> (Vec<Notification>, Vec<String>) {
    let subscriptions = subscriptions::parse(object.kind, annotations);
    if subscriptions.is_empty() {
        return (Vec::new(), subscriptions.problems);
    }
    let sent = subscriptions::sent_keys(annotations);
    let mut out = Vec::new();
    for firing in firings {
        let Some(destinations) = subscriptions.by_trigger.get(&firing.trigger) else {
            continue;
        };
        if sent.contains(&firing.key) || ledger.knows(&object.uid, &firing.key) {
            continue;
        }
        let context = json!({
            "object": {"kind": object.kind.name(), "namespace": object.namespace, "name": object.name},
            object.kind.name().to_ascii_lowercase(): object_json,
            "trigger": firing.trigger.name(),
            "revision": firing.revision,
            "detail": firing.detail,
        });
        let message = config.template(firing.trigger).render(&context);
        out.push(Notification {
            object: object.clone(),
            firing,
            message,
            destinations: destinations.clone(),
        });
    }
    (out, subscriptions.problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::keys::NOTIFY_SENT_ANNOTATION;
    use triggers::{ObjectKind, Trigger};

    fn object() -> ObjectId {
        ObjectId {
            kind: ObjectKind::Rollout,
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
        }
    }

    fn firing(trigger: Trigger, key: &str) -> Firing {
        Firing {
            trigger,
            key: key.into(),
            revision: "abc".into(),
            detail: "abort requested".into(),
        }
    }

    #[test]
    fn only_subscribed_unsent_firings_are_sent_with_the_rendered_message() {
        let annotations: BTreeMap<String, String> = [
            (
                "notifications.sluice.dev/subscribe.on-rollout-aborted.hook".to_string(),
                String::new(),
            ),
            (NOTIFY_SENT_ANNOTATION.to_string(), r#"["old-key"]"#.to_string()),
        ]
        .into();
        let firings = vec![
            firing(Trigger::RolloutAborted, "new-key"),
            firing(Trigger::RolloutAborted, "old-key"),
            firing(Trigger::RolloutCompleted, "other"),
        ];
        let ledger = Ledger::default();
        let (out, problems) = notifications_for(
            &object(),
            &annotations,
            &json!({"metadata": {"name": "web"}}),
            firings.clone(),
            &NotifyConfig::default(),
            &ledger,
        );
        assert!(problems.is_empty());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].firing.key, "new-key");
        assert_eq!(
            out[0].message,
            "Rollout default/web was aborted: abort requested (revision abc)."
        );
        assert_eq!(out[0].destinations[0].service, "hook");
    }
}
