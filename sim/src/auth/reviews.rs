//! The create-only review APIs: access reviews (`authorization.k8s.io/v1` SelfSubjectAccessReview,
//! SubjectAccessReview, LocalSubjectAccessReview), rules reviews (SelfSubjectRulesReview) and
//! `authentication.k8s.io/v1` SelfSubjectReview. They are answered from the same authorizer that
//! guards requests, and nothing is stored.
use serde_json::{Map, Value, json};

use super::rbac::{Attributes, Decision, PolicyRule, RbacSnapshot, ResourceAttributes};
use super::{Authorization, UserInfo};
use crate::status::{ApiError, ApiResult, FieldCause};
use crate::store::Store;

const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// Answers a create of one of the review kinds (`plural` in `group`) by `user`.
pub fn review(
    mode: Authorization,
    store: &Store,
    user: &UserInfo,
    group: &str,
    plural: &str,
    namespace: &str,
    body: &Value,
) -> ApiResult<Value> {
    match (group, plural) {
        (AUTHORIZATION_GROUP, "selfsubjectaccessreviews") => {
            let spec = spec_of(body)?;
            let attributes = access_attributes("SelfSubjectAccessReview", &spec, body, false)?;
            Ok(answer(
                body,
                "SelfSubjectAccessReview",
                spec,
                mode.decide(user, &attributes, store),
            ))
        }
        (AUTHORIZATION_GROUP, "subjectaccessreviews") => {
            let spec = spec_of(body)?;
            let subject = subject_of("SubjectAccessReview", &spec, body)?;
            let attributes = access_attributes("SubjectAccessReview", &spec, body, false)?;
            Ok(answer(
                body,
                "SubjectAccessReview",
                spec,
                decide_for(mode, &subject, &attributes, store),
            ))
        }
        (AUTHORIZATION_GROUP, "localsubjectaccessreviews") => {
            let spec = spec_of(body)?;
            let subject = subject_of("LocalSubjectAccessReview", &spec, body)?;
            let attributes = access_attributes("LocalSubjectAccessReview", &spec, body, true)?;
            if let Attributes::Resource(r) = &attributes
                && r.namespace != namespace
            {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {namespace}"
                )));
            }
            let mut answered = answer(
                body,
                "LocalSubjectAccessReview",
                spec,
                decide_for(mode, &subject, &attributes, store),
            );
            answered["metadata"]["namespace"] = json!(namespace);
            Ok(answered)
        }
        (AUTHORIZATION_GROUP, "selfsubjectrulesreviews") => {
            let spec = spec_of(body)?;
            let review_namespace = spec.get("namespace").and_then(Value::as_str).unwrap_or_default();
            Ok(rules_review(mode, store, user, review_namespace, body, spec.clone()))
        }
        ("authentication.k8s.io", "selfsubjectreviews") => Ok(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": metadata(body),
            "status": {"userInfo": user_info(user)},
        })),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// The authorizer's answer for the subject of a SubjectAccessReview: exactly the user and groups
/// given (no `system:authenticated` is added, as in the API server).
fn decide_for(mode: Authorization, subject: &UserInfo, attributes: &Attributes, store: &Store) -> Decision {
    mode.decide(subject, attributes, store)
}

fn spec_of(body: &Value) -> ApiResult<Map<String, Value>> {
    match body.get("spec") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(spec)) => Ok(spec.clone()),
        Some(_) => Err(ApiError::bad_request("spec: expected an object")),
    }
}

fn name_of(body: &Value) -> &str {
    body.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn metadata(body: &Value) -> Value {
    let mut metadata = json!({"creationTimestamp": crate::api::now_rfc3339()});
    if !name_of(body).is_empty() {
        metadata["name"] = json!(name_of(body));
    }
    metadata
}

fn invalid(kind: &str, body: &Value, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        AUTHORIZATION_GROUP,
        kind,
        name_of(body),
        vec![FieldCause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    )
}

fn string_field(object: &Map<String, Value>, field: &str, path: &str) -> ApiResult<String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ApiError::bad_request(format!(
            "{path}.{field}: expected a string, got {other}"
        ))),
    }
}

/// What a review asks about: exactly one of resourceAttributes and nonResourceAttributes.
fn access_attributes(kind: &str, spec: &Map<String, Value>, body: &Value, local: bool) -> ApiResult<Attributes> {
    let present = |field: &str| spec.get(field).filter(|v| !v.is_null());
    match (present("resourceAttributes"), present("nonResourceAttributes")) {
        (Some(_), Some(_)) => Err(invalid(
            kind,
            body,
            "spec.nonResourceAttributes",
            "Invalid value: \"object\": cannot be specified in combination with resourceAttributes".into(),
        )),
        (None, None) => Err(invalid(
            kind,
            body,
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
                .into(),
        )),
        (None, Some(_)) if local => Err(invalid(
            kind,
            body,
            "spec.nonResourceAttributes",
            "Invalid value: \"object\": disallowed on this kind of request".into(),
        )),
        (Some(Value::Object(r)), None) => {
            let path = "spec.resourceAttributes";
            let version = string_field(r, "version", path)?;
            Ok(Attributes::Resource(ResourceAttributes {
                verb: string_field(r, "verb", path)?,
                group: string_field(r, "group", path)?,
                // An empty version means every version, as in the API server.
                version: if version.is_empty() { "*".into() } else { version },
                resource: string_field(r, "resource", path)?,
                subresource: string_field(r, "subresource", path)?,
                namespace: string_field(r, "namespace", path)?,
                name: string_field(r, "name", path)?,
            }))
        }
        (None, Some(Value::Object(n))) => {
            let path = "spec.nonResourceAttributes";
            Ok(Attributes::NonResource {
                verb: string_field(n, "verb", path)?,
                path: string_field(n, "path", path)?,
            })
        }
        _ => Err(ApiError::bad_request(
            "spec: resourceAttributes and nonResourceAttributes are objects",
        )),
    }
}

/// The user a (Local)SubjectAccessReview asks about.
fn subject_of(kind: &str, spec: &Map<String, Value>, body: &Value) -> ApiResult<UserInfo> {
    let strings = |field: &str| -> ApiResult<Vec<String>> {
        match spec.get(field) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::bad_request(format!("spec.{field}: expected a list of strings")))
                })
                .collect(),
            Some(_) => Err(ApiError::bad_request(format!(
                "spec.{field}: expected a list of strings"
            ))),
        }
    };
    let user = string_field(spec, "user", "spec")?;
    let groups = strings("groups")?;
    if user.is_empty() && groups.is_empty() {
        return Err(invalid(
            kind,
            body,
            "spec.user",
            "Invalid value: \"\": at least one of user or group must be specified".into(),
        ));
    }
    let mut extra = std::collections::BTreeMap::new();
    if let Some(Value::Object(map)) = spec.get("extra") {
        for (key, values) in map {
            let values = values
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            extra.insert(key.clone(), values);
        }
    }
    Ok(UserInfo {
        name: user,
        uid: string_field(spec, "uid", "spec")?,
        groups,
        extra,
    })
}

fn answer(body: &Value, kind: &str, spec: Map<String, Value>, decision: Decision) -> Value {
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    json!({
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": metadata(body),
        "spec": spec,
        "status": status,
    })
}

fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn rules_review(
    mode: Authorization,
    store: &Store,
    user: &UserInfo,
    namespace: &str,
    body: &Value,
    spec: Map<String, Value>,
) -> Value {
    let (rules, errors) = match mode {
        // The always-allow authorizer reports that it allows everything.
        Authorization::AlwaysAllow => {
            RbacSnapshot::default().rules_for(&UserInfo::new(&user.name, &[super::rbac::SYSTEM_MASTERS]), namespace)
        }
        Authorization::Rbac if super::rbac::is_superuser(user) => RbacSnapshot::default().rules_for(user, namespace),
        Authorization::Rbac => RbacSnapshot::read(store).rules_for(user, namespace),
    };
    let resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| r.non_resource_urls.is_empty())
        .map(resource_rule)
        .collect();
    let non_resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !r.non_resource_urls.is_empty())
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(if errors.len() == 1 {
            errors[0].clone()
        } else {
            format!("[{}]", errors.join(", "))
        });
    }
    json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": metadata(body),
        "spec": spec,
        "status": status,
    })
}

fn resource_rule(rule: &PolicyRule) -> Value {
    let mut out = json!({"verbs": rule.verbs});
    if !rule.api_groups.is_empty() {
        out["apiGroups"] = json!(rule.api_groups);
    }
    if !rule.resources.is_empty() {
        out["resources"] = json!(rule.resources);
    }
    if !rule.resource_names.is_empty() {
        out["resourceNames"] = json!(rule.resource_names);
    }
    out
}
