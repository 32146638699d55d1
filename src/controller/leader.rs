//! Leader election for `sluice controller --leader-elect`: replicas campaign for a
//! coordination.k8s.io/v1 Lease (through `kube-lease-manager`); only the holder runs the controllers.
//!
//! Safety rests on four things. A new holder confirms the lease is still its own after a short delay
//! before it writes (see [`CONFIRM_AFTER`]). The leader checks its own renewals and steps down once the lease has
//! not been renewed for `renew_deadline`, which is shorter than the lease duration a standby waits
//! before taking over (the gap absorbs clock skew and the last in-flight request). Writes go through a
//! client [`WriteGate`] closed the moment leadership ends, so nothing is written after the loss. And a
//! replica that loses the lease exits non-zero instead of campaigning again: Kubernetes restarts it as
//! a clean standby, with no reconcile, cache or expectation left over from its time as leader, and the
//! rollouts resume from their status (a restart at any moment is safe by design).
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio_util::sync::CancellationToken;

use crate::client::WriteGate;
use crate::controller::{ControllerConfig, Endpoints, serve_endpoints, start_controllers};

/// The Lease the replicas compete for.
pub const DEFAULT_LEASE_NAME: &str = "sluice-controller";
/// Where the Lease lives when neither the flag nor the pod's own namespace says.
pub const FALLBACK_NAMESPACE: &str = "sluice-system";
const IN_CLUSTER_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Of the shutdown grace, what is kept for releasing the lease.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);

/// How a replica takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    /// Unique per process: the holderIdentity written to the Lease.
    pub identity: String,
    /// How long a Lease is valid after its last renewal; standbys take over after that.
    pub lease_duration: Duration,
    /// The leader stops leading when it could not renew for this long (must be < lease_duration).
    pub renew_deadline: Duration,
    /// How often a standby checks whether the Lease was released, and the leader checks its renewals.
    pub retry_period: Duration,
}

impl LeaderElection {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.renew_deadline >= Duration::from_secs(2),
            "--leader-elect-renew-deadline must be at least 2s, got {:?}",
            self.renew_deadline
        );
        anyhow::ensure!(
            self.renew_deadline < self.lease_duration,
            "--leader-elect-renew-deadline ({:?}) must be shorter than --leader-elect-lease-duration ({:?})",
            self.renew_deadline,
            self.lease_duration
        );
        anyhow::ensure!(
            !self.retry_period.is_zero() && self.retry_period < self.renew_deadline,
            "--leader-elect-retry-period ({:?}) must be positive and shorter than the renew deadline ({:?})",
            self.retry_period,
            self.renew_deadline
        );
        Ok(())
    }

    /// kube-lease-manager works in whole seconds.
    fn duration_seconds(&self) -> u64 {
        self.lease_duration.as_secs_f64().ceil() as u64
    }

    /// kube-lease-manager renews `grace` seconds before expiry: renewing at half the renew deadline
    /// leaves a second attempt before the leader has to step down.
    fn grace_seconds(&self) -> u64 {
        let renew_every = (self.renew_deadline.as_secs_f64() / 2.0).floor().max(1.0) as u64;
        self.duration_seconds().saturating_sub(renew_every).max(1)
    }
}

/// The namespace of the Lease by default: the pod's own (POD_NAMESPACE from the downward API, or the
/// service account's namespace file), else `sluice-system`.
pub fn default_namespace() -> String {
    if let Ok(namespace) = std::env::var("POD_NAMESPACE")
        && !namespace.trim().is_empty()
    {
        return namespace.trim().to_string();
    }
    match std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE) {
        Ok(namespace) if !namespace.trim().is_empty() => namespace.trim().to_string(),
        _ => FALLBACK_NAMESPACE.to_string(),
    }
}

/// POD_NAME (or the host name) plus a random suffix: a restarted container never reuses the identity
/// of the process it replaces, so it cannot mistake that process's lease for its own.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.trim().is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sluice".to_string());
    let suffix: String = std::iter::repeat_with(fastrand::lowercase).take(6).collect();
    format!("{}_{suffix}", base.trim())
}

/// What ended a term as leader.
#[derive(Debug)]
enum Term {
    Shutdown,
    Lost(String),
    /// The controllers could not start, or one of them ended on its own.
    Failed(anyhow::Error),
}

/// How long a new holder waits, renewing, before it writes: kube-lease-manager's standbys clear an
/// expired lease and then wait up to 1 s before taking it, so when several standbys race for a dead
/// leader's lease, a slow one can clear the winner's fresh claim. Confirming the holder after this delay
/// keeps two replicas from ever writing at once in that race.
const CONFIRM_AFTER: Duration = Duration::from_millis(1500);

/// Runs a replica under leader election until `stop` (SIGTERM/Ctrl-C) or until it loses the lease.
///
/// `controller_client` must be gated by `gate` (closed on entry); `lease_client` is ungated and not
/// shared with the controllers, so a burst of controller requests never delays a renewal behind the
/// rate limit. Returns an error when the lease was lost: the process must exit non-zero.
pub async fn run(
    controller_client: Client,
    gate: WriteGate,
    lease_client: Client,
    config: ControllerConfig,
    election: LeaderElection,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let server_shutdown = CancellationToken::new();
    let endpoints = serve_as_standby(&gate, &config, &election, server_shutdown.clone()).await?;
    let leases: Api<Lease> = Api::namespaced(lease_client.clone(), &election.namespace);
    tracing::info!(
        lease = %format!("{}/{}", election.namespace, election.lease_name),
        identity = %election.identity,
        "campaigning for leadership"
    );
    let result = async {
        let Some(manager) = campaign(&lease_client, &leases, &election, &stop).await else {
            tracing::info!("stopped before becoming leader");
            return Ok(());
        };
        tracing::info!(identity = %election.identity, "acquired the lease; confirming it before writing");
        let controllers_shutdown = CancellationToken::new();
        let (confirmed, mut confirmed_rx) = tokio::sync::watch::channel(false);
        let term = lead(&manager, &leases, &election, &stop, confirmed);
        tokio::pin!(term);
        let mut controller_client = Some(controller_client);
        let mut tasks = vec![];
        let term = loop {
            tokio::select! {
                term = &mut term => break term,
                ended = endpoints.health.until_a_controller_ends() => {
                    break Term::Failed(anyhow::anyhow!(
                        "{ended}; exiting so that Kubernetes restarts this replica and a standby takes the lease"
                    ));
                }
                changed = confirmed_rx.changed(), if controller_client.is_some() => {
                    if changed.is_err() || !*confirmed_rx.borrow() {
                        continue;
                    }
                    tracing::info!(identity = %election.identity, "became leader; starting the controllers");
                    gate.set_open(true);
                    endpoints.health.set_standby(false);
                    endpoints.metrics.set_leader(true);
                    let client = controller_client.take().expect("checked by the select guard");
                    match start_controllers(
                        client,
                        &config,
                        endpoints.metrics.clone(),
                        endpoints.health.clone(),
                        controllers_shutdown.clone(),
                    )
                    .await
                    {
                        Ok(started) => tasks = started.tasks,
                        Err(e) => break Term::Failed(e),
                    }
                }
            }
        };
        match term {
            Term::Failed(e) => {
                gate.set_open(false);
                endpoints.metrics.set_leader(false);
                controllers_shutdown.cancel();
                for task in &tasks {
                    task.abort();
                }
                // Released, a standby takes over at its next check instead of after the lease expires.
                let _ = tokio::time::timeout(RELEASE_BUDGET, manager.release()).await;
                Err(e)
            }
            Term::Lost(reason) => {
                // The gate first: from here on no write leaves this process, whatever is in flight.
                gate.set_open(false);
                endpoints.metrics.set_leader(false);
                controllers_shutdown.cancel();
                for task in &tasks {
                    task.abort();
                }
                endpoints.health.set_ready(false);
                Err(anyhow::anyhow!(
                    "lost leadership of lease {}/{}: {reason}; exiting so that a fresh process campaigns again",
                    election.namespace,
                    election.lease_name
                ))
            }
            Term::Shutdown => {
                tracing::info!("shutting down: waiting for in-flight reconciles, then releasing the lease");
                controllers_shutdown.cancel();
                let wait = grace.saturating_sub(RELEASE_BUDGET);
                if tokio::time::timeout(wait, futures::future::join_all(tasks))
                    .await
                    .is_err()
                {
                    tracing::warn!(?wait, "reconciles still running at the end of the shutdown grace");
                }
                gate.set_open(false);
                // Released, a standby takes over at its next check instead of after the lease expires.
                match tokio::time::timeout(RELEASE_BUDGET, manager.release()).await {
                    Ok(Ok(())) => tracing::info!("lease released"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "releasing the lease; a standby takes over when it expires")
                    }
                    Err(_) => tracing::warn!("releasing the lease timed out; a standby takes over when it expires"),
                }
                Ok(())
            }
        }
    }
    .await;
    stop_serving(endpoints, server_shutdown).await;
    result
}

/// How a replica under election (single leader or sharded) starts: the flags checked now rather than
/// after winning a Lease, the write gate closed, and the endpoints served with the replica a standby.
pub(crate) async fn serve_as_standby(
    gate: &WriteGate,
    config: &ControllerConfig,
    election: &LeaderElection,
    server_shutdown: CancellationToken,
) -> anyhow::Result<Endpoints> {
    election.validate()?;
    crate::analysis::allowlist::Allowlist::parse(&config.analysis_address_allowlist)
        .map_err(|e| anyhow::anyhow!("--analysis-address-allowlist: {e}"))?;
    gate.set_open(false);
    let endpoints = serve_endpoints(config.metrics_addr, server_shutdown).await?;
    endpoints.health.set_standby(true);
    Ok(endpoints)
}

/// Stops the endpoints [`serve_as_standby`] started, giving the server a second to finish.
pub(crate) async fn stop_serving(endpoints: Endpoints, server_shutdown: CancellationToken) {
    server_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoints.task).await;
}

async fn build_manager(client: &Client, election: &LeaderElection) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds())
        .with_grace(election.grace_seconds())
        .build()
        .await
}

/// The next state change of `manager`, after `delay` (a pause after an API error).
async fn next_change(manager: &LeaseManager, delay: Duration) -> kube_lease_manager::Result<bool> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    manager.changed().await
}

/// Waits until this replica holds the lease (Some) or `stop` (None).
///
/// kube-lease-manager's standby sleeps until the holder's lease expires; a holder that shuts down
/// releases the lease, so the standby also looks every `retry_period` and, when the Lease has no
/// holder, starts over with fresh state to take it at once.
async fn campaign(
    client: &Client,
    leases: &Api<Lease>,
    election: &LeaderElection,
    stop: &CancellationToken,
) -> Option<LeaseManager> {
    loop {
        let built = tokio::select! {
            _ = stop.cancelled() => return None,
            built = build_manager(client, election) => built,
        };
        let manager = match built {
            Ok(manager) => manager,
            Err(e) => {
                tracing::warn!(error = %e, "preparing the leader election lease; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(election.retry_period) => continue,
                }
            }
        };
        let acquired = {
            let mut change = Box::pin(next_change(&manager, Duration::ZERO));
            let mut tick = tokio::time::interval(election.retry_period);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    changed = &mut change => match changed {
                        Ok(true) => break true,
                        Ok(false) => change = Box::pin(next_change(&manager, Duration::ZERO)),
                        Err(e) => {
                            tracing::warn!(error = %e, "campaigning for the lease");
                            change = Box::pin(next_change(&manager, election.retry_period));
                        }
                    },
                    _ = tick.tick() => {
                        if lease_is_free(leases, election).await {
                            tracing::debug!("the lease has no holder; campaigning with fresh state");
                            break false;
                        }
                    }
                }
            }
        };
        if acquired {
            return Some(manager);
        }
    }
}

async fn lease_is_free(leases: &Api<Lease>, election: &LeaderElection) -> bool {
    match tokio::time::timeout(election.retry_period, leases.get_opt(&election.lease_name)).await {
        Ok(Ok(Some(lease))) => lease
            .spec
            .and_then(|spec| spec.holder_identity)
            .is_none_or(|holder| holder.is_empty()),
        Ok(Ok(None)) => true,
        _ => false,
    }
}

/// Leads until `stop` or until leadership ends: another holder in the Lease, or no confirmed renewal
/// for `renew_deadline` (the API server unreachable, say — then a standby may take over soon, and this
/// replica must be gone before). Sends `confirmed` once the lease is still this replica's after
/// [`CONFIRM_AFTER`].
async fn lead(
    manager: &LeaseManager,
    leases: &Api<Lease>,
    election: &LeaderElection,
    stop: &CancellationToken,
    confirmed: tokio::sync::watch::Sender<bool>,
) -> Term {
    let confirm_at = tokio::time::Instant::now() + CONFIRM_AFTER;
    let mut last_renewal = SystemTime::now();
    let mut change = Box::pin(next_change(manager, Duration::ZERO));
    let mut tick = tokio::time::interval(election.retry_period);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Term::Shutdown,
            changed = &mut change => match changed {
                Ok(false) => return Term::Lost("another replica holds the lease".into()),
                Ok(true) => change = Box::pin(next_change(manager, Duration::ZERO)),
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease");
                    change = Box::pin(next_change(manager, election.retry_period));
                }
            },
            _ = tick.tick() => {
                match tokio::time::timeout(election.retry_period, leases.get_opt(&election.lease_name)).await {
                    Ok(Ok(Some(lease))) => {
                        let spec = lease.spec.unwrap_or_default();
                        let holder = spec.holder_identity.unwrap_or_default();
                        if holder != election.identity {
                            return Term::Lost(format!("the lease is held by {holder:?}"));
                        }
                        // renewTime is written with this process's own clock, so it compares with now.
                        if let Some(renewed) = spec.renew_time {
                            last_renewal = last_renewal.max(SystemTime::from(renewed.0));
                        }
                        if !*confirmed.borrow() && tokio::time::Instant::now() >= confirm_at {
                            confirmed.send_replace(true);
                        }
                    }
                    Ok(Ok(None)) => return Term::Lost("the lease was deleted".into()),
                    Ok(Err(e)) => tracing::warn!(error = %e, "reading the lease"),
                    Err(_) => tracing::warn!("reading the lease timed out"),
                }
                let since = SystemTime::now().duration_since(last_renewal).unwrap_or_default();
                if since > election.renew_deadline {
                    return Term::Lost(format!(
                        "not renewed for {since:?} (renew deadline {:?})",
                        election.renew_deadline
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(lease: u64, renew: u64) -> LeaderElection {
        LeaderElection {
            lease_name: DEFAULT_LEASE_NAME.into(),
            namespace: "sluice-system".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(1),
        }
    }

    #[test]
    fn renews_twice_within_the_renew_deadline() {
        // 15s lease, 10s deadline: renew every 5s (grace 10s before expiry).
        assert_eq!(election(15, 10).grace_seconds(), 10);
        assert_eq!(election(4, 3).grace_seconds(), 3);
        assert!(election(15, 10).validate().is_ok());
        assert!(election(10, 10).validate().is_err());
        assert!(election(10, 1).validate().is_err());
    }

    #[test]
    fn identities_are_unique_per_process_start() {
        assert_ne!(identity(), identity());
    }
}
