//! Privilege-escalation prevention on RBAC writes, as the API server's RBAC storage does it: a Role
//! or ClusterRole may only be written by someone who holds every permission it grants (or may
//! `escalate` it), and a RoleBinding or ClusterRoleBinding only by someone who holds every permission
//! of the role it refers to (or may `bind` that role). `system:masters` may do anything.
use std::collections::BTreeMap;

use serde_json::Value;

use super::UserInfo;
use super::rbac::{self, Attributes, PolicyRule, RbacSnapshot, ResourceAttributes};
use crate::status::ApiError;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The check of one write of `object` (a `plural` of rbac.authorization.k8s.io) to `namespace` by
/// `user`, against the RBAC objects in force before the write; `request_name` is the name in the
/// request path (empty for a create).
pub fn check(
    user: &UserInfo,
    rbac_now: &RbacSnapshot,
    plural: &str,
    namespace: &str,
    request_name: &str,
    object: &Value,
) -> Result<(), ApiError> {
    if rbac::is_superuser(user) {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(request_name);
    let forbidden = |why: String| {
        let message = format!("{plural}.{RBAC_GROUP} {name:?} is forbidden: {why}");
        let mut error = ApiError::new(403, "Forbidden", message);
        error.details = Some((RBAC_GROUP.into(), plural.into(), name.to_string()));
        error
    };
    let allowed = |verb: &str, resource: &str, name: &str| {
        let attributes = Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: RBAC_GROUP.into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: name.into(),
        });
        rbac::authorize(user, &attributes, rbac_now).allowed
    };
    let rules = match plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", plural, request_name) {
                return Ok(());
            }
            rbac::parse_rules(object.get("rules"))
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_kind = object
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let role_name = object
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let role_resource = match role_kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                // Not a role the binding can refer to: validation is not this check's business.
                _ => return Ok(()),
            };
            if allowed("bind", role_resource, role_name) {
                return Ok(());
            }
            rbac_now
                .role_reference_rules(role_kind, role_name, namespace)
                .map_err(forbidden)?
        }
        _ => return Ok(()),
    };
    let (held, errors) = rbac_now.rules_for(user, namespace);
    let missing: Vec<PolicyRule> = breakdown(&rules)
        .into_iter()
        .filter(|wanted| !held.iter().any(|owner| covers(owner, wanted)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut descriptions: Vec<String> = compact(missing).iter().map(compact_string).collect();
    descriptions.sort();
    descriptions.dedup();
    let mut why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        why.push_str(&format!("; resolution errors: [{}]", errors.join(", ")));
    }
    Err(forbidden(why))
}

/// Every rule split into rules of one verb, group, resource and resource name (or one verb and
/// non-resource URL), as the API server breaks rules down before checking coverage.
fn breakdown(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for rule in rules {
        for verb in &rule.verbs {
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    let names: Vec<Vec<String>> = if rule.resource_names.is_empty() {
                        vec![vec![]]
                    } else {
                        rule.resource_names.iter().map(|n| vec![n.clone()]).collect()
                    };
                    for names in names {
                        out.push(PolicyRule {
                            verbs: vec![verb.clone()],
                            api_groups: vec![group.clone()],
                            resources: vec![resource.clone()],
                            resource_names: names,
                            non_resource_urls: vec![],
                        });
                    }
                }
            }
            for url in &rule.non_resource_urls {
                out.push(PolicyRule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Whether `owner` grants everything the broken-down rule `wanted` does.
fn covers(owner: &PolicyRule, wanted: &PolicyRule) -> bool {
    let has_all = |have: &[String], want: &[String]| want.iter().all(|w| have.contains(w));
    let star = |have: &[String]| have.iter().any(|h| h == "*");
    let verbs = star(&owner.verbs) || has_all(&owner.verbs, &wanted.verbs);
    let groups = star(&owner.api_groups) || has_all(&owner.api_groups, &wanted.api_groups);
    let resources = star(&owner.resources)
        || has_all(&owner.resources, &wanted.resources)
        || wanted.resources.iter().all(|r| {
            r.split_once('/')
                .is_some_and(|(_, sub)| owner.resources.contains(&format!("*/{sub}")))
        });
    let urls = wanted.non_resource_urls.iter().all(|url| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| o == url || (o.ends_with('*') && url.starts_with(o.trim_end_matches('*'))))
    });
    let names = if wanted.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &wanted.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Broken-down rules merged back where only the verb differs, for a readable message.
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    /// (apiGroups, resources, resourceNames, nonResourceURLs) → verbs.
    type Key = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);
    let mut merged: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for rule in rules {
        let verbs = merged
            .entry((
                rule.api_groups,
                rule.resources,
                rule.resource_names,
                rule.non_resource_urls,
            ))
            .or_default();
        for verb in rule.verbs {
            if !verbs.contains(&verb) {
                verbs.push(verb);
            }
        }
    }
    merged
        .into_iter()
        .map(
            |((api_groups, resources, resource_names, non_resource_urls), verbs)| PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls,
            },
        )
        .collect()
}

/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`, as the API server prints
/// a rule (Go's `%q` of a string slice).
fn compact_string(rule: &PolicyRule) -> String {
    let quoted = |items: &[String]| {
        let parts: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        format!("[{}]", parts.join(" "))
    };
    let mut parts = Vec::new();
    if !rule.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", quoted(&rule.api_groups)));
    }
    if !rule.resources.is_empty() {
        parts.push(format!("Resources:{}", quoted(&rule.resources)));
    }
    if !rule.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", quoted(&rule.non_resource_urls)));
    }
    if !rule.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", quoted(&rule.resource_names)));
    }
    if !rule.verbs.is_empty() {
        parts.push(format!("Verbs:{}", quoted(&rule.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> RbacSnapshot {
        RbacSnapshot::from_objects(&[
            json!({"kind": "ClusterRole", "metadata": {"name": "pods"},
                   "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"], "resourceNames": ["a"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "secrets"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "bob", "namespace": "shop"},
                   "roleRef": {"kind": "ClusterRole", "name": "pods"}, "subjects": [{"kind": "User", "name": "bob"}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "binder"},
                   "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                              "verbs": ["bind"], "resourceNames": ["secrets"]},
                             {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "carol"},
                   "roleRef": {"kind": "ClusterRole", "name": "binder"}, "subjects": [{"kind": "User", "name": "carol"}]}),
        ])
    }

    fn role(rules: Value) -> Value {
        json!({"kind": "Role", "metadata": {"name": "r", "namespace": "shop"}, "rules": rules})
    }

    fn binding(kind: &str, name: &str) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": "b"}, "roleRef": {"kind": kind, "name": name},
               "subjects": [{"kind": "User", "name": "eve"}]})
    }

    #[test]
    fn roles_may_grant_only_what_their_writer_holds() {
        let bob = UserInfo::new("bob", &["system:authenticated"]);
        let rbac = policy();
        let held = role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                               {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"], "resourceNames": ["a"]}]));
        assert!(check(&bob, &rbac, "roles", "shop", "", &held).is_ok());
        // The same permissions in another namespace are not held there.
        assert!(check(&bob, &rbac, "roles", "other", "", &held).is_err());
        let more = role(
            json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"]},
                               {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
        );
        let error = check(&bob, &rbac, "roles", "shop", "", &more).unwrap_err();
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        );
        let masters = UserInfo::new("root", &["system:masters"]);
        assert!(check(&masters, &rbac, "roles", "shop", "", &more).is_ok());
        // `escalate` on roles lifts the check.
        let carol = UserInfo::new("carol", &[]);
        assert!(check(&carol, &rbac, "roles", "shop", "", &more).is_ok());
        assert!(check(&carol, &rbac, "clusterroles", "", "", &more).is_err());
    }

    #[test]
    fn bindings_need_the_roles_permissions_or_bind() {
        let bob = UserInfo::new("bob", &[]);
        let rbac = policy();
        assert!(check(&bob, &rbac, "rolebindings", "shop", "", &binding("ClusterRole", "pods")).is_ok());
        assert!(
            check(
                &bob,
                &rbac,
                "rolebindings",
                "other",
                "",
                &binding("ClusterRole", "pods")
            )
            .is_err()
        );
        let error = check(
            &bob,
            &rbac,
            "rolebindings",
            "shop",
            "",
            &binding("ClusterRole", "secrets"),
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"bob\"")
        );
        let carol = UserInfo::new("carol", &[]);
        assert!(
            check(
                &carol,
                &rbac,
                "rolebindings",
                "shop",
                "",
                &binding("ClusterRole", "secrets")
            )
            .is_ok()
        );
        assert!(
            check(
                &carol,
                &rbac,
                "clusterrolebindings",
                "",
                "",
                &binding("ClusterRole", "secrets")
            )
            .is_ok()
        );
        assert!(
            check(
                &carol,
                &rbac,
                "rolebindings",
                "shop",
                "",
                &binding("ClusterRole", "pods")
            )
            .is_err()
        );
        let missing = check(&bob, &rbac, "rolebindings", "shop", "", &binding("Role", "gone")).unwrap_err();
        assert_eq!(
            missing.message,
            "rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: role.rbac.authorization.k8s.io \"gone\" not found"
        );
    }

    #[test]
    fn star_rules_cover_subresources_and_urls() {
        let owner = PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["apps".into()],
            resources: vec!["*/scale".into()],
            ..Default::default()
        };
        let wanted = |resource: &str| PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["apps".into()],
            resources: vec![resource.into()],
            ..Default::default()
        };
        assert!(covers(&owner, &wanted("deployments/scale")));
        assert!(!covers(&owner, &wanted("deployments")));
        let urls = PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: vec!["/logs/*".into()],
            ..Default::default()
        };
        let want_url = |url: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec![url.into()],
            ..Default::default()
        };
        assert!(covers(&urls, &want_url("/logs/a")));
        assert!(!covers(&urls, &want_url("/metrics")));
    }
}
