//! Turns a checked-out revision into objects: plain YAML/JSON files read as they are, or the output of
//! `kubectl kustomize` / `helm template` (shelling out as Argo CD does, so rendering matches what users
//! get on their laptops). Paths from the spec never leave the repository.
//!
//! Plain rendering reads every `*.yaml`, `*.yml` and `*.json` under the path, recursively and in sorted
//! path order, skipping hidden directories (`.git`, `.github`, …). Nothing else is skipped: a
//! `kustomization.yaml` or `values.yaml` in a plain path is read like any other file, so choose the
//! render type that matches the directory. Symlinked directories are not followed; a symlinked file is
//! read only when it resolves inside the repository.
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::api::gitsync::{Render, RenderType};

/// Where `kubectl` and `helm` live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

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
}

impl RenderError {
    /// The spec field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            RenderError::InvalidPath { field, .. } => Some(field),
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
            let mut command = Command::new(&tools.kubectl);
            command.arg("kustomize").arg(&dir);
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
    let home = tempfile::tempdir().map_err(|source| RenderError::Io {
        path: "a temporary directory for helm".into(),
        source,
    })?;
    if let Some(values) = helm.and_then(|h| h.values.as_ref()).filter(|v| !v.is_null()) {
        let path = home.path().join("inline-values.json");
        std::fs::write(&path, values.to_string()).map_err(|source| RenderError::Io {
            path: path.display().to_string(),
            source,
        })?;
        values_files.push(path);
    }
    let mut command = Command::new(&tools.helm);
    command
        .arg("template")
        .arg(input.release_name)
        .arg(dir)
        .arg("--namespace")
        .arg(input.namespace)
        // CRDs in crds/ are part of the application; test hooks are not (they would be applied as
        // Pods that run once and stay).
        .arg("--include-crds")
        .arg("--skip-tests");
    for file in &values_files {
        command.arg("-f").arg(file);
    }
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
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
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

    #[tokio::test]
    async fn a_renderer_that_hangs_is_killed_at_the_timeout() {
        let repo = tempfile::tempdir().unwrap();
        let script = repo.path().join("slow-kubectl");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let tools = Tools {
            kubectl: script,
            helm: PathBuf::from("/nonexistent/helm"),
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
