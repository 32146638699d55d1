//! Turns a checked-out revision into objects: plain YAML/JSON files read as they are, or the output of
//! `kubectl kustomize` / `helm template` (shelling out as Argo CD does, so rendering matches what users
//! get on their laptops). Paths from the spec never leave the repository.
//!
//! Plain rendering reads every `*.yaml`, `*.yml` and `*.json` under the path, recursively and in sorted
//! path order, skipping hidden directories (`.git`, `.github`, …). Nothing else is skipped: a
//! `kustomization.yaml` or `values.yaml` in a plain path is read like any other file, so choose the
//! render type that matches the directory. Symlinked directories are not followed; a symlinked file is
//! read only when it resolves inside the repository.
//!
//! Rendering is hermetic: kubectl and helm run with a scrubbed environment (PATH, a fresh HOME and
//! TMPDIR only — no service-account token path, no KUBERNETES_* or proxy variables, no kubeconfig), so a
//! template cannot `lookup` the live cluster or reach it through the controller's identity; every
//! user-supplied name is validated before it reaches a command line, and `--` ends the flags before
//! the positional arguments; kustomize remote bases are refused unless the operator allows them
//! (`--allow-remote-bases`); a renderer's output and a plain path's files are size-limited.
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::api::gitsync::{Render, RenderType};

/// Where `kubectl` and `helm` live, and what rendering may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    /// Let kustomize fetch remote bases (`https://…`, `github.com/…`, `git@…`); off by default: a
    /// revision should render from what the repository holds.
    pub allow_remote_bases: bool,
}

/// The most a renderer may print, and the most a plain path's files may hold, before the render fails.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024 * 1024;
/// Helm's limit on release names (they end up in labels and Secret names).
const MAX_RELEASE_NAME: usize = 53;

/// Where scripts/install-tools.sh puts the tools.
const TOOLS_DIR: &str = "/opt/sluice-tools/bin";
/// Longest stderr kept in an error: the first lines say what went wrong, the rest is noise in a condition.
const STDERR_LIMIT: usize = 2000;

impl Tools {
    /// `$SLUICE_KUBECTL` / `$SLUICE_HELM`, else the first on `$PATH`, else /opt/sluice-tools/bin/<name>.
    pub fn discover() -> Tools {
        Tools {
            kubectl: discover_tool("kubectl", "SLUICE_KUBECTL"),
            helm: discover_tool("helm", "SLUICE_HELM"),
            allow_remote_bases: false,
        }
    }
}

fn discover_tool(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| Path::new(TOOLS_DIR).join(name))
}

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The checked-out repository.
    pub root: &'a Path,
    /// spec.path, relative to the root ("" or "." for the root itself).
    pub path: &'a str,
    pub render: Option<&'a Render>,
    /// Helm release name.
    pub release_name: &'a str,
    /// Helm `--namespace`.
    pub namespace: &'a str,
    /// Longest a kubectl or helm run may take.
    pub timeout: Duration,
}

/// Why a revision could not be rendered. Every variant is something a person must fix in Git or in
/// the GitSync (or, for `Spawn`, in the installation): report it in a Stalled condition.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A path in the spec is absolute, escapes the repository or does not exist.
    #[error("{field}: {message}")]
    InvalidPath { field: String, message: String },
    /// A file (or a renderer's output) is not valid YAML/JSON.
    #[error("{file}: document {document}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Parse {
        /// Relative to the repository root, or `kubectl kustomize` / `helm template` output (with the
        /// chart template when helm names it).
        file: String,
        /// 1-based.
        document: usize,
        line: Option<u64>,
        message: String,
    },
    /// Reading the checkout failed.
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// kubectl or helm could not be started.
    #[error("starting {tool} ({}): {source}", path.display())]
    Spawn {
        tool: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// kubectl or helm failed; `stderr` is its trimmed complaint.
    #[error("{command} failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },
    /// kubectl or helm did not finish in time (it was killed).
    #[error("{command} did not finish within {}s", timeout.as_secs_f64())]
    Timeout { command: String, timeout: Duration },
    /// A name from the spec cannot be passed to a renderer (it must be a DNS-1123 label).
    #[error("{field}: {message}")]
    InvalidName { field: String, message: String },
    /// A kustomization names a remote base and remote bases are not allowed.
    #[error("{file}: {message}")]
    RemoteBase { file: String, message: String },
    /// The rendered output or the plain path's files exceed [`MAX_RENDERED_BYTES`].
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: usize },
}

impl RenderError {
    /// The spec field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            RenderError::InvalidPath { field, .. } | RenderError::InvalidName { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A CamelCase reason for a condition or metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::InvalidPath { .. } => "InvalidPath",
            RenderError::Parse { .. } => "ParseError",
            RenderError::Io { .. } => "ReadError",
            RenderError::Spawn { .. } => "RendererMissing",
            RenderError::Tool { .. } => "RenderFailed",
            RenderError::Timeout { .. } => "RenderTimeout",
            RenderError::InvalidName { .. } => "InvalidName",
            RenderError::RemoteBase { .. } => "RemoteBaseRefused",
            RenderError::TooLarge { .. } => "RenderTooLarge",
        }
    }
}

/// Renders `input` into objects (in document order; `List` kinds flattened, empty documents skipped).
pub async fn render(tools: &Tools, input: &RenderInput<'_>) -> Result<Vec<Value>, RenderError> {
    let root = input.root.canonicalize().map_err(|source| RenderError::Io {
        path: input.root.display().to_string(),
        source,
    })?;
    let dir = resolve_inside(&root, &root, input.path, "spec.path")?;
    let render_type = input.render.and_then(|r| r.type_).unwrap_or_default();
    match render_type {
        RenderType::Plain => render_plain(&root, &dir),
        RenderType::Kustomize => {
            if !tools.allow_remote_bases {
                refuse_remote_bases(&root)?;
            }
            let home = scratch_home()?;
            let mut command = hermetic_command(&tools.kubectl, home.path());
            command.arg("kustomize").arg("--").arg(&dir);
            let output = run("kubectl", &tools.kubectl, command, input.timeout).await?;
            parse_documents(&output, "kubectl kustomize output")
        }
        RenderType::Helm => render_helm(tools, input, &root, &dir).await,
    }
}

async fn render_helm(
    tools: &Tools,
    input: &RenderInput<'_>,
    root: &Path,
    dir: &Path,
) -> Result<Vec<Value>, RenderError> {
    let helm = input.render.and_then(|r| r.helm.as_ref());
    check_release_name(input.release_name)?;
    check_dns_label(input.namespace, 63).map_err(|why| RenderError::InvalidName {
        field: "spec.targetNamespace".into(),
        message: format!("{:?} {why}", input.namespace),
    })?;
    let mut values_files = Vec::new();
    for (i, file) in helm
        .map(|h| h.values_files.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        values_files.push(resolve_inside(
            root,
            dir,
            file,
            &format!("spec.render.helm.valuesFiles[{i}]"),
        )?);
    }
    // Helm's own state (repositories, cache, plugins) lives in a fresh directory: nothing from the
    // controller's home leaks into a render, and concurrent renders do not share a cache.
    let home = scratch_home()?;
    if let Some(values) = helm.and_then(|h| h.values.as_ref()).filter(|v| !v.is_null()) {
        let path = home.path().join("inline-values.json");
        std::fs::write(&path, values.to_string()).map_err(|source| RenderError::Io {
            path: path.display().to_string(),
            source,
        })?;
        values_files.push(path);
    }
    let mut command = hermetic_command(&tools.helm, home.path());
    command
        .arg("template")
        .arg("--namespace")
        .arg(input.namespace)
        // CRDs in crds/ are part of the application; test hooks are not (they would be applied as
        // Pods that run once and stay).
        .arg("--include-crds")
        .arg("--skip-tests");
    for file in &values_files {
        command.arg("-f").arg(file);
    }
    command.arg("--").arg(input.release_name).arg(dir);
    for (variable, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(variable, home.path().join(sub));
    }
    let output = run("helm", &tools.helm, command, input.timeout).await?;
    parse_documents(&output, "helm template output")
}

/// A fresh HOME (and TMPDIR) for one renderer run, removed when dropped.
fn scratch_home() -> Result<tempfile::TempDir, RenderError> {
    tempfile::tempdir().map_err(|source| RenderError::Io {
        path: "a temporary directory for the renderer".into(),
        source,
    })
}

/// `program` with nothing of the controller's environment but PATH: HOME and TMPDIR in `home`, so no
/// in-cluster credentials (KUBERNETES_SERVICE_HOST, a kubeconfig), proxy settings or caches reach it.
fn hermetic_command(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .current_dir(home);
    command
}

/// Helm's release-name rule: a DNS-1123 label of at most 53 characters, so no value can be read as a
/// flag (`--dry-run=server`) or reach a file name.
fn check_release_name(name: &str) -> Result<(), RenderError> {
    check_dns_label(name, MAX_RELEASE_NAME).map_err(|why| RenderError::InvalidName {
        field: "spec.render.helm.releaseName".into(),
        message: format!("{name:?} {why}"),
    })
}

/// Lower-case letters, digits and '-', starting and ending with a letter or digit, at most `max` long.
fn check_dns_label(name: &str, max: usize) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_ends = !name.starts_with('-') && !name.ends_with('-');
    if name.is_empty() || name.len() > max || !valid_chars || !valid_ends {
        return Err(format!(
            "must be a DNS-1123 label of at most {max} characters (lower-case letters, digits and '-', starting \
             and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// The kustomization file names kustomize reads.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Fails when any kustomization in the checkout names a remote base (a URL or a Git shorthand): with
/// remote bases the render would depend on, and fetch from, whatever those hosts serve at the time.
fn refuse_remote_bases(root: &Path) -> Result<(), RenderError> {
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| KUSTOMIZATION_FILES.iter().any(|name| e.file_name() == *name))
    {
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .display()
            .to_string();
        let text = std::fs::read_to_string(entry.path()).map_err(|source| RenderError::Io {
            path: relative.clone(),
            source,
        })?;
        let documents = parse_documents(&text, &relative)?;
        let dir = entry.path().parent().unwrap_or(root);
        for document in &documents {
            if let Some(remote) = remote_reference(document, dir) {
                return Err(RenderError::RemoteBase {
                    file: relative,
                    message: format!(
                        "{remote:?} is a remote base; remote bases are off (the operator can allow them with \
                         --allow-remote-bases)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The first entry of `resources`, `bases` or `components` (of a kustomization in `dir`) that kustomize
/// would fetch from elsewhere.
fn remote_reference(kustomization: &Value, dir: &Path) -> Option<String> {
    ["resources", "bases", "components"]
        .iter()
        .filter_map(|field| kustomization.get(field).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .find(|entry| is_remote(entry, dir))
        .map(str::to_string)
}

/// Kustomize's remote forms: any URL scheme, `git::`, scp-like `user@host:path`, and host shorthands
/// (`github.com/org/repo`: a first segment with a dot, that is not a local path).
fn is_remote(entry: &str, dir: &Path) -> bool {
    let entry = entry.trim();
    if entry.contains("://") || entry.starts_with("git::") || entry.starts_with("git@") {
        return true;
    }
    if let Some((user_host, _)) = entry.split_once(':')
        && user_host.contains('@')
    {
        return true;
    }
    match entry.split_once('/') {
        Some((first, _)) => {
            let host_like = first.contains('.') && !first.starts_with('.');
            host_like && !dir.join(first).exists()
        }
        None => false,
    }
}

/// `relative` (from the spec, relative to `base`) as a path that exists inside `root` after resolving
/// symlinks. `root` must be canonical.
fn resolve_inside(root: &Path, base: &Path, relative: &str, field: &str) -> Result<PathBuf, RenderError> {
    let invalid = |message: String| RenderError::InvalidPath {
        field: field.to_string(),
        message,
    };
    let path = Path::new(relative);
    if path.is_absolute() || relative.starts_with('/') || relative.starts_with('\\') {
        return Err(invalid(format!("{relative:?} must be relative to the repository")));
    }
    // Lexically first, so `../outside` is reported as escaping even when it does not exist.
    let base_depth = base.strip_prefix(root).map(|p| p.components().count()).unwrap_or(0);
    let mut depth = base_depth as isize;
    for component in path.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(invalid(format!("{relative:?} points outside the repository")));
        }
    }
    let joined = base.join(path);
    let resolved = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => invalid(format!("{relative:?} does not exist in the repository")),
        _ => invalid(format!("{relative:?}: {e}")),
    })?;
    if !resolved.starts_with(root) {
        return Err(invalid(format!(
            "{relative:?} resolves (through a symlink) to outside the repository"
        )));
    }
    Ok(resolved)
}

fn render_plain(root: &Path, dir: &Path) -> Result<Vec<Value>, RenderError> {
    let relative = |path: &Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    let is_hidden_dir = |entry: &walkdir::DirEntry| {
        entry.depth() > 0 && entry.file_type().is_dir() && entry.file_name().to_string_lossy().starts_with('.')
    };
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !is_hidden_dir(e))
    {
        let entry = entry.map_err(|e| RenderError::Io {
            path: e.path().map(relative).unwrap_or_else(|| relative(dir)),
            source: e.into(),
        })?;
        let extension = entry.path().extension().and_then(OsStr::to_str);
        if !matches!(extension, Some("yaml" | "yml" | "json")) {
            continue;
        }
        if entry.path_is_symlink() {
            let target = entry.path().canonicalize().map_err(|source| RenderError::Io {
                path: relative(entry.path()),
                source,
            })?;
            if !target.starts_with(root) {
                return Err(RenderError::InvalidPath {
                    field: "spec.path".into(),
                    message: format!("{} is a symlink to outside the repository", relative(entry.path())),
                });
            }
            if !target.is_file() {
                continue;
            }
        } else if !entry.file_type().is_file() {
            continue;
        }
        files.push(entry.into_path());
    }
    files.sort();
    let total: u64 = files
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|m| m.len())
        .sum();
    if total > MAX_RENDERED_BYTES as u64 {
        return Err(RenderError::TooLarge {
            what: format!("the YAML and JSON files under {}", relative(dir)),
            limit: MAX_RENDERED_BYTES,
        });
    }
    let mut objects = Vec::new();
    for file in files {
        let name = relative(&file);
        let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Io {
            path: name.clone(),
            source,
        })?;
        objects.extend(parse_documents(&text, &name)?);
    }
    Ok(objects)
}

/// The objects in a YAML stream (JSON is YAML): empty documents skipped, `List` kinds flattened.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Value>, RenderError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
        RenderError::Parse {
            file: match line.and_then(|l| helm_source(text, l)) {
                Some(template) => format!("{source} ({template})"),
                None => source.to_string(),
            },
            document: line.map_or(1, |l| document_at(text, l)),
            line,
            message: e.without_snippet().to_string().trim().to_string(),
        }
    })?;
    let mut objects = Vec::new();
    for document in documents {
        flatten(document, &mut objects);
    }
    Ok(objects)
}

fn flatten(document: Value, into: &mut Vec<Value>) {
    match document {
        Value::Null => {}
        Value::Object(mut fields)
            if fields
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && fields.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = fields.remove("items") {
                for item in items {
                    flatten(item, into);
                }
            }
        }
        other => into.push(other),
    }
}

/// The 1-based document holding 1-based `line`: one more than the `---` separators before it (a
/// separator on the first content line opens the first document).
fn document_at(text: &str, line: u64) -> usize {
    let mut document = 1;
    let mut seen_content = false;
    for (n, text_line) in text.lines().enumerate() {
        if n as u64 + 1 >= line {
            break;
        }
        if text_line.starts_with("---") {
            if seen_content {
                document += 1;
            }
            seen_content = true;
        } else if !text_line.trim().is_empty() && !text_line.starts_with('#') {
            seen_content = true;
        }
    }
    document
}

/// The chart template helm names in `# Source: …` above `line`.
fn helm_source(text: &str, line: u64) -> Option<String> {
    text.lines()
        .take(line as usize)
        .filter_map(|l| l.strip_prefix("# Source: "))
        .last()
        .map(str::to_string)
}

async fn run(tool: &'static str, path: &Path, mut command: Command, timeout: Duration) -> Result<String, RenderError> {
    let described = {
        let std = command.as_std();
        let args: Vec<String> = std.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        format!("{tool} {}", args.join(" "))
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| RenderError::Spawn {
        tool,
        path: path.to_path_buf(),
        source,
    })?;
    // On timeout the future (and the child with it) is dropped, which kills the process.
    let output = match tokio::time::timeout(timeout, bounded_output(child, tool)).await {
        Ok(Ok(output)) => output?,
        Ok(Err(source)) => {
            return Err(RenderError::Io {
                path: format!("the output of {described}"),
                source,
            });
        }
        Err(_) => {
            return Err(RenderError::Timeout {
                command: described,
                timeout,
            });
        }
    };
    if !output.status.success() {
        return Err(RenderError::Tool {
            command: described,
            status: output.status.to_string(),
            stderr: trim_stderr(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    String::from_utf8(output.stdout).map_err(|e| RenderError::Parse {
        file: format!("{tool} output"),
        document: 1,
        line: None,
        message: e.to_string(),
    })
}

/// The child's exit status, stdout (at most [`MAX_RENDERED_BYTES`]: beyond, the child is killed and the
/// render fails) and stderr (what fits in a few kilobytes: only its start is ever shown).
async fn bounded_output(
    mut child: tokio::process::Child,
    tool: &'static str,
) -> std::io::Result<Result<std::process::Output, RenderError>> {
    use tokio::io::AsyncReadExt;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let out = child.stdout.take().expect("stdout is piped");
    let err = child.stderr.take().expect("stderr is piped");
    let mut limited = out.take(MAX_RENDERED_BYTES as u64 + 1);
    let read_out = limited.read_to_end(&mut stdout);
    let read_err = async {
        let mut err = err;
        let mut buffer = [0u8; 8192];
        // Drain all of stderr (a full pipe would block the child) but keep only the start.
        loop {
            let n = err.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if stderr.len() < 4 * STDERR_LIMIT {
                stderr.extend_from_slice(&buffer[..n]);
            }
        }
    };
    let (read_out, read_err) = tokio::join!(read_out, read_err);
    read_out?;
    read_err?;
    if stdout.len() > MAX_RENDERED_BYTES {
        let _ = child.kill().await;
        return Ok(Err(RenderError::TooLarge {
            what: format!("the output of {tool}"),
            limit: MAX_RENDERED_BYTES,
        }));
    }
    let status = child.wait().await?;
    Ok(Ok(std::process::Output { status, stdout, stderr }))
}

/// stderr without klog's `E1202 01:43:26.394573   21703 run.go:72] ` line headers, at most
/// [`STDERR_LIMIT`] bytes.
fn trim_stderr(stderr: &str) -> String {
    let is_klog_header = |line: &str| {
        let mut chars = line.chars();
        matches!(chars.next(), Some('I' | 'W' | 'E' | 'F')) && chars.take(4).all(|c| c.is_ascii_digit())
    };
    let lines: Vec<&str> = stderr
        .lines()
        .map(|line| match line.split_once("] ") {
            Some((_, rest)) if is_klog_header(line) => rest,
            _ => line,
        })
        .collect();
    let joined = lines.join("\n");
    let trimmed = joined.trim();
    if trimmed.len() <= STDERR_LIMIT {
        return trimmed.to_string();
    }
    let mut end = STDERR_LIMIT;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::gitsync::HelmRender;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn input<'a>(root: &'a Path, path: &'a str, render: Option<&'a Render>) -> RenderInput<'a> {
        RenderInput {
            root,
            path,
            render,
            release_name: "shop",
            namespace: "shop",
            timeout: Duration::from_secs(60),
        }
    }

    fn names(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn tool_available(path: &Path) -> bool {
        let found = path.is_file();
        if !found {
            eprintln!("skipping: {} not installed", path.display());
        }
        found
    }

    #[tokio::test]
    async fn plain_reads_yaml_and_json_recursively_in_path_order() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write(
            root,
            "apps/b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b2\n",
        );
        write(
            root,
            "apps/a/z.yml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a-z}\n",
        );
        write(
            root,
            "apps/c.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c1"}}, {"apiVersion": "v1", "kind": "ConfigMapList", "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}}]}]}"#,
        );
        write(
            root,
            "apps/.hidden/x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hidden}\n",
        );
        write(root, "apps/README.md", "not yaml: [");
        write(
            root,
            "other/o.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        );
        let objects = render(&Tools::discover(), &input(root, "apps", None)).await.unwrap();
        assert_eq!(
            names(&objects),
            [
                "ConfigMap a-z",
                "ConfigMap b",
                "ConfigMap b2",
                "Secret c1",
                "ConfigMap c2"
            ]
        );
        let all = render(&Tools::discover(), &input(root, "", None)).await.unwrap();
        assert_eq!(all.len(), 6);
        let dot = render(&Tools::discover(), &input(root, "./apps/../apps", None))
            .await
            .unwrap();
        assert_eq!(dot.len(), 5);
    }

    #[test]
    fn a_duplicate_key_is_an_error_naming_it_not_a_silent_last_wins() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n";
        let error = parse_documents(text, "app/config.yaml").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("app/config.yaml") && message.contains("name"),
            "{message}"
        );
        assert!(message.to_lowercase().contains("duplicate"), "{message}");
    }

    #[tokio::test]
    async fn parse_errors_name_the_file_document_and_line() {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "apps/ok.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
        );
        write(
            repo.path(),
            "apps/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
        );
        let error = render(&Tools::discover(), &input(repo.path(), "apps", None))
            .await
            .unwrap_err();
        let RenderError::Parse {
            file, document, line, ..
        } = &error
        else {
            panic!("{error}")
        };
        assert_eq!(file, "apps/bad.yaml");
        assert_eq!(*document, 2, "{error}");
        assert!(line.is_some_and(|l| l >= 7), "{error}");
        assert_eq!(error.reason(), "ParseError");
    }

    #[tokio::test]
    async fn paths_stay_inside_the_repository() {
        let outside = tempfile::tempdir().unwrap();
        write(
            outside.path(),
            "secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n",
        );
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write(
            root,
            "apps/a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        );
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        let tools = Tools::discover();
        for (path, expected) in [
            ("/etc", "spec.path: \"/etc\" must be relative"),
            ("../x", "spec.path: \"../x\" points outside"),
            ("apps/../../x", "points outside"),
            ("missing", "spec.path: \"missing\" does not exist"),
            ("escape", "resolves (through a symlink) to outside"),
        ] {
            let error = render(&tools, &input(root, path, None)).await.unwrap_err();
            assert!(error.to_string().contains(expected), "{path}: {error}");
            assert_eq!(error.field(), Some("spec.path"));
        }
        std::os::unix::fs::symlink(outside.path().join("secret.yaml"), root.join("apps/link.yaml")).unwrap();
        let error = render(&tools, &input(root, "apps", None)).await.unwrap_err();
        assert!(
            error.to_string().contains("apps/link.yaml is a symlink to outside"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn helm_values_files_stay_inside_the_repository() {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "chart/Chart.yaml",
            "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        );
        let render_spec = Render {
            type_: Some(RenderType::Helm),
            helm: Some(HelmRender {
                values_files: vec!["values.yaml".into(), "../../etc/passwd".into()],
                ..Default::default()
            }),
        };
        write(repo.path(), "chart/values.yaml", "");
        let error = render(&Tools::discover(), &input(repo.path(), "chart", Some(&render_spec)))
            .await
            .unwrap_err();
        assert_eq!(error.field(), Some("spec.render.helm.valuesFiles[1]"), "{error}");
    }

    #[tokio::test]
    async fn helm_renders_a_local_chart_with_values_files_then_inline_values() {
        let tools = Tools::discover();
        if !tool_available(&tools.helm) {
            return;
        }
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write(root, "chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n");
        write(root, "chart/values.yaml", "replicas: 1\ncolor: red\n");
        write(root, "env/prod.yaml", "replicas: 3\ncolor: blue\n");
        write(
            root,
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n  namespace: {{ .Release.Namespace }}\ndata:\n  replicas: {{ .Values.replicas | quote }}\n  color: {{ .Values.color }}\n",
        );
        write(
            root,
            "chart/templates/tests/t.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations:\n    helm.sh/hook: test\n",
        );
        write(
            root,
            "chart/crds/w.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n",
        );
        let render_spec = Render {
            type_: Some(RenderType::Helm),
            helm: Some(HelmRender {
                values_files: vec!["../env/prod.yaml".into()],
                values: Some(json!({"color": "green"})),
                ..Default::default()
            }),
        };
        let objects = render(&tools, &input(root, "chart", Some(&render_spec))).await.unwrap();
        assert_eq!(
            names(&objects),
            ["CustomResourceDefinition widgets.example.com", "ConfigMap shop-cfg"]
        );
        assert_eq!(objects[1]["data"], json!({"replicas": "3", "color": "green"}));
        assert_eq!(objects[1]["metadata"]["namespace"], "shop");

        write(root, "chart/templates/bad.yaml", "{{ fail \"no\" }}");
        let error = render(&tools, &input(root, "chart", Some(&render_spec)))
            .await
            .unwrap_err();
        assert!(matches!(error, RenderError::Tool { .. }), "{error}");
        assert!(error.to_string().contains("no"), "{error}");
    }

    #[tokio::test]
    async fn kustomize_renders_with_kubectl() {
        let tools = Tools::discover();
        if !tool_available(&tools.kubectl) {
            return;
        }
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write(
            root,
            "base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n",
        );
        write(root, "base/kustomization.yaml", "resources:\n- cm.yaml\n");
        write(
            root,
            "overlay/kustomization.yaml",
            "resources:\n- ../base\nnamePrefix: prod-\n",
        );
        let render_spec = Render {
            type_: Some(RenderType::Kustomize),
            helm: None,
        };
        let objects = render(&tools, &input(root, "overlay", Some(&render_spec)))
            .await
            .unwrap();
        assert_eq!(names(&objects), ["ConfigMap prod-cfg"]);

        write(root, "broken/kustomization.yaml", "resources:\n- missing.yaml\n");
        let error = render(&tools, &input(root, "broken", Some(&render_spec)))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("missing.yaml"), "{error}");
    }

    /// A fake renderer that records its arguments and environment into `dir/calls`, then prints `output`.
    fn recording_tool(dir: &Path, name: &str, output: &str) -> PathBuf {
        let script = dir.join(name);
        let calls = dir.join("calls");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do echo \"arg:$a\"; done >> {calls}\nenv | sed 's/^/env:/' >> {calls}\n{output}\n",
                calls = calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        script
    }

    fn helm_spec(release_name: &str) -> Render {
        Render {
            type_: Some(RenderType::Helm),
            helm: Some(crate::api::gitsync::HelmRender {
                release_name: Some(release_name.into()),
                values_files: vec![],
                values: None,
            }),
        }
    }

    /// A repository holding a chart at `chart/`, and a helm that records whether it ran (in
    /// `tools_dir/calls`).
    fn chart_and_recording_helm() -> (tempfile::TempDir, tempfile::TempDir, Tools) {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "chart/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        );
        let tools_dir = tempfile::tempdir().unwrap();
        let tools = Tools {
            kubectl: PathBuf::from("/nonexistent/kubectl"),
            helm: recording_tool(tools_dir.path(), "helm", "exit 0"),
            allow_remote_bases: false,
        };
        (repo, tools_dir, tools)
    }

    #[tokio::test]
    async fn a_release_name_that_is_not_a_dns_label_never_reaches_helm() {
        let (repo, tools_dir, tools) = chart_and_recording_helm();
        for bad in [
            "--dry-run=server",
            "--post-renderer=/bin/sh",
            "Web",
            "web_1",
            "-web",
            &"a".repeat(54),
            "",
        ] {
            let spec = helm_spec(bad);
            let mut input = input(repo.path(), "chart", Some(&spec));
            input.release_name = bad;
            let error = render(&tools, &input).await.unwrap_err();
            assert!(matches!(error, RenderError::InvalidName { .. }), "{bad}: {error}");
            assert_eq!(error.field(), Some("spec.render.helm.releaseName"));
            assert!(error.to_string().contains("DNS-1123"), "{error}");
        }
        assert!(!tools_dir.path().join("calls").exists(), "helm ran");
    }

    #[tokio::test]
    async fn a_target_namespace_that_is_not_a_dns_label_never_reaches_helm() {
        let (repo, tools_dir, tools) = chart_and_recording_helm();
        let spec = helm_spec("shop");
        for bad in ["--kube-context=prod", "Shop", "shop.prod", "-shop", &"a".repeat(64), ""] {
            let mut input = input(repo.path(), "chart", Some(&spec));
            input.namespace = bad;
            let error = render(&tools, &input).await.unwrap_err();
            assert!(matches!(error, RenderError::InvalidName { .. }), "{bad}: {error}");
            assert_eq!(error.field(), Some("spec.targetNamespace"));
        }
        assert!(!tools_dir.path().join("calls").exists(), "helm ran");
    }

    #[tokio::test]
    async fn renderers_run_with_a_scrubbed_environment_and_positional_arguments_after_dashes() {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "chart/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        );
        write(repo.path(), "kust/kustomization.yaml", "resources: []\n");
        let tools_dir = tempfile::tempdir().unwrap();
        let tools = Tools {
            kubectl: recording_tool(tools_dir.path(), "kubectl", "echo '{}'"),
            helm: recording_tool(tools_dir.path(), "helm", "echo '{}'"),
            allow_remote_bases: false,
        };
        let spec = helm_spec("web");
        render(&tools, &input(repo.path(), "chart", Some(&spec))).await.unwrap();
        let kustomize = Render {
            type_: Some(RenderType::Kustomize),
            helm: None,
        };
        render(&tools, &input(repo.path(), "kust", Some(&kustomize)))
            .await
            .unwrap();
        let calls = std::fs::read_to_string(tools_dir.path().join("calls")).unwrap();
        let variables: std::collections::BTreeSet<&str> = calls
            .lines()
            .filter_map(|l| l.strip_prefix("env:"))
            .filter_map(|l| l.split_once('=').map(|(name, _)| name))
            .collect();
        // What sh itself adds (PWD, SHLVL, _) aside, only what the renderer was given.
        let given: std::collections::BTreeSet<&str> = variables
            .into_iter()
            .filter(|v| !["PWD", "SHLVL", "_", "OLDPWD"].contains(v))
            .collect();
        let allowed = [
            "PATH",
            "HOME",
            "TMPDIR",
            "KUBECONFIG",
            "HELM_CACHE_HOME",
            "HELM_CONFIG_HOME",
            "HELM_DATA_HOME",
        ];
        assert!(given.iter().all(|v| allowed.contains(v)), "{given:?}");
        assert!(!calls.contains("KUBERNETES_"), "{calls}");
        let args: Vec<&str> = calls.lines().filter_map(|l| l.strip_prefix("arg:")).collect();
        let dashes = args.iter().position(|a| *a == "--").expect("helm gets --");
        assert_eq!(args[dashes + 1], "shop", "{args:?}");
        assert!(args[dashes + 2].ends_with("/chart"), "{args:?}");
        let kustomize_at = args
            .iter()
            .position(|a| *a == "kustomize")
            .expect("kubectl kustomize ran");
        assert_eq!(args[kustomize_at + 1], "--", "{args:?}");
    }

    #[test]
    fn remote_bases_are_recognised_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("base.v2")).unwrap();
        for remote in [
            "https://github.com/org/repo//deploy?ref=v1",
            "github.com/org/repo//deploy?ref=v1",
            "git::https://example.com/repo.git",
            "git@github.com:org/repo.git",
            "ssh://git@example.com/repo.git",
            "deploy@example.com:repo",
            "file:///etc/sluice",
        ] {
            assert!(is_remote(remote, dir.path()), "{remote}");
        }
        for local in [
            "../base",
            "base",
            "./overlays/prod",
            "base.v2/x",
            "deployment.yaml",
            ".hidden/x",
        ] {
            assert!(!is_remote(local, dir.path()), "{local}");
        }
    }

    #[tokio::test]
    async fn kustomize_remote_bases_are_refused_unless_allowed() {
        let repo = tempfile::tempdir().unwrap();
        write(
            repo.path(),
            "base/kustomization.yaml",
            "resources:\n- github.com/org/repo//deploy?ref=v1\n",
        );
        write(repo.path(), "prod/kustomization.yaml", "resources:\n- ../base\n");
        let tools_dir = tempfile::tempdir().unwrap();
        let mut tools = Tools {
            kubectl: recording_tool(tools_dir.path(), "kubectl", "echo '{}'"),
            helm: PathBuf::from("/nonexistent/helm"),
            allow_remote_bases: false,
        };
        let kustomize = Render {
            type_: Some(RenderType::Kustomize),
            helm: None,
        };
        let error = render(&tools, &input(repo.path(), "prod", Some(&kustomize)))
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "RemoteBaseRefused");
        assert!(error.to_string().contains("base/kustomization.yaml"), "{error}");
        assert!(error.to_string().contains("--allow-remote-bases"), "{error}");
        assert!(!tools_dir.path().join("calls").exists(), "kubectl ran");
        tools.allow_remote_bases = true;
        render(&tools, &input(repo.path(), "prod", Some(&kustomize)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_renderer_printing_too_much_fails_the_render() {
        let repo = tempfile::tempdir().unwrap();
        write(repo.path(), "kust/kustomization.yaml", "resources: []\n");
        let tools_dir = tempfile::tempdir().unwrap();
        let tools = Tools {
            kubectl: recording_tool(
                tools_dir.path(),
                "kubectl",
                &format!("head -c {} /dev/zero", MAX_RENDERED_BYTES + 1),
            ),
            helm: PathBuf::from("/nonexistent/helm"),
            allow_remote_bases: false,
        };
        let kustomize = Render {
            type_: Some(RenderType::Kustomize),
            helm: None,
        };
        let error = render(&tools, &input(repo.path(), "kust", Some(&kustomize)))
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "RenderTooLarge", "{error}");
    }

    #[tokio::test]
    async fn a_renderer_that_hangs_is_killed_at_the_timeout() {
        let repo = tempfile::tempdir().unwrap();
        let script = repo.path().join("slow-kubectl");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let tools = Tools {
            kubectl: script,
            helm: PathBuf::from("/nonexistent/helm"),
            allow_remote_bases: false,
        };
        let render_spec = Render {
            type_: Some(RenderType::Kustomize),
            helm: None,
        };
        let mut input = input(repo.path(), "", Some(&render_spec));
        input.timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let error = render(&tools, &input).await.unwrap_err();
        assert!(matches!(error, RenderError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let helm = Render {
            type_: Some(RenderType::Helm),
            helm: None,
        };
        let input = RenderInput {
            render: Some(&helm),
            ..input
        };
        let error = render(&tools, &input).await.unwrap_err();
        assert_eq!(error.reason(), "RendererMissing", "{error}");
    }

    #[test]
    fn stderr_loses_klog_headers_and_is_bounded() {
        let stderr = "E1202 01:43:26.394573   21703 run.go:72] \"command failed\" err=\"boom\"\nplain line\n";
        assert_eq!(trim_stderr(stderr), "\"command failed\" err=\"boom\"\nplain line");
        assert!(trim_stderr(&"é".repeat(5000)).len() <= STDERR_LIMIT + "…".len());
    }

    #[test]
    fn documents_are_counted_from_separators() {
        let text = "---\na: 1\n---\nb: 2\n---\nc: [\n";
        assert_eq!(document_at(text, 2), 1);
        assert_eq!(document_at(text, 4), 2);
        assert_eq!(document_at(text, 6), 3);
        assert_eq!(
            helm_source(
                "# Source: c/templates/a.yaml\nx: 1\n# Source: c/templates/b.yaml\ny: [\n",
                4
            )
            .as_deref(),
            Some("c/templates/b.yaml")
        );
    }
}
