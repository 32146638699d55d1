//! Git credentials: read from a Secret, and handed to git only through config and environment (a
//! Basic header scoped to the origin, or an ssh command with private key files), never on argv.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;

use super::remote::{Remote, Transport};
use super::{GitSource, SourceError};

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

/// Credentials ready for one git call: command-scope config and environment.
pub(super) struct Auth {
    pub(super) config: Vec<(String, String)>,
    pub(super) env: Vec<(String, OsString)>,
    /// Strings scrubbed from any git output that reaches an error message.
    pub(super) secrets: Vec<String>,
    _files: Option<tempfile::TempDir>,
}

impl GitSource {
    /// Git config and environment carrying the credentials, never argv: a Basic header scoped to the
    /// repository's origin, or an ssh command using temporary 0600 key and known_hosts files.
    pub(super) async fn auth(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let source = GitSource::new(cache.path()).allow_file_repos(true);
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
}
