//! The GitSync webhook over HTTP: only a correctly signed call for a GitSync whose sync recorded a
//! webhookSecret queues a sync, every other call gets the same 401, and a flood gets 429.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hmac::{Hmac, Mac};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;
use sha2::Sha256;
use sluice::api::GitSync;
use sluice::gitsync::webhook::{BURST, WebhookSecrets, WebhookState, router};
use tokio::sync::mpsc;
use tower::ServiceExt;

const SECRET: &[u8] = b"hook-s3cret";
const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Hook {
    secrets: WebhookSecrets,
    app: axum::Router,
    queue: mpsc::Receiver<ObjectRef<GitSync>>,
}

/// Secrets as the syncs of three GitSyncs in `default` record them: "web" (its Secret has a
/// webhookSecret), "no-ref" (no secretRef) and "no-key" (a Secret without webhookSecret) — only "web"
/// has one. The webhook has no API client: it cannot read anything.
async fn hook() -> Hook {
    let secrets = WebhookSecrets::default();
    secrets.record("default", "web", Some(SECRET));
    secrets.record("default", "no-ref", None);
    secrets.record("default", "no-key", None);
    let (trigger, queue) = mpsc::channel(8);
    Hook {
        secrets: secrets.clone(),
        app: router(WebhookState::new(secrets, trigger)),
        queue,
    }
}

fn request(path: &str, body: &str, signature: Option<&str>, event: &str) -> Request<Body> {
    let mut builder = Request::post(path)
        .header("content-type", "application/json")
        .header("x-github-event", event);
    if let Some(signature) = signature {
        builder = builder.header("x-hub-signature-256", signature);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_signed_push_queues_exactly_one_sync() {
    let mut hook = hook().await;
    let signature = sign(SECRET, PUSH.as_bytes());
    let (status, body) = call(
        &hook.app,
        request("/hooks/gitsync/default/web", PUSH, Some(&signature), "push"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({"gitsync": "default/web", "queued": true}));
    let queued = hook.queue.try_recv().expect("one sync queued");
    assert_eq!(queued, ObjectRef::new("web").within("default"));
    assert!(hook.queue.try_recv().is_err(), "exactly one sync queued");
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_unknown_calls_get_the_same_401() {
    let mut hook = hook().await;
    let good = sign(SECRET, PUSH.as_bytes());
    let wrong = sign(b"guess", PUSH.as_bytes());
    let cases = [
        ("unsigned", "/hooks/gitsync/default/web", None),
        ("wrong secret", "/hooks/gitsync/default/web", Some(wrong.as_str())),
        ("malformed", "/hooks/gitsync/default/web", Some("sha256=zz")),
        ("sha1 only", "/hooks/gitsync/default/web", Some("sha1=0123")),
        ("unknown GitSync", "/hooks/gitsync/default/nope", Some(good.as_str())),
        ("unknown namespace", "/hooks/gitsync/elsewhere/web", Some(good.as_str())),
        ("no secretRef", "/hooks/gitsync/default/no-ref", Some(good.as_str())),
        (
            "no webhookSecret key",
            "/hooks/gitsync/default/no-key",
            Some(good.as_str()),
        ),
        ("not a name", "/hooks/gitsync/default/Web", Some(good.as_str())),
    ];
    for (what, path, signature) in cases {
        let (status, body) = call(&hook.app, request(path, PUSH, signature, "push")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body, "invalid signature\n", "{what}");
    }
    // A signature over another body does not carry over.
    let (status, _) = call(
        &hook.app,
        request("/hooks/gitsync/default/web", "{}", Some(&good), "push"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(hook.queue.try_recv().is_err(), "nothing queued");
}

#[tokio::test]
async fn ping_needs_a_signature_and_queues_nothing() {
    let mut hook = hook().await;
    let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let (status, _) = call(&hook.app, request("/hooks/gitsync/default/web", ping, None, "ping")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let signature = sign(SECRET, ping.as_bytes());
    let (status, body) = call(
        &hook.app,
        request("/hooks/gitsync/default/web", ping, Some(&signature), "ping"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(hook.queue.try_recv().is_err(), "a ping queues no sync");
}

#[tokio::test]
async fn a_full_queue_still_accepts_and_oversized_bodies_get_413() {
    let hook = hook().await;
    // A queue of one, already holding a sync: the call is still accepted (a sync is pending).
    let (trigger, mut queue) = mpsc::channel(1);
    trigger.try_send(ObjectRef::new("web").within("default")).unwrap();
    let app = router(WebhookState::new(hook.secrets.clone(), trigger));
    let signature = sign(SECRET, PUSH.as_bytes());
    let (status, body) = call(
        &app,
        request("/hooks/gitsync/default/web", PUSH, Some(&signature), "push"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(queue.try_recv().is_ok());
    assert!(queue.try_recv().is_err(), "still one pending sync");

    let big = "x".repeat(1024 * 1024 + 1);
    let signature = sign(SECRET, big.as_bytes());
    let (status, _) = call(
        &app,
        request("/hooks/gitsync/default/web", &big, Some(&signature), "push"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(queue.try_recv().is_err(), "nothing queued for an oversized body");
}

#[tokio::test]
async fn a_flood_is_cut_off_before_any_signature_is_checked() {
    let mut hook = hook().await;
    let wrong = sign(b"guess", PUSH.as_bytes());
    let mut codes = Vec::new();
    for _ in 0..(BURST as usize + 5) {
        let (status, _) = call(
            &hook.app,
            request("/hooks/gitsync/default/web", PUSH, Some(&wrong), "push"),
        )
        .await;
        codes.push(status);
    }
    assert!(
        codes[..BURST as usize].iter().all(|c| *c == StatusCode::UNAUTHORIZED),
        "{codes:?}"
    );
    assert!(
        codes[BURST as usize..]
            .iter()
            .all(|c| *c == StatusCode::TOO_MANY_REQUESTS),
        "{codes:?}"
    );
    // A good call in the flood waits its turn too.
    let good = sign(SECRET, PUSH.as_bytes());
    let (status, _) = call(
        &hook.app,
        request("/hooks/gitsync/default/web", PUSH, Some(&good), "push"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(hook.queue.try_recv().is_err());
}
