//! The authorizer against the RBAC behaviour Kubernetes documents.
use serde_json::{Value, json};

use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, groups)
}

fn sa(namespace: &str, name: &str) -> UserInfo {
    let ns_group = format!("system:serviceaccounts:{namespace}");
    UserInfo::new(
        format!("system:serviceaccount:{namespace}:{name}"),
        &["system:serviceaccounts", &ns_group, ALL_AUTHENTICATED],
    )
}

fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes::Resource(ResourceAttributes {
        verb: verb.into(),
        group: group.into(),
        version: "v1".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn path(verb: &str, path: &str) -> Attributes {
    Attributes::NonResource {
        verb: verb.into(),
        path: path.into(),
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({"kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": rules})
}

fn cluster_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

fn binding(namespace: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
           "subjects": subjects})
}

fn alice_subject() -> Value {
    json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])
}

/// Runs `(who, what, allowed)` cases against one policy.
fn check(objects: &[Value], cases: &[(UserInfo, Attributes, bool)]) {
    let rbac = RbacSnapshot::from_objects(objects);
    for (who, what, expected) in cases {
        let decision = authorize(who, what, &rbac);
        assert_eq!(decision.allowed, *expected, "{} doing {what:?}: {decision:?}", who.name);
    }
}

#[test]
fn cluster_role_bindings_grant_in_every_namespace_and_at_the_cluster_scope() {
    let objects = [
        cluster_role(
            "reader",
            json!([{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list"]}]),
        ),
        cluster_binding("alice-reads", "reader", alice_subject()),
    ];
    let alice = user("alice", &[ALL_AUTHENTICATED]);
    check(
        &objects,
        &[
            (alice.clone(), resource("list", "", "pods", "shop", ""), true),
            (alice.clone(), resource("get", "", "pods", "kube-system", "web"), true),
            (alice.clone(), resource("list", "", "pods", "", ""), true),
            (alice.clone(), resource("get", "", "namespaces", "", "shop"), true),
            (alice.clone(), resource("delete", "", "pods", "shop", "web"), false),
            (alice.clone(), resource("list", "apps", "pods", "shop", ""), false),
            (alice, resource("list", "", "secrets", "shop", ""), false),
            (
                user("bob", &[ALL_AUTHENTICATED]),
                resource("list", "", "pods", "shop", ""),
                false,
            ),
        ],
    );
}

#[test]
fn role_bindings_grant_only_in_their_namespace() {
    let objects = [
        role(
            "shop",
            "editor",
            json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]),
        ),
        binding("shop", "alice-edits", "Role", "editor", alice_subject()),
        // A Role of another namespace: a binding in `shop` naming it finds nothing.
        role(
            "other",
            "secrets",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        ),
        binding("shop", "alice-secrets", "Role", "secrets", alice_subject()),
        cluster_role(
            "pod-reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        ),
        binding("shop", "alice-pods", "ClusterRole", "pod-reader", alice_subject()),
    ];
    let alice = user("alice", &[ALL_AUTHENTICATED]);
    check(
        &objects,
        &[
            (
                alice.clone(),
                resource("patch", "apps", "deployments", "shop", "web"),
                true,
            ),
            (
                alice.clone(),
                resource("patch", "apps", "deployments", "other", "web"),
                false,
            ),
            // A namespaced grant never covers the cluster-wide list.
            (alice.clone(), resource("list", "apps", "deployments", "", ""), false),
            (alice.clone(), resource("get", "", "secrets", "shop", "db"), false),
            (alice.clone(), resource("get", "", "secrets", "other", "db"), false),
            // A ClusterRole through a RoleBinding grants in the binding's namespace only.
            (alice.clone(), resource("get", "", "pods", "shop", "web"), true),
            (alice, resource("get", "", "pods", "other", "web"), false),
        ],
    );
}

#[test]
fn missing_roles_grant_nothing_and_are_named_in_the_reason() {
    let objects = [binding("shop", "dangling", "Role", "gone", alice_subject())];
    let rbac = RbacSnapshot::from_objects(&objects);
    let decision = authorize(
        &user("alice", &[ALL_AUTHENTICATED]),
        &resource("get", "", "pods", "shop", "web"),
        &rbac,
    );
    assert_eq!(
        decision,
        Decision::no_opinion("RBAC: role.rbac.authorization.k8s.io \"gone\" not found")
    );
}

#[test]
fn resource_names_match_only_requests_that_name_the_object() {
    let objects = [
        role(
            "shop",
            "one-config",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"],
                    "verbs": ["get", "update", "create", "list", "delete"]}]),
        ),
        binding("shop", "alice", "Role", "one-config", alice_subject()),
    ];
    let alice = user("alice", &[ALL_AUTHENTICATED]);
    check(
        &objects,
        &[
            (
                alice.clone(),
                resource("get", "", "configmaps", "shop", "settings"),
                true,
            ),
            (
                alice.clone(),
                resource("update", "", "configmaps", "shop", "settings"),
                true,
            ),
            (
                alice.clone(),
                resource("delete", "", "configmaps", "shop", "settings"),
                true,
            ),
            (alice.clone(), resource("get", "", "configmaps", "shop", "other"), false),
            // A list names no object, nor does a create (its name is in the body, not the path).
            (alice.clone(), resource("list", "", "configmaps", "shop", ""), false),
            (alice, resource("create", "", "configmaps", "shop", ""), false),
        ],
    );
}

#[test]
fn subresources_must_be_granted_by_name_or_by_star_slash() {
    let objects = [
        cluster_role(
            "status-writer",
            json!([{"apiGroups": ["sluice.dev"], "resources": ["rollouts/status"], "verbs": ["update", "patch"]},
                   {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]),
        ),
        cluster_binding("alice", "status-writer", alice_subject()),
    ];
    let alice = user("alice", &[ALL_AUTHENTICATED]);
    check(
        &objects,
        &[
            (
                alice.clone(),
                resource("patch", "sluice.dev", "rollouts/status", "shop", "web"),
                true,
            ),
            // The subresource does not grant the resource, nor the resource its subresources.
            (
                alice.clone(),
                resource("patch", "sluice.dev", "rollouts", "shop", "web"),
                false,
            ),
            (
                alice.clone(),
                resource("get", "apps", "deployments/scale", "shop", "web"),
                true,
            ),
            (
                alice.clone(),
                resource("get", "apps", "replicasets/scale", "shop", "web"),
                true,
            ),
            (
                alice.clone(),
                resource("get", "apps", "deployments/status", "shop", "web"),
                false,
            ),
            (
                alice.clone(),
                resource("get", "apps", "deployments", "shop", "web"),
                false,
            ),
            (
                alice.clone(),
                resource("create", "", "serviceaccounts/token", "shop", "ci"),
                true,
            ),
            (alice, resource("create", "", "serviceaccounts", "shop", ""), false),
        ],
    );
    // A resource rule for the parent does not reach its subresources either.
    let objects = [
        cluster_role(
            "deployments",
            json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]),
        ),
        cluster_binding("alice", "deployments", alice_subject()),
    ];
    check(
        &objects,
        &[(
            user("alice", &[]),
            resource("update", "apps", "deployments/scale", "shop", "web"),
            false,
        )],
    );
}

#[test]
fn wildcards_match_every_verb_group_and_resource_including_subresources() {
    let objects = [
        cluster_role("all", json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])),
        cluster_binding("alice", "all", alice_subject()),
    ];
    let alice = user("alice", &[]);
    check(
        &objects,
        &[
            (
                alice.clone(),
                resource("deletecollection", "apps", "replicasets", "shop", ""),
                true,
            ),
            (
                alice.clone(),
                resource("patch", "sluice.dev", "rollouts/status", "shop", "web"),
                true,
            ),
            (alice.clone(), resource("impersonate", "", "users", "", "bob"), true),
            // Resource rules never grant non-resource URLs.
            (alice, path("get", "/healthz/etcd"), false),
        ],
    );
}

#[test]
fn group_subjects_match_members() {
    let objects = [
        cluster_role(
            "viewer",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        ),
        cluster_binding("devs", "viewer", json!([{"kind": "Group", "name": "devs"}])),
    ];
    check(
        &objects,
        &[
            (
                user("carol", &["devs", ALL_AUTHENTICATED]),
                resource("list", "", "pods", "shop", ""),
                true,
            ),
            (
                user("devs", &[ALL_AUTHENTICATED]),
                resource("list", "", "pods", "shop", ""),
                false,
            ),
        ],
    );
}

#[test]
fn service_account_subjects_default_to_the_binding_namespace() {
    let objects = [
        cluster_role(
            "pods",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        ),
        // No namespace on the subject: the RoleBinding's (team-a) is meant.
        binding(
            "team-a",
            "local",
            "ClusterRole",
            "pods",
            json!([{"kind": "ServiceAccount", "name": "deployer"}]),
        ),
        // A RoleBinding in team-b may name a ServiceAccount of team-a.
        binding(
            "team-b",
            "cross",
            "ClusterRole",
            "pods",
            json!([{"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a"}]),
        ),
        // A ClusterRoleBinding's ServiceAccount subject needs a namespace to match anyone.
        cluster_binding(
            "no-namespace",
            "pods",
            json!([{"kind": "ServiceAccount", "name": "default"}]),
        ),
        cluster_role(
            "secrets",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        ),
        cluster_binding(
            "ci",
            "secrets",
            json!([{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]),
        ),
    ];
    check(
        &objects,
        &[
            (
                sa("team-a", "deployer"),
                resource("get", "", "pods", "team-a", "x"),
                true,
            ),
            (
                sa("team-a", "deployer"),
                resource("get", "", "pods", "team-b", "x"),
                true,
            ),
            (
                sa("team-a", "deployer"),
                resource("get", "", "pods", "team-c", "x"),
                false,
            ),
            (
                sa("team-b", "deployer"),
                resource("get", "", "pods", "team-a", "x"),
                false,
            ),
            (
                sa("default", "default"),
                resource("get", "", "pods", "team-c", "x"),
                false,
            ),
            (
                sa("tools", "ci"),
                resource("get", "", "secrets", "kube-system", "x"),
                true,
            ),
            // A user named like a service account is one.
            (
                user("system:serviceaccount:tools:ci", &[]),
                resource("get", "", "secrets", "kube-system", "x"),
                true,
            ),
            (
                sa("tools", "other"),
                resource("get", "", "secrets", "kube-system", "x"),
                false,
            ),
        ],
    );
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star_and_only_through_cluster_bindings() {
    let objects = [
        cluster_role(
            "metrics",
            json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]),
        ),
        cluster_binding("alice", "metrics", alice_subject()),
        binding(
            "shop",
            "alice-local",
            "ClusterRole",
            "metrics",
            json!([{"kind": "User", "name": "bob"}]),
        ),
    ];
    let alice = user("alice", &[]);
    check(
        &objects,
        &[
            (alice.clone(), path("get", "/metrics"), true),
            (alice.clone(), path("get", "/metrics/extra"), false),
            (alice.clone(), path("get", "/logs/"), true),
            (alice.clone(), path("get", "/logs/kube/a.log"), true),
            (alice.clone(), path("post", "/metrics"), false),
            (alice, path("get", "/log"), false),
            (user("bob", &[]), path("get", "/metrics"), false),
        ],
    );
}

#[test]
fn masters_are_allowed_everything_without_any_binding() {
    let masters = user("root", &[SYSTEM_MASTERS]);
    let empty: [Value; 0] = [];
    check(
        &empty,
        &[
            (
                masters.clone(),
                resource("delete", "", "namespaces", "", "kube-system"),
                true,
            ),
            (masters.clone(), resource("impersonate", "", "users", "", "x"), true),
            (masters, path("put", "/anything"), true),
        ],
    );
}

#[test]
fn bootstrap_policy_lets_clients_discover_and_review_themselves() {
    let empty: [Value; 0] = [];
    let someone = user("someone", &[ALL_AUTHENTICATED]);
    let anonymous = UserInfo::anonymous();
    check(
        &empty,
        &[
            (someone.clone(), path("get", "/api"), true),
            (someone.clone(), path("get", "/apis/apps/v1"), true),
            (someone.clone(), path("get", "/openapi/v3"), true),
            (someone.clone(), path("get", "/version"), true),
            (someone.clone(), path("post", "/api"), false),
            (
                someone.clone(),
                resource("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""),
                true,
            ),
            (
                someone.clone(),
                resource("create", "authorization.k8s.io", "selfsubjectrulesreviews", "", ""),
                true,
            ),
            (
                someone.clone(),
                resource("create", "authentication.k8s.io", "selfsubjectreviews", "", ""),
                true,
            ),
            (
                someone.clone(),
                resource("create", "authorization.k8s.io", "subjectaccessreviews", "", ""),
                false,
            ),
            (someone, resource("list", "", "pods", "default", ""), false),
            (anonymous.clone(), path("get", "/version"), true),
            (anonymous.clone(), path("get", "/healthz"), true),
            (anonymous.clone(), path("get", "/readyz"), true),
            (anonymous.clone(), path("get", "/apis"), false),
            (anonymous.clone(), path("get", "/openapi/v3"), false),
            (
                anonymous.clone(),
                resource("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""),
                false,
            ),
            (anonymous, resource("list", "", "pods", "default", ""), false),
        ],
    );
}

#[test]
fn cluster_admin_can_be_bound_without_being_stored() {
    let objects = [cluster_binding("alice-admin", "cluster-admin", alice_subject())];
    check(
        &objects,
        &[
            (
                user("alice", &[]),
                resource("delete", "", "secrets", "kube-system", "x"),
                true,
            ),
            (user("alice", &[]), path("get", "/debug/pprof"), true),
        ],
    );
}

#[test]
fn allow_reasons_name_the_binding_role_and_subject() {
    let objects = [
        cluster_role(
            "pods",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        ),
        binding(
            "team-a",
            "reader",
            "ClusterRole",
            "pods",
            json!([{"kind": "ServiceAccount", "name": "ci"}]),
        ),
    ];
    let rbac = RbacSnapshot::from_objects(&objects);
    let decision = authorize(&sa("team-a", "ci"), &resource("get", "", "pods", "team-a", "x"), &rbac);
    assert_eq!(
        decision.reason,
        "RBAC: allowed by RoleBinding \"reader/team-a\" of ClusterRole \"pods\" to ServiceAccount \"ci/team-a\""
    );
}

#[test]
fn malformed_objects_grant_nothing_and_do_not_panic() {
    let objects = [
        json!({"kind": "ClusterRole", "metadata": {"name": "odd"}, "rules": "everything"}),
        json!({"kind": "ClusterRole", "metadata": {"name": "odd2"}, "rules": [7, null, {"verbs": "*"}]}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": 5}, "roleRef": [], "subjects": {"kind": "User"}}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "odd2"},
               "subjects": [null, {"kind": "User", "name": "alice"}]}),
        json!({"kind": "RoleBinding", "metadata": {}, "subjects": [{"kind": 1}]}),
        json!("not an object"),
    ];
    check(
        &objects,
        &[(user("alice", &[]), resource("get", "", "pods", "shop", "x"), false)],
    );
}

#[test]
fn forbidden_messages_are_the_api_servers() {
    let cases = [
        (
            resource("get", "", "secrets", "kube-system", "db"),
            "secrets \"db\" is forbidden: User \"bob\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
        ),
        (
            resource("list", "", "secrets", "kube-system", ""),
            "secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
        ),
        (
            resource("list", "", "namespaces", "", ""),
            "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope",
        ),
        (
            resource("patch", "sluice.dev", "rollouts/status", "shop", "web"),
            "rollouts.sluice.dev \"web\" is forbidden: User \"bob\" cannot patch resource \"rollouts/status\" in API group \"sluice.dev\" in the namespace \"shop\"",
        ),
        (
            path("get", "/apis"),
            "forbidden: User \"bob\" cannot get path \"/apis\"",
        ),
    ];
    for (attributes, message) in cases {
        assert_eq!(forbidden("bob", &attributes, "").message, message);
    }
    let status = forbidden("bob", &resource("get", "apps", "deployments", "shop", "web"), "").to_status();
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "deployments.apps \"web\" is forbidden: User \"bob\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"shop\"",
               "reason": "Forbidden", "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 403})
    );
    let with_reason = forbidden(
        "bob",
        &path("get", "/x"),
        "RBAC: clusterrole.rbac.authorization.k8s.io \"y\" not found",
    );
    assert_eq!(
        with_reason.message,
        "forbidden: User \"bob\" cannot get path \"/x\": RBAC: clusterrole.rbac.authorization.k8s.io \"y\" not found"
    );
}

#[test]
fn rules_for_lists_cluster_and_namespace_rules() {
    let objects = [
        cluster_role(
            "pods",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        ),
        cluster_binding("alice", "pods", alice_subject()),
        role(
            "shop",
            "cm",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        ),
        binding("shop", "alice", "Role", "cm", alice_subject()),
    ];
    let rbac = RbacSnapshot::from_objects(&objects);
    let (rules, errors) = rbac.rules_for(&user("alice", &[]), "shop");
    assert!(errors.is_empty());
    let resources: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.resources.iter().map(String::as_str))
        .collect();
    assert_eq!(resources, ["pods", "configmaps"]);
    let (rules, _) = rbac.rules_for(&user("alice", &[]), "other");
    assert_eq!(rules.len(), 1);
}
