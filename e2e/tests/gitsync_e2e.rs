//! GitSync on the simulator, the failure paths: bad revisions and sources, pruning, signed webhooks.
//! The whole loop (a failed canary blocked, rolled back and reverted in Git) is the e2e scenario
//! gitsync-rollback (src/e2e, tests/e2e.rs).
use sluice_e2e::kit as common;

use std::time::Duration;

use common::git_servers::GitHttpServer;
use common::{RunningController, eventually, install_crds, request_log, start_sim};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::conditions;
use sluice::api::gitsync::GitSync;
use sluice::controller::gitsync::GitSyncConfig;
use sluice_e2e::kit::local_repo::LocalRepo;
use sluice_sim::Simulator;

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
    /// GitSyncs that name no ServiceAccount apply as the controller, as an operator allows with
    /// deploy/components/gitsync-admin (these tests exercise that path); see `start_confined` for the default.
    async fn start() -> Cluster {
        Self::start_with(true).await
    }

    /// The default tenancy: a GitSync without a ServiceAccount stays in its own namespace.
    async fn start_confined() -> Cluster {
        Self::start_with(false).await
    }

    async fn start_with(apply_as_controller: bool) -> Cluster {
        let sim = start_sim().await;
        install_crds(&sim);
        // `default` is onboarded as the README says: the controller may act as its `deployer` and
        // read its Secrets (Git credentials, webhook keys).
        sluice_e2e::kit::onboard_tenant(&sim, "default").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let config = GitSyncConfig {
            // RunningController sets the controller's own (ServiceAccount) configuration.
            kube_config: None,
            client_options: None,
            cache_dir: Some(cache.path().to_path_buf()),
            webhook_addr: Some("127.0.0.1:0".parse().unwrap()),
            allow_file_repos: true,
            gitsync_apply_as_controller: apply_as_controller,
            ..GitSyncConfig::default()
        };
        let controller = RunningController::start_with(&sim, None, config).await;
        let client = sim.client().unwrap();
        grant_controller_config_maps(&client).await;
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
        self.wait_named("shop", what, check).await
    }

    /// [`Cluster::wait_gitsync`] for the GitSync `name` in `default`.
    async fn wait_named(&self, name: &str, what: &str, check: impl Fn(&GitSync) -> bool) -> GitSync {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let gitsync = self.gitsyncs.get(name).await.unwrap();
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

// ---- Identity, rendering, suspend and sync-now (no Prometheus) ----

fn plain_gitsync(name: &str, url: &str, path: &str, target_namespace: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "repoURL": url, "ref": {"branch": "main"}, "path": path, "interval": "1s", "timeout": "30s",
            "targetNamespace": target_namespace,
        },
    })
}

async fn create_namespaces(sim: &Simulator, names: &[&str]) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(sim.client().unwrap());
    for name in names {
        let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    }
}

/// A Role on ConfigMaps in `namespace`, bound to the ServiceAccount `account_namespace/account`.
async fn grant_config_maps(sim: &Simulator, namespace: &str, account_namespace: &str, account: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let client = sim.client().unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "config-maps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{account}-config-maps")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config-maps"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client, namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// What a namespace adds to deploy/tenant/ to let the controller act as a second ServiceAccount.
async fn allow_impersonation(sim: &Simulator, namespace: &str, account: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let client = sim.client().unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": format!("sluice-impersonate-{account}")},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": [account],
                   "verbs": ["impersonate"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let (controller_namespace, controller) = sluice_e2e::kit::CONTROLLER_SERVICE_ACCOUNT;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("sluice-impersonate-{account}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": format!("sluice-impersonate-{account}")},
        "subjects": [{"kind": "ServiceAccount", "name": controller, "namespace": controller_namespace}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client, namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// A GitSync naming no ServiceAccount applies as the controller, which then needs the rights on what
/// the repository holds: deploy/components/gitsync-admin/ grants everything; these tests' repositories hold only
/// ConfigMaps, so the controller's ServiceAccount gets exactly those (its own calls stay checked
/// against deploy/'s base).
async fn grant_controller_config_maps(client: &kube::Client) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let (namespace, account) = sluice_e2e::kit::CONTROLLER_SERVICE_ACCOUNT;
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "sluice-gitsync-config-maps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "sluice-gitsync-config-maps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sluice-gitsync-config-maps"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

fn applied(gitsync: &GitSync, revision: &str) -> bool {
    status(gitsync).last_applied_revision.as_deref() == Some(revision)
}

/// By default a GitSync that names no ServiceAccount applies as the controller only into its own
/// namespace: a repository holding a ConfigMap for kube-system stalls naming it, and nothing of that
/// revision is applied — not even the object that was allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitsync_without_a_service_account_stays_in_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/mine.yaml", &config_map(1)).unwrap();
    let theirs = config_map(2).replace(
        "  name: web-config-v2\n",
        "  name: web-config-v2\n  namespace: kube-system\n",
    );
    repo.write("app/theirs.yaml", &theirs).unwrap();
    let revision = repo.commit("a ConfigMap here and one in kube-system").unwrap();
    let cluster = Cluster::start_confined().await;
    cluster
        .create(plain_gitsync("shop", &repo.url(), "app", "default"))
        .await;
    let stalled = cluster
        .wait_named("shop", "stalled on the other namespace", |g| {
            status(g).last_attempted_revision.as_deref() == Some(revision.as_str())
                && conditions::is_true(&status(g).conditions, conditions::STALLED)
        })
        .await;
    let message = ready_message(&stalled);
    assert!(
        message.contains("kube-system/web-config-v2") && message.contains("spec.serviceAccountName"),
        "{message}"
    );
    assert!(
        !cluster.config_map_exists("web-config-v1").await,
        "nothing of that revision applied"
    );
    let kube_system: Api<ConfigMap> = Api::namespaced(cluster.sim.client().unwrap(), "kube-system");
    assert!(kube_system.get_opt("web-config-v2").await.unwrap().is_none());
    cluster.stop().await;
}

/// A GitSync naming a ServiceAccount applies as that ServiceAccount (the `Impersonate-User` header
/// on every server-side apply, dry run included); one naming none applies as the controller.
/// Applies are `fieldValidation=Strict`, as kubectl's: a Rollout with a field its schema does not know
/// (a typo here) fails the sync naming the object and the field, and nothing of that revision is
/// applied — not the Rollout with the field dropped, not the valid ConfigMap next to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_fails_the_sync_naming_it_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    let mut rollout = serde_json::to_value(sluice::api::rollout::Rollout::example(
        "web",
        2,
        vec![sluice::api::rollout::CanaryStep::set_weight(50)],
    ))
    .unwrap();
    rollout["spec"]["strategy"]["canary"]["stepz"] = json!([{"setWeight": 100}]);
    repo.write("app/rollout.yaml", &serde_saphyr::to_string(&rollout).unwrap())
        .unwrap();
    let revision = repo.commit("a Rollout with a typo").unwrap();
    let cluster = Cluster::start_confined().await;
    let mut gitsync = plain_gitsync("shop", &repo.url(), "app", "default");
    gitsync["spec"]["serviceAccountName"] = json!("deployer");
    cluster.create(gitsync).await;
    let failed = cluster
        .wait_gitsync("not ready on the unknown field", |g| {
            status(g).last_attempted_revision.as_deref() == Some(revision.as_str())
                && !conditions::is_true(&status(g).conditions, conditions::READY)
                && ready_message(g).contains("stepz")
        })
        .await;
    let message = ready_message(&failed);
    assert!(message.contains("Rollout") && message.contains("web"), "{message}");
    assert!(status(&failed).last_applied_revision.is_none(), "{:?}", failed.status);
    assert!(!cluster.config_map_exists("web-config-v1").await, "nothing applied");
    let rollouts: Api<sluice::api::rollout::Rollout> = Api::namespaced(cluster.sim.client().unwrap(), "default");
    assert!(rollouts.get_opt("web").await.unwrap().is_none(), "nothing applied");
    cluster.stop().await;
}

/// deploy/tenant/ lets the controller act as `deployer` only: a GitSync naming another ServiceAccount of
/// its namespace (here one bound to more) is refused by the API server's impersonation check, stalls
/// naming the account, and applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitsync_acts_only_as_the_account_its_namespace_allows() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    let revision = repo.commit("a config map").unwrap();
    let cluster = Cluster::start_confined().await;
    grant_config_maps(&cluster.sim, "default", "default", "powerful").await;
    let mut gitsync = plain_gitsync("shop", &repo.url(), "app", "default");
    gitsync["spec"]["serviceAccountName"] = json!("powerful");
    cluster.create(gitsync).await;
    let refused = cluster
        .wait_gitsync("not ready on the refused impersonation", |g| {
            status(g).last_attempted_revision.as_deref() == Some(revision.as_str())
                && !conditions::is_true(&status(g).conditions, conditions::READY)
        })
        .await;
    let message = ready_message(&refused);
    assert!(
        message.contains("cannot impersonate") && message.contains("powerful"),
        "{message}"
    );
    assert!(status(&refused).last_applied_revision.is_none(), "{:?}", refused.status);
    assert!(!cluster.config_map_exists("web-config-v1").await, "nothing applied");
    // Deleting it does not wait forever on a cleanup it may not do.
    cluster.gitsyncs.delete("shop", &Default::default()).await.unwrap();
    eventually(LONG, "the GitSync is gone", || async {
        cluster.gitsyncs.get_opt("shop").await.unwrap().is_none().then_some(())
    })
    .await;
    let Cluster { sim, controller, .. } = cluster;
    controller
        .stop_expecting_denied(|call| call.contains(" as system:serviceaccount:default:powerful "))
        .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsync_applies_as_its_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    repo.write("app/other.yaml", &config_map(2)).unwrap();
    let first = repo.commit("two config maps").unwrap();
    let cluster = Cluster::start().await;
    create_namespaces(&cluster.sim, &["team-a", "team-b"]).await;
    // The simulator authorizes with RBAC: the ServiceAccount may manage ConfigMaps in team-a only.
    grant_config_maps(&cluster.sim, "team-a", "default", "deployer").await;
    let mut as_account = plain_gitsync("as-account", &repo.url(), "app", "team-a");
    as_account["spec"]["serviceAccountName"] = json!("deployer");
    cluster.create(as_account).await;
    cluster
        .create(plain_gitsync("as-controller", &repo.url(), "app", "team-b"))
        .await;
    for name in ["as-account", "as-controller"] {
        cluster.wait_named(name, "first applied", |g| applied(g, &first)).await;
    }
    // A second revision removes an object: pruned (a delete) by the same identity.
    repo.remove("app/other.yaml").unwrap();
    let second = repo.commit("one config map").unwrap();
    for namespace in ["team-a", "team-b"] {
        let config_maps: Api<ConfigMap> = Api::namespaced(cluster.sim.client().unwrap(), namespace);
        eventually(LONG, "web-config-v2 pruned", || async {
            config_maps
                .get_opt("web-config-v2")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
    }
    for name in ["as-account", "as-controller"] {
        cluster
            .wait_named(name, "second applied", |g| applied(g, &second))
            .await;
    }

    let log = request_log(&cluster.sim).await;
    let writes_in = |namespace: &str| -> Vec<&Value> {
        log.iter()
            .filter(|r| r["namespace"] == namespace && r["resource"] == "configmaps")
            .filter(|r| r["verb"] == "patch" && r["fieldManager"] == "sluice-gitsync" || r["verb"] == "delete")
            .collect()
    };
    let team_a = writes_in("team-a");
    assert!(team_a.iter().any(|r| r["dryRun"] == true), "{team_a:#?}");
    assert!(team_a.iter().any(|r| r["dryRun"] == false), "{team_a:#?}");
    assert!(team_a.iter().any(|r| r["verb"] == "delete"), "{team_a:#?}");
    for request in &team_a {
        assert_eq!(
            request["impersonateUser"], "system:serviceaccount:default:deployer",
            "{request}"
        );
    }
    let team_b = writes_in("team-b");
    assert!(team_b.iter().any(|r| r["verb"] == "delete"), "{team_b:#?}");
    assert!(team_b.iter().any(|r| r["verb"] == "patch"), "{team_b:#?}");
    for request in &team_b {
        assert_eq!(request["impersonateUser"], "", "{request}");
    }

    // The namespace withdraws the controller's grant (a namespace being deleted loses its Roles in no
    // set order): deleting the GitSync leaves what it applied in place instead of hanging on a
    // cleanup the API server would refuse.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(cluster.sim.client().unwrap(), "default");
    bindings.delete("sluice-controller", &Default::default()).await.unwrap();
    cluster
        .gitsyncs
        .delete("as-account", &Default::default())
        .await
        .unwrap();
    eventually(LONG, "the GitSync is gone", || async {
        cluster
            .gitsyncs
            .get_opt("as-account")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let team_a: Api<ConfigMap> = Api::namespaced(cluster.sim.client().unwrap(), "team-a");
    assert!(
        team_a.get_opt("web-config-v1").await.unwrap().is_some(),
        "left in place"
    );
    cluster.stop().await;
}

const KUSTOMIZATION: &str = r#"namePrefix: k-
commonLabels: {team: shop}
resources: [plain.yaml]
configMapGenerator:
- name: settings
  literals: [color=blue]
"#;

const CHART_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-demo
data:
  color: {{ .Values.color | quote }}
  size: {{ .Values.size | quote }}
  namespace: {{ .Release.Namespace | quote }}
"#;

fn has_gitsync_metadata(object: &ConfigMap, gitsync: &str, revision: &str) -> bool {
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let annotations = object.metadata.annotations.clone().unwrap_or_default();
    labels.get("sluice.dev/gitsync").map(String::as_str) == Some(gitsync)
        && annotations.get("sluice.dev/git-revision").map(String::as_str) == Some(revision)
}

/// `render: kustomize` and `render: helm` (values files and inline values) applied into
/// spec.targetNamespace with the GitSync's label and revision; a kustomization that does not build
/// stalls the GitSync with kustomize's message and leaves what runs alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_and_helm_renders_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("kust/kustomization.yaml", KUSTOMIZATION).unwrap();
    repo.write(
        "kust/plain.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: \"1\"}\n",
    )
    .unwrap();
    repo.write("chart/Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\n")
        .unwrap();
    repo.write("chart/values.yaml", "color: red\nsize: small\n").unwrap();
    repo.write("chart/templates/config.yaml", CHART_TEMPLATE).unwrap();
    repo.write("env/prod.yaml", "color: green\n").unwrap();
    let first = repo.commit("kustomize and helm").unwrap();
    let cluster = Cluster::start().await;
    create_namespaces(&cluster.sim, &["apps"]).await;
    let mut kustomized = plain_gitsync("kustomized", &repo.url(), "kust", "apps");
    kustomized["spec"]["render"] = json!({"type": "kustomize"});
    cluster.create(kustomized).await;
    let mut charted = plain_gitsync("charted", &repo.url(), "chart", "apps");
    charted["spec"]["render"] = json!({"type": "helm", "helm": {
        "releaseName": "rel", "valuesFiles": ["../env/prod.yaml"], "values": {"size": "large"}}});
    cluster.create(charted).await;
    for name in ["kustomized", "charted"] {
        cluster.wait_named(name, "applied", |g| applied(g, &first)).await;
    }

    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.sim.client().unwrap(), "apps");
    let plain = config_maps.get("k-plain").await.unwrap();
    assert_eq!(plain.labels()["team"], "shop");
    assert!(has_gitsync_metadata(&plain, "default.kustomized", &first), "{plain:?}");
    let all = config_maps.list(&Default::default()).await.unwrap().items;
    let settings = all
        .iter()
        .find(|c| c.name_any().starts_with("k-settings-"))
        .unwrap_or_else(|| panic!("the generated ConfigMap, with its hash suffix: {all:?}"));
    assert_eq!(settings.data.as_ref().unwrap()["color"], "blue");
    assert!(
        has_gitsync_metadata(settings, "default.kustomized", &first),
        "{settings:?}"
    );
    let release = config_maps.get("rel-demo").await.unwrap();
    let data = release.data.clone().unwrap();
    assert_eq!(data["color"], "green", "valuesFiles");
    assert_eq!(data["size"], "large", "inline values");
    assert_eq!(data["namespace"], "apps", "helm --namespace is the target namespace");
    assert!(has_gitsync_metadata(&release, "default.charted", &first), "{release:?}");
    assert!(
        Api::<ConfigMap>::namespaced(cluster.sim.client().unwrap(), "default")
            .get_opt("rel-demo")
            .await
            .unwrap()
            .is_none()
    );

    // A kustomization naming a file that does not exist: Stalled with the reason.
    repo.write(
        "kust/kustomization.yaml",
        &KUSTOMIZATION.replace("[plain.yaml]", "[plain.yaml, missing.yaml]"),
    )
    .unwrap();
    let broken = repo.commit("broken kustomization").unwrap();
    let stalled = cluster
        .wait_named("kustomized", "stalled on the render error", |g| {
            let s = status(g);
            s.last_attempted_revision.as_deref() == Some(broken.as_str())
                && conditions::is_true(&s.conditions, conditions::STALLED)
                && !conditions::is_true(&s.conditions, conditions::READY)
        })
        .await;
    assert!(
        ready_message(&stalled).contains("missing.yaml"),
        "{}",
        ready_message(&stalled)
    );
    assert_eq!(status(&stalled).last_applied_revision.as_deref(), Some(first.as_str()));
    assert!(config_maps.get_opt("k-plain").await.unwrap().is_some());
    cluster.stop().await;
}

/// `suspend: true` stops syncing (a new commit is not applied, not even on request) and resuming
/// applies it; `sluice.dev/requested-at` syncs at once although the interval is an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_and_requested_at_syncs_now() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    let first = repo.commit("v1").unwrap();
    let cluster = Cluster::start().await;
    let mut spec = plain_gitsync("shop", &repo.url(), "app", "default");
    spec["spec"]["interval"] = json!("1h");
    cluster.create(spec).await;
    cluster.wait_gitsync("v1 applied", |g| applied(g, &first)).await;
    let version = || async { cluster.config_maps.get("web-config-v1").await.unwrap().data.unwrap()["version"].clone() };
    let merge = |patch: Value| {
        let gitsyncs = cluster.gitsyncs.clone();
        async move {
            gitsyncs
                .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    let ready_reason =
        |g: &GitSync| conditions::find(&status(g).conditions, conditions::READY).and_then(|c| c.reason.clone());

    merge(json!({"spec": {"suspend": true}})).await;
    cluster
        .wait_gitsync("suspended", |g| ready_reason(g).as_deref() == Some("Suspended"))
        .await;
    repo.write("app/config.yaml", &config_map(1).replace("\"1\"", "\"2\""))
        .unwrap();
    let second = repo.commit("v2").unwrap();
    merge(json!({"metadata": {"annotations": {"sluice.dev/requested-at": "1"}}})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = cluster.gitsync().await;
    assert_eq!(status(&held).last_attempted_revision.as_deref(), Some(first.as_str()));
    assert_eq!(version().await, "1", "nothing applied while suspended");

    merge(json!({"spec": {"suspend": false}})).await;
    cluster
        .wait_gitsync("v2 applied on resume", |g| applied(g, &second))
        .await;
    assert_eq!(version().await, "2");

    // The interval is an hour: only the annotation brings the next commit in.
    repo.write("app/config.yaml", &config_map(1).replace("\"1\"", "\"3\""))
        .unwrap();
    let third = repo.commit("v3").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(version().await, "2", "not synced before the interval");
    merge(json!({"metadata": {"annotations": {"sluice.dev/requested-at": "2"}}})).await;
    let synced = cluster
        .wait_gitsync("v3 applied on request", |g| applied(g, &third))
        .await;
    assert_eq!(status(&synced).last_handled_requested_at.as_deref(), Some("2"));
    assert_eq!(version().await, "3");
    cluster.stop().await;
}

/// Deleting a GitSync deletes what it applied (the finalizer holds the GitSync until then); with
/// prune: false, or when the ServiceAccount it applies as is gone, what it applied stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_gitsync_deletes_what_it_applied_unless_prune_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    repo.write("keep/config.yaml", &config_map(2)).unwrap();
    repo.write("orphaned/config.yaml", &config_map(3)).unwrap();
    let first = repo.commit("one config map for each GitSync").unwrap();
    let cluster = Cluster::start().await;
    cluster
        .create(plain_gitsync("shop", &repo.url(), "app", "default"))
        .await;
    let mut keep = plain_gitsync("keep", &repo.url(), "keep", "default");
    keep["spec"]["prune"] = json!(false);
    cluster.create(keep).await;
    // RBAC grants by name, so the account applies although it does not exist (impersonation does
    // not look it up, as on a real API server); the namespace lets the controller act as it too.
    grant_config_maps(&cluster.sim, "default", "default", "deleted-deployer").await;
    allow_impersonation(&cluster.sim, "default", "deleted-deployer").await;
    let mut orphaned = plain_gitsync("orphaned", &repo.url(), "orphaned", "default");
    orphaned["spec"]["serviceAccountName"] = json!("deleted-deployer");
    cluster.create(orphaned).await;
    let names = ["shop", "keep", "orphaned"];
    for name in names {
        let synced = cluster.wait_named(name, "applied", |g| applied(g, &first)).await;
        assert_eq!(
            synced.finalizers(),
            ["sluice.dev/gitsync-cleanup"],
            "the finalizer is there before anything is applied"
        );
    }
    assert!(cluster.config_maps.get_opt("web-config-v1").await.unwrap().is_some());

    for name in names {
        cluster.gitsyncs.delete(name, &Default::default()).await.unwrap();
    }
    for name in names {
        eventually(LONG, "the GitSync is gone", || async {
            cluster.gitsyncs.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    assert!(
        cluster.config_maps.get_opt("web-config-v1").await.unwrap().is_none(),
        "deleted with its GitSync"
    );
    assert!(
        cluster.config_maps.get_opt("web-config-v2").await.unwrap().is_some(),
        "prune: false leaves it"
    );
    assert!(
        cluster.config_maps.get_opt("web-config-v3").await.unwrap().is_some(),
        "left in place when the ServiceAccount is gone"
    );
    cluster.stop().await;
}

/// How often GitSync `name` was announced `Applied`. One recorder folds repeats of an event into its
/// series (keeping the first note), so this counts series, whatever revision the notes name.
async fn applied_announcements(client: &kube::Client, name: &str) -> usize {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Applied"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as usize))
        .sum()
}

/// Found by the chaos suite (app/tests/chaos.rs): the reconcile that the sync's own status writes
/// trigger could start on a cached GitSync that did not show the last write yet, take the revision
/// just applied for a new one, and apply and announce it a second time. The reconcile is handed
/// such a stale copy here; it must go by what the API has recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_gitsync_does_not_apply_a_recorded_revision_again() {
    use std::sync::Arc;

    use kube::runtime::reflector::ObjectRef;
    use sluice::controller::metrics::Metrics;
    use sluice::events::{Recorder, Reporter};
    use sluice::gitsync::git::GitSource;
    use sluice::gitsync::reconcile::{Context, Tenancy, reconcile};
    use sluice::gitsync::render::Tools;

    let git = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(git.path()).unwrap();
    repo.write("app/cm.yaml", &config_map(1)).unwrap();
    let first = repo.commit("v1").unwrap();
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), "default");
    let gitsync = serde_json::from_value(plain_gitsync("app", &repo.url(), "app", "default")).unwrap();
    gitsyncs.create(&PostParams::default(), &gitsync).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            None,
            None,
            GitSource::new(cache.path().to_path_buf()).allow_file_repos(true),
            Tools::discover(),
            Recorder::new(client.clone(), Reporter::from("sluice-test")),
            Arc::new(Metrics::new()),
        )
        .with_tenancy(Tenancy {
            apply_as_controller: true,
            ..Tenancy::default()
        }),
    );
    let reference = ObjectRef::new("app").within("default");
    let sync_now = |gitsync: GitSync| {
        let ctx = ctx.clone();
        ctx.request_sync(reference.clone());
        async move { reconcile(Arc::new(gitsync), ctx).await.unwrap() }
    };

    // The finalizer, then v1 applied.
    sync_now(gitsyncs.get("app").await.unwrap()).await;
    sync_now(gitsyncs.get("app").await.unwrap()).await;
    assert!(applied(&gitsyncs.get("app").await.unwrap(), &first));

    // v2 applied and recorded; the cache still shows the GitSync as it was before (v1 applied).
    repo.write("app/cm.yaml", &config_map(2)).unwrap();
    let second = repo.commit("v2").unwrap();
    let stale = gitsyncs.get("app").await.unwrap();
    sync_now(stale.clone()).await;
    assert!(applied(&gitsyncs.get("app").await.unwrap(), &second));
    assert_eq!(applied_announcements(&client, "app").await, 2, "v1 and v2 applied");

    // The next reconcile runs on that stale copy: v2 is recorded, so it is not applied again.
    sync_now(stale).await;
    assert_eq!(
        applied_announcements(&client, "app").await,
        2,
        "the recorded v2 was applied and announced again"
    );
    sim.shutdown().await;
}

/// A stage whose upstream is missing, in a namespace its identity may not read, or part of a cycle
/// says so and applies nothing; once the upstream it names exists and is healthy, it follows it (its
/// own path at the upstream's revision, read as the `deployer` it applies as: deploy/tenant/ grants
/// `get` on the namespace's GitSyncs, and nothing more is refused than the other namespace's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_waits_for_an_upstream_it_cannot_read_and_stalls_on_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    repo.write(
        "prod/config.yaml",
        &config_map(1).replace("web-config-v1", "prod-config-v1"),
    )
    .unwrap();
    let revision = repo.commit("v1 for dev and prod").unwrap();
    let cluster = Cluster::start_confined().await;
    create_namespaces(&cluster.sim, &["team-b"]).await;
    let follower = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["interval"] = json!("1s");
        spec["timeout"] = json!("10s");
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
               "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    };
    cluster
        .create(follower(
            "prod",
            json!({"source": {"fromGitSync": {"name": "dev", "soak": "0s"}}, "path": "prod",
                   "serviceAccountName": "deployer"}),
        ))
        .await;
    cluster
        .create(follower(
            "other",
            json!({"source": {"fromGitSync": {"name": "dev", "namespace": "team-b"}}, "path": "prod",
                   "serviceAccountName": "deployer"}),
        ))
        .await;
    cluster
        .create(follower(
            "confined",
            json!({"source": {"fromGitSync": {"name": "dev", "namespace": "team-b"}}, "path": "prod"}),
        ))
        .await;
    cluster
        .create(follower("a", json!({"source": {"fromGitSync": {"name": "b"}}})))
        .await;
    cluster
        .create(follower("b", json!({"source": {"fromGitSync": {"name": "a"}}})))
        .await;
    let waiting = |g: &GitSync| {
        conditions::find(&status(g).conditions, conditions::READY)
            .is_some_and(|c| c.reason.as_deref() == Some("WaitingForUpstream"))
    };
    let prod = cluster.wait_named("prod", "prod waiting for dev", waiting).await;
    assert_eq!(ready_message(&prod), "upstream default/dev: not found");
    let other = cluster
        .wait_named("other", "other waiting for team-b/dev", waiting)
        .await;
    let message = ready_message(&other);
    assert!(
        message.contains("upstream team-b/dev: not readable as this GitSync's identity (forbidden)"),
        "{message}"
    );
    let confined = cluster.wait_named("confined", "confined waiting", waiting).await;
    let message = ready_message(&confined);
    assert!(
        message.contains("follows only GitSyncs of its own namespace (default)"),
        "{message}"
    );
    let cycle = cluster
        .wait_named("a", "a stalled on the cycle", |g| {
            conditions::is_true(&status(g).conditions, conditions::STALLED)
        })
        .await;
    assert_eq!(
        ready_message(&cycle),
        "spec.source.fromGitSync: the upstreams form a cycle: default/a → default/b → default/a"
    );
    assert!(
        !cluster.config_map_exists("prod-config-v1").await,
        "nothing applied while waiting"
    );

    // dev appears and gets healthy: prod follows it, rendering its own path at dev's revision.
    cluster
        .create(plain_gitsync("dev", &repo.url(), "app", "default"))
        .await;
    let prod = cluster
        .wait_named("prod", "prod applied dev's healthy revision", |g| {
            healthy_at(g, &revision)
        })
        .await;
    let promotion = status(&prod).promotion.unwrap_or_default();
    assert_eq!(promotion.revision.as_deref(), Some(revision.as_str()));
    assert_eq!(promotion.from.as_deref(), Some("default/dev"));
    assert!(cluster.config_map_exists("prod-config-v1").await);
    let Cluster { sim, controller, .. } = cluster;
    controller
        .stop_expecting_denied(|call| {
            call.contains(" as system:serviceaccount:default:deployer ") && call.contains("team-b")
        })
        .await;
    sim.shutdown().await;
}

/// Hostile `spec.dependsOn`: 10,000 entries stall the GitSync at once, naming the field, and nothing
/// is read or applied; a GitSync applying as the confined controller (no ServiceAccount) learns
/// nothing about a GitSync of another namespace and waits, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_is_bounded_and_read_within_the_tenancy() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    repo.commit("one config map").unwrap();
    let cluster = Cluster::start_confined().await;
    let mut hostile = gitsync(&repo.url(), "pin");
    let entries: Vec<Value> = (0..10_000).map(|i| json!({"name": format!("dep-{i}")})).collect();
    hostile["spec"]["dependsOn"] = Value::Array(entries);
    let started = std::time::Instant::now();
    cluster.create(hostile).await;
    let stalled = cluster
        .wait_gitsync("stalled on spec.dependsOn", |g| {
            conditions::is_true(&status(g).conditions, conditions::STALLED)
        })
        .await;
    // Reading 10,000 GitSyncs would take minutes; refusing the list takes one reconcile.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(ready_message(&stalled), "spec.dependsOn: 10000 entries, at most 64");
    assert_eq!(status(&stalled).last_applied_revision, None);
    assert!(!cluster.config_map_exists("web-config-v1").await);

    let mut elsewhere = gitsync(&repo.url(), "pin");
    elsewhere["metadata"]["name"] = json!("api");
    elsewhere["spec"]["dependsOn"] = json!([{"name": "db", "namespace": "kube-system"}]);
    cluster.create(elsewhere).await;
    let waiting = cluster
        .wait_named("api", "api waiting, confined to its namespace", |g| {
            conditions::find(&status(g).conditions, conditions::READY)
                .is_some_and(|c| c.reason.as_deref() == Some("DependencyNotReady"))
        })
        .await;
    let message = ready_message(&waiting);
    assert!(
        message.contains("GitSync kube-system/db cannot be read: a GitSync without spec.serviceAccountName may depend only on GitSyncs of its own namespace"),
        "{message}"
    );
    assert_eq!(status(&waiting).last_applied_revision, None);
    cluster.stop().await;
}

/// Hostile annotation values reaching a running controller (as deploy/'s ServiceAccount): a
/// `sluice.dev/sync-wave` in Git that is not a number, beyond i32 or 10 KB long fails that revision's
/// sync (Ready False) naming the object and the annotation, with nothing of it applied; a
/// `sluice.dev/promote` on a stage that is 10 KB long or malformed is refused with a
/// PromotionRefused Warning naming the annotation, and promotes nothing. The controller keeps
/// syncing throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sync_wave_and_promote_annotations_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(dir.path()).unwrap();
    repo.write("app/config.yaml", &config_map(1)).unwrap();
    repo.write(
        "prod/config.yaml",
        &config_map(1).replace("web-config-v1", "prod-config-v1"),
    )
    .unwrap();
    let first = repo.commit("v1").unwrap();
    let cluster = Cluster::start_confined().await;
    cluster
        .create(plain_gitsync("dev", &repo.url(), "app", "default"))
        .await;
    cluster
        .create(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
            "metadata": {"name": "prod", "namespace": "default"},
            "spec": {"source": {"fromGitSync": {"name": "dev", "soak": "0s"}}, "path": "prod",
                     "interval": "1s", "timeout": "10s", "serviceAccountName": "deployer"}}))
        .await;
    cluster
        .wait_named("prod", "prod healthy at v1", |g| healthy_at(g, &first))
        .await;

    let field = "metadata.annotations.sluice.dev/sync-wave";
    for wave in ["soon".to_string(), "2147483648".to_string(), "9".repeat(10_000)] {
        let manifest = config_map(2).replace(
            "metadata:\n",
            &format!("metadata:\n  annotations:\n    sluice.dev/sync-wave: \"{wave}\"\n"),
        );
        repo.write("app/config.yaml", &manifest).unwrap();
        let revision = repo.commit("a hostile sync wave").unwrap();
        let failed = cluster
            .wait_named("dev", &format!("dev failing on sync-wave {:.20}", wave), |g| {
                status(g).last_attempted_revision.as_deref() == Some(revision.as_str())
                    && !conditions::is_true(&status(g).conditions, conditions::READY)
                    && ready_message(g).contains(field)
            })
            .await;
        let message = ready_message(&failed);
        assert!(message.contains("web-config-v2"), "names the object: {message}");
        assert!(message.len() < 2048, "bounded: {} bytes", message.len());
        assert!(
            !cluster.config_map_exists("web-config-v2").await,
            "nothing of it applied"
        );
    }
    let client = cluster.sim.client().unwrap();
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for request in [
        "x".repeat(10_000),
        "two words".to_string(),
        "release-7@not-a-sha".to_string(),
        "@abcdef".to_string(),
    ] {
        let patch = json!({"metadata": {"annotations": {"sluice.dev/promote": request}}});
        cluster
            .gitsyncs
            .patch("prod", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // Acted on once per value, cut short as stored.
        let handled = sluice::bounds::truncate(&request, 257).into_owned();
        let prod = cluster
            .wait_named("prod", "the promote request handled", |g| {
                status(g).promotion.and_then(|p| p.last_handled_promote_request) == Some(handled.clone())
            })
            .await;
        let promotion = status(&prod).promotion.unwrap_or_default();
        assert_eq!(promotion.revision.as_deref(), Some(first.as_str()), "nothing promoted");
    }
    let refused = eventually(LONG, "a PromotionRefused event naming the annotation", || async {
        let events = events.list(&Default::default()).await.ok()?.items;
        events
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("PromotionRefused"))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("prod"))
            .find_map(|e| e.note.filter(|n| n.contains("annotation sluice.dev/promote")))
    })
    .await;
    assert!(refused.len() < 2048, "bounded: {refused}");
    // A wave that is a number syncs: the controller is alive and well.
    let manifest = config_map(2).replace(
        "metadata:\n",
        "metadata:\n  annotations:\n    sluice.dev/sync-wave: \"-3\"\n",
    );
    repo.write("app/config.yaml", &manifest).unwrap();
    let fixed = repo.commit("a valid sync wave").unwrap();
    cluster
        .wait_named("dev", "dev healthy at the fixed revision", |g| healthy_at(g, &fixed))
        .await;
    assert!(cluster.config_map_exists("web-config-v2").await);

    // prod still follows dev: dev's healthy revision is promoted as usual.
    cluster
        .wait_named("prod", "prod promoted to dev's fixed revision", |g| {
            status(g).promotion.and_then(|p| p.revision) == Some(fixed.clone())
        })
        .await;
    cluster.stop().await;
}
