//! Which repository URLs git may be pointed at: the accepted schemes and scp-like syntax, the
//! transports git may use at all, and the rule that file:// never reaches into the mirror cache.

use std::path::{Component, Path, PathBuf};

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
    /// A validated URL. file:// is accepted only when the operator allowed it, and never into the
    /// cache: the mirrors of other GitSyncs (other namespaces, other credentials) live there.
    pub(super) fn remote(&self, url: &str) -> Result<Remote, SourceError> {
        let remote = Remote::parse(url)?;
        if remote.transport == Transport::File {
            let refuse = |reason: String| SourceError::InvalidUrl {
                url: remote.redacted.clone(),
                reason,
            };
            if !self.allow_file_repos {
                return Err(refuse(
                    "file:// repositories are off (the operator can allow them with --allow-file-repos)".into(),
                ));
            }
            let path = file_url_path(url).map_err(refuse)?;
            if is_within(&path, &self.cache_dir) {
                return Err(refuse("points into the controller's git cache".into()));
            }
        }
        Ok(remote)
    }
}

/// The path git opens for a file:// URL, as git reads it: percent-decoded. Only `file:///abs/path`
/// (or `file://localhost/abs/path`) is accepted, and no `.`/`..` component, so the path checked is the
/// path opened.
fn file_url_path(url: &str) -> Result<PathBuf, String> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err("file:// URLs need an absolute path (file:///path/to/repo.git)".into());
    }
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| "the path is not valid UTF-8 once percent-decoded".to_string())?;
    if decoded.contains('\0') {
        return Err("the path contains a NUL byte once percent-decoded".into());
    }
    let path = PathBuf::from(decoded.as_ref());
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("the path must not contain . or .. components".into());
    }
    Ok(path)
}

/// Whether `path` is `dir` or inside it once symlinks are resolved — of the longest part of `path`
/// that exists, so a repository not created yet is judged by the folder it would be created in.
fn is_within(path: &Path, dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    resolved.extend(rest.iter().rev());
    resolved.starts_with(&dir)
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

    fn source(cache: &Path, allow_file_repos: bool) -> GitSource {
        GitSource::new(cache).allow_file_repos(allow_file_repos)
    }

    #[test]
    fn file_urls_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let error = source(&dir.path().join("cache"), false)
            .remote("file:///srv/git/repo.git")
            .unwrap_err();
        assert!(error.to_string().contains("--allow-file-repos"), "{error}");
        assert!(
            source(&dir.path().join("cache"), true)
                .remote("file:///srv/git/repo.git")
                .is_ok()
        );
    }

    #[test]
    fn no_spelling_of_a_path_into_the_cache_gets_through() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let mirror = cache.join("team-b_private");
        std::fs::create_dir_all(&mirror).unwrap();
        let outside = dir.path().join("repos");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&cache, dir.path().join("link-to-cache")).unwrap();
        let source = source(&cache, true);
        let root = dir.path().display().to_string();
        let encoded_cache = format!("{root}/%63%61%63%68%65");
        for url in [
            format!("file://{}", mirror.display()),
            format!("file://{}/", mirror.display()),
            format!("file://{}//", mirror.display()),
            format!("file://{encoded_cache}/team-b_private"),
            format!("file://{root}/cache%2Fteam-b_private"),
            format!("file://{root}/repos/../cache/team-b_private"),
            format!("file://{root}/repos/%2e%2e/cache/team-b_private"),
            format!("file://{root}/./cache/team-b_private"),
            format!("file://{root}/link-to-cache/team-b_private"),
            format!("file://{root}/link-to-cache/not-yet-created"),
            format!("file://localhost{}", mirror.display()),
            format!("file://{}", cache.display()),
            format!("file://{root}/cache%00/x"),
            format!("file://relative/{}", mirror.display()),
        ] {
            let error = source.remote(&url).map(|_| ()).unwrap_err();
            assert!(matches!(error, SourceError::InvalidUrl { .. }), "{url}: {error:?}");
        }
        for url in [
            format!("file://{}/app.git", outside.display()),
            format!("file://{root}/cachet/x"),
        ] {
            assert!(source.remote(&url).is_ok(), "{url}");
        }
    }
}
