//! The product's commands — `controller`, `crds` and the rollout commands — and what every `sluice`
//! executable shares: global flags, logging, signals and exit codes. Flags are parsed and handed to
//! the library; no logic lives here. The executables (the `sluice-app` crate) add the developer
//! commands when built with them.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Flags every command takes.
#[derive(Args, Debug, Clone, Copy)]
pub struct GlobalArgs {
    /// Log lines as human-readable text or as JSON objects (one per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The commands of the product: what the controller image runs and what users type.
#[derive(Subcommand)]
pub enum Command {
    /// Run the Sluice controllers (Rollout, AnalysisRun) against the cluster in KUBECONFIG or in-cluster.
    Controller(Box<ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML (apply with `kubectl apply --server-side -f -`).
    Crds,
    /// Convert Argo Rollouts manifests (Rollouts, AnalysisTemplates, ClusterAnalysisTemplates,
    /// AnalysisRuns) to Sluice's, printed on stdout; each field that could not be carried over is
    /// reported on stderr with the reason.
    Convert(ManifestArgs),
    /// Check manifests offline as the API server and the controller would (schema, then InvalidSpec
    /// rules); exits non-zero naming each problem's field, for CI.
    Lint(ManifestArgs),
    /// Serve the web dashboard: rollouts live, with promote/abort/retry/pause/resume (local mode:
    /// loopback only, a login token in the printed URL, your kubeconfig's rights).
    Dashboard(crate::dashboard::DashboardArgs),
    // The rollout commands (promote, abort, retry, pause, resume, undo, restart, set, get, list).
    #[command(flatten)]
    Rollouts(crate::cli::Command),
}

impl Command {
    /// The controller tunes the allocator before anything allocates (see `memory`).
    pub fn is_controller(&self) -> bool {
        matches!(self, Command::Controller(_))
    }
}

/// Runs one product command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Controller(args) => run_controller(*args).await,
        Command::Rollouts(command) => crate::cli::run(command).await.map_err(anyhow::Error::from),
        Command::Crds => {
            print!("{}", crate::api::crds::to_yaml());
            Ok(())
        }
        Command::Convert(args) => crate::cli::manifests::convert(&args.files),
        Command::Lint(args) => crate::cli::manifests::lint(&args.files),
        Command::Dashboard(args) => crate::dashboard::run(args).await,
    }
}

/// The manifests a command reads.
#[derive(Args)]
pub struct ManifestArgs {
    /// A YAML (or JSON) file of one or more documents; `-` reads stdin. Repeat for several files.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    config: crate::controller::ControllerConfig,
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
    /// Spread the namespaces over this many shard Leases (`<lease-name>-shard-K`); each replica
    /// reconciles only the namespaces of the shards it holds, up to its fair share (README, Sharding).
    /// 1: one active replica, as plain leader election. More than 1 needs --leader-elect.
    #[arg(long, default_value_t = 1, env = "SLUICE_SHARD_COUNT",
          value_parser = clap::value_parser!(u16).range(1..=crate::controller::shard::MAX_SHARDS as i64))]
    shard_count: u16,
    /// Sustained requests per second to the Kubernetes API (0: unlimited).
    #[arg(long, default_value_t = 50.0, env = "SLUICE_KUBE_QPS")]
    kube_qps: f64,
    /// Requests allowed in a burst above --kube-qps.
    #[arg(long, default_value_t = 100, env = "SLUICE_KUBE_BURST")]
    kube_burst: u32,
}

impl ControllerArgs {
    /// What clap cannot say: shards are held through Leases, so more than one needs --leader-elect.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.shard_count == 1 || self.leader_elect,
            "--shard-count {} needs --leader-elect: shards are held through Leases",
            self.shard_count
        );
        Ok(())
    }
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    use crate::client::{self, ClientOptions, WriteGate};
    use crate::controller::leader;
    args.check()?;
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
    let mut config = args.config;
    // The GitSync controller impersonates with the process's own client configuration.
    config.gitsync.kube_config = Some(kube_config.clone());
    config.gitsync.client_options = Some(client_options.clone());
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
        return running.run_until(stop, grace).await;
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
    if args.shard_count > 1 {
        let shard_count = args.shard_count;
        return crate::controller::shard::run::run(
            client,
            gate,
            lease_client,
            config,
            election,
            shard_count,
            stop,
            grace,
        )
        .await;
    }
    leader::run(client, gate, lease_client, config, election, stop, grace).await
}

/// Durations as Kubernetes and Argo write them: 500ms, 30s, 5m, 1h (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

/// Resolves on the first SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
}

/// Parses the command line; installed as `kubectl-sluice`, help and errors say `kubectl sluice`.
pub fn parse_cli<C: Parser>() -> C {
    let invoked_as = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut command = C::command();
    if invoked_as.starts_with("kubectl-sluice") {
        command = command.bin_name("kubectl sluice").name("kubectl sluice");
    }
    let matches = command.get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs a parsed command to its exit code: tunes the allocator for the controller, starts the async
/// runtime, sets up logging (`default_level` unless RUST_LOG says otherwise) and reports the error.
pub fn execute<F>(global: GlobalArgs, default_level: &str, controller: bool, command: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    if controller {
        crate::memory::tune_allocator_for_controller();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    init_logging(global.log_format, default_level);
    if controller {
        runtime.spawn(crate::memory::return_freed_memory());
    }
    match runtime.block_on(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if global.log_format == LogFormat::Json {
                // Log collectors parse every line of a JSON log, the last one included.
                tracing::error!(error = %format!("{e:#}"), "exiting");
            } else {
                eprintln!("error: {e:#}");
            }
            let code = e
                .downcast_ref::<crate::cli::Error>()
                .map_or(1, crate::cli::Error::exit_code);
            std::process::ExitCode::from(code)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    match format {
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
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    /// `sluice controller <flags>` as clap parses it.
    fn controller(flags: &[&str]) -> Result<ControllerArgs, clap::Error> {
        let cli = Cli::try_parse_from(["sluice", "controller"].into_iter().chain(flags.iter().copied()))?;
        match cli.command {
            Command::Controller(args) => Ok(*args),
            _ => panic!("`controller` parses as another command"),
        }
    }

    #[test]
    fn shard_counts_outside_1_to_256_are_refused_naming_the_flag() {
        for count in ["0", "257"] {
            let error = controller(&["--leader-elect", "--shard-count", count])
                .err()
                .unwrap_or_else(|| panic!("--shard-count {count} was accepted"))
                .to_string();
            assert!(
                error.contains("--shard-count") && error.contains(&format!("'{count}'")),
                "{error}"
            );
        }
        for count in ["1", "256"] {
            let args = controller(&["--leader-elect", "--shard-count", count])
                .unwrap_or_else(|e| panic!("--shard-count {count}: {e}"));
            assert!(args.check().is_ok(), "--shard-count {count}");
        }
    }

    #[test]
    fn more_than_one_shard_needs_leader_election() {
        let args = controller(&["--shard-count", "2"]).unwrap_or_else(|e| panic!("{e}"));
        let error = args.check().expect_err("two shards without --leader-elect").to_string();
        assert!(
            error.contains("--shard-count 2") && error.contains("needs --leader-elect"),
            "{error}"
        );
        let args = controller(&["--shard-count", "2", "--leader-elect"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(args.check().is_ok());
        // One shard is plain (or no) leader election.
        assert!(controller(&[]).unwrap_or_else(|e| panic!("{e}")).check().is_ok());
    }
}
