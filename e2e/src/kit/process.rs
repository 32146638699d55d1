//! The real `sluice controller` process for tests that kill it (`kill -9`) and start it again.
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sluice_sim::Simulator;

/// `sluice controller` with `kubeconfig` (deploy/'s ServiceAccount, see
/// [`crate::kit::controller_kubeconfig`]), metrics on a free port, local repositories allowed and its
/// Git cache in `cache`; its log goes to `stderr`. SIGKILLed when dropped, as a crash would end it.
pub struct ControllerProcess(Child);

impl ControllerProcess {
    /// `binary` is the `sluice` executable (`env!("CARGO_BIN_EXE_sluice")` in app/tests).
    pub fn spawn(binary: &Path, kubeconfig: &Path, cache: &Path, stderr: Stdio) -> ControllerProcess {
        let child = Command::new(binary)
            .args(["controller", "--metrics-addr=127.0.0.1:0", "--allow-file-repos"])
            .arg(format!("--git-cache-dir={}", cache.display()))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("sluice controller starts");
        ControllerProcess(child)
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replaces the simulator's fault rules (`PUT /sim/faults`; `[]` clears them).
pub async fn set_faults(sim: &Simulator, rules: serde_json::Value) {
    sim.http_client()
        .put(format!("{}/sim/faults", sim.url()))
        .json(&serde_json::json!({"rules": rules}))
        .send()
        .await
        .expect("the simulator answers")
        .error_for_status()
        .expect("fault rules accepted");
}
