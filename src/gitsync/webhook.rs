//! Sync-now on a push notification: `POST /hooks/gitsync/{namespace}/{name}` signed the way GitHub
//! signs webhooks (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`), keyed by the
//! `webhookSecret` of the GitSync's own Secret. A valid call only queues a reconcile; it carries no
//! data the controller trusts, so the worst a replayed request can do is cause one extra fetch.
//!
//! A call costs no API request, signed or not: the secrets are the ones the GitSync's last sync read
//! from its `spec.secretRef` ([`WebhookSecrets`]), so a GitSync takes webhook calls once it has synced
//! once, and a rotated `webhookSecret` counts from its next sync. The endpoint has its own rate limit
//! ([`RATE_PER_SECOND`], [`BURST`]; beyond it 429), checked before any HMAC is computed.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc::error::TrySendError;

use crate::api::GitSync;
use crate::client::Bucket;

/// Key of the HMAC secret in the Secret that the GitSync's spec.secretRef names.
pub const WEBHOOK_SECRET_KEY: &str = "webhookSecret";
/// GitHub's signature header (Gitea, Forgejo and Gogs send the same one).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// GitHub's event header; `ping` (sent when a webhook is created) is answered without a sync.
pub const EVENT_HEADER: &str = "x-github-event";
/// Largest body accepted; GitHub caps push payloads at 25 MB but a sync never needs the body, and
/// HMAC-ing megabytes on behalf of anonymous callers is a cheap way to burn CPU.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// Calls per second the endpoint takes, sustained, and in a burst above that (all callers together).
pub const RATE_PER_SECOND: f64 = 10.0;
pub const BURST: f64 = 20.0;

/// (namespace, name) of a GitSync → its `webhookSecret`.
type SecretsByGitSync = HashMap<(String, String), Vec<u8>>;

/// The `webhookSecret` of every GitSync, as its last sync read it (`namespace/name` → secret).
#[derive(Clone, Default)]
pub struct WebhookSecrets(Arc<RwLock<SecretsByGitSync>>);

impl WebhookSecrets {
    /// Records what a sync read from the GitSync's Secret; no (or an empty) `webhookSecret` forgets it.
    pub fn record(&self, namespace: &str, name: &str, secret: Option<&[u8]>) {
        let mut secrets = self.0.write().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        match secret.filter(|s| !s.is_empty()) {
            Some(secret) => {
                secrets.insert(key, secret.to_vec());
            }
            None => {
                secrets.remove(&key);
            }
        }
    }

    /// The GitSync is gone or names no Secret any more.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.record(namespace, name, None);
    }

    /// How many GitSyncs have a secret recorded.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Vec<u8>> {
        let secrets = self.0.read().unwrap_or_else(|e| e.into_inner());
        secrets.get(&(namespace.to_string(), name.to_string())).cloned()
    }
}

/// What the webhook needs: the secrets the syncs recorded and the GitSync controller's trigger queue
/// (an `ObjectRef` sent there is reconciled as soon as a worker is free). No API client.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: WebhookSecrets,
    pub trigger: tokio::sync::mpsc::Sender<ObjectRef<GitSync>>,
    limit: Arc<Mutex<Bucket>>,
}

impl WebhookState {
    pub fn new(secrets: WebhookSecrets, trigger: tokio::sync::mpsc::Sender<ObjectRef<GitSync>>) -> Self {
        WebhookState {
            secrets,
            trigger,
            limit: Arc::new(Mutex::new(Bucket::new(RATE_PER_SECOND, BURST))),
        }
    }
}

/// `POST /hooks/gitsync/{namespace}/{name}`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/hooks/gitsync/{namespace}/{name}", post(receive))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

/// Whether `header` is `sha256=<hex>` with the HMAC-SHA256 of `body` under `secret`, compared in
/// constant time. An empty secret never verifies: anyone could compute that MAC.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Some(signature) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice rejects a tag of the wrong length and compares the rest in constant time.
    mac.verify_slice(&signature).is_ok()
}

/// The same 401 for every reason a call is not trusted, so callers cannot tell an unknown GitSync
/// from a wrong signature (the log says which).
fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid signature\n").into_response()
}

async fn receive(
    State(state): State<WebhookState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gitsync = format!("{namespace}/{name}");
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    // Cheap checks first: a call that cannot possibly verify costs no API request.
    if !signature.is_some_and(|s| s.trim().starts_with("sha256=")) {
        tracing::info!(%gitsync, "webhook rejected: no sha256 signature header");
        return unauthorized();
    }
    let allowed = state
        .limit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(Instant::now());
    if allowed.is_err() {
        tracing::info!(%gitsync, "webhook rejected: rate limit");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "1")],
            "too many webhook calls; retry later\n",
        )
            .into_response();
    }
    if !is_object_name(&namespace) || !is_object_name(&name) {
        tracing::info!(%gitsync, "webhook rejected: not a valid GitSync name");
        return unauthorized();
    }
    let Some(secret) = state.secrets.get(&namespace, &name) else {
        tracing::info!(%gitsync, "webhook rejected: no webhookSecret recorded for this GitSync (unknown, no spec.secretRef, or not synced yet)");
        return unauthorized();
    };
    if !verify_signature(&secret, &body, signature) {
        tracing::info!(%gitsync, "webhook rejected: signature does not match");
        return unauthorized();
    }
    let event = headers
        .get(EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if event == "ping" {
        tracing::info!(%gitsync, "webhook ping");
        return (StatusCode::OK, axum::Json(json!({"gitsync": gitsync, "queued": false}))).into_response();
    }
    match state.trigger.try_send(ObjectRef::new(&name).within(&namespace)) {
        // Full: syncs are already queued, and a queued sync fetches the newest commit anyway.
        Ok(()) | Err(TrySendError::Full(_)) => {}
        Err(TrySendError::Closed(_)) => {
            tracing::warn!(%gitsync, "webhook: the GitSync controller is not running");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the GitSync controller is not running\n",
            )
                .into_response();
        }
    }
    tracing::info!(%gitsync, event, "webhook: sync queued");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"gitsync": gitsync, "queued": true})),
    )
        .into_response()
}

/// A Kubernetes object name (DNS-1123 subdomain), so a path segment never becomes an odd API URL.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_documented_example_verifies() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_signature(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(header)
        ));
        assert_eq!(sign(b"It's a Secret to Everybody", b"Hello, World!"), header);
        // Upper-case hex and surrounding whitespace are the same signature.
        assert!(verify_signature(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(&format!(" {} ", header.to_uppercase().replace("SHA256=", "sha256=")))
        ));
    }

    #[test]
    fn wrong_secret_body_or_signature_does_not_verify() {
        let secret = b"It's a Secret to Everybody";
        let good = sign(secret, b"Hello, World!");
        assert!(!verify_signature(b"another secret", b"Hello, World!", Some(&good)));
        assert!(!verify_signature(secret, b"Hello, World?", Some(&good)));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.last_mut().unwrap();
        *last = if *last == b'0' { b'1' } else { b'0' };
        assert!(!verify_signature(
            secret,
            b"Hello, World!",
            Some(std::str::from_utf8(&flipped).unwrap())
        ));
    }

    #[test]
    fn missing_or_malformed_headers_do_not_verify() {
        let secret = b"s3cret";
        let body = b"{}";
        let good = sign(secret, body);
        assert!(verify_signature(secret, body, Some(&good)));
        assert!(!verify_signature(secret, body, None));
        assert!(!verify_signature(secret, body, Some("")));
        // The SHA-1 header GitHub also sends is not accepted in place of SHA-256.
        assert!(!verify_signature(secret, body, Some(&good.replace("sha256=", "sha1="))));
        assert!(!verify_signature(
            secret,
            body,
            Some(good.trim_start_matches("sha256="))
        ));
        assert!(!verify_signature(secret, body, Some("sha256=not-hex")));
        // A prefix of the right MAC is not the MAC.
        assert!(!verify_signature(secret, body, Some(&good[..good.len() - 2])));
        assert!(!verify_signature(secret, body, Some("sha256=")));
    }

    #[test]
    fn an_empty_secret_never_verifies() {
        let body = b"{}";
        assert!(!verify_signature(b"", body, Some(&sign(b"", body))));
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut limit = Bucket::new(RATE_PER_SECOND, BURST);
        let burst = (0..100).take_while(|_| limit.take(start).is_ok()).count();
        assert_eq!(burst, BURST as usize);
        assert!(
            limit.take(start + Duration::from_millis(50)).is_err(),
            "half a token is not a call"
        );
        assert!(limit.take(start + Duration::from_millis(100)).is_ok());
        assert!(limit.take(start + Duration::from_millis(100)).is_err());
        // An idle minute refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert_eq!(
            (0..100).take_while(|_| limit.take(later).is_ok()).count(),
            BURST as usize
        );
    }

    #[test]
    fn secrets_are_recorded_replaced_and_forgotten() {
        let secrets = WebhookSecrets::default();
        assert_eq!(secrets.get("shop", "web"), None);
        secrets.record("shop", "web", Some(b"one"));
        secrets.record("shop", "web", Some(b"two"));
        assert_eq!(secrets.get("shop", "web").as_deref(), Some(&b"two"[..]));
        assert_eq!(secrets.get("other", "web"), None);
        secrets.record("shop", "web", Some(b""));
        assert_eq!(secrets.get("shop", "web"), None, "an empty secret is no secret");
        secrets.record("shop", "web", Some(b"three"));
        secrets.forget("shop", "web");
        assert_eq!(secrets.get("shop", "web"), None);
    }

    #[test]
    fn object_names_are_dns_subdomains() {
        assert!(is_object_name("web"));
        assert!(is_object_name("team-a.web-1"));
        for bad in ["", "Web", "-web", "web-", "a/b", "..", "a%2Fb", &"a".repeat(254)] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }
}
