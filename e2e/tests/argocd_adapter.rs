//! The Argo CD adapter against the simulator with Argo CD's Application CRD: a canary aborted by its
//! analysis turns off automated sync of the Application that deploys it; a manual abort does not.
use sluice_e2e::kit as common;

use std::time::Duration;

use common::{eventually, install_crds, start_sim};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sluice::api::rollout::Rollout;
use sluice::gitsync::argocd::{
    self, AUTO_SYNC_DISABLED_BY_ANNOTATION, ArgoCdAdapterConfig, EVENT_REASON, LAST_HEALTHY_REVISION_ANNOTATION,
    TRACKING_ID_ANNOTATION, application_resource,
};
use tokio_util::sync::CancellationToken;

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn install_application_crd(client: &Client) {
    let path = format!("{}/fixtures/argocd-application-crd.yaml", env!("CARGO_MANIFEST_DIR"));
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("CRD YAML");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("Application CRD accepted");
}

/// What deploy/argocd/README.md says the adapter needs beyond deploy/: `get` and `patch` on
/// Applications in Argo CD's namespace, as a Role there bound to the controller's ServiceAccount.
async fn grant_adapter_rights(client: &Client) {
    let (namespace, account) = common::CONTROLLER_SERVICE_ACCOUNT;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "sluice-argocd-adapter", "namespace": "argocd"},
        "rules": [{"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "patch"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), "argocd")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "sluice-argocd-adapter", "namespace": "argocd"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sluice-argocd-adapter"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), "argocd")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// An Application with automated sync that deployed good2222, then bad3333.
fn application(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example.com/shop.git", "path": name, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
        "status": {
            "sync": {"status": "Synced", "revision": "bad3333"},
            "health": {"status": "Degraded"},
            "history": [
                {"id": 1, "revision": "good2222", "deployedAt": "2025-03-01T10:00:00Z"},
                {"id": 2, "revision": "bad3333", "deployedAt": "2025-03-01T11:00:00Z"},
            ],
        },
    }))
    .unwrap()
}

/// Rollout `name` in `shop`, tracked by Application `name`, aborted for `reason`.
async fn aborted_rollout(client: &Client, name: &str, reason: &str) {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "shop");
    let mut rollout = Rollout::example(name, 2, vec![]).with_namespace("shop");
    rollout.annotations_mut().insert(
        TRACKING_ID_ANNOTATION.into(),
        format!("{name}:sluice.dev/Rollout:shop/{name}"),
    );
    rollouts.create(&PostParams::default(), &rollout).await.unwrap();
    let status = json!({"status": {"abort": true, "abortReason": reason, "abortedAt": "2025-03-01T11:05:00Z"}});
    rollouts
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn annotation(app: &DynamicObject, key: &str) -> Option<String> {
    app.annotations().get(key).cloned()
}

fn automated(app: &DynamicObject) -> Option<Value> {
    app.data
        .pointer("/spec/syncPolicy/automated")
        .filter(|v| !v.is_null())
        .cloned()
}

#[tokio::test]
async fn an_analysis_abort_turns_off_auto_sync_and_a_manual_abort_does_not() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    install_application_crd(&client).await;
    create_namespace(&client, "argocd").await;
    create_namespace(&client, "shop").await;
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &application_resource());
    for name in ["web", "api"] {
        apps.create(&PostParams::default(), &application(name)).await.unwrap();
    }
    // Created before the adapter starts (a restart finds it) and after (a watch event brings it).
    aborted_rollout(&client, "api", "Requested").await;
    // The adapter runs as deploy/'s ServiceAccount, granted the Applications the way deploy/argocd/
    // tells an operator to (the base grants nothing on Argo CD's kinds).
    let controller = Client::try_from(common::controller_kube_config(&sim).await.unwrap()).unwrap();
    grant_adapter_rights(&client).await;
    let shutdown = CancellationToken::new();
    let adapter = tokio::spawn(argocd::run(
        controller,
        sluice::controller::rollouts::Scope {
            namespace: Some("shop".into()),
            shards: None,
        },
        ArgoCdAdapterConfig {
            argocd_namespace: "argocd".into(),
        },
        shutdown.clone(),
    ));
    aborted_rollout(&client, "web", "AnalysisFailed").await;

    let web = eventually(Duration::from_secs(20), "automated sync of web turned off", || {
        let apps = apps.clone();
        async move { apps.get("web").await.ok().filter(|app| automated(app).is_none()) }
    })
    .await;
    assert_eq!(
        annotation(&web, LAST_HEALTHY_REVISION_ANNOTATION).as_deref(),
        Some("good2222")
    );
    assert_eq!(
        annotation(&web, AUTO_SYNC_DISABLED_BY_ANNOTATION).as_deref(),
        Some("shop/web aborted (AnalysisFailed) at 2025-03-01T11:05:00Z")
    );
    // The rest of the sync policy and spec is left alone.
    assert_eq!(web.data["spec"]["source"]["targetRevision"], "main");

    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    let event = eventually(Duration::from_secs(10), "ArgoCDAutoSyncDisabled event", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(EVENT_REASON))
        }
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("web"));
    assert!(
        event.note.as_deref().unwrap_or_default().contains("argocd/web"),
        "{event:?}"
    );

    // The manual abort was reconciled at the start; give any late reconcile time, then check.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api = apps.get("api").await.unwrap();
    assert_eq!(automated(&api), Some(json!({"prune": true, "selfHeal": true})));
    assert_eq!(annotation(&api, AUTO_SYNC_DISABLED_BY_ANNOTATION), None);

    // Handled once: another status write on the aborted Rollout patches nothing again.
    let version = web.resource_version();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "shop");
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"message": "aborted"}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(apps.get("web").await.unwrap().resource_version(), version);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), adapter).await;
    let denied = common::denied_to_controller(&sim.url()).await;
    assert!(denied.is_empty(), "calls the adapter was refused: {denied:#?}");
}
