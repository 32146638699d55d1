//! A GitSync apply is crash-safe: the controller process is killed (SIGKILL) in the middle of applying a
//! revision, after some of its new objects exist; once Git moves on, the restarted controller prunes
//! them, because the union of the old and new inventory was stored before the first apply.
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice::api::gitsync::GitSync;
use sluice_e2e::kit::local_repo::LocalRepo;
use sluice_e2e::kit::process::{ControllerProcess, set_faults};
use sluice_e2e::kit::{self, eventually};
use sluice_sim::Simulator;

const LONG: Duration = Duration::from_secs(60);

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: \"1\"}}\n")
}

fn start_controller(kubeconfig: &Path, cache: &Path) -> ControllerProcess {
    ControllerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_sluice")),
        kubeconfig,
        cache,
        Stdio::null(),
    )
}

async fn set_patch_latency(sim: &Simulator, millis: u64) {
    let rules = if millis == 0 {
        json!([])
    } else {
        json!([{"verbs": ["patch"], "resources": ["configmaps"], "extraLatencyMs": millis}])
    };
    set_faults(sim, rules).await;
}

fn inventory_names(gitsync: &GitSync) -> Vec<String> {
    gitsync
        .status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|inventory| inventory.entries.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_apply_still_prunes_what_it_half_applied() {
    let git = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(git.path()).unwrap();
    repo.write("app/a.yaml", &config_map("a")).unwrap();
    repo.write("app/b.yaml", &config_map("b")).unwrap();
    let first = repo.commit("a and b").unwrap();

    let sim = kit::start_sim().await;
    kit::install_crds(&sim);
    kit::onboard_tenant(&sim, "default").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kit::controller_kubeconfig(&sim).await.unwrap()).unwrap();
    let cache = dir.path().join("git");
    let client = sim.client().unwrap();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let gitsync = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "app"},
        "spec": {"repoURL": repo.url(), "ref": {"branch": "main"}, "path": "app", "interval": "1s",
                 "serviceAccountName": "deployer"},
    }))
    .unwrap();
    gitsyncs.create(&PostParams::default(), &gitsync).await.unwrap();
    let applied = |revision: String| {
        let gitsyncs = gitsyncs.clone();
        async move {
            let status = gitsyncs.get("app").await.ok()?.status?;
            (status.last_applied_revision.as_deref() == Some(revision.as_str())).then_some(())
        }
    };

    let mut controller = start_controller(&kubeconfig, &cache);
    eventually(LONG, "a and b applied", || applied(first.clone())).await;

    // The next revision replaces b by c and d. Every ConfigMap patch (dry runs and applies) now takes
    // 1.5 s, so once c exists, d's apply is still on its way: kill the controller then.
    set_patch_latency(&sim, 1500).await;
    repo.remove("app/b.yaml").unwrap();
    repo.write("app/c.yaml", &config_map("c")).unwrap();
    repo.write("app/d.yaml", &config_map("d")).unwrap();
    let second = repo.commit("c and d instead of b").unwrap();
    eventually(LONG, "c applied", || async {
        config_maps.get_opt("c").await.unwrap().map(|_| ())
    })
    .await;
    controller.kill();
    let half_applied = gitsyncs.get("app").await.unwrap();
    assert_ne!(
        half_applied
            .status
            .as_ref()
            .and_then(|s| s.last_applied_revision.clone()),
        Some(second.clone()),
        "killed before the revision was recorded as applied"
    );
    let recorded = inventory_names(&half_applied);
    for name in ["_a_", "_b_", "_c_", "_d_"] {
        assert!(
            recorded.iter().any(|id| id.contains(name)),
            "{name} in the stored inventory before the apply: {recorded:?}"
        );
    }

    // Git moves on before the controller is back: only a remains.
    set_patch_latency(&sim, 0).await;
    repo.remove("app/c.yaml").unwrap();
    repo.remove("app/d.yaml").unwrap();
    let third = repo.commit("only a").unwrap();
    let _controller = start_controller(&kubeconfig, &cache);
    eventually(LONG, "the third revision applied", || applied(third.clone())).await;
    for name in ["b", "c", "d"] {
        eventually(LONG, &format!("{name} pruned"), || async {
            config_maps.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    assert!(config_maps.get_opt("a").await.unwrap().is_some());
    sim.shutdown().await;
}
