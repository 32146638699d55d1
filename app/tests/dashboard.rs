//! `sluice dashboard` as users run it: the built binary against the simulator with the controller
//! running as deploy/'s ServiceAccount, looked at with Debian's headless Chromium (through
//! chromedriver). The in-cluster mode runs in-process with ServiceAccount tokens as users. The page must show
//! the rollouts with their phase, an action clicked on the page must change the rollout, and nothing
//! but /healthz is served without the login token. With SLUICE_UPDATE_SCREENSHOTS=1 the test also
//! rewrites docs/dashboard-*.png.
use sluice_e2e::kit as common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{RunningController, eventually, free_port, install_crds, start_sim_with};
use fantoccini::{ClientBuilder, Locator};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};
use sluice_sim::SimConfig;

/// Kills a child process when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The flags the test runs Chromium with: headless and quiet (no sync, no component updates, no
/// first-run UI), in a fresh profile.
fn chromium_flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn require(binary: &str) -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(binary))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!("{binary} is not installed: run scripts/install-tools.sh (Debian chromium, chromium-driver)")
    })
}

/// Starts `sluice dashboard` and returns it with the URL line it printed.
async fn start_dashboard(kubeconfig: &Path) -> (Reaped, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dashboard", "--addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sluice dashboard starts");
    let stdout = child.stdout.take().unwrap();
    let child = Reaped(child);
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).expect("reading stdout");
            line
        }),
    )
    .await
    .expect("the dashboard prints its URL within 30s")
    .unwrap();
    (child, line)
}

fn rollout(name: &str) -> Rollout {
    Rollout::example(
        name,
        4,
        vec![
            CanaryStep::set_weight(25),
            CanaryStep::pause(),
            CanaryStep::set_weight(50),
            CanaryStep::pause(),
        ],
    )
}

async fn set_image(rollouts: &Api<Rollout>, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    rollouts
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

fn step_and_phase(rollout: &Rollout) -> (Option<i32>, Option<RolloutPhase>) {
    let status = rollout.status.as_ref();
    (status.and_then(|s| s.current_step_index), status.and_then(|s| s.phase))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_rollouts_and_acts_on_them_in_a_browser() {
    // The page is live (Server-Sent Events), so `chromium --dump-dom` would either dump before the
    // first push or, with --virtual-time-budget, wait forever on the open stream: the browser is
    // driven through chromedriver instead, which waits for elements.
    let chromium = require("chromium");
    let chromedriver = require("chromedriver");
    let sim = start_sim_with(SimConfig {
        pod_ready_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    install_crds(&sim);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(sim.client().unwrap(), "default");
    for name in ["checkout", "web"] {
        rollouts.create(&PostParams::default(), &rollout(name)).await.unwrap();
    }
    let controller = RunningController::start(&sim, None).await;
    for name in ["checkout", "web"] {
        eventually(Duration::from_secs(30), "v1 healthy", || async {
            let r = rollouts.get(name).await.ok()?;
            (step_and_phase(&r).1 == Some(RolloutPhase::Healthy)).then_some(())
        })
        .await;
    }

    // Started before the new version, so its weight history has the whole canary.
    let (_dashboard, line) = start_dashboard(&kubeconfig).await;
    let url = line
        .trim_end()
        .strip_prefix("Sluice dashboard: ")
        .unwrap_or_else(|| panic!("the URL line: {line:?}"))
        .to_string();
    let (base, token) = url.split_once("/?token=").expect("the URL carries a token");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(token.len(), 64);

    // Without the token: nothing but /healthz.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/api/rollouts",
        "/api/stream",
        "/api/rollouts/default/web",
        "/assets/app.js",
    ] {
        let status = http.get(format!("{base}{path}")).send().await.unwrap().status();
        assert_eq!(status, 401, "GET {path} without a session");
    }
    let status = http
        .post(format!("{base}/api/rollouts/default/web/abort"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "an action without a session");
    let wrong = format!("{base}/?token={}", "0".repeat(64));
    assert_eq!(http.get(wrong).send().await.unwrap().status(), 401, "a wrong token");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    // The token becomes a session cookie and a redirect that drops it from the URL.
    let login = http.get(&url).send().await.unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/");
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    // A session alone cannot act: an action needs the CSRF header and this origin.
    let abort = format!("{base}/api/rollouts/default/web/abort");
    let status = http
        .post(&abort)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "an action without the CSRF token");
    let session: serde_json::Value = http
        .get(format!("{base}/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_string();
    let status = http
        .post(&abort)
        .header("cookie", &cookie)
        .header("x-sluice-csrf", &csrf)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "a cross-origin action");
    let status = http
        .get(format!("{base}/api/rollouts/default/..%2Fweb"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400, "a name that is not a Kubernetes name");
    assert!(!rollouts.get("web").await.unwrap().status.unwrap().is_aborted());

    // The new version of web: 25%, then the open pause.
    set_image(&rollouts, "web", "example.com/web:2").await;
    eventually(Duration::from_secs(30), "web paused at step 2", || async {
        let r = rollouts.get("web").await.ok()?;
        (step_and_phase(&r) == (Some(1), Some(RolloutPhase::Paused))).then_some(())
    })
    .await;

    // Drive the page through chromedriver: promote web from the rollout view.
    let port = free_port();
    let driver = Reaped(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let browser_profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": chromium_flags(browser_profile.path()) }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let browser = eventually(Duration::from_secs(20), "chromedriver answers", || async {
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await
            .ok()
    })
    .await;
    browser.goto(&url).await.unwrap();
    let wait = Duration::from_secs(20);
    browser
        .wait()
        .at_most(wait)
        .for_element(Locator::Css(r#"#rollouts tr[data-name="web"]"#))
        .await
        .expect("the list shows web");
    // The list renders each rollout with its phase (from the first push of the server's watch).
    let list_text = browser
        .find(Locator::Id("rollouts"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in ["web", "checkout", "Paused", "Healthy", "2/4", "25%"] {
        assert!(list_text.contains(expected), "the list shows {expected}:\n{list_text}");
    }
    let screenshots = std::env::var("SLUICE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    if screenshots {
        std::fs::write(docs.join("dashboard-list.png"), browser.screenshot().await.unwrap()).unwrap();
    }
    browser.goto(&format!("{base}/#/rollouts/default/web")).await.unwrap();
    let promote = browser
        .wait()
        .at_most(wait)
        .for_element(Locator::Css(r#"button[data-action="promote"]"#))
        .await
        .expect("the rollout view has a promote button");
    promote.click().await.unwrap();
    // Nothing happens until the in-page confirmation is confirmed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(step_and_phase(&rollouts.get("web").await.unwrap()).0, Some(1));
    let confirm = browser.find(Locator::Id("modal-confirm")).await.unwrap();
    assert!(confirm.is_displayed().await.unwrap(), "the confirmation shows");
    confirm.click().await.unwrap();
    eventually(Duration::from_secs(30), "web promoted to the second pause", || async {
        let r = rollouts.get("web").await.ok()?;
        (step_and_phase(&r) == (Some(3), Some(RolloutPhase::Paused))).then_some(())
    })
    .await;
    // The page follows the change by itself (pushed, not reloaded).
    browser
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(
            r#"//ol[@class="timeline"]/li[@class="current"][contains(., "pause")]"#,
        ))
        .await
        .expect("the timeline moves on");
    browser
        .wait()
        .at_most(wait)
        .for_element(Locator::XPath(r#"//dd[contains(., "50% canary")]"#))
        .await
        .expect("the weight moves to 50%");
    if screenshots {
        std::fs::write(docs.join("dashboard-rollout.png"), browser.screenshot().await.unwrap()).unwrap();
    }
    browser.close().await.unwrap();
    drop(driver);
    controller.stop().await;
}

/// A token of ServiceAccount `namespace/name` from the TokenRequest API, as a pod's projected token.
async fn service_account_token(sim: &sluice_sim::Simulator, namespace: &str, name: &str) -> String {
    let answer: serde_json::Value = sim
        .http_client()
        .post(format!(
            "{}/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            sim.url()
        ))
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["status"]["token"].as_str().unwrap().to_string()
}

/// Creates RBAC objects (and ServiceAccounts) given as JSON, as the cluster's administrator.
async fn create_all(client: &kube::Client, objects: Vec<serde_json::Value>) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let post = PostParams::default();
    for object in objects {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match object["kind"].as_str().unwrap() {
            "ServiceAccount" => drop(
                Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                    .create(&post, &serde_json::from_value(object).unwrap())
                    .await
                    .unwrap(),
            ),
            "Role" => drop(
                Api::<Role>::namespaced(client.clone(), &ns)
                    .create(&post, &serde_json::from_value(object).unwrap())
                    .await
                    .unwrap(),
            ),
            "RoleBinding" => drop(
                Api::<RoleBinding>::namespaced(client.clone(), &ns)
                    .create(&post, &serde_json::from_value(object).unwrap())
                    .await
                    .unwrap(),
            ),
            "ClusterRole" => drop(
                Api::<ClusterRole>::all(client.clone())
                    .create(&post, &serde_json::from_value(object).unwrap())
                    .await
                    .unwrap(),
            ),
            "ClusterRoleBinding" => drop(
                Api::<ClusterRoleBinding>::all(client.clone())
                    .create(&post, &serde_json::from_value(object).unwrap())
                    .await
                    .unwrap(),
            ),
            other => panic!("unexpected kind {other}"),
        }
    }
}

/// A ServiceAccount in `default` bound to a Role of `rules`.
fn user_with(name: &str, rules: serde_json::Value) -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "default"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": "default"}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": "default"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_the_dashboard_acts_only_with_the_users_rights() {
    let sim = start_sim_with(SimConfig {
        pod_ready_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    install_crds(&sim);
    let admin = sim.client().unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(admin.clone(), "default");
    rollouts.create(&PostParams::default(), &rollout("web")).await.unwrap();
    // A rollout where the users have no rights: the list must not show it.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let other = serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
    namespaces.create(&PostParams::default(), &other).await.unwrap();
    let mut hidden = rollout("hidden");
    hidden.metadata.namespace = Some("other".into());
    Api::<Rollout>::namespaced(admin.clone(), "other")
        .create(&PostParams::default(), &hidden)
        .await
        .unwrap();
    let controller = RunningController::start(&sim, None).await;
    eventually(Duration::from_secs(30), "v1 healthy", || async {
        let r = rollouts.get("web").await.ok()?;
        (step_and_phase(&r).1 == Some(RolloutPhase::Healthy)).then_some(())
    })
    .await;
    set_image(&rollouts, "web", "example.com/web:2").await;
    eventually(Duration::from_secs(30), "web paused at step 2", || async {
        let r = rollouts.get("web").await.ok()?;
        (step_and_phase(&r) == (Some(1), Some(RolloutPhase::Paused))).then_some(())
    })
    .await;

    // The dashboard's ServiceAccount as the contract gives it: reads and the two reviews, no writes.
    let read = json!(["get", "list", "watch"]);
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "sluice-dashboard", "namespace": "sluice-system"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "sluice-dashboard"}, "rules": [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            {"apiGroups": ["sluice.dev"], "resources": ["rollouts", "analysisruns", "experiments", "gitsyncs",
              "analysistemplates", "clusteranalysistemplates"], "verbs": read},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": read},
            {"apiGroups": [""], "resources": ["pods", "events"], "verbs": read},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "sluice-dashboard"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sluice-dashboard"},
               "subjects": [{"kind": "ServiceAccount", "name": "sluice-dashboard", "namespace": "sluice-system"}]}),
    ];
    objects.extend(user_with(
        "viewer",
        json!([{"apiGroups": ["sluice.dev"], "resources": ["rollouts"], "verbs": read}]),
    ));
    objects.extend(user_with(
        "operator",
        json!([{"apiGroups": ["sluice.dev"], "resources": ["rollouts"], "verbs": read},
               {"apiGroups": ["sluice.dev"], "resources": ["rollouts/status"], "verbs": ["patch"]}]),
    ));
    create_all(&admin, objects).await;
    let dashboard_token = service_account_token(&sim, "sluice-system", "sluice-dashboard").await;
    let viewer = service_account_token(&sim, "default", "viewer").await;
    let operator = service_account_token(&sim, "default", "operator").await;

    let mut config = sim.kube_config().unwrap();
    config.auth_info.token = Some(dashboard_token.clone().into());
    let client = kube::Client::try_from(config.clone()).unwrap();
    let target = sluice::cli::Target::new(client, "default", Duration::from_secs(10));
    let stop = tokio_util::sync::CancellationToken::new();
    let dashboard = sluice::dashboard::Dashboard::start_in_cluster(target, config, None, stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(dashboard.serve(listener, stop.clone()));

    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(get("/healthz", None).await.unwrap().status(), 200);
    assert_eq!(get("/api/rollouts", None).await.unwrap().status(), 401, "no token");
    assert_eq!(
        get("/", Some("not-a-token")).await.unwrap().status(),
        401,
        "a token the API server does not know"
    );
    // A reader sees the rollout once the watch has it.
    let listed = eventually(Duration::from_secs(20), "the viewer's list shows web", || async {
        let body: serde_json::Value = get("/api/rollouts", Some(&viewer)).await.ok()?.json().await.ok()?;
        (body["rollouts"][0]["name"] == "web").then_some(body)
    })
    .await;
    assert_eq!(listed["rollouts"][0]["phase"], "Paused");
    assert_eq!(
        listed["rollouts"].as_array().unwrap().len(),
        1,
        "only default's: {listed}"
    );
    assert_eq!(listed["namespaces"], json!(["default"]));
    let other = get("/api/rollouts/other/hidden", Some(&viewer)).await.unwrap();
    assert_eq!(other.status(), 403, "a rollout the viewer may not get");
    let detail = get("/api/rollouts/default/web", Some(&viewer)).await.unwrap();
    assert_eq!(detail.status(), 200, "the viewer reads the rollout view");

    let abort = |token: String| {
        http.post(format!("{base}/api/rollouts/default/web/abort"))
            .bearer_auth(token)
            .send()
    };
    let refused = abort(viewer.clone()).await.unwrap();
    assert_eq!(refused.status(), 403, "the viewer may not patch rollouts/status");
    let message: serde_json::Value = refused.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("system:serviceaccount:default:viewer"),
        "{message}"
    );
    // Not even the dashboard's own identity can write.
    assert_eq!(abort(dashboard_token.clone()).await.unwrap().status(), 403);
    assert!(!rollouts.get("web").await.unwrap().status.unwrap().is_aborted());
    let done = abort(operator.clone()).await.unwrap();
    assert_eq!(done.status(), 200, "{:?}", done.text().await);
    assert!(rollouts.get("web").await.unwrap().status.unwrap().is_aborted());
    stop.cancel();
    server.await.unwrap().unwrap();
    controller.stop().await;
}

#[tokio::test]
async fn locally_the_dashboard_refuses_to_listen_beyond_loopback() {
    let output = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["dashboard", "--addr", "0.0.0.0:0", "--kubeconfig", "/nonexistent"])
            .output()
            .expect("sluice runs")
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0"), "{stderr}");
    assert!(output.stdout.is_empty(), "no URL is printed");
}
