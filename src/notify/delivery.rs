//! Sending: a bounded queue drained by a few workers, apart from the reconciles (a slow or dead
//! receiver never holds one up). Each destination is tried with exponential backoff (`backon`),
//! bounded in attempts and total time; every request has a timeout, redirects are never followed and
//! every address passes the analysis address allowlist (notification URLs can come from annotations).
//! Once every destination of a notification is done, its key is recorded on the object; a crash
//! before that sends it again (at-least-once).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::analysis::allowlist::Allowlist;

use super::config::{NotifyConfig, Service, check_url};
use super::subscriptions::{Destination, MAX_SENT_KEYS};
use super::triggers::{Firing, ObjectKind};

/// Largest response body read (Slack's answer says whether it worked).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The object a notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// One firing to send to its destinations.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub object: ObjectId,
    pub firing: Firing,
    /// The rendered message.
    pub message: String,
    pub destinations: Vec<Destination>,
}

impl Notification {
    /// The title Slack and Teams show above the message.
    fn title(&self) -> String {
        format!(
            "{} {}/{}: {}",
            self.object.kind.name(),
            self.object.namespace,
            self.object.name,
            self.firing.trigger.name()
        )
    }
}

/// How hard to try one destination.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Cap on the sum of the delays.
    pub max_total_delay: Duration,
    /// Timeout of one request, connection included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retries: 6,
            max_total_delay: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What the workers report (the controller's Prometheus registry implements it).
pub trait NotifyObserver: Send + Sync {
    /// One destination of one notification done: `result` is `sent`, `failed` or `unknown_service`.
    fn count_notification(&self, trigger: &str, service: &str, result: &str);
    /// Notifications queued or being sent.
    fn set_notification_queue_depth(&self, depth: i64);
}

/// Records on the object that keys were sent (the Kubernetes side implements it).
#[async_trait::async_trait]
pub trait SentRecorder: Send + Sync {
    async fn record(&self, object: &ObjectId, keys: &[String]) -> Result<(), String>;
}

/// What this process queued, is sending, or recorded, per object: the record on the object lags (the
/// watch brings our own annotation back later), so without this a reconcile in between sends again.
#[derive(Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<LedgerState>>,
}

#[derive(Default)]
struct LedgerState {
    pending: HashSet<(String, String)>,
    done: HashMap<String, VecDeque<String>>,
}

impl Ledger {
    /// Whether `key` of object `uid` is queued, being sent, or was sent by this process.
    pub fn knows(&self, uid: &str, key: &str) -> bool {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.contains(&(uid.to_string(), key.to_string()))
            || state.done.get(uid).is_some_and(|keys| keys.iter().any(|k| k == key))
    }

    fn pending(&self, uid: &str, key: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.insert((uid.to_string(), key.to_string()));
    }

    fn abandon(&self, uid: &str, key: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.remove(&(uid.to_string(), key.to_string()));
    }

    fn done(&self, uid: &str, key: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.remove(&(uid.to_string(), key.to_string()));
        let keys = state.done.entry(uid.to_string()).or_default();
        keys.push_back(key.to_string());
        while keys.len() > MAX_SENT_KEYS {
            keys.pop_front();
        }
    }

    /// Notifications queued or being sent.
    pub fn pending_count(&self) -> i64 {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i64::try_from(state.pending.len()).unwrap_or(i64::MAX)
    }

    /// The object is gone: forget it.
    pub fn forget(&self, uid: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.done.remove(uid);
        state.pending.retain(|(u, _)| u != uid);
    }

    /// How many objects it remembers (tests look for leaks with it).
    pub fn objects(&self) -> usize {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pending: HashSet<&str> = state.pending.iter().map(|(u, _)| u.as_str()).collect();
        state.done.len().max(pending.len())
    }
}

/// The producing end of the queue.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Notification>,
    ledger: Ledger,
    observer: Arc<dyn NotifyObserver>,
}

impl Queue {
    /// A queue of `capacity` notifications and its receiving end (for [`run_workers`]).
    pub fn new(
        capacity: usize,
        ledger: Ledger,
        observer: Arc<dyn NotifyObserver>,
    ) -> (Queue, mpsc::Receiver<Notification>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Queue { tx, ledger, observer }, rx)
    }

    /// Queues without waiting; a full queue gives the notification back (the caller retries later).
    pub fn try_push(&self, notification: Notification) -> Result<(), Notification> {
        let (uid, key) = (notification.object.uid.clone(), notification.firing.key.clone());
        self.ledger.pending(&uid, &key);
        match self.tx.try_send(notification) {
            Ok(()) => {
                self.observer.set_notification_queue_depth(self.ledger.pending_count());
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n)) => {
                self.ledger.abandon(&uid, &key);
                Err(n)
            }
        }
    }
}

/// Why one attempt failed, and whether another may succeed.
#[derive(Debug)]
enum Failure {
    Retry(String),
    Permanent(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Retry(m) | Failure::Permanent(m) => m,
        }
    }
}

/// Sends to services over HTTP.
pub struct Sender {
    http: reqwest::Client,
    allowlist: Allowlist,
    policy: RetryPolicy,
}

impl Sender {
    pub fn new(allowlist: Allowlist, policy: RetryPolicy) -> anyhow::Result<Sender> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.request_timeout)
            .connect_timeout(policy.request_timeout)
            .user_agent("sluice-notifications")
            .build()?;
        Ok(Sender {
            http,
            allowlist,
            policy,
        })
    }

    /// Sends `notification` to `destination` with retries; `Err` says why it was given up.
    pub async fn deliver(
        &self,
        service: &Service,
        destination: &Destination,
        notification: &Notification,
    ) -> Result<(), String> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_delay)
            .with_max_delay(self.policy.max_delay)
            .with_max_times(self.policy.max_retries)
            .with_total_delay(Some(self.policy.max_total_delay))
            .with_jitter();
        (|| self.attempt(service, destination, notification))
            .retry(backoff)
            .when(|failure| matches!(failure, Failure::Retry(_)))
            .notify(|failure, after| {
                tracing::info!(
                    service = %destination.service,
                    error = failure.message(),
                    retry_in = ?after,
                    "notification not delivered; retrying"
                );
            })
            .await
            .map_err(|failure| failure.message().to_string())
    }

    async fn attempt(&self, service: &Service, destination: &Destination, n: &Notification) -> Result<(), Failure> {
        match service {
            Service::Webhook(hook) => {
                let body = json!({
                    "trigger": n.firing.trigger.name(),
                    "key": n.firing.key,
                    "object": {
                        "kind": n.object.kind.name(),
                        "namespace": n.object.namespace,
                        "name": n.object.name,
                        "uid": n.object.uid,
                    },
                    "revision": n.firing.revision,
                    "detail": n.firing.detail,
                    "message": n.message,
                    "recipient": destination.recipient,
                });
                let mut request = self.http.request(hook.method.clone(), hook.url.clone()).json(&body);
                for (name, value) in &hook.headers {
                    request = request.header(name, value);
                }
                self.send(&hook.url, request).await.map(drop)
            }
            Service::Slack(slack) => {
                if destination.recipient.is_empty() {
                    return Err(Failure::Permanent("slack needs a channel as the recipient".into()));
                }
                let mut url = slack.api_url.clone();
                let path = format!("{}/chat.postMessage", url.path().trim_end_matches('/'));
                url.set_path(&path);
                let request = self.http.post(url.clone()).bearer_auth(&slack.token).json(&json!({
                    "channel": destination.recipient,
                    "text": format!("*{}*\n{}", n.title(), n.message),
                }));
                let body = self.send(&url, request).await?;
                // Slack answers 200 with `ok: false` on failure.
                let answer: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|_| Failure::Permanent("slack answered with something that is not JSON".into()))?;
                if answer["ok"].as_bool() == Some(true) {
                    return Ok(());
                }
                let error = answer["error"].as_str().unwrap_or("unknown error");
                let error = super::template::truncate(error, 100);
                if error == "ratelimited" {
                    Err(Failure::Retry(format!("slack: {error}")))
                } else {
                    Err(Failure::Permanent(format!("slack: {error}")))
                }
            }
            Service::Teams(teams) => {
                let url = match teams.recipient_urls.get(&destination.recipient) {
                    Some(url) => url.clone(),
                    None => check_url(&destination.recipient).map_err(|e| {
                        Failure::Permanent(format!(
                            "teams recipient {:?} is neither a name in recipientUrls nor a URL ({e})",
                            super::template::truncate(&destination.recipient, 64)
                        ))
                    })?,
                };
                let color = match n.firing.trigger {
                    super::triggers::Trigger::RolloutCompleted | super::triggers::Trigger::RolloutStepCompleted => {
                        "2EB67D"
                    }
                    super::triggers::Trigger::RolloutPaused => "ECB22E",
                    _ => "E01E5A",
                };
                let request = self.http.post(url.clone()).json(&json!({
                    "@type": "MessageCard",
                    "@context": "https://schema.org/extensions",
                    "summary": n.title(),
                    "title": n.title(),
                    "text": n.message,
                    "themeColor": color,
                }));
                self.send(&url, request).await.map(drop)
            }
        }
    }

    /// Checks the address, sends, and reads a bounded answer; 2xx is success, 408/429/5xx and
    /// transport errors may pass on a retry, the rest (a redirect included) will not.
    async fn send(&self, url: &reqwest::Url, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        self.allowlist
            .check(url.as_str())
            .await
            .map_err(|why| Failure::Permanent(format!("{}: {why}", host_of(url))))?;
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("{}: {}", host_of(url), transport_error(&e))))?;
        let status = response.status();
        let body = read_bounded(response).await;
        if status.is_success() {
            return Ok(body);
        }
        let message = format!("{} answered {status}", host_of(url));
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(Failure::Retry(message))
        } else if status.is_redirection() {
            Err(Failure::Permanent(format!("{message}; redirects are not followed")))
        } else {
            Err(Failure::Permanent(message))
        }
    }
}

/// The host of a URL, for messages (never the path or query, which may hold a webhook's secret).
fn host_of(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or("?").to_string()
}

/// A transport error without its URL (the path of a Slack or Teams webhook URL is its secret).
fn transport_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

async fn read_bounded(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    body
}

/// Everything the workers share.
pub struct Workers {
    pub sender: Sender,
    pub config: watch::Receiver<Arc<NotifyConfig>>,
    pub recorder: Arc<dyn SentRecorder>,
    pub observer: Arc<dyn NotifyObserver>,
    pub ledger: Ledger,
    /// Notifications sent at once.
    pub concurrency: usize,
}

/// Drains `queue` until `shutdown` (what is being sent then is dropped unrecorded: sent again later).
pub async fn run_workers(workers: Workers, queue: mpsc::Receiver<Notification>, shutdown: CancellationToken) {
    let workers = Arc::new(workers);
    let stream = futures::stream::unfold(queue, |mut queue| async move {
        let next = queue.recv().await;
        next.map(|n| (n, queue))
    });
    let work = stream.for_each_concurrent(workers.concurrency.max(1), |notification| {
        let workers = workers.clone();
        async move {
            handle(&workers, notification).await;
            workers
                .observer
                .set_notification_queue_depth(workers.ledger.pending_count());
        }
    });
    tokio::select! {
        _ = work => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Sends one notification to each destination, then records it.
async fn handle(workers: &Workers, notification: Notification) {
    let config = workers.config.borrow().clone();
    let trigger = notification.firing.trigger.name();
    for destination in &notification.destinations {
        let Some(service) = config.services.get(&destination.service) else {
            tracing::warn!(
                object = %format!("{}/{}", notification.object.namespace, notification.object.name),
                service = %destination.service,
                trigger,
                "a subscription names a service the notifications ConfigMap does not configure"
            );
            workers
                .observer
                .count_notification(trigger, &destination.service, "unknown_service");
            continue;
        };
        match workers.sender.deliver(service, destination, &notification).await {
            Ok(()) => {
                tracing::info!(
                    object = %format!("{}/{}", notification.object.namespace, notification.object.name),
                    service = %destination.service,
                    key = %notification.firing.key,
                    "notification sent"
                );
                workers
                    .observer
                    .count_notification(trigger, &destination.service, "sent");
            }
            Err(why) => {
                tracing::warn!(
                    object = %format!("{}/{}", notification.object.namespace, notification.object.name),
                    service = %destination.service,
                    key = %notification.firing.key,
                    error = %why,
                    "notification given up"
                );
                workers
                    .observer
                    .count_notification(trigger, &destination.service, "failed");
            }
        }
    }
    // Recorded whatever the outcome: a destination given up after its retries is counted and logged,
    // not retried forever on every later change of the object.
    let keys = [notification.firing.key.clone()];
    let record = || workers.recorder.record(&notification.object, &keys);
    let recorded = record
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_times(4),
        )
        .await;
    match recorded {
        Ok(()) => workers.ledger.done(&notification.object.uid, &notification.firing.key),
        Err(why) => {
            // Kept as done in memory, so this process does not send again; a restart would.
            tracing::warn!(error = %why, key = %notification.firing.key, "recording a sent notification failed");
            workers.ledger.done(&notification.object.uid, &notification.firing.key);
        }
    }
}

/// Kept for the Kubernetes side: the annotations patch that records `keys` on top of `existing`.
pub fn sent_patch(existing: &BTreeMap<String, String>, keys: &[String]) -> serde_json::Value {
    let record = super::subscriptions::record_sent(super::subscriptions::sent_keys(existing), keys);
    json!({"metadata": {"annotations": {crate::api::keys::NOTIFY_SENT_ANNOTATION: record}}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{Slack, Teams, Webhook};
    use crate::notify::triggers::Trigger;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;

    /// What a local receiver got, and the statuses it answers with in turn (then 200).
    #[derive(Clone, Default)]
    struct Receiver {
        got: Arc<Mutex<Vec<(String, HeaderMap, serde_json::Value)>>>,
        script: Arc<Mutex<VecDeque<(StatusCode, String)>>>,
        delay: Duration,
    }

    impl Receiver {
        fn requests(&self) -> Vec<(String, HeaderMap, serde_json::Value)> {
            self.got.lock().unwrap().clone()
        }
    }

    async fn receive(
        State(receiver): State<Receiver>,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> impl IntoResponse {
        tokio::time::sleep(receiver.delay).await;
        let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        receiver
            .got
            .lock()
            .unwrap()
            .push((uri.path().to_string(), headers, value));
        let (status, body) = receiver
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((StatusCode::OK, "{\"ok\":true}".into()));
        let mut response = (status, body).into_response();
        if status.is_redirection() {
            response
                .headers_mut()
                .insert("location", "http://127.0.0.1:1/elsewhere".parse().unwrap());
        }
        response
    }

    /// Serves `receiver` on 127.0.0.1:0; returns the base URL.
    async fn serve(receiver: Receiver) -> String {
        let app = axum::Router::new().fallback(receive).with_state(receiver);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retries: 3,
            max_total_delay: Duration::from_secs(5),
            request_timeout: Duration::from_millis(500),
        }
    }

    fn sender() -> Sender {
        Sender::new(Allowlist::default(), fast()).unwrap()
    }

    fn notification(destinations: Vec<Destination>) -> Notification {
        Notification {
            object: ObjectId {
                kind: ObjectKind::Rollout,
                namespace: "default".into(),
                name: "web".into(),
                uid: "uid-1".into(),
            },
            firing: Firing {
                trigger: Trigger::RolloutAborted,
                key: "on-rollout-aborted:abc:1".into(),
                revision: "abc".into(),
                detail: "abort requested".into(),
            },
            message: "web aborted".into(),
            destinations,
        }
    }

    fn to(service: &str, recipient: &str) -> Destination {
        Destination {
            service: service.into(),
            recipient: recipient.into(),
        }
    }

    fn webhook(base: &str) -> Service {
        Service::Webhook(Webhook {
            url: format!("{base}/hook").parse().unwrap(),
            method: reqwest::Method::POST,
            headers: vec![(
                http::HeaderName::from_static("x-token"),
                http::HeaderValue::from_static("t0ken"),
            )],
        })
    }

    #[tokio::test]
    async fn a_webhook_gets_the_notification_as_json_with_its_headers() {
        let receiver = Receiver::default();
        let base = serve(receiver.clone()).await;
        let n = notification(vec![to("hook", "")]);
        sender().deliver(&webhook(&base), &n.destinations[0], &n).await.unwrap();
        let got = receiver.requests();
        assert_eq!(got.len(), 1);
        let (path, headers, body) = &got[0];
        assert_eq!(path, "/hook");
        assert_eq!(headers["x-token"], "t0ken");
        assert_eq!(body["trigger"], "on-rollout-aborted");
        assert_eq!(body["object"]["name"], "web");
        assert_eq!(body["object"]["uid"], "uid-1");
        assert_eq!(body["message"], "web aborted");
        assert_eq!(body["key"], "on-rollout-aborted:abc:1");
    }

    #[tokio::test]
    async fn a_receiver_that_fails_twice_then_succeeds_gets_it_on_the_third_attempt() {
        let receiver = Receiver::default();
        receiver.script.lock().unwrap().extend([
            (StatusCode::SERVICE_UNAVAILABLE, String::new()),
            (StatusCode::TOO_MANY_REQUESTS, String::new()),
        ]);
        let base = serve(receiver.clone()).await;
        let n = notification(vec![to("hook", "")]);
        sender().deliver(&webhook(&base), &n.destinations[0], &n).await.unwrap();
        assert_eq!(receiver.requests().len(), 3);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_client_errors_and_redirects_are_not_retried() {
        let failing = Receiver::default();
        failing.script.lock().unwrap().extend(std::iter::repeat_n(
            (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            10,
        ));
        let base = serve(failing.clone()).await;
        let n = notification(vec![to("hook", "")]);
        let error = sender()
            .deliver(&webhook(&base), &n.destinations[0], &n)
            .await
            .unwrap_err();
        assert_eq!(error, "127.0.0.1 answered 500 Internal Server Error");
        assert_eq!(failing.requests().len(), 4, "the first attempt and 3 retries");

        for (status, expected) in [
            (StatusCode::BAD_REQUEST, "answered 400"),
            (StatusCode::FOUND, "redirects are not followed"),
        ] {
            let receiver = Receiver::default();
            receiver.script.lock().unwrap().push_back((status, String::new()));
            let base = serve(receiver.clone()).await;
            let error = sender()
                .deliver(&webhook(&base), &n.destinations[0], &n)
                .await
                .unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert_eq!(receiver.requests().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out_and_is_given_up() {
        let receiver = Receiver {
            delay: Duration::from_secs(5),
            ..Default::default()
        };
        let base = serve(receiver.clone()).await;
        let n = notification(vec![to("hook", "")]);
        let started = std::time::Instant::now();
        let error = sender()
            .deliver(&webhook(&base), &n.destinations[0], &n)
            .await
            .unwrap_err();
        assert!(error.contains("timed out"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn the_allowlist_guards_every_address() {
        let receiver = Receiver::default();
        let base = serve(receiver.clone()).await;
        let strict = Sender::new(Allowlist::parse(&["10.0.0.0/8".to_string()]).unwrap(), fast()).unwrap();
        let n = notification(vec![to("hook", "")]);
        let error = strict
            .deliver(&webhook(&base), &n.destinations[0], &n)
            .await
            .unwrap_err();
        assert!(error.starts_with("127.0.0.1: "), "{error}");
        assert!(receiver.requests().is_empty());
        let metadata = Service::Webhook(Webhook {
            url: "http://169.254.169.254/latest".parse().unwrap(),
            method: reqwest::Method::POST,
            headers: vec![],
        });
        assert!(sender().deliver(&metadata, &n.destinations[0], &n).await.is_err());
    }

    #[tokio::test]
    async fn slack_gets_chat_post_message_with_the_token_and_its_error_is_reported() {
        let receiver = Receiver::default();
        let base = serve(receiver.clone()).await;
        let slack = Service::Slack(Slack {
            token: "xoxb-1".into(),
            api_url: format!("{base}/api/").parse().unwrap(),
        });
        let n = notification(vec![to("slack", "#deploys")]);
        sender().deliver(&slack, &n.destinations[0], &n).await.unwrap();
        let (path, headers, body) = receiver.requests().remove(0);
        assert_eq!(path, "/api/chat.postMessage");
        assert_eq!(headers["authorization"], "Bearer xoxb-1");
        assert_eq!(body["channel"], "#deploys");
        assert_eq!(body["text"], "*Rollout default/web: on-rollout-aborted*\nweb aborted");

        receiver
            .script
            .lock()
            .unwrap()
            .push_back((StatusCode::OK, r#"{"ok":false,"error":"channel_not_found"}"#.into()));
        let error = sender().deliver(&slack, &n.destinations[0], &n).await.unwrap_err();
        assert_eq!(error, "slack: channel_not_found");
        let nobody = to("slack", "");
        assert!(
            sender()
                .deliver(&slack, &nobody, &n)
                .await
                .unwrap_err()
                .contains("channel")
        );
    }

    #[tokio::test]
    async fn teams_gets_a_message_card_at_a_named_or_literal_url() {
        let receiver = Receiver::default();
        let base = serve(receiver.clone()).await;
        let teams = Service::Teams(Teams {
            recipient_urls: [("ops".to_string(), format!("{base}/teams/ops").parse().unwrap())].into(),
        });
        let n = notification(vec![]);
        sender().deliver(&teams, &to("teams", "ops"), &n).await.unwrap();
        sender()
            .deliver(&teams, &to("teams", &format!("{base}/teams/literal")), &n)
            .await
            .unwrap();
        let got = receiver.requests();
        assert_eq!(got[0].0, "/teams/ops");
        assert_eq!(got[1].0, "/teams/literal");
        assert_eq!(got[0].2["@type"], "MessageCard");
        assert_eq!(got[0].2["text"], "web aborted");
        assert_eq!(got[0].2["title"], "Rollout default/web: on-rollout-aborted");
        let error = sender().deliver(&teams, &to("teams", "unknown"), &n).await.unwrap_err();
        assert!(error.contains("neither a name in recipientUrls nor a URL"), "{error}");
        let creds = sender()
            .deliver(&teams, &to("teams", &base.replace("http://", "http://u:p@")), &n)
            .await
            .unwrap_err();
        assert!(creds.contains("user or password"), "{creds}");
    }

    #[derive(Default)]
    struct Recorded {
        keys: Mutex<Vec<(String, Vec<String>)>>,
        counts: Mutex<Vec<(String, String, String)>>,
        depth: Mutex<Vec<i64>>,
    }

    #[async_trait::async_trait]
    impl SentRecorder for Recorded {
        async fn record(&self, object: &ObjectId, keys: &[String]) -> Result<(), String> {
            self.keys.lock().unwrap().push((object.uid.clone(), keys.to_vec()));
            Ok(())
        }
    }

    impl NotifyObserver for Recorded {
        fn count_notification(&self, trigger: &str, service: &str, result: &str) {
            self.counts
                .lock()
                .unwrap()
                .push((trigger.into(), service.into(), result.into()));
        }
        fn set_notification_queue_depth(&self, depth: i64) {
            self.depth.lock().unwrap().push(depth);
        }
    }

    #[tokio::test]
    async fn workers_send_to_every_destination_then_record_the_key_once() {
        let receiver = Receiver::default();
        let base = serve(receiver.clone()).await;
        let mut config = NotifyConfig::default();
        config.services.insert("hook".into(), webhook(&base));
        let (_config_tx, config_rx) = watch::channel(Arc::new(config));
        let recorded = Arc::new(Recorded::default());
        let ledger = Ledger::default();
        let (queue, rx) = Queue::new(4, ledger.clone(), recorded.clone());
        let shutdown = CancellationToken::new();
        let workers = Workers {
            sender: sender(),
            config: config_rx,
            recorder: recorded.clone(),
            observer: recorded.clone(),
            ledger: ledger.clone(),
            concurrency: 2,
        };
        let task = tokio::spawn(run_workers(workers, rx, shutdown.clone()));
        queue
            .try_push(notification(vec![to("hook", "a"), to("hook", "b"), to("missing", "")]))
            .unwrap();
        assert!(
            ledger.knows("uid-1", "on-rollout-aborted:abc:1"),
            "queued counts as known"
        );
        for _ in 0..200 {
            if !recorded.keys.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *recorded.keys.lock().unwrap(),
            [("uid-1".to_string(), vec!["on-rollout-aborted:abc:1".to_string()])]
        );
        let recipients: Vec<_> = receiver
            .requests()
            .iter()
            .map(|(_, _, body)| body["recipient"].clone())
            .collect();
        assert_eq!(recipients, ["a", "b"]);
        let counts = recorded.counts.lock().unwrap().clone();
        assert_eq!(
            counts.iter().map(|(_, s, r)| format!("{s}:{r}")).collect::<Vec<_>>(),
            ["hook:sent", "hook:sent", "missing:unknown_service"]
        );
        assert!(ledger.knows("uid-1", "on-rollout-aborted:abc:1"), "sent stays known");
        assert_eq!(ledger.pending_count(), 0);
        assert_eq!(recorded.depth.lock().unwrap().last(), Some(&0));
        ledger.forget("uid-1");
        assert_eq!(ledger.objects(), 0);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_gives_the_notification_back() {
        let ledger = Ledger::default();
        let (queue, _rx) = Queue::new(1, ledger.clone(), Arc::new(Recorded::default()));
        queue.try_push(notification(vec![])).unwrap();
        let mut second = notification(vec![]);
        second.firing.key = "other".into();
        assert!(queue.try_push(second).is_err());
        assert!(
            !ledger.knows("uid-1", "other"),
            "a refused one is not remembered as queued"
        );
    }
}
