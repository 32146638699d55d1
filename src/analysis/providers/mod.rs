//! Where measurements come from: a Prometheus query ([`prometheus`]) or an HTTP endpoint returning JSON
//! ([`web`]). Each turns a metric's provider spec into a [`ResultValue`](super::ResultValue) or an error
//! message.
//!
//! Error discipline, shared by both: every failure (connection refused, timeout, HTTP status, a
//! Prometheus or JSON error) is an `Err` — never a value — and its message never holds credentials: we
//! write messages ourselves instead of passing on library errors that embed the full URL (userinfo,
//! query string), and as a last guard every sensitive value the request carried (auth, header values,
//! any extra the caller names) is masked in the message.
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};

use super::allowlist::Allowlist;
use super::template::{recorded_query, secret_arguments, substitute_secrets};
use super::{MeasurementOutcome, ResultValue};
use crate::api::analysis::{AnalysisRunSpec, Metric, PrometheusAuthentication, SecretKeyRef};

pub mod job;
pub mod prometheus;
pub mod web;

/// Secret values the controller read, by (Secret name, key). Secrets that could not be read are simply
/// absent: the measurement that needs one is an Error naming the Secret.
pub type SecretValues = BTreeMap<(String, String), String>;

/// The Secrets a measurement of `metric` needs: the run's Secret arguments and the metric's Prometheus
/// credentials, without duplicates. The controller reads them (in the run's namespace) into
/// [`SecretValues`] before calling [`measure`].
pub fn required_secrets(spec: &AnalysisRunSpec, metric: &Metric) -> Vec<SecretKeyRef> {
    let mut refs: Vec<SecretKeyRef> = secret_arguments(spec).into_iter().map(|(_, r)| r.clone()).collect();
    if let Some(auth) = metric
        .provider
        .prometheus
        .as_ref()
        .and_then(|p| p.authentication.as_ref())
    {
        if let Some(basic) = &auth.basic {
            refs.push(basic.username_secret_ref.clone());
            refs.push(basic.password_secret_ref.clone());
        }
        if let Some(bearer) = &auth.bearer {
            refs.push(bearer.token_secret_ref.clone());
        }
    }
    let mut unique: Vec<SecretKeyRef> = Vec::with_capacity(refs.len());
    for r in refs {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    unique
}

/// Takes one measurement of `metric` (a metric of `spec`): fills in Secret arguments and credentials
/// from `secrets`, checks the address against `allowlist`, calls the provider with the query evaluated
/// at `started_at`. Every failure — a missing Secret, an address not allowed, the provider's — is an
/// `Err` value in the outcome (an Error measurement), never a panic. `finished_at` is `started_at` plus
/// the time the call took, so a simulated clock stays consistent. The recorded query keeps Secret
/// placeholders.
pub async fn measure(
    spec: &AnalysisRunSpec,
    metric: &Metric,
    secrets: &SecretValues,
    allowlist: &Allowlist,
    started_at: DateTime<Utc>,
) -> MeasurementOutcome {
    let clock = Instant::now();
    let value = measure_value(spec, metric, secrets, allowlist, started_at)
        .await
        .and_then(within_value_limit);
    let elapsed = TimeDelta::from_std(clock.elapsed()).unwrap_or_default();
    MeasurementOutcome {
        started_at,
        finished_at: started_at + elapsed,
        query: recorded_query(metric),
        value,
    }
}

/// Results holding more numbers than this are an error, never judged: a canary is judged on a few
/// series, and a condition comparing the list with itself in a loop takes quadratic time between two
/// budget checks (measured in a debug build: `result.exists(x, result != result)` 0.2 s over 1,000
/// numbers, 10 s over 10,000; a 1 MiB answer alone could hold 500,000).
pub const MAX_RESULT_VALUES: usize = 1_000;

/// [`MAX_RESULT_VALUES`] enforced: the error names how many numbers there were.
fn within_value_limit(value: ResultValue) -> Result<ResultValue, String> {
    match &value {
        ResultValue::Vector(values) if values.len() > MAX_RESULT_VALUES => Err(format!(
            "the result holds {} numbers; at most {MAX_RESULT_VALUES} are judged (narrow the query or jsonPath)",
            values.len()
        )),
        _ => Ok(value),
    }
}

async fn measure_value(
    spec: &AnalysisRunSpec,
    metric: &Metric,
    secrets: &SecretValues,
    allowlist: &Allowlist,
    at: DateTime<Utc>,
) -> Result<ResultValue, String> {
    let lookup = |secret: &SecretKeyRef| {
        secrets
            .get(&(secret.name.clone(), secret.key.clone()))
            .cloned()
            .ok_or_else(|| format!("Secret {:?} key {:?} could not be read", secret.name, secret.key))
    };
    let mut argument_values = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (name, secret) in secret_arguments(spec) {
        // Only the arguments this metric uses must be readable: substitution reports those.
        match lookup(secret) {
            Ok(value) => {
                argument_values.insert(name.to_string(), value);
            }
            Err(error) => unreadable.push(error),
        }
    }
    let sensitive: Vec<String> = argument_values.values().cloned().collect();
    let metric = substitute_secrets(metric, &argument_values).map_err(|error| {
        if unreadable.is_empty() {
            error
        } else {
            format!("{error}: {}", unreadable.join("; "))
        }
    })?;
    match (&metric.provider.prometheus, &metric.provider.web) {
        (Some(spec), None) => {
            let authentication = resolve_authentication(spec.authentication.as_ref(), &lookup)?;
            let mut query = prometheus::PrometheusQuery::from_spec(spec, authentication)?;
            query.sensitive = sensitive;
            allowlist
                .check(&query.address)
                .await
                .map_err(|e| format!("{}: {e}", display_address(&query.address)))?;
            query.run(at).await
        }
        (None, Some(spec)) => {
            let mut request = web::WebRequest::from_spec(spec)?;
            request.sensitive = sensitive;
            allowlist
                .check(&request.url)
                .await
                .map_err(|e| format!("{}: {e}", display_address(&request.url)))?;
            request.run().await
        }
        // Job metrics are measured by `job::start` / `job::resume`, never through here.
        _ => Err("set exactly one provider (prometheus or web)".to_string()),
    }
}

fn resolve_authentication(
    authentication: Option<&PrometheusAuthentication>,
    lookup: &dyn Fn(&SecretKeyRef) -> Result<String, String>,
) -> Result<Authentication, String> {
    let Some(authentication) = authentication else {
        return Ok(Authentication::None);
    };
    match (&authentication.basic, &authentication.bearer) {
        (None, None) => Ok(Authentication::None),
        (Some(basic), None) => Ok(Authentication::Basic {
            username: lookup(&basic.username_secret_ref)?,
            password: lookup(&basic.password_secret_ref)?,
        }),
        (None, Some(bearer)) => Ok(Authentication::Bearer {
            token: lookup(&bearer.token_secret_ref)?,
        }),
        (Some(_), Some(_)) => Err("authentication: set basic or bearer, not both".to_string()),
    }
}

/// Credentials for a provider, already read from their Secrets by the controller. `Debug` shows only
/// the kind.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Authentication {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Authentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Authentication::None => "None",
            Authentication::Basic { .. } => "Basic(***)",
            Authentication::Bearer { .. } => "Bearer(***)",
        })
    }
}

impl Authentication {
    /// The `Authorization` header value, if any.
    fn header_value(&self) -> Option<String> {
        match self {
            Authentication::None => None,
            Authentication::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Authentication::Bearer { token } => Some(format!("Bearer {token}")),
        }
    }

    /// The secret strings to mask in messages.
    fn secrets(&self) -> Vec<String> {
        match self {
            Authentication::None => vec![],
            Authentication::Basic { username, password } => vec![password.clone(), username.clone()],
            Authentication::Bearer { token } => vec![token.clone()],
        }
    }
}

/// Masks every non-trivial `secret` in `message`. Values shorter than 4 characters are left alone: they
/// would mask ordinary words, and no real credential is that short.
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut message = message.to_string();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        message = message.replace(secret.as_str(), "***");
    }
    message
}

/// An address fit for messages: scheme, host, port and path, without userinfo or query string.
pub fn display_address(address: &str) -> String {
    match reqwest::Url::parse(address) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// An HTTP client for one request: whole-request `timeout`, and certificate checks off when `insecure`.
/// Redirects are not followed: the allowlist vouched for this address, not for wherever it points next
/// (a 3xx answer is an error that names it).
fn http_client(timeout: Duration, insecure: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .tls_danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", e.without_url()))
}

/// Metric answers larger than this are refused, and read no further: a metric answers with a few
/// numbers, so a bigger body is a wrong URL or a query matching far too many series, and reading it
/// whole would let any endpoint make the controller buffer gigabytes.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Reads `response`'s body chunk by chunk, refusing it as soon as it passes [`MAX_RESPONSE_BYTES`] (or
/// announces more in Content-Length), so an oversized body is never buffered whole.
async fn read_body_limited(
    response: &mut reqwest::Response,
    address: &str,
    fail: impl Fn(reqwest::Error) -> String,
) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "{address}: response body exceeds {} MiB",
            MAX_RESPONSE_BYTES / (1024 * 1024)
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(&fail)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Describes a transport error without its URL.
fn describe_http_error(error: &reqwest::Error, address: &str, timeout: Duration) -> String {
    let address = display_address(address);
    if error.is_timeout() {
        format!("{address}: no answer within {timeout:?}")
    } else if error.is_connect() {
        let cause = std::error::Error::source(error)
            .and_then(std::error::Error::source)
            .map(|cause| format!(" ({cause})"))
            .unwrap_or_default();
        format!("{address}: cannot connect{cause}")
    } else if let Some(status) = error.status() {
        format!("{address}: HTTP {status}")
    } else if error.is_decode() {
        format!("{address}: the response is not valid JSON")
    } else {
        format!("{address}: request failed: {}", error_chain(error))
    }
}

/// The error and its causes, the URL left out.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Parses a provider timeout, or `default` when unset.
fn timeout_or(timeout: Option<&str>, default: Duration) -> Result<Duration, String> {
    match timeout {
        None => Ok(default),
        Some(text) => match crate::api::duration::parse(text) {
            Ok(duration) if duration.is_zero() => Err("timeout must be positive".to_string()),
            Ok(duration) => Ok(duration),
            Err(e) => Err(format!("timeout: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::analysis::{ArgumentValueFrom, BearerAuthentication, Header};

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    /// A run whose metric sends the Secret argument `token` as a header and authenticates with a bearer
    /// token from another Secret.
    fn run_with_secrets(address: &str) -> AnalysisRunSpec {
        let mut metric = Metric::prometheus("m", address, "up");
        let prometheus = metric.provider.prometheus.as_mut().unwrap();
        prometheus.headers = vec![Header {
            key: "X-Token".into(),
            value: "{{args.token}}".into(),
        }];
        prometheus.authentication = Some(PrometheusAuthentication {
            bearer: Some(BearerAuthentication {
                token_secret_ref: secret("prom", "bearer"),
            }),
            basic: None,
        });
        AnalysisRunSpec {
            metrics: vec![metric],
            args: vec![crate::api::analysis::Argument {
                name: "token".into(),
                value: None,
                value_from: Some(ArgumentValueFrom {
                    secret_key_ref: Some(secret("tokens", "x")),
                    ..ArgumentValueFrom::default()
                }),
            }],
            ..AnalysisRunSpec::default()
        }
    }

    #[test]
    fn required_secrets_lists_arguments_and_credentials_once() {
        let mut spec = run_with_secrets("http://p:9090");
        spec.args.push(spec.args[0].clone());
        let metric = spec.metrics[0].clone();
        assert_eq!(
            required_secrets(&spec, &metric),
            vec![secret("tokens", "x"), secret("prom", "bearer")]
        );
    }

    #[tokio::test]
    async fn measure_reports_missing_secrets_and_disallowed_addresses_as_errors() {
        let spec = run_with_secrets("http://127.0.0.1:1");
        let metric = &spec.metrics[0];
        let at = Utc::now();
        let open = Allowlist::default();
        let outcome = measure(&spec, metric, &SecretValues::new(), &open, at).await;
        let error = outcome.value.unwrap_err();
        assert!(
            error.contains("argument \"token\"") && error.contains("Secret \"tokens\" key \"x\""),
            "{error}"
        );
        assert_eq!(outcome.query.as_deref(), Some("up"));
        assert!(outcome.finished_at >= outcome.started_at);

        let mut secrets = SecretValues::new();
        secrets.insert(("tokens".into(), "x".into()), "header-s3cret".into());
        let error = measure(&spec, metric, &secrets, &open, at).await.value.unwrap_err();
        assert!(error.contains("Secret \"prom\" key \"bearer\""), "{error}");

        secrets.insert(("prom".into(), "bearer".into()), "bearer-s3cret".into());
        let closed = Allowlist::parse(&["10.0.0.0/8".to_string()]).unwrap();
        let error = measure(&spec, metric, &secrets, &closed, at).await.value.unwrap_err();
        assert!(error.contains("not in the analysis address allowlist"), "{error}");

        // Everything resolved: the provider runs (and fails to connect) without leaking either secret.
        let error = measure(&spec, metric, &secrets, &open, at).await.value.unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn results_with_too_many_numbers_are_an_error() {
        let many = ResultValue::Vector(vec![1.0; MAX_RESULT_VALUES + 1]);
        let error = within_value_limit(many).unwrap_err();
        assert!(
            error.contains(&format!("holds {} numbers", MAX_RESULT_VALUES + 1)),
            "{error}"
        );
        let enough = ResultValue::Vector(vec![1.0; MAX_RESULT_VALUES]);
        assert_eq!(within_value_limit(enough.clone()), Ok(enough));
        let text = ResultValue::Text("t".repeat(MAX_RESPONSE_BYTES));
        assert_eq!(within_value_limit(text.clone()), Ok(text));
    }

    #[test]
    fn redact_masks_secrets_longest_first() {
        let secrets = vec!["abc".to_string(), "s3cret".to_string(), "s3cret-token".to_string()];
        assert_eq!(
            redact("bad s3cret-token and s3cret, abc", &secrets),
            "bad *** and ***, abc"
        );
    }

    #[test]
    fn addresses_lose_userinfo_and_query() {
        assert_eq!(
            display_address("https://user:pw@prometheus.example:9090/api?token=x"),
            "https://prometheus.example:9090/api"
        );
        assert_eq!(display_address("not a url"), "<invalid URL>");
    }

    #[test]
    fn authentication_debug_hides_values() {
        let basic = Authentication::Basic {
            username: "admin".into(),
            password: "hunter22".into(),
        };
        assert_eq!(format!("{basic:?}"), "Basic(***)");
        assert_eq!(basic.header_value().as_deref(), Some("Basic YWRtaW46aHVudGVyMjI="));
        let bearer = Authentication::Bearer { token: "tok".into() };
        assert_eq!(bearer.header_value().as_deref(), Some("Bearer tok"));
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_or(None, Duration::from_secs(30)), Ok(Duration::from_secs(30)));
        assert_eq!(
            timeout_or(Some("5s"), Duration::from_secs(30)),
            Ok(Duration::from_secs(5))
        );
        assert!(timeout_or(Some("0s"), Duration::from_secs(30)).is_err());
        assert!(timeout_or(Some("soon"), Duration::from_secs(30)).is_err());
    }
}
