//! Authentication, TokenRequest and impersonation, against the API server's documented behaviour.
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use chrono::{Duration, Utc};
use serde_json::json;

use super::*;
use crate::api::{ApiServer, DeleteOptions, WriteOptions};
use crate::auth::{RbacSnapshot, authorize};
use crate::store::StoreConfig;

/// An API server with the namespaces the tests use.
fn server() -> Arc<ApiServer> {
    let api = ApiServer::new(StoreConfig::default());
    for namespace in ["team-a", "team-b"] {
        create(
            &api,
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        );
    }
    api
}

fn create(api: &ApiServer, plural: &str, namespace: &str, object: serde_json::Value) {
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let rt = api.resource(group, plural).unwrap();
    api.create(&rt, namespace, object, &WriteOptions::default()).unwrap();
}

fn delete(api: &ApiServer, plural: &str, namespace: &str, name: &str) {
    let rt = api.resource("", plural).unwrap();
    api.delete(&rt, "v1", namespace, name, &DeleteOptions::default())
        .unwrap();
}

fn service_account(api: &ApiServer, namespace: &str, name: &str) {
    create(
        api,
        "serviceaccounts",
        namespace,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    );
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn token_of(answer: &serde_json::Value) -> String {
    answer["status"]["token"].as_str().unwrap().to_string()
}

#[test]
fn requests_without_bearer_credentials_are_anonymous() {
    let api = server();
    let auth = Authenticator::new();
    let anonymous = UserInfo::new("system:anonymous", &["system:unauthenticated"]);
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), &api.store, Utc::now()).unwrap(),
        anonymous
    );
    for value in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer ", "   ", "Negotiate abc"] {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        assert_eq!(
            auth.authenticate(&headers, &api.store, Utc::now()).unwrap(),
            anonymous,
            "{value:?}"
        );
    }
}

#[test]
fn unknown_bearer_tokens_are_401_with_the_api_servers_status() {
    let api = server();
    let auth = Authenticator::new();
    for headers in [bearer("nope"), {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_bytes(b"bearer \xff\xfe").unwrap());
        h
    }] {
        let error = auth.authenticate(&headers, &api.store, Utc::now()).unwrap_err();
        assert_eq!(
            error.to_status(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
    }
}

#[test]
fn the_admin_token_is_a_master_and_the_scheme_is_case_insensitive() {
    let api = server();
    let auth = Authenticator::new();
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("bEaReR {}", auth.admin_token())).unwrap(),
    );
    let user = auth.authenticate(&headers, &api.store, Utc::now()).unwrap();
    assert_eq!(user.name, ADMIN_USER);
    assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
    assert_ne!(
        Authenticator::new().admin_token(),
        auth.admin_token(),
        "tokens are random"
    );
}

#[test]
fn service_account_tokens_authenticate_until_the_account_is_deleted() {
    let api = server();
    let auth = Authenticator::new();
    service_account(&api, "team-a", "ci");
    let now = Utc::now();
    let answer = auth
        .request_token(&api.store, "team-a", "ci", &json!({"kind": "TokenRequest"}), false, now)
        .unwrap();
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    assert_eq!(answer["spec"]["audiences"], json!([DEFAULT_AUDIENCE]));
    let expires =
        chrono::DateTime::parse_from_rfc3339(answer["status"]["expirationTimestamp"].as_str().unwrap()).unwrap();
    assert!(
        (expires.with_timezone(&Utc) - (now + Duration::seconds(3600)))
            .num_seconds()
            .abs()
            <= 1
    );
    let token = token_of(&answer);
    let user = auth.authenticate(&bearer(&token), &api.store, now).unwrap();
    assert_eq!(user.name, "system:serviceaccount:team-a:ci");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
    assert!(!user.uid.is_empty());

    delete(&api, "serviceaccounts", "team-a", "ci");
    assert_eq!(
        auth.authenticate(&bearer(&token), &api.store, now).unwrap_err().code,
        401
    );
    // A new account of the same name is another account: the old token stays dead.
    service_account(&api, "team-a", "ci");
    assert_eq!(
        auth.authenticate(&bearer(&token), &api.store, now).unwrap_err().code,
        401
    );
}

#[test]
fn service_account_tokens_expire() {
    let api = server();
    let auth = Authenticator::new();
    service_account(&api, "team-a", "ci");
    let now = Utc::now();
    let body = json!({"spec": {"expirationSeconds": 600}});
    let token = token_of(
        &auth
            .request_token(&api.store, "team-a", "ci", &body, false, now)
            .unwrap(),
    );
    let later = now + Duration::seconds(599);
    assert!(auth.authenticate(&bearer(&token), &api.store, later).is_ok());
    let expired = now + Duration::seconds(600);
    assert_eq!(
        auth.authenticate(&bearer(&token), &api.store, expired)
            .unwrap_err()
            .code,
        401
    );
}

#[test]
fn token_requests_keep_the_api_servers_bounds() {
    let api = server();
    let auth = Authenticator::new();
    service_account(&api, "team-a", "ci");
    let now = Utc::now();
    let short = auth
        .request_token(
            &api.store,
            "team-a",
            "ci",
            &json!({"spec": {"expirationSeconds": 60}}),
            false,
            now,
        )
        .unwrap_err();
    assert_eq!(short.code, 422);
    assert_eq!(
        short.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
    );
    let long = auth
        .request_token(
            &api.store,
            "team-a",
            "ci",
            &json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
            false,
            now,
        )
        .unwrap_err();
    assert!(
        long.message
            .ends_with("may not specify a duration larger than 2^32 seconds"),
        "{}",
        long.message
    );
    let longest = auth
        .request_token(
            &api.store,
            "team-a",
            "ci",
            &json!({"spec": {"expirationSeconds": 1i64 << 32}}),
            false,
            now,
        )
        .unwrap();
    assert_eq!(longest["spec"]["expirationSeconds"], 1i64 << 32);
    for odd in [
        json!({"spec": {"expirationSeconds": "1h"}}),
        json!({"spec": 3}),
        json!({"spec": {"audiences": "x"}}),
    ] {
        assert_eq!(
            auth.request_token(&api.store, "team-a", "ci", &odd, false, now)
                .unwrap_err()
                .code,
            400,
            "{odd}"
        );
    }
    let missing = auth
        .request_token(&api.store, "team-a", "nobody", &json!({}), false, now)
        .unwrap_err();
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, "serviceaccounts \"nobody\" not found")
    );
    let audiences = auth
        .request_token(
            &api.store,
            "team-a",
            "ci",
            &json!({"spec": {"audiences": ["vault"]}}),
            false,
            now,
        )
        .unwrap();
    assert_eq!(audiences["spec"]["audiences"], json!(["vault"]));
    let dry = auth
        .request_token(&api.store, "team-a", "ci", &json!({}), true, now)
        .unwrap();
    assert_eq!(dry["status"]["token"], "");
}

#[test]
fn bound_tokens_die_with_their_object() {
    let api = server();
    let auth = Authenticator::new();
    service_account(&api, "team-a", "ci");
    create(
        &api,
        "secrets",
        "team-a",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "holder"}}),
    );
    let now = Utc::now();
    let body = json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "holder"}}});
    let answer = auth
        .request_token(&api.store, "team-a", "ci", &body, false, now)
        .unwrap();
    assert!(
        answer["spec"]["boundObjectRef"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    let token = token_of(&answer);
    assert!(auth.authenticate(&bearer(&token), &api.store, now).is_ok());
    delete(&api, "secrets", "team-a", "holder");
    assert_eq!(
        auth.authenticate(&bearer(&token), &api.store, now).unwrap_err().code,
        401
    );

    let wrong_kind = json!({"spec": {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}});
    assert_eq!(
        auth.request_token(&api.store, "team-a", "ci", &wrong_kind, false, now)
            .unwrap_err()
            .code,
        400
    );
    let missing = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "gone"}}});
    assert_eq!(
        auth.request_token(&api.store, "team-a", "ci", &missing, false, now)
            .unwrap_err()
            .code,
        404
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn rbac_decider(objects: &[serde_json::Value], who: &UserInfo) -> impl FnMut(&Attributes) -> Decision {
    let rbac = RbacSnapshot::from_objects(objects);
    let who = who.clone();
    move |attributes| authorize(&who, attributes, &rbac)
}

#[test]
fn without_impersonation_headers_nothing_changes() {
    let admin = UserInfo::new(ADMIN_USER, &["system:masters"]);
    assert_eq!(
        impersonate(&admin, &HeaderMap::new(), rbac_decider(&[], &admin)).unwrap(),
        None
    );
}

#[test]
fn masters_impersonate_users_groups_extras_and_uids() {
    let admin = UserInfo::new(ADMIN_USER, &["system:masters"]);
    let asked = headers(&[
        ("impersonate-user", "jane"),
        ("impersonate-group", "devs"),
        ("impersonate-group", "ops"),
        ("impersonate-extra-scopes", "view"),
        ("impersonate-extra-scopes", "edit"),
        ("impersonate-extra-acme.com%2fproject", "p1"),
        ("impersonate-uid", "u-1"),
    ]);
    let user = impersonate(&admin, &asked, rbac_decider(&[], &admin)).unwrap().unwrap();
    assert_eq!(user.name, "jane");
    assert_eq!(user.groups, ["devs", "ops", "system:authenticated"]);
    assert_eq!(user.uid, "u-1");
    assert_eq!(user.extra["scopes"], ["view", "edit"]);
    assert_eq!(user.extra["acme.com/project"], ["p1"]);
}

#[test]
fn impersonating_a_service_account_gives_its_groups() {
    let admin = UserInfo::new(ADMIN_USER, &["system:masters"]);
    let asked = headers(&[("impersonate-user", "system:serviceaccount:team-a:default")]);
    let user = impersonate(&admin, &asked, rbac_decider(&[], &admin)).unwrap().unwrap();
    assert_eq!(user.name, "system:serviceaccount:team-a:default");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
    // With groups given, those are the groups (plus system:authenticated).
    let asked = headers(&[
        ("impersonate-user", "system:serviceaccount:team-a:default"),
        ("impersonate-group", "custom"),
    ]);
    let user = impersonate(&admin, &asked, rbac_decider(&[], &admin)).unwrap().unwrap();
    assert_eq!(user.groups, ["custom", "system:authenticated"]);
    // Anonymous stays unauthenticated.
    let asked = headers(&[("impersonate-user", "system:anonymous")]);
    let user = impersonate(&admin, &asked, rbac_decider(&[], &admin)).unwrap().unwrap();
    assert_eq!(user.groups, ["system:unauthenticated"]);
}

#[test]
fn impersonation_needs_the_impersonate_verb_on_each_thing_asked_for() {
    let policy = [
        json!({"kind": "ClusterRole", "metadata": {"name": "impersonator"},
               "rules": [{"apiGroups": [""], "resources": ["users"], "resourceNames": ["jane"], "verbs": ["impersonate"]},
                         {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["deployer"], "verbs": ["impersonate"]},
                         {"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/scopes"], "verbs": ["impersonate"]}]}),
        json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "team-a"},
               "roleRef": {"kind": "ClusterRole", "name": "impersonator"},
               "subjects": [{"kind": "User", "name": "bob"}]}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
               "roleRef": {"kind": "ClusterRole", "name": "impersonator"},
               "subjects": [{"kind": "User", "name": "carol"}]}),
    ];
    let bob = UserInfo::new("bob", &["system:authenticated"]);
    let carol = UserInfo::new("carol", &["system:authenticated"]);
    // A RoleBinding in team-a allows service accounts of team-a, named by resourceNames.
    let asked = headers(&[("impersonate-user", "system:serviceaccount:team-a:deployer")]);
    assert!(impersonate(&bob, &asked, rbac_decider(&policy, &bob)).is_ok());
    let asked = headers(&[("impersonate-user", "system:serviceaccount:team-a:default")]);
    let error = impersonate(&bob, &asked, rbac_decider(&policy, &bob)).unwrap_err();
    assert_eq!(error.code, 403);
    assert_eq!(
        error.message,
        "serviceaccounts \"default\" is forbidden: User \"bob\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"team-a\""
    );
    let asked = headers(&[("impersonate-user", "system:serviceaccount:team-b:deployer")]);
    assert_eq!(
        impersonate(&bob, &asked, rbac_decider(&policy, &bob)).unwrap_err().code,
        403
    );
    // Users are cluster-scoped: only the ClusterRoleBinding helps.
    let asked = headers(&[("impersonate-user", "jane")]);
    let error = impersonate(&bob, &asked, rbac_decider(&policy, &bob)).unwrap_err();
    assert_eq!(
        error.message,
        "users \"jane\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    assert!(impersonate(&carol, &asked, rbac_decider(&policy, &carol)).is_ok());
    let asked = headers(&[("impersonate-user", "x")]);
    assert_eq!(
        impersonate(&carol, &asked, rbac_decider(&policy, &carol))
            .unwrap_err()
            .code,
        403
    );
    // Each group and extra value is checked too.
    let asked = headers(&[("impersonate-user", "jane"), ("impersonate-group", "admins")]);
    let error = impersonate(&carol, &asked, rbac_decider(&policy, &carol)).unwrap_err();
    assert_eq!(
        error.message,
        "groups \"admins\" is forbidden: User \"carol\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
    );
    let asked = headers(&[("impersonate-user", "jane"), ("impersonate-extra-scopes", "view")]);
    assert!(impersonate(&carol, &asked, rbac_decider(&policy, &carol)).is_ok());
    let asked = headers(&[("impersonate-user", "jane"), ("impersonate-extra-other", "v")]);
    let error = impersonate(&carol, &asked, rbac_decider(&policy, &carol)).unwrap_err();
    assert_eq!(
        error.message,
        "userextras.authentication.k8s.io \"v\" is forbidden: User \"carol\" cannot impersonate resource \"userextras/other\" in API group \"authentication.k8s.io\" at the cluster scope"
    );
    let asked = headers(&[("impersonate-user", "jane"), ("impersonate-uid", "1")]);
    assert_eq!(
        impersonate(&carol, &asked, rbac_decider(&policy, &carol))
            .unwrap_err()
            .code,
        403
    );
}

#[test]
fn groups_extras_or_uids_without_a_user_are_a_bad_request() {
    let admin = UserInfo::new(ADMIN_USER, &["system:masters"]);
    for asked in [
        headers(&[("impersonate-group", "devs")]),
        headers(&[("impersonate-uid", "u")]),
        headers(&[("impersonate-extra-scopes", "view")]),
        headers(&[("impersonate-user", ""), ("impersonate-group", "devs")]),
    ] {
        let error = impersonate(&admin, &asked, rbac_decider(&[], &admin)).unwrap_err();
        assert_eq!((error.code, error.reason), (400, "BadRequest"), "{asked:?}");
        assert!(
            error.message.ends_with("without impersonating a user"),
            "{}",
            error.message
        );
    }
    let error = impersonate(
        &admin,
        &headers(&[("impersonate-group", "devs")]),
        rbac_decider(&[], &admin),
    )
    .unwrap_err();
    assert_eq!(
        error.message,
        "requested [{Group  devs    }] without impersonating a user"
    );
}

#[test]
fn service_account_user_names_must_be_valid_to_count_as_service_accounts() {
    assert_eq!(
        split_service_account("system:serviceaccount:ns:name"),
        Some(("ns", "name"))
    );
    assert_eq!(
        split_service_account("system:serviceaccount:ns:a.b-c"),
        Some(("ns", "a.b-c"))
    );
    for odd in [
        "system:serviceaccount:ns",
        "system:serviceaccount::name",
        "system:serviceaccount:NS:name",
        "system:serviceaccount:ns:name:extra",
        "system:serviceaccount:ns:-x",
        "system:serviceaccounts:ns:name",
    ] {
        assert_eq!(split_service_account(odd), None, "{odd}");
    }
}
