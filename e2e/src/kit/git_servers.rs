//! Real Git servers on loopback for GitSync tests: `git daemon` (git://, anonymous push enabled) and
//! `git http-backend` behind a small CGI adapter with Basic auth (smart HTTP, fetch and push).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::{eventually, free_port};

/// A git command with no user or system config.
fn git_command(home: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C");
    command
}

async fn wait_for_port(port: u16, what: &str) {
    eventually(Duration::from_secs(10), what, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// `git daemon` serving every repository under `root` at `git://127.0.0.1:<port>/<name>`. Killed on drop.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
    _home: tempfile::TempDir,
}

impl GitDaemon {
    pub async fn start(root: &Path) -> GitDaemon {
        let home = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = git_command(home.path())
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
            ])
            .arg(format!("--base-path={}", root.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon runs");
        let daemon = GitDaemon {
            child,
            port,
            _home: home,
        };
        wait_for_port(port, "git daemon accepting").await;
        daemon
    }

    /// URL of the repository `root/<repo_name>`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("git://127.0.0.1:{}/{repo_name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git http-backend` (smart HTTP, push enabled) for the repositories under `root`, behind Basic auth.
/// Stops when dropped.
pub struct GitHttpServer {
    pub address: String,
    task: tokio::task::JoinHandle<()>,
    _home: tempfile::TempDir,
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    home: PathBuf,
    expected_authorization: String,
    username: String,
}

impl GitHttpServer {
    pub async fn start(root: &Path, username: &str, password: &str) -> GitHttpServer {
        let home = tempfile::tempdir().expect("temp dir");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let state = HttpState {
            root: root.to_path_buf(),
            home: home.path().to_path_buf(),
            expected_authorization: format!("Basic {token}"),
            username: username.to_string(),
        };
        let app = axum::Router::new().fallback(serve_cgi).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHttpServer {
            address,
            task,
            _home: home,
        }
    }

    /// URL of the repository `root/<repo_name>`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("{}/{repo_name}", self.address)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text_response(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response
}

/// The CGI adapter: authorise, run `git http-backend` with the request as CGI variables and body as stdin,
/// and turn its CGI output (headers, blank line, body) into the response.
async fn serve_cgi(State(state): State<HttpState>, request: Request) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == state.expected_authorization);
    if !authorized {
        let mut response = text_response(StatusCode::UNAUTHORIZED, "authentication required\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"git\""),
        );
        return response;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let (content_type, content_encoding, git_protocol) = {
        let header_text = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            header_text("content-type"),
            header_text("content-encoding"),
            header_text("git-protocol"),
        )
    };
    let body = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut command = git_command(&state.home);
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", &state.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", content_encoding)
        .env("GIT_PROTOCOL", git_protocol)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match tokio::process::Command::from(command).kill_on_drop(true).spawn() {
        Ok(child) => child,
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
    }
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    cgi_response(&output.stdout)
        .unwrap_or_else(|| text_response(StatusCode::BAD_GATEWAY, &String::from_utf8_lossy(&output.stderr)))
}

fn cgi_response(output: &[u8]) -> Option<Response> {
    let (head_len, separator_len) = find(output, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(output, b"\n\n").map(|i| (i, 2)))?;
    let head = std::str::from_utf8(&output[..head_len]).ok()?;
    let mut response = Response::new(Body::from(output[head_len + separator_len..].to_vec()));
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
        } else {
            let name = header::HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            response.headers_mut().append(name, HeaderValue::from_str(value).ok()?);
        }
    }
    Some(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
