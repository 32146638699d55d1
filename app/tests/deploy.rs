//! The install manifests in deploy/: they render with kustomize, the simulator accepts them
//! (server-side dry run), the Grafana dashboard only queries metrics the controller exports, and the
//! RBAC grants every call the controller makes in an end-to-end run — and nothing is wildcarded.
use sluice::observe::Observer;
use sluice_e2e::kit as common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Kubectl, eventually, free_port, install_crds, kubectl_binary, request_log, start_sim};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisTemplate};
use sluice::api::experiment::Experiment;
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice_sim::Simulator;
use sluice_sim::api::WriteOptions;

const LONG: Duration = Duration::from_secs(60);
const SERVICE_ACCOUNT: (&str, &str) = ("sluice-system", "sluice-controller");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `kubectl kustomize DIR`, parsed into its documents.
fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new(kubectl_binary())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).expect("rendered YAML parses")
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// What the Prometheus operator installs, reduced to what an API server needs to accept a ServiceMonitor.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn deploy_renders_the_whole_install() {
    let docs = kustomize(&repo("deploy"));
    let kinds = kinds(&docs);
    for expected in [
        "Namespace/sluice-system",
        "CustomResourceDefinition/rollouts.sluice.dev",
        "CustomResourceDefinition/gitsyncs.sluice.dev",
        "ServiceAccount/sluice-controller",
        "ClusterRole/sluice-controller",
        "ClusterRoleBinding/sluice-controller",
        "Role/sluice-leader-election",
        "RoleBinding/sluice-leader-election",
        "Role/sluice-notifications",
        "RoleBinding/sluice-notifications",
        "Deployment/sluice-controller",
        "Service/sluice-controller-metrics",
        "PodDisruptionBudget/sluice-controller",
    ] {
        assert!(kinds.contains(expected), "deploy/ renders {expected}: {kinds:?}");
    }
    // Only kinds every cluster serves: the ServiceMonitor is a component.
    assert!(!kinds.iter().any(|k| k.starts_with("ServiceMonitor/")), "{kinds:?}");
    // The CRDs come from crds/ itself (no copy to drift).
    let crds = docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").count();
    assert_eq!(crds, sluice::api::crds::all().len());
    // Least privilege: no wildcard anywhere in the base's roles.
    for role in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().map(Vec::as_slice).unwrap_or_default();
                assert!(!values.iter().any(|v| v == "*"), "wildcard in {role}");
            }
        }
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--leader-elect")
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"].is_object() && container["resources"]["limits"].is_object());
    let pdb = docs.iter().find(|d| d["kind"] == "PodDisruptionBudget").unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    // The root filesystem is read-only: every path the controller writes is a mounted emptyDir.
    let args = strings(&container["args"]);
    let git_cache = args
        .iter()
        .find_map(|a| a.strip_prefix("--git-cache-dir="))
        .expect("--git-cache-dir is set (the default under the temp dir is not for a cluster)");
    let tmpdir = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TMPDIR")
        .and_then(|e| e["value"].as_str())
        .expect("TMPDIR is set");
    for path in [git_cache, tmpdir] {
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path} is not a mount: {container}"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert!(volume["emptyDir"].is_object(), "{volume}");
        assert_ne!(mount["readOnly"], true, "{mount}");
    }
}

#[test]
fn gitsync_admin_component_adds_only_its_grant() {
    let base = kinds(&kustomize(&repo("deploy")));
    let with_admin_docs = with_component("gitsync-admin");
    let with_admin = kinds(&with_admin_docs);
    let added: Vec<_> = with_admin.difference(&base).cloned().collect();
    assert_eq!(
        added,
        vec![
            "ClusterRole/sluice-gitsync-admin".to_string(),
            "ClusterRoleBinding/sluice-gitsync-admin".to_string()
        ]
    );
    // …and turns on what the grant is for; the base confines GitSyncs without a ServiceAccount.
    let controller_args = |docs: &[Value]| {
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    };
    let flag = "--gitsync-apply-as-controller".to_string();
    assert!(!controller_args(&kustomize(&repo("deploy"))).contains(&flag));
    assert!(controller_args(&with_admin_docs).contains(&flag));
}

/// `kubectl kustomize` of an overlay of deploy/ with one of its components. Kustomize loads bases by
/// relative path only: crds/, deploy/ and the overlay are laid out side by side.
fn with_component(component: &str) -> Vec<Value> {
    with_components(&[component])
}

fn with_components(components: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    for tree in ["crds", "deploy"] {
        copy_tree(&repo(tree), &dir.path().join(tree));
    }
    let overlay = dir.path().join("overlay");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [../deploy]\ncomponents: [{}]\n",
            components
                .iter()
                .map(|c| format!("../deploy/components/{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    kustomize(&overlay)
}

/// Documents as one multi-document YAML stream (JSON is YAML).
fn to_yaml(docs: &[Value]) -> String {
    docs.iter().map(|d| format!("---\n{d}\n")).collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `kubectl kustomize` of an overlay that onboards `namespace` with deploy/tenant/, as the README
/// tells operators to.
fn tenant_overlay(namespace: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo("deploy/tenant"), &dir.path().join("deploy/tenant"));
    let overlay = dir.path().join("tenants").join(namespace);
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("namespace: {namespace}\nresources: [../../deploy/tenant]\n"),
    )
    .unwrap();
    kustomize(&overlay)
}

/// The base install holds no Secret reads and no impersonation; a namespace grants them (deploy/tenant/:
/// impersonate `deployer` only, read its Secrets) or a single-tenant cluster does (the component).
#[test]
fn secrets_and_impersonation_are_granted_per_namespace() {
    let base = granted_rules(&kustomize(&repo("deploy")));
    for rule in &base {
        assert!(!rule.verbs.iter().any(|v| v == "impersonate" || v == "*"), "{rule:?}");
        // The one exception: the notifications Secret, by name, in the controller's own namespace.
        let notifications_secret = rule.resources == ["secrets"]
            && rule.verbs == ["get"]
            && rule.resource_names == [sluice::notify::config::SECRET_NAME]
            && rule.namespace.as_deref() == Some(SERVICE_ACCOUNT.0);
        assert!(
            notifications_secret || !rule.resources.iter().any(|r| r == "secrets" || r == "*"),
            "{rule:?}"
        );
    }
    assert!(allowed(
        &base,
        "get",
        "",
        "secrets",
        "sluice-system",
        "sluice-notifications-secret"
    ));
    assert!(!allowed(&base, "get", "", "secrets", "sluice-system", "other"));
    assert!(!allowed(&base, "list", "", "secrets", "sluice-system", ""));
    assert!(!allowed(
        &base,
        "impersonate",
        "",
        "serviceaccounts",
        "team-a",
        "deployer"
    ));
    assert!(!allowed(&base, "get", "", "secrets", "kube-system", "anything"));

    let tenant = tenant_overlay("team-a");
    // The test kit onboards namespaces with exactly this (kustomize orders objects its own way).
    let by_kind_and_name = |mut docs: Vec<Value>| {
        docs.sort_by_key(|d| (d["kind"].to_string(), d["metadata"]["name"].to_string()));
        docs
    };
    assert_eq!(
        by_kind_and_name(tenant.clone()),
        by_kind_and_name(common::tenant_objects("team-a").unwrap())
    );
    let mut docs = kustomize(&repo("deploy"));
    docs.extend(tenant.iter().cloned());
    let onboarded = granted_rules(&docs);
    assert!(allowed(
        &onboarded,
        "impersonate",
        "",
        "serviceaccounts",
        "team-a",
        "deployer"
    ));
    assert!(!allowed(
        &onboarded,
        "impersonate",
        "",
        "serviceaccounts",
        "team-a",
        "default"
    ));
    assert!(!allowed(
        &onboarded,
        "impersonate",
        "",
        "serviceaccounts",
        "team-b",
        "deployer"
    ));
    assert!(allowed(&onboarded, "get", "", "secrets", "team-a", "prometheus-token"));
    assert!(!allowed(&onboarded, "get", "", "secrets", "team-b", "prometheus-token"));
    assert!(!allowed(&onboarded, "list", "", "secrets", "team-a", ""));
    // The deployer's own Role stays in its namespace and reads only the GitSyncs' Secret.
    let deployer_role = tenant
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "sluice-deployer")
        .unwrap();
    assert_eq!(deployer_role["metadata"]["namespace"], "team-a");
    let secret_rules: Vec<&Value> = deployer_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| strings(&r["resources"]).contains(&"secrets".to_string()))
        .collect();
    assert_eq!(secret_rules.len(), 1);
    assert_eq!(strings(&secret_rules[0]["resourceNames"]), ["git-credentials"]);

    // The single-tenant component: the same two grants, cluster-wide, and nothing else.
    let single = with_component("single-tenant");
    let added: Vec<_> = kinds(&single)
        .difference(&kinds(&kustomize(&repo("deploy"))))
        .cloned()
        .collect();
    assert_eq!(
        added,
        [
            "ClusterRole/sluice-controller-single-tenant",
            "ClusterRoleBinding/sluice-controller-single-tenant"
        ]
    );
    let everywhere = granted_rules(&single);
    assert!(allowed(
        &everywhere,
        "impersonate",
        "",
        "serviceaccounts",
        "team-b",
        "anyone"
    ));
    assert!(allowed(&everywhere, "get", "", "secrets", "kube-system", "anything"));
}

#[test]
fn servicemonitor_and_dashboard_components_add_only_their_objects() {
    let base = kinds(&kustomize(&repo("deploy")));
    let added = |component: &str| -> Vec<String> {
        let docs = with_component(component);
        for doc in &docs {
            if doc["kind"] != "ClusterRole"
                && doc["kind"] != "ClusterRoleBinding"
                && doc["kind"] != "CustomResourceDefinition"
                && doc["kind"] != "Namespace"
            {
                assert_eq!(doc["metadata"]["namespace"], "sluice-system", "{doc}");
            }
        }
        kinds(&docs).difference(&base).cloned().collect()
    };
    assert_eq!(added("servicemonitor"), ["ServiceMonitor/sluice-controller"]);
    assert_eq!(
        added("dashboard"),
        [
            "ClusterRole/sluice-dashboard",
            "ClusterRoleBinding/sluice-dashboard",
            "Deployment/sluice-dashboard",
            "Service/sluice-dashboard",
            "ServiceAccount/sluice-dashboard",
        ]
    );
    // The dashboard's own account reads and reviews; it writes nothing (actions carry the user's token).
    let docs = with_component("dashboard");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "sluice-dashboard")
        .unwrap();
    for rule in role["rules"].as_array().unwrap() {
        let resources = strings(&rule["resources"]);
        let verbs = strings(&rule["verbs"]);
        let reviews = resources == ["tokenreviews"] || resources == ["subjectaccessreviews"];
        if reviews {
            assert_eq!(verbs, ["create"], "{rule}");
        } else {
            assert_eq!(verbs, ["get", "list", "watch"], "{rule}");
        }
    }
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "sluice-dashboard")
        .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strings(&container["args"]),
        ["dashboard", "--in-cluster", "--addr", "0.0.0.0:8080"]
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
}

/// `kubectl apply --server-side -k deploy/` as a newcomer runs it, on a cluster with nothing but
/// Sluice's own CRDs in it (no Prometheus operator): everything lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_on_a_vanilla_cluster() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    let deploy = repo("deploy");
    let out = kubectl
        .ok(&["apply", "--server-side", "-k", deploy.to_str().unwrap()])
        .await;
    for applied in [
        "namespace/sluice-system serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/rollouts.sluice.dev serverside-applied",
        "deployment.apps/sluice-controller serverside-applied",
        "clusterrole.rbac.authorization.k8s.io/sluice-controller serverside-applied",
    ] {
        assert!(out.contains(applied), "{applied} in:\n{out}");
    }
    kubectl
        .ok(&["get", "deployment", "sluice-controller", "-n", "sluice-system"])
        .await;
    sim.shutdown().await;
}

/// As on a cluster with the Prometheus operator: its CRD present, and the namespace created by a
/// first apply (a server-side dry run creates nothing, so on an empty cluster the namespaced objects
/// would be refused for a missing namespace — on a real API server as on the simulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_dry_run_of_deploy_is_accepted() {
    let sim = start_sim().await;
    let kubectl = Kubectl::new(&sim);
    let crd = kubectl.file("servicemonitor-crd.yaml", SERVICE_MONITOR_CRD);
    kubectl
        .ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()])
        .await;
    let namespace = kubectl.file(
        "namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: sluice-system}\n",
    );
    kubectl.ok(&["apply", "-f", namespace.to_str().unwrap()]).await;
    // The base with the ServiceMonitor component, as an overlay of deploy/ would apply it.
    let with_monitor = kubectl.file("with-monitor.yaml", &to_yaml(&with_component("servicemonitor")));
    let out = kubectl
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            with_monitor.to_str().unwrap(),
            "--dry-run=server",
        ])
        .await;
    for applied in [
        "deployment.apps/sluice-controller serverside-applied (server dry run)",
        "servicemonitor.monitoring.coreos.com/sluice-controller serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/sluice-controller serverside-applied (server dry run)",
        "poddisruptionbudget.policy/sluice-controller serverside-applied (server dry run)",
    ] {
        assert!(out.contains(applied), "{applied} in:\n{out}");
    }
    // Nothing was created by the dry run.
    let deployments = kubectl
        .run(&["get", "deployment", "sluice-controller", "-n", "sluice-system"])
        .await;
    assert!(
        !deployments.ok && deployments.stderr.contains("NotFound"),
        "{}",
        deployments.stderr
    );
}

/// The families `/metrics` exposes, by the sample names Prometheus stores (a family without samples is
/// not rendered, so every one gets a sample first).
fn exported_series_names() -> BTreeSet<String> {
    let metrics = sluice::controller::metrics::Metrics::new();
    metrics.observe_rollout("default", "web", "Progressing", 1, 20);
    metrics.count_abort("default", "web");
    metrics.count_reconcile("rollout", Duration::from_millis(3));
    metrics.count_reconcile_error("rollout", "kube");
    metrics.observe_analysis_run("default", "web-1", "Running");
    metrics.observe_measurement("default", "web-1", "success-rate", 0.99);
    metrics.set_leader(true);
    sluice::notify::delivery::NotifyObserver::count_notification(&metrics, "on-rollout-aborted", "hook", "sent");
    let mut names = BTreeSet::new();
    for line in metrics.render().lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#") || parts.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(text)) => out.push(text.clone()),
                    ("query", Value::String(text)) if text.contains('(') => out.push(text.clone()),
                    _ => collect_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_queries(item, out)),
        _ => {}
    }
}

fn metric_names(query: &str) -> Vec<String> {
    let mut names = vec![];
    let bytes: Vec<char> = query.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '_');
        if starts_word && query[query.char_indices().nth(i).unwrap().0..].starts_with("sluice_") {
            let name: String = bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            i += name.len();
            names.push(name);
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(repo("deploy/grafana/sluice-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let exported = exported_series_names();
    assert!(
        exported.contains("sluice_reconcile_duration_seconds_bucket"),
        "{exported:?}"
    );
    let mut queries = vec![];
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "query names no sluice metric: {query}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {query}) is not exported; exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // Every family shows up somewhere (the histogram through its buckets).
    for name in &exported {
        let shown = used.contains(name) || name.ends_with("_sum") || name.ends_with("_count");
        assert!(shown, "the dashboard does not show {name}");
    }
}

// ---- RBAC against an end-to-end run ----

#[derive(Debug)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
    /// Some for a Role: the namespace it applies in.
    namespace: Option<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The rules granted to the controller's ServiceAccount by the rendered manifests.
fn granted_rules(docs: &[Value]) -> Vec<Rule> {
    let bound_to_us = |binding: &Value| {
        binding["subjects"].as_array().is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["namespace"] == SERVICE_ACCOUNT.0 && s["name"] == SERVICE_ACCOUNT.1
            })
        })
    };
    let mut rules = vec![];
    for binding in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRoleBinding" | "RoleBinding")))
        .filter(|b| bound_to_us(b))
    {
        let namespace =
            (binding["kind"] == "RoleBinding").then(|| binding["metadata"]["namespace"].as_str().unwrap().to_string());
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = binding["roleRef"]["name"].as_str().unwrap();
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == role_kind
                    && d["metadata"]["name"] == role_name
                    && (role_kind == "ClusterRole" || d["metadata"]["namespace"].as_str() == namespace.as_deref())
            })
            .unwrap_or_else(|| panic!("{role_kind} {role_name} bound but not rendered"));
        for rule in role["rules"].as_array().unwrap() {
            rules.push(Rule {
                api_groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                resource_names: strings(&rule["resourceNames"]),
                namespace: namespace.clone(),
            });
        }
    }
    rules
}

fn allowed(rules: &[Rule], verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> bool {
    rules.iter().any(|rule| {
        rule.verbs.iter().any(|v| v == verb)
            && rule.api_groups.iter().any(|g| g == group)
            && rule.resources.iter().any(|r| r == resource)
            && (rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name))
            && rule.namespace.as_deref().is_none_or(|ns| ns == namespace)
    })
}

/// The permissions one logged request needed, as (verb, resource[/subresource], namespace, name).
fn needed(request: &Value) -> Vec<(String, String, String, String, String)> {
    let text = |field: &str| request[field].as_str().unwrap_or_default().to_string();
    let impersonated = text("impersonateUser");
    if !impersonated.is_empty() {
        // Impersonated requests are authorized as the impersonated user; the controller needs only
        // the right to impersonate it.
        let parts: Vec<&str> = impersonated.split(':').collect();
        return match parts.as_slice() {
            ["system", "serviceaccount", namespace, name] => vec![(
                "impersonate".into(),
                String::new(),
                "serviceaccounts".into(),
                namespace.to_string(),
                name.to_string(),
            )],
            _ => vec![(
                "impersonate".into(),
                String::new(),
                "users".into(),
                String::new(),
                impersonated,
            )],
        };
    }
    // The bootstrap ClusterRole system:basic-user lets every authenticated user ask what it may do.
    if matches!(
        (text("group").as_str(), text("resource").as_str()),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        ) | ("authentication.k8s.io", "selfsubjectreviews")
    ) {
        return vec![];
    }
    let resource = match text("subresource") {
        sub if sub.is_empty() => text("resource"),
        sub => format!("{}/{sub}", text("resource")),
    };
    let mut verbs = vec![text("verb")];
    // A server-side apply that creates the object needs create as well.
    if verbs[0] == "patch" && request["code"] == 201 {
        verbs.push("create".into());
    }
    verbs
        .into_iter()
        .map(|verb| (verb, text("group"), resource.clone(), text("namespace"), text("name")))
        .collect()
}

async fn web_metric_server(token: &'static str) -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let authorized = move |headers: HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}"))
    };
    let app = axum::Router::new()
        .route(
            "/ok",
            get(move |headers: HeaderMap| async move {
                if authorized(headers) {
                    Ok(axum::Json(json!({"ok": 1})))
                } else {
                    Err(StatusCode::UNAUTHORIZED)
                }
            }),
        )
        .route(
            "/bad",
            get(move |headers: HeaderMap| async move {
                if authorized(headers) {
                    Ok(axum::Json(json!({"ok": 0})))
                } else {
                    Err(StatusCode::UNAUTHORIZED)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// The container args of deploy/'s Deployment, runnable here: listen addresses moved to free loopback
/// ports and absolute paths (the pod's mounts) under `root`.
fn install_args(root: &Path) -> Vec<String> {
    let docs = kustomize(&repo("deploy"));
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .map(|arg| match arg.split_once('=') {
            Some((flag @ ("--metrics-addr" | "--webhook-addr"), _)) => {
                format!("{flag}=127.0.0.1:{}", free_port())
            }
            Some((flag, path)) if path.starts_with('/') => {
                format!("{flag}={}", root.join(path.trim_start_matches('/')).display())
            }
            _ => arg,
        })
        .collect()
}

/// The controller process and its directory (kubeconfig, the pod's writable mounts), kept while it runs.
struct ControllerProcess(Child, tempfile::TempDir);

impl ControllerProcess {
    /// The real binary with the install's flags: leader election included, so Lease calls are checked
    /// too; `extra` flags are added after them.
    async fn start(sim: &Simulator) -> ControllerProcess {
        Self::start_with(sim, &[]).await
    }

    /// Runs as deploy/'s ServiceAccount (deploy/'s RBAC installed, a token from the TokenRequest API),
    /// so the simulator enforces the same rules `assert_granted` replays.
    async fn start_with(sim: &Simulator, extra: &[String]) -> ControllerProcess {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let config = common::controller_kubeconfig(sim).await.unwrap();
        std::fs::write(&kubeconfig, config).unwrap();
        let args = install_args(dir.path());
        assert_eq!(args.first().map(String::as_str), Some("controller"), "{args:?}");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", "sluice-controller-0")
            .env("POD_NAMESPACE", "sluice-system")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sluice controller starts");
        ControllerProcess(child, dir)
    }

    /// Where a path of the pod (a mount) is for this process.
    fn path(&self, in_pod: &str) -> PathBuf {
        self.1.path().join(in_pod.trim_start_matches('/'))
    }

    fn terminate(&mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.0.wait().unwrap();
    }
}

/// Fails with every call in the simulator's request log, made by the controller, that `rules` do not
/// grant (the replay shows what a run exercised; the simulator enforced the same rules as it ran);
/// returns the "verb group/resource" pairs seen.
async fn assert_granted(sim: &Simulator, rules: &[Rule]) -> BTreeSet<String> {
    let log = request_log(sim).await;
    let by_controller: Vec<&Value> = log
        .iter()
        .filter(|r| r["userAgent"].as_str().is_some_and(|ua| ua.starts_with("sluice/")))
        .collect();
    assert!(by_controller.len() > 20, "the controller's requests are logged");
    let mut denied = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for request in &by_controller {
        for (verb, group, resource, namespace, name) in needed(request) {
            seen.insert(format!("{verb} {group}/{resource}"));
            if !allowed(rules, &verb, &group, &resource, &namespace, &name) {
                denied.insert(format!(
                    "{verb} {group}/{resource} (namespace {namespace:?}, name {name:?})"
                ));
            }
        }
    }
    assert!(denied.is_empty(), "calls deploy/ RBAC does not grant: {denied:#?}");
    // The controller ran as deploy/'s ServiceAccount, so the simulator enforced the same rules.
    let refused = common::denied_to_controller(&sim.url()).await;
    assert!(
        refused.is_empty(),
        "calls the simulator refused the controller: {refused:#?}"
    );
    seen
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rollout_with(image: &str, path: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"notifications.sluice.dev/subscribe.on-rollout-aborted.hook": ""}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary",
                "stableService": "web-stable",
                "abortScaleDownDelaySeconds": 0,
                "scaleDownDelaySeconds": 0,
                "steps": [
                    {"setWeight": 50},
                    {"analysis": {"templates": [{"templateName": "health"}], "args": [{"name": "path", "value": path}]}},
                    {"pause": {"duration": "1s"}},
                ],
            }},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_call_is_granted_by_deploy_rbac() {
    // deploy/ plus `default` onboarded with deploy/tenant/ (the analysis reads a Secret there).
    let mut docs = kustomize(&repo("deploy"));
    docs.extend(tenant_overlay("default"));
    let rules = granted_rules(&docs);
    let sim = start_sim().await;
    install_crds(&sim);
    common::onboard_tenant(&sim, "default").unwrap();
    let client = sim.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": "sluice-system"}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret =
        serde_json::from_value(json!({"metadata": {"name": "health-api"}, "stringData": {"token": "s3cret"}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for name in ["web-stable", "web-canary"] {
        let service = serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        )
        .unwrap();
        services.create(&PostParams::default(), &service).await.unwrap();
    }
    let port = web_metric_server("s3cret").await;
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "health", "namespace": "default"},
        "spec": {
            "args": [{"name": "path"}, {"name": "token", "valueFrom": {"secretKeyRef": {"name": "health-api", "key": "token"}}}],
            "metrics": [{
                "name": "ok", "count": 1, "successCondition": "result >= 1",
                "provider": {"web": {
                    "url": format!("http://127.0.0.1:{port}/{{{{args.path}}}}"),
                    "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
                    "jsonPath": "{$.ok}",
                }},
            }],
        },
    }))
    .unwrap();
    Api::<AnalysisTemplate>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &template)
        .await
        .unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let rollout: Rollout = serde_json::from_value(rollout_with("web:1", "ok")).unwrap();
    rollouts.create(&PostParams::default(), &rollout).await.unwrap();
    // Notifications: the ConfigMap and its Secret in sluice-system; the Rollout subscribes to aborts.
    let (hooks, hook_base) = sluice_e2e::kit::receiver::Receiver::start(&[]).await;
    let system_secrets: Api<Secret> = Api::namespaced(client.clone(), "sluice-system");
    let hook_secret = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications-secret"}, "stringData": {"hook-auth": "Bearer n0tify"},
    }))
    .unwrap();
    system_secrets
        .create(&PostParams::default(), &hook_secret)
        .await
        .unwrap();
    let configmap: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"},
        "data": {"service.webhook.hook": format!(
            "url: {hook_base}/hook\nheaders:\n- name: Authorization\n  value: $hook-auth\n"
        )},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "sluice-system")
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();

    let mut controller = ControllerProcess::start(&sim).await;
    let phase_and_stable = || async {
        let status = rollouts.get("web").await.ok()?.status?;
        Some((status.phase?, status.stable_rs?))
    };
    let (_, v1) = eventually(LONG, "v1 healthy", || async {
        phase_and_stable()
            .await
            .filter(|(phase, _)| *phase == RolloutPhase::Healthy)
    })
    .await;
    // v2 passes its analysis and is promoted.
    let apply = PatchParams::apply("test").force();
    let v2: Value = rollout_with("web:2", "ok");
    rollouts.patch("web", &apply, &Patch::Apply(&v2)).await.unwrap();
    let (_, v2_hash) = eventually(LONG, "v2 promoted", || async {
        phase_and_stable()
            .await
            .filter(|(phase, stable)| *phase == RolloutPhase::Healthy && *stable != v1)
    })
    .await;
    // v3 fails its analysis and is aborted.
    let v3: Value = rollout_with("web:3", "bad");
    rollouts.patch("web", &apply, &Patch::Apply(&v3)).await.unwrap();
    eventually(LONG, "v3 aborted", || async {
        phase_and_stable()
            .await
            .filter(|(phase, stable)| *phase == RolloutPhase::Degraded && *stable == v2_hash)
    })
    .await;
    // The abort was notified once, with the Secret's header, and recorded on the Rollout.
    let sent = eventually(LONG, "the abort notified and recorded", || async {
        let rollout = rollouts.get("web").await.ok()?;
        rollout
            .annotations()
            .get(sluice::api::keys::NOTIFY_SENT_ANNOTATION)
            .cloned()
    })
    .await;
    assert!(sent.contains("on-rollout-aborted:"), "{sent}");
    {
        let hooks = hooks.requests();
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert_eq!(hooks[0].1, "Bearer n0tify");
        assert_eq!(hooks[0].2["trigger"], "on-rollout-aborted");
        assert_eq!(hooks[0].2["object"]["name"], "web");
    }
    // An Experiment with a Service, run to the end: its ReplicaSet, Service, status and scale-down.
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), "default");
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": "compare", "namespace": "default"},
        "spec": {
            "duration": "1s", "scaleDownDelaySeconds": 0,
            "templates": [{
                "name": "canary", "service": {},
                "selector": {"matchLabels": {"app": "compare"}},
                "template": {"metadata": {"labels": {"app": "compare"}},
                             "spec": {"containers": [{"name": "web", "image": "web:2", "ports": [{"containerPort": 8080}]}]}},
            }],
        },
    }))
    .unwrap();
    experiments.create(&PostParams::default(), &experiment).await.unwrap();
    eventually(LONG, "the Experiment Successful and its Service deleted", || async {
        let done = experiments.get("compare").await.ok()?.status?.phase? == AnalysisPhase::Successful;
        let gone = services.get_opt("compare-canary").await.ok()?.is_none();
        (done && gone).then_some(())
    })
    .await;
    // A graceful stop, so releasing the Lease is checked too.
    controller.terminate();

    let seen = assert_granted(&sim, &rules).await;
    // The run exercised what it claims to: writes, status, secrets, events, the lease.
    for expected in [
        "create apps/replicasets",
        "patch sluice.dev/rollouts/status",
        "create sluice.dev/analysisruns",
        "patch sluice.dev/analysisruns/status",
        "get /secrets",
        "patch /services",
        "create events.k8s.io/events",
        "patch coordination.k8s.io/leases",
        "patch sluice.dev/experiments/status",
        "create /services",
        "delete /services",
        "watch /configmaps",
        "patch sluice.dev/rollouts",
    ] {
        assert!(seen.contains(expected), "{expected} not exercised; seen {seen:#?}");
    }
}

fn create(sim: &Simulator, namespace: &str, group: &str, plural: &str, body: Value) {
    let rt = sim
        .api
        .resource(group, plural)
        .unwrap_or_else(|| panic!("{plural} are served"));
    let options = WriteOptions {
        field_manager: "test".into(),
        ..Default::default()
    };
    sim.api.create(&rt, namespace, body, &options).expect("created");
}

/// Each traffic router takes a canary through one weighted step: every call it makes is granted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_traffic_router_call_is_granted_by_deploy_rbac() {
    let rules = granted_rules(&kustomize(&repo("deploy")));
    let sim = start_sim().await;
    install_crds(&sim);
    for crd in sluice_sim::crds::ROUTERS {
        create(
            &sim,
            "",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            sluice_sim::crds::parse(crd).unwrap(),
        );
    }
    let client = sim.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["sluice-system", "gateway", "smi", "nginx", "istio"] {
        let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    }
    let service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    };
    for namespace in ["gateway", "smi", "nginx", "istio"] {
        for name in ["web-stable", "web-canary"] {
            create(&sim, namespace, "", "services", service(name));
        }
    }
    create(&sim, "smi", "", "services", service("web"));
    create(&sim, "istio", "", "services", service("web"));
    create(
        &sim,
        "gateway",
        "gateway.networking.k8s.io",
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]},
        }),
    );
    create(
        &sim,
        "nginx",
        "networking.k8s.io",
        "ingresses",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]},
        }),
    );
    create(
        &sim,
        "istio",
        "networking.istio.io",
        "destinationrules",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": {"name": "web"},
            "spec": {"host": "web", "subsets": [{"name": "stable", "labels": {"app": "web"}}, {"name": "canary", "labels": {"app": "web"}}]},
        }),
    );
    create(
        &sim,
        "istio",
        "networking.istio.io",
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]},
        }),
    );
    let routings = [
        ("gateway", json!({"gatewayAPI": {"httpRoute": "web"}})),
        ("smi", json!({"smi": {"rootService": "web"}})),
        ("nginx", json!({"nginx": {"stableIngress": "shop"}})),
        (
            "istio",
            json!({"istio": {
            "virtualService": {"name": "web", "routes": ["primary"]},
            "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"}}}),
        ),
    ];
    let rollout = |namespace: &str, routing: &Value, image: &str| {
        json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable", "trafficRouting": routing,
                "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
                "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}}})
    };
    let apply = PatchParams::apply("test").force();
    for (namespace, routing) in &routings {
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        rollouts
            .patch("web", &apply, &Patch::Apply(rollout(namespace, routing, "web:1")))
            .await
            .unwrap();
    }
    let mut controller = ControllerProcess::start(&sim).await;
    let stable_of = |namespace: &'static str| {
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        async move {
            let status = rollouts.get("web").await.ok()?.status?;
            (status.phase? == RolloutPhase::Healthy).then_some(status.stable_rs?)
        }
    };
    let mut v1 = vec![];
    for (namespace, _) in &routings {
        v1.push(eventually(LONG, "v1 healthy", || stable_of(namespace)).await);
    }
    for (namespace, routing) in &routings {
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        rollouts
            .patch("web", &apply, &Patch::Apply(rollout(namespace, routing, "web:2")))
            .await
            .unwrap();
    }
    for ((namespace, _), v1) in routings.iter().zip(&v1) {
        let what = format!("{namespace}: v2 promoted");
        eventually(LONG, &what, || async { stable_of(namespace).await.filter(|s| s != v1) }).await;
    }
    controller.terminate();
    let seen = assert_granted(&sim, &rules).await;
    for expected in [
        "patch gateway.networking.k8s.io/httproutes",
        "create split.smi-spec.io/trafficsplits",
        "create networking.k8s.io/ingresses",
        "patch networking.istio.io/virtualservices",
        "patch networking.istio.io/destinationrules",
    ] {
        assert!(seen.contains(expected), "{expected} not exercised; seen {seen:#?}");
    }
}

fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A GitSync run by the binary with the install's flags: applied as its ServiceAccount (so the
/// controller itself needs only `impersonate`), an object pruned after it left Git, a Secret read for
/// the webhook and Git credentials, a signed webhook call. Every call the controller makes is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gitsync_call_is_granted_by_deploy_rbac() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use sluice::api::gitsync::GitSync;
    use sluice_e2e::kit::local_repo::LocalRepo;

    // deploy/ plus `shop` onboarded with deploy/tenant/ (its `deployer` is the GitSync's account).
    let mut docs = kustomize(&repo("deploy"));
    docs.extend(tenant_overlay("shop"));
    let rules = granted_rules(&docs);
    let git = tempfile::tempdir().unwrap();
    let source = LocalRepo::create(git.path()).unwrap();
    let config_map =
        |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: \"1\"}}\n");
    source.write("app/a.yaml", &config_map("a")).unwrap();
    source.write("app/b.yaml", &config_map("b")).unwrap();
    source
        .write(
            "app/service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n",
        )
        .unwrap();
    let first = source.commit("two config maps and a service").unwrap();

    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": "sluice-system"}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    // The namespace as an operator onboards it: `deployer`, allowed what the repository holds (and its
    // Git Secret), and the controller's right to act as it.
    common::onboard_tenant(&sim, "shop").unwrap();
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "git-credentials"}, "stringData": {"webhookSecret": "s3cret"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), "shop");
    let gitsync = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"repoURL": source.url(), "ref": {"branch": "main"}, "path": "app", "interval": "1s",
            "serviceAccountName": "deployer", "secretRef": {"name": "git-credentials"}},
    }))
    .unwrap();
    gitsyncs.create(&PostParams::default(), &gitsync).await.unwrap();

    let webhook_port = free_port();
    let extra = [
        format!("--webhook-addr=127.0.0.1:{webhook_port}"),
        // The test repository is a local folder.
        "--allow-file-repos".to_string(),
    ];
    let mut controller = ControllerProcess::start_with(&sim, &extra).await;
    let applied = |revision: String| {
        let gitsyncs = gitsyncs.clone();
        async move {
            let status = gitsyncs.get("app").await.ok()?.status?;
            (status.last_applied_revision.as_deref() == Some(revision.as_str())).then_some(())
        }
    };
    eventually(LONG, "first revision applied", || applied(first.clone())).await;
    source.remove("app/b.yaml").unwrap();
    let second = source.commit("b leaves Git").unwrap();
    eventually(LONG, "second revision applied", || applied(second.clone())).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    eventually(LONG, "b pruned", || async {
        config_maps.get_opt("b").await.unwrap().is_none().then_some(())
    })
    .await;
    // A signed push notification: the webhook reads the GitSync and its Secret.
    let body = br#"{"ref":"refs/heads/main"}"#;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{webhook_port}/hooks/gitsync/shop/app"))
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_sha256_hex(b"s3cret", body)),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let mirrors = controller.path("/var/cache/sluice/git");
    assert!(
        std::fs::read_dir(&mirrors).is_ok_and(|mut entries| entries.next().is_some()),
        "the Git mirror is kept under --git-cache-dir ({})",
        mirrors.display()
    );
    // Deleting the GitSync deletes what it applied, as the ServiceAccount, then drops the finalizer.
    gitsyncs.delete("app", &Default::default()).await.unwrap();
    eventually(LONG, "the GitSync and its objects gone", || async {
        let gone =
            gitsyncs.get_opt("app").await.unwrap().is_none() && config_maps.get_opt("a").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    controller.terminate();

    let seen = assert_granted(&sim, &rules).await;
    for expected in [
        // Each reconcile reads its GitSync live (the cache can lag the controller's own status writes).
        "get sluice.dev/gitsyncs",
        "patch sluice.dev/gitsyncs",
        "get /serviceaccounts",
        "list sluice.dev/gitsyncs",
        "watch sluice.dev/gitsyncs",
        "patch sluice.dev/gitsyncs/status",
        "create events.k8s.io/events",
        "impersonate /serviceaccounts",
    ] {
        assert!(seen.contains(expected), "{expected} not exercised; seen {seen:#?}");
    }
    // The applies and the prune went out as the ServiceAccount, through the controller's own client
    // (its User-Agent, so its rate limit and leader write gate too).
    let log = request_log(&sim).await;
    // So did every read of the GitSync's secretRef.
    let secret_reads: Vec<&Value> = log
        .iter()
        .filter(|r| r["resource"] == "secrets" && r["namespace"] == "shop" && r["name"] == "git-credentials")
        .collect();
    assert!(!secret_reads.is_empty(), "the secretRef was read");
    for read in &secret_reads {
        assert_eq!(read["impersonateUser"], "system:serviceaccount:shop:deployer", "{read}");
    }
    let writes: Vec<&Value> = log
        .iter()
        .filter(|r| r["namespace"] == "shop" && matches!(r["resource"].as_str(), Some("configmaps" | "services")))
        .filter(|r| r["verb"] == "patch" || r["verb"] == "delete")
        .collect();
    for deleted in ["b", "a", "web"] {
        assert!(
            writes.iter().any(|r| r["verb"] == "delete" && r["name"] == deleted),
            "{deleted} not deleted: {writes:#?}"
        );
    }
    for write in &writes {
        assert_eq!(
            write["impersonateUser"], "system:serviceaccount:shop:deployer",
            "{write}"
        );
        assert!(write["userAgent"].as_str().unwrap().starts_with("sluice/"), "{write}");
    }
}

/// The helm binary `scripts/install-tools.sh` installs: `SLUICE_HELM`, else `/opt/sluice-tools/bin/helm`.
/// None outside CI when it is missing (the Helm tests then say they skipped); in CI its absence fails.
fn helm_binary() -> Option<PathBuf> {
    let path = std::env::var_os("SLUICE_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/sluice-tools/bin/helm"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "helm is missing at {} in CI (scripts/install-tools.sh installs it)",
        path.display()
    );
    eprintln!("SKIPPED: helm not found at {} (set SLUICE_HELM)", path.display());
    None
}

fn helm(helm: &Path, args: &[&str]) -> String {
    let output = Command::new(helm).args(args).output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `helm template` of the chart with `--set` values, expected to fail: its stderr.
fn helm_template_refused(helm_path: &Path, sets: &[&str]) -> String {
    let chart = repo("deploy/helm/sluice");
    let mut args = vec!["template", "sluice", chart.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = Command::new(helm_path).args(&args).output().expect("helm runs");
    assert!(!output.status.success(), "helm {args:?} rendered");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `helm template` of the chart into sluice-system with `--set` values, CRDs included.
fn helm_template(helm_path: &Path, sets: &[&str]) -> Vec<Value> {
    let chart = repo("deploy/helm/sluice");
    let mut args = vec![
        "template",
        "sluice",
        chart.to_str().unwrap(),
        "--namespace",
        "sluice-system",
        "--include-crds",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let rendered = helm(helm_path, &args);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("rendered chart parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Objects by (kind, namespace, name), with labels left out on purpose: the chart carries Helm's
/// standard labels (instance, managed-by, version, helm.sh/chart) where kustomize has its own; selectors
/// are kept, so both installs must select the same pods. Everything else — RBAC rules, container args,
/// env, ports, probes, securityContext, resources, volumes, CRD schemas — must be equal. The Namespace is
/// left out too: Helm's convention is `--create-namespace`, not a chart-owned namespace.
fn comparable(docs: Vec<Value>) -> std::collections::BTreeMap<String, Value> {
    docs.into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|mut d| {
            let key = format!(
                "{}/{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["namespace"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            );
            for labelled in ["/metadata", "/spec/template/metadata"] {
                if let Some(meta) = d.pointer_mut(labelled).and_then(Value::as_object_mut) {
                    meta.remove("labels");
                }
            }
            if let Some(template) = d.pointer_mut("/spec/template").and_then(Value::as_object_mut)
                && template
                    .get("metadata")
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.is_empty())
            {
                template.remove("metadata");
            }
            (key, canonical_numbers(d))
        })
        .collect()
}

/// YAML `100.0` (the committed CRDs) and `100` (as kustomize writes it back) are the same number.
fn canonical_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(canonical_numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, canonical_numbers(v))).collect()),
        other => other,
    }
}

/// The first place two documents differ, as a JSON pointer with both values (CRDs are too big to print).
fn first_difference(left: &Value, right: &Value, path: &str) -> Option<String> {
    if left == right {
        return None;
    }
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}/{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}/{i}"))),
        _ => Some(format!("{path}: {left} vs {right}")),
    }
}

fn assert_same_objects(chart: Vec<Value>, kustomize: Vec<Value>, what: &str) {
    let (chart, kustomize) = (comparable(chart), comparable(kustomize));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>(),
        "{what}: the chart and kustomize render different objects"
    );
    for (key, object) in &chart {
        if let Some(difference) = first_difference(object, &kustomize[key], "") {
            panic!("{what}: {key} differs (chart vs kustomize) at {difference}");
        }
    }
}

#[test]
fn helm_chart_lints_and_renders_what_kustomize_renders() {
    let Some(helm_path) = helm_binary() else { return };
    let chart = repo("deploy/helm/sluice");
    let lint = helm(&helm_path, &["lint", "--strict", chart.to_str().unwrap()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let defaults = helm_template(&helm_path, &[]);
    let rendered = kinds(&defaults);
    assert!(rendered.contains("Deployment/sluice-controller"), "{rendered:?}");
    assert!(
        !rendered.iter().any(|k| k.starts_with("ServiceMonitor/")),
        "off by default: {rendered:?}"
    );
    for role in defaults.iter().filter(|d| d["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(!strings(&rule[field]).iter().any(|v| v == "*"), "wildcard in {role}");
            }
        }
    }
    assert_same_objects(defaults, kustomize(&repo("deploy")), "default values vs deploy/");
    assert_same_objects(
        helm_template(&helm_path, &["dashboard.enabled=true", "serviceMonitor.enabled=true"]),
        with_components(&["dashboard", "servicemonitor"]),
        "dashboard and serviceMonitor vs their components",
    );
    assert_same_objects(
        helm_template(&helm_path, &["rbac.mode=single-tenant"]),
        with_component("single-tenant"),
        "rbac.mode=single-tenant vs the single-tenant component",
    );
    assert_same_objects(
        helm_template(&helm_path, &["rbac.gitsyncAdmin=true"]),
        with_component("gitsync-admin"),
        "rbac.gitsyncAdmin vs the gitsync-admin component",
    );
}

#[test]
fn helm_values_reach_the_controller() {
    let Some(helm_path) = helm_binary() else { return };
    let docs = helm_template(
        &helm_path,
        &[
            "image.repository=registry.example/sluice",
            "image.tag=1.2.3",
            "image.pullPolicy=Always",
            "replicas=3",
            "leaderElection.enabled=false",
            "analysis.addressAllowlist=prometheus.example",
            "notifications.configMap=ops/alerts",
            "nodeSelector.pool=system",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
        ],
    );
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["image"], "registry.example/sluice:1.2.3");
    assert_eq!(container["imagePullPolicy"], "Always");
    let args = strings(&container["args"]);
    assert!(!args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert!(
        args.contains(&"--notifications-configmap=ops/alerts".to_string()),
        "{args:?}"
    );
    let allowlist = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SLUICE_ANALYSIS_ADDRESS_ALLOWLIST")
        .unwrap();
    assert_eq!(allowlist["value"], "prometheus.example");
    assert_eq!(pod["nodeSelector"]["pool"], "system");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    // Without leader election there is no Lease to grant.
    assert!(!kinds(&docs).contains("Role/sluice-leader-election"));
    // A mistyped value is refused by the chart's schema, not ignored.
    let refused = helm_template_refused(&helm_path, &["rbac.mode=everything"]);
    assert!(refused.contains("rbac/mode"), "{refused}");
}

#[test]
fn helm_shards_only_under_leader_election() {
    let Some(helm_path) = helm_binary() else { return };
    let docs = helm_template(&helm_path, &["sharding.shardCount=8"]);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--shard-count=8".to_string()) && args.contains(&"--leader-elect".to_string()),
        "{args:?}"
    );
    // Shards are held through Leases: without leader election the chart refuses, saying why.
    let refused = helm_template_refused(&helm_path, &["sharding.shardCount=2", "leaderElection.enabled=false"]);
    assert!(
        refused.contains("sharding.shardCount > 1 needs leaderElection.enabled"),
        "{refused}"
    );
    // --shard-count's range is the schema's.
    for count in ["0", "257"] {
        let refused = helm_template_refused(&helm_path, &[&format!("sharding.shardCount={count}")]);
        assert!(refused.contains("/sharding/shardCount"), "{refused}");
    }
}
