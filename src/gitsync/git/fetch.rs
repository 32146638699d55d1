//! Fetching a GitSync's ref into its mirror: the refspecs for a branch, tag, commit or the remote
//! HEAD, resolved to a full commit SHA, with the mirror rebuilt once when git finds it corrupt.

use std::path::Path;
use std::time::Duration;

use super::credentials::{Auth, Credentials};
use super::errors::{classify, looks_corrupt};
use super::mirror::remove_dir;
use super::process::Invocation;
use super::refs::Wanted;
use super::remote::Remote;
use super::{GitSource, SourceError};
use crate::api::gitsync::GitRef;

/// Where a fetch of the remote HEAD is stored in the mirror.
const REMOTE_HEAD_REF: &str = "refs/sluice/HEAD";

impl GitSource {
    /// Fetches `url` into a bare mirror under the cache dir and resolves the ref to a full commit SHA.
    /// Full history is kept so older revisions (the last healthy one) can be checked out later.
    pub async fn fetch(
        &self,
        key: &str,
        url: &str,
        git_ref: Option<&GitRef>,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<String, SourceError> {
        let remote = self.remote(url)?;
        let wanted = Wanted::from_ref(git_ref)?;
        let target = remote.redacted.clone();
        let work = async {
            let lock = self.lock(key);
            let _guard = lock.lock().await;
            let auth = self.auth(&remote, credentials, timeout).await?;
            let mirror = self.mirror_dir(key);
            let fetcher = Fetcher {
                source: self,
                mirror: &mirror,
                remote: &remote,
                auth: &auth,
            };
            match fetcher.fetch_wanted(&wanted).await {
                Err(SourceError::Git { message, .. }) if looks_corrupt(&message) => {
                    tracing::warn!(mirror = %mirror.display(), %message, "git mirror looks corrupt, re-creating it");
                    remove_dir(&mirror).await?;
                    fetcher.fetch_wanted(&wanted).await
                }
                result => result,
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SourceError::Timeout {
                operation: "fetch",
                target,
                after: timeout,
            })?
    }
}

/// One fetch or push against one mirror and remote.
pub(super) struct Fetcher<'a> {
    pub(super) source: &'a GitSource,
    pub(super) mirror: &'a Path,
    pub(super) remote: &'a Remote,
    pub(super) auth: &'a Auth,
}

impl Fetcher<'_> {
    /// Git config naming the remote: its URL travels in the environment, so a token in it stays out of argv.
    pub(super) fn remote_invocation(&self) -> Invocation {
        let mut invocation = Invocation::in_repo(self.mirror).config("remote.origin.url", &self.remote.url);
        invocation.config.extend(self.auth.config.iter().cloned());
        invocation.env.extend(self.auth.env.iter().cloned());
        invocation
    }

    async fn fetch_wanted(&self, wanted: &Wanted) -> Result<String, SourceError> {
        let not_found = |what: String| SourceError::NotFound {
            target: self.remote.redacted.clone(),
            message: what,
        };
        let (refspecs, local_ref) = match wanted {
            Wanted::Commit(sha) => return self.fetch_commit(sha).await,
            Wanted::Tag(tag) => (
                vec![format!("+refs/tags/{tag}:refs/tags/{tag}")],
                format!("refs/tags/{tag}"),
            ),
            Wanted::Branch(branch) => (
                vec![format!("+refs/heads/{branch}:refs/heads/{branch}")],
                format!("refs/heads/{branch}"),
            ),
            Wanted::Head => (vec![format!("+HEAD:{REMOTE_HEAD_REF}")], REMOTE_HEAD_REF.to_string()),
        };
        self.fetch_refspecs(&refspecs).await?;
        self.source
            .resolve_commit(self.mirror, &local_ref)
            .await?
            .ok_or_else(|| not_found(format!("{local_ref} does not point at a commit")))
    }

    /// A commit is immutable: when the mirror has it there is nothing to fetch. Otherwise all branches and
    /// tags are fetched (the commit is usually on one), then the commit itself if the server allows it.
    async fn fetch_commit(&self, sha: &str) -> Result<String, SourceError> {
        let wanted = sha.to_ascii_lowercase();
        let resolve = || async {
            Ok::<_, SourceError>(
                self.source
                    .resolve_commit(self.mirror, &wanted)
                    .await?
                    .filter(|full| full.starts_with(&wanted)),
            )
        };
        if self.source.mirror_is_current(self.mirror, self.remote).await
            && let Some(full) = resolve().await?
        {
            return Ok(full);
        }
        self.fetch_refspecs(&["+refs/heads/*:refs/heads/*".into(), "+refs/tags/*:refs/tags/*".into()])
            .await?;
        if let Some(full) = resolve().await? {
            return Ok(full);
        }
        if wanted.len() == 40 || wanted.len() == 64 {
            // Servers allowing any reachable SHA in "want" (GitHub, GitLab) serve unadvertised commits.
            let _ = self
                .fetch_refspecs(&[format!("+{wanted}:refs/sluice/commits/{wanted}")])
                .await;
            if let Some(full) = resolve().await? {
                return Ok(full);
            }
        }
        Err(SourceError::NotFound {
            target: self.remote.redacted.clone(),
            message: format!("commit {sha:?} is not in the repository"),
        })
    }

    /// Fetches into the mirror, (re)creating it first when missing, foreign or for another URL, and once
    /// more from scratch when git reports a corrupt repository.
    pub(super) async fn fetch_refspecs(&self, refspecs: &[String]) -> Result<(), SourceError> {
        let mut recreated = false;
        loop {
            recreated |= self.source.ensure_mirror(self.mirror, self.remote).await?;
            let mut args = vec![
                "fetch",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "origin",
            ];
            args.extend(refspecs.iter().map(String::as_str));
            let out = self.source.git(&self.remote_invocation(), &args, None).await?;
            if out.success {
                return Ok(());
            }
            let error = classify("fetch", &self.remote.redacted, &out.stderr, &self.auth.secrets);
            if recreated || !matches!(error, SourceError::Git { .. }) || !looks_corrupt(&out.stderr) {
                return Err(error);
            }
            tracing::warn!(mirror = %self.mirror.display(), %error, "git mirror looks corrupt, re-creating it");
            remove_dir(self.mirror).await?;
        }
    }
}
