//! Where measurements come from: a Prometheus query ([`prometheus`]) or an HTTP endpoint returning JSON
//! ([`web`]). Each turns a metric's provider spec into a [`ResultValue`](super::ResultValue) or an error
//! message.
//!
//! Error discipline, shared by both: every failure (connection refused, timeout, HTTP status, a
//! Prometheus or JSON error) is an `Err` — never a value — and its message never holds credentials: we
//! write messages ourselves instead of passing on library errors that embed the full URL (userinfo,
//! query string), and as a last guard every sensitive value the request carried (auth, header values,
//! any extra the caller names) is masked in the message.
use std::fmt;
use std::time::Duration;

use base64::Engine as _;

pub mod prometheus;
pub mod web;

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
fn http_client(timeout: Duration, insecure: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tls_danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", e.without_url()))
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
        Some(text) => match crate::duration::parse(text) {
            Ok(duration) if duration.is_zero() => Err("timeout must be positive".to_string()),
            Ok(duration) => Ok(duration),
            Err(e) => Err(format!("timeout: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
