//! GitSync on the simulator, the failure paths: bad revisions and sources, pruning, signed webhooks.
//! The whole loop (a failed canary blocked, rolled back and reverted in Git) is the e2e scenario
//! gitsync-rollback (src/e2e, tests/e2e.rs).
mod common;

use std::time::Duration;

use common::git::GitHttpServer;
use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::conditions;
use sluice::api::gitsync::GitSync;
use sluice::controller::gitsync::GitSyncConfig;
use sluice::gitsync::local_repo::LocalRepo;
use sluice::sim::Simulator;

const LONG: Duration = Duration::from_secs(90);

fn config_map(version: u32) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config-v{version}\ndata:\n  version: \"{version}\"\n"
    )
}

fn gitsync(url: &str, rollback: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "repoURL": url, "ref": {"branch": "main"}, "path": "app", "interval": "2s", "timeout": "30s",
            "rollback": {"onAnalysisFailure": rollback, "author": "Sluice Test <test@sluice.dev>"},
        },
    })
}

struct Cluster {
    sim: Simulator,
    controller: RunningController,
    gitsyncs: Api<GitSync>,
    config_maps: Api<ConfigMap>,
    _cache: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let sim = start_sim().await;
        install_crds(&sim);
        let cache = tempfile::tempdir().unwrap();
        let config = GitSyncConfig {
            kube_config: Some(sim.kube_config().unwrap()),
            client_options: None,
            cache_dir: Some(cache.path().to_path_buf()),
            webhook_addr: Some("127.0.0.1:0".parse().unwrap()),
            argocd: None,
        };
        let controller = RunningController::start_with(&sim, None, config).await;
        let client = sim.client().unwrap();
        Cluster {
            gitsyncs: Api::namespaced(client.clone(), "default"),
            config_maps: Api::namespaced(client, "default"),
            sim,
            controller,
            _cache: cache,
        }
    }

    async fn create(&self, gitsync: Value) {
        self.gitsyncs
            .create(&PostParams::default(), &serde_json::from_value(gitsync).unwrap())
            .await
            .unwrap();
    }

    async fn gitsync(&self) -> GitSync {
        self.gitsyncs.get("shop").await.unwrap()
    }

    /// Waits for `check`; on timeout the panic shows the GitSync's last status (the why).
    async fn wait_gitsync(&self, what: &str, check: impl Fn(&GitSync) -> bool) -> GitSync {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let gitsync = self.gitsyncs.get("shop").await.unwrap();
            if check(&gitsync) {
                return gitsync;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; GitSync status: {}",
                    serde_json::to_string_pretty(&gitsync.status).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn config_map_exists(&self, name: &str) -> bool {
        self.config_maps.get_opt(name).await.unwrap().is_some()
    }

    async fn stop(self) {
        self.controller.stop().await;
        self.sim.shutdown().await;
    }
}

fn status(gitsync: &GitSync) -> sluice::api::gitsync::GitSyncStatus {
    gitsync.status.clone().unwrap_or_default()
}

fn healthy_at(gitsync: &GitSync, revision: &str) -> bool {
    status(gitsync).last_healthy_revision.as_deref() == Some(revision)
}

fn ready_message(gitsync: &GitSync) -> String {
    let status = status(gitsync);
    conditions::find(&status.conditions, conditions::READY)
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

/// Failures leave what runs alone and say why: a render error (nothing of that revision applied),
/// wrong credentials, an unreachable repository; an object deleted from Git is pruned; a signed
/// webhook syncs at once, an unsigned one changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revisions_and_sources_stall_without_touching_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config-a.yaml", &config_map(1).replace("web-config-v1", "a"))
        .unwrap();
    repo.write("app/config-b.yaml", &config_map(1).replace("web-config-v1", "b"))
        .unwrap();
    let first = repo.commit("two config maps").unwrap();
    let cluster = Cluster::start().await;
    let mut spec = gitsync(&repo.url(), "pin");
    spec["spec"]["interval"] = json!("1h");
    cluster
        .sim
        .client()
        .map(|client| Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, "default"))
        .unwrap()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "hooks"}, "stringData": {"webhookSecret": "s3cret"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    spec["spec"]["secretRef"] = json!({"name": "hooks"});
    cluster.create(spec).await;
    cluster.wait_gitsync("first applied", |g| healthy_at(g, &first)).await;
    assert!(cluster.config_map_exists("a").await && cluster.config_map_exists("b").await);

    // A broken file: nothing of that revision is applied, the previous one keeps running.
    repo.remove("app/config-b.yaml").unwrap();
    repo.write("app/config-a.yaml", &config_map(2).replace("web-config-v2", "a"))
        .unwrap();
    repo.write(
        "app/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
    )
    .unwrap();
    let broken = repo.commit("broken yaml").unwrap();
    let hook = format!(
        "http://{}/hooks/gitsync/default/shop",
        cluster.controller.webhook_addr().unwrap()
    );
    let http = reqwest::Client::new();
    let unsigned = http.post(&hook).body("{}").send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&cluster.gitsync().await).last_attempted_revision.as_deref(),
        Some(first.as_str()),
        "an unsigned call changes nothing"
    );
    post_signed(&http, &hook, b"s3cret").await;
    let stalled = cluster
        .wait_gitsync("stalled on the broken revision", |g| {
            status(g).last_attempted_revision.as_deref() == Some(broken.as_str())
                && conditions::is_true(&status(g).conditions, conditions::STALLED)
        })
        .await;
    assert!(
        ready_message(&stalled).contains("broken.yaml"),
        "{}",
        ready_message(&stalled)
    );
    assert_eq!(status(&stalled).last_applied_revision.as_deref(), Some(first.as_str()));
    let a = cluster.config_maps.get("a").await.unwrap();
    assert_eq!(
        a.data.unwrap()["version"],
        "1",
        "nothing of the broken revision applied"
    );
    assert!(cluster.config_map_exists("b").await);

    // Fixed: applied, and the ConfigMap deleted from Git is pruned.
    repo.remove("app/broken.yaml").unwrap();
    let fixed = repo.commit("fix").unwrap();
    post_signed(&http, &hook, b"s3cret").await;
    cluster.wait_gitsync("fixed applied", |g| healthy_at(g, &fixed)).await;
    assert_eq!(
        cluster.config_maps.get("a").await.unwrap().data.unwrap()["version"],
        "2"
    );
    // Pruning runs once no reconcile is applying a new revision (here: the next one).
    post_signed(&http, &hook, b"s3cret").await;
    eventually(LONG, "b pruned", || async {
        (!cluster.config_map_exists("b").await).then_some(())
    })
    .await;

    // Wrong credentials over smart HTTP: Stalled saying so (and never showing the password).
    let server = GitHttpServer::start(dir.path(), "sluice", "right-password").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.sim.client().unwrap(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong"},
                "stringData": {"username": "sluice", "password": "wrong-password"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let patch = json!({"spec": {"repoURL": server.url("repo.git"), "secretRef": {"name": "wrong"}}});
    cluster
        .gitsyncs
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let stalled = cluster
        .wait_gitsync("stalled on bad credentials", |g| {
            let s = status(g);
            s.observed_generation == g.metadata.generation && conditions::is_true(&s.conditions, conditions::STALLED)
        })
        .await;
    let message = ready_message(&stalled);
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    assert_eq!(status(&stalled).last_applied_revision.as_deref(), Some(fixed.as_str()));
    assert!(
        cluster.config_map_exists("a").await,
        "the running revision is left alone"
    );

    // An unreachable repository: Stalled with the reason, the cluster untouched.
    let patch = json!({"spec": {"repoURL": "git://127.0.0.1:9/nowhere.git", "secretRef": {"name": "hooks"}}});
    cluster
        .gitsyncs
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let stalled = cluster
        .wait_gitsync("stalled on a bad URL", |g| {
            let s = status(g);
            s.observed_generation == g.metadata.generation && !conditions::is_true(&s.conditions, conditions::READY)
        })
        .await;
    assert!(
        ready_message(&stalled).contains("nowhere.git"),
        "{}",
        ready_message(&stalled)
    );
    assert!(cluster.config_map_exists("a").await);
    cluster.stop().await;
}

async fn post_signed(http: &reqwest::Client, url: &str, secret: &[u8]) {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = format!("sha256={}", hmac_sha256_hex(secret, body));
    let response = http
        .post(url)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
