//! `sluice bench rollouts`: what a `sluice controller` process costs with N Healthy rollouts — time
//! until `/readyz` (caches synced), resident memory once every rollout was reconciled, and CPU while
//! idle. The simulator and the controller run as separate processes (this binary), so the figures are
//! the controller's alone; the rollouts are brought to Healthy beforehand by an in-process controller,
//! and the measured controller's first pass over them is checked to write nothing.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::Api;
use serde::Serialize;

use super::support::{self, ChildProcess, TempDir};
use sluice::api::rollout::{CanaryStep, Rollout};

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutsBenchOptions {
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// Seconds of idle CPU is measured over (reported per minute).
    #[arg(long, default_value_t = 30)]
    pub idle_seconds: u64,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Upper bound of every wait, in seconds.
    #[arg(long = "timeout-seconds", value_name = "SECONDS", default_value = "900", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct RolloutsBenchReport {
    pub rollouts: usize,
    pub replicas: i32,
    /// Creating the Rollouts over HTTP, `concurrency` in flight.
    pub create_seconds: f64,
    /// Until every Rollout was Healthy under the set-up controller (ReplicaSets and pods included).
    pub setup_healthy_seconds: f64,
    /// From spawning `sluice controller` until `/readyz` answered 200 (every cache synced).
    pub ready_seconds: f64,
    /// From spawning until `sluice_reconcile_total{controller="rollout"}` reached the rollout count.
    pub reconciled_all_seconds: f64,
    /// API writes the measured controller made from its start until the end of the idle window
    /// (Healthy rollouts: expected 0), by `verb resource[/subresource]`.
    pub writes_after_start: usize,
    pub writes_after_start_by_kind: BTreeMap<String, usize>,
    /// Controller RSS after every rollout was reconciled once (and 2 s to settle).
    pub rss_bytes: u64,
    pub rss_mib: f64,
    /// rss_mib scaled to 1,000 rollouts (baseline included: overstates at small counts).
    pub rss_mib_per_1000_rollouts: f64,
    /// RSS of the same controller, settled, with no rollouts at all.
    pub baseline_rss_bytes: u64,
    /// (rss - baseline) per 1,000 rollouts: the memory the rollouts themselves cost.
    pub rss_growth_mib_per_1000_rollouts: f64,
    /// Controller RSS at the end of the idle window.
    pub rss_after_idle_bytes: u64,
    pub idle_seconds: f64,
    /// Controller CPU (user + system) over the idle window, scaled to one minute.
    pub cpu_seconds_per_idle_minute: f64,
    /// Rollout reconciles during the idle window.
    pub idle_reconciles: f64,
    /// The simulator process's RSS at the end (for context).
    pub simulator_rss_bytes: u64,
}

/// Two steps, so a template change would be a real canary; the benchmark never changes it.
fn rollout(i: usize, replicas: i32) -> Rollout {
    Rollout::example(
        &format!("bench-{i:05}"),
        replicas,
        vec![CanaryStep::set_weight(50), CanaryStep::pause_for("10s")],
    )
}

/// How long `setup_healthy` took.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub create_seconds: f64,
    pub setup_healthy_seconds: f64,
}

/// The set-up of the rollout benchmarks: creates `count` Rollouts (`make(i)`, in "default",
/// `concurrency` creates in flight), brings every one to Healthy with a controller in this process
/// (so the ReplicaSets, pods and statuses are what a controller produces), and stops that controller.
pub async fn setup_healthy(
    client: &kube::Client,
    count: usize,
    concurrency: usize,
    timeout: Duration,
    make: impl Fn(usize) -> Rollout,
) -> anyhow::Result<Setup> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    eprintln!("creating {count} rollouts …");
    let started = Instant::now();
    support::for_each_concurrently(count, concurrency, |i| {
        let rollouts = rollouts.clone();
        let rollout = make(i);
        async move { support::create_rollout(&rollouts, &rollout).await }
    })
    .await?;
    let create_seconds = started.elapsed().as_secs_f64();

    eprintln!("bringing them to Healthy with a set-up controller …");
    let setup_started = Instant::now();
    let setup =
        sluice::controller::start(client.clone(), support::setup_controller_config(), Default::default()).await?;
    let poll = Duration::from_millis(if count > 1000 { 1000 } else { 250 });
    let healthy = support::wait_for_rollouts(
        &rollouts,
        count,
        timeout,
        poll,
        "every Rollout to be Healthy under the set-up controller",
        support::is_healthy,
    )
    .await;
    let setup_healthy_seconds = setup_started.elapsed().as_secs_f64();
    setup.stop(Duration::from_secs(10)).await;
    healthy?;
    Ok(Setup {
        create_seconds,
        setup_healthy_seconds,
    })
}

pub async fn run(options: RolloutsBenchOptions) -> anyhow::Result<RolloutsBenchReport> {
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let dir = TempDir::new("sluice-bench-rollouts")?;
    let watch_history = (options.count * 10).max(20_000);
    let support::SimulatorProcess {
        process: mut sim,
        url,
        kubeconfig,
        client,
    } = support::spawn_simulator(&exe, &dir.0, watch_history, support::REQUEST_LOG_CAPACITY).await?;
    let http = reqwest::Client::new();

    eprintln!("measuring an idle controller with no rollouts …");
    let (empty, _) = start_controller(&exe, &kubeconfig, &http, options.timeout).await?;
    tokio::time::sleep(SETTLE).await;
    let baseline_rss = support::rss_bytes(empty.process.pid()?)?;
    empty.process.stop().await;

    let replicas = options.replicas;
    let Setup {
        create_seconds,
        setup_healthy_seconds,
    } = setup_healthy(&client, options.count, options.concurrency, options.timeout, |i| {
        rollout(i, replicas)
    })
    .await?;
    sim.check_running()?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    http.delete(format!("{url}/sim/requests"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("clearing the simulator's request log")?;

    // The measured controller.
    eprintln!("starting `sluice controller` …");
    let (mut controller, base) = start_controller(&exe, &kubeconfig, &http, options.timeout).await?;
    let spawned = controller.spawned;
    let ready_seconds = controller.ready_seconds;
    let pid = controller.process.pid()?;
    let deadline = spawned + options.timeout;

    let reconcile_total =
        |text: &str| support::metric_value(text, "sluice_reconcile_total", &[("controller", "rollout")]).unwrap_or(0.0);
    loop {
        let text = fetch_metrics(&http, &base).await.unwrap_or_default();
        if reconcile_total(&text) >= options.count as f64 {
            break;
        }
        controller.process.check_running()?;
        if Instant::now() > deadline {
            anyhow::bail!(
                "the controller reconciled {} of {} rollouts within {:?}",
                reconcile_total(&text),
                options.count,
                options.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconciled_all_seconds = spawned.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss = support::rss_bytes(pid)?;

    eprintln!("measuring {} s of idle …", options.idle_seconds);
    let reconciles_before = reconcile_total(&fetch_metrics(&http, &base).await?);
    let cpu_before = support::cpu_seconds(pid)?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.idle_seconds)).await;
    let cpu_after = support::cpu_seconds(pid)?;
    let idle = idle_started.elapsed().as_secs_f64();
    let rss_after_idle = support::rss_bytes(pid)?;
    let reconciles_after = reconcile_total(&fetch_metrics(&http, &base).await?);
    controller.process.check_running()?;

    let log: support::RequestLog = http
        .get(format!("{url}/sim/requests"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("reading the simulator's request log")?
        .json()
        .await
        .context("decoding the simulator's request log")?;
    let writes = support::writes_by_kind(&log.requests, |r| r.user_agent != support::BENCH_USER_AGENT);
    let simulator_rss_bytes = support::rss_bytes(sim.pid()?)?;
    controller.process.stop().await;
    sim.stop().await;

    let mib = rss as f64 / (1024.0 * 1024.0);
    Ok(RolloutsBenchReport {
        rollouts: options.count,
        replicas: options.replicas,
        create_seconds,
        setup_healthy_seconds,
        ready_seconds,
        reconciled_all_seconds,
        writes_after_start: writes.values().sum(),
        writes_after_start_by_kind: writes,
        rss_bytes: rss,
        rss_mib: mib,
        rss_mib_per_1000_rollouts: mib * 1000.0 / options.count.max(1) as f64,
        baseline_rss_bytes: baseline_rss,
        rss_growth_mib_per_1000_rollouts: rss.saturating_sub(baseline_rss) as f64 / (1024.0 * 1024.0) * 1000.0
            / options.count.max(1) as f64,
        rss_after_idle_bytes: rss_after_idle,
        idle_seconds: idle,
        cpu_seconds_per_idle_minute: (cpu_after - cpu_before) * 60.0 / idle,
        idle_reconciles: reconciles_after - reconciles_before,
        simulator_rss_bytes,
    })
}

/// How long the controller gets to settle before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

struct StartedController {
    process: ChildProcess,
    spawned: Instant,
    ready_seconds: f64,
}

/// Spawns `sluice controller` against the simulator and waits until `/readyz` answers 200; returns it
/// with the base URL of its metrics endpoint.
async fn start_controller(
    exe: &std::path::Path,
    kubeconfig: &std::path::Path,
    http: &reqwest::Client,
    timeout: Duration,
) -> anyhow::Result<(StartedController, String)> {
    let env = vec![
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        (
            "RUST_LOG".to_string(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
        ("NO_COLOR".to_string(), "1".to_string()),
    ];
    let args: Vec<String> = ["controller", "--metrics-addr", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let serving_metrics = "serving /metrics, /healthz and /readyz";
    let spawned = Instant::now();
    let mut process = ChildProcess::spawn("controller", exe, &args, &env, &[serving_metrics])?;
    let line = process.wait_for_line(serving_metrics, Duration::from_secs(30)).await?;
    let metrics_addr =
        logged_address(&line).with_context(|| format!("no address in the controller's log line {line:?}"))?;
    let base = format!("http://{metrics_addr}");
    let deadline = spawned + timeout;
    loop {
        let ok = http
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            break;
        }
        process.check_running()?;
        if Instant::now() > deadline {
            anyhow::bail!(
                "the controller's /readyz did not answer 200 within {timeout:?}; last output:\n{}",
                process.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_seconds = spawned.elapsed().as_secs_f64();
    Ok((
        StartedController {
            process,
            spawned,
            ready_seconds,
        },
        base,
    ))
}

async fn fetch_metrics(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The `address=HOST:PORT` field of a tracing log line.
pub fn logged_address(line: &str) -> Option<std::net::SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let value = line[start..].split_whitespace().next()?.trim_matches('"');
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_a_log_line() {
        let line = "2025-01-01T00:00:00.000Z  INFO sluice::controller::server: serving /metrics, /healthz and /readyz address=127.0.0.1:43121";
        assert_eq!(logged_address(line), Some("127.0.0.1:43121".parse().unwrap()));
        assert_eq!(logged_address("no address here"), None);
    }
}
