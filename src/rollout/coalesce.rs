//! Holds back status writes that only change pod counts, so a rollout whose pods come up one by one
//! writes its status about once a second rather than at every pod. Anything else (phase, step,
//! weights, conditions, abort) is written at once; held counts are written when the window ends.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a count-only change waits to be written.
pub const COUNTS_WINDOW: Duration = Duration::from_secs(1);

type Key = (String, String);

/// Per Rollout, when its oldest unwritten count change was first held back.
#[derive(Debug, Default)]
pub struct CountUpdates {
    held_since: Mutex<HashMap<Key, Instant>>,
}

impl CountUpdates {
    /// A count-only change is pending: how long it may still wait, or None when it is due now (its
    /// window has ended; the caller writes it, and the window starts again with the next change).
    pub fn hold(&self, namespace: &str, name: &str, now: Instant) -> Option<Duration> {
        let mut map = self.held_since.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let since = *map.entry(key.clone()).or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited < COUNTS_WINDOW {
            Some(COUNTS_WINDOW - waited)
        } else {
            map.remove(&key);
            None
        }
    }

    /// The status was written (or needs no write): nothing is held any more.
    pub fn release(&self, namespace: &str, name: &str) {
        let mut map = self.held_since.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(namespace.to_string(), name.to_string()));
    }

    /// How many Rollouts have counts held (tests look for leaks with it).
    pub fn len(&self) -> usize {
        self.held_since.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_wait_at_most_one_window_from_the_first_held_change() {
        let updates = CountUpdates::default();
        let t0 = Instant::now();
        assert_eq!(updates.hold("ns", "web", t0), Some(COUNTS_WINDOW));
        let later = t0 + Duration::from_millis(700);
        assert_eq!(
            updates.hold("ns", "web", later),
            Some(Duration::from_millis(300)),
            "a second change does not extend the wait"
        );
        assert_eq!(updates.hold("ns", "other", later), Some(COUNTS_WINDOW));
        assert_eq!(updates.hold("ns", "web", t0 + COUNTS_WINDOW), None, "due");
        let next = t0 + COUNTS_WINDOW + Duration::from_millis(10);
        assert_eq!(
            updates.hold("ns", "web", next),
            Some(COUNTS_WINDOW),
            "a new window after the write"
        );
        updates.release("ns", "web");
        assert_eq!(updates.hold("ns", "web", next), Some(COUNTS_WINDOW));
    }
}
