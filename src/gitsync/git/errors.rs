//! The error of every Git source operation, and how a failed git's stderr becomes one: classified
//! (auth, not found, transient), with secrets and URL userinfo scrubbed out.

use std::time::Duration;

const MAX_MESSAGE_CHARS: usize = 1000;

#[derive(thiserror::Error, Debug)]
pub enum SourceError {
    #[error("spec.repoURL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{field} {value:?}: {reason}")]
    InvalidSpec {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("credentials Secret: {0}")]
    InvalidCredentials(String),
    #[error("authentication failed for {target}: {message}")]
    AuthFailed { target: String, message: String },
    #[error("not found in {target}: {message}")]
    NotFound { target: String, message: String },
    #[error("git {operation} of {target} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        target: String,
        after: Duration,
    },
    #[error("git {operation} of {target} failed: {message}")]
    Git {
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether retrying soon may succeed without anyone changing the spec, the Secret or the repository.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Timeout { .. } | SourceError::Git { .. } | SourceError::Io { .. }
        )
    }

    /// A short, stable label for counting failures by kind.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::InvalidUrl { .. } => "invalid_url",
            SourceError::InvalidSpec { .. } => "invalid_spec",
            SourceError::InvalidCredentials(_) => "invalid_credentials",
            SourceError::AuthFailed { .. } => "auth_failed",
            SourceError::NotFound { .. } => "not_found",
            SourceError::Timeout { .. } => "timeout",
            SourceError::Git { .. } => "git",
            SourceError::Io { .. } => "io",
        }
    }

    pub(super) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SourceError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Turns a failed git's stderr into an error variant, with secrets and URL userinfo removed.
pub(super) fn classify(operation: &'static str, target: &str, stderr: &str, secrets: &[String]) -> SourceError {
    let message = clean_message(stderr, secrets);
    let lower = stderr.to_ascii_lowercase();
    const AUTH: &[&str] = &[
        "authentication failed",
        "could not read username",
        "could not read password",
        "returned error: 401",
        "returned error: 403",
        "permission denied (publickey",
        "permission denied, please try again",
        "host key verification failed",
        "invalid username or password",
    ];
    const NOT_FOUND: &[&str] = &[
        "repository not found",
        "does not appear to be a git repository",
        "couldn't find remote ref",
        "unknown revision",
        "returned error: 404",
        "repository not exported",
        "no such repository",
    ];
    let target = target.to_string();
    if AUTH.iter().any(|p| lower.contains(p)) {
        SourceError::AuthFailed { target, message }
    } else if NOT_FOUND.iter().any(|p| lower.contains(p))
        || (lower.contains("repository '") && lower.contains("' not found"))
    {
        SourceError::NotFound { target, message }
    } else {
        SourceError::Git {
            operation,
            target,
            message,
        }
    }
}

/// Whether git's stderr says the mirror's objects or refs are damaged (it is then rebuilt).
pub(super) fn looks_corrupt(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    [
        "not a git repository",
        "bad object",
        "corrupt",
        "loose object",
        "unable to read",
        "did not send all necessary objects",
        "bad ref",
        "broken link",
        "index file",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// git's stderr as one line for an error message: secrets scrubbed, URL userinfo redacted, hints dropped.
fn clean_message(stderr: &str, secrets: &[String]) -> String {
    let mut text = redact_userinfo(stderr);
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(secret.as_str(), "***");
    }
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect::<Vec<_>>()
        .join("; ");
    if joined.is_empty() {
        return "git exited with an error and no message".into();
    }
    if joined.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = joined.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// Replaces the userinfo of every `scheme://user[:password]@host` in `text` with `***`.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        let (before, after) = rest.split_at(index + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_everywhere_in_text() {
        assert_eq!(
            redact_userinfo("fatal: unable to access 'https://bob:s3cret@host/x.git/': 403"),
            "fatal: unable to access 'https://***@host/x.git/': 403"
        );
        assert_eq!(
            redact_userinfo("https://host/x and ssh://git@h/y"),
            "https://host/x and ssh://***@h/y"
        );
        assert_eq!(redact_userinfo("git@github.com:org/repo"), "git@github.com:org/repo");
        assert_eq!(redact_userinfo("https://tok@h"), "https://***@h");
    }

    #[test]
    fn classifies_git_errors() {
        let cases = [
            ("fatal: Authentication failed for 'https://h/r.git/'", "auth_failed"),
            (
                "fatal: could not read Username for 'https://h': terminal prompts disabled",
                "auth_failed",
            ),
            (
                "fatal: unable to access 'https://h/r/': The requested URL returned error: 403",
                "auth_failed",
            ),
            (
                "git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                "auth_failed",
            ),
            (
                "remote: Repository not found.\nfatal: repository 'https://h/r/' not found",
                "not_found",
            ),
            ("fatal: '/srv/x' does not appear to be a git repository", "not_found"),
            ("fatal: couldn't find remote ref refs/heads/nope", "not_found"),
            (
                "fatal: repository 'http://127.0.0.1:1/nope.git/' not found",
                "not_found",
            ),
            (
                "fatal: unable to access 'http://127.0.0.1:1/r/': Failed to connect",
                "git",
            ),
            ("fatal: unable to access 'https://h/': Could not resolve host: h", "git"),
        ];
        for (stderr, label) in cases {
            let error = classify("fetch", "https://h/r.git", stderr, &[]);
            assert_eq!(error.metric_label(), label, "{stderr}");
        }
        assert!(classify("fetch", "x", "Could not resolve host", &[]).is_transient());
        assert!(!classify("fetch", "x", "Authentication failed", &[]).is_transient());
    }

    #[test]
    fn error_messages_carry_no_secrets() {
        let error = classify(
            "fetch",
            "https://h/r.git",
            "fatal: unable to access 'https://bob:hunter22@h/r.git/': 401\nhint: try again\n\n",
            &["hunter22".into()],
        );
        let text = error.to_string();
        assert!(!text.contains("hunter22") && !text.contains("bob"), "{text}");
        assert!(!text.contains("hint"), "{text}");
    }
}
