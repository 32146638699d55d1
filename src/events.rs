//! Kubernetes Events (events.k8s.io/v1) recorded as the API server's event series expect: the first
//! occurrence creates an Event, the second patches it into a series (count 2), and later repeats
//! within the series window only count up in memory, written by a periodic flush — as client-go's
//! event broadcaster does. A reconcile that records the same Warning every backoff therefore costs
//! one write per flush period instead of one Event per attempt.
//!
//! kube-runtime's `Recorder` (kube 5) keeps every Event it made, whole, for six minutes and scans that
//! cache under a write lock on every publish; its key compares the full ObjectReference, whose
//! resourceVersion changes with every write of the object, so a controller's repeats never match and
//! the cache only grows with a burst. Here the memory is a 64-bit key (hashed with a per-process
//! random key, so user-chosen messages cannot aim collisions), the Event's name and counts, and it is
//! bounded ([`MAX_SERIES`]) and pruned as it goes.
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType, Reporter};

/// A series ends this long after its last occurrence; a later repeat starts a new Event
/// (client-go's `finishTime`, kube-runtime's cache TTL).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often counted repeats are written to their series.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// Series remembered at most; past it the oldest are forgotten (a repeat then creates a new Event).
pub const MAX_SERIES: usize = 8192;
/// events.k8s.io/v1 rejects a note above 1 kB.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Every Event write gives up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Records Events on objects; clones share one series memory.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    reporter: Reporter,
    hasher: std::collections::hash_map::RandomState,
    series: Mutex<SeriesMemory>,
}

/// One Event that may become a series.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    namespace: String,
    name: String,
    /// Occurrences so far (1: the Event alone).
    count: i32,
    /// Occurrences already written (the count the API server shows).
    written: i32,
    last_seen: Instant,
    last_seen_at: Timestamp,
}

/// What a publish has to write.
#[derive(Debug, PartialEq)]
enum Action {
    /// A new Event.
    Create,
    /// The Event became a series, or its counted repeats are due: patch it.
    Patch(Series),
    /// Counted; a flush writes it.
    Nothing,
}

#[derive(Debug, Default)]
struct SeriesMemory {
    by_key: HashMap<u64, Series>,
    flusher_started: bool,
}

impl SeriesMemory {
    /// Counts one occurrence of the Event with `key` at `now` and says what to write.
    fn observe(&mut self, key: u64, now: Instant, at: Timestamp) -> Action {
        match self.by_key.get_mut(&key) {
            Some(series) if now.saturating_duration_since(series.last_seen) < SERIES_WINDOW => {
                series.count = series.count.saturating_add(1);
                series.last_seen = now;
                series.last_seen_at = at;
                if series.written < 2 {
                    series.written = series.count;
                    Action::Patch(series.clone())
                } else {
                    Action::Nothing
                }
            }
            _ => Action::Create,
        }
    }

    /// Remembers the Event just created for `key`; prunes ended series and, when full, the oldest.
    fn created(&mut self, key: u64, namespace: &str, name: &str, now: Instant, at: Timestamp) {
        if self.by_key.len() >= MAX_SERIES {
            self.by_key
                .retain(|_, s| now.saturating_duration_since(s.last_seen) < SERIES_WINDOW);
        }
        if self.by_key.len() >= MAX_SERIES {
            // Forget the oldest quarter at once (ties broken by key, so exactly a quarter goes), so a
            // full memory is not scanned on every create.
            let mut seen: Vec<(Instant, u64)> = self.by_key.iter().map(|(k, s)| (s.last_seen, *k)).collect();
            let cut = (seen.len() / 4).max(1);
            seen.select_nth_unstable(cut - 1);
            for (_, oldest) in &seen[..cut] {
                self.by_key.remove(oldest);
            }
        }
        self.by_key.insert(
            key,
            Series {
                namespace: namespace.to_string(),
                name: name.to_string(),
                count: 1,
                written: 1,
                last_seen: now,
                last_seen_at: at,
            },
        );
    }

    /// The series whose counted repeats are unwritten (marked written), and forgets ended series.
    fn due(&mut self, now: Instant) -> Vec<Series> {
        let mut due = Vec::new();
        self.by_key.retain(|_, series| {
            if series.count > series.written {
                series.written = series.count;
                due.push(series.clone());
            }
            now.saturating_duration_since(series.last_seen) < SERIES_WINDOW
        });
        if self.by_key.capacity() > 2 * self.by_key.len().max(64) {
            // After a burst, give the table's memory back.
            self.by_key.shrink_to_fit();
        }
        due
    }

    fn forget(&mut self, key: u64) {
        self.by_key.remove(&key);
    }
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                client,
                reporter,
                hasher: Default::default(),
                series: Mutex::default(),
            }),
        }
    }

    /// Records `event` on the object `regarding`: a new Event, or a repeat of a recent identical one
    /// (same object, type, reason, action and note) counted into its series.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = self.key(event, regarding);
        let now = Instant::now();
        let at = Timestamp::now();
        let action = {
            let mut memory = self.memory();
            if !memory.flusher_started {
                memory.flusher_started = true;
                tokio::spawn(flush_periodically(Arc::downgrade(&self.inner)));
            }
            memory.observe(key, now, at)
        };
        match action {
            Action::Nothing => Ok(()),
            Action::Patch(series) => match patch_series(&self.inner.client, &series).await {
                // The Event is gone (expired or deleted): start again.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.memory().forget(key);
                    self.create(key, event, regarding, now, at).await
                }
                other => other,
            },
            Action::Create => self.create(key, event, regarding, now, at).await,
        }
    }

    async fn create(
        &self,
        key: u64,
        event: &Event,
        regarding: &ObjectReference,
        now: Instant,
        at: Timestamp,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.inner.reporter.controller),
            at.as_nanosecond()
        );
        let reporter = &self.inner.reporter;
        let object = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(at)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.as_deref().map(bounded_note),
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..Default::default()
            },
            reporting_controller: Some(reporter.controller.clone()),
            reporting_instance: Some(reporter.instance.clone().unwrap_or_else(|| reporter.controller.clone())),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        };
        let events: Api<K8sEvent> = Api::namespaced(self.inner.client.clone(), &namespace);
        within_timeout(events.create(&PostParams::default(), &object)).await?;
        self.memory().created(key, &namespace, &name, now, at);
        Ok(())
    }

    /// Writes every series with unwritten repeats now (also done every [`FLUSH_EVERY`]).
    pub async fn flush(&self) {
        flush(&self.inner).await;
    }

    /// Series remembered (tests look for leaks with it).
    pub fn remembered(&self) -> usize {
        self.memory().by_key.len()
    }

    fn key(&self, event: &Event, regarding: &ObjectReference) -> u64 {
        let mut hasher = self.inner.hasher.build_hasher();
        let reference = |r: &ObjectReference, h: &mut dyn Hasher| {
            // Not resourceVersion or fieldPath: the same object across its writes.
            for part in [&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid] {
                part.as_deref().unwrap_or("").hash(&mut HashInto(h));
            }
        };
        reference(regarding, &mut hasher);
        match &event.secondary {
            Some(related) => {
                1u8.hash(&mut hasher);
                reference(related, &mut hasher);
            }
            None => 0u8.hash(&mut hasher),
        }
        matches!(event.type_, EventType::Warning).hash(&mut hasher);
        event.reason.hash(&mut hasher);
        event.action.hash(&mut hasher);
        event.note.hash(&mut hasher);
        hasher.finish()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, SeriesMemory> {
        self.inner.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets a `&mut dyn Hasher` be used where `Hash::hash` wants a sized one.
struct HashInto<'a>(&'a mut dyn Hasher);

impl Hasher for HashInto<'_> {
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes)
    }
}

async fn flush_periodically(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        flush(&inner).await;
    }
}

async fn flush(inner: &Inner) {
    let due = inner
        .series
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .due(Instant::now());
    for series in due {
        // Best effort, as every Event: a lost count is not worth a retry loop.
        if let Err(e) = patch_series(&inner.client, &series).await {
            tracing::debug!(error = %e, event = %series.name, "could not update an event series");
        }
    }
}

async fn patch_series(client: &Client, series: &Series) -> Result<(), kube::Error> {
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), &series.namespace);
    let patch = serde_json::json!({
        "series": {
            "count": series.count,
            "lastObservedTime": MicroTime(series.last_seen_at),
        }
    });
    within_timeout(events.patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch)))
        .await
        .map(|_| ())
}

async fn within_timeout<T>(write: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!("event write timed out after {WRITE_TIMEOUT:?}").into(),
        )),
    }
}

/// `note` cut to [`MAX_NOTE_BYTES`] at a character boundary.
fn bounded_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series_written(action: Action) -> Option<i32> {
        match action {
            Action::Patch(s) => Some(s.count),
            _ => None,
        }
    }

    #[test]
    fn a_repeat_becomes_a_series_and_later_repeats_wait_for_the_flush() {
        let mut memory = SeriesMemory::default();
        let t0 = Instant::now();
        let at = Timestamp::now();
        assert_eq!(memory.observe(7, t0, at), Action::Create);
        memory.created(7, "ns", "web.1", t0, at);
        assert_eq!(
            series_written(memory.observe(7, t0 + Duration::from_secs(1), at)),
            Some(2)
        );
        assert_eq!(memory.observe(7, t0 + Duration::from_secs(2), at), Action::Nothing);
        assert_eq!(memory.observe(7, t0 + Duration::from_secs(3), at), Action::Nothing);
        let due = memory.due(t0 + Duration::from_secs(4));
        assert_eq!(
            due.iter().map(|s| (s.name.as_str(), s.count)).collect::<Vec<_>>(),
            [("web.1", 4)]
        );
        assert!(memory.due(t0 + Duration::from_secs(5)).is_empty(), "written once");
        // Another Event is its own series.
        assert_eq!(memory.observe(8, t0, at), Action::Create);
    }

    #[test]
    fn a_series_ends_after_its_window_and_is_forgotten() {
        let mut memory = SeriesMemory::default();
        let t0 = Instant::now();
        let at = Timestamp::now();
        memory.created(1, "ns", "web.1", t0, at);
        let late = t0 + SERIES_WINDOW;
        assert_eq!(
            memory.observe(1, late, at),
            Action::Create,
            "a new Event after the window"
        );
        assert!(memory.due(late).is_empty());
        assert_eq!(memory.by_key.len(), 0, "the ended series is forgotten");
    }

    #[test]
    fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        assert_eq!(bounded_note("short"), "short");
        let long = "é".repeat(MAX_NOTE_BYTES);
        let cut = bounded_note(&long);
        assert!(cut.len() <= MAX_NOTE_BYTES && cut.len() >= MAX_NOTE_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    /// Against the simulated API server: three identical Warnings are one Event whose series counts
    /// three once flushed; a different note is an Event of its own.
    #[tokio::test]
    async fn repeats_are_one_event_with_a_series() {
        let sim = sluice_sim::Simulator::start(sluice_sim::SimConfig::default())
            .await
            .unwrap();
        let client = sim.client().unwrap();
        let recorder = Recorder::new(client.clone(), Reporter::from("sluice-test"));
        let regarding = ObjectReference {
            api_version: Some("sluice.dev/v1alpha1".into()),
            kind: Some("Rollout".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        };
        let event = |note: &str| Event {
            type_: EventType::Warning,
            reason: "ReconcileError".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        for resource_version in ["1", "2", "3"] {
            // The object's resourceVersion changes between reconciles; the series does not.
            let regarding = ObjectReference {
                resource_version: Some(resource_version.into()),
                ..regarding.clone()
            };
            recorder.publish(&event("boom"), &regarding).await.unwrap();
        }
        recorder.publish(&event("other"), &regarding).await.unwrap();
        recorder.flush().await;
        let events: Api<K8sEvent> = Api::namespaced(client, "default");
        let mut listed: Vec<(Option<String>, i32)> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.note, e.series.map_or(1, |s| s.count)))
            .collect();
        listed.sort();
        assert_eq!(listed, [(Some("boom".into()), 3), (Some("other".into()), 1)]);
        assert_eq!(recorder.remembered(), 2);
        sim.shutdown().await;
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// However many distinct Events a burst records, the memory stays within its bound, and the
        /// newest one is always remembered.
        #[test]
        fn the_memory_is_bounded(keys in proptest::collection::vec(any::<u64>(), 1..(3 * MAX_SERIES)), step_ms in 0u64..50) {
            let mut memory = SeriesMemory::default();
            let t0 = Instant::now();
            let at = Timestamp::now();
            for (i, key) in keys.iter().enumerate() {
                let now = t0 + Duration::from_millis(step_ms * i as u64);
                if memory.observe(*key, now, at) == Action::Create {
                    memory.created(*key, "ns", "e", now, at);
                }
                prop_assert!(memory.by_key.len() <= MAX_SERIES);
            }
            prop_assert!(memory.by_key.contains_key(keys.last().unwrap()));
        }
    }
}
