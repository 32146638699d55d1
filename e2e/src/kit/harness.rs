//! Harness helpers of the tests: an in-process simulator, the real kubectl pointed at it, a controller
//! that can be stopped and started again, and waiting for a condition.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_sim::{SimConfig, Simulator};

/// The kubectl 1.35 binary `.ci/run` installs: `SLUICE_KUBECTL`, else `/opt/sluice-tools/bin/kubectl`,
/// else `kubectl` on PATH.
pub fn kubectl_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_KUBECTL") {
        return PathBuf::from(path);
    }
    let installed = Path::new("/opt/sluice-tools/bin/kubectl");
    if installed.exists() {
        return installed.to_path_buf();
    }
    PathBuf::from("kubectl")
}

pub async fn start_sim() -> Simulator {
    start_sim_with(SimConfig {
        pod_ready_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
}

pub async fn start_sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// Runs kubectl against a simulator with its own HOME (kubectl caches discovery there).
pub struct Kubectl {
    pub dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(sim: &Simulator) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).expect("kubeconfig written");
        Kubectl { dir, kubeconfig }
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("fixture written");
        path
    }

    /// kubectl runs blocking; tests call this from `spawn_blocking` so the in-process simulator keeps serving.
    pub async fn run(&self, args: &[&str]) -> Output {
        let binary = kubectl_binary();
        let home = self.dir.path().to_path_buf();
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let output = Command::new(&binary)
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .arg("--request-timeout=20s")
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "running {}: {e} (install kubectl 1.35 with .ci/run or set SLUICE_KUBECTL)",
                        binary.display()
                    )
                });
            Output {
                ok: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
        .await
        .expect("kubectl task")
    }

    /// Runs kubectl and fails the test with its output when it fails.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub use super::prometheus::Prometheus;

/// The simulator's request log (`GET /sim/requests`): one JSON object per request, oldest first.
pub async fn request_log(sim: &Simulator) -> Vec<serde_json::Value> {
    let log: serde_json::Value = reqwest::get(format!("{}/sim/requests", sim.url()))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("the request log is JSON");
    log["requests"].as_array().cloned().unwrap_or_default()
}

/// The requests the simulator refused to the controller's ServiceAccount (acting as itself: what it
/// does as an impersonated GitSync ServiceAccount is that account's business), as
/// "verb group/resource[/subresource] namespace/name[ as IMPERSONATED] (code)", each once with how often
/// (a refused impersonation is the controller's own call). Panics when the controller made no
/// request as its ServiceAccount at all.
pub async fn denied_to_controller(sim_url: &str) -> Vec<String> {
    let log: serde_json::Value = reqwest::get(format!("{sim_url}/sim/requests"))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("the request log is JSON");
    let (namespace, name) = CONTROLLER_SERVICE_ACCOUNT;
    let controller = format!("system:serviceaccount:{namespace}:{name}");
    let text = |r: &serde_json::Value, key: &str| r[key].as_str().unwrap_or_default().to_string();
    let requests = log["requests"].as_array().cloned().unwrap_or_default();
    assert!(
        requests.iter().any(|r| r["user"] == controller.as_str()),
        "no request as {controller}: the controller does not run as deploy/'s ServiceAccount"
    );
    requests
        .iter()
        .filter(|r| r["user"] == controller.as_str() && r["decision"] == "deny")
        .map(|r| {
            let mut resource = format!("{}/{}", text(r, "group"), text(r, "resource"));
            if !text(r, "subresource").is_empty() {
                resource = format!("{resource}/{}", text(r, "subresource"));
            }
            let acting_as = match text(r, "impersonateUser") {
                none if none.is_empty() => String::new(),
                account => format!(" as {account}"),
            };
            format!(
                "{} {resource} {}/{}{acting_as} ({})",
                text(r, "verb"),
                text(r, "namespace"),
                text(r, "name"),
                r["code"]
            )
        })
        .fold(
            std::collections::BTreeMap::<String, usize>::new(),
            |mut counts, call| {
                *counts.entry(call).or_default() += 1;
                counts
            },
        )
        .into_iter()
        .map(|(call, count)| format!("{call} ×{count}"))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Installs Sluice's CRDs into a simulator.
pub fn install_crds(sim: &Simulator) {
    crate::kit::install_sluice_crds(sim).expect("CRDs accepted");
}

/// The controller's ServiceAccount in deploy/: `system:serviceaccount:sluice-system:sluice-controller`.
pub const CONTROLLER_SERVICE_ACCOUNT: (&str, &str) = ("sluice-system", "sluice-controller");

/// deploy/'s RBAC as installed: the Namespace, the ServiceAccount, the Roles, ClusterRoles and their
/// bindings of `namespace.yaml` and `rbac.yaml`, namespaced by the kustomization's `namespace` as
/// `kubectl kustomize deploy/` does (app/tests/deploy.rs checks that rendering).
pub fn deploy_rbac_objects() -> anyhow::Result<Vec<serde_json::Value>> {
    let kustomization: serde_json::Value = serde_saphyr::from_str(include_str!("../../../deploy/kustomization.yaml"))?;
    let namespace = kustomization["namespace"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("deploy/kustomization.yaml sets no namespace"))?;
    let mut objects = Vec::new();
    for file in [
        include_str!("../../../deploy/namespace.yaml"),
        include_str!("../../../deploy/rbac.yaml"),
    ] {
        for mut object in serde_saphyr::from_multiple::<serde_json::Value>(file)? {
            match object["kind"].as_str() {
                Some("Namespace" | "ClusterRole" | "ClusterRoleBinding") => {}
                Some("ServiceAccount" | "Role" | "RoleBinding") => {
                    object["metadata"]["namespace"] = namespace.into();
                }
                _ => continue,
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Installs deploy/'s RBAC into the simulator (as its administrator; what is there already stays) and
/// returns a client configuration that authenticates as the controller's ServiceAccount with a token
/// from the TokenRequest API, as a pod's projected token does. Every call made with it is authorized
/// by deploy/'s rules, and a GitSync's impersonation (`Impersonate-User` added to this config) needs the
/// controller's own `impersonate` grant, as in a cluster.
pub async fn controller_kube_config(sim: &Simulator) -> anyhow::Result<kube::Config> {
    let token = controller_token(sim).await?;
    let mut config = sim.kube_config()?;
    config.auth_info.token = Some(token.into());
    Ok(config)
}

/// [`controller_kube_config`] as a kubeconfig file's text, for the `sluice` binary.
pub async fn controller_kubeconfig(sim: &Simulator) -> anyhow::Result<String> {
    let token = controller_token(sim).await?;
    Ok(sim.kubeconfig("default").replace(sim.admin_token(), &token))
}

/// deploy/tenant/'s objects for one namespace, as `kubectl kustomize` renders an overlay that sets
/// `namespace:` (what the README tells operators to apply; app/tests/deploy.rs checks the two agree):
/// every object lands in the namespace, and so does a ServiceAccount subject that names none.
pub fn tenant_objects(namespace: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut objects = Vec::new();
    for file in [
        include_str!("../../../deploy/tenant/deployer.yaml"),
        include_str!("../../../deploy/tenant/controller.yaml"),
    ] {
        for mut object in serde_saphyr::from_multiple::<serde_json::Value>(file)? {
            object["metadata"]["namespace"] = namespace.into();
            object["metadata"]["labels"]["app.kubernetes.io/part-of"] = "sluice".into();
            if let Some(subjects) = object.get_mut("subjects").and_then(|s| s.as_array_mut()) {
                for subject in subjects.iter_mut().filter(|s| s.get("namespace").is_none()) {
                    subject["namespace"] = namespace.into();
                }
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Onboards a namespace the way the README's Security model tells operators to: its Namespace (when
/// missing) and deploy/tenant/ — the ServiceAccount `deployer`, and the controller's Role there
/// (impersonate `deployer`, read Secrets).
pub fn onboard_tenant(sim: &Simulator, namespace: &str) -> anyhow::Result<()> {
    let namespace_object =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    install_objects(sim, std::iter::once(namespace_object).chain(tenant_objects(namespace)?))
}

/// Creates each object as the simulator's administrator, leaving one that exists already alone.
fn install_objects(sim: &Simulator, objects: impl IntoIterator<Item = serde_json::Value>) -> anyhow::Result<()> {
    let options = sluice_sim::api::WriteOptions {
        field_manager: "kubectl".into(),
        ..Default::default()
    };
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let (group, plural) = match kind.as_str() {
            "Namespace" => ("", "namespaces"),
            "ServiceAccount" => ("", "serviceaccounts"),
            "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles"),
            "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings"),
            "Role" => ("rbac.authorization.k8s.io", "roles"),
            "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings"),
            other => anyhow::bail!("RBAC install: unexpected kind {other}"),
        };
        let resource = sim
            .api
            .resource(group, plural)
            .ok_or_else(|| anyhow::anyhow!("the simulator serves no {plural}"))?;
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if sim.api.get(&resource, &namespace, &name).is_ok() {
            continue;
        }
        sim.api
            .create(&resource, &namespace, object, &options)
            .map_err(|e| anyhow::anyhow!("installing {kind} {namespace}/{name}: {e}"))?;
    }
    Ok(())
}

/// Installs deploy/'s RBAC (see [`controller_kube_config`]) and returns a token of the controller's
/// ServiceAccount from the TokenRequest API.
pub async fn controller_token(sim: &Simulator) -> anyhow::Result<String> {
    install_objects(sim, deploy_rbac_objects()?)?;
    let (namespace, name) = CONTROLLER_SERVICE_ACCOUNT;
    let answer: serde_json::Value = sim
        .http_client()
        .post(format!(
            "{}/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            sim.url()
        ))
        .json(&serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 86400},
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = answer["status"]["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest answer has no token: {answer}"))?;
    Ok(token.to_string())
}

/// An in-process Sluice controller (Rollout + AnalysisRun) that can be stopped and started again
/// (a "restart"), talking to the simulator over HTTP like the real process, as deploy/'s
/// ServiceAccount ([`controller_kube_config`]).
pub struct RunningController {
    running: sluice::controller::Running,
    sim_url: String,
    pub metrics: std::sync::Arc<sluice::controller::metrics::Metrics>,
}

impl RunningController {
    pub async fn start(sim: &Simulator, prometheus_address: Option<String>) -> Self {
        Self::start_with(sim, prometheus_address, Default::default()).await
    }

    /// Starts with GitSync settings (a Git cache dir, a webhook listener).
    pub async fn start_with(
        sim: &Simulator,
        prometheus_address: Option<String>,
        mut gitsync: sluice::controller::gitsync::GitSyncConfig,
    ) -> Self {
        let kube_config = controller_kube_config(sim)
            .await
            .expect("deploy/'s RBAC installs and the controller's token is issued");
        // GitSync impersonates a GitSync's ServiceAccount from the controller's own identity.
        gitsync.kube_config = Some(kube_config.clone());
        let client = kube::Client::try_from(kube_config).expect("client");
        let config = sluice::controller::ControllerConfig {
            namespace: None,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            prometheus_address,
            analysis_address_allowlist: vec![],
            notifications_configmap: sluice::controller::DEFAULT_NOTIFICATIONS_CONFIGMAP.into(),
            gitsync,
        };
        let running = sluice::controller::start(client, config, Default::default())
            .await
            .expect("controller starts");
        RunningController {
            sim_url: sim.url(),
            metrics: running.metrics.clone(),
            running,
        }
    }

    /// Stops the controller; fails when the simulator refused it a call (deploy/'s RBAC lacks a
    /// grant, or the controller made a call it should not).
    pub async fn stop(self) {
        self.stop_expecting_denied(|_| false).await;
    }

    /// [`RunningController::stop`] for a test that provokes refusals: every refused call must be one
    /// `expected` accepts (see [`denied_to_controller`] for the text it is given).
    pub async fn stop_expecting_denied(self, expected: impl Fn(&str) -> bool) {
        self.running.stop(Duration::from_secs(10)).await;
        let denied = denied_to_controller(&self.sim_url).await;
        let unexpected: Vec<&String> = denied.iter().filter(|call| !expected(call)).collect();
        assert!(
            unexpected.is_empty(),
            "calls deploy/'s RBAC refused the controller: {unexpected:#?}"
        );
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.running.metrics_addr
    }

    /// How many objects each per-object memory of the controller holds, by what it is.
    pub fn per_object_sizes(&self) -> Vec<(&'static str, usize)> {
        self.running.per_object_state.sizes()
    }

    /// Where the GitSync webhook listens, when started with one.
    pub fn webhook_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.webhook_addr
    }
}
