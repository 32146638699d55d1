//! Git source of a GitSync: one bare mirror per GitSync, fetched with the git CLI (the transports,
//! credential handling and protocol behaviour users already know from git, Argo CD and Flux), a ref
//! resolved to a commit SHA, trees checked out into temporary directories, and revert commits pushed
//! as plain fast-forwards. Every git call is hermetic (no user or system config, no prompts) and bounded.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::gitsync::GitRef;

/// Transports git may use at all; everything else (notably `ext::`, which runs commands) is refused by git.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";
/// Environment passed through to git: what proxies and custom CAs need. Everything else is cleared so
/// variables like GIT_DIR, GIT_CURL_VERBOSE or GIT_TRACE in the controller's environment can't interfere.
const PASSTHROUGH_ENV: &[&str] = &[
    "PATH",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];
/// Config key in the mirror recording which URL it mirrors, so a changed URL never mixes histories.
/// Written last when creating a mirror: its absence marks an unfinished or foreign directory.
const URL_HASH_KEY: &str = "sluice.urlhash";
/// Where a fetch of the remote HEAD is stored in the mirror.
const REMOTE_HEAD_REF: &str = "refs/sluice/HEAD";
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

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SourceError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Git credentials from a Secret. `Debug` never shows the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Ssh { identity: String, known_hosts: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Ssh { .. } => f
                .debug_struct("Ssh")
                .field("identity", &"<redacted>")
                .field("known_hosts", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    /// From a Secret's data, with Flux's keys: `username` + `password`; `password` or `token` alone
    /// (username "git", what GitHub, GitLab and Gitea accept with a token); or `identity` + `known_hosts`
    /// for SSH (known_hosts is required: host keys are always verified).
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Credentials, SourceError> {
        let text = |key: &str| -> Result<Option<String>, SourceError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => {
                    let value = std::str::from_utf8(bytes)
                        .map_err(|_| SourceError::InvalidCredentials(format!("key {key:?} is not UTF-8")))?;
                    // Secrets made from files usually end with a newline that is not part of the value.
                    let value = value.trim_end_matches(['\n', '\r']);
                    if value.is_empty() {
                        Err(SourceError::InvalidCredentials(format!("key {key:?} is empty")))
                    } else {
                        Ok(Some(value.to_string()))
                    }
                }
            }
        };
        if let Some(identity) = text("identity")? {
            let known_hosts = text("known_hosts")?.ok_or_else(|| {
                SourceError::InvalidCredentials(
                    "key \"known_hosts\" is required with \"identity\" (host keys are always verified)".into(),
                )
            })?;
            return Ok(Credentials::Ssh { identity, known_hosts });
        }
        let password = match text("password")? {
            Some(password) => Some(password),
            None => text("token")?,
        };
        match (text("username")?, password) {
            (username, Some(password)) => Ok(Credentials::Basic {
                username: username.unwrap_or_else(|| "git".into()),
                password,
            }),
            (Some(_), None) => Err(SourceError::InvalidCredentials(
                "key \"password\" is missing (it goes with \"username\")".into(),
            )),
            (None, None) => Err(SourceError::InvalidCredentials(
                "expected keys \"username\" and \"password\", \"password\" or \"token\" alone, or \"identity\" and \"known_hosts\""
                    .into(),
            )),
        }
    }
}

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

/// Fetches, checks out and pushes Git repositories through bare mirrors under one cache directory.
/// Cheap to clone; clones share the per-mirror locks, so share one per process.
#[derive(Clone, Debug)]
pub struct GitSource {
    cache_dir: PathBuf,
    git: PathBuf,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl GitSource {
    /// A source caching mirrors under `cache_dir`, running `git` from PATH.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        GitSource {
            cache_dir: cache_dir.into(),
            git: PathBuf::from("git"),
            locks: Arc::default(),
        }
    }

    /// Runs this git binary instead of the one on PATH.
    pub fn with_git(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    /// The bare mirror of `key` (which need not exist).
    pub fn mirror_dir(&self, key: &str) -> PathBuf {
        self.cache_dir.join(mirror_dir_name(key))
    }

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

    /// The tree of `revision` (already fetched) written to a fresh temporary directory under the cache
    /// dir (which is writable where the root filesystem may not be). Symlinks are written as plain files
    /// holding the link target, so rendering can never follow a link out of the checkout.
    pub async fn checkout(
        &self,
        key: &str,
        revision: &str,
        timeout: Duration,
    ) -> Result<tempfile::TempDir, SourceError> {
        let mirror = self.mirror_dir(key);
        let work = async {
            let sha = match self.resolve_commit(&mirror, revision).await {
                Err(error) => return Err(self.drop_corrupt_mirror(key, &mirror, error).await),
                Ok(sha) => sha,
            };
            let sha = sha.ok_or_else(|| SourceError::NotFound {
                target: key.to_string(),
                message: format!("revision {revision:?} has not been fetched"),
            })?;
            let tmp = self.tmp_root().await?;
            let dir = tempfile::Builder::new()
                .prefix("checkout-")
                .tempdir_in(&tmp)
                .map_err(|e| SourceError::io(format!("creating a checkout directory in {}", tmp.display()), e))?;
            let scratch = tempfile::Builder::new()
                .prefix("index-")
                .tempdir_in(&tmp)
                .map_err(|e| SourceError::io(format!("creating a scratch directory in {}", tmp.display()), e))?;
            let invocation = Invocation::in_repo(&mirror)
                .work_tree(dir.path())
                .index(scratch.path().join("index"))
                .config("core.symlinks", "false");
            let out = self
                .git(&invocation, &["read-tree", "--reset", "-u", &sha], None)
                .await?;
            if !out.success {
                let error = classify("checkout", key, &out.stderr, &[]);
                if looks_corrupt(&out.stderr) {
                    return Err(self.drop_corrupt_mirror(key, &mirror, error).await);
                }
                return Err(error);
            }
            Ok(dir)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SourceError::Timeout {
                operation: "checkout",
                target: key.to_string(),
                after: timeout,
            })?
    }

    /// Whether `revision` is a commit present in the mirror of `key`.
    pub async fn has_revision(&self, key: &str, revision: &str) -> bool {
        matches!(self.resolve_commit(&self.mirror_dir(key), revision).await, Ok(Some(_)))
    }

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

    /// The full SHA of `revision` when it names a commit in `mirror`; Err when the mirror is corrupt.
    async fn resolve_commit(&self, mirror: &Path, revision: &str) -> Result<Option<String>, SourceError> {
        if revision.is_empty() || revision.starts_with('-') || !mirror.is_dir() {
            return Ok(None);
        }
        self.rev_parse(mirror, &format!("{revision}^{{commit}}")).await
    }

    /// Ok(None) for an unknown revision; Err when git could not read the mirror's objects, so
    /// callers can tell "not fetched" from "corrupt" (a corrupt mirror is rebuilt, not trusted).
    async fn rev_parse(&self, mirror: &Path, spec: &str) -> Result<Option<String>, SourceError> {
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

    /// A validated URL. file:// may not point into the cache: the mirrors of other GitSyncs (other
    /// namespaces, other credentials) live there.
    fn remote(&self, url: &str) -> Result<Remote, SourceError> {
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

    /// A fetch that finds nothing new never reads old objects, so it would not notice corruption:
    /// drop the mirror so the next fetch rebuilds it. Returns `error` (transient) for the caller.
    async fn drop_corrupt_mirror(&self, key: &str, mirror: &Path, error: SourceError) -> SourceError {
        let lock = self.lock(key);
        let _guard = lock.lock().await;
        tracing::warn!(mirror = %mirror.display(), %error, "git mirror looks corrupt, removing it");
        match remove_dir(mirror).await {
            Ok(()) => error,
            Err(remove_error) => remove_error,
        }
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    fn home(&self) -> PathBuf {
        self.cache_dir.join(".home")
    }

    async fn tmp_root(&self) -> Result<PathBuf, SourceError> {
        let tmp = self.cache_dir.join(".tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| SourceError::io(format!("creating {}", tmp.display()), e))?;
        Ok(tmp)
    }

    /// Git config and environment carrying the credentials, never argv: a Basic header scoped to the
    /// repository's origin, or an ssh command using temporary 0600 key and known_hosts files.
    async fn auth(
        &self,
        remote: &Remote,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Auth, SourceError> {
        let connect_timeout = timeout.as_secs().clamp(1, 300);
        let base_ssh = format!(
            "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout={connect_timeout} \
             -o ServerAliveInterval=10 -o ServerAliveCountMax=3"
        );
        let mut auth = Auth {
            config: vec![
                // Let a stalled transfer end on its own even if its parent git was killed at the timeout.
                ("http.lowSpeedLimit".into(), "1".into()),
                ("http.lowSpeedTime".into(), connect_timeout.to_string()),
            ],
            env: vec![("GIT_SSH_COMMAND".into(), OsString::from(&base_ssh))],
            secrets: vec![],
            _files: None,
        };
        match (credentials, &remote.transport) {
            (None, _) => {}
            (Some(Credentials::Basic { username, password }), Transport::Http { origin }) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                auth.config.push((
                    format!("http.{origin}.extraHeader"),
                    format!("Authorization: Basic {token}"),
                ));
                auth.secrets = vec![password.clone(), token];
            }
            (Some(Credentials::Ssh { identity, known_hosts }), Transport::Ssh) => {
                let tmp = self.tmp_root().await?;
                let dir = tempfile::Builder::new()
                    .prefix("ssh-")
                    .tempdir_in(&tmp)
                    .map_err(|e| SourceError::io("creating a directory for ssh credentials", e))?;
                let identity_file = dir.path().join("identity");
                let known_hosts_file = dir.path().join("known_hosts");
                let mut identity = identity.clone();
                if !identity.ends_with('\n') {
                    identity.push('\n'); // ssh rejects a private key without its final newline
                }
                write_private(&identity_file, identity.as_bytes())?;
                write_private(&known_hosts_file, known_hosts.as_bytes())?;
                let command = format!(
                    "{base_ssh} -o IdentitiesOnly=yes -i {} -o UserKnownHostsFile={}",
                    shell_quote(&identity_file.to_string_lossy()),
                    shell_quote(&known_hosts_file.to_string_lossy()),
                );
                auth.env = vec![("GIT_SSH_COMMAND".into(), OsString::from(command))];
                auth._files = Some(dir);
            }
            (Some(Credentials::Basic { .. }), _) => {
                return Err(SourceError::InvalidCredentials(
                    "username/password credentials need an http(s) spec.repoURL".into(),
                ));
            }
            (Some(Credentials::Ssh { .. }), _) => {
                return Err(SourceError::InvalidCredentials(
                    "identity/known_hosts credentials need an ssh spec.repoURL".into(),
                ));
            }
        }
        Ok(auth)
    }

    /// Runs one hermetic git command. Err only when git could not be run; a failing git is `success: false`.
    async fn git(
        &self,
        invocation: &Invocation,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<GitOutput, SourceError> {
        let mut command = hermetic_command(&self.git, &self.home(), &invocation.config);
        for (name, value) in &invocation.env {
            command.env(name, value);
        }
        command.args(args);
        let mut command = tokio::process::Command::from(command);
        command
            .kill_on_drop(true)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| SourceError::io(format!("running {}", self.git.display()), e))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written concurrently with reading the output, so large inputs and outputs can't deadlock.
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| SourceError::io(format!("waiting for {}", self.git.display()), e))?;
        Ok(GitOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// A git command's environment and command-scope config, beyond the hermetic base.
#[derive(Default, Clone)]
struct Invocation {
    config: Vec<(String, String)>,
    env: Vec<(String, OsString)>,
}

impl Invocation {
    fn in_repo(git_dir: &Path) -> Self {
        Invocation::default().env("GIT_DIR", git_dir)
    }

    fn work_tree(self, dir: &Path) -> Self {
        self.env("GIT_WORK_TREE", dir)
    }

    fn index(self, file: PathBuf) -> Self {
        self.env("GIT_INDEX_FILE", file)
    }

    fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_string(), value.to_string()));
        self
    }
}

struct GitOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

struct Auth {
    config: Vec<(String, String)>,
    env: Vec<(String, OsString)>,
    /// Strings scrubbed from any git output that reaches an error message.
    secrets: Vec<String>,
    _files: Option<tempfile::TempDir>,
}

/// One fetch or push against one mirror and remote.
struct Fetcher<'a> {
    source: &'a GitSource,
    mirror: &'a Path,
    remote: &'a Remote,
    auth: &'a Auth,
}

impl Fetcher<'_> {
    /// Git config naming the remote: its URL travels in the environment, so a token in it stays out of argv.
    fn remote_invocation(&self) -> Invocation {
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
    async fn fetch_refspecs(&self, refspecs: &[String]) -> Result<(), SourceError> {
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

impl GitSource {
    async fn mirror_is_current(&self, mirror: &Path, remote: &Remote) -> bool {
        if !mirror.is_dir() {
            return false;
        }
        let out = self
            .git(&Invocation::in_repo(mirror), &["config", "--get", URL_HASH_KEY], None)
            .await;
        matches!(out, Ok(out) if out.success && out.stdout.trim() == remote.url_hash)
    }

    /// Makes `mirror` a bare repository for `remote`. Returns whether it was (re)created.
    async fn ensure_mirror(&self, mirror: &Path, remote: &Remote) -> Result<bool, SourceError> {
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

/// The base of every git command: no system or user config (HOME points into the cache), no prompts,
/// English messages (classified below), only safe transports, and config passed as command-scope
/// `GIT_CONFIG_*` variables (which, unlike `-c`, never show in the process list).
pub fn hermetic_command(git: &Path, home: &Path, config: &[(String, String)]) -> std::process::Command {
    let mut command = std::process::Command::new(git);
    command.env_clear();
    for name in PASSTHROUGH_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "false")
        .env("SSH_ASKPASS", "false")
        .env("SSH_ASKPASS_REQUIRE", "never")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("LC_ALL", "C");
    let base = [
        // The cache may have been written by another uid (a volume reused across pods); it is ours anyway.
        ("safe.directory", "*"),
        ("credential.helper", ""),
        ("core.hooksPath", "/dev/null"),
        ("init.defaultBranch", "main"),
    ];
    let all: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain(config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    command.env("GIT_CONFIG_COUNT", all.len().to_string());
    for (i, (key, value)) in all.iter().enumerate() {
        command.env(format!("GIT_CONFIG_KEY_{i}"), key);
        command.env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    command
}

/// What the GitRef asks for; the most specific field wins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Commit(String),
    Tag(String),
    Branch(String),
    Head,
}

impl Wanted {
    fn from_ref(git_ref: Option<&GitRef>) -> Result<Wanted, SourceError> {
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let Some(git_ref) = git_ref else {
            return Ok(Wanted::Head);
        };
        if let Some(commit) = nonempty(&git_ref.commit) {
            validate_sha("spec.ref.commit", &commit)?;
            return Ok(Wanted::Commit(commit));
        }
        if let Some(tag) = nonempty(&git_ref.tag) {
            validate_ref_name("spec.ref.tag", &tag)?;
            return Ok(Wanted::Tag(tag));
        }
        if let Some(branch) = nonempty(&git_ref.branch) {
            validate_ref_name("spec.ref.branch", &branch)?;
            return Ok(Wanted::Branch(branch));
        }
        Ok(Wanted::Head)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
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
struct Remote {
    url: String,
    redacted: String,
    url_hash: String,
    transport: Transport,
}

impl Remote {
    fn parse(url: &str) -> Result<Remote, SourceError> {
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

/// Branch and tag names as `git check-ref-format` accepts them, minus anything that could read as an option.
fn validate_ref_name(field: &'static str, name: &str) -> Result<(), SourceError> {
    let invalid = |reason: &str| SourceError::InvalidSpec {
        field,
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') || name.ends_with('.') {
        return Err(invalid("must not start with '-' or '/' or end with '/' or '.'"));
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") || name == "@" {
        return Err(invalid("must not contain '..', '@{' or '//'"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(invalid(
            "must not contain spaces, control characters or any of ~^:?*[\\",
        ));
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(invalid("no component may start with '.' or end with '.lock'"));
    }
    Ok(())
}

fn validate_sha(field: &'static str, sha: &str) -> Result<(), SourceError> {
    if (4..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(SourceError::InvalidSpec {
            field,
            value: sha.to_string(),
            reason: "must be a commit SHA (4 to 64 hex digits)".into(),
        })
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

/// Turns a failed git's stderr into an error variant, with secrets and URL userinfo removed.
fn classify(operation: &'static str, target: &str, stderr: &str, secrets: &[String]) -> SourceError {
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

fn looks_corrupt(stderr: &str) -> bool {
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

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), SourceError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SourceError::io(format!("creating {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| SourceError::io(format!("writing {}", path.display()), e))
}

async fn remove_dir(dir: &Path) -> Result<(), SourceError> {
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

    fn git_ref(branch: Option<&str>, tag: Option<&str>, commit: Option<&str>) -> GitRef {
        GitRef {
            branch: branch.map(String::from),
            tag: tag.map(String::from),
            commit: commit.map(String::from),
        }
    }

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

    #[test]
    fn most_specific_ref_wins() {
        assert_eq!(Wanted::from_ref(None).unwrap(), Wanted::Head);
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(None, None, None))).unwrap(),
            Wanted::Head
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("main"), Some("v1"), Some("abc123")))).unwrap(),
            Wanted::Commit("abc123".into())
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("main"), Some("v1"), None))).unwrap(),
            Wanted::Tag("v1".into())
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("release/1.x"), None, Some("")))).unwrap(),
            Wanted::Branch("release/1.x".into())
        );
    }

    #[test]
    fn rejects_ref_names_git_would_misread() {
        for branch in [
            "--upload-pack=x",
            "a..b",
            "a b",
            "a:b",
            "a~1",
            "x.lock",
            ".hidden",
            "a/",
            "a@{1}",
            "*",
        ] {
            let error = Wanted::from_ref(Some(&git_ref(Some(branch), None, None))).expect_err(branch);
            assert!(error.to_string().starts_with("spec.ref.branch"), "{error}");
        }
        for commit in [
            "xyz",
            "abc",
            "-abcd",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        ] {
            assert!(
                Wanted::from_ref(Some(&git_ref(None, None, Some(commit)))).is_err(),
                "{commit}"
            );
        }
    }

    #[test]
    fn credentials_from_secret_data() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            Credentials::from_secret_data(&data(&[("username", "bob"), ("password", "pw\n")])).unwrap(),
            Credentials::Basic {
                username: "bob".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            Credentials::from_secret_data(&data(&[("token", "ghp_x")])).unwrap(),
            Credentials::Basic {
                username: "git".into(),
                password: "ghp_x".into()
            }
        );
        assert!(matches!(
            Credentials::from_secret_data(&data(&[("identity", "KEY"), ("known_hosts", "h ssh-ed25519 AAA")])).unwrap(),
            Credentials::Ssh { .. }
        ));
        let missing = |pairs: &[(&str, &str)], key: &str| {
            let error = Credentials::from_secret_data(&data(pairs)).unwrap_err().to_string();
            assert!(error.contains(key), "{error} should name {key}");
        };
        missing(&[("identity", "KEY")], "known_hosts");
        missing(&[("username", "bob")], "password");
        missing(&[], "identity");
        missing(&[("password", "")], "password");
        let debug = format!(
            "{:?}",
            Credentials::Basic {
                username: "bob".into(),
                password: "hunter22".into()
            }
        );
        assert!(!debug.contains("hunter22"), "{debug}");
    }

    #[tokio::test]
    async fn ssh_credentials_go_to_private_files_not_the_command_line() {
        let cache = tempfile::tempdir().unwrap();
        let source = GitSource::new(cache.path());
        let remote = Remote::parse("git@github.com:org/repo.git").unwrap();
        let credentials = Credentials::Ssh {
            identity: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key\n-----END OPENSSH PRIVATE KEY-----".into(),
            known_hosts: "github.com ssh-ed25519 AAAA".into(),
        };
        let auth = source
            .auth(&remote, Some(&credentials), Duration::from_secs(30))
            .await
            .unwrap();
        let command = auth
            .env
            .iter()
            .find(|(name, _)| name == "GIT_SSH_COMMAND")
            .map(|(_, value)| value.to_string_lossy().into_owned())
            .unwrap();
        assert!(!command.contains("secret-key"), "{command}");
        for option in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "UserKnownHostsFile=",
        ] {
            assert!(command.contains(option), "{command} lacks {option}");
        }
        let dir = auth._files.as_ref().unwrap().path();
        let identity = dir.join("identity");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&identity).unwrap().ends_with("-----\n"));

        let https = Remote::parse("https://github.com/org/repo.git").unwrap();
        let Err(error) = source.auth(&https, Some(&credentials), Duration::from_secs(30)).await else {
            panic!("ssh credentials accepted for an https URL");
        };
        assert!(matches!(error, SourceError::InvalidCredentials(_)), "{error:?}");
    }

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
    fn mirror_names_are_safe_and_distinct() {
        let a = mirror_dir_name("default/app");
        assert!(a.starts_with("default_app-"), "{a}");
        assert_ne!(a, mirror_dir_name("default_app"));
        assert!(!mirror_dir_name("../../etc").contains('/'));
        assert!(!mirror_dir_name("..").starts_with('.'));
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
