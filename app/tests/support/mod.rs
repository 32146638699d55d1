//! What the tests of replicated `sluice controller --leader-elect` processes share: a simulator they
//! reach as deploy/'s ServiceAccount, the replicas as child processes, and telling writes apart in the
//! request log.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sluice_e2e::kit as common;
use sluice_sim::Simulator;

/// Where the replicas keep their Leases (their POD_NAMESPACE).
pub const LEASE_NAMESPACE: &str = "sluice-system";

/// A simulator with Sluice's CRDs, the Lease namespace and a kubeconfig of deploy/'s ServiceAccount,
/// so every call of the replicas (the Lease calls included) is authorized by deploy/'s RBAC.
pub struct ReplicaCluster {
    pub sim: Simulator,
    /// The simulator's admin.
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ReplicaCluster {
    /// Creates the Lease namespace and `namespaces` too.
    pub async fn start(namespaces: &[String]) -> ReplicaCluster {
        let sim = common::start_sim().await;
        common::install_crds(&sim);
        let client = sim.client().unwrap();
        let namespace_api: Api<Namespace> = Api::all(client.clone());
        for name in std::iter::once(LEASE_NAMESPACE).chain(namespaces.iter().map(String::as_str)) {
            let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            namespace_api.create(&PostParams::default(), &namespace).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, common::controller_kubeconfig(&sim).await.unwrap()).unwrap();
        ReplicaCluster {
            sim,
            client,
            kubeconfig,
            _dir: dir,
        }
    }
}

/// A `sluice controller --leader-elect` process, killed when dropped.
pub struct Replica {
    pub pod_name: &'static str,
    pub child: Child,
    /// Of its /metrics, /healthz and /readyz.
    pub port: u16,
}

impl Replica {
    /// `sluice controller --leader-elect --metrics-addr 127.0.0.1:<free port> <args…>` as pod `pod_name`
    /// of the Lease namespace, logging at info to `stderr`.
    pub fn spawn(kubeconfig: &Path, pod_name: &'static str, args: &[&str], stderr: Stdio) -> Replica {
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "controller",
                "--leader-elect",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("POD_NAMESPACE", LEASE_NAMESPACE)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("sluice controller starts");
        Replica { pod_name, child, port }
    }

    /// What its user agent contains: the identity is the pod name and a random suffix.
    pub fn user_agent_mark(&self) -> String {
        format!("({}_", self.pod_name)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request of the simulator's log that is not a read.
pub fn is_write(request: &Value) -> bool {
    !matches!(request["verb"].as_str(), Some("get" | "list" | "watch"))
}
