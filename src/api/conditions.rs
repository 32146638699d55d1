//! Status conditions shared by every Sluice resource: Argo-style types (Available, Progressing, …) plus
//! the kstatus trio (Ready, Reconciling, Stalled) that Flux and Argo CD health checks read unmodified.
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::keys::condition::*;

/// The status of a condition, as Kubernetes spells it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition's message is cut to this many bytes (with a `…[truncated, N bytes]` marker): messages
/// quote API server, Git and analysis errors, whose length nobody bounds.
pub const MAX_CONDITION_MESSAGE_BYTES: usize = 4 * 1024;

/// One observation about an object, in the shape of `metav1.Condition` (plus Argo's lastUpdateTime).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. Available, Progressing, Paused, Completed, Healthy, InvalidSpec, Ready,
    /// Reconciling, Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (from True to False, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// When the reason, message or status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::api::Timestamp>")]
    pub last_update_time: Option<DateTime<Utc>>,
    /// The metadata.generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition without timestamps; `set_condition` stamps them.
    pub fn new(type_: &str, status: impl Into<ConditionStatus>, reason: &str, message: impl Into<String>) -> Self {
        let mut message = Some(message.into());
        crate::bounds::truncate_in_place(&mut message, MAX_CONDITION_MESSAGE_BYTES);
        Condition {
            type_: type_.to_string(),
            status: status.into(),
            reason: Some(reason.to_string()),
            message,
            last_transition_time: None,
            last_update_time: None,
            observed_generation: None,
        }
    }

    /// Sets the generation the condition was computed from.
    pub fn observed(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// True when the status is True.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// Same status, reason, message and generation: nothing a reader would see as news.
    fn same_content(&self, other: &Condition) -> bool {
        self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of this type is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(Condition::is_true)
}

/// Adds or replaces the condition of `condition.type_`. lastTransitionTime moves only when the status
/// changes and lastUpdateTime only when anything changes, so re-setting an unchanged condition is a
/// no-op (no status write churn). Returns whether the list changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: DateTime<Utc>) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) if existing.same_content(&condition) => false,
        Some(existing) => {
            condition.last_transition_time = if existing.status == condition.status {
                existing.last_transition_time.or(Some(now))
            } else {
                Some(now)
            };
            condition.last_update_time = Some(now);
            *existing = condition;
            true
        }
        None => {
            condition.last_transition_time = Some(now);
            condition.last_update_time = Some(now);
            conditions.push(condition);
            true
        }
    }
}

/// Removes the condition of this type; returns whether it was present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_long_message_is_cut() {
        let condition = Condition::new(READY, false, "SyncFailed", "e".repeat(100_000));
        let message = condition.message.unwrap();
        assert!(message.len() <= MAX_CONDITION_MESSAGE_BYTES, "{}", message.len());
        assert!(
            message.ends_with("…[truncated, 100000 bytes]"),
            "{}",
            &message[message.len() - 40..]
        );
        let short = Condition::new(READY, true, "Succeeded", "applied revision abc");
        assert_eq!(short.message.as_deref(), Some("applied revision abc"));
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, false, "Progressing", "step 1/4"),
            at(0)
        ));
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, false, "Progressing", "step 2/4"),
            at(10)
        ));
        let ready = find(&conditions, READY).unwrap();
        assert_eq!(ready.last_transition_time, Some(at(0)));
        assert_eq!(ready.last_update_time, Some(at(10)));
        assert_eq!(ready.message.as_deref(), Some("step 2/4"));

        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, true, "Healthy", "done"),
            at(20)
        ));
        let ready = find(&conditions, READY).unwrap();
        assert_eq!(ready.last_transition_time, Some(at(20)));
        assert!(is_true(&conditions, READY));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn unchanged_condition_is_a_no_op() {
        let mut conditions = vec![];
        set_condition(&mut conditions, Condition::new(STALLED, false, "Ok", ""), at(0));
        let before = conditions.clone();
        assert!(!set_condition(
            &mut conditions,
            Condition::new(STALLED, false, "Ok", ""),
            at(30)
        ));
        assert_eq!(conditions, before);
        assert!(remove_condition(&mut conditions, STALLED));
        assert!(find(&conditions, STALLED).is_none());
    }

    #[test]
    fn serializes_like_kubernetes() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            Condition::new(INVALID_SPEC, true, "InvalidSpec", "x").observed(Some(3)),
            at(0),
        );
        let json = serde_json::to_value(&conditions[0]).unwrap();
        assert_eq!(json["type"], "InvalidSpec");
        assert_eq!(json["status"], "True");
        assert_eq!(json["observedGeneration"], 3);
        assert_eq!(json["lastTransitionTime"], "2023-11-14T22:13:20Z");
    }
}
