//! Watches: replay from a resourceVersion, then the live feed, filtered by namespace and selectors,
//! with bookmarks, timeouts and the 410 "too old resource version" answer kube-runtime relists on.
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::api::ApiServer;
use crate::registry::GroupResource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::{Change, EventType, StoredObject};

#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub resource: GroupResource,
    pub namespace: Option<String>,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    /// The resourceVersion to start after; None or "0" start with the current state as ADDED events.
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
}

/// One line of a watch response.
#[derive(Debug, Clone)]
pub enum Frame {
    Event(EventType, Arc<StoredObject>),
    Bookmark {
        resource_version: u64,
        initial_events_end: bool,
    },
    /// Ends the watch with an ERROR event (e.g. 410 Expired).
    Error(ApiError),
}

struct State {
    server: Arc<ApiServer>,
    request: WatchRequest,
    pending: std::collections::VecDeque<Frame>,
    live: broadcast::Receiver<Arc<Change>>,
    last_seen: u64,
    deadline: Instant,
    next_bookmark: Instant,
    dropped: watch::Receiver<u64>,
    done: bool,
}

/// Starts a watch. `drop_watches` ends every open watch when its value changes (fault injection).
pub fn start(
    server: Arc<ApiServer>,
    request: WatchRequest,
    drop_watches: watch::Receiver<u64>,
) -> ApiResult<impl Stream<Item = Frame> + Send + 'static> {
    let from = match request.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let mut pending = std::collections::VecDeque::new();
    let txn = server.store.lock();
    let (live, last_seen) = match from {
        Some(rv) => match txn.watch_from(Some(rv)) {
            Ok(start) => {
                for change in start.replay {
                    if let Some(frame) = filter(&server, &request, &change) {
                        pending.push_back(frame);
                    }
                }
                (start.live, txn.resource_version())
            }
            Err(_) => {
                let live = txn.watch_from(None).expect("a watch from now always starts").live;
                pending.push_back(Frame::Error(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    txn.resource_version()
                ))));
                (live, txn.resource_version())
            }
        },
        None => {
            let start = txn.watch_from(None).expect("a watch from now always starts");
            let namespace = request.namespace.as_deref();
            for object in txn.range(&request.resource, namespace, None) {
                if server.matches(object, request.labels.as_ref(), request.fields.as_ref()) {
                    pending.push_back(Frame::Event(EventType::Added, object.clone()));
                }
            }
            if request.send_initial_events {
                pending.push_back(Frame::Bookmark {
                    resource_version: txn.resource_version(),
                    initial_events_end: true,
                });
            }
            (start.live, txn.resource_version())
        }
    };
    drop(txn);
    let now = Instant::now();
    let state = State {
        deadline: now + request.timeout,
        next_bookmark: now + request.bookmark_interval,
        server,
        request,
        pending,
        live,
        last_seen,
        dropped: drop_watches,
        done: false,
    };
    Ok(futures::stream::unfold(state, next_frame))
}

async fn next_frame(mut state: State) -> Option<(Frame, State)> {
    loop {
        if let Some(frame) = state.pending.pop_front() {
            if matches!(frame, Frame::Error(_)) {
                state.done = true;
            }
            return Some((frame, state));
        }
        if state.done {
            return None;
        }
        tokio::select! {
            received = state.live.recv() => match received {
                Ok(change) => {
                    if change.resource_version <= state.last_seen {
                        continue;
                    }
                    state.last_seen = change.resource_version;
                    if let Some(frame) = filter(&state.server, &state.request, &change) {
                        return Some((frame, state));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow to keep up: end with 410 so the client relists, as the API server does.
                    state.pending.push_back(Frame::Error(ApiError::gone("watch fell too far behind; relist required")));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(state.next_bookmark) => {
                state.next_bookmark = Instant::now() + state.request.bookmark_interval;
                if state.request.allow_bookmarks {
                    let frame = Frame::Bookmark { resource_version: state.last_seen, initial_events_end: false };
                    return Some((frame, state));
                }
            },
            _ = tokio::time::sleep_until(state.deadline) => return None,
            _ = state.dropped.changed() => return None,
        }
    }
}

/// The event a watcher with these selectors sees for a change, if any: objects moving into the
/// selection appear as ADDED, out of it as DELETED.
fn filter(server: &ApiServer, request: &WatchRequest, change: &Change) -> Option<Frame> {
    let object = &change.object;
    if object.key.resource != request.resource {
        return None;
    }
    if let Some(ns) = &request.namespace
        && *ns != object.key.namespace
    {
        return None;
    }
    let selects = |o: &StoredObject| server.matches(o, request.labels.as_ref(), request.fields.as_ref());
    let event = match change.event {
        EventType::Added => selects(object).then_some(EventType::Added),
        EventType::Deleted => change
            .previous
            .as_deref()
            .is_some_and(selects)
            .then_some(EventType::Deleted),
        EventType::Modified => {
            let was = change.previous.as_deref().is_some_and(selects);
            match (was, selects(object)) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }?;
    Some(Frame::Event(event, object.clone()))
}
