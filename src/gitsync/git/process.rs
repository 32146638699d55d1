//! The hermetic git runner: every git process starts from a cleared environment with no user or
//! system config, no prompts and only safe transports, and gets its config through the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::remote::ALLOWED_PROTOCOLS;
use super::{GitSource, SourceError};

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

/// A git command's environment and command-scope config, beyond the hermetic base.
#[derive(Default, Clone)]
pub(super) struct Invocation {
    pub(super) config: Vec<(String, String)>,
    pub(super) env: Vec<(String, OsString)>,
}

impl Invocation {
    pub(super) fn in_repo(git_dir: &Path) -> Self {
        Invocation::default().env("GIT_DIR", git_dir)
    }

    pub(super) fn work_tree(self, dir: &Path) -> Self {
        self.env("GIT_WORK_TREE", dir)
    }

    pub(super) fn index(self, file: PathBuf) -> Self {
        self.env("GIT_INDEX_FILE", file)
    }

    pub(super) fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub(super) fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_string(), value.to_string()));
        self
    }
}

/// What a finished git printed, and whether it exited successfully.
pub(super) struct GitOutput {
    pub(super) success: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl GitSource {
    fn home(&self) -> PathBuf {
        self.cache_dir.join(".home")
    }

    /// Runs one hermetic git command. Err only when git could not be run; a failing git is `success: false`.
    pub(super) async fn git(
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
