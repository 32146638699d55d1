//! The web provider: an HTTP request whose JSON response holds the value, picked out by `jsonPath`.
//!
//! The value becomes `result`: a number or numeric string → `Scalar`, an array of numbers (or several
//! matches of a wildcard path) → `Vector`, `null` or `[]` → `Vector([])` (no data), a boolean → `Bool`,
//! any other string → `Text`. An object, a path that matches nothing, a non-2xx status or a body that is
//! not JSON are errors.
use std::fmt;
use std::time::Duration;

use jsonpath_rust::JsonPath;
use reqwest::Method;
use serde_json::Value;

use super::{describe_http_error, display_address, http_client, read_body_limited, redact, timeout_or};
use crate::analysis::ResultValue;
use crate::api::analysis::WebMetric;

/// How long a request may take when the metric does not say (Argo Rollouts' default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A ready-to-send request. `Debug` hides header values and the body.
#[derive(Clone)]
pub struct WebRequest {
    /// The URL.
    pub url: String,
    /// GET, POST or PUT.
    pub method: Method,
    /// Headers, e.g. `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Request body, for POST and PUT.
    pub body: Option<String>,
    /// JSONPath of the value, e.g. `$.data.ok` (Argo's `{$.data.ok}` braces accepted). `None`: the
    /// whole response.
    pub json_path: Option<String>,
    /// Limit for the whole request.
    pub timeout: Duration,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// More values to mask in error messages (header values are masked anyway).
    pub sensitive: Vec<String>,
}

impl fmt::Debug for WebRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("WebRequest")
            .field("url", &display_address(&self.url))
            .field("method", &self.method)
            .field("headers", &headers)
            .field("json_path", &self.json_path)
            .field("timeout", &self.timeout)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl WebRequest {
    /// The request a metric's web provider spec describes (Secrets already substituted).
    pub fn from_spec(spec: &WebMetric) -> Result<Self, String> {
        let method = match spec.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("GET") => Method::GET,
            Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some(other) => return Err(format!("method {other:?}: use GET, POST or PUT")),
        };
        Ok(WebRequest {
            url: spec.url.clone(),
            method,
            headers: spec.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
            body: spec.body.clone(),
            json_path: spec.json_path.clone(),
            timeout: timeout_or(spec.timeout.as_deref(), DEFAULT_TIMEOUT)?,
            insecure: spec.insecure.unwrap_or(false),
            sensitive: vec![],
        })
    }

    /// Sends the request and extracts the value. Every failure is an `Err` without credentials.
    /// A text value that contains a credential the request carried (an endpoint echoing its headers)
    /// is masked the same way: status is readable by whoever can read the AnalysisRun.
    pub async fn run(&self) -> Result<ResultValue, String> {
        let mut secrets = self.sensitive.clone();
        secrets.extend(self.headers.iter().map(|(_, value)| value.clone()));
        match self.run_unredacted().await {
            Ok(ResultValue::Text(text)) => Ok(ResultValue::Text(redact(&text, &secrets))),
            Ok(value) => Ok(value),
            Err(message) => Err(redact(&message, &secrets)),
        }
    }

    async fn run_unredacted(&self) -> Result<ResultValue, String> {
        let address = display_address(&self.url);
        let client = http_client(self.timeout, self.insecure)?;
        let url = reqwest::Url::parse(&self.url).map_err(|_| format!("invalid URL {address:?}"))?;
        let mut request = client.request(self.method.clone(), url);
        let mut has_content_type = false;
        for (name, value) in &self.headers {
            let header =
                http::HeaderName::try_from(name.as_str()).map_err(|_| format!("header {name:?}: invalid name"))?;
            let mut value =
                http::HeaderValue::try_from(value.as_str()).map_err(|_| format!("header {name}: invalid value"))?;
            value.set_sensitive(true);
            has_content_type |= header == http::header::CONTENT_TYPE;
            request = request.header(header, value);
        }
        if let Some(body) = &self.body {
            if !has_content_type {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
            }
            request = request.body(body.clone());
        }
        let fail = |error: reqwest::Error| describe_http_error(&error, &self.url, self.timeout);
        let body = tokio::time::timeout(self.timeout, async {
            let mut response = request.send().await.map_err(fail)?;
            if response.status().is_redirection() {
                return Err(format!(
                    "{address}: HTTP {}: redirects are not followed (point the metric at the final address)",
                    response.status()
                ));
            }
            if !response.status().is_success() {
                return Err(format!("{address}: HTTP {}", response.status()));
            }
            read_body_limited(&mut response, &address, fail).await
        })
        .await
        .map_err(|_| format!("{address}: no answer within {:?}", self.timeout))??;
        let json: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{address}: the response is not JSON: {e}"))?;
        extract(&json, self.json_path.as_deref()).map_err(|e| format!("{address}: {e}"))
    }
}

/// Picks the value at `json_path` (`$.data.ok` or Argo's `{$.data.ok}`; `None` = the whole document)
/// out of `json` — pure, so every shape is unit-tested.
pub fn extract(json: &Value, json_path: Option<&str>) -> Result<ResultValue, String> {
    let Some(path) = json_path.map(str::trim).filter(|p| !p.is_empty()) else {
        return to_result(json);
    };
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path)
        .trim();
    let matches = json.query(path).map_err(|e| format!("jsonPath {path:?}: {e}"))?;
    match matches.as_slice() {
        [] => Err(format!("jsonPath {path:?} matched nothing in the response")),
        [single] => to_result(single),
        several => {
            let numbers = several
                .iter()
                .map(|value| number(value).ok_or_else(|| format!("jsonPath {path:?}: {value} is not a number")))
                .collect::<Result<_, _>>()?;
            Ok(ResultValue::Vector(numbers))
        }
    }
}

fn to_result(value: &Value) -> Result<ResultValue, String> {
    match value {
        Value::Null => Ok(ResultValue::Vector(vec![])),
        Value::Bool(flag) => Ok(ResultValue::Bool(*flag)),
        Value::Number(_) => Ok(ResultValue::Scalar(number(value).expect("a JSON number"))),
        Value::String(text) => Ok(number(value).map_or_else(|| ResultValue::Text(text.clone()), ResultValue::Scalar)),
        Value::Array(items) => items
            .iter()
            .map(|item| number(item).ok_or_else(|| format!("the array holds {item}, not a number")))
            .collect::<Result<_, _>>()
            .map(ResultValue::Vector),
        Value::Object(_) => Err("the value is an object; point jsonPath at a number".to_string()),
    }
}

/// A JSON number, or a string holding one (`"0.5"`, `"NaN"`, `"+Inf"` — Prometheus-style text).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extract_shapes() {
        let body = json!({"data": {"ok": true, "rate": 0.97, "text": "0.5", "status": "healthy",
            "values": [0.1, "0.2", 3], "empty": [], "none": null, "nan": "NaN", "object": {"a": 1},
            "mixed": [1, "x"], "items": [{"v": 1}, {"v": 2}]}});
        let cases: Vec<(Option<&str>, Result<ResultValue, &str>)> = vec![
            (Some("{$.data.rate}"), Ok(ResultValue::Scalar(0.97))),
            (Some("$.data.rate"), Ok(ResultValue::Scalar(0.97))),
            (Some("{ $.data.text }"), Ok(ResultValue::Scalar(0.5))),
            (Some("$.data.ok"), Ok(ResultValue::Bool(true))),
            (Some("$.data.status"), Ok(ResultValue::Text("healthy".into()))),
            (Some("$.data.values"), Ok(ResultValue::Vector(vec![0.1, 0.2, 3.0]))),
            (Some("$.data.items[*].v"), Ok(ResultValue::Vector(vec![1.0, 2.0]))),
            (Some("$.data.empty"), Ok(ResultValue::Vector(vec![]))),
            (Some("$.data.none"), Ok(ResultValue::Vector(vec![]))),
            (Some("$.data.missing"), Err("matched nothing")),
            (Some("$.data.object"), Err("is an object")),
            (Some("$.data.mixed"), Err("\"x\", not a number")),
            (Some("$$$"), Err("jsonPath")),
        ];
        for (path, expected) in cases {
            match (extract(&body, path), expected) {
                (Ok(value), Ok(expected)) => assert_eq!(value, expected, "{path:?}"),
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{path:?}: {error}"),
                (got, expected) => panic!("{path:?}: got {got:?}, expected {expected:?}"),
            }
        }
        assert!(matches!(extract(&body, Some("$.data.nan")), Ok(ResultValue::Scalar(n)) if n.is_nan()));
        assert_eq!(extract(&json!(0.5), None), Ok(ResultValue::Scalar(0.5)));
        assert_eq!(
            extract(&json!([1, 2]), Some("")),
            Ok(ResultValue::Vector(vec![1.0, 2.0]))
        );
    }

    #[test]
    fn from_spec_checks_the_method_and_timeout() {
        let spec = |method: Option<&str>| WebMetric {
            url: "http://x".into(),
            method: method.map(String::from),
            ..WebMetric::default()
        };
        assert_eq!(WebRequest::from_spec(&spec(None)).unwrap().method, Method::GET);
        assert_eq!(WebRequest::from_spec(&spec(Some("post"))).unwrap().method, Method::POST);
        assert!(
            WebRequest::from_spec(&spec(Some("DELETE")))
                .unwrap_err()
                .contains("GET, POST or PUT")
        );
        assert_eq!(WebRequest::from_spec(&spec(None)).unwrap().timeout, DEFAULT_TIMEOUT);
    }

    /// A local server answering each path with a fixed status and body.
    async fn serve() -> String {
        use axum::{Router, http::StatusCode, routing::get, routing::post};
        let app = Router::new()
            .route("/ok", get(|| async { axum::Json(json!({"data": {"rate": 0.99}})) }))
            .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
            .route("/html", get(|| async { "<html>login</html>" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "{}"
                }),
            )
            .route(
                "/echo",
                post(|headers: axum::http::HeaderMap, body: String| async move {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    axum::Json(json!({"body": body, "authorized": token == "Bearer s3cret-token"}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn request(url: String, json_path: Option<&str>) -> WebRequest {
        WebRequest {
            json_path: json_path.map(String::from),
            timeout: Duration::from_millis(500),
            ..WebRequest::from_spec(&WebMetric {
                url,
                ..WebMetric::default()
            })
            .unwrap()
        }
    }

    #[tokio::test]
    async fn requests_against_a_real_server() {
        let base = serve().await;
        assert_eq!(
            request(format!("{base}/ok"), Some("{$.data.rate}")).run().await,
            Ok(ResultValue::Scalar(0.99))
        );

        let error = request(format!("{base}/down"), None).run().await.unwrap_err();
        assert!(error.contains("HTTP 503"), "{error}");
        let error = request(format!("{base}/html"), None).run().await.unwrap_err();
        assert!(error.contains("not JSON"), "{error}");
        let started = std::time::Instant::now();
        let error = request(format!("{base}/slow"), None).run().await.unwrap_err();
        assert!(error.contains("no answer within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let mut echo = request(format!("{base}/echo?token=s3cret-token"), Some("$.authorized"));
        echo.method = Method::POST;
        echo.body = Some("{\"q\": 1}".into());
        echo.headers = vec![("Authorization".into(), "Bearer s3cret-token".into())];
        assert_eq!(echo.run().await, Ok(ResultValue::Bool(true)));
        echo.json_path = Some("$.missing".into());
        let error = echo.run().await.unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");

        // A port nobody listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = request(format!("http://user:s3cret-pw@127.0.0.1:{port}/x?token=abcd1234"), None)
            .run()
            .await
            .unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
        assert!(!error.contains("s3cret-pw") && !error.contains("abcd1234"), "{error}");
    }

    /// A server on 127.0.0.2 ("outside": loopback, but not the address the metric names) counting its hits.
    async fn outside() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(json!({"data": {"rate": 1.0}})) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (address, hits)
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (outside, hits) = outside().await;
        let location = format!("{outside}/ok");
        let app = axum::Router::new().route(
            "/moved",
            axum::routing::get(move || {
                let location = location.clone();
                async move {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, location)],
                        "",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let error = request(format!("{base}/moved"), Some("$.data.rate"))
            .run()
            .await
            .unwrap_err();
        assert!(
            error.contains("HTTP 302") && error.contains("redirects are not followed"),
            "{error}"
        );
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the redirect target was called"
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_without_being_read_whole() {
        use crate::analysis::providers::MAX_RESPONSE_BYTES;
        let sized = format!("{{\"v\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
        let app = axum::Router::new()
            .route("/sized", axum::routing::get(move || async move { sized }))
            // No Content-Length, and no end: only reading with a limit stops this one.
            .route(
                "/endless",
                axum::routing::get(|| async {
                    let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
                    let chunks = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                    axum::body::Body::from_stream(chunks)
                }),
            )
            .route(
                "/just-fits",
                axum::routing::get(|| async {
                    let padding = " ".repeat(MAX_RESPONSE_BYTES - 2);
                    format!("{padding}42")
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let error = request(format!("{base}/sized"), Some("$.v")).run().await.unwrap_err();
        assert!(error.ends_with("response body exceeds 1 MiB"), "{error}");
        let mut endless = request(format!("{base}/endless"), None);
        endless.timeout = Duration::from_secs(5);
        let started = std::time::Instant::now();
        let error = endless.run().await.unwrap_err();
        assert!(error.ends_with("response body exceeds 1 MiB"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        assert_eq!(
            request(format!("{base}/just-fits"), None).run().await,
            Ok(ResultValue::Scalar(42.0))
        );
    }

    #[tokio::test]
    async fn a_text_value_never_carries_the_credentials_of_the_request() {
        let app = axum::Router::new().route(
            "/whoami",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let seen = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                axum::Json(json!({"seen": seen}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut whoami = request(format!("{base}/whoami"), Some("$.seen"));
        whoami.headers = vec![("Authorization".into(), "Bearer s3cret-token".into())];
        assert_eq!(whoami.run().await, Ok(ResultValue::Text("***".into())));
    }
}
