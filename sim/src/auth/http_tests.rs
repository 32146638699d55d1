//! Authentication and authorization as HTTP clients meet them: status codes, Status bodies, the
//! review APIs and the request log, on a running simulator.
use serde_json::{Value, json};

use crate::{Authorization, SimConfig, Simulator};

async fn start(authorization: Authorization) -> Simulator {
    Simulator::start(SimConfig {
        authorization,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A request with optional bearer token and extra headers; the status code and JSON body (Null when
/// the body is not JSON).
async fn call(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", sim.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (code, body)
}

async fn get(sim: &Simulator, path: &str, token: Option<&str>) -> (u16, Value) {
    call(sim, reqwest::Method::GET, path, token, &[], None).await
}

async fn post(sim: &Simulator, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    call(sim, reqwest::Method::POST, path, token, headers, Some(body)).await
}

async fn admin_post(sim: &Simulator, path: &str, body: Value) -> Value {
    let (code, answer) = post(sim, path, Some(sim.admin_token()), &[], body).await;
    assert!(code == 200 || code == 201, "{path}: {code} {answer}");
    answer
}

async fn namespace(sim: &Simulator, name: &str) {
    admin_post(
        sim,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await;
}

async fn service_account_token(sim: &Simulator, namespace: &str, name: &str) -> String {
    admin_post(
        sim,
        &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
    let answer = admin_post(
        sim,
        &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
    )
    .await;
    answer["status"]["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn anonymous_requests_see_public_paths_only_and_get_the_api_servers_403() {
    let sim = start(Authorization::Rbac).await;
    let (code, body) = get(&sim, "/api/v1/namespaces/default/pods", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
               "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    let (code, body) = get(&sim, "/apis/apps/v1/namespaces/shop/deployments/web", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
    let (code, body) = get(&sim, "/api/v1/namespaces/kube-system", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "namespaces \"kube-system\" is forbidden: User \"system:anonymous\" cannot get resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    let (code, body) = get(&sim, "/apis", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );
    assert_eq!(body["details"], json!({}));
    assert_eq!(get(&sim, "/version", None).await.0, 200);
    let health = reqwest::get(format!("{}/healthz", sim.url())).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // The simulator's own control plane is not the Kubernetes API: open to all.
    assert_eq!(get(&sim, "/sim/requests", None).await.0, 200);
    assert_eq!(get(&sim, "/sim/stats", None).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_tokens_are_unauthorized_everywhere_but_the_simulators_own_endpoints() {
    let sim = start(Authorization::Rbac).await;
    let unauthorized = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    for path in ["/api/v1/pods", "/version", "/apis", "/openapi/v3"] {
        assert_eq!(
            get(&sim, path, Some("forged")).await,
            (401, unauthorized.clone()),
            "{path}"
        );
    }
    assert_eq!(get(&sim, "/sim/requests", Some("forged")).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_admin_token_is_a_master_for_the_kube_client_and_raw_http() {
    let sim = start(Authorization::Rbac).await;
    let client = sim.client().unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "kube-system");
    pods.list(&Default::default()).await.unwrap();
    let response = sim
        .http_client()
        .get(format!("{}/api/v1/secrets", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        sim.kubeconfig("default")
            .contains(&format!("token: {}", sim.admin_token()))
    );
    let (_, review) = post(
        &sim,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(sim.admin_token()),
        &[],
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .await;
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "sluice-admin", "groups": ["system:masters", "system:authenticated"]})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_bindings_and_die_with_the_account() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    let pods = "/api/v1/namespaces/team-a/pods";
    let (code, body) = get(&sim, pods, Some(&token)).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods is forbidden: User \"system:serviceaccount:team-a:ci\" cannot list resource \"pods\" in API group \"\" in the namespace \"team-a\""
    );
    // Discovery and self reviews work for any authenticated identity.
    assert_eq!(get(&sim, "/api/v1", Some(&token)).await.0, 200);
    admin_post(
        &sim,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pods"},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
    )
    .await;
    admin_post(
        &sim,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ci-pods"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
               "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    // The binding applies to the very next request.
    assert_eq!(get(&sim, pods, Some(&token)).await.0, 200);
    assert_eq!(get(&sim, "/api/v1/namespaces/default/pods", Some(&token)).await.0, 403);
    let (code, _) = call(
        &sim,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/team-a/serviceaccounts/ci",
        Some(sim.admin_token()),
        &[],
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(get(&sim, pods, Some(&token)).await.0, 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_requests_need_create_on_serviceaccounts_token() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    let path = "/api/v1/namespaces/team-a/serviceaccounts/ci/token";
    let (code, body) = post(&sim, path, Some(&token), &[], json!({"spec": {}})).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "serviceaccounts \"ci\" is forbidden: User \"system:serviceaccount:team-a:ci\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"team-a\""
    );
    let (code, body) = post(
        &sim,
        path,
        Some(sim.admin_token()),
        &[],
        json!({"spec": {"expirationSeconds": 10}}),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    let (code, _) = get(&sim, path, Some(sim.admin_token())).await;
    assert_eq!(code, 405);
    let (code, _) = post(
        &sim,
        "/api/v1/namespaces/team-a/configmaps/x/token",
        Some(sim.admin_token()),
        &[],
        json!({}),
    )
    .await;
    assert_eq!(code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn access_reviews_answer_from_the_same_authorizer() {
    let sim = start(Authorization::Rbac).await;
    let admin = Some(sim.admin_token());
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let asks = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": "kube-system"}}});
    let impersonating = [("Impersonate-User", "system:serviceaccount:team-a:default")];
    let (code, answer) = post(&sim, ssar, admin, &impersonating, asks.clone()).await;
    assert_eq!(code, 201);
    assert_eq!(answer["status"], json!({"allowed": false}));
    assert_eq!(answer["spec"], asks["spec"]);
    let (_, answer) = post(&sim, ssar, admin, &[], asks).await;
    assert_eq!(answer["status"]["allowed"], true);

    let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    admin_post(
        &sim,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "devs-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "Group", "name": "devs"}]}),
    )
    .await;
    let answer = admin_post(
        &sim,
        sar,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
               "spec": {"user": "jane", "groups": ["devs"],
                        "resourceAttributes": {"verb": "delete", "group": "apps", "resource": "deployments", "namespace": "x"}}}),
    )
    .await;
    assert_eq!(
        answer["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"devs-admin\" of ClusterRole \"cluster-admin\" to Group \"devs\""})
    );
    let (code, answer) = post(
        &sim,
        sar,
        admin,
        &[],
        json!({"kind": "SubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get"}}}),
    )
    .await;
    assert_eq!(code, 422, "{answer}");
    // SubjectAccessReviews are not for everyone: only who may create them.
    let (code, answer) = post(
        &sim,
        sar,
        None,
        &[],
        json!({"spec": {"user": "x", "nonResourceAttributes": {"verb": "get", "path": "/"}}}),
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    let (code, _) = get(&sim, ssar, admin).await;
    assert_eq!(code, 405);
    let (code, answer) = post(
        &sim,
        ssar,
        admin,
        &[],
        json!({"spec": {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"verb": "get", "path": "/"}}}),
    )
    .await;
    assert_eq!(code, 422, "{answer}");
    let rules = admin_post(
        &sim,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        json!({"kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}}),
    )
    .await;
    assert_eq!(
        rules["status"]["resourceRules"][0],
        json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn impersonation_over_http_is_checked_and_logged() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    let (code, body) = get_with(
        &sim,
        "/api/v1/namespaces/team-a/pods",
        &token,
        &[("Impersonate-User", "jane")],
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "users \"jane\" is forbidden: User \"system:serviceaccount:team-a:ci\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let (code, body) = get_with(
        &sim,
        "/api/v1/namespaces/team-a/pods",
        sim.admin_token(),
        &[("Impersonate-Group", "devs")],
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    let (code, body) = get_with(
        &sim,
        "/api/v1/namespaces/kube-system/secrets",
        sim.admin_token(),
        &[("Impersonate-User", "system:serviceaccount:team-a:default")],
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "secrets is forbidden: User \"system:serviceaccount:team-a:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
    );
    let log = sim.http.requests.snapshot();
    let denied = log
        .iter()
        .find(|r| r.namespace == "kube-system" && r.resource == "secrets")
        .unwrap();
    assert_eq!(
        (
            denied.authenticated_user.as_str(),
            denied.user.as_str(),
            denied.impersonate_user.as_str(),
            denied.decision.as_str(),
            denied.code
        ),
        (
            "sluice-admin",
            "system:serviceaccount:team-a:default",
            "system:serviceaccount:team-a:default",
            "deny",
            403
        )
    );
    assert_eq!(
        denied.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
    let allowed = log
        .iter()
        .find(|r| r.resource == "namespaces" && r.verb == "create")
        .unwrap();
    assert_eq!(
        (allowed.user.as_str(), allowed.decision.as_str()),
        ("sluice-admin", "allow")
    );
    let refused = log.iter().find(|r| r.impersonate_user == "jane").unwrap();
    assert_eq!(
        (
            refused.authenticated_user.as_str(),
            refused.decision.as_str(),
            refused.code
        ),
        ("system:serviceaccount:team-a:ci", "deny", 403)
    );
    sim.shutdown().await;
}

async fn get_with(sim: &Simulator, path: &str, token: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    call(sim, reqwest::Method::GET, path, Some(token), headers, None).await
}

#[tokio::test]
async fn always_allow_skips_authorization_but_still_authenticates() {
    let sim = start(Authorization::AlwaysAllow).await;
    assert_eq!(get(&sim, "/api/v1/namespaces/default/pods", None).await.0, 200);
    assert_eq!(
        get(&sim, "/api/v1/namespaces/default/pods", Some("forged")).await.0,
        401
    );
    let (code, _) = get_with(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        sim.admin_token(),
        &[("Impersonate-User", "jane")],
    )
    .await;
    assert_eq!(code, 200);
    let log = sim.http.requests.snapshot();
    assert_eq!(log[0].user, "system:anonymous");
    assert_eq!(log[0].groups, ["system:unauthenticated"]);
    let impersonated = log.iter().find(|r| r.resource == "configmaps").unwrap();
    assert_eq!(
        (impersonated.authenticated_user.as_str(), impersonated.user.as_str()),
        ("sluice-admin", "jane")
    );
    let answer = admin_post(
        &sim,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        json!({"spec": {"user": "nobody", "resourceAttributes": {"verb": "delete", "resource": "nodes"}}}),
    )
    .await;
    assert_eq!(answer["status"]["allowed"], true);
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_lists_the_token_subresource_and_the_review_kinds() {
    let sim = start(Authorization::Rbac).await;
    let admin = Some(sim.admin_token());
    let (_, core) = get(&sim, "/api/v1", admin).await;
    let token = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .cloned()
        .unwrap();
    assert_eq!(
        (token["kind"].as_str(), token["group"].as_str(), token["verbs"].clone()),
        (Some("TokenRequest"), Some("authentication.k8s.io"), json!(["create"]))
    );
    let (_, authorization) = get(&sim, "/apis/authorization.k8s.io/v1", admin).await;
    let mut names: Vec<&str> = authorization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "localsubjectaccessreviews",
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews"
        ]
    );
    assert_eq!(authorization["resources"][0]["verbs"], json!(["create"]));
    let (code, _) = get(&sim, "/apis/authentication.k8s.io/v1", admin).await;
    assert_eq!(code, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn roles_and_bindings_cannot_grant_more_than_their_writer_holds() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    let rbac = |plural: &str| format!("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/{plural}");
    // The account may manage Roles and RoleBindings, and read pods.
    admin_post(
        &sim,
        &rbac("roles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "rbac-admin"},
               "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "patch"]},
                         {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    )
    .await;
    admin_post(
        &sim,
        &rbac("rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ci"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    let role = |name: &str, resource: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
               "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}]})
    };
    let (code, _) = post(&sim, &rbac("roles"), Some(&token), &[], role("pods", "pods")).await;
    assert_eq!(code, 201);
    let (code, body) = post(&sim, &rbac("roles"), Some(&token), &[], role("secrets", "secrets")).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "roles.rbac.authorization.k8s.io \"secrets\" is forbidden: user \"system:serviceaccount:team-a:ci\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team-a\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    // Binding a role whose permissions the writer holds is fine; one it does not hold is not.
    admin_post(&sim, &rbac("roles"), role("secrets", "secrets")).await;
    let bind = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": format!("x-{role}")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
               "subjects": [{"kind": "User", "name": "x"}]})
    };
    assert_eq!(
        post(&sim, &rbac("rolebindings"), Some(&token), &[], bind("pods"))
            .await
            .0,
        201
    );
    assert_eq!(
        post(&sim, &rbac("rolebindings"), Some(&token), &[], bind("secrets"))
            .await
            .0,
        403
    );
    // The administrator is not limited.
    admin_post(&sim, &rbac("rolebindings"), bind("secrets")).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_list_pinned_to_one_name_is_authorized_as_that_object() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    admin_post(
        &sim,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "one"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["list", "watch"]}]}),
    )
    .await;
    admin_post(
        &sim,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "one"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one"},
               "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
    )
    .await;
    let list = "/api/v1/namespaces/team-a/configmaps";
    assert_eq!(get(&sim, list, Some(&token)).await.0, 403);
    let pinned = format!("{list}?fieldSelector=metadata.name%3Dsettings");
    assert_eq!(get(&sim, &pinned, Some(&token)).await.0, 200);
    let other = format!("{list}?fieldSelector=metadata.name%3Dother");
    let (code, body) = get(&sim, &other, Some(&token)).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "configmaps \"other\" is forbidden: User \"system:serviceaccount:team-a:ci\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn token_reviews_say_who_a_token_is_and_only_granted_users_may_ask() {
    let sim = start(Authorization::Rbac).await;
    namespace(&sim, "team-a").await;
    let token = service_account_token(&sim, "team-a", "ci").await;
    let reviews = "/apis/authentication.k8s.io/v1/tokenreviews";
    let review = |token: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let answer = admin_post(&sim, reviews, review(&token)).await;
    assert_eq!(answer["kind"], "TokenReview");
    assert_eq!(answer["status"]["authenticated"], true);
    assert_eq!(answer["status"]["user"]["username"], "system:serviceaccount:team-a:ci");
    let groups = answer["status"]["user"]["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("system:serviceaccounts:team-a")), "{groups:?}");
    assert!(groups.contains(&json!("system:authenticated")), "{groups:?}");
    assert!(
        answer["status"]["user"]["uid"]
            .as_str()
            .is_some_and(|uid| !uid.is_empty())
    );
    // A token the server does not know is answered, not refused: authenticated false, with an error.
    let answer = admin_post(&sim, reviews, review("not-a-token")).await;
    assert_eq!(answer["status"]["authenticated"], false);
    assert!(answer["status"]["error"].as_str().is_some());
    let (code, _) = post(
        &sim,
        reviews,
        Some(sim.admin_token()),
        &[],
        json!({"kind": "TokenReview", "spec": {}}),
    )
    .await;
    assert_eq!(code, 422, "spec.token is required");
    // Creating a TokenReview is a grant of its own (system:auth-delegator in Kubernetes): a plain
    // service account may not, not even about itself.
    let (code, body) = post(&sim, reviews, Some(&token), &[], review(&token)).await;
    assert_eq!(code, 403, "{body}");
    sim.shutdown().await;
}
