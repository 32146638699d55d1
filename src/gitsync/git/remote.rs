//! Which repository URLs git may be pointed at: the accepted schemes and scp-like syntax, the
//! transports git may use at all, and the rule that file:// never reaches into the mirror cache.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{GitSource, SourceError, redact_userinfo};

/// Transports git may use at all; everything else (notably `ext::`, which runs commands) is refused by git.
pub(super) const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

#[derive(Debug, Clone, PartialEq, Eq)]
/// How git reaches a remote; decides which credentials fit.
pub(super) enum Transport {
    /// `origin` is `scheme://host[:port]/`, the scope of the Basic auth header.
    Http {
        origin: String,
    },
    Ssh,
    Git,
    File,
}

/// A validated repository URL.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    pub(super) url: String,
    pub(super) redacted: String,
    pub(super) url_hash: String,
    pub(super) transport: Transport,
}

impl Remote {
    pub(super) fn parse(url: &str) -> Result<Remote, SourceError> {
        let redacted = redact_userinfo(url);
        let invalid = |reason: &str| SourceError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain whitespace or control characters"));
        }
        if url.starts_with('-') {
            return Err(invalid("must not start with '-'"));
        }
        let transport = if let Some((scheme, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            match scheme.to_ascii_lowercase().as_str() {
                "http" | "https" => {
                    if host.is_empty() {
                        return Err(invalid("has no host"));
                    }
                    Transport::Http {
                        origin: format!("{}://{host}/", scheme.to_ascii_lowercase()),
                    }
                }
                "ssh" | "git+ssh" | "ssh+git" => {
                    if host.is_empty() {
                        return Err(invalid("has no host"));
                    }
                    Transport::Ssh
                }
                "git" => {
                    if host.is_empty() {
                        return Err(invalid("has no host"));
                    }
                    Transport::Git
                }
                "file" => {
                    if rest.trim_start_matches('/').is_empty() {
                        return Err(invalid("has no path"));
                    }
                    Transport::File
                }
                _ => {
                    return Err(invalid(
                        "unsupported scheme: use https://, http://, ssh://, git://, file:// or user@host:path",
                    ));
                }
            }
        } else if url.contains("::") {
            return Err(invalid("remote helpers (<transport>::<address>) are not allowed"));
        } else {
            // git's rule for scp-like syntax: a colon before the first slash; otherwise it is a local path.
            let colon = url.find(':');
            let slash = url.find('/');
            match colon {
                Some(c) if slash.is_none_or(|s| c < s) => {
                    let host = &url[..c];
                    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                    if host.is_empty() || url[c + 1..].is_empty() {
                        return Err(invalid("scp-like URLs need a host and a path (user@host:path)"));
                    }
                    Transport::Ssh
                }
                _ => return Err(invalid("local paths are not allowed; use a file:// URL")),
            }
        };
        Ok(Remote {
            url: url.to_string(),
            redacted,
            url_hash: hex::encode(Sha256::digest(url.as_bytes())),
            transport,
        })
    }
}

impl GitSource {
    /// A validated URL. file:// may not point into the cache: the mirrors of other GitSyncs (other
    /// namespaces, other credentials) live there.
    pub(super) fn remote(&self, url: &str) -> Result<Remote, SourceError> {
        let remote = Remote::parse(url)?;
        if remote.transport == Transport::File {
            let path = url.split_once("://").map_or("", |(_, rest)| rest);
            let path = Path::new(&path[path.find('/').unwrap_or(path.len())..]);
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if canonical(path).starts_with(canonical(&self.cache_dir)) {
                return Err(SourceError::InvalidUrl {
                    url: remote.redacted,
                    reason: "points into the controller's git cache".into(),
                });
            }
        }
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_supported_urls() {
        for (url, transport) in [
            ("https://github.com/org/repo.git", "http"),
            ("http://127.0.0.1:8080/repo.git", "http"),
            ("ssh://git@github.com/org/repo.git", "ssh"),
            ("git@github.com:org/repo.git", "ssh"),
            ("github.com:org/repo", "ssh"),
            ("git://127.0.0.1:9418/repo.git", "git"),
            ("file:///srv/git/repo.git", "file"),
        ] {
            let remote = Remote::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            let kind = match remote.transport {
                Transport::Http { .. } => "http",
                Transport::Ssh => "ssh",
                Transport::Git => "git",
                Transport::File => "file",
            };
            assert_eq!(kind, transport, "{url}");
        }
    }

    #[test]
    fn rejects_unsupported_urls_naming_the_field() {
        for url in [
            "",
            "/srv/git/repo.git",
            "./repo",
            "repo",
            "ext::sh -c touch% /tmp/pwned",
            "ext::ssh",
            "fd::3",
            "ftp://example.com/repo.git",
            "https://",
            "-uhttps://x/y",
            "https://host/repo\nx",
            "file://",
        ] {
            let error = Remote::parse(url).expect_err(url);
            assert!(matches!(error, SourceError::InvalidUrl { .. }), "{url}: {error:?}");
            assert!(error.to_string().starts_with("spec.repoURL"), "{error}");
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn basic_auth_is_scoped_to_the_origin() {
        let remote = Remote::parse("https://user:tok@git.example.com:8443/org/repo.git").unwrap();
        assert_eq!(
            remote.transport,
            Transport::Http {
                origin: "https://git.example.com:8443/".into()
            }
        );
        assert_eq!(remote.redacted, "https://***@git.example.com:8443/org/repo.git");
    }
}
