//! `sluice bench wave`: N Healthy two-step canaries whose templates all change at once, against a
//! `sluice controller` process — the wave's duration, the controller's peak RSS during it, RSS
//! `--settle-seconds` after it and at rest after a restart on the same objects (the burst should
//! leave nothing behind), its CPU over the wave, and every API write it made, by kind, per rollout
//! and per step, with the achieved write rate against `--kube-qps`.
//!
//! Like `bench rollouts`, the simulator and the measured controller are separate processes (this
//! binary) and the rollouts are brought to Healthy beforehand by an in-process controller.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde::Serialize;

use super::rollouts::logged_address;
use super::support::{self, ChildProcess, LoggedRequest, RequestLog, TempDir};
use sluice::api::rollout::{CanaryStep, Rollout};

#[derive(Debug, Clone, clap::Args)]
pub struct WaveBenchOptions {
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Namespaces the rollouts are spread over (round robin).
    #[arg(long, default_value_t = 1)]
    pub namespaces: usize,
    /// The measured controller's `--kube-qps` (its `--kube-burst` stays the default).
    #[arg(long, default_value_t = 50.0)]
    pub kube_qps: f64,
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// Seconds after the wave before the settled RSS is read.
    #[arg(long, default_value_t = 30)]
    pub settle_seconds: u64,
    /// Creates and template changes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Extra environment of the controller that runs the wave (not of the restarted one), as
    /// KEY=VALUE (repeatable): e.g. heaptrack's LD_PRELOAD and DUMP_HEAPTRACK_OUTPUT.
    #[arg(long = "controller-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub controller_env: Vec<(String, String)>,
    /// The `sluice` executable the measured controllers run (default: this one). Point it at the
    /// controller image's build (`cargo build --profile dist -p sluice-app --no-default-features`),
    /// which has no simulator, bench or demo code: its code pages are part of the RSS measured.
    #[arg(long = "controller-binary", value_name = "PATH")]
    pub controller_binary: Option<std::path::PathBuf>,
    /// Upper bound of every wait, in seconds.
    #[arg(long = "timeout-seconds", value_name = "SECONDS", default_value = "1800", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The canary every rollout runs: half the traffic, a short pause, then full promotion.
fn steps() -> Vec<CanaryStep> {
    vec![CanaryStep::set_weight(50), CanaryStep::pause_for("2s")]
}

#[derive(Debug, Serialize)]
pub struct WaveBenchReport {
    pub rollouts: usize,
    pub namespaces: usize,
    pub replicas: i32,
    pub steps: usize,
    pub kube_qps: f64,
    /// Until every Rollout was Healthy under the set-up controller (creation included).
    pub setup_seconds: f64,
    /// Measured controller RSS once it had reconciled every rollout (and 2 s to settle).
    pub at_rest_rss_bytes: u64,
    /// From the first template change until every rollout was Healthy on its new template.
    pub wave_seconds: f64,
    /// Highest RSS sampled during the wave (every 250 ms).
    pub peak_rss_bytes: u64,
    /// RSS `settle_seconds` after the wave.
    pub settled_rss_bytes: u64,
    pub settle_seconds: u64,
    /// The settled RSS by what backs it.
    pub settled_rss: support::RssSplit,
    /// RSS of a fresh controller on the same (now promoted) rollouts, every one reconciled once.
    pub restarted_at_rest_rss_bytes: u64,
    pub restarted_at_rest_rss: support::RssSplit,
    /// settled / restarted at rest: the burst's leftover (issue 17's target: ≤ 1.3).
    pub settled_over_restarted: f64,
    /// Controller CPU (user + system) over the wave.
    pub wave_cpu_seconds: f64,
    /// Every write the measured controller made from the first template change until the end of the
    /// settle window, events included.
    pub writes: usize,
    pub writes_by_kind: BTreeMap<String, usize>,
    pub writes_per_rollout: f64,
    pub writes_per_rollout_per_step: f64,
    pub event_writes_per_rollout: f64,
    pub writes_per_rollout_excluding_events: f64,
    /// Writes per rollout, by kind (the kinds' totals divided by the rollout count).
    pub writes_per_rollout_by_kind: BTreeMap<String, f64>,
    /// Spread of the per-rollout totals of writes that name their object in the URL (patches,
    /// updates, deletes: a create's name is in its body, which the request log does not keep).
    pub writes_per_rollout_distribution: support::Distribution,
    /// Writes not attributed to a benchmark rollout: creates, and objects of no rollout (Leases).
    pub unattributed_writes: usize,
    /// All requests (reads included) of the controller during the wave and settle window: the
    /// client-side limiter counts them all.
    pub requests: usize,
    /// writes / wave_seconds, and requests / wave_seconds, against kube_qps.
    pub writes_per_second: f64,
    pub requests_per_second: f64,
    /// requests_per_second / kube_qps.
    pub budget_used: f64,
    pub simulator_cpu_seconds_over_wave: f64,
    pub simulator_rss_bytes: u64,
}

pub async fn run(options: WaveBenchOptions) -> anyhow::Result<WaveBenchReport> {
    anyhow::ensure!(options.count > 0, "--count must be at least 1");
    anyhow::ensure!(options.namespaces > 0, "--namespaces must be at least 1");
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let dir = TempDir::new("sluice-bench-wave")?;
    let watch_history = (options.count * 20).max(20_000);
    // Every request of the wave must stay in the log for the counts (about 12 per rollout).
    let request_log_capacity = options.count.saturating_mul(40).max(support::REQUEST_LOG_CAPACITY);
    let support::SimulatorProcess {
        process: mut sim,
        url,
        kubeconfig,
        client,
    } = support::spawn_simulator(&exe, &dir.0, watch_history, request_log_capacity).await?;
    let http = reqwest::Client::new();

    let namespaces: Vec<String> = (0..options.namespaces).map(|n| format!("wave-{n:03}")).collect();
    let namespace_api: Api<Namespace> = Api::all(client.clone());
    for name in &namespaces {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespace_api.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating namespace {name}")),
        }
    }
    let api_of = |i: usize| -> Api<Rollout> { Api::namespaced(client.clone(), &namespaces[i % namespaces.len()]) };
    let all: Api<Rollout> = Api::all(client.clone());

    eprintln!(
        "creating {} rollouts in {} namespace(s) …",
        options.count,
        namespaces.len()
    );
    let setup_started = Instant::now();
    support::for_each_concurrently(options.count, options.concurrency, |i| {
        let api = api_of(i);
        let mut rollout = Rollout::example(&name(i), options.replicas, steps());
        rollout.metadata.namespace = Some(namespaces[i % namespaces.len()].clone());
        async move { support::create_rollout(&api, &rollout).await }
    })
    .await?;
    eprintln!("bringing them to Healthy with a set-up controller …");
    let setup =
        sluice::controller::start(client.clone(), support::setup_controller_config(), Default::default()).await?;
    let poll = poll_interval(options.count);
    let healthy = support::wait_for_rollouts(
        &all,
        options.count,
        options.timeout,
        poll,
        "every Rollout to be Healthy under the set-up controller",
        support::is_healthy,
    )
    .await;
    setup.stop(Duration::from_secs(10)).await;
    let v1 = healthy?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    sim.check_running()?;
    let old_stable: HashMap<String, Option<String>> = v1
        .iter()
        .map(|r| (r.name_any(), r.status.as_ref().and_then(|s| s.stable_rs.clone())))
        .collect();

    eprintln!("starting `sluice controller` (--kube-qps {}) …", options.kube_qps);
    let controller_exe = options.controller_binary.clone().unwrap_or_else(|| exe.clone());
    let mut controller = start_controller(&controller_exe, &kubeconfig, &options, &options.controller_env).await?;
    let pid = controller.process.pid()?;
    wait_reconciled(&http, &mut controller, options.count, options.timeout).await?;
    tokio::time::sleep(SETTLE).await;
    let at_rest_rss_bytes = support::rss_bytes(pid)?;

    clear_request_log(&http, &url).await?;
    let sim_pid = sim.pid()?;
    let cpu_before = support::cpu_seconds(pid)?;
    let sim_cpu_before = support::cpu_seconds(sim_pid)?;
    eprintln!("changing the template of every rollout …");
    let started = Instant::now();
    // Sample the controller's RSS while the template changes go out and the wave runs.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(at_rest_rss_bytes));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(rss) = support::rss_bytes(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let changed = support::for_each_concurrently(options.count, options.concurrency, |i| {
        let api = api_of(i);
        async move { change_template(&api, &name(i)).await }
    })
    .await;
    let promoted = |r: &Rollout| {
        support::is_healthy(r)
            && r.status.as_ref().and_then(|s| s.stable_rs.clone()) != *old_stable.get(&r.name_any()).unwrap_or(&None)
    };
    let waved = match changed {
        Ok(()) => {
            support::wait_for_rollouts(
                &all,
                options.count,
                options.timeout,
                poll,
                "every Rollout to be Healthy on its new template",
                promoted,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let wave_seconds = started.elapsed().as_secs_f64();
    let wave_cpu_seconds = support::cpu_seconds(pid)? - cpu_before;
    let simulator_cpu_seconds_over_wave = support::cpu_seconds(sim_pid)? - sim_cpu_before;
    sampler.abort();
    controller.process.check_running()?;
    waved?;
    let peak_rss_bytes = peak.load(std::sync::atomic::Ordering::Relaxed);

    eprintln!("waiting {} s for the controller to settle …", options.settle_seconds);
    tokio::time::sleep(Duration::from_secs(options.settle_seconds)).await;
    let settled_rss = support::rss_split(pid)?;
    let settled_rss_bytes = settled_rss.total_bytes;
    let log = request_log(&http, &url).await?;
    anyhow::ensure!(
        log.requests.len() < request_log_capacity,
        "the simulator's request log is full ({request_log_capacity} requests): the write counts would miss the oldest"
    );
    controller.process.check_running()?;
    controller.process.stop().await;

    eprintln!("restarting the controller on the same rollouts …");
    let mut restarted = start_controller(&controller_exe, &kubeconfig, &options, &[]).await?;
    wait_reconciled(&http, &mut restarted, options.count, options.timeout).await?;
    tokio::time::sleep(SETTLE).await;
    let restarted_at_rest_rss = support::rss_split(restarted.process.pid()?)?;
    let restarted_at_rest_rss_bytes = restarted_at_rest_rss.total_bytes;
    restarted.process.stop().await;
    let simulator_rss_bytes = support::rss_bytes(sim_pid)?;
    sim.stop().await;

    let names: Vec<String> = (0..options.count).map(name).collect();
    let counted = count_writes(&log.requests, &names);
    let n = options.count as f64;
    let writes: usize = counted.by_kind.values().sum();
    let event_writes: usize = counted
        .by_kind
        .iter()
        .filter(|(kind, _)| is_event_kind(kind))
        .map(|(_, c)| c)
        .sum();
    let per_rollout: Vec<f64> = counted.per_rollout.iter().map(|c| *c as f64).collect();
    let requests = log
        .requests
        .iter()
        .filter(|r| r.user_agent != support::BENCH_USER_AGENT)
        .count();
    Ok(WaveBenchReport {
        rollouts: options.count,
        namespaces: options.namespaces,
        replicas: options.replicas,
        steps: steps().len(),
        kube_qps: options.kube_qps,
        setup_seconds,
        at_rest_rss_bytes,
        wave_seconds,
        peak_rss_bytes,
        settled_rss_bytes,
        settled_rss,
        settle_seconds: options.settle_seconds,
        restarted_at_rest_rss_bytes,
        restarted_at_rest_rss,
        settled_over_restarted: settled_rss_bytes as f64 / restarted_at_rest_rss_bytes.max(1) as f64,
        wave_cpu_seconds,
        writes,
        writes_per_rollout: writes as f64 / n,
        writes_per_rollout_per_step: writes as f64 / n / steps().len() as f64,
        event_writes_per_rollout: event_writes as f64 / n,
        writes_per_rollout_excluding_events: (writes - event_writes) as f64 / n,
        writes_per_rollout_by_kind: counted
            .by_kind
            .iter()
            .map(|(k, c)| (k.clone(), *c as f64 / n))
            .collect(),
        writes_by_kind: counted.by_kind,
        writes_per_rollout_distribution: support::Distribution::of(&per_rollout),
        unattributed_writes: counted.unattributed,
        requests,
        writes_per_second: writes as f64 / wave_seconds,
        requests_per_second: requests as f64 / wave_seconds,
        budget_used: if options.kube_qps > 0.0 {
            requests as f64 / wave_seconds / options.kube_qps
        } else {
            0.0
        },
        simulator_cpu_seconds_over_wave,
        simulator_rss_bytes,
    })
}

/// Points a rollout at the wave's image, retrying briefly while the simulator is busy (a debug
/// simulator on a loaded machine times connections out; the merge patch is idempotent).
async fn change_template(api: &Api<Rollout>, name: &str) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match support::set_image(api, name, "example.com/wave:2").await {
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(rollout = %name, error = %e, "retrying the template change");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            result => return result,
        }
    }
}

fn name(i: usize) -> String {
    format!("wave-{i:05}")
}

fn poll_interval(count: usize) -> Duration {
    Duration::from_millis(if count > 100 { 2000 } else { 250 })
}

/// How long the controller gets to settle before an at-rest RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

fn is_event_kind(kind: &str) -> bool {
    kind.split_whitespace().nth(1).is_some_and(|r| r == "events")
}

#[derive(Debug, Default, PartialEq)]
struct CountedWrites {
    by_kind: BTreeMap<String, usize>,
    /// Per rollout, in the order of `names`.
    per_rollout: Vec<usize>,
    unattributed: usize,
}

/// The controller's writes (not the benchmark's) by [`support::write_kind`], and per rollout: a write belongs to the rollout whose name its object's name is or starts
/// with followed by `-` (ReplicaSets) or `.` (Events).
fn count_writes(requests: &[LoggedRequest], names: &[String]) -> CountedWrites {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut counted = CountedWrites {
        per_rollout: vec![0; names.len()],
        ..CountedWrites::default()
    };
    let owner = |object: &str| -> Option<usize> {
        if let Some(i) = index.get(object) {
            return Some(*i);
        }
        let cut = object.find(['-', '.']).and_then(|first| {
            // Rollout names themselves hold a '-': try every separator from the left.
            object[first + 1..].find(['-', '.']).map(|second| first + 1 + second)
        })?;
        index.get(&object[..cut]).copied()
    };
    for request in requests
        .iter()
        .filter(|r| support::WRITE_VERBS.contains(&r.verb.as_str()) && r.user_agent != support::BENCH_USER_AGENT)
    {
        *counted.by_kind.entry(support::write_kind(request)).or_insert(0) += 1;
        match owner(&request.name) {
            Some(i) => counted.per_rollout[i] += 1,
            None => counted.unattributed += 1,
        }
    }
    counted
}

struct StartedController {
    process: ChildProcess,
    metrics: String,
}

async fn start_controller(
    exe: &std::path::Path,
    kubeconfig: &std::path::Path,
    options: &WaveBenchOptions,
    extra_env: &[(String, String)],
) -> anyhow::Result<StartedController> {
    let mut env = vec![
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        // The metrics address is read from an info line, whatever else RUST_LOG asks for.
        (
            "RUST_LOG".to_string(),
            format!(
                "{},sluice::controller::server=info",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())
            ),
        ),
        ("NO_COLOR".to_string(), "1".to_string()),
    ];
    env.extend(extra_env.iter().cloned());
    let args: Vec<String> = vec![
        "controller".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
        "--kube-qps".into(),
        options.kube_qps.to_string(),
    ];
    let serving_metrics = "serving /metrics, /healthz and /readyz";
    let mut process = ChildProcess::spawn("controller", exe, &args, &env, &[serving_metrics])?;
    let line = process.wait_for_line(serving_metrics, Duration::from_secs(60)).await?;
    let address = logged_address(&line).with_context(|| format!("no address in the controller's log line {line:?}"))?;
    Ok(StartedController {
        process,
        metrics: format!("http://{address}/metrics"),
    })
}

/// Waits until the controller's rollout reconcile counter reaches `count` (each rollout seen once).
async fn wait_reconciled(
    http: &reqwest::Client,
    controller: &mut StartedController,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut reconciled = 0.0;
    while reconciled < count as f64 {
        controller.process.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the controller reconciled {reconciled} of {count} rollouts within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = match http
            .get(&controller.metrics)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        reconciled =
            support::metric_value(&text, "sluice_reconcile_total", &[("controller", "rollout")]).unwrap_or(0.0);
    }
    Ok(())
}

async fn clear_request_log(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    http.delete(format!("{url}/sim/requests"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("clearing the simulator's request log")?;
    Ok(())
}

async fn request_log(http: &reqwest::Client, url: &str) -> anyhow::Result<RequestLog> {
    http.get(format!("{url}/sim/requests"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("reading the simulator's request log")?
        .json()
        .await
        .context("decoding the simulator's request log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(verb: &str, resource: &str, subresource: &str, name: &str, agent: &str, code: u16) -> LoggedRequest {
        LoggedRequest {
            verb: verb.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            user_agent: agent.into(),
            code,
        }
    }

    #[test]
    fn writes_are_counted_by_kind_and_attributed_to_their_rollout() {
        let names = vec![name(0), name(1)];
        let requests = vec![
            write("patch", "rollouts", "status", "wave-00000", "sluice/0.1", 200),
            write("create", "replicasets", "", "wave-00000-7d9f", "sluice/0.1", 201),
            write("create", "events", "", "wave-00001.17a2b3", "sluice/0.1", 201),
            write("patch", "replicasets", "", "wave-00001-7d9f", "sluice/0.1", 409),
            // The benchmark's own writes and reads are not the controller's.
            write("patch", "rollouts", "", "wave-00000", support::BENCH_USER_AGENT, 200),
            write("get", "rollouts", "", "wave-00000", "sluice/0.1", 200),
            // A write naming no benchmark rollout.
            write("update", "leases", "", "sluice-controller", "sluice/0.1", 200),
        ];
        let counted = count_writes(&requests, &names);
        assert_eq!(counted.per_rollout, vec![2, 2]);
        assert_eq!(counted.unattributed, 1);
        assert_eq!(counted.by_kind["patch rollouts/status"], 1);
        assert_eq!(counted.by_kind["patch replicasets (409)"], 1);
        assert_eq!(counted.by_kind.values().sum::<usize>(), 5);
        assert!(is_event_kind("create events"));
        assert!(!is_event_kind("create eventsources"));
    }

    #[test]
    fn controller_env_must_be_key_value() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("=x").is_err());
    }
}
