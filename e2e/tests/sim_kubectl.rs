//! The real kubectl 1.35 against `sluice sim`: what passes here is what a user does with a cluster.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{Kubectl, eventually, start_sim};
use serde_json::Value;

const REPLICASET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "example.invalid/web:v1"}
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("kubectl printed invalid JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_crds_and_invalid_custom_objects() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    let resources = kubectl.ok(&["api-resources"]).await;
    for expected in ["pods", "replicasets", "customresourcedefinitions", "leases", "events"] {
        assert!(
            resources.contains(expected),
            "api-resources lacks {expected}:\n{resources}"
        );
    }

    // Sluice's own CRDs, as users install them.
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
    kubectl.ok(&["apply", "--server-side", "-f", crds]).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/rollouts.sluice.dev",
            "--timeout=10s",
        ])
        .await;
    let explained = kubectl.ok(&["explain", "rollout.spec.strategy.canary.steps"]).await;
    assert!(explained.contains("setWeight"), "{explained}");

    let crd = kubectl.file("crd.yaml", include_str!("../fixtures/widget-crd.yaml"));
    kubectl
        .ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()])
        .await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.sluice.dev",
            "--timeout=10s",
        ])
        .await;
    let resources = kubectl.ok(&["api-resources", "--api-group=example.sluice.dev"]).await;
    assert!(
        resources.contains("widgets") && resources.contains("wdg"),
        "{resources}"
    );

    let good = kubectl.file(
        "good.yaml",
        "apiVersion: example.sluice.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, parts: [{name: a}]}\n",
    );
    kubectl
        .ok(&["apply", "--server-side", "-f", good.to_str().unwrap()])
        .await;
    let widget = json(&kubectl.ok(&["get", "widget", "w1", "-o", "json"]).await);
    assert_eq!(widget["spec"]["color"], "green", "schema default applied");
    assert_eq!(
        widget["spec"]["parts"][0]["count"], 1,
        "default inside a list item applied"
    );
    let table = kubectl.ok(&["get", "wdg"]).await;
    assert!(
        table.contains("SIZE") && table.contains("COLOR") && table.contains("green"),
        "printer columns:\n{table}"
    );

    let bad = kubectl.file(
        "bad.yaml",
        "apiVersion: example.sluice.dev/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 42, color: purple}\n",
    );
    let out = kubectl
        .run(&["apply", "--server-side", "-f", bad.to_str().unwrap()])
        .await;
    assert!(!out.ok, "an invalid widget was accepted");
    assert!(
        out.stderr.contains("spec.size") && out.stderr.contains("spec.color"),
        "error names the fields: {}",
        out.stderr
    );
    let missing = kubectl.run(&["get", "widget", "w2"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("NotFound"),
        "nothing was stored: {}",
        missing.stderr
    );

    let unknown = kubectl.file(
        "unknown.yaml",
        "apiVersion: example.sluice.dev/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 2, shape: round}\n",
    );
    let out = kubectl
        .run(&["apply", "--server-side", "-f", unknown.to_str().unwrap()])
        .await;
    assert!(
        !out.ok && out.stderr.contains("shape"),
        "strict field validation names the unknown field: {}",
        out.stderr
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_patch_replace_conflict_and_garbage_collection() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    let rs = kubectl.file("rs.yaml", REPLICASET);
    kubectl.ok(&["apply", "-f", rs.to_str().unwrap()]).await;

    eventually(Duration::from_secs(10), "3 ready pods", || async {
        let out = kubectl
            .run(&["get", "rs", "web", "-o", "jsonpath={.status.readyReplicas}"])
            .await;
        (out.stdout.trim() == "3").then_some(())
    })
    .await;
    let pods = kubectl.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(pods.lines().count(), 3, "{pods}");

    // Client-side apply again with a change: a strategic merge patch from kubectl.
    let changed = kubectl.file("rs2.yaml", &REPLICASET.replace("replicas: 3", "replicas: 2"));
    kubectl.ok(&["apply", "-f", changed.to_str().unwrap()]).await;
    kubectl
        .ok(&[
            "patch",
            "rs",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        ])
        .await;
    kubectl
        .ok(&[
            "patch",
            "rs",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":1}]"#,
        ])
        .await;
    let failed = kubectl
        .run(&[
            "patch",
            "rs",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
        ])
        .await;
    assert!(!failed.ok, "a failing JSON patch test op must be refused");
    let current = json(&kubectl.ok(&["get", "rs", "web", "-o", "json"]).await);
    assert_eq!(current["spec"]["replicas"], 1);
    assert_eq!(current["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        current["metadata"]["generation"], 3,
        "generation counts spec changes only"
    );

    // replace with a stale resourceVersion → 409 Conflict.
    let mut stale = current.clone();
    stale["metadata"]["resourceVersion"] = Value::String("1".into());
    stale["spec"]["replicas"] = 4.into();
    let stale_file = kubectl.file("stale.json", &stale.to_string());
    let conflict = kubectl.run(&["replace", "-f", stale_file.to_str().unwrap()]).await;
    assert!(
        !conflict.ok && conflict.stderr.contains("modified"),
        "stale replace must conflict: {}",
        conflict.stderr
    );
    let fresh_file = kubectl.file("fresh.json", &{
        let mut fresh = current.clone();
        fresh["spec"]["replicas"] = 4.into();
        fresh.to_string()
    });
    kubectl.ok(&["replace", "-f", fresh_file.to_str().unwrap()]).await;
    // The scale subresource, as `kubectl scale` uses it.
    kubectl.ok(&["scale", "rs", "web", "--replicas=2"]).await;
    assert_eq!(
        kubectl
            .ok(&["get", "rs", "web", "-o", "jsonpath={.spec.replicas}"])
            .await
            .trim(),
        "2"
    );

    eventually(Duration::from_secs(10), "2 pods after scaling", || async {
        let out = kubectl.run(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
        (out.stdout.lines().count() == 2).then_some(())
    })
    .await;

    kubectl
        .ok(&["delete", "rs", "web", "--wait=true", "--timeout=10s"])
        .await;
    eventually(Duration::from_secs(10), "pods garbage-collected", || async {
        let out = kubectl.run(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
        (out.ok && out.stdout.trim().is_empty()).then_some(())
    })
    .await;
    sim.shutdown().await;
}

/// Authentication and RBAC as kubectl users meet them: tokens from `kubectl create token`, `auth
/// can-i` and `auth whoami` through the review APIs, and the API server's Forbidden message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_can_i_and_forbidden_answers() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    // kubectl's typed commands send protobuf.
    kubectl.ok(&["create", "namespace", "team-a"]).await;
    kubectl.ok(&["create", "serviceaccount", "ci", "-n", "team-a"]).await;
    let token = kubectl
        .ok(&["create", "token", "ci", "-n", "team-a", "--duration=20m"])
        .await;
    let token = token.trim();
    assert!(!token.is_empty());

    let whoami = kubectl.ok(&["auth", "whoami", "-o", "json"]).await;
    assert_eq!(json(&whoami)["status"]["userInfo"]["username"], "sluice-admin");
    let whoami = kubectl.ok(&["auth", "whoami", "-o", "json", "--token", token]).await;
    assert_eq!(
        json(&whoami)["status"]["userInfo"]["username"],
        "system:serviceaccount:team-a:ci"
    );

    // The token is the service account: nothing is granted yet.
    let denied = kubectl.run(&["get", "pods", "-n", "team-a", "--token", token]).await;
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:team-a:ci\" cannot list resource \"pods\" in API group \"\" in the namespace \"team-a\""
        ),
        "{}",
        denied.stderr
    );
    let can_i = kubectl
        .run(&["auth", "can-i", "list", "pods", "-n", "team-a", "--token", token])
        .await;
    assert_eq!((can_i.ok, can_i.stdout.trim()), (false, "no"), "{}", can_i.stderr);
    let grant = kubectl.file(
        "grant.yaml",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team-a}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-reads-pods, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: ci, namespace: team-a}
"#,
    );
    kubectl.ok(&["apply", "-f", grant.to_str().unwrap()]).await;
    let can_i = kubectl
        .ok(&["auth", "can-i", "list", "pods", "-n", "team-a", "--token", token])
        .await;
    assert_eq!(can_i.trim(), "yes");
    kubectl.ok(&["get", "pods", "-n", "team-a", "--token", token]).await;

    // Impersonation by the admin, as `--as` sends it.
    let as_default = ["--as=system:serviceaccount:team-a:default"];
    let can_i = kubectl
        .run(&["auth", "can-i", "get", "secrets", "-n", "kube-system", as_default[0]])
        .await;
    assert_eq!((can_i.ok, can_i.stdout.trim()), (false, "no"), "{}", can_i.stderr);
    assert_eq!(
        kubectl
            .ok(&["auth", "can-i", "get", "secrets", "-n", "kube-system"])
            .await
            .trim(),
        "yes"
    );
    let denied = kubectl
        .run(&["get", "secrets", "-n", "kube-system", as_default[0]])
        .await;
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): secrets is forbidden: User \"system:serviceaccount:team-a:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        ),
        "{}",
        denied.stderr
    );
    // A token holder may not impersonate without the impersonate verb.
    let denied = kubectl
        .run(&["get", "pods", "-n", "team-a", "--token", token, "--as=jane"])
        .await;
    assert!(
        denied.stderr.contains(
            "users \"jane\" is forbidden: User \"system:serviceaccount:team-a:ci\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{}",
        denied.stderr
    );
    let listed = kubectl
        .ok(&["auth", "can-i", "--list", "-n", "team-a", "--token", token])
        .await;
    assert!(listed.contains("pods"), "{listed}");

    // Deleting the service account ends its token.
    kubectl.ok(&["delete", "serviceaccount", "ci", "-n", "team-a"]).await;
    let gone = kubectl.run(&["get", "pods", "-n", "team-a", "--token", token]).await;
    assert!(!gone.ok);
    assert!(gone.stderr.contains("Unauthorized"), "{}", gone.stderr);
    sim.shutdown().await;
}

/// kubectl's typed generators send their objects as protobuf (`application/vnd.kubernetes.protobuf`):
/// each command a newcomer types first creates what it says, with the values given on the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_commands_send_protobuf() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    kubectl.ok(&["create", "namespace", "demo"]).await;
    let namespace = json(&kubectl.ok(&["get", "namespace", "demo", "-o", "json"]).await);
    assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");

    // Secret data round-trips: kubectl sends bytes, the JSON keeps base64 of exactly those bytes.
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "demo",
            "--from-literal=a=b",
            "--from-literal=token=s3cr3t/+=",
            "--type=Opaque",
        ])
        .await;
    let secret = json(
        &kubectl
            .ok(&["get", "secret", "creds", "-n", "demo", "-o", "json"])
            .await,
    );
    assert_eq!(secret["data"]["a"], "Yg==", "{secret}");
    assert_eq!(secret["data"]["token"], "czNjcjN0Lys9", "{secret}");
    assert_eq!(secret["type"], "Opaque");

    kubectl
        .ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "demo",
            "--from-literal=mode=fast",
            "--from-literal=empty=",
        ])
        .await;
    let config = json(
        &kubectl
            .ok(&["get", "configmap", "settings", "-n", "demo", "-o", "json"])
            .await,
    );
    assert_eq!(
        config["data"],
        serde_json::json!({"mode": "fast", "empty": ""}),
        "{config}"
    );

    kubectl
        .ok(&["create", "serviceaccount", "deployer", "-n", "demo"])
        .await;
    kubectl.ok(&["get", "serviceaccount", "deployer", "-n", "demo"]).await;

    kubectl
        .ok(&["create", "service", "clusterip", "web", "-n", "demo", "--tcp=80:8080"])
        .await;
    let service = json(&kubectl.ok(&["get", "service", "web", "-n", "demo", "-o", "json"]).await);
    assert_eq!(service["spec"]["ports"][0]["port"], 80, "{service}");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080, "{service}");
    assert_eq!(service["spec"]["selector"]["app"], "web", "{service}");

    kubectl
        .ok(&[
            "create",
            "deployment",
            "web",
            "-n",
            "demo",
            "--image=example.invalid/web:v1",
            "--replicas=2",
            "--port=8080",
        ])
        .await;
    let deployment = json(
        &kubectl
            .ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"])
            .await,
    );
    assert_eq!(deployment["spec"]["replicas"], 2, "{deployment}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "example.invalid/web:v1", "{deployment}");
    assert_eq!(container["ports"][0]["containerPort"], 8080, "{deployment}");
    eventually(Duration::from_secs(15), "the Deployment's pods", || async {
        let out = kubectl
            .run(&["get", "pods", "-n", "demo", "-l", "app=web", "-o", "name"])
            .await;
        (out.ok && out.stdout.lines().count() == 2).then_some(())
    })
    .await;

    kubectl
        .ok(&[
            "create",
            "job",
            "once",
            "-n",
            "demo",
            "--image=example.invalid/tool:v1",
            "--",
            "echo",
            "hi",
        ])
        .await;
    let job = json(&kubectl.ok(&["get", "job", "once", "-n", "demo", "-o", "json"]).await);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    // (The harness appends --request-timeout after the arguments, so it lands in the command too.)
    assert!(
        container["command"][0] == "echo" && container["command"][1] == "hi",
        "{job}"
    );
    assert!(
        job["spec"]["template"]["metadata"].get("creationTimestamp").is_none(),
        "{job}"
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never", "{job}");

    kubectl
        .ok(&[
            "run",
            "shell",
            "-n",
            "demo",
            "--image=example.invalid/shell:v1",
            "--labels=tier=debug",
            "--env=MODE=x",
        ])
        .await;
    let pod = json(&kubectl.ok(&["get", "pod", "shell", "-n", "demo", "-o", "json"]).await);
    assert_eq!(pod["metadata"]["labels"]["tier"], "debug", "{pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "MODE", "value": "x"}]),
        "{pod}"
    );

    // RBAC through the typed commands, proved by what the grants allow.
    kubectl
        .ok(&[
            "create",
            "role",
            "pod-reader",
            "-n",
            "demo",
            "--verb=get,list",
            "--resource=pods",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "rolebinding",
            "deployer-reads",
            "-n",
            "demo",
            "--role=pod-reader",
            "--serviceaccount=demo:deployer",
        ])
        .await;
    let as_deployer = "--as=system:serviceaccount:demo:deployer";
    let can_i = kubectl
        .ok(&["auth", "can-i", "list", "pods", "-n", "demo", as_deployer])
        .await;
    assert_eq!(can_i.trim(), "yes");
    kubectl
        .ok(&[
            "create",
            "clusterrole",
            "ns-reader",
            "--verb=get,list",
            "--resource=namespaces",
        ])
        .await;
    let denied = kubectl.run(&["auth", "can-i", "list", "namespaces", as_deployer]).await;
    assert_eq!(denied.stdout.trim(), "no", "{}", denied.stderr);
    kubectl
        .ok(&[
            "create",
            "clusterrolebinding",
            "deployer-ns",
            "--clusterrole=ns-reader",
            "--serviceaccount=demo:deployer",
        ])
        .await;
    let can_i = kubectl.ok(&["auth", "can-i", "list", "namespaces", as_deployer]).await;
    assert_eq!(can_i.trim(), "yes");

    // A duplicate is the API server's AlreadyExists, not a decoding error.
    let again = kubectl.run(&["create", "namespace", "demo"]).await;
    assert!(!again.ok);
    assert!(
        again.stderr.contains("AlreadyExists") || again.stderr.contains("already exists"),
        "{}",
        again.stderr
    );
    sim.shutdown().await;
}
