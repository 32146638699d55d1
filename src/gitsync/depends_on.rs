//! Reads what `spec.dependsOn` needs (the decision is `plan::dependencies`): the GitSyncs a GitSync
//! depends on, and theirs in turn (bounded) to find a cycle, read as the identity the GitSync
//! applies as — a GitSync learns nothing about a GitSync its ServiceAccount could not read.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::api::gitsync::GitSync;
use crate::gitsync::plan::dependencies::{self, Gate, Key, Lookup, MAX_GRAPH_NODES};

/// One read of a GitSync gives up after this long (the whole walk after the sync's timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `gitsync` may apply a new revision now. `client` is the identity it applies as;
/// `confine_to` the only namespace it may read when it applies as the controller without a
/// ServiceAccount. Gives up after `timeout` (waiting, saying so).
pub async fn gate(gitsync: &GitSync, client: &Client, confine_to: Option<&str>, timeout: Duration) -> Gate {
    let namespace = gitsync.namespace().unwrap_or_default();
    let own = Key::new(&namespace, &gitsync.name_any());
    let direct = dependencies::dependencies(&gitsync.spec, &namespace);
    match tokio::time::timeout(timeout, read(client, &own, &direct, confine_to)).await {
        Ok((lookups, graph)) => dependencies::gate(&own, &lookups, &graph),
        Err(_) => Gate::Wait(format!(
            "reading its dependencies did not finish within {}s (spec.timeout)",
            timeout.as_secs()
        )),
    }
}

/// The direct dependencies as read, and the graph around `own` breadth first: at most
/// [`MAX_GRAPH_NODES`] GitSyncs read, each once; what cannot be read adds no edges.
async fn read(
    client: &Client,
    own: &Key,
    direct: &[Key],
    confine_to: Option<&str>,
) -> (Vec<(Key, Lookup)>, BTreeMap<Key, Vec<Key>>) {
    let mut graph: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
    graph.insert(own.clone(), direct.to_vec());
    let mut lookups = Vec::with_capacity(direct.len());
    let mut queue: VecDeque<Key> = direct.iter().cloned().collect();
    let mut reads = 0;
    while let Some(key) = queue.pop_front() {
        if graph.contains_key(&key) || reads >= MAX_GRAPH_NODES {
            continue;
        }
        reads += 1;
        let lookup = read_one(client, &key, confine_to).await;
        let edges = match &lookup {
            Lookup::Found(found) => dependencies::dependencies(&found.spec, &key.namespace),
            Lookup::Missing | Lookup::Unreadable(_) => Vec::new(),
        };
        queue.extend(edges.iter().cloned());
        graph.insert(key.clone(), edges);
        if direct.contains(&key) {
            lookups.push((key, lookup));
        }
    }
    // A dependency on itself is in the graph as `own`, never read: it is the cycle reported.
    (lookups, graph)
}

async fn read_one(client: &Client, key: &Key, confine_to: Option<&str>) -> Lookup {
    if let Some(namespace) = confine_to
        && namespace != key.namespace
    {
        return Lookup::Unreadable(format!(
            "a GitSync without spec.serviceAccountName may depend only on GitSyncs of its own namespace {namespace:?}"
        ));
    }
    let api: Api<GitSync> = Api::namespaced(client.clone(), &key.namespace);
    match tokio::time::timeout(READ_TIMEOUT, api.get_opt(&key.name)).await {
        Ok(Ok(Some(found))) => Lookup::Found(Box::new(found)),
        Ok(Ok(None)) => Lookup::Missing,
        Ok(Err(kube::Error::Api(e))) => Lookup::Unreadable(e.message),
        Ok(Err(e)) => Lookup::Unreadable(e.to_string()),
        Err(_) => Lookup::Unreadable(format!("timed out after {}s", READ_TIMEOUT.as_secs())),
    }
}
