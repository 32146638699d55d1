//! Who a request comes from and whether it may do what it asks, as the API server decides it:
//! authentication (bearer tokens, anonymous requests), impersonation, and authorization (RBAC, or
//! everything allowed).
pub mod authn;
pub mod escalation;
pub mod rbac;
pub mod reviews;

use std::collections::BTreeMap;

use serde::Serialize;

pub use authn::Authenticator;
pub use rbac::{Attributes, Decision, RbacSnapshot, ResourceAttributes, authorize};

use crate::store::Store;

/// How the simulator authorizes requests (`sluice sim --authorization`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Authorization {
    /// Role-based access control from the stored Roles, ClusterRoles and bindings.
    #[default]
    Rbac,
    /// Every authenticated (or anonymous) request is allowed; who made it is still logged.
    AlwaysAllow,
}

impl Authorization {
    /// The decision for `user` doing `attributes`, reading the RBAC objects from `store` only when
    /// RBAC must be consulted (superusers and AlwaysAllow never need them).
    pub fn decide(self, user: &UserInfo, attributes: &Attributes, store: &Store) -> Decision {
        match self {
            Authorization::AlwaysAllow => Decision::allow(""),
            Authorization::Rbac if rbac::is_superuser(user) => Decision::allow(""),
            Authorization::Rbac => authorize(user, attributes, &RbacSnapshot::read(store)),
        }
    }
}

/// An authenticated identity (`user.Info` of the API server).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    /// `system:anonymous` in `system:unauthenticated`: a request without credentials.
    pub fn anonymous() -> Self {
        UserInfo::new(authn::ANONYMOUS, &[rbac::ALL_UNAUTHENTICATED])
    }
}

/// Who a request is from, as the handlers after authentication see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The identity the credentials prove.
    pub authenticated: UserInfo,
    /// Whom the request acts as: `authenticated`, or the impersonated identity.
    pub user: UserInfo,
    /// `allow`, or `deny` when the request was refused.
    pub decision: &'static str,
}

#[cfg(test)]
mod http_tests;
