//! Role-based access control as the API server's RBAC authorizer decides it: ClusterRoleBindings grant
//! everywhere (resources and non-resource URLs), RoleBindings grant in their own namespace through a
//! Role of that namespace or a ClusterRole, and `system:masters` is allowed everything (the API
//! server's privileged-group authorizer, which runs before RBAC).
//!
//! The objects are read from the simulator's own store at request time ([`RbacSnapshot::read`]), so a
//! change to a Role or binding applies to the very next request.
//!
//! Bootstrap policy: the API server reconciles a set of ClusterRoles and ClusterRoleBindings at start
//! so that discovery, health checks and self reviews work for every client. The simulator compiles
//! the ones clients depend on in ([`bootstrap`]): `cluster-admin` (bound to `system:masters`),
//! `system:discovery`, `system:basic-user` and `system:public-info-viewer`. They are not stored (a
//! `kubectl get clusterroles` does not list them); a stored object of the same name replaces the
//! compiled-in one, as a reconciled object edited by an administrator would.
//!
//! Left out: aggregated ClusterRoles (`aggregationRule`). The API server's controller fills their
//! `rules` from the ClusterRoles whose labels match; here a ClusterRole grants only the rules it
//! states itself.
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::UserInfo;
use crate::registry::GroupResource;
use crate::status::ApiError;
use crate::store::Store;

/// The group every request of `system:masters` members is allowed by (the API server's superuser).
pub const SYSTEM_MASTERS: &str = "system:masters";
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Resource(ResourceAttributes),
    NonResource { verb: String, path: String },
}

/// A request on a resource (or a subresource) of an API group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped requests.
    pub namespace: String,
    /// Empty when the request names no object (list, watch, create of a collection).
    pub name: String,
}

impl Attributes {
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource(r) => &r.verb,
            Attributes::NonResource { verb, .. } => verb,
        }
    }
}

/// The authorizer's answer: allowed or not (RBAC never denies explicitly; it has no opinion), and
/// why, in the API server's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    pub fn allow(reason: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            reason: reason.into(),
        }
    }
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// A binding subject: `User`, `Group` or `ServiceAccount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub kind: String,
    pub name: String,
}

/// A RoleBinding (namespace set) or ClusterRoleBinding (namespace empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

/// The RBAC objects in force at one moment, plus the compiled-in bootstrap policy.
#[derive(Debug, Clone)]
pub struct RbacSnapshot {
    cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    /// (namespace, name) → rules.
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
    /// namespace → name → binding.
    role_bindings: BTreeMap<String, BTreeMap<String, Binding>>,
}

impl Default for RbacSnapshot {
    /// The bootstrap policy alone.
    fn default() -> Self {
        let mut snapshot = RbacSnapshot {
            cluster_roles: BTreeMap::new(),
            roles: BTreeMap::new(),
            cluster_role_bindings: BTreeMap::new(),
            role_bindings: BTreeMap::new(),
        };
        for object in bootstrap() {
            snapshot.insert(&object);
        }
        snapshot
    }
}

impl RbacSnapshot {
    /// The bootstrap policy with `objects` (Roles, ClusterRoles and their bindings, told apart by
    /// `kind`) over it. Objects of other kinds are ignored.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut snapshot = RbacSnapshot::default();
        for object in objects {
            snapshot.insert(object);
        }
        snapshot
    }

    /// The RBAC objects stored now. Malformed fields are read as absent: an object that states no
    /// usable rule or subject grants nothing, and never fails a request.
    pub fn read(store: &Store) -> Self {
        let mut snapshot = RbacSnapshot::default();
        let txn = store.lock();
        for (plural, kind) in [
            ("clusterroles", "ClusterRole"),
            ("roles", "Role"),
            ("clusterrolebindings", "ClusterRoleBinding"),
            ("rolebindings", "RoleBinding"),
        ] {
            let resource = GroupResource {
                group: RBAC_GROUP.into(),
                plural: plural.into(),
            };
            for object in txn.range(&resource, None, None) {
                // Objects being deleted still grant until they are gone, as in the API server.
                snapshot.insert_as(kind, &object.key.namespace, &object.value());
            }
        }
        snapshot
    }

    fn insert(&mut self, object: &Value) {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let namespace = text(object.pointer("/metadata/namespace"));
        self.insert_as(kind, &namespace, object);
    }

    fn insert_as(&mut self, kind: &str, namespace: &str, object: &Value) {
        let name = text(object.pointer("/metadata/name"));
        match kind {
            "ClusterRole" => {
                self.cluster_roles.insert(name, parse_rules(object.get("rules")));
            }
            "Role" => {
                self.roles
                    .insert((namespace.to_string(), name), parse_rules(object.get("rules")));
            }
            "ClusterRoleBinding" => {
                self.cluster_role_bindings
                    .insert(name.clone(), binding(name, "", object));
            }
            "RoleBinding" => {
                self.role_bindings
                    .entry(namespace.to_string())
                    .or_default()
                    .insert(name.clone(), binding(name, namespace, object));
            }
            _ => {}
        }
    }

    /// The rules a binding's roleRef names, or the API server's error for it.
    fn role_rules(&self, role_ref: &RoleRef, binding_namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(binding_namespace.to_string(), role_ref.name.clone()))
                .map(Vec::as_slice)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", role_ref.name)),
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .map(Vec::as_slice)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {:?} not found", role_ref.name)),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// The rules of the role a binding in `binding_namespace` refers to by `kind` and `name`, or the
    /// API server's error when there is no such role.
    pub fn role_reference_rules(
        &self,
        kind: &str,
        name: &str,
        binding_namespace: &str,
    ) -> Result<Vec<PolicyRule>, String> {
        let role_ref = RoleRef {
            kind: kind.into(),
            name: name.into(),
        };
        self.role_rules(&role_ref, binding_namespace)
            .map(<[PolicyRule]>::to_vec)
    }

    /// Visits the rules that apply to `user` in `namespace` (cluster-wide ones first), as the API
    /// server's rule resolver does; `visit` returns false to stop.
    fn visit_rules(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Result<(&Binding, &Subject, &PolicyRule), String>) -> bool,
    ) {
        // ClusterRoleBindings apply everywhere; RoleBindings only in the request's namespace.
        let cluster = self.cluster_role_bindings.values().map(|binding| (binding, ""));
        let namespaced = self
            .role_bindings
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .into_iter()
            .flat_map(BTreeMap::values)
            .map(|binding| (binding, namespace));
        for (binding, scope) in cluster.chain(namespaced) {
            let Some(subject) = applies_to(user, &binding.subjects, scope) else {
                continue;
            };
            match self.role_rules(&binding.role_ref, scope) {
                Ok(rules) => {
                    for rule in rules {
                        if !visit(Ok((binding, subject, rule))) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(Err(e)) {
                        return;
                    }
                }
            }
        }
    }

    /// Every rule that applies to `user` in `namespace` (for SelfSubjectRulesReview), and the errors
    /// met resolving bindings.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        if is_superuser(user) {
            return (superuser_rules(), vec![]);
        }
        let mut found = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, |item| {
            match item {
                Ok((_, _, rule)) => found.push(rule.clone()),
                Err(e) => errors.push(e),
            }
            true
        });
        (found, errors)
    }
}

/// Whether `user` is in the superuser group the API server allows everything.
pub fn is_superuser(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == SYSTEM_MASTERS)
}

/// The rules of the superuser (what a rules review reports for `system:masters`).
fn superuser_rules() -> Vec<PolicyRule> {
    let all = || vec!["*".to_string()];
    vec![
        PolicyRule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Default::default()
        },
        PolicyRule {
            verbs: all(),
            non_resource_urls: all(),
            ..Default::default()
        },
    ]
}

/// The decision of the API server's authorizer chain (superuser, then RBAC) for `user` doing
/// `attributes`, given the RBAC objects in `rbac`.
pub fn authorize(user: &UserInfo, attributes: &Attributes, rbac: &RbacSnapshot) -> Decision {
    if is_superuser(user) {
        return Decision::allow("");
    }
    let namespace = match attributes {
        Attributes::Resource(r) => r.namespace.as_str(),
        Attributes::NonResource { .. } => "",
    };
    let mut allowed_by = None;
    let mut errors: Vec<String> = Vec::new();
    rbac.visit_rules(user, namespace, |item| match item {
        Ok((binding, subject, rule)) => {
            if rule_allows(attributes, rule) {
                allowed_by = Some(describe(binding, subject));
                false
            } else {
                true
            }
        }
        Err(e) => {
            if !errors.contains(&e) {
                errors.push(e);
            }
            true
        }
    });
    match allowed_by {
        Some(source) => Decision::allow(format!("RBAC: allowed by {source}")),
        None if errors.is_empty() => Decision::no_opinion(""),
        None if errors.len() == 1 => Decision::no_opinion(format!("RBAC: {}", errors[0])),
        None => Decision::no_opinion(format!("RBAC: [{}]", errors.join(", "))),
    }
}

/// The 403 the API server answers when `user` may not do `attributes`; `reason` (the authorizer's,
/// possibly empty) is appended as it does.
pub fn forbidden(user: &str, attributes: &Attributes, reason: &str) -> ApiError {
    let what = match attributes {
        Attributes::NonResource { verb, path } => format!("User {user:?} cannot {verb} path {path:?}"),
        Attributes::Resource(r) => {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                r.verb, r.group
            )
        }
    };
    let what = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    let (group, resource, name) = match attributes {
        Attributes::Resource(r) => (r.group.clone(), r.resource.clone(), r.name.clone()),
        Attributes::NonResource { .. } => Default::default(),
    };
    let qualified = if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {what}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {what}")
    } else {
        format!("{qualified} {name:?} is forbidden: {what}")
    };
    let mut error = ApiError::new(403, "Forbidden", message);
    error.details = Some((group, resource, name));
    error
}

/// The first subject of a binding that names `user`. ServiceAccount subjects without a namespace
/// take the binding's (none for a ClusterRoleBinding, so they match nobody).
fn applies_to<'a>(user: &UserInfo, subjects: &'a [Subject], binding_namespace: &str) -> Option<&'a Subject> {
    subjects.iter().find(|subject| match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() {
                binding_namespace
            } else {
                subject.namespace.as_str()
            };
            !namespace.is_empty() && user.name == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        _ => false,
    })
}

/// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, as the API server's allow reasons read.
fn describe(binding: &Binding, subject: &Subject) -> String {
    let subject = match subject.kind.as_str() {
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() {
                &binding.namespace
            } else {
                &subject.namespace
            };
            format!("{} {:?}", subject.kind, format!("{}/{namespace}", subject.name))
        }
        _ => format!("{} {:?}", subject.kind, subject.name),
    };
    if binding.namespace.is_empty() {
        format!(
            "ClusterRoleBinding {:?} of {} {:?} to {subject}",
            binding.name, binding.role_ref.kind, binding.role_ref.name
        )
    } else {
        format!(
            "RoleBinding {:?} of {} {:?} to {subject}",
            format!("{}/{}", binding.name, binding.namespace),
            binding.role_ref.kind,
            binding.role_ref.name
        )
    }
}

/// Whether one rule grants the request (`RuleAllows` of the API server).
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    match attributes {
        Attributes::Resource(r) => {
            let combined = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            verb_matches(rule, &r.verb)
                && api_group_matches(rule, &r.group)
                && resource_matches(rule, &combined, &r.subresource)
                && resource_name_matches(rule, &r.name)
        }
        Attributes::NonResource { verb, path } => verb_matches(rule, verb) && non_resource_url_matches(rule, path),
    }
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == "*" || g == group)
}

fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|resource| {
        resource == "*"
            || resource == combined
            || (!subresource.is_empty()
                && resource.len() == subresource.len() + 2
                && resource.starts_with("*/")
                && resource.ends_with(subresource))
    })
}

/// A rule with resourceNames only matches requests that name one of them: never a list, a watch of
/// a collection or a create (whose name is not part of the request path).
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls
        .iter()
        .any(|url| url == "*" || url == path || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*'))))
}

fn text(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or_default().to_string()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The `rules` of a Role or ClusterRole; malformed entries are left out.
pub fn parse_rules(value: Option<&Value>) -> Vec<PolicyRule> {
    value
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter(|r| r.is_object())
                .map(|r| PolicyRule {
                    verbs: strings(r.get("verbs")),
                    api_groups: strings(r.get("apiGroups")),
                    resources: strings(r.get("resources")),
                    resource_names: strings(r.get("resourceNames")),
                    non_resource_urls: strings(r.get("nonResourceURLs")),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn binding(name: String, namespace: &str, object: &Value) -> Binding {
    let subjects = object
        .get("subjects")
        .and_then(Value::as_array)
        .map(|subjects| {
            subjects
                .iter()
                .map(|s| Subject {
                    kind: text(s.get("kind")),
                    name: text(s.get("name")),
                    namespace: text(s.get("namespace")),
                })
                .collect()
        })
        .unwrap_or_default();
    Binding {
        name,
        namespace: namespace.to_string(),
        role_ref: RoleRef {
            kind: text(object.pointer("/roleRef/kind")),
            name: text(object.pointer("/roleRef/name")),
        },
        subjects,
    }
}

/// The part of the API server's bootstrap policy that clients rely on (see the module docs).
pub fn bootstrap() -> Vec<Value> {
    let cluster_role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    vec![
        cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        binding("cluster-admin", &[SYSTEM_MASTERS]),
        cluster_role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                        "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        binding("system:discovery", &[ALL_AUTHENTICATED]),
        cluster_role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        binding("system:public-info-viewer", &[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]),
        cluster_role(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                    "verbs": ["create"]}]),
        ),
        binding("system:basic-user", &[ALL_AUTHENTICATED]),
    ]
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
