//! A local HTTP receiver on 127.0.0.1 for the notification tests: it records each request (path,
//! Authorization header, JSON body) and answers with scripted failures first, then 200 with Slack's
//! `{"ok": true}` (which a webhook or Teams receiver ignores).
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// One request the receiver got: path, Authorization header (empty when absent), JSON body (Null when not JSON).
pub type Received = (String, String, Value);

#[derive(Clone, Default)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<VecDeque<StatusCode>>>,
}

impl Receiver {
    /// Starts a receiver answering `failures` in order before succeeding; returns it and its base URL.
    pub async fn start(failures: &[StatusCode]) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.failures.lock().unwrap().extend(failures);
        let state = receiver.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                state
                    .got
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), authorization, body));
                match state.failures.lock().unwrap().pop_front() {
                    Some(status) => (status, String::new()),
                    None => (StatusCode::OK, r#"{"ok":true}"#.to_string()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, base)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The trigger named in each webhook body received.
    pub fn triggers(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|(_, _, body)| body["trigger"].as_str().map(str::to_string))
            .collect()
    }
}
