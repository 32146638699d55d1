//! The Prometheus provider: one instant query, evaluated at a given time, as a [`ResultValue`].
//!
//! A scalar result is `Scalar`, an instant vector `Vector` in the order Prometheus returned the series
//! (`sort()`/`sort_desc()` in the query decide it), an empty vector `Vector([])`. NaN and ±Inf are kept
//! as they are: the rules decide what they mean (NaN is "no data"). A range vector is an error — a
//! condition cannot judge a matrix.
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use prometheus_http_query::response::Data;

use super::{Authentication, describe_http_error, display_address, http_client, redact, timeout_or};
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
        let client = prometheus_http_query::Client::from(client, &self.address)
            .map_err(|_| format!("invalid Prometheus address {address:?}"))?;
        // `at()` takes whole seconds; evaluating up to a second in the past could miss the newest sample, so
        // send the time with milliseconds (the API takes fractional Unix time).
        let time = format!("{}.{:03}", at.timestamp(), at.timestamp_subsec_millis());
        let mut request = client
            .query(&self.query)
            .query("time", time)
            .timeout(self.timeout.as_millis().try_into().unwrap_or(i64::MAX));
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
        // reqwest's timeout covers the request; this guard also covers reading and parsing the body.
        let response = tokio::time::timeout(self.timeout, request.get())
            .await
            .map_err(|_| format!("{address}: no answer within {:?}", self.timeout))?
            .map_err(|error| describe_error(&error, &self.address, self.timeout))?;
        match response.data() {
            Data::Scalar(sample) => Ok(ResultValue::Scalar(sample.value())),
            Data::Vector(series) => Ok(ResultValue::Vector(series.iter().map(|s| s.sample().value()).collect())),
            Data::Matrix(_) => Err(format!(
                "{address}: the query returned a range vector; use an instant vector (e.g. rate(x[5m]), not x[5m])"
            )),
        }
    }
}

fn describe_error(error: &prometheus_http_query::Error, address: &str, timeout: Duration) -> String {
    use prometheus_http_query::Error;
    match error {
        Error::Prometheus(error) => format!(
            "{}: Prometheus rejected the query: {}: {}",
            display_address(address),
            error.error_type(),
            error.message()
        ),
        Error::Client(client) => {
            match std::error::Error::source(client).and_then(|e| e.downcast_ref::<reqwest::Error>()) {
                Some(http) => describe_http_error(http, address, timeout),
                // The library's own message, e.g. a 200 answer that is not JSON (a proxy's login page).
                None => format!("{}: {client}", display_address(address)),
            }
        }
        other => format!("{}: {other}", display_address(address)),
    }
}
