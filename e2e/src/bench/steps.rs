//! `sluice bench steps`: N rollouts progressing through five setWeight steps at once after a template
//! change — API writes the controller makes per rollout and per step (from the simulator's request
//! log), reconcile duration percentiles (from the controller's histogram) and the time to finish.
//! Simulator and controller run in this process; the controller talks to the simulator over HTTP.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::Api;
use serde::Serialize;

use super::support::{self, Histogram, LoggedRequest};
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice_sim::{SimConfig, Simulator};

#[derive(Debug, Clone, clap::Args)]
pub struct StepsBenchOptions {
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    #[arg(long, default_value_t = 4)]
    pub replicas: i32,
    /// How long a new pod takes to become Ready.
    #[arg(long, default_value = "50ms", value_parser = sluice::app::parse_duration)]
    pub pod_ready_delay: Duration,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Upper bound of every wait, in seconds.
    #[arg(long = "timeout-seconds", value_name = "SECONDS", default_value = "600", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
}

const WEIGHTS: [i32; 5] = [20, 40, 60, 80, 100];

#[derive(Debug, Serialize)]
pub struct StepsBenchReport {
    pub rollouts: usize,
    pub replicas: i32,
    pub steps: Vec<i32>,
    pub pod_ready_delay_ms: u128,
    /// From the first template change until every rollout was Healthy on the new template.
    pub total_seconds: f64,
    /// Per rollout, from the template change until it was seen Healthy (polled every 100 ms).
    pub rollout_seconds: support::Distribution,
    /// Every write the controller made during the progression (events included).
    pub writes: usize,
    pub writes_per_rollout: f64,
    /// writes_per_rollout / number of steps.
    pub writes_per_rollout_per_step: f64,
    /// The same without Events (which Kubernetes may drop or aggregate).
    pub writes_per_rollout_per_step_excluding_events: f64,
    /// By `verb resource[/subresource]`, summed over all rollouts.
    pub writes_by_kind: BTreeMap<String, usize>,
    /// ReplicaSet spec changes during the progression (generation bumps, new ReplicaSets counted as
    /// one): compare with the `patch replicasets` count to see how many patches changed nothing.
    pub replica_set_spec_changes: i64,
    /// User agents of the counted writes (the controller's).
    pub controller_user_agents: Vec<String>,
    pub reconciles: f64,
    pub reconciles_per_rollout: f64,
    /// Rollout reconcile duration during the progression, estimated from the histogram buckets.
    pub reconcile_p50_seconds: Option<f64>,
    pub reconcile_p99_seconds: Option<f64>,
    pub reconcile_mean_seconds: Option<f64>,
}

fn rollout(i: usize, replicas: i32) -> Rollout {
    Rollout::example(
        &format!("steps-{i:05}"),
        replicas,
        WEIGHTS.iter().map(|w| CanaryStep::set_weight(*w)).collect(),
    )
}

pub async fn run(options: StepsBenchOptions) -> anyhow::Result<StepsBenchReport> {
    let sim = Simulator::start(SimConfig {
        pod_ready_delay: options.pod_ready_delay,
        request_log_capacity: 2_000_000,
        watch_history: (options.count * 100).max(20_000),
        ..SimConfig::default()
    })
    .await?;
    let result = measure(&sim, &options).await;
    sim.shutdown().await;
    result
}

async fn measure(sim: &Simulator, options: &StepsBenchOptions) -> anyhow::Result<StepsBenchReport> {
    let client = support::bench_client(sim.kube_config()?)?;
    support::install_crds(&client).await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    support::for_each_concurrently(options.count, options.concurrency, |i| {
        let rollouts = rollouts.clone();
        let replicas = options.replicas;
        async move { support::create_rollout(&rollouts, &rollout(i, replicas)).await }
    })
    .await?;
    let controller =
        sluice::controller::start(sim.client()?, support::setup_controller_config(), Default::default()).await?;
    let result = progress(sim, options, &rollouts, &controller).await;
    controller.stop(Duration::from_secs(10)).await;
    result
}

async fn progress(
    sim: &Simulator,
    options: &StepsBenchOptions,
    rollouts: &Api<Rollout>,
    controller: &sluice::controller::Running,
) -> anyhow::Result<StepsBenchReport> {
    eprintln!("waiting for {} rollouts to be Healthy on v1 …", options.count);
    let every = Duration::from_millis(100);
    let v1 = support::wait_for_rollouts(
        rollouts,
        options.count,
        options.timeout,
        every,
        "every Rollout to be Healthy on v1",
        support::is_healthy,
    )
    .await?;
    let old_stable: HashMap<String, Option<String>> = v1
        .iter()
        .map(|r| (r.name_any(), r.status.as_ref().and_then(|s| s.stable_rs.clone())))
        .collect();
    // Let trailing work (events, scale-downs) finish before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let histogram =
        |text: &str| Histogram::parse(text, "sluice_reconcile_duration_seconds", &[("controller", "rollout")]);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(rollouts.clone().into_client(), "default");
    let generations_before = generations(&replica_sets).await?;
    let before = histogram(&controller.metrics.render());
    sim.http.requests.clear();

    eprintln!("changing the template of every rollout …");
    let started = Instant::now();
    support::for_each_concurrently(options.count, options.concurrency, |i| {
        let rollouts = rollouts.clone();
        async move { support::set_image(&rollouts, &format!("steps-{i:05}"), "example.com/steps:2").await }
    })
    .await?;
    let promoted = |r: &Rollout| {
        support::is_healthy(r)
            && r.status.as_ref().and_then(|s| s.stable_rs.clone()) != *old_stable.get(&r.name_any()).unwrap_or(&None)
    };
    let mut finished: HashMap<String, f64> = HashMap::new();
    let deadline = started + options.timeout;
    while finished.len() < options.count {
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {:?}: {} of {} rollouts completed the canary",
                options.timeout,
                finished.len(),
                options.count
            );
        }
        tokio::time::sleep(every).await;
        let Ok(list) = rollouts.list(&Default::default()).await else {
            continue;
        };
        let now = started.elapsed().as_secs_f64();
        for r in list.items.iter().filter(|r| promoted(r)) {
            finished.entry(r.name_any()).or_insert(now);
        }
    }
    let total_seconds = started.elapsed().as_secs_f64();
    // Writes that belong to completion (scale-down of the old stable, status, events) may trail.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = histogram(&controller.metrics.render());
    let generations_after = generations(&replica_sets).await?;
    let replica_set_spec_changes = generations_after
        .iter()
        .map(|(name, generation)| generation - generations_before.get(name).copied().unwrap_or(0))
        .sum();
    let log: Vec<LoggedRequest> = sim.http.requests.snapshot().iter().map(LoggedRequest::from).collect();
    let by_controller = |r: &LoggedRequest| r.user_agent != support::BENCH_USER_AGENT;
    let writes_by_kind = support::writes_by_kind(&log, by_controller);
    let mut agents: Vec<String> = log
        .iter()
        .filter(|r| support::WRITE_VERBS.contains(&r.verb.as_str()) && by_controller(r))
        .map(|r| r.user_agent.clone())
        .collect();
    agents.sort();
    agents.dedup();
    let writes: usize = writes_by_kind.values().sum();
    let event_writes: usize = writes_by_kind
        .iter()
        .filter(|(kind, _)| kind.ends_with(" events"))
        .map(|(_, n)| n)
        .sum();
    let delta = after.since(&before);
    let n = options.count as f64;
    let steps = WEIGHTS.len() as f64;
    let durations: Vec<f64> = finished.values().copied().collect();
    Ok(StepsBenchReport {
        rollouts: options.count,
        replicas: options.replicas,
        steps: WEIGHTS.to_vec(),
        pod_ready_delay_ms: options.pod_ready_delay.as_millis(),
        total_seconds,
        rollout_seconds: support::Distribution::of(&durations),
        writes,
        writes_per_rollout: writes as f64 / n,
        writes_per_rollout_per_step: writes as f64 / n / steps,
        writes_per_rollout_per_step_excluding_events: (writes - event_writes) as f64 / n / steps,
        writes_by_kind,
        replica_set_spec_changes,
        controller_user_agents: agents,
        reconciles: delta.count,
        reconciles_per_rollout: delta.count / n,
        reconcile_p50_seconds: delta.quantile(0.5),
        reconcile_p99_seconds: delta.quantile(0.99),
        reconcile_mean_seconds: delta.mean(),
    })
}

/// metadata.generation of every ReplicaSet Sluice made, by name.
async fn generations(replica_sets: &Api<ReplicaSet>) -> anyhow::Result<HashMap<String, i64>> {
    let list = replica_sets
        .list(&kube::api::ListParams::default().labels(sluice::rollout::hash::POD_TEMPLATE_HASH_LABEL))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|rs| (rs.name_any(), rs.metadata.generation.unwrap_or(0)))
        .collect())
}
