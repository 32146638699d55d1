//! Authentication as the API server does it with bearer tokens and anonymous requests allowed, plus
//! user impersonation (`Impersonate-*` headers) and the TokenRequest API that issues service-account
//! tokens.
//!
//! Tokens are opaque random strings, not signed JWTs: clients never look inside them, and the
//! simulator keeps what each one stands for (the ServiceAccount, its uid, the bound object, the
//! expiry) in memory. A service-account token authenticates while its ServiceAccount exists with the
//! same uid (and is not being deleted), its bound object (if any) exists with the same uid, and it has
//! not expired — as the API server validates bound tokens.
use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::rbac::{ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, Attributes, Decision, ResourceAttributes, SYSTEM_MASTERS};
use super::{UserInfo, rbac};
use crate::registry::GroupResource;
use crate::status::{ApiError, ApiResult, FieldCause};
use crate::store::{ObjectKey, Store};

/// The user of the simulator's own admin token (what `Simulator::client` and its kubeconfig use).
pub const ADMIN_USER: &str = "sluice-admin";
pub const ANONYMOUS: &str = "system:anonymous";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// The API server's default audience (kubeadm's issuer), given to tokens that ask for none.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// `spec.expirationSeconds` when a TokenRequest sets none (the API's default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The API server's bounds on `spec.expirationSeconds`.
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What one issued service-account token stands for.
#[derive(Debug, Clone)]
struct IssuedToken {
    namespace: String,
    name: String,
    uid: String,
    expires: DateTime<Utc>,
    /// The object the token is bound to, with its uid: the token dies with it.
    bound: Option<(ObjectKey, String)>,
}

/// Knows the admin token and every issued service-account token.
#[derive(Debug)]
pub struct Authenticator {
    admin_token: String,
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh secret: 244 random bits from the OS generator (UUID v4 twice), as hex.
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Authenticator {
    /// An authenticator with a new random admin token.
    pub fn new() -> Self {
        Authenticator {
            admin_token: random_token(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The bearer token of user `sluice-admin` in `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The identity the request's credentials prove: the token's user, `system:anonymous` when the
    /// request has no bearer token, or 401 Unauthorized for a token that is not (or no longer) valid.
    pub fn authenticate(&self, headers: &HeaderMap, store: &Store, now: DateTime<Utc>) -> ApiResult<UserInfo> {
        let Some(token) = bearer_token(headers) else {
            return Ok(UserInfo::anonymous());
        };
        if token == self.admin_token {
            return Ok(UserInfo::new(ADMIN_USER, &[SYSTEM_MASTERS, ALL_AUTHENTICATED]));
        }
        let issued = {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            tokens.get(&token).cloned()
        };
        let Some(issued) = issued else {
            return Err(unauthorized());
        };
        if now >= issued.expires || !still_valid(&issued, store) {
            self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
            return Err(unauthorized());
        }
        let mut user = UserInfo::new(
            service_account_user(&issued.namespace, &issued.name),
            &service_account_groups(&issued.namespace)
                .iter()
                .map(String::as_str)
                .chain([ALL_AUTHENTICATED])
                .collect::<Vec<_>>(),
        );
        user.uid = issued.uid.clone();
        Ok(user)
    }

    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`, answered as the API server does: 201 with
    /// `status.authenticated` and the token's `status.user` (username, uid, groups), or
    /// `authenticated: false` and `status.error` for a token that is not (or no longer) valid. Who may
    /// create one is RBAC's business (Kubernetes grants it in `system:auth-delegator`, to no one by
    /// default). `spec.audiences` is echoed back: every token here is for the default audience.
    pub fn token_review(&self, store: &Store, body: &Value, now: DateTime<Utc>) -> ApiResult<Value> {
        let spec = body.get("spec").cloned().unwrap_or(Value::Null);
        let Some(token) = spec.get("token").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenReview",
                "",
                vec![FieldCause {
                    reason: "FieldValueRequired",
                    field: "spec.token".into(),
                    message: "Required value".into(),
                }],
            ));
        };
        let mut headers = HeaderMap::new();
        let user = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .and_then(|value| {
                headers.insert(axum::http::header::AUTHORIZATION, value);
                self.authenticate(&headers, store, now).ok()
            })
            .filter(|user| user.name != ANONYMOUS);
        let audiences = spec
            .get("audiences")
            .cloned()
            .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
            .unwrap_or_else(|| json!([DEFAULT_AUDIENCE]));
        let status = match user {
            Some(user) => {
                let mut info = json!({"username": user.name, "groups": user.groups});
                if !user.uid.is_empty() {
                    info["uid"] = json!(user.uid);
                }
                json!({"authenticated": true, "user": info, "audiences": audiences})
            }
            None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
        };
        let mut metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
        metadata["creationTimestamp"] = Value::Null;
        Ok(json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        }))
    }

    /// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a token for the ServiceAccount,
    /// answered as the TokenRequest with `status.token` and `status.expirationTimestamp`. Nothing is
    /// issued on a dry run (the answer carries no token).
    pub fn request_token(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        body: &Value,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != "TokenRequest"
        {
            return Err(ApiError::bad_request(format!(
                "the body of the request was a {kind}, not a TokenRequest"
            )));
        }
        let request_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spec = match body.get("spec") {
            None | Some(Value::Null) => json!({}),
            Some(spec @ Value::Object(_)) => spec.clone(),
            Some(_) => return Err(ApiError::bad_request("spec: expected an object")),
        };
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(v) => v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("spec.expirationSeconds: expected an integer, got {v}"))
            })?,
        };
        let audiences = match spec.get("audiences") {
            None | Some(Value::Null) => vec![DEFAULT_AUDIENCE.to_string()],
            Some(Value::Array(items)) => {
                let audiences: Option<Vec<String>> = items.iter().map(|a| a.as_str().map(str::to_string)).collect();
                let audiences =
                    audiences.ok_or_else(|| ApiError::bad_request("spec.audiences: expected a list of strings"))?;
                if audiences.is_empty() {
                    vec![DEFAULT_AUDIENCE.to_string()]
                } else {
                    audiences
                }
            }
            Some(_) => return Err(ApiError::bad_request("spec.audiences: expected a list of strings")),
        };
        let mut causes = Vec::new();
        if expiration < MIN_EXPIRATION_SECONDS {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: "spec.expirationSeconds".into(),
                message: format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
            });
        }
        if expiration > MAX_EXPIRATION_SECONDS {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: "spec.expirationSeconds".into(),
                message: format!("Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"),
            });
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                request_name,
                causes,
            ));
        }
        let txn = store.lock();
        let account = txn
            .get(&ObjectKey {
                resource: core("serviceaccounts"),
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .filter(|a| !a.deleting)
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
        let bound = match spec.get("boundObjectRef") {
            None | Some(Value::Null) => None,
            Some(reference) => Some(bound_object(&txn, namespace, name, reference)?),
        };
        drop(txn);
        let expires = now + chrono::Duration::seconds(expiration);
        let token = if dry_run {
            String::new()
        } else {
            let token = random_token();
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            // Forget expired tokens so the table only holds live ones.
            tokens.retain(|_, t| t.expires > now);
            tokens.insert(
                token.clone(),
                IssuedToken {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: account.uid.clone(),
                    expires,
                    bound: bound.as_ref().map(|(key, uid, _)| (key.clone(), uid.clone())),
                },
            );
            token
        };
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true)},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": bound.map(|(_, _, reference)| reference),
            },
            "status": {
                "token": token,
                "expirationTimestamp": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
        }))
    }
}

fn core(plural: &str) -> GroupResource {
    GroupResource {
        group: String::new(),
        plural: plural.into(),
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The object a token is bound to (a Pod or Secret of the ServiceAccount's namespace), checked to
/// exist with the uid the reference gives; the key, its uid and the reference as answered.
fn bound_object(
    txn: &crate::store::Txn<'_>,
    namespace: &str,
    account: &str,
    reference: &Value,
) -> ApiResult<(ObjectKey, String, Value)> {
    let field = |name: &str| reference.get(name).and_then(Value::as_str).unwrap_or_default();
    let (kind, api_version, name, uid) = (field("kind"), field("apiVersion"), field("name"), field("uid"));
    let plural = match (kind, api_version) {
        ("Pod", "v1") => "pods",
        ("Secret", "v1") => "secrets",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {account:?} to object of type {api_version}, Kind={kind}"
            )));
        }
    };
    let key = ObjectKey {
        resource: core(plural),
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let object = txn.get(&key).ok_or_else(|| ApiError::not_found("", plural, name))?;
    if !uid.is_empty() && uid != object.uid {
        return Err(ApiError::conflict(
            "",
            plural,
            name,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let answered = json!({"kind": kind, "apiVersion": api_version, "name": name, "uid": object.uid});
    Ok((key, object.uid.clone(), answered))
}

/// Whether the ServiceAccount (and bound object) a token was issued for still exist unchanged.
fn still_valid(issued: &IssuedToken, store: &Store) -> bool {
    let txn = store.lock();
    let account = txn.get(&ObjectKey {
        resource: core("serviceaccounts"),
        namespace: issued.namespace.clone(),
        name: issued.name.clone(),
    });
    let account_ok = account.is_some_and(|a| a.uid == issued.uid && !a.deleting);
    let bound_ok = issued
        .bound
        .as_ref()
        .is_none_or(|(key, uid)| txn.get(key).is_some_and(|o| o.uid == *uid && !o.deleting));
    account_ok && bound_ok
}

/// The bearer token of `Authorization: Bearer <token>` (scheme case-insensitive), or None when the
/// request carries no bearer credentials (and is then anonymous), as the API server reads it.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim();
    let mut parts = text.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return None;
    }
    Some(token.to_string())
}

pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

/// `system:serviceaccount:NS:NAME` split into a valid namespace and name, else None.
pub fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (dns_label(namespace) && dns_subdomain(name)).then_some((namespace, name))
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(dns_label)
}

/// One thing a request asks to impersonate (an `ObjectReference` of the API server's filter).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Impersonation {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Impersonation {
    /// How Go prints the ObjectReference in the API server's error (`{Kind Namespace Name UID
    /// APIVersion ResourceVersion FieldPath}`).
    fn go_format(&self) -> String {
        let (kind, namespace, name, api_version, field_path) = match self {
            Impersonation::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Impersonation::User(name) => ("User", "", name.as_str(), "", ""),
            Impersonation::Group(name) => ("Group", "", name.as_str(), "", ""),
            Impersonation::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Impersonation::Uid(uid) => ("UID", "", uid.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {namespace} {name}  {api_version}  {field_path}}}")
    }

    /// The `impersonate` request the caller must be authorized for.
    fn attributes(&self) -> ResourceAttributes {
        let (group, resource, subresource, namespace, name) = match self {
            Impersonation::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace.as_str(), name.as_str())
            }
            Impersonation::User(name) => ("", "users", "", "", name.as_str()),
            Impersonation::Group(name) => ("", "groups", "", "", name.as_str()),
            Impersonation::Extra { key, value } => {
                ("authentication.k8s.io", "userextras", key.as_str(), "", value.as_str())
            }
            Impersonation::Uid(uid) => ("authentication.k8s.io", "uids", "", "", uid.as_str()),
        };
        ResourceAttributes {
            verb: "impersonate".into(),
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// A header value as text; header values are bytes, and a name that is not UTF-8 is refused.
fn header_text(value: &axum::http::HeaderValue, header: &str) -> ApiResult<String> {
    std::str::from_utf8(value.as_bytes())
        .map(str::to_string)
        .map_err(|_| ApiError::bad_request(format!("the {header} header is not valid UTF-8")))
}

/// Decodes the %-escapes of an `Impersonate-Extra-` key; a malformed one is kept as it is.
fn unescape_extra_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

fn impersonation_requests(headers: &HeaderMap) -> ApiResult<Vec<Impersonation>> {
    let mut requests = Vec::new();
    let user = match headers.get("impersonate-user") {
        Some(v) => header_text(v, "Impersonate-User")?,
        None => String::new(),
    };
    let has_user = !user.is_empty();
    if has_user {
        requests.push(match split_service_account(&user) {
            Some((namespace, name)) => Impersonation::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            },
            None => Impersonation::User(user.clone()),
        });
    }
    let mut has_groups = false;
    for value in headers.get_all("impersonate-group") {
        has_groups = true;
        requests.push(Impersonation::Group(header_text(value, "Impersonate-Group")?));
    }
    let mut has_extra = false;
    // Header names come lower-cased; keys keep the order of first appearance.
    let mut keys: Vec<&str> = Vec::new();
    for name in headers.keys() {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    for key in keys {
        has_extra = true;
        let decoded = unescape_extra_key(key);
        for value in headers.get_all(format!("impersonate-extra-{key}").as_str()) {
            requests.push(Impersonation::Extra {
                key: decoded.clone(),
                value: header_text(value, "Impersonate-Extra")?,
            });
        }
    }
    let uid = match headers.get("impersonate-uid") {
        Some(v) => header_text(v, "Impersonate-Uid")?,
        None => String::new(),
    };
    let has_uid = !uid.is_empty();
    if has_uid {
        requests.push(Impersonation::Uid(uid));
    }
    if (has_groups || has_extra || has_uid) && !has_user {
        let listed: Vec<String> = requests.iter().map(Impersonation::go_format).collect();
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            listed.join(" ")
        )));
    }
    Ok(requests)
}

/// Applies the `Impersonate-*` headers: None when there are none, else the impersonated identity,
/// once `decide` allowed `requestor` to `impersonate` each user, service account, group, extra value
/// and uid asked for (403 with the API server's message for the first that is not).
pub fn impersonate(
    requestor: &UserInfo,
    headers: &HeaderMap,
    mut decide: impl FnMut(&Attributes) -> Decision,
) -> ApiResult<Option<UserInfo>> {
    let requests = impersonation_requests(headers)?;
    if requests.is_empty() {
        return Ok(None);
    }
    let groups_specified = requests.iter().any(|r| matches!(r, Impersonation::Group(_)));
    let mut user = UserInfo::default();
    for request in &requests {
        match request {
            Impersonation::ServiceAccount { namespace, name } => {
                user.name = service_account_user(namespace, name);
                if !groups_specified {
                    user.groups = service_account_groups(namespace);
                }
            }
            Impersonation::User(name) => user.name = name.clone(),
            Impersonation::Group(group) => user.groups.push(group.clone()),
            Impersonation::Extra { key, value } => user.extra.entry(key.clone()).or_default().push(value.clone()),
            Impersonation::Uid(uid) => user.uid = uid.clone(),
        }
        let attributes = Attributes::Resource(request.attributes());
        let decision = decide(&attributes);
        if !decision.allowed {
            return Err(rbac::forbidden(&requestor.name, &attributes, &decision.reason));
        }
    }
    if user.name != ANONYMOUS {
        if !user
            .groups
            .iter()
            .any(|g| g == ALL_AUTHENTICATED || g == ALL_UNAUTHENTICATED)
        {
            user.groups.push(ALL_AUTHENTICATED.into());
        }
    } else if !user.groups.iter().any(|g| g == ALL_UNAUTHENTICATED) {
        user.groups.push(ALL_UNAUTHENTICATED.into());
    }
    Ok(Some(user))
}

#[cfg(test)]
#[path = "authn_tests.rs"]
mod tests;
