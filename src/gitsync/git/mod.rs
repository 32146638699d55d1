//! Git source of a GitSync: one bare mirror per GitSync, fetched with the git CLI (the transports,
//! credential handling and protocol behaviour users already know from git, Argo CD and Flux), a ref
//! resolved to a commit SHA, trees checked out into temporary directories, and revert commits pushed
//! as plain fast-forwards. Every git call is hermetic (no user or system config, no prompts) and bounded.
//!
//! [`GitSource`] is the whole interface; its operations live with their concern: `fetch`,
//! `checkout`, `revert` (the three operations), `mirror` (the cache), `credentials`, `remote` (URLs
//! and transports), `refs` (what a GitRef asks for), `process` (the hermetic git runner) and
//! `errors` (classifying what git printed).

mod checkout;
mod credentials;
mod errors;
mod fetch;
mod mirror;
mod process;
mod refs;
mod remote;
mod revert;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use credentials::Credentials;
pub use errors::{SourceError, redact_userinfo};
pub use process::hermetic_command;
pub use revert::RevertRequest;

/// Fetches, checks out and pushes Git repositories through bare mirrors under one cache directory.
/// Cheap to clone; clones share the per-mirror locks, so share one per process.
#[derive(Clone, Debug)]
pub struct GitSource {
    cache_dir: PathBuf,
    git: PathBuf,
    /// Whether file:// repository URLs are accepted at all (`--allow-file-repos`).
    allow_file_repos: bool,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl GitSource {
    /// A source caching mirrors under `cache_dir`, running `git` from PATH.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        GitSource {
            cache_dir: cache_dir.into(),
            git: PathBuf::from("git"),
            allow_file_repos: false,
            locks: Arc::default(),
        }
    }

    /// Accepts file:// repository URLs (still never into the cache). Off by default: on a shared
    /// controller, a path on its disk is not a tenant's repository.
    pub fn allow_file_repos(mut self, allow: bool) -> Self {
        self.allow_file_repos = allow;
        self
    }

    /// Runs this git binary instead of the one on PATH.
    pub fn with_git(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    async fn tmp_root(&self) -> Result<PathBuf, SourceError> {
        let tmp = self.cache_dir.join(".tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| SourceError::io(format!("creating {}", tmp.display()), e))?;
        Ok(tmp)
    }
}
