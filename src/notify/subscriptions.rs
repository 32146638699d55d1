//! What an object asks to be told about (its `notifications.sluice.dev/subscribe.*` annotations), and
//! what was already sent about it (its `notifications.sluice.dev/sent` annotation).

use std::collections::BTreeMap;

use crate::api::keys::{NOTIFY_SENT_ANNOTATION, NOTIFY_SUBSCRIBE_PREFIX};

use super::config::check_service_name;
use super::triggers::{ObjectKind, Trigger};

/// Most subscriptions read from one object.
const MAX_SUBSCRIPTIONS: usize = 32;
/// Most recipients of one subscription.
const MAX_RECIPIENTS: usize = 16;
/// Longest recipient (a channel, a name, or a Teams webhook URL).
const MAX_RECIPIENT_CHARS: usize = 1024;
/// Dedup keys kept in the sent record (newest last): enough for every state one revision goes through,
/// small enough for an annotation. Triggers never look further back than this (see `triggers`).
pub const MAX_SENT_KEYS: usize = 40;
/// Longest dedup key kept.
const MAX_KEY_CHARS: usize = 200;

/// One destination: a service and the recipient it is given (`""` for a webhook that needs none).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub service: String,
    pub recipient: String,
}

/// An object's subscriptions by trigger, and the annotations that could not be used (with why).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subscriptions {
    pub by_trigger: BTreeMap<Trigger, Vec<Destination>>,
    pub problems: Vec<String>,
}

impl Subscriptions {
    pub fn is_empty(&self) -> bool {
        self.by_trigger.is_empty()
    }
}

/// Whether `annotations` hold any subscription (a cheap test before the work).
pub fn has_subscriptions(annotations: &BTreeMap<String, String>) -> bool {
    annotations.keys().any(|k| k.starts_with(NOTIFY_SUBSCRIBE_PREFIX))
}

/// Reads the subscriptions of an object of `kind`: `subscribe.<trigger>.<service>: <recipient>[;…]`.
pub fn parse(kind: ObjectKind, annotations: &BTreeMap<String, String>) -> Subscriptions {
    let mut out = Subscriptions::default();
    let mut seen = 0usize;
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(NOTIFY_SUBSCRIBE_PREFIX) else {
            continue;
        };
        seen += 1;
        if seen > MAX_SUBSCRIPTIONS {
            out.problems.push(format!(
                "more than {MAX_SUBSCRIPTIONS} subscriptions; metadata.annotations[{key:?}] and later ones ignored"
            ));
            break;
        }
        let field = format!("metadata.annotations[{key:?}]");
        let Some((trigger_name, service)) = rest.split_once('.') else {
            out.problems.push(format!(
                "{field}: expected {NOTIFY_SUBSCRIBE_PREFIX}<trigger>.<service>"
            ));
            continue;
        };
        let Some(trigger) = Trigger::parse(trigger_name) else {
            out.problems.push(format!(
                "{field}: unknown trigger {trigger_name:?} (known: {})",
                Trigger::ALL.map(Trigger::name).join(", ")
            ));
            continue;
        };
        if !trigger.applies_to(kind) {
            out.problems
                .push(format!("{field}: {trigger_name} never fires on a {}", kind.name()));
            continue;
        }
        if let Err(why) = check_service_name(service) {
            out.problems.push(format!("{field}: {why}"));
            continue;
        }
        let recipients: Vec<&str> = value.split(';').map(str::trim).collect();
        let mut recipients: Vec<&str> = match recipients.iter().filter(|r| !r.is_empty()).count() {
            0 => vec![""],
            _ => recipients.into_iter().filter(|r| !r.is_empty()).collect(),
        };
        if recipients.len() > MAX_RECIPIENTS {
            out.problems.push(format!(
                "{field}: more than {MAX_RECIPIENTS} recipients; the rest ignored"
            ));
            recipients.truncate(MAX_RECIPIENTS);
        }
        let destinations = out.by_trigger.entry(trigger).or_default();
        for recipient in recipients {
            if recipient.chars().count() > MAX_RECIPIENT_CHARS || recipient.chars().any(char::is_control) {
                out.problems.push(format!(
                    "{field}: a recipient longer than {MAX_RECIPIENT_CHARS} characters or with control characters"
                ));
                continue;
            }
            let destination = Destination {
                service: service.to_string(),
                recipient: recipient.to_string(),
            };
            if !destinations.contains(&destination) {
                destinations.push(destination);
            }
        }
    }
    out.by_trigger.retain(|_, d| !d.is_empty());
    out
}

/// The dedup keys recorded as sent, oldest first. An unreadable record reads as empty: the worst case
/// is a message sent again (at-least-once), never one lost.
pub fn sent_keys(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let Some(value) = annotations.get(NOTIFY_SENT_ANNOTATION) else {
        return Vec::new();
    };
    // Each key at most MAX_KEY_CHARS characters, each at most 6 bytes as JSON (`\u0000`), plus quotes and commas.
    if value.len() > MAX_SENT_KEYS * (MAX_KEY_CHARS * 6 + 3) + 2 {
        return Vec::new();
    }
    serde_json::from_str::<Vec<String>>(value).unwrap_or_default()
}

/// The record with `keys` added as the newest (a key already in it moves to the end, so the oldest
/// dropped to keep [`MAX_SENT_KEYS`] is never one just recorded).
pub fn record_sent(mut sent: Vec<String>, keys: &[String]) -> String {
    for key in keys {
        let key: String = key.chars().take(MAX_KEY_CHARS).collect();
        sent.retain(|existing| *existing != key);
        sent.push(key);
    }
    let excess = sent.len().saturating_sub(MAX_SENT_KEYS);
    sent.drain(..excess);
    serde_json::to_string(&sent).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn annotations(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn subscriptions_name_trigger_service_and_recipients() {
        let subscriptions = parse(
            ObjectKind::Rollout,
            &annotations(&[
                ("notifications.sluice.dev/subscribe.on-rollout-aborted.hook", ""),
                (
                    "notifications.sluice.dev/subscribe.on-rollout-aborted.slack",
                    "#deploys; #oncall;;",
                ),
                ("notifications.sluice.dev/subscribe.on-rollout-completed.teams", "ops"),
                ("sluice.dev/other", "x"),
            ]),
        );
        assert_eq!(subscriptions.problems, Vec::<String>::new());
        let aborted = &subscriptions.by_trigger[&Trigger::RolloutAborted];
        let shown: Vec<(&str, &str)> = aborted
            .iter()
            .map(|d| (d.service.as_str(), d.recipient.as_str()))
            .collect();
        assert_eq!(shown, [("hook", ""), ("slack", "#deploys"), ("slack", "#oncall")]);
        assert_eq!(subscriptions.by_trigger[&Trigger::RolloutCompleted].len(), 1);
    }

    #[test]
    fn bad_subscriptions_are_reported_with_their_annotation() {
        let subscriptions = parse(
            ObjectKind::GitSync,
            &annotations(&[
                ("notifications.sluice.dev/subscribe.on-deployed.hook", ""),
                ("notifications.sluice.dev/subscribe.on-rollout-aborted.hook", ""),
                ("notifications.sluice.dev/subscribe.on-gitsync-blocked", ""),
                ("notifications.sluice.dev/subscribe.on-gitsync-blocked.Hook!", ""),
            ]),
        );
        assert!(subscriptions.is_empty());
        let problems = subscriptions.problems.join("\n");
        assert!(problems.contains("unknown trigger \"on-deployed\""), "{problems}");
        assert!(
            problems.contains("on-rollout-aborted never fires on a GitSync"),
            "{problems}"
        );
        assert!(problems.contains("expected notifications.sluice.dev/subscribe.<trigger>.<service>"));
        assert!(problems.contains("service name"));
    }

    #[test]
    fn the_sent_record_keeps_the_newest_keys_and_survives_garbage() {
        let keys: Vec<String> = (0..MAX_SENT_KEYS + 10).map(|i| format!("k{i}")).collect();
        let record = record_sent(Vec::new(), &keys);
        let read = sent_keys(&annotations(&[(NOTIFY_SENT_ANNOTATION, &record)]));
        assert_eq!(read.len(), MAX_SENT_KEYS);
        assert_eq!(read.last().map(String::as_str), Some("k49"));
        assert_eq!(read.first().map(String::as_str), Some("k10"));
        assert!(sent_keys(&annotations(&[(NOTIFY_SENT_ANNOTATION, "{not json")])).is_empty());
        assert!(sent_keys(&annotations(&[(NOTIFY_SENT_ANNOTATION, &"x".repeat(1 << 20))])).is_empty());
        let again = record_sent(read.clone(), &["k49".to_string()]);
        assert_eq!(sent_keys(&annotations(&[(NOTIFY_SENT_ANNOTATION, &again)])), read);
    }

    proptest! {
        #[test]
        fn any_annotations_parse_bounded(entries in prop::collection::btree_map("notifications\\.sluice\\.dev/subscribe\\.[a-z.-]{0,40}", ".{0,300}", 0..50)) {
            let subscriptions = parse(ObjectKind::Rollout, &entries);
            let total: usize = subscriptions.by_trigger.values().map(Vec::len).sum();
            prop_assert!(total <= MAX_SUBSCRIPTIONS * MAX_RECIPIENTS);
        }

        #[test]
        fn the_record_is_bounded_and_holds_the_latest(keys in prop::collection::vec(".{0,300}", 0..100)) {
            let record = record_sent(Vec::new(), &keys);
            let read = sent_keys(&annotations(&[(NOTIFY_SENT_ANNOTATION, &record)]));
            prop_assert!(read.len() <= MAX_SENT_KEYS);
            if let Some(last) = keys.last() {
                let last: String = last.chars().take(MAX_KEY_CHARS).collect();
                prop_assert!(read.contains(&last));
            }
        }
    }
}
