//! Sync-now on a push notification: `POST /hooks/gitsync/{namespace}/{name}` signed the way GitHub
//! signs webhooks (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`), keyed by the
//! `webhookSecret` of the GitSync's own Secret. A valid call only queues a reconcile; it carries no
//! data the controller trusts, so the worst a replayed request can do is cause one extra fetch.
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc::error::TrySendError;

use crate::api::GitSync;

/// Key of the HMAC secret in the Secret that the GitSync's spec.secretRef names.
pub const WEBHOOK_SECRET_KEY: &str = "webhookSecret";
/// GitHub's signature header (Gitea, Forgejo and Gogs send the same one).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// GitHub's event header; `ping` (sent when a webhook is created) is answered without a sync.
pub const EVENT_HEADER: &str = "x-github-event";
/// Largest body accepted; GitHub caps push payloads at 25 MB but a sync never needs the body, and
/// HMAC-ing megabytes on behalf of anonymous callers is a cheap way to burn CPU.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// How long reading the GitSync and its Secret may take before the call fails with 503.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the webhook needs: a client to read GitSyncs and Secrets, and the GitSync controller's
/// trigger queue (an `ObjectRef` sent there is reconciled as soon as a worker is free).
#[derive(Clone)]
pub struct WebhookState {
    pub client: kube::Client,
    pub trigger: tokio::sync::mpsc::Sender<ObjectRef<GitSync>>,
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

/// Why no secret could be had for a GitSync: either the caller cannot be trusted (401) or the API
/// server did not answer (503, so the sender retries).
enum Lookup {
    Untrusted(&'static str),
    Unavailable(String),
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
    if !is_object_name(&namespace) || !is_object_name(&name) {
        tracing::info!(%gitsync, "webhook rejected: not a valid GitSync name");
        return unauthorized();
    }
    let secret = match tokio::time::timeout(LOOKUP_TIMEOUT, webhook_secret(&state.client, &namespace, &name)).await {
        Ok(Ok(secret)) => secret,
        Ok(Err(Lookup::Untrusted(why))) => {
            tracing::info!(%gitsync, "webhook rejected: {why}");
            return unauthorized();
        }
        Ok(Err(Lookup::Unavailable(error))) => {
            tracing::warn!(%gitsync, %error, "webhook: could not read the GitSync or its Secret");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not check the signature; try again\n",
            )
                .into_response();
        }
        Err(_) => {
            tracing::warn!(%gitsync, "webhook: reading the GitSync and its Secret timed out");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not check the signature; try again\n",
            )
                .into_response();
        }
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

/// The webhook secret of GitSync `namespace/name`, from its spec.secretRef Secret.
async fn webhook_secret(client: &kube::Client, namespace: &str, name: &str) -> Result<Vec<u8>, Lookup> {
    let unavailable = |e: kube::Error| Lookup::Unavailable(e.to_string());
    let gitsync = Api::<GitSync>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(unavailable)?
        .ok_or(Lookup::Untrusted("no such GitSync"))?;
    let secret_name = gitsync
        .spec
        .secret_ref
        .map(|r| r.name)
        .ok_or(Lookup::Untrusted("the GitSync has no spec.secretRef"))?;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret_name)
        .await
        .map_err(unavailable)?
        .ok_or(Lookup::Untrusted("the Secret named by spec.secretRef does not exist"))?;
    secret
        .data
        .and_then(|mut data| data.remove(WEBHOOK_SECRET_KEY))
        .map(|value| value.0)
        .filter(|value| !value.is_empty())
        .ok_or(Lookup::Untrusted("the Secret has no webhookSecret key"))
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
    fn object_names_are_dns_subdomains() {
        assert!(is_object_name("web"));
        assert!(is_object_name("team-a.web-1"));
        for bad in ["", "Web", "-web", "web-", "a/b", "..", "a%2Fb", &"a".repeat(254)] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }
}
