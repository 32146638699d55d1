//! The Prometheus provider: one instant query, evaluated at a given time, as a [`ResultValue`].
//!
//! A scalar result is `Scalar`, an instant vector `Vector` in the order Prometheus returned the series
//! (`sort()`/`sort_desc()` in the query decide it), an empty vector `Vector([])`. NaN and ±Inf are kept
//! as they are: the rules decide what they mean (NaN is "no data"). A range vector is an error — a
//! condition cannot judge a matrix.
//!
//! The query is sent with reqwest rather than the prometheus-http-query client: that client buffers the
//! whole answer (`Response::json`), and an answer must be refused once it passes
//! [`MAX_RESPONSE_BYTES`](super::MAX_RESPONSE_BYTES) — a query matching millions of series would
//! otherwise be read into memory whole.
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{Authentication, describe_http_error, display_address, http_client, read_body_limited, redact, timeout_or};
use crate::analysis::ResultValue;
use crate::api::analysis::PrometheusMetric;

/// How long a query may take when the metric does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A ready-to-send query: placeholders substituted, credentials resolved. `Debug` hides header values
/// and credentials.
#[derive(Clone)]
pub struct PrometheusQuery {
    /// Base URL of the Prometheus server.
    pub address: String,
    /// The PromQL query.
    pub query: String,
    /// Limit for the whole request; also sent to Prometheus as the evaluation timeout.
    pub timeout: Duration,
    /// Extra headers, e.g. `X-Scope-OrgID`.
    pub headers: Vec<(String, String)>,
    /// Credentials.
    pub authentication: Authentication,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// More values to mask in error messages, e.g. Secret arguments substituted into the query. Header
    /// values and credentials are masked anyway.
    pub sensitive: Vec<String>,
}

impl fmt::Debug for PrometheusQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("PrometheusQuery")
            .field("address", &display_address(&self.address))
            .field("timeout", &self.timeout)
            .field("headers", &headers)
            .field("authentication", &self.authentication)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl PrometheusQuery {
    /// The query a metric's provider spec describes (Secrets already substituted, see
    /// [`template::substitute_secrets`](crate::analysis::template::substitute_secrets)), with the
    /// credentials the controller read from `spec.authentication`'s Secrets.
    pub fn from_spec(spec: &PrometheusMetric, authentication: Authentication) -> Result<Self, String> {
        Ok(PrometheusQuery {
            address: spec.address.clone(),
            query: spec.query.clone(),
            timeout: timeout_or(spec.timeout.as_deref(), DEFAULT_TIMEOUT)?,
            headers: spec.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
            authentication,
            insecure: spec.insecure.unwrap_or(false),
            sensitive: vec![],
        })
    }

    /// Runs the query evaluated at `at` (normally now; a past time replays history). Every failure is
    /// an `Err` whose message names the server (without credentials) and what went wrong.
    pub async fn run(&self, at: DateTime<Utc>) -> Result<ResultValue, String> {
        self.run_unredacted(at).await.map_err(|message| {
            let mut secrets = self.sensitive.clone();
            secrets.extend(self.authentication.secrets());
            secrets.extend(self.headers.iter().map(|(_, value)| value.clone()));
            redact(&message, &secrets)
        })
    }

    async fn run_unredacted(&self, at: DateTime<Utc>) -> Result<ResultValue, String> {
        let address = display_address(&self.address);
        let client = http_client(self.timeout, self.insecure)?;
        let mut url = query_url(&self.address).ok_or_else(|| format!("invalid Prometheus address {address:?}"))?;
        // Up to a second in the past could miss the newest sample: send the time with milliseconds (the
        // API takes fractional Unix time).
        let time = format!("{}.{:03}", at.timestamp(), at.timestamp_subsec_millis());
        url.query_pairs_mut()
            .append_pair("query", &self.query)
            .append_pair("time", &time)
            .append_pair("timeout", &format!("{}ms", self.timeout.as_millis()));
        let mut request = client.get(url);
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| format!("header {name:?}: invalid name"))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| format!("header {name}: invalid value"))?;
            request = request.header(name, value);
        }
        if let Some(credentials) = self.authentication.header_value() {
            let mut value =
                HeaderValue::try_from(credentials).map_err(|_| "credentials: invalid characters".to_string())?;
            value.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let fail = |error: reqwest::Error| describe_http_error(&error, &self.address, self.timeout);
        // reqwest's timeout covers the request; this guard also covers reading the body.
        let (status, body) = tokio::time::timeout(self.timeout, async {
            let mut response = request.send().await.map_err(fail)?;
            let status = response.status();
            if status.is_redirection() {
                return Err(format!(
                    "{address}: HTTP {status}: redirects are not followed (point the metric at the final address)"
                ));
            }
            // Prometheus explains a rejected query in a JSON body beside a 4xx/5xx status: read it too.
            let body = read_body_limited(&mut response, &address, fail).await?;
            Ok((status, body))
        })
        .await
        .map_err(|_| format!("{address}: no answer within {:?}", self.timeout))??;
        let answer: ApiAnswer = match serde_json::from_slice(&body) {
            Ok(answer) => answer,
            Err(_) if !status.is_success() => return Err(format!("{address}: HTTP {status}")),
            Err(error) => return Err(format!("{address}: the response is not Prometheus JSON: {error}")),
        };
        if answer.status != "success" {
            return Err(format!(
                "{address}: Prometheus rejected the query: {}: {}",
                answer.error_type.as_deref().unwrap_or("error"),
                answer.error.as_deref().unwrap_or("(no message)")
            ));
        }
        let data = answer
            .data
            .ok_or_else(|| format!("{address}: the answer has no data"))?;
        to_result(data).map_err(|why| format!("{address}: {why}"))
    }
}

/// `<address>/api/v1/query`, keeping a path prefix the address has (a Prometheus behind a proxy).
fn query_url(address: &str) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(address).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["api", "v1", "query"]);
    Some(url)
}

/// The envelope of every Prometheus API answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// An instant query's `data`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: serde_json::Value,
}

/// One series of an instant vector; only its sample matters to a condition.
#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    value: Option<(serde_json::Value, String)>,
}

/// A sample's value: Prometheus writes numbers as strings (`"0.97"`, `"NaN"`, `"+Inf"`).
fn sample_value(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("the sample value {text:?} is not a number"))
}

fn to_result(data: QueryData) -> Result<ResultValue, String> {
    match data.result_type.as_str() {
        "scalar" => {
            let (_, value): (serde_json::Value, String) =
                serde_json::from_value(data.result).map_err(|e| format!("malformed scalar: {e}"))?;
            Ok(ResultValue::Scalar(sample_value(&value)?))
        }
        "vector" => {
            let series: Vec<Series> =
                serde_json::from_value(data.result).map_err(|e| format!("malformed vector: {e}"))?;
            series
                .iter()
                .map(|s| match &s.value {
                    Some((_, value)) => sample_value(value),
                    None => {
                        Err("a series holds a native histogram, not a number; query a quantile or a count".to_string())
                    }
                })
                .collect::<Result<_, _>>()
                .map(ResultValue::Vector)
        }
        "matrix" => {
            Err("the query returned a range vector; use an instant vector (e.g. rate(x[5m]), not x[5m])".to_string())
        }
        other => Err(format!(
            "the query returned a {other}; use a number or an instant vector"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: serde_json::Value) -> QueryData {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn results_of_every_type() {
        let scalar = data(serde_json::json!({"resultType": "scalar", "result": [1.7e9, "0.25"]}));
        assert_eq!(to_result(scalar), Ok(ResultValue::Scalar(0.25)));
        let vector = data(serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1.7e9, "0.97"]},
            {"metric": {}, "value": [1.7e9, "+Inf"]}]}));
        assert_eq!(to_result(vector), Ok(ResultValue::Vector(vec![0.97, f64::INFINITY])));
        let nan = data(serde_json::json!({"resultType": "vector", "result": [{"value": [1, "NaN"]}]}));
        assert!(matches!(to_result(nan), Ok(ResultValue::Vector(v)) if v[0].is_nan()));
        let matrix = data(serde_json::json!({"resultType": "matrix", "result": []}));
        assert!(to_result(matrix).unwrap_err().contains("range vector"));
        let text = data(serde_json::json!({"resultType": "string", "result": [1, "x"]}));
        assert!(to_result(text).unwrap_err().contains("returned a string"));
        let histogram = data(serde_json::json!({"resultType": "vector", "result": [{"histogram": [1, {}]}]}));
        assert!(to_result(histogram).unwrap_err().contains("native histogram"));
    }

    /// A fake Prometheus under `/prom`: the query `huge` matches 50,000 series (about 2 MiB of JSON),
    /// `bad` is rejected as Prometheus does (400 + JSON), `down` is a proxy's 503 page; any other query
    /// answers 0.5. Returns the address.
    async fn fake_prometheus() -> String {
        use axum::extract::Query;
        use axum::response::IntoResponse;
        let answer = |Query(params): Query<std::collections::HashMap<String, String>>| async move {
            match params.get("query").map(String::as_str) {
                Some("huge") => {
                    let series: Vec<_> = (0..50_000)
                        .map(|i| serde_json::json!({"metric": {"pod": format!("pod-{i}")}, "value": [1.7e9, "1"]}))
                        .collect();
                    let body = serde_json::json!({"status": "success",
                        "data": {"resultType": "vector", "result": series}});
                    axum::Json(body).into_response()
                }
                Some("bad") => (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"status": "error", "errorType": "bad_data",
                        "error": "parse error"})),
                )
                    .into_response(),
                Some("down") => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "<html>down</html>").into_response(),
                _ => axum::Json(serde_json::json!({"status": "success",
                    "data": {"resultType": "scalar", "result": [1.7e9, "0.5"]}}))
                .into_response(),
            }
        };
        let app = axum::Router::new().route("/prom/api/v1/query", axum::routing::get(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}/prom", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    #[tokio::test]
    async fn answers_over_the_limit_are_refused_and_errors_explained() {
        let address = fake_prometheus().await;
        let query = |promql: &str| PrometheusQuery {
            address: address.clone(),
            query: promql.to_string(),
            timeout: Duration::from_secs(5),
            headers: vec![],
            authentication: Authentication::None,
            insecure: false,
            sensitive: vec![],
        };
        assert_eq!(query("up").run(Utc::now()).await, Ok(ResultValue::Scalar(0.5)));
        let error = query("huge").run(Utc::now()).await.unwrap_err();
        assert!(error.ends_with("response body exceeds 1 MiB"), "{error}");
        let error = query("bad").run(Utc::now()).await.unwrap_err();
        assert!(
            error.ends_with("Prometheus rejected the query: bad_data: parse error"),
            "{error}"
        );
        let error = query("down").run(Utc::now()).await.unwrap_err();
        assert!(error.ends_with("HTTP 503 Service Unavailable"), "{error}");
    }

    #[test]
    fn the_query_path_keeps_a_prefix() {
        let url = |address: &str| query_url(address).map(|u| u.to_string());
        assert_eq!(
            url("http://prometheus:9090").as_deref(),
            Some("http://prometheus:9090/api/v1/query")
        );
        assert_eq!(
            url("https://proxy.example/prometheus/").as_deref(),
            Some("https://proxy.example/prometheus/api/v1/query")
        );
        assert_eq!(url("file:///etc/passwd"), None);
        assert_eq!(url("not a url"), None);
    }
}
