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

/// An in-process Sluice controller (Rollout + AnalysisRun) that can be stopped and started again
/// (a "restart"), talking to the simulator over HTTP like the real process.
pub struct RunningController {
    running: sluice::controller::Running,
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
        gitsync: sluice::controller::gitsync::GitSyncConfig,
    ) -> Self {
        let config = sluice::controller::ControllerConfig {
            namespace: None,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            prometheus_address,
            analysis_address_allowlist: vec![],
            gitsync,
        };
        let running = sluice::controller::start(sim.client().expect("client"), config, Default::default())
            .await
            .expect("controller starts");
        RunningController {
            metrics: running.metrics.clone(),
            running,
        }
    }

    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(10)).await;
    }

    /// Where the GitSync webhook listens, when started with one.
    pub fn webhook_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.webhook_addr
    }
}
