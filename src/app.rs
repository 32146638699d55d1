//! The `sluice` command line (also run as the kubectl plugin `kubectl-sluice`): parses flags and
//! wires them to the library; no logic lives here. Both binaries call [`main`].
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sim::faults::FaultRule;
use crate::sim::{SimConfig, Simulator};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery for Kubernetes that closes the GitOps loop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as human-readable text or as JSON objects (one per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a simulated Kubernetes API (workloads and traffic included) on loopback.
    Sim(SimArgs),
    /// Measure performance; prints a JSON report.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The whole GitOps loop on a simulated cluster, no cluster needed: commits to a local Git repository,
    /// a GitSync applying them, canaries gated by Prometheus, a failed one blocked and rolled back.
    Demo {
        /// Leave the simulator, Prometheus, the Git repository and the controller running afterwards
        /// (prints the kubeconfig and how to commit a v4 yourself).
        #[arg(long)]
        keep: bool,
        /// The Prometheus binary (default: `prometheus` on PATH).
        #[arg(long)]
        prometheus: Option<std::path::PathBuf>,
    },
    /// Run the Sluice controllers (Rollout, AnalysisRun) against the cluster in KUBECONFIG or in-cluster.
    Controller(ControllerArgs),
    /// Run the end-to-end scenarios: on the simulator by default, on the cluster in KUBECONFIG when set.
    E2e(E2eArgs),
    /// Print the CustomResourceDefinitions as YAML (apply with `kubectl apply --server-side -f -`).
    Crds,
    // The rollout commands (promote, abort, retry, pause, resume, undo, restart, set, get, list).
    #[command(flatten)]
    Rollouts(crate::cli::Command),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Rollout planning: the cost of one plan() call mid-canary.
    Plan {
        #[arg(long, default_value_t = 200_000)]
        calls: u64,
    },
    /// Simulator: writes per second, watch fan-out, memory per stored object.
    Sim {
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        #[arg(long, default_value_t = 10)]
        watchers: usize,
        /// Writes in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// `sluice controller` (a separate process) with N Healthy rollouts: time to /readyz, RSS, idle CPU.
    Rollouts {
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        replicas: i32,
        /// Seconds of idle CPU is measured over (reported per minute).
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
        /// Creates in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Upper bound of every wait, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout_seconds: u64,
    },
    /// N rollouts through five setWeight steps at once: API writes per step, reconcile p50/p99, total time.
    Steps {
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 4)]
        replicas: i32,
        /// How long a new pod takes to become Ready.
        #[arg(long, default_value = "50ms", value_parser = parse_duration)]
        pod_ready_delay: Duration,
        /// Writes in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Upper bound of every wait, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout_seconds: u64,
    },
    /// Failed analysis → canary weight 0: latency over several rollouts, and controller cost per measurement.
    Abort {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long, default_value_t = 5)]
        replicas: i32,
        /// How long a new pod takes to become Ready.
        #[arg(long, default_value = "50ms", value_parser = parse_duration)]
        pod_ready_delay: Duration,
        /// AnalysisRuns with a web metric for the cost-per-measurement part (0 skips it).
        #[arg(long, default_value_t = 20)]
        measurement_runs: usize,
        /// Measurements per run in that part, 1 s apart.
        #[arg(long, default_value_t = 5)]
        measurements: i32,
        /// Upper bound of every wait, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
}

#[derive(Args)]
struct SimArgs {
    /// Address to serve on; port 0 picks a free port. Loopback only.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Write a kubeconfig pointing at the simulator here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// How long a new pod takes to become Ready (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pod_ready_delay: Duration,
    /// Interval between watch bookmarks.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    bookmark_interval: Duration,
    /// Changes kept for resuming watches; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 20_000)]
    watch_history: usize,
    /// Fraction of matching requests answered 500 Internal Server Error.
    #[arg(long, default_value_t = 0.0)]
    fault_internal_error_rate: f64,
    /// Fraction of matching requests answered 429 Too Many Requests.
    #[arg(long, default_value_t = 0.0)]
    fault_too_many_requests_rate: f64,
    /// Fraction of matching requests answered 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    fault_conflict_rate: f64,
    /// Extra latency added to matching requests, in milliseconds.
    #[arg(long, default_value_t = 0)]
    fault_latency_ms: u64,
    /// Verbs the faults apply to (comma-separated; empty: all).
    #[arg(long, value_delimiter = ',')]
    fault_verbs: Vec<String>,
    /// Resources the faults apply to, as plural or plural.group (comma-separated; empty: all).
    #[arg(long, value_delimiter = ',')]
    fault_resources: Vec<String>,
    /// End every open watch this often (clients must resume), e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    drop_watches_every: Option<Duration>,
    /// Compact the watch history this often (resuming clients get 410 and relist), e.g. 60s.
    #[arg(long, value_parser = parse_duration)]
    compact_every: Option<Duration>,
}

#[derive(Args)]
struct E2eArgs {
    /// Run only this scenario (repeatable; default: all).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and what each checks.
    #[arg(long)]
    list: bool,
    /// Use the simulator even when KUBECONFIG is set.
    #[arg(long)]
    sim: bool,
    /// Run against this cluster (default when KUBECONFIG is set) instead of the simulator.
    #[arg(long, env = "KUBECONFIG", hide_env_values = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    context: Option<String>,
    /// Cluster: Prometheus for analysis, written into the scenarios' AnalysisTemplates and used by
    /// --local-controller; must be reachable from the controller (default: the controller's
    /// --prometheus-address).
    #[arg(long, env = "SLUICE_E2E_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Cluster: run the controller in this process (applies the CRDs) instead of the installed one.
    #[arg(long)]
    local_controller: bool,
    /// Cluster: the image every app version runs.
    #[arg(long, default_value = crate::e2e::target::DEFAULT_CLUSTER_APP_IMAGE)]
    app_image: String,
    /// Cluster: env var through which --app-image fails that share (0–1) of its requests; without it the
    /// analysis and GitSync scenarios are skipped.
    #[arg(long)]
    error_rate_env: Option<String>,
    /// Cluster: PromQL success rate of one app version, with $NAMESPACE, $SERVICE and
    /// {{args.canary-hash}} (its pod-template-hash); without it the analysis and GitSync scenarios are skipped.
    #[arg(long)]
    success_rate_query: Option<String>,
    /// Cluster: Gateway (NAMESPACE/NAME) for the HTTPRoute scenario; skipped without it.
    #[arg(long)]
    gateway: Option<String>,
    /// Cluster: directory to create the GitSync scenario's repository in, served to the cluster at --git-url.
    #[arg(long, requires = "git_url")]
    git_root: Option<PathBuf>,
    /// Cluster: URL prefix under which the controller reaches --git-root (e.g. git://172.18.0.1:9418).
    #[arg(long, requires = "git_root")]
    git_url: Option<String>,
    /// Upper bound of one scenario, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_seconds: u64,
    /// Leave each scenario's namespace behind.
    #[arg(long)]
    keep_namespaces: bool,
    /// Simulator: the Prometheus binary (default: SLUICE_PROMETHEUS, else `prometheus` on PATH).
    #[arg(long)]
    prometheus: Option<PathBuf>,
}

async fn run_e2e(args: E2eArgs) -> anyhow::Result<()> {
    use crate::e2e::{ClusterOptions, ClusterTarget, RunOptions, SimOptions, SimTarget, Verdict};
    if args.list {
        crate::e2e::list();
        return Ok(());
    }
    let options = RunOptions {
        only: args.scenarios,
        scenario_timeout: Duration::from_secs(args.timeout_seconds),
        keep_namespaces: args.keep_namespaces,
    };
    crate::e2e::select(&options.only)?;
    let outcomes = match args.kubeconfig.filter(|_| !args.sim) {
        None => {
            let target = SimTarget::start(SimOptions {
                prometheus: args.prometheus,
            })
            .await?;
            let outcomes = crate::e2e::run(&target, &options).await;
            target.stop().await;
            outcomes?
        }
        Some(kubeconfig) => {
            let target = ClusterTarget::connect(ClusterOptions {
                kubeconfig: Some(kubeconfig),
                context: args.context,
                prometheus_url: args.prometheus_url,
                local_controller: args.local_controller,
                app_image: args.app_image,
                error_rate_env: args.error_rate_env,
                success_rate_query: args.success_rate_query,
                gateway: args.gateway,
                git_root: args.git_root,
                git_url: args.git_url,
            })
            .await?;
            let outcomes = crate::e2e::run(&target, &options).await;
            target.stop().await;
            outcomes?
        }
    };
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Fail(_)))
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

#[derive(Args)]
struct ControllerArgs {
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, short = 'n', env = "SLUICE_NAMESPACE")]
    namespace: Option<String>,
    /// Address for /metrics, /healthz and /readyz; port 0 picks a free one (the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICE_METRICS_ADDR")]
    metrics_addr: std::net::SocketAddr,
    /// Prometheus used by analysis metrics that name no address.
    #[arg(long, env = "SLUICE_PROMETHEUS_ADDRESS")]
    prometheus_address: Option<String>,
    /// Hosts, *.domain wildcards, IPs and CIDRs analysis providers may connect to (comma-separated;
    /// empty: anywhere).
    #[arg(long, value_delimiter = ',', env = "SLUICE_ANALYSIS_ADDRESS_ALLOWLIST")]
    analysis_address_allowlist: Vec<String>,
    /// Seconds to let in-flight reconciles finish and release the lease on SIGTERM or Ctrl-C (the
    /// process exits within this plus about a second).
    #[arg(long, default_value_t = 9)]
    shutdown_grace_seconds: u64,
    /// Run the controllers only while holding a Lease, so several replicas can run with one active.
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the in-cluster service account's, else sluice-system).
    #[arg(long, env = "SLUICE_LEADER_ELECT_NAMESPACE")]
    leader_elect_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = crate::controller::leader::DEFAULT_LEASE_NAME)]
    leader_elect_lease_name: String,
    /// How long a Lease stays valid after its last renewal; a standby takes over after that (whole seconds).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// The leader stops (and exits) when it could not renew the Lease for this long; shorter than the lease duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often a standby looks for a released Lease and the leader checks its renewals.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// Sustained requests per second to the Kubernetes API (0: unlimited).
    #[arg(long, default_value_t = 50.0, env = "SLUICE_KUBE_QPS")]
    kube_qps: f64,
    /// Requests allowed in a burst above --kube-qps.
    #[arg(long, default_value_t = 100, env = "SLUICE_KUBE_BURST")]
    kube_burst: u32,
    /// Directory for the GitSync controller's Git mirrors (default: under the system temp dir).
    #[arg(long, env = "SLUICE_GIT_CACHE_DIR")]
    git_cache_dir: Option<std::path::PathBuf>,
    /// Listen address for `POST /hooks/gitsync/{namespace}/{name}` (signed push webhooks); off when unset.
    #[arg(long, env = "SLUICE_WEBHOOK_ADDR")]
    webhook_addr: Option<std::net::SocketAddr>,
    /// When a Rollout deployed by Argo CD aborts on failed analysis, turn off its Application's
    /// automated sync and record the last healthy revision on it.
    #[arg(long, env = "SLUICE_ARGOCD_ADAPTER")]
    argocd_adapter: bool,
    /// Namespace of Argo CD's Applications (for tracking ids without a namespace).
    #[arg(long, default_value = "argocd", env = "SLUICE_ARGOCD_NAMESPACE")]
    argocd_namespace: String,
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    use crate::controller::client::{self, ClientOptions, WriteGate};
    use crate::controller::leader;
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Kubernetes (KUBECONFIG or in-cluster): {e}"))?;
    let identity = leader::identity();
    let user_agent = format!("sluice/{} ({identity})", env!("CARGO_PKG_VERSION"));
    let gate = WriteGate::open();
    let client_options = ClientOptions {
        qps: args.kube_qps,
        burst: args.kube_burst,
        user_agent: user_agent.clone(),
        write_gate: Some(gate.clone()),
    };
    let client = client::build(kube_config.clone(), &client_options)?;
    let config = crate::controller::ControllerConfig {
        namespace: args.namespace,
        metrics_addr: args.metrics_addr,
        prometheus_address: args.prometheus_address,
        analysis_address_allowlist: args.analysis_address_allowlist,
        gitsync: crate::controller::gitsync::GitSyncConfig {
            kube_config: Some(kube_config.clone()),
            client_options: Some(client_options.clone()),
            cache_dir: args.git_cache_dir,
            webhook_addr: args.webhook_addr,
            argocd: args
                .argocd_adapter
                .then_some(crate::gitsync::argocd::ArgoCdAdapterConfig {
                    argocd_namespace: args.argocd_namespace,
                }),
        },
    };
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let stop = tokio_util::sync::CancellationToken::new();
    let signalled = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down (a second SIGTERM or Ctrl-C exits at once)");
        signalled.cancel();
        shutdown_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    if !args.leader_elect {
        let running = crate::controller::start(client, config, Default::default()).await?;
        stop.cancelled().await;
        running.stop(grace).await;
        return Ok(());
    }
    let election = leader::LeaderElection {
        lease_name: args.leader_elect_lease_name,
        namespace: args.leader_elect_namespace.unwrap_or_else(leader::default_namespace),
        identity,
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    // The lease has its own client, without the write gate and outside the controllers' rate limit.
    let lease_client = client::build(
        kube_config,
        &ClientOptions {
            qps: 0.0,
            burst: 0,
            user_agent: format!("{user_agent} leader-election"),
            write_gate: None,
        },
    )?;
    leader::run(client, gate, lease_client, config, election, stop, grace).await
}

async fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Plan { calls } => {
            let report = crate::bench::plan::run(calls);
            println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
            Ok(())
        }
        BenchCommand::Sim {
            objects,
            watchers,
            concurrency,
        } => {
            let options = crate::bench::sim::SimBenchOptions {
                objects,
                watchers,
                concurrency,
            };
            crate::bench::sim::run(options)
                .await
                .map(|report| print_report(&report))
        }
        BenchCommand::Rollouts {
            count,
            replicas,
            idle_seconds,
            concurrency,
            timeout_seconds,
        } => {
            let options = crate::bench::rollouts::RolloutsBenchOptions {
                count,
                replicas,
                idle_seconds,
                concurrency,
                timeout: Duration::from_secs(timeout_seconds),
            };
            crate::bench::rollouts::run(options)
                .await
                .map(|report| print_report(&report))
        }
        BenchCommand::Steps {
            count,
            replicas,
            pod_ready_delay,
            concurrency,
            timeout_seconds,
        } => {
            let options = crate::bench::steps::StepsBenchOptions {
                count,
                replicas,
                pod_ready_delay,
                concurrency,
                timeout: Duration::from_secs(timeout_seconds),
            };
            crate::bench::steps::run(options)
                .await
                .map(|report| print_report(&report))
        }
        BenchCommand::Abort {
            runs,
            replicas,
            pod_ready_delay,
            measurement_runs,
            measurements,
            timeout_seconds,
        } => {
            let options = crate::bench::abort::AbortBenchOptions {
                runs,
                replicas,
                pod_ready_delay,
                measurement_runs,
                measurements,
                timeout: Duration::from_secs(timeout_seconds),
            };
            crate::bench::abort::run(options)
                .await
                .map(|report| print_report(&report))
        }
    }
}

fn print_report(report: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(report).expect("reports serialize"));
}

/// Durations as Kubernetes and Argo write them: 500ms, 30s, 5m, 1h (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        let any_fault = self.fault_internal_error_rate > 0.0
            || self.fault_too_many_requests_rate > 0.0
            || self.fault_conflict_rate > 0.0
            || self.fault_latency_ms > 0;
        let faults = if any_fault {
            vec![FaultRule {
                verbs: self.fault_verbs.clone(),
                resources: self.fault_resources.clone(),
                internal_error_rate: self.fault_internal_error_rate,
                too_many_requests_rate: self.fault_too_many_requests_rate,
                conflict_rate: self.fault_conflict_rate,
                extra_latency_ms: self.fault_latency_ms,
            }]
        } else {
            vec![]
        };
        SimConfig {
            addr: self.addr,
            pod_ready_delay: self.pod_ready_delay,
            bookmark_interval: self.bookmark_interval,
            watch_history: self.watch_history,
            faults,
            ..SimConfig::default()
        }
    }
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let sim = Simulator::start(args.config()).await?;
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)
            .map_err(|e| anyhow::anyhow!("writing kubeconfig {}: {e}", path.display()))?;
        println!("kubeconfig: {}", path.display());
    }
    println!("serving the Kubernetes API on {}", sim.url());
    let http = sim.http.clone();
    let chaos = tokio::spawn(async move {
        let mut drops = args.drop_watches_every.map(tokio::time::interval);
        let mut compactions = args.compact_every.map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = tick(&mut drops) => http.drop_watches.send_modify(|n| *n += 1),
                _ = tick(&mut compactions) => {
                    http.api.store.compact();
                    http.drop_watches.send_modify(|n| *n += 1);
                }
            }
        }
    });
    shutdown_signal().await;
    chaos.abort();
    sim.shutdown().await;
    Ok(())
}

/// Waits for the next tick of an optional interval (forever when there is none).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
}

/// Parses the command line; installed as `kubectl-sluice`, help and errors say `kubectl sluice`.
fn parse_cli() -> Cli {
    let invoked_as = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut command = Cli::command();
    if invoked_as.starts_with("kubectl-sluice") {
        command = command.bin_name("kubectl sluice").name("kubectl sluice");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the command line and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = parse_cli();
    if matches!(cli.command, Command::Controller(_)) {
        crate::memory::tune_allocator_for_controller();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let log_format = cli.log_format;
    // The e2e runner's report and the demo's timeline are their output: the in-process controller
    // logs only errors (e2e) or warnings (demo) by default.
    let default_level = if matches!(cli.command, Command::E2e(_)) {
        "error"
    } else if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
    }
    let result = match cli.command {
        // Benchmarks start child processes that their guards kill on drop: on Ctrl-C or SIGTERM,
        // drop the benchmark instead of exiting past the guards.
        Command::Bench(command) => tokio::select! {
            result = run_bench(command) => result,
            _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
        },
        Command::Sim(args) => run_sim(args).await,
        Command::Controller(args) => run_controller(args).await,
        Command::E2e(args) => run_e2e(args).await,
        Command::Demo { keep, prometheus } => crate::demo::run(crate::demo::DemoOptions { keep, prometheus })
            .await
            .map(|_| ()),
        Command::Rollouts(command) => crate::cli::run(command).await.map_err(anyhow::Error::from),
        Command::Crds => {
            print!("{}", crate::api::crds::to_yaml());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Log collectors parse every line of a JSON log, the last one included.
        Err(e) if log_format == LogFormat::Json => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
