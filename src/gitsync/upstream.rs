//! Reads the GitSyncs a stage follows (and theirs, up the chain) for `plan::promotion`, as the identity
//! the stage applies as: RBAC decides whether a tenant may follow another namespace's GitSync, and a
//! GitSync confined to its namespace (no ServiceAccount) follows only GitSyncs there.
use std::collections::VecDeque;
use std::time::Duration;

use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::api::gitsync::GitSync;
use crate::gitsync::plan::promotion::{Chain, MAX_CHAIN_NODES, Stage, StageNode, check_name, key};

/// Every GitSync reachable upstream of `gitsync` (itself included), at most [`MAX_CHAIN_NODES`], each
/// read with `timeout`. A GitSync that cannot be read is recorded as such (the plan waits and says
/// why), never an error of this reconcile: a missing upstream must not turn into a retry storm.
pub async fn read_chain(client: &Client, gitsync: &GitSync, confine_to: Option<&str>, timeout: Duration) -> Chain {
    let namespace = gitsync.namespace().unwrap_or_default();
    let own = StageNode::new(&namespace, &gitsync.spec, gitsync.status.as_ref());
    let mut queue: VecDeque<String> = own.upstreams.iter().cloned().collect();
    let mut chain = Chain::new();
    chain.insert(key(&namespace, &gitsync.name_any()), Stage::Found(own));
    while let Some(next) = queue.pop_front() {
        if chain.contains_key(&next) {
            continue;
        }
        if chain.len() >= MAX_CHAIN_NODES {
            break;
        }
        let stage = read_stage(client, &next, confine_to, timeout).await;
        if let Stage::Found(node) = &stage {
            queue.extend(node.upstreams.iter().cloned());
        }
        chain.insert(next, stage);
    }
    chain
}

async fn read_stage(client: &Client, key: &str, confine_to: Option<&str>, timeout: Duration) -> Stage {
    let Some((namespace, name)) = key.split_once('/') else {
        return Stage::Unavailable("not a namespace/name".into());
    };
    // Names come from other GitSyncs' specs: never put an unchecked one into a request path.
    if check_name(namespace, 63).is_err() || namespace.contains('.') || check_name(name, 253).is_err() {
        return Stage::Unavailable("not a valid GitSync name".into());
    }
    if let Some(own) = confine_to
        && own != namespace
    {
        return Stage::Unavailable(format!(
            "in namespace {namespace}: a GitSync without a ServiceAccount follows only GitSyncs of its own \
             namespace ({own}); set spec.serviceAccountName to one allowed to get gitsyncs there"
        ));
    }
    let api: Api<GitSync> = Api::namespaced(client.clone(), namespace);
    match tokio::time::timeout(timeout, api.get_opt(name)).await {
        Err(_) => Stage::Unavailable(format!("reading it timed out after {}s", timeout.as_secs())),
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => Stage::Unavailable(format!(
            "not readable as this GitSync's identity (forbidden): {}",
            status.message
        )),
        Ok(Err(e)) => Stage::Unavailable(format!("reading it: {e}")),
        Ok(Ok(None)) => Stage::Unavailable("not found".into()),
        Ok(Ok(Some(upstream))) => Stage::Found(StageNode::new(namespace, &upstream.spec, upstream.status.as_ref())),
    }
}
