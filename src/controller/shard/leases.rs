//! The Lease I/O of sharding: each replica keeps a membership Lease (`<lease-name>-member-<identity>`)
//! so the others can count it, and takes, renews and gives back up to its fair share of the shard
//! Leases (`<lease-name>-shard-K`). [`super::run`] runs the controllers for the shards held here.
//!
//! Safety, as in single-leader mode ([`crate::controller::leader`]): a Lease changes hands only through
//! a write that names the resourceVersion the taker read (the API server refuses it if the holder
//! renewed meanwhile); a taken shard counts as writable only once it is still this replica's
//! [`CONFIRM_AFTER`] later; a shard whose renewal has not succeeded for `renew_deadline` (measured
//! from when the renewal was sent) is dropped, and that deadline is published for the runner's
//! watchdog; and a replica sees another's Lease as expired only when its resourceVersion has not
//! changed for the lease duration on its own clock (no cross-node clock comparison), which is longer
//! than the renew deadline.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use super::{LeaseState, Step, member_lease_name, plan, shard_lease_name};
use crate::controller::leader::LeaderElection;

/// How long a newly taken shard is renewed, and found still held, before this replica writes to it:
/// the same reasoning as single-leader mode's confirmation (a late competitor's write lands first).
pub const CONFIRM_AFTER: Duration = Duration::from_millis(1500);

/// A shard Lease this replica holds (or has just taken and not yet confirmed).
#[derive(Debug, Clone)]
struct Held {
    resource_version: String,
    /// When the last successful renewal (or the acquisition) was sent: the renew deadline runs from here.
    renewed_at: Instant,
    confirm_at: Instant,
    confirmed: bool,
}

/// A Lease of another replica: its resourceVersion and when this replica first saw it.
#[derive(Debug, Clone)]
struct Seen {
    resource_version: String,
    since: Instant,
}

/// The shard Leases as this replica holds and sees them, and its membership Lease.
pub(super) struct Shards {
    leases: Api<Lease>,
    election: LeaderElection,
    shard_count: u16,
    member: String,
    held: BTreeMap<u16, Held>,
    seen: HashMap<String, Seen>,
    /// The earliest renew deadline of the held shards, read by the runner's watchdog.
    deadline: tokio::sync::watch::Sender<Option<Instant>>,
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Shards {
    /// `deadline` receives the earliest renew deadline of the confirmed shards (None: none held).
    pub(super) fn new(
        lease_client: Client,
        election: LeaderElection,
        shard_count: u16,
        deadline: tokio::sync::watch::Sender<Option<Instant>>,
    ) -> Shards {
        Shards {
            leases: Api::namespaced(lease_client, &election.namespace),
            member: member_lease_name(&election.lease_name, &election.identity),
            election,
            shard_count,
            held: BTreeMap::new(),
            seen: HashMap::new(),
            deadline,
        }
    }

    pub(super) fn election(&self) -> &LeaderElection {
        &self.election
    }

    /// The name of this replica's membership Lease.
    pub(super) fn member(&self) -> &str {
        &self.member
    }

    fn shard_prefix(&self) -> String {
        format!("{}-shard-", self.election.lease_name)
    }

    fn member_prefix(&self) -> String {
        format!("{}-member-", self.election.lease_name)
    }

    /// Each Lease call's timeout: half the renew deadline, so that a slow API server (a loaded one
    /// answers in seconds) delays a renewal without failing it, and one late answer still leaves a second
    /// attempt before the deadline. Safety does not rest on it: the deadline runs from when a renewal was sent.
    fn timeout(&self) -> Duration {
        (self.election.renew_deadline / 2).max(self.election.retry_period)
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.election.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// The held shards this replica may write to.
    pub(super) fn confirmed(&self) -> BTreeSet<u16> {
        self.held
            .iter()
            .filter(|(_, held)| held.confirmed)
            .map(|(shard, _)| *shard)
            .collect()
    }

    fn publish_deadline(&self) {
        let earliest = self
            .held
            .values()
            .filter(|held| held.confirmed)
            .map(|held| held.renewed_at + self.election.renew_deadline)
            .min();
        self.deadline.send_replace(earliest);
    }

    /// One pass: renew, look, drop what is lost, take or give up one shard. Returns the shards to
    /// release once the controllers writing to them are stopped.
    pub(super) async fn pass(&mut self) -> Vec<u16> {
        // At once: a slow answer to one does not delay the others past the renew deadline.
        let all = ListParams::default();
        let (_, renewed, listed) = futures::join!(
            self.renew_member(),
            self.renewals(),
            tokio::time::timeout(self.timeout(), self.leases.list(&all)),
        );
        self.apply_renewals(renewed);
        let listed = match listed {
            Ok(Ok(list)) => Some(list.items),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "listing the shard Leases");
                None
            }
            Err(_) => {
                tracing::warn!("listing the shard Leases timed out");
                None
            }
        };
        let now = Instant::now();
        self.drop_expired(now);
        let Some(listed) = listed else {
            self.publish_deadline();
            return vec![];
        };
        let (states, live) = self.observe(&listed, now).await;
        self.publish_deadline();
        match plan(&states, live) {
            Step::Acquire(shard) => {
                let existing = listed
                    .iter()
                    .find(|lease| lease.name_any() == shard_lease_name(&self.election.lease_name, shard));
                self.acquire(shard, existing).await;
                vec![]
            }
            Step::Release(shard) => {
                tracing::info!(shard, live, "above the fair share: giving up a shard");
                self.held.remove(&shard);
                self.publish_deadline();
                vec![shard]
            }
            Step::Nothing => vec![],
        }
    }

    /// Shards whose renewal has not succeeded within the renew deadline are dropped.
    fn drop_expired(&mut self, now: Instant) {
        let deadline = self.election.renew_deadline;
        self.held.retain(|shard, held| {
            let alive = now.duration_since(held.renewed_at) <= deadline;
            if !alive {
                tracing::warn!(
                    shard,
                    "shard Lease not renewed within the renew deadline: dropping the shard"
                );
            }
            alive
        });
    }

    /// Reads the listed Leases into the plan's view and the count of live replicas; drops held
    /// shards another replica now holds, confirms taken ones, and deletes expired membership Leases.
    async fn observe(&mut self, listed: &[Lease], now: Instant) -> (Vec<LeaseState>, usize) {
        let (shard_prefix, member_prefix) = (self.shard_prefix(), self.member_prefix());
        let mut states = vec![LeaseState::Free; usize::from(self.shard_count)];
        let mut live = 1usize;
        let mut expired_members = vec![];
        let mut current = HashMap::new();
        for lease in listed {
            let name = lease.name_any();
            let resource_version = lease.resource_version().unwrap_or_default();
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.election.lease_duration, Duration::from_secs);
            let seen = match self.seen.get(&name) {
                Some(seen) if seen.resource_version == resource_version => seen.clone(),
                _ => Seen {
                    resource_version: resource_version.clone(),
                    since: now,
                },
            };
            let expired = now.duration_since(seen.since) > duration;
            current.insert(name.clone(), seen);
            if let Some(rest) = name.strip_prefix(&member_prefix) {
                if name == self.member || rest.is_empty() {
                    continue;
                }
                if expired {
                    expired_members.push(name);
                } else {
                    live += 1;
                }
                continue;
            }
            let Some(shard) = name
                .strip_prefix(&shard_prefix)
                .and_then(|k| k.parse::<u16>().ok())
                .filter(|k| *k < self.shard_count)
            else {
                continue;
            };
            let index = usize::from(shard);
            if holder == self.election.identity {
                match self.held.get_mut(&shard) {
                    Some(held) => {
                        // A renewal whose answer was lost (a timeout) may have landed: renew from
                        // what the server holds, or every later renewal conflicts. Not a renewal
                        // itself: the deadline still runs from the last one known to succeed.
                        held.resource_version = resource_version.clone();
                        if !held.confirmed && now >= held.confirm_at {
                            held.confirmed = true;
                            tracing::info!(shard, "shard Lease confirmed: writing to its namespaces");
                        }
                        states[index] = LeaseState::Mine;
                    }
                    // Ours on the server but not here (an answer lost to a timeout, or dropped at the
                    // deadline): free it, never write on it.
                    None => {
                        self.release_lease(shard, &resource_version).await;
                        states[index] = LeaseState::Other(holder);
                    }
                }
            } else {
                if self.held.remove(&shard).is_some() {
                    tracing::warn!(shard, holder = %holder, "shard Lease taken by another replica: dropping the shard");
                }
                states[index] = if holder.is_empty() || expired {
                    LeaseState::Free
                } else {
                    LeaseState::Other(holder)
                };
            }
        }
        // Held shards whose Lease is gone are lost too.
        let listed_names: BTreeSet<String> = listed.iter().map(|l| l.name_any()).collect();
        let lease_name = self.election.lease_name.clone();
        self.held.retain(|shard, _| {
            let present = listed_names.contains(&shard_lease_name(&lease_name, *shard));
            if !present {
                tracing::warn!(shard, "shard Lease deleted: dropping the shard");
            }
            present
        });
        self.seen = current;
        for name in expired_members {
            tracing::info!(member = %name, "deleting an expired membership Lease");
            let _ = tokio::time::timeout(self.timeout(), self.leases.delete(&name, &DeleteParams::default())).await;
        }
        (states, live)
    }

    fn lease_body(&self, name: &str, resource_version: Option<&str>, transitions: i32) -> serde_json::Value {
        let now = now_micro();
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": name, "resourceVersion": resource_version },
            "spec": {
                "holderIdentity": self.election.identity,
                "leaseDurationSeconds": self.lease_seconds(),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            }
        })
    }

    /// Creates or renews this replica's membership Lease.
    async fn renew_member(&self) {
        let patch = json!({
            "spec": {
                "holderIdentity": self.election.identity,
                "leaseDurationSeconds": self.lease_seconds(),
                "renewTime": now_micro(),
            }
        });
        let patched = tokio::time::timeout(
            self.timeout(),
            self.leases
                .patch(&self.member, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await;
        if let Ok(Err(kube::Error::Api(status))) = &patched
            && status.code == 404
        {
            let body = self.lease_body(&self.member, None, 0);
            match serde_json::from_value::<Lease>(body) {
                Ok(lease) => {
                    let created =
                        tokio::time::timeout(self.timeout(), self.leases.create(&PostParams::default(), &lease)).await;
                    if let Ok(Err(e)) = created {
                        tracing::warn!(error = %e, "creating the membership Lease");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "building the membership Lease"),
            }
        } else if let Ok(Err(e)) = patched {
            tracing::warn!(error = %e, "renewing the membership Lease");
        }
    }

    /// Renews every held shard Lease at once, naming the resourceVersion last written: a conflict means
    /// the Lease changed under this replica, and the next look decides whether it is still held.
    async fn renewals(&self) -> Vec<(u16, Instant, Result<kube::Result<Lease>, tokio::time::error::Elapsed>)> {
        let identity = self.election.identity.clone();
        let renewals = self.held.iter().map(|(shard, held)| {
            let name = shard_lease_name(&self.election.lease_name, *shard);
            let patch = json!({
                "metadata": { "resourceVersion": held.resource_version },
                "spec": { "holderIdentity": identity, "renewTime": now_micro() },
            });
            let leases = self.leases.clone();
            let timeout = self.timeout();
            let shard = *shard;
            async move {
                let sent = Instant::now();
                let result = tokio::time::timeout(
                    timeout,
                    leases.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await;
                (shard, sent, result)
            }
        });
        futures::future::join_all(renewals).await
    }

    fn apply_renewals(
        &mut self,
        renewed: Vec<(u16, Instant, Result<kube::Result<Lease>, tokio::time::error::Elapsed>)>,
    ) {
        for (shard, sent, result) in renewed {
            match result {
                Ok(Ok(lease)) => {
                    if let Some(held) = self.held.get_mut(&shard) {
                        held.resource_version = lease.resource_version().unwrap_or_default();
                        held.renewed_at = sent;
                    }
                }
                Ok(Err(e)) => tracing::warn!(shard, error = %e, "renewing a shard Lease"),
                Err(_) => tracing::warn!(shard, "renewing a shard Lease timed out"),
            }
        }
        self.publish_deadline();
    }

    /// Takes a free shard: creates its Lease, or takes over the released/expired one at the
    /// resourceVersion this replica saw (a conflict: someone else was quicker, or the holder renewed).
    async fn acquire(&mut self, shard: u16, existing: Option<&Lease>) {
        let name = shard_lease_name(&self.election.lease_name, shard);
        let sent = Instant::now();
        let written = match existing {
            None => {
                let lease = match serde_json::from_value::<Lease>(self.lease_body(&name, None, 0)) {
                    Ok(lease) => lease,
                    Err(e) => {
                        tracing::warn!(error = %e, "building a shard Lease");
                        return;
                    }
                };
                tokio::time::timeout(self.timeout(), self.leases.create(&PostParams::default(), &lease)).await
            }
            Some(lease) => {
                let transitions = lease
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.lease_transitions)
                    .unwrap_or(0)
                    .saturating_add(1);
                let resource_version = lease.resource_version().unwrap_or_default();
                let body = self.lease_body(&name, Some(&resource_version), transitions);
                tokio::time::timeout(
                    self.timeout(),
                    self.leases.patch(&name, &PatchParams::default(), &Patch::Merge(&body)),
                )
                .await
            }
        };
        match written {
            Ok(Ok(lease)) => {
                tracing::info!(shard, "took a shard Lease; confirming it before writing");
                self.held.insert(
                    shard,
                    Held {
                        resource_version: lease.resource_version().unwrap_or_default(),
                        renewed_at: sent,
                        confirm_at: sent + CONFIRM_AFTER,
                        confirmed: false,
                    },
                );
            }
            Ok(Err(e)) => tracing::debug!(shard, error = %e, "taking a shard Lease (another replica was quicker?)"),
            Err(_) => tracing::warn!(shard, "taking a shard Lease timed out"),
        }
    }

    async fn release_lease(&self, shard: u16, resource_version: &str) {
        let name = shard_lease_name(&self.election.lease_name, shard);
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "holderIdentity": null },
        });
        match tokio::time::timeout(
            self.timeout(),
            self.leases.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => tracing::info!(shard, "released a shard Lease"),
            Ok(Err(e)) => tracing::warn!(shard, error = %e, "releasing a shard Lease; it expires instead"),
            Err(_) => tracing::warn!(shard, "releasing a shard Lease timed out; it expires instead"),
        }
    }

    /// Releases a shard given up at the fair share: read, and clear the holder if it is still this replica.
    pub(super) async fn release(&self, shard: u16) {
        let name = shard_lease_name(&self.election.lease_name, shard);
        if let Ok(Ok(Some(lease))) = tokio::time::timeout(self.timeout(), self.leases.get_opt(&name)).await {
            let holder = lease.spec.as_ref().and_then(|spec| spec.holder_identity.clone());
            if holder.as_deref() == Some(self.election.identity.as_str()) {
                self.release_lease(shard, &lease.resource_version().unwrap_or_default())
                    .await;
            }
        }
    }

    /// On shutdown: every held shard goes back, and the membership Lease is deleted so the others
    /// raise their share at once.
    pub(super) async fn release_all(&mut self) {
        let held: Vec<u16> = std::mem::take(&mut self.held).into_keys().collect();
        self.publish_deadline();
        futures::future::join_all(held.into_iter().map(|shard| self.release(shard))).await;
        let _ = tokio::time::timeout(
            self.timeout(),
            self.leases.delete(&self.member, &DeleteParams::default()),
        )
        .await;
    }
}
