//! The mirror cache: one bare repository per GitSync under the cache directory, created for one URL,
//! queried for commits, cleared of stale locks, and dropped when corrupt so the next fetch rebuilds it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::errors::{classify, looks_corrupt};
use super::process::Invocation;
use super::remote::Remote;
use super::{GitSource, SourceError};

/// Config key in the mirror recording which URL it mirrors, so a changed URL never mixes histories.
/// Written last when creating a mirror: its absence marks an unfinished or foreign directory.
const URL_HASH_KEY: &str = "sluice.urlhash";

impl GitSource {
    /// The bare mirror of `key` (which need not exist).
    pub fn mirror_dir(&self, key: &str) -> PathBuf {
        self.cache_dir.join(mirror_dir_name(key))
    }

    /// Whether `revision` is a commit present in the mirror of `key`.
    pub async fn has_revision(&self, key: &str, revision: &str) -> bool {
        matches!(self.resolve_commit(&self.mirror_dir(key), revision).await, Ok(Some(_)))
    }

    /// The full SHA of `revision` when it names a commit in `mirror`; Err when the mirror is corrupt.
    pub(super) async fn resolve_commit(&self, mirror: &Path, revision: &str) -> Result<Option<String>, SourceError> {
        if revision.is_empty() || revision.starts_with('-') || !mirror.is_dir() {
            return Ok(None);
        }
        self.rev_parse(mirror, &format!("{revision}^{{commit}}")).await
    }

    /// Ok(None) for an unknown revision; Err when git could not read the mirror's objects, so
    /// callers can tell "not fetched" from "corrupt" (a corrupt mirror is rebuilt, not trusted).
    pub(super) async fn rev_parse(&self, mirror: &Path, spec: &str) -> Result<Option<String>, SourceError> {
        let out = self
            .git(
                &Invocation::in_repo(mirror),
                &["rev-parse", "--verify", "--end-of-options", spec],
                None,
            )
            .await?;
        let sha = out.stdout.trim();
        if out.success && !sha.is_empty() {
            return Ok(Some(sha.to_string()));
        }
        if looks_corrupt(&out.stderr) {
            return Err(classify("rev-parse", &mirror.display().to_string(), &out.stderr, &[]));
        }
        Ok(None)
    }

    /// A fetch that finds nothing new never reads old objects, so it would not notice corruption:
    /// drop the mirror so the next fetch rebuilds it. Returns `error` (transient) for the caller.
    pub(super) async fn drop_corrupt_mirror(&self, key: &str, mirror: &Path, error: SourceError) -> SourceError {
        let lock = self.lock(key);
        let _guard = lock.lock().await;
        tracing::warn!(mirror = %mirror.display(), %error, "git mirror looks corrupt, removing it");
        match remove_dir(mirror).await {
            Ok(()) => error,
            Err(remove_error) => remove_error,
        }
    }

    /// Whether `mirror` is a finished mirror of `remote`'s URL.
    pub(super) async fn mirror_is_current(&self, mirror: &Path, remote: &Remote) -> bool {
        if !mirror.is_dir() {
            return false;
        }
        let out = self
            .git(&Invocation::in_repo(mirror), &["config", "--get", URL_HASH_KEY], None)
            .await;
        matches!(out, Ok(out) if out.success && out.stdout.trim() == remote.url_hash)
    }

    /// Makes `mirror` a bare repository for `remote`. Returns whether it was (re)created.
    pub(super) async fn ensure_mirror(&self, mirror: &Path, remote: &Remote) -> Result<bool, SourceError> {
        if self.mirror_is_current(mirror, remote).await {
            remove_stale_locks(mirror).await;
            return Ok(false);
        }
        if tokio::fs::symlink_metadata(mirror).await.is_ok() {
            tracing::info!(mirror = %mirror.display(), "re-creating git mirror (new URL, unfinished or foreign directory)");
            remove_dir(mirror).await?;
        }
        tokio::fs::create_dir_all(mirror)
            .await
            .map_err(|e| SourceError::io(format!("creating {}", mirror.display()), e))?;
        let target = mirror.display().to_string();
        let invocation = Invocation::in_repo(mirror);
        for args in [
            &["init", "--bare", "--quiet"][..],
            &["config", "gc.autoDetach", "false"],
            &["config", "core.logAllRefUpdates", "false"],
            &["config", URL_HASH_KEY, &remote.url_hash],
        ] {
            let out = self.git(&invocation, args, None).await?;
            if !out.success {
                return Err(classify("init", &target, &out.stderr, &[]));
            }
        }
        Ok(true)
    }
}

/// The mirror directory name of a key: readable, and unique even when sanitising merged characters.
fn mirror_dir_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .take(100)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    format!("{readable}-{}", &hash[..12])
}

/// Removes a mirror (or whatever is at its path); nothing there is fine.
pub(super) async fn remove_dir(dir: &Path) -> Result<(), SourceError> {
    let owned = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&owned) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&owned),
        Ok(_) => std::fs::remove_file(&owned),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| SourceError::io(format!("removing {}", dir.display()), std::io::Error::other(e)))?;
    result.map_err(|e| SourceError::io(format!("removing {}", dir.display()), e))
}

/// A git killed at its timeout leaves `*.lock` files that would fail every later fetch. Only called
/// with the mirror's lock held, when no git of ours is working on it.
async fn remove_stale_locks(mirror: &Path) {
    let mirror = mirror.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        let top = std::fs::read_dir(&mirror)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path());
        let refs = walkdir::WalkDir::new(mirror.join("refs"))
            .into_iter()
            .flatten()
            .map(|entry| entry.into_path());
        for path in top.chain(refs) {
            if path.extension().is_some_and(|ext| ext == "lock") && path.is_file() {
                tracing::info!(lock = %path.display(), "removing stale git lock");
                let _ = std::fs::remove_file(&path);
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_are_safe_and_distinct() {
        let a = mirror_dir_name("default/app");
        assert!(a.starts_with("default_app-"), "{a}");
        assert_ne!(a, mirror_dir_name("default_app"));
        assert!(!mirror_dir_name("../../etc").contains('/'));
        assert!(!mirror_dir_name("..").starts_with('.'));
    }
}
