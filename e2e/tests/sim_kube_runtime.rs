//! kube-runtime against the simulator: reflectors, a Controller, and recovery from a forced 410.
use sluice_e2e::kit as common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, start_sim_with};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use sluice_sim::SimConfig;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cm
}

fn quick_bookmarks() -> SimConfig {
    SimConfig {
        bookmark_interval: Duration::from_millis(300),
        watch_history: 50,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_changes_and_relists_after_410() {
    // No bookmarks: the watcher's resourceVersion only moves with events it selects, so it can fall behind.
    let sim = start_sim_with(SimConfig {
        bookmark_interval: Duration::from_secs(3600),
        ..quick_bookmarks()
    })
    .await;
    let client = sim.client().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i}"), &[("app", "web")]),
        )
        .await
        .unwrap();
    }
    api.create(&PostParams::default(), &config_map("other", &[("app", "db")]))
        .await
        .unwrap();

    let (reader, writer) = reflector::store();
    let stream = watcher(api.clone(), watcher::Config::default().labels("app=web").page_size(2))
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 5, "the label selector filters the listing");

    // A label change moves an object into the selection: the watch shows it as ADDED.
    api.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "relabelled object in the cache", || async {
        (reader.state().len() == 6).then_some(())
    })
    .await;

    // A change the watcher does not select, then compaction and dropped watches: the watcher resumes
    // from a resourceVersion older than the history, gets an ERROR 410 event, relists and carries on.
    api.create(&PostParams::default(), &config_map("unselected", &[("app", "db")]))
        .await
        .unwrap();
    let lists_before = count_lists(&sim);
    sim.api.store.compact();
    sim.http.drop_watches.send_modify(|n| *n += 1);
    for i in 5..8 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i}"), &[("app", "web")]),
        )
        .await
        .unwrap();
    }
    api.delete("cm-0", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(10), "cache converged after the relist", || async {
        let names: Vec<String> = reader
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        (names.len() == 8 && !names.contains(&"cm-0".to_string())).then_some(())
    })
    .await;
    assert!(count_lists(&sim) > lists_before, "the watcher relisted after 410");
    task.abort();
    sim.shutdown().await;
}

fn count_lists(sim: &sluice_sim::Simulator) -> usize {
    sim.http
        .requests
        .snapshot()
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "configmaps")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconciles_every_object_and_writes_back() {
    let sim = start_sim_with(quick_bookmarks()).await;
    let client = sim.client().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let reconciles = Arc::new(AtomicUsize::new(0));

    async fn reconcile(
        cm: Arc<ConfigMap>,
        ctx: Arc<(Api<ConfigMap>, Arc<AtomicUsize>)>,
    ) -> Result<Action, kube::Error> {
        ctx.1.fetch_add(1, Ordering::SeqCst);
        let name = cm.metadata.name.clone().unwrap();
        let patch =
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"annotations": {"seen": "yes"}}});
        ctx.0
            .patch(&name, &PatchParams::apply("test-controller"), &Patch::Apply(patch))
            .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<(Api<ConfigMap>, Arc<AtomicUsize>)>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }

    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new((api.clone(), reconciles.clone())))
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    for i in 0..10 {
        api.create(&PostParams::default(), &config_map(&format!("c-{i}"), &[]))
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "every object annotated by the controller",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let seen = list
                .items
                .iter()
                .filter(|c| c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("seen")))
                .count();
            (seen == 10).then_some(())
        },
    )
    .await;
    let managers: Vec<String> = api
        .get("c-0")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"test-controller".to_string()),
        "server-side apply recorded the manager: {managers:?}"
    );
    // Re-applying the same annotation changes nothing, so the controller is not re-triggered forever.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        reconciles.load(Ordering::SeqCst),
        settled,
        "no-op applies must not cause watch events"
    );
    task.abort();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_watchers_get_partial_object_metadata() {
    let sim = start_sim_with(quick_bookmarks()).await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("meta", &[("app", "web")]))
        .await
        .unwrap();
    let listed = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.labels.as_ref().unwrap()["app"], "web");
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(sim.client().unwrap(), "default");
    let mut stream = watcher(metadata, watcher::Config::default()).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("meta"));
    api.create(&PostParams::default(), &config_map("later", &[]))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("later"));
    sim.shutdown().await;
}
