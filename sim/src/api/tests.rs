//! Object-life semantics of the API layer, exercised without HTTP.
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn server() -> Arc<ApiServer> {
    ApiServer::new(StoreConfig::default())
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: manager.into(),
        ..Default::default()
    }
}

fn rt(api: &ApiServer, group: &str, plural: &str) -> Arc<ResourceType> {
    api.resource(group, plural).expect("known resource")
}

fn replica_set(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
}

fn config_map(name: &str, owner: Option<(&str, &str)>) -> Value {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    if let Some((owner_name, uid)) = owner {
        cm["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_name, "uid": uid, "blockOwnerDeletion": true}]);
    }
    cm
}

fn exists(api: &ApiServer, rt: &ResourceType, name: &str) -> bool {
    api.get(rt, "default", name).is_ok()
}

#[test]
fn create_assigns_identity_and_generation_and_drops_status() {
    let api = server();
    let rs = rt(&api, "apps", "replicasets");
    let mut body = replica_set("web", 2);
    body["status"] = json!({"replicas": 99});
    let created = api.create(&rs, "default", body, &opts("test")).unwrap().object;
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert!(
        created.get("status").is_none(),
        "status is not writable through the main resource"
    );
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "test");
    let duplicate = api
        .create(&rs, "default", replica_set("web", 1), &opts("test"))
        .unwrap_err();
    assert_eq!((duplicate.code, duplicate.reason), (409, "AlreadyExists"));
}

#[test]
fn generate_name_and_missing_namespace() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    let body = json!({"metadata": {"generateName": "cfg-"}});
    let created = api.create(&cm, "default", body, &opts("t")).unwrap().object;
    let name = created["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    let err = api
        .create(&cm, "nowhere", config_map("x", None), &opts("t"))
        .unwrap_err();
    assert_eq!(err.code, 404);
    let err = api
        .create(&cm, "default", json!({"metadata": {}}), &opts("t"))
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("metadata.name"), "{}", err.message);
}

#[test]
fn generation_counts_spec_changes_and_status_writes_are_isolated() {
    let api = server();
    let rs = rt(&api, "apps", "replicasets");
    api.create(&rs, "default", replica_set("web", 2), &opts("t")).unwrap();
    let label = br#"{"metadata":{"labels":{"x":"y"}}}"#;
    let written = api
        .patch(
            &rs,
            "v1",
            "default",
            "web",
            PatchBody::new(PatchKind::Merge, label),
            &opts("t"),
        )
        .unwrap()
        .object;
    assert_eq!(
        written["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );
    let scale = br#"{"spec":{"replicas":5},"status":{"replicas":7}}"#;
    let written = api
        .patch(
            &rs,
            "v1",
            "default",
            "web",
            PatchBody::new(PatchKind::Merge, scale),
            &opts("t"),
        )
        .unwrap()
        .object;
    assert_eq!(written["metadata"]["generation"], 2);
    assert!(written.get("status").is_none(), "status ignored on the main resource");
    let status_opts = WriteOptions {
        subresource: Some("status".into()),
        ..opts("t")
    };
    let status = br#"{"spec":{"replicas":1},"status":{"replicas":5}}"#;
    let written = api
        .patch(
            &rs,
            "v1",
            "default",
            "web",
            PatchBody::new(PatchKind::Merge, status),
            &status_opts,
        )
        .unwrap()
        .object;
    assert_eq!(written["status"]["replicas"], 5);
    assert_eq!(written["spec"]["replicas"], 5, "spec ignored on the status subresource");
    assert_eq!(written["metadata"]["generation"], 2);
}

#[test]
fn update_with_a_stale_resource_version_conflicts_and_no_op_writes_keep_the_version() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    let created = api
        .create(&cm, "default", config_map("c", None), &opts("t"))
        .unwrap()
        .object;
    let mut stale = created.clone();
    stale["data"]["k"] = json!("new");
    api.update(&cm, "default", "c", stale.clone(), &opts("t")).unwrap();
    let err = api.update(&cm, "default", "c", stale, &opts("t")).unwrap_err();
    assert_eq!(err.code, 409);
    assert!(err.message.contains("has been modified"), "{}", err.message);
    let before = api.get(&cm, "default", "c").unwrap().resource_version;
    let same = br#"{"data":{"k":"new"}}"#;
    api.patch(
        &cm,
        "v1",
        "default",
        "c",
        PatchBody::new(PatchKind::Merge, same),
        &opts("t"),
    )
    .unwrap();
    assert_eq!(
        api.get(&cm, "default", "c").unwrap().resource_version,
        before,
        "a no-op write is not a change"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    let dry = WriteOptions {
        dry_run: true,
        ..opts("t")
    };
    let written = api.create(&cm, "default", config_map("c", None), &dry).unwrap();
    assert_eq!(written.object["metadata"]["name"], "c");
    assert!(!exists(&api, &cm, "c"));
}

#[test]
fn secret_string_data_is_folded_into_data() {
    let api = server();
    let secrets = rt(&api, "", "secrets");
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"kept": "YQ==", "token": "b2xk"}, "stringData": {"token": "new"}});
    let written = api.create(&secrets, "default", body, &opts("t")).unwrap();
    assert_eq!(written.object["data"], json!({"kept": "YQ==", "token": "bmV3"}));
    assert!(written.object.get("stringData").is_none(), "write-only");
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    let mut body = config_map("held", None);
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create(&cm, "default", body, &opts("t")).unwrap();
    let (object, gone) = api
        .delete(&cm, "v1", "default", "held", &DeleteOptions::default())
        .unwrap();
    assert!(!gone);
    assert!(object["metadata"]["deletionTimestamp"].is_string());
    let add = br#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#;
    assert_eq!(
        api.patch(
            &cm,
            "v1",
            "default",
            "held",
            PatchBody::new(PatchKind::Merge, add),
            &opts("t")
        )
        .unwrap_err()
        .code,
        422
    );
    let release = br#"{"metadata":{"finalizers":null}}"#;
    api.patch(
        &cm,
        "v1",
        "default",
        "held",
        PatchBody::new(PatchKind::Merge, release),
        &opts("t"),
    )
    .unwrap();
    assert!(
        !exists(&api, &cm, "held"),
        "removing the last finalizer completes the deletion"
    );
}

#[test]
fn background_deletion_collects_dependents_and_orphan_keeps_them() {
    let api = server();
    let rs = rt(&api, "apps", "replicasets");
    let cm = rt(&api, "", "configmaps");
    for (owner, dependent) in [("a", "a-dep"), ("b", "b-dep")] {
        let uid = api
            .create(&rs, "default", replica_set(owner, 1), &opts("t"))
            .unwrap()
            .object["metadata"]["uid"]
            .clone();
        api.create(
            &cm,
            "default",
            config_map(dependent, Some((owner, uid.as_str().unwrap()))),
            &opts("t"),
        )
        .unwrap();
    }
    api.delete(&rs, "v1", "default", "a", &DeleteOptions::default())
        .unwrap();
    api.collect_garbage();
    assert!(!exists(&api, &cm, "a-dep"), "background deletion collects dependents");
    let orphan = DeleteOptions {
        propagation: Propagation::Orphan,
        ..Default::default()
    };
    api.delete(&rs, "v1", "default", "b", &orphan).unwrap();
    api.collect_garbage();
    let kept = api.get(&cm, "default", "b-dep").unwrap().to_value();
    assert!(
        kept["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "orphaned: {kept}"
    );
}

#[test]
fn foreground_deletion_waits_for_dependents() {
    let api = server();
    let rs = rt(&api, "apps", "replicasets");
    let cm = rt(&api, "", "configmaps");
    let uid = api
        .create(&rs, "default", replica_set("owner", 1), &opts("t"))
        .unwrap()
        .object["metadata"]["uid"]
        .clone();
    api.create(
        &cm,
        "default",
        config_map("dep", Some(("owner", uid.as_str().unwrap()))),
        &opts("t"),
    )
    .unwrap();
    let foreground = DeleteOptions {
        propagation: Propagation::Foreground,
        ..Default::default()
    };
    let (object, gone) = api.delete(&rs, "v1", "default", "owner", &foreground).unwrap();
    assert!(!gone);
    assert_eq!(object["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    api.collect_garbage();
    api.collect_garbage();
    assert!(!exists(&api, &cm, "dep"));
    assert!(
        !exists(&api, &rs, "owner"),
        "the owner goes once its dependents are gone"
    );
}

#[test]
fn objects_whose_owner_never_existed_are_collected() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    api.create(
        &cm,
        "default",
        config_map("stray", Some(("ghost", "no-such-uid"))),
        &opts("t"),
    )
    .unwrap();
    api.collect_garbage();
    assert!(!exists(&api, &cm, "stray"));
}

#[test]
fn deleting_a_namespace_empties_it_first() {
    let api = server();
    let ns = rt(&api, "", "namespaces");
    let cm = rt(&api, "", "configmaps");
    api.create(&ns, "", json!({"metadata": {"name": "shop"}}), &opts("t"))
        .unwrap();
    api.create(&cm, "shop", config_map("c", None), &opts("t")).unwrap();
    let (object, gone) = api.delete(&ns, "v1", "", "shop", &DeleteOptions::default()).unwrap();
    assert!(!gone);
    assert_eq!(object["status"]["phase"], "Terminating");
    let refused = api
        .create(&cm, "shop", config_map("late", None), &opts("t"))
        .unwrap_err();
    assert_eq!(refused.code, 403);
    api.collect_garbage();
    assert!(api.get(&cm, "shop", "c").is_err());
    assert!(api.get(&ns, "", "shop").is_err());
}

#[test]
fn a_crd_serves_its_kind_validates_and_defaults_and_deleting_it_removes_objects() {
    let api = server();
    let crds = rt(&api, "apiextensions.k8s.io", "customresourcedefinitions");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "maximum": 10}, "color": {"type": "string", "default": "green"}}}}}}}]}});
    let created = api.create(&crds, "", crd, &opts("t")).unwrap().object;
    assert_eq!(created["status"]["conditions"][1]["type"], "Established");
    let widgets = api.registry().lookup("example.dev", "v1", "widgets").unwrap();
    let widget = api
        .create(
            &widgets,
            "default",
            json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}),
            &opts("t"),
        )
        .unwrap()
        .object;
    assert_eq!(widget["spec"]["color"], "green");
    let err = api
        .create(
            &widgets,
            "default",
            json!({"metadata": {"name": "big"}, "spec": {"size": 30}}),
            &opts("t"),
        )
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("spec.size"), "{}", err.message);
    let strict = WriteOptions {
        field_validation: FieldValidation::Strict,
        ..opts("t")
    };
    let err = api
        .create(
            &widgets,
            "default",
            json!({"metadata": {"name": "odd"}, "spec": {"size": 1, "shape": "x"}}),
            &strict,
        )
        .unwrap_err();
    assert!(err.message.contains("shape"), "{}", err.message);
    let warned = api
        .create(
            &widgets,
            "default",
            json!({"metadata": {"name": "odd"}, "spec": {"size": 1, "shape": "x"}}),
            &opts("t"),
        )
        .unwrap();
    assert!(warned.warnings.iter().any(|w| w.contains("shape")) && warned.object["spec"].get("shape").is_none());
    api.delete(&crds, "v1", "", "widgets.example.dev", &DeleteOptions::default())
        .unwrap();
    assert!(api.registry().lookup("example.dev", "v1", "widgets").is_err());
    assert!(api.get(&widgets, "default", "w").is_err());
}

#[test]
fn apply_creates_then_conflicts_with_another_manager() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    let applied = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"one"}}"#;
    let written = api
        .patch(
            &cm,
            "v1",
            "default",
            "a",
            PatchBody::new(PatchKind::Apply, applied),
            &opts("git"),
        )
        .unwrap();
    assert!(written.created);
    let other = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"two"}}"#;
    let err = api
        .patch(
            &cm,
            "v1",
            "default",
            "a",
            PatchBody::new(PatchKind::Apply, other),
            &opts("human"),
        )
        .unwrap_err();
    assert_eq!(err.code, 409);
    let forced = WriteOptions {
        force: true,
        ..opts("human")
    };
    let written = api
        .patch(
            &cm,
            "v1",
            "default",
            "a",
            PatchBody::new(PatchKind::Apply, other),
            &forced,
        )
        .unwrap()
        .object;
    assert_eq!(written["data"]["k"], "two");
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: yaml}\n";
    let written = api
        .patch(
            &cm,
            "v1",
            "default",
            "b",
            PatchBody::new(PatchKind::Apply, yaml),
            &opts("git"),
        )
        .unwrap()
        .object;
    assert_eq!(written["data"]["k"], "yaml", "apply bodies may be YAML");
    let missing_manager = api
        .patch(
            &cm,
            "v1",
            "default",
            "c",
            PatchBody::new(PatchKind::Apply, applied),
            &opts(""),
        )
        .unwrap_err();
    assert_eq!(missing_manager.code, 400);
}

#[test]
fn list_pages_with_continue_tokens_at_one_resource_version() {
    let api = server();
    let cm = rt(&api, "", "configmaps");
    for i in 0..5 {
        api.create(&cm, "default", config_map(&format!("c{i}"), None), &opts("t"))
            .unwrap();
    }
    let first = api
        .list(
            &cm,
            Some("default"),
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.remaining, Some(3));
    let second = api
        .list(
            &cm,
            Some("default"),
            &ListOptions {
                limit: Some(10),
                continue_token: first.continue_token.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(second.items.len(), 3);
    assert_eq!(second.resource_version, first.resource_version);
    assert!(second.continue_token.is_none());
    let bad = api
        .list(
            &cm,
            None,
            &ListOptions {
                continue_token: Some("zz".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(bad.code, 400);
}

#[test]
fn scale_subresource_reads_and_writes_spec_replicas() {
    let api = server();
    let rs = rt(&api, "apps", "replicasets");
    api.create(&rs, "default", replica_set("web", 2), &opts("t")).unwrap();
    let scale = api.scale(&rs, "default", "web").unwrap();
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let scaled = api.write_scale(&rs, "default", "web", &opts("t"), |mut s| {
        s["spec"]["replicas"] = json!(5);
        Ok(s)
    });
    assert_eq!(scaled.unwrap()["spec"]["replicas"], 5);
    assert_eq!(
        api.get(&rs, "default", "web").unwrap().to_value()["spec"]["replicas"],
        5
    );
    let stale = api.write_scale(&rs, "default", "web", &opts("t"), |mut s| {
        s["metadata"]["resourceVersion"] = json!("1");
        Ok(s)
    });
    assert_eq!(stale.unwrap_err().code, 409);
    let cm = rt(&api, "", "configmaps");
    assert_eq!(api.scale(&cm, "default", "x").unwrap_err().code, 404);
}

#[test]
fn events_k8s_io_events_are_core_events_seen_differently() {
    let api = server();
    let new_events = rt(&api, "events.k8s.io", "events");
    let core_events = rt(&api, "", "events");
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "regarding": {"kind": "Rollout", "name": "web", "namespace": "default"}, "note": "step 1 done",
        "reason": "StepCompleted", "type": "Normal", "reportingController": "sluice", "reportingInstance": "sluice-0",
        "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Progress"});
    let created = api.create(&new_events, "default", event, &opts("t")).unwrap().object;
    assert_eq!(created["note"], "step 1 done");
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    let core = ApiServer::present(
        &core_events,
        "v1",
        api.get(&core_events, "default", "e1").unwrap().to_value(),
    );
    assert_eq!(core["message"], "step 1 done");
    assert_eq!(core["involvedObject"]["name"], "web");
    let patch = br#"{"series":{"count":2,"lastObservedTime":"2026-01-01T00:01:00.000000Z"}}"#;
    let patched = api
        .patch(
            &new_events,
            "v1",
            "default",
            "e1",
            PatchBody::new(PatchKind::Merge, patch),
            &opts("t"),
        )
        .unwrap();
    assert_eq!(patched.object["series"]["count"], 2);
    assert_eq!(
        api.list(&core_events, Some("default"), &ListOptions::default())
            .unwrap()
            .items
            .len(),
        1
    );
}
