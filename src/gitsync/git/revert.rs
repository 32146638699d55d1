//! Reverting a path of a branch to an older revision: one new commit built with index plumbing in the
//! mirror, a message naming what it reverts, and a plain (never forced) push.

use std::path::Path;
use std::time::Duration;

use super::credentials::Credentials;
use super::errors::classify;
use super::fetch::Fetcher;
use super::process::{GitOutput, Invocation};
use super::refs::{validate_ref_name, validate_sha};
use super::{GitSource, SourceError};

/// What to push in [`GitSource::revert_path_to`].
#[derive(Debug, Clone)]
pub struct RevertRequest<'a> {
    pub key: &'a str,
    pub url: &'a str,
    pub credentials: Option<&'a Credentials>,
    pub branch: &'a str,
    pub expected_head: &'a str,
    pub to_revision: &'a str,
    pub path: &'a str,
    pub author: &'a str,
    pub reason: &'a str,
    pub timeout: Duration,
}

impl GitSource {
    /// Pushes to `branch` of `url` ONE new commit on top of `expected_head` whose content under `path`
    /// ("." or "" = whole repository) equals `to_revision`'s, other paths untouched (monorepos).
    /// `Ok(None)` when the branch no longer points at `expected_head` (someone pushed meanwhile: their
    /// work must not be reverted) or when the path already equals `to_revision`. Never a force push:
    /// a concurrent push makes ours a rejected non-fast-forward, which is also `Ok(None)`.
    pub async fn revert_path_to(&self, req: &RevertRequest<'_>) -> Result<Option<String>, SourceError> {
        let remote = self.remote(req.url)?;
        validate_ref_name("spec.ref.branch", req.branch)?;
        validate_sha("expected head", req.expected_head)?;
        validate_sha("revert target revision", req.to_revision)?;
        let path = normalize_path(req.path)?;
        let (author_name, author_email) = parse_author(req.author)?;
        let target = remote.redacted.clone();
        let work = async {
            let lock = self.lock(req.key);
            let _guard = lock.lock().await;
            let auth = self.auth(&remote, req.credentials, req.timeout).await?;
            let mirror = self.mirror_dir(req.key);
            let fetcher = Fetcher {
                source: self,
                mirror: &mirror,
                remote: &remote,
                auth: &auth,
            };
            let branch_ref = format!("refs/heads/{}", req.branch);
            fetcher.fetch_refspecs(&[format!("+{branch_ref}:{branch_ref}")]).await?;
            let head = self.resolve_commit(&mirror, &branch_ref).await?;
            let expected = self.resolve_commit(&mirror, req.expected_head).await?;
            if head.is_none() || head != expected {
                return Ok(None);
            }
            let Some(expected) = expected else { return Ok(None) };
            let to = self
                .resolve_commit(&mirror, req.to_revision)
                .await?
                .ok_or_else(|| SourceError::NotFound {
                    target: target.clone(),
                    message: format!("revision {:?} is not in branch history or the cache", req.to_revision),
                })?;
            let tree = self.reverted_tree(&mirror, &expected, &to, path.as_deref()).await?;
            let head_tree = self.rev_parse(&mirror, &format!("{expected}^{{tree}}")).await?;
            if head_tree.as_deref() == Some(tree.as_str()) {
                return Ok(None);
            }
            let message = self
                .revert_message(&mirror, &expected, &to, path.as_deref(), req.reason)
                .await?;
            let commit = Invocation::in_repo(&mirror)
                .env("GIT_AUTHOR_NAME", &author_name)
                .env("GIT_AUTHOR_EMAIL", &author_email)
                .env("GIT_COMMITTER_NAME", &author_name)
                .env("GIT_COMMITTER_EMAIL", &author_email);
            let out = self
                .git(
                    &commit,
                    &["commit-tree", &tree, "-p", &expected],
                    Some(message.into_bytes()),
                )
                .await?;
            if !out.success {
                return Err(classify("commit", &target, &out.stderr, &[]));
            }
            let new_sha = out.stdout.trim().to_string();
            let push = fetcher.remote_invocation();
            let refspec = format!("{new_sha}:{branch_ref}");
            let out = self
                .git(&push, &["push", "--porcelain", "--no-verify", "origin", &refspec], None)
                .await?;
            if !out.success {
                let both = format!("{}\n{}", out.stdout, out.stderr);
                if both.contains("[rejected]") || both.contains("non-fast-forward") || both.contains("fetch first") {
                    return Ok(None);
                }
                return Err(classify("push", &target, &both, &auth.secrets));
            }
            // Keep the mirror in step, so the pushed commit can be checked out before the next fetch.
            let _ = self
                .git(
                    &Invocation::in_repo(&mirror),
                    &["update-ref", &branch_ref, &new_sha, &expected],
                    None,
                )
                .await;
            Ok(Some(new_sha))
        };
        tokio::time::timeout(req.timeout, work)
            .await
            .map_err(|_| SourceError::Timeout {
                operation: "revert",
                target,
                after: req.timeout,
            })?
    }

    /// The tree of `head` with `path` replaced by `to`'s content at `path` (all of `to` for the root).
    async fn reverted_tree(
        &self,
        mirror: &Path,
        head: &str,
        to: &str,
        path: Option<&str>,
    ) -> Result<String, SourceError> {
        let Some(path) = path else {
            return self
                .rev_parse(mirror, &format!("{to}^{{tree}}"))
                .await?
                .ok_or_else(|| SourceError::NotFound {
                    target: mirror.display().to_string(),
                    message: format!("tree of {to}"),
                });
        };
        let tmp = self.tmp_root().await?;
        let scratch = tempfile::Builder::new()
            .prefix("revert-")
            .tempdir_in(&tmp)
            .map_err(|e| SourceError::io(format!("creating a scratch directory in {}", tmp.display()), e))?;
        let empty_work_tree = scratch.path().join("work");
        std::fs::create_dir(&empty_work_tree).map_err(|e| SourceError::io("creating a scratch work tree", e))?;
        // Index plumbing needs a work tree to exist; nothing is ever written to it.
        let invocation = Invocation::in_repo(mirror)
            .work_tree(&empty_work_tree)
            .index(scratch.path().join("index"));
        let target = mirror.display().to_string();
        let step = |out: GitOutput, what: &str| -> Result<GitOutput, SourceError> {
            if out.success {
                Ok(out)
            } else {
                Err(classify("revert", &target, &format!("{what}: {}", out.stderr), &[]))
            }
        };
        step(self.git(&invocation, &["read-tree", head], None).await?, "read-tree")?;
        let current = step(
            self.git(&invocation, &["ls-files", "-z", "--", path], None).await?,
            "ls-files",
        )?;
        if !current.stdout.is_empty() {
            step(
                self.git(
                    &invocation,
                    &["update-index", "-z", "--force-remove", "--stdin"],
                    Some(current.stdout.into_bytes()),
                )
                .await?,
                "update-index --force-remove",
            )?;
        }
        let old = step(
            self.git(
                &invocation,
                &["ls-tree", "-r", "-z", "--full-tree", to, "--", path],
                None,
            )
            .await?,
            "ls-tree",
        )?;
        if !old.stdout.is_empty() {
            step(
                self.git(
                    &invocation,
                    &["update-index", "-z", "--index-info"],
                    Some(old.stdout.into_bytes()),
                )
                .await?,
                "update-index --index-info",
            )?;
        }
        let tree = step(self.git(&invocation, &["write-tree"], None).await?, "write-tree")?;
        Ok(tree.stdout.trim().to_string())
    }

    async fn revert_message(
        &self,
        mirror: &Path,
        head: &str,
        to: &str,
        path: Option<&str>,
        reason: &str,
    ) -> Result<String, SourceError> {
        let range = format!("{to}..{head}");
        let mut args = vec!["log", "--no-decorate", "--format=%H %s", range.as_str()];
        if let Some(path) = path {
            args.extend(["--", path]);
        }
        let out = self.git(&Invocation::in_repo(mirror), &args, None).await?;
        if !out.success {
            return Err(classify("log", &mirror.display().to_string(), &out.stderr, &[]));
        }
        Ok(revert_message(path, to, &out.stdout, reason, head))
    }
}

/// `None` for the whole repository; otherwise a relative path without `.` or empty components.
fn normalize_path(path: &str) -> Result<Option<String>, SourceError> {
    let invalid = |reason: &str| SourceError::InvalidSpec {
        field: "spec.path",
        value: path.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = path.trim();
    if trimmed.starts_with('/') {
        return Err(invalid("must be relative to the repository root"));
    }
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("must not contain '..'")),
            part if part.chars().any(char::is_control) => return Err(invalid("must not contain control characters")),
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// "Name <email>" → (name, email).
fn parse_author(author: &str) -> Result<(String, String), SourceError> {
    let invalid = || SourceError::InvalidSpec {
        field: "author",
        value: author.to_string(),
        reason: "must look like \"Name <email>\"".into(),
    };
    let (name, rest) = author.split_once('<').ok_or_else(invalid)?;
    let email = rest.strip_suffix('>').ok_or_else(invalid)?;
    let name = name.trim();
    if name.is_empty() || email.is_empty() || author.contains(['\n', '\r']) || email.contains(['<', '>']) {
        return Err(invalid());
    }
    Ok((name.to_string(), email.to_string()))
}

/// The revert commit message: subject, the reverted commits (`log` lines "sha subject"), the reason and a
/// `Sluice-Reverted` trailer naming the head that was reverted (so tools can find Sluice's reverts).
fn revert_message(path: Option<&str>, to: &str, log: &str, reason: &str, head: &str) -> String {
    let short = &to[..to.len().min(12)];
    let mut message = format!("Revert {} to {short}\n\n", path.unwrap_or("."));
    let reverted: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !reverted.is_empty() {
        message.push_str("Reverted commits:\n");
        for line in reverted {
            message.push_str(line);
            message.push('\n');
        }
        message.push('\n');
    }
    let reason = reason.trim();
    if !reason.is_empty() {
        message.push_str(reason);
        message.push_str("\n\n");
    }
    message.push_str(&format!("Sluice-Reverted: {head}\n"));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_authors() {
        assert_eq!(normalize_path("").unwrap(), None);
        assert_eq!(normalize_path(".").unwrap(), None);
        assert_eq!(normalize_path("./").unwrap(), None);
        assert_eq!(normalize_path("./apps//web/").unwrap().as_deref(), Some("apps/web"));
        assert!(normalize_path("../x").is_err());
        assert!(normalize_path("/etc").is_err());
        assert_eq!(
            parse_author("Sluice <sluice@example.com>").unwrap(),
            ("Sluice".into(), "sluice@example.com".into())
        );
        assert!(parse_author("Sluice").is_err());
        assert!(parse_author("<a@b>").is_err());
    }

    #[test]
    fn revert_message_lists_commits_reason_and_trailer() {
        let message = revert_message(
            Some("apps/web"),
            "0123456789abcdef0123456789abcdef01234567",
            "aaaa bump web to v3\nbbbb tune web\n",
            "canary analysis failed: success-rate 0.62 < 0.95",
            "ffff",
        );
        assert_eq!(
            message,
            "Revert apps/web to 0123456789ab\n\nReverted commits:\naaaa bump web to v3\nbbbb tune web\n\n\
             canary analysis failed: success-rate 0.62 < 0.95\n\nSluice-Reverted: ffff\n"
        );
    }
}
