//! The generation runner of sharding: one generation of controllers runs, filtered to the shards
//! [`super::leases`] holds; when that set changes, the generation is stopped (write gate closed first)
//! and a new one starts, so no cache or per-object state of a lost shard survives.
//!
//! Writes stop the instant a held shard's renew deadline passes: a watchdog closes the write gate then,
//! whatever the main loop is waiting on, and the next pass drops the shard. Dropping a shard does not
//! end the process: the new generation simply no longer sees its namespaces.
use std::collections::BTreeSet;
use std::time::Duration;

use kube::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ShardFilter;
use super::leases::Shards;
use crate::client::WriteGate;
use crate::controller::leader::{self, LeaderElection};
use crate::controller::{ControllerConfig, Endpoints, start_controllers_for};

/// Of the shutdown grace, what is kept for releasing the Leases.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);
/// How long a stopped generation's tasks get to finish after being aborted.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The controllers running for one held set.
struct Generation {
    held: BTreeSet<u16>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs a sharded replica until `stop`; returns an error (exit non-zero) only when a controller task
/// ended on its own.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    controller_client: Client,
    gate: WriteGate,
    lease_client: Client,
    config: ControllerConfig,
    election: LeaderElection,
    shard_count: u16,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(shard_count >= 1, "--shard-count must be at least 1");
    let server_shutdown = CancellationToken::new();
    let endpoints = leader::serve_as_standby(&gate, &config, &election, server_shutdown.clone()).await?;
    endpoints.metrics.set_shards_held(shard_count, &BTreeSet::new());
    let (deadline, deadline_rx) = tokio::sync::watch::channel(None);
    let watchdog = tokio::spawn(watchdog(deadline_rx, gate.clone()));
    let mut shards = Shards::new(lease_client, election, shard_count, deadline);
    tracing::info!(
        namespace = %shards.election().namespace,
        member = %shards.member(),
        shard_count,
        "sharded: taking a fair share of the shard Leases"
    );
    let mut generation: Option<Generation> = None;
    let mut tick = tokio::time::interval(shards.election().retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            ended = endpoints.health.until_a_controller_ends() => {
                break Err(anyhow::anyhow!("{ended}; exiting so that Kubernetes restarts this replica"));
            }
            _ = tick.tick() => {
                let releasing = shards.pass().await;
                let wanted = shards.confirmed();
                let restart = generation.as_ref().is_none_or(|g| g.held != wanted)
                    // The watchdog closed the gate for a deadline a late renewal then met: start afresh.
                    || (!wanted.is_empty() && !gate.is_open());
                if restart {
                    if let Some(stopped) = generation.take() {
                        stop_generation(stopped, &gate).await;
                    }
                    match start_generation(&controller_client, &gate, &config, &endpoints, shard_count, wanted).await {
                        Ok(started) => generation = Some(started),
                        Err(e) => break Err(e),
                    }
                }
                // Released only once the generation that wrote to them is stopped.
                for shard in releasing {
                    shards.release(shard).await;
                }
            }
        }
    };
    // Shutting down: let in-flight reconciles finish, then release everything.
    if let Some(last) = generation.take() {
        last.shutdown.cancel();
        let wait = grace.saturating_sub(RELEASE_BUDGET);
        if tokio::time::timeout(wait, futures::future::join_all(last.tasks))
            .await
            .is_err()
        {
            tracing::warn!(?wait, "reconciles still running at the end of the shutdown grace");
        }
    }
    gate.set_open(false);
    endpoints.metrics.set_shards_held(shard_count, &BTreeSet::new());
    let _ = tokio::time::timeout(RELEASE_BUDGET, shards.release_all()).await;
    watchdog.abort();
    leader::stop_serving(endpoints, server_shutdown).await;
    result
}

/// Closes the write gate the moment the earliest renew deadline of a held shard passes, whatever the
/// main loop is waiting on; the loop then drops the shard (or, if a renewal met it after all, reopens).
async fn watchdog(mut deadline: tokio::sync::watch::Receiver<Option<Instant>>, gate: WriteGate) {
    loop {
        let next = *deadline.borrow_and_update();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        if gate.is_open() {
                            tracing::warn!("a shard Lease was not renewed within the renew deadline: writes stopped");
                        }
                        gate.set_open(false);
                        if deadline.changed().await.is_err() {
                            return;
                        }
                    }
                    changed = deadline.changed() => if changed.is_err() { return },
                }
            }
            None => {
                if deadline.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn stop_generation(generation: Generation, gate: &WriteGate) {
    // The gate first: from here on nothing this generation has in flight reaches the API server.
    gate.set_open(false);
    generation.shutdown.cancel();
    for task in &generation.tasks {
        task.abort();
    }
    let _ = tokio::time::timeout(STOP_WAIT, futures::future::join_all(generation.tasks)).await;
}

async fn start_generation(
    client: &Client,
    gate: &WriteGate,
    config: &ControllerConfig,
    endpoints: &Endpoints,
    shard_count: u16,
    held: BTreeSet<u16>,
) -> anyhow::Result<Generation> {
    endpoints.metrics.set_shards_held(shard_count, &held);
    endpoints.metrics.set_leader(!held.is_empty());
    endpoints.health.set_standby(held.is_empty());
    let shutdown = CancellationToken::new();
    if held.is_empty() {
        endpoints.metrics.forget_namespaces(|_| false);
        tracing::info!("holding no shard: controllers stopped");
        return Ok(Generation {
            held,
            shutdown,
            tasks: vec![],
        });
    }
    tracing::info!(shards = ?held, "starting the controllers for the held shards");
    let filter = ShardFilter::new(shard_count, held.clone());
    endpoints.metrics.forget_namespaces(|namespace| filter.holds(namespace));
    gate.set_open(true);
    let started = start_controllers_for(
        client.clone(),
        config,
        Some(filter),
        endpoints.metrics.clone(),
        endpoints.health.clone(),
        shutdown.clone(),
    )
    .await?;
    Ok(Generation {
        held,
        shutdown,
        tasks: started.tasks,
    })
}
