//! A `sluice controller` process whose controller task ends (here: panics outside a reconcile, injected
//! with the `faults.sluice.dev/panic: controller` annotation) exits non-zero naming it, so Kubernetes
//! restarts it; under leader election it releases the Lease on the way out, so a standby takes over.
use sluice_e2e::kit as common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{eventually, free_port, install_crds, start_sim};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice::api::keys::FAULT_PANIC_ANNOTATION;
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice::controller::faults::PANIC_IN_CONTROLLER;

const LEASE_NAMESPACE: &str = "sluice-system";
const LONG: Duration = Duration::from_secs(40);

struct Controller {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Controller {
    async fn start(sim: &sluice_sim::Simulator, extra_args: &[&str]) -> Controller {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, common::controller_kubeconfig(sim).await.unwrap()).unwrap();
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["controller", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra_args)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", "sluice-a")
            .env("POD_NAMESPACE", LEASE_NAMESPACE)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            // A file, not a pipe: nobody reads the log while the process runs.
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sluice controller starts");
        Controller {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    async fn readyz(&self) -> Option<()> {
        let response = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port))
            .await
            .ok()?;
        response.status().is_success().then_some(())
    }

    /// Waits for the process to exit: its status and what it logged.
    async fn exited(&mut self) -> (ExitStatus, String) {
        let status = eventually(LONG, "the controller process to exit", || {
            std::future::ready(self.child.try_wait().unwrap())
        })
        .await;
        (status, std::fs::read_to_string(&self.log).unwrap())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Rollout whose reconcile panics in the controller's task, outside the isolation of reconciles.
async fn create_fatal_rollout(sim: &sluice_sim::Simulator) {
    let mut rollout = Rollout::example("fatal", 1, vec![CanaryStep::set_weight(50)]);
    rollout.metadata.annotations = Some([(FAULT_PANIC_ANNOTATION.to_string(), PANIC_IN_CONTROLLER.to_string())].into());
    let rollouts: Api<Rollout> = Api::namespaced(sim.client().unwrap(), "default");
    rollouts.create(&PostParams::default(), &rollout).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_task_that_ends_makes_the_process_exit_non_zero() {
    let sim = start_sim().await;
    install_crds(&sim);
    let mut controller = Controller::start(&sim, &[]).await;
    eventually(LONG, "the controller ready", || controller.readyz()).await;

    create_fatal_rollout(&sim).await;
    let (status, log) = controller.exited().await;
    assert!(!status.success(), "exited with {status}; log:\n{log}");
    assert!(
        log.contains("controller rollout panicked outside a reconcile")
            && log.contains("exiting so that the process is restarted"),
        "the last words name the controller: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_controller_task_ends_releases_the_lease_and_exits_non_zero() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": LEASE_NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let holder = || async {
        let lease = leases.get_opt("sluice-controller").await.ok().flatten()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    };
    // A lease far longer than the test: only a release frees it in time.
    let election = [
        "--leader-elect",
        "--leader-elect-lease-duration",
        "120s",
        "--leader-elect-renew-deadline",
        "60s",
    ];
    let mut controller = Controller::start(&sim, &election).await;
    let leader = eventually(LONG, "the replica to lead", holder).await;
    assert!(leader.starts_with("sluice-a_"), "{leader}");
    eventually(LONG, "the leader ready", || controller.readyz()).await;

    create_fatal_rollout(&sim).await;
    let (status, log) = controller.exited().await;
    assert!(!status.success(), "exited with {status}; log:\n{log}");
    assert!(
        log.contains("controller rollout panicked outside a reconcile") && log.contains("a standby takes the lease"),
        "the last words name the controller: {log}"
    );
    assert_eq!(
        holder().await,
        None,
        "the lease was released for a standby to take at once"
    );
}
