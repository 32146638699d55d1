//! The built `sluice` binary against the simulator: each command writes the protocol fields the
//! controller reads, `get` shows the rollout, and errors name what is missing. No controller runs
//! here; where a test needs the controller's part (status), it writes it directly.
use sluice_e2e::kit as common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, start_sim_with};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice::rollout::hash::{POD_TEMPLATE_HASH_LABEL, pod_template_hash};
use sluice_sim::{SimConfig, Simulator};

/// A simulator with the Sluice CRDs and a kubeconfig for the binary.
struct Cluster {
    sim: Simulator,
    client: kube::Client,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

struct Run {
    ok: bool,
    /// The exit code (None: killed by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let sim = start_sim_with(SimConfig {
            pod_ready_delay: Duration::from_millis(100),
            ..SimConfig::default()
        })
        .await;
        let client = sim.client().unwrap();
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/sluice.dev.yaml")).unwrap();
        let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&committed).unwrap();
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crds {
            api.create(&PostParams::default(), &crd).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            sim,
            client,
            kubeconfig,
            dir,
        }
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Runs the binary off the runtime's threads, so the in-process simulator keeps serving.
    async fn sluice(&self, args: &[&str]) -> Run {
        self.spawn(args).await.unwrap()
    }

    /// Starts the binary; the handle gives its result when it exits.
    fn spawn(&self, args: &[&str]) -> tokio::task::JoinHandle<Run> {
        let mut command = self.command(env!("CARGO_BIN_EXE_sluice"), args);
        tokio::task::spawn_blocking(move || {
            let output = command.output().expect("sluice runs");
            Run {
                ok: output.status.success(),
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
    }

    fn command(&self, binary: &str, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "warn")
            .env_remove("SLUICE_KUBECONFIG");
        command
    }

    /// Runs the binary and fails the test with its output when it fails.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.sluice(args).await;
        assert!(
            run.ok,
            "sluice {args:?} failed\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// Runs the binary expecting it to fail; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let run = self.sluice(args).await;
        assert!(!run.ok, "sluice {args:?} should fail\nstdout: {}", run.stdout);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        run.stderr
    }

    /// The Rollout as JSON.
    async fn rollout(&self, name: &str) -> Value {
        serde_json::to_value(self.rollouts().get(name).await.unwrap()).unwrap()
    }

    /// Writes status fields as the controller would.
    async fn set_status(&self, name: &str, status: Value) {
        self.rollouts()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

fn template_hash(rollout: &Value) -> String {
    pod_template_hash(&rollout["spec"]["template"])
}

/// Creates `web` (3 steps: setWeight 20, pause, setWeight 60) mid-canary at the pause step, the way
/// the controller would have left it.
async fn canary_at_pause(cluster: &Cluster) -> Value {
    let rollout = Rollout::example(
        "web",
        2,
        vec![
            CanaryStep::set_weight(20),
            CanaryStep::pause(),
            CanaryStep::set_weight(60),
        ],
    )
    .with_image("example.com/web:2");
    cluster
        .rollouts()
        .create(&PostParams::default(), &rollout)
        .await
        .unwrap();
    let created = cluster.rollout("web").await;
    cluster
        .set_status(
            "web",
            json!({
                "phase": "Paused",
                "message": "step 2/3: paused until promoted",
                "stableRS": "stablehash",
                "currentPodHash": template_hash(&created),
                "currentStepIndex": 1,
                "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2025-01-01T00:00:00Z"}],
                "canaryWeight": 20,
            }),
        )
        .await;
    cluster.rollout("web").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_abort_and_retry_write_the_status_protocol() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;

    let out = cluster.ok(&["promote", "web"]).await;
    assert!(out.contains("step 2/3 (pause until promoted)"), "{out}");
    assert_eq!(cluster.rollout("web").await["status"]["promotedStep"], 1);
    // Idempotent: a second promote names the same step.
    cluster.ok(&["promote", "web"]).await;
    assert_eq!(cluster.rollout("web").await["status"]["promotedStep"], 1);

    cluster.ok(&["promote", "web", "--full"]).await;
    assert_eq!(cluster.rollout("web").await["status"]["promoteFull"], true);

    let out = cluster.ok(&["abort", "web"]).await;
    assert!(out.contains("aborted"), "{out}");
    assert_eq!(cluster.rollout("web").await["status"]["abort"], true);
    // The controller's part: it stamps abortedAt.
    cluster
        .set_status("web", json!({"abortedAt": "2025-01-01T00:01:00Z", "phase": "Degraded"}))
        .await;
    let out = cluster.ok(&["abort", "web"]).await;
    assert!(out.contains("already aborted"), "{out}");

    let err = cluster.fails(&["promote", "web"]).await;
    assert!(err.contains("is aborted") && err.contains("sluice retry web"), "{err}");

    let out = cluster.ok(&["retry", "web"]).await;
    assert!(out.contains("retrying"), "{out}");
    let status = &cluster.rollout("web").await["status"];
    assert!(status.get("abort").is_none(), "abort cleared: {status}");
    assert_eq!(
        status["abortedAt"], "2025-01-01T00:01:00Z",
        "abortedAt kept for the controller"
    );

    let err = cluster.fails(&["retry", "web"]).await;
    assert!(err.contains("rollout \"web\" is not aborted"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_a_rollout_that_is_not_mid_rollout() {
    let cluster = Cluster::start().await;
    let created = canary_at_pause(&cluster).await;
    let hash = template_hash(&created);
    cluster.set_status("web", json!({"stableRS": hash})).await;
    let err = cluster.fails(&["promote", "web"]).await;
    assert!(err.contains("not mid-rollout"), "{err}");
    let err = cluster.fails(&["abort", "web"]).await;
    assert!(err.contains("no canary to abort"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_restart_and_set_image_change_the_spec() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;

    cluster.ok(&["pause", "web"]).await;
    assert_eq!(cluster.rollout("web").await["spec"]["paused"], true);
    let out = cluster.ok(&["resume", "web"]).await;
    assert_eq!(cluster.rollout("web").await["spec"]["paused"], false);
    // Still at a pause step: resume says how to move on.
    assert!(
        out.contains("pause step") && out.contains("sluice promote web"),
        "{out}"
    );

    let before = chrono::Utc::now();
    cluster.ok(&["restart", "web"]).await;
    let restart_at = cluster.rollout("web").await["spec"]["restartAt"]
        .as_str()
        .unwrap()
        .to_string();
    let restart_at = chrono::DateTime::parse_from_rfc3339(&restart_at).unwrap();
    assert!(
        restart_at >= before - chrono::Duration::seconds(1)
            && restart_at <= chrono::Utc::now() + chrono::Duration::seconds(2),
        "{restart_at} is about now"
    );

    let out = cluster.ok(&["set", "image", "web", "app=example.com/web:3"]).await;
    assert!(out.contains("app=example.com/web:3"), "{out}");
    let rollout = cluster.rollout("web").await;
    assert_eq!(
        rollout["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.com/web:3"
    );

    let err = cluster.fails(&["set", "image", "web", "db=postgres:16"]).await;
    assert!(
        err.contains("container \"db\" not found in rollout \"web\"; its containers: app"),
        "{err}"
    );
    cluster.shutdown().await;
}

/// A ReplicaSet of `rollout` for `image` at `revision`, as the controller creates them.
fn replica_set(rollout: &Value, image: &str, revision: i64) -> ReplicaSet {
    let mut template = Rollout::example("web", 2, vec![])
        .with_image(image)
        .spec
        .template
        .spec();
    let hash = pod_template_hash(&serde_json::to_value(&template).unwrap());
    let labels = BTreeMap::from([
        ("app".to_string(), "web".to_string()),
        (POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone()),
    ]);
    template.metadata.as_mut().unwrap().labels = Some(labels.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                sluice::cli::undo::REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "sluice.dev/v1alpha1".into(),
                kind: "Rollout".into(),
                name: "web".into(),
                uid: rollout["metadata"]["uid"].as_str().unwrap().into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            },
            template: Some(template),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_the_previous_template_and_get_shows_the_replica_sets() {
    let cluster = Cluster::start().await;
    let created = canary_at_pause(&cluster).await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    for (image, revision) in [("example.com/web:1", 1), ("example.com/web:2", 2)] {
        replica_sets
            .create(&PostParams::default(), &replica_set(&created, image, revision))
            .await
            .unwrap();
    }
    let stable = pod_template_hash(
        &serde_json::to_value(
            Rollout::example("web", 2, vec![])
                .with_image("example.com/web:1")
                .spec
                .template,
        )
        .unwrap(),
    );
    cluster.set_status("web", json!({"stableRS": stable})).await;

    // The simulator runs the ReplicaSets' pods; get shows them once ready.
    let out = eventually(Duration::from_secs(10), "pods ready in get", || async {
        let out = cluster.ok(&["get", "rollout", "web"]).await;
        (out.matches("1/1").count() == 2).then_some(out)
    })
    .await;
    let canary_row = out.lines().find(|l| l.contains("canary")).unwrap_or_default();
    assert!(
        canary_row.starts_with(&format!("web-{}  2", template_hash(&created))),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("stable") && l.starts_with(&format!("web-{stable}"))),
        "{out}"
    );

    let err = cluster.fails(&["undo", "web", "--to-revision", "9"]).await;
    assert!(
        err.contains("rollout \"web\" has no revision 9; available revisions: 1, 2 (current)"),
        "{err}"
    );
    let out = cluster.ok(&["undo", "web"]).await;
    assert!(out.contains("rolled back to revision 1"), "{out}");
    let rollout = cluster.rollout("web").await;
    let template = &rollout["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "example.com/web:1");
    assert_eq!(
        template["metadata"]["labels"],
        json!({"app": "web"}),
        "hash label removed"
    );
    assert_eq!(template_hash(&rollout), stable, "the template hashes as revision 1 did");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_list_show_phase_and_step() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;

    let out = cluster.ok(&["get", "rollout", "web"]).await;
    assert!(
        out.contains("Status:          Paused: step 2/3: paused until promoted"),
        "{out}"
    );
    assert!(out.contains("Step:          2/3: pause until promoted"), "{out}");
    assert!(out.contains("Set weight:    20"), "{out}");

    let json_out = cluster.ok(&["get", "rollout", "web", "-o", "json"]).await;
    let object: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(object["metadata"]["name"], "web");
    assert!(object["metadata"].get("managedFields").is_none());
    let yaml_out = cluster.ok(&["get", "rollout", "web", "-o", "yaml"]).await;
    assert!(yaml_out.contains("currentStepIndex: 1"), "{yaml_out}");

    let table = cluster.ok(&["list", "rollouts"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "STEP", "SET-WEIGHT", "READY", "AGE"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>()[..5],
        ["web", "Paused", "2/3", "20", "0/2"]
    );
    let all = cluster.ok(&["get", "rollouts", "-A"]).await;
    assert!(all.starts_with("NAMESPACE") && all.contains("default    web"), "{all}");
    let empty = cluster.ok(&["list", "rollouts", "-n", "kube-system"]).await;
    assert_eq!(empty.trim(), "No rollouts found in namespace \"kube-system\".");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rollouts_and_namespaces_are_named() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;
    for args in [
        &["promote", "nope"][..],
        &["get", "rollout", "nope"],
        &["undo", "nope"],
        &["set", "image", "nope", "app=x"],
    ] {
        let err = cluster.fails(args).await;
        assert_eq!(
            err.trim(),
            "error: rollout \"nope\" not found in namespace \"default\"",
            "{args:?}"
        );
    }
    let err = cluster.fails(&["abort", "web", "-n", "shop"]).await;
    assert_eq!(err.trim(), "error: namespace \"shop\" not found");
    let err = cluster.fails(&["list", "rollouts", "-n", "shop"]).await;
    assert_eq!(err.trim(), "error: namespace \"shop\" not found");

    // An unreachable API server: a clear message, not a hang or a dump.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let port = common::free_port();
    std::fs::write(
        &kubeconfig,
        std::fs::read_to_string(&cluster.kubeconfig)
            .unwrap()
            .replace(&cluster.sim.https_url(), &format!("https://127.0.0.1:{port}")),
    )
    .unwrap();
    let err = cluster
        .fails(&["get", "rollout", "web", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .await;
    assert!(
        err.contains("reading rollout \"web\" in namespace \"default\": cannot reach the API server at"),
        "{err}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_redraws_when_the_rollout_changes() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;
    let mut child = cluster
        .command(env!("CARGO_BIN_EXE_sluice"), &["get", "rollout", "web", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = async |what: &str| {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.recv().await {
                seen.push(line.clone());
                if line.contains(what) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "waiting for {what:?} in:\n{}", seen.join("\n"));
    };
    wait_for("Status:          Paused").await;
    cluster
        .set_status(
            "web",
            json!({"phase": "Degraded", "message": "aborted on request", "abort": true}),
        )
        .await;
    // Not a terminal: frames are separated by a line, not cleared.
    wait_for("-----").await;
    wait_for("Status:          Degraded: aborted on request").await;
    child.kill().unwrap();
    child.wait().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubectl_plugin_names_itself_kubectl_sluice() {
    let cluster = Cluster::start().await;
    let mut command = cluster.command(env!("CARGO_BIN_EXE_kubectl-sluice"), &["promote", "--help"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(help.contains("Usage: kubectl sluice promote"), "{help}");
    cluster.shutdown().await;
}

/// Argo's own canary example, converted, applies with kubectl and lints clean; a manifest with a typo
/// fails the lint naming the field, without a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_manifest_converts_to_one_that_applies_and_lints_clean() {
    let cluster = Cluster::start().await;
    let argo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../e2e/testdata/argo-rollouts/examples/rollout-canary.yaml"
    );
    let converted = cluster.ok(&["convert", "-f", argo]).await;
    assert!(converted.contains("apiVersion: sluice.dev/v1alpha1"), "{converted}");
    assert!(!converted.contains("argoproj.io"), "{converted}");
    let file = cluster.dir.path().join("converted.yaml");
    std::fs::write(&file, &converted).unwrap();
    let file = file.to_str().unwrap().to_string();
    cluster.ok(&["lint", "-f", &file]).await;

    let mut kubectl = cluster.command(
        common::kubectl_binary().to_str().unwrap(),
        &["apply", "--server-side", "-n", "default", "-f", &file],
    );
    let output = tokio::task::spawn_blocking(move || kubectl.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rollouts: Api<Rollout> = Api::namespaced(cluster.client.clone(), "default");
    assert!(rollouts.get("rollout-canary").await.is_ok());

    let typo = cluster.dir.path().join("typo.yaml");
    let typos = converted
        .replace("revisionHistoryLimit:", "revisionHistoryLimt:")
        .replacen("setWeight:", "setWieght:", 1);
    std::fs::write(&typo, typos).unwrap();
    let stderr = cluster.fails(&["lint", "-f", typo.to_str().unwrap()]).await;
    assert!(stderr.contains("problem(s) found"), "{stderr}");
    let run = cluster.sluice(&["lint", "-f", typo.to_str().unwrap()]).await;
    assert!(
        run.stdout.contains("spec.revisionHistoryLimt: unknown field"),
        "{}",
        run.stdout
    );
    // Once the schema passes, the step is judged by the controller's rules.
    std::fs::write(&typo, converted.replacen("setWeight:", "setWieght:", 1)).unwrap();
    let run = cluster.sluice(&["lint", "-f", typo.to_str().unwrap()]).await;
    assert!(
        run.stdout
            .contains("spec.strategy.canary.steps[0].setWieght: unknown step kind"),
        "{}",
        run.stdout
    );
    cluster.shutdown().await;
}

/// `sluice promote gitsync` and `sluice hold gitsync` write what the GitSync controller acts on (the
/// `sluice.dev/promote` annotation, spec.promotion.hold) and refuse what cannot work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_hold_gitsync_write_the_annotation_and_the_hold() {
    use sluice::api::gitsync::GitSync;
    let cluster = Cluster::start().await;
    let gitsyncs: Api<GitSync> = Api::namespaced(cluster.client.clone(), "default");
    for object in [
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "dev"},
               "spec": {"repoURL": "https://git.example/shop.git", "ref": {"branch": "main"}}}),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "prod"},
               "spec": {"source": {"fromGitSync": {"name": "dev", "soak": "10m"}}}}),
    ] {
        let gitsync: GitSync = serde_json::from_value(object).unwrap();
        gitsyncs.create(&PostParams::default(), &gitsync).await.unwrap();
    }
    let annotation = |g: &GitSync| {
        g.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get("sluice.dev/promote")
            .cloned()
    };

    let err = cluster.fails(&["promote", "gitsync", "dev"]).await;
    assert!(err.contains("gitsync \"dev\" follows no upstream GitSync"), "{err}");
    let err = cluster.fails(&["promote", "gitsync", "nope"]).await;
    assert!(
        err.contains("gitsync \"nope\" not found in namespace \"default\""),
        "{err}"
    );
    let err = cluster
        .fails(&["promote", "gitsync", "prod", "--revision", "not-a-sha"])
        .await;
    assert!(err.contains("--revision: \"not-a-sha\" is not a commit SHA"), "{err}");
    assert_eq!(annotation(&gitsyncs.get("prod").await.unwrap()), None);

    let out = cluster
        .ok(&["promote", "gitsync", "prod", "--revision", "ABCDEF12"])
        .await;
    assert!(out.contains("promotion of revision abcdef12 requested"), "{out}");
    let first = annotation(&gitsyncs.get("prod").await.unwrap()).unwrap();
    assert!(first.ends_with("@abcdef12"), "{first}");
    cluster.ok(&["promote", "gitsync", "prod"]).await;
    let second = annotation(&gitsyncs.get("prod").await.unwrap()).unwrap();
    assert!(
        second != first && !second.contains('@'),
        "a new request each time: {first} then {second}"
    );

    let out = cluster.ok(&["hold", "gitsync", "prod"]).await;
    assert!(out.contains("promotions held"), "{out}");
    assert!(gitsyncs.get("prod").await.unwrap().spec.is_promotion_held());
    let err = cluster.fails(&["promote", "gs", "prod"]).await;
    assert!(err.contains("sluice hold gitsync prod --release"), "{err}");
    cluster.ok(&["hold", "gitsync", "prod", "--release"]).await;
    let released = gitsyncs.get("prod").await.unwrap();
    assert!(!released.spec.is_promotion_held());
    assert_eq!(
        released.spec.upstream().unwrap().name,
        "dev",
        "the rest of the spec stays"
    );
    let err = cluster.fails(&["hold", "gitsync", "dev"]).await;
    assert!(err.contains("follows no upstream"), "{err}");
    // `sluice promote NAME` still means a rollout.
    let err = cluster.fails(&["promote", "web", "extra"]).await;
    assert!(err.contains("`sluice promote gitsync NAME` a GitSync"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_0_when_healthy_1_when_degraded_2_when_not_settled() {
    let cluster = Cluster::start().await;
    let created = canary_at_pause(&cluster).await;
    let generation = created["metadata"]["generation"].as_i64().unwrap();
    cluster
        .set_status("web", json!({"observedGeneration": generation}))
        .await;

    // Paused at a step is not settled: the timeout ends the wait with 2.
    let paused = cluster.sluice(&["status", "web", "--timeout", "1s"]).await;
    assert_eq!(paused.code, Some(2), "{}", paused.stderr);
    assert_eq!(paused.stdout.trim(), "Paused - step 2/3: paused until promoted");
    assert!(
        paused.stderr.contains("did not settle (--timeout 1s)"),
        "{}",
        paused.stderr
    );
    let once = cluster.sluice(&["status", "web", "--watch=false"]).await;
    assert_eq!(once.code, Some(2), "{}", once.stderr);

    // Settling while it waits: each change is printed, Healthy exits 0.
    let waiting = cluster.spawn(&["status", "web", "--timeout", "60s"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster
        .set_status(
            "web",
            json!({"phase": "Progressing", "message": "step 3/3: setWeight 60"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster
        .set_status("web", json!({"phase": "Healthy", "message": "fully promoted"}))
        .await;
    let healthy = waiting.await.unwrap();
    assert_eq!(healthy.code, Some(0), "{}", healthy.stderr);
    let lines: Vec<&str> = healthy.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"Paused - step 2/3: paused until promoted"));
    assert_eq!(lines.last(), Some(&"Healthy - fully promoted"));

    // A status written for an older spec is not trusted, even when it says Healthy.
    cluster
        .set_status("web", json!({"observedGeneration": generation - 1}))
        .await;
    let stale = cluster.sluice(&["status", "web", "--watch=false"]).await;
    assert_eq!(stale.code, Some(2));
    assert!(
        stale.stdout.contains("not yet seen the latest spec"),
        "{}",
        stale.stdout
    );

    cluster
        .set_status(
            "web",
            json!({"observedGeneration": generation, "phase": "Degraded", "message": "aborted: analysis failed"}),
        )
        .await;
    let degraded = cluster.sluice(&["status", "web"]).await;
    assert_eq!(degraded.code, Some(1), "{}", degraded.stderr);
    assert_eq!(degraded.stdout.trim(), "Degraded - aborted: analysis failed");
    assert!(
        degraded.stderr.contains("rollout \"web\" is Degraded"),
        "{}",
        degraded.stderr
    );

    let missing = cluster.sluice(&["status", "nope", "--timeout", "5s"]).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("rollout \"nope\" not found"),
        "{}",
        missing.stderr
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_name_and_wide_list_as_kubectl_does() {
    let cluster = Cluster::start().await;
    canary_at_pause(&cluster).await;
    assert_eq!(
        cluster.ok(&["get", "rollouts", "-o", "name"]).await,
        "rollout.sluice.dev/web\n"
    );
    assert_eq!(
        cluster.ok(&["get", "rollout", "web", "-o", "name"]).await,
        "rollout.sluice.dev/web\n"
    );
    let wide = cluster.ok(&["list", "rollouts", "-o", "wide"]).await;
    let lines: Vec<Vec<&str>> = wide.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "STATUS",
            "STEP",
            "SET-WEIGHT",
            "READY",
            "AGE",
            "ACTUAL-WEIGHT",
            "STABLE",
            "CANARY",
            "COMMIT"
        ]
    );
    assert_eq!(lines[1][0], "web");
    assert_eq!(lines[1][6..8], ["20", "stablehash"], "{wide}");
    // One object with -o wide is its summary.
    let summary = cluster.ok(&["get", "rollout", "web", "-o", "wide"]).await;
    assert!(summary.contains("Set weight:    20"), "{summary}");
    assert_eq!(cluster.ok(&["get", "experiments", "-o", "name"]).await, "");
    assert!(
        cluster
            .ok(&["get", "gitsyncs", "-o", "wide"])
            .await
            .starts_with("No gitsyncs found")
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_cover_the_commands() {
    let cluster = Cluster::start().await;
    let bash = cluster.ok(&["completion", "bash"]).await;
    assert!(
        bash.contains("_sluice()") && bash.contains("status") && bash.contains("promote"),
        "{bash}"
    );
    assert!(cluster.ok(&["completion", "zsh"]).await.starts_with("#compdef sluice"));
    let fish = cluster.ok(&["completion", "fish"]).await;
    assert!(
        fish.contains("complete -c sluice") && fish.contains("rollout"),
        "{fish}"
    );
    let bad = cluster.fails(&["completion", "tcsh"]).await;
    assert!(bad.contains("invalid value 'tcsh'"), "{bad}");
    cluster.shutdown().await;
}

/// Shard flags the controller cannot honour stop it before it connects, with an error naming the flag.
#[test]
fn the_controller_refuses_shard_flags_it_cannot_honour() {
    let refusals: [(&[&str], &str); 3] = [
        (
            &["--leader-elect", "--shard-count", "0"],
            "invalid value '0' for '--shard-count",
        ),
        (
            &["--leader-elect", "--shard-count", "257"],
            "invalid value '257' for '--shard-count",
        ),
        (&["--shard-count", "2"], "--shard-count 2 needs --leader-elect"),
    ];
    for (flags, expected) in refusals {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("controller")
            .args(flags)
            // Refused before any connection: a kubeconfig that does not exist is never read.
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("SLUICE_SHARD_COUNT")
            .env_remove("SLUICE_LEADER_ELECT")
            .output()
            .expect("sluice runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "sluice controller {flags:?} started");
        assert!(stderr.contains(expected), "sluice controller {flags:?}: {stderr}");
    }
}
