//! In-cluster mode: the dashboard is a Deployment, so it must never act with its own rights. Each
//! request's bearer token is checked with a TokenReview, each read and action with a
//! SubjectAccessReview for that user (the verb, resource and subresource the CLI's write uses), and
//! actions are sent with a client built from the user's own token, so the API server checks them
//! again. The dashboard's ServiceAccount needs only reads and the two review grants.
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::{Client, Config};

/// Who a token belongs to, as the TokenReview said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
    /// The bearer token itself, to act as the user.
    pub token: String,
}

/// Bearer tokens longer than this are refused without asking the API server.
const MAX_TOKEN: usize = 16 * 1024;

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let token = header?.strip_prefix("Bearer ")?.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN && token.bytes().all(|b| b.is_ascii_graphic())).then_some(token)
}

async fn with_timeout<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = kube::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("{what}: no answer from the API server within {timeout:?}")),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Asks the API server who `token` is; None when it is not a valid token.
pub async fn review_token(client: &Client, token: &str, timeout: Duration) -> Result<Option<User>, String> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let answer = with_timeout(timeout, "TokenReview", api.create(&PostParams::default(), &review)).await?;
    let Some(status) = answer.status.filter(|s| s.authenticated == Some(true)) else {
        return Ok(None);
    };
    let Some(user) = status
        .user
        .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
    else {
        return Ok(None);
    };
    Ok(Some(User {
        username: user.username.unwrap_or_default(),
        uid: user.uid,
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
        token: token.to_string(),
    }))
}

/// One access check: may `user` do `verb` on `resource` (and `subresource`) in `namespace`?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

pub async fn allowed(client: &Client, user: &User, access: &Access<'_>, timeout: Duration) -> Result<bool, String> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(crate::api::GROUP.to_string()),
                resource: Some(access.resource.to_string()),
                subresource: access.subresource.map(str::to_string),
                verb: Some(access.verb.to_string()),
                namespace: Some(access.namespace.to_string()),
                name: access.name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = with_timeout(
        timeout,
        "SubjectAccessReview",
        api.create(&PostParams::default(), &review),
    )
    .await?;
    Ok(answer.status.is_some_and(|s| s.allowed && s.denied != Some(true)))
}

/// A client that authenticates with the user's token and nothing of the dashboard's own credentials.
pub fn user_client(base: &Config, token: &str) -> anyhow::Result<Client> {
    let mut config = base.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Ok(Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_bearer_header_gives_a_token() {
        assert_eq!(bearer(Some("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer(Some("bearer abc")), None);
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer a b")), None);
        assert_eq!(bearer(Some(&format!("Bearer {}", "a".repeat(MAX_TOKEN + 1)))), None);
        assert_eq!(bearer(None), None);
    }
}
